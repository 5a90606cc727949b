//! The request weight each exchange host reports used, so that public market data, which
//! needs no key and no client, and signed reads cannot spend the weight that orders and
//! cancels need.
//!
//! An exchange limits the request weight an address may use per minute, and says in each
//! answer how much it has used (Binance: `X-MBX-USED-WEIGHT-1M`, or
//! `X-SAPI-USED-IP-WEIGHT-1M` for `/sapi`). It keeps several such limits, one per pool of
//! endpoints ([`Adapter::weight_pool`]), so the
//! gauge keeps one count per upstream and pool: a report from `/fapi` says nothing of
//! `/api`, even when one upstream URL (a simulator) serves both. Past the limit it
//! refuses everything from the address, signed requests included, and bans it for a
//! while if it goes on. keygate forwards public calls from anything that reaches its
//! listener, so it stops forwarding them once they have spent a cap in the current
//! minute. A client's rate bounds how many requests it sends, not what they weigh, and a
//! client may have none: one with only the read scope could send reads of every
//! symbol's open orders (weight 80 each on spot) until the address's weight is gone. So
//! signed reads stop at a cap of their own, higher than public data's; the ticker calls
//! that price orders stop higher still; orders, cancels, withdrawals and transfers are
//! not held back for the weight others used (the rest of the limit is theirs). A test
//! order, which places nothing, is weighed as a signed read.
//!
//! These held-back calls are counted apart from everything else ([`Cap`]): by keygate's
//! own estimates of them, or by the exchange's count of the whole pool where that is
//! lower (the estimates are upper bounds). Counted by the exchange's report alone, one
//! client's orders and cancels, which are not held back, would pause every client's
//! signed reads and the pricing of everyone's orders (found by review). The exchange's
//! count, whoever spent it (orders, or other programs on the address), holds them back
//! only near the exchange's limit, where the rest is kept for orders and cancels.
//!
//! Clients of one address share its limit, so one client must not spend it all: a
//! hostile bot's test orders or cancels could otherwise take the address to the
//! exchange's 429, which stops every client's orders and cancels. So each client's
//! signed requests are also [charged](WeightGauge::charge) at their estimated weight,
//! and a client is refused once its own requests this minute would pass its share of
//! the pool (the gateway sets it below the exchange's limit, by what public data may
//! spend and what is kept for the other clients).
//!
//! A report comes only with an answer, so a burst of calls sent at once would all pass a
//! cap checked against reports alone. Each held-back call therefore reserves an upper
//! estimate of its weight until its answer (and the weight that answer reports) is in,
//! and the pool's count is what is reported and what is reserved. A call that
//! ends without a report (the exchange did not answer or said nothing of its weight) may
//! still have cost what it was estimated at: that estimate counts as spent until the
//! minute turns. One refused before it was sent [releases](Reservation::release) it.
//!
//! The exchange may also say, in an answer, that the address must send nothing more for a
//! while ([`BackOff`]): a pool's weight used up (Binance: 429 and `Retry-After`), or the
//! address banned from the host for going on (418). Binance bans an address that goes on
//! sending after a 429, for longer each time, and does not say what counts as going on;
//! a ban stops every client behind keygate, orders and cancels included. So the gauge
//! also keeps until when each upstream is [paused](WeightGauge::paused), whichever pool's
//! answer asked, and nothing is sent there until then (the gateway answers as the
//! exchange would have; reconciliation skips its reads). The first answer of a pause
//! raises `exchange_back_off` through the gauge's [`Alerter`], if it has one; so does
//! the first of an account's [order wait](WeightGauge::pause_orders).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use keygate_exchanges::{Adapter, BackOff};
use keygate_monitor::{Alert, AlertRule, Alerter, Severity};

use crate::upstream::Response;

/// The last weight each upstream reported, and the weight public calls and signed reads
/// in flight to it hold, by base URL and weight pool.
pub struct WeightGauge {
    state: Mutex<State>,
    /// When the gauge was made: what [`WeightGauge::paused_until`] counts from.
    made: Instant,
    /// The end of the latest pause on the clock that never steps, in milliseconds since
    /// `made` (0: none was ever asked for): before it, [`WeightGauge::paused`] looks at
    /// the state; after it, at nothing.
    paused_until: AtomicU64,
    /// The end of the latest wait asked of an account's orders, as `paused_until` (0:
    /// none was ever asked for).
    orders_paused_until: AtomicU64,
    /// Where the first answer of each pause is told.
    alerter: Mutex<Option<Alerter>>,
    /// What keeps each pause beyond this process, told as one begins or grows.
    keeper: Mutex<Option<PauseKeeper>>,
}

impl Default for WeightGauge {
    fn default() -> WeightGauge {
        WeightGauge {
            state: Mutex::default(),
            made: Instant::now(),
            paused_until: AtomicU64::new(0),
            orders_paused_until: AtomicU64::new(0),
            alerter: Mutex::default(),
            keeper: Mutex::default(),
        }
    }
}

/// Told of a pause for an upstream (its base URL) as it begins, lengthens or becomes a
/// ban, so that it can be kept beyond the process ([`WeightGauge::keep_pauses_with`]).
pub type PauseKeeper = Box<dyn Fn(&str, Paused) + Send + Sync>;

/// How long after an account's order wait was alerted another of its waits, in the same
/// pool, is only logged ([`WeightGauge::pause_orders`]).
pub const ORDER_WAIT_ALERT_EVERY: Duration = Duration::from_secs(600);

/// One pool of request weight: an upstream (base URL), and the pool of its endpoints a
/// call draws from ([`Adapter::weight_pool`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pool<'a> {
    /// The base URL.
    pub upstream: &'a str,
    /// The pool's name (`/api`, `/sapi`…; empty for endpoints in none).
    pub name: &'static str,
}

/// Something kept per base URL and, within it, per weight pool (`/api`, `/sapi`…).
type ByPool<T> = HashMap<String, HashMap<&'static str, T>>;

#[derive(Default)]
struct State {
    reported: ByPool<Report>,
    /// Held by calls in flight: held-back calls and [holds](WeightGauge::hold).
    reserved: ByPool<u64>,
    /// Held by held-back calls in flight (of `reserved`).
    held_back_in_flight: ByPool<u64>,
    /// Estimates of held-back calls sent and ended this minute, with a report or
    /// without.
    held_back_sent: ByPool<Report>,
    /// Estimates of calls that ended without a report, this minute.
    unreported: ByPool<Report>,
    /// The pauses the exchange asked for, by base URL, with their ends on the wall clock
    /// (what a [`PauseKeeper`] keeps for the next process).
    pauses: HashMap<String, Paused>,
    /// When each pause ends on the clock that never steps, which alone ends it: a wall
    /// clock set back (an hour, say) does not hold every order and cancel back that much
    /// longer, nor does one set forward during a ban send at once, and have the ban
    /// lengthened (found by review).
    pause_ends: HashMap<String, Instant>,
    /// When each account's new orders may go again, by account and weight pool: the
    /// exchange answered that the account placed too many ([`WeightGauge::pause_orders`]).
    order_pause_ends: HashMap<(String, &'static str), Instant>,
    /// When each account's order wait was last alerted, by account and weight pool
    /// ([`ORDER_WAIT_ALERT_EVERY`]).
    order_waits_alerted: HashMap<(String, &'static str), Instant>,
    /// The estimated weight of each client's signed requests in the minute
    /// `spent_minute`, by client name: cleared as the minute turns, so that it holds the
    /// clients of one minute only.
    spent: HashMap<String, ByPool<Spent>>,
    spent_minute: u64,
    /// How many times `spent` was cleared: a [`Charge`] made before a clear is not taken
    /// back from the counts after it (a clock that steps back and forth over a minute's
    /// turn clears it twice within the minute).
    spent_generation: u64,
}

/// The exchange asked that nothing more be sent, until `until_ms` (since the epoch).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Paused {
    /// When the pause ends.
    pub until_ms: u64,
    /// Whether the address is banned, not asked to let a pool's weight recover.
    pub banned: bool,
}

/// The entry of `upstream` and `pool` in `map`, made from `T::default()` if there is
/// none (the base URL copied only then).
#[allow(clippy::expect_used, reason = "the entry is inserted just before")]
fn entry<'m, T: Default>(map: &'m mut ByPool<T>, upstream: &str, pool: &'static str) -> &'m mut T {
    if !map.contains_key(upstream) {
        map.insert(upstream.to_owned(), HashMap::new());
    }
    map.get_mut(upstream)
        .expect("inserted above if it was missing")
        .entry(pool)
        .or_default()
}

/// `values` sorted, with one entry per set of labels, the highest: upstreams named by
/// their origin ([`origin`](crate::upstream::origin)) may share one.
fn highest_of_each(values: &mut Vec<([String; 2], u64)>) {
    values.sort();
    values.reverse();
    values.dedup_by(|later, kept| later.0 == kept.0);
    values.reverse();
}

/// How far the wall clock may be from the clock that never steps before a pause is told
/// as ending when the latter says, not when the wall clock would.
const CLOCKS_AGREE_WITHIN_MS: u64 = 2_000;

impl State {
    /// Whether `upstream`'s pause has time left on the clock that never steps.
    fn is_running(&self, upstream: &str) -> bool {
        self.steady_ms_left(upstream) > 0
    }

    /// What `upstream`'s pause has left on the clock that never steps, in milliseconds.
    fn steady_ms_left(&self, upstream: &str) -> u64 {
        self.pause_ends.get(upstream).map_or(0, |end| {
            u64::try_from(end.saturating_duration_since(Instant::now()).as_millis())
                .unwrap_or(u64::MAX)
        })
    }

    /// Makes `upstream`'s pause last at least `left` more on the clock that never steps;
    /// returns when it ends.
    fn end_pause_in(&mut self, upstream: &str, left: Duration) -> Instant {
        let end = Instant::now() + left;
        match self.pause_ends.get_mut(upstream) {
            Some(running) => {
                *running = (*running).max(end);
                *running
            }
            None => {
                self.pause_ends.insert(upstream.to_owned(), end);
                end
            }
        }
    }

    /// `upstream`'s pause as told at `now_ms` on the wall clock: its end on the wall
    /// clock, unless that clock stepped since it began (or says it is over while the clock
    /// that never steps does not), then where the clock that never steps puts it. `None`
    /// when it is over.
    fn told(&self, upstream: &str, now_ms: u64) -> Option<Paused> {
        let left = self.steady_ms_left(upstream);
        let paused = self.pauses.get(upstream).copied().filter(|_| left > 0)?;
        let steady_until_ms = now_ms.saturating_add(left);
        let agree = paused.until_ms.abs_diff(steady_until_ms) <= CLOCKS_AGREE_WITHIN_MS;
        let until_ms = if agree && paused.until_ms > now_ms {
            paused.until_ms
        } else {
            steady_until_ms
        };
        Some(Paused { until_ms, ..paused })
    }
}

impl Paused {
    /// This pause with the one running, if any: the later end, and a ban if either is.
    fn joined(self, running: Option<Paused>) -> Paused {
        match running {
            Some(running) => Paused {
                until_ms: self.until_ms.max(running.until_ms),
                banned: self.banned || running.banned,
            },
            None => self,
        }
    }
}

/// The entry of `upstream` and `pool` in `map`, if any.
fn get<'m, T>(map: &'m ByPool<T>, upstream: &str, pool: &str) -> Option<&'m T> {
    map.get(upstream).and_then(|pools| pools.get(pool))
}

/// Takes `weight` from the entry of `upstream` and `pool` in `map`. An entry that falls
/// to nothing stays, counting nothing: the upstreams and pools are a few the configuration
/// names, and a request that finds its entry there allocates none (a profile found the
/// entries made and freed again on every request read alone).
fn take_back(map: &mut ByPool<u64>, upstream: &str, pool: &'static str, weight: u64) {
    if let Some(held) = map.get_mut(upstream).and_then(|pools| pools.get_mut(pool)) {
        *held = held.saturating_sub(weight);
    }
}

/// Adds `weight` to this minute's entry of `upstream` and `pool` in `map` (one of an
/// earlier minute starts again from nothing).
fn add_this_minute(map: &mut ByPool<Report>, upstream: &str, pool: &'static str, weight: u64) {
    let minute = crate::now_ms() / 60_000;
    let spent = entry(map, upstream, pool);
    if spent.minute != minute {
        *spent = Report { minute, used: 0 };
    }
    spent.used = spent.used.saturating_add(weight);
}

/// Weight a call holds until it is dropped: a held-back call (public data, a signed read,
/// a lookup that prices an order; [`WeightGauge::reserve`]) or a
/// [hold](WeightGauge::hold). [`Reservation::settle`] it once its answer's report is
/// recorded, or [`Reservation::release`] it if it was never sent; dropped otherwise,
/// its estimate counts as spent.
pub struct Reservation<'g> {
    gauge: &'g WeightGauge,
    upstream: String,
    pool: &'static str,
    weight: u64,
    /// Whether it is a held-back call's, counted against the caps for them.
    held_back: bool,
    settled: bool,
    sent: bool,
}

impl Reservation<'_> {
    /// The exchange reported the weight used with the call's answer: the estimate is no
    /// longer needed.
    pub fn settle(mut self) {
        self.settled = true;
    }

    /// The call was refused before it was sent: it spent nothing.
    pub fn release(mut self) {
        self.settled = true;
        self.sent = false;
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        let mut state = self.gauge.lock();
        let (upstream, pool) = (self.upstream.as_str(), self.pool);
        take_back(&mut state.reserved, upstream, pool, self.weight);
        if self.held_back {
            take_back(&mut state.held_back_in_flight, upstream, pool, self.weight);
            if self.sent {
                add_this_minute(&mut state.held_back_sent, upstream, pool, self.weight);
            }
        }
        if !self.settled {
            add_this_minute(&mut state.unreported, upstream, pool, self.weight);
        }
    }
}

/// Where the calls keygate holds back (public market data, signed reads and test
/// orders, the lookups that price orders) stop in a pool, in a minute.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cap {
    /// What the held-back calls sent or in flight this minute may weigh: by keygate's
    /// estimates of them, or by the exchange's count of the whole pool where that is
    /// lower. Orders and cancels do not count towards it.
    pub held_back: u64,
    /// What the pool may have used this minute by the exchange's count, whoever spent it
    /// (calls in flight and calls that ended without a report counted at their
    /// estimates): the rest of the exchange's limit is kept for orders and cancels.
    pub pool: u64,
}

/// Why a held-back call may not go now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OverCap {
    /// The held-back calls of this minute weigh `spent`, at or past the cap `cap`
    /// ([`Cap::held_back`]).
    HeldBack {
        /// What they weigh, sent or in flight.
        spent: u64,
        /// The cap.
        cap: u64,
    },
    /// The pool's weight by the exchange's count reaches `cap` ([`Cap::pool`]).
    Pool {
        /// Reported used this minute.
        reported: u64,
        /// Held by calls not yet answered, and estimated for calls that ended without a
        /// report this minute.
        reserved: u64,
        /// The cap.
        cap: u64,
    },
}

/// A client whose signed request spends weight, and its share of each pool in a minute.
#[derive(Clone, Copy, Debug)]
pub struct Payer<'a> {
    /// The client's name.
    pub client: &'a str,
    /// The most its requests may be estimated to weigh in a pool in a minute, the
    /// lookups that price its orders included.
    pub share: u64,
    /// The most of that the lookups that price its orders may weigh.
    pub pricing_share: u64,
    /// The most of that its signed reads and test orders may weigh: less than the cap of
    /// every client's reads together, so that one client's reads cannot pause the
    /// others' for the rest of the minute (found by review: a read-only key polling in
    /// a loop did).
    pub read_share: u64,
}

/// What part of a client's share a charge draws on besides its whole share.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SharePart {
    /// Its orders, cancels, withdrawals and transfers: the whole share alone.
    Requests,
    /// Its signed reads and test orders: [`Payer::read_share`] too.
    Reads,
    /// The lookups that price its orders: [`Payer::pricing_share`] too.
    Pricing,
}

/// Weight charged to a client ([`WeightGauge::charge`]): it stays charged unless
/// [refunded](Charge::refund), as it should be when what it was charged for is never
/// sent.
#[must_use = "a charge stays unless it is refunded; drop it to keep it"]
pub struct Charge<'g> {
    gauge: &'g WeightGauge,
    client: String,
    upstream: String,
    pool: &'static str,
    part: SharePart,
    weight: u64,
    /// The generation of the counts it was made in.
    generation: u64,
}

impl<'g> Charge<'g> {
    fn new(
        gauge: &'g WeightGauge,
        payer: Payer<'_>,
        part: SharePart,
        pool: Pool<'_>,
        weight: u64,
        generation: u64,
    ) -> Charge<'g> {
        Charge {
            gauge,
            client: payer.client.to_owned(),
            upstream: pool.upstream.to_owned(),
            pool: pool.name,
            part,
            weight,
            generation,
        }
    }

    /// This charge, with `spent` of it no longer handed back by a refund (a lookup made
    /// for the request, which the exchange counts whether the request goes or not).
    pub fn less(mut self, spent: u64) -> Charge<'g> {
        self.weight = self.weight.saturating_sub(spent);
        self
    }

    /// Hands the weight back to the client: what it was charged for was not sent.
    pub fn refund(self) {
        self.gauge.refund(&self);
    }
}

/// Why a client's signed request may not go now: what it is charged for this minute
/// was estimated at `spent`, and this one would take it past `share`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OverShare {
    /// What the client was charged for this minute: its requests, or the part of them
    /// `part` names.
    pub spent: u64,
    /// The most it may be charged for in a minute.
    pub share: u64,
    /// Which share it is: the whole one ([`SharePart::Requests`]), or its part for
    /// reads or for pricing.
    pub part: SharePart,
}

/// Why a call made for a client may not go now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// The pool's weight reaches the cap for such calls.
    Cap(OverCap),
    /// The client reaches its share of the pool.
    Share(OverShare),
}

/// What one client was charged for in a pool this minute.
#[derive(Clone, Copy, Default)]
struct Spent {
    /// Its requests and the lookups that priced its orders.
    total: u64,
    /// The lookups that priced its orders.
    pricing: u64,
    /// Its signed reads and test orders.
    reads: u64,
}

#[derive(Clone, Copy, Default)]
struct Report {
    /// The minute (since the epoch, by keygate's clock) it was reported in.
    minute: u64,
    used: u64,
}

impl WeightGauge {
    /// Notes what an answer of the exchange, to a call drawing from `pool`, says of its
    /// request weight: a back-off it asks for ([`WeightGauge::back_off`]), and the weight
    /// it reports used ([`WeightGauge::record`]), which settles the call's `reservation`
    /// (without a report, the reservation's estimate stays counted). Every answer
    /// keygate reads goes through here.
    pub fn note_answer<A: Adapter>(
        &self,
        adapter: &A,
        pool: Pool<'_>,
        answer: &Response,
        reservation: Option<Reservation<'_>>,
    ) {
        let now_ms = crate::now_ms();
        if let Some(back_off) = adapter.back_off(answer.status, &answer.headers, &answer.body) {
            self.back_off(pool, back_off, now_ms);
        }
        if let Some(used) = adapter.used_weight(pool.name, &answer.headers) {
            self.record(pool, used, now_ms);
            if let Some(reservation) = reservation {
                reservation.settle();
            }
        }
    }

    /// Records that `pool` reported `used` weight at `now_ms`. Answers can
    /// arrive out of order, so within one minute the highest report stands.
    pub fn record(&self, pool: Pool<'_>, used: u64, now_ms: u64) {
        let minute = now_ms / 60_000;
        let mut state = self.lock();
        let last = entry(&mut state.reported, pool.upstream, pool.name);
        if last.minute == minute {
            last.used = last.used.max(used);
        } else {
            *last = Report { minute, used };
        }
    }

    /// The weight used this minute of each pool of each upstream, by origin (a base URL
    /// without its path, which may be a credential) and pool
    /// (`["https://api.binance.com", "/sapi"]`); those that reported none this minute are
    /// left out: their window has turned.
    pub fn this_minute(&self, now_ms: u64) -> Vec<([String; 2], u64)> {
        let state = self.lock();
        let mut used: Vec<([String; 2], u64)> = state
            .reported
            .iter()
            .flat_map(|(upstream, pools)| {
                pools
                    .iter()
                    .filter(|(_, r)| r.minute == now_ms / 60_000)
                    .map(move |(pool, r)| {
                        let origin = crate::upstream::origin(upstream).to_owned();
                        ([origin, (*pool).to_owned()], r.used)
                    })
            })
            .collect();
        highest_of_each(&mut used);
        used
    }

    /// Reserves `weight` of `pool` for a held-back call about to be sent (public data, a
    /// signed read), unless the held-back calls of this minute or the pool's weight by the
    /// exchange's count already reach their `cap` (the call that crosses it still goes,
    /// as it would with reports alone). A report from an earlier minute no longer counts:
    /// the exchange's window has turned.
    pub fn reserve(
        &self,
        pool: Pool<'_>,
        cap: Cap,
        weight: u64,
        now_ms: u64,
    ) -> Result<Reservation<'_>, OverCap> {
        let mut state = self.lock();
        self.reserve_locked(&mut state, pool, cap, weight, now_ms)
    }

    /// Holds `weight` of `pool` for a call that is not held back (the lookup a cancel
    /// makes, charged to its client with the cancel) until its answer: it counts towards
    /// the pool's weight by the exchange's count, as calls in flight do, but not towards
    /// the held-back calls' cap, and is never refused.
    pub fn hold(&self, pool: Pool<'_>, weight: u64) -> Reservation<'_> {
        let mut state = self.lock();
        *entry(&mut state.reserved, pool.upstream, pool.name) += weight;
        self.reservation(pool, weight, false)
    }

    /// A reservation of `weight` of `pool` (a held-back call's, or a hold), not yet
    /// settled; the caller has added it to the counts under the lock.
    fn reservation(&self, pool: Pool<'_>, weight: u64, held_back: bool) -> Reservation<'_> {
        Reservation {
            gauge: self,
            upstream: pool.upstream.to_owned(),
            pool: pool.name,
            weight,
            held_back,
            settled: false,
            sent: true,
        }
    }

    /// [`WeightGauge::reserve`], under the lock.
    fn reserve_locked(
        &self,
        state: &mut State,
        pool: Pool<'_>,
        cap: Cap,
        weight: u64,
        now_ms: u64,
    ) -> Result<Reservation<'_>, OverCap> {
        let this_minute = |reports: &ByPool<Report>| {
            get(reports, pool.upstream, pool.name)
                .filter(|r| r.minute == now_ms / 60_000)
                .map_or(0, |r| r.used)
        };
        let in_flight = |held: &ByPool<u64>| get(held, pool.upstream, pool.name).copied();
        let reported = this_minute(&state.reported);
        let reserved = in_flight(&state.reserved)
            .unwrap_or(0)
            .saturating_add(this_minute(&state.unreported));
        let pool_used = reported.saturating_add(reserved);
        if pool_used >= cap.pool {
            return Err(OverCap::Pool {
                reported,
                reserved,
                cap: cap.pool,
            });
        }
        let held_back = in_flight(&state.held_back_in_flight)
            .unwrap_or(0)
            .saturating_add(this_minute(&state.held_back_sent))
            .min(pool_used);
        if held_back >= cap.held_back {
            return Err(OverCap::HeldBack {
                spent: held_back,
                cap: cap.held_back,
            });
        }
        *entry(&mut state.reserved, pool.upstream, pool.name) += weight;
        *entry(&mut state.held_back_in_flight, pool.upstream, pool.name) += weight;
        Ok(self.reservation(pool, weight, true))
    }

    /// [Reserves](WeightGauge::reserve) `weight` of `pool` for a lookup that prices an
    /// order of `payer`'s, and charges it to the client, under one lock: refused at either
    /// part of `cap`, at the client's share, or at its share for pricing, whichever comes
    /// first.
    pub fn reserve_pricing(
        &self,
        payer: Payer<'_>,
        pool: Pool<'_>,
        cap: Cap,
        weight: u64,
        now_ms: u64,
    ) -> Result<(Reservation<'_>, Charge<'_>), Refused> {
        let mut state = self.lock();
        Self::has_room(&mut state, payer, SharePart::Pricing, pool, weight, now_ms)
            .map_err(Refused::Share)?;
        let reservation = self
            .reserve_locked(&mut state, pool, cap, weight, now_ms)
            .map_err(Refused::Cap)?;
        Ok((
            reservation,
            self.spend(&mut state, payer, SharePart::Pricing, pool, weight),
        ))
    }

    /// Charges `weight` (an upper estimate) of a signed request of `payer` drawing from
    /// `pool` to the client, unless what it was charged for there this minute would then
    /// pass its share. Nothing is reserved: an order or a cancel is not held back for the
    /// weight others use, only for what its own client spent.
    pub fn charge(
        &self,
        payer: Payer<'_>,
        part: SharePart,
        pool: Pool<'_>,
        weight: u64,
        now_ms: u64,
    ) -> Result<Charge<'_>, OverShare> {
        let mut state = self.lock();
        Self::has_room(&mut state, payer, part, pool, weight, now_ms)?;
        Ok(self.spend(&mut state, payer, part, pool, weight))
    }

    /// Whether `payer` may be charged `weight` more of `pool` this minute, within its
    /// whole share and the share of `part`; the clients' counts start again as the
    /// minute turns.
    fn has_room(
        state: &mut State,
        payer: Payer<'_>,
        part: SharePart,
        pool: Pool<'_>,
        weight: u64,
        now_ms: u64,
    ) -> Result<(), OverShare> {
        let minute = now_ms / 60_000;
        if state.spent_minute != minute {
            state.spent.clear();
            state.spent_minute = minute;
            state.spent_generation += 1;
        }
        let spent = state
            .spent
            .get(payer.client)
            .and_then(|pools| get(pools, pool.upstream, pool.name))
            .copied()
            .unwrap_or_default();
        let over = |spent: u64, share: u64, part| {
            (spent.saturating_add(weight) > share).then_some(OverShare { spent, share, part })
        };
        let over_part = || match part {
            SharePart::Requests => None,
            // Reads go while less than their share is spent, as they go while less than
            // their cap is: one read heavier than the share (every symbol's open orders
            // under a small cap) is not refused for good.
            SharePart::Reads => (spent.reads >= payer.read_share).then_some(OverShare {
                spent: spent.reads,
                share: payer.read_share,
                part,
            }),
            SharePart::Pricing => over(spent.pricing, payer.pricing_share, part),
        };
        match over(spent.total, payer.share, SharePart::Requests).or_else(over_part) {
            Some(over) => Err(over),
            None => Ok(()),
        }
    }

    /// Takes `charge` back from what its client was charged for, unless the counts were
    /// cleared since (the minute turned).
    fn refund(&self, charge: &Charge<'_>) {
        let mut state = self.lock();
        if state.spent_generation != charge.generation {
            return;
        }
        let Some(spent) = state
            .spent
            .get_mut(&charge.client)
            .and_then(|pools| pools.get_mut(&charge.upstream))
            .and_then(|pools| pools.get_mut(charge.pool))
        else {
            return;
        };
        spent.total = spent.total.saturating_sub(charge.weight);
        match charge.part {
            SharePart::Requests => {}
            SharePart::Reads => spent.reads = spent.reads.saturating_sub(charge.weight),
            SharePart::Pricing => spent.pricing = spent.pricing.saturating_sub(charge.weight),
        }
    }

    /// Adds `weight` to what `client` was charged for in `pool` this minute
    /// ([`WeightGauge::has_room`] first).
    fn spend(
        &self,
        state: &mut State,
        payer: Payer<'_>,
        part: SharePart,
        pool: Pool<'_>,
        weight: u64,
    ) -> Charge<'_> {
        let client = payer.client;
        if !state.spent.contains_key(client) {
            state.spent.insert(client.to_owned(), HashMap::new());
        }
        if let Some(pools) = state.spent.get_mut(client) {
            let spent = entry(pools, pool.upstream, pool.name);
            spent.total = spent.total.saturating_add(weight);
            match part {
                SharePart::Requests => {}
                SharePart::Reads => spent.reads = spent.reads.saturating_add(weight),
                SharePart::Pricing => spent.pricing = spent.pricing.saturating_add(weight),
            }
        }
        Charge::new(self, payer, part, pool, weight, state.spent_generation)
    }

    /// Raises `exchange_back_off` through `alerter` when a pause or an account's order
    /// wait begins.
    pub fn alert_through(&self, alerter: Alerter) {
        *self.alerter.lock().unwrap_or_else(|p| p.into_inner()) = Some(alerter);
    }

    /// Records that the exchange answered a call drawing from `pool` at `now_ms` asking
    /// to back off: nothing is sent to its upstream until the time it gave has passed (a
    /// ban's, if one runs). The first answer of a pause (calls in flight when it came
    /// bring more) is logged and alerted; returns whether this was it.
    pub fn back_off(&self, pool: Pool<'_>, back_off: BackOff, now_ms: u64) -> bool {
        let until_ms = now_ms.saturating_add(back_off.seconds.saturating_mul(1000));
        let begins = {
            let mut state = self.lock();
            // Pauses that are over go, so that the maps hold running ones only.
            let State {
                pauses, pause_ends, ..
            } = &mut *state;
            let steady_now = Instant::now();
            pause_ends.retain(|_, end| *end > steady_now);
            pauses.retain(|upstream, _| pause_ends.contains_key(upstream));
            let running = state.pauses.get(pool.upstream).copied();
            let paused = Paused {
                until_ms,
                banned: back_off.banned,
            }
            .joined(running);
            state.pauses.insert(pool.upstream.to_owned(), paused);
            let end = state.end_pause_in(pool.upstream, Duration::from_secs(back_off.seconds));
            self.pause_until(end);
            if running.is_none_or(|running| running != paused) {
                self.keep(pool.upstream, paused);
            }
            // A ban that follows a wait begins something worse, and is told too.
            running.is_none_or(|running| back_off.banned && !running.banned)
        };
        if begins {
            self.tell(pool, back_off);
        }
        begins
    }

    /// Tells `keeper` of every pause as it begins, lengthens or becomes a ban.
    pub fn keep_pauses_with(&self, keeper: PauseKeeper) {
        *self.keeper.lock().unwrap_or_else(|p| p.into_inner()) = Some(keeper);
    }

    /// Takes up a pause asked for before this gauge was made (kept by a
    /// [`PauseKeeper`]): nothing is sent to `upstream` until it ends. Logged, not
    /// alerted again; one that is over at `now_ms` is ignored.
    pub fn resume_pause(&self, upstream: &str, paused: Paused, now_ms: u64) {
        if paused.until_ms <= now_ms {
            return;
        }
        let mut state = self.lock();
        let running = state.pauses.get(upstream).copied();
        let paused = paused.joined(running.filter(|_| state.is_running(upstream)));
        state.pauses.insert(upstream.to_owned(), paused);
        let end = state.end_pause_in(upstream, Duration::from_millis(paused.until_ms - now_ms));
        self.pause_until(end);
        tracing::warn!(
            upstream = crate::upstream::origin(upstream),
            seconds = paused.until_ms.saturating_sub(now_ms).div_ceil(1000),
            banned = paused.banned,
            "the exchange asked this address to back off before keygate started; nothing is \
             sent there until then"
        );
    }

    /// Has [`WeightGauge::paused`] look at the state until `end` at least.
    fn pause_until(&self, end: Instant) {
        let end_ms =
            u64::try_from(end.saturating_duration_since(self.made).as_millis()).unwrap_or(u64::MAX);
        self.paused_until.fetch_max(end_ms, Ordering::Relaxed);
    }

    /// Milliseconds since the gauge was made, on the clock that never steps.
    fn steady_now_ms(&self) -> u64 {
        u64::try_from(self.made.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Tells the keeper, if any, of `paused` (under the state's lock, so that the keeper
    /// hears of one upstream's pauses in the order they were made).
    fn keep(&self, upstream: &str, paused: Paused) {
        if let Some(keeper) = self
            .keeper
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
        {
            keeper(upstream, paused);
        }
    }

    /// Logs and alerts the first answer of a pause.
    fn tell(&self, pool: Pool<'_>, BackOff { seconds, banned }: BackOff) {
        let upstream = crate::upstream::origin(pool.upstream);
        tracing::warn!(
            upstream,
            pool = pool.name,
            seconds,
            banned,
            "the exchange asked this address to back off; nothing is sent there until then"
        );
        let alerter = self.alerter.lock().unwrap_or_else(|p| p.into_inner());
        let Some(alerter) = alerter.as_ref() else {
            return;
        };
        let (severity, what) = if banned {
            (
                Severity::Critical,
                format!(
                    "banned keygate's address from {} for {seconds} s (HTTP 418)",
                    upstream
                ),
            )
        } else {
            (
                Severity::Warning,
                format!(
                    "answered that keygate's address used up its request weight for {} on {} \
                     (HTTP 429) and asked it to wait {seconds} s",
                    pool.name, upstream
                ),
            )
        };
        alerter.raise(Alert::outside_log(
            severity,
            AlertRule::ExchangeBackOff,
            format!(
                "the exchange {what}: until then keygate sends nothing there, refusing every \
                 request, orders and cancels included (rule exchange_back_off), rather than \
                 make it worse; `keygate audit query --decision denied` lists them"
            ),
        ));
    }

    /// Holds `account`'s new orders in `pool` back for `wait`: the exchange answered that
    /// the account placed too many ([`Adapter::orders_back_off`]). A wait already longer
    /// stands. The first answer of a wait (orders in flight when it came bring more) is
    /// logged, and alerted unless one of the account's waits was alerted within
    /// [`ORDER_WAIT_ALERT_EVERY`]: no alert told of it before (found by review), and a bot
    /// whose orders are all refused is worth a look; but over its daily order count (no
    /// `Retry-After`, a wait of ten seconds at a time) a bot that keeps trying would have
    /// raised one every ten seconds until midnight (found by review of the alert).
    pub fn pause_orders(&self, account: &str, pool: Pool<'_>, wait: Duration) {
        let now = Instant::now();
        let end = now + wait;
        let (begins, alert) = {
            let mut state = self.lock();
            let key = (account.to_owned(), pool.name);
            let kept = state.order_pause_ends.entry(key.clone()).or_insert(now);
            let begins = *kept <= now;
            *kept = (*kept).max(end);
            let until = u64::try_from(kept.saturating_duration_since(self.made).as_millis())
                .unwrap_or(u64::MAX);
            self.orders_paused_until.fetch_max(until, Ordering::Relaxed);
            let alerted = state.order_waits_alerted.get(&key);
            let alert = begins
                && alerted.is_none_or(|at| now.duration_since(*at) >= ORDER_WAIT_ALERT_EVERY);
            if alert {
                state.order_waits_alerted.insert(key, now);
            }
            (begins, alert)
        };
        if begins {
            self.tell_orders_wait(account, pool, wait, alert);
        }
    }

    /// Logs the first answer of an account's order wait, and alerts it if `alert`.
    fn tell_orders_wait(&self, account: &str, pool: Pool<'_>, wait: Duration, alert: bool) {
        let seconds = wait.as_secs();
        tracing::warn!(
            account,
            pool = pool.name,
            seconds,
            "the exchange answered that this account placed too many orders; its new orders \
             wait as asked"
        );
        if !alert {
            return;
        }
        let alerter = self.alerter.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(alerter) = alerter.as_ref() {
            alerter.raise(Alert::outside_log(
                Severity::Warning,
                AlertRule::ExchangeBackOff,
                format!(
                    "the exchange answered that account {account} placed too many orders on \
                     {} (HTTP 429, code -1015) and asked it to wait {seconds} s: until then \
                     keygate sends none of that account's new orders there (rule \
                     exchange_back_off); its cancels and reads, and other accounts, go on",
                    pool.name
                ),
            ));
        }
    }

    /// How long `account`'s new orders in `pool` are still held back
    /// ([`WeightGauge::pause_orders`]), if they are. While no wait runs, it takes no lock.
    pub fn orders_paused(&self, account: &str, pool: Pool<'_>) -> Option<Duration> {
        let paused_until = self.orders_paused_until.load(Ordering::Relaxed);
        if paused_until == 0 || self.steady_now_ms() >= paused_until {
            return None;
        }
        let now = Instant::now();
        let mut state = self.lock();
        state.order_pause_ends.retain(|_, end| *end > now);
        let end = state
            .order_pause_ends
            .get(&(account.to_owned(), pool.name))?;
        Some(end.saturating_duration_since(now))
    }

    /// Whether the exchange asked that nothing be sent to `pool`'s upstream now, and
    /// until when. Asked several times on every request: while no pause runs, it reads
    /// no wall clock and takes no lock (and while none was ever asked for, no clock).
    pub fn paused(&self, pool: Pool<'_>) -> Option<Paused> {
        self.paused_by(pool, crate::now_ms)
    }

    /// [`WeightGauge::paused`], the wall clock read by `wall_now_ms` only once a pause may
    /// still run by the clock that never steps.
    fn paused_by(&self, pool: Pool<'_>, wall_now_ms: impl FnOnce() -> u64) -> Option<Paused> {
        let paused_until = self.paused_until.load(Ordering::Relaxed);
        if paused_until == 0 || self.steady_now_ms() >= paused_until {
            return None;
        }
        self.lock().told(pool.upstream, wall_now_ms())
    }

    /// The pauses running at `now_ms` and how many seconds each has left, by origin (as
    /// [`WeightGauge::this_minute`]) and whether it is a ban (`418`) or a wait (`429`).
    pub fn pauses(&self, now_ms: u64) -> Vec<([String; 2], u64)> {
        let state = self.lock();
        let mut pauses: Vec<_> = state
            .pauses
            .keys()
            .filter_map(|upstream| {
                let paused = state.told(upstream, now_ms)?;
                let status = if paused.banned { "418" } else { "429" };
                Some((
                    [
                        crate::upstream::origin(upstream).to_owned(),
                        status.to_owned(),
                    ],
                    paused.until_ms.saturating_sub(now_ms).div_ceil(1000),
                ))
            })
            .collect();
        highest_of_each(&mut pauses);
        pauses
    }

    /// The state, even if a thread panicked while holding it: each change is one insert
    /// or one update.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    impl WeightGauge {
        /// [`WeightGauge::paused`] with the wall clock at `now_ms`.
        fn paused_at(&self, pool: Pool<'_>, now_ms: u64) -> Option<Paused> {
            self.paused_by(pool, || now_ms)
        }

        /// Lets `ms` pass on the clock that never steps, as far as pauses are concerned:
        /// tests move the wall clock they pass in, and this one with it.
        fn pass(&self, ms: u64) {
            let by = Duration::from_millis(ms);
            for end in self.lock().pause_ends.values_mut() {
                *end = end
                    .checked_sub(by)
                    .expect("the machine has been up that long");
            }
            let _ = self
                .paused_until
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |until| {
                    Some(until.saturating_sub(ms))
                });
        }
    }

    const API: Pool = Pool {
        upstream: "https://api",
        name: "/api",
    };
    const FAPI: Pool = Pool {
        upstream: "https://fapi",
        name: "/fapi",
    };
    const SIM_API: Pool = Pool {
        upstream: "http://sim",
        name: "/api",
    };
    const SIM_FAPI: Pool = Pool {
        upstream: "http://sim",
        name: "/fapi",
    };

    #[test]
    fn a_client_is_held_to_its_share_of_each_pool_for_a_minute() {
        let gauge = WeightGauge::default();
        let payer = |client| Payer {
            client,
            share: 30,
            pricing_share: 12,
            read_share: 20,
        };
        let hostile = payer("hostile");
        let minute = 100 * 60_000;
        let charged = |payer, pool, weight, now_ms| {
            gauge
                .charge(payer, SharePart::Requests, pool, weight, now_ms)
                .map(drop)
        };
        for _ in 0..3 {
            charged(hostile, SIM_FAPI, 10, minute).unwrap();
        }
        let over = OverShare {
            spent: 30,
            share: 30,
            part: SharePart::Requests,
        };
        assert_eq!(charged(hostile, SIM_FAPI, 1, minute + 1), Err(over));
        // Pricing counts with the rest, whatever the pool's cap.
        assert_eq!(
            gauge
                .reserve_pricing(hostile, SIM_FAPI, held_back_at(1000), 1, minute)
                .err(),
            Some(Refused::Share(over))
        );
        // Another client, another pool of the same upstream, another upstream: untouched.
        charged(payer("victim"), SIM_FAPI, 30, minute).unwrap();
        charged(hostile, SIM_API, 30, minute).unwrap();
        charged(hostile, FAPI, 30, minute).unwrap();
        // The next minute, each starts again.
        let next = minute + 60_000;
        charged(hostile, SIM_FAPI, 30, next).unwrap();

        // A refund hands back what was not sent, and what a lookup spent stays.
        let refunded = payer("refunded");
        for _ in 0..10 {
            gauge
                .charge(refunded, SharePart::Requests, SIM_FAPI, 30, next)
                .unwrap()
                .refund();
        }
        gauge
            .charge(refunded, SharePart::Requests, SIM_FAPI, 30, next)
            .unwrap()
            .less(10)
            .refund();
        assert_eq!(
            charged(refunded, SIM_FAPI, 30, next),
            Err(OverShare {
                spent: 10,
                share: 30,
                part: SharePart::Requests
            })
        );
        // One made the minute before hands back nothing of this one's.
        let late = gauge
            .charge(refunded, SharePart::Requests, SIM_API, 30, next)
            .unwrap();
        charged(refunded, SIM_API, 1, next + 60_000).unwrap();
        let earlier = gauge
            .charge(refunded, SharePart::Requests, SIM_API, 29, next + 60_000)
            .unwrap();
        late.refund();
        assert!(charged(refunded, SIM_API, 1, next + 60_000).is_err());
        drop(earlier);

        // Pricing has a share of its own within the client's.
        let pricer = payer("pricer");
        let lookup = |weight| {
            gauge
                .reserve_pricing(pricer, API, held_back_at(1000), weight, next + 60_000)
                .map(|(reservation, _)| reservation.settle())
        };
        lookup(10).unwrap();
        assert_eq!(
            lookup(5),
            Err(Refused::Share(OverShare {
                spent: 10,
                share: 12,
                part: SharePart::Pricing
            }))
        );
        charged(pricer, API, 20, next + 60_000).unwrap();

        // A lookup refused at a cap is not charged to its client.
        gauge.record(SIM_API, 100, next + 60_000);
        let pool_at_100 = Cap {
            held_back: 1000,
            pool: 100,
        };
        assert!(matches!(
            gauge.reserve_pricing(payer("reader"), SIM_API, pool_at_100, 5, next + 60_000),
            Err(Refused::Cap(_))
        ));
        charged(payer("reader"), SIM_API, 30, next + 60_000).unwrap();

        // Reads have a share of their own within the client's, handed back with a refund.
        let reads = |payer, weight| {
            gauge
                .charge(payer, SharePart::Reads, SIM_FAPI, weight, next + 60_000)
                .map(drop)
        };
        let poller = payer("poller");
        reads(poller, 20).unwrap();
        assert_eq!(
            reads(poller, 1),
            Err(OverShare {
                spent: 20,
                share: 20,
                part: SharePart::Reads
            })
        );
        // Its orders still go, and another client's reads.
        charged(poller, SIM_FAPI, 10, next + 60_000).unwrap();
        reads(payer("other"), 20).unwrap();
        gauge
            .charge(
                payer("refunder"),
                SharePart::Reads,
                SIM_FAPI,
                20,
                next + 60_000,
            )
            .unwrap()
            .refund();
        reads(payer("refunder"), 20).unwrap();
    }

    /// Held-back calls capped at `cap`, whatever the pool's weight by the exchange's count.
    fn held_back_at(cap: u64) -> Cap {
        Cap {
            held_back: cap,
            pool: u64::MAX,
        }
    }

    /// Held-back calls capped at `cap` of the pool's weight by the exchange's count alone.
    fn pool_at(cap: u64) -> Cap {
        Cap {
            held_back: u64::MAX,
            pool: cap,
        }
    }

    /// What holds back a public call of weight 1 now, if anything.
    fn over_cap(gauge: &WeightGauge, pool: Pool, cap: Cap, now_ms: u64) -> Option<OverCap> {
        gauge
            .reserve(pool, cap, 1, now_ms)
            .map(Reservation::settle)
            .err()
    }

    /// Found by review: over its daily order count, spot gives no `Retry-After`, and a bot
    /// that keeps trying begins a wait of ten seconds each time the last ends: each raised
    /// an alert. Within [`ORDER_WAIT_ALERT_EVERY`] of one alerted, another account's
    /// wait is alerted, the same account's only logged.
    #[test]
    fn an_accounts_order_waits_are_alerted_once_in_a_while() {
        let gauge = WeightGauge::default();
        let (alerter, alerts) = Alerter::channel();
        gauge.alert_through(alerter);
        let short = Duration::from_millis(1);
        gauge.pause_orders("main", SIM_API, short);
        assert!(gauge.orders_paused("main", SIM_API).is_some());
        let alert = alerts.try_recv().expect("the first wait is alerted");
        assert!(alert.summary.contains("account main"), "{}", alert.summary);
        // Orders in flight when it began bring more answers: no alert.
        gauge.pause_orders("main", SIM_API, short);
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(gauge.orders_paused("main", SIM_API), None);
        // The next wait, once that one is over, is only logged.
        gauge.pause_orders("main", SIM_API, short);
        assert!(alerts.try_recv().is_err());
        gauge.pause_orders("other", SIM_API, short);
        assert!(alerts.try_recv().is_ok(), "another account's wait");
    }

    #[test]
    fn an_upstream_asked_to_wait_or_banned_is_paused_until_then() {
        let gauge = WeightGauge::default();
        let (alerter, alerts) = Alerter::channel();
        gauge.alert_through(alerter);
        let now = 60_000 * 1_000;
        let wait = |seconds| BackOff {
            seconds,
            banned: false,
        };
        let ban = |seconds| BackOff {
            seconds,
            banned: true,
        };
        assert_eq!(gauge.paused_at(SIM_API, now), None);
        assert!(gauge.back_off(SIM_API, wait(10), now));
        let waiting = Some(Paused {
            until_ms: now + 10_000,
            banned: false,
        });
        // Every pool of the upstream waits (Binance does not say what counts as going on
        // after a 429); another upstream goes on.
        assert_eq!(gauge.paused_at(SIM_API, now + 1), waiting);
        assert_eq!(gauge.paused_at(SIM_FAPI, now + 1), waiting);
        assert_eq!(gauge.paused_at(API, now + 1), None);
        // A second answer of the same kind lengthens the pause without beginning one; a
        // shorter one shortens nothing.
        gauge.pass(2);
        assert!(!gauge.back_off(SIM_FAPI, wait(20), now + 2));
        gauge.pass(1);
        assert!(!gauge.back_off(SIM_API, wait(1), now + 3));
        gauge.pass(1);
        assert_eq!(
            gauge.paused_at(SIM_API, now + 4).unwrap().until_ms,
            now + 20_002
        );
        gauge.pass(19_998);
        assert_eq!(gauge.paused_at(SIM_API, now + 20_002), None);
        // A ban is told even while a wait runs, and a later wait does not end it.
        gauge.pass(9_998);
        assert!(gauge.back_off(SIM_API, wait(5), now + 30_000));
        gauge.pass(1);
        assert!(gauge.back_off(SIM_API, ban(120), now + 30_001));
        gauge.pass(1);
        assert!(!gauge.back_off(SIM_API, wait(1), now + 30_002));
        let banned = Some(Paused {
            until_ms: now + 150_001,
            banned: true,
        });
        gauge.pass(9_998);
        assert_eq!(gauge.paused_at(SIM_FAPI, now + 40_000), banned);
        assert_eq!(gauge.paused_at(API, now + 40_000), None);
        assert_eq!(
            gauge.pauses(now + 40_000),
            [(["http://sim".to_owned(), "418".to_owned()], 111)]
        );
        gauge.pass(110_001);
        assert_eq!(gauge.paused_at(SIM_FAPI, now + 150_001), None);
        assert!(gauge.pauses(now + 150_001).is_empty());
        // Pauses that are over are dropped as the next begins.
        gauge.pass(1);
        gauge.back_off(API, wait(1), now + 150_002);
        assert!(!gauge.lock().pauses.contains_key("http://sim"));
        // Named by origin: an upstream's path may be a credential.
        let behind_proxy = Pool {
            upstream: "https://proxy.example/s3cret-path",
            name: "/api",
        };
        gauge.pass(1);
        gauge.back_off(behind_proxy, ban(60), now + 150_003);
        gauge.pass(1);
        assert_eq!(
            gauge.pauses(now + 150_004),
            [
                (["https://api".to_owned(), "429".to_owned()], 1),
                (["https://proxy.example".to_owned(), "418".to_owned()], 60)
            ]
        );
        let told: Vec<Alert> = alerts.try_iter().collect();
        assert!(
            told.iter().all(|a| !a.summary.contains("s3cret")),
            "{told:?}"
        );
        // One alert per beginning: the first wait, the second, the ban, the last wait,
        // the ban behind the proxy.
        let told: Vec<Severity> = told.iter().map(|alert| alert.severity).collect();
        assert_eq!(
            told,
            [
                Severity::Warning,
                Severity::Warning,
                Severity::Critical,
                Severity::Warning,
                Severity::Critical
            ]
        );
    }

    /// A pause was kept in memory only: a gateway restarted during a ban (or a command run
    /// beside it) sent again at once, and Binance bans an address that goes on sending
    /// for longer each time.
    /// Found by review: pauses ended on the wall clock alone, so one set back by an hour
    /// during a two-minute ban refused every order and cancel for an hour and two
    /// minutes. A pause ends by the clock that never steps.
    #[test]
    fn a_clock_set_back_does_not_lengthen_a_pause() {
        let gauge = WeightGauge::default();
        let now = 1_700_000_000_000;
        assert!(gauge.back_off(
            SIM_API,
            BackOff {
                seconds: 120,
                banned: true
            },
            now
        ));
        let an_hour_back = now - 3_600_000;
        assert!(gauge.paused_at(SIM_API, an_hour_back).is_some());
        assert_eq!(
            gauge.pauses(an_hour_back)[0].1,
            120,
            "what the steady clock has left"
        );
        // Bots are told as much (`Retry-After`), not the hour the wall clock says.
        let until_ms = gauge.paused_at(SIM_API, an_hour_back).unwrap().until_ms;
        assert!(
            (119_000..=120_000).contains(&(until_ms - an_hour_back)),
            "{until_ms}"
        );
        // Two minutes later by the steady clock, the wall clock still an hour behind:
        // over.
        gauge.pass(120_000);
        assert_eq!(gauge.paused_at(SIM_API, an_hour_back + 120_000), None);
        assert!(gauge.pauses(an_hour_back + 120_000).is_empty());
        // A new answer asking for a pause begins one, not joined to the one over.
        assert!(gauge.back_off(
            SIM_API,
            BackOff {
                seconds: 10,
                banned: false
            },
            an_hour_back + 122_000
        ));
        assert!(
            !gauge
                .paused_at(SIM_API, an_hour_back + 123_000)
                .unwrap()
                .banned
        );
    }

    /// A regression test (found by review): a pause ended at the sooner of its ends on
    /// the wall clock and on the clock that never steps, so a wall clock set forward
    /// (an NTP step) during a ban sent at once, and Binance lengthens the ban of an
    /// address that goes on sending.
    #[test]
    fn a_clock_set_forward_does_not_end_a_pause() {
        let gauge = WeightGauge::default();
        let now = 1_700_000_000_000;
        let ban = BackOff {
            seconds: 120,
            banned: true,
        };
        assert!(gauge.back_off(SIM_API, ban, now));
        let an_hour_on = now + 3_600_000;
        let paused = gauge.paused_at(SIM_API, an_hour_on).expect("still banned");
        // Bots are told what the steady clock has left, from the wall clock's now.
        assert!(
            (119_000..=120_000).contains(&(paused.until_ms - an_hour_on)),
            "{paused:?}"
        );
        assert_eq!(gauge.pauses(an_hour_on)[0].1, 120);
        gauge.pass(120_000);
        assert_eq!(gauge.paused_at(SIM_API, an_hour_on + 120_000), None);
    }

    #[test]
    fn pauses_are_told_to_their_keeper_and_resumed_by_the_next_gauge() {
        let gauge = WeightGauge::default();
        let (kept_tx, kept) = std::sync::mpsc::channel();
        let kept_tx = Mutex::new(kept_tx);
        gauge.keep_pauses_with(Box::new(move |upstream, paused| {
            let _ = kept_tx.lock().unwrap().send((upstream.to_owned(), paused));
        }));
        let now = 60_000 * 1_000;
        let wait = |seconds| BackOff {
            seconds,
            banned: false,
        };
        gauge.back_off(SIM_API, wait(10), now);
        // The same end again is nothing new; a later one, or a ban, is.
        gauge.back_off(SIM_FAPI, wait(10), now);
        gauge.back_off(SIM_API, wait(9), now + 500);
        gauge.back_off(SIM_API, wait(20), now + 1);
        gauge.back_off(
            SIM_API,
            BackOff {
                seconds: 1,
                banned: true,
            },
            now + 2,
        );
        let told: Vec<(String, Paused)> = kept.try_iter().collect();
        let paused = |until_ms, banned| ("http://sim".to_owned(), Paused { until_ms, banned });
        assert_eq!(
            told,
            [
                paused(now + 10_000, false),
                paused(now + 20_001, false),
                paused(now + 20_001, true)
            ]
        );
        // The next process's gauge takes the pause up, without an alert.
        let next = WeightGauge::default();
        let (alerter, alerts) = Alerter::channel();
        next.alert_through(alerter);
        let (upstream, last) = told.last().unwrap().clone();
        next.resume_pause(&upstream, last, now + 5_000);
        assert_eq!(next.paused_at(SIM_FAPI, now + 5_000), Some(last));
        next.pass(15_001);
        assert_eq!(next.paused_at(SIM_API, now + 20_001), None);
        assert!(alerts.try_recv().is_err());
        // One that is over is no pause.
        let later = WeightGauge::default();
        later.resume_pause(&upstream, last, now + 20_001);
        assert!(later.pauses(now).is_empty());
    }

    /// A regression test (from a review): two workers answered at once could both see no
    /// pause and both alert; the pause is now begun under one lock.
    #[test]
    fn answers_arriving_together_begin_one_pause() {
        let gauge = std::sync::Arc::new(WeightGauge::default());
        let now = 60_000 * 1_000;
        let wait = BackOff {
            seconds: 10,
            banned: false,
        };
        let begun: usize = (0..8)
            .map(|_| {
                let gauge = std::sync::Arc::clone(&gauge);
                std::thread::spawn(move || gauge.back_off(SIM_API, wait, now))
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|worker| usize::from(worker.join().unwrap()))
            .sum();
        assert_eq!(begun, 1);
    }

    #[test]
    fn calls_pause_at_the_pool_s_cap_by_the_exchange_s_count_until_the_minute_turns() {
        let gauge = WeightGauge::default();
        let minute = 60_000 * 1_000;
        let reported = |reported| {
            Some(OverCap::Pool {
                reported,
                reserved: 0,
                cap: 100,
            })
        };
        assert_eq!(over_cap(&gauge, API, pool_at(100), minute), None);
        gauge.record(API, 99, minute);
        assert_eq!(over_cap(&gauge, API, pool_at(100), minute + 1), None);
        gauge.record(API, 120, minute + 2);
        // An earlier answer arriving late does not lower it.
        gauge.record(API, 50, minute + 3);
        assert_eq!(
            over_cap(&gauge, API, pool_at(100), minute + 4),
            reported(120)
        );
        // Another host has its own weight.
        assert_eq!(over_cap(&gauge, FAPI, pool_at(100), minute + 4), None);
        // The next minute starts from nothing.
        assert_eq!(over_cap(&gauge, API, pool_at(100), minute + 60_000), None);
        gauge.record(API, 10, minute + 60_000);
        assert_eq!(over_cap(&gauge, API, pool_at(100), minute + 60_001), None);
        gauge.record(FAPI, 7, minute + 60_002);
        assert_eq!(
            gauge.this_minute(minute + 60_003),
            [
                (["https://api".to_owned(), "/api".to_owned()], 10),
                (["https://fapi".to_owned(), "/fapi".to_owned()], 7)
            ]
        );
        assert!(gauge.this_minute(minute + 120_000).is_empty());
    }

    #[test]
    fn calls_in_flight_hold_their_weight_until_they_are_answered() {
        let gauge = WeightGauge::default();
        let now = crate::now_ms();
        gauge.record(API, 10, now);
        let first = gauge.reserve(API, pool_at(50), 20, now).unwrap();
        let second = gauge.reserve(API, pool_at(50), 20, now).unwrap();
        // 10 reported and 40 in flight reach the pool's cap: a burst stops here.
        assert_eq!(
            gauge.reserve(API, pool_at(50), 20, now).err(),
            Some(OverCap::Pool {
                reported: 10,
                reserved: 40,
                cap: 50,
            })
        );
        // The held-back calls' own cap counts the 40 in flight, not the 10 reported.
        assert_eq!(
            gauge.reserve(API, held_back_at(40), 20, now).err(),
            Some(OverCap::HeldBack { spent: 40, cap: 40 })
        );
        // Another host is not held back by these.
        drop(gauge.reserve(FAPI, pool_at(50), 20, now).unwrap());
        // One refused before it was sent gives back its weight and spent nothing.
        gauge.reserve(API, pool_at(100), 20, now).unwrap().release();
        assert!(!gauge.lock().unreported.contains_key("https://api"));
        assert_eq!(over_cap(&gauge, API, held_back_at(41), now), None);
        // An answer is in: its report counts, its reservation no longer does.
        gauge.record(API, 25, now + 1);
        first.settle();
        assert!(over_cap(&gauge, API, pool_at(50), now + 2).is_none());
        second.settle();
        let state = gauge.lock();
        let held = |map: &ByPool<u64>| map.values().flat_map(HashMap::values).sum::<u64>();
        assert_eq!(held(&state.reserved), 0, "weight left reserved");
        assert_eq!(held(&state.held_back_in_flight), 0, "weight left in flight");
    }

    /// Found by review: held-back calls stopped at their caps by the exchange's count of
    /// the pool's weight alone, which one client's orders and cancels raise too, so one
    /// trading client's orders (up to its share, 4200 of spot's 6000) paused every
    /// client's signed reads (from 1500) and the pricing of everyone's orders (1800).
    /// They count their own weight; the exchange's count holds them back only at the
    /// pool's cap, near its limit.
    #[test]
    fn orders_and_cancels_do_not_spend_the_held_back_calls_cap() {
        let gauge = WeightGauge::default();
        let now = crate::now_ms();
        let cap = Cap {
            held_back: 100,
            pool: 5_000,
        };
        // Orders and cancels, reported by the exchange, and a cancel's lookup in flight.
        gauge.record(API, 4_000, now);
        let lookup = gauge.hold(API, 500);
        // Held-back calls count at their estimates, answered or not, sent or in flight.
        gauge.reserve(API, cap, 40, now).unwrap().settle();
        drop(gauge.reserve(API, cap, 40, now).unwrap());
        let in_flight = gauge.reserve(API, cap, 20, now).unwrap();
        assert_eq!(
            gauge.reserve(API, cap, 1, now).err(),
            Some(OverCap::HeldBack {
                spent: 100,
                cap: 100
            })
        );
        in_flight.release();
        assert_eq!(over_cap(&gauge, API, cap, now), None);
        // Near the exchange's limit, whoever spent it, they stop at the pool's cap.
        gauge.record(API, 4_460, now);
        assert_eq!(
            gauge.reserve(API, cap, 1, now).err(),
            Some(OverCap::Pool {
                reported: 4_460,
                reserved: 540,
                cap: 5_000
            })
        );
        drop(lookup);
        // Estimates are upper bounds: where the exchange counts less for the whole pool,
        // its count stands.
        let gauge = WeightGauge::default();
        for _ in 0..3 {
            gauge.reserve(API, cap, 40, now).unwrap().settle();
        }
        gauge.record(API, 30, now);
        assert_eq!(over_cap(&gauge, API, cap, now), None);
        // The next minute, held-back calls start again from nothing.
        let next = (now / 60_000 + 1) * 60_000;
        gauge.record(API, 500, next);
        assert_eq!(over_cap(&gauge, API, held_back_at(1), next), None);
    }

    #[test]
    fn a_call_that_ends_without_a_report_counts_as_spent() {
        let gauge = WeightGauge::default();
        let now = crate::now_ms();
        // Calls that end without a report, again and again, spend their estimate each time.
        for _ in 0..2 {
            drop(gauge.reserve(API, pool_at(500), 250, now).unwrap());
        }
        assert_eq!(
            over_cap(&gauge, API, pool_at(500), now),
            Some(OverCap::Pool {
                reported: 0,
                reserved: 500,
                cap: 500,
            })
        );
        assert_eq!(
            over_cap(&gauge, API, held_back_at(500), now),
            Some(OverCap::HeldBack {
                spent: 500,
                cap: 500
            })
        );
        // Another host has its own.
        assert!(over_cap(&gauge, FAPI, pool_at(500), now).is_none());
    }

    /// A regression test: the gauge kept one count per base URL, so with one upstream
    /// serving every family (a simulator, `--upstream`), a `/fapi` answer reporting little
    /// weight replaced the `/api` count that had reached the cap, and public `/api` calls
    /// went on towards a ban.
    #[test]
    fn each_weight_pool_of_one_upstream_is_counted_apart() {
        let gauge = WeightGauge::default();
        let now = 60_000 * 1_000;
        gauge.record(SIM_API, 120, now);
        gauge.record(SIM_FAPI, 3, now + 1);
        assert_eq!(
            gauge.reserve(SIM_API, pool_at(100), 1, now + 2).err(),
            Some(OverCap::Pool {
                reported: 120,
                reserved: 0,
                cap: 100,
            })
        );
        gauge
            .reserve(SIM_FAPI, pool_at(100), 1, now + 2)
            .unwrap()
            .settle();
        assert_eq!(
            gauge.this_minute(now + 3),
            [
                (["http://sim".to_owned(), "/api".to_owned()], 120),
                (["http://sim".to_owned(), "/fapi".to_owned()], 3)
            ]
        );
    }
}
