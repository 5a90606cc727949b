//! Unmodified Python ccxt's `binanceusdm` through the real `keygate serve` in front of the
//! Binance simulator: USD-M markets, balance, orders and fills, and an order over the
//! client's notional limit that keygate denies and the exchange never sees, and a
//! leverage setting, which that limit does not apply to.

use std::process::Command;

use keygate_mockex::Credential;
use serde_json::Value;

use crate::common::{python, script_summary, simulator, Kg, Serve};

const REAL_KEY: &str = "UsdmReal1UsdmReal1UsdmReal1UsdmReal1UsdmReal1UsdmReal1UsdmReal1U";
const REAL_SECRET: &str = "UsdmPlantedSecret1UsdmPlantedSecret1UsdmPlantedSecret1UsdmPlant";

/// The client's largest order, in USDT: the orders below stay under it, one goes over.
const MAX_ORDER_NOTIONAL: &str = "1000";

/// ccxt's `binanceusdm` with its default options; only its URLs and credentials change.
/// Reads KEYGATE_URL, KEYGATE_API_KEY and KEYGATE_SECRET from the environment (never
/// argv); prints one JSON summary line, or fails with the error.
const SCRIPT: &str = r#"
import json
import os
import sys

import ccxt

GW = os.environ["KEYGATE_URL"]
SYMBOL = "BTC/USDT:USDT"


def gateway_urls():
    """Every entry of ccxt's urls['api'] with its https:// replaced by the gateway, so that
    the Binance host becomes the first segment of the path."""
    defaults = ccxt.binanceusdm().urls["api"]
    return {
        name: url.replace("https://", GW + "/binance/") if isinstance(url, str) else url
        for name, url in defaults.items()
    }


def main():
    exchange = ccxt.binanceusdm(
        {
            "apiKey": os.environ["KEYGATE_API_KEY"],
            "secret": os.environ["KEYGATE_SECRET"],
            "urls": {"api": gateway_urls()},
        }
    )
    summary = {}
    markets = exchange.load_markets()
    assert markets[SYMBOL]["linear"] and markets[SYMBOL]["id"] == "BTCUSDT", sorted(markets)
    summary["load_markets"] = "ok"

    balance = exchange.fetch_balance()
    assert balance["USDT"]["total"] == 100000, balance["USDT"]
    summary["fetch_balance"] = "ok"

    resting = exchange.create_order(SYMBOL, "limit", "buy", 0.01, 50000)
    assert resting["status"] == "open", resting
    summary["create_order_limit"] = "ok"
    opened = exchange.fetch_open_orders(SYMBOL)
    assert [o["id"] for o in opened] == [resting["id"]], opened
    summary["fetch_open_orders"] = "ok"
    cancelled = exchange.cancel_order(resting["id"], SYMBOL)
    assert cancelled["status"] == "canceled", cancelled
    assert exchange.fetch_open_orders(SYMBOL) == [], "the cancelled order is gone"
    summary["cancel_order"] = "ok"

    # A setting, not an order: the notional limit does not apply to it.
    leverage = exchange.set_leverage(5, SYMBOL)
    assert leverage["leverage"] == 5, leverage
    summary["set_leverage"] = "ok"
    # Reads of the account's settings (the simulator's one-way positions, no fees).
    assert exchange.fetch_position_mode(SYMBOL)["hedged"] is False
    fee = exchange.fetch_trading_fee(SYMBOL)
    assert (fee["maker"], fee["taker"]) == (0, 0), fee
    summary["fetch_position_mode"] = summary["fetch_trading_fee"] = "ok"

    filled = exchange.create_order(SYMBOL, "market", "buy", 0.01)
    assert filled["status"] == "closed", filled
    summary["create_order_market"] = "ok"
    trades = exchange.fetch_my_trades(SYMBOL)
    assert [t["order"] for t in trades] == [filled["id"]], trades
    trade = trades[0]
    # Filled at the best ask the simulator publishes, a tick above its reference price.
    assert (trade["symbol"], trade["side"], trade["amount"], trade["price"]) == (SYMBOL, "buy", 0.01, 60000.1), trade
    summary["fetch_my_trades"] = "ok"
    summary["ids"] = {"resting": resting["id"], "filled": filled["id"]}

    # A stop: ccxt places it as a conditional order (POST /fapi/v1/algoOrder), lists it
    # and cancels it with the `trigger` flag.
    stop = exchange.create_order(SYMBOL, "market", "sell", 0.01, None, {"triggerPrice": 40000})
    assert stop["status"] == "open" and stop["triggerPrice"] == 40000, stop
    waiting = exchange.fetch_open_orders(SYMBOL, None, None, {"trigger": True})
    assert [o["id"] for o in waiting] == [stop["id"]], waiting
    exchange.cancel_order(stop["id"], SYMBOL, {"trigger": True})
    assert exchange.fetch_open_orders(SYMBOL, None, None, {"trigger": True}) == []
    summary["create_order_trigger"] = "ok"

    # 0.1 BTC at 50000 is 5000 USDT, over the client's limit: keygate answers Binance's
    # -2015, which ccxt raises as the exception its table maps -2015 to.
    try:
        exchange.create_order(SYMBOL, "limit", "buy", 0.1, 50000)
    except ccxt.BaseError as error:
        assert "keygate:" in str(error), error
        assert type(error) is exchange.exceptions["exact"]["-2015"], type(error)
        summary["notional_over_limit"] = type(error).__name__
    else:
        raise AssertionError("the order over the notional limit was not denied")

    # Orders in one request (POST /fapi/v1/batchOrders): each is decided as it would be
    # alone, and one over the limit denies the whole batch.
    def two_orders(second_amount):
        return [
            {"symbol": SYMBOL, "type": "limit", "side": "buy", "amount": 0.01, "price": 50000},
            {"symbol": SYMBOL, "type": "limit", "side": "buy", "amount": second_amount, "price": 49000},
        ]

    batch = exchange.create_orders(two_orders(0.01))
    assert [o["status"] for o in batch] == ["open", "open"], batch
    summary["create_orders"] = "ok"
    cancelled = exchange.cancel_orders([o["id"] for o in batch], SYMBOL)
    assert [o["status"] for o in cancelled] == ["canceled", "canceled"], cancelled
    assert exchange.fetch_open_orders(SYMBOL) == [], "the batch's orders are gone"
    summary["cancel_orders"] = "ok"
    try:
        exchange.create_orders(two_orders(0.1))
    except ccxt.BaseError as error:
        assert "keygate:" in str(error) and "order 2 of 2" in str(error), error
        summary["create_orders_over_limit"] = type(error).__name__
    else:
        raise AssertionError("the batch with an order over the notional limit was not denied")
    print(json.dumps(summary, sort_keys=True))


if __name__ == "__main__":
    try:
        main()
    except Exception as error:  # report, then fail the test
        print(f"ccxt usdm e2e failed: {type(error).__name__}: {error}", file=sys.stderr)
        sys.exit(1)
"#;

#[test]
fn ccxt_binanceusdm_trades_usdm_through_keygate() {
    let (_runtime, exchange) = simulator(vec![Credential::hmac(REAL_KEY, REAL_SECRET)]);
    let kg = Kg::with_key_file();
    kg.add_account_with(
        "main",
        REAL_KEY,
        REAL_SECRET,
        &["--upstream", &exchange.url()],
    );
    // No symbol list: the limit that matters here is the notional one.
    let issued = kg.issue(
        "main",
        "usdm-bot",
        &[
            "--scope",
            "read,trade",
            "--max-order-notional",
            MAX_ORDER_NOTIONAL,
        ],
    );
    let serve = Serve::start(&kg);
    let script = kg.path("usdm_e2e.py");
    std::fs::write(&script, SCRIPT).unwrap();
    let run = Command::new(python())
        .arg(&script)
        .env("KEYGATE_URL", format!("http://{}", serve.addr))
        .env("KEYGATE_API_KEY", issued["api_key"].as_str().unwrap())
        .env("KEYGATE_SECRET", issued["secret"].as_str().unwrap())
        // The script checks with `assert`, which -O would take out.
        .env_remove("PYTHONOPTIMIZE")
        .output()
        .unwrap();
    let summary = script_summary(&run, &kg);
    for call in [
        "load_markets",
        "fetch_balance",
        "create_order_limit",
        "fetch_open_orders",
        "cancel_order",
        "set_leverage",
        "fetch_position_mode",
        "fetch_trading_fee",
        "create_order_market",
        "fetch_my_trades",
        "create_order_trigger",
        "create_orders",
        "cancel_orders",
    ] {
        assert_eq!(summary[call], "ok", "{summary}");
    }
    // What ccxt's table maps Binance's -2015 to (the script checks it is that class).
    assert_eq!(summary["notional_over_limit"], "AuthenticationError");
    assert_eq!(summary["create_orders_over_limit"], "AuthenticationError");

    // The simulator saw the two orders keygate allowed, signed with the real key, and
    // nothing of the third; every call above reached it through keygate.
    let seen = exchange.simulator().requests();
    let orders: Vec<_> = seen
        .iter()
        .filter(|r| r.method == "POST" && r.path == "/fapi/v1/order")
        .collect();
    assert_eq!(orders.len(), 2, "{orders:#?}");
    assert!(
        orders
            .iter()
            .all(|r| r.api_key.as_deref() == Some(REAL_KEY)),
        "{orders:#?}"
    );
    assert!(
        orders
            .iter()
            .all(|r| r.body.contains("quantity=0.01&") && !r.body.contains("quantity=0.1&")),
        "{orders:#?}"
    );
    for (method, path) in [
        ("GET", "/fapi/v1/exchangeInfo"),
        ("GET", "/fapi/v3/account"),
        ("GET", "/fapi/v1/openOrders"),
        ("DELETE", "/fapi/v1/order"),
        ("GET", "/fapi/v1/userTrades"),
        ("POST", "/fapi/v1/algoOrder"),
        ("GET", "/fapi/v1/openAlgoOrders"),
        ("DELETE", "/fapi/v1/algoOrder"),
        ("DELETE", "/fapi/v1/batchOrders"),
    ] {
        assert!(
            seen.iter().any(|r| r.method == method && r.path == path),
            "{method} {path} never reached the exchange"
        );
    }
    // The batch within the limit reached it, as ccxt wrote it; the other did not.
    let batches: Vec<_> = seen
        .iter()
        .filter(|r| r.method == "POST" && r.path == "/fapi/v1/batchOrders")
        .collect();
    assert_eq!(batches.len(), 1, "{batches:#?}");
    drop(serve);
    let audit = kg.ok(&["audit", "export", "--format", "jsonl"], "").stdout;
    let denied: Vec<Value> = audit
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|e| e["rule"] == "order_notional")
        .collect();
    assert_eq!(denied.len(), 2, "{audit}");
    // The batch denied is recorded with each of its orders.
    let batch = &denied[1];
    assert_eq!(batch["path"], "/fapi/v1/batchOrders", "{batch}");
    let symbols: Vec<&Value> = batch["orders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| &o["symbol"])
        .collect();
    assert_eq!(symbols, ["usdm:BTCUSDT", "usdm:BTCUSDT"], "{batch}");
    // The CSV export and the one-line view name a batch's symbols too (found by review:
    // they showed none).
    let csv = kg.ok(&["audit", "export", "--format", "csv"], "").stdout;
    assert!(
        csv.lines().any(|l| l.contains("/fapi/v1/batchOrders")
            && l.contains(",usdm:BTCUSDT usdm:BTCUSDT,")
            && l.contains("order_notional")),
        "{csv}"
    );
    let tail = kg.ok(&["audit", "tail", "-n", "1000"], "").stdout;
    assert!(
        tail.lines().any(|l| l.contains("/fapi/v1/batchOrders")
            && l.contains(" symbols=usdm:BTCUSDT,usdm:BTCUSDT ")),
        "{tail}"
    );
}
