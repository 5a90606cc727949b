//! `keygate doctor`: checks what keygate's safety rests on here, and says what to fix.

use std::path::Path;

use clap::Args;
use keygate_audit::Verified;
use keygate_core::{ClientStatus, Exchange, Scope};
use keygate_exchanges::{Adapter, Binance};
use keygate_monitor::{Sink, SmtpSecurity};
use keygate_vault::{KdfParams, VaultFormat};
use serde::Serialize;

use crate::audit_cmd::events_held;
use crate::home::{check_home_parents, foreign_owner, now_ms, wal_path, Provider, Unlocked};
use crate::output::{escape_controls, print_json, rfc3339};
use crate::remote::Exchanges;

/// `keygate doctor`
#[derive(Args, Debug)]
pub struct DoctorArgs {
    /// A JSON array with one object per check.
    #[arg(long)]
    pub json: bool,
    /// Also ask each exchange what each real key may do, and whether that is more than its
    /// clients need (one signed read per account, over the network).
    #[arg(long)]
    pub exchange: bool,
    /// Also check that the audit log still holds the events these checkpoint files name
    /// (files of `keygate audit checkpoint` lines; repeatable), as `audit verify
    /// --checkpoint` does: a vault put back from an older backup fails. The config's
    /// `[audit] checkpoint_file` is checked too.
    #[arg(long, value_name = "FILE")]
    pub checkpoint: Vec<std::path::PathBuf>,
}

/// How a check came out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
enum Verdict {
    Ok,
    /// Worth fixing; nothing is exposed yet.
    Warn,
    /// Something keygate's guarantees rest on does not hold.
    Fail,
}

#[derive(Serialize)]
struct Check {
    check: &'static str,
    verdict: Verdict,
    detail: String,
}

/// Runs every check; exit code 1 when one fails, as `audit verify` does.
pub fn run(vault: &Unlocked, args: &DoctorArgs) -> anyhow::Result<i32> {
    let mut checks = file_modes(vault);
    checks.extend(home_parents(vault));
    checks.push(master_key(vault)?);
    checks.extend(unfinished_config(vault));
    checks.extend(stop_file(vault));
    checks.push(vault_format(vault));
    checks.extend(clients(vault));
    checks.push(accounts(vault));
    checks.extend(left_out_by_gateway(vault));
    // The whole log is read once, for both checks that need it. A checkpoint file that
    // cannot be read (a mount not there) fails the audit log's check, and the others run.
    let files = crate::audit_cmd::checkpoint_files(vault, &args.checkpoint);
    if let Ok(files) = &files {
        checks.extend(checkpoint_modes(files));
    }
    let anchors = files.and_then(|files| crate::audit_cmd::read_checkpoints(&files));
    let checkpoints = anchors.as_deref().unwrap_or_default();
    let log = keygate_audit::verify_checkpoints(&vault.store, &vault.audit_key, checkpoints);
    checks.push(match &anchors {
        Ok(checkpoints) => audit_log(&log, checkpoints.len()),
        Err(e) => check("audit log", Verdict::Fail, format!("{e:#}")),
    });
    checks.push(client_table(vault, &log));
    checks.push(memory());
    checks.push(disk(vault));
    checks.push(alerts(vault));
    if args.exchange {
        checks.extend(exchange_keys(vault));
    }
    let failed = checks.iter().any(|c| c.verdict == Verdict::Fail);
    if args.json {
        print_json(&checks)?;
    } else {
        for c in &checks {
            let mark = match c.verdict {
                Verdict::Ok => "ok  ",
                Verdict::Warn => "WARN",
                Verdict::Fail => "FAIL",
            };
            // A detail may quote what the database holds (a row's error names its value):
            // its control characters are escaped, as every listing's are (found by
            // review: an edited row could rewrite doctor's lines on a terminal).
            println!("{mark} {}: {}", c.check, escape_controls(&c.detail));
        }
    }
    Ok(i32::from(failed))
}

fn check(check: &'static str, verdict: Verdict, detail: impl Into<String>) -> Check {
    Check {
        check,
        verdict,
        detail: detail.into(),
    }
}

/// The home directory and the files in it are the user's alone.
fn file_modes(vault: &Unlocked) -> Vec<Check> {
    let db = vault.home.db_path();
    let mut paths = vec![vault.home.dir.clone(), vault.home.config_path(), db.clone()];
    paths.extend([wal_path(&db, "-wal"), wal_path(&db, "-shm")]);
    let foreign: Vec<String> = paths
        .iter()
        .filter_map(|p| foreign_owner(p).map(|uid| format!("{} (uid {uid})", p.display())))
        .collect();
    if !foreign.is_empty() {
        return vec![check(
            "files",
            Verdict::Fail,
            format!(
                "owned by another user, who could read or replace them: {}",
                foreign.join(", ")
            ),
        )];
    }
    let exposed: Vec<String> = paths
        .iter()
        .filter_map(|p| mode_of(p).filter(|m| m & 0o077 != 0).map(|m| (p, m)))
        .map(|(p, m)| format!("{} (mode {m:o})", p.display()))
        .collect();
    vec![if exposed.is_empty() {
        check(
            "files",
            Verdict::Ok,
            "the home directory and its files are private",
        )
    } else {
        check(
            "files",
            Verdict::Fail,
            format!(
                "readable or writable by others: {}; chmod go-rwx them",
                exposed.join(", ")
            ),
        )
    }]
}

/// The directories above the home are written by no one else
/// ([`check_home_parents`]), or it is said why they are: every other command refuses
/// such a home, doctor says so (as `keygate panic`, it opens it all the same).
fn home_parents(vault: &Unlocked) -> Option<Check> {
    check_home_parents(&vault.home.dir)
        .err()
        .map(|e| check("home", Verdict::Fail, format!("{e:#}")))
}

/// Warns in serve's log, as [`file_modes`] would fail `doctor`, of a home, configuration
/// or database that others may read or write, or that another user owns (found by
/// review: only `doctor` said so, and serve started without a word).
pub(crate) fn warn_of_exposed_files(vault: &Unlocked) {
    for found in file_modes(vault) {
        if found.verdict == Verdict::Fail {
            tracing::warn!("the home directory's files: {}", found.detail);
        }
    }
}

/// Checkpoint files others may write (found by review: one made with a permissive umask
/// was writable by everyone): whoever can write one can take out the checkpoints that
/// anchor the log. Readable is fine: a checkpoint holds no secret.
fn checkpoint_modes(files: &[std::path::PathBuf]) -> Option<Check> {
    let writable: Vec<String> = files
        .iter()
        .filter_map(|p| mode_of(p).filter(|m| m & 0o022 != 0).map(|m| (p, m)))
        .map(|(p, m)| format!("{} (mode {m:o})", p.display()))
        .collect();
    (!writable.is_empty()).then(|| {
        check(
            "checkpoints",
            Verdict::Warn,
            format!(
                "writable by others, who could take out the checkpoints that anchor the \
                 log: {}; chmod go-w them",
                writable.join(", ")
            ),
        )
    })
}

#[cfg(unix)]
fn mode_of(path: &Path) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .ok()
        .map(|m| m.permissions().mode() & 0o777)
}

#[cfg(not(unix))]
fn mode_of(_path: &Path) -> Option<u32> {
    None
}

/// A warning for each config file a `vault move-key` wrote and did not put in place (it
/// was stopped between the two): it names the provider the move was to, which may not be
/// the one `config.toml` names.
fn unfinished_config(vault: &Unlocked) -> Vec<Check> {
    let Ok(entries) = std::fs::read_dir(&vault.home.dir) else {
        return Vec::new();
    };
    let mut left: Vec<String> = entries
        .flatten()
        .filter(|entry| {
            entry
                .file_name()
                .to_str()
                .is_some_and(|name| name.starts_with("config.toml.next-"))
        })
        .map(|entry| entry.path().display().to_string())
        .collect();
    if left.is_empty() {
        return Vec::new();
    }
    left.sort();
    vec![check(
        "config",
        Verdict::Warn,
        format!(
            "{} left by a `vault move-key` that was stopped before it finished; config.toml \
             is the one in force (this check's master key line says where it has the key): \
             remove the leftover once you have seen what it names",
            left.join(", ")
        ),
    )]
}

/// The stop file a `keygate panic` makes first and removes once its freeze is recorded:
/// while it is there, a running gateway refuses every client.
fn stop_file(vault: &Unlocked) -> Option<Check> {
    let stop = keygate_gateway::registry::stop_file_of(&vault.home.db_path());
    std::fs::symlink_metadata(&stop).ok()?;
    Some(check(
        "panic",
        Verdict::Fail,
        format!(
            "{} is there: a `keygate panic` is under way, or could not record its freeze \
             or was cut short, and a running gateway refuses every client while the file \
             is there; run `keygate panic` again to record the freeze (it removes the \
             file), or remove the file to end the stop",
            stop.display()
        ),
    ))
}

/// The files directly in the home directory that hold the vault's master key as a key
/// file does (32 bytes, whoever may read them), found by the vault's key check, which
/// only the right key opens.
fn key_copies_in_home(vault: &Unlocked) -> Vec<std::path::PathBuf> {
    let Ok(Some(check)) = vault.store.meta(crate::home::META_CHECK) else {
        return Vec::new();
    };
    let Ok(entries) = std::fs::read_dir(&vault.home.dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| {
            std::fs::symlink_metadata(path)
                .is_ok_and(|m| m.is_file() && m.len() == keygate_vault::KEY_LEN as u64)
        })
        .filter(|path| {
            let Ok(bytes) = std::fs::read(path).map(zeroize::Zeroizing::new) else {
                return false;
            };
            let encoded = zeroize::Zeroizing::new(hex::encode(&*bytes));
            keygate_vault::MasterKey::from_encoded(&encoded)
                .is_ok_and(|key| key.verify_check(&check).is_ok())
        })
        .collect()
}

/// Where the master key is kept, and whether a copy of the home directory (a backup, say)
/// would carry it along with the database it opens.
fn master_key(vault: &Unlocked) -> anyhow::Result<Check> {
    let config = vault.home.config()?.master_key;
    // What another provider opens the vault with, left by a `vault move-key` whose last
    // step failed: that provider opens it still.
    let leftover = [
        (Provider::Passphrase, crate::home::META_KDF),
        (Provider::Hsm, crate::home::META_HSM_WRAPPED),
    ]
    .into_iter()
    .find(|(other, key)| *other != config.provider && matches!(vault.store.meta(key), Ok(Some(_))));
    if let Some((other, key)) = leftover {
        return Ok(check(
            "master key",
            Verdict::Warn,
            format!(
                "the {} provider's data is still in the database (a `vault move-key` did \
                 not finish removing it), so that provider opens this vault too; with \
                 `keygate serve` stopped: sqlite3 {} \"PRAGMA secure_delete = ON; DELETE \
                 FROM meta WHERE key = '{key}'; PRAGMA wal_checkpoint(TRUNCATE);\" (secure \
                 delete overwrites the row, which a sqlite3 built without it would leave in \
                 the file's free space)",
                other.as_str(),
                vault.store.path().display()
            ),
        ));
    }
    // The configured key file itself, under whatever name or link, is no copy.
    let configured = config
        .key_file
        .as_deref()
        .and_then(crate::home::file_identity);
    let copies: Vec<String> = key_copies_in_home(vault)
        .into_iter()
        .filter(|copy| configured.is_none() || crate::home::file_identity(copy) != configured)
        .map(|copy| copy.display().to_string())
        .collect();
    if !copies.is_empty() {
        return Ok(check(
            "master key",
            Verdict::Warn,
            format!(
                "{} in the home directory {} this vault's master key (a key file left by \
                 `vault move-key`, or a copy), next to the database it opens: a copy or \
                 backup of the directory holds both; destroy {} (shred -u, once you are \
                 sure no other name links to the same file)",
                copies.join(", "),
                if copies.len() == 1 { "holds" } else { "hold" },
                if copies.len() == 1 { "it" } else { "them" },
            ),
        ));
    }
    Ok(match (config.provider, &config.key_file, &config.hsm) {
        (Provider::KeyFile, Some(file), _) => {
            let inside = match (file.canonicalize(), vault.home.dir.canonicalize()) {
                (Ok(file), Ok(home)) => Some(file.starts_with(home)),
                _ => None,
            };
            if inside.is_none() {
                check(
                    "master key",
                    Verdict::Warn,
                    format!(
                        "cannot tell where key file {} is kept (its path does not resolve)",
                        file.display()
                    ),
                )
            } else if let Err(unsafe_dir) = crate::home::check_key_file_directory(file) {
                check(
                    "master key",
                    Verdict::Warn,
                    format!(
                        "{unsafe_dir:#}: move it (keygate vault move-key --to-key-file PATH, \
                         then destroy this one)"
                    ),
                )
            } else if inside == Some(true) {
                check(
                    "master key",
                    Verdict::Warn,
                    format!(
                        "key file {} is inside the home directory, next to the database it \
                         opens: a copy or backup of the directory holds both; keep it \
                         elsewhere (keygate vault move-key --to-key-file PATH, then destroy \
                         this one) or on an HSM",
                        file.display()
                    ),
                )
            } else {
                check(
                    "master key",
                    Verdict::Ok,
                    format!("in key file {}, outside the home directory", file.display()),
                )
            }
        }
        (Provider::Hsm, _, Some(at)) => check(
            "master key",
            Verdict::Ok,
            format!(
                "wrapped by key {:?} on PKCS#11 token {:?} ({})",
                at.key,
                at.token,
                at.module.display()
            ),
        ),
        (Provider::Env, _, _) => check(
            "master key",
            Verdict::Ok,
            format!(
                "from the environment variable {}: as safe as the environment it is kept in",
                config.env_var.as_deref().unwrap_or("?")
            ),
        ),
        (Provider::Passphrase, _, _) => passphrase_kdf(vault)?,
        (provider, _, _) => check(
            "master key",
            Verdict::Ok,
            format!("from its {}", provider.as_str()),
        ),
    })
}

/// A passphrase vault's Argon2id cost: below the recommended one (a vault made with
/// `--insecure-fast-kdf`, for tests), a copy of the database is attacked that much faster.
fn passphrase_kdf(vault: &Unlocked) -> anyhow::Result<Check> {
    let params = crate::home::stored_kdf_params(&vault.store)?;
    let recommended = KdfParams::recommended();
    let cost = format!(
        "Argon2id with {} MiB and {} passes",
        params.m_cost / 1024,
        params.t_cost
    );
    Ok(
        if params.m_cost < recommended.m_cost || params.t_cost < recommended.t_cost {
            check(
                "master key",
                Verdict::Warn,
                format!(
                    "from its passphrase, by {cost}, below the recommended {} MiB and {} passes \
                 (a vault made with --insecure-fast-kdf): a copy of the database is attacked \
                 that much faster; move the key (keygate vault move-key --to-key-file PATH) \
                 or start a vault without that flag",
                    recommended.m_cost / 1024,
                    recommended.t_cost
                ),
            )
        } else {
            check(
                "master key",
                Verdict::Ok,
                format!("from its passphrase, by {cost}"),
            )
        },
    )
}

fn vault_format(vault: &Unlocked) -> Check {
    match vault.format {
        VaultFormat::Current => check("vault", Verdict::Ok, "opens; its format is current"),
        VaultFormat::Untagged => check(
            "vault",
            Verdict::Fail,
            "made by an earlier keygate: its clients are refused until `keygate upgrade`",
        ),
    }
}

/// Every client's record verifies; counts of those the gateway refuses and why.
fn clients(vault: &Unlocked) -> Vec<Check> {
    let rows = match vault.store.client_rows() {
        Ok(rows) => rows,
        Err(e) => return vec![check("clients", Verdict::Fail, format!("cannot read: {e}"))],
    };
    let now = now_ms();
    let (mut bad, mut active, mut expiring) = (Vec::new(), 0, 0);
    // Clients that may withdraw whose list has an address without a network (allowed on
    // any), or none at all (every withdrawal denied: a client issued so by a keygate
    // that allowed it).
    let may_withdraw = || {
        rows.iter().flatten().filter(|c| {
            c.status != ClientStatus::Revoked && c.policy.scopes.contains(Scope::Withdraw)
        })
    };
    let any_network: Vec<String> = may_withdraw()
        .filter(|c| {
            c.policy
                .withdrawal_addresses
                .iter()
                .any(|d| d.network().is_none())
        })
        .map(|c| c.name.to_string())
        .collect();
    let nowhere: Vec<String> = may_withdraw()
        .filter(|c| c.policy.withdrawal_addresses.is_empty())
        .map(|c| c.name.to_string())
        .collect();
    for row in &rows {
        match row {
            Err(e) => bad.push(format!("(a row that does not read: {e})")),
            Ok(c) if c.verify_record(&vault.master).is_err() => bad.push(c.name.to_string()),
            Ok(c) if c.status == ClientStatus::Active => match c.expires_ms {
                Some(e) if e <= now => {}
                Some(e) if e <= now + 7 * 86_400_000 => {
                    active += 1;
                    expiring += 1;
                }
                _ => active += 1,
            },
            Ok(_) => {}
        }
    }
    let mut checks = vec![if bad.is_empty() {
        check(
            "clients",
            Verdict::Ok,
            format!("{} record(s) verify; {active} usable", rows.len()),
        )
    } else {
        check(
            "clients",
            Verdict::Fail,
            format!(
                "changed without the master key (or unreadable): {}; revoke them and find \
                 out who can write the database",
                bad.join(", ")
            ),
        )
    }];
    if !any_network.is_empty() {
        checks.push(check(
            "withdrawals",
            Verdict::Warn,
            format!(
                "{} may withdraw to an address on any network (the same address on another \
                 chain may be nobody's); name the network: `keygate client update NAME \
                 --withdraw-address NETWORK:ADDRESS`",
                any_network.join(", ")
            ),
        ));
    }
    if !nowhere.is_empty() {
        checks.push(check(
            "withdrawals",
            Verdict::Warn,
            format!(
                "{} may withdraw but list no address, so every withdrawal they send is \
                 denied; give them their addresses: `keygate client update NAME \
                 --withdraw-address NETWORK:ADDRESS`",
                nowhere.join(", ")
            ),
        ));
    }
    if expiring > 0 {
        checks.push(check(
            "expiry",
            Verdict::Warn,
            format!(
                "{expiring} client(s) expire within 7 days; extend them with `keygate client update NAME --expires 90d`"
            ),
        ));
    }
    checks
}

/// What a gateway started now would leave out of its clients and accounts, and why:
/// found by loading the vault as `serve` does, so that what only a load sees (two
/// clients holding one Ed25519 public key) is told here too. `None` when it leaves
/// nothing out, or when it would load nothing at all (the client table's check says
/// why).
fn left_out_by_gateway(vault: &Unlocked) -> Option<Check> {
    // The load logs each as it finds it; here each is a line of the check instead.
    let silenced = tracing::subscriber::NoSubscriber::default();
    let registry = tracing::subscriber::with_default(silenced, || {
        keygate_gateway::registry::Registry::load(&vault.store, &vault.master)
    })
    .ok()?;
    if registry.refused().is_empty() {
        return None;
    }
    Some(check(
        "gateway",
        Verdict::Fail,
        format!("serve would refuse: {}", registry.refused().join("; ")),
    ))
}

/// Real keys that do not open (a ciphertext changed without the master key) or are due
/// for rotation.
fn accounts(vault: &Unlocked) -> Check {
    let accounts = match vault.store.account_rows() {
        Ok(rows) => rows,
        Err(e) => return check("accounts", Verdict::Fail, format!("cannot read: {e}")),
    };
    let now = now_ms();
    let mut overdue = Vec::new();
    let mut unreadable = Vec::new();
    let mut unopened = Vec::new();
    for row in &accounts {
        match row {
            Ok(a) => {
                // Opened and dropped at once (zeroized): only whether they open matters.
                let opened = a
                    .open_api_key(&vault.master)
                    .and_then(|_| a.open_secret(&vault.master));
                if let Err(e) = opened {
                    unopened.push(format!("{} ({e})", a.label));
                }
                if let Some(due) = a.rotation_due_ms().filter(|d| *d <= now) {
                    overdue.push(format!("{} (since {})", a.label, rfc3339(due)));
                }
            }
            // Named (found by review: only counted), as the store's error names the row.
            Err(e) => unreadable.push(e.to_string()),
        }
    }
    if !unreadable.is_empty() {
        check(
            "accounts",
            Verdict::Fail,
            format!(
                "{} account row(s) do not read: {}",
                unreadable.len(),
                unreadable.join("; ")
            ),
        )
    } else if !unopened.is_empty() {
        check(
            "accounts",
            Verdict::Fail,
            format!(
                "do not open, and the gateway refuses their clients: {}",
                unopened.join("; ")
            ),
        )
    } else if overdue.is_empty() {
        check(
            "accounts",
            Verdict::Ok,
            format!("{} account(s); no rotation overdue", accounts.len()),
        )
    } else {
        check(
            "accounts",
            Verdict::Warn,
            format!(
                "rotation overdue: {}; `keygate account rotate LABEL`",
                overdue.join(", ")
            ),
        )
    }
}

/// The log verifies, and holds the `checkpoints` given (`--checkpoint`).
fn audit_log(log: &Result<Verified, keygate_audit::Error>, checkpoints: usize) -> Check {
    match log {
        Ok(log) if log.events == 0 => check("audit log", Verdict::Fail, "empty: it was emptied"),
        Ok(log) if checkpoints > 0 => check(
            "audit log",
            Verdict::Ok,
            format!(
                "{} verify, and hold the {checkpoints} checkpoint(s) given",
                events_held(log)
            ),
        ),
        Ok(log) => check(
            "audit log",
            Verdict::Ok,
            format!(
                "{} verify; anchor it elsewhere with `keygate audit checkpoint`",
                events_held(log)
            ),
        ),
        Err(e) => check("audit log", Verdict::Fail, e.to_string()),
    }
}

/// The client and account tables match their seal, and the seal is no older than the last
/// administrative event in the log (else the tables were put back as they were before it).
fn client_table(vault: &Unlocked, log: &Result<Verified, keygate_audit::Error>) -> Check {
    let sealed = match vault.store.check_seal(&vault.master) {
        Ok(sealed) => sealed,
        Err(e) => return check("client and account tables", Verdict::Fail, e.to_string()),
    };
    match log {
        Ok(log) if sealed < log.last_admin_seq => check(
            "client and account tables",
            Verdict::Fail,
            format!(
                "sealed at event {sealed}, but event {} is a later administrative change: \
                 they were put back as they were before it; review them with `keygate upgrade`",
                log.last_admin_seq
            ),
        ),
        Ok(_) => check(
            "client and account tables",
            Verdict::Ok,
            "sealed; agree with the audit log",
        ),
        Err(_) => check(
            "client and account tables",
            Verdict::Warn,
            "match their seal; cannot be compared with an audit log that does not verify",
        ),
    }
}

/// Each real key's permissions, as its exchange reports them, against what its clients
/// may do: a key that can withdraw or transfer when none of its clients may, or that works
/// from any address, is a warning: on the exchange, it is one click to take away.
fn exchange_keys(vault: &Unlocked) -> Vec<Check> {
    // A real key is used only from accounts as keygate last sealed them: one put back as it
    // was before a rotation is not sent anywhere.
    if let Err(e) = vault.store.check_seal_is_latest(&vault.master) {
        return vec![check(
            "exchange key",
            Verdict::Fail,
            format!("not asked: {e}"),
        )];
    }
    let rows = match vault.store.account_rows() {
        Ok(rows) => rows,
        Err(e) => {
            return vec![check(
                "exchange key",
                Verdict::Fail,
                format!("cannot read accounts: {e}"),
            )]
        }
    };
    let clients = vault.store.client_rows().unwrap_or_default();
    let exchanges = match Exchanges::keeping_pauses_in(vault.store.path()) {
        Ok(exchanges) => exchanges,
        Err(e) => {
            return vec![check(
                "exchange key",
                Verdict::Fail,
                format!("cannot start: {e:#}"),
            )]
        }
    };
    let mut checks = Vec::new();
    for account in rows.iter().filter_map(|r| r.as_ref().ok()) {
        let label = &account.label;
        // The scopes of the clients that can still use this key.
        let needs = |scope: Scope| {
            clients.iter().filter_map(|r| r.as_ref().ok()).any(|c| {
                c.account == *label
                    && c.status != ClientStatus::Revoked
                    && c.policy.scopes.contains(scope)
            })
        };
        let asked = match account.exchange {
            Exchange::Binance => exchanges
                .signed_read(
                    &Binance,
                    &vault.master,
                    account,
                    Binance.permissions_path(),
                    "",
                )
                .map_err(String::from)
                .and_then(|answer| {
                    Binance
                        .parse_permissions(&answer.body)
                        .ok_or_else(|| "its answer does not read".to_owned())
                }),
        };
        let permissions = match asked {
            Ok(p) => p,
            Err(reason) => {
                checks.push(check(
                    "exchange key",
                    Verdict::Warn,
                    format!("{label}: cannot ask the exchange what it may do: {reason}"),
                ));
                continue;
            }
        };
        let mut excess = Vec::new();
        if permissions.can_withdraw && !needs(Scope::Withdraw) {
            excess
                .push("it can withdraw, and none of its clients may: turn withdrawals off for it");
        }
        if permissions.can_transfer && !needs(Scope::Transfer) {
            excess.push("it can transfer, and none of its clients may: turn transfers off for it");
        }
        if !permissions.ip_restricted {
            excess.push("it works from any address: restrict it to this host's");
        }
        let unwatched = permissions.unwatched_markets();
        let unwatched = (!unwatched.is_empty()).then(|| {
            format!(
                "it may trade {}, which no client can and no reconciliation checks: turn \
                 that off for it",
                unwatched.join(", ")
            )
        });
        excess.extend(unwatched.as_deref());
        checks.push(if excess.is_empty() {
            check(
                "exchange key",
                Verdict::Ok,
                format!("{label}: IP-restricted, and may do no more than its clients need"),
            )
        } else {
            check(
                "exchange key",
                Verdict::Warn,
                format!("{label}, on the exchange: {}", excess.join("; ")),
            )
        });
    }
    checks
}

/// Whether `[alerts]` would let `serve` start, whether alerts reach anyone but its log,
/// whether a machine in the middle could make an email count as sent that was not, and
/// whether a running serve alerts as they say (it read them when it started).
fn alerts(vault: &Unlocked) -> Check {
    let mut check = alerts_in_config(vault);
    // What is checked above is config.toml, which a running serve read when it started.
    if let Some(stale) = crate::alerts::stale_serve(&vault.home) {
        check.detail = format!("{}; but {}", check.detail, stale.warning());
        if check.verdict == Verdict::Ok {
            check.verdict = Verdict::Warn;
        }
    }
    check
}

/// The `[alerts]` settings of config.toml, as [`alerts`] checks them.
fn alerts_in_config(vault: &Unlocked) -> Check {
    match crate::alerts::settings(&vault.home) {
        Err(e) => check(
            "alerts",
            Verdict::Fail,
            format!("{e:#}; serve will not start"),
        ),
        Ok(settings) if settings.sinks.is_empty() => check(
            "alerts",
            Verdict::Warn,
            "no webhook or email in config.toml: alerts reach serve's log only",
        ),
        Ok(settings) => {
            let sinks: Vec<String> = settings.sinks.iter().map(|s| s.destination()).collect();
            let starttls: Vec<String> = settings
                .sinks
                .iter()
                .filter_map(|sink| match sink {
                    Sink::Email(email) if email.security() == SmtpSecurity::Starttls => {
                        Some(email.destination())
                    }
                    _ => None,
                })
                .collect();
            if starttls.is_empty() {
                return check(
                    "alerts",
                    Verdict::Ok,
                    format!("sent to {}", sinks.join(", ")),
                );
            }
            check(
                "alerts",
                Verdict::Warn,
                format!(
                    "sent to {}; email to {} uses STARTTLS (the default), whose first \
                     replies come in plain text: the SMTP client keygate uses keeps what a \
                     machine in the middle slips in before the upgrade, which can make an \
                     alert count as sent that never was; set security = \"tls\" (port 465) \
                     where the server offers it",
                    sinks.join(", "),
                    starttls.join(", ")
                ),
            )
        }
    }
}

/// The disk holding the home directory has room for the audit log to grow.
fn disk(vault: &Unlocked) -> Check {
    let dir = &vault.home.dir;
    disk_check(dir, crate::disk::Room::of(dir))
}

/// The check of the disk under `dir`, which has `room`.
fn disk_check(dir: &Path, room: std::io::Result<Option<crate::disk::Room>>) -> Check {
    match room {
        Ok(Some(room)) => match room.severity() {
            None => check("disk", Verdict::Ok, room.describe(dir)),
            // Found by review: doctor passed with no room left at all, while orders were
            // being refused.
            Some(_) if room.free < FULL_BYTES => check(
                "disk",
                Verdict::Fail,
                format!(
                    "{}: the audit log may not be written now, and orders, withdrawals and \
                     transfers are refused while it cannot be",
                    room.describe(dir)
                ),
            ),
            Some(_) => check(
                "disk",
                Verdict::Warn,
                format!(
                    "{}: once it is full the audit log cannot be written, and orders, \
                     withdrawals and transfers are refused",
                    room.describe(dir)
                ),
            ),
        },
        Ok(None) => check("disk", Verdict::Ok, "not checked on this system"),
        Err(e) => check(
            "disk",
            Verdict::Warn,
            format!("cannot tell how much room {} has: {e}", dir.display()),
        ),
    }
}

/// Room under which the disk counts as full: about what the audit log's write-ahead log
/// may take before it is checkpointed.
const FULL_BYTES: u64 = 64 << 20;

/// Whether the secrets read so far (every client's key above) could be locked in memory.
fn memory() -> Check {
    if keygate_vault::secrets_locked() {
        check(
            "memory",
            Verdict::Ok,
            "secrets are locked in memory (never swapped out)",
        )
    } else {
        check(
            "memory",
            Verdict::Warn,
            "secrets could not be locked in memory and may be swapped out; raise `ulimit -l`",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disk::Room;

    /// A regression test (found by review): doctor passed, with a warning, on a disk with
    /// no room left at all, while orders were being refused.
    #[test]
    fn a_full_disk_fails() {
        let dir = Path::new("/var/lib/keygate");
        let verdict = |free: u64| {
            disk_check(
                dir,
                Ok(Some(Room {
                    free,
                    total: 100 << 30,
                })),
            )
            .verdict
        };
        assert_eq!(verdict(0), Verdict::Fail);
        assert_eq!(verdict(10 << 20), Verdict::Fail);
        assert_eq!(verdict(512 << 20), Verdict::Warn);
        assert_eq!(verdict(50 << 30), Verdict::Ok);
    }
}
