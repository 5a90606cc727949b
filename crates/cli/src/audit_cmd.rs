//! `keygate audit`: verify, tail, query and export the tamper-evident log.

use std::borrow::Cow;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};
use keygate_audit::{csv_header, csv_line, AuditKey, Checkpoint, Filter, Verified};
use keygate_core::{Event, EventBody, Outcome};
use keygate_store::Store;
use serde::Serialize;

use crate::home::{now_ms, parse_duration, read_bounded, Unlocked};
use crate::output::{escape_controls, rfc3339, tell, STDOUT_WRITE};

/// The most a checkpoint file may hold: a line per checkpoint, a few hundred bytes each.
const MAX_CHECKPOINT_FILE_LEN: u64 = 64 * 1024 * 1024;

/// Events read from the database per page.
const PAGE: u64 = 10_000;
/// How often `tail -f` looks for new events.
const FOLLOW_INTERVAL: Duration = Duration::from_millis(250);

/// `keygate audit …`
#[derive(Subcommand, Debug)]
pub enum AuditCmd {
    /// Check the whole chain; exit 1 naming the first bad event.
    Verify(VerifyArgs),
    /// Print a checkpoint of the log (one JSON line) to keep outside this machine.
    Checkpoint(CheckpointArgs),
    /// Show the last events; exit 1 if those do not verify (they still come, from what
    /// the log holds).
    Tail(TailArgs),
    /// Show the events that match filters; exit 1 if the log does not verify (they still
    /// come, from what it holds).
    Query(QueryArgs),
    /// Write events to standard output as JSON lines or CSV; exit 1 if the log does not
    /// verify (they still come, from what it holds).
    Export(ExportArgs),
    /// Move the events older than a given age (92 days at least) out of the database,
    /// into a file that verifies without it; serve must be stopped.
    Archive(crate::archive::ArchiveArgs),
    /// Check archive files (oldest first); exit 1 naming the first bad event.
    VerifyArchive(crate::archive::VerifyArchiveArgs),
}

/// `audit checkpoint`
#[derive(Args, Debug)]
pub struct CheckpointArgs {
    /// Append the checkpoint to FILE, synced, instead of printing it, once the log is
    /// checked to hold the checkpoints FILE has already: a vault put back from a backup
    /// older than them is refused, not anchored anew. FILE must exist (keygate never
    /// creates one: `touch` it to start). When FILE is the config's `[audit]
    /// checkpoint_file`, the vault records it as where its checkpoints are kept (an
    /// audited change, sealed), if it recorded none or another.
    #[arg(long, value_name = "FILE")]
    pub append: Option<PathBuf>,
    /// Record that the vault keeps its checkpoints in no file any more, once `[audit]
    /// checkpoint_file` is out of config.toml: until then `serve`, `doctor` and `audit
    /// verify` refuse a config without it. An audited change, alerted as a warning.
    #[arg(long, conflicts_with = "append")]
    pub drop_file: bool,
}

/// `audit verify`
#[derive(Args, Debug)]
pub struct VerifyArgs {
    /// Also check that the log still holds the events these checkpoints name (files of
    /// `audit checkpoint` lines): a log put back as it was earlier, cut short or rebuilt
    /// fails. Repeatable. The config's `[audit] checkpoint_file` is checked too.
    #[arg(long, value_name = "FILE")]
    pub checkpoint: Vec<PathBuf>,
}

/// `audit tail`
#[derive(Args, Debug)]
pub struct TailArgs {
    /// How many events.
    #[arg(short = 'n', long = "lines", default_value_t = 20)]
    pub n: u64,
    /// Keep printing new events as they are written.
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// One JSON object per line.
    #[arg(long)]
    pub json: bool,
}

/// Filters shared by `query` and `export`.
#[derive(Args, Debug)]
pub struct FilterArgs {
    /// Only events about this client.
    #[arg(long)]
    pub client: Option<String>,
    /// Only events from this time on: a duration ago (`1h`, `7d`) or an RFC 3339 UTC
    /// time (`2026-12-06T13:00:00Z`).
    #[arg(long, value_name = "WHEN")]
    pub since: Option<String>,
    /// Only events before this time: a duration ago or an RFC 3339 UTC time. With two
    /// RFC 3339 times, a fixed window: the same events whenever it is run.
    #[arg(long, value_name = "WHEN")]
    pub until: Option<String>,
    /// Only requests that were allowed (with what became of them upstream) or denied.
    #[arg(long, value_enum)]
    pub decision: Option<DecisionArg>,
}

/// A request decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum DecisionArg {
    /// Forwarded.
    Allowed,
    /// Refused.
    Denied,
}

/// `audit query`
#[derive(Args, Debug)]
pub struct QueryArgs {
    #[command(flatten)]
    pub filter: FilterArgs,
    /// One JSON object per line.
    #[arg(long)]
    pub json: bool,
}

/// Export formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// One JSON object per line, with `seq`.
    Jsonl,
    /// RFC 4180 CSV with a header.
    Csv,
}

/// `audit export`
#[derive(Args, Debug)]
pub struct ExportArgs {
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Jsonl)]
    pub format: Format,
    #[command(flatten)]
    pub filter: FilterArgs,
}

/// Runs an audit subcommand; returns the process exit code.
pub fn run(mut vault: Unlocked, cmd: &AuditCmd) -> anyhow::Result<i32> {
    match cmd {
        AuditCmd::Verify(a) => verify(&vault, a),
        AuditCmd::Checkpoint(a) => checkpoint(&mut vault, a),
        AuditCmd::Tail(a) => tail(&vault, a),
        AuditCmd::Query(a) => query(&vault, a),
        AuditCmd::Export(a) => export(&vault, a),
        AuditCmd::Archive(a) => crate::archive::archive(vault, a),
        AuditCmd::VerifyArchive(a) => crate::archive::verify_archive(&vault, a),
    }
}

/// The checkpoint files to check the log against: those `given`, and the config's
/// `[audit] checkpoint_file`, which must exist (`keygate audit checkpoint --append FILE` starts
/// it): one that is gone (a mount that is not there) anchors nothing, and is no reason to
/// believe the log. It must also be the file the vault records (sealed, so that it can be
/// neither taken out nor changed without the master key): a config that names none, or
/// another, while the vault records one is refused, since whoever put the database back
/// from an older copy could have edited the config beside it too (found by review).
pub(crate) fn checkpoint_files(
    vault: &Unlocked,
    given: &[PathBuf],
) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = given.to_vec();
    let configured = vault.home.audit_settings()?.checkpoint_file;
    if let Some(recorded) = recorded_checkpoint_file(vault)? {
        // Compared as paths, as where changes anchor is chosen (`//` and `/./` are no
        // other file), and shown escaped.
        let shown = escape_controls(&recorded).into_owned();
        let config = vault.home.config_path();
        match configured.as_deref() {
            None => anyhow::bail!(
                "{} names no [audit] checkpoint_file, but this vault keeps its checkpoints \
                 in {shown} (recorded in its audit log, and sealed): with the setting taken \
                 out, a vault put back from an older copy would verify. Put \
                 `checkpoint_file = \"{shown}\"` back under [audit]; to stop keeping \
                 checkpoints, `keygate audit checkpoint --drop-file` records that",
                config.display(),
            ),
            Some(path) if path != Path::new(&recorded) => {
                anyhow::bail!(
                    "{}'s [audit] checkpoint_file is {}, but this vault keeps its checkpoints in \
                 {shown} (recorded in its audit log, and sealed): an older copy of that \
                 file would anchor an older vault. Put {shown} back; to move the \
                 checkpoints, `touch {1} && keygate audit checkpoint --append {1}` records \
                 the new file",
                    config.display(),
                    escape_controls(&path.display().to_string()),
                )
            }
            Some(_) => {}
        }
    }
    if let Some(path) = configured {
        if let Err(e) = std::fs::metadata(&path) {
            anyhow::bail!(
                "[audit] checkpoint_file {}: {e}. A file that is not there anchors nothing. \
                 If it never existed, `touch {0} && keygate audit checkpoint --append {0}` \
                 starts it; if it did \
                 (a disk not mounted, a file moved), put it back and do not start a new \
                 one: that would anchor the log as it is now, a vault put back from a \
                 backup included",
                path.display(),
            );
        }
        files.push(path);
    }
    Ok(files)
}

/// Appends `checkpoint` to the checkpoint file at `path` as one line, synced: a
/// checkpoint kept elsewhere is worth what survives a crash. The file must exist: one
/// made here could be on the disk under a mount that is not there, hiding the real one.
pub(crate) fn append_checkpoint(path: &Path, checkpoint: &Checkpoint) -> anyhow::Result<()> {
    let mut line = serde_json::to_string(checkpoint).context("encoding the checkpoint")?;
    line.push('\n');
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    let reading = || format!("reading {}", path.display());
    let mut length = file.metadata().with_context(reading)?.len();
    match unfinished_line(&mut file, length).with_context(reading)? {
        None => {}
        // A last line without its line end (written by hand, or by `printf %s`) would
        // run into this one, and neither would read.
        Some(last) if serde_json::from_slice::<Checkpoint>(&last).is_ok() => {
            line.insert(0, '\n');
        }
        // What an append cut short (a disk full) left: no checkpoint, and in the
        // middle of the file it would be an error for good.
        Some(torn) => {
            length -= torn.len() as u64;
            file.set_len(length)
                .with_context(|| format!("cutting a torn line from {}", path.display()))?;
            eprintln!(
                "keygate: warning: {}: dropped a last line that was no checkpoint ({} bytes \
                 without a line end: an append cut short)",
                path.display(),
                torn.len()
            );
        }
    }
    let written = file
        .write_all(line.as_bytes())
        .and_then(|()| file.sync_data());
    if written.is_err() {
        // Part of a line would be read as a torn one; none is nothing lost.
        let _ = file.set_len(length);
    }
    written.with_context(|| format!("writing {}", path.display()))
}

/// The last line of `file` (`length` bytes long) when it has no line end: what follows
/// the last `\n`, or the whole file; `None` when the file is empty or ends a line.
fn unfinished_line(file: &mut std::fs::File, length: u64) -> std::io::Result<Option<Vec<u8>>> {
    use std::io::{Read as _, Seek as _, SeekFrom};
    // A checkpoint line is a few hundred bytes; a longer tail is read in part, enough to
    // tell it is no checkpoint.
    const TAIL: u64 = 64 * 1024;
    if length == 0 {
        return Ok(None);
    }
    let from = length.saturating_sub(TAIL);
    file.seek(SeekFrom::Start(from))?;
    let mut tail = Vec::new();
    file.take(TAIL).read_to_end(&mut tail)?;
    if tail.last() == Some(&b'\n') {
        return Ok(None);
    }
    match tail.iter().rposition(|&b| b == b'\n') {
        Some(i) => Ok(Some(tail.split_off(i + 1))),
        None if from == 0 => Ok(Some(tail)),
        // A last line longer than the tail read: no append leaves that, and cutting
        // only its end would leave the rest to run into the next line (found by review).
        None => Err(std::io::Error::other(format!(
            "its last line, of more than {TAIL} bytes, has no line end: no checkpoint \
             append leaves that; look at the file"
        ))),
    }
}

/// The checkpoints in `paths` (files of `audit checkpoint` lines); refused when files are
/// given and none holds one: that is no anchor at all.
pub(crate) fn read_checkpoints(paths: &[PathBuf]) -> anyhow::Result<Vec<Checkpoint>> {
    let mut checkpoints = Vec::new();
    for path in paths {
        checkpoints.extend(checkpoints_in(path)?);
    }
    if !paths.is_empty() && checkpoints.is_empty() {
        anyhow::bail!("no checkpoint in the files given; nothing anchors the log");
    }
    Ok(checkpoints)
}

/// The last checkpoint in the file at `path`, none if it is empty.
pub(crate) fn last_checkpoint_in(path: &Path) -> anyhow::Result<Option<Checkpoint>> {
    Ok(checkpoints_in(path)?.pop())
}

/// The checkpoints in the file at `path`, none if it is empty.
fn checkpoints_in(path: &Path) -> anyhow::Result<Vec<Checkpoint>> {
    let text = String::from_utf8(read_bounded(path, MAX_CHECKPOINT_FILE_LEN)?)
        .map_err(|_| anyhow::anyhow!("checkpoint file {} is not UTF-8", path.display()))?;
    let mut checkpoints = Vec::new();
    let lines = text.lines().count();
    for (number, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let parsed = serde_json::from_str::<Checkpoint>(line);
        // The last line, without its line end, is what an append cut short (a disk
        // full) when it does not read: nothing was written there. Anywhere else a line
        // that does not read is an error.
        if parsed.is_err() && number + 1 == lines && !text.ends_with('\n') {
            eprintln!(
                "keygate: warning: {}:{}: a last line that is no checkpoint, without a line \
                 end (an append cut short): left out; the next `audit checkpoint --append` \
                 drops it",
                path.display(),
                number + 1
            );
            continue;
        }
        let checkpoint: Checkpoint = parsed.with_context(|| {
            format!(
                "{}:{}: not an `audit checkpoint` line",
                path.display(),
                number + 1
            )
        })?;
        checkpoints.push(checkpoint);
    }
    Ok(checkpoints)
}

/// What is wrong with the client table's rows: the names of the clients whose rows do
/// not match their tags ([`keygate_store::Client::verify_record`]), and why each row that
/// does not read does not (a row of a newer keygate, or a damaged one). Rows an earlier
/// keygate wrote without a tag are not counted: the gateway refuses them until `keygate
/// upgrade` tags them.
fn client_rows_wrong(vault: &Unlocked) -> anyhow::Result<(Vec<String>, Vec<String>)> {
    let rows = vault
        .store
        .client_rows()
        .context("reading the client table")?;
    let (mut altered, mut unreadable) = (Vec::new(), Vec::new());
    for row in &rows {
        match row {
            Err(e) => unreadable.push(escape_controls(&e.to_string()).into_owned()),
            Ok(c) if c.is_tagged() && c.verify_record(&vault.master).is_err() => {
                altered.push(escape_controls(c.name.as_str()).into_owned());
            }
            Ok(_) => {}
        }
    }
    Ok((altered, unreadable))
}

fn verify(vault: &Unlocked, args: &VerifyArgs) -> anyhow::Result<i32> {
    let checkpoints = read_checkpoints(&checkpoint_files(vault, &args.checkpoint)?)?;
    match keygate_audit::verify_checkpoints(&vault.store, &vault.audit_key, &checkpoints) {
        Ok(verified) if verified.events == 0 => {
            eprintln!(
                "audit log verification FAILED at event 1: the log is empty, but every \
                 vault's log begins with its vault.init event (the log was emptied)"
            );
            Ok(1)
        }
        Ok(verified) => {
            let n = verified.events;
            if !begins_with_init(&vault.store, &vault.audit_key)? {
                eprintln!(
                    "audit log verification FAILED at event 1: it is not the vault's \
                     vault.init event (the log was emptied and written anew)"
                );
                return Ok(1);
            }
            // Read after the log: a change committed meanwhile only makes the seal newer.
            match vault.store.check_seal(&vault.master) {
                Ok(sealed) if sealed < verified.last_admin_seq => {
                    eprintln!(
                        "audit log verified ({n} events), but the client and account tables \
                         FAILED: they were sealed at event {sealed}, and event {} is a later \
                         administrative change, so they were put back as they were \
                         before it; review them with `keygate upgrade`",
                        verified.last_admin_seq
                    );
                    return Ok(1);
                }
                Ok(_) => {}
                Err(e @ keygate_store::Error::Unsealed { .. }) => {
                    eprintln!("audit log verified ({n} events), but {e}");
                    return Ok(1);
                }
                Err(e) => return Err(e).context("checking the client and account tables' seal"),
            }
            // The seal covers each client's name and tag, not the columns the tag covers
            // (found by review: two clients' keys swapped in the database passed here,
            // while the gateway refused both).
            let (altered, unreadable) = client_rows_wrong(vault)?;
            if !altered.is_empty() {
                let (records, were, them) = if altered.len() == 1 {
                    ("record", "was", "it")
                } else {
                    ("records", "were", "them")
                };
                eprintln!(
                    "audit log verified ({n} events), but the client table FAILED: the \
                     {records} of {} {were} changed without the master key; the gateway \
                     refuses {them}: revoke {them}, and find out who could write the \
                     database",
                    altered.join(", ")
                );
            }
            if !unreadable.is_empty() {
                eprintln!(
                    "audit log verified ({n} events), but the client table FAILED: {} \
                     row(s) do not read ({}); the gateway leaves them out: `keygate \
                     upgrade` reviews them",
                    unreadable.len(),
                    unreadable.join("; ")
                );
            }
            if !altered.is_empty() || !unreadable.is_empty() {
                return Ok(1);
            }
            let events = events_held(&verified);
            let held = checkpoints.len() - verified.checkpoints_archived;
            match (checkpoints.len(), verified.checkpoints_archived) {
                (0, _) => {
                    println!(
                        "audit log verified: {events}; the client and account tables agree \
                         with it"
                    );
                    // Found by review: said "verified" of a log cut at its end, its earlier
                    // head put back (SQLite's write-ahead log file keeps copies of it).
                    eprintln!(
                        "note: no checkpoint was checked (--checkpoint FILE, or [audit] \
                         checkpoint_file): a log cut at its end, or the database put back \
                         from an older copy, verifies too (docs/audit.md, Limits)"
                    );
                }
                (all, 0) => println!(
                    "audit log verified: {events}, holding all {all} checkpoint(s); the \
                     client and account tables agree with it"
                ),
                (all, archived) => println!(
                    "audit log verified: {events}, holding {held} of {all} checkpoint(s); \
                     {archived} name archived events, which the archive's files hold \
                     (`keygate audit verify-archive --checkpoint` checks them there); the \
                     client and account tables agree with it"
                ),
            }
            Ok(0)
        }
        Err(keygate_audit::Error::Tampered { seq, reason }) => {
            eprintln!("audit log verification FAILED at event {seq}: {reason}");
            Ok(1)
        }
        Err(keygate_audit::Error::BadCheckpoint { seq, reason }) => {
            eprintln!("audit log verification FAILED: the checkpoint at event {seq}: {reason}");
            Ok(1)
        }
        Err(e) => Err(e).context("verifying the audit log"),
    }
}

/// What is wrong with a log that verifies but holds no event.
const EMPTY_LOG: &str = "audit log verification failed at event 1: the log is empty, but every \
                         vault's log begins with its vault.init event";

/// The checkpoints of the config's `[audit] checkpoint_file`, none when it is not set; a
/// file that is not there or does not read is what is wrong: it anchors nothing, and
/// the log cannot be told from one put back from a backup.
pub(crate) fn configured_checkpoints(vault: &Unlocked) -> Result<Vec<Checkpoint>, String> {
    checkpoint_files(vault, &[])
        .and_then(|files| read_checkpoints(&files))
        .map_err(|e| format!("the log cannot be checked against its checkpoints: {e:#}"))
}

/// What is wrong with a log that verifies, if it does not begin with the vault's init
/// event: it was emptied and written anew.
fn log_begins_with_init(store: &Store, key: &AuditKey) -> Option<String> {
    match begins_with_init(store, key) {
        Ok(true) => None,
        Ok(false) => Some(
            "audit log verification failed at event 1: it is not the vault's vault.init \
             event (the log was emptied and written anew)"
                .to_owned(),
        ),
        Err(e) => Some(format!("{e:#}")),
    }
}

/// The exit code of a command that showed what the log holds, `shown` saying what it
/// showed: 0, or 1 with a warning on standard error when the log does not verify
/// (`problem`, from [`for_each_verified_event`]), as `audit verify` exits.
pub(crate) fn exit_code_showing(problem: Option<&str>, shown: &str) -> i32 {
    match problem {
        None => 0,
        Some(problem) => {
            eprintln!(
                "keygate: warning: the audit log DOES NOT VERIFY ({}): {shown} what it holds, \
                 which may have been edited",
                escape_controls(problem)
            );
            1
        }
    }
}

/// Refuses a `--client` filter that names no client: such a name is mistyped, and its
/// filter would show a log with nothing in it, as if the client had done nothing. The
/// error is `client show`'s. A name the store has no client of counts when an event of
/// the log concerns it: vaults before schema version 3 deleted a removed account's
/// clients, whose events remain, and those are what an incident is looked into with.
/// So does a row that does not read; a store that cannot be read is an error.
pub(crate) fn check_client_exists(store: &Store, name: &str) -> anyhow::Result<()> {
    let looking_up = || format!("looking up client {name}");
    let not_found = keygate_store::Error::NotFound {
        kind: "client",
        name: name.to_owned(),
    };
    // No client can have a name that does not parse.
    if let Ok(parsed) = name.parse::<keygate_core::Name>() {
        match store.client(&parsed) {
            Err(keygate_store::Error::NotFound { .. }) => {}
            Err(e @ keygate_store::Error::Sqlite { .. }) => {
                return Err(e).with_context(looking_up);
            }
            // Found, whether or not its row reads.
            _ => return Ok(()),
        }
    }
    // Only for a name the store has none of: whether an event of the log concerns it.
    let filter = Filter {
        client: Some(name.to_owned()),
        ..Filter::default()
    };
    let mut in_the_log = false;
    for_each_event(store, &filter, |events| {
        in_the_log |= !events.is_empty();
        Ok(())
    })?;
    match in_the_log {
        true => Ok(()),
        false => Err(not_found).with_context(looking_up),
    }
}

/// Whether the log begins where it should: with the `vault.init` event `keygate init`
/// writes, or after the events an archive moved out (`audit archive`, whose mark is
/// MACed with the audit key).
pub(crate) fn begins_with_init(store: &Store, key: &AuditKey) -> anyhow::Result<bool> {
    if keygate_audit::archived_through(store, key)?.is_some() {
        return Ok(true);
    }
    let first =
        keygate_audit::read_unverified(store, 1, 1).context("reading the first audit event")?;
    Ok(matches!(
        first.first(),
        Some((1, Event { body: EventBody::Admin(admin), .. })) if admin.change == "vault.init"
    ))
}

/// Prints a checkpoint of the verified log, for `audit verify --checkpoint`, to append
/// to a file kept where whoever can write this database cannot; or, with `--append
/// FILE`, appends it there once the log is found to hold FILE's checkpoints (exit 1 when
/// it does not: nothing is appended).
fn checkpoint(vault: &mut Unlocked, args: &CheckpointArgs) -> anyhow::Result<i32> {
    if args.drop_file {
        return drop_checkpoint_file(vault);
    }
    let Some(path) = &args.append else {
        let checkpoint = keygate_audit::checkpoint(&vault.store, &vault.audit_key)
            .context("taking a checkpoint of the audit log")?;
        println!(
            "{}",
            serde_json::to_string(&checkpoint).context("encoding the checkpoint")?
        );
        return Ok(0);
    };
    if let Err(e) = std::fs::metadata(path) {
        anyhow::bail!(
            "{}: {e}. keygate never creates a checkpoint file (one made under a mount point \
             that is not there would hide the real one); start a new one with `touch {}`",
            path.display(),
            path.display()
        );
    }
    let earlier = checkpoints_in(path)?;
    if !earlier.is_empty() {
        if let Err(e) = keygate_audit::verify_checkpoints(&vault.store, &vault.audit_key, &earlier)
        {
            eprintln!(
                "audit checkpoint: nothing appended to {}: the audit log does not hold the \
                 checkpoints already there ({e}); a vault put back from a backup older than \
                 them is what this catches (`keygate audit verify --checkpoint {}` says more)",
                path.display(),
                path.display()
            );
            return Ok(1);
        }
    }
    let checkpoint = match configured_file_to_record(vault, path)? {
        Some((configured, from)) => record_checkpoint_file(vault, &configured, from)?,
        None => keygate_audit::checkpoint(&vault.store, &vault.audit_key)
            .context("taking a checkpoint of the audit log")?,
    };
    append_checkpoint(path, &checkpoint)?;
    eprintln!(
        "appended a checkpoint to {} (after {} earlier one(s), all held by the log)",
        path.display(),
        earlier.len()
    );
    Ok(0)
}

/// The checkpoint file the vault records ([`keygate_store::Store::checkpoint_file`]).
fn recorded_checkpoint_file(vault: &Unlocked) -> anyhow::Result<Option<String>> {
    vault
        .store
        .checkpoint_file()
        .context("reading the checkpoint file the vault records")
}

/// The config's `[audit] checkpoint_file`, with the file the vault records now, when
/// `path`, as written (not where links lead), is that path and the vault does not record
/// it yet as where its checkpoints are kept (found by review: a routine `--append FILE`
/// from cron, with the setting pointed at a link to FILE that its owner could later point
/// elsewhere, recorded the link).
fn configured_file_to_record(
    vault: &Unlocked,
    path: &Path,
) -> anyhow::Result<Option<(String, Option<String>)>> {
    let Some(configured) = vault.home.audit_settings()?.checkpoint_file else {
        return Ok(None);
    };
    let given = std::path::absolute(path).with_context(|| format!("finding {}", path.display()))?;
    let recorded = recorded_checkpoint_file(vault)?;
    let to_record = configured.to_str().filter(|c| {
        Path::new(c) == given && recorded.as_deref().map(Path::new) != Some(Path::new(c))
    });
    Ok(to_record.map(|c| (c.to_owned(), recorded)))
}

/// Records `configured` as the file the vault's checkpoints are kept in, in place of
/// `from`, an audited change, and returns the checkpoint of its event, taken with it. The
/// file recorded before, if any, gets that checkpoint too, where it still anchors this log
/// (found by review: it otherwise still anchored a copy of the database made just before
/// the move, which holds every checkpoint it has).
fn record_checkpoint_file(
    vault: &mut Unlocked,
    configured: &str,
    from: Option<String>,
) -> anyhow::Result<Checkpoint> {
    let anchor = Path::new(configured);
    let (_, unsealed, checkpoint) = vault
        .checkpointed_change(Some(anchor), |s, _| {
            let event = crate::home::record_checkpoint_file(s, Some(configured), from.as_deref())?;
            Ok(((), vec![event]))
        })
        .context("recording the checkpoint file in the audit log")?;
    crate::home::warn_if_unsealed(unsealed);
    let checkpoint = checkpoint
        .context("no checkpoint was taken")?
        .context("taking a checkpoint of the audit log")?;
    let shown = escape_controls(configured);
    match &from {
        None => eprintln!("recorded {shown} as where this vault's checkpoints are kept"),
        Some(from) => {
            crate::home::write_anchor(
                &vault.store,
                &vault.audit_key,
                Path::new(from),
                Ok(checkpoint.clone()),
            );
            eprintln!(
                "recorded {shown} as where this vault's checkpoints are kept, in place of \
                 {}, which got the checkpoint of the move too",
                escape_controls(from)
            );
        }
    }
    Ok(checkpoint)
}

/// `audit checkpoint --drop-file`: records that the vault keeps its checkpoints in no
/// file any more, once the config names none; the file it kept them in gets the
/// checkpoint of that change, where it still anchors this log.
fn drop_checkpoint_file(vault: &mut Unlocked) -> anyhow::Result<i32> {
    if let Some(path) = vault.home.audit_settings()?.checkpoint_file {
        anyhow::bail!(
            "{} still names [audit] checkpoint_file {}: take it out first",
            vault.home.config_path().display(),
            escape_controls(&path.display().to_string())
        );
    }
    let Some(from) = recorded_checkpoint_file(vault)? else {
        eprintln!("this vault records no checkpoint file; nothing to drop");
        return Ok(0);
    };
    let (_, unsealed, checkpoint) = vault
        .checkpointed_change(Some(Path::new(&from)), |s, _| {
            let event = crate::home::record_checkpoint_file(s, None, Some(&from))?;
            Ok(((), vec![event]))
        })
        .context("recording in the audit log that no checkpoint file is kept")?;
    crate::home::warn_if_unsealed(unsealed);
    if let Some(checkpoint) = checkpoint {
        crate::home::write_anchor(&vault.store, &vault.audit_key, Path::new(&from), checkpoint);
    }
    eprintln!(
        "recorded that this vault keeps its checkpoints in no file any more (they were in \
         {}, which got the checkpoint of this change); `keygate audit verify` checks the \
         log against no checkpoint unless given --checkpoint FILE",
        escape_controls(&from)
    );
    Ok(0)
}

/// An event with its position, as written by `--json` and `export --format jsonl`.
#[derive(Serialize)]
struct Line<'a> {
    seq: u64,
    #[serde(flatten)]
    event: &'a Event,
}

fn print_events(events: &[(u64, Event)], json: bool) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    for (seq, event) in events {
        let line = if json {
            let json =
                serde_json::to_string(&Line { seq: *seq, event }).context("encoding an event")?;
            keygate_core::escape_json_controls(&json).into_owned()
        } else {
            human_line(*seq, event)
        };
        writeln!(out, "{line}").context(STDOUT_WRITE)?;
    }
    out.flush().context(STDOUT_WRITE)
}

/// One event on one line: seq, time, type, client, action, decision or rule, status.
/// Control characters (a bot chooses the symbol it sends, anyone the method) are shown
/// escaped, so that no event can move the cursor or recolour the operator's terminal.
pub(crate) fn human_line(seq: u64, event: &Event) -> String {
    crate::output::escape_controls(&event_line(seq, event)).into_owned()
}

/// A value a request named, for a `name=value` of an event's line: quoted, as a JSON
/// string, when it holds a blank, `=` or `"` (or is empty), so that a bot's withdrawal
/// address `X network=TRX from=10.0.0.9` cannot read as fields of the line (found by
/// review).
fn field(value: &str) -> Cow<'_, str> {
    let plain =
        !value.is_empty() && !value.contains(|c: char| c.is_whitespace() || c == '=' || c == '"');
    if plain {
        Cow::Borrowed(value)
    } else {
        Cow::Owned(serde_json::to_string(value).unwrap_or_default())
    }
}

fn event_line(seq: u64, event: &Event) -> String {
    let time = rfc3339(event.ts_ms);
    match &event.body {
        EventBody::Request(r) => {
            let decision = match (r.allowed, r.rule) {
                (true, _) => "allowed".to_owned(),
                (false, Some(rule)) => format!("denied:{rule}"),
                (false, None) => "denied".to_owned(),
            };
            // A request that presented a client's key without its signature: about the
            // key, not the client's own.
            let client = match (&r.client, &r.key_of) {
                // Signed with the key a rotation replaced, in its grace window.
                (Some(client), _) if r.previous_key => format!("{client}(previous key)"),
                (Some(client), _) => client.clone(),
                (None, Some(holder)) => format!("-(key of {holder})"),
                (None, None) => "-".to_owned(),
            };
            let mut s = format!(
                "#{seq} {time} request {client} {} {} {} {decision}",
                r.action.as_str(),
                r.method,
                r.path
            );
            match (&r.symbol, r.orders.len()) {
                (Some(sym), _) => s.push_str(&format!(" symbol={}", field(sym))),
                (None, 0) => {}
                (None, _) => {
                    let symbols = r.symbols_named().unwrap_or_default().replace(' ', ",");
                    s.push_str(&format!(" symbols={}", field(&symbols)));
                }
            }
            if let Some(n) = r.notional {
                s.push_str(&format!(" notional={n}"));
            }
            if let (Some(amount), Some(asset)) = (r.amount, &r.asset) {
                s.push_str(&format!(" amount={amount} {}", field(asset)));
            }
            if let Some(destination) = &r.destination {
                s.push_str(&format!(" to={}", field(destination)));
            }
            if let Some(network) = &r.network {
                s.push_str(&format!(" network={}", field(network)));
            }
            s.push_str(&format!(" from={}", r.source_ip));
            s.push_str(&format!(" {}", outcome_text(r.outcome, r.upstream_status)));
            s
        }
        EventBody::Outcome(o) => format!(
            "#{seq} {time} outcome {} request={} {} latency={}us",
            o.client.as_deref().unwrap_or("-"),
            o.request_id,
            outcome_text(o.outcome, o.upstream_status),
            o.latency_us
        ),
        EventBody::Admin(a) => {
            let detail = if a.detail.is_null() {
                String::new()
            } else {
                format!(" {}", a.detail)
            };
            format!(
                "#{seq} {time} admin {} {} {}{detail}",
                a.actor, a.change, a.target
            )
        }
        EventBody::Lost(l) => {
            let denied: Vec<String> = l
                .funds_denied
                .iter()
                .map(|(holder, n)| format!("{holder} {n}"))
                .collect();
            let denied = if denied.is_empty() {
                String::new()
            } else {
                format!(
                    "; withdrawals or transfers denied among them, by key: {}",
                    denied.join(", ")
                )
            };
            format!(
                "#{seq} {time} lost {} background event(s) between {} and {}: the audit writer \
                 fell behind or could not write them{denied}",
                l.count,
                rfc3339(l.first_ms),
                rfc3339(l.last_ms)
            )
        }
    }
}

fn outcome_text(outcome: Outcome, status: Option<u16>) -> String {
    let name = match outcome {
        Outcome::NotForwarded => "not-forwarded",
        Outcome::Pending => "pending",
        Outcome::Answered => "answered",
        Outcome::UpstreamUnreachable => "upstream-unreachable",
        Outcome::AnsweredByKeygate => "answered-by-keygate",
        Outcome::Unknown => "outcome-unknown",
    };
    match status {
        Some(code) => format!("{name} status={code}"),
        None => name.to_owned(),
    }
}

/// Shows the last events, and with `--follow` those written after them. Exit 1 with a
/// warning when what is shown does not verify: the events from the first shown to the
/// end, chained from the one before it, the log ending at the head its last append
/// recorded (a tail does not read the whole log; `audit verify` does), and the events the
/// config's `[audit] checkpoint_file` names still held. What is shown is what verified,
/// from the same reading; from where it stops verifying, the rest as the log holds it. A
/// follow stops at the first event that does not chain.
fn tail(vault: &Unlocked, args: &TailArgs) -> anyhow::Result<i32> {
    let last = keygate_audit::last_seq(&vault.store).context("reading the audit log")?;
    let from = last.saturating_sub(args.n).saturating_add(1).max(1);
    // The seq after the last event shown, and the first failure to show one.
    let mut next = from;
    let mut failed = None;
    let verified =
        keygate_audit::verify_from_handing(&vault.store, &vault.audit_key, from, |page| {
            if let Some((seq, _)) = page.last() {
                next = seq + 1;
            }
            // With `-n 0` these are events appended since the last was read: the
            // follow's first (found by review: skipped).
            if failed.is_none() {
                failed = print_events(&page, args.json).err();
            }
        });
    if let Some(e) = failed {
        return Err(e);
    }
    let shown = "these events are";
    let problem = match verified {
        Ok(_) if from == 1 => log_begins_with_init(&vault.store, &vault.audit_key),
        Ok(_) => None,
        Err(e) => {
            if args.n > 0 {
                for_each_event_from(&vault.store, next, &Filter::default(), |events| {
                    print_events(events, args.json)
                })?;
            }
            Some(e.to_string())
        }
    }
    .or_else(|| tail_checkpoints_problem(vault));
    if problem.is_some() || !args.follow {
        return Ok(exit_code_showing(problem.as_deref(), shown));
    }
    loop {
        std::thread::sleep(FOLLOW_INTERVAL);
        let events = match keygate_audit::read_verified(&vault.store, &vault.audit_key, next, PAGE)
        {
            Ok(events) => events,
            Err(e @ keygate_audit::Error::Tampered { .. }) => {
                return Ok(exit_code_showing(Some(&e.to_string()), shown));
            }
            Err(e) => return Err(e).context("reading the audit log"),
        };
        if let Some((seq, _)) = events.last() {
            next = seq + 1;
        }
        print_events(&events, args.json)?;
    }
}

/// Tells, on standard error, when the log no longer holds the events the config's
/// `[audit] checkpoint_file` names: the database was put back from an older copy, and
/// `shown` (clients, accounts) is as it was then, a client revoked or frozen since
/// shown active (found by review: `client list` said nothing, where `audit verify`,
/// `doctor` and `serve` refuse such a vault).
pub(crate) fn tell_if_put_back(vault: &Unlocked, shown: &str) {
    if let Some(problem) = tail_checkpoints_problem(vault) {
        tell(format_args!(
            "keygate: warning: {}: {shown} as this database holds them, which may be out of \
             date",
            escape_controls(&problem)
        ));
    }
}

/// Whether the log still holds the events the config's `[audit] checkpoint_file` names,
/// as `audit verify` checks it, but each event alone, not the whole log before it: a
/// tail does not read the whole log. A vault put back from an older backup fails so.
fn tail_checkpoints_problem(vault: &Unlocked) -> Option<String> {
    let checkpoints = match configured_checkpoints(vault) {
        Ok(checkpoints) => checkpoints,
        Err(problem) => return Some(problem),
    };
    checkpoints.iter().find_map(|checkpoint| {
        keygate_audit::holds_checkpoint(&vault.store, &vault.audit_key, checkpoint)
            .err()
            .map(|e| e.to_string())
    })
}

fn filter_from(store: &Store, args: &FilterArgs) -> anyhow::Result<Filter> {
    if let Some(client) = &args.client {
        check_client_exists(store, client)?;
    }
    let (since_ms, until_ms) = window(args.since.as_deref(), args.until.as_deref(), now_ms())?;
    Ok(Filter {
        client: args.client.clone(),
        since_ms,
        until_ms,
        allowed: args.decision.map(|d| d == DecisionArg::Allowed),
    })
}

/// The window `--since` and `--until` give, in milliseconds since the epoch, each a
/// duration before `now_ms` or an RFC 3339 UTC time; refused when it holds nothing (its
/// start at or after its end).
pub(crate) fn window(
    since: Option<&str>,
    until: Option<&str>,
    now_ms: u64,
) -> anyhow::Result<(Option<u64>, Option<u64>)> {
    let since_ms = since
        .map(|s| parse_time(s, now_ms))
        .transpose()
        .context("--since")?;
    let until_ms = until
        .map(|s| parse_time(s, now_ms))
        .transpose()
        .context("--until")?;
    if let (Some(since_ms), Some(until_ms)) = (since_ms, until_ms) {
        if since_ms >= until_ms {
            anyhow::bail!(
                "--since {} is not before --until {}: the window holds no event",
                rfc3339(since_ms),
                rfc3339(until_ms)
            );
        }
    }
    Ok((since_ms, until_ms))
}

/// A time as the command line gives it, in milliseconds since the epoch: a duration
/// before `now_ms` (`2h`, `7d`) or an RFC 3339 time in UTC (`2026-12-06T13:00:00Z`,
/// fractions of a second taken). A duration has neither `-` nor `:`, a time both.
fn parse_time(text: &str, now_ms: u64) -> anyhow::Result<u64> {
    if !text.contains(['-', ':']) {
        let ago = parse_duration(text)?;
        return Ok(now_ms.saturating_sub(ago.as_millis() as u64));
    }
    let not_a_time = || {
        format!(
            "`{text}` is neither a duration (`2h`, `7d`) nor an RFC 3339 time in UTC \
             (`2026-12-06T13:00:00Z`)"
        )
    };
    let time = humantime::parse_rfc3339(text.trim()).with_context(not_a_time)?;
    let since_epoch = time
        .duration_since(std::time::UNIX_EPOCH)
        .ok()
        .with_context(not_a_time)?;
    Ok(since_epoch.as_millis() as u64)
}

/// Calls `each` for every event that passes `filter`, in order, a page at a time, as
/// the log verifies (as `audit verify` checks it, against the config's `[audit]
/// checkpoint_file` too: a vault put back from an older backup verifies on its own),
/// from the same reading: what is shown is what verified, not a second reading of rows
/// that may have changed since (found by review). For the commands that rebuild what
/// happened from the log (`incident report`, `alerts list`, `audit query`, `audit
/// export`). Returns what is wrong with the log, the first bad event named as `audit
/// verify` names it, for the command to exit 1 with as `audit verify` does; from where
/// it stops verifying, the rest of the events are still handed, as the log holds them.
pub(crate) fn for_each_verified_event(
    vault: &Unlocked,
    filter: &Filter,
    mut each: impl FnMut(&[(u64, Event)]) -> anyhow::Result<()>,
) -> anyhow::Result<Option<String>> {
    let checkpoints = match configured_checkpoints(vault) {
        Ok(checkpoints) => checkpoints,
        Err(problem) => {
            for_each_event(&vault.store, filter, each)?;
            return Ok(Some(problem));
        }
    };
    // The seq after the last event handed on, and the first failure of `each`.
    let mut next = None;
    let mut archived_meanwhile = None;
    let mut failed = None;
    let verified = keygate_audit::verify_checkpoints_handing(
        &vault.store,
        &vault.audit_key,
        &checkpoints,
        |page| {
            let Some(&(first, _)) = page.first() else {
                return;
            };
            if let Some(expected) = next.filter(|&expected| expected < first) {
                archived_meanwhile.get_or_insert((expected, first - 1));
            }
            next = page.last().map(|(seq, _)| seq + 1);
            if failed.is_none() {
                let matching: Vec<(u64, Event)> = page
                    .into_iter()
                    .filter(|(_, e)| filter.matches(e))
                    .collect();
                failed = each(&matching).err();
            }
        },
    );
    if let Some(e) = failed {
        return Err(e);
    }
    let problem = match verified {
        Ok(verified) if verified.events == 0 => Some(EMPTY_LOG.to_owned()),
        Ok(_) => log_begins_with_init(&vault.store, &vault.audit_key),
        Err(e) => {
            // The rest, as the log holds it.
            for_each_event_from(&vault.store, next.unwrap_or(1), filter, each)?;
            Some(e.to_string())
        }
    };
    Ok(problem.or_else(|| {
        archived_meanwhile.map(|(first, last)| {
            format!(
                "events {first} to {last} were archived while the log was read, and are \
                 left out: they are in the archive's file"
            )
        })
    }))
}

/// Calls `each` for every event that passes `filter`, in order, a page at a time, as the
/// log holds it, unverified. A filter with a start time reads from about then
/// ([`keygate_audit::seq_near`]), not from the first event.
pub(crate) fn for_each_event(
    store: &Store,
    filter: &Filter,
    each: impl FnMut(&[(u64, Event)]) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let from = match filter.since_ms {
        Some(since) => keygate_audit::seq_near(store, since).context("reading the audit log")?,
        None => 1,
    };
    for_each_event_from(store, from, filter, each)
}

/// [`for_each_event`] from event `from` on.
fn for_each_event_from(
    store: &Store,
    mut from: u64,
    filter: &Filter,
    mut each: impl FnMut(&[(u64, Event)]) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    loop {
        // An event that does not decode is left out: the log does not verify then, which
        // the commands that come here say, and the rest of it still shows.
        let readable =
            keygate_audit::read_readable(store, from, PAGE).context("reading the audit log")?;
        let Some(last) = readable.read_to else {
            return Ok(());
        };
        from = last + 1;
        let page = readable.events;
        let matching: Vec<(u64, Event)> = page
            .into_iter()
            .filter(|(_, e)| filter.matches(e))
            .collect();
        each(&matching)?;
    }
}

/// Shows the events that pass the filter: exit 1 when the log does not verify (they are
/// still shown, from what it holds).
fn query(vault: &Unlocked, args: &QueryArgs) -> anyhow::Result<i32> {
    let filter = filter_from(&vault.store, &args.filter)?;
    let mut matched = 0usize;
    let problem = for_each_verified_event(vault, &filter, |events| {
        matched += events.len();
        print_events(events, args.json)
    })?;
    // A name mistyped reads as an empty log otherwise. On standard error: the JSON on
    // standard output stays a list of events, empty.
    if matched == 0 {
        eprintln!("no event matches");
    }
    Ok(exit_code_showing(problem.as_deref(), "these events are"))
}

/// Writes the events that pass the filter: exit 1 when the log does not verify (they are
/// still written, from what it holds), so that an edited log is not handed on as sound.
fn export(vault: &Unlocked, args: &ExportArgs) -> anyhow::Result<i32> {
    let filter = filter_from(&vault.store, &args.filter)?;
    let problem = match args.format {
        Format::Jsonl => {
            for_each_verified_event(vault, &filter, |events| print_events(events, true))?
        }
        Format::Csv => {
            let mut out = std::io::stdout().lock();
            writeln!(out, "{}", csv_header()).context(STDOUT_WRITE)?;
            let problem = for_each_verified_event(vault, &filter, |events| {
                for (seq, event) in events {
                    writeln!(out, "{}", csv_line(*seq, event)).context(STDOUT_WRITE)?;
                }
                Ok(())
            })?;
            out.flush().context(STDOUT_WRITE)?;
            problem
        }
    };
    Ok(exit_code_showing(problem.as_deref(), "these events are"))
}

/// How many events a verified log holds, and where they are: after an archive, the
/// database holds only the events after its mark.
pub(crate) fn events_held(verified: &Verified) -> String {
    let n = verified.events;
    match verified.archived_through {
        0 => format!("{n} events"),
        archived => format!(
            "{n} events (1 to {archived} archived, {} to {n} here)",
            archived + 1
        ),
    }
}

#[cfg(test)]
mod tests {
    use keygate_core::{ActionKind, Outcome, RequestEvent};

    use super::*;

    /// `--since` and `--until` (found by review: only durations were taken, so a window
    /// could not be given twice alike): durations before now, RFC 3339 UTC times, and a
    /// window that holds nothing refused.
    #[test]
    fn a_window_is_durations_ago_or_rfc3339_times() {
        let now = 1_796_562_797_662;
        assert_eq!(
            window(Some("1h"), Some("30m"), now).unwrap(),
            (Some(now - 3_600_000), Some(now - 1_800_000))
        );
        assert_eq!(
            window(Some("2026-12-06T13:00:00Z"), None, now).unwrap(),
            (Some(1_796_562_000_000), None)
        );
        assert_eq!(
            window(None, Some("2026-12-06T13:00:00.250Z"), now).unwrap(),
            (None, Some(1_796_562_000_250))
        );
        assert_eq!(
            window(Some("2026-12-06T12:00:00Z"), Some("10m"), now).unwrap(),
            (Some(1_796_558_400_000), Some(now - 600_000))
        );
        let refused = |since, until| format!("{:#}", window(since, until, now).unwrap_err());
        let backwards = refused(Some("2026-12-06T14:00:00Z"), Some("2026-12-06T13:00:00Z"));
        assert_eq!(
            backwards,
            "--since 2026-12-06T14:00:00.000Z is not before --until 2026-12-06T13:00:00.000Z: \
             the window holds no event"
        );
        assert!(refused(Some("1h"), Some("2h")).contains("is not before"));
        assert!(refused(Some("1h"), Some("1h")).contains("is not before"));
        // An offset other than UTC's, a date alone, a word: each named.
        for text in ["2026-12-06T13:00:00+01:00", "2026-12-06", "yesterday"] {
            let message = refused(Some(text), None);
            assert!(message.starts_with("--since: "), "{message}");
        }
        assert!(refused(None, Some("2026-12-06")).contains("nor an RFC 3339 time in UTC"));
    }

    #[test]
    fn control_characters_in_an_event_are_shown_escaped() {
        let event = Event {
            ts_ms: 0,
            body: EventBody::Request(RequestEvent {
                request_id: "r1".into(),
                exchange: "binance".into(),
                client: Some("bot1".into()),
                key_of: None,
                account: None,
                source_ip: "127.0.0.1".into(),
                method: "GET".into(),
                path: "/api/v3/order".into(),
                action: ActionKind::Trade,
                symbol: Some("BTC\u{1b}[2J".into()),
                side: None,
                client_order_id: None,
                notional: None,
                amount: None,
                asset: None,
                destination: None,
                network: None,
                allowed: false,
                rule: None,
                message: None,
                upstream_status: None,
                latency_us: None,
                outcome: Outcome::NotForwarded,
                validates_only: false,
                previous_key: false,
                forwarded_by: None,
                places_no_order: false,
                orders: Vec::new(),
                terms: None,
            }),
        };
        let line = human_line(1, &event);
        assert!(!line.contains('\u{1b}'), "{line}");
        assert!(line.contains("symbol=BTC\\x1b[2J"), "{line}");
        // Found by review: a value holding blanks read as more fields of the line.
        let mut event = event;
        if let EventBody::Request(r) = &mut event.body {
            r.destination = Some("X network=TRX from=10.0.0.9".into());
            r.network = Some("TRX".into());
        }
        let line = human_line(1, &event);
        assert!(
            line.contains(r#" to="X network=TRX from=10.0.0.9" network=TRX from=127.0.0.1 "#),
            "{line}"
        );
    }

    /// A regression test (found by review): an append a full disk cut short left half a
    /// line, and every read of the file refused it from then on (serve did not start,
    /// `audit verify` failed), the append the warning advised included. A failed append
    /// now leaves nothing; a torn last line is left out when read, and dropped by the
    /// next append. A line that does not read anywhere else is still an error.
    #[test]
    fn a_torn_last_checkpoint_line_is_left_out_and_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("checkpoints");
        let checkpoint = |seq| Checkpoint {
            seq,
            hash: "ab".repeat(32),
            mac: "cd".repeat(32),
        };
        let first = serde_json::to_string(&checkpoint(1)).unwrap();
        std::fs::write(&path, format!("{first}\n{}", &first[..20])).unwrap();
        let read = checkpoints_in(&path).unwrap();
        assert_eq!(read.iter().map(|c| c.seq).collect::<Vec<_>>(), [1]);

        append_checkpoint(&path, &checkpoint(2)).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 2, "{text}");
        let read = checkpoints_in(&path).unwrap();
        assert_eq!(read.iter().map(|c| c.seq).collect::<Vec<_>>(), [1, 2]);

        // A whole checkpoint without its line end is kept, and the next goes after it.
        let second = serde_json::to_string(&checkpoint(2)).unwrap();
        std::fs::write(&path, format!("{first}\n{second}")).unwrap();
        append_checkpoint(&path, &checkpoint(3)).unwrap();
        let read = checkpoints_in(&path).unwrap();
        assert_eq!(read.iter().map(|c| c.seq).collect::<Vec<_>>(), [1, 2, 3]);

        std::fs::write(&path, format!("{}\n{first}\n", &first[..20])).unwrap();
        let refused = checkpoints_in(&path).unwrap_err();
        assert!(format!("{refused:#}").contains(":1: not an"), "{refused:#}");

        // A last line longer than any append leaves is not cut in part (its rest would
        // run into the next line): the append is refused, the file left as it was.
        let long = format!("{first}\n{}", "x".repeat(100_000));
        std::fs::write(&path, &long).unwrap();
        let refused = append_checkpoint(&path, &checkpoint(4)).unwrap_err();
        assert!(
            format!("{refused:#}").contains("no line end"),
            "{refused:#}"
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), long);
    }
}
