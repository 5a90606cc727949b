//! What an exchange lists of an account's activity: the records reconciliation holds
//! against the audit log.

use rust_decimal::Decimal;

/// A withdrawal as the exchange lists it (`keygate reconcile`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExchangeWithdrawal {
    /// The exchange's id for it.
    pub id: String,
    /// The asset, upper case.
    pub asset: String,
    /// The amount.
    pub amount: Decimal,
    /// The fee the exchange charged for it, when it says. Binance lists `amount` and
    /// `transactionFee` apart and does not document whether `amount` is what was asked
    /// for or what was sent once the fee was taken: a withdrawal keygate forwarded is
    /// known by either.
    pub fee: Option<Decimal>,
    /// `ADDRESS` or `ADDRESS/TAG`, as keygate's audit events write it.
    pub destination: String,
    /// The network it went on (`TRX`, `ETH`), upper case, when the exchange says.
    pub network: Option<String>,
    /// When it was applied for, in milliseconds since the epoch.
    pub applied_ms: u64,
}

/// An order as the exchange lists it (`keygate reconcile`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExchangeOrder {
    /// The exchange's id for it.
    pub id: String,
    /// The id its client gave it, or the one the exchange made up.
    pub client_order_id: String,
    /// Its market.
    pub symbol: String,
    /// `BUY` or `SELL`.
    pub side: String,
    /// `LIMIT`, `MARKET`, ...
    pub order_type: String,
    /// Base quantity.
    pub quantity: Decimal,
    /// Limit price; zero for a market order.
    pub price: Decimal,
    /// When the exchange placed it, in milliseconds since the epoch.
    pub placed_ms: u64,
}

/// A conditional order as the exchange lists it (Binance's USD-M "algo" orders): it waits
/// for its trigger price apart from the order book, numbered apart from orders, and once
/// triggered places an order of its own.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExchangeConditionalOrder {
    /// The conditional order: `id` is the exchange's id for it (`algoId`), numbered apart
    /// from orders; `client_order_id` the id its client gave it (`clientAlgoId`); `price`
    /// its trigger price; `placed_ms` when it was placed.
    pub order: ExchangeOrder,
    /// The exchange's id of the order it placed when it triggered, if it did.
    pub triggered_order_id: Option<String>,
}
