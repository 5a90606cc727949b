//! Binance spot (`/api`), wallet and margin (`/sapi`), USD-M (`/fapi`) and COIN-M (`/dapi`).
//!
//! Signing (NOTES §1.1): the payload is the raw query string concatenated, without a
//! separator, to the raw form body, minus the `signature` parameter; HMAC-SHA256 in hex
//! (case-insensitive) or Ed25519 in base64. A parameter may appear only once across query
//! and body: Binance itself answers -1101 to duplicates within one part, and silently
//! prefers the query when a name is in both, which would let a bot show keygate one value
//! and the exchange another. keygate refuses both.
//!
//! In four parts: `request` reads a client's request as Binance reads it, verifies and
//! classifies it, and re-signs it; `endpoints` knows Binance's hosts, its endpoints'
//! classes and their request weights; `answers` reads what Binance answers; and
//! [`Binance`] here puts them together as the gateway's [`Adapter`].

use std::collections::BTreeMap;

use http::HeaderMap;
use keygate_core::{Action, ActionKind, Exchange, ExchangeConditionalOrder, Market, Side};
use rust_decimal::Decimal;

use crate::{
    Adapter, BackOff, Error, ExchangeOrder, ExchangeWithdrawal, KeyPermissions, OrderPlacement,
    Quote, Refusal, Route,
};

mod answers;
mod endpoints;
mod request;

pub use crate::{ClientKey, Forward};
use answers::{
    collect_order_ids, is_algo_order_path, parse_algo_orders, parse_all_orders,
    parse_api_restrictions, parse_depth_price, parse_server_time, parse_spot_holdings,
    parse_ticker_price, parse_withdraw_history, ALGO_ORDER_PATH, MAX_PLACING_ANSWER_BYTES,
};
pub use answers::{FORCED_ORDERS_LIMIT, ORDER_HISTORY_LIMIT, WITHDRAW_HISTORY_LIMIT};
use endpoints::{
    classify_endpoint, clock_answer, market_api, order_weight, public_weight, route,
    signed_read_weight, time_path, DEPTH_LEVELS, WEIGHT_POOLS,
};
use request::is_symbol_text;
pub use request::{
    hmac_signature, BatchOrderParams, SignedRequest, BATCH_ORDERS_PATH, MAX_BATCH_ORDERS,
};
#[cfg(any(test, feature = "fuzzing"))]
use {
    crate::ClientRequest,
    request::{BATCH_MODIFY_ORDER_KEYS, BATCH_NEW_ORDER_KEYS, BATCH_ORDERS},
};

/// The header that carries the API key.
pub const API_KEY_HEADER: &str = "x-mbx-apikey";

/// Largest `recvWindow` Binance accepts, in milliseconds.
pub const MAX_RECV_WINDOW_MS: u64 = 60_000;

const DEFAULT_RECV_WINDOW_MS: u64 = 5_000;
/// Binance's error code for "Timeout waiting for response from backend server. Send status
/// unknown; execution status unknown."
const EXECUTION_UNKNOWN: i64 = -1007;

/// Binance's "Timestamp for this request is outside of the recvWindow" (or ahead of the
/// server's time).
const INVALID_TIMESTAMP: i64 = -1021;

/// Binance's "Too many new orders": an account's order-count limit, not the address's.
const TOO_MANY_ORDERS: i64 = -1015;
/// The shortest interval of Binance's order-count limits (spot's and USD-M's ten
/// seconds), in seconds.
const ORDER_COUNT_INTERVAL_S: u64 = 10;

/// The shortest ban Binance gives an address (2 minutes): how long a 418 that does not
/// say is taken to last.
const SHORTEST_BAN_S: u64 = 120;

/// The longest (3 days): a `Retry-After` past it is read as it.
const LONGEST_BAN_S: u64 = 3 * 24 * 3600;

/// A day, in milliseconds.
const DAY_MS: u64 = 24 * 3600 * 1000;

/// How far back Binance lists an account's withdrawals: 90 days.
const WITHDRAW_HISTORY_SPAN_MS: u64 = 90 * DAY_MS;

/// The most parameters one request may carry, query and body together, `signature` aside.
///
/// Binance's longest requests, the OTOCO order lists, carry about 45. The bound refuses
/// nothing real, and it keeps small what a request costs before its API key is even
/// looked at, whatever its size.
pub const MAX_PARAMETERS: usize = 128;

/// The Binance adapter.
#[derive(Clone, Copy, Debug, Default)]
pub struct Binance;

impl Adapter for Binance {
    type Request = SignedRequest;

    fn exchange(&self) -> Exchange {
        Exchange::Binance
    }
    fn route<'p>(&self, path: &'p str) -> Option<Route<'p>> {
        route(path)
    }
    fn classify_endpoint(&self, method: &str, path: &str) -> ActionKind {
        classify_endpoint(method, path)
    }
    fn client_api_key<'h>(&self, headers: &'h HeaderMap) -> Option<&'h str> {
        let mut keys = headers.get_all(API_KEY_HEADER).iter();
        match (keys.next(), keys.next()) {
            (Some(key), None) => key.to_str().ok(),
            _ => None,
        }
    }
    fn parse(
        &self,
        query: &str,
        body: &[u8],
        content_type: Option<&str>,
    ) -> Result<SignedRequest, Error> {
        SignedRequest::parse(query, body, content_type)
    }
    fn time_path(&self, path: &str) -> &'static str {
        time_path(path)
    }
    fn clock_answer(&self, method: &str, path: &str, query: &str, now_ms: u64) -> Option<Vec<u8>> {
        clock_answer(method, path, query, now_ms)
    }
    fn parse_server_time(&self, body: &[u8]) -> Option<u64> {
        parse_server_time(body)
    }
    fn ticker_path(&self, path: &str, symbol: &str) -> Option<String> {
        // Binance's symbols are `[A-Z0-9-_.]{1,20}` (a USD-M dated contract is
        // `BTCUSDT_260327`); none of those needs encoding in a query, and nothing else
        // can add a parameter to the lookup.
        is_symbol_text(symbol)
            .then(|| format!("{}/ticker/bookTicker?symbol={symbol}", market_api(path)))
    }
    fn parse_ticker_price(&self, body: &[u8], symbol: &str) -> Option<Quote> {
        parse_ticker_price(body, symbol)
    }
    fn takes_the_book(&self, order: &Action) -> bool {
        // Orders that wait for a trigger (spot's, USD-M's and its algo orders').
        const TRIGGERED: [&str; 8] = [
            "STOP_LOSS",
            "STOP_LOSS_LIMIT",
            "TAKE_PROFIT",
            "TAKE_PROFIT_LIMIT",
            "STOP",
            "STOP_MARKET",
            "TAKE_PROFIT_MARKET",
            "TRAILING_STOP_MARKET",
        ];
        let (method, path) = order
            .endpoint
            .split_once(' ')
            .unwrap_or(("", &order.endpoint));
        let triggered = order
            .order_type
            .as_deref()
            .is_some_and(|t| TRIGGERED.iter().any(|x| x.eq_ignore_ascii_case(t)));
        let order_list =
            path.starts_with("/api/v3/order/oco") || path.starts_with("/api/v3/orderList/");
        // A USD-M modification names a price or a `priceMatch` (checked before): one with
        // no price is pegged, and `OPPONENT_5` (…`_10`, `_20`) fills levels past the best.
        let pegged_modification =
            method == "PUT" && order.price.is_none() && order.trigger_price.is_none();
        order.side == Some(Side::Buy)
            && (method == "POST" || pegged_modification)
            && !order.validates_only
            && !triggered
            && !order_list
    }
    fn priced_at_the_book(&self, order: &Action) -> bool {
        self.takes_the_book(order) || (order.market_buy_when_triggered && !order.validates_only)
    }
    fn depth_path(&self, path: &str, symbol: &str) -> Option<String> {
        self.ticker_path(path, symbol).map(|_| {
            format!(
                "{}/depth?symbol={symbol}&limit={DEPTH_LEVELS}",
                market_api(path)
            )
        })
    }
    fn parse_depth_price(&self, body: &[u8], quantity: Decimal) -> Option<Decimal> {
        parse_depth_price(body, quantity)
    }
    fn permissions_path(&self) -> &'static str {
        "/sapi/v1/account/apiRestrictions"
    }
    fn parse_permissions(&self, body: &[u8]) -> Option<KeyPermissions> {
        parse_api_restrictions(body)
    }
    fn holdings(&self, market: Market) -> Option<(&'static str, String)> {
        // Weight 20; the assets held at zero left out by the exchange.
        (market == Market::Spot).then(|| ("/api/v3/account", "omitZeroBalances=true".into()))
    }
    fn parse_holdings(&self, body: &[u8]) -> Option<BTreeMap<String, Decimal>> {
        parse_spot_holdings(body)
    }
    fn symbol_list(&self, market: Market) -> Option<(&'static str, String)> {
        // Every symbol's last price, at a weight of 4: far lighter than `exchangeInfo`.
        (market == Market::Spot).then(|| ("/api/v3/ticker/price", String::new()))
    }
    fn trade_fees(
        &self,
        market: Market,
        from_ms: u64,
        to_ms: u64,
        page: u32,
    ) -> Option<(&'static str, String)> {
        // Weight 30; every trade pays a COMMISSION, in whatever symbol.
        (market == Market::Usdm).then(|| {
            let query = format!(
                "incomeType=COMMISSION&startTime={from_ms}&endTime={to_ms}&page={page}&limit={}",
                crate::TRADE_FEES_PAGE
            );
            ("/fapi/v1/income", query)
        })
    }
    fn parse_trade_fee_symbols(&self, body: &[u8]) -> Option<Vec<String>> {
        let value: serde_json::Value = serde_json::from_slice(body).ok()?;
        value
            .as_array()?
            .iter()
            .filter(|fee| fee.get("incomeType").and_then(|t| t.as_str()) == Some("COMMISSION"))
            .map(|fee| Some(fee.get("symbol")?.as_str()?.to_ascii_uppercase()))
            .collect()
    }
    fn parse_symbol_list(&self, body: &[u8]) -> Option<Vec<(String, Option<Decimal>)>> {
        let value: serde_json::Value = serde_json::from_slice(body).ok()?;
        value
            .as_array()?
            .iter()
            .map(|t| {
                let symbol = t.get("symbol")?.as_str()?.to_owned();
                let price = t
                    .get("price")
                    .and_then(|p| p.as_str())
                    .and_then(|p| p.parse::<Decimal>().ok());
                Some((symbol, price))
            })
            .collect()
    }
    fn parse_order_symbol(&self, body: &[u8]) -> Option<String> {
        let answer: serde_json::Value = serde_json::from_slice(body).ok()?;
        Some(answer.get("symbol")?.as_str()?.to_ascii_uppercase())
    }
    fn own_read_params(&self, query: &str, timestamp_ms: u64) -> String {
        // Ten seconds: the read is signed on the exchange's clock, and a slow answer to
        // a heavy list must not be refused for its window.
        match query {
            "" => format!("timestamp={timestamp_ms}&recvWindow=10000"),
            query => format!("{query}&timestamp={timestamp_ms}&recvWindow=10000"),
        }
    }
    fn refused_header(&self, name: &str, value: &[u8]) -> Option<&'static str> {
        // `MICROSECOND` makes spot read and answer every time in microseconds, which
        // keygate's own reading of answers (an order's time, reconciliation) would take
        // for milliseconds; it is not forwarded, so it is refused rather than dropped.
        (name.eq_ignore_ascii_case("x-mbx-time-unit")
            && !value.eq_ignore_ascii_case(b"millisecond"))
        .then_some(
            "X-MBX-TIME-UNIT: keygate reads and forwards times in milliseconds only; \
                 send the request without the header",
        )
    }
    fn is_no_such_order(&self, status: http::StatusCode, body: &[u8]) -> bool {
        // -2011 "Unknown order sent.", -2013 "Order does not exist.".
        status.is_client_error() && matches!(error_code(body), Some(-2011 | -2013))
    }
    fn withdrawal_history(&self, since_ms: u64, offset: usize) -> (&'static str, String) {
        // Binance lists 90 days at most per call, and WITHDRAW_HISTORY_LIMIT entries from
        // `offset` on.
        (
            "/sapi/v1/capital/withdraw/history",
            format!("startTime={since_ms}&offset={offset}&limit={WITHDRAW_HISTORY_LIMIT}"),
        )
    }
    fn withdrawal_history_limit(&self) -> usize {
        WITHDRAW_HISTORY_LIMIT
    }
    fn withdrawal_history_span_ms(&self) -> u64 {
        // `capital/withdraw/history`, asked from `startTime` to now, answers no longer span.
        WITHDRAW_HISTORY_SPAN_MS
    }
    fn parse_withdrawal_history(&self, body: &[u8]) -> Option<Vec<ExchangeWithdrawal>> {
        parse_withdraw_history(body)
    }
    fn is_execution_unknown(&self, status: http::StatusCode, body: &[u8]) -> bool {
        // Binance: a 5XX "is NOT a failure operation; the execution status is UNKNOWN and
        // could have been a success", and -1007 says as much whatever its status; in a
        // batch's answer (a list, 200), for the order in whose place it stands.
        #[derive(serde::Deserialize)]
        #[serde(untagged)]
        enum Answer {
            Error { code: i64 },
            Batch(Vec<serde_json::Value>),
        }
        let is_unknown = |code: Option<i64>| code == Some(EXECUTION_UNKNOWN);
        status.is_server_error()
            || match serde_json::from_slice::<Answer>(body) {
                Ok(Answer::Error { code }) => is_unknown(Some(code)),
                Ok(Answer::Batch(answers)) => answers
                    .iter()
                    .any(|answer| is_unknown(answer.get("code").and_then(|c| c.as_i64()))),
                // A success that is not JSON at all (empty, a proxy's page): Binance
                // answers every request with JSON, so this one says nothing of what
                // happened, and the order it may have placed has no id to go by.
                Err(_) => {
                    status.is_success()
                        && serde_json::from_slice::<serde::de::IgnoredAny>(body).is_err()
                }
            }
    }
    fn back_off(
        &self,
        status: http::StatusCode,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Option<BackOff> {
        // Binance: a 429 "when either rate limit is violated", with `Retry-After` when the
        // address's request weight is used up (-1003; the order-count limits, -1015,
        // are the account's and answer 429 without it on spot); a 418 when the address
        // is banned for going on after 429s, `Retry-After` saying until when. Bans last
        // "from 2 minutes to 3 days". A 429 that says it is an account's order count is
        // no reason to hold back the other accounts, whatever its headers. USD-M's docs
        // promise no `Retry-After` at all: any other 429 without one holds the address
        // back until the weight's minute turns, since going on risks a ban for everyone
        // (found by review: it held nothing back).
        if status.as_u16() == 429 && error_code(body) == Some(TOO_MANY_ORDERS) {
            return None;
        }
        let retry_after = headers
            .get(http::header::RETRY_AFTER)
            .map(|v| v.to_str().ok().and_then(|v| v.trim().parse::<u64>().ok()));
        let (seconds, banned) = match (status.as_u16(), retry_after) {
            (418, Some(Some(seconds))) => (seconds, true),
            (418, _) => (SHORTEST_BAN_S, true),
            (429, Some(Some(seconds))) => (seconds, false),
            // Absent, or not a number of seconds: until the weight's minute turns.
            (429, None | Some(None)) => (60, false),
            _ => return None,
        };
        Some(BackOff {
            seconds: seconds.clamp(1, LONGEST_BAN_S),
            banned,
        })
    }
    fn orders_back_off(
        &self,
        status: http::StatusCode,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Option<u64> {
        // Spot sends no `Retry-After` with -1015; its shortest order-count interval is ten
        // seconds (USD-M's too), so that is the wait when none is given: one order tried
        // every ten seconds while the account is over its limit is backing off.
        if status.as_u16() != 429 || error_code(body) != Some(TOO_MANY_ORDERS) {
            return None;
        }
        let retry_after = headers
            .get(http::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        Some(
            retry_after
                .unwrap_or(ORDER_COUNT_INTERVAL_S)
                .clamp(1, LONGEST_BAN_S),
        )
    }
    fn refused_the_timestamp(&self, status: http::StatusCode, body: &[u8]) -> bool {
        status.is_client_error() && error_code(body) == Some(INVALID_TIMESTAMP)
    }
    fn may_pass_when_asked_again(&self, status: http::StatusCode, body: &[u8]) -> bool {
        // 403: the web application firewall; 408: a timeout; 418 and 429: the weight.
        // The codes: unknown, disconnected, too many requests, unexpected answer,
        // timeout, busy, too many orders, and a timestamp off the window (clock drift).
        status.is_server_error()
            || matches!(status.as_u16(), 403 | 408 | 418 | 429)
            || matches!(
                error_code(body),
                Some(-1000 | -1001 | -1003 | -1006 | -1007 | -1008 | -1015 | -1021)
            )
    }
    fn error_text(&self, body: &[u8]) -> Option<String> {
        #[derive(serde::Deserialize)]
        struct Refusal {
            code: i64,
            msg: String,
        }
        let refusal = serde_json::from_slice::<Refusal>(body).ok()?;
        let text: String = format!("{}: {}", refusal.code, refusal.msg)
            .chars()
            .filter(|c| !c.is_control())
            .take(crate::MAX_ERROR_TEXT)
            .collect();
        Some(text)
    }
    fn order_placement(&self, method: &str, path: &str) -> Option<OrderPlacement> {
        // Reconciliation lists spot's and USD-M's orders.
        let market = if path.starts_with("/api/") {
            Market::Spot
        } else if path.starts_with("/fapi/") {
            Market::Usdm
        } else {
            return None;
        };
        let places_new = method == "POST"
            && (matches!(
                path,
                "/api/v3/order"
                    | "/api/v3/sor/order"
                    | "/api/v3/order/oco"
                    | "/api/v3/order/cancelReplace"
                    | "/fapi/v1/order"
                    | BATCH_ORDERS_PATH
                    | ALGO_ORDER_PATH
            ) || path.starts_with("/api/v3/orderList/"));
        // A list with a working order and two pending ones has three legs, the other
        // lists two.
        let legs = if path.ends_with("/orderList/otoco") || path.ends_with("/orderList/opoco") {
            3
        } else if path.contains("/orderList/") || path.ends_with("/order/oco") {
            2
        } else {
            1
        };
        Some(OrderPlacement {
            market,
            conditional: is_algo_order_path(path),
            places_new,
            legs,
        })
    }
    fn placed_order_ids(&self, path: &str, body: &[u8]) -> Vec<String> {
        let mut ids = Vec::new();
        // An answer that places orders is a few kilobytes; one far larger is no answer of
        // Binance's to read ids from (a broken or hostile upstream's).
        if body.len() > MAX_PLACING_ANSWER_BYTES {
            return ids;
        }
        if let Ok(answer) = serde_json::from_slice::<serde_json::Value>(body) {
            if is_algo_order_path(path) {
                // One conditional order, its id at the top; nothing else in the answer
                // is an id of the same kind.
                ids.extend(
                    answer
                        .get("algoId")
                        .and_then(|id| id.as_u64())
                        .map(|id| id.to_string()),
                );
            } else {
                collect_order_ids(&answer, &mut ids);
            }
        }
        ids
    }
    fn order_markets(&self) -> &'static [Market] {
        // COIN-M's orders are not listed.
        &[Market::Spot, Market::Usdm]
    }
    fn order_history(
        &self,
        market: Market,
        symbol: &str,
        from_ms: u64,
        to_ms: u64,
    ) -> Option<(&'static str, String)> {
        let path = match market {
            Market::Spot => "/api/v3/allOrders",
            Market::Usdm => "/fapi/v1/allOrders",
            Market::Coinm => return None,
        };
        let query = format!(
            "symbol={symbol}&startTime={from_ms}&endTime={to_ms}&limit={ORDER_HISTORY_LIMIT}"
        );
        Some((path, query))
    }
    fn order_history_span_ms(&self) -> u64 {
        // Spot's `allOrders`: "The time between startTime and endTime can't be longer
        // than 24 hours." USD-M's takes longer spans; one of a day serves both.
        DAY_MS
    }
    fn order_history_limit(&self) -> usize {
        ORDER_HISTORY_LIMIT
    }
    fn open_orders(&self, market: Market) -> Option<(&'static str, String)> {
        // Without a symbol: every symbol's, at a weight of 80 (spot) or 40 (USD-M).
        match market {
            Market::Spot => Some(("/api/v3/openOrders", String::new())),
            Market::Usdm => Some(("/fapi/v1/openOrders", String::new())),
            Market::Coinm => None,
        }
    }
    fn parse_order_history(&self, body: &[u8]) -> Option<Vec<ExchangeOrder>> {
        parse_all_orders(body)
    }
    fn may_be_forced(&self, order: &ExchangeOrder) -> bool {
        // Futures liquidations (`autoclose-…`), auto-deleveraging (`adl_autoclose…`) and
        // delivery settlements (`settlement_autoclose-…`), by the client order ids Binance
        // gives them; nothing in Binance's id rule keeps a key from choosing one.
        let id = order.client_order_id.as_str();
        id.starts_with("autoclose-")
            || id.starts_with("adl_autoclose")
            || id.starts_with("settlement_autoclose-")
    }
    fn forced_orders(
        &self,
        market: Market,
        from_ms: u64,
        to_ms: u64,
    ) -> Option<(&'static str, String)> {
        // "User's Force Orders": liquidations and ADL, every symbol, 100 at most.
        match market {
            Market::Usdm => Some((
                "/fapi/v1/forceOrders",
                format!("startTime={from_ms}&endTime={to_ms}&limit={FORCED_ORDERS_LIMIT}"),
            )),
            Market::Spot | Market::Coinm => None,
        }
    }
    fn conditional_order_history(
        &self,
        market: Market,
        symbol: &str,
        from_ms: u64,
        to_ms: u64,
    ) -> Option<(&'static str, String)> {
        // "Query All Algo Orders": one symbol, a span under 7 days, 1000 at most.
        match market {
            Market::Usdm => Some((
                "/fapi/v1/allAlgoOrders",
                format!(
                    "symbol={symbol}&startTime={from_ms}&endTime={to_ms}&limit={ORDER_HISTORY_LIMIT}"
                ),
            )),
            Market::Spot | Market::Coinm => None,
        }
    }
    fn conditional_order_history_span_ms(&self) -> u64 {
        // Less than seven days: six, in whole days.
        6 * DAY_MS
    }
    fn conditional_order_history_limit(&self) -> usize {
        ORDER_HISTORY_LIMIT
    }
    fn open_conditional_orders(&self, market: Market) -> Option<(&'static str, String)> {
        // Without a symbol: every symbol's, at a weight of 40.
        match market {
            Market::Usdm => Some(("/fapi/v1/openAlgoOrders", String::new())),
            Market::Spot | Market::Coinm => None,
        }
    }
    fn parse_conditional_orders(&self, body: &[u8]) -> Option<Vec<ExchangeConditionalOrder>> {
        parse_algo_orders(body)
    }
    fn weight_pool(&self, path: &str) -> &'static str {
        // `/futures/data/…` draws from the weight of the futures host, which `route`
        // takes to be USD-M's.
        let first = match path.split('/').nth(1).unwrap_or_default() {
            "futures" => "fapi",
            first => first,
        };
        WEIGHT_POOLS
            .iter()
            .find(|pool| pool[1..] == *first)
            .copied()
            .unwrap_or("")
    }
    fn passes_back_header(&self, name: &str) -> bool {
        // `/api` and `/fapi` report weight and order counts in `X-MBX-*` headers, `/sapi`
        // its weight in `X-SAPI-USED-IP-WEIGHT-1M` or, for endpoints weighted per account,
        // `X-SAPI-USED-UID-WEIGHT-1M`.
        let starts_with = |prefix: &str| {
            name.get(..prefix.len())
                .is_some_and(|start| start.eq_ignore_ascii_case(prefix))
        };
        !name.eq_ignore_ascii_case(API_KEY_HEADER)
            && (starts_with("x-mbx-") || starts_with("x-sapi-used-"))
    }
    fn used_weight(&self, pool: &str, headers: &HeaderMap) -> Option<u64> {
        // `/sapi` reports the weight of its own per-address pool apart from `/api`'s; its
        // per-account (UID) weight is no address's and is left out.
        let header = match pool {
            "/sapi" => "x-sapi-used-ip-weight-1m",
            _ => "x-mbx-used-weight-1m",
        };
        headers
            .get(header)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
    }
    fn shared_weight_limit(&self, pool: &str) -> u64 {
        // Below reconciliation's ceilings (`reconciliation_weight_ceiling`: spot 3000,
        // USD-M 1800, `/sapi` 6000 of Binance's 6000, 2400 and 12 000) by more than the
        // heaviest call (250, a spot depth of 5000).
        match pool {
            "/api" => 2_700,
            "/fapi" => 1_500,
            "/sapi" => 5_500,
            _ => u64::MAX,
        }
    }
    fn reconciliation_weight_ceiling(&self, pool: &str) -> u64 {
        // Half of what Binance allows an address, the rest kept for the bots' orders and
        // cancels: `/sapi` (withdrawals) allows 12 000, spot 6000 (reconciliation itself
        // uses at most 1200 there). USD-M's is three quarters of its 2400, above where
        // the gateway pauses the bots' signed reads (1500 by default): reads, which a bot with the
        // read scope alone can make, must not keep the check for a leaked key from
        // running.
        match pool {
            "/api" => 3_000,
            "/fapi" => 1_800,
            "/sapi" => 6_000,
            _ => u64::MAX,
        }
    }
    fn weight_limit(&self, pool: &str) -> u64 {
        // Binance's `REQUEST_WEIGHT` limits of a minute, as `exchangeInfo` lists them.
        match pool {
            "/api" => 6_000,
            "/fapi" | "/dapi" => 2_400,
            "/sapi" => 12_000,
            _ => u64::MAX,
        }
    }
    fn pricing_weight_ceiling(&self) -> u64 {
        // Below USD-M's and COIN-M's limit of 2400 by what cancels need.
        2_000
    }
    fn max_priced_symbols(&self) -> usize {
        MAX_BATCH_ORDERS
    }
    fn public_weight(&self, path: &str, query: &str) -> u64 {
        public_weight(path, query)
    }
    fn signed_read_weight(&self, path: &str, query: &str) -> u64 {
        signed_read_weight(path, query)
    }
    fn order_weight(&self, method: &str, path: &str) -> u64 {
        order_weight(method, path)
    }
    fn refusal(&self, refusal: Refusal<'_>) -> (u16, Vec<u8>) {
        let (status, code, msg): (u16, i32, std::borrow::Cow<'_, str>) = match refusal {
            // -2015 with 401, as Binance answers "Invalid API-key, IP, or permissions".
            Refusal::Denied(msg) => (401, -2015, msg.into()),
            // Binance's code for a timestamp it will not take, which clients (ccxt's
            // `InvalidNonce`) know to sign again with a new one.
            Refusal::Replayed(msg) => (400, -1021, msg.into()),
            // Binance's code, which clients map to an authentication error; the message
            // says why, since a mistyped public path (`/api/v3/TIME`) ends here too.
            Refusal::MissingKey => (
                401,
                -2014,
                "keygate: no API key (one X-MBX-APIKEY header): the endpoint is not a public \
                 one keygate knows, so it needs a key"
                    .into(),
            ),
            Refusal::UnknownRoute => (404, -1000, "keygate: unknown endpoint".into()),
            // Binance's own answer, word for word, for an order it does not have (ccxt's
            // `OrderNotFound`).
            Refusal::NoSuchOrder => (400, -2011, "Unknown order sent.".into()),
            Refusal::Malformed(msg) => (400, -1100, format!("keygate: {msg}").into()),
            Refusal::TooLarge => (413, -1100, "keygate: request body too large".into()),
            Refusal::AuditUnavailable => (503, -1001, "keygate: audit log unavailable; request not forwarded".into()),
            Refusal::NoAnswer => (
                504,
                -1007,
                "keygate: no answer from the exchange (none in time, or one broken off); the outcome is unknown and the request was not retried".into(),
            ),
            Refusal::Unreachable => (502, -1001, "keygate: exchange unreachable; request not sent".into()),
            Refusal::Internal => (500, -1001, "keygate: internal error".into()),
            // -1003 with 429, as Binance answers "Too many requests".
            Refusal::TooMany(msg) => (429, -1003, msg.into()),
            // As Binance answers an account over its order-count limit.
            Refusal::TooManyOrders(msg) => (429, -1015, msg.into()),
            // As Binance answers while the weight is used up, or while the address is
            // banned (418): clients map them to their rate-limit and DDoS errors.
            Refusal::ExchangeBackOff { message, banned } => {
                (if banned { 418 } else { 429 }, -1003, message.into())
            }
            Refusal::Invalid(e) => match e {
                Error::DuplicateParameter { .. } => (400, -1101, "Duplicate values for a parameter detected.".into()),
                Error::TooManyParameters { .. } => {
                    (400, -1101, "Too many parameters sent for this endpoint.".into())
                }
                Error::MissingParameter { name } => (
                    400,
                    -1102,
                    format!("Mandatory parameter '{name}' was not sent, was empty/null, or malformed.").into(),
                ),
                Error::BadSignature => (400, -1022, "Signature for this request is not valid.".into()),
                Error::StaleTimestamp => (400, -1021, "Timestamp for this request is outside of the recvWindow.".into()),
                Error::TimestampAhead => (
                    400,
                    -1021,
                    format!(
                        "Timestamp for this request was {}ms ahead of the server's time.",
                        crate::MAX_TIMESTAMP_AHEAD_MS
                    )
                    .into(),
                ),
                Error::RecvWindowTooLarge => (400, -1131, "recvWindow must be less than 60000".into()),
                Error::Malformed { reason } => (400, -1100, format!("keygate: {reason}").into()),
            },
        };
        let body = serde_json::json!({ "code": code, "msg": msg });
        (status, body.to_string().into_bytes())
    }
}

/// The `code` of an error answer (`{"code": -2015, "msg": "…"}`), if the body is one.
fn error_code(body: &[u8]) -> Option<i64> {
    #[derive(serde::Deserialize)]
    struct Refused {
        code: i64,
    }
    serde_json::from_slice::<Refused>(body)
        .ok()
        .map(|refused| refused.code)
}

/// Parses `data` as a request and uses everything the parsed request offers, for the
/// `binance_parse` fuzz target; returns whether it parsed. The first line of `data` is the
/// query (invalid UTF-8 replaced, since a query reaches the parser as `&str`), the rest a
/// form body.
///
/// Panics only if the parser or a method of the parsed request does, or if an accepted
/// request breaks an invariant: its payload is no longer than what was sent, and it
/// re-signs into a request that parses back to the same parameters and verifies.
#[cfg(any(test, feature = "fuzzing"))]
pub fn fuzz_parse(data: &[u8]) -> bool {
    let (query, body) = match data.iter().position(|&b| b == b'\n') {
        Some(end) => (&data[..end], &data[end + 1..]),
        None => (data, &[][..]),
    };
    let query = String::from_utf8_lossy(query);
    let form = Some("application/x-www-form-urlencoded");
    let Ok(request) = SignedRequest::parse(&query, body, form) else {
        return false;
    };
    assert!(request.payload().len() <= query.len() + body.len());
    // Whether these succeed depends on the input; that they return is what is checked.
    let _ = request.verify(ClientKey::Hmac(b"fuzz"));
    let _ = request.check_freshness(1_700_000_000_000);
    let _ = request.replay_id();
    for (method, path) in [
        ("POST", "/api/v3/order"),
        ("POST", "/fapi/v1/order"),
        ("POST", "/sapi/v1/capital/withdraw/apply"),
        ("POST", "/sapi/v1/asset/transfer"),
        ("POST", BATCH_ORDERS_PATH),
        ("PUT", BATCH_ORDERS_PATH),
    ] {
        let _ = request.check_for_path(method, path);
        let _ = request.classify(method, path);
    }
    assert_resigns_faithfully(&request);
    true
}

/// Entry point of the fuzz target `binance_batch`: `data` (as UTF-8, lossily) is the JSON
/// of a `batchOrders` parameter, sent percent-encoded in a query as a bot would, and read
/// as a batch of new orders and of modifications. Returns whether either read it.
///
/// Panics only if the batch reader or classification does, or if an accepted batch breaks
/// what the reader promises: 1 to [`MAX_BATCH_ORDERS`] orders, each with a symbol and a
/// side of BUY or SELL, only keys Binance documents for the method, none twice in any
/// case; and classified as a batch of as many orders, forwarded as it came.
#[cfg(any(test, feature = "fuzzing"))]
pub fn fuzz_batch(data: &[u8]) -> bool {
    let json = String::from_utf8_lossy(data);
    let encoded = percent_encoding::utf8_percent_encode(&json, percent_encoding::NON_ALPHANUMERIC);
    let query = format!("{BATCH_ORDERS}={encoded}&timestamp=1700000000000");
    let Ok(request) = SignedRequest::parse(&query, b"", None) else {
        return false;
    };
    let mut accepted = false;
    for (method, known) in [
        ("POST", BATCH_NEW_ORDER_KEYS),
        ("PUT", BATCH_MODIFY_ORDER_KEYS),
    ] {
        let Ok(orders) = request.batch(method) else {
            continue;
        };
        accepted = true;
        assert!((1..=MAX_BATCH_ORDERS).contains(&orders.len()));
        let named =
            |order: &BatchOrderParams, name| order.param(name).is_some_and(|v| !v.is_empty());
        for order in &orders {
            assert!(named(order, "symbol"));
            let side = order.param("side").unwrap_or_default();
            assert!(side.eq_ignore_ascii_case("BUY") || side.eq_ignore_ascii_case("SELL"));
            if method == "POST" {
                assert!(named(order, "type"));
            } else {
                assert!(named(order, "quantity") && named(order, "price"));
                assert!(
                    order.param("orderId").is_some() || order.param("origClientOrderId").is_some()
                );
            }
            for (i, (name, _)) in order.params.iter().enumerate() {
                assert!(known.contains(&name.as_str()), "{name}");
                assert!(!order.params[..i]
                    .iter()
                    .any(|(earlier, _)| earlier.eq_ignore_ascii_case(name)));
            }
        }
        let action = request.classify(method, BATCH_ORDERS_PATH);
        assert_eq!(action.orders().len(), orders.len());
        for (decided, order) in action.orders().iter().zip(&orders) {
            // Decided in upper case, as the exchange reads a symbol.
            let symbol = order.param("symbol").unwrap_or_default();
            assert!(decided
                .symbol
                .as_deref()
                .is_some_and(|s| s.eq_ignore_ascii_case(symbol)));
            assert!(decided.side.is_some());
        }
        assert_resigns_faithfully(&request);
    }
    accepted
}

/// Entry point of the fuzz target `binance_answer`: `data` is an exchange's answer (its
/// first byte picks a status and a quantity, the rest is the body, and its start the
/// value of the weight and back-off headers), read by every reader of an answer the
/// adapter has. An exchange, or anything between it and keygate, writes these bytes.
///
/// Panics only if a reader does.
#[cfg(any(test, feature = "fuzzing"))]
pub fn fuzz_answer(data: &[u8]) {
    let (pick, body) = data.split_first().map_or((0, data), |(p, b)| (*p, b));
    let binance = Binance;
    let quantity = Decimal::new(i64::from(pick) * 1_000_003, u32::from(pick % 29));
    let _ = binance.parse_server_time(body);
    let _ = binance.parse_ticker_price(body, "BTCUSDT");
    let _ = binance.parse_depth_price(body, quantity);
    let _ = binance.parse_permissions(body);
    let _ = binance.parse_holdings(body);
    let _ = binance.parse_symbol_list(body);
    let _ = binance.parse_trade_fee_symbols(body);
    let _ = binance.parse_order_symbol(body);
    let _ = binance.parse_withdrawal_history(body);
    for order in binance.parse_order_history(body).unwrap_or_default() {
        let _ = binance.may_be_forced(&order);
    }
    let _ = binance.parse_conditional_orders(body);
    for path in [
        "/api/v3/order",
        BATCH_ORDERS_PATH,
        "/fapi/v1/algoOrder",
        "/api/v3/orderList/otoco",
    ] {
        let _ = binance.placed_order_ids(path, body);
    }
    let mut headers = HeaderMap::new();
    if let Ok(value) = http::HeaderValue::from_bytes(&body[..body.len().min(24)]) {
        headers.insert(http::header::RETRY_AFTER, value.clone());
        headers.insert("x-mbx-used-weight-1m", value.clone());
        headers.insert("x-sapi-used-ip-weight-1m", value);
    }
    let picked = http::StatusCode::from_u16(100 + u16::from(pick) * 2).unwrap_or_default();
    for status in [
        picked,
        http::StatusCode::TOO_MANY_REQUESTS,
        http::StatusCode::IM_A_TEAPOT,
    ] {
        let _ = binance.is_no_such_order(status, body);
        let _ = binance.is_execution_unknown(status, body);
        let _ = binance.back_off(status, &headers, body);
        let _ = binance.may_pass_when_asked_again(status, body);
    }
    let _ = binance.error_text(body);
    let _ = binance.used_weight("/api", &headers);
    let _ = binance.used_weight("/sapi", &headers);
}

/// Asserts that `request` re-signs into a request that parses back to the same parameters
/// in the same order (but for the new `timestamp`) and verifies under the real secret.
#[cfg(any(test, feature = "fuzzing"))]
fn assert_resigns_faithfully(request: &SignedRequest) {
    const SECRET: &[u8] = b"the real secret";
    const TIMESTAMP: u64 = 1_700_000_000_000;
    let forward = request.resign("the real key", SECRET, TIMESTAMP);
    let form = Some("application/x-www-form-urlencoded");
    let resigned = match SignedRequest::parse(&forward.query, forward.body.as_bytes(), form) {
        Ok(resigned) => resigned,
        Err(e) => panic!("the re-signed request {forward:?} does not parse: {e}"),
    };
    let stamp = TIMESTAMP.to_string();
    let expected = request.params().map(|(name, value)| match name {
        "timestamp" => (name, stamp.as_str()),
        _ => (name, value),
    });
    assert!(
        resigned.params().eq(expected),
        "re-signing changed the parameters: {forward:?}"
    );
    assert_eq!(resigned.verify(ClientKey::Hmac(SECRET)), Ok(()));
}

#[cfg(test)]
mod tests;
