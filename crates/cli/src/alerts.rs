//! `keygate alerts`: the alerts the audit log raises, and a test of where they go.

use anyhow::{bail, Context};
use clap::Args;
use keygate_audit::Filter;
use keygate_monitor::{dispatch_blocking, Alert, AlertRule, Rules, Settings, Severity, Thresholds};

use crate::audit_cmd::for_each_event;
use crate::home::{now_ms, parse_duration, Home, Unlocked};
use crate::output::{print_json, rfc3339};

/// `keygate alerts`
#[derive(clap::Subcommand, Debug)]
pub enum AlertsCmd {
    /// The alerts that the audit log's events raise, recomputed from the log: what
    /// `keygate serve` sent, including anything a webhook missed.
    List(ListArgs),
    /// Send a critical test alert to every webhook and email in config.toml and say what
    /// became of each. Exit 1 if any delivery failed.
    Test,
}

/// `alerts list`
#[derive(Args, Debug)]
pub struct ListArgs {
    /// Alerts from this long ago (`1h`, `7d`).
    #[arg(long, value_name = "DURATION", default_value = "24h")]
    pub since: String,
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
    home.config()?
        .alerts
        .settings()
        .with_context(|| format!("[alerts] in {}", home.config_path().display()))
}

/// The rules' thresholds from `home`'s config.toml (no secret file is read).
pub fn thresholds(home: &Home) -> anyhow::Result<Thresholds> {
    home.config()?
        .alerts
        .thresholds()
        .with_context(|| format!("[alerts] in {}", home.config_path().display()))
}

/// Runs `keygate alerts list`.
pub fn list(vault: &Unlocked, args: &ListArgs) -> anyhow::Result<i32> {
    let thresholds = thresholds(&vault.home)?;
    let since = parse_duration(&args.since).context("--since")?;
    let since_ms = now_ms().saturating_sub(since.as_millis() as u64);
    // Start one denial window early, so that a burst begun before `since` counts whole.
    let window = thresholds.denial_window.as_millis() as u64;
    let filter = Filter {
        since_ms: Some(since_ms.saturating_sub(window)),
        ..Filter::default()
    };
    let min: Severity = args.min_severity.into();
    // The lists as they stand: a client issued before the window has its list from here.
    let lists = keygate_monitor::symbol_lists(&vault.store).context("reading clients")?;
    let mut rules = Rules::new(thresholds).with_symbol_lists(lists);
    let mut alerts: Vec<Alert> = Vec::new();
    for_each_event(&vault.store, &filter, |events| {
        for (seq, event) in events {
            alerts.extend(
                rules
                    .evaluate(*seq, event)
                    .into_iter()
                    .filter(|a| a.ts_ms >= since_ms && a.severity >= min),
            );
        }
        Ok(())
    })?;
    if args.json {
        print_json(&alerts)?;
    } else if alerts.is_empty() {
        println!("no alerts since {}", rfc3339(since_ms));
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
    Ok(0)
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
                println!("{failure}");
            }
        }
    }
    Ok(i32::from(failed))
}
