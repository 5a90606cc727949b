//! `keygate dev`: tools for development and tests, such as the exchange simulator.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};

use crate::output::STDOUT_WRITE;
use crate::stop::StopSignals;

/// `keygate dev …`
#[derive(Subcommand, Debug)]
pub enum DevCmd {
    /// Run the local exchange simulator until Ctrl-C.
    MockExchange(MockExchangeArgs),
    /// Open an account's real secret and panic with it in the panic's message: the worst
    /// case of a bug, which the tests run to show that no panic message is ever printed.
    /// Debug builds only.
    #[cfg(debug_assertions)]
    #[command(hide = true)]
    PanicWithSecret(PanicWithSecretArgs),
}

/// `dev panic-with-secret`
#[cfg(debug_assertions)]
#[derive(Args, Debug)]
pub struct PanicWithSecretArgs {
    /// The account whose secret the panic message holds.
    #[arg(long)]
    pub account: String,
}

/// `dev mock-exchange`
#[derive(Args, Debug)]
pub struct MockExchangeArgs {
    /// The exchange to simulate (binance).
    #[arg(long, default_value = "binance")]
    pub exchange: String,
    /// Address to listen on (port 0 picks a free port; the URL is printed).
    #[arg(long, default_value = "127.0.0.1:9090")]
    pub listen: SocketAddr,
    /// JSON list of {"api_key", "secret"} or {"api_key", "ed25519_public_key"}, each with
    /// optional restrictions as `GET /sapi/v1/account/apiRestrictions` reports and the
    /// simulator enforces them: "ip_restrict", "spot_trading", "futures", "withdrawals",
    /// "internal_transfer", "universal_transfer", "margin" (true or false; by default an
    /// IP-restricted key that may trade spot and futures and withdraw, not transfer, and
    /// not use margin), and an optional "account": a name. Keys naming the same account
    /// are that account's keys, as on Binance: they share its balances, orders, trades,
    /// withdrawals, transfers and positions, each with its own restrictions; a key without
    /// "account" has an account of its own.
    #[arg(long, value_name = "FILE")]
    pub credentials: PathBuf,
}

/// Runs a dev subcommand; `unlock` opens the vault for those that need it.
pub fn run(
    cmd: &DevCmd,
    unlock: impl FnOnce() -> anyhow::Result<crate::home::Unlocked>,
) -> anyhow::Result<()> {
    // Only the debug build's test command opens the vault.
    #[cfg(not(debug_assertions))]
    drop(unlock);
    match cmd {
        DevCmd::MockExchange(a) => mock_exchange(a),
        #[cfg(debug_assertions)]
        DevCmd::PanicWithSecret(a) => panic_with_secret(unlock()?, a),
    }
}

#[cfg(debug_assertions)]
fn panic_with_secret(
    vault: crate::home::Unlocked,
    args: &PanicWithSecretArgs,
) -> anyhow::Result<()> {
    let label: keygate_core::Name = args.account.parse().context("the account label")?;
    let account = vault.store.account(&label).context("reading the account")?;
    let secret = account
        .open_secret(&vault.master)
        .context("opening the account's secret")?;
    panic!("a bug that formats a secret: {}", secret.expose_secret());
}

fn mock_exchange(args: &MockExchangeArgs) -> anyhow::Result<()> {
    if !args.exchange.eq_ignore_ascii_case("binance") {
        bail!("the simulator knows binance only, not {:?}", args.exchange);
    }
    let credentials = keygate_mockex::load_credentials(&args.credentials)
        .with_context(|| format!("loading credentials from {}", args.credentials.display()))?;
    let stop = StopSignals::catch()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("binding {}", args.listen))?;
        let addr = listener.local_addr().context("reading the bound address")?;
        {
            let mut out = std::io::stdout().lock();
            writeln!(out, "mock binance listening on http://{addr}").context(STDOUT_WRITE)?;
            out.flush().context(STDOUT_WRITE)?;
        }
        tracing::info!(%addr, keys = credentials.len(), "mock exchange started");
        keygate_mockex::serve(listener, credentials, stop.waited())
            .await
            .context("serving the simulator")
    })
}
