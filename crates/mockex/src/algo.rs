//! USD-M conditional orders, which Binance keeps in its "algo service" (since 2025-12-09):
//! `POST`, `DELETE` and `GET /fapi/v1/algoOrder`, `GET /fapi/v1/openAlgoOrders`,
//! `GET /fapi/v1/allAlgoOrders`, `DELETE /fapi/v1/algoOpenOrders`, and the test control
//! `POST /__mock/trigger`.
//!
//! A conditional order waits in the algo service, apart from the order book, under ids of
//! its own (`algoId`, `clientAlgoId`). The simulator's prices never move, so nothing
//! triggers by itself: a test triggers an order ([`trigger`]), which then places its order
//! in the futures book as `POST /fapi/v1/order` would, under an `orderId` and a
//! `clientOrderId` of the order's own, as Binance does.

use rust_decimal::Decimal;
use serde_json::{json, Value};

use crate::auth::Params;
use crate::book::{self, Account, NewOrder, OrderType, Side};
use crate::market::{fmt, Market, Product};
use crate::routes::{self, ApiError, Ids};

/// The first `algoId` a simulator gives: far from the first `orderId` (1), so that a
/// client that takes one id for the other is caught.
pub(crate) const FIRST_ALGO_ID: u64 = 1_000_001;

/// A week in milliseconds: `allAlgoOrders` spans less than this.
const WEEK_MS: u64 = 7 * 24 * 3600 * 1000;

/// What a `clientAlgoId` may hold, as Binance's -1100 message writes it.
const CLIENT_ALGO_ID_PATTERN: &str = "^[\\.A-Z\\:/a-z0-9_-]{1,36}$";

/// A conditional order type the simulator takes (not `TRAILING_STOP_MARKET`: it does not
/// simulate `callbackRate` and `activatePrice`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ConditionalType {
    /// Places a market order once the price reaches the trigger price against the
    /// position (a buy when it rises to it, a sell when it falls to it).
    StopMarket,
    /// Places a market order once the price reaches the trigger price in the position's
    /// favour (a buy when it falls to it, a sell when it rises to it).
    TakeProfitMarket,
    /// As [`ConditionalType::StopMarket`], with a limit order at `price`.
    Stop,
    /// As [`ConditionalType::TakeProfitMarket`], with a limit order at `price`.
    TakeProfit,
}

impl ConditionalType {
    /// Reads `type`; any other order type, trailing stops among them, is -1116.
    fn parse(value: &str) -> Result<ConditionalType, ApiError> {
        match value {
            "STOP_MARKET" => Ok(ConditionalType::StopMarket),
            "TAKE_PROFIT_MARKET" => Ok(ConditionalType::TakeProfitMarket),
            "STOP" => Ok(ConditionalType::Stop),
            "TAKE_PROFIT" => Ok(ConditionalType::TakeProfit),
            _ => Err(ApiError::new(400, -1116, "Invalid orderType.")),
        }
    }

    /// The name Binance gives the type.
    fn as_str(self) -> &'static str {
        match self {
            ConditionalType::StopMarket => "STOP_MARKET",
            ConditionalType::TakeProfitMarket => "TAKE_PROFIT_MARKET",
            ConditionalType::Stop => "STOP",
            ConditionalType::TakeProfit => "TAKE_PROFIT",
        }
    }

    /// Whether the triggered order is a market order (else a limit order at `price`).
    fn is_market(self) -> bool {
        matches!(
            self,
            ConditionalType::StopMarket | ConditionalType::TakeProfitMarket
        )
    }

    /// Whether an order of this type and `side` triggers at `price`, given its `trigger`.
    fn triggers_at(self, side: Side, trigger: Decimal, price: Decimal) -> bool {
        let stop = matches!(self, ConditionalType::StopMarket | ConditionalType::Stop);
        match (stop, side) {
            (true, Side::Buy) | (false, Side::Sell) => price >= trigger,
            (true, Side::Sell) | (false, Side::Buy) => price <= trigger,
        }
    }
}

/// Where a conditional order is, as `algoStatus` tells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AlgoStatus {
    /// Waiting for its trigger price.
    New,
    /// Cancelled before it triggered.
    Canceled,
    /// Triggered: its order was placed in the book (`FINISHED` once that order is no
    /// longer open; see [`status`]).
    Triggered,
    /// Triggered, but the book refused its order (margin, filters).
    Rejected,
}

/// One conditional order of an account.
#[derive(Clone, Debug)]
pub(crate) struct AlgoOrder {
    /// `algoId`, from [`Ids::next_algo_id`].
    algo_id: u64,
    /// `clientAlgoId`, sent or made up.
    client_algo_id: String,
    /// The USD-M market.
    market: &'static Market,
    /// The side of the order it places.
    side: Side,
    /// `orderType`.
    order_type: ConditionalType,
    /// The time in force of the order it places (`GTC` unless sent).
    time_in_force: String,
    /// The quantity of the order it places.
    quantity: Decimal,
    /// The limit price of the order it places; none for the `*_MARKET` types.
    price: Option<Decimal>,
    /// `triggerPrice`.
    trigger_price: Decimal,
    /// `workingType`: `CONTRACT_PRICE` or `MARK_PRICE` (one price, in the simulator).
    working_type: &'static str,
    /// `priceProtect`, as sent (reported only).
    price_protect: bool,
    /// `reduceOnly`, passed on to the order it places.
    reduce_only: bool,
    /// Where it is.
    status: AlgoStatus,
    /// `createTime`.
    create_time: u64,
    /// `updateTime`.
    update_time: u64,
    /// `triggerTime`, 0 until it triggers.
    trigger_time: u64,
    /// The `orderId` of the order it placed when it triggered.
    actual_order_id: Option<u64>,
}

/// Whether `account` holds conditional order `algo_id`, whatever its status.
pub(crate) fn holds(account: &Account, algo_id: u64) -> bool {
    account.algo_orders.iter().any(|a| a.algo_id == algo_id)
}

/// `algoStatus`: a triggered order whose placed order is no longer open (filled, cancelled
/// or expired) is `FINISHED`, as Binance reports it.
fn status(account: &Account, algo: &AlgoOrder) -> &'static str {
    match algo.status {
        AlgoStatus::New => "NEW",
        AlgoStatus::Canceled => "CANCELED",
        AlgoStatus::Rejected => "REJECTED",
        AlgoStatus::Triggered => {
            if placed_order(account, algo).is_some_and(book::Order::is_open) {
                "TRIGGERED"
            } else {
                "FINISHED"
            }
        }
    }
}

/// The order `algo` placed in `account`'s book when it triggered, if it did.
fn placed_order<'a>(account: &'a Account, algo: &AlgoOrder) -> Option<&'a book::Order> {
    let id = algo.actual_order_id?;
    account
        .orders
        .iter()
        .find(|o| o.product == Product::UsdM && o.order_id == id)
}

/// A boolean parameter: `true` or `false` in any case, false when not sent, else -1130.
pub(crate) fn flag(params: &Params, name: &str) -> Result<bool, ApiError> {
    match params.get(name).filter(|v| !v.is_empty()) {
        None => Ok(false),
        Some(v) if v.eq_ignore_ascii_case("true") => Ok(true),
        Some(v) if v.eq_ignore_ascii_case("false") => Ok(false),
        Some(_) => Err(ApiError::invalid_parameter(name)),
    }
}

/// The `clientAlgoId` Binance makes up for an order sent without one: 22 letters and
/// digits. Derived from `algo_id` (SplitMix64), so each order's differs.
fn made_up_client_algo_id(algo_id: u64) -> String {
    const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut state = algo_id;
    (0..22)
        .map(|_| {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            // The remainder is below 62, a valid index.
            char::from(ALPHABET[(z % 62) as usize])
        })
        .collect()
}

/// Refuses a USD-M order's `positionSide` other than `BOTH`: accounts are in one-way
/// mode, where every position side is BOTH, and Binance refuses `LONG` and `SHORT` there
/// with -4061 (and a value it does not know with -1130).
pub(crate) fn check_position_side(params: &Params) -> Result<(), ApiError> {
    match params.get("positionSide").filter(|v| !v.is_empty()) {
        None | Some("BOTH") => Ok(()),
        Some("LONG" | "SHORT") => Err(ApiError::new(
            400,
            -4061,
            "Order's position side does not match user's setting.",
        )),
        Some(_) => Err(ApiError::invalid_parameter("positionSide")),
    }
}

/// `POST /fapi/v1/algoOrder`: checks a conditional order as Binance does and keeps it.
///
/// The quantity and prices pass the filters `POST /fapi/v1/order` applies (same codes): the
/// order it will place, at `price` or, for a `*_MARKET` type, at the trigger price; and the
/// trigger price itself. The percent price filter is not among them: the mark price it is
/// judged against is the one of the moment the order triggers ([`trigger`]). Like Binance
/// it refuses (-2021) an order whose trigger price the market has already reached. It
/// checks no margin: the book does, when the order triggers. `closePosition=true` is
/// refused (-1000): the simulator does not close positions.
pub(crate) fn place(
    account: &mut Account,
    ids: &mut Ids,
    params: &Params,
    now: u64,
) -> Result<Value, ApiError> {
    if params.required("algoType")? != "CONDITIONAL" {
        return Err(ApiError::invalid_parameter("algoType"));
    }
    let m = routes::symbol(params, Product::UsdM)?;
    let side = Side::parse(params.required("side")?)?;
    let order_type = ConditionalType::parse(params.required("type")?)?;
    check_position_side(params)?;
    let time_in_force = match params.get("timeInForce").filter(|v| !v.is_empty()) {
        None => "GTC",
        Some(tif @ ("GTC" | "IOC" | "FOK" | "GTX")) => tif,
        Some(_) => return Err(ApiError::new(400, -1115, "Invalid timeInForce.")),
    };
    if flag(params, "closePosition")? {
        return Err(ApiError::new(
            400,
            -1000,
            "closePosition is not simulated; send quantity (and reduceOnly) instead.",
        ));
    }
    let quantity = params
        .decimal("quantity")?
        .ok_or_else(|| ApiError::mandatory("quantity"))?;
    let price = if order_type.is_market() {
        if params.get("price").is_some_and(|p| !p.is_empty()) {
            return Err(ApiError::new(
                400,
                -1106,
                "Parameter 'price' sent when not required.",
            ));
        }
        None
    } else {
        Some(
            params
                .decimal("price")?
                .ok_or_else(|| ApiError::mandatory("price"))?,
        )
    };
    let trigger_price = params
        .decimal("triggerPrice")?
        .ok_or_else(|| ApiError::mandatory("triggerPrice"))?;
    let working_type = match params.get("workingType").filter(|v| !v.is_empty()) {
        None | Some("CONTRACT_PRICE") => "CONTRACT_PRICE",
        Some("MARK_PRICE") => "MARK_PRICE",
        Some(_) => return Err(ApiError::invalid_parameter("workingType")),
    };
    let price_protect = flag(params, "priceProtect")?;
    let reduce_only = flag(params, "reduceOnly")?;
    let client_algo_id = match params.get("clientAlgoId") {
        Some(id) if !id.is_empty() => {
            let legal = id.len() <= 36
                && id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b".:/_-".contains(&b));
            if !legal {
                return Err(ApiError::illegal_chars(
                    "clientAlgoId",
                    CLIENT_ALGO_ID_PATTERN,
                ));
            }
            id.to_owned()
        }
        _ => made_up_client_algo_id(ids.next_algo_id),
    };
    let limit_at = |limit: Decimal| NewOrder {
        market: m,
        side,
        order_type: OrderType::Limit,
        time_in_force: time_in_force.to_owned(),
        price: Some(limit),
        quantity: Some(quantity),
        quote_order_qty: None,
        client_order_id: String::new(),
        reduce_only,
        // Not read: the percent price filter applies to the order placed on triggering.
        reference_price: m.price,
        stop_price: None,
        trailing_delta: None,
    };
    book::check_filters(&limit_at(trigger_price))?;
    if let Some(price) = price {
        book::check_filters(&limit_at(price))?;
    }
    // A market order on triggering: its quantity is held to the market maximum now.
    if order_type.is_market() && quantity > m.product.max_quantity(true) {
        return Err(ApiError::futures_filter(
            -4005,
            "Quantity greater than max quantity.",
        ));
    }
    if order_type.triggers_at(side, trigger_price, m.price) {
        return Err(ApiError::new(
            400,
            -2021,
            "Order would immediately trigger.",
        ));
    }
    // Like a client order id, a client algo id is unique among the account's open
    // conditional orders.
    let taken = account
        .algo_orders
        .iter()
        .any(|a| a.status == AlgoStatus::New && a.client_algo_id == client_algo_id);
    if taken {
        return Err(ApiError::new(400, -4116, "ClientOrderId is duplicated."));
    }
    let algo = AlgoOrder {
        algo_id: ids.next_algo_id,
        client_algo_id,
        market: m,
        side,
        order_type,
        time_in_force: time_in_force.to_owned(),
        quantity,
        price,
        trigger_price,
        working_type,
        price_protect,
        reduce_only,
        status: AlgoStatus::New,
        create_time: now,
        update_time: now,
        trigger_time: 0,
        actual_order_id: None,
    };
    ids.next_algo_id += 1;
    let answer = answer(&algo, "NEW");
    account.algo_orders.push(algo);
    Ok(answer)
}

/// `DELETE /fapi/v1/algoOrder`: cancels a `NEW` conditional order of the account named by
/// `algoId` (which wins when both are sent) or `clientAlgoId`; any other is -2011.
pub(crate) fn cancel(account: &mut Account, params: &Params, now: u64) -> Result<Value, ApiError> {
    let named = named_by(params)?;
    let algo = account
        .algo_orders
        .iter_mut()
        .find(|a| a.status == AlgoStatus::New && named(a))
        .ok_or_else(ApiError::unknown_order)?;
    algo.status = AlgoStatus::Canceled;
    algo.update_time = now;
    Ok(json!({
        "algoId": algo.algo_id,
        "clientAlgoId": algo.client_algo_id,
        "code": "200",
        "msg": "success"
    }))
}

/// `DELETE /fapi/v1/algoOpenOrders`: cancels every `NEW` conditional order of the account
/// in `symbol` (required), and answers that it is done, with or without orders to
/// cancel, as Binance's Cancel All Algo Open Orders page has it. Orders in the book, those
/// a triggered conditional order placed among them, are `DELETE /fapi/v1/allOpenOrders`'
/// and stay.
pub(crate) fn cancel_all(
    account: &mut Account,
    params: &Params,
    now: u64,
) -> Result<Value, ApiError> {
    let m = routes::symbol(params, Product::UsdM)?;
    for algo in account
        .algo_orders
        .iter_mut()
        .filter(|a| a.status == AlgoStatus::New && a.market.symbol == m.symbol)
    {
        algo.status = AlgoStatus::Canceled;
        algo.update_time = now;
    }
    Ok(json!({
        "code": 200,
        "msg": "The operation of cancel all open order is done."
    }))
}

/// Which conditional order `params` name: by `algoId` when sent, else by `clientAlgoId`
/// (one of them is mandatory), whatever `symbol` says, as Binance takes them.
fn named_by(params: &Params) -> Result<impl Fn(&AlgoOrder) -> bool + '_, ApiError> {
    let algo_id = params.integer("algoId")?;
    let client = params.get("clientAlgoId").filter(|c| !c.is_empty());
    if algo_id.is_none() && client.is_none() {
        return Err(ApiError::mandatory("algoId"));
    }
    Ok(move |a: &AlgoOrder| match algo_id {
        Some(id) => a.algo_id == id,
        None => client == Some(a.client_algo_id.as_str()),
    })
}

/// `GET /fapi/v1/algoOrder`: one conditional order of the account, whatever became of
/// it, as `allAlgoOrders` lists it, while Binance still finds it ([`still_found`]).
pub(crate) fn query(account: &Account, params: &Params, now: u64) -> Result<Value, ApiError> {
    let named = named_by(params)?;
    let algo = account
        .algo_orders
        .iter()
        .find(|a| named(a) && still_found(a, now))
        .ok_or_else(ApiError::unknown_order)?;
    Ok(listed(account, algo))
}

/// Whether Binance still finds conditional order `algo` at `now`: one cancelled before
/// it triggered (nothing filled) is forgotten three days after it was made, and every
/// one after ninety, as its "Query All Algo Orders" page says.
fn still_found(algo: &AlgoOrder, now: u64) -> bool {
    routes::usdm_still_finds(algo.create_time, algo.status == AlgoStatus::Canceled, now)
}

/// `GET /fapi/v1/openAlgoOrders`: the account's `NEW` conditional orders, oldest first,
/// narrowed by `symbol`, `algoType` and `algoId` when sent.
pub(crate) fn open(account: &Account, params: &Params) -> Result<Value, ApiError> {
    let symbol = match params.get("symbol") {
        Some(_) => Some(routes::symbol(params, Product::UsdM)?.symbol),
        None => None,
    };
    let algo_type = params.get("algoType").filter(|t| !t.is_empty());
    let algo_id = params.integer("algoId")?;
    Ok(Value::Array(
        account
            .algo_orders
            .iter()
            .filter(|a| a.status == AlgoStatus::New)
            .filter(|a| symbol.is_none_or(|s| s == a.market.symbol))
            .filter(|_| algo_type.is_none_or(|t| t == "CONDITIONAL"))
            .filter(|a| algo_id.is_none_or(|id| a.algo_id == id))
            .map(|a| listed(account, a))
            .collect(),
    ))
}

/// `GET /fapi/v1/allAlgoOrders`: the account's conditional orders of `symbol` (mandatory)
/// in every status, by `algoId` ascending.
///
/// `algoId` lists from that id on. `startTime` and `endTime` bound `createTime` and must
/// be less than 7 days apart (-1127); one alone spans 7 days from or to it; neither, the
/// last 7 days, unless `algoId` is sent. `limit` (default 500, at most 1000, else -1130)
/// orders are listed, from page `page` (default 1) counted from the oldest. Those Binance
/// no longer finds ([`still_found`]) are not.
pub(crate) fn all(account: &Account, params: &Params, now: u64) -> Result<Value, ApiError> {
    let m = routes::symbol(params, Product::UsdM)?;
    let from_id = params.integer("algoId")?;
    let span = WEEK_MS - 1;
    let window = match (params.integer("startTime")?, params.integer("endTime")?) {
        (Some(start), Some(end)) => {
            if end < start || end - start > span {
                return Err(ApiError::new(
                    400,
                    -1127,
                    "The time between startTime and endTime must be less than 7 days.",
                ));
            }
            Some((start, end))
        }
        (Some(start), None) => Some((start, start.saturating_add(span))),
        (None, Some(end)) => Some((end.saturating_sub(span), end)),
        (None, None) if from_id.is_some() => None,
        (None, None) => Some((now.saturating_sub(span), now)),
    };
    let limit = match params.integer("limit")? {
        None => 500,
        Some(limit @ 1..=1000) => limit,
        Some(_) => return Err(ApiError::invalid_parameter("limit")),
    };
    let page = match params.integer("page")? {
        None => 1,
        Some(0) => return Err(ApiError::invalid_parameter("page")),
        Some(page) => page,
    };
    let mut chosen: Vec<&AlgoOrder> = account
        .algo_orders
        .iter()
        .filter(|a| a.market.symbol == m.symbol)
        .filter(|a| from_id.is_none_or(|id| a.algo_id >= id))
        .filter(|a| window.is_none_or(|(start, end)| (start..=end).contains(&a.create_time)))
        .filter(|a| still_found(a, now))
        .collect();
    chosen.sort_by_key(|a| a.algo_id);
    // At most 1000, and the product is capped: both fit a usize on any platform the
    // simulator runs on; if not, the page is past the end.
    let take = usize::try_from(limit).unwrap_or(usize::MAX);
    let skip = usize::try_from((page - 1).saturating_mul(limit)).unwrap_or(usize::MAX);
    Ok(Value::Array(
        chosen
            .into_iter()
            .skip(skip)
            .take(take)
            .map(|a| listed(account, a))
            .collect(),
    ))
}

/// Triggers `NEW` conditional order `algo_id` of `account` as if the market had reached its
/// trigger price: places its order (a `MARKET` order for the `*_MARKET` types, else a
/// `LIMIT` order at its price and time in force; its side, quantity and `reduceOnly`) in
/// the book as `POST /fapi/v1/order` does, under the next `orderId` and a client order id
/// the simulator makes up, never the `clientAlgoId`. Its limit price is held to the percent
/// price filter around the trigger price, the mark price it has just reached (it fills, if
/// it crosses, at the reference price as every order does); a reduce-only order is held to
/// the position as any is. The conditional order becomes `TRIGGERED` (`FINISHED` at once if
/// its order is no longer open), or `REJECTED` with the book's error if the book refuses
/// the order. Answers it as `openAlgoOrders` lists one; -2011 if it is not `NEW`.
pub(crate) fn trigger(
    account: &mut Account,
    ids: &mut Ids,
    algo_id: u64,
    now: u64,
) -> Result<Value, ApiError> {
    let index = account
        .algo_orders
        .iter()
        .position(|a| a.algo_id == algo_id && a.status == AlgoStatus::New)
        .ok_or_else(ApiError::unknown_order)?;
    let algo = account
        .algo_orders
        .get(index)
        .cloned()
        .ok_or_else(ApiError::unknown_order)?;
    let (order_type, price) = match algo.price {
        Some(price) => (OrderType::Limit, Some(price)),
        None => (OrderType::Market, None),
    };
    let order = NewOrder {
        market: algo.market,
        side: algo.side,
        order_type,
        time_in_force: algo.time_in_force.clone(),
        price,
        quantity: Some(algo.quantity),
        quote_order_qty: None,
        client_order_id: routes::made_up_client_order_id(ids),
        reduce_only: algo.reduce_only,
        // The market has reached the trigger price: a limit price is held to the band
        // around it, as Binance holds it to the mark price of that moment.
        reference_price: algo.trigger_price,
        stop_price: None,
        trailing_delta: None,
    };
    let placed = routes::place_order(account, ids, order, now);
    let stored = account
        .algo_orders
        .get_mut(index)
        .ok_or_else(ApiError::unknown_order)?;
    stored.trigger_time = now;
    stored.update_time = now;
    match placed {
        Ok((order, _)) => {
            stored.status = AlgoStatus::Triggered;
            stored.actual_order_id = Some(order.order_id);
        }
        Err(error) => {
            stored.status = AlgoStatus::Rejected;
            return Err(error);
        }
    }
    let triggered = stored.clone();
    Ok(listed(account, &triggered))
}

/// The `POST /fapi/v1/algoOrder` answer for `algo`, in status `status`. Prices are written
/// to the market's price precision (a `*_MARKET` order's price is its zero), the
/// quantity to its quantity precision.
fn answer(algo: &AlgoOrder, status: &str) -> Value {
    let m = algo.market;
    let price = |p: Decimal| fmt(p, m.price_precision);
    json!({
        "algoId": algo.algo_id,
        "clientAlgoId": algo.client_algo_id,
        "algoType": "CONDITIONAL",
        "orderType": algo.order_type.as_str(),
        "symbol": m.symbol,
        "side": algo.side.as_str(),
        "positionSide": "BOTH",
        "timeInForce": algo.time_in_force,
        "quantity": fmt(algo.quantity, m.quantity_precision),
        "algoStatus": status,
        "triggerPrice": price(algo.trigger_price),
        "price": price(algo.price.unwrap_or(Decimal::ZERO)),
        "icebergQuantity": null,
        "selfTradePreventionMode": "EXPIRE_MAKER",
        "workingType": algo.working_type,
        "priceMatch": "NONE",
        "closePosition": false,
        "priceProtect": algo.price_protect,
        "reduceOnly": algo.reduce_only,
        "activatePrice": "",
        "callbackRate": "",
        "createTime": algo.create_time,
        "updateTime": algo.update_time,
        "triggerTime": algo.trigger_time,
        "goodTillDate": 0
    })
}

/// `algo` as `openAlgoOrders` and `allAlgoOrders` list it: the answer's fields, its
/// current status, and the order it placed (`actualOrderId`, and `actualPrice`, that
/// order's average fill price, 5 decimals; empty and zero until then).
fn listed(account: &Account, algo: &AlgoOrder) -> Value {
    let mut value = answer(algo, status(account, algo));
    let average = placed_order(account, algo)
        .filter(|o| !o.executed_qty.is_zero())
        .map(|o| o.cumulative_quote / o.executed_qty)
        .unwrap_or(Decimal::ZERO);
    value["actualOrderId"] = json!(algo
        .actual_order_id
        .map(|id| id.to_string())
        .unwrap_or_default());
    value["actualPrice"] = json!(fmt(average, 5));
    for field in ["tpTriggerPrice", "tpPrice", "slTriggerPrice", "slPrice"] {
        value[field] = json!("0.000");
    }
    value["tpOrderType"] = json!("");
    value
}
