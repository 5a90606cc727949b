//! Load benchmark of a signed read (`GET /api/v3/account`) on loopback, in one run:
//!
//! - (a) straight to the Binance simulator, signed with the real key;
//! - (b) through keygate (the gateway in-process over a real socket, on one worker
//!   thread per core as `keygate serve` runs it, its store in a temporary directory, a
//!   virtual key), in front of the same simulator;
//! - (c) through nginx as a plain reverse proxy to the simulator, when nginx is installed
//!   (on `PATH` or `/usr/sbin/nginx`; started as a child process, stopped at the end).
//!
//! Each target gets the same phases: a warm-up, a latency phase (sequential requests on
//! one keep-alive connection; p50 and p99) and a throughput phase (concurrent keep-alive
//! connections, a fixed number of requests, bounded in time), during which the proxy's
//! own CPU time is read from `/proc`. Every request carries its own signature and
//! timestamp, in microseconds so that they stay distinct (keygate refuses a replayed
//! signature); all of them are signed before their phase starts, so signing costs the
//! client nothing while it is timed. The targets take turns over several rounds and each
//! figure is the median of its rounds.
//!
//! Run it with `bash bench/run.sh` (release mode). Options:
//! `--latency-requests N` (5000), `--requests N` (40000), `--concurrency N` (32),
//! `--warmup N` (2000), `--seconds N` (10, the bound of each throughput phase),
//! `--rounds N` (3).

#![allow(clippy::unwrap_used, clippy::expect_used)] // A benchmark may stop at the first surprise.

#[path = "../tests/support/mod.rs"]
mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use keygate_core::Policy;
use keygate_exchanges::binance;
use keygate_gateway::upstream::UPSTREAM_TIMEOUT;
use keygate_gateway::{ClientLimits, Server};
use keygate_mockex::{Credential, RunningSimulator};
use keygate_store::ClientKeyMaterial;
use keygate_vault::SecretString;
use tokio::runtime::Runtime;

use crate::support::{gateway_over, Bot, BOT_KEY, BOT_SECRET, REAL_KEY, REAL_SECRET};

/// The allocator `keygate` itself is built with, so that the gateway is measured as it runs.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const PATH: &str = "/api/v3/account";
/// Binance's largest window: a request may wait up to `--seconds` after it was signed.
const RECV_WINDOW_MS: u64 = 60_000;

struct Options {
    warmup: usize,
    latency_requests: usize,
    requests: usize,
    concurrency: usize,
    seconds: u64,
    rounds: usize,
}

impl Options {
    fn from_args() -> Options {
        let mut o = Options {
            warmup: 2_000,
            latency_requests: 5_000,
            requests: 40_000,
            concurrency: 32,
            seconds: 10,
            rounds: 3,
        };
        let args: Vec<String> = std::env::args().skip(1).collect();
        let mut i = 0;
        while i < args.len() {
            let value = || -> usize {
                args.get(i + 1)
                    .and_then(|v| v.parse().ok())
                    .unwrap_or_else(|| panic!("{} needs a number", args[i]))
            };
            match args[i].as_str() {
                "--warmup" => o.warmup = value(),
                "--latency-requests" => o.latency_requests = value(),
                "--requests" => o.requests = value(),
                "--concurrency" => o.concurrency = value(),
                "--seconds" => o.seconds = value() as u64,
                "--rounds" => o.rounds = value().max(1),
                other => panic!("unknown option {other}"),
            }
            i += 2;
        }
        // Timestamps of one phase are one millisecond apart, going back from now; they
        // must all stay inside the receive window until the phase ends.
        assert!(
            (o.requests.max(o.latency_requests) as u64) + o.seconds * 1000 + 5_000 < RECV_WINDOW_MS,
            "--requests plus --seconds must stay well inside the 60 s receive window"
        );
        o
    }
}

/// One way to reach the simulator.
struct Target {
    label: &'static str,
    addr: SocketAddr,
    /// Path prefix before the native path (`/binance` for keygate).
    prefix: &'static str,
    api_key: &'static str,
    secret: &'static str,
    /// The proxy between client and simulator, whose CPU time is measured.
    proxy: Proxy,
}

/// Whose CPU time counts as the proxy's.
#[derive(Clone, Copy)]
enum Proxy {
    None,
    /// keygate's worker and audit threads, in this process.
    Keygate,
    /// nginx's worker processes, children of this master.
    Nginx(u32),
}

/// What one target measured.
struct Measured {
    p50: Duration,
    p99: Duration,
    rps: f64,
    load_p50: Duration,
    load_p99: Duration,
    done: usize,
    wanted: usize,
    /// CPU time the proxy spent per request of the throughput phase.
    proxy_cpu: Option<Duration>,
}

fn main() {
    let options = Options::from_args();
    let started = Instant::now();
    print_machine();

    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    // The simulator and the client on runtimes of their own, as `keygate dev mock-exchange`
    // and a bot would be; the gateway on its worker threads, as `keygate serve` runs it.
    let sim_rt = runtime("sim", 2);
    let client_rt = runtime("client", 2);

    let dir = tempfile::tempdir().unwrap();
    let exchange: RunningSimulator = sim_rt.block_on(async {
        keygate_mockex::spawn(
            "127.0.0.1:0".parse().unwrap(),
            vec![Credential::hmac(REAL_KEY, REAL_SECRET)],
        )
        .await
        .unwrap()
    });
    // Each phase spends far more weight than Binance lets one IP use (6000 a minute), and
    // the simulator refuses it as Binance would: lift the limit, as the figures are of
    // the proxies, not of Binance's limits.
    exchange.simulator().set_weight_limit(u64::MAX);
    let gateway_addr = start_gateway(workers, dir.path(), &exchange.url());
    let nginx = Nginx::start(dir.path(), exchange.addr);

    let mut targets = vec![
        Target {
            label: "(a) direct",
            addr: exchange.addr,
            prefix: "",
            api_key: REAL_KEY,
            secret: REAL_SECRET,
            proxy: Proxy::None,
        },
        Target {
            label: "(b) keygate",
            addr: gateway_addr,
            prefix: "/binance",
            api_key: BOT_KEY,
            secret: BOT_SECRET,
            proxy: Proxy::Keygate,
        },
    ];
    match &nginx {
        Ok(n) => targets.push(Target {
            label: "(c) nginx",
            addr: n.addr,
            prefix: "",
            api_key: REAL_KEY,
            secret: REAL_SECRET,
            proxy: Proxy::Nginx(n.child.id()),
        }),
        Err(reason) => println!("nginx: {reason}; skipping (c)"),
    }

    // Rounds interleave the targets, each round starting with the next one, so that a
    // noisy moment on the shared cores, or going first, does not favour one of them;
    // every figure reported is the median of its rounds.
    let mut rounds: Vec<Vec<Measured>> = targets.iter().map(|_| Vec::new()).collect();
    for round in 0..options.rounds {
        for k in 0..targets.len() {
            let i = (round + k) % targets.len();
            let target = &targets[i];
            exchange.simulator().reset(false); // the simulator records every request
            let m = client_rt.block_on(measure(target, &options));
            println!(
                "round {} {:<12} p50 {:>8} p99 {:>8} {:>9.0} req/s ({} of {} requests in the throughput phase)",
                round + 1,
                target.label,
                us(m.p50),
                us(m.p99),
                m.rps,
                m.done,
                m.wanted
            );
            rounds[i].push(m);
        }
    }
    let results: Vec<Measured> = rounds.iter().map(|r| median(r)).collect();

    report(&targets, &results, &options);

    drop(nginx); // stops nginx
    exchange.shutdown();
    drop(client_rt);
    sim_rt.shutdown_timeout(Duration::from_secs(2));
    println!("total run time {:.1} s", started.elapsed().as_secs_f64());
}

fn runtime(name: &str, workers: usize) -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .thread_name(format!("loadbench-{name}"))
        .enable_all()
        .build()
        .unwrap()
}

fn print_machine() {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default();
    println!("machine: nproc {cpus}, {model}, Linux {kernel}");
}

/// The gateway on 127.0.0.1:0 with `workers` worker threads, with a store in `dir`, an
/// account pointing at `upstream` and one read-only client. Returns its address.
fn start_gateway(workers: usize, dir: &Path, upstream: &str) -> SocketAddr {
    let bot = Bot {
        material: ClientKeyMaterial::Hmac(SecretString::new(BOT_SECRET.into())),
        policy: Policy::default(), // read only, loopback only
    };
    let (gateway, _) = gateway_over(dir, upstream, bot, UPSTREAM_TIMEOUT);
    // Tens of thousands of account reads a minute are far past the request weight Binance
    // allows an address (6000), which the simulator reports but does not enforce: with
    // keygate's weight caps in place, most of them would be refused, not forwarded. The
    // cap is checked on every read all the same; it only never stops one.
    // And one client sends every request, a fleet's worth in their windows: more than
    // the replay cache's share of one client (an eighth) lets it hold.
    let gateway = gateway.with_client_limits(ClientLimits {
        public_weight_cap: u64::MAX / 2,
        spend_weight_kept_for_reconciliation: true,
        max_fingerprints_per_client: keygate_gateway::MAX_FINGERPRINTS,
        ..ClientLimits::default()
    });
    let server = Server::start("127.0.0.1:0".parse().unwrap(), workers, &gateway).unwrap();
    let addr = server.local_addr();
    // Runs until the process exits, as `keygate serve` runs until it is stopped.
    std::mem::forget(server);
    addr
}

/// nginx as a plain reverse proxy, a child process stopped on drop.
struct Nginx {
    child: Child,
    addr: SocketAddr,
}

impl Nginx {
    fn start(dir: &Path, upstream: SocketAddr) -> Result<Nginx, String> {
        let binary = find_nginx().ok_or("not installed (not on PATH nor /usr/sbin/nginx)")?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| e.to_string())?
            .port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let prefix = dir.join("nginx");
        std::fs::create_dir_all(prefix.join("logs")).map_err(|e| e.to_string())?;
        let p = prefix.display();
        let conf = format!(
            r#"daemon off;
worker_processes auto;
pid {p}/nginx.pid;
error_log {p}/logs/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {p}/body;
    proxy_temp_path {p}/proxy;
    fastcgi_temp_path {p}/fastcgi;
    uwsgi_temp_path {p}/uwsgi;
    scgi_temp_path {p}/scgi;
    keepalive_requests 1000000;
    keepalive_timeout 60s;
    upstream simulator {{
        server {upstream};
        keepalive 128;
        keepalive_requests 1000000;
    }}
    server {{
        listen {addr};
        location / {{
            proxy_pass http://simulator;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
}}
"#
        );
        let conf_path = prefix.join("nginx.conf");
        std::fs::write(&conf_path, conf).map_err(|e| e.to_string())?;
        let mut child = Command::new(&binary)
            .arg("-p")
            .arg(&prefix)
            .arg("-e")
            .arg(prefix.join("logs/error.log"))
            .arg("-c")
            .arg(&conf_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", binary.display()))?;
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if std::net::TcpStream::connect(addr).is_ok() {
                break;
            }
            if let Ok(Some(status)) = child.try_wait() {
                let mut err = String::new();
                if let Some(mut e) = child.stderr.take() {
                    use std::io::Read as _;
                    let _ = e.read_to_string(&mut err);
                }
                return Err(format!("nginx exited ({status}): {}", err.trim()));
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err("nginx did not start listening within 5 s".into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let version = Command::new(&binary)
            .arg("-v")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stderr).trim().to_owned())
            .unwrap_or_default();
        println!(
            "nginx: {} ({version}), worker_processes auto, listening on {addr}",
            binary.display()
        );
        Ok(Nginx { child, addr })
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM to the master stops its workers too; SIGKILL would orphan them.
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn find_nginx() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("nginx"))
            .find(|p| p.is_file())
    });
    on_path.or_else(|| {
        let sbin = PathBuf::from("/usr/sbin/nginx");
        sbin.is_file().then_some(sbin)
    })
}

/// One pre-signed request.
type Req = hyper::Request<Empty<Bytes>>;

/// The last timestamp handed out, in microseconds.
static LAST_TS_US: AtomicU64 = AtomicU64::new(0);

/// A timestamp never handed out before: now, in microseconds (Binance's spot API and
/// keygate accept 16-digit microsecond timestamps). Distinct timestamps give distinct
/// signatures, which keygate's replay cache requires, however fast requests are signed.
fn unique_timestamp_us() -> u64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64;
    let mut last = LAST_TS_US.load(Ordering::Relaxed);
    loop {
        let ts = now.max(last + 1);
        match LAST_TS_US.compare_exchange(last, ts, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return ts,
            Err(seen) => last = seen,
        }
    }
}

/// `n` requests for `target`, each with its own timestamp and signature, built before the
/// phase that sends them.
fn presign(target: &Target, n: usize) -> Vec<hyper::Request<Empty<Bytes>>> {
    (0..n)
        .map(|_| {
            let payload = format!(
                "timestamp={}&recvWindow={RECV_WINDOW_MS}",
                unique_timestamp_us()
            );
            let signature = binance::hmac_signature(target.secret.as_bytes(), payload.as_bytes());
            hyper::Request::get(format!(
                "{}{PATH}?{payload}&signature={signature}",
                target.prefix
            ))
            .header(http::header::HOST, target.addr.to_string())
            .header("X-MBX-APIKEY", target.api_key)
            .header(http::header::USER_AGENT, "keygate-loadbench")
            .body(Empty::new())
            .unwrap()
        })
        .collect()
}

async fn connect(addr: SocketAddr) -> SendRequest<Empty<Bytes>> {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(async move {
        // The connection ends when its sender drops.
        let _ = connection.await;
    });
    sender
}

/// Sends one request and reads the whole answer; panics unless it is a 200 with balances
/// (a denial or an error would make every figure meaningless).
async fn send(sender: &mut SendRequest<Empty<Bytes>>, request: hyper::Request<Empty<Bytes>>) {
    sender.ready().await.unwrap();
    let response = sender.send_request(request).await.unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    if status != 200 || !body.starts_with(b"{") {
        panic!(
            "unexpected answer {status}: {}",
            String::from_utf8_lossy(&body)
        );
    }
}

async fn measure(target: &Target, o: &Options) -> Measured {
    // Warm-up: on the connections of the throughput phase, so every pool behind the
    // target (keygate's upstream client, nginx's upstream keep-alive) is warm too.
    let warm = presign(target, o.warmup);
    let _ = concurrent(target, warm, o.concurrency, Duration::from_secs(o.seconds)).await;

    // Latency: one keep-alive connection, one request at a time.
    let requests = presign(target, o.latency_requests);
    let mut sender = connect(target.addr).await;
    let mut latencies = Vec::with_capacity(requests.len());
    for request in requests {
        let t = Instant::now();
        send(&mut sender, request).await;
        latencies.push(t.elapsed());
    }
    drop(sender);
    let (p50, p99) = percentiles(&mut latencies);

    // Throughput: many keep-alive connections, a fixed number of requests, bounded time.
    let requests = presign(target, o.requests);
    let wanted = requests.len();
    let cpu_before = proxy_cpu_time(target.proxy);
    let (done, elapsed, mut load) = concurrent(
        target,
        requests,
        o.concurrency,
        Duration::from_secs(o.seconds),
    )
    .await;
    let proxy_cpu = match (cpu_before, proxy_cpu_time(target.proxy)) {
        (Some(before), Some(after)) if done > 0 => Some((after - before) / done as u32),
        _ => None,
    };
    let (load_p50, load_p99) = percentiles(&mut load);
    Measured {
        p50,
        p99,
        rps: done as f64 / elapsed.as_secs_f64(),
        load_p50,
        load_p99,
        done,
        wanted,
        proxy_cpu,
    }
}

/// Clock ticks per second of `/proc/*/stat` times: 100 on every Linux this runs on.
const CLOCK_TICKS_PER_SECOND: u64 = 100;

/// User plus system CPU time consumed so far by `proxy`, from `/proc` (Linux only).
fn proxy_cpu_time(proxy: Proxy) -> Option<Duration> {
    let ticks: u64 = match proxy {
        Proxy::None => return None,
        Proxy::Keygate => std::fs::read_dir("/proc/self/task")
            .ok()?
            .flatten()
            .filter(|task| {
                std::fs::read_to_string(task.path().join("comm")).is_ok_and(|comm| {
                    comm.starts_with("keygate-worker") || comm.trim() == "keygate-audit"
                })
            })
            .filter_map(|task| stat_ticks(&task.path().join("stat")).map(|(_, t)| t))
            .sum(),
        Proxy::Nginx(master) => std::fs::read_dir("/proc")
            .ok()?
            .flatten()
            .filter_map(|entry| stat_ticks(&entry.path().join("stat")))
            .filter(|(parent, _)| *parent == master)
            .map(|(_, t)| t)
            .sum(),
    };
    Some(Duration::from_millis(ticks * 1000 / CLOCK_TICKS_PER_SECOND))
}

/// (parent pid, utime + stime) from a `/proc/…/stat` file.
fn stat_ticks(path: &Path) -> Option<(u32, u64)> {
    let stat = std::fs::read_to_string(path).ok()?;
    // The command name may hold spaces; the fields after it are positional.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let parent = fields.get(1)?.parse().ok()?;
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((parent, utime + stime))
}

/// Sends `requests` over `connections` keep-alive connections until all are answered or
/// `bound` has passed. Returns (answered, elapsed, each answer's latency).
async fn concurrent(
    target: &Target,
    requests: Vec<hyper::Request<Empty<Bytes>>>,
    connections: usize,
    bound: Duration,
) -> (usize, Duration, Vec<Duration>) {
    let total = requests.len();
    let queue: Arc<Vec<Mutex<Option<Req>>>> =
        Arc::new(requests.into_iter().map(|r| Mutex::new(Some(r))).collect());
    let next = Arc::new(AtomicUsize::new(0));
    let mut senders = Vec::with_capacity(connections);
    for _ in 0..connections {
        senders.push(connect(target.addr).await);
    }
    let started = Instant::now();
    let deadline = started + bound;
    let tasks: Vec<_> = senders
        .into_iter()
        .map(|mut sender| {
            let queue = queue.clone();
            let next = next.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(total / connections + 1);
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= queue.len() || Instant::now() >= deadline {
                        break;
                    }
                    let request = queue[i].lock().unwrap().take().unwrap();
                    let t = Instant::now();
                    send(&mut sender, request).await;
                    latencies.push(t.elapsed());
                }
                latencies
            })
        })
        .collect();
    let mut all = Vec::with_capacity(total);
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    (all.len(), started.elapsed(), all)
}

/// Each figure's median over the rounds of one target.
fn median(rounds: &[Measured]) -> Measured {
    fn mid<T: Copy + PartialOrd>(mut v: Vec<T>) -> T {
        v.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
        v[v.len() / 2]
    }
    let each = |f: fn(&Measured) -> Duration| mid(rounds.iter().map(f).collect());
    let cpu: Vec<Duration> = rounds.iter().filter_map(|m| m.proxy_cpu).collect();
    Measured {
        p50: each(|m| m.p50),
        p99: each(|m| m.p99),
        rps: mid(rounds.iter().map(|m| m.rps).collect()),
        load_p50: each(|m| m.load_p50),
        load_p99: each(|m| m.load_p99),
        done: mid(rounds.iter().map(|m| m.done).collect()),
        wanted: mid(rounds.iter().map(|m| m.wanted).collect()),
        proxy_cpu: (!cpu.is_empty()).then(|| mid(cpu)),
    }
}

fn percentiles(v: &mut [Duration]) -> (Duration, Duration) {
    if v.is_empty() {
        return (Duration::ZERO, Duration::ZERO);
    }
    v.sort_unstable();
    let at = |q: usize| v[(v.len() * q / 100).min(v.len() - 1)];
    (at(50), at(99))
}

fn us(d: Duration) -> String {
    format!("{:.0} µs", d.as_secs_f64() * 1e6)
}

fn signed_us(d: f64) -> String {
    format!("{d:+.0} µs")
}

fn report(targets: &[Target], results: &[Measured], o: &Options) {
    let a = &results[0];
    println!();
    println!(
        "signed read GET {PATH}, loopback, HTTP/1.1 keep-alive; latency: {} sequential requests on 1 connection; throughput: {} requests over {} connections (bounded to {} s); warm-up {}; medians of {} rounds",
        o.latency_requests, o.requests, o.concurrency, o.seconds, o.warmup, o.rounds
    );
    println!();
    println!(
        "{:<12} | {:>9} | {:>9} | {:>12} | {:>10} | {:>10} | {:>13} | {:>13} | {:>13}",
        "path",
        "p50",
        "p99",
        "req/s",
        "added p50",
        "added p99",
        "load p50",
        "load p99",
        "proxy CPU/req"
    );
    println!("{}", "-".repeat(122));
    let added = |m: &Measured| {
        (
            m.p50.as_secs_f64() * 1e6 - a.p50.as_secs_f64() * 1e6,
            m.p99.as_secs_f64() * 1e6 - a.p99.as_secs_f64() * 1e6,
        )
    };
    for (t, m) in targets.iter().zip(results) {
        let (add50, add99) = added(m);
        let (s50, s99) = if std::ptr::eq(m, a) {
            ("-".to_owned(), "-".to_owned())
        } else {
            (signed_us(add50), signed_us(add99))
        };
        println!(
            "{:<12} | {:>9} | {:>9} | {:>12.0} | {:>10} | {:>10} | {:>13} | {:>13} | {:>13}",
            t.label,
            us(m.p50),
            us(m.p99),
            m.rps,
            s50,
            s99,
            us(m.load_p50),
            us(m.load_p99),
            m.proxy_cpu.map_or("-".to_owned(), |d| format!(
                "{:.1} µs",
                d.as_secs_f64() * 1e6
            ))
        );
    }
    println!("(load p50/p99: latency of each request during the throughput phase; proxy CPU/req: user+system CPU time of the proxy alone during that phase, per request)");
    println!();
    if results.len() < 3 {
        println!("no nginx: ratios against nginx not computed");
        return;
    }
    let (b, c) = (&results[1], &results[2]);
    let (b50, b99) = added(b);
    let (c50, c99) = added(c);
    let ratio = |x: f64, y: f64| {
        if y.abs() < 1e-9 {
            f64::INFINITY
        } else {
            x / y
        }
    };
    let verdict = |ok: bool| if ok { "PASS" } else { "FAIL" };
    println!("keygate (b) against nginx (c):");
    println!(
        "  added p50  b/c = {:>5.2}   ({} vs {}; target b <= c)          {}",
        ratio(b50, c50),
        signed_us(b50),
        signed_us(c50),
        verdict(b50 <= c50)
    );
    println!(
        "  added p99  b/c = {:>5.2}   ({} vs {}; target b <= 1.5 x c)    {}",
        ratio(b99, c99),
        signed_us(b99),
        signed_us(c99),
        verdict(b99 <= 1.5 * c99)
    );
    println!(
        "  throughput b/c = {:>5.2}   ({:.0} vs {:.0} req/s; target b >= c) {}",
        ratio(b.rps, c.rps),
        b.rps,
        c.rps,
        verdict(b.rps >= c.rps)
    );
    if let (Some(bc), Some(cc)) = (b.proxy_cpu, c.proxy_cpu) {
        println!(
            "  proxy CPU  b/c = {:>5.2}   ({:.1} vs {:.1} µs per request; no target, the cost behind throughput)",
            bc.as_secs_f64() / cc.as_secs_f64(),
            bc.as_secs_f64() * 1e6,
            cc.as_secs_f64() * 1e6
        );
    }
}
