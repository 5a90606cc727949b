//! Accounts, balances, orders and trades, with a trivial matcher against the published book.

use std::collections::{BTreeMap, BTreeSet};

use rust_decimal::{Decimal, RoundingStrategy};

use crate::algo::AlgoOrder;
use crate::lists::OrderList;
use crate::market::{self, fmt, Market, Product};
use crate::routes::ApiError;

/// Free and reserved amount of one asset.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Balance {
    pub(crate) free: Decimal,
    pub(crate) locked: Decimal,
}

/// Order side.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Side {
    Buy,
    Sell,
}

impl Side {
    pub(crate) fn parse(value: &str) -> Result<Side, ApiError> {
        match value {
            "BUY" => Ok(Side::Buy),
            "SELL" => Ok(Side::Sell),
            _ => Err(ApiError::new(400, -1117, "Invalid side.")),
        }
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Side::Buy => "BUY",
            Side::Sell => "SELL",
        }
    }
}

/// Order type the simulator supports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum OrderType {
    Limit,
    Market,
    /// Spot's post-only limit order: refused when it would take (see [`place`]), else it
    /// rests as a `LIMIT` order does.
    LimitMaker,
    /// Spot: rests untriggered until the price reaches its stop price against it (a buy
    /// when it rises to it, a sell when it falls to it), then acts as a `MARKET` order.
    StopLoss,
    /// As [`OrderType::StopLoss`], then acting as a `LIMIT` order at its price.
    StopLossLimit,
    /// Spot: rests untriggered until the price reaches its stop price in its favour (a buy
    /// when it falls to it, a sell when it rises to it), then acts as a `MARKET` order.
    TakeProfit,
    /// As [`OrderType::TakeProfit`], then acting as a `LIMIT` order at its price.
    TakeProfitLimit,
}

impl OrderType {
    /// Reads `type` as `product` takes it: `LIMIT_MAKER` and the stop and take-profit
    /// types are spot's alone (USD-M's post only is the `GTX` time in force, its
    /// conditional orders go to the algo service, and naming one here is -4120).
    /// Anything else is -1116.
    pub(crate) fn parse(value: &str, product: Product) -> Result<OrderType, ApiError> {
        match (value, product) {
            (
                "STOP"
                | "STOP_MARKET"
                | "TAKE_PROFIT"
                | "TAKE_PROFIT_MARKET"
                | "TRAILING_STOP_MARKET",
                Product::UsdM,
            ) => Err(ApiError::new(
                400,
                -4120,
                "Order type not supported for this endpoint. Please use the Algo Order API \
                 endpoints instead.",
            )),
            ("LIMIT", _) => Ok(OrderType::Limit),
            ("MARKET", _) => Ok(OrderType::Market),
            ("LIMIT_MAKER", Product::Spot) => Ok(OrderType::LimitMaker),
            ("STOP_LOSS", Product::Spot) => Ok(OrderType::StopLoss),
            ("STOP_LOSS_LIMIT", Product::Spot) => Ok(OrderType::StopLossLimit),
            ("TAKE_PROFIT", Product::Spot) => Ok(OrderType::TakeProfit),
            ("TAKE_PROFIT_LIMIT", Product::Spot) => Ok(OrderType::TakeProfitLimit),
            _ => Err(ApiError::new(400, -1116, "Invalid orderType.")),
        }
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            OrderType::Limit => "LIMIT",
            OrderType::Market => "MARKET",
            OrderType::LimitMaker => "LIMIT_MAKER",
            OrderType::StopLoss => "STOP_LOSS",
            OrderType::StopLossLimit => "STOP_LOSS_LIMIT",
            OrderType::TakeProfit => "TAKE_PROFIT",
            OrderType::TakeProfitLimit => "TAKE_PROFIT_LIMIT",
        }
    }

    /// Whether an order of this type has a limit price (a conditional one once it
    /// triggers).
    pub(crate) fn is_limit(self) -> bool {
        matches!(
            self,
            OrderType::Limit
                | OrderType::LimitMaker
                | OrderType::StopLossLimit
                | OrderType::TakeProfitLimit
        )
    }

    /// Whether an order of this type waits for a stop price (or a trailing delta) before
    /// it acts.
    pub(crate) fn is_conditional(self) -> bool {
        matches!(
            self,
            OrderType::StopLoss
                | OrderType::StopLossLimit
                | OrderType::TakeProfit
                | OrderType::TakeProfitLimit
        )
    }

    /// Whether an order of this type is a stop loss (triggers against its side).
    pub(crate) fn is_stop_loss(self) -> bool {
        matches!(self, OrderType::StopLoss | OrderType::StopLossLimit)
    }

    /// Whether a conditional order of this type on `side` has already triggered with the
    /// price at `price`: a stop-loss buy or take-profit sell once it has risen to `stop`,
    /// a stop-loss sell or take-profit buy once it has fallen to it, as Binance's New
    /// order page states the trigger rules.
    pub(crate) fn triggers_at(self, side: Side, stop: Decimal, price: Decimal) -> bool {
        match (self.is_stop_loss(), side) {
            (true, Side::Buy) | (false, Side::Sell) => price >= stop,
            (true, Side::Sell) | (false, Side::Buy) => price <= stop,
        }
    }
}

/// One order, open or finished.
#[derive(Clone, Debug)]
pub(crate) struct Order {
    pub(crate) product: Product,
    pub(crate) symbol: &'static str,
    pub(crate) order_id: u64,
    pub(crate) client_order_id: String,
    pub(crate) side: Side,
    pub(crate) order_type: OrderType,
    pub(crate) time_in_force: String,
    pub(crate) price: Decimal,
    pub(crate) orig_qty: Decimal,
    pub(crate) executed_qty: Decimal,
    pub(crate) cumulative_quote: Decimal,
    pub(crate) orig_quote_qty: Decimal,
    pub(crate) status: &'static str,
    pub(crate) time: u64,
    pub(crate) update_time: u64,
    /// Amount reserved for a resting spot order (quote for BUY, base for SELL). The two
    /// legs of an OCO pair share one reservation, held by one of them.
    pub(crate) reserved: Decimal,
    /// USD-M `reduceOnly`, as the order was placed with it.
    pub(crate) reduce_only: bool,
    /// A spot conditional order's `stopPrice`, if it was given one.
    pub(crate) stop_price: Option<Decimal>,
    /// A spot conditional order's `trailingDelta` (in basis points), if it was given one.
    pub(crate) trailing_delta: Option<u64>,
    /// The order list the order is a leg of (`orderListId`; -1 when `None`).
    pub(crate) order_list_id: Option<u64>,
    /// When the order went on the book (`workingTime`): `None` (-1) for a conditional
    /// order that has not triggered and a pending leg of a list not yet placed.
    pub(crate) working_time: Option<u64>,
}

impl Order {
    /// Whether the order is still open: on the book, waiting for its trigger, or a
    /// pending leg of a list waiting for its working order (`PENDING_NEW`).
    pub(crate) fn is_open(&self) -> bool {
        matches!(self.status, "NEW" | "PARTIALLY_FILLED" | "PENDING_NEW")
    }

    /// Whether the order is a conditional order waiting for its trigger.
    pub(crate) fn is_untriggered(&self) -> bool {
        self.order_type.is_conditional() && self.status == "NEW" && self.working_time.is_none()
    }

    /// Whether the order is a conditional one whose stop price `price` has already
    /// reached ([`OrderType::triggers_at`]); one that only trails has none to reach.
    pub(crate) fn would_trigger_at(&self, price: Decimal) -> bool {
        self.order_type.is_conditional()
            && self
                .stop_price
                .is_some_and(|stop| self.order_type.triggers_at(self.side, stop, price))
    }
}

/// One fill.
#[derive(Clone, Debug)]
pub(crate) struct Trade {
    pub(crate) product: Product,
    pub(crate) symbol: &'static str,
    pub(crate) id: u64,
    pub(crate) order_id: u64,
    pub(crate) price: Decimal,
    pub(crate) qty: Decimal,
    pub(crate) commission_asset: &'static str,
    pub(crate) time: u64,
    pub(crate) is_buyer: bool,
    /// Whether the order was resting on the book when it filled (a limit order the
    /// market came to), not taking.
    pub(crate) is_maker: bool,
    /// The order list of the order that filled, if it is a leg of one.
    pub(crate) order_list_id: Option<u64>,
    /// The profit or loss the fill realized by reducing a USD-M position (zero on spot).
    pub(crate) realized_pnl: Decimal,
}

/// Everything one API key owns.
#[derive(Debug)]
pub(crate) struct Account {
    pub(crate) spot: BTreeMap<String, Balance>,
    pub(crate) futures: BTreeMap<String, Balance>,
    /// Signed position size per USD-M symbol.
    pub(crate) positions: BTreeMap<&'static str, Decimal>,
    /// The average price each open USD-M position was entered at.
    pub(crate) entry_prices: BTreeMap<&'static str, Decimal>,
    /// The leverage set per USD-M symbol (`POST /fapi/v1/leverage`); [`DEFAULT_LEVERAGE`]
    /// where none was set.
    pub(crate) leverage: BTreeMap<&'static str, u32>,
    /// The USD-M symbols set to isolated margin (`POST /fapi/v1/marginType`); the others
    /// are cross, as Binance starts an account.
    pub(crate) isolated: BTreeSet<&'static str>,
    pub(crate) orders: Vec<Order>,
    /// USD-M conditional orders, kept apart from `orders` as Binance's algo service keeps
    /// them, oldest (lowest `algoId`) first.
    pub(crate) algo_orders: Vec<AlgoOrder>,
    /// Spot order lists, oldest first; their legs are among `orders`.
    pub(crate) order_lists: Vec<OrderList>,
    pub(crate) trades: Vec<Trade>,
    pub(crate) withdrawals: Vec<Withdrawal>,
    /// The funding wallet (`POST /sapi/v1/asset/get-funding-asset`): empty at first, as a
    /// new Binance account's is, and moved to and from spot by transfers alone.
    pub(crate) funding: BTreeMap<String, Balance>,
    /// Transfers between wallets (`POST /sapi/v1/asset/transfer`), oldest first.
    pub(crate) transfers: Vec<Transfer>,
    /// USD-M Multi-Assets Mode (`POST /fapi/v1/multiAssetsMargin`); off, as Binance
    /// starts an account.
    pub(crate) multi_assets: bool,
    /// When each USD-M symbol's open orders are cancelled unless the countdown is renewed
    /// (`POST /fapi/v1/countdownCancelAll`), in ms on the simulator's clock.
    pub(crate) countdowns: BTreeMap<&'static str, u64>,
    /// Spot orders that filled as they were placed, not yet taken off the key's unfilled
    /// order count (see [`crate::limits::Counters::fill_order`]).
    pub(crate) unreported_fills: u64,
}

/// A transfer between two of an account's wallets, as `GET /sapi/v1/asset/transfer`
/// lists it.
#[derive(Debug)]
pub(crate) struct Transfer {
    pub(crate) tran_id: u64,
    /// Binance's transfer type, e.g. `MAIN_UMFUTURE`.
    pub(crate) kind: &'static str,
    pub(crate) asset: String,
    pub(crate) amount: Decimal,
    pub(crate) time: u64,
}

/// A withdrawal applied for, as `capital/withdraw/history` reports it.
#[derive(Debug)]
pub(crate) struct Withdrawal {
    pub(crate) id: String,
    pub(crate) coin: String,
    pub(crate) network: String,
    pub(crate) address: String,
    pub(crate) address_tag: Option<String>,
    pub(crate) amount: Decimal,
    pub(crate) apply_ms: u64,
}

impl Account {
    /// A fresh account with the documented starting balances.
    pub(crate) fn new() -> Account {
        let wallet = |list: Vec<(&str, Decimal)>| {
            list.into_iter()
                .map(|(asset, free)| {
                    (
                        asset.to_owned(),
                        Balance {
                            free,
                            locked: Decimal::ZERO,
                        },
                    )
                })
                .collect()
        };
        Account {
            spot: wallet(market::starting_spot_balances()),
            futures: wallet(market::starting_futures_balances()),
            positions: BTreeMap::new(),
            entry_prices: BTreeMap::new(),
            leverage: BTreeMap::new(),
            isolated: BTreeSet::new(),
            orders: Vec::new(),
            algo_orders: Vec::new(),
            order_lists: Vec::new(),
            trades: Vec::new(),
            withdrawals: Vec::new(),
            funding: BTreeMap::new(),
            transfers: Vec::new(),
            multi_assets: false,
            countdowns: BTreeMap::new(),
            unreported_fills: 0,
        }
    }

    /// The leverage of USD-M `symbol`.
    pub(crate) fn leverage_of(&self, symbol: &str) -> u32 {
        self.leverage
            .get(symbol)
            .copied()
            .unwrap_or(DEFAULT_LEVERAGE)
    }

    fn spot_balance(&mut self, asset: &str) -> &mut Balance {
        self.spot.entry(asset.to_owned()).or_default()
    }

    /// Moves `amount` of `asset` from the free spot balance to the locked one, for a
    /// resting order; -2010 when the free balance is short ([`Account::debit`]).
    pub(crate) fn lock(&mut self, asset: &str, amount: Decimal) -> Result<(), ApiError> {
        self.debit(asset, amount)?;
        self.spot_balance(asset).locked += amount;
        Ok(())
    }

    /// Debits `amount` of `asset` from the free spot balance, or -2010.
    pub(crate) fn debit(&mut self, asset: &str, amount: Decimal) -> Result<(), ApiError> {
        let balance = self.spot_balance(asset);
        if balance.free < amount {
            return Err(ApiError::insufficient_balance());
        }
        balance.free -= amount;
        Ok(())
    }
}

/// A validated new-order request.
#[derive(Debug)]
pub(crate) struct NewOrder {
    pub(crate) market: &'static Market,
    pub(crate) side: Side,
    pub(crate) order_type: OrderType,
    pub(crate) time_in_force: String,
    pub(crate) price: Option<Decimal>,
    pub(crate) quantity: Option<Decimal>,
    pub(crate) quote_order_qty: Option<Decimal>,
    pub(crate) client_order_id: String,
    /// USD-M `reduceOnly`: exempt from the minimum notional, as Binance's -4164 message
    /// says, and held to the position it reduces ([`place`]).
    pub(crate) reduce_only: bool,
    /// The price a limit price is held to by the percent price filter ([`check_order`]):
    /// the market's reference price, which stands for spot's average price and USD-M's
    /// mark price; for the order a conditional order places when it triggers, its
    /// trigger price, which the market has just reached.
    pub(crate) reference_price: Decimal,
    /// A spot conditional order's `stopPrice`.
    pub(crate) stop_price: Option<Decimal>,
    /// A spot conditional order's `trailingDelta`.
    pub(crate) trailing_delta: Option<u64>,
}

/// Is `value` a whole multiple of `step`?
fn is_multiple(value: Decimal, step: Decimal) -> bool {
    step.is_zero() || (value % step).is_zero()
}

/// A filter an order fails, as the simulator checks them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Failure {
    /// A price of zero.
    PriceNotPositive,
    /// A price under the minimum (the tick).
    PriceBelowMin,
    /// A price over the maximum.
    PriceAboveMax,
    /// A price off the tick.
    PriceOffTick,
    /// A quantity of zero (or a quote quantity of zero).
    QuantityNotPositive,
    /// A quantity under the minimum.
    QuantityBelowMin,
    /// A quantity over the maximum of a limit order.
    QuantityAboveMax,
    /// A quantity over the maximum of a market order.
    MarketQuantityAboveMax,
    /// A quantity off the step.
    QuantityOffStep,
    /// Price times quantity under the minimum notional.
    Notional,
    /// A limit price over the percent price filter's cap, which it carries.
    PriceAboveBand(Decimal),
    /// A limit price under the percent price filter's floor, which it carries.
    PriceBelowBand(Decimal),
}

impl Failure {
    /// The error `product` answers: spot names the filter under -1013; USD-M gives each
    /// failure its own code (USD-M error codes; the -4003 and -4164 messages as Binance
    /// sends them, which differ a little from its list).
    fn error(self, m: &Market) -> ApiError {
        match m.product {
            Product::Spot => ApiError::filter(match self {
                Failure::PriceNotPositive
                | Failure::PriceBelowMin
                | Failure::PriceAboveMax
                | Failure::PriceOffTick => "PRICE_FILTER",
                Failure::QuantityNotPositive
                | Failure::QuantityBelowMin
                | Failure::QuantityAboveMax
                | Failure::QuantityOffStep => "LOT_SIZE",
                Failure::MarketQuantityAboveMax => "MARKET_LOT_SIZE",
                Failure::Notional => "NOTIONAL",
                Failure::PriceAboveBand(_) | Failure::PriceBelowBand(_) => {
                    "PERCENT_PRICE_BY_SIDE"
                }
            }),
            Product::UsdM => match self {
                Failure::PriceNotPositive => ApiError::futures_filter(-4001, "Price less than 0."),
                Failure::PriceBelowMin => {
                    ApiError::futures_filter(-4013, "Price less than min price.")
                }
                Failure::PriceAboveMax => {
                    ApiError::futures_filter(-4016, "Price more than max price.")
                }
                Failure::QuantityAboveMax | Failure::MarketQuantityAboveMax => {
                    ApiError::futures_filter(-4005, "Quantity greater than max quantity.")
                }
                Failure::PriceOffTick => {
                    ApiError::futures_filter(-4014, "Price not increased by tick size.")
                }
                Failure::QuantityNotPositive => {
                    ApiError::futures_filter(-4003, "Quantity less than or equal to zero.")
                }
                Failure::QuantityBelowMin => {
                    ApiError::futures_filter(-4004, "Quantity less than min quantity.")
                }
                Failure::QuantityOffStep => {
                    ApiError::futures_filter(-4023, "Qty not increased by step size.")
                }
                Failure::Notional => ApiError::futures_filter(
                    -4164,
                    format!(
                        "Order's notional must be no smaller than {} (unless you choose reduce only).",
                        m.min_notional.normalize()
                    ),
                ),
                // The codes of Binance's list (PRICE_HIGHTER_THAN_MULTIPLIER_UP,
                // PRICE_LOWER_THAN_MULTIPLIER_DOWN), in the words Binance sends: the bound
                // to the market's price precision, cut towards the band.
                Failure::PriceAboveBand(cap) => ApiError::futures_filter(
                    -4016,
                    format!(
                        "Limit price can't be higher than {}.",
                        fmt(
                            cap.round_dp_with_strategy(
                                m.price_precision,
                                RoundingStrategy::ToZero
                            ),
                            m.price_precision
                        )
                    ),
                ),
                Failure::PriceBelowBand(floor) => ApiError::futures_filter(
                    -4024,
                    format!(
                        "Limit price can't be lower than {}.",
                        fmt(
                            floor.round_dp_with_strategy(
                                m.price_precision,
                                RoundingStrategy::AwayFromZero
                            ),
                            m.price_precision
                        )
                    ),
                ),
            },
        }
    }
}

/// Applies the price filter, the lot size and the minimum notional (after the price and
/// quantity precision: USD-M's `pricePrecision` and `quantityPrecision`, spot's asset
/// precision; not for a reduce-only order), returning the price to check and the quantity
/// to trade.
pub(crate) fn check_filters(order: &NewOrder) -> Result<(Decimal, Decimal), ApiError> {
    let m = order.market;
    let fail = |failure: Failure| failure.error(m);
    // A price (a limit price or a stop price) as the price filter holds it.
    let check_price = |price: Decimal| -> Result<Decimal, ApiError> {
        if market::places(price) > m.price_precision {
            return Err(ApiError::over_asset_precision());
        }
        if price <= Decimal::ZERO {
            return Err(fail(Failure::PriceNotPositive));
        }
        if price < m.tick_size {
            return Err(fail(Failure::PriceBelowMin));
        }
        if price > m.product.max_price() {
            return Err(fail(Failure::PriceAboveMax));
        }
        if !is_multiple(price, m.tick_size) {
            return Err(fail(Failure::PriceOffTick));
        }
        Ok(price)
    };
    if order.order_type.is_conditional() {
        if order.stop_price.is_none() && order.trailing_delta.is_none() {
            return Err(ApiError::new(
                400,
                -1102,
                "Param 'stopPrice' or 'trailingDelta' must be sent, but both were empty/null!",
            ));
        }
        if let Some(stop) = order.stop_price {
            check_price(stop)?;
        }
        // The symbols' TRAILING_DELTA filter: 10 to 2000 basis points, either way.
        if order
            .trailing_delta
            .is_some_and(|delta| !(10..=2000).contains(&delta))
        {
            return Err(ApiError::filter("TRAILING_DELTA"));
        }
    }
    let exec_price = if order.order_type.is_limit() {
        check_price(order.price.ok_or_else(|| ApiError::mandatory("price"))?)?
    } else if order.order_type == OrderType::Market {
        // The minimum notional holds a market order to the average price, which the
        // reference price stands for (`avgPriceMins`), not to where it fills.
        m.price
    } else {
        // A stop or take-profit order that acts as a market order: at its stop price,
        // where it will trigger (the price, for one that trails from it).
        order.stop_price.unwrap_or(m.price)
    };
    let quantity = match (order.quantity, order.quote_order_qty) {
        (Some(q), None) => q,
        (None, Some(quote)) if order.order_type == OrderType::Market => {
            if quote <= Decimal::ZERO {
                return Err(fail(Failure::Notional));
            }
            // Spent (or received) at the level the order fills at.
            let raw = quote / fill_price(order.side, m);
            (raw / m.step_size).floor() * m.step_size
        }
        (Some(_), Some(_)) => {
            return Err(ApiError::new(
                400,
                -1106,
                "Parameter 'quoteOrderQty' sent when not required.",
            ))
        }
        _ => return Err(ApiError::mandatory("quantity")),
    };
    if market::places(quantity) > m.quantity_precision {
        return Err(ApiError::over_asset_precision());
    }
    if quantity <= Decimal::ZERO {
        return Err(fail(Failure::QuantityNotPositive));
    }
    if quantity < m.min_qty {
        return Err(fail(Failure::QuantityBelowMin));
    }
    // Checked before any product: price and quantity within their maxima cannot overflow.
    let market_order = order.order_type == OrderType::Market;
    if quantity > m.product.max_quantity(market_order) {
        return Err(fail(if market_order {
            Failure::MarketQuantityAboveMax
        } else {
            Failure::QuantityAboveMax
        }));
    }
    if !is_multiple(quantity, m.step_size) {
        return Err(fail(Failure::QuantityOffStep));
    }
    let exempt = m.product == Product::UsdM && order.reduce_only;
    if quantity * exec_price < m.min_notional && !exempt {
        return Err(fail(Failure::Notional));
    }
    Ok((exec_price, quantity))
}

/// Every filter a new order is held to: [`check_filters`], then, for a limit order that
/// is not conditional (a conditional one is held to it when it triggers, see [`reach`]),
/// the percent price filter ([`check_percent_price`]); returns what [`check_filters`] does.
/// Binance does not say in which order it applies its filters; the simulator checks the
/// band last.
pub(crate) fn check_order(order: &NewOrder) -> Result<(Decimal, Decimal), ApiError> {
    let (price, quantity) = check_filters(order)?;
    if order.order_type.is_limit() && !order.order_type.is_conditional() {
        check_percent_price(order.market, order.side, price, order.reference_price)?;
    }
    Ok((price, quantity))
}

/// Holds a limit price on `side` to `m`'s percent price filter around `reference` (see
/// [`Product::price_band`]): spot's `PERCENT_PRICE_BY_SIDE`, refused with -1013 "Filter
/// failure: PERCENT_PRICE_BY_SIDE"; USD-M's `PERCENT_PRICE`, a buy over its cap refused
/// with -4016, a sell under its floor with -4024, each naming the bound.
///
/// It is not applied to a conditional order's prices when it is placed (Binance holds
/// those to its trigger price by other multipliers, which the simulator does not
/// model), only to the order it places when it triggers.
pub(crate) fn check_percent_price(
    m: &Market,
    side: Side,
    price: Decimal,
    reference: Decimal,
) -> Result<(), ApiError> {
    let band = m.product.price_band();
    let bounds = match side {
        Side::Buy => band.bid,
        Side::Sell => band.ask,
    };
    if let Some(cap) = bounds.up.map(|up| reference * up) {
        if price > cap {
            return Err(Failure::PriceAboveBand(cap).error(m));
        }
    }
    if let Some(floor) = bounds.down.map(|down| reference * down) {
        if price < floor {
            return Err(Failure::PriceBelowBand(floor).error(m));
        }
    }
    Ok(())
}

/// The quantity a USD-M reduce-only order of `quantity` on `side` trades, as Binance's
/// FAQ "Summary of Failed Orders in Binance Futures" states it. In one-way mode only an
/// order against the position reduces it: with no position, or on the position's side,
/// it is refused; so is one larger than the position, except a market order, which has
/// priority and closes the position, its quantity cut to the position's, so that it
/// never opens the other side. Refusals are -2022 "ReduceOnly Order is rejected.".
///
/// The simulator weighs the position alone: Binance also counts the account's other
/// open reduce-only orders against it, which the simulator does not.
fn reduce_only_quantity(
    account: &Account,
    m: &Market,
    side: Side,
    order_type: OrderType,
    quantity: Decimal,
) -> Result<Decimal, ApiError> {
    let position = account.positions.get(m.symbol).copied().unwrap_or_default();
    // What the order can take off: a sell reduces a long, a buy a short.
    let reducible = match side {
        Side::Buy => -position,
        Side::Sell => position,
    };
    let rejected = || ApiError::new(400, -2022, "ReduceOnly Order is rejected.");
    if reducible <= Decimal::ZERO {
        return Err(rejected());
    }
    match order_type {
        _ if quantity <= reducible => Ok(quantity),
        OrderType::Market => Ok(reducible),
        _ => Err(rejected()),
    }
}

/// The leverage of a USD-M symbol until one is set, as Binance starts an account at.
pub(crate) const DEFAULT_LEVERAGE: u32 = 20;
/// The highest leverage the simulator's USD-M symbols take (Binance's BTCUSDT bracket).
pub(crate) const MAX_LEVERAGE: u64 = 125;

/// Places an order once it passes every filter ([`check_order`]): fills at the best
/// level of the published book when it crosses ([`crosses`], [`fill_price`]), else rests
/// (and, on spot, reserves the balance); a spot conditional order rests untriggered,
/// reserving what it will trade, and is refused if its stop price is already reached. A
/// USD-M reduce-only order trades no more than the position ([`reduce_only_quantity`]).
/// Returns the order and its fills.
pub(crate) fn place(
    account: &mut Account,
    order: NewOrder,
    order_id: u64,
    next_trade_id: &mut u64,
    now: u64,
) -> Result<(Order, Vec<Trade>), ApiError> {
    let m = order.market;
    check_client_order_id(account, m.product, &order.client_order_id)?;
    let mut placed = new_record(account, order, order_id, now)?;
    let trades = start(account, &mut placed, next_trade_id, now, true)?;
    account.orders.push(placed.clone());
    Ok((placed, trades))
}

/// Refuses a client order id that an open order of `product` carries: it is unique among
/// the account's open orders, as Binance keeps it, and one that finished may be used
/// again.
pub(crate) fn check_client_order_id(
    account: &Account,
    product: Product,
    client_order_id: &str,
) -> Result<(), ApiError> {
    let taken = account
        .orders
        .iter()
        .any(|o| o.product == product && o.is_open() && o.client_order_id == client_order_id);
    if !taken {
        return Ok(());
    }
    Err(match product {
        Product::Spot => ApiError::new(400, -2010, "Duplicate order sent."),
        Product::UsdM => ApiError::new(400, -4116, "ClientOrderId is duplicated."),
    })
}

/// The record of `order`, held to the filters ([`check_order`]) and, for a USD-M
/// reduce-only order, to the position, as it stands before it is matched: `NEW`, working
/// from `now` (an untriggered conditional order is not working yet).
pub(crate) fn new_record(
    account: &Account,
    order: NewOrder,
    order_id: u64,
    now: u64,
) -> Result<Order, ApiError> {
    let m = order.market;
    let (limit_price, quantity) = check_order(&order)?;
    // A reduce-only order is held to the position (refused, and not recorded, as Binance
    // answers it, or cut to it); it takes no margin, for it frees what the position holds.
    let quantity = if m.product == Product::UsdM && order.reduce_only {
        reduce_only_quantity(account, m, order.side, order.order_type, quantity)?
    } else {
        quantity
    };
    Ok(Order {
        product: m.product,
        symbol: m.symbol,
        order_id,
        client_order_id: order.client_order_id,
        side: order.side,
        order_type: order.order_type,
        time_in_force: order.time_in_force,
        price: if order.order_type.is_limit() {
            limit_price
        } else {
            Decimal::ZERO
        },
        orig_qty: quantity,
        executed_qty: Decimal::ZERO,
        cumulative_quote: Decimal::ZERO,
        orig_quote_qty: order.quote_order_qty.unwrap_or(Decimal::ZERO),
        status: "NEW",
        time: now,
        update_time: now,
        reserved: Decimal::ZERO,
        reduce_only: order.reduce_only,
        stop_price: order.stop_price,
        trailing_delta: order.trailing_delta,
        order_list_id: None,
        working_time: (!order.order_type.is_conditional()).then_some(now),
    })
}

/// Puts `placed` (a record from [`new_record`], or a pending leg of a list being placed)
/// to work: a conditional order rests untriggered and reserves what it will trade (with
/// `refuse_reached`, -2010 "Order would trigger immediately." when the price has reached
/// its stop price already); any other is matched against the book, filling when it
/// crosses and otherwise resting (a `GTC` order) or expiring. Returns its fills. Refused,
/// it changes nothing of the account.
pub(crate) fn start(
    account: &mut Account,
    placed: &mut Order,
    next_trade_id: &mut u64,
    now: u64,
    refuse_reached: bool,
) -> Result<Vec<Trade>, ApiError> {
    let m = market::find(placed.product, placed.symbol).ok_or_else(ApiError::invalid_symbol)?;
    if placed.order_type.is_conditional() {
        if refuse_reached && placed.would_trigger_at(m.price) {
            return Err(ApiError::would_trigger_immediately());
        }
        let (asset, amount) = conditional_reservation(placed, m);
        account.lock(asset, amount)?;
        placed.reserved = amount;
        placed.status = "NEW";
        placed.working_time = None;
        return Ok(Vec::new());
    }
    placed.status = "NEW";
    placed.working_time = Some(now);
    let limit_price = if placed.order_type.is_limit() {
        placed.price
    } else {
        m.price
    };
    let crosses = placed.order_type == OrderType::Market || crosses(placed.side, placed.price, m);
    // Post only (USD-M's GTX): one that would take is refused and not recorded, as
    // Binance answers it; one that would not rests as a GTC order does.
    let post_only = placed.time_in_force == "GTX";
    // USD-M's FOK that cannot fill at once is refused and not recorded either (spot's
    // expires, and is).
    if m.product == Product::UsdM && placed.time_in_force == "FOK" && !crosses {
        return Err(ApiError::new(
            400,
            -5021,
            "Due to the order could not be filled immediately, the FOK order has been \
             rejected. The order will not be recorded in the order history",
        ));
    }
    if post_only && crosses {
        return Err(ApiError::new(
            400,
            -5022,
            "Due to the order could not be executed as maker, the Post Only order will be \
             rejected. The order will not be recorded in the order history",
        ));
    }
    // Spot's LIMIT_MAKER: one that would take is refused, and not recorded, as Binance
    // answers it; one that would not rests as a GTC limit order does.
    if placed.order_type == OrderType::LimitMaker && crosses {
        return Err(ApiError::new(
            400,
            -2010,
            "Order would immediately match and take.",
        ));
    }
    match m.product {
        Product::Spot => execute_spot(account, placed, m, crosses, next_trade_id, now),
        Product::UsdM => {
            if !placed.reduce_only {
                check_margin(
                    account,
                    m,
                    placed.side,
                    placed.orig_qty,
                    limit_price,
                    crosses,
                    None,
                )?;
            }
            let mut trades = Vec::new();
            if crosses {
                trades.push(fill(account, placed, m, next_trade_id, now));
            } else if !post_only && placed.time_in_force != "GTC" {
                placed.status = "EXPIRED";
            }
            Ok(trades)
        }
    }
}

/// What a spot conditional order reserves while it waits: a sell its quantity of the
/// base asset; a buy its quantity's worth of the quote asset at its limit price, or, for
/// one that acts as a market order, at its stop price (the price, for one that trails).
fn conditional_reservation(order: &Order, m: &Market) -> (&'static str, Decimal) {
    match order.side {
        Side::Sell => (m.base, order.orig_qty),
        Side::Buy if order.order_type.is_limit() => (m.quote, order.orig_qty * order.price),
        Side::Buy => (
            m.quote,
            order.orig_qty * order.stop_price.unwrap_or(m.price),
        ),
    }
}

/// Settles spot order `placed` against the book: when it `crosses`, fills it at the best
/// level (a limit buy needs its price's worth free, as Binance reserves it, though it
/// fills at the best ask, which may be lower: the rest comes back); else a `GTC` order
/// rests and reserves its quote (buy) or base (sell), and any other expires.
fn execute_spot(
    account: &mut Account,
    placed: &mut Order,
    m: &Market,
    crosses: bool,
    next_trade_id: &mut u64,
    now: u64,
) -> Result<Vec<Trade>, ApiError> {
    let quantity = placed.orig_qty;
    if crosses {
        let fill_quote = quantity * fill_price(placed.side, m);
        match placed.side {
            Side::Buy => {
                let needed = if placed.order_type.is_limit() {
                    placed.price * quantity
                } else {
                    fill_quote
                };
                account.debit(m.quote, needed)?;
                account.spot_balance(m.quote).free += needed - fill_quote;
                account.spot_balance(m.base).free += quantity;
            }
            Side::Sell => {
                account.debit(m.base, quantity)?;
                account.spot_balance(m.quote).free += fill_quote;
            }
        }
        return Ok(vec![fill(account, placed, m, next_trade_id, now)]);
    }
    if placed.time_in_force == "GTC" {
        let (asset, amount) = match placed.side {
            Side::Buy => (m.quote, quantity * placed.price),
            Side::Sell => (m.base, quantity),
        };
        account.lock(asset, amount)?;
        placed.reserved = amount;
    } else {
        placed.status = "EXPIRED";
    }
    Ok(Vec::new())
}

/// Acts on open spot order `order_id` as if the market had reached its price, which the
/// simulator's prices never do by themselves (`POST /__mock/trigger?orderId=N`): a
/// conditional order waiting for its trigger triggers, releases what it reserved and acts
/// as a `MARKET` order (filling at the best level) or as a `LIMIT` order at its price
/// (held to the percent price filter around its stop price, which the market has just
/// reached), filling if it crosses, else resting or expiring by its time in force; a
/// resting limit order fills in full at its own price. Returns the order as it now is
/// and its fills; an order that cannot be settled (the balance is short, the band refuses
/// the price) expires, and the error is returned. Any other order is -2011.
pub(crate) fn reach(
    account: &mut Account,
    order_id: u64,
    next_trade_id: &mut u64,
    now: u64,
) -> Result<(Order, Vec<Trade>), ApiError> {
    let index = account
        .orders
        .iter()
        .position(|o| o.product == Product::Spot && o.order_id == order_id)
        .filter(|&i| matches!(account.orders[i].status, "NEW" | "PARTIALLY_FILLED"))
        .ok_or_else(ApiError::unknown_order)?;
    let mut order = account.orders[index].clone();
    let m = market::find(Product::Spot, order.symbol).ok_or_else(ApiError::invalid_symbol)?;
    release(account, &mut order);
    order.update_time = now;
    let settled = if order.is_untriggered() {
        order.working_time = Some(now);
        let reference = order.stop_price.unwrap_or(m.price);
        let crosses = !order.order_type.is_limit() || crosses(order.side, order.price, m);
        (if order.order_type.is_limit() {
            check_percent_price(m, order.side, order.price, reference)
        } else {
            Ok(())
        })
        .and_then(|()| execute_spot(account, &mut order, m, crosses, next_trade_id, now))
    } else {
        let cost = order.orig_qty * order.price;
        let paid = match order.side {
            Side::Buy => account.debit(m.quote, cost).map(|()| {
                account.spot_balance(m.base).free += order.orig_qty;
            }),
            Side::Sell => account.debit(m.base, order.orig_qty).map(|()| {
                account.spot_balance(m.quote).free += cost;
            }),
        };
        paid.map(|()| {
            let price = order.price;
            vec![fill_at(
                account,
                &mut order,
                m,
                (price, true),
                next_trade_id,
                now,
            )]
        })
    };
    match settled {
        Ok(trades) => {
            account.orders[index] = order.clone();
            Ok((order, trades))
        }
        Err(error) => {
            order.status = "EXPIRED";
            account.orders[index] = order;
            Err(error)
        }
    }
}

/// Gives what spot `order` reserved back to the free balance.
pub(crate) fn release(account: &mut Account, order: &mut Order) {
    let reserved = std::mem::take(&mut order.reserved);
    if order.product != Product::Spot || reserved.is_zero() {
        return;
    }
    let Some(m) = market::find(Product::Spot, order.symbol) else {
        return;
    };
    let asset = match order.side {
        Side::Sell => m.base,
        Side::Buy => m.quote,
    };
    let balance = account.spot_balance(asset);
    balance.locked -= reserved;
    balance.free += reserved;
}

/// The initial margin USD-M positions and open orders hold, in the margin asset (USDT,
/// the simulator's only one), as `GET /fapi/v2/account` reports it.
///
/// A simplified model of Binance's cross margin: a position holds its size times the
/// reference price (the mark price) over the symbol's leverage; an open order that is
/// not reduce-only holds its unfilled quantity times its price over the leverage, even
/// one against the position, which Binance counts for less; a reduce-only order holds
/// nothing. There are no fees. A position's unrealized profit or loss (see
/// [`Account::unrealized_pnl`]) counts towards the margin balance the margin is held
/// against.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Margin {
    pub(crate) position: Decimal,
    pub(crate) open_orders: Decimal,
}

impl Margin {
    /// Both together: Binance's `totalInitialMargin`.
    pub(crate) fn total(self) -> Decimal {
        self.position + self.open_orders
    }
}

impl Account {
    /// The USD-M wallet balance: the margin asset, free and locked.
    pub(crate) fn wallet_balance(&self) -> Decimal {
        self.futures.values().map(|b| b.free + b.locked).sum()
    }

    /// The initial margin of `symbol`'s position and open orders, or of every symbol's.
    pub(crate) fn margin(&self, symbol: Option<&str>) -> Margin {
        let mut margin = Margin::default();
        for m in market::of(Product::UsdM).filter(|m| symbol.is_none_or(|s| s == m.symbol)) {
            let leverage = Decimal::from(self.leverage_of(m.symbol));
            let position = self.positions.get(m.symbol).copied().unwrap_or_default();
            margin.position += position.abs() * m.price / leverage;
            margin.open_orders += self
                .orders
                .iter()
                .filter(|o| o.product == Product::UsdM && o.symbol == m.symbol)
                .map(|o| order_margin(o, leverage))
                .sum::<Decimal>();
        }
        margin
    }

    /// The unrealized profit or loss of `symbol`'s position, or of every symbol's: its
    /// size times the mark price's (the reference price's) distance from its entry price.
    pub(crate) fn unrealized_pnl(&self, symbol: Option<&str>) -> Decimal {
        market::of(Product::UsdM)
            .filter(|m| symbol.is_none_or(|s| s == m.symbol))
            .map(|m| {
                let position = self.positions.get(m.symbol).copied().unwrap_or_default();
                let entry = self.entry_prices.get(m.symbol).copied().unwrap_or(m.price);
                position * (m.price - entry)
            })
            .sum()
    }

    /// The wallet with the unrealized profit or loss: Binance's `marginBalance`.
    pub(crate) fn margin_balance(&self) -> Decimal {
        self.wallet_balance() + self.unrealized_pnl(None)
    }

    /// What the margin balance has beyond the initial margin: Binance's
    /// `availableBalance`.
    pub(crate) fn available_balance(&self) -> Decimal {
        (self.margin_balance() - self.margin(None).total()).max(Decimal::ZERO)
    }
}

/// The initial margin an open USD-M order holds at `leverage` (see [`Margin`]).
fn order_margin(order: &Order, leverage: Decimal) -> Decimal {
    if !order.is_open() || order.reduce_only {
        return Decimal::ZERO;
    }
    (order.orig_qty - order.executed_qty) * order.price / leverage
}

/// Refuses with -2019 "Margin is insufficient." an order that would raise the account's
/// initial margin (see [`Margin`]) above its margin balance (the wallet with the
/// unrealized profit or loss): a new one of `quantity` on
/// `side` that rests at `price` or, when it `takes`, fills and moves the position (held
/// at the mark price); or `replacing`'s order modified to it. An order that lowers the
/// margin, such as one closing a position, is never refused for it.
fn check_margin(
    account: &Account,
    m: &Market,
    side: Side,
    quantity: Decimal,
    price: Decimal,
    takes: bool,
    replacing: Option<usize>,
) -> Result<(), ApiError> {
    let leverage = Decimal::from(account.leverage_of(m.symbol));
    let before = account.margin(None).total();
    let mut after = before;
    if let Some(order) = replacing.and_then(|index| account.orders.get(index)) {
        after -= order_margin(order, leverage);
    }
    if takes {
        let position = account.positions.get(m.symbol).copied().unwrap_or_default();
        let moved = match side {
            Side::Buy => position + quantity,
            Side::Sell => position - quantity,
        };
        after += (moved.abs() - position.abs()) * m.price / leverage;
    } else {
        after += quantity * price / leverage;
    }
    if after > before && after > account.margin_balance() {
        return Err(ApiError::new(400, -2019, "Margin is insufficient."));
    }
    Ok(())
}

/// Whether a limit order on `side` at `price` takes from the book the simulator publishes
/// (depth and book tickers): a buy at or above its best ask, a sell at or below its best
/// bid. One between them rests.
fn crosses(side: Side, price: Decimal, m: &Market) -> bool {
    match side {
        Side::Buy => price >= market::best_ask(m),
        Side::Sell => price <= market::best_bid(m),
    }
}

/// The price an order on `side` that takes fills at: the best level of the published book
/// it crosses, the best ask for a buy, the best bid for a sell.
pub(crate) fn fill_price(side: Side, m: &Market) -> Decimal {
    match side {
        Side::Buy => market::best_ask(m),
        Side::Sell => market::best_bid(m),
    }
}

/// Moves the USD-M position in `m` by a fill of `quantity` on `side` at `price`, keeping
/// its average entry price, and credits the wallet with the profit or loss the part that
/// reduces the position realizes (its size times the price's distance from the entry
/// price), which it returns. A fill that turns the position around enters the rest at
/// `price`.
fn move_position(
    account: &mut Account,
    m: &Market,
    side: Side,
    quantity: Decimal,
    price: Decimal,
) -> Decimal {
    let delta = match side {
        Side::Buy => quantity,
        Side::Sell => -quantity,
    };
    let before = account.positions.get(m.symbol).copied().unwrap_or_default();
    let after = before + delta;
    let entry = account
        .entry_prices
        .get(m.symbol)
        .copied()
        .unwrap_or_default();
    let grows = before.is_zero() || before.is_sign_positive() == delta.is_sign_positive();
    let mut realized = Decimal::ZERO;
    let new_entry = if grows {
        Some((before.abs() * entry + quantity * price) / after.abs())
    } else {
        let closed = quantity.min(before.abs());
        // A long gains as the price rises over its entry, a short as it falls under it.
        let gain = if before.is_sign_positive() {
            price - entry
        } else {
            entry - price
        };
        realized = closed * gain;
        if after.is_zero() {
            None
        } else if after.is_sign_positive() != before.is_sign_positive() {
            Some(price)
        } else {
            Some(entry)
        }
    };
    match new_entry {
        Some(entry) => account.entry_prices.insert(m.symbol, entry),
        None => account.entry_prices.remove(m.symbol),
    };
    account.positions.insert(m.symbol, after);
    if !realized.is_zero() {
        account.futures.entry(m.quote.to_owned()).or_default().free += realized;
    }
    realized
}

/// Fills `order` in full at the best level of the published book it crosses
/// ([`fill_price`]) and records the trade; on USD-M it moves the position too
/// ([`move_position`]), on spot the caller moves the balances.
fn fill(
    account: &mut Account,
    order: &mut Order,
    m: &Market,
    next_trade_id: &mut u64,
    now: u64,
) -> Trade {
    let price = fill_price(order.side, m);
    fill_at(account, order, m, (price, false), next_trade_id, now)
}

/// Fills `order` in full at `price` and records the trade, as [`fill`] does; as the
/// maker when `is_maker` (a resting order the market came to).
fn fill_at(
    account: &mut Account,
    order: &mut Order,
    m: &Market,
    (price, is_maker): (Decimal, bool),
    next_trade_id: &mut u64,
    now: u64,
) -> Trade {
    order.executed_qty = order.orig_qty;
    order.cumulative_quote = order.orig_qty * price;
    order.status = "FILLED";
    let realized_pnl = match m.product {
        Product::Spot => Decimal::ZERO,
        Product::UsdM => move_position(account, m, order.side, order.orig_qty, price),
    };
    let trade = Trade {
        product: m.product,
        symbol: m.symbol,
        id: *next_trade_id,
        order_id: order.order_id,
        price,
        qty: order.orig_qty,
        // Spot pays commission in what it receives; USD-M in the margin asset.
        commission_asset: match (m.product, order.side) {
            (Product::Spot, Side::Buy) => m.base,
            (Product::Spot, Side::Sell) | (Product::UsdM, _) => m.quote,
        },
        time: now,
        is_buyer: order.side == Side::Buy,
        is_maker,
        order_list_id: order.order_list_id,
        realized_pnl,
    };
    *next_trade_id += 1;
    account.trades.push(trade.clone());
    trade
}

/// A USD-M modification as `PUT /fapi/v1/order` states it: the side the order has, and
/// its new quantity and price (Binance's USD-M endpoint requires both).
#[derive(Debug)]
pub(crate) struct Modification {
    pub(crate) side: Side,
    pub(crate) quantity: Decimal,
    pub(crate) price: Decimal,
}

/// Modifies an open USD-M limit order in place, as Binance's Modify Order does: same
/// `orderId` and `clientOrderId`, the new price and quantity, a new `updateTime`, and
/// the order matched again at its new price, so that one which now crosses fills.
///
/// Refused, the order staying as it was (USD-M error codes, 50xx): an order that is not
/// open, or none at all, -2013 "Order does not exist." (the simulator keeps no archive, so
/// a finished order is as gone as an unknown one); an order that is not a limit order,
/// -5025; a modification that changes nothing, -5027; a side other than the order's, -1130
/// (Binance documents no code for it and does not flip a side); a price or quantity the
/// filters refuse (the percent price filter among them), with the new order's code, except
/// the minimum notional, which a modification fails with -5029; more margin than the wallet
/// has, -2019; a reduce-only order to more than the position it reduces (or with none left
/// to reduce), -2022, as a new one is refused. A post-only (GTX) order modified to a price
/// that would take is cancelled, as Binance does. Binance cancels an order modified to a
/// quantity at or below what it filled too, but the simulator's orders never fill in part,
/// so that cannot arise.
pub(crate) fn modify(
    account: &mut Account,
    symbol: &str,
    by: &OrderRef<'_>,
    change: Modification,
    next_trade_id: &mut u64,
    now: u64,
) -> Result<(Order, Vec<Trade>), ApiError> {
    let m = market::find(Product::UsdM, symbol).ok_or_else(ApiError::invalid_symbol)?;
    let index = find_index(account, Product::UsdM, symbol, by)
        .filter(|&i| account.orders[i].is_open())
        .ok_or_else(|| ApiError::new(400, -2013, "Order does not exist."))?;
    let mut order = account.orders[index].clone();
    if order.order_type != OrderType::Limit {
        return Err(ApiError::new(400, -5025, "Only limit order is supported."));
    }
    if change.side != order.side {
        return Err(ApiError::invalid_parameter("side"));
    }
    if change.price == order.price && change.quantity == order.orig_qty {
        return Err(ApiError::new(400, -5027, "No need to modify the order."));
    }
    let check = NewOrder {
        market: m,
        side: order.side,
        order_type: OrderType::Limit,
        time_in_force: order.time_in_force.clone(),
        price: Some(change.price),
        quantity: Some(change.quantity),
        quote_order_qty: None,
        client_order_id: order.client_order_id.clone(),
        reduce_only: order.reduce_only,
        reference_price: m.price,
        stop_price: None,
        trailing_delta: None,
    };
    check_order(&check).map_err(|error| match error.code {
        -4164 => ApiError::futures_filter(
            -5029,
            format!(
                "Order's notional must be no smaller than {}",
                m.min_notional.normalize()
            ),
        ),
        _ => error,
    })?;
    let crosses = crosses(order.side, change.price, m);
    // A post-only order that would take is cancelled, and then holds no margin.
    let post_only_cancelled = crosses && order.time_in_force == "GTX";
    if order.reduce_only {
        reduce_only_quantity(account, m, order.side, OrderType::Limit, change.quantity)?;
    } else if !post_only_cancelled {
        let (quantity, price) = (change.quantity, change.price);
        check_margin(
            account,
            m,
            order.side,
            quantity,
            price,
            crosses,
            Some(index),
        )?;
    }
    order.price = change.price;
    order.orig_qty = change.quantity;
    order.update_time = now;
    let mut trades = Vec::new();
    if post_only_cancelled {
        order.status = "CANCELED";
    } else if crosses {
        trades.push(fill(account, &mut order, m, next_trade_id, now));
    }
    account.orders[index] = order.clone();
    Ok((order, trades))
}

/// How a request names an order.
#[derive(Debug)]
pub(crate) enum OrderRef<'a> {
    Id(u64),
    Client(&'a str),
}

/// Finds an order of `symbol` by id or client id. A client id may have been used again
/// once its order finished; it names the open order that carries it, if there is one
/// (there is at most one), else the latest order placed with it.
pub(crate) fn find<'a>(
    account: &'a mut Account,
    product: Product,
    symbol: &str,
    by: &OrderRef<'_>,
) -> Option<&'a mut Order> {
    let index = find_index(account, product, symbol, by)?;
    account.orders.get_mut(index)
}

/// Where in `account.orders` the order [`find`] finds is.
fn find_index(
    account: &Account,
    product: Product,
    symbol: &str,
    by: &OrderRef<'_>,
) -> Option<usize> {
    let named = |o: &Order| {
        o.product == product
            && o.symbol == symbol
            && match by {
                OrderRef::Id(id) => o.order_id == *id,
                OrderRef::Client(client) => o.client_order_id == *client,
            }
    };
    match by {
        OrderRef::Id(_) => account.orders.iter().position(named),
        OrderRef::Client(_) => account
            .orders
            .iter()
            .position(|o| named(o) && o.is_open())
            .or_else(|| account.orders.iter().rposition(named)),
    }
}

/// Cancels an open order and releases its reservation, or -2011.
pub(crate) fn cancel(
    account: &mut Account,
    product: Product,
    symbol: &str,
    by: &OrderRef<'_>,
    now: u64,
) -> Result<Order, ApiError> {
    let unknown = ApiError::unknown_order;
    market::find(product, symbol).ok_or_else(ApiError::invalid_symbol)?;
    let index = find_index(account, product, symbol, by)
        .filter(|&i| account.orders[i].is_open())
        .ok_or_else(unknown)?;
    Ok(end(account, index, "CANCELED", now))
}

/// Ends open order `index` of `account` with `status` (`CANCELED` or `EXPIRED`) as of
/// `now`, releasing what it reserved; returns it as it now is.
pub(crate) fn end(account: &mut Account, index: usize, status: &'static str, now: u64) -> Order {
    let mut order = account.orders[index].clone();
    release(account, &mut order);
    order.status = status;
    order.update_time = now;
    account.orders[index] = order.clone();
    order
}

/// Cancels the open USD-M orders of every symbol whose countdown
/// (`POST /fapi/v1/countdownCancelAll`) has run out by `now`, as of the moment it ran out,
/// and forgets that countdown. The simulator has no timer of its own: this runs before
/// anything reads or changes an account, so no request sees an order the countdown
/// should have cancelled.
pub(crate) fn expire_countdowns(account: &mut Account, now: u64) {
    let expired: Vec<(&'static str, u64)> = account
        .countdowns
        .iter()
        .filter(|(_, deadline)| **deadline <= now)
        .map(|(symbol, deadline)| (*symbol, *deadline))
        .collect();
    for (symbol, deadline) in expired {
        account.countdowns.remove(symbol);
        let open: Vec<u64> = account
            .orders
            .iter()
            .filter(|o| o.product == Product::UsdM && o.symbol == symbol && o.is_open())
            .map(|o| o.order_id)
            .collect();
        for order_id in open {
            // Each of these orders is open and of a listed symbol, so `cancel` cannot
            // refuse it; were it to, the order would stay open, which is all it could do.
            let _ = cancel(
                account,
                Product::UsdM,
                symbol,
                &OrderRef::Id(order_id),
                deadline,
            );
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)] // Tests may panic.
mod tests {
    use super::*;

    fn new_order(symbol: &str, side: Side, price: Option<&str>, qty: &str) -> NewOrder {
        NewOrder {
            market: market::find(Product::Spot, symbol).unwrap(),
            side,
            order_type: if price.is_some() {
                OrderType::Limit
            } else {
                OrderType::Market
            },
            time_in_force: "GTC".into(),
            price: price.map(|p| p.parse().unwrap()),
            quantity: Some(qty.parse().unwrap()),
            quote_order_qty: None,
            client_order_id: "c1".into(),
            reduce_only: false,
            reference_price: market::find(Product::Spot, symbol).unwrap().price,
            stop_price: None,
            trailing_delta: None,
        }
    }

    fn futures_order(market: &'static Market, price: Option<&str>, qty: &str) -> NewOrder {
        NewOrder {
            market,
            ..new_order("BTCUSDT", Side::Buy, price, qty)
        }
    }

    /// Regression: USD-M filter failures answered spot's -1013 "Filter failure: …"; Binance
    /// futures answers each with its own code and message.
    #[test]
    fn usdm_filter_failures_answer_futures_codes() {
        let btc = market::find(Product::UsdM, "BTCUSDT").unwrap();
        // A market whose step is finer than its precision allows, for -4023 and -4004
        // (BTCUSDT's step is its precision's last digit, so only -1111 is reachable there).
        let coarse: &'static Market = Box::leak(Box::new(Market {
            step_size: Decimal::new(5, 3),
            min_qty: Decimal::new(10, 3),
            ..*btc
        }));
        for (market, price, qty, code, msg) in [
            (
                btc,
                Some("60000.05"),
                "0.01",
                -4014,
                "Price not increased by tick size.",
            ),
            (
                btc,
                Some("60000.123"),
                "0.01",
                -1111,
                "Precision is over the maximum defined for this asset.",
            ),
            (btc, Some("0"), "0.01", -4001, "Price less than 0."),
            (
                btc,
                Some("0.01"),
                "0.01",
                -4013,
                "Price less than min price.",
            ),
            (
                btc,
                Some("60000"),
                "0.0015",
                -1111,
                "Precision is over the maximum defined for this asset.",
            ),
            (
                btc,
                Some("60000"),
                "0",
                -4003,
                "Quantity less than or equal to zero.",
            ),
            (
                btc,
                None,
                "0.000",
                -4003,
                "Quantity less than or equal to zero.",
            ),
            (
                btc,
                Some("50000"),
                "0.001",
                -4164,
                "Order's notional must be no smaller than 100 (unless you choose reduce only).",
            ),
            (
                coarse,
                Some("60000"),
                "0.012",
                -4023,
                "Qty not increased by step size.",
            ),
            (
                coarse,
                Some("60000"),
                "0.005",
                -4004,
                "Quantity less than min quantity.",
            ),
        ] {
            let order = futures_order(market, price, qty);
            let err = check_filters(&order).unwrap_err();
            assert_eq!((err.code, err.msg.as_ref()), (code, msg), "{price:?} {qty}");
        }
        // Trailing zeros are not precision.
        let order = futures_order(btc, Some("60000.1000"), "0.0100");
        assert!(check_filters(&order).is_ok());
        // Spot keeps its own codes for the same failures.
        for (price, qty, filter) in [
            (Some("60000.005"), "0.01", "PRICE_FILTER"),
            (Some("60000"), "0.000001", "LOT_SIZE"),
            (Some("60000"), "0.00001", "NOTIONAL"),
        ] {
            let err = check_filters(&new_order("BTCUSDT", Side::Buy, price, qty)).unwrap_err();
            assert_eq!(err.code, -1013);
            assert_eq!(err.msg, format!("Filter failure: {filter}"));
        }
    }

    /// The percent price filter's bounds, on each side of each product, and the bound a
    /// USD-M refusal names: to the price precision, cut towards the band, so that a price
    /// at the bound named passes.
    #[test]
    fn percent_price_bounds_are_each_products() {
        let spot = market::find(Product::Spot, "BTCUSDT").unwrap();
        let usdm = market::find(Product::UsdM, "BTCUSDT").unwrap();
        let at = |m: &Market, side: Side, price: &str, reference: &str| {
            check_percent_price(m, side, price.parse().unwrap(), reference.parse().unwrap())
                .map_err(|e| (e.code, e.msg.into_owned()))
        };
        let spot_refusal = Err((-1013, "Filter failure: PERCENT_PRICE_BY_SIDE".to_owned()));
        for side in [Side::Buy, Side::Sell] {
            assert_eq!(at(spot, side, "20", "100"), Ok(()));
            assert_eq!(at(spot, side, "500", "100"), Ok(()));
            assert_eq!(at(spot, side, "19.99", "100"), spot_refusal);
            assert_eq!(at(spot, side, "500.01", "100"), spot_refusal);
        }
        // USD-M caps a buy and floors a sell, nothing else.
        assert_eq!(at(usdm, Side::Buy, "1", "60000"), Ok(()));
        assert_eq!(at(usdm, Side::Sell, "4000000", "60000"), Ok(()));
        // 100.07 × 1.05 = 105.0735 and × 0.95 = 95.0665.
        assert_eq!(at(usdm, Side::Buy, "105.07", "100.07"), Ok(()));
        assert_eq!(
            at(usdm, Side::Buy, "105.08", "100.07"),
            Err((-4016, "Limit price can't be higher than 105.07.".to_owned()))
        );
        assert_eq!(at(usdm, Side::Sell, "95.07", "100.07"), Ok(()));
        assert_eq!(
            at(usdm, Side::Sell, "95.06", "100.07"),
            Err((-4024, "Limit price can't be lower than 95.07.".to_owned()))
        );
    }

    /// A reduce-only order against a long of 0.5: a buy, or nothing left, is refused; a
    /// limit order larger than the long is refused, a market one cut to it.
    #[test]
    fn a_reduce_only_order_is_held_to_the_position() {
        let m = market::find(Product::UsdM, "BTCUSDT").unwrap();
        let mut account = Account::new();
        let half = Decimal::new(5, 1);
        let quantity = |account: &Account, side, order_type, quantity: &str| {
            reduce_only_quantity(account, m, side, order_type, quantity.parse().unwrap())
                .map_err(|e| e.code)
        };
        assert_eq!(
            quantity(&account, Side::Sell, OrderType::Market, "0.1"),
            Err(-2022)
        );
        account.positions.insert(m.symbol, half);
        assert_eq!(
            quantity(&account, Side::Buy, OrderType::Market, "0.1"),
            Err(-2022)
        );
        for order_type in [OrderType::Limit, OrderType::Market] {
            assert_eq!(quantity(&account, Side::Sell, order_type, "0.5"), Ok(half));
            assert_eq!(
                quantity(&account, Side::Sell, order_type, "0.2"),
                Ok(Decimal::new(2, 1))
            );
        }
        assert_eq!(
            quantity(&account, Side::Sell, OrderType::Limit, "0.6"),
            Err(-2022)
        );
        assert_eq!(
            quantity(&account, Side::Sell, OrderType::Market, "9"),
            Ok(half)
        );
    }

    #[test]
    fn resting_order_reserves_and_cancel_releases() {
        let mut account = Account::new();
        let mut trade_id = 1;
        let (order, trades) = place(
            &mut account,
            new_order("BTCUSDT", Side::Buy, Some("50000"), "1"),
            7,
            &mut trade_id,
            0,
        )
        .unwrap();
        assert_eq!(order.status, "NEW");
        assert!(trades.is_empty());
        assert_eq!(account.spot["USDT"].locked, Decimal::from(50_000));
        assert_eq!(account.spot["USDT"].free, Decimal::from(950_000));
        cancel(&mut account, Product::Spot, "BTCUSDT", &OrderRef::Id(7), 1).unwrap();
        assert_eq!(account.spot["USDT"].locked, Decimal::ZERO);
        assert_eq!(account.spot["USDT"].free, Decimal::from(1_000_000));
        let err = cancel(&mut account, Product::Spot, "BTCUSDT", &OrderRef::Id(7), 1).unwrap_err();
        assert_eq!(err.code, -2011);
    }

    /// Regression: a crossing limit buy was checked against its cost at the reference
    /// price, so the simulator filled a buy Binance refuses (-2010) for want of its
    /// price's worth of quote.
    #[test]
    fn a_crossing_limit_buy_needs_its_limit_price_worth_free() {
        let mut account = Account::new();
        let mut trade_id = 1;
        // 15 BTC at 70 000 is 1 050 000 USDT: more than the million there is, though the
        // fill at 60 000 would cost 900 000.
        let err = place(
            &mut account,
            new_order("BTCUSDT", Side::Buy, Some("70000"), "15"),
            1,
            &mut trade_id,
            0,
        )
        .unwrap_err();
        assert_eq!(err.code, -2010);
        assert_eq!(account.spot["USDT"].free, Decimal::from(1_000_000));
        // Within it, the buy fills at the best ask (60 000.01) and the rest comes back.
        let (order, _) = place(
            &mut account,
            new_order("BTCUSDT", Side::Buy, Some("70000"), "10"),
            2,
            &mut trade_id,
            0,
        )
        .unwrap();
        assert_eq!(order.status, "FILLED");
        assert_eq!(account.spot["USDT"].free, Decimal::new(3_999_999, 1));
        assert_eq!(account.spot["BTC"].free, Decimal::from(20));
    }

    /// A crossing sell fills at the best bid, one tick under the reference price.
    #[test]
    fn crossing_sell_fills_at_the_best_bid() {
        let mut account = Account::new();
        let mut trade_id = 1;
        let (order, trades) = place(
            &mut account,
            new_order("BTCUSDT", Side::Sell, Some("13000"), "2"),
            1,
            &mut trade_id,
            0,
        )
        .unwrap();
        assert_eq!(order.status, "FILLED");
        assert_eq!(trades[0].price, Decimal::new(5_999_999, 2));
        assert_eq!(account.spot["BTC"].free, Decimal::from(8));
        assert_eq!(account.spot["USDT"].free, Decimal::new(111_999_998, 2));
    }

    #[test]
    fn insufficient_balance_is_2010() {
        let mut account = Account::new();
        let mut trade_id = 1;
        let err = place(
            &mut account,
            new_order("BTCUSDT", Side::Sell, None, "11"),
            1,
            &mut trade_id,
            0,
        )
        .unwrap_err();
        assert_eq!(err.code, -2010);
    }
}
