//! The admin listener: `GET /healthz` and `GET /metrics` (Prometheus), on an address of
//! their own, apart from the bots' listener. Read-only; it holds no key and changes
//! nothing.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::thread;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::serve::Listener;
use axum::{Json, Router};
use keygate_audit::AuditLog;
use keygate_monitor::{write_gauge, Metrics};
use serde_json::json;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, OwnedSemaphorePermit, Semaphore};

use crate::registry::Live;
use crate::weight::WeightGauge;
use crate::AnswersHeld;

/// Admin connections served at once; more wait in the kernel's queue until one ends.
const MAX_CONNECTIONS: usize = 32;
/// How long one admin connection may last, whatever it does. A scrape or a health check
/// takes milliseconds (a scraper that keeps its connection open opens another); a
/// connection that sends nothing, or reads nothing, must not keep its slot (nor a file
/// descriptor the gateway needs) for longer.
const CONNECTION_LIFETIME: Duration = Duration::from_secs(10);

/// What the admin endpoints read.
#[derive(Clone)]
pub struct AdminState {
    /// The monitor's counters.
    pub metrics: Arc<Metrics>,
    /// The audit log the gateway writes to.
    pub audit: AuditLog,
    /// The accounts and clients the gateway serves.
    pub live: Arc<Live>,
    /// The request weight the exchanges report used.
    pub weight: Arc<WeightGauge>,
    /// The large answers held for slow clients.
    pub answers: AnswersHeld,
    /// The HTTPS listener's certificate, when the gateway serves HTTPS.
    pub certificate: Option<Arc<crate::ListenerCertificate>>,
}

/// The admin endpoints, for tests to drive with `oneshot` and for [`AdminServer`] to serve.
pub fn admin_app(state: AdminState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

/// 200 while the gateway serves; 503 when the audit writer is gone or its last commit
/// failed (every order, withdrawal and transfer is then refused), the stop file of
/// `keygate panic` is there or the last reload of accounts and clients failed or stalled
/// (every request is then refused), or the monitor cannot read the audit log (no alert is
/// raised from it).
async fn healthz(State(state): State<AdminState>) -> impl IntoResponse {
    let monitor_seq = state.metrics.last_seq();
    // Fixed words: the causes (a database path, SQLite's text) are in serve's log and
    // its alerts, and this may be served beyond loopback.
    let problem = if state.live.is_stopped() {
        Some(
            "refusing every client as frozen: the stop file of `keygate panic` is there (a \
             panic under way, or one that could not record its freeze)",
        )
    } else if state.live.failure().is_some() {
        Some("refusing every client: the last reload failed or stalled (serve's log says why)")
    } else if !state.audit.is_writing() {
        Some("the audit writer has stopped: orders, withdrawals and transfers are refused")
    } else if state.audit.failing().is_some() {
        Some(
            "the audit log cannot be written: orders, withdrawals and transfers are refused \
             (serve's log says why)",
        )
    } else if state.metrics.log_unreadable().is_some() {
        Some("the monitor cannot read the audit log: no alert is raised from it (serve's log says why)")
    } else {
        None
    };
    match problem {
        None => (
            StatusCode::OK,
            Json(json!({ "status": "ok", "monitor_seq": monitor_seq })),
        ),
        Some(status) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": status, "monitor_seq": monitor_seq })),
        ),
    }
}

async fn metrics(State(state): State<AdminState>) -> impl IntoResponse {
    let mut text = state.metrics.render();
    write_gauge(
        &mut text,
        "keygate_exchange_used_weight",
        "Request weight each exchange host reports used this minute, by weight pool.",
        ["upstream", "pool"],
        &state.weight.this_minute(crate::now_ms()),
    );
    write_gauge(
        &mut text,
        "keygate_exchange_back_off_seconds",
        "Seconds left of each pause the exchange asked for (status 429: a wait, with \
         Retry-After; 418: a ban), during which nothing is sent to that upstream.",
        ["upstream", "status"],
        &state.weight.pauses(crate::now_ms()),
    );
    let held: Vec<([String; 1], u64)> = state
        .answers
        .bytes()
        .iter()
        .map(|(caller, n)| ([(*caller).to_owned()], *n as u64))
        .collect();
    if let Some(not_after) = state.certificate.as_ref().and_then(|c| c.not_after()) {
        let not_after = not_after
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        write_gauge(
            &mut text,
            "keygate_tls_certificate_not_after_seconds",
            "When the HTTPS listener's certificate stops being valid, in seconds since the \
             Unix epoch (the one presented now: a renewal replaces it).",
            [],
            &[([], not_after)],
        );
    }
    write_gauge(
        &mut text,
        "keygate_answer_bytes_held",
        "Bytes of large answers (16 KiB and more) not yet written to their clients, by caller; \
         public data is refused at --max-answer-mib in all, signed reads at that in signed.",
        ["caller"],
        &held,
    );
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
}

/// Whether `addr` is a loopback address, an IPv4 one written IPv4-mapped
/// (`[::ffff:127.0.0.1]`) included: `serve` takes that for loopback, so the guard against
/// DNS rebinding (the admin server's check of `Host`) must too (found by review: it was
/// left off there).
pub fn is_loopback(addr: SocketAddr) -> bool {
    addr.ip().to_canonical().is_loopback()
}

/// Refuses (421) a request to a loopback listener whose `Host` names anything but an IP
/// address or `localhost`: a web page open on this machine can make a name of its own
/// resolve to 127.0.0.1 (DNS rebinding) and read the metrics through the browser, which
/// sends that name. A scraper or a health check reaches the listener by its address.
async fn addressed_by_ip(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let host = request
        .headers()
        .get(header::HOST)
        .map(|host| host.to_str().unwrap_or(""));
    match host {
        Some(host) if !names_this_host(host) => StatusCode::MISDIRECTED_REQUEST.into_response(),
        _ => next.run(request).await,
    }
}

/// Whether a `Host` header's value is an IP address or `localhost`, with or without a
/// port.
fn names_this_host(host: &str) -> bool {
    let is_port = |port: &str| port.parse::<u16>().is_ok();
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split_once(']').is_some_and(|(ip, after)| {
            ip.parse::<std::net::Ipv6Addr>().is_ok()
                && (after.is_empty() || after.strip_prefix(':').is_some_and(is_port))
        });
    }
    let name = match host.rsplit_once(':') {
        Some((name, port)) if is_port(port) => name,
        Some(_) => return false,
        None => host,
    };
    name.eq_ignore_ascii_case("localhost") || name.parse::<std::net::Ipv4Addr>().is_ok()
}

/// The admin listener on a thread of its own; stops when dropped.
pub struct AdminServer {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl AdminServer {
    /// Binds `addr` (port 0 allowed) and serves [`admin_app`] on it.
    pub fn start(addr: SocketAddr, state: AdminState) -> std::io::Result<AdminServer> {
        let listener = std::net::TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = thread::Builder::new()
            .name("keygate-admin".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let served = match TcpListener::from_std(listener) {
                        Ok(listener) => {
                            let listener =
                                Bounded::new(listener, MAX_CONNECTIONS, CONNECTION_LIFETIME);
                            let app = if is_loopback(addr) {
                                admin_app(state).layer(axum::middleware::from_fn(addressed_by_ip))
                            } else {
                                admin_app(state)
                            };
                            axum::serve(listener, app)
                                .with_graceful_shutdown(async move {
                                    let _ = stopped.await;
                                })
                                .await
                        }
                        Err(e) => Err(e),
                    };
                    if let Err(error) = served {
                        tracing::error!(%error, "the admin listener stopped");
                    }
                });
            })?;
        Ok(AdminServer {
            addr,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for AdminServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A listener that serves at most `slots` connections at once, each for at most
/// `lifetime`: axum's server sets no timeout of its own.
struct Bounded {
    listener: TcpListener,
    slots: Arc<Semaphore>,
    lifetime: Duration,
}

impl Bounded {
    fn new(listener: TcpListener, slots: usize, lifetime: Duration) -> Bounded {
        Bounded {
            listener,
            slots: Arc::new(Semaphore::new(slots)),
            lifetime,
        }
    }
}

impl Listener for Bounded {
    type Io = BoundedStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (BoundedStream, SocketAddr) {
        // A slot first: past the bound, connections wait unaccepted.
        let slot = match self.slots.clone().acquire_owned().await {
            Ok(slot) => slot,
            // Never closed; were it, nothing more would be accepted.
            Err(_) => std::future::pending().await,
        };
        let (stream, addr) = Listener::accept(&mut self.listener).await;
        let stream = BoundedStream {
            stream,
            ends: Box::pin(tokio::time::sleep(self.lifetime)),
            _slot: slot,
        };
        (stream, addr)
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }
}

/// A connection that fails every read and write once its lifetime is over, and gives
/// its slot back when dropped.
struct BoundedStream {
    stream: TcpStream,
    ends: Pin<Box<tokio::time::Sleep>>,
    _slot: OwnedSemaphorePermit,
}

impl BoundedStream {
    /// An error once the lifetime is over; else registers to be woken when it is.
    fn check(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        match self.ends.as_mut().poll(cx) {
            Poll::Ready(()) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the admin connection outlived its time",
            )),
            Poll::Pending => Ok(()),
        }
    }
}

impl AsyncRead for BoundedStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.check(cx)?;
        Pin::new(&mut this.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for BoundedStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.check(cx)?;
        Pin::new(&mut this.stream).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.check(cx)?;
        Pin::new(&mut this.stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncReadExt;

    use super::*;

    /// From a review: a loopback admin listener answered any `Host`, so a web page that
    /// rebinds a name of its own to 127.0.0.1 could read the metrics through a browser.
    #[tokio::test]
    async fn a_loopback_admin_listener_answers_only_requests_addressed_to_it() {
        for good in [
            "127.0.0.1:9100",
            "127.0.0.1",
            "localhost:9100",
            "LOCALHOST",
            "[::1]:9100",
            "[::1]",
        ] {
            assert!(names_this_host(good), "{good}");
        }
        for bad in [
            "evil.example",
            "evil.example:9100",
            "127.0.0.1.evil.example",
            "[::1]x",
            "127.0.0.1:x",
            "",
        ] {
            assert!(!names_this_host(bad), "{bad}");
        }
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = Router::new()
            .route("/healthz", get(|| async { "ok" }))
            .layer(axum::middleware::from_fn(addressed_by_ip));
        tokio::spawn(async move { axum::serve(listener, app).await });
        let status_for = |host: String| async move {
            let mut stream = TcpStream::connect(addr).await.unwrap();
            let request =
                format!("GET /healthz HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
            tokio::io::AsyncWriteExt::write_all(&mut stream, request.as_bytes())
                .await
                .unwrap();
            let mut answer = String::new();
            stream.read_to_string(&mut answer).await.unwrap();
            answer.split(' ').nth(1).unwrap_or_default().to_owned()
        };
        assert_eq!(status_for(addr.to_string()).await, "200");
        assert_eq!(status_for("rebound.example".to_owned()).await, "421");
    }

    #[test]
    fn an_ipv4_mapped_loopback_address_is_loopback() {
        for loopback in ["127.0.0.1:9100", "[::1]:9100", "[::ffff:127.0.0.1]:9100"] {
            assert!(is_loopback(loopback.parse().unwrap()), "{loopback}");
        }
        for network in [
            "10.0.0.1:9100",
            "[::ffff:10.0.0.1]:9100",
            "[2001:db8::1]:9100",
        ] {
            assert!(!is_loopback(network.parse().unwrap()), "{network}");
        }
    }

    /// A regression test: axum's server has no header timeout, so a local process could
    /// open admin connections that sent nothing until the gateway ran out of file
    /// descriptors.
    #[tokio::test]
    async fn an_admin_connection_that_sends_nothing_is_closed() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let bounded = Bounded::new(listener, 1, Duration::from_millis(200));
        let app = Router::new().route("/healthz", get(|| async { "ok" }));
        tokio::spawn(async move { axum::serve(bounded, app).await });
        let mut idle = TcpStream::connect(addr).await.unwrap();
        let mut rest = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(5), idle.read_to_end(&mut rest))
            .await
            .expect("closed by the server");
        assert!(read.is_ok_and(|n| n == 0) && rest.is_empty());
        // Its slot is free again: the next connection is served.
        let mut next = TcpStream::connect(addr).await.unwrap();
        tokio::io::AsyncWriteExt::write_all(
            &mut next,
            b"GET /healthz HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
        )
        .await
        .unwrap();
        let mut answer = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), next.read_to_end(&mut answer))
            .await
            .expect("answered")
            .unwrap();
        assert!(
            answer.starts_with(b"HTTP/1.1 200"),
            "{}",
            String::from_utf8_lossy(&answer)
        );
    }
}
