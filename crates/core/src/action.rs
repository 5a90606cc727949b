//! What a request would do at the exchange.

use std::fmt;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::{Scope, WithdrawalDestination};

/// The class of an exchange call, as an exchange adapter reads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionKind {
    /// Market data; needs no key.
    Public,
    /// Reads private data (balances, orders, trades).
    Read,
    /// Places or amends an order.
    Trade,
    /// Cancels orders.
    Cancel,
    /// Sends funds off the exchange.
    Withdraw,
    /// Moves funds between wallets or accounts.
    Transfer,
    /// Changes API keys, sub-accounts or account security settings.
    KeyManagement,
    /// An endpoint the adapter does not know. Always denied.
    Unknown,
}

impl ActionKind {
    /// The scope a client needs for this kind of action; `None` when no scope grants it
    /// (key management and unknown endpoints) and for public calls, which need none.
    pub fn required_scope(self) -> Option<Scope> {
        match self {
            ActionKind::Read => Some(Scope::Read),
            ActionKind::Trade | ActionKind::Cancel => Some(Scope::Trade),
            ActionKind::Withdraw => Some(Scope::Withdraw),
            ActionKind::Transfer => Some(Scope::Transfer),
            ActionKind::Public | ActionKind::KeyManagement | ActionKind::Unknown => None,
        }
    }

    /// Whether the request moves money or positions, so that its audit event must be
    /// durable before it is forwarded.
    pub fn is_sensitive(self) -> bool {
        matches!(
            self,
            ActionKind::Trade | ActionKind::Cancel | ActionKind::Withdraw | ActionKind::Transfer
        )
    }

    /// The snake_case name used in audit records.
    pub fn as_str(self) -> &'static str {
        match self {
            ActionKind::Public => "public",
            ActionKind::Read => "read",
            ActionKind::Trade => "trade",
            ActionKind::Cancel => "cancel",
            ActionKind::Withdraw => "withdraw",
            ActionKind::Transfer => "transfer",
            ActionKind::KeyManagement => "key_management",
            ActionKind::Unknown => "unknown",
        }
    }
}

impl fmt::Display for ActionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Buy or sell.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    /// Buy the base asset.
    Buy,
    /// Sell the base asset.
    Sell,
}

/// Which of an exchange's markets an order or a symbol-scoped call is in. One symbol id
/// names different instruments in different markets: Binance's `BTCUSDT` is a spot pair
/// and a USD-M perpetual, so a symbol list says which it means.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Market {
    /// Spot (and the spot symbols of wallet and margin reads).
    Spot,
    /// Futures margined and settled in the quote asset (Binance USD-M, `/fapi`).
    Usdm,
    /// Futures margined and settled in the base asset (Binance COIN-M, `/dapi`).
    Coinm,
}

impl Market {
    /// The lowercase name used in audit records and symbol lists.
    pub fn as_str(self) -> &'static str {
        match self {
            Market::Spot => "spot",
            Market::Usdm => "usdm",
            Market::Coinm => "coinm",
        }
    }

    /// How a client's symbol list names `symbol` in this market: a spot symbol bare
    /// (`BTCUSDT`), any other prefixed with its market (`usdm:BTCUSDT`).
    pub fn listed_symbol(self, symbol: &str) -> String {
        match self {
            Market::Spot => symbol.to_owned(),
            market => format!("{}:{symbol}", market.as_str()),
        }
    }

    /// The symbol that `listed`, as a client's symbol list names it, names in this market
    /// (the inverse of [`Market::listed_symbol`]): `BTCUSDT` for `usdm:BTCUSDT` on USD-M;
    /// `None` when `listed` names a symbol of another market.
    pub fn unlisted_symbol(self, listed: &str) -> Option<&str> {
        let symbol = match self {
            Market::Spot => listed,
            market => listed
                .strip_prefix(market.as_str())
                .and_then(|rest| rest.strip_prefix(':'))?,
        };
        (!symbol.contains(':')).then_some(symbol)
    }
}

/// Whether the symbol id `symbol` is quoted in `asset`: the id, less a dated future's
/// `_EXPIRY`, ends with the asset after a base of its own. Adapters give ids as base and
/// quote run together, as Binance writes them (`ETHBTC`, `BTCUSDT_250328`).
pub fn is_quoted_in(symbol: &str, asset: &str) -> bool {
    let pair = symbol.split_once('_').map_or(symbol, |(pair, _)| pair);
    !asset.is_empty() && pair.len() > asset.len() && pair.ends_with(asset)
}

impl fmt::Display for Market {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What one request would do at the exchange, with the parameters that policy looks at.
///
/// Fields that do not apply to an action are `None`. Symbols use the exchange's own ids
/// (`BTCUSDT`), upper case, and `market` says which market the id is in.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Action {
    /// The class of the call.
    pub kind: ActionKind,
    /// `METHOD /native/path`, for audit records and error messages.
    pub endpoint: String,
    /// The market's symbol, for orders and symbol-scoped reads.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub symbol: Option<String>,
    /// The market `symbol` is in; `None` where the adapter cannot tell.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub market: Option<Market>,
    /// Buy or sell, for orders.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub side: Option<Side>,
    /// The exchange's order type (`LIMIT`, `MARKET`, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order_type: Option<String>,
    /// The id the client gave a new order (Binance's `newClientOrderId`), by which the
    /// exchange lists it too.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_order_id: Option<String>,
    /// Base quantity of an order.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quantity: Option<Decimal>,
    /// Limit price of an order.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub price: Option<Decimal>,
    /// The highest other price the order names: where a stop, trailing or conditional
    /// order (or a leg of an order list) triggers or fills, or a price its type does not
    /// say bounds the fill (a modify order names no type). A stop-market buy fills at its
    /// trigger or above, whatever the market is now; counted towards the notional, such a
    /// price can only raise it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger_price: Option<Decimal>,
    /// How far a trailing stop may trail the market before it fires, in percent: a
    /// trailing buy fills up to that much above the lowest price it saw, which may be
    /// today's market price.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trail_percent: Option<Decimal>,
    /// Quote quantity of an order, when the client gave one (`quoteOrderQty`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quote_quantity: Option<Decimal>,
    /// Asset of a withdrawal or transfer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub asset: Option<String>,
    /// Amount of a withdrawal or transfer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub amount: Option<Decimal>,
    /// Destination address of a withdrawal.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// Network of a withdrawal.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    /// The tag or memo of a withdrawal's address, for assets whose many accounts share
    /// one deposit address (XRP, XLM, EOS…) and tell them apart by it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address_tag: Option<String>,
    /// A trade call that places no order and can add nothing to what orders fill: a
    /// change to the account's trading settings (leverage, margin type, position mode, a
    /// countdown that cancels all orders), or an amendment that can only lower an open
    /// order's quantity. It needs the trade scope and keeps to the symbol list; it has no
    /// notional to limit.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub places_no_order: bool,
    /// A call that asks and moves nothing. A test order: the exchange checks it as an
    /// order and places nothing; it keeps to scope, symbol list and the per-order
    /// notional limit, and counts against no daily total. A convert quote (or the list
    /// of open limit converts): it needs the transfer scope, and tells of no money moved.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub validates_only: bool,
    /// An order placed as a buy that becomes a market buy when it triggers (a stop or a
    /// take-profit without a limit price), or an order list with such a buy leg: it
    /// takes the book then, as a market buy does, and is priced at the book for its
    /// quantity.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub market_buy_when_triggered: bool,
    /// The orders of a batch (Binance's `batchOrders`), each described as the request
    /// would describe it on its own; empty for anything else. A batch's own symbol, side,
    /// quantity and prices are then none: what it does is what its orders do, and
    /// [`Action::orders`] lists them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub batch: Vec<Action>,
    /// For an order the exchange lets be modified in place (a USD-M limit order), the
    /// price and quantity it is placed or modified to, and for a modification the order
    /// it changes: what reconciliation checks the exchange's listing against.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub terms: Option<OrderTerms>,
}

/// The price and quantity an order is placed with or modified to, as the request names
/// them, and for a modification the order it modifies. Reconciliation compares an order
/// the exchange lists with every such terms keygate sent for it: an order keygate placed
/// whose price or quantity is none of them was modified behind keygate's back.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderTerms {
    /// The limit price; none when the exchange sets it from the book (`priceMatch`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price: Option<Decimal>,
    /// The quantity.
    pub quantity: Decimal,
    /// For a modification: the order it modifies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modifies: Option<OrderRef>,
}

/// How a request names an order it acts on: by the exchange's id, or by its client's.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderRef {
    /// The exchange's id (Binance's `orderId`).
    OrderId(String),
    /// The id its client gave it (Binance's `origClientOrderId`).
    ClientOrderId(String),
}

impl Action {
    /// A withdrawal's destination as keygate writes it ([`WithdrawalDestination::text`]).
    pub fn destination(&self) -> Option<String> {
        self.address
            .as_deref()
            .map(|address| WithdrawalDestination::text(address, self.address_tag.as_deref()))
    }

    /// The symbol as a client's symbol list names it ([`Market::listed_symbol`]):
    /// `BTCUSDT` on spot, `usdm:BTCUSDT` on USD-M. Bare when the market is not known.
    pub fn listed_symbol(&self) -> Option<String> {
        let symbol = self.symbol.as_deref()?;
        Some(match self.market {
            Some(market) => market.listed_symbol(symbol),
            None => symbol.to_owned(),
        })
    }

    /// Whether the symbol is quoted in `asset` ([`is_quoted_in`]); `false` without one.
    pub fn is_quoted_in(&self, asset: &str) -> bool {
        self.symbol
            .as_deref()
            .is_some_and(|symbol| is_quoted_in(symbol, asset))
    }

    /// An action of `kind` at `endpoint` with no parameters.
    pub fn new(kind: ActionKind, endpoint: impl Into<String>) -> Action {
        Action {
            kind,
            endpoint: endpoint.into(),
            symbol: None,
            market: None,
            side: None,
            order_type: None,
            client_order_id: None,
            quantity: None,
            price: None,
            trigger_price: None,
            trail_percent: None,
            quote_quantity: None,
            asset: None,
            amount: None,
            address: None,
            network: None,
            address_tag: None,
            places_no_order: false,
            validates_only: false,
            market_buy_when_triggered: false,
            terms: None,
            batch: Vec::new(),
        }
    }

    /// The orders the action stands for: a batch's, or the action itself. Policy and the
    /// audit look at each of them as at a single order.
    pub fn orders(&self) -> &[Action] {
        if self.batch.is_empty() {
            std::slice::from_ref(self)
        } else {
            &self.batch
        }
    }

    /// Whether the exchange counts this call towards the account's orders: a trade that
    /// places one or more (an order, a batch, an order list, a cancel-replace), not a
    /// test order nor a change of settings.
    pub fn places_new_orders(&self) -> bool {
        self.kind == ActionKind::Trade && !self.places_no_order && !self.validates_only
    }

    /// Whether the action is a batch of orders ([`Action::batch`]).
    pub fn is_batch(&self) -> bool {
        !self.batch.is_empty()
    }

    /// The most the order can be worth when the request alone bounds it: the quote
    /// quantity of a buy given in quote (it spends no more), or `price × quantity` for a
    /// buy, which never pays more than its price. `None` otherwise: a sell can fill above
    /// its price, a sell given in quote gives away as much of the base asset as the bids
    /// take to raise it (found by review: counted at what it raises), and an order in
    /// base quantity without a bounding price has to be priced from the market
    /// ([`Action::priced_notional`]). `None` for a call that places no order, whatever
    /// order-like parameters it names.
    pub fn stated_notional(&self) -> Option<Decimal> {
        if self.places_no_order {
            return None;
        }
        match (self.quote_quantity, self.quantity) {
            (Some(quote), None) if self.side != Some(Side::Sell) => Some(quote),
            (None, Some(quantity)) if self.side == Some(Side::Buy) => {
                self.price.and_then(|p| p.checked_mul(quantity))
            }
            _ => None,
        }
    }

    /// The order's notional at the market price `market`: its quantity at the highest of
    /// `market`, its own price (a sell fills at its price or better, a marketable one
    /// near the market) and its trigger price (a stop-market buy fills at its trigger or
    /// above, however far the market is below it), raised by its trail for a trailing
    /// stop, and at least its quote quantity. `None` without a quantity, and for a call
    /// that places no order.
    pub fn priced_notional(&self, market: Decimal) -> Option<Decimal> {
        if self.places_no_order {
            return None;
        }
        let quantity = self.quantity?;
        let mut price = [self.price, self.trigger_price]
            .into_iter()
            .flatten()
            .fold(market, Decimal::max);
        if let Some(trail) = self.trail_percent {
            let factor = Decimal::ONE.checked_add(trail.checked_div(Decimal::ONE_HUNDRED)?)?;
            price = price.checked_mul(factor)?;
        }
        let notional = price.checked_mul(quantity)?;
        Some(
            self.quote_quantity
                .map_or(notional, |quote| quote.max(notional)),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_stands_for_its_orders_and_anything_else_for_itself() {
        let single = order(Side::Buy, Some(1), Some(10), None);
        assert!(!single.is_batch());
        assert_eq!(single.orders(), std::slice::from_ref(&single));
        let batch = Action {
            batch: vec![single.clone(), order(Side::Sell, Some(2), None, None)],
            ..Action::new(ActionKind::Trade, "POST /fapi/v1/batchOrders")
        };
        assert!(batch.is_batch());
        assert_eq!(batch.orders().len(), 2);
        assert_eq!(batch.orders()[1].side, Some(Side::Sell));
        // An action that is no batch serializes as it did before batches were read.
        let json = serde_json::to_value(&single).unwrap();
        assert!(json.get("batch").is_none(), "{json}");
        let back: Action = serde_json::from_value(json).unwrap();
        assert_eq!(back, single);
    }

    #[test]
    fn a_listed_symbol_names_its_market_s_symbol_only() {
        for market in [Market::Spot, Market::Usdm, Market::Coinm] {
            let listed = market.listed_symbol("BTCUSDT");
            assert_eq!(market.unlisted_symbol(&listed), Some("BTCUSDT"));
        }
        assert_eq!(Market::Spot.unlisted_symbol("usdm:BTCUSDT"), None);
        assert_eq!(Market::Usdm.unlisted_symbol("BTCUSDT"), None);
        assert_eq!(Market::Usdm.unlisted_symbol("coinm:BTCUSD_PERP"), None);
        assert_eq!(Market::Usdm.unlisted_symbol("usdmx:BTCUSDT"), None);
    }

    fn order(side: Side, quantity: Option<i64>, price: Option<i64>, quote: Option<i64>) -> Action {
        Action {
            side: Some(side),
            quantity: quantity.map(Decimal::from),
            price: price.map(Decimal::from),
            quote_quantity: quote.map(Decimal::from),
            ..Action::new(ActionKind::Trade, "POST /api/v3/order")
        }
    }

    #[test]
    fn a_trailing_stop_is_priced_as_far_above_the_market_as_it_may_trail() {
        let mut trailing_buy = order(Side::Buy, Some(2), None, None);
        trailing_buy.trail_percent = Some(Decimal::from(10));
        assert_eq!(trailing_buy.stated_notional(), None);
        assert_eq!(
            trailing_buy.priced_notional(Decimal::from(100)),
            Some(Decimal::from(220))
        );
    }

    #[test]
    fn a_trigger_above_the_market_prices_the_order() {
        let mut stop_buy = order(Side::Buy, Some(2), None, None);
        stop_buy.trigger_price = Some(Decimal::from(120));
        assert_eq!(stop_buy.stated_notional(), None);
        assert_eq!(
            stop_buy.priced_notional(Decimal::from(60)),
            Some(Decimal::from(240))
        );
        // A trigger below the market (a stop-loss sell) does not lower the price.
        let mut stop_sell = order(Side::Sell, Some(2), None, None);
        stop_sell.trigger_price = Some(Decimal::from(50));
        assert_eq!(
            stop_sell.priced_notional(Decimal::from(60)),
            Some(Decimal::from(120))
        );
    }

    #[test]
    fn a_symbol_is_quoted_in_the_asset_its_id_ends_with() {
        assert!(is_quoted_in("BTCUSDT", "USDT"));
        assert!(is_quoted_in("ETHBTC", "BTC"));
        assert!(is_quoted_in("BTCUSDT_250328", "USDT"));
        assert!(!is_quoted_in("ETHBTC", "USDT"));
        assert!(!is_quoted_in("BTCUSDT", "USD"));
        assert!(!is_quoted_in("USDT", "USDT"), "no base");
        assert!(!is_quoted_in("BTCUSDT", ""));
        assert!(!Action::new(ActionKind::Trade, "").is_quoted_in("USDT"));
    }

    #[test]
    fn only_a_bound_the_order_itself_guarantees_is_stated() {
        let d = Decimal::from;
        assert_eq!(
            order(Side::Buy, Some(2), Some(100), None).stated_notional(),
            Some(d(200))
        );
        assert_eq!(
            order(Side::Buy, None, None, Some(50)).stated_notional(),
            Some(d(50))
        );
        // Found by review: a sell given in quote gives away as much of the base asset as
        // the bids take to raise it; what it raises bounds nothing.
        assert_eq!(
            order(Side::Sell, None, None, Some(50)).stated_notional(),
            None
        );
        // A sell limit can fill far above its price; a market order in base has no bound.
        assert_eq!(
            order(Side::Sell, Some(2), Some(100), None).stated_notional(),
            None
        );
        assert_eq!(
            order(Side::Buy, Some(2), None, None).stated_notional(),
            None
        );
        // Both quantities: which one the exchange honours is not keygate's guess.
        assert_eq!(
            order(Side::Buy, Some(2), None, Some(50)).stated_notional(),
            None
        );
    }

    #[test]
    fn a_priced_order_counts_at_the_higher_of_market_and_its_own_price() {
        let d = Decimal::from;
        let sell_below_market = order(Side::Sell, Some(2), Some(100), None);
        assert_eq!(sell_below_market.priced_notional(d(500)), Some(d(1000)));
        let sell_above_market = order(Side::Sell, Some(2), Some(700), None);
        assert_eq!(sell_above_market.priced_notional(d(500)), Some(d(1400)));
        let market_with_quote = order(Side::Buy, Some(2), None, Some(5000));
        assert_eq!(market_with_quote.priced_notional(d(500)), Some(d(5000)));
        assert_eq!(
            order(Side::Buy, None, None, Some(5)).priced_notional(d(500)),
            None
        );
    }
}
