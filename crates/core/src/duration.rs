//! Durations as an operator writes them: `90d`, `24h`, `30m`, `45s`, `2w`, `1h30m`.
//!
//! One grammar for the command line and the config file, so that a value one accepts
//! the other does not read otherwise (`10M`, months to a looser parser, is refused here).

use std::time::Duration;

use crate::Error;

/// The longest duration taken: longer ones are typos, and in milliseconds past a `u64`
/// they would wrap (a week's `--since` read as a fraction of a second).
pub const MAX_DURATION: Duration = Duration::from_secs(100 * 366 * 86_400);

/// Parses a duration of whole seconds, minutes, hours, days and weeks (`s`, `m`, `h`, `d`,
/// `w`, lowercase), one or more of them run together (`1h30m`), at most [`MAX_DURATION`].
/// Zero is a duration; callers that need more say so.
pub fn parse_duration(text: &str) -> Result<Duration, Error> {
    let invalid = || Error::InvalidDuration {
        text: text.to_owned(),
    };
    let s = text.trim();
    if s.is_empty() {
        return Err(invalid());
    }
    // Zero needs no unit.
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    let mut total: u64 = 0;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(invalid());
        }
        let n: u64 = rest[..digits].parse().map_err(|_| invalid())?;
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let unit = match &rest[..unit_len] {
            "s" => 1,
            "m" => 60,
            "h" => 3600,
            "d" => 86_400,
            "w" => 7 * 86_400,
            _ => return Err(invalid()),
        };
        rest = &rest[unit_len..];
        total = n
            .checked_mul(unit)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(invalid)?;
    }
    if total > MAX_DURATION.as_secs() {
        return Err(Error::DurationTooLong {
            text: text.to_owned(),
        });
    }
    Ok(Duration::from_secs(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_in_every_unit_and_combined() {
        let d = |s| parse_duration(s).map(|d| d.as_secs()).ok();
        assert_eq!(d("90d"), Some(90 * 86_400));
        assert_eq!(d("24h"), Some(86_400));
        assert_eq!(d("30m"), Some(1800));
        assert_eq!(d("45s"), Some(45));
        assert_eq!(d("1h30m"), Some(5400));
        assert_eq!(d("2w"), Some(14 * 86_400));
        assert_eq!(d("36600d"), Some(MAX_DURATION.as_secs()));
        // Found by review: `--grace 0` was refused, though its default is `0s`.
        assert_eq!(d("0"), Some(0));
        assert_eq!(d("0s"), Some(0));
        // Found by review: past what milliseconds hold in a u64, `--since` wrapped to a
        // fraction of a second, and `serve --reconcile-every` panicked its thread. And the
        // config file read `10M` as ten months, `1.5m` and `1ms` as the command line
        // never does.
        for bad in [
            "",
            "d",
            "10",
            "10x",
            "1h-2m",
            "99999999999999999999d",
            "36601d",
            "18446744073709551615s",
            "10M",
            "1.5m",
            "1ms",
            "10 m",
            "1y",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?} parsed");
        }
    }
}
