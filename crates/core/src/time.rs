//! Times as keygate shows them to people: RFC 3339, UTC, with milliseconds.

use std::time::{Duration, UNIX_EPOCH};

/// 10000-01-01T00:00:00Z, in milliseconds since the epoch: the first time RFC 3339 cannot
/// write.
const YEAR_10000_MS: u64 = 253_402_300_800_000;

/// A Unix time in milliseconds as RFC 3339 with milliseconds (`2025-01-01T00:00:00.000Z`),
/// the one way every command, alert and refusal keygate writes for a person shows a time.
/// A time past what RFC 3339 can write (year 9999), which only an edited database or a
/// wild exchange header holds, is shown as such rather than stopping the text it is in.
///
/// ```
/// assert_eq!(keygate_core::rfc3339(1_000), "1970-01-01T00:00:01.000Z");
/// ```
pub fn rfc3339(ms: u64) -> String {
    if ms >= YEAR_10000_MS {
        return format!("(beyond year 9999: {ms} ms)");
    }
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A regression test: one client row with a far-off expiry (or a negative one, read as
    /// a huge unsigned time) made `client list` panic, hiding every other client.
    #[test]
    fn any_stored_time_prints() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(253_402_300_799_999), "9999-12-31T23:59:59.999Z");
        assert!(rfc3339(253_402_300_800_000).contains("beyond"));
        assert!(rfc3339(u64::MAX).contains("beyond"));
    }
}
