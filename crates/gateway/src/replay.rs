//! Remembers recent signatures so that a captured request cannot be sent twice.

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex};

/// Signatures seen inside their window, with their expiry in insertion order so that
/// forgetting old ones costs O(1) per signature instead of a sweep under the lock.
#[derive(Default)]
pub struct ReplayCache {
    seen: Mutex<Seen>,
}

#[derive(Default)]
struct Seen {
    live: HashSet<Arc<str>>,
    expiry: VecDeque<(u64, Arc<str>)>,
}

impl ReplayCache {
    /// An empty cache.
    pub fn new() -> ReplayCache {
        ReplayCache::default()
    }

    /// Records `signature` for `remember_ms` (the longest the exchange would accept it:
    /// after that its timestamp check refuses it anyway) and says whether this is the
    /// first time it was seen.
    pub fn first_sighting(&self, signature: &str, now_ms: u64, remember_ms: u64) -> bool {
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
        if seen.live.contains(signature) {
            return false;
        }
        let signature: Arc<str> = Arc::from(signature);
        seen.live.insert(signature.clone());
        seen.expiry.push_back((now_ms + remember_ms, signature));
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_is_accepted_once_inside_its_window() {
        const REMEMBER_MS: u64 = 61_000;
        let cache = ReplayCache::new();
        assert!(cache.first_sighting("abc", 1_000, REMEMBER_MS));
        assert!(!cache.first_sighting("abc", 30_000, REMEMBER_MS));
        assert!(cache.first_sighting("def", 30_000, REMEMBER_MS));
        assert!(cache.first_sighting("abc", 1_000 + REMEMBER_MS, REMEMBER_MS));
    }
}
