//! What an operator reads: the human output of the listing commands, snapshotted with
//! times, keys and paths redacted.

#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

fn keygate(home: &Path, args: &[&str], stdin: &str) -> String {
    let mut child = Command::new(env!("CARGO_BIN_EXE_keygate"))
        .arg("--home")
        .arg(home)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn redactions() -> Vec<(&'static str, &'static str)> {
    vec![
        (r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z", "[TIME]"),
        (r"\b[A-Za-z0-9]{4}…[A-Za-z0-9]{4}\b", "[KEY]"),
        (r"\b\d+(ms|s|m|h|d)\b", "[AGE]"),
    ]
}

#[test]
fn listings_read_as_documented() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let keyfile = dir.path().join("master.key");
    keygate(
        &home,
        &["init", "--master-key-file", keyfile.to_str().unwrap()],
        "",
    );
    let key = "k".repeat(40) + "KEYS";
    keygate(
        &home,
        &[
            "account",
            "add",
            "--exchange",
            "binance",
            "--label",
            "main",
            "--rotate-every",
            "90d",
        ],
        &format!("{key}\n{}\n", "s".repeat(64)),
    );
    keygate(
        &home,
        &[
            "client",
            "issue",
            "--account",
            "main",
            "--name",
            "bot1",
            "--scope",
            "read,trade",
            "--symbols",
            "BTC/USDT,ETHUSDT",
            "--max-order-notional",
            "500",
        ],
        "",
    );
    keygate(
        &home,
        &["client", "issue", "--account", "main", "--name", "reader"],
        "",
    );
    keygate(&home, &["client", "freeze", "reader"], "");

    insta::with_settings!({ filters => redactions() }, {
        insta::assert_snapshot!("account_list", keygate(&home, &["account", "list"], ""));
        insta::assert_snapshot!("client_list", keygate(&home, &["client", "list"], ""));
        insta::assert_snapshot!("client_show", keygate(&home, &["client", "show", "bot1"], ""));
    });
}
