"""Unmodified ccxt through keygate when the exchange's request weight runs out.

The simulator is told to allow little weight a minute; ccxt reads its balance until the
exchange answers 429 (Retry-After). From then on keygate answers every request itself,
as the exchange would, and sends nothing more: a bot that retries at once cannot get the
address banned. Reads the gateway URL, the virtual key and the simulator URL from the
environment (never argv): KEYGATE_URL, KEYGATE_API_KEY, KEYGATE_SECRET, MOCK_URL. Prints
one JSON summary line; exits non-zero on any failure.
"""

import json
import os
import sys
import urllib.request

import ccxt

from ccxt_e2e import gateway_urls

MOCK = os.environ["MOCK_URL"]


def mock(path, method="GET"):
    request = urllib.request.Request(MOCK + path, method=method, data=b"" if method == "POST" else None)
    with urllib.request.urlopen(request) as response:
        return json.load(response)


def main():
    exchange = ccxt.binance(
        {
            "apiKey": os.environ["KEYGATE_API_KEY"],
            "secret": os.environ["KEYGATE_SECRET"],
            "urls": {"api": gateway_urls()},
        }
    )
    exchange.load_markets()
    mock("/__mock/weight-limit?limit=100", "POST")
    summary = {}
    for _ in range(20):
        try:
            exchange.fetch_balance()
        except ccxt.DDoSProtection as error:
            assert "keygate:" not in str(error), f"the first 429 is the exchange's own: {error}"
            assert "429" in str(error), error
            summary["exchange_429"] = type(error).__name__
            break
    assert "exchange_429" in summary, "the exchange never ran out of weight"
    reached = len(mock("/__mock/requests"))
    calls = {
        "fetch_balance": exchange.fetch_balance,
        "create_order": lambda: exchange.create_order("BTC/USDT", "limit", "buy", 0.01, 50000),
        "fetch_ticker": lambda: exchange.fetch_ticker("BTC/USDT"),
    }
    for name, call in calls.items():
        try:
            call()
        except ccxt.DDoSProtection as error:
            assert "keygate:" in str(error) and "429" in str(error), f"{name}: {error}"
            summary[name] = type(error).__name__
            continue
        raise AssertionError(f"{name} went through while the exchange asked to wait")
    after = mock("/__mock/requests")[reached:]
    assert not after, f"requests reached the exchange while it asked to wait: {after}"
    summary["held_back_not_sent"] = "ok"
    print(json.dumps(summary, sort_keys=True))


if __name__ == "__main__":
    try:
        main()
    except Exception as error:  # report, then fail the test
        print(f"ccxt back-off e2e failed: {type(error).__name__}: {error}", file=sys.stderr)
        sys.exit(1)
