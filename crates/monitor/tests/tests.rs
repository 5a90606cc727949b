//! The monitor against a real SQLite audit log and a real webhook receiver on loopback.

#![allow(clippy::unwrap_used)] // Tests may panic.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use keygate_audit::{AuditKey, AuditLog};
use keygate_core::{ActionKind, AdminEvent, Event, EventBody, Outcome, RequestEvent, Rule};
use keygate_monitor::{
    replay_alerts, sign, AlertsConfig, Monitor, Severity, Thresholds, WebhookConfig,
};
use keygate_store::Store;
use keygate_vault::SecretBytes;

/// One POST the receiver got.
#[derive(Clone, Debug)]
struct Received {
    path: String,
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

impl Received {
    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

/// A webhook receiver on 127.0.0.1: answers each request with the next status of
/// `statuses` (200 once they run out) and keeps what it got.
struct Receiver {
    addr: SocketAddr,
    got: Arc<Mutex<Vec<Received>>>,
}

impl Receiver {
    fn start(statuses: &[u16]) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let got = Arc::new(Mutex::new(Vec::new()));
        let statuses = Arc::new(Mutex::new(statuses.to_vec()));
        let keep = Arc::clone(&got);
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut request_line = String::new();
                reader.read_line(&mut request_line).unwrap();
                let mut headers = HashMap::new();
                loop {
                    let mut line = String::new();
                    reader.read_line(&mut line).unwrap();
                    let line = line.trim_end();
                    if line.is_empty() {
                        break;
                    }
                    let (name, value) = line.split_once(':').unwrap();
                    headers.insert(name.to_ascii_lowercase(), value.trim().to_owned());
                }
                let length: usize = headers["content-length"].parse().unwrap();
                let mut body = vec![0; length];
                reader.read_exact(&mut body).unwrap();
                let path = request_line.split(' ').nth(1).unwrap().to_owned();
                keep.lock().unwrap().push(Received {
                    path,
                    headers,
                    body,
                });
                let status = {
                    let mut statuses = statuses.lock().unwrap();
                    if statuses.is_empty() {
                        200
                    } else {
                        statuses.remove(0)
                    }
                };
                let mut stream = stream;
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                );
            }
        });
        Receiver { addr, got }
    }

    fn url(&self) -> String {
        format!("http://{}/hooks/s3cretpath", self.addr)
    }

    /// Waits until `n` requests came (at most 15 s) and returns them all.
    fn wait_for(&self, n: usize) -> Vec<Received> {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let got = self.got.lock().unwrap().clone();
            if got.len() >= n || Instant::now() > deadline {
                return got;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}

fn request(ts_ms: u64, action: ActionKind, rule: Option<Rule>) -> Event {
    Event {
        ts_ms,
        body: EventBody::Request(RequestEvent {
            request_id: format!("r{ts_ms}"),
            exchange: "binance".into(),
            client: Some("bot1".into()),
            account: Some("main".into()),
            source_ip: "127.0.0.1".into(),
            method: "POST".into(),
            path: "/api/v3/order".into(),
            action,
            symbol: None,
            side: None,
            notional: None,
            amount: None,
            asset: None,
            destination: None,
            allowed: rule.is_none(),
            rule,
            message: None,
            upstream_status: Some(200),
            latency_us: Some(100),
            outcome: if rule.is_none() {
                Outcome::Answered
            } else {
                Outcome::NotForwarded
            },
        }),
    }
}

fn panic_event(ts_ms: u64) -> Event {
    Event {
        ts_ms,
        body: EventBody::Admin(AdminEvent {
            actor: "cli".into(),
            change: "vault.panic".into(),
            target: "clients".into(),
            detail: serde_json::Value::Null,
        }),
    }
}

/// A vault-like directory: a database with an audit log.
fn log_in(dir: &Path) -> (std::path::PathBuf, AuditLog) {
    let db = dir.join("keygate.db");
    Store::create(&db).unwrap();
    let log = AuditLog::start(&db, AuditKey::from_bytes(&[9; 32])).unwrap();
    (db, log)
}

fn config(receiver: &Receiver, secret_file: Option<&Path>, min: Severity) -> AlertsConfig {
    AlertsConfig {
        webhooks: vec![WebhookConfig {
            url: receiver.url(),
            secret_file: secret_file.map(Path::to_owned),
            min_severity: Some(min),
        }],
        ..AlertsConfig::default()
    }
}

#[test]
fn the_monitor_follows_the_log_signs_each_alert_and_resumes_where_it_stopped() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let (db, log) = log_in(dir.path());
    // Before the monitor first starts: not alerted.
    log.append_blocking(panic_event(1)).unwrap();

    let secret_file = dir.path().join("webhook.secret");
    std::fs::write(&secret_file, "whsec-planted-7f3a\n").unwrap();
    std::fs::set_permissions(&secret_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let receiver = Receiver::start(&[]);
    let settings = config(&receiver, Some(&secret_file), Severity::Warning)
        .settings()
        .unwrap();
    let monitor = Monitor::start(&db, settings).unwrap();

    log.append_blocking(request(10, ActionKind::Read, None))
        .unwrap();
    log.append_blocking(request(11, ActionKind::Withdraw, Some(Rule::Scope)))
        .unwrap();
    log.append_blocking(request(12, ActionKind::Read, Some(Rule::Revoked)))
        .unwrap();
    log.append_blocking(panic_event(13)).unwrap();
    let got = receiver.wait_for(3);
    assert_eq!(got.len(), 3, "{got:?}");
    let rules: Vec<String> = got
        .iter()
        .map(|r| r.json()["rule"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(rules, ["withdrawal", "dead_key_used", "admin_change"]);
    let first = got[0].json();
    assert_eq!(first["severity"], "critical");
    assert_eq!(first["client"], "bot1");
    assert_eq!(first["event_seq"], 3);
    assert!(first["text"]
        .as_str()
        .unwrap()
        .starts_with("[keygate critical] withdrawal by client bot1"));
    assert_eq!(got[0].path, "/hooks/s3cretpath");
    let secret = SecretBytes::new(b"whsec-planted-7f3a".to_vec());
    for received in &got {
        let timestamp = &received.headers["x-keygate-timestamp"];
        assert_eq!(
            received.headers["x-keygate-signature"],
            sign(&secret, timestamp, &received.body)
        );
        assert!(!String::from_utf8_lossy(&received.body).contains("whsec-planted"));
    }
    monitor.stop();

    // Stopped, then started again: only what came since is sent.
    log.append_blocking(request(20, ActionKind::Transfer, Some(Rule::Scope)))
        .unwrap();
    let settings = config(&receiver, Some(&secret_file), Severity::Warning)
        .settings()
        .unwrap();
    let monitor = Monitor::start(&db, settings).unwrap();
    let got = receiver.wait_for(4);
    monitor.stop();
    assert_eq!(got.len(), 4);
    assert_eq!(got[3].json()["rule"], "transfer");
    assert_eq!(got[3].json()["event_seq"], 6);

    // The same alerts come out of the log again, from the start, info included.
    log.flush().unwrap();
    let store = Store::open(&db).unwrap();
    let mut replayed = Vec::new();
    replay_alerts(&store, Thresholds::default(), 1, |a| replayed.push(a)).unwrap();
    let seqs: Vec<u64> = replayed.iter().map(|a| a.event_seq).collect();
    assert_eq!(seqs, [1, 3, 4, 5, 6]);
}

#[test]
fn a_webhook_that_fails_is_tried_again_and_one_below_its_severity_gets_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (db, log) = log_in(dir.path());
    let failing_once = Receiver::start(&[503]);
    let critical_only = Receiver::start(&[]);
    let mut config = config(&failing_once, None, Severity::Info);
    config.webhooks.push(WebhookConfig {
        url: critical_only.url(),
        secret_file: None,
        min_severity: Some(Severity::Critical),
    });
    let monitor = Monitor::start(&db, config.settings().unwrap()).unwrap();
    log.append_blocking(request(10, ActionKind::Read, Some(Rule::Replay)))
        .unwrap();
    let got = failing_once.wait_for(2);
    monitor.stop();
    assert_eq!(got.len(), 2, "one failed attempt, then the delivery");
    assert_eq!(got[0].body, got[1].body);
    assert_eq!(got[1].json()["rule"], "replay");
    assert!(!got[0].headers.contains_key("x-keygate-signature"));
    assert!(critical_only.got.lock().unwrap().is_empty());
}

#[test]
fn settings_refuse_what_a_careful_operator_would_not_mean() {
    let hook = |url: &str| AlertsConfig {
        webhooks: vec![WebhookConfig {
            url: url.into(),
            secret_file: None,
            min_severity: None,
        }],
        ..AlertsConfig::default()
    };
    let message = |c: AlertsConfig| c.settings().err().unwrap().to_string();
    assert!(message(hook("http://alerts.example.com/x")).contains("loopback"));
    let zero = AlertsConfig {
        denial_burst: Some(0),
        ..AlertsConfig::default()
    };
    assert!(message(zero).contains("denial_burst"));
    let window = AlertsConfig {
        denial_window: Some("soon".into()),
        ..AlertsConfig::default()
    };
    assert!(message(window).contains("denial_window"));
    let mut readable = hook("https://alerts.example.com/x");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("secret");
    std::fs::write(&file, "s").unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    readable.webhooks[0].secret_file = Some(file);
    assert!(message(readable).contains("readable by group or others"));
    let typo: Result<AlertsConfig, _> = toml::from_str("denial_brust = 3");
    assert!(typo.is_err());
}
