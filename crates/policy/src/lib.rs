//! Deciding one exchange action against a client's policy.
//!
//! [`Decider::decide`] takes what the gateway knows about a request (the client's status,
//! expiry and [`Policy`], the source address, the classified [`Action`] and its priced
//! notional) and returns a [`Decision`]. Checks run in a fixed order, cheapest and most
//! fundamental first, and the first failure names its [`Rule`]:
//!
//! status → expiry → source IP → endpoint known → scope → withdrawal address → symbol →
//! order notional → rate → daily notional → daily withdrawal.
//!
//! Two checks of the day come earlier: a batch whose orders that state their notional
//! already take the client past its day is denied before any other of its orders is
//! priced, and a withdrawal of an asset its daily limits do not list before the rate.
//!
//! The decider keeps the counters that limits need (requests per second, notional and
//! amounts withdrawn per UTC day) in memory, per client; an allowed order or withdrawal
//! reserves its amount at once, so two concurrent ones cannot both slip under a daily
//! limit. A request that then never reaches the exchange (refused after its decision, or
//! the exchange unreachable) hands its reservation back ([`Decider::release`]), but for a
//! modification in place (below). It is not
//! a store: a process that starts again learns the day so far from the audit log
//! ([`Decider::count_earlier`]).
//!
//! An order modified in place (a USD-M limit order, `PUT`) is worth its new notional. Its
//! quantity is its total, what filled included, so what it fills over all its versions
//! is at most its highest quantity at its highest price. So a modification that names its
//! order by the exchange's id counts towards the day only what it adds to that product
//! over its client's modifications of that order today (the first counts in full, as the
//! order's placement did): a bot that moves its quotes all day spends its daily limit on
//! what it quotes, not on how often it moves. One that names its order by the client's
//! id counts in full: that id may be given again to a new order once the first is closed.
//! A modification is never handed back: another of the same order may have been decided
//! against what it counted.
//!
//! An order whose notional the request alone does not tell is denied with
//! [`Rule::PriceUnavailable`] for its caller to price at the exchange, and decided again
//! with [`Decider::decide_priced`]. Each such order may cost a call to the exchange, so it
//! counts against its client's rate as soon as it is found to need a price, whatever the
//! final decision: a client cannot buy itself more upstream calls than its rate.
//!
//! ```
//! use keygate_core::{Action, ActionKind, ClientStatus, Decision, Policy};
//! use keygate_policy::{Decider, Request};
//!
//! let decider = Decider::new();
//! let policy = Policy::default(); // read-only, loopback only
//! let read = Action::new(ActionKind::Read, "GET /api/v3/account");
//! let request = Request {
//!     client: "bot1",
//!     status: ClientStatus::Active,
//!     expires_at_ms: None,
//!     policy: &policy,
//!     source_ip: "127.0.0.1".parse().unwrap(),
//!     action: &read,
//!     notional: None,
//!     order_notionals: &[],
//!     now_ms: 0,
//! };
//! assert_eq!(decider.decide(&request), Decision::Allow);
//! ```

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use keygate_core::{
    Action, ActionKind, ClientStatus, Decision, Denial, Event, EventBody, OrderRef, Outcome,
    Policy, RequestEvent, Rule, WithdrawalDestination,
};
use rust_decimal::Decimal;

const DAY_MS: u64 = 86_400_000;

/// What the decider needs to know about one request.
#[derive(Clone, Copy, Debug)]
pub struct Request<'a> {
    /// The client's name, for messages and counters.
    pub client: &'a str,
    /// Its stored status.
    pub status: ClientStatus,
    /// When it expires.
    pub expires_at_ms: Option<u64>,
    /// Its policy.
    pub policy: &'a Policy,
    /// The address the request came from.
    pub source_ip: IpAddr,
    /// What the request would do.
    pub action: &'a Action,
    /// The order's quote notional, stated or priced from the market; `None` when unknown.
    /// For a batch, the total of its orders' when each is known (the audit records it;
    /// the decision reads `order_notionals`).
    pub notional: Option<Decimal>,
    /// For a batch ([`Action::batch`]), the quote notional of each of its orders, in
    /// order, stated or priced as `notional` is for a single order; `None` where unknown.
    /// Empty for anything else ([`Request::with_order_notionals`] fills both).
    pub order_notionals: &'a [Option<Decimal>],
    /// The gateway's clock.
    pub now_ms: u64,
}

impl<'a> Request<'a> {
    /// The same request with the notional of each of its action's orders
    /// ([`Action::orders`]), in order: a batch's become `order_notionals`, and `notional`
    /// their total; a single order's is `notional`.
    pub fn with_order_notionals<'b>(self, notionals: &'b [Option<Decimal>]) -> Request<'b>
    where
        'a: 'b,
    {
        let (notional, order_notionals) = if self.action.is_batch() {
            (total_notional(notionals), notionals)
        } else {
            (notionals.first().copied().flatten(), &[][..])
        };
        Request {
            notional,
            order_notionals,
            ..self
        }
    }
}

/// The total of `notionals` when each is known (and the sum does not overflow); `None`
/// otherwise.
pub fn total_notional(notionals: &[Option<Decimal>]) -> Option<Decimal> {
    notionals
        .iter()
        .try_fold(Decimal::ZERO, |total, n| total.checked_add((*n)?))
}

/// Decides requests and keeps the counters that rate and daily limits need.
#[derive(Debug, Default)]
pub struct Decider {
    counters: Mutex<HashMap<String, Counters>>,
    /// The UTC day the counters were last swept of clients idle since before yesterday:
    /// one day each, so that clients revoked or replaced over months are not all kept.
    swept_day: AtomicU64,
    /// What earlier requests read back from the audit log reserved, by request id, while
    /// their outcome is not read yet: one the exchange never had hands it back.
    earlier_unsettled: Mutex<HashMap<String, DailyReservation>>,
}

/// What a decision does with its client's rate.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Rate {
    /// Checks it, and counts the request against it.
    CheckAndCount,
    /// Neither: the request was counted when it was found to need a price, and is decided
    /// again now that it has one.
    CountedWhenPriced,
    /// Neither: a read refused whatever the decision, whose denial alone is wanted.
    Ignored,
}

/// What an allowed request counted against its client's daily limits: its order's
/// notional, or its withdrawal's amount. Handed back with [`Decider::release`] when the
/// request never reaches the exchange, unless it moved orders in place (see the crate
/// doc). Empty for most requests.
///
/// Not `Clone`: it is handed back once at most.
#[derive(Debug, Default, PartialEq)]
pub struct DailyReservation {
    client: String,
    day: u64,
    notional: Option<Decimal>,
    withdrawal: Option<(String, Decimal)>,
    /// Whether it moved orders in place: it is then never handed back, since a later
    /// modification of the same order may have been decided against what it counted.
    moved_orders: bool,
}

/// The most orders modified in place a client's counters keep the highest of in a day;
/// past it, a modification of an order not kept counts in full.
const MODIFIED_ORDERS_MAX: usize = 10_000;

/// An order modified in place, as its client's requests name it: its symbol (as symbol
/// lists name it: `usdm:BTCUSDT`) and the exchange's id of it, which no other order of
/// the symbol ever has.
type ModifiedOrder = (String, u64);

/// One version of an order modified in place: its quantity and its notional.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Version {
    quantity: Decimal,
    notional: Decimal,
}

/// The highest quantity and the highest price of an order's versions counted today. An
/// order's quantity is its total, what filled included, so what it fills over all its
/// versions is at most the highest quantity at the highest price: their product bounds
/// it (the highest notional alone does not: a price lowered while the quantity grows
/// fills more).
#[derive(Clone, Copy, Debug, PartialEq)]
struct Peak {
    quantity: Decimal,
    price: Decimal,
}

impl Peak {
    fn of(version: Version) -> Option<Peak> {
        Some(Peak {
            quantity: version.quantity,
            price: version.notional.checked_div(version.quantity)?,
        })
    }

    fn with(self, other: Peak) -> Peak {
        Peak {
            quantity: self.quantity.max(other.quantity),
            price: self.price.max(other.price),
        }
    }

    fn bound(self) -> Decimal {
        self.quantity
            .checked_mul(self.price)
            .unwrap_or(Decimal::MAX)
    }
}

impl DailyReservation {
    /// Whether it reserved nothing.
    pub fn is_empty(&self) -> bool {
        self.notional.is_none() && self.withdrawal.is_none()
    }
}

#[derive(Debug, Default)]
struct Counters {
    /// The requests counted against the rate that still count: each with when it stops
    /// counting (one second after it, longer for a batch past the rate), and its cost.
    rate_log: VecDeque<(u64, u32)>,
    /// The sum of the costs in `rate_log`.
    rate_used: u32,
    /// The time of the newest request in `rate_log`.
    rate_last_ms: u64,
    /// UTC day number, and the notional and the amounts of each asset withdrawn in it.
    day: u64,
    day_notional: Decimal,
    day_withdrawn: HashMap<String, Decimal>,
    /// The highest quantity and price each order this client modified in place was
    /// counted at today: a later modification of it counts only what it adds to their
    /// product.
    day_modified_peaks: HashMap<ModifiedOrder, Peak>,
    /// The totals of one other day: the day before, once the counters moved on from it.
    other_day: Option<KeptDay>,
}

/// A day's totals, kept apart while the counters are on another day.
#[derive(Debug, Default)]
struct KeptDay {
    day: u64,
    notional: Decimal,
    withdrawn: HashMap<String, Decimal>,
    modified_peaks: HashMap<ModifiedOrder, Peak>,
}

impl Counters {
    /// Whether these counters keep anything a decision on UTC day `today` (or on the day
    /// before, which a request that took its time may be counted in) could read: a
    /// client with no request counted since before yesterday has none, and its counters
    /// would read as new ones do (its rate log is long over).
    fn is_recent(&self, today: u64) -> bool {
        let recent = |day: u64| day.saturating_add(1) >= today;
        recent(self.day) || self.other_day.as_ref().is_some_and(|kept| recent(kept.day))
    }

    /// Moves to `now_ms`'s UTC day: a later day starts from nothing, and the day it leaves
    /// is kept; back to the day kept, its totals come back. So neither a request that
    /// took its time before midnight nor a clock stepped forward past midnight and back
    /// again wipes a day's totals. A day earlier than both is counted in the current
    /// day's totals, which errs on the side of refusing.
    fn roll_to(&mut self, now_ms: u64) {
        let today = now_ms / DAY_MS;
        if today == self.day {
            return;
        }
        let mut kept = match self.other_day.take() {
            Some(kept) if kept.day == today => kept,
            _ if today > self.day => KeptDay {
                day: today,
                ..KeptDay::default()
            },
            other => {
                self.other_day = other;
                return;
            }
        };
        std::mem::swap(&mut self.day, &mut kept.day);
        std::mem::swap(&mut self.day_notional, &mut kept.notional);
        std::mem::swap(&mut self.day_withdrawn, &mut kept.withdrawn);
        std::mem::swap(&mut self.day_modified_peaks, &mut kept.modified_peaks);
        self.other_day = Some(kept);
    }

    /// The notional and withdrawal totals of `day`, if the counters keep them.
    fn totals_of(&mut self, day: u64) -> Option<(&mut Decimal, &mut HashMap<String, Decimal>)> {
        if self.day == day {
            return Some((&mut self.day_notional, &mut self.day_withdrawn));
        }
        self.other_day
            .as_mut()
            .filter(|kept| kept.day == day)
            .map(|kept| (&mut kept.notional, &mut kept.withdrawn))
    }

    /// What orders of `notional` in all count towards the day, `modifications` (each
    /// modified order and its new version) among them, and the orders' highest after
    /// them: the first modification of an order today counts in full (its placement was
    /// counted apart), a later one only what it adds to the product of the order's
    /// highest quantity and highest price. Taken in turn, so that two of one order in a
    /// batch count as they would one after the other.
    fn count_modifications(
        &self,
        notional: Decimal,
        modifications: &[(ModifiedOrder, Version)],
    ) -> (Decimal, HashMap<ModifiedOrder, Peak>) {
        let mut raised: HashMap<ModifiedOrder, Peak> = HashMap::new();
        let mut counted = notional;
        for (order, version) in modifications {
            let Some(peak) = Peak::of(*version) else {
                continue;
            };
            // Past the bound, a new order counts in full and is not kept: made-up ids
            // cost their sender little, and each would take memory for the day.
            let known = self.day_modified_peaks.contains_key(order) || raised.contains_key(order);
            if !known && self.day_modified_peaks.len() + raised.len() >= MODIFIED_ORDERS_MAX {
                continue;
            }
            let before = raised
                .get(order)
                .or_else(|| self.day_modified_peaks.get(order))
                .copied();
            let (after, adds) = match before {
                Some(before) => {
                    let after = before.with(peak);
                    (after, after.bound().saturating_sub(before.bound()))
                }
                None => (peak, version.notional),
            };
            // In place of the version's own notional, what it adds.
            counted = counted
                .saturating_sub(version.notional)
                .max(Decimal::ZERO)
                .saturating_add(adds);
            raised.insert(order.clone(), after);
        }
        (counted.normalize(), raised)
    }

    /// Whether a request that counts `cost` (see [`rate_cost`]) fits in the client's
    /// rate: in any one second, however it falls, no more than the rate is let through.
    /// (A window that starts anew each second would let a bot send its rate at the end
    /// of one and again at the start of the next: twice the rate within a moment.)
    fn within_rate(
        &mut self,
        client: &str,
        policy: &Policy,
        now_ms: u64,
        cost: u32,
    ) -> Result<(), Denial> {
        let Some(rate) = policy.rate_per_second else {
            return Ok(());
        };
        // The CLI refuses a rate of 0; one stored all the same lets nothing through
        // (found by review: the first request of each second passed).
        if rate == 0 {
            return Err(Denial::new(
                Rule::Rate,
                format!("client {client} has a rate of 0 requests per second"),
            ));
        }
        self.forget_past_rate(now_ms);
        // A batch larger than the rate is let through when nothing counts (it then
        // counts for the seconds it takes at the rate): it could never pass otherwise.
        let over = self
            .rate_used
            .saturating_add(cost.min(rate))
            .saturating_sub(rate);
        if over > 0 {
            let batch = if cost > 1 {
                format!(" (a batch counts each of its {cost} orders)")
            } else {
                String::new()
            };
            let denial = Denial::new(
                Rule::Rate,
                format!("client {client} exceeds its rate of {rate} requests per second{batch}"),
            );
            return Err(denial.lifted_after_ms(self.rate_room_in_ms(now_ms, over)));
        }
        Ok(())
    }

    /// How long from `now_ms` until requests counting `over` no longer count, taken in
    /// the order they were counted (as they are dropped).
    fn rate_room_in_ms(&self, now_ms: u64, over: u32) -> u64 {
        let mut freed = 0u32;
        for &(until_ms, cost) in &self.rate_log {
            freed = freed.saturating_add(cost);
            if freed >= over {
                return until_ms.saturating_sub(now_ms);
            }
        }
        // Unreachable while `rate_used` is the sum of the log; a second is the most a
        // request at the rate counts.
        1000
    }

    /// Drops what no longer counts against the rate at `now_ms`. A clock stepped back
    /// moves what counts back with it, each request counting for as long as it had left:
    /// kept as it was, a time ahead of the clock would refuse the client until the clock
    /// caught up.
    fn forget_past_rate(&mut self, now_ms: u64) {
        if now_ms < self.rate_last_ms {
            let back = self.rate_last_ms - now_ms;
            for (until_ms, _) in &mut self.rate_log {
                *until_ms = until_ms.saturating_sub(back);
            }
            self.rate_last_ms = now_ms;
        }
        // In the order counted: a batch past the rate, which counts longer, holds back
        // the requests after it, which it kept from counting at all.
        while let Some(&(until_ms, cost)) = self.rate_log.front() {
            if until_ms > now_ms {
                break;
            }
            self.rate_log.pop_front();
            self.rate_used -= cost;
        }
    }

    /// Counts a request of `cost` against a rate of `rate` a second from `now_ms`: for a
    /// second, or for a batch past the rate the time it takes at the rate (a batch of
    /// five at one a second counts five seconds).
    fn use_rate(&mut self, rate: u32, now_ms: u64, cost: u32) {
        let rate = rate.max(1);
        let lasts_ms = (u64::from(cost) * 1000).div_ceil(u64::from(rate)).max(1000);
        let counted = cost.min(rate);
        self.rate_log
            .push_back((now_ms.saturating_add(lasts_ms), counted));
        self.rate_used = self.rate_used.saturating_add(counted);
        self.rate_last_ms = self.rate_last_ms.max(now_ms);
    }
}

impl Decider {
    /// A decider with empty counters.
    pub fn new() -> Decider {
        Decider::default()
    }

    /// Decides one request. An allowed order's notional counts toward its client's daily
    /// total from this moment. A denial with [`Rule::PriceUnavailable`] has counted the
    /// request against its client's rate: price it and pass it to
    /// [`Decider::decide_priced`].
    pub fn decide(&self, r: &Request<'_>) -> Decision {
        Decider::decision(self.check(r, Rate::CheckAndCount))
    }

    /// As [`Decider::decide`], with what an allowed request reserved of its client's daily
    /// limits, for [`Decider::release`] should it never reach the exchange.
    pub fn reserve(&self, r: &Request<'_>) -> Result<DailyReservation, Denial> {
        self.check(r, Rate::CheckAndCount)
    }

    /// As [`Decider::decide_priced`], with what an allowed request reserved.
    pub fn reserve_priced(&self, r: &Request<'_>) -> Result<DailyReservation, Denial> {
        self.check(r, Rate::CountedWhenPriced)
    }

    /// Hands back what `reservation` counted, on the day it was counted (a new day has
    /// started from nothing anyway): the request never reached the exchange. A request
    /// that moved orders in place keeps what it counted.
    pub fn release(&self, reservation: DailyReservation) {
        // A modification decided after this one may have counted nothing against the
        // highest this one raised: what this one counted stays, sent or not.
        if reservation.is_empty() || reservation.moved_orders {
            return;
        }
        let mut counters = self
            .counters
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let Some((notional, withdrawn)) = counters
            .get_mut(&reservation.client)
            .and_then(|c| c.totals_of(reservation.day))
        else {
            return;
        };
        if let Some(n) = reservation.notional {
            *notional = (*notional - n).max(Decimal::ZERO);
        }
        if let Some((asset, amount)) = reservation.withdrawal {
            if let Some(total) = withdrawn.get_mut(&asset) {
                *total = (*total - amount).max(Decimal::ZERO);
            }
        }
    }

    /// Decides again a request that [`Decider::decide`] denied with
    /// [`Rule::PriceUnavailable`], now with its notional priced from the market (or still
    /// `None` if no price could be had), without counting it against its client's rate a
    /// second time.
    pub fn decide_priced(&self, r: &Request<'_>) -> Decision {
        Decider::decision(self.check(r, Rate::CountedWhenPriced))
    }

    /// As [`Decider::decide`] for a read, without checking or counting its client's rate:
    /// for one refused whatever the decision (held back while the exchange asks keygate to
    /// back off), whose denial alone is wanted. A read reserves nothing else.
    pub fn decide_read_held_back(&self, r: &Request<'_>) -> Decision {
        debug_assert_eq!(r.action.kind, ActionKind::Read);
        Decider::decision(self.check(r, Rate::Ignored))
    }

    fn decision(checked: Result<DailyReservation, Denial>) -> Decision {
        match checked {
            Ok(_) => Decision::Allow,
            Err(denial) => Decision::Deny(denial),
        }
    }

    /// Runs the checks in order, the client's rate as `rate` says.
    fn check(&self, r: &Request<'_>, rate: Rate) -> Result<DailyReservation, Denial> {
        let rate_counted = rate != Rate::CheckAndCount;
        let client = r.client;
        let action = r.action;
        let policy = r.policy;
        check_standing(r)?;
        let scope = match action.kind {
            ActionKind::Public => None,
            ActionKind::Unknown => {
                return deny(
                    Rule::UnknownEndpoint,
                    format!("endpoint {} is not known to keygate", action.endpoint),
                );
            }
            ActionKind::KeyManagement => {
                return deny(
                    Rule::KeyManagement,
                    format!(
                        "endpoint {} manages keys and is never allowed",
                        action.endpoint
                    ),
                );
            }
            kind => kind.required_scope(),
        };
        if let Some(scope) = scope {
            if !policy.scopes.contains(scope) {
                return deny(
                    Rule::Scope,
                    format!(
                        "{} needs scope {scope}, which client {client} does not have",
                        action.kind
                    ),
                );
            }
        }
        if action.kind == ActionKind::Withdraw {
            let destination = action
                .address
                .as_deref()
                .map(|address| WithdrawalDestination::new(address, action.address_tag.as_deref()));
            let network = action.network.as_deref().filter(|n| !n.is_empty());
            match destination {
                Some(Ok(d))
                    if policy
                        .withdrawal_addresses
                        .iter()
                        .any(|listed| listed.allows(&d, network)) => {}
                Some(Ok(d)) => {
                    let on = network.map_or_else(
                        || " on the exchange's default network".to_owned(),
                        |n| format!(" on network {n}"),
                    );
                    return deny(
                        Rule::WithdrawalAddress,
                        format!("withdrawal address {d}{on} is not on the list of client {client}"),
                    );
                }
                Some(Err(_)) | None => {
                    return deny(
                        Rule::WithdrawalAddress,
                        format!(
                            "this withdrawal names no valid address; client {client} may only \
                             withdraw to the addresses on its list"
                        ),
                    )
                }
            }
        }
        // Each order on its own, as if it were sent alone (a batch's in turn): the first
        // that fails denies the request. One whose notional must be priced at the
        // exchange is left for last, so that a request another order of it denies causes
        // no traffic.
        let orders = action.orders();
        let mut notional: Option<Decimal> = None;
        // What orders no notional limit applies to state, counted all the same: a limit
        // set later in the day then counts the day so far, as a restart would
        // ([`Decider::count_earlier`] counts every notional an event states).
        let mut uncapped: Option<Decimal> = None;
        // Orders modified in place, with their new notionals.
        let mut modifications: Vec<(ModifiedOrder, Version)> = Vec::new();
        // The first order that must be priced at the exchange.
        let mut unpriced: Option<usize> = None;
        for (i, order) in orders.iter().enumerate() {
            let stated = if action.is_batch() {
                r.order_notionals.get(i).copied().flatten()
            } else {
                r.notional
            };
            let checked = check_order(client, policy, order, stated).map_err(|denial| {
                if action.is_batch() {
                    in_batch(denial, i, orders.len(), order)
                } else {
                    denial
                }
            })?;
            match checked {
                OrderNotional::Unlimited => {
                    let counts = order.kind == ActionKind::Trade && !order.places_no_order;
                    if let Some(n) = stated.filter(|n| counts && *n > Decimal::ZERO) {
                        uncapped = Some(uncapped.unwrap_or_default().saturating_add(n));
                        // A modification counts what it adds, as under a limit.
                        modifications.extend(modification_of(order, n));
                    }
                }
                OrderNotional::Unknown => {
                    unpriced.get_or_insert(i);
                }
                OrderNotional::Known(n) => {
                    let Some(total) = notional.unwrap_or_default().checked_add(n) else {
                        return deny(
                            Rule::OrderNotional,
                            format!("the notional of this batch overflows for client {client}"),
                        );
                    };
                    notional = Some(total);
                    modifications.extend(modification_of(order, n));
                }
            }
        }
        if let Some(first) = unpriced {
            // The orders of a batch that state their notional may already take the
            // client past its day: then nothing is priced.
            if let (Some(known), Some(max)) = (notional, policy.max_daily_notional) {
                let used = self.day_notional(client, r.now_ms);
                if !action.validates_only && used.checked_add(known).is_none_or(|t| t > max) {
                    return deny(
                        Rule::DailyNotional,
                        format!("the orders of this batch that state their notional, {known}, would take client {client} past its daily limit {max} ({used} used today)"),
                    );
                }
            }
            // The caller prices the order at the exchange and asks again: only for a
            // client within its rate, and counted against it now, whatever comes of it,
            // so that a client cannot buy itself more upstream calls.
            if !rate_counted {
                self.count_rate(client, policy, r.now_ms, rate_cost(action))?;
            }
            let denial = Denial::new(
                Rule::PriceUnavailable,
                format!("the notional of this order cannot be determined and client {client} has a notional limit"),
            );
            return Err(if action.is_batch() {
                in_batch(denial, first, orders.len(), &orders[first])
            } else {
                denial
            });
        }

        // A withdrawal is counted whether or not a daily limit applies to it, so that one
        // set later in the day counts the day so far, as a restart would.
        let withdrawal = match action.kind {
            ActionKind::Withdraw if !policy.max_daily_withdrawal.is_empty() => {
                let asset = action.asset.as_deref().unwrap_or("");
                let Some(&max) = policy.max_daily_withdrawal.get(asset) else {
                    return deny(
                        Rule::WithdrawalLimit,
                        format!("client {client} may not withdraw {asset:?}"),
                    );
                };
                match action.amount {
                    Some(amount) if amount > Decimal::ZERO => Some((asset, amount, Some(max))),
                    _ => {
                        return deny(
                            Rule::Malformed,
                            "this withdrawal names no positive amount".to_owned(),
                        )
                    }
                }
            }
            ActionKind::Withdraw => match (action.asset.as_deref(), action.amount) {
                (Some(asset), Some(amount)) if amount > Decimal::ZERO => {
                    Some((asset, amount, None))
                }
                _ => None,
            },
            _ => None,
        };
        let uncapped = uncapped.filter(|_| !action.validates_only);

        if policy.rate_per_second.is_none()
            && notional.is_none()
            && uncapped.is_none()
            && withdrawal.is_none()
        {
            // Nothing to count: most reads end here without taking the lock.
            return Ok(DailyReservation::default());
        }
        let mut counters = self
            .counters
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let today = r.now_ms / DAY_MS;
        if self.swept_day.load(Ordering::Relaxed) != today {
            // Found by review: the counters of every client ever seen were kept, some
            // with thousands of modified orders' peaks, for the life of the process.
            counters.retain(|_, c| c.is_recent(today));
            self.swept_day.store(today, Ordering::Relaxed);
        }
        if !counters.contains_key(client) {
            counters.insert(client.to_owned(), Counters::default());
        }
        #[allow(
            clippy::expect_used,
            reason = "inserted just before, under the same lock"
        )]
        let c = counters
            .get_mut(client)
            .expect("the client's counters were inserted just above, under the same lock");
        if !rate_counted {
            c.within_rate(client, policy, r.now_ms, rate_cost(action))?;
        }
        c.roll_to(r.now_ms);
        // A test order places nothing: its notional counts against no daily total. A
        // modification counts what it adds above its order's highest today.
        let daily = notional
            .or(uncapped)
            .filter(|_| !action.validates_only)
            .map(|n| c.count_modifications(n, &modifications));
        let (daily, raised_peaks) = match daily {
            Some((counted, raised)) => (Some(counted), raised),
            None => (None, HashMap::new()),
        };
        if let (Some(n), Some(max)) = (daily, policy.max_daily_notional) {
            let Some(total) = c.day_notional.checked_add(n) else {
                return deny(
                    Rule::DailyNotional,
                    format!("order notional {n} overflows the daily total of client {client}"),
                );
            };
            if total > max {
                return deny(
                    Rule::DailyNotional,
                    format!("order notional {n} would take client {client} past its daily limit {max} ({} used today)", c.day_notional),
                );
            }
        }
        let withdrawn = match withdrawal {
            Some((asset, amount, max)) => {
                let before = c.day_withdrawn.get(asset).copied().unwrap_or_default();
                match (before.checked_add(amount), max) {
                    (Some(total), Some(max)) if total <= max => Some((asset, total)),
                    // Without a limit the total only informs, and saturates.
                    (total, None) => Some((asset, total.unwrap_or(Decimal::MAX))),
                    (_, Some(max)) => {
                        return deny(
                            Rule::WithdrawalLimit,
                            format!(
                                "withdrawing {amount} {asset} would take client {client} past \
                                 its daily limit of {max} {asset} ({before} withdrawn today)"
                            ),
                        )
                    }
                }
            }
            None => None,
        };
        if let Some((asset, total)) = withdrawn {
            c.day_withdrawn.insert(asset.to_owned(), total);
        }
        if let Some(per_second) = policy.rate_per_second.filter(|_| !rate_counted) {
            c.use_rate(per_second, r.now_ms, rate_cost(action));
        }
        let moved_orders = !raised_peaks.is_empty();
        if let Some(n) = daily {
            // Checked above when a daily limit applies; without one the total only
            // informs, and saturates rather than overflows.
            c.day_notional = c.day_notional.saturating_add(n);
            c.day_modified_peaks.extend(raised_peaks);
        }
        Ok(DailyReservation {
            client: client.to_owned(),
            day: c.day,
            notional: daily,
            withdrawal: withdrawal.map(|(asset, amount, _)| (asset.to_owned(), amount)),
            moved_orders,
        })
    }
}

impl Decider {
    /// The notional `client` has used on `now_ms`'s UTC day.
    fn day_notional(&self, client: &str, now_ms: u64) -> Decimal {
        let counters = self
            .counters
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let today = now_ms / DAY_MS;
        let Some(c) = counters.get(client) else {
            return Decimal::ZERO;
        };
        match &c.other_day {
            Some(kept) if kept.day == today && c.day != today => kept.notional,
            // A day earlier than both kept counts in the current day's totals.
            _ if c.day >= today => c.day_notional,
            _ => Decimal::ZERO,
        }
    }

    /// Denies a client past its rate, or counts a request of `cost` against it.
    fn count_rate(
        &self,
        client: &str,
        policy: &Policy,
        now_ms: u64,
        cost: u32,
    ) -> Result<(), Denial> {
        let Some(per_second) = policy.rate_per_second else {
            return Ok(());
        };
        let mut counters = self
            .counters
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let c = counters.entry(client.to_owned()).or_default();
        c.within_rate(client, policy, now_ms, cost)?;
        c.use_rate(per_second, now_ms, cost);
        Ok(())
    }

    /// Counts a request decided earlier, as [`Decider::decide`] counted it then (a batch's
    /// modifications in place from each order's price times its quantity, which may differ
    /// from what the decision counted at the market's price, and still bounds the order's
    /// fills), when it falls on the UTC day of `now_ms`: an allowed order's notional and an allowed
    /// withdrawal's amount. A gateway that starts again passes it the day's events from
    /// the audit log, in order, so that a restart does not reset the daily limits. An
    /// order or a withdrawal is written before it is sent and its outcome after: one whose
    /// outcome says the exchange was never reached, or that was refused after it was
    /// written (a denial with its request id follows), is handed back, as it was when it
    /// happened.
    pub fn count_earlier(&self, event: &Event, now_ms: u64) {
        let request = match &event.body {
            EventBody::Request(request) if !request.allowed => {
                // Refused after its pending event was written (stale by the time it was
                // to be sent, its client frozen meanwhile, the log late): never sent.
                if request.outcome == Outcome::NotForwarded {
                    let reservation = self
                        .earlier_unsettled
                        .lock()
                        .unwrap_or_else(|poisoned| poisoned.into_inner())
                        .remove(&request.request_id);
                    if let Some(reservation) = reservation {
                        self.release(reservation);
                    }
                }
                return;
            }
            EventBody::Request(request) => request,
            EventBody::Outcome(outcome) => {
                let mut unsettled = self
                    .earlier_unsettled
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                let reservation = unsettled.remove(&outcome.request_id);
                drop(unsettled);
                if let (Some(reservation), Outcome::UpstreamUnreachable) =
                    (reservation, outcome.outcome)
                {
                    self.release(reservation);
                }
                return;
            }
            _ => return,
        };
        let Some(client) = request.client.as_deref() else {
            return;
        };
        let sent = matches!(
            request.outcome,
            Outcome::Pending | Outcome::Answered | Outcome::Unknown
        );
        // An event of a later day than `now_ms`'s (this host's clock set back across a
        // restart) counts in the next day, which comes back when the clock gets there
        // (found by review: dropped, it gave the client that day's allowance again). The
        // counters keep two days: one of a day after the next counts in the next too,
        // which errs on refusing, rather than push today's out.
        if !request.allowed || !sent || event.ts_ms / DAY_MS < now_ms / DAY_MS {
            return;
        }
        let mut counters = self
            .counters
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let c = counters.entry(client.to_owned()).or_default();
        c.roll_to(now_ms);
        let next_day_ms = (now_ms / DAY_MS + 1) * DAY_MS;
        c.roll_to(event.ts_ms.clamp(now_ms, next_day_ms));
        let mut reservation = DailyReservation {
            client: client.to_owned(),
            day: c.day,
            ..DailyReservation::default()
        };
        match request.action {
            ActionKind::Trade if !request.validates_only => {
                // A batch of an unlimited client with an order of unknown notional has no
                // total: the running gateway counted the orders whose notional it knew.
                let known_in_batch = || {
                    let known = request.orders.iter().filter_map(|order| order.notional);
                    known.reduce(Decimal::saturating_add)
                };
                let notional = request.notional.or_else(known_in_batch);
                if let Some(n) = notional.filter(|n| *n > Decimal::ZERO) {
                    let modifications = modifications_recorded(request, n);
                    let (counted, raised) = c.count_modifications(n, &modifications);
                    c.day_notional = c.day_notional.saturating_add(counted);
                    reservation.notional = Some(counted);
                    reservation.moved_orders = !raised.is_empty();
                    c.day_modified_peaks.extend(raised);
                }
            }
            ActionKind::Withdraw => {
                if let (Some(asset), Some(amount)) = (&request.asset, request.amount) {
                    let total = c.day_withdrawn.entry(asset.clone()).or_default();
                    *total = total.saturating_add(amount);
                    reservation.withdrawal = Some((asset.clone(), amount));
                }
            }
            _ => {}
        }
        drop(counters);
        if request.outcome == Outcome::Pending && !reservation.is_empty() {
            self.earlier_unsettled
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .insert(request.request_id.clone(), reservation);
        }
    }
}

/// What a request counts against its client's rate: one, or a batch's number of orders,
/// each decided (and priced at the exchange, if need be) as an order of its own, so that
/// a batch is no way around the rate. An order list (OCO, OTO, OTOCO) is one request,
/// decided as one order: its legs share a symbol and a quantity, and one price lookup.
fn rate_cost(action: &Action) -> u32 {
    u32::try_from(action.orders().len())
        .unwrap_or(u32::MAX)
        .max(1)
}

/// What one order's notional counts for, once its symbol and limits are checked.
enum OrderNotional {
    /// No notional limit applies to it, or it places no order.
    Unlimited,
    /// Its notional, within the per-order limit.
    Known(Decimal),
    /// It must be priced at the exchange first.
    Unknown,
}

/// The orders `request` (an order or a batch of `notional` in all) modified in place, with
/// their new versions, as its audit event records them: a single modification's notional
/// is the request's; a batch's each its price times its quantity (one priced at the
/// market, with no price of its own, is left out: it counts in full, as more rather than
/// less).
fn modifications_recorded(
    request: &RequestEvent,
    notional: Decimal,
) -> Vec<(ModifiedOrder, Version)> {
    let single = request.orders.is_empty();
    request
        .named_orders()
        .into_iter()
        .filter_map(|order| {
            let terms = order.terms?;
            let notional = if single {
                notional
            } else {
                terms.price?.checked_mul(terms.quantity)?
            };
            let version = Version {
                quantity: terms.quantity,
                notional,
            };
            Some((by_exchange_id(order.symbol, terms.modifies?)?, version))
        })
        .collect()
}

/// The order `order` modifies in place, with its new version at `notional`, when it is a
/// modification that names one by the exchange's id. Not by the client's: a client order
/// id may be given again to a new order once the one that had it is closed, and that
/// order's highest would then count for the new one's moves.
fn modification_of(order: &Action, notional: Decimal) -> Option<(ModifiedOrder, Version)> {
    let quantity = order.quantity?;
    let modified = by_exchange_id(
        order.listed_symbol()?,
        order.terms.as_ref()?.modifies.clone()?,
    )?;
    Some((modified, Version { quantity, notional }))
}

/// `(symbol, id)`, when `modifies` is the exchange's own id of the order: a positive
/// number, as Binance gives them (`007` is order 7; an id that is no such number, `0`
/// included, which an exchange may read as none, is no order of its).
fn by_exchange_id(symbol: String, modifies: OrderRef) -> Option<ModifiedOrder> {
    let OrderRef::OrderId(id) = modifies else {
        return None;
    };
    let digits = !id.is_empty() && id.len() <= 20 && id.bytes().all(|b| b.is_ascii_digit());
    let id: u64 = id.parse().ok().filter(|_| digits)?;
    (id > 0).then_some((symbol, id))
}

/// Checks one order (or a request that is no order: a read, a cancel) as a request of its
/// own would be: the symbol list, the asset of the notional limits, and the per-order
/// notional limit, `notional` being its stated or priced notional.
fn check_order(
    client: &str,
    policy: &Policy,
    order: &Action,
    notional: Option<Decimal>,
) -> Result<OrderNotional, Denial> {
    if let Some(allowed) = &policy.symbols {
        if matches!(order.kind, ActionKind::Trade | ActionKind::Cancel) || order.symbol.is_some() {
            // A symbol is allowed in the market the list names it in only: `BTCUSDT`
            // on spot, `usdm:BTCUSDT` on USD-M. A symbol whose market the adapter
            // cannot tell is allowed in none.
            match (order.listed_symbol(), order.market) {
                (Some(s), Some(_)) if allowed.contains(&s) => {}
                (Some(s), Some(_)) => {
                    return deny(
                        Rule::Symbol,
                        format!("symbol {s} is not allowed for client {client}"),
                    )
                }
                (Some(s), None) => {
                    return deny(
                        Rule::Symbol,
                        format!(
                            "the market of symbol {s} at {} is not known; client {client} \
                             is limited to a symbol list",
                            order.endpoint
                        ),
                    )
                }
                (None, _) => {
                    return deny(
                        Rule::Symbol,
                        format!(
                            "{} names no symbol; client {client} is limited to a symbol list",
                            order.endpoint
                        ),
                    )
                }
            }
        }
    }
    let limited = policy.max_order_notional.is_some() || policy.max_daily_notional.is_some();
    if order.kind != ActionKind::Trade || order.places_no_order || !limited {
        return Ok(OrderNotional::Unlimited);
    }
    match (policy.limits_asset(), &order.symbol) {
        (Some(asset), Some(symbol)) if !order.is_quoted_in(asset) => {
            return deny(
                Rule::OrderNotional,
                format!(
                    "symbol {symbol} is not quoted in {asset}, the asset of the notional \
                     limits of client {client}"
                ),
            );
        }
        // Without a symbol, nothing says what asset a notional is in.
        (Some(asset), None) => {
            return deny(
                Rule::OrderNotional,
                format!(
                    "{} names no symbol, so its notional cannot be counted in {asset}, the \
                     asset of the notional limits of client {client}",
                    order.endpoint
                ),
            );
        }
        _ => {}
    }
    match notional {
        // A negative or zero notional (a negative quantity or price) would lower the
        // day's total instead of adding to it.
        Some(n) if n <= Decimal::ZERO => deny(
            Rule::Malformed,
            format!("order notional {n} is not positive"),
        ),
        Some(n) => match policy.max_order_notional {
            Some(max) if n > max => deny(
                Rule::OrderNotional,
                format!("order notional {n} exceeds the limit {max} of client {client}"),
            ),
            _ => Ok(OrderNotional::Known(n)),
        },
        // Nothing to price: an order that names no quantity (a USD-M stop with
        // `closePosition`, which closes whatever position there is when it triggers)
        // is worth what is not known yet. Denied here, before a ticker call for nothing.
        None if order.quantity.is_none() && order.quote_quantity.is_none() => deny(
            Rule::OrderNotional,
            format!(
                "{} names no quantity, so its notional cannot be counted and client {client} \
                 has a notional limit; give a quantity (with reduceOnly to close a position)",
                order.endpoint
            ),
        ),
        // A sell given in quote (`quoteOrderQty`) gives away as much of the base asset as
        // the bids take to raise it: nothing bounds that before it fills (found by review:
        // it was counted at what it raises, however thin the bids).
        None if order.quantity.is_none() && order.side == Some(keygate_core::Side::Sell) => deny(
            Rule::OrderNotional,
            format!(
                "{} is a sell given in its quote asset, which gives away as much of the base \
                 asset as the bids take, so its notional cannot be counted and client \
                 {client} has a notional limit; give the quantity to sell instead",
                order.endpoint
            ),
        ),
        None => Ok(OrderNotional::Unknown),
    }
}

/// `denial` of the order at `index` of a batch of `count`, saying which order it is and
/// its symbol, so that the client knows which one to change.
fn in_batch(denial: Denial, index: usize, count: usize, order: &Action) -> Denial {
    let symbol = order
        .listed_symbol()
        .map_or_else(String::new, |symbol| format!(" ({symbol})"));
    Denial {
        message: format!(
            "order {} of {count} in the batch{symbol}: {}",
            index + 1,
            denial.message
        ),
        ..denial
    }
}

/// Whether the client may call at all: its status, its expiry, and its allow list, in
/// that order, the first checks [`Decider::decide`] runs. A gateway runs them on their own
/// as soon as the client is known and the request fresh, before anything is remembered of
/// the request: a captured request sent from an address the client may not use must not
/// spend its signature.
pub fn check_standing(r: &Request<'_>) -> Result<(), Denial> {
    let client = r.client;
    match r.status {
        ClientStatus::Active => {}
        ClientStatus::Frozen => return deny(Rule::Frozen, format!("client {client} is frozen")),
        ClientStatus::Revoked => return deny(Rule::Revoked, format!("client {client} is revoked")),
    }
    if r.expires_at_ms.is_some_and(|at| r.now_ms >= at) {
        return deny(Rule::Expired, format!("client {client} has expired"));
    }
    if r.policy
        .allow_ips
        .iter()
        .any(|net| net.contains(&r.source_ip))
    {
        return Ok(());
    }
    deny(
        Rule::SourceIp,
        format!(
            "source address {} is not allowed for client {client}",
            r.source_ip
        ),
    )
}

fn deny<T>(rule: Rule, message: String) -> Result<T, Denial> {
    Err(Denial::new(rule, message))
}

#[cfg(test)]
mod tests {
    use super::*;
    use keygate_core::{Market, Scope, Scopes, Side};

    fn trading_policy() -> Policy {
        Policy {
            scopes: [Scope::Read, Scope::Trade].into_iter().collect::<Scopes>(),
            symbols: Some(["BTCUSDT".to_owned()].into_iter().collect()),
            max_order_notional: Some(Decimal::from(1000)),
            max_daily_notional: Some(Decimal::from(1500)),
            rate_per_second: Some(3),
            ..Policy::default()
        }
    }

    fn order(symbol: &str) -> Action {
        let mut a = Action::new(ActionKind::Trade, "POST /api/v3/order");
        a.symbol = Some(symbol.to_owned());
        a.market = Some(Market::Spot);
        a.quantity = Some(Decimal::ONE);
        a
    }

    fn futures_order(symbol: &str) -> Action {
        let mut a = Action::new(ActionKind::Trade, "POST /fapi/v1/order");
        a.symbol = Some(symbol.to_owned());
        a.market = Some(Market::Usdm);
        a.quantity = Some(Decimal::ONE);
        a
    }

    /// A batch of USD-M orders, each named by symbol and side.
    fn batch(orders: &[(&str, Side)]) -> Action {
        Action {
            market: Some(Market::Usdm),
            batch: orders
                .iter()
                .map(|&(symbol, side)| Action {
                    side: Some(side),
                    ..futures_order(symbol)
                })
                .collect(),
            ..Action::new(ActionKind::Trade, "POST /fapi/v1/batchOrders")
        }
    }

    fn futures_trading_policy() -> Policy {
        Policy {
            symbols: Some(
                ["usdm:BTCUSDT".to_owned(), "usdm:ETHUSDT".to_owned()]
                    .into_iter()
                    .collect(),
            ),
            rate_per_second: None,
            ..trading_policy()
        }
    }

    fn batch_request<'a>(
        policy: &'a Policy,
        action: &'a Action,
        notionals: &'a [Option<Decimal>],
        now_ms: u64,
    ) -> Request<'a> {
        request(policy, action, None, now_ms).with_order_notionals(notionals)
    }

    /// A regression test: the orders of a batch were not read, so a client with a symbol
    /// list or a notional limit was denied every batch (ccxt's `create_orders` on
    /// binanceusdm), whatever its orders.
    #[test]
    fn a_batch_is_allowed_when_each_of_its_orders_would_be() {
        let d = Decider::new();
        let p = futures_trading_policy();
        let both = batch(&[("BTCUSDT", Side::Buy), ("ETHUSDT", Side::Sell)]);
        let n = |v: i64| Some(Decimal::from(v));
        let decided = d.reserve(&batch_request(&p, &both, &[n(400), n(500)], 0));
        // The day counts the sum of its orders.
        assert_eq!(decided.map(|r| r.notional), Ok(Some(Decimal::from(900))));
        assert_eq!(
            rule(d.decide(&request(&p, &futures_order("BTCUSDT"), n(601), 10))),
            Some(Rule::DailyNotional),
            "900 of 1500 were used by the batch"
        );
        assert_eq!(
            rule(d.decide(&request(&p, &futures_order("BTCUSDT"), n(600), 20))),
            None
        );
    }

    /// A regression test (found by review): a batch counted once against its client's
    /// rate, so a client held to a rate of N requests a second placed 5N orders, and
    /// had as many prices looked up. Each of its orders counts.
    #[test]
    fn a_batch_counts_each_of_its_orders_against_the_rate() {
        let d = Decider::new();
        let p = Policy {
            rate_per_second: Some(2),
            ..futures_trading_policy()
        };
        let n = |v: i64| Some(Decimal::from(v));
        let single = |at| rule(d.decide(&request(&p, &futures_order("BTCUSDT"), n(1), at)));
        let two = batch(&[("BTCUSDT", Side::Buy), ("ETHUSDT", Side::Buy)]);
        let three = batch(&[
            ("BTCUSDT", Side::Buy),
            ("ETHUSDT", Side::Buy),
            ("BTCUSDT", Side::Sell),
        ]);
        // After one order, a batch of two would make three in the second.
        assert_eq!(single(0), None);
        assert_eq!(
            rule(d.decide(&batch_request(&p, &two, &[n(1), n(1)], 10))),
            Some(Rule::Rate)
        );
        // A batch larger than the rate passes when nothing counts (it could never pass
        // otherwise), and counts for the time it takes at the rate: three orders at two
        // a second, a second and a half.
        assert_eq!(
            rule(d.decide(&batch_request(&p, &three, &[n(1), n(1), n(1)], 1_000))),
            None
        );
        assert_eq!(single(1_010), Some(Rule::Rate));
        assert_eq!(single(2_000), Some(Rule::Rate));
        assert_eq!(single(2_500), None);
    }

    /// A regression test (found by review): the rate was counted in windows that started
    /// anew each second, so a bot at five a second sent four at the end of one window and
    /// five at the start of the next: nine within 80 ms. No more than the rate passes in
    /// any one second, however it falls.
    #[test]
    fn no_second_holds_more_than_the_rate_however_it_falls() {
        let d = Decider::new();
        let p = Policy {
            rate_per_second: Some(5),
            ..trading_policy()
        };
        let read = Action::new(ActionKind::Read, "GET /api/v3/account");
        let at = |now_ms| rule(d.decide(&request(&p, &read, None, now_ms)));
        assert_eq!(at(0), None);
        for _ in 0..4 {
            assert_eq!(at(945), None);
        }
        let passed = (0..5).filter(|_| at(1_020).is_none()).count();
        assert_eq!(
            passed, 1,
            "the one counted at 0 ms no longer counts; the four at 945 do"
        );
        assert_eq!(at(1_944), Some(Rule::Rate));
        let passed = (0..5).filter(|_| at(1_945).is_none()).count();
        assert_eq!(passed, 4);
    }

    #[test]
    fn a_batch_is_denied_by_its_first_order_that_would_be_denied_alone() {
        let d = Decider::new();
        let p = futures_trading_policy();
        let n = |v: i64| Some(Decimal::from(v));
        let denial = |action: &Action, notionals: &[Option<Decimal>]| match d
            .decide(&batch_request(&p, action, notionals, 0))
        {
            Decision::Deny(denial) => denial,
            Decision::Allow => panic!("allowed: {action:?}"),
        };
        // A symbol off the list, in any order of it.
        let off_list = batch(&[
            ("BTCUSDT", Side::Buy),
            ("DOGEUSDT", Side::Buy),
            ("SOLUSDT", Side::Buy),
        ]);
        let d1 = denial(&off_list, &[n(1), n(1), n(1)]);
        assert_eq!(d1.rule, Rule::Symbol);
        assert!(
            d1.message
                .starts_with("order 2 of 3 in the batch (usdm:DOGEUSDT): symbol usdm:DOGEUSDT"),
            "{}",
            d1.message
        );
        // One order over the per-order limit, though the batch's total is within the day.
        let big = batch(&[("BTCUSDT", Side::Buy), ("ETHUSDT", Side::Buy)]);
        let d2 = denial(&big, &[n(100), n(1001)]);
        assert_eq!(d2.rule, Rule::OrderNotional);
        assert!(
            d2.message
                .contains("order 2 of 2 in the batch (usdm:ETHUSDT)"),
            "{}",
            d2.message
        );
        // Each within its limit, but together past the day's.
        let d3 = denial(&big, &[n(1000), n(600)]);
        assert_eq!(d3.rule, Rule::DailyNotional);
        // Denied batches counted nothing: the day's 1500 are all there.
        assert_eq!(
            rule(d.decide(&batch_request(&p, &big, &[n(1000), n(500)], 0))),
            None
        );
        // A batch without the trade scope.
        let read_only = Policy {
            scopes: [Scope::Read].into_iter().collect::<Scopes>(),
            ..p.clone()
        };
        assert_eq!(
            rule(d.decide(&batch_request(&read_only, &big, &[n(1), n(1)], 0))),
            Some(Rule::Scope)
        );
    }

    /// Found by review: a batch whose stated orders alone take its client past the day
    /// was priced at the exchange all the same, and a batch that could not be priced
    /// said "this order" without saying which.
    #[test]
    fn a_batch_past_the_day_by_its_stated_orders_is_denied_before_pricing() {
        let d = Decider::new();
        let p = futures_trading_policy();
        let n = |v: i64| Some(Decimal::from(v));
        assert_eq!(
            rule(d.decide(&request(&p, &futures_order("BTCUSDT"), n(1000), 0))),
            None
        );
        let mixed = batch(&[("BTCUSDT", Side::Buy), ("ETHUSDT", Side::Sell)]);
        assert_eq!(
            rule(d.decide(&batch_request(&p, &mixed, &[n(600), None], 10))),
            Some(Rule::DailyNotional),
            "1000 of 1500 used, 600 stated: no price is needed to deny it"
        );
        match d.decide(&batch_request(&p, &mixed, &[n(100), None], 20)) {
            Decision::Deny(denial) => {
                assert_eq!(denial.rule, Rule::PriceUnavailable);
                assert!(
                    denial
                        .message
                        .starts_with("order 2 of 2 in the batch (usdm:ETHUSDT): "),
                    "{}",
                    denial.message
                );
            }
            Decision::Allow => panic!("allowed without a price"),
        }
    }

    #[test]
    fn a_batch_order_without_a_stated_notional_is_priced_after_the_others_pass() {
        let d = Decider::new();
        let p = Policy {
            rate_per_second: Some(10),
            ..futures_trading_policy()
        };
        let n = |v: i64| Some(Decimal::from(v));
        let mixed = batch(&[("BTCUSDT", Side::Buy), ("ETHUSDT", Side::Sell)]);
        // An order the request bounds past the limit denies before any price is asked.
        assert_eq!(
            rule(d.decide(&batch_request(&p, &mixed, &[n(1001), None], 0))),
            Some(Rule::OrderNotional)
        );
        assert_eq!(
            rule(d.decide(&batch_request(&p, &mixed, &[n(100), None], 0))),
            Some(Rule::PriceUnavailable)
        );
        // Priced: decided as a single order priced from the market would be.
        assert_eq!(
            rule(d.decide_priced(&batch_request(&p, &mixed, &[n(100), n(1200)], 0))),
            Some(Rule::OrderNotional)
        );
        assert_eq!(
            rule(d.decide_priced(&batch_request(&p, &mixed, &[n(100), None], 0))),
            Some(Rule::PriceUnavailable)
        );
        assert_eq!(
            rule(d.decide_priced(&batch_request(&p, &mixed, &[n(100), n(200)], 0))),
            None
        );
        // Without a notional limit, nothing is priced; the symbol list still holds.
        let unlimited = Policy {
            max_order_notional: None,
            max_daily_notional: None,
            ..p.clone()
        };
        assert_eq!(
            rule(d.decide(&batch_request(&unlimited, &mixed, &[None, None], 0))),
            None
        );
    }

    #[test]
    fn a_batch_s_notional_is_the_total_of_its_orders_when_each_is_known() {
        let p = futures_trading_policy();
        let n = |v: i64| Some(Decimal::from(v));
        let two = batch(&[("BTCUSDT", Side::Buy), ("ETHUSDT", Side::Buy)]);
        let notionals = [n(1), n(2)];
        let r = batch_request(&p, &two, &notionals, 0);
        assert_eq!(r.notional, n(3));
        assert_eq!(r.order_notionals, &notionals);
        assert_eq!(total_notional(&[n(1), None]), None);
        assert_eq!(total_notional(&[Some(Decimal::MAX), n(1)]), None);
        // A single order's is its own.
        let single = futures_order("BTCUSDT");
        let r = request(&p, &single, None, 0).with_order_notionals(&notionals[..1]);
        assert_eq!((r.notional, r.order_notionals.len()), (n(1), 0));
    }

    /// A regression test: a test order (`order/test`), which places nothing, used up the
    /// day's notional like an order, live and after a restart.
    #[test]
    fn a_test_order_keeps_to_the_order_limit_and_counts_against_no_day() {
        let d = Decider::new();
        let p = Policy {
            rate_per_second: None,
            ..trading_policy()
        };
        let mut test = order("BTCUSDT");
        test.endpoint = "POST /api/v3/order/test".into();
        test.validates_only = true;
        let n = |v: i64| Some(Decimal::from(v));
        assert_eq!(rule(d.decide(&request(&p, &test, n(1000), 0))), None);
        assert_eq!(
            rule(d.decide(&request(&p, &test, n(2000), 10))),
            Some(Rule::OrderNotional)
        );
        // The day's 1500 are all there for real orders.
        assert_eq!(
            rule(d.decide(&request(&p, &order("BTCUSDT"), n(1000), 20))),
            None
        );
        assert_eq!(
            rule(d.decide(&request(&p, &order("BTCUSDT"), n(600), 30))),
            Some(Rule::DailyNotional)
        );
    }

    /// A regression test: a futures settings call (leverage, margin type, the countdown
    /// that cancels all) names no quantity, so under a notional limit it was denied as an
    /// order whose notional cannot be determined, after a ticker call for nothing: ccxt's
    /// `setLeverage` failed for every client with a notional limit.
    #[test]
    fn a_settings_call_is_no_order_to_price_but_keeps_to_scope_and_symbols() {
        let d = Decider::new();
        let p = Policy {
            symbols: Some(["usdm:BTCUSDT".to_owned()].into_iter().collect()),
            ..trading_policy()
        };
        let setting = |symbol: &str| {
            let mut a = futures_order(symbol);
            a.endpoint = "POST /fapi/v1/leverage".into();
            a.places_no_order = true;
            a
        };
        assert_eq!(
            rule(d.decide(&request(&p, &setting("BTCUSDT"), None, 0))),
            None
        );
        assert_eq!(
            rule(d.decide(&request(&p, &setting("ETHUSDT"), None, 10))),
            Some(Rule::Symbol)
        );
        let read_only = Policy {
            scopes: [Scope::Read].into_iter().collect::<Scopes>(),
            ..p.clone()
        };
        assert_eq!(
            rule(d.decide(&request(&read_only, &setting("BTCUSDT"), None, 20))),
            Some(Rule::Scope)
        );
        // An order is priced as before.
        assert_eq!(
            rule(d.decide(&request(&p, &futures_order("BTCUSDT"), None, 1_000))),
            Some(Rule::PriceUnavailable)
        );
    }

    /// A regression test: a USD-M stop with `closePosition` names no quantity, so under a
    /// notional limit it was sent to be priced (a ticker call, counted against the rate)
    /// and then denied as a price that could not be had, which is not why.
    #[test]
    fn an_order_without_quantity_is_denied_for_it_before_any_pricing() {
        let d = Decider::new();
        let p = futures_trading_policy();
        let close_position = || {
            let mut a = futures_order("BTCUSDT");
            a.endpoint = "POST /fapi/v1/algoOrder".into();
            a.side = Some(Side::Sell);
            a.trigger_price = Some(Decimal::from(60_000));
            a.quantity = None;
            a
        };
        let Decision::Deny(denial) = d.decide(&request(&p, &close_position(), None, 0)) else {
            panic!("an order without quantity was allowed under a notional limit");
        };
        assert_eq!(denial.rule, Rule::OrderNotional);
        assert!(
            denial.message.contains("names no quantity"),
            "{}",
            denial.message
        );
        // Without a notional limit, nothing needs counting.
        let unlimited = Policy {
            max_order_notional: None,
            max_daily_notional: None,
            ..p.clone()
        };
        assert_eq!(
            rule(d.decide(&request(&unlimited, &close_position(), None, 10))),
            None
        );
        // With a quantity it is priced as any order.
        let mut with_quantity = close_position();
        with_quantity.quantity = Some(Decimal::ONE);
        assert_eq!(
            rule(d.decide(&request(&p, &with_quantity, None, 20))),
            Some(Rule::PriceUnavailable)
        );
    }

    /// A regression test: an order that needs pricing was denied for its price before its
    /// rate was looked at, so a client past its rate still had keygate ask the exchange
    /// for a price, once per request, spending the address's request weight.
    #[test]
    fn a_client_past_its_rate_is_denied_before_its_order_is_priced() {
        let d = Decider::new();
        let p = Policy {
            rate_per_second: Some(1),
            ..trading_policy()
        };
        let btc = order("BTCUSDT");
        let n = Some(Decimal::from(100));
        assert_eq!(rule(d.decide(&request(&p, &btc, n, 0))), None);
        assert_eq!(
            rule(d.decide(&request(&p, &btc, None, 10))),
            Some(Rule::Rate)
        );
        // In the next second, the order is priced as before.
        assert_eq!(
            rule(d.decide(&request(&p, &btc, None, 1_000))),
            Some(Rule::PriceUnavailable)
        );
    }

    /// A regression test: an order that needed pricing counted against its client's rate
    /// only when it was allowed, so a client whose orders were then denied (a symbol the
    /// exchange does not list, a notional past the limit) had keygate ask the exchange
    /// for a price with each of them, as fast as it sent them, and never reached its rate.
    #[test]
    fn an_order_that_needs_a_price_counts_against_the_rate_whatever_the_decision() {
        let d = Decider::new();
        let p = Policy {
            symbols: None,
            rate_per_second: Some(2),
            ..trading_policy()
        };
        let unknown = order("ZZZZ1USDT");
        let btc = order("BTCUSDT");
        let n = |v: i64| Some(Decimal::from(v));
        // Two orders a second are priced, whether a price comes back or not...
        assert_eq!(
            rule(d.decide(&request(&p, &unknown, None, 0))),
            Some(Rule::PriceUnavailable)
        );
        assert_eq!(
            rule(d.decide_priced(&request(&p, &unknown, None, 0))),
            Some(Rule::PriceUnavailable)
        );
        assert_eq!(
            rule(d.decide(&request(&p, &btc, None, 10))),
            Some(Rule::PriceUnavailable)
        );
        assert_eq!(
            rule(d.decide_priced(&request(&p, &btc, n(2000), 10))),
            Some(Rule::OrderNotional)
        );
        // ...and a third in the same second is not priced at all.
        assert_eq!(
            rule(d.decide(&request(&p, &unknown, None, 20))),
            Some(Rule::Rate)
        );
        // An order allowed once priced counts once, not twice.
        assert_eq!(
            rule(d.decide(&request(&p, &btc, None, 1_000))),
            Some(Rule::PriceUnavailable)
        );
        assert_eq!(
            rule(d.decide_priced(&request(&p, &btc, n(100), 1_000))),
            None
        );
        assert_eq!(rule(d.decide(&request(&p, &btc, n(100), 1_010))), None);
        assert_eq!(
            rule(d.decide(&request(&p, &btc, n(100), 1_020))),
            Some(Rule::Rate)
        );
    }

    /// A regression test: with no symbol list, `--max-order-notional 500` (meant as 500
    /// USDT) let a client place an order of 500 BTC on ETHBTC.
    #[test]
    fn notional_limits_hold_only_symbols_quoted_in_their_asset() {
        let d = Decider::new();
        let limited = Policy {
            symbols: None,
            notional_asset: Some("USDT".to_owned()),
            ..trading_policy()
        };
        let n = Some(Decimal::from(400));
        let in_btc = order("ETHBTC");
        match d.decide(&request(&limited, &in_btc, n, 0)) {
            Decision::Deny(denial) => {
                assert_eq!(denial.rule, Rule::OrderNotional);
                assert!(
                    denial.message.contains("not quoted in USDT"),
                    "{}",
                    denial.message
                );
            }
            Decision::Allow => panic!("an order in BTC passed a USDT limit"),
        }
        assert_eq!(
            rule(d.decide(&request(&limited, &order("ETHUSDT"), n, 0))),
            None
        );
        assert_eq!(
            rule(d.decide(&request(&limited, &futures_order("BTCUSDT_250328"), n, 0))),
            None
        );
        // Without a limit, the asset bounds nothing.
        let unlimited = Policy {
            max_order_notional: None,
            max_daily_notional: None,
            ..limited.clone()
        };
        assert_eq!(rule(d.decide(&request(&unlimited, &in_btc, n, 0))), None);
        // An order that names no symbol names no asset either: its notional is not
        // counted as if it were in USDT.
        let mut no_symbol = order("BTCUSDT");
        no_symbol.symbol = None;
        assert_eq!(
            rule(d.decide(&request(&limited, &no_symbol, n, 0))),
            Some(Rule::OrderNotional)
        );
    }

    /// A regression test (from a review): a limited policy stored before keygate asked
    /// for its asset (`notional_asset` absent) still compared numbers in whatever asset
    /// each symbol is quoted in, so 9000 ETH on ETHBTC (450 BTC) passed a limit of 500.
    /// Such limits count in USDT, as the README says of every limit.
    #[test]
    fn a_limit_stored_without_its_asset_counts_in_usdt() {
        let d = Decider::new();
        let stored_before = Policy {
            symbols: None,
            notional_asset: None,
            ..trading_policy()
        };
        assert_eq!(stored_before.limits_asset(), Some("USDT"));
        let n = Some(Decimal::from(450));
        assert_eq!(
            rule(d.decide(&request(&stored_before, &order("ETHBTC"), n, 0))),
            Some(Rule::OrderNotional)
        );
        assert_eq!(
            rule(d.decide(&request(&stored_before, &order("ETHUSDT"), n, 0))),
            None
        );
        let unlimited = Policy {
            max_order_notional: None,
            max_daily_notional: None,
            ..stored_before
        };
        assert_eq!(unlimited.limits_asset(), None);
    }

    /// A regression test: `--symbols BTC/USDT` listed `BTCUSDT`, which also let the
    /// client open leveraged USD-M positions in the perpetual of the same id.
    #[test]
    fn a_symbol_is_allowed_in_the_market_it_is_listed_in_only() {
        let d = Decider::new();
        let spot_only = Policy {
            max_order_notional: None,
            max_daily_notional: None,
            rate_per_second: None,
            ..trading_policy()
        };
        let spot = order("BTCUSDT");
        let futures = futures_order("BTCUSDT");
        assert_eq!(rule(d.decide(&request(&spot_only, &spot, None, 0))), None);
        let denied = d.decide(&request(&spot_only, &futures, None, 0));
        match denied {
            Decision::Deny(denial) => {
                assert_eq!(denial.rule, Rule::Symbol);
                assert!(
                    denial.message.contains("usdm:BTCUSDT"),
                    "{}",
                    denial.message
                );
            }
            Decision::Allow => panic!("a spot listing allowed a futures order"),
        }

        let futures_only = Policy {
            symbols: Some(["usdm:BTCUSDT".to_owned()].into_iter().collect()),
            ..spot_only.clone()
        };
        assert_eq!(
            rule(d.decide(&request(&futures_only, &futures, None, 0))),
            None
        );
        assert_eq!(
            rule(d.decide(&request(&futures_only, &spot, None, 0))),
            Some(Rule::Symbol)
        );
        // A symbol whose market the adapter could not tell is allowed in none.
        let mut unknown_market = spot.clone();
        unknown_market.market = None;
        assert_eq!(
            rule(d.decide(&request(&spot_only, &unknown_market, None, 0))),
            Some(Rule::Symbol)
        );
    }

    fn request<'a>(
        policy: &'a Policy,
        action: &'a Action,
        notional: Option<Decimal>,
        now_ms: u64,
    ) -> Request<'a> {
        Request {
            client: "bot1",
            status: ClientStatus::Active,
            expires_at_ms: Some(10_000_000),
            policy,
            source_ip: "127.0.0.1".parse().unwrap(),
            action,
            notional,
            order_notionals: &[],
            now_ms,
        }
    }

    fn rule(d: Decision) -> Option<Rule> {
        match d {
            Decision::Allow => None,
            Decision::Deny(d) => Some(d.rule),
        }
    }

    #[test]
    fn each_rule_denies_in_order() {
        let p = trading_policy();
        let d = Decider::new();
        let btc = order("BTCUSDT");
        let doge = order("DOGEUSDT");
        let n = |v: i64| Some(Decimal::from(v));
        assert_eq!(rule(d.decide(&request(&p, &btc, n(100), 0))), None);
        assert_eq!(
            rule(d.decide(&Request {
                status: ClientStatus::Frozen,
                ..request(&p, &btc, n(1), 0)
            })),
            Some(Rule::Frozen)
        );
        assert_eq!(
            rule(d.decide(&Request {
                status: ClientStatus::Revoked,
                ..request(&p, &btc, n(1), 0)
            })),
            Some(Rule::Revoked)
        );
        assert_eq!(
            rule(d.decide(&request(&p, &btc, n(1), 10_000_000))),
            Some(Rule::Expired)
        );
        assert_eq!(
            rule(d.decide(&Request {
                source_ip: "10.0.0.1".parse().unwrap(),
                ..request(&p, &btc, n(1), 0)
            })),
            Some(Rule::SourceIp)
        );
        assert_eq!(
            rule(d.decide(&request(&p, &doge, n(1), 0))),
            Some(Rule::Symbol)
        );
        assert_eq!(
            rule(d.decide(&request(&p, &btc, n(1001), 0))),
            Some(Rule::OrderNotional)
        );
        assert_eq!(
            rule(d.decide(&request(&p, &btc, None, 0))),
            Some(Rule::PriceUnavailable)
        );
        let withdraw = Action::new(ActionKind::Withdraw, "POST /sapi/v1/capital/withdraw/apply");
        assert_eq!(
            rule(d.decide(&request(&p, &withdraw, None, 0))),
            Some(Rule::Scope)
        );
        let unknown = Action::new(ActionKind::Unknown, "GET /x");
        assert_eq!(
            rule(d.decide(&request(&p, &unknown, None, 0))),
            Some(Rule::UnknownEndpoint)
        );
        let keys = Action::new(
            ActionKind::KeyManagement,
            "POST /sapi/v1/broker/subAccountApi",
        );
        assert_eq!(
            rule(d.decide(&request(&p, &keys, None, 0))),
            Some(Rule::KeyManagement)
        );
    }

    /// From a review: the crate doc put the rate last, after the daily limits, while the
    /// decider checks it first. One request over both is denied for its rate.
    #[test]
    fn the_rate_is_checked_before_the_daily_limits() {
        let p = Policy {
            rate_per_second: Some(1),
            max_daily_notional: Some(Decimal::from(100)),
            ..trading_policy()
        };
        let d = Decider::new();
        let btc = order("BTCUSDT");
        let n = |v: i64| Some(Decimal::from(v));
        assert_eq!(rule(d.decide(&request(&p, &btc, n(50), 0))), None);
        assert_eq!(
            rule(d.decide(&request(&p, &btc, n(80), 0))),
            Some(Rule::Rate),
            "over its rate and its day at once"
        );
        assert_eq!(
            rule(d.decide(&request(&p, &btc, n(80), 2_000))),
            Some(Rule::DailyNotional)
        );
    }

    #[test]
    fn withdrawals_go_only_to_listed_addresses_and_tags() {
        let decider = Decider::new();
        let policy = Policy {
            scopes: [Scope::Read, Scope::Withdraw]
                .into_iter()
                .collect::<Scopes>(),
            withdrawal_addresses: ["bc1qcold", "rXRPhot/123"]
                .into_iter()
                .map(|d| d.parse().unwrap())
                .collect(),
            ..Policy::default()
        };
        let withdraw = |address: Option<&str>, tag: Option<&str>| {
            let mut a = Action::new(ActionKind::Withdraw, "POST /sapi/v1/capital/withdraw/apply");
            a.address = address.map(str::to_owned);
            a.address_tag = tag.map(str::to_owned);
            rule(decider.decide(&request(&policy, &a, None, 1_000)))
        };
        assert_eq!(withdraw(Some("bc1qcold"), None), None);
        assert_eq!(withdraw(Some("rXRPhot"), Some("123")), None);
        for (address, tag) in [
            (Some("bc1qattacker"), None),
            // Case counts: some chains read it.
            (Some("BC1QCOLD"), None),
            // The shared address with another account's tag, or with none.
            (Some("rXRPhot"), Some("999")),
            (Some("rXRPhot"), None),
            (Some("bc1qcold"), Some("1")),
            (None, None),
            (Some("bc1q/cold"), None),
        ] {
            assert_eq!(
                withdraw(address, tag),
                Some(Rule::WithdrawalAddress),
                "{address:?} {tag:?}"
            );
        }
        // An address listed on one network is allowed on that network only, and not
        // without one (the exchange would choose its default).
        let on_eth = Policy {
            withdrawal_addresses: ["ETH:0x1111".parse().unwrap()].into_iter().collect(),
            ..policy.clone()
        };
        let to_0x1111 = |network: Option<&str>| {
            let mut a = Action::new(ActionKind::Withdraw, "POST /sapi/v1/capital/withdraw/apply");
            a.address = Some("0x1111".into());
            a.network = network.map(str::to_owned);
            rule(decider.decide(&request(&on_eth, &a, None, 1_000)))
        };
        assert_eq!(to_0x1111(Some("ETH")), None);
        assert_eq!(to_0x1111(Some("OPTIMISM")), Some(Rule::WithdrawalAddress));
        assert_eq!(to_0x1111(None), Some(Rule::WithdrawalAddress));
        assert_eq!(to_0x1111(Some("")), Some(Rule::WithdrawalAddress));
        // Without a list, no withdrawal at all, whatever the scope.
        let unlisted = Policy {
            withdrawal_addresses: Default::default(),
            ..policy.clone()
        };
        let mut a = Action::new(ActionKind::Withdraw, "POST /sapi/v1/capital/withdraw/apply");
        a.address = Some("bc1qcold".into());
        assert_eq!(
            rule(decider.decide(&request(&unlisted, &a, None, 1_000))),
            Some(Rule::WithdrawalAddress)
        );
    }

    /// `r` from a client that never expires, for tests that cross days.
    fn lasting(r: Request<'_>) -> Request<'_> {
        Request {
            expires_at_ms: None,
            ..r
        }
    }

    fn withdrawing_policy() -> Policy {
        Policy {
            scopes: [Scope::Read, Scope::Withdraw]
                .into_iter()
                .collect::<Scopes>(),
            withdrawal_addresses: ["bc1qcold".parse().unwrap()].into_iter().collect(),
            max_daily_withdrawal: [("BTC".to_owned(), Decimal::new(5, 1))]
                .into_iter()
                .collect(),
            ..Policy::default()
        }
    }

    fn withdrawal(asset: &str, amount: Option<Decimal>) -> Action {
        let mut a = Action::new(ActionKind::Withdraw, "POST /sapi/v1/capital/withdraw/apply");
        a.address = Some("bc1qcold".into());
        a.asset = Some(asset.into());
        a.amount = amount;
        a
    }

    #[test]
    fn daily_withdrawals_are_capped_per_asset_and_reset_at_utc_midnight() {
        let decider = Decider::new();
        let policy = withdrawing_policy();
        let withdraw = |asset: &str, tenths: i64, now_ms: u64| {
            let action = withdrawal(asset, Some(Decimal::new(tenths, 1)));
            rule(decider.decide(&lasting(request(&policy, &action, None, now_ms))))
        };
        assert_eq!(withdraw("BTC", 3, 1_000), None);
        assert_eq!(withdraw("BTC", 3, 2_000), Some(Rule::WithdrawalLimit));
        assert_eq!(
            withdraw("BTC", 2, 3_000),
            None,
            "0.3 + 0.2 is the limit itself"
        );
        assert_eq!(withdraw("BTC", 1, 4_000), Some(Rule::WithdrawalLimit));
        // An asset not on the list is refused outright, a missing or negative amount is
        // malformed.
        assert_eq!(withdraw("ETH", 1, 5_000), Some(Rule::WithdrawalLimit));
        assert_eq!(withdraw("btc", 1, 5_000), Some(Rule::WithdrawalLimit));
        assert_eq!(withdraw("BTC", -1, 5_000), Some(Rule::Malformed));
        let none = withdrawal("BTC", None);
        assert_eq!(
            rule(decider.decide(&lasting(request(&policy, &none, None, 5_000)))),
            Some(Rule::Malformed)
        );
        // A new UTC day, a new allowance.
        assert_eq!(withdraw("BTC", 5, DAY_MS + 1), None);
        assert_eq!(withdraw("BTC", 1, DAY_MS + 2), Some(Rule::WithdrawalLimit));
        // Without limits, the amount is not looked at.
        let unlimited = Policy {
            max_daily_withdrawal: Default::default(),
            ..policy.clone()
        };
        let large = withdrawal("ETH", Some(Decimal::from(1_000_000)));
        assert_eq!(
            rule(decider.decide(&lasting(request(&unlimited, &large, None, 6_000)))),
            None
        );
    }

    /// Found by review: withdrawals and orders were counted only while a daily limit
    /// applied to them, so a limit set during the day (the day of an incident, most
    /// often) ignored what was spent before it, unless `serve` happened to restart,
    /// whose recount counts everything the log states.
    #[test]
    fn a_limit_set_during_the_day_counts_the_day_so_far() {
        let decider = Decider::new();
        let unlimited = Policy {
            max_daily_withdrawal: Default::default(),
            ..withdrawing_policy()
        };
        let two = withdrawal("BTC", Some(Decimal::from(2)));
        let at = |now_ms| lasting(request(&unlimited, &two, None, now_ms));
        assert_eq!(rule(decider.decide(&at(1_000))), None);
        let limited = withdrawing_policy();
        let half = withdrawal("BTC", Some(Decimal::new(5, 1)));
        assert_eq!(
            rule(decider.decide(&lasting(request(&limited, &half, None, 2_000)))),
            Some(Rule::WithdrawalLimit),
            "2 BTC were withdrawn today before the 0.5 BTC limit was set"
        );

        let uncapped = Policy {
            max_order_notional: None,
            max_daily_notional: None,
            ..trading_policy()
        };
        let n = |v: i64| Some(Decimal::from(v));
        let buy = order("BTCUSDT");
        let bought = decider.decide(&lasting(request(&uncapped, &buy, n(1_400), 3_000)));
        assert_eq!(rule(bought), None);
        let capped = trading_policy();
        assert_eq!(
            rule(decider.decide(&lasting(request(&capped, &buy, n(200), 4_000)))),
            Some(Rule::DailyNotional),
            "1400 of 1500 were used before the limit was set"
        );
        assert_eq!(
            rule(decider.decide(&lasting(request(&capped, &buy, n(100), 5_000)))),
            None
        );
    }

    /// Found by review: a batch larger than the client's rate passed in a second with
    /// nothing counted yet, and the next second started from nothing, so a client held
    /// to one order a second placed five a second in batches of five. What it counted
    /// past the rate is carried into the seconds after it.
    #[test]
    fn a_batch_larger_than_the_rate_costs_the_seconds_it_takes() {
        let d = Decider::new();
        let p = Policy {
            rate_per_second: Some(1),
            ..futures_trading_policy()
        };
        let n = |v: i64| Some(Decimal::from(v));
        let five = batch(&[
            ("BTCUSDT", Side::Buy),
            ("ETHUSDT", Side::Buy),
            ("BTCUSDT", Side::Sell),
            ("ETHUSDT", Side::Sell),
            ("BTCUSDT", Side::Buy),
        ]);
        let notionals = [n(1), n(1), n(1), n(1), n(1)];
        assert_eq!(
            rule(d.decide(&batch_request(&p, &five, &notionals, 0))),
            None
        );
        let single = |at| rule(d.decide(&request(&p, &futures_order("BTCUSDT"), n(1), at)));
        for at in [1_000, 2_000, 3_000, 4_000, 4_999] {
            assert_eq!(single(at), Some(Rule::Rate), "at {at} ms");
        }
        assert_eq!(single(5_000), None);
        assert_eq!(
            rule(d.decide(&batch_request(&p, &five, &notionals, 6_000))),
            None,
            "a second with nothing counted takes a batch again"
        );
        assert_eq!(single(7_000), Some(Rule::Rate));
    }

    /// A client over its rate is told when it has room again: after a batch, the end of
    /// the seconds the batch counts, not one second (found by review).
    #[test]
    fn a_rate_denial_says_when_the_rate_has_room() {
        let n = |v: i64| Some(Decimal::from(v));
        let p = Policy {
            rate_per_second: Some(2),
            ..futures_trading_policy()
        };
        let retry_after = |d: Decision| match d {
            Decision::Deny(denial) if denial.rule == Rule::Rate => denial.retry_after_ms,
            other => panic!("not a rate denial: {other:?}"),
        };
        let d = Decider::new();
        let six = batch(&[("BTCUSDT", Side::Buy); 6]);
        assert_eq!(
            rule(d.decide(&batch_request(&p, &six, &[n(1); 6], 0))),
            None
        );
        let single = |d: &Decider, at| d.decide(&request(&p, &futures_order("BTCUSDT"), n(1), at));
        assert_eq!(
            retry_after(single(&d, 1_000)),
            Some(2_000),
            "six at two a second count 3 s"
        );
        assert_eq!(retry_after(single(&d, 2_999)), Some(1));

        let d = Decider::new();
        assert_eq!(rule(single(&d, 0)), None);
        assert_eq!(rule(single(&d, 400)), None);
        assert_eq!(
            retry_after(single(&d, 500)),
            Some(500),
            "room once the first no longer counts"
        );
    }

    /// A regression test: what an allowed withdrawal or order reserved of the day's limits
    /// stayed reserved when it never reached the exchange (refused after its decision,
    /// or the exchange unreachable), so each retry that day was refused, live and after a
    /// restart alike.
    #[test]
    fn a_request_that_never_reached_the_exchange_hands_its_reservation_back() {
        use keygate_core::{OutcomeEvent, RequestEvent};
        let policy = withdrawing_policy();
        let half = withdrawal("BTC", Some(Decimal::new(5, 1)));
        let decider = Decider::new();
        let reserved = decider
            .reserve(&lasting(request(&policy, &half, None, 1_000)))
            .unwrap();
        assert!(!reserved.is_empty());
        assert_eq!(
            rule(decider.decide(&lasting(request(&policy, &half, None, 2_000)))),
            Some(Rule::WithdrawalLimit)
        );
        decider.release(reserved);
        let again = decider.reserve(&lasting(request(&policy, &half, None, 3_000)));
        assert!(again.is_ok(), "{again:?}");

        // After a restart: the pending event, then its outcome.
        let withdrawal_event = |id: &str, ts_ms: u64, allowed: bool, outcome: Outcome| Event {
            ts_ms,
            body: EventBody::Request(RequestEvent {
                request_id: id.into(),
                exchange: "binance".into(),
                client: Some("bot1".into()),
                key_of: None,
                account: Some("main".into()),
                source_ip: "127.0.0.1".into(),
                method: "POST".into(),
                path: "/sapi/v1/capital/withdraw/apply".into(),
                action: ActionKind::Withdraw,
                symbol: None,
                side: None,
                client_order_id: None,
                notional: None,
                amount: Some(Decimal::new(5, 1)),
                asset: Some("BTC".into()),
                destination: None,
                network: None,
                allowed,
                rule: None,
                message: None,
                upstream_status: None,
                latency_us: None,
                outcome,
                validates_only: false,
                previous_key: false,
                forwarded_by: None,
                places_no_order: false,
                orders: Vec::new(),
                terms: None,
            }),
        };
        let pending = |id: &str, ts_ms: u64| withdrawal_event(id, ts_ms, true, Outcome::Pending);
        let outcome = |id: &str, ts_ms: u64, outcome: Outcome| Event {
            ts_ms,
            body: EventBody::Outcome(OutcomeEvent {
                request_id: id.into(),
                client: Some("bot1".into()),
                upstream_status: None,
                latency_us: 10,
                outcome,
                order_ids: Vec::new(),
                interrupted: false,
            }),
        };
        let now = 10_000;
        let restarted = Decider::new();
        for earlier in [
            pending("never-sent", 100),
            outcome("never-sent", 200, Outcome::UpstreamUnreachable),
        ] {
            restarted.count_earlier(&earlier, now);
        }
        let decided = restarted.reserve(&lasting(request(&policy, &half, None, now)));
        assert!(decided.is_ok(), "{decided:?}");
        // Nor one refused after its pending event was written.
        let restarted = Decider::new();
        for earlier in [
            pending("refused", 100),
            withdrawal_event("refused", 200, false, Outcome::NotForwarded),
        ] {
            restarted.count_earlier(&earlier, now);
        }
        let decided = restarted.reserve(&lasting(request(&policy, &half, None, now)));
        assert!(decided.is_ok(), "{decided:?}");
        // One the exchange answered stays counted.
        let restarted = Decider::new();
        for earlier in [
            pending("sent", 100),
            outcome("sent", 200, Outcome::Answered),
        ] {
            restarted.count_earlier(&earlier, now);
        }
        assert_eq!(
            rule(restarted.decide(&lasting(request(&policy, &half, None, now)))),
            Some(Rule::WithdrawalLimit)
        );
    }

    #[test]
    fn the_day_so_far_is_learnt_from_earlier_events() {
        use keygate_core::RequestEvent;
        let event = |ts_ms: u64, action: ActionKind, allowed: bool, outcome: Outcome| Event {
            ts_ms,
            body: EventBody::Request(RequestEvent {
                request_id: format!("r{ts_ms}"),
                exchange: "binance".into(),
                client: Some("bot1".into()),
                key_of: None,
                account: Some("main".into()),
                source_ip: "127.0.0.1".into(),
                method: "POST".into(),
                path: "/x".into(),
                action,
                symbol: Some("BTCUSDT".into()),
                side: None,
                client_order_id: None,
                notional: Some(Decimal::from(1000)),
                amount: Some(Decimal::new(4, 1)),
                asset: Some("BTC".into()),
                destination: None,
                network: None,
                allowed,
                rule: None,
                message: None,
                upstream_status: None,
                latency_us: None,
                outcome,
                validates_only: false,
                previous_key: false,
                forwarded_by: None,
                places_no_order: false,
                orders: Vec::new(),
                terms: None,
            }),
        };
        let now = DAY_MS + 5_000;
        let decider = Decider::new();
        for earlier in [
            event(DAY_MS + 10, ActionKind::Withdraw, true, Outcome::Answered),
            event(DAY_MS + 20, ActionKind::Trade, true, Outcome::Pending),
            // Not counted: yesterday, denied, never sent.
            event(DAY_MS - 10, ActionKind::Withdraw, true, Outcome::Answered),
            event(
                DAY_MS + 30,
                ActionKind::Withdraw,
                false,
                Outcome::NotForwarded,
            ),
            event(
                DAY_MS + 40,
                ActionKind::Withdraw,
                true,
                Outcome::UpstreamUnreachable,
            ),
            // Nor a test order, which placed nothing.
            {
                let mut test = event(DAY_MS + 50, ActionKind::Trade, true, Outcome::Answered);
                if let EventBody::Request(r) = &mut test.body {
                    r.validates_only = true;
                }
                test
            },
        ] {
            decider.count_earlier(&earlier, now);
        }
        let policy = withdrawing_policy();
        let withdraw = |tenths: i64| {
            let action = withdrawal("BTC", Some(Decimal::new(tenths, 1)));
            rule(decider.decide(&lasting(request(&policy, &action, None, now))))
        };
        assert_eq!(
            withdraw(2),
            Some(Rule::WithdrawalLimit),
            "0.4 already today"
        );
        assert_eq!(withdraw(1), None);
        let trading = trading_policy();
        let btc = order("BTCUSDT");
        assert_eq!(
            rule(decider.decide(&lasting(request(
                &trading,
                &btc,
                Some(Decimal::from(600)),
                now
            )))),
            Some(Rule::DailyNotional),
            "1000 of 1500 already today"
        );
        assert_eq!(
            rule(decider.decide(&lasting(request(
                &trading,
                &btc,
                Some(Decimal::from(500)),
                now
            )))),
            None
        );

        // Found by review: restarted with its clock set back before midnight, the gateway
        // dropped the events of the day after, and gave the client that day again.
        let restarted = Decider::new();
        let before_midnight = 2 * DAY_MS - 25_000;
        for earlier in [
            event(2 * DAY_MS + 10, ActionKind::Trade, true, Outcome::Answered),
            event(DAY_MS + 60, ActionKind::Trade, true, Outcome::Answered),
            // Found by review of the fix: one of the day after the next pushed today's
            // counts out of the two days kept. It counts in the next day's.
            event(3 * DAY_MS + 10, ActionKind::Trade, true, Outcome::Answered),
        ] {
            restarted.count_earlier(&earlier, before_midnight);
        }
        let order_at = |ts_ms, notional: i64| {
            let decided = restarted.decide(&lasting(request(
                &trading,
                &btc,
                Some(Decimal::from(notional)),
                ts_ms,
            )));
            rule(decided)
        };
        assert_eq!(order_at(before_midnight, 600), Some(Rule::DailyNotional));
        assert_eq!(order_at(before_midnight, 500), None);
        // The next day holds its own 1000 and the day after's 1000: past 1500.
        assert_eq!(order_at(2 * DAY_MS + 20_000, 1), Some(Rule::DailyNotional));
    }

    /// From a review: a batch of an unlimited client with an order of unknown notional
    /// (a market order) has no total, so a restarted gateway counted nothing of it, where
    /// the running one had counted the orders whose notional it knew; a limit set later
    /// that day then had more room after a restart than before.
    #[test]
    fn a_batch_without_a_total_counts_its_known_orders_after_a_restart() {
        use keygate_core::{BatchOrder, RequestEvent};
        let now = DAY_MS + 5_000;
        let batched = |symbol: &str, notional: Option<i64>| BatchOrder {
            symbol: symbol.into(),
            side: None,
            client_order_id: None,
            terms: None,
            notional: notional.map(Decimal::from),
        };
        let batch = Event {
            ts_ms: DAY_MS + 10,
            body: EventBody::Request(RequestEvent {
                request_id: "batch".into(),
                exchange: "binance".into(),
                client: Some("bot1".into()),
                key_of: None,
                account: Some("main".into()),
                source_ip: "127.0.0.1".into(),
                method: "POST".into(),
                path: "/fapi/v1/batchOrders".into(),
                action: ActionKind::Trade,
                symbol: None,
                side: None,
                client_order_id: None,
                notional: None,
                amount: None,
                asset: None,
                destination: None,
                network: None,
                allowed: true,
                rule: None,
                message: None,
                upstream_status: Some(200),
                latency_us: None,
                outcome: Outcome::Answered,
                validates_only: false,
                previous_key: false,
                forwarded_by: None,
                places_no_order: false,
                orders: vec![
                    batched("usdm:BTCUSDT", Some(800)),
                    batched("usdm:ETHUSDT", None),
                ],
                terms: None,
            }),
        };
        let restarted = Decider::new();
        restarted.count_earlier(&batch, now);
        let policy = Policy {
            symbols: None,
            max_order_notional: None,
            max_daily_notional: Some(Decimal::from(1000)),
            notional_asset: Some("USDT".into()),
            rate_per_second: None,
            ..trading_policy()
        };
        let btc = order("BTCUSDT");
        let decide = |n: i64| {
            rule(restarted.decide(&lasting(request(
                &policy,
                &btc,
                Some(Decimal::from(n)),
                now,
            ))))
        };
        assert_eq!(decide(300), Some(Rule::DailyNotional), "800 already today");
        assert_eq!(decide(200), None);
    }

    /// A USD-M limit order modified (`PUT`) to `quantity` at `price`, naming order `id`.
    fn modification(id: &str, price: i64, quantity: i64) -> Action {
        let mut a = futures_order("BTCUSDT");
        a.endpoint = "PUT /fapi/v1/order".into();
        a.quantity = Some(Decimal::from(quantity));
        a.trigger_price = Some(Decimal::from(price));
        a.terms = Some(keygate_core::OrderTerms {
            price: Some(Decimal::from(price)),
            quantity: Decimal::from(quantity),
            modifies: Some(OrderRef::OrderId(id.into())),
        });
        a
    }

    /// The decision on `modification` at `now_ms`, at its own price.
    fn modify<'a>(policy: &'a Policy, modification: &'a Action, now_ms: u64) -> Request<'a> {
        let terms = modification.terms.as_ref().unwrap();
        Request {
            expires_at_ms: None,
            ..request(
                policy,
                modification,
                Some(terms.price.unwrap() * terms.quantity),
                now_ms,
            )
        }
    }

    /// A new USD-M order of notional `notional`.
    fn futures_order_at(notional: i64) -> Action {
        let mut a = modification("0", notional, 1);
        a.endpoint = "POST /fapi/v1/order".into();
        a.terms.as_mut().unwrap().modifies = None;
        a
    }

    fn daily_limit(max: i64) -> Policy {
        Policy {
            max_order_notional: None,
            max_daily_notional: Some(Decimal::from(max)),
            ..futures_trading_policy()
        }
    }

    /// Found by review: without a limit, each modification counted its whole notional,
    /// so a bot that moved one 1000 USDT quote fifty times was cut off at once when a
    /// daily limit was then set, though a restart's recount counts what each adds.
    #[test]
    fn a_modification_without_a_limit_counts_what_it_adds() {
        let unlimited = Policy {
            max_order_notional: None,
            max_daily_notional: None,
            ..futures_trading_policy()
        };
        let d = Decider::new();
        assert_eq!(
            rule(d.decide(&modify(&unlimited, &modification("7", 1000, 1), 1_000))),
            None
        );
        for at in 0..50 {
            let moved = modification("7", 1000, 1);
            assert_eq!(
                rule(d.decide(&modify(&unlimited, &moved, 2_000 + at))),
                None
            );
        }
        assert_eq!(d.day_notional("bot1", 3_000), Decimal::from(1000));
    }

    /// A regression test: every modification of a USD-M order counted its whole notional
    /// towards the day, so a bot that moved one 500 USDT quote a thousand times a day was
    /// cut off after its limit's worth of moves. A modification now counts what it adds
    /// to its order's highest quantity at its highest price today.
    #[test]
    fn a_modification_counts_what_it_adds_above_its_order_s_highest_today() {
        let p = daily_limit(2000);
        let d = Decider::new();
        let decide = |a: &Action, now| d.reserve(&modify(&p, a, now)).map(|r| r.notional);
        // The first modification of an order counts in full (500); moves at or below its
        // highest count nothing; a move up counts what it adds.
        assert_eq!(
            decide(&modification("7", 500, 1), 0),
            Ok(Some(Decimal::from(500)))
        );
        for now in 1..100 {
            let price = 400 + (now as i64 % 100);
            assert_eq!(
                decide(&modification("7", price, 1), now),
                Ok(Some(Decimal::ZERO))
            );
        }
        assert_eq!(
            decide(&modification("7", 800, 1), 100),
            Ok(Some(Decimal::from(300)))
        );
        assert_eq!(d.day_notional("bot1", 100), Decimal::from(800));
        // Another order, and the same id in another symbol, are orders of their own.
        assert_eq!(
            decide(&modification("8", 700, 1), 101),
            Ok(Some(Decimal::from(700)))
        );
        let mut eth = modification("7", 600, 1);
        eth.symbol = Some("ETHUSDT".into());
        assert_eq!(
            d.reserve(&modify(&p, &eth, 102)).map(|r| r.notional),
            Err(Denial::new(
                Rule::DailyNotional,
                "order notional 600 would take client bot1 past its daily limit 2000 \
                 (1500 used today)"
            ))
        );
        // A new day starts from nothing, its orders' highest too.
        assert_eq!(
            decide(&modification("7", 500, 1), DAY_MS),
            Ok(Some(Decimal::from(500)))
        );
    }

    /// A regression test (found while reviewing): a client order id may be given again to
    /// a new order once the one that had it is closed, so a highest kept by it let each
    /// new order be moved up to the first one's highest for nothing. A modification that
    /// names its order by the client's id counts in full.
    #[test]
    fn a_modification_by_client_order_id_counts_in_full() {
        let p = daily_limit(10_000);
        let d = Decider::new();
        let by_client_id = || {
            let mut a = modification("0", 1000, 1);
            a.terms.as_mut().unwrap().modifies = Some(OrderRef::ClientOrderId("x".into()));
            a
        };
        for now in 0..3 {
            assert_eq!(
                d.reserve(&modify(&p, &by_client_id(), now))
                    .map(|r| r.notional),
                Ok(Some(Decimal::from(1000)))
            );
        }
    }

    /// A regression test (from a review): a modification handed back (never sent) put its
    /// order's highest back, though another of the same order, decided while it waited,
    /// had counted nothing against that highest and was sent: the order then rested at
    /// it with nothing counted. What a modification counted now stays, sent or not.
    #[test]
    fn a_modification_handed_back_stays_counted() {
        let p = daily_limit(10_000);
        let d = Decider::new();
        let reserve = |a: &Action| d.reserve(&modify(&p, a, 0)).unwrap();
        let waiting = reserve(&modification("7", 900, 1));
        let sent = reserve(&modification("7", 900, 1));
        assert_eq!(sent.notional, Some(Decimal::ZERO));
        d.release(waiting);
        assert_eq!(d.day_notional("bot1", 0), Decimal::from(900));
        assert_eq!(
            reserve(&modification("7", 900, 1)).notional,
            Some(Decimal::ZERO)
        );
        // An order that is no modification is handed back as before.
        let placed = d.reserve(&modify(&p, &futures_order_at(100), 0)).unwrap();
        d.release(placed);
        assert_eq!(d.day_notional("bot1", 0), Decimal::from(900));
    }

    /// A regression test (from a review): what an order fills over its versions is bounded
    /// by its highest quantity at its highest price, not by its highest notional: a price
    /// lowered while the quantity grows fills more. A modification counts what it adds to
    /// that product.
    #[test]
    fn a_modification_counts_what_it_adds_to_the_highest_quantity_at_the_highest_price() {
        let p = daily_limit(100_000);
        let d = Decider::new();
        let counted = |id: &str, price: i64, quantity: i64| {
            let a = modification(id, price, quantity);
            d.reserve(&modify(&p, &a, 0)).unwrap().notional.unwrap()
        };
        assert_eq!(counted("7", 100, 1), Decimal::from(100));
        // 2 at 50 is no larger a notional, but 2 at the highest price, 100, is 100 more.
        assert_eq!(counted("7", 50, 2), Decimal::from(100));
        assert_eq!(counted("7", 100, 2), Decimal::ZERO);
        assert_eq!(counted("7", 25, 4), Decimal::from(200));
    }

    /// A regression test (from a review): an empty `orderId` (the exchange then takes the
    /// client's id) was a key like any other, so one highest served every order moved by
    /// it. Only a number names an order by the exchange's id; `007` is order 7.
    #[test]
    fn only_a_number_names_an_order_by_the_exchange_s_id() {
        let p = daily_limit(100_000);
        let d = Decider::new();
        let counted = |id: &str| {
            let a = modification(id, 1000, 1);
            d.reserve(&modify(&p, &a, 0)).unwrap().notional.unwrap()
        };
        for id in ["", "", "x1", "x1", "-1", "-1", "1e3", "1e3"] {
            assert_eq!(counted(id), Decimal::from(1000), "{id:?}");
        }
        assert_eq!(counted("7"), Decimal::from(1000));
        assert_eq!(counted("007"), Decimal::ZERO);
    }

    /// The audit event of modification `n` (request id `r{n}`), allowed, with `outcome`.
    fn modification_event(
        n: u64,
        notional: i64,
        terms: Option<keygate_core::OrderTerms>,
        orders: Vec<keygate_core::BatchOrder>,
        outcome: Outcome,
    ) -> Event {
        use keygate_core::RequestEvent;
        Event {
            ts_ms: DAY_MS + n,
            body: EventBody::Request(RequestEvent {
                request_id: format!("r{n}"),
                exchange: "binance".into(),
                client: Some("bot1".into()),
                key_of: None,
                account: Some("main".into()),
                source_ip: "127.0.0.1".into(),
                method: "PUT".into(),
                path: "/fapi/v1/order".into(),
                action: ActionKind::Trade,
                symbol: Some("usdm:BTCUSDT".into()),
                side: None,
                client_order_id: None,
                notional: Some(Decimal::from(notional)),
                amount: None,
                asset: None,
                destination: None,
                network: None,
                allowed: true,
                rule: None,
                message: None,
                upstream_status: Some(200),
                latency_us: None,
                outcome,
                validates_only: false,
                previous_key: false,
                forwarded_by: None,
                places_no_order: false,
                orders,
                terms,
            }),
        }
    }

    /// `OrderTerms` of a modification of order `id` to 1 at `price`.
    fn moved_to(id: &str, price: i64) -> Option<keygate_core::OrderTerms> {
        Some(keygate_core::OrderTerms {
            price: Some(Decimal::from(price)),
            quantity: Decimal::ONE,
            modifies: Some(OrderRef::OrderId(id.into())),
        })
    }

    /// After a restart the modifications of the day count as they did.
    #[test]
    fn modifications_read_back_from_the_log_count_as_they_did() {
        use keygate_core::BatchOrder;
        let event = |n, notional, terms, orders| {
            modification_event(n, notional, terms, orders, Outcome::Answered)
        };
        let terms = |id: &str, price: i64| {
            Some(keygate_core::OrderTerms {
                price: Some(Decimal::from(price)),
                quantity: Decimal::ONE,
                modifies: Some(OrderRef::OrderId(id.into())),
            })
        };
        let batched = |id: &str, price: i64| BatchOrder {
            symbol: "usdm:BTCUSDT".into(),
            side: None,
            client_order_id: None,
            terms: terms(id, price),
            notional: None,
        };
        let restarted = Decider::new();
        let now = DAY_MS + 1_000;
        for earlier in [
            event(1, 500, terms("7", 500), Vec::new()),
            event(2, 450, terms("7", 450), Vec::new()),
            event(3, 600, terms("7", 600), Vec::new()),
            // A batch moving order 7 below its highest and order 8 for the first time.
            event(4, 1100, None, vec![batched("7", 400), batched("8", 700)]),
        ] {
            restarted.count_earlier(&earlier, now);
        }
        // 500, then 100 more for order 7; 700 for order 8.
        assert_eq!(restarted.day_notional("bot1", now), Decimal::from(1300));
        let p = daily_limit(10_000);
        let again = modification("8", 700, 1);
        assert_eq!(
            restarted
                .reserve(&modify(&p, &again, now))
                .map(|r| r.notional),
            Ok(Some(Decimal::ZERO))
        );
    }

    /// A modification read back from the log whose outcome says it never reached the
    /// exchange keeps what it counted, as it did live: another of the same order, decided
    /// while it waited, counted nothing against it.
    #[test]
    fn a_modification_read_back_as_never_sent_stays_counted() {
        use keygate_core::OutcomeEvent;
        let restarted = Decider::new();
        let now = DAY_MS + 1_000;
        let unreachable = Event {
            ts_ms: DAY_MS + 3,
            body: EventBody::Outcome(OutcomeEvent {
                request_id: "r1".into(),
                client: Some("bot1".into()),
                upstream_status: None,
                latency_us: 0,
                outcome: Outcome::UpstreamUnreachable,
                order_ids: Vec::new(),
                interrupted: false,
            }),
        };
        for earlier in [
            modification_event(1, 900, moved_to("7", 900), Vec::new(), Outcome::Pending),
            modification_event(2, 900, moved_to("7", 900), Vec::new(), Outcome::Answered),
            unreachable,
        ] {
            restarted.count_earlier(&earlier, now);
        }
        assert_eq!(restarted.day_notional("bot1", now), Decimal::from(900));
    }

    /// A denied modification keeps no highest: the same again would otherwise count
    /// nothing.
    #[test]
    fn a_denied_modification_raises_no_highest() {
        let p = daily_limit(1000);
        let d = Decider::new();
        for now in 0..2 {
            let past = modification("7", 1200, 1);
            assert_eq!(
                rule(d.decide(&modify(&p, &past, now))),
                Some(Rule::DailyNotional)
            );
        }
    }

    /// Two modifications of one order in a batch count as they would one after the other:
    /// each against the highest the one before left, not both against the highest before
    /// the batch (10 at 100, then 1 at 1000, make 10 at 1000).
    #[test]
    fn two_modifications_of_one_order_in_a_batch_count_in_turn() {
        let p = daily_limit(100_000);
        let d = Decider::new();
        d.reserve(&modify(&p, &modification("7", 100, 1), 0))
            .unwrap();
        let batch = Action {
            market: Some(Market::Usdm),
            batch: vec![modification("7", 100, 10), modification("7", 1000, 1)],
            ..Action::new(ActionKind::Trade, "PUT /fapi/v1/batchOrders")
        };
        let notionals = [Some(Decimal::from(1000)), Some(Decimal::from(1000))];
        let request = Request {
            expires_at_ms: None,
            ..batch_request(&p, &batch, &notionals, 0)
        };
        assert_eq!(
            d.reserve(&request).map(|r| r.notional),
            Ok(Some(Decimal::from(9900)))
        );
    }

    /// An order's price is what its modification was decided at (the market's, when
    /// higher than its own), not its own: a sell moved below the market fills there.
    #[test]
    fn a_modification_s_price_is_the_one_it_was_decided_at() {
        let p = daily_limit(100_000);
        let d = Decider::new();
        let at_market = |quantity: i64| {
            let a = modification("7", 500, quantity);
            let request = Request {
                expires_at_ms: None,
                ..request(&p, &a, Some(Decimal::from(1000 * quantity)), 0)
            };
            d.reserve(&request).unwrap().notional.unwrap()
        };
        assert_eq!(at_market(1), Decimal::from(1000));
        // 2 at the market's 1000, not at its own 500.
        assert_eq!(at_market(2), Decimal::from(1000));
    }

    /// Made-up order ids cost little and each would take memory for the day: past
    /// [`MODIFIED_ORDERS_MAX`] orders, a modification of one not kept counts in full.
    /// Order id 0 is none.
    #[test]
    fn orders_past_the_bound_or_numbered_0_count_in_full() {
        let p = daily_limit(i64::MAX);
        let d = Decider::new();
        let counted = |id: &str| {
            let a = modification(id, 1, 1);
            d.reserve(&modify(&p, &a, 0)).unwrap().notional.unwrap()
        };
        for id in ["0", "0", "000"] {
            assert_eq!(counted(id), Decimal::ONE, "{id}");
        }
        for id in 1..=MODIFIED_ORDERS_MAX {
            counted(&id.to_string());
        }
        assert_eq!(counted("1"), Decimal::ZERO);
        let past = (MODIFIED_ORDERS_MAX + 1).to_string();
        assert_eq!(counted(&past), Decimal::ONE);
        assert_eq!(counted(&past), Decimal::ONE);
    }

    #[test]
    fn daily_notional_accumulates_and_resets_at_utc_midnight() {
        let p = Policy {
            rate_per_second: None,
            ..trading_policy()
        };
        let d = Decider::new();
        let btc = order("BTCUSDT");
        let n = Some(Decimal::from(900));
        assert_eq!(rule(d.decide(&request(&p, &btc, n, 0))), None);
        assert_eq!(
            rule(d.decide(&request(&p, &btc, n, 1))),
            Some(Rule::DailyNotional)
        );
        assert_eq!(
            rule(d.decide(&request(&p, &btc, Some(Decimal::from(600)), 2))),
            None
        );
        assert_eq!(
            rule(d.decide(&Request {
                expires_at_ms: None,
                ..request(&p, &btc, n, DAY_MS)
            })),
            None
        );
    }

    #[test]
    fn rate_limits_per_second() {
        let p = trading_policy();
        let d = Decider::new();
        let read = Action::new(ActionKind::Read, "GET /api/v3/account");
        for _ in 0..3 {
            assert_eq!(rule(d.decide(&request(&p, &read, None, 5))), None);
        }
        assert_eq!(
            rule(d.decide(&request(&p, &read, None, 900))),
            Some(Rule::Rate)
        );
        assert_eq!(rule(d.decide(&request(&p, &read, None, 1005))), None);
        let none = Policy {
            rate_per_second: Some(0),
            ..trading_policy()
        };
        assert_eq!(
            rule(d.decide(&request(&none, &read, None, 5000))),
            Some(Rule::Rate)
        );
    }

    #[test]
    fn negative_or_huge_notionals_cannot_move_the_daily_total() {
        let p = Policy {
            rate_per_second: None,
            ..trading_policy()
        };
        let d = Decider::new();
        let btc = order("BTCUSDT");
        let n = |v: Decimal| Some(v);
        assert_eq!(
            rule(d.decide(&request(&p, &btc, n(Decimal::from(-1_000_000)), 0))),
            Some(Rule::Malformed)
        );
        assert_eq!(
            rule(d.decide(&request(&p, &btc, n(Decimal::ZERO), 0))),
            Some(Rule::Malformed)
        );
        assert_eq!(
            rule(d.decide(&request(&p, &btc, n(Decimal::MIN), 0))),
            Some(Rule::Malformed)
        );
        // The day's total is untouched: 1000 + 1000 still goes past 1500.
        assert_eq!(
            rule(d.decide(&request(&p, &btc, n(Decimal::from(1000)), 0))),
            None
        );
        assert_eq!(
            rule(d.decide(&request(&p, &btc, n(Decimal::from(1000)), 1))),
            Some(Rule::DailyNotional)
        );
        let unlimited_order = Policy {
            max_order_notional: None,
            max_daily_notional: Some(Decimal::MAX),
            ..p.clone()
        };
        assert_eq!(
            rule(d.decide(&request(&unlimited_order, &btc, n(Decimal::MAX), 2))),
            Some(Rule::DailyNotional)
        );
    }

    #[test]
    fn a_request_decided_late_does_not_take_the_day_back() {
        let p = Policy {
            rate_per_second: None,
            ..trading_policy()
        };
        let d = Decider::new();
        let btc = order("BTCUSDT");
        let at = |notional: i64, now_ms: u64| {
            rule(d.decide(&Request {
                expires_at_ms: None,
                ..request(&p, &btc, Some(Decimal::from(notional)), now_ms)
            }))
        };
        assert_eq!(at(1000, DAY_MS + 5), None);
        // Stamped just before midnight, decided after the order above: it counts in its
        // own day's totals, and today's stay as they were.
        assert_eq!(at(400, DAY_MS - 5), None);
        assert_eq!(d.day_notional("bot1", DAY_MS - 4), Decimal::from(400));
        assert_eq!(at(400, DAY_MS + 6), None);
        assert_eq!(at(200, DAY_MS + 7), Some(Rule::DailyNotional));
    }

    /// A regression test (found by review): the counters of every client ever seen were
    /// kept for the life of the process; those idle since before yesterday go each day.
    #[test]
    fn clients_idle_since_before_yesterday_are_forgotten() {
        let p = Policy {
            rate_per_second: Some(5),
            ..trading_policy()
        };
        let d = Decider::new();
        let btc = order("BTCUSDT");
        let at = |client: &str, now_ms: u64| {
            rule(d.decide(&Request {
                client,
                expires_at_ms: None,
                ..request(&p, &btc, Some(Decimal::ONE), now_ms)
            }))
        };
        let noon = 10 * DAY_MS + DAY_MS / 2;
        let names: Vec<String> = (0..100).map(|n| format!("old{n}")).collect();
        for name in &names {
            assert_eq!(at(name, noon), None);
        }
        assert_eq!(at("yesterday", noon + DAY_MS), None);
        let counted = || d.counters.lock().unwrap().len();
        assert_eq!(counted(), 101);
        // Two days on, the hundred go; yesterday's client stays, with today's.
        assert_eq!(at("today", noon + 2 * DAY_MS), None);
        assert_eq!(counted(), 2);
        assert_eq!(d.day_notional("yesterday", noon + DAY_MS), Decimal::ONE);
    }

    /// From a review: the counters kept one day and only rolled forward, so a clock
    /// stepped forward past midnight (one request to roll them) and back gave a client
    /// the day's allowance again. The day left is kept, and comes back with the clock.
    /// A clock stepped back also locked a rated client out until it caught up.
    #[test]
    fn a_clock_stepped_forward_and_back_finds_the_days_totals() {
        let p = Policy {
            rate_per_second: Some(5),
            ..trading_policy()
        };
        let d = Decider::new();
        let btc = order("BTCUSDT");
        let at = |notional: i64, now_ms: u64| {
            rule(d.decide(&Request {
                expires_at_ms: None,
                ..request(&p, &btc, Some(Decimal::from(notional)), now_ms)
            }))
        };
        let noon = 10 * DAY_MS + DAY_MS / 2;
        assert_eq!(at(900, noon), None);
        // Thirteen hours on: the next day.
        assert_eq!(at(100, noon + 13 * 3_600_000), None);
        // And back: the day's 900 are there.
        assert_eq!(at(900, noon + 1_000), Some(Rule::DailyNotional));
        assert_eq!(at(600, noon + 2_000), None);

        // Stepped back by hours, a rated client is not refused until the clock catches up.
        let d = Decider::new();
        let at = |now_ms: u64| {
            rule(d.decide(&Request {
                expires_at_ms: None,
                ..request(&p, &btc, Some(Decimal::ONE), now_ms)
            }))
        };
        assert_eq!(at(noon + 13 * 3_600_000), None);
        // The window the clock left goes on from now, with the request it counted.
        for i in 0..4 {
            assert_eq!(at(noon + i), None, "{i}");
        }
        assert_eq!(at(noon + 4), Some(Rule::Rate));
        assert_eq!(at(noon + 1_100), None);
    }
}
