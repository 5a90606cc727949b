//! Spot order lists through the gateway to a simulator that serves them: what is allowed
//! reaches Binance byte for byte, re-signed with the real key, and the lists can be
//! queried and cancelled through keygate; a list keygate cannot price never leaves it.

use super::*;

/// A signed `DELETE` with every parameter in the query, as the bot sends it.
async fn delete(env: &Env, path: &str, params: &str) -> (u16, Value) {
    let target = format!("/binance{path}?{}", sign(params, BOT_SECRET));
    raw(env.gateway, &http("DELETE", &target, "", "")).await
}

/// Posts `params` to `path` through the gateway and checks that exactly one request
/// reached the simulator there, carrying the bot's bytes (its `timestamp` restamped),
/// with a signature of the real key over them. Returns the answer.
async fn post_and_check_forwarded(env: &Env, path: &str, params: &str) -> (u16, Value) {
    let before = exchange_saw(env, path);
    let body = sign(params, BOT_SECRET);
    let request = http("POST", &format!("/binance{path}"), "", &body);
    let (status, answer) = raw(env.gateway, &request).await;
    assert_eq!(exchange_saw(env, path), before + 1, "{answer}");
    let forwarded = env
        .exchange
        .simulator()
        .requests()
        .into_iter()
        .rfind(|r| r.path == path)
        .unwrap();
    // keygate stamps the time it sends at (on the exchange's clock) and signs with the
    // real key; every other byte is the bot's, in its order.
    let (payload, _) = body.rsplit_once("&signature=").unwrap();
    let (sent, signature) = forwarded.body.rsplit_once("&signature=").unwrap();
    let real = binance::hmac_signature(REAL_SECRET.as_bytes(), sent.as_bytes());
    assert_eq!(signature, real);
    let after_time = |p: &str| p.split_once('&').unwrap().1.to_owned();
    assert!(sent.starts_with("timestamp="), "{sent}");
    assert_eq!(after_time(sent), after_time(payload));
    assert_eq!(forwarded.query, "");
    assert_eq!(forwarded.api_key.as_deref(), Some(REAL_KEY));
    (status, answer)
}

#[tokio::test]
async fn an_oco_and_an_otoco_reach_the_exchange_and_are_listed_and_cancelled() {
    let env = default_env().await;
    let (status, oco) = post_and_check_forwarded(
        &env,
        "/api/v3/orderList/oco",
        "symbol=BTCUSDT&side=SELL&quantity=0.05&aboveType=LIMIT_MAKER&abovePrice=62000\
         &belowType=STOP_LOSS_LIMIT&belowStopPrice=58000&belowPrice=57900\
         &belowTimeInForce=GTC&listClientOrderId=kg-oco",
    )
    .await;
    assert_eq!(status, 200, "{oco}");
    assert_eq!(oco["contingencyType"], "OCO");
    assert_eq!(oco["listStatusType"], "EXEC_STARTED");
    let (status, otoco) = post_and_check_forwarded(
        &env,
        "/api/v3/orderList/otoco",
        "symbol=BTCUSDT&workingType=LIMIT&workingSide=BUY&workingPrice=59000\
         &workingQuantity=0.03&workingTimeInForce=GTC&pendingSide=SELL&pendingQuantity=0.03\
         &pendingAboveType=LIMIT_MAKER&pendingAbovePrice=65000\
         &pendingBelowType=STOP_LOSS&pendingBelowStopPrice=55000&listClientOrderId=kg-otoco",
    )
    .await;
    assert_eq!(status, 200, "{otoco}");
    assert_eq!(otoco["orders"].as_array().map(Vec::len), Some(3));

    // Both are open, as the bot reads them through keygate.
    let (status, open) = get(&env, "/api/v3/openOrderList", "").await;
    assert_eq!(status, 200, "{open}");
    let ids: Vec<&Value> = open
        .as_array()
        .unwrap()
        .iter()
        .map(|l| &l["orderListId"])
        .collect();
    assert_eq!(ids, [&oco["orderListId"], &otoco["orderListId"]]);
    let (status, one) = get(
        &env,
        "/api/v3/orderList",
        &format!("orderListId={}", oco["orderListId"]),
    )
    .await;
    assert_eq!((status, &one["listClientOrderId"]), (200, &json!("kg-oco")));

    // The OCO cancelled as a list, the OTOCO by one of its legs.
    let (status, cancelled) = delete(
        &env,
        "/api/v3/orderList",
        &format!("symbol=BTCUSDT&orderListId={}", oco["orderListId"]),
    )
    .await;
    assert_eq!(status, 200, "{cancelled}");
    assert_eq!(cancelled["listStatusType"], "ALL_DONE");
    let (status, by_leg) = delete(
        &env,
        "/api/v3/order",
        &format!("symbol=BTCUSDT&orderId={}", otoco["orders"][0]["orderId"]),
    )
    .await;
    assert_eq!(status, 200, "{by_leg}");
    assert_eq!(by_leg["orderListId"], otoco["orderListId"]);
    assert_eq!(by_leg["listOrderStatus"], "ALL_DONE");
    let (_, open) = get(&env, "/api/v3/openOrderList", "").await;
    assert_eq!(open, json!([]));
    let (_, account) = get(&env, "/api/v3/account", "").await;
    let btc = account["balances"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["asset"] == "BTC")
        .unwrap()
        .clone();
    assert_eq!(btc["locked"], "0.00000000", "{btc}");
}

/// A list whose pending leg is a market buy cannot be priced by keygate: refused, and
/// never sent, while the same list with a priced leg reaches the simulator and is placed.
#[tokio::test]
async fn a_list_with_a_market_buy_leg_never_reaches_the_exchange() {
    let env = default_env().await;
    let oto = "symbol=BTCUSDT&workingType=LIMIT_MAKER&workingSide=SELL&workingPrice=61000\
               &workingQuantity=0.01&pendingSide=BUY&pendingQuantity=0.01";
    let (status, body) = post(
        &env,
        "/api/v3/orderList/oto",
        &format!("{oto}&pendingType=MARKET"),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_i64()),
        (400, Some(-1100)),
        "{body}"
    );
    assert_eq!(exchange_saw(&env, "/api/v3/orderList/oto"), 0);
    let (status, placed) = post_and_check_forwarded(
        &env,
        "/api/v3/orderList/oto",
        &format!("{oto}&pendingType=LIMIT&pendingPrice=59000&pendingTimeInForce=GTC"),
    )
    .await;
    assert_eq!(status, 200, "{placed}");
    assert_eq!(placed["orderReports"][1]["status"], "PENDING_NEW");
}
