//! `keygate upgrade`: tags the clients of a vault an earlier keygate made, or seals the
//! client and account tables when their seal is missing or broken, after showing every
//! client and account.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;

use anyhow::{bail, Context};
use clap::Args;
use keygate_audit::{AuditKey, Filter};
use keygate_core::{EventBody, Name, Policy};
use keygate_store::{Account, Client, Store};
use keygate_vault::{redact, MasterKey, VaultFormat};

use crate::audit_cmd::for_each_event;
use crate::home::{admin_event, Unlocked, META_CHECK};
use crate::output::{escape_controls, rfc3339};

/// Options of `keygate upgrade`.
#[derive(Args, Debug)]
pub struct UpgradeArgs {
    /// Tag or seal the clients shown without asking (required when standard input is not
    /// a terminal).
    #[arg(long)]
    pub yes: bool,
}

/// Brings a vault up to this keygate, once the operator has seen every column of every
/// client it vouches for; in one transaction, audited.
///
/// - A vault an earlier keygate made, before client tags: each client is tagged as it is,
///   the check value rewritten and the tables sealed (`vault.upgrade`). From then on a
///   client changed without the master key is caught.
/// - A vault whose client and account tables are not sealed (made before seals, or
///   before accounts were sealed and not resealed at the schema upgrade) or no longer
///   match their seal (a row put back, added or removed without the master key): the
///   tables are sealed as they are (`vault.seal`), once every client and account is
///   shown, each account's fingerprint and upstream beside what the audit log last
///   recorded of them. Until then the gateway refuses every client.
///
/// It vouches for rows it did not write, so it is careful: someone with write access to
/// the database could have put back an old check value or an old row and hope to have it
/// vouched for. It refuses when the audit log (which nobody can forge without the key)
/// shows this vault had tags already, refuses two rows sharing a key, shows every column
/// it vouches for, and tags each row only if it is still exactly as shown.
pub fn run(mut vault: Unlocked, args: &UpgradeArgs) -> anyhow::Result<()> {
    let rows = vault.store.client_rows().context("reading clients")?;
    let untagged: Vec<Client> = rows
        .iter()
        .filter_map(|row| row.as_ref().ok())
        .filter(|c| !c.is_tagged())
        .cloned()
        .collect();
    if vault.format == VaultFormat::Current {
        if !untagged.is_empty() {
            bail!(
                "this vault was made or upgraded by this keygate, yet client(s) {} have no \
                 tag: they were changed without the master key; revoke them",
                names(&untagged)
            );
        }
        return match vault.store.check_seal_is_latest(&vault.master) {
            Ok(_) => {
                println!("this vault is up to date; nothing to upgrade");
                Ok(())
            }
            Err(keygate_store::Error::Unsealed { reason }) => seal(&mut vault, &rows, reason, args),
            Err(e) => Err(e).context("checking the client and account tables' seal"),
        };
    }
    if let Some(marker) = tag_era_marker(&vault)? {
        bail!(
            "the audit log shows this vault had client tags already ({marker}), yet its \
             check value says otherwise: it was put back from an older copy. Nothing was \
             tagged; revoke the clients you do not trust and issue new ones"
        );
    }
    refuse_shared_keys(&rows)?;

    println!("clients of this vault, to be tagged exactly as they are:");
    for c in &untagged {
        print_client(c, None)?;
    }
    print_unreadable(&rows, "will be deleted");
    let accounts = vault.store.account_rows().context("reading accounts")?;
    print_accounts(&accounts, None, &vault.master);
    confirm(args, &format!("Tag these {} client(s)?", untagged.len()))?;
    let tagged = tag(&mut vault, &untagged, &accounts)?;
    vault.format = VaultFormat::Current;
    println!(
        "upgraded: {} client(s) tagged with the master key",
        tagged.len()
    );
    Ok(())
}

/// Seals the client and account tables as they are, once the operator has seen every
/// client and account in them.
fn seal(
    vault: &mut Unlocked,
    rows: &[Result<Client, keygate_store::Error>],
    reason: &str,
    args: &UpgradeArgs,
) -> anyhow::Result<()> {
    refuse_shared_keys(rows)?;
    let accounts = vault.store.account_rows().context("reading accounts")?;
    let InLog {
        clients: recorded,
        accounts: recorded_accounts,
        checkpoint_file: recorded_file,
    } = recorded_in_log(&vault.store, &vault.audit_key)?;
    println!("the client and account tables {reason}.");
    println!(
        "Read every client and account below: whatever they say is what the gateway will \
         use once the tables are sealed. A client that is wrong (a revoked one back, a \
         wider policy) can be revoked afterwards, an account rotated. Where a row differs \
         from what the audit log last recorded of it, it is marked PUT BACK?"
    );
    let readable: Vec<&Client> = rows.iter().filter_map(|r| r.as_ref().ok()).collect();
    for c in &readable {
        print_client(c, Some(c.verify_record(&vault.master).is_ok()))?;
        if let Some(difference) = differs_from_log(c, recorded.get(c.name.as_str())) {
            println!("    PUT BACK? {difference}");
        }
    }
    print_unreadable(rows, "will be deleted");
    print_accounts(&accounts, Some(&recorded_accounts), &vault.master);
    // The file the config names is what the seal will record; its checkpoints are
    // checked first, and one the log last recorded is not given up here.
    let anchor = vault.home.audit_settings()?.checkpoint_file;
    let configured_file = anchor.as_deref().and_then(Path::to_str).map(str::to_owned);
    // A record that does not read is replaced by the seal's, as a row that does not read
    // is dealt with: this is the command that mends the tables.
    let file_in_tables = vault.store.checkpoint_file().unwrap_or_else(|e| {
        println!("checkpoints: the tables' record of the file does not read ({e})");
        None
    });
    print_checkpoint_file(
        configured_file.as_deref(),
        file_in_tables.as_deref(),
        recorded_file.as_ref(),
    );
    check_against_recorded_file(vault, configured_file.as_deref(), recorded_file.as_ref())?;
    let readable_accounts: Vec<&Account> =
        accounts.iter().filter_map(|r| r.as_ref().ok()).collect();
    confirm(
        args,
        &format!(
            "Seal the tables with these {} client(s) and {} account(s)?",
            readable.len(),
            readable_accounts.len()
        ),
    )?;
    let (master, key) = (&vault.master, &vault.audit_key);
    // Each account by the fingerprint of the key it opens to, not by its stored column,
    // which nothing binds to the sealed key; one that does not open is recorded as such.
    let accepted_accounts: Vec<serde_json::Value> = readable_accounts
        .iter()
        .map(|a| {
            serde_json::json!({
                "label": a.label.as_str(),
                "fingerprint": opened_fingerprint(a, master).ok(),
                "upstream": a.upstream,
            })
        })
        .collect();
    let (settled, checkpoint) = vault
        .store
        .transaction(|s: &Store| {
            // Still the rows shown: another command may have changed one meanwhile.
            let now = s.client_rows()?;
            let unchanged = now.len() == rows.len()
                && now.iter().zip(rows).all(|(a, b)| match (a, b) {
                    (Ok(a), Ok(b)) => a.same_row_as(b),
                    (Err(_), Err(_)) => true,
                    _ => false,
                });
            let unchanged = unchanged && accounts_are_as_shown(s, &accounts)?;
            if !unchanged {
                return Err(keygate_store::Error::Conflict {
                    kind: "client and account tables",
                    name: "clients".into(),
                    reason: "it changed after it was shown; run the command again".into(),
                }
                .into());
            }
            let (settled, mut events) = settle_refused_rows(s, master)?;
            // The checkpoint file the config names, as shown, is what the seal records.
            let in_tables = s.checkpoint_file();
            let same = |file: &Option<String>| {
                file.as_deref().map(Path::new) == configured_file.as_deref().map(Path::new)
            };
            if !matches!(&in_tables, Ok(file) if same(file)) {
                events.push(crate::home::record_checkpoint_file(
                    s,
                    configured_file.as_deref(),
                    in_tables.ok().flatten().as_deref(),
                )?);
            }
            // What the operator accepted, so that the next review compares against it:
            // every row, now that each verifies (the refused ones revoked).
            let accepted: Vec<serde_json::Value> = s
                .client_rows()?
                .iter()
                .flatten()
                .map(|c| {
                    serde_json::json!({
                        "name": c.name.as_str(),
                        "status": c.status.as_str(),
                        "api_key": redact(&c.api_key),
                        "policy": c.policy,
                        "expires_at": c.expires_ms.map(rfc3339),
                    })
                })
                .collect();
            events.push(admin_event(
                "vault.seal",
                "clients",
                serde_json::json!({
                    "clients": accepted,
                    "accounts": accepted_accounts,
                    "reason": reason,
                    "deleted_unreadable_clients": settled.deleted,
                    "checkpoint_file": configured_file,
                }),
            ));
            keygate_audit::append_within(s, key, &events)?;
            let checkpoint = anchor
                .is_some()
                .then(|| keygate_audit::head_checkpoint(s, key));
            s.seal_as_they_are(master)?;
            Ok::<_, keygate_audit::Error>((settled, checkpoint))
        })
        .context("sealing the client and account tables")?;
    if let (Some(path), Some(checkpoint)) = (anchor, checkpoint) {
        crate::home::write_anchor(&vault.store, &vault.audit_key, &path, checkpoint);
    }
    settled.tell();
    println!(
        "sealed: {} client(s) and {} account(s); the gateway accepts them again",
        readable.len(),
        readable_accounts.len()
    );
    Ok(())
}

/// The client rows the gateway refuses that a seal must not cover as they are: revoked,
/// or deleted.
struct Settled {
    revoked: Vec<String>,
    deleted: Vec<String>,
}

impl Settled {
    fn tell(&self) {
        if !self.revoked.is_empty() {
            println!(
                "revoked (changed without the master key): {}",
                escape_controls(&self.revoked.join(", "))
            );
        }
        if !self.deleted.is_empty() {
            println!(
                "deleted (did not read): {}",
                escape_controls(&self.deleted.join(", "))
            );
        }
    }
}

/// Within the transaction that seals the tables: revokes every client row whose tag does
/// not verify, and deletes every row that does not read, with the events that say so.
/// The seal covers a client row's name and tag, and its tag covers the rest only when it
/// verifies: a refused row sealed as it reads could be edited later back to the contents
/// its tag was made for (a revoked client, active again) and pass both. Revoked, it is
/// tagged anew as revoked; deleted, it is gone.
fn settle_refused_rows(
    s: &Store,
    master: &MasterKey,
) -> Result<(Settled, Vec<keygate_core::Event>), keygate_store::Error> {
    let mut settled = Settled {
        revoked: Vec::new(),
        deleted: s.delete_unreadable_clients()?,
    };
    let mut events = Vec::new();
    for c in s.client_rows()?.into_iter().flatten() {
        if c.verify_record(master).is_ok() {
            continue;
        }
        s.set_client_status(
            &c.name,
            c.status,
            keygate_core::ClientStatus::Revoked,
            master,
        )?;
        events.push(admin_event(
            "client.revoke",
            c.name.as_str(),
            serde_json::json!({
                "from": c.status.as_str(),
                "to": "revoked",
                "reason": "changed without the master key; revoked by upgrade before sealing",
            }),
        ));
        settled.revoked.push(c.name.to_string());
    }
    Ok((settled, events))
}

/// What the audit log last recorded of a client.
struct Recorded {
    status: String,
    /// Its key's fingerprint (`redact`), as the log gives it.
    api_key: String,
    /// Its policy, when the log gives one (a `vault.seal` of an earlier keygate did not).
    policy: Option<Policy>,
    /// When its key expires (RFC 3339), when the log gives it (a `vault.seal` of an
    /// earlier keygate did not): a row put back with a later expiry would revive a key.
    expires_at: Option<String>,
    /// The event that recorded it.
    seq: u64,
}

/// What the audit log last recorded of an account.
struct RecordedAccount {
    /// Its key's fingerprint (`redact`), as the log gives it.
    fingerprint: String,
    upstream: Option<String>,
    /// The event that recorded it.
    seq: u64,
}

/// What the audit log last recorded of the tables the seal covers.
struct InLog {
    /// Each client, by name.
    clients: BTreeMap<String, Recorded>,
    /// Each account, by label.
    accounts: BTreeMap<String, RecordedAccount>,
    /// The file the vault's checkpoints are kept in (`None`: no file), with the seq of
    /// the event that recorded it, if the log ever recorded one.
    checkpoint_file: Option<(Option<String>, u64)>,
}

/// What the (verified) audit log last recorded of each client, by name, of each account,
/// by label, and of the checkpoint file: nobody can forge its events without the key, so
/// it tells which row was put back.
fn recorded_in_log(store: &Store, key: &AuditKey) -> anyhow::Result<InLog> {
    keygate_audit::verify(store, key)
        .context("the audit log must verify before the tables are sealed again")?;
    recorded_as_read(store)
}

/// [`recorded_in_log`], from a log the caller verified: inside a write transaction,
/// where a verification cannot open a read snapshot of its own.
fn recorded_as_read(store: &Store) -> anyhow::Result<InLog> {
    let mut recorded: BTreeMap<String, Recorded> = BTreeMap::new();
    let mut accounts: BTreeMap<String, RecordedAccount> = BTreeMap::new();
    let mut checkpoint_file = None;
    let text = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_owned();
    let policy = |v: &serde_json::Value| serde_json::from_value::<Policy>(v.clone()).ok();
    for_each_event(store, &Filter::default(), |page| {
        for (seq, event) in page {
            let EventBody::Admin(admin) = &event.body else {
                continue;
            };
            let seq = *seq;
            let (target, detail) = (&admin.target, &admin.detail);
            let status = match admin.change.as_str() {
                "client.issue" => {
                    recorded.insert(
                        target.clone(),
                        Recorded {
                            status: "active".into(),
                            api_key: text(&detail["api_key"]),
                            policy: policy(&detail["policy"]),
                            expires_at: detail["expires_at"].as_str().map(str::to_owned),
                            seq,
                        },
                    );
                    continue;
                }
                "client.update" => {
                    if let Some(r) = recorded.get_mut(target) {
                        r.policy = policy(&detail["to"]);
                        if let Some(to) = detail["expires_at"]["to"].as_str() {
                            r.expires_at = Some(to.to_owned());
                        }
                        r.seq = seq;
                    }
                    continue;
                }
                "client.rotate" => {
                    if let Some(r) = recorded.get_mut(target) {
                        r.api_key = text(&detail["new_api_key"]);
                        r.seq = seq;
                    }
                    continue;
                }
                "account.add" => {
                    accounts.insert(
                        target.clone(),
                        RecordedAccount {
                            fingerprint: text(&detail["fingerprint"]),
                            upstream: detail["upstream"].as_str().map(str::to_owned),
                            seq,
                        },
                    );
                    continue;
                }
                "account.rotate" => {
                    if let Some(a) = accounts.get_mut(target) {
                        a.fingerprint = text(&detail["new_fingerprint"]);
                        a.seq = seq;
                    }
                    continue;
                }
                "audit.checkpoint_file" => {
                    checkpoint_file = Some((detail["path"].as_str().map(str::to_owned), seq));
                    continue;
                }
                "account.remove" => {
                    for name in detail["deleted_clients"].as_array().into_iter().flatten() {
                        recorded.remove(name.as_str().unwrap_or_default());
                    }
                    accounts.remove(target);
                    continue;
                }
                // What the log had recorded of every client and account, as of the seal
                // (the tables as they were accepted) or of an archive (the archived
                // events' record, which the log no longer holds).
                "vault.seal" | "audit.archive" => {
                    if let Some(file) = detail.get("checkpoint_file") {
                        checkpoint_file = Some((file.as_str().map(str::to_owned), seq));
                    }
                    for a in detail["accounts"].as_array().into_iter().flatten() {
                        accounts.insert(
                            text(&a["label"]),
                            RecordedAccount {
                                fingerprint: text(&a["fingerprint"]),
                                upstream: a["upstream"].as_str().map(str::to_owned),
                                seq,
                            },
                        );
                    }
                    for c in detail["clients"].as_array().into_iter().flatten() {
                        recorded.insert(
                            text(&c["name"]),
                            Recorded {
                                status: text(&c["status"]),
                                api_key: text(&c["api_key"]),
                                policy: policy(&c["policy"]),
                                expires_at: c["expires_at"].as_str().map(str::to_owned),
                                seq,
                            },
                        );
                    }
                    continue;
                }
                "client.freeze" => "frozen",
                "client.unfreeze" => "active",
                "client.revoke" => "revoked",
                _ => continue,
            };
            if let Some(r) = recorded.get_mut(target) {
                r.status = status.to_owned();
                r.seq = seq;
            }
        }
        Ok(())
    })?;
    Ok(InLog {
        clients: recorded,
        accounts,
        checkpoint_file,
    })
}

/// What the audit log has recorded of every client and account, as `vault.seal` records
/// it: for `audit archive`, whose event keeps it once the events that made it are moved
/// out of the database, so that `keygate upgrade` still tells a row put back.
/// The log must have been verified: this reads it as it is (see [`recorded_as_read`]).
pub(crate) fn log_record(store: &Store) -> anyhow::Result<serde_json::Value> {
    let InLog {
        clients,
        accounts,
        checkpoint_file,
    } = recorded_as_read(store)?;
    let clients: Vec<serde_json::Value> = clients
        .iter()
        .map(|(name, r)| {
            serde_json::json!({
                "name": name,
                "status": r.status,
                "api_key": r.api_key,
                "policy": r.policy,
                "expires_at": r.expires_at,
            })
        })
        .collect();
    let accounts: Vec<serde_json::Value> = accounts
        .iter()
        .map(|(label, a)| {
            serde_json::json!({
                "label": label,
                "fingerprint": a.fingerprint,
                "upstream": a.upstream,
            })
        })
        .collect();
    let mut record = serde_json::json!({ "clients": clients, "accounts": accounts });
    if let Some((file, _)) = checkpoint_file {
        record["checkpoint_file"] = file.into();
    }
    Ok(record)
}

/// Refuses to seal the tables again while the config names another checkpoint file than
/// the one the log last recorded, or none (found by review: whoever could break the seal
/// and edit the config could have a routine `upgrade --yes` drop the record, with only a
/// line of output to say so), and checks the log against the checkpoints of the file it
/// names: tables put back with the whole database are caught here, before they are
/// vouched for.
fn check_against_recorded_file(
    vault: &Unlocked,
    configured: Option<&str>,
    in_log: Option<&(Option<String>, u64)>,
) -> anyhow::Result<()> {
    if let Some((Some(recorded), seq)) = in_log {
        if configured.map(Path::new) != Some(Path::new(recorded)) {
            bail!(
                "the audit log last recorded {} as where this vault's checkpoints are kept \
                 (event {seq}), but config.toml's [audit] checkpoint_file is {}: nothing was \
                 sealed. Put the setting back (the log is then checked against that file \
                 first); or, to stop keeping checkpoints or move them, record that first \
                 (`keygate audit checkpoint --drop-file`, or `--append NEW`)",
                escape_controls(recorded),
                configured.map_or(Cow::Borrowed("not set"), escape_controls),
            );
        }
    }
    let Some(configured) = configured else {
        return Ok(());
    };
    let checkpoints = crate::audit_cmd::read_checkpoints(&[configured.into()])?;
    keygate_audit::verify_checkpoints(&vault.store, &vault.audit_key, &checkpoints).with_context(
        || {
            format!(
                "nothing was sealed: the audit log does not hold the checkpoints in {} (a \
                 database put back from an older copy?)",
                escape_controls(configured)
            )
        },
    )?;
    Ok(())
}

/// Shows where the vault's checkpoints are kept: the config's `[audit] checkpoint_file`
/// (what the seal will record), what the tables record now, and what the log last
/// recorded, marked CHANGED? when the config's differs from the log's: a setting taken
/// out with the database put back is what that would look like.
fn print_checkpoint_file(
    configured: Option<&str>,
    in_tables: Option<&str>,
    in_log: Option<&(Option<String>, u64)>,
) {
    let named = |file: Option<&str>| match file {
        Some(file) => escape_controls(file).into_owned(),
        None => "no file".to_owned(),
    };
    println!(
        "checkpoints: kept in {} (config.toml's [audit] checkpoint_file; the seal will \
         record it); the tables record {}",
        named(configured),
        named(in_tables)
    );
    if let Some((file, seq)) = in_log {
        if file.as_deref().map(Path::new) != configured.map(Path::new) {
            println!(
                "    CHANGED? the audit log last recorded {} (event {seq})",
                named(file.as_deref())
            );
        }
    }
}

/// How `c` differs from what the log last recorded of it, if it does.
fn differs_from_log(c: &Client, recorded: Option<&Recorded>) -> Option<String> {
    let Some(r) = recorded else {
        return Some("the audit log never issued this client".into());
    };
    let mut differences = Vec::new();
    if c.status.as_str() != r.status {
        differences.push(format!("the audit log last left it {}", r.status));
    }
    if redact(&c.api_key) != r.api_key {
        differences.push(format!("its key was last {} in the audit log", r.api_key));
    }
    if r.policy.as_ref().is_some_and(|p| *p != c.policy) {
        differences.push("its policy is not the one the audit log last gave it".into());
    }
    if let Some(recorded) = &r.expires_at {
        if c.expires_ms.map(rfc3339).as_ref() != Some(recorded) {
            differences.push(format!("the audit log last gave it the expiry {recorded}"));
        }
    }
    (!differences.is_empty()).then(|| format!("{} (event {})", differences.join("; "), r.seq))
}

/// Asks `question` at the terminal, unless `--yes` answered it.
fn confirm(args: &UpgradeArgs, question: &str) -> anyhow::Result<()> {
    if args.yes {
        return Ok(());
    }
    if !std::io::stdin().is_terminal() {
        bail!("not a terminal: pass --yes to accept the clients shown");
    }
    print!("{question} [y/N] ");
    std::io::stdout().flush().context("writing the prompt")?;
    let mut answer = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut answer)
        .context("reading the answer")?;
    if !matches!(answer.trim(), "y" | "Y" | "yes") {
        bail!("nothing was changed");
    }
    Ok(())
}

fn print_unreadable<T>(rows: &[Result<T, keygate_store::Error>], fate: &str) {
    let unreadable = rows.iter().filter(|r| r.is_err()).count();
    if unreadable > 0 {
        println!("({unreadable} row(s) do not read and {fate})");
    }
}

fn names(clients: &[Client]) -> String {
    let names: Vec<&str> = clients.iter().map(|c| c.name.as_str()).collect();
    names.join(", ")
}

/// The first event in the (verified) audit log that only a vault with client tags
/// writes: its `vault.init` made by a build with tags, or an earlier `vault.upgrade`.
fn tag_era_marker(vault: &Unlocked) -> anyhow::Result<Option<String>> {
    keygate_audit::verify(&vault.store, &vault.audit_key)
        .context("the audit log must verify before an upgrade")?;
    let mut from = 1;
    loop {
        let page = keygate_audit::read_unverified(&vault.store, from, 10_000)
            .context("reading the log")?;
        let Some((last, _)) = page.last() else {
            return Ok(None);
        };
        from = last + 1;
        for (seq, event) in &page {
            let EventBody::Admin(admin) = &event.body else {
                continue;
            };
            let tagged_init = admin.change == "vault.init" && admin.detail["client_tags"] == true;
            // Only a keygate that tags clients archives: the init may be in the archive.
            if tagged_init || admin.change == "vault.upgrade" || admin.change == "audit.archive" {
                return Ok(Some(format!("event {seq}, {}", admin.change)));
            }
        }
    }
}

/// Refuses when an API key, current or previous, belongs to two rows: one was copied
/// into the other by hand.
fn refuse_shared_keys(rows: &[Result<Client, keygate_store::Error>]) -> anyhow::Result<()> {
    let mut owners: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for c in rows.iter().filter_map(|r| r.as_ref().ok()) {
        let keys = std::iter::once(c.api_key.as_str()).chain(c.previous_api_key.as_deref());
        for key in keys {
            owners.entry(key).or_default().push(c.name.as_str());
        }
    }
    let shared: Vec<String> = owners
        .iter()
        .filter(|(_, names)| names.len() > 1)
        .map(|(key, names)| format!("{} ({})", redact(key), names.join(", ")))
        .collect();
    if !shared.is_empty() {
        bail!(
            "an API key belongs to more than one client, which keygate never writes: {}. \
             Nothing was tagged; revoke those clients",
            shared.join("; ")
        );
    }
    Ok(())
}

/// Every column the tag covers; `verified` says whether its tag verifies, for a row that
/// has one.
fn print_client(c: &Client, verified: Option<bool>) -> anyhow::Result<()> {
    // JSON escapes C0 controls only; the policy's strings are text from the database.
    let policy = serde_json::to_string(&c.policy).context("encoding a policy")?;
    let policy = escape_controls(&policy);
    let previous = match (&c.previous_api_key, c.previous_until_ms) {
        (Some(key), Some(until)) => {
            format!("{} until {}", escape_controls(&redact(key)), rfc3339(until))
        }
        (Some(key), None) => escape_controls(&redact(key)).into_owned(),
        _ => "none".into(),
    };
    let warning = match verified {
        Some(false) => " (CHANGED WITHOUT THE MASTER KEY: will be revoked)",
        _ => "",
    };
    println!(
        "  {name}{warning}: account {account}, {status}, {key_type} key {key}, previous key {previous}\n    \
         created {created}, expires {expires}\n    policy {policy}",
        name = c.name,
        account = c.account,
        status = c.status.as_str(),
        key_type = c.key_type.as_str(),
        key = escape_controls(&redact(&c.api_key)),
        created = rfc3339(c.created_ms),
        expires = c.expires_ms.map_or_else(|| "never".into(), rfc3339),
    );
    Ok(())
}

/// Every account row the seal covers, its key by the fingerprint of what it opens to (key
/// and secret are opened, never shown) and, given what the audit log recorded, where one
/// differs from it. Text from the database is shown escaped: whoever wrote it there may
/// have written terminal control sequences.
fn print_accounts(
    rows: &[Result<Account, keygate_store::Error>],
    recorded: Option<&BTreeMap<String, RecordedAccount>>,
    master: &MasterKey,
) {
    println!(
        "accounts of this vault (real keys, shown by the fingerprint of the key they open to):"
    );
    for a in rows.iter().filter_map(|r| r.as_ref().ok()) {
        let opened = opened_fingerprint(a, master);
        let key = match &opened {
            Ok(fingerprint) => format!("key {fingerprint}"),
            Err(reason) => format!("KEY DOES NOT OPEN ({reason}): its clients stay refused"),
        };
        println!(
            "  {label}: {exchange}, {key}, upstream {upstream}\n    \
             added {created}, rotated {rotated}, rotate every {every}",
            label = a.label,
            exchange = a.exchange.as_str(),
            upstream = a.upstream.as_deref().map_or_else(
                || "the exchange's own hosts".into(),
                |u| escape_controls(u).into_owned()
            ),
            created = rfc3339(a.created_ms),
            rotated = rfc3339(a.rotated_ms),
            every = a
                .rotate_every_s
                .map_or_else(|| "(not set)".into(), |s| format!("{}d", s / 86_400)),
        );
        let mut differences = Vec::new();
        if let Ok(fingerprint) = &opened {
            if *fingerprint != a.fingerprint {
                differences.push(format!(
                    "its stored fingerprint, {}, is not its key's",
                    escape_controls(&a.fingerprint)
                ));
            }
        }
        if let Some(recorded) = recorded {
            differences.extend(account_differs_from_log(
                a,
                opened.as_deref().ok(),
                recorded.get(a.label.as_str()),
            ));
        }
        if !differences.is_empty() {
            println!("    PUT BACK? {}", differences.join("; "));
        }
    }
    print_unreadable(rows, "are sealed as they are, and do not open");
}

/// The fingerprint (`redact`) of the key `a` opens to, once its key and secret both open.
fn opened_fingerprint(a: &Account, master: &MasterKey) -> Result<String, String> {
    let key = a.open_api_key(master).map_err(|e| e.to_string())?;
    a.open_secret(master).map_err(|e| e.to_string())?;
    Ok(redact(key.expose_secret()))
}

/// How `a`, whose key opens to `fingerprint` (`None` when it does not open), differs from
/// what the log last recorded of it, if it does.
fn account_differs_from_log(
    a: &Account,
    fingerprint: Option<&str>,
    recorded: Option<&RecordedAccount>,
) -> Option<String> {
    let Some(r) = recorded else {
        return Some("the audit log never added this account".into());
    };
    let mut differences = Vec::new();
    if fingerprint != Some(r.fingerprint.as_str()) {
        differences.push(format!(
            "its key was last {} in the audit log",
            escape_controls(&r.fingerprint)
        ));
    }
    if a.upstream != r.upstream {
        differences.push("its upstream is not the one the audit log last gave it".into());
    }
    (!differences.is_empty()).then(|| format!("{} (event {})", differences.join("; "), r.seq))
}

/// Whether the account rows are still `shown`: another command may have changed one since.
fn accounts_are_as_shown(
    store: &Store,
    shown: &[Result<Account, keygate_store::Error>],
) -> Result<bool, keygate_store::Error> {
    let now = store.account_rows()?;
    Ok(now.len() == shown.len()
        && now.iter().zip(shown).all(|(a, b)| match (a, b) {
            (Ok(a), Ok(b)) => a.same_row_as(b),
            (Err(_), Err(_)) => true,
            _ => false,
        }))
}

/// Tags the rows shown, if still as shown (the accounts too, which the seal made with them
/// covers), rewrites the check value and records it.
fn tag(
    vault: &mut Unlocked,
    shown: &[Client],
    accounts: &[Result<Account, keygate_store::Error>],
) -> anyhow::Result<Vec<Name>> {
    let anchor = vault.anchor_file();
    let (master, key) = (&vault.master, &vault.audit_key);
    vault
        .store
        .transaction(|s: &Store| {
            if !accounts_are_as_shown(s, accounts)? {
                return Err(keygate_store::Error::Conflict {
                    kind: "account table",
                    name: "accounts".into(),
                    reason: "it changed after it was shown; run the command again".into(),
                }
                .into());
            }
            let tagged = s.tag_clients_as_shown(shown, master)?;
            s.set_meta(META_CHECK, &master.make_check())?;
            let (settled, mut events) = settle_refused_rows(s, master)?;
            let names: Vec<&str> = tagged.iter().map(Name::as_str).collect();
            events.push(admin_event(
                "vault.upgrade",
                "clients",
                serde_json::json!({
                    "tagged_clients": names,
                    "deleted_unreadable_clients": settled.deleted,
                }),
            ));
            keygate_audit::append_within(s, key, &events)?;
            let checkpoint = anchor
                .is_some()
                .then(|| keygate_audit::head_checkpoint(s, key));
            s.seal_as_they_are(master)?;
            Ok::<_, keygate_audit::Error>((tagged, settled, checkpoint))
        })
        .context("tagging the clients")
        .map(|(tagged, settled, checkpoint)| {
            if let (Some(path), Some(checkpoint)) = (anchor, checkpoint) {
                crate::home::write_anchor(&vault.store, &vault.audit_key, &path, checkpoint);
            }
            settled.tell();
            tagged
        })
}
