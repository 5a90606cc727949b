//! The real `keygate` binary end to end: `serve` in front of the Binance simulator, driven
//! by unmodified Python ccxt, administered by the CLI while it runs, with a secret planted
//! in the vault that must appear in nothing the processes wrote.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

use keygate_exchanges::binance;
use keygate_mockex::{Credential, Hook, WebhookReceiver};
use serde_json::{json, Value};

use crate::common::{python, simulator, terminate, Kg, Serve};

/// The alerts a webhook got that are the test's doing, once `n` of them came or after ten
/// seconds: `disk_low` is left out, as serve raises it when the disk under the test's home
/// runs low, which is the machine's doing (a CI machine once had 3 % free).
fn alerts_of_the_test(receiver: &WebhookReceiver, n: usize) -> Vec<Hook> {
    let of_the_test = |hook: &Hook| {
        serde_json::from_slice::<Value>(&hook.body)
            .map_or(true, |alert| alert["rule"] != "disk_low")
    };
    receiver.wait_for_kept(n, Duration::from_secs(10), of_the_test)
}

/// How far serve's reconciliation recorded it had checked everything (`reconciled_through`).
fn reconciled_through(kg: &Kg) -> Option<u64> {
    let value: Option<Vec<u8>> = rusqlite::Connection::open(kg.db())
        .unwrap()
        .query_row(
            "SELECT value FROM meta WHERE key = 'reconciled_through'",
            [],
            |r| r.get(0),
        )
        .ok();
    value.map(|v| u64::from_be_bytes(v.try_into().unwrap()))
}

/// Waits until serve's reconciliation has completed a run after every alert raised so
/// far: a run records how far it checked before it alerts, so a run recorded after the
/// current record began after those alerts, and one recorded after it has raised its
/// own. (A sleep instead passed when no second run came in time, checking nothing.)
fn a_whole_run_later(kg: &Kg) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let mut seen = reconciled_through(kg);
    for _ in 0..2 {
        let before = seen;
        while seen <= before {
            assert!(
                std::time::Instant::now() < deadline,
                "serve's reconciliation completed no further run"
            );
            std::thread::sleep(Duration::from_millis(50));
            seen = reconciled_through(kg);
        }
    }
}

const REAL_KEY: &str = "RealKey1RealKey1RealKey1RealKey1RealKey1RealKey1RealKey1RealKey1";
const REAL_SECRET: &str = "PlantedRealSecret1PlantedRealSecret1PlantedRealSecret1Planted001";
const ROTATED_KEY: &str = "RealKey2RealKey2RealKey2RealKey2RealKey2RealKey2RealKey2RealKey2";
const ROTATED_SECRET: &str = "PlantedRealSecret2PlantedRealSecret2PlantedRealSecret2Planted002";

/// A keygate home whose CLI runs log at trace level and are all recorded.
struct Home {
    kg: Kg,
    /// Everything the CLI printed, except `client issue`'s one-time credentials.
    printed: Vec<u8>,
}

impl Home {
    fn new() -> Home {
        let mut home = Home {
            kg: Kg::empty(),
            printed: Vec::new(),
        };
        let keyfile = home.kg.key_file();
        home.ok(
            &["init", "--master-key-file", keyfile.to_str().unwrap()],
            None,
        );
        home
    }

    /// A new home with the account `main`, the planted real key, in front of `upstream`,
    /// stored unchecked (some upstreams here answer nothing; the check has tests of its
    /// own).
    fn with_account(upstream: &str) -> Home {
        let mut home = Home::new();
        home.ok(
            &[
                "account",
                "add",
                "--exchange",
                "binance",
                "--label",
                "main",
                "--upstream",
                upstream,
                "--no-check",
            ],
            Some(&format!("{REAL_KEY}\n{REAL_SECRET}\n")),
        );
        home
    }

    fn path(&self) -> PathBuf {
        self.kg.home()
    }

    /// `client issue --account main --name NAME OPTIONS... --json`, parsed.
    fn issue(&mut self, name: &str, options: &[&str]) -> Value {
        let mut args = vec!["client", "issue", "--account", "main", "--name", name];
        args.extend(options);
        args.push("--json");
        serde_json::from_str(&self.ok(&args, None)).unwrap()
    }

    fn ok(&mut self, args: &[&str], stdin: Option<&str>) -> String {
        let out = self.kg.run_traced(args, stdin.unwrap_or(""));
        if !args.starts_with(&["client", "issue"]) && !args.starts_with(&["client", "rotate"]) {
            self.printed.extend(out.stdout.as_bytes());
        }
        self.printed.extend(out.stderr.as_bytes());
        assert_eq!(out.code, 0, "keygate {args:?} failed: {}", out.stderr);
        out.stdout
    }
}

fn signed_get(addr: &str, path: &str, key: &str, secret: &str) -> (u16, Value) {
    signed_get_from(&format!("http://{addr}/binance"), path, key, secret)
}

/// A signed GET of `path` from `base` (a gateway's `/binance` or the exchange itself).
fn signed_get_from(base: &str, path: &str, key: &str, secret: &str) -> (u16, Value) {
    signed(reqwest::Method::GET, base, path, "", key, secret)
}

/// Sends `params` to `base` + `path`, signed with `key` and `secret`: in the query for a
/// GET, as a form otherwise.
fn signed(
    method: reqwest::Method,
    base: &str,
    path: &str,
    params: &str,
    key: &str,
    secret: &str,
) -> (u16, Value) {
    let timestamp = format!("timestamp={}&recvWindow=10000", keygate_gateway::now_ms());
    let payload = match params {
        "" => timestamp,
        params => format!("{params}&{timestamp}"),
    };
    let signature = binance::hmac_signature(secret.as_bytes(), payload.as_bytes());
    send_signed(
        method,
        base,
        path,
        &format!("{payload}&signature={signature}"),
        key,
    )
}

/// Sends `signed` parameters (signature included) to `base` + `path` with `key`: in the
/// query for a GET, as a form otherwise.
fn send_signed(
    method: reqwest::Method,
    base: &str,
    path: &str,
    signed: &str,
    key: &str,
) -> (u16, Value) {
    let signed = signed.to_owned();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let client = reqwest::Client::new();
        let request = if method == reqwest::Method::GET {
            client.get(format!("{base}{path}?{signed}"))
        } else {
            client
                .request(method, format!("{base}{path}"))
                .header("Content-Type", "application/x-www-form-urlencoded")
                .body(signed)
        };
        let response = request.header("X-MBX-APIKEY", key).send().await.unwrap();
        let status = response.status().as_u16();
        (
            status,
            serde_json::from_slice(&response.bytes().await.unwrap()).unwrap_or(Value::Null),
        )
    })
}

/// `check()` until it gives something, every 100 ms for at most 10 s: what a running
/// gateway takes within a second, a loaded machine may take longer to show.
fn eventually<T>(mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(found) = check() {
            return Some(found);
        }
        if std::time::Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `account add` asks the exchange whether it takes the key before storing it: a key it
/// does not take, or an exchange that cannot be asked, stores nothing.
#[test]
fn account_add_stores_only_a_key_the_exchange_takes() {
    let (_runtime, exchange) = simulator(vec![Credential::hmac(REAL_KEY, REAL_SECRET)]);
    let kg = Kg::with_key_file();
    let add = |label: &str, upstream: &str, secret: &str| {
        kg.run(
            &[
                "account",
                "add",
                "--exchange",
                "binance",
                "--label",
                label,
                "--upstream",
                upstream,
            ],
            &format!("{REAL_KEY}\n{secret}\n"),
        )
    };
    let wrong = add("swapped", &exchange.url(), "not-the-secret");
    assert_eq!(wrong.code, 2, "{wrong:#?}");
    assert!(
        wrong.stderr.contains("the exchange did not take the key")
            && wrong.stderr.contains("--no-check"),
        "{}",
        wrong.stderr
    );
    // Regression (from a review): the exchange's own code and words were dropped, so a
    // wrong secret, a wrong key and an address restriction all read "HTTP 400".
    assert!(
        wrong
            .stderr
            .contains("(-1022: Signature for this request is not valid.)"),
        "{}",
        wrong.stderr
    );
    let unreachable = add("nowhere", "http://127.0.0.1:9", REAL_SECRET);
    assert_eq!(unreachable.code, 2, "{unreachable:#?}");
    // Regression: an exchange not reached was reported as one that refused the key,
    // with advice to check the key and secret.
    assert!(
        unreachable.stderr.contains("unreachable")
            && unreachable.stderr.contains("could not be asked")
            && !unreachable.stderr.contains("did not take the key"),
        "{}",
        unreachable.stderr
    );
    let list = kg.ok(&["account", "list", "--json"], "").json();
    assert_eq!(list, json!([]));

    let added = add("main", &exchange.url(), REAL_SECRET);
    assert_eq!(added.code, 0, "{added:#?}");
    // Asked with the key itself, signed as the exchange documents.
    let asked: Vec<_> = exchange
        .simulator()
        .requests()
        .into_iter()
        .filter(|r| r.path == "/sapi/v1/account/apiRestrictions")
        .collect();
    assert_eq!(asked.len(), 2, "{asked:?}");
    assert!(asked.iter().all(|r| r.api_key.as_deref() == Some(REAL_KEY)));
    for out in [&wrong, &unreachable, &added] {
        assert!(!out.all().contains(REAL_SECRET), "{out:#?}");
    }
}

/// A withdrawal made with the real key behind keygate's back is what a leaked key looks
/// like at the exchange; `keygate reconcile` finds it, and only it, and so does `serve`,
/// which alerts on it.
#[test]
fn reconcile_finds_the_withdrawal_keygate_never_forwarded() {
    let (runtime, exchange) = simulator(vec![Credential::hmac(REAL_KEY, REAL_SECRET)]);
    let (mut home, receiver) = home_alerting_a_webhook(&runtime, &exchange.url());
    let issued: Value = home.issue(
        "payout",
        &[
            "--scope",
            "read,withdraw",
            "--withdraw-address",
            "TRX:TColdWallet1",
        ],
    );
    let serve = Serve::start_with(&home.kg, &["--reconcile-every", "1s"]);
    let withdraw = "/sapi/v1/capital/withdraw/apply";
    let through_keygate = signed(
        reqwest::Method::POST,
        &format!("http://{}/binance", serve.addr),
        withdraw,
        "coin=USDT&network=TRX&address=TColdWallet1&amount=10",
        issued["api_key"].as_str().unwrap(),
        issued["secret"].as_str().unwrap(),
    );
    assert_eq!(through_keygate.0, 200, "{through_keygate:?}");
    let clean = home.kg.ok(&["reconcile", "--since", "1h"], "").stdout;
    assert!(
        clean.contains("main: 1 withdrawal(s), all through keygate"),
        "{clean}"
    );
    let behind_its_back = signed(
        reqwest::Method::POST,
        &exchange.url(),
        withdraw,
        "coin=USDT&network=TRX&address=TLeakedTo01&amount=7",
        REAL_KEY,
        REAL_SECRET,
    );
    assert_eq!(behind_its_back.0, 200, "{behind_its_back:?}");
    // The forwarded withdrawal is a warning; the other one, found at the exchange within a
    // reconciliation interval, is critical, and raised once however often it is seen.
    let hooks = alerts_of_the_test(&receiver, 2);
    a_whole_run_later(&home.kg);
    drop(serve);
    let alerts: Vec<Value> = alerts_of_the_test(&receiver, 0)
        .iter()
        .map(|h| serde_json::from_slice(&h.body).unwrap())
        .collect();
    assert!(hooks.len() >= 2, "{alerts:?}");
    let of_rule =
        |rule: &str| -> Vec<&Value> { alerts.iter().filter(|a| a["rule"] == rule).collect() };
    assert_eq!(of_rule("withdrawal").len(), 1, "{alerts:?}");
    let leaked = of_rule("unreconciled_withdrawal");
    assert_eq!(leaked.len(), 1, "{alerts:?}");
    assert_eq!(alerts.len(), 2, "{alerts:?}");
    assert_eq!(leaked[0]["severity"], "critical");
    assert_eq!(leaked[0]["account"], "main");
    let summary = leaked[0]["summary"].as_str().unwrap();
    assert!(
        summary.contains("withdrew 7 USDT to TLeakedTo01"),
        "{summary}"
    );
    let out = home
        .kg
        .fails(&["reconcile", "--since", "1h", "--json"], "", 1);
    let report: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(report[0]["account"], "main", "{report}");
    assert_eq!(report[0]["withdrawals"], 2, "{report}");
    let unmatched = report[0]["not_through_keygate"].as_array().unwrap();
    assert_eq!(unmatched.len(), 1, "{report}");
    assert_eq!(unmatched[0]["destination"], "TLeakedTo01");
    assert_eq!(unmatched[0]["amount"], "7");
    let human = home.kg.fails(&["reconcile", "--since", "1h"], "", 1).stdout;
    assert!(human.contains("NOT THROUGH KEYGATE"), "{human}");
    // A regression test (found by review): reconciliation read the log without checking
    // it, so whoever held the leaked key and could write the database made the leak look
    // forwarded by rewriting a row. Such a row is an error, never a match.
    let db = rusqlite::Connection::open(home.kg.db()).unwrap();
    let rewritten = db
        .execute(
            r#"UPDATE events SET body = replace(replace(body, '"TColdWallet1"', '"TLeakedTo01"'), '"amount":"10"', '"amount":"7"')
               WHERE body LIKE '%"outcome":"pending"%' AND body LIKE '%TColdWallet1%'"#,
            [],
        )
        .unwrap();
    assert_eq!(rewritten, 1);
    let refused = home.kg.fails(&["reconcile", "--since", "1h"], "", 2);
    assert!(
        refused.stderr.contains("reading the audit log")
            && !refused.stdout.contains("all through keygate"),
        "{refused:?}"
    );
    db.execute(
        r#"UPDATE events SET body = replace(replace(body, '"TLeakedTo01"', '"TColdWallet1"'), '"amount":"7"', '"amount":"10"')
           WHERE body LIKE '%"outcome":"pending"%' AND body LIKE '%TLeakedTo01%'"#,
        [],
    )
    .unwrap();
    home.kg.ok(&["audit", "verify"], "");
    // A full answer (Binance lists 1000 at most) is followed by the next page: a leaked
    // key's thousand withdrawals are each reported, those past the first page too.
    for _ in 0..1000 {
        let (status, body) = signed(
            reqwest::Method::POST,
            &exchange.url(),
            withdraw,
            "coin=USDT&network=TRX&address=TLeakedTo01&amount=1",
            REAL_KEY,
            REAL_SECRET,
        );
        assert_eq!(status, 200, "{body}");
    }
    let full = home.kg.fails(&["reconcile", "--since", "1h"], "", 1).stdout;
    assert!(
        full.contains("main: 1001 withdrawal(s) NOT THROUGH KEYGATE"),
        "{}",
        &full[..full.len().min(2000)]
    );
}

/// A regression test: every start of `serve` reconciled the last day only, so what a
/// leaked key did while keygate was down for longer was never checked. A start goes back
/// to where the last serve's reconciliation had checked everything (a week at most).
#[test]
fn serve_reconciles_back_to_where_it_last_checked() {
    const DAY_MS: u64 = 86_400_000;
    let (runtime, exchange) = simulator(vec![Credential::hmac(REAL_KEY, REAL_SECRET)]);
    let (home, receiver) = home_alerting_a_webhook(&runtime, &exchange.url());
    // Withdrawals keygate never forwarded, made `days` ago on the exchange's clock.
    let withdraw_days_ago = |days: u64, address: &str| {
        let at = keygate_gateway::now_ms() - days * DAY_MS;
        exchange
            .simulator()
            .set_clock_offset_ms(-((days * DAY_MS) as i64));
        let payload = format!(
            "coin=USDT&network=TRX&address={address}&amount=7&timestamp={at}&recvWindow=10000"
        );
        let signature = binance::hmac_signature(REAL_SECRET.as_bytes(), payload.as_bytes());
        let (status, body) = send_signed(
            reqwest::Method::POST,
            &exchange.url(),
            "/sapi/v1/capital/withdraw/apply",
            &format!("{payload}&signature={signature}"),
            REAL_KEY,
        );
        assert_eq!(status, 200, "{body}");
        exchange.simulator().set_clock_offset_ms(0);
    };
    withdraw_days_ago(2, "TLeakedTo01");
    // Four days ago, before the point the last serve had checked through: not
    // reported again (it goes back to where it checked, not a week every time).
    withdraw_days_ago(4, "TCheckedBefore01");
    // The last serve had checked everything up to three days ago.
    let through = keygate_gateway::now_ms() - 3 * DAY_MS;
    rusqlite::Connection::open(home.kg.db())
        .unwrap()
        .execute(
            "INSERT INTO meta (key, value) VALUES ('reconciled_through', ?1)",
            [through.to_be_bytes().to_vec()],
        )
        .unwrap();
    let serve = Serve::start_with(&home.kg, &["--reconcile-every", "1s"]);
    alerts_of_the_test(&receiver, 1);
    a_whole_run_later(&home.kg);
    drop(serve);
    let alerts: Vec<Value> = alerts_of_the_test(&receiver, 0)
        .iter()
        .map(|h| serde_json::from_slice(&h.body).unwrap())
        .collect();
    assert!(
        alerts.iter().any(|a| a["rule"] == "unreconciled_withdrawal"
            && a["summary"].as_str().unwrap().contains("TLeakedTo01")),
        "{alerts:?}"
    );
    assert!(
        !alerts
            .iter()
            .any(|a| a.to_string().contains("TCheckedBefore01")),
        "{alerts:?}"
    );
    // And it records how far it has now checked.
    let recorded: Vec<u8> = rusqlite::Connection::open(home.kg.db())
        .unwrap()
        .query_row(
            "SELECT value FROM meta WHERE key = 'reconciled_through'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(u64::from_be_bytes(recorded.try_into().unwrap()) > through);
}

/// A regression test: a key that may use margin (or trade options) could place orders
/// there that reconciliation never lists, and nothing said so. Each run now does.
#[test]
fn reconcile_says_what_the_key_may_trade_that_it_cannot_check() {
    let margin = keygate_mockex::Restrictions {
        margin: true,
        ..keygate_mockex::Restrictions::default()
    };
    let (_runtime, exchange) = simulator(vec![
        Credential::hmac(REAL_KEY, REAL_SECRET).with_restrictions(margin)
    ]);
    let home = Home::with_account(&exchange.url());
    let out = home.kg.fails(&["reconcile", "--since", "1h"], "", 2).stdout;
    assert!(out.contains("may also trade margin"), "{out}");
    let doctor = home.kg.ok(&["doctor", "--exchange"], "").stdout;
    assert!(doctor.contains("may trade margin"), "{doctor}");
}

/// A regression test (found by review): over a window too long for any symbol's order
/// lists to fit the cap, `reconcile` said "symbols asked for: none: no symbol was traded
/// through keygate…" beside "BTCUSDT, ETHUSDT not asked for", "0 order(s) listed, all
/// through keygate" right after its FAILED line, and "1 symbols".
#[test]
fn reconcile_says_what_it_did_not_ask_for() {
    let (_runtime, exchange) = simulator(vec![Credential::hmac(REAL_KEY, REAL_SECRET)]);
    let mut home = Home::with_account(&exchange.url());
    home.issue(
        "trader",
        &[
            "--scope",
            "read,trade",
            "--symbols",
            "BTCUSDT,ETHUSDT,usdm:BTCUSDT",
        ],
    );
    let out = home
        .kg
        .fails(&["reconcile", "--since", "70d"], "", 2)
        .stdout;
    assert!(
        out.contains(
            "main: FAILED: cannot list all of its orders (symbols asked for: none; not asked \
             for: BTCUSDT, ETHUSDT, usdm:BTCUSDT): listing the orders of 2 symbols, 70 \
             requests each"
        ),
        "{out}"
    );
    assert!(
        out.contains("usdm: listing the orders of 1 symbol, 70 requests each"),
        "{out}"
    );
    assert!(!out.contains("no symbol was traded"), "{out}");
    assert!(!out.contains("1 symbols"), "{out}");
    let orders: Vec<&str> = out.lines().filter(|l| l.contains("order")).collect();
    assert!(
        orders.iter().all(|l| !l.contains("all through keygate")),
        "{out}"
    );
    assert!(
        out.contains("main: no order listed; those that could not be listed are not checked"),
        "{out}"
    );
    // The withdrawals were listed in full.
    assert!(
        out.contains("main: 0 withdrawal(s), all through keygate"),
        "{out}"
    );
}

/// A regression test (found by review): `reconcile --since 100d` ran as if it could read
/// the window, though Binance lists withdrawals over 90 days at most. It is refused
/// before the exchange is asked anything.
#[test]
fn reconcile_refuses_a_window_longer_than_binance_lists_withdrawals_over() {
    let (_runtime, exchange) = simulator(vec![Credential::hmac(REAL_KEY, REAL_SECRET)]);
    let home = Home::with_account(&exchange.url());
    let refused = home.kg.fails(&["reconcile", "--since", "100d"], "", 2);
    assert!(
        refused.stderr.contains(
            "--since 100d: Binance lists an account's withdrawals over the last 90 days at \
             most, so a longer window cannot be read in full; use 90d or less"
        ),
        "{refused:?}"
    );
    assert_eq!(refused.stdout, "", "{refused:?}");
    assert_eq!(
        exchange.simulator().requests().len(),
        0,
        "the exchange was asked"
    );
    // 90 days are read.
    let out = home.kg.ok(&["reconcile", "--since", "90d"], "").stdout;
    assert!(
        out.contains("main: 0 withdrawal(s), all through keygate"),
        "{out}"
    );
}

/// A regression test: reconciliation signed its reads with the machine's clock, so a
/// machine a second or more ahead of the exchange had every read refused (-1021) while
/// the gateway, which signs on the exchange's clock, kept trading.
#[test]
fn reconcile_signs_on_the_exchanges_clock() {
    let (_runtime, exchange) = simulator(vec![Credential::hmac(REAL_KEY, REAL_SECRET)]);
    let home = Home::with_account(&exchange.url());
    exchange.simulator().set_clock_offset_ms(-30_000);
    let out = home.kg.ok(&["reconcile", "--since", "1h"], "").stdout;
    assert!(out.contains("0 withdrawal(s)"), "{out}");
}

/// Found by review: windows are placed on this host's clock and the exchange lists by
/// its own, so a host far ahead asked only for what had not happened yet at the
/// exchange, found nothing and called the window checked. Off by more than a minute,
/// the run fails, saying why, and the window waits for a run that can check it.
#[test]
fn reconcile_fails_on_a_host_clock_far_off_the_exchanges() {
    let (_runtime, exchange) = simulator(vec![Credential::hmac(REAL_KEY, REAL_SECRET)]);
    let home = Home::with_account(&exchange.url());
    exchange.simulator().set_clock_offset_ms(-20 * 60_000);
    let out = home.kg.run(&["reconcile", "--since", "1h"], "");
    assert_eq!(out.code, 2, "{out:#?}");
    assert!(
        out.stdout
            .contains("this host's clock is too far off the exchange's"),
        "{out:#?}"
    );
    // 1200 s, as measured: half a round trip either way.
    let ahead: u64 = out
        .stdout
        .split(" s ahead")
        .next()
        .and_then(|before| before.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{out:#?}"));
    assert!((1195..=1205).contains(&ahead), "{out:#?}");
}

/// An order placed at the exchange with the real key, as whoever leaked it would: its id.
fn placed_behind_its_back(exchange: &str, path: &str, params: &str) -> String {
    let (status, body) = signed(
        reqwest::Method::POST,
        exchange,
        path,
        params,
        REAL_KEY,
        REAL_SECRET,
    );
    assert_eq!(status, 200, "{body}");
    body["orderId"].to_string()
}

/// A home with account `main` at `upstream`, whose alerts go to a webhook receiver.
fn home_alerting_a_webhook(
    runtime: &tokio::runtime::Runtime,
    upstream: &str,
) -> (Home, keygate_mockex::WebhookReceiver) {
    let receiver = runtime
        .block_on(keygate_mockex::spawn_receiver(
            "127.0.0.1:0".parse().unwrap(),
            vec![],
        ))
        .unwrap();
    let home = Home::with_account(upstream);
    let config_path = home.path().join("config.toml");
    let mut config = std::fs::read_to_string(&config_path).unwrap();
    config.push_str(&format!(
        "\n[[alerts.webhook]]\nurl = \"{}\"\n",
        receiver.url("/hook")
    ));
    std::fs::write(&config_path, config).unwrap();
    (home, receiver)
}

/// Found by review: the simulator could not place an order and answer it as Binance
/// does when its matching engine times out (503, -1007, "execution status unknown"), so
/// keygate's handling of that answer was tested against an exchange that placed nothing.
/// Placed and so answered: the bot gets the exchange's answer, the log says the outcome
/// is unknown, and reconciliation knows the order by the client's own id.
#[test]
fn an_order_placed_but_answered_execution_unknown_is_known_to_reconciliation() {
    let (runtime, exchange) = simulator(vec![Credential::hmac(REAL_KEY, REAL_SECRET)]);
    let (mut home, _receiver) = home_alerting_a_webhook(&runtime, &exchange.url());
    let issued: Value = home.issue("trader", &["--scope", "read,trade", "--symbols", "BTCUSDT"]);
    let (key, secret) = (
        issued["api_key"].as_str().unwrap(),
        issued["secret"].as_str().unwrap(),
    );
    let serve = Serve::start(&home.kg);
    let gateway = format!("http://{}/binance", serve.addr);
    exchange
        .simulator()
        .answer_unknown_after_execution("/api/v3/order");
    let (status, body) = signed(
        reqwest::Method::POST,
        &gateway,
        "/api/v3/order",
        "symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.01&price=20000&newClientOrderId=bot-unknown-1",
        key,
        secret,
    );
    assert_eq!((status, &body["code"]), (503, &json!(-1007)), "{body}");
    let (status, open) = signed(
        reqwest::Method::GET,
        &gateway,
        "/api/v3/openOrders",
        "symbol=BTCUSDT",
        key,
        secret,
    );
    assert_eq!(status, 200, "{open}");
    assert_eq!(
        open[0]["clientOrderId"], "bot-unknown-1",
        "placed all the same: {open}"
    );
    let outcomes = || -> Vec<Value> {
        home.kg
            .ok(&["audit", "query", "--json"], "")
            .stdout
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .filter(|e| e["type"] == "outcome")
            .collect()
    };
    // Written in the audit writer's next batch.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while outcomes().is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let outcomes = outcomes();
    assert_eq!(outcomes.len(), 1, "{outcomes:?}");
    assert_eq!(outcomes[0]["outcome"], "unknown", "{outcomes:?}");
    // Orders are reconciled once they are a few seconds old.
    std::thread::sleep(Duration::from_millis(5500));
    let clean = home.kg.ok(&["reconcile", "--since", "1h"], "").stdout;
    assert!(
        clean.contains("main: 1 order(s), all through keygate"),
        "{clean}"
    );
    drop(serve);
}

/// Orders at the exchange that keygate never forwarded: one in a symbol keygate traded,
/// one in a symbol only a client's allow list names. Orders keygate forwarded are known by
/// the exchange's id from the answer, or by the client's own id.
#[test]
fn reconcile_finds_the_orders_keygate_never_forwarded() {
    let (runtime, exchange) = simulator(vec![Credential::hmac(REAL_KEY, REAL_SECRET)]);
    let (mut home, receiver) = home_alerting_a_webhook(&runtime, &exchange.url());
    let issued: Value = home.issue(
        "trader",
        &["--scope", "read,trade", "--symbols", "BTCUSDT,ETHUSDT"],
    );
    let (key, secret) = (
        issued["api_key"].as_str().unwrap(),
        issued["secret"].as_str().unwrap(),
    );
    // Every 3 s: runs every second spend more request weight than reconciliation's
    // ceiling within the minute (each reads the account's holdings and futures fees too),
    // and one that reaches it waits for the next minute.
    let serve = Serve::start_with(&home.kg, &["--reconcile-every", "3s"]);
    let through_keygate = |params: &str| {
        let (status, body) = signed(
            reqwest::Method::POST,
            &format!("http://{}/binance", serve.addr),
            "/api/v3/order",
            params,
            key,
            secret,
        );
        assert_eq!(status, 200, "{body}");
    };
    // With the client's own id, and without one (the exchange makes one up).
    through_keygate("symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.01&price=20000&newClientOrderId=bot-0001");
    through_keygate("symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.02&price=20000");
    // Orders are reconciled once they are a few seconds old.
    std::thread::sleep(Duration::from_millis(5500));
    let clean = home.kg.ok(&["reconcile", "--since", "1h"], "").stdout;
    assert!(
        clean.contains(
            "main: 2 order(s), all through keygate (symbols asked for: BTCUSDT, ETHUSDT)"
        ),
        "{clean}"
    );

    let behind_its_back =
        |params: &str| placed_behind_its_back(&exchange.url(), "/api/v3/order", params);
    let leaked_btc = behind_its_back(
        "symbol=BTCUSDT&side=SELL&type=LIMIT&timeInForce=GTC&quantity=0.03&price=90000",
    );
    let leaked_eth = behind_its_back(
        "symbol=ETHUSDT&side=SELL&type=LIMIT&timeInForce=GTC&quantity=1&price=9000",
    );
    // Whoever holds the key can read the bot's client order ids and reuse one once its
    // order is done (the exchange refuses an id an open order has): an order keygate
    // placed is known by the exchange's id, so the copy is not.
    let (status, body) = signed(
        reqwest::Method::DELETE,
        &format!("http://{}/binance", serve.addr),
        "/api/v3/order",
        "symbol=BTCUSDT&origClientOrderId=bot-0001",
        key,
        secret,
    );
    assert_eq!(status, 200, "{body}");
    let forged = behind_its_back(
        "symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.05&price=20000&newClientOrderId=bot-0001",
    );
    // One alert per run for the orders it found first, each order told of once: the
    // three may come in one run or in more.
    let orders_told = |alerts: &[Value]| -> usize {
        alerts
            .iter()
            .filter(|a| a["rule"] == "unreconciled_order")
            .map(|a| {
                let summary = a["summary"].as_str().unwrap();
                let many = summary
                    .strip_prefix("account main placed ")
                    .and_then(|rest| rest.split_once(" orders that keygate never forwarded"));
                many.map_or(1, |(n, _)| n.parse().unwrap())
            })
            .sum()
    };
    let received = || -> Vec<Value> {
        alerts_of_the_test(&receiver, 0)
            .iter()
            .map(|h| serde_json::from_slice(&h.body).unwrap())
            .collect()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while orders_told(&received()) < 3 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    // Later runs tell of none of them again.
    a_whole_run_later(&home.kg);
    drop(serve);
    let alerts = received();
    let leaked: Vec<&Value> = alerts
        .iter()
        .filter(|a| a["rule"] == "unreconciled_order")
        .collect();
    assert!(!leaked.is_empty(), "{alerts:?}");
    assert!(leaked
        .iter()
        .all(|a| a["severity"] == "critical" && a["account"] == "main"));
    let summaries: Vec<&str> = leaked
        .iter()
        .map(|a| a["summary"].as_str().unwrap())
        .collect();
    let told = orders_told(&alerts);
    assert!(leaked.len() <= 3, "{summaries:?}");
    assert_eq!(told, 3, "each order told of once: {summaries:?}");
    assert!(leaked.len() <= 3, "{summaries:?}");
    // An alert of one order tells it in full; one of more, their first ids and symbols.
    let named: Vec<&str> = summaries
        .iter()
        .flat_map(|s| match s.split_once("; ids ") {
            Some((_, ids)) => {
                let (ids, _) = ids.split_once(", in ").unwrap();
                ids.split(", ").collect::<Vec<_>>()
            }
            None => vec![
                s.strip_prefix("account main placed order ")
                    .and_then(|rest| rest.split_once(" ("))
                    .unwrap()
                    .0,
            ],
        })
        .collect();
    let mut expected = [leaked_btc.as_str(), leaked_eth.as_str(), forged.as_str()];
    let mut named_sorted = named.clone();
    expected.sort_unstable();
    named_sorted.sort_unstable();
    assert_eq!(named_sorted, expected, "{summaries:?}");
    assert!(
        summaries.iter().any(|s| s.contains(&format!(
            "order {leaked_btc} (SELL LIMIT 0.03 BTCUSDT at 90000"
        )) || s.contains("in BTCUSDT, ETHUSDT")),
        "{summaries:?}"
    );

    let out = home
        .kg
        .fails(&["reconcile", "--since", "1h", "--json"], "", 1);
    let report: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(report[0]["orders"], 5, "{report}");
    let unmatched = report[0]["orders_not_through_keygate"].as_array().unwrap();
    let ids: Vec<String> = unmatched
        .iter()
        .map(|o| o["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids, [leaked_btc, forged, leaked_eth], "{report}");
    assert_eq!(unmatched[0]["side"], "SELL");
    assert_eq!(unmatched[0]["type"], "LIMIT");
    let human = home.kg.fails(&["reconcile", "--since", "1h"], "", 1).stdout;
    assert!(human.contains("3 order(s) NOT THROUGH KEYGATE"), "{human}");

    // Too many symbols to ask for is a failure of the orders' check in part: the symbols
    // keygate traded are asked for first, so the orders found there are still reported
    // (exit 1), and the withdrawals' check still runs.
    let many: Vec<String> = (0..61).map(|i| format!("S{i:02}USDT")).collect();
    home.issue(
        "wide",
        &["--scope", "read,trade", "--symbols", &many.join(",")],
    );
    let out = home
        .kg
        .fails(&["reconcile", "--since", "1h", "--json"], "", 1);
    let report: Value = serde_json::from_str(&out.stdout).unwrap();
    assert!(
        report[0]["orders_error"]
            .as_str()
            .is_some_and(|e| e.contains("not asked for; narrow --since")),
        "{report}"
    );
    assert_eq!(
        report[0]["orders_not_through_keygate"]
            .as_array()
            .map(Vec::len),
        Some(3),
        "{report}"
    );
    assert_eq!(report[0]["error"], Value::Null, "{report}");
    // A regression test: those past the cap were listed among the symbols asked for.
    let asked = report[0]["symbols"].as_array().unwrap();
    assert_eq!(asked.len(), 60, "{report}");
    assert!(!asked.iter().any(|s| s == "S60USDT"), "{report}");
}

/// The orders of an order list keygate forwarded (an OCO's two legs, an OTOCO's working
/// order and its pending pair) are known by the ids of the list's answer; those of a list
/// placed behind its back are each reported.
#[test]
fn reconcile_knows_the_orders_of_order_lists_keygate_forwarded() {
    let (runtime, exchange) = simulator(vec![Credential::hmac(REAL_KEY, REAL_SECRET)]);
    let (mut home, _receiver) = home_alerting_a_webhook(&runtime, &exchange.url());
    let issued: Value = home.issue("trader", &["--scope", "read,trade", "--symbols", "BTCUSDT"]);
    let (key, secret) = (
        issued["api_key"].as_str().unwrap(),
        issued["secret"].as_str().unwrap(),
    );
    let serve = Serve::start_with(&home.kg, &["--reconcile-every", "off"]);
    let oco = "symbol=BTCUSDT&side=SELL&quantity=0.01&aboveType=LIMIT_MAKER&abovePrice=70000\
               &belowType=STOP_LOSS_LIMIT&belowStopPrice=50000&belowPrice=49900\
               &belowTimeInForce=GTC";
    let otoco = "symbol=BTCUSDT&workingType=LIMIT&workingSide=BUY&workingPrice=50000\
                 &workingQuantity=0.01&workingTimeInForce=GTC&pendingSide=SELL\
                 &pendingQuantity=0.01&pendingAboveType=LIMIT_MAKER&pendingAbovePrice=70000\
                 &pendingBelowType=STOP_LOSS&pendingBelowStopPrice=45000";
    for (path, params) in [
        ("/api/v3/orderList/oco", oco),
        ("/api/v3/orderList/otoco", otoco),
    ] {
        let (status, body) = signed(
            reqwest::Method::POST,
            &format!("http://{}/binance", serve.addr),
            path,
            params,
            key,
            secret,
        );
        assert_eq!(status, 200, "{path}: {body}");
    }
    // Orders are reconciled once they are a few seconds old.
    std::thread::sleep(Duration::from_millis(5500));
    let report = |code: i32| -> Value {
        let out = home.kg.run(&["reconcile", "--since", "1h", "--json"], "");
        assert_eq!(out.code, code, "{out:#?}");
        serde_json::from_str(&out.stdout).unwrap()
    };
    let clean = report(0);
    // The OCO's two legs, the OTOCO's working order and its pending pair.
    assert_eq!(clean[0]["orders"], 5, "{clean}");
    assert_eq!(
        clean[0]["orders_not_through_keygate"],
        serde_json::json!([]),
        "{clean}"
    );

    let (status, body) = signed(
        reqwest::Method::POST,
        &exchange.url(),
        "/api/v3/orderList/oco",
        oco,
        REAL_KEY,
        REAL_SECRET,
    );
    assert_eq!(status, 200, "{body}");
    let leaked: Vec<String> = body["orders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["orderId"].to_string())
        .collect();
    drop(serve);
    std::thread::sleep(Duration::from_millis(5500));
    let found = report(1);
    let mut ids: Vec<String> = found[0]["orders_not_through_keygate"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort_unstable();
    let mut expected = leaked.clone();
    expected.sort_unstable();
    assert_eq!(ids, expected, "{found}");
}

/// A regression test: orders were listed only in the symbols keygate traded or its
/// clients may trade, so an order a leaked key left resting in any other symbol went
/// unseen. The account's open orders, in every symbol, now name more symbols to list.
#[test]
fn reconcile_finds_an_order_resting_in_a_symbol_keygate_never_traded() {
    let (_runtime, exchange) = simulator(vec![Credential::hmac(REAL_KEY, REAL_SECRET)]);
    let home = Home::with_account(&exchange.url());
    let leaked = placed_behind_its_back(
        &exchange.url(),
        "/api/v3/order",
        "symbol=BNBUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.05&price=500",
    );
    // Orders are reconciled once they are a few seconds old.
    std::thread::sleep(Duration::from_millis(5500));
    let out = home
        .kg
        .fails(&["reconcile", "--since", "1h", "--json"], "", 1);
    let report: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(report[0]["symbols"], json!(["BNBUSDT"]), "{report}");
    let unmatched = report[0]["orders_not_through_keygate"].as_array().unwrap();
    assert_eq!(unmatched.len(), 1, "{report}");
    assert_eq!(
        unmatched[0]["id"].as_str(),
        Some(leaked.as_str()),
        "{report}"
    );
    let asked: Vec<String> = exchange
        .simulator()
        .requests()
        .into_iter()
        .map(|r| r.path)
        .collect();
    assert!(asked.iter().any(|p| p == "/api/v3/openOrders"), "{asked:?}");
}

/// A regression test: a leaked key that bought a coin keygate never traded with a market
/// order left no order open and went unseen (orders are listed one symbol at a time).
/// What the account holds is compared run to run: DOGE and USDT changed together, so
/// DOGEUSDT is listed, and the order found. It stays listed by the runs after.
#[test]
fn reconcile_finds_a_market_order_in_a_symbol_keygate_never_traded_by_the_holdings_it_changed() {
    let (_runtime, exchange) = simulator(vec![Credential::hmac(REAL_KEY, REAL_SECRET)]);
    let home = Home::with_account(&exchange.url());
    let run = |code: i32| -> Value {
        let out = if code == 0 {
            home.kg.ok(&["reconcile", "--since", "1h", "--json"], "")
        } else {
            home.kg
                .fails(&["reconcile", "--since", "1h", "--json"], "", code)
        };
        serde_json::from_str(&out.stdout).unwrap()
    };
    // The first run sees what the account holds, and nothing to compare it with.
    let report = run(0);
    assert_eq!(report[0]["symbols"], json!([]), "{report}");
    let leaked = placed_behind_its_back(
        &exchange.url(),
        "/api/v3/order",
        "symbol=DOGEUSDT&side=BUY&type=MARKET&quantity=1000",
    );
    // Orders are reconciled once they are a few seconds old.
    std::thread::sleep(Duration::from_millis(5500));
    // The run after, and one that cannot read the holdings (found by review: it dropped
    // what earlier runs had found), still list the symbol.
    for holdings_read in [true, true, false] {
        if !holdings_read {
            exchange.simulator().fail_endpoint("/api/v3/account");
        }
        let report = run(1);
        assert_eq!(report[0]["symbols"], json!(["DOGEUSDT"]), "{report}");
        let unmatched = report[0]["orders_not_through_keygate"].as_array().unwrap();
        assert_eq!(unmatched.len(), 1, "{report}");
        assert_eq!(
            unmatched[0]["id"].as_str(),
            Some(leaked.as_str()),
            "{report}"
        );
        let failed = report[0]["orders_error"]
            .as_str()
            .is_some_and(|e| e.contains("what the account holds"));
        assert_eq!(failed, !holdings_read, "{report}");
    }
}

/// Found by review: what explained a change of holdings was every symbol keygate sent an
/// order in, those the exchange refused included: a bot that traded BTCUSDT and had an
/// ETHUSDT order refused hid a leaked key's ETHBTC trade. Only symbols keygate placed
/// orders in explain one.
#[test]
fn reconcile_lists_a_pair_that_keygate_s_refused_orders_do_not_explain() {
    let (_runtime, exchange) = simulator(vec![Credential::hmac(REAL_KEY, REAL_SECRET)]);
    let mut home = Home::with_account(&exchange.url());
    let issued: Value = home.issue("trader", &["--scope", "read,trade"]);
    let reconcile = |code: i32| -> Value {
        let args = ["reconcile", "--since", "1h", "--json"];
        let out = if code == 0 {
            home.kg.ok(&args, "")
        } else {
            home.kg.fails(&args, "", code)
        };
        serde_json::from_str(&out.stdout).unwrap()
    };
    reconcile(0);
    let serve = Serve::start_with(&home.kg, &["--reconcile-every", "off"]);
    let through_keygate = |method: reqwest::Method, params: &str| {
        signed(
            method,
            &format!("http://{}/binance", serve.addr),
            "/api/v3/order",
            params,
            issued["api_key"].as_str().unwrap(),
            issued["secret"].as_str().unwrap(),
        )
    };
    let (status, body) = through_keygate(
        reqwest::Method::POST,
        "symbol=BTCUSDT&side=BUY&type=MARKET&quantity=0.01",
    );
    assert_eq!(status, 200, "{body}");
    // An order the exchange refuses (more than the account holds): placed nothing.
    let (status, body) = through_keygate(
        reqwest::Method::POST,
        "symbol=ETHUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=100000&price=3000",
    );
    assert_eq!(status, 400, "{body}");
    let leaked = placed_behind_its_back(
        &exchange.url(),
        "/api/v3/order",
        "symbol=ETHBTC&side=BUY&type=MARKET&quantity=1",
    );
    std::thread::sleep(Duration::from_millis(5500));
    drop(serve);
    let report = reconcile(1);
    let symbols = report[0]["symbols"].as_array().unwrap();
    assert!(symbols.contains(&json!("ETHBTC")), "{report}");
    let unmatched = report[0]["orders_not_through_keygate"].as_array().unwrap();
    let ids: Vec<&str> = unmatched
        .iter()
        .map(|o| o["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [leaked.as_str()], "{report}");
}

/// What keygate's own orders changed is theirs: a bot trading BTCUSDT and ETHUSDT through
/// keygate changes BTC, ETH and USDT, and ETHBTC, which pairs two of them, is not listed
/// for it (a bot trading twenty coins would otherwise list every cross pair for a week).
#[test]
fn reconcile_lists_no_symbol_for_the_holdings_keygate_s_own_orders_changed() {
    let (_runtime, exchange) = simulator(vec![Credential::hmac(REAL_KEY, REAL_SECRET)]);
    let mut home = Home::with_account(&exchange.url());
    let issued: Value = home.issue("trader", &["--scope", "read,trade"]);
    let reconcile = |home: &Home| -> Value {
        let out = home.kg.ok(&["reconcile", "--since", "1h", "--json"], "");
        serde_json::from_str(&out.stdout).unwrap()
    };
    let first = reconcile(&home);
    assert_eq!(first[0]["symbols"], json!([]), "{first}");
    // Its own reconciliation off: both orders fall between the two runs compared.
    let serve = Serve::start_with(&home.kg, &["--reconcile-every", "off"]);
    for symbol in ["BTCUSDT", "ETHUSDT"] {
        let (status, body) = signed(
            reqwest::Method::POST,
            &format!("http://{}/binance", serve.addr),
            "/api/v3/order",
            &format!("symbol={symbol}&side=BUY&type=MARKET&quantity=0.01"),
            issued["api_key"].as_str().unwrap(),
            issued["secret"].as_str().unwrap(),
        );
        assert_eq!(status, 200, "{body}");
    }
    std::thread::sleep(Duration::from_millis(5500));
    drop(serve);
    let report = reconcile(&home);
    assert_eq!(
        report[0]["symbols"],
        json!(["BTCUSDT", "ETHUSDT"]),
        "{report}"
    );
    assert_eq!(
        report[0]["orders_not_through_keygate"],
        json!([]),
        "{report}"
    );
}

/// A regression test: futures orders were never reconciled, so a leaked key trading
/// USD-M futures went unseen. They are now, apart from spot's: an order placed through
/// keygate passes, one placed behind its back is found, in a symbol named only by a
/// client's `usdm:` list.
#[test]
fn reconcile_finds_the_futures_orders_keygate_never_forwarded() {
    let (_runtime, exchange) = simulator(vec![Credential::hmac(REAL_KEY, REAL_SECRET)]);
    let mut home = Home::with_account(&exchange.url());
    let issued: Value = home.issue(
        "trader",
        &["--scope", "read,trade", "--symbols", "usdm:BTCUSDT"],
    );
    let serve = Serve::start(&home.kg);
    let order = "symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.01&price=50000";
    let (status, body) = signed(
        reqwest::Method::POST,
        &format!("http://{}/binance", serve.addr),
        "/fapi/v1/order",
        order,
        issued["api_key"].as_str().unwrap(),
        issued["secret"].as_str().unwrap(),
    );
    assert_eq!(status, 200, "{body}");
    let leaked = placed_behind_its_back(
        &exchange.url(),
        "/fapi/v1/order",
        "symbol=BTCUSDT&side=SELL&type=LIMIT&timeInForce=GTC&quantity=0.01&price=90000",
    );
    // A client order id like those of the exchange's liquidations, chosen by whoever
    // holds the key: the exchange does not list it among the orders it placed itself.
    let disguised = placed_behind_its_back(
        &exchange.url(),
        "/fapi/v1/order",
        "symbol=BTCUSDT&side=SELL&type=LIMIT&timeInForce=GTC&quantity=0.01&price=95000&newClientOrderId=autoclose-1701234567890",
    );
    // Orders are reconciled once they are a few seconds old.
    std::thread::sleep(Duration::from_millis(5500));
    drop(serve);
    let out = home
        .kg
        .fails(&["reconcile", "--since", "1h", "--json"], "", 1);
    let report: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(report[0]["symbols"], json!(["usdm:BTCUSDT"]), "{report}");
    assert_eq!(report[0]["orders"], 3, "{report}");
    let unmatched = report[0]["orders_not_through_keygate"].as_array().unwrap();
    let ids: Vec<&str> = unmatched
        .iter()
        .map(|o| o["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [leaked.as_str(), disguised.as_str()], "{report}");
    assert!(unmatched.iter().all(|o| o["market"] == "usdm"), "{report}");
    let asked: Vec<String> = exchange
        .simulator()
        .requests()
        .into_iter()
        .map(|r| r.path)
        .collect();
    assert!(
        asked.iter().any(|p| p == "/fapi/v1/forceOrders"),
        "{asked:?}"
    );
    let human = home.kg.fails(&["reconcile", "--since", "1h"], "", 1).stdout;
    assert!(
        human.contains(&format!(
            "order {leaked} (SELL LIMIT 0.01 usdm:BTCUSDT at 90000)"
        )),
        "{human}"
    );
}

/// A regression test (found by review): USD-M modifies an order in place, keeping its id,
/// so a leaked key could move an order keygate placed to a price of its choosing and
/// reconciliation counted it as keygate's. An order keygate placed is now listed with a
/// price and quantity keygate sent for it (placed with, or modified to through keygate),
/// or it is reported.
#[test]
fn reconcile_finds_a_futures_order_modified_behind_keygate_s_back() {
    let (_runtime, exchange) = simulator(vec![Credential::hmac(REAL_KEY, REAL_SECRET)]);
    let mut home = Home::with_account(&exchange.url());
    let issued: Value = home.issue(
        "trader",
        &["--scope", "read,trade", "--symbols", "usdm:BTCUSDT"],
    );
    let serve = Serve::start(&home.kg);
    let through_keygate = |method: reqwest::Method, params: &str| {
        let (status, body) = signed(
            method,
            &format!("http://{}/binance", serve.addr),
            "/fapi/v1/order",
            params,
            issued["api_key"].as_str().unwrap(),
            issued["secret"].as_str().unwrap(),
        );
        assert_eq!(status, 200, "{body}");
        body["orderId"].to_string()
    };
    let place = |price: &str| {
        through_keygate(
            reqwest::Method::POST,
            &format!(
                "symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.01&price={price}"
            ),
        )
    };
    // Modified through keygate: its new price is keygate's too.
    let repriced = place("50000");
    through_keygate(
        reqwest::Method::PUT,
        &format!("symbol=BTCUSDT&side=BUY&orderId={repriced}&quantity=0.02&price=50500"),
    );
    // Modified with the real key, behind keygate's back.
    let moved = place("48000");
    let (status, body) = signed(
        reqwest::Method::PUT,
        &exchange.url(),
        "/fapi/v1/order",
        &format!("symbol=BTCUSDT&side=BUY&orderId={moved}&quantity=0.01&price=59000"),
        REAL_KEY,
        REAL_SECRET,
    );
    assert_eq!(status, 200, "{body}");
    // Orders are reconciled once they are a few seconds old.
    std::thread::sleep(Duration::from_millis(5500));
    drop(serve);
    // Reconciled over `since`, the one order reported is `moved`, modified, at `price`.
    let only_moved_reported = |since: &str, price: &str| {
        let out = home
            .kg
            .fails(&["reconcile", "--since", since, "--json"], "", 1);
        let report: Value = serde_json::from_str(&out.stdout).unwrap();
        let unmatched = report[0]["orders_not_through_keygate"].as_array().unwrap();
        assert_eq!(unmatched.len(), 1, "{report}");
        assert_eq!(
            unmatched[0]["id"].as_str(),
            Some(moved.as_str()),
            "{report}"
        );
        assert_eq!(unmatched[0]["price"], price, "{report}");
        assert_eq!(unmatched[0]["modified_outside_keygate"], true, "{report}");
        report
    };
    let report = only_moved_reported("1h", "59000");
    assert_eq!(report[0]["orders"], 2, "{report}");
    let human = home.kg.fails(&["reconcile", "--since", "1h"], "", 1).stdout;
    assert!(
        human.contains(&format!(
            "order {moved} (BUY LIMIT 0.01 usdm:BTCUSDT at 59000, which keygate placed, \
             MODIFIED to this outside keygate)"
        )),
        "{human}"
    );
    // Found by review: an order still open that was placed before the window was not
    // checked, so a market maker's resting orders could be moved once they were older
    // than the window. Both are older than this one.
    only_moved_reported("2s", "59000");
    // Found by review: moved again so that it fills, it is open no more, and an order
    // placed before the window that is not open was checked by nothing. Its fill paid a
    // fee in the window, which has the orders of its symbol placed in the day before
    // listed.
    let (status, body) = signed(
        reqwest::Method::PUT,
        &exchange.url(),
        "/fapi/v1/order",
        &format!("symbol=BTCUSDT&side=BUY&orderId={moved}&quantity=0.01&price=62000"),
        REAL_KEY,
        REAL_SECRET,
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "FILLED", "{body}");
    std::thread::sleep(Duration::from_millis(5500));
    only_moved_reported("7s", "62000");
}

/// A regression test: a leaked key that opened and closed a USD-M position in a symbol
/// keygate never traded left no order open there and went unseen. Every trade pays a fee,
/// which the exchange lists for every symbol at once: ETHUSDT is listed, and both orders
/// found.
#[test]
fn reconcile_finds_futures_trades_in_a_symbol_keygate_never_traded_by_their_fees() {
    let (_runtime, exchange) = simulator(vec![Credential::hmac(REAL_KEY, REAL_SECRET)]);
    let home = Home::with_account(&exchange.url());
    let opened = placed_behind_its_back(
        &exchange.url(),
        "/fapi/v1/order",
        "symbol=ETHUSDT&side=BUY&type=MARKET&quantity=1",
    );
    let closed = placed_behind_its_back(
        &exchange.url(),
        "/fapi/v1/order",
        "symbol=ETHUSDT&side=SELL&type=MARKET&quantity=1&reduceOnly=true",
    );
    // Orders are reconciled once they are a few seconds old.
    std::thread::sleep(Duration::from_millis(5500));
    let out = home
        .kg
        .fails(&["reconcile", "--since", "1h", "--json"], "", 1);
    let report: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(report[0]["symbols"], json!(["usdm:ETHUSDT"]), "{report}");
    let unmatched = report[0]["orders_not_through_keygate"].as_array().unwrap();
    let ids: Vec<&str> = unmatched
        .iter()
        .map(|o| o["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [opened.as_str(), closed.as_str()], "{report}");
    assert_eq!(report[0]["orders_error"], Value::Null, "{report}");
    let asked: Vec<String> = exchange
        .simulator()
        .requests()
        .into_iter()
        .map(|r| r.path)
        .collect();
    assert!(asked.iter().any(|p| p == "/fapi/v1/income"), "{asked:?}");
}

/// A regression test: a USD-M conditional order (`/fapi/v1/algoOrder`, Binance's only way
/// to place a stop since 2025-12-09) is answered with an `algoId`, numbered apart from
/// orders, which keygate did not record: when a bot's stop triggered, the order it placed
/// was reported as placed with a leaked key. And the conditional orders a leaked key left
/// waiting were never listed. Now the order a forwarded conditional order placed is known
/// by the id the exchange lists it with, and a conditional order keygate never forwarded
/// is found.
#[test]
fn reconcile_knows_what_keygate_s_conditional_orders_placed() {
    let (_runtime, exchange) = simulator(vec![Credential::hmac(REAL_KEY, REAL_SECRET)]);
    let mut home = Home::with_account(&exchange.url());
    let issued: Value = home.issue(
        "trader",
        &["--scope", "read,trade", "--symbols", "usdm:BTCUSDT"],
    );
    let serve = Serve::start(&home.kg);
    let stop = "algoType=CONDITIONAL&symbol=BTCUSDT&side=SELL&type=STOP_MARKET&quantity=0.01&triggerPrice=40000";
    let (status, placed) = signed(
        reqwest::Method::POST,
        &format!("http://{}/binance", serve.addr),
        "/fapi/v1/algoOrder",
        stop,
        issued["api_key"].as_str().unwrap(),
        issued["secret"].as_str().unwrap(),
    );
    assert_eq!(status, 200, "{placed}");
    let ours = placed["algoId"].to_string();
    // The market reaches the trigger price: the exchange places an order of its own.
    let triggered_order = trigger(&exchange.url(), &ours);
    let (status, leaked) = signed(
        reqwest::Method::POST,
        &exchange.url(),
        "/fapi/v1/algoOrder",
        "algoType=CONDITIONAL&symbol=ETHUSDT&side=SELL&type=STOP_MARKET&quantity=1&triggerPrice=1000",
        REAL_KEY,
        REAL_SECRET,
    );
    assert_eq!(status, 200, "{leaked}");
    let leaked = leaked["algoId"].to_string();
    // Orders are reconciled once they are a few seconds old.
    std::thread::sleep(Duration::from_millis(5500));
    drop(serve);
    let out = home
        .kg
        .fails(&["reconcile", "--since", "1h", "--json"], "", 1);
    let report: Value = serde_json::from_str(&out.stdout).unwrap();
    // ETHUSDT is asked for because a conditional order waits there.
    assert_eq!(
        report[0]["symbols"],
        json!(["usdm:BTCUSDT", "usdm:ETHUSDT"]),
        "{report}"
    );
    assert_eq!(report[0]["orders_error"], Value::Null, "{report}");
    // Two conditional orders and the order one of them placed.
    assert_eq!(report[0]["orders"], 3, "{report}");
    let unmatched = report[0]["orders_not_through_keygate"].as_array().unwrap();
    assert_eq!(unmatched.len(), 1, "{report}");
    assert_eq!(unmatched[0]["id"], leaked.as_str(), "{report}");
    assert_eq!(unmatched[0]["conditional"], true, "{report}");
    assert_eq!(unmatched[0]["type"], "STOP_MARKET", "{report}");
    assert_eq!(unmatched[0]["price"], "1000", "{report}");
    let human = home.kg.fails(&["reconcile", "--since", "1h"], "", 1).stdout;
    assert!(
        human.contains(&format!(
            "conditional order {leaked} (SELL STOP_MARKET 1 usdm:ETHUSDT, trigger price 1000)"
        )),
        "{human}"
    );
    assert!(
        !human.contains(&format!("order {triggered_order} (")),
        "{human}"
    );
}

/// Triggers conditional order `algo_id` at the simulator, as the market reaching its
/// trigger price would: the id of the order it placed.
fn trigger(exchange: &str, algo_id: &str) -> String {
    let triggered: Value = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            let url = format!("{exchange}/__mock/trigger?algoId={algo_id}");
            let answer = reqwest::Client::new().post(url).send().await.unwrap();
            serde_json::from_slice(&answer.bytes().await.unwrap()).unwrap()
        });
    let id = triggered["actualOrderId"].as_str().unwrap_or_default();
    assert!(!id.is_empty(), "{triggered}");
    id.to_owned()
}

/// A regression test (from a review): a stop placed before the window was not listed, so
/// when it triggered inside the window the order it placed was reported as a leak; and
/// `serve` reconciles a window of twice its interval, so every stop that waited longer
/// than that did so. Conditional orders are now listed back a week past the window, and
/// the log around each older one whose order is listed tells whether keygate forwarded
/// it. A leaked key's older stop still shows: the order it placed is reported.
#[test]
fn reconcile_knows_the_order_of_a_stop_placed_before_the_window() {
    let (_runtime, exchange) = simulator(vec![Credential::hmac(REAL_KEY, REAL_SECRET)]);
    let mut home = Home::with_account(&exchange.url());
    let issued: Value = home.issue(
        "trader",
        &["--scope", "read,trade", "--symbols", "usdm:BTCUSDT"],
    );
    let serve = Serve::start(&home.kg);
    let stop = |base: &str, key: &str, secret: &str, trigger_price: &str| {
        let (status, placed) = signed(
            reqwest::Method::POST,
            base,
            "/fapi/v1/algoOrder",
            &format!(
                "algoType=CONDITIONAL&symbol=BTCUSDT&side=SELL&type=STOP_MARKET&quantity=0.01&triggerPrice={trigger_price}"
            ),
            key,
            secret,
        );
        assert_eq!(status, 200, "{placed}");
        placed["algoId"].to_string()
    };
    let ours = stop(
        &format!("http://{}/binance", serve.addr),
        issued["api_key"].as_str().unwrap(),
        issued["secret"].as_str().unwrap(),
        "40000",
    );
    let leaked = stop(&exchange.url(), REAL_KEY, REAL_SECRET, "41000");
    // Stopped now, so that its stop is not part of the time below.
    drop(serve);
    // The window starts between the stops and their triggering, whatever a busy machine
    // adds before the reconcile starts (up to 8 s; with 2 s to spare, the test was flaky
    // while other tests ran).
    std::thread::sleep(Duration::from_secs(10));
    let ours_placed = trigger(&exchange.url(), &ours);
    let leaked_placed = trigger(&exchange.url(), &leaked);
    // Orders are reconciled once they are a few seconds old.
    std::thread::sleep(Duration::from_secs(6));
    let out = home
        .kg
        .fails(&["reconcile", "--since", "14s", "--json"], "", 1);
    let report: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(report[0]["orders_error"], Value::Null, "{report}");
    // The two orders the stops placed; the stops themselves are older than the window.
    assert_eq!(report[0]["orders"], 2, "{report}");
    let unmatched = report[0]["orders_not_through_keygate"].as_array().unwrap();
    let ids: Vec<&str> = unmatched
        .iter()
        .map(|o| o["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [leaked_placed.as_str()],
        "ours: {ours_placed}; {report}"
    );
    assert_eq!(unmatched[0]["conditional"], false, "{report}");
}

/// When the exchange cannot list the conditional orders waiting in every symbol, the
/// check of the orders is reported as failed in part (exit 2), never passed: the symbols
/// a leaked key's stops wait in would go unasked.
#[test]
fn reconcile_reports_open_conditional_orders_it_cannot_list() {
    let (_runtime, exchange) = simulator(vec![Credential::hmac(REAL_KEY, REAL_SECRET)]);
    let home = Home::with_account(&exchange.url());
    exchange
        .simulator()
        .fail_endpoint("/fapi/v1/openAlgoOrders");
    let out = home
        .kg
        .fails(&["reconcile", "--since", "1h", "--json"], "", 2);
    let report: Value = serde_json::from_str(&out.stdout).unwrap();
    let error = report[0]["orders_error"].as_str().unwrap_or_default();
    assert!(
        error.contains("usdm: open conditional orders: "),
        "{report}"
    );
    assert_eq!(report[0]["error"], Value::Null, "{report}");
}

/// A key that may not trade futures has placed no futures order, and the exchange refuses
/// it a read of them: its account's futures are not asked for, and that is no failure.
#[test]
fn reconcile_leaves_out_the_futures_of_a_key_that_cannot_trade_them() {
    let spot_only = keygate_mockex::Restrictions {
        futures: false,
        ..keygate_mockex::Restrictions::default()
    };
    let (_runtime, exchange) = simulator(vec![
        Credential::hmac(REAL_KEY, REAL_SECRET).with_restrictions(spot_only)
    ]);
    let home = Home::with_account(&exchange.url());
    let out = home.kg.ok(&["reconcile", "--since", "1h", "--json"], "");
    let report: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(report[0]["orders_error"], Value::Null, "{report}");
    let asked: Vec<String> = exchange
        .simulator()
        .requests()
        .into_iter()
        .map(|r| r.path)
        .collect();
    assert!(!asked.iter().any(|p| p.starts_with("/fapi/")), "{asked:?}");
    assert!(
        asked
            .iter()
            .any(|p| p == "/sapi/v1/account/apiRestrictions"),
        "{asked:?}"
    );
}

/// A regression test: `reconcile` exited 1, as for a leaked key, when it could not reach
/// the exchange; an outage is now 2, so that cron tells one from the other.
#[test]
fn reconcile_that_cannot_ask_the_exchange_exits_2() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let kg = Kg::with_key_file();
    kg.add_account_with(
        "main",
        REAL_KEY,
        REAL_SECRET,
        &["--upstream", &format!("http://{closed}")],
    );
    let out = kg.fails(&["reconcile", "--since", "1h", "--json"], "", 2);
    let report: Value = serde_json::from_str(&out.stdout).unwrap();
    assert!(report[0]["error"].is_string(), "{report}");
    assert_eq!(report[0]["not_through_keygate"], json!([]), "{report}");
}

/// `serve` tells a webhook, signed, of a denied withdrawal and of a revoked key still in
/// use; `alerts list` recomputes the same from the log; `alerts test` says which webhook
/// failed. Neither the webhook's secret nor its URL's path (a chat webhook's credential)
/// appears in anything keygate printed or logged.
#[test]
fn serve_alerts_a_signed_webhook_and_alerts_list_recomputes_what_it_sent() {
    use std::os::unix::fs::PermissionsExt;
    const HOOK_SECRET: &str = "whsec-planted-webhook-secret-3d9";
    const HOOK_PATH: &str = "/services/T0/B0/planted-path-71c";
    let (runtime, exchange) = simulator(vec![Credential::hmac(REAL_KEY, REAL_SECRET)]);
    let receiver = runtime
        .block_on(keygate_mockex::spawn_receiver(
            "127.0.0.1:0".parse().unwrap(),
            vec![],
        ))
        .unwrap();
    let mut home = Home::with_account(&exchange.url());
    let secret_file = home.kg.path("webhook.secret");
    std::fs::write(&secret_file, format!("{HOOK_SECRET}\n")).unwrap();
    std::fs::set_permissions(&secret_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let config_path = home.path().join("config.toml");
    let config = std::fs::read_to_string(&config_path).unwrap();
    let with_alerts = |url: &str| {
        format!(
            "{config}\n[[alerts.webhook]]\nurl = \"{url}\"\nsecret_file = \"{}\"\n",
            secret_file.display()
        )
    };
    std::fs::write(&config_path, with_alerts(&receiver.url(HOOK_PATH))).unwrap();
    let issued: Value = home.issue("bot1", &[]);
    let (key, secret) = (
        issued["api_key"].as_str().unwrap(),
        issued["secret"].as_str().unwrap(),
    );
    let serve = Serve::start_with(&home.kg, &["--admin-listen", "127.0.0.1:0"]);
    let admin = admin_addr(&serve);
    let (status, body) = signed(
        reqwest::Method::POST,
        &format!("http://{}/binance", serve.addr),
        "/sapi/v1/capital/withdraw/apply",
        "coin=USDT&network=TRX&address=TSomewhere&amount=10",
        key,
        secret,
    );
    assert_eq!(
        (status, body["code"].as_i64()),
        (401, Some(-2015)),
        "{body}"
    );
    let hooks = alerts_of_the_test(&receiver, 1);
    assert_eq!(hooks.len(), 1, "no alert reached the webhook");
    let alert: Value = serde_json::from_slice(&hooks[0].body).unwrap();
    assert_eq!(alert["rule"], "withdrawal", "{alert}");
    assert_eq!(alert["severity"], "critical", "{alert}");
    assert_eq!(alert["client"], "bot1", "{alert}");
    assert_eq!(hooks[0].path, HOOK_PATH);
    let timestamp = hooks[0].header("x-keygate-timestamp").unwrap();
    let expected = keygate_monitor::sign(
        &keygate_vault::SecretBytes::new(HOOK_SECRET.as_bytes().to_vec()),
        timestamp,
        &hooks[0].body,
    );
    assert_eq!(
        hooks[0].header("x-keygate-signature"),
        Some(expected.as_str())
    );
    let get = |path: &str| {
        runtime.block_on(async {
            let response = reqwest::get(format!("http://{admin}{path}")).await.unwrap();
            (response.status().as_u16(), response.text().await.unwrap())
        })
    };
    let (status, health) = get("/healthz");
    assert_eq!(status, 200, "{health}");
    assert!(health.contains("\"status\":\"ok\""), "{health}");
    // The stop file of a panic under way is told as that, not as a failed reload (found
    // by review), and raises no alert while it is young.
    let stop = home.path().join("PANIC");
    std::fs::File::create(&stop).unwrap();
    let (status, health) =
        eventually(|| Some(get("/healthz")).filter(|(status, _)| *status == 503))
            .unwrap_or_else(|| get("/healthz"));
    assert_eq!(status, 503, "{health}");
    assert!(
        health.contains("the stop file of `keygate panic` is there"),
        "{health}"
    );
    std::fs::remove_file(&stop).unwrap();
    let (status, health) =
        eventually(|| Some(get("/healthz")).filter(|(status, _)| *status == 200))
            .unwrap_or_else(|| get("/healthz"));
    assert_eq!(status, 200, "{health}");
    // A read that reaches the exchange, whose answer reports the weight used.
    assert_eq!(
        signed_get(&serve.addr, "/api/v3/account", key, secret).0,
        200
    );
    let (status, metrics) = get("/metrics");
    assert_eq!(status, 200);
    assert!(
        metrics.lines().any(|l| l.starts_with(&format!(
            "keygate_exchange_used_weight{{upstream=\"{}\",pool=\"/api\"}} ",
            exchange.url()
        ))),
        "{metrics}"
    );
    for line in [
        "keygate_answer_bytes_held{caller=\"public\"} 0",
        "keygate_answer_bytes_held{caller=\"signed\"} 0",
        "keygate_requests_total{client=\"bot1\",action=\"withdraw\",decision=\"denied\",rule=\"scope\"} 1",
        "keygate_alerts_total{rule=\"withdrawal\",severity=\"critical\"} 1",
    ] {
        assert!(metrics.lines().any(|l| l == line), "no {line:?} in\n{metrics}");
    }

    // A revoked key that someone still uses: the revoke is information (below the
    // webhook's default, warning), the use a warning.
    home.ok(&["client", "revoke", "bot1"], None);
    let refused = eventually(|| {
        (signed_get(&serve.addr, "/api/v3/account", key, secret).0 == 401).then_some(())
    });
    assert!(refused.is_some(), "the revoked key still works");
    let hooks = alerts_of_the_test(&receiver, 2);
    assert_eq!(hooks.len(), 2);
    let alert: Value = serde_json::from_slice(&hooks[1].body).unwrap();
    assert_eq!(alert["rule"], "dead_key_used", "{alert}");
    // A client row deleted in the database breaks the client table's seal: the gateway
    // refuses every client, and says so where a load balancer looks.
    let db = rusqlite::Connection::open(home.path().join("keygate.db")).unwrap();
    db.execute_batch(
        "DELETE FROM clients WHERE name = 'bot1'; \
         UPDATE meta SET value = value + 1 WHERE key = 'generation';",
    )
    .unwrap();
    let (status, health) =
        eventually(|| Some(get("/healthz")).filter(|(status, _)| *status == 503))
            .unwrap_or_else(|| get("/healthz"));
    assert_eq!(status, 503, "{health}");
    assert!(health.contains("refusing every client"), "{health}");
    let hooks = alerts_of_the_test(&receiver, 3);
    assert_eq!(hooks.len(), 3);
    let alert: Value = serde_json::from_slice(&hooks[2].body).unwrap();
    assert_eq!(
        (&alert["rule"], &alert["severity"]),
        (&json!("reload_failed"), &json!("critical")),
        "{alert}"
    );
    drop(serve);

    let listed: Value =
        serde_json::from_str(&home.ok(&["alerts", "list", "--json"], None)).unwrap();
    let rules: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["rule"].as_str().unwrap())
        .collect();
    // init, account add and client issue; then what the webhook got, and the revoke.
    assert_eq!(
        rules,
        [
            "admin_change",
            "admin_change",
            "admin_change",
            "withdrawal",
            "admin_change",
            "dead_key_used"
        ]
    );
    let warnings = home.ok(&["alerts", "list", "--min-severity", "warning"], None);
    assert_eq!(warnings.lines().count(), 3, "{warnings}");
    assert!(warnings.contains("critical  withdrawal"), "{warnings}");
    // The account's requests go to the simulator, not to Binance: told as a warning.
    assert!(
        warnings.contains("warning   admin_change") && warnings.contains("its requests go to"),
        "{warnings}"
    );

    let tested = home.ok(&["alerts", "test"], None);
    assert!(tested.contains(": delivered"), "{tested}");
    assert_eq!(alerts_of_the_test(&receiver, 4).len(), 4);
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    std::fs::write(
        &config_path,
        with_alerts(&format!("http://{closed}{HOOK_PATH}")),
    )
    .unwrap();
    let failed = home.kg.fails(&["alerts", "test"], "", 1);
    assert!(
        failed
            .stdout
            .contains(&format!("webhook http://{closed}/… failed")),
        "{}",
        failed.stdout
    );
    std::fs::write(&config_path, with_alerts("http://alerts.example.com/x")).unwrap();
    let refused = home.kg.fails(&["alerts", "test"], "", 2);
    assert!(refused.stderr.contains("loopback"), "{}", refused.stderr);

    let mut written = std::fs::read(home.kg.path("serve.log")).unwrap();
    written.extend(&home.printed);
    written.extend(failed.stdout.as_bytes());
    written.extend(failed.stderr.as_bytes());
    let written = String::from_utf8_lossy(&written);
    assert!(
        !written.contains(HOOK_SECRET),
        "the webhook secret was written"
    );
    // A regression test: one flag lifted both listeners' checks, so an operator who
    // wanted remote metrics also let the bots' listener go without TLS unnoticed. The
    // bots' flag no longer opens the admin listener.
    let open_metrics = home.kg.fails(
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "0.0.0.0:0",
            "--insecure-listen-non-loopback",
        ],
        "",
        2,
    );
    assert!(
        open_metrics
            .stderr
            .contains("refusing to serve metrics on 0.0.0.0:0")
            && open_metrics
                .stderr
                .contains("--insecure-admin-non-loopback"),
        "{}",
        open_metrics.stderr
    );
    assert!(
        !written.contains("planted-path"),
        "the webhook URL's path was written"
    );
}

/// A regression test: `serve` reads its alert settings once, when it starts, yet `alerts
/// test` printed "delivered" and `doctor` "ok alerts" for a webhook added to config.toml
/// afterwards, which the running serve never alerts. Both now say that the running serve
/// uses the settings it started with, and only while config.toml's differ from them.
#[test]
fn doctor_and_alerts_test_say_when_the_running_serve_alerts_otherwise() {
    let (runtime, exchange) = simulator(vec![Credential::hmac(REAL_KEY, REAL_SECRET)]);
    let (home, _first) = home_alerting_a_webhook(&runtime, &exchange.url());
    let second = runtime
        .block_on(keygate_mockex::spawn_receiver(
            "127.0.0.1:0".parse().unwrap(),
            vec![],
        ))
        .unwrap();
    let alerts_check = || {
        let doctor = home.kg.run(&["doctor", "--json"], "").json();
        doctor
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["check"] == "alerts")
            .unwrap()
            .clone()
    };
    let serve = Serve::start_with(&home.kg, &["--reconcile-every", "off"]);
    let stale = format!(
        "the running `keygate serve` (pid {}) uses the alert settings it started with",
        serve.child.id()
    );
    // As serve started: nothing to say.
    let tested = home.kg.ok(&["alerts", "test"], "");
    assert!(!tested.all().contains("restart"), "{tested:#?}");
    assert_eq!(alerts_check()["verdict"], "ok", "{}", alerts_check());

    let config_path = home.path().join("config.toml");
    let mut config = std::fs::read_to_string(&config_path).unwrap();
    config.push_str(&format!(
        "\n[[alerts.webhook]]\nurl = \"{}\"\n",
        second.url("/hook")
    ));
    std::fs::write(&config_path, config).unwrap();
    let tested = home.kg.ok(&["alerts", "test"], "");
    assert_eq!(
        tested.stdout.matches(": delivered").count(),
        2,
        "{tested:#?}"
    );
    assert!(
        tested.stderr.contains(&stale) && tested.stderr.contains("restart it to apply them"),
        "{tested:#?}"
    );
    let check = alerts_check();
    assert_eq!(check["verdict"], "warn", "{check}");
    assert!(
        check["detail"].as_str().unwrap().contains(&stale),
        "{check}"
    );
    drop(serve);

    // Stopped: config.toml is what the next serve reads.
    let tested = home.kg.ok(&["alerts", "test"], "");
    assert!(!tested.all().contains("restart"), "{tested:#?}");
    assert_eq!(alerts_check()["verdict"], "ok", "{}", alerts_check());
    // A serve started now alerts both, and nothing is said.
    let _serve = Serve::start_with(&home.kg, &["--reconcile-every", "off"]);
    let tested = home.kg.ok(&["alerts", "test"], "");
    assert!(!tested.all().contains("restart"), "{tested:#?}");
}

/// A client's daily withdrawal allowance holds per asset, and a restart of the gateway
/// does not renew it: serve learns the day so far from the audit log.
#[test]
fn daily_withdrawal_limits_hold_across_a_restart() {
    const DAY_MS: u64 = 86_400_000;
    let day = keygate_gateway::now_ms() / DAY_MS;
    let (_runtime, exchange) = simulator(vec![Credential::hmac(REAL_KEY, REAL_SECRET)]);
    let mut home = Home::with_account(&exchange.url());
    let issued: Value = home.issue(
        "payout",
        &[
            "--scope",
            "read,withdraw",
            "--withdraw-address",
            "TRX:TColdWallet1",
            "--max-daily-withdrawal",
            "USDT=15",
        ],
    );
    let shown = home.ok(&["client", "show", "payout"], None);
    assert!(shown.contains("withdraw per day:   15 USDT"), "{shown}");
    let withdraw = |serve: &Serve, coin: &str, amount: &str| {
        signed(
            reqwest::Method::POST,
            &format!("http://{}/binance", serve.addr),
            "/sapi/v1/capital/withdraw/apply",
            &format!("coin={coin}&network=TRX&address=TColdWallet1&amount={amount}"),
            issued["api_key"].as_str().unwrap(),
            issued["secret"].as_str().unwrap(),
        )
    };
    let serve = Serve::start_with(&home.kg, &["--reconcile-every", "off"]);
    assert_eq!(withdraw(&serve, "USDT", "10").0, 200);
    let (status, body) = withdraw(&serve, "USDT", "10");
    if keygate_gateway::now_ms() / DAY_MS != day {
        // The UTC day turned between the two: the second rightly had a new allowance.
        return;
    }
    assert_eq!(status, 401, "{body}");
    assert!(
        body["msg"]
            .as_str()
            .unwrap()
            .contains("past its daily limit of 15 USDT (10 withdrawn today)"),
        "{body}"
    );
    assert_eq!(withdraw(&serve, "USDT", "5").0, 200);
    drop(serve);

    let serve = Serve::start_with(&home.kg, &["--reconcile-every", "off"]);
    let (status, body) = withdraw(&serve, "USDT", "1");
    let (btc_status, btc) = withdraw(&serve, "BTC", "0.001");
    // Raised while serve runs: the running gateway takes the new allowance within a
    // second, and the day's 15 count against it.
    home.ok(
        &[
            "client",
            "update",
            "payout",
            "--max-daily-withdrawal",
            "USDT=20",
        ],
        None,
    );
    // The running gateway takes it (polled: a refusal does not count against the
    // allowance, so asking again until it is taken spends nothing).
    let (raised_status, raised) = eventually(|| {
        let (status, body) = withdraw(&serve, "USDT", "5");
        (status == 200).then_some((status, body))
    })
    .unwrap_or_else(|| withdraw(&serve, "USDT", "5"));
    let (over_status, _) = withdraw(&serve, "USDT", "1");
    drop(serve);
    if keygate_gateway::now_ms() / DAY_MS != day {
        // The UTC day turned during the test: the allowance was rightly renewed.
        return;
    }
    assert_eq!(
        status, 401,
        "the allowance was renewed by the restart: {body}"
    );
    assert!(
        body["msg"]
            .as_str()
            .unwrap()
            .contains("(15 withdrawn today)"),
        "{body}"
    );
    assert_eq!(raised_status, 200, "{raised}");
    assert_eq!(over_status, 401, "20 withdrawn today");
    assert_eq!(btc_status, 401, "{btc}");
    assert!(
        btc["msg"]
            .as_str()
            .unwrap()
            .contains("may not withdraw \"BTC\""),
        "{btc}"
    );
    let applied = exchange
        .simulator()
        .requests()
        .iter()
        .filter(|r| r.path.ends_with("/withdraw/apply"))
        .count();
    assert_eq!(applied, 3, "denied withdrawals reached the exchange");
}

/// A regression test: the pause an exchange asked for was kept in memory only, so a
/// gateway restarted during a ban, or a reconciliation run beside it, sent again at once;
/// Binance bans an address that goes on sending for longer each time.
#[test]
fn an_exchange_ban_holds_across_a_restart_and_for_commands() {
    let (_runtime, exchange) = simulator(vec![Credential::hmac(REAL_KEY, REAL_SECRET)]);
    let mut home = Home::with_account(&exchange.url());
    let issued = home.issue("reader", &[]);
    let read = |serve: &Serve| {
        signed_get(
            &serve.addr,
            "/api/v3/account",
            issued["api_key"].as_str().unwrap(),
            issued["secret"].as_str().unwrap(),
        )
    };
    // The address is banned by reads sent past the limit from elsewhere.
    let simulator = exchange.simulator();
    simulator.set_weight_limit(1);
    simulator.set_first_ban_s(600);
    let direct = || signed_get_from(&exchange.url(), "/api/v3/account", REAL_KEY, REAL_SECRET).0;
    assert_eq!(direct(), 429);
    assert_eq!(direct(), 418);

    let serve = Serve::start_with(&home.kg, &["--reconcile-every", "off"]);
    let (status, body) = read(&serve);
    assert_eq!(status, 418, "{body}");
    let sent = simulator.requests().len();
    drop(serve);

    let serve = Serve::start_with(&home.kg, &["--reconcile-every", "off"]);
    let (status, body) = read(&serve);
    assert_eq!(status, 418, "{body}");
    assert!(
        body["msg"]
            .as_str()
            .unwrap()
            .contains("banned this address"),
        "{body}"
    );
    drop(serve);
    let out = home
        .kg
        .fails(&["reconcile", "--since", "1h", "--json"], "", 2);
    assert!(out.stdout.contains("418"), "{}", out.all());
    assert_eq!(
        simulator.requests().len(),
        sent,
        "sent to the exchange during its ban"
    );
    let log = std::fs::read_to_string(home.kg.path("serve.log")).unwrap();
    assert!(
        log.contains("back off before keygate started"),
        "the restarted gateway did not say why it refuses"
    );
}

/// A regression test: serve counted the day so far from audit rows it never verified,
/// so a log edited to forget the day's withdrawals (rows deleted before the admin-free
/// mark, which the registry's check starts after) gave the client a fresh allowance. It
/// does not start on such a log.
#[test]
fn serve_does_not_count_the_day_from_an_edited_log() {
    let (_runtime, exchange) = simulator(vec![Credential::hmac(REAL_KEY, REAL_SECRET)]);
    let mut home = Home::with_account(&exchange.url());
    let issued: Value = home.issue(
        "payout",
        &[
            "--scope",
            "read,withdraw",
            "--withdraw-address",
            "TRX:TColdWallet1",
            "--max-daily-withdrawal",
            "USDT=15",
        ],
    );
    let serve = Serve::start_with(&home.kg, &["--reconcile-every", "off"]);
    let (status, body) = signed(
        reqwest::Method::POST,
        &format!("http://{}/binance", serve.addr),
        "/sapi/v1/capital/withdraw/apply",
        "coin=USDT&network=TRX&address=TColdWallet1&amount=10",
        issued["api_key"].as_str().unwrap(),
        issued["secret"].as_str().unwrap(),
    );
    assert_eq!(status, 200, "{body}");
    drop(serve);
    // A start marks the log after the seal as checked, through the withdrawal: waited
    // for, not given a fixed time (found by review: had it not come, the test would have
    // passed without the mark, on the check from the seal). The mark is `sealed ‖
    // through ‖ …`, the seqs big-endian.
    let marked_through = || {
        let db = rusqlite::Connection::open(home.kg.db()).unwrap();
        let mark: Vec<u8> = db
            .query_row(
                "SELECT value FROM meta WHERE key = 'audit_admin_free'",
                [],
                |row| row.get(0),
            )
            .ok()?;
        Some(u64::from_be_bytes(mark.get(8..16)?.try_into().ok()?))
    };
    let withdrawal: u64 = rusqlite::Connection::open(home.kg.db())
        .unwrap()
        .query_row(
            r#"SELECT max(seq) FROM events WHERE body LIKE '%"action":"withdraw"%'"#,
            [],
            |row| row.get(0),
        )
        .unwrap();
    let serve = Serve::start_with(&home.kg, &["--reconcile-every", "off"]);
    let marked = eventually(|| marked_through().filter(|through| *through >= withdrawal));
    assert!(
        marked.is_some(),
        "serve did not mark the log past event {withdrawal}"
    );
    drop(serve);
    let db = rusqlite::Connection::open(home.kg.db()).unwrap();
    let deleted = db
        .execute(
            r#"DELETE FROM events WHERE body LIKE '%"action":"withdraw"%'
               AND seq < (SELECT max(seq) FROM events)"#,
            [],
        )
        .unwrap();
    assert!(deleted > 0);
    drop(db);
    let mut child = serve_process(&home);
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    if !line.is_empty() {
        let _ = child.kill();
        panic!("serve started on an edited log: {line}");
    }
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("does not verify"), "{stderr}");
}

/// With a certificate and key, serve speaks HTTPS only (checked on loopback, the only
/// address tests use); a key file others can read is refused.
#[test]
fn serve_speaks_https_with_the_certificate_it_is_given() {
    use std::os::unix::fs::PermissionsExt;
    let (runtime, exchange) = simulator(vec![Credential::hmac(REAL_KEY, REAL_SECRET)]);
    let mut home = Home::with_account(&exchange.url());
    let issued: Value = home.issue("bot1", &[]);
    let certified =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .unwrap();
    let cert = home.kg.path("cert.pem");
    let key = home.kg.path("key.pem");
    std::fs::write(&cert, certified.cert.pem()).unwrap();
    std::fs::write(&key, certified.key_pair.serialize_pem()).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let tls_args = [
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ];
    let args: Vec<&str> = ["serve", "--listen", "127.0.0.1:0"]
        .into_iter()
        .chain(tls_args)
        .collect();
    let refused = home.kg.fails_within(&args, "", 2);
    assert!(
        refused.stderr.contains("readable by group or others"),
        "{}",
        refused.stderr
    );
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();

    let serve = Serve::start_with(&home.kg, &tls_args);
    let payload = format!("timestamp={}&recvWindow=10000", keygate_gateway::now_ms());
    let signature = binance::hmac_signature(
        issued["secret"].as_str().unwrap().as_bytes(),
        payload.as_bytes(),
    );
    let path = format!("/binance/api/v3/account?{payload}&signature={signature}");
    let api_key = issued["api_key"].as_str().unwrap();
    let (status, plain) = runtime.block_on(async {
        let trusting = reqwest::Client::builder()
            .add_root_certificate(
                reqwest::Certificate::from_pem(certified.cert.pem().as_bytes()).unwrap(),
            )
            .build()
            .unwrap();
        let answer = trusting
            .get(format!("https://{}{path}", serve.addr))
            .header("X-MBX-APIKEY", api_key)
            .send()
            .await
            .unwrap();
        let plain = reqwest::Client::new()
            .get(format!("http://{}{path}", serve.addr))
            .header("X-MBX-APIKEY", api_key)
            .send()
            .await;
        (answer.status().as_u16(), plain)
    });
    assert_eq!(status, 200);
    assert!(
        plain.is_err(),
        "plain HTTP was answered on the HTTPS listener: {plain:?}"
    );
    drop(serve);
    let printed = String::from_utf8_lossy(&home.printed).into_owned()
        + &std::fs::read_to_string(home.kg.path("serve.log")).unwrap()
        + &refused.stdout
        + &refused.stderr;
    let key_body = certified.key_pair.serialize_pem();
    let key_line = key_body.lines().nth(1).unwrap();
    assert!(!printed.contains(key_line), "the TLS key was printed");
}

/// A certificate renewed while serve runs is presented from the next connection on: a
/// restart for each renewal would drop every bot's connection. One that cannot be used
/// (its key is another's) leaves the renewed one in place and says so; one near its end
/// is alerted on; serve does not start on an expired one.
#[test]
fn a_renewed_certificate_is_presented_without_a_restart() {
    use std::os::unix::fs::PermissionsExt;
    let (runtime, exchange) = simulator(vec![Credential::hmac(REAL_KEY, REAL_SECRET)]);
    let home = Home::with_account(&exchange.url());
    let cert = home.kg.path("cert.pem");
    let key = home.kg.path("key.pem");
    // Written as certbot does: new files, then renamed over the old.
    let install = |made: &rcgen::CertifiedKey, key_of: &rcgen::CertifiedKey| {
        let (next_cert, next_key) = (home.kg.path("cert.next"), home.kg.path("key.next"));
        std::fs::write(&next_cert, made.cert.pem()).unwrap();
        std::fs::write(&next_key, key_of.key_pair.serialize_pem()).unwrap();
        std::fs::set_permissions(&next_key, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::rename(&next_cert, &cert).unwrap();
        std::fs::rename(&next_key, &key).unwrap();
    };
    let certificate = |not_after: (i32, u8, u8)| {
        let mut params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap();
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(not_after.0, not_after.1, not_after.2);
        let key_pair = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key_pair).unwrap();
        rcgen::CertifiedKey { cert, key_pair }
    };
    // Whether a connection made now is served with `made`.
    let presents = |serve: &Serve, made: &rcgen::CertifiedKey| {
        let client = reqwest::Client::builder()
            .add_root_certificate(
                reqwest::Certificate::from_pem(made.cert.pem().as_bytes()).unwrap(),
            )
            .build()
            .unwrap();
        let url = format!("https://{}/binance/api/v3/time", serve.addr);
        runtime.block_on(async { client.get(url).send().await.is_ok() })
    };
    let wait_for = |what: &str, done: &dyn Fn() -> bool| {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while !done() {
            assert!(std::time::Instant::now() < deadline, "{what}");
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    let tls_args = [
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ];

    let first = certificate((2090, 1, 1));
    install(&first, &first);
    let with_admin: Vec<&str> = tls_args
        .iter()
        .copied()
        .chain(["--admin-listen", "127.0.0.1:0"])
        .collect();
    let serve = Serve::start_with(&home.kg, &with_admin);
    assert!(presents(&serve, &first));
    let admin = admin_addr(&serve);
    let expiry_metric = || {
        let metrics = runtime.block_on(async {
            reqwest::get(format!("http://{admin}/metrics"))
                .await
                .unwrap()
                .text()
                .await
                .unwrap()
        });
        metrics
            .lines()
            .find_map(|l| l.strip_prefix("keygate_tls_certificate_not_after_seconds "))
            .map(str::to_owned)
    };
    // 2090-01-01T00:00:00Z.
    assert_eq!(expiry_metric().as_deref(), Some("3786912000"));
    // The renewal expires in four or five days (at midnight UTC).
    let soon =
        humantime::format_rfc3339(SystemTime::now() + Duration::from_secs(5 * 86_400)).to_string();
    let ymd: Vec<u16> = soon[..10].split('-').map(|n| n.parse().unwrap()).collect();
    let renewed = certificate((i32::from(ymd[0]), ymd[1] as u8, ymd[2] as u8));
    install(&renewed, &renewed);
    wait_for("the renewed certificate was never presented", &|| {
        presents(&serve, &renewed)
    });
    assert!(!presents(&serve, &first));
    assert_ne!(expiry_metric().as_deref(), Some("3786912000"));
    let log = || std::fs::read_to_string(&serve.log).unwrap();
    wait_for("no alert said the certificate expires soon", &|| {
        log()
            .lines()
            .any(|l| l.contains("tls_certificate") && l.contains("expires in"))
    });
    // A certificate whose key is not the one beside it is not presented.
    let mismatched = certificate((2090, 1, 1));
    install(&mismatched, &renewed);
    wait_for("a certificate without its key went unsaid", &|| {
        log().contains("cannot be used")
    });
    assert!(presents(&serve, &renewed));
    assert!(!presents(&serve, &mismatched));
    // A renewal whose key others may read is refused; made owner-only (its mode alone
    // changes), it is taken.
    let third = certificate((2090, 1, 1));
    install(&third, &third);
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    wait_for("a key others may read went unsaid", &|| {
        log().contains("readable by group or others")
    });
    assert!(presents(&serve, &renewed));
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    wait_for("the key made owner-only was never taken", &|| {
        presents(&serve, &third)
    });
    let printed = log();
    drop(serve);
    for made in [&first, &renewed, &mismatched, &third] {
        let key_line = made
            .key_pair
            .serialize_pem()
            .lines()
            .nth(1)
            .unwrap()
            .to_owned();
        assert!(!printed.contains(&key_line), "a TLS key was printed");
    }

    let expired = certificate((2021, 1, 1));
    install(&expired, &expired);
    let args: Vec<&str> = ["serve", "--listen", "127.0.0.1:0"]
        .into_iter()
        .chain(tls_args)
        .collect();
    let refused = home.kg.fails(&args, "", 2);
    assert!(
        refused.stderr.contains("expired at 2021-01-01T00:00:00"),
        "{}",
        refused.stderr
    );
}

/// A backup taken while serve writes is a home of its own, as of the moment it was taken:
/// the database's write-ahead log is in it (a copy of `keygate.db` alone can hold none of
/// the vault), and its log and tables verify. It never writes into a directory that exists.
#[test]
fn a_backup_taken_while_serving_is_a_home_that_verifies() {
    use std::os::unix::fs::PermissionsExt;
    let (_runtime, exchange) = simulator(vec![Credential::hmac(REAL_KEY, REAL_SECRET)]);
    let mut home = Home::with_account(&exchange.url());
    let issued = home.issue("bot1", &[]);
    let serve = Serve::start(&home.kg);
    let (status, body) = signed_get(
        &serve.addr,
        "/api/v3/account",
        issued["api_key"].as_str().unwrap(),
        issued["secret"].as_str().unwrap(),
    );
    assert_eq!(status, 200, "{body}");
    let backup = home.kg.path("backup");
    let backup_arg = backup.to_str().unwrap();
    let said = home.ok(&["vault", "backup", backup_arg], None);
    assert!(said.contains("verified"), "{said}");
    home.ok(&["client", "revoke", "bot1"], None);

    let mut files: Vec<String> = std::fs::read_dir(&backup)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect();
    files.sort();
    assert_eq!(files, ["config.toml", "keygate.db"]);
    let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&backup), 0o700);
    assert_eq!(mode(&backup.join("keygate.db")), 0o600);
    assert_eq!(mode(&backup.join("config.toml")), 0o600);
    let in_backup = |args: &[&str]| {
        crate::common::run_keygate(&backup, home.kg.dir.path(), args, "", None, &[])
    };
    let listed: Value =
        serde_json::from_str(&in_backup(&["client", "list", "--json"]).stdout).unwrap();
    assert_eq!(listed[0]["name"], "bot1");
    assert_eq!(
        listed[0]["status"], "active",
        "the backup is of before the revoke"
    );
    let verified = in_backup(&["audit", "verify"]);
    assert_eq!(verified.code, 0, "{verified:?}");
    let backups = in_backup(&["audit", "query", "--json"]).stdout;
    assert_eq!(backups.matches("vault.backup").count(), 1, "{backups}");

    let again = home.kg.fails(&["vault", "backup", backup_arg], "", 2);
    assert!(again.stderr.contains("exists"), "{}", again.stderr);
    assert!(!home.kg.path(".backup.partial").exists());
    drop(serve);
    let live = home.ok(&["audit", "query", "--json"], None);
    assert_eq!(
        live.matches("vault.backup").count(),
        1,
        "a refused backup was recorded"
    );

    // Regression: a backup that failed halfway left only its `vault.backup` event, telling
    // of a copy that was not there. A path too long for SQLite (512 bytes) makes the copy
    // fail after the event: the log now says it failed, and no directory is left.
    let deep = home
        .kg
        .path(&"a".repeat(200))
        .join("b".repeat(200))
        .join("c".repeat(120));
    let deep_arg = deep.to_str().unwrap();
    std::fs::create_dir_all(deep.parent().unwrap()).unwrap();
    let failed = home.kg.fails(&["vault", "backup", deep_arg], "", 2);
    assert!(failed.stderr.contains("copying the database"), "{failed:?}");
    assert!(!deep.exists());
    let deep_partial = deep.with_file_name(format!(".{}.partial", "c".repeat(120)));
    assert!(!deep_partial.exists());
    let live = home.ok(&["audit", "query", "--json"], None);
    let changes: Vec<&str> = live
        .lines()
        .filter(|line| line.contains(deep_arg))
        .map(|line| {
            if line.contains("vault.backup_failed") {
                "failed"
            } else {
                "backup"
            }
        })
        .collect();
    assert_eq!(changes, ["backup", "failed"], "{live}");
    home.ok(&["audit", "verify"], None);

    // One stopped before it finished (killed) leaves its hidden partial directory, never
    // a directory under the backup's name; the next backup there says so, and records
    // nothing.
    let stopped = home.kg.path("stopped");
    std::fs::create_dir(home.kg.path(".stopped.partial")).unwrap();
    let refused = home
        .kg
        .fails(&["vault", "backup", stopped.to_str().unwrap()], "", 2);
    assert!(
        refused.stderr.contains("stopped before it finished"),
        "{refused:?}"
    );
    let live = home.ok(&["audit", "query", "--json"], None);
    assert!(!live.contains("stopped"), "{live}");

    // Found by review: a parent directory others may write (a shared backup directory)
    // let them swap the hidden directory, then the database file, for their own, and the
    // copy of the vault went into their file. Refused, before anything is recorded.
    let shared = home.kg.path("shared");
    std::fs::create_dir(&shared).unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o777)).unwrap();
    let into_shared = shared.join("bk");
    let refused = home
        .kg
        .fails(&["vault", "backup", into_shared.to_str().unwrap()], "", 2);
    assert!(
        refused.stderr.contains("may be written by group or others")
            && refused.stderr.contains("chmod go-w"),
        "{refused:?}"
    );
    assert_eq!(std::fs::read_dir(&shared).unwrap().count(), 0);
    // Found by review: a backup to a directory that is not there (a removable disk not
    // mounted) made it, and the copy of the vault landed under the mount point, on the
    // vault's own disk. Refused, before anything is recorded.
    let unmounted = home.kg.path("unmounted").join("bk");
    let refused = home
        .kg
        .fails(&["vault", "backup", unmounted.to_str().unwrap()], "", 2);
    assert!(
        refused.stderr.contains("is not a directory") && refused.stderr.contains("mounted"),
        "{refused:?}"
    );
    assert!(!home.kg.path("unmounted").exists());
    // With the sticky bit (as `/tmp` has), others cannot rename what is not theirs.
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o1777)).unwrap();
    home.ok(&["vault", "backup", into_shared.to_str().unwrap()], None);
    let live = home.ok(&["audit", "query", "--json"], None);
    assert_eq!(
        live.matches("\"change\":\"vault.backup\"").count(),
        3,
        "{live}"
    );
}

/// The log's oldest events, moved out by `audit archive` into a file that verifies alone:
/// the log in the database verifies from where it now begins, serve starts and serves on
/// it, and a mark of where it begins, edited or removed, is caught. Events of the last
/// 92 days stay; serve must be stopped.
#[test]
fn an_archived_log_verifies_and_serves_on() {
    let Some(libfaketime) = crate::common::libfaketime() else {
        return;
    };
    let (_runtime, exchange) = simulator(vec![Credential::hmac(REAL_KEY, REAL_SECRET)]);
    // A vault made, its account added and its bot issued 200 days ago.
    let kg = Kg::empty();
    let months_ago: [(&str, &Path); 2] = [
        ("LD_PRELOAD", &libfaketime),
        ("FAKETIME", Path::new("-200d")),
    ];
    let then = |args: &[&str], stdin: &str| {
        let out = kg.run_with_env(args, stdin, &months_ago);
        assert_eq!(out.code, 0, "keygate {args:?} 200 days ago: {out:#?}");
        out
    };
    let key_file = kg.key_file();
    then(
        &["init", "--master-key-file", key_file.to_str().unwrap()],
        "",
    );
    let url = exchange.url();
    then(
        &[
            "account",
            "add",
            "--exchange",
            "binance",
            "--label",
            "main",
            "--upstream",
            &url,
            "--no-check",
        ],
        &format!("{REAL_KEY}\n{REAL_SECRET}\n"),
    );
    let issued: Value = then(
        &[
            "client",
            "issue",
            "--account",
            "main",
            "--name",
            "bot1",
            "--expires",
            "3000d",
            "--json",
        ],
        "",
    )
    .json();
    let (key, secret) = (
        issued["api_key"].as_str().unwrap(),
        issued["secret"].as_str().unwrap(),
    );
    let checkpoints = kg.path("checkpoints");
    std::fs::write(&checkpoints, then(&["audit", "checkpoint"], "").stdout).unwrap();
    let serve = Serve::start(&kg);
    assert_eq!(
        signed_get(&serve.addr, "/api/v3/account", key, secret).0,
        200
    );
    let archive = kg.path("archive-1.jsonl");
    let archive_arg = archive.to_str().unwrap();
    let running = kg.fails(
        &[
            "audit",
            "archive",
            "--older-than",
            "100d",
            "--to",
            archive_arg,
        ],
        "",
        2,
    );
    assert!(running.stderr.contains("is running"), "{running:?}");
    drop(serve);
    let young = kg.fails(
        &[
            "audit",
            "archive",
            "--older-than",
            "30d",
            "--to",
            archive_arg,
        ],
        "",
        2,
    );
    assert!(young.stderr.contains("92 days"), "{young:?}");
    assert!(!archive.exists());

    let archived = kg.ok(
        &[
            "audit",
            "archive",
            "--older-than",
            "100d",
            "--to",
            archive_arg,
        ],
        "",
    );
    assert!(
        archived.stdout.contains("archived 3 events"),
        "{archived:?}"
    );
    assert!(!archived.stderr.contains("warning"), "{archived:?}");
    // Regression: doctor called the last event's number the count of events verified.
    let doctor = kg.ok(&["doctor"], "");
    assert!(
        doctor.stdout.contains("events (1 to 3 archived, 4 to "),
        "{doctor:?}"
    );
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&archive).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
    let checkpoint_arg = checkpoints.to_str().unwrap();
    let verified = kg.ok(&["audit", "verify", "--checkpoint", checkpoint_arg], "");
    assert!(verified.stdout.contains("1 to 3 archived"), "{verified:?}");
    let in_file = kg.ok(
        &[
            "audit",
            "verify-archive",
            archive_arg,
            "--checkpoint",
            checkpoint_arg,
        ],
        "",
    );
    assert!(in_file.stdout.contains("1 of 1 checkpoint"), "{in_file:?}");
    let checked = kg.ok(&["audit", "verify-archive", archive_arg], "");
    assert!(
        checked
            .stdout
            .contains("events 1 to 3, from the vault's first event"),
        "{checked:?}"
    );
    assert!(
        checked.stdout.contains("begins right after them"),
        "{checked:?}"
    );

    // Nothing older is left: a second archive takes nothing.
    let again = kg.ok(
        &[
            "audit",
            "archive",
            "--older-than",
            "100d",
            "--to",
            kg.path("archive-2.jsonl").to_str().unwrap(),
        ],
        "",
    );
    assert!(again.stdout.contains("nothing archived"), "{again:?}");

    let serve = Serve::start(&kg);
    assert_eq!(
        signed_get(&serve.addr, "/api/v3/account", key, secret).0,
        200
    );
    drop(serve);
    assert_eq!(kg.run(&["alerts", "list", "--since", "1d"], "").code, 0);
    let reconciled = kg.run(&["reconcile", "--since", "7d"], "");
    assert_eq!(reconciled.code, 0, "{reconciled:?}");
    assert_eq!(kg.run(&["incident", "report", "--since", "1d"], "").code, 0);

    // What the archived events recorded of bot1 stays in the log: a row put back after a
    // revoke is told as one, not as a client the log never issued.
    let db = rusqlite::Connection::open(kg.db()).unwrap();
    db.execute_batch("CREATE TABLE saved AS SELECT * FROM clients WHERE name = 'bot1'")
        .unwrap();
    kg.ok(&["client", "revoke", "bot1"], "");
    db.execute_batch(
        "DELETE FROM clients WHERE name = 'bot1'; INSERT INTO clients SELECT * FROM saved; \
         DROP TABLE saved",
    )
    .unwrap();
    drop(db);
    let upgrade = kg.run(&["upgrade", "--yes"], "");
    assert!(
        upgrade.all().contains("last left it revoked"),
        "{upgrade:?}"
    );
    assert!(!upgrade.all().contains("never issued"), "{upgrade:?}");

    // The archived file edited is caught; so is the mark of where the log begins,
    // removed.
    let text = std::fs::read_to_string(&archive).unwrap();
    let edited = kg.path("edited.jsonl");
    std::fs::write(&edited, text.replacen("bot1", "bot9", 1)).unwrap();
    let refused = kg.fails(
        &["audit", "verify-archive", edited.to_str().unwrap()],
        "",
        1,
    );
    assert!(refused.stderr.contains("FAILED"), "{refused:?}");
    // Cut short by its last event and closing line (found by review: it verified, as
    // a file a later archive continues).
    let cut: String = text
        .lines()
        .take(3)
        .map(|line| format!("{line}\n"))
        .collect();
    std::fs::write(&edited, cut).unwrap();
    let refused = kg.fails(
        &["audit", "verify-archive", edited.to_str().unwrap()],
        "",
        1,
    );
    assert!(refused.stderr.contains("cut from its end"), "{refused:?}");
    let db = rusqlite::Connection::open(kg.db()).unwrap();
    db.execute("DELETE FROM meta WHERE key = 'audit_archived_through'", [])
        .unwrap();
    drop(db);
    let verify = kg.fails(&["audit", "verify"], "", 1);
    assert!(verify.stderr.contains("FAILED at event 1"), "{verify:?}");
}

/// Two gateways on one vault would each keep a replay cache, and each accept a captured
/// signature once.
#[test]
fn a_second_gateway_on_the_same_vault_is_refused() {
    let home = Home::new();
    let first = Serve::start(&home.kg);
    let second = home
        .kg
        .fails_within(&["serve", "--listen", "127.0.0.1:0"], "", 2);
    assert!(
        second.stderr.contains(&format!(
            "another `keygate serve` (pid {})",
            first.child.id()
        )),
        "{}",
        second.stderr
    );
    drop(first);
    // The lock goes with the process: the next gateway starts.
    let _next = Serve::start(&home.kg);
}

/// A regression test (found by review): on `--admin-listen [::ffff:127.0.0.1]:P`, taken
/// for loopback, the admin server left off its guard against DNS rebinding, so a page
/// of another site could read the metrics through a name resolving to 127.0.0.1.
#[test]
fn an_admin_listener_on_an_ipv4_mapped_loopback_address_refuses_foreign_hosts() {
    use std::io::{Read, Write};

    let home = Home::with_account("http://127.0.0.1:9");
    let serve = Serve::start_with(&home.kg, &["--admin-listen", "[::ffff:127.0.0.1]:0"]);
    let admin = admin_addr(&serve);
    let status_for = |host: &str| {
        let mut stream = std::net::TcpStream::connect(&admin).unwrap();
        write!(
            stream,
            "GET /healthz HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        answer.split(' ').nth(1).unwrap_or_default().to_owned()
    };
    assert_eq!(status_for("rebound.example"), "421", "{admin}");
    assert_eq!(status_for(&admin), "200", "{admin}");
}

/// The admin listener's address, as `serve --admin-listen` said it in its log.
fn admin_addr(serve: &Serve) -> String {
    let log = std::fs::read_to_string(&serve.log).unwrap();
    log.split("health and metrics on http://")
        .nth(1)
        .and_then(|rest| rest.split("/healthz").next())
        .unwrap_or_else(|| panic!("serve named no admin address: {log}"))
        .to_owned()
}

/// `keygate serve` on `home`, on a free loopback port, without reconciliation, its
/// standard output and error piped; for the tests that watch it start (or not) closely.
fn serve_process(home: &Home) -> std::process::Child {
    use std::process::Stdio;
    Command::new(env!("CARGO_BIN_EXE_keygate"))
        .arg("--home")
        .arg(home.kg.home())
        .args(["serve", "--listen", "127.0.0.1:0"])
        .args(["--reconcile-every", "off"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// The base URL `serve` says it listens on, read from the first line of its standard
/// output.
fn listening_base(stdout: &mut impl std::io::BufRead) -> String {
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    line.trim()
        .strip_prefix("keygate listening on ")
        .unwrap_or_else(|| panic!("unexpected serve output {line:?}"))
        .to_owned()
}

/// `serve` on `home`, once its process id is in `serve.lock`: a second before it serves
/// (it waits out the window of requests signed ahead).
fn serve_holding_its_lock(home: &Home) -> std::process::Child {
    let mut child = serve_process(home);
    let lock = home.kg.home().join("serve.lock");
    let pid = child.id().to_string();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while std::fs::read_to_string(&lock).map_or(true, |held| held.trim() != pid) {
        assert!(
            std::time::Instant::now() < deadline,
            "serve never took its lock"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "serve ended before it started"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    child
}

/// How `child` ended, within a minute; with what it printed (standard output, error).
fn ended(child: std::process::Child) -> (std::process::ExitStatus, String, String) {
    crate::common::ended_within(child, crate::common::BOUND, "serve, told to stop,")
}

/// A regression test: `serve` listened for SIGTERM only once it had said it listened, and
/// tokio dropped a SIGTERM that came while that listener was being set up: a gateway
/// stopped just after it started went on serving until killed (a test hung on it), and
/// one stopped while it started was killed before it could flush anything. A stop sent
/// while serve starts is now acted on once it serves, as any stop: it drains, flushes
/// the audit log and exits 0, the log verifying.
#[test]
fn a_stop_sent_while_serve_starts_stops_it_cleanly() {
    let home = Home::with_account("http://127.0.0.1:9");
    let child = serve_holding_its_lock(&home);
    assert!(terminate(&child));
    let (status, stdout, stderr) = ended(child);
    assert!(status.success(), "{status}: {stderr}");
    assert!(stdout.contains("keygate listening on"), "{stdout}");
    assert!(stderr.contains("keygate: shutting down"), "{stderr}");
    home.kg.ok(&["audit", "verify"], "");
    // Found by review: the lock file went on naming the process after it ended, and the
    // README's `kill -TERM "$(cat serve.lock)"` could then signal another process.
    let lock = std::fs::read_to_string(home.kg.home().join("serve.lock")).unwrap();
    assert_eq!(lock, "", "a stopped serve's pid is left in serve.lock");
}

/// A second stop ends serve at once, as the signal's default action would, whatever the
/// first was waiting for: an operator's way out of a stop that does not finish.
#[cfg(target_os = "linux")]
#[test]
fn a_second_stop_ends_serve_at_once() {
    use rustix::process::{kill_process, Pid, Signal};
    use std::os::unix::process::ExitStatusExt;

    let home = Home::with_account("http://127.0.0.1:9");
    let child = serve_holding_its_lock(&home);
    let pid = Pid::from_child(&child);
    kill_process(pid, Signal::TERM).unwrap();
    kill_process(pid, Signal::INT).unwrap();
    let (status, _, stderr) = ended(child);
    // Whichever of the two came second ended it.
    assert!(
        matches!(status.signal(), Some(2 | 15)),
        "{status}: {stderr}"
    );
}

/// A regression test: SIGHUP (the terminal or ssh session of a foreground serve closing,
/// or an operator's habit) killed serve at once, exit 129: an order already forwarded was
/// left with its `pending` event alone, no outcome and no "outcome unknown" alert. It
/// drains as SIGTERM does: the order is answered, its outcome written, and serve exits 0.
#[cfg(target_os = "linux")]
#[test]
fn sighup_drains_serve_as_sigterm_does() {
    drains_on_sighup(false);
}

/// Found by review: a SIGHUP comes when serve's terminal or ssh session is gone, and
/// writing "shutting down" there failed, which `eprintln!` turns into a panic: serve
/// died before it drained. Here its output pipes are closed before the signal.
#[test]
fn sighup_drains_serve_whose_terminal_is_gone() {
    drains_on_sighup(true);
}

/// Sends SIGHUP to a serve with an order in flight (with its standard output and error
/// closed first when `terminal_gone`) and checks it drained: the order answered, its
/// outcome in the log.
fn drains_on_sighup(terminal_gone: bool) {
    use rustix::process::{kill_process, Pid, Signal};

    let (_runtime, exchange) = simulator(vec![Credential::hmac(REAL_KEY, REAL_SECRET)]);
    let mut home = Home::with_account(&exchange.url());
    let issued: Value = home.issue("trader", &["--scope", "read,trade", "--symbols", "BTCUSDT"]);
    let (key, secret) = (
        issued["api_key"].as_str().unwrap().to_owned(),
        issued["secret"].as_str().unwrap().to_owned(),
    );
    // The exchange takes its time: the order is in flight when the signal comes.
    exchange
        .simulator()
        .delay_endpoint("/api/v3/order", Duration::from_secs(2));
    let mut child = serve_process(&home);
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let base = listening_base(&mut stdout);
    let order = std::thread::spawn(move || {
        signed(
            reqwest::Method::POST,
            &base,
            "/api/v3/order",
            "symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.01&price=20000",
            &key,
            &secret,
        )
    });
    let forwarded = eventually(|| {
        let requests = exchange.simulator().requests();
        requests
            .iter()
            .any(|r| r.path == "/api/v3/order")
            .then_some(())
    });
    assert!(forwarded.is_some(), "the order never reached the exchange");
    if terminal_gone {
        drop(stdout);
        drop(child.stderr.take());
    }
    kill_process(Pid::from_child(&child), Signal::HUP).unwrap();
    let (status, _, stderr) = ended(child);
    assert!(status.success(), "{status}: {stderr}");
    if !terminal_gone {
        assert!(stderr.contains("keygate: shutting down"), "{stderr}");
    }
    let (code, body) = order.join().unwrap();
    assert_eq!(code, 200, "{body}");
    let report = home.kg.ok(&["incident", "report", "--json"], "").json();
    assert_eq!(report["log_verified"], true, "{report}");
    assert_eq!(report["outcome_unknown"], json!([]), "{report}");
    home.kg.ok(&["audit", "verify"], "");
}

/// A regression test (from a review): serve stopped while its database was locked by
/// another process tried to write its last audit events once, failed, and exited: the
/// denials queued behind the lock were gone, not even counted as lost. It tries again,
/// and once the lock is let go the record counting them is written and serve exits 0.
#[cfg(target_os = "linux")]
#[test]
fn serve_stopping_behind_a_locked_database_writes_its_last_events_once_it_can() {
    use rustix::process::{kill_process, Pid, Signal};

    let (_runtime, exchange) = simulator(vec![Credential::hmac(REAL_KEY, REAL_SECRET)]);
    let mut home = Home::with_account(&exchange.url());
    let issued: Value = home.issue("trader", &["--scope", "read,trade", "--symbols", "BTCUSDT"]);
    let (key, secret) = (
        issued["api_key"].as_str().unwrap().to_owned(),
        issued["secret"].as_str().unwrap().to_owned(),
    );
    let mut child = serve_process(&home);
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let base = listening_base(&mut stdout);
    let locker = rusqlite::Connection::open(home.kg.home().join("keygate.db")).unwrap();
    locker.execute_batch("BEGIN IMMEDIATE").unwrap();
    // An order cannot be made durable behind the lock: refused, and its denial queued.
    let (status, body) = signed(
        reqwest::Method::POST,
        &base,
        "/api/v3/order",
        "symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.01&price=20000",
        &key,
        &secret,
    );
    assert_eq!(status, 503, "{body}");
    // The lock is let go once serve says its stop's first try failed behind it, not after
    // a fixed time (found by review: 6 s after the signal held only if serve began its
    // stop within the audit writer's 100 ms batch window; later, the denial's own write
    // failed alone and the stop's first try came after the lock was gone).
    let (said, told) = std::sync::mpsc::channel();
    let stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let reader = std::thread::spawn(move || {
        use std::io::BufRead;
        let mut all = String::new();
        for line in stderr.lines().map_while(Result::ok) {
            if line.contains("cannot be written yet") {
                let _ = said.send(());
            }
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    kill_process(Pid::from_child(&child), Signal::TERM).unwrap();
    let first_try_failed = told.recv_timeout(Duration::from_secs(60));
    locker.execute_batch("COMMIT").unwrap();
    drop(locker);
    let (status, _, _) = ended(child);
    let stderr = reader.join().unwrap();
    assert!(first_try_failed.is_ok(), "no failed try was told: {stderr}");
    assert!(status.success(), "{status}: {stderr}");
    let denied = home
        .kg
        .ok(&["audit", "query", "--decision", "denied", "--json"], "")
        .stdout;
    // Its denial failed to be written while serve ran, and is counted in the record of
    // losses the stop wrote once it could.
    assert!(
        denied.contains(r#""type":"lost","count":1"#)
            && denied.contains(r#""clients":{"trader":1}"#),
        "{denied}"
    );
    assert!(exchange
        .simulator()
        .requests()
        .iter()
        .all(|r| r.path != "/api/v3/order"));
    home.kg.ok(&["audit", "verify"], "");
}

/// A regression test: a request signed a moment ahead of the clock (Binance takes a
/// timestamp up to a second ahead), taken by a gateway that then stopped, was taken again
/// by the gateway started just after it, whose replay cache vouched for every request
/// signed after it was made. (Without the wait, it fails when the restart takes less than
/// the 950 ms the request runs ahead, as it does on an idle machine.)
#[test]
fn a_request_signed_ahead_is_not_taken_again_by_the_next_gateway() {
    let (_runtime, exchange) = simulator(vec![Credential::hmac(REAL_KEY, REAL_SECRET)]);
    let mut home = Home::with_account(&exchange.url());
    let bot = home.issue("bot1", &[]);
    // Meaningful only when the next gateway takes the home's lock before the request's
    // signed time: then, but for its wait, its replay cache would be made before that
    // time and vouch for the request (found by review: a restart slower than the lead
    // checked nothing). A run where it did not is run again with a new request.
    let mut checked = 0;
    for attempt in 1..=5 {
        let first = Serve::start_with(&home.kg, &["--reconcile-every", "off"]);
        let first_pid = first.child.id().to_string();
        let signed_at = keygate_gateway::now_ms() + 950;
        let send = |serve: &Serve| account_read_signed_at(serve, &bot, signed_at, 10_000);
        let (status, body) = send(&first);
        assert_eq!(status, 200, "{body}");
        let lock = home.kg.home().join("serve.lock");
        let locked = std::thread::spawn(move || {
            let deadline = std::time::Instant::now() + Duration::from_secs(60);
            while std::time::Instant::now() < deadline {
                let held = std::fs::read_to_string(&lock).unwrap_or_default();
                if !held.trim().is_empty() && held.trim() != first_pid {
                    return Some(keygate_gateway::now_ms());
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            None
        });
        drop(first);
        let next = Serve::start_with(&home.kg, &["--reconcile-every", "off"]);
        let locked_ms = locked
            .join()
            .unwrap()
            .expect("the next serve never took the lock");
        let (status, body) = send(&next);
        assert_eq!(status, 400, "the captured request was taken twice: {body}");
        assert_eq!(body["code"], -1021, "{body}");
        drop(next);
        if locked_ms < signed_at {
            checked = attempt;
            break;
        }
    }
    assert!(
        checked > 0,
        "in five runs the next serve never took the lock within the request's 950 ms lead"
    );
    let reads = exchange.simulator().requests();
    let reads = reads.iter().filter(|r| r.path == "/api/v3/account");
    assert_eq!(reads.count(), checked);
}

/// Found by review: a gateway started with this host's clock set back (an NTP step at
/// boot, a machine restored) made its replay cache at the earlier time, and took again,
/// once its clock came within the request's window, a captured request the gateway
/// before it had taken. It now refuses what was signed around the times of the log's
/// events ahead of its clock, and warns.
#[test]
fn a_gateway_started_with_its_clock_set_back_takes_no_request_again() {
    let Some(libfaketime) = crate::common::libfaketime() else {
        return;
    };
    let (_runtime, exchange) = simulator(vec![Credential::hmac(REAL_KEY, REAL_SECRET)]);
    let mut home = Home::with_account(&exchange.url());
    let bot = home.issue("bot1", &[]);
    let first = Serve::start_with(&home.kg, &["--reconcile-every", "off"]);
    let signed_at = keygate_gateway::now_ms();
    let send = |serve: &Serve| account_read_signed_at(serve, &bot, signed_at, 60_000);
    let (status, body) = send(&first);
    assert_eq!(status, 200, "{body}");
    drop(first);
    // Four seconds back: the request, taken a moment ago, is within the window of the
    // next gateway's clock and, but for the log, signed after it started.
    let set_back: [(&str, &Path); 2] =
        [("LD_PRELOAD", &libfaketime), ("FAKETIME", Path::new("-4"))];
    let next = Serve::start_with_env(&home.kg, &["--reconcile-every", "off"], &set_back);
    for _ in 0..16 {
        let (status, body) = send(&next);
        assert_eq!(status, 400, "the captured request was taken twice: {body}");
        assert_eq!(body["code"], -1021, "{body}");
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    drop(next);
    let log = std::fs::read_to_string(home.kg.path("serve.log")).unwrap();
    assert!(
        log.contains("ahead of this host's clock: it was set back"),
        "{log}"
    );
    let reads = exchange.simulator().requests();
    let reads = reads.iter().filter(|r| r.path == "/api/v3/account");
    assert_eq!(reads.count(), 1);
}

/// What a gateway took while its clock ran ahead (an RTC kept in local time, before NTP
/// stepped it back; here 50 minutes, within the hour keygate believes the exchange's
/// clock off by) keeps no request signed now from the next gateway: only the times
/// around its events are refused, not every request until the clock gets there.
#[test]
fn a_gateway_that_once_ran_ahead_leaves_only_that_time_refused() {
    let Some(libfaketime) = crate::common::libfaketime() else {
        return;
    };
    let (_runtime, exchange) = simulator(vec![Credential::hmac(REAL_KEY, REAL_SECRET)]);
    let mut home = Home::with_account(&exchange.url());
    let bot = home.issue("bot1", &[]);
    let ahead: [(&str, &Path); 2] = [
        ("LD_PRELOAD", &libfaketime),
        ("FAKETIME", Path::new("+50m")),
    ];
    let first = Serve::start_with_env(&home.kg, &["--reconcile-every", "off"], &ahead);
    let signed_at = keygate_gateway::now_ms() + 50 * 60_000;
    let (status, body) = account_read_signed_at(&first, &bot, signed_at, 10_000);
    assert_eq!(status, 200, "{body}");
    drop(first);
    let next = Serve::start_with(&home.kg, &["--reconcile-every", "off"]);
    let (status, body) = signed_get(
        &next.addr,
        "/api/v3/account",
        bot["api_key"].as_str().unwrap(),
        bot["secret"].as_str().unwrap(),
    );
    assert_eq!(status, 200, "a request signed now was refused: {body}");
}

/// `GET /api/v3/account` of `bot` signed at `signed_at_ms` with `recv_window_ms`, sent to
/// `serve`: the same bytes each time, as a captured request is sent again.
fn account_read_signed_at(
    serve: &Serve,
    bot: &Value,
    signed_at_ms: u64,
    recv_window_ms: u64,
) -> (u16, Value) {
    let payload = format!("timestamp={signed_at_ms}&recvWindow={recv_window_ms}");
    let secret = bot["secret"].as_str().unwrap();
    let signature = binance::hmac_signature(secret.as_bytes(), payload.as_bytes());
    send_signed(
        reqwest::Method::GET,
        &format!("http://{}/binance", serve.addr),
        "/api/v3/account",
        &format!("{payload}&signature={signature}"),
        bot["api_key"].as_str().unwrap(),
    )
}

/// A real key whose ciphertext was changed without the master key breaks the seal over
/// the client and account tables, so `serve` refuses to start; once `keygate upgrade` has
/// shown the account and sealed the tables as they are, it still does not open: the
/// gateway refuses its clients, says so without a word of the key, and logs which
/// account it is. Nothing is sent upstream (there is no upstream to send to).
#[test]
fn a_tampered_account_refuses_its_clients_and_is_named_in_the_log() {
    let mut home = Home::with_account("http://127.0.0.1:9");
    let bot = home.issue("bot1", &[]);
    let db = rusqlite::Connection::open(home.kg.db()).unwrap();
    let mut sealed: Vec<u8> = db
        .query_row(
            "SELECT sealed_api_key FROM accounts WHERE label = 'main'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    sealed[20] ^= 0x01;
    db.execute(
        "UPDATE accounts SET sealed_api_key = ?1 WHERE label = 'main'",
        [sealed],
    )
    .unwrap();
    let refused = home
        .kg
        .fails_within(&["serve", "--listen", "127.0.0.1:0"], "", 2);
    assert!(
        refused.stderr.contains("do not match their seal"),
        "{}",
        refused.stderr
    );
    let upgrade = home.kg.ok(&["upgrade", "--yes"], "");
    assert!(
        upgrade.stdout.contains("main: binance"),
        "{}",
        upgrade.stdout
    );
    let serve = Serve::start(&home.kg);
    let (status, body) = signed_get(
        &serve.addr,
        "/api/v3/account",
        bot["api_key"].as_str().unwrap(),
        bot["secret"].as_str().unwrap(),
    );
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["code"], -2015);
    assert_eq!(
        body["msg"],
        "keygate: the account of client bot1 is not available"
    );
    // A withdrawal refused so is recorded with what it would have moved (found by
    // review: only its endpoint's kind).
    let (status, _) = signed(
        reqwest::Method::POST,
        &format!("http://{}/binance", serve.addr),
        "/sapi/v1/capital/withdraw/apply",
        "coin=USDT&network=TRX&address=TSomewhere&amount=12",
        bot["api_key"].as_str().unwrap(),
        bot["secret"].as_str().unwrap(),
    );
    assert_eq!(status, 401);
    // A denial is written in the background, within a moment.
    let started = std::time::Instant::now();
    let withdrawal = loop {
        let events = home.ok(&["audit", "query", "--json"], None);
        let withdrawal: Vec<Value> = events
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .filter(|e| e["action"] == "withdraw")
            .collect();
        if !withdrawal.is_empty() || started.elapsed() > Duration::from_secs(10) {
            break withdrawal;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(
        (
            &withdrawal[0]["asset"],
            &withdrawal[0]["amount"],
            &withdrawal[0]["rule"]
        ),
        (&json!("USDT"), &json!("12"), &json!("authentication")),
        "{withdrawal:?}"
    );
    // Logged, and raised as a critical alert (the log is where alerts go here).
    let told = "keygate refuses part of the vault: account main does not open";
    let started = std::time::Instant::now();
    let mut log = std::fs::read_to_string(&serve.log).unwrap();
    while !log.contains(told) && started.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(50));
        log = std::fs::read_to_string(&serve.log).unwrap();
    }
    assert!(
        log.lines().any(|l| l.contains("ERROR")
            && l.contains("account main does not open")
            && !l.contains("keygate::alert")),
        "{log}"
    );
    assert!(
        log.lines()
            .any(|l| l.contains("keygate::alert") && l.contains(told)),
        "{log}"
    );
    assert!(!log.contains(REAL_KEY) && !log.contains(REAL_SECRET));
}

/// Runs `tests/SCRIPT` against `serve` in front of the simulator at `exchange_url`, as
/// the HMAC client `issued` (the credentials in the environment, never argv), and
/// returns the JSON summary it prints; fails the test if the script fails.
fn bot_script(script: &str, serve: &Serve, exchange_url: &str, issued: &Value) -> Value {
    let run = Command::new(python())
        .arg(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../tests")
                .join(script),
        )
        .env("KEYGATE_URL", format!("http://{}", serve.addr))
        .env("KEYGATE_API_KEY", issued["api_key"].as_str().unwrap())
        .env("KEYGATE_SECRET", issued["secret"].as_str().unwrap())
        .env("MOCK_URL", exchange_url)
        // The script checks with `assert`, which -O would take out.
        .env_remove("PYTHONOPTIMIZE")
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "{script}: {out}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    serde_json::from_str(out.trim()).unwrap()
}

/// Unmodified ccxt, when the exchange's request weight runs out: after the exchange's own
/// 429 every call (a read, an order, public data) is answered by keygate as the exchange
/// would answer it, so ccxt raises its usual error, and nothing more reaches the exchange
/// until `Retry-After` has passed (see the script). The operator is told.
#[test]
fn ccxt_is_held_back_while_the_exchange_asks_to_wait() {
    let (_runtime, exchange) = simulator(vec![Credential::hmac(REAL_KEY, REAL_SECRET)]);
    let mut home = Home::with_account(&exchange.url());
    let issued: Value = home.issue(
        "bot1",
        &[
            "--scope",
            "read,trade",
            "--symbols",
            "BTC/USDT",
            "--max-order-notional",
            "5000",
        ],
    );
    // No reconciliation: its reads would be the simulator's too.
    let serve = Serve::start_with(&home.kg, &["--reconcile-every", "off"]);
    // The simulator's weight starts again as the minute turns, and with it the 429's
    // Retry-After: the script (a few seconds) runs well inside one minute.
    let into_minute = keygate_gateway::now_ms() % 60_000;
    if into_minute > 45_000 {
        std::thread::sleep(std::time::Duration::from_millis(60_100 - into_minute));
    }
    let summary = bot_script("ccxt_back_off_e2e.py", &serve, &exchange.url(), &issued);
    for call in [
        "exchange_429",
        "fetch_balance",
        "create_order",
        "fetch_ticker",
    ] {
        assert_eq!(summary[call], "DDoSProtection", "{summary}");
    }
    assert_eq!(summary["held_back_not_sent"], "ok", "{summary}");
    let held = home
        .kg
        .ok(&["audit", "query", "--decision", "denied", "--json"], "")
        .stdout;
    let rules: Vec<String> = held
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).unwrap())
        .filter_map(|e| e["rule"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(rules, ["exchange_back_off"; 3], "{held}");
    let log = std::fs::read_to_string(&serve.log).unwrap();
    assert!(
        log.contains("exchange_back_off") && log.contains("HTTP 429"),
        "{log}"
    );
}

/// Found by review: keygate passed `/time` on to the exchange, so python-binance's
/// `AsyncClient`, which sets its clock by it when it is made, signed on the exchange's
/// clock and had every signed call refused (-1021) while keygate's host was a second
/// or more behind the exchange. keygate answers with the clock it judges on.
#[test]
fn python_binance_s_async_client_trades_on_a_host_whose_clock_is_off() {
    let (_runtime, exchange) = simulator(vec![Credential::hmac(REAL_KEY, REAL_SECRET)]);
    let mut home = Home::with_account(&exchange.url());
    let issued: Value = home.issue(
        "bot1",
        &[
            "--scope",
            "read,trade",
            "--symbols",
            "BTCUSDT",
            "--max-order-notional",
            "5000",
        ],
    );
    exchange.simulator().set_clock_offset_ms(5_000);
    let serve = Serve::start_with(&home.kg, &["--reconcile-every", "off"]);
    let summary = bot_script(
        "python_binance_async_e2e.py",
        &serve,
        &exchange.url(),
        &issued,
    );
    for call in [
        "clock_answered_by_keygate",
        "get_account",
        "futures_account_balance",
        "create_order",
        "cancel_order",
    ] {
        assert_eq!(summary[call], "ok", "{summary}");
    }
    let offset = summary["timestamp_offset_ms"].as_i64().unwrap();
    assert!(offset.abs() < 1_000, "{summary}");
}

#[test]
fn ccxt_trades_through_keygate_and_the_cli_administers_it_live() {
    let (_runtime, exchange) = simulator(vec![
        Credential::hmac(REAL_KEY, REAL_SECRET),
        Credential::hmac(ROTATED_KEY, ROTATED_SECRET),
    ]);
    let mut home = Home::with_account(&exchange.url());
    let issued: Value = home.issue(
        "bot1",
        &[
            "--scope",
            "read,trade",
            "--symbols",
            "BTC/USDT,ETHUSDT",
            "--max-order-notional",
            "5000",
        ],
    );
    let bot_key = issued["api_key"].as_str().unwrap().to_owned();
    let bot_secret = issued["secret"].as_str().unwrap().to_owned();
    // No reconciliation: its reads would land among the scripts' own, which they check.
    let serve = Serve::start_with(&home.kg, &["--reconcile-every", "off"]);
    // Every answer the test's own requests get, error bodies included, is searched for
    // the planted secrets at the end.
    let answers = std::cell::RefCell::new(Vec::<u8>::new());
    let read_recorded = |path: &str, key: &str, secret: &str| {
        let (status, body) = signed_get(&serve.addr, path, key, secret);
        answers.borrow_mut().extend(body.to_string().as_bytes());
        (status, body)
    };
    #[cfg(target_os = "linux")]
    {
        let limits = std::fs::read_to_string(format!("/proc/{}/limits", serve.child.id())).unwrap();
        let core = limits
            .lines()
            .find(|l| l.starts_with("Max core file size"))
            .unwrap();
        assert!(
            core.split_whitespace().nth(4) == Some("0"),
            "core dumps are disabled: {core}"
        );
    }

    // Unmodified ccxt, only its URLs and credentials changed.
    // The credentials go in the environment, as the scripts read them (never argv).
    let bot_with = |script: &str, credentials: &[(&str, &str)]| {
        let run = Command::new(python())
            .arg(
                Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("../../tests")
                    .join(script),
            )
            .env("KEYGATE_URL", format!("http://{}", serve.addr))
            .envs(credentials.iter().copied())
            .env("MOCK_URL", exchange.url())
            // The scripts check with `assert`, which -O would take out.
            .env_remove("PYTHONOPTIMIZE")
            .output()
            .unwrap();
        let out = String::from_utf8_lossy(&run.stdout).into_owned();
        assert!(
            run.status.success(),
            "{script}: {out}\n{}",
            String::from_utf8_lossy(&run.stderr)
        );
        let summary = serde_json::from_str::<Value>(out.trim()).unwrap();
        (summary, [run.stdout, run.stderr].concat())
    };
    let bot = |script: &str| {
        bot_with(
            script,
            &[
                ("KEYGATE_API_KEY", &bot_key),
                ("KEYGATE_SECRET", &bot_secret),
            ],
        )
    };
    let (summary, ccxt_output) = bot("ccxt_e2e.py");
    for call in [
        "fetch_balance",
        "create_order_limit",
        "fetch_open_orders",
        "cancel_order",
        "denied_never_forwarded",
    ] {
        assert_eq!(summary[call], "ok", "{summary}");
    }
    // What ccxt raises for Binance's -2015 once the key has authenticated (see the script).
    assert_eq!(summary["withdraw"], "DDoSProtection", "{summary}");
    assert_eq!(summary["same_signature_twice"], "InvalidNonce", "{summary}");

    // Unmodified python-binance too: its own parameter order and form bodies verify as
    // sent, and its BinanceAPIException carries Binance's -2015.
    let (summary, python_binance_output) = bot("python_binance_e2e.py");
    for call in [
        "get_account",
        "futures_account_balance",
        "create_order",
        "get_open_orders",
        "cancel_order",
        "denied_never_forwarded",
    ] {
        assert_eq!(summary[call], "ok", "{summary}");
    }
    assert_eq!(summary["withdraw"], -2015, "{summary}");
    assert_eq!(summary["symbol_outside_policy"], -2015, "{summary}");

    // And python-binance with an Ed25519 virtual key: keygate holds only the public key,
    // and verifies the base64 signature as python-binance URL-encodes it.
    let ed_bot = {
        use ed25519_dalek::pkcs8::{EncodePrivateKey, EncodePublicKey};
        let signing = ed25519_dalek::SigningKey::from_bytes(&[42; 32]);
        let public = home.kg.path("edbot.pub.pem");
        std::fs::write(
            &public,
            signing
                .verifying_key()
                .to_public_key_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
                .unwrap(),
        )
        .unwrap();
        let issued = home.issue(
            "edbot",
            &[
                "--scope",
                "read,trade",
                "--symbols",
                "BTCUSDT",
                "--max-order-notional",
                "5000",
                "--key-type",
                "ed25519",
                "--public-key",
                public.to_str().unwrap(),
            ],
        );
        // PKCS#8 v1, without the public key: python-binance takes a longer PEM for RSA.
        let private = ed25519_dalek::pkcs8::KeypairBytes {
            secret_key: signing.to_bytes(),
            public_key: None,
        }
        .to_pkcs8_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
        .unwrap();
        (
            issued["api_key"].as_str().unwrap().to_owned(),
            private.to_string(),
        )
    };
    let (summary, ed25519_output) = bot_with(
        "python_binance_e2e.py",
        &[
            ("KEYGATE_API_KEY", &ed_bot.0),
            ("KEYGATE_PRIVATE_KEY", &ed_bot.1),
        ],
    );
    for call in [
        "get_account",
        "create_order",
        "cancel_order",
        "denied_never_forwarded",
    ] {
        assert_eq!(summary[call], "ok", "ed25519: {summary}");
    }
    assert_eq!(summary["symbol_outside_policy"], -2015, "{summary}");
    // And unmodified ccxt with that key: given the PEM private key as its secret, ccxt
    // signs with Ed25519.
    let (summary, ccxt_ed25519_output) = bot_with(
        "ccxt_e2e.py",
        &[
            ("KEYGATE_API_KEY", &ed_bot.0),
            ("KEYGATE_SECRET", &ed_bot.1),
        ],
    );
    for call in [
        "fetch_balance",
        "create_order_limit",
        "fetch_open_orders",
        "cancel_order",
        "create_order_market",
        "denied_never_forwarded",
    ] {
        assert_eq!(summary[call], "ok", "ccxt ed25519: {summary}");
    }
    assert_eq!(summary["withdraw"], "DDoSProtection", "{summary}");
    // Ed25519 signatures are deterministic: the same request in the same millisecond is
    // the same signature, refused as used.
    assert_eq!(summary["same_signature_twice"], "InvalidNonce", "{summary}");

    // A new key the exchange does not take (a mistyped secret) is refused before the
    // bots switch to it: nothing changes.
    let refused = home.kg.run_traced(
        &["account", "rotate", "main"],
        &format!("{ROTATED_KEY}\nnot-{ROTATED_SECRET}\n"),
    );
    assert_eq!(refused.code, 2, "{refused:#?}");
    assert!(
        refused.stderr.contains("the exchange did not take the key")
            && refused.stderr.contains("nothing was changed"),
        "{}",
        refused.stderr
    );
    assert!(!refused.all().contains(ROTATED_SECRET), "{refused:#?}");
    let (status, body) = read_recorded("/api/v3/account", &bot_key, &bot_secret);
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        exchange
            .simulator()
            .requests()
            .last()
            .and_then(|r| r.api_key.as_deref()),
        Some(REAL_KEY)
    );
    // The real key rotates under a running gateway, checked with the exchange first; the
    // bot's virtual key keeps working.
    home.ok(
        &["account", "rotate", "main"],
        Some(&format!("{ROTATED_KEY}\n{ROTATED_SECRET}\n")),
    );
    // What the bots were denied never reached the exchange: checked here too, not only
    // by the scripts, before the record is cleared.
    assert_no_denied_request_reached(&exchange.simulator().requests(), 5000.0);
    exchange.simulator().reset(false);
    let rotated = eventually(|| {
        let (status, body) = read_recorded("/api/v3/account", &bot_key, &bot_secret);
        assert_eq!(status, 200, "{body}");
        let seen = exchange.simulator().requests();
        (seen.last().and_then(|r| r.api_key.as_deref()) == Some(ROTATED_KEY)).then_some(())
    });
    assert!(
        rotated.is_some(),
        "the running gateway kept the replaced key"
    );

    // A freeze made with the CLI holds in the running gateway; unfreeze restores; revoke
    // is final. Each is polled for: the gateway takes a change at its next reload.
    let bot1_answered = |wanted: &dyn Fn(u16, &Value) -> bool| {
        eventually(|| {
            let (status, body) = read_recorded("/api/v3/account", &bot_key, &bot_secret);
            wanted(status, &body).then_some((status, body))
        })
    };
    home.ok(&["client", "freeze", "bot1"], None);
    assert!(
        bot1_answered(&|status, _| status == 401).is_some(),
        "the freeze never held"
    );
    home.ok(&["client", "unfreeze", "bot1"], None);
    assert!(
        bot1_answered(&|status, _| status == 200).is_some(),
        "the unfreeze never held"
    );
    // So does `keygate panic`, for every client at once.
    home.ok(&["panic"], None);
    let (_, body) = bot1_answered(&|status, _| status == 401).expect("the panic never held");
    assert!(body["msg"].as_str().unwrap().contains("frozen"), "{body}");
    home.ok(&["client", "unfreeze", "bot1"], None);
    home.ok(&["client", "revoke", "bot1"], None);
    // Polled for the revocation itself: the unfreeze before it may show first.
    let revoked = bot1_answered(&|status, body| {
        status == 401 && body["msg"].as_str().is_some_and(|m| m.contains("revoked"))
    });
    assert!(revoked.is_some(), "the revocation never held");
    // Removing the account revokes its clients; their keys stay known, and refused as
    // revoked rather than as unknown keys.
    let bot2 = home.issue("bot2", &[]);
    let (bot2_key, bot2_secret) = (
        bot2["api_key"].as_str().unwrap().to_owned(),
        bot2["secret"].as_str().unwrap().to_owned(),
    );
    let answered = eventually(|| {
        let (status, _) = read_recorded("/api/v3/account", &bot2_key, &bot2_secret);
        (status == 200).then_some(())
    });
    assert!(answered.is_some(), "the new client never worked");
    home.ok(&["account", "remove", "main", "--force"], None);
    let (status, body) = eventually(|| {
        let (status, body) = read_recorded("/api/v3/account", &bot2_key, &bot2_secret);
        (status != 200).then_some((status, body))
    })
    .expect("the removal never held");
    assert_eq!(status, 401);
    assert_eq!(
        body["msg"], "keygate: client bot2 is revoked; its account was removed",
        "{body}"
    );

    let serve_log = serve.log.clone();
    let serve_stdout = serve.stop();
    assert_no_denied_request_reached(&exchange.simulator().requests(), 5000.0);
    assert!(home.ok(&["audit", "verify"], None).contains("verified"));
    let exports = [
        home.ok(&["audit", "export", "--format", "jsonl"], None),
        home.ok(&["audit", "export", "--format", "csv"], None),
    ];
    assert!(
        exports[0].contains("\"rule\":\"symbol\""),
        "the denial is in the audit log"
    );

    // The planted secrets appear nowhere: trace logs, CLI output, audit exports, the
    // errors ccxt and python-binance raised and the answers the test got, or the
    // database files; neither as they are nor encoded (hex, base64, a byte array's debug
    // form).
    let mut written: Vec<(String, Vec<u8>)> = vec![
        ("serve log".into(), std::fs::read(&serve_log).unwrap()),
        ("cli output".into(), home.printed.clone()),
        ("ccxt output".into(), ccxt_output),
        ("python-binance output".into(), python_binance_output),
        ("python-binance ed25519 output".into(), ed25519_output),
        ("ccxt ed25519 output".into(), ccxt_ed25519_output),
        ("answers".into(), answers.take()),
        ("serve stdout".into(), serve_stdout),
        ("refused rotation".into(), refused.all().into_bytes()),
    ];
    written.extend(
        exports
            .iter()
            .map(|e| ("audit export".to_owned(), e.clone().into_bytes())),
    );
    for entry in std::fs::read_dir(home.path()).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() && path.file_name().unwrap() != "master.key" {
            written.push((path.display().to_string(), std::fs::read(&path).unwrap()));
        }
    }
    let log = String::from_utf8_lossy(&written[0].1).into_owned();
    assert!(
        log.contains("TRACE") || log.contains("DEBUG"),
        "serve logged at trace level"
    );
    assert!(
        written.iter().any(|(what, bytes)| what == "ccxt output"
            && String::from_utf8_lossy(bytes).contains("withdraw denied: binance")),
        "the errors the bots saw are searched"
    );
    let master_key = std::fs::read(home.kg.key_file()).unwrap();
    // And the keys derived from the master key: the audit log's MAC key and the
    // scanner's fingerprint key.
    let master = keygate_vault::MasterKey::from_key_file(&home.kg.key_file()).unwrap();
    let audit_mac = master.derive_subkey("audit-mac");
    let scan_fingerprint = master.derive_subkey("scan-fingerprint");
    let planted: [&[u8]; 9] = [
        REAL_SECRET.as_bytes(),
        ROTATED_SECRET.as_bytes(),
        REAL_KEY.as_bytes(),
        ROTATED_KEY.as_bytes(),
        bot_secret.as_bytes(),
        bot2_secret.as_bytes(),
        &master_key,
        audit_mac.expose_secret(),
        scan_fingerprint.expose_secret(),
    ];
    for secret in planted {
        let forms = written_forms(secret);
        for (what, bytes) in &written {
            for form in &forms {
                assert!(
                    !bytes.windows(form.len()).any(|w| w == form.as_slice()),
                    "a planted secret appears in {what}"
                );
            }
        }
    }
}

/// Asserts that none of `requests` (the simulator's record) is one the bots of
/// `ccxt_trades_through_keygate_and_the_cli_administers_it_live` were denied: a
/// withdrawal, an order for DOGEUSDT, or an order of a notional over `max_notional`
/// (a market order without a price at the simulator's 60000).
fn assert_no_denied_request_reached(
    requests: &[keygate_mockex::RecordedRequest],
    max_notional: f64,
) {
    for request in requests {
        let params = format!("{}&{}", request.query, request.body);
        assert!(
            !request.path.ends_with("/withdraw/apply"),
            "a withdrawal reached the exchange: {request:?}"
        );
        assert!(
            !params.contains("DOGEUSDT"),
            "a DOGEUSDT request reached the exchange: {request:?}"
        );
        if request.method == "POST" && request.path.ends_with("/order") {
            let param = |name: &str| {
                params
                    .split('&')
                    .find_map(|p| p.strip_prefix(name)?.strip_prefix('='))
                    .map(|v| v.parse::<f64>().unwrap())
            };
            let notional = param("quoteOrderQty").unwrap_or_else(|| {
                param("quantity").unwrap_or(0.0) * param("price").unwrap_or(60_000.0)
            });
            assert!(
                notional <= max_notional,
                "an order over {max_notional} reached the exchange: {request:?}"
            );
        }
    }
}

/// `secret` as a leak could write it: as it is, in hex (both cases), in base64 (with
/// and without padding, standard and URL-safe) and as the start of a byte slice's debug
/// form (`[80, 108, …`).
fn written_forms(secret: &[u8]) -> Vec<Vec<u8>> {
    use base64::Engine;
    let hex: String = secret.iter().map(|b| format!("{b:02x}")).collect();
    let engines = [
        base64::engine::general_purpose::STANDARD,
        base64::engine::general_purpose::STANDARD_NO_PAD,
        base64::engine::general_purpose::URL_SAFE,
        base64::engine::general_purpose::URL_SAFE_NO_PAD,
    ];
    let debug: Vec<String> = secret[..8].iter().map(u8::to_string).collect();
    let mut forms = vec![
        secret.to_vec(),
        hex.clone().into_bytes(),
        hex.to_uppercase().into_bytes(),
        format!("[{}", debug.join(", ")).into_bytes(),
    ];
    // Base64 of the whole at each of the three alignments it can have in a longer text
    // (after 0, 1 or 2 bytes of a group), less the groups it shares with what comes
    // before and after.
    for engine in &engines {
        for offset in 0..3 {
            let mut aligned = vec![0u8; offset];
            aligned.extend_from_slice(secret);
            let encoded = engine.encode(&aligned);
            let start = if offset == 0 { 0 } else { 4 };
            let end = encoded.len().saturating_sub(4);
            if end > start {
                forms.push(encoded.as_bytes()[start..end].to_vec());
            }
        }
    }
    forms
}

#[test]
fn the_demo_tells_the_whole_story_and_verifies_its_log() {
    let out = Command::new(env!("CARGO_BIN_EXE_keygate"))
        .arg("demo")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for line in [
        "✔ allowed read balances → HTTP 200",
        "✔ allowed limit buy",
        "✘ denied  market buy DOGEUSDT → HTTP 401 keygate: symbol DOGEUSDT is not allowed for client bot1",
        "✘ denied  withdraw",
        "✘ denied  read balances with the revoked key → HTTP 401 keygate: client bot1 is revoked",
        "the simulator received 1 order(s) and 0 withdrawal(s)",
        "⚑ critical withdrawal of 1000 USDT to TXYZattacker on TRX by client bot1",
        "⚑ warning  the revoked key of client bot1 was used",
        "denied:revoked",
        "audit log verified",
    ] {
        assert!(text.contains(line), "demo output lacks {line:?}:\n{text}");
    }
    assert!(
        !text.contains("\x1b["),
        "no colour when stdout is not a terminal"
    );
}

/// On a terminal (here a pseudo-terminal made by util-linux's `script`), the demo is in
/// colour, and tells the same story.
#[test]
fn the_demo_is_in_colour_on_a_terminal() {
    let command = format!("{} demo", env!("CARGO_BIN_EXE_keygate"));
    let out = Command::new("script")
        .args(["--quiet", "--return", "--command", &command, "/dev/null"])
        .env_remove("NO_COLOR")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("util-linux's script runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("\x1b[1;32m✔ allowed\x1b[0m"), "{text}");
    assert!(text.contains("\x1b[1;31m✘ denied \x1b[0m"), "{text}");
    assert!(text.contains("audit log verified"), "{text}");
}
