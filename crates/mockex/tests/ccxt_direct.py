#!/usr/bin/env python3
"""Drive unmodified ccxt (binance, default options) against the keygate mock exchange.

Environment: MOCK_URL (e.g. http://127.0.0.1:12345), MOCK_KEY, MOCK_SECRET.
(Argv fallback `ccxt_direct.py URL KEY SECRET` exists only for this throwaway harness.)

Prints the HTTP requests ccxt made for load_markets() as `LOAD_MARKETS <METHOD> <PATH>`
lines, then one `OK <step>` line per call. Exits non-zero on the first failure.
"""

import json
import os
import sys
import urllib.request

import ccxt


def config():
    url = os.environ.get("MOCK_URL") or (sys.argv[1] if len(sys.argv) > 1 else None)
    key = os.environ.get("MOCK_KEY") or (sys.argv[2] if len(sys.argv) > 2 else None)
    secret = os.environ.get("MOCK_SECRET") or (sys.argv[3] if len(sys.argv) > 3 else None)
    if not (url and key and secret):
        sys.exit("usage: MOCK_URL=... MOCK_KEY=... MOCK_SECRET=... ccxt_direct.py")
    return url.rstrip("/"), key, secret


def mock(url, method, path):
    request = urllib.request.Request(url + path, method=method, data=b"" if method == "POST" else None)
    with urllib.request.urlopen(request) as response:
        return json.loads(response.read())


def point_at(exchange, base):
    """Replace the host of every urls['api'] entry, keeping the path."""
    api = {}
    for name, value in exchange.urls["api"].items():
        if isinstance(value, str):
            path = "/" + value.split("://", 1)[1].split("/", 1)[1]
            api[name] = base + path
    return api


def main():
    url, key, secret = config()
    template = ccxt.binance()
    exchange = ccxt.binance({"apiKey": key, "secret": secret, "urls": {"api": point_at(template, url)}})

    mock(url, "POST", "/__mock/reset?state=1")
    exchange.load_markets()
    for request in mock(url, "GET", "/__mock/requests"):
        print("LOAD_MARKETS", request["method"], request["path"])
    assert "BTC/USDT" in exchange.markets, "spot market missing"
    assert "BTC/USDT:USDT" in exchange.markets, "usd-m market missing"
    print("OK load_markets", len(exchange.markets))

    def step(name, fn):
        before = len(mock(url, "GET", "/__mock/requests"))
        result = fn()
        made = mock(url, "GET", "/__mock/requests")[before:]
        print("OK", name, " ".join(r["method"] + " " + r["path"] for r in made))
        return result

    step("fetch_time", exchange.fetch_time)
    balance = step("fetch_balance", exchange.fetch_balance)
    assert balance["total"]["BTC"] == 10, balance["total"]
    step("fetch_ticker", lambda: exchange.fetch_ticker("BTC/USDT"))
    step("fetch_tickers", lambda: exchange.fetch_tickers(["BTC/USDT", "ETH/USDT"]))
    step("fetch_order_book", lambda: exchange.fetch_order_book("BTC/USDT", 5))

    rest = step("create_order limit", lambda: exchange.create_order("BTC/USDT", "limit", "buy", 0.01, 50000))
    assert rest["status"] == "open", rest
    opened = step("fetch_open_orders", lambda: exchange.fetch_open_orders("BTC/USDT"))
    assert [o["id"] for o in opened] == [rest["id"]], opened
    step("fetch_order", lambda: exchange.fetch_order(rest["id"], "BTC/USDT"))
    cancelled = step("cancel_order", lambda: exchange.cancel_order(rest["id"], "BTC/USDT"))
    assert cancelled["status"] == "canceled", cancelled
    filled = step("create_order market", lambda: exchange.create_order("BTC/USDT", "market", "sell", 0.5))
    assert filled["status"] == "closed", filled
    step("create_order market quoteOrderQty",
         lambda: exchange.create_order("ETH/USDT", "market", "buy", None, None, {"quoteOrderQty": 3000}))
    trades = step("fetch_my_trades", lambda: exchange.fetch_my_trades("BTC/USDT"))
    assert len(trades) == 1, trades
    after = exchange.fetch_balance()
    assert after["total"]["BTC"] == 9.5, after["total"]
    # 3000 USDT at the best ask, 3000.01, buys 0.9999 ETH (the lot size's step).
    assert after["total"]["ETH"] == 100.9999, after["total"]

    step("withdraw", lambda: exchange.withdraw("USDT", 100, "0x1234567890abcdef1234567890abcdef12345678"))
    step("apiRestrictions", exchange.sapi_get_account_apirestrictions)

    step("fetch_balance future", lambda: exchange.fetch_balance({"type": "future"}))
    fut = step("create_order usdm limit",
               lambda: exchange.create_order("BTC/USDT:USDT", "limit", "buy", 0.01, 50000))
    step("fetch_open_orders usdm", lambda: exchange.fetch_open_orders("BTC/USDT:USDT"))
    step("cancel_order usdm", lambda: exchange.cancel_order(fut["id"], "BTC/USDT:USDT"))
    filled_usdm = step("create_order usdm market",
                       lambda: exchange.create_order("BTC/USDT:USDT", "market", "buy", 0.01))
    usdm_trades = step("fetch_my_trades usdm", lambda: exchange.fetch_my_trades("BTC/USDT:USDT"))
    assert [t["order"] for t in usdm_trades] == [filled_usdm["id"]], usdm_trades
    assert usdm_trades[0]["symbol"] == "BTC/USDT:USDT", usdm_trades
    step("fetch_ticker usdm", lambda: exchange.fetch_ticker("BTC/USDT:USDT"))

    # What a bot calls first: status, candles, the USD-M book and funding, positions,
    # margin type, post-only spot orders and cancelling every order of a symbol.
    assert step("fetch_status", exchange.fetch_status)["status"] == "ok"
    candles = step("fetch_ohlcv", lambda: exchange.fetch_ohlcv("BTC/USDT", "1h", limit=3))
    assert [c[4] for c in candles] == [60000] * 3, candles
    candles = step("fetch_ohlcv usdm", lambda: exchange.fetch_ohlcv("ETH/USDT:USDT", "15m", limit=2))
    assert [c[1] for c in candles] == [3000] * 2, candles
    trades = step("fetch_trades", lambda: exchange.fetch_trades("BTC/USDT", limit=4))
    assert [(t["price"], t["amount"]) for t in trades] == [(60000, 1)] * 4, trades
    trades = step("fetch_trades usdm", lambda: exchange.fetch_trades("ETH/USDT:USDT", limit=2))
    assert [t["price"] for t in trades] == [3000] * 2, trades
    # With `since`, ccxt asks for exactly an hour from it (a span the simulator refused).
    since = exchange.milliseconds() - 600_000
    trades = step("fetch_trades since", lambda: exchange.fetch_trades("BTC/USDT", since=since))
    assert trades and all(t["timestamp"] >= since for t in trades), trades
    fee = step("fetch_trading_fee", lambda: exchange.fetch_trading_fee("BTC/USDT"))
    assert (fee["maker"], fee["taker"]) == (0, 0), fee
    address = step("fetch_deposit_address", lambda: exchange.fetch_deposit_address("USDT", {"network": "TRX"}))
    assert address["address"] == "mockex-deposit-usdt-trx", address
    assert step("fetch_deposits", lambda: exchange.fetch_deposits("USDT")) == []
    book = step("fetch_order_book usdm", lambda: exchange.fetch_order_book("BTC/USDT:USDT", 5))
    assert book["bids"][0][0] < 60000 < book["asks"][0][0], book
    funding = step("fetch_funding_rate", lambda: exchange.fetch_funding_rate("BTC/USDT:USDT"))
    assert funding["markPrice"] == 60000, funding
    positions = step("fetch_positions", lambda: exchange.fetch_positions(["BTC/USDT:USDT"]))
    assert [(p["symbol"], p["contracts"], p["side"]) for p in positions] == [("BTC/USDT:USDT", 0.01, "long")], positions
    step("set_margin_mode", lambda: exchange.set_margin_mode("isolated", "ETH/USDT:USDT"))
    try:
        exchange.create_order("BTC/USDT", "limit", "buy", 0.01, 61000, {"postOnly": True})
        raise AssertionError("a post-only order that would take was placed")
    except ccxt.OrderImmediatelyFillable:
        print("OK create_order postOnly refused")
    maker = step("create_order postOnly", lambda: exchange.create_order("BTC/USDT", "limit", "buy", 0.01, 59000, {"postOnly": True}))
    assert maker["status"] == "open", maker
    cancelled = step("cancel_all_orders", lambda: exchange.cancel_all_orders("BTC/USDT"))
    assert [o["id"] for o in cancelled] == [maker["id"]], cancelled
    step("create_order usdm limit", lambda: exchange.create_order("ETH/USDT:USDT", "limit", "buy", 0.1, 2900))
    step("cancel_all_orders usdm", lambda: exchange.cancel_all_orders("ETH/USDT:USDT"))
    assert exchange.fetch_open_orders("ETH/USDT:USDT") == []

    # Calls the simulator once answered as unknown paths: transfers and the funding
    # wallet (the key may transfer), the position and Multi-Assets modes, the account
    # configuration, one open order, the auto-cancel countdown and the open interest.
    moved = step("transfer spot->swap", lambda: exchange.transfer("USDT", 25, "spot", "swap"))
    transfers = step("fetch_transfers", lambda: exchange.fetch_transfers("USDT"))
    listed = [(t["id"], t["amount"], t["fromAccount"], t["toAccount"], t["status"]) for t in transfers]
    assert listed == [(moved["id"], 25, "spot", "linear", "ok")], transfers
    step("transfer spot->funding", lambda: exchange.transfer("USDT", 5, "spot", "funding"))
    funding = step("fetch_balance funding", lambda: exchange.fetch_balance({"type": "funding"}))
    assert funding["free"]["USDT"] == 5 and funding["used"]["USDT"] == 0, funding
    try:
        exchange.set_position_mode(False, "BTC/USDT:USDT")
        raise AssertionError("one-way mode was changed to one-way mode")
    except ccxt.BaseError as error:
        assert "-4059" in str(error), error
        print("OK set_position_mode unchanged refused")
    mode = step("fetch_position_mode", lambda: exchange.fetch_position_mode("BTC/USDT:USDT"))
    assert mode["hedged"] is False, mode
    assets = step("multiAssetsMargin", exchange.fapiPrivateGetMultiAssetsMargin)
    assert assets == {"multiAssetsMargin": False}, assets
    fees = step("fetch_trading_fees swap", lambda: exchange.fetch_trading_fees({"type": "swap"}))
    assert "BTC/USDT:USDT" in fees, list(fees)
    resting = step("create_order usdm limit", lambda: exchange.create_order("BTC/USDT:USDT", "limit", "buy", 0.01, 59000))
    found = step("fetch_open_order", lambda: exchange.fetch_open_order(resting["id"], "BTC/USDT:USDT"))
    assert (found["id"], found["status"]) == (resting["id"], "open"), found
    armed = step("countdownCancelAll",
                 lambda: exchange.fapiPrivatePostCountdownCancelAll({"symbol": "BTCUSDT", "countdownTime": 0}))
    assert armed == {"symbol": "BTCUSDT", "countdownTime": "0"}, armed
    exchange.cancel_order(resting["id"], "BTC/USDT:USDT")
    interest = step("fetch_open_interest", lambda: exchange.fetch_open_interest("BTC/USDT:USDT"))
    assert interest["openInterestAmount"] == 0.01, interest
    print("ALL OK")


if __name__ == "__main__":
    main()
