//! `keygate panic`: the incident button. Every virtual key stops working within a second.

use anyhow::Context;
use clap::Args;
use std::io::Write as _;

use keygate_core::{ClientStatus, Name};
use keygate_gateway::registry::stop_file_of;
use serde_json::json;

use crate::home::{admin_event, unlock_even_if_open, Home, UnlockArgs, Unlocked};
use crate::output::{self, escape_controls, print_json};

/// `keygate panic`
#[derive(Args, Debug)]
pub struct PanicArgs {
    /// Print what was done as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Unlocks the vault in `home` and freezes every active client ([`freeze_all`]).
///
/// Before anything else, where the home holds a vault, an empty stop file is made beside
/// the database ([`stop_file_of`]), which needs no room for data: a running gateway
/// refuses every client while it is there. It is removed once the freeze is recorded.
/// So a panic that fails (found by review: on a full disk the freeze could not be
/// written, the command failed, and a compromised bot went on), and one cut short while
/// it waits for the database or a passphrase (found by review: an interrupted panic
/// stopped nothing and said nothing), still stops every client. A failed one says so;
/// run again once it can succeed, it records the freeze and removes the file.
pub fn run(home: Home, how: &UnlockArgs, args: &PanicArgs) -> anyhow::Result<()> {
    let database = home.db_path();
    let stop = stop_file_of(&database);
    // No vault here (a forgotten --home: found by review), so no gateway watches this
    // directory: a stop file would stop nothing while saying it does.
    let vault_here = database.exists();
    let left_before = vault_here && stop.exists();
    let stop_made = vault_here.then(|| leave_stop_file(&stop));
    let panicked = match unlock_even_if_open(home, how).and_then(freeze_all) {
        Ok(done) => done,
        Err(e) => {
            return Err(match stop_made {
                None => e.context(format!(
                    "no keygate vault at {}, so nothing was stopped: name the vault's home \
                     (--home or KEYGATE_HOME), or stop `keygate serve` (SIGTERM)",
                    database.display()
                )),
                Some(Ok(())) => e.context(format!(
                    "nothing is recorded, but {} now stops every client of a running \
                     `keygate serve` within a second; once the cause is fixed, run `keygate \
                     panic` again (as the user who owns the home: `runuser -u USER -- \
                     keygate panic` when that is another): it records the freeze and \
                     removes that file",
                    stop.display()
                )),
                Some(Err(stop_error)) => e.context(format!(
                    "nor could {} be made to stop a running gateway ({stop_error}): stop \
                     `keygate serve` now (SIGTERM)",
                    stop.display()
                )),
            })
        }
    };
    // The freeze is recorded now: the stop file has done its work.
    // Told with `tell`: a standard error that cannot be written (a full disk) must not
    // turn the freeze made into a failure.
    match std::fs::remove_file(&stop) {
        Ok(()) if left_before => output::tell(format_args!(
            "removed {}: the freeze it stood for is recorded",
            stop.display()
        )),
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => output::tell(format_args!(
            "keygate: warning: {} could not be removed ({e}); a running gateway refuses \
             every client while it is there",
            stop.display()
        )),
    }
    tell(&panicked, args)
        .context("every client is frozen, but what was done could not be written out")
}

/// What `keygate panic` did.
struct Panicked {
    /// The clients frozen.
    frozen: Vec<Name>,
    /// The clients revoked because their record failed verification.
    revoked: Vec<Name>,
    /// The client rows deleted because they do not read, named as far as that reads.
    deleted: Vec<String>,
    /// The clients an earlier keygate wrote, without a tag: refused until `keygate
    /// upgrade`, which asks about each.
    untagged: Vec<Name>,
}

/// Freezes every active client in one transaction, each with its `client.freeze` event
/// and a `vault.panic` event naming them all; a running gateway refuses them within a
/// second. Clients already frozen or revoked stay as they are. A client whose record
/// fails verification (edited without the master key) is revoked, and a row that does
/// not read at all is deleted, as `account remove` deletes one: the gateway refuses
/// both already, but kept as they are, such a row put back after the panic would be
/// active again, and frozen, an edited policy would be tagged as the vault's (found by
/// review). Rows an earlier keygate wrote, without a tag, are refused until `keygate
/// upgrade`, which asks about each: they stay. Undo the freeze client by client with
/// `client unfreeze`.
fn freeze_all(mut vault: Unlocked) -> anyhow::Result<Panicked> {
    let changed = vault.audited_change(|s, master| {
        let mut frozen = Vec::new();
        let mut revoked = Vec::new();
        let mut untagged = Vec::new();
        // Read inside the transaction: a client issued meanwhile is frozen too.
        for row in s.client_rows()? {
            match row {
                Ok(client) if !client.is_tagged() => untagged.push(client.name),
                Ok(client) if client.verify_record(master).is_err() => {
                    s.set_client_status(
                        &client.name,
                        client.status,
                        ClientStatus::Revoked,
                        master,
                    )?;
                    revoked.push(client.name);
                }
                Ok(client) if client.status == ClientStatus::Active => {
                    s.set_client_status(
                        &client.name,
                        ClientStatus::Active,
                        ClientStatus::Frozen,
                        master,
                    )?;
                    frozen.push(client.name);
                }
                Ok(_) | Err(_) => {}
            }
        }
        let deleted = s.delete_unreadable_clients()?;
        let names: Vec<&str> = frozen.iter().map(|n| n.as_str()).collect();
        let events: Vec<_> = names
            .iter()
            .map(|name| {
                admin_event(
                    "client.freeze",
                    name,
                    json!({ "from": "active", "to": "frozen", "reason": "panic" }),
                )
            })
            .chain(revoked.iter().map(|name| {
                admin_event(
                    "client.revoke",
                    name.as_str(),
                    json!({ "reason": "panic: its record fails verification" }),
                )
            }))
            .chain([admin_event(
                "vault.panic",
                "clients",
                json!({
                    "frozen_clients": names,
                    "revoked_clients": revoked,
                    "deleted_clients": deleted,
                }),
            )])
            .collect();
        let panicked = Panicked {
            frozen,
            revoked,
            deleted,
            untagged,
        };
        Ok((panicked, events))
    });
    let (panicked, unsealed) = changed.context("freezing every client")?;
    crate::home::warn_if_unsealed(unsealed);
    Ok(panicked)
}

/// Tells what `keygate panic` did on the standard output.
fn tell(panicked: &Panicked, args: &PanicArgs) -> anyhow::Result<()> {
    let Panicked {
        frozen,
        revoked,
        deleted,
        untagged,
    } = panicked;
    if args.json {
        return print_json(&json!({
            "frozen": frozen,
            "revoked": revoked,
            "deleted": deleted,
            "untagged": untagged,
        }));
    }
    let mut out = std::io::stdout().lock();
    if frozen.is_empty() {
        writeln!(out, "no active client to freeze")?;
    } else {
        let names: Vec<&str> = frozen.iter().map(|n| n.as_str()).collect();
        writeln!(
            out,
            "froze {} client(s): {}; a running gateway refuses them within a second",
            frozen.len(),
            names.join(", ")
        )?;
        writeln!(
            out,
            "orders they placed stay on the exchange's book and can still fill: `keygate \
             incident report --since 2h` lists them (README: After a panic)"
        )?;
    }
    if !revoked.is_empty() {
        let names: Vec<&str> = revoked.iter().map(|n| n.as_str()).collect();
        writeln!(
            out,
            "revoked {} client(s) whose record fails verification (edited without the \
             master key): {}",
            revoked.len(),
            names.join(", ")
        )?;
    }
    if !deleted.is_empty() {
        writeln!(
            out,
            "deleted {} client record(s) that do not read: {}",
            deleted.len(),
            escape_controls(&deleted.join(", "))
        )?;
    }
    if !untagged.is_empty() {
        let names: Vec<&str> = untagged.iter().map(|n| n.as_str()).collect();
        writeln!(
            out,
            "{} client(s) written by an earlier keygate stay as they are, refused until \
             `keygate upgrade`, which asks about each: {}",
            untagged.len(),
            names.join(", ")
        )?;
    }
    writeln!(
        out,
        "undo client by client with `keygate client unfreeze NAME`"
    )?;
    out.flush()?;
    Ok(())
}

/// Makes the empty stop file at `stop`, synced with its directory: an empty file needs an
/// inode and a directory entry, no room for data, so it can be made on a full disk. One
/// already there is left as it is if it is a regular file, and refused if it is anything
/// else: no link is followed, no FIFO waited on (found by review: root's reflex `keygate
/// panic` on a compromised user's home made a file where a link planted as the stop file
/// pointed). Made by root in another user's home, the file this call made, and no other,
/// is given to that user, whose own panic then removes it (found by review: a file
/// already there, a hard link to anyone's file, was given away).
#[cfg(unix)]
fn leave_stop_file(stop: &std::path::Path) -> std::io::Result<()> {
    use rustix::fs::{AtFlags, FileType, Mode, OFlags};
    let (Some(home), Some(name)) = (stop.parent(), stop.file_name()) else {
        return Err(std::io::Error::other("it names no file in a directory"));
    };
    let dir = rustix::fs::open(
        home,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let made = rustix::fs::openat(
        &dir,
        name,
        OFlags::WRONLY
            | OFlags::CREATE
            | OFlags::EXCL
            | OFlags::NOFOLLOW
            | OFlags::NONBLOCK
            | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o600),
    );
    match made {
        Ok(file) => {
            let home_owner = rustix::fs::fstat(&dir)?.st_uid;
            let made = rustix::fs::fstat(&file)?;
            if made.st_uid != home_owner && made.st_nlink == 1 {
                // Only root may give a file away: anyone else's stays theirs, as it may.
                let _ =
                    rustix::fs::fchown(&file, Some(rustix::fs::Uid::from_raw(home_owner)), None);
            }
            rustix::fs::fsync(&file)?;
        }
        Err(rustix::io::Errno::EXIST) => {
            let there = rustix::fs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW)?;
            if FileType::from_raw_mode(there.st_mode) != FileType::RegularFile {
                return Err(std::io::Error::other("it is there, and not a regular file"));
            }
        }
        Err(e) => return Err(e.into()),
    }
    rustix::fs::fsync(&dir)?;
    Ok(())
}

/// Makes the empty stop file at `stop`.
#[cfg(not(unix))]
fn leave_stop_file(stop: &std::path::Path) -> std::io::Result<()> {
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(stop)?
        .sync_all()
}
