//! A home on a disk that will not take a write: read-only, or full. Each test runs
//! keygate in a mount namespace of its own (`unshare`), so that the read-only or full
//! file system it mounts over the home is seen by that keygate alone and goes with it.

use std::path::Path;
use std::process::Command;

use crate::common::Kg;

/// Runs `script` (sh) in a mount namespace of its own, as root in it (as the real root,
/// or as an unprivileged user mapped to root in a user namespace of its own), with `$1`
/// the home and `$2` the keygate binary; its exit code and standard error.
fn in_own_mounts(script: &str, home: &Path) -> (i32, String) {
    let as_root = is_root();
    let mut command = Command::new("unshare");
    if !as_root {
        command.args(["--user", "--map-root-user"]);
    }
    let out = command
        .args(["--mount", "sh", "-c", script, "sh"])
        .arg(home)
        .arg(env!("CARGO_BIN_EXE_keygate"))
        .env_remove("KEYGATE_HOME")
        .env_remove("KEYGATE_LOG")
        .output()
        .expect("run unshare (util-linux)");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out.status.code().unwrap_or(-1), stderr)
}

fn is_root() -> bool {
    let out = Command::new("id").arg("-u").output().expect("run id -u");
    String::from_utf8_lossy(&out.stdout).trim() == "0"
}

/// A home with one client, as a stopped keygate leaves it. The scripts below remove
/// SQLite's shared-memory file, as a restart of the machine does (it is rebuilt from the
/// write-ahead log by the next open, which must write it).
fn home_with_a_client() -> Kg {
    let kg = Kg::with_key_file();
    kg.add_account_with("main", "K", "S", &["--upstream", "http://127.0.0.1:9"]);
    kg.issue("main", "bot1", &[]);
    kg
}

/// A regression test (found by review): on a home mounted read-only (a backup on
/// read-only media) every command failed with SQLite's "unable to open database file",
/// which names neither the cause nor the way out.
#[test]
fn a_home_that_cannot_be_written_is_named_as_such() {
    let kg = home_with_a_client();
    let script = "rm -f \"$1/keygate.db-shm\"
         mount --bind \"$1\" \"$1\" && mount -o remount,bind,ro \"$1\" || exit 90
         exec \"$2\" --home \"$1\" client list";
    let (code, stderr) = in_own_mounts(script, &kg.home());
    assert_ne!(code, 90, "could not mount the home read-only: {stderr}");
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("cannot be written"), "{stderr}");
    // Said once (found by review: a cause both in the message and given as the error's
    // source was said twice in the report of the whole chain).
    assert_eq!(
        stderr.matches("Read-only file system").count(),
        1,
        "{stderr}"
    );
    assert!(
        stderr.contains(&kg.home().display().to_string()),
        "{stderr}"
    );
}

/// A regression test (found by review): on a full disk, with no gateway holding the
/// database open, every command (`doctor`, `audit export` among them) failed with
/// SQLite's "disk I/O error", which does not say the disk is full.
#[test]
fn a_home_on_a_full_disk_is_named_as_such() {
    let kg = home_with_a_client();
    let script =
        "full=\"$1.full\"; mkdir \"$full\" && mount -t tmpfs -o size=2m tmpfs \"$full\" || exit 90
         cp -a \"$1\"/. \"$full\"/ && rm -f \"$full/keygate.db-shm\" || exit 91
         dd if=/dev/zero of=\"$full/filler\" bs=4k 2>/dev/null
         exec \"$2\" --home \"$full\" client list";
    let (code, stderr) = in_own_mounts(script, &kg.home());
    assert!(!matches!(code, 90 | 91), "could not fill a disk: {stderr}");
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("the disk holding it is full"), "{stderr}");
}
