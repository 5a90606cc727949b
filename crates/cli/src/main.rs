//! `keygate`: a vault and signing gateway for crypto-exchange API keys.
//!
//! This binary parses arguments, unlocks the vault and prints; the vault, the store, the
//! audit log, the gateway and the scanner are library crates (`keygate-vault`,
//! `keygate-store`, `keygate-audit`, `keygate-gateway`, `keygate-scan`, …). Two pieces of
//! work live here, because they compose several of those and talk to the exchange from
//! the command line: reconciliation (`reconcile.rs`) and the exchange calls the commands
//! make themselves (`remote.rs`).
//!
//! Every command accepts the global options `--home DIR` (or `KEYGATE_HOME`; default
//! `~/.local/share/keygate`), `--passphrase-file FILE`, `--passphrase-stdin`,
//! `--master-key-file FILE`, `--master-key-env VAR`, `--hsm-pin-file FILE`,
//! `-v`/`--verbose` (repeatable) and `--log-level LEVEL` (or
//! `KEYGATE_LOG`). Logs go to standard error, at `warn` unless raised. Secrets are never
//! taken from argv: API keys and secrets come from standard input or a no-echo prompt.
//!
//! # Exit codes
//!
//! - `0`: success.
//! - `1`: the command ran and the answer is "no": `audit verify` found a tampered event
//!   (and `incident report`, `alerts list`, `audit export`, `audit query` and `audit tail`, which
//!   still show what the log holds),
//!   `scan` found leaked keys, `doctor` found a check that fails, `reconcile` found a
//!   withdrawal or order keygate never forwarded, `alerts test` could not deliver to a
//!   destination, `audit verify-archive` found an archive that does not verify, `vault
//!   backup` made a copy that does not verify, `audit checkpoint --append` found the log
//!   no longer holds the checkpoints already in its file.
//! - `2`: usage error (bad arguments) or failure (wrong passphrase or master key, missing
//!   vault, I/O error, an exchange `reconcile` could not ask, a client or account that
//!   does not exist, refused change such as removing an account with bound clients).
//!   Output that cannot be written (a full disk) is a failure too; after a change is
//!   committed, the error says "the change is made, but its output could not be
//!   written". A pipe whose reader has gone (`| head`) ends the command quietly,
//!   unless it was to receive credentials shown once (`client issue`, `client rotate`).
//! - `101`: an internal error (a bug): standard error says where, never the message,
//!   which could hold a secret. Please report it.

mod account;
mod alerts;
mod archive;
mod audit_cmd;
mod backup;
mod certificate;
mod client;
mod demo;
mod dev;
mod disk;
mod doctor;
#[cfg(test)]
mod documented;
mod home;
mod incident;
mod output;
mod reconcile;
mod remote;
mod report;
mod scan_cmd;
mod serve;
mod stop;
mod upgrade;

use std::io::Write as _;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::home::{Home, UnlockArgs};

/// mimalloc: the gateway allocates a little for every request, and glibc's allocator was a
/// quarter of its CPU time under load (`bench/run.sh`). Secrets are zeroized before they
/// are freed whichever allocator frees them.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Exit code of a failed command or a usage error.
const EXIT_ERROR: i32 = 2;

/// A vault and signing gateway for crypto-exchange API keys.
#[derive(Parser, Debug)]
#[command(
    name = "keygate",
    version,
    about,
    propagate_version = true,
    after_help = "Exit codes: 0 success; 1 audit verification failed (audit verify, incident report, alerts list, audit export, audit query, audit tail), scan findings, a failed doctor check, an order or withdrawal reconcile found keygate never forwarded, an alert destination alerts test could not reach, an archive audit verify-archive found does not verify, a vault backup copy that does not verify, or a checkpoint file audit checkpoint --append found the log no longer holds; 2 usage error or failure; 101 an internal error (a bug, please report it)."
)]
struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

/// Options every command accepts.
#[derive(Args, Debug)]
struct GlobalArgs {
    /// The keygate home directory [default: ~/.local/share/keygate].
    #[arg(long, global = true, env = "KEYGATE_HOME", value_name = "DIR")]
    home: Option<PathBuf>,
    /// Read the vault passphrase from the first line of FILE, which no one but its owner
    /// may read (mode 0600, say).
    #[arg(long, global = true, value_name = "FILE", conflicts_with_all = ["passphrase_stdin", "master_key_file"])]
    passphrase_file: Option<PathBuf>,
    /// Read the vault passphrase from the first line of standard input.
    #[arg(long, global = true, conflicts_with = "master_key_file")]
    passphrase_stdin: bool,
    /// Use (or, with `init`, create) this 32-byte master key file.
    #[arg(long, global = true, value_name = "FILE")]
    master_key_file: Option<PathBuf>,
    /// Take the master key from this environment variable (32 bytes, hex or base64), for
    /// containers; `init` records the variable's name, so later commands need no flag.
    #[arg(long, global = true, value_name = "VAR", conflicts_with_all = ["passphrase_file", "passphrase_stdin", "master_key_file"])]
    master_key_env: Option<String>,
    /// Read the PIN of the PKCS#11 token holding the master key's wrapping key from FILE
    /// (owner-only; first line), for a vault made with `init --hsm-module`.
    #[arg(long, global = true, value_name = "FILE")]
    hsm_pin_file: Option<PathBuf>,
    /// More logging on standard error (-v info, -vv debug, -vvv trace).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    /// Log filter (`warn`, `debug`, `keygate_gateway=trace`); overrides -v.
    #[arg(long, global = true, env = "KEYGATE_LOG", value_name = "LEVEL", value_parser = parse_log_filter)]
    log_level: Option<String>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Create the home directory, the database and the config file.
    Init(home::InitArgs),
    /// Real exchange keys.
    #[command(subcommand)]
    Account(account::AccountCmd),
    /// Virtual keys handed to bots.
    #[command(subcommand)]
    Client(client::ClientCmd),
    /// Run the signing gateway.
    ///
    /// It stops on SIGTERM, SIGINT (Ctrl-C) or SIGHUP (its terminal or ssh session
    /// closing) alike: it stops taking requests, lets those in flight finish, writes
    /// their outcomes to the audit log and exits 0. A second signal ends it at once.
    Serve(serve::ServeArgs),
    /// The tamper-evident audit log.
    #[command(subcommand)]
    Audit(audit_cmd::AuditCmd),
    /// Show keygate working end to end, in a throwaway home.
    Demo(demo::DemoArgs),
    /// Development tools.
    #[command(subcommand)]
    Dev(dev::DevCmd),
    /// Look for leaked exchange API keys in files and git history.
    Scan(scan_cmd::ScanArgs),
    /// Tag the clients of a vault an earlier keygate made, or seal client and account
    /// tables whose seal is missing or broken, after showing every client and account.
    Upgrade(upgrade::UpgradeArgs),
    /// Incident button: freeze every active client at once.
    Panic(incident::PanicArgs),
    /// Incident response: what happened, from the audit log.
    #[command(subcommand)]
    Incident(report::IncidentCmd),
    /// Find withdrawals and orders of an account that keygate never forwarded (a leaked
    /// key, unless made by hand on the exchange).
    Reconcile(reconcile::ReconcileArgs),
    /// Check file permissions, the vault, clients, accounts and the audit log.
    Doctor(doctor::DoctorArgs),
    /// Alerts: what the audit log raises, and a test of the webhooks and email.
    #[command(subcommand)]
    Alerts(alerts::AlertsCmd),
    /// The vault: its master key, and backups.
    #[command(subcommand)]
    Vault(home::VaultCmd),
}

/// Unsets `KEYGATE_HOME` and `KEYGATE_LOG` when they are set to nothing, as environment
/// files often leave them: read as given, every command (`keygate panic` too) stopped at
/// an empty `--home` or `--log-level` the user never typed.
fn forget_empty_settings() {
    for name in ["KEYGATE_HOME", "KEYGATE_LOG"] {
        if std::env::var_os(name).is_some_and(|value| value.is_empty()) {
            // Still one thread: nothing reads the environment meanwhile.
            std::env::remove_var(name);
        }
    }
}

fn main() {
    harden_process();
    withhold_panic_messages();
    forget_empty_settings();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // Help and version are successes; everything else is a usage error (2).
            let _ = e.print();
            std::process::exit(if e.use_stderr() { EXIT_ERROR } else { 0 });
        }
    };
    init_logging(&cli.global);
    // serve says so in its log and doctor in its report; any other command, here.
    let tells_of_unlocked_secrets = !matches!(cli.command, Command::Serve(_) | Command::Doctor(_));
    let code = match run(cli) {
        Ok(code) => code,
        Err(e) if reader_went_away(&e) => 0,
        Err(e) => {
            // Not `eprintln!`, which panics when standard error is gone (a terminal that
            // hung up): the exit code still says what happened.
            // Escaped: an error may quote what the database or an exchange holds, and a
            // sequence there could rewrite what the operator sees.
            let _ = writeln!(
                std::io::stderr(),
                "keygate: error: {}",
                output::escape_controls(&format!("{e:#}"))
            );
            EXIT_ERROR
        }
    };
    if tells_of_unlocked_secrets && !keygate_vault::secrets_locked() {
        eprintln!(
            "keygate: warning: some secrets could not be locked in memory (see `ulimit -l`); \
             they may have been written to swap"
        );
    }
    std::process::exit(code);
}

fn run(cli: Cli) -> anyhow::Result<i32> {
    let g = &cli.global;
    let how = UnlockArgs {
        passphrase_file: g.passphrase_file.clone(),
        passphrase_stdin: g.passphrase_stdin,
        master_key_file: g.master_key_file.clone(),
        master_key_env: g.master_key_env.clone(),
        hsm_pin_file: g.hsm_pin_file.clone(),
    };
    let home = || Home::resolve(g.home.clone());
    match &cli.command {
        Command::Init(args) => home::init(home()?, &how, args).map(|()| 0),
        Command::Account(cmd) => account::run(home::unlock(home()?, &how)?, cmd).map(|()| 0),
        Command::Client(cmd) => client::run(home::unlock(home()?, &how)?, cmd).map(|()| 0),
        Command::Serve(args) => serve::run(home::unlock(home()?, &how)?, args).map(|()| 0),
        // An archive changes the log: the vault is brought to this keygate's schema first.
        Command::Audit(cmd @ audit_cmd::AuditCmd::Archive(_)) => {
            audit_cmd::run(home::unlock(home()?, &how)?, cmd)
        }
        Command::Audit(cmd) => audit_cmd::run(home::unlock_to_read_log(home()?, &how)?, cmd),
        Command::Demo(args) => demo::run(args).map(|()| 0),
        Command::Dev(cmd) => dev::run(cmd, || home::unlock(home()?, &how)).map(|()| 0),
        Command::Scan(args) if args.managed => {
            let managed = scan_cmd::managed_keys(&home::unlock(home()?, &how)?)?;
            Ok(scan_cmd::run(args, Some(managed)))
        }
        Command::Scan(args) => Ok(scan_cmd::run(args, None)),
        Command::Upgrade(args) => upgrade::run(home::unlock(home()?, &how)?, args).map(|()| 0),
        Command::Panic(args) => incident::run(home()?, &how, args).map(|()| 0),
        Command::Vault(cmd) => home::vault(home::unlock(home()?, &how)?, &how, cmd),
        Command::Reconcile(args) => reconcile::run(&home::unlock(home()?, &how)?, args),
        Command::Incident(report::IncidentCmd::Report(args)) => {
            report::run(&home::unlock(home()?, &how)?, args)
        }
        Command::Doctor(args) => doctor::run(&home::unlock_even_if_open(home()?, &how)?, args),
        Command::Alerts(alerts::AlertsCmd::List(args)) => {
            alerts::list(&home::unlock(home()?, &how)?, args)
        }
        Command::Alerts(alerts::AlertsCmd::Test) => alerts::test(&home()?),
    }
}

/// Whether `error` is a write to standard output whose reader has gone (`keygate audit
/// export | head`): the command ends there, as Unix tools do, without an error.
fn reader_went_away(error: &anyhow::Error) -> bool {
    let mut causes = error.chain().map(|cause| {
        (
            cause.to_string() == output::STDOUT_WRITE,
            cause
                .downcast_ref::<std::io::Error>()
                .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe),
        )
    });
    // The write's own context, directly over its broken pipe: a broken pipe elsewhere
    // (a webhook, the exchange) stays an error.
    let mut previous_was_stdout = false;
    causes.any(|(is_stdout_write, is_broken_pipe)| {
        let found = previous_was_stdout && is_broken_pipe;
        previous_was_stdout = is_stdout_write;
        found
    })
}

/// Replaces Rust's report of a panic with one that says where it happened, not what it
/// said: a panic's message may be built from any value in reach, a secret included, and
/// standard error ends up in logs. A backtrace (`RUST_BACKTRACE=1`) holds no values, so
/// it is still printed when asked for.
fn withhold_panic_messages() {
    std::panic::set_hook(Box::new(|info| {
        // `println!` panics when standard output is a pipe whose reader has gone
        // (`keygate client show bot1 | head -1`): not a bug, the end of the command.
        let payload = info.payload();
        let message = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied());
        if message.is_some_and(|m| {
            m.starts_with("failed printing to stdout") && m.contains("os error 32")
        }) {
            std::process::exit(0);
        }
        // Any other failed `println!` (a full disk: `keygate panic > /dev/full`) is a
        // failure, exit 2, not a bug (found by review: 101, "internal error", after the
        // change was made). Commands write through `output::print` instead, which says
        // whether the change is made; this is for a `println!` not moved there yet. The
        // reason is std's text of an I/O error, which holds no value of keygate's.
        if let Some(reason) = message.and_then(|m| m.strip_prefix("failed printing to stdout: ")) {
            let _ = writeln!(
                std::io::stderr(),
                "keygate: error: standard output could not be written ({reason}); what the \
                 command changes may be changed already: look before running it again"
            );
            std::process::exit(EXIT_ERROR);
        }
        // A failed `eprintln!` (standard error gone, or a full disk it is written to)
        // can tell nothing; it is a failure all the same, not a bug (found by review).
        if message.is_some_and(|m| m.starts_with("failed printing to stderr")) {
            std::process::exit(EXIT_ERROR);
        }
        let place = info.location().map_or_else(
            || "an unknown place".to_owned(),
            |l| format!("{}:{}", l.file(), l.line()),
        );
        let thread = std::thread::current();
        let backtrace = std::backtrace::Backtrace::capture();
        use std::io::Write;
        let mut err = std::io::stderr().lock();
        let _ = writeln!(
            err,
            "keygate: internal error (a bug) in thread {} at {place}; its message is withheld, \
             since it could hold a secret. Please report it with this line.",
            thread.name().unwrap_or("unnamed"),
        );
        if backtrace.status() == std::backtrace::BacktraceStatus::Captured {
            let _ = writeln!(err, "{backtrace}");
        }
    }));
}

/// Keeps the vault's secrets in this process: a core dump would write them to disk, and
/// another process of the same user could read them with ptrace or `/proc/PID/mem`.
/// Linux only; elsewhere the process runs without this protection.
fn harden_process() {
    #[cfg(target_os = "linux")]
    {
        use rustix::process::{setrlimit, DumpableBehavior, Resource, Rlimit};
        let no_core = Rlimit {
            current: Some(0),
            maximum: Some(0),
        };
        if let Err(e) = setrlimit(Resource::Core, no_core) {
            eprintln!("keygate: warning: cannot disable core dumps: {e}");
        }
        if let Err(e) = rustix::process::set_dumpable_behavior(DumpableBehavior::NotDumpable) {
            eprintln!("keygate: warning: cannot forbid tracing this process: {e}");
        }
    }
}

/// The levels a log filter may name.
const LOG_LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];

/// Checks a `--log-level` filter: comma-separated `LEVEL` or `TARGET=LEVEL` directives,
/// `warning` read as `warn`. Refused otherwise, since tracing would read an unknown word
/// as a target and silence every log, alerts included.
fn parse_log_filter(filter: &str) -> Result<String, String> {
    let mut directives = Vec::new();
    for directive in filter.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        let (target, level) = match directive.rsplit_once('=') {
            Some((target, level)) => (Some(target.trim()), level.trim()),
            None => (None, directive),
        };
        let level = level.to_ascii_lowercase();
        let level = if level == "warning" {
            "warn".to_owned()
        } else {
            level
        };
        if !LOG_LEVELS.contains(&level.as_str()) {
            return Err(format!(
                "unknown log level {level:?} (one of {}, or TARGET=LEVEL)",
                LOG_LEVELS.join(", ")
            ));
        }
        let directive = match target {
            Some(target) => format!("{target}={level}"),
            None => level,
        };
        tracing_subscriber::EnvFilter::try_new(&directive)
            .map_err(|e| format!("log filter {directive:?}: {e}"))?;
        directives.push(directive);
    }
    if directives.is_empty() {
        return Err("the log filter is empty".to_owned());
    }
    Ok(directives.join(","))
}

/// Logs to standard error: `--log-level`/`KEYGATE_LOG` if given, else by `-v` count.
fn init_logging(g: &GlobalArgs) {
    let default = match g.verbose {
        // Every alert reaches the log, information ones (an administrative change) too.
        0 => "warn,keygate::alert=info",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::new(g.log_level.as_deref().unwrap_or(default));
    // A second initialisation can only fail in tests; logging is best effort.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // No colour codes in a log file.
        .with_ansi(output::colours(&std::io::stderr()))
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A regression test: `--log-level warning` was read as a target name, which turned
    /// off every log line, alerts included, without a word.
    #[test]
    fn a_log_filter_names_known_levels_only() {
        assert_eq!(parse_log_filter("warning").unwrap(), "warn");
        assert_eq!(parse_log_filter("INFO").unwrap(), "info");
        assert_eq!(
            parse_log_filter("warn, keygate_gateway=Trace").unwrap(),
            "warn,keygate_gateway=trace"
        );
        for bad in ["", " , ", "loud", "keygate_gateway=loud", "verbose"] {
            assert!(parse_log_filter(bad).is_err(), "{bad:?} accepted");
        }
    }
}
