//! Whether the log holds an administrative change after the client and account tables'
//! seal: tables sealed at an event with a change after it were put back, seal and all,
//! from before that change.
//!
//! The answer reads every event after the seal, and a gateway may append millions of
//! them between two administrative changes: after a week of requests, a `client freeze`
//! would spend its first seconds reading them, holding the store's write lock (and with
//! it every order's audit event) meanwhile. So the gateway marks, now and then, how far
//! it found the events after the seal verified and free of administrative changes
//! ([`mark_admin_free`]), and the next check of that seal starts after the mark.
//!
//! The mark lives in the database beside the log, MACed with the audit key, so only this
//! vault makes one. It states something about the log up to its event alone: that the
//! events from the seal's to its own held no administrative change when it was made. The
//! chain hash it names commits to all of them, and the events after it are read and
//! verified as before. Someone who can write the database can drop a mark (the check then
//! reads from the seal) or put back an older one (it reads from there): neither hides a
//! change, which, the mark having been made when none followed the seal, comes after the
//! mark's event, where the check still reads. A log cut back or rebuilt no longer holds
//! the mark's chain hash at its event, and the mark is not used.
//!
//! What a mark gives up: an event before it, edited after it was made, is no longer seen
//! by these checks (only by `keygate audit verify`) until the gateway reads from the seal
//! again ([`MarkFrom::Seal`], hourly), finds the edit and removes the mark.
//!
//! A reader that checks the same seal again and again (the gateway reloads its clients
//! every few seconds) also keeps a mark of its own, in memory ([`ReadSoFar`]): each check
//! then reads only what was appended since its last, not everything since the database's
//! mark, which at a thousand requests a second would be up to sixty thousand events every
//! few seconds. It states and gives up what the database's mark does.

use keygate_store::Store;
use subtle::ConstantTimeEq;

use crate::{archive, ends_at_head, events, rows_chained_to, AuditKey, Error};

/// What the body of every administrative event holds, and no other's does.
const ADMIN_TYPE_TAG: &str = r#""type":"admin""#;

/// The meta key under which the [`AdminFree`] mark is kept.
const META_KEY: &str = "audit_admin_free";

/// What the mark's MAC covers before the mark itself.
const LABEL: &[u8] = b"keygate audit admin-free v1\0";

/// Events read and verified at a time.
const PAGE: u64 = 10_000;

/// Whether an administrative event follows event `seq` in the log, reading only events
/// that verify with `key` (chained, and MACed with it), inside the caller's read
/// transaction. Tables sealed at `seq` with a change after it were put back from before
/// the change. Starts after the mark of [`mark_admin_free`] when one was made for this
/// seal and the log still holds its event.
pub fn admin_change_after(store: &Store, key: &AuditKey, seq: u64) -> Result<bool, Error> {
    admin_change_after_read(store, key, seq, &mut ReadSoFar::default())
}

/// [`admin_change_after`], starting after `so_far` too when it names a later event of
/// this seal that the log still holds as it was, and moving `so_far` to the last event
/// read. A reader that passes the same `so_far` to each of its checks reads each event
/// once.
pub fn admin_change_after_read(
    store: &Store,
    key: &AuditKey,
    seq: u64,
    so_far: &mut ReadSoFar,
) -> Result<bool, Error> {
    Ok(matches!(
        read_after_seal(store, key, seq, MarkFrom::LastMark, so_far)?,
        AfterSeal::AdminChange
    ))
}

/// [`admin_change_after`] as the tables' seal check takes it
/// ([`Store::verify_admin_changes_with`]): events after the seal that do not verify are
/// the store's [`keygate_store::Error::Unsealed`], tables resting on an edited log.
pub fn admin_change_after_seal(
    store: &Store,
    key: &AuditKey,
    seq: u64,
) -> Result<bool, keygate_store::Error> {
    admin_change_after_seal_read(store, key, seq, &mut ReadSoFar::default())
}

/// [`admin_change_after_seal`] with a reader's own mark, as
/// [`admin_change_after_read`].
pub fn admin_change_after_seal_read(
    store: &Store,
    key: &AuditKey,
    seq: u64,
    so_far: &mut ReadSoFar,
) -> Result<bool, keygate_store::Error> {
    match admin_change_after_read(store, key, seq, so_far) {
        Ok(found) => Ok(found),
        Err(Error::Store(e)) => Err(e),
        Err(_) => Err(keygate_store::Error::Unsealed {
            reason: "were sealed before audit events that do not verify (the log was edited \
                     behind keygate's back; `keygate audit verify` names where)",
        }),
    }
}

/// Where [`mark_admin_free`] starts reading.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MarkFrom {
    /// After the mark for this seal, when one holds: only what was appended since.
    LastMark,
    /// After the seal, every event again. Events before the mark edited since it was
    /// made are found this way, and the mark is then removed, so that every check reads
    /// them again and refuses the tables as it would have without a mark.
    Seal,
}

/// What [`mark_admin_free`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Marking {
    /// The events after the seal verify and hold no administrative change, and the mark
    /// now names the last of them.
    Marked {
        /// The seq of the event the mark names.
        through: u64,
    },
    /// They verify and hold no administrative change, and none came since the mark (or
    /// the seal): the mark is as it was.
    NothingNew,
    /// An administrative change follows the seal: the tables predate it, and the checks
    /// refuse them. Nothing is marked.
    AdminChange,
}

/// Reads the events after the tables' seal at event `sealed` as [`admin_change_after`]
/// does, in one read transaction, and when they verify and hold no administrative
/// change, marks the last of them so that later checks of this seal start after it.
/// Events that do not verify are an error; read from the seal, they also remove the mark.
///
/// `sealed` is read by the caller ([`Store::check_seal`]). A mark names the seal by its
/// event: once the tables are sealed again at a later event, it is not used.
pub fn mark_admin_free(
    store: &Store,
    key: &AuditKey,
    sealed: u64,
    start: MarkFrom,
) -> Result<Marking, Error> {
    let found = store.read_snapshot(|store| {
        Ok(read_after_seal(
            store,
            key,
            sealed,
            start,
            &mut ReadSoFar::default(),
        ))
    })?;
    let found = match found {
        Err(e @ Error::Tampered { .. }) if start == MarkFrom::Seal => {
            store.delete_meta(META_KEY)?;
            return Err(e);
        }
        found => found?,
    };
    Ok(match found {
        AfterSeal::AdminChange => Marking::AdminChange,
        AfterSeal::Clean { last: None } => Marking::NothingNew,
        AfterSeal::Clean {
            last: Some((through, hash)),
        } => {
            let mark = AdminFree {
                sealed,
                through,
                hash,
            };
            store.set_meta(META_KEY, &mark.encode(key))?;
            Marking::Marked { through }
        }
    })
}

/// What reading the events after a seal found.
enum AfterSeal {
    AdminChange,
    /// No administrative change; `last` is the last event read past the mark or the
    /// seal (its seq and chain hash), if any was.
    Clean {
        last: Option<(u64, Vec<u8>)>,
    },
}

/// Where one reader last found the events after a seal verified and free of
/// administrative changes: a mark of its own, in memory, for
/// [`admin_change_after_read`]. It starts empty (the reader then reads from the
/// database's mark, or the seal) and is used only for the seal it was made for and while
/// the log still holds its event as it was.
#[derive(Default)]
pub struct ReadSoFar(Option<AdminFree>);

/// Reads the events after the seal at event `sealed`, from the later of the database's
/// mark (read from the seal: neither) and `so_far`, and leaves in `so_far` the last event
/// found clean, or nothing when a change was found or an event did not verify.
fn read_after_seal(
    store: &Store,
    key: &AuditKey,
    sealed: u64,
    start: MarkFrom,
    so_far: &mut ReadSoFar,
) -> Result<AfterSeal, Error> {
    let remembered = match so_far.0.take() {
        Some(mark) if mark.sealed == sealed && mark.holds(store)? => Some(mark),
        _ => None,
    };
    let mark = match start {
        MarkFrom::LastMark => AdminFree::read(store, key, sealed)?,
        MarkFrom::Seal => None,
    };
    let from = match (mark, remembered) {
        (Some(mark), Some(remembered)) if remembered.through > mark.through => Some(remembered),
        (Some(mark), _) => Some(mark),
        (None, remembered) => remembered,
    };
    let (mut next, mut prev) = match &from {
        Some(mark) => (mark.through + 1, mark.hash.clone()),
        None => archive::start(store, key, sealed + 1)?,
    };
    let mut last: Option<(u64, Vec<u8>)> = None;
    loop {
        let (page, hash) = rows_chained_to(store, key, prev, next, PAGE)?;
        let Some(tail) = page.last() else {
            ends_at_head(store, key, next - 1, &hash)?;
            so_far.0 = match &last {
                Some((through, hash)) => Some(AdminFree {
                    sealed,
                    through: *through,
                    hash: hash.clone(),
                }),
                None => from,
            };
            return Ok(AfterSeal::Clean { last });
        };
        // The rows verified, so their bodies are as keygate wrote them: an administrative
        // event's says so, and no other's can (a quote inside a JSON string is escaped).
        // Cheaper than decoding every event after the seal, of which there may be millions.
        if page.iter().any(|row| row.body.contains(ADMIN_TYPE_TAG)) {
            return Ok(AfterSeal::AdminChange);
        }
        next = tail.seq + 1;
        last = Some((tail.seq, hash.clone()));
        prev = hash;
    }
}

/// The events after the seal at event `sealed`, through event `through` (chain hash
/// `hash`), verified and held no administrative change.
struct AdminFree {
    sealed: u64,
    through: u64,
    hash: Vec<u8>,
}

impl AdminFree {
    /// `sealed ‖ through ‖ hash ‖ MAC`, the MAC being
    /// `HMAC(audit_key, "keygate audit admin-free v1\0" ‖ through ‖ sealed ‖ hash)`.
    fn encode(&self, key: &AuditKey) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 + 2 * 32);
        out.extend_from_slice(&self.sealed.to_be_bytes());
        out.extend_from_slice(&self.through.to_be_bytes());
        out.extend_from_slice(&self.hash);
        out.extend_from_slice(&Self::mac(key, self.sealed, self.through, &self.hash));
        out
    }

    fn mac(key: &AuditKey, sealed: u64, through: u64, hash: &[u8]) -> Vec<u8> {
        let mut covered = Vec::with_capacity(8 + hash.len());
        covered.extend_from_slice(&sealed.to_be_bytes());
        covered.extend_from_slice(hash);
        key.labelled_mac(LABEL, through, &covered)
    }

    /// The mark for the seal at `sealed`, if one was made with `key` for that seal and the
    /// log still holds its event as it was. Any other mark is ignored, not an error: the
    /// check then reads from the seal, as it would without one.
    fn read(store: &Store, key: &AuditKey, sealed: u64) -> Result<Option<AdminFree>, Error> {
        let Some(raw) = store.meta(META_KEY)? else {
            return Ok(None);
        };
        let Some(mark) = AdminFree::decode(&raw, key) else {
            tracing::warn!(
                "the audit log's admin-free mark does not verify; reading from the seal"
            );
            return Ok(None);
        };
        if mark.sealed != sealed {
            return Ok(None);
        }
        Ok(mark.holds(store)?.then_some(mark))
    }

    /// Whether the log still holds the event this mark names, past its seal, as it was.
    fn holds(&self, store: &Store) -> Result<bool, Error> {
        if self.through <= self.sealed {
            return Ok(false);
        }
        Ok(events(store, self.through, 1)?
            .first()
            .is_some_and(|row| row.seq == self.through && bool::from(row.hash.ct_eq(&self.hash))))
    }

    fn decode(raw: &[u8], key: &AuditKey) -> Option<AdminFree> {
        let (sealed, rest) = raw.split_first_chunk::<8>()?;
        let (through, rest) = rest.split_first_chunk::<8>()?;
        let (hash, mac) = rest.split_first_chunk::<32>()?;
        let (sealed, through) = (u64::from_be_bytes(*sealed), u64::from_be_bytes(*through));
        let expected = Self::mac(key, sealed, through, hash);
        bool::from(expected.ct_eq(mac)).then(|| AdminFree {
            sealed,
            through,
            hash: hash.to_vec(),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use keygate_core::{AdminEvent, Event, EventBody, LostEvents};

    use super::*;
    use crate::{append_within, verify};

    fn request() -> Event {
        Event {
            ts_ms: 1,
            body: EventBody::Lost(LostEvents {
                funds_denied: Default::default(),
                count: 1,
                first_ms: 1,
                last_ms: 1,
                clients: BTreeMap::new(),
                outcomes: Vec::new(),
            }),
        }
    }

    fn admin() -> Event {
        Event {
            ts_ms: 1,
            body: EventBody::Admin(AdminEvent {
                actor: "test".into(),
                change: "client.freeze".into(),
                target: "bot1".into(),
                detail: serde_json::Value::Null,
            }),
        }
    }

    /// A store whose log holds an administrative event (1) then `requests` others.
    fn log_with(requests: usize) -> (tempfile::TempDir, Store, AuditKey) {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("keygate.db");
        let store = Store::create(&db).unwrap();
        let key = AuditKey::from_bytes(&[5; 32]);
        let mut events = vec![admin()];
        events.extend((0..requests).map(|_| request()));
        append_within(&store, &key, &events).unwrap();
        (dir, store, key)
    }

    fn edit_body(store: &Store, seq: u64) {
        store
            .connection()
            .execute(
                "UPDATE events SET body = replace(body, '\"count\":1', '\"count\":2') WHERE seq = ?1",
                [seq as i64],
            )
            .unwrap();
    }

    #[test]
    fn a_check_starts_after_the_mark_of_its_seal() {
        let (_dir, store, key) = log_with(5);
        assert!(matches!(
            mark_admin_free(&store, &key, 1, MarkFrom::LastMark).unwrap(),
            Marking::Marked { .. }
        ));
        // An event before the mark, edited: the check no longer reads it (the full
        // verification still names it), while one from another seal reads it and fails.
        edit_body(&store, 3);
        assert!(!admin_change_after(&store, &key, 1).unwrap());
        assert!(matches!(
            verify(&store, &key),
            Err(Error::Tampered { seq: 3, .. })
        ));
        assert!(matches!(
            admin_change_after(&store, &key, 2),
            Err(Error::Tampered { seq: 3, .. })
        ));
    }

    #[test]
    fn reading_from_the_seal_again_finds_an_edit_before_the_mark_and_drops_it() {
        let (_dir, store, key) = log_with(5);
        assert!(matches!(
            mark_admin_free(&store, &key, 1, MarkFrom::LastMark).unwrap(),
            Marking::Marked { .. }
        ));
        edit_body(&store, 3);
        assert_eq!(
            mark_admin_free(&store, &key, 1, MarkFrom::LastMark).unwrap(),
            Marking::NothingNew
        );
        assert!(matches!(
            mark_admin_free(&store, &key, 1, MarkFrom::Seal),
            Err(Error::Tampered { seq: 3, .. })
        ));
        assert!(store.meta(META_KEY).unwrap().is_none());
        assert!(matches!(
            admin_change_after(&store, &key, 1),
            Err(Error::Tampered { seq: 3, .. })
        ));
    }

    /// Found by review: events cut from the end of the log, an administrative change
    /// among them, were not noticed: the events left verify, and the head the last
    /// append recorded was never looked at. Tables put back from before a revoke, with
    /// their seal, were then taken as the latest.
    #[test]
    fn a_change_cut_from_the_end_of_the_log_is_noticed() {
        let (_dir, store, key) = log_with(2);
        append_within(&store, &key, &[admin()]).unwrap();
        assert!(admin_change_after(&store, &key, 4).is_ok_and(|found| !found));
        assert!(admin_change_after(&store, &key, 1).is_ok_and(|found| found));
        let mut so_far = ReadSoFar::default();
        assert!(admin_change_after_read(&store, &key, 1, &mut so_far).is_ok());
        store
            .connection()
            .execute("DELETE FROM events WHERE seq >= 4", [])
            .unwrap();
        for from in [MarkFrom::LastMark, MarkFrom::Seal] {
            assert!(matches!(
                mark_admin_free(&store, &key, 1, from),
                Err(Error::Tampered { seq: 3, .. })
            ));
        }
        assert!(matches!(
            admin_change_after(&store, &key, 1),
            Err(Error::Tampered { seq: 3, .. })
        ));
        assert!(matches!(
            admin_change_after_read(&store, &key, 1, &mut so_far),
            Err(Error::Tampered { .. })
        ));
        assert!(matches!(
            admin_change_after_seal(&store, &key, 1),
            Err(keygate_store::Error::Unsealed { .. })
        ));
    }

    #[test]
    fn a_change_after_the_mark_is_found() {
        let (_dir, store, key) = log_with(3);
        assert!(matches!(
            mark_admin_free(&store, &key, 1, MarkFrom::LastMark).unwrap(),
            Marking::Marked { .. }
        ));
        append_within(&store, &key, &[request(), admin(), request()]).unwrap();
        assert!(admin_change_after(&store, &key, 1).unwrap());
        // And events after the mark are still verified.
        edit_body(&store, 5);
        assert!(matches!(
            admin_change_after(&store, &key, 1),
            Err(Error::Tampered { seq: 5, .. })
        ));
    }

    #[test]
    fn nothing_is_marked_past_a_change() {
        let (_dir, store, key) = log_with(2);
        append_within(&store, &key, &[admin(), request()]).unwrap();
        assert_eq!(
            mark_admin_free(&store, &key, 1, MarkFrom::LastMark).unwrap(),
            Marking::AdminChange
        );
        assert!(store.meta(META_KEY).unwrap().is_none());
        assert!(admin_change_after(&store, &key, 1).unwrap());
    }

    #[test]
    fn a_mark_that_does_not_hold_is_not_used() {
        let (_dir, store, key) = log_with(4);
        assert!(matches!(
            mark_admin_free(&store, &key, 1, MarkFrom::LastMark).unwrap(),
            Marking::Marked { .. }
        ));
        edit_body(&store, 2);
        let mark = store.meta(META_KEY).unwrap().unwrap();

        // Made with another key.
        let other = AuditKey::from_bytes(&[6; 32]);
        let decoded = AdminFree::decode(&mark, &key).unwrap();
        store.set_meta(META_KEY, &decoded.encode(&other)).unwrap();
        assert!(matches!(
            admin_change_after(&store, &key, 1),
            Err(Error::Tampered { seq: 2, .. })
        ));

        // Its fields altered under the old MAC: naming an earlier event, with that event's
        // own hash, it would skip less, yet still past the edit.
        let hash_of_3: Vec<u8> = store
            .connection()
            .query_row("SELECT hash FROM events WHERE seq = 3", [], |r| r.get(0))
            .unwrap();
        let mut altered = mark.clone();
        altered[8..16].copy_from_slice(&3u64.to_be_bytes());
        altered[16..48].copy_from_slice(&hash_of_3);
        store.set_meta(META_KEY, &altered).unwrap();
        assert!(matches!(
            admin_change_after(&store, &key, 1),
            Err(Error::Tampered { seq: 2, .. })
        ));

        // Its event rewritten (the log rebuilt): the mark no longer names it.
        store.set_meta(META_KEY, &mark).unwrap();
        assert!(!admin_change_after(&store, &key, 1).unwrap());
        store
            .connection()
            .execute("UPDATE events SET hash = zeroblob(32) WHERE seq = 5", [])
            .unwrap();
        assert!(admin_change_after(&store, &key, 1).is_err());

        // The log cut back before the mark's event.
        store
            .connection()
            .execute("DELETE FROM events WHERE seq >= 4", [])
            .unwrap();
        assert!(matches!(
            admin_change_after(&store, &key, 1),
            Err(Error::Tampered { seq: 2, .. })
        ));
    }

    #[test]
    fn a_readers_own_mark_reads_only_what_came_since() {
        let (_dir, store, key) = log_with(3);
        let mut so_far = ReadSoFar::default();
        assert!(!admin_change_after_read(&store, &key, 1, &mut so_far).unwrap());
        // An event it read, edited since: it is not read again (only a fresh reader, or
        // `verify`, finds it), as with the database's mark.
        edit_body(&store, 3);
        assert!(!admin_change_after_read(&store, &key, 1, &mut so_far).unwrap());
        assert!(matches!(
            admin_change_after(&store, &key, 1),
            Err(Error::Tampered { seq: 3, .. })
        ));
        // What came since is read, verified, and moves it on.
        append_within(&store, &key, &[request(), request()]).unwrap();
        assert!(!admin_change_after_read(&store, &key, 1, &mut so_far).unwrap());
        assert_eq!(so_far.0.as_ref().map(|m| m.through), Some(6));
        append_within(&store, &key, &[request(), admin()]).unwrap();
        edit_body(&store, 7);
        assert!(matches!(
            admin_change_after_read(&store, &key, 1, &mut so_far),
            Err(Error::Tampered { seq: 7, .. })
        ));
        assert!(so_far.0.is_none());
    }

    #[test]
    fn a_readers_own_mark_holds_only_for_its_seal_and_its_event() {
        let (_dir, store, key) = log_with(4);
        let mut so_far = ReadSoFar::default();
        assert!(!admin_change_after_read(&store, &key, 1, &mut so_far).unwrap());
        edit_body(&store, 3);
        // Another seal reads from itself.
        assert!(matches!(
            admin_change_after_read(&store, &key, 2, &mut so_far),
            Err(Error::Tampered { seq: 3, .. })
        ));
        // Its event rewritten (the log rebuilt): it is not used.
        let mut so_far = ReadSoFar(Some(AdminFree {
            sealed: 1,
            through: 5,
            hash: vec![0; 32],
        }));
        assert!(matches!(
            admin_change_after_read(&store, &key, 1, &mut so_far),
            Err(Error::Tampered { seq: 3, .. })
        ));
        // An administrative change found clears it, and is found again.
        let (_dir, store, key) = log_with(1);
        let mut so_far = ReadSoFar::default();
        assert!(!admin_change_after_read(&store, &key, 1, &mut so_far).unwrap());
        append_within(&store, &key, &[admin(), request()]).unwrap();
        assert!(admin_change_after_read(&store, &key, 1, &mut so_far).unwrap());
        assert!(so_far.0.is_none());
        assert!(admin_change_after_read(&store, &key, 1, &mut so_far).unwrap());
    }

    #[test]
    fn a_check_starts_after_the_later_of_the_two_marks() {
        let (_dir, store, key) = log_with(2);
        let mut so_far = ReadSoFar::default();
        assert!(!admin_change_after_read(&store, &key, 1, &mut so_far).unwrap());
        append_within(&store, &key, &[request(), request()]).unwrap();
        assert!(matches!(
            mark_admin_free(&store, &key, 1, MarkFrom::LastMark).unwrap(),
            Marking::Marked { through: 5 }
        ));
        // Event 4 lies after the reader's mark (3) but before the database's (5).
        edit_body(&store, 4);
        assert!(!admin_change_after_read(&store, &key, 1, &mut so_far).unwrap());
        assert_eq!(so_far.0.as_ref().map(|m| m.through), Some(5));
    }

    #[test]
    fn a_mark_grows_with_the_log() {
        let (_dir, store, key) = log_with(2);
        assert!(matches!(
            mark_admin_free(&store, &key, 1, MarkFrom::LastMark).unwrap(),
            Marking::Marked { .. }
        ));
        append_within(&store, &key, &[request(), request()]).unwrap();
        assert!(matches!(
            mark_admin_free(&store, &key, 1, MarkFrom::LastMark).unwrap(),
            Marking::Marked { .. }
        ));
        let mark = AdminFree::decode(&store.meta(META_KEY).unwrap().unwrap(), &key).unwrap();
        assert_eq!((mark.sealed, mark.through), (1, 5));
        // A log with nothing after the seal marks nothing.
        let (_dir, store, key) = log_with(0);
        assert_eq!(
            mark_admin_free(&store, &key, 1, MarkFrom::LastMark).unwrap(),
            Marking::NothingNew
        );
        assert!(store.meta(META_KEY).unwrap().is_none());
    }
}
