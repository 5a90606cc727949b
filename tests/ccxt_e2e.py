"""Unmodified ccxt drives keygate in front of the Binance simulator.

Only ccxt's URLs and credentials change. Reads the gateway URL, the virtual key and the
simulator URL from the environment (never argv): KEYGATE_URL, KEYGATE_API_KEY,
KEYGATE_SECRET, MOCK_URL. Prints one JSON summary line; exits non-zero on any failure.
"""

import json
import os
import sys
import urllib.request

import ccxt

GW = os.environ["KEYGATE_URL"]
MOCK = os.environ["MOCK_URL"]


def gateway_urls():
    """Every entry of ccxt's urls['api'] with its https:// replaced by the gateway, so that
    the Binance host becomes the first segment of the path, as the README shows."""
    defaults = ccxt.binance().urls["api"]
    return {
        name: url.replace("https://", GW + "/binance/") if isinstance(url, str) else url
        for name, url in defaults.items()
    }


def mock_requests():
    # keygate's own reconciliation reads the withdrawal history with the real key; every
    # other request that reached the exchange came from the bot.
    with urllib.request.urlopen(MOCK + "/__mock/requests") as response:
        return [r for r in json.load(response) if not r["path"].endswith("/capital/withdraw/history")]


def expect_denied(exchange, what, call):
    # ccxt maps Binance's -2015 to AuthenticationError, except once the key has
    # authenticated successfully: then it raises DDoSProtection (it reads -2015 as a
    # temporary ban). Either is what a bot sees from Binance itself.
    mapped = (exchange.exceptions["exact"]["-2015"], ccxt.DDoSProtection)
    try:
        call()
    except mapped as error:
        assert "keygate:" in str(error), f"{what}: {error}"
        # The error as the bot sees it, for the test that looks for planted secrets in
        # everything keygate wrote.
        print(f"{what} denied: {error}", file=sys.stderr)
        return type(error).__name__
    raise AssertionError(f"{what} was not denied")


def main():
    exchange = ccxt.binance(
        {
            "apiKey": os.environ["KEYGATE_API_KEY"],
            "secret": os.environ["KEYGATE_SECRET"],
            "urls": {"api": gateway_urls()},
        }
    )
    summary = {}
    markets = exchange.load_markets()
    assert "BTC/USDT" in markets, "markets came through the gateway"
    balance = exchange.fetch_balance()
    assert balance["USDT"]["free"] > 0
    summary["fetch_balance"] = "ok"
    # Public market data passes through without a key.
    assert [t["price"] for t in exchange.fetch_trades("BTC/USDT", limit=3)] == [60000] * 3
    recent = exchange.fetch_trades("BTC/USDT", limit=2, params={"method": "publicGetTrades"})
    assert [t["price"] for t in recent] == [60000] * 2, recent

    order = exchange.create_order("BTC/USDT", "limit", "buy", 0.01, 50000)
    open_orders = exchange.fetch_open_orders("BTC/USDT")
    assert any(o["id"] == order["id"] for o in open_orders), "limit order is open"
    exchange.cancel_order(order["id"], "BTC/USDT")
    assert not any(o["id"] == order["id"] for o in exchange.fetch_open_orders("BTC/USDT"))
    summary["create_order_limit"] = summary["fetch_open_orders"] = summary["cancel_order"] = "ok"

    market = exchange.create_order("BTC/USDT", "market", "buy", 0.001)
    assert market["status"] == "closed", market
    trades = exchange.fetch_my_trades("BTC/USDT")
    assert trades, "the market order filled"
    summary["create_order_market"] = summary["fetch_my_trades"] = "ok"

    before = len(mock_requests())
    summary["withdraw"] = expect_denied(
        exchange, "withdraw", lambda: exchange.withdraw("USDT", 10, "TXYZkeygateTestAddress0000000000", params={"network": "TRX"})
    )
    summary["symbol_outside_policy"] = expect_denied(
        exchange, "DOGE order", lambda: exchange.create_order("DOGE/USDT", "market", "buy", 100)
    )
    summary["notional_over_limit"] = expect_denied(
        exchange, "large order", lambda: exchange.create_order("BTC/USDT", "limit", "buy", 1, 50000)
    )
    reached = mock_requests()[before:]
    assert not reached, f"denied requests reached the exchange: {reached}"
    everything = mock_requests()
    assert not any("withdraw/apply" in r["path"] for r in everything)
    assert not any("DOGEUSDT" in (r["query"] or "") + (r["body"] or "") for r in everything)
    summary["denied_never_forwarded"] = "ok"

    # Two identical requests signed in the same millisecond (threads of one bot sharing a
    # key) have one signature: keygate takes the first and answers the second as Binance
    # answers a timestamp it will not take, which ccxt raises as InvalidNonce, so that
    # the bot signs again. Pinned here by making ccxt's clock stand still.
    now = exchange.milliseconds()
    exchange.milliseconds = lambda: now
    exchange.fetch_open_orders("BTC/USDT")
    try:
        exchange.fetch_open_orders("BTC/USDT")
        raise AssertionError("the same signature was taken twice")
    except ccxt.InvalidNonce as error:
        assert "already used" in str(error), error
        summary["same_signature_twice"] = type(error).__name__
    print(json.dumps(summary, sort_keys=True))


if __name__ == "__main__":
    try:
        main()
    except Exception as error:  # report, then fail the test
        print(f"ccxt e2e failed: {type(error).__name__}: {error}", file=sys.stderr)
        sys.exit(1)
