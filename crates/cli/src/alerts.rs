//! `keygate alerts`: the alerts the audit log raises, and a test of where they go.

use std::fs::{File, TryLockError};
use std::io::{Read, Write};

use anyhow::{bail, Context};
use clap::Args;
use keygate_audit::Filter;
use keygate_monitor::{
    dispatch_blocking, Alert, AlertRule, AlertsConfig, Rules, Settings, Severity, Thresholds,
};
use sha2::{Digest, Sha256};

use crate::audit_cmd::{exit_code_showing, for_each_verified_event, window};
use crate::home::{now_ms, Home, Unlocked};
use crate::output::{escape_controls, print_json, rfc3339};

/// `keygate alerts`
#[derive(clap::Subcommand, Debug)]
pub enum AlertsCmd {
    /// The alerts that the audit log's events raise, recomputed from the log: what
    /// `keygate serve` sent, including anything a webhook missed. Exit 1 if the log does
    /// not verify (the alerts are still listed).
    List(ListArgs),
    /// Send a critical test alert to every webhook and email in config.toml and say what
    /// became of each. Exit 1 if any delivery failed. A running `serve` uses the alert
    /// settings it started with: this warns when config.toml's differ from them.
    Test,
}

/// `alerts list`
#[derive(Args, Debug)]
pub struct ListArgs {
    /// Alerts from this time on: a duration ago (`1h`, `7d`) or an RFC 3339 UTC time
    /// (`2026-12-06T13:00:00Z`). Default: a day before --until, or before now.
    #[arg(long, value_name = "WHEN")]
    pub since: Option<String>,
    /// Only alerts raised before this time: a duration ago or an RFC 3339 UTC time.
    #[arg(long, value_name = "WHEN")]
    pub until: Option<String>,
    /// The least severity shown.
    #[arg(long, value_enum, default_value = "info")]
    pub min_severity: SeverityArg,
    /// Print one JSON array.
    #[arg(long)]
    pub json: bool,
}

/// A severity on the command line.
#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum SeverityArg {
    /// Everything.
    Info,
    /// Warnings and critical alerts.
    Warning,
    /// Critical alerts only.
    Critical,
}

impl From<SeverityArg> for Severity {
    fn from(arg: SeverityArg) -> Severity {
        match arg {
            SeverityArg::Info => Severity::Info,
            SeverityArg::Warning => Severity::Warning,
            SeverityArg::Critical => Severity::Critical,
        }
    }
}

/// The `[alerts]` settings of `home`'s config.toml.
pub fn settings(home: &Home) -> anyhow::Result<Settings> {
    home.alerts_config()?
        .settings()
        .with_context(|| format!("[alerts] in {}", home.config_path().display()))
}

/// The file next to `serve.lock` in which a running `serve` records a digest of the
/// alert settings it started with, and holds a shared lock for as long as it runs.
const SERVE_ALERTS: &str = "serve.alerts";

/// The `[alerts]` settings of `home`'s config.toml, for `serve`, and a digest of them
/// to record with [`record_serve_settings`], made from the same reading of the file.
pub fn serve_settings(home: &Home) -> anyhow::Result<(Settings, String)> {
    let config = home.alerts_config()?;
    // Before the secret files are read: a file replaced meanwhile makes a warning too
    // many, never one too few.
    let digest = digest(&config);
    let settings = config
        .settings()
        .with_context(|| format!("[alerts] in {}", home.config_path().display()))?;
    Ok((settings, digest))
}

/// A digest of `[alerts]` as written and of when each secret file it names last changed,
/// to tell whether a running `serve` alerts as config.toml now says. Not of what the
/// secret files hold: no digest of a password is written to disk, where a backup of the
/// home could take it to be guessed at.
fn digest(config: &AlertsConfig) -> String {
    let mut hash = Sha256::new();
    // Serializing a struct of strings, numbers and paths cannot fail; an empty digest
    // input would only make a warning too many.
    hash.update(serde_json::to_vec(config).unwrap_or_default());
    let secret_files = config
        .webhooks
        .iter()
        .filter_map(|w| w.secret_file.as_deref())
        .chain(
            config
                .emails
                .iter()
                .filter_map(|e| e.password_file.as_deref()),
        );
    for file in secret_files {
        let changed = std::fs::metadata(file).ok().map(|m| {
            let modified = m
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_nanos());
            (m.len(), modified)
        });
        hash.update(format!("\n{}: {changed:?}", file.display()));
    }
    hex::encode(hash.finalize())
}

/// Records, for as long as the returned file lives, that a `serve` of `home` runs with the
/// alert settings whose digest is `digest`; called by `serve` once it holds `serve.lock`.
/// `doctor` and `alerts test` read it: a running serve does not read config.toml again,
/// and what they check there is not what it does.
pub fn record_serve_settings(home: &Home, digest: &str) -> anyhow::Result<File> {
    let path = home.dir.join(SERVE_ALERTS);
    let mut file = crate::home::open_owner_only(&path)?;
    // Written before it is locked: until then, it says no serve runs. Only the holder of
    // `serve.lock` writes it.
    file.set_len(0)
        .and_then(|()| writeln!(file, "pid {}\nalerts {digest}", std::process::id()))
        .with_context(|| format!("writing {}", path.display()))?;
    // Shared, and waited for: a `doctor` looking whether serve runs holds it a moment.
    file.lock_shared()
        .with_context(|| format!("locking {}", path.display()))?;
    Ok(file)
}

/// A running `serve` of this home whose alert settings are not config.toml's now.
pub struct StaleServe {
    /// Its process id.
    pub pid: String,
}

impl StaleServe {
    /// What to tell the operator.
    pub fn warning(&self) -> String {
        format!(
            "the running `keygate serve` (pid {}) uses the alert settings it started with, \
             and config.toml's [alerts] (or a secret file it names) changed since: it does \
             not alert as they now say; restart it to apply them",
            self.pid
        )
    }
}

/// The `serve` of `home` that is running, if one is and its alert settings differ from
/// config.toml's now (those that do not read differ too). `None` when none runs, or it
/// alerts as config.toml says.
pub fn stale_serve(home: &Home) -> Option<StaleServe> {
    let path = home.dir.join(SERVE_ALERTS);
    let mut file = File::open(&path).ok()?;
    let mut recorded = String::new();
    file.read_to_string(&mut recorded).ok()?;
    match file.try_lock() {
        // Nobody holds it: no serve runs (the file is a stopped one's).
        Ok(()) => return None,
        Err(TryLockError::WouldBlock) => {}
        Err(TryLockError::Error(_)) => return None,
    }
    let field = |name: &str| {
        recorded
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
            .map(str::to_owned)
    };
    let pid = field("pid").unwrap_or_else(|| "?".to_owned());
    let now = home.alerts_config().ok().map(|config| digest(&config));
    if now.is_some() && now == field("alerts") {
        return None;
    }
    Some(StaleServe { pid })
}

/// The rules' thresholds from `home`'s config.toml (no secret file is read).
pub fn thresholds(home: &Home) -> anyhow::Result<Thresholds> {
    home.alerts_config()?
        .thresholds()
        .with_context(|| format!("[alerts] in {}", home.config_path().display()))
}

/// Runs `keygate alerts list`: exit 1 when the audit log does not verify (the alerts are
/// still listed, from what it holds, and the first bad event named on standard error),
/// as `audit verify` exits.
pub fn list(vault: &Unlocked, args: &ListArgs) -> anyhow::Result<i32> {
    let thresholds = thresholds(&vault.home)?;
    let (since_ms, until_ms) = window(args.since.as_deref(), args.until.as_deref(), now_ms())?;
    // A day before the window's end, so that `--until` alone lists that day (found by
    // review: a default of 24h before now made an earlier --until an empty window).
    let since_ms =
        since_ms.unwrap_or_else(|| until_ms.unwrap_or_else(now_ms).saturating_sub(86_400_000));
    // Start early, so that a burst begun before `since` counts whole and an alert raised
    // before it keeps its quiet period (found by review: started one denial window early,
    // the list showed an alert serve never sent and left out one it sent).
    let lead = thresholds
        .denial_window
        .max(thresholds.quiet_period)
        .as_millis() as u64;
    let filter = Filter {
        since_ms: Some(since_ms.saturating_sub(lead)),
        until_ms,
        ..Filter::default()
    };
    let min: Severity = args.min_severity.into();
    // The lists as they stand: a client issued before the window has its list from here.
    let lists = keygate_monitor::symbol_lists(&vault.store).context("reading clients")?;
    let mut rules = Rules::new(thresholds).with_symbol_lists(lists);
    let mut alerts: Vec<Alert> = Vec::new();
    // The alerts a webhook missed are looked for here: an edited log would hide them.
    let problem = for_each_verified_event(vault, &filter, |events| {
        for (seq, event) in events {
            alerts.extend(
                rules
                    .evaluate(*seq, event)
                    .into_iter()
                    .filter(|a| a.ts_ms >= since_ms && a.severity >= min)
                    .filter(|a| until_ms.is_none_or(|until| a.ts_ms < until)),
            );
        }
        Ok(())
    })?;
    if args.json {
        print_json(&alerts)?;
    } else if alerts.is_empty() {
        match until_ms {
            Some(until_ms) => println!(
                "no alerts from {} to {}",
                rfc3339(since_ms),
                rfc3339(until_ms)
            ),
            None => println!("no alerts since {}", rfc3339(since_ms)),
        }
    } else {
        for alert in &alerts {
            println!(
                "{}  {:<8}  {:<15}  #{}  {}",
                rfc3339(alert.ts_ms),
                alert.severity.as_str(),
                alert.rule.as_str(),
                alert.event_seq,
                alert.summary
            );
        }
    }
    Ok(exit_code_showing(
        problem.as_deref(),
        "these alerts are recomputed from",
    ))
}

/// Runs `keygate alerts test`.
pub fn test(home: &Home) -> anyhow::Result<i32> {
    let settings = settings(home)?;
    if settings.sinks.is_empty() {
        bail!(
            "no webhook or email in {}; add an [[alerts.webhook]] or [[alerts.email]]",
            home.config_path().display()
        );
    }
    let alert = Alert::outside_log(
        Severity::Critical,
        AlertRule::Test,
        "test alert from `keygate alerts test`; nothing happened".into(),
    );
    let mut failed = false;
    for delivery in dispatch_blocking(&settings, &alert)? {
        match delivery.result {
            Ok(()) => println!("{}: delivered", delivery.destination),
            Err(failure) => {
                failed = true;
                // It may quote the mail server's own answer.
                println!("{}", escape_controls(&failure.to_string()));
            }
        }
    }
    // What was reached is what config.toml says, not where a running serve sends.
    if let Some(stale) = stale_serve(home) {
        eprintln!("keygate: warning: {}", stale.warning());
    }
    Ok(i32::from(failed))
}
