//! Unmodified Python ccxt edits orders through the real `keygate serve` in front of the
//! Binance simulator (`tests/ccxt_edit_e2e.py`): spot `edit_order` (a cancel-replace),
//! USD-M `edit_order` (a modify order) and `edit_orders` (a batch of them). An edit within
//! the client's notional limit goes through with the real key; one over it is denied,
//! with the exception ccxt raises for Binance's -2015, and never reaches the exchange.

use std::path::Path;
use std::process::Command;

use keygate_mockex::{Credential, RecordedRequest, RunningSimulator};
use serde_json::Value;

use crate::common::{python, script_summary, simulator, Kg, Serve};

const REAL_KEY: &str = "EditReal1EditReal1EditReal1EditReal1EditReal1EditReal1EditReal1E";
const REAL_SECRET: &str = "EditPlantedSecret1EditPlantedSecret1EditPlantedSecret1EditPlant";

/// The client's largest order, in USDT: the script's edits to 510 and 520 USDT stay under
/// it, those to 5200 and 5300 go over.
const MAX_ORDER_NOTIONAL: &str = "1000";

/// Runs the script for ccxt exchange `exchange` through a fresh `keygate serve` whose one
/// client may trade up to [`MAX_ORDER_NOTIONAL`]; returns its summary, the requests the
/// simulator saw, and the audit log's events as JSON lines.
fn edit_through_keygate(exchange: &str) -> (Value, Vec<RecordedRequest>, Vec<Value>) {
    let (_runtime, sim): (_, RunningSimulator) =
        simulator(vec![Credential::hmac(REAL_KEY, REAL_SECRET)]);
    let kg = Kg::with_key_file();
    kg.add_account_with("main", REAL_KEY, REAL_SECRET, &["--upstream", &sim.url()]);
    let issued = kg.issue(
        "main",
        "editor",
        &[
            "--scope",
            "read,trade",
            "--max-order-notional",
            MAX_ORDER_NOTIONAL,
        ],
    );
    // Without reconciliation, whose own reads with the real key would count as edits
    // that reached the exchange.
    let serve = Serve::start_with(&kg, &["--reconcile-every", "off"]);
    let run = Command::new(python())
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/ccxt_edit_e2e.py"))
        .env("KEYGATE_URL", format!("http://{}", serve.addr))
        .env("KEYGATE_API_KEY", issued["api_key"].as_str().unwrap())
        .env("KEYGATE_SECRET", issued["secret"].as_str().unwrap())
        .env("MOCK_URL", sim.url())
        .env("EXCHANGE", exchange)
        // The script checks with `assert`, which -O would take out.
        .env_remove("PYTHONOPTIMIZE")
        .output()
        .unwrap();
    let summary = script_summary(&run, &kg);
    let seen = sim.simulator().requests();
    drop(serve);
    let audit = kg.ok(&["audit", "export", "--format", "jsonl"], "").stdout;
    let events = audit
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .collect();
    (summary, seen, events)
}

/// The requests `seen` made to `method path`.
fn calls<'a>(seen: &'a [RecordedRequest], method: &str, path: &str) -> Vec<&'a RecordedRequest> {
    seen.iter()
        .filter(|r| r.method == method && r.path == path)
        .collect()
}

/// The denials for the notional limit at `path` in the audit `events`.
fn denied_at<'a>(events: &'a [Value], path: &str) -> Vec<&'a Value> {
    events
        .iter()
        .filter(|e| e["rule"] == "order_notional" && e["path"] == path)
        .collect()
}

#[test]
fn ccxt_edit_order_on_spot_is_a_cancel_replace_held_to_the_limit() {
    let (summary, seen, events) = edit_through_keygate("binance");
    assert_eq!(summary["edit_order"], "ok", "{summary}");
    // What ccxt raises for Binance's -2015 (the script checks it is that, or the
    // DDoSProtection it raises for -2015 once a key has authenticated).
    let raised = summary["edit_order_over_limit"].as_str().unwrap();
    assert!(
        ["AuthenticationError", "DDoSProtection"].contains(&raised),
        "{summary}"
    );
    // The edit within the limit reached the exchange once, as ccxt wrote it and signed
    // with the real key; the one over it did not.
    let path = "/api/v3/order/cancelReplace";
    let replaced = calls(&seen, "POST", path);
    assert_eq!(replaced.len(), 1, "{replaced:#?}");
    let body = &replaced[0].body;
    assert_eq!(replaced[0].api_key.as_deref(), Some(REAL_KEY));
    for part in [
        "cancelReplaceMode=STOP_ON_FAILURE",
        &format!(
            "cancelOrderId={}",
            summary["ids"]["placed"].as_str().unwrap()
        ),
        "quantity=0.01&",
        "price=51000",
    ] {
        assert!(body.contains(part), "{part}: {body}");
    }
    assert_eq!(denied_at(&events, path).len(), 1, "{events:#?}");
}

#[test]
fn ccxt_edit_order_and_edit_orders_on_usdm_are_held_to_the_limit() {
    let (summary, seen, events) = edit_through_keygate("binanceusdm");
    for call in ["edit_order", "edit_orders"] {
        assert_eq!(summary[call], "ok", "{summary}");
    }
    // What ccxt's table maps Binance's -2015 to (the script checks it is that class).
    for call in ["edit_order_over_limit", "edit_orders_over_limit"] {
        assert_eq!(summary[call], "AuthenticationError", "{summary}");
    }
    let id = summary["ids"]["placed"].as_str().unwrap();
    assert_eq!(summary["ids"]["edited"], id, "{summary}");
    // Each call within the limit reached the exchange once, signed with the real key;
    // the ones over it did not.
    let modified = calls(&seen, "PUT", "/fapi/v1/order");
    assert_eq!(modified.len(), 1, "{modified:#?}");
    assert!(
        modified[0].body.contains(&format!("orderId={id}&"))
            && modified[0].body.contains("price=51000"),
        "{modified:#?}"
    );
    let batches = calls(&seen, "PUT", "/fapi/v1/batchOrders");
    assert_eq!(batches.len(), 1, "{batches:#?}");
    assert!(
        modified
            .iter()
            .chain(&batches)
            .all(|r| r.api_key.as_deref() == Some(REAL_KEY)),
        "{seen:#?}"
    );
    assert_eq!(denied_at(&events, "/fapi/v1/order").len(), 1, "{events:#?}");
    assert_eq!(
        denied_at(&events, "/fapi/v1/batchOrders").len(),
        1,
        "{events:#?}"
    );
}
