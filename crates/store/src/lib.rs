//! Persistence for keygate: vault metadata, accounts (real keys, sealed), clients
//! (virtual keys) and the audit log's rows, in one SQLite database in WAL mode.
//!
//! Secrets arrive here already sealed by `keygate-vault` and leave sealed; the store never
//! sees a plaintext secret except through [`Account::open_secret`] and friends, which take
//! the [`MasterKey`](keygate_vault::MasterKey). Every administrative write bumps a *generation* counter, which a
//! running gateway polls to pick up freezes and revocations within a second.
//!
//! The client and account tables are sealed together (a tag over every row, with the
//! audit event of the last change), so that a row put back, added or removed behind
//! keygate's back is found ([`Store::check_seal`]; every client is refused until the
//! tables are sealed again: [`Error::Unsealed`]). Pauses an exchange asked for are kept
//! here too ([`ExchangePause`]), so that a restarted gateway keeps them.
//!
//! Main types: [`Store`] (the connection), [`Account`] and [`Client`] (rows as stored,
//! with their sealed secrets), [`NewAccount`] and [`NewClient`] (what an insert takes),
//! [`EventRow`] (an audit row) and [`Error`].
//!
//! It is not the audit log's logic: rows are written and read here, chained and verified
//! in `keygate-audit`.
//!
//! ```
//! use keygate_store::Store;
//!
//! let dir = tempfile::tempdir().unwrap();
//! let store = Store::create(&dir.path().join("keygate.db")).unwrap();
//! assert_eq!(store.generation().unwrap(), 0);
//! ```

mod records;
mod seal;

pub use records::{
    retired_key_hash, Account, Client, ClientKeyMaterial, EventRow, KeyType, NewAccount, NewClient,
};

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use keygate_core::ClientStatus;
use rusqlite::{config::DbConfig, params, Connection, OptionalExtension};

/// The client table's columns, in this build's schema and in the upgrade that rebuilds it.
macro_rules! client_columns {
    () => {
        "
    name                TEXT PRIMARY KEY,
    account             TEXT NOT NULL,
    status              TEXT NOT NULL,
    key_type            TEXT NOT NULL,
    api_key             TEXT NOT NULL UNIQUE,
    key_material        BLOB NOT NULL,
    policy              TEXT NOT NULL,
    created_ms          INTEGER NOT NULL,
    expires_ms          INTEGER,
    previous_api_key    TEXT,
    previous_material   BLOB,
    previous_until_ms   INTEGER,
    tag                 BLOB
"
    };
}

/// Client API keys a rotation took out of use for good (the key before the one in its
/// grace period), kept as SHA-256 hashes with their client's name: a request signed with
/// one can no longer be verified, but it says whose key someone still holds. It opens
/// nothing and is not sealed: editing it can only hide or invent such a warning.
macro_rules! retired_keys_table {
    () => {
        "
CREATE TABLE IF NOT EXISTS retired_keys (
    key_hash   BLOB PRIMARY KEY,
    client     TEXT NOT NULL,
    retired_ms INTEGER NOT NULL
);
"
    };
}

/// Real API keys a rotation replaced, kept as SHA-256 hashes with their account's label
/// and when: a key an account held before is refused as its next one, or another
/// account's (a replaced key may be the one that leaked). It opens nothing and is not
/// sealed: editing it can only hide or invent such a refusal.
macro_rules! retired_account_keys_table {
    () => {
        "
CREATE TABLE IF NOT EXISTS retired_account_keys (
    key_hash   BLOB PRIMARY KEY,
    account    TEXT NOT NULL,
    retired_ms INTEGER NOT NULL
);
"
    };
}

const SCHEMA: &str = concat!(
    r#"
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value BLOB NOT NULL
);
CREATE TABLE accounts (
    label          TEXT PRIMARY KEY,
    exchange       TEXT NOT NULL,
    upstream       TEXT,
    rotate_every_s INTEGER,
    created_ms     INTEGER NOT NULL,
    rotated_ms     INTEGER NOT NULL,
    fingerprint    TEXT NOT NULL,
    sealed_api_key BLOB NOT NULL,
    sealed_secret  BLOB NOT NULL
);
CREATE TABLE clients ("#,
    client_columns!(),
    r#");
CREATE TABLE events (
    seq   INTEGER PRIMARY KEY,
    ts_ms INTEGER NOT NULL,
    body  TEXT NOT NULL,
    hash  BLOB NOT NULL,
    mac   BLOB NOT NULL
);
INSERT INTO meta (key, value) VALUES ('schema_version', 7), ('generation', 0);
"#,
    retired_keys_table!(),
    retired_account_keys_table!()
);

/// Version 3's client table, built beside the old one and filled from it by
/// [`Store::upgrade_schema`].
const CLIENTS_V3: &str = concat!(
    "CREATE TABLE clients_v3 (",
    client_columns!(),
    r#");
INSERT INTO clients_v3 SELECT name, account, status, key_type, api_key, key_material, policy,
    created_ms, expires_ms, previous_api_key, previous_material, previous_until_ms, tag
    FROM clients;
DROP TABLE clients;
ALTER TABLE clients_v3 RENAME TO clients;
"#
);

/// The schema this build writes. Version 1 had no `clients.tag`: the first unlock by this
/// build adds it ([`Store::upgrade_schema`]), empty, and `keygate upgrade` fills it
/// ([`Store::tag_clients_as_shown`]) once the operator has seen the rows. Version 2's
/// `clients.account` referenced `accounts(label)`, so removing an account deleted its
/// clients; since version 3 a removed account's clients stay, revoked, and its label may
/// name no account. Version 3 sealed the client table alone; since version 4 the seal
/// covers the account table as well (the `seal` module), and the audited change that
/// brings a database to it reseals both if the client table's seal held. Version 5 changes
/// no table: its seal covers the hash of the audit event it names too, made at the same
/// audited change if the version-4 seal held. Version 6 adds the table of retired client
/// keys, empty; version 7 the table of real keys a rotation replaced, empty.
const SCHEMA_VERSION: i64 = 7;

/// The size, in bytes, the write-ahead log is cut back to once checkpointed.
const WAL_SIZE_LIMIT: i64 = 64 << 20;

/// How long [`Store::transaction`] keeps asking for the write lock while another
/// connection holds it.
pub const WRITE_LOCK_PATIENCE: Duration = Duration::from_secs(30);

/// How long a wait for the write lock goes before it is logged.
const LONG_LOCK_WAIT: Duration = Duration::from_secs(2);

/// How long [`Store::append_events`] keeps asking for the write lock: an administrative
/// change holding it for seconds must not make orders fail, but an order waiting on its
/// durable event should hear of a stuck database in time.
pub const AUDIT_LOCK_PATIENCE: Duration = Duration::from_secs(3);

/// An error from the store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// SQLite failed. The cause is in the message, not given as the error's source, so
    /// that a report of the whole chain (`{:#}`) says it once (found by review).
    #[error("database {path}: {cause}")]
    Sqlite {
        /// The database file.
        path: PathBuf,
        /// The cause.
        cause: rusqlite::Error,
    },
    /// Another connection held the write lock for as long as the change would wait;
    /// nothing was written.
    #[error(
        "database {path} is locked: another process held its write lock for {} s, so nothing was \
         changed; try again (is another keygate command, or a program with the file open, \
         writing to it?)",
        waited.as_secs()
    )]
    Busy {
        /// The database file.
        path: PathBuf,
        /// How long the change waited.
        waited: Duration,
    },
    /// The directory holding the database cannot be written: SQLite writes beside a
    /// database in WAL mode (its shared-memory file) even to read it.
    #[error(
        "cannot open the database in {dir}: that directory cannot be written ({cause}), and \
         SQLite writes beside the database even to read it; to read a copy kept on \
         read-only media, copy the whole directory to a writable place and open it there"
    )]
    DirectoryReadOnly {
        /// The directory.
        dir: PathBuf,
        /// Why it cannot be written (in the message, as [`Error::Sqlite`]'s).
        cause: std::io::Error,
    },
    /// The disk holding the database is full: SQLite needs room beside the database (its
    /// shared-memory file) even to read it.
    #[error(
        "cannot open the database in {dir}: the disk holding it is full, and SQLite needs \
         room beside the database even to read it; free some space on that disk first"
    )]
    DiskFull {
        /// The directory.
        dir: PathBuf,
    },
    /// No database exists where one was expected.
    #[error(
        "no keygate database at {path}; run `keygate init` first, or pass --home DIR (or set \
         KEYGATE_HOME) if the vault is elsewhere"
    )]
    NotInitialized {
        /// The path looked at.
        path: PathBuf,
    },
    /// The file is a database keygate did not make (or one whose `init` stopped before
    /// its tables were written): nothing was written to it.
    #[error(
        "{path} is not a keygate database (it has no keygate schema); nothing was written to it"
    )]
    NotKeygate {
        /// The path looked at.
        path: PathBuf,
    },
    /// The file is not an SQLite database at all: damaged (its header), or another
    /// program's file. Nothing was written to it.
    #[error(
        "{path} is not an SQLite database: a damaged database (restore it from a backup if \
         it was this vault) or another program's file; nothing was written to it"
    )]
    NotSqlite {
        /// The path looked at.
        path: PathBuf,
    },
    /// The database file could not be created.
    #[error("cannot create {path}: {cause}")]
    Create {
        /// The path.
        path: PathBuf,
        /// The cause (in the message, as [`Error::Sqlite`]'s).
        cause: std::io::Error,
    },
    /// A database already exists where `init` would create one.
    #[error("a keygate database already exists at {path}")]
    AlreadyInitialized {
        /// The path.
        path: PathBuf,
    },
    /// An account or client with this name already exists.
    #[error("{kind} {name} already exists")]
    Exists {
        /// `account` or `client`.
        kind: &'static str,
        /// Its name.
        name: String,
    },
    /// No account or client has this name.
    #[error("no {kind} named {name}")]
    NotFound {
        /// `account` or `client`.
        kind: &'static str,
        /// The name asked for.
        name: String,
    },
    /// The record changed under the command: another command changed it first.
    #[error("{kind} {name} was changed meanwhile: {reason}")]
    Conflict {
        /// `account` or `client`.
        kind: &'static str,
        /// Its name.
        name: String,
        /// What changed.
        reason: String,
    },
    /// An Ed25519 public key given to a client is another client's already. The API key
    /// is no secret and the signature does not cover it, so the bot holding the private
    /// key could sign as either client, with the larger of their rights.
    #[error(
        "the public key given for client {name} is client {holder}'s: each Ed25519 client \
         needs a key pair of its own (the bot holding that private key could sign as either)"
    )]
    PublicKeyShared {
        /// The client being issued or rotated.
        name: String,
        /// The client that holds the key, whatever its status.
        holder: String,
    },
    /// The database was made or upgraded by a newer keygate: this build does not know its
    /// schema, and writes nothing to it.
    #[error(
        "the database is at schema version {found}, made by a newer keygate than this one \
         (schema version {known}): run that version or a newer one"
    )]
    NewerSchema {
        /// The database's schema version.
        found: i64,
        /// This build's.
        known: i64,
    },
    /// A stored row does not decode: the database was edited by hand or is corrupt.
    #[error("corrupt {what} in the database: {reason}")]
    Corrupt {
        /// What was being read.
        what: &'static str,
        /// Why it does not decode.
        reason: String,
    },
    /// The client and account tables are not as keygate last sealed them (see the `seal`
    /// module): the gateway refuses every client until `keygate upgrade` seals them again.
    #[error("the client and account tables {reason}; every client is refused until `keygate upgrade` has shown and sealed them")]
    Unsealed {
        /// What is wrong with it.
        reason: &'static str,
    },
    /// An audit row whose columns do not read as an event's (a body stored as a blob,
    /// say): the row was edited behind keygate's back.
    #[error("audit event {seq} is not stored as keygate writes events: {reason}")]
    StoredEvent {
        /// The row's seq.
        seq: u64,
        /// What does not read.
        reason: String,
    },
    /// The audit log no longer holds the last event this process appended, as it wrote
    /// it: the log was cut short, or the database put back from an older copy, while
    /// the process ran. Nothing more is appended by it.
    #[error(
        "the audit log no longer holds event {seq} as this process wrote it: the log was \
         cut short, or the database put back from an older copy, while keygate ran; \
         nothing more is appended (orders, withdrawals and transfers are refused) until \
         it is looked into and keygate is started again"
    )]
    LogCutShort {
        /// The seq of the last event the process appended.
        seq: u64,
    },
    /// The audit log does not end where its last append left it (the recorded head):
    /// events were cut off or added behind keygate's back. Nothing more is appended, so
    /// that a new event cannot take the place of a removed one and hide the cut.
    #[error(
        "the audit log does not end at its recorded head (last event {}, head {}): events \
         were removed or added behind keygate's back; nothing is appended until the log is \
         restored (`keygate audit verify` names where)",
        seq_or_none(*.last),
        seq_or_none(*.head)
    )]
    LogDiverged {
        /// The seq of the last event in the log, if any.
        last: Option<u64>,
        /// The seq of the recorded head, if any.
        head: Option<u64>,
    },
    /// A sealed secret failed to open.
    #[error(transparent)]
    Vault(#[from] keygate_vault::Error),
}

/// Free space below which a database that failed to open is taken to have failed for
/// want of room: SQLite's shared-memory file takes 32 KiB at first.
const TOO_LITTLE_ROOM: u64 = 1 << 20;

/// Why SQLite could not open the database at `path` (failing with `source`), when the
/// cause is the directory holding it: one that cannot be written, or a full disk. SQLite
/// itself says only "unable to open database file" or "disk I/O error" (found by
/// review: neither names the read-only mount or the full disk an operator must act on).
#[cfg(unix)]
fn blocked_beside(path: &Path, source: &rusqlite::Error) -> Option<Error> {
    use rusqlite::ErrorCode;
    let rusqlite::Error::SqliteFailure(failure, _) = source else {
        return None;
    };
    if !matches!(
        failure.code,
        ErrorCode::CannotOpen
            | ErrorCode::SystemIoFailure
            | ErrorCode::ReadOnly
            | ErrorCode::DiskFull
    ) {
        return None;
    }
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    if let Err(e) = rustix::fs::access(dir, rustix::fs::Access::WRITE_OK) {
        return Some(Error::DirectoryReadOnly {
            dir: dir.to_owned(),
            cause: e.into(),
        });
    }
    let room = rustix::fs::statvfs(dir).ok()?;
    (room.f_bavail.saturating_mul(room.f_frsize) < TOO_LITTLE_ROOM).then(|| Error::DiskFull {
        dir: dir.to_owned(),
    })
}

#[cfg(not(unix))]
fn blocked_beside(_path: &Path, _source: &rusqlite::Error) -> Option<Error> {
    None
}

fn seq_or_none(seq: Option<u64>) -> String {
    seq.map_or_else(|| "none".to_owned(), |s| s.to_string())
}

/// The prefix of the meta keys that keep [`ExchangePause`]s, followed by the upstream.
const EXCHANGE_PAUSE: &str = "exchange_pause ";

/// The longest pause kept: no exchange asks for more (Binance's longest ban is three
/// days). One kept that ends later than this from now was written by a clock ahead of
/// this one (a backup's machine, a clock since stepped back) and is no pause: taken up,
/// it would refuse every request, cancels included, for as long as that clock was off.
pub const LONGEST_EXCHANGE_PAUSE_MS: u64 = 3 * 86_400_000;

/// An exchange asked that keygate's address send nothing to `upstream` until `until_ms`
/// (a 429's wait or a 418's ban). Kept so that a gateway restarted, or a command run,
/// during the pause does not make it longer: Binance bans an address that goes on
/// sending, for longer each time. Not sealed: editing it can only shorten or invent a
/// pause.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExchangePause {
    /// The upstream's base URL.
    pub upstream: String,
    /// When the pause ends (ms since the epoch).
    pub until_ms: u64,
    /// Whether the address is banned, not asked to let a pool's weight recover.
    pub banned: bool,
}

impl ExchangePause {
    /// Whether the pause runs at `now_ms`: it has not ended, and does not end past
    /// [`LONGEST_EXCHANGE_PAUSE_MS`] from then.
    pub fn runs_at(&self, now_ms: u64) -> bool {
        now_ms < self.until_ms && self.until_ms <= now_ms.saturating_add(LONGEST_EXCHANGE_PAUSE_MS)
    }

    /// The pause kept as `value` (the end's 8 bytes, big-endian, then 0 or 1 for a ban).
    fn decode(upstream: String, value: &[u8]) -> Option<ExchangePause> {
        let (until, banned) = value.split_first_chunk::<8>()?;
        let banned = match banned {
            [0] => false,
            [1] => true,
            _ => return None,
        };
        Some(ExchangePause {
            upstream,
            until_ms: u64::from_be_bytes(*until),
            banned,
        })
    }
}

/// The keygate database.
pub struct Store {
    conn: Connection,
    path: PathBuf,
    /// How [`Store::check_seal_is_latest`] learns whether an administrative event follows
    /// the tables' seal, when the caller holds the audit key ([`Store::verify_admin_changes_with`]).
    admin_change_after: Option<Arc<AdminChangeAfter>>,
}

/// Whether an administrative event follows the given seq in the log, read from events
/// that verify with the audit key (which this crate does not hold: `keygate-audit`
/// does). An error when they do not verify.
pub type AdminChangeAfter = dyn Fn(&Store, u64) -> Result<bool, Error> + Send + Sync;

/// What [`Store::connect`] may find at its path.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Existing {
    /// A file [`Store::create`] just made, empty.
    Created,
    /// A database keygate made: one without its tables is refused untouched.
    MustBeKeygate,
}

impl Store {
    /// Creates a new database at `path`, refusing to overwrite one. The file is created
    /// exclusively (owner-only), so that of two processes creating it at once, one gets
    /// [`Error::AlreadyInitialized`] and never touches the other's database.
    pub fn create(path: &Path) -> Result<Store, Error> {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        match options.open(path) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(Error::AlreadyInitialized {
                    path: path.to_owned(),
                })
            }
            Err(cause) => {
                return Err(Error::Create {
                    path: path.to_owned(),
                    cause,
                })
            }
        }
        let created = Store::connect(path, Existing::Created).and_then(|store| {
            // One transaction: a database killed halfway through has no tables at all,
            // rather than some, which neither `init` nor `open` would take.
            let schema = format!("BEGIN IMMEDIATE;\n{SCHEMA}\nCOMMIT;");
            store
                .conn
                .execute_batch(&schema)
                .map_err(|e| store.sql(e))?;
            Ok(store)
        });
        if created.is_err() {
            // The file is this call's own: leave nothing that would refuse the next try.
            for suffix in ["", "-wal", "-shm"] {
                let mut file = path.as_os_str().to_owned();
                file.push(suffix);
                let _ = std::fs::remove_file(file);
            }
        }
        created
    }

    /// Whether the database at `path` holds no table at all, as [`Store::create`] leaves
    /// one it was stopped in before its schema committed; read without writing.
    pub fn holds_no_tables(path: &Path) -> Result<bool, Error> {
        let sql = |cause| Error::Sqlite {
            path: path.to_owned(),
            cause,
        };
        let conn = Connection::open(path).map_err(sql)?;
        let tables: i64 = conn
            .query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))
            .map_err(sql)?;
        Ok(tables == 0)
    }

    /// Opens an existing database.
    ///
    /// A file without keygate's tables is refused before anything is written to it.
    pub fn open(path: &Path) -> Result<Store, Error> {
        if !path.exists() {
            return Err(Error::NotInitialized {
                path: path.to_owned(),
            });
        }
        let store = Store::connect(path, Existing::MustBeKeygate)?;
        let version = store.schema_version()?;
        if version > SCHEMA_VERSION {
            return Err(Error::NewerSchema {
                found: version,
                known: SCHEMA_VERSION,
            });
        }
        Ok(store)
    }

    /// Whether the database is at this build's schema version.
    pub fn is_schema_current(&self) -> Result<bool, Error> {
        Ok(self.schema_version()? == SCHEMA_VERSION)
    }

    /// The schema version the database is at.
    pub fn schema_version(&self) -> Result<i64, Error> {
        self.conn
            .query_row(
                "SELECT value FROM meta WHERE key = 'schema_version'",
                [],
                |r| r.get::<_, i64>(0),
            )
            .map_err(|e| self.sql(e))
    }

    /// Brings a database made by an earlier build to this build's schema version, in a
    /// transaction of its own that several processes may race to run; a no-op, without a
    /// write, when it is there already. Call it once the master key is known to be right (an unlock that
    /// fails changes nothing). Until then, a version-1 database reads as clients without
    /// tags, which nothing accepts and only a revocation changes. It changes no account or
    /// client (every row is copied as it is), so it leaves the generation and the client
    /// table's seal as they are.
    pub fn upgrade_schema(&self) -> Result<(), Error> {
        if self.schema_version()? == SCHEMA_VERSION {
            return Ok(());
        }
        self.begin_immediate(WRITE_LOCK_PATIENCE)?;
        let upgraded = self
            .upgrade_schema_within()
            .and_then(|_| self.conn.execute_batch("COMMIT").map_err(|e| self.sql(e)));
        if upgraded.is_err() {
            let _ = self.conn.execute_batch("ROLLBACK");
        }
        upgraded
    }

    /// [`Store::upgrade_schema`] inside a transaction the caller holds, so that an audit
    /// event can commit with it. Returns the version it upgraded from, or `None` when the
    /// database is at this build's already (another process may have been first).
    pub fn upgrade_schema_within(&self) -> Result<Option<i64>, Error> {
        let version = self.schema_version()?;
        if version == SCHEMA_VERSION {
            return Ok(None);
        }
        if version == 1 {
            self.conn
                .execute_batch("ALTER TABLE clients ADD COLUMN tag BLOB")
                .map_err(|e| self.sql(e))?;
        }
        if version < 3 {
            self.conn
                .execute_batch(CLIENTS_V3)
                .map_err(|e| self.sql(e))?;
        }
        if version < 6 {
            self.conn
                .execute_batch(retired_keys_table!())
                .map_err(|e| self.sql(e))?;
        }
        if version < 7 {
            self.conn
                .execute_batch(retired_account_keys_table!())
                .map_err(|e| self.sql(e))?;
        }
        self.conn
            .execute(
                "UPDATE meta SET value = ?1 WHERE key = 'schema_version'",
                [SCHEMA_VERSION],
            )
            .map_err(|e| self.sql(e))?;
        Ok(Some(version))
    }

    fn connect(path: &Path, existing: Existing) -> Result<Store, Error> {
        let sql = |cause| {
            blocked_beside(path, &cause).unwrap_or_else(|| Error::Sqlite {
                path: path.to_owned(),
                cause,
            })
        };
        let conn = Connection::open(path).map_err(sql)?;
        conn.busy_timeout(std::time::Duration::from_secs(2))
            .map_err(sql)?;
        // Before anything lasting is set (WAL mode is written into the file): another
        // program's database named keygate.db, or an empty file, is left as it was.
        if existing == Existing::MustBeKeygate {
            let not_keygate = || Error::NotKeygate {
                path: path.to_owned(),
            };
            let has_schema = conn
                .query_row(
                    "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'meta'",
                    [],
                    |r| r.get::<_, i64>(0),
                )
                .map_err(|e| match e.sqlite_error_code() {
                    // Not a database at all (found by review: `init` called it a vault).
                    Some(rusqlite::ErrorCode::NotADatabase) => Error::NotSqlite {
                        path: path.to_owned(),
                    },
                    _ => sql(e),
                })?;
            if has_schema == 0 {
                return Err(not_keygate());
            }
        }
        // WAL lets the gateway read while the CLI writes; FULL makes every commit durable,
        // which the audit log's promise rests on.
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(sql)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(sql)?;
        // The write-ahead log grows while a long read (the hourly reread of the audit log)
        // keeps it from being reset, and kept its largest size for good (found by
        // review): past this, it is cut back once checkpointed.
        conn.pragma_update(None, "journal_size_limit", WAL_SIZE_LIMIT)
            .map_err(sql)?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(sql)?;
        // What is deleted or replaced is overwritten with zeros, not left in the page's
        // free space: the salt of a passphrase that no longer opens the vault, sealed
        // credentials a rotation replaced.
        conn.pragma_update(None, "secure_delete", "ON")
            .map_err(sql)?;
        // Whoever can write the database file could otherwise plant a trigger that drops
        // audit rows as they are inserted (`RAISE(IGNORE)`), or rewrite them, behind a
        // log that still verifies. keygate's schema has no triggers: none ever fires on
        // keygate's own connections, and defensive mode refuses schema surgery through
        // them.
        conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_TRIGGER, false)
            .map_err(sql)?;
        conn.set_db_config(DbConfig::SQLITE_DBCONFIG_DEFENSIVE, true)
            .map_err(sql)?;
        Ok(Store {
            conn,
            path: path.to_owned(),
            admin_change_after: None,
        })
    }

    /// Whether commits on this connection wait for the disk (`synchronous=FULL`, the
    /// default) or only for the operating system (`NORMAL`: in WAL mode a process crash
    /// loses nothing, a power cut may lose the last commits).
    pub fn set_synchronous(&self, full: bool) -> Result<(), Error> {
        let mode = if full { "FULL" } else { "NORMAL" };
        self.conn
            .pragma_update(None, "synchronous", mode)
            .map_err(|e| self.sql(e))
    }

    /// Has [`Store::check_seal_is_latest`], and so every write that reseals the tables,
    /// ask `check` whether an administrative event follows the seal, instead of looking
    /// for one in the rows as stored: an event edited behind keygate's back to read
    /// otherwise could hide there that the tables were put back from before it.
    pub fn verify_admin_changes_with(&mut self, check: Arc<AdminChangeAfter>) {
        self.admin_change_after = Some(check);
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn sql(&self, cause: rusqlite::Error) -> Error {
        Error::Sqlite {
            path: self.path.clone(),
            cause,
        }
    }

    /// Reads a metadata value.
    pub fn meta(&self, key: &str) -> Result<Option<Vec<u8>>, Error> {
        // Text too, as a value put back by hand with `sqlite3` is stored (found by
        // review: one such row made every command that read it fail, `panic` included).
        self.conn
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| {
                r.get_ref(0)?
                    .as_bytes()
                    .map(<[u8]>::to_vec)
                    .map_err(rusqlite::Error::from)
            })
            .optional()
            .map_err(|e| self.sql(e))
    }

    /// Makes durable what commits under `synchronous = NORMAL` left unsynced, when called
    /// under `FULL` ([`Store::set_synchronous`]): such a commit syncs the whole write-ahead
    /// log, and only a commit that writes does, so this writes one row (the time of the
    /// sync, in the meta table).
    pub fn sync_to_disk(&self) -> Result<(), Error> {
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        // Under load the audit writer commits again and again: the lock is asked for
        // until it is had, as the writer asks for it.
        self.begin_immediate(AUDIT_LOCK_PATIENCE)?;
        let synced = self
            .set_meta("synced_at", &now_ms.to_be_bytes())
            .and_then(|()| self.conn.execute_batch("COMMIT").map_err(|e| self.sql(e)));
        if synced.is_err() {
            let _ = self.conn.execute_batch("ROLLBACK");
        }
        synced
    }

    /// Writes a metadata value.
    pub fn set_meta(&self, key: &str, value: &[u8]) -> Result<(), Error> {
        self.conn
            .execute("INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value = excluded.value", params![key, value])
            .map_err(|e| self.sql(e))
            .and_then(|written| match written {
                1 => Ok(()),
                _ => Err(Error::Corrupt {
                    what: "metadata",
                    reason: format!("writing {key} changed {written} rows"),
                }),
            })
    }

    /// Removes a metadata value, if there is one.
    pub fn delete_meta(&self, key: &str) -> Result<(), Error> {
        self.conn
            .execute("DELETE FROM meta WHERE key = ?1", [key])
            .map(drop)
            .map_err(|e| self.sql(e))
    }

    /// The pauses exchanges asked of keygate's address ([`ExchangePause`]) that run at
    /// `now_ms`, as last kept; a value that does not decode (it could only shorten a
    /// pause) and one that ends more than [`LONGEST_EXCHANGE_PAUSE_MS`] after `now_ms`
    /// are left out.
    pub fn exchange_pauses(&self, now_ms: u64) -> Result<Vec<ExchangePause>, Error> {
        Ok(self
            .kept_exchange_pauses()?
            .into_iter()
            .filter(|pause| pause.runs_at(now_ms))
            .collect())
    }

    /// Every pause kept, whatever its end.
    fn kept_exchange_pauses(&self) -> Result<Vec<ExchangePause>, Error> {
        let mut statement = self
            .conn
            .prepare("SELECT key, value FROM meta WHERE substr(key, 1, ?1) = ?2")
            .map_err(|e| self.sql(e))?;
        let rows = statement
            .query_map(
                params![EXCHANGE_PAUSE.len() as i64, EXCHANGE_PAUSE],
                |row| Ok((row.get::<_, String>(0)?, row.get::<_, Vec<u8>>(1)?)),
            )
            .map_err(|e| self.sql(e))?;
        let mut pauses = Vec::new();
        for row in rows {
            let (key, value) = row.map_err(|e| self.sql(e))?;
            let upstream = key[EXCHANGE_PAUSE.len()..].to_owned();
            if let Some(pause) = ExchangePause::decode(upstream, &value) {
                pauses.push(pause);
            }
        }
        Ok(pauses)
    }

    /// Keeps `pause`, so that a process started before it ends sends nothing to its
    /// upstream either: merged with the one kept for the same upstream, the later end and
    /// a ban winning. Pauses that do not run at `now_ms` (over, or ending past
    /// [`LONGEST_EXCHANGE_PAUSE_MS`] from it) go.
    pub fn keep_exchange_pause(&self, pause: &ExchangePause, now_ms: u64) -> Result<(), Error> {
        self.begin_immediate(WRITE_LOCK_PATIENCE)?;
        let kept = self
            .merge_exchange_pause(pause, now_ms)
            .and_then(|()| self.conn.execute_batch("COMMIT").map_err(|e| self.sql(e)));
        if kept.is_err() {
            let _ = self.conn.execute_batch("ROLLBACK");
        }
        kept
    }

    fn merge_exchange_pause(&self, pause: &ExchangePause, now_ms: u64) -> Result<(), Error> {
        let mut merged = pause.clone();
        for kept in self.kept_exchange_pauses()? {
            if !kept.runs_at(now_ms) {
                self.delete_meta(&format!("{EXCHANGE_PAUSE}{}", kept.upstream))?;
            } else if kept.upstream == pause.upstream {
                merged.until_ms = merged.until_ms.max(kept.until_ms);
                merged.banned |= kept.banned;
            }
        }
        let mut value = merged.until_ms.to_be_bytes().to_vec();
        value.push(u8::from(merged.banned));
        self.set_meta(&format!("{EXCHANGE_PAUSE}{}", pause.upstream), &value)
    }

    /// Writes the whole database, as of one moment, into `path`: an empty file (made by
    /// the caller with the permissions it wants) or none. A read transaction (SQLite's
    /// `VACUUM INTO`), so a running gateway goes on writing meanwhile, and the copy holds
    /// what the write-ahead log had committed: it is one file, with no log beside it.
    pub fn copy_into(&self, path: &Path) -> Result<(), Error> {
        let target = path.to_str().ok_or_else(|| Error::Create {
            path: path.to_owned(),
            cause: std::io::Error::new(std::io::ErrorKind::InvalidInput, "the path is not UTF-8"),
        })?;
        self.conn
            .execute("VACUUM INTO ?1", [target])
            .map(drop)
            .map_err(|e| self.sql(e))
    }

    /// Copies the write-ahead log into the database and empties it, so that the older
    /// copies of pages it holds (with what was since deleted) are gone. `false` when
    /// another connection reads or writes meanwhile (a running gateway): SQLite then
    /// empties it when the last connection to the database closes.
    pub fn truncate_wal(&self) -> Result<bool, Error> {
        let busy: i64 = self
            .conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |row| row.get(0))
            .map_err(|e| self.sql(e))?;
        Ok(busy == 0)
    }

    /// Rewrites the database into as few pages as it needs, giving the space of deleted
    /// rows back to the file system, then empties the write-ahead log the rewrite went
    /// through. Needs free disk space of up to twice the database's size, and waits for
    /// (or fails on) any other connection's transaction: for when nothing else writes.
    pub fn vacuum(&self) -> Result<(), Error> {
        self.conn.execute_batch("VACUUM").map_err(|e| self.sql(e))?;
        self.truncate_wal().map(drop)
    }

    /// The administrative generation: it changes whenever an account or client changes.
    pub fn generation(&self) -> Result<u64, Error> {
        self.conn
            .query_row("SELECT value FROM meta WHERE key = 'generation'", [], |r| {
                r.get::<_, i64>(0)
            })
            .map(|g| g as u64)
            .map_err(|e| self.sql(e))
    }

    /// Bumps the generation, which a running gateway polls to reload. A database without
    /// the counter is refused: the change would commit and no gateway would ever see it.
    fn bump_generation(&self) -> Result<(), Error> {
        let bumped = self
            .conn
            .execute(
                "UPDATE meta SET value = value + 1 WHERE key = 'generation'",
                [],
            )
            .map_err(|e| self.sql(e))?;
        if bumped != 1 {
            return Err(Error::Corrupt {
                what: "generation",
                reason: "the counter running gateways reload by is missing".into(),
            });
        }
        Ok(())
    }

    /// Runs `f` in one immediate transaction; every change inside bumps the generation once.
    /// `f` may fail with an error of its own (such as the audit log's, for a change
    /// audited in the same transaction).
    ///
    /// The write lock is waited for up to [`WRITE_LOCK_PATIENCE`]: a running gateway's
    /// audit writer commits again and again under load, when a freeze or `keygate panic`
    /// matters most, and SQLite's busy handler alone gives no turn within its timeout.
    pub fn transaction<T, E: From<Error>>(
        &mut self,
        f: impl FnOnce(&Store) -> Result<T, E>,
    ) -> Result<T, E> {
        self.begin_immediate(WRITE_LOCK_PATIENCE)?;
        let result = f(self).and_then(|value| {
            self.bump_generation()?;
            self.conn.execute_batch("COMMIT").map_err(|e| self.sql(e))?;
            Ok(value)
        });
        if result.is_err() {
            // A failed COMMIT can leave the transaction open, holding the write lock.
            // Abandoned whatever ROLLBACK says; the caller hears the first error.
            let _ = self.conn.execute_batch("ROLLBACK");
        }
        result
    }

    /// Begins a write transaction, asking again for the write lock while another
    /// connection holds it, for up to `patience`: SQLite's busy handler alone gives no turn
    /// within its timeout to a connection that commits again and again.
    pub(crate) fn begin_immediate(&self, patience: Duration) -> Result<(), Error> {
        let waiting_since = Instant::now();
        let mut told = false;
        loop {
            match self.conn.execute_batch("BEGIN IMMEDIATE") {
                Ok(()) => return Ok(()),
                Err(rusqlite::Error::SqliteFailure(e, _))
                    if e.code == rusqlite::ErrorCode::DatabaseBusy
                        && waiting_since.elapsed() < patience =>
                {
                    // Said once the wait is long enough to be noticed (found by review: a
                    // freeze run under pressure sat silent for up to its whole patience).
                    if !told && waiting_since.elapsed() >= LONG_LOCK_WAIT {
                        told = true;
                        tracing::warn!(
                            database = %self.path.display(),
                            patience_s = patience.as_secs(),
                            "waiting for the database's write lock, which another process \
                             holds (another keygate command, or a program with the file open)"
                        );
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(rusqlite::Error::SqliteFailure(e, _))
                    if e.code == rusqlite::ErrorCode::DatabaseBusy =>
                {
                    return Err(Error::Busy {
                        path: self.path.clone(),
                        waited: waiting_since.elapsed(),
                    })
                }
                Err(e) => return Err(self.sql(e)),
            }
        }
    }

    /// Runs `f` on one consistent view: a snapshot of its own ([`Store::read_snapshot`]),
    /// unless a transaction is open on this connection, whose view already holds still.
    pub(crate) fn consistently<T>(
        &self,
        f: impl FnOnce(&Store) -> Result<T, Error>,
    ) -> Result<T, Error> {
        if self.conn.is_autocommit() {
            self.read_snapshot(f)
        } else {
            f(self)
        }
    }

    /// Runs `f` on one consistent snapshot of the database: writes that other
    /// connections commit meanwhile are not seen, so several reads agree.
    pub fn read_snapshot<T>(&self, f: impl FnOnce(&Store) -> Result<T, Error>) -> Result<T, Error> {
        self.conn
            .execute_batch("BEGIN DEFERRED")
            .map_err(|e| self.sql(e))?;
        let result = f(self);
        // A read transaction has nothing to keep; but one left open would pin this
        // connection to the snapshot, and a gateway would never see a later freeze.
        if let Err(e) = self.conn.execute_batch("COMMIT") {
            let _ = self.conn.execute_batch("ROLLBACK");
            return Err(self.sql(e));
        }
        result
    }

    /// The underlying connection, for the audit log's rows.
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    /// Maps a SQLite error to this crate's error, naming the database.
    pub(crate) fn error(&self, source: rusqlite::Error) -> Error {
        self.sql(source)
    }
}

/// Is `e` a uniqueness violation?
fn is_unique_violation(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _) if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY || f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE)
}

fn status_from_sql(s: &str) -> Result<ClientStatus, Error> {
    s.parse().map_err(|e: keygate_core::Error| Error::Corrupt {
        what: "client status",
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use keygate_core::{Exchange, Policy};
    use keygate_vault::{MasterKey, SecretString};

    /// A regression test (found by review): the write-ahead log kept its largest size for
    /// good after a long read held it from being reset.
    #[test]
    fn the_write_ahead_log_is_cut_back_once_checkpointed() {
        let (dir, store) = temp_store();
        drop(store);
        let store = Store::open(&dir.join("keygate.db")).unwrap();
        let limit: i64 = store
            .conn
            .query_row("PRAGMA journal_size_limit", [], |r| r.get(0))
            .unwrap();
        assert_eq!(limit, WAL_SIZE_LIMIT);
        std::fs::remove_dir_all(dir).unwrap();
    }

    fn temp_store() -> (std::path::PathBuf, Store) {
        let dir =
            std::env::temp_dir().join(format!("kg-store-{}-{}", std::process::id(), rand_suffix()));
        std::fs::create_dir_all(&dir).unwrap();
        let store = Store::create(&dir.join("keygate.db")).unwrap();
        (dir, store)
    }

    #[test]
    fn exchange_pauses_merge_and_end() {
        let (dir, store) = temp_store();
        let pause = |upstream: &str, until_ms, banned| ExchangePause {
            upstream: upstream.to_owned(),
            until_ms,
            banned,
        };
        let generation = store.generation().unwrap();
        store
            .keep_exchange_pause(&pause("https://api.binance.com", 5_000, false), 1_000)
            .unwrap();
        store
            .keep_exchange_pause(&pause("https://fapi.binance.com", 2_000, true), 1_000)
            .unwrap();
        // A shorter wait does not shorten the pause kept; a ban stays a ban.
        store
            .keep_exchange_pause(&pause("https://api.binance.com", 4_000, true), 1_500)
            .unwrap();
        store
            .keep_exchange_pause(&pause("https://api.binance.com", 3_000, false), 1_600)
            .unwrap();
        let mut pauses = store.exchange_pauses(1_600).unwrap();
        pauses.sort_by(|a, b| a.upstream.cmp(&b.upstream));
        assert_eq!(
            pauses,
            [
                pause("https://api.binance.com", 5_000, true),
                pause("https://fapi.binance.com", 2_000, true),
            ]
        );
        // Over pauses go when another is kept.
        store
            .keep_exchange_pause(&pause("https://api.binance.com", 9_000, false), 2_000)
            .unwrap();
        assert_eq!(
            store.exchange_pauses(2_000).unwrap(),
            [pause("https://api.binance.com", 9_000, true)]
        );
        // Not an administrative change: a running gateway has nothing to reload.
        assert_eq!(store.generation().unwrap(), generation);
        // A value that does not decode is no pause.
        store
            .set_meta("exchange_pause https://x.example", b"\x01")
            .unwrap();
        assert_eq!(store.exchange_pauses(2_000).unwrap().len(), 1);
        // Regression: a pause kept by a clock ahead of this one (years ahead: a backup's
        // machine) was taken up whole, and refused every request for as long. It is no
        // pause here, and goes when another is kept.
        let far = 2_000 + LONGEST_EXCHANGE_PAUSE_MS + 1;
        store
            .keep_exchange_pause(&pause("https://fapi.binance.com", far, true), 1_000)
            .unwrap();
        assert_eq!(store.exchange_pauses(2_000).unwrap().len(), 1);
        assert_eq!(store.exchange_pauses(2_001).unwrap().len(), 2);
        store
            .keep_exchange_pause(&pause("https://api.binance.com", 9_000, false), 2_000)
            .unwrap();
        assert_eq!(store.kept_exchange_pauses().unwrap().len(), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn vacuum_gives_deleted_rows_space_back() {
        let (dir, mut store) = temp_store();
        let db = dir.join("keygate.db");
        let filler = vec![b'x'; 1000];
        store
            .transaction(|s: &Store| {
                (0..2000).try_for_each(|i| s.set_meta(&format!("filler {i}"), &filler))
            })
            .unwrap();
        assert!(store.truncate_wal().unwrap());
        let full = std::fs::metadata(&db).unwrap().len();
        store
            .transaction(|s: &Store| {
                (0..2000).try_for_each(|i| s.delete_meta(&format!("filler {i}")))
            })
            .unwrap();
        assert!(store.truncate_wal().unwrap());
        assert_eq!(
            std::fs::metadata(&db).unwrap().len(),
            full,
            "SQLite keeps its pages"
        );
        store.vacuum().unwrap();
        let vacuumed = std::fs::metadata(&db).unwrap().len();
        assert!(vacuumed < full / 10, "{vacuumed} of {full} bytes");
        assert_eq!(
            std::fs::metadata(dir.join("keygate.db-wal")).unwrap().len(),
            0
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A regression test: `create` checked that no file existed, then opened the path, so
    /// an `init` racing another took the other's database for its own, and removed it
    /// when it failed.
    #[test]
    fn create_claims_the_file_exclusively_and_owner_only() {
        let (dir, _store) = temp_store();
        let db = dir.join("keygate.db");
        let before = std::fs::read(&db).unwrap();
        assert!(matches!(
            Store::create(&db),
            Err(Error::AlreadyInitialized { .. })
        ));
        assert_eq!(std::fs::read(&db).unwrap(), before);
        // Even an empty file someone else just made is theirs.
        let empty = dir.join("empty.db");
        std::fs::write(&empty, b"").unwrap();
        assert!(matches!(
            Store::create(&empty),
            Err(Error::AlreadyInitialized { .. })
        ));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&db).unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0, "{mode:o}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn rand_suffix() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64
    }

    fn account(label: &str) -> NewAccount {
        NewAccount {
            label: label.parse().unwrap(),
            exchange: Exchange::Binance,
            upstream: None,
            rotate_every_s: Some(86_400),
            api_key: SecretString::new("AAAAkeykeykeykeyZZZZ".into()),
            secret: SecretString::new("the real secret".into()),
        }
    }

    #[test]
    fn accounts_round_trip_sealed_and_refuse_duplicates() {
        let (dir, mut store) = temp_store();
        let master = MasterKey::generate();
        store
            .transaction(|s| s.insert_account(&account("main"), &master, 1_000))
            .unwrap();
        let stored = store.account(&"main".parse().unwrap()).unwrap();
        assert_eq!(stored.fingerprint, "AAAA…ZZZZ");
        assert_eq!(
            stored.open_secret(&master).unwrap().expose_secret(),
            "the real secret"
        );
        assert_eq!(stored.rotation_due_ms(), Some(1_000 + 86_400_000));
        assert!(
            stored.open_secret(&MasterKey::generate()).is_err(),
            "another master key cannot open it"
        );
        let again = store.transaction(|s| s.insert_account(&account("main"), &master, 2_000));
        assert!(matches!(
            again,
            Err(Error::Exists {
                kind: "account",
                ..
            })
        ));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_failed_transaction_changes_nothing_and_keeps_the_generation() {
        let (dir, mut store) = temp_store();
        let master = MasterKey::generate();
        let before = store.generation().unwrap();
        let failed = store.transaction(|s| {
            s.insert_account(&account("main"), &master, 1)?;
            s.set_client_status(
                &"nobody".parse().unwrap(),
                ClientStatus::Active,
                ClientStatus::Frozen,
                &master,
            )
        });
        assert!(matches!(failed, Err(Error::NotFound { .. })));
        assert_eq!(store.generation().unwrap(), before);
        assert!(store.accounts().unwrap().is_empty());
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// The account `main` and its client `bot1`.
    fn add_main_and_bot1(store: &mut Store, master: &MasterKey) {
        add_main_and(store, master, "bot1", "virtual");
    }

    fn add_main_and_bot2(store: &mut Store, master: &MasterKey) {
        add_main_and(store, master, "bot2", "virtual2");
    }

    fn add_main_and(store: &mut Store, master: &MasterKey, client: &str, api_key: &str) {
        store
            .transaction(|s| {
                s.insert_account(&account("main"), master, 1)?;
                s.insert_client(
                    &NewClient {
                        name: client.parse().unwrap(),
                        account: "main".parse().unwrap(),
                        api_key: api_key.into(),
                        material: ClientKeyMaterial::Hmac(SecretString::new("vsecret".into())),
                        policy: Policy::default(),
                        expires_ms: None,
                    },
                    master,
                    1,
                )
            })
            .unwrap();
    }

    /// A regression test (found by review): two Ed25519 clients could be given one public
    /// key, and the signature does not cover the API key, so the bot of a read-only client
    /// could trade as the other. A key another client holds is refused at issue and at
    /// rotation, its previous key and a revoked client's included.
    #[test]
    fn an_ed25519_public_key_belongs_to_one_client() {
        let (dir, mut store) = temp_store();
        let master = MasterKey::generate();
        add_main_and_bot1(&mut store, &master);
        let ed25519 = |name: &str, api_key: &str, key: u8| NewClient {
            name: name.parse().unwrap(),
            account: "main".parse().unwrap(),
            api_key: api_key.into(),
            material: ClientKeyMaterial::Ed25519([key; 32]),
            policy: Policy::default(),
            expires_ms: None,
        };
        store
            .transaction(|s| s.insert_client(&ed25519("reader", "k-reader", 7), &master, 1))
            .unwrap();
        let shared =
            store.transaction(|s| s.insert_client(&ed25519("trader", "k-t", 7), &master, 1));
        assert!(
            matches!(&shared, Err(Error::PublicKeyShared { holder, .. }) if holder == "reader"),
            "{shared:?}"
        );
        store
            .transaction(|s| s.insert_client(&ed25519("trader", "k-t", 8), &master, 1))
            .unwrap();
        // A rotation to another's key is refused; to a key of its own, or keeping its own,
        // it is not.
        let trader: keygate_core::Name = "trader".parse().unwrap();
        let reader: keygate_core::Name = "reader".parse().unwrap();
        let rotate = |s: &Store, name: &keygate_core::Name, api_key: &str, key: u8| {
            s.rotate_client(
                name,
                api_key,
                &ClientKeyMaterial::Ed25519([key; 32]),
                &master,
                9,
            )
        };
        assert!(matches!(
            store.transaction(|s| rotate(s, &trader, "k-t2", 7)),
            Err(Error::PublicKeyShared { .. })
        ));
        store
            .transaction(|s| rotate(s, &trader, "k-t2", 8))
            .unwrap();
        store
            .transaction(|s| rotate(s, &reader, "k-r2", 9))
            .unwrap();
        // The reader's previous key (7) is still its own in the grace window, and stays
        // its own once it is revoked.
        assert!(matches!(
            store.transaction(|s| s.insert_client(&ed25519("third", "k-3", 7), &master, 1)),
            Err(Error::PublicKeyShared { .. })
        ));
        store
            .transaction(|s| {
                s.set_client_status(
                    &reader,
                    ClientStatus::Active,
                    ClientStatus::Revoked,
                    &master,
                )
            })
            .unwrap();
        assert!(matches!(
            store.transaction(|s| s.insert_client(&ed25519("third", "k-3", 9), &master, 1)),
            Err(Error::PublicKeyShared { .. })
        ));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn deleting_an_account_keeps_its_revoked_clients_only() {
        let (dir, mut store) = temp_store();
        let master = MasterKey::generate();
        let bot: keygate_core::Name = "bot1".parse().unwrap();
        add_main_and_bot1(&mut store, &master);
        store
            .transaction(|s| {
                s.set_client_status(&bot, ClientStatus::Active, ClientStatus::Revoked, &master)?;
                s.delete_account(&"main".parse().unwrap(), &[], &master)
            })
            .unwrap();
        let kept = store.client(&bot).unwrap();
        assert_eq!(kept.status, ClientStatus::Revoked);
        assert_eq!(kept.account.as_str(), "main");
        kept.verify_record(&master).unwrap();
        store.check_seal(&master).unwrap();

        // A bound client that is not revoked holds the account back; one named as not
        // reading goes with it.
        add_main_and_bot2(&mut store, &master);
        assert!(matches!(
            store.transaction(|s| s.delete_account(&"main".parse().unwrap(), &[], &master)),
            Err(Error::Conflict { .. })
        ));
        store
            .transaction(|s| s.delete_account(&"main".parse().unwrap(), &["bot2"], &master))
            .unwrap();
        let names: Vec<_> = store
            .client_rows()
            .unwrap()
            .into_iter()
            .map(|c| c.unwrap().name.to_string())
            .collect();
        assert_eq!(names, ["bot1"]);
        store.check_seal(&master).unwrap();
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// A regression test (found by review): a row whose status, account, key type or
    /// policy was not text read as an error naming no client, the same for every such
    /// row, so a gateway could not tell a second one from the first; an account row
    /// named no account.
    #[test]
    fn a_row_with_a_column_of_the_wrong_type_names_its_client() {
        let (dir, mut store) = temp_store();
        let master = MasterKey::generate();
        add_main_and_bot1(&mut store, &master);
        for column in ["status", "account", "key_type", "policy"] {
            store
                .connection()
                .execute(
                    &format!("UPDATE clients SET {column} = CAST({column} AS BLOB)"),
                    [],
                )
                .unwrap();
            let rows = store.client_rows().unwrap();
            let Err(error) = &rows[0] else {
                panic!("{column}: a row of the wrong type read")
            };
            let error = error.to_string();
            assert!(error.contains("\"bot1\""), "{column}: {error}");
            store
                .connection()
                .execute(
                    &format!("UPDATE clients SET {column} = CAST({column} AS TEXT)"),
                    [],
                )
                .unwrap();
            assert!(store.client_rows().unwrap()[0].is_ok(), "{column}");
        }
        // An account row too.
        store
            .connection()
            .execute("UPDATE accounts SET created_ms = 'x'", [])
            .unwrap();
        let Err(error) = &store.account_rows().unwrap()[0] else {
            panic!("an account row of the wrong type read")
        };
        assert!(error.to_string().contains("account \"main\""), "{error}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_status_change_applies_only_from_the_status_it_was_decided_on() {
        let (dir, mut store) = temp_store();
        let master = MasterKey::generate();
        let bot: keygate_core::Name = "bot1".parse().unwrap();
        add_main_and_bot1(&mut store, &master);
        let set = |store: &mut Store, from, to| {
            store.transaction(|s| s.set_client_status(&bot, from, to, &master))
        };
        set(&mut store, ClientStatus::Active, ClientStatus::Frozen).unwrap();
        // An unfreeze decided before a revoke landed must not bring the client back.
        set(&mut store, ClientStatus::Frozen, ClientStatus::Revoked).unwrap();
        assert!(matches!(
            set(&mut store, ClientStatus::Frozen, ClientStatus::Active),
            Err(Error::Conflict { .. })
        ));
        assert_eq!(store.client(&bot).unwrap().status, ClientStatus::Revoked);
        // Revocation is final.
        for to in [
            ClientStatus::Active,
            ClientStatus::Frozen,
            ClientStatus::Revoked,
        ] {
            assert!(matches!(
                set(&mut store, ClientStatus::Revoked, to),
                Err(Error::Conflict { .. })
            ));
        }
        std::fs::remove_dir_all(dir).unwrap();
    }

    fn readable_clients(store: &Store) -> Vec<Client> {
        store.client_rows().unwrap().into_iter().flatten().collect()
    }

    /// Changes a column of `bot1` behind the store's back, as a hand edit would, and
    /// checks that the row did change.
    fn edit(store: &Store, assignment: &str) {
        let row = || -> Vec<rusqlite::types::Value> {
            store
                .connection()
                .query_row("SELECT * FROM clients WHERE name = 'bot1'", [], |r| {
                    (0..r.as_ref().column_count()).map(|i| r.get(i)).collect()
                })
                .unwrap()
        };
        let before = row();
        store
            .connection()
            .execute(
                &format!("UPDATE clients SET {assignment} WHERE name = 'bot1'"),
                [],
            )
            .unwrap();
        assert_ne!(row(), before, "{assignment} changed nothing");
    }

    const WIDENED_POLICY: &str =
        r#"policy = replace(policy, '"scopes":["read"]', '"scopes":["read","withdraw"]')"#;

    #[test]
    fn a_client_column_changed_without_the_master_key_is_caught() {
        let bot: keygate_core::Name = "bot1".parse().unwrap();
        for assignment in [
            "status = 'frozen'",
            WIDENED_POLICY,
            "expires_ms = 4102444800000",
            "created_ms = 2",
            "previous_until_ms = 4102444800000",
            "account = 'other'",
            "tag = NULL",
        ] {
            let (dir, mut store) = temp_store();
            let master = MasterKey::generate();
            add_main_and_bot1(&mut store, &master);
            store
                .transaction(|s| s.insert_account(&account("other"), &master, 1))
                .unwrap();
            let client = store.client(&bot).unwrap();
            assert!(client.open_material(&master).is_ok());
            edit(&store, assignment);
            let client = store.client(&bot).unwrap();
            for result in [
                client.verify_record(&master),
                client.open_material(&master).map(drop),
                client.open_keys(&master).map(drop),
            ] {
                assert!(
                    matches!(
                        result,
                        Err(Error::Vault(keygate_vault::Error::Tampered { .. }))
                    ),
                    "{assignment} went unnoticed"
                );
            }
            std::fs::remove_dir_all(dir).unwrap();
        }
    }

    #[test]
    fn a_second_rotation_retires_the_first_key_in_a_version_5_database_too() {
        let (dir, mut store) = temp_store();
        let master = MasterKey::generate();
        let bot: keygate_core::Name = "bot1".parse().unwrap();
        add_main_and_bot1(&mut store, &master);
        store
            .connection()
            .execute_batch(
                "DROP TABLE retired_keys; UPDATE meta SET value = 5 WHERE key = 'schema_version'",
            )
            .unwrap();
        store.upgrade_schema().unwrap();
        let first = store.client(&bot).unwrap().api_key;
        let material = ClientKeyMaterial::Hmac(SecretString::new("new".into()));
        store
            .transaction(|s| s.rotate_client(&bot, "second", &material, &master, 9))
            .unwrap();
        assert!(
            store.retired_keys().unwrap().is_empty(),
            "the first key is in its grace"
        );
        store
            .transaction(|s| s.rotate_client(&bot, "third", &material, &master, 9))
            .unwrap();
        assert_eq!(
            store.retired_keys().unwrap(),
            [(retired_key_hash(&first), bot.clone())]
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_rotation_remembers_the_real_key_it_replaced_in_a_version_6_database_too() {
        let (dir, mut store) = temp_store();
        let master = MasterKey::generate();
        let main: keygate_core::Name = "main".parse().unwrap();
        add_main_and_bot1(&mut store, &master);
        store
            .connection()
            .execute_batch(
                "DROP TABLE retired_account_keys; \
                 UPDATE meta SET value = 6 WHERE key = 'schema_version'",
            )
            .unwrap();
        store.upgrade_schema().unwrap();
        assert!(store.is_schema_current().unwrap());
        let first = "AAAAkeykeykeykeyZZZZ";
        let secret = |text: &str| SecretString::new(text.into());
        // A new secret for the same key mends it: nothing is replaced.
        store
            .transaction(|s| {
                s.replace_account_credentials(&main, &secret(first), &secret("s2"), &master, 5)
            })
            .unwrap();
        assert_eq!(store.replaced_account_key(first).unwrap(), None);
        store
            .transaction(|s| {
                s.replace_account_credentials(&main, &secret("next"), &secret("s3"), &master, 9)
            })
            .unwrap();
        assert_eq!(
            store.replaced_account_key(first).unwrap(),
            Some(("main".to_owned(), 9))
        );
        assert_eq!(store.replaced_account_key("next").unwrap(), None);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_tampered_client_can_be_revoked_and_nothing_else() {
        let (dir, mut store) = temp_store();
        let master = MasterKey::generate();
        let bot: keygate_core::Name = "bot1".parse().unwrap();
        add_main_and_bot1(&mut store, &master);
        edit(&store, WIDENED_POLICY);
        let set = |store: &mut Store, from, to| {
            store.transaction(|s| s.set_client_status(&bot, from, to, &master))
        };
        assert!(set(&mut store, ClientStatus::Active, ClientStatus::Frozen).is_err());
        let material = ClientKeyMaterial::Hmac(SecretString::new("new".into()));
        assert!(store
            .transaction(|s| s.rotate_client(&bot, "rotated", &material, &master, 9))
            .is_err());
        edit(
            &store,
            "previous_api_key = 'borrowed', previous_material = key_material, \
             previous_until_ms = 4102444800000",
        );
        set(&mut store, ClientStatus::Active, ClientStatus::Revoked).unwrap();
        // Tagged as revoked: undoing the edit no longer brings back a usable client. Its
        // previous key, which could be another client's copied in, is not vouched for.
        let client = store.client(&bot).unwrap();
        assert_eq!(client.status, ClientStatus::Revoked);
        client.verify_record(&master).unwrap();
        assert!(client.previous_api_key.is_none());
        edit(
            &store,
            r#"status = 'active', policy = replace(policy, ',"withdraw"', '')"#,
        );
        assert!(store.client(&bot).unwrap().verify_record(&master).is_err());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn changes_made_through_the_store_keep_the_record_verified() {
        let (dir, mut store) = temp_store();
        let master = MasterKey::generate();
        let bot: keygate_core::Name = "bot1".parse().unwrap();
        add_main_and_bot1(&mut store, &master);
        let material = ClientKeyMaterial::Hmac(SecretString::new("new".into()));
        store
            .transaction(|s| s.rotate_client(&bot, "rotated", &material, &master, 9))
            .unwrap();
        store
            .transaction(|s| {
                s.set_client_status(&bot, ClientStatus::Active, ClientStatus::Frozen, &master)
            })
            .unwrap();
        let client = store.client(&bot).unwrap();
        client.verify_record(&master).unwrap();
        assert_eq!(client.api_key, "rotated");
        let (_, previous) = client.open_keys(&master).unwrap();
        let (old_key, _) = previous.unwrap();
        assert_eq!(old_key, "virtual");
        let ed25519 = ClientKeyMaterial::Ed25519([7; 32]);
        assert!(matches!(
            store.transaction(|s| s.rotate_client(&bot, "again", &ed25519, &master, 9)),
            Err(Error::Conflict { .. })
        ));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_database_from_before_tags_is_upgraded_and_its_clients_tagged_once() {
        let (dir, mut store) = temp_store();
        let master = MasterKey::generate();
        let bot: keygate_core::Name = "bot1".parse().unwrap();
        add_main_and_bot1(&mut store, &master);
        // What schema version 1 looked like: no tag column.
        store
            .connection()
            .execute_batch(
                "ALTER TABLE clients DROP COLUMN tag;
                 UPDATE meta SET value = 1 WHERE key = 'schema_version';",
            )
            .unwrap();
        let path = store.path().to_owned();
        drop(store);
        let mut store = Store::open(&path).unwrap();
        assert!(store.client(&bot).unwrap().verify_record(&master).is_err());
        let refused = store.transaction(|s| {
            s.set_client_status(&bot, ClientStatus::Active, ClientStatus::Frozen, &master)
        });
        assert!(
            refused.is_err(),
            "an untagged client was changed before its upgrade"
        );
        store.upgrade_schema().unwrap();
        let shown = readable_clients(&store);
        // A row changed after it was shown is not tagged.
        edit(&store, "expires_ms = 5");
        assert!(matches!(
            store.transaction(|s| s.tag_clients_as_shown(&shown, &master)),
            Err(Error::Conflict { .. })
        ));
        let shown = readable_clients(&store);
        let tagged = store
            .transaction(|s| s.tag_clients_as_shown(&shown, &master))
            .unwrap();
        assert_eq!(tagged, vec![bot.clone()]);
        store.client(&bot).unwrap().verify_record(&master).unwrap();
        let shown = readable_clients(&store);
        assert!(store
            .transaction(|s| s.tag_clients_as_shown(&shown, &master))
            .unwrap()
            .is_empty());
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// Every row's own tag verifies after a rollback; only the seal tells.
    fn all_rows_verify(store: &Store, master: &MasterKey) -> bool {
        readable_clients(store)
            .iter()
            .all(|c| c.verify_record(master).is_ok())
    }

    #[test]
    fn the_client_table_seal_catches_a_row_put_back_added_or_removed() {
        let (dir, mut store) = temp_store();
        let master = MasterKey::generate();
        let bot: keygate_core::Name = "bot1".parse().unwrap();
        // A new, empty table holds without a seal; the first client seals it.
        assert_eq!(store.check_seal(&master).unwrap(), 0);
        add_main_and_bot1(&mut store, &master);
        store.check_seal(&master).unwrap();
        let copy = |store: &Store, sql: &str| store.connection().execute_batch(sql).unwrap();
        copy(&store, "CREATE TABLE saved AS SELECT * FROM clients");
        store
            .transaction(|s| {
                s.set_client_status(&bot, ClientStatus::Active, ClientStatus::Revoked, &master)
            })
            .unwrap();
        store.check_seal(&master).unwrap();

        // The row as it was before its revocation, put back: its own tag verifies.
        copy(
            &store,
            "DELETE FROM clients; INSERT INTO clients SELECT * FROM saved",
        );
        assert_eq!(store.client(&bot).unwrap().status, ClientStatus::Active);
        assert!(all_rows_verify(&store, &master));
        let broken =
            |store: &Store| matches!(store.check_seal(&master), Err(Error::Unsealed { .. }));
        assert!(broken(&store));
        // A write made now does not vouch for it: the seal stays broken.
        store
            .transaction(|s| {
                s.set_client_status(&bot, ClientStatus::Active, ClientStatus::Frozen, &master)
            })
            .unwrap();
        assert!(broken(&store));
        // Sealed again as it is, by whoever vouches for it (`keygate upgrade`).
        store.transaction(|s| s.seal_as_they_are(&master)).unwrap();
        store.check_seal(&master).unwrap();

        // A row removed, or one added, breaks it as well; and so does a missing seal.
        copy(&store, "UPDATE saved SET name = 'bot2', api_key = 'other'");
        copy(&store, "INSERT INTO clients SELECT * FROM saved");
        assert!(broken(&store));
        copy(&store, "DELETE FROM clients WHERE name = 'bot2'");
        store.check_seal(&master).unwrap();
        copy(&store, "DELETE FROM clients");
        assert!(broken(&store));
        copy(
            &store,
            "INSERT INTO clients SELECT * FROM saved; DELETE FROM meta WHERE key = 'tables_seal'",
        );
        assert!(broken(&store));
        // Nor does another vault's seal fit.
        store
            .transaction(|s| s.seal_as_they_are(&MasterKey::generate()))
            .unwrap();
        assert!(broken(&store));
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// The checkpoint file a vault records is sealed with the tables: whoever can put the
    /// database back can edit `config.toml` too, and must not be able to take out, or
    /// change, the record that the log is to be checked against a file kept elsewhere.
    #[test]
    fn a_recorded_checkpoint_file_cannot_be_taken_out_or_changed_without_the_master_key() {
        let (dir, mut store) = temp_store();
        let master = MasterKey::generate();
        assert_eq!(store.checkpoint_file().unwrap(), None);
        // Recorded in an empty vault, it is sealed on its own.
        store
            .transaction(|s| {
                let before = s.check_seal_is_latest(&master);
                s.set_checkpoint_file(Some("/mnt/elsewhere/keygate.checkpoints"))?;
                s.reseal(&master, &before)
            })
            .unwrap();
        store.check_seal(&master).unwrap();
        let sql = |store: &Store, sql: &str| store.connection().execute_batch(sql).unwrap();
        let broken =
            |store: &Store| matches!(store.check_seal(&master), Err(Error::Unsealed { .. }));
        sql(&store, "CREATE TABLE saved AS SELECT * FROM meta");
        sql(&store, "DELETE FROM meta WHERE key = 'tables_seal'");
        assert!(broken(&store), "recorded, but with no seal");
        sql(
            &store,
            "DELETE FROM meta; INSERT INTO meta SELECT * FROM saved",
        );
        store.check_seal(&master).unwrap();

        add_main_and_bot1(&mut store, &master);
        store.check_seal(&master).unwrap();
        assert_eq!(
            store.checkpoint_file().unwrap().as_deref(),
            Some("/mnt/elsewhere/keygate.checkpoints")
        );
        sql(
            &store,
            "DELETE FROM saved; INSERT INTO saved SELECT * FROM meta",
        );
        sql(&store, "DELETE FROM meta WHERE key = 'checkpoint_file'");
        assert!(broken(&store), "taken out");
        sql(
            &store,
            "DELETE FROM meta; INSERT INTO meta SELECT * FROM saved",
        );
        store.check_seal(&master).unwrap();
        sql(
            &store,
            "UPDATE meta SET value = CAST('/tmp/stale-copy' AS BLOB) WHERE key = 'checkpoint_file'",
        );
        assert!(broken(&store), "changed");
        sql(
            &store,
            "DELETE FROM meta; INSERT INTO meta SELECT * FROM saved",
        );

        // Taken out by an audited change, resealed with it: the seal holds.
        store
            .transaction(|s| {
                let before = s.check_seal_is_latest(&master);
                s.set_checkpoint_file(None)?;
                s.reseal(&master, &before)
            })
            .unwrap();
        store.check_seal(&master).unwrap();
        assert_eq!(store.checkpoint_file().unwrap(), None);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn the_seal_names_the_last_audit_event_when_it_was_made() {
        let (dir, mut store) = temp_store();
        let master = MasterKey::generate();
        add_main_and_bot1(&mut store, &master);
        assert_eq!(store.check_seal(&master).unwrap(), 0);
        store
            .connection()
            .execute(
                "INSERT INTO events (seq, ts_ms, body, hash, mac) VALUES (7, 1, '{}', x'00', x'00')",
                [],
            )
            .unwrap();
        store
            .transaction(|s| {
                let before = s.check_seal(&master);
                s.reseal(&master, &before)
            })
            .unwrap();
        assert_eq!(store.check_seal(&master).unwrap(), 7);
        assert_eq!(store.check_seal_is_latest(&master).unwrap(), 7);
        // A log cut short before the seal's event refuses every client; so does one
        // grown again past it, with another event at its seq (a regression test: the
        // seal named a seq alone, and a log cut back behind an administrative change,
        // its head put back from an old copy, verified once appends had passed the seq).
        let events = |sql: &str| store.connection().execute_batch(sql).unwrap();
        events("CREATE TABLE kept AS SELECT * FROM events WHERE seq = 7; DELETE FROM events WHERE seq = 7");
        assert!(matches!(
            store.check_seal_is_latest(&master),
            Err(Error::Unsealed { .. })
        ));
        events(
            "INSERT INTO events (seq, ts_ms, body, hash, mac) VALUES (7, 2, '{}', x'01', x'00')",
        );
        assert!(matches!(
            store.check_seal_is_latest(&master),
            Err(Error::Unsealed { .. })
        ));
        events("DELETE FROM events WHERE seq = 7; INSERT INTO events SELECT * FROM kept");
        assert_eq!(store.check_seal_is_latest(&master).unwrap(), 7);
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// A regression test: a client table put back with its seal from before a revoke
    /// matched that seal, so the next routine change (any client's) sealed it again at the
    /// latest event, and the revoked client was served once more.
    #[test]
    fn a_table_put_back_with_its_seal_is_not_sealed_again_by_a_routine_change() {
        let (dir, mut store) = temp_store();
        let master = MasterKey::generate();
        let bot1: keygate_core::Name = "bot1".parse().unwrap();
        let bot2: keygate_core::Name = "bot2".parse().unwrap();
        add_main_and_bot1(&mut store, &master);
        store
            .transaction(|s| {
                s.insert_client(
                    &NewClient {
                        name: bot2.clone(),
                        account: "main".parse().unwrap(),
                        api_key: "virtual2".into(),
                        material: ClientKeyMaterial::Hmac(SecretString::new("v2".into())),
                        policy: Policy::default(),
                        expires_ms: None,
                    },
                    &master,
                    1,
                )
            })
            .unwrap();
        store
            .connection()
            .execute_batch(
                "CREATE TABLE saved AS SELECT * FROM clients;
                 CREATE TABLE saved_seal AS SELECT * FROM meta WHERE key = 'tables_seal';",
            )
            .unwrap();
        // bot1 is revoked, and the revoke's administrative event is in the log, as
        // `keygate client revoke` does it.
        store
            .transaction(|s| {
                let before = s.check_seal_is_latest(&master);
                s.set_client_status(&bot1, ClientStatus::Active, ClientStatus::Revoked, &master)?;
                s.connection()
                    .execute(
                        r#"INSERT INTO events (seq, ts_ms, body, hash, mac)
                           VALUES (1, 1, '{"type":"admin"}', x'00', x'00')"#,
                        [],
                    )
                    .map_err(|e| s.error(e))?;
                s.reseal(&master, &before)
            })
            .unwrap();
        store.check_seal_is_latest(&master).unwrap();
        // The table and its seal put back from the copy: stale, bot1 active.
        store
            .connection()
            .execute_batch(
                "DELETE FROM clients; INSERT INTO clients SELECT * FROM saved;
                 DELETE FROM meta WHERE key = 'tables_seal';
                 INSERT INTO meta SELECT * FROM saved_seal;",
            )
            .unwrap();
        assert!(store.check_seal_is_latest(&master).is_err());
        // A routine change to another client leaves the table refused.
        store
            .transaction(|s| {
                s.set_client_status(&bot2, ClientStatus::Active, ClientStatus::Frozen, &master)
            })
            .unwrap();
        assert!(matches!(
            store.check_seal_is_latest(&master),
            Err(Error::Unsealed { .. })
        ));
        assert_eq!(store.client(&bot1).unwrap().status, ClientStatus::Active);
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// A regression test: account rows had no tag and were under no seal, so an account
    /// put back as it was before `account rotate` (from a backup) went on serving with the
    /// key that rotation replaced: its sealed key and secret open, bound as they are to
    /// the row's own label, exchange and upstream.
    #[test]
    fn an_account_put_back_as_before_its_rotation_breaks_the_seal() {
        let (dir, mut store) = temp_store();
        let master = MasterKey::generate();
        let main: keygate_core::Name = "main".parse().unwrap();
        add_main_and_bot1(&mut store, &master);
        let sql = |store: &Store, sql: &str| store.connection().execute_batch(sql).unwrap();
        sql(&store, "CREATE TABLE saved AS SELECT * FROM accounts");
        store
            .transaction(|s| {
                s.replace_account_credentials(
                    &main,
                    &SecretString::new("BBBBnewkeynewkeyYYYY".into()),
                    &SecretString::new("the new secret".into()),
                    &master,
                    2,
                )
            })
            .unwrap();
        store.check_seal(&master).unwrap();

        sql(
            &store,
            "DELETE FROM accounts; INSERT INTO accounts SELECT * FROM saved",
        );
        let put_back = store.account(&main).unwrap();
        assert_eq!(
            put_back.open_api_key(&master).unwrap().expose_secret(),
            "AAAAkeykeykeykeyZZZZ"
        );
        let broken = |store: &Store| {
            matches!(
                store.check_seal(&master),
                Err(Error::Unsealed { reason }) if reason.contains("account row")
            )
        };
        assert!(broken(&store));
        // A rotation made now does not vouch for the row put back.
        store
            .transaction(|s| {
                s.replace_account_credentials(
                    &main,
                    &SecretString::new("CCCCkeykeykeykeyXXXX".into()),
                    &SecretString::new("a third secret".into()),
                    &master,
                    3,
                )
            })
            .unwrap();
        assert!(broken(&store));
        store.transaction(|s| s.seal_as_they_are(&master)).unwrap();
        store.check_seal(&master).unwrap();
        // Any column edited breaks it too: the rotation period, say, which the sealed
        // credentials are not bound to.
        sql(&store, "UPDATE accounts SET rotate_every_s = NULL");
        assert!(broken(&store));
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// Brings `store` back to schema version 3 as it was: no `tables_seal`, and the client
    /// table sealed alone, as that version sealed it.
    fn as_version_3(store: &mut Store, master: &MasterKey) {
        store
            .connection()
            .execute_batch(
                "DELETE FROM meta WHERE key = 'tables_seal';
                 UPDATE meta SET value = 3 WHERE key = 'schema_version';",
            )
            .unwrap();
        store.transaction(|s| s.seal_as_they_are(master)).unwrap();
        assert!(store.meta("clients_seal").unwrap().is_some());
    }

    /// The audited change that brings a database to this build's schema, as the CLI makes
    /// it: the seal checked before, an administrative event (`vault.schema`), resealed
    /// after.
    fn audited_upgrade(store: &mut Store, master: &MasterKey) {
        store
            .transaction(|s| {
                let before = s.check_seal_is_latest(master);
                s.upgrade_schema_within()?;
                s.connection()
                    .execute(
                        r#"INSERT INTO events (seq, ts_ms, body, hash, mac) VALUES
                           ((SELECT coalesce(max(seq), 0) + 1 FROM events), 1,
                            '{"type":"admin","change":"vault.schema"}', x'00', x'00')"#,
                        [],
                    )
                    .map_err(|e| s.error(e))?;
                s.reseal(master, &before)
            })
            .unwrap();
        assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
    }

    #[test]
    fn a_version_3_client_seal_that_held_becomes_a_seal_over_both_tables() {
        let (dir, mut store) = temp_store();
        let master = MasterKey::generate();
        add_main_and_bot1(&mut store, &master);
        as_version_3(&mut store, &master);
        store.check_seal_is_latest(&master).unwrap();
        audited_upgrade(&mut store, &master);
        store.check_seal_is_latest(&master).unwrap();
        assert!(store.meta("clients_seal").unwrap().is_none());
        // From now on the accounts are under it.
        store
            .connection()
            .execute_batch("UPDATE accounts SET rotated_ms = 0")
            .unwrap();
        assert!(store.check_seal(&master).is_err());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_version_3_client_seal_that_was_broken_seals_nothing_at_the_upgrade() {
        let (dir, mut store) = temp_store();
        let master = MasterKey::generate();
        add_main_and_bot1(&mut store, &master);
        as_version_3(&mut store, &master);
        store
            .connection()
            .execute_batch("DELETE FROM clients")
            .unwrap();
        assert!(store.check_seal(&master).is_err());
        audited_upgrade(&mut store, &master);
        assert!(matches!(
            store.check_seal(&master),
            Err(Error::Unsealed { reason }) if reason.contains("not sealed")
        ));
        // Nor does the version-3 seal, put back with the version after the upgrade (to
        // have the accounts unsealed again), count: the upgrade's event came after it.
        let (dir2, mut other) = temp_store();
        add_main_and_bot1(&mut other, &master);
        as_version_3(&mut other, &master);
        let sql = |store: &Store, sql: &str| store.connection().execute_batch(sql).unwrap();
        sql(
            &other,
            "CREATE TABLE saved_seal AS SELECT * FROM meta WHERE key = 'clients_seal'",
        );
        audited_upgrade(&mut other, &master);
        other.check_seal_is_latest(&master).unwrap();
        sql(
            &other,
            "DELETE FROM meta WHERE key = 'tables_seal';
             INSERT INTO meta SELECT * FROM saved_seal;
             UPDATE meta SET value = 3 WHERE key = 'schema_version';",
        );
        // It matches the client table still...
        other.check_seal(&master).unwrap();
        // ...but it is older than the last administrative event.
        assert!(matches!(
            other.check_seal_is_latest(&master),
            Err(Error::Unsealed { reason }) if reason.contains("put back, seal and all")
        ));
        std::fs::remove_dir_all(dir).unwrap();
        std::fs::remove_dir_all(dir2).unwrap();
    }

    /// Version 2's client table, which referenced `accounts(label)`.
    const CLIENTS_V2: &str = "CREATE TABLE clients_v2 (
        name TEXT PRIMARY KEY, account TEXT NOT NULL REFERENCES accounts(label),
        status TEXT NOT NULL, key_type TEXT NOT NULL, api_key TEXT NOT NULL UNIQUE,
        key_material BLOB NOT NULL, policy TEXT NOT NULL, created_ms INTEGER NOT NULL,
        expires_ms INTEGER, previous_api_key TEXT, previous_material BLOB,
        previous_until_ms INTEGER, tag BLOB);
        INSERT INTO clients_v2 SELECT * FROM clients;
        DROP TABLE clients;
        ALTER TABLE clients_v2 RENAME TO clients;
        UPDATE meta SET value = 2 WHERE key = 'schema_version';";

    #[test]
    fn a_version_2_database_keeps_every_client_and_stops_deleting_them_with_accounts() {
        let (dir, mut store) = temp_store();
        let master = MasterKey::generate();
        let bot: keygate_core::Name = "bot1".parse().unwrap();
        add_main_and_bot1(&mut store, &master);
        store.connection().execute_batch(CLIENTS_V2).unwrap();
        let rows = |store: &Store| -> Vec<Vec<rusqlite::types::Value>> {
            let mut stmt = store
                .connection()
                .prepare("SELECT * FROM clients ORDER BY name")
                .unwrap();
            let rows = stmt
                .query_map([], |r| {
                    (0..r.as_ref().column_count()).map(|i| r.get(i)).collect()
                })
                .unwrap();
            rows.map(Result::unwrap).collect()
        };
        let before = rows(&store);
        let path = store.path().to_owned();
        drop(store);
        let mut store = Store::open(&path).unwrap();
        store.upgrade_schema().unwrap();
        assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
        assert_eq!(rows(&store), before);
        store.client(&bot).unwrap().verify_record(&master).unwrap();
        store.check_seal(&master).unwrap();
        let generation = store.generation().unwrap();
        store.upgrade_schema().unwrap();
        assert_eq!(store.generation().unwrap(), generation);
        store
            .transaction(|s| {
                s.set_client_status(&bot, ClientStatus::Active, ClientStatus::Revoked, &master)?;
                s.delete_account(&"main".parse().unwrap(), &[], &master)
            })
            .unwrap();
        assert_eq!(store.client(&bot).unwrap().status, ClientStatus::Revoked);
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// Found by review: a change that waited out its patience for the write lock said
    /// "database is locked" three times over, and neither who held it nor that nothing
    /// was changed.
    #[test]
    fn a_write_lock_held_elsewhere_is_named() {
        let (dir, store) = temp_store();
        let other = Store::open(store.path()).unwrap();
        other.connection().execute_batch("BEGIN IMMEDIATE").unwrap();
        let refused = store
            .begin_immediate(Duration::from_millis(50))
            .unwrap_err();
        assert!(matches!(refused, Error::Busy { .. }), "{refused:?}");
        assert!(refused
            .to_string()
            .contains("another process held its write lock"));
        other.connection().execute_batch("ROLLBACK").unwrap();
        store.begin_immediate(Duration::from_millis(50)).unwrap();
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// Found by review: a database of a newer keygate was called corrupt, which would
    /// send an operator to a backup rather than to the newer binary.
    #[test]
    fn a_schema_newer_than_this_build_is_refused() {
        let (dir, store) = temp_store();
        store
            .connection()
            .execute(
                "UPDATE meta SET value = ?1 WHERE key = 'schema_version'",
                [SCHEMA_VERSION + 1],
            )
            .unwrap();
        let path = store.path().to_owned();
        drop(store);
        let refused = Store::open(&path).err().map(|e| e.to_string());
        assert!(
            refused
                .as_ref()
                .is_some_and(|e| e.contains("made by a newer keygate") && !e.contains("corrupt")),
            "{refused:?}"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// A regression test: a trigger planted by whoever could write the database file
    /// dropped audit rows as they were inserted (and the head with them), so requests
    /// counted as audited while the log stayed consistent without them.
    #[test]
    fn a_planted_trigger_cannot_drop_audit_events() {
        let (dir, store) = temp_store();
        let planter = Connection::open(store.path()).unwrap();
        planter
            .execute_batch(
                "CREATE TRIGGER drop_events BEFORE INSERT ON events BEGIN SELECT RAISE(IGNORE); END;
                 CREATE TRIGGER keep_head BEFORE UPDATE ON meta BEGIN SELECT RAISE(IGNORE); END;",
            )
            .unwrap();
        let store = Store::open(store.path()).unwrap();
        let row = |seq: u64| EventRow {
            seq,
            ts_ms: seq,
            body: format!("{{\"seq\":{seq}}}"),
            hash: vec![seq as u8; 32],
            mac: vec![0; 32],
        };
        for seq in 1..=2 {
            store
                .append_events(None, |_| (vec![row(seq)], ()), |r| r.mac.clone())
                .unwrap();
        }
        let stored: Vec<u64> = store.events(1, 10).unwrap().iter().map(|r| r.seq).collect();
        assert_eq!(stored, [1, 2]);
        assert_eq!(store.audit_head().unwrap().unwrap().seq, 2);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A regression test: a change made while another connection kept the write lock
    /// longer than SQLite's busy timeout failed, so `keygate panic` under load froze
    /// nothing.
    #[test]
    fn a_change_waits_for_a_write_lock_held_past_the_busy_timeout() {
        let (dir, mut store) = temp_store();
        let db = dir.join("keygate.db");
        let holder = Store::open(&db).unwrap();
        holder.conn.execute_batch("BEGIN IMMEDIATE").unwrap();
        let (held, release) = std::sync::mpsc::channel::<()>();
        let releaser = std::thread::spawn(move || {
            let _ = release.recv_timeout(Duration::from_secs(3));
            holder.conn.execute_batch("COMMIT").unwrap();
        });
        let master = MasterKey::generate();
        let started = Instant::now();
        store
            .transaction(|s| s.insert_account(&account("main"), &master, 1_000))
            .unwrap();
        assert!(
            started.elapsed() >= Duration::from_secs(2),
            "the lock was not held"
        );
        drop(held);
        releaser.join().unwrap();
        assert!(store.account(&"main".parse().unwrap()).is_ok());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
