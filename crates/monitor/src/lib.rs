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
//! Two bounds keep the sinks useful when much happens at once. Past ten alerts of one
//! rule and severity in a minute, the rest are logged and counted, not sent, and one
//! summary says how many when the minute ends; critical alerts are never held back.
//! And once asked to stop, the monitor has five seconds to read the rest of the log and
//! deliver what is left, the most severe first; it logs how many it could not.
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

mod cap;
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

use std::cmp::Reverse;
use std::path::Path;
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::Duration;

use keygate_store::Store;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::cap::Cap;

/// How often the monitor looks for new events.
const POLL_INTERVAL: Duration = Duration::from_millis(250);
/// How long the monitor has, once asked to stop, to read the rest of the log and deliver
/// the alerts still to go: `keygate serve` stops in seconds, however many alerts wait and
/// however slow their receivers. What is left is logged and counted.
const DRAIN_DEADLINE: Duration = Duration::from_secs(5);
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
    deliver(http, sinks, alert).await
}

/// Sends `alert` to every sink that wants it, one after another.
async fn deliver(http: &reqwest::Client, sinks: &[Sink], alert: &Alert) -> Vec<Delivery> {
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
/// what is left and stops, within a deadline of a few seconds.
pub struct Monitor {
    stop: watch::Sender<bool>,
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
        let outlet = Outlet::Sinks {
            http: sink::http_client()?,
            sinks: settings.sinks,
        };
        let (stop, stopping) = watch::channel(false);
        let (alerter, raised) = Alerter::channel();
        let metrics = Arc::new(Metrics::after(cursor));
        let follower = Follower::new(
            store,
            cursor,
            Rules::new(settings.thresholds),
            outlet,
            raised,
            stopping,
            Arc::clone(&metrics),
        );
        let thread = thread::Builder::new()
            .name("keygate-monitor".into())
            .spawn(move || {
                runtime.block_on(follower.run());
            })
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

    /// Dispatches the alerts of every event written so far, then stops: within a
    /// deadline of a few seconds, the most severe first; those it could not deliver by
    /// then are logged and counted.
    pub fn stop(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        self.stop.send_replace(true);
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

/// Where the monitor delivers alerts, besides serve's log.
enum Outlet {
    /// The webhooks and mailboxes of the settings.
    Sinks {
        http: reqwest::Client,
        sinks: Vec<Sink>,
    },
    /// For tests: notes each alert once `took` has passed, in the monitor's time.
    #[cfg(test)]
    Recorder {
        took: Duration,
        delivered: Arc<std::sync::Mutex<Vec<Alert>>>,
    },
}

impl Outlet {
    async fn deliver(&self, alert: &Alert) -> Vec<Delivery> {
        match self {
            Outlet::Sinks { http, sinks } => deliver(http, sinks, alert).await,
            #[cfg(test)]
            Outlet::Recorder { took, delivered } => {
                tokio::time::sleep(*took).await;
                delivered
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .push(alert.clone());
                vec![Delivery {
                    destination: "recorder".into(),
                    result: Ok(()),
                }]
            }
        }
    }
}

/// What became of the alerts still to go when the monitor stopped.
#[derive(Debug, PartialEq, Eq)]
struct Drained {
    /// Delivered by the deadline.
    delivered: usize,
    /// Left undelivered at the deadline.
    undelivered: usize,
    /// Whether events were left unread at the deadline (the next start reads them).
    unread: bool,
}

/// The monitor thread's state.
struct Follower {
    raised: mpsc::Receiver<Alert>,
    metrics: Arc<Metrics>,
    store: Store,
    rules: Rules,
    cap: Cap,
    outlet: Outlet,
    cursor: u64,
    stop: watch::Receiver<bool>,
    /// When the monitor saw it was asked to stop.
    stop_seen: Option<Instant>,
    /// Once asked to stop, the alerts still to go: delivered the most severe first, by
    /// the deadline.
    outbox: Vec<Alert>,
}

impl Follower {
    fn new(
        store: Store,
        cursor: u64,
        rules: Rules,
        outlet: Outlet,
        raised: mpsc::Receiver<Alert>,
        stop: watch::Receiver<bool>,
        metrics: Arc<Metrics>,
    ) -> Follower {
        Follower {
            raised,
            metrics,
            store,
            rules,
            cap: Cap::default(),
            outlet,
            cursor,
            stop,
            stop_seen: None,
            outbox: Vec::new(),
        }
    }

    async fn run(mut self) -> Drained {
        loop {
            // Alerts raised outside the log go out between pages, not after a backlog of
            // them.
            loop {
                self.send_raised().await;
                if self.is_stopping() || !self.step().await {
                    break;
                }
            }
            if self.is_stopping() {
                return self.drain().await;
            }
            for summary in self.cap.turned(Instant::now()) {
                self.summarize(summary).await;
            }
            let mut stop = self.stop.clone();
            tokio::select! {
                () = tokio::time::sleep(POLL_INTERVAL) => {}
                _ = stop.wait_for(|stop| *stop) => {}
            }
        }
    }

    /// Whether the monitor was asked to stop (or its [`Monitor`] is gone); notes when it
    /// first saw so.
    fn is_stopping(&mut self) -> bool {
        let stopping = *self.stop.borrow() || self.stop.has_changed().is_err();
        if stopping && self.stop_seen.is_none() {
            self.stop_seen = Some(Instant::now());
        }
        stopping
    }

    /// Once asked to stop: reads what is left of the log, as far as the deadline allows,
    /// and delivers the alerts still to go, the most severe first, until the deadline.
    /// Says how many were left, in the log and in what it returns.
    async fn drain(&mut self) -> Drained {
        let seen = *self.stop_seen.get_or_insert_with(Instant::now);
        let deadline = seen + DRAIN_DEADLINE;
        // While stopping, what `send` would deliver joins the outbox.
        while Instant::now() < deadline {
            self.send_raised().await;
            if !self.step().await {
                break;
            }
        }
        self.send_raised().await;
        for summary in self.cap.release(Instant::now()) {
            self.summarize(summary).await;
        }
        let mut outbox = std::mem::take(&mut self.outbox);
        // Stable: alerts of one severity keep the order they came in.
        outbox.sort_by_key(|alert| Reverse(alert.severity));
        let mut delivered = 0;
        for alert in &outbox {
            match tokio::time::timeout_at(deadline, self.outlet.deliver(alert)).await {
                Ok(deliveries) => self.metrics.delivered(&deliveries),
                Err(_) => break,
            }
            delivered += 1;
        }
        let left = &outbox[delivered..];
        if !left.is_empty() {
            let count = |severity| left.iter().filter(|a| a.severity == severity).count();
            // Counts only: the alerts are in the log already, and a sink's URL may hold
            // its credential.
            tracing::error!(
                undelivered = left.len(),
                critical = count(Severity::Critical),
                warning = count(Severity::Warning),
                info = count(Severity::Info),
                "alerts not delivered within the {} s the monitor has to stop; serve's log \
                 has each, and `keygate alerts list` those from the audit log",
                DRAIN_DEADLINE.as_secs()
            );
        }
        let unread = keygate_audit::last_seq(&self.store).is_ok_and(|end| end > self.cursor);
        if unread {
            tracing::error!(
                cursor = self.cursor,
                "the monitor stopped before the end of the audit log; it reads the events \
                 after its place when serve starts again"
            );
        }
        Drained {
            delivered,
            undelivered: left.len(),
            unread,
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
                self.send(alert).await;
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
        self.send(alert).await;
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
        alerts.sort_by_key(|alert| Reverse(alert.severity));
        for alert in alerts {
            self.send(alert).await;
        }
    }

    /// Sends the alerts raised outside the log (by the gateway, by reconciliation).
    async fn send_raised(&mut self) {
        while let Ok(alert) = self.raised.try_recv() {
            self.send(alert).await;
        }
    }

    /// Logs `alert`, counts it, and delivers it unless the cap of its rule and severity
    /// holds it back.
    async fn send(&mut self, alert: Alert) {
        log(&alert);
        self.metrics.raised(&alert);
        let admitted = self.cap.admit(&alert, Instant::now());
        if let Some(summary) = admitted.summary {
            self.summarize(summary).await;
        }
        if admitted.send {
            self.deliver(alert).await;
        } else {
            self.metrics.held(&alert);
        }
    }

    /// Logs and delivers the summary of alerts the cap held back.
    async fn summarize(&mut self, summary: Alert) {
        log(&summary);
        self.deliver(summary).await;
    }

    /// Delivers `alert` to the sinks; once asked to stop, even in the middle of it, puts
    /// it in the outbox instead, to go with the rest the most severe first.
    async fn deliver(&mut self, alert: Alert) {
        if self.is_stopping() {
            self.outbox.push(alert);
            return;
        }
        let mut stop = self.stop.clone();
        let deliveries = tokio::select! {
            deliveries = self.outlet.deliver(&alert) => Some(deliveries),
            _ = stop.wait_for(|stop| *stop) => None,
        };
        match deliveries {
            Some(deliveries) => self.metrics.delivered(&deliveries),
            None => {
                self.is_stopping();
                self.outbox.push(alert);
            }
        }
    }

    fn advance(&mut self, seq: u64) {
        self.cursor = seq;
        if let Err(e) = self.store.set_meta(CURSOR_KEY, &seq.to_be_bytes()) {
            tracing::error!(error = %e, "the monitor cannot save its place in the log");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use keygate_audit::{AuditKey, AuditLog};
    use keygate_core::{ActionKind, AdminEvent, Event, EventBody, Outcome, RequestEvent, Rule};

    use super::*;

    fn replay_from(ts_ms: u64, source: String) -> Event {
        Event {
            ts_ms,
            body: EventBody::Request(RequestEvent {
                request_id: format!("r{ts_ms}"),
                exchange: "binance".into(),
                client: Some("bot1".into()),
                account: Some("main".into()),
                source_ip: source,
                method: "GET".into(),
                path: "/api/v3/account".into(),
                action: ActionKind::Read,
                symbol: None,
                side: None,
                client_order_id: None,
                notional: None,
                amount: None,
                asset: None,
                destination: None,
                allowed: false,
                rule: Some(Rule::Replay),
                message: None,
                upstream_status: None,
                latency_us: None,
                outcome: Outcome::NotForwarded,
            }),
        }
    }

    fn admin(ts_ms: u64, change: &str) -> Event {
        Event {
            ts_ms,
            body: EventBody::Admin(AdminEvent {
                actor: "cli".into(),
                change: change.into(),
                target: "clients".into(),
                detail: serde_json::Value::Null,
            }),
        }
    }

    /// A follower over a log holding `events`, from its start, whose deliveries each take
    /// `took`; what it delivered; and the handle that asks it to stop.
    struct Setup {
        follower: Follower,
        delivered: Arc<Mutex<Vec<Alert>>>,
        stop: watch::Sender<bool>,
        alerter: Alerter,
        metrics: Arc<Metrics>,
        _dir: tempfile::TempDir,
    }

    fn setup(events: Vec<Event>, took: Duration) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("keygate.db");
        Store::create(&db).unwrap();
        let log = AuditLog::start(&db, AuditKey::from_bytes(&[9; 32])).unwrap();
        for event in events {
            log.append_blocking(event).unwrap();
        }
        log.flush().unwrap();
        let delivered = Arc::new(Mutex::new(Vec::new()));
        let outlet = Outlet::Recorder {
            took,
            delivered: Arc::clone(&delivered),
        };
        let (stop, stopping) = watch::channel(false);
        let (alerter, raised) = Alerter::channel();
        let metrics = Arc::new(Metrics::after(0));
        let follower = Follower::new(
            Store::open(&db).unwrap(),
            0,
            Rules::new(Thresholds::default()),
            outlet,
            raised,
            stopping,
            Arc::clone(&metrics),
        );
        Setup {
            follower,
            delivered,
            stop,
            alerter,
            metrics,
            _dir: dir,
        }
    }

    /// A runtime whose time is paused: it moves on only while nothing else can happen, so
    /// deadlines and windows are checked exactly and at once.
    fn paused() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .unwrap()
    }

    fn taken(delivered: &Mutex<Vec<Alert>>) -> Vec<Alert> {
        delivered.lock().unwrap().clone()
    }

    fn count(alerts: &[Alert], severity: Severity, rule: AlertRule) -> usize {
        alerts
            .iter()
            .filter(|a| (a.severity, a.rule) == (severity, rule))
            .count()
    }

    /// A regression test: nothing capped the alerts of one rule, so a storm of them (here
    /// replays from 25 addresses) sent one each to every sink. Past the cap they are
    /// counted, and the summary goes out when the window turns, with no new alert of the
    /// rule needed; critical alerts, more than the cap of them, all go out.
    #[test]
    fn a_storm_of_one_rule_is_capped_and_summed_up_when_the_window_turns() {
        let mut events: Vec<Event> = (0..25)
            .map(|i| replay_from(1_000 + i, format!("10.0.0.{i}")))
            .collect();
        events.extend((0..12).map(|i| admin(2_000 + i, "vault.panic")));
        let Setup {
            follower,
            delivered,
            stop,
            metrics,
            _dir,
            ..
        } = setup(events, Duration::ZERO);
        let drained = paused().block_on(async {
            let watch = async {
                tokio::time::sleep(cap::CAP_WINDOW - Duration::from_secs(1)).await;
                let before = taken(&delivered);
                assert_eq!(
                    count(&before, Severity::Critical, AlertRule::AdminChange),
                    12
                );
                assert_eq!(
                    count(&before, Severity::Warning, AlertRule::Replay),
                    cap::CAP as usize
                );
                tokio::time::sleep(Duration::from_secs(2)).await;
                stop.send_replace(true);
            };
            tokio::join!(follower.run(), watch).0
        });
        let alerts = taken(&delivered);
        let replays: Vec<&Alert> = alerts
            .iter()
            .filter(|a| a.rule == AlertRule::Replay)
            .collect();
        assert_eq!(replays.len(), cap::CAP as usize + 1, "{replays:#?}");
        let summary = &replays[cap::CAP as usize].summary;
        assert!(
            summary.starts_with("15 replay alerts (warning) held back in 6"),
            "{summary}"
        );
        assert!(summary.contains("audit events 11 to 25"), "{summary}");
        // Stopping found nothing more to say.
        assert_eq!(
            drained,
            Drained {
                delivered: 0,
                undelivered: 0,
                unread: false
            }
        );
        let text = metrics.render();
        assert!(
            text.lines()
                .any(|l| l == "keygate_alerts_held_total{rule=\"replay\",severity=\"warning\"} 15"),
            "{text}"
        );
        assert!(text
            .lines()
            .any(|l| l == "keygate_alerts_total{rule=\"replay\",severity=\"warning\"} 25"));
    }

    /// A regression test: on stop, the monitor delivered every alert still to go, those
    /// raised outside the log first and then the log's, however long that took. Now it
    /// has a deadline, the most severe go first, and it says how many were left.
    #[test]
    fn on_stop_the_most_severe_go_first_until_the_deadline() {
        let mut events: Vec<Event> = (0..8).map(|i| admin(1_000 + i, "client.issue")).collect();
        events.extend((0..8).map(|i| replay_from(2_000 + i, format!("10.0.0.{i}"))));
        events.extend((0..3).map(|i| admin(3_000 + i, "vault.panic")));
        let Setup {
            follower,
            delivered,
            stop,
            alerter,
            _dir,
            ..
        } = setup(events, Duration::from_secs(1));
        for _ in 0..6 {
            let failed = "binance could not be asked".to_owned();
            alerter.raise(Alert::outside_log(
                Severity::Warning,
                AlertRule::ReconcileFailed,
                failed,
            ));
        }
        // Asked to stop before it read anything: it all goes out, or not, in the drain.
        stop.send_replace(true);
        let (drained, took) = paused().block_on(async {
            let started = Instant::now();
            let drained = follower.run().await;
            (drained, started.elapsed())
        });
        assert!(took <= DRAIN_DEADLINE, "{took:?}");
        let alerts = taken(&delivered);
        let severities: Vec<Severity> = alerts.iter().map(|a| a.severity).collect();
        assert_eq!(severities[..3], [Severity::Critical; 3], "{severities:?}");
        assert!(
            severities.windows(2).all(|w| w[0] >= w[1]),
            "{severities:?}"
        );
        assert_eq!(drained.delivered, alerts.len());
        assert!((4..=5).contains(&drained.delivered), "{drained:?}");
        assert_eq!(
            drained.delivered + drained.undelivered,
            6 + 19,
            "{drained:?}"
        );
        assert!(!drained.unread);
    }

    /// A regression test: a stop that came while a delivery hung waited for it, every
    /// attempt of it, and then for the rest.
    #[test]
    fn a_stop_in_the_middle_of_a_delivery_that_hangs_ends_by_the_deadline() {
        let Setup {
            follower,
            delivered,
            stop,
            _dir,
            ..
        } = setup(vec![admin(1_000, "vault.panic")], Duration::from_secs(3600));
        let (drained, took) = paused().block_on(async {
            let started = Instant::now();
            let stopper = async {
                tokio::time::sleep(Duration::from_secs(1)).await;
                stop.send_replace(true);
            };
            let drained = tokio::join!(follower.run(), stopper).0;
            (drained, started.elapsed())
        });
        assert!(took <= Duration::from_secs(1) + DRAIN_DEADLINE, "{took:?}");
        assert!(taken(&delivered).is_empty());
        assert_eq!(
            drained,
            Drained {
                delivered: 0,
                undelivered: 1,
                unread: false
            }
        );
    }
}
