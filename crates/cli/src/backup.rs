//! `keygate vault backup DIR`: a copy of the vault that is itself a home.
//!
//! The database is not one file while keygate runs: SQLite keeps recent changes in
//! `keygate.db-wal` beside it, and a copy of `keygate.db` alone can miss the whole vault,
//! or, copied over a restored home that kept its `-wal`, not restore at all. The backup is
//! taken by SQLite itself (`VACUUM INTO`) as of one moment, while `serve` goes on, into a
//! new directory with the config file beside it; the copy's audit log and tables are then
//! verified with the vault's key. The master key is not copied: it stays wherever the
//! config file says it is (a key file, an environment variable, a token), to be kept
//! apart from the backups.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use keygate_store::Store;

use crate::audit_cmd::configured_checkpoints;
use crate::home::{admin_event, check_no_one_else_writes, sync_dir, write_private_file, Unlocked};

/// Options of `keygate vault backup`.
#[derive(clap::Args, Debug)]
pub struct BackupArgs {
    /// A directory that does not exist yet: it is made (owner-only) and holds the
    /// backup's `keygate.db` and `config.toml`, a home that `--home DIR` opens.
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
}

/// Writes the backup, audited as `vault.backup` (the event is in the copy), and
/// verifies it. Returns 1 when the copy does not verify (it is kept, as evidence).
///
/// The copy is made in a hidden directory beside `DIR` (`.NAME.partial`) and renamed to
/// `DIR` once whole and synced, so that a backup stopped halfway (killed, out of space)
/// is never found under the name of a backup. One that fails is recorded as
/// `vault.backup_failed`, after the `vault.backup` that came before the copy: every copy
/// of the vault's sealed secrets is in the log, and no event is left telling of a backup
/// that is not there.
pub fn run(mut vault: Unlocked, args: &BackupArgs) -> anyhow::Result<i32> {
    let dir = &std::path::absolute(&args.dir)
        .with_context(|| format!("finding where {} is", args.dir.display()))?;
    let (Some(parent), Some(name)) = (dir.parent(), dir.file_name()) else {
        anyhow::bail!("{} cannot be a backup directory", dir.display());
    };
    let mut partial_name = std::ffi::OsString::from(".");
    partial_name.push(name);
    partial_name.push(".partial");
    let partial = parent.join(partial_name);
    let db = partial.join("keygate.db");
    // SQLite takes the copy's name as text.
    if db.to_str().is_none() {
        anyhow::bail!(
            "{} is not UTF-8; give the backup a UTF-8 path",
            dir.display()
        );
    }
    if dir.symlink_metadata().is_ok() {
        anyhow::bail!(
            "{} exists; a backup goes into a new directory",
            dir.display()
        );
    }
    // Not made: a backup to a removable disk that is not mounted would land, under the
    // mount point, on the vault's own disk (found by review).
    if !parent.is_dir() {
        anyhow::bail!(
            "{} is not a directory; a backup goes into a directory that exists (is the \
             disk it is on mounted?)",
            parent.display()
        );
    }
    check_no_one_else_writes(parent)?;
    // Made here and only here: a directory that exists (another user's, made in a
    // shared parent) is never written into.
    let mut builder = std::fs::DirBuilder::new();
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(&partial).with_context(|| {
        format!(
            "creating {}; if a backup to {} was stopped before it finished, remove it \
             and back up again",
            partial.display(),
            dir.display()
        )
    })?;
    let event = admin_event(
        "vault.backup",
        "database",
        serde_json::json!({ "to": dir.display().to_string() }),
    );
    if let Err(e) = vault.change(&[event], |_, _| Ok(())) {
        let _ = std::fs::remove_dir(&partial);
        return Err(e).context("recording the backup in the audit log; nothing was copied");
    }
    // Read before the copy is made: a change another command makes meanwhile appends a
    // checkpoint of an event the copy does not hold.
    let checkpoints = configured_checkpoints(&vault);
    if let Err(e) = write_backup(&vault, &partial, &db).and_then(|()| {
        rename_into_place(&partial, dir)
            .with_context(|| format!("renaming {} to {}", partial.display(), dir.display()))
    }) {
        // Nothing half-made is left to be taken for a backup, and the log says so.
        let _ = std::fs::remove_dir_all(&partial);
        let failed = admin_event(
            "vault.backup_failed",
            "database",
            serde_json::json!({ "to": dir.display().to_string(), "error": format!("{e:#}") }),
        );
        if let Err(unrecorded) = vault.change(&[failed], |_, _| Ok(())) {
            eprintln!(
                "keygate: warning: the failed backup could not be recorded ({unrecorded:#}); \
                 the log's vault.backup event for {} tells of a copy that was not made",
                dir.display()
            );
        }
        return Err(e);
    }
    // A backup whose name a power cut could take back is no backup: said, but it is made.
    if let Err(e) = sync_dir(parent) {
        eprintln!(
            "keygate: warning: {} could not be synced ({e:#}): the backup's name may not \
             survive a power cut until the system writes it",
            parent.display()
        );
    }
    match checkpoints
        .and_then(|checkpoints| verify_copy(&vault, &dir.join("keygate.db"), &checkpoints))
    {
        Ok((events, checkpoints)) => {
            let held = match checkpoints {
                0 => String::new(),
                n => format!(", holding the {n} checkpoint(s) of [audit] checkpoint_file"),
            };
            println!(
                "backed up to {}: {events} audit events, verified{held}; the client and \
                 account tables agree with them. The master key is not in it: keep it \
                 apart, as the config file names it.",
                dir.display()
            );
            // A directory that exists is no proof a disk was mounted there (found by
            // review): a copy on the vault's own file system goes down with it.
            if on_one_file_system(dir, &vault.home.dir) {
                crate::output::tell(format_args!(
                    "keygate: note: {} is on the file system that holds the vault: it does \
                     not outlast the loss of that disk; copy it elsewhere too",
                    dir.display()
                ));
            }
            Ok(0)
        }
        Err(problem) => {
            eprintln!(
                "backed up to {}, but the copy does NOT verify: {problem}",
                dir.display()
            );
            Ok(1)
        }
    }
}

/// Whether `a` and `b` are on one file system (one device).
fn on_one_file_system(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev(),
        _ => false,
    }
}

/// Renames the finished backup to its name, never over anything put there meanwhile (an
/// empty directory would be replaced by a plain rename); on a file system that cannot
/// rename so, with a plain rename when nothing is there.
fn rename_into_place(partial: &Path, dir: &Path) -> std::io::Result<()> {
    use rustix::fs::{renameat_with, RenameFlags, CWD};
    match renameat_with(CWD, partial, CWD, dir, RenameFlags::NOREPLACE) {
        Ok(()) => Ok(()),
        Err(rustix::io::Errno::INVAL | rustix::io::Errno::NOSYS) => {
            if dir.symlink_metadata().is_ok() {
                return Err(std::io::ErrorKind::AlreadyExists.into());
            }
            std::fs::rename(partial, dir)
        }
        Err(e) => Err(e.into()),
    }
}

/// Copies the database (into a file made owner-only here: SQLite would make it with the
/// process's umask) and the config file into `dir`, and syncs them.
fn write_backup(vault: &Unlocked, dir: &Path, db: &Path) -> anyhow::Result<()> {
    write_private_file(db, b"")?;
    vault
        .store
        .copy_into(db)
        .with_context(|| format!("copying the database into {}", db.display()))?;
    let config = std::fs::read(vault.home.config_path())
        .with_context(|| format!("reading {}", vault.home.config_path().display()))?;
    write_private_file(&dir.join("config.toml"), &config)?;
    sync_dir(dir)
}

/// The copy's audit log verified with the vault's key, against the config's `[audit]
/// checkpoint_file` too, and its tables' seal checked against it, as `audit verify`
/// checks a home: the number of events and of checkpoints held, or what is wrong. A copy
/// of a vault put back from an older backup verifies on its own: only the checkpoints
/// tell it.
fn verify_copy(
    vault: &Unlocked,
    db: &Path,
    checkpoints: &[keygate_audit::Checkpoint],
) -> Result<(u64, usize), String> {
    let copy = Store::open(db).map_err(|e| e.to_string())?;
    let verified = keygate_audit::verify_checkpoints(&copy, &vault.audit_key, checkpoints)
        .map_err(|e| e.to_string())?;
    match copy.check_seal(&vault.master) {
        Ok(sealed) if sealed < verified.last_admin_seq => Err(format!(
            "the client and account tables were sealed at event {sealed}, before event {}",
            verified.last_admin_seq
        )),
        Ok(_) => Ok((verified.events, checkpoints.len())),
        Err(e) => Err(e.to_string()),
    }
}
