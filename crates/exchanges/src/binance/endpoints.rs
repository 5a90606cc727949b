//! Binance's hosts and endpoints: where a path goes, what class of call it is, and the
//! request weight each costs.

use keygate_core::{ActionKind, Market};

use crate::Route;

/// The first path segments whose request weight Binance limits and reports apart: `/api`
/// (spot) and `/sapi` share a host, not a limit.
pub(super) const WEIGHT_POOLS: &[&str] = &["/api", "/sapi", "/fapi", "/dapi", "/eapi", "/papi"];

/// Binance's hosts as ccxt's `urls['api']` lays them out, each with the first path
/// segments it serves.
const HOSTS: &[(&str, &str, &[&str])] = &[
    (
        "api.binance.com",
        "https://api.binance.com",
        &["api", "sapi"],
    ),
    (
        "fapi.binance.com",
        "https://fapi.binance.com",
        &["fapi", "futures"],
    ),
    (
        "dapi.binance.com",
        "https://dapi.binance.com",
        &["dapi", "futures"],
    ),
    ("eapi.binance.com", "https://eapi.binance.com", &["eapi"]),
    ("papi.binance.com", "https://papi.binance.com", &["papi"]),
];

/// Where `path` goes. Two forms:
///
/// - `/<family>/…` (`/api/v3/order`, `/fapi/v1/order`): the host that serves the first
///   segment; `/futures/data/…`, served by both futures hosts, goes to USD-M;
/// - `/<host>/<family>/…` (`/dapi.binance.com/futures/data/…`): that host, which must be
///   one of Binance's and serve the family. It is what ccxt's URLs become when their
///   `https://` is replaced by the gateway's address, and leaves nothing ambiguous.
pub(super) fn route(path: &str) -> Option<Route<'_>> {
    let first = first_segment(path)?;
    if first.contains('.') {
        let (_, base, families) = HOSTS.iter().find(|(host, _, _)| *host == first)?;
        let rest = &path[1 + first.len()..];
        let family = first_segment(rest)?;
        return families
            .contains(&family)
            .then_some(Route { base, path: rest });
    }
    let (_, base, _) = HOSTS
        .iter()
        .find(|(_, _, families)| families.contains(&first))?;
    Some(Route { base, path })
}

/// The first segment of an absolute path.
fn first_segment(path: &str) -> Option<&str> {
    path.strip_prefix('/')?.split('/').next()
}

/// The public API of the market `path` trades on, where its prices are: the book ticker
/// (whose best ask is where a market buy starts filling, a last trade's price can be below
/// it, and above the best bid a sell fills at) and the depth of its book.
pub(super) fn market_api(path: &str) -> &'static str {
    if path.starts_with("/fapi/") {
        "/fapi/v1"
    } else if path.starts_with("/dapi/") {
        "/dapi/v1"
    } else {
        "/api/v3"
    }
}

/// The levels of the book a buy larger than the best ask is priced in: 100 costs a
/// request weight of 5 on spot and USD-M (a deeper book, 25 and 10).
pub(super) const DEPTH_LEVELS: u32 = 100;

/// What Binance's clock endpoints (spot's, still served under `/api/v1` too, USD-M's,
/// COIN-M's and options') answer, stating `now_ms`: `{"serverTime":…}`. They take no
/// parameters; a call with a query is left to the exchange to answer.
pub(super) fn clock_answer(method: &str, path: &str, query: &str, now_ms: u64) -> Option<Vec<u8>> {
    let asks_the_clock = method == "GET"
        && query.is_empty()
        && matches!(
            path,
            "/api/v1/time" | "/api/v3/time" | "/fapi/v1/time" | "/dapi/v1/time" | "/eapi/v1/time"
        );
    asks_the_clock.then(|| format!("{{\"serverTime\":{now_ms}}}").into_bytes())
}

/// The endpoint that reports the exchange's clock for `path`'s host.
pub(super) fn time_path(path: &str) -> &'static str {
    if path.starts_with("/fapi/") {
        "/fapi/v1/time"
    } else if path.starts_with("/dapi/") {
        "/dapi/v1/time"
    } else {
        "/api/v3/time"
    }
}

/// An upper estimate of a public call's weight, from Binance's documented weights (those
/// of spot, the higher, for the endpoints every market has): order books by their
/// `limit` (the highest when it does not read as a number), tickers of every symbol or
/// of a list, a price or best ask of one symbol (2), the exchange's whole description,
/// trade lists; 10 for the rest, which documents 1 to 5 for most. Names and values are read percent-decoded, as Binance
/// reads them.
pub(super) fn public_weight(path: &str, query: &str) -> u64 {
    let param = |name| query_param(query, name);
    let one_symbol = param("symbol").is_some() && param("symbols").is_none();
    match path.rsplit_once('/').map_or(path, |(_, last)| last) {
        "depth" => match param("limit").map(|l| l.parse::<u64>()) {
            Some(Ok(0..=100)) => 5,
            Some(Ok(101..=500)) | None => 25,
            Some(Ok(501..=1000)) => 50,
            Some(_) => 250,
        },
        "ticker" | "tradingDay" if !one_symbol => 200,
        "24hr" if !one_symbol => 80,
        "price" | "bookTicker" if !one_symbol => 5,
        // What prices an order, at most once a second per symbol: an estimate five times
        // too high would hold a client's pricing to a fifth of its share.
        "price" | "bookTicker" => 2,
        "exchangeInfo" => 20,
        "trades" | "historicalTrades" | "aggTrades" => 25,
        _ => 10,
    }
}

/// The value of the parameter `name` in `query`, both read percent-decoded as Binance
/// reads them (`+` a space); the first, should it be repeated.
fn query_param(query: &str, name: &str) -> Option<String> {
    let decoded = |text: &str| {
        percent_encoding::percent_decode_str(&text.replace('+', " "))
            .decode_utf8_lossy()
            .into_owned()
    };
    query
        .split('&')
        .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
        .find(|(key, _)| decoded(key) == name)
        .map(|(_, value)| decoded(value))
}

/// An upper estimate of a signed read's weight, from Binance's documented weights: spot's
/// REST API (`account` 20, `openOrders` 6 for one symbol and 80 for every symbol, the
/// order and trade histories 20, one order or order list 4, `rateLimit/order` 40), USD-M's
/// (`account`, `balance` and `positionRisk` 5, `openOrders` and `openAlgoOrders` 1 for
/// one symbol and 40 for every symbol, the order and trade histories 5, `income` 30, one
/// order 1, `forceOrders` 20 for one symbol and 50 for every symbol as portfolio margin's
/// twin documents it, the account-wide settings 30 as COIN-M's twin of
/// `positionSide/dual` documents it) and the wallet's (`asset/wallet/balance` 60, from
/// the `/sapi` IP pool; `spot/delist-schedule` 100). A read with no figure here (`myFilters`; USD-M's
/// `commissionRate`, `leverageBracket`…; most `/sapi` reads, which are documented at 1 to
/// 10) is reserved at 20, a conservative default. The gateway counts held-back calls at
/// these estimates (or at the exchange's report of the whole pool, where lower): should a
/// read weigh more than its figure here (Binance raised it), it counts short, and reads
/// are held to the caps by the pool's count only near the exchange's limit. A symbol is
/// read from the query alone: a signed read is a GET
/// (but for `/sapi` ones whose weight names none), and a GET carries no body.
pub(super) fn signed_read_weight(path: &str, query: &str) -> u64 {
    // Only where the weight depends on it: the decoding allocates.
    let one_symbol = || query_param(query, "symbol").is_some_and(|s| !s.is_empty());
    let Some((prefix, rest)) = split_version(path) else {
        return 20;
    };
    match (prefix, rest) {
        ("/api/v3", "openOrders") if one_symbol() => 6,
        ("/api/v3", "openOrders") => 80,
        ("/api/v3", "order" | "orderList" | "order/amendments") => 4,
        ("/api/v3", "openOrderList") => 6,
        ("/api/v3", "rateLimit/order" | "myFilters") => 40,
        ("/fapi/v2" | "/fapi/v3", "account" | "balance" | "positionRisk") => 5,
        ("/fapi/v1", "openOrders" | "openAlgoOrders") if one_symbol() => 1,
        ("/fapi/v1", "openOrders" | "openAlgoOrders") => 40,
        ("/fapi/v1", "forceOrders") if one_symbol() => 20,
        ("/fapi/v1", "forceOrders") => 50,
        ("/fapi/v1", "order" | "openOrder" | "algoOrder") => 1,
        ("/fapi/v1", "allOrders" | "allAlgoOrders" | "userTrades") => 5,
        ("/fapi/v1", "income" | "positionSide/dual" | "multiAssetsMargin" | "feeBurn") => 30,
        ("/fapi/v1", "convert/orderStatus") => 50,
        ("/sapi/v1", "asset/wallet/balance") => 60,
        ("/sapi/v1", "spot/delist-schedule") => 100,
        // Spot's `account`, `allOrders`, `myTrades`, `allOrderList`, `myPreventedMatches`
        // (by order), `myAllocations` and `account/commission` are documented at 20.
        _ => 20,
    }
}

/// An upper estimate of the weight of a signed request that is not a read on the address's
/// limit, from Binance's documented weights: a test order 20 (with
/// `computeCommissionRates`; 1 without), an amendment keeping priority 4, a USD-M batch
/// of orders 5, the USD-M countdown that cancels everything 10, a USD-M convert's quote
/// 50 and its acceptance 200, a USD-M order or its modification nothing (it counts on the
/// account's order limits only); 1 for the rest (spot's orders, cancels and order lists,
/// USD-M's cancels and settings; a `/sapi` withdrawal's, transfer's or convert's weight is
/// the account's, not the address's).
pub(super) fn order_weight(method: &str, path: &str) -> u64 {
    let Some((prefix, rest)) = split_version(path) else {
        return 1;
    };
    match (method, prefix, rest) {
        (_, "/api/v3", "order/test" | "sor/order/test") => 20,
        (_, "/api/v3", "order/amend/keepPriority") => 4,
        ("POST" | "PUT", "/fapi/v1", "batchOrders") => 5,
        ("POST" | "PUT", "/fapi/v1", "order") => 0,
        (_, "/fapi/v1", "countdownCancelAll") => 10,
        ("POST", "/fapi/v1", "convert/getQuote") => 50,
        ("POST", "/fapi/v1", "convert/acceptQuote") => 200,
        _ => 1,
    }
}

/// The class of `method path`, from the endpoint tables of NOTES §1.3. Anything not
/// listed is [`ActionKind::Unknown`].
pub(super) fn classify_endpoint(method: &str, path: &str) -> ActionKind {
    use ActionKind::*;
    let Some((prefix, rest)) = split_version(path) else {
        return Unknown;
    };
    match (method, prefix, rest) {
        // Spot market data.
        ("GET", "/api/v3", p) if SPOT_PUBLIC.contains(&p) => Public,
        ("GET", "/api/v1" | "/api/v3", "ping" | "time" | "exchangeInfo") => Public,
        // Spot account reads.
        ("GET", "/api/v3", p) if SPOT_READ.contains(&p) => Read,
        // Spot orders.
        ("POST", "/api/v3", p) if SPOT_TRADE_POST.contains(&p) => Trade,
        ("PUT", "/api/v3", "order/amend/keepPriority") => Trade,
        ("DELETE", "/api/v3", "order" | "openOrders" | "orderList") => Cancel,
        // Wallet.
        ("GET", "/sapi/v1", p) if SAPI_READ.contains(&p) => Read,
        // Reads Binance takes as POSTs: the funding wallet's and every wallet's assets
        // (ccxt's fetchBalance of type `funding`), and the small balances that could be
        // converted to BNB (python-binance's get_dust_assets; `asset/dust` converts them).
        ("POST", "/sapi/v1", "asset/get-funding-asset" | "asset/dust-btc")
        | ("POST", "/sapi/v3", "asset/getUserAsset") => Read,
        ("GET", "/sapi/v1", "system/status") => Public,
        ("POST", "/sapi/v1", "capital/withdraw/apply") => Withdraw,
        ("POST", "/sapi/v1", p) if SAPI_TRANSFER.contains(&p) || p.starts_with("convert/") => {
            Transfer
        }
        (_, "/sapi/v1" | "/sapi/v2", p)
            if p.contains("subAccountApi") || p.starts_with("broker/") =>
        {
            KeyManagement
        }
        (
            "POST",
            "/sapi/v1",
            "account/enableFastWithdrawSwitch"
            | "account/disableFastWithdrawSwitch"
            | "sub-account/virtualSubAccount",
        ) => KeyManagement,
        // USD-M and COIN-M futures.
        ("GET", "/fapi/v1" | "/dapi/v1", p) if FUTURES_PUBLIC.contains(&p) => Public,
        ("GET", "/futures/data", p) if FUTURES_DATA_PUBLIC.contains(&p) => Public,
        ("GET", "/fapi/v2", "ticker/price") => Public,
        // Options and portfolio margin: market data only; their private calls are unknown.
        ("GET", "/eapi/v1", p) if OPTIONS_PUBLIC.contains(&p) => Public,
        ("GET", "/papi/v1", "ping") => Public,
        ("GET", "/fapi/v2" | "/fapi/v3", "account" | "balance" | "positionRisk") => Read,
        ("GET", "/fapi/v1", p) if FAPI_READ.contains(&p) => Read,
        ("POST" | "PUT", "/fapi/v1", "order" | "batchOrders") => Trade,
        ("POST", "/fapi/v1", p)
            if FAPI_TRADE_POST.contains(&p) || FAPI_TRADE_SETTINGS.contains(&p) =>
        {
            Trade
        }
        // Converting one asset into another moves funds, as the wallet's convert does.
        ("POST", "/fapi/v1", "convert/getQuote" | "convert/acceptQuote") => Transfer,
        (
            "DELETE",
            "/fapi/v1",
            "order" | "batchOrders" | "allOpenOrders" | "algoOrder" | "algoOpenOrders",
        ) => Cancel,
        _ => Unknown,
    }
}

/// Whether `method path` is a call that needs the trade scope, places no order and adds
/// nothing to what orders fill: the USD-M settings ([`FAPI_TRADE_SETTINGS`]), and spot's
/// amendment, which can only lower an open order's quantity (Binance refuses a `newQty`
/// that is not below it).
pub(super) fn places_no_order(method: &str, path: &str) -> bool {
    match split_version(path) {
        Some(("/fapi/v1", rest)) => method == "POST" && FAPI_TRADE_SETTINGS.contains(&rest),
        Some(("/api/v3", "order/amend/keepPriority")) => method == "PUT",
        _ => false,
    }
}

/// The market a path's symbol is in: spot for the spot and wallet APIs, USD-M for
/// `/fapi`, COIN-M for `/dapi`; `None` for hosts whose symbols keygate does not tell apart.
pub(super) fn market(path: &str) -> Option<Market> {
    let api = path.split('/').nth(1)?;
    match api {
        "api" | "sapi" => Some(Market::Spot),
        "fapi" => Some(Market::Usdm),
        "dapi" => Some(Market::Coinm),
        _ => None,
    }
}

/// Splits `/api/v3/order` into (`/api/v3`, `order`); `/futures/data/x` into
/// (`/futures/data`, `x`).
fn split_version(path: &str) -> Option<(&str, &str)> {
    let mut slashes = path.match_indices('/').skip(2);
    let (i, _) = slashes.next()?;
    let rest = &path[i + 1..];
    (!rest.is_empty()).then_some((&path[..i], rest))
}

const SPOT_PUBLIC: &[&str] = &[
    "ping",
    "time",
    "exchangeInfo",
    "depth",
    "trades",
    "historicalTrades",
    "aggTrades",
    "klines",
    "uiKlines",
    "avgPrice",
    "ticker/24hr",
    "ticker/tradingDay",
    "ticker/price",
    "ticker/bookTicker",
    "ticker",
];

const SPOT_READ: &[&str] = &[
    "account",
    "order",
    "openOrders",
    "allOrders",
    "myTrades",
    "orderList",
    "allOrderList",
    "openOrderList",
    "rateLimit/order",
    "myPreventedMatches",
    "myAllocations",
    "account/commission",
    "order/amendments",
    "myFilters",
];

const SPOT_TRADE_POST: &[&str] = &[
    "order",
    "order/test",
    "order/cancelReplace",
    "orderList/oco",
    "orderList/oto",
    "orderList/otoco",
    "orderList/opo",
    "orderList/opoco",
    "order/oco",
    "sor/order",
    "sor/order/test",
];

const SAPI_READ: &[&str] = &[
    "account/apiRestrictions",
    "account/status",
    "account/apiTradingStatus",
    "capital/config/getall",
    "capital/deposit/hisrec",
    "capital/withdraw/history",
    "capital/deposit/address",
    "asset/assetDetail",
    "asset/tradeFee",
    "margin/allPairs",
    "margin/isolated/allPairs",
    // History of the account's own wallet moves, read by ccxt's fetchTransfers,
    // fetchMyDustTrades and fetchConvertTradeHistory; the balance of each wallet. A POST
    // to `asset/transfer` makes a move, and is a transfer.
    "asset/transfer",
    "asset/dribblet",
    "convert/tradeFlow",
    "asset/wallet/balance",
    // Every deposit address of a coin, the account's VIP level, and the symbols about
    // to be delisted (which freqtrade reads, signed as ccxt signs every `/sapi` call).
    "capital/deposit/address/list",
    "account/info",
    "spot/delist-schedule",
    // The withdrawal addresses saved in the account's address book, and the dividends
    // (airdrops, staking rewards) paid into it.
    "capital/withdraw/address/list",
    "asset/assetDividend",
];

const SAPI_TRANSFER: &[&str] = &[
    "asset/transfer",
    "asset/dust",
    "asset/convert-transfer",
    "sub-account/universalTransfer",
    "sub-account/transfer/subToSub",
    "sub-account/transfer/subToMaster",
    "sub-account/futures/transfer",
    "sub-account/futures/internalTransfer",
    "sub-account/margin/transfer",
    "futures/transfer",
    "margin/transfer",
    "margin/isolated/transfer",
    "managed-subaccount/deposit",
    // Named a withdrawal, but it moves `asset` from a managed sub-account to the master
    // account that calls it: it takes no address (so no `coin`, `address` or `network` for
    // a withdrawal's checks to be misled by) and the funds stay the owner's.
    "managed-subaccount/withdraw",
];

/// The futures hosts' statistics (`/futures/data/…`), USD-M's and COIN-M's, as ccxt lists
/// them: market data, no key.
const FUTURES_DATA_PUBLIC: &[&str] = &[
    "delivery-price",
    "openInterestHist",
    "topLongShortAccountRatio",
    "topLongShortPositionRatio",
    "globalLongShortAccountRatio",
    "takerlongshortRatio",
    "takerBuySellVol",
    "basis",
];

const FUTURES_PUBLIC: &[&str] = &[
    "ping",
    "time",
    "exchangeInfo",
    "depth",
    "trades",
    "historicalTrades",
    "aggTrades",
    "klines",
    "continuousKlines",
    "indexPriceKlines",
    "markPriceKlines",
    "premiumIndexKlines",
    "premiumIndex",
    "fundingRate",
    "fundingInfo",
    "ticker/24hr",
    "ticker/price",
    "ticker/bookTicker",
    "openInterest",
    // An index's constituents and composition, the multi-assets mode's asset index, the
    // insurance fund's balance.
    "constituents",
    "indexInfo",
    "assetIndex",
    "insuranceBalance",
];

const OPTIONS_PUBLIC: &[&str] = &[
    "ping",
    "time",
    "exchangeInfo",
    "depth",
    "trades",
    "historicalTrades",
    "klines",
    "mark",
    "ticker",
    "index",
    "exerciseHistory",
    "openInterest",
    "blockTrades",
];

const FAPI_READ: &[&str] = &[
    "openOrders",
    "openOrder",
    "allOrders",
    "order",
    "userTrades",
    "income",
    "accountConfig",
    "apiTradingStatus",
    "commissionRate",
    "symbolConfig",
    "leverageBracket",
    "positionSide/dual",
    "multiAssetsMargin",
    // Conditional orders (Binance's algo service): what ccxt's fetchOrder,
    // fetchOpenOrders and fetchOrders call for them.
    "algoOrder",
    "openAlgoOrders",
    "allAlgoOrders",
    // The account's liquidations (ccxt's fetchMyLiquidations), margin changes
    // (fetchMarginAdjustments), orders' modifications, auto-deleverage ranks, its order
    // rate limits, whether it pays fees in BNB, and a futures conversion's status. Not
    // the `…/asyn` downloads of whole histories, which weigh 1000 each: three of them
    // would spend the address's weight for the minute and hold back its orders.
    "forceOrders",
    "positionMargin/history",
    "orderAmendment",
    "adlQuantile",
    "rateLimit/order",
    "feeBurn",
    "convert/orderStatus",
    // A portfolio-margin account's margin of one asset.
    "pmAccountInfo",
];

const FAPI_TRADE_POST: &[&str] = &["algoOrder", "order/test"];

/// The USD-M settings of the whole account rather than of one symbol: position mode,
/// multi-assets margin, paying fees in BNB.
pub(super) const FAPI_ACCOUNT_SETTINGS: &[&str] = &[
    "/fapi/v1/positionSide/dual",
    "/fapi/v1/multiAssetsMargin",
    "/fapi/v1/feeBurn",
];

/// USD-M calls that need the trade scope and place no order: the account's trading
/// settings, and the countdown that cancels every open order of a symbol (a dead man's
/// switch). ccxt's `setLeverage`, `setMarginMode`, `setPositionMode`, `addMargin`.
const FAPI_TRADE_SETTINGS: &[&str] = &[
    "countdownCancelAll",
    "leverage",
    "marginType",
    "positionMargin",
    "positionSide/dual",
    "multiAssetsMargin",
    "feeBurn",
];
