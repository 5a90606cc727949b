//! Reconciliation: what an exchange lists of an account's withdrawals and orders, held
//! against what keygate forwarded by its audit log. The exchange lists them whoever asked
//! for them, so one keygate never forwarded was made with a leaked key (or by hand on the
//! exchange's own site).
//!
//! Conditional orders (Binance's USD-M algo orders) are numbered apart from orders; one
//! keygate forwarded makes the order it placed on triggering known too.
//!
//! This module only matches; asking the exchange is the caller's business.

use std::collections::{BTreeSet, HashMap, HashSet};

use keygate_core::{
    ActionKind, BatchOrder, Event, EventBody, ExchangeConditionalOrder, ExchangeOrder,
    ExchangeWithdrawal, Market, OrderRef, Outcome, Side,
};
use rust_decimal::Decimal;

/// How long before the exchange applied a withdrawal (or placed an order) keygate may
/// have sent it.
pub const FORWARDED_BEFORE_MS: u64 = 10 * 60_000;
/// How far the exchange's clock may run behind keygate's.
pub const CLOCK_SKEW_MS: u64 = 2 * 60_000;

/// What keygate forwarded, from the audit log: fed its events in log order with
/// [`Forwarded::note`], then asked about what an exchange listed.
#[derive(Debug, Default)]
pub struct Forwarded {
    withdrawals: Vec<ForwardedWithdrawal>,
    /// By account and market: each market numbers its orders apart.
    orders: HashMap<(String, Market), ForwardedOrders>,
    /// Conditional orders, by account and market: numbered apart from orders.
    conditional: HashMap<(String, Market), ForwardedOrders>,
    /// Where each order request's orders are kept, by request id, for its outcome.
    order_accounts: HashMap<String, Book>,
    /// What may have been written by a keygate that did not record the exchange's order
    /// ids nor withdrawals' destinations, until the log says whether it was
    /// ([`Forwarded::note`] of a `vault.schema` event).
    unrecorded: Unrecorded,
}

/// Orders and withdrawals whose events say too little to be matched as this keygate's
/// are, which a keygate before 2026-12-03 (schema 2 or earlier) wrote: its log named no
/// exchange order ids in an answer's outcome, and no destination in a withdrawal.
/// Held apart until a `vault.schema` event upgrading from such a schema shows that they
/// were written by it; then matched as well as they can be (orders by symbol, side and
/// time, withdrawals by asset, amount and time). Without it, they are this keygate's:
/// an order answered with no id placed none (a batch whose every order failed), a
/// withdrawal with no destination was never sent.
#[derive(Debug, Default)]
struct Unrecorded {
    /// Orders answered as placed with no id in the answer's outcome: their book and
    /// request id, and the orders the request named.
    orders: Vec<(Book, String, Vec<Unanswered>)>,
    /// Withdrawals with no destination.
    withdrawals: Vec<ForwardedWithdrawal>,
}

/// The last schema whose keygate may have logged orders' outcomes without the
/// exchange's ids, and withdrawals without destinations.
const LAST_SCHEMA_WITHOUT_IDS: i64 = 2;

/// Where an order request's orders are kept: its account, market, and whether they are
/// conditional orders.
type Book = (String, Market, bool);

/// A withdrawal keygate forwarded.
#[derive(Debug)]
struct ForwardedWithdrawal {
    request_id: String,
    account: String,
    asset: String,
    amount: Decimal,
    /// None in events written before keygate recorded it ([`Unrecorded`]).
    destination: Option<String>,
    /// As the request named it; none for the asset's default network.
    network: Option<String>,
    ts_ms: u64,
    matched: bool,
}

/// One account's orders in one market keygate forwarded.
#[derive(Debug, Default)]
struct ForwardedOrders {
    /// The symbols they were in.
    symbols: BTreeSet<String>,
    /// (symbol, the exchange's id) of each order placed, from the answers: the exchange
    /// numbers orders per symbol. A batch's ids are read from its answer without their
    /// symbols, so each stands in each symbol of the batch (five at most), never in
    /// another.
    placed: HashSet<(String, String)>,
    /// The exchange's ids of orders a batch placed whose event, written before keygate
    /// recorded a batch's orders, names none of their symbols: known by id alone.
    placed_by_batch: HashSet<String>,
    /// Orders sent whose answer named none, by request id: it timed out, the client hung
    /// up, or it has not come yet. Each may stand for one order the exchange lists (a
    /// batch for each of its orders).
    unanswered: HashMap<String, Vec<Unanswered>>,
    /// The price and quantity of each order that can be modified in place (a USD-M limit
    /// order), as keygate placed it and as it modified it since, by symbol and id.
    terms: HashMap<(String, OrderKey), Vec<SentTerms>>,
    /// The terms of an order placed without a client order id, by request id, until the
    /// answer names the exchange's id for it.
    terms_unplaced: HashMap<String, (String, Option<Decimal>, Decimal)>,
}

/// A price (none when the exchange sets it from the book) and a quantity keygate sent
/// for an order, with the id of the request that sent them.
type SentTerms = (String, Option<Decimal>, Decimal);

/// How an order is known: by the exchange's id, or by its client's.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum OrderKey {
    Id(String),
    Client(String),
}

/// An order (or order list, or one order of a batch) keygate sent and has no answer for.
#[derive(Debug)]
struct Unanswered {
    /// Its symbol, as the exchange lists it.
    symbol: String,
    side: Option<Side>,
    client_order_id: Option<String>,
    ts_ms: u64,
    /// How many listed orders it may still stand for: one, or one per leg of a list.
    legs: u8,
    /// Whether it is an order list, whatever number of its legs is left.
    is_list: bool,
}

impl Unanswered {
    /// Whether the exchange's order `o` (with side `side`) may be this one: in its
    /// symbol, placed shortly after it was sent, and by its client order id (by its side
    /// when the client gave none). The legs of a list carry ids and sides of their own,
    /// so a list's are known by symbol and time alone.
    fn may_be(&self, o: &ExchangeOrder, side: Option<Side>) -> bool {
        self.legs > 0
            && self.symbol == o.symbol
            && self.ts_ms <= o.placed_ms.saturating_add(CLOCK_SKEW_MS)
            && self.ts_ms.saturating_add(FORWARDED_BEFORE_MS) >= o.placed_ms
            && (self.is_list
                || match &self.client_order_id {
                    Some(id) => *id == o.client_order_id,
                    None => self.side.is_some() && self.side == side,
                })
    }
}

impl Forwarded {
    /// Takes in the next event of the log.
    pub fn note(&mut self, event: &Event) {
        let r = match &event.body {
            EventBody::Request(r) => r,
            EventBody::Outcome(o) => {
                // A withdrawal the exchange refused, or never got, made none: it must
                // not stand for one made behind keygate's back.
                let refused = match o.outcome {
                    Outcome::Answered => !o.upstream_status.is_some_and(is_success),
                    Outcome::NotForwarded
                    | Outcome::UpstreamUnreachable
                    | Outcome::AnsweredByKeygate => true,
                    Outcome::Pending | Outcome::Unknown => false,
                };
                if refused {
                    self.forget_withdrawal(&o.request_id);
                }
                let Some((account, market, conditional)) =
                    self.order_accounts.remove(&o.request_id)
                else {
                    return;
                };
                let orders = self.book(account.clone(), market, conditional);
                if let Some((symbol, price, quantity)) = orders.terms_unplaced.remove(&o.request_id)
                {
                    if let [id] = o.order_ids.as_slice() {
                        let key = (symbol, OrderKey::Id(id.clone()));
                        let request_id = o.request_id.clone();
                        orders
                            .terms
                            .entry(key)
                            .or_default()
                            .push((request_id, price, quantity));
                    }
                }
                let Some(sent) = orders.unanswered.remove(&o.request_id) else {
                    return;
                };
                let placed_without_ids = o.outcome == Outcome::Answered
                    && o.upstream_status.is_some_and(is_success)
                    && o.order_ids.is_empty();
                if placed_without_ids {
                    let book = (account, market, conditional);
                    let request_id = o.request_id.clone();
                    self.unrecorded.orders.push((book, request_id, sent));
                    return;
                }
                if sent.is_empty() {
                    orders.placed_by_batch.extend(o.order_ids.iter().cloned());
                }
                let symbols: BTreeSet<&String> = sent.iter().map(|order| &order.symbol).collect();
                for symbol in symbols {
                    let placed = o.order_ids.iter().map(|id| (symbol.clone(), id.clone()));
                    orders.placed.extend(placed);
                }
                // An outcome unknown leaves its orders standing for what the exchange
                // lists: a batch answered in part (one order placed, one whose execution the
                // exchange does not know) may have placed the rest. When ids came back, which
                // order each is does not say: only orders known by their client order id
                // stand, so that one placed behind keygate's back in the same symbol and
                // side cannot take the place of an order the answer placed.
                if o.outcome == Outcome::Unknown {
                    let mut sent = sent;
                    if !o.order_ids.is_empty() {
                        sent.retain(|order| order.client_order_id.is_some());
                    }
                    orders.unanswered.insert(o.request_id.clone(), sent);
                }
                // Otherwise the exchange answered, or was never reached.
                return;
            }
            EventBody::Admin(admin) => {
                if admin.change == "vault.schema"
                    && admin.detail["from"]
                        .as_i64()
                        .is_some_and(|from| from <= LAST_SCHEMA_WITHOUT_IDS)
                {
                    self.take_unrecorded();
                }
                return;
            }
            EventBody::Lost(_) => return,
        };
        // A denial that follows a request's pending event (its window ran out, or its
        // client was frozen, while its event was written; the audit log failed) says it
        // was not sent after all.
        if !r.allowed {
            self.forget_withdrawal(&r.request_id);
            if let Some((account, market, conditional)) = self.order_accounts.remove(&r.request_id)
            {
                let orders = self.book(account, market, conditional);
                orders.unanswered.remove(&r.request_id);
                orders.take_back_terms(&r.request_id);
            }
            return;
        }
        let sent = matches!(
            r.outcome,
            Outcome::Pending | Outcome::Answered | Outcome::Unknown
        );
        let Some(account) = r.account.as_ref().filter(|_| sent) else {
            return;
        };
        match r.action {
            ActionKind::Withdraw => {
                let answered_no = r.upstream_status.is_some_and(|status| !is_success(status));
                if let (Some(asset), Some(amount), false) = (&r.asset, r.amount, answered_no) {
                    let withdrawal = ForwardedWithdrawal {
                        request_id: r.request_id.clone(),
                        account: account.clone(),
                        asset: asset.clone(),
                        amount,
                        destination: r.destination.clone(),
                        network: r.network.as_deref().map(str::to_ascii_uppercase),
                        ts_ms: event.ts_ms,
                        matched: false,
                    };
                    match withdrawal.destination {
                        Some(_) => self.withdrawals.push(withdrawal),
                        None => self.unrecorded.withdrawals.push(withdrawal),
                    }
                }
            }
            ActionKind::Trade => {
                let placement = r.exchange.parse().ok().and_then(|exchange| {
                    keygate_exchanges::order_placement(exchange, &r.method, &r.path)
                });
                let Some(placement) = placement else {
                    return;
                };
                let market = placement.market;
                // The log names a symbol as a client's list does (`usdm:BTCUSDT`); the
                // exchange lists it bare. A batch names each of its orders' (none, in an
                // event written before keygate recorded them).
                let named: Vec<(String, BatchOrder)> = r
                    .named_orders()
                    .into_iter()
                    .map(|order| {
                        let listed = order.symbol.as_str();
                        let bare = market.unlisted_symbol(listed).unwrap_or(listed).to_owned();
                        (bare, order)
                    })
                    .collect();
                let conditional = placement.conditional;
                let orders = self.book(account.clone(), market, conditional);
                orders
                    .symbols
                    .extend(named.iter().map(|(symbol, _)| symbol.clone()));
                for (symbol, order) in &named {
                    orders.note_terms(&r.request_id, symbol, order, named.len());
                }
                // Only a request that places a new order stands for one the exchange
                // lists should its answer not come: a timed-out leverage call, order
                // test or modification (which keeps its order's id) must not absorb an
                // order placed behind keygate's back.
                if placement.places_new {
                    let sent = named
                        .into_iter()
                        .map(|(symbol, order)| Unanswered {
                            symbol,
                            side: order.side,
                            client_order_id: order.client_order_id,
                            ts_ms: event.ts_ms,
                            legs: placement.legs,
                            is_list: placement.legs > 1,
                        })
                        .collect();
                    orders.unanswered.insert(r.request_id.clone(), sent);
                }
                self.order_accounts
                    .insert(r.request_id.clone(), (account.clone(), market, conditional));
            }
            _ => {}
        }
    }

    /// Forgets the withdrawal request `request_id` sent, if it was one: it was refused,
    /// or not sent after all.
    fn forget_withdrawal(&mut self, request_id: &str) {
        self.withdrawals.retain(|w| w.request_id != request_id);
        self.unrecorded
            .withdrawals
            .retain(|w| w.request_id != request_id);
    }

    /// The log so far was written by a keygate that did not record order ids and
    /// destinations ([`Unrecorded`]): its orders answered without ids stand for what the
    /// exchange lists as orders sent without an answer do, and its withdrawals without a
    /// destination match one to any.
    fn take_unrecorded(&mut self) {
        let unrecorded = std::mem::take(&mut self.unrecorded);
        for ((account, market, conditional), request_id, sent) in unrecorded.orders {
            let orders = self.book(account, market, conditional);
            orders.unanswered.insert(request_id, sent);
        }
        self.withdrawals.extend(unrecorded.withdrawals);
    }

    /// The orders (or the conditional orders) of `account` in `market`.
    fn book(&mut self, account: String, market: Market, conditional: bool) -> &mut ForwardedOrders {
        let books = if conditional {
            &mut self.conditional
        } else {
            &mut self.orders
        };
        books.entry((account, market)).or_default()
    }

    /// The symbols of `market` in which keygate placed orders (or conditional orders) for
    /// `account`, or sent some whose answer has not said: not those it only cancelled,
    /// tested, or had refused. What changed the account's holdings, as far as keygate
    /// knows.
    pub fn placing_symbols(&self, account: &str, market: Market) -> BTreeSet<String> {
        let key = (account.to_owned(), market);
        [&self.orders, &self.conditional]
            .into_iter()
            .filter_map(|books| books.get(&key))
            .flat_map(|orders| {
                let placed = orders.placed.iter().map(|(symbol, _)| symbol.clone());
                let sent = orders.unanswered.values().flatten();
                placed.chain(sent.map(|order| order.symbol.clone()))
            })
            .collect()
    }

    /// The symbols of `market` that `account` traded through keygate, with orders or
    /// conditional orders.
    pub fn symbols(&self, account: &str, market: Market) -> BTreeSet<String> {
        let key = (account.to_owned(), market);
        [&self.orders, &self.conditional]
            .into_iter()
            .filter_map(|books| books.get(&key))
            .flat_map(|orders| orders.symbols.iter().cloned())
            .collect()
    }

    /// Takes the withdrawal keygate forwarded that `w`, a withdrawal of `account`, is, and
    /// says whether there was one: one like it (same asset,
    /// amount, listed as asked or once its fee was taken, destination and network, where
    /// both name one) shortly before the exchange applied it, that the exchange did not refuse, not already taken for another.
    pub fn take_forwarded_withdrawal(&mut self, account: &str, w: &ExchangeWithdrawal) -> bool {
        let fits = |f: &ForwardedWithdrawal| {
            !f.matched
                && f.account == account
                && f.asset == w.asset
                && (f.amount == w.amount
                    || w.fee.and_then(|fee| w.amount.checked_add(fee)) == Some(f.amount))
                && f.destination
                    .as_ref()
                    .is_none_or(|sent| *sent == w.destination)
                && match (&f.network, &w.network) {
                    (Some(sent), Some(listed)) => sent == listed,
                    _ => true,
                }
                && f.ts_ms <= w.applied_ms.saturating_add(CLOCK_SKEW_MS)
                && f.ts_ms.saturating_add(FORWARDED_BEFORE_MS) >= w.applied_ms
        };
        // One logged with its destination first: one an earlier keygate logged without
        // (which fits any destination) must not be taken by a withdrawal logged since,
        // leaving it to be alerted on (found by review).
        let found = self
            .withdrawals
            .iter()
            .position(|f| f.destination.is_some() && fits(f))
            .or_else(|| self.withdrawals.iter().position(fits));
        match found {
            Some(index) => {
                self.withdrawals[index].matched = true;
                true
            }
            None => false,
        }
    }

    /// Takes the order keygate forwarded that `o`, an order of `account` in `market`, is,
    /// and says whether there was one: the exchange's id
    /// came back in an answer, or an order sent shortly before got no answer and is `o`
    /// by its client order id (by symbol and side when the client gave none). An order
    /// sent is taken once: a client order id reused by someone else does not pass twice.
    pub fn take_forwarded_order(
        &mut self,
        account: &str,
        market: Market,
        o: &ExchangeOrder,
    ) -> bool {
        let Some(orders) = self.orders.get_mut(&(account.to_owned(), market)) else {
            return false;
        };
        orders.forwarded(o)
    }

    /// Whether `o`, an order of `account` in `market` that keygate forwarded, is listed
    /// with a price or quantity keygate never sent for it: a key behind keygate's back
    /// modified it in place (USD-M's `PUT /fapi/v1/order`), keeping its id.
    pub fn order_modified_elsewhere(
        &self,
        account: &str,
        market: Market,
        o: &ExchangeOrder,
    ) -> bool {
        self.orders
            .get(&(account.to_owned(), market))
            .is_some_and(|orders| orders.modified_elsewhere(o))
    }

    /// Takes the conditional order keygate forwarded that `c`, one of `account` in
    /// `market`, is, as [`Forwarded::take_forwarded_order`] does for orders. When it did, the order `c` placed
    /// on triggering counts as forwarded too: ask about conditional orders first.
    pub fn take_forwarded_conditional_order(
        &mut self,
        account: &str,
        market: Market,
        c: &ExchangeConditionalOrder,
    ) -> bool {
        let forwarded = self
            .conditional
            .get_mut(&(account.to_owned(), market))
            .is_some_and(|orders| orders.forwarded(&c.order));
        if forwarded {
            self.add_triggered_by(account, market, c);
        }
        forwarded
    }

    /// Counts the order `c` placed when it triggered as forwarded: `c` is a conditional
    /// order of `account` in `market` that keygate forwarded, as another part of the log
    /// told (one placed before the window this log was read for).
    pub fn add_triggered_by(
        &mut self,
        account: &str,
        market: Market,
        c: &ExchangeConditionalOrder,
    ) {
        if let Some(id) = &c.triggered_order_id {
            let orders = self.orders.entry((account.to_owned(), market)).or_default();
            orders.placed.insert((c.order.symbol.clone(), id.clone()));
        }
    }
}

impl ForwardedOrders {
    /// Keeps the price and quantity `order` (one of `count` a request sent, in `symbol`)
    /// was placed with or modified to, by the order it names: the one it modifies, or its
    /// own client order id; an order placed alone without one, by the id its answer names.
    fn note_terms(&mut self, request_id: &str, symbol: &str, order: &BatchOrder, count: usize) {
        let Some(terms) = &order.terms else {
            return;
        };
        let key = match (&terms.modifies, &order.client_order_id) {
            (Some(OrderRef::OrderId(id)), _) => OrderKey::Id(id.clone()),
            (Some(OrderRef::ClientOrderId(id)), _) | (None, Some(id)) => {
                OrderKey::Client(id.clone())
            }
            (None, None) => {
                if count == 1 {
                    let unplaced = (symbol.to_owned(), terms.price, terms.quantity);
                    self.terms_unplaced.insert(request_id.to_owned(), unplaced);
                }
                return;
            }
        };
        let sent = (request_id.to_owned(), terms.price, terms.quantity);
        self.terms
            .entry((symbol.to_owned(), key))
            .or_default()
            .push(sent);
    }

    /// Forgets the terms request `request_id` sent: it was not sent after all (a denial
    /// that follows a pending event, which is rare enough to look through them all).
    fn take_back_terms(&mut self, request_id: &str) {
        self.terms_unplaced.remove(request_id);
        for sent in self.terms.values_mut() {
            sent.retain(|(id, _, _)| id != request_id);
        }
    }

    /// Whether `o`, one of these orders, has a price or quantity keygate never sent for
    /// it: modified behind keygate's back. `false` for an order whose terms keygate did
    /// not keep (a market order, or one placed before keygate kept them); a price the
    /// exchange sets from the book (`priceMatch`) matches any.
    fn modified_elsewhere(&self, o: &ExchangeOrder) -> bool {
        let keys = [
            OrderKey::Id(o.id.clone()),
            OrderKey::Client(o.client_order_id.clone()),
        ];
        let mut sent = keys
            .into_iter()
            .filter_map(|key| self.terms.get(&(o.symbol.clone(), key)))
            .flatten()
            .peekable();
        if sent.peek().is_none() {
            return false;
        }
        !sent.any(|(_, price, quantity)| {
            *quantity == o.quantity && price.is_none_or(|price| price == o.price)
        })
    }

    /// Whether `o` is one of these orders: by the exchange's id from an answer, or as an
    /// order sent without one (taken once).
    fn forwarded(&mut self, o: &ExchangeOrder) -> bool {
        if self.placed.contains(&(o.symbol.clone(), o.id.clone()))
            || self.placed_by_batch.contains(&o.id)
        {
            return true;
        }
        let side = match o.side.as_str() {
            "BUY" => Some(Side::Buy),
            "SELL" => Some(Side::Sell),
            _ => None,
        };
        let sent = self.unanswered.values_mut().flatten();
        match sent.into_iter().find(|u| u.may_be(o, side)) {
            Some(u) => {
                u.legs -= 1;
                true
            }
            None => false,
        }
    }
}

/// Whether `symbol` is one of `market`'s as Binance writes them in a query without
/// encoding: `BTCUSDT` on spot, and also `BTCUSDT_250328` (a dated contract) on USD-M.
/// What keygate puts into a request of its own, signed with the real key, must be no
/// more than that.
pub fn is_plain_symbol(market: Market, symbol: &str) -> bool {
    let dated = market != Market::Spot;
    (1..=32).contains(&symbol.len())
        && symbol
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || (dated && b == b'_'))
}

/// Whether an HTTP status says the exchange did what it was asked.
fn is_success(status: u16) -> bool {
    (200..300).contains(&status)
}

#[cfg(test)]
mod tests {
    use keygate_core::{OutcomeEvent, RequestEvent};

    use super::*;

    #[test]
    fn only_plain_symbols_go_into_a_request_of_keygate_s_own() {
        for market in [Market::Spot, Market::Usdm] {
            assert!(is_plain_symbol(market, "BTCUSDT"));
            assert!(is_plain_symbol(market, "1000SATSUSDT"));
            for bad in [
                "",
                "btcusdt",
                "BTCUSDT&limit=1",
                "BTC/USDT",
                "A B",
                "币安人生USDT",
            ] {
                assert!(!is_plain_symbol(market, bad), "{bad:?}");
            }
        }
        // A dated contract is a futures symbol only.
        assert!(is_plain_symbol(Market::Usdm, "BTCUSDT_250328"));
        assert!(!is_plain_symbol(Market::Spot, "BTCUSDT_250328"));
    }

    fn order_sent(request_id: &str, client_order_id: Option<&str>, ts_ms: u64) -> Event {
        sent_to("/api/v3/order", request_id, client_order_id, ts_ms)
    }

    fn sent_to(path: &str, request_id: &str, client_order_id: Option<&str>, ts_ms: u64) -> Event {
        Event {
            ts_ms,
            body: EventBody::Request(RequestEvent {
                request_id: request_id.into(),
                exchange: "binance".into(),
                client: Some("bot1".into()),
                key_of: None,
                account: Some("main".into()),
                source_ip: "127.0.0.1".into(),
                method: "POST".into(),
                path: path.into(),
                action: ActionKind::Trade,
                symbol: Some("BTCUSDT".into()),
                side: Some(Side::Buy),
                client_order_id: client_order_id.map(str::to_owned),
                notional: None,
                amount: None,
                asset: None,
                destination: None,
                network: None,
                allowed: true,
                rule: None,
                message: None,
                upstream_status: None,
                latency_us: None,
                outcome: Outcome::Pending,
                validates_only: false,
                previous_key: false,
                forwarded_by: None,
                places_no_order: false,
                orders: Vec::new(),
                terms: None,
            }),
        }
    }

    fn answered(request_id: &str, outcome: Outcome, order_ids: &[&str], ts_ms: u64) -> Event {
        Event {
            ts_ms,
            body: EventBody::Outcome(OutcomeEvent {
                request_id: request_id.into(),
                client: Some("bot1".into()),
                upstream_status: None,
                latency_us: 1,
                outcome,
                order_ids: order_ids.iter().map(|id| (*id).to_owned()).collect(),
                interrupted: false,
            }),
        }
    }

    fn listed(symbol: &str, id: &str, client: &str, placed_ms: u64) -> ExchangeOrder {
        ExchangeOrder {
            id: id.into(),
            client_order_id: client.into(),
            symbol: symbol.into(),
            side: "BUY".into(),
            order_type: "LIMIT".into(),
            quantity: Decimal::ONE,
            price: Decimal::ONE,
            placed_ms,
        }
    }

    /// A USD-M limit order (or, with `modifies`, a modification) keygate sent, with its
    /// price and quantity.
    fn usdm_terms_sent(
        request_id: &str,
        client_order_id: Option<&str>,
        price: u32,
        quantity: u32,
        modifies: Option<OrderRef>,
        ts_ms: u64,
    ) -> Event {
        let mut event = sent_to("/fapi/v1/order", request_id, client_order_id, ts_ms);
        if let EventBody::Request(r) = &mut event.body {
            if modifies.is_some() {
                r.method = "PUT".into();
                r.client_order_id = None;
            }
            r.symbol = Some("usdm:BTCUSDT".into());
            r.terms = Some(keygate_core::OrderTerms {
                price: Some(Decimal::from(price)),
                quantity: Decimal::from(quantity),
                modifies,
            });
        }
        event
    }

    /// A regression test (found by review): a leaked key could modify an order keygate
    /// placed (USD-M modifies in place, keeping the id), and reconciliation counted the
    /// order as keygate's. Its price and quantity must be ones keygate sent for it.
    #[test]
    fn an_order_modified_behind_keygate_s_back_is_told_apart() {
        let listed_at = |id: &str, client: &str, price: u32, quantity: u32| ExchangeOrder {
            price: Decimal::from(price),
            quantity: Decimal::from(quantity),
            ..listed("BTCUSDT", id, client, 1_000)
        };
        let mut forwarded = Forwarded::default();
        forwarded.note(&usdm_terms_sent("r1", Some("a"), 50_000, 2, None, 1_000));
        forwarded.note(&answered("r1", Outcome::Answered, &["7"], 1_001));
        // Placed without a client id: known by the id its answer names.
        forwarded.note(&usdm_terms_sent("r2", None, 40_000, 1, None, 1_002));
        forwarded.note(&answered("r2", Outcome::Answered, &["8"], 1_003));
        let modified = |f: &mut Forwarded, o: &ExchangeOrder| {
            assert!(f.take_forwarded_order("main", Market::Usdm, o), "{o:?}");
            f.order_modified_elsewhere("main", Market::Usdm, o)
        };
        assert!(!modified(&mut forwarded, &listed_at("7", "a", 50_000, 2)));
        assert!(!modified(
            &mut forwarded,
            &listed_at("8", "web_x", 40_000, 1)
        ));
        assert!(modified(&mut forwarded, &listed_at("7", "a", 1, 2)));
        assert!(modified(&mut forwarded, &listed_at("7", "a", 50_000, 20)));
        assert!(modified(
            &mut forwarded,
            &listed_at("8", "web_x", 40_000, 3)
        ));
        // Modified through keygate, by either id: the new terms are keygate's too.
        let by_id = Some(OrderRef::OrderId("7".into()));
        forwarded.note(&usdm_terms_sent("r3", None, 51_000, 2, by_id, 1_004));
        let by_client = Some(OrderRef::ClientOrderId("a".into()));
        forwarded.note(&usdm_terms_sent("r4", None, 52_000, 3, by_client, 1_005));
        assert!(!modified(&mut forwarded, &listed_at("7", "a", 51_000, 2)));
        assert!(!modified(&mut forwarded, &listed_at("7", "a", 52_000, 3)));
        assert!(modified(&mut forwarded, &listed_at("7", "a", 53_000, 3)));
        // A modification denied after its pending event (not sent after all) stands
        // for nothing (found by review).
        let by_id = Some(OrderRef::OrderId("7".into()));
        let sent = usdm_terms_sent("r6", None, 99_000, 3, by_id, 1_008);
        let mut denied = sent.clone();
        if let EventBody::Request(r) = &mut denied.body {
            r.allowed = false;
            r.outcome = Outcome::NotForwarded;
        }
        forwarded.note(&sent);
        forwarded.note(&denied);
        assert!(modified(&mut forwarded, &listed_at("7", "a", 99_000, 3)));
        // An order keygate kept no terms of (a market order) is not judged.
        forwarded.note(&sent_to("/fapi/v1/order", "r5", Some("m"), 1_006));
        forwarded.note(&answered("r5", Outcome::Answered, &["9"], 1_007));
        assert!(!modified(&mut forwarded, &listed_at("9", "m", 0, 5)));
    }

    fn withdrawal_sent(request_id: &str, network: Option<&str>, ts_ms: u64) -> Event {
        let mut event = sent_to("/sapi/v1/capital/withdraw/apply", request_id, None, ts_ms);
        if let EventBody::Request(r) = &mut event.body {
            r.action = ActionKind::Withdraw;
            r.symbol = None;
            r.side = None;
            r.asset = Some("USDT".into());
            r.amount = Some(Decimal::TEN);
            r.destination = Some("TColdWallet1".into());
            r.network = network.map(str::to_owned);
        }
        event
    }

    fn withdrawn(id: &str, network: Option<&str>, applied_ms: u64) -> ExchangeWithdrawal {
        ExchangeWithdrawal {
            id: id.into(),
            asset: "USDT".into(),
            amount: Decimal::TEN,
            fee: None,
            destination: "TColdWallet1".into(),
            network: network.map(str::to_owned),
            applied_ms,
        }
    }

    /// The `vault.schema` event of an upgrade from schema `from`.
    fn schema_upgraded(from: i64, ts_ms: u64) -> Event {
        Event {
            ts_ms,
            body: EventBody::Admin(keygate_core::AdminEvent {
                actor: "cli".into(),
                change: "vault.schema".into(),
                target: "database".into(),
                detail: serde_json::json!({ "from": from, "to": 6 }),
            }),
        }
    }

    /// Found by review: a keygate before 2026-12-03 logged no exchange order ids in an
    /// order's outcome, nor a withdrawal's destination, so for a day after the upgrade
    /// every order and withdrawal it had forwarded was taken for one made behind its back
    /// (critical alerts). Once the log shows the upgrade from such a schema, they are
    /// matched as well as they can be: orders by symbol, side and time, withdrawals by
    /// asset, amount and time. Without it, an order answered with no id placed none.
    #[test]
    fn orders_and_withdrawals_of_a_keygate_before_order_ids_are_matched_after_its_upgrade() {
        let log = |upgraded_from: Option<i64>| {
            let mut forwarded = Forwarded::default();
            forwarded.note(&order_sent("r1", None, 1_000_000));
            let mut placed = answered("r1", Outcome::Answered, &[], 1_000_010);
            if let EventBody::Outcome(o) = &mut placed.body {
                o.upstream_status = Some(200);
            }
            forwarded.note(&placed);
            let mut withdrawal = withdrawal_sent("w1", None, 1_000_020);
            if let EventBody::Request(r) = &mut withdrawal.body {
                r.destination = None;
            }
            forwarded.note(&withdrawal);
            if let Some(from) = upgraded_from {
                forwarded.note(&schema_upgraded(from, 2_000_000));
            }
            forwarded
        };
        for (upgraded_from, matched) in [(Some(2), true), (Some(3), false), (None, false)] {
            let mut forwarded = log(upgraded_from);
            let order = listed("BTCUSDT", "7", "web_abc", 1_000_005);
            let at = format!("upgraded from {upgraded_from:?}");
            assert_eq!(
                forwarded.take_forwarded_order("main", Market::Spot, &order),
                matched,
                "{at}"
            );
            let withdrawal = withdrawn("x1", Some("TRX"), 1_000_100);
            assert_eq!(
                forwarded.take_forwarded_withdrawal("main", &withdrawal),
                matched,
                "{at}"
            );
        }
        // Matched once each, and only by what the old log says: another side, asset or
        // amount is not one of them.
        let mut forwarded = log(Some(2));
        let mut sold = listed("BTCUSDT", "8", "web_abc", 1_000_005);
        sold.side = "SELL".into();
        assert!(!forwarded.take_forwarded_order("main", Market::Spot, &sold));
        let mut more = withdrawn("x2", None, 1_000_100);
        more.amount = Decimal::ONE_HUNDRED;
        assert!(!forwarded.take_forwarded_withdrawal("main", &more));
        let order = listed("BTCUSDT", "7", "web_abc", 1_000_005);
        assert!(forwarded.take_forwarded_order("main", Market::Spot, &order));
        assert!(!forwarded.take_forwarded_order(
            "main",
            Market::Spot,
            &listed("BTCUSDT", "9", "x", 1_000_006)
        ));
        let withdrawal = withdrawn("x3", None, 1_000_100);
        assert!(forwarded.take_forwarded_withdrawal("main", &withdrawal));
        assert!(!forwarded.take_forwarded_withdrawal("main", &withdrawal));

        // Found by review: a withdrawal logged since, to a listed address, took the old
        // one's place when the exchange listed it first, and the old one was alerted on.
        let mut forwarded = log(Some(2));
        forwarded.note(&withdrawal_sent("w2", None, 1_300_000));
        let newest = withdrawn("x4", None, 1_300_005);
        let oldest = withdrawn("x5", None, 1_000_100);
        assert!(forwarded.take_forwarded_withdrawal("main", &newest));
        assert!(forwarded.take_forwarded_withdrawal("main", &oldest));
    }

    /// A withdrawal the exchange lists with the amount sent once its fee was taken is the
    /// one keygate forwarded for the amount asked (whichever Binance's `amount` is); an
    /// amount off by anything else is not.
    #[test]
    fn a_withdrawal_listed_net_of_its_fee_matches_the_amount_asked_for() {
        let mut forwarded = Forwarded::default();
        forwarded.note(&withdrawal_sent("w1", Some("TRX"), 1_000_000));
        let mut off = withdrawn("x1", Some("TRX"), 1_000_100);
        off.amount = Decimal::new(9, 0);
        off.fee = Some(Decimal::new(5, 1));
        assert!(!forwarded.take_forwarded_withdrawal("main", &off));
        let mut net = withdrawn("x2", Some("TRX"), 1_000_100);
        net.amount = Decimal::new(9, 0);
        net.fee = Some(Decimal::ONE);
        assert!(forwarded.take_forwarded_withdrawal("main", &net));
    }

    /// A regression test (found by review): the network was not compared, so a
    /// withdrawal made with a leaked key to a listed address on another network passed as
    /// one keygate forwarded; nor was the exchange's answer, so one it refused did too.
    #[test]
    fn a_withdrawal_matches_on_its_network_and_only_if_the_exchange_took_it() {
        let mut forwarded = Forwarded::default();
        forwarded.note(&withdrawal_sent("w1", Some("TRX"), 1_000_000));
        assert!(
            !forwarded.take_forwarded_withdrawal("main", &withdrawn("x1", Some("BSC"), 1_000_100))
        );
        assert!(
            forwarded.take_forwarded_withdrawal("main", &withdrawn("x2", Some("TRX"), 1_000_100))
        );

        let mut forwarded = Forwarded::default();
        forwarded.note(&withdrawal_sent("w2", None, 1_000_000));
        let mut refused = answered("w2", Outcome::Answered, &[], 1_000_010);
        if let EventBody::Outcome(o) = &mut refused.body {
            o.upstream_status = Some(400);
        }
        forwarded.note(&refused);
        assert!(
            !forwarded.take_forwarded_withdrawal("main", &withdrawn("x3", Some("TRX"), 1_000_100))
        );

        // Named no network (the asset's default): any the exchange reports fits.
        let mut forwarded = Forwarded::default();
        forwarded.note(&withdrawal_sent("w3", None, 1_000_000));
        forwarded.note(&answered("w3", Outcome::Unknown, &[], 1_010_000));
        assert!(
            forwarded.take_forwarded_withdrawal("main", &withdrawn("x4", Some("TRX"), 1_000_100))
        );
    }

    /// A regression test (found by review): a request whose pending event was followed
    /// by its denial (not sent after all) still stood for a withdrawal or an order made
    /// behind keygate's back.
    #[test]
    fn a_pending_request_denied_afterwards_stands_for_nothing() {
        // The denied event that follows a pending one: the same request, not forwarded.
        let denied = |mut event: Event| {
            if let EventBody::Request(r) = &mut event.body {
                r.allowed = false;
                r.outcome = Outcome::NotForwarded;
            }
            event
        };
        let mut forwarded = Forwarded::default();
        forwarded.note(&withdrawal_sent("w1", Some("TRX"), 1_000_000));
        forwarded.note(&denied(withdrawal_sent("w1", Some("TRX"), 1_000_010)));
        assert!(
            !forwarded.take_forwarded_withdrawal("main", &withdrawn("x1", Some("TRX"), 1_000_100))
        );

        forwarded.note(&order_sent("r1", Some("bot-1"), 1_000_000));
        forwarded.note(&denied(order_sent("r1", Some("bot-1"), 1_000_010)));
        let order = listed("BTCUSDT", "9", "bot-1", 1_000_100);
        assert!(!forwarded.take_forwarded_order("main", Market::Spot, &order));
    }

    /// A regression test: any timed-out trade request stood for an order the exchange
    /// lists, so a leverage call, an order test or a modification (which keeps its
    /// order's id) that got no answer absorbed an order placed behind keygate's back.
    #[test]
    fn only_a_request_that_places_an_order_stands_for_one() {
        let mut forwarded = Forwarded::default();
        for (i, path) in ["/fapi/v1/leverage", "/fapi/v1/order/test"]
            .iter()
            .enumerate()
        {
            let id = format!("s{i}");
            forwarded.note(&sent_to(path, &id, None, 1_000_000));
            forwarded.note(&answered(&id, Outcome::Unknown, &[], 1_010_000));
        }
        let mut modify = sent_to("/fapi/v1/order", "m", None, 1_000_000);
        if let EventBody::Request(r) = &mut modify.body {
            r.method = "PUT".into();
        }
        forwarded.note(&modify);
        forwarded.note(&answered("m", Outcome::Unknown, &[], 1_010_000));
        assert!(!forwarded.take_forwarded_order(
            "main",
            Market::Usdm,
            &listed("BTCUSDT", "7", "x", 1_000_100)
        ));
        // A new order that timed out still stands for one.
        forwarded.note(&sent_to("/fapi/v1/order", "n", None, 1_000_000));
        forwarded.note(&answered("n", Outcome::Unknown, &[], 1_010_000));
        assert!(forwarded.take_forwarded_order(
            "main",
            Market::Usdm,
            &listed("BTCUSDT", "7", "x", 1_000_100)
        ));
    }

    #[test]
    fn an_order_is_known_by_its_id_or_once_by_the_client_id_of_an_unanswered_one() {
        let mut forwarded = Forwarded::default();
        forwarded.note(&order_sent("r1", Some("bot-1"), 1_000_000));
        forwarded.note(&answered("r1", Outcome::Answered, &["7"], 1_000_010));
        forwarded.note(&order_sent("r2", Some("bot-2"), 1_000_000));
        forwarded.note(&answered("r2", Outcome::Unknown, &[], 1_010_000));
        forwarded.note(&order_sent("r3", Some("bot-3"), 1_000_000));
        forwarded.note(&answered("r3", Outcome::Answered, &[], 1_000_010));
        assert_eq!(
            forwarded.symbols("main", Market::Spot),
            BTreeSet::from(["BTCUSDT".into()])
        );

        // Known by the exchange's id, in its own symbol only; the client id of an order
        // that was answered proves nothing.
        assert!(forwarded.take_forwarded_order(
            "main",
            Market::Spot,
            &listed("BTCUSDT", "7", "x", 1_000_000)
        ));
        assert!(!forwarded.take_forwarded_order(
            "main",
            Market::Spot,
            &listed("ETHUSDT", "7", "x", 1_000_000)
        ));
        assert!(!forwarded.take_forwarded_order(
            "main",
            Market::Spot,
            &listed("BTCUSDT", "9", "bot-1", 1_000_000)
        ));
        assert!(!forwarded.take_forwarded_order(
            "other",
            Market::Spot,
            &listed("BTCUSDT", "7", "x", 1_000_000)
        ));
        // An order the exchange refused stands for nothing.
        assert!(!forwarded.take_forwarded_order(
            "main",
            Market::Spot,
            &listed("BTCUSDT", "8", "bot-3", 1_000_000)
        ));
        // The unanswered order, by its client id, once, and only shortly after it was sent.
        let late = 1_000_000 + FORWARDED_BEFORE_MS + 1;
        assert!(!forwarded.take_forwarded_order(
            "main",
            Market::Spot,
            &listed("BTCUSDT", "8", "bot-2", late)
        ));
        assert!(forwarded.take_forwarded_order(
            "main",
            Market::Spot,
            &listed("BTCUSDT", "8", "bot-2", 1_000_500)
        ));
        assert!(!forwarded.take_forwarded_order(
            "main",
            Market::Spot,
            &listed("BTCUSDT", "9", "bot-2", 1_000_600)
        ));
    }

    /// USD-M futures orders are reconciled too, apart from spot's: each market numbers
    /// its orders on its own, so a spot order's id says nothing of a futures order's.
    #[test]
    fn futures_orders_are_known_in_their_own_market_only() {
        let mut forwarded = Forwarded::default();
        // The gateway records a futures order's symbol as a client's list names it.
        let mut futures = sent_to("/fapi/v1/order", "r1", Some("bot-1"), 1_000_000);
        if let EventBody::Request(r) = &mut futures.body {
            r.symbol = Some("usdm:BTCUSDT".into());
        }
        forwarded.note(&futures);
        forwarded.note(&answered("r1", Outcome::Answered, &["7"], 1_000_010));
        forwarded.note(&sent_to("/dapi/v1/order", "r2", Some("bot-2"), 1_000_000));
        assert_eq!(
            forwarded.symbols("main", Market::Usdm),
            BTreeSet::from(["BTCUSDT".into()])
        );
        assert!(forwarded.symbols("main", Market::Spot).is_empty());
        let order = listed("BTCUSDT", "7", "x", 1_000_000);
        assert!(forwarded.take_forwarded_order("main", Market::Usdm, &order));
        assert!(!forwarded.take_forwarded_order("main", Market::Spot, &order));
        // COIN-M orders are not reconciled: none is recorded.
        assert!(forwarded.symbols("main", Market::Coinm).is_empty());
    }

    /// A regression test: a USD-M conditional order (`/fapi/v1/algoOrder`) is answered with
    /// an `algoId`, numbered apart from orders; when it triggered, the order it placed was
    /// reported as placed behind keygate's back. Now a conditional order keygate
    /// forwarded is known by its algo id (or, unanswered, its `clientAlgoId`), and the
    /// order it placed by the id the exchange lists it with.
    #[test]
    fn the_order_a_forwarded_conditional_order_placed_is_known() {
        let mut forwarded = Forwarded::default();
        forwarded.note(&sent_to(
            "/fapi/v1/algoOrder",
            "r1",
            Some("stop-1"),
            1_000_000,
        ));
        forwarded.note(&answered("r1", Outcome::Answered, &["1000001"], 1_000_010));
        forwarded.note(&sent_to(
            "/fapi/v1/algoOrder",
            "r2",
            Some("stop-2"),
            1_000_000,
        ));
        forwarded.note(&answered("r2", Outcome::Unknown, &[], 1_000_010));
        // An order whose id is a number a conditional order also has, and a spot order.
        forwarded.note(&sent_to("/fapi/v1/order", "r3", Some("o-3"), 1_000_000));
        forwarded.note(&answered("r3", Outcome::Answered, &["1000009"], 1_000_010));
        forwarded.note(&sent_to("/api/v3/order", "r4", Some("o-4"), 1_000_000));
        forwarded.note(&answered("r4", Outcome::Answered, &["5"], 1_000_010));
        let conditional =
            |id: &str, client: &str, triggered: Option<&str>| ExchangeConditionalOrder {
                order: listed("BTCUSDT", id, client, 1_000_100),
                triggered_order_id: triggered.map(str::to_owned),
            };
        let placed = listed("BTCUSDT", "77", "made-up-by-the-exchange", 1_500_000);
        // Asked about first, the order a stranger's conditional order placed stays unknown.
        let stranger = conditional("1000009", "x", Some("77"));
        assert!(!forwarded.take_forwarded_conditional_order("main", Market::Usdm, &stranger));
        assert!(!forwarded.take_forwarded_order("main", Market::Usdm, &placed));
        // Conditional ids are not order ids, nor the other way round.
        let same_number = conditional("1000009", "x", None);
        assert!(!forwarded.take_forwarded_conditional_order("main", Market::Usdm, &same_number));
        assert!(!forwarded.take_forwarded_order(
            "main",
            Market::Usdm,
            &listed("BTCUSDT", "1000001", "x", 1_000_100)
        ));
        // keygate's, by its algo id from the answer: the order it placed is known.
        let ours = conditional("1000001", "stop-1", Some("78"));
        assert!(forwarded.take_forwarded_conditional_order("main", Market::Usdm, &ours));
        let triggered = listed("BTCUSDT", "78", "made-up-by-the-exchange", 1_500_000);
        assert!(forwarded.take_forwarded_order("main", Market::Usdm, &triggered));
        // In its own market only.
        assert!(!forwarded.take_forwarded_order("main", Market::Spot, &triggered));
        // The unanswered one, by its clientAlgoId, once.
        let unanswered = conditional("1000002", "stop-2", Some("79"));
        assert!(forwarded.take_forwarded_conditional_order("main", Market::Usdm, &unanswered));
        let again = conditional("1000003", "stop-2", None);
        assert!(!forwarded.take_forwarded_conditional_order("main", Market::Usdm, &again));
        assert!(forwarded.take_forwarded_order(
            "main",
            Market::Usdm,
            &listed("BTCUSDT", "79", "y", 1_500_000)
        ));
        assert_eq!(
            forwarded.symbols("main", Market::Usdm),
            BTreeSet::from(["BTCUSDT".into()])
        );
    }

    /// A regression test: a batch (`/fapi/v1/batchOrders`) names no one symbol, so its
    /// request was not recorded, and the orders its answer placed were reported as
    /// placed behind keygate's back.
    #[test]
    fn the_orders_a_batch_placed_are_known_by_their_ids() {
        let mut forwarded = Forwarded::default();
        let mut batch = sent_to("/fapi/v1/batchOrders", "r1", None, 1_000_000);
        if let EventBody::Request(r) = &mut batch.body {
            r.symbol = None;
        }
        forwarded.note(&batch);
        forwarded.note(&answered("r1", Outcome::Answered, &["7", "8"], 1_000_010));
        for id in ["7", "8"] {
            let order = listed("ETHUSDT", id, "x", 1_000_000);
            assert!(forwarded.take_forwarded_order("main", Market::Usdm, &order));
        }
        assert!(!forwarded.take_forwarded_order(
            "main",
            Market::Usdm,
            &listed("ETHUSDT", "9", "x", 1_000_000)
        ));
        assert!(!forwarded.take_forwarded_order(
            "main",
            Market::Spot,
            &listed("ETHUSDT", "7", "x", 1_000_000)
        ));
        assert!(forwarded.symbols("main", Market::Usdm).is_empty());
    }

    /// The event of a batch of a BTCUSDT buy (client order id `a`) and an ETHUSDT buy.
    fn batch_of_two(request_id: &str, ts_ms: u64) -> Event {
        let mut batch = sent_to("/fapi/v1/batchOrders", request_id, None, ts_ms);
        if let EventBody::Request(r) = &mut batch.body {
            r.symbol = None;
            r.side = None;
            r.orders = vec![
                BatchOrder {
                    symbol: "usdm:BTCUSDT".into(),
                    side: Some(Side::Buy),
                    client_order_id: Some("a".into()),
                    terms: None,
                    notional: None,
                },
                BatchOrder {
                    symbol: "usdm:ETHUSDT".into(),
                    side: Some(Side::Buy),
                    client_order_id: None,
                    terms: None,
                    notional: None,
                },
            ];
        }
        batch
    }

    /// A regression test (found by review): the ids a batch's answer gave were taken in
    /// any symbol, so a leaked key's order with the same id in another symbol (each
    /// symbol numbers its orders) passed as keygate's. They stand in the batch's symbols.
    #[test]
    fn an_id_from_a_batch_is_known_in_the_batch_s_symbols_only() {
        let mut forwarded = Forwarded::default();
        forwarded.note(&batch_of_two("r1", 1_000_000));
        forwarded.note(&answered("r1", Outcome::Answered, &["123"], 1_000_010));
        let order = |symbol| listed(symbol, "123", "other", 1_000_100);
        assert!(!forwarded.take_forwarded_order("main", Market::Usdm, &order("SOLUSDT")));
        assert!(forwarded.take_forwarded_order("main", Market::Usdm, &order("ETHUSDT")));
    }

    /// A regression test (found by review): a batch answered in part, one order placed
    /// and one whose execution the exchange does not know (outcome unknown), stood for
    /// nothing more once an id came back: the second order, placed after all, was
    /// reported as placed behind keygate's back.
    #[test]
    fn a_batch_answered_in_part_with_its_outcome_unknown_still_stands_for_its_orders() {
        let mut forwarded = Forwarded::default();
        let mut batch = batch_of_two("r1", 1_000_000);
        if let EventBody::Request(r) = &mut batch.body {
            r.orders[1].client_order_id = Some("b".into());
        }
        forwarded.note(&batch);
        forwarded.note(&answered("r1", Outcome::Unknown, &["11"], 1_000_010));
        assert!(forwarded.take_forwarded_order(
            "main",
            Market::Usdm,
            &listed("BTCUSDT", "11", "a", 1_000_100)
        ));
        assert!(forwarded.take_forwarded_order(
            "main",
            Market::Usdm,
            &listed("ETHUSDT", "12", "b", 1_000_100)
        ));
    }

    /// Found by review: with ids back and the outcome unknown, every order of the batch
    /// stood again, and one the answer placed (known by its id) left its place free for
    /// an order of the same symbol and side placed behind keygate's back. Only orders
    /// known by their client order id stand then.
    #[test]
    fn a_batch_answered_in_part_leaves_no_place_an_order_behind_its_back_can_take() {
        let mut forwarded = Forwarded::default();
        let mut batch = batch_of_two("r1", 1_000_000);
        if let EventBody::Request(r) = &mut batch.body {
            r.orders[0].client_order_id = None;
        }
        forwarded.note(&batch);
        forwarded.note(&answered("r1", Outcome::Unknown, &["11"], 1_000_010));
        assert!(forwarded.take_forwarded_order(
            "main",
            Market::Usdm,
            &listed("BTCUSDT", "11", "made-up", 1_000_100)
        ));
        assert!(!forwarded.take_forwarded_order(
            "main",
            Market::Usdm,
            &listed("BTCUSDT", "99", "made-up-2", 1_000_200)
        ));
    }

    /// A regression test: a batch whose answer never came (a timeout: outcome unknown)
    /// was kept as one order in no symbol, which matched nothing the exchange listed, so
    /// the batch's own orders were reported as placed behind keygate's back: a false
    /// critical alert.
    #[test]
    fn an_unanswered_batch_stands_for_each_of_its_orders() {
        let mut forwarded = Forwarded::default();
        let mut batch = sent_to("/fapi/v1/batchOrders", "r1", None, 1_000_000);
        if let EventBody::Request(r) = &mut batch.body {
            r.symbol = None;
            r.side = None;
            r.orders = vec![
                BatchOrder {
                    symbol: "usdm:BTCUSDT".into(),
                    side: Some(Side::Buy),
                    client_order_id: Some("a".into()),
                    terms: None,
                    notional: None,
                },
                BatchOrder {
                    symbol: "usdm:ETHUSDT".into(),
                    side: Some(Side::Buy),
                    client_order_id: None,
                    terms: None,
                    notional: None,
                },
            ];
        }
        forwarded.note(&batch);
        forwarded.note(&answered("r1", Outcome::Unknown, &[], 1_010_000));
        // The exchange lists the symbols the batch traded in.
        assert_eq!(
            forwarded.symbols("main", Market::Usdm),
            BTreeSet::from(["BTCUSDT".into(), "ETHUSDT".into()])
        );
        // Each of its orders, by client order id or (without one) by symbol and side.
        assert!(forwarded.take_forwarded_order(
            "main",
            Market::Usdm,
            &listed("BTCUSDT", "11", "a", 1_000_100)
        ));
        assert!(forwarded.take_forwarded_order(
            "main",
            Market::Usdm,
            &listed("ETHUSDT", "12", "made-up", 1_000_100)
        ));
        // Each once; and not an order under another client order id, in another symbol,
        // or in the other market.
        for (i, (market, symbol, client)) in [
            (Market::Usdm, "BTCUSDT", "b"),
            (Market::Usdm, "ETHUSDT", "made-up-2"),
            (Market::Usdm, "SOLUSDT", "a"),
            (Market::Spot, "BTCUSDT", "a"),
        ]
        .into_iter()
        .enumerate()
        {
            let order = listed(symbol, &format!("2{i}"), client, 1_000_100);
            assert!(
                !forwarded.take_forwarded_order("main", market, &order),
                "{market} {symbol} {client}"
            );
        }
    }

    /// A batch of one order answered with its id is known in its symbol.
    #[test]
    fn a_batch_of_one_answered_is_known_by_symbol_and_id() {
        let mut forwarded = Forwarded::default();
        let mut batch = sent_to("/fapi/v1/batchOrders", "r1", None, 1_000_000);
        if let EventBody::Request(r) = &mut batch.body {
            r.symbol = None;
            r.orders = vec![BatchOrder {
                symbol: "usdm:BTCUSDT".into(),
                side: Some(Side::Buy),
                client_order_id: None,
                terms: None,
                notional: None,
            }];
        }
        forwarded.note(&batch);
        forwarded.note(&answered("r1", Outcome::Answered, &["7"], 1_000_010));
        assert!(forwarded.take_forwarded_order(
            "main",
            Market::Usdm,
            &listed("BTCUSDT", "7", "x", 1_000_000)
        ));
        assert!(!forwarded.take_forwarded_order(
            "main",
            Market::Usdm,
            &listed("ETHUSDT", "7", "x", 1_000_000)
        ));
    }

    #[test]
    fn an_unanswered_order_list_stands_for_each_of_its_legs_once() {
        let mut forwarded = Forwarded::default();
        forwarded.note(&sent_to("/api/v3/orderList/oco", "r1", None, 1_000_000));
        forwarded.note(&answered("r1", Outcome::Unknown, &[], 1_010_000));
        let sell = |id: &str| ExchangeOrder {
            side: "SELL".into(),
            ..listed("BTCUSDT", id, "leg", 1_000_100)
        };
        assert!(forwarded.take_forwarded_order("main", Market::Spot, &sell("1")));
        assert!(forwarded.take_forwarded_order(
            "main",
            Market::Spot,
            &listed("BTCUSDT", "2", "leg", 1_000_100)
        ));
        assert!(!forwarded.take_forwarded_order("main", Market::Spot, &sell("3")));
        // A regression test: an OTO names its sides `workingSide` and `pendingSide`, so
        // the log has no side for it, and its last leg, matched once one leg was left by
        // side or client order id, was reported as an order keygate never sent.
        let mut forwarded = Forwarded::default();
        let mut oto = sent_to("/api/v3/orderList/oto", "r2", Some("list-id"), 2_000_000);
        if let EventBody::Request(r) = &mut oto.body {
            r.side = None;
        }
        forwarded.note(&oto);
        forwarded.note(&answered("r2", Outcome::Unknown, &[], 2_010_000));
        let leg = |id: &str, side: &str| ExchangeOrder {
            side: side.into(),
            ..listed("BTCUSDT", id, &format!("leg-{id}"), 2_000_100)
        };
        assert!(forwarded.take_forwarded_order("main", Market::Spot, &leg("4", "SELL")));
        assert!(forwarded.take_forwarded_order("main", Market::Spot, &leg("5", "BUY")));
        assert!(!forwarded.take_forwarded_order("main", Market::Spot, &leg("6", "BUY")));
    }

    #[test]
    fn an_order_still_in_flight_is_known_by_symbol_and_side_without_a_client_id() {
        let mut forwarded = Forwarded::default();
        forwarded.note(&order_sent("r1", None, 1_000_000));
        assert!(forwarded.take_forwarded_order(
            "main",
            Market::Spot,
            &listed("BTCUSDT", "5", "made-up", 1_000_100)
        ));
        assert!(!forwarded.take_forwarded_order(
            "main",
            Market::Spot,
            &listed("BTCUSDT", "6", "made-up", 1_000_200)
        ));
    }
}
