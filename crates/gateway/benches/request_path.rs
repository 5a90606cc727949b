//! The CPU part of keygate's request path for one signed LIMIT order, as ccxt sends it:
//! parse → verify (HMAC) → freshness → classify → decide → re-sign. Target: under 10 µs.
//!
//! `cargo bench -p keygate-gateway --bench request_path -- --measurement-time 3`
//!
//! Besides criterion's own report, prints one line with the mean time per order and
//! PASS/FAIL against the target, and a line per stage.

#![allow(missing_docs, clippy::unwrap_used)] // A benchmark may panic.

#[path = "../tests/support/mod.rs"]
mod support;

use std::hint::black_box;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use criterion::Criterion;
use keygate_core::{ClientStatus, Decision, Policy};
use keygate_exchanges::binance::{self, ClientKey, SignedRequest};
use keygate_policy::Decider;

use crate::support::{trading_policy, BOT_SECRET, REAL_KEY, REAL_SECRET};

const TARGET: Duration = Duration::from_micros(10);
const METHOD: &str = "POST";
const PATH: &str = "/api/v3/order";
const FORM: &str = "application/x-www-form-urlencoded";

/// The order's form body, signed by the bot, and the timestamp it carries.
fn signed_order() -> (String, u64) {
    let ts = keygate_gateway::now_ms();
    let payload = format!(
        "timestamp={ts}&symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.01&price=50000&recvWindow=10000"
    );
    let signature = binance::hmac_signature(BOT_SECRET.as_bytes(), payload.as_bytes());
    (format!("{payload}&signature={signature}"), ts)
}

/// The whole CPU part of the request path for one order; returns the forwarded body.
fn request_path(
    decider: &Decider,
    policy: &Policy,
    source_ip: IpAddr,
    body: &[u8],
    now_ms: u64,
) -> String {
    let signed = SignedRequest::parse("", body, Some(FORM)).unwrap();
    signed
        .verify(ClientKey::Hmac(BOT_SECRET.as_bytes()))
        .unwrap();
    signed.check_freshness(now_ms).unwrap();
    let action = signed.classify(METHOD, PATH);
    let notional = action.stated_notional();
    let decision = decider.decide(&keygate_policy::Request {
        client: "bot1",
        status: ClientStatus::Active,
        expires_at_ms: Some(now_ms + 3_600_000),
        policy,
        source_ip,
        action: &action,
        notional,
        order_notionals: &[],
        now_ms,
    });
    assert_eq!(decision, Decision::Allow);
    let forward = signed.resign(REAL_KEY, REAL_SECRET.as_bytes(), now_ms + 1);
    forward.body.clone()
}

fn bench(c: &mut Criterion) {
    let (body, ts) = signed_order();
    let body = body.into_bytes();
    // A fixed "now" a few ms after signing, so the freshness check passes however long
    // criterion runs.
    let now = ts + 5;
    let policy = trading_policy();
    let decider = Decider::new();
    let ip: IpAddr = "127.0.0.1".parse().unwrap();

    // Sanity: the forwarded request is the order, re-signed with the real key.
    let forwarded = request_path(&decider, &policy, ip, &body, now);
    assert!(forwarded.starts_with(&format!("timestamp={}&symbol=BTCUSDT", now + 1)));

    c.bench_function("request_path/limit_order", |b| {
        b.iter(|| request_path(&decider, &policy, ip, black_box(&body), black_box(now)))
    });

    let mut g = c.benchmark_group("stage");
    let signed = SignedRequest::parse("", &body, Some(FORM)).unwrap();
    let action = signed.classify(METHOD, PATH);
    g.bench_function("parse", |b| {
        b.iter(|| SignedRequest::parse("", black_box(&body), Some(FORM)).unwrap())
    });
    g.bench_function("verify_hmac", |b| {
        b.iter(|| black_box(&signed).verify(ClientKey::Hmac(BOT_SECRET.as_bytes())))
    });
    g.bench_function("check_freshness", |b| {
        b.iter(|| black_box(&signed).check_freshness(now))
    });
    g.bench_function("classify", |b| {
        b.iter(|| black_box(&signed).classify(METHOD, PATH))
    });
    g.bench_function("decide", |b| {
        b.iter(|| {
            decider.decide(&keygate_policy::Request {
                client: "bot1",
                status: ClientStatus::Active,
                expires_at_ms: None,
                policy: &policy,
                source_ip: ip,
                action: black_box(&action),
                notional: action.stated_notional(),
                order_notionals: &[],
                now_ms: now,
            })
        })
    });
    g.bench_function("resign", |b| {
        b.iter(|| black_box(&signed).resign(REAL_KEY, REAL_SECRET.as_bytes(), now + 1))
    });
    g.finish();
}

/// Mean over `n` calls, measured directly (independent of criterion's report format).
fn mean_of(n: u32, mut f: impl FnMut()) -> Duration {
    for _ in 0..n / 10 {
        f();
    }
    let start = Instant::now();
    for _ in 0..n {
        f();
    }
    start.elapsed() / n
}

fn main() {
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .configure_from_args();
    bench(&mut c);
    c.final_summary();

    // `cargo test --benches` runs this binary in test mode: one quick pass is enough.
    let n = if std::env::args().any(|a| a == "--bench") {
        200_000
    } else {
        1_000
    };
    let (body, ts) = signed_order();
    let body = body.into_bytes();
    let now = ts + 5;
    let policy = trading_policy();
    let decider = Decider::new();
    let ip: IpAddr = "127.0.0.1".parse().unwrap();
    let whole = mean_of(n, || {
        black_box(request_path(&decider, &policy, ip, black_box(&body), now));
    });
    let verdict = if whole < TARGET { "PASS" } else { "FAIL" };
    println!();
    println!(
        "request path (parse+verify+freshness+classify+decide+resign), one LIMIT order: {:.2} µs mean over {n} runs; target < {} µs: {verdict}",
        whole.as_secs_f64() * 1e6,
        TARGET.as_micros()
    );
}
