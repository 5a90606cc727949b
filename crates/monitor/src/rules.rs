//! The alert rules: a pass over audit events, in log order, that says which ones a person
//! must see.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::time::Duration;

use keygate_core::{ActionKind, AdminEvent, Event, EventBody, Outcome, RequestEvent, Rule};
use keygate_store::Store;

use crate::{Alert, AlertRule, Error, Severity};

/// The thresholds of the rules that count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Thresholds {
    /// Denials from one client (or, without a known key, one source address) within
    /// [`Thresholds::denial_window`] that make a [`AlertRule::DenialBurst`].
    pub denial_burst: usize,
    /// The window of [`Thresholds::denial_burst`].
    pub denial_window: Duration,
    /// How long an alert about one client (or address) and rule stays quiet after it is
    /// raised, so that a bot stuck in a loop raises one alert, not thousands.
    pub quiet_period: Duration,
    /// How long a client's source address is remembered after its last request. A client
    /// seen from one address that makes a request from an address not seen within this
    /// time raises [`AlertRule::NewSource`].
    pub source_memory: Duration,
    /// How long a symbol a client traded is remembered after its last order there. A
    /// client that traded and places an order in a symbol it has not traded within this
    /// time, and that is not on its symbol list, raises [`AlertRule::NewSymbol`].
    pub symbol_memory: Duration,
}

impl Default for Thresholds {
    fn default() -> Thresholds {
        Thresholds {
            denial_burst: 10,
            denial_window: Duration::from_secs(60),
            quiet_period: Duration::from_secs(600),
            source_memory: Duration::from_secs(7 * 24 * 3600),
            symbol_memory: Duration::from_secs(30 * 24 * 3600),
        }
    }
}

/// Pending requests remembered for their outcome; past this, the oldest half is dropped
/// (an outcome then reads "a request" instead of naming the action).
const MAX_PENDING: usize = 10_000;
/// Sources whose denials are being counted; past this, those with no denial inside the
/// window are dropped.
const MAX_COUNTED_SOURCES: usize = 10_000;
/// How much earlier than the events before it an event may be dated and still be taken
/// as written late rather than as made after a clock was stepped back: the audit writer
/// commits the events someone waits on ahead of the reads and denials queued before
/// them, made at most that bound earlier, and a second for an event stamped before it
/// was queued (a worker thread paused in between).
const LATE_EVENT_MS: u64 = keygate_audit::MAX_PASSED_MS + 1_000;
/// Source addresses, or symbols, remembered per client; past this, the least recently
/// seen is forgotten.
const MAX_SIGHTINGS_PER_CLIENT: usize = 64;
/// Minutes of a client's history a pass must have seen before its rate is judged.
const RATE_WARMUP_MINUTES: u64 = 30;
/// How many times its usual rate a client's requests in one minute must be to raise
/// [`AlertRule::RateSpike`]...
const RATE_SPIKE_FACTOR: f64 = 10.0;
/// ...and how many requests in the minute at least, so that a quiet bot waking up is not
/// news.
const RATE_SPIKE_FLOOR: u64 = 120;
/// The weight of the last minute in a client's usual rate (an exponential moving average
/// over about half an hour).
const RATE_SMOOTHING: f64 = 1.0 / 30.0;

/// The rules and what they remember between events: denials inside the window, when each
/// alert was last raised, the requests waiting for their outcome, and the addresses each
/// client was seen at.
///
/// Time is the events' own (`ts_ms`), so a pass over old events (`keygate alerts list`)
/// raises what a live pass raised, with exceptions: [`AlertRule::NewSource`] and
/// [`AlertRule::NewSymbol`] compare with the addresses and symbols seen since the pass
/// began (since `serve` started, or since the start of what `alerts list` reads), so each
/// pass learns a client's first address and first symbol without raising anything.
///
/// [`AlertRule::NewSymbol`] also needs the clients' symbol lists, which the log tells of
/// only for clients issued or updated since the pass began: the others' come from
/// [`Rules::with_symbol_lists`] ([`symbol_lists`] reads them from the store).
#[derive(Debug, Default)]
pub struct Rules {
    thresholds: Thresholds,
    denials: HashMap<String, VecDeque<u64>>,
    last_raised: HashMap<(AlertRule, String), u64>,
    pending: HashMap<String, (u64, String)>,
    sources: Sightings,
    symbols: Sightings,
    /// The symbol lists of the clients that have one, by client name, as the lists and the
    /// audit events name symbols (`BTCUSDT`, `usdm:BTCUSDT`).
    symbol_lists: HashMap<String, BTreeSet<String>>,
    rates: HashMap<String, Rate>,
}

/// The symbol list of each client in `store` that has one, by client name, for
/// [`Rules::with_symbol_lists`]. A client whose row does not read is left out: for it
/// [`AlertRule::NewSymbol`] raises as for a client that may trade anything, which is noise
/// at worst, never silence.
///
/// The rows are read without the master key, so their seal is not checked here; the
/// gateway checks it when it loads them, and serves no client from a table that does not
/// match it, so a list written into the table by hand to quiet this rule comes with no
/// order to quiet it for.
pub fn symbol_lists(store: &Store) -> Result<HashMap<String, BTreeSet<String>>, Error> {
    Ok(store
        .client_rows()?
        .into_iter()
        .flatten()
        .filter_map(|client| Some((client.name.to_string(), client.policy.symbols?)))
        .collect())
}

/// What each client was seen with (source addresses, or symbols), and when last.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
struct Sightings(HashMap<String, HashMap<String, u64>>);

/// What [`Rules::memory`] keeps of a pass.
#[derive(serde::Serialize, serde::Deserialize)]
struct Memory {
    sources: Sightings,
    symbols: Sightings,
}

impl Sightings {
    /// Whether `client` was seen with as many values as are remembered
    /// ([`MAX_SIGHTINGS_PER_CLIENT`]), after which a new one raises nothing.
    fn is_full(&self, client: &str) -> bool {
        self.0
            .get(client)
            .is_some_and(|seen| seen.len() >= MAX_SIGHTINGS_PER_CLIENT)
    }

    /// Notes that `client` was seen with `what` at `ts_ms`; when the client was seen
    /// before, within `memory`, and never with `what`, returns what it was seen with. A
    /// client seen with [`MAX_SIGHTINGS_PER_CLIENT`] values or more within `memory` (a bot
    /// that trades every market, one behind a pool of addresses) raises nothing: a new
    /// value says nothing of it, and each would be an alert.
    fn note(&mut self, client: &str, what: &str, ts_ms: u64, memory: Duration) -> Option<String> {
        let memory = millis(memory);
        let seen = self.0.entry(client.to_owned()).or_default();
        seen.retain(|_, last| ts_ms.saturating_sub(*last) < memory);
        let is_new =
            !seen.is_empty() && seen.len() < MAX_SIGHTINGS_PER_CLIENT && !seen.contains_key(what);
        let known = is_new.then(|| {
            let mut known: Vec<&str> = seen.keys().map(String::as_str).collect();
            known.sort_unstable();
            known.join(", ")
        });
        if seen.len() >= MAX_SIGHTINGS_PER_CLIENT && !seen.contains_key(what) {
            let oldest = seen
                .iter()
                .min_by_key(|(_, last)| **last)
                .map(|(s, _)| s.clone());
            if let Some(oldest) = oldest {
                seen.remove(&oldest);
            }
        }
        seen.insert(what.to_owned(), ts_ms);
        known
    }
}

impl Sightings {
    /// Forgets what was seen longer than `memory` before the latest sighting of any
    /// client, and the clients left with nothing: [`Sightings::note`] forgets only for
    /// the client it notes, so a client revoked or replaced was kept for good (found by
    /// review), and with it the memory saved every few seconds.
    fn forget_stale(&mut self, memory: Duration) {
        let memory = millis(memory);
        let latest = self
            .0
            .values()
            .flat_map(|seen| seen.values())
            .max()
            .copied();
        let Some(latest) = latest else {
            return;
        };
        self.0.retain(|_, seen| {
            seen.retain(|_, last| latest.saturating_sub(*last) < memory);
            !seen.is_empty()
        });
    }
}

/// A client's requests in the current minute and in each of the last sixty seconds, and
/// its usual rate per minute.
#[derive(Debug)]
struct Rate {
    minute: u64,
    count: u64,
    /// Requests by second, at `second % 60`: the last sixty seconds, through `second`.
    seconds: [u32; 60],
    second: u64,
    usual: f64,
    minutes_seen: u64,
}

impl Default for Rate {
    fn default() -> Rate {
        Rate {
            minute: 0,
            count: 0,
            seconds: [0; 60],
            second: 0,
            usual: 0.0,
            minutes_seen: 0,
        }
    }
}

impl Rate {
    /// Counts a request at `ts_ms`; returns the requests of the last sixty seconds and
    /// the usual rate when they are a spike. Sixty seconds, not the clock's minute, so
    /// that a burst split across the turn of a minute counts whole (found by review: 119
    /// requests before it and 119 after raised nothing).
    fn count(&mut self, ts_ms: u64) -> Option<(u64, f64)> {
        let minute = ts_ms / 60_000;
        if self.minutes_seen == 0 {
            self.minute = minute;
            self.minutes_seen = 1;
        } else if minute > self.minute {
            // The minute that ended, then one empty minute for each skipped (enough of
            // them bring the average to nothing; more change nothing).
            let gap = minute - self.minute;
            if self.minutes_seen == 1 {
                // The first whole minute is the first estimate, not a step up from zero.
                self.usual = self.count as f64;
            } else {
                self.usual += RATE_SMOOTHING * (self.count as f64 - self.usual);
            }
            for _ in 1..gap.min(240) {
                self.usual -= RATE_SMOOTHING * self.usual;
            }
            self.minutes_seen = self.minutes_seen.saturating_add(gap);
            self.minute = minute;
            self.count = 0;
        }
        self.count += 1;
        let second = ts_ms / 1000;
        if second > self.second {
            // The seconds since the last request had none.
            for passed in (self.second + 1..=second).take(60) {
                self.seconds[(passed % 60) as usize] = 0;
            }
            self.second = second;
        } else if self.second - second >= 60 {
            // A minute or more before the last one counted: a clock that ran ahead and was
            // set back. The count starts again from here, rather than leave every request
            // until the clock is back there uncounted (found by review).
            self.seconds = [0; 60];
            self.second = second;
        }
        // One written late (by up to the audit writer's reordering) is counted in its own
        // second.
        let at = &mut self.seconds[(second % 60) as usize];
        *at = at.saturating_add(1);
        let last_sixty_s: u64 = self.seconds.iter().map(|&n| u64::from(n)).sum();
        let threshold = (RATE_SPIKE_FACTOR * self.usual).max(RATE_SPIKE_FLOOR as f64);
        (self.minutes_seen > RATE_WARMUP_MINUTES && last_sixty_s as f64 > threshold)
            .then_some((last_sixty_s, self.usual))
    }
}

impl Rules {
    /// Rules with these thresholds and an empty memory.
    pub fn new(thresholds: Thresholds) -> Rules {
        Rules {
            thresholds,
            ..Rules::default()
        }
    }

    /// What the pass has seen each client with (its source addresses and symbols, and
    /// when last), for [`Rules::remembering`] in the next pass over later events: a
    /// monitor started again must not learn a stranger's address as a client's first.
    /// What is older than the memory's length before the latest sighting is forgotten.
    pub fn memory(&mut self) -> Vec<u8> {
        self.sources.forget_stale(self.thresholds.source_memory);
        self.symbols.forget_stale(self.thresholds.symbol_memory);
        let memory = serde_json::json!({"sources": &self.sources, "symbols": &self.symbols});
        memory.to_string().into_bytes()
    }

    /// These rules, knowing what an earlier pass saw ([`Rules::memory`]); `memory` that
    /// does not decode is no memory, and the pass learns afresh.
    pub fn remembering(mut self, memory: &[u8]) -> Rules {
        if let Ok(Memory { sources, symbols }) = serde_json::from_slice(memory) {
            self.sources = sources;
            self.symbols = symbols;
        }
        self
    }

    /// These rules, knowing the symbol list of each client in `lists` (client name, and
    /// the symbols as a client's list names them): an order in a symbol on its client's
    /// list raises no [`AlertRule::NewSymbol`]. Meant for the clients as they stand when
    /// the pass begins ([`symbol_lists`]); the `client.issue` and `client.update` events
    /// the pass reads then replace a client's list, or lift it, as they did in the store.
    pub fn with_symbol_lists(
        mut self,
        lists: impl IntoIterator<Item = (String, BTreeSet<String>)>,
    ) -> Rules {
        self.symbol_lists.extend(lists);
        self
    }

    /// The alerts that event `seq` raises, given every event before it that was passed in.
    pub fn evaluate(&mut self, seq: u64, event: &Event) -> Vec<Alert> {
        let mut alerts = Vec::new();
        let mut raise = |severity, rule, summary: String, request: Option<&RequestEvent>| {
            alerts.push(Alert {
                severity,
                rule,
                summary: printable(&summary),
                // `key_of` names whose API key an unverified request presented, not who
                // sent it: an API key is no secret. Only an alert about that key's use (a
                // key a rotation retired) is its client's; a burst of unknown keys, or a
                // withdrawal whose signature did not verify, names no client, or a
                // stranger with a bot's API key could raise alerts in that bot's name.
                client: request
                    .and_then(|r| {
                        let is_about_the_key = rule == AlertRule::DeadKeyUsed;
                        let whose_key = r.key_of.clone().filter(|_| is_about_the_key);
                        r.client.clone().or(whose_key)
                    })
                    .or_else(|| event.client().map(str::to_owned)),
                account: request.and_then(|r| r.account.clone()),
                source_ip: request.map(|r| r.source_ip.clone()),
                event_seq: seq,
                ts_ms: event.ts_ms,
            })
        };
        match &event.body {
            EventBody::Request(request) => {
                self.remember_pending(event.ts_ms, request);
                for (severity, rule, summary) in self.request_alerts(event.ts_ms, request) {
                    raise(severity, rule, summary, Some(request));
                }
            }
            EventBody::Outcome(outcome) => {
                let action = self.pending.remove(&outcome.request_id).map(|(_, a)| a);
                if outcome.outcome == Outcome::Unknown {
                    let what = action.unwrap_or_else(|| "a request".to_owned());
                    let how = match outcome.upstream_status {
                        _ if outcome.interrupted => "had no outcome recorded when keygate \
                                                     stopped (it crashed or was killed before \
                                                     the answer, or its log could not be \
                                                     written)"
                            .to_owned(),
                        Some(status) => format!(
                            "was answered HTTP {status} by the exchange, which does not know \
                             whether it executed"
                        ),
                        None => NO_COMPLETE_ANSWER.to_owned(),
                    };
                    raise(
                        Severity::Critical,
                        AlertRule::OutcomeUnknown,
                        format!(
                            "{what} of client {} {how}; it may have executed: check the \
                             exchange (request {})",
                            outcome.client.as_deref().unwrap_or("?"),
                            outcome.request_id
                        ),
                        None,
                    );
                }
            }
            EventBody::Admin(admin) => {
                self.learn_symbol_list(admin);
                let (severity, summary) = admin_alert(admin);
                raise(severity, AlertRule::AdminChange, summary, None);
            }
            EventBody::Lost(lost) => {
                // What came of forwarded requests, lost with the log unwritable (a full
                // disk: found by review, told only as lost reads and denials, and as
                // unknown only after a restart): each may have executed.
                if !lost.outcomes.is_empty() {
                    let what: Vec<String> = lost
                        .outcomes
                        .iter()
                        .map(|id| {
                            let action = self.pending.remove(id).map(|(_, a)| a);
                            format!(
                                "{} (request {id})",
                                action.as_deref().unwrap_or("a request")
                            )
                        })
                        .collect();
                    // A record names the first of them only: say when there may be more.
                    let how_many = if what.len() < keygate_core::LostEvents::MAX_OUTCOMES {
                        what.len().to_string()
                    } else {
                        format!("at least {} (the first named here)", what.len())
                    };
                    raise(
                        Severity::Critical,
                        AlertRule::OutcomeUnknown,
                        format!(
                            "what came of {how_many} forwarded request(s) could not be recorded \
                             (the audit log could not be written): {}; each may have executed: \
                             check the exchange",
                            what.join(", ")
                        ),
                        None,
                    );
                }
                // Someone holding a client's key tried to move funds: told as a denied
                // withdrawal is, once per quiet period of that key's, whatever quiets the
                // loss itself.
                for (holder, n) in &lost.funds_denied {
                    let quiet_key = format!("lost {holder}");
                    if self.is_due(AlertRule::Withdrawal, &quiet_key, event.ts_ms) {
                        raise(
                            Severity::Critical,
                            AlertRule::Withdrawal,
                            format!(
                                "{n} withdrawal(s) or transfer(s) presenting the key of client \
                                 {} were denied, and counted, not kept (the audit log fell \
                                 behind): someone holding that key tried to move funds; \
                                 `keygate alerts list` cannot show them",
                                named(holder)
                            ),
                            None,
                        );
                    }
                }
                // A stall or a flood writes a record every batch: one alert per quiet
                // period, and per client whose events were lost, so that a flood of
                // requests without a valid key does not quiet the loss of a client's own
                // (found by review: one period for all).
                let mut due =
                    lost.clients.is_empty() && self.is_due(AlertRule::EventsLost, "", event.ts_ms);
                for client in lost.clients.keys() {
                    let due_for_client = self.is_due(AlertRule::EventsLost, client, event.ts_ms);
                    due = due || due_for_client;
                }
                if due {
                    raise(
                        Severity::Critical,
                        AlertRule::EventsLost,
                        lost_summary(lost),
                        None,
                    );
                }
            }
        }
        alerts
    }

    fn request_alerts(
        &mut self,
        ts_ms: u64,
        request: &RequestEvent,
    ) -> Vec<(Severity, AlertRule, String)> {
        let mut alerts = Vec::new();
        let who = who(request);
        // Refused after its pending event was written (and told as being sent).
        let stopped = !request.allowed && self.pending.remove(&request.request_id).is_some();
        if let Some(alert) = funds_movement(request, stopped) {
            // Every forwarded one is told. A key that tries again and again after a
            // denial (a script, or a thief finding out what the key may do) would flood
            // the receivers with critical alerts: the first tells, the rest are in the log.
            // One held back while the exchange asked keygate to back off was allowed by
            // policy: it takes no denial's turn. One told as being sent and then stopped
            // is told as stopped, whatever came before: else the word it was sent stands.
            let held_back = request.rule == Some(Rule::ExchangeBackOff);
            let (quiet_key, _) = quiet_group(request, &who);
            if request.allowed || held_back || stopped || self.is_due(alert.1, &quiet_key, ts_ms) {
                alerts.push(alert);
            }
        }
        // A request refused before its own policy (stale, replayed, from an address or of a
        // status its client may not use) may be anyone's copy of one of the client's:
        // counted apart from the client's own, so that whoever holds one captured request
        // cannot raise its usual rate, nor quiet the bursts of its own denials (found by
        // review).
        let maybe_copy = !request.allowed && request.rule.is_some_and(may_be_a_copy);
        if let Some(client) = request.client.as_ref().filter(|_| !maybe_copy) {
            let spike = self.rates.entry(client.clone()).or_default().count(ts_ms);
            if let Some((count, usual)) = spike {
                if self.is_due(AlertRule::RateSpike, client, ts_ms) {
                    alerts.push((
                        Severity::Warning,
                        AlertRule::RateSpike,
                        format!(
                            "client {client} sent about {count} requests in the last minute, \
                             against {usual:.0} a minute usually"
                        ),
                    ));
                }
            }
        }
        // Only what could have changed something: a read or public call that got no
        // answer executed nothing, and paged as critical, every bot polling through an
        // exchange's blip (and anyone without a key) buried the orders' alerts (found by
        // review).
        if request.outcome == Outcome::Unknown && request.action.is_sensitive() {
            alerts.push((
                Severity::Critical,
                AlertRule::OutcomeUnknown,
                format!(
                    "{} by {who} {NO_COMPLETE_ANSWER}; it may have executed: check the \
                     exchange (request {})",
                    describe(request),
                    request.request_id
                ),
            ));
        }
        if request.allowed {
            if let Some(client) = &request.client {
                let memory = self.thresholds.source_memory;
                let source = source_network(&request.source_ip);
                let was_full = self.sources.is_full(client);
                if let Some(known) = self.sources.note(client, &source, ts_ms, memory) {
                    alerts.push((
                        Severity::Warning,
                        AlertRule::NewSource,
                        format!(
                            "client {client} used from {} for the first time; it was seen \
                             from {known}: is its key on another machine?",
                            request.source_ip
                        ),
                    ));
                }
                // Past the addresses remembered a new one raises nothing: told once, as
                // for symbols below (found by review: the silence was told of symbols
                // alone).
                if !was_full && self.sources.is_full(client) {
                    alerts.push((
                        Severity::Warning,
                        AlertRule::NewSource,
                        format!(
                            "client {client} has been used from {MAX_SIGHTINGS_PER_CLIENT} \
                             addresses (an IPv6 /64 counted as one) within {}: new_source \
                             tells of no more of its new ones until some are that old (a \
                             bot behind a pool of addresses needs an --allow-ip list that \
                             names them)",
                            within(memory)
                        ),
                    ));
                }
                // Each order of a batch is an order in its symbol, as if it came alone. A
                // trade that places no order (a USD-M setting such as the margin type, a
                // test order) trades nothing: found by review, a margin type set on a
                // symbol was told as the client's first trade in it.
                let places_orders = !request.places_no_order && !request.validates_only;
                let orders = match request.action {
                    ActionKind::Trade if places_orders => request.named_orders(),
                    _ => Vec::new(),
                };
                let mut symbols: Vec<&str> = Vec::new();
                for order in &orders {
                    let symbol = order.symbol.as_str();
                    if symbols.contains(&symbol) {
                        continue;
                    }
                    symbols.push(symbol);
                    let memory = self.thresholds.symbol_memory;
                    // No quiet period: each symbol is new once, and a quiet period per
                    // client hid a second new symbol traded soon after the first.
                    let was_full = self.symbols.is_full(client);
                    let known = self.symbols.note(client, symbol, ts_ms, memory);
                    let became_full = !was_full && self.symbols.is_full(client);
                    // A symbol on the client's own list is one the operator allowed it:
                    // expected, and an alert there taught operators to ignore this one.
                    // (A client with a list cannot trade off it at all, so the market a
                    // stolen key would pump is closed to it anyway.) The symbol is still
                    // noted above, so that once a list is lifted, the client's history
                    // is known.
                    let is_listed = self
                        .symbol_lists
                        .get(client)
                        .is_some_and(|list| list.contains(symbol));
                    if let Some(known) = known.filter(|_| !is_listed) {
                        // A symbol is the bot's text (`KEYGATE-UNFREEZE.COM`, twenty
                        // characters Binance's symbols may have): shown as a name is, so
                        // that no chat makes it a link (found by review).
                        let known: Vec<String> = known.split(", ").map(named).collect();
                        alerts.push((
                            Severity::Warning,
                            AlertRule::NewSymbol,
                            format!(
                                "client {client} traded {} for the first time; it traded {} \
                                 before: is its key in other hands?",
                                named(symbol),
                                known.join(", ")
                            ),
                        ));
                    }
                    // Past the symbols remembered a new one raises nothing, which orders
                    // in symbol after symbol (refused ones, batches of them, IOC orders
                    // that expire: all free) could bring about before the one that
                    // matters (found by review): that silence is told, once.
                    // A client with a list cannot trade off it: nothing is left unsaid.
                    if became_full && !self.symbol_lists.contains_key(client) {
                        alerts.push((
                            Severity::Warning,
                            AlertRule::NewSymbol,
                            format!(
                                "client {client} has traded {MAX_SIGHTINGS_PER_CLIENT} symbols \
                                 within {}: new_symbol tells of no more of its new ones \
                                 until some are that old (a bot that trades every market \
                                 needs a symbol list; else orders were sent to fill this)",
                                within(memory)
                            ),
                        ));
                    }
                }
            }
            return alerts;
        }
        let rule = request.rule;
        let from = &request.source_ip;
        let single = match rule {
            // A key no client has any more (a rotation retired it): the event names whose
            // it was in its message, not as its client, since its signature went unchecked.
            Some(Rule::Expired) if request.client.is_none() => Some((
                AlertRule::DeadKeyUsed,
                format!(
                    "{} was used from {from}: whoever sent this holds it (its signature \
                     can no longer be checked)",
                    request.message.as_deref().unwrap_or("a retired key")
                ),
            )),
            Some(Rule::Revoked | Rule::Expired | Rule::Frozen) => Some((
                AlertRule::DeadKeyUsed,
                format!(
                    "the {} key of {who} was used from {from}: whoever sent this still holds it",
                    rule.map_or("", Rule::as_str)
                ),
            )),
            Some(Rule::SourceIp) if request.client.is_some() => Some((
                AlertRule::ForeignSource,
                format!("the key of {who} was used from {from}, which is not on its allow list"),
            )),
            Some(Rule::Replay) => Some((
                AlertRule::Replay,
                format!("a request of {who} from {from} replayed a signature already used"),
            )),
            _ => None,
        };
        if let Some((alert_rule, summary)) = single {
            // A key no client has any more is told apart by whose it was, which its
            // event names in its message (`who` is then the sender's address alone).
            let whose = match &request.client {
                Some(_) => who.clone(),
                None => request.message.clone().unwrap_or_else(|| who.clone()),
            };
            // Per sender, an IPv6 one standing for its /64 (found by review: one retired
            // key sent from a /64's many addresses raised an alert for each, filling the
            // storm cap that other clients' alerts share).
            let key = format!("{whose} {}", source_network(from));
            if self.is_due(alert_rule, &key, ts_ms) {
                alerts.push((Severity::Warning, alert_rule, summary));
            }
        }
        if counts_toward_bursts(rule) {
            // Requests with no known key count together, whatever their source: counted
            // per address, one sender with many addresses raised an alert for each, and
            // those queued ahead of alerts that matter.
            let burst = match (&request.client, rule) {
                (Some(_), _) if maybe_copy => {
                    format!("{who} refused before its policy (signature, window, replay, status or address)")
                }
                (Some(_), _) => who.clone(),
                // Refused before any key is read: a trusted proxy whose X-Forwarded-For
                // names no source (none sent, or a hop it cannot read), a proxy
                // misconfigured rather than a stranger trying keys (found by review:
                // told as "unknown keys").
                (None, Some(Rule::SourceIp)) => {
                    "a trusted proxy whose X-Forwarded-For names no source".to_owned()
                }
                (None, _) => "unknown keys".to_owned(),
            };
            let count = self.count_denial(&burst, ts_ms);
            if count >= self.thresholds.denial_burst
                && self.is_due(AlertRule::DenialBurst, &burst, ts_ms)
            {
                alerts.push((
                    Severity::Warning,
                    AlertRule::DenialBurst,
                    format!(
                        "{count} requests of {burst} denied within {}s, the last from {from} by \
                         rule {}",
                        self.thresholds.denial_window.as_secs(),
                        rule.map_or("?", Rule::as_str)
                    ),
                ));
            }
        }
        alerts
    }

    /// Keeps the symbol lists as the log changes them: `client.issue` records the client's
    /// policy, `client.update` the policy before and after, each with its list (`null`
    /// for none). A list that does not read counts as none, so that the rule raises for
    /// that client rather than keep quiet.
    fn learn_symbol_list(&mut self, admin: &AdminEvent) {
        let policy = match admin.change.as_str() {
            "client.issue" => &admin.detail["policy"],
            "client.update" => &admin.detail["to"],
            _ => return,
        };
        match serde_json::from_value::<Option<BTreeSet<String>>>(policy["symbols"].clone()) {
            Ok(Some(list)) => {
                self.symbol_lists.insert(admin.target.clone(), list);
            }
            Ok(None) | Err(_) => {
                self.symbol_lists.remove(&admin.target);
            }
        }
    }

    /// Whether `rule` may be raised again for `key` at `ts_ms`; if so, notes that it is.
    ///
    /// An event dated more than [`LATE_EVENT_MS`] before the last time the alert was
    /// raised re-arms it: the clock was stepped back (a host that ran a day ahead until
    /// NTP corrected it), and counting that as inside the quiet period would silence the
    /// alert for the length of the step. One dated a little before is an event written
    /// late (the audit writer commits orders' events ahead of the reads and denials
    /// queued before them), inside the quiet period.
    fn is_due(&mut self, rule: AlertRule, key: &str, ts_ms: u64) -> bool {
        let quiet = millis(self.thresholds.quiet_period);
        let is_quiet = |last: u64| {
            last <= ts_ms.saturating_add(LATE_EVENT_MS) && ts_ms.saturating_sub(last) < quiet
        };
        match self.last_raised.get(&(rule, key.to_owned())) {
            Some(&last) if is_quiet(last) => false,
            _ => {
                self.last_raised.insert((rule, key.to_owned()), ts_ms);
                if self.last_raised.len() > MAX_COUNTED_SOURCES {
                    self.last_raised.retain(|_, &mut last| is_quiet(last));
                    forget_oldest(&mut self.last_raised, MAX_COUNTED_SOURCES / 2);
                }
                true
            }
        }
    }

    /// Notes a denial of `who` at `ts_ms`; returns how many fell inside the window.
    fn count_denial(&mut self, who: &str, ts_ms: u64) -> usize {
        let window = millis(self.thresholds.denial_window);
        let inside = |at: u64| ts_ms.saturating_sub(at) < window;
        if self.denials.len() > MAX_COUNTED_SOURCES && !self.denials.contains_key(who) {
            self.denials
                .retain(|_, times| times.back().is_some_and(|&at| inside(at)));
        }
        let times = self.denials.entry(who.to_owned()).or_default();
        times.push_back(ts_ms);
        while times.front().is_some_and(|&at| !inside(at)) {
            times.pop_front();
        }
        // Only the count matters: keep no more times than the threshold needs.
        while times.len() > self.thresholds.denial_burst.max(1) {
            times.pop_front();
        }
        times.len()
    }

    /// Remembers a request written before forwarding, to name it when its outcome comes.
    fn remember_pending(&mut self, ts_ms: u64, request: &RequestEvent) {
        if request.outcome != Outcome::Pending {
            return;
        }
        if self.pending.len() >= MAX_PENDING {
            let mut ages: Vec<u64> = self.pending.values().map(|(at, _)| *at).collect();
            ages.sort_unstable();
            let median = ages[ages.len() / 2];
            self.pending.retain(|_, (at, _)| *at > median);
        }
        self.pending
            .insert(request.request_id.clone(), (ts_ms, describe(request)));
    }
}

/// Whether a pass that starts at the event that raised an alert of `rule` raises it
/// again: so for the rules that look at that event alone (a quiet period starts afresh
/// with the pass). Not so for those that need the events before it (a burst, a new
/// address or symbol, a rate, each judged against what the pass has seen), nor for alerts
/// no event raises (what an exchange or the gateway says, a test).
///
/// The monitor relies on it when it stops with alerts undelivered: it keeps its place
/// before the event of the first that this says is raised again.
pub(crate) fn is_raised_again_by_its_event(rule: AlertRule) -> bool {
    match rule {
        AlertRule::Withdrawal
        | AlertRule::Transfer
        | AlertRule::OutcomeUnknown
        | AlertRule::DeadKeyUsed
        | AlertRule::ForeignSource
        | AlertRule::Replay
        | AlertRule::AdminChange
        | AlertRule::EventsLost
        | AlertRule::LogUnreadable => true,
        AlertRule::DenialBurst
        | AlertRule::NewSource
        | AlertRule::NewSymbol
        | AlertRule::RateSpike
        | AlertRule::UnreconciledWithdrawal
        | AlertRule::UnreconciledOrder
        | AlertRule::ReconcileFailed
        | AlertRule::AuditUnavailable
        | AlertRule::ReloadFailed
        | AlertRule::ExchangeBackOff
        | AlertRule::TlsCertificate
        | AlertRule::DiskLow
        | AlertRule::Test => false,
    }
}

/// The denials of a withdrawal or transfer that share a quiet period with `request`'s,
/// sent by `who`: the key the period is kept under, and the words that say which denials
/// it covers. Apart from the client's own decided denials: one whose signature did not
/// verify, per key it presented and rule (not per address, or a stranger with many
/// addresses would page without end); one refused before the replay check, which may be a
/// captured copy of the client's (found by review: a stale copy resent every quiet period
/// silenced the client's own).
fn quiet_group(request: &RequestEvent, who: &str) -> (String, String) {
    match (&request.client, &request.key_of, request.rule) {
        (None, Some(name), rule) => (
            format!("key of {name} {}", rule.map_or("?", Rule::as_str)),
            rule.map_or_else(String::new, |rule| format!(" by rule {}", rule.as_str())),
        ),
        (Some(_), _, Some(rule)) if may_be_a_copy(rule) => (
            format!("{who} before its replay check"),
            " by rules a copy of its request may meet (authentication, replay, \
             replay_cache_full, its standing)"
                .to_owned(),
        ),
        _ => (who.to_owned(), " under its policy".to_owned()),
    }
}

/// Whether a request denied by `rule` may be a copy of a client's request rather than
/// the client's own: refused before the replay cache vouched that its signature was used
/// for the first time (a stale or replayed capture, one sent from elsewhere inside its
/// window).
fn may_be_a_copy(rule: Rule) -> bool {
    matches!(
        rule,
        Rule::Authentication
            | Rule::Replay
            | Rule::ReplayCacheFull
            | Rule::Expired
            | Rule::Revoked
            | Rule::Frozen
            | Rule::SourceIp
    )
}

/// What an unknown outcome without a status means: the request was sent, and no whole
/// answer came back (it timed out, the connection broke off, the answer could not be
/// read; serve's log says which).
const NO_COMPLETE_ANSWER: &str = "got no complete answer from the exchange after it was sent \
                                  (timed out, broken off or unreadable: serve's log says which)";

/// A withdrawal or transfer: every one forwarded is worth knowing about, and one denied
/// is someone trying to move funds that policy keeps where they are. One held back while
/// the exchange asks the address to back off was allowed by policy, and is told as one
/// forwarded would be, saying that it was not.
///
/// One sent with a key no client has is no one's: it counts toward the burst of unknown
/// keys, and raises nothing of its own (anyone who reaches the listener can send one, from
/// as many addresses as they have). One sent with a client's API key and a signature that
/// does not verify is someone holding that key trying to move funds: told.
fn funds_movement(request: &RequestEvent, stopped: bool) -> Option<(Severity, AlertRule, String)> {
    let rule = match request.action {
        ActionKind::Withdraw => AlertRule::Withdrawal,
        ActionKind::Transfer => AlertRule::Transfer,
        _ => return None,
    };
    if request.client.is_none() && request.key_of.is_none() {
        return None;
    }
    // A convert quote allowed moved nothing (found by review: ten quotes raised ten
    // transfers, which filled the cap ahead of a real one).
    if request.allowed && request.validates_only {
        return None;
    }
    let who = who(request);
    let what = describe(request);
    // A transfer is bounded by scope alone (a convert, a payment to a sub-account), and
    // reconciliation does not list them: each one allowed reaches a webhook at its
    // default severity, as a withdrawal does (found by review: at info it reached none).
    let allowed_severity = Severity::Warning;
    if request.rule == Some(Rule::ExchangeBackOff) {
        return Some((
            allowed_severity,
            rule,
            format!(
                "{what} for {who} not sent: the exchange asked keygate's address to back off \
                 (rule exchange_back_off)"
            ),
        ));
    }
    if stopped {
        return Some((
            Severity::Critical,
            rule,
            format!(
                "{what} allowed for {who} was stopped before it was sent: denied by rule {}",
                request.rule.map_or("?", Rule::as_str)
            ),
        ));
    }
    Some(if request.allowed {
        (
            allowed_severity,
            rule,
            // Raised from the event written before the request is sent: a freeze or
            // its window running out may still stop it, which a denial then tells.
            format!("{what} allowed for {who}, being sent to the exchange"),
        )
    } else {
        (
            Severity::Critical,
            rule,
            format!(
                "{what} by {who} from {} denied by rule {} (more denied by {who}{} within \
                 the quiet period are not alerted on; `keygate audit query --decision \
                 denied` lists them)",
                request.source_ip,
                request.rule.map_or("?", Rule::as_str),
                // The denials its quiet period covers (found by review: the text said
                // every denial, which is no longer so).
                quiet_group(request, &who).1
            ),
        )
    })
}

/// Denials that say something about the client; a client that hung up, public data or a
/// read paused to keep weight for orders (the weight is the address's, spent by every
/// client), a request held back while the exchange asks the address to back off or
/// cannot be reached, a read held back while others' answers pile up, or a cancel of an
/// order the exchange no longer has (a stop that triggered), does not.
fn counts_toward_bursts(rule: Option<Rule>) -> bool {
    !matches!(
        rule,
        Some(
            Rule::ClientGone
                | Rule::WeightReserved
                | Rule::ExchangeBackOff
                | Rule::ExchangeUnreachable
                | Rule::AnswerBacklog
                | Rule::NoSuchOrder
        )
    )
}

/// An operator's change: `keygate panic` is critical; a change that lets a client move
/// funds it could not move before (a client issued with, or updated to, the withdraw or
/// transfer scope; one that may withdraw given a new address, a daily withdrawal limit
/// lifted or raised, or one that may move funds a wider allow list) is a warning, as is a
/// frozen client let go again (unless it expired), an expired one given a new expiry, or
/// an account whose requests go to a host of the operator's choosing, or the log's
/// checkpoints moved to another file or no longer kept; the rest is information.
fn admin_alert(admin: &AdminEvent) -> (Severity, String) {
    // The money-moving scopes of the policy at `policy` in the event's detail.
    let moving = |policy: &serde_json::Value| -> Vec<&'static str> {
        let scopes = policy["scopes"].as_array();
        ["withdraw", "transfer"]
            .into_iter()
            .filter(|s| scopes.is_some_and(|all| all.iter().any(|a| a == s)))
            .collect()
    };
    let summary = format!("{} by {} on {}", admin.change, admin.actor, admin.target);
    match admin.change.as_str() {
        "vault.panic" => {
            let frozen: Vec<&str> = admin.detail["frozen_clients"]
                .as_array()
                .map(|names| names.iter().filter_map(|n| n.as_str()).collect())
                .unwrap_or_default();
            let summary = match frozen.len() {
                0 => format!("{summary}: no active client to freeze"),
                n => format!("{summary}: froze {n} client(s): {}", frozen.join(", ")),
            };
            (Severity::Critical, summary)
        }
        "client.update" | "client.issue" => {
            let before = moving(&admin.detail["from"]);
            let after = match admin.change.as_str() {
                "client.issue" => moving(&admin.detail["policy"]),
                _ => moving(&admin.detail["to"]),
            };
            let widened = match admin.change.as_str() {
                "client.update" => widened(&admin.detail["from"], &admin.detail["to"], &after),
                _ => Vec::new(),
            };
            let granted: Vec<&str> = after.into_iter().filter(|s| !before.contains(s)).collect();
            // Each told (found by review: an update that both granted a scope and widened
            // where funds may go named only the grant).
            let mut told = Vec::new();
            if admin.detail["revives_expired"] == true {
                told.push("it had expired, and its key works again".to_owned());
            }
            if !granted.is_empty() {
                told.push(format!("grants {}", granted.join(" and ")));
            }
            if !widened.is_empty() {
                told.push(format!("widens {}", widened.join(", ")));
            }
            if told.is_empty() {
                (Severity::Info, summary)
            } else {
                (Severity::Warning, format!("{summary}: {}", told.join("; ")))
            }
        }
        // Requests signed with the real key go there, not to the exchange (found by
        // review: told as information, which no sink gets by default).
        "account.add" if !admin.detail["upstream"].is_null() => (
            Severity::Warning,
            format!(
                "{summary}: its requests go to {}, not to the exchange's own hosts",
                admin.detail["upstream"].as_str().unwrap_or("another host")
            ),
        ),
        "client.unfreeze" if admin.detail["expired_at"].is_string() => (
            Severity::Info,
            format!(
                "{summary}: it expired at {}, and its key is still refused",
                admin.detail["expired_at"].as_str().unwrap_or_default()
            ),
        ),
        "client.unfreeze" => {
            let also = match (
                admin.detail["previous_key"].as_str(),
                admin.detail["previous_key_until"].as_str(),
            ) {
                (Some(previous), Some(until)) => format!(
                    ", and so does its key before the last rotation ({previous}) until {until}"
                ),
                _ => String::new(),
            };
            (
                Severity::Warning,
                format!("{summary}: its key works again{also}"),
            )
        }
        // What catches a vault put back from an older copy, moved or no longer kept; the
        // first record of a file is information.
        "audit.checkpoint_file" => {
            match (admin.detail["from"].as_str(), admin.detail["path"].as_str()) {
                (Some(from), Some(path)) => (
                    Severity::Warning,
                    format!("{summary}: the log's checkpoints are now kept in {path}, not {from}"),
                ),
                (Some(from), None) => (
                    Severity::Warning,
                    format!(
                        "{summary}: the log's checkpoints are kept in no file any more (they were \
                     in {from})"
                    ),
                ),
                _ => (Severity::Info, summary),
            }
        }
        _ => (Severity::Info, summary),
    }
}

/// What a client update widens of where a client that may move funds (its `scopes` after
/// the change, `moving`) can send them, from policy `from` to policy `to` (as events
/// record them): a withdrawal address added, a daily withdrawal limit lifted or raised
/// (one on an asset not limited before lets that asset out), an address added to the
/// allow list. Found by review: each was told as information, which no sink gets by
/// default.
fn widened(from: &serde_json::Value, to: &serde_json::Value, moving: &[&str]) -> Vec<&'static str> {
    let added = |field: &str| {
        let before = from[field].as_array();
        to[field].as_array().is_some_and(|after| {
            after
                .iter()
                .any(|item| before.is_none_or(|before| !before.contains(item)))
        })
    };
    let mut widened = Vec::new();
    if moving.contains(&"withdraw") {
        if added("withdrawal_addresses") {
            widened.push("its withdrawal addresses");
        }
        let limit = |policy: &serde_json::Value| {
            policy["max_daily_withdrawal"]
                .as_object()
                .cloned()
                .unwrap_or_default()
        };
        let (before, after) = (limit(from), limit(to));
        let amount = |value: &serde_json::Value| {
            value
                .as_str()
                .and_then(|text| text.parse::<rust_decimal::Decimal>().ok())
        };
        let raised = after.iter().any(|(asset, allowed)| {
            before
                .get(asset)
                .is_none_or(|was| amount(was).is_none_or(|was| amount(allowed) > Some(was)))
        });
        if !before.is_empty() && (after.is_empty() || raised) {
            widened.push("its daily withdrawal limits");
        }
    }
    if !moving.is_empty() && added("allow_ips") {
        widened.push("the addresses it may call from");
    }
    widened
}

/// Keeps the `keep` most recent of `last_raised`: past [`MAX_COUNTED_SOURCES`] keys all
/// inside their quiet period (a flood of senders, each from an address of its own), the
/// oldest are forgotten, so that their alerts may come again (never fewer alerts), and
/// memory and the cost of the next inserts stay bounded.
fn forget_oldest(last_raised: &mut HashMap<(AlertRule, String), u64>, keep: usize) {
    let Some(excess) = last_raised.len().checked_sub(keep).filter(|&n| n > 0) else {
        return;
    };
    let mut by_age: Vec<((AlertRule, String), u64)> = last_raised.drain().collect();
    by_age.select_nth_unstable_by_key(excess - 1, |(_, at)| *at);
    last_raised.extend(by_age.into_iter().skip(excess));
}

/// `memory` in the words of a summary: whole hours under a day, whole days above.
fn within(memory: Duration) -> String {
    let hours = memory.as_secs() / 3600;
    match hours / 24 {
        0 => format!("{hours} hour(s)"),
        days => format!("{days} day(s)"),
    }
}

/// The network a source address stands for in [`AlertRule::NewSource`]
/// ([`keygate_core::source_network`]): a host's IPv6 privacy addresses change within its
/// /64 every day or so, and each was a new source; past 64 of them, evicted ones came back
/// as new again and again.
fn source_network(source_ip: &str) -> String {
    use std::net::IpAddr;
    match source_ip
        .parse::<IpAddr>()
        .map(keygate_core::source_network)
    {
        Ok(IpAddr::V6(network)) => format!("{network}/64"),
        Ok(address) => address.to_string(),
        Err(_) => source_ip.to_owned(),
    }
}

/// Who sent a request: its client, or the address of a request with no known key.
fn who(request: &RequestEvent) -> String {
    match (&request.client, &request.key_of) {
        (Some(client), _) => format!("client {client}"),
        (None, Some(name)) => {
            format!("someone with the API key of client {name} (signature not verified)")
        }
        (None, None) => format!("an unknown key from {}", request.source_ip),
    }
}

/// What an `events_lost` alert says of `lost`.
fn lost_summary(lost: &keygate_core::LostEvents) -> String {
    let clients = if lost.clients.is_empty() {
        "none of them of a client with a valid key".to_owned()
    } else {
        let named: Vec<String> = lost
            .clients
            .iter()
            .map(|(c, n)| format!("{c} {n}"))
            .collect();
        format!("of clients: {}", named.join(", "))
    };
    format!(
        "{} background events (reads, denials, outcomes) were counted, not kept, between {} \
         and {}, {clients}: the audit log fell behind (a flood of requests, a stalled disk) \
         or could not be written (a full disk)",
        lost.count,
        keygate_core::rfc3339(lost.first_ms),
        keygate_core::rfc3339(lost.last_ms)
    )
}

/// The request in a few words: `withdrawal of 0.5 BTC to ADDRESS on BTC`, `trade BTCUSDT`.
fn describe(request: &RequestEvent) -> String {
    let mut text = match request.action {
        ActionKind::Withdraw => "withdrawal".to_owned(),
        ActionKind::Transfer => "transfer".to_owned(),
        other => other.as_str().to_owned(),
    };
    if let (Some(amount), Some(asset)) = (&request.amount, &request.asset) {
        text.push_str(&format!(" of {amount} {}", named(asset)));
    }
    if let Some(destination) = &request.destination {
        text.push_str(&format!(" to {}", named(destination)));
    }
    if let Some(network) = &request.network {
        text.push_str(&format!(" on {}", named(network)));
    }
    if let Some(symbol) = &request.symbol {
        text.push_str(&format!(" {}", named(symbol)));
    }
    // A batch: each order's symbol, once.
    let mut symbols: Vec<&str> = Vec::new();
    for order in &request.orders {
        if !symbols.contains(&order.symbol.as_str()) {
            symbols.push(&order.symbol);
        }
    }
    if !symbols.is_empty() {
        let named: Vec<String> = symbols.iter().map(|s| named(s)).collect();
        text.push_str(&format!(" {}", named.join(",")));
    }
    text
}

/// The most of one thing a request names (an asset, an address, a symbol) that a summary
/// shows, in characters: a long one must not push out what the alert is about.
const MAX_NAMED_CHARS: usize = 100;

/// `text`, cut to 100 characters, with each `.` between a letter, a digit or a `-`
/// and a letter written `[.]`, as security teams write an address not to be followed: a
/// bot chooses a withdrawal's address and network, and a chat or mail client would make
/// `binance-security-check.com/unfreeze` a link in the alert. Assets and symbols have no
/// dots; an address that does (`alice.near`) still reads as itself.
pub fn named(text: &str) -> String {
    defanged_within(text, MAX_NAMED_CHARS)
}

/// `text` with its dots between names written `[.]`, as [`named`] writes them, and not
/// cut: for an exchange's own error text, which the exchange (or whoever answers in its
/// place) writes, and which keygate already bounds
/// ([`keygate_exchanges::MAX_ERROR_TEXT`]).
pub fn defanged(text: &str) -> String {
    defanged_within(text, usize::MAX)
}

/// `text` defanged as [`named`] says, cut to `max_chars` characters as written.
fn defanged_within(text: &str, max_chars: usize) -> String {
    let mut out = String::new();
    let mut shown = 0;
    let mut previous = None;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        // Cut once written: `[.]` makes a name longer than it came (found by review: three
        // long names pushed who sent a withdrawal, and the decision, out of the summary).
        if shown >= max_chars {
            out.push('…');
            break;
        }
        let joins_labels = c == '.'
            && previous.is_some_and(|p: char| p.is_alphanumeric() || p == '-')
            && chars.peek().is_some_and(|n| n.is_alphabetic());
        if joins_labels && shown.saturating_add(3) <= max_chars {
            out.push_str("[.]");
            shown += 3;
        } else if joins_labels {
            out.push('…');
            break;
        } else {
            out.push(c);
            shown += 1;
        }
        previous = Some(c);
    }
    out
}

/// The longest summary an alert carries, in characters.
const MAX_SUMMARY_CHARS: usize = 500;

/// `summary` safe to put in a log line, an email header or a chat message: what a bot
/// sent (a withdrawal address, an asset) may hold line breaks or escape codes meant to
/// forge a line or a header, or direction overrides meant to show an address reversed,
/// so those characters become U+FFFD; and a bot's very long parameter does not make a
/// very long alert.
pub(crate) fn printable(summary: &str) -> String {
    let mut text: String = summary
        .chars()
        .take(MAX_SUMMARY_CHARS)
        .map(|c| if is_unprintable(c) { '\u{FFFD}' } else { c })
        .collect();
    if summary.chars().nth(MAX_SUMMARY_CHARS).is_some() {
        text.push('…');
    }
    text
}

/// Control characters, line and paragraph separators, and the invisible characters that
/// reorder or hide text: every format character of Unicode (general category Cf: the
/// bidirectional marks, overrides and isolates, zero-width characters, the byte-order
/// mark, the soft hyphen, the tag characters that spell text nobody sees), the variation
/// selectors (which carry hidden bytes), and the rest of Unicode's default-ignorable
/// characters, which show as nothing (the Hangul fillers, the combining grapheme joiner,
/// the Khmer inherent vowels, the Mongolian free variation selectors), and the blank
/// Braille pattern.
fn is_unprintable(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{00AD}'
                | '\u{034F}'
                | '\u{0600}'..='\u{0605}'
                | '\u{061C}'
                | '\u{06DD}'
                | '\u{070F}'
                | '\u{0890}'..='\u{0891}'
                | '\u{08E2}'
                | '\u{115F}'..='\u{1160}'
                | '\u{17B4}'..='\u{17B5}'
                | '\u{180B}'..='\u{180F}'
                | '\u{200B}'..='\u{200F}'
                | '\u{2028}'..='\u{202E}'
                | '\u{2060}'..='\u{206F}'
                | '\u{2800}'
                | '\u{3164}'
                | '\u{FE00}'..='\u{FE0F}'
                | '\u{FEFF}'
                | '\u{FFA0}'
                | '\u{FFF0}'..='\u{FFFB}'
                | '\u{110BD}'
                | '\u{110CD}'
                | '\u{13430}'..='\u{1343F}'
                | '\u{1BCA0}'..='\u{1BCA3}'
                | '\u{1D173}'..='\u{1D17A}'
                | '\u{E0000}'..='\u{E0FFF}'
        )
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use keygate_core::{BatchOrder, OutcomeEvent, Side};
    use rust_decimal::Decimal;

    fn request(ts_ms: u64, client: Option<&str>, action: ActionKind, rule: Option<Rule>) -> Event {
        Event {
            ts_ms,
            body: EventBody::Request(RequestEvent {
                request_id: format!("r{ts_ms}"),
                exchange: "binance".into(),
                client: client.map(str::to_owned),
                key_of: None,
                account: client.map(|_| "main".to_owned()),
                source_ip: "127.0.0.1".into(),
                method: "POST".into(),
                path: "/sapi/v1/capital/withdraw/apply".into(),
                action,
                symbol: None,
                side: None,
                client_order_id: None,
                notional: None,
                amount: Some(Decimal::new(5, 1)),
                asset: Some("BTC".into()),
                destination: Some("bc1qexample".into()),
                network: None,
                allowed: rule.is_none(),
                rule,
                message: None,
                upstream_status: None,
                latency_us: None,
                outcome: if rule.is_none() {
                    Outcome::Pending
                } else {
                    Outcome::NotForwarded
                },
                validates_only: false,
                previous_key: false,
                forwarded_by: None,
                places_no_order: false,
                orders: Vec::new(),
                terms: None,
            }),
        }
    }

    fn rules_of(alerts: &[Alert]) -> Vec<(Severity, AlertRule)> {
        alerts.iter().map(|a| (a.severity, a.rule)).collect()
    }

    /// A regression test (found by review): a stale copy of a client's signed withdrawal,
    /// resent every quiet period, took the client's quiet period, so its own denied
    /// withdrawals raised nothing. Denials that may be a copy are quiet on their own.
    #[test]
    fn a_copy_of_a_withdrawal_does_not_quiet_the_clients_own() {
        let mut rules = Rules::new(Thresholds::default());
        for (ts_ms, rule) in [
            (1_000, Rule::Authentication),
            (1_100, Rule::Replay),
            (1_200, Rule::Authentication),
        ] {
            rules.evaluate(
                ts_ms,
                &request(ts_ms, Some("bot1"), ActionKind::Withdraw, Some(rule)),
            );
        }
        let own = request(
            2_000,
            Some("bot1"),
            ActionKind::Withdraw,
            Some(Rule::WithdrawalAddress),
        );
        let alerts = rules.evaluate(2_000, &own);
        assert_eq!(
            rules_of(&alerts),
            [(Severity::Critical, AlertRule::Withdrawal)]
        );
        assert!(
            alerts[0]
                .summary
                .contains("(more denied by client bot1 under its policy within the quiet period"),
            "{}",
            alerts[0].summary
        );
        // The copy's alert says which denials its quiet period covers.
        let mut rules = Rules::new(Thresholds::default());
        let copy = request(
            3_000,
            Some("bot1"),
            ActionKind::Withdraw,
            Some(Rule::Replay),
        );
        let alerts = rules.evaluate(3_000, &copy);
        assert!(
            alerts[0]
                .summary
                .contains("more denied by client bot1 by rules a copy of its request may meet"),
            "{}",
            alerts[0].summary
        );
        // A key presented without a verified signature: quiet per rule, so a bad
        // signature does not quiet a retired key's use.
        let unverified = |ts_ms, rule| {
            let mut event = request(ts_ms, None, ActionKind::Withdraw, Some(rule));
            if let EventBody::Request(r) = &mut event.body {
                r.key_of = Some("bot1".into());
            }
            event
        };
        let alerts = rules.evaluate(4_000, &unverified(4_000, Rule::Authentication));
        assert!(
            alerts[0].summary.contains(
                "(more denied by someone with the API key of client bot1 (signature not \
                 verified) by rule authentication within"
            ),
            "{}",
            alerts[0].summary
        );
        assert_eq!(
            rules_of(&rules.evaluate(4_100, &unverified(4_100, Rule::Expired)))
                .into_iter()
                .filter(|(_, rule)| *rule == AlertRule::Withdrawal)
                .count(),
            1
        );
    }

    /// A regression test (from a review): a withdrawal held back while the exchange asked
    /// the address to back off raised the critical alert of one denied by policy, which
    /// reads mid-incident as someone trying to move funds.
    #[test]
    fn a_withdrawal_held_back_for_the_exchange_is_no_denial_by_policy() {
        let mut rules = Rules::new(Thresholds::default());
        let held = request(
            1_000,
            Some("bot1"),
            ActionKind::Withdraw,
            Some(Rule::ExchangeBackOff),
        );
        let alerts = rules.evaluate(1, &held);
        assert_eq!(
            rules_of(&alerts),
            [(Severity::Warning, AlertRule::Withdrawal)]
        );
        assert!(
            alerts[0].summary.contains("not sent: the exchange asked"),
            "{}",
            alerts[0].summary
        );
        // Found by review: the hold took the quiet period of denied withdrawals, so the
        // client's next one, denied by policy, raised nothing.
        let denied = request(2_000, Some("bot1"), ActionKind::Withdraw, Some(Rule::Scope));
        assert_eq!(
            rules_of(&rules.evaluate(2, &denied)),
            [(Severity::Critical, AlertRule::Withdrawal)]
        );
    }

    #[test]
    fn a_denied_withdrawal_is_critical_and_an_allowed_one_a_warning() {
        let mut rules = Rules::new(Thresholds::default());
        let denied = rules.evaluate(
            1,
            &request(1_000, Some("bot1"), ActionKind::Withdraw, Some(Rule::Scope)),
        );
        assert_eq!(
            rules_of(&denied),
            [(Severity::Critical, AlertRule::Withdrawal)]
        );
        assert!(
            denied[0].summary.starts_with(
                "withdrawal of 0.5 BTC to bc1qexample by client bot1 from 127.0.0.1 denied by rule scope"
            ),
            "{}",
            denied[0].summary
        );
        assert_eq!(denied[0].client.as_deref(), Some("bot1"));
        assert_eq!(denied[0].event_seq, 1);
        // A regression test: each denied withdrawal raised a critical alert, which no cap
        // holds back, so a key trying again and again flooded the receivers. Another
        // client's is still told; this one's again after the quiet period.
        let again = request(1_500, Some("bot1"), ActionKind::Withdraw, Some(Rule::Scope));
        assert!(rules.evaluate(2, &again).is_empty());
        let other = request(1_600, Some("bot2"), ActionKind::Withdraw, Some(Rule::Scope));
        assert_eq!(rules_of(&rules.evaluate(3, &other)).len(), 1);
        let quiet = Thresholds::default().quiet_period.as_millis() as u64;
        let later = request(
            1_000 + quiet,
            Some("bot1"),
            ActionKind::Withdraw,
            Some(Rule::Scope),
        );
        assert_eq!(rules_of(&rules.evaluate(4, &later)).len(), 1);
        let allowed = rules.evaluate(2, &request(2_000, Some("bot1"), ActionKind::Withdraw, None));
        assert_eq!(
            rules_of(&allowed),
            [(Severity::Warning, AlertRule::Withdrawal)]
        );
        // Found by review: an allowed transfer was info, which no sink takes by default,
        // though a transfer is bounded by scope alone.
        let transfer = rules.evaluate(3, &request(3_000, Some("bot1"), ActionKind::Transfer, None));
        assert_eq!(
            rules_of(&transfer),
            [(Severity::Warning, AlertRule::Transfer)]
        );
        // Found by review: a convert quote, which moves nothing, was told as a transfer;
        // one denied is still someone without the scope trying.
        let mut quote = request(4_000, Some("bot1"), ActionKind::Transfer, None);
        if let EventBody::Request(r) = &mut quote.body {
            r.validates_only = true;
        }
        assert!(rules.evaluate(4, &quote).is_empty());
        let mut denied = request(5_000, Some("bot2"), ActionKind::Transfer, Some(Rule::Scope));
        if let EventBody::Request(r) = &mut denied.body {
            r.validates_only = true;
        }
        assert_eq!(
            rules_of(&rules.evaluate(5, &denied)),
            [(Severity::Critical, AlertRule::Transfer)]
        );
    }

    /// Found by review: each name was cut to 100 characters before its dots were written
    /// `[.]`, so three long ones (asset, address, network) pushed who sent a withdrawal,
    /// and what became of it, past the summary's end; and Unicode's tag characters, the
    /// soft hyphen and other invisible format characters were passed on.
    #[test]
    fn long_names_leave_room_for_who_and_what_and_hide_nothing() {
        let mut withdrawal = request(1_000, Some("bot1"), ActionKind::Withdraw, Some(Rule::Scope));
        let EventBody::Request(r) = &mut withdrawal.body else {
            unreachable!("a request")
        };
        let long = "a.".repeat(60);
        r.asset = Some(long.clone());
        r.destination = Some(long.clone());
        r.network = Some(long);
        let alerts = Rules::new(Thresholds::default()).evaluate(1, &withdrawal);
        let summary = &alerts[0].summary;
        assert!(
            summary.contains("by client bot1") && summary.contains("denied by rule scope"),
            "{summary}"
        );
        let hidden =
            "bc1q\u{E0049}\u{E0047}\u{00AD}\u{061C}\u{3164}\u{E0100}\u{FE0F}\u{17B4}\u{E0002}x";
        assert_eq!(printable(hidden), format!("bc1q{}x", "\u{FFFD}".repeat(9)));
    }

    /// A regression test (found by review): a withdrawal told as sent (from its pending
    /// event) and then stopped (`keygate panic` while it waited) raised a denial that the
    /// client's quiet period could silence, and the word that it was sent stood.
    #[test]
    fn a_withdrawal_stopped_after_it_was_told_as_sent_is_told_as_stopped() {
        let mut rules = Rules::new(Thresholds::default());
        let denied = request(1_000, Some("bot1"), ActionKind::Withdraw, Some(Rule::Scope));
        assert_eq!(rules.evaluate(1, &denied).len(), 1);
        let allowed = request(2_000, Some("bot1"), ActionKind::Withdraw, None);
        let sent = rules.evaluate(2, &allowed);
        assert!(
            sent[0].summary.contains("being sent"),
            "{}",
            sent[0].summary
        );
        // The same request (the same id), refused while it waited.
        let stopped = request(
            2_000,
            Some("bot1"),
            ActionKind::Withdraw,
            Some(Rule::PolicyChanged),
        );
        let told = rules.evaluate(3, &stopped);
        assert_eq!(
            rules_of(&told),
            [(Severity::Critical, AlertRule::Withdrawal)]
        );
        assert!(
            told[0]
                .summary
                .contains("was stopped before it was sent: denied by rule policy_changed"),
            "{}",
            told[0].summary
        );
        // Any other denial in the quiet period stays quiet.
        let again = request(2_500, Some("bot1"), ActionKind::Withdraw, Some(Rule::Scope));
        assert!(rules.evaluate(4, &again).is_empty());
    }

    /// A regression test: a denied withdrawal logged while the clock ran a day ahead
    /// silenced the alert for every later one of that client until the clock caught up.
    #[test]
    fn a_clock_stepped_back_does_not_silence_a_denied_withdrawal() {
        let mut rules = Rules::new(Thresholds::default());
        let deny = |ts_ms| request(ts_ms, Some("bot1"), ActionKind::Withdraw, Some(Rule::Scope));
        let day_ahead = 1_000 + 86_400_000;
        assert_eq!(rules_of(&rules.evaluate(1, &deny(day_ahead))).len(), 1);
        let corrected = rules.evaluate(2, &deny(1_000));
        assert_eq!(
            rules_of(&corrected),
            [(Severity::Critical, AlertRule::Withdrawal)]
        );
        // And the quiet period runs from the corrected time.
        assert!(rules.evaluate(3, &deny(1_500)).is_empty());
    }

    /// An event written late (a read or denial that an order's event passed in the audit
    /// writer) stays inside the quiet period it is dated just before.
    #[test]
    fn an_event_written_a_little_late_does_not_raise_again() {
        let mut rules = Rules::new(Thresholds::default());
        let deny = |ts_ms| request(ts_ms, Some("bot1"), ActionKind::Withdraw, Some(Rule::Scope));
        assert_eq!(rules_of(&rules.evaluate(1, &deny(10_000))).len(), 1);
        assert!(rules.evaluate(2, &deny(9_400)).is_empty());
        assert_eq!(
            rules_of(&rules.evaluate(3, &deny(10_000 - LATE_EVENT_MS - 1))).len(),
            1
        );
    }

    #[test]
    fn an_unknown_outcome_names_the_pending_request() {
        let mut rules = Rules::new(Thresholds::default());
        assert!(rules
            .evaluate(1, &request(1_000, Some("bot1"), ActionKind::Trade, None))
            .is_empty());
        let outcome = |id: &str, outcome| Event {
            ts_ms: 2_000,
            body: EventBody::Outcome(OutcomeEvent {
                request_id: id.into(),
                client: Some("bot1".into()),
                upstream_status: None,
                latency_us: 10_000_000,
                outcome,
                order_ids: Vec::new(),
                interrupted: false,
            }),
        };
        assert!(rules
            .evaluate(2, &outcome("r1000", Outcome::Answered))
            .is_empty());
        rules.evaluate(3, &request(3_000, Some("bot1"), ActionKind::Trade, None));
        let alerts = rules.evaluate(4, &outcome("r3000", Outcome::Unknown));
        assert_eq!(
            rules_of(&alerts),
            [(Severity::Critical, AlertRule::OutcomeUnknown)]
        );
        assert!(
            alerts[0].summary.starts_with("trade of 0.5 BTC"),
            "{}",
            alerts[0].summary
        );
        assert!(alerts[0].summary.contains("request r3000"));
        assert!(alerts[0].summary.contains("timed out"));
        // What came of a forwarded trade, lost with the log unwritable (a full disk), may
        // be anything: told at once, naming it (found by review: told as lost reads and
        // denials, and as unknown only after a restart).
        rules.evaluate(7, &request(7_000, Some("bot1"), ActionKind::Trade, None));
        let lost = Event {
            ts_ms: 8_000,
            body: EventBody::Lost(keygate_core::LostEvents {
                funds_denied: Default::default(),
                count: 3,
                first_ms: 7_500,
                last_ms: 8_000,
                clients: [("bot1".to_owned(), 3)].into(),
                outcomes: vec!["r7000".to_owned()],
            }),
        };
        let alerts = rules.evaluate(8, &lost);
        assert_eq!(
            rules_of(&alerts),
            [
                (Severity::Critical, AlertRule::OutcomeUnknown),
                (Severity::Critical, AlertRule::EventsLost)
            ]
        );
        assert!(
            alerts[0].summary.contains("trade of 0.5 BTC")
                && alerts[0].summary.contains("(request r7000)"),
            "{}",
            alerts[0].summary
        );
        assert!(
            alerts[1].summary.contains("outcomes"),
            "{}",
            alerts[1].summary
        );
        assert!(
            alerts[0]
                .summary
                .starts_with("what came of 1 forwarded request(s)"),
            "{}",
            alerts[0].summary
        );
        // A record holds at most MAX_OUTCOMES ids: one that is full may stand for more.
        let full = keygate_core::LostEvents::MAX_OUTCOMES;
        let lost_outcomes = |ts_ms: u64, ids: usize, prefix: &str| Event {
            ts_ms,
            body: EventBody::Lost(keygate_core::LostEvents {
                funds_denied: Default::default(),
                count: ids as u64,
                first_ms: ts_ms - 500,
                last_ms: ts_ms,
                clients: [("bot1".to_owned(), ids as u64)].into(),
                outcomes: (0..ids).map(|i| format!("{prefix}{i}")).collect(),
            }),
        };
        let alerts = rules.evaluate(9, &lost_outcomes(9_000, full, "r"));
        assert!(
            alerts[0].summary.starts_with(&format!(
                "what came of at least {full} (the first named here)"
            )),
            "{}",
            alerts[0].summary
        );
        let nearly_full = lost_outcomes(10_000, full - 1, "s");
        let alerts = rules.evaluate(10, &nearly_full);
        assert!(
            alerts[0]
                .summary
                .starts_with(&format!("what came of {} forwarded", full - 1)),
            "{}",
            alerts[0].summary
        );
        // A read or a public call that got no answer executed nothing: no alert.
        for action in [ActionKind::Read, ActionKind::Public] {
            let mut unanswered = request(4_000, Some("bot1"), action, None);
            if let EventBody::Request(r) = &mut unanswered.body {
                r.outcome = Outcome::Unknown;
            }
            assert!(rules.evaluate(4, &unanswered).is_empty(), "{action:?}");
        }
        // An answer saying the exchange does not know is told as such.
        rules.evaluate(5, &request(5_000, Some("bot1"), ActionKind::Trade, None));
        let mut answered = outcome("r5000", Outcome::Unknown);
        if let EventBody::Outcome(o) = &mut answered.body {
            o.upstream_status = Some(503);
        }
        let alerts = rules.evaluate(6, &answered);
        assert_eq!(
            rules_of(&alerts),
            [(Severity::Critical, AlertRule::OutcomeUnknown)]
        );
        assert!(
            alerts[0]
                .summary
                .contains("was answered HTTP 503 by the exchange, which does not know"),
            "{}",
            alerts[0].summary
        );
    }

    /// Rules that raise a burst at three denials within ten seconds, quiet for a minute.
    fn bursting_at_three() -> Rules {
        Rules::new(Thresholds {
            denial_burst: 3,
            denial_window: Duration::from_secs(10),
            quiet_period: Duration::from_secs(60),
            ..Thresholds::default()
        })
    }

    #[test]
    fn denials_raise_one_burst_alert_per_quiet_period() {
        let mut rules = bursting_at_three();
        let deny = |rules: &mut Rules, ts_ms| {
            rules_of(&rules.evaluate(
                ts_ms,
                &request(ts_ms, Some("bot1"), ActionKind::Trade, Some(Rule::Symbol)),
            ))
        };
        // Two inside the window, one outside: no burst.
        assert!(deny(&mut rules, 0).is_empty());
        assert!(deny(&mut rules, 20_000).is_empty());
        assert!(deny(&mut rules, 21_000).is_empty());
        assert_eq!(
            deny(&mut rules, 22_000),
            [(Severity::Warning, AlertRule::DenialBurst)]
        );
        // Still bursting, but quiet for a minute.
        assert!(deny(&mut rules, 23_000).is_empty());
        assert!(deny(&mut rules, 24_000).is_empty());
        assert_eq!(
            deny(&mut rules, 83_000),
            Vec::<(Severity, AlertRule)>::new(),
            "the window holds one denial here"
        );
        deny(&mut rules, 84_000);
        assert_eq!(
            deny(&mut rules, 85_000),
            [(Severity::Warning, AlertRule::DenialBurst)]
        );
    }

    /// Found by review: stale copies of one captured request, resent, quieted the bursts
    /// of the client's own denials (one burst alert told of a clock's drift, the thief's
    /// probing stayed untold). Copies burst apart from the client's own requests.
    #[test]
    fn copies_of_a_clients_requests_burst_apart_from_its_own() {
        let mut rules = bursting_at_three();
        let mut deny = |ts_ms, rule| {
            rules.evaluate(
                ts_ms,
                &request(ts_ms, Some("bot1"), ActionKind::Read, Some(rule)),
            )
        };
        for ts_ms in 1_000..1_002 {
            assert!(deny(ts_ms, Rule::Authentication).is_empty());
        }
        let copies = deny(1_002, Rule::Authentication);
        assert_eq!(copies.len(), 1);
        assert!(
            copies[0]
                .summary
                .contains("client bot1 refused before its policy"),
            "{}",
            copies[0].summary
        );
        for ts_ms in 2_000..2_002 {
            assert!(deny(ts_ms, Rule::Scope).is_empty());
        }
        let own = deny(2_002, Rule::Scope);
        assert_eq!(own.len(), 1);
        assert!(
            own[0].summary.contains("requests of client bot1 denied"),
            "{}",
            own[0].summary
        );
    }

    /// A regression test: denials of unknown keys were counted per source address, so one
    /// sender with many addresses raised an alert for each, queued ahead of those that
    /// matter.
    #[test]
    fn unknown_keys_from_many_addresses_make_one_burst() {
        let thresholds = Thresholds {
            denial_burst: 3,
            denial_window: Duration::from_secs(10),
            ..Thresholds::default()
        };
        let mut rules = Rules::new(thresholds);
        let mut bursts = 0;
        for i in 0..300u64 {
            let mut event = request(
                1_000 + i,
                None,
                ActionKind::Read,
                Some(Rule::Authentication),
            );
            if let EventBody::Request(r) = &mut event.body {
                r.source_ip = format!("2001:db8::{:x}", i / 3);
            }
            let alerts = rules.evaluate(i + 1, &event);
            bursts += rules_of(&alerts)
                .iter()
                .filter(|(_, rule)| *rule == AlertRule::DenialBurst)
                .count();
        }
        assert_eq!(bursts, 1);
    }

    /// Found by review: a trusted proxy that sent no X-Forwarded-For, which breaks every
    /// bot behind it, was told as "requests of unknown keys denied", someone probing.
    #[test]
    fn a_burst_from_a_proxy_without_forwarded_for_says_so() {
        let thresholds = Thresholds {
            denial_burst: 3,
            ..Thresholds::default()
        };
        let mut rules = Rules::new(thresholds);
        let alerts: Vec<Alert> = (0..3u64)
            .flat_map(|i| {
                let event = request(1_000 + i, None, ActionKind::Read, Some(Rule::SourceIp));
                rules.evaluate(i + 1, &event)
            })
            .collect();
        assert_eq!(
            rules_of(&alerts),
            [(Severity::Warning, AlertRule::DenialBurst)]
        );
        assert!(
            alerts[0].summary.starts_with(
                "3 requests of a trusted proxy whose X-Forwarded-For names no source denied"
            ),
            "{}",
            alerts[0].summary
        );
    }

    #[test]
    fn a_dead_or_foreign_key_or_a_replay_is_a_warning_once() {
        let mut rules = Rules::new(Thresholds::default());
        for (rule, expected) in [
            (Rule::Revoked, AlertRule::DeadKeyUsed),
            (Rule::SourceIp, AlertRule::ForeignSource),
            (Rule::Replay, AlertRule::Replay),
        ] {
            let first = rules.evaluate(
                1,
                &request(1_000, Some("bot1"), ActionKind::Read, Some(rule)),
            );
            assert_eq!(
                rules_of(&first),
                [(Severity::Warning, expected)],
                "{rule:?}"
            );
            let again = rules.evaluate(
                2,
                &request(2_000, Some("bot1"), ActionKind::Read, Some(rule)),
            );
            assert!(again.is_empty(), "{rule:?} raised twice: {again:?}");
        }
        // A source address refused before any key is known says nothing of a client.
        let anonymous = rules.evaluate(
            3,
            &request(3_000, None, ActionKind::Read, Some(Rule::SourceIp)),
        );
        assert!(anonymous.is_empty(), "{anonymous:?}");
    }

    /// Found by review: past the bound, every new key scanned the whole map and kept
    /// every entry inside its quiet period, so a flood of a retired key from distinct
    /// addresses grew the map without end and slowed each event by its size (80 000
    /// events took 13 s). The oldest are forgotten now; every use is still alerted.
    #[test]
    fn a_flood_of_distinct_senders_stays_bounded_and_alerted() {
        let mut rules = Rules::new(Thresholds::default());
        let n = 3 * MAX_COUNTED_SOURCES as u64;
        for i in 0..n {
            let mut event = request(1_000 + i, None, ActionKind::Read, Some(Rule::Expired));
            if let EventBody::Request(r) = &mut event.body {
                r.message = Some("a key of client bot1 that a rotation retired".into());
                r.source_ip = format!("2001:db8:{:x}:{:x}::1", i >> 16, i & 0xffff);
            }
            let alerts = rules.evaluate(i + 1, &event);
            assert!(
                alerts.iter().any(|a| a.rule == AlertRule::DeadKeyUsed),
                "event {i}: {alerts:?}"
            );
            assert!(rules.last_raised.len() <= MAX_COUNTED_SOURCES + 1);
        }
        // The many addresses of one /64 are one sender (found by review: each was
        // alerted).
        for i in 0..100u64 {
            let mut event = request(9_000 + i, None, ActionKind::Read, Some(Rule::Expired));
            if let EventBody::Request(r) = &mut event.body {
                r.message = Some("a key of client bot2 that a rotation retired".into());
                r.source_ip = format!("2001:db8:ffff:1::{i:x}");
            }
            let raised = rules.evaluate(n + 1 + i, &event);
            let dead = raised.iter().filter(|a| a.rule == AlertRule::DeadKeyUsed);
            assert_eq!(dead.count(), usize::from(i == 0), "event {i}: {raised:?}");
        }
    }

    #[test]
    fn a_retired_key_is_a_dead_key_named_by_its_event() {
        let mut rules = Rules::new(Thresholds::default());
        let mut event = request(1_000, None, ActionKind::Read, Some(Rule::Expired));
        if let EventBody::Request(r) = &mut event.body {
            r.message = Some("a key of client bot1 that a rotation retired".into());
        }
        let alerts = rules.evaluate(1, &event);
        assert_eq!(
            rules_of(&alerts),
            [(Severity::Warning, AlertRule::DeadKeyUsed)]
        );
        // Another client's retired key from the same address is told too (found by
        // review: both were throttled as one unknown key's); the same one again is not.
        let mut other = request(1_001, None, ActionKind::Read, Some(Rule::Expired));
        if let EventBody::Request(r) = &mut other.body {
            r.message = Some("a key of client bot2 that a rotation retired".into());
        }
        assert_eq!(rules_of(&rules.evaluate(2, &other)).len(), 1);
        assert!(rules.evaluate(3, &event).is_empty());
        assert!(
            alerts[0].summary.starts_with(
                "a key of client bot1 that a rotation retired was used from 127.0.0.1"
            ),
            "{}",
            alerts[0].summary
        );
    }

    /// A regression test (found by review): a client never seen again kept its addresses
    /// in the memory saved every few seconds, for good.
    #[test]
    fn the_memory_saved_forgets_clients_not_seen_within_it() {
        let thresholds = Thresholds {
            source_memory: Duration::from_secs(3600),
            ..Thresholds::default()
        };
        let mut rules = Rules::new(thresholds);
        let seen = [
            (1_000, "gone", "10.0.0.1"),
            (2_000, "kept", "10.0.0.2"),
            (3_602_000, "kept", "10.0.0.3"),
        ];
        for (ts_ms, client, source) in seen {
            let mut event = request(ts_ms, Some(client), ActionKind::Read, None);
            if let EventBody::Request(r) = &mut event.body {
                r.source_ip = source.into();
            }
            rules.evaluate(ts_ms, &event);
        }
        let memory: serde_json::Value = serde_json::from_slice(&rules.memory()).unwrap();
        let sources = memory["sources"].as_object().unwrap();
        assert_eq!(sources.keys().collect::<Vec<_>>(), ["kept"], "{memory}");
        let kept: Vec<_> = sources["kept"].as_object().unwrap().keys().collect();
        assert_eq!(kept, ["10.0.0.3"], "{memory}");
    }

    #[test]
    fn a_client_seen_at_one_address_raises_an_alert_at_a_new_one() {
        let thresholds = Thresholds {
            source_memory: Duration::from_secs(3600),
            ..Thresholds::default()
        };
        let mut rules = Rules::new(thresholds);
        let from = |ts_ms: u64, client: &str, source: &str| {
            let mut event = request(ts_ms, Some(client), ActionKind::Read, None);
            if let EventBody::Request(r) = &mut event.body {
                r.source_ip = source.into();
            }
            event
        };
        let privacy_addresses: Vec<String> = (0x11..0x200u32)
            .map(|host| format!("2001:db8:1:2:{host:x}::1"))
            .collect();
        let mut at =
            |ts_ms, client, source| rules_of(&rules.evaluate(ts_ms, &from(ts_ms, client, source)));
        // The first address is learnt, and so is another client's.
        assert!(at(1_000, "bot1", "10.0.0.5").is_empty());
        assert!(at(2_000, "bot1", "10.0.0.5").is_empty());
        assert!(at(2_500, "bot2", "10.0.0.9").is_empty());
        assert_eq!(
            at(3_000, "bot1", "10.0.0.7"),
            [(Severity::Warning, AlertRule::NewSource)]
        );
        // Known now, both of them.
        assert!(at(4_000, "bot1", "10.0.0.7").is_empty());
        assert!(at(5_000, "bot1", "10.0.0.5").is_empty());
        // A regression test: each IPv6 privacy address of one host was a new source. An
        // IPv6 source stands for its /64.
        assert_eq!(
            at(6_000, "bot1", "2001:db8:1:2::10"),
            [(Severity::Warning, AlertRule::NewSource)]
        );
        for address in &privacy_addresses {
            assert!(at(7_000, "bot1", address).is_empty());
        }
        assert_eq!(
            at(8_000, "bot1", "2001:db8:1:3::10"),
            [(Severity::Warning, AlertRule::NewSource)]
        );
        // An address not seen for longer than the memory is new again.
        assert!(at(3_700_000, "bot1", "10.0.0.5").is_empty());
        assert_eq!(
            at(5_000_000, "bot1", "10.0.0.7"),
            [(Severity::Warning, AlertRule::NewSource)]
        );
    }

    #[test]
    fn a_client_that_trades_raises_an_alert_in_a_symbol_it_never_traded() {
        let thresholds = Thresholds {
            symbol_memory: Duration::from_secs(3600),
            ..Thresholds::default()
        };
        let mut rules = Rules::new(thresholds);
        let order = |ts_ms: u64, client: &str, action: ActionKind, symbol: &str| {
            let mut event = request(ts_ms, Some(client), action, None);
            if let EventBody::Request(r) = &mut event.body {
                r.symbol = Some(symbol.into());
            }
            event
        };
        let mut at = |ts_ms, client, action, symbol| {
            rules_of(&rules.evaluate(ts_ms, &order(ts_ms, client, action, symbol)))
        };
        // The first symbol is learnt; reads and cancels teach nothing and raise nothing.
        assert!(at(1_000, "bot1", ActionKind::Trade, "BTCUSDT").is_empty());
        assert!(at(1_500, "bot1", ActionKind::Read, "DOGEUSDT").is_empty());
        assert!(at(1_600, "bot1", ActionKind::Cancel, "DOGEUSDT").is_empty());
        assert!(at(2_000, "bot2", ActionKind::Trade, "ETHUSDT").is_empty());
        let alerts = rules.evaluate(3_000, &order(3_000, "bot1", ActionKind::Trade, "DOGEUSDT"));
        assert_eq!(
            rules_of(&alerts),
            [(Severity::Warning, AlertRule::NewSymbol)]
        );
        assert!(
            alerts[0].summary.contains(
                "client bot1 traded DOGEUSDT for the first time; it traded BTCUSDT before"
            ),
            "{alerts:?}"
        );
        let mut at = |ts_ms, client, action, symbol| {
            rules_of(&rules.evaluate(ts_ms, &order(ts_ms, client, action, symbol)))
        };
        assert!(at(4_000, "bot1", ActionKind::Trade, "DOGEUSDT").is_empty());
        // A regression test: a quiet period per client hid a second new symbol traded
        // soon after the first, for as long as the symbol was remembered.
        assert_eq!(
            at(5_000, "bot1", ActionKind::Trade, "PUMPUSDT"),
            [(Severity::Warning, AlertRule::NewSymbol)]
        );
        // A trade by scope that places no order (a setting, a test order) is no trade.
        for (settings, test) in [(true, false), (false, true)] {
            let mut event = order(6_000, "bot1", ActionKind::Trade, "SETUSDT");
            if let EventBody::Request(r) = &mut event.body {
                (r.places_no_order, r.validates_only) = (settings, test);
            }
            assert!(rules.evaluate(6_000, &event).is_empty());
        }
        let mut at = |ts_ms, client, action, symbol| {
            rules_of(&rules.evaluate(ts_ms, &order(ts_ms, client, action, symbol)))
        };
        assert_eq!(
            at(6_100, "bot1", ActionKind::Trade, "SETUSDT"),
            [(Severity::Warning, AlertRule::NewSymbol)]
        );
        // A symbol not traded for longer than the memory is new again.
        assert!(at(3_700_000, "bot1", ActionKind::Trade, "DOGEUSDT").is_empty());
        assert_eq!(
            at(3_800_000, "bot1", ActionKind::Trade, "BTCUSDT"),
            [(Severity::Warning, AlertRule::NewSymbol)]
        );
        // Found by review: a symbol is the bot's text, which a chat made a link.
        let alerts = rules.evaluate(
            3_900_000,
            &order(3_900_000, "bot1", ActionKind::Trade, "KEYGATE-UNFREEZE.COM"),
        );
        assert!(
            alerts[0]
                .summary
                .contains("traded KEYGATE-UNFREEZE[.]COM for the first time"),
            "{alerts:?}"
        );
    }

    /// A regression test: a batch (`POST /fapi/v1/batchOrders`) was recorded with no
    /// symbol, so new_symbol never saw the symbols its orders traded in: a key in other
    /// hands could pump a new market through batches unnoticed.
    #[test]
    fn each_symbol_of_a_batch_is_seen_by_the_new_symbol_rule() {
        let mut rules = Rules::new(Thresholds::default());
        let mut first = request(1_000, Some("bot1"), ActionKind::Trade, None);
        if let EventBody::Request(r) = &mut first.body {
            r.symbol = Some("usdm:BTCUSDT".into());
        }
        assert!(rules_of(&rules.evaluate(1_000, &first)).is_empty());
        let mut batch = request(2_000, Some("bot1"), ActionKind::Trade, None);
        if let EventBody::Request(r) = &mut batch.body {
            r.path = "/fapi/v1/batchOrders".into();
            r.symbol = None;
            r.orders = ["usdm:BTCUSDT", "usdm:PUMPUSDT", "usdm:PUMPUSDT"]
                .into_iter()
                .map(|symbol| BatchOrder {
                    symbol: symbol.into(),
                    side: Some(Side::Buy),
                    client_order_id: None,
                    terms: None,
                    notional: None,
                })
                .collect();
        }
        let alerts = rules.evaluate(2_000, &batch);
        // Once for the new symbol, however many of its orders are in it.
        assert_eq!(
            rules_of(&alerts),
            [(Severity::Warning, AlertRule::NewSymbol)]
        );
        assert!(
            alerts[0]
                .summary
                .contains("client bot1 traded usdm:PUMPUSDT for the first time"),
            "{alerts:?}"
        );
        // Known now, alone or in a batch.
        let mut again = request(3_000, Some("bot1"), ActionKind::Trade, None);
        if let EventBody::Request(r) = &mut again.body {
            r.symbol = Some("usdm:PUMPUSDT".into());
        }
        assert!(rules_of(&rules.evaluate(3_000, &again)).is_empty());
    }

    /// A regression test: bot1, issued with `--symbols BTC/USDT,ETHUSDT`, raised
    /// new_symbol on its first ETHUSDT order, a symbol the operator had allowed it. A
    /// symbol on the client's own list raises nothing; a client without a list still
    /// raises, and so does a symbol its list names in another market only.
    #[test]
    fn a_symbol_on_the_clients_own_list_is_not_a_new_symbol() {
        /// How many new_symbol alerts an allowed order of `client` in `symbol` raises.
        fn new_symbols(rules: &mut Rules, ts_ms: u64, client: &str, symbol: &str) -> usize {
            let mut event = request(ts_ms, Some(client), ActionKind::Trade, None);
            if let EventBody::Request(r) = &mut event.body {
                r.symbol = Some(symbol.into());
            }
            rules_of(&rules.evaluate(ts_ms, &event))
                .iter()
                .filter(|(_, rule)| *rule == AlertRule::NewSymbol)
                .count()
        }
        let listed = |symbols: &[&str]| -> BTreeSet<String> {
            symbols.iter().map(|s| (*s).to_owned()).collect()
        };
        // bot1's list as the store holds it: `BTC/USDT` became the exchange's id.
        let mut rules = Rules::new(Thresholds::default()).with_symbol_lists([(
            "bot1".to_owned(),
            listed(&["BTCUSDT", "ETHUSDT", "usdm:SOLUSDT"]),
        )]);
        assert_eq!(new_symbols(&mut rules, 1_000, "bot1", "BTCUSDT"), 0);
        assert_eq!(new_symbols(&mut rules, 2_000, "bot1", "ETHUSDT"), 0);
        assert_eq!(new_symbols(&mut rules, 3_000, "bot1", "usdm:SOLUSDT"), 0);
        // Compared as the events carry symbols: the list names SOLUSDT on USD-M only.
        assert_eq!(new_symbols(&mut rules, 4_000, "bot1", "SOLUSDT"), 1);
        // Without a list, a second symbol is still news.
        assert_eq!(new_symbols(&mut rules, 5_000, "bot2", "BTCUSDT"), 0);
        assert_eq!(new_symbols(&mut rules, 6_000, "bot2", "ETHUSDT"), 1);

        // A client issued or updated during the pass: the log's events give its list, as
        // `keygate client issue` and `client update` record the policy.
        let admin = |ts_ms: u64, change: &str, detail: serde_json::Value| Event {
            ts_ms,
            body: EventBody::Admin(AdminEvent {
                actor: "cli".into(),
                change: change.into(),
                target: "bot3".into(),
                detail,
            }),
        };
        let policy = |symbols: Option<&[&str]>| keygate_core::Policy {
            symbols: symbols.map(listed),
            ..keygate_core::Policy::default()
        };
        let with_list = policy(Some(&["BTCUSDT", "ETHUSDT"]));
        let issued = serde_json::json!({ "account": "main", "policy": with_list });
        rules.evaluate(7, &admin(7_000, "client.issue", issued));
        assert_eq!(new_symbols(&mut rules, 8_000, "bot3", "BTCUSDT"), 0);
        assert_eq!(new_symbols(&mut rules, 9_000, "bot3", "ETHUSDT"), 0);
        // Its list lifted (`--symbols any`): what it traded meanwhile is known, and a
        // symbol it never traded is news again.
        let lifted = serde_json::json!({ "from": with_list, "to": policy(None) });
        rules.evaluate(10, &admin(10_000, "client.update", lifted));
        assert_eq!(new_symbols(&mut rules, 11_000, "bot3", "ETHUSDT"), 0);
        assert_eq!(new_symbols(&mut rules, 12_000, "bot3", "DOGEUSDT"), 1);
    }

    /// A regression test: with no quiet period, a bot trading more markets than the
    /// symbols remembered raised a new_symbol alert on nearly every order, for ever. And
    /// found by review: orders (free ones: refused, or IOC orders that expire) in symbol
    /// after symbol brought that silence about before the symbol that mattered, unsaid:
    /// the moment it begins is told, once.
    #[test]
    fn a_client_seen_with_more_symbols_than_remembered_raises_no_more() {
        let mut rules = Rules::new(Thresholds::default());
        let mut summaries = Vec::new();
        for i in 0..200u64 {
            let mut event = request(1_000 + i, Some("bot1"), ActionKind::Trade, None);
            if let EventBody::Request(r) = &mut event.body {
                r.symbol = Some(format!("S{}USDT", i % 100));
            }
            summaries.extend(
                rules
                    .evaluate(i + 1, &event)
                    .into_iter()
                    .filter(|alert| alert.rule == AlertRule::NewSymbol)
                    .map(|alert| alert.summary),
            );
        }
        assert_eq!(summaries.len(), MAX_SIGHTINGS_PER_CLIENT, "{summaries:#?}");
        let told = summaries.last().unwrap();
        assert!(
            told.contains("has traded 64 symbols within 30 day(s)"),
            "{told}"
        );
    }

    /// Found by review: a client used from more addresses than remembered fell silent
    /// for new_source without a word, as new_symbol once did; the moment is told, once.
    #[test]
    fn a_client_seen_from_more_addresses_than_remembered_says_so_once() {
        let mut rules = Rules::new(Thresholds::default());
        let mut summaries = Vec::new();
        for i in 0..200u64 {
            let mut event = request(1_000 + i, Some("bot1"), ActionKind::Read, None);
            if let EventBody::Request(r) = &mut event.body {
                r.source_ip = format!("10.0.{}.1", i % 100);
            }
            summaries.extend(
                rules
                    .evaluate(i + 1, &event)
                    .into_iter()
                    .filter(|alert| alert.rule == AlertRule::NewSource)
                    .map(|alert| alert.summary),
            );
        }
        // The first address is the client's first, not a new one: 63 new ones, then the
        // notice.
        assert_eq!(summaries.len(), MAX_SIGHTINGS_PER_CLIENT, "{summaries:#?}");
        let told = summaries.last().unwrap();
        assert!(
            told.contains("has been used from 64 addresses (an IPv6 /64 counted as one) within"),
            "{told}"
        );
        assert!(
            summaries[..MAX_SIGHTINGS_PER_CLIENT - 1]
                .iter()
                .all(|s| s.contains("for the first time")),
            "{summaries:#?}"
        );
    }

    #[test]
    fn a_client_far_above_its_usual_rate_raises_a_spike_once_its_rate_is_known() {
        let mut rules = Rules::new(Thresholds::default());
        let mut spikes = |client: &str, minute: u64, n: u64| -> usize {
            (0..n)
                .map(|i| {
                    let ts = minute * 60_000 + i * 60_000 / n.max(1) / 2;
                    rules.evaluate(ts, &request(ts, Some(client), ActionKind::Read, None))
                })
                .filter(|alerts| {
                    rules_of(alerts).contains(&(Severity::Warning, AlertRule::RateSpike))
                })
                .count()
        };
        // A new client is not judged: 500 in its first minute is its first minute.
        assert_eq!(spikes("fresh", 0, 500), 0);
        // Forty minutes at 20 a minute, then 150: above the floor, but not ten times 20.
        for minute in 1..=40 {
            assert_eq!(spikes("steady", minute, 20), 0);
        }
        assert_eq!(spikes("steady", 41, 150), 0);
        // A quiet hour brings the usual rate down; then 300 in a minute is a spike,
        // raised once.
        assert_eq!(spikes("steady", 110, 300), 1);

        // Whether a client at 12 requests a minute for 41 minutes, then sending at the
        // times `burst` gives, raises a spike.
        let spikes_after = |burst: &mut dyn Iterator<Item = u64>| -> bool {
            let mut rules = Rules::new(Thresholds::default());
            let steady =
                (0..=40).flat_map(|minute| (0..12).map(move |i| minute * 60_000 + i * 5_000));
            steady.chain(burst).any(|ts| {
                let alerts = rules.evaluate(ts, &request(ts, Some("bot1"), ActionKind::Read, None));
                rules_of(&alerts).contains(&(Severity::Warning, AlertRule::RateSpike))
            })
        };
        // Found by review: a burst split across the turn of a minute, each half under the
        // threshold, raised nothing. Here 119 at the end of one minute and 119 late in the
        // next: 238 within 58.6 s (found by review of the first fix, which weighed the
        // minute before as if spread evenly over it).
        let across = (0..119)
            .map(|i| 41 * 60_000 + 59_000 + i * 5)
            .chain((0..119).map(|i| 42 * 60_000 + 57_000 + i * 5));
        assert!(
            spikes_after(&mut across.into_iter()),
            "a burst across the turn of a minute raised nothing"
        );
        // Found by review of the fix: after one request stamped ten minutes ahead (a
        // clock set forward, then back), nothing was counted until the clock got there.
        let after_a_step_back =
            std::iter::once(51 * 60_000).chain((0..1000).map(|i| 41 * 60_000 + 30_000 + i * 10));
        assert!(
            spikes_after(&mut after_a_step_back.into_iter()),
            "a burst after a clock set back raised nothing"
        );
    }

    /// Copies of a client's requests refused before its policy (replayed, stale, from an
    /// address it may not use) may be anyone's: they neither raise its usual rate, so
    /// that a burst of its own stays a spike, nor are a spike themselves.
    #[test]
    fn copies_of_a_clients_requests_leave_its_usual_rate_alone() {
        let mut rules = Rules::new(Thresholds::default());
        // Whether the request raised a rate spike.
        let mut send = |ts: u64, rule: Option<Rule>| -> bool {
            let alerts = rules.evaluate(ts, &request(ts, Some("bot1"), ActionKind::Read, rule));
            alerts.iter().any(|a| a.rule == AlertRule::RateSpike)
        };
        let mut spikes = 0;
        // Forty minutes at 12 requests a minute of its own, and 2 400 copies a minute
        // sent by whoever captured one, each refused as a replay or from an address.
        for minute in 0..=40 {
            for i in 0..12 {
                spikes += usize::from(send(minute * 60_000 + i * 5_000, None));
            }
            for i in 0..2_400 {
                let rule = if i % 2 == 0 {
                    Rule::Replay
                } else {
                    Rule::SourceIp
                };
                spikes += usize::from(send(minute * 60_000 + i * 25, Some(rule)));
            }
        }
        assert_eq!(spikes, 0);
        // Then 300 of its own in a minute: ten times its 12, so a spike. Had the copies
        // counted, its usual rate would be some 2 400 a minute and this would pass.
        let burst = (0..300)
            .filter(|i| send(41 * 60_000 + i * 100, None))
            .count();
        assert_eq!(burst, 1, "the burst raised no spike");
    }

    #[test]
    fn what_a_bot_sent_cannot_forge_a_line_or_a_header_in_an_alert() {
        let mut rules = Rules::new(Thresholds::default());
        let mut event = request(1_000, Some("bot1"), ActionKind::Withdraw, Some(Rule::Scope));
        if let EventBody::Request(r) = &mut event.body {
            r.destination = Some(format!(
                "bc1q\r\nBcc: thief@example.com\u{1b}[2J\u{202E}\u{2028}{}",
                "X".repeat(2_000)
            ));
        }
        let alert = &rules.evaluate(1, &event)[0];
        assert!(
            !alert.summary.chars().any(is_unprintable),
            "{:?}",
            alert.summary
        );
        assert!(
            alert.summary.contains("bc1q\u{FFFD}\u{FFFD}Bcc"),
            "{:?}",
            alert.summary
        );
        // A regression test: the address took the whole summary, and what the alert is
        // about (who, from where, which rule denied it) was cut off.
        assert!(
            alert
                .summary
                .contains("by client bot1 from 127.0.0.1 denied by rule scope"),
            "{:?}",
            alert.summary
        );

        let long = "Y".repeat(2 * MAX_SUMMARY_CHARS);
        assert_eq!(printable(&long).chars().count(), MAX_SUMMARY_CHARS + 1);
        assert!(printable(&long).ends_with('…'));
    }

    /// A regression test (from a review): a withdrawal to `binance-security-check.com/…`,
    /// which any bot can send (denied or not, it raises a critical alert), arrived in the
    /// alert as a bare domain, which chat and mail clients make a link.
    #[test]
    fn a_domain_a_bot_names_is_no_link_in_an_alert() {
        let mut rules = Rules::new(Thresholds::default());
        let mut event = request(1_000, Some("bot1"), ActionKind::Withdraw, Some(Rule::Scope));
        if let EventBody::Request(r) = &mut event.body {
            r.destination = Some("binance-security-check.com/unfreeze?id=7".into());
            r.network = Some("alice.near".into());
            r.amount = Some("10.5".parse().unwrap());
        }
        let alert = &rules.evaluate(1, &event)[0];
        assert!(
            alert
                .summary
                .contains("to binance-security-check[.]com/unfreeze?id=7 on alice[.]near"),
            "{:?}",
            alert.summary
        );
        assert!(alert.summary.contains("of 10.5 "), "{:?}", alert.summary);
        assert_eq!(named("v1.2 a. b .c"), "v1.2 a. b .c");
    }

    #[test]
    fn an_update_that_grants_withdraw_is_a_warning() {
        let mut rules = Rules::new(Thresholds::default());
        let update = |from: &[&str], to: &[&str]| Event {
            ts_ms: 5,
            body: EventBody::Admin(AdminEvent {
                actor: "cli".into(),
                change: "client.update".into(),
                target: "bot1".into(),
                detail: serde_json::json!({ "from": { "scopes": from }, "to": { "scopes": to } }),
            }),
        };
        let granted = rules.evaluate(1, &update(&["read"], &["read", "withdraw"]));
        assert_eq!(
            rules_of(&granted),
            [(Severity::Warning, AlertRule::AdminChange)]
        );
        assert!(
            granted[0].summary.ends_with("grants withdraw"),
            "{}",
            granted[0].summary
        );
        let narrowed = rules.evaluate(2, &update(&["read", "withdraw"], &["read"]));
        assert_eq!(
            rules_of(&narrowed),
            [(Severity::Info, AlertRule::AdminChange)]
        );
    }

    /// An operator's change `change` on `target`, at 5 ms.
    fn admin_change(change: &str, target: &str, detail: serde_json::Value) -> Event {
        Event {
            ts_ms: 5,
            body: EventBody::Admin(AdminEvent {
                actor: "cli".into(),
                change: change.into(),
                target: target.into(),
                detail,
            }),
        }
    }

    /// Found by review: an update that let a client which may withdraw send funds
    /// elsewhere or more of them (a new address, a limit lifted or raised, a wider allow
    /// list) was information, which no sink gets by default; so was an account whose
    /// requests go to a host of the operator's choosing.
    #[test]
    fn an_update_that_widens_where_funds_may_go_is_a_warning() {
        use keygate_core::{Policy, Scope};
        use std::collections::BTreeMap;
        let mut rules = Rules::new(Thresholds::default());
        let admin = |change: &str, detail| admin_change(change, "bot1", detail);
        let withdrawing = Policy {
            scopes: [Scope::Read, Scope::Withdraw].into_iter().collect(),
            withdrawal_addresses: ["TRX:Tsafe".parse().unwrap()].into_iter().collect(),
            max_daily_withdrawal: [("USDT".to_owned(), "100".parse().unwrap())].into(),
            ..Policy::default()
        };
        let mut seq = 0;
        let mut update = |from: &Policy, to: &Policy| {
            seq += 1;
            let event = admin(
                "client.update",
                serde_json::json!({ "from": from, "to": to }),
            );
            let alerts = rules.evaluate(seq, &event);
            (alerts[0].severity, alerts[0].summary.clone())
        };
        let mut to = withdrawing.clone();
        to.withdrawal_addresses
            .insert("TRX:Tattacker".parse().unwrap());
        let (severity, summary) = update(&withdrawing, &to);
        assert_eq!(severity, Severity::Warning);
        assert!(
            summary.ends_with("widens its withdrawal addresses"),
            "{summary}"
        );
        for limits in [
            BTreeMap::new(),
            [("USDT".to_owned(), "1000".parse().unwrap())].into(),
            [
                ("USDT".to_owned(), "100".parse().unwrap()),
                ("BTC".to_owned(), "1".parse().unwrap()),
            ]
            .into(),
        ] {
            let to = Policy {
                max_daily_withdrawal: limits,
                ..withdrawing.clone()
            };
            let (severity, summary) = update(&withdrawing, &to);
            assert_eq!(severity, Severity::Warning, "{summary}");
            assert!(
                summary.ends_with("its daily withdrawal limits"),
                "{summary}"
            );
        }
        let to = Policy {
            allow_ips: vec!["0.0.0.0/0".parse().unwrap()],
            ..withdrawing.clone()
        };
        let (severity, summary) = update(&withdrawing, &to);
        assert_eq!(severity, Severity::Warning);
        assert!(
            summary.ends_with("the addresses it may call from"),
            "{summary}"
        );
        // Narrowed, or widened for a client that moves nothing: information.
        let narrowed = Policy {
            max_daily_withdrawal: [("USDT".to_owned(), "10".parse().unwrap())].into(),
            withdrawal_addresses: BTreeSet::new(),
            ..withdrawing.clone()
        };
        assert_eq!(update(&withdrawing, &narrowed).0, Severity::Info);
        let reading = Policy::default();
        let wider = Policy {
            allow_ips: vec!["0.0.0.0/0".parse().unwrap()],
            ..Policy::default()
        };
        assert_eq!(update(&reading, &wider).0, Severity::Info);
        // Found by review: an update that granted withdraw and widened the allow list at
        // once named only the grant.
        let trading = Policy {
            scopes: [Scope::Read, Scope::Trade].into_iter().collect(),
            ..Policy::default()
        };
        let withdrawing_from_anywhere = Policy {
            scopes: [Scope::Read, Scope::Trade, Scope::Withdraw]
                .into_iter()
                .collect(),
            allow_ips: vec!["0.0.0.0/0".parse().unwrap()],
            ..Policy::default()
        };
        let (severity, summary) = update(&trading, &withdrawing_from_anywhere);
        assert_eq!(severity, Severity::Warning);
        assert!(
            summary.ends_with("grants withdraw; widens the addresses it may call from"),
            "{summary}"
        );

        let mut added = |upstream: serde_json::Value| {
            let event = admin(
                "account.add",
                serde_json::json!({ "exchange": "binance", "upstream": upstream }),
            );
            rules.evaluate(100, &event)[0].severity
        };
        assert_eq!(added(serde_json::Value::Null), Severity::Info);
        assert_eq!(
            added(serde_json::json!("https://relay.example")),
            Severity::Warning
        );

        // Where the log's checkpoints are kept: first recorded, moved, no longer kept.
        let mut kept = |detail: serde_json::Value| {
            let event = admin("audit.checkpoint_file", detail);
            let alert = rules.evaluate(101, &event).remove(0);
            (alert.severity, alert.summary)
        };
        let (severity, _) = kept(serde_json::json!({ "path": "/mnt/a", "from": null }));
        assert_eq!(severity, Severity::Info);
        let (severity, summary) = kept(serde_json::json!({ "path": "/mnt/b", "from": "/mnt/a" }));
        assert_eq!(severity, Severity::Warning);
        assert!(
            summary.ends_with("now kept in /mnt/b, not /mnt/a"),
            "{summary}"
        );
        let (severity, summary) = kept(serde_json::json!({ "path": null, "from": "/mnt/b" }));
        assert_eq!(severity, Severity::Warning);
        assert!(summary.contains("no file any more"), "{summary}");
    }

    /// Found by review: only an update that granted withdraw or transfer warned; a
    /// client issued with either, or one let go after `keygate panic`, was information,
    /// which no sink gets by default.
    #[test]
    fn issuing_a_client_that_moves_funds_or_unfreezing_one_is_a_warning() {
        let mut rules = Rules::new(Thresholds::default());
        let admin = |change: &str, detail| admin_change(change, "bot2", detail);
        let issued = |scopes: &[keygate_core::Scope]| {
            let policy = keygate_core::Policy {
                scopes: scopes.iter().copied().collect(),
                ..keygate_core::Policy::default()
            };
            admin(
                "client.issue",
                serde_json::json!({ "account": "main", "policy": policy }),
            )
        };
        use keygate_core::Scope;
        let alerts = rules.evaluate(1, &issued(&[Scope::Read, Scope::Withdraw]));
        assert_eq!(
            rules_of(&alerts),
            [(Severity::Warning, AlertRule::AdminChange)]
        );
        assert!(
            alerts[0].summary.ends_with("grants withdraw"),
            "{}",
            alerts[0].summary
        );
        assert_eq!(
            rules_of(&rules.evaluate(2, &issued(&[Scope::Read, Scope::Trade]))),
            [(Severity::Info, AlertRule::AdminChange)]
        );
        assert_eq!(
            rules_of(&rules.evaluate(3, &admin("client.unfreeze", serde_json::Value::Null))),
            [(Severity::Warning, AlertRule::AdminChange)]
        );
        // Found by review: an unfreeze also brings back a key a rotation kept for its
        // grace, and the alert said "its key works again", one key.
        let alerts = rules.evaluate(
            4,
            &admin(
                "client.unfreeze",
                serde_json::json!({
                    "from": "frozen",
                    "to": "active",
                    "previous_key": "Ab12…yZ89",
                    "previous_key_until": "2026-12-07T19:00:00.000Z",
                }),
            ),
        );
        assert!(
            alerts[0].summary.ends_with(
                "its key works again, and so does its key before the last rotation \
                 (Ab12…yZ89) until 2026-12-07T19:00:00.000Z"
            ),
            "{}",
            alerts[0].summary
        );
        // Found by review: an expired client unfrozen was told as working again (it is
        // still refused), and one given a new expiry, which does work again, as mere
        // information.
        let alerts = rules.evaluate(
            5,
            &admin(
                "client.unfreeze",
                serde_json::json!({
                    "from": "frozen",
                    "to": "active",
                    "expired_at": "2026-12-07T07:00:00.000Z",
                }),
            ),
        );
        assert_eq!(
            rules_of(&alerts),
            [(Severity::Info, AlertRule::AdminChange)]
        );
        assert!(
            alerts[0]
                .summary
                .ends_with("it expired at 2026-12-07T07:00:00.000Z, and its key is still refused"),
            "{}",
            alerts[0].summary
        );
        let alerts = rules.evaluate(
            6,
            &admin(
                "client.update",
                serde_json::json!({
                    "from": {},
                    "to": {},
                    "expires_at": { "from": "2026-12-07T07:00:00.000Z", "to": "2027-03-07T07:00:00.000Z" },
                    "revives_expired": true,
                }),
            ),
        );
        assert_eq!(
            rules_of(&alerts),
            [(Severity::Warning, AlertRule::AdminChange)]
        );
        assert!(
            alerts[0]
                .summary
                .ends_with("it had expired, and its key works again"),
            "{}",
            alerts[0].summary
        );
    }

    #[test]
    fn a_panic_is_critical_and_other_changes_are_information() {
        let mut rules = Rules::new(Thresholds::default());
        let admin = |change: &str| Event {
            ts_ms: 5,
            body: EventBody::Admin(AdminEvent {
                actor: "cli".into(),
                change: change.into(),
                target: "clients".into(),
                detail: serde_json::Value::Null,
            }),
        };
        assert_eq!(
            rules_of(&rules.evaluate(1, &admin("vault.panic"))),
            [(Severity::Critical, AlertRule::AdminChange)]
        );
        // The panic's alert names whom it froze.
        let panic = Event {
            ts_ms: 5,
            body: EventBody::Admin(AdminEvent {
                actor: "cli".into(),
                change: "vault.panic".into(),
                target: "clients".into(),
                detail: serde_json::json!({ "frozen_clients": ["bot1", "bot2"] }),
            }),
        };
        assert_eq!(
            rules.evaluate(2, &panic)[0].summary,
            "vault.panic by cli on clients: froze 2 client(s): bot1, bot2"
        );
        assert_eq!(
            rules_of(&rules.evaluate(2, &admin("account.rotate"))),
            [(Severity::Info, AlertRule::AdminChange)]
        );
    }

    #[test]
    fn lost_events_are_critical_say_how_many_and_are_not_repeated_every_batch() {
        let mut rules = Rules::new(Thresholds::default());
        let lost = |ts_ms| Event {
            ts_ms,
            body: EventBody::Lost(keygate_core::LostEvents {
                funds_denied: Default::default(),
                count: 1234,
                first_ms: 5,
                last_ms: ts_ms,
                clients: [("bot1".to_owned(), 34)].into(),
                outcomes: Vec::new(),
            }),
        };
        let alerts = rules.evaluate(3, &lost(9));
        assert_eq!(
            rules_of(&alerts),
            [(Severity::Critical, AlertRule::EventsLost)]
        );
        assert!(alerts[0].summary.starts_with("1234 background events"));
        assert!(alerts[0].summary.contains("of clients: bot1 34"));
        // A regression test (found by review): the window was in raw milliseconds since
        // the epoch; it is in RFC 3339, as every other time an operator reads.
        assert!(
            alerts[0]
                .summary
                .contains("between 1970-01-01T00:00:00.005Z and 1970-01-01T00:00:00.009Z,"),
            "{}",
            alerts[0].summary
        );
        assert!(!alerts[0].summary.contains("epoch"));
        // The next batch's record, a moment later, raises nothing new.
        assert!(rules.evaluate(4, &lost(109)).is_empty());
        let quiet = Thresholds::default().quiet_period.as_millis() as u64;
        assert_eq!(rules.evaluate(5, &lost(9 + quiet)).len(), 1);

        // Found by review: a flood of requests without a valid key started the one quiet
        // period, and the loss of a client's own events in it raised nothing.
        let mut rules = Rules::new(Thresholds::default());
        let of = |ts_ms, clients: &[&str]| Event {
            ts_ms,
            body: EventBody::Lost(keygate_core::LostEvents {
                funds_denied: Default::default(),
                count: 10,
                first_ms: 5,
                last_ms: ts_ms,
                clients: clients.iter().map(|c| (c.to_string(), 1)).collect(),
                outcomes: Vec::new(),
            }),
        };
        assert_eq!(rules.evaluate(1, &of(10, &[])).len(), 1);
        assert!(rules.evaluate(2, &of(20, &[])).is_empty());
        assert_eq!(rules.evaluate(3, &of(30, &["bot1"])).len(), 1);
        assert!(rules.evaluate(4, &of(40, &["bot1"])).is_empty());
        assert_eq!(rules.evaluate(5, &of(50, &["bot1", "bot2"])).len(), 1);

        // Found by review: a frozen key's denied withdrawals, refused before they could
        // be the client's own, lost in a flood of requests without a valid key, were
        // told only as a loss, quieted with the rest. Each key's are told as withdrawals.
        let mut rules = Rules::new(Thresholds::default());
        let denied = |ts_ms, holder: &str| Event {
            ts_ms,
            body: EventBody::Lost(keygate_core::LostEvents {
                funds_denied: [(holder.to_owned(), 3)].into(),
                count: 500,
                first_ms: 5,
                last_ms: ts_ms,
                clients: Default::default(),
                outcomes: Vec::new(),
            }),
        };
        let alerts = rules.evaluate(6, &denied(10, "bot1"));
        assert_eq!(
            rules_of(&alerts),
            [
                (Severity::Critical, AlertRule::Withdrawal),
                (Severity::Critical, AlertRule::EventsLost)
            ]
        );
        assert!(
            alerts[0]
                .summary
                .starts_with("3 withdrawal(s) or transfer(s) presenting the key of client bot1"),
            "{}",
            alerts[0].summary
        );
        // The loss is quiet now; another key's attempts are not.
        let alerts = rules.evaluate(7, &denied(20, "bot2"));
        assert_eq!(
            rules_of(&alerts),
            [(Severity::Critical, AlertRule::Withdrawal)]
        );
        assert!(rules.evaluate(8, &denied(30, "bot1")).is_empty());
    }

    /// What the monitor relies on when it stops with alerts undelivered: it keeps its
    /// place before the event of the first that `is_raised_again_by_its_event` says a pass
    /// from that event raises again. Checked against the rules themselves, over a log that
    /// raises each rule that reads events (`log_unreadable` is the monitor's, not theirs).
    #[test]
    fn a_pass_from_an_alerts_event_raises_it_again_just_for_the_rules_that_say_so() {
        let thresholds = Thresholds {
            denial_burst: 3,
            ..Thresholds::default()
        };
        let with = |mut event: Event, change: &dyn Fn(&mut RequestEvent)| {
            if let EventBody::Request(request) = &mut event.body {
                change(request);
            }
            event
        };
        let bot1 = Some("bot1");
        let mut events = vec![
            // Seen at one address, then at another.
            request(1_000, bot1, ActionKind::Read, None),
            with(request(2_000, bot1, ActionKind::Read, None), &|r| {
                r.source_ip = "10.9.9.9".into()
            }),
            // Trades one symbol, then another.
            with(request(3_000, bot1, ActionKind::Trade, None), &|r| {
                r.symbol = Some("BTCUSDT".into())
            }),
            with(request(4_000, bot1, ActionKind::Trade, None), &|r| {
                r.symbol = Some("ETHUSDT".into())
            }),
            request(5_000, bot1, ActionKind::Withdraw, Some(Rule::Scope)),
            request(6_000, bot1, ActionKind::Transfer, None),
            request(7_000, bot1, ActionKind::Read, Some(Rule::Revoked)),
            // The third denial in the window: a burst too.
            request(8_000, bot1, ActionKind::Read, Some(Rule::SourceIp)),
            request(9_000, bot1, ActionKind::Read, Some(Rule::Replay)),
            with(request(10_000, bot1, ActionKind::Trade, None), &|r| {
                r.outcome = Outcome::Unknown
            }),
            Event {
                ts_ms: 11_000,
                body: EventBody::Admin(AdminEvent {
                    actor: "cli".into(),
                    change: "vault.panic".into(),
                    target: "clients".into(),
                    detail: serde_json::Value::Null,
                }),
            },
            Event {
                ts_ms: 12_000,
                body: EventBody::Lost(keygate_core::LostEvents {
                    funds_denied: Default::default(),
                    count: 7,
                    first_ms: 11_500,
                    last_ms: 12_000,
                    clients: Default::default(),
                    outcomes: Vec::new(),
                }),
            },
        ];
        // bot2: a request a minute for half an hour and more, then a spike.
        let minute = 60_000;
        events.extend((1..=32).map(|m| request(m * minute, Some("bot2"), ActionKind::Read, None)));
        events.extend(
            (0..121).map(|i| request(33 * minute + i, Some("bot2"), ActionKind::Read, None)),
        );
        let mut pass = Rules::new(thresholds);
        let mut raised = std::collections::HashSet::new();
        for (seq, event) in (1..).zip(&events) {
            for alert in pass.evaluate(seq, event) {
                let mut from_it = Rules::new(thresholds);
                let again = from_it
                    .evaluate(seq, event)
                    .iter()
                    .any(|a| (a.severity, a.rule) == (alert.severity, alert.rule));
                assert_eq!(
                    again,
                    is_raised_again_by_its_event(alert.rule),
                    "{:?} of event {seq}",
                    alert.rule
                );
                raised.insert(alert.rule.as_str());
            }
        }
        let mut raised: Vec<&str> = raised.into_iter().collect();
        raised.sort_unstable();
        assert_eq!(
            raised,
            [
                "admin_change",
                "dead_key_used",
                "denial_burst",
                "events_lost",
                "foreign_source",
                "new_source",
                "new_symbol",
                "outcome_unknown",
                "rate_spike",
                "replay",
                "transfer",
                "withdrawal",
            ]
        );
    }

    /// Found by review: a bot retrying through an exchange outage (its orders answered
    /// 502, unpriced) raised `denial_burst` as a client probing would.
    #[test]
    fn requests_held_back_for_an_outage_raise_no_burst() {
        let mut rules = Rules::new(Thresholds::default());
        for i in 0..30u64 {
            let event = request(
                1_000 + i,
                Some("bot1"),
                ActionKind::Trade,
                Some(Rule::ExchangeUnreachable),
            );
            let alerts = rules.evaluate(i + 1, &event);
            assert!(
                !rules_of(&alerts).contains(&(Severity::Warning, AlertRule::DenialBurst)),
                "{alerts:?}"
            );
        }
    }

    /// Found by review: an alert about a request with no verified client was given the
    /// client whose API key it presented (`key_of`), so ten requests of a stranger with
    /// bot `victim`'s API key (no secret) and a bad signature raised "10 requests of
    /// unknown keys denied" with client `victim`, blaming the wrong bot where alerts are
    /// routed by client. Only an alert about the key's own use (a retired key) is its
    /// client's.
    #[test]
    fn a_strangers_burst_with_a_known_api_key_names_no_client() {
        let thresholds = Thresholds {
            denial_burst: 10,
            ..Thresholds::default()
        };
        let mut rules = Rules::new(thresholds);
        let with_key_of = |mut event: Event| {
            if let EventBody::Request(r) = &mut event.body {
                r.key_of = Some("victim".into());
            }
            event
        };
        let mut alerts = Vec::new();
        for i in 0..10u64 {
            let event = request(
                1_000 + i,
                None,
                ActionKind::Read,
                Some(Rule::Authentication),
            );
            alerts.extend(rules.evaluate(i + 1, &with_key_of(event)));
        }
        assert_eq!(
            rules_of(&alerts),
            [(Severity::Warning, AlertRule::DenialBurst)]
        );
        assert!(
            alerts[0].summary.starts_with("10 requests of unknown keys"),
            "{}",
            alerts[0].summary
        );
        assert_eq!(alerts[0].client, None, "{:?}", alerts[0]);
        // A withdrawal denied before its signature verified is no more the key's own.
        let withdrawal = request(
            2_000,
            None,
            ActionKind::Withdraw,
            Some(Rule::Authentication),
        );
        let alerts = rules.evaluate(11, &with_key_of(withdrawal));
        assert_eq!(
            rules_of(&alerts),
            [(Severity::Critical, AlertRule::Withdrawal)]
        );
        assert_eq!(alerts[0].client, None, "{:?}", alerts[0]);
        assert!(
            alerts[0]
                .summary
                .contains("by someone with the API key of client victim (signature not verified)"),
            "{}",
            alerts[0].summary
        );
        // More of them, from other addresses, are quiet with it: per key presented, not
        // per address (a stranger with many addresses would page without end: critical
        // alerts have no storm cap).
        for i in 0..20u64 {
            let mut again = with_key_of(request(
                2_100 + i,
                None,
                ActionKind::Withdraw,
                Some(Rule::Authentication),
            ));
            if let EventBody::Request(r) = &mut again.body {
                r.source_ip = format!("2001:db8::{i:x}");
            }
            let alerts = rules.evaluate(100 + i, &again);
            assert!(
                !rules_of(&alerts).contains(&(Severity::Critical, AlertRule::Withdrawal)),
                "{alerts:?}"
            );
        }
        // A withdrawal with a key no client has raises nothing of its own.
        let unknown = request(
            2_500,
            None,
            ActionKind::Withdraw,
            Some(Rule::Authentication),
        );
        assert!(rules
            .evaluate(200, &unknown)
            .iter()
            .all(|a| a.rule != AlertRule::Withdrawal));
        // A key a rotation retired is about that client's key: named as its client.
        let mut retired = request(3_000, None, ActionKind::Read, Some(Rule::Expired));
        if let EventBody::Request(r) = &mut retired.body {
            r.message = Some("a key of client victim that a rotation retired".into());
        }
        let alerts = rules.evaluate(12, &with_key_of(retired));
        assert_eq!(
            rules_of(&alerts),
            [(Severity::Warning, AlertRule::DeadKeyUsed)]
        );
        assert_eq!(
            alerts[0].client.as_deref(),
            Some("victim"),
            "{:?}",
            alerts[0]
        );
    }
}
