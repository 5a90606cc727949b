//! What an operator reads: the human output of the listing commands, snapshotted with
//! times, keys and paths redacted.

use crate::common::Kg;

fn redactions() -> Vec<(&'static str, &'static str)> {
    vec![
        (r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z", "[TIME]"),
        (r"\b[A-Za-z0-9]{4}…[A-Za-z0-9]{4}\b", "[KEY]"),
        // With the padding after it: an age of 10 s or more fills its column, one under
        // it leaves a space (found by review: a test held up ten seconds would fail).
        (r"\b\d+(ms|s|m|h|d)\b *", "[AGE] "),
    ]
}

#[test]
fn listings_read_as_documented() {
    let kg = Kg::with_key_file();
    let key = "k".repeat(40) + "KEYS";
    let account = [
        "account",
        "add",
        "--exchange",
        "binance",
        "--label",
        "main",
        "--rotate-every",
        "90d",
        "--no-check",
    ];
    kg.ok(&account, &format!("{key}\n{}\n", "s".repeat(64)));
    kg.issue(
        "main",
        "bot1",
        &[
            "--scope",
            "read,trade",
            "--symbols",
            "BTC/USDT,ETHUSDT",
            "--max-order-notional",
            "500",
        ],
    );
    kg.issue("main", "reader", &[]);
    kg.ok(&["client", "freeze", "reader"], "");

    insta::with_settings!({ filters => redactions() }, {
        insta::assert_snapshot!("account_list", kg.ok(&["account", "list"], "").stdout);
        insta::assert_snapshot!("client_list", kg.ok(&["client", "list"], "").stdout);
        insta::assert_snapshot!("client_show", kg.ok(&["client", "show", "bot1"], "").stdout);
    });
}
