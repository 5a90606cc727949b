//! The fixed market list, reference prices and the public market-data documents.

use rust_decimal::prelude::ToPrimitive as _;
use rust_decimal::Decimal;
use serde_json::{json, Value};

/// Which Binance product a market belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Product {
    /// Spot (`/api/v3`).
    Spot,
    /// USD-M perpetual futures (`/fapi`).
    UsdM,
}

impl Product {
    /// The highest price an order may name: the `maxPrice` of `PRICE_FILTER`.
    pub(crate) fn max_price(self) -> Decimal {
        match self {
            Product::Spot => dec(1_000_000, 0),
            Product::UsdM => dec(4_529_764, 0),
        }
    }

    /// The largest quantity of a limit order (`LOT_SIZE`) or of a market order
    /// (`MARKET_LOT_SIZE`): their `maxQty`.
    pub(crate) fn max_quantity(self, market_order: bool) -> Decimal {
        match (self, market_order) {
            (Product::Spot, _) => dec(9_000_000, 0),
            (Product::UsdM, false) => dec(1_000, 0),
            (Product::UsdM, true) => dec(120, 0),
        }
    }

    /// How far from the market a limit order's price may be, as `exchangeInfo` announces
    /// it: spot's `PERCENT_PRICE_BY_SIDE` and USD-M's `PERCENT_PRICE`.
    pub(crate) fn price_band(self) -> PriceBand {
        match self {
            Product::Spot => {
                let both = Multipliers {
                    down: Some(SPOT_MULTIPLIER_DOWN),
                    up: Some(SPOT_MULTIPLIER_UP),
                };
                PriceBand {
                    bid: both,
                    ask: both,
                }
            }
            // Binance's USD-M filter has one bound a side: "BUY: price <= markPrice *
            // multiplierUp; SELL: price >= markPrice * multiplierDown" (Common Definition,
            // Filters). A buy far under the mark, or a sell far over it, is taken.
            Product::UsdM => PriceBand {
                bid: Multipliers {
                    down: None,
                    up: Some(USDM_MULTIPLIER_UP),
                },
                ask: Multipliers {
                    down: Some(USDM_MULTIPLIER_DOWN),
                    up: None,
                },
            },
        }
    }
}

/// Spot's `PERCENT_PRICE_BY_SIDE`, the same on both sides as on Binance's BTCUSDT: a price
/// from a fifth of the average price to five times it.
const SPOT_MULTIPLIER_DOWN: Decimal = dec(2, 1);
const SPOT_MULTIPLIER_UP: Decimal = dec(5, 0);
/// The minutes spot's average price is taken over (`avgPriceMins`): announced only, as
/// the simulator's price never moves and its average is the reference price.
const SPOT_AVG_PRICE_MINS: u32 = 5;
/// USD-M's `PERCENT_PRICE`, as on Binance's BTCUSDT perpetual: a buy at most 5% over the
/// mark price, a sell at most 5% under it.
const USDM_MULTIPLIER_UP: Decimal = dec(10_500, 4);
const USDM_MULTIPLIER_DOWN: Decimal = dec(9_500, 4);
/// The decimals of USD-M's multipliers (`multiplierDecimal`), which Binance says is not
/// used in the check.
const USDM_MULTIPLIER_DECIMAL: u32 = 4;

/// The multipliers of the reference price between which a limit order's price must be on
/// each side (see [`Product::price_band`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PriceBand {
    /// For a buy.
    pub(crate) bid: Multipliers,
    /// For a sell.
    pub(crate) ask: Multipliers,
}

/// A floor and a cap, as multipliers of the reference price; `None` where there is none.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Multipliers {
    /// The lowest price is the reference price times this.
    pub(crate) down: Option<Decimal>,
    /// The highest price is the reference price times this.
    pub(crate) up: Option<Decimal>,
}

/// One tradable symbol with its filters and fixed reference price.
#[derive(Debug)]
pub(crate) struct Market {
    pub(crate) symbol: &'static str,
    pub(crate) base: &'static str,
    pub(crate) quote: &'static str,
    pub(crate) product: Product,
    /// The price every order fills at.
    pub(crate) price: Decimal,
    pub(crate) tick_size: Decimal,
    pub(crate) step_size: Decimal,
    pub(crate) min_qty: Decimal,
    pub(crate) min_notional: Decimal,
    /// The most decimals a price may have: USD-M's `pricePrecision`, which can be finer
    /// than the tick (BTCUSDT: 2 decimals, tick 0.1), so that a price can be precise
    /// enough yet off the tick. Spot checks the tick alone.
    pub(crate) price_precision: u32,
    /// The most decimals a quantity may have: USD-M's `quantityPrecision`.
    pub(crate) quantity_precision: u32,
}

/// Builds a decimal from a mantissa and scale (`dec(1, 2)` is 0.01).
const fn dec(mantissa: i64, scale: u32) -> Decimal {
    Decimal::from_parts(
        mantissa.unsigned_abs() as u32,
        (mantissa.unsigned_abs() >> 32) as u32,
        0,
        mantissa < 0,
        scale,
    )
}

/// Every market the simulator knows, spot first.
pub(crate) static MARKETS: &[Market] = &[
    spot(
        "BTCUSDT",
        "BTC",
        "USDT",
        dec(60_000, 0),
        dec(1, 2),
        dec(1, 5),
        dec(5, 0),
    ),
    spot(
        "ETHUSDT",
        "ETH",
        "USDT",
        dec(3_000, 0),
        dec(1, 2),
        dec(1, 4),
        dec(5, 0),
    ),
    spot(
        "BNBUSDT",
        "BNB",
        "USDT",
        dec(600, 0),
        dec(1, 2),
        dec(1, 3),
        dec(5, 0),
    ),
    spot(
        "DOGEUSDT",
        "DOGE",
        "USDT",
        dec(1, 1),
        dec(1, 5),
        dec(1, 0),
        dec(1, 0),
    ),
    spot(
        "ETHBTC",
        "ETH",
        "BTC",
        dec(5, 2),
        dec(1, 5),
        dec(1, 4),
        dec(1, 4),
    ),
    Market {
        symbol: "BTCUSDT",
        base: "BTC",
        quote: "USDT",
        product: Product::UsdM,
        price: dec(60_000, 0),
        tick_size: dec(1, 1),
        step_size: dec(1, 3),
        min_qty: dec(1, 3),
        min_notional: dec(100, 0),
        price_precision: 2,
        quantity_precision: 3,
    },
    Market {
        symbol: "ETHUSDT",
        base: "ETH",
        quote: "USDT",
        product: Product::UsdM,
        price: dec(3_000, 0),
        tick_size: dec(1, 2),
        step_size: dec(1, 3),
        min_qty: dec(1, 3),
        min_notional: dec(20, 0),
        price_precision: 2,
        quantity_precision: 3,
    },
];

const fn spot(
    symbol: &'static str,
    base: &'static str,
    quote: &'static str,
    price: Decimal,
    tick_size: Decimal,
    step_size: Decimal,
    min_notional: Decimal,
) -> Market {
    Market {
        symbol,
        base,
        quote,
        product: Product::Spot,
        price,
        tick_size,
        step_size,
        min_qty: step_size,
        min_notional,
        // Spot's asset precision; spot refuses an off-tick or off-step value by its filter.
        price_precision: 8,
        quantity_precision: 8,
    }
}

/// Assets with a spot balance; every account starts with these amounts.
pub(crate) fn starting_spot_balances() -> Vec<(&'static str, Decimal)> {
    vec![
        ("BTC", dec(10, 0)),
        ("ETH", dec(100, 0)),
        ("USDT", dec(1_000_000, 0)),
        ("BNB", dec(1_000, 0)),
        ("DOGE", dec(0, 0)),
        ("XRP", dec(10_000, 0)),
    ]
}

/// Starting USD-M futures wallet.
pub(crate) fn starting_futures_balances() -> Vec<(&'static str, Decimal)> {
    vec![("USDT", dec(100_000, 0))]
}

/// Finds a market by product and symbol.
pub(crate) fn find(product: Product, symbol: &str) -> Option<&'static Market> {
    MARKETS
        .iter()
        .find(|m| m.product == product && m.symbol == symbol)
}

/// Markets of one product.
pub(crate) fn of(product: Product) -> impl Iterator<Item = &'static Market> {
    MARKETS.iter().filter(move |m| m.product == product)
}

/// Formats a decimal the way Binance does: a fixed number of places, as a string.
pub(crate) fn fmt(value: Decimal, places: u32) -> String {
    let mut rounded = value.round_dp(places);
    rounded.rescale(places);
    rounded.to_string()
}

/// Number of decimal places in a value such as `0.001`, trailing zeros left out.
pub(crate) fn places(value: Decimal) -> u32 {
    value.normalize().scale()
}

/// The `rateLimits` of spot's `exchangeInfo`, announcing `weight_limit`, the
/// request-weight limit per minute in force for its API family, and `orders_limit`, the
/// orders of 10 seconds in force.
fn rate_limits(weight_limit: u64, orders_limit: u64) -> Value {
    json!([
        {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": weight_limit},
        {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": orders_limit},
        {"rateLimitType": "ORDERS", "interval": "DAY", "intervalNum": 1, "limit": 200000},
        {"rateLimitType": "RAW_REQUESTS", "interval": "MINUTE", "intervalNum": 5, "limit": 61000}
    ])
}

/// The `rateLimits` of a futures `exchangeInfo`, as USD-M's announces them: the request
/// weight in force per minute, and orders per minute and per 10 seconds.
fn futures_rate_limits(weight_limit: u64) -> Value {
    json!([
        {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": weight_limit},
        {"rateLimitType": "ORDERS", "interval": "MINUTE", "intervalNum": 1, "limit": 1200},
        {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 300}
    ])
}

/// `GET /api/v3/exchangeInfo`, announcing `weight_limit` per minute and `orders_limit`
/// orders per 10 seconds.
pub(crate) fn spot_exchange_info(server_time: u64, weight_limit: u64, orders_limit: u64) -> Value {
    let band = Product::Spot.price_band();
    // Written as Binance writes them ("5", "0.2"); spot has a bound of each kind a side.
    let multiplier = |m: Option<Decimal>| m.unwrap_or_default().normalize().to_string();
    let symbols: Vec<Value> = of(Product::Spot)
        .map(|m| {
            json!({
                "symbol": m.symbol,
                "status": "TRADING",
                "baseAsset": m.base,
                "baseAssetPrecision": 8,
                "quoteAsset": m.quote,
                "quotePrecision": 8,
                "quoteAssetPrecision": 8,
                "baseCommissionPrecision": 8,
                "quoteCommissionPrecision": 8,
                // Only what the simulator implements: stop and take-profit orders (which
                // trigger when a test says so) and order lists (OCO, OTO, OPO), no amend
                // (keepPriority).
                "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET", "STOP_LOSS", "STOP_LOSS_LIMIT", "TAKE_PROFIT", "TAKE_PROFIT_LIMIT"],
                // Nor icebergs (an order with `icebergQty` is refused) or margin trading.
                "icebergAllowed": false,
                "ocoAllowed": true,
                "otoAllowed": true,
                "opoAllowed": true,
                "quoteOrderQtyMarketAllowed": true,
                "allowTrailingStop": true,
                "cancelReplaceAllowed": true,
                "amendAllowed": false,
                "isSpotTradingAllowed": true,
                "isMarginTradingAllowed": false,
                "filters": [
                    {"filterType": "PRICE_FILTER", "minPrice": fmt(m.tick_size, 8), "maxPrice": fmt(Product::Spot.max_price(), 8), "tickSize": fmt(m.tick_size, 8)},
                    {"filterType": "LOT_SIZE", "minQty": fmt(m.min_qty, 8), "maxQty": fmt(Product::Spot.max_quantity(false), 8), "stepSize": fmt(m.step_size, 8)},
                    {"filterType": "MARKET_LOT_SIZE", "minQty": "0.00000000", "maxQty": fmt(Product::Spot.max_quantity(true), 8), "stepSize": "0.00000000"},
                    {"filterType": "TRAILING_DELTA", "minTrailingAboveDelta": 10, "maxTrailingAboveDelta": 2000, "minTrailingBelowDelta": 10, "maxTrailingBelowDelta": 2000},
                    {"filterType": "PERCENT_PRICE_BY_SIDE", "bidMultiplierUp": multiplier(band.bid.up), "bidMultiplierDown": multiplier(band.bid.down), "askMultiplierUp": multiplier(band.ask.up), "askMultiplierDown": multiplier(band.ask.down), "avgPriceMins": SPOT_AVG_PRICE_MINS},
                    {"filterType": "NOTIONAL", "minNotional": fmt(m.min_notional, 8), "applyMinToMarket": true, "maxNotional": "9000000.00000000", "applyMaxToMarket": false, "avgPriceMins": 5},
                    {"filterType": "MAX_NUM_ORDERS", "maxNumOrders": 200},
                    {"filterType": "MAX_NUM_ALGO_ORDERS", "maxNumAlgoOrders": 5}
                ],
                "permissions": [],
                "permissionSets": [["SPOT"]],
                "defaultSelfTradePreventionMode": "EXPIRE_MAKER",
                "allowedSelfTradePreventionModes": ["NONE", "EXPIRE_TAKER", "EXPIRE_MAKER", "EXPIRE_BOTH"]
            })
        })
        .collect();
    json!({
        "timezone": "UTC",
        "serverTime": server_time,
        "rateLimits": rate_limits(weight_limit, orders_limit),
        "exchangeFilters": [],
        "symbols": symbols
    })
}

/// `GET /fapi/v1/exchangeInfo`, announcing `weight_limit` per minute.
pub(crate) fn usdm_exchange_info(server_time: u64, weight_limit: u64) -> Value {
    let symbols: Vec<Value> = of(Product::UsdM)
        .map(|m| {
            json!({
                "symbol": m.symbol,
                "pair": m.symbol,
                "contractType": "PERPETUAL",
                "deliveryDate": 4_133_404_800_000_u64,
                "onboardDate": 1_569_398_400_000_u64,
                "status": "TRADING",
                "maintMarginPercent": "2.5000",
                "requiredMarginPercent": "5.0000",
                "baseAsset": m.base,
                "quoteAsset": m.quote,
                "marginAsset": m.quote,
                "pricePrecision": m.price_precision,
                "quantityPrecision": m.quantity_precision,
                "baseAssetPrecision": 8,
                "quotePrecision": 8,
                "underlyingType": "COIN",
                "underlyingSubType": ["PoW"],
                "settlePlan": 0,
                "triggerProtect": "0.0500",
                "liquidationFee": "0.012500",
                "marketTakeBound": "0.05",
                "maxMoveOrderLimit": 10000,
                "filters": [
                    {"filterType": "PRICE_FILTER", "minPrice": m.tick_size.to_string(), "maxPrice": Product::UsdM.max_price().to_string(), "tickSize": m.tick_size.to_string()},
                    {"filterType": "LOT_SIZE", "minQty": m.min_qty.to_string(), "maxQty": Product::UsdM.max_quantity(false).to_string(), "stepSize": m.step_size.to_string()},
                    {"filterType": "MARKET_LOT_SIZE", "minQty": m.min_qty.to_string(), "maxQty": Product::UsdM.max_quantity(true).to_string(), "stepSize": m.step_size.to_string()},
                    {"filterType": "MAX_NUM_ORDERS", "limit": 200},
                    {"filterType": "MAX_NUM_ALGO_ORDERS", "limit": 10},
                    {"filterType": "MIN_NOTIONAL", "notional": m.min_notional.to_string()},
                    {"filterType": "PERCENT_PRICE", "multiplierUp": fmt(USDM_MULTIPLIER_UP, USDM_MULTIPLIER_DECIMAL), "multiplierDown": fmt(USDM_MULTIPLIER_DOWN, USDM_MULTIPLIER_DECIMAL), "multiplierDecimal": USDM_MULTIPLIER_DECIMAL.to_string()}
                ],
                // Only what the simulator implements: no trailing stops, no GTD.
                "orderTypes": ["LIMIT", "MARKET", "STOP", "STOP_MARKET", "TAKE_PROFIT", "TAKE_PROFIT_MARKET"],
                "timeInForce": ["GTC", "IOC", "FOK", "GTX"],
                "permissionSets": ["GRID", "COPY"]
            })
        })
        .collect();
    json!({
        "timezone": "UTC",
        "serverTime": server_time,
        "futuresType": "U_MARGINED",
        "rateLimits": futures_rate_limits(weight_limit),
        "exchangeFilters": [],
        "assets": [{"asset": "USDT", "marginAvailable": true, "autoAssetExchange": "-10000"}],
        "symbols": symbols
    })
}

/// `GET /dapi/v1/exchangeInfo`, announcing `weight_limit` per minute: COIN-M is not
/// simulated, so the symbol list is empty.
pub(crate) fn coinm_exchange_info(server_time: u64, weight_limit: u64) -> Value {
    json!({
        "timezone": "UTC",
        "serverTime": server_time,
        "rateLimits": futures_rate_limits(weight_limit),
        "exchangeFilters": [],
        "symbols": []
    })
}

/// `GET /api/v3/ticker/24hr` or `GET /fapi/v1/ticker/24hr` for one market. USD-M's has
/// no previous close and no best bid or ask, and writes prices and quantities to the
/// symbol's precisions (found by review: it was spot's, so a client reading the bid from
/// it passed here and found none on Binance).
pub(crate) fn ticker_24hr(m: &Market, now: u64) -> Value {
    let (prices, quantities) = match m.product {
        Product::Spot => (8, 8),
        Product::UsdM => (m.price_precision, m.quantity_precision),
    };
    let price = fmt(m.price, prices);
    let mut ticker = json!({
        "symbol": m.symbol,
        "priceChange": fmt(Decimal::ZERO, prices),
        "priceChangePercent": "0.000",
        "weightedAvgPrice": price,
        "lastPrice": price,
        "lastQty": fmt(m.min_qty, quantities),
        "openPrice": price,
        "highPrice": price,
        "lowPrice": price,
        "volume": fmt(Decimal::from(TRADES_A_DAY), quantities),
        "quoteVolume": fmt(m.price * Decimal::from(TRADES_A_DAY), prices),
        "openTime": now.saturating_sub(86_400_000),
        "closeTime": now,
        "firstId": 1,
        "lastId": TRADES_A_DAY,
        "count": TRADES_A_DAY
    });
    if m.product == Product::Spot {
        ticker["prevClosePrice"] = json!(price);
        ticker["bidPrice"] = json!(fmt(best_bid(m), 8));
        ticker["bidQty"] = json!("1.00000000");
        ticker["askPrice"] = json!(fmt(best_ask(m), 8));
        ticker["askQty"] = json!("1.00000000");
    }
    ticker
}

/// The prices of the book's first `limit` levels on `side`, best first: one tick apart
/// from the reference price outwards, bids only while the price is above zero (ETHBTC's
/// 0.05 at a tick of 0.00001 has 4999 bids).
fn levels(m: &Market, side: BookSide, limit: usize) -> impl Iterator<Item = Decimal> + '_ {
    (1..=limit).map_while(move |i| {
        let offset = m.tick_size * Decimal::from(i);
        match side {
            BookSide::Bids => Some(m.price - offset).filter(|p| *p > Decimal::ZERO),
            BookSide::Asks => Some(m.price + offset),
        }
    })
}

/// A side of the published book.
#[derive(Clone, Copy)]
enum BookSide {
    Bids,
    Asks,
}

/// The best ask of the book the simulator publishes (spot's and USD-M's depth and book
/// tickers): one tick over the reference price. A buy takes at it or above, and fills at it.
pub(crate) fn best_ask(m: &Market) -> Decimal {
    m.price + m.tick_size
}

/// The best bid of the book the simulator publishes: one tick under the reference price.
/// A sell takes at it or below, and fills at it.
pub(crate) fn best_bid(m: &Market) -> Decimal {
    m.price - m.tick_size
}

/// `GET /api/v3/depth`: a synthetic book of `limit` levels around the reference price.
pub(crate) fn depth(m: &Market, limit: usize) -> Value {
    let side = |side| {
        levels(m, side, limit)
            .map(|price| json!([fmt(price, 8), "1.00000000"]))
            .collect::<Vec<_>>()
    };
    json!({
        "lastUpdateId": 1_000_000,
        "bids": side(BookSide::Bids),
        "asks": side(BookSide::Asks)
    })
}

/// `GET /fapi/v1/depth`: as [`depth`], in USD-M's shape (the message and transaction
/// times `E` and `T`; prices and quantities to the symbol's precisions).
pub(crate) fn futures_depth(m: &Market, limit: usize, now: u64) -> Value {
    let side = |side| {
        levels(m, side, limit)
            .map(|price| {
                json!([
                    fmt(price, m.price_precision),
                    fmt(Decimal::ONE, m.quantity_precision)
                ])
            })
            .collect::<Vec<_>>()
    };
    json!({
        "lastUpdateId": 1_000_000,
        "E": now,
        "T": now,
        "bids": side(BookSide::Bids),
        "asks": side(BookSide::Asks)
    })
}

/// `GET /fapi/v1/ticker/bookTicker` for one market: the best levels of [`futures_depth`].
pub(crate) fn futures_book_ticker(m: &Market, now: u64) -> Value {
    json!({
        "symbol": m.symbol,
        "bidPrice": fmt(best_bid(m), m.price_precision),
        "bidQty": fmt(Decimal::ONE, m.quantity_precision),
        "askPrice": fmt(best_ask(m), m.price_precision),
        "askQty": fmt(Decimal::ONE, m.quantity_precision),
        "time": now,
        "lastUpdateId": 1_000_000
    })
}

/// Binance's USD-M funding interval: funding is settled at 00:00, 08:00 and 16:00 UTC.
const FUNDING_INTERVAL_MS: u64 = 8 * 3600 * 1000;
/// The funding rate, when the premium is nil: Binance's interest rate of 0.01% per
/// funding interval. The simulator's mark price is its index price, so this is the rate.
const FUNDING_RATE: &str = "0.00010000";

/// `GET /fapi/v1/premiumIndex` for one market: mark price, index price and funding.
/// Prices never move, so the mark price is the index price and the reference price, the
/// premium is nil and the funding rate is the interest rate alone.
pub(crate) fn premium_index(m: &Market, now: u64) -> Value {
    let price = fmt(m.price, 8);
    json!({
        "symbol": m.symbol,
        "markPrice": price,
        "indexPrice": price,
        "estimatedSettlePrice": price,
        "lastFundingRate": FUNDING_RATE,
        "interestRate": FUNDING_RATE,
        "nextFundingTime": (now / FUNDING_INTERVAL_MS + 1) * FUNDING_INTERVAL_MS,
        "time": now
    })
}

/// The funding times `GET /fapi/v1/fundingRate` answers for one symbol, in ascending
/// order: those on the 8-hour schedule within `start` and `end` (inclusive) and not
/// after `now`; the first `limit` of them from `start` when it is sent, else the last
/// `limit` up to `end` (or now). Prices never move, so funding has always been settled
/// at the same rate, however far back a client asks.
pub(crate) fn funding_times(
    start: Option<u64>,
    end: Option<u64>,
    limit: usize,
    now: u64,
) -> Vec<u64> {
    let upper = end.map_or(now, |e| e.min(now));
    let count = u64::try_from(limit).unwrap_or(u64::MAX);
    match start {
        Some(start) => {
            let first = start.div_ceil(FUNDING_INTERVAL_MS);
            // Times past the last a u64 holds are none (found by review: a startTime
            // near u64::MAX overflowed).
            (first..)
                .map_while(|k| k.checked_mul(FUNDING_INTERVAL_MS))
                .take_while(|t| *t <= upper)
                .take(limit)
                .collect()
        }
        None => {
            let last = upper / FUNDING_INTERVAL_MS;
            let first = (last + 1).saturating_sub(count);
            (first..=last).map(|k| k * FUNDING_INTERVAL_MS).collect()
        }
    }
}

/// One funding of `GET /fapi/v1/fundingRate`: the rate and mark price `premiumIndex`
/// reports, settled at `time`.
pub(crate) fn funding(m: &Market, time: u64) -> Value {
    json!({
        "symbol": m.symbol,
        "fundingRate": FUNDING_RATE,
        "fundingTime": time,
        "markPrice": fmt(m.price, 8)
    })
}

/// A kline interval, as `GET /api/v3/klines` and `GET /fapi/v1/klines` read `interval`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Interval {
    /// A fixed length; candles open at `offset_ms` plus a whole number of lengths since
    /// the epoch (weeks open on Monday, 1970-01-05, 4 days after it).
    Fixed { len_ms: u64, offset_ms: u64 },
    /// A calendar month (`1M`), opening on the first at 00:00 UTC.
    Month,
}

impl Interval {
    /// Reads `interval`: `1s` (spot only), `1m`, `3m`, `5m`, `15m`, `30m`, `1h`, `2h`,
    /// `4h`, `6h`, `8h`, `12h`, `1d`, `3d`, `1w`, `1M`.
    pub(crate) fn parse(value: &str, product: Product) -> Option<Interval> {
        const MINUTE: u64 = 60_000;
        const HOUR: u64 = 60 * MINUTE;
        const DAY: u64 = 24 * HOUR;
        let len_ms = match value {
            "1s" if product == Product::Spot => 1000,
            "1m" => MINUTE,
            "3m" => 3 * MINUTE,
            "5m" => 5 * MINUTE,
            "15m" => 15 * MINUTE,
            "30m" => 30 * MINUTE,
            "1h" => HOUR,
            "2h" => 2 * HOUR,
            "4h" => 4 * HOUR,
            "6h" => 6 * HOUR,
            "8h" => 8 * HOUR,
            "12h" => 12 * HOUR,
            "1d" => DAY,
            "3d" => 3 * DAY,
            "1w" => {
                return Some(Interval::Fixed {
                    len_ms: 7 * DAY,
                    offset_ms: 4 * DAY,
                })
            }
            "1M" => return Some(Interval::Month),
            _ => return None,
        };
        Some(Interval::Fixed {
            len_ms,
            offset_ms: 0,
        })
    }

    /// The open time of the candle that holds `t`.
    fn open_at(self, t: u64) -> u64 {
        match self {
            Interval::Fixed { len_ms, offset_ms } => {
                match t.checked_sub(offset_ms) {
                    Some(since) => since / len_ms * len_ms + offset_ms,
                    // Before the first whole week: the epoch.
                    None => 0,
                }
            }
            Interval::Month => month_start(month_of(t)),
        }
    }

    /// The open time of the candle after the one that opens at `open`; `u64::MAX` past
    /// the last time a u64 holds (found by review: a startTime near it overflowed), which
    /// is after any `end` a request can give.
    fn next(self, open: u64) -> u64 {
        match self {
            Interval::Fixed { len_ms, .. } => open.saturating_add(len_ms),
            Interval::Month => month_start(month_of(open) + 1),
        }
    }

    /// The open time of the candle before the one that opens at `open`, if there is one.
    fn previous(self, open: u64) -> Option<u64> {
        match self {
            Interval::Fixed { len_ms, .. } => open.checked_sub(len_ms),
            Interval::Month => (month_of(open) > 0).then(|| month_start(month_of(open) - 1)),
        }
    }
}

/// Months since January 1970 of the time `t` (ms since the epoch).
fn month_of(t: u64) -> u64 {
    let days = i64::try_from(t / 86_400_000).unwrap_or(i64::MAX);
    // Howard Hinnant's civil_from_days, for days since 1970-01-01.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    u64::try_from((year - 1970) * 12 + month - 1).unwrap_or(0)
}

/// The first millisecond of the month `months` after January 1970.
fn month_start(months: u64) -> u64 {
    let months = i64::try_from(months).unwrap_or(0);
    let (year, month) = (1970 + months / 12, months % 12 + 1);
    // Howard Hinnant's days_from_civil, for the first of the month.
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = if month > 2 { month - 3 } else { month + 9 };
    let doy = (153 * mp + 2) / 5;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    u64::try_from(days).unwrap_or(0).saturating_mul(86_400_000)
}

/// The candles a klines request answers, oldest first, as Binance selects them: from
/// the first candle opening at or after `start`, when it is sent, forward; else the
/// `limit` candles up to the one holding `end` (or now); never one opening after `end`
/// or after now.
pub(crate) fn kline_open_times(
    interval: Interval,
    start: Option<u64>,
    end: Option<u64>,
    limit: usize,
    now: u64,
) -> Vec<u64> {
    let last = interval.open_at(end.map_or(now, |end| end.min(now)));
    let mut opens = Vec::new();
    match start {
        Some(start) => {
            let first = interval.open_at(start);
            let mut open = if first < start {
                interval.next(first)
            } else {
                first
            };
            while open <= last && opens.len() < limit {
                opens.push(open);
                open = interval.next(open);
            }
        }
        None => {
            let mut open = Some(last);
            while let Some(at) = open.filter(|_| opens.len() < limit) {
                opens.push(at);
                open = interval.previous(at);
            }
            opens.reverse();
        }
    }
    opens
}

/// One synthetic candle of `m` opening at `open`, as the klines endpoints answer it (12
/// fields, prices and volumes as strings). Prices never move, so every price is the
/// reference price; the volume is the 24-hour ticker's 1000 a day spread evenly, half
/// of it bought by takers, one trade for each whole unit. Each quote volume is its base
/// volume as answered (to the quantity precision) times the price, as it would be summed
/// from trades of that size.
pub(crate) fn kline(m: &Market, interval: Interval, open: u64) -> Value {
    let close = interval.next(open) - 1;
    let exact =
        Decimal::from(TRADES_A_DAY) * Decimal::from(close + 1 - open) / Decimal::from(86_400_000);
    let (price_places, qty_places) = match m.product {
        Product::Spot => (8, 8),
        Product::UsdM => (m.price_precision, m.quantity_precision),
    };
    let price = fmt(m.price, price_places);
    let volume = exact.round_dp(qty_places);
    let half = (exact / Decimal::TWO).round_dp(qty_places);
    json!([
        open,
        price,
        price,
        price,
        price,
        fmt(volume, qty_places),
        close,
        fmt(volume * m.price, 8),
        exact.floor().to_u64().unwrap_or(0),
        fmt(half, qty_places),
        fmt(half * m.price, 8),
        "0"
    ])
}

/// An hour, in milliseconds: the longest span `aggTrades` answers for.
pub(crate) const HOUR_MS: u64 = 3_600_000;

/// How many trades of one unit each the market makes a day (the 24-hour ticker's volume).
const TRADES_A_DAY: u64 = 1000;

/// How often the market trades: [`TRADES_A_DAY`] spread evenly.
const TRADE_EVERY_MS: u64 = 86_400_000 / TRADES_A_DAY;

/// The ids of the aggregate trades an `aggTrades` request answers with: trade `id` is the
/// one at `id × 86.4 s` since the epoch (the candles' 1000 a day), none after `now`. From
/// `from_id`, or from `start` to `end` (inclusive), the first `limit`; with neither, the
/// latest `limit`.
pub(crate) fn agg_trade_ids(
    from_id: Option<u64>,
    start: Option<u64>,
    end: Option<u64>,
    limit: u64,
    now: u64,
) -> std::ops::Range<u64> {
    let latest = now / TRADE_EVERY_MS;
    let last = end.map_or(latest, |end| (end / TRADE_EVERY_MS).min(latest));
    let first = match (from_id, start) {
        (Some(id), _) => id,
        (None, Some(start)) => start.div_ceil(TRADE_EVERY_MS),
        (None, None) => last.saturating_sub(limit - 1),
    };
    if first > last {
        return 0..0;
    }
    first..last.min(first.saturating_add(limit - 1)) + 1
}

/// Aggregate trade `id` of `m`, as `aggTrades` answers it: one unit at the reference
/// price (prices never move), each trade its own aggregate, takers buying every other one
/// as the candles' half bought by takers says.
pub(crate) fn agg_trade(m: &Market, id: u64) -> Value {
    let (price_places, qty_places) = match m.product {
        Product::Spot => (8, 8),
        Product::UsdM => (m.price_precision, m.quantity_precision),
    };
    let mut trade = json!({
        "a": id,
        "p": fmt(m.price, price_places),
        "q": fmt(Decimal::ONE, qty_places),
        "f": id,
        "l": id,
        "T": id * TRADE_EVERY_MS,
        "m": id % 2 == 1,
    });
    // Spot says whether the trade was at the best price match; USD-M has no such field.
    if m.product == Product::Spot {
        trade["M"] = json!(true);
    }
    trade
}

/// Trade `id` as `GET /api/v3/trades` lists it: the one aggregate trade `id` holds.
pub(crate) fn trade(m: &Market, id: u64) -> Value {
    json!({
        "id": id,
        "price": fmt(m.price, 8),
        "qty": fmt(Decimal::ONE, 8),
        "quoteQty": fmt(m.price, 8),
        "time": id * TRADE_EVERY_MS,
        "isBuyerMaker": id % 2 == 1,
        "isBestMatch": true,
    })
}

/// A coin that can be withdrawn, with its networks, the default one first.
#[derive(Debug)]
pub(crate) struct Coin {
    pub(crate) coin: &'static str,
    pub(crate) name: &'static str,
    pub(crate) networks: &'static [Network],
}

/// A network a coin is withdrawn on.
#[derive(Debug)]
pub(crate) struct Network {
    pub(crate) network: &'static str,
    /// Whether a withdrawal on it takes a memo (`addressTag`), as an XRP one does.
    pub(crate) has_memo: bool,
}

impl Coin {
    /// The network `name` of this coin, or its default network when none is named.
    pub(crate) fn network(&self, name: Option<&str>) -> Option<&'static Network> {
        match name {
            None => self.networks.first(),
            Some(name) => self.networks.iter().find(|n| n.network == name),
        }
    }
}

const fn plain(network: &'static str) -> Network {
    Network {
        network,
        has_memo: false,
    }
}

/// Known coins for `GET /sapi/v1/capital/config/getall` and withdrawals.
pub(crate) static COINS: &[Coin] = &[
    Coin {
        coin: "BTC",
        name: "Bitcoin",
        networks: &[plain("BTC")],
    },
    Coin {
        coin: "ETH",
        name: "Ethereum",
        networks: &[plain("ETH")],
    },
    Coin {
        coin: "USDT",
        name: "TetherUS",
        networks: &[plain("ETH"), plain("TRX"), plain("BSC")],
    },
    Coin {
        coin: "BNB",
        name: "BNB",
        networks: &[plain("BSC")],
    },
    Coin {
        coin: "DOGE",
        name: "Dogecoin",
        networks: &[plain("DOGE")],
    },
    Coin {
        coin: "XRP",
        name: "Ripple",
        networks: &[Network {
            network: "XRP",
            has_memo: true,
        }],
    },
];

/// The coin `coin`, if the simulator knows it.
pub(crate) fn coin(coin: &str) -> Option<&'static Coin> {
    COINS.iter().find(|c| c.coin == coin)
}

/// The fewest and most characters of a withdrawal address on every network, as
/// [`ADDRESS_REGEX`] announces it.
pub(crate) const ADDRESS_CHARS: std::ops::RangeInclusive<usize> = 10..=100;
/// Every network's `addressRegex`.
pub(crate) const ADDRESS_REGEX: &str = "^.{10,100}$";
/// The `memoRegex` of a network that takes a memo: 1 to 10 digits, as [`is_memo`] checks.
pub(crate) const MEMO_REGEX: &str = "^[0-9]{1,10}$";
/// Every network's `withdrawIntegerMultiple`: an amount is a whole multiple of it.
pub(crate) const WITHDRAW_MULTIPLE: Decimal = dec(1, 8);

/// Whether `tag` is a memo [`MEMO_REGEX`] accepts.
pub(crate) fn is_memo(tag: &str) -> bool {
    (1..=10).contains(&tag.len()) && tag.bytes().all(|b| b.is_ascii_digit())
}

/// One entry of `GET /sapi/v1/capital/config/getall`.
pub(crate) fn coin_config(coin: &Coin, free: Decimal, locked: Decimal) -> Value {
    let networks: Vec<Value> = coin
        .networks
        .iter()
        .enumerate()
        .map(|(i, network)| {
            json!({
                "network": network.network,
                "coin": coin.coin,
                "withdrawIntegerMultiple": WITHDRAW_MULTIPLE.to_string(),
                "isDefault": i == 0,
                "depositEnable": true,
                "withdrawEnable": true,
                "depositDesc": "",
                "withdrawDesc": "",
                "specialTips": "",
                "specialWithdrawTips": "",
                "name": coin.name,
                "resetAddressStatus": false,
                "addressRegex": ADDRESS_REGEX,
                "memoRegex": if network.has_memo { MEMO_REGEX } else { "" },
                "withdrawTag": network.has_memo,
                "withdrawFee": "0",
                "withdrawMin": WITHDRAW_MULTIPLE.to_string(),
                "withdrawMax": "10000000",
                "depositDust": "0.00000001",
                "minConfirm": 1,
                "unLockConfirm": 2,
                "sameAddress": network.has_memo,
                "estimatedArrivalTime": 5,
                "busy": false,
                "contractAddressUrl": "",
                "contractAddress": ""
            })
        })
        .collect();
    json!({
        "coin": coin.coin,
        "depositAllEnable": true,
        "withdrawAllEnable": true,
        "name": coin.name,
        "free": free.normalize().to_string(),
        "locked": locked.normalize().to_string(),
        "freeze": "0",
        "withdrawing": "0",
        "ipoing": "0",
        "ipoable": "0",
        "storage": "0",
        "isLegalMoney": false,
        "trading": true,
        "networkList": networks
    })
}

/// `GET /sapi/v1/margin/allPairs` (cross) or `.../isolated/allPairs`: no pair, as margin
/// trading is not simulated and `exchangeInfo` announces `isMarginTradingAllowed` false
/// on every symbol.
pub(crate) fn margin_pairs() -> Value {
    Value::Array(Vec::new())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)] // Tests may panic.
mod tests {
    use super::*;

    #[test]
    fn decimals_and_formatting() {
        assert_eq!(dec(1, 2).to_string(), "0.01");
        assert_eq!(fmt(dec(60_000, 0), 8), "60000.00000000");
        assert_eq!(places(dec(1, 3)), 3);
        assert_eq!(
            find(Product::Spot, "ETHBTC").map(|m| m.price),
            Some(dec(5, 2))
        );
        assert!(find(Product::UsdM, "DOGEUSDT").is_none());
    }

    /// A regression test (found by review): a `startTime` near u64::MAX overflowed the
    /// candles of `1M`, `1d` and `1w` and the funding times (a debug build's task
    /// panicked; a release build answered times from 1970). No candle or funding is after
    /// now.
    #[test]
    fn times_near_the_last_a_u64_holds_answer_nothing() {
        let now = 1_709_208_000_000;
        for interval in ["1M", "1d", "1w", "1m"] {
            let interval = Interval::parse(interval, Product::Spot).unwrap();
            for (start, end) in [
                (u64::MAX, None),
                (u64::MAX - 615, None),
                (u64::MAX, Some(u64::MAX)),
            ] {
                assert!(kline_open_times(interval, Some(start), end, 500, now).is_empty());
            }
        }
        for start in [u64::MAX, u64::MAX / 2] {
            assert!(funding_times(Some(start), None, 100, now).is_empty());
        }
    }

    #[test]
    fn candles_open_on_their_intervals() {
        let day = 86_400_000;
        // 2024-02-29 12:00 UTC, a Thursday.
        let t = 1_709_208_000_000;
        let open_at = |i: &str| Interval::parse(i, Product::Spot).unwrap().open_at(t);
        assert_eq!(open_at("1h"), t);
        assert_eq!(open_at("1d"), t - day / 2);
        // Monday 2024-02-26.
        assert_eq!(open_at("1w"), 1_708_905_600_000);
        // 2024-02-01, and the month after it 2024-03-01.
        assert_eq!(open_at("1M"), 1_706_745_600_000);
        assert_eq!(Interval::Month.next(1_706_745_600_000), 1_709_251_200_000);
        assert_eq!(
            Interval::Month.previous(1_706_745_600_000),
            Some(1_704_067_200_000)
        );
        assert_eq!(month_start(0), 0);
        assert!(Interval::parse("1s", Product::UsdM).is_none());
        assert!(Interval::parse("2d", Product::Spot).is_none());
        // The last three hours up to now; from a start, forward, never past now.
        let hour = Interval::parse("1h", Product::Spot).unwrap();
        let now = t + 1_800_000;
        assert_eq!(
            kline_open_times(hour, None, None, 3, now),
            [t - 7_200_000, t - 3_600_000, t]
        );
        assert_eq!(
            kline_open_times(hour, Some(t - 7_199_999), None, 10, now),
            [t - 3_600_000, t]
        );
        assert_eq!(
            kline_open_times(hour, None, Some(t - 1), 2, now),
            [t - 7_200_000, t - 3_600_000]
        );
    }
}
