//! `keygate scan --git` under a git that knows no `GIT_NO_LAZY_FETCH` (before 2.45; Debian
//! 12 ships 2.39), emulated by a `git` on `PATH` that drops it: a test binary of its own,
//! since it changes this process's `PATH`.

#![allow(clippy::unwrap_used)] // A test stops at the first surprise.

use std::path::Path;
use std::process::Command;

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["-c", "user.name=t", "-c", "user.email=t@t"])
        .args([
            "-c",
            "commit.gpgsign=false",
            "-c",
            "init.defaultBranch=main",
        ])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A regression test: a partial clone's promisor remote named a command (`ext::`) and the
/// repository allowed that transport; a git without `GIT_NO_LAZY_FETCH` fetched each
/// missing blob through it, running the command, or stopped at the first refusal.
#[cfg(unix)]
#[test]
fn a_partial_clone_runs_no_transport_its_config_names_on_an_older_git() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("source");
    std::fs::create_dir(&source).unwrap();
    git(&source, &["init", "-q"]);
    git(&source, &["config", "uploadpack.allowFilter", "true"]);
    std::fs::write(source.join("config.txt"), "nothing to see\n").unwrap();
    git(&source, &["add", "."]);
    git(&source, &["commit", "-q", "-m", "config"]);
    let url = format!("file://{}", source.display());
    git(
        dir.path(),
        &[
            "clone",
            "-q",
            "--no-checkout",
            "--filter=blob:none",
            &url,
            "partial",
        ],
    );
    let partial = dir.path().join("partial");
    let marker = dir.path().join("ran");
    let remote = format!("ext::sh -c touch% {}", marker.display());
    git(&partial, &["config", "remote.origin.url", &remote]);
    git(&partial, &["config", "protocol.ext.allow", "always"]);

    // A git that ignores GIT_NO_LAZY_FETCH, as those before 2.45 do.
    let real = String::from_utf8(
        Command::new("sh")
            .args(["-c", "command -v git"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let wrapper = bin.join("git");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nunset GIT_NO_LAZY_FETCH\nexec {} \"$@\"\n",
            real.trim()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = std::env::var("PATH").unwrap_or_default();
    std::env::set_var("PATH", format!("{}:{path}", bin.display()));

    let warnings = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = warnings.clone();
    let scanner = keygate_scan::Scanner::builder()
        .on_warning(std::sync::Arc::new(move |m| {
            sink.lock().unwrap().push(m.to_owned())
        }))
        .build();
    let report = scanner.scan_git_history(&partial).unwrap();
    assert!(!marker.exists(), "the remote's command ran");
    assert!(report.stats.skipped >= 1, "{:?}", report.stats);
    let warnings = warnings.lock().unwrap();
    assert!(
        warnings.iter().any(|w| w.contains("partial clone")),
        "{warnings:?}"
    );
}
