"""Unmodified ccxt edits orders through keygate in front of the Binance simulator.

Only ccxt's URLs and credentials change. Reads from the environment (never argv):
KEYGATE_URL, KEYGATE_API_KEY, KEYGATE_SECRET, MOCK_URL, and EXCHANGE: `binance` (spot:
edit_order is POST /api/v3/order/cancelReplace) or `binanceusdm` (edit_order is
PUT /fapi/v1/order, edit_orders PUT /fapi/v1/batchOrders). The client's notional limit
is 1000 USDT: each edit within it goes through, each over it is denied by keygate and
never reaches the exchange. Prints one JSON summary line; exits non-zero on any failure.
"""

import json
import os
import sys
import urllib.request

import ccxt

GW = os.environ["KEYGATE_URL"]
MOCK = os.environ["MOCK_URL"]
EXCHANGE = os.environ["EXCHANGE"]
SYMBOL = {"binance": "BTC/USDT", "binanceusdm": "BTC/USDT:USDT"}[EXCHANGE]


def gateway_urls():
    """Every entry of ccxt's urls['api'] with its https:// replaced by the gateway, so that
    the Binance host becomes the first segment of the path."""
    defaults = getattr(ccxt, EXCHANGE)().urls["api"]
    return {
        name: url.replace("https://", GW + "/binance/") if isinstance(url, str) else url
        for name, url in defaults.items()
    }


def mock_requests():
    # keygate serves without reconciliation here: every request that reached the exchange
    # came from the bot (but the ticker reads below).
    with urllib.request.urlopen(MOCK + "/__mock/requests") as response:
        return json.load(response)


def expect_denied(exchange, what, call):
    """Runs `call`, which keygate must deny with Binance's -2015, and checks that nothing
    of it reached the exchange. Returns the name of the exception ccxt raised."""
    # ccxt maps -2015 to AuthenticationError, except once the key has authenticated
    # successfully on spot: then it raises DDoSProtection (it reads -2015 as a temporary
    # ban). Either is what a bot sees from Binance itself.
    mapped = (exchange.exceptions["exact"]["-2015"], ccxt.DDoSProtection)
    before = len(mock_requests())
    try:
        call()
    except mapped as error:
        assert "keygate:" in str(error), f"{what}: {error}"
        name = type(error).__name__
    else:
        raise AssertionError(f"{what} was not denied")
    # keygate prices a USD-M modification from the market (it names no type), so it may
    # read the ticker itself, unsigned, when its one-second price cache is stale: that is
    # keygate's own public read, not the edit.
    reached = [r for r in mock_requests()[before:] if not (r["method"] == "GET" and r["api_key"] is None)]
    assert not reached, f"{what}: the denied edit reached the exchange: {reached}"
    return name


def open_at(exchange):
    """The open orders of SYMBOL as (id, price, amount)."""
    return [(o["id"], o["price"], o["amount"]) for o in exchange.fetch_open_orders(SYMBOL)]


def main():
    exchange = getattr(ccxt, EXCHANGE)(
        {
            "apiKey": os.environ["KEYGATE_API_KEY"],
            "secret": os.environ["KEYGATE_SECRET"],
            "urls": {"api": gateway_urls()},
        }
    )
    summary = {}
    exchange.load_markets()
    placed = exchange.create_order(SYMBOL, "limit", "buy", 0.01, 50000)
    assert placed["status"] == "open", placed

    # 0.01 BTC at 51000 is 510 USDT, within the limit.
    edited = exchange.edit_order(placed["id"], SYMBOL, "limit", "buy", 0.01, 51000)
    assert edited["status"] == "open" and edited["price"] == 51000, edited
    if EXCHANGE == "binance":
        # Spot cancels the order and places another.
        assert edited["id"] != placed["id"], edited
        old = exchange.fetch_order(placed["id"], SYMBOL)
        assert old["status"] == "canceled", old
    else:
        # USD-M modifies the order itself.
        assert edited["id"] == placed["id"], edited
    assert open_at(exchange) == [(edited["id"], 51000, 0.01)], open_at(exchange)
    summary["edit_order"] = "ok"
    summary["ids"] = {"placed": placed["id"], "edited": edited["id"]}

    # 0.1 BTC at 52000 is 5200 USDT, over it.
    summary["edit_order_over_limit"] = expect_denied(
        exchange,
        "edit over the limit",
        lambda: exchange.edit_order(edited["id"], SYMBOL, "limit", "buy", 0.1, 52000),
    )
    assert open_at(exchange) == [(edited["id"], 51000, 0.01)], "the denied edit changed nothing"

    if EXCHANGE == "binanceusdm":
        # Modifications in one request (PUT /fapi/v1/batchOrders).
        def edits(amount, price):
            return [{"id": edited["id"], "symbol": SYMBOL, "type": "limit", "side": "buy", "amount": amount, "price": price}]

        batch = exchange.edit_orders(edits(0.01, 52000))
        assert [(o["id"], o["price"]) for o in batch] == [(edited["id"], 52000)], batch
        assert open_at(exchange) == [(edited["id"], 52000, 0.01)], open_at(exchange)
        summary["edit_orders"] = "ok"
        summary["edit_orders_over_limit"] = expect_denied(
            exchange, "batch edit over the limit", lambda: exchange.edit_orders(edits(0.1, 53000))
        )
        assert open_at(exchange) == [(edited["id"], 52000, 0.01)], "the denied batch changed nothing"
    print(json.dumps(summary, sort_keys=True))


if __name__ == "__main__":
    try:
        main()
    except Exception as error:  # report, then fail the test
        print(f"ccxt edit e2e failed: {type(error).__name__}: {error}", file=sys.stderr)
        sys.exit(1)
