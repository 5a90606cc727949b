//! `keygate audit archive` and `keygate audit verify-archive`: the log's oldest events
//! moved out of the database, into a file that verifies without it.
//!
//! The log keeps every request, so it grows with the traffic (docs/audit.md, "Size").
//! An archive writes the events older than a given age to a file, verified as they are
//! read, makes the file durable, then removes them from the database in one audited
//! transaction that keeps a mark, MACed with the audit key, of where the log now begins
//! (`keygate_audit::write_archive`). Events younger than [`YOUNGEST_ARCHIVED`] stay:
//! reconciliation reads the last 90 days of forwarded orders and withdrawals from the
//! log, and the daily limits the last day. `serve` must be stopped: it reads where the
//! log begins as it starts.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context as _};
use clap::Args;

use crate::home::{
    admin_event, create_private_file, now_ms, parse_duration, sync_dir, warn_if_unsealed, Unlocked,
};
use crate::output::rfc3339;

/// The youngest events an archive may take: older than the 90 days reconciliation reads
/// back, with two days to spare.
const YOUNGEST_ARCHIVED: Duration = Duration::from_secs(92 * 86_400);

/// `audit archive`
#[derive(Args, Debug)]
pub struct ArchiveArgs {
    /// Move out the events older than this (`180d`, `52w`; at least 92d).
    #[arg(long, value_name = "DURATION")]
    pub older_than: String,
    /// The archive file to write: a new file (owner-only), one JSON line per event, to
    /// keep where the database is not.
    #[arg(long, value_name = "FILE")]
    pub to: PathBuf,
}

/// `audit verify-archive`
#[derive(Args, Debug)]
pub struct VerifyArchiveArgs {
    /// Archive files, oldest first: together they verify from the vault's first event.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Also check that the files hold the archived events these checkpoints name (files
    /// of `audit checkpoint` lines), as they were. Repeatable.
    #[arg(long, value_name = "FILE")]
    pub checkpoint: Vec<PathBuf>,
}

/// Runs `keygate audit archive`.
pub fn archive(mut vault: Unlocked, args: &ArchiveArgs) -> anyhow::Result<i32> {
    let age = parse_duration(&args.older_than).context("--older-than")?;
    if age < YOUNGEST_ARCHIVED {
        bail!(
            "--older-than {}: events of the last 92 days stay in the database \
             (reconciliation reads 90 days of them back)",
            args.older_than
        );
    }
    let _serve_stopped = crate::serve::lock_out_serve(&vault.home)?;
    refuse_unless_verified(&vault)?;
    let before_ms = now_ms().saturating_sub(u64::try_from(age.as_millis()).unwrap_or(u64::MAX));
    let to = std::path::absolute(&args.to)
        .with_context(|| format!("finding where {} is", args.to.display()))?;
    let mut file = create_private_file(&to).context("an archive goes into a new file")?;
    let written = {
        let mut out = BufWriter::new(&mut file);
        let through =
            keygate_audit::write_archive(&vault.store, &vault.audit_key, before_ms, &mut out);
        out.flush()
            .map_err(anyhow::Error::from)
            .and(through.map_err(anyhow::Error::from))
    };
    let through = match written.and_then(|through| {
        file.sync_all()?;
        if let Some(parent) = to.parent() {
            sync_dir(parent)?;
        }
        Ok(through)
    }) {
        Ok(Some(through)) => through,
        Ok(None) => {
            let _ = std::fs::remove_file(&to);
            println!(
                "no event is older than {} ({}): nothing archived",
                args.older_than,
                rfc3339(before_ms)
            );
            return Ok(0);
        }
        Err(e) => {
            let _ = std::fs::remove_file(&to);
            return Err(e).with_context(|| format!("writing the archive {}", to.display()));
        }
    };
    let key = vault.audit_key.clone();
    let file_name = to.display().to_string();
    let (removed, unsealed) = vault
        .audited_change(|s, _| {
            // What the archived events recorded of clients and accounts stays in the log,
            // for `keygate upgrade` to tell a row put back; read inside the transaction,
            // so that no change comes between it and the archive (the log was verified
            // above, and nothing but keygate's own appends followed).
            let mut detail = crate::upgrade::log_record(s)
                .map_err(|e| keygate_audit::Error::Encode(format!("{e:#}")))?;
            detail["through"] = serde_json::json!(through.seq);
            detail["hash"] = serde_json::json!(hex::encode(&through.hash));
            detail["file"] = serde_json::json!(file_name);
            let removed = keygate_audit::remove_archived_within(s, &key, &through)?;
            Ok((removed, vec![admin_event("audit.archive", "log", detail)]))
        })
        .with_context(|| {
            format!(
                "removing the archived events from the database ({} holds them all the same)",
                to.display()
            )
        })?;
    warn_if_unsealed(unsealed);
    println!(
        "archived {removed} events, up to event {}, to {}; the log in the database now \
         begins at event {}. Keep the file where the database is not: `keygate audit \
         verify-archive` checks it.",
        through.seq,
        to.display(),
        through.seq + 1
    );
    // The archive is done; what is left is giving the removed rows' space back to the
    // file system (serve is still locked out, so nothing writes meanwhile).
    if let Err(e) = vault.store.vacuum() {
        eprintln!(
            "keygate: warning: the database file keeps its size ({e}); SQLite reuses the \
             space for new events, and with keygate stopped `sqlite3 keygate.db VACUUM` \
             gives it back to the file system"
        );
    }
    Ok(0)
}

/// Refuses to archive a log that does not verify, or whose tables do not agree with
/// it: the archive and its mark would vouch for it.
fn refuse_unless_verified(vault: &Unlocked) -> anyhow::Result<()> {
    let verified = keygate_audit::verify_checkpoints(&vault.store, &vault.audit_key, &[])
        .context("the audit log must verify before it is archived")?;
    // An archive would take the evidence along.
    if !crate::audit_cmd::begins_with_init(&vault.store, &vault.audit_key)? {
        bail!(
            "the audit log does not begin with the vault's vault.init event (it was emptied \
             and written anew): run `keygate audit verify`; nothing is archived"
        );
    }
    match vault.store.check_seal(&vault.master) {
        Ok(sealed) if sealed < verified.last_admin_seq => bail!(
            "the client and account tables were sealed at event {sealed}, before event {}: \
             run `keygate audit verify`, and `keygate upgrade` to review them, before \
             archiving",
            verified.last_admin_seq
        ),
        Ok(_) => Ok(()),
        Err(e) => Err(e).context("the client and account tables must agree with the log"),
    }
}

/// Runs `keygate audit verify-archive`: exit 0 when the files verify, 1 when not.
pub fn verify_archive(vault: &Unlocked, args: &VerifyArchiveArgs) -> anyhow::Result<i32> {
    let mut reader: Box<dyn Read> = Box::new(std::io::empty());
    for path in &args.files {
        let file = File::open(path).with_context(|| format!("reading {}", path.display()))?;
        reader = Box::new(reader.chain(file));
    }
    let checkpoints = crate::audit_cmd::read_checkpoints(&args.checkpoint)?;
    match keygate_audit::verify_archive(
        BufReader::new(reader),
        &vault.store,
        &vault.audit_key,
        &checkpoints,
    ) {
        Ok(verified) => {
            let start = if verified.from_the_start {
                "from the vault's first event"
            } else {
                "chained to an earlier archive's last event (give its file first to check \
                 them together)"
            };
            let begins = verified.log_begins_after;
            let end = if verified.log_continues_it {
                "the log in the database begins right after them".to_owned()
            } else if begins > verified.last {
                format!(
                    "the log in the database begins after event {begins}: a later archive \
                     holds the events between (give its file after these)"
                )
            } else {
                format!(
                    "the log in the database begins after event {begins}, and does not \
                     continue them: these files are not of this vault's log as it is now"
                )
            };
            let held = match checkpoints.len() {
                0 => String::new(),
                all => format!(
                    "; {} of {all} checkpoint(s) name events of these files, each as it is \
                     here",
                    verified.checkpoints_held
                ),
            };
            println!(
                "archive verified: events {} to {}, {start}; {end}{held}",
                verified.first, verified.last
            );
            Ok(0)
        }
        Err(
            e @ (keygate_audit::Error::Tampered { .. }
            | keygate_audit::Error::BadCheckpoint { .. }
            | keygate_audit::Error::Archive(_)),
        ) => {
            eprintln!(
                "archive verification FAILED: {}",
                crate::output::escape_controls(&e.to_string())
            );
            Ok(1)
        }
        Err(e) => Err(e).context("verifying the archive"),
    }
}
