//! Reading Binance's answers: clocks, prices, balances, key permissions, withdrawal and
//! order histories, and the ids of the orders an answer placed.

use std::collections::BTreeMap;

use keygate_core::{ExchangeConditionalOrder, WithdrawalDestination};
use rust_decimal::Decimal;

use crate::{ExchangeOrder, ExchangeWithdrawal, KeyPermissions, Quote};

/// Reads the price of `symbol` out of a `ticker/bookTicker` response
/// (`{"symbol":"BTCUSDT","bidPrice":"…","askPrice":"…",…}`): the best ask, or the best
/// bid when that is higher (a crossed book). An answer that names another symbol, or
/// none, is no price of `symbol`: whatever answered (a proxy, a cache, a misrouted call),
/// an order must not be bounded by another market's price. A book with no ask (Binance
/// answers zero) gives no price: an order that needs one is then refused.
///
/// What the best ask offers is its `askQty`; none that reads is nothing offered, so that
/// any buy is priced at the book ([`parse_depth_price`]).
pub(super) fn parse_ticker_price(body: &[u8], symbol: &str) -> Option<Quote> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    if value.get("symbol")?.as_str()? != symbol {
        return None;
    }
    let price = |name: &str| value.get(name)?.as_str()?.parse::<Decimal>().ok();
    let ask = price("askPrice").filter(|ask| *ask > Decimal::ZERO)?;
    Some(Quote {
        price: ask.max(price("bidPrice").unwrap_or(Decimal::ZERO)),
        size: price("askQty")
            .filter(|size| *size > Decimal::ZERO)
            .unwrap_or(Decimal::ZERO),
    })
}

/// Reads a `depth` answer (`{"asks": [["PRICE", "QTY"], …], …}`, best first) for the
/// ask at which the asks add up to `quantity`. Asks out of order (one below the one
/// before it), a level that does not read, or a book that holds less than `quantity` in
/// the levels listed give no price: the order that needs one is then refused.
pub(super) fn parse_depth_price(body: &[u8], quantity: Decimal) -> Option<Decimal> {
    #[derive(serde::Deserialize)]
    struct Depth {
        asks: Vec<(String, String)>,
    }
    let depth: Depth = serde_json::from_slice(body).ok()?;
    let mut offered = Decimal::ZERO;
    let mut previous = Decimal::ZERO;
    for (price, size) in &depth.asks {
        let (price, size) = (
            price.parse::<Decimal>().ok()?,
            size.parse::<Decimal>().ok()?,
        );
        if price < previous || price <= Decimal::ZERO || size < Decimal::ZERO {
            return None;
        }
        previous = price;
        offered = offered.checked_add(size)?;
        if offered >= quantity {
            return Some(price);
        }
    }
    None
}

/// Reads a spot `account` answer's balances: each asset with its free and locked amounts
/// together, those above zero. An answer with a balance that does not read is refused
/// whole: an asset left out would look sold.
pub(super) fn parse_spot_holdings(body: &[u8]) -> Option<BTreeMap<String, Decimal>> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    let mut held = BTreeMap::new();
    for balance in value.get("balances")?.as_array()? {
        let amount = |name: &str| balance.get(name)?.as_str()?.parse::<Decimal>().ok();
        let asset = balance.get("asset")?.as_str()?;
        let total = amount("free")?.checked_add(amount("locked")?)?;
        if total > Decimal::ZERO {
            held.insert(asset.to_owned(), total.normalize());
        }
    }
    Some(held)
}

/// Reads an `apiRestrictions` answer. A flag it lacks reads as the riskier value: a key
/// is taken to withdraw, transfer and work from anywhere unless the answer says not.
pub(super) fn parse_api_restrictions(body: &[u8]) -> Option<KeyPermissions> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    let object = value.as_object()?;
    let flag =
        |name: &str, absent: bool| object.get(name).and_then(|v| v.as_bool()).unwrap_or(absent);
    Some(KeyPermissions {
        can_withdraw: flag("enableWithdrawals", true),
        can_transfer: flag("enableInternalTransfer", true)
            || flag("permitsUniversalTransfer", true),
        can_trade_futures: flag("enableFutures", true),
        can_use_margin: flag("enableMargin", true),
        can_trade_options: flag("enableVanillaOptions", true),
        can_use_portfolio_margin: flag("enablePortfolioMarginTrading", true),
        ip_restricted: flag("ipRestrict", false),
    })
}

/// The most withdrawals one `capital/withdraw/history` answer lists: an answer this long
/// may leave some out, listed from the next `offset`.
pub const WITHDRAW_HISTORY_LIMIT: usize = 1000;

/// The most orders `GET /api/v3/allOrders` (or `/fapi/v1/allOrders`) lists at once.
pub const ORDER_HISTORY_LIMIT: usize = 1000;

/// The most orders `GET /fapi/v1/forceOrders` lists at once: past it, liquidations left
/// out are reported as orders no key of keygate's placed, never the other way round.
pub const FORCED_ORDERS_LIMIT: usize = 100;

/// Where USD-M conditional orders are placed, cancelled and read one by one: Binance's
/// algo service numbers them apart from orders (`algoId`) until one triggers and places
/// an order.
pub(super) const ALGO_ORDER_PATH: &str = "/fapi/v1/algoOrder";

/// Whether `path` is [`ALGO_ORDER_PATH`].
pub(super) fn is_algo_order_path(path: &str) -> bool {
    path == ALGO_ORDER_PATH
}

/// The most order ids read from one answer: a batch places at most five orders, an order
/// list three; more would be an upstream's, not Binance's, and each id is kept in the
/// request's audit event.
pub(super) const MAX_PLACED_ORDER_IDS: usize = 16;

/// The largest answer order ids are read from (see [`Adapter::placed_order_ids`]).
pub(super) const MAX_PLACING_ANSWER_BYTES: usize = 1024 * 1024;

/// Every `orderId` of an order an answer placed, at any depth: a single order's answer has
/// one at its top, an order list's has one per order (`orders`, `orderReports`), a
/// cancel-replace's one under `newOrderResponse`, a batch's one per element. Not the order
/// a cancel-replace cancelled (`cancelResponse`, also under a failure's `data`): any open
/// order can be named there, one a leaked key placed included, which would then pass for
/// keygate's own.
pub(super) fn collect_order_ids(value: &serde_json::Value, ids: &mut Vec<String>) {
    if ids.len() >= MAX_PLACED_ORDER_IDS {
        return;
    }
    match value {
        serde_json::Value::Object(fields) => {
            for (name, field) in fields {
                match field {
                    serde_json::Value::Number(n) if name == "orderId" => {
                        let id = n.to_string();
                        if !ids.contains(&id) {
                            ids.push(id);
                        }
                    }
                    _ if name == "cancelResponse" => {}
                    other => collect_order_ids(other, ids),
                }
            }
        }
        serde_json::Value::Array(items) => {
            for item in items {
                collect_order_ids(item, ids);
            }
        }
        _ => {}
    }
}

/// Reads an `allOrders` or `openOrders` answer (a list of orders alike). An entry that
/// does not read makes the whole answer unreadable: an order skipped could be the one
/// that matters.
pub(super) fn parse_all_orders(body: &[u8]) -> Option<Vec<ExchangeOrder>> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    value
        .as_array()?
        .iter()
        .map(|o| {
            let text = |name: &str| o.get(name).and_then(|v| v.as_str());
            Some(ExchangeOrder {
                id: o.get("orderId")?.as_u64()?.to_string(),
                client_order_id: text("clientOrderId")?.to_owned(),
                symbol: text("symbol")?.to_owned(),
                side: text("side")?.to_owned(),
                order_type: text("type")?.to_owned(),
                quantity: text("origQty")?.parse().ok()?,
                price: text("price")?.parse().ok()?,
                placed_ms: o.get("time")?.as_u64()?,
            })
        })
        .collect()
}

/// Reads an `allAlgoOrders` or `openAlgoOrders` answer (a list of conditional orders
/// alike). An entry that does not read makes the whole answer unreadable, as for orders.
/// Its trigger price stands for its price: a conditional market order has none. A
/// trailing stop names no trigger price and an order closing the position no quantity:
/// those missing, null or empty read as zero (anything else that does not read spoils
/// the list), so that one such order cannot make every list unreadable.
pub(super) fn parse_algo_orders(body: &[u8]) -> Option<Vec<ExchangeConditionalOrder>> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    value
        .as_array()?
        .iter()
        .map(|o| {
            let text = |name: &str| o.get(name).and_then(|v| v.as_str());
            let decimal_or_zero = |name: &str| match o.get(name) {
                None | Some(serde_json::Value::Null) => Some(Decimal::ZERO),
                Some(serde_json::Value::String(t)) if t.is_empty() => Some(Decimal::ZERO),
                Some(serde_json::Value::String(t)) => t.parse().ok(),
                Some(_) => None,
            };
            // `actualOrderId` is a string, empty until the order triggers.
            let triggered_order_id = match o.get("actualOrderId") {
                None | Some(serde_json::Value::Null) => None,
                Some(serde_json::Value::String(id)) if id.is_empty() => None,
                Some(serde_json::Value::String(id)) => Some(id.parse::<u64>().ok()?.to_string()),
                Some(serde_json::Value::Number(id)) => Some(id.as_u64()?.to_string()),
                Some(_) => return None,
            };
            Some(ExchangeConditionalOrder {
                order: ExchangeOrder {
                    id: o.get("algoId")?.as_u64()?.to_string(),
                    client_order_id: text("clientAlgoId")?.to_owned(),
                    symbol: text("symbol")?.to_owned(),
                    side: text("side")?.to_owned(),
                    order_type: text("orderType")?.to_owned(),
                    quantity: decimal_or_zero("quantity")?,
                    price: decimal_or_zero("triggerPrice")?,
                    placed_ms: o.get("createTime")?.as_u64()?,
                },
                triggered_order_id,
            })
        })
        .collect()
}

/// Reads a `capital/withdraw/history` answer. An entry that does not read makes the whole
/// answer unreadable: a withdrawal skipped could be the one that matters.
pub(super) fn parse_withdraw_history(body: &[u8]) -> Option<Vec<ExchangeWithdrawal>> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    value
        .as_array()?
        .iter()
        .map(|w| {
            let text = |name: &str| w.get(name).and_then(|v| v.as_str());
            let tag = text("addressTag").filter(|t| !t.is_empty());
            let destination = WithdrawalDestination::text(text("address")?, tag);
            Some(ExchangeWithdrawal {
                id: text("id")?.to_owned(),
                asset: text("coin")?.to_ascii_uppercase(),
                amount: text("amount")?.parse().ok()?,
                fee: text("transactionFee").and_then(|fee| fee.parse().ok()),
                destination,
                network: text("network")
                    .filter(|n| !n.is_empty())
                    .map(str::to_ascii_uppercase),
                applied_ms: parse_utc_datetime(text("applyTime")?)?,
            })
        })
        .collect()
}

/// `YYYY-MM-DD HH:MM:SS` in UTC, as Binance writes `applyTime`, in milliseconds.
pub(super) fn parse_utc_datetime(text: &str) -> Option<u64> {
    let (date, time) = text.split_once(' ')?;
    let number = |s: &str| s.parse::<i64>().ok();
    let mut d = date.splitn(3, '-').map(number);
    let (year, month, day) = (d.next()??, d.next()??, d.next()??);
    let mut t = time.splitn(3, ':').map(number);
    let (hour, minute, second) = (t.next()??, t.next()??, t.next()??);
    // Years of four digits: the arithmetic below cannot overflow, whatever an answer says.
    if !(1970..=9999).contains(&year)
        || !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || !(0..=23).contains(&hour)
        || !(0..=59).contains(&minute)
        || !(0..=60).contains(&second)
    {
        return None;
    }
    // Howard Hinnant's days_from_civil.
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second;
    u64::try_from(secs).ok().map(|s| s * 1000)
}

/// Reads `serverTime` out of a `time` response.
pub(super) fn parse_server_time(body: &[u8]) -> Option<u64> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    value.get("serverTime")?.as_u64()
}
