//! keygate's alerts: rules over the audit log, delivered as they happen.
//!
//! The monitor reads the audit log as it grows ([`Monitor`]), passes every event through
//! the [`Rules`], and sends each [`Alert`] to the log (`tracing`, target `keygate::alert`)
//! and to every configured [`Sink`]: a [`Webhook`] or an [`Email`]. What it raises:
//!
//! | rule | severity | when |
//! |---|---|---|
//! | `withdrawal`, `transfer` | critical when denied; warning (withdrawal) or info (transfer) when forwarded | any withdrawal or transfer |
//! | `outcome_unknown` | critical | the exchange did not answer a request already sent |
//! | `dead_key_used` | warning | a revoked, expired or frozen key is used |
//! | `foreign_source` | warning | a key is used from an address not on its allow list |
//! | `replay` | warning | a signature is sent again |
//! | `denial_burst` | warning | many denials of one client, or of unknown keys together, in a short window |
//! | `new_source` | warning | a client seen at one address is used from another (anomaly) |
//! | `new_symbol` | warning | a client that trades places an order in a symbol it never traded (anomaly) |
//! | `rate_spike` | warning | a client sends ten times its usual rate in a minute (anomaly) |
//! | `admin_change` | critical for `keygate panic`, warning for a grant of withdraw or transfer, info otherwise | an operator's change |
//! | `events_lost` | critical | the audit writer fell so far behind that background events (reads, denials) were counted, not kept |
//! | `log_unreadable` | critical | an event does not decode, or the log ends before the monitor's place in it |
//!
//! Alerts found outside the log, such as a withdrawal or an order the exchange made that
//! keygate never forwarded (`unreconciled_withdrawal`, `unreconciled_order`, critical;
//! the matching is [`reconcile`]'s), an audit log that cannot be
//! written (`audit_unavailable`) or a reload that leaves every client refused
//! (`reload_failed`, both critical and raised by the gateway), go through an [`Alerter`]
//! the same way.
//!
//! Alerts are derived from the tamper-evident log and from nothing else, so they can
//! always be recomputed by passing the log through [`Rules`] again (`keygate alerts list`): a webhook that was down loses no alert
//! that the log holds. The monitor keeps its place in the log (`monitor_cursor` in the
//! store's meta table) and starts, the first time, at the log's end.
//!
//! This crate does not decide requests (`keygate-policy` does) or write the log
//! (`keygate-audit` does); it only reads.
//!
//! ```
//! use keygate_core::{AdminEvent, Event, EventBody};
//! use keygate_monitor::{AlertRule, Rules, Severity, Thresholds};
//!
//! let mut rules = Rules::new(Thresholds::default());
//! let panic = Event { ts_ms: 1, body: EventBody::Admin(AdminEvent {
//!     actor: "cli".into(), change: "vault.panic".into(), target: "clients".into(),
//!     detail: serde_json::Value::Null }) };
//! let alerts = rules.evaluate(7, &panic);
//! assert_eq!((alerts[0].severity, alerts[0].rule), (Severity::Critical, AlertRule::AdminChange));
//! ```

mod config;
mod email;
mod metrics;
pub mod reconcile;
mod rules;
mod sink;

pub use config::{AlertsConfig, EmailConfig, Settings, WebhookConfig};
pub use email::{Email, EmailSettings, SmtpSecurity};
pub use metrics::{write_gauge, Metrics};
pub use rules::{Rules, Thresholds};
pub use sink::{sign, Sink, Webhook};

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::Duration;

use keygate_store::Store;
use serde::{Deserialize, Serialize};

/// How often the monitor looks for new events.
const POLL_INTERVAL: Duration = Duration::from_millis(250);
/// Events read at a time.
const PAGE: u64 = 1000;
/// The meta key of the monitor's place in the log.
const CURSOR_KEY: &str = "monitor_cursor";

/// An error from the monitor.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A webhook's URL is refused.
    #[error("webhook refused: {reason}")]
    BadWebhook {
        /// Why.
        reason: String,
    },
    /// The `[alerts]` settings do not parse.
    #[error("alerts setting {setting}: {reason}")]
    BadSetting {
        /// The setting.
        setting: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// An email sink's server, addresses or TLS settings are refused.
    #[error("email refused: {reason}")]
    BadEmail {
        /// Why.
        reason: String,
    },
    /// A webhook's secret file or a mail server's password file could not be read.
    #[error("secret file: {0}")]
    Secret(#[from] keygate_vault::Error),
    /// The audit log could not be read.
    #[error(transparent)]
    Audit(#[from] keygate_audit::Error),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] keygate_store::Error),
    /// The monitor's thread or runtime could not start.
    #[error("cannot start the monitor: {0}")]
    Start(std::io::Error),
}

/// How much attention an alert needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Worth a look.
    Info,
    /// Someone should look soon.
    Warning,
    /// Someone must act now.
    Critical,
}

impl Severity {
    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

/// The rule that raised an alert.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum AlertRule {
    /// A withdrawal was forwarded or denied.
    Withdrawal,
    /// A transfer was forwarded or denied.
    Transfer,
    /// A request was sent and no answer came: it may have executed.
    OutcomeUnknown,
    /// A revoked, expired or frozen key was used.
    DeadKeyUsed,
    /// A key was used from an address not on its allow list.
    ForeignSource,
    /// A signature was sent again.
    Replay,
    /// Many denials of one client or address in a short window.
    DenialBurst,
    /// A client seen at one address was used from another for the first time.
    NewSource,
    /// A client sent many times more requests in a minute than it usually does.
    RateSpike,
    /// A client that trades placed an order in a symbol it had not traded before.
    NewSymbol,
    /// An operator changed accounts, clients or the vault.
    AdminChange,
    /// An event in the log could not be read.
    LogUnreadable,
    /// The exchange lists a withdrawal that keygate never forwarded: unless it was made by
    /// hand on the exchange, the real key has leaked.
    UnreconciledWithdrawal,
    /// The exchange lists an order that keygate never forwarded: unless it was placed by
    /// hand on the exchange, the real key has leaked.
    UnreconciledOrder,
    /// The exchange could not be asked for its withdrawals or orders.
    ReconcileFailed,
    /// The audit log cannot be written: orders, withdrawals and transfers are refused.
    AuditUnavailable,
    /// Accounts and clients could not be reloaded (a client table that does not match its
    /// seal, say): every request is refused.
    ReloadFailed,
    /// Background events were counted instead of kept: the audit writer fell that far
    /// behind (a flood of requests, or a stalled disk).
    EventsLost,
    /// Sent by `keygate alerts test`.
    Test,
}

impl AlertRule {
    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertRule::Withdrawal => "withdrawal",
            AlertRule::Transfer => "transfer",
            AlertRule::OutcomeUnknown => "outcome_unknown",
            AlertRule::DeadKeyUsed => "dead_key_used",
            AlertRule::ForeignSource => "foreign_source",
            AlertRule::Replay => "replay",
            AlertRule::DenialBurst => "denial_burst",
            AlertRule::NewSource => "new_source",
            AlertRule::RateSpike => "rate_spike",
            AlertRule::NewSymbol => "new_symbol",
            AlertRule::AdminChange => "admin_change",
            AlertRule::LogUnreadable => "log_unreadable",
            AlertRule::UnreconciledWithdrawal => "unreconciled_withdrawal",
            AlertRule::UnreconciledOrder => "unreconciled_order",
            AlertRule::ReconcileFailed => "reconcile_failed",
            AlertRule::AuditUnavailable => "audit_unavailable",
            AlertRule::ReloadFailed => "reload_failed",
            AlertRule::EventsLost => "events_lost",
            AlertRule::Test => "test",
        }
    }
}

/// Something a person must see. Holds no secret: the audit events it comes from hold none.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alert {
    /// How urgent.
    pub severity: Severity,
    /// What raised it.
    pub rule: AlertRule,
    /// One sentence for a person.
    pub summary: String,
    /// The client concerned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
    /// The account concerned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// The request's source address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_ip: Option<String>,
    /// The audit event that raised it (`keygate audit query` shows it); 0 for an alert
    /// raised through an [`Alerter`] from outside the log.
    pub event_seq: u64,
    /// When that event happened, in milliseconds since the Unix epoch.
    pub ts_ms: u64,
}

impl Alert {
    /// An alert that no audit event raised (what an exchange says, an outage of the log
    /// itself), as of now: no client, account or address, and `event_seq` 0.
    pub fn outside_log(severity: Severity, rule: AlertRule, summary: String) -> Alert {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        Alert {
            severity,
            rule,
            summary,
            client: None,
            account: None,
            source_ip: None,
            event_seq: 0,
            ts_ms: now,
        }
    }
}

/// What became of an alert sent to one sink.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// The sink, as [`Sink::destination`] shows it.
    pub destination: String,
    /// `Err` holds the last failure, after every attempt.
    pub result: Result<(), String>,
}

/// Sends `alert` to the log and to every sink that wants it, and says what became of
/// each delivery.
pub fn dispatch_blocking(settings: &Settings, alert: &Alert) -> Result<Vec<Delivery>, Error> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(Error::Start)?;
    let http = sink::http_client()?;
    Ok(runtime.block_on(dispatch(&http, &settings.sinks, alert)))
}

async fn dispatch(http: &reqwest::Client, sinks: &[Sink], alert: &Alert) -> Vec<Delivery> {
    log(alert);
    let mut results = Vec::new();
    for sink in sinks.iter().filter(|sink| sink.wants(alert)) {
        let result = sink.deliver(http, alert).await;
        if let Err(failure) = &result {
            tracing::error!(
                %failure,
                rule = alert.rule.as_str(),
                event_seq = alert.event_seq,
                "alert not delivered; `keygate alerts list` still shows it"
            );
        }
        results.push(Delivery {
            destination: sink.destination(),
            result,
        });
    }
    results
}

fn log(alert: &Alert) {
    let client = alert.client.as_deref().unwrap_or("-");
    let (rule, summary, seq) = (alert.rule.as_str(), &alert.summary, alert.event_seq);
    match alert.severity {
        Severity::Critical => {
            tracing::error!(target: "keygate::alert", rule, client, event_seq = seq, "{summary}")
        }
        Severity::Warning => {
            tracing::warn!(target: "keygate::alert", rule, client, event_seq = seq, "{summary}")
        }
        Severity::Info => {
            tracing::info!(target: "keygate::alert", rule, client, event_seq = seq, "{summary}")
        }
    }
}

/// The monitor at work: a thread that follows the audit log and dispatches the alerts
/// its events raise, and those raised through its [`Alerter`]s. [`Monitor::stop`] reads
/// what is left and stops.
pub struct Monitor {
    stop: Arc<AtomicBool>,
    metrics: Arc<Metrics>,
    alerter: Alerter,
    thread: Option<thread::JoinHandle<()>>,
}

/// Raises alerts that do not come from the audit log (what the exchange says) through a
/// running [`Monitor`]'s sinks. Cheap to clone; an alert raised after the monitor stopped
/// is logged and goes nowhere else.
#[derive(Clone)]
pub struct Alerter(mpsc::Sender<Alert>);

impl Alerter {
    /// An alerter whose alerts go to the receiver, for tests and for programs that
    /// dispatch alerts themselves.
    pub fn channel() -> (Alerter, mpsc::Receiver<Alert>) {
        let (sender, receiver) = mpsc::channel();
        (Alerter(sender), receiver)
    }

    /// Hands `alert` to the monitor, which dispatches it within a poll interval. Its
    /// summary is made printable on the way, as the rules' own are.
    pub fn raise(&self, mut alert: Alert) {
        alert.summary = rules::printable(&alert.summary);
        if let Err(mpsc::SendError(alert)) = self.0.send(alert) {
            log(&alert);
        }
    }
}

impl Monitor {
    /// Starts following the log in `db` from where it last stopped (the log's end, the
    /// first time).
    pub fn start(db: &Path, settings: Settings) -> Result<Monitor, Error> {
        let store = Store::open(db)?;
        let cursor = match store.meta(CURSOR_KEY)? {
            Some(bytes) => decode_cursor(&bytes),
            None => {
                let end = keygate_audit::last_seq(&store)?;
                store.set_meta(CURSOR_KEY, &end.to_be_bytes())?;
                end
            }
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(Error::Start)?;
        let http = sink::http_client()?;
        let stop = Arc::new(AtomicBool::new(false));
        let (alerter, raised) = Alerter::channel();
        let metrics = Arc::new(Metrics::after(cursor));
        let follower = Follower {
            raised,
            metrics: Arc::clone(&metrics),
            store,
            rules: Rules::new(settings.thresholds),
            sinks: settings.sinks,
            cursor,
            http,
        };
        let stopping = Arc::clone(&stop);
        let thread = thread::Builder::new()
            .name("keygate-monitor".into())
            .spawn(move || runtime.block_on(follower.run(&stopping)))
            .map_err(Error::Start)?;
        Ok(Monitor {
            stop,
            metrics,
            alerter,
            thread: Some(thread),
        })
    }

    /// The metrics counted from the events read so far.
    pub fn metrics(&self) -> Arc<Metrics> {
        Arc::clone(&self.metrics)
    }

    /// A handle that raises alerts through this monitor.
    pub fn alerter(&self) -> Alerter {
        self.alerter.clone()
    }

    /// Dispatches the alerts of every event written so far, then stops.
    pub fn stop(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                tracing::error!("the monitor thread panicked");
            }
        }
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

/// A cursor written by an older or damaged store reads as 0: every event is looked at
/// again, which repeats alerts rather than missing any.
fn decode_cursor(bytes: &[u8]) -> u64 {
    <[u8; 8]>::try_from(bytes).map_or(0, u64::from_be_bytes)
}

/// The monitor thread's state.
struct Follower {
    raised: mpsc::Receiver<Alert>,
    metrics: Arc<Metrics>,
    store: Store,
    rules: Rules,
    sinks: Vec<Sink>,
    cursor: u64,
    http: reqwest::Client,
}

impl Follower {
    async fn run(mut self, stop: &AtomicBool) {
        loop {
            let stopping = stop.load(Ordering::Acquire);
            // Once asked to stop, read to the end before leaving. Alerts raised outside
            // the log go out between pages, not after a backlog of them.
            loop {
                self.send_raised().await;
                if !self.step().await {
                    break;
                }
            }
            self.send_raised().await;
            if stopping {
                return;
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// Reads one page of new events and dispatches their alerts; whether there may be
    /// more right away.
    async fn step(&mut self) -> bool {
        let page = match keygate_audit::read(&self.store, self.cursor + 1, PAGE) {
            Ok(page) => page,
            Err(keygate_audit::Error::Tampered { seq, reason }) => {
                // The events before the unreadable one read well: they count as ever. Read
                // by seq, not by count, since a gap before it would bring it back.
                let before = seq.saturating_sub(self.cursor + 1);
                if let Ok(mut readable) = keygate_audit::read(&self.store, self.cursor + 1, before)
                {
                    readable.retain(|(at, _)| *at < seq);
                    self.evaluate(&readable).await;
                }
                let alert = Alert {
                    severity: Severity::Critical,
                    rule: AlertRule::LogUnreadable,
                    summary: format!(
                        "audit event {seq} cannot be read ({reason}); run keygate audit verify"
                    ),
                    client: None,
                    account: None,
                    source_ip: None,
                    event_seq: seq,
                    ts_ms: 0,
                };
                self.send(&alert).await;
                self.advance(seq);
                return true;
            }
            Err(e) => {
                tracing::error!(error = %e, "the monitor cannot read the audit log");
                return false;
            }
        };
        let Some(last) = page.last().map(|(seq, _)| *seq) else {
            return self.check_not_cut_short().await;
        };
        self.evaluate(&page).await;
        self.advance(last);
        page.len() as u64 == PAGE
    }

    /// With nothing new to read: a log that now ends before the place the monitor had read
    /// to was cut short behind keygate's back. Says so, and follows the log from where it
    /// ends; whether there may be more right away.
    async fn check_not_cut_short(&mut self) -> bool {
        let end = match keygate_audit::last_seq(&self.store) {
            Ok(end) if end < self.cursor => end,
            _ => return false,
        };
        let alert = Alert {
            severity: Severity::Critical,
            rule: AlertRule::LogUnreadable,
            summary: format!(
                "the audit log ends at event {end}, but the monitor had read it to event {}: \
                 events were removed; run keygate audit verify",
                self.cursor
            ),
            client: None,
            account: None,
            source_ip: None,
            event_seq: end,
            ts_ms: 0,
        };
        self.send(&alert).await;
        self.advance(end);
        true
    }

    /// Evaluates `events` and sends their alerts, the most severe first: behind a slow
    /// sink, a page of warnings (denials from many sources, say) must not hold up the
    /// alert of a withdrawal.
    async fn evaluate(&mut self, events: &[(u64, keygate_core::Event)]) {
        let mut alerts = Vec::new();
        for (seq, event) in events {
            self.metrics.event(*seq, event);
            alerts.extend(self.rules.evaluate(*seq, event));
        }
        // Stable: alerts of one severity keep the log's order.
        alerts.sort_by_key(|alert| std::cmp::Reverse(alert.severity));
        for alert in &alerts {
            self.send(alert).await;
        }
    }

    /// Sends the alerts raised outside the log (by the gateway, by reconciliation).
    async fn send_raised(&mut self) {
        while let Ok(alert) = self.raised.try_recv() {
            self.send(&alert).await;
        }
    }

    /// Dispatches `alert` and counts it.
    async fn send(&self, alert: &Alert) {
        let deliveries = dispatch(&self.http, &self.sinks, alert).await;
        self.metrics.alert(alert, &deliveries);
    }

    fn advance(&mut self, seq: u64) {
        self.cursor = seq;
        if let Err(e) = self.store.set_meta(CURSOR_KEY, &seq.to_be_bytes()) {
            tracing::error!(error = %e, "the monitor cannot save its place in the log");
        }
    }
}
