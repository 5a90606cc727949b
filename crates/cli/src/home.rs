//! The home directory: where the database and config live, `init`, and unlocking the vault.

use std::fs;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use keygate_audit::{AuditKey, AuditLog};
use keygate_core::{escape_controls, AdminEvent, Event, EventBody};
use keygate_monitor::AlertsConfig;
use keygate_store::Store;
use keygate_vault::{HsmKey, KdfParams, MasterKey, SecretString, VaultFormat};
use serde::{Deserialize, Serialize};
use zeroize::Zeroize;

/// Meta key holding the Argon2id parameters of a passphrase vault (JSON).
pub(crate) const META_KDF: &str = "kdf";
/// Meta key holding the sealed check value that tells a wrong key from a right one.
pub const META_CHECK: &str = "check";
/// Meta key naming the master-key provider (`passphrase`, `key-file`, `env`, `hsm`).
const META_PROVIDER: &str = "master_key_provider";
/// Meta key holding the master key as the token key wrapped it, for [`Provider::Hsm`].
pub(crate) const META_HSM_WRAPPED: &str = "hsm_wrapped_master_key";

/// A keygate home directory.
#[derive(Clone, Debug)]
pub struct Home {
    /// The directory.
    pub dir: PathBuf,
}

impl Home {
    /// The home at `dir`, or the default `~/.local/share/keygate`.
    /// A home whose first component is `~` is refused: the shell expands it only as a
    /// word of its own (not after `--home=`, nor in an environment file), and taken as
    /// written it is a directory named `~` wherever the command runs.
    pub fn resolve(dir: Option<PathBuf>) -> anyhow::Result<Home> {
        if let Some(dir) = dir {
            if dir.components().next() == Some(std::path::Component::Normal("~".as_ref())) {
                bail!(
                    "the home {} starts with a `~` the shell did not expand (it does not after \
                     `--home=` or in an environment file); write it with $HOME or in full",
                    dir.display()
                );
            }
            return Ok(Home { dir });
        }
        let base = std::env::var_os("HOME")
            .filter(|h| !h.is_empty())
            .map(PathBuf::from)
            .context("HOME is not set; pass --home DIR or set KEYGATE_HOME")?;
        Ok(Home {
            dir: base.join(".local/share/keygate"),
        })
    }

    /// The SQLite database.
    pub fn db_path(&self) -> PathBuf {
        self.dir.join("keygate.db")
    }

    /// The config file.
    pub fn config_path(&self) -> PathBuf {
        self.dir.join("config.toml")
    }

    /// Reads the config file. It names the PKCS#11 module keygate loads and hands the
    /// token's PIN, and where the master key is: one that another user owns or may write
    /// is refused, whatever the home directory's mode.
    pub fn config(&self) -> anyhow::Result<Config> {
        self.parse_config()
    }

    /// Why `config` (read from this home) is not of the version this keygate reads
    /// (found by review: one of another version was taken as this one's), if it is not.
    fn config_version_refused(&self, config: &Config) -> Option<String> {
        (config.version != CONFIG_VERSION).then(|| {
            format!(
                "{} is of version {}, which this keygate does not read (it reads version \
                 {CONFIG_VERSION}): run the keygate that wrote it, or a newer one",
                self.config_path().display(),
                config.version
            )
        })
    }

    /// The `[alerts]` settings of the config file, read only by the commands that alert:
    /// a mistake there must not keep `panic`, `client freeze` or `doctor` from opening
    /// the vault.
    pub fn alerts_config(&self) -> anyhow::Result<AlertsConfig> {
        /// The config file as the commands that alert read it: a key that belongs
        /// nowhere (`[[alert.webhook]]`) is refused, a typo being an error rather than a
        /// setting silently ignored. [`Config`] leaves it for these commands to find.
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct WithAlerts {
            #[serde(rename = "version")]
            _version: serde::de::IgnoredAny,
            #[serde(rename = "master_key")]
            _master_key: serde::de::IgnoredAny,
            #[serde(default)]
            alerts: AlertsConfig,
            #[serde(rename = "audit", default)]
            _audit: Option<serde::de::IgnoredAny>,
        }
        Ok(self.parse_config::<WithAlerts>()?.alerts)
    }

    /// The `[audit]` settings of the config file. Read only where they are used: a
    /// mistake there must not keep `panic` from opening the vault.
    pub fn audit_settings(&self) -> anyhow::Result<AuditSettings> {
        #[derive(Deserialize)]
        struct WithAudit {
            #[serde(default)]
            audit: AuditSettings,
        }
        let settings = self.parse_config::<WithAudit>()?.audit;
        if let Some(path) = &settings.checkpoint_file {
            if !path.is_absolute() {
                bail!(
                    "[audit] checkpoint_file in {} must be an absolute path, not {}",
                    self.config_path().display(),
                    path.display()
                );
            }
        }
        Ok(settings)
    }

    /// Reads the config file into `T`, with an error that tells where the file is wrong
    /// without quoting it.
    fn parse_config<T: serde::de::DeserializeOwned>(&self) -> anyhow::Result<T> {
        let path = self.config_path();
        let mut file = fs::File::open(&path).with_context(|| {
            format!(
                "reading {} (run `keygate init` first, or pass --home)",
                path.display()
            )
        })?;
        let meta = file
            .metadata()
            .with_context(|| format!("reading {}", path.display()))?;
        check_config_owner_and_mode(&path, &meta)?;
        let mut text = String::new();
        std::io::Read::read_to_string(&mut file, &mut text)
            .with_context(|| format!("reading {}", path.display()))?;
        toml::from_str(&text).map_err(|e| {
            anyhow::anyhow!(
                "parsing {}{}: {}",
                path.display(),
                place_in(&text, e.span()),
                without_quoted_values(e.message())
            )
        })
    }
}

/// ` at line L, column C` of `span`'s start in `text`. A TOML error's own text quotes the
/// line, which may hold a webhook URL (whose path is a credential): only its place is told.
fn place_in(text: &str, span: Option<std::ops::Range<usize>>) -> String {
    let Some(before) = span.and_then(|span| text.get(..span.start)) else {
        return String::new();
    };
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map_or(0, |newline| newline + 1) + 1;
    format!(" at line {line}, column {column}")
}

/// `message` with each double-quoted value cut out: a type error quotes the value it did
/// not expect (`invalid type: string "https://…", expected a sequence`). Names, which
/// serde quotes with backticks, stay.
fn without_quoted_values(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut inside = false;
    for c in message.chars() {
        match (c, inside) {
            ('"', false) => {
                out.push_str("\"…");
                inside = true;
            }
            ('"', true) => {
                out.push('"');
                inside = false;
            }
            (_, true) => {}
            (c, false) => out.push(c),
        }
    }
    out
}

/// The version of `config.toml` this keygate writes and reads.
const CONFIG_VERSION: u32 = 1;

/// What `config.toml` records, as every command that opens the vault reads it: only
/// `[master_key]` must be right for the vault to open (`keygate panic` must work
/// whatever else is wrong there); the commands that alert read the rest
/// ([`Home::alerts_config`]) and refuse what belongs nowhere.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Config {
    /// Config format version.
    pub version: u32,
    /// Where the master key comes from.
    pub master_key: MasterKeyConfig,
    /// What raises an alert and where alerts go (`[alerts]`, `[[alerts.webhook]]`), as
    /// written: [`Home::alerts_config`] reads it.
    #[serde(default, skip_serializing_if = "toml::Table::is_empty")]
    pub alerts: toml::Table,
    /// Whatever else the file holds, kept as it is when `vault move-key` rewrites it.
    #[serde(flatten)]
    pub other: toml::Table,
}

/// Appends `checkpoint` to the checkpoint file at `path`, once the log (in `store`, MACed
/// with `key`) is found to hold the file's last checkpoint. A failure is told, not
/// returned: the change it would anchor is made.
///
/// A vault put back from a backup older than that checkpoint does not continue the log
/// the file anchors: its checkpoint, for a seq the file may name already with another
/// hash, would make the file contradict the genuine vault too, which `audit verify` and
/// `serve` then refuse as rewritten. So nothing is appended to it, and the warning says
/// why. Only the last checkpoint is checked, and only that the log holds its event: each
/// change comes here, and verifying the whole log each time would cost too much.
pub(crate) fn write_anchor(
    store: &Store,
    key: &AuditKey,
    path: &Path,
    checkpoint: Result<keygate_audit::Checkpoint, keygate_audit::Error>,
) {
    let last = match crate::audit_cmd::last_checkpoint_in(path) {
        Ok(last) => last,
        Err(e) => return warn_unanchored(path, &e),
    };
    if let Some(last) = last {
        match keygate_audit::holds_checkpoint(store, key, &last) {
            Ok(()) => {}
            Err(
                e @ (keygate_audit::Error::Tampered { .. }
                | keygate_audit::Error::BadCheckpoint { .. }),
            ) => return warn_not_continued(path, &e),
            // Not read: nothing is known of the log, so nothing is appended.
            Err(e) => {
                let e = anyhow::Error::from(e).context("reading the audit log");
                return warn_unanchored(path, &e);
            }
        }
    }
    let written = checkpoint
        .map_err(anyhow::Error::from)
        .and_then(|checkpoint| crate::audit_cmd::append_checkpoint(path, &checkpoint));
    if let Err(e) = written {
        warn_unanchored(path, &e);
    }
}

/// Tells, loudly, that no checkpoint of the change was appended to `path` because the log
/// does not hold the file's last checkpoint (`e` says how).
fn warn_not_continued(path: &Path, e: &keygate_audit::Error) {
    eprintln!(
        "keygate: WARNING: the change is made, but NO checkpoint of it was appended to {}: \
         the audit log does not hold the file's last checkpoint ({}), so the file anchors a \
         log this vault does not continue. The vault may have been put back from a backup \
         older than that checkpoint, undoing every change since. Keep the file as it is, \
         as evidence (`keygate audit verify` says more); after a deliberate restore, point \
         `[audit] checkpoint_file` at a new file (`touch NEW && keygate audit checkpoint \
         --append NEW`), then redo the changes made since the backup",
        path.display(),
        crate::output::escape_controls(&e.to_string())
    );
}

/// Tells that no checkpoint of the change was written to `path`, and why (`e`).
fn warn_unanchored(path: &Path, e: &anyhow::Error) {
    // keygate never creates a checkpoint file: the hint for one not there differs
    // (found by review: the command named refused the missing file it was offered for).
    let remedy = if path.exists() {
        ""
    } else {
        " once the file is back (put back the one the setting names: a mount not there, a \
         file moved; `touch` it only if it never existed),"
    };
    eprintln!(
        "keygate: warning: the change is made, but no checkpoint of it was written to \
         {}: {e:#};{remedy} `keygate audit checkpoint --append {}` writes one",
        path.display(),
        path.display()
    );
}

/// The `[audit]` section of `config.toml`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditSettings {
    /// A file each administrative change appends a checkpoint of the audit log to (once
    /// the log holds the file's last one: [`write_anchor`]), and which `serve`, `doctor`,
    /// `audit verify`, `vault backup` and the commands that show the log check the log
    /// against: kept where a vault put back from a backup cannot reach (another disk,
    /// another machine's mount), it anchors every revoke, freeze and rotation as it is
    /// made.
    pub checkpoint_file: Option<PathBuf>,
}

/// The master-key provider chosen at `init`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MasterKeyConfig {
    /// Which provider.
    pub provider: Provider,
    /// The key file, for [`Provider::KeyFile`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_file: Option<PathBuf>,
    /// The environment variable, for [`Provider::Env`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env_var: Option<String>,
    /// The token key wrapping the master key, for [`Provider::Hsm`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hsm: Option<HsmKey>,
}

/// A master-key provider.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Provider {
    /// Argon2id over a passphrase, parameters in the database.
    Passphrase,
    /// 32 random bytes in an owner-only file.
    KeyFile,
    /// 32 bytes, hex or base64, in an environment variable (containers).
    Env,
    /// Random, kept wrapped by a key on a PKCS#11 token (an HSM), in the database.
    Hsm,
}

impl Provider {
    /// Its name in `config.toml`.
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Passphrase => "passphrase",
            Provider::KeyFile => "key-file",
            Provider::Env => "env",
            Provider::Hsm => "hsm",
        }
    }
}

/// How the operator supplies the master key (the global options).
#[derive(Clone, Debug, Default)]
pub struct UnlockArgs {
    /// Read the passphrase from this file (first line).
    pub passphrase_file: Option<PathBuf>,
    /// Read the passphrase from the first line of standard input.
    pub passphrase_stdin: bool,
    /// Use this 32-byte key file.
    pub master_key_file: Option<PathBuf>,
    /// Take the key from this environment variable.
    pub master_key_env: Option<String>,
    /// Read the token's PIN from this file.
    pub hsm_pin_file: Option<PathBuf>,
}

/// An opened vault: the database, the master key and the audit log.
pub struct Unlocked {
    /// The home directory.
    pub home: Home,
    /// The database.
    pub store: Store,
    /// The master key.
    pub master: MasterKey,
    /// The audit log writer.
    pub audit: AuditLog,
    /// The audit MAC key.
    pub audit_key: AuditKey,
    /// The vault's format, as its check value records it.
    pub format: VaultFormat,
}

impl Unlocked {
    /// Makes an administrative change and writes its audit `events` in one transaction,
    /// durably: both are committed or neither is, so no change goes unaudited and no
    /// event tells of a change that did not happen. The client and account tables' seal,
    /// if it held, is made again at the last of these events, so that `keygate audit
    /// verify` can tell the tables were not put back to before them.
    pub fn change<T>(
        &mut self,
        events: &[Event],
        make: impl FnOnce(&Store, &MasterKey) -> Result<T, keygate_store::Error>,
    ) -> Result<T, keygate_audit::Error> {
        let (value, unsealed) =
            self.audited_change(|s, master| Ok((make(s, master)?, events.to_vec())))?;
        warn_if_unsealed(unsealed);
        Ok(value)
    }

    /// The transaction of every administrative change: `make` changes the store and
    /// returns the events that tell of it, which commit with the change or not at all. The
    /// client and account tables' seal, if it held and was the latest, is made again at them. Returns
    /// `make`'s value and, when the seal did not hold, why.
    pub fn audited_change<T>(
        &mut self,
        make: impl FnOnce(&Store, &MasterKey) -> Result<(T, Vec<Event>), keygate_audit::Error>,
    ) -> Result<(T, Option<keygate_store::Error>), keygate_audit::Error> {
        let anchor = self.anchor_file();
        let (value, unsealed, checkpoint) = self.checkpointed_change(anchor.as_deref(), make)?;
        if let (Some(path), Some(checkpoint)) = (anchor, checkpoint) {
            write_anchor(&self.store, &self.audit_key, &path, checkpoint);
        }
        Ok((value, unsealed))
    }

    /// [`Unlocked::audited_change`], with the checkpoint of the change's last event,
    /// taken in its transaction, returned rather than written, when `anchor` names the
    /// file it is for.
    pub(crate) fn checkpointed_change<T>(
        &mut self,
        anchor: Option<&Path>,
        make: impl FnOnce(&Store, &MasterKey) -> Result<(T, Vec<Event>), keygate_audit::Error>,
    ) -> Result<(T, Option<keygate_store::Error>, Option<CheckpointTaken>), keygate_audit::Error>
    {
        let (master, key) = (&self.master, &self.audit_key);
        let (value, unsealed, checkpoint, first_recorded) = self.store.transaction(|s| {
            let sealed = s.check_seal_is_latest(master);
            // A change that records a file, or that none is kept, is not followed by a
            // first record of its own; nor is one on a vault whose record does not read
            // (its seal then does not hold either): the change itself must not fail for
            // it, `keygate panic` least of all (found by review).
            let none_recorded_before = matches!(s.checkpoint_file(), Ok(None));
            let (value, mut events) = make(s, master)?;
            let first_record = match (anchor, events.is_empty(), none_recorded_before) {
                (Some(path), false, true) => first_record_of_checkpoint_file(s, path)?,
                _ => None,
            };
            let first_recorded = first_record.is_some();
            events.extend(first_record);
            keygate_audit::append_within(s, key, &events)?;
            // The change's own last event, synced with it: an event a running gateway
            // appends after it may not be synced yet, and a checkpoint of that one would
            // read as a rollback after a power cut.
            let checkpoint = anchor
                .is_some()
                .then(|| keygate_audit::head_checkpoint(s, key));
            s.reseal(master, &sealed)?;
            Ok::<_, keygate_audit::Error>((value, sealed.err(), checkpoint, first_recorded))
        })?;
        if let (Some(path), true) = (anchor, first_recorded) {
            // Said, not done quietly: whoever can edit config.toml chose this file too
            // (found by review).
            eprintln!(
                "keygate: recorded {}, config.toml's [audit] checkpoint_file, as where this \
                 vault's checkpoints are kept; from now on a config that names no file, or \
                 another, is refused",
                escape_controls(&path.display().to_string())
            );
        }
        Ok((value, unsealed, checkpoint))
    }

    /// The file a change takes its checkpoint for, in its transaction, and
    /// [`write_anchor`]s it to after: the one the vault records
    /// ([`Store::checkpoint_file`]), whatever config.toml says (found by review: a
    /// setting taken out only while a revoke was made sent the revoke's checkpoint
    /// nowhere, and a copy from before it then verified against the file), and said
    /// loudly when the config names none or another; else the config's `[audit]
    /// checkpoint_file`, if one is set. A mistake in `[audit]` is told, not returned: the
    /// change is made all the same.
    pub(crate) fn anchor_file(&self) -> Option<PathBuf> {
        let configured = match self.home.audit_settings() {
            Ok(settings) => settings.checkpoint_file,
            Err(e) => {
                eprintln!("keygate: warning: config.toml's [audit] does not read: {e:#}");
                None
            }
        };
        let recorded = match self.store.checkpoint_file() {
            Ok(recorded) => recorded.map(PathBuf::from),
            Err(e) => {
                eprintln!(
                    "keygate: warning: the checkpoint file this vault records does not read \
                     ({e}); the change is anchored where config.toml says, if anywhere"
                );
                None
            }
        };
        let Some(recorded) = recorded else {
            return configured;
        };
        if configured.as_ref() != Some(&recorded) {
            eprintln!(
                "keygate: WARNING: config.toml's [audit] checkpoint_file is {}, but this \
                 vault keeps its checkpoints in {}: this change's checkpoint goes there. If \
                 you did not change the setting, someone who can write config.toml did; \
                 `keygate audit verify` refuses the config until it names that file again",
                configured.map_or_else(
                    || "not set".to_owned(),
                    |c| escape_controls(&c.display().to_string()).into_owned()
                ),
                escape_controls(&recorded.display().to_string())
            );
        }
        Some(recorded)
    }

    /// Brings a vault made by an earlier keygate to this one's schema (version 2 deleted a
    /// removed account's clients; version 3 keeps them, revoked), audited as `vault.schema`
    /// in the same transaction, whichever command unlocked it first. Every row is copied
    /// as it is; the tables' seal, if it held, is made again at the event, as any
    /// change's is. Nothing is written when the schema is this keygate's already.
    fn upgrade_schema(&mut self) -> anyhow::Result<()> {
        if self.store.is_schema_current()? {
            return Ok(());
        }
        self.audited_change(|s, _| {
            // Another keygate may have upgraded it since the check above: then no event.
            let events = match s.upgrade_schema_within()? {
                Some(from) => vec![admin_event(
                    "vault.schema",
                    "database",
                    serde_json::json!({ "from": from, "to": s.schema_version()? }),
                )],
                None => Vec::new(),
            };
            Ok(((), events))
        })
        .context("bringing a vault made by an earlier keygate to this one's schema")?;
        Ok(())
    }
}

/// The event of recording `path`, the config's `[audit] checkpoint_file`, as the file the
/// vault's checkpoints are kept in, when the vault records none yet: from then on the
/// tables' seal keeps it, and `serve`, `doctor` and `audit verify` refuse a config that
/// names no file, or another ([`crate::audit_cmd::checkpoint_files`]). A vault that
/// records a file already keeps it: only `keygate audit checkpoint --append FILE` (a move)
/// or `--drop-file` changes it.
fn first_record_of_checkpoint_file(
    s: &Store,
    path: &Path,
) -> Result<Option<Event>, keygate_store::Error> {
    // The path came from config.toml, which is UTF-8.
    let Some(path) = path.to_str() else {
        return Ok(None);
    };
    if s.checkpoint_file()?.is_some() {
        return Ok(None);
    }
    Ok(Some(record_checkpoint_file(s, Some(path), None)?))
}

/// Records `path` (or, with `None`, no file) as where the vault's checkpoints are kept,
/// `from` the one recorded before, and returns the event that tells of it. Inside an
/// audited change's transaction, which seals the tables again with the record.
pub(crate) fn record_checkpoint_file(
    s: &Store,
    path: Option<&str>,
    from: Option<&str>,
) -> Result<Event, keygate_store::Error> {
    s.set_checkpoint_file(path)?;
    Ok(admin_event(
        "audit.checkpoint_file",
        "checkpoint_file",
        serde_json::json!({ "path": path, "from": from }),
    ))
}

/// A checkpoint taken in a change's transaction, or why none could be.
pub(crate) type CheckpointTaken = Result<keygate_audit::Checkpoint, keygate_audit::Error>;

/// Says why a change left the client and account tables unsealed, if it did: made, but
/// the gateway serves no client until the tables are reviewed. A seal that could not be
/// checked at all is not made again either; the change itself goes ahead, since
/// `keygate panic` must not wait on the seal.
pub(crate) fn warn_if_unsealed(unsealed: Option<keygate_store::Error>) {
    match unsealed {
        Some(e @ keygate_store::Error::Unsealed { .. }) => eprintln!("keygate: warning: {e}"),
        Some(e) => eprintln!(
            "keygate: warning: the client and account tables' seal could not be checked \
             ({e}); the change was made, but the tables were not sealed again: every client \
             is refused until `keygate upgrade` has shown and sealed them"
        ),
        None => {}
    }
}

/// Opens `path` to read and write, created owner-only if it is not there and kept as it
/// is if it is: the lock files `serve` holds in the home directory.
pub(crate) fn open_owner_only(path: &Path) -> anyhow::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options
        .open(path)
        .with_context(|| format!("opening {}", path.display()))
}

/// Puts the config naming the new provider, written aside at `next`, in place of the
/// home's, once the move is recorded. If it cannot be, the vault still opens with the old
/// provider, and the log is told so in a second event, `vault.move_key_undone` (found by
/// review: the log said the key had moved, and nothing said it had not).
fn replace_config_after_recording(vault: &mut Unlocked, next: &Path) -> anyhow::Result<()> {
    let config = vault.home.config_path();
    let Err(e) = fs::rename(next, &config) else {
        return Ok(());
    };
    let undone = admin_event(
        "vault.move_key_undone",
        &vault.home.dir.display().to_string(),
        serde_json::json!({ "reason": format!("replacing config.toml: {e}") }),
    );
    if let Err(told) = vault.change(&[undone], |_, _| Ok(())) {
        eprintln!(
            "keygate: warning: the audit log records the move (vault.move_key), but it was \
             not made, and that could not be recorded ({told}); the vault opens with its \
             old provider"
        );
    }
    Err(e).with_context(|| format!("replacing {}; the vault opens as before", config.display()))
}

/// The audit event of an administrative change made from the command line.
pub fn admin_event(change: &str, target: &str, detail: serde_json::Value) -> Event {
    Event {
        ts_ms: now_ms(),
        body: EventBody::Admin(AdminEvent {
            actor: "cli".into(),
            change: change.into(),
            target: target.into(),
            detail,
        }),
    }
}

/// Options of `keygate init`.
#[derive(clap::Args, Debug)]
pub struct InitArgs {
    /// DANGER: derive the passphrase key with tiny Argon2id costs. For tests only.
    #[arg(long, hide = true, conflicts_with = "hsm_module")]
    pub insecure_fast_kdf: bool,
    #[command(flatten)]
    pub hsm: HsmArgs,
}

/// The PKCS#11 token key that wraps the master key (`init`, `vault move-key`).
#[derive(clap::Args, Debug)]
pub struct HsmArgs {
    /// Keep the master key wrapped by a key on a PKCS#11 token (an HSM): the module's
    /// absolute path (SoftHSM2: /usr/lib/softhsm/libsofthsm2.so). The token's PIN comes
    /// from --hsm-pin-file or a prompt, now and every time the vault is opened.
    #[arg(long, value_name = "PATH", requires = "hsm_token")]
    pub hsm_module: Option<PathBuf>,
    /// The label of the token holding the wrapping key.
    #[arg(long, value_name = "LABEL", requires = "hsm_module")]
    pub hsm_token: Option<String>,
    /// The wrapping key's label on the token; created (AES-256, not extractable) when the
    /// token has none.
    #[arg(
        long,
        value_name = "LABEL",
        default_value = "keygate-master",
        requires = "hsm_module"
    )]
    pub hsm_key: String,
}

impl HsmArgs {
    /// The token key these options name, if they name one.
    pub fn key(&self) -> Option<HsmKey> {
        Some(HsmKey {
            module: self.hsm_module.clone()?,
            token: self.hsm_token.clone()?,
            key: self.hsm_key.clone(),
        })
    }
}

/// `keygate vault …`
#[derive(clap::Subcommand, Debug)]
pub enum VaultCmd {
    /// Keep the same master key with another provider: wrapped by a key on a PKCS#11
    /// token (--hsm-module, --hsm-token), or in a new key file (--to-key-file). Accounts,
    /// clients and the audit log stay as they are.
    MoveKey(MoveKeyArgs),
    /// Copy the vault, while serve runs, into a new directory that is a home of its own
    /// (database and config file; not the master key), and verify the copy.
    Backup(crate::backup::BackupArgs),
}

/// Options of `keygate vault move-key`.
#[derive(clap::Args, Debug)]
#[command(group(clap::ArgGroup::new("target").required(true).args(["hsm_module", "to_key_file"])))]
pub struct MoveKeyArgs {
    #[command(flatten)]
    pub hsm: HsmArgs,
    /// Write the master key to this new file (mode 0600) and open the vault with it.
    #[arg(long, value_name = "FILE", conflicts_with = "hsm_module")]
    pub to_key_file: Option<PathBuf>,
}

/// Runs a `keygate vault` command; returns its exit code.
pub fn vault(vault: Unlocked, how: &UnlockArgs, cmd: &VaultCmd) -> anyhow::Result<i32> {
    match cmd {
        VaultCmd::MoveKey(args) => move_key(vault, how, args).map(|()| 0),
        VaultCmd::Backup(args) => crate::backup::run(vault, args),
    }
}

/// Gives the vault's master key to another provider. In three steps, each of which
/// leaves a vault that opens: the new provider's material is added to the database
/// (audited), `config.toml` is switched to it (replaced whole, by a rename), and the old
/// provider's material is removed from the database.
/// Whether `a` and `b` name one file, however written ([`file_identity`]).
fn same_file(a: &Path, b: &Path) -> bool {
    file_identity(a).is_some_and(|id| file_identity(b) == Some(id))
}

/// What tells one file from another whatever its name: its device and inode (its
/// canonical path elsewhere), so that a hard link to the key file is not taken for a copy.
pub(crate) fn file_identity(path: &Path) -> Option<(u64, u64)> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
    }
    #[cfg(not(unix))]
    {
        use std::hash::{Hash, Hasher};
        let path = path.canonicalize().ok()?;
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        path.hash(&mut hasher);
        Some((0, hasher.finish()))
    }
}

fn move_key(mut vault: Unlocked, how: &UnlockArgs, args: &MoveKeyArgs) -> anyhow::Result<()> {
    let mut config = vault.home.config()?;
    let from = config.master_key.provider;
    if from == Provider::Hsm && args.hsm.key().is_some() {
        // One wrapped key in the database, named by the config: replacing both at once
        // cannot be made safe against a failure between the two.
        bail!(
            "the master key is on a token already; to move it to another token, move it to \
             a key file first (--to-key-file FILE), then onto the other token, then destroy \
             the file"
        );
    }
    let (to, wrapped, detail) = if let Some(at) = args.hsm.key() {
        let loaded = checked_hsm_module(&at)?;
        let pin = read_hsm_pin(how, &at.token)?;
        // The token unwraps what it wrapped before this returns (checked there).
        let wrapped = vault
            .master
            .wrap_with_hsm(&loaded, &pin)
            .context("wrapping the master key with the token's key")?;
        let detail = serde_json::json!({ "from": from.as_str(), "to": "hsm", "token": at.token, "key": at.key });
        config.master_key = MasterKeyConfig {
            provider: Provider::Hsm,
            key_file: None,
            env_var: None,
            hsm: Some(at),
        };
        (Provider::Hsm, Some(wrapped), detail)
    } else {
        let path = absolute(args.to_key_file.as_deref().context("checked by clap")?)?;
        let check = vault
            .store
            .meta(META_CHECK)
            .context("reading the vault check value")?
            .context("the vault has no check value; the database is incomplete")?;
        // Not made: a key file written under the mount point of a disk not mounted is
        // hidden once it is, right after the old one was shredded (found by review).
        if let Some(parent) = path.parent().filter(|p| !p.is_dir()) {
            bail!(
                "{} is not a directory; the key file goes into a directory that exists (is \
                 the disk it is on mounted?)",
                parent.display()
            );
        }
        // Found by review: a move stopped between writing the key file and recording the
        // move (a kill, a crash) leaves a copy of the master key nothing uses, and running
        // it again said only that the file exists. Such a copy is told apart from the key
        // file in use, which must never be removed.
        if MasterKey::from_key_file(&path).is_ok_and(|key| key.verify_check(&check).is_ok()) {
            let configured = config
                .master_key
                .key_file
                .as_deref()
                .filter(|_| from == Provider::KeyFile);
            if configured.is_some_and(|used| same_file(used, &path)) {
                bail!(
                    "{} is the key file this vault opens with already; nothing to move",
                    path.display()
                );
            }
            if how
                .master_key_file
                .as_deref()
                .is_some_and(|given| same_file(given, &path))
            {
                bail!(
                    "{} is the key file given with --master-key-file, which the move would \
                     write anew; to make the vault open with a key file, name a new path",
                    path.display()
                );
            }
            bail!(
                "{} already holds this vault's master key, and is not the key file the vault \
                 opens with: a copy (a backup, the file of an earlier provider, or one left by \
                 a `vault move-key` that was stopped before it finished). Nothing was changed; \
                 name a new file, or, if that copy is no backup you keep, remove it and run \
                 this again",
                path.display()
            );
        }
        check_key_file_directory(&path)?;
        vault
            .master
            .write_key_file(&path)
            .with_context(|| format!("writing key file {}", path.display()))?;
        let written = MasterKey::from_key_file(&path);
        if !written.is_ok_and(|key| key.verify_check(&check).is_ok()) {
            let _ = fs::remove_file(&path);
            bail!(
                "key file {} does not read back as the master key; it was removed and \
                 nothing was changed",
                path.display()
            );
        }
        let detail =
            serde_json::json!({ "from": from.as_str(), "to": "key-file", "key_file": path });
        config.master_key = MasterKeyConfig {
            provider: Provider::KeyFile,
            key_file: Some(path),
            env_var: None,
            hsm: None,
        };
        (Provider::KeyFile, None, detail)
    };

    let event = admin_event(
        "vault.move_key",
        &vault.home.dir.display().to_string(),
        detail,
    );
    // The new config is written aside before the move is recorded, so that once it is,
    // only a rename is left to fail.
    let next = next_master_key_config(&vault.home, &config);
    let moved = match &next {
        Ok(next) => vault
            .change(&[event], |s, _| match &wrapped {
                Some(wrapped) => s.set_meta(META_HSM_WRAPPED, wrapped),
                None => Ok(()),
            })
            .context("recording the move")
            .and_then(|()| replace_config_after_recording(&mut vault, next)),
        Err(e) => Err(anyhow::anyhow!("{e:#}")),
    };
    if let Err(e) = moved {
        // The vault still opens as before; leave no extra copy of its key behind.
        if let Ok(next) = &next {
            let _ = fs::remove_file(next);
        }
        if let Some(path) = &config.master_key.key_file {
            let _ = fs::remove_file(path);
        }
        return Err(e);
    }
    // The rename itself reaches the disk before the old provider's data is removed. If it
    // cannot be made sure of, the move is made all the same: the config names the new
    // provider, and its key file is kept.
    if let Err(e) = fs::File::open(&vault.home.dir).and_then(|dir| dir.sync_all()) {
        eprintln!(
            "keygate: warning: {} could not be synced ({e}); the old provider's data is kept",
            vault.home.dir.display()
        );
        println!(
            "the master key moved from {} to {}",
            from.as_str(),
            to.as_str()
        );
        return Ok(());
    }
    // Only now does nothing need the old provider's material. In a transaction, which
    // waits its turn behind a busy gateway's audit writer as long as any change does.
    let cleanup = vault
        .store
        .transaction(|s: &Store| {
            s.set_meta(META_PROVIDER, to.as_str().as_bytes())?;
            if from == Provider::Passphrase {
                s.delete_meta(META_KDF)?;
            }
            if from == Provider::Hsm && to != Provider::Hsm {
                s.delete_meta(META_HSM_WRAPPED)?;
            }
            Ok::<_, keygate_store::Error>(())
        })
        // The rows are overwritten in the database (secure delete), but the write-ahead
        // log holds earlier copies of their page.
        .and_then(|()| vault.store.truncate_wal());
    let gone = match cleanup {
        Ok(true) => true,
        Ok(false) => {
            eprintln!(
                "keygate: warning: another process has the vault open (a running `keygate \
                 serve`?): the old provider's data leaves the database's write-ahead log \
                 (keygate.db-wal) when the last process using the vault stops"
            );
            false
        }
        Err(e) => {
            eprintln!(
                "keygate: warning: the old provider's data stays in the database ({e}); \
                 `keygate doctor` warns of it for as long as it does"
            );
            false
        }
    };
    println!(
        "the master key moved from {} to {}",
        from.as_str(),
        to.as_str()
    );
    println!(
        "{}",
        match from {
            Provider::Passphrase if gone => "the passphrase no longer opens this database, but it still opens any copy or backup made before now: keep those as safe as before",
            Provider::Passphrase => "the passphrase still opens this database until its salt is gone (above), and any copy or backup made before now: keep those as safe as before",
            Provider::KeyFile => "the old key file still opens this vault (the master key is the same): destroy it and every copy of it (shred -u FILE)",
            Provider::Env => "the old value of the environment variable still opens this vault: remove it from wherever it is kept",
            Provider::Hsm if gone => "the old token's key still opens any copy or backup of the database made before now: destroy that key on the token when you no longer need them",
            Provider::Hsm => "the old token's key still opens this database until its wrapped key is gone (above), and any copy or backup made before now: destroy that key on the token when you no longer need them",
        }
    );
    Ok(())
}

/// Writes `config.toml` with its `[master_key]` table replaced, the rest of the file (and
/// its comments) as it is, beside it under a name of this run's own (another run's file
/// is never touched), to take the old one's place by a rename.
fn next_master_key_config(home: &Home, config: &Config) -> anyhow::Result<PathBuf> {
    let path = home.config_path();
    let text = fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let mut document: toml_edit::DocumentMut = text
        .parse()
        .with_context(|| format!("parsing {}", path.display()))?;
    let table: toml_edit::DocumentMut = toml::to_string(&config.master_key)
        .context("encoding the master key's settings")?
        .parse()
        .context("encoding the master key's settings")?;
    document["master_key"] = toml_edit::Item::Table(table.as_table().clone());
    let next = path.with_extension(format!("toml.next-{:016x}", rand::random::<u64>()));
    write_private_file(&next, document.to_string().as_bytes())?;
    Ok(next)
}

/// Creates the home directory, the database and the config file.
pub fn init(home: Home, how: &UnlockArgs, args: &InitArgs) -> anyhow::Result<()> {
    let db = home.db_path();
    let config_path = home.config_path();
    // Before anything is made: a key file, say.
    if home.dir.exists() {
        check_home_owner(&home.dir)?;
    }
    check_home_parents(&home.dir)?;
    if db.exists() || config_path.exists() {
        let found = found_vault(&db);
        if found == Found::Altered {
            bail!(
                "the vault in {} has no check value, yet it holds keys or events: it was \
                 altered. Restore {} from a backup; nothing was changed",
                home.dir.display(),
                db.display()
            );
        }
        if found == Found::NotSqlite {
            bail!(
                "{} is not an SQLite database: if it was this vault, it is damaged; restore \
                 it from a backup. Otherwise move it away, or give keygate another home \
                 (--home). Nothing was changed",
                db.display()
            );
        }
        if found == Found::Foreign {
            bail!(
                "{} is not a keygate database; nothing was changed. Move it away, or give \
                 keygate another home (--home)",
                db.display()
            );
        }
        if found == Found::Unfinished && !db.exists() {
            bail!(
                "{} exists but {} does not: an earlier `keygate init` stopped before making \
                 the database, or the file was put there by hand. init writes the config file \
                 itself: move it aside, run init again, then add back what it held (its \
                 [alerts] settings, say)",
                config_path.display(),
                db.display()
            );
        }
        if found == Found::Unfinished {
            bail!(
                "an earlier `keygate init` in {} did not finish: its database has no check \
                 value, so it holds no key and no event. Make sure no other init runs, remove \
                 {} (and its -wal and -shm files) and {}, then run init again",
                home.dir.display(),
                db.display(),
                config_path.display()
            );
        }
        bail!(
            "a keygate vault already exists in {}; refusing to overwrite it",
            home.dir.display()
        );
    }
    let hsm = args.hsm.key();
    if hsm.is_some()
        && (how.master_key_file.is_some()
            || how.master_key_env.is_some()
            || how.passphrase_file.is_some()
            || how.passphrase_stdin)
    {
        bail!("--hsm-module chooses the master key's provider; it cannot go with a passphrase, a key file or --master-key-env");
    }
    // Obtain the key first, so that a failed prompt or a bad key file leaves nothing behind.
    // What this run creates, and only that, is removed if it fails: another `init` racing
    // this one may have made the rest.
    let mut created = MadeByThisRun(Vec::new());
    let mut hsm_wrapped = None;
    let mut reused_key_file = false;
    let (master, provider, key_file, kdf) = match &how.master_key_file {
        None if hsm.is_some() => {
            let at = hsm.as_ref().context("checked above")?;
            let loaded = checked_hsm_module(at)?;
            let pin = read_hsm_pin(how, &at.token)?;
            let (master, wrapped) = MasterKey::generate_hsm_wrapped(&loaded, &pin)
                .context("wrapping a new master key with the token's key")?;
            hsm_wrapped = Some(wrapped);
            (master, Provider::Hsm, None, None)
        }
        None if how.master_key_env.is_some() => {
            let var = how.master_key_env.as_deref().unwrap_or_default();
            (master_key_from_env(var)?, Provider::Env, None, None)
        }
        Some(path) => {
            let path = absolute(path)?;
            let master = if path.exists() {
                reused_key_file = true;
                check_key_file_directory(&path)?;
                MasterKey::from_key_file(&path)
                    .with_context(|| format!("using key file {}", path.display()))?
            } else {
                create_parent_dir(&path)?;
                check_key_file_directory(&path)?;
                let master = MasterKey::create_key_file(&path)
                    .with_context(|| format!("creating key file {}", path.display()))?;
                // A key that no vault was made with opens nothing: it goes if this fails.
                created.add(path.clone());
                master
            };
            (master, Provider::KeyFile, Some(path), None)
        }
        None => {
            let passphrase = read_passphrase(how, true)?;
            let params = if args.insecure_fast_kdf {
                KdfParams::with_cost(8 * 1024, 1)
            } else {
                KdfParams::recommended()
            };
            let master = MasterKey::from_passphrase(&passphrase, &params)
                .context("deriving the master key from the passphrase")?;
            (master, Provider::Passphrase, None, Some(params))
        }
    };

    create_private_dir(&home.dir)?;
    // Made meanwhile by someone else, it would not be this user's; nor would a directory
    // above it made between the check of its parents and this (found by review).
    check_home_owner(&home.dir)?;
    check_home_parents(&home.dir)?;
    // A home that existed already keeps its mode otherwise (0755, say), which doctor then
    // fails: the vault's directory is its owner's alone. Said when it changes (found by
    // review: done without a word to a directory that may be someone's project).
    #[cfg(unix)]
    let mode_before = {
        use std::os::unix::fs::PermissionsExt;
        fs::metadata(&home.dir)
            .with_context(|| format!("reading {}", home.dir.display()))?
            .permissions()
            .mode()
            & 0o7777
    };
    set_mode(&home.dir, 0o700)?;
    #[cfg(unix)]
    if mode_before != 0o700 {
        crate::output::tell(format_args!(
            "keygate: made {} owner-only (mode 0700; it was {mode_before:04o}): the vault's \
             directory is its owner's alone",
            home.dir.display()
        ));
    }
    let result = (|| {
        let store = match Store::create(&db) {
            Ok(store) => store,
            Err(e) => {
                // Another init made the database first, maybe with this run's new key
                // file, found there, as its own: the file stays.
                if matches!(e, keygate_store::Error::AlreadyInitialized { .. }) {
                    created.keep();
                }
                return Err(e).context("creating the database");
            }
        };
        for made in [db.clone(), wal_path(&db, "-wal"), wal_path(&db, "-shm")] {
            created.add(made);
        }
        restrict_db_files(&db)?;
        let config = Config {
            version: CONFIG_VERSION,
            master_key: MasterKeyConfig {
                provider,
                key_file: key_file.clone(),
                env_var: how.master_key_env.clone(),
                hsm: hsm.clone(),
            },
            alerts: toml::Table::new(),
            other: toml::Table::new(),
        };
        let text = toml::to_string_pretty(&config).context("encoding the config")?;
        write_private_file(&config_path, text.as_bytes())?;
        created.add(config_path.clone());
        let mut unlocked = open_with(home.clone(), store, master, VaultFormat::Current)?;
        let initialized = admin_event(
            "vault.init",
            &home.dir.display().to_string(),
            // Marks the vault as made with client tags: `keygate upgrade` refuses to run
            // on a log that says so, whatever check value the database holds.
            serde_json::json!({ "provider": provider.as_str(), "client_tags": true }),
        );
        unlocked
            .change(&[initialized], |s, master| {
                if let Some(params) = &kdf {
                    let json =
                        serde_json::to_vec(params).map_err(|e| keygate_store::Error::Corrupt {
                            what: "kdf parameters",
                            reason: e.to_string(),
                        })?;
                    s.set_meta(META_KDF, &json)?;
                }
                if let Some(wrapped) = &hsm_wrapped {
                    s.set_meta(META_HSM_WRAPPED, wrapped)?;
                }
                s.set_meta(META_CHECK, &master.make_check())?;
                s.set_meta(META_PROVIDER, provider.as_str().as_bytes())
            })
            .context("writing vault metadata")?;
        restrict_db_files(&db)?;
        Ok::<_, anyhow::Error>(())
    })();
    // Leave no half-made vault behind (a second `init` would refuse to run), and no key
    // file made for it.
    result?;
    created.keep();
    println!("initialized keygate vault in {}", home.dir.display());
    match (provider, key_file) {
        (Provider::KeyFile, Some(path)) => {
            // A file that was there already is used as it is: say so, so that a mistyped
            // path that named another vault's key is not taken for a new key.
            let made = if reused_key_file {
                "existing, used as it is"
            } else {
                "new"
            };
            println!(
                "master key file: {} ({made}; keep it safe; it is the only way in)",
                path.display()
            );
            // As `doctor` warns (found by review: init made the layout without a word).
            let inside = match (path.canonicalize(), home.dir.canonicalize()) {
                (Ok(file), Ok(dir)) => file.starts_with(dir),
                _ => false,
            };
            if inside {
                eprintln!(
                    "keygate: warning: the key file is inside the home directory, next to \
                     the database it opens: a copy or backup of the directory holds both; \
                     keep it elsewhere (keygate vault move-key --to-key-file PATH)"
                );
            }
        }
        (Provider::Hsm, _) => {
            if let Some(at) = &hsm {
                println!(
                    "master key: wrapped by key {:?} on token {:?} ({}); the vault opens only with that token and its PIN",
                    at.key,
                    at.token,
                    at.module.display()
                )
            }
        }
        (Provider::Env, _) => println!(
            "master key: from ${} (keep a copy of it safe; it is the only way in)",
            how.master_key_env.as_deref().unwrap_or_default()
        ),
        _ => println!("master key: derived from your passphrase with Argon2id"),
    }
    Ok(())
}

/// What stands where `init` would make a vault.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Found {
    /// What an `init` stopped before its end leaves (killed, or out of disk between
    /// creating the tables and writing the check value in the same transaction as the
    /// first event): no database at all beside a config, or one without a check value,
    /// account, client or event. `init` does not remove it itself: it may be another
    /// `init` still at work.
    Unfinished,
    /// A database without a check value that holds keys or events.
    Altered,
    /// Another program's database.
    Foreign,
    /// No database at all: a damaged one, or another program's file.
    NotSqlite,
    /// A vault, or a database that does not open (its own error says why elsewhere).
    Vault,
}

/// What stands at `db`.
fn found_vault(db: &Path) -> Found {
    if !db.exists() {
        return Found::Unfinished;
    }
    let store = match Store::open(db) {
        Ok(store) => store,
        // Stopped before its tables were written (empty, or in WAL mode alone).
        Err(keygate_store::Error::NotKeygate { .. })
            if Store::holds_no_tables(db).unwrap_or(false) =>
        {
            return Found::Unfinished
        }
        Err(keygate_store::Error::NotKeygate { .. }) => return Found::Foreign,
        Err(keygate_store::Error::NotSqlite { .. }) => return Found::NotSqlite,
        Err(_) => return Found::Vault,
    };
    if !matches!(store.meta(META_CHECK), Ok(None)) {
        return Found::Vault;
    }
    let empty = matches!(store.last_event(), Ok(None))
        && store.accounts().is_ok_and(|accounts| accounts.is_empty())
        && store.client_rows().is_ok_and(|clients| clients.is_empty());
    if empty {
        Found::Unfinished
    } else {
        Found::Altered
    }
}

/// Files one `init` created, removed when it is dropped before [`MadeByThisRun::keep`]:
/// whatever way the `init` fails.
struct MadeByThisRun(Vec<PathBuf>);

impl MadeByThisRun {
    fn add(&mut self, path: PathBuf) {
        self.0.push(path);
    }

    fn keep(&mut self) {
        self.0.clear();
    }
}

impl Drop for MadeByThisRun {
    fn drop(&mut self) {
        for path in &self.0 {
            let _ = fs::remove_file(path);
        }
    }
}

/// The master key in environment variable `var`, which is then removed from this
/// process's environment, so that nothing it starts inherits it.
fn master_key_from_env(var: &str) -> anyhow::Result<MasterKey> {
    let Some(value) = std::env::var_os(var) else {
        bail!("the master key is to come from ${var}, which is not set");
    };
    // Not UTF-8 (raw bytes), it is no key; its bytes are wiped all the same.
    let value = match value.into_string() {
        Ok(text) => SecretString::new(text),
        Err(raw) => {
            zeroize::Zeroize::zeroize(&mut raw.into_encoded_bytes());
            SecretString::new(String::new())
        }
    };
    std::env::remove_var(var);
    MasterKey::from_encoded(value.expose_secret())
        .with_context(|| format!("reading the master key from ${var}"))
}

/// Opens the vault in `home` with the key `how` describes.
pub fn unlock(home: Home, how: &UnlockArgs) -> anyhow::Result<Unlocked> {
    check_home(&home.dir)?;
    unlock_as(home, how, Schema::BringUpToDate, Lenience::Strict)
}

/// [`unlock`] for a home others may write, which the other commands refuse: for
/// `keygate panic`, which must stop clients whatever else is wrong, and `doctor`, which
/// must say what is (found by review: refused, it reported nothing). A home of another
/// user is still refused. So is a config file of another version, told but not refused
/// (found by review: `panic` could not record its freeze).
pub fn unlock_even_if_open(home: Home, how: &UnlockArgs) -> anyhow::Result<Unlocked> {
    unlock_as(home, how, Schema::BringUpToDate, Lenience::EvenIfOpen)
}

/// [`unlock`] for a command that only reads the audit log (`audit verify`, `tail`,
/// `query`, `export`, `checkpoint`): the schema of a vault made by an earlier keygate is
/// left as it is, since bringing it up to date appends an event, which a log cut short
/// refuses (so the command that names where it was cut could not run) and which would
/// change a backup copy being checked.
pub fn unlock_to_read_log(home: Home, how: &UnlockArgs) -> anyhow::Result<Unlocked> {
    check_home(&home.dir)?;
    unlock_as(home, how, Schema::AsItIs, Lenience::Strict)
}

/// Whether an unlock brings an earlier keygate's schema up to date.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Schema {
    BringUpToDate,
    AsItIs,
}

/// Whether an unlock goes on despite what [`unlock_even_if_open`] lets pass.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Lenience {
    Strict,
    EvenIfOpen,
}

fn unlock_as(
    home: Home,
    how: &UnlockArgs,
    schema: Schema,
    lenience: Lenience,
) -> anyhow::Result<Unlocked> {
    let db = home.db_path();
    check_home_owner(&home.dir)?;
    check_database_owner(&db)?;
    let store = Store::open(&db).context("opening the database")?;
    let config = home.config()?;
    match (home.config_version_refused(&config), lenience) {
        (None, _) => {}
        (Some(why), Lenience::Strict) => bail!(why),
        (Some(why), Lenience::EvenIfOpen) => {
            crate::output::tell(format_args!("keygate: warning: {why}"));
        }
    }
    let provider = config.master_key.provider;
    // Read nothing meant for another provider: a passphrase left on standard input would
    // be taken for the next thing read there (an account's API key).
    if (how.passphrase_stdin || how.passphrase_file.is_some())
        && how.master_key_file.is_none()
        && how.master_key_env.is_none()
        && provider != Provider::Passphrase
    {
        bail!(
            "this vault's master key comes from its {} provider (config.toml), not a \
             passphrase: drop --passphrase-stdin / --passphrase-file (nothing was read or changed)",
            provider.as_str()
        );
    }
    let master = match (&how.master_key_file, provider) {
        (Some(path), _) => MasterKey::from_key_file(path).context("reading the master key file")?,
        (None, _) if how.master_key_env.is_some() => {
            master_key_from_env(how.master_key_env.as_deref().unwrap_or_default())?
        }
        (None, Provider::Env) => {
            let var = config
                .master_key
                .env_var
                .as_deref()
                .context("config.toml names no variable; pass --master-key-env VAR")?;
            master_key_from_env(var)?
        }
        (None, Provider::Hsm) => {
            let at = config
                .master_key
                .hsm
                .as_ref()
                .context("config.toml names no PKCS#11 module and token ([master_key.hsm])")?;
            let wrapped = store
                .meta(META_HSM_WRAPPED)
                .context("reading the wrapped master key")?
                .context("the vault holds no wrapped master key; the database is incomplete")?;
            let loaded = checked_hsm_module(at)?;
            let pin = read_hsm_pin(how, &at.token)?;
            match MasterKey::from_hsm(&loaded, &pin, &wrapped) {
                Err(keygate_vault::Error::WrongMasterKey) => bail!(
                    "wrong master key: the token's key {:?} does not open this vault's master key (nothing was changed)",
                    at.key
                ),
                result => result.context("unwrapping the master key with the token's key")?,
            }
        }
        (None, Provider::KeyFile) => {
            let path = config
                .master_key
                .key_file
                .as_deref()
                .context("config.toml names no key file; pass --master-key-file")?;
            MasterKey::from_key_file(path).context("reading the master key file")?
        }
        (None, Provider::Passphrase) => {
            let params = stored_kdf_params(&store)?;
            let passphrase = read_passphrase(how, false)?;
            MasterKey::from_passphrase(&passphrase, &params)
                .context("deriving the master key from the passphrase")?
        }
    };
    let check = store
        .meta(META_CHECK)
        .context("reading the vault check value")?
        .context(
            "the vault has no check value; the database is incomplete (an interrupted \
             `keygate init`? run init again: it tells an unfinished vault from an altered one)",
        )?;
    let Ok(format) = master.verify_check(&check) else {
        bail!("wrong passphrase or master key: the vault did not open (nothing was changed)");
    };
    if format == VaultFormat::Untagged {
        // The schema is brought up to date below, audited like any other vault's; that
        // adds the tag column, empty: tagging rows is `keygate upgrade`'s (audited), after
        // the operator has seen them, since the check value itself could have been put
        // back.
        eprintln!(
            "keygate: this vault was made by an earlier keygate: its clients are refused \
             until you review and tag them with `keygate upgrade`"
        );
    }
    let mut unlocked = open_with(home, store, master, format)?;
    if schema == Schema::BringUpToDate {
        unlocked.upgrade_schema()?;
    }
    Ok(unlocked)
}

/// Makes every seal check of `store` ask the log, read where it verifies and from the
/// last admin-free mark, whether the tables were put back from before a change; without
/// it, the check searches every event since the seal for an admin event's text, and an
/// edited one goes unseen.
pub(crate) fn verify_admin_changes(store: &mut Store, key: AuditKey) {
    store.verify_admin_changes_with(std::sync::Arc::new(move |store, seq| {
        keygate_audit::admin_change_after_seal(store, &key, seq)
    }));
}

fn open_with(
    home: Home,
    store: Store,
    master: MasterKey,
    format: VaultFormat,
) -> anyhow::Result<Unlocked> {
    let audit_key = AuditKey::of_vault(&master);
    let mut store = store;
    verify_admin_changes(&mut store, audit_key.clone());
    let audit =
        AuditLog::start(&home.db_path(), audit_key.clone()).context("starting the audit log")?;
    Ok(Unlocked {
        home,
        store,
        master,
        audit,
        audit_key,
        format,
    })
}

/// `at`, with its PKCS#11 module as the file to load, once checked: keygate loads it into
/// its own process, where it sees the PIN, the master key and every real key, so one that
/// someone else could have written is refused (found by review: the configuration was
/// checked, the library it names was not). The module, links followed, must be a
/// regular file owned by root or this user that group and others may not write, in
/// directories no one else may write; it is loaded by that resolved path, so that a link
/// changed after the check changes nothing.
#[cfg(target_os = "linux")]
fn checked_hsm_module(at: &HsmKey) -> anyhow::Result<HsmKey> {
    use std::os::unix::fs::PermissionsExt;
    let module = &at.module;
    let resolved = fs::canonicalize(module)
        .with_context(|| format!("finding PKCS#11 module {}", module.display()))?;
    let meta = fs::metadata(&resolved)
        .with_context(|| format!("reading PKCS#11 module {}", resolved.display()))?;
    if !meta.is_file() {
        bail!("PKCS#11 module {} is not a file", resolved.display());
    }
    if let Some(uid) = other_owner(&meta).filter(|uid| *uid != 0) {
        bail!(
            "PKCS#11 module {} belongs to another user (uid {uid}), who could change the code \
             keygate loads: use one owned by root or by you",
            resolved.display()
        );
    }
    let mode = meta.permissions().mode();
    if mode & 0o022 != 0 {
        bail!(
            "PKCS#11 module {} may be written by group or others (mode {:o}), who could change \
             the code keygate loads: chmod go-w {}",
            resolved.display(),
            mode & 0o7777,
            resolved.display()
        );
    }
    if let Some(dir) = resolved.parent() {
        check_no_one_else_writes(dir)
            .with_context(|| format!("PKCS#11 module {} is not safe", resolved.display()))?;
    }
    Ok(HsmKey {
        module: resolved,
        ..at.clone()
    })
}

#[cfg(not(target_os = "linux"))]
fn checked_hsm_module(at: &HsmKey) -> anyhow::Result<HsmKey> {
    Ok(at.clone())
}

/// Reads the PIN of token `token` from `--hsm-pin-file` (owner-only, first line) or a
/// prompt.
fn read_hsm_pin(how: &UnlockArgs, token: &str) -> anyhow::Result<SecretString> {
    let pin = if let Some(path) = &how.hsm_pin_file {
        first_line_of_secret_file(path, "PIN")?
    } else if std::io::stdin().is_terminal() {
        prompt_secret(&format!("PIN of token {token:?}: "), "PIN")?
    } else {
        bail!(
            "no PIN for token {token:?}: standard input is not a terminal; use --hsm-pin-file FILE"
        )
    };
    if pin.expose_secret().is_empty() {
        bail!("the PIN is empty");
    }
    Ok(pin)
}

/// The first line of an owner-only file holding the `what` (a passphrase, a PIN), with
/// the checks of a key file: a file its group or others can read is refused.
fn first_line_of_secret_file(path: &Path, what: &str) -> anyhow::Result<SecretString> {
    let raw = keygate_vault::read_secret_file(path)
        .with_context(|| format!("reading the {what} file"))?;
    let text = raw
        .into_string()
        .with_context(|| format!("the {what} file is not UTF-8"))?;
    Ok(SecretString::new(
        text.expose_secret().lines().next().unwrap_or("").to_owned(),
    ))
}

/// The owner of a file with metadata `meta`, when that is not this process's user.
#[cfg(target_os = "linux")]
pub(crate) fn other_owner(meta: &fs::Metadata) -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    let uid = meta.uid();
    (uid != rustix::process::geteuid().as_raw()).then_some(uid)
}

/// The owner of `path` when it is not this process's user (Linux only).
#[cfg(target_os = "linux")]
pub(crate) fn foreign_owner(path: &Path) -> Option<u32> {
    other_owner(&fs::metadata(path).ok()?)
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn foreign_owner(_path: &Path) -> Option<u32> {
    None
}

/// Refuses a database, or a journal of it, that another user owns (found by review: a
/// vault put back with `sudo cp -a` failed every command, `doctor` too, with SQLite's
/// "unable to open database file" three times over, and nothing said why).
fn check_database_owner(db: &Path) -> anyhow::Result<()> {
    for path in [db.to_owned(), wal_path(db, "-wal"), wal_path(db, "-shm")] {
        if let Some(uid) = foreign_owner(&path) {
            bail!(
                "{} belongs to another user (uid {uid}): keygate opens only its own user's \
                 files (a copy made with sudo is root's): chown it to this user",
                path.display()
            );
        }
    }
    Ok(())
}

/// Refuses a home directory that another user owns: its owner could take the database's
/// write-ahead log as it is written, or delete it, whatever its mode. Linux only, as
/// [`check_config_owner_and_mode`].
#[cfg(target_os = "linux")]
pub(crate) fn check_home_owner(dir: &Path) -> anyhow::Result<()> {
    let meta = match fs::metadata(dir) {
        Ok(meta) => meta,
        // No home at all: what opens it next says so (and how to make one).
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", dir.display())),
    };
    if let Some(uid) = other_owner(&meta) {
        bail!(
            "the home directory {} belongs to another user (uid {uid}), who could read or \
             remove what keygate writes in it: use a directory of your own",
            dir.display()
        );
    }
    Ok(())
}

/// Refuses a home directory of another user ([`check_home_owner`]), or one that group or
/// others may write (found by review: only `doctor` said so): whoever may write in it may
/// remove or replace the database, its journal or the lock, or leave a stop file. The
/// same of the directories above it ([`check_no_one_else_writes`]): whoever may write in
/// one of those may move the whole home away and put another in its place. `init` makes
/// a home it finds so private instead, and `keygate panic` and `doctor` go on
/// ([`unlock_even_if_open`]).
#[cfg(target_os = "linux")]
pub(crate) fn check_home(dir: &Path) -> anyhow::Result<()> {
    check_home_owner(dir)?;
    let Ok(meta) = fs::metadata(dir) else {
        return Ok(());
    };
    let mode = std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o777;
    if mode & 0o022 != 0 {
        bail!(
            "the home directory {} may be written by group or others (mode {mode:o}), who \
             could remove or replace what keygate keeps in it: chmod 700 {0}",
            dir.display()
        );
    }
    check_home_parents(dir)
}

/// Refuses a home below a directory another user could rename or replace things in
/// ([`check_no_one_else_writes`]): the home would be theirs to move away and replace.
/// Of a home not made yet, the directories that exist above it are checked.
pub(crate) fn check_home_parents(dir: &Path) -> anyhow::Result<()> {
    // A home that is a symbolic link can be moved away where it leads, and so can the link
    // (found by review twice: first the directories above the link alone were checked,
    // then those above its target alone): the directories above both are.
    let written = std::path::absolute(dir).with_context(|| format!("finding {}", dir.display()))?;
    let resolved = match fs::canonicalize(dir) {
        Ok(dir) => Some(dir),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e).with_context(|| format!("finding {}", dir.display())),
    };
    for dir in [Some(written), resolved].iter().flatten() {
        if let Some(above) = dir.ancestors().skip(1).find(|above| above.exists()) {
            check_no_one_else_writes(above)
                .with_context(|| format!("the home directory {} is not safe", dir.display()))?;
        }
    }
    Ok(())
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn check_home(dir: &Path) -> anyhow::Result<()> {
    check_home_owner(dir)
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn check_home_owner(_dir: &Path) -> anyhow::Result<()> {
    Ok(())
}

/// Refuses a directory another user could rename or replace things in: one of `dir` and
/// the directories above it, as written and where its symbolic links lead (whoever can
/// write the directory a link is in can point it elsewhere: found by review), that is
/// owned by someone other than this user or root, or that others may write, or its group
/// unless it is this user's own primary group,
/// without the sticky bit (`/tmp` has it: there, only an entry's owner may rename it).
/// Whatever keygate made in such a directory could be swapped for the other user's
/// between its steps. The primary group is let write because systems that give each
/// user a group of their own make a user's directories group-writable (umask 002: found
/// by review, a home under `~/work` made so was refused). Linux only, as
/// [`check_config_owner_and_mode`].
#[cfg(target_os = "linux")]
pub(crate) fn check_no_one_else_writes(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let finding = || format!("finding {}", dir.display());
    let written = std::path::absolute(dir).with_context(finding)?;
    let resolved = fs::canonicalize(dir).with_context(finding)?;
    let own_group = rustix::process::getegid().as_raw();
    // A directory a `..` right after leads back out of is not passed through (found by
    // review: `--home ../home` from a directory others may write was refused for it).
    let passed = written.ancestors().filter(|at| {
        let next = written
            .strip_prefix(at)
            .ok()
            .and_then(|rest| rest.components().next());
        next != Some(std::path::Component::ParentDir)
    });
    for at in resolved.ancestors().chain(passed) {
        let meta = fs::metadata(at).with_context(|| format!("reading {}", at.display()))?;
        let mode = meta.permissions().mode();
        let others_write = if meta.gid() == own_group {
            0o002
        } else {
            0o022
        };
        let other = other_owner(&meta);
        if let Some(uid) = other.filter(|uid| *uid != 0) {
            bail!(
                "{} belongs to another user (uid {uid}), who could swap what keygate writes \
                 below it for their own: use a directory of your own",
                at.display()
            );
        }
        if mode & others_write != 0 && mode & 0o1000 == 0 {
            let fix = if other.is_none() {
                format!("chmod go-w {}", at.display())
            } else {
                "use a directory of your own".to_owned()
            };
            bail!(
                "{} may be written by group or others (mode {:o}), who could swap what \
                 keygate writes below it for their own: {fix}",
                at.display(),
                mode & 0o7777
            );
        }
    }
    Ok(())
}

/// Refuses a key file's directory that others may write: the vault comes to rely on that
/// file alone, and whoever can write its directory can remove or replace it (found by
/// review: the vault was then lost, though the file's own mode kept it unread).
pub(crate) fn check_key_file_directory(path: &Path) -> anyhow::Result<()> {
    let parent = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    check_no_one_else_writes(parent)
        .with_context(|| format!("key file {} would not be safe there", path.display()))
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn check_no_one_else_writes(_dir: &Path) -> anyhow::Result<()> {
    Ok(())
}

/// Refuses a configuration file that another user owns, or that its group or others may
/// write. Linux only: elsewhere keygate has no way to ask for its own user id.
#[cfg(target_os = "linux")]
fn check_config_owner_and_mode(path: &Path, meta: &fs::Metadata) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(uid) = other_owner(meta) {
        bail!(
            "{} belongs to another user (uid {uid}); keygate reads its configuration only \
             from its own files",
            path.display()
        );
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o022 != 0 {
        bail!(
            "{} may be written by group or others (mode {mode:o}); run chmod 600 on it",
            path.display()
        );
    }
    Ok(())
}

#[cfg(not(target_os = "linux"))]
fn check_config_owner_and_mode(_path: &Path, _meta: &fs::Metadata) -> anyhow::Result<()> {
    Ok(())
}

/// The Argon2id parameters a passphrase vault was made with, as stored beside it.
pub(crate) fn stored_kdf_params(store: &Store) -> anyhow::Result<KdfParams> {
    let raw = store
        .meta(META_KDF)
        .context("reading the vault's key-derivation parameters")?
        .context("the vault has no key-derivation parameters; is it a key-file vault?")?;
    serde_json::from_slice(&raw).context("decoding the key-derivation parameters")
}

/// The fewest characters a new vault's passphrase may have. Argon2id slows each guess, but
/// a short passphrase still falls to a search of all of them once someone has a copy of
/// the database (a backup): the passphrase is then all that stands between the copy and
/// the keys.
const MIN_PASSPHRASE_CHARS: usize = 12;

/// Reads the passphrase from the file, stdin or a prompt. A `new` one (at `init`) is
/// typed twice at a prompt and must have [`MIN_PASSPHRASE_CHARS`] characters or more.
fn read_passphrase(how: &UnlockArgs, new: bool) -> anyhow::Result<SecretString> {
    let passphrase = if let Some(path) = &how.passphrase_file {
        first_line_of_secret_file(path, "passphrase")?
    } else if how.passphrase_stdin && !std::io::stdin().is_terminal() {
        read_stdin_line("passphrase")?
    } else if std::io::stdin().is_terminal() {
        // With --passphrase-stdin too: a terminal is read without echo, and a new
        // passphrase typed there is confirmed.
        let first = prompt_secret("Vault passphrase: ", "passphrase")?;
        if new {
            let again = prompt_secret("Repeat passphrase: ", "passphrase")?;
            if !first.ct_eq(again.expose_secret()) {
                bail!("the passphrases do not match");
            }
        }
        first
    } else {
        bail!("no passphrase: standard input is not a terminal; use --passphrase-file FILE or --passphrase-stdin")
    };
    if passphrase.expose_secret().is_empty() {
        bail!("the passphrase is empty");
    }
    if new && passphrase.expose_secret().chars().count() < MIN_PASSPHRASE_CHARS {
        bail!(
            "the passphrase is too short: a new vault's needs {MIN_PASSPHRASE_CHARS} characters \
             or more (four or five random words make a good one)"
        );
    }
    Ok(passphrase)
}

/// The longest secret line read from standard input, line ending included.
const STDIN_LINE_CAPACITY: usize = 4096;

/// Reads one line from standard input, without its line ending. Errors never quote it.
///
/// Byte by byte from the file descriptor, past std's `Stdin` buffer: that buffer lives as
/// long as the process (all of `serve`) and is never zeroized, while this reads into one
/// zeroizing buffer sized for any key, secret or passphrase up front (a buffer that grew
/// would leave the copies it outgrew behind). The lines after this one stay unread.
pub fn read_stdin_line(what: &str) -> anyhow::Result<SecretString> {
    use std::os::fd::AsFd;
    let reading = || format!("reading the {what} from standard input");
    let mut input = fs::File::from(
        std::io::stdin()
            .as_fd()
            .try_clone_to_owned()
            .with_context(reading)?,
    );
    read_secret_line(&mut input, what, "standard input")
}

/// Asks for the `what` at the terminal (`/dev/tty`) with `prompt`, and reads it without
/// echo, into a zeroizing buffer as [`read_stdin_line`] does (a prompt library's growing
/// string would leave copies of what was typed in freed memory). The terminal's settings
/// are put back however the read ends.
pub fn prompt_secret(prompt: &str, what: &str) -> anyhow::Result<SecretString> {
    use rustix::termios::{self, LocalModes, OptionalActions};
    use std::io::Write;
    let mut tty = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/tty")
        .with_context(|| format!("opening the terminal to ask for the {what}"))?;
    let before = termios::tcgetattr(&tty).context("reading the terminal's settings")?;
    let mut quiet = before.clone();
    quiet.local_modes.remove(LocalModes::ECHO);
    quiet.local_modes.insert(LocalModes::ECHONL);
    tty.write_all(prompt.as_bytes())
        .and_then(|()| tty.flush())
        .context("writing to the terminal")?;
    termios::tcsetattr(&tty, OptionalActions::Now, &quiet)
        .context("turning the terminal's echo off")?;
    let line = read_secret_line(&mut tty, what, "the terminal");
    // Back as it was, even when the read failed: a terminal left without echo is broken.
    let restored = termios::tcsetattr(&tty, OptionalActions::Now, &before);
    let line = line?;
    restored.context("turning the terminal's echo back on")?;
    Ok(line)
}

/// Reads one line of `input` (named `from` in errors) byte by byte into one zeroizing
/// buffer of [`STDIN_LINE_CAPACITY`], without its line ending. Errors never quote it.
fn read_secret_line(input: &mut fs::File, what: &str, from: &str) -> anyhow::Result<SecretString> {
    use std::io::Read;
    let reading = || format!("reading the {what} from {from}");
    let mut line = zeroize::Zeroizing::new(Vec::with_capacity(STDIN_LINE_CAPACITY));
    let mut byte = [0u8; 1];
    loop {
        match input.read(&mut byte) {
            Ok(0) if line.is_empty() => bail!("{from} ended before the {what} was read"),
            Ok(0) => break,
            Ok(_) if byte[0] == b'\n' => break,
            Ok(_) if line.len() + 1 == STDIN_LINE_CAPACITY => {
                bail!("the {what} on {from} is longer than {STDIN_LINE_CAPACITY} bytes")
            }
            Ok(_) => line.push(byte[0]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e).with_context(reading),
        }
    }
    byte.zeroize();
    while line.last() == Some(&b'\r') {
        line.pop();
    }
    match String::from_utf8(std::mem::take(&mut *line)) {
        Ok(text) => Ok(SecretString::new(text)),
        Err(e) => {
            e.into_bytes().zeroize();
            bail!("the {what} on {from} is not UTF-8")
        }
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Reads a regular file of at most `max` bytes: a path mistyped to a device, a pipe or a
/// multi-gigabyte log is refused rather than read until memory runs out. For files
/// that hold no secret (certificates, public keys, checkpoints, lists); secrets are
/// read by `keygate_vault::read_secret_file`.
pub fn read_bounded(path: &Path, max: u64) -> anyhow::Result<Vec<u8>> {
    use std::io::Read as _;
    let file = fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
    let meta = file
        .metadata()
        .with_context(|| format!("reading {}", path.display()))?;
    if !meta.is_file() {
        bail!("{} is not a regular file", path.display());
    }
    let mut bytes = Vec::new();
    file.take(max + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("reading {}", path.display()))?;
    if bytes.len() as u64 > max {
        bail!(
            "{} is larger than the {max} bytes such a file may hold",
            path.display()
        );
    }
    Ok(bytes)
}

/// Parses durations such as `90d`, `24h`, `30m`, `45s`, `2w` and `1h30m`, at most a
/// hundred years: the config file's grammar too ([`keygate_core::parse_duration`]).
pub fn parse_duration(s: &str) -> anyhow::Result<Duration> {
    Ok(keygate_core::parse_duration(s)?)
}

fn absolute(path: &Path) -> anyhow::Result<PathBuf> {
    if path.is_absolute() {
        Ok(path.to_owned())
    } else {
        Ok(std::env::current_dir()
            .context("reading the current directory")?
            .join(path))
    }
}

/// Creates `dir` and any missing parent, each owner-only (0700). A directory that exists
/// is left as it is: `--home .` must not change the permissions of someone's project.
pub(crate) fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    if dir.exists() && !dir.is_dir() {
        bail!("{} is a file, not a directory", dir.display());
    }
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder
        .create(dir)
        .with_context(|| format!("creating {}", dir.display()))
}

/// Creates the directory a new file at `path` goes in, as [`create_private_dir`] does.
fn create_parent_dir(path: &Path) -> anyhow::Result<()> {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => create_private_dir(parent),
        _ => Ok(()),
    }
}

fn restrict_db_files(db: &Path) -> anyhow::Result<()> {
    for p in [db.to_owned(), wal_path(db, "-wal"), wal_path(db, "-shm")] {
        if p.exists() {
            set_mode(&p, 0o600)?;
        }
    }
    Ok(())
}

/// `db` with `suffix` (`-wal`, `-shm`): SQLite's files beside the database.
pub fn wal_path(db: &Path, suffix: &str) -> PathBuf {
    let mut s = db.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// Creates a new file readable by its owner only; refused when something is there.
pub(crate) fn create_private_file(path: &Path) -> anyhow::Result<fs::File> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options
        .open(path)
        .with_context(|| format!("creating {}", path.display()))
}

/// Makes a directory's entries (a file just created or renamed in it) durable.
pub(crate) fn sync_dir(dir: &Path) -> anyhow::Result<()> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("syncing {}", dir.display()))
}

pub(crate) fn write_private_file(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    let mut file = create_private_file(path)?;
    file.write_all(contents)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {}", path.display()))
}

#[cfg(unix)]
fn set_mode(path: &Path, mode: u32) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .with_context(|| format!("setting permissions of {}", path.display()))
}

#[cfg(not(unix))]
fn set_mode(_path: &Path, _mode: u32) -> anyhow::Result<()> {
    Ok(())
}
