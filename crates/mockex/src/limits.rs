//! Binance's rate limits: request weight per API family, refused past its limit per IP and
//! host (429, then IP bans, 418); spot orders per account, counted and reported only.
//!
//! The model, in Binance's words where it has them (spot "LIMITS", USD-M "Limits"):
//!
//! - Weight is counted per API family in windows that start on the minute of the
//!   simulator's clock ([`crate::Simulator::clock_ms`]), and the whole simulator is one
//!   IP. A request whose weight takes its family's count past the family's limit (`/api`
//!   6000, IP-weighted `/sapi` 12000, `/fapi` 2400, `/dapi` 2400 by default) is refused
//!   with 429 and -1003 "Too much request weight used; …", and a `Retry-After` of the whole
//!   seconds until the window turns; it does not run, but its weight is counted, as
//!   Binance counts it. So is any request, whatever its weight, while the count stands
//!   past the limit without a 429 answered yet (after a test lowered the limit, or a ban
//!   ended, within the window).
//! - Limits and bans are per host: `/api` and `/sapi` are `api.binance.com`, `/fapi`
//!   `fapi.binance.com`, `/dapi` `dapi.binance.com`. A client that calls a host again in
//!   the window in which it was answered a 429 (so did not wait the `Retry-After`),
//!   while the family refused is still past its limit, has the IP banned from that host:
//!   that request and every later one to the host, whatever its family or weight, is
//!   answered 418 and -1003 "Way too much request weight used; IP banned until …", with a
//!   `Retry-After` of the whole seconds until the ban ends, and does not run. The first
//!   ban lasts two minutes (or what a test sets), each later one on the same host twice
//!   the one before, up to three days ("IP bans are tracked and scale in duration for
//!   repeat offenders, from 2 minutes to 3 days").
//! - UID-weighted `/sapi` endpoints (the withdrawal) are counted per account, every key of
//!   an account adding to one counter, and never refused for their weight; an IP ban of
//!   `api.binance.com` refuses them all the same.
//! - Spot orders are counted per account, as the spot FAQ "Spot Unfilled Order Count
//!   Rules" says Binance counts them: per (sub)account, one count shared by all its IP
//!   addresses, API keys and APIs. Two keys of one account count into one count.
//!
//! What it leaves out: Binance's own rule for when to ban is not published, so the
//! simulator bans at the first request that does not wait out a 429, and forgets a host's
//! earlier bans only on `POST /__mock/reset?state=1`; a request refused with 418 counts no
//! weight; after a ban the count goes on in its window, so the first request past the
//! limit gets a 429 again before another ban. `/sapi` has one IP counter and one limit
//! for all its IP-weighted endpoints, where Binance gives some endpoints limits of their
//! own. Spot's order limit of 10 seconds is enforced (-1015, with no `Retry-After`, as
//! spot answers it; the count of the day and USD-M's order limits are only counted, for
//! their headers); the `RAW_REQUESTS` limit and WebSocket API limits are not.

use std::collections::HashMap;

use crate::auth::AccountId;

/// The request-weight counter a request counts against. Binance keeps one per API family,
/// each reported in headers of its own: `/api` (`X-MBX-USED-WEIGHT-1M`); `/sapi`, whose
/// endpoints are weighted either per IP (`X-SAPI-USED-IP-WEIGHT-1M`) or per account, the
/// UID (`X-SAPI-USED-UID-WEIGHT-1M`, withdrawals for one); and `/fapi` and `/dapi`, which
/// live on hosts of their own (`fapi.binance.com`, `dapi.binance.com`) with limits of
/// their own.
///
/// Binance documents each `/sapi` endpoint's limit as its own; the simulator keeps one
/// counter and one limit for all IP-weighted ones and one counter per account for the
/// UID-weighted ones, which it does not limit.
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

    /// The host this family's endpoints live on, whose limits and bans it shares.
    pub(crate) fn host(self) -> Host {
        match self {
            Family::Api | Family::SapiIp | Family::SapiUid => Host::Api,
            Family::Fapi => Host::Fapi,
            Family::Dapi => Host::Dapi,
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

/// A Binance host: an IP's limits and bans are the host's own.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Host {
    /// `api.binance.com`: `/api` and `/sapi`.
    Api,
    /// `fapi.binance.com`: `/fapi`.
    Fapi,
    /// `dapi.binance.com`: `/dapi`.
    Dapi,
}

/// The per-minute IP weight limits of each family, as Binance sets them, and how long a
/// first ban lasts; tests may lower them (`POST /__mock/weight-limit`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct WeightLimits {
    /// `/api` (Binance spot's `exchangeInfo` says 6000).
    pub(crate) api: u64,
    /// The IP-weighted `/sapi` endpoints.
    pub(crate) sapi_ip: u64,
    /// `/fapi` (Binance USD-M's `exchangeInfo` says 2400).
    pub(crate) fapi: u64,
    /// `/dapi`.
    pub(crate) dapi: u64,
    /// The length of a host's first ban, in seconds; each later one is twice the one
    /// before.
    pub(crate) first_ban_s: u64,
    /// Whether 429 and 418 answers carry `Retry-After`: spot's documentation promises
    /// it, USD-M's does not, so a client is tested without it too.
    pub(crate) retry_after: bool,
    /// New spot orders an account may place in 10 seconds (Binance's `ORDERS` limit of
    /// spot's `exchangeInfo`: 100); past it, -1015.
    pub(crate) orders_per_ten_seconds: u64,
}

impl Default for WeightLimits {
    fn default() -> WeightLimits {
        WeightLimits {
            api: 6000,
            sapi_ip: 12_000,
            fapi: 2400,
            dapi: 2400,
            first_ban_s: 120,
            retry_after: true,
            orders_per_ten_seconds: 100,
        }
    }
}

impl WeightLimits {
    /// `family`'s limit per minute; none for weight counted per account.
    pub(crate) fn of(&self, family: Family) -> Option<u64> {
        match family {
            Family::Api => Some(self.api),
            Family::SapiIp => Some(self.sapi_ip),
            Family::SapiUid => None,
            Family::Fapi => Some(self.fapi),
            Family::Dapi => Some(self.dapi),
        }
    }

    /// The same limits with every family's set to `limit`.
    pub(crate) fn each(self, limit: u64) -> WeightLimits {
        WeightLimits {
            api: limit,
            sapi_ip: limit,
            fapi: limit,
            dapi: limit,
            ..self
        }
    }
}

/// The longest ban, in seconds: Binance's bans "scale in duration for repeat offenders,
/// from 2 minutes to 3 days".
const LONGEST_BAN_S: u64 = 3 * 86_400;

/// What becomes of a request, by the weight of its IP on its host.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Admission {
    /// Within the limit: it runs. `used` is its family's weight this minute, its own
    /// included.
    Admitted { used: u64 },
    /// Past the family's `limit`: 429, come back in `retry_after_s`, when the window turns.
    /// `used` counts this request's weight too.
    TooMuchWeight {
        used: u64,
        limit: u64,
        retry_after_s: u64,
    },
    /// The IP is banned from the host until `until_ms`: 418, come back in `retry_after_s`.
    /// `used` is the family's weight this minute, this request not counted.
    Banned {
        used: u64,
        until_ms: u64,
        retry_after_s: u64,
    },
}

/// One host's account of the IP: the last 429 it answered and its bans.
#[derive(Debug, Default)]
struct Standing {
    /// The minute since the epoch in which the host last answered a 429, and the family
    /// it refused; cleared when a ban starts.
    warned: Option<(u64, Family)>,
    /// When the current (or last) ban ends, in ms since the epoch.
    banned_until_ms: u64,
    /// Bans so far: the next lasts the first ban's length times two to this power.
    bans: u32,
}

/// The headers that report an account's spot orders in the current 10 seconds and UTC
/// day.
pub(crate) const ORDER_COUNT_HEADERS: [&str; 2] = ["x-mbx-order-count-10s", "x-mbx-order-count-1d"];

/// The headers that report an account's USD-M orders in the current 10 seconds and
/// minute.
pub(crate) const FUTURES_ORDER_COUNT_HEADERS: [&str; 2] =
    ["x-mbx-order-count-10s", "x-mbx-order-count-1m"];

const MINUTE_MS: u64 = 60_000;
const TEN_SECONDS_MS: u64 = 10_000;
const DAY_MS: u64 = 86_400_000;

/// Weight used this minute and spot orders placed, as Binance counts them: in windows
/// that start on the minute, on the 10 seconds and at midnight UTC, not sliding ones; the
/// weight limits and each host's 429s and bans.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    /// The minute since the epoch that `weight` counts.
    minute: u64,
    /// Weight used this minute, by family and, for [`Family::SapiUid`], by account; the
    /// account is `None` for the other families.
    weight: HashMap<(Family, Option<AccountId>), u64>,
    /// Spot orders placed, by account.
    orders: HashMap<AccountId, OrderCount>,
    /// USD-M orders placed and modified, by account: (window index, count) for 10
    /// seconds and for a minute.
    futures_orders: HashMap<AccountId, [(u64, u64); 2]>,
    /// The limits in force.
    limits: WeightLimits,
    /// Each host's 429s and bans.
    standing: HashMap<Host, Standing>,
}

/// One account's spot orders: (window index, orders in it) for 10 seconds and for a day.
#[derive(Debug, Default)]
struct OrderCount {
    ten_seconds: (u64, u64),
    day: (u64, u64),
}

impl Counters {
    /// Adds `weight` to `family`'s counter (`account`'s, for [`Family::SapiUid`]) at
    /// `now_ms` and returns the counter's total for the minute. Limits no request.
    pub(crate) fn add_weight(
        &mut self,
        family: Family,
        account: Option<&AccountId>,
        weight: u32,
        now_ms: u64,
    ) -> u64 {
        self.turn_minute(now_ms);
        let used = self.weight.entry(owner(family, account)).or_default();
        *used += u64::from(weight);
        *used
    }

    /// Decides a request of `weight` to `family` (in `account`, which matters for
    /// [`Family::SapiUid`]) at `now_ms`, counting its weight unless it is refused for a
    /// ban (see the module documentation).
    pub(crate) fn admit(
        &mut self,
        family: Family,
        account: Option<&AccountId>,
        weight: u32,
        now_ms: u64,
    ) -> Admission {
        let minute = self.turn_minute(now_ms);
        let host = family.host();
        let standing = self.standing.entry(host).or_default();
        let banned_until_ms = standing.banned_until_ms;
        let warned = standing.warned;
        if banned_until_ms > now_ms {
            return Admission::Banned {
                used: self.used(family, account),
                until_ms: banned_until_ms,
                retry_after_s: whole_seconds(banned_until_ms - now_ms),
            };
        }
        let unheeded = warned.is_some_and(|(warned_minute, refused)| {
            warned_minute == minute && self.is_past_limit(refused)
        });
        if unheeded {
            let until_ms = self.ban(host, now_ms);
            return Admission::Banned {
                used: self.used(family, account),
                until_ms,
                retry_after_s: whole_seconds(until_ms - now_ms),
            };
        }
        let used = self.add_weight(family, account, weight, now_ms);
        match self.limits.of(family) {
            Some(limit) if used > limit => {
                self.standing.entry(host).or_default().warned = Some((minute, family));
                let window_ends_ms = (minute + 1) * MINUTE_MS;
                Admission::TooMuchWeight {
                    used,
                    limit,
                    retry_after_s: whole_seconds(window_ends_ms - now_ms),
                }
            }
            _ => Admission::Admitted { used },
        }
    }

    /// The limits in force.
    pub(crate) fn limits(&self) -> WeightLimits {
        self.limits
    }

    /// Puts `limits` in force from now on; the weight already used and bans already
    /// started stand.
    pub(crate) fn set_limits(&mut self, limits: WeightLimits) {
        self.limits = limits;
    }

    /// Restores the default limits, lifts every ban, forgets past 429s and bans and the
    /// weight used this minute. Spot order counts stand.
    pub(crate) fn reset_limits(&mut self) {
        self.limits = WeightLimits::default();
        self.standing.clear();
        self.weight.clear();
    }

    /// Starts the minute of `now_ms` if it is a new one (counting from zero again);
    /// returns it.
    fn turn_minute(&mut self, now_ms: u64) -> u64 {
        let minute = now_ms / MINUTE_MS;
        if minute != self.minute {
            self.minute = minute;
            self.weight.clear();
        }
        minute
    }

    /// `family`'s weight this minute (`account`'s, for [`Family::SapiUid`]).
    fn used(&self, family: Family, account: Option<&AccountId>) -> u64 {
        self.weight
            .get(&owner(family, account))
            .copied()
            .unwrap_or(0)
    }

    /// Whether `family`'s weight this minute stands past its limit.
    fn is_past_limit(&self, family: Family) -> bool {
        self.limits
            .of(family)
            .is_some_and(|limit| self.used(family, None) > limit)
    }

    /// Bans the IP from `host` from `now_ms`, for twice as long as its last ban there
    /// (the first ban's length the first time), three days at most; returns the ban's end.
    fn ban(&mut self, host: Host, now_ms: u64) -> u64 {
        let first_s = self.limits.first_ban_s;
        let standing = self.standing.entry(host).or_default();
        let length_s = 2_u64
            .checked_pow(standing.bans)
            .and_then(|factor| first_s.checked_mul(factor))
            .map_or(LONGEST_BAN_S, |s| s.min(LONGEST_BAN_S));
        standing.bans = standing.bans.saturating_add(1);
        standing.warned = None;
        standing.banned_until_ms = now_ms.saturating_add(length_s * 1000);
        standing.banned_until_ms
    }

    /// Counts USD-M order requests of `account` at `now_ms`, `ten_seconds` towards the
    /// 10-second limit and `minute` towards the minute's, as Binance's USD-M pages weigh
    /// them (an order or a modification 1 and 1, a batch 5 and 1), and returns the
    /// counts of the current 10 seconds and minute. Limits nothing.
    pub(crate) fn add_futures_orders(
        &mut self,
        account: &AccountId,
        ten_seconds: u64,
        minute: u64,
        now_ms: u64,
    ) -> [u64; 2] {
        let counts = self.futures_orders.entry(account.clone()).or_default();
        let mut bump = |index: usize, length: u64, by: u64| {
            let (window, n) = &mut counts[index];
            let current = now_ms / length;
            if *window != current {
                *window = current;
                *n = 0;
            }
            *n += by;
            *n
        };
        [
            bump(0, TEN_SECONDS_MS, ten_seconds),
            bump(1, MINUTE_MS, minute),
        ]
    }

    /// Whether `account` may place `orders` more spot orders at `now_ms` under the limit
    /// of 10 seconds, counted as its headers tell it: the orders of the current 10 seconds
    /// that have not filled (a fill takes one off, as Binance's unfilled order count does).
    pub(crate) fn may_place_orders(&self, account: &AccountId, orders: u64, now_ms: u64) -> bool {
        let placed = self
            .orders
            .get(account)
            .map_or(0, |count| match count.ten_seconds {
                (window, n) if window == now_ms / TEN_SECONDS_MS => n,
                _ => 0,
            });
        placed.saturating_add(orders) <= self.limits.orders_per_ten_seconds
    }

    /// Counts one spot order placed in `account` at `now_ms`; returns the account's
    /// orders in the current 10 seconds and the current day, this one included.
    pub(crate) fn add_order(&mut self, account: &AccountId, now_ms: u64) -> [u64; 2] {
        let count = self.orders.entry(account.clone()).or_default();
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

    /// Takes one order off `account`'s unfilled order count in every interval, as Binance
    /// does when an order fills for the first time (spot FAQ "Spot Unfilled Order Count
    /// Rules"): never below zero, and only the current intervals' counts. Binance may take
    /// more off for an order that first fills as a maker; the simulator's orders fill only
    /// as takers, when placed.
    pub(crate) fn fill_order(&mut self, account: &AccountId, now_ms: u64) {
        let Some(count) = self.orders.get_mut(account) else {
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

/// The key of `family`'s counter: `account` for weight counted per account, else none.
fn owner(family: Family, account: Option<&AccountId>) -> (Family, Option<AccountId>) {
    match family {
        Family::SapiUid => (family, account.cloned()),
        _ => (family, None),
    }
}

/// `ms` in whole seconds, rounded up and at least 1: a `Retry-After` that, heeded, is
/// never too early.
fn whole_seconds(ms: u64) -> u64 {
    ms.div_ceil(1000).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The account of key `api_key`, which names none.
    fn own(api_key: &str) -> AccountId {
        AccountId::Own(api_key.to_owned())
    }

    #[test]
    fn each_family_counts_apart_and_every_minute_starts_again() {
        let mut counters = Counters::default();
        let t = 5 * MINUTE_MS;
        assert_eq!(counters.add_weight(Family::Api, None, 20, t), 20);
        assert_eq!(counters.add_weight(Family::Fapi, None, 5, t), 5);
        assert_eq!(
            counters.add_weight(Family::SapiIp, Some(&own("a")), 1, t),
            1
        );
        assert_eq!(
            counters.add_weight(Family::SapiUid, Some(&own("a")), 600, t),
            600
        );
        assert_eq!(
            counters.add_weight(Family::SapiUid, Some(&own("b")), 600, t),
            600
        );
        assert_eq!(
            counters.add_weight(Family::SapiIp, Some(&own("b")), 1, t),
            2
        );
        assert_eq!(counters.add_weight(Family::Api, None, 1, t + 1), 21);
        assert_eq!(counters.add_weight(Family::Api, None, 1, t + MINUTE_MS), 1);
        assert_eq!(
            counters.add_weight(Family::SapiUid, Some(&own("a")), 0, t + MINUTE_MS),
            0
        );
    }

    #[test]
    fn orders_count_per_account_in_ten_seconds_and_a_day() {
        let mut counters = Counters::default();
        let t = 3 * DAY_MS;
        assert_eq!(counters.add_order(&own("a"), t), [1, 1]);
        assert_eq!(counters.add_order(&own("a"), t + 9_999), [2, 2]);
        assert_eq!(counters.add_order(&own("b"), t + 9_999), [1, 1]);
        assert_eq!(counters.add_order(&own("a"), t + TEN_SECONDS_MS), [1, 3]);
        assert_eq!(counters.add_order(&own("a"), t + DAY_MS), [1, 1]);
        // An account named like a key is not that key's own account.
        let named = AccountId::Named("a".to_owned());
        assert_eq!(counters.add_order(&named, t + DAY_MS), [1, 1]);
        assert_eq!(counters.add_order(&own("a"), t + DAY_MS), [2, 2]);
    }

    /// The limits a test sets: 10 a minute on every family, bans from 100 s.
    fn limited() -> Counters {
        let mut counters = Counters::default();
        counters.set_limits(WeightLimits {
            first_ban_s: 100,
            ..WeightLimits::default().each(10)
        });
        counters
    }

    #[test]
    fn weight_past_the_limit_is_refused_until_the_window_turns() {
        let mut counters = limited();
        let t = 7 * MINUTE_MS + 15_500;
        assert_eq!(
            counters.admit(Family::Api, None, 10, t),
            Admission::Admitted { used: 10 }
        );
        // 44.5 s to the next minute: 45 whole seconds.
        assert_eq!(
            counters.admit(Family::Api, None, 1, t),
            Admission::TooMuchWeight {
                used: 11,
                limit: 10,
                retry_after_s: 45
            }
        );
        // Another host counts its own.
        assert_eq!(
            counters.admit(Family::Fapi, None, 10, t),
            Admission::Admitted { used: 10 }
        );
        // Waiting out the `Retry-After`: a new window.
        assert_eq!(
            counters.admit(Family::Api, None, 1, t + 45_000),
            Admission::Admitted { used: 1 }
        );
        // The last millisecond of a window still says one second.
        counters.admit(Family::Api, None, 10, 10 * MINUTE_MS - 1);
        assert!(matches!(
            counters.admit(Family::Api, None, 1, 10 * MINUTE_MS - 1),
            Admission::TooMuchWeight {
                retry_after_s: 1,
                ..
            }
        ));
    }

    #[test]
    fn not_waiting_after_a_429_bans_the_host_longer_each_time() {
        let mut counters = limited();
        let mut t = 3 * MINUTE_MS;
        for expected_s in [100, 200, 400, 800] {
            counters.admit(Family::Api, None, 11, t);
            // Any family of the host, any weight: the client did not back off.
            assert_eq!(
                counters.admit(Family::SapiIp, None, 0, t + 1),
                Admission::Banned {
                    used: 0,
                    until_ms: t + 1 + expected_s * 1000,
                    retry_after_s: expected_s
                }
            );
            // During the ban, the next minute too, every request is refused, uncounted.
            assert_eq!(
                counters.admit(Family::Api, None, 1, t + MINUTE_MS),
                Admission::Banned {
                    used: 0,
                    until_ms: t + 1 + expected_s * 1000,
                    retry_after_s: expected_s - 59
                }
            );
            assert_eq!(
                counters.admit(Family::Dapi, None, 1, t + 2),
                Admission::Admitted { used: 1 }
            );
            t += (expected_s / 60 + 2) * MINUTE_MS;
            assert_eq!(
                counters.admit(Family::Api, None, 1, t),
                Admission::Admitted { used: 1 }
            );
            t += MINUTE_MS;
        }
    }

    #[test]
    fn bans_stop_growing_at_three_days() {
        let mut counters = Counters::default();
        counters.set_limits(WeightLimits {
            first_ban_s: 86_400,
            ..WeightLimits::default().each(1)
        });
        let mut t = MINUTE_MS;
        for expected_s in [86_400, 172_800, LONGEST_BAN_S, LONGEST_BAN_S] {
            counters.admit(Family::Fapi, None, 2, t);
            let Admission::Banned { retry_after_s, .. } = counters.admit(Family::Fapi, None, 1, t)
            else {
                panic!("not banned");
            };
            assert_eq!(retry_after_s, expected_s);
            t += (LONGEST_BAN_S + 60) * 1000;
        }
    }

    #[test]
    fn a_429_answered_before_the_limit_was_raised_bans_no_one() {
        let mut counters = limited();
        let t = 11 * MINUTE_MS;
        counters.admit(Family::Api, None, 11, t);
        counters.set_limits(WeightLimits::default());
        assert_eq!(
            counters.admit(Family::Api, None, 1, t),
            Admission::Admitted { used: 12 }
        );
    }

    #[test]
    fn withdrawals_are_not_limited_by_weight_but_share_the_hosts_ban() {
        let mut counters = limited();
        let t = 13 * MINUTE_MS;
        assert_eq!(
            counters.admit(Family::SapiUid, Some(&own("a")), 900, t),
            Admission::Admitted { used: 900 }
        );
        counters.admit(Family::Api, None, 11, t);
        counters.admit(Family::Api, None, 1, t);
        assert!(matches!(
            counters.admit(Family::SapiUid, Some(&own("a")), 900, t),
            Admission::Banned { used: 900, .. }
        ));
        counters.reset_limits();
        assert_eq!(
            counters.admit(Family::SapiUid, Some(&own("a")), 900, t),
            Admission::Admitted { used: 900 }
        );
        assert_eq!(counters.limits(), WeightLimits::default());
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
