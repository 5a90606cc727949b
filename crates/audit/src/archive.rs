//! Moving a log's oldest events out of the database, into a file that verifies alone.
//!
//! Every request is an event, so the log grows with the traffic and nothing else: a bot
//! polling ten times a second writes some 0.35 GB a day. Removing old rows would break
//! the chain at its start, which [`verify`](crate::verify) reads as tampering, so an
//! archive moves them in two steps:
//!
//! 1. [`write_archive`] writes the events older than a time (never the last), verified
//!    as it reads them, to a file of JSON lines: a header naming the event the first
//!    chains to, MACed as a mark is, then each row as stored (`seq`, `ts_ms`, `body`,
//!    `hash`, `mac`), then a closing line naming the last, MACed under a label of its
//!    own, so that the file verifies without the database, alone or after the files
//!    before it, to its last event ([`verify_archive`]);
//! 2. once the file is durable, [`remove_archived_within`] removes those rows, in the
//!    caller's write transaction, and keeps a mark where the log now begins: the last
//!    archived event's seq and chain hash, MACed with the audit key under a label of its
//!    own ([`archived_through`]).
//!
//! Every reading of the log then starts after the mark, chained to its hash. Only this
//! vault makes a mark: rows removed without one, a mark edited, or a row put back below
//! it leave a log that does not verify. The mark proves nothing of the archived events
//! themselves: the file does, with the audit key, and a checkpoint kept elsewhere
//! anchors it as it anchors the log.

use std::io::{BufRead, Read, Write};

use keygate_store::{EventRow, Store};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use crate::{anchor, chained, checkpoint_anchors, events, AuditKey, Checkpoint, Error, GENESIS};

/// The meta key of the mark.
const META_KEY: &str = "audit_archived_through";

/// What the mark's MAC covers before the mark itself.
const LABEL: &[u8] = b"keygate audit archived v1\0";

/// What an archive file's closing line's MAC covers before the event it names.
const END_LABEL: &[u8] = b"keygate audit archive end v1\0";

/// The longest line an archive may hold: far longer than any event (a request's event
/// names at most a few kilobytes; an administrative one, such as this archive's own
/// record of every client and account, less than this), so that a file that is not an
/// archive (a device, a file without line breaks) is refused instead of read into memory.
const MAX_LINE_BYTES: u64 = 64 << 20;

/// Rows read and written at a time.
const PAGE: u64 = 10_000;

/// Where the log in the database begins after an archive: the events up to `seq` were
/// moved out, and event `seq` had chain hash `hash`, which the first event kept chains
/// to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArchivedThrough {
    /// The last archived event's seq.
    pub seq: u64,
    /// Its chain hash.
    pub hash: Vec<u8>,
}

/// The first line of an archive file: the event its first row chains to (seq 0 and the
/// genesis hash for the log's first archive), MACed as a mark is, so that the first row
/// verifies as every other does.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ArchiveHeader {
    after_seq: u64,
    /// Hex.
    after_hash: String,
    /// Hex.
    mac: String,
}

/// The last line of an archive file: the last event it holds, MACed under a label of its
/// own ([`END_LABEL`]), so that a file cut short after any of its events, which still
/// chains and verifies up to there, is told from a whole one.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ArchiveEnd {
    through_seq: u64,
    /// Hex.
    through_hash: String,
    /// Hex.
    mac: String,
}

/// A line of an archive file.
#[derive(Deserialize)]
#[serde(untagged)]
enum ArchiveLine {
    Header(ArchiveHeader),
    End(ArchiveEnd),
    Row(ArchivedRow),
}

/// One line of an archive file: a row as the database held it.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ArchivedRow {
    seq: u64,
    ts_ms: u64,
    body: String,
    /// Hex.
    hash: String,
    /// Hex.
    mac: String,
}

/// The mark of the last archive, if the log was ever archived; an error when the mark
/// is there but was not made with `key` (edited, or another vault's).
pub fn archived_through(store: &Store, key: &AuditKey) -> Result<Option<ArchivedThrough>, Error> {
    let Some(raw) = store.meta(META_KEY)? else {
        return Ok(None);
    };
    let bad = |seq: u64| Error::Tampered {
        seq,
        reason: "the mark of an archive (where the log begins) does not verify with this \
                 vault's audit key"
            .into(),
    };
    if raw.len() != 8 + 32 + 32 {
        return Err(bad(1));
    }
    let (seq, rest) = raw.split_at(8);
    let seq = u64::from_be_bytes(seq.try_into().map_err(|_| bad(1))?);
    // An archive moves one event at least: a mark of none is the first archive file's
    // header, whose MAC is a mark's (found by review: copied into the database, it passed
    // for a mark, and a log emptied and written anew from event 1 for one archived).
    if seq == 0 {
        return Err(bad(1));
    }
    let (hash, mac) = rest.split_at(32);
    if !bool::from(key.labelled_mac(LABEL, seq, hash).ct_eq(mac)) {
        return Err(bad(seq.max(1)));
    }
    // The archive removed every event up to its mark: one there now was put there since,
    // and no reading that starts after the mark would see it.
    if let Some(planted) = events(store, 1, 1)?.first().filter(|row| row.seq <= seq) {
        return Err(Error::Tampered {
            seq: planted.seq,
            reason: format!(
                "an event before where the log begins: an archive moved the events up to \
                 {seq} out"
            ),
        });
    }
    Ok(Some(ArchivedThrough {
        seq,
        hash: hash.to_vec(),
    }))
}

/// Where a reading of the log from event `from` begins, with the chain hash its first
/// event chains to: `from` and the hash of the event before it, or, when the events
/// before `from` were archived, the first event kept and the archive's mark.
pub(crate) fn start(store: &Store, key: &AuditKey, from: u64) -> Result<(u64, Vec<u8>), Error> {
    let from = from.max(1);
    if let Some(mark) = archived_through(store, key)? {
        if from <= mark.seq + 1 {
            return Ok((mark.seq + 1, mark.hash));
        }
    }
    Ok((from, anchor(store, key, from)?))
}

/// Writes to `out` the events of the log older than `before_ms`, from the first the
/// database holds, one JSON line each after a header naming the event the first chains
/// to and before a closing line naming the last, every one verified as it is read (chained from where the log begins, its MAC made
/// with `key`); stops at the first event at or after `before_ms`, which stays, and never
/// takes the last event (the log's head stays in the database). Returns where the
/// archive ends, or `None` when no event is that old (then nothing was written). The
/// caller makes the file durable, then calls [`remove_archived_within`].
pub fn write_archive(
    store: &Store,
    key: &AuditKey,
    before_ms: u64,
    out: &mut dyn Write,
) -> Result<Option<ArchivedThrough>, Error> {
    let (mut from, mut prev) = store.read_snapshot(|store| Ok(start(store, key, 1)))??;
    let last = crate::last_seq(store)?;
    let mut through = None;
    'pages: loop {
        let rows = store.read_snapshot(|store| Ok(events(store, from, PAGE)))??;
        let full = rows.len() as u64 == PAGE;
        for row in &rows {
            let hash = chained(&prev, row, from, key)?;
            if row.ts_ms >= before_ms || row.seq >= last {
                break 'pages;
            }
            if through.is_none() {
                write_header(out, key, from - 1, &prev)?;
            }
            write_row(out, row)?;
            through = Some(ArchivedThrough {
                seq: row.seq,
                hash: hash.clone(),
            });
            prev = hash;
            from += 1;
        }
        if !full {
            break;
        }
    }
    if let Some(end) = &through {
        write_line(
            out,
            &ArchiveEnd {
                through_seq: end.seq,
                through_hash: hex::encode(&end.hash),
                mac: hex::encode(key.labelled_mac(END_LABEL, end.seq, &end.hash)),
            },
        )?;
    }
    Ok(through)
}

fn write_header(
    out: &mut dyn Write,
    key: &AuditKey,
    after_seq: u64,
    after_hash: &[u8],
) -> Result<(), Error> {
    write_line(
        out,
        &ArchiveHeader {
            after_seq,
            after_hash: hex::encode(after_hash),
            mac: hex::encode(key.labelled_mac(LABEL, after_seq, after_hash)),
        },
    )
}

fn write_row(out: &mut dyn Write, row: &EventRow) -> Result<(), Error> {
    write_line(
        out,
        &ArchivedRow {
            seq: row.seq,
            ts_ms: row.ts_ms,
            body: row.body.clone(),
            hash: hex::encode(&row.hash),
            mac: hex::encode(&row.mac),
        },
    )
}

/// `line` as one line of JSON.
fn write_line(out: &mut dyn Write, line: &impl Serialize) -> Result<(), Error> {
    let mut text = serde_json::to_string(line).map_err(|e| Error::Encode(e.to_string()))?;
    text.push('\n');
    out.write_all(text.as_bytes()).map_err(Error::Archive)
}

/// Removes the events up to `through` from the database and keeps the mark where the
/// log now begins, inside the caller's write transaction, after checking that event
/// `through.seq` is still the one archived. Returns how many rows went.
pub fn remove_archived_within(
    store: &Store,
    key: &AuditKey,
    through: &ArchivedThrough,
) -> Result<u64, Error> {
    let row = events(store, through.seq, 1)?
        .into_iter()
        .next()
        .filter(|row| row.seq == through.seq);
    if !row.is_some_and(|row| bool::from(row.hash.ct_eq(&through.hash))) {
        return Err(Error::Tampered {
            seq: through.seq,
            reason: "the event the archive ends at changed while it was written".into(),
        });
    }
    let mut mark = through.seq.to_be_bytes().to_vec();
    mark.extend_from_slice(&through.hash);
    mark.extend_from_slice(&key.labelled_mac(LABEL, through.seq, &through.hash));
    Ok(store.remove_events_through(through.seq, META_KEY, &mark)?)
}

/// What archive files hold, verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArchiveVerified {
    /// The first event's seq.
    pub first: u64,
    /// The last event's seq.
    pub last: u64,
    /// Whether the first event is the log's first (chained to the genesis hash); if not,
    /// it chains to the last event of an earlier archive, whose file holds that one.
    pub from_the_start: bool,
    /// Where the log in the database begins: after this event (0: nothing archived).
    pub log_begins_after: u64,
    /// Whether the log in the database begins right after the last event, chained to it.
    pub log_continues_it: bool,
    /// How many of the checkpoints given name an event of the files, each found as it was.
    pub checkpoints_held: usize,
}

/// Verifies archive files written by [`write_archive`], one after another as one
/// stream: each file's header MACed with `key` (as a mark is), every row chained to the
/// one before (the first of a file to its header), seqs in order without a gap, its MAC
/// made with `key`, each file closed by a line MACed with `key` naming its last event,
/// and a file that follows another beginning where that one ended; and that each
/// checkpoint naming an event of the files names it as it is there.
///
/// A file without its closing line (cut short, or written by a keygate before files had
/// one) verifies only where what follows shows its end: the next file's header, or the
/// log in the database beginning right after it.
pub fn verify_archive(
    reader: impl BufRead,
    store: &Store,
    key: &AuditKey,
    checkpoints: &[Checkpoint],
) -> Result<ArchiveVerified, Error> {
    let anchors = checkpoint_anchors(key, checkpoints)?;
    let mut checkpoints_held = 0;
    let mut first: Option<(u64, bool)> = None;
    // The seq and chain hash of the last event read, or of the header before any.
    let mut prev: Option<(u64, Vec<u8>)> = None;
    let mut last_row: Option<u64> = None;
    // Whether the file read last holds an event, and ended with its closing line.
    let mut file_has_rows = false;
    let mut closed = false;
    let mut reader = reader;
    let mut line = Vec::new();
    for number in 1.. {
        line.clear();
        let read = Read::take(&mut reader, MAX_LINE_BYTES + 1)
            .read_until(b'\n', &mut line)
            .map_err(Error::Archive)?;
        if read == 0 {
            break;
        }
        let at = prev.as_ref().map_or(0, |(seq, _)| seq + 1);
        let bad = |reason: String| Error::Tampered {
            seq: at,
            reason: format!("line {number} of the archive: {reason}"),
        };
        if line.pop_if(|last| *last == b'\n').is_none() && read as u64 > MAX_LINE_BYTES {
            return Err(bad(format!(
                "longer than any event ({MAX_LINE_BYTES} bytes at most)"
            )));
        }
        let parsed: ArchiveLine = serde_json::from_slice(&line)
            .map_err(|e| bad(format!("not an archive's line ({e})")))?;
        match parsed {
            ArchiveLine::Header(header) => {
                let hash = vouched_hash(
                    key,
                    (LABEL, "header"),
                    header.after_seq,
                    &header.after_hash,
                    &header.mac,
                )
                .map_err(bad)?;
                if header.after_seq == 0 && !bool::from(hash.ct_eq(&GENESIS)) {
                    return Err(bad("the first archive's header names no genesis".into()));
                }
                if let Some((seq, last_hash)) = &prev {
                    if *seq != header.after_seq || !bool::from(last_hash.ct_eq(&hash)) {
                        return Err(bad(format!(
                            "this file begins after event {}, not where the one before it \
                             ended (event {seq})",
                            header.after_seq
                        )));
                    }
                }
                prev = Some((header.after_seq, hash));
                file_has_rows = false;
                closed = false;
            }
            ArchiveLine::End(end) => {
                let hash = vouched_hash(
                    key,
                    (END_LABEL, "closing line"),
                    end.through_seq,
                    &end.through_hash,
                    &end.mac,
                )
                .map_err(bad)?;
                match &prev {
                    Some((seq, last_hash))
                        if !closed
                            && file_has_rows
                            && *seq == end.through_seq
                            && bool::from(last_hash.ct_eq(&hash)) => {}
                    _ => {
                        return Err(bad(format!(
                            "the file's closing line names event {}, not the last one before \
                             it: events were cut from its end",
                            end.through_seq
                        )))
                    }
                }
                closed = true;
            }
            ArchiveLine::Row(row) => {
                let Some((seq, prev_hash)) = &prev else {
                    return Err(bad("an event before the file's header".into()));
                };
                if closed {
                    return Err(bad("an event after the file's closing line".into()));
                }
                let row = EventRow {
                    seq: row.seq,
                    ts_ms: row.ts_ms,
                    body: row.body,
                    hash: hex::decode(&row.hash).map_err(|_| bad("its hash is not hex".into()))?,
                    mac: hex::decode(&row.mac).map_err(|_| bad("its MAC is not hex".into()))?,
                };
                let hash = chained(prev_hash, &row, seq + 1, key)?;
                for (at, named) in anchors.iter().filter(|(at, _)| *at == row.seq) {
                    if !bool::from(named.ct_eq(&hash)) {
                        return Err(Error::Tampered {
                            seq: *at,
                            reason: "rewritten: the archived event differs from the one a \
                                     checkpoint names"
                                .into(),
                        });
                    }
                    checkpoints_held += 1;
                }
                first.get_or_insert((row.seq, *seq == 0));
                last_row = Some(row.seq);
                file_has_rows = true;
                prev = Some((row.seq, hash));
            }
        }
    }
    let (Some((first, from_the_start)), Some(last), Some((_, last_hash))) = (first, last_row, prev)
    else {
        return Err(Error::Tampered {
            seq: 0,
            reason: "the archive holds no event".into(),
        });
    };
    let mark = archived_through(store, key)?;
    let log_continues_it = mark
        .as_ref()
        .is_some_and(|mark| mark.seq == last && bool::from(mark.hash.ct_eq(&last_hash)));
    if !closed && !log_continues_it {
        return Err(Error::Tampered {
            seq: last + 1,
            reason: format!(
                "the archive ends at event {last} without the line that closes a file, and \
                 the log in the database does not begin right after it: events may have \
                 been cut from its end"
            ),
        });
    }
    Ok(ArchiveVerified {
        first,
        last,
        from_the_start,
        log_begins_after: mark.as_ref().map_or(0, |mark| mark.seq),
        log_continues_it,
        checkpoints_held,
    })
}

/// The chain hash a file's header or closing line names for event `seq` (`hash`, hex),
/// once its MAC (`mac`, hex) verifies with `key` under its label; `line` is the label and
/// what the line is called when it does not.
fn vouched_hash(
    key: &AuditKey,
    (label, line): (&[u8], &str),
    seq: u64,
    hash: &str,
    mac: &str,
) -> Result<Vec<u8>, String> {
    let hash = hex::decode(hash).map_err(|_| "its hash is not hex".to_owned())?;
    let mac = hex::decode(mac).map_err(|_| "its MAC is not hex".to_owned())?;
    if !bool::from(key.labelled_mac(label, seq, &hash).ct_eq(&mac)) {
        return Err(format!(
            "the file's {line} does not verify with this vault's audit key"
        ));
    }
    Ok(hash)
}

#[cfg(test)]
mod tests {
    use keygate_core::{AdminEvent, Event, EventBody};

    use super::*;
    use crate::{append_within, checkpoint, read_verified, verify, verify_checkpoints};

    /// Events 1 to `n`, event i written at minute i.
    fn log_of(n: u64) -> (tempfile::TempDir, Store, AuditKey) {
        log_with(n, AuditKey::from_bytes(&[9; 32]))
    }

    /// [`log_of`], with `key`.
    fn log_with(n: u64, key: AuditKey) -> (tempfile::TempDir, Store, AuditKey) {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("keygate.db");
        Store::create(&db).unwrap();
        let store = Store::open(&db).unwrap();
        let minutes: Vec<Event> = (1..=n)
            .map(|i| Event {
                ts_ms: i * 60_000,
                body: EventBody::Admin(AdminEvent {
                    actor: "test".into(),
                    change: "client.freeze".into(),
                    target: format!("bot{i}"),
                    detail: serde_json::Value::Null,
                }),
            })
            .collect();
        append_within(&store, &key, &minutes).unwrap();
        (dir, store, key)
    }

    /// Archives the events before minute `minute`; returns the file's text.
    fn archive(store: &mut Store, key: &AuditKey, minute: u64) -> String {
        let mut file = Vec::new();
        let through = write_archive(store, key, minute * 60_000, &mut file)
            .unwrap()
            .unwrap();
        store
            .transaction(|s| remove_archived_within(s, key, &through))
            .unwrap();
        String::from_utf8(file).unwrap()
    }

    #[test]
    fn an_archived_log_verifies_from_where_it_now_begins() {
        let (_dir, mut store, key) = log_of(10);
        let anchored = checkpoint(&store, &key).unwrap();
        let early = {
            let (_d, early_store, _) = log_of(3);
            checkpoint(&early_store, &key).unwrap()
        };
        let file = archive(&mut store, &key, 5);
        assert_eq!(
            file.lines().count(),
            6,
            "a header, events 1 to 4, the closing line"
        );
        assert_eq!(store.events(1, 100).unwrap()[0].seq, 5);
        assert_eq!(verify(&store, &key).unwrap(), 10);
        let first = read_verified(&store, &key, 1, 100).unwrap();
        assert_eq!(
            first[0].0, 5,
            "a reading from the start begins after the archive"
        );
        // A checkpoint of an archived event is the file's to vouch for; a later one still
        // binds the log.
        let verified =
            verify_checkpoints(&store, &key, &[early.clone(), anchored.clone()]).unwrap();
        assert_eq!((verified.events, verified.archived_through), (10, 4));
        assert_eq!(
            verified.checkpoints_archived, 1,
            "the early one names event 3"
        );
        let in_file = verify_archive(file.as_bytes(), &store, &key, &[early, anchored]).unwrap();
        assert_eq!(in_file.checkpoints_held, 1);
        let checked = verify_archive(file.as_bytes(), &store, &key, &[]).unwrap();
        assert_eq!(
            checked,
            ArchiveVerified {
                first: 1,
                last: 4,
                from_the_start: true,
                log_begins_after: 4,
                log_continues_it: true,
                checkpoints_held: 0,
            }
        );

        // A second archive goes on from the first: both files together verify from the
        // start, the second alone from its header.
        let second = archive(&mut store, &key, 8);
        assert_eq!(verify(&store, &key).unwrap(), 10);
        let alone = verify_archive(second.as_bytes(), &store, &key, &[]).unwrap();
        assert_eq!(
            (alone.first, alone.last, alone.from_the_start),
            (5, 7, false)
        );
        assert!(alone.log_continues_it);
        let both = format!("{file}{second}");
        let together = verify_archive(both.as_bytes(), &store, &key, &[]).unwrap();
        assert_eq!((together.first, together.last), (1, 7));
        assert!(together.from_the_start && together.log_continues_it);
        let stale = verify_archive(file.as_bytes(), &store, &key, &[]).unwrap();
        assert!(
            !stale.log_continues_it,
            "the log begins after the second archive now"
        );
        assert_eq!(stale.log_begins_after, 7);
        // Out of order, the files do not chain.
        let swapped = format!("{second}{file}");
        assert!(verify_archive(swapped.as_bytes(), &store, &key, &[]).is_err());
        // Regression (review): the first event of a later archive was vouched for by its
        // MAC alone, so its time and body could be anything; it chains to the header now.
        let forged = second.replacen("bot5", "EVIL", 1);
        assert!(verify_archive(forged.as_bytes(), &store, &key, &[]).is_err());
    }

    #[test]
    fn rows_removed_without_the_mark_or_with_it_edited_do_not_verify() {
        let (_dir, mut store, key) = log_of(10);
        archive(&mut store, &key, 5);
        let mark = store.meta(META_KEY).unwrap().unwrap();
        // One more row removed behind the archive's back.
        store
            .connection()
            .execute("DELETE FROM events WHERE seq = 5", [])
            .unwrap();
        assert!(matches!(
            verify(&store, &key),
            Err(Error::Tampered { seq: 5, .. })
        ));
        let (_dir, mut store, key) = log_of(10);
        archive(&mut store, &key, 5);
        // The mark moved on by hand, past events still there.
        let mut moved = mark.clone();
        moved[7] = 6;
        store.set_meta(META_KEY, &moved).unwrap();
        assert!(matches!(verify(&store, &key), Err(Error::Tampered { .. })));
        // The mark removed: the log begins with event 5.
        store.delete_meta(META_KEY).unwrap();
        assert!(matches!(
            verify(&store, &key),
            Err(Error::Tampered { seq: 1, .. })
        ));
        // A mark of another vault's.
        let (_d, mut other_store, other) = log_with(10, AuditKey::from_bytes(&[8; 32]));
        archive(&mut other_store, &other, 5);
        let foreign = other_store.meta(META_KEY).unwrap().unwrap();
        store.set_meta(META_KEY, &foreign).unwrap();
        assert!(matches!(verify(&store, &key), Err(Error::Tampered { .. })));
    }

    /// Regression (review): after an archive, a row put back below the mark was read by
    /// every unverified reader and seen by no verification.
    #[test]
    fn a_row_put_below_where_the_log_begins_does_not_verify() {
        let (_dir, mut store, key) = log_of(10);
        archive(&mut store, &key, 5);
        store
            .connection()
            .execute(
                "INSERT INTO events SELECT 2, ts_ms, body, hash, mac FROM events WHERE seq = 6",
                [],
            )
            .unwrap();
        assert!(matches!(
            verify(&store, &key),
            Err(Error::Tampered { seq: 2, .. })
        ));
        assert!(read_verified(&store, &key, 1, 10).is_err());
    }

    /// Regression (review): with every event old enough, the archive took the head too,
    /// and its own event then found a log that had diverged from its head.
    #[test]
    fn the_last_event_stays() {
        let (_dir, mut store, key) = log_of(4);
        let file = archive(&mut store, &key, 100);
        assert_eq!(
            file.lines().count(),
            5,
            "a header, events 1 to 3, the closing line"
        );
        assert_eq!(verify(&store, &key).unwrap(), 4);
    }

    #[test]
    fn an_edited_archive_file_does_not_verify() {
        let (_dir, mut store, key) = log_of(6);
        let file = archive(&mut store, &key, 4);
        let edited = file.replacen("bot2", "bot9", 1);
        assert!(verify_archive(edited.as_bytes(), &store, &key, &[]).is_err());
        let dropped: String = file
            .lines()
            .enumerate()
            .filter(|(i, _)| *i != 1)
            .map(|(_, l)| format!("{l}\n"))
            .collect();
        assert!(verify_archive(dropped.as_bytes(), &store, &key, &[]).is_err());
        assert!(verify_archive(&b""[..], &store, &key, &[]).is_err());
    }

    /// Found by review: a file cut short after any of its events still chained and
    /// verified up to there, and unless the log in the database began right after it,
    /// nothing told it from a whole one. Its closing line does.
    #[test]
    fn an_archive_cut_short_does_not_verify() {
        let (_dir, mut store, key) = log_of(10);
        let first = archive(&mut store, &key, 5);
        let second = archive(&mut store, &key, 8);
        let lines = |file: &str, keep: &dyn Fn(usize) -> bool| -> String {
            file.lines()
                .enumerate()
                .filter(|(i, _)| keep(*i))
                .map(|(_, l)| format!("{l}\n"))
                .collect()
        };
        // Whole, the first verifies alone though the log begins after the second.
        let whole = verify_archive(first.as_bytes(), &store, &key, &[]).unwrap();
        assert!(!whole.log_continues_it && (whole.first, whole.last) == (1, 4));
        // Its last event and closing line cut: refused, naming the first event missing.
        let cut = lines(&first, &|i| i < 4);
        let refused = verify_archive(cut.as_bytes(), &store, &key, &[]).unwrap_err();
        assert!(
            matches!(&refused, Error::Tampered { seq: 4, reason } if reason.contains("cut")),
            "{refused}"
        );
        // Its last event cut, its closing line kept: the line names another event.
        let closed_early = lines(&first, &|i| i != 4);
        assert!(verify_archive(closed_early.as_bytes(), &store, &key, &[]).is_err());
        // An event after a closing line.
        let after_end = format!("{first}{}", lines(&second, &|i| i == 1));
        assert!(verify_archive(after_end.as_bytes(), &store, &key, &[]).is_err());
        // A closing line of another vault's key.
        let (_d, mut other_store, other) = log_with(10, AuditKey::from_bytes(&[8; 32]));
        let foreign = archive(&mut other_store, &other, 5);
        let forged_end = format!(
            "{}{}",
            lines(&first, &|i| i < 5),
            lines(&foreign, &|i| i == 5)
        );
        assert!(verify_archive(forged_end.as_bytes(), &store, &key, &[]).is_err());
        // Without its closing line (a file written before files had one), a file verifies
        // where what follows shows its end: the next file's header, or the log.
        let unclosed = |file: &str| lines(file, &|i| i + 1 < file.lines().count());
        let both = format!("{}{}", unclosed(&first), unclosed(&second));
        let together = verify_archive(both.as_bytes(), &store, &key, &[]).unwrap();
        assert!((together.first, together.last) == (1, 7) && together.log_continues_it);
        assert!(verify_archive(unclosed(&first).as_bytes(), &store, &key, &[]).is_err());
    }

    /// Found by review: the first archive's header, MACed as a mark is and naming event
    /// 0, passed for a mark once copied into the database.
    #[test]
    fn the_first_archives_header_is_no_mark() {
        let (_dir, mut store, key) = log_of(10);
        let file = archive(&mut store, &key, 5);
        let header: ArchiveHeader = serde_json::from_str(file.lines().next().unwrap()).unwrap();
        assert_eq!(header.after_seq, 0);
        let mut mark = 0u64.to_be_bytes().to_vec();
        mark.extend_from_slice(&hex::decode(&header.after_hash).unwrap());
        mark.extend_from_slice(&hex::decode(&header.mac).unwrap());
        store.set_meta(META_KEY, &mark).unwrap();
        assert!(matches!(
            archived_through(&store, &key),
            Err(Error::Tampered { seq: 1, .. })
        ));
    }

    /// A regression test: an archive was read a line at a time, each line whole into
    /// memory, so `verify-archive /dev/zero` read until memory ran out.
    #[test]
    fn a_line_longer_than_any_event_is_refused_unread() {
        let (_dir, mut store, key) = log_of(6);
        let file = archive(&mut store, &key, 4);
        let endless = std::io::BufReader::new(file.as_bytes().chain(std::io::repeat(b' ')));
        let refused = verify_archive(endless, &store, &key, &[]).unwrap_err();
        assert!(
            refused.to_string().contains("longer than any event"),
            "{refused}"
        );
        // Lines up to the bound are read: the file as written verifies, with or without
        // its last line break, and with CRLF line breaks.
        assert!(verify_archive(file.as_bytes(), &store, &key, &[]).is_ok());
        let unterminated = file.strip_suffix('\n').unwrap();
        assert!(verify_archive(unterminated.as_bytes(), &store, &key, &[]).is_ok());
        let crlf = file.replace('\n', "\r\n");
        assert!(verify_archive(crlf.as_bytes(), &store, &key, &[]).is_ok());
    }

    #[test]
    fn nothing_old_enough_archives_nothing() {
        let (_dir, store, key) = log_of(3);
        let mut file = Vec::new();
        assert_eq!(
            write_archive(&store, &key, 60_000, &mut file).unwrap(),
            None
        );
        assert!(file.is_empty());
    }
}
