//! `keygate scan` through the real binary: keys the vault manages, and the git hooks.

use std::path::Path;
use std::process::{Command, Output};

use rand::distributions::{Alphanumeric, DistString};

use crate::common::Kg;

fn random() -> String {
    Alphanumeric.sample_string(&mut rand::thread_rng(), 64)
}

/// A vault with account `main`, and a folder `code` whose `settings.py` holds the account's
/// secret with no exchange keyword anywhere near: only the vault knows it is a key.
/// Returns the vault, the folder and the secret.
fn vault_and_leaked_secret() -> (Kg, std::path::PathBuf, String) {
    let kg = Kg::with_key_file();
    let (key, secret) = (random(), random());
    kg.add_account("main", &key, &secret);
    let code = kg.path("code");
    std::fs::create_dir_all(&code).unwrap();
    std::fs::write(code.join("settings.py"), format!("TOKEN = \"{secret}\"\n")).unwrap();
    (kg, code, secret)
}

#[test]
fn a_managed_key_anywhere_is_critical_and_named_without_being_printed() {
    let (kg, code, secret) = vault_and_leaked_secret();
    std::fs::write(code.join("clean.py"), "print('hello')\n").unwrap();

    let out = kg.fails(
        &[
            "scan",
            "--managed",
            "--format",
            "json",
            code.to_str().unwrap(),
        ],
        "",
        1,
    );
    let text = out.json().to_string();
    assert!(text.contains("account main"), "{text}");
    assert!(text.to_lowercase().contains("critical"), "{text}");
    assert!(
        !out.all().contains(&secret),
        "the managed secret was printed"
    );

    // Without --managed the token has no exchange context.
    kg.ok(&["scan", "--format", "json", code.to_str().unwrap()], "");
}

/// A regression test (found by review): `--threads` had no bound, and 4294967295 asked
/// for more memory than the machine had (5000 failed to start its threads, exit 101).
#[test]
fn a_thread_count_past_the_bound_is_refused() {
    let (kg, code, _) = vault_and_leaked_secret();
    let code = code.to_str().unwrap();
    for threads in ["0", "257", "4294967295", "18446744073709551615"] {
        let out = kg.fails(&["scan", "--threads", threads, code], "", 2);
        assert!(
            out.stderr.contains("--threads"),
            "{threads}: {}",
            out.stderr
        );
    }
    kg.ok(&["scan", "--threads", "256", "--no-progress", code], "");
}

/// A regression test (from a review): `keygate scan | head` printed "Broken pipe" and
/// exited 2, which says the scan failed. The reader going away is quiet, and the exit code
/// still says what the scan found: 1 for findings, 0 for none.
#[test]
fn a_scan_piped_into_head_keeps_its_exit_code() {
    let (kg, code, secret) = vault_and_leaked_secret();
    let dir = code.to_str().unwrap();
    for format in ["human", "json", "sarif"] {
        let out = kg.run_without_reader(&["scan", "--managed", "--format", format, dir]);
        assert_eq!(out.code, 1, "{format}: {out:#?}");
        assert!(!out.stderr.contains("error"), "{format}: {}", out.stderr);
        assert!(!out.stderr.contains(&secret));
    }
    std::fs::remove_file(code.join("settings.py")).unwrap();
    std::fs::write(code.join("clean.py"), "print('hello')\n").unwrap();
    let out = kg.run_without_reader(&["scan", "--managed", dir]);
    assert_eq!(out.code, 0, "{out:#?}");
    assert!(!out.stderr.contains("error"), "{}", out.stderr);
}

/// A regression test: `scan -o FILE --no-redact` wrote live credentials to a file anyone
/// could read (0644).
#[cfg(unix)]
#[test]
fn an_unredacted_report_file_is_readable_by_its_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let (kg, code, secret) = vault_and_leaked_secret();
    let report = kg.path("report.json");
    std::fs::write(&report, "").unwrap();
    std::fs::set_permissions(&report, std::fs::Permissions::from_mode(0o644)).unwrap();
    let args = ["scan", "--managed", "--no-redact", "--format", "json", "-o"];
    let out = kg.fails(
        &[
            &args[..],
            &[report.to_str().unwrap(), code.to_str().unwrap()],
        ]
        .concat(),
        "",
        1,
    );
    assert!(!out.all().contains(&secret), "printed as well as written");
    assert!(std::fs::read_to_string(&report).unwrap().contains(&secret));
    let mode = std::fs::metadata(&report).unwrap().permissions().mode();
    assert_eq!(mode & 0o077, 0, "{mode:o}");

    // Found by review: the report went through a symbolic link, and into a file another
    // user owns (made owner-only, so theirs to read). Neither is written now.
    let elsewhere = kg.path("elsewhere.json");
    std::fs::write(&elsewhere, "theirs").unwrap();
    let link = kg.path("link.json");
    std::os::unix::fs::symlink(&elsewhere, &link).unwrap();
    let report_to = |path: &Path| {
        kg.fails(
            &[&args[..], &[path.to_str().unwrap(), code.to_str().unwrap()]].concat(),
            "",
            2,
        )
    };
    report_to(&link);
    assert_eq!(std::fs::read_to_string(&elsewhere).unwrap(), "theirs");
    // Found by review of that fix: a device (`/dev/null`), or a link to one
    // (`/dev/stdout`), is written as it is: neither refused nor made owner-only.
    // As root, on a null device of the test's own: a regression must not break the
    // machine's `/dev/null`, which others cannot change. It is made under Cargo's
    // scratch directory in the build tree, as the temporary directory may be a `nodev`
    // mount (Debian 13's /tmp is), where a device node cannot be opened.
    let scratch = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let null = if rustix::process::geteuid().is_root() {
        let own = scratch.path().join("null");
        let made = Command::new("mknod")
            .args(["-m", "0666"])
            .arg(&own)
            .args(["c", "1", "3"])
            .status()
            .unwrap();
        assert!(made.success());
        own
    } else {
        Path::new("/dev/null").to_owned()
    };
    let null_link = kg.path("null-link");
    std::os::unix::fs::symlink(&null, &null_link).unwrap();
    for device in [&null, &null_link] {
        kg.fails(
            &[
                &args[..],
                &[device.to_str().unwrap(), code.to_str().unwrap()],
            ]
            .concat(),
            "",
            1,
        );
    }
    let null_mode = std::fs::metadata(&null).unwrap().permissions().mode();
    assert_eq!(null_mode & 0o777, 0o666, "{null_mode:o}");
    // Only root can give a file away to test with (and only root could write into
    // another user's file).
    if rustix::process::geteuid().is_root() {
        let theirs = kg.path("theirs.json");
        std::fs::write(&theirs, "theirs").unwrap();
        std::os::unix::fs::chown(&theirs, Some(65534), Some(65534)).unwrap();
        let refused = report_to(&theirs);
        assert!(
            refused.stderr.contains("belongs to another user"),
            "{refused:?}"
        );
        assert_eq!(std::fs::read_to_string(&theirs).unwrap(), "theirs");
    }
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
    // Regression: with KEYGATE_HOME or KEYGATE_LOG set, clap took those global options
    // as arguments `--install-hook` could not be used with, and nothing was installed.
    let install = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_keygate"))
            .current_dir(repo)
            .env("KEYGATE_HOME", repo.join("no-vault-needed"))
            .env("KEYGATE_LOG", "warn")
            .args(["scan", "--install-hook"])
            .args(extra)
            .output()
            .unwrap()
    };
    let mixed = install(&["--git"]);
    assert_eq!(mixed.status.code(), Some(2), "{mixed:?}");
    let installed = install(&[]);
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

    // A key pasted into the message is pushed and cloned with the history too: the
    // commit-msg hook stops it, and a message the repository's .keygateignore lists
    // goes through.
    git(repo, &["rm", "-q", "--cached", ".env"], &path_env);
    std::fs::write(repo.join("notes.md"), "nothing here either\n").unwrap();
    git(repo, &["add", "notes.md"], &path_env);
    let message = format!("tune the bot\n\nBINANCE_API_KEY={key}\nBINANCE_SECRET_KEY={secret}\n");
    let leaky = git(repo, &["commit", "-q", "-m", &message], &path_env);
    let said = String::from_utf8_lossy(&leaky.stdout).into_owned()
        + &String::from_utf8_lossy(&leaky.stderr);
    assert!(
        !leaky.status.success(),
        "the message's key went through: {said}"
    );
    assert!(said.contains("COMMIT_EDITMSG"), "{said}");
    assert!(said.contains("from the commit message"), "{said}");
    assert!(!said.contains(&secret), "the hook printed the secret");
    let fingerprint = said
        .split("fingerprint: ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .expect("the finding's fingerprint");
    std::fs::write(repo.join(".keygateignore"), format!("{fingerprint}\n")).unwrap();
    let listed = git(repo, &["commit", "-q", "-m", &message], &path_env);
    assert!(
        listed.status.success(),
        "{}",
        String::from_utf8_lossy(&listed.stderr)
    );
    let log = git(repo, &["log", "--oneline"], &path_env);
    assert_eq!(String::from_utf8_lossy(&log.stdout).lines().count(), 2);

    // Found by review: with `git commit -v` the message's file holds the staged diff
    // below git's scissors line, which git does not keep; the commit that removes a key
    // (its diff names it) was blocked. A key above the scissors still is.
    std::fs::remove_file(repo.join(".keygateignore")).unwrap();
    let (key, secret) = (random(), random());
    std::fs::write(
        repo.join("bot.env"),
        format!("BINANCE_API_KEY={key}\nBINANCE_SECRET_KEY={secret}\n"),
    )
    .unwrap();
    git(repo, &["add", "bot.env"], &path_env);
    let unchecked = git(
        repo,
        &["commit", "-q", "--no-verify", "-m", "leak"],
        &path_env,
    );
    assert!(unchecked.status.success());
    std::fs::write(
        repo.join("bot.env"),
        "BINANCE_API_KEY=\nBINANCE_SECRET_KEY=\n",
    )
    .unwrap();
    git(repo, &["add", "bot.env"], &path_env);
    let verbose = |editor: &str| {
        git(
            repo,
            &["-c", &format!("core.editor={editor}"), "commit", "-q", "-v"],
            &path_env,
        )
    };
    let leaked_above = format!("sed -i '1i BINANCE_SECRET_KEY={secret} BINANCE_API_KEY={key}'");
    let blocked = verbose(&leaked_above);
    assert!(
        !blocked.status.success(),
        "a key above the scissors went through"
    );
    let removal = verbose("sed -i '1i remove the leaked key'");
    assert!(
        removal.status.success(),
        "{}",
        String::from_utf8_lossy(&removal.stdout).into_owned()
            + &String::from_utf8_lossy(&removal.stderr)
    );
}

/// A regression test (from two reviews): a staged file over the 64 MiB limit was skipped
/// with nothing but a count in the summary, and `--staged` (the pre-commit hook) passed,
/// so a 65 MiB `dump.sql` holding keys was committed unseen; then it blocked every such
/// commit, keys or not. It is scanned, a window at a time, and its keys found where they
/// stand.
#[test]
fn a_staged_file_over_the_size_limit_is_scanned() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path();
    let path_env = std::env::var("PATH").unwrap_or_default();
    assert!(git(repo, &["init", "-q"], &path_env).status.success());
    let row = "INSERT INTO settings VALUES ('theme', 'dark');\n";
    let rows = (65 << 20) / row.len() + 1;
    let key = "u8jzPde0IgxLd6GncfBAepfJBd0Kh8oOOL8dKLzdocJ2isAjIhKtJ0RlgLKOmxgJ";
    let dump = row.repeat(rows) + &format!("INSERT INTO api_keys VALUES ('binance', '{key}');\n");
    std::fs::write(repo.join("dump.sql"), dump).unwrap();
    assert!(git(repo, &["add", "dump.sql"], &path_env).status.success());
    let out = Command::new(env!("CARGO_BIN_EXE_keygate"))
        .current_dir(repo)
        .env("KEYGATE_HOME", repo.join("no-vault-needed"))
        .args(["scan", "--staged", "--no-progress"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(
        stdout.contains(&format!("dump.sql:{}", rows + 1)),
        "{stdout}"
    );
    assert!(!stdout.contains(key), "{stdout}");
}

/// From a review: outside a repository, `git diff --cached` compares files and answered
/// with its whole usage; the scan says where the problem is.
#[test]
fn staged_outside_a_repository_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_keygate"))
        .current_dir(dir.path())
        .env("KEYGATE_HOME", dir.path().join("no-vault-needed"))
        .env("GIT_CEILING_DIRECTORIES", dir.path().parent().unwrap())
        .args(["scan", "--staged", "--no-progress"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("not a git repository"), "{stderr}");
    assert!(!stderr.contains("usage"), "{stderr}");
}

#[test]
fn a_tampered_ciphertext_is_detected_and_named() {
    let kg = Kg::with_key_file();
    kg.add_account("main", &random(), &random());
    let db = rusqlite::Connection::open(kg.db()).unwrap();
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

    // The edit breaks the seal over the client and account tables first: no real key is
    // used until `keygate upgrade` has shown the account and sealed the tables again.
    let home = kg.path("");
    let scan = ["scan", "--managed", home.to_str().unwrap()];
    let out = kg.fails(&scan, "", 2);
    assert!(
        out.stderr.contains("do not match their seal"),
        "{}",
        out.stderr
    );
    kg.ok(&["upgrade", "--yes"], "");
    let out = kg.fails(&scan, "", 2);
    let said = out.stderr;
    assert!(
        said.contains("account-secret") && said.contains("\"main\"") && said.contains("tampered"),
        "{said}"
    );
    let doctor = kg.run(&["doctor"], "");
    assert_ne!(doctor.code, 0, "{doctor:?}");
    let said = doctor.stdout;
    assert!(
        said.contains("do not open") && said.contains("main (") && said.contains("tampered"),
        "{said}"
    );
}

/// A regression test: `scan --managed` named keys in the vault "(account account main)"
/// and "(account client bot2)", showed an account's API key on a line labelled `secret`,
/// and told to rotate a client's secret at the exchange, which never saw it: `keygate
/// client rotate` replaces it.
#[test]
fn a_managed_finding_says_whose_key_it_is_which_half_and_how_to_replace_it() {
    let kg = Kg::with_key_file();
    let (key, secret) = (random(), random());
    kg.add_account("main", &key, &secret);
    let issued = kg.issue("main", "bot2", &[]);
    let client_secret = issued["secret"].as_str().unwrap();
    let code = kg.path("code");
    std::fs::create_dir_all(&code).unwrap();
    std::fs::write(
        code.join("keys.json"),
        format!("[{{\"api_key\": \"{key}\", \"secret\": \"{secret}\"}}]\n"),
    )
    .unwrap();
    std::fs::write(
        code.join("bot.py"),
        format!("SECRET = \"{client_secret}\"\n"),
    )
    .unwrap();
    let scan = ["scan", "--managed", code.to_str().unwrap()];

    let out = kg.fails(&[&scan[..], &["--format", "json"]].concat(), "", 1);
    let report = out.json();
    let findings: Vec<(&str, &str, &str, &str)> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["title"].as_str().unwrap(),
                f["parts"][0]["role"].as_str().unwrap(),
                f["managed_account"].as_str().unwrap(),
                f["fix"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(findings.len(), 3, "{report}");
    let (title, role, owner, fix) = findings[0];
    assert_eq!(
        (title, role, owner),
        (
            "key managed by keygate: secret of client bot2",
            "secret",
            "client bot2"
        )
    );
    assert!(
        fix.contains("`keygate client rotate bot2`") && !fix.contains("at the exchange"),
        "{fix}"
    );
    let (title, role, owner, fix) = findings[1];
    assert_eq!(
        (title, role, owner),
        (
            "key managed by keygate: API key of account main",
            "key",
            "account main"
        )
    );
    assert!(
        fix.contains("at the exchange") && fix.contains("`keygate account rotate main`"),
        "{fix}"
    );
    let (title, role, owner, _) = findings[2];
    assert_eq!(
        (title, role, owner),
        (
            "key managed by keygate: secret of account main",
            "secret",
            "account main"
        )
    );

    let human = kg.fails(&scan, "", 1).stdout;
    assert!(
        !human.contains("account account") && !human.contains("account client"),
        "{human}"
    );
    let key_line = format!("    key        line 1     {}…{}", &key[..4], &key[60..]);
    assert!(human.contains(&key_line), "{human}");
    for value in [key.as_str(), secret.as_str(), client_secret] {
        assert!(!out.all().contains(value), "printed in full");
        assert!(!human.contains(value), "printed in full");
    }
}

/// Found by review: the fingerprints a pull request's author lists in its
/// `.keygateignore` silenced the scan of that pull request, with no way to turn the
/// default file off; and a `.gitignore` of `*` above the scanned directory (anyone may
/// write one in /tmp) made a clean scan of nothing, without a word.
#[test]
fn a_scan_can_refuse_the_scanned_roots_ignore_file_and_says_when_it_scanned_nothing() {
    let kg = Kg::with_key_file();
    let pr = kg.path("pr");
    std::fs::create_dir_all(&pr).unwrap();
    std::fs::write(
        pr.join(".env"),
        format!(
            "BINANCE_API_KEY={}\nBINANCE_API_SECRET={}\n",
            random(),
            random()
        ),
    )
    .unwrap();
    let pr_arg = pr.to_str().unwrap();
    let found = kg
        .fails(&["scan", "--format", "json", pr_arg], "", 1)
        .json();
    let fingerprint = found["findings"][0]["fingerprint"]
        .as_str()
        .unwrap()
        .to_owned();
    std::fs::write(pr.join(".keygateignore"), format!("{fingerprint}\n")).unwrap();
    kg.ok(&["scan", pr_arg], "");
    kg.fails(&["scan", "--no-default-ignore-file", pr_arg], "", 1);
    // With the base branch's file (here, one listing nothing).
    let base = kg.path("base.keygateignore");
    std::fs::write(&base, "# nothing\n").unwrap();
    let base_arg = base.to_str().unwrap();
    kg.fails(
        &[
            "scan",
            "--no-default-ignore-file",
            "--ignore-file",
            base_arg,
            pr_arg,
        ],
        "",
        1,
    );

    // Found by review of the fix: ignore files above the scanned directory are not read
    // at all now; rules of its own that leave out every file are told of.
    let above = kg.path("shared");
    let dump = above.join("dump");
    std::fs::create_dir_all(&dump).unwrap();
    std::fs::write(above.join(".gitignore"), "*.env\n").unwrap();
    std::fs::copy(pr.join(".env"), dump.join(".env")).unwrap();
    kg.fails(&["scan", dump.to_str().unwrap()], "", 1);
    std::fs::remove_file(dump.join(".env")).unwrap();
    std::fs::write(dump.join("notes.txt"), "nothing here\n").unwrap();
    // An `.ignore` file: a `.gitignore` hides nothing outside a git work tree.
    std::fs::write(dump.join(".ignore"), "*\n").unwrap();
    let quiet = kg.ok(&["scan", dump.to_str().unwrap()], "");
    assert!(
        quiet.stderr.contains(
            "no file was scanned: ignore rules (.gitignore, .ignore) left out every file"
        ),
        "{quiet:?}"
    );
    let all = kg.ok(&["scan", "--no-ignore", dump.to_str().unwrap()], "");
    assert!(!all.stderr.contains("no file was scanned"), "{all:?}");
}

/// The exchange libraries a bot installs are full of key-shaped names (method names
/// after API paths, broker ids, documented example keys) beside exchange names: the
/// real ccxt and python-binance packages from PyPI, which `scripts/test.sh` installs,
/// scan clean (exit 0), compiled `.pyc` files included.
#[test]
fn the_exchange_libraries_a_bot_installs_scan_clean() {
    let kg = Kg::with_key_file();
    let found = Command::new(crate::common::python())
        .args([
            "-c",
            "import os, ccxt, binance; \
             print(os.path.dirname(ccxt.__file__)); print(os.path.dirname(binance.__file__))",
        ])
        .output()
        .unwrap();
    assert!(found.status.success(), "{found:?}");
    let packages = String::from_utf8(found.stdout).unwrap();
    let packages: Vec<&str> = packages.lines().collect();
    assert_eq!(packages.len(), 2, "{packages:?}");
    let mut args = vec!["scan", "--format", "json"];
    args.extend(&packages);
    let report = kg.ok(&args, "").json();
    let findings = report["findings"].as_array().unwrap();
    // Binance's documented example key, in python-binance's docstrings, is suppressed.
    assert!(
        findings
            .iter()
            .all(|f| f["suppressed"] == "documentation-example"),
        "{report:#}"
    );
    let scanned = report["stats"]["scanned"].as_u64().unwrap();
    assert!(scanned > 500, "{report:#}");
}
