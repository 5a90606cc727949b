//! `keygate scan` through the real binary: keys the vault manages, and the pre-commit hook.

#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use rand::distributions::{Alphanumeric, DistString};

fn keygate(home: &Path, args: &[&str], stdin: &str) -> Output {
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
    child.wait_with_output().unwrap()
}

fn random() -> String {
    Alphanumeric.sample_string(&mut rand::thread_rng(), 64)
}

#[test]
fn a_managed_key_anywhere_is_critical_and_named_without_being_printed() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let keyfile = dir.path().join("master.key");
    assert!(keygate(
        &home,
        &["init", "--master-key-file", keyfile.to_str().unwrap()],
        ""
    )
    .status
    .success());
    let (key, secret) = (random(), random());
    let added = keygate(
        &home,
        &["account", "add", "--exchange", "binance", "--label", "main"],
        &format!("{key}\n{secret}\n"),
    );
    assert!(
        added.status.success(),
        "{}",
        String::from_utf8_lossy(&added.stderr)
    );

    let code = dir.path().join("code");
    std::fs::create_dir_all(&code).unwrap();
    // No exchange keyword anywhere near: only the vault knows this is a key.
    std::fs::write(code.join("settings.py"), format!("TOKEN = \"{secret}\"\n")).unwrap();
    std::fs::write(code.join("clean.py"), "print('hello')\n").unwrap();

    let out = keygate(
        &home,
        &[
            "scan",
            "--managed",
            "--format",
            "json",
            code.to_str().unwrap(),
        ],
        "",
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let text = report.to_string();
    assert!(text.contains("account main"), "{text}");
    assert!(text.to_lowercase().contains("critical"), "{text}");
    for output in [&out.stdout, &out.stderr] {
        let output = String::from_utf8_lossy(output);
        assert!(!output.contains(&secret), "the managed secret was printed");
    }

    let without = keygate(
        &home,
        &["scan", "--format", "json", code.to_str().unwrap()],
        "",
    );
    assert_eq!(
        without.status.code(),
        Some(0),
        "without --managed the token has no exchange context"
    );
}

fn git(repo: &Path, args: &[&str], path_env: &str) -> Output {
    Command::new("git")
        .current_dir(repo)
        .args([
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@t",
            "-c",
            "commit.gpgsign=false",
        ])
        .args(args)
        .env("PATH", path_env)
        .output()
        .unwrap()
}

#[test]
fn the_installed_hook_blocks_a_commit_with_a_key_and_lets_a_clean_one_through() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path();
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_keygate")).parent().unwrap();
    let path_env = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    assert!(git(repo, &["init", "-q"], &path_env).status.success());
    let installed = Command::new(env!("CARGO_BIN_EXE_keygate"))
        .current_dir(repo)
        .args(["scan", "--install-hook"])
        .output()
        .unwrap();
    assert!(
        installed.status.success(),
        "{}",
        String::from_utf8_lossy(&installed.stderr)
    );

    std::fs::write(repo.join("README.md"), "nothing to see\n").unwrap();
    git(repo, &["add", "README.md"], &path_env);
    let clean = git(repo, &["commit", "-q", "-m", "clean"], &path_env);
    assert!(
        clean.status.success(),
        "{}",
        String::from_utf8_lossy(&clean.stderr)
    );

    let (key, secret) = (random(), random());
    std::fs::write(
        repo.join(".env"),
        format!("BINANCE_API_KEY={key}\nBINANCE_SECRET_KEY={secret}\n"),
    )
    .unwrap();
    git(repo, &["add", ".env"], &path_env);
    let leaky = git(repo, &["commit", "-q", "-m", "oops"], &path_env);
    assert!(
        !leaky.status.success(),
        "the hook let a Binance key through"
    );
    let said = String::from_utf8_lossy(&leaky.stdout).into_owned()
        + &String::from_utf8_lossy(&leaky.stderr);
    assert!(said.contains(".env"), "{said}");
    assert!(!said.contains(&secret), "the hook printed the secret");
    let log = git(repo, &["log", "--oneline"], &path_env);
    assert_eq!(
        String::from_utf8_lossy(&log.stdout).lines().count(),
        1,
        "only the clean commit landed"
    );
}

#[test]
fn a_tampered_ciphertext_is_detected_and_named() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let keyfile = dir.path().join("master.key");
    assert!(keygate(
        &home,
        &["init", "--master-key-file", keyfile.to_str().unwrap()],
        ""
    )
    .status
    .success());
    let added = keygate(
        &home,
        &["account", "add", "--exchange", "binance", "--label", "main"],
        &format!("{}\n{}\n", random(), random()),
    );
    assert!(added.status.success());
    let db = rusqlite::Connection::open(home.join("keygate.db")).unwrap();
    let mut sealed: Vec<u8> = db
        .query_row(
            "SELECT sealed_secret FROM accounts WHERE label = 'main'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let last = sealed.len() - 1;
    sealed[last] ^= 0x01;
    db.execute(
        "UPDATE accounts SET sealed_secret = ?1 WHERE label = 'main'",
        [sealed],
    )
    .unwrap();

    let out = keygate(
        &home,
        &["scan", "--managed", dir.path().to_str().unwrap()],
        "",
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("account-secret")
            && stderr.contains("\"main\"")
            && stderr.contains("tampered"),
        "{stderr}"
    );
}
