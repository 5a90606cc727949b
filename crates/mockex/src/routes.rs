//! HTTP front: request record, endpoint table, authentication order and Binance-shaped replies.

use std::borrow::Cow;
use std::collections::BTreeMap;

use axum::body::{Body, HttpBody as _};
use axum::extract::DefaultBodyLimit;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use rust_decimal::Decimal;
use serde::de::{Error as _, MapAccess};
use serde::{Deserialize, Deserializer};
use serde_json::{json, Value};

use crate::algo;
use crate::auth::{self, Params};
use crate::book::{
    self, Account, Modification, NewOrder, Order, OrderRef, OrderType, Side, Trade, Transfer,
};
use crate::limits::{Admission, Family, FUTURES_ORDER_COUNT_HEADERS, ORDER_COUNT_HEADERS};
use crate::lists::{self, ListKind};
use crate::market::{self, fmt, Product};
use crate::{Received, RecordedRequest, Simulator};

/// A Binance error reply: HTTP status plus `{"code": N, "msg": "..."}`, and the `data`
/// that a cancel-replace's failure adds.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: u16,
    pub(crate) code: i64,
    pub(crate) msg: Cow<'static, str>,
    data: Option<Value>,
}

impl ApiError {
    pub(crate) fn new(status: u16, code: i64, msg: impl Into<Cow<'static, str>>) -> ApiError {
        ApiError {
            status,
            code,
            msg: msg.into(),
            data: None,
        }
    }

    /// The same error with `data` beside its code and message.
    fn with_data(mut self, data: Value) -> ApiError {
        self.data = Some(data);
        self
    }

    pub(crate) fn duplicate() -> ApiError {
        ApiError::new(400, -1101, "Duplicate values for a parameter detected.")
    }

    pub(crate) fn mandatory(name: &str) -> ApiError {
        ApiError::new(
            400,
            -1102,
            format!("Mandatory parameter '{name}' was not sent, was empty/null, or malformed."),
        )
    }

    pub(crate) fn illegal_chars(name: &str, range: &str) -> ApiError {
        ApiError::new(
            400,
            -1100,
            format!("Illegal characters found in parameter '{name}'; legal range is '{range}'."),
        )
    }

    /// -1111 in spot's words (USD-M's filter check words it its own way).
    pub(crate) fn too_much_precision(name: &str) -> ApiError {
        ApiError::new(
            400,
            -1111,
            format!("Parameter '{name}' has too much precision."),
        )
    }

    /// A price or quantity with more decimals than its market allows (spot's asset
    /// precision, USD-M's `pricePrecision` and `quantityPrecision`).
    pub(crate) fn over_asset_precision() -> ApiError {
        ApiError::new(
            400,
            -1111,
            "Precision is over the maximum defined for this asset.",
        )
    }

    pub(crate) fn overflow(name: &str) -> ApiError {
        ApiError::new(400, -1108, format!("Parameter '{name}' overflowed."))
    }

    /// -1130: a value of a known form that the parameter does not take.
    pub(crate) fn invalid_parameter(name: &str) -> ApiError {
        ApiError::new(
            400,
            -1130,
            format!("Data sent for parameter '{name}' is not valid."),
        )
    }

    /// -1001 (HTTP 503): the exchange cannot answer now, as under load.
    pub(crate) fn unavailable() -> ApiError {
        ApiError::new(
            503,
            -1001,
            "Internal error; unable to process your request. Please try again.",
        )
    }

    /// -1007 (HTTP 503): the matching engine did not answer in time; the request may or
    /// may not have executed (Binance: "execution status unknown").
    pub(crate) fn execution_unknown() -> ApiError {
        ApiError::new(
            503,
            -1007,
            "Timeout waiting for response from backend server. Send status unknown; \
             execution status unknown.",
        )
    }

    /// -1003 (HTTP 429): the request's weight takes its family's count past `limit`, as
    /// Binance words it.
    pub(crate) fn too_much_weight(limit: u64) -> ApiError {
        ApiError::new(
            429,
            -1003,
            format!(
                "Too much request weight used; current limit is {limit} request weight per 1 \
                 MINUTE. Please use WebSocket Streams for live updates to avoid polling the API."
            ),
        )
    }

    /// -1003 (HTTP 418): the IP is banned from the host until `until_ms` (ms since the
    /// epoch), as Binance words it.
    pub(crate) fn ip_banned(until_ms: u64) -> ApiError {
        ApiError::new(
            418,
            -1003,
            format!(
                "Way too much request weight used; IP banned until {until_ms}. Please use \
                 WebSocket Streams for live updates to avoid bans."
            ),
        )
    }

    /// -2010: a conditional order whose stop price the price has already reached.
    pub(crate) fn would_trigger_immediately() -> ApiError {
        ApiError::new(400, -2010, "Order would trigger immediately.")
    }

    /// -2011: no order, or none that may be cancelled, answers to the ids sent.
    pub(crate) fn unknown_order() -> ApiError {
        ApiError::new(400, -2011, "Unknown order sent.")
    }

    /// -2011: an order whose status the cancel's `cancelRestrictions` does not allow.
    pub(crate) fn cancel_restricted() -> ApiError {
        ApiError::new(
            400,
            -2011,
            "Order was not canceled due to cancel restrictions.",
        )
    }

    /// -2015: an unknown key, or one without the permission the endpoint needs.
    pub(crate) fn rejected_key() -> ApiError {
        ApiError::new(
            401,
            -2015,
            "Invalid API-key, IP, or permissions for action.",
        )
    }

    pub(crate) fn invalid_symbol() -> ApiError {
        ApiError::new(400, -1121, "Invalid symbol.")
    }

    pub(crate) fn insufficient_balance() -> ApiError {
        ApiError::new(
            400,
            -2010,
            "Account has insufficient balance for requested action.",
        )
    }

    /// A spot filter failure: -1013 naming the filter.
    pub(crate) fn filter(name: &str) -> ApiError {
        ApiError::new(400, -1013, format!("Filter failure: {name}"))
    }

    /// A USD-M filter failure: futures give each failure its own code and message
    /// (USD-M error codes, "40xx - Filters and other Issues").
    pub(crate) fn futures_filter(code: i64, msg: impl Into<Cow<'static, str>>) -> ApiError {
        ApiError::new(400, code, msg)
    }

    fn into_parts(self) -> (StatusCode, Value) {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::BAD_REQUEST);
        let mut body = json!({"code": self.code, "msg": self.msg});
        if let Some(data) = self.data {
            body["data"] = data;
        }
        (status, body)
    }
}

/// Builds the router: one fallback handler, so every request is recorded before routing.
/// axum's default body limit is off: it would answer a large body 413 before the handler
/// records it, so the handler reads the body itself, up to [`MAX_BODY`].
pub(crate) fn router(simulator: Simulator) -> Router {
    Router::new()
        .fallback(handle)
        .layer(DefaultBodyLimit::disable())
        .with_state(simulator)
}

/// The most of a request body the simulator reads (16 MiB): a body larger than this is
/// recorded as far as it was read and refused with 413, so that a test can see what
/// arrived of it while a runaway client cannot exhaust memory.
pub(crate) const MAX_BODY: usize = 16 * 1024 * 1024;

/// How reading a request body ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BodyEnd {
    /// All of it was read.
    Whole,
    /// It holds more than [`MAX_BODY`]; the rest was left unread.
    TooLarge,
    /// The client stopped sending it partway (the connection broke).
    Broken,
}

/// Reads `body`, up to `limit` bytes: what was read, and how reading ended.
async fn read_body(mut body: Body, limit: usize) -> (Vec<u8>, BodyEnd) {
    let mut read = Vec::new();
    loop {
        let frame = std::future::poll_fn(|cx| std::pin::Pin::new(&mut body).poll_frame(cx)).await;
        let data = match frame {
            None => return (read, BodyEnd::Whole),
            Some(Err(_)) => return (read, BodyEnd::Broken),
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => data,
                // Trailers carry no body.
                Err(_) => continue,
            },
        };
        let room = limit - read.len();
        if data.len() > room {
            read.extend_from_slice(&data[..room]);
            return (read, BodyEnd::TooLarge);
        }
        read.extend_from_slice(&data);
    }
}

/// Who may call an endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Security {
    /// Public market data.
    None,
    /// `X-MBX-APIKEY` alone (Binance's MARKET_DATA): a known key, no signature.
    ApiKey,
    /// `X-MBX-APIKEY` plus `timestamp` and `signature`.
    Signed,
}

/// Every endpoint the simulator answers.
#[derive(Clone, Copy, Debug)]
enum Endpoint {
    Ping,
    Time,
    SpotExchangeInfo,
    UsdmExchangeInfo,
    CoinmExchangeInfo,
    TickerPrice(Product),
    Ticker24hr(Product),
    BookTicker,
    Depth,
    /// `GET /api/v3/klines` and `GET /fapi/v1/klines`.
    Klines(Product),
    /// `GET /api/v3/aggTrades` and `GET /fapi/v1/aggTrades`.
    AggTrades(Product),
    /// `GET /api/v3/trades`: recent trades.
    Trades,
    /// `GET /api/v3/avgPrice`.
    AvgPrice,
    /// `POST /api/v3/order/test`: a spot order validated, not placed.
    TestOrder,
    /// `GET /sapi/v1/asset/tradeFee`: each spot symbol's commission rates.
    TradeFee,
    /// `GET /sapi/v1/capital/deposit/address`.
    DepositAddress,
    /// `GET /sapi/v1/capital/deposit/hisrec`.
    DepositHistory,
    /// `GET /fapi/v1/depth`.
    FuturesDepth,
    /// `GET /fapi/v1/ticker/bookTicker`.
    FuturesBookTicker,
    /// `GET /fapi/v1/premiumIndex`: mark price and funding.
    PremiumIndex,
    Account,
    NewOrder(Product),
    /// `PUT /fapi/v1/order`: modify a USD-M limit order.
    ModifyOrder,
    /// `POST /api/v3/order/cancelReplace`: cancel a spot order and place another.
    CancelReplace,
    /// `POST /fapi/v1/batchOrders`: up to five USD-M orders.
    BatchOrders,
    /// `PUT /fapi/v1/batchOrders`: up to five USD-M modifications.
    ModifyBatchOrders,
    CancelBatchOrders,
    QueryOrder(Product),
    CancelOrder(Product),
    OpenOrders(Product),
    AllOrders(Product),
    ForceOrders,
    MyTrades(Product),
    Income,
    CapitalConfig,
    /// `GET /sapi/v1/margin/allPairs` and `.../isolated/allPairs`: both list no pair.
    MarginPairs,
    Withdraw,
    WithdrawHistory,
    ApiRestrictions,
    FuturesAccount,
    FuturesBalance,
    Leverage,
    /// `GET /fapi/v2/positionRisk` (every symbol) or `/fapi/v3/positionRisk` (those
    /// with a position or open orders).
    PositionRisk {
        v3: bool,
    },
    /// `GET /fapi/v1/leverageBracket`.
    LeverageBracket,
    /// `POST /fapi/v1/marginType`.
    MarginType,
    /// `DELETE /api/v3/openOrders` and `DELETE /fapi/v1/allOpenOrders`.
    CancelAllOrders(Product),
    /// `POST /sapi/v1/asset/transfer`: between the spot and USD-M wallets.
    Transfer,
    /// `GET /sapi/v1/system/status`.
    SystemStatus,
    NewAlgoOrder,
    CancelAlgoOrder,
    QueryAlgoOrder,
    OpenAlgoOrders,
    AllAlgoOrders,
    /// `DELETE /fapi/v1/algoOpenOrders`: cancels a symbol's open conditional orders.
    CancelAllAlgoOrders,
    /// `GET /fapi/v1/symbolConfig`: each symbol's margin type and leverage.
    SymbolConfig,
    /// `GET /fapi/v1/commissionRate`: a symbol's commission rates.
    CommissionRate,
    /// `GET /fapi/v1/positionSide/dual`: the position mode.
    PositionMode,
    /// `POST /fapi/v1/positionSide/dual`: change the position mode.
    ChangePositionMode,
    /// `GET /fapi/v1/multiAssetsMargin`: the Multi-Assets Mode.
    MultiAssetsMode,
    /// `POST /fapi/v1/multiAssetsMargin`: change the Multi-Assets Mode.
    ChangeMultiAssetsMode,
    /// `GET /fapi/v1/accountConfig`: the USD-M account's configuration.
    AccountConfig,
    /// `GET /fapi/v1/openOrder`: one open USD-M order.
    OpenOrder,
    /// `POST /fapi/v1/countdownCancelAll`: cancel a symbol's orders when a countdown ends.
    CountdownCancelAll,
    /// `GET /fapi/v1/openInterest`: a USD-M symbol's open interest.
    OpenInterest,
    /// `POST /sapi/v1/asset/get-funding-asset`: the funding wallet.
    FundingAssets,
    /// `GET /sapi/v1/asset/transfer`: past transfers between wallets.
    TransferHistory,
    /// `GET /fapi/v1/fundingRate`: past fundings.
    FundingRate,
    /// `POST /api/v3/orderList/{oco,oto,otoco,opo,opoco}` and `POST /api/v3/order/oco`.
    NewOrderList(ListKind),
    /// `DELETE /api/v3/orderList`.
    CancelOrderList,
    /// `GET /api/v3/orderList`.
    QueryOrderList,
    /// `GET /api/v3/allOrderList`.
    AllOrderLists,
    /// `GET /api/v3/openOrderList`.
    OpenOrderLists,
}

/// A permission of an API key beyond reading (see [`crate::Restrictions`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Permission {
    /// `enableSpotAndMarginTrading`.
    SpotTrading,
    /// `enableFutures`.
    Futures,
    /// `enableWithdrawals`.
    Withdrawals,
    /// `permitsUniversalTransfer`.
    UniversalTransfer,
}

impl Permission {
    fn is_granted(self, restrictions: &crate::Restrictions) -> bool {
        match self {
            Permission::SpotTrading => restrictions.spot_trading,
            Permission::Futures => restrictions.futures,
            Permission::Withdrawals => restrictions.withdrawals,
            Permission::UniversalTransfer => restrictions.universal_transfer,
        }
    }
}

impl Endpoint {
    /// The permission a key needs for this endpoint, beyond reading: spot TRADE endpoints
    /// need spot trading; the whole USD-M API, reads included, needs futures (a key
    /// without it cannot use `/fapi` at all); a withdrawal needs withdrawals.
    fn permission(self) -> Option<Permission> {
        match self {
            Endpoint::NewOrder(Product::Spot)
            | Endpoint::CancelOrder(Product::Spot)
            | Endpoint::CancelAllOrders(Product::Spot)
            | Endpoint::CancelReplace
            | Endpoint::NewOrderList(_)
            | Endpoint::CancelOrderList
            // TRADE-typed though it places nothing (NOTES §1.3; found by review: a key
            // without spot trading passed it).
            | Endpoint::TestOrder => Some(Permission::SpotTrading),
            Endpoint::NewOrder(Product::UsdM)
            | Endpoint::ModifyOrder
            | Endpoint::BatchOrders
            | Endpoint::ModifyBatchOrders
            | Endpoint::CancelBatchOrders
            | Endpoint::QueryOrder(Product::UsdM)
            | Endpoint::CancelOrder(Product::UsdM)
            | Endpoint::OpenOrders(Product::UsdM)
            | Endpoint::AllOrders(Product::UsdM)
            | Endpoint::ForceOrders
            | Endpoint::MyTrades(Product::UsdM)
            | Endpoint::Income
            | Endpoint::FuturesAccount
            | Endpoint::FuturesBalance
            | Endpoint::Leverage
            | Endpoint::PositionRisk { .. }
            | Endpoint::LeverageBracket
            | Endpoint::MarginType
            | Endpoint::CancelAllOrders(Product::UsdM)
            | Endpoint::NewAlgoOrder
            | Endpoint::CancelAlgoOrder
            | Endpoint::QueryAlgoOrder
            | Endpoint::OpenAlgoOrders
            | Endpoint::AllAlgoOrders
            | Endpoint::CancelAllAlgoOrders
            | Endpoint::SymbolConfig
            | Endpoint::CommissionRate
            | Endpoint::PositionMode
            | Endpoint::ChangePositionMode
            | Endpoint::MultiAssetsMode
            | Endpoint::ChangeMultiAssetsMode
            | Endpoint::AccountConfig
            | Endpoint::OpenOrder
            | Endpoint::CountdownCancelAll => Some(Permission::Futures),
            Endpoint::Withdraw => Some(Permission::Withdrawals),
            Endpoint::Transfer => Some(Permission::UniversalTransfer),
            _ => None,
        }
    }

    /// Whether Binance counts this endpoint's weight per account (UID) rather than per
    /// IP: of the simulator's `/sapi` endpoints, the withdrawal and the universal transfer
    /// (each "Weight(UID): 900").
    fn is_uid_weighted(self) -> bool {
        matches!(self, Endpoint::Withdraw | Endpoint::Transfer)
    }
}

/// The weight of a call whose weight hangs on its parameters, where the table's weight
/// is for one symbol (or, for `depth`, the default `limit`), as Binance's pages give it:
/// spot `openOrders` 6 for one symbol and 80 for every symbol, USD-M `openOrders` and
/// `openAlgoOrders` 1 and 40; spot `ticker/24hr` 2 for one symbol, 80 for every symbol,
/// and for a `symbols` list 2 up to 20 symbols, 40 up to 100 and 80 past that; spot
/// `ticker/price` and `ticker/bookTicker` 2 for one symbol, 4 for every symbol or a
/// list; USD-M `ticker/24hr` 1 or 40 and `ticker/price` 1 or 2; spot `depth` by its
/// `limit` (5 up to 100, 25 up to 500, 50 up to 1000, 250 past that); USD-M `depth` by
/// its `limit` (2 up to 50, 5 up to 100, 10 up to 500, 20 past that), USD-M `klines` by
/// its `limit` (1 under 100, 2 under 500, 5 up to 1000, 10 past that), USD-M
/// `ticker/bookTicker` 2 for one symbol and 5 for every symbol, `premiumIndex` 1 and 10;
/// spot `myTrades` 20, or 5 with `orderId`; a spot test order 20 with
/// `computeCommissionRates=true` (in its query or its body). Parameters are read
/// percent-decoded, as Binance reads them. A value that does not read leaves the table's
/// weight: the request is refused for it.
fn weight_by_params(endpoint: Endpoint, query: &str, body: &[u8]) -> Option<u32> {
    if matches!(endpoint, Endpoint::TestOrder) {
        let asks_rates = |params: &[u8]| {
            form_urlencoded::parse(params)
                .any(|(key, value)| key == "computeCommissionRates" && value == "true")
        };
        return (asks_rates(query.as_bytes()) || asks_rates(body)).then_some(20);
    }
    let param = |name: &str| {
        form_urlencoded::parse(query.as_bytes())
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.into_owned())
    };
    let names_symbol = param("symbol").is_some();
    // How many symbols a `symbols` list names, when it is sent.
    let listed = param("symbols").map(|list| {
        serde_json::from_str::<Vec<Value>>(&list).map_or(list.split(',').count(), |l| l.len())
    });
    match endpoint {
        Endpoint::OpenOrders(_) | Endpoint::OpenAlgoOrders if names_symbol => None,
        Endpoint::OpenOrders(Product::Spot) => Some(80),
        Endpoint::OpenOrders(Product::UsdM) | Endpoint::OpenAlgoOrders => Some(40),
        Endpoint::Ticker24hr(Product::Spot) => match listed {
            Some(0..=20) => Some(2),
            Some(21..=100) => Some(40),
            Some(_) => Some(80),
            None if names_symbol => None,
            None => Some(80),
        },
        Endpoint::TickerPrice(Product::Spot) | Endpoint::BookTicker
            if names_symbol && listed.is_none() =>
        {
            None
        }
        Endpoint::TickerPrice(Product::Spot) | Endpoint::BookTicker => Some(4),
        Endpoint::Ticker24hr(Product::UsdM) if !names_symbol => Some(40),
        Endpoint::TickerPrice(Product::UsdM) if !names_symbol => Some(2),
        Endpoint::Depth => match param("limit")?.parse::<u64>().ok()? {
            0..=100 => None,
            101..=500 => Some(25),
            501..=1000 => Some(50),
            _ => Some(250),
        },
        Endpoint::FuturesDepth => match param("limit")?.parse::<u64>().ok()? {
            0..=50 => Some(2),
            51..=100 => Some(5),
            101..=500 => None,
            _ => Some(20),
        },
        Endpoint::Klines(Product::UsdM) => match param("limit")?.parse::<u64>().ok()? {
            0..=99 => Some(1),
            100..=499 => Some(2),
            500..=1000 => None,
            _ => Some(10),
        },
        Endpoint::FuturesBookTicker if !names_symbol => Some(5),
        Endpoint::PremiumIndex if !names_symbol => Some(10),
        Endpoint::MyTrades(Product::Spot) if param("orderId").is_some() => Some(5),
        _ => None,
    }
}

/// The endpoint table: (method, path) → security, request weight, endpoint.
fn route(method: &Method, path: &str) -> Option<(Security, u32, Endpoint)> {
    use Endpoint as E;
    use Security::{ApiKey, None as Public, Signed};
    let get = method == Method::GET;
    let post = method == Method::POST;
    let put = method == Method::PUT;
    let delete = method == Method::DELETE;
    let found = match path {
        "/api/v3/ping" | "/fapi/v1/ping" | "/dapi/v1/ping" if get => (Public, 1, E::Ping),
        "/api/v3/time" | "/fapi/v1/time" | "/dapi/v1/time" if get => (Public, 1, E::Time),
        "/api/v3/exchangeInfo" if get => (Public, 20, E::SpotExchangeInfo),
        "/fapi/v1/exchangeInfo" if get => (Public, 1, E::UsdmExchangeInfo),
        "/dapi/v1/exchangeInfo" if get => (Public, 1, E::CoinmExchangeInfo),
        "/api/v3/ticker/price" if get => (Public, 2, E::TickerPrice(Product::Spot)),
        "/fapi/v1/ticker/price" | "/fapi/v2/ticker/price" if get => {
            (Public, 1, E::TickerPrice(Product::UsdM))
        }
        "/api/v3/ticker/24hr" if get => (Public, 2, E::Ticker24hr(Product::Spot)),
        "/fapi/v1/ticker/24hr" if get => (Public, 1, E::Ticker24hr(Product::UsdM)),
        "/api/v3/ticker/bookTicker" if get => (Public, 2, E::BookTicker),
        "/api/v3/depth" if get => (Public, 5, E::Depth),
        "/api/v3/klines" if get => (Public, 2, E::Klines(Product::Spot)),
        "/fapi/v1/klines" if get => (Public, 5, E::Klines(Product::UsdM)),
        "/api/v3/aggTrades" if get => (Public, 4, E::AggTrades(Product::Spot)),
        "/api/v3/trades" if get => (Public, 25, E::Trades),
        "/api/v3/avgPrice" if get => (Public, 2, E::AvgPrice),
        "/fapi/v1/aggTrades" if get => (Public, 20, E::AggTrades(Product::UsdM)),
        "/fapi/v1/depth" if get => (Public, 10, E::FuturesDepth),
        "/fapi/v1/ticker/bookTicker" if get => (Public, 2, E::FuturesBookTicker),
        "/fapi/v1/premiumIndex" if get => (Public, 1, E::PremiumIndex),
        // Binance's page limits it to 500 requests per 5 minutes per IP, shared with
        // `fundingInfo`, which the simulator does not enforce; its minute weight is 1.
        "/fapi/v1/fundingRate" if get => (Public, 1, E::FundingRate),
        "/api/v3/account" if get => (Signed, 20, E::Account),
        "/api/v3/order" if post => (Signed, 1, E::NewOrder(Product::Spot)),
        "/api/v3/order" if get => (Signed, 4, E::QueryOrder(Product::Spot)),
        "/api/v3/order" if delete => (Signed, 1, E::CancelOrder(Product::Spot)),
        "/api/v3/order/cancelReplace" if post => (Signed, 1, E::CancelReplace),
        "/api/v3/order/test" if post => (Signed, 1, E::TestOrder),
        "/api/v3/openOrders" if get => (Signed, 6, E::OpenOrders(Product::Spot)),
        "/api/v3/openOrders" if delete => (Signed, 1, E::CancelAllOrders(Product::Spot)),
        "/api/v3/allOrders" if get => (Signed, 20, E::AllOrders(Product::Spot)),
        "/api/v3/orderList/oco" if post => (Signed, 1, E::NewOrderList(ListKind::Oco)),
        "/api/v3/orderList/oto" if post => (Signed, 1, E::NewOrderList(ListKind::Oto)),
        "/api/v3/orderList/otoco" if post => (Signed, 1, E::NewOrderList(ListKind::Otoco)),
        "/api/v3/orderList/opo" if post => (Signed, 1, E::NewOrderList(ListKind::Opo)),
        "/api/v3/orderList/opoco" if post => (Signed, 1, E::NewOrderList(ListKind::Opoco)),
        "/api/v3/order/oco" if post => (Signed, 1, E::NewOrderList(ListKind::DeprecatedOco)),
        "/api/v3/orderList" if delete => (Signed, 1, E::CancelOrderList),
        "/api/v3/orderList" if get => (Signed, 4, E::QueryOrderList),
        "/api/v3/allOrderList" if get => (Signed, 20, E::AllOrderLists),
        "/api/v3/openOrderList" if get => (Signed, 6, E::OpenOrderLists),
        "/api/v3/myTrades" if get => (Signed, 20, E::MyTrades(Product::Spot)),
        "/sapi/v1/capital/config/getall" if get => (Signed, 10, E::CapitalConfig),
        // MARKET_DATA, as Binance's "Get All Cross Margin Pairs" page has it.
        "/sapi/v1/margin/allPairs" if get => (ApiKey, 1, E::MarginPairs),
        "/sapi/v1/margin/isolated/allPairs" if get => (Signed, 10, E::MarginPairs),
        "/sapi/v1/capital/withdraw/apply" if post => (Signed, 900, E::Withdraw),
        "/sapi/v1/account/apiRestrictions" if get => (Signed, 1, E::ApiRestrictions),
        "/sapi/v1/capital/withdraw/history" if get => (Signed, 18, E::WithdrawHistory),
        "/sapi/v1/asset/tradeFee" if get => (Signed, 1, E::TradeFee),
        "/sapi/v1/capital/deposit/address" if get => (Signed, 10, E::DepositAddress),
        "/sapi/v1/capital/deposit/hisrec" if get => (Signed, 1, E::DepositHistory),
        "/sapi/v1/asset/transfer" if post => (Signed, 900, E::Transfer),
        "/sapi/v1/asset/transfer" if get => (Signed, 1, E::TransferHistory),
        "/sapi/v1/asset/get-funding-asset" if post => (Signed, 1, E::FundingAssets),
        "/sapi/v1/system/status" if get => (Public, 1, E::SystemStatus),
        "/fapi/v2/account" | "/fapi/v3/account" if get => (Signed, 5, E::FuturesAccount),
        "/fapi/v2/balance" | "/fapi/v3/balance" if get => (Signed, 5, E::FuturesBalance),
        // Binance's pages count a new order and a modification 1 against each order rate
        // limit and 0 against the IP weight; so does the simulator's weight.
        "/fapi/v1/order" if post => (Signed, 0, E::NewOrder(Product::UsdM)),
        "/fapi/v1/order" if put => (Signed, 0, E::ModifyOrder),
        "/fapi/v1/batchOrders" if post => (Signed, 5, E::BatchOrders),
        "/fapi/v1/batchOrders" if put => (Signed, 5, E::ModifyBatchOrders),
        "/fapi/v1/batchOrders" if delete => (Signed, 1, E::CancelBatchOrders),
        "/fapi/v1/order" if get => (Signed, 1, E::QueryOrder(Product::UsdM)),
        "/fapi/v1/order" if delete => (Signed, 1, E::CancelOrder(Product::UsdM)),
        "/fapi/v1/openOrders" if get => (Signed, 1, E::OpenOrders(Product::UsdM)),
        "/fapi/v1/allOrders" if get => (Signed, 5, E::AllOrders(Product::UsdM)),
        "/fapi/v1/forceOrders" if get => (Signed, 50, E::ForceOrders),
        "/fapi/v1/userTrades" if get => (Signed, 5, E::MyTrades(Product::UsdM)),
        "/fapi/v1/income" if get => (Signed, 30, E::Income),
        "/fapi/v1/leverage" if post => (Signed, 1, E::Leverage),
        "/fapi/v2/positionRisk" if get => (Signed, 5, E::PositionRisk { v3: false }),
        "/fapi/v3/positionRisk" if get => (Signed, 5, E::PositionRisk { v3: true }),
        "/fapi/v1/leverageBracket" if get => (Signed, 1, E::LeverageBracket),
        "/fapi/v1/marginType" if post => (Signed, 1, E::MarginType),
        "/fapi/v1/allOpenOrders" if delete => (Signed, 1, E::CancelAllOrders(Product::UsdM)),
        // Binance weighs a new conditional order 0, and so does the simulator.
        "/fapi/v1/algoOrder" if post => (Signed, 0, E::NewAlgoOrder),
        "/fapi/v1/algoOrder" if delete => (Signed, 1, E::CancelAlgoOrder),
        "/fapi/v1/algoOrder" if get => (Signed, 1, E::QueryAlgoOrder),
        "/fapi/v1/openAlgoOrders" if get => (Signed, 1, E::OpenAlgoOrders),
        "/fapi/v1/allAlgoOrders" if get => (Signed, 5, E::AllAlgoOrders),
        "/fapi/v1/algoOpenOrders" if delete => (Signed, 1, E::CancelAllAlgoOrders),
        "/fapi/v1/symbolConfig" if get => (Signed, 5, E::SymbolConfig),
        "/fapi/v1/commissionRate" if get => (Signed, 20, E::CommissionRate),
        "/fapi/v1/positionSide/dual" if get => (Signed, 30, E::PositionMode),
        "/fapi/v1/positionSide/dual" if post => (Signed, 1, E::ChangePositionMode),
        "/fapi/v1/multiAssetsMargin" if get => (Signed, 30, E::MultiAssetsMode),
        "/fapi/v1/multiAssetsMargin" if post => (Signed, 1, E::ChangeMultiAssetsMode),
        "/fapi/v1/accountConfig" if get => (Signed, 5, E::AccountConfig),
        "/fapi/v1/openOrder" if get => (Signed, 1, E::OpenOrder),
        "/fapi/v1/countdownCancelAll" if post => (Signed, 10, E::CountdownCancelAll),
        "/fapi/v1/openInterest" if get => (Public, 1, E::OpenInterest),
        _ => return None,
    };
    Some(found)
}

/// The one handler behind every path.
async fn handle(
    State(simulator): State<Simulator>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let path = uri.path().to_owned();
    let query = uri.query().unwrap_or("").to_owned();
    if let Some(control) = path.strip_prefix("/__mock/") {
        // Reports the `/api` weight without spending any, for tests to read it.
        let response = mock_control(&simulator, &method, control, &query);
        let used = simulator.add_weight(Family::Api, None, 0);
        return with_weight(response, Family::Api, used);
    }
    let (body, body_end) = read_body(body, MAX_BODY).await;
    let sent_keys: Vec<String> = headers
        .get_all("x-mbx-apikey")
        .iter()
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .collect();
    // Recorded as sent, every one; two keys name no one, and are refused as a key that
    // is not one (found by review: the first was taken, so a gateway that sent its
    // client's key after the real one passed here).
    let recorded_key = (!sent_keys.is_empty()).then(|| sent_keys.join(", "));
    let api_key = match sent_keys.len() {
        0 => None,
        1 => recorded_key.clone(),
        _ => Some(String::new()),
    };
    simulator.record(Received {
        request: RecordedRequest {
            method: method.as_str().to_owned(),
            path: path.clone(),
            query: query.clone(),
            body: String::from_utf8_lossy(&body).into_owned(),
            api_key: recorded_key,
        },
        headers: headers
            .iter()
            .map(|(name, value)| {
                (
                    name.as_str().to_owned(),
                    String::from_utf8_lossy(value.as_bytes()).into_owned(),
                )
            })
            .collect(),
    });
    // Refused at the front, as a body too large or cut short would be before Binance's
    // API reads it: no weight is spent. Binance documents neither answer; these are
    // its error shape.
    let unread = match body_end {
        BodyEnd::Whole => None,
        BodyEnd::TooLarge => Some(ApiError::new(413, -1000, "Request body too large.")),
        BodyEnd::Broken => Some(ApiError::new(400, -1000, "Request body could not be read.")),
    };
    if let Some(error) = unread {
        let (status, value) = error.into_parts();
        return (status, axum::Json(value)).into_response();
    }
    if let Some(delay) = simulator.delay_of(&path) {
        tokio::time::sleep(delay).await;
    }
    if simulator.is_failing(&path) {
        let (status, value) = ApiError::unavailable().into_parts();
        return (status, axum::Json(value)).into_response();
    }
    let found = route(&method, &path);
    let family = Family::of(&path, found.is_some_and(|(_, _, e)| e.is_uid_weighted()));
    let weight = match found {
        // A path the simulator does not know weighs 1.
        None => 1,
        Some((_, weight, endpoint)) => weight_by_params(endpoint, &query, &body).unwrap_or(weight),
    };
    // Weight per account is counted for the account of the key sent, signed or not: the
    // same counter for every key of one account, as Binance counts UID weight.
    let account = api_key
        .as_deref()
        .and_then(|k| simulator.key(k))
        .map(|key| &key.account);
    // The weight is judged before the request is read, at Binance's front: a refused
    // request does not run, however it is signed.
    let (error, retry_after_s, used) = match simulator.admit(family, account, weight) {
        Admission::Admitted { used } => (None, 0, used),
        Admission::TooMuchWeight {
            used,
            limit,
            retry_after_s,
        } => (Some(ApiError::too_much_weight(limit)), retry_after_s, used),
        Admission::Banned {
            used,
            until_ms,
            retry_after_s,
        } => (Some(ApiError::ip_banned(until_ms)), retry_after_s, used),
    };
    if let Some(error) = error {
        let retry_after_s = simulator
            .weight_limits()
            .retry_after
            .then_some(retry_after_s);
        return refused(error, retry_after_s, family, used);
    }
    let (status, value) = match found {
        None => ApiError::new(404, -1000, "Unknown endpoint.").into_parts(),
        Some((security, _, endpoint)) => {
            // Binance reads the parameters of a GET from its query string alone
            // (NOTES §1.1): a body it carries is neither parameters nor signed.
            let body: &[u8] = if method == Method::GET || method == Method::HEAD {
                b""
            } else {
                &body
            };
            let result = authenticate(
                &simulator,
                security,
                &path,
                &headers,
                &query,
                body,
                api_key.as_deref(),
            )
            .and_then(|(params, key)| {
                permit(&simulator, endpoint, key.as_deref())?;
                within_order_limit(&simulator, endpoint, account)?;
                dispatch(&simulator, endpoint, &params, key.as_deref())
            });
            match result {
                Ok(value) => (StatusCode::OK, value),
                Err(error) => error.into_parts(),
            }
        }
    };
    // Every successful spot order answer tells the account's orders (whichever of its keys
    // placed them), as Binance's does; a
    // cancel-replace counts its new order once it got as far as the cancel, placed or
    // not ("A new order that was not attempted … will still increase the unfilled order
    // count by 1"), which its `data` shows.
    let orders_counted = match found {
        Some((_, _, Endpoint::NewOrder(Product::Spot))) => usize::from(status.is_success()),
        Some((_, _, Endpoint::CancelReplace)) => {
            usize::from(status.is_success() || value.get("data").is_some())
        }
        // An order list adds each of its orders ("Unfilled Order Count: 2", or 3).
        Some((_, _, Endpoint::NewOrderList(kind))) if status.is_success() => kind.legs(),
        _ => 0,
    };
    let counts_order = orders_counted > 0;
    let executed = status.is_success();
    // Done, but answered as a matching engine that timed out answers: the caller cannot
    // tell whether it was (Simulator::answer_unknown_after_execution).
    let unknown = simulator.answers_unknown(&path);
    let (status, value) = if unknown {
        ApiError::execution_unknown().into_parts()
    } else {
        (status, value)
    };
    let mut response = with_weight((status, axum::Json(value)).into_response(), family, used);
    if let (true, Some(account)) = (counts_order, account) {
        let mut counts = simulator.add_order(account);
        for _ in 1..orders_counted {
            counts = simulator.add_order(account);
        }
        for (name, count) in ORDER_COUNT_HEADERS.into_iter().zip(counts) {
            if unknown {
                break;
            }
            response
                .headers_mut()
                .insert(name, HeaderValue::from(count));
        }
        // An order that filled comes off the count after its answer told it, as Binance
        // takes a fill off "a short delay" later (its FAQ's examples show the count with
        // the order in it first).
        simulator.count_fills(account);
    }
    // A USD-M order, modification or batch of them tells the account's order requests of
    // the 10 seconds and the minute, as Binance's USD-M answers do (its "Order Rate
    // Limits": an order or a modification counts 1 and 1, a batch 5 and 1; found by
    // review: only spot's were told).
    let futures_counted = match found {
        Some((_, _, Endpoint::NewOrder(Product::UsdM) | Endpoint::ModifyOrder)) => Some((1, 1)),
        Some((_, _, Endpoint::BatchOrders | Endpoint::ModifyBatchOrders)) => Some((5, 1)),
        _ => None,
    };
    if let (Some((ten_seconds, minute)), Some(account)) = (futures_counted, account) {
        if executed {
            let counts = simulator.add_futures_orders(account, ten_seconds, minute);
            for (name, count) in FUTURES_ORDER_COUNT_HEADERS
                .into_iter()
                .zip(counts)
                .filter(|_| !unknown)
            {
                response
                    .headers_mut()
                    .insert(name, HeaderValue::from(count));
            }
        }
    }
    response
}

/// The answer to a request refused for its IP's request weight: `error` (429 or 418) with
/// `Retry-After` in whole seconds, unless it is left out, and, as usual, the headers that
/// report `family`'s weight `used` this minute.
fn refused(error: ApiError, retry_after_s: Option<u64>, family: Family, used: u64) -> Response {
    let (status, value) = error.into_parts();
    let mut response = with_weight((status, axum::Json(value)).into_response(), family, used);
    if let Some(seconds) = retry_after_s {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    response
}

/// Adds the headers that report `family`'s request weight `used` this minute.
fn with_weight(mut response: Response, family: Family, used: u64) -> Response {
    let used = HeaderValue::from(used);
    for name in family.headers() {
        response.headers_mut().insert(*name, used.clone());
    }
    response
}

/// `/__mock/requests`, `/__mock/reset`, `/__mock/trigger` and `/__mock/weight-limit`;
/// never recorded.
fn mock_control(simulator: &Simulator, method: &Method, control: &str, query: &str) -> Response {
    let result = match (method.as_str(), control) {
        ("GET", "requests") => return axum::Json(simulator.received()).into_response(),
        ("POST", "reset") => {
            let everything = form_urlencoded::parse(query.as_bytes())
                .any(|(name, value)| name == "state" && value == "1");
            simulator.reset(everything);
            Ok(json!({}))
        }
        ("POST", "trigger") => mock_trigger(simulator, query),
        ("POST", "weight-limit") => mock_weight_limit(simulator, query),
        _ => Err(ApiError::new(404, -1000, "Unknown endpoint.")),
    };
    match result {
        Ok(value) => axum::Json(value).into_response(),
        Err(error) => {
            let (status, value) = error.into_parts();
            (status, axum::Json(value)).into_response()
        }
    }
}

/// `POST /__mock/trigger?algoId=N`: triggers conditional order `N`, whichever account
/// holds it, as if the market had reached its trigger price (see [`algo::trigger`]).
/// `POST /__mock/trigger?orderId=N`: acts on open spot order `N` as if the market had
/// reached its price (see [`lists::reach`]: a conditional order triggers, a resting limit
/// order fills at its price, with what follows for a list it is a leg of), answering the
/// order as `GET /api/v3/order` does.
fn mock_trigger(simulator: &Simulator, query: &str) -> Result<Value, ApiError> {
    let params = Params::parse(query, "")?;
    let now = simulator.clock_ms();
    if let Some(order_id) = params.integer("orderId")? {
        return simulator
            .with_account_where(
                |account| {
                    account
                        .orders
                        .iter()
                        .any(|o| o.product == Product::Spot && o.order_id == order_id)
                },
                |account, ids| {
                    lists::reach(account, ids, order_id, now).map(|(order, _)| spot_order(&order))
                },
            )
            .unwrap_or_else(|| Err(ApiError::unknown_order()));
    }
    let algo_id = params
        .integer("algoId")?
        .ok_or_else(|| ApiError::mandatory("algoId"))?;
    simulator
        .with_account_where(
            |account| algo::holds(account, algo_id),
            |account, ids| algo::trigger(account, ids, algo_id, now),
        )
        .unwrap_or_else(|| Err(ApiError::unknown_order()))
}

/// `POST /__mock/weight-limit?limit=N&ban=S&retry_after=0|1`: sets every family's
/// request-weight limit per minute to `N` and the length of a first IP ban to `S` seconds,
/// each optional and at least 1 (-1130 otherwise), and whether 429 and 418 answers carry
/// `Retry-After`; answers the limits in force.
fn mock_weight_limit(simulator: &Simulator, query: &str) -> Result<Value, ApiError> {
    let params = Params::parse(query, "")?;
    let positive = |name: &str| -> Result<Option<u64>, ApiError> {
        match params.integer(name)? {
            Some(0) => Err(ApiError::invalid_parameter(name)),
            value => Ok(value),
        }
    };
    let (limit, ban) = (positive("limit")?, positive("ban")?);
    match params.integer("retry_after")? {
        None => {}
        Some(sent @ (0 | 1)) => simulator.set_retry_after(sent == 1),
        Some(_) => return Err(ApiError::invalid_parameter("retry_after")),
    }
    if let Some(limit) = limit {
        simulator.set_weight_limit(limit);
    }
    if let Some(ban) = ban {
        simulator.set_first_ban_s(ban);
    }
    let limits = simulator.weight_limits();
    Ok(json!({
        "limits": {
            "api": limits.api,
            "sapi": limits.sapi_ip,
            "fapi": limits.fapi,
            "dapi": limits.dapi,
        },
        "ban": limits.first_ban_s,
        "retry_after": limits.retry_after,
    }))
}

/// Parses parameters and, for signed endpoints, checks key, signature and time, in that
/// order; for an endpoint that needs the API key alone (MARKET_DATA), the key.
fn authenticate(
    simulator: &Simulator,
    security: Security,
    path: &str,
    headers: &HeaderMap,
    query: &str,
    body: &[u8],
    api_key: Option<&str>,
) -> Result<(Params, Option<String>), ApiError> {
    let is_form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    let body = if is_form {
        std::str::from_utf8(body)
            .map_err(|_| ApiError::new(400, -1100, "Illegal characters found in a parameter."))?
    } else {
        ""
    };
    let params = Params::parse(query, body)?;
    if security == Security::None {
        return Ok((params, None));
    }
    let api_key = match api_key {
        Some(key) if !key.is_empty() && key.bytes().all(|b| b.is_ascii_graphic()) => key,
        _ => return Err(ApiError::new(401, -2014, "API-key format invalid.")),
    };
    let Some(key) = simulator.key(api_key) else {
        return Err(ApiError::rejected_key());
    };
    if security == Security::ApiKey {
        return Ok((params, None));
    }
    let signature = params
        .raw_signature()
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ApiError::mandatory("signature"))?;
    if !params.is_signature_last() || !key.material.verify(&params.payload(), signature) {
        return Err(ApiError::new(
            400,
            -1022,
            "Signature for this request is not valid.",
        ));
    }
    let allow_micros = !path.starts_with("/fapi/");
    auth::check_timestamp(&params, simulator.clock_ms(), allow_micros)?;
    Ok((params, Some(api_key.to_owned())))
}

/// Refuses, as Binance does, a signed request whose key lacks the permission its endpoint
/// needs: -2015 for trading and futures, -1002 for a withdrawal or a universal transfer
/// (found by review: answered -2015, which ccxt takes for a network error once the key
/// has worked, where -1002 is an authentication error). It comes after the signature and
/// time checks: only a request the key's holder signed learns what the key may do.
fn permit(
    simulator: &Simulator,
    endpoint: Endpoint,
    api_key: Option<&str>,
) -> Result<(), ApiError> {
    let (Some(permission), Some(key)) = (endpoint.permission(), api_key) else {
        return Ok(());
    };
    match simulator.key(key) {
        Some(key) if permission.is_granted(&key.restrictions) => Ok(()),
        Some(_)
            if matches!(
                permission,
                Permission::Withdrawals | Permission::UniversalTransfer
            ) =>
        {
            Err(ApiError::new(
                401,
                -1002,
                "You are not authorized to execute this request.",
            ))
        }
        _ => Err(ApiError::rejected_key()),
    }
}

/// Refuses a spot order (or order list, or cancel-replace) that would take `account` past
/// its orders of 10 seconds, with -1015 and 429 as Binance does, before anything of it is
/// done.
fn within_order_limit(
    simulator: &Simulator,
    endpoint: Endpoint,
    account: Option<&crate::AccountId>,
) -> Result<(), ApiError> {
    let orders = match endpoint {
        Endpoint::NewOrder(Product::Spot) | Endpoint::CancelReplace => 1,
        Endpoint::NewOrderList(kind) => kind.legs() as u64,
        _ => return Ok(()),
    };
    match account {
        Some(account) if !simulator.may_place_orders(account, orders) => {
            let limit = simulator.weight_limits().orders_per_ten_seconds;
            Err(ApiError::new(
                429,
                -1015,
                format!("Too many new orders; current limit is {limit} orders per TEN_SECONDS."),
            ))
        }
        _ => Ok(()),
    }
}

/// Validates `symbol`: characters first (-1100), then existence (-1121).
pub(crate) fn symbol(
    params: &Params,
    product: Product,
) -> Result<&'static market::Market, ApiError> {
    let raw = params.required("symbol")?;
    let legal = raw.len() <= 20
        && raw
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b"-_.".contains(&b));
    if !legal {
        return Err(ApiError::illegal_chars("symbol", "^[A-Z0-9-_.]{1,20}$"));
    }
    market::find(product, raw).ok_or_else(ApiError::invalid_symbol)
}

/// Runs one endpoint; `api_key` is set for signed endpoints.
fn dispatch(
    simulator: &Simulator,
    endpoint: Endpoint,
    params: &Params,
    api_key: Option<&str>,
) -> Result<Value, ApiError> {
    let now = simulator.clock_ms();
    let withheld = |m: &market::Market| simulator.is_price_withheld(m.symbol);
    let public = match endpoint {
        Endpoint::Ping => Some(json!({})),
        Endpoint::Time => Some(json!({"serverTime": now})),
        Endpoint::SpotExchangeInfo => {
            let limits = simulator.weight_limits();
            Some(market::spot_exchange_info(
                now,
                limits.api,
                limits.orders_per_ten_seconds,
            ))
        }
        Endpoint::UsdmExchangeInfo => Some(market::usdm_exchange_info(
            now,
            simulator.weight_limits().fapi,
        )),
        Endpoint::CoinmExchangeInfo => Some(market::coinm_exchange_info(
            now,
            simulator.weight_limits().dapi,
        )),
        Endpoint::TickerPrice(product) => Some(per_symbol(params, product, withheld, |m| {
            let mut v = json!({"symbol": m.symbol, "price": fmt(m.price, 8)});
            if product == Product::UsdM {
                v["price"] = json!(m.price.to_string());
                v["time"] = json!(now);
            }
            v
        })?),
        Endpoint::Ticker24hr(product) => Some(per_symbol(params, product, withheld, |m| {
            market::ticker_24hr(m, now)
        })?),
        // Prices never move: the average of the last five minutes is the price.
        Endpoint::AvgPrice => {
            let m = symbol(params, Product::Spot)?;
            if withheld(m) {
                return Err(ApiError::unavailable());
            }
            Some(json!({"mins": 5, "price": fmt(m.price, 8), "closeTime": now}))
        }
        Endpoint::BookTicker => Some(per_symbol(params, Product::Spot, withheld, |m| {
            json!({
                "symbol": m.symbol,
                "bidPrice": fmt(market::best_bid(m), 8), "bidQty": "1.00000000",
                "askPrice": fmt(market::best_ask(m), 8), "askQty": "1.00000000"
            })
        })?),
        Endpoint::Depth => {
            let m = symbol(params, Product::Spot)?;
            let limit = params.integer("limit")?.unwrap_or(100).clamp(1, 5000);
            Some(market::depth(m, usize::try_from(limit).unwrap_or(100)))
        }
        Endpoint::FuturesDepth => {
            let m = symbol(params, Product::UsdM)?;
            // Binance's valid limits; any other is -4021 (ccxt maps it as
            // "Invalid depth limit.").
            let limit = params.integer("limit")?.unwrap_or(500);
            if !FUTURES_DEPTH_LIMITS.contains(&limit) {
                return Err(ApiError::new(400, -4021, "Invalid depth limit."));
            }
            Some(market::futures_depth(
                m,
                usize::try_from(limit).unwrap_or(500),
                now,
            ))
        }
        Endpoint::FuturesBookTicker => Some(per_symbol(params, Product::UsdM, withheld, |m| {
            market::futures_book_ticker(m, now)
        })?),
        Endpoint::PremiumIndex => Some(per_symbol(params, Product::UsdM, withheld, |m| {
            market::premium_index(m, now)
        })?),
        Endpoint::Klines(product) => Some(klines(params, product, withheld, now)?),
        Endpoint::AggTrades(product) => Some(agg_trades(params, product, withheld, now)?),
        Endpoint::Trades => Some(recent_trades(params, withheld, now)?),
        Endpoint::FundingRate => Some(funding_rates(params, withheld, now)?),
        Endpoint::MarginPairs => Some(market::margin_pairs()),
        Endpoint::SystemStatus => Some(json!({"status": 0, "msg": "normal"})),
        Endpoint::OpenInterest => {
            let m = symbol(params, Product::UsdM)?;
            Some(json!({
                "openInterest": fmt(simulator.open_interest(m.symbol), m.quantity_precision),
                "symbol": m.symbol,
                "time": now,
            }))
        }
        _ => None,
    };
    if let Some(value) = public {
        return Ok(value);
    }
    let api_key = api_key.ok_or_else(|| ApiError::new(401, -2014, "API-key format invalid."))?;
    if let Endpoint::ApiRestrictions = endpoint {
        let r = simulator
            .key(api_key)
            .ok_or_else(ApiError::rejected_key)?
            .restrictions;
        return Ok(json!({
            "ipRestrict": r.ip_restrict,
            "createTime": simulator.started_ms(),
            "enableReading": true,
            "enableWithdrawals": r.withdrawals,
            "enableInternalTransfer": r.internal_transfer,
            "enableMargin": r.margin,
            "enableFutures": r.futures,
            "permitsUniversalTransfer": r.universal_transfer,
            "enableVanillaOptions": false,
            "enableFixApiTrade": false,
            "enableFixReadOnly": false,
            "enableSpotAndMarginTrading": r.spot_trading,
            "enablePortfolioMarginTrading": false
        }));
    }
    simulator.with_account(api_key, |account, ids| {
        private(account, ids, endpoint, params, now)
    })
}

/// Refuses, as Binance's history lists do, a `fromId` sent with a time (-1128) and a
/// `startTime` and `endTime` more than 24 hours apart, or in the wrong order (-1127).
pub(crate) fn check_from_id_or_day(
    from_id: Option<u64>,
    from: Option<u64>,
    to: Option<u64>,
) -> Result<(), ApiError> {
    if from_id.is_some() && (from.is_some() || to.is_some()) {
        return Err(ApiError::new(
            400,
            -1128,
            "Combination of optional parameters invalid.",
        ));
    }
    if let (Some(from), Some(to)) = (from, to) {
        if to < from || to - from > 24 * 3600 * 1000 {
            return Err(ApiError::new(
                400,
                -1127,
                "More than 24 hours between startTime and endTime.",
            ));
        }
    }
    Ok(())
}

/// `startTime` and `endTime`, each optional; -1023 for a start after the end.
pub(crate) fn time_span(params: &Params) -> Result<(Option<u64>, Option<u64>), ApiError> {
    let (start, end) = (params.integer("startTime")?, params.integer("endTime")?);
    if let (Some(start), Some(end)) = (start, end) {
        if start > end {
            return Err(ApiError::new(
                400,
                -1023,
                "Start time is greater than end time.",
            ));
        }
    }
    Ok((start, end))
}

/// `GET /api/v3/klines` and `GET /fapi/v1/klines`: `symbol` and `interval` required,
/// `startTime`, `endTime` and `limit` (500 by default, at most 1000 on spot and 1500 on
/// USD-M) optional; -1120 for an interval the product does not have, -1023 for a start
/// after the end. See [`market::kline_open_times`] for which candles answer.
fn klines(
    params: &Params,
    product: Product,
    withheld: impl Fn(&market::Market) -> bool,
    now: u64,
) -> Result<Value, ApiError> {
    let m = symbol(params, product)?;
    let interval = market::Interval::parse(params.required("interval")?, product)
        .ok_or_else(|| ApiError::new(400, -1120, "Invalid interval."))?;
    let (start, end) = time_span(params)?;
    let most = match product {
        Product::Spot => 1000,
        Product::UsdM => 1500,
    };
    let limit = params.integer("limit")?.unwrap_or(500).clamp(1, most);
    if withheld(m) {
        return Err(ApiError::unavailable());
    }
    // At most 1500 after the clamp, so it fits.
    let limit = usize::try_from(limit).unwrap_or(500);
    Ok(Value::Array(
        market::kline_open_times(interval, start, end, limit, now)
            .into_iter()
            .map(|open| market::kline(m, interval, open))
            .collect(),
    ))
}

/// `GET /api/v3/aggTrades` and `GET /fapi/v1/aggTrades`: `symbol` required; `fromId`,
/// `startTime`, `endTime` and `limit` (500 by default, at most 1000) optional; -1127 when
/// `startTime` and `endTime` are more than an hour apart (exactly an hour is taken, as
/// Binance takes it: ccxt's `fetch_trades` with `since` asks for that span), -1023 for a
/// start after the end.
/// With neither time nor `fromId`, the latest `limit` trades; else the first `limit`
/// from `fromId` or from `startTime` (to `endTime`). See [`market::agg_trade_ids`] for
/// which trades there are.
fn agg_trades(
    params: &Params,
    product: Product,
    withheld: impl Fn(&market::Market) -> bool,
    now: u64,
) -> Result<Value, ApiError> {
    let m = symbol(params, product)?;
    let from_id = params.integer("fromId")?;
    let (start, end) = time_span(params)?;
    if let (Some(start), Some(end)) = (start, end) {
        if end - start > market::HOUR_MS {
            return Err(ApiError::new(
                400,
                -1127,
                "More than 1 hours between startTime and endTime.",
            ));
        }
    }
    let limit = params.integer("limit")?.unwrap_or(500).clamp(1, 1000);
    if withheld(m) {
        return Err(ApiError::unavailable());
    }
    let ids = market::agg_trade_ids(from_id, start, end, limit, now);
    Ok(Value::Array(
        ids.map(|id| market::agg_trade(m, id)).collect(),
    ))
}

/// `GET /api/v3/trades`: the latest `limit` trades (500 by default, at most 1000), one a
/// 86.4 s as `aggTrades` has them, each its own aggregate, oldest first.
fn recent_trades(
    params: &Params,
    withheld: impl Fn(&market::Market) -> bool,
    now: u64,
) -> Result<Value, ApiError> {
    let m = symbol(params, Product::Spot)?;
    let limit = params.integer("limit")?.unwrap_or(500).clamp(1, 1000);
    if withheld(m) {
        return Err(ApiError::unavailable());
    }
    let ids = market::agg_trade_ids(None, None, None, limit, now);
    Ok(Value::Array(ids.map(|id| market::trade(m, id)).collect()))
}

/// `GET /fapi/v1/fundingRate`, as Binance's Get Funding Rate History page has it: `symbol`
/// optional (every USD-M symbol's fundings, merged by time, when it is not sent),
/// `startTime` and `endTime` inclusive, `limit` 100 by default and at most 1000. With
/// neither time, the most recent `limit` fundings answer; else those from `startTime` on
/// (or up to `endTime`), the first `limit` of them; in ascending time. Every funding is
/// on the 8-hour schedule (00:00, 08:00, 16:00 UTC), none later than now, at the rate
/// and mark price `premiumIndex` reports (see [`market::funding_times`]).
fn funding_rates(
    params: &Params,
    withheld: impl Fn(&market::Market) -> bool,
    now: u64,
) -> Result<Value, ApiError> {
    let only = match params.get("symbol") {
        Some(_) => Some(symbol(params, Product::UsdM)?),
        None => None,
    };
    let (start, end) = time_span(params)?;
    let limit = params.integer("limit")?.unwrap_or(100).clamp(1, 1000);
    let limit = usize::try_from(limit).unwrap_or(100);
    if only.is_some_and(&withheld) {
        return Err(ApiError::unavailable());
    }
    let markets: Vec<&market::Market> = match only {
        Some(m) => vec![m],
        None => market::of(Product::UsdM).filter(|m| !withheld(m)).collect(),
    };
    // Each symbol's fundings are `limit` at most; merged, the same window takes `limit`.
    let mut entries: Vec<(u64, &market::Market)> = markets
        .iter()
        .flat_map(|m| {
            market::funding_times(start, end, limit, now)
                .into_iter()
                .map(move |t| (t, *m))
        })
        .collect();
    entries.sort_by_key(|(t, m)| (*t, m.symbol));
    if start.is_none() {
        let skip = entries.len().saturating_sub(limit);
        entries.drain(..skip);
    } else {
        entries.truncate(limit);
    }
    Ok(Value::Array(
        entries
            .into_iter()
            .map(|(t, m)| market::funding(m, t))
            .collect(),
    ))
}

/// Every parameter spot's `POST /api/v3/order` reads, as Binance's New order page lists
/// them. The simulator acts on those it simulates and takes the others (`strategyId`,
/// `selfTradePreventionMode`, the peg parameters, …) as read without acting on them.
const SPOT_NEW_ORDER_PARAMS: &[&str] = &[
    "symbol",
    "side",
    "type",
    "timeInForce",
    "quantity",
    "quoteOrderQty",
    "price",
    "newClientOrderId",
    "strategyId",
    "strategyType",
    "stopPrice",
    "trailingDelta",
    "icebergQty",
    "newOrderRespType",
    "selfTradePreventionMode",
    "pegPriceType",
    "pegOffsetValue",
    "pegOffsetType",
    "recvWindow",
    "timestamp",
];

/// Every parameter `GET /api/v3/account` reads, as Binance's Account information page
/// lists them.
const SPOT_ACCOUNT_PARAMS: &[&str] = &["omitZeroBalances", "recvWindow", "timestamp"];

/// -1104, as spot answers a request that sends a parameter its endpoint does not read
/// (`read`, with `signature`): Binance counts what it read against what was sent. Only
/// the endpoints whose every parameter the simulator knows from Binance's pages check it.
pub(crate) fn check_all_read(params: &Params, read: &[&str]) -> Result<(), ApiError> {
    let unread = params.names().filter(|name| !read.contains(name)).count();
    if unread == 0 {
        return Ok(());
    }
    let sent = params.count();
    Err(ApiError::new(
        400,
        -1104,
        format!(
            "Not all sent parameters were read; read '{}' parameter(s) but was sent '{sent}'.",
            sent - unread
        ),
    ))
}

/// The status a spot cancel's `cancelRestrictions` lets it cancel, if it names one.
fn cancel_restrictions(params: &Params) -> Result<Option<&'static str>, ApiError> {
    match params.get("cancelRestrictions") {
        None => Ok(None),
        Some("ONLY_NEW") => Ok(Some("NEW")),
        Some("ONLY_PARTIALLY_FILLED") => Ok(Some("PARTIALLY_FILLED")),
        Some(_) => Err(ApiError::invalid_parameter("cancelRestrictions")),
    }
}

/// The parameters each spot read and cancel reads, as Binance's pages list them: one
/// sent besides is -1104, as for a new order (found by review: `orderID` on a cancel was
/// ignored, and the order named by `origClientOrderId` cancelled).
fn spot_reads_all_of(endpoint: Endpoint) -> Option<&'static [&'static str]> {
    Some(match endpoint {
        Endpoint::QueryOrder(Product::Spot) => &[
            "symbol",
            "orderId",
            "origClientOrderId",
            "recvWindow",
            "timestamp",
        ],
        Endpoint::CancelOrder(Product::Spot) => &[
            "symbol",
            "orderId",
            "origClientOrderId",
            "newClientOrderId",
            "cancelRestrictions",
            "recvWindow",
            "timestamp",
        ],
        Endpoint::OpenOrders(Product::Spot) | Endpoint::CancelAllOrders(Product::Spot) => {
            &["symbol", "recvWindow", "timestamp"]
        }
        Endpoint::AllOrders(Product::Spot) => &[
            "symbol",
            "orderId",
            "startTime",
            "endTime",
            "limit",
            "recvWindow",
            "timestamp",
        ],
        Endpoint::MyTrades(Product::Spot) => &[
            "symbol",
            "orderId",
            "startTime",
            "endTime",
            "fromId",
            "limit",
            "recvWindow",
            "timestamp",
        ],
        _ => return None,
    })
}

/// `POST /api/v3/order` and `POST /fapi/v1/order`: reads and places one new order.
fn new_order(
    account: &mut Account,
    ids: &mut Ids,
    product: Product,
    params: &Params,
    now: u64,
) -> Result<Value, ApiError> {
    if product == Product::Spot {
        check_all_read(params, SPOT_NEW_ORDER_PARAMS)?;
    }
    let (new, resp_type) = read_new_order(ids, product, params)?;
    let (order, fills) = place_order(account, ids, new, now)?;
    if product == Product::Spot && !fills.is_empty() {
        account.unreported_fills += 1;
    }
    Ok(match product {
        Product::Spot => spot_new_order(&order, &fills, resp_type, now),
        Product::UsdM if resp_type == RespType::Ack => futures_order(&acknowledged(&order)),
        Product::UsdM => futures_order(&order),
    })
}

/// What a new order's answer holds, as `newOrderRespType` asks: the order as it was
/// acknowledged (`ACK`), as it stands after matching (`RESULT`), or that and its fills
/// (`FULL`, spot only).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RespType {
    Ack,
    Result,
    Full,
}

impl RespType {
    /// Reads `newOrderRespType`. Spot takes `ACK`, `RESULT` and `FULL`, and answers a
    /// `MARKET` or `LIMIT` order `FULL` by default and any other (`LIMIT_MAKER`, the stop
    /// and take-profit types) `ACK`,
    /// as Binance's New order page has it; USD-M takes `ACK` and `RESULT`, `ACK` by
    /// default. Anything else is -1136.
    fn parse(
        params: &Params,
        product: Product,
        order_type: OrderType,
    ) -> Result<RespType, ApiError> {
        match (product, params.get("newOrderRespType")) {
            (Product::Spot, None) if matches!(order_type, OrderType::Market | OrderType::Limit) => {
                Ok(RespType::Full)
            }
            (_, None) | (_, Some("ACK")) => Ok(RespType::Ack),
            (_, Some("RESULT")) => Ok(RespType::Result),
            (Product::Spot, Some("FULL")) => Ok(RespType::Full),
            (_, Some(_)) => Err(ApiError::new(400, -1136, "Invalid newOrderRespType")),
        }
    }
}

/// A USD-M order as Binance acknowledges it, before it is matched: new, nothing filled.
fn acknowledged(order: &Order) -> Order {
    Order {
        status: "NEW",
        executed_qty: Decimal::ZERO,
        cumulative_quote: Decimal::ZERO,
        update_time: order.time,
        ..order.clone()
    }
}

/// The new order `params` describe, and the answer it asks for (`newOrderRespType`), as
/// `POST /api/v3/order` and `POST /fapi/v1/order` read them.
pub(crate) fn read_new_order(
    ids: &Ids,
    product: Product,
    params: &Params,
) -> Result<(NewOrder, RespType), ApiError> {
    let m = symbol(params, product)?;
    let side = Side::parse(params.required("side")?)?;
    let order_type = OrderType::parse(params.required("type")?, product)?;
    // USD-M: `priceMatch` pegs the price, so it "can't be passed together with price".
    let pegged = params.get("priceMatch").is_some_and(|p| p != "NONE");
    if product == Product::UsdM && pegged && params.get("price").is_some() {
        return Err(ApiError::new(
            400,
            -1106,
            "Parameter 'price' sent when not required.",
        ));
    }
    // USD-M: `closePosition` goes with the stop and take-profit market types alone, which
    // are the algo service's; this endpoint places none.
    if product == Product::UsdM && params.get("closePosition") == Some("true") {
        return Err(ApiError::new(
            400,
            -1106,
            "Parameter 'closePosition' sent when not required.",
        ));
    }
    let time_in_force = match order_type {
        OrderType::Limit | OrderType::StopLossLimit | OrderType::TakeProfitLimit => {
            let tif = params.required("timeInForce")?;
            // GTX (post only) is a futures time in force; spot has LIMIT_MAKER.
            let known: &[&str] = match product {
                Product::Spot => &["GTC", "IOC", "FOK"],
                Product::UsdM => &["GTC", "IOC", "FOK", "GTX"],
            };
            if !known.contains(&tif) {
                return Err(ApiError::new(400, -1115, "Invalid timeInForce."));
            }
            tif.to_owned()
        }
        // A LIMIT_MAKER order has no time in force; it rests as a GTC order does. Nor
        // has a stop or take-profit order that acts as a market order.
        OrderType::LimitMaker | OrderType::StopLoss | OrderType::TakeProfit => {
            if params.get("timeInForce").is_some() {
                return Err(ApiError::new(
                    400,
                    -1106,
                    "Parameter 'timeInForce' sent when not required.",
                ));
            }
            "GTC".to_owned()
        }
        OrderType::Market => {
            // Binance refuses what a market order does not take.
            for name in ["price", "timeInForce"] {
                if params.get(name).is_some() {
                    return Err(ApiError::new(
                        400,
                        -1106,
                        format!("Parameter '{name}' sent when not required."),
                    ));
                }
            }
            "GTC".to_owned()
        }
    };
    // Spot refuses a parameter of another order type: the stop price and trailing delta
    // of stop orders, the price of one that acts as a market order, and the iceberg
    // quantity a market order cannot have. Taking one silently would report an order
    // Binance never places.
    if product == Product::Spot {
        let not_taken: &[&str] = match order_type {
            OrderType::Limit | OrderType::LimitMaker => &["stopPrice", "trailingDelta"],
            OrderType::Market => &["stopPrice", "trailingDelta", "icebergQty"],
            OrderType::StopLoss | OrderType::TakeProfit => &["price", "icebergQty"],
            OrderType::StopLossLimit | OrderType::TakeProfitLimit => &[],
        };
        if let Some(name) = not_taken.iter().find(|name| params.get(name).is_some()) {
            return Err(ApiError::new(
                400,
                -1106,
                format!("Parameter '{name}' sent when not required."),
            ));
        }
        // A conditional order's quantity is in the base asset: it takes no quote
        // quantity.
        if order_type.is_conditional() && params.get("quoteOrderQty").is_some() {
            return Err(ApiError::new(
                400,
                -1106,
                "Parameter 'quoteOrderQty' sent when not required.",
            ));
        }
        // No symbol allows icebergs (`icebergAllowed` false): a limit order that would be
        // one is refused as Binance's matching engine refuses it on such a symbol.
        if params.get("icebergQty").is_some() {
            return Err(ApiError::new(
                400,
                -2010,
                "Iceberg orders are not supported for this symbol.",
            ));
        }
    } else {
        algo::check_position_side(params)?;
    }
    let client_order_id = match params.get("newClientOrderId") {
        Some(id) if !id.is_empty() => {
            // Spot takes letters, digits, `-` and `_`; USD-M also `.`, `:` and `/`.
            let (extra, pattern): (&[u8], &str) = match product {
                Product::Spot => (b"_-", "^[a-zA-Z0-9-_]{1,36}$"),
                Product::UsdM => (b".:/_-", "^[\\.A-Z\\:/a-z0-9_-]{1,36}$"),
            };
            let legal = id.len() <= 36
                && id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || extra.contains(&b));
            if !legal {
                return Err(ApiError::illegal_chars("newClientOrderId", pattern));
            }
            id.to_owned()
        }
        _ => made_up_client_order_id(ids),
    };
    let resp_type = RespType::parse(params, product, order_type)?;
    let new = NewOrder {
        market: m,
        side,
        order_type,
        time_in_force,
        price: params.decimal("price")?,
        quantity: params.decimal("quantity")?,
        // USD-M orders have no quoteOrderQty: Binance reads a quantity only.
        quote_order_qty: match product {
            Product::Spot => params.decimal("quoteOrderQty")?,
            Product::UsdM => None,
        },
        client_order_id,
        // Spot has no reduce-only order; USD-M reads `reduceOnly` as `true` or `false`.
        reduce_only: match product {
            Product::Spot => false,
            Product::UsdM => algo::flag(params, "reduceOnly")?,
        },
        reference_price: m.price,
        stop_price: match product {
            Product::Spot => params.decimal("stopPrice")?,
            Product::UsdM => None,
        },
        trailing_delta: match product {
            Product::Spot => params.integer("trailingDelta")?,
            Product::UsdM => None,
        },
    };
    Ok((new, resp_type))
}

/// `PUT /fapi/v1/order`, and each order of `PUT /fapi/v1/batchOrders`: reads one
/// modification and applies it ([`book::modify`]), answering the order as it now is.
/// The simulator has no book to peg a price to, so it takes `priceMatch` only as `NONE`.
fn modify_order(
    account: &mut Account,
    ids: &mut Ids,
    params: &Params,
    now: u64,
) -> Result<Value, ApiError> {
    let m = symbol(params, Product::UsdM)?;
    let by = order_ref(params, Product::UsdM)?.by;
    let side = Side::parse(params.required("side")?)?;
    if params.get("priceMatch").is_some_and(|p| p != "NONE") {
        return Err(ApiError::invalid_parameter("priceMatch"));
    }
    let change = Modification {
        side,
        quantity: params
            .decimal("quantity")?
            .ok_or_else(|| ApiError::mandatory("quantity"))?,
        price: params
            .decimal("price")?
            .ok_or_else(|| ApiError::mandatory("price"))?,
    };
    let (order, _) = book::modify(account, m.symbol, &by, change, &mut ids.next_trade_id, now)?;
    Ok(futures_order(&order))
}

/// `POST /api/v3/order/cancelReplace`: cancels a spot order and places a new one on the
/// same symbol, as Binance documents it. The new order is read and held to the filters
/// first (the percent price filter among them), so one that fails them is refused with its
/// own error and nothing is cancelled. Then, with `cancelReplaceMode=STOP_ON_FAILURE`, a
/// cancel that fails stops there (400, -2022, the new order `NOT_ATTEMPTED`); with
/// `ALLOW_FAILURE` the new order is tried anyway. Both done: 200 with both answers; one of
/// them failed: 409, -2021; both failed: 400, -2022; each failure with its `{"code","msg"}`
/// in `data`. `cancelOrderId` and `cancelOrigClientOrderId` together name an order only if
/// it has both, else the cancel fails (-2011); so does one whose status
/// `cancelRestrictions` excludes (`ONLY_NEW`, `ONLY_PARTIALLY_FILLED`: the simulator's open
/// orders are all new, none filled in part).
fn cancel_replace(
    account: &mut Account,
    ids: &mut Ids,
    params: &Params,
    now: u64,
) -> Result<Value, ApiError> {
    let m = symbol(params, Product::Spot)?;
    let stop_on_failure = match params.required("cancelReplaceMode")? {
        "STOP_ON_FAILURE" => true,
        "ALLOW_FAILURE" => false,
        _ => return Err(ApiError::invalid_parameter("cancelReplaceMode")),
    };
    let cancel_id = params.integer("cancelOrderId")?;
    let cancel_client = params
        .get("cancelOrigClientOrderId")
        .filter(|c| !c.is_empty());
    let by = match (cancel_id, cancel_client) {
        (Some(id), _) => OrderRef::Id(id),
        (None, Some(client)) => OrderRef::Client(client),
        (None, None) => {
            return Err(ApiError::new(
                400,
                -1102,
                "Param 'cancelOrigClientOrderId' or 'cancelOrderId' must be sent, but both were empty/null!",
            ))
        }
    };
    let only_status = cancel_restrictions(params)?;
    let (new, resp_type) = read_new_order(ids, Product::Spot, params)?;
    book::check_order(&new)?;
    // The order both ids name (when both are given), of a status the restrictions allow.
    let named = book::find(account, Product::Spot, m.symbol, &by).map(|o| &*o);
    let named_both = match (cancel_id, cancel_client) {
        (Some(_), Some(client)) => named.is_some_and(|o| o.client_order_id == client),
        _ => true,
    };
    let restricted =
        only_status.is_some_and(|status| named.is_some_and(|o| o.is_open() && o.status != status));
    let cancelled = if !named_both {
        Err(ApiError::unknown_order())
    } else if restricted {
        Err(ApiError::cancel_restricted())
    } else {
        book::cancel(account, Product::Spot, m.symbol, &by, now)
    }
    .inspect(|order| {
        // Cancelling a leg of an order list here cancels the whole list, as Binance's
        // page says; the answer is the leg's. The list's own answer is not wanted, and
        // its only error is a list no longer open, which leaves nothing to cancel.
        if let Some(list) = order.order_list_id {
            let _ = lists::cancel_list(account, list, "", now);
        }
    })
    .map(|order| {
        spot_cancelled(
            &order,
            cancel_client_id(ids, params, "cancelNewClientOrderId"),
            now,
        )
    });
    let outcome = |result: &Result<Value, ApiError>| match result {
        Ok(_) => "SUCCESS",
        Err(_) => "FAILURE",
    };
    let answer = |result: Result<Value, ApiError>| result.unwrap_or_else(|e| e.into_parts().1);
    if stop_on_failure && cancelled.is_err() {
        return Err(
            ApiError::new(400, -2022, "Order cancel-replace failed.").with_data(json!({
                "cancelResult": "FAILURE",
                "newOrderResult": "NOT_ATTEMPTED",
                "cancelResponse": answer(cancelled),
                "newOrderResponse": null
            })),
        );
    }
    let placed = place_order(account, ids, new, now).map(|(order, fills)| {
        if !fills.is_empty() {
            account.unreported_fills += 1;
        }
        spot_new_order(&order, &fills, resp_type, now)
    });
    let results = json!({
        "cancelResult": outcome(&cancelled),
        "newOrderResult": outcome(&placed),
    });
    let error = match (cancelled.is_ok(), placed.is_ok()) {
        (true, true) => None,
        (false, false) => Some(ApiError::new(400, -2022, "Order cancel-replace failed.")),
        _ => Some(ApiError::new(
            409,
            -2021,
            "Order cancel-replace partially failed.",
        )),
    };
    let mut body = results;
    body["cancelResponse"] = answer(cancelled);
    body["newOrderResponse"] = answer(placed);
    match error {
        None => Ok(body),
        Some(error) => Err(error.with_data(body)),
    }
}

/// A spot order's answer once cancelled, as `DELETE /api/v3/order` gives it: a cancel
/// is a request of its own with its own client id (`cancel_client_id`), which Binance
/// answers as `clientOrderId`, the order's own being `origClientOrderId`.
pub(crate) fn spot_cancelled(order: &Order, cancel_client_id: String, now: u64) -> Value {
    let mut v = spot_order(order);
    v["origClientOrderId"] = json!(order.client_order_id);
    v["clientOrderId"] = json!(cancel_client_id);
    v["transactTime"] = json!(now);
    v
}

/// The client id of a spot cancel: the one sent as `name` (`newClientOrderId`, or
/// `cancelNewClientOrderId` in a cancel-replace), else one made up, as Binance
/// "automatically generates" one "to uniquely identify this cancel".
pub(crate) fn cancel_client_id(ids: &mut Ids, params: &Params, name: &str) -> String {
    if let Some(id) = params.get(name).filter(|c| !c.is_empty()) {
        return id.to_owned();
    }
    made_up_cancel_client_id(ids)
}

/// A client id the simulator makes up for a spot cancel, as Binance does for one sent
/// without `newClientOrderId`.
pub(crate) fn made_up_cancel_client_id(ids: &mut Ids) -> String {
    let id = format!("mockexcancel{:012}", ids.next_cancel_id);
    ids.next_cancel_id += 1;
    id
}

/// The most orders `POST /fapi/v1/batchOrders` takes.
const MAX_BATCH_ORDERS: usize = 5;

/// The orders of `batchOrders` (new ones for `POST`, modifications for `PUT`), each as
/// the parameters of a single order: a JSON list of 1 to [`MAX_BATCH_ORDERS`] objects
/// whose values are strings, booleans or numbers (each read as its text), none with a
/// key twice. Anything else is -1130, as Binance answers data it cannot read. Binance
/// documents no value for a key sent twice, so the simulator takes neither, where a
/// plain JSON reader would silently keep the last.
fn batch_orders(params: &Params) -> Result<Vec<Params>, ApiError> {
    let invalid = || {
        ApiError::new(
            400,
            -1130,
            "Data sent for parameter 'batchOrders' is not valid.",
        )
    };
    let list: Vec<BatchEntry> =
        serde_json::from_str(params.required("batchOrders")?).map_err(|_| invalid())?;
    if list.is_empty() || list.len() > MAX_BATCH_ORDERS {
        return Err(invalid());
    }
    Ok(list
        .into_iter()
        .map(|BatchEntry(values)| Params::from_values(values))
        .collect())
}

/// One order of `batchOrders`: its keys and their values as text. Reading refuses a
/// value that is not a string, a boolean or a number, and a key that comes twice.
struct BatchEntry(BTreeMap<String, String>);

impl<'de> Deserialize<'de> for BatchEntry {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<BatchEntry, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = BatchEntry;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an order: an object of strings, booleans and numbers")
            }

            fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<BatchEntry, M::Error> {
                let mut values = BTreeMap::new();
                while let Some(name) = map.next_key::<String>()? {
                    let text = match map.next_value::<Value>()? {
                        Value::String(text) => text,
                        Value::Bool(flag) => flag.to_string(),
                        Value::Number(number) => number.to_string(),
                        _ => return Err(M::Error::custom("a value of another kind")),
                    };
                    if values.contains_key(&name) {
                        return Err(M::Error::custom(format!("key '{name}' twice")));
                    }
                    values.insert(name, text);
                }
                Ok(BatchEntry(values))
            }
        }
        deserializer.deserialize_map(Visitor)
    }
}

/// An order a batch cancel names: by id, or by client order id.
enum Named {
    Id(u64),
    Client(String),
}

impl Named {
    fn order_ref(&self) -> OrderRef<'_> {
        match self {
            Named::Id(id) => OrderRef::Id(*id),
            Named::Client(id) => OrderRef::Client(id),
        }
    }
}

/// The orders `DELETE /fapi/v1/batchOrders` names: `orderIdList` (a JSON list of up to
/// 10 ids) or `origClientOrderIdList` (of client order ids), one of them, each name also
/// in lower case as ccxt sends it (`orderidlist`), which Binance takes. Anything else is
/// Binance's -1130 for the list, or -1102 when neither is sent.
fn batch_cancels(params: &Params) -> Result<Vec<Named>, ApiError> {
    let invalid = |name: &str| {
        ApiError::new(
            400,
            -1130,
            format!("Data sent for parameter '{name}' is not valid."),
        )
    };
    let named = |name: &str| {
        params
            .get(name)
            .or_else(|| params.get(&name.to_ascii_lowercase()))
            .filter(|l| !l.is_empty())
    };
    let (name, list) = match (named("orderIdList"), named("origClientOrderIdList")) {
        (Some(list), None) => ("orderIdList", list),
        (None, Some(list)) => ("origClientOrderIdList", list),
        _ => {
            return Err(ApiError::new(
                400,
                -1102,
                "Param 'orderIdList' or 'origClientOrderIdList' must be sent, but both were empty/null!",
            ))
        }
    };
    let values: Vec<Value> = serde_json::from_str(list).map_err(|_| invalid(name))?;
    if values.is_empty() || values.len() > 10 {
        return Err(invalid(name));
    }
    values
        .into_iter()
        .map(|value| match (name, value) {
            ("orderIdList", Value::Number(id)) => id.as_u64().map(Named::Id),
            ("origClientOrderIdList", Value::String(id)) => Some(Named::Client(id)),
            _ => None,
        })
        .map(|order| order.ok_or_else(|| invalid(name)))
        .collect()
}

/// Order, trade, withdrawal and conditional order id counters shared by all accounts.
#[derive(Debug)]
pub(crate) struct Ids {
    pub(crate) next_order_id: u64,
    pub(crate) next_trade_id: u64,
    pub(crate) next_withdraw_id: u64,
    /// The next number of a made-up spot cancel client id ([`cancel_client_id`]).
    pub(crate) next_cancel_id: u64,
    /// The next `tranId` of a transfer between wallets.
    pub(crate) next_transfer_id: u64,
    /// The next `algoId`: a counter of its own, as Binance's algo service numbers its
    /// orders apart from the order book (starting at [`algo::FIRST_ALGO_ID`]).
    pub(crate) next_algo_id: u64,
    /// The next `orderListId` of a spot order list.
    pub(crate) next_order_list_id: u64,
}

/// The client order id the simulator gives the next order placed without one.
pub(crate) fn made_up_client_order_id(ids: &Ids) -> String {
    format!("mockex{:016}", ids.next_order_id)
}

/// Places a validated order in `account`'s book under the next order id: what
/// `POST /api/v3/order` and `POST /fapi/v1/order` do once they have read the request, and
/// what a conditional order does when it triggers.
pub(crate) fn place_order(
    account: &mut Account,
    ids: &mut Ids,
    order: NewOrder,
    now: u64,
) -> Result<(Order, Vec<Trade>), ApiError> {
    let order_id = ids.next_order_id;
    let placed = book::place(account, order, order_id, &mut ids.next_trade_id, now)?;
    ids.next_order_id += 1;
    Ok(placed)
}

/// One object for `symbol=…`, else a list over all markets of the product. A market
/// whose price is `withheld` is an error alone and missing from the list.
fn per_symbol(
    params: &Params,
    product: Product,
    withheld: impl Fn(&market::Market) -> bool,
    one: impl Fn(&market::Market) -> Value,
) -> Result<Value, ApiError> {
    if params.get("symbol").is_some() {
        let m = symbol(params, product)?;
        if withheld(m) {
            return Err(ApiError::unavailable());
        }
        return Ok(one(m));
    }
    Ok(Value::Array(
        market::of(product)
            .filter(|m| !withheld(m))
            .map(one)
            .collect(),
    ))
}

/// Endpoints that touch an account.
fn private(
    account: &mut Account,
    ids: &mut Ids,
    endpoint: Endpoint,
    params: &Params,
    now: u64,
) -> Result<Value, ApiError> {
    if let Some(read) = spot_reads_all_of(endpoint) {
        check_all_read(params, read)?;
    }
    match endpoint {
        Endpoint::Account => {
            check_all_read(params, SPOT_ACCOUNT_PARAMS)?;
            let omit_zero = params.get("omitZeroBalances") == Some("true");
            Ok(spot_account(account, omit_zero, now))
        }
        Endpoint::NewOrder(product) => new_order(account, ids, product, params, now),
        // Read and held to the filters as a new order is, then neither placed nor
        // matched, as Binance's Test new order page has it.
        Endpoint::TestOrder => {
            // A new order's parameters, and whether to answer the commission rates
            // too (which the simulator answers as any test: `{}`).
            let known: Vec<&str> = SPOT_NEW_ORDER_PARAMS
                .iter()
                .copied()
                .chain(["computeCommissionRates"])
                .collect();
            check_all_read(params, &known)?;
            let (new, _) = read_new_order(ids, Product::Spot, params)?;
            book::check_order(&new)?;
            Ok(json!({}))
        }
        Endpoint::ModifyOrder => modify_order(account, ids, params, now),
        Endpoint::CancelReplace => cancel_replace(account, ids, params, now),
        Endpoint::NewOrderList(kind) => lists::place(account, ids, kind, params, now),
        Endpoint::CancelOrderList => lists::cancel(account, ids, params, now),
        Endpoint::QueryOrderList => lists::query(account, params),
        Endpoint::AllOrderLists => lists::all(account, params),
        Endpoint::OpenOrderLists => Ok(lists::open(account)),
        // Each order of the list as `POST /fapi/v1/order` would take it alone, in order;
        // one refused is answered in its place with its error, and the rest go on.
        Endpoint::BatchOrders => {
            let answers = batch_orders(params)?
                .iter()
                .map(
                    |order| match new_order(account, ids, Product::UsdM, order, now) {
                        Ok(placed) => placed,
                        Err(error) => error.into_parts().1,
                    },
                )
                .collect();
            Ok(Value::Array(answers))
        }
        // Each modification of the list as `PUT /fapi/v1/order` would make it alone, in
        // order; one refused is answered in its place with its error.
        Endpoint::ModifyBatchOrders => {
            let answers = batch_orders(params)?
                .iter()
                .map(|order| match modify_order(account, ids, order, now) {
                    Ok(modified) => modified,
                    Err(error) => error.into_parts().1,
                })
                .collect();
            Ok(Value::Array(answers))
        }
        Endpoint::QueryOrder(product) => {
            let m = symbol(params, product)?;
            let name = order_ref(params, product)?;
            let order = book::find(account, product, m.symbol, &name.by)
                .filter(|o| name.is_named(o) && still_found(o, now))
                .ok_or_else(|| ApiError::new(400, -2013, "Order does not exist."))?;
            Ok(match product {
                Product::Spot => spot_order(order),
                Product::UsdM => futures_order(order),
            })
        }
        // Each order named, in turn, as `DELETE /fapi/v1/order` would cancel it alone; one
        // that cannot be is answered in its place with its error.
        Endpoint::CancelBatchOrders => {
            let m = symbol(params, Product::UsdM)?;
            let answers = batch_cancels(params)?
                .iter()
                .map(|named| {
                    match book::cancel(account, Product::UsdM, m.symbol, &named.order_ref(), now) {
                        Ok(order) => futures_order(&order),
                        Err(error) => error.into_parts().1,
                    }
                })
                .collect();
            Ok(Value::Array(answers))
        }
        Endpoint::CancelOrder(product) => {
            let m = symbol(params, product)?;
            let name = order_ref(params, product)?;
            let only_status = match product {
                Product::Spot => cancel_restrictions(params)?,
                Product::UsdM => None,
            };
            let named = book::find(account, product, m.symbol, &name.by).map(|o| &*o);
            if named.is_some_and(|o| !name.is_named(o)) {
                return Err(ApiError::unknown_order());
            }
            // Found by review: honoured by cancel-replace only.
            if only_status
                .is_some_and(|status| named.is_some_and(|o| o.is_open() && o.status != status))
            {
                return Err(ApiError::cancel_restricted());
            }
            // A leg of an order list cancels the whole list, and is answered as the
            // list (as Binance's `order.cancel` answers "when an order list is canceled").
            let leg_of = book::find(account, product, m.symbol, &name.by)
                .filter(|o| o.is_open())
                .and_then(|o| o.order_list_id);
            if let (Product::Spot, Some(list)) = (product, leg_of) {
                let cancel_id = cancel_client_id(ids, params, "newClientOrderId");
                return lists::cancel_list(account, list, &cancel_id, now);
            }
            let order = book::cancel(account, product, m.symbol, &name.by, now)?;
            Ok(match product {
                Product::Spot => spot_cancelled(
                    &order,
                    cancel_client_id(ids, params, "newClientOrderId"),
                    now,
                ),
                Product::UsdM => futures_order(&order),
            })
        }
        Endpoint::OpenOrders(product) => {
            let filter = match params.get("symbol") {
                Some(_) => Some(symbol(params, product)?.symbol),
                None => None,
            };
            let open = account.orders.iter().filter(|o| {
                o.product == product && o.is_open() && filter.is_none_or(|s| s == o.symbol)
            });
            Ok(Value::Array(
                open.map(|o| match product {
                    Product::Spot => spot_order(o),
                    Product::UsdM => futures_order(o),
                })
                .collect(),
            ))
        }
        // The simulator liquidates nothing, so it lists no forced order: an order a key
        // placed with an `autoclose-` client order id stays that key's.
        Endpoint::ForceOrders => {
            let from = params.integer("startTime")?;
            let to = params.integer("endTime")?;
            if let (Some(from), Some(to)) = (from, to) {
                if to < from || to - from > 7 * 24 * 3600 * 1000 {
                    return Err(ApiError::new(
                        400,
                        -1127,
                        "The time between startTime and endTime must be less than 7 days.",
                    ));
                }
            }
            Ok(Value::Array(Vec::new()))
        }
        Endpoint::AllOrders(product) => {
            let m = symbol(params, product)?;
            // Spot lists at most a day's orders between startTime and endTime, USD-M less
            // than seven days'.
            let (span_ms, too_long) = match product {
                Product::Spot => (
                    24 * 3600 * 1000,
                    "More than 24 hours between startTime and endTime.",
                ),
                Product::UsdM => (
                    7 * 24 * 3600 * 1000 - 1,
                    "The time between startTime and endTime must be less than 7 days.",
                ),
            };
            let from = params.integer("startTime")?;
            let to = params.integer("endTime")?;
            if let (Some(from), Some(to)) = (from, to) {
                if to < from || to - from > span_ms {
                    return Err(ApiError::new(400, -1127, too_long));
                }
            }
            let limit = history_limit(params)?;
            let from_id = params.integer("orderId")?;
            let placed =
                |o: &&Order| from.is_none_or(|f| o.time >= f) && to.is_none_or(|t| o.time <= t);
            let orders: Vec<&Order> = account
                .orders
                .iter()
                .filter(|o| o.product == product && o.symbol == m.symbol)
                .filter(|o| from_id.is_none_or(|id| o.order_id >= id))
                .filter(placed)
                .filter(|o| still_found(o, now))
                .collect();
            let from_start = from_id.is_some() || from.is_some();
            Ok(Value::Array(
                page(orders, limit, from_start)
                    .into_iter()
                    .map(|o| match product {
                        Product::Spot => spot_order(o),
                        Product::UsdM => futures_order(o),
                    })
                    .collect(),
            ))
        }
        // As Binance's Account trade list page has it: `orderId` narrows to one order's
        // trades; `fromId` lists from that trade id on and may not come with a time;
        // `startTime` and `endTime` at most 24 hours apart; at most `limit` trades, the
        // most recent unless the list starts at an id or a time, oldest first.
        Endpoint::MyTrades(Product::Spot) => {
            let m = symbol(params, Product::Spot)?;
            let order_id = params.integer("orderId")?;
            let from_id = params.integer("fromId")?;
            let (from, to) = (params.integer("startTime")?, params.integer("endTime")?);
            check_from_id_or_day(from_id, from, to)?;
            let limit = history_limit(params)?;
            let trades: Vec<&Trade> = account
                .trades
                .iter()
                .filter(|t| t.product == Product::Spot && t.symbol == m.symbol)
                .filter(|t| order_id.is_none_or(|id| t.order_id == id))
                .filter(|t| from_id.is_none_or(|id| t.id >= id))
                .filter(|t| from.is_none_or(|f| t.time >= f) && to.is_none_or(|e| t.time <= e))
                .collect();
            let from_start = from_id.is_some() || from.is_some();
            Ok(Value::Array(
                page(trades, limit, from_start)
                    .into_iter()
                    .map(spot_trade)
                    .collect(),
            ))
        }
        Endpoint::MyTrades(Product::UsdM) => {
            let m = symbol(params, Product::UsdM)?;
            let window = UserTradesWindow::parse(params, now)?;
            Ok(Value::Array(
                window
                    .select(
                        account
                            .trades
                            .iter()
                            .filter(|t| t.product == Product::UsdM && t.symbol == m.symbol),
                    )
                    .into_iter()
                    .map(futures_trade)
                    .collect(),
            ))
        }
        Endpoint::Income => {
            // Each USD-M trade's realized profit or loss, when it realized any, and its
            // commission (zero here, as every fee of this simulator), oldest first,
            // `limit` (100 by default, at most 1000) a page from `page` 1; the last 7 days
            // without a time. A realized profit's `tranId` is numbered apart from the
            // commissions' (which are the trade ids), from `PNL_TRAN_IDS`.
            let start = params.integer("startTime")?;
            let end = params.integer("endTime")?;
            let start = start.unwrap_or_else(|| now.saturating_sub(7 * 24 * 3600 * 1000));
            let end = end.unwrap_or(now);
            let kind = params.get("incomeType");
            let limit = params.integer("limit")?.unwrap_or(100).clamp(1, 1000);
            let page = params.integer("page")?.unwrap_or(1).max(1);
            let skip = (page - 1).saturating_mul(limit);
            Ok(Value::Array(
                account
                    .trades
                    .iter()
                    .filter(|t| t.product == Product::UsdM && (start..=end).contains(&t.time))
                    .flat_map(|t| {
                        let pnl = (!t.realized_pnl.is_zero()).then_some((
                            "REALIZED_PNL",
                            t.realized_pnl,
                            PNL_TRAN_IDS + t.id,
                        ));
                        pnl.into_iter()
                            .chain([("COMMISSION", Decimal::ZERO, t.id)])
                            .map(move |entry| (t, entry))
                    })
                    .filter(|(_, (income_type, ..))| kind.is_none_or(|k| k == *income_type))
                    .skip(usize::try_from(skip).unwrap_or(usize::MAX))
                    .take(usize::try_from(limit).unwrap_or(1000))
                    .map(|(t, (income_type, income, tran_id))| {
                        json!({
                            "symbol": t.symbol,
                            "incomeType": income_type,
                            "income": fmt(income, 8),
                            "asset": t.commission_asset,
                            "info": income_type,
                            "time": t.time,
                            "tranId": tran_id,
                            "tradeId": t.id.to_string()
                        })
                    })
                    .collect(),
            ))
        }
        Endpoint::CapitalConfig => Ok(Value::Array(
            market::COINS
                .iter()
                .map(|coin| {
                    let balance = account.spot.get(coin.coin).copied().unwrap_or_default();
                    market::coin_config(coin, balance.free, balance.locked)
                })
                .collect(),
        )),
        // Trades pay no commission here (see the account's rates).
        Endpoint::TradeFee => {
            let fee = |m: &market::Market| {
                json!({"symbol": m.symbol, "makerCommission": "0", "takerCommission": "0"})
            };
            match params.get("symbol") {
                Some(_) => Ok(json!([fee(symbol(params, Product::Spot)?)])),
                None => Ok(Value::Array(market::of(Product::Spot).map(fee).collect())),
            }
        }
        // An address per coin and network, the same for every account: nothing is ever
        // deposited to it, so the history is empty.
        Endpoint::DepositAddress => {
            let coin = params.required("coin")?;
            let known = market::coin(coin).ok_or_else(|| ApiError::invalid_parameter("coin"))?;
            let network = params.get("network").filter(|n| !n.is_empty());
            let network = known
                .network(network)
                .ok_or_else(|| ApiError::invalid_parameter("network"))?;
            Ok(json!({
                "address": format!("mockex-deposit-{}-{}", known.coin, network.network).to_lowercase(),
                "coin": known.coin,
                "tag": if network.has_memo { "100001" } else { "" },
                "url": ""
            }))
        }
        Endpoint::DepositHistory => Ok(json!([])),
        Endpoint::Withdraw => {
            let coin = params.required("coin")?;
            let address = params.required("address")?;
            let amount = params
                .decimal("amount")?
                .ok_or_else(|| ApiError::mandatory("amount"))?;
            let Some(known) = market::coin(coin) else {
                return Err(ApiError::new(400, -4003, "Withdrawal asset not supported."));
            };
            // The rules `capital/config/getall` announces for the coin's networks. Binance's
            // withdraw page documents one code: a tag on a network without tags is -4106
            // TAG_NOT_SUPPORTED_FOR_NETWORK (it names the code, not its message, which is
            // the simulator's). Binance has wallet codes for the others too (ccxt lists
            // -4007 "Address validation is not passed.", -4008 for a tag, -4021 for the
            // multiple), but the simulator could not confirm them in Binance's
            // documentation, so it answers the generic request errors (-1130, -1100,
            // -1111) in their documented words.
            let network = params.get("network").filter(|n| !n.is_empty());
            let network = known
                .network(network)
                .ok_or_else(|| ApiError::invalid_parameter("network"))?;
            if !market::ADDRESS_CHARS.contains(&address.chars().count()) {
                return Err(ApiError::illegal_chars("address", market::ADDRESS_REGEX));
            }
            let tag = params.get("addressTag").filter(|t| !t.is_empty());
            match tag {
                Some(_) if !network.has_memo => {
                    return Err(ApiError::new(
                        400,
                        -4106,
                        "Tag is not supported for this network.",
                    ))
                }
                Some(tag) if !market::is_memo(tag) => {
                    return Err(ApiError::illegal_chars("addressTag", market::MEMO_REGEX))
                }
                _ => {}
            }
            if amount <= Decimal::ZERO {
                return Err(ApiError::illegal_chars(
                    "amount",
                    "^([0-9]{1,20})(\\.[0-9]{1,20})?$",
                ));
            }
            if !(amount % market::WITHDRAW_MULTIPLE).is_zero() {
                return Err(ApiError::too_much_precision("amount"));
            }
            account
                .debit(coin, amount)
                .map_err(|_| ApiError::new(400, -4026, "User has insufficient balance"))?;
            let id = format!("{:032x}", ids.next_withdraw_id);
            ids.next_withdraw_id += 1;
            account.withdrawals.push(book::Withdrawal {
                id: id.clone(),
                coin: coin.to_owned(),
                network: network.network.to_owned(),
                address: address.to_owned(),
                address_tag: tag.map(str::to_owned),
                amount,
                apply_ms: now,
            });
            Ok(json!({ "id": id }))
        }
        Endpoint::WithdrawHistory => {
            // Binance: "the default startTime and endTime … make sure that time interval
            // is within 0-90 days"; sent both, they must be less than 90 days apart
            // (found by review: everything was listed, whatever the window).
            const SPAN_MS: u64 = 90 * 24 * 3_600_000;
            let (start, end) = (params.integer("startTime")?, params.integer("endTime")?);
            if let (Some(start), Some(end)) = (start, end) {
                if end.saturating_sub(start) >= SPAN_MS {
                    return Err(ApiError::new(
                        400,
                        -1127,
                        "More than 2160 hours between startTime and endTime.",
                    ));
                }
            }
            let end = end.unwrap_or(now);
            let start = Some(start.unwrap_or(end.saturating_sub(SPAN_MS)));
            let end = Some(end);
            // Newest first, `limit` (1000 by default and at most) from `offset` on.
            let offset = params.integer("offset")?.unwrap_or(0);
            let limit = params.integer("limit")?.unwrap_or(1000).clamp(1, 1000);
            Ok(Value::Array(
                account
                    .withdrawals
                    .iter()
                    .rev()
                    .filter(|w| start.is_none_or(|s| w.apply_ms >= s))
                    .filter(|w| end.is_none_or(|e| w.apply_ms <= e))
                    .skip(usize::try_from(offset).unwrap_or(usize::MAX))
                    .take(usize::try_from(limit).unwrap_or(1000))
                    .map(|w| {
                        let mut entry = json!({
                            "id": w.id,
                            "amount": fmt(w.amount, 8),
                            "transactionFee": "0",
                            "coin": w.coin,
                            "status": 6,
                            "address": w.address,
                            "txId": format!("0x{}", w.id),
                            "applyTime": utc_datetime(w.apply_ms),
                            "network": w.network,
                            "transferType": 0,
                            "info": "",
                            "confirmNo": 12,
                            "walletType": 0,
                            "txKey": "",
                            "completeTime": utc_datetime(w.apply_ms + 60_000),
                        });
                        if let Some(tag) = &w.address_tag {
                            entry["addressTag"] = json!(tag);
                        }
                        entry
                    })
                    .collect(),
            ))
        }
        Endpoint::PositionRisk { v3 } => position_risk(account, params, v3, now),
        Endpoint::LeverageBracket => leverage_brackets(params),
        Endpoint::MarginType => margin_type(account, params),
        Endpoint::CancelAllOrders(product) => cancel_all(account, ids, product, params, now),
        Endpoint::Transfer => transfer(account, ids, params, now),
        Endpoint::TransferHistory => transfer_history(account, params, now),
        Endpoint::FundingAssets => funding_assets(account, params),
        Endpoint::ChangePositionMode => change_position_mode(account, params),
        Endpoint::MultiAssetsMode => Ok(json!({"multiAssetsMargin": account.multi_assets})),
        Endpoint::ChangeMultiAssetsMode => change_multi_assets_mode(account, params),
        // A USD-M key can trade; deposits and withdrawals are the wallet's. The fee tier
        // is Binance's first (every trade here pays nothing: see `commissionRate`).
        Endpoint::AccountConfig => Ok(json!({
            "feeTier": 0,
            "canTrade": true,
            "canDeposit": true,
            "canWithdraw": true,
            "dualSidePosition": false,
            "updateTime": 0,
            "multiAssetsMargin": account.multi_assets,
            "tradeGroupId": -1,
        })),
        // The order named, if it is still open; a filled or cancelled one is -2013, as
        // Binance's Query Current Open Order page has it.
        Endpoint::OpenOrder => {
            let m = symbol(params, Product::UsdM)?;
            let name = order_ref(params, Product::UsdM)?;
            let order = book::find(account, Product::UsdM, m.symbol, &name.by)
                .filter(|o| o.is_open())
                .ok_or_else(|| ApiError::new(400, -2013, "Order does not exist."))?;
            Ok(futures_order(order))
        }
        Endpoint::CountdownCancelAll => countdown_cancel_all(account, params, now),
        Endpoint::NewAlgoOrder => algo::place(account, ids, params, now),
        Endpoint::CancelAlgoOrder => algo::cancel(account, params, now),
        Endpoint::QueryAlgoOrder => algo::query(account, params, now),
        Endpoint::OpenAlgoOrders => algo::open(account, params),
        Endpoint::AllAlgoOrders => algo::all(account, params, now),
        Endpoint::CancelAllAlgoOrders => algo::cancel_all(account, params, now),
        Endpoint::SymbolConfig => symbol_config(account, params),
        // Every trade here pays nothing (see `asset/tradeFee`).
        Endpoint::CommissionRate => {
            let m = symbol(params, Product::UsdM)?;
            Ok(json!({
                "symbol": m.symbol,
                "makerCommissionRate": "0",
                "takerCommissionRate": "0",
            }))
        }
        // Positions are one-way here, as in a new Binance account.
        Endpoint::PositionMode => Ok(json!({"dualSidePosition": false})),
        Endpoint::FuturesAccount => Ok(futures_account(account, now)),
        Endpoint::Leverage => {
            let m = symbol(params, Product::UsdM)?;
            let leverage = params.integer("leverage")?;
            let Some(leverage) = leverage.filter(|l| (1..=crate::book::MAX_LEVERAGE).contains(l))
            else {
                let given = params.required("leverage")?;
                return Err(ApiError::new(
                    400,
                    -4028,
                    format!("Leverage {given} is not valid"),
                ));
            };
            let leverage = u32::try_from(leverage).unwrap_or(crate::book::DEFAULT_LEVERAGE);
            account.leverage.insert(m.symbol, leverage);
            Ok(json!({
                "leverage": leverage,
                "maxNotionalValue": "1000000",
                "symbol": m.symbol,
            }))
        }
        // USDT, the margin asset, has what the initial margin leaves available.
        Endpoint::FuturesBalance => Ok(Value::Array(
            account
                .futures
                .iter()
                .map(|(asset, b)| {
                    let free = if asset == "USDT" {
                        account.available_balance()
                    } else {
                        b.free
                    };
                    json!({
                        "accountAlias": "SgsR",
                        "asset": asset,
                        "balance": fmt(b.free + b.locked, 8),
                        "crossWalletBalance": fmt(b.free + b.locked, 8),
                        "crossUnPnl": fmt(if asset == "USDT" { account.unrealized_pnl(None) } else { Decimal::ZERO }, 8),
                        "availableBalance": fmt(free, 8),
                        "maxWithdrawAmount": fmt(free, 8),
                        "marginAvailable": true,
                        "updateTime": now
                    })
                })
                .collect(),
        )),
        _ => Err(ApiError::new(404, -1000, "Unknown endpoint.")),
    }
}

/// Where the `tranId`s of `GET /fapi/v1/income`'s realized profits start, apart from its
/// commissions', which are their trades' ids.
const PNL_TRAN_IDS: u64 = 1_000_000_000;

/// The `limit`s `GET /fapi/v1/depth` takes, as Binance's Order Book page lists them
/// (500 when none is sent).
const FUTURES_DEPTH_LIMITS: [u64; 7] = [5, 10, 20, 50, 100, 500, 1000];

/// The largest position notional of the one leverage bracket the simulator announces: it
/// holds a position of any size to the same leverage (up to [`book::MAX_LEVERAGE`]), so
/// it announces one bracket, with no maintenance margin, as it keeps none.
const MAX_NOTIONAL: u64 = 1_000_000;

/// `GET /fapi/v2/positionRisk` and `GET /fapi/v3/positionRisk`, in one-way mode (one
/// entry a symbol, `positionSide` `BOTH`): v2 lists every symbol (or the one sent), with
/// its leverage and margin type; v3 only those with a position or open orders, with the
/// initial margin they hold (see [`book::Margin`]). The entry price is the average of the
/// fills that opened the position (a buy fills at the best ask, a sell at the best bid)
/// and, there being no fees, the break-even price too; the unrealized profit is the
/// position's size times the mark price's distance from it. There is no maintenance
/// margin, so no liquidation price. An isolated position's margin is its initial margin.
fn position_risk(
    account: &Account,
    params: &Params,
    v3: bool,
    now: u64,
) -> Result<Value, ApiError> {
    let only = match params.get("symbol") {
        Some(_) => Some(symbol(params, Product::UsdM)?.symbol),
        None => None,
    };
    let entries = market::of(Product::UsdM)
        .filter(|m| only.is_none_or(|s| s == m.symbol))
        .filter_map(|m| {
            let amount = account.positions.get(m.symbol).copied().unwrap_or_default();
            let open: Vec<&Order> = account
                .orders
                .iter()
                .filter(|o| o.product == Product::UsdM && o.symbol == m.symbol && o.is_open())
                .collect();
            if v3 && amount.is_zero() && open.is_empty() {
                return None;
            }
            let held = account.margin(Some(m.symbol));
            let isolated = account.isolated.contains(m.symbol);
            let isolated_margin = if isolated {
                held.position
            } else {
                Decimal::ZERO
            };
            let entry_price = account
                .entry_prices
                .get(m.symbol)
                .copied()
                .unwrap_or_default();
            let side_notional = |side: Side| -> Decimal {
                open.iter()
                    .filter(|o| o.side == side)
                    .map(|o| (o.orig_qty - o.executed_qty) * o.price)
                    .sum()
            };
            let mut entry = json!({
                "symbol": m.symbol,
                "positionSide": "BOTH",
                "positionAmt": fmt(amount, m.quantity_precision),
                "entryPrice": fmt(entry_price, 8),
                "breakEvenPrice": fmt(entry_price, 8),
                "markPrice": fmt(m.price, 8),
                "unRealizedProfit": fmt(account.unrealized_pnl(Some(m.symbol)), 8),
                "liquidationPrice": "0",
                "isolatedMargin": fmt(isolated_margin, 8),
                "notional": fmt(amount * m.price, 8),
                "isolatedWallet": fmt(isolated_margin, 8),
                "updateTime": if amount.is_zero() { 0 } else { now }
            });
            if v3 {
                entry["marginAsset"] = json!(m.quote);
                entry["initialMargin"] = json!(fmt(held.total(), 8));
                entry["maintMargin"] = json!("0");
                entry["positionInitialMargin"] = json!(fmt(held.position, 8));
                entry["openOrderInitialMargin"] = json!(fmt(held.open_orders, 8));
                entry["adl"] = json!(0);
                entry["bidNotional"] = json!(fmt(side_notional(Side::Buy), 8));
                entry["askNotional"] = json!(fmt(side_notional(Side::Sell), 8));
            } else {
                entry["leverage"] = json!(account.leverage_of(m.symbol).to_string());
                entry["maxNotionalValue"] = json!(MAX_NOTIONAL.to_string());
                entry["marginType"] = json!(if isolated { "isolated" } else { "cross" });
                entry["isAutoAddMargin"] = json!("false");
            }
            Some(entry)
        })
        .collect();
    Ok(Value::Array(entries))
}

/// `GET /fapi/v1/symbolConfig`: every USD-M symbol (or the one sent) with the account's
/// margin type (`CROSSED` or `ISOLATED`, as `POST /fapi/v1/marginType` set it), its
/// leverage (`POST /fapi/v1/leverage`) and the cap of its one leverage bracket
/// ([`MAX_NOTIONAL`]), as Binance's Symbol Configuration page answers; the simulator
/// never adds margin by itself (`isAutoAddMargin` `"false"`).
fn symbol_config(account: &Account, params: &Params) -> Result<Value, ApiError> {
    let only = match params.get("symbol") {
        Some(_) => Some(symbol(params, Product::UsdM)?.symbol),
        None => None,
    };
    Ok(Value::Array(
        market::of(Product::UsdM)
            .filter(|m| only.is_none_or(|s| s == m.symbol))
            .map(|m| {
                let isolated = account.isolated.contains(m.symbol);
                json!({
                    "symbol": m.symbol,
                    "marginType": if isolated { "ISOLATED" } else { "CROSSED" },
                    "isAutoAddMargin": "false",
                    "leverage": account.leverage_of(m.symbol),
                    "maxNotionalValue": MAX_NOTIONAL.to_string(),
                })
            })
            .collect(),
    ))
}

/// `GET /fapi/v1/leverageBracket`: one bracket a symbol (see [`MAX_NOTIONAL`]); a list,
/// or the one symbol's object when `symbol` is sent, as Binance answers.
fn leverage_brackets(params: &Params) -> Result<Value, ApiError> {
    let one = |m: &market::Market| {
        json!({
            "symbol": m.symbol,
            "brackets": [{
                "bracket": 1,
                "initialLeverage": book::MAX_LEVERAGE,
                "notionalCap": MAX_NOTIONAL,
                "notionalFloor": 0,
                "maintMarginRatio": 0.0,
                "cum": 0.0
            }]
        })
    };
    if params.get("symbol").is_some() {
        return Ok(one(symbol(params, Product::UsdM)?));
    }
    Ok(Value::Array(market::of(Product::UsdM).map(one).collect()))
}

/// `POST /fapi/v1/marginType`: `marginType` `ISOLATED` or `CROSSED` for `symbol`, as
/// Binance's Change Margin Type page has it: -4046 when it is already so, -4168 into
/// `ISOLATED` in Multi-Assets Mode, -4047 while the symbol has open orders, -4048 while
/// it has a position. The simulator holds margin
/// the same way in either (see [`book::Margin`]) and reports the margin type.
fn margin_type(account: &mut Account, params: &Params) -> Result<Value, ApiError> {
    let m = symbol(params, Product::UsdM)?;
    let isolated = match params.required("marginType")? {
        "ISOLATED" => true,
        "CROSSED" => false,
        _ => return Err(ApiError::invalid_parameter("marginType")),
    };
    if account.isolated.contains(m.symbol) == isolated {
        return Err(ApiError::new(400, -4046, "No need to change margin type."));
    }
    if isolated && account.multi_assets {
        return Err(ApiError::new(
            400,
            -4168,
            "Unable to adjust to isolated-margin mode under the Multi-Assets mode.",
        ));
    }
    let open = account
        .orders
        .iter()
        .any(|o| o.product == Product::UsdM && o.symbol == m.symbol && o.is_open());
    if open {
        return Err(ApiError::new(
            400,
            -4047,
            "Margin type cannot be changed if there exists open orders.",
        ));
    }
    if account
        .positions
        .get(m.symbol)
        .is_some_and(|p| !p.is_zero())
    {
        return Err(ApiError::new(
            400,
            -4048,
            "Margin type cannot be changed if there exists position.",
        ));
    }
    if isolated {
        account.isolated.insert(m.symbol);
    } else {
        account.isolated.remove(m.symbol);
    }
    Ok(json!({"code": 200, "msg": "success"}))
}

/// `DELETE /api/v3/openOrders` and `DELETE /fapi/v1/allOpenOrders`: cancels every open
/// order of `symbol`. Spot answers each as `DELETE /api/v3/order` does (each cancel with
/// a client id made up for it), or -2011 when there is none; USD-M answers that it is
/// done, with or without orders to cancel. USD-M's conditional orders wait in the algo
/// service and are not cancelled (`DELETE /fapi/v1/algoOpenOrders` cancels those; see
/// [`algo::cancel_all`]).
fn cancel_all(
    account: &mut Account,
    ids: &mut Ids,
    product: Product,
    params: &Params,
    now: u64,
) -> Result<Value, ApiError> {
    let m = symbol(params, product)?;
    let open: Vec<u64> = account
        .orders
        .iter()
        .filter(|o| o.product == product && o.symbol == m.symbol && o.is_open())
        .map(|o| o.order_id)
        .collect();
    // Each order on its own is answered as a cancel; the legs of a list are answered
    // once, as the list (`DELETE /api/v3/orderList` answers it), where its first leg
    // stands.
    let mut answers = Vec::new();
    let mut lists_done = Vec::new();
    for order_id in open {
        let list = account
            .orders
            .iter()
            .find(|o| o.product == product && o.order_id == order_id)
            .and_then(|o| o.order_list_id);
        match list {
            Some(list) if lists_done.contains(&list) => {}
            Some(list) => {
                lists_done.push(list);
                let cancel_id = made_up_cancel_client_id(ids);
                answers.push(lists::cancel_list(account, list, &cancel_id, now)?);
            }
            None => {
                let order = book::cancel(account, product, m.symbol, &OrderRef::Id(order_id), now)?;
                if product == Product::Spot {
                    answers.push(spot_cancelled(&order, made_up_cancel_client_id(ids), now));
                }
            }
        }
    }
    match product {
        Product::Spot if answers.is_empty() => Err(ApiError::unknown_order()),
        Product::Spot => Ok(Value::Array(answers)),
        Product::UsdM => Ok(json!({
            "code": 200,
            "msg": "The operation of cancel all open order is done."
        })),
    }
}

/// A wallet of an account that transfers move assets between.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Wallet {
    /// Spot (`MAIN`).
    Main,
    /// The funding wallet (`FUNDING`).
    Funding,
    /// USD-M futures (`UMFUTURE`); USDT only, its one margin asset here.
    UmFuture,
}

/// The transfer types the simulator serves: Binance's names for a move from one wallet
/// to another, of those it keeps.
const TRANSFER_TYPES: [(&str, Wallet, Wallet); 6] = [
    ("MAIN_UMFUTURE", Wallet::Main, Wallet::UmFuture),
    ("UMFUTURE_MAIN", Wallet::UmFuture, Wallet::Main),
    ("MAIN_FUNDING", Wallet::Main, Wallet::Funding),
    ("FUNDING_MAIN", Wallet::Funding, Wallet::Main),
    ("UMFUTURE_FUNDING", Wallet::UmFuture, Wallet::Funding),
    ("FUNDING_UMFUTURE", Wallet::Funding, Wallet::UmFuture),
];

/// The transfer type `params` names in `type`: one of [`TRANSFER_TYPES`], else -1130.
fn transfer_type(params: &Params) -> Result<(&'static str, Wallet, Wallet), ApiError> {
    let kind = params.required("type")?;
    TRANSFER_TYPES
        .iter()
        .find(|(name, _, _)| *name == kind)
        .copied()
        .ok_or_else(|| ApiError::invalid_parameter("type"))
}

/// `POST /sapi/v1/asset/transfer` (User Universal Transfer) between the wallets the
/// simulator keeps: spot, funding and USD-M (`type` one of [`TRANSFER_TYPES`]; any other
/// is -1130). `asset` is a coin the simulator knows, and USDT to or from USD-M, whose one
/// margin asset it is (-1130 for `asset` otherwise); `amount` at most what the source has
/// free (on USD-M, what the initial margin leaves available), else -5013 "Asset transfer
/// failed: insufficient balance", as Binance answers (ccxt records the answer; Binance's
/// error list does not). Answers `{"tranId": N}` and keeps the transfer for
/// [`transfer_history`].
fn transfer(
    account: &mut Account,
    ids: &mut Ids,
    params: &Params,
    now: u64,
) -> Result<Value, ApiError> {
    let (kind, from, to) = transfer_type(params)?;
    let asset = params.required("asset")?;
    let amount = params
        .decimal("amount")?
        .ok_or_else(|| ApiError::mandatory("amount"))?;
    let touches_futures = from == Wallet::UmFuture || to == Wallet::UmFuture;
    if market::coin(asset).is_none() || (touches_futures && asset != "USDT") {
        return Err(ApiError::invalid_parameter("asset"));
    }
    if amount <= Decimal::ZERO {
        return Err(ApiError::invalid_parameter("amount"));
    }
    if !(amount % market::WITHDRAW_MULTIPLE).is_zero() {
        return Err(ApiError::too_much_precision("amount"));
    }
    let insufficient = || ApiError::new(400, -5013, "Asset transfer failed: insufficient balance");
    match from {
        Wallet::Main => account.debit(asset, amount).map_err(|_| insufficient())?,
        Wallet::Funding => match account.funding.get_mut(asset) {
            Some(balance) if balance.free >= amount => balance.free -= amount,
            _ => return Err(insufficient()),
        },
        Wallet::UmFuture => {
            if amount > account.available_balance() {
                return Err(insufficient());
            }
            account.futures.entry(asset.to_owned()).or_default().free -= amount;
        }
    }
    let wallet = match to {
        Wallet::Main => &mut account.spot,
        Wallet::Funding => &mut account.funding,
        Wallet::UmFuture => &mut account.futures,
    };
    wallet.entry(asset.to_owned()).or_default().free += amount;
    let id = ids.next_transfer_id;
    ids.next_transfer_id += 1;
    account.transfers.push(Transfer {
        tran_id: id,
        kind,
        asset: asset.to_owned(),
        amount,
        time: now,
    });
    Ok(json!({ "tranId": id }))
}

/// How far back `GET /sapi/v1/asset/transfer` looks when neither `startTime` nor
/// `endTime` is sent: seven days, as Binance's page has it.
const TRANSFER_HISTORY_DEFAULT_MS: u64 = 7 * 24 * 3600 * 1000;

/// `GET /sapi/v1/asset/transfer` (Query User Universal Transfer History): the account's
/// transfers of `type` (mandatory, one of [`TRANSFER_TYPES`], else -1130), newest first,
/// between `startTime` and `endTime` (inclusive; -1023 for a start after the end), the
/// last seven days when neither is sent; `size` a page (10 by default, at most 100, else
/// -1130) and `current` the page (from 1). Answers `{"total": N, "rows": [...]}`, `total`
/// counting every transfer that matches, each row with `status` `CONFIRMED`: a transfer
/// here is done when it is answered.
fn transfer_history(account: &Account, params: &Params, now: u64) -> Result<Value, ApiError> {
    let (kind, _, _) = transfer_type(params)?;
    let (from, to) = match time_span(params)? {
        (None, None) => (now.saturating_sub(TRANSFER_HISTORY_DEFAULT_MS), u64::MAX),
        (start, end) => (start.unwrap_or(0), end.unwrap_or(u64::MAX)),
    };
    let size = match params.integer("size")? {
        None => 10,
        Some(size @ 1..=100) => size,
        Some(_) => return Err(ApiError::invalid_parameter("size")),
    };
    let current = match params.integer("current")? {
        None => 1,
        Some(0) => return Err(ApiError::invalid_parameter("current")),
        Some(current) => current,
    };
    let matching: Vec<&Transfer> = account
        .transfers
        .iter()
        .rev()
        .filter(|t| t.kind == kind && (from..=to).contains(&t.time))
        .collect();
    let skip = usize::try_from((current - 1).saturating_mul(size)).unwrap_or(usize::MAX);
    let rows: Vec<Value> = matching
        .iter()
        .skip(skip)
        .take(usize::try_from(size).unwrap_or(100))
        .map(|t| {
            json!({
                "asset": t.asset,
                "amount": t.amount.normalize().to_string(),
                "type": t.kind,
                "status": "CONFIRMED",
                "tranId": t.tran_id,
                "timestamp": t.time,
            })
        })
        .collect();
    Ok(json!({"total": matching.len(), "rows": rows}))
}

/// `POST /sapi/v1/asset/get-funding-asset` (Funding Wallet): each asset the funding
/// wallet holds (or the one `asset` sent), as Binance's page answers it; nothing there is
/// locked, frozen or being withdrawn. With `needBtcValuation=true` (`true` or `false`,
/// else -1130), `btcValuation` is what it is worth in BTC at the reference prices, else
/// `"0"`.
fn funding_assets(account: &Account, params: &Params) -> Result<Value, ApiError> {
    let only = params.get("asset");
    let valued = match params.get("needBtcValuation") {
        None | Some("false") => false,
        Some("true") => true,
        Some(_) => return Err(ApiError::invalid_parameter("needBtcValuation")),
    };
    Ok(Value::Array(
        account
            .funding
            .iter()
            .filter(|(asset, b)| only.is_none_or(|o| o == asset.as_str()) && !b.free.is_zero())
            .map(|(asset, b)| {
                let btc = if valued {
                    fmt(btc_value(asset, b.free), 8)
                } else {
                    "0".to_owned()
                };
                json!({
                    "asset": asset,
                    "free": b.free.normalize().to_string(),
                    "locked": "0",
                    "freeze": "0",
                    "withdrawing": "0",
                    "btcValuation": btc,
                })
            })
            .collect(),
    ))
}

/// What `amount` of `asset` is worth in BTC at the spot reference prices: through its BTC
/// market if it has one, else through USDT (zero for an asset with neither).
fn btc_value(asset: &str, amount: Decimal) -> Decimal {
    let price = |symbol: &str| market::find(Product::Spot, symbol).map(|m| m.price);
    if asset == "BTC" {
        return amount;
    }
    if let Some(price) = price(&format!("{asset}BTC")) {
        return amount * price;
    }
    let in_usdt = if asset == "USDT" {
        Some(amount)
    } else {
        price(&format!("{asset}USDT")).map(|p| amount * p)
    };
    match (in_usdt, price("BTCUSDT")) {
        (Some(usdt), Some(btc)) if !btc.is_zero() => usdt / btc,
        _ => Decimal::ZERO,
    }
}

/// Whether `account` has an open USD-M order (of any symbol).
fn has_open_futures_orders(account: &Account) -> bool {
    account
        .orders
        .iter()
        .any(|o| o.product == Product::UsdM && o.is_open())
}

/// `POST /fapi/v1/positionSide/dual` (Change Position Mode): `dualSidePosition` `true`
/// (Hedge Mode) or `false` (One-way Mode), else -1130. The simulator keeps positions in
/// One-way Mode only, so `false` is -4059 "No need to change position side.", as Binance
/// answers when nothing changes; `true` is what Binance answers while there are open
/// orders (-4067) or a position (-4068), and otherwise -1020 "This operation is not
/// supported.": the simulator has no Hedge Mode to switch to.
fn change_position_mode(account: &Account, params: &Params) -> Result<Value, ApiError> {
    let dual = match params.required("dualSidePosition")? {
        "true" => true,
        "false" => false,
        _ => return Err(ApiError::invalid_parameter("dualSidePosition")),
    };
    if !dual {
        return Err(ApiError::new(
            400,
            -4059,
            "No need to change position side.",
        ));
    }
    if has_open_futures_orders(account) {
        return Err(ApiError::new(
            400,
            -4067,
            "Position side cannot be changed if there exists open orders.",
        ));
    }
    if account.positions.values().any(|p| !p.is_zero()) {
        return Err(ApiError::new(
            400,
            -4068,
            "Position side cannot be changed if there exists position.",
        ));
    }
    Err(ApiError::new(
        400,
        -1020,
        "This operation is not supported.",
    ))
}

/// `POST /fapi/v1/multiAssetsMargin` (Change Multi-Assets Mode): `multiAssetsMargin`
/// `true` or `false` (else -1130), refused as Binance refuses it (codes and messages as
/// its error list gives them): -4171 when the mode is already so, -4167 into Multi-Assets
/// Mode while a symbol is isolated, -4170 with open orders. The simulator's USD-M wallet
/// holds USDT alone, so the mode changes no margin here; it is reported
/// (`multiAssetsMargin` in `GET /fapi/v1/multiAssetsMargin`, `accountConfig` and
/// `account`), and in it no symbol can be made isolated (-4168, see [`margin_type`]).
fn change_multi_assets_mode(account: &mut Account, params: &Params) -> Result<Value, ApiError> {
    let on = match params.required("multiAssetsMargin")? {
        "true" => true,
        "false" => false,
        _ => return Err(ApiError::invalid_parameter("multiAssetsMargin")),
    };
    if account.multi_assets == on {
        return Err(ApiError::new(
            400,
            -4171,
            "Adjusted asset mode is currently set and does not need to be adjusted repeatedly",
        ));
    }
    if on && !account.isolated.is_empty() {
        return Err(ApiError::new(
            400,
            -4167,
            "Unable to adjust to Multi-Assets mode with symbols of USDⓈ-M Futures under \
             isolated-margin mode.",
        ));
    }
    if has_open_futures_orders(account) {
        return Err(ApiError::new(
            400,
            -4170,
            "Unable to adjust Multi-Assets Mode with open orders in USDⓈ-M Futures",
        ));
    }
    account.multi_assets = on;
    Ok(json!({"code": 200, "msg": "success"}))
}

/// `POST /fapi/v1/countdownCancelAll` (Auto-Cancel All Open Orders): `symbol`'s open
/// USD-M orders are cancelled `countdownTime` ms from now (mandatory, an integer) unless
/// another call renews or, with 0, stops the countdown; conditional orders wait in the
/// algo service and stay, as `allOpenOrders` leaves them (see [`book::expire_countdowns`]
/// for when the simulator cancels). Answers the symbol and the countdown as Binance's
/// page shows them, the countdown as a string.
fn countdown_cancel_all(
    account: &mut Account,
    params: &Params,
    now: u64,
) -> Result<Value, ApiError> {
    let m = symbol(params, Product::UsdM)?;
    let countdown = params
        .integer("countdownTime")?
        .ok_or_else(|| ApiError::mandatory("countdownTime"))?;
    if countdown == 0 {
        account.countdowns.remove(m.symbol);
    } else {
        account
            .countdowns
            .insert(m.symbol, now.saturating_add(countdown));
    }
    Ok(json!({"symbol": m.symbol, "countdownTime": countdown.to_string()}))
}

/// The `limit` of a history list (`allOrders`, spot `myTrades`): 500 by default, at most
/// 1000; past that, or 0, Binance answers -1130.
pub(crate) fn history_limit(params: &Params) -> Result<usize, ApiError> {
    match params.integer("limit")? {
        None => Ok(500),
        // At most 1000 here, so it fits.
        Some(limit @ 1..=1000) => Ok(usize::try_from(limit).unwrap_or(1000)),
        Some(_) => Err(ApiError::invalid_parameter("limit")),
    }
}

/// At most `limit` of `items` (oldest first): the first ones when the list starts at an
/// id or a time, else the most recent, as Binance's history lists answer.
pub(crate) fn page<T>(mut items: Vec<T>, limit: usize, from_start: bool) -> Vec<T> {
    if from_start {
        items.truncate(limit);
    } else {
        let excess = items.len().saturating_sub(limit);
        items.drain(..excess);
    }
    items
}

/// Which of a symbol's fills `GET /fapi/v1/userTrades` answers, as Binance documents it:
/// `orderId` narrows to one order; `fromId` lists from that trade id on and may not come
/// with `startTime` or `endTime`; otherwise a window of at most 7 days (the last 7 days
/// when neither bound is sent, 7 days from or to the one bound sent); at most `limit`
/// trades (default 500, max 1000), the most recent ones unless `fromId` is sent, oldest
/// first.
struct UserTradesWindow {
    order_id: Option<u64>,
    from_id: Option<u64>,
    /// Inclusive bounds in ms, when `fromId` is not sent.
    time: Option<(u64, u64)>,
    limit: usize,
}

impl UserTradesWindow {
    const WEEK_MS: u64 = 7 * 24 * 3600 * 1000;

    fn parse(params: &Params, now: u64) -> Result<UserTradesWindow, ApiError> {
        let from_id = params.integer("fromId")?;
        let start = params.integer("startTime")?;
        let end = params.integer("endTime")?;
        let time = match (from_id, start, end) {
            (Some(_), None, None) => None,
            (Some(_), _, _) => {
                return Err(ApiError::new(
                    400,
                    -1128,
                    "Combination of optional parameters invalid.",
                ))
            }
            (None, Some(start), Some(end)) => {
                if end < start || end - start > Self::WEEK_MS {
                    return Err(ApiError::new(
                        400,
                        -1127,
                        "More than 168 hours between startTime and endTime.",
                    ));
                }
                Some((start, end))
            }
            (None, Some(start), None) => Some((start, start.saturating_add(Self::WEEK_MS))),
            (None, None, Some(end)) => Some((end.saturating_sub(Self::WEEK_MS), end)),
            (None, None, None) => Some((now.saturating_sub(Self::WEEK_MS), now)),
        };
        let limit = params.integer("limit")?.unwrap_or(500).clamp(1, 1000);
        Ok(UserTradesWindow {
            order_id: params.integer("orderId")?,
            from_id,
            time,
            // At most 1000 after the clamp, so it fits.
            limit: usize::try_from(limit).unwrap_or(1000),
        })
    }

    /// The trades of `trades` (oldest first) that the window answers, oldest first.
    fn select<'a>(&self, trades: impl Iterator<Item = &'a Trade>) -> Vec<&'a Trade> {
        let mut chosen: Vec<&Trade> = trades
            .filter(|t| self.order_id.is_none_or(|id| t.order_id == id))
            .filter(|t| self.from_id.is_none_or(|id| t.id >= id))
            .filter(|t| {
                self.time
                    .is_none_or(|(start, end)| (start..=end).contains(&t.time))
            })
            .collect();
        if self.from_id.is_some() {
            chosen.truncate(self.limit);
        } else {
            let excess = chosen.len().saturating_sub(self.limit);
            chosen.drain(..excess);
        }
        chosen
    }
}

/// How a query, cancel or modification names its order: `orderId` or
/// `origClientOrderId`, as Binance requires one of them.
struct OrderName<'a> {
    /// What the order is looked up by: its id when one is sent.
    by: OrderRef<'a>,
    /// On spot, the `origClientOrderId` sent beside `orderId`, which the order found by
    /// its id must carry too.
    also_client: Option<&'a str>,
}

impl OrderName<'_> {
    /// Whether `order`, found by [`Self::by`], is the one the request names. Spot
    /// documents it: "If both orderId and origClientOrderId are provided, the orderId is
    /// searched first, then the origClientOrderId from that result is checked against
    /// that order. If both conditions are not met the request will be rejected." Without
    /// that check, a client that sends both to be safe would act on an order it did not
    /// mean.
    fn is_named(&self, order: &Order) -> bool {
        self.also_client
            .is_none_or(|client| order.client_order_id == client)
    }
}

/// Reads the [`OrderName`] of a request on `product`. USD-M only documents that one of
/// the two must be sent; when both are, the id prevails and the other is not checked.
fn order_ref(params: &Params, product: Product) -> Result<OrderName<'_>, ApiError> {
    let client = params.get("origClientOrderId").filter(|c| !c.is_empty());
    if let Some(id) = params.integer("orderId")? {
        return Ok(OrderName {
            by: OrderRef::Id(id),
            also_client: client.filter(|_| product == Product::Spot),
        });
    }
    match client {
        Some(client) => Ok(OrderName {
            by: OrderRef::Client(client),
            also_client: None,
        }),
        None => Err(ApiError::new(
            400,
            -1102,
            "Param 'origClientOrderId' or 'orderId' must be sent, but both were empty/null!",
        )),
    }
}

/// A spot `account` answer; with `omit_zero` (`omitZeroBalances=true`), without the
/// assets of which nothing is held, free or locked.
fn spot_account(account: &Account, omit_zero: bool, now: u64) -> Value {
    let balances: Vec<Value> = account
        .spot
        .iter()
        .filter(|(_, b)| !omit_zero || !(b.free + b.locked).is_zero())
        .map(|(asset, b)| json!({"asset": asset, "free": fmt(b.free, 8), "locked": fmt(b.locked, 8)}))
        .collect();
    json!({
        "makerCommission": 0,
        "takerCommission": 0,
        "buyerCommission": 0,
        "sellerCommission": 0,
        "commissionRates": {"maker": "0.00000000", "taker": "0.00000000", "buyer": "0.00000000", "seller": "0.00000000"},
        "canTrade": true,
        "canWithdraw": true,
        "canDeposit": true,
        "brokered": false,
        "requireSelfTradePrevention": false,
        "preventSor": false,
        "updateTime": now,
        "accountType": "SPOT",
        "balances": balances,
        "permissions": ["SPOT"],
        "uid": 354_937_868
    })
}

/// `GET /fapi/v2/account`: the wallet, the initial margin its positions and open
/// orders hold (see [`book::Margin`]) and what is left of it, available; each position
/// with its leverage, its margin type (`isolated`, as `POST /fapi/v1/marginType` set
/// it) and the cap of its one leverage bracket ([`MAX_NOTIONAL`]). Every USD-M
/// market is margined in USDT, the wallet's one asset, so the account's totals are that
/// asset's.
fn futures_account(account: &Account, now: u64) -> Value {
    let total = account.wallet_balance();
    let unrealized = account.unrealized_pnl(None);
    let margin = account.margin(None);
    let available = account.available_balance();
    let assets: Vec<Value> = account
        .futures
        .iter()
        .map(|(asset, b)| {
            let usdt = asset == "USDT";
            let held = |amount: Decimal| fmt(if usdt { amount } else { Decimal::ZERO }, 8);
            let free = if usdt { available } else { b.free };
            let wallet = b.free + b.locked;
            let margin_balance = if usdt { wallet + unrealized } else { wallet };
            json!({
                "asset": asset,
                "walletBalance": fmt(wallet, 8),
                "unrealizedProfit": held(unrealized),
                "marginBalance": fmt(margin_balance, 8),
                "maintMargin": "0.00000000",
                "initialMargin": held(margin.total()),
                "positionInitialMargin": held(margin.position),
                "openOrderInitialMargin": held(margin.open_orders),
                "crossWalletBalance": fmt(b.free + b.locked, 8),
                "crossUnPnl": held(unrealized),
                "availableBalance": fmt(free, 8),
                "maxWithdrawAmount": fmt(free, 8),
                "marginAvailable": true,
                "updateTime": now
            })
        })
        .collect();
    let positions: Vec<Value> = market::of(Product::UsdM)
        .map(|m| {
            let amount = account.positions.get(m.symbol).copied().unwrap_or_default();
            let held = account.margin(Some(m.symbol));
            json!({
                "symbol": m.symbol,
                "initialMargin": held.total().normalize().to_string(),
                "maintMargin": "0",
                "unrealizedProfit": fmt(account.unrealized_pnl(Some(m.symbol)), 8),
                "positionInitialMargin": held.position.normalize().to_string(),
                "openOrderInitialMargin": held.open_orders.normalize().to_string(),
                "leverage": account.leverage_of(m.symbol).to_string(),
                "isolated": account.isolated.contains(m.symbol),
                "entryPrice": match account.entry_prices.get(m.symbol) {
                    Some(entry) if !amount.is_zero() => entry.round_dp(8).normalize().to_string(),
                    _ => "0.0".to_owned(),
                },
                "maxNotional": MAX_NOTIONAL.to_string(),
                "positionSide": "BOTH",
                "positionAmt": amount.normalize().to_string(),
                "notional": (amount * m.price).normalize().to_string(),
                "updateTime": now
            })
        })
        .collect();
    json!({
        "feeTier": 0,
        "canTrade": true,
        "canDeposit": true,
        "canWithdraw": true,
        "updateTime": 0,
        "multiAssetsMargin": account.multi_assets,
        "tradeGroupId": -1,
        "totalInitialMargin": fmt(margin.total(), 8),
        "totalMaintMargin": "0.00000000",
        "totalWalletBalance": fmt(total, 8),
        "totalUnrealizedProfit": fmt(unrealized, 8),
        "totalMarginBalance": fmt(total + unrealized, 8),
        "totalPositionInitialMargin": fmt(margin.position, 8),
        "totalOpenOrderInitialMargin": fmt(margin.open_orders, 8),
        "totalCrossWalletBalance": fmt(total, 8),
        "totalCrossUnPnl": fmt(unrealized, 8),
        "availableBalance": fmt(available, 8),
        "maxWithdrawAmount": fmt(available, 8),
        "assets": assets,
        "positions": positions
    })
}

/// `GET /api/v3/order` shape: a conditional order with its `stopPrice` and, if it has
/// one, `trailingDelta`; one not working yet (untriggered, or a pending leg of a list)
/// with `isWorking` false and `workingTime` -1.
pub(crate) fn spot_order(o: &Order) -> Value {
    let mut v = json!({
        "symbol": o.symbol,
        "orderId": o.order_id,
        "orderListId": list_id(o),
        "clientOrderId": o.client_order_id,
        "price": fmt(o.price, 8),
        "origQty": fmt(o.orig_qty, 8),
        "executedQty": fmt(o.executed_qty, 8),
        "cummulativeQuoteQty": fmt(o.cumulative_quote, 8),
        "status": o.status,
        "timeInForce": o.time_in_force,
        "type": o.order_type.as_str(),
        "side": o.side.as_str(),
        "stopPrice": fmt(o.stop_price.unwrap_or(Decimal::ZERO), 8),
        "icebergQty": "0.00000000",
        "time": o.time,
        "updateTime": o.update_time,
        "isWorking": o.working_time.is_some(),
        "workingTime": working_time(o),
        "origQuoteOrderQty": fmt(o.orig_quote_qty, 8),
        "selfTradePreventionMode": "NONE"
    });
    if let Some(delta) = o.trailing_delta {
        v["trailingDelta"] = json!(delta);
    }
    v
}

/// Whether Binance still finds `order` at `now` (`allOrders`, a query by id): USD-M
/// forgets an order cancelled or expired with nothing filled three days after it was
/// placed, and every order after ninety, as its "All Orders" and "Query Order" pages
/// say; spot keeps them.
fn still_found(order: &Order, now: u64) -> bool {
    let ended_unfilled =
        matches!(order.status, "CANCELED" | "EXPIRED") && order.executed_qty.is_zero();
    order.product == Product::Spot || usdm_still_finds(order.time, ended_unfilled, now)
}

/// USD-M's rule for what its lists and queries still find at `now` of an order or
/// conditional order made at `made_ms`: nothing after ninety days, and one that ended
/// with nothing filled (`ended_unfilled`) not after three.
pub(crate) fn usdm_still_finds(made_ms: u64, ended_unfilled: bool, now: u64) -> bool {
    const DAY_MS: u64 = 24 * 3600 * 1000;
    let age = now.saturating_sub(made_ms);
    age <= 90 * DAY_MS && !(ended_unfilled && age > 3 * DAY_MS)
}

/// `orderListId`: the list's, or -1 for an order on its own.
pub(crate) fn list_id(o: &Order) -> i64 {
    o.order_list_id
        .and_then(|id| i64::try_from(id).ok())
        .unwrap_or(-1)
}

/// `workingTime`: when the order went on the book, or -1 if it is not there yet.
fn working_time(o: &Order) -> i64 {
    o.working_time
        .and_then(|t| i64::try_from(t).ok())
        .unwrap_or(-1)
}

/// `POST /api/v3/order` reply for ACK, RESULT or FULL (also each report of a new order
/// list): RESULT and FULL carry a conditional order's `stopPrice` and `trailingDelta`.
pub(crate) fn spot_new_order(o: &Order, fills: &[Trade], resp_type: RespType, now: u64) -> Value {
    let mut v = json!({
        "symbol": o.symbol,
        "orderId": o.order_id,
        "orderListId": list_id(o),
        "clientOrderId": o.client_order_id,
        "transactTime": now
    });
    if resp_type == RespType::Ack {
        return v;
    }
    let full = spot_order(o);
    for field in [
        "price",
        "origQty",
        "executedQty",
        "origQuoteOrderQty",
        "cummulativeQuoteQty",
        "status",
        "timeInForce",
        "type",
        "side",
        "workingTime",
        "selfTradePreventionMode",
    ] {
        v[field] = full[field].clone();
    }
    if o.order_type.is_conditional() {
        v["stopPrice"] = full["stopPrice"].clone();
    }
    if let Some(delta) = o.trailing_delta {
        v["trailingDelta"] = json!(delta);
    }
    if resp_type == RespType::Full {
        v["fills"] = Value::Array(
            fills
                .iter()
                .map(|t| {
                    json!({
                        "price": fmt(t.price, 8),
                        "qty": fmt(t.qty, 8),
                        "commission": "0.00000000",
                        "commissionAsset": t.commission_asset,
                        "tradeId": t.id
                    })
                })
                .collect(),
        );
    }
    v
}

fn spot_trade(t: &Trade) -> Value {
    json!({
        "symbol": t.symbol,
        "id": t.id,
        "orderId": t.order_id,
        // -1 unless the order is a leg of an order list (found by review: -1 always).
        "orderListId": t.order_list_id.map_or(-1, |id| id as i64),
        "price": fmt(t.price, 8),
        "qty": fmt(t.qty, 8),
        "quoteQty": fmt(t.price * t.qty, 8),
        "commission": "0.00000000",
        "commissionAsset": t.commission_asset,
        "time": t.time,
        "isBuyer": t.is_buyer,
        "isMaker": t.is_maker,
        "isBestMatch": true
    })
}

/// `GET /fapi/v1/userTrades` shape. Every fill is a taker's at the best level of the
/// published book, in one-way mode (`positionSide` BOTH), with zero commission and the
/// profit or loss it realized by reducing the position.
fn futures_trade(t: &Trade) -> Value {
    json!({
        "buyer": t.is_buyer,
        "commission": fmt(Decimal::ZERO, 8),
        "commissionAsset": t.commission_asset,
        "id": t.id,
        "maker": t.is_maker,
        "orderId": t.order_id,
        "price": t.price.normalize().to_string(),
        "qty": t.qty.normalize().to_string(),
        "quoteQty": (t.price * t.qty).normalize().to_string(),
        "realizedPnl": fmt(t.realized_pnl, 8),
        "side": if t.is_buyer { "BUY" } else { "SELL" },
        "positionSide": "BOTH",
        "symbol": t.symbol,
        "time": t.time
    })
}

/// USD-M order shape (new, query and cancel).
fn futures_order(o: &Order) -> Value {
    let avg = if o.executed_qty.is_zero() {
        Decimal::ZERO
    } else {
        o.cumulative_quote / o.executed_qty
    };
    json!({
        "orderId": o.order_id,
        "symbol": o.symbol,
        "status": o.status,
        "clientOrderId": o.client_order_id,
        "price": o.price.normalize().to_string(),
        "avgPrice": avg.normalize().to_string(),
        "origQty": o.orig_qty.normalize().to_string(),
        "executedQty": o.executed_qty.normalize().to_string(),
        "cumQty": o.executed_qty.normalize().to_string(),
        "cumQuote": o.cumulative_quote.normalize().to_string(),
        "timeInForce": o.time_in_force,
        "type": o.order_type.as_str(),
        "origType": o.order_type.as_str(),
        "reduceOnly": o.reduce_only,
        "closePosition": false,
        "side": o.side.as_str(),
        "positionSide": "BOTH",
        "stopPrice": "0",
        "workingType": "CONTRACT_PRICE",
        "priceProtect": false,
        "priceMatch": "NONE",
        "selfTradePreventionMode": "EXPIRE_MAKER",
        "goodTillDate": 0,
        "time": o.time,
        "updateTime": o.update_time
    })
}

/// `YYYY-MM-DD HH:MM:SS` in UTC, as Binance writes `applyTime`.
fn utc_datetime(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rest) = (secs / 86_400, secs % 86_400);
    // Howard Hinnant's civil_from_days, for days since 1970-01-01.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        rest / 3600,
        rest / 60 % 60,
        rest % 60
    )
}

#[cfg(test)]
mod tests {
    use super::utc_datetime;

    #[test]
    fn apply_times_are_written_as_binance_writes_them() {
        assert_eq!(utc_datetime(0), "1970-01-01 00:00:00");
        assert_eq!(utc_datetime(1_700_000_000_000), "2023-11-14 22:13:20");
        assert_eq!(utc_datetime(951_782_400_000), "2000-02-29 00:00:00");
    }
}
