//! Filtering and exporting events.

use keygate_core::{Event, EventBody};

/// Which events a query or export returns.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    /// Only events about this client.
    pub client: Option<String>,
    /// Only events at or after this time.
    pub since_ms: Option<u64>,
    /// Only request events that were allowed (`Some(true)`) or denied (`Some(false)`).
    pub allowed: Option<bool>,
}

impl Filter {
    /// Whether `event` passes.
    pub fn matches(&self, event: &Event) -> bool {
        if self
            .client
            .as_deref()
            .is_some_and(|c| event.client() != Some(c))
        {
            return false;
        }
        if self.since_ms.is_some_and(|t| event.ts_ms < t) {
            return false;
        }
        match (self.allowed, &event.body) {
            (None, _) => true,
            (Some(want), EventBody::Request(r)) => r.allowed == want,
            (Some(_), _) => false,
        }
    }
}

/// The CSV header matching [`csv_line`].
pub fn csv_header() -> &'static str {
    "seq,ts_ms,type,client,account,source_ip,method,path,action,symbol,notional,allowed,rule,upstream_status,latency_us,outcome,change,target,actor"
}

/// One event as a CSV line (RFC 4180 quoting).
pub fn csv_line(seq: u64, event: &Event) -> String {
    let mut f: Vec<String> = vec![seq.to_string(), event.ts_ms.to_string()];
    let s = |v: Option<&str>| v.unwrap_or("").to_owned();
    let j = |v: &dyn erased::ToJson| v.json();
    match &event.body {
        EventBody::Request(r) => f.extend([
            "request".into(),
            s(r.client.as_deref()),
            s(r.account.as_deref()),
            r.source_ip.clone(),
            r.method.clone(),
            r.path.clone(),
            r.action.as_str().into(),
            s(r.symbol.as_deref()),
            r.notional.map(|n| n.to_string()).unwrap_or_default(),
            r.allowed.to_string(),
            r.rule.map(|x| x.as_str().to_owned()).unwrap_or_default(),
            r.upstream_status.map(|x| x.to_string()).unwrap_or_default(),
            r.latency_us.map(|x| x.to_string()).unwrap_or_default(),
            j(&r.outcome),
            String::new(),
            String::new(),
            String::new(),
        ]),
        EventBody::Outcome(o) => f.extend([
            "outcome".into(),
            s(o.client.as_deref()),
            String::new(),
            String::new(),
            String::new(),
            String::new(),
            String::new(),
            String::new(),
            String::new(),
            String::new(),
            String::new(),
            o.upstream_status.map(|x| x.to_string()).unwrap_or_default(),
            o.latency_us.to_string(),
            j(&o.outcome),
            String::new(),
            o.request_id.clone(),
            String::new(),
        ]),
        EventBody::Admin(a) => {
            f.extend(["admin".into(), s(event.client())]);
            f.extend(std::iter::repeat_n(String::new(), 12));
            f.extend([a.change.clone(), a.target.clone(), a.actor.clone()]);
        }
    }
    f.iter().map(|v| quote(v)).collect::<Vec<_>>().join(",")
}

/// One CSV cell. A cell a spreadsheet would take for a formula (it starts with `=`, `+`,
/// `-`, `@`, a tab or a carriage return; a bot or a stranger chooses a request's method,
/// path and symbol) gets a leading `'`, as OWASP advises, so that it stays text.
fn quote(v: &str) -> String {
    let defused;
    let v = if v.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        defused = format!("'{v}");
        defused.as_str()
    } else {
        v
    };
    if v.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", v.replace('"', "\"\""))
    } else {
        v.to_owned()
    }
}

mod erased {
    /// A value shown in CSV by its JSON string form.
    pub trait ToJson {
        fn json(&self) -> String;
    }

    impl<T: serde::Serialize> ToJson for T {
        fn json(&self) -> String {
            serde_json::to_value(self)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keygate_core::{ActionKind, AdminEvent, Outcome, OutcomeEvent, RequestEvent};

    #[test]
    fn cells_a_spreadsheet_would_evaluate_stay_text() {
        assert_eq!(quote("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(quote("+cmd|'calc'!A0"), "'+cmd|'calc'!A0");
        assert_eq!(quote("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(quote("GET"), "GET");
        assert_eq!(quote("a,b"), "\"a,b\"");
    }

    #[test]
    fn every_csv_line_has_the_header_columns() {
        let columns = csv_header().split(',').count();
        let request = EventBody::Request(RequestEvent {
            request_id: "r1".into(),
            exchange: "binance".into(),
            client: Some("bot1".into()),
            account: Some("main".into()),
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
            allowed: true,
            rule: None,
            message: None,
            upstream_status: Some(200),
            latency_us: Some(5),
            outcome: Outcome::Answered,
        });
        let outcome = EventBody::Outcome(OutcomeEvent {
            request_id: "r1".into(),
            client: Some("bot1".into()),
            upstream_status: Some(200),
            latency_us: 5,
            outcome: Outcome::Answered,
            order_ids: Vec::new(),
        });
        let admin = EventBody::Admin(AdminEvent {
            actor: "cli".into(),
            change: "client.freeze".into(),
            target: "bot1, \"x\"".into(),
            detail: serde_json::Value::Null,
        });
        for body in [request, outcome, admin] {
            let line = csv_line(1, &Event { ts_ms: 1, body });
            let naive = line.replace("\"bot1, \"\"x\"\"\"", "target");
            assert_eq!(naive.split(',').count(), columns, "{line}");
        }
    }
}
