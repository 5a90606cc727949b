//! Filtering and exporting events.

use keygate_core::{Event, EventBody};

/// Which events a query or export returns.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    /// Only events about this client.
    pub client: Option<String>,
    /// Only events at or after this time.
    pub since_ms: Option<u64>,
    /// Only events before this time (not at it), so that windows that follow one another
    /// share no event.
    pub until_ms: Option<u64>,
    /// Only request events that were allowed (`Some(true)`) or denied (`Some(false)`).
    pub allowed: Option<bool>,
}

impl Filter {
    /// Whether `event` passes.
    pub fn matches(&self, event: &Event) -> bool {
        if self
            .client
            .as_deref()
            .is_some_and(|c| !event.concerns_client(c))
        {
            return false;
        }
        if self.since_ms.is_some_and(|t| event.ts_ms < t) {
            return false;
        }
        if self.until_ms.is_some_and(|t| event.ts_ms >= t) {
            return false;
        }
        match (self.allowed, &event.body) {
            (None, _) => true,
            (Some(want), EventBody::Request(r)) => r.allowed == want,
            // An outcome is written only for a request that was allowed and forwarded:
            // what became of an allowed trade or withdrawal is part of its story.
            (Some(want), EventBody::Outcome(_)) => want,
            (Some(_), EventBody::Admin(_)) => false,
            // Lost events were reads and denials alike: a gap belongs in either story.
            (Some(_), EventBody::Lost(_)) => true,
        }
    }
}

/// The CSV columns, in order. Columns added later go at the end, so that a reader of an
/// earlier export's columns reads a later one.
const CSV_COLUMNS: &[&str] = &[
    "seq",
    "ts_ms",
    "type",
    "client",
    "account",
    "source_ip",
    "method",
    "path",
    "action",
    "symbol",
    "notional",
    "allowed",
    "rule",
    "upstream_status",
    "latency_us",
    "outcome",
    "change",
    "target",
    "actor",
    "request_id",
    "exchange",
    "side",
    "client_order_id",
    "amount",
    "asset",
    "destination",
    "message",
    "order_ids",
    "lost_count",
    "lost_first_ms",
    "lost_last_ms",
    "detail",
    "network",
    "key_of",
    "previous_key",
    "validates_only",
    "places_no_order",
    "orders",
    "terms",
    "interrupted",
    "lost_clients",
    "lost_outcomes",
    "forwarded_by",
    "lost_funds_denied",
];

/// The CSV header matching [`csv_line`].
pub fn csv_header() -> String {
    CSV_COLUMNS.join(",")
}

/// One event as a CSV line (RFC 4180 quoting). A request and its outcome share their
/// `request_id`; an outcome's is in `target` too, where earlier exports put it.
pub fn csv_line(seq: u64, event: &Event) -> String {
    let mut row = vec![String::new(); CSV_COLUMNS.len()];
    let mut set = |column: &str, value: String| match CSV_COLUMNS.iter().position(|c| *c == column)
    {
        Some(i) => row[i] = value,
        None => debug_assert!(false, "no CSV column {column}"),
    };
    set("seq", seq.to_string());
    set("ts_ms", event.ts_ms.to_string());
    match &event.body {
        EventBody::Request(r) => {
            set("type", "request".into());
            set("client", shown(r.client.as_deref()));
            set("key_of", r.key_of.clone().unwrap_or_default());
            set("account", shown(r.account.as_deref()));
            set("source_ip", r.source_ip.clone());
            set("forwarded_by", shown(r.forwarded_by.as_deref()));
            set("method", r.method.clone());
            set("path", r.path.clone());
            set("action", r.action.as_str().into());
            // A batch's orders' symbols, separated by spaces.
            set("symbol", shown(r.symbols_named().as_deref()));
            set("notional", shown(r.notional));
            set("allowed", r.allowed.to_string());
            set(
                "rule",
                r.rule.map(|x| x.as_str().to_owned()).unwrap_or_default(),
            );
            set("upstream_status", shown(r.upstream_status));
            set("latency_us", shown(r.latency_us));
            set("outcome", json_text(&r.outcome));
            set("request_id", r.request_id.clone());
            set("exchange", r.exchange.clone());
            set("side", r.side.as_ref().map(json_text).unwrap_or_default());
            set("client_order_id", shown(r.client_order_id.as_deref()));
            set("amount", shown(r.amount));
            set("asset", shown(r.asset.as_deref()));
            set("destination", shown(r.destination.as_deref()));
            set("network", shown(r.network.as_deref()));
            set("message", shown(r.message.as_deref()));
            set("previous_key", r.previous_key.to_string());
            set("validates_only", r.validates_only.to_string());
            set("places_no_order", r.places_no_order.to_string());
            // A batch's orders and an order's terms, as the JSONL export gives them.
            if !r.orders.is_empty() {
                set("orders", json_value(&r.orders));
            }
            if let Some(terms) = &r.terms {
                set("terms", json_value(terms));
            }
        }
        EventBody::Outcome(o) => {
            set("type", "outcome".into());
            set("client", shown(o.client.as_deref()));
            set("upstream_status", shown(o.upstream_status));
            set("latency_us", o.latency_us.to_string());
            set("outcome", json_text(&o.outcome));
            set("target", o.request_id.clone());
            set("request_id", o.request_id.clone());
            set("order_ids", o.order_ids.join(" "));
            set("interrupted", o.interrupted.to_string());
        }
        EventBody::Admin(a) => {
            set("type", "admin".into());
            set("client", event.client().unwrap_or_default().to_owned());
            set("change", a.change.clone());
            set("target", a.target.clone());
            set("actor", a.actor.clone());
            // What changed (a policy before and after, a rotation's fingerprints), as
            // the JSON `audit export --format jsonl` gives it.
            if !a.detail.is_null() {
                set("detail", json_value(&a.detail));
            }
        }
        EventBody::Lost(l) => {
            set("type", "lost".into());
            set("lost_count", l.count.to_string());
            set("lost_first_ms", l.first_ms.to_string());
            set("lost_last_ms", l.last_ms.to_string());
            set("lost_clients", json_value(&l.clients));
            set("lost_outcomes", l.outcomes.join(" "));
            set("lost_funds_denied", json_value(&l.funds_denied));
        }
    }
    row.iter().map(|v| quote(v)).collect::<Vec<_>>().join(",")
}

/// A value that may be missing, as text; empty when it is.
fn shown<T: ToString>(value: Option<T>) -> String {
    value.map(|v| v.to_string()).unwrap_or_default()
}

/// A value as the JSON text the JSONL export gives it, C1 and bidirectional characters
/// written as JSON escapes (`\u009b`): [`quote`] would otherwise write them as `\u{9b}`,
/// which no JSON reader takes (found by review).
fn json_value<T: serde::Serialize>(value: &T) -> String {
    let json = serde_json::to_string(value).unwrap_or_default();
    keygate_core::escape_json_controls(&json).into_owned()
}

/// A value shown by its JSON string form (`answered`, `buy`).
fn json_text<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// One CSV cell. Its control characters are escaped as a terminal line's are
/// ([`keygate_core::escape_controls`]: a bot chooses what a request names, and the export
/// is written to standard output, often a terminal's; the JSONL export keeps them as
/// they were). A cell a spreadsheet would take for a formula (it starts with `=`, `+`,
/// `-` or `@`; a bot or a stranger chooses a request's method, path and symbol) gets a
/// leading `'`, as OWASP advises, so that it stays text. A cell holding `;` is quoted as
/// one holding `,` is (found by review: Excel splits a CSV on `;` where that is the list
/// separator, German or French, so `x;=HYPERLINK(…)` made a cell of its own that started
/// with `=`; quoted, it stays one cell).
fn quote(v: &str) -> String {
    let v = keygate_core::escape_controls(v);
    let defused;
    let v = if v.starts_with(['=', '+', '-', '@']) {
        defused = format!("'{v}");
        defused.as_str()
    } else {
        &v
    };
    // No line break is left to quote: it is escaped.
    if v.contains([',', ';', '"']) {
        format!("\"{}\"", v.replace('"', "\"\""))
    } else {
        v.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keygate_core::{ActionKind, AdminEvent, Outcome, OutcomeEvent, RequestEvent, Side};

    /// A regression test: `--client bot1` left out the administrative changes that name
    /// bot1 among others, such as the seal that took a put-back bot1 in again.
    #[test]
    fn changes_that_name_a_client_among_others_are_about_it() {
        let admin = |change: &str, detail: serde_json::Value| Event {
            ts_ms: 1,
            body: EventBody::Admin(AdminEvent {
                actor: "cli".into(),
                change: change.into(),
                target: "clients".into(),
                detail,
            }),
        };
        let bot1 = Filter {
            client: Some("bot1".into()),
            ..Filter::default()
        };
        let seal = admin(
            "vault.seal",
            serde_json::json!({ "clients": [{ "name": "bot1", "status": "active" }] }),
        );
        assert!(bot1.matches(&seal));
        let removed = admin(
            "account.remove",
            serde_json::json!({ "revoked_clients": ["bot2"], "deleted_clients": ["bot1"] }),
        );
        assert!(bot1.matches(&removed));
        let other = admin(
            "vault.panic",
            serde_json::json!({ "frozen_clients": ["bot2"] }),
        );
        assert!(!bot1.matches(&other));
    }

    #[test]
    fn cells_a_spreadsheet_would_evaluate_stay_text() {
        assert_eq!(quote("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(quote("+cmd|'calc'!A0"), "'+cmd|'calc'!A0");
        assert_eq!(quote("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(quote("GET"), "GET");
        assert_eq!(quote("a,b"), "\"a,b\"");
        // Found by review: where `;` separates cells (Excel in German or French), a cell
        // `x;=…` split into one that began with `=`. Quoted, it is one cell.
        assert_eq!(quote("x;=HYPERLINK(A1);y"), "\"x;=HYPERLINK(A1);y\"");
    }

    /// A regression test: a bot's escape sequences in a symbol or an order id reached the
    /// operator's terminal raw through `audit export --format csv` (a window title set,
    /// the line erased and written over).
    #[test]
    fn control_characters_in_a_cell_are_escaped() {
        assert_eq!(
            quote("\x1b]0;PWNED\x07\x1b[2K\rBTCUSDT"),
            "\"\\x1b]0;PWNED\\x07\\x1b[2K\\x0dBTCUSDT\""
        );
        assert_eq!(quote("\tx"), "\\x09x");
        assert_eq!(quote("a\nb,\u{9b}2J"), "\"a\\x0ab,\\u{9b}2J\"");
    }

    #[test]
    fn every_csv_line_has_the_header_columns() {
        let columns = csv_header().split(',').count();
        let request = EventBody::Request(RequestEvent {
            request_id: "r1".into(),
            exchange: "binance".into(),
            client: Some("bot1".into()),
            key_of: None,
            account: Some("main".into()),
            source_ip: "127.0.0.1".into(),
            method: "GET".into(),
            path: "/api/v3/account".into(),
            action: ActionKind::Read,
            symbol: None,
            side: Some(Side::Buy),
            client_order_id: None,
            notional: None,
            amount: None,
            asset: None,
            destination: Some("bc1qdest/7".into()),
            network: None,
            allowed: true,
            rule: None,
            message: None,
            upstream_status: Some(200),
            latency_us: Some(5),
            outcome: Outcome::Answered,
            validates_only: false,
            previous_key: false,
            forwarded_by: None,
            places_no_order: false,
            orders: Vec::new(),
            terms: None,
        });
        let outcome = EventBody::Outcome(OutcomeEvent {
            request_id: "r1".into(),
            client: Some("bot1".into()),
            upstream_status: Some(200),
            latency_us: 5,
            outcome: Outcome::Answered,
            order_ids: vec!["11".into(), "12".into()],
            interrupted: false,
        });
        let admin = EventBody::Admin(AdminEvent {
            actor: "cli".into(),
            change: "client.freeze".into(),
            target: "bot1, \"x\"".into(),
            detail: serde_json::Value::Null,
        });
        let lines: Vec<String> = [request, outcome, admin]
            .into_iter()
            .map(|body| csv_line(1, &Event { ts_ms: 1, body }))
            .collect();
        for line in &lines {
            let naive = line.replace("\"bot1, \"\"x\"\"\"", "target");
            assert_eq!(naive.split(',').count(), columns, "{line}");
        }
        // A request and its outcome join on request_id; a withdrawal's destination is there.
        let cell = |line: &str, column: &str| {
            let i = CSV_COLUMNS.iter().position(|c| *c == column).unwrap();
            line.split(',').nth(i).unwrap().to_owned()
        };
        assert_eq!(cell(&lines[0], "request_id"), "r1");
        assert_eq!(cell(&lines[1], "request_id"), "r1");
        assert_eq!(cell(&lines[0], "destination"), "bc1qdest/7");
        assert_eq!(cell(&lines[0], "side"), "buy");
        assert_eq!(cell(&lines[1], "order_ids"), "11 12");
    }

    /// A regression test (found by review): fields added to events later (`previous_key`,
    /// `interrupted`, a lost record's outcomes) reached the JSONL export only, so a CSV
    /// kept as evidence could not tell a request signed with a rotated-out key from
    /// another. Every field an event's JSON has is a CSV column, and it is filled.
    #[test]
    fn every_json_field_has_a_csv_column() {
        use keygate_core::{BatchOrder, LostEvents, OrderTerms};
        let terms = OrderTerms {
            price: Some("1".parse().unwrap()),
            quantity: "1".parse().unwrap(),
            modifies: None,
        };
        let request = RequestEvent {
            request_id: "r1".into(),
            exchange: "binance".into(),
            client: Some("bot1".into()),
            key_of: Some("bot1".into()),
            account: Some("main".into()),
            source_ip: "127.0.0.1".into(),
            method: "POST".into(),
            path: "/api/v3/order".into(),
            action: ActionKind::Trade,
            symbol: Some("BTCUSDT".into()),
            side: Some(Side::Buy),
            client_order_id: Some("c1".into()),
            notional: Some("1".parse().unwrap()),
            amount: Some("1".parse().unwrap()),
            asset: Some("BTC".into()),
            destination: Some("bc1q".into()),
            network: Some("BTC".into()),
            allowed: true,
            rule: Some(keygate_core::Rule::Symbol),
            message: Some("m".into()),
            upstream_status: Some(200),
            latency_us: Some(5),
            outcome: Outcome::Answered,
            validates_only: true,
            previous_key: true,
            forwarded_by: Some("127.0.0.2".into()),
            places_no_order: true,
            orders: vec![BatchOrder {
                symbol: "BTCUSDT".into(),
                side: Some(Side::Buy),
                client_order_id: None,
                terms: Some(terms.clone()),
                notional: None,
            }],
            terms: Some(terms),
        };
        let outcome = OutcomeEvent {
            request_id: "r1".into(),
            client: Some("bot1".into()),
            upstream_status: Some(200),
            latency_us: 5,
            outcome: Outcome::Unknown,
            order_ids: vec!["11".into()],
            interrupted: true,
        };
        let lost = LostEvents {
            funds_denied: Default::default(),
            count: 2,
            first_ms: 1,
            last_ms: 2,
            clients: [("bot1".to_owned(), 2)].into(),
            outcomes: vec!["r9".into()],
        };
        let admin = AdminEvent {
            actor: "cli".into(),
            change: "client.freeze".into(),
            target: "bot1".into(),
            detail: serde_json::json!({ "x": 1 }),
        };
        let bodies = [
            EventBody::Request(request),
            EventBody::Outcome(outcome),
            EventBody::Lost(lost),
            EventBody::Admin(admin),
        ];
        for body in bodies {
            let event = Event { ts_ms: 1, body };
            let json = serde_json::to_value(&event).unwrap();
            let line = csv_line(1, &event);
            let cells = csv_cells(&line);
            let is_lost = matches!(event.body, EventBody::Lost(_));
            for (field, value) in json.as_object().unwrap() {
                let column = match field.as_str() {
                    "clients" | "outcomes" if is_lost => format!("lost_{field}"),
                    "count" | "first_ms" | "last_ms" => format!("lost_{field}"),
                    _ => field.clone(),
                };
                let i = CSV_COLUMNS
                    .iter()
                    .position(|c| *c == column)
                    .unwrap_or_else(|| panic!("no CSV column for {field} ({value})"));
                assert!(!cells[i].is_empty(), "{field} is empty in {line}");
            }
        }
    }

    /// The cells of a CSV line as [`quote`] writes them.
    fn csv_cells(line: &str) -> Vec<String> {
        let (mut cells, mut cell, mut quoted) = (Vec::new(), String::new(), false);
        let mut chars = line.chars().peekable();
        while let Some(c) = chars.next() {
            match (c, quoted) {
                ('"', true) if chars.peek() == Some(&'"') => {
                    chars.next();
                    cell.push('"');
                }
                ('"', _) => quoted = !quoted,
                (',', false) => cells.push(std::mem::take(&mut cell)),
                _ => cell.push(c),
            }
        }
        cells.push(cell);
        cells
    }

    /// A regression test (found by review): a JSON cell (`orders`, `terms`, `detail`)
    /// holding a C1 or bidirectional character a bot chose came out with `\u{9b}`, which
    /// no JSON reader takes. It holds JSON escapes, and reads back as it was.
    #[test]
    fn a_json_cell_stays_json_whatever_a_bot_names() {
        let named = "x\u{9b}2J\u{202e}evil";
        let admin = EventBody::Admin(AdminEvent {
            actor: "cli".into(),
            change: "client.update".into(),
            target: "bot1".into(),
            detail: serde_json::json!({ "note": named }),
        });
        let line = csv_line(
            1,
            &Event {
                ts_ms: 1,
                body: admin,
            },
        );
        let detail = CSV_COLUMNS.iter().position(|c| *c == "detail").unwrap();
        let cell = &csv_cells(&line)[detail];
        assert!(
            cell.contains(r"\u009b") && cell.contains(r"\u202e"),
            "{cell}"
        );
        let read: serde_json::Value = serde_json::from_str(cell).unwrap();
        assert_eq!(read["note"], named);
    }

    /// A regression test: the CSV export left out what an administrative change changed
    /// (a policy before and after), which the JSON export had.
    #[test]
    fn an_admin_change_keeps_its_detail_in_csv() {
        let admin = EventBody::Admin(AdminEvent {
            actor: "cli".into(),
            change: "client.update".into(),
            target: "bot1".into(),
            detail: serde_json::json!({ "from": { "scopes": ["read"] }, "to": { "scopes": ["read", "trade"] } }),
        });
        let line = csv_line(
            7,
            &Event {
                ts_ms: 1,
                body: admin,
            },
        );
        let detail = CSV_COLUMNS.iter().position(|c| *c == "detail").unwrap();
        assert_eq!(
            csv_cells(&line)[detail],
            r#"{"from":{"scopes":["read"]},"to":{"scopes":["read","trade"]}}"#,
            "{line}"
        );
        assert!(line.contains(r#""{""from"":{""scopes"":"#), "{line}");
    }

    #[test]
    fn allowed_requests_keep_their_outcomes() {
        let outcome = Event {
            ts_ms: 1,
            body: EventBody::Outcome(OutcomeEvent {
                request_id: "r1".into(),
                client: Some("bot1".into()),
                upstream_status: None,
                latency_us: 5,
                outcome: Outcome::Unknown,
                order_ids: Vec::new(),
                interrupted: false,
            }),
        };
        let decision = |allowed| Filter {
            allowed: Some(allowed),
            ..Filter::default()
        };
        assert!(decision(true).matches(&outcome));
        assert!(!decision(false).matches(&outcome));
    }

    /// `--since` and `--until` (found by review: a fixed window could not be exported):
    /// from the first at, to the second before, so that windows that follow one another
    /// hold each event once.
    #[test]
    fn a_window_holds_its_start_and_not_its_end() {
        let at = |ts_ms| Event {
            ts_ms,
            body: EventBody::Admin(AdminEvent {
                actor: "cli".into(),
                change: "client.freeze".into(),
                target: "bot1".into(),
                detail: serde_json::Value::Null,
            }),
        };
        let window = |since_ms, until_ms| Filter {
            since_ms: Some(since_ms),
            until_ms: Some(until_ms),
            ..Filter::default()
        };
        let passing = |filter: &Filter| -> Vec<u64> {
            (0..10).filter(|ts| filter.matches(&at(*ts))).collect()
        };
        assert_eq!(passing(&window(2, 5)), [2, 3, 4]);
        assert_eq!(passing(&window(5, 8)), [5, 6, 7]);
        let until = Filter {
            until_ms: Some(3),
            ..Filter::default()
        };
        assert_eq!(passing(&until), [0, 1, 2]);
    }
}
