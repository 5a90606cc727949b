"""Unmodified python-binance drives keygate in front of the Binance simulator.

Only the client's base URLs and credentials change. Reads the gateway URL, the virtual
key and the simulator URL from the environment (never argv): KEYGATE_URL,
KEYGATE_API_KEY, then KEYGATE_SECRET for an HMAC key or KEYGATE_PRIVATE_KEY (PEM) for an
Ed25519 one, and MOCK_URL. Prints one JSON summary line; exits non-zero on any failure.
"""

import json
import os
import sys
import urllib.request

from binance.client import Client
from binance.exceptions import BinanceAPIException

GW = os.environ["KEYGATE_URL"]
# Every REST base URL of python-binance's Client.
BASE_URLS = (
    "API_URL",
    "MARGIN_API_URL",
    "FUTURES_URL",
    "FUTURES_DATA_URL",
    "FUTURES_COIN_URL",
    "FUTURES_COIN_DATA_URL",
    "OPTIONS_URL",
    "PAPI_URL",
)
MOCK = os.environ["MOCK_URL"]


def bot_requests():
    # keygate's own reconciliation reads the withdrawal history with the real key; every
    # other request that reached the exchange came from the bot.
    with urllib.request.urlopen(MOCK + "/__mock/requests") as response:
        return [r for r in json.load(response) if not r["path"].endswith("/capital/withdraw/history")]


def expect_denied(what, call):
    try:
        call()
    except BinanceAPIException as error:
        assert error.code == -2015, f"{what}: {error.code} {error.message}"
        assert error.message.startswith("keygate:"), f"{what}: {error.message}"
        # The error as the bot sees it, for the test that looks for planted secrets in
        # everything keygate wrote.
        print(f"{what} denied: {error}", file=sys.stderr)
        return error.code
    raise AssertionError(f"{what} was not denied")


def main():
    # The client pings Binance when it is made; no ping, then every one of its base URLs
    # is pointed at keygate, as the README shows: the Binance host becomes the first
    # segment of the path.
    private_key = os.environ.get("KEYGATE_PRIVATE_KEY")
    if private_key:
        client = Client(os.environ["KEYGATE_API_KEY"], private_key=private_key, ping=False)
    else:
        client = Client(os.environ["KEYGATE_API_KEY"], os.environ["KEYGATE_SECRET"], ping=False)
    for name in BASE_URLS:
        setattr(client, name, getattr(client, name).replace("https://", GW + "/binance/"))
    summary = {}

    # USD-M too: a client that pointed only the spot URLs at keygate would send its
    # futures calls, signed with the virtual key, to Binance itself.
    futures = client.futures_account_balance()
    assert any(b["asset"] == "USDT" for b in futures), futures
    summary["futures_account_balance"] = "ok"

    account = client.get_account()
    assert any(b["asset"] == "USDT" and float(b["free"]) > 0 for b in account["balances"])
    summary["get_account"] = "ok"
    order = client.create_order(
        symbol="BTCUSDT", side="BUY", type="LIMIT", timeInForce="GTC", quantity="0.01", price="50000"
    )
    summary["create_order"] = "ok"
    open_orders = client.get_open_orders(symbol="BTCUSDT")
    assert any(o["orderId"] == order["orderId"] for o in open_orders), "the limit order is open"
    summary["get_open_orders"] = "ok"
    client.cancel_order(symbol="BTCUSDT", orderId=order["orderId"])
    assert not any(o["orderId"] == order["orderId"] for o in client.get_open_orders(symbol="BTCUSDT"))
    summary["cancel_order"] = "ok"

    before = len(bot_requests())
    summary["symbol_outside_policy"] = expect_denied(
        "DOGE order",
        lambda: client.create_order(symbol="DOGEUSDT", side="BUY", type="MARKET", quoteOrderQty="100"),
    )
    summary["withdraw"] = expect_denied(
        "withdraw",
        lambda: client.withdraw(coin="USDT", address="TXYZkeygateTestAddress0000000000", amount=10, network="TRX"),
    )
    reached = bot_requests()[before:]
    assert not reached, f"denied requests reached the exchange: {reached}"
    summary["denied_never_forwarded"] = "ok"
    print(json.dumps(summary, sort_keys=True))


if __name__ == "__main__":
    try:
        main()
    except Exception as error:  # noqa: BLE001 - any failure fails the test, with its cause
        print(f"python-binance e2e failed: {type(error).__name__}: {error}", file=sys.stderr)
        sys.exit(1)
