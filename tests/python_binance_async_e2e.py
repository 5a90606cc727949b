"""Unmodified python-binance AsyncClient through keygate, on a host whose clock is off.

AsyncClient sets its clock by the exchange's when it is made (it reads `/api/v3/time` and
signs every request at its own clock plus the difference). keygate judges timestamps on
its own host's clock and answers that call with it, so the client signs on keygate's
clock, whatever the exchange's says; the test runs the simulator's clock seconds ahead.
Only the client's URLs and credentials change: AsyncClient.create pings and reads the
clock before a client could be given other URLs, so its URL templates are pointed at
keygate on the class. Reads the gateway URL, the virtual key and the simulator URL from
the environment (never argv): KEYGATE_URL, KEYGATE_API_KEY, KEYGATE_SECRET, MOCK_URL.
Prints one JSON summary line; exits non-zero on any failure.
"""

import asyncio
import json
import os
import sys
import urllib.request

from binance import AsyncClient

from python_binance_e2e import BASE_URLS, GW, MOCK


def exchange_clock_calls():
    with urllib.request.urlopen(MOCK + "/__mock/requests") as response:
        return [r for r in json.load(response) if r["path"].endswith("/time")]


async def main():
    for name in BASE_URLS:
        setattr(AsyncClient, name, getattr(AsyncClient, name).replace("https://", GW + "/binance/"))
    before = len(exchange_clock_calls())
    client = await AsyncClient.create(os.environ["KEYGATE_API_KEY"], os.environ["KEYGATE_SECRET"])
    summary = {}
    try:
        # The clock the client set itself by is keygate's, this host's: within the
        # calls' round trip of its own, not seconds off as the exchange's is.
        summary["timestamp_offset_ms"] = client.timestamp_offset
        summary["clock_answered_by_keygate"] = "ok" if len(exchange_clock_calls()) == before else "asked the exchange"

        account = await client.get_account()
        assert any(b["asset"] == "USDT" for b in account["balances"]), account
        summary["get_account"] = "ok"
        futures = await client.futures_account_balance()
        assert any(b["asset"] == "USDT" for b in futures), futures
        summary["futures_account_balance"] = "ok"
        order = await client.create_order(
            symbol="BTCUSDT", side="BUY", type="LIMIT", timeInForce="GTC", quantity="0.01", price="50000"
        )
        summary["create_order"] = "ok"
        await client.cancel_order(symbol="BTCUSDT", orderId=order["orderId"])
        summary["cancel_order"] = "ok"
    finally:
        await client.close_connection()
    print(json.dumps(summary, sort_keys=True))


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except Exception as error:  # noqa: BLE001 - any failure fails the test, with its cause
        print(f"python-binance async e2e failed: {type(error).__name__}: {error}", file=sys.stderr)
        sys.exit(1)
