//! Remembers recent signatures so that a captured request cannot be sent twice.

use std::collections::HashMap;
use std::sync::Mutex;

/// A signature stays remembered this long: the largest receive window plus the second a
/// timestamp may run ahead. After that, the timestamp check refuses the request anyway.
const REMEMBER_MS: u64 = keygate_exchanges::binance::MAX_RECV_WINDOW_MS + 1_000;

/// Signatures seen inside their window.
#[derive(Default)]
pub struct ReplayCache {
    seen: Mutex<Seen>,
}

#[derive(Default)]
struct Seen {
    until: HashMap<String, u64>,
    next_sweep_ms: u64,
}

impl ReplayCache {
    /// An empty cache.
    pub fn new() -> ReplayCache {
        ReplayCache::default()
    }

    /// Records `signature` and says whether this is the first time it was seen.
    pub fn first_sighting(&self, signature: &str, now_ms: u64) -> bool {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if now_ms >= seen.next_sweep_ms {
            seen.until.retain(|_, until| *until > now_ms);
            seen.next_sweep_ms = now_ms + 1_000;
        }
        match seen.until.get(signature) {
            Some(until) if *until > now_ms => false,
            _ => {
                seen.until
                    .insert(signature.to_owned(), now_ms + REMEMBER_MS);
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_is_accepted_once_inside_its_window() {
        let cache = ReplayCache::new();
        assert!(cache.first_sighting("abc", 1_000));
        assert!(!cache.first_sighting("abc", 30_000));
        assert!(cache.first_sighting("def", 30_000));
        assert!(cache.first_sighting("abc", 1_000 + REMEMBER_MS));
    }
}
