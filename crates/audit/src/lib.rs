//! keygate's tamper-evident audit log.
//!
//! Every event is a row `(seq, ts_ms, body, hash, mac)` where
//! `hash = SHA-256(prev_hash ‖ seq ‖ ts_ms ‖ body)` chains it to the row before, and
//! `mac = HMAC-SHA256(audit_key, hash)` makes the chain keyed: without the audit key (held
//! in the vault), nobody can write a row that verifies. Each append also records the head
//! `(seq, hash, mac)`, so that rows cut off the end are noticed too. [`verify`] names the
//! first row that fails.
//!
//! [`AuditLog`] appends from a dedicated thread that groups events into one SQLite
//! transaction; [`AuditLog::append_durable`] calls back once the event is committed,
//! which is what the gateway waits for before forwarding an order, a withdrawal or a
//! transfer.
//!
//! Events are written in the order they were queued, except that events someone waits on
//! (an order's, before it is forwarded) and what follows them (its outcome), written in
//! their own order, pass the background events (reads, denials) queued before them that
//! the writer has not begun to commit and that were made at most [`MAX_PASSED_MS`]
//! earlier: a flood of refused requests holds an order up by one transaction of 1024
//! events at most. Background events queue up to bounds: one for requests without a
//! valid key (stale and replayed ones included: [`AuditLog::append_unattributed`]), one
//! for clients in all, and one per client. Past its bound an event is counted instead of
//! kept, and the log records how many were lost, when, and of which clients
//! ([`keygate_core::LostEvents`]):
//! memory stays bounded, keyless requests or one client never crowd out another client's
//! events, and a gap is never silent. Events someone waits on, and what follows them
//! ([`AuditLog::append_kept`]), have a bound of their own, far above any real backlog
//! ([`MAX_QUEUED_KEPT`] waiting), and are counted as lost like the others only past it.
//!
//! The log grows with the traffic: [`write_archive`] and [`remove_archived_within`] move
//! its oldest events into a file that verifies without the database ([`verify_archive`]),
//! leaving a mark, MACed with the audit key, of where the log now begins; every reading
//! starts there (see `archive.rs`).
//!
//! This crate does not decide what goes into an event (`keygate-core` does) and keeps no
//! secret in one.
//!
//! ```
//! use keygate_audit::{verify, AuditKey, AuditLog};
//! use keygate_core::{AdminEvent, Event, EventBody};
//!
//! let dir = tempfile::tempdir().unwrap();
//! let db = dir.path().join("keygate.db");
//! keygate_store::Store::create(&db).unwrap();
//! let key = AuditKey::from_bytes(&[7; 32]);
//! let log = AuditLog::start(&db, key.clone()).unwrap();
//! let event = Event { ts_ms: 1, body: EventBody::Admin(AdminEvent {
//!     actor: "cli".into(), change: "client.freeze".into(), target: "bot1".into(), detail: serde_json::Value::Null }) };
//! log.append_blocking(event).unwrap();
//! let store = keygate_store::Store::open(&db).unwrap();
//! assert_eq!(verify(&store, &key).unwrap(), 1);
//! ```

mod after_seal;
mod archive;
mod export;

pub use after_seal::{
    admin_change_after, admin_change_after_read, admin_change_after_seal,
    admin_change_after_seal_read, mark_admin_free, MarkFrom, Marking, ReadSoFar,
};
pub use archive::{
    archived_through, remove_archived_within, verify_archive, write_archive, ArchiveVerified,
    ArchivedThrough,
};
pub use export::{csv_header, csv_line, Filter};

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::Path;
use std::sync::{mpsc, Arc, Mutex, MutexGuard};
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use keygate_core::{ActionKind, Event, EventBody, LostEvents};
use keygate_store::{EventRow, Store};
use keygate_vault::{MasterKey, SecretBytes};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Events one transaction takes at most.
const MAX_BATCH: usize = 1024;
/// Background events of requests without a valid key queued at most; past it they are
/// counted, not kept. At the gateway's peak rate (`bench/run.sh`: about 25 000 requests a
/// second on two cores) this is about two thirds of a second of requests, six batch
/// windows; a queue this full means the disk has stalled or the gateway is flooded.
pub const MAX_QUEUED_ANONYMOUS: usize = 16 * 1024;
/// Background events of clients (their signature verified) queued at most, in all.
pub const MAX_QUEUED_OF_CLIENTS: usize = 32 * 1024;
/// Background events of one client queued at most: sixteen clients flooding at once (or
/// someone replaying their signed requests) are needed to crowd out the others.
pub const MAX_QUEUED_PER_CLIENT: usize = 2 * 1024;
/// Events someone waits on, and what follows them, queued at most: past it durable
/// events are refused at once (their requests are not forwarded). Only a stalled disk
/// fills it: each request in flight queues one or two.
pub const MAX_QUEUED_KEPT: usize = 16 * 1024;
/// How much earlier than an event someone waits on (or one that follows such an event)
/// the background events it is written ahead of may have been made: past it, the writer
/// writes in queue order. Readers of the log that look for a period's events by time
/// ([`seq_near`], the monitor's quiet periods) allow for this much disorder.
pub const MAX_PASSED_MS: u64 = 5_000;
/// How long a batch of background events waits for more before it is written. A commit
/// has a fixed cost (B-tree interior pages, WAL frames) that a bigger batch shares out:
/// under load, 100 ms batches cost the gateway less CPU and a shorter latency tail than
/// 20 ms ones (`bench/run.sh`). A crash (not a stop) loses the reads and denials not yet
/// committed (this window of them, unless the disk is behind); the events of trades,
/// withdrawals and transfers are committed before they are forwarded.
const BACKGROUND_BATCH_WINDOW: Duration = Duration::from_millis(100);

/// An error from the audit log.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] keygate_store::Error),
    /// The writer thread is gone: nothing queued from now on will be written.
    #[error("the audit writer has stopped")]
    WriterStopped,
    /// The writer thread could not be started.
    #[error("the audit writer could not start: {cause}")]
    WriterNotStarted {
        /// Why (in the message, as [`Error::Archive`]'s).
        cause: std::io::Error,
    },
    /// An event did not serialize.
    #[error("event does not serialize: {0}")]
    Encode(String),
    /// The writer could not commit the event (the database failed: a full disk, a lock
    /// held too long).
    ///
    /// One failed commit fails every event of its batch, and each one someone waits on
    /// is told with an error of its own ([`OnDurable`]): the store's error, which cannot
    /// be cloned, is shared among them. It is in the message, not given as the source,
    /// as [`Error::Archive`]'s.
    #[error("the audit event was not written: {cause}")]
    NotWritten {
        /// Why the commit failed.
        cause: Arc<keygate_store::Error>,
    },
    /// The event was committed, but the database could not be told to sync it to disk
    /// (the cause was logged when the sync mode could not be set): nobody waiting on it
    /// is told that it is durable.
    #[error("the audit log cannot be synced to disk")]
    Unsynced,
    /// The event was refused at once: as many events someone waits on (and what follows
    /// them) as the log keeps queued, [`MAX_QUEUED_KEPT`], already wait to be written.
    #[error("the audit log is too far behind: too many events wait ({waiting} queued)")]
    TooFarBehind {
        /// How many such events waited.
        waiting: usize,
    },
    /// Verification found a row that does not belong to the chain.
    #[error("audit log verification failed at event {seq}: {reason}")]
    Tampered {
        /// The first bad event.
        seq: u64,
        /// What is wrong with it.
        reason: String,
    },
    /// An archive file could not be written or read (the cause in the message, not given
    /// as the source, so that a report of the whole chain says it once).
    #[error("the archive file: {0}")]
    Archive(std::io::Error),
    /// A checkpoint was not made with this vault's audit key, or was altered.
    #[error("checkpoint at event {seq} does not verify: {reason}")]
    BadCheckpoint {
        /// The event it names.
        seq: u64,
        /// What is wrong with it.
        reason: String,
    },
}

/// The key of the audit MAC. Derived from the master key; never stored in the clear;
/// locked in memory and zeroized on drop.
#[derive(Clone)]
pub struct AuditKey(SecretBytes);

impl AuditKey {
    /// The audit key of the vault whose master key is `master`.
    pub fn of_vault(master: &MasterKey) -> AuditKey {
        AuditKey::from_bytes(master.derive_subkey("audit-mac").expose_secret())
    }

    /// Wraps 32 key bytes; input of another length is hashed down to 32.
    pub fn from_bytes(bytes: &[u8]) -> AuditKey {
        if bytes.len() == 32 {
            AuditKey(SecretBytes::new(bytes.to_vec()))
        } else {
            AuditKey(SecretBytes::new(Sha256::digest(bytes).to_vec()))
        }
    }

    fn mac(&self, hash: &[u8]) -> Vec<u8> {
        #[allow(clippy::expect_used, reason = "HMAC takes keys of any length")]
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(self.0.expose_secret())
            .expect("HMAC accepts keys of any length");
        mac.update(hash);
        mac.finalize().into_bytes().to_vec()
    }

    /// The MAC of a [`Checkpoint`], under a label of its own: neither an event's nor the
    /// head's MAC can stand in for it.
    fn checkpoint_mac(&self, seq: u64, hash: &[u8]) -> Vec<u8> {
        self.labelled_mac(CHECKPOINT_LABEL, seq, hash)
    }

    /// The MAC of the recorded head: the last event's seq and hash, under a label of its
    /// own. It cannot be an event's MAC, or copying the MAC of any event into the head
    /// would make a log cut short after that event verify.
    fn head_mac(&self, seq: u64, hash: &[u8]) -> Vec<u8> {
        self.labelled_mac(HEAD_LABEL, seq, hash)
    }

    /// `HMAC(key, label ‖ seq ‖ hash)`.
    fn labelled_mac(&self, label: &[u8], seq: u64, hash: &[u8]) -> Vec<u8> {
        #[allow(clippy::expect_used, reason = "HMAC takes keys of any length")]
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(self.0.expose_secret())
            .expect("HMAC accepts keys of any length");
        mac.update(label);
        mac.update(&seq.to_be_bytes());
        mac.update(hash);
        mac.finalize().into_bytes().to_vec()
    }
}

fn chain_hash(prev: &[u8], seq: u64, ts_ms: u64, body: &str) -> Vec<u8> {
    let mut h = Sha256::new();
    h.update(prev);
    h.update(seq.to_be_bytes());
    h.update(ts_ms.to_be_bytes());
    h.update(body.as_bytes());
    h.finalize().to_vec()
}

const GENESIS: [u8; 32] = [0; 32];
/// What the head's MAC covers before the head itself; see [`AuditKey::head_mac`].
const HEAD_LABEL: &[u8] = b"keygate audit head v1\0";
/// What a checkpoint's MAC covers before the checkpoint itself.
const CHECKPOINT_LABEL: &[u8] = b"keygate audit checkpoint v1\0";

/// Called once the event is committed (with its seq) or could not be: then with
/// [`Error::WriterStopped`], [`Error::TooFarBehind`], [`Error::NotWritten`],
/// [`Error::Unsynced`] or [`Error::Encode`].
pub type OnDurable = Box<dyn FnOnce(Result<u64, Error>) + Send>;

/// One event to append, or (`event: None`) a barrier that completes once everything
/// queued before it is committed.
struct Job {
    /// Its place among all the jobs queued, in both lanes of the [`Queue`].
    order: u64,
    event: Option<Event>,
    on_durable: Option<OnDurable>,
}

/// How a job is queued.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Lane {
    /// A background event, counted against the bounds of the client it names (or of
    /// requests without a valid key when it names none).
    Background,
    /// A background event counted against the bound of requests without a valid key,
    /// whatever client it names.
    Unattributed,
    /// Never dropped while fewer than [`Bounds::kept`] such jobs wait; nobody waits on it.
    Kept,
    /// Someone waits on it: written at once, ahead of the background events queued
    /// before it (see [`writer`]).
    Durable,
    /// Someone waits until everything queued before it is written: written at once.
    Barrier,
}

/// How many jobs of each kind may wait in the queue.
#[derive(Clone, Copy)]
struct Bounds {
    /// Background events of requests without a valid key.
    anonymous: usize,
    /// Background events of clients, in all.
    of_clients: usize,
    /// Background events of one client.
    per_client: usize,
    /// Events someone waits on, and what follows them.
    kept: usize,
}

impl Default for Bounds {
    fn default() -> Bounds {
        Bounds {
            anonymous: MAX_QUEUED_ANONYMOUS,
            of_clients: MAX_QUEUED_OF_CLIENTS,
            per_client: MAX_QUEUED_PER_CLIENT,
            kept: MAX_QUEUED_KEPT,
        }
    }
}

/// What the handles and the writer thread share, in two lanes. Jobs are written in the
/// order they were queued, so that the log's order is the order events were made in,
/// give or take the moment between making one and queuing it, except that the writer
/// may take the kept lane's events ahead of the background events queued before them
/// (see [`writer`]).
struct Queue {
    bounds: Bounds,
    /// Background events (reads, denials), in the order they were queued.
    background: VecDeque<Job>,
    /// Events someone waits on, what follows them ([`Lane::Kept`]), and barriers, in the
    /// order they were queued: few, next to the background events of a flood.
    kept: VecDeque<Job>,
    /// The place of the next job queued.
    next_order: u64,
    /// Jobs queued now, by the kinds [`Bounds`] limits. The bounds on background events
    /// are such that neither requests without a valid key nor a few clients (or someone
    /// replaying their signed requests) crowd out another client's events.
    queued_anonymous: usize,
    queued_of_clients: usize,
    queued_by_client: HashMap<String, usize>,
    queued_kept: usize,
    /// Events not kept since the writer last took the queue.
    lost: Option<LostEvents>,
    /// When the oldest job (or the first loss) was queued.
    since: Option<Instant>,
    /// A queued job has someone waiting on it: write now, do not wait for company.
    urgent: bool,
    /// Every handle is gone: write what is queued, then stop.
    closed: bool,
    /// The writer is gone: nothing queued from now on will be written.
    stopped: bool,
    /// Why the last commit failed (or could not be synced to disk), until one succeeds:
    /// meanwhile every order, withdrawal and transfer is refused.
    failing: Option<CommitFailed>,
}

/// Why the writer's last commit let down whoever waited on it ([`AuditLog::failing`]).
#[derive(Clone)]
enum CommitFailed {
    /// The store failed: [`Error::NotWritten`].
    NotWritten(Arc<keygate_store::Error>),
    /// The events were written, not synced to disk: [`Error::Unsynced`].
    Unsynced,
}

impl CommitFailed {
    fn error(&self) -> Error {
        match self {
            CommitFailed::NotWritten(cause) => Error::NotWritten {
                cause: Arc::clone(cause),
            },
            CommitFailed::Unsynced => Error::Unsynced,
        }
    }
}

impl Queue {
    fn new(bounds: Bounds) -> Queue {
        Queue {
            bounds,
            background: VecDeque::new(),
            kept: VecDeque::new(),
            next_order: 0,
            queued_anonymous: 0,
            queued_of_clients: 0,
            queued_by_client: HashMap::new(),
            queued_kept: 0,
            lost: None,
            since: None,
            urgent: false,
            closed: false,
            stopped: false,
            failing: None,
        }
    }

    fn is_empty(&self) -> bool {
        self.background.is_empty() && self.kept.is_empty() && self.lost.is_none()
    }

    /// A job of `event` (none: a barrier), in its place after every job queued so far.
    fn job(&mut self, event: Option<Event>, on_durable: Option<OnDurable>) -> Job {
        let order = self.next_order;
        self.next_order += 1;
        Job {
            order,
            event,
            on_durable,
        }
    }

    /// Queues a background event, counted against the bounds of the client it names when
    /// `attributed` (else, or when it names none, of requests without a valid key), or
    /// counts it as lost when one is reached; `true` when that is the first loss since
    /// the writer last took the queue.
    fn queue_background(&mut self, event: Event, attributed: bool) -> bool {
        match event.client().filter(|_| attributed) {
            None if self.queued_anonymous >= self.bounds.anonymous => {
                return count_lost(&mut self.lost, &event)
            }
            None => self.queued_anonymous += 1,
            Some(client) => {
                let of_client = self.queued_by_client.get(client).copied().unwrap_or(0);
                if of_client >= self.bounds.per_client
                    || self.queued_of_clients >= self.bounds.of_clients
                {
                    return count_lost(&mut self.lost, &event);
                }
                self.queued_of_clients += 1;
                // The name is copied once per client and batch, not once per event.
                match self.queued_by_client.get_mut(client) {
                    Some(queued) => *queued += 1,
                    None => {
                        self.queued_by_client.insert(client.to_owned(), 1);
                    }
                }
            }
        }
        let job = self.job(Some(event), None);
        self.background.push_back(job);
        false
    }

    /// Takes every job and the losses into `batch`, and starts counting afresh.
    fn take(&mut self, batch: &mut Batch) {
        std::mem::swap(&mut self.background, &mut batch.background);
        std::mem::swap(&mut self.kept, &mut batch.kept);
        batch.lost = self.lost.take();
        self.queued_anonymous = 0;
        self.queued_of_clients = 0;
        self.queued_by_client.clear();
        self.queued_kept = 0;
        self.since = None;
        self.urgent = false;
    }
}

/// Clients a [`LostEvents`] names at most; events of others are in its count only.
const MAX_LOST_CLIENTS: usize = 1024;

/// Counts `event` into `lost`; `true` when it is the first.
fn count_lost(lost: &mut Option<LostEvents>, event: &Event) -> bool {
    if let EventBody::Lost(record) = &event.body {
        // A record of losses that could not be written: its counts go into the next.
        merge_lost(lost, record.clone());
        return false;
    }
    let first = lost.is_none();
    let lost = lost.get_or_insert_with(|| LostEvents {
        count: 0,
        first_ms: event.ts_ms,
        last_ms: event.ts_ms,
        clients: BTreeMap::new(),
        outcomes: Vec::new(),
        funds_denied: BTreeMap::new(),
    });
    lost.count += 1;
    match &event.body {
        EventBody::Outcome(outcome) if lost.outcomes.len() < LostEvents::MAX_OUTCOMES => {
            lost.outcomes.push(outcome.request_id.clone());
        }
        EventBody::Request(request)
            if !request.allowed
                && matches!(request.action, ActionKind::Withdraw | ActionKind::Transfer) =>
        {
            if let Some(holder) = request.client.as_ref().or(request.key_of.as_ref()) {
                count_by_client(&mut lost.funds_denied, holder, 1);
            }
        }
        _ => {}
    }
    lost.first_ms = lost.first_ms.min(event.ts_ms);
    lost.last_ms = lost.last_ms.max(event.ts_ms);
    if let Some(client) = event.client() {
        count_by_client(&mut lost.clients, client, 1);
    }
    first
}

/// Adds `n` to `client`'s count in `counts`, which names [`MAX_LOST_CLIENTS`] at most.
fn count_by_client(counts: &mut BTreeMap<String, u64>, client: &str, n: u64) {
    if counts.len() < MAX_LOST_CLIENTS || counts.contains_key(client) {
        *counts.entry(client.to_owned()).or_default() += n;
    }
}

/// Adds the counts of `other` to `lost`.
fn merge_lost(lost: &mut Option<LostEvents>, other: LostEvents) {
    let Some(lost) = lost else {
        *lost = Some(other);
        return;
    };
    lost.count += other.count;
    lost.first_ms = lost.first_ms.min(other.first_ms);
    lost.last_ms = lost.last_ms.max(other.last_ms);
    for (client, n) in other.clients {
        count_by_client(&mut lost.clients, &client, n);
    }
    for (holder, n) in other.funds_denied {
        count_by_client(&mut lost.funds_denied, &holder, n);
    }
    let room = LostEvents::MAX_OUTCOMES.saturating_sub(lost.outcomes.len());
    lost.outcomes.extend(other.outcomes.into_iter().take(room));
}

/// A handle on the audit writer thread. Cloning it is cheap; the thread writes what is
/// queued and stops when the last handle drops.
#[derive(Clone)]
pub struct AuditLog {
    handle: Arc<Handle>,
}

struct Handle {
    queue: Arc<Mutex<Queue>>,
    writer: Thread,
}

impl Drop for Handle {
    fn drop(&mut self) {
        lock(&self.queue).closed = true;
        self.writer.unpark();
    }
}

/// The queue, even if a thread panicked while holding it: every change to it is a push,
/// a take, a flag, or pops of jobs each counted out as it goes, none of which can panic
/// halfway, so it is never left half-changed.
fn lock(queue: &Mutex<Queue>) -> MutexGuard<'_, Queue> {
    queue
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Logs the start of a run of losses (outside the queue's lock: a slow log must not hold
/// up the request path).
fn log_losses_begin() {
    tracing::error!("the audit log cannot keep up: events are counted, not kept");
}

impl AuditLog {
    /// Starts a writer on the database at `db` (its own connection).
    pub fn start(db: &Path, key: AuditKey) -> Result<AuditLog, Error> {
        AuditLog::start_bounded(db, key, Bounds::default())
    }

    fn start_bounded(db: &Path, key: AuditKey, bounds: Bounds) -> Result<AuditLog, Error> {
        let store = Store::open(db)?;
        let queue = Arc::new(Mutex::new(Queue::new(bounds)));
        let writer_queue = queue.clone();
        let writer = thread::Builder::new()
            .name("keygate-audit".into())
            .spawn(move || {
                let stopped = Stopped(writer_queue.clone());
                writer(store, key, &writer_queue);
                drop(stopped);
            })
            .map_err(|cause| Error::WriterNotStarted { cause })?;
        Ok(AuditLog {
            handle: Arc::new(Handle {
                queue,
                writer: writer.thread().clone(),
            }),
        })
    }

    /// Appends `event` in the background; failures are logged and counted. When as many
    /// background events of its kind already wait as the bounds allow
    /// ([`MAX_QUEUED_ANONYMOUS`] of requests without a valid key,
    /// [`MAX_QUEUED_OF_CLIENTS`] of clients, [`MAX_QUEUED_PER_CLIENT`] of one client),
    /// `event` is not kept but counted, and the log records the count ([`LostEvents`]).
    ///
    /// This does not wake the writer unless the queue was empty: background events wait
    /// for a batch anyway, and a wake-up per event would cost a system call per request.
    pub fn append(&self, event: Event) {
        self.push(Some(event), None, Lane::Background);
    }

    /// As [`AuditLog::append`], counted against the bound of requests without a valid
    /// key whatever client the event names: for a request whose signature verified but
    /// that was stale or replayed, which whoever saw it once could send.
    pub fn append_unattributed(&self, event: Event) {
        self.push(Some(event), None, Lane::Unattributed);
    }

    /// Appends `event` in the background, and does not drop it for want of room unless
    /// [`MAX_QUEUED_KEPT`] such events already wait: for what follows an event written
    /// before its request was forwarded. (A commit that fails loses it too; either way it
    /// is counted like a background event.)
    pub fn append_kept(&self, event: Event) {
        self.push(Some(event), None, Lane::Kept);
    }

    /// Whether the writer thread is still there to write what is appended. When it is
    /// not, orders, withdrawals and transfers are refused.
    pub fn is_writing(&self) -> bool {
        !lock(&self.handle.queue).stopped
    }

    /// Why the writer's last commit failed, until one succeeds: while it fails, what
    /// waits on it (orders, withdrawals and transfers) is refused, though the writer is
    /// still there.
    pub fn failing(&self) -> Option<Error> {
        lock(&self.handle.queue)
            .failing
            .as_ref()
            .map(CommitFailed::error)
    }

    /// Appends `event` and calls `on_durable` once it is committed or has failed.
    /// `false` when it was refused at once (the writer is gone, or [`MAX_QUEUED_KEPT`]
    /// events someone waits on already wait): `on_durable` has been told why.
    pub fn append_durable(&self, event: Event, on_durable: OnDurable) -> bool {
        self.push(Some(event), Some(on_durable), Lane::Durable)
    }

    /// Queues a job; `false` when it was refused at once.
    fn push(&self, event: Option<Event>, on_durable: Option<OnDurable>, lane: Lane) -> bool {
        let mut queue = lock(&self.handle.queue);
        if queue.stopped {
            drop(queue);
            match on_durable {
                Some(cb) => cb(Err(Error::WriterStopped)),
                None => tracing::error!("audit writer stopped; event dropped"),
            }
            return false;
        }
        let was_empty = queue.is_empty();
        queue.since.get_or_insert_with(Instant::now);
        let mut losses_begin = false;
        let mut refused = None;
        match (lane, event) {
            (Lane::Background, Some(event)) => losses_begin = queue.queue_background(event, true),
            (Lane::Unattributed, Some(event)) => {
                losses_begin = queue.queue_background(event, false);
            }
            (Lane::Kept | Lane::Durable, Some(event)) if queue.queued_kept >= queue.bounds.kept => {
                match on_durable {
                    Some(cb) => refused = Some((cb, queue.queued_kept)),
                    None => losses_begin = count_lost(&mut queue.lost, &event),
                }
            }
            (lane, event) => {
                if matches!(lane, Lane::Kept | Lane::Durable) {
                    queue.queued_kept += 1;
                }
                let job = queue.job(event, on_durable);
                queue.kept.push_back(job);
            }
        }
        let urgent = matches!(lane, Lane::Durable | Lane::Barrier) && refused.is_none();
        queue.urgent |= urgent;
        drop(queue);
        if losses_begin {
            log_losses_begin();
        }
        if let Some((cb, waiting)) = refused {
            cb(Err(Error::TooFarBehind { waiting }));
            return false;
        }
        if was_empty || urgent {
            self.handle.writer.unpark();
        }
        true
    }

    /// Appends `event` and waits until it is committed; returns its seq.
    pub fn append_blocking(&self, event: Event) -> Result<u64, Error> {
        self.send_blocking(Some(event), Lane::Durable)
    }

    /// Waits until every event appended before this call, from any handle, is committed
    /// and synced to disk, or counted in a record of losses that is; fails when that
    /// record could not be written. (Events someone waited on that could not be written
    /// were reported to whoever waited.) Call it before the process exits: background
    /// events wait in memory for a batch.
    pub fn flush(&self) -> Result<(), Error> {
        self.send_blocking(None, Lane::Barrier).map(drop)
    }

    fn send_blocking(&self, event: Option<Event>, lane: Lane) -> Result<u64, Error> {
        let (tx, rx) = mpsc::channel();
        let on_durable: OnDurable = Box::new(move |r| {
            // The receiver waits below; if it is gone there is no one to tell.
            let _ = tx.send(r);
        });
        self.push(event, Some(on_durable), lane);
        match rx.recv() {
            Ok(result) => result,
            Err(_) => Err(Error::WriterStopped),
        }
    }
}

/// Marks the writer as gone when it returns or unwinds, and fails whatever is still
/// queued, so that no request waits for a commit that will never come.
struct Stopped(Arc<Mutex<Queue>>);

impl Drop for Stopped {
    fn drop(&mut self) {
        let (kept, lost) = {
            let mut queue = lock(&self.0);
            queue.stopped = true;
            // Background events have no one waiting on them.
            queue.background.clear();
            (std::mem::take(&mut queue.kept), queue.lost.take())
        };
        if let Some(lost) = lost {
            tracing::error!(count = lost.count, "lost events could not be recorded");
        }
        for job in kept {
            if let Some(cb) = job.on_durable {
                cb(Err(Error::WriterStopped));
            }
        }
    }
}

/// What the writer took off the queue in one go, in the queue's two lanes. They keep
/// their capacity from batch to batch: a queue that regrew from nothing for every batch
/// would copy its events over and over on the request path.
#[derive(Default)]
struct Batch {
    background: VecDeque<Job>,
    kept: VecDeque<Job>,
    lost: Option<LostEvents>,
}

impl Batch {
    /// The next [`MAX_BATCH`] jobs at most, of both lanes in the order they were queued,
    /// ending at the first barrier.
    fn next_chunk(&mut self) -> Vec<Job> {
        let mut chunk = Vec::new();
        while chunk.len() < MAX_BATCH {
            let kept_first = match (self.background.front(), self.kept.front()) {
                (Some(background), Some(kept)) => kept.order < background.order,
                (background, _) => background.is_none(),
            };
            let lane = if kept_first {
                &mut self.kept
            } else {
                &mut self.background
            };
            let Some(job) = lane.pop_front() else { break };
            let barrier = job.event.is_none();
            chunk.push(job);
            if barrier {
                break;
            }
        }
        chunk
    }

    /// The kept lane's jobs that may be written now, ahead of the background events
    /// queued before them: up to [`MAX_BATCH`] of them, those of this batch before its
    /// first barrier, then, when none of this batch's is left, those the queue got
    /// meanwhile before its first barrier, if someone waits on one. None while the
    /// oldest background event left to write was made more than [`MAX_PASSED_MS`] ago.
    fn passing(&mut self, queue: &Mutex<Queue>) -> Vec<Job> {
        let recent = |job: &Job| {
            job.event
                .as_ref()
                .is_some_and(|event| event.ts_ms.saturating_add(MAX_PASSED_MS) >= now_ms())
        };
        let mut passing = Vec::new();
        if !self.background.front().is_some_and(recent) {
            return passing;
        }
        let is_event = |job: &Job| job.event.is_some();
        while passing.len() < MAX_BATCH && self.kept.front().is_some_and(is_event) {
            passing.extend(self.kept.pop_front());
        }
        if !self.kept.is_empty() || passing.len() == MAX_BATCH {
            return passing;
        }
        let mut q = lock(queue);
        if !q.urgent {
            return passing;
        }
        while passing.len() < MAX_BATCH && q.kept.front().is_some_and(is_event) {
            let Some(job) = q.kept.pop_front() else { break };
            q.queued_kept -= 1;
            passing.push(job);
        }
        // `any` stops at the first job someone waits on: at once when what is left of the
        // kept lane is empty or starts with a barrier; only when the pops stopped at
        // `MAX_BATCH` may it look through outcomes that follow (at most the lane's bound).
        q.urgent = q.kept.iter().any(|job| job.on_durable.is_some());
        if q.is_empty() {
            q.since = None;
        }
        passing
    }
}

/// The current time, in milliseconds since the epoch.
fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| {
            u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
        })
}

/// What the writer keeps from one commit to the next.
struct WriterState {
    /// Whether its connection syncs every commit to disk.
    full: bool,
    /// Whether rows it wrote are not synced yet.
    unsynced_rows: bool,
    /// The seq and hash of the last event it wrote, or found last when it began.
    written: Option<(u64, Vec<u8>)>,
}

/// The writer thread: takes batches off the queue and commits them, in the order they
/// were queued, until every handle is gone and the queue is empty.
///
/// Group commit. Someone waits on a durable event, so a batch holding one is written at
/// once, synced to disk; a batch of background events (reads, denials, outcomes) waits
/// a moment for company and is committed without its own fsync. The next durable commit
/// syncs those too, and a process crash loses none that was committed.
///
/// A batch is committed [`MAX_BATCH`] events at a time. Before each chunk, the events
/// someone waits on and what follows them (the kept lane) are committed ahead of the
/// background events queued before them, first the batch's, then those queued since if
/// someone waits on one ([`Batch::passing`]): an order's event waits behind one chunk
/// at most, however large the backlog of reads and denials. Kept events keep their
/// order among themselves, so an order's event is never written after the outcome of an
/// order sent after it, nor before the outcome of one answered before it was queued.
/// Barriers keep their place: a flush still waits for everything queued before it. And
/// none passes a background event made more than [`MAX_PASSED_MS`] before now (after a
/// stalled disk, the backlog is written in order).
///
/// A chunk ends with a barrier. Losses (events not queued for want of room, or whose
/// commit failed) are written as a [`LostEvents`] record in the chunk of the next
/// barrier, or at the end of the batch: a flush returns once the record of what it could
/// not write is committed, and fails when it is not.
fn writer(store: Store, key: AuditKey, queue: &Mutex<Queue>) {
    let mut state = WriterState {
        full: true,
        unsynced_rows: false,
        // The log as the writer found it must go on holding its last event.
        written: store
            .last_event()
            .ok()
            .flatten()
            .map(|row| (row.seq, row.hash)),
    };
    let mut batch = Batch {
        background: VecDeque::with_capacity(MAX_BATCH),
        kept: VecDeque::new(),
        lost: None,
    };
    while next_batch(queue, &mut batch) {
        let mut lost = batch.lost.take();
        loop {
            let passing = batch.passing(queue);
            if !passing.is_empty() {
                if let Some(failed) = commit(&store, &key, passing, &mut state, queue) {
                    merge_lost(&mut lost, failed);
                }
            }
            let mut chunk = batch.next_chunk();
            if chunk.is_empty() {
                // The end of the batch: one attempt at recording its losses.
                if let Some(record) = lost.take() {
                    lost = commit(&store, &key, vec![lost_record(record)], &mut state, queue);
                }
                break;
            }
            if chunk.last().is_some_and(|j| j.event.is_none()) {
                if let Some(record) = lost.take() {
                    // Before the barrier, in its transaction: committed with it or not.
                    chunk.insert(chunk.len() - 1, lost_record(record));
                }
            }
            if let Some(failed) = commit(&store, &key, chunk, &mut state, queue) {
                merge_lost(&mut lost, failed);
            }
        }
        if let Some(record) = lost {
            // Written with the next batch; once every handle is gone, there is none.
            let mut q = lock(queue);
            if q.closed {
                tracing::error!(count = record.count, "lost events could not be recorded");
            } else {
                merge_lost(&mut q.lost, record);
                q.since.get_or_insert_with(Instant::now);
            }
        }
    }
}

/// The event recording `lost`.
fn lost_record(lost: LostEvents) -> Job {
    Job {
        // Placed by the writer, not by the queue.
        order: 0,
        event: Some(Event {
            ts_ms: lost.last_ms,
            body: EventBody::Lost(lost),
        }),
        on_durable: None,
    }
}

/// How long after a failed commit the writer, with nothing to write, tries again.
const FAILING_RETRY: Duration = Duration::from_secs(1);

/// Waits for the next batch and swaps it into `batch` (empty, with capacity): at once
/// when someone waits on a queued event, otherwise [`BACKGROUND_BATCH_WINDOW`] after
/// the oldest job (or loss) arrived. `false` once the log is closed and everything is
/// written.
fn next_batch(queue: &Mutex<Queue>, batch: &mut Batch) -> bool {
    loop {
        let mut q = lock(queue);
        if q.is_empty() {
            if q.closed {
                return false;
            }
            if q.failing.is_some() {
                // The last commit failed and nothing new came: try again with nothing
                // (a barrier) after a while, so that a log that can be written again says
                // so (`/healthz`) without waiting for the next request.
                drop(q);
                thread::park_timeout(FAILING_RETRY);
                let q = lock(queue);
                if q.is_empty() && !q.closed && q.failing.is_some() {
                    batch.kept.push_back(Job {
                        order: 0,
                        event: None,
                        on_durable: None,
                    });
                    return true;
                }
                continue;
            }
            drop(q);
            thread::park();
            continue;
        }
        let waited = q.since.map_or(Duration::ZERO, |t| t.elapsed());
        if q.urgent || q.closed || waited >= BACKGROUND_BATCH_WINDOW {
            q.take(batch);
            return true;
        }
        drop(q);
        thread::park_timeout(BACKGROUND_BATCH_WINDOW - waited);
    }
}

/// Commits `jobs` in one transaction, chained after the last event, and tells whoever
/// waits on them. Events nobody waits on that are not written (the commit failed, or
/// one did not serialize) are returned counted as lost. A durable commit that writes no
/// row (a barrier alone) syncs what earlier commits left unsynced. Whether it failed is
/// noted in `queue` ([`AuditLog::failing`]) before anyone waiting is told.
fn commit(
    store: &Store,
    key: &AuditKey,
    jobs: Vec<Job>,
    state: &mut WriterState,
    queue: &Mutex<Queue>,
) -> Option<LostEvents> {
    let durable = jobs.iter().any(|j| j.on_durable.is_some());
    if durable != state.full {
        match store.set_synchronous(durable) {
            Ok(()) => state.full = durable,
            Err(e) => tracing::error!(error = %e, "cannot set the audit log's sync mode"),
        }
    }
    let bodies: Vec<Entry> = jobs
        .iter()
        .map(|j| {
            j.event
                .as_ref()
                .map(|e| (e.ts_ms, serde_json::to_string(e).map_err(|e| e.to_string())))
        })
        .collect();
    let writes_rows = bodies.iter().any(|b| matches!(b, Some((_, Ok(_)))));
    // Found by review: SQLite's write-ahead log keeps earlier copies of the recorded
    // head, each with a valid MAC, and a log cut back to one (its later events deleted)
    // verified. While the writer runs it refuses to append to a log that no longer holds
    // the last event it wrote (or found): a cut is refused, events the command line
    // appends after it are not.
    let continues = state
        .written
        .as_ref()
        .map(|(seq, hash)| (*seq, hash.as_slice()));
    let result = store
        .append_events(
            continues,
            |last| {
                let (rows, seqs) = chain(key, last, &bodies);
                let wrote = rows.last().map(|row| (row.seq, row.hash.clone()));
                (rows, (seqs, wrote))
            },
            |head| key.head_mac(head.seq, &head.hash),
        )
        .and_then(|(seqs, wrote)| {
            if durable && state.full && !writes_rows && state.unsynced_rows {
                store.sync_to_disk()?;
            }
            if wrote.is_some() {
                state.written = wrote;
            }
            Ok(seqs)
        });
    // Whoever waits on this batch waits for it to reach the disk: without the sync mode
    // that promises it, the events are still written, but nobody is told they are durable.
    let unsynced = durable && !state.full;
    let result = result.map_err(Arc::new);
    lock(queue).failing = match &result {
        Err(cause) => Some(CommitFailed::NotWritten(Arc::clone(cause))),
        Ok(_) if unsynced => Some(CommitFailed::Unsynced),
        Ok(_) => None,
    };
    let mut lost = None;
    match result {
        Ok(seqs) => {
            if writes_rows || durable {
                state.unsynced_rows = !state.full && (writes_rows || state.unsynced_rows);
            }
            for ((job, seq), entry) in jobs.into_iter().zip(seqs).zip(&bodies) {
                match (job.on_durable, job.event) {
                    (Some(cb), _) if unsynced => cb(Err(Error::Unsynced)),
                    (Some(cb), _) => cb(seq.ok_or_else(|| not_serialized(entry))),
                    (None, Some(event)) if seq.is_none() => {
                        count_lost(&mut lost, &event);
                    }
                    (None, _) => {}
                }
            }
        }
        Err(cause) => {
            tracing::error!(error = %cause, events = jobs.len(), "audit append failed");
            for job in jobs {
                match (job.on_durable, job.event) {
                    (Some(cb), _) => cb(Err(Error::NotWritten {
                        cause: Arc::clone(&cause),
                    })),
                    (None, Some(event)) => {
                        count_lost(&mut lost, &event);
                    }
                    (None, None) => {}
                }
            }
        }
    }
    lost
}

/// Why the event of `entry`, which [`chain`] gave no seq, was not written: it did not
/// serialize.
fn not_serialized(entry: &Entry) -> Error {
    match entry {
        Some((_, Err(reason))) => Error::Encode(reason.clone()),
        // `chain` gives every other entry a seq: this is not reached, and says the
        // same should it ever be.
        _ => Error::Encode("no reason was kept".to_owned()),
    }
}

/// What one queued job puts in the log: nothing (a barrier), or an event's time and its
/// JSON (or why it did not serialize).
type Entry = Option<(u64, Result<String, String>)>;

/// The rows that chain `entries` after `last`, and each entry's seq: for a barrier, the
/// seq of the last row before it; for an event that did not serialize, `None`.
fn chain(
    key: &AuditKey,
    last: Option<&EventRow>,
    entries: &[Entry],
) -> (Vec<EventRow>, Vec<Option<u64>>) {
    let (mut seq, mut prev) = match last {
        Some(row) => (row.seq, row.hash.clone()),
        None => (0, GENESIS.to_vec()),
    };
    let mut rows = Vec::with_capacity(entries.len());
    let mut seqs = Vec::with_capacity(entries.len());
    for entry in entries {
        let Some((ts_ms, body)) = entry else {
            // A barrier: everything before it is in this commit or an earlier one.
            seqs.push(Some(seq));
            continue;
        };
        let Ok(body) = body else {
            seqs.push(None);
            continue;
        };
        seq += 1;
        let hash = chain_hash(&prev, seq, *ts_ms, body);
        let mac = key.mac(&hash);
        rows.push(EventRow {
            seq,
            ts_ms: *ts_ms,
            body: body.clone(),
            hash: hash.clone(),
            mac,
        });
        prev = hash;
        seqs.push(Some(seq));
    }
    (rows, seqs)
}

/// Appends `events` to the log inside the write transaction the caller holds on `store`
/// ([`Store::transaction`]), chained after the last event any process wrote: they
/// commit with the caller's other changes, or not at all. An administrative change and
/// its event are made so. Returns the seq of the last one.
pub fn append_within(store: &Store, key: &AuditKey, events: &[Event]) -> Result<u64, Error> {
    let entries = events
        .iter()
        .map(|e| serde_json::to_string(e).map(|body| Some((e.ts_ms, Ok(body)))))
        .collect::<Result<Vec<Entry>, _>>()
        .map_err(|e| Error::Encode(e.to_string()))?;
    let seqs = store.append_events_within(
        |last| chain(key, last, &entries),
        |head| key.head_mac(head.seq, &head.hash),
    )?;
    Ok(seqs.last().copied().flatten().unwrap_or_default())
}

/// The rows of the log from `from`, at most `limit`; a row whose columns do not read is
/// tampered with, named by its seq.
fn events(store: &Store, from: u64, limit: u64) -> Result<Vec<EventRow>, Error> {
    store.events(from, limit).map_err(|e| match e {
        keygate_store::Error::StoredEvent { seq, reason } => Error::Tampered { seq, reason },
        other => Error::Store(other),
    })
}

/// Verifies the whole log: contiguous sequence from 1 (or from after an archive's mark,
/// chained to it: [`write_archive`]), every hash chained to the one
/// before, every MAC made with `key`, and the recorded head equal to the last row.
/// Returns the number of events.
pub fn verify(store: &Store, key: &AuditKey) -> Result<u64, Error> {
    verify_then(
        store,
        key,
        1,
        VERIFY_PAGE,
        |_, verified| Ok(verified.events),
    )
}

/// Verifies the log from event `from` to its end, without reading what comes before:
/// each event chained to the one before it, from the event before `from` (whose MAC
/// verifies), and the log ending at the head its last append recorded. What `audit tail`
/// shows is vouched for so, however long the log. Returns the last event's seq.
pub fn verify_from(store: &Store, key: &AuditKey, from: u64) -> Result<u64, Error> {
    verify_then(store, key, from, VERIFY_PAGE, |_, verified| {
        Ok(verified.events)
    })
}

/// [`verify_from`], handing `each` the events as they verify, as
/// [`verify_checkpoints_handing`] does.
pub fn verify_from_handing(
    store: &Store,
    key: &AuditKey,
    from: u64,
    mut each: impl FnMut(Vec<(u64, Event)>),
) -> Result<u64, Error> {
    verify_pausing(
        store,
        key,
        from,
        VERIFY_PAGE,
        Some(&mut each),
        || {},
        |_, verified| Ok(verified.events),
    )
}

/// What a verified log holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verified {
    /// How many events.
    pub events: u64,
    /// The seq of the last administrative event, or 0: the client table's seal must be
    /// at least this recent, or the table was put back to before it.
    pub last_admin_seq: u64,
    /// The last event moved out by an archive ([`write_archive`]), or 0: the log in the
    /// database begins after it.
    pub archived_through: u64,
    /// How many of the checkpoints given ([`verify_checkpoints`]) name an archived event
    /// before the last, which the archive's files vouch for, not the log
    /// ([`verify_archive`]).
    pub checkpoints_archived: usize,
}

/// What is handed the events of each page of a walk once they verified, with their seq.
type PageReader<'a> = &'a mut dyn FnMut(Vec<(u64, Event)>);

/// Events verified in one read snapshot. A log of millions of events is walked in many:
/// SQLite cannot reset its write-ahead log past the oldest snapshot still open, so one
/// snapshot held for the minutes such a walk takes would let the WAL file grow with every
/// event `serve` writes meanwhile.
const VERIFY_PAGE: u64 = 10_000;

/// How far a walk along the chain has come.
struct Walk {
    /// The chain hash of the last event verified (the genesis hash before the first).
    prev: Vec<u8>,
    /// The seq the next event must have.
    next_seq: u64,
    last_admin_seq: u64,
    /// The events verified since they were last handed on, when a reader wants them.
    read: Option<Vec<(u64, Event)>>,
}

impl Walk {
    /// Takes in the next row: chained to the one before, MACed with `key`, a keygate
    /// event.
    fn take(&mut self, row: &EventRow, key: &AuditKey) -> Result<(), Error> {
        let hash = chained(&self.prev, row, self.next_seq, key)?;
        let event = serde_json::from_str::<Event>(&row.body).map_err(|_| Error::Tampered {
            seq: self.next_seq,
            reason: "body is not a keygate event".into(),
        })?;
        if matches!(event.body, EventBody::Admin(_)) {
            self.last_admin_seq = row.seq;
        }
        if let Some(read) = &mut self.read {
            read.push((row.seq, event));
        }
        self.prev = hash;
        self.next_seq += 1;
        Ok(())
    }
}

/// Verifies the log from event `from` (1: the whole log), `page` events per read
/// snapshot, then calls `at_end` inside the snapshot that reached the last event, with
/// what the log holds (`events` is the last event's seq): the last events, the recorded
/// head and whatever `at_end` reads are seen together, however many events were
/// appended while the walk went on. An event rewritten behind the walk (in a page
/// already verified) is for the next verification to find, as one rewritten after a
/// verification ends would be.
fn verify_then<T>(
    store: &Store,
    key: &AuditKey,
    from: u64,
    page: u64,
    at_end: impl FnMut(&Store, Verified) -> Result<T, Error>,
) -> Result<T, Error> {
    verify_pausing(store, key, from, page, None, || {}, at_end)
}

/// [`verify_then`], handing `reader` (if any) the events of each page once it verified,
/// outside its read snapshot, and calling `between_pages` after each page but the last
/// (tests make changes there).
fn verify_pausing<T>(
    store: &Store,
    key: &AuditKey,
    from: u64,
    page: u64,
    mut reader: Option<PageReader<'_>>,
    mut between_pages: impl FnMut(),
    mut at_end: impl FnMut(&Store, Verified) -> Result<T, Error>,
) -> Result<T, Error> {
    let asked_from = from;
    let (from, prev) = store.read_snapshot(|store| Ok(archive::start(store, key, from)))??;
    let mut walk = Walk {
        prev,
        next_seq: from,
        last_admin_seq: 0,
        read: reader.is_some().then(Vec::new),
    };
    loop {
        let step = store.read_snapshot(|store| {
            Ok((|| {
                // `audit archive` (which keeps serve out, not readers) may have moved out
                // the events this page would begin at since the last page: the walk
                // begins again where the log now begins, from the archive's mark.
                if archived_through(store, key)?.is_some_and(|mark| mark.seq >= walk.next_seq) {
                    let (next_seq, prev) = archive::start(store, key, asked_from)?;
                    walk = Walk {
                        prev,
                        next_seq,
                        last_admin_seq: 0,
                        read: walk.read.take(),
                    };
                }
                let rows = events(store, walk.next_seq, page)?;
                let more = rows.len() as u64 == page;
                for row in &rows {
                    walk.take(row, key)?;
                }
                if more {
                    return Ok(None);
                }
                let verified = check_head(store, key, &walk)?;
                at_end(store, verified).map(Some)
            })())
        })??;
        if let (Some(reader), Some(read)) = (reader.as_mut(), walk.read.as_mut()) {
            reader(std::mem::take(read));
        }
        if let Some(done) = step {
            return Ok(done);
        }
        between_pages();
    }
}

/// Whether the recorded head names the last event `walk` verified.
fn check_head(store: &Store, key: &AuditKey, walk: &Walk) -> Result<Verified, Error> {
    let count = walk.next_seq - 1;
    let prev = &walk.prev;
    let verified = Verified {
        events: count,
        last_admin_seq: walk.last_admin_seq,
        archived_through: archived_through(store, key)?.map_or(0, |mark| mark.seq),
        checkpoints_archived: 0,
    };
    // A head of another length was written by no keygate: tampering, named as such, not
    // an error of the tool.
    let head = store.audit_head().map_err(|e| match e {
        keygate_store::Error::Corrupt { .. } => Error::Tampered {
            seq: count,
            reason: format!("the recorded head does not read: {e}"),
        },
        e => Error::from(e),
    })?;
    match head {
        None if count == 0 => Ok(verified),
        // Named after the last event verified: the head goes with events cut from the
        // end, and event 1 is as it was (found by review).
        None => Err(Error::Tampered {
            seq: count + 1,
            reason: format!(
                "the log has events but no recorded head: events after {count} may have \
                 been cut from its end"
            ),
        }),
        Some(head) if head.seq > count => Err(Error::Tampered {
            seq: count + 1,
            reason: format!(
                "truncated: the log ends at {count} but the last append wrote event {}",
                head.seq
            ),
        }),
        Some(head)
            if head.seq < count
                || !bool::from(head.hash.ct_eq(prev))
                || !bool::from(key.head_mac(head.seq, prev).ct_eq(&head.mac)) =>
        {
            Err(Error::Tampered {
                seq: head.seq.min(count),
                reason: "the recorded head does not match the last event".into(),
            })
        }
        Some(_) => Ok(verified),
    }
}

/// Where the log stood when it was taken: event `seq` had chain hash `hash`. Kept outside
/// the database (another host, a ticket, a printout), it anchors the log: the chain and
/// its head live in the same database, so someone who can write it could put back an
/// earlier copy of both, and [`verify`] alone would not notice. [`verify_checkpoints`]
/// does.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Checkpoint {
    /// The last event's seq.
    pub seq: u64,
    /// Its chain hash, hex.
    pub hash: String,
    /// `HMAC-SHA256(audit_key, "keygate audit checkpoint v1\0" ‖ seq ‖ hash)`, hex: only
    /// this vault makes it.
    pub mac: String,
}

/// Verifies the whole log, then takes a [`Checkpoint`] of its last event: a checkpoint of
/// a log that does not verify would anchor nothing.
pub fn checkpoint(store: &Store, key: &AuditKey) -> Result<Checkpoint, Error> {
    let checkpoint = verify_then(store, key, 1, VERIFY_PAGE, |store, verified| {
        if verified.events == 0 {
            return Err(empty_log());
        }
        head_checkpoint(store, key)
    })?;
    // The head may be a read's event, committed without a sync of its own: a power cut
    // would then lose it, and the log would no longer hold what the checkpoint names,
    // which reads as tampering. A synced commit now syncs every event before it.
    store.sync_to_disk()?;
    Ok(checkpoint)
}

/// A [`Checkpoint`] of the log's last event as it is, without verifying the log first as
/// [`checkpoint`] does: for anchoring each administrative change as it commits, where
/// reading the whole log each time would cost too much. It vouches for nothing before
/// it: [`verify_checkpoints`] verifies the whole log whatever the checkpoints.
pub fn head_checkpoint(store: &Store, key: &AuditKey) -> Result<Checkpoint, Error> {
    let head = store.audit_head()?.ok_or_else(empty_log)?;
    Ok(Checkpoint {
        seq: head.seq,
        hash: hex::encode(&head.hash),
        mac: hex::encode(key.checkpoint_mac(head.seq, &head.hash)),
    })
}

/// What a checkpoint of an empty log is refused as: every vault's log begins with its
/// `vault.init` event.
fn empty_log() -> Error {
    Error::Tampered {
        seq: 1,
        reason: "the log is empty".into(),
    }
}

/// Each checkpoint's seq and chain hash, once its MAC verifies with `key`.
fn checkpoint_anchors(
    key: &AuditKey,
    checkpoints: &[Checkpoint],
) -> Result<Vec<(u64, Vec<u8>)>, Error> {
    checkpoints
        .iter()
        .map(|checkpoint| {
            let bad_checkpoint = |reason: &str| Error::BadCheckpoint {
                seq: checkpoint.seq,
                reason: reason.to_owned(),
            };
            let hash =
                hex::decode(&checkpoint.hash).map_err(|_| bad_checkpoint("hash is not hex"))?;
            let mac = hex::decode(&checkpoint.mac).map_err(|_| bad_checkpoint("MAC is not hex"))?;
            if !bool::from(key.checkpoint_mac(checkpoint.seq, &hash).ct_eq(&mac)) {
                return Err(bad_checkpoint(
                    "its MAC was not made with this vault's audit key (another vault's, or \
                     altered)",
                ));
            }
            Ok((checkpoint.seq, hash))
        })
        .collect()
}

/// Verifies the whole log, and that it still holds each checkpoint's event as it was: a
/// log put back as it was before one, cut short, or rebuilt fails. Returns what the log
/// holds.
pub fn verify_checkpoints(
    store: &Store,
    key: &AuditKey,
    checkpoints: &[Checkpoint],
) -> Result<Verified, Error> {
    verify_checkpoints_reading(store, key, checkpoints, None)
}

/// [`verify_checkpoints`], handing `each` the events of the log as they verify, in order,
/// a page at a time: what `audit export` writes is then the events as this verification
/// read them, not a second reading of rows that may have changed since (found by
/// review). On an error, the pages before the one that failed were handed. A page is
/// handed outside the read snapshot it was read in; should `audit archive` move out
/// events the walk had not reached, the next page begins after them.
pub fn verify_checkpoints_handing(
    store: &Store,
    key: &AuditKey,
    checkpoints: &[Checkpoint],
    mut each: impl FnMut(Vec<(u64, Event)>),
) -> Result<Verified, Error> {
    verify_checkpoints_reading(store, key, checkpoints, Some(&mut each))
}

fn verify_checkpoints_reading(
    store: &Store,
    key: &AuditKey,
    checkpoints: &[Checkpoint],
    reader: Option<PageReader<'_>>,
) -> Result<Verified, Error> {
    let anchors = checkpoint_anchors(key, checkpoints)?;
    verify_pausing(
        store,
        key,
        1,
        VERIFY_PAGE,
        reader,
        || {},
        |store, mut verified| {
            let count = verified.events;
            let mark = match verified.archived_through {
                0 => None,
                _ => archived_through(store, key)?,
            };
            for (seq, hash) in &anchors {
                if !held(store, count, mark.as_ref(), *seq, hash)? {
                    verified.checkpoints_archived += 1;
                }
            }
            Ok(verified)
        },
    )
}

/// Whether the log, `count` events long, holds the event a checkpoint names (`seq`, its
/// chain `hash`) as it was: an error when it does not. `Ok(false)` for an archived event
/// before the archive's `mark`, which the archive's file vouches for, not the log.
fn held(
    store: &Store,
    count: u64,
    mark: Option<&ArchivedThrough>,
    seq: u64,
    hash: &[u8],
) -> Result<bool, Error> {
    if count < seq {
        return Err(Error::Tampered {
            seq: count + 1,
            reason: format!(
                "rolled back or cut short: the log ends at event {count}, before the \
                 checkpoint's event {seq}"
            ),
        });
    }
    // An archived event is for the archive's file to vouch for (`verify_archive`), but
    // the last, whose hash the archive's mark keeps.
    if let Some(mark) = mark.filter(|mark| seq <= mark.seq) {
        if mark.seq != seq {
            return Ok(false);
        }
        if !bool::from(mark.hash.ct_eq(hash)) {
            return Err(Error::Tampered {
                seq,
                reason: "rewritten: the archived event differs from the one a checkpoint \
                         names"
                    .into(),
            });
        }
        return Ok(true);
    }
    let row = events(store, seq, 1)?.into_iter().next();
    if !row.is_some_and(|row| row.seq == seq && bool::from(row.hash.ct_eq(hash))) {
        return Err(Error::Tampered {
            seq,
            reason: "rewritten: the event differs from the one a checkpoint names".into(),
        });
    }
    Ok(true)
}

/// Whether the log still holds the event `checkpoint` names as it was, without
/// verifying the log as [`verify_checkpoints`] does: only that event, read where the log
/// records its end (its head) and its archive's mark. For each administrative change to
/// check, before it anchors itself after the last checkpoint of a file, that its vault
/// continues the log that file anchors (a vault put back from an older backup does not),
/// where reading the whole log each time would cost too much.
pub fn holds_checkpoint(
    store: &Store,
    key: &AuditKey,
    checkpoint: &Checkpoint,
) -> Result<(), Error> {
    let anchors = checkpoint_anchors(key, std::slice::from_ref(checkpoint))?;
    store.read_snapshot(|store| {
        Ok((|| {
            let count = store.audit_head()?.map_or(0, |head| head.seq);
            let mark = archived_through(store, key)?;
            for (seq, hash) in &anchors {
                held(store, count, mark.as_ref(), *seq, hash)?;
            }
            Ok(())
        })())
    })?
}

/// The chain hash that event `from` must chain to: the hash of the event before it, whose
/// MAC verifies, or the genesis hash for the first event.
fn anchor(store: &Store, key: &AuditKey, from: u64) -> Result<Vec<u8>, Error> {
    if from <= 1 {
        return Ok(GENESIS.to_vec());
    }
    let anchor = events(store, from - 1, 1)?
        .into_iter()
        .next()
        .filter(|row| row.seq == from - 1)
        .ok_or_else(|| Error::Tampered {
            seq: from - 1,
            reason: "missing".into(),
        })?;
    if !bool::from(key.mac(&anchor.hash).ct_eq(&anchor.mac)) {
        return Err(Error::Tampered {
            seq: anchor.seq,
            reason: "MAC does not verify with this vault's audit key".into(),
        });
    }
    Ok(anchor.hash)
}

/// [`read_unverified`], but only events keygate wrote, where it wrote them: each is chained to the
/// one before it, from the event before `from` on, and its MAC verifies with `key`.
/// For what decides on the log (reconciliation: what keygate forwarded), which must not
/// take a row edited behind keygate's back for an event. The event before `from` is
/// vouched for by its MAC and by the chain of the next: a MAC-valid hash taken from
/// another place in the log does not chain to the row at `from`.
pub fn read_verified(
    store: &Store,
    key: &AuditKey,
    from: u64,
    limit: u64,
) -> Result<Vec<(u64, Event)>, Error> {
    store.read_snapshot(|store| Ok(read_verified_within(store, key, from, limit)))?
}

/// The chain hash of `row`, checked: it is event `expected`, chained to `prev` (the hash
/// of the event before it) and MACed with `key`.
fn chained(prev: &[u8], row: &EventRow, expected: u64, key: &AuditKey) -> Result<Vec<u8>, Error> {
    let bad = |reason: String| Error::Tampered {
        seq: expected,
        reason,
    };
    if row.seq != expected {
        return Err(bad(format!(
            "missing; the next event present is {}",
            row.seq
        )));
    }
    let hash = chain_hash(prev, row.seq, row.ts_ms, &row.body);
    if !bool::from(hash.ct_eq(&row.hash)) {
        return Err(bad(
            "content or order does not match the chain (edited, reordered or replaced)".into(),
        ));
    }
    if !bool::from(key.mac(&hash).ct_eq(&row.mac)) {
        return Err(bad("MAC does not verify with this vault's audit key".into()));
    }
    Ok(hash)
}

/// [`read_verified`] inside the caller's read transaction.
fn read_verified_within(
    store: &Store,
    key: &AuditKey,
    from: u64,
    limit: u64,
) -> Result<Vec<(u64, Event)>, Error> {
    decoded(verified_rows_within(store, key, from, limit)?)
}

/// Rows with `seq >= from`, at most `limit`, each chained from the MAC-verified row before
/// `from` and MAC-verified itself ([`read_verified`]).
fn verified_rows_within(
    store: &Store,
    key: &AuditKey,
    from: u64,
    limit: u64,
) -> Result<Vec<EventRow>, Error> {
    let (from, prev) = archive::start(store, key, from)?;
    Ok(rows_chained_to(store, key, prev, from, limit)?.0)
}

/// Rows with `seq >= from`, at most `limit`, the first chained to `prev` (the chain hash
/// of the event before `from`), each chained to the one before and MAC-verified; with
/// the chain hash of the last (`prev` when there is none).
fn rows_chained_to(
    store: &Store,
    key: &AuditKey,
    mut prev: Vec<u8>,
    from: u64,
    limit: u64,
) -> Result<(Vec<EventRow>, Vec<u8>), Error> {
    let rows = events(store, from, limit)?;
    for (expected, row) in (from..).zip(&rows) {
        prev = chained(&prev, row, expected, key)?;
    }
    Ok((rows, prev))
}

/// Whether the log ends where its last append left it: at event `seq`, of chain hash
/// `hash`, the head recorded (and MACed) with that append. Events cut from the end of
/// the log, an administrative change among them, leave a log that verifies up to where
/// it now ends: only the head tells that it ended later.
pub(crate) fn ends_at_head(
    store: &Store,
    key: &AuditKey,
    seq: u64,
    hash: &[u8],
) -> Result<(), Error> {
    let ends_there = match store.audit_head() {
        Ok(None) => seq == 0,
        Ok(Some(head)) => {
            head.seq == seq
                && bool::from(head.hash.ct_eq(hash))
                && bool::from(key.head_mac(seq, hash).ct_eq(&head.mac))
        }
        // A head that does not read was written by no keygate.
        Err(keygate_store::Error::Corrupt { .. }) => false,
        Err(e) => return Err(e.into()),
    };
    if ends_there {
        Ok(())
    } else {
        Err(Error::Tampered {
            seq,
            reason: "the log does not end at its recorded head (events were cut from its end)"
                .into(),
        })
    }
}

/// A page of the log as [`read_readable`] reads it.
pub struct ReadablePage {
    /// The events that decode, with their seq.
    pub events: Vec<(u64, Event)>,
    /// The seq of the last row read, to go on from; `None` past the end.
    pub read_to: Option<u64>,
}

/// [`read_unverified`], but an event whose body is not a keygate event (tampering, which [`verify`]
/// names) is left out rather than failing the page: the commands that show the log as
/// it stands still show the rest of it.
pub fn read_readable(store: &Store, from: u64, limit: u64) -> Result<ReadablePage, Error> {
    let rows = events(store, from, limit)?;
    let read_to = rows.last().map(|row| row.seq);
    let events = rows
        .into_iter()
        .filter_map(|row| {
            serde_json::from_str::<Event>(&row.body)
                .ok()
                .map(|event| (row.seq, event))
        })
        .collect();
    Ok(ReadablePage { events, read_to })
}

/// Reads events with `seq >= from`, decoded, with their seq, without checking them
/// against the chain: for callers that verified the log first (`audit verify` reading
/// its first event) or that need no proof (tests). [`read_verified`] checks each event.
pub fn read_unverified(store: &Store, from: u64, limit: u64) -> Result<Vec<(u64, Event)>, Error> {
    decoded(events(store, from, limit)?)
}

/// [`read_unverified`] of the events with `from <= seq < until` alone: the events before
/// one that does not decode, read whatever gaps lie before it (by count, a gap where
/// events were deleted would bring the bad one into the read).
pub fn read_unverified_before(
    store: &Store,
    from: u64,
    until: u64,
) -> Result<Vec<(u64, Event)>, Error> {
    let mut rows = events(store, from, until.saturating_sub(from))?;
    rows.retain(|row| row.seq < until);
    decoded(rows)
}

/// `rows` decoded, each with its seq; a body that is not an event is tampering.
fn decoded(rows: Vec<EventRow>) -> Result<Vec<(u64, Event)>, Error> {
    rows.into_iter()
        .map(|row| {
            serde_json::from_str::<Event>(&row.body)
                .map(|event| (row.seq, event))
                .map_err(|e| Error::Tampered {
                    seq: row.seq,
                    reason: format!("body is not a keygate event: {e}"),
                })
        })
        .collect()
}

/// A seq at or before the first event written at or after `ts_ms`, found by bisection:
/// every event from it on is read to find those of a period (today's, for the daily
/// limits) without reading the whole log. Events are written in time order up to the
/// background batch window and the background events an event someone waits on may pass
/// (made at most [`MAX_PASSED_MS`] before it), so the search aims a minute early.
pub fn seq_near(store: &Store, ts_ms: u64) -> Result<u64, Error> {
    let target = ts_ms.saturating_sub(60_000);
    let (mut low, mut high) = (1, last_seq(store)? + 1);
    // Invariant: events before `low` are older than `target`; `high` is past the end or
    // at or after it.
    while low < high {
        let mid = low + (high - low) / 2;
        match events(store, mid, 1)?.first() {
            Some(row) if row.ts_ms < target => low = mid + 1,
            _ => high = mid,
        }
    }
    Ok(low)
}

/// Hands `each` every event written from about `since_ms` on, in order, a page at a
/// time, each verified as [`read_verified`] verifies them, until `each` says to stop
/// (`false`) or the log ends. Events a little before `since_ms` may come too; `each`
/// filters by time. The time index ([`seq_near`]) is only a hint: the verified event
/// before where it points must be older than `since_ms`, else the reading starts further
/// back, so that a timestamp edited ahead cannot hide where the period starts. The log
/// must end at the head its last append recorded: events cut from its end (the day's
/// last withdrawals, say) are tampering, not a quieter day.
pub fn for_each_verified_since(
    store: &Store,
    key: &AuditKey,
    since_ms: u64,
    mut each: impl FnMut(&[(u64, Event)]) -> bool,
) -> Result<(), Error> {
    const EVENTS_PER_PAGE: u64 = 10_000;
    let mut from = seq_near(store, since_ms)?;
    let mut step = 1;
    while from > 1 {
        let before = read_verified(store, key, from - 1, 1)?;
        if before.first().is_none_or(|(_, e)| e.ts_ms < since_ms) {
            break;
        }
        from = from.saturating_sub(step).max(1);
        step = step.saturating_mul(2);
    }
    loop {
        let page = store.read_snapshot(|store| {
            Ok((|| {
                let (from, prev) = archive::start(store, key, from)?;
                let (rows, last_hash) = rows_chained_to(store, key, prev, from, EVENTS_PER_PAGE)?;
                if rows.is_empty() {
                    ends_at_head(store, key, from - 1, &last_hash)?;
                }
                decoded(rows)
            })())
        })??;
        let Some((last, _)) = page.last() else {
            return Ok(());
        };
        from = last + 1;
        if !each(&page) {
            return Ok(());
        }
    }
}

/// The seq of the last event, or 0.
pub fn last_seq(store: &Store) -> Result<u64, Error> {
    Ok(store.last_event()?.map_or(0, |r| r.seq))
}

#[cfg(test)]
mod tests {
    use keygate_core::{AdminEvent, EventBody};

    use super::*;

    fn now_ms() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64
    }

    fn bounds(anonymous: usize, of_clients: usize, per_client: usize) -> Bounds {
        Bounds {
            anonymous,
            of_clients,
            per_client,
            ..Bounds::default()
        }
    }

    /// An event about client `bot{n}`, made now.
    fn event(n: usize) -> Event {
        Event {
            ts_ms: now_ms(),
            body: EventBody::Admin(AdminEvent {
                actor: "test".into(),
                change: "client.freeze".into(),
                target: format!("bot{n}"),
                detail: serde_json::Value::Null,
            }),
        }
    }

    fn open() -> (tempfile::TempDir, std::path::PathBuf, AuditKey) {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("keygate.db");
        Store::create(&db).unwrap();
        (dir, db, AuditKey::from_bytes(&[9; 32]))
    }

    #[test]
    fn seq_near_lands_a_minute_before_the_time_asked_for() {
        let (_dir, db, key) = open();
        let store = Store::open(&db).unwrap();
        assert_eq!(seq_near(&store, 1_000_000).unwrap(), 1, "an empty log");
        let minutes: Vec<Event> = (1..=10)
            .map(|i| Event {
                ts_ms: i * 60_000,
                ..event(i as usize)
            })
            .collect();
        append_within(&store, &key, &minutes).unwrap();
        // Seq i was written at minute i.
        assert_eq!(seq_near(&store, 5 * 60_000).unwrap(), 4);
        assert_eq!(seq_near(&store, 5 * 60_000 + 1).unwrap(), 5);
        assert_eq!(seq_near(&store, 0).unwrap(), 1);
        assert_eq!(seq_near(&store, 100 * 60_000).unwrap(), 11, "past the end");
    }

    #[test]
    fn a_checkpoint_catches_a_log_put_back_as_it_was_earlier() {
        let (dir, db, key) = open();
        let log = AuditLog::start(&db, key.clone()).unwrap();
        for n in 1..=3 {
            log.append_blocking(event(n)).unwrap();
        }
        // The database as it is now, as a backup would keep it.
        let earlier = dir.path().join("earlier.db");
        let store = Store::open(&db).unwrap();
        store
            .connection()
            .execute("VACUUM INTO ?1", [earlier.to_str().unwrap()])
            .unwrap();
        for n in 4..=5 {
            log.append_blocking(event(n)).unwrap();
        }
        let taken = checkpoint(&store, &key).unwrap();
        assert_eq!(taken.seq, 5);
        assert_eq!(
            verify_checkpoints(&store, &key, std::slice::from_ref(&taken))
                .unwrap()
                .events,
            5
        );

        // Put back, the earlier copy verifies on its own, and fails against the checkpoint.
        let rolled_back = Store::open(&earlier).unwrap();
        assert_eq!(verify(&rolled_back, &key).unwrap(), 3);
        assert!(matches!(
            verify_checkpoints(&rolled_back, &key, std::slice::from_ref(&taken)),
            Err(Error::Tampered { seq: 4, .. })
        ));
        // So does the check of one event alone that each change makes before anchoring
        // itself, and still when the put-back log has grown past the checkpoint since,
        // with other events.
        holds_checkpoint(&store, &key, &taken).unwrap();
        assert!(matches!(
            holds_checkpoint(&rolled_back, &key, &taken),
            Err(Error::Tampered { seq: 4, .. })
        ));
        append_within(&rolled_back, &key, &[event(6), event(7)]).unwrap();
        assert!(matches!(
            holds_checkpoint(&rolled_back, &key, &taken),
            Err(Error::Tampered { seq: 5, .. })
        ));
        // A checkpoint this vault did not make, or one altered, is refused as such.
        let forged = Checkpoint {
            seq: 3,
            ..taken.clone()
        };
        let other_key = AuditKey::from_bytes(&[1; 32]);
        for (checkpoint, key) in [(&forged, &key), (&taken, &other_key)] {
            assert!(matches!(
                verify_checkpoints(&store, key, std::slice::from_ref(checkpoint)),
                Err(Error::BadCheckpoint { .. })
            ));
        }
    }

    /// A regression test: events cut off the end of the log were hidden by the next
    /// append, which chained after what was left and moved the head there, so that
    /// `verify` passed. An append now refuses a log that does not end at its head.
    #[test]
    fn an_admin_change_is_found_only_among_events_that_verify() {
        let (_dir, db, key) = open();
        let store = Store::open(&db).unwrap();
        let lost = Event {
            ts_ms: now_ms(),
            body: EventBody::Lost(LostEvents {
                funds_denied: Default::default(),
                count: 1,
                first_ms: 1,
                last_ms: 2,
                clients: BTreeMap::new(),
                outcomes: Vec::new(),
            }),
        };
        append_within(&store, &key, &[event(1), event(2), lost]).unwrap();
        assert!(admin_change_after(&store, &key, 1).unwrap());
        assert!(!admin_change_after(&store, &key, 2).unwrap());
        assert!(!admin_change_after(&store, &key, 3).unwrap());
        // Edited to read otherwise, the change is no longer found, and that is an error.
        store
            .connection()
            .execute(
                r#"UPDATE events SET body = replace(body, '"type":"admin"', '"type": "admin"') WHERE seq = 2"#,
                [],
            )
            .unwrap();
        assert!(matches!(
            admin_change_after(&store, &key, 1),
            Err(Error::Tampered { seq: 2, .. })
        ));
        // So is an anchor whose MAC does not verify.
        store
            .connection()
            .execute("UPDATE events SET mac = x'00' WHERE seq = 1", [])
            .unwrap();
        assert!(matches!(
            admin_change_after(&store, &key, 1),
            Err(Error::Tampered { seq: 1, .. })
        ));
    }

    /// `verify`, walking `page` events per snapshot.
    fn verify_paged(store: &Store, key: &AuditKey, page: u64) -> Result<u64, Error> {
        verify_then(store, key, 1, page, |_, verified| Ok(verified.events))
    }

    /// Found by review: a verification walking its pages while `audit archive` removed
    /// the events it had not reached yet (archive keeps serve out, not readers) named
    /// the first of them missing, as tampering; `audit checkpoint --append` then
    /// refused to append, as for a vault put back from a backup.
    #[test]
    fn a_log_archived_while_it_is_verified_still_verifies() {
        let (_dir, db, key) = open();
        let mut archiving = Store::open(&db).unwrap();
        let old: Vec<Event> = (0..6)
            .map(|i| Event {
                ts_ms: 1,
                ..event(i)
            })
            .collect();
        append_within(&archiving, &key, &old).unwrap();
        append_within(&archiving, &key, &(6..9).map(event).collect::<Vec<_>>()).unwrap();
        let store = Store::open(&db).unwrap();
        let mut pages = 0;
        let verified = verify_pausing(
            &store,
            &key,
            1,
            2,
            None,
            || {
                pages += 1;
                if pages == 1 {
                    let through = write_archive(&archiving, &key, 2, &mut Vec::new())
                        .unwrap()
                        .unwrap();
                    archiving
                        .transaction(|s| remove_archived_within(s, &key, &through))
                        .unwrap();
                }
            },
            |_, verified| Ok(verified),
        )
        .unwrap();
        assert_eq!((verified.events, verified.archived_through), (9, 6));
    }

    /// Found by review: `audit export` verified the log, then read it again to write
    /// it, so a row changed between the two was written, and the export exited 0. What
    /// is handed now is what verified: a row changed while the walk goes on is caught
    /// when it is reached, and not handed; the pages before it were.
    #[test]
    fn only_what_verified_is_handed_on() {
        let (_dir, db, key) = open();
        let store = Store::open(&db).unwrap();
        append_within(&store, &key, &(1..=9).map(event).collect::<Vec<_>>()).unwrap();
        let mut handed = Vec::new();
        let verified = verify_checkpoints_handing(&store, &key, &[], |page| {
            handed.extend(page.into_iter().map(|(seq, _)| seq));
        })
        .unwrap();
        assert_eq!(verified.events, 9);
        assert_eq!(handed, (1..=9).collect::<Vec<_>>());

        let mut handed = Vec::new();
        let mut pages = 0;
        let refused = verify_pausing(
            &store,
            &key,
            1,
            2,
            Some(&mut |page: Vec<(u64, Event)>| {
                handed.extend(page.into_iter().map(|(seq, _)| seq));
            }),
            || {
                pages += 1;
                if pages == 2 {
                    store
                        .connection()
                        .execute(
                            "UPDATE events SET body = replace(body, 'bot', 'b0t') WHERE seq = 6",
                            [],
                        )
                        .unwrap();
                }
            },
            |_, verified| Ok(verified),
        );
        assert!(matches!(refused, Err(Error::Tampered { seq: 6, .. })));
        assert_eq!(handed, [1, 2, 3, 4]);
    }

    #[test]
    fn a_log_verified_page_by_page_is_checked_across_page_ends() {
        let (_dir, db, key) = open();
        let store = Store::open(&db).unwrap();
        let events: Vec<Event> = (0..7).map(event).collect();
        append_within(&store, &key, &events).unwrap();
        // A last page cut short, and pages that end exactly at the last event.
        for page in [1, 2, 3, 7, 8] {
            assert_eq!(verify_paged(&store, &key, page).unwrap(), 7, "page {page}");
        }
        // An event edited in a later page than the first is named.
        store
            .connection()
            .execute("UPDATE events SET body = body || ' ' WHERE seq = 5", [])
            .unwrap();
        for page in [2, 3, 4] {
            assert!(
                matches!(
                    verify_paged(&store, &key, page),
                    Err(Error::Tampered { seq: 5, .. })
                ),
                "page {page}"
            );
        }
    }

    #[test]
    fn a_log_cut_short_at_a_page_end_is_caught() {
        let (_dir, db, key) = open();
        let store = Store::open(&db).unwrap();
        let events: Vec<Event> = (0..6).map(event).collect();
        append_within(&store, &key, &events).unwrap();
        store
            .connection()
            .execute("DELETE FROM events WHERE seq > 4", [])
            .unwrap();
        for page in [2, 4, 5] {
            assert!(
                matches!(
                    verify_paged(&store, &key, page),
                    Err(Error::Tampered { seq: 5, .. })
                ),
                "page {page}"
            );
        }
    }

    /// A regression test: verification held one read snapshot for the whole log, which
    /// keeps SQLite from resetting its write-ahead log for as long (minutes for a long
    /// log, while `serve` writes). Walked page by page, events appended meanwhile must
    /// not read as a log cut short (the head and the last page are read together).
    #[test]
    fn events_appended_while_a_log_is_verified_page_by_page_do_not_read_as_tampering() {
        let (_dir, db, key) = open();
        let log = AuditLog::start(&db, key.clone()).unwrap();
        for n in 0..300 {
            log.append(event(n));
        }
        log.flush().unwrap();
        let stop = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|scope| {
            scope.spawn(|| {
                let mut n = 1000;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    log.append_blocking(event(n)).unwrap();
                    n += 1;
                }
            });
            let store = Store::open(&db).unwrap();
            for _ in 0..5 {
                let verified = verify_paged(&store, &key, 1).unwrap();
                assert!(verified >= 300, "{verified}");
            }
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
        });
    }

    /// Found by review: `/healthz` asked only whether the writer thread was there, so a
    /// gateway whose every commit failed (the database locked, the disk full), and that
    /// refused every order, looked healthy. The writer says why its last commit failed,
    /// until one succeeds.
    #[test]
    fn the_log_says_while_its_commits_fail() {
        let (_dir, db, key) = open();
        let log = AuditLog::start(&db, key).unwrap();
        log.append_blocking(event(1)).unwrap();
        assert!(log.failing().is_none());
        let blocker = Store::open(&db).unwrap();
        blocker
            .connection()
            .execute_batch("BEGIN IMMEDIATE")
            .unwrap();
        // Regression: a commit that failed was reported as an event that does not
        // serialize, which sent an operator with a full disk looking for a bug.
        let refused = log.append_blocking(event(2)).unwrap_err();
        assert!(matches!(refused, Error::NotWritten { .. }), "{refused:?}");
        assert!(
            refused
                .to_string()
                .starts_with("the audit event was not written: "),
            "{refused}"
        );
        let failing = log.failing().expect("the failed commit's reason");
        assert!(matches!(failing, Error::NotWritten { .. }), "{failing:?}");
        assert!(failing.to_string().contains("locked"), "{failing}");
        assert!(log.is_writing());
        blocker.connection().execute_batch("ROLLBACK").unwrap();
        // Found by review: the flag cleared only with the next commit, which an idle
        // gateway never makes, so `/healthz` stayed 503. The writer tries again on its own.
        let deadline = Instant::now() + Duration::from_secs(10);
        while log.failing().is_some() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(log.failing().is_none());
        log.append_blocking(event(3)).unwrap();
        assert!(log.failing().is_none());
    }

    /// The day's events are read back to count the daily limits when `serve` starts: a
    /// log whose last events were cut (the day's withdrawals) is tampering, not a day
    /// with less in it.
    #[test]
    fn reading_a_period_back_refuses_a_log_cut_short() {
        let (_dir, db, key) = open();
        let store = Store::open(&db).unwrap();
        let events: Vec<Event> = (0..5).map(event).collect();
        append_within(&store, &key, &events).unwrap();
        let count = |store: &Store| {
            let mut seen = 0;
            for_each_verified_since(store, &key, 0, |page| {
                seen += page.len();
                true
            })
            .map(|()| seen)
        };
        assert_eq!(count(&store).unwrap(), 5);
        store
            .connection()
            .execute("DELETE FROM events WHERE seq >= 4", [])
            .unwrap();
        let cut = count(&store);
        assert!(
            matches!(cut, Err(Error::Tampered { seq: 3, .. })),
            "{cut:?}"
        );
        // An empty log whose head says it had events, too.
        store
            .connection()
            .execute("DELETE FROM events", [])
            .unwrap();
        let emptied = count(&store);
        assert!(
            matches!(emptied, Err(Error::Tampered { seq: 0, .. })),
            "{emptied:?}"
        );
    }

    #[test]
    fn nothing_is_appended_to_a_log_cut_short_so_the_cut_stays_visible() {
        let (_dir, db, key) = open();
        let store = Store::open(&db).unwrap();
        append_within(&store, &key, &[event(1), event(2), event(3)]).unwrap();
        let cut = |sql: &str| store.connection().execute(sql, []).unwrap();
        cut("DELETE FROM events WHERE seq >= 2");
        let refused = append_within(&store, &key, &[event(4)]);
        assert!(
            matches!(
                refused,
                Err(Error::Store(keygate_store::Error::LogDiverged {
                    last: Some(1),
                    head: Some(3)
                }))
            ),
            "{refused:?}"
        );
        let log = AuditLog::start(&db, key.clone()).unwrap();
        assert!(log.append_blocking(event(5)).is_err());
        assert!(matches!(
            verify(&store, &key),
            Err(Error::Tampered { seq: 2, .. })
        ));
        // Emptied, head and all, the log takes events again: the CLI's verify catches
        // that it no longer begins with the vault's init event.
        cut("DELETE FROM events");
        cut("DELETE FROM meta WHERE key = 'audit_head'");
        assert_eq!(append_within(&store, &key, &[event(6)]).unwrap(), 1);
        // A head whose MAC this key did not make is refused too.
        let other = AuditKey::from_bytes(&[1; 32]);
        assert!(append_within(&store, &other, &[event(7)]).is_err());
    }

    /// Found by review: SQLite's write-ahead log keeps earlier copies of the recorded
    /// head, each with a valid MAC, so a log cut back to one (its later events deleted,
    /// that head put back) verified, and `serve` went on appending after the cut. The
    /// writer now appends nothing to a log that no longer holds the last event it wrote
    /// or found; events another process appends after it are no matter.
    #[test]
    fn the_writer_appends_nothing_to_a_log_cut_back_to_an_earlier_head() {
        let (_dir, db, key) = open();
        let store = Store::open(&db).unwrap();
        append_within(&store, &key, &[event(1)]).unwrap();
        let log = AuditLog::start(&db, key.clone()).unwrap();
        let raw_head = || -> Vec<u8> {
            store
                .connection()
                .query_row("SELECT value FROM meta WHERE key = 'audit_head'", [], |r| {
                    r.get(0)
                })
                .unwrap()
        };
        assert_eq!(log.append_blocking(event(2)).unwrap(), 2);
        let earlier = raw_head();
        assert_eq!(log.append_blocking(event(3)).unwrap(), 3);
        // The command line appends after the writer's last event: no cut.
        append_within(&store, &key, &[event(4)]).unwrap();
        assert_eq!(log.append_blocking(event(5)).unwrap(), 5);

        let cut = store.connection();
        cut.execute("DELETE FROM events WHERE seq > 2", []).unwrap();
        cut.execute(
            "UPDATE meta SET value = ?1 WHERE key = 'audit_head'",
            [&earlier],
        )
        .unwrap();
        // What the database holds verifies: only the writer can tell.
        assert_eq!(verify(&store, &key).unwrap(), 2);
        let refused = log.append_blocking(event(6));
        let Err(Error::NotWritten { cause }) = &refused else {
            panic!("{refused:?}");
        };
        assert!(
            matches!(**cause, keygate_store::Error::LogCutShort { seq: 5 }),
            "{cause:?}"
        );
        assert_eq!(verify(&store, &key).unwrap(), 2);
        // A writer that did not see the log before the cut cannot tell: that takes a
        // checkpoint kept elsewhere (`keygate audit checkpoint`).
        drop(log);
        let restarted = AuditLog::start(&db, key.clone()).unwrap();
        assert_eq!(restarted.append_blocking(event(7)).unwrap(), 3);
    }

    /// Found by review: the last events cut with the head were reported at event 1,
    /// which is as it was, and the operator looked at the wrong end of the log.
    #[test]
    fn a_log_cut_with_its_head_is_named_where_it_ends() {
        let (_dir, db, key) = open();
        let log = AuditLog::start(&db, key.clone()).unwrap();
        for n in 1..=5 {
            log.append_blocking(event(n)).unwrap();
        }
        let store = Store::open(&db).unwrap();
        store
            .connection()
            .execute_batch(
                "DELETE FROM events WHERE seq > 3; DELETE FROM meta WHERE key = 'audit_head'",
            )
            .unwrap();
        let refused = verify(&store, &key).unwrap_err();
        assert!(
            matches!(&refused, Error::Tampered { seq: 4, reason } if reason.contains("after 3")),
            "{refused}"
        );
    }

    #[test]
    fn events_appended_within_a_transaction_commit_with_it_or_not_at_all() {
        let (_dir, db, key) = open();
        let log = AuditLog::start(&db, key.clone()).unwrap();
        log.append_blocking(event(1)).unwrap();
        let mut store = Store::open(&db).unwrap();
        let failed: Result<(), Error> = store.transaction(|s| {
            append_within(s, &key, &[event(2)])?;
            Err(Error::Encode("the change failed".into()))
        });
        assert!(failed.is_err());
        assert_eq!(
            verify(&store, &key).unwrap(),
            1,
            "the event outlived its change"
        );
        let seq = store
            .transaction(|s| append_within(s, &key, &[event(2), event(3)]))
            .unwrap();
        assert_eq!(seq, 3);
        // The writer thread chains after rows another connection wrote.
        assert_eq!(log.append_blocking(event(4)).unwrap(), 4);
        assert_eq!(verify(&store, &key).unwrap(), 4);
    }

    #[test]
    fn background_events_are_committed_within_the_batch_window() {
        let (_dir, db, key) = open();
        let log = AuditLog::start(&db, key.clone()).unwrap();
        for n in 0..10 {
            log.append(event(n));
        }
        let store = Store::open(&db).unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while last_seq(&store).unwrap() < 10 {
            assert!(
                Instant::now() < deadline,
                "background events never committed"
            );
            thread::sleep(BACKGROUND_BATCH_WINDOW / 4);
        }
        assert_eq!(verify(&store, &key).unwrap(), 10);
    }

    /// Another connection's write transaction: the writer waits for it, as it would for
    /// a stalled disk, until [`release`] ends it.
    fn hold_write_lock(db: &Path) -> Store {
        let store = Store::open(db).unwrap();
        store.connection().execute_batch("BEGIN IMMEDIATE").unwrap();
        store
    }

    fn release(store: Store) {
        store.connection().execute_batch("COMMIT").unwrap();
    }

    #[test]
    fn under_a_flood_a_durable_event_waits_behind_a_bounded_backlog_only() {
        let (_dir, db, key) = open();
        let bound = 100;
        let log = AuditLog::start_bounded(&db, key.clone(), bounds(bound, bound, bound)).unwrap();
        let stalled = hold_write_lock(&db);
        for _ in 0..(20 * bound) {
            log.append(anonymous_event());
        }
        let (tx, rx) = mpsc::channel();
        log.append_durable(event(0), Box::new(move |seq| tx.send(seq).unwrap()));
        release(stalled);
        let seq = rx.recv().unwrap().unwrap();
        // The batch the writer had taken, the queue's bound, and the records of losses.
        assert!(
            seq <= 2 * bound as u64 + 3,
            "waited behind the flood: seq {seq}"
        );
        log.flush().unwrap();
        let store = Store::open(&db).unwrap();
        assert!(verify(&store, &key).unwrap() <= 2 * bound as u64 + 3);
    }

    /// A regression test: events were written in the order they were queued, so under a
    /// flood of refused requests an order's event waited until the writer had committed
    /// every event queued before it (up to half a second on a two-core machine).
    #[test]
    fn a_durable_event_passes_the_background_events_queued_before_it() {
        let (_dir, db, key) = open();
        let log = AuditLog::start(&db, key.clone()).unwrap();
        let stalled = hold_write_lock(&db);
        let flood = 4 * MAX_BATCH;
        for _ in 0..flood {
            log.append(anonymous_event());
        }
        // The writer takes the flood as one batch, and waits on the lock to commit it.
        thread::sleep(3 * BACKGROUND_BATCH_WINDOW);
        let (tx, rx) = mpsc::channel();
        log.append_durable(event(0), Box::new(move |seq| tx.send(seq).unwrap()));
        release(stalled);
        let seq = rx.recv().unwrap().unwrap();
        assert!(
            seq <= MAX_BATCH as u64 + 1,
            "waited behind the whole batch: seq {seq}"
        );
        // Within one batch too, an event someone waits on goes first.
        let stalled = hold_write_lock(&db);
        for _ in 0..flood {
            log.append(anonymous_event());
        }
        let (tx, rx) = mpsc::channel();
        log.append_durable(event(1), Box::new(move |seq| tx.send(seq).unwrap()));
        release(stalled);
        let second = rx.recv().unwrap().unwrap();
        assert!(
            second <= (flood + 1 + MAX_BATCH + 1) as u64,
            "waited behind the whole batch: seq {second} after {seq}"
        );
        log.flush().unwrap();
        let store = Store::open(&db).unwrap();
        // Nothing was lost or written twice.
        assert_eq!(verify(&store, &key).unwrap(), 2 * flood as u64 + 2);
        let durable = read_unverified(&store, 1, 100_000)
            .unwrap()
            .into_iter()
            .filter(|(_, e)| matches!(&e.body, EventBody::Admin(a) if a.change == "client.freeze"))
            .map(|(seq, _)| seq)
            .collect::<Vec<_>>();
        assert_eq!(durable, [seq, second]);
    }

    fn outcome_of(request_id: &str) -> Event {
        Event {
            ts_ms: now_ms(),
            body: EventBody::Outcome(keygate_core::OutcomeEvent {
                request_id: request_id.into(),
                client: Some("bot1".into()),
                upstream_status: Some(200),
                latency_us: 1,
                outcome: keygate_core::Outcome::Answered,
                order_ids: vec!["42".into()],
                interrupted: false,
            }),
        }
    }

    /// A regression test (from a review of the first version, which let an order's event
    /// pass every event nobody waited on): the outcome of an order answered before the
    /// next order was sent stays before that order's event.
    #[test]
    fn an_outcome_is_not_passed_by_the_next_order() {
        let (_dir, db, key) = open();
        let log = AuditLog::start(&db, key.clone()).unwrap();
        let stalled = hold_write_lock(&db);
        for _ in 0..(2 * MAX_BATCH) {
            log.append(anonymous_event());
        }
        log.append_kept(outcome_of("order-a"));
        let (tx, rx) = mpsc::channel();
        log.append_durable(event(7), Box::new(move |seq| tx.send(seq).unwrap()));
        release(stalled);
        let order_b = rx.recv().unwrap().unwrap();
        log.flush().unwrap();
        let store = Store::open(&db).unwrap();
        let events = read_unverified(&store, 1, 100_000).unwrap();
        let seq_of = |wanted: fn(&EventBody) -> bool| {
            events
                .iter()
                .find(|(_, e)| wanted(&e.body))
                .map(|(seq, _)| *seq)
        };
        let outcome_a = seq_of(|body| matches!(body, EventBody::Outcome(_))).unwrap();
        assert!(
            outcome_a < order_b,
            "outcome a {outcome_a}, order b {order_b}"
        );
        // Both passed the reads (in one batch, or the order after the batch's first chunk).
        assert!(
            order_b <= MAX_BATCH as u64 + 2,
            "order b waited: seq {order_b}"
        );
    }

    /// A regression test (from a review of the first version): an event someone waits on
    /// passed background events made long before it (waiting behind a stalled disk), past
    /// the disorder [`seq_near`] allows for, and reading the log from a time missed it.
    #[test]
    fn a_durable_event_passes_no_event_made_long_before_it() {
        let (_dir, db, key) = open();
        let log = AuditLog::start(&db, key.clone()).unwrap();
        // Made two minutes before: further back than the minute `seq_near` allows for.
        let made = now_ms() - 120_000;
        let stalled = hold_write_lock(&db);
        for _ in 0..(3 * MAX_BATCH) {
            log.append(Event {
                ts_ms: made,
                ..anonymous_event()
            });
        }
        thread::sleep(3 * BACKGROUND_BATCH_WINDOW);
        let (tx, rx) = mpsc::channel();
        let durable = event(1);
        let durable_ms = durable.ts_ms;
        log.append_durable(durable, Box::new(move |seq| tx.send(seq).unwrap()));
        release(stalled);
        let seq = rx.recv().unwrap().unwrap();
        assert_eq!(seq, 3 * MAX_BATCH as u64 + 1, "written in queue order");
        // Read from when it was made, the reading finds it (written between the old
        // events, bisection would have started past it).
        log.flush().unwrap();
        let store = Store::open(&db).unwrap();
        let mut seen = Vec::new();
        for_each_verified_since(&store, &key, durable_ms, |page| {
            seen.extend(
                page.iter()
                    .filter(|(_, e)| e.ts_ms >= durable_ms)
                    .map(|(s, _)| *s),
            );
            true
        })
        .unwrap();
        assert_eq!(seen, [seq]);
    }

    #[test]
    fn background_events_past_the_bound_are_counted_and_the_count_is_logged() {
        let (_dir, db, key) = open();
        let bound = 100;
        let log = AuditLog::start_bounded(&db, key.clone(), bounds(bound, bound, bound)).unwrap();
        let stalled = hold_write_lock(&db);
        let flood = 350;
        for n in 1..=flood {
            log.append(event(n));
        }
        // An outcome is kept however full the background lane is.
        log.append_kept(event(1000));
        release(stalled);
        log.flush().unwrap();

        let store = Store::open(&db).unwrap();
        let events = read_unverified(&store, 1, 10_000).unwrap();
        assert_eq!(verify(&store, &key).unwrap(), events.len() as u64);
        let mut kept = Vec::new();
        let mut lost = Vec::new();
        for (_, e) in events {
            match e.body {
                EventBody::Admin(a) => kept.push(a.target),
                EventBody::Lost(l) => lost.push(l),
                other => panic!("unexpected event {other:?}"),
            }
        }
        assert!(
            kept.contains(&"bot1000".to_owned()),
            "the kept event was dropped"
        );
        let lost_count: u64 = lost.iter().map(|l| l.count).sum();
        assert_eq!(kept.len() as u64 - 1 + lost_count, flood as u64);
        // The writer holds one batch and the queue one more: no more is kept.
        assert!(lost_count >= (flood - 2 * bound) as u64, "{lost:?}");
        for l in &lost {
            assert!(l.first_ms <= l.last_ms);
            // Each lost event named its client.
            assert_eq!(l.clients.values().sum::<u64>(), l.count);
        }
        // Once the writer caught up, background events are kept again.
        log.append(event(2000));
        log.flush().unwrap();
        let last = read_unverified(&store, last_seq(&store).unwrap(), 1).unwrap();
        assert_eq!(last[0].1.client(), Some("bot2000"));
    }

    #[test]
    fn a_replayed_request_counts_against_requests_without_a_valid_key() {
        let (_dir, db, key) = open();
        let log = AuditLog::start_bounded(&db, key.clone(), bounds(5, 100, 100)).unwrap();
        let stalled = hold_write_lock(&db);
        // Stale or replayed requests of bot1: anyone who saw them once could send them.
        for _ in 0..20 {
            log.append_unattributed(event(1));
        }
        // bot1's own requests still have their room.
        for _ in 0..20 {
            log.append(event(1));
        }
        release(stalled);
        log.flush().unwrap();
        let store = Store::open(&db).unwrap();
        let events = read_unverified(&store, 1, 1000).unwrap();
        let kept = events
            .iter()
            .filter(|(_, e)| e.client() == Some("bot1"))
            .count();
        assert!((25..=30).contains(&kept), "{kept} kept");
    }

    #[test]
    fn durable_events_past_their_bound_are_refused_at_once() {
        let (_dir, db, key) = open();
        let log = AuditLog::start_bounded(
            &db,
            key.clone(),
            Bounds {
                kept: 2,
                ..Bounds::default()
            },
        )
        .unwrap();
        let stalled = hold_write_lock(&db);
        let (tx, rx) = mpsc::channel();
        let mut queued = Vec::new();
        for n in 0..6 {
            let tx = tx.clone();
            // The receiver is gone only once the test has failed.
            queued.push(log.append_durable(event(n), Box::new(move |r| drop(tx.send((n, r))))));
        }
        // Two wait at most, and the writer takes one batch of those that waited before it
        // stalls on the lock, whenever it woke: the first two are taken, four at most.
        let taken = queued.iter().filter(|q| **q).count();
        assert!(queued[..2].iter().all(|q| *q), "{queued:?}");
        assert!((2..=4).contains(&taken), "{queued:?}");
        // Those past the bound are refused at once, before anything is written.
        for _ in taken..queued.len() {
            let (n, refused) = rx.recv().unwrap();
            assert!(n >= 2 && !queued[n], "{n}: {refused:?}");
            assert!(
                matches!(refused, Err(Error::TooFarBehind { waiting: 2 })),
                "{n}: {refused:?}"
            );
        }
        release(stalled);
        drop(tx);
        let written = rx.iter().filter(|(_, r)| r.is_ok()).count();
        assert_eq!(written, taken);
    }

    /// An event that names no client, as a request without a valid key makes.
    fn anonymous_event() -> Event {
        Event {
            ts_ms: now_ms(),
            body: EventBody::Admin(AdminEvent {
                actor: "test".into(),
                change: "account.add".into(),
                target: "main".into(),
                detail: serde_json::Value::Null,
            }),
        }
    }

    /// The records of losses among `events`.
    fn records_of_losses(events: &[(u64, Event)]) -> Vec<&LostEvents> {
        events
            .iter()
            .filter_map(|(_, e)| match &e.body {
                EventBody::Lost(l) => Some(l),
                _ => None,
            })
            .collect()
    }

    /// Found by review: a frozen key's denied withdrawals, refused before they could be
    /// the client's own and so queued with requests without a valid key, were lost in a
    /// flood of those and counted with them. They are counted by the key they presented.
    #[test]
    fn lost_denials_of_funds_movements_are_counted_by_the_key_they_presented() {
        let request = |action, allowed, key_of: &str| Event {
            ts_ms: 1,
            body: EventBody::Request(keygate_core::RequestEvent {
                request_id: "r".into(),
                exchange: "binance".into(),
                client: None,
                key_of: Some(key_of.into()),
                account: None,
                source_ip: "192.0.2.1".into(),
                method: "POST".into(),
                path: "/sapi/v1/capital/withdraw/apply".into(),
                action,
                symbol: None,
                side: None,
                client_order_id: None,
                notional: None,
                amount: None,
                asset: None,
                destination: None,
                network: None,
                allowed,
                rule: (!allowed).then_some(keygate_core::Rule::Frozen),
                message: None,
                upstream_status: None,
                latency_us: None,
                outcome: keygate_core::Outcome::NotForwarded,
                validates_only: false,
                previous_key: false,
                forwarded_by: None,
                places_no_order: false,
                orders: Vec::new(),
                terms: None,
            }),
        };
        let mut lost = None;
        count_lost(&mut lost, &request(ActionKind::Withdraw, false, "bot9"));
        count_lost(&mut lost, &request(ActionKind::Transfer, false, "bot9"));
        count_lost(&mut lost, &request(ActionKind::Trade, false, "bot9"));
        count_lost(&mut lost, &request(ActionKind::Withdraw, true, "bot8"));
        let mut merged = None;
        merge_lost(&mut merged, lost.clone().unwrap());
        merge_lost(&mut merged, lost.unwrap());
        let merged = merged.unwrap();
        assert_eq!(merged.count, 8);
        assert_eq!(merged.funds_denied, [("bot9".to_owned(), 4)].into());
    }

    #[test]
    fn requests_without_a_valid_key_cannot_crowd_out_a_clients_events() {
        let (_dir, db, key) = open();
        let bound = 100;
        let log = AuditLog::start_bounded(&db, key.clone(), bounds(bound, bound, bound)).unwrap();
        let stalled = hold_write_lock(&db);
        for _ in 0..(3 * bound) {
            log.append(anonymous_event());
        }
        for n in 0..50 {
            log.append(event(n));
        }
        release(stalled);
        log.flush().unwrap();
        let store = Store::open(&db).unwrap();
        let events = read_unverified(&store, 1, 10_000).unwrap();
        let of_clients = events.iter().filter(|(_, e)| e.client().is_some()).count();
        assert_eq!(of_clients, 50, "a client's event was dropped");
        let lost = records_of_losses(&events);
        assert!(!lost.is_empty() && lost.iter().all(|l| l.clients.is_empty()));
    }

    #[test]
    fn one_client_cannot_crowd_out_another() {
        let (_dir, db, key) = open();
        let log = AuditLog::start_bounded(&db, key.clone(), bounds(1000, 40, 10)).unwrap();
        let stalled = hold_write_lock(&db);
        // bot1 (or someone replaying its requests) floods; bot2 goes on as usual.
        for _ in 0..100 {
            log.append(event(1));
        }
        for _ in 0..10 {
            log.append(event(2));
        }
        release(stalled);
        log.flush().unwrap();
        let store = Store::open(&db).unwrap();
        let events = read_unverified(&store, 1, 1000).unwrap();
        let of = |name: &str| {
            events
                .iter()
                .filter(|(_, e)| e.client() == Some(name))
                .count()
        };
        assert_eq!(of("bot2"), 10, "bot2's events were crowded out");
        assert!(of("bot1") <= 20, "bot1 kept {} events", of("bot1"));
        let lost_of_bot1: u64 = records_of_losses(&events)
            .iter()
            .filter_map(|l| l.clients.get("bot1"))
            .sum();
        assert_eq!(lost_of_bot1 as usize + of("bot1"), 100);
    }

    /// A regression test (from a review): the writer gave up on the write lock after the
    /// store's 2 s busy timeout, so an administrative change that held it longer made
    /// the orders waiting on their durable events fail.
    #[test]
    fn a_durable_event_waits_out_a_write_lock_held_past_the_busy_timeout() {
        let (_dir, db, key) = open();
        let log = AuditLog::start(&db, key.clone()).unwrap();
        let held = hold_write_lock(&db);
        // Past the 2 s busy timeout, and well before the writer's patience (3 s, then one
        // more busy timeout) runs out on a slow machine.
        let started = Instant::now();
        let releaser = thread::spawn(move || {
            thread::sleep(Duration::from_millis(2_500));
            release(held);
        });
        let seq = log.append_blocking(event(1)).unwrap();
        assert!(
            started.elapsed() >= Duration::from_secs(2),
            "the lock was not held"
        );
        assert_eq!(seq, 1);
        releaser.join().unwrap();
    }

    #[test]
    fn events_whose_commit_fails_are_counted_as_lost() {
        let (_dir, db, key) = open();
        let log = AuditLog::start(&db, key.clone()).unwrap();
        // Held past the writer's patience: its commit fails.
        let stalled = hold_write_lock(&db);
        for n in 0..10 {
            log.append(event(n));
        }
        // What came of a forwarded order, lost with them, is named (found by review: it
        // was counted among reads and denials).
        log.append_kept(Event {
            ts_ms: 10,
            body: EventBody::Outcome(keygate_core::OutcomeEvent {
                request_id: "order-1".into(),
                client: Some("trader".into()),
                upstream_status: Some(200),
                latency_us: 1,
                outcome: keygate_core::Outcome::Answered,
                order_ids: Vec::new(),
                interrupted: false,
            }),
        });
        // Until the writer has given up on the commit (the store's busy timeout) and
        // counted the events as lost.
        let deadline = Instant::now() + Duration::from_secs(30);
        while lock(&log.handle.queue).lost.is_none() {
            assert!(Instant::now() < deadline, "the commit never failed");
            thread::sleep(Duration::from_millis(1));
        }
        release(stalled);
        log.flush().unwrap();
        let store = Store::open(&db).unwrap();
        let events = read_unverified(&store, 1, 100).unwrap();
        assert_eq!(verify(&store, &key).unwrap(), events.len() as u64);
        let [(_, only)] = events.as_slice() else {
            panic!("expected the record of losses alone: {events:?}");
        };
        let EventBody::Lost(lost) = &only.body else {
            panic!("not a record of losses: {only:?}");
        };
        assert_eq!(lost.count, 11);
        assert_eq!(lost.clients.len(), 11);
        assert_eq!(lost.outcomes, ["order-1"]);
    }

    #[test]
    fn a_flush_fails_when_the_losses_before_it_cannot_be_recorded() {
        let (_dir, db, key) = open();
        let log = AuditLog::start(&db, key.clone()).unwrap();
        // Held until the flush has answered: every commit fails, the record of losses
        // too.
        let stalled = hold_write_lock(&db);
        for n in 0..10 {
            log.append(event(n));
        }
        let flushing = {
            let log = log.clone();
            thread::spawn(move || log.flush())
        };
        assert!(
            flushing.join().unwrap().is_err(),
            "the flush said all was written"
        );
        release(stalled);
        log.flush().unwrap();
        let store = Store::open(&db).unwrap();
        let events = read_unverified(&store, 1, 100).unwrap();
        let lost: u64 = records_of_losses(&events).iter().map(|l| l.count).sum();
        assert_eq!(lost, 10, "{events:?}");
    }

    #[test]
    fn dropping_the_last_handle_writes_what_is_queued() {
        let (_dir, db, key) = open();
        let log = AuditLog::start(&db, key.clone()).unwrap();
        let other = log.clone();
        for n in 0..100 {
            log.append(event(n));
        }
        drop(log);
        other.append(event(100));
        drop(other);
        let store = Store::open(&db).unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while last_seq(&store).unwrap() < 101 {
            assert!(Instant::now() < deadline, "queued events lost at shutdown");
            thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(verify(&store, &key).unwrap(), 101);
    }
}
