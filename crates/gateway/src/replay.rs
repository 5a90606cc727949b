//! Remembers recent signatures so that a captured request cannot be sent twice.

use std::collections::hash_map::RandomState;
use std::collections::{BTreeMap, HashMap};
use std::hash::BuildHasher;
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

use hashbrown::hash_table::{Entry, HashTable};

/// How far ahead of a caller's clock the forgotten mark may be before it is taken for the
/// system clock stepped back and let go: the longest window a request may ask for, signed
/// as far ahead as a timestamp may run (61 s).
const CLOCK_STEP_BACK_S: u64 = (keygate_exchanges::LONGEST_WINDOW_MS
    + keygate_exchanges::MAX_TIMESTAMP_AHEAD_MS)
    .div_ceil(1000);

/// Signatures seen inside their window, each kept until its own window ends.
///
/// A signature is remembered as a 96-bit fingerprint (from two SipHash-1-3 with keys
/// chosen at random when the process starts), not as its text: tens of thousands of
/// requests a second over windows of up to a minute are millions of entries, and
/// fixed-size keys keep them small and cheap to rehash. Only signatures that verified get
/// here, and two of them sharing a fingerprint has negligible odds (and would refuse the
/// second, never let a copy through); nobody outside the process knows the keys to aim
/// for one.
///
/// Each is forgotten once its request's own window is over (Binance: its timestamp
/// plus its `recvWindow`), when the timestamp check refuses a copy of it anyway: a bot
/// that asks for five seconds costs five seconds of memory, not the longest window
/// any request may ask for. Fingerprints are filed by the second their window ends in,
/// so forgetting them costs O(1) each, with no sweep of the set under the lock. They are
/// looked up in one set, whatever window a request names: Binance signs the query and
/// the body as one string, so the same bytes cut elsewhere between the two carry the same
/// signature and may parse into another window. For the same reason a fingerprint two
/// requests file (a signature two reads share) is kept for the longer of their windows.
///
/// A fingerprint is also kept for as long as its window had left when it was filed, on a
/// clock that never steps: a host clock stepped forward (an hour, past every window)
/// and back again must not forget a signature whose request is fresh again once the
/// clock is back.
///
/// It remembers nothing from before it was made: a request signed before then may have
/// been used already (by a keygate process that ran before this one), so
/// [`ReplayCache::remembers`] says no to it, and the request is refused.
pub struct ReplayCache {
    fingerprint: (RandomState, RandomState),
    seen: Mutex<Seen>,
    /// When it was made, in microseconds since the epoch: what was signed before is
    /// refused.
    since_us: u64,
    /// The times, from [`TakenEarlier`], that a keygate which ran before could have
    /// taken a request signed at, though this cache was made before them: refused too.
    taken_earlier: OnceLock<TakenEarlier>,
    /// The most fingerprints it holds ([`MAX_FINGERPRINTS`]).
    capacity: usize,
    /// The most of them one client's requests hold ([`MAX_FINGERPRINTS_PER_CLIENT`]).
    client_capacity: usize,
}

/// The most fingerprints the cache holds, two a request: about 120 MB at most, and a
/// million requests inside their windows (ccxt asks for ten seconds: 100 000 a second,
/// several times what keygate serves on two cores). Every verified request is filed, one
/// refused for its client's rate included (its signature must not pass later); past it,
/// requests are refused until windows end, not let through unchecked.
pub const MAX_FINGERPRINTS: usize = 2_000_000;

/// The most fingerprints one client's requests hold: an eighth of the cache (125 000
/// requests inside their windows, 12 500 a second with ccxt's ten seconds), so that one
/// key (a leaked bot's, flooding reads with the longest window) cannot fill it and block
/// every other client's orders and cancels; only eight at once can.
pub const MAX_FINGERPRINTS_PER_CLIENT: usize = MAX_FINGERPRINTS / 8;

/// What a request of [`Reach::Everywhere`] files beside its signature, for reads to be
/// refused by.
const USED_EVERYWHERE: &str = "used everywhere";

/// What [`ReplayCache::sighting`] found of a signature.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sighting {
    /// Not seen before: remembered now, and the request may go on.
    First,
    /// Seen before (a replay), or past what the cache can still tell.
    Seen,
    /// Not seen before, but there is no room to remember it ([`MAX_FINGERPRINTS`],
    /// [`MAX_FINGERPRINTS_PER_CLIENT`]): refused, not let through unchecked.
    Full,
    /// A request of [`Reach::Everywhere`] whose window ends in a second whose
    /// signatures were forgotten, fresh again because the host clock was set back: it
    /// may have been sent before. Refused, until the clock has passed that second again.
    ClockSetBack,
}

/// For which requests a signature counts as used once seen. Binance signs a request's
/// parameters, not its method or path: two reads of different endpoints with the same
/// parameters, signed in the same millisecond (ccxt's `load_markets` asks for margin's
/// pairs and isolated margin's at once), share one signature, and both are the bot's own.
#[derive(Clone, Copy, Debug)]
pub enum Reach<'a> {
    /// Every request: one that trades, cancels or moves money. Refused when the
    /// signature was seen before on any request, so a read's captured signature cannot
    /// be sent again as a cancel; and it refuses every request after it, a read too.
    Everywhere,
    /// Requests to `method path`: a read. Refused when seen there before, or on a
    /// request of [`Reach::Everywhere`]; it refuses those after it too.
    Endpoint {
        /// The request's method.
        method: &'a str,
        /// Its native path.
        path: &'a str,
    },
}

/// A moment as the cache reads it: on the wall clock, which requests' timestamps are on,
/// and on a clock that never steps ([`steady_ms`]), which says how long windows really
/// lasted.
#[derive(Clone, Copy, Debug)]
pub struct Moment {
    /// Milliseconds since the epoch.
    pub wall_ms: u64,
    /// Milliseconds on the steady clock.
    pub steady_ms: u64,
}

impl Moment {
    /// `wall_ms` on the wall clock, and now on the steady one.
    pub fn at(wall_ms: u64) -> Moment {
        Moment {
            wall_ms,
            steady_ms: steady_ms(),
        }
    }
}

/// Milliseconds since the process first asked, on a clock that never steps.
fn steady_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_millis() as u64
}

/// The fingerprints whose windows end in one second, and until when, on the steady
/// clock, the longest of them must be kept.
#[derive(Default)]
struct Ending {
    fingerprints: Vec<u128>,
    /// How many of them each client filed (by [`ReplayCache::client_key`]).
    by_client: HashMap<u64, usize>,
    kept_until_steady_ms: u64,
}

struct Seen {
    live: Live,
    /// How many of `live` each client filed (by [`ReplayCache::client_key`]); one filed
    /// again for a longer window counts for both filings until the shorter ends (more
    /// counted, never less).
    by_client: HashMap<u64, usize>,
    /// The fingerprints whose windows end in each second (since the epoch), soonest first.
    ending: BTreeMap<u64, Ending>,
    /// Every fingerprint whose window ended before this second is forgotten.
    forgotten_before_s: u64,
    /// The seconds (since the epoch) whose fingerprints were forgotten, as a few ranges,
    /// soonest first. Each was in the past when forgotten: only a clock set back since
    /// can make a request whose window ends in one fresh again.
    forgotten: ForgottenSeconds,
}

/// Ranges of seconds, inclusive, sorted and apart; at most [`ForgottenSeconds::MAX`] of
/// them, the closest merged past that (the gap between them counted as forgotten too:
/// more refused, never less).
#[derive(Default)]
struct ForgottenSeconds(Vec<(u64, u64)>);

impl ForgottenSeconds {
    /// The most ranges kept.
    const MAX: usize = 16;
    /// Ranges this close are one: seconds without a window ending in them are many, and
    /// counting them forgotten refuses nothing in the present.
    const JOIN_WITHIN_S: u64 = 300;

    fn insert(&mut self, second: u64) {
        let ranges = &mut self.0;
        let at =
            ranges.partition_point(|&(_, end)| end.saturating_add(Self::JOIN_WITHIN_S) < second);
        match ranges.get_mut(at) {
            Some(range) if range.0 <= second.saturating_add(Self::JOIN_WITHIN_S) => {
                range.0 = range.0.min(second);
                range.1 = range.1.max(second);
            }
            _ => ranges.insert(at, (second, second)),
        }
        // A range grown downward may now reach the one before it, and upward the next.
        ranges.dedup_by(|later, earlier| {
            let joined = later.0 <= earlier.1.saturating_add(Self::JOIN_WITHIN_S);
            if joined {
                earlier.1 = earlier.1.max(later.1);
            }
            joined
        });
        if ranges.len() > Self::MAX {
            let closest = (1..ranges.len())
                .min_by_key(|&i| ranges[i].0 - ranges[i - 1].1)
                .unwrap_or(1);
            ranges[closest - 1].1 = ranges[closest].1;
            ranges.remove(closest);
        }
    }

    fn contains(&self, second: u64) -> bool {
        self.0
            .iter()
            .any(|&(start, end)| (start..=end).contains(&second))
    }
}

/// The fingerprints inside their windows, each with the second until whose end it is kept.
///
/// An entry is one `u128`: a fingerprint's high 96 bits, which say which signature it is,
/// and in the low 32 the second its longest window ends in, counted from the table's
/// origin (136 years of seconds). Kept in the entry rather than beside it, a fingerprint
/// with its second costs 16 bytes, as one without. A fingerprint is already a keyed hash,
/// uniform and unknown outside the process: 64 of its bits serve as its hash, and hashing
/// it again would only cost time.
struct Live {
    table: HashTable<u128>,
    /// The second (since the epoch) entries count theirs from: when the cache was made.
    origin_s: u64,
}

impl Live {
    /// The bits of an entry that hold its second.
    const SECOND: u128 = u32::MAX as u128;

    fn new(origin_s: u64) -> Live {
        Live {
            table: HashTable::new(),
            origin_s,
        }
    }

    /// The hash of a fingerprint, or of an entry: the 64 bits above its second.
    fn hash(entry: u128) -> u64 {
        // Truncation intended: bits 32 to 95, uniform as the whole.
        (entry >> 32) as u64
    }

    /// `second` (since the epoch) as an entry holds it. Only requests signed since the
    /// cache was made get here, so none ends before the origin.
    fn second(&self, second: u64) -> u128 {
        u128::from(second.saturating_sub(self.origin_s)).min(Self::SECOND)
    }

    /// Whether `fingerprint` is filed.
    fn contains(&self, fingerprint: u128) -> bool {
        self.table
            .find(Self::hash(fingerprint), |&held| {
                held & !Self::SECOND == fingerprint
            })
            .is_some()
    }

    /// Files `fingerprint` to be kept through `second`, or keeps one filed already
    /// through `second` if it was to go sooner. `false` when it was already kept as long.
    fn file(&mut self, fingerprint: u128, second: u64) -> bool {
        let entry = fingerprint | self.second(second);
        match self.table.entry(
            Self::hash(fingerprint),
            |&held| held & !Self::SECOND == fingerprint,
            |&held| Self::hash(held),
        ) {
            Entry::Occupied(mut held) if *held.get() & Self::SECOND < entry & Self::SECOND => {
                *held.get_mut() = entry;
                true
            }
            Entry::Occupied(_) => false,
            Entry::Vacant(slot) => {
                slot.insert(entry);
                true
            }
        }
    }

    /// Forgets `fingerprint`, filed to be kept through `second`, unless it was filed
    /// again since, to be kept longer.
    fn forget(&mut self, fingerprint: u128, second: u64) {
        let through = self.second(second);
        let found = self.table.find_entry(Self::hash(fingerprint), |&held| {
            held & !Self::SECOND == fingerprint
        });
        if let Ok(held) = found {
            if *held.get() & Self::SECOND <= through {
                held.remove();
            }
        }
    }

    fn len(&self) -> usize {
        self.table.len()
    }

    /// A table grown by a flood keeps its size once the flood's windows end; given back
    /// once it is mostly empty.
    fn shrink_when_mostly_empty(&mut self) {
        if self.table.capacity() > (self.table.len() * 4).max(1 << 16) {
            let keep = self.table.len() * 2;
            self.table.shrink_to(keep, |&held| Self::hash(held));
        }
    }
}

/// The times a request may have been signed at for a keygate that ran before to take it,
/// from the times of the audit events it wrote: around each, from the longest window
/// before ([`keygate_exchanges::LONGEST_WINDOW_MS`]) to the most a timestamp may run
/// ahead after ([`keygate_exchanges::MAX_TIMESTAMP_AHEAD_MS`]). A new cache remembers
/// nothing from before it was made; it must refuse these too when this host's clock was
/// set back across the restart, and only these: a clock that once ran hours ahead and
/// came back leaves its hours refused, not the time between.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TakenEarlier {
    /// Inclusive ranges of milliseconds since the epoch, sorted, apart.
    ranges: Vec<(u64, u64)>,
}

impl TakenEarlier {
    /// The most ranges kept: past it, the two closest become one, which refuses the time
    /// between them too.
    const MAX: usize = 64;

    /// Notes an event a keygate wrote at `at_ms`.
    pub fn note(&mut self, at_ms: u64) {
        let range = (
            at_ms.saturating_sub(keygate_exchanges::LONGEST_WINDOW_MS),
            at_ms.saturating_add(keygate_exchanges::MAX_TIMESTAMP_AHEAD_MS),
        );
        let at = self.ranges.partition_point(|&(start, _)| start < range.0);
        self.ranges.insert(at, range);
        // Joins what now overlaps or touches: at most the neighbours of the new range.
        let mut i = at.saturating_sub(1);
        while i + 1 < self.ranges.len() && i <= at {
            if self.ranges[i + 1].0 <= self.ranges[i].1.saturating_add(1) {
                self.ranges[i].1 = self.ranges[i].1.max(self.ranges[i + 1].1);
                self.ranges.remove(i + 1);
            } else {
                i += 1;
            }
        }
        if self.ranges.len() > Self::MAX {
            let closest = (1..self.ranges.len())
                .min_by_key(|&i| self.ranges[i].0 - self.ranges[i - 1].1)
                .unwrap_or(1);
            self.ranges[closest - 1].1 = self.ranges[closest].1;
            self.ranges.remove(closest);
        }
    }

    /// Whether a request signed at `signed_at_ms` may have been taken.
    pub fn covers(&self, signed_at_ms: u64) -> bool {
        let after = self
            .ranges
            .partition_point(|&(start, _)| start <= signed_at_ms);
        after > 0 && signed_at_ms <= self.ranges[after - 1].1
    }

    /// The last time it covers, if any.
    pub fn last_ms(&self) -> Option<u64> {
        self.ranges.last().map(|&(_, end)| end)
    }
}

impl ReplayCache {
    /// An empty cache, made at `now_ms`.
    pub fn new(now_ms: u64) -> ReplayCache {
        ReplayCache {
            fingerprint: (RandomState::new(), RandomState::new()),
            seen: Mutex::new(Seen {
                live: Live::new(now_ms / 1000),
                by_client: HashMap::new(),
                ending: BTreeMap::new(),
                forgotten_before_s: 0,
                forgotten: ForgottenSeconds::default(),
            }),
            since_us: now_ms.saturating_mul(1000),
            taken_earlier: OnceLock::new(),
            capacity: MAX_FINGERPRINTS,
            client_capacity: MAX_FINGERPRINTS_PER_CLIENT,
        }
    }

    /// Holds at most `fingerprints` of one client's requests (at most
    /// [`MAX_FINGERPRINTS`]) rather than [`MAX_FINGERPRINTS_PER_CLIENT`].
    pub fn hold_per_client(&mut self, fingerprints: usize) {
        self.client_capacity = fingerprints.min(self.capacity);
    }

    /// Whether it holds as many fingerprints as it may, or `client`'s requests as many as
    /// they may.
    fn is_full(&self, seen: &Seen, client: u64) -> bool {
        seen.live.len() + 2 > self.capacity
            || seen.by_client.get(&client).copied().unwrap_or(0) + 2 > self.client_capacity
    }

    /// The key a client's fingerprints are counted under.
    fn client_key(&self, client: &str) -> u64 {
        self.fingerprint.0.hash_one(client)
    }

    /// Whether a request signed at `signed_at_us` (microseconds) could have been seen by
    /// this cache: it was signed no earlier than the cache was made.
    /// Nor one signed at a time [`ReplayCache::refuse_taken_earlier`] names.
    pub fn remembers(&self, signed_at_us: u64) -> bool {
        signed_at_us >= self.since_us
            && !self
                .taken_earlier
                .get()
                .is_some_and(|taken| taken.covers(signed_at_us / 1000))
    }

    /// Remembers nothing signed at the times `taken` holds either: a keygate that ran
    /// before may have taken requests signed then, after this cache was made by this
    /// host's clock (a clock set back across a restart). Set once, before the first
    /// request; a second call changes nothing.
    pub fn refuse_taken_earlier(&self, taken: TakenEarlier) {
        let _ = self.taken_earlier.set(taken);
    }

    /// Records `signature`, of `client`'s request within `reach`, valid through
    /// `valid_through_us` (microseconds: after that the timestamp check refuses it), and
    /// says whether this is the first time it was seen: [`Sighting::Seen`] when it was
    /// seen before, or when the cache can no longer tell because it has already
    /// forgotten the signatures of windows ending when this one does (a request checked
    /// fresh on one thread just as another, a moment later, found that window over);
    /// [`Sighting::Full`] when it was not, but there is no room to remember it.
    pub fn sighting(
        &self,
        signature: &str,
        client: &str,
        reach: Reach<'_>,
        now: Moment,
        valid_through_us: u64,
    ) -> Sighting {
        let now_ms = now.wall_ms;
        let client = self.client_key(client);
        // Filed by every request; refuses those that reach everywhere. The others are
        // made from it, not from the signature again: a fingerprint is shorter.
        let used = self.fingerprint_of(signature);
        // Filed by those that reach everywhere; refuses reads too.
        let used_everywhere = self.fingerprint_of((USED_EVERYWHERE, used));
        // The request's own, refused when filed before; one more refusing it, if any; the
        // other it files.
        let (fingerprint, also_refused_by, also_filed) = match reach {
            Reach::Everywhere => (used, None, used_everywhere),
            Reach::Endpoint { method, path } => (
                self.fingerprint_of((method, path, used)),
                Some(used_everywhere),
                used,
            ),
        };
        // Kept through the whole second its window ends in, and so a little longer than
        // needed, never shorter.
        let ending_s = valid_through_us / 1_000_000;
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let now_s = now_ms / 1000;
        while let Some(entry) = seen.ending.first_entry() {
            if *entry.key() >= now_s || entry.get().kept_until_steady_ms > now.steady_ms {
                break;
            }
            let (second, ended) = entry.remove_entry();
            seen.forgotten.insert(second);
            for old in ended.fingerprints {
                seen.live.forget(old, second);
            }
            for (filer, filed) in ended.by_client {
                if let Some(held) = seen.by_client.get_mut(&filer) {
                    *held = held.saturating_sub(filed);
                    if *held == 0 {
                        seen.by_client.remove(&filer);
                    }
                }
            }
        }
        seen.live.shrink_when_mostly_empty();
        // Far ahead of this caller's clock, the mark is a clock stepped back, not a
        // thread a moment late: kept, it would refuse every request until the clock
        // caught up again. Past a window's length it is let go.
        if seen.forgotten_before_s > now_s + CLOCK_STEP_BACK_S {
            tracing::error!(
                seconds = seen.forgotten_before_s - now_s,
                "the system clock was set back: orders, cancels, withdrawals and transfers \
                 signed for windows whose signatures keygate forgot are refused until the \
                 clock has passed them again"
            );
            seen.forgotten_before_s = now_s;
        }
        seen.forgotten_before_s = seen.forgotten_before_s.max(now_s);
        // A replay is told as one, full or not: it raises its own alert.
        if ending_s < seen.forgotten_before_s
            || also_refused_by.is_some_and(|refusing| seen.live.contains(refusing))
            || seen.live.contains(fingerprint)
        {
            return Sighting::Seen;
        }
        // A replay is the same request: its window ends in the same second as the
        // original's, and a second forgotten is one whose signatures are unknown.
        if matches!(reach, Reach::Everywhere) && seen.forgotten.contains(ending_s) {
            return Sighting::ClockSetBack;
        }
        if self.is_full(&seen, client) {
            return Sighting::Full;
        }
        seen.live.file(fingerprint, ending_s);
        // What the window has left, and the rest of the second it ends in, from now on
        // the steady clock.
        let left_ms = ((ending_s + 1) * 1000).saturating_sub(now_ms);
        // Filed by another request too (a read's signature, which two reads of different
        // endpoints may share), it is kept for the longer window: the same bytes cut
        // elsewhere between query and body may parse into a window longer than the first
        // request's, and must still be refused as an order once that one's is over.
        let also_filed = Some(also_filed).filter(|f| seen.live.file(*f, ending_s));
        let filed = 1 + usize::from(also_filed.is_some());
        *seen.by_client.entry(client).or_default() += filed;
        let ending = seen.ending.entry(ending_s).or_default();
        ending.fingerprints.push(fingerprint);
        ending.fingerprints.extend(also_filed);
        *ending.by_client.entry(client).or_default() += filed;
        ending.kept_until_steady_ms = ending
            .kept_until_steady_ms
            .max(now.steady_ms.saturating_add(left_ms));
        Sighting::First
    }

    /// The 96-bit fingerprint of `value`, in the high bits (the low 32, where [`Live`]
    /// keeps a second, are zero).
    fn fingerprint_of(&self, value: impl std::hash::Hash + Copy) -> u128 {
        let (high, low) = &self.fingerprint;
        (u128::from(high.hash_one(value)) << 64 | u128::from(low.hash_one(value))) & !Live::SECOND
    }

    /// How many fingerprints it holds: two for each request it took (but a read whose
    /// signature another read filed: one).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.seen.lock().map(|seen| seen.live.len()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by review: a gateway restarted with its clock set back took again what the
    /// gateway before it had taken. What that one may have taken, by the times of its
    /// events, is refused, and only that: a clock that ran hours ahead for a while and
    /// came back leaves those hours refused, not every request after the restart.
    #[test]
    fn what_a_keygate_before_may_have_taken_is_refused_and_nothing_else() {
        let hour = 3_600_000;
        let mut taken = TakenEarlier::default();
        for at in [10 * hour + 30_000, 10 * hour, 12 * hour, 10 * hour + 500] {
            taken.note(at);
        }
        assert_eq!(
            taken.ranges,
            [
                (10 * hour - 60_000, 10 * hour + 31_000),
                (12 * hour - 60_000, 12 * hour + 1_000)
            ]
        );
        assert!(taken.covers(10 * hour - 60_000) && taken.covers(10 * hour + 31_000));
        assert!(!taken.covers(10 * hour - 60_001) && !taken.covers(10 * hour + 31_001));
        assert!(!taken.covers(11 * hour));
        assert_eq!(taken.last_ms(), Some(12 * hour + 1_000));

        let cache = ReplayCache::new(9 * hour);
        cache.refuse_taken_earlier(taken.clone());
        let us = |ms: u64| ms * 1000;
        assert!(!cache.remembers(us(9 * hour - 1)));
        assert!(cache.remembers(us(9 * hour)));
        assert!(!cache.remembers(us(10 * hour)));
        assert!(cache.remembers(us(11 * hour)));
        assert!(!cache.remembers(us(12 * hour)));
        assert!(cache.remembers(us(13 * hour)));

        // Bounded: past its most ranges, the closest join, refusing what lay between.
        for i in 0..200 {
            taken.note(20 * hour + i * hour);
        }
        assert_eq!(taken.ranges.len(), TakenEarlier::MAX);
        assert!((0..200).all(|i| taken.covers(20 * hour + i * hour)));
        assert!(taken.covers(10 * hour) && taken.covers(12 * hour));
    }

    impl ReplayCache {
        /// Whether [`ReplayCache::sighting`] finds it the first time.
        fn first_sighting(
            &self,
            signature: &str,
            client: &str,
            reach: Reach<'_>,
            now: Moment,
            valid_through_us: u64,
        ) -> bool {
            self.sighting(signature, client, reach, now, valid_through_us) == Sighting::First
        }

        /// Whether the cache is full for `client`.
        fn is_full_for(&self, client: &str) -> bool {
            let client = self.client_key(client);
            let seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
            self.is_full(&seen, client)
        }
    }

    /// Found by review: every verified request files its signature, one refused for its
    /// client's rate too, so one bot's key could grow the cache without end; and, once
    /// it was bounded, fill it and block every other client's orders and cancels.
    /// The load benchmark sends every request as one client: its share can be lifted,
    /// never past the whole cache.
    #[test]
    fn a_clients_share_can_be_set() {
        let mut cache = ReplayCache::new(0);
        cache.hold_per_client(4);
        let sighted =
            |signature| cache.sighting(signature, "bot", Reach::Everywhere, at(1_000), 9_000_000);
        assert_eq!(sighted("a"), Sighting::First);
        assert_eq!(sighted("b"), Sighting::First);
        assert_eq!(sighted("c"), Sighting::Full);
        let mut lifted = ReplayCache::new(0);
        lifted.hold_per_client(usize::MAX);
        assert_eq!(lifted.client_capacity, MAX_FINGERPRINTS);
    }

    #[test]
    fn a_full_cache_refuses_until_windows_end_and_one_client_fills_its_share_only() {
        let cache = ReplayCache {
            capacity: 8,
            client_capacity: 4,
            ..ReplayCache::new(0)
        };
        let sighted = |signature, client, valid_through_us| {
            cache.first_sighting(
                signature,
                client,
                Reach::Everywhere,
                at(1_000),
                valid_through_us,
            )
        };
        assert!(sighted("one", "flood", 2_000_000));
        assert!(!cache.is_full_for("flood"));
        assert!(sighted("two", "flood", 9_000_000));
        assert!(cache.is_full_for("flood") && !cache.is_full_for("bot"));
        assert!(!sighted("three", "flood", 9_000_000));
        // Another client's order still goes through, until the whole cache is full.
        assert!(sighted("order", "bot", 9_000_000));
        assert!(sighted("cancel", "other", 9_000_000));
        assert!(cache.is_full_for("anyone"));
        assert!(!sighted("late", "anyone", 9_000_000));
        // A replay is told as one, full or not (found by review).
        let again = cache.sighting("one", "flood", Reach::Everywhere, at(1_500), 2_000_000);
        assert_eq!(again, Sighting::Seen);
        // Once the first window ends, there is room again.
        let later = cache.first_sighting("three", "flood", Reach::Everywhere, at(3_000), 9_000_000);
        assert!(later && cache.len() == 8);
    }

    /// `wall_ms` on both clocks: a clock that never stepped.
    fn at(wall_ms: u64) -> Moment {
        Moment {
            wall_ms,
            steady_ms: wall_ms,
        }
    }

    fn read(path: &str) -> Reach<'_> {
        Reach::Endpoint {
            method: "GET",
            path,
        }
    }

    /// Found by review: two reads of different endpoints signed in the same millisecond
    /// with the same parameters (one signature) had the second refused as a replay,
    /// which broke ccxt's `load_markets`. A read's signature still cannot be used again
    /// on its endpoint, nor by a request that trades or cancels.
    #[test]
    fn a_read_uses_its_signature_for_its_endpoint_and_for_orders() {
        let cache = ReplayCache::new(0);
        let sighted =
            |reach, wall_ms| cache.first_sighting("sig", "bot", reach, at(wall_ms), 10_000_000);
        assert!(sighted(read("/sapi/v1/margin/allPairs"), 1_000));
        assert!(sighted(read("/sapi/v1/margin/isolated/allPairs"), 1_000));
        assert!(!sighted(read("/sapi/v1/margin/allPairs"), 1_001));
        assert!(!sighted(Reach::Everywhere, 1_002));
        let order = |wall_ms| {
            cache.first_sighting("order", "bot", Reach::Everywhere, at(wall_ms), 10_000_000)
        };
        assert!(order(1_000));
        assert!(!order(1_001));
        // Found by review of that fix: an order's or a cancel's signature was accepted
        // once more on every read endpoint.
        assert!(!cache.first_sighting(
            "order",
            "bot",
            read("/api/v3/order"),
            at(1_002),
            10_000_000
        ));
        assert_eq!(cache.len(), 5);
    }

    /// Found by review: fingerprints were forgotten by the wall clock alone, so a host
    /// clock stepped forward past every window (one request to purge the cache) and back
    /// again let a captured order through a second time.
    #[test]
    fn a_clock_stepped_forward_and_back_forgets_nothing_still_fresh() {
        let cache = ReplayCache::new(0);
        let step = |wall_ms, steady_ms| Moment { wall_ms, steady_ms };
        assert!(cache.first_sighting(
            "order",
            "bot",
            Reach::Everywhere,
            step(1_000, 1_000),
            61_000_000
        ));
        // Five hours on the wall clock, two seconds on the steady one.
        assert!(cache.first_sighting(
            "later",
            "bot",
            Reach::Everywhere,
            step(18_001_000, 3_000),
            18_060_000_000
        ));
        // Back: the order's window is open again, and its signature still known.
        assert!(!cache.first_sighting(
            "order",
            "bot",
            Reach::Everywhere,
            step(4_000, 6_000),
            61_000_000
        ));
        // Once its window has really passed, it goes.
        assert!(cache.first_sighting(
            "after",
            "bot",
            Reach::Everywhere,
            step(63_000, 65_000),
            120_000_000
        ));
        assert!(cache.len() <= 6);
    }

    #[test]
    fn a_signature_is_accepted_once_inside_its_window() {
        let cache = ReplayCache::new(0);
        // Signed at 1 s with a minute's window: valid through 61 s.
        let valid_through_us = 61_000_000;
        assert!(cache.first_sighting("abc", "bot", Reach::Everywhere, at(1_000), valid_through_us));
        assert!(!cache.first_sighting(
            "abc",
            "bot",
            Reach::Everywhere,
            at(30_000),
            valid_through_us
        ));
        assert!(cache.first_sighting("def", "bot", Reach::Everywhere, at(30_000), 35_000_000));
        assert!(!cache.first_sighting(
            "abc",
            "bot",
            Reach::Everywhere,
            at(61_000),
            valid_through_us
        ));
        assert!(!cache.first_sighting(
            "abc",
            "bot",
            Reach::Everywhere,
            at(61_999),
            valid_through_us
        ));
        // Past its window the timestamp check refuses it: the cache may forget it.
        assert!(cache.first_sighting("abc", "bot", Reach::Everywhere, at(62_000), 70_000_000));
    }

    /// Binance signs the query and the body as one string, so the same bytes cut
    /// elsewhere between the two carry the same signature but may parse into another
    /// `recvWindow`, a window ending in another second. The cache must know the signature
    /// whatever window it comes with: looked up only among the fingerprints filed for its
    /// own window's second, such a copy of an order would pass.
    #[test]
    fn a_signature_is_known_whatever_window_it_comes_with() {
        let cache = ReplayCache::new(0);
        assert!(cache.first_sighting("order", "bot", Reach::Everywhere, at(1_000), 6_000_000));
        for valid_through_us in [2_000_000, 5_999_999, 40_000_000, 61_000_000] {
            assert!(!cache.first_sighting(
                "order",
                "bot",
                Reach::Everywhere,
                at(1_500),
                valid_through_us
            ));
            assert!(!cache.first_sighting(
                "order",
                "bot",
                read("/api/v3/account"),
                at(1_500),
                valid_through_us
            ));
        }
        assert!(cache.first_sighting("read", "bot", read("/api/v3/account"), at(1_000), 6_000_000));
        assert!(!cache.first_sighting("read", "bot", Reach::Everywhere, at(1_500), 30_000_000));
    }

    /// Found by review: a signature two reads share was kept for the first read's window
    /// only. The same bytes cut elsewhere between query and body may parse into a longer
    /// window, and once the first was over, a copy sent as an order passed. It is kept
    /// for the longer window, whichever read came first, and goes once that is over.
    #[test]
    fn a_shared_signature_is_kept_for_the_longest_window_that_filed_it() {
        for windows_through_us in [[6_000_000, 40_000_000], [40_000_000, 6_000_000]] {
            let cache = ReplayCache::new(0);
            for (path, valid_through_us) in ["/api/v3/account", "/api/v3/openOrders"]
                .into_iter()
                .zip(windows_through_us)
            {
                assert!(cache.first_sighting(
                    "sig",
                    "bot",
                    read(path),
                    at(1_000),
                    valid_through_us
                ));
            }
            // At 8 s the shorter window is over, and forgotten.
            assert!(cache.first_sighting("later", "bot", Reach::Everywhere, at(8_000), 9_000_000));
            assert!(!cache.first_sighting("sig", "bot", Reach::Everywhere, at(8_000), 40_000_000));
            assert_eq!(
                cache.len(),
                4,
                "the longer read's own, the shared one, and the later order's two"
            );
            // At 41 s the longer one is over: everything of the signature goes.
            assert!(cache.first_sighting("last", "bot", Reach::Everywhere, at(41_000), 50_000_000));
            assert_eq!(cache.len(), 2, "the last order's two");
        }
    }

    #[test]
    fn each_signature_is_forgotten_when_its_own_window_ends() {
        let cache = ReplayCache::new(0);
        // Filed out of order: a long window first, then short ones.
        assert!(cache.first_sighting("long", "bot", Reach::Everywhere, at(1_000), 61_000_000));
        assert!(cache.first_sighting("short", "bot", Reach::Everywhere, at(1_000), 6_000_000));
        assert!(cache.first_sighting("shorter", "bot", Reach::Everywhere, at(1_000), 3_500_000));
        assert_eq!(cache.len(), 6);
        assert!(cache.first_sighting("later", "bot", Reach::Everywhere, at(4_000), 9_000_000));
        assert_eq!(cache.len(), 6, "the shorter window ended at 3.5 s");
        assert!(!cache.first_sighting("short", "bot", Reach::Everywhere, at(6_999), 6_000_000));
        assert!(cache.first_sighting("other", "bot", Reach::Everywhere, at(7_000), 12_000_000));
        assert_eq!(cache.len(), 6, "the short window ended at 6 s");
        assert!(!cache.first_sighting("long", "bot", Reach::Everywhere, at(60_000), 61_000_000));
        assert!(cache.first_sighting("last", "bot", Reach::Everywhere, at(62_000), 70_000_000));
        assert_eq!(cache.len(), 2, "every window but the last one ended");
    }

    /// Found by review: the mark of what was forgotten followed the clock forward and
    /// never back, so a clock stepped forward an hour and then corrected refused every
    /// request, as a replay, for that hour.
    #[test]
    fn a_clock_stepped_back_refuses_for_at_most_a_window() {
        let cache = ReplayCache::new(0);
        assert!(cache.first_sighting(
            "ahead",
            "bot",
            Reach::Everywhere,
            at(3_600_000),
            3_605_000_000
        ));
        // Back to 10 s: within a window of the mark the cache cannot tell, and refuses.
        assert!(!cache.first_sighting(
            "soon after",
            "bot",
            Reach::Everywhere,
            at(3_580_000),
            3_585_000_000
        ));
        // An hour behind it, it lets the mark go.
        assert!(cache.first_sighting(
            "corrected",
            "bot",
            Reach::Everywhere,
            at(10_000),
            15_000_000
        ));
        assert!(!cache.first_sighting(
            "corrected",
            "bot",
            Reach::Everywhere,
            at(11_000),
            15_000_000
        ));
    }

    /// Found by review: a host clock set back by more than a window (61 s) made the
    /// cache let go of its mark, and an order whose signature it had forgotten, fresh
    /// again by the clock, went to the exchange a second time. An order, cancel,
    /// withdrawal or transfer whose window ends in a second forgotten is refused, until
    /// the clock has passed it again; reads go on.
    #[test]
    fn a_clock_set_back_lets_no_forgotten_order_through() {
        let cache = ReplayCache::new(0);
        let step = |wall_ms, steady_ms| Moment { wall_ms, steady_ms };
        assert!(cache.first_sighting(
            "order",
            "bot",
            Reach::Everywhere,
            step(1_000, 1_000),
            6_000_000
        ));
        // Seventy seconds on: the order's window is over, and its signature forgotten.
        assert!(cache.first_sighting(
            "read",
            "bot",
            read("/api/v3/account"),
            step(71_000, 71_000),
            76_000_000
        ));
        assert_eq!(cache.len(), 2);
        // The clock set back 67 s: the order is fresh again by it.
        let again = cache.sighting(
            "order",
            "bot",
            Reach::Everywhere,
            step(4_000, 74_000),
            6_000_000,
        );
        assert_eq!(again, Sighting::ClockSetBack);
        // So is any order whose window ends in that second; reads go on, and so do
        // orders whose windows end in another (no signature of theirs was forgotten).
        let same_second = |signature, reach| {
            cache.sighting(signature, "bot", reach, step(4_000, 74_000), 6_500_000)
        };
        assert_eq!(
            same_second("new", Reach::Everywhere),
            Sighting::ClockSetBack
        );
        assert_eq!(
            same_second("read 2", read("/api/v3/account")),
            Sighting::First
        );
        assert!(cache.first_sighting(
            "later",
            "bot",
            Reach::Everywhere,
            step(4_000, 74_000),
            9_000_000
        ));
    }

    #[test]
    fn forgotten_seconds_are_kept_as_few_ranges() {
        let mut forgotten = ForgottenSeconds::default();
        for second in [10, 11, 12, 300, 2_000, 700] {
            forgotten.insert(second);
        }
        assert_eq!(forgotten.0, [(10, 300), (700, 700), (2_000, 2_000)]);
        forgotten.insert(500);
        assert_eq!(forgotten.0, [(10, 700), (2_000, 2_000)]);
        for i in 0..40 {
            forgotten.insert(10_000 + i * 1_000);
        }
        assert_eq!(forgotten.0.len(), ForgottenSeconds::MAX);
        assert!(forgotten.contains(10) && forgotten.contains(49_000) && !forgotten.contains(9));
        assert!(!forgotten.contains(50_000));
    }

    #[test]
    fn a_signature_whose_window_was_forgotten_meanwhile_is_refused() {
        let cache = ReplayCache::new(0);
        assert!(cache.first_sighting("first", "bot", Reach::Everywhere, at(5_000), 5_500_000));
        // Another thread, its clock read a moment later, forgets the windows that
        // ended in second 5.
        assert!(cache.first_sighting("other", "bot", Reach::Everywhere, at(6_000), 9_000_000));
        // A copy of the first, checked fresh at 5.4 s on a thread that was slower to
        // get here: the cache cannot tell whether it saw it, so it says it did.
        assert!(!cache.first_sighting("first", "bot", Reach::Everywhere, at(5_400), 5_500_000));
        assert!(!cache.first_sighting(
            "never seen",
            "bot",
            Reach::Everywhere,
            at(5_400),
            5_500_000
        ));
    }

    #[test]
    fn nothing_signed_before_the_cache_was_made_is_remembered() {
        let cache = ReplayCache::new(1_000);
        assert!(!cache.remembers(999_999));
        assert!(cache.remembers(1_000_000));
        assert!(cache.remembers(2_000_000));
    }
}
