//! The request weight each exchange host reports used, so that public market data, which
//! needs no key and no client, cannot spend the weight that orders and cancels need.
//!
//! An exchange limits the request weight an address may use per minute, and says in each
//! answer how much it has used (Binance: `X-MBX-USED-WEIGHT-1M`). Past the limit it
//! refuses everything from the address, signed requests included, and bans it for a
//! while if it goes on. keygate forwards public calls from anything that reaches its
//! listener, so it stops forwarding them while the host reports a cap or more used in
//! the current minute; signed requests are bounded by their clients' own rates.

use std::collections::HashMap;
use std::sync::Mutex;

/// The last weight each upstream reported, by base URL.
#[derive(Default)]
pub struct WeightGauge {
    reported: Mutex<HashMap<String, Report>>,
}

#[derive(Clone, Copy)]
struct Report {
    /// The minute (since the epoch, by keygate's clock) it was reported in.
    minute: u64,
    used: u64,
}

impl WeightGauge {
    /// Records that `upstream` reported `used` weight at `now_ms`. Answers can arrive out
    /// of order, so within one minute the highest report stands.
    pub fn record(&self, upstream: &str, used: u64, now_ms: u64) {
        let minute = now_ms / 60_000;
        let mut reported = self.reported.lock().unwrap_or_else(|p| p.into_inner());
        match reported.get_mut(upstream) {
            Some(last) if last.minute == minute => last.used = last.used.max(used),
            Some(last) => *last = Report { minute, used },
            None => {
                reported.insert(upstream.to_owned(), Report { minute, used });
            }
        }
    }

    /// Each upstream's weight used this minute, by base URL (those that reported none
    /// this minute are left out: their window has turned).
    pub fn this_minute(&self, now_ms: u64) -> Vec<(String, u64)> {
        let reported = self.reported.lock().unwrap_or_else(|p| p.into_inner());
        let mut used: Vec<(String, u64)> = reported
            .iter()
            .filter(|(_, r)| r.minute == now_ms / 60_000)
            .map(|(upstream, r)| (upstream.clone(), r.used))
            .collect();
        used.sort();
        used
    }

    /// The weight `upstream` last reported used this minute, when it is at or past `cap`.
    /// A report from an earlier minute no longer counts: the exchange's window has turned.
    pub fn over_cap(&self, upstream: &str, cap: u64, now_ms: u64) -> Option<u64> {
        let reported = self.reported.lock().unwrap_or_else(|p| p.into_inner());
        reported
            .get(upstream)
            .filter(|r| r.minute == now_ms / 60_000 && r.used >= cap)
            .map(|r| r.used)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_calls_pause_at_the_cap_until_the_minute_turns() {
        let gauge = WeightGauge::default();
        let minute = 60_000 * 1_000;
        assert_eq!(gauge.over_cap("https://api", 100, minute), None);
        gauge.record("https://api", 99, minute);
        assert_eq!(gauge.over_cap("https://api", 100, minute + 1), None);
        gauge.record("https://api", 120, minute + 2);
        // An earlier answer arriving late does not lower it.
        gauge.record("https://api", 50, minute + 3);
        assert_eq!(gauge.over_cap("https://api", 100, minute + 4), Some(120));
        // Another host has its own weight.
        assert_eq!(gauge.over_cap("https://fapi", 100, minute + 4), None);
        // The next minute starts from nothing.
        assert_eq!(gauge.over_cap("https://api", 100, minute + 60_000), None);
        gauge.record("https://api", 10, minute + 60_000);
        assert_eq!(gauge.over_cap("https://api", 100, minute + 60_001), None);
        gauge.record("https://fapi", 7, minute + 60_002);
        assert_eq!(
            gauge.this_minute(minute + 60_003),
            [
                ("https://api".to_owned(), 10),
                ("https://fapi".to_owned(), 7)
            ]
        );
        assert!(gauge.this_minute(minute + 120_000).is_empty());
    }
}
