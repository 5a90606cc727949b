//! `keygate serve`: the gateway on a local listener.

use std::fs::{File, TryLockError};
use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use ipnet::IpNet;
use keygate_audit::AuditKey;
use keygate_core::{Event, EventBody, Outcome, OutcomeEvent};
use keygate_gateway::admin::{AdminServer, AdminState};
use keygate_gateway::registry::{spawn_admin_free_marker, spawn_reloader, Live, Registry};
use keygate_gateway::{ClientLimits, Gateway, Server, TakenEarlier};
use keygate_monitor::Monitor;
use keygate_store::Store;

use crate::alerts;
use crate::certificate::CertificateFiles;
use crate::home::{parse_duration, Home, Unlocked};
use crate::reconcile::Watch;
use crate::remote::{self, Keeping};
use crate::stop::StopSignals;

/// A listening address: an IP address and a port. A host name is refused with the form
/// to write (found by review: `localhost:8080` was "invalid socket address syntax"):
/// what a name resolves to is not known from the command line, and may be no loopback.
fn listen_address(text: &str) -> Result<SocketAddr, String> {
    text.parse().map_err(|_| {
        format!(
            "{text:?} is not an IP address and port: write 127.0.0.1:PORT, or [::1]:PORT for \
             IPv6 (a host name such as localhost is not taken)"
        )
    })
}

/// Options of `keygate serve`.
#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// Address to listen on: an IP address and a port (`[::1]:8080` for IPv6).
    #[arg(long, default_value = "127.0.0.1:8080", value_parser = listen_address)]
    pub listen: SocketAddr,
    /// A proxy whose X-Forwarded-For is believed (CIDR or address; repeatable). None by
    /// default. Name only proxies: a request from one of these addresses without the
    /// header is refused, as its source is unknown.
    #[arg(long = "trusted-proxy", value_name = "CIDR", value_parser = trusted_proxy)]
    pub trusted_proxies: Vec<IpNet>,
    /// Serve HTTPS with this certificate chain (PEM). With it, a non-loopback address
    /// needs no other flag. serve does not start on an expired certificate, alerts from
    /// 14 days before it expires, and presents a renewed one (both files replaced) from
    /// the next connection on, without a restart.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<std::path::PathBuf>,
    /// The certificate's private key (PEM), in a file only its owner may read.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<std::path::PathBuf>,
    /// Listen on a non-loopback address without TLS. Bots' requests and keygate's answers
    /// then cross the network in the clear.
    #[arg(long)]
    pub insecure_listen_non_loopback: bool,
    /// Worker threads, each with its own upstream connections. Default: one per CPU.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub workers: Option<u16>,
    /// How long a bot may take to send a request's headers, then its body, and how long
    /// a kept-alive connection may idle (forms like 30s, 2m).
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = positive_duration)]
    pub client_timeout: Duration,
    /// Connections open at once; more are closed as they arrive.
    #[arg(long, value_name = "N", default_value_t = 1024,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,
    /// Connections open at once from one address (trusted proxies excepted); more from it
    /// are closed as they arrive, so that one source cannot hold every connection.
    /// Default: 256, or a quarter of the connections served when that is fewer.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections_per_source: Option<u32>,
    /// Pause public market data (which needs no key) once public data, signed reads and
    /// the lookups that price orders have spent this much request weight this minute (by
    /// keygate's estimates of them, or the exchange's count where lower), keeping the
    /// rest for signed requests: prices for clients' orders go on to half as much again
    /// (up to 2000), signed reads halfway to that (1500 by default); orders, cancels,
    /// withdrawals and transfers do not pause for it (a client's own requests stop at its
    /// share of the exchange's limit, less this cap and a tenth kept for the others).
    /// Whoever spent it, the three also pause near the exchange's limit by its count,
    /// keeping the last tenth for orders and cancels (spot: from 4800, 5100 and 5400 of
    /// 6000). Raise it for bots that read much through keygate (from 2000, reads, prices
    /// and public data share this one cap). The three are lowered together where pricing
    /// would pass 2700 of spot's weight, 1500 of USD-M's (there 1000, 1250 and 1500 by
    /// default) or 5500 of /sapi's: the rest is left for orders and reconciliation.
    #[arg(long, value_name = "WEIGHT", default_value_t = 1200,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub public_weight_cap: u64,
    /// Refuse public market data (429, rule `answer_backlog`) while answers of 16 KiB or
    /// more not yet written whole to their clients add up to this many MiB, and signed
    /// reads while answers to signed requests alone do; orders, cancels, withdrawals and
    /// transfers are never refused for it.
    #[arg(long, value_name = "MIB", default_value_t = 256,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_answer_mib: u32,
    /// Ask each exchange this often (and once at start, for the last 24 hours) for each
    /// account's withdrawals and orders; one keygate never forwarded raises a critical alert
    /// (a leaked key, unless made by hand on the exchange). `off` never asks.
    #[arg(long, value_name = "DURATION|off", default_value = "10m", value_parser = reconcile_interval)]
    pub reconcile_every: ReconcileEvery,
    /// Serve `GET /healthz` and `GET /metrics` (Prometheus) on this address, apart from
    /// the bots' listener (127.0.0.1:8081, say). Off unless given.
    #[arg(long, value_name = "ADDR", value_parser = listen_address)]
    pub admin_listen: Option<SocketAddr>,
    /// Serve the admin listener on a non-loopback address: without TLS or authentication,
    /// its metrics (client names, request counts) cross the network in the clear. The
    /// bots' listener is not affected.
    #[arg(long, requires = "admin_listen")]
    pub insecure_admin_non_loopback: bool,
    /// Start only on an audit log that still holds the events these checkpoint files name
    /// (files of `keygate audit checkpoint` lines, kept off this machine; repeatable): a
    /// vault put back from a backup older than them, which brings back every client
    /// revoked or frozen and every key rotated out since, is not served. The config's
    /// `[audit] checkpoint_file` is checked too.
    #[arg(long, value_name = "FILE")]
    pub checkpoint: Vec<std::path::PathBuf>,
}

/// A trusted proxy's network, or its one address (as `--allow-ip` takes one). `0.0.0.0/0`
/// or `::/0` is refused: it would trust every peer's `X-Forwarded-For`, so anyone could
/// claim an address a client's `--allow-ip` lists.
fn trusted_proxy(text: &str) -> Result<IpNet, String> {
    let written = text.trim();
    let net: IpNet = match written.parse() {
        Ok(net) => net,
        Err(e) => written
            .parse::<std::net::IpAddr>()
            .map(IpNet::from)
            .map_err(|_| format!("{text:?} is neither a CIDR nor an IP address: {e}"))?,
    };
    let net = crate::client::ipv4_as_ipv4(net);
    if net.prefix_len() == 0 {
        return Err(format!(
            "{net} would trust every peer's X-Forwarded-For; name the proxies' own addresses"
        ));
    }
    // `10.0.0.1/8` is a typo for one proxy or a whole network: trusting the network
    // would let every host in it claim any address, so which one is for the operator
    // to say (as `--allow-ip` asks).
    if net.trunc() != net {
        return Err(format!(
            "the address has bits set past the prefix; write the network ({}) or the one \
             proxy ({})",
            net.trunc(),
            IpNet::from(net.addr())
        ));
    }
    Ok(net)
}

/// Warns of the clients whose `--allow-ip` takes an address of a trusted proxy (the
/// default loopback list and a proxy on this host, say). When every hop of a request's
/// X-Forwarded-For is a trusted proxy, the left-most is its source: something in front
/// of the proxy that adds no hop (a TLS terminator in TCP mode) makes every request
/// through it one from a trusted address, which those clients' lists take from anywhere
/// (found by review). Refusing such chains would refuse the bots on the proxy's own host.
fn warn_of_allow_lists_taking_proxies(store: &Store, trusted: &[IpNet]) {
    if trusted.is_empty() {
        return;
    }
    let overlap = |a: &IpNet, b: &IpNet| a.contains(&b.network()) || b.contains(&a.network());
    let names: Vec<String> = store
        .client_rows()
        .unwrap_or_default()
        .into_iter()
        .flatten()
        .filter(|c| c.status != keygate_core::ClientStatus::Revoked)
        .filter(|c| {
            c.policy
                .allow_ips
                .iter()
                .any(|allowed| trusted.iter().any(|proxy| overlap(allowed, proxy)))
        })
        .map(|c| c.name.to_string())
        .collect();
    if names.is_empty() {
        return;
    }
    tracing::warn!(
        clients = %names.join(", "),
        "these clients' --allow-ip takes a --trusted-proxy address: a request whose \
         X-Forwarded-For names only trusted proxies counts as from the left-most of them, so \
         anything in front of a proxy that forwards without adding its own hop (a TLS \
         terminator in TCP mode) lets the whole network pass their allow list; make sure \
         every hop in front of the proxies adds one, or narrow their --allow-ip"
    );
}

/// Warns of `--trusted-proxy` networks wider than one address: a trusted hop is skipped
/// for its address, not its place in the chain, so any host in such a network (a bot
/// beside the ingress) names its own source address in `X-Forwarded-For` (found by
/// review).
fn warn_of_trusted_networks(trusted: &[IpNet]) {
    let wide: Vec<String> = trusted
        .iter()
        .filter(|net| net.prefix_len() < net.max_prefix_len())
        .map(IpNet::to_string)
        .collect();
    if wide.is_empty() {
        return;
    }
    tracing::warn!(
        networks = %wide.join(", "),
        "every host in these --trusted-proxy networks can name any source address in \
         X-Forwarded-For, past every client's --allow-ip, and is recorded as the proxy it \
         connected through: name each proxy by its own address, or keep bots out of them"
    );
}

/// File descriptors kept for what is neither a bot's connection nor the exchange
/// connection it may hold: the database and its journal, alert deliveries, the admin
/// listener, the certificate files, keygate's own calls to the exchange.
const RESERVED_FILES: u64 = 256;

/// macOS's `OPEN_MAX`: the most its `setrlimit` takes for open files, whatever the hard
/// limit says (often unlimited).
const OPEN_MAX: u64 = 10_240;

/// Raises the limit on open files to its ceiling (a shell's or systemd's default is
/// often 1024, as `--max-connections`'s is) and returns it; `None` for no limit.
fn raise_open_files_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        use rustix::process::{getrlimit, setrlimit, Resource};
        let mut limit = getrlimit(Resource::Nofile);
        // The soft limit is at most the hard one: this raises it.
        if limit.current != limit.maximum {
            let (soft, hard) = (limit.current, limit.maximum);
            limit.current = hard;
            let fallback = hard.map_or(OPEN_MAX, |hard| hard.min(OPEN_MAX));
            // macOS refuses more than OPEN_MAX: as far as that, never lower than it was.
            if setrlimit(Resource::Nofile, limit).is_err() && soft.is_some_and(|s| s < fallback) {
                let _ = setrlimit(
                    Resource::Nofile,
                    rustix::process::Rlimit {
                        current: Some(fallback),
                        maximum: hard,
                    },
                );
            }
        }
        getrlimit(Resource::Nofile).current
    }
    #[cfg(not(unix))]
    None
}

/// What the limit on open files leaves for connections.
#[derive(Debug, PartialEq)]
struct ConnectionRoom {
    /// Bots' connections open at once.
    bots: usize,
    /// Idle connections to the exchanges kept for reuse.
    idle_upstream: usize,
}

/// How many bots' connections to keep open at once (`wanted`), and idle connections to
/// the exchanges, or fewer of both when the limit on open files would otherwise be
/// reached. At that limit every new connection to the exchange fails, the orders and
/// cancels of bots already connected included, while `--max-connections` would still
/// take new bots in. Each bot's connection holds at most one to the exchange besides, in
/// flight (its request, or the lookup pricing it, one at a time); idle ones take at most a
/// quarter of what is left, so that a bot going from one exchange host to the next
/// (spot, futures) cannot leave one idle at each until none is left.
fn connection_room(wanted: u32, open_files: Option<u64>) -> ConnectionRoom {
    let idle_wanted = ClientLimits::default().max_idle_exchange_connections;
    let Some(limit) = open_files else {
        return ConnectionRoom {
            bots: wanted as usize,
            idle_upstream: idle_wanted,
        };
    };
    let available = limit.saturating_sub(RESERVED_FILES);
    let idle = (available / 4).min(idle_wanted as u64);
    let bots = ((available - idle) / 2).max(1);
    let room = ConnectionRoom {
        bots: usize::try_from(bots.min(u64::from(wanted))).unwrap_or(usize::MAX),
        idle_upstream: usize::try_from(idle).unwrap_or(usize::MAX),
    };
    if bots < u64::from(wanted) {
        eprintln!(
            "keygate: warning: open files are limited to {limit} (ulimit -n): serving at \
             most {bots} connections at once, not --max-connections {wanted}: each may hold \
             one to the exchange besides, {idle} are kept for idle connections to the \
             exchange and {RESERVED_FILES} for the database, alerts and keygate's own \
             calls; raise the limit (LimitNOFILE= in a systemd unit) to serve more"
        );
    }
    room
}

/// The most connections one source may hold when `bots` are served at once: the one
/// asked for; by default 256, but no more than a quarter of them, as the defaults have it
/// (1024 and 256), so that one source cannot hold them all however the total was lowered
/// (by `--max-connections`, or to fit the open-files limit: found by review). One asked
/// for is taken as it is (bots on this host all come from one address), with a warning
/// when it lets one source hold them all.
fn per_source_limit(asked: Option<u32>, bots: usize) -> usize {
    const DEFAULT: usize = 256;
    let quarter = (bots / 4).max(1);
    match asked {
        Some(asked) => {
            let asked = asked as usize;
            if asked >= bots {
                eprintln!(
                    "keygate: warning: --max-connections-per-source {asked} lets one address \
                     hold every one of the {bots} connections served"
                );
            }
            asked
        }
        None => {
            if quarter < DEFAULT {
                eprintln!(
                    "keygate: warning: serving at most {bots} connections at once, so at \
                     most {quarter} from one address (a quarter; --max-connections-per-source \
                     sets another)"
                );
            }
            DEFAULT.min(quarter)
        }
    }
}

/// How often `serve` reconciles withdrawals and orders; `None` for never.
#[derive(Clone, Copy, Debug)]
pub struct ReconcileEvery(Option<Duration>);

/// `off`, or a duration longer than zero, for clap.
fn reconcile_interval(s: &str) -> Result<ReconcileEvery, String> {
    match s {
        "off" => Ok(ReconcileEvery(None)),
        s => positive_duration(s)
            .map(|d| ReconcileEvery(Some(d)))
            .map_err(|e| format!("{e} (give a duration such as 10m, or off)")),
    }
}

/// A duration longer than zero, for clap.
fn positive_duration(s: &str) -> Result<Duration, String> {
    match parse_duration(s) {
        Ok(d) if !d.is_zero() => Ok(d),
        Ok(_) => Err("must be longer than zero".to_owned()),
        Err(e) => Err(e.to_string()),
    }
}

/// Runs the gateway until SIGTERM, SIGINT (Ctrl-C) or SIGHUP, then drains in-flight
/// requests.
pub fn run(unlocked: Unlocked, args: &ServeArgs) -> anyhow::Result<()> {
    let certificate = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(CertificateFiles::new(cert, key).read_to_start()?),
        _ => None,
    };
    // An IPv4 loopback address written IPv4-mapped (`[::ffff:127.0.0.1]`) is loopback too
    // (found by review: refused as a network address, with a warning of plain text).
    if !keygate_gateway::admin::is_loopback(args.listen) && certificate.is_none() {
        if !args.insecure_listen_non_loopback {
            bail!(
                "refusing to listen on {} without TLS; pass --tls-cert and --tls-key, listen on loopback behind a TLS proxy, or pass --insecure-listen-non-loopback",
                args.listen
            );
        }
        // Said at every start, in the log a unit file's reader does not see.
        tracing::warn!(
            listen = %args.listen,
            "--insecure-listen-non-loopback: bots' requests and keygate's answers cross the \
             network unencrypted"
        );
    }
    if let Some(admin) = args.admin_listen {
        if !keygate_gateway::admin::is_loopback(admin) {
            if !args.insecure_admin_non_loopback {
                bail!(
                    "refusing to serve metrics on {admin} without TLS or authentication; use a loopback address, or pass --insecure-admin-non-loopback"
                );
            }
            tracing::warn!(
                %admin,
                "--insecure-admin-non-loopback: health and metrics are served to the \
                 network without TLS or authentication"
            );
        }
    }
    // Caught from here on: a stop sent while the gateway starts (from the moment its
    // process id is in `serve.lock`) is acted on once it serves, as any stop is.
    let stop = StopSignals::catch()?;
    let _only_gateway = hold_serve_lock(&unlocked.home)?;
    let locked_at = Instant::now();
    // Tried now, not first when they start serving, after the monitor, the watches and
    // reconciliation have started: an address in use is then the only thing said, not a
    // last line under theirs. (A second gateway on this vault is told by the lock above.)
    if args.admin_listen == Some(args.listen) && args.listen.port() != 0 {
        bail!("--admin-listen {} is the address of --listen", args.listen);
    }
    can_bind(args.listen).with_context(|| format!("binding {}", args.listen))?;
    if let Some(admin) = args.admin_listen {
        can_bind(admin).with_context(|| format!("binding the admin listener {admin}"))?;
    }
    let checkpoint_files = crate::audit_cmd::checkpoint_files(&unlocked, &args.checkpoint)?;
    if !checkpoint_files.is_empty() {
        let checkpoints = crate::audit_cmd::read_checkpoints(&checkpoint_files)?;
        if let Err(e) =
            keygate_audit::verify_checkpoints(&unlocked.store, &unlocked.audit_key, &checkpoints)
        {
            let files: Vec<String> = checkpoint_files
                .iter()
                .map(|f| f.display().to_string())
                .collect();
            bail!(
                "refusing to serve: the audit log does not hold the checkpoints in {} ({}). \
                 A vault put back from a backup older than them has undone every change \
                 since: clients revoked or frozen are active again, keys rotated out work \
                 again. If the restore was meant: keep those files as they are, as \
                 evidence (never write over one with `>`); first point `[audit] \
                 checkpoint_file` (and any `--checkpoint`) at a new file (`touch NEW && \
                 keygate audit checkpoint --append NEW`), then redo those changes \
                 (`keygate audit query --since ...` on the home moved aside lists them), \
                 so that each is anchored in the new file",
                crate::output::escape_controls(&files.join(", ")),
                crate::output::escape_controls(&e.to_string())
            );
        }
    }
    // Read once: a change to config.toml is applied by a restart, and `doctor` and
    // `alerts test` say when the settings there are not these.
    let (alerts, alerts_digest) = alerts::serve_settings(&unlocked.home)?;
    let _alerts_recorded = alerts::record_serve_settings(&unlocked.home, &alerts_digest)?;
    crate::doctor::warn_of_exposed_files(&unlocked);
    let Unlocked {
        store,
        master,
        audit,
        audit_key,
        ..
    } = unlocked;
    let db = store.path().to_owned();
    // The monitor starts first: on a first start it begins at the log's end, which must
    // come before the first request served, and the reloader alerts through it.
    let destinations: Vec<String> = alerts.sinks.iter().map(|s| s.destination()).collect();
    let monitor = Monitor::start(&db, alerts).context("starting the alert monitor")?;
    let registry = Registry::load(&store, &master).context("loading accounts and clients")?;
    warn_of_allow_lists_taking_proxies(&store, &args.trusted_proxies);
    warn_of_trusted_networks(&args.trusted_proxies);
    if !keygate_vault::secrets_locked() {
        tracing::warn!(
            "some secrets could not be locked in memory (see `ulimit -l`); they may be written to swap"
        );
    }
    let live = Arc::new(Live::new(registry));
    let audit_log = audit.clone();
    // A gateway that held the lock until just now took requests signed up to
    // MAX_TIMESTAMP_AHEAD_MS ahead of its clock, and the replay cache made here vouches
    // for every request signed after it is made: it is made once those have come of age.
    let ahead = Duration::from_millis(keygate_exchanges::MAX_TIMESTAMP_AHEAD_MS);
    std::thread::sleep(ahead.saturating_sub(locked_at.elapsed()));
    let room = connection_room(args.max_connections, raise_open_files_limit());
    let per_source = per_source_limit(args.max_connections_per_source, room.bots);
    let gateway = Gateway::new(
        Arc::clone(&live),
        audit,
        args.trusted_proxies.clone(),
        keygate_gateway::upstream::UPSTREAM_TIMEOUT,
    )?
    .with_client_limits(ClientLimits {
        timeout: args.client_timeout,
        max_connections: room.bots,
        max_connections_per_source: per_source,
        max_idle_exchange_connections: room.idle_upstream,
        public_weight_cap: args.public_weight_cap,
        max_answer_bytes: args.max_answer_mib as usize * 1024 * 1024,
        max_fingerprints_per_client: keygate_gateway::MAX_FINGERPRINTS_PER_CLIENT,
        spend_weight_kept_for_reconciliation: false,
    })
    .with_alerter(monitor.alerter());
    let today = count_today(&gateway, &store, &audit_key)?;
    refuse_what_the_last_gateway_may_have_taken(&gateway, today.taken_earlier);
    settle_interrupted(&gateway, &audit_log, today.interrupted)?;
    // Before the first request: a pause asked of the gateway before it restarted holds.
    let pauses_store = Store::open(&db).context("opening the store for the exchanges' pauses")?;
    remote::keep_pauses(
        pauses_store,
        &gateway.weight_gauge(),
        Keeping::InTheBackground,
    )?;
    let master = Arc::new(master);
    spawn_reloader(
        store,
        Arc::clone(&master),
        live.clone(),
        Some(monitor.alerter()),
    )
    .context("starting the reload thread")?;
    let marker_store = Store::open(&db).context("opening the store for the audit marker")?;
    spawn_admin_free_marker(
        marker_store,
        Arc::clone(&master),
        &live,
        Some(monitor.alerter()),
    )
    .context("starting the audit marker thread")?;
    let workers = args.workers.map_or_else(
        || std::thread::available_parallelism().map_or(1, |n| n.get()),
        usize::from,
    );
    crate::disk::watch(unlocked.home.dir.clone(), monitor.alerter())?;
    // Watched from now on: a renewal is taken up, and the end near is alerted on.
    let certificate = certificate
        .map(|certificate| certificate.watch(monitor.alerter()))
        .transpose()?;
    let admin = match args.admin_listen {
        Some(addr) => {
            let state = AdminState {
                metrics: monitor.metrics(),
                audit: audit_log.clone(),
                live: Arc::clone(&live),
                weight: gateway.weight_gauge(),
                answers: gateway.answers_held(),
                certificate: certificate.clone(),
            };
            let admin = AdminServer::start(addr, state)
                .with_context(|| format!("binding the admin listener {addr}"))?;
            eprintln!(
                "keygate: health and metrics on http://{}/healthz and /metrics",
                admin.local_addr()
            );
            Some(admin)
        }
        None => None,
    };
    let reconciling = match args.reconcile_every.0 {
        Some(every) => Some(Watch::start(
            &db,
            master,
            every,
            monitor.alerter(),
            gateway.weight_gauge(),
        )?),
        None => None,
    };
    eprintln!(
        "keygate: alerts go to the log{}",
        if destinations.is_empty() {
            String::new()
        } else {
            format!(" and {}", destinations.join(", "))
        }
    );
    let scheme = if certificate.is_some() {
        "https"
    } else {
        "http"
    };
    let server = match &certificate {
        Some(certificate) => {
            Server::start_tls(args.listen, workers, &gateway, certificate.tls_config()?)
        }
        None => Server::start(args.listen, workers, &gateway),
    }
    .with_context(|| format!("binding {}", args.listen))?;
    // One line per exchange, each the base URL its bots point at.
    for exchange in keygate_core::Exchange::ALL {
        println!(
            "keygate listening on {scheme}://{}/{}",
            server.local_addr(),
            exchange.as_str()
        );
    }

    stop.wait();
    // Not `eprintln!`: after a SIGHUP the terminal is gone, writing to it fails, and a
    // panic here would end serve before the requests in flight are drained.
    let _ = writeln!(std::io::stderr(), "keygate: shutting down");
    let served = server.shutdown().context("serving");
    // Requests have drained; their audit events may still wait for a batch.
    flush_before_exit(&audit_log)?;
    // Every event is written: the monitor alerts on the last of them (and on what the
    // reconciliation found, which stops first), then stops.
    drop(reconciling);
    drop(admin);
    monitor.stop();
    served
}

/// How long a stopping serve keeps trying to write the audit events still queued, or
/// the count of those it could not write, while the store refuses them.
const FLUSH_AT_EXIT_DEADLINE: Duration = Duration::from_secs(30);

/// Writes every audit event still queued, or a record counting those that could not be:
/// a store that cannot be written now (another process holding its lock, a full disk)
/// is tried again until [`FLUSH_AT_EXIT_DEADLINE`], since whatever is not written by
/// then is lost without a record (found by review: one try, and the denials queued
/// behind a lock went missing, uncounted). A second stop signal ends the wait.
fn flush_before_exit(audit_log: &keygate_audit::AuditLog) -> anyhow::Result<()> {
    // A try waits for the lock for up to the store's patience: the last one starts early
    // enough to end by the deadline.
    let last_start = Instant::now() + FLUSH_AT_EXIT_DEADLINE - keygate_store::AUDIT_LOCK_PATIENCE;
    loop {
        match audit_log.flush() {
            Ok(()) => return Ok(()),
            // Only a write the store refused (or could not sync) may do later; a writer
            // gone never will.
            Err(e @ (keygate_audit::Error::NotWritten { .. } | keygate_audit::Error::Unsynced))
                if audit_log.is_writing() && Instant::now() < last_start =>
            {
                let _ = writeln!(
                    std::io::stderr(),
                    "keygate: the audit log cannot be written yet ({e}); trying again for \
                     up to {} s",
                    FLUSH_AT_EXIT_DEADLINE.as_secs()
                );
                std::thread::sleep(Duration::from_secs(1));
            }
            Err(e) => return Err(e).context("flushing the audit log"),
        }
    }
}

/// Fails as binding `addr` to listen on it would fail (in use, not this host's address),
/// without listening: no connection is taken, and the address is free again on return.
/// Bound as the listeners bind, with `SO_REUSEADDR` on Unix, so that connections of a
/// gateway just stopped (`TIME_WAIT`) are no obstacle, and a socket listening there is.
fn can_bind(addr: SocketAddr) -> std::io::Result<()> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    #[cfg(unix)]
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())
}

/// Passes today's (UTC) events to the gateway, so that the daily notional and withdrawal
/// limits count what was allowed before this start (and not what was then never sent:
/// denials and outcomes say so). Only events that verify with `key`, chained from one
/// before today: a log edited to forget the day's withdrawals (rows deleted, a decision
/// turned, a timestamp moved to hide where the day starts) does not give its clients a
/// fresh allowance; the gateway does not start on it.
///
/// Returns the requests of the last day whose pending event has no outcome after it (a
/// gateway stopped, crashed or killed, while they were at the exchange), and when a
/// request signed from now on may have been taken already, by the events' times.
fn count_today(gateway: &Gateway, store: &Store, key: &AuditKey) -> anyhow::Result<Today> {
    const DAY_MS: u64 = 86_400_000;
    let now_ms = keygate_gateway::now_ms();
    let today_ms = now_ms / DAY_MS * DAY_MS;
    let since_ms = today_ms.min(now_ms.saturating_sub(DAY_MS));
    let mut pending: Vec<Interrupted> = Vec::new();
    let mut taken_earlier = TakenEarlier::default();
    keygate_audit::for_each_verified_since(store, key, since_ms, |page| {
        for (_, event) in page.iter().filter(|(_, e)| e.ts_ms >= since_ms) {
            // Only events of a clock ahead of this one's now: what an earlier event's
            // gateway took was signed before now, which the replay cache refuses anyway.
            let ahead = keygate_exchanges::MAX_TIMESTAMP_AHEAD_MS;
            if event.ts_ms.saturating_add(ahead) >= now_ms {
                taken_earlier.note(event.ts_ms);
            }
            match &event.body {
                EventBody::Request(r) if r.outcome == Outcome::Pending => {
                    pending.push(Interrupted {
                        request_id: r.request_id.clone(),
                        client: r.client.clone(),
                    });
                }
                // Refused after its pending event was written, or answered.
                EventBody::Request(r) if !r.allowed => {
                    pending.retain(|p| p.request_id != r.request_id)
                }
                EventBody::Outcome(o) => pending.retain(|p| p.request_id != o.request_id),
                _ => {}
            }
            if event.ts_ms >= today_ms {
                gateway.count_earlier(event);
            }
        }
        true
    })
    .context(
        "the audit log does not verify, so today's daily limits cannot be counted; \
         `keygate audit verify` names where",
    )?;
    Ok(Today {
        interrupted: pending,
        taken_earlier,
    })
}

/// What [`count_today`] found in the log.
struct Today {
    interrupted: Vec<Interrupted>,
    taken_earlier: TakenEarlier,
}

/// Refuses the requests a gateway that ran before may have taken, as `taken` holds them.
/// The replay cache refuses what was signed before it was made, on this host's clock; a
/// clock set back across the restart (an NTP step at boot, a machine restored) would
/// leave requests the last gateway took signed after that, and a captured order it took
/// would be taken again (found by review). Signed requests of those times are refused as
/// stale; the operator is told.
fn refuse_what_the_last_gateway_may_have_taken(gateway: &Gateway, taken: TakenEarlier) {
    let now_ms = keygate_gateway::now_ms();
    if let Some(last_ms) = taken.last_ms().filter(|&last| last > now_ms) {
        let message = format!(
            "the audit log has events up to {:.1} s ahead of this host's clock: it was set \
             back; requests signed around those events' times are refused as stale (a \
             keygate that ran before may have taken them)",
            (last_ms - now_ms) as f64 / 1000.0
        );
        tracing::warn!("{message}");
        eprintln!("keygate: warning: {message}");
    }
    gateway.refuse_taken_earlier(taken);
}

/// A request a stopped gateway had sent to the exchange and not heard back about.
struct Interrupted {
    request_id: String,
    client: Option<String>,
}

/// Records, for each request a stopped gateway left at the exchange, that its outcome
/// is unknown: it may have executed, and the monitor raises `outcome_unknown` for it, as
/// for one that timed out. Before the first request is served.
fn settle_interrupted(
    gateway: &Gateway,
    audit: &keygate_audit::AuditLog,
    interrupted: Vec<Interrupted>,
) -> anyhow::Result<()> {
    for Interrupted { request_id, client } in interrupted {
        tracing::error!(
            request_id,
            "a request was at the exchange when keygate stopped; its outcome is unknown"
        );
        let event = Event {
            ts_ms: keygate_gateway::now_ms(),
            body: EventBody::Outcome(OutcomeEvent {
                request_id,
                client,
                upstream_status: None,
                latency_us: 0,
                outcome: Outcome::Unknown,
                order_ids: Vec::new(),
                interrupted: true,
            }),
        };
        gateway.count_earlier(&event);
        audit
            .append_blocking(event)
            .context("recording the outcome of a request a stopped gateway left unknown")?;
    }
    Ok(())
}

/// Holds the lock `serve` holds, so that none starts meanwhile; refused while one runs,
/// for a command that changes what serve reads as it starts (`audit archive`). Its
/// process id is written in the lock file, as serve's is, for a serve refused meanwhile
/// to name.
pub(crate) fn lock_out_serve(home: &Home) -> anyhow::Result<ServeLock> {
    ServeLock::take(home)?.with_context(|| {
        "`keygate serve` is running on this vault; stop it first (it reads where the log \
         begins as it starts)"
    })
}

/// Locks `serve.lock` in the home directory for as long as the returned lock lives (the
/// lock goes with the process, however it ends). A second gateway on the same vault would
/// keep a replay cache of its own, and a signature one of them accepted would be accepted
/// once more by the other, so it is refused.
fn hold_serve_lock(home: &Home) -> anyhow::Result<ServeLock> {
    match ServeLock::take(home)? {
        Some(lock) => Ok(lock),
        None => {
            let path = home.dir.join("serve.lock");
            let holder = std::fs::read_to_string(&path).unwrap_or_default();
            let holder = match holder.trim() {
                "" => String::new(),
                pid => format!(" (pid {pid})"),
            };
            bail!(
                "another `keygate serve`{holder} is running on this vault; two gateways would \
                 each accept a replayed signature once, so run one"
            );
        }
    }
}

/// `serve.lock` in a home directory, locked, with this process's id written in it. The
/// id is taken out again when the lock is let go, so that a file naming a process names
/// one that holds the lock (after a crash it may still name a process long gone: only
/// the lock itself, `flock -n FILE true` failing, says one runs).
pub(crate) struct ServeLock {
    file: File,
}

impl ServeLock {
    /// Takes the lock, or `None` when another process holds it.
    fn take(home: &Home) -> anyhow::Result<Option<ServeLock>> {
        let path = home.dir.join("serve.lock");
        let mut file = crate::home::open_owner_only(&path)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => return Ok(None),
            Err(TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("locking {}", path.display()))
            }
        }
        file.set_len(0)
            .and_then(|()| writeln!(file, "{}", std::process::id()))
            .with_context(|| format!("writing {}", path.display()))?;
        Ok(Some(ServeLock { file }))
    }
}

impl Drop for ServeLock {
    fn drop(&mut self) {
        // Best effort: a file left naming this process is what a crash leaves too.
        let _ = self.file.set_len(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by review: an IPv4-mapped proxy address was kept as typed and never matched
    /// (the gateway sees IPv4 peers as IPv4), so the proxy went silently untrusted.
    #[test]
    fn a_trusted_proxy_written_ipv4_mapped_is_its_ipv4_address() {
        assert_eq!(
            trusted_proxy("::ffff:127.0.0.1/128"),
            Ok("127.0.0.1/32".parse().unwrap())
        );
        assert_eq!(
            trusted_proxy("10.0.0.0/8"),
            Ok("10.0.0.0/8".parse().unwrap())
        );
        // Every IPv4 peer, written mapped, is every peer.
        assert!(trusted_proxy("::ffff:0:0/96").is_err());
    }

    /// Found by review: with open files limited to 1024, as a shell's or systemd's default
    /// often is, and `--max-connections` 1024, idle connections could take every file, and
    /// bots already connected had their orders and cancels refused, the exchange
    /// unreachable.
    #[test]
    fn connections_leave_room_for_the_exchange_and_the_database() {
        let room = |bots, idle_upstream| ConnectionRoom {
            bots,
            idle_upstream,
        };
        assert_eq!(connection_room(1024, None), room(1024, 512));
        assert_eq!(connection_room(1024, Some(1_048_576)), room(1024, 512));
        // 768 left: a quarter idle, two for each bot.
        assert_eq!(connection_room(1024, Some(1024)), room(288, 192));
        assert_eq!(connection_room(1024, Some(2816)), room(1024, 512));
        assert_eq!(connection_room(1024, Some(2815)), room(1023, 512));
        assert_eq!(connection_room(1024, Some(100)), room(1, 0));
        // Found by review: the limit per source stayed at 256 of 288, so one source
        // held nearly all; it is held to a quarter of the total.
        assert_eq!(per_source_limit(None, 1024), 256);
        assert_eq!(per_source_limit(None, 288), 72);
        assert_eq!(per_source_limit(None, 1), 1);
        // One asked for is taken as it is.
        assert_eq!(per_source_limit(Some(10), 288), 10);
        assert_eq!(per_source_limit(Some(256), 288), 256);
        let raised = raise_open_files_limit();
        assert!(
            raised.is_none_or(|limit| limit > RESERVED_FILES),
            "{raised:?}"
        );
    }

    /// Found by review: `10.0.0.1/8` was taken as the whole network, trusting every host
    /// in it to name any address in `X-Forwarded-For`.
    #[test]
    fn a_trusted_proxy_with_host_bits_past_its_prefix_is_refused() {
        for typo in ["10.0.0.1/8", "::ffff:10.0.0.1/104", "2001:db8::1/32"] {
            let refused = trusted_proxy(typo).unwrap_err();
            assert!(
                refused.contains("bits set past the prefix"),
                "{typo}: {refused}"
            );
        }
        assert!(trusted_proxy("10.0.0.1/32").is_ok());
        // A bare address is that one proxy, as `--allow-ip` takes it (found by review:
        // refused as "not a CIDR").
        assert_eq!(
            trusted_proxy("127.0.0.9"),
            Ok("127.0.0.9/32".parse().unwrap())
        );
        assert_eq!(
            trusted_proxy("::ffff:127.0.0.9"),
            Ok("127.0.0.9/32".parse().unwrap())
        );
        assert!(trusted_proxy("proxy.local").is_err());
    }
}
