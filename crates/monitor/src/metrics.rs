//! Prometheus metrics, counted from the audit events the monitor reads: nothing on the
//! request path counts anything twice.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;

use keygate_core::{Event, EventBody, Outcome};

use crate::{Alert, Delivery};

/// Upper bounds, in seconds, of the latency histogram's buckets.
const LATENCY_BUCKETS: [f64; 10] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 10.0,
];

/// Counters since the monitor started, rendered in Prometheus's text format by
/// [`Metrics::render`]. Labels hold client names, actions, rules and sink hosts, never a
/// key or a secret.
#[derive(Debug, Default)]
pub struct Metrics {
    inner: Mutex<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    /// (client, action, decision, rule) → requests.
    requests: BTreeMap<(String, &'static str, &'static str, &'static str), u64>,
    /// Requests forwarded whose outcome is unknown.
    outcome_unknown: u64,
    /// Background events counted instead of kept by the audit writer.
    lost_events: u64,
    /// Latencies of answered requests: a count per bucket (the last is +Inf), sum, count.
    latency_buckets: [u64; LATENCY_BUCKETS.len() + 1],
    latency_sum_s: f64,
    latency_count: u64,
    /// change → operator changes.
    admin_changes: BTreeMap<String, u64>,
    /// (rule, severity) → alerts raised.
    alerts: BTreeMap<(&'static str, &'static str), u64>,
    /// (rule, severity) → alerts past the cap of their rule and severity, not sent.
    held: BTreeMap<(&'static str, &'static str), u64>,
    /// sink → deliveries that failed after every attempt.
    failed_deliveries: BTreeMap<String, u64>,
    /// The last audit event read.
    last_seq: u64,
    /// Why the monitor cannot read the audit log, once it has failed for a while.
    unreadable: Option<String>,
}

impl Metrics {
    /// Metrics that begin after audit event `seq`, where the monitor starts reading.
    pub(crate) fn after(seq: u64) -> Metrics {
        let metrics = Metrics::default();
        metrics.lock().last_seq = seq;
        metrics
    }

    /// Counts one audit event.
    pub(crate) fn event(&self, seq: u64, event: &Event) {
        let mut c = self.lock();
        c.last_seq = c.last_seq.max(seq);
        let (latency_us, outcome) = match &event.body {
            EventBody::Request(r) => {
                let decision = if r.allowed { "allowed" } else { "denied" };
                let key = (
                    r.client.clone().unwrap_or_default(),
                    r.action.as_str(),
                    decision,
                    r.rule.map_or("", |rule| rule.as_str()),
                );
                *c.requests.entry(key).or_default() += 1;
                (r.latency_us, r.outcome)
            }
            EventBody::Outcome(o) => (Some(o.latency_us), o.outcome),
            EventBody::Admin(a) => {
                *c.admin_changes.entry(a.change.clone()).or_default() += 1;
                return;
            }
            EventBody::Lost(lost) => {
                c.lost_events += lost.count;
                return;
            }
        };
        match outcome {
            Outcome::Unknown => c.outcome_unknown += 1,
            Outcome::Answered => {
                if let Some(us) = latency_us {
                    let seconds = us as f64 / 1e6;
                    let bucket = LATENCY_BUCKETS
                        .iter()
                        .position(|le| seconds <= *le)
                        .unwrap_or(LATENCY_BUCKETS.len());
                    c.latency_buckets[bucket] += 1;
                    c.latency_sum_s += seconds;
                    c.latency_count += 1;
                }
            }
            _ => {}
        }
    }

    /// Counts an alert raised.
    pub(crate) fn raised(&self, alert: &Alert) {
        *self
            .lock()
            .alerts
            .entry((alert.rule.as_str(), alert.severity.as_str()))
            .or_default() += 1;
    }

    /// Counts an alert held back by the cap of its rule and severity.
    pub(crate) fn held(&self, alert: &Alert) {
        *self
            .lock()
            .held
            .entry((alert.rule.as_str(), alert.severity.as_str()))
            .or_default() += 1;
    }

    /// Counts the deliveries of an alert that failed.
    pub(crate) fn delivered(&self, deliveries: &[Delivery]) {
        let mut c = self.lock();
        for failed in deliveries.iter().filter(|d| d.result.is_err()) {
            *c.failed_deliveries
                .entry(failed.destination.clone())
                .or_default() += 1;
        }
    }

    /// Counts an alert that was not delivered to `destination` without being tried (too
    /// many waited for it), as a failed delivery.
    pub(crate) fn not_delivered(&self, destination: String) {
        *self
            .lock()
            .failed_deliveries
            .entry(destination)
            .or_default() += 1;
    }

    /// The last audit event counted.
    pub fn last_seq(&self) -> u64 {
        self.lock().last_seq
    }

    /// Why the monitor cannot read the audit log, when it has failed to for
    /// [`READ_FAILURE_GRACE`](crate::READ_FAILURE_GRACE) running: no alert is raised
    /// from the log meanwhile.
    pub fn log_unreadable(&self) -> Option<String> {
        self.lock().unreadable.clone()
    }

    pub(crate) fn set_log_unreadable(&self, reason: Option<String>) {
        self.lock().unreadable = reason;
    }

    /// Everything, in Prometheus's text exposition format (version 0.0.4).
    pub fn render(&self) -> String {
        let c = self.lock();
        let mut out = String::new();
        family(
            &mut out,
            "keygate_requests_total",
            "counter",
            "Requests decided, by client (empty for an unknown key), action, decision and the rule that denied them.",
        );
        for ((client, action, decision, rule), n) in &c.requests {
            let labels = [
                ("client", client.as_str()),
                ("action", action),
                ("decision", decision),
                ("rule", rule),
            ];
            sample(&mut out, "keygate_requests_total", &labels, *n);
        }
        family(
            &mut out,
            "keygate_outcome_unknown_total",
            "counter",
            "Requests sent to the exchange that got no answer: they may have executed.",
        );
        sample(
            &mut out,
            "keygate_outcome_unknown_total",
            &[],
            c.outcome_unknown,
        );
        family(
            &mut out,
            "keygate_audit_lost_events_total",
            "counter",
            "Background events (reads, denials) the audit writer counted instead of keeping.",
        );
        sample(
            &mut out,
            "keygate_audit_lost_events_total",
            &[],
            c.lost_events,
        );
        family(
            &mut out,
            "keygate_request_seconds",
            "histogram",
            "Time from a request's arrival to the exchange's answer, for answered requests.",
        );
        let mut cumulative = 0;
        for (i, n) in c.latency_buckets.iter().enumerate() {
            cumulative += n;
            let le = LATENCY_BUCKETS
                .get(i)
                .map_or_else(|| "+Inf".to_owned(), |le| le.to_string());
            sample(
                &mut out,
                "keygate_request_seconds_bucket",
                &[("le", &le)],
                cumulative,
            );
        }
        let _ = writeln!(out, "keygate_request_seconds_sum {}", c.latency_sum_s);
        sample(
            &mut out,
            "keygate_request_seconds_count",
            &[],
            c.latency_count,
        );
        family(
            &mut out,
            "keygate_admin_changes_total",
            "counter",
            "Operator changes, by change (client.revoke, vault.panic, ...).",
        );
        for (change, n) in &c.admin_changes {
            sample(
                &mut out,
                "keygate_admin_changes_total",
                &[("change", change)],
                *n,
            );
        }
        family(
            &mut out,
            "keygate_alerts_total",
            "counter",
            "Alerts raised, by rule and severity.",
        );
        for ((rule, severity), n) in &c.alerts {
            let labels = [("rule", *rule), ("severity", *severity)];
            sample(&mut out, "keygate_alerts_total", &labels, *n);
        }
        family(
            &mut out,
            "keygate_alerts_held_total",
            "counter",
            "Alerts past the cap of their rule and severity: counted, logged, not sent.",
        );
        for ((rule, severity), n) in &c.held {
            let labels = [("rule", *rule), ("severity", *severity)];
            sample(&mut out, "keygate_alerts_held_total", &labels, *n);
        }
        family(
            &mut out,
            "keygate_alert_delivery_failures_total",
            "counter",
            "Tries at an alert a sink did not take (each of its attempts failed), and alerts dropped for it unsent, by sink (its host only).",
        );
        for (sink, n) in &c.failed_deliveries {
            sample(
                &mut out,
                "keygate_alert_delivery_failures_total",
                &[("sink", sink)],
                *n,
            );
        }
        family(
            &mut out,
            "keygate_audit_last_seq",
            "gauge",
            "The last audit event the monitor has read.",
        );
        sample(&mut out, "keygate_audit_last_seq", &[], c.last_seq);
        out
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Counts> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Appends a gauge family whose samples differ by the values of `labels` to `out`, in
/// the text format: for figures that are not counted from the audit log (the exchanges'
/// request weight, say).
pub fn write_gauge<const N: usize>(
    out: &mut String,
    name: &str,
    help: &str,
    labels: [&str; N],
    samples: &[([String; N], u64)],
) {
    family(out, name, "gauge", help);
    for (values, n) in samples {
        let pairs: Vec<(&str, &str)> = labels
            .iter()
            .zip(values)
            .map(|(label, value)| (*label, value.as_str()))
            .collect();
        sample(out, name, &pairs, *n);
    }
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn sample(out: &mut String, name: &str, labels: &[(&str, &str)], value: u64) {
    out.push_str(name);
    if !labels.is_empty() {
        out.push('{');
        for (i, (label, value)) in labels.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let _ = write!(out, "{label}=\"{}\"", escape(value));
        }
        out.push('}');
    }
    let _ = writeln!(out, " {value}");
}

/// A label value as the text format wants it: backslash, quote and line feed escaped.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use keygate_core::{ActionKind, AdminEvent, OutcomeEvent, RequestEvent, Rule};

    fn request(client: &str, allowed: bool, latency_us: u64) -> Event {
        Event {
            ts_ms: 1,
            body: EventBody::Request(RequestEvent {
                request_id: "r".into(),
                exchange: "binance".into(),
                client: Some(client.into()),
                key_of: None,
                account: None,
                source_ip: "127.0.0.1".into(),
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
                network: None,
                allowed,
                rule: (!allowed).then_some(Rule::Symbol),
                message: None,
                upstream_status: allowed.then_some(200),
                latency_us: Some(latency_us),
                outcome: if allowed {
                    Outcome::Answered
                } else {
                    Outcome::NotForwarded
                },
                validates_only: false,
                previous_key: false,
                forwarded_by: None,
                places_no_order: false,
                orders: Vec::new(),
                terms: None,
            }),
        }
    }

    #[test]
    fn events_become_counters_a_histogram_and_escaped_labels() {
        let metrics = Metrics::default();
        metrics.event(1, &request("bot1", true, 2_000));
        metrics.event(2, &request("bot1", true, 30_000));
        metrics.event(3, &request("bot1", false, 10));
        metrics.event(4, &request("we\"ird\\", true, 20_000_000));
        metrics.event(
            5,
            &Event {
                ts_ms: 1,
                body: EventBody::Outcome(OutcomeEvent {
                    request_id: "r".into(),
                    client: Some("bot1".into()),
                    upstream_status: None,
                    latency_us: 10_000_000,
                    outcome: Outcome::Unknown,
                    order_ids: Vec::new(),
                    interrupted: false,
                }),
            },
        );
        metrics.event(
            6,
            &Event {
                ts_ms: 1,
                body: EventBody::Admin(AdminEvent {
                    actor: "cli".into(),
                    change: "client.revoke".into(),
                    target: "bot1".into(),
                    detail: serde_json::Value::Null,
                }),
            },
        );
        let text = metrics.render();
        for line in [
            "keygate_requests_total{client=\"bot1\",action=\"read\",decision=\"allowed\",rule=\"\"} 2",
            "keygate_requests_total{client=\"bot1\",action=\"read\",decision=\"denied\",rule=\"symbol\"} 1",
            "keygate_requests_total{client=\"we\\\"ird\\\\\",action=\"read\",decision=\"allowed\",rule=\"\"} 1",
            "keygate_outcome_unknown_total 1",
            "keygate_request_seconds_bucket{le=\"0.0025\"} 1",
            "keygate_request_seconds_bucket{le=\"0.05\"} 2",
            "keygate_request_seconds_bucket{le=\"10\"} 2",
            "keygate_request_seconds_bucket{le=\"+Inf\"} 3",
            "keygate_request_seconds_count 3",
            "keygate_admin_changes_total{change=\"client.revoke\"} 1",
            "keygate_audit_last_seq 6",
            "# TYPE keygate_request_seconds histogram",
        ] {
            assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
        }
    }
}
