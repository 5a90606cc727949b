//! `keygate reconcile`: withdrawals and orders from an account that keygate never
//! forwarded. The exchange lists an account's withdrawals and orders whoever asked for
//! them, so one that nobody made by hand on the exchange's own site was made with a
//! leaked key. (An account, or sub-account, that only keygate uses has no such doubt.)
//!
//! Withdrawals are listed account-wide. Orders are listed in spot and in USD-M futures,
//! each market on its own (each numbers its orders apart). Binance lists orders one symbol
//! at a time, so only some symbols of each market are asked for: those the account traded
//! through keygate in the window, those its trading clients may trade, those it has an
//! open order in now, whoever placed it (one account-wide read per market), and those a
//! trade left a trace in: on spot, two assets whose holdings both changed since the last
//! run (a trade changes both; [`symbols_of_changed_holdings`]), on USD-M, a trade's fee
//! paid ([`symbols_with_trade_fees`]). USD-M conditional orders (Binance's algo orders)
//! are listed in the same symbols, plus those with one waiting, and checked first: the
//! order one keygate forwarded placed when it triggered is known by the id the exchange
//! lists it with. A USD-M order keygate placed is also checked for a price or quantity
//! keygate never sent for it: USD-M modifies an order in place, keeping its id. A leaked
//! key that bought and sold a spot coin back between two runs, or traded COIN-M futures,
//! is not seen here.
//!
//! Reconciliation spends request weight the bots need too, so it keeps to a ceiling of
//! its own ([`Pacer`]): past it, it waits for the exchange's minute to turn.
//!
//! Matching what the exchanges list against the log is `keygate_monitor::reconcile`'s;
//! this module asks the exchanges, reports, and runs the watch inside `serve`.

use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::Path;
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use keygate_audit::AuditKey;
use keygate_core::{
    ClientStatus, Exchange, ExchangeConditionalOrder, ExchangeOrder, ExchangeWithdrawal, Market,
    Scope,
};
use keygate_exchanges::{Adapter, Binance, KeyPermissions};
use keygate_gateway::weight::WeightGauge;
use keygate_monitor::reconcile::{is_plain_symbol, Forwarded, FORWARDED_BEFORE_MS};
use keygate_monitor::{Alert, AlertRule, Alerter, Severity};
use keygate_store::Store;
use keygate_vault::MasterKey;
use rust_decimal::Decimal;
use serde::Serialize;

use crate::home::{now_ms, parse_duration, Unlocked};
use crate::output::{escape_controls, print_json, rfc3339};
use crate::remote::{Answer, Exchanges, ReadError};

/// How long after an order keygate forwarded its record is surely in the audit log: the
/// exchange's id of it comes in an outcome event written in the background, within a
/// fraction of a second. Newer orders are left to the next reconciliation.
const ORDER_SETTLE_MS: u64 = 5_000;
/// How long before the window conditional orders are listed, at the least: the order a
/// stop placed then and triggered in the window is known by it. An older stop's order is
/// reported. See [`conditional_orders_from`].
const TRIGGER_LOOKBACK_MS: u64 = 5 * 24 * 3600 * 1000;
/// The most order lists one account's reconciliation asks for (symbols × spans, each
/// Binance `allOrders` call weighing 20 of its 6000 a minute).
const MAX_ORDER_QUERIES: usize = 60;
/// The most symbols whose orders placed in the day before the window are listed, to find
/// an order a leaked key moved in place that then filled in the window (one list each).
const MAX_FILLED_BEFORE_SYMBOLS: usize = 20;

/// How far this host's clock may be off the exchange's for a window placed on it to be
/// checked: a minute, the window's own margins (`ORDER_SETTLE_MS`, `FORWARDED_BEFORE_MS`)
/// cover less than that.
const MAX_CLOCK_SKEW_MS: u64 = 60_000;

/// How many minutes in a row reconciliation waits for the weight to come down before it
/// leaves the rest of its lists to the next run.
const MAX_WEIGHT_WAITS: u32 = 2;

/// The longest window `keygate reconcile --since` takes: as far back as Binance lists an
/// account's withdrawals ([`Adapter::withdrawal_history_span_ms`], 90 days), since a
/// longer window could not be read in full: it is refused rather than checked in part.
/// It is checked before any account is read, so it is Binance's, as its message and
/// `--since`'s help say: a second exchange makes it the shortest of their spans.
fn max_window() -> Duration {
    Duration::from_millis(Binance.withdrawal_history_span_ms())
}

/// `keygate reconcile`
#[derive(Args, Debug)]
pub struct ReconcileArgs {
    /// The window: withdrawals applied for and orders placed from this long ago (`24h`,
    /// `7d`; at most `90d`, the longest Binance lists withdrawals over).
    #[arg(long, value_name = "DURATION", default_value = "24h")]
    pub since: String,
    /// Print JSON: an array of one object per account.
    #[arg(long)]
    pub json: bool,
}

/// What one account's exchange listed, against the audit log.
#[derive(Serialize)]
pub(crate) struct AccountReport {
    /// The account's label.
    pub account: String,
    /// Withdrawals the exchange listed in the window.
    pub withdrawals: usize,
    /// Why the exchange could not be asked for its withdrawals, or for all of them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Whether asking again may list the withdrawals that could not be.
    #[serde(skip)]
    pub withdrawals_may_pass: bool,
    /// Each failure of the run, withdrawals' and orders', named by its list.
    #[serde(skip)]
    pub failures: Vec<Failure>,
    /// The withdrawals keygate did not forward.
    pub not_through_keygate: Vec<Unmatched>,
    /// The symbols whose orders were asked for, as a client's symbol list names them:
    /// `BTCUSDT` on spot, `usdm:BTCUSDT` on USD-M.
    pub symbols: Vec<String>,
    /// The symbols whose orders were to be asked for and were not (more than the list
    /// cap allows for the window, the weight spent, or no plain symbol), named the same
    /// way: why is in `orders_error`.
    pub symbols_not_asked: Vec<String>,
    /// Orders the exchange listed in those symbols in the window.
    pub orders: usize,
    /// The orders keygate did not forward.
    pub orders_not_through_keygate: Vec<UnmatchedOrder>,
    /// Why the exchange could not be asked for the orders.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub orders_error: Option<String>,
    /// Whether asking again may list the orders that could not be: then the next run of
    /// `serve`'s watch goes back for them.
    #[serde(skip)]
    pub orders_may_pass: bool,
}

/// An order the exchange placed that keygate did not forward.
#[derive(Serialize)]
pub(crate) struct UnmatchedOrder {
    /// The exchange's id of it.
    pub id: String,
    /// Its market: `spot` or `usdm`.
    pub market: &'static str,
    /// A conditional order (Binance's USD-M algo orders), waiting for its trigger price
    /// apart from the order book: `id` is its `algoId`, `client_order_id` its
    /// `clientAlgoId`, `price` its trigger price.
    pub conditional: bool,
    pub client_order_id: String,
    pub symbol: String,
    pub side: String,
    #[serde(rename = "type")]
    pub order_type: String,
    pub quantity: String,
    pub price: String,
    pub placed_at: String,
    /// An order keygate placed, listed with a price or quantity keygate never sent for
    /// it: modified in place behind its back (USD-M's `PUT /fapi/v1/order`).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub modified_outside_keygate: bool,
}

impl UnmatchedOrder {
    fn new(market: Market, o: ExchangeOrder, conditional: bool) -> UnmatchedOrder {
        UnmatchedOrder {
            id: o.id,
            market: market.as_str(),
            conditional,
            client_order_id: o.client_order_id,
            symbol: o.symbol,
            side: o.side,
            order_type: o.order_type,
            quantity: o.quantity.normalize().to_string(),
            price: o.price.normalize().to_string(),
            placed_at: rfc3339(o.placed_ms),
            modified_outside_keygate: false,
        }
    }

    /// An order keygate placed that was modified behind its back to what `o` says.
    fn modified(market: Market, o: ExchangeOrder) -> UnmatchedOrder {
        UnmatchedOrder {
            modified_outside_keygate: true,
            ..UnmatchedOrder::new(market, o, false)
        }
    }

    /// What it is, in a sentence: `order 7 (BUY LIMIT 1 BTCUSDT at 50000)`, or for a
    /// conditional order `conditional order 1000001 (SELL STOP_MARKET 1 usdm:BTCUSDT,
    /// trigger price 60000)`.
    fn what(&self) -> String {
        let (book, at) = if self.conditional {
            ("conditional order", ", trigger price")
        } else {
            ("order", " at")
        };
        let modified = match self.modified_outside_keygate {
            true => ", which keygate placed, MODIFIED to this outside keygate",
            false => "",
        };
        // A market order has no price: the exchange lists 0 (found by review: "at 0"
        // read as a price of nothing).
        let priced = match self.price.as_str() {
            "0" => String::new(),
            price => format!("{at} {price}"),
        };
        format!(
            "{book} {} ({} {} {} {}{priced}{modified})",
            self.id,
            self.side,
            self.order_type,
            self.quantity,
            self.listed_symbol(),
        )
    }

    /// Its symbol as a client's symbol list names it: `usdm:BTCUSDT` for a futures order.
    fn listed_symbol(&self) -> String {
        match self.market {
            "spot" => self.symbol.clone(),
            market => format!("{market}:{}", self.symbol),
        }
    }
}

/// A withdrawal the exchange made that keygate did not forward.
#[derive(Serialize)]
pub(crate) struct Unmatched {
    /// The exchange's id of it.
    pub id: String,
    pub asset: String,
    pub amount: String,
    pub destination: String,
    pub applied_at: String,
}

/// Compares each account's withdrawals and orders at its exchange with those keygate
/// forwarded. Exit code 1 when one was not forwarded by keygate; otherwise 2 when an
/// exchange could not be asked, so that a cron job tells a leak from an outage.
pub fn run(vault: &Unlocked, args: &ReconcileArgs) -> anyhow::Result<i32> {
    let since = parse_duration(&args.since).context("--since")?;
    let max_window = max_window();
    if since > max_window {
        let days = max_window.as_secs() / (24 * 3600);
        anyhow::bail!(
            "--since {}: Binance lists an account's withdrawals over the last {days} days at \
             most, so a longer window cannot be read in full; use {days}d or less",
            args.since.trim()
        );
    }
    let since_ms = now_ms().saturating_sub(since.as_millis() as u64);
    let exchanges = Exchanges::keeping_pauses_in(vault.store.path())?;
    let reports = reconcile(
        &vault.store,
        &vault.master,
        &exchanges,
        since_ms,
        &wait_for_the_next_minute,
        &|| false,
    )?;
    let found = reports
        .iter()
        .any(|r| !r.not_through_keygate.is_empty() || !r.orders_not_through_keygate.is_empty());
    let unasked = reports
        .iter()
        .any(|r| r.error.is_some() || r.orders_error.is_some());
    if args.json {
        print_json(&reports)?;
    } else {
        print(&reports, since_ms);
    }
    Ok(match (found, unasked) {
        (true, _) => 1,
        (false, true) => crate::EXIT_ERROR,
        (false, false) => 0,
    })
}

/// Each account's withdrawals and orders at its exchange since `since_ms`, against those
/// keygate forwarded. `wait` waits for the next minute when the exchange's weight calls
/// for it, and says `false` when reconciliation is to stop instead; `stopping` says, before
/// each read, whether it is to stop (what is not read is left for the next run).
pub(crate) fn reconcile(
    store: &Store,
    master: &MasterKey,
    exchanges: &Exchanges,
    since_ms: u64,
    wait: &dyn Fn() -> bool,
    stopping: &dyn Fn() -> bool,
) -> anyhow::Result<Vec<AccountReport>> {
    let key = AuditKey::of_vault(master);
    let log_from = since_ms.saturating_sub(FORWARDED_BEFORE_MS);
    let traded = forwarded(store, &key, log_from)?;
    let tradable = tradable_symbols(store)?;
    let until_ms = now_ms().saturating_sub(ORDER_SETTLE_MS);
    // An order placed before the window (an earlier run checked how it was placed) and
    // still open is checked for modification against the log back to its placing: a day
    // at most, which a busy gateway's log takes seconds to read. One placed earlier is not
    // checked, rather than checked against part of what keygate sent for it.
    let checks_resting_since = now_ms().saturating_sub(RESTING_LOOKBACK_MS) + FORWARDED_BEFORE_MS;
    let run = Run {
        store,
        master,
        exchanges,
        since_ms,
        until_ms,
        checks_resting_since,
        traded: &traded,
        tradable: &tradable,
        wait,
        stopping,
    };
    let mut asked = Vec::new();
    for account in store.sealed_accounts(master).context("reading accounts")? {
        // The one place that knows an exchange by name: the lists are read through its
        // adapter, by code written once for every exchange.
        let listed = match account.exchange {
            Exchange::Binance => list_account(&Binance, &run, &account),
        };
        asked.push((account.label.to_string(), listed));
    }
    // The log again, now that the exchanges have answered: what they listed was sent
    // before they listed it, and its request event was durable before it was sent.
    let mut forwarded = forwarded(store, &key, log_from)?;
    // And, once for every account, back to the placing of the earliest order still open
    // from before the window: each is checked against every price and quantity keygate
    // sent for it since.
    let resting_from = asked
        .iter()
        .flat_map(|(_, listed)| &listed.resting_from_before)
        .map(|(_, o)| o.placed_ms.saturating_sub(FORWARDED_BEFORE_MS))
        .min();
    let since_placed = resting_from
        .map(|from| forwarded_between(store, &key, from, u64::MAX))
        .transpose()?;
    let mut reports = Vec::new();
    for (
        label,
        Listed {
            withdrawals,
            orders: listed_orders,
            conditional_orders,
            symbols,
            symbols_not_asked,
            resting_from_before,
        },
    ) in asked
    {
        // One list that cannot be had does not hide the other, nor what part of it was.
        let failures = failures_of(&withdrawals.failures, &listed_orders.failures);
        let error = (!withdrawals.failures.is_empty()).then(|| told(&withdrawals.failures));
        let withdrawals_may_pass = error.is_some() && withdrawals.may_pass;
        let withdrawals = withdrawals.items;
        let orders_error =
            (!listed_orders.failures.is_empty()).then(|| told(&listed_orders.failures));
        let orders_may_pass = orders_error.is_some() && listed_orders.may_pass;
        let listed_orders = listed_orders.items;
        // Conditional orders first: the order one keygate forwarded placed on triggering
        // is known by what the exchange lists of it. Those placed before the window are
        // not reported (an earlier run did); the log around each one whose order is
        // listed here tells whether keygate forwarded it.
        let (conditional_orders, earlier): (Vec<_>, Vec<_>) = conditional_orders
            .into_iter()
            .partition(|(_, c)| c.order.placed_ms >= since_ms);
        for (market, c) in earlier {
            let Some(id) = &c.triggered_order_id else {
                continue;
            };
            let placed_here = |(m, o): &(Market, ExchangeOrder)| {
                *m == market && o.id == *id && o.symbol == c.order.symbol
            };
            if !listed_orders.iter().any(placed_here) {
                continue;
            }
            let mut around = forwarded_between(
                store,
                &key,
                c.order.placed_ms.saturating_sub(FORWARDED_BEFORE_MS),
                c.order.placed_ms + FORWARDED_BEFORE_MS,
            )?;
            if around.take_forwarded_conditional_order(&label, market, &c) {
                forwarded.add_triggered_by(&label, market, &c);
            }
        }
        let listed_count = listed_orders.len() + conditional_orders.len();
        let mut not_forwarded: Vec<UnmatchedOrder> = conditional_orders
            .into_iter()
            .filter(|(market, c)| !forwarded.take_forwarded_conditional_order(&label, *market, c))
            .map(|(market, c)| UnmatchedOrder::new(market, c.order, true))
            .collect();
        not_forwarded.extend(listed_orders.into_iter().filter_map(|(market, o)| {
            if !forwarded.take_forwarded_order(&label, market, &o) {
                Some(UnmatchedOrder::new(market, o, false))
            } else if forwarded.order_modified_elsewhere(&label, market, &o) {
                Some(UnmatchedOrder::modified(market, o))
            } else {
                None
            }
        }));
        if let Some(since_placed) = &since_placed {
            not_forwarded.extend(
                resting_from_before
                    .into_iter()
                    .filter(|(market, o)| since_placed.order_modified_elsewhere(&label, *market, o))
                    .map(|(market, o)| UnmatchedOrder::modified(market, o)),
            );
        }
        reports.push(AccountReport {
            withdrawals: withdrawals.len(),
            not_through_keygate: withdrawals
                .into_iter()
                .filter(|w| !forwarded.take_forwarded_withdrawal(&label, w))
                .map(|w| Unmatched {
                    id: w.id,
                    asset: w.asset,
                    amount: w.amount.normalize().to_string(),
                    destination: w.destination,
                    applied_at: rfc3339(w.applied_ms),
                })
                .collect(),
            error,
            withdrawals_may_pass,
            failures,
            symbols,
            symbols_not_asked,
            orders: listed_count,
            orders_not_through_keygate: not_forwarded,
            orders_error,
            orders_may_pass,
            account: label,
        });
    }
    Ok(reports)
}

/// What every account's reads in one run share.
struct Run<'r> {
    store: &'r Store,
    master: &'r MasterKey,
    exchanges: &'r Exchanges,
    /// The window: from `since_ms` to `until_ms`.
    since_ms: u64,
    until_ms: u64,
    /// From when the USD-M orders placed before the window and still open are checked
    /// for modification.
    checks_resting_since: u64,
    /// What keygate forwarded, as the log said before the exchanges were asked.
    traded: &'r Forwarded,
    /// By account, the symbols its trading clients may trade.
    tradable: &'r HashMap<String, BTreeSet<String>>,
    wait: &'r dyn Fn() -> bool,
    stopping: &'r dyn Fn() -> bool,
}

/// What one account's exchange listed in the window, before it is matched against the
/// log.
struct Listed {
    withdrawals: Partial<ExchangeWithdrawal>,
    orders: Partial<(Market, ExchangeOrder)>,
    conditional_orders: Vec<(Market, ExchangeConditionalOrder)>,
    /// The symbols whose orders were asked for, as a client's symbol list names them.
    symbols: Vec<String>,
    /// The symbols whose orders were to be asked for and were not, named the same way.
    symbols_not_asked: Vec<String>,
    /// USD-M orders still open that were placed before the window (since
    /// `checks_resting_since`): not listed again, but a leaked key may have modified one
    /// in place since.
    resting_from_before: Vec<(Market, ExchangeOrder)>,
}

/// What `account`'s exchange, through its `adapter`, lists of the account's withdrawals
/// and orders in `run`'s window.
fn list_account<A: Adapter>(
    adapter: &A,
    run: &Run<'_>,
    account: &keygate_store::Account,
) -> Listed {
    let Run {
        store,
        master,
        exchanges,
        since_ms,
        until_ms,
        checks_resting_since,
        traded,
        tradable,
        wait,
        stopping,
    } = *run;
    let label = account.label.to_string();
    let mut asked_symbols = Vec::new();
    let mut unasked_symbols = Vec::new();
    let mut resting_from_before: Vec<(Market, ExchangeOrder)> = Vec::new();
    let signed_read =
        |path: &str, query: &str| exchanges.signed_read(adapter, master, account, path, query);
    // Each weight pool's reads have a pacer of their own: withdrawals' (and the key's
    // permissions') first.
    let ceiling = adapter.reconciliation_weight_ceiling(withdrawals_pool(adapter));
    let pacer = Pacer::new(adapter, &signed_read, wait, stopping, ceiling);
    let mut withdrawals = list_withdrawals(&pacer, since_ms);
    // A key that may not trade futures placed no futures order (and is refused
    // a read of them). When that cannot be told, they are asked for.
    let permissions = key_permissions(&pacer);
    let futures = permissions.is_none_or(|p| p.can_trade_futures);
    let markets = (adapter.order_markets().iter().copied())
        .filter(|market| *market != Market::Usdm || futures);
    let mut orders = Partial::default();
    let mut conditional_orders = Partial::default();
    for market in markets {
        // Each market's weight is its own: a pacer each.
        let ceiling = adapter.reconciliation_weight_ceiling(orders_pool(adapter, market));
        let pacer = Pacer::new(adapter, &signed_read, wait, stopping, ceiling);
        let open = open_orders(&pacer, market);
        let open_conditional = open_conditional_orders(&pacer, market);
        let known = traded.symbols(&label, market);
        let allowed = tradable_in(tradable, &label, market);
        let resting = open.iter().flatten().map(|o| o.symbol.clone());
        let waiting = open_conditional.iter().flatten().flatten();
        let resting = resting.chain(waiting.map(|c| c.order.symbol.clone()));
        let placed = traded.placing_symbols(&label, market);
        // The symbols where a trade behind keygate's back left a trace though
        // no order is open: on spot, two assets whose holdings changed together
        // since the last run; on USD-M, a trade's fee paid.
        let mut traced = symbols_of_changed_holdings(
            store,
            exchanges,
            account,
            &pacer,
            market,
            &placed,
            now_ms(),
        );
        let paid_fees = symbols_with_trade_fees(&pacer, market, since_ms, until_ms);
        let fee_symbols = paid_fees.items.clone();
        traced.extend(paid_fees);
        let (symbols, unlisted) = symbols_to_ask(
            market,
            [
                placed.into_iter().collect(),
                traced.items,
                known.into_iter().collect(),
                allowed.into_iter().collect(),
                resting.collect(),
            ],
        );
        // Conditional orders first: should the weight run out, the orders
        // keygate's stops placed are still known.
        if let Some(open) = open_conditional {
            // Back past the window too: a stop placed before it may have
            // triggered in it, and the order it placed is known by it.
            let kind = Kind::conditional_orders(adapter);
            let mut listed = list_in_symbols(
                &pacer,
                market,
                &symbols,
                conditional_orders_from(since_ms, until_ms, &kind),
                until_ms,
                &kind,
            );
            add_open(&mut listed, open, since_ms, until_ms, &kind);
            conditional_orders.add(listed, market);
        }
        let mut listed = list_orders(&pacer, market, &symbols, since_ms, until_ms);
        // What was asked for, and what was to be but was not: those past the
        // cap or left when the reads gave up, and those keygate never asks.
        let unasked: HashSet<&String> = listed.unasked.iter().collect();
        asked_symbols.extend(
            symbols
                .iter()
                .filter(|s| !unasked.contains(s))
                .map(|s| market.listed_symbol(s)),
        );
        unasked_symbols.extend(
            listed
                .unasked
                .iter()
                .chain(&unlisted)
                .map(|s| market.listed_symbol(s)),
        );
        if !unlisted.is_empty() {
            let names: Vec<&str> = unlisted.iter().map(String::as_str).collect();
            listed.failures.push(Failure::new(
                "not asked for, as keygate puts no such symbol into a request of \
                 its own",
                names.join(", "),
            ));
        }
        listed.failures.append(&mut traced.failures);
        listed.may_pass |= traced.may_pass;
        if market == Market::Usdm {
            let before = open
                .iter()
                .flatten()
                .filter(|o| (checks_resting_since..since_ms).contains(&o.placed_ms));
            resting_from_before.extend(before.map(|o| (market, o.clone())));
            // Found by review: an order placed before the window that a leaked
            // key moved in place and that then filled was open no more, so it
            // was checked by nothing. Its fill paid a fee in the window: the
            // orders of those symbols placed in the day before the window are
            // listed, and checked as those still open are.
            let mut filled_before = list_in_symbols(
                &pacer,
                market,
                &fee_symbols[..fee_symbols.len().min(MAX_FILLED_BEFORE_SYMBOLS)],
                checks_resting_since,
                since_ms,
                &Kind::orders(adapter),
            );
            for o in filled_before.items.drain(..) {
                if !resting_from_before.iter().any(|(_, r)| r.id == o.id) {
                    resting_from_before.push((market, o));
                }
            }
            if fee_symbols.len() > MAX_FILLED_BEFORE_SYMBOLS {
                listed.failures.push(Failure::new(
                    "orders placed before the window in symbols that paid fees in \
                     it: not asked for past the first few",
                    fee_symbols[MAX_FILLED_BEFORE_SYMBOLS..].join(", "),
                ));
            }
            listed.failures.append(&mut filled_before.failures);
            listed.may_pass |= filled_before.may_pass;
        }
        add_open(
            &mut listed,
            open,
            since_ms,
            until_ms,
            &Kind::orders(adapter),
        );
        leave_out_forced(&pacer, market, &mut listed, since_ms, until_ms);
        listed.may_pass |= pacer.may_pass();
        orders.add(listed, market);
    }
    orders.failures.append(&mut conditional_orders.failures);
    // What this key may trade beyond what keygate reconciles is checked by
    // nothing: said on every run, as a lasting failure.
    let unwatched = permissions
        .map(|p| p.unwatched_markets())
        .unwrap_or_default();
    if !unwatched.is_empty() {
        orders.failures.push(Failure::fixed(format!(
            "the key may also trade {}, where keygate forwards nothing and no \
             order is listed: take that permission away at the exchange",
            unwatched.join(", ")
        )));
    }
    orders.may_pass |= conditional_orders.may_pass;
    // Found by review: windows are placed on this host's clock and the
    // exchange lists by its own. A host far ahead asked only for what had
    // not happened yet at the exchange, found nothing and called the window
    // checked; the run fails instead, and the window waits.
    let skew = exchanges.clock_skew_ms(adapter, account, adapter.permissions_path());
    let off = match skew {
        Some(skew) if skew.unsigned_abs() > MAX_CLOCK_SKEW_MS => Some(Failure::new(
            "this host's clock is too far off the exchange's to place the window",
            format!(
                "{} s {}",
                skew.unsigned_abs() / 1000,
                if skew > 0 { "behind" } else { "ahead" }
            ),
        )),
        Some(_) => None,
        // Nor can the window be placed on a clock that could not be compared.
        None => Some(Failure::fixed(
            "the exchange's clock could not be read to place the window",
        )),
    };
    if let Some(off) = off {
        withdrawals.failures.push(off.clone());
        orders.failures.push(off);
    }
    Listed {
        withdrawals,
        orders,
        conditional_orders: conditional_orders.items,
        symbols: asked_symbols,
        symbols_not_asked: unasked_symbols,
        resting_from_before,
    }
}

/// Why something could not be listed: what is told, and the kind of failure it is, which
/// names the list and the cause but nothing that changes from run to run (a weight, a
/// time, a count, the symbols left over). `serve` keeps its streaks of failed runs by
/// kind: keyed by what is told, a failure that repeats every run with another weight in
/// its words never made a streak, and was never alerted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Failure {
    /// The list and the cause: `orders: usdm: BTCUSDT: it answered HTTP 400`.
    kind: String,
    /// What is told: `orders: usdm: BTCUSDT: it answered HTTP 400 (Invalid symbol.)`.
    text: String,
    /// Whether it struck the reads of a whole weight pool (the weight spent, a stop), not
    /// the list it came in: its kind does not name the symbol it happened to strike.
    of_the_pool: bool,
}

impl Failure {
    /// One whose words do not change from run to run: its kind is what it tells.
    fn fixed(text: impl Into<String>) -> Failure {
        let text = text.into();
        Failure {
            kind: text.clone(),
            text,
            of_the_pool: false,
        }
    }

    /// One of kind `kind`, told as `kind: detail`.
    fn new(kind: impl Into<String>, detail: impl std::fmt::Display) -> Failure {
        let kind = kind.into();
        Failure {
            text: format!("{kind}: {detail}"),
            kind,
            of_the_pool: false,
        }
    }

    /// A read that failed, for `reason`: what failed comes first (`unreachable`, `no
    /// answer`, `it answered HTTP 503`), then, after `: ` or ` (`, its detail (an address,
    /// the exchange's own words, which may hold a time or a weight), left out of the kind.
    fn of_read(reason: String) -> Failure {
        let cut = [": ", " ("]
            .iter()
            .filter_map(|sep| reason.find(sep))
            .min()
            .unwrap_or(reason.len());
        Failure {
            kind: reason[..cut].to_owned(),
            text: reason,
            of_the_pool: false,
        }
    }

    /// The same, as one that struck a whole weight pool.
    fn of_the_pool(self) -> Failure {
        Failure {
            of_the_pool: true,
            ..self
        }
    }

    /// The same, of the list `list`: `list: …`.
    fn of(self, list: &str) -> Failure {
        Failure {
            kind: format!("{list}: {}", self.kind),
            text: format!("{list}: {}", self.text),
            of_the_pool: self.of_the_pool,
        }
    }

    /// The same, of the list of `symbol`: its kind names the symbol unless it struck the
    /// whole pool (the weight ran out while listing it, and may run out at another symbol
    /// the next run).
    fn in_symbol(self, symbol: &str) -> Failure {
        if self.of_the_pool {
            Failure {
                text: format!("{symbol}: {}", self.text),
                ..self
            }
        } else {
            self.of(symbol)
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

/// What `failures` tell, one after the other.
fn told(failures: &[Failure]) -> String {
    let told: Vec<&str> = failures.iter().map(|f| f.text.as_str()).collect();
    told.join("; ")
}

/// A run's failures for one account, each named by its list: the withdrawals' and the
/// orders'.
fn failures_of(withdrawals: &[Failure], orders: &[Failure]) -> Vec<Failure> {
    let named = |list: &'static str| move |f: &Failure| f.clone().of(list);
    withdrawals
        .iter()
        .map(named("withdrawals"))
        .chain(orders.iter().map(named("orders")))
        .collect()
}

/// What could be listed, and why the rest could not: one list that fails in part does
/// not hide what the rest of it holds.
#[derive(Debug)]
struct Partial<T> {
    items: Vec<T>,
    failures: Vec<Failure>,
    /// Whether asking again may list what failed: the exchange was down or busy, or the
    /// weight ran out. Not for what lasts (a symbol the exchange refuses, too many symbols
    /// for the window, a symbol keygate does not ask for).
    may_pass: bool,
    /// Of a list by symbol, the symbols given that were not asked for (past the list cap,
    /// or once the reads gave up), in the order given: why is in `failures`.
    unasked: Vec<String>,
}

impl<T> Default for Partial<T> {
    fn default() -> Self {
        Partial {
            items: Vec::new(),
            failures: Vec::new(),
            may_pass: false,
            unasked: Vec::new(),
        }
    }
}

impl<T> Partial<T> {
    /// Takes in what `other` listed, and why it could not list the rest.
    fn extend(&mut self, other: Partial<T>) {
        self.items.extend(other.items);
        self.failures.extend(other.failures);
        self.may_pass |= other.may_pass;
    }
}

impl<T> Partial<(Market, T)> {
    /// Adds what was listed of `market`, its failures named by the market but for spot's.
    fn add(&mut self, listed: Partial<T>, market: Market) {
        self.may_pass |= listed.may_pass;
        self.items
            .extend(listed.items.into_iter().map(|o| (market, o)));
        self.failures
            .extend(listed.failures.into_iter().map(|reason| match market {
                Market::Spot => reason,
                market => reason.of(market.as_str()),
            }));
    }
}

/// The weight pool the reads of withdrawals (and of the key's permissions) draw from.
fn withdrawals_pool<A: Adapter>(adapter: &A) -> &'static str {
    adapter.weight_pool(adapter.withdrawal_history(0, 0).0)
}

/// The weight pool the reads of `market`'s orders draw from (`""`, which is no pool, for a
/// market whose orders the adapter does not list).
fn orders_pool<A: Adapter>(adapter: &A, market: Market) -> &'static str {
    adapter
        .open_orders(market)
        .map_or("", |(path, _)| adapter.weight_pool(path))
}

/// A signed read at the account's exchange: the answer, or why there is none.
type SignedRead<'a> = dyn Fn(&str, &str) -> Result<Answer, ReadError> + 'a;

/// One account's signed reads in one weight pool of its exchange, kept under a ceiling:
/// when the last answer said the ceiling was reached, the next read waits for the next
/// minute first, at most [`MAX_WEIGHT_WAITS`] times in a row; then it gives up. No read is
/// made once `stopping` says so. It carries the exchange's adapter, which says what to
/// read and how to read the answers.
struct Pacer<'a, A> {
    adapter: &'a A,
    read: &'a SignedRead<'a>,
    /// The weight used this minute past which the next read waits.
    ceiling: u64,
    /// Waits for the next minute; `false` when the reads are to stop instead.
    wait: &'a dyn Fn() -> bool,
    /// Whether the reads are to stop now.
    stopping: &'a dyn Fn() -> bool,
    /// What the last answer said was used this minute.
    used: Cell<Option<u64>>,
    waits: Cell<u32>,
    gave_up: Cell<bool>,
    /// Whether a read failed for a reason that may pass ([`ReadError::may_pass`]), or was
    /// not made for the weight or a stop.
    may_pass: Cell<bool>,
}

impl<'a, A: Adapter> Pacer<'a, A> {
    fn new(
        adapter: &'a A,
        read: &'a SignedRead<'a>,
        wait: &'a dyn Fn() -> bool,
        stopping: &'a dyn Fn() -> bool,
        ceiling: u64,
    ) -> Pacer<'a, A> {
        Pacer {
            adapter,
            read,
            ceiling,
            wait,
            stopping,
            used: Cell::new(None),
            waits: Cell::new(0),
            gave_up: Cell::new(false),
            may_pass: Cell::new(false),
        }
    }

    /// Whether asking again may list what these reads could not.
    fn may_pass(&self) -> bool {
        self.may_pass.get()
    }

    /// The body of a signed read of `path?query`, once the weight allows it.
    fn read(&self, path: &str, query: &str) -> Result<Vec<u8>, Failure> {
        self.paced(|| (self.read)(path, query))
    }

    /// The body `read` answers, read once the weight allows it: a read in this pool that
    /// is not signed (public market data) counts against the same minute.
    fn paced(&self, read: impl FnOnce() -> Result<Answer, ReadError>) -> Result<Vec<u8>, Failure> {
        let stopped = || {
            self.gave_up.set(true);
            self.may_pass.set(true);
            Err(Failure::fixed("keygate is stopping; left for the next run").of_the_pool())
        };
        if (self.stopping)() {
            return stopped();
        }
        if let Some(used) = self.used.get().filter(|u| *u >= self.ceiling) {
            if self.waits.get() >= MAX_WEIGHT_WAITS {
                self.gave_up.set(true);
                self.may_pass.set(true);
                return Err(Failure {
                    kind: format!(
                        "the exchange's request weight stayed at or past reconciliation's \
                         ceiling of {}",
                        self.ceiling
                    ),
                    text: format!(
                        "the exchange reported {used} request weight used, at or past \
                         reconciliation's ceiling of {}, {MAX_WEIGHT_WAITS} minutes \
                         running; left for the next run",
                        self.ceiling
                    ),
                    of_the_pool: true,
                });
            }
            self.waits.set(self.waits.get() + 1);
            if !(self.wait)() {
                return stopped();
            }
        } else {
            self.waits.set(0);
        }
        let answer = read().map_err(|e| {
            self.may_pass.set(self.may_pass.get() || e.may_pass);
            Failure::of_read(e.reason)
        })?;
        self.used.set(answer.used_weight);
        Ok(answer.body)
    }
}

/// How long until a second into the next minute, when an exchange's per-minute weight
/// starts again.
fn until_the_next_minute() -> Duration {
    Duration::from_millis(60_000 - now_ms() % 60_000 + 1_000)
}

/// Sleeps [`until_the_next_minute`].
fn wait_for_the_next_minute() -> bool {
    thread::sleep(until_the_next_minute());
    true
}

/// The most pages of withdrawals one run lists for an account (a thousand each): past
/// that, what it listed is checked and the rest is said not to be.
const MAX_WITHDRAWAL_PAGES: usize = 100;

/// The account's withdrawals applied for since `since_ms`, page after page while a page
/// comes back full: what could be listed, and why the rest could not. A withdrawal
/// applied for while the pages are read moves the later ones down a place: one listed
/// twice is kept once.
fn list_withdrawals<A: Adapter>(
    pacer: &Pacer<'_, A>,
    since_ms: u64,
) -> Partial<ExchangeWithdrawal> {
    let mut listed = Partial::default();
    let mut seen = HashSet::new();
    let mut offset = 0;
    for _ in 0..MAX_WITHDRAWAL_PAGES {
        let (path, query) = pacer.adapter.withdrawal_history(since_ms, offset);
        let page = pacer.read(path, &query).and_then(|body| {
            pacer
                .adapter
                .parse_withdrawal_history(&body)
                .ok_or_else(|| Failure::fixed("its answer does not read"))
        });
        let page = match page {
            Ok(page) => page,
            Err(reason) => {
                listed.failures.push(reason);
                listed.may_pass = pacer.may_pass();
                return listed;
            }
        };
        let full = page.len() >= pacer.adapter.withdrawal_history_limit();
        offset += page.len();
        listed
            .items
            .extend(page.into_iter().filter(|w| seen.insert(w.id.clone())));
        if !full {
            return listed;
        }
    }
    listed.failures.push(Failure {
        kind: format!("it listed {MAX_WITHDRAWAL_PAGES} pages of withdrawals, and more may follow"),
        text: format!(
            "it listed {offset} withdrawals, {MAX_WITHDRAWAL_PAGES} pages, and more may \
             follow; narrow --since"
        ),
        of_the_pool: false,
    });
    listed
}

/// What the account's key may do, as the exchange says; `None` when it cannot be had.
fn key_permissions<A: Adapter>(pacer: &Pacer<'_, A>) -> Option<KeyPermissions> {
    let body = pacer.read(pacer.adapter.permissions_path(), "").ok()?;
    pacer.adapter.parse_permissions(&body)
}

/// Leaves out of `listed` the orders the exchange placed itself (liquidations), once it
/// lists them as such: an order is not taken for one by its client order id alone, which
/// whoever holds the key may choose. The read is made only when an order looks forced;
/// should it fail, those orders stay in, to be reported.
fn leave_out_forced<A: Adapter>(
    pacer: &Pacer<'_, A>,
    market: Market,
    listed: &mut Partial<ExchangeOrder>,
    since_ms: u64,
    until_ms: u64,
) {
    if !listed.items.iter().any(|o| pacer.adapter.may_be_forced(o)) {
        return;
    }
    let Some((path, query)) = pacer.adapter.forced_orders(market, since_ms, until_ms) else {
        return;
    };
    let forced = pacer.read(path, &query).and_then(|body| {
        pacer
            .adapter
            .parse_order_history(&body)
            .ok_or_else(|| Failure::fixed("its list does not read"))
    });
    match forced {
        Ok(forced) => listed
            .items
            .retain(|o| !forced.iter().any(|f| f.id == o.id && f.symbol == o.symbol)),
        Err(reason) => listed
            .failures
            .push(reason.of("orders the exchange placed itself")),
    }
}

/// The account's open orders in `market`, in every symbol, whoever placed them: the
/// orders a leaked key leaves resting name symbols keygate may know nothing of.
fn open_orders<A: Adapter>(
    pacer: &Pacer<'_, A>,
    market: Market,
) -> Result<Vec<ExchangeOrder>, Failure> {
    let (path, query) = pacer
        .adapter
        .open_orders(market)
        .ok_or_else(|| Failure::fixed("keygate cannot list this market's orders"))?;
    let body = pacer.read(path, &query)?;
    pacer
        .adapter
        .parse_order_history(&body)
        .ok_or_else(|| Failure::fixed("its list does not read"))
}

/// The signed read (path and query) listing one symbol of a market over a span, for the
/// kinds of list that have one.
type ListRead<A> = fn(&A, Market, &str, u64, u64) -> Option<(&'static str, String)>;

/// What one kind of list holds: orders, or conditional orders, each with the exchange's
/// endpoint listing them for one symbol, how far it reaches and how to read its answer.
struct Kind<A, T> {
    history: ListRead<A>,
    /// The longest span one list may cover.
    span_ms: u64,
    /// The most one list holds: a list this long may have left some of its span out.
    limit: usize,
    parse: fn(&A, &[u8]) -> Option<Vec<T>>,
    /// The order (for a conditional order, its own fields) of an item listed.
    order: fn(&T) -> &ExchangeOrder,
    /// What it lists, in messages.
    noun: &'static str,
}

impl<A: Adapter> Kind<A, ExchangeOrder> {
    /// Orders, as `adapter`'s exchange lists them.
    fn orders(adapter: &A) -> Self {
        Kind {
            history: A::order_history,
            span_ms: adapter.order_history_span_ms(),
            limit: adapter.order_history_limit(),
            parse: A::parse_order_history,
            order: |o| o,
            noun: "orders",
        }
    }
}

impl<A: Adapter> Kind<A, ExchangeConditionalOrder> {
    /// Conditional orders, as `adapter`'s exchange lists them.
    fn conditional_orders(adapter: &A) -> Self {
        Kind {
            history: A::conditional_order_history,
            span_ms: adapter.conditional_order_history_span_ms(),
            limit: adapter.conditional_order_history_limit(),
            parse: A::parse_conditional_orders,
            order: |c| &c.order,
            noun: "conditional orders",
        }
    }
}

/// The account's conditional orders in `market` waiting for their trigger, in every
/// symbol, whoever placed them; `None` for a market without conditional orders.
fn open_conditional_orders<A: Adapter>(
    pacer: &Pacer<'_, A>,
    market: Market,
) -> Option<Result<Vec<ExchangeConditionalOrder>, Failure>> {
    let (path, query) = pacer.adapter.open_conditional_orders(market)?;
    Some(pacer.read(path, &query).and_then(|body| {
        pacer
            .adapter
            .parse_conditional_orders(&body)
            .ok_or_else(|| Failure::fixed("its list does not read"))
    }))
}

/// The account's orders in `symbols` of `market` placed from `since_ms` to `until_ms`, a
/// day at a time, in the order given, as many symbols as [`MAX_ORDER_QUERIES`] lists
/// allow: what was listed, and why the rest was not.
fn list_orders<A: Adapter>(
    pacer: &Pacer<'_, A>,
    market: Market,
    symbols: &[String],
    since_ms: u64,
    until_ms: u64,
) -> Partial<ExchangeOrder> {
    let kind = Kind::orders(pacer.adapter);
    list_in_symbols(pacer, market, symbols, since_ms, until_ms, &kind)
}

/// Where conditional orders are listed from, for the window from `since_ms` to
/// `until_ms`: at least [`TRIGGER_LOOKBACK_MS`] before it, and as far back as the lists
/// that takes reach anyway. Found by review: from a fixed six days back, a one-hour
/// window took two conditional lists per symbol and one ordinary list, so the list cap
/// left conditional orders of half the symbols unread whose ordinary orders were read,
/// and the order a keygate stop placed there when it triggered read as a leaked key's
/// (critical). From here, the conditional lists of a window never take more than its
/// ordinary ones, and so cover every symbol those do.
fn conditional_orders_from<A>(
    since_ms: u64,
    until_ms: u64,
    kind: &Kind<A, ExchangeConditionalOrder>,
) -> u64 {
    let spans = (until_ms.saturating_sub(since_ms) + TRIGGER_LOOKBACK_MS)
        .div_ceil(kind.span_ms)
        .max(1);
    until_ms.saturating_sub(spans * kind.span_ms)
}

/// How many lists of `kind` per symbol the window from `since_ms` to `until_ms` takes, the
/// first of `symbols` whose lists fit in [`MAX_ORDER_QUERIES`], and the rest.
fn symbols_that_fit<'s, A, T>(
    symbols: &'s [String],
    since_ms: u64,
    until_ms: u64,
    kind: &Kind<A, T>,
) -> (usize, &'s [String], &'s [String]) {
    let spans = until_ms
        .saturating_sub(since_ms)
        .div_ceil(kind.span_ms)
        .max(1) as usize;
    let (asked, over) = symbols.split_at((MAX_ORDER_QUERIES / spans).min(symbols.len()));
    (spans, asked, over)
}

/// What [`list_orders`] lists, of `kind`.
fn list_in_symbols<A: Adapter, T>(
    pacer: &Pacer<'_, A>,
    market: Market,
    symbols: &[String],
    since_ms: u64,
    until_ms: u64,
    kind: &Kind<A, T>,
) -> Partial<T> {
    let (spans, asked, over) = symbols_that_fit(symbols, since_ms, until_ms, kind);
    let mut listed = Partial::default();
    // A symbol that cannot be listed (one the exchange does not know, say) is reported,
    // and the others are still checked.
    let mut asked = asked.iter();
    for symbol in asked.by_ref() {
        let symbol_listed = list_symbol_orders(pacer, market, symbol, since_ms, until_ms, kind);
        listed.items.extend(symbol_listed.items);
        listed.failures.extend(
            symbol_listed
                .failures
                .into_iter()
                .map(|reason| reason.in_symbol(symbol)),
        );
        if pacer.gave_up.get() {
            break;
        }
    }
    let unasked: Vec<&str> = asked.map(String::as_str).collect();
    if !unasked.is_empty() {
        listed
            .failures
            .push(Failure::new("not asked for, as above", unasked.join(", ")));
    }
    if !over.is_empty() {
        listed.failures.push(Failure {
            kind: format!(
                "listing the {} takes more than {MAX_ORDER_QUERIES} requests",
                kind.noun
            ),
            text: format!(
                "listing the {} of {}, {} each, takes more than {MAX_ORDER_QUERIES} \
                 requests: {} not asked for; narrow --since",
                kind.noun,
                counted(symbols.len(), "symbol", "symbols"),
                counted(spans, "request", "requests"),
                over.join(", ")
            ),
            of_the_pool: false,
        });
    }
    listed.unasked = unasked
        .into_iter()
        .map(str::to_owned)
        .chain(over.iter().cloned())
        .collect();
    listed
}

/// `n` and the noun that agrees with it: `1 symbol`, `2 symbols`.
fn counted(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// The most lists read for one symbol in one run beyond its spans: a span that comes
/// back full is listed again in the parts its list did not cover.
const MAX_EXTRA_LISTS: usize = 10;

/// The account's orders in `symbol` of `market` placed from `since_ms` to `until_ms`, a
/// day at a time: what was listed, and why the rest was not. A span whose list comes back
/// full (as many as the exchange lists at once) covered only part of it, from its first
/// order's time to its last's, whichever end the exchange listed from: the parts before
/// and after are listed again (an order listed twice, at a boundary, is kept once), up
/// to [`MAX_EXTRA_LISTS`] more lists; past that, what was listed is kept and the rest is
/// said not to be. A flood of orders in one symbol must not make those already listed
/// vanish.
fn list_symbol_orders<A: Adapter, T>(
    pacer: &Pacer<'_, A>,
    market: Market,
    symbol: &str,
    since_ms: u64,
    until_ms: u64,
    kind: &Kind<A, T>,
) -> Partial<T> {
    let mut orders = Partial::default();
    let mut seen = HashSet::new();
    let mut spans: Vec<(u64, u64)> = Vec::new();
    let mut from_ms = since_ms;
    while from_ms < until_ms {
        let to_ms = (from_ms + kind.span_ms - 1).min(until_ms);
        spans.push((from_ms, to_ms));
        from_ms = to_ms + 1;
    }
    spans.reverse();
    let mut extra_lists = 0;
    let mut told_full = false;
    while let Some((from_ms, to_ms)) = spans.pop() {
        let listed = (kind.history)(pacer.adapter, market, symbol, from_ms, to_ms)
            .ok_or_else(|| {
                Failure::fixed(format!("keygate cannot list this market's {}", kind.noun))
            })
            .and_then(|(path, query)| pacer.read(path, &query))
            .and_then(|body| {
                (kind.parse)(pacer.adapter, &body).ok_or_else(|| {
                    Failure::fixed(format!("its list of {} does not read", kind.noun))
                })
            });
        let listed = match listed {
            Ok(listed) => listed,
            Err(reason) => {
                orders.failures.push(reason);
                return orders;
            }
        };
        if listed.len() >= kind.limit {
            let times = listed.iter().map(|o| (kind.order)(o).placed_ms);
            let first = times.clone().min().unwrap_or(from_ms).max(from_ms);
            let last = times.max().unwrap_or(to_ms).min(to_ms);
            if (first > from_ms || last < to_ms) && extra_lists < MAX_EXTRA_LISTS {
                extra_lists += 1;
                if last < to_ms {
                    spans.push((last, to_ms));
                }
                if first > from_ms {
                    spans.push((from_ms, first));
                }
            } else if !told_full {
                told_full = true;
                orders.failures.push(Failure {
                    kind: format!(
                        "it listed as many {} as it lists at once, again and again",
                        kind.noun
                    ),
                    text: format!(
                        "it listed {} {} placed from {}, as many as it lists at once, again \
                         and again: some to {} are not listed",
                        listed.len(),
                        kind.noun,
                        rfc3339(from_ms),
                        rfc3339(to_ms)
                    ),
                    of_the_pool: false,
                });
            }
        }
        // The span is the exchange's to honour; keep only what falls in it.
        orders.items.extend(listed.into_iter().filter(|o| {
            let order = (kind.order)(o);
            (from_ms..=to_ms).contains(&order.placed_ms) && seen.insert(order.id.clone())
        }));
    }
    orders
}

/// Adds to `listed` the open ones of `kind` (all symbols') placed from `since_ms` to
/// `until_ms` that it lacks: one stands on its own, listed by its symbol or not. When they
/// could not be had, says so.
fn add_open<A, T>(
    listed: &mut Partial<T>,
    open: Result<Vec<T>, Failure>,
    since_ms: u64,
    until_ms: u64,
    kind: &Kind<A, T>,
) {
    let open = match open {
        Ok(open) => open,
        Err(reason) => {
            listed
                .failures
                .push(reason.of(&format!("open {}", kind.noun)));
            return;
        }
    };
    for item in open {
        let o = (kind.order)(&item);
        let same = |l: &T| {
            let l = (kind.order)(l);
            l.id == o.id && l.symbol == o.symbol
        };
        if (since_ms..=until_ms).contains(&o.placed_ms) && !listed.items.iter().any(same) {
            listed.items.push(item);
        }
    }
}

/// What keygate forwarded from `from_ms` to about `to_ms`, from the audit log: the events
/// from `from_ms` on, read from an index near it, a page at a time, until a page reaches
/// past `to_ms` (or the end of the log). Only events that verify with `key` are read: a
/// row edited behind keygate's back (a withdrawal made with a leaked key, written in as
/// if keygate had forwarded it) is an error, not a match.
fn forwarded_between(
    store: &Store,
    key: &AuditKey,
    from_ms: u64,
    to_ms: u64,
) -> anyhow::Result<Forwarded> {
    let mut forwarded = Forwarded::default();
    keygate_audit::for_each_verified_since(store, key, from_ms, |page| {
        for (_, event) in page.iter().filter(|(_, e)| e.ts_ms >= from_ms) {
            forwarded.note(event);
        }
        page.last().is_some_and(|(_, last)| last.ts_ms <= to_ms)
    })
    .context("reading the audit log")?;
    Ok(forwarded)
}

/// How far back the log is read to check an open order placed before the window.
const RESTING_LOOKBACK_MS: u64 = 24 * 3600 * 1000;

/// What keygate forwarded since `since_ms`, from the audit log.
fn forwarded(store: &Store, key: &AuditKey, since_ms: u64) -> anyhow::Result<Forwarded> {
    forwarded_between(store, key, since_ms, u64::MAX)
}

/// Where, in the store's meta table, reconciliation keeps what an account held at its
/// last run in a market, and the symbols changes of those holdings pointed to
/// ([`Holdings`]): this, then `/label/market`. One entry per account and market, so that
/// runs of two accounts at once do not write over each other's.
const HOLDINGS_KEY: &str = "reconcile_holdings";
/// How long a symbol a change of holdings pointed to is listed by every run: as far back
/// as a run may look, so that a run (`keygate reconcile` by hand) that read the change
/// does not hide it from the next (`serve`'s).
const CHANGED_SYMBOL_KEPT_MS: u64 = MAX_CATCH_UP.as_millis() as u64;

/// What reconciliation knows of one account's holdings in one market.
#[derive(Debug, Default, Serialize, serde::Deserialize)]
struct Holdings {
    /// Each asset held at the last run, with what was held of it.
    held: BTreeMap<String, Decimal>,
    /// The symbols whose two assets both changed between two runs, with when that was
    /// last seen.
    symbols: BTreeMap<String, u64>,
    /// What the change a symbol was listed for was worth then, in [`VALUATION_ASSET`]:
    /// the smaller of its two assets' changes, valued at the exchange's last prices. None
    /// for a symbol whose change could not be valued, and for those kept by a keygate
    /// that did not value them.
    #[serde(default)]
    worth: BTreeMap<String, Decimal>,
}

impl Holdings {
    /// The symbols to list, those whose changes were worth the most first, and first of
    /// all those that could not be valued: when more are traced than fit the list cap,
    /// what is left for the next run is the small changes. A key that trades one coin
    /// behind keygate's back and converts dust into dozens of others, to push the traded
    /// symbol past the cap, has to convert as much as it traded into each.
    fn ranked_symbols(&self) -> Vec<String> {
        let mut ranked: Vec<(&String, Decimal)> = self
            .symbols
            .keys()
            .map(|symbol| {
                let worth = self.worth.get(symbol).copied();
                (symbol, worth.unwrap_or(Decimal::MAX))
            })
            .collect();
        ranked.sort_by(|(a, a_worth), (b, b_worth)| b_worth.cmp(a_worth).then(a.cmp(b)));
        ranked
            .into_iter()
            .map(|(symbol, _)| symbol.clone())
            .collect()
    }
}

/// The asset changes of holdings are valued in, to rank them.
const VALUATION_ASSET: &str = "USDT";

/// What one unit of `asset` is worth in [`VALUATION_ASSET`], at `prices` (the exchange's
/// last price of each symbol): directly, the other way round (a fiat currency, `USDTTRY`),
/// or through BTC.
fn unit_worth(asset: &str, prices: &HashMap<String, Decimal>) -> Option<Decimal> {
    if asset == VALUATION_ASSET {
        return Some(Decimal::ONE);
    }
    let price = |symbol: String| prices.get(&symbol).copied();
    price(format!("{asset}{VALUATION_ASSET}"))
        .or_else(|| {
            let inverse = price(format!("{VALUATION_ASSET}{asset}"))?;
            Decimal::ONE.checked_div(inverse)
        })
        .or_else(|| {
            price(format!("{asset}BTC"))?.checked_mul(price(format!("BTC{VALUATION_ASSET}"))?)
        })
}

/// What a trade in a symbol of `base` against `quote`, last priced at `price`, that
/// changed the holdings by `base_change` and `quote_change` could have been worth, in
/// [`VALUATION_ASSET`]: the smaller of the two changes, since a trade changes both by the
/// same worth and one asset may have changed for other trades too; the base's own change
/// when the quote cannot be valued. `None` when neither can.
fn change_worth(
    (base, base_change): (&str, Decimal),
    (quote, quote_change): (&str, Decimal),
    price: Option<Decimal>,
    prices: &HashMap<String, Decimal>,
) -> Option<Decimal> {
    if let (Some(price), Some(unit)) = (price, unit_worth(quote, prices)) {
        let base_in_quote = base_change.abs().checked_mul(price)?;
        return base_in_quote.min(quote_change.abs()).checked_mul(unit);
    }
    base_change.abs().checked_mul(unit_worth(base, prices)?)
}

/// The symbols of `market` a trade behind keygate's back may have used since the last
/// run, from what `account` holds: a trade changes both assets of its symbol, so each
/// symbol of the exchange pairing two assets whose holdings both changed is listed (a
/// key bought a coin keygate never traded, with a market order that left nothing open),
/// unless keygate's own orders in the window (`placed`, the symbols it placed orders in)
/// account for both assets; and every such symbol seen in the past week, whatever this run could read.
/// They come ranked ([`Holdings::ranked_symbols`]): should more be traced than can be
/// listed, the changes worth least are the ones left for the next run.
/// The first run of an account has nothing to compare with; a coin bought and sold again
/// between two runs changes nothing. What is held now is kept for the next run once the
/// symbols are known.
fn symbols_of_changed_holdings<A: Adapter>(
    store: &Store,
    exchanges: &Exchanges,
    account: &keygate_store::Account,
    pacer: &Pacer<'_, A>,
    market: Market,
    placed: &BTreeSet<String>,
    now_ms: u64,
) -> Partial<String> {
    let Some((path, query)) = pacer.adapter.holdings(market) else {
        return Partial::default();
    };
    let key = format!("{HOLDINGS_KEY}/{}/{}", account.label, market.as_str());
    let saved = store.meta(&key).map(|saved| {
        saved
            .map(|saved| serde_json::from_slice::<Holdings>(&saved))
            .transpose()
    });
    let (mut holdings, first_run) = match saved {
        Ok(Ok(Some(holdings))) => (holdings, false),
        Ok(Ok(None)) => (Holdings::default(), true),
        // Written by no keygate: started afresh, the next run comparing with this one's.
        Ok(Err(_)) => (Holdings::default(), true),
        // What was kept is there, but cannot be read now: it is not written over.
        Err(e) => {
            return Partial {
                failures: vec![Failure::new(
                    "what the account held at the last run could not be read",
                    e,
                )],
                may_pass: true,
                ..Partial::default()
            }
        }
    };
    holdings
        .symbols
        .retain(|_, seen| now_ms.saturating_sub(*seen) < CHANGED_SYMBOL_KEPT_MS);
    let kept_symbols = &holdings.symbols;
    holdings
        .worth
        .retain(|symbol, _| kept_symbols.contains_key(symbol));
    // What was found before is listed even when what is held now cannot be read.
    let mut traced = Partial {
        items: holdings.ranked_symbols(),
        ..Partial::default()
    };
    let mut fail = |reason: Failure, may_pass: bool| {
        traced.failures.push(reason.of(
            "what the account holds, whose changes point to symbols traded behind \
             keygate's back, could not be read",
        ));
        traced.may_pass |= may_pass;
    };
    // A read the weight or a stop held back is the pacer's to report as one that may pass.
    let held = match pacer
        .read(path, &query)
        .map(|body| pacer.adapter.parse_holdings(&body))
    {
        Ok(Some(held)) => held,
        Ok(None) => {
            fail(Failure::fixed("its answer does not read"), false);
            return traced;
        }
        Err(reason) => {
            fail(reason, false);
            return traced;
        }
    };
    let changed: BTreeSet<&String> = held
        .iter()
        .filter(|(asset, amount)| holdings.held.get(*asset) != Some(amount))
        .map(|(asset, _)| asset)
        .chain(
            holdings
                .held
                .keys()
                .filter(|asset| !held.contains_key(*asset)),
        )
        .collect();
    if !first_run && changed.len() >= 2 {
        let Some((path, query)) = pacer.adapter.symbol_list(market) else {
            fail(
                Failure::fixed("keygate cannot list this market's symbols"),
                false,
            );
            return traced;
        };
        // Public, but in the weight pool of the signed reads.
        let listed = pacer.paced(|| exchanges.public_read(pacer.adapter, account, path, &query));
        let symbols = match listed {
            Ok(listed) => pacer.adapter.parse_symbol_list(&listed),
            Err(reason) => {
                fail(reason.of("its symbols"), false);
                return traced;
            }
        };
        let Some(symbols) = symbols else {
            fail(Failure::fixed("its symbols do not read"), false);
            return traced;
        };
        let prices: HashMap<String, Decimal> = symbols
            .iter()
            .filter_map(|(symbol, price)| Some((symbol.clone(), (*price)?)))
            .collect();
        let symbols: HashMap<String, Option<Decimal>> = symbols.into_iter().collect();
        let change = |asset: &String| {
            let before = holdings.held.get(asset).copied().unwrap_or_default();
            let now = held.get(asset).copied().unwrap_or_default();
            now - before
        };
        let pairs = || {
            changed.iter().flat_map(|base| {
                changed
                    .iter()
                    .filter(move |quote| base != *quote)
                    .map(move |quote| (*base, *quote, format!("{base}{quote}")))
            })
        };
        // An asset keygate's own trades changed: a pair of two such is theirs.
        let explained: HashSet<&String> = pairs()
            .filter(|(_, _, symbol)| placed.contains(symbol))
            .flat_map(|(base, quote, _)| [base, quote])
            .collect();
        let mut found = Vec::new();
        for (base, quote, symbol) in pairs() {
            let unexplained = !explained.contains(base) || !explained.contains(quote);
            if let (true, Some(price)) = (unexplained, symbols.get(&symbol)) {
                let worth = change_worth(
                    (base, change(base)),
                    (quote, change(quote)),
                    *price,
                    &prices,
                );
                found.push((symbol, worth));
            }
        }
        for (symbol, worth) in found {
            match worth {
                Some(worth) => holdings.worth.insert(symbol.clone(), worth),
                None => holdings.worth.remove(&symbol),
            };
            holdings.symbols.insert(symbol, now_ms);
        }
    }
    holdings.held = held;
    traced.items = holdings.ranked_symbols();
    let kept = serde_json::to_vec(&holdings)
        .map_err(|e| e.to_string())
        .and_then(|saved| store.set_meta(&key, &saved).map_err(|e| e.to_string()));
    if let Err(e) = kept {
        // The symbols are listed all the same; the next run compares with older holdings.
        traced.failures.push(Failure::new(
            "what the account holds could not be kept for the next run",
            e,
        ));
    }
    traced
}

/// The most pages of trade fees one market's run reads.
const MAX_TRADE_FEE_PAGES: u32 = 10;

/// The symbols of `market` in which the account paid a trade's fee from `since_ms` to
/// `until_ms` (USD-M futures, where the exchange lists every symbol's fees at once): a
/// leaked key that opened and closed a position in a symbol keygate never traded left no
/// order open there, but paid for both trades. None for a market without such a list.
fn symbols_with_trade_fees<A: Adapter>(
    pacer: &Pacer<'_, A>,
    market: Market,
    since_ms: u64,
    until_ms: u64,
) -> Partial<String> {
    let mut paid = Partial::default();
    for page in 1..=MAX_TRADE_FEE_PAGES {
        let Some((path, query)) = pacer.adapter.trade_fees(market, since_ms, until_ms, page) else {
            return paid;
        };
        // A read the weight or a stop held back is the pacer's to report as one that may
        // pass.
        let read = pacer.read(path, &query);
        let fees = match read.map(|body| pacer.adapter.parse_trade_fee_symbols(&body)) {
            Ok(Some(fees)) => fees,
            Ok(None) => {
                paid.failures
                    .push(Failure::fixed("trade fees: their list does not read"));
                return paid;
            }
            Err(reason) => {
                paid.failures.push(reason.of("trade fees"));
                return paid;
            }
        };
        let full = fees.len() >= keygate_exchanges::TRADE_FEES_PAGE;
        for symbol in fees {
            if !paid.items.contains(&symbol) {
                paid.items.push(symbol);
            }
        }
        if !full {
            return paid;
        }
    }
    paid.failures.push(Failure::fixed(format!(
        "trade fees: more than {} in the window, more than a run reads; the symbols of \
         the rest are not asked for",
        MAX_TRADE_FEE_PAGES as usize * keygate_exchanges::TRADE_FEES_PAGE
    )));
    paid
}

/// By account, the symbols its active clients that may trade are allowed to trade.
/// The symbols of `market` that `account`'s trading clients may trade, from their symbol
/// lists (`BTCUSDT` on spot, `usdm:BTCUSDT` on USD-M).
fn tradable_in<'t>(
    tradable: &'t HashMap<String, BTreeSet<String>>,
    account: &str,
    market: Market,
) -> impl Iterator<Item = String> + 't {
    tradable
        .get(account)
        .into_iter()
        .flatten()
        .filter_map(move |listed| market.unlisted_symbol(listed).map(str::to_owned))
}

fn tradable_symbols(store: &Store) -> anyhow::Result<HashMap<String, BTreeSet<String>>> {
    let mut tradable: HashMap<String, BTreeSet<String>> = HashMap::new();
    let clients = store.client_rows().context("reading clients")?;
    for client in clients.into_iter().flatten() {
        if client.status != ClientStatus::Active || !client.policy.scopes.contains(Scope::Trade) {
            continue;
        }
        if let Some(symbols) = &client.policy.symbols {
            tradable
                .entry(client.account.to_string())
                .or_default()
                .extend(symbols.iter().cloned());
        }
    }
    Ok(tradable)
}

/// The human report. Text from outside (exchange errors, symbols and client order ids a
/// client or a leaked key chose) is shown with its control characters escaped.
fn print(reports: &[AccountReport], since_ms: u64) {
    for line in report_lines(reports, since_ms) {
        println!("{}", escape_controls(&line));
    }
}

/// The lines of the human report, as they come. Each list says why it could not be had in
/// full before what was found in the part that was; what was found outside keygate is
/// listed whatever failed; and no line says "all through keygate" of a list that failed.
fn report_lines(reports: &[AccountReport], since_ms: u64) -> Vec<String> {
    // Found by review: a run right after an order placed behind keygate's back said "all
    // through keygate" without a word of the seconds it leaves for the next run.
    let mut lines = vec![format!(
        "withdrawals and orders since {}, at each exchange and in keygate's audit log \
         (orders of the last {} s are checked by the next run):",
        rfc3339(since_ms),
        ORDER_SETTLE_MS / 1000
    )];
    let mut say = |line: String| lines.push(line);
    for r in reports {
        let account = &r.account;
        if let Some(error) = &r.error {
            say(format!(
                "  {account}: FAILED: cannot list all of its withdrawals: {error}"
            ));
        }
        if !r.not_through_keygate.is_empty() {
            say(format!(
                "  {account}: {} withdrawal(s) NOT THROUGH KEYGATE: unless someone made them by \
                 hand on the exchange, its real key was used elsewhere. Disable its API keys at \
                 the exchange now (the one keygate holds, and any an earlier rotation \
                 retired: the exchange does not say which key made them), make a new one, \
                 then `keygate account rotate {account}`:",
                r.not_through_keygate.len(),
            ));
            for w in &r.not_through_keygate {
                say(format!(
                    "    {} {} {} to {} at {}",
                    w.id, w.amount, w.asset, w.destination, w.applied_at
                ));
            }
        } else if r.error.is_none() {
            say(format!(
                "  {account}: {} withdrawal(s), all through keygate",
                r.withdrawals
            ));
        } else if r.withdrawals > 0 {
            say(format!(
                "  {account}: {} withdrawal(s) listed, each through keygate; those that could \
                 not be listed are not checked",
                r.withdrawals
            ));
        }
        // What was asked for, and what was to be but was not (why is in the failure).
        let mut symbols = format!(
            "symbols asked for: {}",
            if r.symbols.is_empty() {
                "none".to_owned()
            } else {
                r.symbols.join(", ")
            }
        );
        if !r.symbols_not_asked.is_empty() {
            symbols.push_str(&format!(
                "; not asked for: {}",
                r.symbols_not_asked.join(", ")
            ));
        } else if r.symbols.is_empty() && r.orders_error.is_none() {
            symbols.push_str(
                ": no symbol was traded through keygate, allowed to its clients or has an \
                 order open",
            );
        }
        if let Some(error) = &r.orders_error {
            say(format!(
                "  {account}: FAILED: cannot list all of its orders ({symbols}): {error}"
            ));
        }
        if !r.orders_not_through_keygate.is_empty() {
            // The symbols are on the line of the failure, if there is one.
            let asked = match r.orders_error {
                None => format!(" ({symbols})"),
                Some(_) => String::new(),
            };
            say(format!(
                "  {account}: {} order(s) NOT THROUGH KEYGATE{asked}: unless someone placed them \
                 by hand on the exchange, its real key was used elsewhere. Disable its API keys at \
                 the exchange now (the one keygate holds, and any an earlier rotation \
                 retired: the exchange does not say which key made them), make a new one, \
                 then `keygate account rotate {account}`:",
                r.orders_not_through_keygate.len(),
            ));
            for o in &r.orders_not_through_keygate {
                say(format!(
                    "    {} (client order id {}) at {}",
                    o.what(),
                    o.client_order_id,
                    o.placed_at
                ));
            }
        } else if r.orders_error.is_none() {
            say(format!(
                "  {account}: {} order(s), all through keygate ({symbols})",
                r.orders
            ));
        } else if r.orders == 0 {
            say(format!(
                "  {account}: no order listed; those that could not be listed are not checked"
            ));
        } else {
            say(format!(
                "  {account}: {} order(s) listed, each through keygate; those that could not \
                 be listed are not checked",
                r.orders
            ));
        }
    }
    lines
}

/// How far back the first reconciliation of a `serve` looks: what happened while keygate
/// was not running.
const FIRST_WINDOW: Duration = Duration::from_secs(24 * 3600);
/// The shortest window of the later ones.
const MIN_WINDOW: Duration = Duration::from_secs(3600);
/// The furthest back a run goes to catch up with what failed runs left unchecked.
const MAX_CATCH_UP: Duration = Duration::from_secs(7 * 24 * 3600);
/// Where, in the store's meta table, `serve` keeps how far its reconciliation has
/// checked everything: a `serve` that starts again after more than [`FIRST_WINDOW`] down
/// goes back there (at most [`MAX_CATCH_UP`]). Only ever a hint towards checking more: a
/// value written ahead of time makes the first run look back its usual day, no less.
const RECONCILED_THROUGH_KEY: &str = "reconciled_through";

/// How far `serve`'s reconciliation last checked everything, in milliseconds.
fn reconciled_through(store: &Store) -> Option<u64> {
    let value = store.meta(RECONCILED_THROUGH_KEY).ok()??;
    Some(u64::from_be_bytes(value.as_slice().try_into().ok()?))
}

/// Where a run starts: `window` back from `now_ms`, or further, from where what is not
/// yet checked begins (`unchecked_since`: where the last run that checked everything
/// ended, or where the first of the failed runs since started), at most [`MAX_CATCH_UP`]
/// back. Without it, runs failing for longer than a window (an exchange down, or kept
/// busy by whoever holds a leaked key) left the oldest part of the outage never checked.
fn run_start(window: Duration, unchecked_since: Option<u64>, now_ms: u64) -> u64 {
    let usual = now_ms.saturating_sub(window.as_millis() as u64);
    let earliest = now_ms.saturating_sub(MAX_CATCH_UP.as_millis() as u64);
    unchecked_since.map_or(usual, |since| since.min(usual).max(earliest))
}

/// Where the watch has checked to, run after run: each run starts from the earlier of
/// its window back from now and where what is unchecked begins ([`run_start`]).
struct Schedule {
    /// How far back from its start a run looks at the least.
    window: Duration,
    /// Where what is not yet checked begins: where the last run that checked everything
    /// listed to, or where the first of the failed runs since started; at first, where
    /// the last `serve` had checked to ([`reconciled_through`]).
    unchecked_since: Option<u64>,
}

impl Schedule {
    /// Where a run beginning at `now_ms` starts.
    fn start(&self, now_ms: u64) -> u64 {
        run_start(self.window, self.unchecked_since, now_ms)
    }

    /// Takes in a run that started at `since_ms` and listed orders to `through_ms`: when it
    /// left its window for later, the next starts where it did; otherwise, no later than
    /// where it ended, so that a run that took longer than the window less the interval
    /// leaves no time that no run lists. The next window is `window`.
    fn ran(&mut self, since_ms: u64, through_ms: u64, left: bool, window: Duration) {
        self.unchecked_since = Some(if left { since_ms } else { through_ms });
        self.window = window;
    }
}

/// Whether a run leaves its window to the next: it failed as a whole, or failed to list
/// an account's withdrawals or orders for a reason that may pass. One that failed only
/// for what lasts (a symbol the exchange refuses, more symbols than fit the window, more
/// withdrawals than a run lists) does not: the next would start where it did, every
/// window after it would be wider, and fewer symbols fit a wider one.
fn is_left_for_later(reconciled: &anyhow::Result<Vec<AccountReport>>) -> bool {
    reconciled.as_ref().map_or(true, |reports| {
        reports
            .iter()
            .any(|r| r.withdrawals_may_pass || r.orders_may_pass)
    })
}

/// Reconciliation while `serve` runs: every interval, each account's withdrawals at its
/// exchange against the audit log. A withdrawal keygate never forwarded raises a critical
/// alert, once; an exchange that cannot be asked [`FAILURES_BEFORE_ALERT`] times in a row
/// raises a warning, once until it can be again. Stops when dropped.
pub(crate) struct Watch {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Watch {
    /// Starts reconciling now, then every `every`.
    /// Keeps to the pauses the exchange asks for in `weight`, the gateway's: both send from
    /// one address.
    pub(crate) fn start(
        db: &Path,
        master: Arc<MasterKey>,
        every: Duration,
        alerter: Alerter,
        weight: Arc<WeightGauge>,
    ) -> anyhow::Result<Watch> {
        let mut store = Store::open(db).context("opening the database for reconciliation")?;
        // Its accounts are read once their seal holds: checked as every other command's.
        crate::home::verify_admin_changes(&mut store, AuditKey::of_vault(&master));
        let exchanges = Exchanges::sharing(weight)?;
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = thread::Builder::new()
            .name("keygate-reconcile".into())
            .spawn(move || {
                let mut watched = Watched::default();
                // Waits for the next minute, or for a stop: `serve` is not kept from
                // stopping by an exchange's weight.
                let wait = || {
                    matches!(
                        stopped.recv_timeout(until_the_next_minute()),
                        Err(mpsc::RecvTimeoutError::Timeout)
                    )
                };
                let stopping = || {
                    matches!(
                        stopped.try_recv(),
                        Ok(()) | Err(mpsc::TryRecvError::Disconnected)
                    )
                };
                // Back to where the last serve left off, when that is further than a day:
                // what happened while keygate was down is checked too.
                let mut schedule = Schedule {
                    window: FIRST_WINDOW,
                    unchecked_since: reconciled_through(&store),
                };
                loop {
                    let began_ms = now_ms();
                    let since_ms = schedule.start(began_ms);
                    let reconciled =
                        reconcile(&store, &master, &exchanges, since_ms, &wait, &stopping);
                    let left = is_left_for_later(&reconciled);
                    // Orders are listed to where the run began, less the time they settle
                    // in (a little earlier than `reconcile`'s own end of the window).
                    let through = began_ms.saturating_sub(ORDER_SETTLE_MS);
                    schedule.ran(since_ms, through, left, (every * 2).max(MIN_WINDOW));
                    if !left {
                        if let Err(e) =
                            store.set_meta(RECONCILED_THROUGH_KEY, &through.to_be_bytes())
                        {
                            tracing::warn!(error = %e, "cannot record how far reconciliation checked");
                        }
                    }
                    // What a run found is told even when it was cut short by a stop.
                    match reconciled {
                        Ok(reports) => watched.alert(reports, &alerter),
                        Err(e) => watched.run_failed(&e, &alerter),
                    }
                    if stopping() {
                        return;
                    }
                    match stopped.recv_timeout(every) {
                        Err(mpsc::RecvTimeoutError::Timeout) => continue,
                        _ => return,
                    }
                }
            })
            .context("starting the reconciliation thread")?;
        Ok(Watch {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Failed reconciliations in a row that make a `reconcile_failed` alert: one is a network
/// blip more often than not.
const FAILURES_BEFORE_ALERT: u32 = 2;

/// What the watch has already alerted about.
#[derive(Default)]
struct Watched {
    /// (account, `withdrawal ID` or `order ID` as the exchange numbers them).
    reported: HashMap<(String, String), Instant>,
    /// By account, each kind of way its exchange could not be asked ([`Failure`]'s kind:
    /// the list and the cause, not the words, which may change from run to run) and in
    /// how many runs in a row: each is alerted once per streak, so that one failure that lasts (a delisted
    /// symbol on a client's list) does not hide a later one (the withdrawals).
    failing: HashMap<String, HashMap<String, u32>>,
    /// Runs that failed as a whole (the accounts could not be read, their seal does not
    /// hold), in a row.
    runs_failing: u32,
    /// A run failed because the audit log does not verify, and that was alerted; until
    /// a run succeeds.
    told_tampered: bool,
}

impl Watched {
    /// A run that checked no account: logged each time, and alerted once it fails
    /// [`FAILURES_BEFORE_ALERT`] times in a row, as an account that cannot be asked is.
    fn run_failed(&mut self, error: &anyhow::Error, alerter: &Alerter) {
        tracing::error!(error = %format!("{error:#}"), "reconciliation failed");
        // A log that does not verify hides what keygate forwarded: that is no exchange
        // being slow to answer, and it is told at once.
        let tampered = error.chain().any(|cause| {
            matches!(
                cause.downcast_ref::<keygate_audit::Error>(),
                Some(keygate_audit::Error::Tampered { .. })
            )
        });
        if tampered && !self.told_tampered {
            self.told_tampered = true;
            alerter.raise(Alert::outside_log(
                Severity::Critical,
                AlertRule::LogUnreadable,
                format!(
                    "reconciliation cannot trust the audit log, so withdrawals and orders at \
                     the exchanges go unchecked: {error:#}; run `keygate audit verify`"
                ),
            ));
        }
        self.runs_failing += 1;
        if self.runs_failing == FAILURES_BEFORE_ALERT {
            alerter.raise(Alert::outside_log(
                Severity::Warning,
                AlertRule::ReconcileFailed,
                format!("no account can be checked at its exchange: {error:#}"),
            ));
        }
    }

    /// A run that checked the accounts of `reports`: the withdrawals keygate never
    /// forwarded are alerted first, one by one, then each account's orders, in one alert
    /// per account, then the failures that make a streak; every failure is logged.
    fn alert(&mut self, reports: Vec<AccountReport>, alerter: &Alerter) {
        self.runs_failing = 0;
        self.told_tampered = false;
        // What no window can list again (the widest goes back a week, and a week more
        // for a stop that triggered in it) is forgotten: a long-running serve does not
        // keep every id it ever reported.
        self.reported
            .retain(|_, at| at.elapsed() < MAX_CATCH_UP + MAX_CATCH_UP);
        // Withdrawals first, every account's: a leaked key that places thousands of cheap
        // orders and then withdraws must not bury the withdrawal's alert behind theirs in
        // a sink's queue, nor have it dropped past the queue's bound.
        for report in &reports {
            for w in &report.not_through_keygate {
                if self.is_new(&report.account, format!("withdrawal {}", w.id)) {
                    alerter.raise(account_alert(
                        &report.account,
                        Severity::Critical,
                        AlertRule::UnreconciledWithdrawal,
                        format!(
                            "account {} withdrew {} {} to {} at {} (id {}), and keygate \
                             never forwarded it: unless someone made it by hand on the \
                             exchange, a real key has leaked; disable the account's API keys \
                             at the exchange now, any an earlier rotation retired too",
                            report.account,
                            w.amount,
                            // Named as a request's are: whoever holds the real key chose
                            // them (found by review: a memo's domain stayed a link).
                            keygate_monitor::named(&w.asset),
                            keygate_monitor::named(&w.destination),
                            w.applied_at,
                            w.id
                        ),
                    ));
                }
            }
        }
        // Then one alert per account for the orders not alerted before, however many.
        for report in &reports {
            let account = &report.account;
            let new: Vec<&UnmatchedOrder> = report
                .orders_not_through_keygate
                .iter()
                .filter(|o| {
                    let book = if o.conditional {
                        "conditional order"
                    } else {
                        "order"
                    };
                    self.is_new(
                        account,
                        format!("{book} {} {} {}", o.market, o.symbol, o.id),
                    )
                })
                .collect();
            if let Some(summary) = orders_summary(account, &new) {
                alerter.raise(account_alert(
                    account,
                    Severity::Critical,
                    AlertRule::UnreconciledOrder,
                    summary,
                ));
            }
        }
        for report in &reports {
            let account = &report.account;
            // Every run's failures are logged, whether or not they make an alert.
            for failure in &report.failures {
                tracing::warn!(
                    account = %escape_controls(account),
                    failure = %escape_controls(&failure.text),
                    "reconciliation could not check all of an account at its exchange"
                );
            }
            // Streaks are kept by kind: the words may change from run to run.
            let streaks = self.failing.entry(account.clone()).or_default();
            streaks.retain(|kind, _| report.failures.iter().any(|f| f.kind == *kind));
            let mut counted = HashSet::new();
            for failure in &report.failures {
                if !counted.insert(&failure.kind) {
                    continue;
                }
                let runs = streaks.entry(failure.kind.clone()).or_default();
                *runs += 1;
                if *runs == FAILURES_BEFORE_ALERT {
                    alerter.raise(account_alert(
                        account,
                        Severity::Warning,
                        AlertRule::ReconcileFailed,
                        format!("cannot check account {account} at its exchange: {failure}"),
                    ));
                }
            }
            if streaks.is_empty() {
                self.failing.remove(account);
            }
        }
    }

    /// Whether `what` (`withdrawal ID`, `order MARKET SYMBOL ID`) of `account` is alerted
    /// for the first time; it is noted as alerted.
    fn is_new(&mut self, account: &str, what: String) -> bool {
        self.reported
            .insert((account.to_owned(), what), Instant::now())
            .is_none()
    }
}

/// An alert of reconciliation's about `account`.
fn account_alert(account: &str, severity: Severity, rule: AlertRule, summary: String) -> Alert {
    Alert {
        account: Some(account.to_owned()),
        ..Alert::outside_log(severity, rule, summary)
    }
}

/// How many of the orders an `unreconciled_order` alert names by id, and of their symbols:
/// the alert says how many there are, and `keygate reconcile` lists them all.
const ORDERS_NAMED: usize = 5;
const SYMBOLS_NAMED: usize = 8;

/// What one alert says of the orders of `account` keygate never forwarded that no alert
/// told of before: how many, the first few ids, and their symbols (one order is told in
/// full); `None` for none. One
/// alert per account and run, not one per order: a leaked key's thousands of cheap
/// orders would otherwise fill the sinks' queues.
fn orders_summary(account: &str, orders: &[&UnmatchedOrder]) -> Option<String> {
    match orders {
        [] => None,
        [o] if o.modified_outside_keygate => Some(format!(
            "account {account} has {} placed at {}: unless someone modified it by hand on \
             the exchange, a real key has leaked; disable the account's API keys at the \
             exchange now, any an earlier rotation retired too",
            o.what(),
            o.placed_at
        )),
        [o] => Some(format!(
            "account {account} placed {} at {}, and keygate never forwarded it: unless \
             someone placed it by hand on the exchange, a real key has leaked; disable the \
             account's API keys at the exchange now, any an earlier rotation retired too",
            o.what(),
            o.placed_at
        )),
        // What matters most first: an alert's summary is cut at 500 characters.
        orders => {
            let ids: Vec<String> = orders
                .iter()
                .map(|o| match o.conditional {
                    true => format!("conditional {}", o.id),
                    false => o.id.clone(),
                })
                .collect();
            let symbols: BTreeSet<String> = orders.iter().map(|o| o.listed_symbol()).collect();
            let symbols: Vec<String> = symbols.into_iter().collect();
            let modified = match orders.iter().any(|o| o.modified_outside_keygate) {
                true => " (or modified behind its back)",
                false => "",
            };
            Some(format!(
                "account {account} placed {} orders that keygate never forwarded{modified}: \
                 unless someone placed them by hand on the exchange, a real key has leaked; \
                 disable the account's API keys at the exchange now, any an earlier rotation \
                 retired too (`keygate reconcile` lists them all); ids {}, in {}",
                orders.len(),
                some_of(&ids, ORDERS_NAMED),
                some_of(&symbols, SYMBOLS_NAMED),
            ))
        }
    }
}

/// The first `most` of `items`, and how many more: `A, B, C and 7 more`.
fn some_of(items: &[String], most: usize) -> String {
    let shown = items[..items.len().min(most)].join(", ");
    match items.len().saturating_sub(most) {
        0 => shown,
        more => format!("{shown} and {more} more"),
    }
}

/// The symbols of `market` to list orders in, in the order of `ranked`, the first that
/// fit the cap being asked: where keygate placed orders, then where a trade left a trace
/// (holdings, fees), then every other symbol keygate's requests named (order tests,
/// settings, orders the exchange refused: a bot key can name as many as it likes, and
/// must not push the others out), what the clients may trade, and where orders rest.
/// Names that are no plain symbol are returned apart, never asked.
fn symbols_to_ask(market: Market, ranked: [Vec<String>; 5]) -> (Vec<String>, BTreeSet<String>) {
    let mut symbols: Vec<String> = Vec::new();
    let mut unlisted: BTreeSet<String> = BTreeSet::new();
    for symbol in ranked.into_iter().flatten() {
        if !is_plain_symbol(market, &symbol) {
            unlisted.insert(symbol);
        } else if !symbols.contains(&symbol) {
            symbols.push(symbol);
        }
    }
    (symbols, unlisted)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by review: a market order was told as "SELL MARKET 1 BTCUSDT at 0".
    #[test]
    fn an_order_is_told_with_its_price_unless_it_has_none() {
        let order = |order_type: &str, price: &str, conditional: bool| UnmatchedOrder {
            id: "7".into(),
            market: "spot",
            conditional,
            client_order_id: "x".into(),
            symbol: "BTCUSDT".into(),
            side: "SELL".into(),
            order_type: order_type.into(),
            quantity: "1".into(),
            price: price.into(),
            placed_at: String::new(),
            modified_outside_keygate: false,
        };
        assert_eq!(
            order("LIMIT", "50000", false).what(),
            "order 7 (SELL LIMIT 1 BTCUSDT at 50000)"
        );
        assert_eq!(
            order("MARKET", "0", false).what(),
            "order 7 (SELL MARKET 1 BTCUSDT)"
        );
        assert_eq!(
            order("STOP_MARKET", "60000", true).what(),
            "conditional order 7 (SELL STOP_MARKET 1 BTCUSDT, trigger price 60000)"
        );
    }

    /// Found by review: traced symbols were listed in name order, so a key that traded
    /// BTCUSDT behind keygate's back and converted a little USDT into sixty coins named
    /// A… pushed BTCUSDT past the list cap (a warning, where the order is critical).
    /// They are listed by what their change was worth, the largest first.
    #[test]
    fn traced_symbols_are_listed_by_what_their_change_was_worth() {
        let dec = |s: &str| s.parse::<Decimal>().unwrap();
        let prices: HashMap<String, Decimal> = [
            ("BTCUSDT", "60000"),
            ("ETHBTC", "0.05"),
            ("A00USDT", "2"),
            ("A01USDT", "2"),
            ("USDTTRY", "40"),
            ("A00TRY", "80"),
        ]
        .into_iter()
        .map(|(s, p)| (s.to_owned(), dec(p)))
        .collect();
        // 0.1 BTC bought for 6000 USDT, and 2 USDT converted into each decoy coin; USDT
        // changed by all of it together.
        let usdt = ("USDT", dec("-6004"));
        let btc = change_worth(("BTC", dec("0.1")), usdt, Some(dec("60000")), &prices);
        assert_eq!(btc, Some(dec("6000")));
        let decoy = change_worth(("A00", dec("1")), usdt, Some(dec("2")), &prices);
        assert_eq!(decoy, Some(dec("2")));
        // A quote valued through BTC, or the other way round (found by review: decoys in
        // TRY, quoted against USDT only as USDTTRY, were all unvalued, and ranked first).
        let btc_quote = ("BTC", dec("-0.05"));
        let eth = change_worth(("ETH", dec("1")), btc_quote, Some(dec("0.05")), &prices);
        assert_eq!(eth, Some(dec("3000")));
        let try_quote = ("TRY", dec("-80"));
        let in_try = change_worth(("A00", dec("1")), try_quote, Some(dec("80")), &prices);
        assert_eq!(in_try, Some(dec("2")));
        // A quote that cannot be valued: the base's own change; neither: unknown.
        let odd = ("XYZ", dec("1"));
        let by_base = change_worth(("A00", dec("3")), odd, Some(dec("1")), &prices);
        assert_eq!(by_base, Some(dec("6")));
        assert_eq!(
            change_worth(("QQQ", dec("1")), odd, Some(dec("1")), &prices),
            None
        );

        let mut holdings = Holdings::default();
        for (symbol, worth) in [
            ("A00USDT", decoy),
            ("A01USDT", decoy),
            ("BTCUSDT", btc),
            ("ETHBTC", eth),
            ("ODDXYZ", None),
            ("A02USDT", decoy),
        ] {
            holdings.symbols.insert(symbol.to_owned(), 1);
            if let Some(worth) = worth {
                holdings.worth.insert(symbol.to_owned(), worth);
            }
        }
        assert_eq!(
            holdings.ranked_symbols(),
            ["ODDXYZ", "BTCUSDT", "ETHBTC", "A00USDT", "A01USDT", "A02USDT"]
        );
        // Kept by a keygate that did not value them: they read, unvalued.
        let old: Holdings =
            serde_json::from_str(r#"{"held":{"BTC":"1"},"symbols":{"BTCUSDT":5}}"#).unwrap();
        assert_eq!(old.ranked_symbols(), ["BTCUSDT"]);
    }

    /// A regression test (found by review): each run looked back its window from now,
    /// whether the one before it had checked anything, so the oldest part of an outage
    /// longer than a window was never checked.
    #[test]
    fn a_run_after_failed_ones_starts_where_the_first_of_them_did() {
        let hour = 3_600_000;
        let now = 1_000 * hour;
        let window = Duration::from_secs(3600);
        assert_eq!(run_start(window, None, now), now - hour);
        // Failed runs since five hours ago: the next goes back there.
        assert_eq!(run_start(window, Some(now - 5 * hour), now), now - 5 * hour);
        // Not further than a week.
        assert_eq!(
            run_start(window, Some(now - 500 * hour), now),
            now - 168 * hour
        );
        // A failure within the usual window changes nothing.
        assert_eq!(run_start(window, Some(now - hour / 2), now), now - hour);
    }

    /// A regression test (found by review): each run of the watch started its window back
    /// from now, whatever the last run had listed to, so a run that took longer than the
    /// window less the interval (waiting for the weight, a slow exchange) left a gap that
    /// no run listed. The next starts where the last ended, at the latest.
    #[test]
    fn a_run_after_a_slow_one_starts_where_it_ended() {
        let minute = 60_000;
        let start = 1_000_000 * minute;
        let every = Duration::from_secs(600);
        let window = (every * 2).max(MIN_WINDOW);
        let mut schedule = Schedule {
            window: FIRST_WINDOW,
            unchecked_since: None,
        };
        assert_eq!(schedule.start(start), start - 24 * 60 * minute);
        // A run that checked everything and took 90 minutes: the next begins 10 minutes
        // after it ended, 100 minutes after the first began, more than its hour's window.
        let through = start - ORDER_SETTLE_MS;
        schedule.ran(start - 24 * 60 * minute, through, false, window);
        let next = start + 100 * minute;
        assert_eq!(schedule.start(next), through);
        // A quick run leaves the usual window, which reaches further back.
        schedule.ran(through, next - ORDER_SETTLE_MS, false, window);
        assert_eq!(
            schedule.start(next + 10 * minute),
            next + 10 * minute - 60 * minute
        );
        // A run left for later makes the next start where it started, as before.
        let since = schedule.start(next + 10 * minute);
        schedule.ran(since, next + 10 * minute, true, window);
        assert_eq!(schedule.start(next + 200 * minute), since);
        // Not further back than a week.
        assert_eq!(
            schedule.start(next + 20 * 24 * 60 * minute),
            next + 20 * 24 * 60 * minute - MAX_CATCH_UP.as_millis() as u64
        );
    }

    /// An exchange that answers every order list with no orders and the weights in
    /// `weights`, one per answer (the last one from then on), and counts what was asked.
    struct Exchange<'w> {
        weights: &'w [u64],
        asked: Cell<usize>,
    }

    impl Exchange<'_> {
        fn read(&self, _path: &str, _query: &str) -> Result<Answer, ReadError> {
            let n = self.asked.get();
            self.asked.set(n + 1);
            Ok(Answer {
                body: b"[]".to_vec(),
                used_weight: Some(self.weights[n.min(self.weights.len() - 1)]),
            })
        }
    }

    fn exchange(weights: &[u64]) -> Exchange<'_> {
        Exchange {
            weights,
            asked: Cell::new(0),
        }
    }

    fn symbols(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| (*s).to_owned()).collect()
    }

    /// What `list_orders` listed, or why not all of it.
    fn all_of(listed: Partial<ExchangeOrder>) -> Result<Vec<ExchangeOrder>, String> {
        if listed.failures.is_empty() {
            Ok(listed.items)
        } else {
            Err(told(&listed.failures))
        }
    }

    #[test]
    fn reads_under_the_ceiling_never_wait() {
        let exchange = exchange(&[100, 200, 2_999]);
        let read = |path: &str, query: &str| exchange.read(path, query);
        let waited = Cell::new(0);
        let wait = || {
            waited.set(waited.get() + 1);
            true
        };
        let pacer = Pacer::new(&Binance, &read, &wait, &|| false, 3_000);
        let listed = all_of(list_orders(
            &pacer,
            Market::Spot,
            &symbols(&["BTCUSDT", "ETHUSDT", "BNBUSDT"]),
            0,
            1,
        ));
        assert!(listed.unwrap().is_empty());
        assert_eq!((exchange.asked.get(), waited.get()), (3, 0));
    }

    /// Found by review: conditional orders were listed from six days before the window,
    /// which took two lists per symbol for a one-hour window against one for its orders,
    /// so symbols 31 to 60 had their orders listed and not the stops that placed them: a
    /// triggered keygate stop's order read as a leaked key's. For any window, the
    /// conditional lists cover every symbol the order lists do, and reach at least five
    /// days back.
    #[test]
    fn every_symbol_whose_orders_are_listed_has_its_conditional_orders_listed() {
        let symbols: Vec<String> = (0..100).map(|i| format!("S{i}USDT")).collect();
        let until = 1_800_000_000_000;
        for window_h in [1, 2, 20, 23, 24, 25, 47, 49, 72, 100, 24 * 7, 24 * 30] {
            let since = until - window_h * 3_600_000;
            let (_, orders, _) = symbols_that_fit(&symbols, since, until, &Kind::orders(&Binance));
            let conditional_kind = Kind::conditional_orders(&Binance);
            let from = conditional_orders_from(since, until, &conditional_kind);
            assert!(since - from >= TRIGGER_LOOKBACK_MS, "{window_h} h");
            let (_, conditional, _) = symbols_that_fit(&symbols, from, until, &conditional_kind);
            assert!(
                conditional.len() >= orders.len(),
                "{window_h} h: {} conditional, {} orders",
                conditional.len(),
                orders.len()
            );
        }
    }

    /// Regression (from a review): USD-M's ceiling (1200) was below the weight the
    /// gateway lets the bots' signed reads use (1500), so a bot with the read scope alone
    /// could keep the check for a leaked key's futures orders from ever running.
    #[test]
    fn the_bots_reads_cannot_hold_the_weight_past_reconciliations_ceilings() {
        let limits = keygate_gateway::ClientLimits::default();
        let reads = keygate_gateway::signed_read_weight_cap(&Binance, limits.public_weight_cap);
        // The pools reconciliation reads in, as it finds them: withdrawals', then each
        // market's orders'.
        let pools: Vec<&str> = std::iter::once(withdrawals_pool(&Binance))
            .chain(
                Binance
                    .order_markets()
                    .iter()
                    .map(|market| orders_pool(&Binance, *market)),
            )
            .collect();
        assert_eq!(pools, ["/sapi", "/api", "/fapi"]);
        for pool in &pools {
            let ceiling = Binance.reconciliation_weight_ceiling(pool);
            assert!(ceiling > reads, "{pool}: {ceiling} <= {reads}");
        }
        // Found by review: raised caps (`--public-weight-cap 2000`) let callers without a
        // key hold USD-M's weight at reconciliation's ceiling, so it never ran. Whatever
        // the caps, what they may use of a pool stays below its ceiling by more than the
        // heaviest single call (250), which may cross it.
        for pool in pools {
            let ceiling = Binance.reconciliation_weight_ceiling(pool);
            let shared = Binance.shared_weight_limit(pool);
            assert!(
                shared + 250 < ceiling,
                "{pool}: {shared} + 250 >= {ceiling}"
            );
        }
    }

    #[test]
    fn a_read_after_the_ceiling_waits_for_the_next_minute_first() {
        // The second answer reaches the ceiling; after the wait the weight is down.
        let exchange = exchange(&[100, 3_000, 50]);
        let read = |path: &str, query: &str| exchange.read(path, query);
        let waits_at = std::cell::RefCell::new(Vec::new());
        let wait = || {
            waits_at.borrow_mut().push(exchange.asked.get());
            true
        };
        let pacer = Pacer::new(&Binance, &read, &wait, &|| false, 3_000);
        let listed = all_of(list_orders(
            &pacer,
            Market::Spot,
            &symbols(&["A", "B", "C", "D"]),
            0,
            1,
        ));
        assert!(listed.unwrap().is_empty());
        assert_eq!(exchange.asked.get(), 4);
        assert_eq!(*waits_at.borrow(), [2], "one wait, before the third read");
    }

    /// A regression test: the public read of every symbol's price, which the holdings
    /// check makes, went out whatever weight the signed reads before it had reported.
    #[test]
    fn a_public_read_keeps_to_the_ceiling_of_its_pool() {
        let exchange = exchange(&[3_000, 50, 60]);
        let read = |path: &str, query: &str| exchange.read(path, query);
        let waits_at = std::cell::RefCell::new(Vec::new());
        let wait = || {
            waits_at.borrow_mut().push(exchange.asked.get());
            true
        };
        let pacer = Pacer::new(&Binance, &read, &wait, &|| false, 3_000);
        pacer.read("/api/v3/account", "").unwrap();
        pacer
            .paced(|| exchange.read("/api/v3/ticker/price", ""))
            .unwrap();
        assert_eq!(*waits_at.borrow(), [1], "one wait, before the public read");
        // What the public read reported counts for the next one.
        pacer.read("/api/v3/myTrades", "symbol=BTCUSDT").unwrap();
        assert_eq!((exchange.asked.get(), waits_at.borrow().len()), (3, 1));
    }

    #[test]
    fn a_ceiling_that_holds_leaves_the_rest_to_the_next_run() {
        let exchange = exchange(&[5_000]);
        let read = |path: &str, query: &str| exchange.read(path, query);
        let waited = Cell::new(0);
        let wait = || {
            waited.set(waited.get() + 1);
            true
        };
        let pacer = Pacer::new(&Binance, &read, &wait, &|| false, 3_000);
        let reason = all_of(list_orders(
            &pacer,
            Market::Spot,
            &symbols(&["A", "B", "C", "D", "E"]),
            0,
            1,
        ))
        .unwrap_err();
        // Read once, then after each of the waits, then no more.
        assert_eq!(exchange.asked.get(), 1 + MAX_WEIGHT_WAITS as usize);
        assert_eq!(waited.get(), MAX_WEIGHT_WAITS);
        assert!(
            reason.contains("at or past reconciliation's ceiling"),
            "{reason}"
        );
        assert!(reason.contains("not asked for, as above: E"), "{reason}");
    }

    /// A regression test: a wait for the exchange's weight slept up to a minute whatever
    /// happened, twice per account, so stopping `serve` could take minutes.
    #[test]
    fn a_stop_during_a_wait_ends_the_reads() {
        let exchange = exchange(&[5_000]);
        let read = |path: &str, query: &str| exchange.read(path, query);
        let stopped = || false;
        let pacer = Pacer::new(&Binance, &read, &stopped, &|| false, 3_000);
        let reason = all_of(list_orders(
            &pacer,
            Market::Spot,
            &symbols(&["A", "B", "C"]),
            0,
            1,
        ))
        .unwrap_err();
        assert_eq!(exchange.asked.get(), 1, "read on after the stop");
        assert!(reason.contains("keygate is stopping"), "{reason}");
    }

    /// A regression test: in `serve`, a run that could check no account (its accounts'
    /// seal broken, say) was only logged, so reconciliation stopped without an alert.
    #[test]
    fn runs_that_check_no_account_are_alerted_once_in_a_row() {
        let (alerter, alerts) = Alerter::channel();
        let mut watched = Watched::default();
        let failure = anyhow::anyhow!("the client and account tables do not match their seal");
        for _ in 0..3 {
            watched.run_failed(&failure, &alerter);
        }
        let raised: Vec<Alert> = alerts.try_iter().collect();
        assert_eq!(raised.len(), 1, "{raised:?}");
        assert_eq!(raised[0].rule, AlertRule::ReconcileFailed);
        assert!(raised[0].summary.contains("do not match their seal"));
        // A run that checks the accounts starts the count again.
        watched.alert(Vec::new(), &alerter);
        for _ in 0..FAILURES_BEFORE_ALERT {
            watched.run_failed(&failure, &alerter);
        }
        assert_eq!(alerts.try_iter().count(), 1);
    }

    /// A regression test: the failure warning was raised once per streak of failed runs
    /// of an account, and a failure that lasts (a delisted symbol on a client's list, or
    /// a symbol a client made up) kept the streak going for good, so a later failure (the
    /// withdrawals could not be listed) was never told. Each failure is told once.
    #[test]
    fn each_way_an_account_cannot_be_checked_is_alerted() {
        let (alerter, alerts) = Alerter::channel();
        let mut watched = Watched::default();
        let report = |failures: &[&str]| AccountReport {
            account: "main".into(),
            withdrawals: 0,
            error: None,
            withdrawals_may_pass: false,
            failures: failures
                .iter()
                .map(|f| Failure::of_read((*f).to_owned()))
                .collect(),
            not_through_keygate: Vec::new(),
            symbols: Vec::new(),
            symbols_not_asked: Vec::new(),
            orders: 0,
            orders_not_through_keygate: Vec::new(),
            orders_error: None,
            orders_may_pass: false,
        };
        let gone = "orders: GONEUSDT: it answered HTTP 400";
        let unreachable = "withdrawals: the exchange cannot be reached";
        for failures in [
            vec![gone],
            vec![gone],
            vec![gone, unreachable],
            vec![gone, unreachable],
        ] {
            watched.alert(vec![report(&failures)], &alerter);
        }
        let told: Vec<String> = alerts.try_iter().map(|a| a.summary).collect();
        assert_eq!(told.len(), 2, "{told:?}");
        assert!(told[0].contains("GONEUSDT"), "{told:?}");
        assert!(told[1].contains("cannot be reached"), "{told:?}");
    }

    /// What a run of the watch logs, as `serve` writes it.
    #[derive(Clone, Default)]
    struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Captured {
        /// `f` run with what it logs captured here.
        fn logging<R>(&self, f: impl FnOnce() -> R) -> R {
            let writer = self.clone();
            let subscriber = tracing_subscriber::fmt()
                .with_writer(move || writer.clone())
                .with_ansi(false)
                .finish();
            tracing::subscriber::with_default(subscriber, f)
        }

        fn lines(&self) -> Vec<String> {
            String::from_utf8(self.0.lock().unwrap().clone())
                .unwrap()
                .lines()
                .map(str::to_owned)
                .collect()
        }
    }

    /// A report of account `main` that failed for `failures` of the orders' lists.
    fn failed_report(failures: &[Failure]) -> AccountReport {
        AccountReport {
            failures: failures_of(&[], failures),
            orders_error: Some(told(failures)),
            ..clean_report()
        }
    }

    /// A regression test (found by review): streaks of failed runs were kept by what a
    /// failure told, and some failures tell what changes every run (the weight the
    /// exchange reported, the symbol the weight ran out at, the time a full list starts
    /// at), so one that repeated every run never made a streak and `reconcile_failed`
    /// was never raised; and serve logged no run's failures. Streaks are kept by kind, and
    /// every run's failures are logged.
    #[test]
    fn a_failure_repeated_in_other_words_makes_a_streak_and_is_logged_every_run() {
        let (alerter, alerts) = Alerter::channel();
        let mut watched = Watched::default();
        let log = Captured::default();
        // The weight stays past the ceiling: the reads give up at the fourth symbol, with
        // another weight and at another symbol each run.
        for (used, names) in [(5_000, ["A", "B", "C", "D"]), (5_400, ["B", "C", "D", "E"])] {
            let weights = [used];
            let exchange = exchange(&weights);
            let read = |path: &str, query: &str| exchange.read(path, query);
            let pacer = Pacer::new(&Binance, &read, &|| true, &|| false, 3_000);
            let listed = list_orders(&pacer, Market::Spot, &symbols(&names), 0, 1);
            assert!(told(&listed.failures).contains(&format!("reported {used} request weight")));
            log.logging(|| watched.alert(vec![failed_report(&listed.failures)], &alerter));
        }
        let raised: Vec<Alert> = alerts.try_iter().collect();
        assert_eq!(raised.len(), 1, "{raised:?}");
        assert_eq!(raised[0].rule, AlertRule::ReconcileFailed);
        assert!(
            raised[0].summary.contains("E: the exchange reported 5400"),
            "{raised:?}"
        );
        // Each run's failure is in serve's log, with its account.
        let logged: Vec<String> = log
            .lines()
            .into_iter()
            .filter(|l| l.contains("WARN") && l.contains("account=main"))
            .collect();
        assert_eq!(logged.len(), 2, "{logged:?}");
        assert!(
            logged[0].contains("D: the exchange reported 5000"),
            "{logged:?}"
        );
        assert!(
            logged[1].contains("E: the exchange reported 5400"),
            "{logged:?}"
        );

        // A day listed full, again and again, tells the time it starts at.
        let full = full_day_of_orders();
        let read = |_: &str, _: &str| {
            Ok(Answer {
                body: full.clone().into_bytes(),
                used_weight: Some(20),
            })
        };
        let mut watched = Watched::default();
        for since in [0, 100] {
            let pacer = Pacer::new(&Binance, &read, &|| true, &|| false, 3_000);
            let listed = list_orders(&pacer, Market::Spot, &symbols(&["BTCUSDT"]), since, 1_000);
            assert!(
                told(&listed.failures).contains(&rfc3339(since)),
                "{:?}",
                listed.failures
            );
            watched.alert(vec![failed_report(&listed.failures)], &alerter);
        }
        let raised: Vec<Alert> = alerts.try_iter().collect();
        assert_eq!(raised.len(), 1, "{raised:?}");
        assert!(raised[0].summary.contains("BTCUSDT: it listed 1000 orders"));
    }

    /// Failures of a read are of a kind by what failed, not by the detail after it.
    #[test]
    fn a_read_failure_is_of_a_kind_by_what_failed() {
        let kind = |reason: &str| Failure::of_read(reason.to_owned()).kind;
        assert_eq!(
            kind("it answered HTTP 418 (Way too much request weight used; IP banned until 1764756000000.)"),
            "it answered HTTP 418"
        );
        assert_eq!(kind("unreachable: 10.0.0.1:443: refused"), "unreachable");
        assert_eq!(kind("no answer in time"), "no answer in time");
        let gone = Failure::of_read("it answered HTTP 400 (Invalid symbol.)".into());
        assert_eq!(
            gone.in_symbol("GONEUSDT").of("usdm").of("orders").kind,
            "orders: usdm: GONEUSDT: it answered HTTP 400"
        );
    }

    /// A regression test (found by review): each order keygate never forwarded raised a
    /// critical alert of its own, ahead of the withdrawals' alerts, so a leaked key that
    /// placed thousands of cheap orders and then withdrew buried the withdrawal's alert
    /// behind theirs in the sinks' queues (or, past a queue's bound, had it dropped).
    /// Every account's withdrawals are alerted first; the orders in one alert per account
    /// and run, with how many, the first few and their symbols.
    #[test]
    fn withdrawals_are_alerted_first_and_orders_once_per_account_and_run() {
        let order = |n: usize| UnmatchedOrder {
            id: n.to_string(),
            market: "spot",
            conditional: false,
            client_order_id: format!("x{n}"),
            symbol: if n.is_multiple_of(2) {
                "BTCUSDT"
            } else {
                "ETHUSDT"
            }
            .into(),
            side: "BUY".into(),
            order_type: "LIMIT".into(),
            quantity: "1".into(),
            price: "1".into(),
            placed_at: "2026-01-01T00:00:00Z".into(),
            modified_outside_keygate: false,
        };
        let withdrawal = |id: &str| Unmatched {
            id: id.into(),
            asset: "USDT".into(),
            amount: "5000".into(),
            destination: "TLeakedTo".into(),
            applied_at: "2026-01-01T00:01:00Z".into(),
        };
        let report =
            |account: &str, orders: std::ops::Range<usize>, withdrawals: &[&str]| AccountReport {
                account: account.into(),
                orders_not_through_keygate: orders.map(order).collect(),
                not_through_keygate: withdrawals.iter().map(|id| withdrawal(id)).collect(),
                ..clean_report()
            };
        let (alerter, alerts) = Alerter::channel();
        let mut watched = Watched::default();
        watched.alert(
            vec![
                report("main", 0..3_000, &["w1"]),
                report("other", 0..0, &["w2"]),
            ],
            &alerter,
        );
        let raised: Vec<Alert> = alerts.try_iter().collect();
        let rules: Vec<(AlertRule, Option<&str>)> = raised
            .iter()
            .map(|a| (a.rule, a.account.as_deref()))
            .collect();
        assert_eq!(
            rules,
            [
                (AlertRule::UnreconciledWithdrawal, Some("main")),
                (AlertRule::UnreconciledWithdrawal, Some("other")),
                (AlertRule::UnreconciledOrder, Some("main")),
            ]
        );
        assert!(raised.iter().all(|a| a.severity == Severity::Critical));
        let orders = &raised[2].summary;
        assert!(
            orders.starts_with("account main placed 3000 orders that keygate never forwarded: "),
            "{orders}"
        );
        assert!(
            orders
                .ends_with("lists them all); ids 0, 1, 2, 3, 4 and 2995 more, in BTCUSDT, ETHUSDT"),
            "{orders}"
        );
        // The next run alerts the new order alone; those told of are not told again.
        watched.alert(vec![report("main", 0..3_001, &["w1"])], &alerter);
        let raised: Vec<Alert> = alerts.try_iter().collect();
        assert_eq!(raised.len(), 1, "{raised:?}");
        assert!(
            raised[0]
                .summary
                .starts_with("account main placed order 3000 (BUY LIMIT 1 BTCUSDT at 1) at"),
            "{raised:?}"
        );
    }

    /// An `allOrders` answer as long as Binance lists at once: BTCUSDT buys, all placed at 500.
    fn full_day_of_orders() -> String {
        let one = |n: usize| {
            format!(
                r#"{{"orderId":{n},"clientOrderId":"x{n}","symbol":"BTCUSDT","side":"BUY","type":"LIMIT","origQty":"1","price":"1","time":500}}"#
            )
        };
        let orders: Vec<String> = (0..Binance.order_history_limit()).map(one).collect();
        format!("[{}]", orders.join(","))
    }

    /// A regression test: a day that listed as many orders as Binance lists at once
    /// threw away every order of its symbol, so a leaked key that placed a thousand cheap
    /// orders beside its real one turned the critical alert into one failure warning.
    #[test]
    fn a_full_day_keeps_what_it_listed_and_says_it_is_full() {
        let full = full_day_of_orders();
        let read = |_: &str, _: &str| {
            Ok(Answer {
                body: full.clone().into_bytes(),
                used_weight: Some(20),
            })
        };
        let pacer = Pacer::new(&Binance, &read, &|| true, &|| false, 3_000);
        let listed = list_orders(&pacer, Market::Spot, &symbols(&["BTCUSDT"]), 0, 1_000);
        assert_eq!(listed.items.len(), Binance.order_history_limit());
        assert_eq!(listed.failures.len(), 1, "{:?}", listed.failures);
        assert!(
            listed.failures[0]
                .text
                .starts_with("BTCUSDT: it listed 1000 orders"),
            "{:?}",
            listed.failures
        );
    }

    /// A regression test: a full page of withdrawals (a thousand) made the whole list an
    /// error, so a leaked key's thousand withdrawals were none of them reported; the
    /// history is now read page after page, and one listed twice (the pages moved while
    /// they were read) is kept once.
    #[test]
    fn withdrawals_are_listed_page_after_page() {
        let one = |n: usize| {
            format!(
                r#"{{"id":"w{n}","amount":"1","coin":"USDT","network":"TRX","address":"T{n}","applyTime":"2026-01-01 00:00:00"}}"#
            )
        };
        let page = |from: usize, count: usize| {
            format!(
                "[{}]",
                (from..from + count).map(one).collect::<Vec<_>>().join(",")
            )
        };
        let offsets = std::cell::RefCell::new(Vec::new());
        let read = |_: &str, query: &str| {
            let offset: usize = query
                .split('&')
                .find_map(|p| p.strip_prefix("offset="))
                .unwrap()
                .parse()
                .unwrap();
            offsets.borrow_mut().push(offset);
            // The second page starts one back: a new withdrawal moved them down.
            let body = match offset {
                0 => page(0, Binance.withdrawal_history_limit()),
                _ => page(offset - 1, 2),
            };
            Ok(Answer {
                body: body.into_bytes(),
                used_weight: Some(20),
            })
        };
        let pacer = Pacer::new(&Binance, &read, &|| true, &|| false, 3_000);
        let listed = list_withdrawals(&pacer, 0);
        assert!(listed.failures.is_empty(), "{:?}", listed.failures);
        assert_eq!(*offsets.borrow(), [0, Binance.withdrawal_history_limit()]);
        assert_eq!(listed.items.len(), Binance.withdrawal_history_limit() + 1);
        assert_eq!(listed.items.last().unwrap().id, "w1000");
    }

    /// A regression test: a full list of a day's orders was kept and the rest of the day
    /// never listed; the parts of the day it did not cover are now listed too, whichever
    /// end the exchange lists from.
    #[test]
    fn a_full_day_is_listed_again_where_its_list_did_not_reach() {
        let placed: Vec<u64> = (0..1500).collect();
        for newest_first in [false, true] {
            let read = |_: &str, query: &str| {
                let param = |name: &str| -> u64 {
                    query
                        .split('&')
                        .find_map(|p| p.strip_prefix(name))
                        .unwrap()
                        .parse()
                        .unwrap()
                };
                let (start, end) = (param("startTime="), param("endTime="));
                let mut within: Vec<u64> = placed
                    .iter()
                    .copied()
                    .filter(|t| (start..=end).contains(t))
                    .collect();
                if newest_first {
                    within.reverse();
                }
                within.truncate(Binance.order_history_limit());
                let orders: Vec<String> = within
                    .iter()
                    .map(|t| {
                        format!(
                            r#"{{"orderId":{t},"clientOrderId":"x{t}","symbol":"BTCUSDT","side":"BUY","type":"LIMIT","origQty":"1","price":"1","time":{t}}}"#
                        )
                    })
                    .collect();
                Ok(Answer {
                    body: format!("[{}]", orders.join(",")).into_bytes(),
                    used_weight: Some(20),
                })
            };
            let pacer = Pacer::new(&Binance, &read, &|| true, &|| false, 3_000);
            let listed = list_orders(&pacer, Market::Spot, &symbols(&["BTCUSDT"]), 0, 1_499);
            assert!(listed.failures.is_empty(), "{:?}", listed.failures);
            assert_eq!(listed.items.len(), 1500, "newest first: {newest_first}");
        }
    }

    /// A regression test: more symbols than [`MAX_ORDER_QUERIES`] lists allow (which the
    /// orders a leaked key leaves open can name) made the whole account's orders go
    /// unlisted; now the first symbols given (keygate's own) are listed, the rest named.
    #[test]
    fn too_many_symbols_list_those_that_fit_first() {
        let exchange = exchange(&[100]);
        let read = |path: &str, query: &str| exchange.read(path, query);
        let pacer = Pacer::new(&Binance, &read, &|| true, &|| false, 3_000);
        let names: Vec<String> = (0..MAX_ORDER_QUERIES + 2)
            .map(|i| format!("S{i:03}USDT"))
            .collect();
        let listed = list_orders(&pacer, Market::Spot, &names, 0, 1);
        assert_eq!(exchange.asked.get(), MAX_ORDER_QUERIES);
        assert_eq!(listed.failures.len(), 1, "{:?}", listed.failures);
        assert!(
            listed.failures[0]
                .text
                .contains("S060USDT, S061USDT not asked for"),
            "{:?}",
            listed.failures
        );
    }

    /// A regression test: any failure kept `serve`'s next run starting where the failed
    /// one had, so a symbol the exchange refuses (delisted: -1121) widened every window
    /// after it to seven days, where only 8 symbols fit the list cap, and most symbols
    /// went unchecked for good. Only what may pass by asking again is left for later.
    #[test]
    fn only_failures_that_may_pass_are_left_for_the_next_run() {
        let answer = |status: u16| {
            move |_: &str, query: &str| {
                if query.contains("symbol=GONEUSDT") || status == 503 {
                    Err(ReadError {
                        reason: format!("it answered HTTP {status}"),
                        may_pass: status != 400,
                    })
                } else {
                    Ok(Answer {
                        body: b"[]".to_vec(),
                        used_weight: Some(1),
                    })
                }
            }
        };
        let list = |read: &SignedRead<'_>, names: &[String]| {
            let pacer = Pacer::new(&Binance, read, &|| true, &|| false, 3_000);
            let mut listed = list_orders(&pacer, Market::Spot, names, 0, 1);
            listed.may_pass |= pacer.may_pass();
            listed
        };
        let refused = answer(400);
        let listed = list(&refused, &symbols(&["BTCUSDT", "GONEUSDT"]));
        assert_eq!(told(&listed.failures), "GONEUSDT: it answered HTTP 400");
        assert!(!listed.may_pass);
        let down = answer(503);
        let listed = list(&down, &symbols(&["BTCUSDT"]));
        assert_eq!(listed.failures.len(), 1);
        assert!(listed.may_pass);
        // More symbols than fit: what is past the cap stays so on the next run.
        let names: Vec<String> = (0..MAX_ORDER_QUERIES + 1)
            .map(|i| format!("S{i:03}USDT"))
            .collect();
        let fine = answer(200);
        let listed = list(&fine, &names);
        assert_eq!(listed.failures.len(), 1, "{:?}", listed.failures);
        assert!(!listed.may_pass);
        // And the watch goes back only for what may pass.
        let report = |error: Option<&str>, orders_error: Option<&str>, may_pass| AccountReport {
            account: "main".into(),
            withdrawals: 0,
            error: error.map(str::to_owned),
            withdrawals_may_pass: may_pass && error.is_some(),
            failures: Vec::new(),
            not_through_keygate: Vec::new(),
            symbols: Vec::new(),
            symbols_not_asked: Vec::new(),
            orders: 0,
            orders_not_through_keygate: Vec::new(),
            orders_error: orders_error.map(str::to_owned),
            orders_may_pass: may_pass && orders_error.is_some(),
        };
        let run = |reports| is_left_for_later(&Ok(reports));
        assert!(!run(vec![report(None, None, false)]));
        assert!(!run(vec![report(
            None,
            Some("GONEUSDT: it answered HTTP 400"),
            false
        )]));
        assert!(run(vec![report(
            None,
            Some("BTCUSDT: it answered HTTP 503"),
            true
        )]));
        assert!(run(vec![report(Some("unreachable"), None, true)]));
        assert!(!run(vec![report(
            Some("it listed 100000 withdrawals, 100 pages, and more may follow"),
            None,
            false
        )]));
        assert!(is_left_for_later(&Err(anyhow::anyhow!(
            "the seal does not hold"
        ))));
    }

    /// A regression test: a stop was looked at only while waiting for the exchange's
    /// weight, so a reconciliation under the ceiling read on, every symbol of every day
    /// of every account, before `serve` could stop.
    #[test]
    fn a_stop_between_reads_ends_the_reads() {
        let exchange = exchange(&[100]);
        let read = |path: &str, query: &str| exchange.read(path, query);
        let stopping = || exchange.asked.get() >= 1;
        let pacer = Pacer::new(&Binance, &read, &|| true, &stopping, 3_000);
        let reason = all_of(list_orders(
            &pacer,
            Market::Spot,
            &symbols(&["A", "B", "C"]),
            0,
            1,
        ))
        .unwrap_err();
        assert_eq!(exchange.asked.get(), 1, "read on after the stop");
        assert!(reason.contains("keygate is stopping"), "{reason}");
        assert!(
            reason.starts_with("B: keygate is stopping") && reason.ends_with("as above: C"),
            "{reason}"
        );
    }

    /// A regression test (found by review): a symbol past the list cap made "listing the
    /// orders of 1 symbols", and was counted among the symbols asked for by nothing but
    /// that message.
    #[test]
    fn a_symbol_past_the_cap_is_named_as_not_asked_for() {
        let exchange = exchange(&[100]);
        let read = |path: &str, query: &str| exchange.read(path, query);
        let pacer = Pacer::new(&Binance, &read, &|| true, &|| false, 3_000);
        let days = MAX_ORDER_QUERIES as u64 + 1;
        let listed = list_orders(
            &pacer,
            Market::Spot,
            &symbols(&["BTCUSDT"]),
            0,
            days * Binance.order_history_span_ms(),
        );
        assert_eq!(exchange.asked.get(), 0);
        assert_eq!(listed.unasked, ["BTCUSDT"]);
        assert_eq!(
            told(&listed.failures),
            format!(
                "listing the orders of 1 symbol, {days} requests each, takes more than \
                 {MAX_ORDER_QUERIES} requests: BTCUSDT not asked for; narrow --since"
            )
        );
    }

    /// An account's report with nothing found and nothing failed.
    fn clean_report() -> AccountReport {
        AccountReport {
            account: "main".into(),
            withdrawals: 0,
            error: None,
            withdrawals_may_pass: false,
            failures: Vec::new(),
            not_through_keygate: Vec::new(),
            symbols: Vec::new(),
            symbols_not_asked: Vec::new(),
            orders: 0,
            orders_not_through_keygate: Vec::new(),
            orders_error: None,
            orders_may_pass: false,
        }
    }

    /// The report's lines for the account, without the heading.
    fn lines_of(report: AccountReport) -> Vec<String> {
        report_lines(&[report], 0).split_off(1)
    }

    /// A regression test (found by review): a run whose order lists failed said "symbols
    /// asked for: none: no symbol was traded through keygate…" beside the symbols it had
    /// not asked for, then "0 order(s) listed, all through keygate" right after its FAILED
    /// line.
    #[test]
    fn a_list_that_failed_never_reads_as_all_through_keygate() {
        let clean = lines_of(clean_report());
        assert_eq!(
            clean,
            [
                "  main: 0 withdrawal(s), all through keygate",
                "  main: 0 order(s), all through keygate (symbols asked for: none: no symbol \
                 was traded through keygate, allowed to its clients or has an order open)",
            ]
        );

        let over = "listing the orders of 2 symbols, 70 requests each, takes more than 60 \
                    requests: BTCUSDT, ETHUSDT not asked for; narrow --since";
        let none_asked = lines_of(AccountReport {
            symbols_not_asked: symbols(&["BTCUSDT", "ETHUSDT"]),
            orders_error: Some(over.into()),
            ..clean_report()
        });
        assert_eq!(
            none_asked,
            [
                "  main: 0 withdrawal(s), all through keygate".to_owned(),
                format!(
                    "  main: FAILED: cannot list all of its orders (symbols asked for: none; \
                     not asked for: BTCUSDT, ETHUSDT): {over}"
                ),
                "  main: no order listed; those that could not be listed are not checked"
                    .to_owned(),
            ]
        );

        let some_asked = lines_of(AccountReport {
            symbols: symbols(&["BTCUSDT"]),
            orders: 3,
            orders_error: Some("ETHUSDT: it answered HTTP 400".into()),
            ..clean_report()
        });
        assert_eq!(
            some_asked[1..],
            [
                "  main: FAILED: cannot list all of its orders (symbols asked for: BTCUSDT): \
                 ETHUSDT: it answered HTTP 400",
                "  main: 3 order(s) listed, each through keygate; those that could not be \
                 listed are not checked",
            ]
        );
    }

    /// A regression test: when the withdrawals could not all be listed, those listed that
    /// keygate never forwarded were not printed at all, only the failure.
    #[test]
    fn withdrawals_found_outside_keygate_are_listed_though_the_rest_failed() {
        let more = "it listed 100000 withdrawals, 100 pages, and more may follow; narrow --since";
        let lines = lines_of(AccountReport {
            withdrawals: 100_000,
            error: Some(more.into()),
            not_through_keygate: vec![Unmatched {
                id: "w-7".into(),
                asset: "USDT".into(),
                amount: "7".into(),
                destination: "TLeakedTo".into(),
                applied_at: "2026-01-01T00:00:00.000Z".into(),
            }],
            ..clean_report()
        });
        assert_eq!(
            lines[..3],
            [
                format!("  main: FAILED: cannot list all of its withdrawals: {more}"),
                "  main: 1 withdrawal(s) NOT THROUGH KEYGATE: unless someone made them by hand \
                 on the exchange, its real key was used elsewhere. Disable its API keys at \
                 the exchange now (the one keygate holds, and any an earlier rotation \
                 retired: the exchange does not say which key made them), make a new one, \
                 then `keygate account rotate main`:"
                    .to_owned(),
                "    w-7 7 USDT to TLeakedTo at 2026-01-01T00:00:00.000Z".to_owned(),
            ]
        );

        let listed_some = lines_of(AccountReport {
            withdrawals: 5,
            error: Some("the exchange cannot be reached".into()),
            ..clean_report()
        });
        assert_eq!(
            listed_some[1],
            "  main: 5 withdrawal(s) listed, each through keygate; those that could not be \
             listed are not checked"
        );
    }

    /// Found by review: every symbol keygate's requests named came first, so a bot key
    /// naming sixty symbols in order tests pushed the symbol where a leaked key traded
    /// (found through its holdings or fees) past the cap of order lists a run asks.
    #[test]
    fn symbols_where_orders_were_placed_or_traces_left_come_first() {
        let names = |list: &[&str]| list.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        let junk: Vec<String> = (0..60).map(|i| format!("JUNK{i}USDT")).collect();
        let (symbols, unlisted) = symbols_to_ask(
            Market::Spot,
            [
                names(&["BTCUSDT"]),
                names(&["SOLUSDT"]),
                junk.iter()
                    .cloned()
                    .chain(names(&["BTCUSDT", "bad symbol"]))
                    .collect(),
                names(&["ETHUSDT"]),
                names(&["SOLUSDT", "XRPUSDT"]),
            ],
        );
        assert_eq!(&symbols[..2], ["BTCUSDT", "SOLUSDT"]);
        assert_eq!(symbols.len(), 2 + 60 + 2);
        assert_eq!(symbols[62..], ["ETHUSDT", "XRPUSDT"]);
        assert_eq!(unlisted.into_iter().collect::<Vec<_>>(), ["bad symbol"]);
    }
}
