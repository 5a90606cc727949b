//! The seal over the client and account tables: one tag over every row of both, so that
//! a row put back as it was earlier (a client before its revocation, an account's key
//! before its rotation) is caught although a client row's own tag still verifies and an
//! account's sealed key still opens.
//!
//! A client row's tag ([`Client::verify_record`](crate::Client::verify_record)) proves
//! that keygate wrote the row, not that it is the row keygate wrote *last*; an account's
//! sealed credentials prove the same of its key and secret. The seal covers the name and
//! tag of every client row, in name order, every column of every account row, in label
//! order, and the seq of the audit event that was the last one in the log when it was
//! made. So:
//!
//! - a row put back, added or removed behind keygate's back no longer matches the seal,
//!   and the gateway refuses every client until `keygate upgrade` has shown them to the
//!   operator and sealed them again ([`Store::check_seal`]);
//! - both tables put back with their seal (from a backup) match, but the seal names an
//!   audit event older than the last administrative event in the log: the gateway refuses
//!   every client ([`Store::check_seal_is_latest`]) and `keygate audit verify` reports
//!   it. The log itself is anchored by checkpoints.
//!
//! Every write to either table keeps the seal, but only a seal that held before the write
//! ([`Store::reseal`]): a write never vouches for rows someone else put back.
//!
//! Since version 5 the seal also covers the hash of the audit event it names, as stored:
//! a log cut back behind that event and grown again by later appends has another event at
//! its seq, and the seal no longer holds.
//!
//! The seal also covers the file the vault's audit checkpoints are kept in, when one is
//! recorded ([`Store::checkpoint_file`]): the setting in `config.toml` sits beside the
//! database, and whoever can put the database back from an older copy can take the setting
//! out too, leaving nothing to check the log against. Recorded, it can be neither taken
//! out nor changed without the master key: the tables then no longer hold their seal. A
//! keygate from before this cannot tell the recorded file from a tampered row, and
//! refuses the tables: the safe way round.
//!
//! Schema version 3 sealed the client table alone (the meta key `clients_seal`), version 4
//! both tables bound to a seq alone. On such a database that seal is the one checked, so
//! that the audited change bringing it to this version reseals the tables if, and only
//! if, the earlier seal held.

use rusqlite::types::ValueRef;
use rusqlite::OptionalExtension;

use keygate_vault::{MasterKey, RecordId};

use crate::records::ACCOUNT_COLUMNS;
use crate::{Error, Store};

/// The first schema version whose seal covers the account table too.
const SEALS_ACCOUNTS_SINCE: i64 = 4;
/// The first schema version whose seal covers the hash of the event it names.
const SEALS_EVENT_SINCE: i64 = 5;

/// What a seal covers, and where it is kept: by schema version.
#[derive(Clone, Copy, PartialEq)]
enum Coverage {
    /// Version 3: the client table alone.
    Clients,
    /// Version 4: the client and account tables.
    ClientsAndAccounts,
    /// Since version 5: the client and account tables, and the event the seal names.
    TablesAndEvent,
}

impl Coverage {
    /// The seal a database of `schema_version` keeps.
    fn of(schema_version: i64) -> Coverage {
        if schema_version < SEALS_ACCOUNTS_SINCE {
            Coverage::Clients
        } else if schema_version < SEALS_EVENT_SINCE {
            Coverage::ClientsAndAccounts
        } else {
            Coverage::TablesAndEvent
        }
    }

    /// The meta key holding the seal: the audit seq it was made at (8 bytes, big-endian)
    /// followed by the tag. Versions 4 and 5 keep theirs under one key: their record ids
    /// differ, so a version-4 seal left on a version-5 database does not hold.
    fn meta_key(self) -> &'static str {
        match self {
            Coverage::Clients => "clients_seal",
            Coverage::ClientsAndAccounts | Coverage::TablesAndEvent => "tables_seal",
        }
    }

    /// The record the tag is bound to: one seal never verifies as another.
    fn record_id(self) -> RecordId {
        match self {
            Coverage::Clients => RecordId::new("client-table-seal", "", ""),
            Coverage::ClientsAndAccounts => RecordId::new("table-seal", "clients,accounts", ""),
            Coverage::TablesAndEvent => RecordId::new("table-seal", "clients,accounts,event", ""),
        }
    }
}

/// The meta key of the checkpoint file the vault records ([`Store::checkpoint_file`]).
const CHECKPOINT_FILE: &str = "checkpoint_file";

/// Why the tables do not hold.
const UNSEALED: &str = "are not sealed (they were made by an earlier keygate, or their seal was \
     removed)";
const BROKEN: &str = "do not match their seal: a client or account row was put back as it was \
     earlier, added or removed without the master key, or the audit event the seal names \
     was replaced (the log cut back behind it and grown again)";
const CUT_SHORT: &str = "were sealed at an audit event that the log no longer holds: events were \
     cut off the log's end";
const STALE: &str = "were put back, seal and all, as they were before a later administrative \
     change in the audit log";

impl Store {
    /// Checks that the client and account tables are exactly as keygate last sealed them,
    /// and returns the audit seq the seal was made at. Empty tables with no seal hold (a
    /// new vault).
    pub fn check_seal(&self, master: &MasterKey) -> Result<u64, Error> {
        // Seal, schema version, event and rows read apart would see a change made between
        // them half: a false "does not match its seal".
        self.consistently(|store| store.check_seal_now(master))
    }

    fn check_seal_now(&self, master: &MasterKey) -> Result<u64, Error> {
        let coverage = Coverage::of(self.schema_version()?);
        let Some(seal) = self.meta(coverage.meta_key())? else {
            return if self.row_count(coverage)? == 0 {
                Ok(0)
            } else {
                Err(Error::Unsealed { reason: UNSEALED })
            };
        };
        let broken = Error::Unsealed { reason: BROKEN };
        let (seq, tag) = match seal.split_first_chunk::<8>() {
            Some((seq, tag)) => (u64::from_be_bytes(*seq), tag),
            None => return Err(broken),
        };
        // Events are only ever added: a log that ends before the seal's event was cut
        // short (said first, as the likelier story than a forged seal).
        if seq > self.last_seq()? {
            return Err(Error::Unsealed { reason: CUT_SHORT });
        }
        let fields = self.sealed_fields(coverage, seq)?;
        let fields: Vec<&[u8]> = fields.iter().map(Vec::as_slice).collect();
        master
            .verify_record(&coverage.record_id(), &fields, tag)
            .map_err(|_| broken)?;
        Ok(seq)
    }

    /// The seq of the log's last event, or 0.
    fn last_seq(&self) -> Result<u64, Error> {
        self.connection()
            .query_row("SELECT coalesce(max(seq), 0) FROM events", [], |r| {
                r.get::<_, i64>(0)
            })
            .map(|seq| seq as u64)
            .map_err(|e| self.error(e))
    }

    /// [`Store::check_seal`], and also that no administrative event in the log came after
    /// the seal: else the tables were put back, seal and all, from an earlier copy. Reads
    /// only the events after the seal's (few, but for the first load after a long run of
    /// requests: about 0.7 s per million events, measured), looking for the
    /// `"type":"admin"` that `keygate-audit` writes into an administrative event's body;
    /// a row that only claims it (an attacker can write rows, not their MACs) makes this
    /// fail, never pass. With [`Store::verify_admin_changes_with`], it asks that check
    /// instead, which reads only events that verify, and only those after the last point
    /// a running gateway found free of administrative changes
    /// (`keygate_audit::mark_admin_free`).
    pub fn check_seal_is_latest(&self, master: &MasterKey) -> Result<u64, Error> {
        self.consistently(|store| store.check_seal_is_latest_now(master))
    }

    fn check_seal_is_latest_now(&self, master: &MasterKey) -> Result<u64, Error> {
        let sealed = self.check_seal_now(master)?;
        let later_admin = match &self.admin_change_after {
            Some(verified) => verified(self, sealed)?,
            None => self
                .connection()
                .query_row(
                    r#"SELECT EXISTS (SELECT 1 FROM events WHERE seq > ?1 AND body LIKE '%"type":"admin"%')"#,
                    [sealed as i64],
                    |r| r.get(0),
                )
                .map_err(|e| self.error(e))?,
        };
        if later_admin {
            return Err(Error::Unsealed { reason: STALE });
        }
        Ok(sealed)
    }

    /// Seals the tables again after a write, bound to the last audit event, if their seal
    /// held before the write: `before` is what [`Store::check_seal_is_latest`] said then.
    /// A seal that did not hold, or held but was older than an administrative event (the
    /// tables put back, seal and all), stays as it was, whatever the write: only `keygate
    /// upgrade`, after showing the rows, seals such tables again.
    pub fn reseal(&self, master: &MasterKey, before: &Result<u64, Error>) -> Result<(), Error> {
        match before {
            Ok(_) => self.seal_as_they_are(master),
            Err(_) => Ok(()),
        }
    }

    /// Seals the tables as they are now, whatever they held before, with the seal this
    /// database's schema version keeps (a version-3 seal is dropped once a version-4 one
    /// is made). Whoever calls this vouches for every row: `keygate upgrade` shows them
    /// to the operator first.
    pub fn seal_as_they_are(&self, master: &MasterKey) -> Result<(), Error> {
        let coverage = Coverage::of(self.schema_version()?);
        let seq = self.last_seq()?;
        let fields = self.sealed_fields(coverage, seq)?;
        let fields: Vec<&[u8]> = fields.iter().map(Vec::as_slice).collect();
        let tag = master.tag_record(&coverage.record_id(), &fields);
        self.set_meta(
            coverage.meta_key(),
            &[&seq.to_be_bytes()[..], &tag].concat(),
        )?;
        if coverage != Coverage::Clients {
            self.delete_meta(Coverage::Clients.meta_key())?;
        }
        Ok(())
    }

    /// The file the vault's audit checkpoints are kept in, as the last administrative
    /// change that named one recorded it (`[audit] checkpoint_file`), if one did. It is
    /// sealed with the tables: a value put here, changed or taken out without the master
    /// key breaks their seal.
    pub fn checkpoint_file(&self) -> Result<Option<String>, Error> {
        self.meta(CHECKPOINT_FILE)?
            .map(|bytes| {
                String::from_utf8(bytes).map_err(|_| Error::Corrupt {
                    what: "checkpoint file",
                    reason: "not UTF-8".into(),
                })
            })
            .transpose()
    }

    /// Records `path` as the file the vault's checkpoints are kept in, or that none is
    /// (`None`). Only inside the transaction of an audited change that tells of it, which
    /// then seals the tables again ([`Store::reseal`]).
    pub fn set_checkpoint_file(&self, path: Option<&str>) -> Result<(), Error> {
        match path {
            Some(path) => self.set_meta(CHECKPOINT_FILE, path.as_bytes()),
            None => self.delete_meta(CHECKPOINT_FILE),
        }
    }

    /// How many rows the seal covers (a recorded checkpoint file counts as one).
    fn row_count(&self, coverage: Coverage) -> Result<u64, Error> {
        let sql = match coverage {
            Coverage::Clients => "SELECT count(*) FROM clients",
            Coverage::ClientsAndAccounts => {
                "SELECT (SELECT count(*) FROM clients) + (SELECT count(*) FROM accounts)"
            }
            Coverage::TablesAndEvent => {
                "SELECT (SELECT count(*) FROM clients) + (SELECT count(*) FROM accounts) \
                 + (SELECT count(*) FROM meta WHERE key = 'checkpoint_file')"
            }
        };
        self.connection()
            .query_row(sql, [], |r| r.get::<_, i64>(0))
            .map(|n| n as u64)
            .map_err(|e| self.error(e))
    }

    /// The seq; since version 5, the hash of the event at it as stored (NULL for none);
    /// then each client row's name and tag in name order; then, since version 4,
    /// the number of account rows and every column of each in label order. Every column
    /// as stored: a row that does not decode is sealed all the same (and refused on its
    /// own account). The client rows' count comes first in version 4, so that no client
    /// column reads as an account's. Then, since version 5 and when one is recorded, the
    /// checkpoint file's path.
    fn sealed_fields(&self, coverage: Coverage, seq: u64) -> Result<Vec<Vec<u8>>, Error> {
        let mut fields = vec![seq.to_be_bytes().to_vec()];
        if coverage == Coverage::TablesAndEvent {
            // The event's hash as stored, or NULL when there is none at `seq` (no event
            // yet, or the log was cut back behind it).
            let hash = self
                .connection()
                .query_row(
                    "SELECT hash FROM events WHERE seq = ?1",
                    [seq as i64],
                    |r| r.get_ref(0).map(encode),
                )
                .optional()
                .map_err(|e| self.error(e))?
                .unwrap_or_else(|| encode(ValueRef::Null));
            fields.push(hash);
        }
        let clients = self.columns("SELECT name, tag FROM clients ORDER BY name", 2)?;
        if coverage == Coverage::Clients {
            fields.extend(clients.into_iter().flatten());
            return Ok(fields);
        }
        let accounts = self.columns(
            &format!("SELECT {ACCOUNT_COLUMNS} FROM accounts ORDER BY label"),
            ACCOUNT_COLUMNS.split(',').count(),
        )?;
        for rows in [clients, accounts] {
            fields.push((rows.len() as u64).to_be_bytes().to_vec());
            fields.extend(rows.into_iter().flatten());
        }
        // Last, after the counted rows: no account column can read as it.
        if coverage == Coverage::TablesAndEvent {
            if let Some(path) = self.meta(CHECKPOINT_FILE)? {
                fields.push(CHECKPOINT_FILE.as_bytes().to_vec());
                fields.push(path);
            }
        }
        Ok(fields)
    }

    /// The first `width` columns of each row `sql` selects, each [`encode`]d.
    fn columns(&self, sql: &str, width: usize) -> Result<Vec<Vec<Vec<u8>>>, Error> {
        let mut stmt = self.connection().prepare(sql).map_err(|e| self.error(e))?;
        let mut rows = stmt.query([]).map_err(|e| self.error(e))?;
        let mut encoded = Vec::new();
        while let Some(row) = rows.next().map_err(|e| self.error(e))? {
            let columns = (0..width)
                .map(|column| row.get_ref(column).map(encode))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| self.error(e))?;
            encoded.push(columns);
        }
        Ok(encoded)
    }
}

/// A column as the seal covers it: its storage class first, so that no text reads as a
/// blob or as NULL.
fn encode(value: ValueRef<'_>) -> Vec<u8> {
    let (class, bytes): (u8, Vec<u8>) = match value {
        ValueRef::Null => (0, Vec::new()),
        ValueRef::Integer(i) => (1, i.to_be_bytes().to_vec()),
        ValueRef::Real(f) => (2, f.to_be_bytes().to_vec()),
        ValueRef::Text(t) => (3, t.to_vec()),
        ValueRef::Blob(b) => (4, b.to_vec()),
    };
    [&[class][..], &bytes].concat()
}
