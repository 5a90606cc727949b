//! Accounts, clients and audit rows as stored.

use keygate_core::{ClientStatus, Exchange, Name, Policy};
use keygate_vault::{redact, MasterKey, RecordId, SecretString};
use rusqlite::{params, OptionalExtension, Row};
use subtle::ConstantTimeEq;

use crate::{is_unique_violation, status_from_sql, Error, Store};

/// The SHA-256 of a client API key, as the table of retired keys keeps it.
pub fn retired_key_hash(api_key: &str) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(api_key.as_bytes()).into()
}

/// A real exchange key to add.
pub struct NewAccount {
    /// Its label.
    pub label: Name,
    /// Its exchange.
    pub exchange: Exchange,
    /// A base URL replacing every exchange host (testnets, the simulator).
    pub upstream: Option<String>,
    /// How often the key should be rotated, in seconds.
    pub rotate_every_s: Option<u64>,
    /// The API key.
    pub api_key: SecretString,
    /// The API secret.
    pub secret: SecretString,
}

/// A real exchange key, as stored: the credentials stay sealed until opened.
#[derive(Clone)]
pub struct Account {
    /// Its label.
    pub label: Name,
    /// Its exchange.
    pub exchange: Exchange,
    /// A base URL replacing every exchange host.
    pub upstream: Option<String>,
    /// Rotation period in seconds.
    pub rotate_every_s: Option<u64>,
    /// When it was added.
    pub created_ms: u64,
    /// When its credentials were last set.
    pub rotated_ms: u64,
    /// The API key's first and last four characters.
    pub fingerprint: String,
    sealed_api_key: Vec<u8>,
    sealed_secret: Vec<u8>,
}

impl Account {
    /// Opens the real API key.
    pub fn open_api_key(&self, master: &MasterKey) -> Result<SecretString, Error> {
        open_string(
            master,
            &account_record("account-api-key", self),
            &self.sealed_api_key,
        )
    }

    /// Opens the real API secret.
    pub fn open_secret(&self, master: &MasterKey) -> Result<SecretString, Error> {
        open_string(
            master,
            &account_record("account-secret", self),
            &self.sealed_secret,
        )
    }

    /// Whether `other` is this very row: every column alike, sealed credentials included.
    pub fn same_row_as(&self, other: &Account) -> bool {
        self.label == other.label
            && self.exchange == other.exchange
            && self.upstream == other.upstream
            && self.rotate_every_s == other.rotate_every_s
            && self.created_ms == other.created_ms
            && self.rotated_ms == other.rotated_ms
            && self.fingerprint == other.fingerprint
            && self.sealed_api_key == other.sealed_api_key
            && self.sealed_secret == other.sealed_secret
    }

    /// When rotation is due, if a period is set.
    pub fn rotation_due_ms(&self) -> Option<u64> {
        // Saturating: a period edited into the database past what a time can hold is
        // shown as due never rather than panicking or wrapping round to the past.
        self.rotate_every_s
            .map(|s| self.rotated_ms.saturating_add(s.saturating_mul(1000)))
    }
}

/// An account's sealed record, bound to its upstream: pointing the account at another
/// host in the database, without the master key, makes its key and secret fail to open
/// rather than sending them there.
fn account_record(kind: &str, account: &Account) -> RecordId {
    RecordId::new(kind, account.label.as_str(), account.exchange.as_str())
        .bound_to(account.upstream.as_deref().unwrap_or(""))
}

fn open_string(master: &MasterKey, id: &RecordId, blob: &[u8]) -> Result<SecretString, Error> {
    master.open(id, blob)?.into_string().ok_or(Error::Corrupt {
        what: "sealed secret",
        reason: "not UTF-8".into(),
    })
}

/// How a client signs its requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyType {
    /// HMAC-SHA256 with a secret keygate generated.
    Hmac,
    /// Ed25519 with a private key only the bot holds.
    Ed25519,
}

impl KeyType {
    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyType::Hmac => "hmac",
            KeyType::Ed25519 => "ed25519",
        }
    }

    fn from_sql(s: &str) -> Result<KeyType, Error> {
        match s {
            "hmac" => Ok(KeyType::Hmac),
            "ed25519" => Ok(KeyType::Ed25519),
            _ => Err(Error::Corrupt {
                what: "client key type",
                reason: s.to_owned(),
            }),
        }
    }
}

/// What keygate holds to verify a client: a shared secret or a public key.
pub enum ClientKeyMaterial {
    /// The HMAC secret.
    Hmac(SecretString),
    /// The Ed25519 public key.
    Ed25519([u8; 32]),
}

impl ClientKeyMaterial {
    fn key_type(&self) -> KeyType {
        match self {
            ClientKeyMaterial::Hmac(_) => KeyType::Hmac,
            ClientKeyMaterial::Ed25519(_) => KeyType::Ed25519,
        }
    }

    /// Sealed even when it is a public key, so that a key swapped in the database by hand
    /// fails to open instead of letting its holder in.
    fn seal(&self, master: &MasterKey, api_key: &str) -> Vec<u8> {
        let id = RecordId::new("client-key", api_key, self.key_type().as_str());
        match self {
            ClientKeyMaterial::Hmac(s) => master.seal(&id, s.expose_secret().as_bytes()),
            ClientKeyMaterial::Ed25519(p) => master.seal(&id, p),
        }
    }

    fn open(
        master: &MasterKey,
        key_type: KeyType,
        api_key: &str,
        blob: &[u8],
    ) -> Result<ClientKeyMaterial, Error> {
        let id = RecordId::new("client-key", api_key, key_type.as_str());
        let bytes = master.open(&id, blob)?;
        match key_type {
            KeyType::Hmac => {
                bytes
                    .into_string()
                    .map(ClientKeyMaterial::Hmac)
                    .ok_or(Error::Corrupt {
                        what: "client secret",
                        reason: "not UTF-8".into(),
                    })
            }
            KeyType::Ed25519 => bytes
                .expose_secret()
                .try_into()
                .map(ClientKeyMaterial::Ed25519)
                .map_err(|_| Error::Corrupt {
                    what: "client public key",
                    reason: "not 32 bytes".into(),
                }),
        }
    }
}

/// A virtual key to issue.
pub struct NewClient {
    /// Its name.
    pub name: Name,
    /// The account it is bound to.
    pub account: Name,
    /// Its API key (public identifier).
    pub api_key: String,
    /// Its secret or public key.
    pub material: ClientKeyMaterial,
    /// What it may do.
    pub policy: Policy,
    /// When it expires.
    pub expires_ms: Option<u64>,
}

/// A virtual key, as stored.
#[derive(Clone)]
pub struct Client {
    /// Its name.
    pub name: Name,
    /// The account it is bound to.
    pub account: Name,
    /// Its status.
    pub status: ClientStatus,
    /// How it signs.
    pub key_type: KeyType,
    /// Its API key.
    pub api_key: String,
    /// What it may do.
    pub policy: Policy,
    /// When it was issued.
    pub created_ms: u64,
    /// When it expires.
    pub expires_ms: Option<u64>,
    /// The key it had before its last rotation, valid until `previous_until_ms`.
    pub previous_api_key: Option<String>,
    /// End of the rotation grace window.
    pub previous_until_ms: Option<u64>,
    material: Vec<u8>,
    previous_material: Option<Vec<u8>>,
    /// The policy as stored, which the tag covers byte for byte.
    policy_json: String,
    /// The master key's tag over every other column; `None` on a row an earlier build
    /// wrote and no unlock has tagged yet.
    tag: Option<Vec<u8>>,
}

impl Client {
    /// Until when the key before the last rotation works: the end of the rotation's
    /// grace, or the client's expiry if sooner (no key of a client works past it).
    pub fn previous_key_until(&self) -> Option<u64> {
        let until = self.previous_until_ms?;
        Some(self.expires_ms.map_or(until, |expires| until.min(expires)))
    }

    /// Whether the row carries a tag at all. Rows an earlier keygate wrote have none
    /// until `keygate upgrade` tags them ([`Store::tag_clients_as_shown`]).
    pub fn is_tagged(&self) -> bool {
        self.tag.is_some()
    }

    /// Checks that no column of this client (status, policy, expiry, account, keys) was
    /// changed since keygate last wrote it: a change made without the master key, in the
    /// database itself, fails here.
    pub fn verify_record(&self, master: &MasterKey) -> Result<(), Error> {
        let fields = self.tagged_fields();
        let fields: Vec<&[u8]> = fields.iter().map(Vec::as_slice).collect();
        let tag = self.tag.as_deref().unwrap_or_default();
        master
            .verify_record(&self.record_id(), &fields, tag)
            .map_err(Error::from)
    }

    /// Opens what verifies the current key, once the record is verified.
    pub fn open_material(&self, master: &MasterKey) -> Result<ClientKeyMaterial, Error> {
        self.verify_record(master)?;
        ClientKeyMaterial::open(master, self.key_type, &self.api_key, &self.material)
    }

    /// Opens what verifies the current key and, while its grace window lasts, the
    /// previous one with its API key, once the record is verified.
    pub fn open_keys(
        &self,
        master: &MasterKey,
    ) -> Result<(ClientKeyMaterial, Option<(String, ClientKeyMaterial)>), Error> {
        let current = self.open_material(master)?;
        let previous = match (&self.previous_api_key, &self.previous_material) {
            (Some(key), Some(blob)) => Some((
                key.clone(),
                ClientKeyMaterial::open(master, self.key_type, key, blob)?,
            )),
            _ => None,
        };
        Ok((current, previous))
    }

    /// Whether `other` is this very row: every column and the tag alike.
    pub fn same_row_as(&self, other: &Client) -> bool {
        self.tag == other.tag && self.tagged_fields() == other.tagged_fields()
    }

    /// The record the tag is bound to.
    fn record_id(&self) -> RecordId {
        RecordId::new("client-record", self.name.as_str(), "")
    }

    /// Every column but the tag, as the tag covers them: integers big-endian, an absent
    /// value empty and a present one after a `1`, so that none reads as another.
    fn tagged_fields(&self) -> [Vec<u8>; 12] {
        fn text(value: &str) -> Vec<u8> {
            value.as_bytes().to_vec()
        }
        fn optional(value: Option<&[u8]>) -> Vec<u8> {
            value.map_or_else(Vec::new, |v| [&[1], v].concat())
        }
        let time = |ms: Option<u64>| ms.map(u64::to_be_bytes);
        [
            text(self.name.as_str()),
            text(self.account.as_str()),
            text(self.status.as_str()),
            text(self.key_type.as_str()),
            text(&self.api_key),
            self.material.clone(),
            text(&self.policy_json),
            self.created_ms.to_be_bytes().to_vec(),
            optional(time(self.expires_ms).as_ref().map(|b| &b[..])),
            optional(self.previous_api_key.as_deref().map(str::as_bytes)),
            optional(self.previous_material.as_deref()),
            optional(time(self.previous_until_ms).as_ref().map(|b| &b[..])),
        ]
    }

    /// Sets the tag over the columns as they are now.
    fn retag(&mut self, master: &MasterKey) {
        let fields = self.tagged_fields();
        let fields: Vec<&[u8]> = fields.iter().map(Vec::as_slice).collect();
        self.tag = Some(master.tag_record(&self.record_id(), &fields));
    }

    fn from_row(row: &Row<'_>) -> rusqlite::Result<Result<Client, Error>> {
        let name: String = row.get("name")?;
        // Read as the other columns are, so that one of the wrong type names its client
        // too (found by review: it named none, and every such row read the same).
        let text = |column: &str| row.get::<_, String>(column).map_err(corrupt_row);
        let client = (|| {
            let policy = text("policy")?;
            Ok(Client {
                name: parse_name(&name)?,
                account: parse_name(&text("account")?)?,
                status: status_from_sql(&text("status")?)?,
                key_type: KeyType::from_sql(&text("key_type")?)?,
                api_key: row.get("api_key").map_err(corrupt_row)?,
                policy: serde_json::from_str(&policy).map_err(|e| Error::Corrupt {
                    what: "client policy",
                    reason: e.to_string(),
                })?,
                policy_json: policy,
                // A version-1 row has no tag column: it reads as untagged.
                tag: match row.get("tag") {
                    Err(rusqlite::Error::InvalidColumnName(_)) => None,
                    tag => tag.map_err(corrupt_row)?,
                },
                created_ms: row.get::<_, i64>("created_ms").map_err(corrupt_row)? as u64,
                expires_ms: row
                    .get::<_, Option<i64>>("expires_ms")
                    .map_err(corrupt_row)?
                    .map(|v| v as u64),
                previous_api_key: row.get("previous_api_key").map_err(corrupt_row)?,
                previous_until_ms: row
                    .get::<_, Option<i64>>("previous_until_ms")
                    .map_err(corrupt_row)?
                    .map(|v| v as u64),
                material: row.get("key_material").map_err(corrupt_row)?,
                previous_material: row.get("previous_material").map_err(corrupt_row)?,
            })
        })();
        Ok(client.map_err(|e| row_named("client", &name, e)))
    }
}

/// One audit log row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventRow {
    /// Position in the log, from 1.
    pub seq: u64,
    /// When it was written.
    pub ts_ms: u64,
    /// The event as JSON.
    pub body: String,
    /// Chain hash.
    pub hash: Vec<u8>,
    /// Keyed MAC over the hash.
    pub mac: Vec<u8>,
}

fn parse_name(s: &str) -> Result<Name, Error> {
    s.parse().map_err(|e: keygate_core::Error| Error::Corrupt {
        what: "name",
        reason: e.to_string(),
    })
}

fn status_conflict(name: &Name, now: ClientStatus, expected: ClientStatus) -> Error {
    Error::Conflict {
        kind: "client",
        name: name.to_string(),
        reason: format!("it is {}, not {}", now.as_str(), expected.as_str()),
    }
}

fn corrupt_row(e: rusqlite::Error) -> Error {
    Error::Corrupt {
        what: "row",
        reason: e.to_string(),
    }
}

/// Every column of an account row, in table order.
pub(crate) const ACCOUNT_COLUMNS: &str = "label, exchange, upstream, rotate_every_s, created_ms, rotated_ms, fingerprint, sealed_api_key, sealed_secret";

/// `e`, naming the row it is about (`client "bot1": …`), so that a listing, doctor and
/// the gateway can say which row does not read, and tell two such rows apart.
fn row_named(kind: &str, name: &str, e: Error) -> Error {
    match e {
        Error::Corrupt { what, reason } => Error::Corrupt {
            what,
            reason: format!("{kind} {name:?}: {reason}"),
        },
        other => other,
    }
}

fn account_from_row(row: &Row<'_>) -> rusqlite::Result<Result<Account, Error>> {
    let label: String = row.get(0)?;
    let account = (|| {
        Ok(Account {
            label: parse_name(&label)?,
            exchange: row
                .get::<_, String>(1)
                .map_err(corrupt_row)?
                .parse()
                .map_err(|e: keygate_core::Error| Error::Corrupt {
                    what: "account exchange",
                    reason: e.to_string(),
                })?,
            upstream: row.get(2).map_err(corrupt_row)?,
            rotate_every_s: row
                .get::<_, Option<i64>>(3)
                .map_err(corrupt_row)?
                .map(|v| v as u64),
            created_ms: row.get::<_, i64>(4).map_err(corrupt_row)? as u64,
            rotated_ms: row.get::<_, i64>(5).map_err(corrupt_row)? as u64,
            fingerprint: row.get(6).map_err(corrupt_row)?,
            sealed_api_key: row.get(7).map_err(corrupt_row)?,
            sealed_secret: row.get(8).map_err(corrupt_row)?,
        })
    })();
    // Found by review: an account row that did not read named no account.
    Ok(account.map_err(|e| row_named("account", &label, e)))
}

impl Store {
    /// Adds a real key, sealed under `master`.
    pub fn insert_account(
        &self,
        new: &NewAccount,
        master: &MasterKey,
        now_ms: u64,
    ) -> Result<(), Error> {
        let sealed = self.check_seal_is_latest(master);
        let draft = Account {
            label: new.label.clone(),
            exchange: new.exchange,
            upstream: new.upstream.clone(),
            rotate_every_s: new.rotate_every_s,
            created_ms: now_ms,
            rotated_ms: now_ms,
            fingerprint: redact(new.api_key.expose_secret()),
            sealed_api_key: Vec::new(),
            sealed_secret: Vec::new(),
        };
        let sealed_key = master.seal(
            &account_record("account-api-key", &draft),
            new.api_key.expose_secret().as_bytes(),
        );
        let sealed_secret = master.seal(
            &account_record("account-secret", &draft),
            new.secret.expose_secret().as_bytes(),
        );
        self.connection()
            .execute(
                &format!("INSERT INTO accounts ({ACCOUNT_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?5, ?6, ?7, ?8)"),
                params![
                    draft.label.as_str(),
                    draft.exchange.as_str(),
                    draft.upstream,
                    draft.rotate_every_s.map(|v| v as i64),
                    now_ms as i64,
                    draft.fingerprint,
                    sealed_key,
                    sealed_secret
                ],
            )
            .map_err(|e| {
                if is_unique_violation(&e) {
                    Error::Exists { kind: "account", name: new.label.to_string() }
                } else {
                    self.error(e)
                }
            })?;
        self.reseal(master, &sealed)
    }

    /// Every account, by label.
    pub fn accounts(&self) -> Result<Vec<Account>, Error> {
        self.account_rows()?.into_iter().collect()
    }

    /// Every account, by label, once the seal over the client and account tables holds
    /// and is the latest ([`Store::check_seal_is_latest`]): for whatever uses the real
    /// keys, so that no account put back as it was before a rotation is used.
    pub fn sealed_accounts(&self, master: &MasterKey) -> Result<Vec<Account>, Error> {
        self.consistently(|store| {
            store.check_seal_is_latest(master)?;
            store.accounts()
        })
    }

    /// The label and creation time (ms) of every account, rows that do not otherwise
    /// read included.
    pub fn account_labels(&self) -> Result<Vec<(String, u64)>, Error> {
        let mut stmt = self
            .connection()
            .prepare("SELECT label, created_ms FROM accounts ORDER BY label")
            .map_err(|e| self.error(e))?;
        let labels = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get::<_, i64>(1)?.max(0) as u64)))
            .map_err(|e| self.error(e))?;
        labels
            .collect::<rusqlite::Result<Vec<(String, u64)>>>()
            .map_err(|e| self.error(e))
    }

    /// Every account, each row read on its own: a row that does not decode is an error
    /// in its place and hides none of the others.
    pub fn account_rows(&self) -> Result<Vec<Result<Account, Error>>, Error> {
        let mut stmt = self
            .connection()
            .prepare(&format!(
                "SELECT {ACCOUNT_COLUMNS} FROM accounts ORDER BY label"
            ))
            .map_err(|e| self.error(e))?;
        let rows = stmt
            .query_map([], account_from_row)
            .map_err(|e| self.error(e))?;
        Ok(rows
            .map(|r| r.map_err(|e| self.error(e)).and_then(|row| row))
            .collect())
    }

    /// The account called `label`.
    pub fn account(&self, label: &Name) -> Result<Account, Error> {
        self.connection()
            .query_row(
                &format!("SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE label = ?1"),
                [label.as_str()],
                account_from_row,
            )
            .optional()
            .map_err(|e| self.error(e))?
            .ok_or_else(|| Error::NotFound {
                kind: "account",
                name: label.to_string(),
            })?
    }

    /// Replaces an account's credentials in one statement, once the old ones open: a
    /// row that does not open (its upstream edited, say) is refused as tampered.
    pub fn replace_account_credentials(
        &self,
        label: &Name,
        api_key: &SecretString,
        secret: &SecretString,
        master: &MasterKey,
        now_ms: u64,
    ) -> Result<(), Error> {
        let sealed = self.check_seal_is_latest(master);
        let account = self.account(label)?;
        // The new credentials are bound to the row's upstream: a row edited to point
        // elsewhere no longer opens, and must not be made to open by a rotation.
        let replaced = account.open_api_key(master)?;
        account.open_secret(master)?;
        // The same key with another secret mends a secret stored mistyped: not retired.
        let replaced = replaced.expose_secret();
        if !bool::from(
            replaced
                .as_bytes()
                .ct_eq(api_key.expose_secret().as_bytes()),
        ) {
            self.connection()
                .execute(
                    "INSERT OR REPLACE INTO retired_account_keys (key_hash, account, retired_ms) VALUES (?1, ?2, ?3)",
                    params![retired_key_hash(replaced).as_slice(), label.as_str(), now_ms as i64],
                )
                .map_err(|e| self.error(e))?;
        }
        let sealed_key = master.seal(
            &account_record("account-api-key", &account),
            api_key.expose_secret().as_bytes(),
        );
        let sealed_secret = master.seal(
            &account_record("account-secret", &account),
            secret.expose_secret().as_bytes(),
        );
        self.connection()
            .execute(
                "UPDATE accounts SET sealed_api_key = ?2, sealed_secret = ?3, fingerprint = ?4, rotated_ms = ?5 WHERE label = ?1",
                params![label.as_str(), sealed_key, sealed_secret, redact(api_key.expose_secret()), now_ms as i64],
            )
            .map_err(|e| self.error(e))?;
        self.reseal(master, &sealed)
    }

    /// Sets how often the real key of account `label` should be rotated (`None`: no
    /// period), which `account list` and `keygate doctor` count from its last rotation.
    pub fn set_account_rotation(
        &self,
        label: &Name,
        rotate_every_s: Option<u64>,
        master: &MasterKey,
    ) -> Result<(), Error> {
        let sealed = self.check_seal_is_latest(master);
        self.account(label)?;
        self.connection()
            .execute(
                "UPDATE accounts SET rotate_every_s = ?2 WHERE label = ?1",
                params![label.as_str(), rotate_every_s.map(|v| v as i64)],
            )
            .map_err(|e| self.error(e))?;
        self.reseal(master, &sealed)
    }

    /// Deletes every client row that does not read as a client (a column of the wrong
    /// type, a status or policy that does not decode), and returns what each was named,
    /// as far as that reads. Such a row cannot be revoked, and a seal made over it would
    /// vouch for whatever is written into it later: `keygate upgrade` deletes them before
    /// it seals the tables.
    pub fn delete_unreadable_clients(&self) -> Result<Vec<String>, Error> {
        let rowids: Vec<i64> = {
            let mut stmt = self
                .connection()
                .prepare("SELECT rowid FROM clients ORDER BY rowid")
                .map_err(|e| self.error(e))?;
            let rows = stmt
                .query_map([], |r| r.get(0))
                .map_err(|e| self.error(e))?;
            rows.collect::<rusqlite::Result<_>>()
                .map_err(|e| self.error(e))?
        };
        let mut deleted = Vec::new();
        for rowid in rowids {
            let (reads, name) = self
                .connection()
                .query_row(
                    "SELECT *, CAST(name AS TEXT) AS shown_name FROM clients WHERE rowid = ?1",
                    [rowid],
                    |row| {
                        let reads = matches!(Client::from_row(row), Ok(Ok(_)));
                        let name: Option<String> = row.get("shown_name").ok().flatten();
                        Ok((reads, name))
                    },
                )
                .map_err(|e| self.error(e))?;
            if !reads {
                self.connection()
                    .execute("DELETE FROM clients WHERE rowid = ?1", [rowid])
                    .map_err(|e| self.error(e))?;
                deleted.push(name.unwrap_or_default());
            }
        }
        Ok(deleted)
    }

    /// Deletes an account and the client rows named in `unreadable` (rows bound to it
    /// that do not read, so cannot be revoked). Its other clients stay, so that their
    /// keys are refused as revoked and `client list` still shows them: a client bound to
    /// it that is not revoked is a conflict, since the caller revokes those first.
    pub fn delete_account(
        &self,
        label: &Name,
        unreadable: &[&str],
        master: &MasterKey,
    ) -> Result<(), Error> {
        let sealed = self.check_seal_is_latest(master);
        for name in unreadable {
            let n = self
                .connection()
                .execute(
                    "DELETE FROM clients WHERE name = ?1 AND account = ?2",
                    params![name, label.as_str()],
                )
                .map_err(|e| self.error(e))?;
            if n != 1 {
                return Err(Error::Conflict {
                    kind: "client",
                    name: (*name).to_owned(),
                    reason: "it is no longer bound to the account".into(),
                });
            }
        }
        let live: Option<String> = self
            .connection()
            .query_row(
                "SELECT name FROM clients WHERE account = ?1 AND status != ?2 LIMIT 1",
                params![label.as_str(), ClientStatus::Revoked.as_str()],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.error(e))?;
        // A row that says revoked without its tag vouching for it is not revoked: put
        // back as it was, it would be an active client of whatever account comes next
        // under this label (found by review).
        let said_revoked = self
            .client_rows()?
            .into_iter()
            .flatten()
            .find(|c| c.account == *label && c.verify_record(master).is_err())
            .map(|c| c.name.to_string());
        if let Some(name) = live.or(said_revoked) {
            return Err(Error::Conflict {
                kind: "account",
                name: label.to_string(),
                reason: format!("client {name} is bound to it and not revoked"),
            });
        }
        let n = self
            .connection()
            .execute("DELETE FROM accounts WHERE label = ?1", [label.as_str()])
            .map_err(|e| self.error(e))?;
        if n == 0 {
            return Err(Error::NotFound {
                kind: "account",
                name: label.to_string(),
            });
        }
        self.reseal(master, &sealed)
    }

    /// Issues a virtual key.
    pub fn insert_client(
        &self,
        new: &NewClient,
        master: &MasterKey,
        now_ms: u64,
    ) -> Result<(), Error> {
        self.account(&new.account)?;
        self.refuse_shared_public_key(&new.name, &new.material, master)?;
        let sealed = self.check_seal_is_latest(master);
        let policy_json = serde_json::to_string(&new.policy).map_err(|e| Error::Corrupt {
            what: "client policy",
            reason: e.to_string(),
        })?;
        let mut client = Client {
            name: new.name.clone(),
            account: new.account.clone(),
            status: ClientStatus::Active,
            key_type: new.material.key_type(),
            api_key: new.api_key.clone(),
            policy: new.policy.clone(),
            created_ms: now_ms,
            expires_ms: new.expires_ms,
            previous_api_key: None,
            previous_until_ms: None,
            material: new.material.seal(master, &new.api_key),
            previous_material: None,
            policy_json,
            tag: None,
        };
        client.retag(master);
        self.connection()
            .execute(
                "INSERT INTO clients (name, account, status, key_type, api_key, key_material, policy, created_ms, expires_ms, tag) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                params![
                    client.name.as_str(),
                    client.account.as_str(),
                    client.status.as_str(),
                    client.key_type.as_str(),
                    client.api_key,
                    client.material,
                    client.policy_json,
                    client.created_ms as i64,
                    client.expires_ms.map(|v| v as i64),
                    client.tag,
                ],
            )
            .map_err(|e| {
                if is_unique_violation(&e) {
                    Error::Exists { kind: "client", name: new.name.to_string() }
                } else {
                    self.error(e)
                }
            })?;
        self.reseal(master, &sealed)
    }

    /// Every client, by name, each row read on its own: a row that does not decode is an
    /// error in its place and hides none of the others.
    pub fn client_rows(&self) -> Result<Vec<Result<Client, Error>>, Error> {
        let mut stmt = self
            .connection()
            .prepare("SELECT * FROM clients ORDER BY name")
            .map_err(|e| self.error(e))?;
        let rows = stmt
            .query_map([], Client::from_row)
            .map_err(|e| self.error(e))?;
        Ok(rows
            .map(|r| r.map_err(|e| self.error(e)).and_then(|row| row))
            .collect())
    }

    /// The names of the clients bound to `account`, as stored, whether or not their rows
    /// decode.
    pub fn client_names_bound_to(&self, account: &Name) -> Result<Vec<String>, Error> {
        let mut stmt = self
            .connection()
            .prepare("SELECT name FROM clients WHERE account = ?1 ORDER BY name")
            .map_err(|e| self.error(e))?;
        let names = stmt
            .query_map([account.as_str()], |r| r.get(0))
            .map_err(|e| self.error(e))?;
        names
            .collect::<rusqlite::Result<Vec<String>>>()
            .map_err(|e| self.error(e))
    }

    /// The client called `name`.
    pub fn client(&self, name: &Name) -> Result<Client, Error> {
        self.connection()
            .query_row(
                "SELECT * FROM clients WHERE name = ?1",
                [name.as_str()],
                Client::from_row,
            )
            .optional()
            .map_err(|e| self.error(e))?
            .ok_or_else(|| Error::NotFound {
                kind: "client",
                name: name.to_string(),
            })?
    }

    /// Sets a client's status from `from` to `to`. The change applies only to the row as
    /// it was read and verified here: a client whose status is no longer `from` (revoked
    /// meanwhile by another command), or that changed in any other way, is not changed,
    /// and that is an error. Revocation is final: a revoked client stays revoked.
    ///
    /// A record that fails verification can only be revoked. The row is then tagged as it
    /// reads, revoked: whatever else someone wrote into it, a revoked client is refused,
    /// and no tag made before covers it, so it cannot be brought back by undoing the edit.
    /// Freezing or unfreezing it would mean tagging what someone else wrote, for use.
    pub fn set_client_status(
        &self,
        name: &Name,
        from: ClientStatus,
        to: ClientStatus,
        master: &MasterKey,
    ) -> Result<(), Error> {
        let mut client = self.client(name)?;
        if client.status != from {
            return Err(status_conflict(name, client.status, from));
        }
        match client.verify_record(master) {
            Ok(()) if client.status == ClientStatus::Revoked => {
                return Err(Error::Conflict {
                    kind: "client",
                    name: name.to_string(),
                    reason: "it is revoked, and revocation is final".into(),
                });
            }
            Ok(()) => {}
            Err(_) if to == ClientStatus::Revoked => {
                // Its previous key may be another client's, copied in: the tag must not
                // vouch for that.
                client.previous_api_key = None;
                client.previous_material = None;
                client.previous_until_ms = None;
            }
            Err(e) => return Err(e),
        }
        client.status = to;
        self.rewrite_client(&mut client, master)
    }

    /// Gives a client a new key; the old one stays valid until `grace_until_ms`.
    pub fn rotate_client(
        &self,
        name: &Name,
        api_key: &str,
        material: &ClientKeyMaterial,
        master: &MasterKey,
        grace_until_ms: u64,
    ) -> Result<(), Error> {
        let mut client = self.client_to_rotate(name, material, master)?;
        let retired = client
            .previous_api_key
            .replace(std::mem::replace(&mut client.api_key, api_key.into()));
        client.previous_material = Some(std::mem::replace(
            &mut client.material,
            material.seal(master, api_key),
        ));
        client.previous_until_ms = Some(grace_until_ms);
        self.rewrite_client(&mut client, master)?;
        match retired {
            Some(retired) => self.retire_key(&retired, name),
            None => Ok(()),
        }
    }

    /// Gives a client a new key in place of its current one, which is retired at once, and
    /// leaves the key before the last rotation and its grace period as they are: for a
    /// rotation whose new credentials were never shown (the command was killed, or its
    /// output lost), so that no bot signs with its key, while bots go on with the old one.
    pub fn replace_client_key(
        &self,
        name: &Name,
        api_key: &str,
        material: &ClientKeyMaterial,
        master: &MasterKey,
    ) -> Result<(), Error> {
        let mut client = self.client_to_rotate(name, material, master)?;
        let retired = std::mem::replace(&mut client.api_key, api_key.into());
        client.material = material.seal(master, api_key);
        self.rewrite_client(&mut client, master)?;
        self.retire_key(&retired, name)
    }

    /// Client `name`'s verified record, to be given `material`: refused when it signs
    /// with another key type, or when another client holds the public key.
    fn client_to_rotate(
        &self,
        name: &Name,
        material: &ClientKeyMaterial,
        master: &MasterKey,
    ) -> Result<Client, Error> {
        let client = self.client(name)?;
        client.verify_record(master)?;
        if material.key_type() != client.key_type {
            return Err(Error::Conflict {
                kind: "client",
                name: name.to_string(),
                reason: format!(
                    "it signs with {}; a rotation keeps that",
                    client.key_type.as_str()
                ),
            });
        }
        self.refuse_shared_public_key(name, material, master)?;
        Ok(client)
    }

    /// Refuses `material` for client `name` when it is an Ed25519 public key that another
    /// client holds, as its current key or its previous one, whatever that client's
    /// status (a revoked client's key may be the leaked one). A row that does not read or
    /// whose key does not open is passed over: no gateway accepts its key.
    fn refuse_shared_public_key(
        &self,
        name: &Name,
        material: &ClientKeyMaterial,
        master: &MasterKey,
    ) -> Result<(), Error> {
        let ClientKeyMaterial::Ed25519(given) = material else {
            return Ok(());
        };
        let holds = |api_key: &str, sealed: &[u8]| {
            matches!(
                ClientKeyMaterial::open(master, KeyType::Ed25519, api_key, sealed),
                Ok(ClientKeyMaterial::Ed25519(held)) if held == *given
            )
        };
        for client in self.client_rows()?.into_iter().flatten() {
            if client.name == *name || client.key_type != KeyType::Ed25519 {
                continue;
            }
            let previous = client
                .previous_api_key
                .as_deref()
                .zip(client.previous_material.as_deref());
            if holds(&client.api_key, &client.material)
                || previous.is_some_and(|(key, sealed)| holds(key, sealed))
            {
                return Err(Error::PublicKeyShared {
                    name: name.to_string(),
                    holder: client.name.to_string(),
                });
            }
        }
        Ok(())
    }

    /// Remembers that `api_key`, a key of client `name`, is out of use for good.
    fn retire_key(&self, api_key: &str, name: &Name) -> Result<(), Error> {
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        self.connection()
            .execute(
                "INSERT OR REPLACE INTO retired_keys (key_hash, client, retired_ms) VALUES (?1, ?2, ?3)",
                params![retired_key_hash(api_key).as_slice(), name.as_str(), now_ms],
            )
            .map_err(|e| self.error(e))?;
        Ok(())
    }

    /// Every retired client key: its hash ([`retired_key_hash`]) and its client's name.
    /// A row whose hash or name does not read is left out: it names no key anyone holds.
    pub fn retired_keys(&self) -> Result<Vec<([u8; 32], Name)>, Error> {
        let mut stmt = self
            .connection()
            .prepare("SELECT key_hash, client FROM retired_keys")
            .map_err(|e| self.error(e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, String>(1)?))
            })
            .map_err(|e| self.error(e))?;
        let mut keys = Vec::new();
        for row in rows {
            let (hash, name) = row.map_err(|e| self.error(e))?;
            if let (Ok(hash), Ok(name)) = (<[u8; 32]>::try_from(hash), name.parse()) {
                keys.push((hash, name));
            }
        }
        Ok(keys)
    }

    /// The account whose real key `api_key` was until a rotation replaced it, and when
    /// (Unix milliseconds); `None` for a key no rotation replaced.
    pub fn replaced_account_key(&self, api_key: &str) -> Result<Option<(String, u64)>, Error> {
        self.connection()
            .query_row(
                "SELECT account, retired_ms FROM retired_account_keys WHERE key_hash = ?1",
                [retired_key_hash(api_key).as_slice()],
                |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)),
            )
            .optional()
            .map(|found| found.map(|(account, at)| (account, u64::try_from(at).unwrap_or(0))))
            .map_err(|e| self.error(e))
    }

    /// Replaces a client's policy. A revoked client keeps the policy it had; a client
    /// whose row fails its tag is not touched.
    pub fn set_client_policy(
        &self,
        name: &Name,
        policy: &Policy,
        master: &MasterKey,
    ) -> Result<(), Error> {
        let mut client = self.client_to_change(name, master)?;
        client.policy_json = serde_json::to_string(policy).map_err(|e| Error::Corrupt {
            what: "client policy",
            reason: e.to_string(),
        })?;
        client.policy = policy.clone();
        self.rewrite_client(&mut client, master)
    }

    /// Sets when a client expires: its key works until `expires_ms` (milliseconds since the
    /// Unix epoch), an expired one again if that is later than now.
    pub fn set_client_expiry(
        &self,
        name: &Name,
        expires_ms: u64,
        master: &MasterKey,
    ) -> Result<(), Error> {
        let mut client = self.client_to_change(name, master)?;
        client.expires_ms = Some(expires_ms);
        self.rewrite_client(&mut client, master)
    }

    /// The client `name`, to change: its row verified, and not revoked.
    fn client_to_change(&self, name: &Name, master: &MasterKey) -> Result<Client, Error> {
        let client = self.client(name)?;
        client.verify_record(master)?;
        if client.status == ClientStatus::Revoked {
            return Err(Error::Conflict {
                kind: "client",
                name: name.to_string(),
                reason: "it is revoked, and revocation is final".into(),
            });
        }
        Ok(client)
    }

    /// Writes `client`'s changed columns with a new tag, over the row as it was read: the
    /// old tag covers every column, so a row another command changed meanwhile does not
    /// match and is left alone.
    fn rewrite_client(&self, client: &mut Client, master: &MasterKey) -> Result<(), Error> {
        let sealed = self.check_seal_is_latest(master);
        let read_tag = client.tag.take();
        client.retag(master);
        let n = self
            .connection()
            .execute(
                "UPDATE clients SET status = ?2, api_key = ?3, key_material = ?4, previous_api_key = ?5, previous_material = ?6, previous_until_ms = ?7, tag = ?8, policy = ?10, expires_ms = ?11 WHERE name = ?1 AND tag IS ?9",
                params![
                    client.name.as_str(),
                    client.status.as_str(),
                    client.api_key,
                    client.material,
                    client.previous_api_key,
                    client.previous_material,
                    client.previous_until_ms.map(|v| v as i64),
                    client.tag,
                    read_tag,
                    client.policy_json,
                    client.expires_ms.map(|v| v as i64),
                ],
            )
            .map_err(|e| {
                if is_unique_violation(&e) {
                    Error::Exists { kind: "client API key", name: client.name.to_string() }
                } else {
                    self.error(e)
                }
            })?;
        if n == 0 {
            return Err(Error::Conflict {
                kind: "client",
                name: client.name.to_string(),
                reason: "another command changed it first".into(),
            });
        }
        self.reseal(master, &sealed)
    }

    /// Tags the untagged clients in `shown`, provided each row is still exactly as shown,
    /// and returns their names. Whoever calls this vouches for those rows: `keygate
    /// upgrade` shows every column first and asks, and only for a vault whose check value
    /// says it predates tags ([`keygate_vault::VaultFormat::Untagged`]), rewriting it in
    /// the same transaction. A row that changed since it was shown, or appeared since,
    /// is not tagged: the first is an error, the second stays untagged, so refused.
    pub fn tag_clients_as_shown(
        &self,
        shown: &[Client],
        master: &MasterKey,
    ) -> Result<Vec<Name>, Error> {
        let sealed = self.check_seal_is_latest(master);
        let mut tagged = Vec::new();
        for seen in shown.iter().filter(|c| c.tag.is_none()) {
            let mut now = self.client(&seen.name)?;
            if now.tag.is_some() || now.tagged_fields() != seen.tagged_fields() {
                return Err(Error::Conflict {
                    kind: "client",
                    name: seen.name.to_string(),
                    reason: "it changed after it was shown".into(),
                });
            }
            now.retag(master);
            self.connection()
                .execute(
                    "UPDATE clients SET tag = ?2 WHERE name = ?1 AND tag IS NULL",
                    params![now.name.as_str(), now.tag],
                )
                .map_err(|e| self.error(e))?;
            tagged.push(now.name);
        }
        self.reseal(master, &sealed)?;
        Ok(tagged)
    }

    /// Appends audit rows in one immediate transaction. `build` receives the last row
    /// already in the log (read inside the transaction, so that several processes can
    /// append to one chain) and returns the rows to add after it. The head recorded with
    /// them is the last row's seq and hash, with `head_mac` of that row as its MAC.
    ///
    /// The last row must be the recorded head, its MAC made by `head_mac`, or nothing is
    /// appended ([`Error::LogDiverged`]): chained after a log cut short, new rows would
    /// leave no trace of the cut.
    ///
    /// `continues`, when given, is the seq and hash of the last event this caller wrote:
    /// the log must still hold it as written, or nothing is appended
    /// ([`Error::LogCutShort`]). Other processes' events after it are no matter.
    pub fn append_events<T>(
        &self,
        continues: Option<(u64, &[u8])>,
        build: impl FnOnce(Option<&EventRow>) -> (Vec<EventRow>, T),
        head_mac: impl Fn(&EventRow) -> Vec<u8>,
    ) -> Result<T, Error> {
        let conn = self.connection();
        self.begin_immediate(crate::AUDIT_LOCK_PATIENCE)?;
        let result = self
            .holds_event(continues)
            .and_then(|()| self.append_events_within(build, head_mac))
            .and_then(|value| {
                conn.execute_batch("COMMIT").map_err(|e| self.error(e))?;
                Ok(value)
            });
        if result.is_err() {
            // Abandoned either way; the caller hears the first error.
            let _ = conn.execute_batch("ROLLBACK");
        }
        result
    }

    /// [`Store::append_events`] inside a write transaction the caller holds (see
    /// [`Store::transaction`]), so that the rows commit, or not, with the caller's other
    /// changes.
    pub fn append_events_within<T>(
        &self,
        build: impl FnOnce(Option<&EventRow>) -> (Vec<EventRow>, T),
        head_mac: impl Fn(&EventRow) -> Vec<u8>,
    ) -> Result<T, Error> {
        let last = self.last_event()?;
        let head = self.audit_head()?;
        let ends_at_head = match (&last, &head) {
            (None, None) => true,
            (Some(last), Some(head)) => {
                last.seq == head.seq
                    && last.hash == head.hash
                    && bool::from(head_mac(last).ct_eq(&head.mac))
            }
            _ => false,
        };
        if !ends_at_head {
            return Err(Error::LogDiverged {
                last: last.map(|r| r.seq),
                head: head.map(|h| h.seq),
            });
        }
        let (rows, value) = build(last.as_ref());
        let mut stmt = self
            .connection()
            .prepare_cached(
                "INSERT INTO events (seq, ts_ms, body, hash, mac) VALUES (?1, ?2, ?3, ?4, ?5)",
            )
            .map_err(|e| self.error(e))?;
        for r in &rows {
            let written = stmt
                .execute(params![r.seq as i64, r.ts_ms as i64, r.body, r.hash, r.mac])
                .map_err(|e| self.error(e))?;
            // One row or an error: anything else means the database is not as keygate
            // made it, and an event that was not written must not count as audited.
            if written != 1 {
                return Err(Error::Corrupt {
                    what: "audit log",
                    reason: format!("writing event {} changed {written} rows", r.seq),
                });
            }
        }
        if let Some(last) = rows.last() {
            self.set_meta(
                "audit_head",
                &encode_head(last.seq, &last.hash, &head_mac(last)),
            )?;
        }
        Ok(value)
    }

    /// Fails with [`Error::LogCutShort`] unless the log holds event `seq` with `hash`
    /// (`written`), or nothing is asked.
    fn holds_event(&self, written: Option<(u64, &[u8])>) -> Result<(), Error> {
        let Some((seq, hash)) = written else {
            return Ok(());
        };
        let stored: Option<Vec<u8>> = self
            .connection()
            .query_row(
                "SELECT hash FROM events WHERE seq = ?1",
                params![seq as i64],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.error(e))?;
        match stored {
            Some(stored) if stored == hash => Ok(()),
            _ => Err(Error::LogCutShort { seq }),
        }
    }

    /// The head recorded with the last append: (seq, hash, mac) of the last row written.
    /// A log whose last row differs was truncated or extended behind keygate's back.
    pub fn audit_head(&self) -> Result<Option<EventRow>, Error> {
        let Some(raw) = self.meta("audit_head")? else {
            return Ok(None);
        };
        if raw.len() != 8 + 32 + 32 {
            return Err(Error::Corrupt {
                what: "audit head",
                reason: format!("{} bytes", raw.len()),
            });
        }
        let seq = u64::from_be_bytes(raw[..8].try_into().map_err(|_| Error::Corrupt {
            what: "audit head",
            reason: "seq".into(),
        })?);
        Ok(Some(EventRow {
            seq,
            ts_ms: 0,
            body: String::new(),
            hash: raw[8..40].to_vec(),
            mac: raw[40..].to_vec(),
        }))
    }

    /// Audit rows with `seq >= from`, in order, at most `limit`.
    pub fn events(&self, from: u64, limit: u64) -> Result<Vec<EventRow>, Error> {
        let mut stmt = self
            .connection()
            .prepare_cached("SELECT seq, ts_ms, body, hash, mac FROM events WHERE seq >= ?1 ORDER BY seq LIMIT ?2")
            .map_err(|e| self.error(e))?;
        let rows = stmt
            .query_map(params![from as i64, limit as i64], |r| {
                let seq = r.get::<_, i64>(0)? as u64;
                // A column of another type (a body stored as a blob, say) is the row's
                // fault, named by its seq, not the database's.
                let row = (|| {
                    Ok::<_, rusqlite::Error>(EventRow {
                        seq,
                        ts_ms: r.get::<_, i64>(1)? as u64,
                        body: r.get(2)?,
                        hash: r.get(3)?,
                        mac: r.get(4)?,
                    })
                })();
                Ok(row.map_err(|e| Error::StoredEvent {
                    seq,
                    reason: e.to_string(),
                }))
            })
            .map_err(|e| self.error(e))?;
        let mut events = Vec::new();
        for row in rows {
            events.push(row.map_err(|e| self.error(e))??);
        }
        Ok(events)
    }

    /// Removes the audit rows up to `seq` and keeps `mark` (what says, MACed, where the
    /// log now begins: see `keygate_audit::archive`) as the meta value `key`, inside the
    /// caller's write transaction ([`Store::transaction`]). Returns how many rows went.
    pub fn remove_events_through(&self, seq: u64, key: &str, mark: &[u8]) -> Result<u64, Error> {
        let removed = self
            .connection()
            .execute("DELETE FROM events WHERE seq <= ?1", params![seq as i64])
            .map_err(|e| self.error(e))?;
        self.set_meta(key, mark)?;
        Ok(removed as u64)
    }

    /// The last audit row, if any.
    pub fn last_event(&self) -> Result<Option<EventRow>, Error> {
        self.connection()
            .query_row(
                "SELECT seq, ts_ms, body, hash, mac FROM events ORDER BY seq DESC LIMIT 1",
                [],
                |r| {
                    Ok(EventRow {
                        seq: r.get::<_, i64>(0)? as u64,
                        ts_ms: r.get::<_, i64>(1)? as u64,
                        body: r.get(2)?,
                        hash: r.get(3)?,
                        mac: r.get(4)?,
                    })
                },
            )
            .optional()
            .map_err(|e| self.error(e))
    }
}

fn encode_head(seq: u64, hash: &[u8], mac: &[u8]) -> Vec<u8> {
    let mut head = seq.to_be_bytes().to_vec();
    head.extend_from_slice(hash);
    head.extend_from_slice(mac);
    head
}
