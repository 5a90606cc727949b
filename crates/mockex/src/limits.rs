//! Binance's rate-limit counters: request weight per API family, spot orders per key.

use std::collections::HashMap;

/// The request-weight counter a request counts against. Binance keeps one per API family,
/// each reported in headers of its own: `/api` (`X-MBX-USED-WEIGHT-1M`); `/sapi`, whose
/// endpoints are weighted either per IP (`X-SAPI-USED-IP-WEIGHT-1M`) or per account, the
/// UID (`X-SAPI-USED-UID-WEIGHT-1M`, withdrawals for one); and `/fapi` and `/dapi`, which
/// live on hosts of their own (`fapi.binance.com`, `dapi.binance.com`) with limits of
/// their own.
///
/// Binance documents each `/sapi` endpoint's limit as its own; the simulator keeps one
/// counter for all IP-weighted ones and one per account for the UID-weighted ones, as it
/// enforces no limit and the headers only report.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Family {
    Api,
    SapiIp,
    SapiUid,
    Fapi,
    Dapi,
}

impl Family {
    /// The family of a request to `path`; `uid` when the endpoint is weighted per account.
    /// A path outside `/sapi`, `/fapi` and `/dapi` is `api.binance.com`'s `/api`.
    pub(crate) fn of(path: &str, uid: bool) -> Family {
        if path.starts_with("/sapi/") {
            if uid {
                Family::SapiUid
            } else {
                Family::SapiIp
            }
        } else if path.starts_with("/fapi/") {
            Family::Fapi
        } else if path.starts_with("/dapi/") {
            Family::Dapi
        } else {
            Family::Api
        }
    }

    /// The headers that report this family's weight used in the current minute.
    pub(crate) fn headers(self) -> &'static [&'static str] {
        match self {
            Family::Api | Family::Fapi | Family::Dapi => {
                &["x-mbx-used-weight", "x-mbx-used-weight-1m"]
            }
            Family::SapiIp => &["x-sapi-used-ip-weight-1m"],
            Family::SapiUid => &["x-sapi-used-uid-weight-1m"],
        }
    }
}

/// The headers that report a key's spot orders in the current 10 seconds and UTC day.
pub(crate) const ORDER_COUNT_HEADERS: [&str; 2] = ["x-mbx-order-count-10s", "x-mbx-order-count-1d"];

const MINUTE_MS: u64 = 60_000;
const TEN_SECONDS_MS: u64 = 10_000;
const DAY_MS: u64 = 86_400_000;

/// Weight used this minute and spot orders placed, as Binance counts them: in windows
/// that start on the minute, on the 10 seconds and at midnight UTC, not sliding ones.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    /// The minute since the epoch that `weight` counts.
    minute: u64,
    /// Weight used this minute, by family and, for [`Family::SapiUid`], by API key (each
    /// key is an account of its own); the key is empty for the other families.
    weight: HashMap<(Family, String), u64>,
    /// Spot orders placed, by API key.
    orders: HashMap<String, OrderCount>,
}

/// One key's spot orders: (window index, orders in it) for 10 seconds and for a day.
#[derive(Debug, Default)]
struct OrderCount {
    ten_seconds: (u64, u64),
    day: (u64, u64),
}

impl Counters {
    /// Adds `weight` to `family`'s counter (`api_key`'s, for [`Family::SapiUid`]) at
    /// `now_ms` and returns the counter's total for the minute.
    pub(crate) fn add_weight(
        &mut self,
        family: Family,
        api_key: Option<&str>,
        weight: u32,
        now_ms: u64,
    ) -> u64 {
        let minute = now_ms / MINUTE_MS;
        if minute != self.minute {
            self.minute = minute;
            self.weight.clear();
        }
        let owner = match family {
            Family::SapiUid => api_key.unwrap_or_default().to_owned(),
            _ => String::new(),
        };
        let used = self.weight.entry((family, owner)).or_default();
        *used += u64::from(weight);
        *used
    }

    /// Counts one spot order placed with `api_key` at `now_ms`; returns the key's orders
    /// in the current 10 seconds and the current day, this one included.
    pub(crate) fn add_order(&mut self, api_key: &str, now_ms: u64) -> [u64; 2] {
        let count = self.orders.entry(api_key.to_owned()).or_default();
        let bump = |(window, n): &mut (u64, u64), length: u64| {
            let current = now_ms / length;
            if *window != current {
                *window = current;
                *n = 0;
            }
            *n += 1;
            *n
        };
        [
            bump(&mut count.ten_seconds, TEN_SECONDS_MS),
            bump(&mut count.day, DAY_MS),
        ]
    }

    /// Takes one order off `api_key`'s unfilled order count in every interval, as Binance
    /// does when an order fills for the first time (spot FAQ "Spot Unfilled Order Count
    /// Rules"): never below zero, and only the current intervals' counts. Binance may take
    /// more off for an order that first fills as a maker; the simulator's orders fill only
    /// as takers, when placed.
    pub(crate) fn fill_order(&mut self, api_key: &str, now_ms: u64) {
        let Some(count) = self.orders.get_mut(api_key) else {
            return;
        };
        for ((window, n), length) in [
            (&mut count.ten_seconds, TEN_SECONDS_MS),
            (&mut count.day, DAY_MS),
        ] {
            if *window == now_ms / length {
                *n = n.saturating_sub(1);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_family_counts_apart_and_every_minute_starts_again() {
        let mut counters = Counters::default();
        let t = 5 * MINUTE_MS;
        assert_eq!(counters.add_weight(Family::Api, None, 20, t), 20);
        assert_eq!(counters.add_weight(Family::Fapi, None, 5, t), 5);
        assert_eq!(counters.add_weight(Family::SapiIp, Some("a"), 1, t), 1);
        assert_eq!(counters.add_weight(Family::SapiUid, Some("a"), 600, t), 600);
        assert_eq!(counters.add_weight(Family::SapiUid, Some("b"), 600, t), 600);
        assert_eq!(counters.add_weight(Family::SapiIp, Some("b"), 1, t), 2);
        assert_eq!(counters.add_weight(Family::Api, None, 1, t + 1), 21);
        assert_eq!(counters.add_weight(Family::Api, None, 1, t + MINUTE_MS), 1);
        assert_eq!(
            counters.add_weight(Family::SapiUid, Some("a"), 0, t + MINUTE_MS),
            0
        );
    }

    #[test]
    fn orders_count_per_key_in_ten_seconds_and_a_day() {
        let mut counters = Counters::default();
        let t = 3 * DAY_MS;
        assert_eq!(counters.add_order("a", t), [1, 1]);
        assert_eq!(counters.add_order("a", t + 9_999), [2, 2]);
        assert_eq!(counters.add_order("b", t + 9_999), [1, 1]);
        assert_eq!(counters.add_order("a", t + TEN_SECONDS_MS), [1, 3]);
        assert_eq!(counters.add_order("a", t + DAY_MS), [1, 1]);
    }

    #[test]
    fn paths_map_to_their_family() {
        assert_eq!(Family::of("/api/v3/order", false), Family::Api);
        assert_eq!(
            Family::of("/sapi/v1/account/apiRestrictions", false),
            Family::SapiIp
        );
        assert_eq!(
            Family::of("/sapi/v1/capital/withdraw/apply", true),
            Family::SapiUid
        );
        assert_eq!(Family::of("/fapi/v1/order", false), Family::Fapi);
        assert_eq!(Family::of("/dapi/v1/ping", false), Family::Dapi);
        assert_eq!(Family::of("/nothing", false), Family::Api);
    }
}
