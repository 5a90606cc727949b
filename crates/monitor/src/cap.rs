//! The cap on alerts sent: past [`CAP`] alerts of one rule and severity in a [`CAP_WINDOW`],
//! the rest are counted, not sent, and one summary says how many when the window turns.
//!
//! Quiet periods ([`crate::Thresholds::quiet_period`]) keep one client from raising the
//! same alert again and again; they cannot keep a storm of many clients or addresses (a
//! thousand sources denied in a minute) from raising one alert each. The cap does, by
//! rule and severity, so that the webhook a storm of warnings would flood still gets the
//! warning of another rule, and a storm of `admin_change` information (a script issuing
//! clients) does not use up the cap of an `admin_change` warning (a scope granted).
//! Critical alerts are never held back: a panic, a leaked key or a log that cannot be
//! read must reach someone whatever came before it. Nor are withdrawals and transfers
//! ([`AlertRule::Withdrawal`], [`AlertRule::Transfer`]): each one allowed moves money
//! out of keygate's reach, and a client that could fill the cap with withdrawals of
//! dust or transfers of nothing would have the one that mattered told only as a count
//! (found by review). The cap counts in the monitor's own
//! time, not the events', since it spares receivers, not readers of the log.

use std::cmp::Reverse;
use std::collections::HashMap;
use std::time::Duration;

use tokio::time::Instant;

use crate::{Alert, AlertRule, Severity};

/// Alerts of one rule and severity sent in a [`CAP_WINDOW`]; past it, they are counted.
pub(crate) const CAP: u32 = 10;
/// The window of [`CAP`]: it opens with an alert of its rule and severity, and turns this
/// long after.
pub(crate) const CAP_WINDOW: Duration = Duration::from_secs(60);

/// What the cap says of one alert.
#[derive(Debug)]
pub(crate) struct Admitted {
    /// Whether it is sent; otherwise it was counted.
    pub(crate) send: bool,
    /// The summary of the alerts of its rule and severity held back in the window that
    /// has just turned, if any were.
    pub(crate) summary: Option<Alert>,
}

/// The windows of each rule and severity that is not critical.
#[derive(Debug, Default)]
pub(crate) struct Cap {
    windows: HashMap<(AlertRule, Severity), Window>,
}

/// One rule and severity's alerts in the current window.
#[derive(Debug)]
struct Window {
    opened: Instant,
    sent: u32,
    held: u64,
    /// The first and last audit events of the alerts held back (0 for none: alerts
    /// raised outside the log have no event).
    first_seq: u64,
    last_seq: u64,
}

impl Cap {
    /// Whether `alert` is sent at `now`, or counted; with the summary of its rule and
    /// severity's previous window when that has turned holding alerts back.
    pub(crate) fn admit(&mut self, alert: &Alert, now: Instant) -> Admitted {
        // An operator's change that warns (a withdraw scope granted, requests sent to
        // another host, the log's checkpoints moved) is rare, made only with the vault
        // open, and ranked with withdrawals: never held back either (found by review: a
        // script issuing clients hid the eleventh such warning of a minute in a count).
        let operators_warning =
            alert.severity == Severity::Warning && alert.rule == AlertRule::AdminChange;
        if alert.severity == Severity::Critical || moves_money(alert.rule) || operators_warning {
            return Admitted {
                send: true,
                summary: None,
            };
        }
        let key = (alert.rule, alert.severity);
        let window = self.windows.entry(key).or_insert_with(|| Window::open(now));
        let mut summary = None;
        if window.has_turned(now) {
            summary = window.summary(key, now);
            *window = Window::open(now);
        }
        let send = window.sent < CAP;
        if send {
            window.sent += 1;
        } else {
            window.hold(alert.event_seq);
        }
        Admitted { send, summary }
    }

    /// The summaries of the windows that have turned by `now` holding alerts back, the
    /// most severe first; windows that have turned are forgotten.
    pub(crate) fn turned(&mut self, now: Instant) -> Vec<Alert> {
        let mut summaries = Vec::new();
        self.windows.retain(|key, window| {
            if !window.has_turned(now) {
                return true;
            }
            summaries.extend(window.summary(*key, now));
            false
        });
        sorted(summaries)
    }

    /// The summaries of every window holding alerts back, turned or not, the most severe
    /// first: for when the monitor stops.
    pub(crate) fn release(&mut self, now: Instant) -> Vec<Alert> {
        let summaries = self
            .windows
            .drain()
            .filter_map(|(key, window)| window.summary(key, now))
            .collect();
        sorted(summaries)
    }
}

impl Window {
    fn open(now: Instant) -> Window {
        Window {
            opened: now,
            sent: 0,
            held: 0,
            first_seq: 0,
            last_seq: 0,
        }
    }

    fn has_turned(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.opened) >= CAP_WINDOW
    }

    fn hold(&mut self, seq: u64) {
        self.held += 1;
        if seq != 0 {
            if self.first_seq == 0 {
                self.first_seq = seq;
            }
            self.last_seq = self.last_seq.max(seq);
        }
    }

    /// One alert of the rule and severity that says how many were held back, and nothing
    /// of what they were about: the rule is all a receiver needs to know where to look.
    fn summary(&self, (rule, severity): (AlertRule, Severity), now: Instant) -> Option<Alert> {
        if self.held == 0 {
            return None;
        }
        let events = match (self.first_seq, self.last_seq) {
            (0, _) => String::new(),
            (first, last) if first == last => format!(", audit event {first}"),
            (first, last) => format!(", audit events {first} to {last}"),
        };
        let summary = format!(
            "{} {} alerts ({}) held back in {} s, past the cap of {CAP} of one rule and \
             severity every {} s{events}: serve's log has each",
            self.held,
            rule.as_str(),
            severity.as_str(),
            now.saturating_duration_since(self.opened).as_secs(),
            CAP_WINDOW.as_secs(),
        );
        Some(Alert::outside_log(severity, rule, summary))
    }
}

/// Whether alerts of `rule` are about money moved: never held back.
fn moves_money(rule: AlertRule) -> bool {
    matches!(rule, AlertRule::Withdrawal | AlertRule::Transfer)
}

/// The most severe first, then by rule, so that summaries come out in a stable order.
fn sorted(mut summaries: Vec<Alert>) -> Vec<Alert> {
    summaries.sort_by_key(|alert| (Reverse(alert.severity), alert.rule.as_str()));
    summaries
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert(severity: Severity, rule: AlertRule, event_seq: u64) -> Alert {
        Alert {
            event_seq,
            ..Alert::outside_log(severity, rule, "x".into())
        }
    }

    fn sent(cap: &mut Cap, alert: &Alert, now: Instant, n: u64) -> usize {
        (0..n).filter(|_| cap.admit(alert, now).send).count()
    }

    /// A regression test: a client with the withdraw scope sent ten withdrawals of dust,
    /// then a large one, whose alert was held back and told as a count.
    #[test]
    fn withdrawals_and_transfers_are_never_held_back() {
        let mut cap = Cap::default();
        let t0 = Instant::now();
        for rule in [AlertRule::Withdrawal, AlertRule::Transfer] {
            let allowed = alert(Severity::Warning, rule, 7);
            assert_eq!(sent(&mut cap, &allowed, t0, 100), 100);
        }
        assert!(cap.release(t0 + CAP_WINDOW).is_empty());
    }

    /// Found by review: the lanes rank an operator's warning with withdrawals, but the
    /// cap held back the eleventh of a minute (a script issuing clients with the withdraw
    /// scope hid an `account.add --upstream` in a count). Its information is capped.
    #[test]
    fn an_operators_warnings_are_never_held_back() {
        let mut cap = Cap::default();
        let t0 = Instant::now();
        let warning = alert(Severity::Warning, AlertRule::AdminChange, 7);
        assert_eq!(sent(&mut cap, &warning, t0, 100), 100);
        let info = alert(Severity::Info, AlertRule::AdminChange, 8);
        assert_eq!(sent(&mut cap, &info, t0, 100), CAP as usize);
    }

    #[test]
    fn past_the_cap_alerts_are_counted_by_rule_and_severity_and_critical_ones_never() {
        let mut cap = Cap::default();
        let t0 = Instant::now();
        let info = alert(Severity::Info, AlertRule::AdminChange, 7);
        let warning = alert(Severity::Warning, AlertRule::AdminChange, 8);
        let replay = alert(Severity::Warning, AlertRule::Replay, 9);
        let panic = alert(Severity::Critical, AlertRule::AdminChange, 10);
        assert_eq!(sent(&mut cap, &info, t0, 500), CAP as usize);
        // Another severity of the rule, and another rule, have caps of their own.
        assert_eq!(sent(&mut cap, &warning, t0, 3), 3);
        assert_eq!(sent(&mut cap, &replay, t0, 50), CAP as usize);
        assert_eq!(sent(&mut cap, &panic, t0, 500), 500);
        assert!(cap
            .turned(t0 + CAP_WINDOW - Duration::from_millis(1))
            .is_empty());
        let summaries = cap.turned(t0 + CAP_WINDOW + Duration::from_secs(2));
        let texts: Vec<(Severity, AlertRule, &str)> = summaries
            .iter()
            .map(|a| (a.severity, a.rule, a.summary.as_str()))
            .collect();
        assert_eq!(
            texts,
            [
                (
                    Severity::Warning,
                    AlertRule::Replay,
                    "40 replay alerts (warning) held back in 62 s, past the cap of 10 of one \
                     rule and severity every 60 s, audit event 9: serve's log has each"
                ),
                (
                    Severity::Info,
                    AlertRule::AdminChange,
                    "490 admin_change alerts (info) held back in 62 s, past the cap of 10 of \
                     one rule and severity every 60 s, audit event 7: serve's log has each"
                ),
            ]
        );
        assert!(summaries
            .iter()
            .all(|s| s.event_seq == 0 && s.client.is_none()));
        // The windows that turned start afresh.
        assert_eq!(sent(&mut cap, &info, t0 + CAP_WINDOW * 2, 20), CAP as usize);
    }

    #[test]
    fn an_alert_after_the_window_turned_brings_its_summary() {
        let mut cap = Cap::default();
        let t0 = Instant::now();
        for seq in 1..=15 {
            let admitted = cap.admit(&alert(Severity::Warning, AlertRule::NewSource, seq), t0);
            assert!(admitted.summary.is_none());
        }
        let later = cap.admit(
            &alert(Severity::Warning, AlertRule::NewSource, 99),
            t0 + CAP_WINDOW,
        );
        assert!(later.send);
        let summary = later.summary.expect("no summary");
        assert!(
            summary
                .summary
                .starts_with("5 new_source alerts (warning) held back in 60 s"),
            "{}",
            summary.summary
        );
        assert!(summary.summary.contains("audit events 11 to 15"));
        // Nothing is held back in the new window: nothing to say when the monitor stops.
        assert!(cap.release(t0 + CAP_WINDOW).is_empty());
    }

    #[test]
    fn on_release_a_window_that_has_not_turned_is_summed_up_too() {
        let mut cap = Cap::default();
        let t0 = Instant::now();
        let raised = alert(Severity::Warning, AlertRule::ReconcileFailed, 0);
        assert_eq!(sent(&mut cap, &raised, t0, 12), CAP as usize);
        let released = cap.release(t0 + Duration::from_secs(3));
        assert_eq!(released.len(), 1);
        assert_eq!(
            released[0].summary,
            "2 reconcile_failed alerts (warning) held back in 3 s, past the cap of 10 of one \
             rule and severity every 60 s: serve's log has each"
        );
        assert!(cap.release(t0 + Duration::from_secs(4)).is_empty());
    }
}
