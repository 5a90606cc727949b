//! `keygate reconcile`: withdrawals from an account that keygate never forwarded. The
//! exchange lists an account's withdrawals whoever asked for them, so one that nobody
//! made by hand on the exchange's own site was made with a leaked key. (An account, or
//! sub-account, that only keygate withdraws from has no such doubt.)

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use keygate_audit::Filter;
use keygate_core::{ActionKind, EventBody, Exchange, Outcome};
use keygate_exchanges::{binance, Adapter, Binance, ExchangeWithdrawal};
use keygate_monitor::{Alert, AlertRule, Alerter, Severity};
use keygate_store::Store;
use keygate_vault::MasterKey;
use rust_decimal::Decimal;
use serde::Serialize;

use crate::audit_cmd::for_each_event;
use crate::home::{now_ms, parse_duration, Unlocked};
use crate::output::{print_json, rfc3339};
use crate::remote::Exchanges;

/// How long before the exchange applied a withdrawal keygate may have forwarded it.
const FORWARDED_BEFORE_MS: u64 = 10 * 60_000;
/// How far the exchange's clock may run behind keygate's.
const CLOCK_SKEW_MS: u64 = 2 * 60_000;

/// `keygate reconcile`
#[derive(Args, Debug)]
pub struct ReconcileArgs {
    /// The window: withdrawals applied for from this long ago (`24h`, `7d`; Binance lists
    /// 90 days and 1000 withdrawals at most).
    #[arg(long, value_name = "DURATION", default_value = "24h")]
    pub since: String,
    /// Print one JSON object per account.
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
    /// Why the exchange could not be asked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The withdrawals keygate did not forward.
    pub not_through_keygate: Vec<Unmatched>,
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

/// A withdrawal keygate forwarded, from the audit log.
struct Forwarded {
    account: String,
    asset: String,
    amount: Decimal,
    destination: String,
    ts_ms: u64,
    matched: bool,
}

/// Compares each account's withdrawals at its exchange with those keygate forwarded.
/// Exit code 1 when one was not forwarded by keygate, or an exchange could not be asked.
pub fn run(vault: &Unlocked, args: &ReconcileArgs) -> anyhow::Result<i32> {
    let since = parse_duration(&args.since).context("--since")?;
    let since_ms = now_ms().saturating_sub(since.as_millis() as u64);
    let reports = reconcile(&vault.store, &vault.master, &Exchanges::new()?, since_ms)?;
    let failed = reports
        .iter()
        .any(|r| r.error.is_some() || !r.not_through_keygate.is_empty());
    if args.json {
        print_json(&reports)?;
    } else {
        print(&reports, since_ms);
    }
    Ok(i32::from(failed))
}

/// Each account's withdrawals applied at its exchange since `since_ms`, against those
/// keygate forwarded.
pub(crate) fn reconcile(
    store: &Store,
    master: &MasterKey,
    exchanges: &Exchanges,
    since_ms: u64,
) -> anyhow::Result<Vec<AccountReport>> {
    let mut forwarded = forwarded_withdrawals(store, since_ms.saturating_sub(FORWARDED_BEFORE_MS))?;
    let mut reports = Vec::new();
    for account in store.accounts().context("reading accounts")? {
        let listed = match account.exchange {
            Exchange::Binance => {
                let (path, query) = Binance.withdrawal_history(since_ms);
                exchanges
                    .signed_read(&Binance, master, &account, path, &query)
                    .and_then(|body| {
                        Binance
                            .parse_withdrawal_history(&body)
                            .ok_or_else(|| "its answer does not read".to_owned())
                    })
                    .and_then(|listed| {
                        // A full answer may have left some out: say so rather than pass.
                        if listed.len() >= binance::WITHDRAW_HISTORY_LIMIT {
                            Err(format!(
                                "it listed {} withdrawals, as many as it lists at once; \
                                 narrow --since",
                                listed.len()
                            ))
                        } else {
                            Ok(listed)
                        }
                    })
            }
            other => Err(format!("keygate cannot ask {other} yet")),
        };
        let label = account.label.to_string();
        reports.push(match listed {
            Ok(listed) => AccountReport {
                withdrawals: listed.len(),
                not_through_keygate: listed
                    .into_iter()
                    .filter(|w| !claim(&mut forwarded, &label, w))
                    .map(|w| Unmatched {
                        id: w.id,
                        asset: w.asset,
                        amount: w.amount.normalize().to_string(),
                        destination: w.destination,
                        applied_at: rfc3339(w.applied_ms),
                    })
                    .collect(),
                account: label,
                error: None,
            },
            Err(reason) => AccountReport {
                account: label,
                withdrawals: 0,
                error: Some(reason),
                not_through_keygate: Vec::new(),
            },
        });
    }
    Ok(reports)
}

/// Marks the forwarded withdrawal that `w` is, if keygate forwarded one like it: same
/// account, asset, amount and destination, shortly before the exchange applied it.
fn claim(forwarded: &mut [Forwarded], account: &str, w: &ExchangeWithdrawal) -> bool {
    let found = forwarded.iter_mut().find(|f| {
        !f.matched
            && f.account == account
            && f.asset == w.asset
            && f.amount == w.amount
            && f.destination == w.destination
            && f.ts_ms <= w.applied_ms + CLOCK_SKEW_MS
            && f.ts_ms + FORWARDED_BEFORE_MS >= w.applied_ms
    });
    match found {
        Some(f) => {
            f.matched = true;
            true
        }
        None => false,
    }
}

/// Every withdrawal keygate allowed and sent (or may have sent) since `since_ms`.
fn forwarded_withdrawals(store: &Store, since_ms: u64) -> anyhow::Result<Vec<Forwarded>> {
    let filter = Filter {
        since_ms: Some(since_ms),
        allowed: Some(true),
        ..Filter::default()
    };
    let mut forwarded = Vec::new();
    for_each_event(store, &filter, |page| {
        for (_, event) in page {
            let EventBody::Request(r) = &event.body else {
                continue;
            };
            let sent = matches!(
                r.outcome,
                Outcome::Pending | Outcome::Answered | Outcome::Unknown
            );
            if r.action != ActionKind::Withdraw || !sent {
                continue;
            }
            if let (Some(account), Some(asset), Some(amount), Some(destination)) =
                (&r.account, &r.asset, r.amount, &r.destination)
            {
                forwarded.push(Forwarded {
                    account: account.clone(),
                    asset: asset.clone(),
                    amount,
                    destination: destination.clone(),
                    ts_ms: event.ts_ms,
                    matched: false,
                });
            }
        }
        Ok(())
    })?;
    Ok(forwarded)
}

fn print(reports: &[AccountReport], since_ms: u64) {
    println!(
        "withdrawals since {}, at each exchange and in keygate's audit log:",
        rfc3339(since_ms)
    );
    for r in reports {
        if let Some(error) = &r.error {
            println!("  {}: FAILED: cannot ask the exchange: {error}", r.account);
        } else if r.not_through_keygate.is_empty() {
            println!(
                "  {}: {} withdrawal(s), all through keygate",
                r.account, r.withdrawals
            );
        } else {
            println!(
                "  {}: {} withdrawal(s) NOT THROUGH KEYGATE: unless someone made them by hand \
                 on the exchange, its real key was used elsewhere. Disable the key at the \
                 exchange now, then `keygate account rotate {}`:",
                r.account,
                r.not_through_keygate.len(),
                r.account
            );
            for w in &r.not_through_keygate {
                println!(
                    "    {} {} {} to {} at {}",
                    w.id, w.amount, w.asset, w.destination, w.applied_at
                );
            }
        }
    }
}

/// How far back the first reconciliation of a `serve` looks: what happened while keygate
/// was not running.
const FIRST_WINDOW: Duration = Duration::from_secs(24 * 3600);
/// The shortest window of the later ones.
const MIN_WINDOW: Duration = Duration::from_secs(3600);

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
    pub(crate) fn start(
        db: &Path,
        master: Arc<MasterKey>,
        every: Duration,
        alerter: Alerter,
    ) -> anyhow::Result<Watch> {
        let store = Store::open(db).context("opening the database for reconciliation")?;
        let exchanges = Exchanges::new()?;
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = thread::Builder::new()
            .name("keygate-reconcile".into())
            .spawn(move || {
                let mut watched = Watched::default();
                let mut window = FIRST_WINDOW;
                loop {
                    let since_ms = now_ms().saturating_sub(window.as_millis() as u64);
                    match reconcile(&store, &master, &exchanges, since_ms) {
                        Ok(reports) => watched.alert(reports, &alerter),
                        Err(e) => {
                            tracing::error!(error = %format!("{e:#}"), "reconciliation failed")
                        }
                    }
                    window = (every * 2).max(MIN_WINDOW);
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
    /// (account, the exchange's withdrawal id).
    reported: HashSet<(String, String)>,
    /// Accounts whose exchange could not be asked, and how many times in a row.
    failing: HashMap<String, u32>,
}

impl Watched {
    fn alert(&mut self, reports: Vec<AccountReport>, alerter: &Alerter) {
        for report in reports {
            let account = report.account;
            let alert = |severity, rule, summary| Alert {
                account: Some(account.clone()),
                ..Alert::outside_log(severity, rule, summary)
            };
            if let Some(error) = report.error {
                let failures = self.failing.entry(account.clone()).or_default();
                *failures += 1;
                if *failures == FAILURES_BEFORE_ALERT {
                    alerter.raise(alert(
                        Severity::Warning,
                        AlertRule::ReconcileFailed,
                        format!(
                            "cannot check the withdrawals of account {account} at its \
                             exchange: {error}"
                        ),
                    ));
                }
                continue;
            }
            self.failing.remove(&account);
            for w in report.not_through_keygate {
                if self.reported.insert((account.clone(), w.id.clone())) {
                    alerter.raise(alert(
                        Severity::Critical,
                        AlertRule::UnreconciledWithdrawal,
                        format!(
                            "account {account} withdrew {} {} to {} at {} (id {}), and keygate \
                             never forwarded it: unless someone made it by hand on the \
                             exchange, the real key has leaked; disable it at the exchange now",
                            w.amount, w.asset, w.destination, w.applied_at, w.id
                        ),
                    ));
                }
            }
        }
    }
}
