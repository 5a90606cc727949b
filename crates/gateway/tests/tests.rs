//! The request path over real sockets: a gateway on 127.0.0.1 in front of the Binance
//! simulator, driven with raw HTTP so that every byte of an attack is what we wrote.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod order_lists;
mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;
use keygate_audit::AuditKey;
use keygate_core::{AdminEvent, ClientStatus, Event, EventBody, Name, Policy, Scope};
use keygate_exchanges::binance;
use keygate_gateway::registry::Live;
use keygate_gateway::weight::WeightGauge;
use keygate_gateway::{ClientLimits, Server};
use keygate_mockex::{Credential, RunningSimulator};
use keygate_monitor::{Alert, AlertRule, Alerter, Severity};
use keygate_store::{ClientKeyMaterial, NewClient, Store};
use keygate_vault::{MasterKey, SecretString};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{
    gateway_behind, trading_policy, Bot, BOT_KEY, BOT_SECRET, REAL_KEY, REAL_SECRET,
};

struct Env {
    dir: tempfile::TempDir,
    db: std::path::PathBuf,
    exchange: RunningSimulator,
    gateway: SocketAddr,
    server: Option<Server>,
    audit_key: AuditKey,
    /// What the gateway raised through its alerter.
    alerts: std::sync::mpsc::Receiver<Alert>,
    /// The request weight the gateway saw reported.
    weight: Arc<WeightGauge>,
    /// The gateway's live view, as its reloader keeps it.
    live: Arc<Live>,
}

async fn setup(policy: Policy, upstream: Option<String>, upstream_timeout: Duration) -> Env {
    let material = ClientKeyMaterial::Hmac(SecretString::new(BOT_SECRET.into()));
    setup_with(
        policy,
        upstream,
        upstream_timeout,
        material,
        ClientLimits::default(),
        vec![],
    )
    .await
}

/// A gateway for a trading client with `limits`, as `keygate serve`'s options set them.
async fn with_limits(limits: ClientLimits) -> Env {
    let material = ClientKeyMaterial::Hmac(SecretString::new(BOT_SECRET.into()));
    setup_with(
        trading_policy(),
        None,
        Duration::from_secs(10),
        material,
        limits,
        vec![],
    )
    .await
}

/// Waits, if need be, until the current minute has more than ten seconds left: the
/// simulator's weight, like Binance's, counts per minute, and so do keygate's shares.
/// Each test that calls it takes well under a second alone (ten times that on a loaded
/// machine); one that sends more says how long it needs
/// ([`clear_of_a_minute_turn_for`]).
async fn clear_of_a_minute_turn() {
    clear_of_a_minute_turn_for(Duration::from_secs(10)).await;
}

/// Waits, if need be, until the current minute has more than `needed` left.
async fn clear_of_a_minute_turn_for(needed: Duration) {
    let needed_ms = u64::try_from(needed.as_millis()).unwrap().min(59_000);
    let into_minute = keygate_gateway::now_ms() % 60_000;
    if into_minute + needed_ms > 60_000 {
        tokio::time::sleep(Duration::from_millis(60_100 - into_minute)).await;
    }
}

async fn setup_with(
    policy: Policy,
    upstream: Option<String>,
    upstream_timeout: Duration,
    material: ClientKeyMaterial,
    limits: ClientLimits,
    trusted_proxies: Vec<IpNet>,
) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let exchange = keygate_mockex::spawn(
        "127.0.0.1:0".parse().unwrap(),
        vec![Credential::hmac(REAL_KEY, REAL_SECRET)],
    )
    .await
    .unwrap();
    let upstream = upstream.unwrap_or_else(|| exchange.url());
    let bot = Bot { material, policy };
    let (gateway, audit_key, live) = gateway_behind(
        dir.path(),
        &upstream,
        bot,
        upstream_timeout,
        trusted_proxies,
    );
    let (alerter, alerts) = Alerter::channel();
    let gateway = gateway.with_client_limits(limits).with_alerter(alerter);
    let db = dir.path().join("keygate.db");
    // Two workers, as on a two-core machine: consecutive connections land on different
    // workers, so replay and policy state are checked across them.
    let server = Server::start("127.0.0.1:0".parse().unwrap(), 2, &gateway).unwrap();
    Env {
        weight: gateway.weight_gauge(),
        dir,
        db,
        exchange,
        gateway: server.local_addr(),
        server: Some(server),
        audit_key,
        alerts,
        live,
    }
}

impl Env {
    /// The vault's master key, as `gateway_over` left it in the key file.
    fn master(&self) -> MasterKey {
        MasterKey::from_key_file(&self.dir.path().join("master.key")).unwrap()
    }

    /// Runs `sql` on the database behind keygate's back, as someone with write access but
    /// not the master key would, then waits until the gateway has taken it.
    async fn edit_by_hand(&self, sql: &str) {
        let mut store = Store::open(&self.db).unwrap();
        store.connection().execute_batch(sql).unwrap();
        // Bumps the generation, as every change keygate makes does.
        store
            .transaction(|_| Ok::<_, keygate_store::Error>(()))
            .unwrap();
        self.taken().await;
    }

    /// Waits until the gateway has taken the store as it is now: loaded its current
    /// generation, or refused every client for a reload that failed (a fixed sleep
    /// checked nothing when the reload came late, on a loaded machine). While every
    /// client is refused already, that is taken at once: use [`Env::loaded`] to wait
    /// for a reload that should succeed.
    async fn taken(&self) {
        let generation = Store::open(&self.db).unwrap().generation().unwrap();
        self.until(&format!("took generation {generation}"), |live| {
            live.generation() >= Some(generation) || live.failure().is_some()
        })
        .await;
    }

    /// Waits until the gateway has loaded the store's current generation.
    async fn loaded(&self) {
        let generation = Store::open(&self.db).unwrap().generation().unwrap();
        self.until(&format!("loaded generation {generation}"), |live| {
            live.generation() >= Some(generation)
        })
        .await;
    }

    /// Waits, polling for at most ten seconds, until `done` holds of the gateway's live
    /// view; fails saying the gateway never `what`.
    async fn until(&self, what: &str, done: impl Fn(&Live) -> bool) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !done(&self.live) {
            assert!(
                std::time::Instant::now() < deadline,
                "the gateway never {what}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Revokes the active client `name`, as `keygate client revoke` would.
    fn revoke(&self, name: &Name) {
        let master = self.master();
        Store::open(&self.db)
            .unwrap()
            .transaction(|s| {
                s.set_client_status(name, ClientStatus::Active, ClientStatus::Revoked, &master)
            })
            .unwrap();
    }
}

async fn default_env() -> Env {
    setup(trading_policy(), None, Duration::from_secs(10)).await
}

/// `timestamp=…&PARAMS&recvWindow=10000&signature=…`, signed with `secret`.
fn sign(params: &str, secret: &str) -> String {
    sign_within(params, secret, 10_000)
}

/// `timestamp=…&PARAMS&recvWindow=RECV_WINDOW_MS&signature=…`, signed with `secret`.
fn sign_within(params: &str, secret: &str, recv_window_ms: u64) -> String {
    let mut payload = format!("timestamp={}", keygate_gateway::now_ms());
    if !params.is_empty() {
        payload = format!("{payload}&{params}");
    }
    payload.push_str(&format!("&recvWindow={recv_window_ms}"));
    let signature = binance::hmac_signature(secret.as_bytes(), payload.as_bytes());
    format!("{payload}&signature={signature}")
}

/// `PAYLOAD&signature=…`: `payload` signed with `secret` exactly as it is.
fn sign_exactly(payload: &str, secret: &str) -> String {
    let signature = binance::hmac_signature(secret.as_bytes(), payload.as_bytes());
    format!("{payload}&signature={signature}")
}

/// `timestamp=…&recvWindow=…&signature=…`, the `n`th of requests signed within the same
/// millisecond: each has its own `recvWindow`, so that none is a replay of another.
fn sign_nth(n: u64, secret: &str) -> String {
    // Never `sign("")`'s window (10000): a request signed by each in the same millisecond
    // would have one signature, and the second be refused as a replay (a flaky test).
    let payload = format!(
        "timestamp={}&recvWindow={}",
        keygate_gateway::now_ms(),
        20_000 + n
    );
    sign_exactly(&payload, secret)
}

/// The form body `timestamp=…&PARAMS&recvWindow=10000&signature=…` of a request whose
/// query is `query`: signed over the query followed by the body, as Binance signs a
/// request with parameters in both.
fn sign_body_after(query: &str, params: &str, secret: &str) -> String {
    let body = format!(
        "timestamp={}&{params}&recvWindow=10000",
        keygate_gateway::now_ms()
    );
    let signature = binance::hmac_signature(secret.as_bytes(), format!("{query}{body}").as_bytes());
    format!("{body}&signature={signature}")
}

/// A whole HTTP answer: status, headers (names in lower case) and body as sent.
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Answer {
    /// The values of header `name` (lower case).
    fn header(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::String(self.body.clone()))
    }
}

/// Sends `request` byte for byte and reads the whole answer (the connection closes).
async fn exchange_raw(addr: SocketAddr, request: &[u8]) -> Answer {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Answer {
        status,
        headers,
        body: body.to_owned(),
    }
}

/// Sends `request` byte for byte and returns (status, JSON body).
async fn raw(addr: SocketAddr, request: &[u8]) -> (u16, Value) {
    let answer = exchange_raw(addr, request).await;
    (answer.status, answer.json())
}

fn http(method: &str, target: &str, extra_headers: &str, body: &str) -> Vec<u8> {
    http_as(BOT_KEY, method, target, extra_headers, body)
}

/// A request with `api_key` in `X-MBX-APIKEY`.
fn http_as(api_key: &str, method: &str, target: &str, extra_headers: &str, body: &str) -> Vec<u8> {
    let content_type = if body.is_empty() {
        String::new()
    } else {
        "Content-Type: application/x-www-form-urlencoded\r\n".to_owned()
    };
    format!(
        "{method} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-MBX-APIKEY: {api_key}\r\n{content_type}{extra_headers}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

async fn get(env: &Env, path: &str, params: &str) -> (u16, Value) {
    raw(
        env.gateway,
        &http(
            "GET",
            &format!("/binance{path}?{}", sign(params, BOT_SECRET)),
            "",
            "",
        ),
    )
    .await
}

/// A signed `GET /api/v3/account` with the key `api_key` and its secret.
async fn read_account_as(env: &Env, api_key: &str, secret: &str) -> (u16, Value) {
    let target = format!("/binance/api/v3/account?{}", sign("", secret));
    raw(env.gateway, &http_as(api_key, "GET", &target, "", "")).await
}

/// The events in the log that `pick` picks, as JSON, oldest first, once there are at
/// least `n` of them (waiting up to five seconds for the audit writer).
async fn events_where(env: &Env, n: usize, pick: impl Fn(&Value) -> bool) -> Vec<Value> {
    let mut picked = Vec::new();
    for _ in 0..100 {
        let store = Store::open(&env.db).unwrap();
        picked = keygate_audit::read_unverified(&store, 1, 10_000)
            .unwrap()
            .iter()
            .map(|(_, e)| serde_json::to_value(e).unwrap())
            .filter(|e| pick(e))
            .collect();
        if picked.len() >= n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    picked
}

async fn post(env: &Env, path: &str, params: &str) -> (u16, Value) {
    raw(
        env.gateway,
        &http(
            "POST",
            &format!("/binance{path}"),
            "",
            &sign(params, BOT_SECRET),
        ),
    )
    .await
}

fn exchange_saw(env: &Env, path: &str) -> usize {
    env.exchange
        .simulator()
        .requests()
        .iter()
        .filter(|r| r.path == path)
        .count()
}

#[tokio::test]
async fn an_allowed_read_reaches_the_exchange_signed_with_the_real_key() {
    let env = default_env().await;
    let (status, body) = get(&env, "/api/v3/account", "").await;
    assert_eq!(status, 200, "{body}");
    assert!(body["balances"].is_array());
    let seen = env.exchange.simulator().requests();
    let account = seen
        .iter()
        .find(|r| r.path == "/api/v3/account")
        .expect("forwarded");
    assert_eq!(account.api_key.as_deref(), Some(REAL_KEY));
    assert!(!account.query.contains(BOT_KEY));
}

/// A regression test: Binance reads the funding wallet with a POST
/// (`/sapi/v1/asset/get-funding-asset`, ccxt's `fetch_balance({"type": "funding"})`),
/// which was unknown and so denied to every client. It is a read, and forwarded as one,
/// its body re-signed with the real key.
#[tokio::test]
async fn a_read_binance_takes_as_a_post_is_forwarded_as_a_read() {
    let env = default_env().await;
    let (status, body) = post(&env, "/sapi/v1/asset/get-funding-asset", "asset=USDT").await;
    assert_ne!(body["code"], -2015, "{status} {body}");
    let seen = env.exchange.simulator().requests();
    let read = seen
        .iter()
        .find(|r| r.path == "/sapi/v1/asset/get-funding-asset")
        .expect("forwarded");
    assert_eq!(read.method, "POST");
    assert_eq!(read.api_key.as_deref(), Some(REAL_KEY));
    assert!(read.body.contains("&asset=USDT&"), "{}", read.body);
    let events = events_where(&env, 1, |e| {
        e["path"] == "/sapi/v1/asset/get-funding-asset" && e["allowed"] == true
    })
    .await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["action"], "read", "{}", events[0]);
}

#[tokio::test]
async fn a_path_naming_a_binance_host_reaches_that_host_and_no_other_does() {
    let env = default_env().await;
    let (status, body) = get(&env, "/api.binance.com/api/v3/account", "").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(exchange_saw(&env, "/api/v3/account"), 1);
    for (path, why) in [
        ("/evil.example.com/api/v3/account", "not a Binance host"),
        (
            "/fapi.binance.com/api/v3/account",
            "a host that does not serve /api",
        ),
    ] {
        let (status, body) = get(&env, path, "").await;
        assert_eq!(status, 404, "{why}: {body}");
    }
    // The account read, and the exchange clock keygate asked for before re-signing it
    // (twice: the second time over the connection the first opened).
    let paths: Vec<String> = env
        .exchange
        .simulator()
        .requests()
        .into_iter()
        .map(|r| r.path)
        .collect();
    assert_eq!(paths, ["/api/v3/time", "/api/v3/time", "/api/v3/account"]);
    // The log names the path the exchange was sent, as reconciliation reads it.
    let logged = events_where(&env, 1, |e| e["action"] == "read").await;
    assert_eq!(logged[0]["path"], "/api/v3/account", "{logged:?}");
}

/// A regression test: a withdrawal the exchange never received (it could not be reached)
/// kept its amount reserved against the client's daily limit, so every retry that day was
/// refused for the limit.
#[tokio::test]
async fn a_withdrawal_that_never_reached_the_exchange_leaves_the_daily_limit_whole() {
    let policy = Policy {
        scopes: [Scope::Read, Scope::Withdraw].into_iter().collect(),
        withdrawal_addresses: ["TRX:TColdWallet1".parse().unwrap()].into_iter().collect(),
        max_daily_withdrawal: [("USDT".to_owned(), rust_decimal::Decimal::from(10))]
            .into_iter()
            .collect(),
        ..Policy::default()
    };
    let env = setup(
        policy,
        Some("http://127.0.0.1:9".into()),
        Duration::from_secs(10),
    )
    .await;
    let path = "/sapi/v1/capital/withdraw/apply";
    let all = "coin=USDT&network=TRX&address=TColdWallet1&amount=10";
    let (first, body) = post(&env, path, all).await;
    assert_eq!(first, 502, "{body}");
    // Signed in another millisecond: the same parameters signed in the same one are the
    // same signature, refused as a replay (the first fails fast: nothing listens there).
    let signed_first = keygate_gateway::now_ms();
    while keygate_gateway::now_ms() == signed_first {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let (again, body) = post(&env, path, all).await;
    assert_eq!(again, 502, "the retry was refused for the limit: {body}");
}

/// A regression test (found by review): a withdrawal whose signature did not verify was
/// recorded as an unknown action, so the monitor raised no withdrawal alert for it, only
/// a burst after several. It is recorded as the withdrawal its endpoint is.
#[tokio::test]
async fn a_withdrawal_with_a_signature_that_does_not_verify_is_recorded_as_one() {
    let env = default_env().await;
    let (status, body) = raw(
        env.gateway,
        &http(
            "POST",
            "/binance/sapi/v1/capital/withdraw/apply",
            "",
            &sign("coin=USDT&address=TAttacker&amount=10", "not-the-secret"),
        ),
    )
    .await;
    assert_eq!((status, body["code"].clone()), (400, Value::from(-1022)));
    let denied = events_where(&env, 1, |e| e["rule"] == "authentication").await;
    assert_eq!(denied[0]["action"], "withdraw", "{denied:?}");
    assert_eq!(denied[0]["key_of"], "bot1", "{denied:?}");
    assert!(denied[0]["client"].is_null(), "{denied:?}");
    // One refused as a replay, classified by then, is recorded with what it would have
    // moved (found by review: recorded as a bare withdrawal).
    let signed = http(
        "POST",
        "/binance/sapi/v1/capital/withdraw/apply",
        "",
        &sign("coin=USDT&address=TAttacker&amount=10", BOT_SECRET),
    );
    raw(env.gateway, &signed).await;
    let (status, body) = raw(env.gateway, &signed).await;
    assert_eq!(status, 400, "{body}");
    let replayed = events_where(&env, 1, |e| e["rule"] == "replay").await;
    assert_eq!(
        (
            &replayed[0]["action"],
            &replayed[0]["asset"],
            &replayed[0]["amount"]
        ),
        (&json!("withdraw"), &json!("USDT"), &json!("10")),
        "{replayed:?}"
    );
    // So is a stale copy, refused for its timestamp.
    let stale = sign_exactly(
        &format!(
            "coin=BTC&address=TAttacker&amount=3&timestamp={}",
            keygate_gateway::now_ms() - 120_000
        ),
        BOT_SECRET,
    );
    let (status, body) = raw(
        env.gateway,
        &http(
            "POST",
            "/binance/sapi/v1/capital/withdraw/apply",
            "",
            &stale,
        ),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    let stale = events_where(&env, 1, |e| e["asset"] == "BTC").await;
    assert_eq!(
        (&stale[0]["rule"], &stale[0]["client"], &stale[0]["amount"]),
        (&json!("authentication"), &json!("bot1"), &json!("3")),
        "{stale:?}"
    );
    assert_eq!(exchange_saw(&env, "/sapi/v1/capital/withdraw/apply"), 0);
}

#[tokio::test]
async fn withdrawals_reach_the_exchange_only_for_listed_addresses() {
    let policy = Policy {
        scopes: [Scope::Read, Scope::Withdraw].into_iter().collect(),
        withdrawal_addresses: ["TRX:TColdWallet1", "rSharedHot/4242"]
            .into_iter()
            .map(|d| d.parse().unwrap())
            .collect(),
        ..Policy::default()
    };
    let env = setup(policy, None, Duration::from_secs(10)).await;
    let path = "/sapi/v1/capital/withdraw/apply";
    for allowed in [
        "coin=USDT&network=TRX&address=TColdWallet1&amount=10",
        // On a network that takes a tag: the exchange refuses a tag on TRX (-4106).
        "coin=XRP&network=XRP&address=rSharedHot&addressTag=4242&amount=10",
    ] {
        let (status, body) = post(&env, path, allowed).await;
        assert_eq!(status, 200, "{allowed}: {body}");
    }
    for denied in [
        "coin=USDT&network=TRX&address=TAttacker&amount=10",
        // The exchange's shared deposit address, with someone else's tag.
        "coin=XRP&network=XRP&address=rSharedHot&addressTag=666&amount=10",
        "coin=XRP&network=XRP&address=rSharedHot&amount=10",
        // The listed address, on a network it is not listed for, or on the default one.
        "coin=USDT&network=BSC&address=TColdWallet1&amount=10",
        "coin=USDT&address=TColdWallet1&amount=10",
    ] {
        let (status, body) = post(&env, path, denied).await;
        assert_eq!(status, 401, "{denied}: {body}");
        assert!(
            body["msg"].as_str().unwrap().contains("not on the list"),
            "{body}"
        );
    }
    assert_eq!(exchange_saw(&env, path), 2);
    // Each is on record with where it was going, allowed or not.
    let destinations: Vec<(bool, String, Value)> =
        events_where(&env, 7, |e| e["action"] == "withdraw")
            .await
            .into_iter()
            .map(|e| {
                (
                    e["allowed"] == true,
                    e["destination"].as_str().unwrap().to_owned(),
                    e["network"].clone(),
                )
            })
            .collect();
    let trx = Value::from("TRX");
    assert_eq!(
        destinations,
        [
            (true, "TColdWallet1".to_owned(), trx.clone()),
            (true, "rSharedHot/4242".to_owned(), Value::from("XRP")),
            (false, "TAttacker".to_owned(), trx),
            (false, "rSharedHot/666".to_owned(), Value::from("XRP")),
            (false, "rSharedHot".to_owned(), Value::from("XRP")),
            (false, "TColdWallet1".to_owned(), Value::from("BSC")),
            (false, "TColdWallet1".to_owned(), Value::Null),
        ]
    );
}

#[tokio::test]
async fn public_market_data_pauses_before_it_spends_the_weight_orders_need() {
    clear_of_a_minute_turn().await;
    let limits = ClientLimits {
        public_weight_cap: 45,
        ..ClientLimits::default()
    };
    let env = with_limits(limits).await;
    let exchange_info =
        b"GET /binance/api/v3/exchangeInfo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    // Weight 20 each: 20, 40, then 60, the call that crosses the cap still passing.
    for _ in 0..3 {
        assert_eq!(raw(env.gateway, exchange_info).await.0, 200);
    }
    let (status, body) = raw(env.gateway, exchange_info).await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["code"], -1003, "{body}");
    assert!(body["msg"].as_str().unwrap().contains("60"), "{body}");
    assert_eq!(exchange_saw(&env, "/api/v3/exchangeInfo"), 3);
    // A regression test (found by review): the ticker calls that price clients' orders
    // stopped at the same cap, so callers without a key could keep every market order of
    // a client with a notional limit from being decided. They go on past it.
    let (status, body) = post(
        &env,
        "/api/v3/order",
        "symbol=BTCUSDT&side=BUY&type=MARKET&quantity=0.01",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(exchange_saw(&env, "/api/v3/ticker/bookTicker"), 1);
    // Orders go on: the weight was kept for them. Signed reads stop at a cap of their
    // own, halfway to pricing's (56, which the 65 used is past).
    let (status, body) = post(
        &env,
        "/api/v3/order",
        "symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.01&price=50000",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = get(&env, "/api/v3/account", "").await;
    assert_eq!(status, 429, "{body}");
    assert!(
        body["msg"].as_str().unwrap().contains("cap of 56"),
        "{body}"
    );
}

/// Found by review: public data, signed reads and the lookups that price orders paused
/// at their caps by the exchange's count of the address's weight, which one client's
/// orders and cancels raise too; so one trading client's orders (within its share, 4200
/// of spot's 6000 by default) paused every other client's signed reads (from 1500) and
/// the pricing of their orders (from 1800). Those calls count their own weight now.
#[tokio::test]
async fn one_client_s_orders_do_not_pause_others_reads_or_pricing() {
    clear_of_a_minute_turn().await;
    let limits = ClientLimits {
        public_weight_cap: 45,
        ..ClientLimits::default()
    };
    let env = with_limits(limits).await;
    issue_another_client(
        &env,
        "trader",
        HOSTILE_KEY,
        HOSTILE_SECRET,
        read_and_trade(),
    )
    .await;
    // Seventy resting limit buys, weight 1 each: past the caps of signed reads (56) and
    // of pricing (67).
    for n in 0..70 {
        let params = format!(
            "symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.001&price={}",
            40_000 + n
        );
        let target = format!("/binance/api/v3/order?{}", sign(&params, HOSTILE_SECRET));
        let (status, body) = raw(env.gateway, &http_as(HOSTILE_KEY, "POST", &target, "", "")).await;
        assert_eq!(status, 200, "{body}");
    }
    let (status, body) = get(&env, "/api/v3/account", "").await;
    assert_eq!(status, 200, "{body}");
    // The other client's market order, which its notional limit has priced, goes too.
    let (status, body) = post(
        &env,
        "/api/v3/order",
        "symbol=BTCUSDT&side=BUY&type=MARKET&quantity=0.01",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(exchange_saw(&env, "/api/v3/ticker/bookTicker"), 1);
    assert_eq!(exchange_saw(&env, "/api/v3/order"), 71);
}

/// A gateway in front of `upstream` (with a timeout of a second) whose public calls
/// pause at a weight of 45.
async fn capped_at_45(upstream: String) -> Env {
    let limits = ClientLimits {
        public_weight_cap: 45,
        ..ClientLimits::default()
    };
    setup_with(
        trading_policy(),
        Some(upstream),
        Duration::from_secs(1),
        ClientKeyMaterial::Hmac(SecretString::new(BOT_SECRET.into())),
        limits,
        vec![],
    )
    .await
}

/// Found by review: a public call or signed read that never left keygate (the exchange
/// unreachable) kept its weight estimate as spent for the rest of the minute, so after
/// a short outage public data and reads stayed paused at the cap. It is handed back.
#[tokio::test]
async fn calls_that_could_not_be_sent_spend_no_weight() {
    clear_of_a_minute_turn().await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let env = capped_at_45(closed_url).await;
    let exchange_info =
        b"GET /binance/api/v3/exchangeInfo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    // Weight 20 each: three spent would pass the cap of 45, and the fourth be paused.
    for _ in 0..4 {
        let (status, body) = raw(env.gateway, exchange_info).await;
        assert_eq!(status, 502, "{body}");
        assert_eq!(body["code"], -1001, "{body}");
    }
}

/// Found by review: a public weight cap raised past reconciliation's USD-M ceiling let
/// callers without a key hold the futures weight there, and reconciliation never ran.
/// Public data, pricing and reads stop below what the exchange keeps of each pool
/// whatever the cap: on USD-M pricing at 1500 of its 2400, reads at 1250, public data at
/// 1000 (lowered together, so that reads still cannot keep orders from being priced).
#[tokio::test]
async fn raised_caps_leave_the_weight_reconciliation_needs() {
    clear_of_a_minute_turn().await;
    let limits = ClientLimits {
        public_weight_cap: 5_000,
        ..ClientLimits::default()
    };
    let env = with_limits(limits).await;
    let tickers =
        b"GET /binance/fapi/v1/ticker/24hr HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    let mut statuses = Vec::new();
    while statuses.last() != Some(&429) && statuses.len() < 60 {
        statuses.push(raw(env.gateway, tickers).await.0);
    }
    // 40 each: the 25th reaches 1000, and the next is paused.
    assert_eq!(statuses.len(), 26, "{statuses:?}");
    let (status, body) = raw(env.gateway, tickers).await;
    assert_eq!(status, 429, "{body}");
    assert!(
        body["msg"].as_str().unwrap().contains("cap of 1000"),
        "{body}"
    );
}

/// An exchange on loopback that accepts connections and never answers: its URL, and how
/// many connections it accepted.
async fn silent_exchange() -> (String, Arc<std::sync::atomic::AtomicUsize>) {
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", silent.local_addr().unwrap());
    let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = accepted.clone();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            held.push(socket);
        }
    });
    (url, accepted)
}

#[tokio::test]
async fn a_burst_of_public_calls_cannot_pass_the_weight_cap_before_any_answer() {
    clear_of_a_minute_turn().await;
    // An exchange that never answers: every call stays in flight until it times out.
    let (silent_url, accepted) = silent_exchange().await;
    let sent = || accepted.load(std::sync::atomic::Ordering::SeqCst);
    let env = capped_at_45(silent_url).await;
    let exchange_info =
        b"GET /binance/api/v3/exchangeInfo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    // Weight 20 reserved each: 0, 20 and 40 in flight are below the cap of 45.
    let in_flight: Vec<_> = (0..3)
        .map(|_| tokio::spawn(raw(env.gateway, exchange_info)))
        .collect();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while sent() < 3 {
        assert!(
            std::time::Instant::now() < deadline,
            "the calls never went out"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // 60 in flight: the next call is refused before any answer reported a weight.
    let (status, body) = raw(env.gateway, exchange_info).await;
    assert_eq!(status, 429, "{body}");
    assert!(
        body["msg"]
            .as_str()
            .unwrap()
            .contains("counted at 60 request weight"),
        "{body}"
    );
    assert_eq!(sent(), 3);
    // They time out without a report of their weight, which the exchange may have counted
    // all the same: it stays spent until the minute turns.
    for call in in_flight {
        assert_eq!(call.await.unwrap().0, 504);
    }
    let (status, body) = raw(env.gateway, exchange_info).await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(sent(), 3);
}

#[tokio::test]
async fn public_market_data_passes_through_without_a_key() {
    let env = default_env().await;
    let (status, body) = raw(
        env.gateway,
        b"GET /binance/api/v3/exchangeInfo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status, 200);
    assert!(body["symbols"].is_array());
    // A bot that sends its key and other credentials along: none of them goes on.
    let request = format!(
        "GET /binance/api/v3/exchangeInfo HTTP/1.1\r\nHost: x\r\nX-MBX-APIKEY: {BOT_KEY}\r\n\
         Authorization: Bearer bot-token\r\nCookie: session=bot\r\nConnection: close\r\n\r\n"
    );
    let (status, body) = raw(env.gateway, request.as_bytes()).await;
    assert_eq!(status, 200, "{body}");
    let seen = env.exchange.simulator().received();
    assert_eq!(seen.len(), 2);
    for received in &seen {
        assert_eq!(received.request.path, "/api/v3/exchangeInfo");
        for header in ["x-mbx-apikey", "authorization", "cookie"] {
            assert_eq!(received.header(header).count(), 0, "{header} was forwarded");
        }
        assert!(!format!("{:?}", received.headers).contains(BOT_KEY));
    }
}

/// Found by review: the exchange's clock was measured every five minutes, and when it
/// moved in between every signed request was refused (-1021) until then. A timestamp the
/// exchange refuses makes the next request measure the clock again.
#[tokio::test]
async fn a_timestamp_the_exchange_refuses_has_its_clock_measured_again() {
    let env = default_env().await;
    assert_eq!(get(&env, "/api/v3/account", "").await.0, 200);
    let measured = || {
        let requests = env.exchange.simulator().requests();
        requests.iter().filter(|r| r.path == "/api/v3/time").count()
    };
    let before = measured();
    env.exchange.simulator().set_clock_offset_ms(-5_000);
    let (status, body) = get(&env, "/api/v3/account", "").await;
    assert_eq!(
        (status, body["code"].as_i64()),
        (400, Some(-1021)),
        "{body}"
    );
    let again = format!("/binance/api/v3/account?{}", sign_nth(1, BOT_SECRET));
    let (mut status, mut body) = raw(env.gateway, &http("GET", &again, "", "")).await;
    let measurements = (before, measured());
    assert!(measurements.1 > before, "the clock was not measured again");
    // A measurement whose round trips both took over a second is not believed, and is
    // tried again ten seconds later (`CLOCK_RETRY`): on a loaded machine the test once
    // failed here in about twenty runs of the suite, with the clock measured again.
    for retry in 2..4 {
        if status == 200 || body["code"].as_i64() != Some(-1021) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10_500)).await;
        let again = format!("/binance/api/v3/account?{}", sign_nth(retry, BOT_SECRET));
        (status, body) = raw(env.gateway, &http("GET", &again, "", "")).await;
    }
    assert_eq!(
        status,
        200,
        "{body}; clock measurements (before, after the first try, now): {:?}",
        (measurements.0, measurements.1, measured())
    );
}

/// Found by review (python-binance): `/time` was passed on to the exchange, so a bot
/// that sets its clock by it (python-binance's `AsyncClient` always does) signed on the
/// exchange's clock, and was refused whenever keygate's host was a second behind the
/// exchange, or more than the bot's window ahead. keygate judges timestamps on its own
/// clock, and now says so when asked.
#[tokio::test]
async fn a_bot_asking_the_exchange_s_clock_is_told_keygate_s() {
    let env = default_env().await;
    env.exchange.simulator().set_clock_offset_ms(5_000);
    let asked_the_exchange = || {
        let requests = env.exchange.simulator().requests();
        requests
            .iter()
            .filter(|r| r.path.ends_with("/time"))
            .count()
    };
    let before = keygate_gateway::now_ms();
    let mut told = Vec::new();
    for path in ["/api/v3/time", "/fapi/v1/time"] {
        let request =
            format!("GET /binance{path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        let answer = exchange_raw(env.gateway, request.as_bytes()).await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        assert_eq!(answer.header("content-type"), ["application/json"]);
        told.push(answer.json()["serverTime"].as_u64().unwrap());
    }
    let after = keygate_gateway::now_ms();
    assert!(
        told.iter().all(|t| (before..=after).contains(t)),
        "{told:?} is not keygate's clock, {before}..={after}"
    );
    assert_eq!(asked_the_exchange(), 0);
    let events = events_where(&env, 2, |e| e["outcome"] == "answered_by_keygate").await;
    assert_eq!(events.len(), 2);
    for event in &events {
        assert_eq!(event["action"], "public", "{event}");
        assert_eq!(event["allowed"], true, "{event}");
        assert!(event["upstream_status"].is_null(), "{event}");
    }

    // Signed on that clock, an order is taken, and goes on stamped with the exchange's.
    let order = "symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.01&price=50000";
    let (status, body) = post(&env, "/api/v3/order", order).await;
    assert_eq!(status, 200, "{body}");

    // With parameters it is no call Binance documents: the exchange answers it.
    let known = asked_the_exchange();
    let request =
        b"GET /binance/api/v3/time?symbol=BTCUSDT HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    let (status, body) = raw(env.gateway, request).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(asked_the_exchange(), known + 1);
}

/// Found by review: a 429 for the account's order count (-1015) asked nothing of
/// keygate, which went on sending the account's new orders, and Binance bans an address
/// that goes on after 429s. The account's new orders now wait (ten seconds, spot giving no
/// `Retry-After`), answered as the exchange answers them, and are never sent meanwhile;
/// its cancels and reads go on.
#[tokio::test]
async fn an_account_over_its_order_count_sends_no_new_order_until_asked() {
    let env = default_env().await;
    let simulator = env.exchange.simulator();
    // Clear of the turn of a ten-second window, so that the exchange's count holds.
    let into = keygate_gateway::now_ms() % 10_000;
    if into > 6_000 {
        tokio::time::sleep(Duration::from_millis(10_100 - into)).await;
    }
    simulator.set_orders_per_ten_seconds(1);
    let order = "symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.01&price=50000";
    let (status, placed) = post(&env, "/api/v3/order", order).await;
    assert_eq!(status, 200, "{placed}");
    let (status, body) = post(&env, "/api/v3/order", order).await;
    assert_eq!((status, &body["code"]), (429, &json!(-1015)), "{body}");
    assert_eq!(exchange_saw(&env, "/api/v3/order"), 2);
    // Held back by keygate now, as the exchange would answer it.
    let (status, body) = post(&env, "/api/v3/order", order).await;
    assert_eq!((status, &body["code"]), (429, &json!(-1015)), "{body}");
    let msg = body["msg"].as_str().unwrap();
    assert!(msg.starts_with("keygate: "), "{msg}");
    assert!(msg.contains("placed too many orders"), "{msg}");
    assert_eq!(exchange_saw(&env, "/api/v3/order"), 2);
    // A cancel and a read go on.
    let cancel = format!("symbol=BTCUSDT&orderId={}", placed["orderId"]);
    let target = format!("/binance/api/v3/order?{}", sign(&cancel, BOT_SECRET));
    let (status, body) = raw(env.gateway, &http("DELETE", &target, "", "")).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = get(&env, "/api/v3/account", "").await;
    assert_eq!(status, 200, "{body}");
    let events = events_where(&env, 1, |e| {
        e["rule"] == "exchange_back_off" && e["path"] == "/api/v3/order"
    })
    .await;
    assert_eq!(events.len(), 1, "{events:?}");
    // One alert, a warning, naming the account (found by review: none was raised).
    let alert = env.alerts.try_recv().expect("an exchange_back_off alert");
    assert_eq!(
        (alert.rule, alert.severity),
        (AlertRule::ExchangeBackOff, Severity::Warning)
    );
    assert!(
        alert
            .summary
            .contains("account main placed too many orders"),
        "{}",
        alert.summary
    );
    assert!(env.alerts.try_recv().is_err());
}

#[tokio::test]
async fn orders_inside_policy_are_forwarded_and_outside_are_not() {
    let env = default_env().await;
    let (status, body) = post(
        &env,
        "/api/v3/order",
        "symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.01&price=50000",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(exchange_saw(&env, "/api/v3/order"), 1);

    let denied = [
        (
            "symbol=DOGEUSDT&side=BUY&type=MARKET&quoteOrderQty=10",
            "symbol DOGEUSDT is not allowed for client bot1",
        ),
        (
            "symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=50000",
            "exceeds the limit",
        ),
        // A market order in base quantity is priced from the ticker: 1 BTC ≈ 60000 USDT.
        (
            "symbol=BTCUSDT&side=BUY&type=MARKET&quantity=1",
            "exceeds the limit",
        ),
        // A sell fills at its price or better: 0.38889 BTC at 12600 states 4900 USDT but
        // sells at the market, for about 23000.
        (
            "symbol=BTCUSDT&side=SELL&type=LIMIT&timeInForce=GTC&quantity=0.38889&price=12600",
            "exceeds the limit",
        ),
        // A price on a market order bounds nothing.
        (
            "symbol=BTCUSDT&side=BUY&type=MARKET&quantity=1&price=1",
            "exceeds the limit",
        ),
        // A stop-market buy fills at its trigger or above: 0.08 BTC is 4800 USDT at the
        // market, 9600 once it triggers at 120000.
        (
            "symbol=BTCUSDT&side=BUY&type=STOP_LOSS&quantity=0.08&stopPrice=120000",
            "exceeds the limit",
        ),
    ];
    for (params, why) in denied {
        let (status, body) = post(&env, "/api/v3/order", params).await;
        assert_eq!(status, 401, "{params}: {body}");
        assert_eq!(body["code"], -2015);
        let msg = body["msg"].as_str().unwrap();
        assert!(msg.starts_with("keygate: ") && msg.contains(why), "{msg}");
    }
    // Four of them were priced from the ticker, which keygate asked for once (a price
    // stands for a second; fewer than four times on a machine slow enough to stall).
    assert!(exchange_saw(&env, "/api/v3/ticker/bookTicker") < 4);
    // The spot symbol BTCUSDT on the list is not the USD-M perpetual of the same id.
    let (status, body) = post(
        &env,
        "/fapi/v1/order",
        "symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.001&price=50000",
    )
    .await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(
        body["msg"],
        "keygate: symbol usdm:BTCUSDT is not allowed for client bot1"
    );
    assert_eq!(exchange_saw(&env, "/fapi/v1/order"), 0);
    // The orders of a batch are decided each on its own: top-level parameters do not
    // vouch for them, and a batch whose orders do not read is malformed.
    let (status, body) = post(
        &env,
        "/fapi/v1/batchOrders",
        "symbol=BTCUSDT&side=BUY&type=LIMIT&quantity=0.001&price=1&batchOrders=%5B%7B%22symbol%22%3A%22DOGEUSDT%22%2C%22side%22%3A%22BUY%22%2C%22type%22%3A%22MARKET%22%2C%22quantity%22%3A%221%22%7D%5D",
    )
    .await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(
        body["msg"],
        "keygate: order 1 of 1 in the batch (usdm:DOGEUSDT): symbol usdm:DOGEUSDT is not \
         allowed for client bot1"
    );
    let (status, body) = post(
        &env,
        "/fapi/v1/batchOrders",
        "batchOrders=%5B%7B%22symbol%22%3A%22DOGEUSDT%22%7D%5D",
    )
    .await;
    assert_eq!((status, body["code"].clone()), (400, Value::from(-1100)));
    assert_eq!(exchange_saw(&env, "/fapi/v1/batchOrders"), 0);
    let (status, body) = post(
        &env,
        "/sapi/v1/capital/withdraw/apply",
        "coin=USDT&address=TXYZ&amount=10",
    )
    .await;
    assert_eq!((status, body["code"].clone()), (401, Value::from(-2015)));
    assert_eq!(
        exchange_saw(&env, "/api/v3/order"),
        1,
        "denied orders never reach the exchange"
    );
    assert_eq!(exchange_saw(&env, "/sapi/v1/capital/withdraw/apply"), 0);
}

/// A regression test: a market buy in the base asset was counted at the best ask, though
/// one of more than the best ask offers fills above it (on a thin book, or into asks an
/// attacker placed for a bot with a leaked key to take): it is counted at the ask up to
/// which the book fills it, and refused when the levels listed hold less. The
/// simulator's book offers 1 BTC at each tick above 60000.
#[tokio::test]
async fn a_market_buy_larger_than_the_best_ask_is_priced_at_the_book() {
    let policy = Policy {
        max_order_notional: Some("120000.03".parse().unwrap()),
        ..trading_policy()
    };
    let env = setup(policy, None, Duration::from_secs(10)).await;
    // At the best ask, 2 BTC would be 120000.02; the second comes at 60000.02.
    let (status, body) = post(
        &env,
        "/api/v3/order",
        "symbol=BTCUSDT&side=BUY&type=MARKET&quantity=2",
    )
    .await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(
        body["msg"],
        "keygate: order notional 120000.04 exceeds the limit 120000.03 of client bot1"
    );
    assert_eq!(exchange_saw(&env, "/api/v3/depth"), 1);
    // Found by review: the book was looked up for each such buy, so a client's market
    // buys, each denied, spent the weight that prices every client's orders. It is kept
    // for a second, as the best ask is.
    for n in 0..5 {
        let order = format!("symbol=BTCUSDT&side=BUY&type=MARKET&quantity=2&newClientOrderId=d{n}");
        let (status, body) = post(&env, "/api/v3/order", &order).await;
        assert_eq!(status, 401, "{body}");
    }
    assert_eq!(exchange_saw(&env, "/api/v3/depth"), 1);
    // What the best ask offers is priced at it, with no look at the book; a sell too.
    for order in [
        "symbol=BTCUSDT&side=BUY&type=MARKET&quantity=1",
        "symbol=BTCUSDT&side=SELL&type=MARKET&quantity=2",
    ] {
        let (status, body) = post(&env, "/api/v3/order", order).await;
        assert_eq!(status, 200, "{order}: {body}");
    }
    assert_eq!(exchange_saw(&env, "/api/v3/depth"), 1);
    // More than the 100 levels listed hold: no price, and a limit applies.
    let (status, body) = post(
        &env,
        "/api/v3/order",
        "symbol=BTCUSDT&side=BUY&type=MARKET&quantity=101",
    )
    .await;
    assert_eq!(status, 401, "{body}");
    assert!(
        body["msg"]
            .as_str()
            .unwrap()
            .contains("cannot be determined"),
        "{body}"
    );
    assert_eq!(exchange_saw(&env, "/api/v3/order"), 2);
    // Found by review: the market buy of 1 BTC forwarded above took from the book, so
    // the 101 were priced from a fresh look, not from the book it emptied. Denied buys
    // take nothing: the book they looked at stands for a second.
    assert_eq!(exchange_saw(&env, "/api/v3/depth"), 2);
    let (status, _) = post(
        &env,
        "/api/v3/order",
        "symbol=BTCUSDT&side=BUY&type=MARKET&quantity=2&newClientOrderId=again",
    )
    .await;
    assert_eq!(status, 401);
    assert_eq!(exchange_saw(&env, "/api/v3/depth"), 2);
    // Found by review: only what fills at once takes the book now; a stop buy fills
    // when it triggers (priced at the book, as a market buy, but leaving it as it is
    // when sent), a limit buy at its price, and neither asks for the book again.
    for order in [
        "symbol=BTCUSDT&side=BUY&type=STOP_LOSS&quantity=1&stopPrice=60000",
        "symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=2&price=60000",
    ] {
        let (status, body) = post(&env, "/api/v3/order", order).await;
        assert_ne!(status, 401, "{order}: {body}");
    }
    assert_eq!(exchange_saw(&env, "/api/v3/depth"), 2);
    // Another look once the second is over.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (status, _) = post(
        &env,
        "/api/v3/order",
        "symbol=BTCUSDT&side=BUY&type=MARKET&quantity=2",
    )
    .await;
    assert_eq!(status, 401);
    assert_eq!(exchange_saw(&env, "/api/v3/depth"), 3);
}

/// Found by review: a symbol or client order id Binance refuses (-1100) was recorded as
/// an allowed order first, so a bot's free text stood in the audit log, its CSV export
/// (`x;=HYPERLINK(…)`), a `new_symbol` alert (a domain name, made a link) and every
/// reconciliation's list of symbols. Both are refused before anything is recorded as
/// allowed or sent, in Binance's words.
#[tokio::test]
async fn a_symbol_or_order_id_binance_refuses_is_refused_first() {
    let env = default_env().await;
    for order in [
        "symbol=KEYGATE-UNFREEZE.COM%2FBOT1&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.001&price=50000",
        "symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.001&price=50000\
         &newClientOrderId=x%3B%3DHYPERLINK(A1)%3By",
    ] {
        let (status, body) = post(&env, "/api/v3/order", order).await;
        assert_eq!((status, body["code"].as_i64()), (400, Some(-1100)), "{body}");
        assert!(
            body["msg"].as_str().unwrap().contains("Illegal characters found in parameter"),
            "{body}"
        );
    }
    // Spot takes no `.`, `:` or `/` in one, and says so in its own range (found by
    // review: the futures' range was quoted).
    let dotted = "symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.001\
                  &price=50000&newClientOrderId=bot1.grid%3A7";
    let (status, body) = post(&env, "/api/v3/order", dotted).await;
    assert_eq!(
        (status, body["msg"].as_str()),
        (
            400,
            Some(
                "keygate: Illegal characters found in parameter 'newClientOrderId'; legal \
                 range is '^[a-zA-Z0-9-_]{1,36}$'."
            )
        ),
        "{body}"
    );
    assert_eq!(exchange_saw(&env, "/api/v3/order"), 0);
    // Refused before its signature was checked, each is recorded as about the key it
    // presented (found by review: with no client at all, `audit query --client bot1`
    // and `incident report --client bot1` never showed them).
    let malformed = events_where(&env, 3, |e| e["rule"] == "malformed").await;
    assert_eq!(malformed.len(), 3, "{malformed:?}");
    assert!(
        malformed
            .iter()
            .all(|e| e["key_of"] == "bot1" && e["client"].is_null()),
        "{malformed:?}"
    );
    let (status, body) = post(
        &env,
        "/api/v3/order",
        "symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.001&price=50000\
         &newClientOrderId=x-R4BD3S82abc_1",
    )
    .await;
    assert_eq!(status, 200, "{body}");
}

/// Found by review: an OTO's pending market buy goes once its working order fills,
/// walking the asks, but was priced at the best ask alone. Such a leg is refused before
/// anything is sent; a priced one is forwarded.
#[tokio::test]
async fn a_market_buy_leg_of_an_order_list_is_refused_and_never_forwarded() {
    let env = default_env().await;
    let oto = "symbol=BTCUSDT&workingType=LIMIT&workingSide=SELL&workingPrice=60000\
               &workingQuantity=0.001&workingTimeInForce=GTC&pendingSide=BUY\
               &pendingQuantity=0.001";
    let market = format!("{oto}&pendingType=MARKET");
    let (status, body) = post(&env, "/api/v3/orderList/oto", &market).await;
    assert_eq!(
        (status, body["code"].as_i64()),
        (400, Some(-1100)),
        "{body}"
    );
    assert!(
        body["msg"].as_str().unwrap().contains("pendingType=MARKET"),
        "{body}"
    );
    assert_eq!(exchange_saw(&env, "/api/v3/orderList/oto"), 0);
    let limit = format!("{oto}&pendingType=LIMIT&pendingPrice=50000&pendingTimeInForce=GTC");
    post(&env, "/api/v3/orderList/oto", &limit).await;
    assert_eq!(exchange_saw(&env, "/api/v3/orderList/oto"), 1);
}

/// Found by review: a limit buy pegged to the asks (`priceMatch=OPPONENT_5`) fills at once
/// through the book as a market buy does, and was priced at the best ask when only market
/// buys walked the book. Found by a later review: so does a stop-market buy once it
/// triggers, and one of more than the book holds was counted at its trigger, where the
/// same market buy was refused (a pump into asks placed for it). A stop buy with a limit
/// price fills at that price or better, and is counted at it.
#[tokio::test]
async fn pegged_and_stop_market_buys_are_priced_at_the_book_and_stop_limit_buys_are_not() {
    let policy = Policy {
        symbols: Some(["usdm:BTCUSDT".to_owned()].into_iter().collect()),
        max_order_notional: Some("120000.3".parse().unwrap()),
        ..trading_policy()
    };
    let env = setup(policy, None, Duration::from_secs(10)).await;
    let pegged =
        "symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=2&priceMatch=OPPONENT_5";
    let (status, body) = post(&env, "/fapi/v1/order", pegged).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(
        body["msg"],
        "keygate: order notional 120000.4 exceeds the limit 120000.3 of client bot1"
    );
    assert_eq!(exchange_saw(&env, "/fapi/v1/depth"), 1);
    let stop = "symbol=BTCUSDT&side=BUY&type=STOP_MARKET&quantity=2&stopPrice=60000";
    let (status, body) = post(&env, "/fapi/v1/order", stop).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(
        body["msg"],
        "keygate: order notional 120000.4 exceeds the limit 120000.3 of client bot1"
    );
    // Found by a later review: one whose trigger is above the ask fills from the trigger
    // up, through as much of the book as now lies above the ask: counted at its trigger
    // and the 0.1 the second level stands above the ask, twice (not at its trigger).
    let above = "symbol=BTCUSDT&side=BUY&type=STOP_MARKET&quantity=2&stopPrice=60999.89";
    let (status, body) = post(&env, "/fapi/v1/order", above).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(
        body["msg"],
        "keygate: order notional 121999.98 exceeds the limit 120000.3 of client bot1"
    );
    let stop_limit =
        "symbol=BTCUSDT&side=BUY&type=STOP&quantity=2&stopPrice=60000&price=60000&timeInForce=GTC";
    let (status, body) = post(&env, "/fapi/v1/order", stop_limit).await;
    assert_ne!(status, 401, "{body}");
    assert_eq!(exchange_saw(&env, "/fapi/v1/depth"), 1);
}

/// Found by review: a market sell given in quote (`quoteOrderQty`) was counted at what it
/// raises, though it gives away as much of the base asset as the bids take to raise it
/// (thin bids, or bids placed for it, take far more). Refused under a notional limit; a
/// buy given in quote spends no more than it says, and goes.
#[tokio::test]
async fn a_sell_given_in_its_quote_asset_is_refused_under_a_notional_limit() {
    let env = default_env().await;
    let (status, body) = post(
        &env,
        "/api/v3/order",
        "symbol=BTCUSDT&side=SELL&type=MARKET&quoteOrderQty=100",
    )
    .await;
    assert_eq!(status, 401, "{body}");
    assert!(
        body["msg"]
            .as_str()
            .is_some_and(|m| m.contains("is a sell given in its quote asset")),
        "{body}"
    );
    assert_eq!(exchange_saw(&env, "/api/v3/order"), 0);
    let (status, body) = post(
        &env,
        "/api/v3/order",
        "symbol=BTCUSDT&side=BUY&type=MARKET&quoteOrderQty=100",
    )
    .await;
    assert_eq!(status, 200, "{body}");
}

/// Found by review: market buys sent at once were each priced at the book as it stood,
/// not past what the others were about to take of it, so five of them that each fit the
/// best ask were all counted at it, though on a real book the later ones fill deeper.
/// A buy priced while another in the symbol is on its way is priced after it.
#[tokio::test]
async fn market_buys_on_their_way_together_are_priced_at_the_book_together() {
    let policy = Policy {
        max_order_notional: Some("60000.015".parse().unwrap()),
        ..trading_policy()
    };
    let env = setup(policy, None, Duration::from_secs(10)).await;
    env.exchange
        .simulator()
        .delay_endpoint("/api/v3/order", Duration::from_secs(3));
    let buy =
        |id: &str| format!("symbol=BTCUSDT&side=BUY&type=MARKET&quantity=1&newClientOrderId={id}");
    let first = sent_until_seen(
        &env,
        "/api/v3/order",
        &sign(&buy("first"), BOT_SECRET),
        "/api/v3/order",
    )
    .await;
    // The first takes the 1 BTC at the best ask: the second is priced at the next level.
    let (status, body) = post(&env, "/api/v3/order", &buy("second")).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(
        body["msg"],
        "keygate: order notional 60000.02 exceeds the limit 60000.015 of client bot1"
    );
    assert!(
        !first.is_finished(),
        "the first was answered before the second was priced"
    );
    let (status, body) = first.await.unwrap();
    assert_eq!(status, 200, "{body}");
    // Answered, the first holds nothing of the book any more.
    let (status, body) = post(&env, "/api/v3/order", &buy("third")).await;
    assert_eq!(status, 200, "{body}");
}

/// Found by review: buys priced together (each waiting for the book at once) each read
/// what the others would take before any of them had said, and all six of a burst were
/// counted at the same untouched book. What a buy will take is held before anything is
/// awaited.
#[tokio::test]
async fn market_buys_priced_together_each_see_the_others() {
    let policy = Policy {
        max_order_notional: Some("90000.03".parse().unwrap()),
        ..trading_policy()
    };
    let env = setup(policy, None, Duration::from_secs(10)).await;
    let simulator = env.exchange.simulator();
    simulator.delay_endpoint("/api/v3/depth", Duration::from_millis(300));
    simulator.delay_endpoint("/api/v3/order", Duration::from_secs(3));
    // 1.5 BTC fills to the second level (60000.02): 90000.03; after another such buy, to
    // the third (60000.03): 90000.045, over the limit.
    let buys: Vec<_> = (0..4)
        .map(|n| {
            let buy = http(
                "POST",
                "/binance/api/v3/order",
                "",
                &sign(
                    &format!(
                        "symbol=BTCUSDT&side=BUY&type=MARKET&quantity=1.5&newClientOrderId=b{n}"
                    ),
                    BOT_SECRET,
                ),
            );
            let gateway = env.gateway;
            tokio::spawn(async move { raw(gateway, &buy).await })
        })
        .collect();
    let mut statuses = Vec::new();
    for buy in buys {
        statuses.push(buy.await.unwrap());
    }
    let allowed = statuses.iter().filter(|(status, _)| *status == 200).count();
    assert_eq!(allowed, 1, "{statuses:?}");
    assert!(
        statuses
            .iter()
            .filter(|(status, _)| *status != 200)
            .all(|(status, body)| *status == 401
                && body["msg"]
                    .as_str()
                    .is_some_and(|m| m.contains("exceeds the limit 90000.03"))),
        "{statuses:?}"
    );
}

/// Found by review: a buy priced while another request's held the book (one of more than
/// the book lists, to be refused) was refused as an order that can never be priced
/// (-2015), which bots do not send again. Told as a refusal to send again in a moment
/// (-1003), and the same buy then goes.
#[tokio::test]
async fn a_buy_priced_behind_a_hold_of_the_book_is_told_to_come_again() {
    let env = default_env().await;
    env.exchange
        .simulator()
        .delay_endpoint("/api/v3/depth", Duration::from_secs(2));
    let huge = sent_until_seen(
        &env,
        "/api/v3/order",
        &sign(
            "symbol=BTCUSDT&side=BUY&type=MARKET&quantity=1000",
            BOT_SECRET,
        ),
        "/api/v3/depth",
    )
    .await;
    let buy = "symbol=BTCUSDT&side=BUY&type=MARKET&quantity=0.05&newClientOrderId=behind";
    let (status, body) = post(&env, "/api/v3/order", buy).await;
    assert_eq!(
        (status, body["code"].as_i64()),
        (429, Some(-1003)),
        "{body}"
    );
    let (status, _) = huge.await.unwrap();
    assert_eq!(status, 401);
    let buy = "symbol=BTCUSDT&side=BUY&type=MARKET&quantity=0.05&newClientOrderId=again";
    let (status, body) = post(&env, "/api/v3/order", buy).await;
    assert_eq!(status, 200, "{body}");
}

/// Found by review: a stop buy on its way was held as taking the book, though it takes
/// nothing until it triggers: a client could keep stop buys the exchange refuses on
/// their way to have every other client's market buys in the symbol priced deeper.
#[tokio::test]
async fn a_stop_buy_on_its_way_holds_nothing_of_the_book() {
    let policy = Policy {
        max_order_notional: Some("90000.03".parse().unwrap()),
        ..trading_policy()
    };
    let env = setup(policy, None, Duration::from_secs(10)).await;
    env.exchange
        .simulator()
        .delay_endpoint("/api/v3/order", Duration::from_secs(3));
    let stop = sent_until_seen(
        &env,
        "/api/v3/order",
        &sign(
            "symbol=BTCUSDT&side=BUY&type=STOP_LOSS&quantity=1.4&stopPrice=59000",
            BOT_SECRET,
        ),
        "/api/v3/order",
    )
    .await;
    let (status, body) = post(
        &env,
        "/api/v3/order",
        "symbol=BTCUSDT&side=BUY&type=MARKET&quantity=1.5",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    stop.await.unwrap();
}

/// Found by review: an order list's buy leg that becomes a market buy when it triggers
/// (`aboveType=STOP_LOSS`, or a legacy OCO's stop without `stopLimitPrice`) was counted
/// at its trigger, where the same stop buy on its own is priced at the book.
#[tokio::test]
async fn an_order_list_s_stop_market_buy_leg_is_priced_at_the_book() {
    let policy = Policy {
        max_order_notional: Some("120000.03".parse().unwrap()),
        ..trading_policy()
    };
    let env = setup(policy, None, Duration::from_secs(10)).await;
    for (path, list) in [
        (
            "/api/v3/orderList/oco",
            "symbol=BTCUSDT&side=BUY&quantity=2&aboveType=STOP_LOSS&aboveStopPrice=60000\
             &belowType=LIMIT_MAKER&belowPrice=59000",
        ),
        (
            "/api/v3/order/oco",
            "symbol=BTCUSDT&side=BUY&quantity=2&price=59000&stopPrice=60000",
        ),
    ] {
        let (status, body) = post(&env, path, list).await;
        assert_eq!(status, 401, "{path}: {body}");
        assert_eq!(
            body["msg"],
            "keygate: order notional 120000.04 exceeds the limit 120000.03 of client bot1",
            "{path}"
        );
    }
    assert_eq!(exchange_saw(&env, "/api/v3/orderList/oco"), 0);
    assert_eq!(exchange_saw(&env, "/api/v3/order/oco"), 0);
    // With a limit price the stop leg fills at it or better, and counts at it.
    let (status, body) = post(
        &env,
        "/api/v3/order/oco",
        "symbol=BTCUSDT&side=BUY&quantity=2&price=59000&stopPrice=60000&stopLimitPrice=60000\
         &stopLimitTimeInForce=GTC",
    )
    .await;
    assert_ne!(status, 401, "{body}");
}

/// Found by review: the market buys of a batch were each held to the best ask alone, so
/// five that each fit what it offers walked the book together uncounted. They are priced
/// at the book as one: each at the ask up to which it fills, after those before it.
#[tokio::test]
async fn the_market_buys_of_a_batch_are_priced_at_the_book_together() {
    let policy = Policy {
        symbols: Some(["usdm:BTCUSDT".to_owned()].into_iter().collect()),
        max_order_notional: Some("60000.15".parse().unwrap()),
        ..trading_policy()
    };
    let env = setup(policy, None, Duration::from_secs(10)).await;
    // USD-M's book offers 1 BTC at each tick (0.1) above 60000.
    let json = r#"[{"symbol":"BTCUSDT","side":"BUY","type":"MARKET","quantity":"1"},{"symbol":"BTCUSDT","side":"BUY","type":"MARKET","quantity":"1"}]"#;
    let (status, body) = post(&env, "/fapi/v1/batchOrders", &batch_orders(json)).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(
        body["msg"],
        "keygate: order 2 of 2 in the batch (usdm:BTCUSDT): order notional 60000.2 exceeds the limit 60000.15 of client bot1"
    );
    assert_eq!(exchange_saw(&env, "/fapi/v1/depth"), 1);
    assert_eq!(exchange_saw(&env, "/fapi/v1/batchOrders"), 0);
}

/// `batchOrders=<json>`, percent-encoded as ccxt's `create_orders` sends it.
fn batch_orders(json: &str) -> String {
    let encoded = percent_encoding::utf8_percent_encode(json, percent_encoding::NON_ALPHANUMERIC);
    format!("batchOrders={encoded}")
}

/// A regression test (found by review): a client over its rate was told to retry after
/// a second whatever held it back; after a batch, which counts for the seconds it takes
/// at the rate, a bot that obeyed was refused again and again. It is told when its rate
/// has room.
#[tokio::test]
async fn a_client_over_its_rate_is_told_when_it_has_room() {
    let policy = Policy {
        symbols: Some(["usdm:BTCUSDT".to_owned()].into_iter().collect()),
        rate_per_second: Some(1),
        ..trading_policy()
    };
    let env = setup(policy, None, Duration::from_secs(10)).await;
    let order = r#"{"symbol":"BTCUSDT","side":"BUY","type":"LIMIT","timeInForce":"GTC","quantity":"0.001","price":"50000"}"#;
    let batch = batch_orders(&format!("[{order},{order},{order},{order}]"));
    let (status, body) = post(&env, "/fapi/v1/batchOrders", &batch).await;
    assert_eq!(status, 200, "{body}");
    let single = sign(
        "symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.001&price=50000",
        BOT_SECRET,
    );
    let answer = exchange_raw(
        env.gateway,
        &http("POST", "/binance/fapi/v1/order", "", &single),
    )
    .await;
    assert_eq!(answer.status, 429, "{}", answer.body);
    // Four orders at one a second count four seconds from the batch.
    assert!(
        (3..=4).contains(&retry_after(&answer)),
        "{:?}",
        answer.headers
    );
    assert_eq!(exchange_saw(&env, "/fapi/v1/order"), 0);
}

/// A regression test: `POST /fapi/v1/batchOrders` (ccxt's `create_orders` on
/// binanceusdm) was denied to every client with a symbol list or a notional limit,
/// whatever its orders, since keygate did not read them. A batch is now allowed when each
/// of its orders would be, forwarded as the bot sent it, and recorded order by order; one
/// order off the list or over the limit denies it, and nothing reaches the exchange.
#[tokio::test]
async fn a_batch_is_forwarded_when_each_order_would_be_and_denied_when_one_would_not() {
    let policy = Policy {
        symbols: Some(
            ["usdm:BTCUSDT".to_owned(), "usdm:ETHUSDT".to_owned()]
                .into_iter()
                .collect(),
        ),
        ..trading_policy()
    };
    let env = setup(policy, None, Duration::from_secs(10)).await;
    // A limit buy the request bounds (500 USDT) and a market sell priced from the book
    // ticker (0.5 ETH at its best ask, 3000.01).
    let json = r#"[{"symbol":"BTCUSDT","side":"BUY","type":"LIMIT","timeInForce":"GTC","quantity":"0.01","price":"50000","newClientOrderId":"b-1"},{"symbol":"ETHUSDT","side":"SELL","type":"MARKET","quantity":"0.5"}]"#;
    let batch = batch_orders(json);
    let (status, body) = post(&env, "/fapi/v1/batchOrders", &batch).await;
    assert_eq!(status, 200, "{body}");
    let answers = body.as_array().unwrap();
    assert_eq!(answers.len(), 2, "{body}");
    assert_eq!(answers[0]["clientOrderId"], "b-1", "{body}");
    assert_eq!(answers[1]["symbol"], "ETHUSDT", "{body}");
    // The list went on byte for byte, re-signed with the real key.
    let forwarded: Vec<_> = env
        .exchange
        .simulator()
        .requests()
        .into_iter()
        .filter(|r| r.path == "/fapi/v1/batchOrders")
        .collect();
    assert_eq!(forwarded.len(), 1);
    assert!(
        forwarded[0].body.contains(&format!("&{batch}&")),
        "{}",
        forwarded[0].body
    );
    assert_eq!(forwarded[0].api_key.as_deref(), Some(REAL_KEY));
    // One ticker lookup, for the one order the request does not bound.
    assert_eq!(exchange_saw(&env, "/fapi/v1/ticker/bookTicker"), 1);
    let events = events_where(&env, 1, |e| {
        e["type"] == "request" && e["path"] == "/fapi/v1/batchOrders" && e["allowed"] == true
    })
    .await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(
        events[0]["orders"],
        json!([
            // A limit order, which USD-M can modify in place: its terms are kept.
            {"symbol": "usdm:BTCUSDT", "side": "buy", "client_order_id": "b-1",
             "terms": {"price": "50000", "quantity": "0.01"}, "notional": "500"},
            // Each order's notional, as stated or priced (this one from the ticker).
            {"symbol": "usdm:ETHUSDT", "side": "sell", "notional": "1500.005"}
        ])
    );
    assert_eq!(events[0]["notional"], "2000.005", "{events:?}");

    let denied = [
        (
            r#"[{"symbol":"BTCUSDT","side":"BUY","type":"LIMIT","timeInForce":"GTC","quantity":"0.01","price":"50000"},{"symbol":"DOGEUSDT","side":"BUY","type":"MARKET","quantity":"100"}]"#,
            "keygate: order 2 of 2 in the batch (usdm:DOGEUSDT): symbol usdm:DOGEUSDT is not allowed for client bot1",
        ),
        // 0.1 BTC at 60000 states 6000, over the limit of 5000.
        (
            r#"[{"symbol":"ETHUSDT","side":"BUY","type":"LIMIT","timeInForce":"GTC","quantity":"0.1","price":"3000"},{"symbol":"BTCUSDT","side":"BUY","type":"LIMIT","timeInForce":"GTC","quantity":"0.1","price":"60000"}]"#,
            "keygate: order 2 of 2 in the batch (usdm:BTCUSDT): order notional 6000 exceeds the limit 5000 of client bot1",
        ),
        // A market order in base quantity is priced from the book ticker, as alone (at
        // the best ask, 60000.1).
        (
            r#"[{"symbol":"BTCUSDT","side":"BUY","type":"MARKET","quantity":"0.1"}]"#,
            "keygate: order 1 of 1 in the batch (usdm:BTCUSDT): order notional 6000.01 exceeds the limit 5000 of client bot1",
        ),
    ];
    for (json, msg) in denied {
        let (status, body) = post(&env, "/fapi/v1/batchOrders", &batch_orders(json)).await;
        assert_eq!(status, 401, "{json}: {body}");
        assert_eq!(body["code"], -2015);
        assert_eq!(body["msg"], msg);
    }
    assert_eq!(
        exchange_saw(&env, "/fapi/v1/batchOrders"),
        1,
        "denied batches never reach the exchange"
    );
}

/// Modifying orders in a batch (`PUT /fapi/v1/batchOrders`) is a trade in each symbol it
/// names, and cancelling a batch (`DELETE`) names its top-level symbol: a client held to
/// a symbol list modifies or cancels nothing outside it.
#[tokio::test]
async fn a_batch_modify_or_cancel_keeps_to_the_symbol_list() {
    let policy = Policy {
        symbols: Some(["usdm:BTCUSDT".to_owned()].into_iter().collect()),
        max_order_notional: None,
        ..trading_policy()
    };
    let env = setup(policy, None, Duration::from_secs(10)).await;
    let send = |method: &'static str, params: String| {
        let env = &env;
        async move {
            let request = http(
                method,
                "/binance/fapi/v1/batchOrders",
                "",
                &sign(&params, BOT_SECRET),
            );
            raw(env.gateway, &request).await
        }
    };
    let modify = |symbol: &str| {
        batch_orders(&format!(
            r#"[{{"symbol":"BTCUSDT","side":"BUY","orderId":"1","quantity":"0.01","price":"50000"}},{{"symbol":"{symbol}","side":"SELL","orderId":"2","quantity":"1","price":"3000"}}]"#
        ))
    };
    let (status, body) = send("PUT", modify("ETHUSDT")).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(
        body["msg"],
        "keygate: order 2 of 2 in the batch (usdm:ETHUSDT): symbol usdm:ETHUSDT is not \
         allowed for client bot1"
    );
    let (status, body) = send("DELETE", "symbol=ETHUSDT&orderIdList=%5B1%2C2%5D".into()).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(
        body["msg"],
        "keygate: symbol usdm:ETHUSDT is not allowed for client bot1"
    );
    assert_eq!(exchange_saw(&env, "/fapi/v1/batchOrders"), 0);
    // Within the list, both go on (the simulator does not answer them itself).
    send("PUT", modify("BTCUSDT")).await;
    send("DELETE", "symbol=BTCUSDT&orderIdList=%5B1%2C2%5D".into()).await;
    let methods: Vec<String> = env
        .exchange
        .simulator()
        .requests()
        .into_iter()
        .filter(|r| r.path == "/fapi/v1/batchOrders")
        .map(|r| r.method)
        .collect();
    assert_eq!(methods, ["PUT", "DELETE"]);
}

/// A request that must be refused before it reaches the exchange, and how.
struct Attack {
    name: &'static str,
    request: Vec<u8>,
    /// HTTP status, Binance code and a part of the message the bot gets.
    answer: (u16, i64, &'static str),
    /// The rule its audit event names.
    rule: &'static str,
}

const DUPLICATE: (u16, i64, &str) = (400, -1101, "Duplicate values for a parameter detected.");
const NOT_CANONICAL: (u16, i64, &str) = (400, -1100, "keygate: path is not canonical");

/// Places a USD-M stop in `symbol` at the exchange with the real key, as another bot of
/// the account would; its `algoId`.
async fn place_stop(env: &Env, symbol: &str, trigger: u32) -> String {
    let params = format!(
        "algoType=CONDITIONAL&symbol={symbol}&side=SELL&type=STOP_MARKET&quantity=1\
         &triggerPrice={trigger}"
    );
    let request = http_as(
        REAL_KEY,
        "POST",
        "/fapi/v1/algoOrder",
        "",
        &sign(&params, REAL_SECRET),
    );
    let (status, body) = raw(env.exchange.addr, &request).await;
    assert_eq!(status, 200, "{body}");
    body["algoId"].to_string()
}

/// A regression test (from a review): Binance cancels a conditional order by its
/// account-wide id (`algoId`, `clientAlgoId`) whatever symbol the request names, so a
/// client held to `usdm:BTCUSDT` could cancel another bot's ETHUSDT stop by naming
/// BTCUSDT. keygate now asks the exchange first which symbol the order is in.
#[tokio::test]
async fn a_conditional_order_is_cancelled_only_in_a_symbol_the_client_may_trade() {
    let policy = Policy {
        symbols: Some(["usdm:BTCUSDT".to_owned()].into_iter().collect()),
        ..trading_policy()
    };
    let env = setup(policy, None, Duration::from_secs(10)).await;
    let placed = [
        place_stop(&env, "ETHUSDT", 1000).await,
        place_stop(&env, "BTCUSDT", 40000).await,
    ];
    let cancel = |params: String| async move {
        raw(
            env.gateway,
            &http(
                "DELETE",
                "/binance/fapi/v1/algoOrder",
                "",
                &sign(&params, BOT_SECRET),
            ),
        )
        .await
    };
    // Answered as an order the exchange does not have, naming no symbol (found by review:
    // the answer told a client without the read scope which symbol another bot's order
    // is in); the audit event says which.
    let (status, body) = cancel(format!("symbol=BTCUSDT&algoId={}", placed[0])).await;
    assert_eq!(
        (status, &body),
        (400, &json!({"code": -2011, "msg": "Unknown order sent."}))
    );
    let refused = events_where(&env, 1, |e| e["rule"] == "symbol").await;
    assert_eq!(
        refused[0]["message"],
        "the order this request names is in symbol ETHUSDT, not the one it names, and \
         client bot1 is limited to a symbol list",
        "{}",
        refused[0]
    );
    // The lookup's weight counts, as the exchange reported it.
    let fapi = env
        .weight
        .this_minute(keygate_gateway::now_ms())
        .into_iter()
        .find(|(pool, _)| pool[1] == "/fapi");
    assert!(fapi.as_ref().is_some_and(|(_, used)| *used > 0), "{fapi:?}");
    // An id the exchange does not know (a stop that triggered): answered as the exchange
    // answers it (ccxt's `OrderNotFound`), not as a denial (found by review: -2015, which
    // ccxt raises as `AuthenticationError` and many bots take as fatal), and not sent.
    let (status, body) = cancel("symbol=BTCUSDT&algoId=42".to_owned()).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        matches!(body["code"].as_i64(), Some(-2011 | -2013)),
        "{body}"
    );
    let deletes = |env: &Env| {
        env.exchange
            .simulator()
            .requests()
            .iter()
            .filter(|r| r.method == "DELETE" && r.path == "/fapi/v1/algoOrder")
            .count()
    };
    assert_eq!(deletes(&env), 0);
    let (status, body) = cancel(format!("symbol=BTCUSDT&algoId={}", placed[1])).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(deletes(&env), 1);
}

/// Found by review: the answer for another bot's conditional order, though -2011, lacked
/// the exchange's weight headers that an id it does not have gets, so it still told that
/// the order exists; and a client's own order in another symbol of its list was answered
/// as unknown, which ccxt takes for gone (a live stop left on the book).
#[tokio::test]
async fn a_conditional_order_outside_the_list_looks_as_one_that_does_not_exist() {
    let cancel = |env: &Env, params: String| {
        let request = http(
            "DELETE",
            "/binance/fapi/v1/algoOrder",
            "",
            &sign(&params, BOT_SECRET),
        );
        let gateway = env.gateway;
        async move { exchange_raw(gateway, &request).await }
    };
    let listed = |symbols: &[&str]| Policy {
        symbols: Some(symbols.iter().map(|s| (*s).to_owned()).collect()),
        ..trading_policy()
    };
    let env = setup(listed(&["usdm:BTCUSDT"]), None, Duration::from_secs(10)).await;
    let theirs = place_stop(&env, "ETHUSDT", 1000).await;
    let theirs = cancel(&env, format!("symbol=BTCUSDT&algoId={theirs}")).await;
    let missing = cancel(&env, "symbol=BTCUSDT&algoId=999999".to_owned()).await;
    assert_eq!((theirs.status, missing.status), (400, 400));
    assert_eq!(theirs.body, missing.body);
    let names = |answer: &Answer| -> Vec<String> {
        let mut names: Vec<String> = answer
            .headers
            .iter()
            .map(|(name, _)| name.clone())
            .filter(|name| name != "date")
            .collect();
        names.sort();
        names
    };
    assert_eq!(names(&theirs), names(&missing));
    assert!(
        !theirs.header("x-mbx-used-weight-1m").is_empty(),
        "{:?}",
        theirs.headers
    );

    let env = setup(
        listed(&["usdm:BTCUSDT", "usdm:ETHUSDT"]),
        None,
        Duration::from_secs(10),
    )
    .await;
    let own = place_stop(&env, "ETHUSDT", 1000).await;
    let own = cancel(&env, format!("symbol=BTCUSDT&algoId={own}")).await;
    assert_eq!(own.status, 401, "{}", own.body);
    assert!(own.body.contains("is in symbol ETHUSDT"), "{}", own.body);
}

/// Found by review: once only reads were held back before their decision, a conditional
/// order's cancel by a client held to a symbol list sent its symbol lookup to the exchange
/// during a pause, each attempt bringing a ban nearer for every client.
#[tokio::test]
async fn a_conditional_cancel_sends_no_lookup_during_a_pause() {
    clear_of_a_minute_turn().await;
    let policy = Policy {
        symbols: Some(["usdm:BTCUSDT".to_owned()].into_iter().collect()),
        ..trading_policy()
    };
    let env = setup(policy, None, Duration::from_secs(10)).await;
    pause_with_a_429(&env).await;
    let sent = env.exchange.simulator().requests().len();
    let cancel = http(
        "DELETE",
        "/binance/fapi/v1/algoOrder",
        "",
        &sign("symbol=BTCUSDT&algoId=7", BOT_SECRET),
    );
    let held = exchange_raw(env.gateway, &cancel).await;
    assert_eq!(held.status, 429, "{}", held.body);
    assert_eq!(env.exchange.simulator().requests().len(), sent);
}

/// What a replayed signature is answered.
const REPLAYED: &str = "keygate: this signature was already used; sign the request again (two \
                        requests with the same parameters signed in the same millisecond \
                        have one signature)";

#[tokio::test]
async fn attacks_are_refused_and_never_forwarded() {
    let env = default_env().await;
    let order = "symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.01&price=50000";
    // Each signed anew, and differently, so that no two share a signature: a request
    // refused for one reason must not be refused for another, such as a replay.
    let fresh = |n: u64| sign_nth(n, BOT_SECRET);
    let account = |n: u64| format!("/binance/api/v3/account?{}", fresh(n));
    let get = |target: String| http("GET", &target, "", "");
    let attack = |name, request, answer, rule| Attack {
        name,
        request,
        answer,
        rule,
    };
    let mut attacks = vec![
        // The signature covers every byte, the repeated parameter included: only the
        // duplicate check stands between these and the exchange.
        attack(
            "parameter in query and body",
            http(
                "POST",
                "/binance/api/v3/order?symbol=DOGEUSDT",
                "",
                &sign_body_after("symbol=DOGEUSDT", order, BOT_SECRET),
            ),
            DUPLICATE,
            "malformed",
        ),
        attack(
            "duplicate in query",
            get(format!(
                "/binance/api/v3/openOrders?{}",
                sign_exactly(
                    &format!(
                        "symbol=BTCUSDT&timestamp={}&symbol=DOGEUSDT&recvWindow=10000",
                        keygate_gateway::now_ms()
                    ),
                    BOT_SECRET
                )
            )),
            DUPLICATE,
            "malformed",
        ),
        attack(
            "duplicate in body",
            http(
                "POST",
                "/binance/api/v3/order",
                "",
                &sign(&format!("{order}&quantity=5"), BOT_SECRET),
            ),
            DUPLICATE,
            "malformed",
        ),
        attack(
            "duplicate in another case",
            http(
                "POST",
                "/binance/api/v3/order",
                "",
                &sign(&format!("{order}&Quantity=5"), BOT_SECRET),
            ),
            DUPLICATE,
            "malformed",
        ),
        attack(
            "dot segments",
            get(account(1).replace("/api/v3/account", "/api/v3/../v3/account")),
            NOT_CANONICAL,
            "malformed",
        ),
        attack(
            "encoded slash",
            get(account(2).replace("/api/v3/account", "/api/v3%2Faccount")),
            NOT_CANONICAL,
            "malformed",
        ),
        attack(
            "encoded letter",
            get(account(3).replace("/api/v3/account", "/api/v3/%61ccount")),
            NOT_CANONICAL,
            "malformed",
        ),
        attack(
            "double slash",
            get(account(4).replace("/api/v3/account", "/api//v3/account")),
            NOT_CANONICAL,
            "malformed",
        ),
        attack(
            "trailing semicolon",
            get(account(5).replace("/api/v3/account", "/api/v3/account;")),
            NOT_CANONICAL,
            "malformed",
        ),
        attack(
            "case variant",
            get(account(6).replace("/api/v3/account", "/api/v3/ACCOUNT")),
            (
                401,
                -2015,
                "keygate: endpoint GET /api/v3/ACCOUNT is not known to keygate",
            ),
            "unknown_endpoint",
        ),
        attack(
            "case variant prefix",
            get(account(7).replace("/api/v3/account", "/API/v3/account")),
            (404, -1000, "keygate: unknown endpoint"),
            "unknown_endpoint",
        ),
        attack(
            "stale timestamp",
            get(format!(
                "/binance/api/v3/account?{}",
                sign_exactly(
                    &format!(
                        "timestamp={}&recvWindow=5000",
                        keygate_gateway::now_ms() - 60_000
                    ),
                    BOT_SECRET
                )
            )),
            (
                400,
                -1021,
                "Timestamp for this request is outside of the recvWindow.",
            ),
            "authentication",
        ),
        attack(
            "timestamp ahead",
            get(format!(
                "/binance/api/v3/account?{}",
                sign_exactly(
                    &format!(
                        "timestamp={}&recvWindow=5000",
                        keygate_gateway::now_ms() + 5_000
                    ),
                    BOT_SECRET
                )
            )),
            (
                400,
                -1021,
                "Timestamp for this request was 1000ms ahead of the server's time.",
            ),
            "authentication",
        ),
        attack(
            "wrong signature",
            get(format!(
                "/binance/api/v3/account?{}",
                sign("", "not-the-secret")
            )),
            (400, -1022, "Signature for this request is not valid."),
            "authentication",
        ),
        attack(
            "oversized body",
            http(
                "POST",
                "/binance/api/v3/order",
                "",
                &format!("{}&pad={}", sign(order, BOT_SECRET), "x".repeat(100_000)),
            ),
            (413, -1100, "keygate: request body too large"),
            "malformed",
        ),
        // Signed as sent: only the refusal of a raw `;` keeps a parser that splits there
        // from reading a `stopPrice` keygate never classified.
        attack(
            "raw semicolon in a value",
            http(
                "POST",
                "/binance/api/v3/order",
                "",
                &sign(
                    &order.replace("timeInForce=GTC", "timeInForce=GTC;stopPrice=1"),
                    BOT_SECRET,
                ),
            ),
            (
                400,
                -1100,
                "keygate: a raw ';' in parameters is refused; percent-encode it as %3B",
            ),
            "malformed",
        ),
        attack(
            "json body",
            {
                let body = format!(
                    "{{\"symbol\":\"BTCUSDT\",\"x\":\"{}\"}}",
                    sign(order, BOT_SECRET)
                );
                String::from_utf8(http("POST", "/binance/api/v3/order", "", ""))
                    .unwrap()
                    .replace(
                        "Content-Length: 0\r\n",
                        &format!(
                            "Content-Type: application/json\r\nContent-Length: {}\r\n",
                            body.len()
                        ),
                    )
                    .replace("\r\n\r\n", &format!("\r\n\r\n{body}"))
                    .into_bytes()
            },
            (
                400,
                -1100,
                "keygate: request body must be application/x-www-form-urlencoded",
            ),
            "malformed",
        ),
        attack(
            "unknown endpoint",
            http(
                "POST",
                "/binance/sapi/v1/some/new/endpoint",
                "",
                &fresh(30),
            ),
            (
                401,
                -2015,
                "keygate: endpoint POST /sapi/v1/some/new/endpoint is not known to keygate",
            ),
            "unknown_endpoint",
        ),
        // A regression test: an unsigned call of an endpoint keygate does not know (a
        // futures user data stream takes the API key alone) was told to add a signature.
        attack(
            "unknown endpoint, unsigned",
            http("POST", "/binance/fapi/v1/listenKey", "", ""),
            (
                401,
                -2015,
                "keygate: endpoint POST /fapi/v1/listenKey is not known to keygate",
            ),
            "unknown_endpoint",
        ),
        attack(
            "key management",
            http(
                "POST",
                "/binance/sapi/v1/broker/subAccountApi",
                "",
                &fresh(31),
            ),
            (
                401,
                -2015,
                "keygate: endpoint POST /sapi/v1/broker/subAccountApi manages keys and is never allowed",
            ),
            "key_management",
        ),
        attack(
            "unknown key",
            http_as("nobody", "GET", &account(8), "", ""),
            (401, -2015, "keygate: invalid API-key"),
            "authentication",
        ),
    ];
    // A read the client may make, asked to be taken for another method: a proxy between
    // keygate and the exchange that honoured the header would run what keygate did not
    // decide on.
    for (n, header) in [
        "X-HTTP-Method-Override",
        "X-Method-Override",
        "X-HTTP-Method",
    ]
    .into_iter()
    .enumerate()
    {
        attacks.push(attack(
            "method override",
            http(
                "GET",
                &account(10 + n as u64),
                &format!("{header}: DELETE\r\n"),
                "",
            ),
            (
                400,
                -1100,
                match header {
                    "X-HTTP-Method-Override" => {
                        "keygate: method override header x-http-method-override is not accepted"
                    }
                    "X-Method-Override" => {
                        "keygate: method override header x-method-override is not accepted"
                    }
                    _ => "keygate: method override header x-http-method is not accepted",
                },
            ),
            "malformed",
        ));
    }
    // Found by review: a header that has spot read and answer times in microseconds was
    // dropped, and the bot read milliseconds as microseconds; and a timestamp in
    // microseconds, which futures refuse, was taken on `/fapi`.
    attacks.push(attack(
        "time unit header",
        http("GET", &account(13), "X-MBX-TIME-UNIT: MICROSECOND\r\n", ""),
        (
            400,
            -1100,
            "keygate: X-MBX-TIME-UNIT: keygate reads and forwards times in milliseconds \
             only; send the request without the header",
        ),
        "malformed",
    ));
    let micros = sign_exactly(
        &format!(
            "symbol=BTCUSDT&timestamp={}&recvWindow=20014",
            keygate_gateway::now_ms() * 1000
        ),
        BOT_SECRET,
    );
    attacks.push(attack(
        "a timestamp in microseconds on futures",
        get(format!("/binance/fapi/v1/openOrders?{micros}")),
        (
            400,
            -1100,
            "keygate: timestamp must be in milliseconds outside spot",
        ),
        "malformed",
    ));
    // Replay: the first send is fine, the second must be refused.
    let once = get(account(20));
    assert_eq!(raw(env.gateway, &once).await.0, 200);
    attacks.push(attack(
        "replayed signature",
        once,
        (400, -1021, REPLAYED),
        "replay",
    ));
    // The same signature in upper-case hex, which the exchange would accept as well.
    let target = account(21);
    assert_eq!(raw(env.gateway, &get(target.clone())).await.0, 200);
    let (signed, signature) = target.split_once("&signature=").unwrap();
    let upper = format!("{signed}&signature={}", signature.to_ascii_uppercase());
    attacks.push(attack(
        "replayed signature in upper case",
        get(upper),
        (400, -1021, REPLAYED),
        "replay",
    ));
    // And with every digit percent-encoded, which decodes to the same signature.
    let encoded: String = signature.bytes().map(|b| format!("%{b:02X}")).collect();
    attacks.push(attack(
        "replayed signature percent-encoded",
        get(format!("{signed}&signature={encoded}")),
        (400, -1021, REPLAYED),
        "replay",
    ));
    // Found by review: Binance signs the parameters, not the path, so two reads of
    // different endpoints signed in the same millisecond share one signature (ccxt's
    // `load_markets`); the second was refused as a replay. Both are the bot's own and
    // go through; the signature is still used up for an order or a cancel.
    let params = sign_exactly(
        &format!(
            "symbol=BTCUSDT&timestamp={}&recvWindow=20022",
            keygate_gateway::now_ms()
        ),
        BOT_SECRET,
    );
    for path in ["openOrders", "allOrders"] {
        let read = get(format!("/binance/api/v3/{path}?{params}"));
        assert_eq!(raw(env.gateway, &read).await.0, 200, "{path}");
    }
    attacks.push(attack(
        "a read's signature sent again as a cancel",
        http(
            "DELETE",
            &format!("/binance/api/v3/openOrders?{params}"),
            "",
            "",
        ),
        (400, -1021, REPLAYED),
        "replay",
    ));
    // And a cancel's cannot be sent again as a read (found by review of that fix).
    let params = sign_exactly(
        &format!(
            "symbol=ETHUSDT&timestamp={}&recvWindow=20023",
            keygate_gateway::now_ms()
        ),
        BOT_SECRET,
    );
    let cancel = http(
        "DELETE",
        &format!("/binance/api/v3/openOrders?{params}"),
        "",
        "",
    );
    raw(env.gateway, &cancel).await;
    attacks.push(attack(
        "a cancel's signature sent again as a read",
        get(format!("/binance/api/v3/openOrders?{params}")),
        (400, -1021, REPLAYED),
        "replay",
    ));

    env.exchange.simulator().reset(false);
    for Attack {
        name,
        request,
        answer: (status, code, msg),
        ..
    } in &attacks
    {
        let (got_status, body) = raw(env.gateway, request).await;
        // First: the exchange would answer some of these with the same error.
        let reached = env.exchange.simulator().requests();
        assert!(
            reached.is_empty(),
            "{name} reached the exchange: {:?}",
            reached.iter().map(|r| &r.path).collect::<Vec<_>>()
        );
        assert_eq!(
            (got_status, body["code"].as_i64()),
            (*status, Some(*code)),
            "{name}: {body}"
        );
        assert!(
            body["msg"].as_str().is_some_and(|m| m.contains(msg)),
            "{name}: {body}"
        );
    }
    // Each is on record under its own rule, as not forwarded, in the order sent.
    let denials = events_where(&env, attacks.len(), |e| e["allowed"] == false).await;
    assert_eq!(denials.len(), attacks.len(), "{denials:?}");
    for (attack, event) in attacks.iter().zip(&denials) {
        assert_eq!(event["rule"], attack.rule, "{}: {event}", attack.name);
        assert_eq!(
            event["outcome"], "not_forwarded",
            "{}: {event}",
            attack.name
        );
    }
}

/// Regression: keygate took a GET with a form body, verified and classified it from the
/// body, and forwarded it, though Binance reads a GET's parameters from its query alone:
/// what keygate checked was not what the exchange would read.
/// A regression test (from a review): the bots' listener answered `GET /healthz` with
/// "ok" whatever its state, unaudited, so a load balancer probing it kept sending orders
/// to a gateway that refused them all for an audit log it could not write. Health is the
/// admin listener's (`serve --admin-listen`); here it is a path like any other.
#[tokio::test]
async fn the_bots_listener_has_no_health_endpoint_of_its_own() {
    let env = default_env().await;
    let answer = exchange_raw(
        env.gateway,
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(answer.status, 404, "{}", answer.body);
    let refused = events_where(&env, 1, |e| e["path"] == "/healthz").await;
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(refused[0]["rule"], "unknown_endpoint", "{refused:?}");
}

#[tokio::test]
async fn a_get_or_head_with_a_body_is_refused_and_never_forwarded() {
    let env = default_env().await;
    for method in ["GET", "HEAD"] {
        let request = http(method, "/binance/api/v3/account", "", &sign("", BOT_SECRET));
        let answer = exchange_raw(env.gateway, &request).await;
        assert_eq!(answer.status, 400, "{method}: {:?}", answer.headers);
        if method == "GET" {
            let body = answer.json();
            assert_eq!(body["code"], -1100, "{body}");
            let msg = body["msg"].as_str().unwrap();
            assert!(
                msg.starts_with("keygate: ") && msg.contains("GET"),
                "{body}"
            );
        }
    }
    // Nothing reached the exchange, as the exchange itself tells.
    let probe = format!(
        "GET /__mock/requests HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        env.exchange.addr
    );
    let reached = exchange_raw(env.exchange.addr, probe.as_bytes()).await;
    assert_eq!(reached.status, 200, "{}", reached.body);
    assert_eq!(reached.json(), serde_json::json!([]));
    let denials = events_where(&env, 2, |e| e["allowed"] == false).await;
    assert_eq!(denials.len(), 2, "{denials:?}");
    for event in denials {
        assert_eq!(event["rule"], "malformed", "{event}");
        assert_eq!(event["outcome"], "not_forwarded", "{event}");
    }
    // The same read, signed in its query, goes through.
    let (status, body) = get(&env, "/api/v3/account", "").await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn forwarded_for_from_an_untrusted_peer_is_ignored() {
    let policy = Policy {
        allow_ips: vec!["10.0.0.0/8".parse().unwrap()],
        ..trading_policy()
    };
    let env = setup(policy, None, Duration::from_secs(10)).await;
    let request = http(
        "GET",
        &format!("/binance/api/v3/account?{}", sign("", BOT_SECRET)),
        "X-Forwarded-For: 10.1.2.3\r\n",
        "",
    );
    let (status, body) = raw(env.gateway, &request).await;
    assert_eq!(status, 401, "{body}");
    assert!(body["msg"]
        .as_str()
        .unwrap()
        .contains("127.0.0.1 is not allowed"));
    assert!(env.exchange.simulator().requests().is_empty());
    let denied = events_where(&env, 1, |e| e["rule"] == "source_ip").await;
    assert!(denied[0].get("forwarded_by").is_none(), "{denied:?}");
}

/// A gateway whose trusted proxy is the loopback address the tests connect from, and
/// whose client may call only from 10.1.2.3.
async fn behind_proxy_env() -> Env {
    let policy = Policy {
        allow_ips: vec!["10.1.2.3/32".parse().unwrap()],
        ..trading_policy()
    };
    let material = ClientKeyMaterial::Hmac(SecretString::new(BOT_SECRET.into()));
    setup_with(
        policy,
        None,
        Duration::from_secs(10),
        material,
        ClientLimits::default(),
        vec!["127.0.0.1/32".parse().unwrap()],
    )
    .await
}

/// A regression test: a captured request sent first from an address its client may not
/// use was refused, but its signature was spent already, and the bot's own copy was
/// refused as a replay.
#[tokio::test]
async fn a_request_refused_for_its_source_does_not_spend_its_signature() {
    let env = behind_proxy_env().await;
    let signed = sign_nth(1, BOT_SECRET);
    let from = |forwarded: &str| {
        http(
            "GET",
            &format!("/binance/api/v3/account?{signed}"),
            &format!("X-Forwarded-For: {forwarded}\r\n"),
            "",
        )
    };
    let (status, body) = raw(env.gateway, &from("10.9.9.9")).await;
    assert_eq!(status, 401, "{body}");
    assert!(
        body["msg"]
            .as_str()
            .unwrap()
            .contains("10.9.9.9 is not allowed"),
        "{body}"
    );
    // Recorded with what it would have done (the monitor alerts on a denied withdrawal
    // by its action).
    let foreign = events_where(&env, 1, |e| e["rule"] == "source_ip").await;
    assert_eq!(foreign[0]["action"], "read", "{foreign:?}");
    let (status, body) = raw(env.gateway, &from("10.1.2.3")).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = raw(env.gateway, &from("10.1.2.3")).await;
    assert!(
        body["msg"].as_str().unwrap().contains("already used"),
        "{status} {body}"
    );
    assert_eq!(exchange_saw(&env, "/api/v3/account"), 1);
    // A capture sent long after, from anywhere, is a stale request: it says nothing of
    // the client's address (no source denial, which would alert as a foreign use).
    let stale = sign_exactly(
        &format!("timestamp={}", keygate_gateway::now_ms() - 120_000),
        BOT_SECRET,
    );
    let request = http(
        "GET",
        &format!("/binance/api/v3/account?{stale}"),
        "X-Forwarded-For: 10.9.9.9\r\n",
        "",
    );
    let (status, body) = raw(env.gateway, &request).await;
    assert_eq!((status, &body["code"]), (400, &json!(-1021)), "{body}");
    let refused = events_where(&env, 1, |e| e["rule"] == "authentication").await;
    assert_eq!(refused.len(), 1, "{refused:?}");
    let foreign = events_where(&env, 1, |e| e["rule"] == "source_ip").await;
    assert_eq!(
        foreign.len(),
        1,
        "only the first was a foreign address: {foreign:?}"
    );
}

#[tokio::test]
async fn forwarded_for_from_a_trusted_proxy_names_the_source() {
    let env = behind_proxy_env().await;
    // Each is signed differently, as a bot signs each request.
    let sent = std::cell::Cell::new(0);
    let account = |forwarded: &str| {
        sent.set(sent.get() + 1);
        http(
            "GET",
            &format!(
                "/binance/api/v3/account?{}",
                sign_nth(sent.get(), BOT_SECRET)
            ),
            &forwarded
                .lines()
                .map(|value| format!("X-Forwarded-For: {value}\r\n"))
                .collect::<String>(),
            "",
        )
    };
    let (status, body) = raw(env.gateway, &account("10.1.2.3")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(exchange_saw(&env, "/api/v3/account"), 1);
    let allowed = events_where(&env, 1, |e| e["path"] == "/api/v3/account").await;
    assert_eq!(allowed[0]["source_ip"], "10.1.2.3", "{allowed:?}");
    // Which proxy vouched for it is kept (found by review), on a path no exchange
    // serves too.
    assert_eq!(allowed[0]["forwarded_by"], "127.0.0.1", "{allowed:?}");
    let (status, _) = raw(
        env.gateway,
        &http("GET", "/nowhere", "X-Forwarded-For: 10.9.9.9\r\n", ""),
    )
    .await;
    assert_eq!(status, 404);
    let unrouted = events_where(&env, 1, |e| e["path"] == "/nowhere").await;
    assert_eq!(
        (&unrouted[0]["source_ip"], &unrouted[0]["forwarded_by"]),
        (&json!("10.9.9.9"), &json!("127.0.0.1")),
        "{unrouted:?}"
    );

    env.exchange.simulator().reset(false);
    let unreadable = "X-Forwarded-For does not name the source address";
    for (forwarded, why, msg) in [
        ("10.1.2.3:5678", "a port", unreadable),
        ("junk", "not an address", unreadable),
        (
            "10.1.2.3, junk",
            "a hop the proxy added is junk",
            unreadable,
        ),
        (
            "10.9.9.9",
            "another address",
            "source address 10.9.9.9 is not allowed for client bot1",
        ),
        // The client wrote the allowed address itself; the proxy appended the real one.
        (
            "10.1.2.3, 10.9.9.9",
            "the allowed address left of the real one",
            "source address 10.9.9.9 is not allowed for client bot1",
        ),
        (
            "10.1.2.3\n10.9.9.9",
            "the allowed address in an earlier header",
            "source address 10.9.9.9 is not allowed for client bot1",
        ),
        // A regression test: no header was taken for a request from the proxy itself.
        // The refusal names the proxy (found by review: told as unknown keys probing).
        (
            "",
            "no header",
            "came through trusted proxy 127.0.0.1, and its X-Forwarded-For",
        ),
    ] {
        let (status, body) = raw(env.gateway, &account(forwarded)).await;
        assert_eq!(
            (status, body["code"].as_i64()),
            (401, Some(-2015)),
            "{why}: {body}"
        );
        assert!(
            body["msg"].as_str().is_some_and(|m| m.contains(msg)),
            "{why}: {body}"
        );
    }
    let reached = env.exchange.simulator().requests();
    assert!(
        reached.is_empty(),
        "refused requests reached the exchange: {:?}",
        reached.iter().map(|r| &r.path).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn client_headers_are_not_forwarded() {
    let env = default_env().await;
    let client_headers = [
        ("Authorization", "Bearer bot-token"),
        ("Cookie", "session=bot-cookie"),
        ("X-Forwarded-For", "203.0.113.7"),
        ("Forwarded", "for=203.0.113.7;proto=https"),
        ("X-Real-IP", "203.0.113.7"),
        ("Proxy-Authorization", "Basic Ym90OnByb3h5"),
    ];
    let extra: String = client_headers
        .iter()
        .map(|(name, value)| format!("{name}: {value}\r\n"))
        .collect();
    let (status, body) = raw(
        env.gateway,
        &http(
            "GET",
            &format!("/binance/api/v3/account?{}", sign("", BOT_SECRET)),
            &extra,
            "",
        ),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let order = "symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.01&price=50000";
    let (status, body) = raw(
        env.gateway,
        &http(
            "POST",
            "/binance/api/v3/order",
            &extra,
            &sign(order, BOT_SECRET),
        ),
    )
    .await;
    assert_eq!(status, 200, "{body}");

    let forwarded: Vec<_> = env
        .exchange
        .simulator()
        .received()
        .into_iter()
        .filter(|r| r.request.path != "/api/v3/time")
        .collect();
    let paths: Vec<&str> = forwarded.iter().map(|r| r.request.path.as_str()).collect();
    assert_eq!(paths, ["/api/v3/account", "/api/v3/order"]);
    for received in &forwarded {
        let path = &received.request.path;
        for (name, value) in &client_headers {
            assert_eq!(
                received.header(name).count(),
                0,
                "{path}: {name} was forwarded: {:?}",
                received.headers
            );
            assert!(
                !received.headers.iter().any(|(_, v)| v.contains(value)),
                "{path}: the value of {name} was forwarded: {:?}",
                received.headers
            );
        }
        assert_eq!(
            received.header("x-mbx-apikey").collect::<Vec<_>>(),
            [REAL_KEY],
            "{path}"
        );
        assert!(
            !received.headers.iter().any(|(_, v)| v.contains(BOT_KEY)),
            "{path}: the virtual key was forwarded: {:?}",
            received.headers
        );
    }
}

#[tokio::test]
async fn exchange_answers_reach_the_bot_as_they_came() {
    // No notional limit: the exchange, not keygate, is to refuse the order below.
    let policy = Policy {
        max_order_notional: None,
        ..trading_policy()
    };
    let env = setup(policy, None, Duration::from_secs(10)).await;
    // The request weight the exchange reports, as it reported it. The simulator counts
    // per minute: a read that straddles a turn is made again.
    let probe = format!(
        "GET /__mock/requests HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        env.exchange.addr
    );
    let mut checked = false;
    for _ in 0..3 {
        let minute = keygate_gateway::now_ms() / 60_000;
        let target = format!("/binance/api/v3/account?{}", sign("", BOT_SECRET));
        let answer = exchange_raw(env.gateway, &http("GET", &target, "", "")).await;
        let exchange = exchange_raw(env.exchange.addr, probe.as_bytes()).await;
        if keygate_gateway::now_ms() / 60_000 != minute {
            continue;
        }
        assert_eq!(answer.status, 200, "{}", answer.body);
        for header in ["x-mbx-used-weight-1m", "x-mbx-used-weight"] {
            let used = answer.header(header);
            assert_eq!(used.len(), 1, "{header}: {:?}", answer.headers);
            assert!(used[0].parse::<u64>().unwrap() >= 20, "{header}: {used:?}");
            assert_eq!(used, exchange.header(header), "{header}");
        }
        checked = true;
        break;
    }
    assert!(checked, "every read straddled a minute");

    // An order the exchange refuses (11 BTC to sell, 10 held): its status and body,
    // byte for byte, as the exchange answers them.
    env.exchange.simulator().reset(false);
    let order = "symbol=BTCUSDT&side=SELL&type=LIMIT&timeInForce=GTC&quantity=11&price=70000";
    let answer = exchange_raw(
        env.gateway,
        &http(
            "POST",
            "/binance/api/v3/order",
            "",
            &sign(order, BOT_SECRET),
        ),
    )
    .await;
    let body = answer.json();
    assert_eq!(
        (answer.status, body["code"].as_i64()),
        (400, Some(-2010)),
        "{body}"
    );
    assert_eq!(
        answer.header("content-type"),
        ["application/json"],
        "{:?}",
        answer.headers
    );
    // The very request keygate sent, sent again: the exchange answers it the same.
    let sent = env
        .exchange
        .simulator()
        .requests()
        .into_iter()
        .find(|r| r.path == "/api/v3/order")
        .expect("the order reached the exchange");
    let again = format!(
        "POST /api/v3/order HTTP/1.1\r\nHost: {}\r\nX-MBX-APIKEY: {REAL_KEY}\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{}",
        env.exchange.addr,
        sent.body.len(),
        sent.body
    );
    assert!(sent.query.is_empty(), "{sent:?}");
    let direct = exchange_raw(env.exchange.addr, again.as_bytes()).await;
    assert_eq!(
        (answer.status, answer.body.as_str()),
        (direct.status, direct.body.as_str())
    );
    assert!(
        answer.body.contains("insufficient balance"),
        "{}",
        answer.body
    );
}

/// Regression: keygate passed back only `x-mbx-*` of the exchange's headers, so a bot
/// never saw the `/sapi` request weight Binance reports in `X-SAPI-USED-IP-WEIGHT-1M` and
/// `X-SAPI-USED-UID-WEIGHT-1M` (withdrawals), though the answer is to come back "as it
/// came (status, body, rate-limit headers)".
#[tokio::test]
async fn rate_limit_headers_of_sapi_reads_spot_orders_and_withdrawals_reach_the_bot() {
    let env = default_env().await;
    let target = format!(
        "/binance/sapi/v1/account/apiRestrictions?{}",
        sign("", BOT_SECRET)
    );
    let answer = exchange_raw(env.gateway, &http("GET", &target, "", "")).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    // The only `/sapi` call made: its IP weight alone, in its own header and no other.
    assert_eq!(
        answer.header("x-sapi-used-ip-weight-1m"),
        ["1"],
        "{:?}",
        answer.headers
    );
    assert!(
        answer.header("x-mbx-used-weight-1m").is_empty(),
        "{:?}",
        answer.headers
    );

    let order = "symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.01&price=50000";
    let answer = exchange_raw(
        env.gateway,
        &http(
            "POST",
            "/binance/api/v3/order",
            "",
            &sign(order, BOT_SECRET),
        ),
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    for header in ["x-mbx-order-count-10s", "x-mbx-order-count-1d"] {
        assert_eq!(
            answer.header(header),
            ["1"],
            "{header}: {:?}",
            answer.headers
        );
    }
    assert_eq!(
        answer.header("x-mbx-used-weight-1m").len(),
        1,
        "{:?}",
        answer.headers
    );

    let policy = Policy {
        scopes: [Scope::Withdraw].into_iter().collect(),
        withdrawal_addresses: ["TRX:TColdWallet1".parse().unwrap()].into_iter().collect(),
        ..Policy::default()
    };
    let env = setup(policy, None, Duration::from_secs(10)).await;
    let withdraw = "coin=USDT&network=TRX&address=TColdWallet1&amount=10";
    let answer = exchange_raw(
        env.gateway,
        &http(
            "POST",
            "/binance/sapi/v1/capital/withdraw/apply",
            "",
            &sign(withdraw, BOT_SECRET),
        ),
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(
        answer.header("x-sapi-used-uid-weight-1m"),
        ["900"],
        "{:?}",
        answer.headers
    );
}

#[tokio::test]
async fn a_market_order_whose_price_cannot_be_had_is_refused() {
    let env = default_env().await;
    env.exchange.simulator().withhold_price("BTCUSDT");
    env.exchange.simulator().reset(false);
    // 0.01 BTC is about 600 USDT, well inside the limit of 5000: if only it could be priced.
    // The exchange answers 503 for the price: the order gets that outage, not a denial.
    let (status, body) = post(
        &env,
        "/api/v3/order",
        "symbol=BTCUSDT&side=BUY&type=MARKET&quantity=0.01",
    )
    .await;
    assert_eq!(
        (status, body["code"].as_i64()),
        (502, Some(-1001)),
        "{body}"
    );
    assert_eq!(
        body["msg"], "keygate: exchange unreachable; request not sent",
        "{body}"
    );
    // keygate asked for the price, and sent nothing else.
    let paths: Vec<String> = env
        .exchange
        .simulator()
        .requests()
        .into_iter()
        .map(|r| r.path)
        .collect();
    assert_eq!(paths, ["/api/v3/ticker/bookTicker"]);
    let refused = events_where(&env, 1, |e| e["allowed"] == false).await;
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(refused[0]["rule"], "exchange_unreachable", "{refused:?}");
    assert_eq!(refused[0]["outcome"], "not_forwarded", "{refused:?}");

    // The same order where the price can be had is priced and forwarded.
    let (status, body) = post(
        &env,
        "/api/v3/order",
        "symbol=ETHUSDT&side=BUY&type=MARKET&quantity=0.1",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(exchange_saw(&env, "/api/v3/order"), 1);
}

/// A regression test: the timestamp window was checked only when a request arrived, and
/// the re-signed request carries a fresh timestamp with the bot's recvWindow. An order
/// that keygate spent longer than that window pricing reached the exchange and executed,
/// though the bot had given up on it and may have sent it again: two orders.
#[tokio::test]
async fn an_order_that_outlives_its_window_while_keygate_prices_it_is_not_forwarded() {
    let env = default_env().await;
    let recv_window_ms = 1000;
    let ticker_delay = Duration::from_millis(recv_window_ms + 1000);
    env.exchange
        .simulator()
        .delay_endpoint("/api/v3/ticker/bookTicker", ticker_delay);
    // A market order in base quantity, for a client with a notional limit: keygate asks
    // the ticker for its price. 0.01 BTC is about 600 USDT, well inside the limit.
    let order = |recv_window_ms: u64| {
        let payload = format!(
            "timestamp={}&symbol=BTCUSDT&side=BUY&type=MARKET&quantity=0.01\
             &recvWindow={recv_window_ms}",
            keygate_gateway::now_ms()
        );
        http(
            "POST",
            "/binance/api/v3/order",
            "",
            &sign_exactly(&payload, BOT_SECRET),
        )
    };
    let (status, body) = raw(env.gateway, &order(recv_window_ms)).await;
    assert_eq!(
        (status, body["code"].as_i64()),
        (400, Some(-1021)),
        "{body}"
    );
    assert_eq!(
        body["msg"], "Timestamp for this request is outside of the recvWindow.",
        "{body}"
    );
    // It was fresh when it arrived (keygate went on to price it), and was never sent.
    let paths: Vec<String> = env
        .exchange
        .simulator()
        .requests()
        .into_iter()
        .map(|r| r.path)
        .collect();
    assert!(
        paths.iter().any(|p| p == "/api/v3/ticker/bookTicker"),
        "{paths:?}"
    );
    assert!(!paths.iter().any(|p| p == "/api/v3/order"), "{paths:?}");
    let refused = events_where(&env, 1, |e| e["path"] == "/api/v3/order").await;
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(refused[0]["allowed"], false, "{refused:?}");
    assert_eq!(refused[0]["rule"], "authentication", "{refused:?}");
    assert_eq!(refused[0]["outcome"], "not_forwarded", "{refused:?}");
    assert!(
        refused[0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("by the time keygate was to forward it")),
        "{refused:?}"
    );

    // The same order with a window the lookup fits in goes through.
    let (status, body) = raw(env.gateway, &order(recv_window_ms + 5000)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(exchange_saw(&env, "/api/v3/order"), 1);
}

/// A regression test: the client's status was read once, when the request arrived, so an
/// order that waited seconds for its price (or its audit event, or the exchange's clock)
/// was sent though its client was frozen meanwhile: a freeze or `keygate panic` did not
/// stop what was already on its way.
#[tokio::test]
async fn a_freeze_made_while_an_order_waits_for_its_price_stops_it() {
    let env = default_env().await;
    env.exchange
        .simulator()
        .delay_endpoint("/api/v3/ticker/bookTicker", Duration::from_millis(2500));
    // A market order in base quantity under a notional limit: keygate asks its price.
    let order = http(
        "POST",
        "/binance/api/v3/order",
        "",
        &sign(
            "symbol=BTCUSDT&side=BUY&type=MARKET&quantity=0.01",
            BOT_SECRET,
        ),
    );
    let gateway = env.gateway;
    let sent = tokio::spawn(async move { raw(gateway, &order).await });
    // Frozen once the order is decided and waits for its price, however slow the machine.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while exchange_saw(&env, "/api/v3/ticker/bookTicker") == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the price was never asked"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut store = Store::open(&env.db).unwrap();
    let master = env.master();
    let bot: Name = "bot1".parse().unwrap();
    store
        .transaction(|s| {
            s.set_client_status(&bot, ClientStatus::Active, ClientStatus::Frozen, &master)
        })
        .unwrap();
    let (status, body) = sent.await.unwrap();
    assert_eq!(
        (status, body["code"].as_i64()),
        (401, Some(-2015)),
        "{body}"
    );
    assert!(
        body["msg"]
            .as_str()
            .is_some_and(|m| m.contains("client bot1 was frozen while the request waited")),
        "{body}"
    );
    assert_eq!(exchange_saw(&env, "/api/v3/order"), 0);
    let refused = events_where(&env, 1, |e| e["path"] == "/api/v3/order").await;
    assert_eq!(refused.len(), 1, "{refused:?}");
    // Not `frozen`: that rule raises dead_key_used ("whoever sent this still holds it"),
    // which this request, sent before the freeze, would make read as the key being used
    // after it.
    assert_eq!(refused[0]["rule"], "policy_changed", "{refused:?}");
    assert_eq!(refused[0]["outcome"], "not_forwarded", "{refused:?}");
}

/// Sends the POST of `signed` (parameters and their signature) to `path` on a task of
/// its own, and waits until the simulator has seen a request to `seen` (the order
/// itself, or a lookup made to decide it): the request is then on its way, or waiting
/// for that lookup.
async fn sent_until_seen(
    env: &Env,
    path: &str,
    signed: &str,
    seen: &str,
) -> tokio::task::JoinHandle<(u16, Value)> {
    let request = http("POST", &format!("/binance{path}"), "", signed);
    let gateway = env.gateway;
    let sent = tokio::spawn(async move { raw(gateway, &request).await });
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while exchange_saw(env, seen) == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "{seen} was never asked"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    sent
}

/// A market order in base quantity under a notional limit, sent at once and waiting (for
/// its price, which the simulator gives `price_delay` late) on a task of its own, once
/// keygate has decided it and asked for its price.
async fn order_waiting_for_its_price(
    env: &Env,
    price_delay: Duration,
) -> tokio::task::JoinHandle<(u16, Value)> {
    env.exchange
        .simulator()
        .delay_endpoint("/api/v3/ticker/bookTicker", price_delay);
    let order = "symbol=BTCUSDT&side=BUY&type=MARKET&quantity=0.01";
    sent_until_seen(
        env,
        "/api/v3/order",
        &sign_within(order, BOT_SECRET, 60_000),
        "/api/v3/ticker/bookTicker",
    )
    .await
}

/// A regression test (found by review): a waiting request was checked against its
/// client's status as it was when the request was sent on, so a freeze made and lifted
/// while an order waited for its price let the order go, though the freeze held for
/// seconds and refused the client's other requests meanwhile.
#[tokio::test]
async fn an_order_waiting_through_a_freeze_is_not_sent_once_unfrozen() {
    let env = default_env().await;
    let sent = order_waiting_for_its_price(&env, Duration::from_secs(8)).await;
    let master = env.master();
    let bot: Name = "bot1".parse().unwrap();
    let set_status = |from, to| {
        Store::open(&env.db)
            .unwrap()
            .transaction(|s| s.set_client_status(&bot, from, to, &master))
            .unwrap();
    };
    set_status(ClientStatus::Active, ClientStatus::Frozen);
    // Unfrozen once the gateway refuses the client as frozen.
    env.loaded().await;
    let (status, body) = get(&env, "/api/v3/account", "").await;
    assert_eq!(status, 401, "{body}");
    assert!(
        body["msg"].as_str().is_some_and(|m| m.contains("frozen")),
        "{body}"
    );
    set_status(ClientStatus::Frozen, ClientStatus::Active);
    env.loaded().await;
    let (status, body) = get(&env, "/api/v3/account", "").await;
    assert_eq!(status, 200, "{body}");
    assert!(!sent.is_finished(), "the price came before the unfreeze");
    let (status, body) = sent.await.unwrap();
    assert_eq!(
        (status, body["code"].as_i64()),
        (401, Some(-2015)),
        "{body}"
    );
    assert!(
        body["msg"]
            .as_str()
            .is_some_and(|m| m.contains("client bot1 was frozen, and let go since, while")),
        "{body}"
    );
    assert_eq!(exchange_saw(&env, "/api/v3/order"), 0);
    let refused = events_where(&env, 1, |e| e["path"] == "/api/v3/order").await;
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(refused[0]["rule"], "policy_changed", "{refused:?}");
    assert_eq!(refused[0]["outcome"], "not_forwarded", "{refused:?}");
    // A new order goes.
    let (status, body) = post(
        &env,
        "/api/v3/order",
        "symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.01&price=50000",
    )
    .await;
    assert_eq!(status, 200, "{body}");
}

/// A regression test (found by review): a request decided before a reload failed (every
/// client refused until one succeeds) was sent once a reload succeeded again, since each
/// client's count of stops began again from nothing: a freeze made and lifted around
/// the failure went unseen.
#[tokio::test]
async fn an_order_waiting_through_a_failed_reload_is_not_sent() {
    let env = default_env().await;
    let sent = order_waiting_for_its_price(&env, Duration::from_secs(8)).await;
    let store = Store::open(&env.db).unwrap();
    let seal: Vec<u8> = store
        .connection()
        .query_row(
            "SELECT value FROM meta WHERE key = 'tables_seal'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    // The seal broken: every reload fails, and every client is refused.
    env.edit_by_hand("UPDATE meta SET value = x'00' WHERE key = 'tables_seal'")
        .await;
    assert_eq!(get(&env, "/api/v3/account", "").await.0, 401);
    // Put back: the next reload succeeds.
    store
        .connection()
        .execute(
            "UPDATE meta SET value = ?1 WHERE key = 'tables_seal'",
            [&seal],
        )
        .unwrap();
    env.loaded().await;
    assert_eq!(get(&env, "/api/v3/account", "").await.0, 200);
    assert!(!sent.is_finished(), "the price came before the reload");
    let (status, body) = sent.await.unwrap();
    assert_eq!(
        (status, body["code"].as_i64()),
        (401, Some(-2015)),
        "{body}"
    );
    assert_eq!(exchange_saw(&env, "/api/v3/order"), 0);
}

/// A regression test (found by review): a request was re-signed with the real key its
/// account had when the request arrived, so an order that waited for its price through
/// `account rotate` reached the exchange with the key just replaced (refused there once
/// the operator deleted it, and signed by a key keygate no longer holds).
#[tokio::test]
async fn an_order_waiting_through_an_account_rotation_is_signed_with_the_new_key() {
    let env = default_env().await;
    let sent = order_waiting_for_its_price(&env, Duration::from_secs(3)).await;
    let master = env.master();
    let new_key = "RotatedRealKeyRotatedRealKeyRotatedRealKeyRotatedRealKey0123456";
    Store::open(&env.db)
        .unwrap()
        .transaction(|s| {
            s.replace_account_credentials(
                &"main".parse().unwrap(),
                &SecretString::new(new_key.into()),
                &SecretString::new("rotated-real-secret".into()),
                &master,
                keygate_gateway::now_ms(),
            )
        })
        .unwrap();
    assert!(!sent.is_finished(), "the price came before the rotation");
    // The simulator does not know the new key, and says so: what matters is which key
    // the order reached it with.
    let (_, body) = sent.await.unwrap();
    let orders: Vec<_> = env
        .exchange
        .simulator()
        .requests()
        .into_iter()
        .filter(|r| r.path == "/api/v3/order")
        .collect();
    assert_eq!(orders.len(), 1, "{body}");
    assert_eq!(orders[0].api_key.as_deref(), Some(new_key), "{body}");
}

/// A regression test: the method, path and message of an event were cut to a bound, but
/// not the symbol or client order id a request names: a bot (or whoever holds its key)
/// could make every refused request cost the log tens of kilobytes.
#[tokio::test]
async fn what_a_request_names_is_kept_in_its_event_up_to_a_bound() {
    let env = default_env().await;
    let symbol = "X".repeat(20_000);
    let order_id = "y".repeat(20_000);
    let (status, body) = post(
        &env,
        "/api/v3/order",
        &format!(
            "symbol={symbol}&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=1\
             &newClientOrderId={order_id}"
        ),
    )
    .await;
    // Refused as Binance would refuse such a symbol (-1100), since the symbol check came.
    assert_eq!(
        (status, body["code"].as_i64()),
        (400, Some(-1100)),
        "{body}"
    );
    let events = events_where(&env, 1, |e| e["path"] == "/api/v3/order").await;
    let event = &events[0];
    for field in ["symbol", "client_order_id", "message"] {
        let text = event[field].as_str().unwrap_or_default();
        assert!(text.len() < 600, "{field}: {} bytes", text.len());
    }
    assert!(
        body.to_string().len() < 2_000,
        "{} bytes",
        body.to_string().len()
    );
}

/// A regression test: the window was checked again after the exchange calls, but before
/// the wait for the order's durable audit event (up to seconds on a busy disk), so an
/// order that outlived its window there was still sent.
#[tokio::test]
async fn an_order_that_outlives_its_window_while_its_event_is_written_is_not_forwarded() {
    let env = default_env().await;
    // Another connection holds the write lock for longer than the order's window, and
    // less than the writer waits for it: the event is written, late.
    let blocker = rusqlite::Connection::open(&env.db).unwrap();
    blocker.execute_batch("BEGIN IMMEDIATE").unwrap();
    // The window (800 ms) leaves time to check and decide the order on a slow machine;
    // the lock is released past it (1100 ms), well within the writer's 2 s wait.
    let signed_at = keygate_gateway::now_ms();
    let payload = format!(
        "timestamp={signed_at}&symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.01\
         &price=50000&recvWindow=800"
    );
    let order = http(
        "POST",
        "/binance/api/v3/order",
        "",
        &sign_exactly(&payload, BOT_SECRET),
    );
    let gateway = env.gateway;
    let sent = tokio::spawn(async move { raw(gateway, &order).await });
    let release_at = signed_at + 1100;
    tokio::time::sleep(Duration::from_millis(
        release_at.saturating_sub(keygate_gateway::now_ms()),
    ))
    .await;
    blocker.execute_batch("ROLLBACK").unwrap();
    let (status, body) = sent.await.unwrap();
    assert_eq!(
        (status, body["code"].as_i64()),
        (400, Some(-1021)),
        "{body}"
    );
    assert_eq!(exchange_saw(&env, "/api/v3/order"), 0);
    // Its durable event is followed by one that says it was not sent, and why.
    let events = events_where(&env, 2, |e| e["path"] == "/api/v3/order").await;
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(events[0]["outcome"], "pending", "{events:?}");
    assert_eq!(
        events[1]["request_id"], events[0]["request_id"],
        "{events:?}"
    );
    assert_eq!(events[1]["allowed"], false, "{events:?}");
    assert_eq!(events[1]["rule"], "authentication", "{events:?}");
    assert_eq!(events[1]["outcome"], "not_forwarded", "{events:?}");
}

/// A regression test: a market order in base quantity for a symbol the exchange does not
/// list had keygate ask the exchange for its price, was denied for want of one, and so
/// never counted against its client's rate; the failed lookup was not remembered either.
/// A bot sending such orders as fast as it could had keygate call the ticker once per
/// order, which gets keygate's address banned by the exchange (429, then 418) for every
/// bot behind it.
#[tokio::test]
async fn market_orders_for_an_unknown_symbol_cannot_flood_the_exchange_with_price_calls() {
    let policy = Policy {
        symbols: None,
        rate_per_second: Some(2),
        ..trading_policy()
    };
    let env = setup(policy, None, Duration::from_secs(10)).await;
    let orders: u64 = 20;
    let started = std::time::Instant::now();
    let mut past_rate = 0;
    for n in 0..orders {
        // Each signed anew: a client order id of its own keeps the signatures apart.
        let params =
            format!("symbol=ZZZZ1USDT&side=SELL&type=MARKET&quantity=1&newClientOrderId=zz{n}");
        let (status, body) = post(&env, "/api/v3/order", &params).await;
        let msg = body["msg"].as_str().unwrap();
        if msg.contains("exceeds its rate") {
            // As the exchange answers too many requests, which clients retry (found by
            // review: as -2015, ccxt took a client over its rate for a dead key).
            assert_eq!(
                (status, body["code"].as_i64()),
                (429, Some(-1003)),
                "{body}"
            );
            past_rate += 1;
        } else {
            assert_eq!(
                (status, body["code"].as_i64()),
                (401, Some(-2015)),
                "{body}"
            );
            assert!(msg.contains("cannot be determined"), "{msg}");
        }
    }
    let seconds = started.elapsed().as_secs();
    // Two orders a second at most are priced (the client's rate), and a failed lookup
    // stands for a second: one ticker call a second, two at a second's edge.
    let asked = exchange_saw(&env, "/api/v3/ticker/bookTicker");
    assert!(asked >= 1, "the order was never priced");
    assert!(
        asked as u64 <= 2 * (seconds + 1),
        "{asked} ticker calls for {orders} orders in {seconds} s"
    );
    assert!(
        past_rate >= orders.saturating_sub(2 * (seconds + 1)),
        "only {past_rate} of {orders} orders counted past the rate in {seconds} s"
    );
    // Past the rate, the bot is told to wait a second.
    let mut answers = Vec::new();
    for n in 0..3 {
        let target = format!("/binance/api/v3/account?{}", sign_nth(100 + n, BOT_SECRET));
        answers.push(exchange_raw(env.gateway, &http("GET", &target, "", "")).await);
    }
    let over = answers
        .iter()
        .find(|a| a.status == 429)
        .expect("three reads in a row pass a rate of two a second");
    assert_eq!(over.header("retry-after"), ["1"], "{}", over.body);
    assert_eq!(exchange_saw(&env, "/api/v3/order"), 0);
}

/// A regression test: the ticker calls keygate makes to price orders were not held to
/// the public weight cap, so orders that need pricing kept spending the weight the cap
/// keeps for signed requests. They pause at half as much again as public data does.
#[tokio::test]
async fn pricing_an_order_pauses_past_the_public_weight_cap() {
    clear_of_a_minute_turn().await;
    let limits = ClientLimits {
        public_weight_cap: 45,
        ..ClientLimits::default()
    };
    let env = with_limits(limits).await;
    let exchange_info =
        b"GET /binance/api/v3/exchangeInfo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    // Weight 20 each: 40 reported, below the cap of 45 and the 56 signed reads stop at; a
    // read of every symbol's open orders (80) takes it past the 67 that pricing may go to.
    for _ in 0..2 {
        assert_eq!(raw(env.gateway, exchange_info).await.0, 200);
    }
    assert_eq!(get(&env, "/api/v3/openOrders", "").await.0, 200);
    // 0.01 BTC is about 600 USDT, inside the limit: but pricing it would take weight.
    let (status, body) = post(
        &env,
        "/api/v3/order",
        "symbol=BTCUSDT&side=BUY&type=MARKET&quantity=0.01",
    )
    .await;
    assert_eq!(
        (status, body["code"].as_i64()),
        (429, Some(-1003)),
        "{body}"
    );
    assert!(
        body["msg"].as_str().unwrap().contains("cap of 67"),
        "{body}"
    );
    assert_eq!(exchange_saw(&env, "/api/v3/ticker/bookTicker"), 0);
    assert_eq!(exchange_saw(&env, "/api/v3/order"), 0);
    let refused = events_where(&env, 1, |e| e["path"] == "/api/v3/order").await;
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(refused[0]["rule"], "weight_reserved", "{refused:?}");
    // An order the request alone bounds needs no price, and goes on.
    let (status, body) = post(
        &env,
        "/api/v3/order",
        "symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.01&price=50000",
    )
    .await;
    assert_eq!(status, 200, "{body}");
}

/// Regression (from a review): the forwarded request was stamped with the exchange's now
/// and kept the bot's recvWindow, so the exchange took it until a whole window after
/// keygate stamped it. A connection to the exchange that took seconds to open could bring
/// an order there after the bot's own window had closed, when the bot may have given up
/// on it and sent it again. Now its timestamp is as old as the bot's was.
#[tokio::test]
async fn a_request_is_forwarded_as_old_as_its_bot_signed_it() {
    let env = default_env().await;
    // keygate refuses what was signed before it started (a keygate before it may have
    // taken it): the bot signs a second before now, once keygate is older than that.
    let age_ms = 1_000;
    tokio::time::sleep(Duration::from_millis(age_ms + 100)).await;
    let signed_at = keygate_gateway::now_ms() - age_ms;
    let payload = format!("timestamp={signed_at}&recvWindow=5000");
    let (status, body) = raw(
        env.gateway,
        &http(
            "GET",
            &format!(
                "/binance/api/v3/account?{}",
                sign_exactly(&payload, BOT_SECRET)
            ),
            "",
            "",
        ),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let seen = env.exchange.simulator().requests();
    let account = seen
        .iter()
        .find(|r| r.path == "/api/v3/account")
        .expect("forwarded");
    let forwarded: u64 = account
        .query
        .split('&')
        .find_map(|p| p.strip_prefix("timestamp="))
        .expect("a timestamp")
        .parse()
        .unwrap();
    assert!(
        forwarded.abs_diff(signed_at) < 300,
        "forwarded timestamp {forwarded}, signed at {signed_at}"
    );
    assert!(
        account.query.contains("recvWindow=5000"),
        "{}",
        account.query
    );
}

/// A regression test (found by review): signed reads reserved no weight and stopped at no
/// cap, "bounded by their clients' rates"; but a rate counts requests, not weight, and a
/// client may have none. A client with only the read scope could read every symbol's
/// open orders (weight 80) until the weight reported passed the cap that pricing stops
/// at: every other client's order that needs a price was refused until the minute
/// turned, and kept up, the address would be banned. Reads now stop at a cap of their own
/// (1500 by default, halfway from public data's 1200 to pricing's 1800); orders and
/// cancels never stop for weight.
#[tokio::test]
async fn a_client_s_heavy_reads_cannot_spend_the_weight_that_prices_others_orders() {
    const READER_KEY: &str = "readerKEYreaderKEYreaderKEYreaderKEYreaderKEYreaderKEYreader0001";
    const READER_SECRET: &str = "readerSECRETreaderSECRETreaderSECRETreaderSECRETreaderSECRET0001";
    clear_of_a_minute_turn().await;
    let env = default_env().await;
    // A second client of the same account, issued with the read scope and no rate.
    let policy = Policy {
        scopes: [Scope::Read].into_iter().collect(),
        ..Policy::default()
    };
    issue_another_client(&env, "reader", READER_KEY, READER_SECRET, policy).await;
    // Every symbol's open orders, weight 80 each: 25 of them would be 2000.
    let mut answers = Vec::new();
    for n in 0..25 {
        let target = format!("/binance/api/v3/openOrders?{}", sign_nth(n, READER_SECRET));
        answers.push(raw(env.gateway, &http_as(READER_KEY, "GET", &target, "", "")).await);
    }
    // Each goes while the client's reads come to less than its share of them, 1200 (the
    // cap of every client's reads, 1500, less a fifth kept for the others' reads: found
    // by review, one client's reads paused everyone's): the 15th takes it to 1200, and
    // the rest wait.
    let forwarded = answers
        .iter()
        .take_while(|(status, _)| *status == 200)
        .count();
    assert_eq!(forwarded, 15, "{answers:?}");
    for (status, body) in &answers[15..] {
        assert_eq!(
            (status, body["code"].as_i64()),
            (&429, Some(-1003)),
            "{body}"
        );
        assert!(
            body["msg"]
                .as_str()
                .unwrap()
                .contains("client reader's signed reads and test orders this minute")
                && body["msg"].as_str().unwrap().contains("at most 1200"),
            "{body}"
        );
    }
    assert_eq!(exchange_saw(&env, "/api/v3/openOrders"), 15);
    let refused = events_where(&env, 10, |e| {
        e["path"] == "/api/v3/openOrders" && e["allowed"] == false
    })
    .await;
    assert_eq!(refused.len(), 10, "{refused:?}");
    assert!(refused
        .iter()
        .all(|e| e["rule"] == "weight_reserved" && e["client"] == "reader"));
    // The other client's market order is still priced (1200 is below pricing's 1800) and
    // forwarded.
    let (status, body) = post(
        &env,
        "/api/v3/order",
        "symbol=BTCUSDT&side=SELL&type=MARKET&quantity=0.01",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(exchange_saw(&env, "/api/v3/ticker/bookTicker"), 1);
    // An order resting on the book, and its cancel: neither is held back for weight.
    place_and_cancel(&env, "/api/v3/order").await;
    // The trading client's own reads go on, until every client's reads reach their cap,
    // the address's: each goes while less than 1500 is used.
    let mut statuses = Vec::new();
    for n in 0..5 {
        let target = format!(
            "/binance/api/v3/openOrders?{}",
            sign_nth(200 + n, BOT_SECRET)
        );
        let (status, body) = raw(env.gateway, &http("GET", &target, "", "")).await;
        statuses.push(status);
        if status == 429 {
            assert!(
                body["msg"].as_str().unwrap().contains("cap of 1500"),
                "{body}"
            );
        }
    }
    let went = statuses.iter().take_while(|s| **s == 200).count();
    assert!((3..=4).contains(&went), "{statuses:?}");
    assert!(statuses[went..].iter().all(|s| *s == 429), "{statuses:?}");
}

/// Issues client `name` of account `main` (HMAC) with `policy`, and waits for the gateway
/// to load it.
async fn issue_another_client(env: &Env, name: &str, key: &str, secret: &str, policy: Policy) {
    let master = env.master();
    Store::open(&env.db)
        .unwrap()
        .transaction(|s| {
            s.insert_client(
                &NewClient {
                    name: name.parse().unwrap(),
                    account: "main".parse().unwrap(),
                    api_key: key.into(),
                    material: ClientKeyMaterial::Hmac(SecretString::new(secret.into())),
                    policy: policy.clone(),
                    expires_ms: Some(keygate_gateway::now_ms() + 3_600_000),
                },
                &master,
                keygate_gateway::now_ms(),
            )
        })
        .unwrap();
    env.taken().await;
}

/// The read and trade scopes, with no limit.
fn read_and_trade() -> Policy {
    Policy {
        scopes: [Scope::Read, Scope::Trade].into_iter().collect(),
        ..Policy::default()
    }
}

/// Places a resting limit buy of the bot's on `path` (`/api/v3/order`, `/fapi/v1/order`)
/// and cancels it, both answered 200.
async fn place_and_cancel(env: &Env, path: &str) {
    let (status, body) = post(
        env,
        path,
        "symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.01&price=50000",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    cancel(env, path, &body["orderId"]).await;
}

/// Cancels the bot's order `order_id` on `path`, answered 200.
async fn cancel(env: &Env, path: &str, order_id: &Value) {
    let params = format!("symbol=BTCUSDT&orderId={order_id}");
    let target = format!("/binance{path}?{}", sign(&params, BOT_SECRET));
    let (status, body) = raw(env.gateway, &http("DELETE", &target, "", "")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "CANCELED", "{body}");
}

const HOSTILE_KEY: &str = "hostileKEYhostileKEYhostileKEYhostileKEYhostileKEYhostileKEY0001";
const HOSTILE_SECRET: &str = "hostileSECREThostileSECREThostileSECREThostileSECREThostileSEC01";

/// A regression test (found by review): a test order places nothing but weighs 20 with
/// `computeCommissionRates`, and was never held back for weight; one client's test orders
/// took the address to the exchange's 429, and every client's cancels were refused until
/// the exchange's wait was over. Test orders are weighed as signed reads now, and stop at
/// their client's share of them (1200), below the cap of every client's (1500), below the
/// exchange's limit.
#[tokio::test]
async fn a_client_s_test_orders_cannot_spend_the_weight_others_cancels_need() {
    clear_of_a_minute_turn().await;
    let env = default_env().await;
    control_simulator(&env, "/__mock/weight-limit?limit=1700").await;
    issue_another_client(
        &env,
        "hostile",
        HOSTILE_KEY,
        HOSTILE_SECRET,
        read_and_trade(),
    )
    .await;
    // A resting order of the other client, to be cancelled after the flood.
    let (status, body) = post(
        &env,
        "/api/v3/order",
        "symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.01&price=50000",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let order_id = body["orderId"].clone();

    let mut answers = Vec::new();
    for n in 0..90 {
        let params = format!(
            "symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.01&price=50000\
             &computeCommissionRates=true&newClientOrderId=probe{n}"
        );
        let body = sign(&params, HOSTILE_SECRET);
        let request = http_as(HOSTILE_KEY, "POST", "/binance/api/v3/order/test", "", &body);
        answers.push(raw(env.gateway, &request).await);
    }
    let forwarded = answers.iter().filter(|(status, _)| *status == 200).count();
    assert_eq!(exchange_saw(&env, "/api/v3/order/test"), forwarded);
    // Each goes while the client's reads and test orders come to less than its share of
    // them, 1200 (the cap of every client's, 1500, less a fifth kept for the others').
    assert_eq!(forwarded, 60, "{answers:?}");
    for (status, body) in &answers[60..] {
        assert_eq!(
            (status, body["code"].as_i64()),
            (&429, Some(-1003)),
            "{body}"
        );
        let msg = body["msg"].as_str().unwrap();
        assert!(
            msg.contains("client hostile's signed reads and test orders this minute"),
            "{msg}"
        );
        assert!(msg.contains("at most 1200"), "{msg}");
    }

    // The other client's cancel goes: the address never reached the exchange's limit.
    cancel(&env, "/api/v3/order", &order_id).await;
}

/// A regression test (found by review): a client's orders and cancels were never held
/// back for weight, so a client with no rate could send USD-M cancels (weight 1 each, of
/// 2400 a minute) until the exchange answered 429, pausing every client's orders and
/// cancels; with callers without a key spending the public cap (1000 on USD-M) besides.
/// A client's own requests stop at its share of the address's limit: 2400, less the
/// public cap, less a tenth kept for the other clients (1160); other clients' go on.
#[tokio::test]
async fn one_client_cannot_spend_the_whole_weight_of_the_address() {
    // 1560 requests: about three seconds alone, twenty on a loaded machine (found when
    // a run under load crossed a minute's turn, and the client's share started again).
    clear_of_a_minute_turn_for(Duration::from_secs(40)).await;
    let policy = Policy {
        symbols: Some(["usdm:BTCUSDT".to_owned()].into_iter().collect()),
        ..trading_policy()
    };
    let env = setup(policy, None, Duration::from_secs(10)).await;
    issue_another_client(
        &env,
        "hostile",
        HOSTILE_KEY,
        HOSTILE_SECRET,
        read_and_trade(),
    )
    .await;
    // Callers without a key spend the public cap: a deep book weighs 20 on USD-M.
    let mut public = 0;
    for _ in 0..60 {
        let request = http_as(
            "",
            "GET",
            "/binance/fapi/v1/depth?symbol=BTCUSDT&limit=1000",
            "",
            "",
        );
        let (status, _) = raw(env.gateway, &request).await;
        public += usize::from(status == 200);
    }
    assert_eq!(public, 50);
    // Cancels of orders the exchange does not have, weight 1 each.
    let mut answers = Vec::new();
    // 1500 of them with the public calls' 1000 would pass the exchange's 2400.
    for n in 0..1500 {
        let params = format!("symbol=BTCUSDT&orderId={}", 900_000_000 + n);
        let target = format!("/binance/fapi/v1/order?{}", sign(&params, HOSTILE_SECRET));
        answers.push(
            raw(
                env.gateway,
                &http_as(HOSTILE_KEY, "DELETE", &target, "", ""),
            )
            .await,
        );
    }
    assert_eq!(exchange_saw(&env, "/fapi/v1/order"), 1160);
    for (status, body) in &answers[1160..] {
        assert_eq!(
            (status, body["code"].as_i64()),
            (&429, Some(-1003)),
            "{body}"
        );
        let msg = body["msg"].as_str().unwrap();
        assert!(msg.contains("client hostile's requests"), "{msg}");
        assert!(msg.contains("at most 1160"), "{msg}");
    }
    // Every refused cancel is on record as the hostile client's (an empty list would
    // pass the `all` alone).
    let turned_away = answers.len() - 1160;
    let refused = events_where(&env, turned_away, |e| {
        e["path"] == "/fapi/v1/order" && e["rule"] == "weight_reserved"
    })
    .await;
    assert_eq!(refused.len(), turned_away);
    assert!(refused.iter().all(|e| e["client"] == "hostile"));

    // The other client's order and its cancel go: the address is below the exchange's
    // limit, which would have answered 429.
    place_and_cancel(&env, "/fapi/v1/order").await;
}

/// A regression test (found by review): what was charged to a client stayed charged when
/// nothing was sent, so a bot retrying through an outage (a refused connection answers
/// at once) used up its share, and the lookups that price its orders their share, and
/// once the exchange was back its orders and cancels were refused until the minute
/// turned.
#[tokio::test]
async fn requests_never_sent_cost_their_client_nothing() {
    clear_of_a_minute_turn().await;
    let policy = Policy {
        symbols: None,
        ..trading_policy()
    };
    let env = setup(
        policy,
        Some("http://127.0.0.1:9".into()),
        Duration::from_secs(10),
    )
    .await;
    // The countdown weighs 10: 116 of them would use up a USD-M share of 1160.
    for n in 0..130 {
        let params = format!("symbol=BTCUSDT&countdownTime={}", 60_000 + n);
        let (status, body) = post(&env, "/fapi/v1/countdownCancelAll", &params).await;
        assert_eq!(
            (status, body["code"].as_i64()),
            (502, Some(-1001)),
            "{n}: {body}"
        );
    }
    // A ticker lookup weighs 2: 450 of them would use up a pricing share of 900.
    for n in 0..460 {
        let params =
            format!("symbol=BTCUSDT&side=SELL&type=MARKET&quantity=0.001&newClientOrderId=r{n}");
        let (status, body) = post(&env, "/api/v3/order", &params).await;
        assert_eq!(
            (status, body["code"].as_i64()),
            (502, Some(-1001)),
            "{n}: {body}"
        );
    }
}

/// A regression test (found by review): a conditional order's cancel, for a client held
/// to a symbol list, was charged for the lookup of its order's symbol even when the
/// exchange could not be reached and nothing was sent, and answered as a denial (-2015)
/// rather than as the outage. Nothing is charged, and the bot gets the outage (502).
#[tokio::test]
async fn a_symbol_lookup_never_sent_costs_nothing_and_answers_the_outage() {
    clear_of_a_minute_turn().await;
    let policy = Policy {
        symbols: Some(["usdm:BTCUSDT".to_owned()].into_iter().collect()),
        ..trading_policy()
    };
    let env = setup(
        policy,
        Some("http://127.0.0.1:9".into()),
        Duration::from_secs(10),
    )
    .await;
    // A cancel and its lookup weigh 2: 580 would use up a USD-M share of 1160.
    for n in 0..600 {
        let params = format!("symbol=BTCUSDT&algoId={}", 1000 + n);
        let target = format!("/binance/fapi/v1/algoOrder?{}", sign(&params, BOT_SECRET));
        let (status, body) = raw(env.gateway, &http("DELETE", &target, "", "")).await;
        assert_eq!(
            (status, body["code"].as_i64()),
            (502, Some(-1001)),
            "{n}: {body}"
        );
    }
    // Recorded as an outage, which no burst alert counts, not as a symbol refused.
    let refused = events_where(&env, 600, |e| e["path"] == "/fapi/v1/algoOrder").await;
    assert_eq!(refused.len(), 600, "every lookup is on record");
    assert!(refused.iter().all(|e| e["rule"] == "exchange_unreachable"));
}

/// A regression test (found by review): a USD-M modification of a buy to a price at or
/// above the best ask fills at once, as a new limit buy there does, but left the kept
/// quote: the next order was priced from the book it emptied.
#[tokio::test]
async fn a_modification_that_crosses_forgets_the_kept_price() {
    let policy = Policy {
        symbols: Some(["usdm:BTCUSDT".to_owned()].into_iter().collect()),
        ..trading_policy()
    };
    let env = setup(policy, None, Duration::from_secs(10)).await;
    let resting = "symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.01&price=59000";
    let (status, placed) = post(&env, "/fapi/v1/order", resting).await;
    assert_eq!(status, 200, "{placed}");
    let sell = |id: &str| {
        format!(
            "symbol=BTCUSDT&side=SELL&type=LIMIT&timeInForce=GTC&quantity=0.01&price=62000\
             &newClientOrderId={id}"
        )
    };
    let (status, body) = post(&env, "/fapi/v1/order", &sell("s1")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(exchange_saw(&env, "/fapi/v1/ticker/bookTicker"), 1);
    let params = format!(
        "symbol=BTCUSDT&side=BUY&orderId={}&quantity=0.01&price=61000",
        placed["orderId"]
    );
    let request = http(
        "PUT",
        "/binance/fapi/v1/order",
        "",
        &sign(&params, BOT_SECRET),
    );
    let (status, body) = raw(env.gateway, &request).await;
    assert_eq!(
        (status, body["status"].as_str()),
        (200, Some("FILLED")),
        "{body}"
    );
    let (status, body) = post(&env, "/fapi/v1/order", &sell("s2")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(exchange_saw(&env, "/fapi/v1/ticker/bookTicker"), 2);
}

/// A regression test (found by review): the kept price was forgotten only before a market
/// buy was sent, so a lookup made while the buy was on its way (which saw the book before
/// it) was kept for a second after the buy filled. It is forgotten again once the
/// exchange has answered.
#[tokio::test]
async fn a_price_looked_up_while_a_market_buy_is_in_flight_is_not_kept() {
    let env = default_env().await;
    env.exchange
        .simulator()
        .delay_endpoint("/api/v3/order", Duration::from_millis(600));
    let sell = |id: &str| {
        format!(
            "symbol=BTCUSDT&side=SELL&type=LIMIT&timeInForce=GTC&quantity=0.01&price=90000\
             &newClientOrderId={id}"
        )
    };
    let market_buy = "symbol=BTCUSDT&side=BUY&type=MARKET&quantity=0.01";
    let first_sell = sell("s1");
    let ((bought, buy), (sold, first)) =
        tokio::join!(post(&env, "/api/v3/order", market_buy), async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            post(&env, "/api/v3/order", &first_sell).await
        });
    assert_eq!((bought, sold), (200, 200), "{buy} {first}");
    let seen = exchange_saw(&env, "/api/v3/ticker/bookTicker");
    env.exchange
        .simulator()
        .delay_endpoint("/api/v3/order", Duration::ZERO);
    let (status, body) = post(&env, "/api/v3/order", &sell("s2")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(exchange_saw(&env, "/api/v3/ticker/bookTicker"), seen + 1);
}

/// A regression test (found by review): every buy forgot the best ask and the book kept
/// for a second, resting limit buys too, so a client's limit buys made every other order
/// in that symbol, its own and other clients', look the price up again (each charged to
/// its client). Only a buy at the market, which fills at once, moves the book.
#[tokio::test]
async fn resting_limit_buys_leave_the_price_kept() {
    let env = default_env().await;
    for n in 0..5 {
        let buy = format!(
            "symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.01&price=40000&newClientOrderId=b{n}"
        );
        let (status, body) = post(&env, "/api/v3/order", &buy).await;
        assert_eq!(status, 200, "{body}");
        let sell = format!(
            "symbol=BTCUSDT&side=SELL&type=LIMIT&timeInForce=GTC&quantity=0.01&price=90000&newClientOrderId=s{n}"
        );
        let (status, body) = post(&env, "/api/v3/order", &sell).await;
        assert_eq!(status, 200, "{body}");
    }
    assert_eq!(exchange_saw(&env, "/api/v3/ticker/bookTicker"), 1);
    // A market buy moves it: the next sell looks again.
    let market_buy = "symbol=BTCUSDT&side=BUY&type=MARKET&quantity=0.01";
    let (status, body) = post(&env, "/api/v3/order", market_buy).await;
    assert_eq!(status, 200, "{body}");
    let sell = "symbol=BTCUSDT&side=SELL&type=LIMIT&timeInForce=GTC&quantity=0.01&price=90000";
    let (status, body) = post(&env, "/api/v3/order", sell).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(exchange_saw(&env, "/api/v3/ticker/bookTicker"), 2);
    // So does a limit buy at or above the best ask, which fills at once.
    let crossing = "symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=IOC&quantity=0.01&price=61000";
    let (status, body) = post(&env, "/api/v3/order", crossing).await;
    assert_eq!(
        (status, body["status"].as_str()),
        (200, Some("FILLED")),
        "{body}"
    );
    let sell = "symbol=BTCUSDT&side=SELL&type=LIMIT&timeInForce=GTC&quantity=0.01&price=90000&newClientOrderId=last";
    let (status, body) = post(&env, "/api/v3/order", sell).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(exchange_saw(&env, "/api/v3/ticker/bookTicker"), 3);
}

/// A regression test (found by review): reads were charged to their client before they
/// were decided, so a bot retrying reads its policy denies (another symbol's, past its
/// rate) used up its share, and its own cancels were refused for the rest of the minute.
/// A request is charged once decided.
#[tokio::test]
async fn requests_a_policy_denies_cost_their_client_nothing() {
    clear_of_a_minute_turn().await;
    let policy = Policy {
        symbols: Some(["usdm:BTCUSDT".to_owned()].into_iter().collect()),
        ..trading_policy()
    };
    let env = setup(policy, None, Duration::from_secs(10)).await;
    // Liquidations of a symbol not on its list, weight 20 each: 100 would be 2000.
    for n in 0..100 {
        let params = format!("symbol=ETHUSDT&limit={}", 50 + n);
        let target = format!("/binance/fapi/v1/forceOrders?{}", sign(&params, BOT_SECRET));
        let (status, body) = raw(env.gateway, &http("GET", &target, "", "")).await;
        assert_eq!(status, 401, "{body}");
    }
    place_and_cancel(&env, "/fapi/v1/order").await;
}

/// A regression test (found by review): an order that needs a price, sent while the
/// exchange could not answer, was denied as one that can never be priced (401, -2015,
/// ccxt's `AuthenticationError`), where the same order with a price got the exchange's
/// outage (502, -1001). It gets the outage, which bots try again.
#[tokio::test]
async fn an_order_that_cannot_be_priced_in_an_outage_is_answered_as_the_outage() {
    let env = default_env().await;
    env.exchange
        .simulator()
        .fail_endpoint("/api/v3/ticker/bookTicker");
    let (status, body) = post(
        &env,
        "/api/v3/order",
        "symbol=BTCUSDT&side=SELL&type=MARKET&quantity=0.01",
    )
    .await;
    assert_eq!(
        (status, body["code"].as_i64()),
        (502, Some(-1001)),
        "{body}"
    );
    assert_eq!(exchange_saw(&env, "/api/v3/ticker/bookTicker"), 1);
    assert_eq!(exchange_saw(&env, "/api/v3/order"), 0);
    let refused = events_where(&env, 1, |e| e["path"] == "/api/v3/order").await;
    assert_eq!(refused[0]["rule"], "exchange_unreachable", "{refused:?}");
    assert_eq!(refused[0]["allowed"], false, "{refused:?}");
    // An unknown symbol, which the exchange answers, is still denied for its price.
    let (status, body) = post(
        &env,
        "/api/v3/order",
        "symbol=ZZZZ1USDT&side=SELL&type=MARKET&quantity=1",
    )
    .await;
    assert_eq!(
        (status, body["code"].as_i64()),
        (401, Some(-2015)),
        "{body}"
    );
}

/// A regression test (found by review): the lookups that price a client's orders were
/// held to the address's cap for pricing alone, so one client's orders, each denied once
/// priced, in symbol after symbol, spent the weight that prices every client's orders
/// (and pushed the address past the cap for signed reads). They are charged to their
/// client, which may spend half the cap for pricing (900 of 1800 by default).
#[tokio::test]
async fn one_client_s_orders_cannot_spend_the_weight_that_prices_others() {
    clear_of_a_minute_turn().await;
    let env = default_env().await;
    let policy = Policy {
        max_order_notional: Some(rust_decimal::Decimal::from(100)),
        ..read_and_trade()
    };
    issue_another_client(&env, "hostile", HOSTILE_KEY, HOSTILE_SECRET, policy).await;
    // Market sells in symbols the exchange does not list: each costs a ticker lookup
    // (weight 2), fails, and is denied for want of a price.
    let mut answers = Vec::new();
    for n in 0..905 {
        let params = format!("symbol=ZZ{n}USDT&side=SELL&type=MARKET&quantity=1");
        let target = format!("/binance/api/v3/order?{}", sign(&params, HOSTILE_SECRET));
        answers.push(raw(env.gateway, &http_as(HOSTILE_KEY, "POST", &target, "", "")).await);
    }
    assert_eq!(exchange_saw(&env, "/api/v3/ticker/bookTicker"), 450);
    assert!(answers[..450].iter().all(|(status, _)| *status == 401));
    for (status, body) in &answers[450..] {
        assert_eq!(
            (status, body["code"].as_i64()),
            (&429, Some(-1003)),
            "{body}"
        );
        let msg = body["msg"].as_str().unwrap();
        assert!(msg.contains("priced client hostile's orders"), "{msg}");
        assert!(msg.contains("at most 900"), "{msg}");
    }
    // The other client's order is priced and forwarded.
    let (status, body) = post(
        &env,
        "/api/v3/order",
        "symbol=BTCUSDT&side=SELL&type=MARKET&quantity=0.01",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(exchange_saw(&env, "/api/v3/ticker/bookTicker"), 451);
}

#[tokio::test]
async fn requests_are_signed_on_the_exchange_clock() {
    for offset_ms in [30_000i64, -30_000] {
        let env = default_env().await;
        env.exchange.simulator().set_clock_offset_ms(offset_ms);
        let sent_at = keygate_gateway::now_ms();
        let (status, body) = get(&env, "/api/v3/account", "").await;
        // The bot's timestamp is 30 s off the simulator's clock, well outside its
        // recvWindow of 10 s: only keygate's correction lets the request through.
        assert_eq!(status, 200, "offset {offset_ms}: {body}");
        let seen = env.exchange.simulator().requests();
        let paths: Vec<&str> = seen.iter().map(|r| r.path.as_str()).collect();
        assert_eq!(
            paths,
            ["/api/v3/time", "/api/v3/time", "/api/v3/account"],
            "{offset_ms}"
        );
        let timestamp: u64 = seen[2]
            .query
            .split('&')
            .find_map(|p| p.strip_prefix("timestamp="))
            .expect("a timestamp")
            .parse()
            .unwrap();
        let exchange_time = sent_at.saturating_add_signed(offset_ms);
        assert!(
            timestamp.abs_diff(exchange_time) < 2_000,
            "offset {offset_ms}: forwarded timestamp {timestamp}, exchange time {exchange_time}"
        );
    }
}

/// The rotated client's new key and secret.
const NEW_KEY: &str = "newkeyNEWKEYnewkeyNEWKEYnewkeyNEWKEYnewkeyNEWKEYnewkeyNEWKEY0002";
const NEW_SECRET: &str = "newsecretNEWSECRETnewsecretNEWSECRETnewsecretNEWSECRETnewsec002";

#[tokio::test]
async fn a_rotated_key_is_accepted_until_its_grace_period_ends() {
    let env = default_env().await;
    assert_eq!(read_account_as(&env, BOT_KEY, BOT_SECRET).await.0, 200);
    let grace = Duration::from_secs(3);
    let grace_until = keygate_gateway::now_ms() + grace.as_millis() as u64;
    // As `keygate client rotate --grace 3s` does.
    let bot: Name = "bot1".parse().unwrap();
    let master = env.master();
    Store::open(&env.db)
        .unwrap()
        .transaction(|s| {
            s.rotate_client(
                &bot,
                NEW_KEY,
                &ClientKeyMaterial::Hmac(SecretString::new(NEW_SECRET.into())),
                &master,
                grace_until,
            )
        })
        .unwrap();
    // The running gateway takes the new key within a second.
    let mut new_key = (0, Value::Null);
    for _ in 0..40 {
        new_key = read_account_as(&env, NEW_KEY, NEW_SECRET).await;
        if new_key.0 == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(new_key.0, 200, "the new key: {}", new_key.1);
    // Within the grace period, the old key goes on working.
    let (status, body) = read_account_as(&env, BOT_KEY, BOT_SECRET).await;
    assert!(
        keygate_gateway::now_ms() < grace_until,
        "the reload took the whole grace period"
    );
    assert_eq!(status, 200, "the old key within the grace period: {body}");
    assert_eq!(exchange_saw(&env, "/api/v3/account"), 3);
    // Its events tell it from the new key's (found by review: a rotation made because the
    // old key may have leaked could not tell who still used it).
    let reads = events_where(&env, 3, |e| {
        e["path"] == "/api/v3/account" && e["allowed"] == true
    })
    .await;
    let previous: Vec<_> = reads.iter().map(|e| e["previous_key"] == true).collect();
    assert_eq!(previous, [false, false, true], "{reads:?}");

    while keygate_gateway::now_ms() <= grace_until {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, body) = read_account_as(&env, BOT_KEY, BOT_SECRET).await;
    assert_eq!(
        (status, body["code"].as_i64()),
        (401, Some(-2015)),
        "{body}"
    );
    assert_eq!(
        body["msg"],
        "keygate: this key of client bot1 was rotated and its grace period is over"
    );
    assert_eq!(
        exchange_saw(&env, "/api/v3/account"),
        3,
        "the old key got through"
    );
    let expired = events_where(&env, 1, |e| e["rule"] == "expired").await;
    assert_eq!(expired.len(), 1, "{expired:?}");
    assert_eq!(expired[0]["client"], "bot1");
    assert_eq!(read_account_as(&env, NEW_KEY, NEW_SECRET).await.0, 200);
    // A withdrawal signed with it is recorded with what it would have moved (found by
    // review: only the endpoint's kind).
    let (status, _) = post(
        &env,
        "/sapi/v1/capital/withdraw/apply",
        "coin=USDT&address=TOld&amount=7",
    )
    .await;
    assert_eq!(status, 401);
    let withdrawal = events_where(&env, 1, |e| {
        e["rule"] == "expired" && e["action"] == "withdraw"
    })
    .await;
    assert_eq!(
        (&withdrawal[0]["asset"], &withdrawal[0]["amount"]),
        (&json!("USDT"), &json!("7")),
        "{withdrawal:?}"
    );
}

/// A regression test: a client's row keeps its current and its previous key, so its
/// first key, after a second rotation, was refused as a stranger's: nothing told the
/// operator that someone still held and used it.
#[tokio::test]
async fn a_key_two_rotations_old_is_refused_as_unknown_and_recorded_as_dead() {
    const THIRD_KEY: &str = "thirdkeyTHIRDKEYthirdkeyTHIRDKEYthirdkeyTHIRDKEYthirdkeyTHIRD03";
    let env = default_env().await;
    let bot: Name = "bot1".parse().unwrap();
    let master = env.master();
    let mut store = Store::open(&env.db).unwrap();
    for (key, secret) in [(NEW_KEY, NEW_SECRET), (THIRD_KEY, NEW_SECRET)] {
        store
            .transaction(|s| {
                s.rotate_client(
                    &bot,
                    key,
                    &ClientKeyMaterial::Hmac(SecretString::new(secret.into())),
                    &master,
                    keygate_gateway::now_ms() + 60_000,
                )
            })
            .unwrap();
    }
    let mut third = (0, Value::Null);
    for _ in 0..40 {
        third = read_account_as(&env, THIRD_KEY, NEW_SECRET).await;
        if third.0 == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(third.0, 200, "the newest key: {}", third.1);

    let (first, stranger) = (
        read_account_as(&env, BOT_KEY, BOT_SECRET).await,
        read_account_as(
            &env,
            "neverIssuedNEVERissuedneverISSUEDneverissuedNEVERISSUEDnever0001",
            BOT_SECRET,
        )
        .await,
    );
    // The sender learns nothing: the same answer as a key that never was.
    assert_eq!(first.0, 401, "{}", first.1);
    assert_eq!((first.0, &first.1), (stranger.0, &stranger.1));
    assert_eq!(first.1["code"], -2015);
    let dead = events_where(&env, 1, |e| e["rule"] == "expired").await;
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(
        dead[0]["client"],
        Value::Null,
        "its signature was not checked"
    );
    assert_eq!(
        dead[0]["message"],
        "a key of client bot1 that a rotation retired"
    );
    // Found by review: it was not about bot1 either, so `audit query --client bot1`
    // left out an old key's use. It is about bot1's key.
    assert_eq!(dead[0]["key_of"], "bot1");
    let about_bot1: keygate_core::Event = serde_json::from_value(dead[0].clone()).unwrap();
    assert!(about_bot1.concerns_client("bot1"));
    // The stranger's key, sent after it, stays a stranger's (the polls for the newest key
    // while the gateway reloaded were strangers' too).
    let unknown = events_where(&env, 1, |e| e["message"] == "unknown API key").await;
    assert!(
        unknown
            .last()
            .is_some_and(|e| e["ts_ms"].as_u64() >= dead[0]["ts_ms"].as_u64()),
        "{unknown:?}"
    );
}

/// A row added by hand breaks the client table's seal, so every client is refused, the
/// one revoked meanwhile among them; and the revoke was made all the same, as the client
/// is refused as revoked once the table reads again.
#[tokio::test]
async fn a_client_row_that_does_not_read_does_not_hold_back_a_revoke() {
    let env = default_env().await;
    assert_eq!(get(&env, "/api/v3/account", "").await.0, 200);
    let store = Store::open(&env.db).unwrap();
    // A second client whose policy no longer parses (edited by hand, or written by a
    // newer keygate).
    store
        .connection()
        .execute(
            "INSERT INTO clients SELECT 'bot2', account, status, key_type, 'otherkey', \
             key_material, 'not a policy', created_ms, expires_ms, NULL, NULL, NULL, tag \
             FROM clients WHERE name = 'bot1'",
            [],
        )
        .unwrap();
    let bot: Name = "bot1".parse().unwrap();
    env.revoke(&bot);
    env.taken().await;
    env.exchange.simulator().reset(false);
    let (code, body) = get(&env, "/api/v3/account", "").await;
    assert_eq!(code, 401, "{body}");
    assert!(env.exchange.simulator().requests().is_empty());
    // Refused with every client, for the seal the added row broke. Once the row is
    // gone and the table sealed as it is (as `keygate upgrade` would, the operator
    // having seen it), what holds is the revoke itself.
    assert!(env.live.failure().is_some(), "{body}");
    let mut store = store;
    store
        .connection()
        .execute("DELETE FROM clients WHERE name = 'bot2'", [])
        .unwrap();
    let master = env.master();
    store.transaction(|s| s.seal_as_they_are(&master)).unwrap();
    env.loaded().await;
    let (code, body) = get(&env, "/api/v3/account", "").await;
    assert_eq!(code, 401, "{body}");
    assert!(body["msg"].as_str().unwrap().contains("revoked"), "{body}");
    assert!(env.exchange.simulator().requests().is_empty());
}

/// The replay cache lives in memory: a request signed before this keygate started, still
/// inside its window, may have been used with a keygate that ran before.
#[tokio::test]
async fn a_request_signed_before_keygate_started_is_refused() {
    let early = http(
        "GET",
        &format!("/binance/api/v3/account?{}", sign("", BOT_SECRET)),
        "",
        "",
    );
    tokio::time::sleep(Duration::from_millis(5)).await;
    let env = default_env().await;
    let (status, body) = raw(env.gateway, &early).await;
    assert_eq!(body["code"], -1021, "{status} {body}");
    assert_eq!(exchange_saw(&env, "/api/v3/account"), 0);
    let (status, body) = get(&env, "/api/v3/account", "").await;
    assert_eq!(status, 200, "signed again, it passes: {body}");
    let refused = events_where(&env, 1, |e| e["rule"] == "replay").await;
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert!(
        refused[0]["message"]
            .as_str()
            .unwrap()
            .contains("before keygate started"),
        "{refused:?}"
    );
}

#[tokio::test]
async fn a_revoked_client_put_back_as_it_was_is_refused() {
    let env = default_env().await;
    assert_eq!(get(&env, "/api/v3/account", "").await.0, 200);
    let bot: Name = "bot1".parse().unwrap();
    let store = Store::open(&env.db).unwrap();
    store
        .connection()
        .execute_batch("CREATE TABLE saved AS SELECT * FROM clients")
        .unwrap();
    env.revoke(&bot);
    env.taken().await;
    assert_eq!(get(&env, "/api/v3/account", "").await.0, 401);
    // Someone with write access to the database, and a copy of the row from before the
    // revocation, puts it back. The row's own tag verifies: keygate wrote it, once.
    env.edit_by_hand("DELETE FROM clients; INSERT INTO clients SELECT * FROM saved")
        .await;
    let restored = store.client(&bot).unwrap();
    assert_eq!(restored.status, ClientStatus::Active);
    restored.verify_record(&env.master()).unwrap();
    env.exchange.simulator().reset(false);
    let (code, body) = get(&env, "/api/v3/account", "").await;
    assert_eq!(code, 401, "{body}");
    assert!(env.exchange.simulator().requests().is_empty());
}

#[tokio::test]
async fn an_upstream_changed_in_the_database_gets_no_key() {
    let env = default_env().await;
    assert_eq!(get(&env, "/api/v3/account", "").await.0, 200);
    // Someone with write access to the database but not the master key points the
    // account at a host of theirs.
    let elsewhere = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    env.edit_by_hand(&format!(
        "UPDATE accounts SET upstream = 'http://{}'",
        elsewhere.local_addr().unwrap()
    ))
    .await;
    env.exchange.simulator().reset(false);
    let (code, body) = get(&env, "/api/v3/account", "").await;
    assert_eq!(code, 401, "{body}");
    assert!(env.exchange.simulator().requests().is_empty());
    let nothing = tokio::time::timeout(Duration::from_millis(200), elsewhere.accept()).await;
    assert!(nothing.is_err(), "the new upstream was contacted");
}

#[tokio::test]
async fn frozen_revoked_and_expired_clients_are_refused_within_a_second() {
    let env = default_env().await;
    assert_eq!(get(&env, "/api/v3/account", "").await.0, 200);
    env.exchange.simulator().reset(false);
    let mut store = Store::open(&env.db).unwrap();
    let master = env.master();
    let bot: Name = "bot1".parse().unwrap();
    for (from, status, word) in [
        (ClientStatus::Active, ClientStatus::Frozen, "frozen"),
        (ClientStatus::Frozen, ClientStatus::Revoked, "revoked"),
    ] {
        store
            .transaction(|s| s.set_client_status(&bot, from, status, &master))
            .unwrap();
        env.taken().await;
        let (code, body) = get(&env, "/api/v3/account", "").await;
        assert_eq!(code, 401, "{body}");
        assert!(body["msg"].as_str().unwrap().contains(word), "{body}");
    }
    // The same client issued again, already expired (the table sealed without it, as
    // `keygate upgrade` would once the operator has seen it).
    store
        .connection()
        .execute("DELETE FROM clients", [])
        .unwrap();
    store.transaction(|s| s.seal_as_they_are(&master)).unwrap();
    store
        .transaction(|s| {
            s.insert_client(
                &NewClient {
                    name: bot.clone(),
                    account: "main".parse().unwrap(),
                    api_key: BOT_KEY.into(),
                    material: ClientKeyMaterial::Hmac(SecretString::new(BOT_SECRET.into())),
                    policy: trading_policy(),
                    expires_ms: Some(1),
                },
                &master,
                1,
            )
        })
        .unwrap();
    env.taken().await;
    let (code, body) = get(&env, "/api/v3/account", "").await;
    assert_eq!(code, 401);
    assert!(body["msg"].as_str().unwrap().contains("expired"), "{body}");
    let reached = env.exchange.simulator().requests();
    assert!(
        reached.is_empty(),
        "a refused client reached the exchange: {:?}",
        reached.iter().map(|r| &r.path).collect::<Vec<_>>()
    );
}

/// `keygate panic` that cannot write its freeze (a disk full: found by review) leaves an
/// empty stop file beside the database; while it is there every client is refused, from
/// within a second, and nothing reaches the exchange. Taken away, clients are served
/// again. Refused as frozen and recorded as the client's (found by review: recorded as
/// an unknown key, a leaked key's requests went unseen by `incident report --client`
/// and by the dead-key alert).
#[tokio::test]
async fn the_stop_file_of_a_panic_refuses_every_client() {
    let env = default_env().await;
    assert_eq!(get(&env, "/api/v3/account", "").await.0, 200);
    let stop = keygate_gateway::registry::stop_file_of(&env.db);
    std::fs::File::create(&stop).unwrap();
    env.until("stopped every client", Live::is_stopped).await;
    env.exchange.simulator().reset(false);
    let (code, body) = get(&env, "/api/v3/account", "").await;
    assert_eq!(code, 401, "{body}");
    let (code, body) = post(
        &env,
        "/api/v3/order",
        "symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.001&price=50000",
    )
    .await;
    assert_eq!(code, 401, "{body}");
    assert_eq!(body["msg"], "keygate: client bot1 is frozen", "{body}");
    assert!(env.exchange.simulator().requests().is_empty());
    let refused = events_where(&env, 2, |e| e["rule"] == "frozen").await;
    assert_eq!(refused.len(), 2, "{refused:?}");
    for event in &refused {
        assert_eq!(event["client"], "bot1", "{event}");
    }
    assert_eq!(refused[1]["action"], "trade", "{}", refused[1]);

    std::fs::remove_file(&stop).unwrap();
    env.until("let the stop go", |live| !live.is_stopped())
        .await;
    assert_eq!(get(&env, "/api/v3/account", "").await.0, 200);
}

#[tokio::test]
async fn a_client_table_put_back_with_its_seal_is_refused() {
    let env = default_env().await;
    let bot: Name = "bot1".parse().unwrap();
    let store = Store::open(&env.db).unwrap();
    store
        .connection()
        .execute_batch(
            "CREATE TABLE saved AS SELECT * FROM clients;
             CREATE TABLE saved_seal AS SELECT * FROM meta WHERE key = 'tables_seal';",
        )
        .unwrap();
    // Revoked from the command line: its audit event commits with the change.
    let mut unlocked = Store::open(&env.db).unwrap();
    let master = env.master();
    unlocked
        .transaction(|s| {
            let sealed = s.check_seal(&master);
            s.set_client_status(&bot, ClientStatus::Active, ClientStatus::Revoked, &master)?;
            keygate_audit::append_within(
                s,
                &env.audit_key,
                &[Event {
                    ts_ms: keygate_gateway::now_ms(),
                    body: EventBody::Admin(AdminEvent {
                        actor: "cli".into(),
                        change: "client.revoke".into(),
                        target: "bot1".into(),
                        detail: serde_json::json!({}),
                    }),
                }],
            )?;
            s.reseal(&master, &sealed)?;
            Ok::<_, keygate_audit::Error>(())
        })
        .unwrap();
    env.taken().await;
    assert_eq!(get(&env, "/api/v3/account", "").await.0, 401);
    // The table and its seal, as a copy of the database from before the revoke held them:
    // they match each other, but the log has a later administrative event.
    env.edit_by_hand(
        "DELETE FROM clients; INSERT INTO clients SELECT * FROM saved;
         DELETE FROM meta WHERE key = 'tables_seal'; INSERT INTO meta SELECT * FROM saved_seal;",
    )
    .await;
    store.check_seal(&master).unwrap();
    env.exchange.simulator().reset(false);
    let (code, body) = get(&env, "/api/v3/account", "").await;
    assert_eq!(code, 401, "{body}");
    assert!(env.exchange.simulator().requests().is_empty());
    // A regression test (found by review): the later administrative event was looked for
    // in the rows as stored, so one edited to read otherwise hid it, and the revoked
    // client was served again. Events after the seal are read where they verify.
    env.edit_by_hand(
        r#"UPDATE events SET body = replace(body, '"type":"admin"', '"type": "admin"')
           WHERE body LIKE '%client.revoke%'"#,
    )
    .await;
    assert!(
        store.check_seal_is_latest(&master).is_ok(),
        "the rows as stored hide it"
    );
    let (code, body) = get(&env, "/api/v3/account", "").await;
    assert_eq!(code, 401, "{body}");
    assert!(env.exchange.simulator().requests().is_empty());
}

/// A regression test: with the generation counter gone, the reloader logged an error
/// every poll and kept serving its last view, so no later revoke or freeze would ever
/// reach it; and every change still committed, its bump of the counter a no-op.
#[tokio::test]
async fn a_store_without_its_generation_counter_is_refused_and_changes_nothing() {
    let env = default_env().await;
    assert_eq!(get(&env, "/api/v3/account", "").await.0, 200);
    let mut store = Store::open(&env.db).unwrap();
    store
        .connection()
        .execute("DELETE FROM meta WHERE key = 'generation'", [])
        .unwrap();
    env.until("refused every client", |live| live.failure().is_some())
        .await;
    env.exchange.simulator().reset(false);
    let (code, body) = get(&env, "/api/v3/account", "").await;
    assert_ne!(code, 200, "{body}");
    assert!(env.exchange.simulator().requests().is_empty());
    assert!(matches!(
        store.transaction(|_| Ok::<_, keygate_store::Error>(())),
        Err(keygate_store::Error::Corrupt {
            what: "generation",
            ..
        })
    ));
}

/// Regression (from a review): the registry was reloaded only when the generation
/// counter changed, and anyone who may write the database could put the counter back
/// after a revoke: the running gateway went on serving the revoked key, without a word.
#[tokio::test]
async fn a_revoke_hidden_by_putting_the_generation_back_still_takes_effect() {
    let env = default_env().await;
    assert_eq!(get(&env, "/api/v3/account", "").await.0, 200);
    let store = Store::open(&env.db).unwrap();
    let generation = store.generation().unwrap();
    env.revoke(&"bot1".parse().unwrap());
    store
        .connection()
        .execute(
            "UPDATE meta SET value = ?1 WHERE key = 'generation'",
            [generation as i64],
        )
        .unwrap();
    let deadline = std::time::Instant::now() + keygate_gateway::registry::FULL_RELOAD_INTERVAL;
    tokio::time::sleep_until((deadline + Duration::from_millis(1000)).into()).await;
    env.exchange.simulator().reset(false);
    let (code, body) = get(&env, "/api/v3/account", "").await;
    assert_eq!(code, 401, "{body}");
    assert!(env.exchange.simulator().requests().is_empty());
}

/// Regression (from a review): a database put in the place of the one `serve` opened
/// (a copy renamed over it) went unnoticed: changes made on the path never reached the
/// gateway, and its audit events went to a file no longer anyone's.
#[tokio::test]
async fn a_database_replaced_under_the_gateway_has_every_client_refused() {
    let env = default_env().await;
    assert_eq!(get(&env, "/api/v3/account", "").await.0, 200);
    let copy = env.dir.path().join("copy.db");
    Store::open(&env.db)
        .unwrap()
        .connection()
        .execute("VACUUM INTO ?1", [copy.to_str().unwrap()])
        .unwrap();
    std::fs::rename(&copy, &env.db).unwrap();
    env.until("refused every client", |live| live.failure().is_some())
        .await;
    env.exchange.simulator().reset(false);
    let (code, body) = get(&env, "/api/v3/account", "").await;
    assert_ne!(code, 200, "{body}");
    assert!(env.exchange.simulator().requests().is_empty());
}

#[tokio::test]
async fn a_client_changed_in_the_database_without_the_master_key_is_refused() {
    let env = default_env().await;
    let store = Store::open(&env.db).unwrap();
    let bot: Name = "bot1".parse().unwrap();
    env.revoke(&bot);
    env.taken().await;
    assert_eq!(get(&env, "/api/v3/account", "").await.0, 401);
    // Someone with write access to the database, but not the master key, brings the
    // revoked key back and lets it withdraw.
    env.edit_by_hand(
        r#"UPDATE clients SET status = 'active',
           policy = replace(policy, '"scopes":["read","trade"]', '"scopes":["read","trade","withdraw"]')"#,
    )
    .await;
    env.exchange.simulator().reset(false);
    let (code, body) = get(&env, "/api/v3/account", "").await;
    assert_eq!(code, 401, "{body}");
    assert!(env.exchange.simulator().requests().is_empty());
    // The edit took: the row reads as an active client that may withdraw.
    let edited = store.client(&bot).unwrap();
    assert_eq!(edited.status, ClientStatus::Active);
    assert!(edited.policy.scopes.contains(Scope::Withdraw));
}

#[tokio::test]
async fn trades_wait_for_a_durable_audit_event_and_reads_go_on_without_one() {
    let env = default_env().await;
    // Another connection holds the write lock: the audit log cannot be written.
    let blocker = rusqlite::Connection::open(&env.db).unwrap();
    blocker.execute_batch("BEGIN IMMEDIATE").unwrap();
    let (status, body) = post(
        &env,
        "/api/v3/order",
        "symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.01&price=50000",
    )
    .await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(exchange_saw(&env, "/api/v3/order"), 0);
    assert_eq!(get(&env, "/api/v3/account", "").await.0, 200, "reads go on");
    // The log cannot tell of its own outage: the gateway raises the alert itself, once
    // a minute at most.
    let alert = env.alerts.try_recv().expect("an audit_unavailable alert");
    assert_eq!(
        (alert.severity, alert.rule),
        (Severity::Critical, AlertRule::AuditUnavailable)
    );
    assert!(alert
        .summary
        .contains("orders, withdrawals and transfers are refused"));
    let (status, _) = post(
        &env,
        "/api/v3/order",
        "symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.01&price=50000",
    )
    .await;
    assert_eq!(status, 503);
    assert!(
        env.alerts.try_recv().is_err(),
        "raised twice within a minute"
    );
    blocker.execute_batch("ROLLBACK").unwrap();
    let (status, _) = post(
        &env,
        "/api/v3/order",
        "symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.01&price=50000",
    )
    .await;
    assert_eq!(status, 200);
    // The last refused trade is on record as not forwarded, once the log can be written;
    // the first too when its event waited in memory until then (not when the writer
    // tried it while the lock was held: events that cannot be written are logged).
    let refused = events_where(&env, 1, |e| e["rule"] == "audit_unavailable").await;
    assert!((1..=2).contains(&refused.len()), "{refused:?}");
    assert!(refused.iter().all(|r| r["outcome"] == "not_forwarded"));
}

#[tokio::test]
async fn an_upstream_timeout_is_a_504_with_outcome_unknown_and_no_retry() {
    let (silent_url, accepted) = silent_exchange().await;
    let env = setup(
        trading_policy(),
        Some(silent_url),
        Duration::from_millis(500),
    )
    .await;
    let (status, body) = post(
        &env,
        "/api/v3/order",
        "symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.01&price=50000",
    )
    .await;
    assert_eq!(status, 504, "{body}");
    assert!(body["msg"].as_str().unwrap().contains("outcome is unknown"));
    events_where(&env, 1, |e| {
        e["type"] == "outcome" && e["outcome"] == "unknown"
    })
    .await;
    let store = Store::open(&env.db).unwrap();
    let events = keygate_audit::read_unverified(&store, 1, 100).unwrap();
    let outcomes: Vec<String> = events
        .iter()
        .map(|(_, e)| serde_json::to_string(e).unwrap())
        .filter(|e| e.contains("\"outcome\""))
        .collect();
    assert!(
        outcomes
            .iter()
            .any(|e| e.contains("\"type\":\"outcome\"") && e.contains("\"outcome\":\"unknown\"")),
        "{outcomes:?}"
    );
    // One connection for the clock probe (which also timed out), one for the order: no retry.
    assert!(accepted.load(std::sync::atomic::Ordering::SeqCst) <= 2);
    assert_eq!(
        keygate_audit::verify(&store, &env.audit_key).unwrap() as usize,
        events.len()
    );
}

/// A regression test: an order answered 503 -1007 ("execution status unknown"), as
/// Binance answers when its matching engine times out, was recorded as answered: no
/// outcome-unknown alert, and reconciliation took it for an order the exchange refused.
/// The bot gets the exchange's answer as it came; a read so answered is just answered.
#[tokio::test]
async fn an_order_the_exchange_cannot_say_it_executed_is_recorded_unknown() {
    const UNKNOWN: &str = "{\"code\":-1007,\"msg\":\"Timeout waiting for response from backend \
                           server. Send status unknown; execution status unknown.\"}";
    // An exchange that tells the time and answers everything else 503 -1007.
    let exchange = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let exchange_addr = exchange.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = exchange.accept().await {
            tokio::spawn(async move {
                let mut head = [0u8; 4096];
                while let Ok(n @ 1..) = socket.read(&mut head).await {
                    let (status, body) = if head[..n].starts_with(b"GET /api/v3/time") {
                        let time = format!("{{\"serverTime\":{}}}", keygate_gateway::now_ms());
                        ("200 OK", time)
                    } else {
                        ("503 Service Unavailable", UNKNOWN.to_owned())
                    };
                    let answer = format!(
                        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\n\
                         content-length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    if socket.write_all(answer.as_bytes()).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    let env = setup(
        trading_policy(),
        Some(format!("http://{exchange_addr}")),
        Duration::from_secs(2),
    )
    .await;
    let (status, body) = post(
        &env,
        "/api/v3/order",
        "symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.01&price=50000",
    )
    .await;
    assert_eq!((status, &body["code"]), (503, &json!(-1007)), "{body}");
    let (status, _) = get(&env, "/api/v3/account", "").await;
    assert_eq!(status, 503);
    let outcomes = events_where(&env, 1, |e| e["type"] == "outcome").await;
    let outcomes: Vec<_> = outcomes
        .iter()
        .map(|o| (o["outcome"].clone(), o["upstream_status"].clone()))
        .collect();
    assert_eq!(outcomes, [(json!("unknown"), json!(503))], "{outcomes:?}");
    let reads = events_where(&env, 1, |e| e["path"] == "/api/v3/account").await;
    assert_eq!(reads[0]["outcome"], "answered", "{reads:?}");
    assert_eq!(reads[0]["upstream_status"], 503, "{reads:?}");
}

/// A regression test (from a review): a decimal `recvWindow`, which spot reads, was
/// forwarded to USD-M futures, which refuse it as malformed.
#[tokio::test]
async fn a_decimal_recv_window_reaches_spot_only() {
    let env = default_env().await;
    for (path, status) in [("/fapi/v2/account", 400), ("/api/v3/account", 200)] {
        let payload = format!("timestamp={}&recvWindow=5000.5", keygate_gateway::now_ms());
        let target = format!("/binance{path}?{}", sign_exactly(&payload, BOT_SECRET));
        let (got, body) = raw(env.gateway, &http("GET", &target, "", "")).await;
        assert_eq!(got, status, "{path}: {body}");
    }
    assert_eq!(exchange_saw(&env, "/fapi/v2/account"), 0);
    assert_eq!(exchange_saw(&env, "/api/v3/account"), 1);
}

/// A regression test: a request whose client hung up while the exchange had it left no
/// event at all. (The request now runs to its end whatever its client does, see
/// `a_client_that_half_closes_after_its_order_still_gets_the_answer`: here, until the
/// exchange is overdue.)
#[tokio::test]
async fn a_request_whose_client_hangs_up_is_still_audited() {
    // An exchange that tells the time and never answers anything else.
    let exchange = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let exchange_addr = exchange.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((mut socket, _)) = exchange.accept().await {
            let mut head = [0u8; 2048];
            let n = socket.read(&mut head).await.unwrap_or(0);
            if head[..n].starts_with(b"GET /api/v3/time") {
                let body = format!("{{\"serverTime\":{}}}", keygate_gateway::now_ms());
                let answer = format!(
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(answer.as_bytes()).await;
            }
            held.push(socket);
        }
    });
    let env = setup(
        trading_policy(),
        Some(format!("http://{exchange_addr}")),
        Duration::from_secs(1),
    )
    .await;
    let target = format!("/binance/api/v3/account?{}", sign("", BOT_SECRET));
    let mut client = tokio::net::TcpStream::connect(env.gateway).await.unwrap();
    client
        .write_all(&http("GET", &target, "", ""))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(client);
    let events = events_where(&env, 1, |e| e["path"] == "/api/v3/account").await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["outcome"], "unknown");
    assert_eq!(events[0]["client"], "bot1");
}

/// A regression test: a client that shut down its sending side once its order was sent
/// (a half-close, as some HTTP clients do to mark the end of a request) had its request
/// dropped at that end of input, in the middle of the call to the exchange: the order
/// could execute and the bot got no answer.
#[tokio::test]
async fn a_client_that_half_closes_after_its_order_still_gets_the_answer() {
    let env = default_env().await;
    let order = sign(
        "symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.01&price=50000",
        BOT_SECRET,
    );
    let mut client = tokio::net::TcpStream::connect(env.gateway).await.unwrap();
    client
        .write_all(&http("POST", "/binance/api/v3/order", "", &order))
        .await
        .unwrap();
    // shutdown(Write): the gateway reads the end of input; the client still reads.
    client.shutdown().await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), client.read_to_end(&mut answer))
        .await
        .expect("the connection ends once answered")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("\"orderId\""), "{answer}");
    assert_eq!(exchange_saw(&env, "/api/v3/order"), 1);
    let answered = events_where(&env, 1, |e| {
        e["type"] == "outcome" && e["outcome"] == "answered"
    })
    .await;
    assert_eq!(answered.len(), 1, "{answered:?}");
    assert_eq!(answered[0]["upstream_status"], 200, "{answered:?}");

    // One that closes altogether, while keygate waits for its order's audit event to be
    // durable, cannot be told apart until its answer is written: the order, sent whole,
    // goes on once its event is durable, and its outcome follows.
    let blocker = rusqlite::Connection::open(&env.db).unwrap();
    blocker.execute_batch("BEGIN IMMEDIATE").unwrap();
    let order = sign(
        "symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.02&price=50000",
        BOT_SECRET,
    );
    let mut client = tokio::net::TcpStream::connect(env.gateway).await.unwrap();
    client
        .write_all(&http("POST", "/binance/api/v3/order", "", &order))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(client);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        exchange_saw(&env, "/api/v3/order"),
        1,
        "sent before it was audited"
    );
    blocker.execute_batch("ROLLBACK").unwrap();
    let answered = events_where(&env, 2, |e| {
        e["type"] == "outcome" && e["outcome"] == "answered"
    })
    .await;
    assert_eq!(answered.len(), 2, "{answered:?}");
    assert_eq!(exchange_saw(&env, "/api/v3/order"), 2);
    let store = Store::open(&env.db).unwrap();
    keygate_audit::verify(&store, &env.audit_key).unwrap();
}

/// The events about `path` in the log, as JSON.
/// [`events_about`] once there are at least `n` (waiting up to five seconds for the audit
/// writer).
async fn events_about_at_least(env: &Env, path: &str, n: usize) -> Vec<Value> {
    let mut found = Vec::new();
    for _ in 0..100 {
        found = events_about(env, path);
        if found.len() >= n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    found
}

fn events_about(env: &Env, path: &str) -> Vec<Value> {
    let store = Store::open(&env.db).unwrap();
    let events: Vec<Value> = keygate_audit::read_unverified(&store, 1, 1000)
        .unwrap()
        .iter()
        .map(|(_, e)| serde_json::to_value(e).unwrap())
        .collect();
    // An outcome event names no path: it follows its request by id.
    let ids: Vec<Value> = events
        .iter()
        .filter(|e| e["path"] == path)
        .map(|e| e["request_id"].clone())
        .collect();
    events
        .into_iter()
        .filter(|e| ids.contains(&e["request_id"]))
        .collect()
}

#[tokio::test]
async fn a_request_dropped_before_it_is_forwarded_is_audited() {
    let env = default_env().await;
    // A body cut short: the client sends half of it and hangs up.
    let mut client = tokio::net::TcpStream::connect(env.gateway).await.unwrap();
    let order = sign(
        "symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.01&price=50000",
        BOT_SECRET,
    );
    let request = http("POST", "/binance/api/v3/order", "", &order);
    client
        .write_all(&request[..request.len() - order.len() / 2])
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    drop(client);
    let cut = events_about_at_least(&env, "/api/v3/order", 1).await;
    assert_eq!(cut.len(), 1, "{cut:?}");
    assert_eq!(cut[0]["rule"], "client_gone");
    assert_eq!(cut[0]["outcome"], "not_forwarded");
    // A malformed body from a client still there is malformed, not a client gone.
    let (status, _) = raw(
        env.gateway,
        b"POST /binance/api/v3/order HTTP/1.1\r\nHost: 127.0.0.1\r\n\
          Content-Type: application/x-www-form-urlencoded\r\n\
          Transfer-Encoding: chunked\r\nConnection: close\r\n\r\nzz\r\nab\r\n0\r\n\r\n",
    )
    .await;
    assert_eq!(status, 400);
    let malformed = events_about_at_least(&env, "/api/v3/order", 2).await;
    assert_eq!(malformed.len(), 2, "{malformed:?}");
    assert_eq!(malformed[1]["rule"], "malformed", "{malformed:?}");
    assert_eq!(exchange_saw(&env, "/api/v3/order"), 0);
    let store = Store::open(&env.db).unwrap();
    keygate_audit::verify(&store, &env.audit_key).unwrap();
}

#[tokio::test]
async fn every_request_is_audited_and_the_log_verifies() {
    let env = default_env().await;
    get(&env, "/api/v3/account", "").await;
    post(
        &env,
        "/api/v3/order",
        "symbol=DOGEUSDT&side=BUY&type=MARKET&quoteOrderQty=10",
    )
    .await;
    post(
        &env,
        "/api/v3/order",
        "symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.01&price=50000",
    )
    .await;
    // Signed with the wrong secret: someone holding bot1's API key, which is no secret.
    let forged = format!("/binance/api/v3/order?{}", sign("symbol=BTCUSDT", "wrong"));
    assert_eq!(
        raw(env.gateway, &http("POST", &forged, "", "")).await.0,
        400
    );
    // Once the audit writer has written what is checked below.
    events_where(&env, 1, |e| e["allowed"] == false && e["rule"] == "symbol").await;
    events_where(&env, 1, |e| e["rule"] == "authentication").await;
    let pending = events_where(&env, 1, |e| e["outcome"] == "pending").await;
    let trade = pending.first().expect("trade written before forwarding")["request_id"].clone();
    events_where(&env, 1, |e| {
        e["type"] == "outcome" && e["request_id"] == trade
    })
    .await;
    let store = Store::open(&env.db).unwrap();
    let events = keygate_audit::read_unverified(&store, 1, 100).unwrap();
    let json: Vec<Value> = events
        .iter()
        .map(|(_, e)| serde_json::to_value(e).unwrap())
        .collect();
    let denied = json
        .iter()
        .find(|e| e["allowed"] == false)
        .expect("a denied event");
    assert_eq!(denied["rule"], "symbol");
    assert_eq!(denied["client"], "bot1");
    assert_eq!(denied["symbol"], "DOGEUSDT");
    let unauthenticated = json
        .iter()
        .find(|e| e["rule"] == "authentication")
        .expect("the forged request is audited");
    assert_eq!(unauthenticated["client"], Value::Null, "{unauthenticated}");
    assert!(unauthenticated["message"]
        .as_str()
        .unwrap()
        .contains("API key of client bot1"));
    let pending = json
        .iter()
        .find(|e| e["outcome"] == "pending")
        .expect("trade written before forwarding");
    let outcome = json
        .iter()
        .find(|e| e["type"] == "outcome" && e["request_id"] == pending["request_id"])
        .expect("outcome of the trade");
    assert_eq!(outcome["upstream_status"], 200);
    assert_eq!(
        keygate_audit::verify(&store, &env.audit_key).unwrap() as usize,
        events.len()
    );
    let mut all = std::fs::read(&env.db).unwrap();
    all.extend(std::fs::read(env.db.with_extension("db-wal")).unwrap_or_default());
    for secret in [REAL_SECRET, BOT_SECRET, REAL_KEY] {
        assert!(
            !all.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "a secret is in the database file"
        );
    }
    // Nor a signature: the bot's (the forged one's, whose bytes the test knows) or one
    // keygate made with the real key (as the exchange received them).
    let signature_of = |params: &str| {
        params
            .split('&')
            .find_map(|p| p.strip_prefix("signature="))
            .map(str::to_owned)
    };
    let mut signatures: Vec<String> = env
        .exchange
        .simulator()
        .requests()
        .iter()
        .filter_map(|r| signature_of(&r.query).or_else(|| signature_of(&r.body)))
        .collect();
    assert!(signatures.len() >= 2, "{signatures:?}");
    signatures.extend(signature_of(forged.split_once('?').map_or("", |(_, q)| q)));
    for signature in &signatures {
        assert!(
            !all.windows(signature.len())
                .any(|w| w == signature.as_bytes()),
            "a signature is in the database file: {signature}"
        );
    }
}

#[tokio::test]
async fn an_ed25519_virtual_key_signs_without_keygate_holding_its_private_key() {
    use base64::Engine as _;
    use ed25519_dalek::{Signer, SigningKey};

    let bot = SigningKey::from_bytes(&[0x42; 32]);
    let material = ClientKeyMaterial::Ed25519(bot.verifying_key().to_bytes());
    let env = setup_with(
        trading_policy(),
        None,
        Duration::from_secs(10),
        material,
        ClientLimits::default(),
        vec![],
    )
    .await;
    let sign_ed = |key: &SigningKey| {
        let payload = format!("timestamp={}&recvWindow=10000", keygate_gateway::now_ms());
        let signature = base64::engine::general_purpose::STANDARD
            .encode(key.sign(payload.as_bytes()).to_bytes());
        let encoded =
            percent_encoding::utf8_percent_encode(&signature, percent_encoding::NON_ALPHANUMERIC);
        format!("{payload}&signature={encoded}")
    };
    let (status, body) = raw(
        env.gateway,
        &http(
            "GET",
            &format!("/binance/api/v3/account?{}", sign_ed(&bot)),
            "",
            "",
        ),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let impostor = SigningKey::from_bytes(&[0x43; 32]);
    let (status, body) = raw(
        env.gateway,
        &http(
            "GET",
            &format!("/binance/api/v3/account?{}", sign_ed(&impostor)),
            "",
            "",
        ),
    )
    .await;
    assert_eq!((status, body["code"].clone()), (400, Value::from(-1022)));
    // The exchange is still signed to with the real HMAC key.
    let seen = env.exchange.simulator().requests();
    let accounts: Vec<_> = seen
        .iter()
        .filter(|r| r.path == "/api/v3/account")
        .collect();
    assert_eq!(accounts.len(), 1, "the impostor never reached the exchange");
    assert_eq!(accounts[0].api_key.as_deref(), Some(REAL_KEY));
}

#[tokio::test]
async fn shutdown_finishes_what_is_in_flight_and_closes_the_port() {
    let mut env = default_env().await;
    let (status, _) = get(&env, "/api/v3/account", "").await;
    assert_eq!(status, 200);
    let server = env.server.take().unwrap();
    tokio::task::spawn_blocking(move || server.shutdown())
        .await
        .unwrap()
        .unwrap();
    assert!(tokio::net::TcpStream::connect(env.gateway).await.is_err());
}

/// A gateway whose clients get `timeout` and `max_connections`, as `keygate serve
/// --client-timeout --max-connections` sets them.
async fn limited_env(timeout: Duration, max_connections: usize) -> Env {
    let limits = ClientLimits {
        timeout,
        max_connections,
        ..ClientLimits::default()
    };
    with_limits(limits).await
}

/// Reads until the gateway closes the connection; `None` if it is still open after
/// `within`.
async fn closed_within(stream: &mut tokio::net::TcpStream, within: Duration) -> Option<Vec<u8>> {
    let mut received = Vec::new();
    match tokio::time::timeout(within, stream.read_to_end(&mut received)).await {
        Ok(_) => Some(received),
        Err(_) => None,
    }
}

#[tokio::test]
async fn slow_or_idle_clients_are_disconnected() {
    let timeout = Duration::from_millis(400);
    let env = limited_env(timeout, 64).await;
    let slack = Duration::from_secs(5);

    // Half a request line, never finished.
    let mut slow_headers = tokio::net::TcpStream::connect(env.gateway).await.unwrap();
    slow_headers
        .write_all(b"GET /binance/api/v3/account HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        .await
        .unwrap();
    // A kept-alive connection that never sends its next request.
    let mut idle = tokio::net::TcpStream::connect(env.gateway).await.unwrap();
    // Headers promising a body of 100 bytes, and 10 of them. Its time counts from before
    // it connects: a test held up after writing must not find it closed "early".
    let started = std::time::Instant::now();
    let mut slow_body = tokio::net::TcpStream::connect(env.gateway).await.unwrap();
    let head = format!(
        "POST /binance/api/v3/order HTTP/1.1\r\nHost: 127.0.0.1\r\nX-MBX-APIKEY: {BOT_KEY}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\nsymbol=BTC"
    );
    slow_body.write_all(head.as_bytes()).await.unwrap();

    assert!(closed_within(&mut slow_headers, slack).await.is_some());
    assert!(closed_within(&mut idle, slack).await.is_some());
    let answer = closed_within(&mut slow_body, slack)
        .await
        .expect("the slow body is refused and its connection closed");
    assert!(
        started.elapsed() >= timeout / 2,
        "closed before the timeout"
    );
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("not received in time"), "{answer}");
    assert_eq!(exchange_saw(&env, "/api/v3/order"), 0);

    // A client that keeps up is served as before.
    let (status, _) = get(&env, "/api/v3/account", "").await;
    assert_eq!(status, 200);
}

/// A connection to the gateway from `source` (a loopback address).
async fn connect_from(env: &Env, source: &str) -> tokio::net::TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(format!("{source}:0").parse().unwrap()).unwrap();
    socket.connect(env.gateway).await.unwrap()
}

/// Whether the gateway serves a request on `stream` (or closes it unserved); the
/// connection stays open.
async fn is_served(stream: &mut tokio::net::TcpStream) -> bool {
    stream
        .write_all(
            b"GET /binance/api/v3/time HTTP/1.1\r\nHost: 127.0.0.1\r\n\
              X-Forwarded-For: 192.0.2.1\r\n\r\n",
        )
        .await
        .unwrap_or(());
    let mut answer = [0_u8; 12];
    match tokio::time::timeout(Duration::from_secs(5), stream.read_exact(&mut answer)).await {
        Ok(Ok(_)) => answer.starts_with(b"HTTP/1.1 200"),
        Ok(Err(_)) => false,
        Err(_) => panic!("neither served nor closed"),
    }
}

#[tokio::test]
async fn one_address_cannot_hold_every_connection() {
    let limits = ClientLimits {
        max_connections: 64,
        max_connections_per_source: 2,
        ..ClientLimits::default()
    };
    let env = with_limits(limits).await;
    let mut first = connect_from(&env, "127.0.0.1").await;
    let mut second = connect_from(&env, "127.0.0.1").await;
    assert!(is_served(&mut first).await && is_served(&mut second).await);
    let mut third = connect_from(&env, "127.0.0.1").await;
    assert!(
        !is_served(&mut third).await,
        "a third connection from one address was served"
    );
    // Another address has its own share.
    let mut elsewhere = connect_from(&env, "127.0.0.2").await;
    assert!(is_served(&mut elsewhere).await);

    // A trusted proxy carries every bot behind it: the per-source limit does not apply.
    let proxied = setup_with(
        trading_policy(),
        None,
        Duration::from_secs(10),
        ClientKeyMaterial::Hmac(SecretString::new(BOT_SECRET.into())),
        limits,
        vec!["127.0.0.1/32".parse().unwrap()],
    )
    .await;
    let mut open = Vec::new();
    for _ in 0..4 {
        let mut stream = connect_from(&proxied, "127.0.0.1").await;
        assert!(
            is_served(&mut stream).await,
            "the trusted proxy was limited"
        );
        open.push(stream);
    }
}

/// A regression test (from a review): a few addresses with no key could take every
/// connection slot with kept-alive public calls, and bots reconnecting were closed as
/// they arrived. Addresses no client may call from hold half the slots at most, all
/// together.
#[tokio::test]
async fn addresses_no_client_may_call_from_hold_half_the_connections_at_most() {
    let limits = ClientLimits {
        max_connections: 8,
        max_connections_per_source: 3,
        ..ClientLimits::default()
    };
    let policy = Policy {
        allow_ips: vec!["127.0.0.1/32".parse().unwrap()],
        ..trading_policy()
    };
    let env = setup_with(
        policy,
        None,
        Duration::from_secs(10),
        ClientKeyMaterial::Hmac(SecretString::new(BOT_SECRET.into())),
        limits,
        vec![],
    )
    .await;
    let mut open = Vec::new();
    for source in ["127.0.0.2", "127.0.0.2", "127.0.0.3", "127.0.0.3"] {
        let mut stream = connect_from(&env, source).await;
        assert!(is_served(&mut stream).await, "{source}: within the share");
        open.push(stream);
    }
    let mut fifth = connect_from(&env, "127.0.0.4").await;
    assert!(
        !is_served(&mut fifth).await,
        "a fifth stranger's connection was served"
    );
    // The bot's address has the other half.
    for _ in 0..3 {
        let mut stream = connect_from(&env, "127.0.0.1").await;
        assert!(
            is_served(&mut stream).await,
            "the bot's address was refused"
        );
        open.push(stream);
    }
}

#[tokio::test]
async fn connections_past_the_limit_are_closed_until_others_end() {
    let env = limited_env(Duration::from_secs(30), 2).await;
    let first = tokio::net::TcpStream::connect(env.gateway).await.unwrap();
    let second = tokio::net::TcpStream::connect(env.gateway).await.unwrap();
    // Let the acceptor count both before the third arrives.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut third = tokio::net::TcpStream::connect(env.gateway).await.unwrap();
    third
        .write_all(&http("GET", "/binance/api/v3/time", "", ""))
        .await
        .unwrap_or(());
    let answer = closed_within(&mut third, Duration::from_secs(5))
        .await
        .expect("the third connection is closed");
    assert!(answer.is_empty(), "the third connection was served");

    drop((first, second));
    // The slots free up as the workers notice the closed connections.
    let mut served = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let (status, _) = raw(env.gateway, &http("GET", "/binance/api/v3/time", "", "")).await;
        if status == 200 {
            served = true;
            break;
        }
    }
    assert!(served, "no connection was served after the others closed");
}

/// An exchange on 127.0.0.1 that answers `exchangeInfo` and `allOrders` with `size`
/// bytes, its clock with the time, and anything else with `{}`, on kept-alive
/// connections.
async fn exchange_with_large_answers(size: usize) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let large = Arc::new(vec![b' '; size]);
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let large = Arc::clone(&large);
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while stream.read_exact(&mut byte).await.is_ok() {
                    head.push(byte[0]);
                    if !head.ends_with(b"\r\n\r\n") {
                        continue;
                    }
                    let target = String::from_utf8_lossy(&head).to_ascii_lowercase();
                    head.clear();
                    let length = target
                        .lines()
                        .find_map(|line| line.strip_prefix("content-length:"))
                        .map_or(0, |n| n.trim().parse::<usize>().unwrap());
                    let mut request_body = vec![0u8; length];
                    if stream.read_exact(&mut request_body).await.is_err() {
                        return;
                    }
                    let body = if target.contains("/exchangeinfo") || target.contains("/allorders")
                    {
                        large.to_vec()
                    } else if target.contains("/time") {
                        format!(r#"{{"serverTime":{}}}"#, keygate_gateway::now_ms()).into_bytes()
                    } else {
                        b"{}".to_vec()
                    };
                    let answer_head = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                        body.len()
                    );
                    if stream.write_all(answer_head.as_bytes()).await.is_err()
                        || stream.write_all(&body).await.is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    format!("http://{addr}")
}

/// A connection that sends `request` and reads nothing of its answer: its small receive
/// buffer and the gateway's send buffer take a few MiB of it, the rest stays held.
async fn slow_reader(env: &Env, request: &[u8]) -> tokio::net::TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stream = socket.connect(env.gateway).await.unwrap();
    stream.write_all(request).await.unwrap();
    stream
}

/// Polls `request` until it is answered other than 200 (`refused`) or with 200.
async fn until_answered(env: &Env, request: &[u8], refused: bool) -> (u16, Value) {
    for _ in 0..100 {
        let (status, body) = raw(env.gateway, request).await;
        if (status != 200) == refused {
            return (status, body);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("never {}", if refused { "refused" } else { "served" });
}

/// A regression test: answers were held whole for clients reading them slowly, with no
/// bound over all connections, so a few slow readers of a large public answer could hold
/// gigabytes. Past `max_answer_bytes` held, public data is refused before it is sent, and
/// signed reads too once answers to signed requests alone hold that much: callers without
/// a key cannot hold the bots' reads back. Orders never are, and once the slow readers
/// are gone everything goes on.
#[tokio::test]
async fn reads_are_refused_while_large_answers_pile_up_for_slow_clients() {
    let upstream = exchange_with_large_answers(16 * 1024 * 1024).await;
    let limits = ClientLimits {
        max_answer_bytes: 1024 * 1024,
        ..ClientLimits::default()
    };
    let material = ClientKeyMaterial::Hmac(SecretString::new(BOT_SECRET.into()));
    let env = setup_with(
        trading_policy(),
        Some(upstream),
        Duration::from_secs(10),
        material,
        limits,
        vec![],
    )
    .await;
    let time = b"GET /binance/api/v3/time HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    let order = "symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.01&price=50000";
    assert_eq!(raw(env.gateway, time).await.0, 200);

    // A caller without a key reads a large public answer slowly: public data is refused,
    // the bot's reads and orders are not.
    let public = slow_reader(
        &env,
        b"GET /binance/api/v3/exchangeInfo HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    .await;
    let (status, body) = until_answered(&env, time, true).await;
    assert_eq!(
        (status, body["code"].as_i64()),
        (429, Some(-1003)),
        "{body}"
    );
    assert!(
        body["msg"].as_str().unwrap().contains("read them slowly"),
        "{body}"
    );
    assert_eq!(get(&env, "/api/v3/account", "").await.0, 200);
    assert_eq!(post(&env, "/api/v3/order", order).await.0, 200);

    // A bot reads a large signed answer slowly: now signed reads are refused too, orders not.
    let all_orders = http(
        "GET",
        &format!(
            "/binance/api/v3/allOrders?{}",
            sign("symbol=BTCUSDT", BOT_SECRET)
        ),
        "",
        "",
    );
    let signed = slow_reader(&env, &all_orders).await;
    let mut refused = None;
    for _ in 0..100 {
        let (status, body) = get(&env, "/api/v3/account", "").await;
        if status != 200 {
            refused = Some((status, body));
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, body) = refused.expect("signed reads were never held back");
    assert_eq!(
        (status, body["code"].as_i64()),
        (429, Some(-1003)),
        "{body}"
    );
    assert_eq!(post(&env, "/api/v3/order", order).await.0, 200);
    let backlog = events_where(&env, 2, |e| e["rule"] == "answer_backlog").await;
    assert!(backlog.len() >= 2, "{backlog:?}");

    // The slow readers go away: what they held is given back, and reads go on.
    drop((public, signed));
    until_answered(&env, time, false).await;
    assert_eq!(get(&env, "/api/v3/account", "").await.0, 200);
}

/// A regression test: hyper's default read buffer let a request head grow to about
/// 400 KiB, and more in one last read: that much memory per connection, for as many
/// connections as are allowed, from clients that need no key. A head far past 64 KiB is
/// now refused (431) before anything reads it as a request, and nothing is forwarded.
#[tokio::test]
async fn an_oversized_request_head_is_refused_and_never_forwarded() {
    let env = default_env().await;
    let target = format!("/binance/api/v3/account?{}", sign("", BOT_SECRET));
    let padding = format!("X-Padding: {}\r\n", "a".repeat(300 * 1024));
    let answer = exchange_raw(env.gateway, &http("GET", &target, &padding, "")).await;
    assert_eq!(answer.status, 431, "{:?}", answer.headers);
    let probe = format!(
        "GET /__mock/requests HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        env.exchange.addr
    );
    let reached = exchange_raw(env.exchange.addr, probe.as_bytes()).await;
    assert_eq!(reached.json(), serde_json::json!([]), "{}", reached.body);
    // An ordinary head of a few kilobytes is read as ever.
    let padding = format!("X-Padding: {}\r\n", "a".repeat(4 * 1024));
    let answer = exchange_raw(env.gateway, &http("GET", &target, &padding, "")).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
}

/// Sends the simulator's test control `path_and_query` (a POST without a body).
async fn control_simulator(env: &Env, path_and_query: &str) {
    let sim: SocketAddr = env
        .exchange
        .url()
        .trim_start_matches("http://")
        .parse()
        .unwrap();
    let request = format!(
        "POST {path_and_query} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    let answer = exchange_raw(sim, request.as_bytes()).await;
    assert_eq!(answer.status, 200, "{path_and_query}: {}", answer.body);
}

/// The `n`th signed `GET /api/v3/account` of requests signed in one millisecond (see
/// [`sign_nth`]).
fn account_read(n: u64) -> Vec<u8> {
    http(
        "GET",
        &format!("/binance/api/v3/account?{}", sign_nth(n, BOT_SECRET)),
        "",
        "",
    )
}

/// The seconds a `Retry-After` of `answer` asks for.
fn retry_after(answer: &Answer) -> u64 {
    let values = answer.header("retry-after");
    assert_eq!(values.len(), 1, "{:?}", answer.headers);
    values[0].parse().unwrap()
}

/// Binance answers 429 with `Retry-After` once the address's request weight is used up,
/// and bans the address (418) when it goes on sending: a ban that stops every client
/// behind keygate, orders and cancels included. So after such an answer keygate sends
/// nothing more to that pool until `Retry-After` has passed, answering each request as the
/// exchange would, and tells the operator once.
#[tokio::test]
async fn after_a_429_nothing_more_goes_to_the_pool_until_it_has_waited() {
    clear_of_a_minute_turn().await;
    let env = default_env().await;
    control_simulator(&env, "/__mock/weight-limit?limit=45").await;
    // An account read weighs 20: the third takes the minute's weight past 45.
    for _ in 0..2 {
        assert_eq!(get(&env, "/api/v3/account", "").await.0, 200);
    }
    let answer = exchange_raw(env.gateway, &account_read(0)).await;
    assert_eq!(answer.status, 429, "{}", answer.body);
    assert!((1..=60).contains(&retry_after(&answer)));
    let sent = env.exchange.simulator().requests().len();

    // A read, an order and public data for the same pool: answered by keygate, as the
    // exchange would, with the time left; none sent.
    let order = http(
        "POST",
        "/binance/api/v3/order",
        "",
        &sign(
            "symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.01&price=50000",
            BOT_SECRET,
        ),
    );
    let public =
        b"GET /binance/api/v3/exchangeInfo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    // And any other pool of the host: Binance does not say what counts as going on.
    let sapi = http(
        "GET",
        &format!(
            "/binance/sapi/v1/account/apiRestrictions?{}",
            sign_nth(2, BOT_SECRET)
        ),
        "",
        "",
    );
    for request in [account_read(1), order, public.to_vec(), sapi] {
        let held = exchange_raw(env.gateway, &request).await;
        assert_eq!(held.status, 429, "{}", held.body);
        assert_eq!(held.json()["code"], -1003, "{}", held.body);
        let msg = held.json()["msg"].as_str().unwrap().to_owned();
        assert!(msg.contains("used up its request weight"), "{msg}");
        // A regression test (found by review): the end of the pause was in raw
        // milliseconds since the epoch; it is in RFC 3339, as every time keygate shows.
        let until = msg
            .split("until ")
            .nth(1)
            .and_then(|rest| rest.split(';').next())
            .unwrap_or_default();
        assert!(
            until.len() == 24 && until.ends_with('Z') && !msg.contains("epoch"),
            "{msg}"
        );
        assert!((1..=60).contains(&retry_after(&held)));
    }
    assert_eq!(env.exchange.simulator().requests().len(), sent);
    let held = events_where(&env, 4, |e| e["rule"] == "exchange_back_off").await;
    assert_eq!(held.len(), 4, "{held:?}");
    assert!(held.iter().any(|e| e["action"] == "trade"), "{held:?}");
    // One alert, a warning, for the pause.
    let alert = env.alerts.try_recv().expect("an exchange_back_off alert");
    assert_eq!(
        (alert.rule, alert.severity),
        (AlertRule::ExchangeBackOff, Severity::Warning)
    );
    assert!(alert.summary.contains("HTTP 429"), "{}", alert.summary);
    assert!(env.alerts.try_recv().is_err());
}

/// USD-M's documentation, unlike spot's, promises no `Retry-After` with a 429: keygate
/// holds the pool back until the weight's minute turns all the same (found by review:
/// without the header it held nothing back, and bots going on would have had the address
/// banned, which stops every client's orders and cancels).
#[tokio::test]
async fn a_429_without_retry_after_holds_the_pool_back_too() {
    clear_of_a_minute_turn().await;
    let env = default_env().await;
    control_simulator(&env, "/__mock/weight-limit?limit=45&retry_after=0").await;
    for _ in 0..2 {
        assert_eq!(get(&env, "/api/v3/account", "").await.0, 200);
    }
    let answer = exchange_raw(env.gateway, &account_read(0)).await;
    assert_eq!(answer.status, 429, "{}", answer.body);
    assert!(
        answer.header("retry-after").is_empty(),
        "{:?}",
        answer.headers
    );
    let sent = env.exchange.simulator().requests().len();
    let held = exchange_raw(env.gateway, &account_read(1)).await;
    assert_eq!(held.status, 429, "{}", held.body);
    let msg = held.json()["msg"].as_str().unwrap().to_owned();
    assert!(msg.contains("used up its request weight"), "{msg}");
    assert!((1..=60).contains(&retry_after(&held)));
    assert_eq!(env.exchange.simulator().requests().len(), sent);
}

/// Has the exchange ask keygate to back off: with the simulator's request weight limited
/// to 45, the third account read (20 each) is answered 429, and keygate pauses the
/// upstream.
async fn pause_with_a_429(env: &Env) {
    control_simulator(env, "/__mock/weight-limit?limit=45").await;
    for n in 0..3 {
        let read = http(
            "GET",
            &format!("/binance/api/v3/account?{}", sign_nth(n, BOT_SECRET)),
            "",
            "",
        );
        let status = exchange_raw(env.gateway, &read).await.status;
        assert_eq!(status, if n < 2 { 200 } else { 429 }, "read {n}");
    }
}

/// Found by review: during a pause every signed request was held back before its
/// decision, so a withdrawal its client may not make was recorded as held back (a
/// warning, "not sent") rather than denied (critical), and the denial alert it should
/// have raised was lost. Only reads are held back before their decision now.
#[tokio::test]
async fn requests_denied_by_policy_during_a_pause_are_denied() {
    clear_of_a_minute_turn().await;
    let env = default_env().await;
    pause_with_a_429(&env).await;
    let sent = env.exchange.simulator().requests().len();
    let withdraw = http(
        "POST",
        "/binance/sapi/v1/capital/withdraw/apply",
        "",
        &sign(
            "coin=USDT&network=TRX&address=TAttackerAddress&amount=1000",
            BOT_SECRET,
        ),
    );
    let denied = exchange_raw(env.gateway, &withdraw).await;
    assert_eq!(denied.status, 401, "{}", denied.body);
    assert_eq!(denied.json()["code"], -2015, "{}", denied.body);
    assert_eq!(env.exchange.simulator().requests().len(), sent);
    // Recorded as denied by its rule, which the monitor raises as critical.
    let events = events_where(&env, 1, |e| e["action"] == "withdraw").await;
    assert_eq!(events[0]["rule"], "scope", "{events:?}");
    assert_eq!(events[0]["allowed"], false, "{events:?}");
    // Found by review: a read its policy denies was held back before its decision, so
    // symbol probing during a pause showed as back-off. Decided first, it is denied; a
    // read the policy allows is held back.
    let probe = http(
        "GET",
        &format!(
            "/binance/api/v3/openOrders?{}",
            sign("symbol=DOGEUSDT", BOT_SECRET)
        ),
        "",
        "",
    );
    let denied = exchange_raw(env.gateway, &probe).await;
    assert_eq!(denied.status, 401, "{}", denied.body);
    assert!(
        denied.body.contains("DOGEUSDT is not allowed"),
        "{}",
        denied.body
    );
    let allowed = http(
        "GET",
        &format!(
            "/binance/api/v3/openOrders?{}",
            sign("symbol=BTCUSDT", BOT_SECRET)
        ),
        "",
        "",
    );
    let held = exchange_raw(env.gateway, &allowed).await;
    assert_eq!(held.status, 429, "{}", held.body);
    assert_eq!(env.exchange.simulator().requests().len(), sent);
    let reads = events_where(&env, 2, |e| e["path"] == "/api/v3/openOrders").await;
    assert_eq!(reads[0]["rule"], "symbol", "{reads:?}");
    assert_eq!(reads[1]["rule"], "exchange_back_off", "{reads:?}");
}

/// Found by review: a read held back during a pause was decided, which counted it
/// against its client's rate, so a bot that read again while it waited found its first
/// orders after the pause refused for its rate. Held-back reads count for nothing.
#[tokio::test]
async fn reads_held_back_during_a_pause_spend_no_rate() {
    clear_of_a_minute_turn().await;
    // The pause takes three reads; six more in the same second would pass the rate.
    let policy = Policy {
        rate_per_second: Some(3),
        ..trading_policy()
    };
    let env = setup(policy, None, Duration::from_secs(10)).await;
    pause_with_a_429(&env).await;
    for n in 10..16 {
        let read = http(
            "GET",
            &format!("/binance/api/v3/openOrders?{}", sign_nth(n, BOT_SECRET)),
            "",
            "",
        );
        let held = exchange_raw(env.gateway, &read).await;
        assert_eq!(held.status, 429, "{}", held.body);
        assert!(!held.body.contains("rate"), "{}", held.body);
    }
    let events = events_where(&env, 6, |e| e["path"] == "/api/v3/openOrders").await;
    assert_eq!(events.len(), 6, "{events:?}");
    assert!(
        events.iter().all(|e| e["rule"] == "exchange_back_off"),
        "{events:?}"
    );
}

/// A price lookup the exchange answers asking to back off holds its order back as such
/// (429, `exchange_back_off`), not as an order that could not be priced (401): the bot's
/// library then waits, as it would for the exchange's own 429.
#[tokio::test]
async fn an_order_whose_price_lookup_meets_a_429_is_held_back() {
    clear_of_a_minute_turn().await;
    let env = default_env().await;
    let answer = exchange_raw(
        env.gateway,
        &http(
            "GET",
            &format!("/binance/api/v3/account?{}", sign("", BOT_SECRET)),
            "",
            "",
        ),
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let used: u64 = answer.header("x-mbx-used-weight-1m")[0].parse().unwrap();
    control_simulator(&env, &format!("/__mock/weight-limit?limit={}", used + 1)).await;
    // 0.01 BTC at the market needs a price under the 5000 limit: the lookup takes the
    // weight past the limit.
    let (status, body) = post(
        &env,
        "/api/v3/order",
        "symbol=BTCUSDT&side=BUY&type=MARKET&quantity=0.01",
    )
    .await;
    assert_eq!(
        (status, body["code"].as_i64()),
        (429, Some(-1003)),
        "{body}"
    );
    assert_eq!(exchange_saw(&env, "/api/v3/ticker/bookTicker"), 1);
    assert_eq!(exchange_saw(&env, "/api/v3/order"), 0);
    let held = events_where(&env, 1, |e| e["path"] == "/api/v3/order").await;
    assert_eq!(held[0]["rule"], "exchange_back_off", "{held:?}");
}

/// A ban (418) keeps keygate from sending anything to that upstream, whichever pool,
/// until it ends: each request would make it longer.
#[tokio::test]
async fn after_a_ban_nothing_more_goes_to_the_upstream_until_it_ends() {
    clear_of_a_minute_turn().await;
    let env = default_env().await;
    control_simulator(&env, "/__mock/weight-limit?limit=45&ban=300").await;
    // Another program on the same address spends the weight and goes on after its 429.
    let sim: SocketAddr = env
        .exchange
        .url()
        .trim_start_matches("http://")
        .parse()
        .unwrap();
    let info = b"GET /api/v3/exchangeInfo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    let mut statuses = Vec::new();
    while statuses.last() != Some(&418) && statuses.len() < 10 {
        statuses.push(exchange_raw(sim, info).await.status);
    }
    assert_eq!(statuses.last(), Some(&418), "{statuses:?}");
    // The bot's next read meets the ban, as it came.
    let (status, body) = get(&env, "/api/v3/account", "").await;
    assert_eq!(
        (status, body["code"].as_i64()),
        (418, Some(-1003)),
        "{body}"
    );
    let sent = env.exchange.simulator().requests().len();
    // From then on nothing goes to the upstream, another pool of it included. (Signed
    // apart from the read before, which may have come in the same millisecond.)
    let read = http(
        "GET",
        &format!("/binance/fapi/v2/account?{}", sign_nth(1, BOT_SECRET)),
        "",
        "",
    );
    let held = exchange_raw(env.gateway, &read).await;
    assert_eq!(held.status, 418, "{}", held.body);
    assert_eq!(held.json()["code"], -1003, "{}", held.body);
    assert!(
        (250..=300).contains(&retry_after(&held)),
        "{:?}",
        held.headers
    );
    assert_eq!(env.exchange.simulator().requests().len(), sent);
    let alert = env.alerts.try_recv().expect("an exchange_back_off alert");
    assert_eq!(
        (alert.rule, alert.severity),
        (AlertRule::ExchangeBackOff, Severity::Critical)
    );
    assert!(alert.summary.contains("HTTP 418"), "{}", alert.summary);
}

/// A USD-M order moved again and again counts towards its client's day once, at the
/// highest it was counted at, not once per move: a market maker's quote repriced all day
/// would otherwise spend the daily limit in a few moves.
#[tokio::test]
async fn moving_a_usdm_order_counts_towards_the_day_once() {
    let policy = Policy {
        symbols: Some(["usdm:BTCUSDT".to_owned()].into_iter().collect()),
        max_order_notional: None,
        max_daily_notional: Some(rust_decimal::Decimal::from(2500)),
        ..trading_policy()
    };
    const DAY_MS: u64 = 86_400_000;
    let day = keygate_gateway::now_ms() / DAY_MS;
    let env = setup(policy, None, Duration::from_secs(10)).await;
    let (status, placed) = post(
        &env,
        "/fapi/v1/order",
        "symbol=BTCUSDT&side=SELL&type=LIMIT&timeInForce=GTC&quantity=0.01&price=61000",
    )
    .await;
    assert_eq!(status, 200, "{placed}");
    let order_id = placed["orderId"].to_string();
    let modify = |quantity: &str, price: u32| {
        let params = format!(
            "symbol=BTCUSDT&side=SELL&orderId={order_id}&quantity={quantity}&price={price}"
        );
        let request = http(
            "PUT",
            "/binance/fapi/v1/order",
            "",
            &sign(&params, BOT_SECRET),
        );
        let env = &env;
        async move { raw(env.gateway, &request).await }
    };
    // A sell resting above the market (60000, the least it is priced at), placed at 610
    // and moved about: the first move counts 615, the highest 5 more, the rest nothing.
    // Counted in full, the moves alone would be 4900.
    for price in [61500, 62000, 61500, 60500, 62000, 61000, 60500, 61000] {
        let (status, body) = modify("0.01", price).await;
        assert_eq!(status, 200, "{price}: {body}");
    }
    // Five times the quantity at the highest price adds 2480: past the 2500 of the day.
    let (status, body) = modify("0.05", 62000).await;
    if keygate_gateway::now_ms() / DAY_MS != day {
        // The UTC day turned during the test: its count rightly started again.
        return;
    }
    assert_eq!(status, 401, "{body}");
    let expected = "order notional 2480 would take client bot1 past its daily limit 2500 \
                    (1230 used today)";
    assert!(body["msg"].as_str().unwrap().contains(expected), "{body}");
    assert_eq!(
        env.exchange
            .simulator()
            .requests()
            .iter()
            .filter(|r| r.method == "PUT" && r.path == "/fapi/v1/order")
            .count(),
        8
    );
}
