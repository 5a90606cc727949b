//! USD-M conditional orders, which Binance keeps in its "algo service" (since 2025-12-09):
//! `POST` and `DELETE /fapi/v1/algoOrder`, `GET /fapi/v1/openAlgoOrders`,
//! `GET /fapi/v1/allAlgoOrders`, and the test control `POST /__mock/trigger`.
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
            let open = account
                .orders
                .iter()
                .find(|o| o.product == Product::UsdM && Some(o.order_id) == algo.actual_order_id)
                .is_some_and(book::Order::is_open);
            if open {
                "TRIGGERED"
            } else {
                "FINISHED"
            }
        }
    }
}

/// A boolean parameter: `true` or `false` in any case, false when not sent, else -1130.
fn flag(params: &Params, name: &str) -> Result<bool, ApiError> {
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

/// `POST /fapi/v1/algoOrder`: checks a conditional order as Binance does and keeps it.
///
/// The quantity and prices pass the filters `POST /fapi/v1/order` applies (same codes):
/// the order it will place, at `price` or, for a `*_MARKET` type, at the trigger price;
/// and the trigger price itself. Like Binance it refuses (-2021) an order whose trigger
/// price the market has already reached. It checks no margin: the book does, when the
/// order triggers. `closePosition=true` is refused (-1000): the simulator does not close
/// positions.
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
    // Accounts are in one-way mode, where every position side is BOTH.
    match params.get("positionSide").filter(|v| !v.is_empty()) {
        None | Some("BOTH") => {}
        Some("LONG" | "SHORT") => {
            return Err(ApiError::new(
                400,
                -4061,
                "Order's position side does not match user's setting.",
            ))
        }
        Some(_) => return Err(ApiError::invalid_parameter("positionSide")),
    }
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
    };
    book::check_filters(&limit_at(trigger_price))?;
    if let Some(price) = price {
        book::check_filters(&limit_at(price))?;
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
    let algo_id = params.integer("algoId")?;
    let client = params.get("clientAlgoId").filter(|c| !c.is_empty());
    if algo_id.is_none() && client.is_none() {
        return Err(ApiError::mandatory("algoId"));
    }
    let named = |a: &AlgoOrder| match algo_id {
        Some(id) => a.algo_id == id,
        None => client == Some(a.client_algo_id.as_str()),
    };
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
/// orders are listed, from page `page` (default 1) counted from the oldest.
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

/// Triggers `NEW` conditional order `algo_id` of `account` as if the market had reached
/// its trigger price: places its order (a `MARKET` order for the `*_MARKET` types, else a
/// `LIMIT` order at its price and time in force; its side, quantity and `reduceOnly`) in
/// the book as `POST /fapi/v1/order` does, under the next `orderId` and a client order id
/// the simulator makes up, never the `clientAlgoId`. The conditional order becomes
/// `TRIGGERED` (`FINISHED` at once if its order is no longer open), or `REJECTED` with the
/// book's error if the book refuses the order. Answers it as `openAlgoOrders` lists one;
/// -2011 if it is not `NEW`.
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
    let actual = algo.actual_order_id.and_then(|id| {
        account
            .orders
            .iter()
            .find(|o| o.product == Product::UsdM && o.order_id == id)
    });
    let average = actual
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

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may panic.
mod tests {
    use super::*;
    use crate::{spawn, Credential, Restrictions, RunningSimulator};
    use reqwest::Method;

    const KEY: &str = "k";
    const SECRET: &str = "s";
    /// A key that may do everything but use futures.
    const NO_FUTURES: (&str, &str) = ("noFutures", "nf");

    async fn start() -> RunningSimulator {
        let no_futures = Restrictions {
            futures: false,
            ..Restrictions::default()
        };
        spawn(
            "127.0.0.1:0".parse().unwrap(),
            vec![
                Credential::hmac(KEY, SECRET),
                Credential::hmac(NO_FUTURES.0, NO_FUTURES.1).with_restrictions(no_futures),
            ],
        )
        .await
        .unwrap()
    }

    /// Sends `method path?query` with `key`'s API key header, if any; (status, JSON body).
    async fn send(
        sim: &RunningSimulator,
        method: Method,
        target: &str,
        key: Option<&str>,
    ) -> (u16, Value) {
        let mut request = reqwest::Client::new().request(method, format!("{}{target}", sim.url()));
        if let Some(key) = key {
            request = request.header("X-MBX-APIKEY", key);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap())
    }

    /// A request signed for `key` with `secret`, every parameter in the query.
    async fn signed_as(
        sim: &RunningSimulator,
        (key, secret): (&str, &str),
        method: Method,
        path: &str,
        params: &str,
    ) -> (u16, Value) {
        use hmac::Mac as _;
        let sep = if params.is_empty() { "" } else { "&" };
        let query = format!("{params}{sep}timestamp={}", crate::now_ms());
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(query.as_bytes());
        let signature = hex::encode(mac.finalize().into_bytes());
        let target = format!("{path}?{query}&signature={signature}");
        send(sim, method, &target, Some(key)).await
    }

    /// A request signed with the full key `KEY`.
    async fn signed(
        sim: &RunningSimulator,
        method: Method,
        path: &str,
        params: &str,
    ) -> (u16, Value) {
        signed_as(sim, (KEY, SECRET), method, path, params).await
    }

    async fn post_algo(sim: &RunningSimulator, params: &str) -> (u16, Value) {
        signed(sim, Method::POST, "/fapi/v1/algoOrder", params).await
    }

    async fn get(sim: &RunningSimulator, path: &str, params: &str) -> (u16, Value) {
        signed(sim, Method::GET, path, params).await
    }

    /// `POST /__mock/trigger?algoId=…`, unsigned, as a test calls it.
    async fn trigger(sim: &RunningSimulator, algo_id: &Value) -> (u16, Value) {
        send(
            sim,
            Method::POST,
            &format!("/__mock/trigger?algoId={algo_id}"),
            None,
        )
        .await
    }

    #[track_caller]
    fn assert_error(response: &(u16, Value), status: u16, code: i64, msg: &str) {
        assert_eq!(response.0, status, "{}", response.1);
        assert_eq!(
            response.1,
            json!({"code": code, "msg": msg}),
            "{}",
            response.1
        );
    }

    fn ids(list: &Value) -> Vec<u64> {
        list.as_array()
            .unwrap()
            .iter()
            .map(|a| a["algoId"].as_u64().unwrap())
            .collect()
    }

    const TAKE_PROFIT: &str = "algoType=CONDITIONAL&symbol=BTCUSDT&side=SELL&type=TAKE_PROFIT\
        &quantity=0.01&price=65000&triggerPrice=65000";
    const STOP_MARKET: &str =
        "algoType=CONDITIONAL&symbol=BTCUSDT&side=SELL&type=STOP_MARKET&quantity=0.01\
        &triggerPrice=55000";

    #[tokio::test]
    async fn a_conditional_order_is_placed_listed_and_cancelled() {
        let sim = start().await;
        // A futures order first: the conditional order's id comes from a counter of its own.
        let limit = "symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.01&price=50000";
        let (status, first) = signed(&sim, Method::POST, "/fapi/v1/order", limit).await;
        assert_eq!(
            (status, first["orderId"].as_u64()),
            (200, Some(1)),
            "{first}"
        );

        let (status, placed) = post_algo(&sim, &format!("{TAKE_PROFIT}&clientAlgoId=tp-1")).await;
        assert_eq!(status, 200, "{placed}");
        let created = placed["createTime"].as_u64().unwrap();
        assert!(created.abs_diff(crate::now_ms()) < 5_000, "{placed}");
        assert_eq!(
            placed,
            json!({
                "algoId": FIRST_ALGO_ID, "clientAlgoId": "tp-1", "algoType": "CONDITIONAL",
                "orderType": "TAKE_PROFIT", "symbol": "BTCUSDT", "side": "SELL",
                "positionSide": "BOTH", "timeInForce": "GTC", "quantity": "0.010",
                "algoStatus": "NEW", "triggerPrice": "65000.00", "price": "65000.00",
                "icebergQuantity": null, "selfTradePreventionMode": "EXPIRE_MAKER",
                "workingType": "CONTRACT_PRICE", "priceMatch": "NONE", "closePosition": false,
                "priceProtect": false, "reduceOnly": false, "activatePrice": "",
                "callbackRate": "", "createTime": created, "updateTime": created,
                "triggerTime": 0, "goodTillDate": 0
            })
        );
        // Without a clientAlgoId, Binance makes up 22 letters and digits.
        let (status, stop) =
            post_algo(&sim, &format!("{STOP_MARKET}&workingType=MARK_PRICE")).await;
        assert_eq!(status, 200, "{stop}");
        assert_eq!(stop["algoId"], FIRST_ALGO_ID + 1);
        let made_up = stop["clientAlgoId"].as_str().unwrap();
        assert_eq!(made_up.len(), 22, "{made_up}");
        assert!(
            made_up.bytes().all(|b| b.is_ascii_alphanumeric()),
            "{made_up}"
        );
        assert_eq!(
            (&stop["orderType"], &stop["price"], &stop["workingType"]),
            (&json!("STOP_MARKET"), &json!("0.00"), &json!("MARK_PRICE"))
        );
        // The order book's counter went on from where it was.
        let (status, second) = signed(&sim, Method::POST, "/fapi/v1/order", limit).await;
        assert_eq!(
            (status, second["orderId"].as_u64()),
            (200, Some(2)),
            "{second}"
        );

        // Listed open, with symbol, without, and not under another symbol.
        let both = [FIRST_ALGO_ID, FIRST_ALGO_ID + 1];
        for params in ["symbol=BTCUSDT", ""] {
            let (status, open) = get(&sim, "/fapi/v1/openAlgoOrders", params).await;
            assert_eq!(status, 200, "{open}");
            assert_eq!(ids(&open), both, "{params}: {open}");
            let listed = &open[0];
            for (field, value) in [
                ("clientAlgoId", json!("tp-1")),
                ("algoStatus", json!("NEW")),
                ("actualOrderId", json!("")),
                ("actualPrice", json!("0.00000")),
                ("tpTriggerPrice", json!("0.000")),
                ("tpPrice", json!("0.000")),
                ("slTriggerPrice", json!("0.000")),
                ("slPrice", json!("0.000")),
                ("tpOrderType", json!("")),
                ("triggerPrice", json!("65000.00")),
            ] {
                assert_eq!(listed[field], value, "{field}: {listed}");
            }
        }
        let (_, other) = get(&sim, "/fapi/v1/openAlgoOrders", "symbol=ETHUSDT").await;
        assert_eq!(other, json!([]));
        let (_, one) = get(
            &sim,
            "/fapi/v1/openAlgoOrders",
            &format!("algoId={}", FIRST_ALGO_ID + 1),
        )
        .await;
        assert_eq!(ids(&one), [FIRST_ALGO_ID + 1]);
        let (status, all) = get(&sim, "/fapi/v1/allAlgoOrders", "symbol=BTCUSDT").await;
        assert_eq!((status, ids(&all)), (200, both.to_vec()), "{all}");
        assert_eq!(all[1]["clientAlgoId"], made_up);
        let missing = get(&sim, "/fapi/v1/allAlgoOrders", "").await;
        assert_error(
            &missing,
            400,
            -1102,
            "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed.",
        );

        // A client algo id in use by an open conditional order is refused.
        let duplicate = post_algo(&sim, &format!("{TAKE_PROFIT}&clientAlgoId=tp-1")).await;
        assert_error(&duplicate, 400, -4116, "ClientOrderId is duplicated.");

        let sim_ref = &sim;
        let cancel = |params: String| async move {
            signed(sim_ref, Method::DELETE, "/fapi/v1/algoOrder", &params).await
        };
        let (status, cancelled) = cancel(format!("algoId={FIRST_ALGO_ID}")).await;
        assert_eq!(status, 200, "{cancelled}");
        assert_eq!(
            cancelled,
            json!({"algoId": FIRST_ALGO_ID, "clientAlgoId": "tp-1", "code": "200", "msg": "success"})
        );
        let (_, open) = get(&sim, "/fapi/v1/openAlgoOrders", "").await;
        assert_eq!(ids(&open), [FIRST_ALGO_ID + 1]);
        let (_, all) = get(&sim, "/fapi/v1/allAlgoOrders", "symbol=BTCUSDT").await;
        assert_eq!(ids(&all), both);
        assert_eq!(
            (&all[0]["algoStatus"], &all[1]["algoStatus"]),
            (&json!("CANCELED"), &json!("NEW"))
        );
        // Cancelled once is cancelled: not again, by either id.
        let again = cancel(format!("algoId={FIRST_ALGO_ID}")).await;
        assert_error(&again, 400, -2011, "Unknown order sent.");
        let again = cancel("clientAlgoId=tp-1".to_owned()).await;
        assert_error(&again, 400, -2011, "Unknown order sent.");
        let neither = cancel(String::new()).await;
        assert_error(
            &neither,
            400,
            -1102,
            "Mandatory parameter 'algoId' was not sent, was empty/null, or malformed.",
        );
        // By client algo id; and the id is free again once its order is cancelled.
        let (status, by_client) = cancel(format!("clientAlgoId={made_up}")).await;
        assert_eq!(
            (status, &by_client["algoId"]),
            (200, &json!(FIRST_ALGO_ID + 1))
        );
        let (status, reused) = post_algo(&sim, &format!("{TAKE_PROFIT}&clientAlgoId=tp-1")).await;
        assert_eq!(
            (status, &reused["algoId"]),
            (200, &json!(FIRST_ALGO_ID + 2)),
            "{reused}"
        );
    }

    #[tokio::test]
    async fn a_triggered_conditional_order_places_a_futures_order_of_its_own() {
        let sim = start().await;
        let (_, stop) = post_algo(&sim, &format!("{STOP_MARKET}&clientAlgoId=sl-1")).await;
        let (_, take) = post_algo(&sim, &format!("{TAKE_PROFIT}&clientAlgoId=tp-1")).await;
        let (stop_id, take_id) = (&stop["algoId"], &take["algoId"]);
        assert_eq!(
            (stop_id, take_id),
            (&json!(FIRST_ALGO_ID), &json!(FIRST_ALGO_ID + 1))
        );

        // The stop places a market order, which fills at once: FINISHED.
        let (status, triggered) = trigger(&sim, stop_id).await;
        assert_eq!(status, 200, "{triggered}");
        assert_eq!(triggered["algoStatus"], "FINISHED", "{triggered}");
        assert_eq!(triggered["actualPrice"], "60000.00000", "{triggered}");
        assert!(
            triggered["triggerTime"].as_u64().unwrap() > 0,
            "{triggered}"
        );
        let stop_order: u64 = triggered["actualOrderId"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        // The take profit places a limit sell at 65 000, which rests: TRIGGERED.
        let (status, triggered) = trigger(&sim, take_id).await;
        assert_eq!(status, 200, "{triggered}");
        assert_eq!(triggered["algoStatus"], "TRIGGERED", "{triggered}");
        assert_eq!(triggered["actualPrice"], "0.00000", "{triggered}");
        let take_order: u64 = triggered["actualOrderId"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!((stop_order, take_order), (1, 2));

        let (status, orders) = get(&sim, "/fapi/v1/allOrders", "symbol=BTCUSDT").await;
        assert_eq!(status, 200, "{orders}");
        let order = |id: u64| {
            orders
                .as_array()
                .unwrap()
                .iter()
                .find(|o| o["orderId"] == id)
                .unwrap_or_else(|| panic!("no order {id} in {orders}"))
                .clone()
        };
        let (market, limit) = (order(stop_order), order(take_order));
        for (placed, ty, status, price, client_algo_id) in [
            (&market, "MARKET", "FILLED", "0", "sl-1"),
            (&limit, "LIMIT", "NEW", "65000", "tp-1"),
        ] {
            assert_eq!(
                (&placed["type"], &placed["status"], &placed["price"]),
                (&json!(ty), &json!(status), &json!(price)),
                "{placed}"
            );
            assert_eq!(
                (&placed["side"], &placed["origQty"], &placed["reduceOnly"]),
                (&json!("SELL"), &json!("0.01"), &json!(false)),
                "{placed}"
            );
            let client = placed["clientOrderId"].as_str().unwrap();
            assert!(!client.is_empty() && client != client_algo_id, "{placed}");
        }
        assert_eq!(limit["timeInForce"], "GTC");

        // Neither is open any more; both are listed with their orders.
        let (_, open) = get(&sim, "/fapi/v1/openAlgoOrders", "").await;
        assert_eq!(open, json!([]));
        let (_, all) = get(&sim, "/fapi/v1/allAlgoOrders", "symbol=BTCUSDT").await;
        let statuses: Vec<(&Value, &Value)> = all
            .as_array()
            .unwrap()
            .iter()
            .map(|a| (&a["algoStatus"], &a["actualOrderId"]))
            .collect();
        assert_eq!(
            statuses,
            [
                (&json!("FINISHED"), &json!(stop_order.to_string())),
                (&json!("TRIGGERED"), &json!(take_order.to_string()))
            ]
        );

        // Triggered once is triggered; an unknown id is unknown; neither can be cancelled.
        for id in [stop_id, take_id, &json!(42)] {
            assert_error(&trigger(&sim, id).await, 400, -2011, "Unknown order sent.");
        }
        let cancel = signed(
            &sim,
            Method::DELETE,
            "/fapi/v1/algoOrder",
            &format!("algoId={take_id}"),
        )
        .await;
        assert_error(&cancel, 400, -2011, "Unknown order sent.");

        // Once the order it placed is cancelled, the take profit is FINISHED.
        let (status, _) = signed(
            &sim,
            Method::DELETE,
            "/fapi/v1/order",
            &format!("symbol=BTCUSDT&orderId={take_order}"),
        )
        .await;
        assert_eq!(status, 200);
        let (_, all) = get(&sim, "/fapi/v1/allAlgoOrders", "symbol=BTCUSDT").await;
        assert_eq!(all[1]["algoStatus"], "FINISHED", "{all}");

        // The control endpoint is not recorded.
        let paths: Vec<String> = sim
            .simulator()
            .requests()
            .into_iter()
            .map(|r| r.path)
            .collect();
        assert!(paths.iter().all(|p| !p.starts_with("/__mock")), "{paths:?}");
    }

    #[tokio::test]
    async fn a_conditional_order_the_book_refuses_is_rejected() {
        let sim = start().await;
        // 50 BTC at 60 000 needs 150 000 USDT of margin at 20x: more than the wallet's
        // 100 000. The algo service takes it; the book refuses it when it triggers.
        let big = "algoType=CONDITIONAL&symbol=BTCUSDT&side=BUY&type=STOP_MARKET&quantity=50\
            &triggerPrice=61000&reduceOnly=true";
        let (status, placed) = post_algo(&sim, big).await;
        assert_eq!(status, 200, "{placed}");
        assert_eq!(placed["reduceOnly"], true);
        let refused = trigger(&sim, &placed["algoId"]).await;
        assert_error(&refused, 400, -2019, "Margin is insufficient.");
        let (_, all) = get(&sim, "/fapi/v1/allAlgoOrders", "symbol=BTCUSDT").await;
        assert_eq!(all[0]["algoStatus"], "REJECTED", "{all}");
        assert_eq!(all[0]["actualOrderId"], "", "{all}");
        let (_, orders) = get(&sim, "/fapi/v1/allOrders", "symbol=BTCUSDT").await;
        assert_eq!(orders, json!([]));
        assert_error(
            &trigger(&sim, &placed["algoId"]).await,
            400,
            -2011,
            "Unknown order sent.",
        );
        // A reduce-only order is not held to the minimum notional (Binance's -4164 says
        // so), and the order it places carries reduceOnly.
        let small = "algoType=CONDITIONAL&symbol=BTCUSDT&side=SELL&type=STOP_MARKET\
            &quantity=0.001&triggerPrice=50000";
        let refused = post_algo(&sim, small).await;
        assert_eq!(refused.1["code"], -4164, "{}", refused.1);
        let (status, placed) = post_algo(&sim, &format!("{small}&reduceOnly=TRUE")).await;
        assert_eq!(status, 200, "{placed}");
        let (status, triggered) = trigger(&sim, &placed["algoId"]).await;
        assert_eq!(status, 200, "{triggered}");
        let (_, orders) = get(&sim, "/fapi/v1/allOrders", "symbol=BTCUSDT").await;
        assert_eq!(orders[0]["reduceOnly"], true, "{orders}");
        assert_eq!(
            orders[0]["orderId"].to_string(),
            triggered["actualOrderId"].as_str().unwrap()
        );
    }

    #[tokio::test]
    async fn parameters_binance_refuses_are_refused() {
        let sim = start().await;
        let base = |ty: &str| {
            format!("algoType=CONDITIONAL&symbol=BTCUSDT&side=SELL&type={ty}&quantity=0.01")
        };
        let cases: Vec<(String, i64, &str)> =
            vec![
            (
                "symbol=BTCUSDT&side=SELL&type=STOP_MARKET&quantity=0.01&triggerPrice=55000"
                    .into(),
                -1102,
                "Mandatory parameter 'algoType' was not sent, was empty/null, or malformed.",
            ),
            (
                format!("{}&triggerPrice=55000", base("STOP_MARKET")).replace("CONDITIONAL", "VP"),
                -1130,
                "Data sent for parameter 'algoType' is not valid.",
            ),
            (
                format!("{}&triggerPrice=55000", base("STOP_MARKET"))
                    .replace("BTCUSDT", "DOGEUSDT"),
                -1121,
                "Invalid symbol.",
            ),
            (
                format!("{}&triggerPrice=55000", base("TRAILING_STOP_MARKET")),
                -1116,
                "Invalid orderType.",
            ),
            (format!("{}&triggerPrice=55000", base("LIMIT")), -1116, "Invalid orderType."),
            (
                base("STOP_MARKET"),
                -1102,
                "Mandatory parameter 'triggerPrice' was not sent, was empty/null, or malformed.",
            ),
            (
                format!("{}&triggerPrice=55000", base("STOP")),
                -1102,
                "Mandatory parameter 'price' was not sent, was empty/null, or malformed.",
            ),
            (
                format!("{}&triggerPrice=55000&price=55000", base("STOP_MARKET")),
                -1106,
                "Parameter 'price' sent when not required.",
            ),
            (
                format!("{}&triggerPrice=55000.05", base("STOP_MARKET")),
                -4014,
                "Price not increased by tick size.",
            ),
            (
                format!("{}&triggerPrice=55000&price=55000.123", base("STOP")),
                -1111,
                "Precision is over the maximum defined for this asset.",
            ),
            (
                format!("{}&triggerPrice=55000", base("STOP_MARKET")).replace("0.01", "0.0015"),
                -1111,
                "Precision is over the maximum defined for this asset.",
            ),
            (
                format!("{}&triggerPrice=65000", base("STOP_MARKET")),
                -2021,
                "Order would immediately trigger.",
            ),
            (
                format!("{}&triggerPrice=55000", base("TAKE_PROFIT_MARKET")),
                -2021,
                "Order would immediately trigger.",
            ),
            (
                format!("{}&triggerPrice=55000&positionSide=LONG", base("STOP_MARKET")),
                -4061,
                "Order's position side does not match user's setting.",
            ),
            (
                format!("{}&triggerPrice=55000&reduceOnly=yes", base("STOP_MARKET")),
                -1130,
                "Data sent for parameter 'reduceOnly' is not valid.",
            ),
            (
                format!("{}&triggerPrice=55000&price=55000&timeInForce=GTD", base("STOP")),
                -1115,
                "Invalid timeInForce.",
            ),
            (
                format!("{}&triggerPrice=55000&clientAlgoId=a%20b", base("STOP_MARKET")),
                -1100,
                "Illegal characters found in parameter 'clientAlgoId'; legal range is \
                 '^[\\.A-Z\\:/a-z0-9_-]{1,36}$'.",
            ),
            (
                format!(
                    "{}&triggerPrice=55000&clientAlgoId={}",
                    base("STOP_MARKET"),
                    "a".repeat(37)
                ),
                -1100,
                "Illegal characters found in parameter 'clientAlgoId'; legal range is \
                 '^[\\.A-Z\\:/a-z0-9_-]{1,36}$'.",
            ),
        ];
        for (params, code, msg) in &cases {
            let response = post_algo(&sim, params).await;
            assert_eq!(response.1["code"], *code, "{params}: {}", response.1);
            assert_error(&response, 400, *code, msg);
        }
        let closing = post_algo(
            &sim,
            "algoType=CONDITIONAL&symbol=BTCUSDT&side=SELL&type=STOP_MARKET&triggerPrice=55000\
             &closePosition=true",
        )
        .await;
        assert_eq!((closing.0, &closing.1["code"]), (400, &json!(-1000)));
        // None of them was kept, and none used an algo id.
        let (_, open) = get(&sim, "/fapi/v1/openAlgoOrders", "").await;
        assert_eq!(open, json!([]));
        let (status, placed) = post_algo(
            &sim,
            &format!(
                "{}&triggerPrice=55000&clientAlgoId=.A:/z0_-",
                base("STOP_MARKET")
            ),
        )
        .await;
        assert_eq!(
            (status, &placed["algoId"]),
            (200, &json!(FIRST_ALGO_ID)),
            "{placed}"
        );

        for (params, code, msg) in [
            (
                "symbol=BTCUSDT&limit=1001",
                -1130,
                "Data sent for parameter 'limit' is not valid.",
            ),
            (
                "symbol=BTCUSDT&startTime=0&endTime=604800000",
                -1127,
                "The time between startTime and endTime must be less than 7 days.",
            ),
        ] {
            let response = get(&sim, "/fapi/v1/allAlgoOrders", params).await;
            assert_error(&response, 400, code, msg);
        }
        // Less than 7 days apart, around now, it is listed; a week ago, it is not.
        let now = crate::now_ms();
        let (_, listed) = get(
            &sim,
            "/fapi/v1/allAlgoOrders",
            &format!(
                "symbol=BTCUSDT&startTime={}&endTime={}",
                now - 60_000,
                now + 60_000
            ),
        )
        .await;
        assert_eq!(ids(&listed), [FIRST_ALGO_ID], "{listed}");
        let (_, old) = get(
            &sim,
            "/fapi/v1/allAlgoOrders",
            &format!("symbol=BTCUSDT&endTime={}", now - 600_000),
        )
        .await;
        assert_eq!(old, json!([]));
        let (_, after) = get(
            &sim,
            "/fapi/v1/allAlgoOrders",
            &format!("symbol=BTCUSDT&algoId={}", FIRST_ALGO_ID + 1),
        )
        .await;
        assert_eq!(after, json!([]));
    }

    #[tokio::test]
    async fn a_key_without_futures_is_refused_conditional_orders() {
        let sim = start().await;
        for (method, path, params) in [
            (
                Method::POST,
                "/fapi/v1/algoOrder",
                format!("{STOP_MARKET}&clientAlgoId=x"),
            ),
            (
                Method::DELETE,
                "/fapi/v1/algoOrder",
                format!("algoId={FIRST_ALGO_ID}"),
            ),
            (Method::GET, "/fapi/v1/openAlgoOrders", String::new()),
            (
                Method::GET,
                "/fapi/v1/allAlgoOrders",
                "symbol=BTCUSDT".to_owned(),
            ),
        ] {
            let response = signed_as(&sim, NO_FUTURES, method.clone(), path, &params).await;
            assert_eq!(response.0, 401, "{method} {path}: {}", response.1);
            assert_error(
                &response,
                401,
                -2015,
                "Invalid API-key, IP, or permissions for action.",
            );
        }
        // Nothing was placed: the first order the full key places has the first algo id.
        let (status, placed) = post_algo(&sim, STOP_MARKET).await;
        assert_eq!(
            (status, &placed["algoId"]),
            (200, &json!(FIRST_ALGO_ID)),
            "{placed}"
        );
    }

    #[tokio::test]
    async fn reset_with_state_forgets_conditional_orders() {
        let sim = start().await;
        let (_, placed) = post_algo(&sim, STOP_MARKET).await;
        assert_eq!(placed["algoId"], FIRST_ALGO_ID);
        // A plain reset clears the record only.
        send(&sim, Method::POST, "/__mock/reset", None).await;
        let (_, open) = get(&sim, "/fapi/v1/openAlgoOrders", "").await;
        assert_eq!(ids(&open), [FIRST_ALGO_ID]);
        let (status, _) = send(&sim, Method::POST, "/__mock/reset?state=1", None).await;
        assert_eq!(status, 200);
        let (_, open) = get(&sim, "/fapi/v1/openAlgoOrders", "").await;
        assert_eq!(open, json!([]));
        let (_, all) = get(&sim, "/fapi/v1/allAlgoOrders", "symbol=BTCUSDT").await;
        assert_eq!(all, json!([]));
        assert_error(
            &trigger(&sim, &placed["algoId"]).await,
            400,
            -2011,
            "Unknown order sent.",
        );
        let (_, placed) = post_algo(&sim, STOP_MARKET).await;
        assert_eq!(placed["algoId"], FIRST_ALGO_ID);
    }

    #[test]
    fn made_up_client_algo_ids_are_22_letters_and_digits_each_its_own() {
        let ids: std::collections::HashSet<String> = (FIRST_ALGO_ID..FIRST_ALGO_ID + 1000)
            .map(made_up_client_algo_id)
            .collect();
        assert_eq!(ids.len(), 1000);
        for id in &ids {
            assert_eq!(id.len(), 22);
            assert!(id.bytes().all(|b| b.is_ascii_alphanumeric()), "{id}");
        }
    }
}
