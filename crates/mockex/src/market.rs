//! The fixed market list, reference prices and the public market-data documents.

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

/// The `rateLimits` of an `exchangeInfo`, announcing `weight_limit`, the request-weight
/// limit per minute in force for its API family.
fn rate_limits(weight_limit: u64) -> Value {
    json!([
        {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": weight_limit},
        {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 100},
        {"rateLimitType": "ORDERS", "interval": "DAY", "intervalNum": 1, "limit": 200000},
        {"rateLimitType": "RAW_REQUESTS", "interval": "MINUTE", "intervalNum": 5, "limit": 61000}
    ])
}

/// `GET /api/v3/exchangeInfo`, announcing `weight_limit` per minute.
pub(crate) fn spot_exchange_info(server_time: u64, weight_limit: u64) -> Value {
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
                // Only what the simulator implements: no stop or take-profit orders, no
                // order lists (OCO, OTO), no trailing stops, no amend (keepPriority).
                "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET"],
                "icebergAllowed": true,
                "ocoAllowed": false,
                "otoAllowed": false,
                "quoteOrderQtyMarketAllowed": true,
                "allowTrailingStop": false,
                "cancelReplaceAllowed": true,
                "amendAllowed": false,
                "isSpotTradingAllowed": true,
                "isMarginTradingAllowed": true,
                "filters": [
                    {"filterType": "PRICE_FILTER", "minPrice": fmt(m.tick_size, 8), "maxPrice": fmt(Product::Spot.max_price(), 8), "tickSize": fmt(m.tick_size, 8)},
                    {"filterType": "LOT_SIZE", "minQty": fmt(m.min_qty, 8), "maxQty": fmt(Product::Spot.max_quantity(false), 8), "stepSize": fmt(m.step_size, 8)},
                    {"filterType": "ICEBERG_PARTS", "limit": 10},
                    {"filterType": "MARKET_LOT_SIZE", "minQty": "0.00000000", "maxQty": fmt(Product::Spot.max_quantity(true), 8), "stepSize": "0.00000000"},
                    {"filterType": "TRAILING_DELTA", "minTrailingAboveDelta": 10, "maxTrailingAboveDelta": 2000, "minTrailingBelowDelta": 10, "maxTrailingBelowDelta": 2000},
                    {"filterType": "PERCENT_PRICE_BY_SIDE", "bidMultiplierUp": multiplier(band.bid.up), "bidMultiplierDown": multiplier(band.bid.down), "askMultiplierUp": multiplier(band.ask.up), "askMultiplierDown": multiplier(band.ask.down), "avgPriceMins": SPOT_AVG_PRICE_MINS},
                    {"filterType": "NOTIONAL", "minNotional": fmt(m.min_notional, 8), "applyMinToMarket": true, "maxNotional": "9000000.00000000", "applyMaxToMarket": false, "avgPriceMins": 5},
                    {"filterType": "MAX_NUM_ORDERS", "maxNumOrders": 200},
                    {"filterType": "MAX_NUM_ALGO_ORDERS", "maxNumAlgoOrders": 5}
                ],
                "permissions": [],
                "permissionSets": [["SPOT", "MARGIN"]],
                "defaultSelfTradePreventionMode": "EXPIRE_MAKER",
                "allowedSelfTradePreventionModes": ["NONE", "EXPIRE_TAKER", "EXPIRE_MAKER", "EXPIRE_BOTH"]
            })
        })
        .collect();
    json!({
        "timezone": "UTC",
        "serverTime": server_time,
        "rateLimits": rate_limits(weight_limit),
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
        "rateLimits": rate_limits(weight_limit),
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
        "rateLimits": rate_limits(weight_limit),
        "exchangeFilters": [],
        "symbols": []
    })
}

/// `GET /api/v3/ticker/24hr` for one market.
pub(crate) fn ticker_24hr(m: &Market, now: u64) -> Value {
    let price = fmt(m.price, 8);
    json!({
        "symbol": m.symbol,
        "priceChange": "0.00000000",
        "priceChangePercent": "0.000",
        "weightedAvgPrice": price,
        "prevClosePrice": price,
        "lastPrice": price,
        "lastQty": fmt(m.min_qty, 8),
        "bidPrice": fmt(m.price - m.tick_size, 8),
        "bidQty": "1.00000000",
        "askPrice": fmt(m.price + m.tick_size, 8),
        "askQty": "1.00000000",
        "openPrice": price,
        "highPrice": price,
        "lowPrice": price,
        "volume": "1000.00000000",
        "quoteVolume": fmt(m.price * Decimal::from(1000), 8),
        "openTime": now.saturating_sub(86_400_000),
        "closeTime": now,
        "firstId": 1,
        "lastId": 1000,
        "count": 1000
    })
}

/// `GET /api/v3/depth`: a synthetic book of `limit` levels around the reference price.
pub(crate) fn depth(m: &Market, limit: usize) -> Value {
    let level = |i: usize, sign: i64| {
        let offset = m.tick_size * Decimal::from(i as i64 + 1) * Decimal::from(sign);
        json!([fmt(m.price + offset, 8), "1.00000000"])
    };
    json!({
        "lastUpdateId": 1_000_000,
        "bids": (0..limit).map(|i| level(i, -1)).collect::<Vec<_>>(),
        "asks": (0..limit).map(|i| level(i, 1)).collect::<Vec<_>>()
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

/// `GET /sapi/v1/margin/allPairs` (cross) or `.../isolated/allPairs`.
pub(crate) fn margin_pairs(isolated: bool) -> Value {
    let pairs: Vec<Value> = of(Product::Spot)
        .enumerate()
        .map(|(i, m)| {
            let mut pair = json!({
                "symbol": m.symbol,
                "base": m.base,
                "quote": m.quote,
                "isMarginTrade": true,
                "isBuyAllowed": true,
                "isSellAllowed": true
            });
            if !isolated {
                pair["id"] = json!(i as u64 + 1);
            }
            pair
        })
        .collect();
    Value::Array(pairs)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may panic.
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
}
