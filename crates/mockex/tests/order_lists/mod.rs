//! Spot stop and take-profit orders and order lists (OCO, OTO, OTOCO, OPO, OPOCO, the
//! deprecated `order/oco`), as Binance's spot REST pages document them. BTCUSDT's
//! reference price is 60000, its best ask 60000.01 and best bid 59999.99.

use reqwest::Method;
use serde_json::Value;

use super::*;

/// `POST /__mock/trigger?orderId=N`, unsigned and never weighed, as a test calls it.
async fn reach(sim: &RunningSimulator, order_id: &Value) -> (u16, Value) {
    let (status, _, value) = send_for_headers(
        sim,
        Method::POST,
        &format!("/__mock/trigger?orderId={order_id}"),
        None,
        None,
    )
    .await;
    (status, value)
}

async fn account(sim: &RunningSimulator) -> Value {
    signed(sim, Method::GET, "/api/v3/account", "").await.1
}

async fn order(sim: &RunningSimulator, id: &Value) -> Value {
    let params = format!("symbol=BTCUSDT&orderId={id}");
    signed(sim, Method::GET, "/api/v3/order", &params).await.1
}

fn statuses(list: &Value) -> Vec<String> {
    list["orderReports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_str().unwrap().to_owned())
        .collect()
}

/// A stop-loss sell rests untriggered (`workingTime` -1), holding its base, until the
/// price reaches its stop; then it sells at the best bid. One whose stop is already
/// reached, or that lacks or has parameters of another type, is refused as Binance does.
#[tokio::test]
async fn a_stop_loss_rests_until_triggered_then_trades_at_the_market() {
    let sim = start().await;
    let refused = [
        (
            "side=SELL&type=STOP_LOSS&quantity=1",
            -1102,
            "Param 'stopPrice' or 'trailingDelta' must be sent, but both were empty/null!",
        ),
        (
            "side=SELL&type=STOP_LOSS&quantity=1&stopPrice=59000&price=58000",
            -1106,
            "Parameter 'price' sent when not required.",
        ),
        (
            "side=SELL&type=STOP_LOSS&quantity=1&stopPrice=59000&timeInForce=GTC",
            -1106,
            "Parameter 'timeInForce' sent when not required.",
        ),
        (
            "side=SELL&type=STOP_LOSS_LIMIT&quantity=1&stopPrice=59000&price=58000",
            -1102,
            "Mandatory parameter 'timeInForce' was not sent, was empty/null, or malformed.",
        ),
        (
            "side=SELL&type=STOP_LOSS&quantity=1&stopPrice=61000",
            -2010,
            "Order would trigger immediately.",
        ),
        (
            "side=BUY&type=TAKE_PROFIT&quantity=1&stopPrice=61000",
            -2010,
            "Order would trigger immediately.",
        ),
        (
            "side=SELL&type=STOP_LOSS&quantity=1&trailingDelta=5",
            -1013,
            "Filter failure: TRAILING_DELTA",
        ),
    ];
    for (params, code, msg) in refused {
        let answer = signed(
            &sim,
            Method::POST,
            "/api/v3/order",
            &format!("symbol=BTCUSDT&{params}"),
        )
        .await;
        assert_code(&answer, 400, code);
        assert_eq!(answer.1["msg"], msg, "{params}");
    }
    let (status, placed) = signed(
        &sim,
        Method::POST,
        "/api/v3/order",
        "symbol=BTCUSDT&side=SELL&type=STOP_LOSS&quantity=1&stopPrice=59000&newOrderRespType=RESULT",
    )
    .await;
    assert_eq!(status, 200, "{placed}");
    assert_eq!(placed["status"], "NEW");
    assert_eq!(placed["stopPrice"], "59000.00000000");
    assert_eq!(placed["workingTime"], -1);
    assert_eq!(placed["orderListId"], -1);
    assert_eq!(
        balance(&account(&sim).await, "BTC"),
        ("9.00000000".into(), "1.00000000".into())
    );
    let (_, open) = signed(&sim, Method::GET, "/api/v3/openOrders", "symbol=BTCUSDT").await;
    assert_eq!(open[0]["type"], "STOP_LOSS");
    assert_eq!(open[0]["isWorking"], false);
    let (status, triggered) = reach(&sim, &placed["orderId"]).await;
    assert_eq!(status, 200, "{triggered}");
    assert_eq!(triggered["status"], "FILLED");
    assert_eq!(triggered["cummulativeQuoteQty"], "59999.99000000");
    let after = account(&sim).await;
    assert_eq!(
        balance(&after, "BTC"),
        ("9.00000000".into(), "0.00000000".into())
    );
    assert_eq!(
        balance(&after, "USDT"),
        ("1059999.99000000".into(), "0.00000000".into())
    );
    // Done: there is nothing left to trigger.
    assert_code(&reach(&sim, &placed["orderId"]).await, 400, -2011);
}

/// A take-profit limit buy triggers into a limit order at its price, which rests when it
/// does not cross; cancelling it gives back what it holds.
#[tokio::test]
async fn a_take_profit_limit_becomes_a_resting_limit_order() {
    let sim = start().await;
    let (status, placed) = signed(
        &sim,
        Method::POST,
        "/api/v3/order",
        "symbol=BTCUSDT&side=BUY&type=TAKE_PROFIT_LIMIT&quantity=1&stopPrice=59000\
         &price=58500&timeInForce=GTC",
    )
    .await;
    assert_eq!(status, 200, "{placed}");
    assert!(placed.get("status").is_none(), "ACK by default: {placed}");
    let usdt = || async { balance(&account(&sim).await, "USDT") };
    assert_eq!(
        usdt().await,
        ("941500.00000000".into(), "58500.00000000".into())
    );
    let (_, triggered) = reach(&sim, &placed["orderId"]).await;
    assert_eq!(triggered["status"], "NEW");
    assert_eq!(triggered["isWorking"], true);
    assert_eq!(
        usdt().await,
        ("941500.00000000".into(), "58500.00000000".into())
    );
    let cancel = format!("symbol=BTCUSDT&orderId={}", placed["orderId"]);
    let (status, _) = signed(&sim, Method::DELETE, "/api/v3/order", &cancel).await;
    assert_eq!(status, 200);
    assert_eq!(
        usdt().await,
        ("1000000.00000000".into(), "0.00000000".into())
    );
}

/// An OCO sell: the stop-loss leg (below) and the `LIMIT_MAKER` leg (above) share one
/// reservation of the quantity; when the stop triggers and sells, the other expires.
#[tokio::test]
async fn an_oco_leg_that_triggers_expires_the_other() {
    let sim = start().await;
    let (status, list) = signed(
        &sim,
        Method::POST,
        "/api/v3/orderList/oco",
        "symbol=BTCUSDT&side=SELL&quantity=1&aboveType=LIMIT_MAKER&abovePrice=62000\
         &belowType=STOP_LOSS_LIMIT&belowStopPrice=58000&belowPrice=57900\
         &belowTimeInForce=GTC&listClientOrderId=my-oco",
    )
    .await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["contingencyType"], "OCO");
    assert_eq!(list["listStatusType"], "EXEC_STARTED");
    assert_eq!(list["listOrderStatus"], "EXECUTING");
    assert_eq!(list["listClientOrderId"], "my-oco");
    assert_eq!(list["symbol"], "BTCUSDT");
    let reports = list["orderReports"].as_array().unwrap();
    // The stop-loss leg first, as Binance numbers them.
    assert_eq!(reports[0]["type"], "STOP_LOSS_LIMIT");
    assert_eq!(reports[0]["stopPrice"], "58000.00000000");
    assert_eq!(reports[0]["workingTime"], -1);
    assert_eq!(reports[1]["type"], "LIMIT_MAKER");
    assert!(reports[1].get("stopPrice").is_none(), "{list}");
    assert_eq!(list["orders"][0]["orderId"], reports[0]["orderId"]);
    assert_eq!(reports[0]["orderListId"], list["orderListId"]);
    assert_eq!(
        balance(&account(&sim).await, "BTC"),
        ("9.00000000".into(), "1.00000000".into()),
        "one reservation for both legs"
    );
    // The stop triggers into a limit sell at 57900, which crosses the bid: it sells.
    let (status, stop) = reach(&sim, &reports[0]["orderId"]).await;
    assert_eq!(status, 200, "{stop}");
    assert_eq!(stop["status"], "FILLED");
    assert_eq!(
        order(&sim, &reports[1]["orderId"]).await["status"],
        "EXPIRED"
    );
    let after = account(&sim).await;
    assert_eq!(
        balance(&after, "BTC"),
        ("9.00000000".into(), "0.00000000".into())
    );
    let params = format!("orderListId={}", list["orderListId"]);
    let (_, queried) = signed(&sim, Method::GET, "/api/v3/orderList", &params).await;
    assert_eq!(queried["listStatusType"], "ALL_DONE");
    assert!(queried.get("orderReports").is_none());
    let (_, open) = signed(&sim, Method::GET, "/api/v3/openOrderList", "").await;
    assert_eq!(open, Value::Array(vec![]));
    // Its client id may be used again once it is done.
    let (status, again) = signed(
        &sim,
        Method::POST,
        "/api/v3/orderList/oco",
        "symbol=BTCUSDT&side=SELL&quantity=1&aboveType=LIMIT_MAKER&abovePrice=62000\
         &belowType=STOP_LOSS&belowStopPrice=58000&listClientOrderId=my-oco",
    )
    .await;
    assert_eq!(status, 200, "{again}");
}

/// The `LIMIT_MAKER` leg of a buy OCO fills at its price when the market comes down to
/// it, and the stop leg above expires.
#[tokio::test]
async fn an_oco_leg_that_fills_expires_the_other() {
    let sim = start().await;
    let (status, list) = signed(
        &sim,
        Method::POST,
        "/api/v3/orderList/oco",
        "symbol=BTCUSDT&side=BUY&quantity=0.5&aboveType=STOP_LOSS&aboveStopPrice=61000\
         &belowType=LIMIT_MAKER&belowPrice=59000&newOrderRespType=ACK",
    )
    .await;
    assert_eq!(status, 200, "{list}");
    assert!(list["orderReports"][0].get("status").is_none(), "{list}");
    // The dearer leg's worth is held: 0.5 at the 61000 stop.
    assert_eq!(
        balance(&account(&sim).await, "USDT"),
        ("969500.00000000".into(), "30500.00000000".into())
    );
    let maker = &list["orders"][1]["orderId"];
    let (_, filled) = reach(&sim, maker).await;
    assert_eq!(filled["status"], "FILLED");
    assert_eq!(filled["cummulativeQuoteQty"], "29500.00000000");
    let stop = &list["orders"][0]["orderId"];
    assert_eq!(order(&sim, stop).await["status"], "EXPIRED");
    let after = account(&sim).await;
    assert_eq!(
        balance(&after, "USDT"),
        ("970500.00000000".into(), "0.00000000".into())
    );
    assert_eq!(
        balance(&after, "BTC"),
        ("10.50000000".into(), "0.00000000".into())
    );
    // The fill names its list and was a maker's: the market came to the resting leg
    // (found by review: -1 and taker).
    let (_, trades) = signed(&sim, Method::GET, "/api/v3/myTrades", "symbol=BTCUSDT").await;
    assert_eq!(trades[0]["orderId"], *maker, "{trades}");
    assert_eq!(trades[0]["orderListId"], list["orderListId"], "{trades}");
    assert_eq!(trades[0]["isMaker"], true, "{trades}");
}

/// Binance's OCO rules: the types a pair takes and where, and its price restrictions.
#[tokio::test]
async fn an_oco_that_breaks_binances_rules_is_refused() {
    let sim = start().await;
    let cases = [
        (
            "side=SELL&aboveType=LIMIT&abovePrice=62000&belowType=STOP_LOSS&belowStopPrice=58000",
            -1158,
            "Order type not supported in OCO.",
        ),
        (
            "side=SELL&aboveType=STOP_LOSS&aboveStopPrice=62000&belowType=LIMIT_MAKER&belowPrice=58000",
            -1166,
            "A limit order in a sell OCO must be above.",
        ),
        (
            "side=BUY&aboveType=LIMIT_MAKER&abovePrice=62000&belowType=STOP_LOSS&belowStopPrice=58000",
            -1165,
            "A limit order in a buy OCO must be below.",
        ),
        (
            "side=SELL&aboveType=TAKE_PROFIT&aboveStopPrice=62000&belowType=TAKE_PROFIT&belowStopPrice=58000",
            -1158,
            "Order type not supported in OCO.",
        ),
        // A stop loss on the wrong side of the price (found by review: placed).
        (
            "side=BUY&aboveType=TAKE_PROFIT&aboveStopPrice=61000&belowType=STOP_LOSS&belowStopPrice=59000",
            -1196,
            "A stop loss order in a buy OCO must be above.",
        ),
        (
            "side=SELL&aboveType=STOP_LOSS&aboveStopPrice=61000&belowType=TAKE_PROFIT&belowStopPrice=59000",
            -1197,
            "A stop loss order in a sell OCO must be below.",
        ),
        // A take-profit limit leg is placed by its stop price, here already reached
        // (found by review: compared by its limit price, and placed).
        (
            "side=SELL&aboveType=TAKE_PROFIT_LIMIT&aboveStopPrice=59500&abovePrice=61000\
             &aboveTimeInForce=GTC&belowType=STOP_LOSS&belowStopPrice=59000",
            -2010,
            "The relationship of the prices for the orders is not correct.",
        ),
        // The limit leg under the price: the relationship is wrong.
        (
            "side=SELL&aboveType=LIMIT_MAKER&abovePrice=59000&belowType=STOP_LOSS&belowStopPrice=58000",
            -2010,
            "The relationship of the prices for the orders is not correct.",
        ),
        (
            "side=SELL&aboveType=LIMIT_MAKER&abovePrice=62000&belowType=STOP_LOSS&belowStopPrice=61000",
            -2010,
            "The relationship of the prices for the orders is not correct.",
        ),
        (
            "side=SELL&aboveType=LIMIT_MAKER&belowType=STOP_LOSS&belowStopPrice=58000",
            -1102,
            "Mandatory parameter 'abovePrice' was not sent, was empty/null, or malformed.",
        ),
        (
            "side=SELL&aboveType=LIMIT_MAKER&abovePrice=62000&belowType=STOP_LOSS_LIMIT\
             &belowStopPrice=58000&belowPrice=57900",
            -1102,
            "Mandatory parameter 'belowTimeInForce' was not sent, was empty/null, or malformed.",
        ),
        (
            "side=SELL&aboveType=LIMIT_MAKER&abovePrice=62000.001&belowType=STOP_LOSS&belowStopPrice=58000",
            -1013,
            "Filter failure: PRICE_FILTER",
        ),
        (
            "side=SELL&aboveType=LIMIT_MAKER&abovePrice=62000&belowType=STOP_LOSS\
             &belowStopPrice=58000&quantity=100",
            -2010,
            "Account has insufficient balance for requested action.",
        ),
    ];
    for (params, code, msg) in cases {
        let quantity = if params.contains("quantity") {
            ""
        } else {
            "&quantity=1"
        };
        let answer = signed(
            &sim,
            Method::POST,
            "/api/v3/orderList/oco",
            &format!("symbol=BTCUSDT&{params}{quantity}"),
        )
        .await;
        assert_code(&answer, 400, code);
        assert_eq!(answer.1["msg"], msg, "{params}");
    }
    // A parameter no leg reads, as a single order's (found by review: ignored).
    for (path, params) in [
        (
            "/api/v3/orderList/oco",
            "symbol=BTCUSDT&side=SELL&quantity=1&aboveType=LIMIT_MAKER&abovePrice=62000\
             &belowType=STOP_LOSS&belowStopPrice=58000&workingType=LIMIT",
        ),
        (
            "/api/v3/orderList/opo",
            "symbol=BTCUSDT&workingType=LIMIT&workingSide=BUY&workingPrice=59000\
             &workingQuantity=0.1&workingTimeInForce=GTC&pendingType=LIMIT_MAKER\
             &pendingSide=SELL&pendingPrice=62000&pendingQuantity=0.5",
        ),
    ] {
        let answer = signed(&sim, Method::POST, path, params).await;
        assert_code(&answer, 400, -1104);
        assert!(
            answer.1["msg"]
                .as_str()
                .unwrap()
                .starts_with("Not all sent parameters were read"),
            "{params}: {}",
            answer.1
        );
    }
    // Nothing was placed or held.
    let (_, all) = signed(&sim, Method::GET, "/api/v3/allOrders", "symbol=BTCUSDT").await;
    assert_eq!(all, Value::Array(vec![]));
    assert_eq!(
        balance(&account(&sim).await, "BTC"),
        ("10.00000000".into(), "0.00000000".into())
    );
}

/// Cancelling one leg (`DELETE /api/v3/order`) cancels the list and answers it as the
/// list; `DELETE /api/v3/orderList` by `listClientOrderId` does the same; a list not open
/// is -2011.
#[tokio::test]
async fn cancelling_a_leg_cancels_the_list() {
    let sim = start().await;
    let oco = |id: &str| {
        format!(
            "symbol=BTCUSDT&side=SELL&quantity=1&aboveType=TAKE_PROFIT&aboveStopPrice=62000\
             &belowType=STOP_LOSS&belowStopPrice=58000&listClientOrderId={id}"
        )
    };
    let (_, first) = signed(&sim, Method::POST, "/api/v3/orderList/oco", &oco("one")).await;
    let leg = format!(
        "symbol=BTCUSDT&orderId={}&newClientOrderId=cancel-one",
        first["orders"][1]["orderId"]
    );
    let (status, cancelled) = signed(&sim, Method::DELETE, "/api/v3/order", &leg).await;
    assert_eq!(status, 200, "{cancelled}");
    assert_eq!(cancelled["listStatusType"], "ALL_DONE");
    assert_eq!(cancelled["listOrderStatus"], "ALL_DONE");
    assert_eq!(statuses(&cancelled), ["CANCELED", "CANCELED"]);
    assert_eq!(cancelled["orderReports"][0]["clientOrderId"], "cancel-one");
    assert_eq!(
        cancelled["orderReports"][0]["origClientOrderId"],
        first["orders"][0]["clientOrderId"]
    );
    let (_, second) = signed(&sim, Method::POST, "/api/v3/orderList/oco", &oco("two")).await;
    let (status, by_client) = signed(
        &sim,
        Method::DELETE,
        "/api/v3/orderList",
        "symbol=BTCUSDT&listClientOrderId=two",
    )
    .await;
    assert_eq!(status, 200, "{by_client}");
    assert_eq!(by_client["orderListId"], second["orderListId"]);
    assert_eq!(statuses(&by_client), ["CANCELED", "CANCELED"]);
    assert_eq!(
        balance(&account(&sim).await, "BTC"),
        ("10.00000000".into(), "0.00000000".into())
    );
    let again = format!("symbol=BTCUSDT&orderListId={}", second["orderListId"]);
    let answer = signed(&sim, Method::DELETE, "/api/v3/orderList", &again).await;
    assert_code(&answer, 400, -2011);
    assert_eq!(answer.1["msg"], "Unknown order list sent.");
    assert_code(
        &signed(&sim, Method::DELETE, "/api/v3/orderList", "symbol=BTCUSDT").await,
        400,
        -1102,
    );
    let unknown = signed(&sim, Method::GET, "/api/v3/orderList", "orderListId=999").await;
    assert_code(&unknown, 400, -2013);
    assert_eq!(unknown.1["msg"], "Order list does not exist.");
    let (_, all) = signed(&sim, Method::GET, "/api/v3/allOrderList", "").await;
    assert_eq!(all.as_array().map(Vec::len), Some(2));
    assert_eq!(all[0]["orderListId"], second["orderListId"], "newest first");
}

/// `DELETE /api/v3/openOrders` cancels a list's legs with the rest, answering the list
/// once among the orders on their own.
#[tokio::test]
async fn cancelling_every_open_order_answers_a_list_as_a_list() {
    let sim = start().await;
    signed(
        &sim,
        Method::POST,
        "/api/v3/order",
        "symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.1&price=50000",
    )
    .await;
    let (_, list) = signed(
        &sim,
        Method::POST,
        "/api/v3/orderList/oto",
        "symbol=BTCUSDT&workingType=LIMIT&workingSide=BUY&workingPrice=55000\
         &workingQuantity=0.1&workingTimeInForce=GTC&pendingType=LIMIT_MAKER\
         &pendingSide=SELL&pendingPrice=65000&pendingQuantity=0.1",
    )
    .await;
    let (status, cancelled) =
        signed(&sim, Method::DELETE, "/api/v3/openOrders", "symbol=BTCUSDT").await;
    assert_eq!(status, 200, "{cancelled}");
    let answers = cancelled.as_array().unwrap();
    assert_eq!(answers.len(), 2, "{cancelled}");
    assert_eq!(answers[0]["status"], "CANCELED");
    assert_eq!(answers[1]["orderListId"], list["orderListId"]);
    assert_eq!(answers[1]["contingencyType"], "OTO");
    assert_eq!(statuses(&answers[1]), ["CANCELED", "CANCELED"]);
}

/// An OTO's pending leg waits (`PENDING_NEW`, nothing held) until its working order
/// fills, then goes on the book as a new order would; a working order that fills at once
/// places it right after the answer, which shows it pending as Binance's does.
#[tokio::test]
async fn an_oto_places_its_pending_leg_when_the_working_order_fills() {
    let sim = start().await;
    let (status, list) = signed(
        &sim,
        Method::POST,
        "/api/v3/orderList/oto",
        "symbol=BTCUSDT&workingType=LIMIT_MAKER&workingSide=BUY&workingPrice=59000\
         &workingQuantity=1&pendingType=STOP_LOSS&pendingSide=SELL\
         &pendingStopPrice=55000&pendingQuantity=1",
    )
    .await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["contingencyType"], "OTO");
    assert_eq!(statuses(&list), ["NEW", "PENDING_NEW"]);
    assert_eq!(list["orderReports"][1]["workingTime"], -1);
    // The working buy holds 59000 USDT; the pending sell holds nothing yet.
    let held = account(&sim).await;
    assert_eq!(
        balance(&held, "BTC"),
        ("10.00000000".into(), "0.00000000".into())
    );
    assert_eq!(
        balance(&held, "USDT"),
        ("941000.00000000".into(), "59000.00000000".into())
    );
    let (_, open) = signed(&sim, Method::GET, "/api/v3/openOrderList", "").await;
    assert_eq!(open[0]["orderListId"], list["orderListId"]);
    // The pending leg cannot be triggered before it is placed.
    assert_code(
        &reach(&sim, &list["orders"][1]["orderId"]).await,
        400,
        -2011,
    );
    let (_, working) = reach(&sim, &list["orders"][0]["orderId"]).await;
    assert_eq!(working["status"], "FILLED");
    let pending = order(&sim, &list["orders"][1]["orderId"]).await;
    assert_eq!(pending["status"], "NEW", "{pending}");
    assert_eq!(pending["orderListId"], list["orderListId"]);
    let placed = account(&sim).await;
    assert_eq!(
        balance(&placed, "BTC"),
        ("10.00000000".into(), "1.00000000".into())
    );

    // One whose working order crosses the book fills at once.
    let (status, at_once) = signed(
        &sim,
        Method::POST,
        "/api/v3/orderList/oto",
        "symbol=BTCUSDT&workingType=LIMIT&workingSide=BUY&workingPrice=60001\
         &workingQuantity=0.1&workingTimeInForce=GTC&pendingType=LIMIT&pendingSide=SELL\
         &pendingPrice=65000&pendingQuantity=0.1&pendingTimeInForce=GTC&newOrderRespType=FULL",
    )
    .await;
    assert_eq!(status, 200, "{at_once}");
    assert_eq!(statuses(&at_once), ["FILLED", "PENDING_NEW"]);
    assert_eq!(
        at_once["orderReports"][0]["fills"][0]["price"],
        "60000.01000000"
    );
    let pending = order(&sim, &at_once["orders"][1]["orderId"]).await;
    assert_eq!(
        pending["status"], "NEW",
        "placed after the answer: {pending}"
    );
}

/// An OTOCO: the pending pair follows the OCO rules and goes on the book as an OCO when
/// the working order fills; then one of them triggering expires the other.
#[tokio::test]
async fn an_otoco_places_an_oco_pair_when_the_working_order_fills() {
    let sim = start().await;
    let bad = signed(
        &sim,
        Method::POST,
        "/api/v3/orderList/otoco",
        "symbol=BTCUSDT&workingType=LIMIT&workingSide=BUY&workingPrice=59000\
         &workingQuantity=1&workingTimeInForce=GTC&pendingSide=SELL&pendingQuantity=1\
         &pendingAboveType=LIMIT_MAKER&pendingAbovePrice=59500\
         &pendingBelowType=STOP_LOSS&pendingBelowStopPrice=55000",
    )
    .await;
    assert_code(&bad, 400, -2010);
    let (status, list) = signed(
        &sim,
        Method::POST,
        "/api/v3/orderList/otoco",
        "symbol=BTCUSDT&workingType=LIMIT&workingSide=BUY&workingPrice=59000\
         &workingQuantity=1&workingTimeInForce=GTC&pendingSide=SELL&pendingQuantity=1\
         &pendingAboveType=LIMIT_MAKER&pendingAbovePrice=65000\
         &pendingBelowType=STOP_LOSS&pendingBelowStopPrice=55000",
    )
    .await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["contingencyType"], "OTO");
    assert_eq!(statuses(&list), ["NEW", "PENDING_NEW", "PENDING_NEW"]);
    assert_eq!(list["orderReports"][1]["type"], "STOP_LOSS");
    reach(&sim, &list["orders"][0]["orderId"]).await;
    let stop = &list["orders"][1]["orderId"];
    let maker = &list["orders"][2]["orderId"];
    assert_eq!(order(&sim, stop).await["status"], "NEW");
    assert_eq!(order(&sim, maker).await["status"], "NEW");
    assert_eq!(
        balance(&account(&sim).await, "BTC"),
        ("10.00000000".into(), "1.00000000".into()),
        "the pair holds the quantity once"
    );
    let (_, sold) = reach(&sim, stop).await;
    assert_eq!(sold["status"], "FILLED");
    assert_eq!(order(&sim, maker).await["status"], "EXPIRED");
    let params = format!(
        "origClientOrderId={}",
        list["listClientOrderId"].as_str().unwrap()
    );
    let (_, done) = signed(&sim, Method::GET, "/api/v3/orderList", &params).await;
    assert_eq!(done["listStatusType"], "ALL_DONE");
    assert_eq!(
        balance(&account(&sim).await, "BTC"),
        ("10.00000000".into(), "0.00000000".into())
    );
}

/// OPO and OPOCO: the pending legs name no quantity and trade what the working buy
/// bought; a working sell is refused.
#[tokio::test]
async fn opo_pending_legs_trade_what_the_working_order_bought() {
    let sim = start().await;
    let (status, list) = signed(
        &sim,
        Method::POST,
        "/api/v3/orderList/opo",
        "symbol=BTCUSDT&workingType=LIMIT&workingSide=BUY&workingPrice=59000\
         &workingQuantity=0.25&workingTimeInForce=GTC&pendingType=LIMIT_MAKER\
         &pendingSide=SELL&pendingPrice=65000",
    )
    .await;
    assert_eq!(status, 200, "{list}");
    assert!(list["orderReports"][1].get("origQty").is_none(), "{list}");
    reach(&sim, &list["orders"][0]["orderId"]).await;
    let pending = order(&sim, &list["orders"][1]["orderId"]).await;
    assert_eq!(pending["status"], "NEW");
    assert_eq!(pending["origQty"], "0.25000000");
    let (status, opoco) = signed(
        &sim,
        Method::POST,
        "/api/v3/orderList/opoco",
        "symbol=BTCUSDT&workingType=LIMIT&workingSide=BUY&workingPrice=60001\
         &workingQuantity=0.5&workingTimeInForce=GTC&pendingSide=SELL\
         &pendingAboveType=TAKE_PROFIT&pendingAboveStopPrice=65000\
         &pendingBelowType=STOP_LOSS&pendingBelowStopPrice=55000",
    )
    .await;
    assert_eq!(status, 200, "{opoco}");
    assert_eq!(statuses(&opoco), ["FILLED", "PENDING_NEW", "PENDING_NEW"]);
    for leg in &opoco["orders"].as_array().unwrap()[1..] {
        let placed = order(&sim, &leg["orderId"]).await;
        assert_eq!(
            (placed["status"].clone(), placed["origQty"].clone()),
            ("NEW".into(), "0.50000000".into())
        );
    }
    let sell = signed(
        &sim,
        Method::POST,
        "/api/v3/orderList/opo",
        "symbol=BTCUSDT&workingType=LIMIT&workingSide=SELL&workingPrice=65000\
         &workingQuantity=0.25&workingTimeInForce=GTC&pendingType=LIMIT_MAKER\
         &pendingSide=BUY&pendingPrice=59000",
    )
    .await;
    assert_code(&sell, 400, -1130);
}

/// The deprecated `POST /api/v3/order/oco`: `price` for the `LIMIT_MAKER` leg,
/// `stopPrice` (and `stopLimitPrice` with `stopLimitTimeInForce`) for the stop leg.
#[tokio::test]
async fn the_deprecated_oco_places_the_same_pair() {
    let sim = start().await;
    let (status, list) = signed(
        &sim,
        Method::POST,
        "/api/v3/order/oco",
        "symbol=BTCUSDT&side=SELL&quantity=1&price=62000&stopPrice=58000\
         &stopLimitPrice=57900&stopLimitTimeInForce=GTC&limitClientOrderId=lim\
         &stopClientOrderId=stp",
    )
    .await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["contingencyType"], "OCO");
    let reports = &list["orderReports"];
    assert_eq!(
        (
            reports[0]["type"].clone(),
            reports[0]["clientOrderId"].clone()
        ),
        ("STOP_LOSS_LIMIT".into(), "stp".into())
    );
    assert_eq!(
        (
            reports[1]["type"].clone(),
            reports[1]["clientOrderId"].clone()
        ),
        ("LIMIT_MAKER".into(), "lim".into())
    );
    let missing = signed(
        &sim,
        Method::POST,
        "/api/v3/order/oco",
        "symbol=BTCUSDT&side=SELL&quantity=1&price=62000&stopPrice=58000&stopLimitPrice=57900",
    )
    .await;
    assert_code(&missing, 400, -1102);
    assert!(
        missing.1["msg"]
            .as_str()
            .unwrap()
            .contains("'stopLimitTimeInForce'"),
        "{:?}",
        missing.1
    );
}

/// A list adds each of its orders to the unfilled order count.
#[tokio::test]
async fn a_list_counts_each_of_its_orders() {
    let sim = start().await;
    let target = signed_target(
        "/api/v3/orderList/otoco",
        "symbol=BTCUSDT&workingType=LIMIT&workingSide=BUY&workingPrice=59000\
         &workingQuantity=1&workingTimeInForce=GTC&pendingSide=SELL&pendingQuantity=1\
         &pendingAboveType=LIMIT_MAKER&pendingAbovePrice=65000\
         &pendingBelowType=STOP_LOSS&pendingBelowStopPrice=55000",
    );
    let (status, headers, _) = send_for_headers(&sim, Method::POST, &target, Some(KEY), None).await;
    assert_eq!(status, 200);
    assert_eq!(headers["x-mbx-order-count-10s"], "3");
    assert_eq!(headers["x-mbx-used-weight-1m"], "1");
    let (_, headers, _) = send_for_headers(
        &sim,
        Method::GET,
        &signed_target("/api/v3/allOrderList", ""),
        Some(KEY),
        None,
    )
    .await;
    assert_eq!(headers["x-mbx-used-weight-1m"], "21");
}
