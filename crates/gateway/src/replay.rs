//! Remembers recent signatures so that a captured request cannot be sent twice.

use std::collections::hash_map::RandomState;
use std::collections::{HashSet, VecDeque};
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
use std::sync::Mutex;

/// Signatures seen inside their window, with their expiry in insertion order so that
/// forgetting old ones costs O(1) per signature instead of a sweep under the lock.
///
/// A signature is remembered as a 128-bit fingerprint (two SipHash-1-3 with keys chosen
/// at random when the process starts), not as its text: a minute of signatures at tens
/// of thousands of requests a second is millions of entries, and fixed-size keys keep
/// them small and cheap to rehash. Only signatures that verified get here, and two of
/// them sharing a fingerprint has negligible odds; nobody outside the process knows the
/// keys to aim for one.
///
/// It remembers nothing from before it was made: a request signed before then may have
/// been used already (by a keygate process that ran before this one), so
/// [`ReplayCache::remembers`] says no to it, and the request is refused.
pub struct ReplayCache {
    fingerprint: (RandomState, RandomState),
    seen: Mutex<Seen>,
    /// When it was made, in microseconds since the epoch.
    since_us: u64,
}

#[derive(Default)]
struct Seen {
    live: HashSet<u128, BuildHasherDefault<Prehashed>>,
    expiry: VecDeque<(u64, u128)>,
}

/// The set's hasher: a fingerprint is already a keyed hash, uniform and unknown outside
/// the process, so its low 64 bits serve as its hash and hashing it again would only
/// cost time.
#[derive(Default)]
struct Prehashed(u64);

impl Hasher for Prehashed {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u128(&mut self, fingerprint: u128) {
        // Truncation intended: the low half of a uniform 128-bit value.
        self.0 = fingerprint as u64;
    }
}

impl ReplayCache {
    /// An empty cache, made at `now_ms`.
    pub fn new(now_ms: u64) -> ReplayCache {
        ReplayCache {
            fingerprint: (RandomState::new(), RandomState::new()),
            seen: Mutex::default(),
            since_us: now_ms.saturating_mul(1000),
        }
    }

    /// Whether a request signed at `signed_at_us` (microseconds) could have been seen by
    /// this cache: it was signed no earlier than the cache was made.
    pub fn remembers(&self, signed_at_us: u64) -> bool {
        signed_at_us >= self.since_us
    }

    /// Records `signature` for `remember_ms` (the longest the exchange would accept it:
    /// after that its timestamp check refuses it anyway) and says whether this is the
    /// first time it was seen.
    pub fn first_sighting(&self, signature: &str, now_ms: u64, remember_ms: u64) -> bool {
        let (high, low) = &self.fingerprint;
        let fingerprint =
            u128::from(high.hash_one(signature)) << 64 | u128::from(low.hash_one(signature));
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        while seen
            .expiry
            .front()
            .is_some_and(|(until, _)| *until <= now_ms)
        {
            if let Some((_, old)) = seen.expiry.pop_front() {
                seen.live.remove(&old);
            }
        }
        if !seen.live.insert(fingerprint) {
            return false;
        }
        seen.expiry.push_back((now_ms + remember_ms, fingerprint));
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_is_accepted_once_inside_its_window() {
        const REMEMBER_MS: u64 = 61_000;
        let cache = ReplayCache::new(0);
        assert!(cache.first_sighting("abc", 1_000, REMEMBER_MS));
        assert!(!cache.first_sighting("abc", 30_000, REMEMBER_MS));
        assert!(cache.first_sighting("def", 30_000, REMEMBER_MS));
        assert!(cache.first_sighting("abc", 1_000 + REMEMBER_MS, REMEMBER_MS));
    }

    #[test]
    fn nothing_signed_before_the_cache_was_made_is_remembered() {
        let cache = ReplayCache::new(1_000);
        assert!(!cache.remembers(999_999));
        assert!(cache.remembers(1_000_000));
        assert!(cache.remembers(2_000_000));
    }
}
