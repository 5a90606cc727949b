//! `keygate incident report`: what happened in a window of the audit log, in the order an
//! incident responder asks about it.

use std::collections::{BTreeMap, HashMap};

use anyhow::Context;
use clap::Args;
use keygate_audit::Filter;
use keygate_core::{ActionKind, Event, EventBody, Outcome, RequestEvent};
use keygate_monitor::{Rules, Severity};
use serde::Serialize;

use crate::audit_cmd::{
    check_client_exists, exit_code_showing, for_each_event, human_line, log_problem, window,
};
use crate::home::{now_ms, Unlocked};
use crate::output::{print_json, rfc3339};

/// `keygate incident`
#[derive(clap::Subcommand, Debug)]
pub enum IncidentCmd {
    /// What happened in a window of the audit log: administrative changes, denials by
    /// client and rule, the alerts the window raises, withdrawals and transfers, requests
    /// whose outcome is unknown, and the source addresses seen. Exit 1 if the log does not
    /// verify (the report still comes, from what it holds).
    Report(ReportArgs),
}

/// `incident report`
#[derive(Args, Debug)]
pub struct ReportArgs {
    /// The window's start: a duration ago (`1h`, `7d`) or an RFC 3339 UTC time
    /// (`2026-12-06T13:00:00Z`).
    #[arg(long, value_name = "WHEN", default_value = "24h")]
    pub since: String,
    /// The window's end (events before it): a duration ago or an RFC 3339 UTC time; none
    /// for the end of the log. With two RFC 3339 times, the same report whenever it is
    /// run.
    #[arg(long, value_name = "WHEN")]
    pub until: Option<String>,
    /// Only events about this client.
    #[arg(long)]
    pub client: Option<String>,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// The report, as `--json` prints it.
#[derive(Serialize, Default)]
struct Report {
    since: String,
    /// The window's end, when it has one before the end of the log.
    #[serde(skip_serializing_if = "Option::is_none")]
    until: Option<String>,
    /// Whether the whole log verified, and if not, why.
    log_verified: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    log_problem: Option<String>,
    events: u64,
    allowed: u64,
    denied: u64,
    /// Background events (reads, denials) the audit writer counted instead of keeping.
    lost: u64,
    /// Every administrative change, as an audit line.
    admin_changes: Vec<String>,
    /// Denied requests by client and rule.
    denials: BTreeMap<String, BTreeMap<String, u64>>,
    /// Every withdrawal and transfer, allowed or not; one forwarded, with its outcome
    /// when the log has it (`request … pending → outcome … answered status=200`).
    money_out: Vec<String>,
    /// Of `money_out`, the entries forwarded whose outcome has not come yet, by request id.
    #[serde(skip)]
    money_out_pending: HashMap<String, usize>,
    /// Requests the exchange may have executed without keygate knowing the result.
    outcome_unknown: Vec<String>,
    /// Requests by source address, for the first [`MAX_SOURCES`] addresses seen.
    sources: BTreeMap<String, u64>,
    /// Requests from addresses past those: a flood from many addresses (rotating IPv6
    /// ones) must not make the report itself too large to make.
    #[serde(skip_serializing_if = "is_zero")]
    other_sources: u64,
    /// The warnings and critical alerts the window's events raise, as `keygate alerts
    /// list` shows them: the first [`MAX_ALERTS`].
    alerts: Vec<String>,
    /// How many more there were.
    #[serde(skip_serializing_if = "is_zero")]
    more_alerts: u64,
}

/// The most source addresses the report counts requests of one by one.
const MAX_SOURCES: usize = 1000;
/// The most alerts the report lists.
const MAX_ALERTS: usize = 10_000;

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Builds the report of the window and prints it; the exit code: 1 when the audit log
/// does not verify (the report still comes, built from what the log holds, the warning
/// on top of it and on standard error), as `audit verify` exits.
pub fn run(vault: &Unlocked, args: &ReportArgs) -> anyhow::Result<i32> {
    let (since_ms, until_ms) = window(Some(&args.since), args.until.as_deref(), now_ms())?;
    // `window` gives a start for the start given.
    let since_ms = since_ms.unwrap_or_default();
    if let Some(client) = &args.client {
        check_client_exists(&vault.store, client)?;
    }
    let mut report = Report {
        since: rfc3339(since_ms),
        until: until_ms.map(rfc3339),
        ..Report::default()
    };
    report.log_problem = log_problem(vault);
    report.log_verified = report.log_problem.is_none();
    let filter = Filter {
        client: args.client.clone(),
        since_ms: Some(since_ms),
        until_ms,
        allowed: None,
    };
    // Requests written before forwarding whose outcome event has not come (yet).
    let mut pending: HashMap<String, String> = HashMap::new();
    // Thresholds that do not parse are `doctor`'s and `serve`'s to report; the report
    // still comes, with the default ones.
    let lists = keygate_monitor::symbol_lists(&vault.store).context("reading clients")?;
    let mut rules = Rules::new(crate::alerts::thresholds(&vault.home).unwrap_or_default())
        .with_symbol_lists(lists);
    for_each_event(&vault.store, &filter, |page| {
        for (seq, event) in page {
            report.add(*seq, event, &mut pending);
            let raised = rules.evaluate(*seq, event);
            for a in raised.iter().filter(|a| a.severity >= Severity::Warning) {
                if report.alerts.len() >= MAX_ALERTS {
                    report.more_alerts += 1;
                    continue;
                }
                report.alerts.push(format!(
                    "#{} {} {} {}: {}",
                    a.event_seq,
                    rfc3339(a.ts_ms),
                    a.severity.as_str(),
                    a.rule.as_str(),
                    a.summary
                ));
            }
        }
        Ok(())
    })?;
    report.no_outcome_recorded(pending);
    if args.json {
        print_json(&report)?;
    } else {
        report.print();
    }
    Ok(exit_code_showing(
        report.log_problem.as_deref(),
        "this report is built from",
    ))
}

impl Report {
    fn add(&mut self, seq: u64, event: &Event, pending: &mut HashMap<String, String>) {
        self.events += 1;
        let line = || human_line(seq, event);
        match &event.body {
            EventBody::Admin(_) => self.admin_changes.push(line()),
            EventBody::Lost(lost) => self.lost += lost.count,
            // Refused after its pending event was written (a freeze, its window run out,
            // the exchange asking to back off while it waited): it never reached the
            // exchange. The same request, settled, not a second one.
            EventBody::Request(r) if !r.allowed && pending.contains_key(&r.request_id) => {
                pending.remove(&r.request_id);
                if let Some(i) = self.money_out_pending.remove(&r.request_id) {
                    let requested = &mut self.money_out[i];
                    *requested = format!("{requested} → {}", line());
                }
                // Counted as allowed when it was pending (a log that does not verify,
                // which a report still reads, may say otherwise: no wrap-around).
                self.allowed = self.allowed.saturating_sub(1);
                self.count_denial(r);
            }
            EventBody::Request(r) => {
                let room = self.sources.len() < MAX_SOURCES;
                match self.sources.get_mut(&r.source_ip) {
                    Some(n) => *n += 1,
                    None if room => {
                        self.sources.insert(r.source_ip.clone(), 1);
                    }
                    None => self.other_sources += 1,
                }
                if r.allowed {
                    self.allowed += 1;
                } else {
                    self.count_denial(r);
                }
                if matches!(r.action, ActionKind::Withdraw | ActionKind::Transfer) {
                    // Written before it was forwarded: what came of it is in the outcome
                    // event that follows, if any.
                    if r.outcome == Outcome::Pending {
                        self.money_out_pending
                            .insert(r.request_id.clone(), self.money_out.len());
                    }
                    self.money_out.push(line());
                }
                match r.outcome {
                    Outcome::Pending => {
                        pending.insert(r.request_id.clone(), line());
                    }
                    Outcome::Unknown => self.outcome_unknown.push(line()),
                    _ => {}
                }
            }
            EventBody::Outcome(o) => {
                if let Some(i) = self.money_out_pending.remove(&o.request_id) {
                    let requested = &mut self.money_out[i];
                    *requested = format!("{requested} → {}", line());
                }
                let requested = pending.remove(&o.request_id);
                if o.outcome == Outcome::Unknown {
                    let requested =
                        requested.unwrap_or_else(|| format!("request {}", o.request_id));
                    self.outcome_unknown
                        .push(format!("{requested} → {}", line()));
                }
            }
        }
    }

    fn count_denial(&mut self, r: &RequestEvent) {
        self.denied += 1;
        let rule = r.rule.map_or("denied", |rule| rule.as_str());
        let client = match (&r.client, &r.key_of) {
            (Some(client), _) => client.clone(),
            // Its key, not its own request (the signature did not verify).
            (None, Some(holder)) => format!("(key of {holder})"),
            (None, None) => "(no client)".into(),
        };
        *self
            .denials
            .entry(client)
            .or_default()
            .entry(rule.to_owned())
            .or_default() += 1;
    }

    /// Says of each request still `pending` at the end of the window (`pending`, by
    /// request id) that its outcome was never recorded, among the withdrawals and
    /// transfers too.
    fn no_outcome_recorded(&mut self, pending: HashMap<String, String>) {
        const NO_OUTCOME: &str = "(no outcome recorded: keygate stopped, or it is still in flight)";
        for i in std::mem::take(&mut self.money_out_pending).into_values() {
            let requested = &mut self.money_out[i];
            *requested = format!("{requested} {NO_OUTCOME}");
        }
        self.outcome_unknown.extend(
            pending
                .into_values()
                .map(|line| format!("{line} {NO_OUTCOME}")),
        );
    }

    fn print(&self) {
        match &self.until {
            None => println!("incident report: events since {}", self.since),
            Some(until) => println!(
                "incident report: events from {} until (before) {until}",
                self.since
            ),
        }
        match &self.log_problem {
            None => println!("audit log: verified"),
            Some(problem) => {
                println!("audit log: DOES NOT VERIFY ({problem}); read what follows with care")
            }
        }
        println!(
            "{} event(s); requests: {} allowed, {} denied",
            self.events, self.allowed, self.denied
        );
        if self.lost > 0 {
            println!(
                "{} more request(s) not recorded: the audit writer fell behind or could not \
                 write them, and counted them instead (see alerts)",
                self.lost
            );
        }
        section("administrative changes", &self.admin_changes);
        println!("\ndenied requests, by client and rule:");
        if self.denials.is_empty() {
            println!("  none");
        }
        for (client, rules) in &self.denials {
            let rules: Vec<String> = rules.iter().map(|(r, n)| format!("{r} {n}")).collect();
            println!("  {client}: {}", rules.join(", "));
        }
        section("alerts (warnings and critical)", &self.alerts);
        if self.more_alerts > 0 {
            println!("  … and {} more", self.more_alerts);
        }
        section("withdrawals and transfers", &self.money_out);
        section(
            "outcome unknown (may have executed: check at the exchange)",
            &self.outcome_unknown,
        );
        println!("\nrequests by source address:");
        for (source, n) in &self.sources {
            println!("  {source}: {n}");
        }
        if self.other_sources > 0 {
            println!(
                "  {} more from other addresses (past the first {MAX_SOURCES})",
                self.other_sources
            );
        }
    }
}

fn section(title: &str, lines: &[String]) {
    println!("\n{title}:");
    if lines.is_empty() {
        println!("  none");
    }
    for line in lines {
        println!("  {line}");
    }
}

#[cfg(test)]
mod tests {
    use keygate_core::{OutcomeEvent, Rule};

    use super::*;

    /// A withdrawal of bot1's, written before it was forwarded.
    fn withdrawal(request_id: &str, ts_ms: u64) -> Event {
        Event {
            ts_ms,
            body: EventBody::Request(RequestEvent {
                request_id: request_id.into(),
                exchange: "binance".into(),
                client: Some("bot1".into()),
                key_of: None,
                account: Some("main".into()),
                source_ip: "127.0.0.1".into(),
                method: "POST".into(),
                path: "/sapi/v1/capital/withdraw/apply".into(),
                action: ActionKind::Withdraw,
                symbol: None,
                side: None,
                client_order_id: None,
                notional: None,
                amount: Some(5.into()),
                asset: Some("USDT".into()),
                destination: Some("TColdWallet1".into()),
                network: Some("TRX".into()),
                allowed: true,
                rule: None,
                message: None,
                upstream_status: None,
                latency_us: None,
                outcome: Outcome::Pending,
                validates_only: false,
                previous_key: false,
                orders: Vec::new(),
                terms: None,
            }),
        }
    }

    /// A regression test: a withdrawal keygate forwarded was listed as `pending` among
    /// the withdrawals and transfers though its outcome event (the exchange answered
    /// 200) was in the log. It is shown with its outcome; one whose outcome never came
    /// says so.
    #[test]
    fn a_forwarded_withdrawal_is_shown_with_its_outcome() {
        let mut report = Report::default();
        let mut pending = HashMap::new();
        report.add(1, &withdrawal("w-1", 1_000), &mut pending);
        report.add(2, &withdrawal("w-2", 2_000), &mut pending);
        let answered = Event {
            ts_ms: 3_000,
            body: EventBody::Outcome(OutcomeEvent {
                request_id: "w-1".into(),
                client: Some("bot1".into()),
                upstream_status: Some(200),
                latency_us: 1500,
                outcome: Outcome::Answered,
                order_ids: Vec::new(),
                interrupted: false,
            }),
        };
        report.add(3, &answered, &mut pending);
        report.no_outcome_recorded(pending);
        assert_eq!(report.money_out.len(), 2, "{:?}", report.money_out);
        let (first, second) = (&report.money_out[0], &report.money_out[1]);
        assert!(
            first.starts_with("#1 ")
                && first.ends_with("→ #3 1970-01-01T00:00:03.000Z outcome bot1 request=w-1 answered status=200 latency=1500us"),
            "{first}"
        );
        assert!(
            second.starts_with("#2 ")
                && second.ends_with(
                    "pending (no outcome recorded: keygate stopped, or it is still in flight)"
                ),
            "{second}"
        );
        assert_eq!(
            report.outcome_unknown.len(),
            1,
            "{:?}",
            report.outcome_unknown
        );
        assert!(report.outcome_unknown[0].starts_with("#2 "));
    }

    /// A regression test (found by review): a withdrawal refused after its pending event
    /// was written (`keygate panic` while it waited) was listed as pending, "may have
    /// executed", twice among the withdrawals, and counted as allowed and denied. It is
    /// one request, denied, never forwarded.
    #[test]
    fn a_request_stopped_after_its_pending_event_is_one_denial() {
        let mut report = Report::default();
        let mut pending = HashMap::new();
        report.add(1, &withdrawal("w-1", 1_000), &mut pending);
        let mut stopped = withdrawal("w-1", 1_200);
        if let EventBody::Request(r) = &mut stopped.body {
            r.allowed = false;
            r.rule = Some(Rule::PolicyChanged);
            r.outcome = Outcome::NotForwarded;
        }
        report.add(2, &stopped, &mut pending);
        report.no_outcome_recorded(pending);
        assert!(
            report.outcome_unknown.is_empty(),
            "{:?}",
            report.outcome_unknown
        );
        assert_eq!(report.money_out.len(), 1, "{:?}", report.money_out);
        assert!(
            report.money_out[0].starts_with("#1 ") && report.money_out[0].contains("→ #2 "),
            "{}",
            report.money_out[0]
        );
        assert_eq!((report.allowed, report.denied), (0, 1));
        assert_eq!(report.denials["bot1"]["policy_changed"], 1);
        assert_eq!(report.sources["127.0.0.1"], 1);
    }

    /// A regression test: every source address got an entry of its own, so a flood from
    /// rotating IPv6 addresses made `incident report` (the tool for that very incident)
    /// build and print a map of millions.
    #[test]
    fn sources_past_the_first_thousand_are_counted_together() {
        let mut report = Report::default();
        let mut pending = HashMap::new();
        for i in 0..2 * MAX_SOURCES as u64 {
            let event = Event {
                ts_ms: i,
                body: EventBody::Request(RequestEvent {
                    request_id: format!("r{i}"),
                    exchange: "binance".into(),
                    client: None,
                    key_of: None,
                    account: None,
                    source_ip: format!("2001:db8::{i:x}"),
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
                    allowed: false,
                    rule: None,
                    message: None,
                    upstream_status: None,
                    latency_us: None,
                    outcome: Outcome::NotForwarded,
                    validates_only: false,
                    previous_key: false,
                    orders: Vec::new(),
                    terms: None,
                }),
            };
            report.add(i + 1, &event, &mut pending);
        }
        assert_eq!(report.sources.len(), MAX_SOURCES);
        assert_eq!(report.other_sources, MAX_SOURCES as u64);
    }
}
