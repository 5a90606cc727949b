//! The client table's seal: one tag over every client row, so that a row put back as it
//! was earlier (before a revocation, say) is caught although its own tag still verifies.
//!
//! A row's tag ([`Client::verify_record`](crate::Client::verify_record)) proves that
//! keygate wrote the row, not that it is the row keygate wrote *last*. The seal covers the
//! name and tag of every row, in name order, and the seq of the audit event that was the
//! last one in the log when it was made. So:
//!
//! - a row put back, added or removed behind keygate's back no longer matches the seal,
//!   and the gateway refuses every client until `keygate upgrade` has shown them to the
//!   operator and sealed them again ([`Store::check_clients_seal`]);
//! - the whole table put back with its seal (from a backup) matches, but its seal names an
//!   audit event older than the last administrative event in the log: the gateway refuses
//!   every client ([`Store::check_clients_seal_is_latest`]) and `keygate audit verify`
//!   reports it. The log itself is anchored by checkpoints.
//!
//! Every write to the client table keeps the seal, but only a seal that held before the
//! write ([`Store::reseal_clients`]): a write never vouches for rows someone else put back.

use rusqlite::types::ValueRef;

use keygate_vault::{MasterKey, RecordId};

use crate::{Error, Store};

/// The meta key holding the seal: the audit seq it was made at (8 bytes, big-endian)
/// followed by the tag.
const META_CLIENTS_SEAL: &str = "clients_seal";

/// Why a client table does not hold.
const UNSEALED: &str = "is not sealed (it was made by an earlier keygate, or its seal was removed)";
const BROKEN: &str =
    "does not match its seal: a client row was put back as it was earlier, added or removed \
     without the master key";
const STALE: &str = "was put back, seal and all, as it was before a later administrative \
     change in the audit log";

impl Store {
    /// Checks that the client table is exactly as keygate last sealed it, and returns the
    /// audit seq the seal was made at. An empty table with no seal holds (a new vault).
    pub fn check_clients_seal(&self, master: &MasterKey) -> Result<u64, Error> {
        let Some(seal) = self.meta(META_CLIENTS_SEAL)? else {
            return if self.client_count()? == 0 {
                Ok(0)
            } else {
                Err(Error::ClientTable { reason: UNSEALED })
            };
        };
        let broken = Error::ClientTable { reason: BROKEN };
        let (seq, tag) = match seal.split_first_chunk::<8>() {
            Some((seq, tag)) => (u64::from_be_bytes(*seq), tag),
            None => return Err(broken),
        };
        let fields = self.sealed_fields(seq)?;
        let fields: Vec<&[u8]> = fields.iter().map(Vec::as_slice).collect();
        master
            .verify_record(&seal_id(), &fields, tag)
            .map_err(|_| broken)?;
        Ok(seq)
    }

    /// [`Store::check_clients_seal`], and also that no administrative event in the log
    /// came after the seal: else the table was put back, seal and all, from an earlier
    /// copy. Reads only the events after the seal's (few, but for the first load after a
    /// long run of requests: about 0.7 s per million events, measured), looking for the
    /// `"type":"admin"` that `keygate-audit` writes into an administrative event's body;
    /// a row that only claims it (an attacker can write rows, not their MACs) makes this
    /// fail, never pass.
    pub fn check_clients_seal_is_latest(&self, master: &MasterKey) -> Result<u64, Error> {
        let sealed = self.check_clients_seal(master)?;
        let later_admin: bool = self
            .connection()
            .query_row(
                r#"SELECT EXISTS (SELECT 1 FROM events WHERE seq > ?1 AND body LIKE '%"type":"admin"%')"#,
                [sealed as i64],
                |r| r.get(0),
            )
            .map_err(|e| self.error(e))?;
        if later_admin {
            return Err(Error::ClientTable { reason: STALE });
        }
        Ok(sealed)
    }

    /// Seals the client table again after a write, bound to the last audit event, if its
    /// seal held before the write: `before` is what [`Store::check_clients_seal_is_latest`]
    /// said then. A seal that did not hold, or held but was older than an administrative
    /// event (the table put back, seal and all), stays as it was, whatever the write: only
    /// `keygate upgrade`, after showing the rows, seals such a table again.
    pub fn reseal_clients(
        &self,
        master: &MasterKey,
        before: &Result<u64, Error>,
    ) -> Result<(), Error> {
        match before {
            Ok(_) => self.seal_clients_as_they_are(master),
            Err(_) => Ok(()),
        }
    }

    /// Seals the client table as it is now, whatever it held before. Whoever calls this
    /// vouches for every row: `keygate upgrade` shows them to the operator first.
    pub fn seal_clients_as_they_are(&self, master: &MasterKey) -> Result<(), Error> {
        let seq: u64 = self
            .connection()
            .query_row("SELECT coalesce(max(seq), 0) FROM events", [], |r| {
                r.get::<_, i64>(0)
            })
            .map_err(|e| self.error(e))? as u64;
        let fields = self.sealed_fields(seq)?;
        let fields: Vec<&[u8]> = fields.iter().map(Vec::as_slice).collect();
        let tag = master.tag_record(&seal_id(), &fields);
        self.set_meta(META_CLIENTS_SEAL, &[&seq.to_be_bytes()[..], &tag].concat())
    }

    fn client_count(&self) -> Result<u64, Error> {
        self.connection()
            .query_row("SELECT count(*) FROM clients", [], |r| r.get::<_, i64>(0))
            .map(|n| n as u64)
            .map_err(|e| self.error(e))
    }

    /// The seq, then each row's name and tag in name order, as stored: a row that does
    /// not decode is sealed all the same (and refused on its own account).
    fn sealed_fields(&self, seq: u64) -> Result<Vec<Vec<u8>>, Error> {
        let mut stmt = self
            .connection()
            .prepare("SELECT name, tag FROM clients ORDER BY name")
            .map_err(|e| self.error(e))?;
        let mut rows = stmt.query([]).map_err(|e| self.error(e))?;
        let mut fields = vec![seq.to_be_bytes().to_vec()];
        while let Some(row) = rows.next().map_err(|e| self.error(e))? {
            for column in 0..2 {
                let value = row.get_ref(column).map_err(|e| self.error(e))?;
                fields.push(encode(value));
            }
        }
        Ok(fields)
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

fn seal_id() -> RecordId {
    RecordId::new("client-table-seal", "", "")
}
