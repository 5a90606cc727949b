//! The gateway on one thread per core, as nginx runs one worker process per core.
//!
//! Each worker is a thread with a single-threaded tokio runtime and its own pool of
//! upstream connections; everything else (accounts and clients, policy counters, the
//! replay cache, the audit log) is shared. A request and the upstream connection it uses
//! then live on one thread, and no wake-up crosses to another.
//!
//! One listening socket, bound the ordinary way (no `SO_REUSEPORT`, so a second process
//! can never silently share the port), is accepted on by the first worker, which hands
//! the connections to the workers in turn. Bots keep their connections alive, so
//! accepting is rare and the hand-off costs nothing measurable.
//!
//! The first worker also enforces [`ClientLimits::max_connections`](crate::ClientLimits)
//! and `max_connections_per_source`: a connection past either is closed as it arrives.
//! Trusted proxies count against the first only. Addresses no client may call from
//! (outside every `--allow-ip`), which can ask for nothing but public data, hold half of
//! the connections at most, all together: a few of them cannot take every slot and keep
//! the bots from reconnecting (found by review). hyper closes a connection whose client
//! takes longer than [`ClientLimits::timeout`](crate::ClientLimits) to send its headers,
//! which also bounds how long a kept-alive connection may idle, and [`WriteDeadline`]
//! one whose client stops reading its answers for as long. Every state of a connection is
//! then bounded in time, and so is a graceful shutdown.
//!
//! A request, once read, is served to its end whatever the client does meanwhile: a
//! client may shut down its sending side (half-close) and wait for its answer, and one
//! that closed its connection altogether is noticed only when its answer cannot be
//! written. A request is never dropped midway, where the exchange may already have it.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::thread;
use std::time::{Duration, Instant};

use axum::serve::Listener;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use ipnet::IpNet;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use crate::registry::Live;
use crate::Gateway;

/// A running multi-worker gateway. [`Server::shutdown`] stops it gracefully; dropping it
/// stops it too, without waiting.
pub struct Server {
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    workers: Vec<thread::JoinHandle<()>>,
}

impl Server {
    /// Binds `addr` and starts `workers` worker threads (at least one) serving `gateway`
    /// over plain HTTP.
    pub fn start(addr: SocketAddr, workers: usize, gateway: &Gateway) -> io::Result<Server> {
        Server::start_with(addr, workers, gateway, None)
    }

    /// As [`Server::start`], serving HTTPS: every connection is a TLS connection made with
    /// `tls` (see [`ListenerCertificate::tls_config`](crate::ListenerCertificate::tls_config)).
    /// A client has the client timeout for its handshake.
    pub fn start_tls(
        addr: SocketAddr,
        workers: usize,
        gateway: &Gateway,
        tls: Arc<rustls::ServerConfig>,
    ) -> io::Result<Server> {
        Server::start_with(addr, workers, gateway, Some(TlsAcceptor::from(tls)))
    }

    fn start_with(
        addr: SocketAddr,
        workers: usize,
        gateway: &Gateway,
        tls: Option<TlsAcceptor>,
    ) -> io::Result<Server> {
        let listener = std::net::TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = watch::channel(false);
        let (inboxes, connections): (Vec<_>, Vec<_>) = (0..workers.max(1))
            .map(|_| mpsc::unbounded_channel::<Accepted>())
            .unzip();
        let mut acceptor = Some((listener, inboxes));
        let mut server = Server {
            addr,
            stop,
            workers: Vec::new(),
        };
        for (index, connections) in connections.into_iter().enumerate() {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let gateway = Arc::new(gateway.with_own_pool(workers.max(1)));
            // Registered here, so that a failure is the caller's error, not a silent worker.
            let acceptor = match acceptor.take() {
                Some((listener, inboxes)) => {
                    let _entered = runtime.enter();
                    let limits = ConnectionLimits {
                        total: gateway.limits.max_connections,
                        per_source: gateway.limits.max_connections_per_source,
                        exempt: gateway.trusted_proxies.clone(),
                        live: Arc::clone(&gateway.live),
                    };
                    Some((TcpListener::from_std(listener)?, inboxes, limits))
                }
                None => None,
            };
            let stopped = stopped.clone();
            let tls = tls.clone();
            let worker = thread::Builder::new()
                .name(format!("keygate-worker-{index}"))
                .spawn(move || {
                    runtime.block_on(async move {
                        if let Some((listener, inboxes, limits)) = acceptor {
                            tokio::spawn(accept(listener, inboxes, limits, stopped.clone()));
                        }
                        tokio::spawn(keep_a_timer_due_soon());
                        serve_connections(gateway, tls, connections, stopped).await;
                    });
                })?;
            server.workers.push(worker);
        }
        Ok(server)
    }

    /// The address the gateway listens on (the port chosen when `addr` asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting, lets every request in flight finish, and waits for the workers.
    pub fn shutdown(mut self) -> io::Result<()> {
        let _ = self.stop.send(true);
        for worker in self.workers.drain(..) {
            worker
                .join()
                .map_err(|_| io::Error::other("a gateway worker panicked"))?;
        }
        Ok(())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

/// How often a worker's standing timer fires; see [`keep_a_timer_due_soon`].
const STANDING_TIMER_PERIOD: Duration = Duration::from_secs(1);

/// Keeps a timer due within [`STANDING_TIMER_PERIOD`] on this worker, so that the timers
/// the request path sets are never the worker's earliest.
///
/// Tokio wakes a worker's event loop (an eventfd write, then one more `epoll_wait`) each
/// time a timer is set to fire before every timer it already has, and every request sets
/// one: the upstream call's timeout. Without a timer due sooner, that was two system
/// calls per request; with this one, the cost is one wake-up a second.
async fn keep_a_timer_due_soon() {
    loop {
        tokio::time::sleep(STANDING_TIMER_PERIOD).await;
    }
}

/// Completes once a stop is requested or the [`Server`] is gone.
async fn stop_requested(mut stopped: watch::Receiver<bool>) {
    let _ = stopped.wait_for(|stop| *stop).await;
}

/// A connection accepted, with its place among the open ones.
struct Accepted {
    stream: std::net::TcpStream,
    _slot: Slot,
}

/// How many connections may be open at once.
struct ConnectionLimits {
    total: usize,
    per_source: usize,
    /// Sources the per-source limit does not apply to: the trusted proxies.
    exempt: Arc<[IpNet]>,
    /// The clients, whose allow lists tell the addresses bots call from.
    live: Arc<Live>,
}

impl ConnectionLimits {
    /// How many connections the addresses no client may call from hold at most, all
    /// together.
    fn strangers_share(&self) -> usize {
        (self.total / 2).max(1)
    }
}

/// Where a connection comes from, as the limits count it.
#[derive(Clone, Copy, PartialEq)]
enum Origin {
    /// A trusted proxy: every bot behind it shares its address.
    Proxy,
    /// An address some client may call from, by its network ([`keygate_core::source_network`]).
    Client(IpAddr),
    /// An address no client may call from, by its network.
    Stranger(IpAddr),
}

impl Origin {
    /// Where `peer` is, for `limits`.
    fn of(peer: IpAddr, limits: &ConnectionLimits) -> Origin {
        let source = peer.to_canonical();
        if limits.exempt.iter().any(|proxy| proxy.contains(&source)) {
            Origin::Proxy
        } else if limits.live.snapshot().is_client_source(source) {
            Origin::Client(keygate_core::source_network(source))
        } else {
            Origin::Stranger(keygate_core::source_network(source))
        }
    }

    /// The network the per-source limit counts it under, if any.
    fn network(self) -> Option<IpAddr> {
        match self {
            Origin::Proxy => None,
            Origin::Client(network) | Origin::Stranger(network) => Some(network),
        }
    }
}

/// The connections open now, in all, from strangers, and by source address.
#[derive(Default)]
struct OpenConnections {
    total: AtomicUsize,
    strangers: AtomicUsize,
    by_source: Mutex<HashMap<IpAddr, usize>>,
}

impl OpenConnections {
    /// A slot for a connection from `origin`, or why there is none.
    fn take(
        self: &Arc<Self>,
        origin: Origin,
        limits: &ConnectionLimits,
    ) -> Result<Slot, &'static str> {
        if self.total.load(Ordering::Relaxed) >= limits.total {
            return Err("too many open connections");
        }
        let stranger = matches!(origin, Origin::Stranger(_));
        if stranger && self.strangers.load(Ordering::Relaxed) >= limits.strangers_share() {
            return Err("too many open connections from addresses no client may call from");
        }
        let source = origin.network();
        if let Some(source) = source {
            let mut by_source = self.by_source.lock().unwrap_or_else(|p| p.into_inner());
            let open = by_source.entry(source).or_default();
            if *open >= limits.per_source {
                return Err("too many open connections from one address");
            }
            *open += 1;
        }
        self.total.fetch_add(1, Ordering::Relaxed);
        if stranger {
            self.strangers.fetch_add(1, Ordering::Relaxed);
        }
        Ok(Slot {
            open: self.clone(),
            source,
            stranger,
        })
    }
}

/// One open connection counted against the limits, until it is dropped.
struct Slot {
    open: Arc<OpenConnections>,
    source: Option<IpAddr>,
    stranger: bool,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.open.total.fetch_sub(1, Ordering::Relaxed);
        if self.stranger {
            self.open.strangers.fetch_sub(1, Ordering::Relaxed);
        }
        if let Some(source) = self.source {
            let mut by_source = self
                .open
                .by_source
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if let Some(open) = by_source.get_mut(&source) {
                *open -= 1;
                if *open == 0 {
                    by_source.remove(&source);
                }
            }
        }
    }
}

/// How often at most a refused connection is logged: a flood must not flood the log.
const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Accepts connections and deals them to the workers in turn, until a stop is requested.
/// A connection past the `limits` is closed at once.
async fn accept(
    listener: TcpListener,
    inboxes: Vec<mpsc::UnboundedSender<Accepted>>,
    limits: ConnectionLimits,
    stopped: watch::Receiver<bool>,
) {
    let mut next = 0;
    let mut listener = listener;
    let open = Arc::new(OpenConnections::default());
    let mut refused = 0_u64;
    let mut last_logged: Option<Instant> = None;
    let stop = stop_requested(stopped);
    tokio::pin!(stop);
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut stop => return,
            accepted = Listener::accept(&mut listener) => accepted,
        };
        let slot = match open.take(Origin::of(peer.ip(), &limits), &limits) {
            Ok(slot) => slot,
            Err(reason) => {
                drop(stream);
                refused += 1;
                if last_logged.is_none_or(|at| at.elapsed() >= REFUSAL_LOG_INTERVAL) {
                    tracing::warn!(
                        %peer,
                        refused,
                        max_connections = limits.total,
                        max_connections_per_source = limits.per_source,
                        "{reason}; closing new ones"
                    );
                    last_logged = Some(Instant::now());
                }
                continue;
            }
        };
        // A stream is tied to the runtime that registered it; the worker registers its own.
        let Ok(stream) = stream.into_std() else {
            continue;
        };
        let worker = &inboxes[next % inboxes.len()];
        next += 1;
        let _ = worker.send(Accepted {
            stream,
            _slot: slot,
        });
    }
}

/// Serves the connections dealt to one worker until a stop is requested, then lets each
/// finish the request it is on.
///
/// hyper directly, not `axum::serve`: the request path needs neither a router nor
/// extractors, and skipping them saves a boxed future and an extensions map per request.
async fn serve_connections(
    gateway: Arc<Gateway>,
    tls: Option<TlsAcceptor>,
    mut connections: mpsc::UnboundedReceiver<Accepted>,
    stopped: watch::Receiver<bool>,
) {
    let mut open = JoinSet::new();
    let stop = stop_requested(stopped.clone());
    tokio::pin!(stop);
    loop {
        let accepted = tokio::select! {
            () = &mut stop => break,
            accepted = connections.recv() => accepted,
        };
        let Some(Accepted {
            stream,
            _slot: slot,
        }) = accepted
        else {
            // The acceptor is gone: no new connections, serve the open ones until stopped.
            (&mut stop).await;
            break;
        };
        while open.try_join_next().is_some() {}
        match TcpStream::from_std(stream).and_then(|s| Ok((s.peer_addr()?, s))) {
            Ok((peer, stream)) => {
                open.spawn(serve_connection(
                    gateway.clone(),
                    tls.clone(),
                    stream,
                    peer,
                    slot,
                    stopped.clone(),
                ));
            }
            Err(e) => {
                tracing::debug!(error = %e, "dropping a connection that closed before it was served")
            }
        }
    }
    while open.join_next().await.is_some() {}
}

/// One connection, after its TLS handshake when the server has TLS. The connection holds
/// its `slot` until it ends.
async fn serve_connection(
    gateway: Arc<Gateway>,
    tls: Option<TlsAcceptor>,
    stream: TcpStream,
    peer: SocketAddr,
    _slot: Slot,
    stopped: watch::Receiver<bool>,
) {
    // An answer goes out in one write; Nagle would only delay it.
    let _ = stream.set_nodelay(true);
    let Some(tls) = tls else {
        return serve_http(gateway, stream, peer, stopped).await;
    };
    match tokio::time::timeout(gateway.limits.timeout, tls.accept(stream)).await {
        Ok(Ok(stream)) => serve_http(gateway, stream, peer, stopped).await,
        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
        Err(_) => tracing::debug!(%peer, "TLS handshake took too long"),
    }
}

/// HTTP/1.1 on one connection; on a stop, the request in flight finishes and the
/// connection closes.
async fn serve_http<S>(
    gateway: Arc<Gateway>,
    stream: S,
    peer: SocketAddr,
    stopped: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let header_timeout = gateway.limits.timeout;
    let service = service_fn(move |request: http::Request<Incoming>| {
        let gateway = gateway.clone();
        async move {
            let response = crate::route(&gateway, peer, request.map(axum::body::Body::new)).await;
            Ok::<_, Infallible>(response)
        }
    });
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        // By default hyper ends the connection at an end of input in the middle of a
        // request and drops the request with it, perhaps while the exchange has it: a
        // client that half-closed after sending an order lost its answer, not its order.
        // With half-closes allowed, hyper reads nothing more once a request is read until
        // its answer is written, so a client that closed altogether is not told apart
        // either: its request runs to its end too, bounded by the audit deadline and the
        // upstream timeout. The connection stays bounded in time: the answer is written
        // under the WriteDeadline, then reading the next request's head meets the end of
        // input and closes it, or the header-read timeout does if the client neither
        // sends nor closes.
        .half_close(true)
        // hyper's default lets a request head take about 400 KiB of buffer before it is
        // refused (431), and a last read may add as much again: per connection, from
        // clients that need no key. A head fits in a few kilobytes.
        .max_buf_size(MAX_READ_BUFFER)
        .serve_connection(
            TokioIo::new(WriteDeadline::new(stream, header_timeout, MIN_READ_RATE)),
            service,
        );
    tokio::pin!(connection);
    let stop = stop_requested(stopped);
    tokio::pin!(stop);
    let result = tokio::select! {
        result = connection.as_mut() => result,
        () = &mut stop => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(error = %e, "connection ended with an error");
    }
}

/// The most a connection's read buffer grows to while a request head is incomplete (a
/// last read may take it up to twice this): a head past it is refused with 431. The
/// body is read apart, under its own limit. hyper also bounds the answer bytes it queues
/// for writing by this, a bound on queueing, not on an answer's size.
const MAX_READ_BUFFER: usize = 64 * 1024;

/// The slowest a client may read its answers, in bytes per second, once its answers have
/// been held up for a timeout: an answer is kept whole in memory until it is written, and
/// a reader taking a byte now and then would otherwise hold megabytes (a public
/// `exchangeInfo` needs no key) for hours.
const MIN_READ_RATE: u64 = 16 * 1024;

/// A client connection whose writes may stall for at most `timeout`, and that must take
/// its answers at `min_rate` bytes per second or more while they are held up: a client
/// that stops reading its answers, or reads them a trickle at a time, loses its
/// connection instead of holding it (its slot, and its answer's memory) for ever.
struct WriteDeadline<S> {
    stream: S,
    timeout: Duration,
    min_rate: u64,
    /// Running while a write is stalled.
    stalled: Option<Pin<Box<tokio::time::Sleep>>>,
    /// Bytes written on this connection.
    written: u64,
    /// While writes are held up (the client is not taking them as fast as they come):
    /// since when, and how much had been written by then.
    held_up: Option<(tokio::time::Instant, u64)>,
}

impl<S> WriteDeadline<S> {
    fn new(stream: S, timeout: Duration, min_rate: u64) -> WriteDeadline<S> {
        WriteDeadline {
            stream,
            timeout,
            min_rate,
            stalled: None,
            written: 0,
            held_up: None,
        }
    }

    /// Passes on a write's `result`, turning a stall longer than the timeout, or writes
    /// held up for longer than it at less than the minimum rate, into an error.
    fn bound<T>(
        &mut self,
        cx: &mut Context<'_>,
        result: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        if result.is_ready() {
            self.stalled = None;
            return result;
        }
        let now = tokio::time::Instant::now();
        match self.held_up {
            None => self.held_up = Some((now, self.written)),
            Some((since, written_then)) if now.duration_since(since) >= self.timeout => {
                let taken = self.written - written_then;
                let held_ms =
                    u64::try_from(now.duration_since(since).as_millis()).unwrap_or(u64::MAX);
                let wanted = self.min_rate.saturating_mul(held_ms) / 1000;
                if taken < wanted {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "the client reads its answers too slowly",
                    )));
                }
                self.held_up = Some((now, self.written));
            }
            Some(_) => {}
        }
        let timeout = self.timeout;
        let stalled = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        if stalled.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client stopped reading its answers",
            )));
        }
        Poll::Pending
    }

    /// Counts what a write wrote.
    fn count(&mut self, result: &Poll<io::Result<usize>>) {
        if let Poll::Ready(Ok(n)) = result {
            self.written = self.written.saturating_add(*n as u64);
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for WriteDeadline<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for WriteDeadline<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.stream).poll_write(cx, buf);
        this.count(&result);
        this.bound(cx, result)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.stream).poll_write_vectored(cx, bufs);
        this.count(&result);
        this.bound(cx, result)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.stream).poll_flush(cx);
        // Flushed: what was queued is all taken, and the connection waits for the next
        // request, not for its reader.
        if matches!(result, Poll::Ready(Ok(()))) {
            this.held_up = None;
        }
        this.bound(cx, result)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.stream).poll_shutdown(cx);
        this.bound(cx, result)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncWriteExt;

    use super::*;

    #[test]
    fn a_closed_connection_gives_its_slot_back() {
        let limits = ConnectionLimits {
            total: 3,
            per_source: 1,
            exempt: Arc::new([]),
            live: Arc::new(Live::new(crate::registry::Registry::default())),
        };
        let open = Arc::new(OpenConnections::default());
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let first = open.take(Origin::Client(a), &limits).unwrap();
        assert!(
            open.take(Origin::Client(a), &limits).is_err(),
            "a second from one source"
        );
        let stranger = open.take(Origin::Stranger(b), &limits).unwrap();
        assert!(
            open.take(Origin::Stranger("192.0.2.3".parse().unwrap()), &limits)
                .is_err(),
            "past the strangers' share"
        );
        let _proxy = open.take(Origin::Proxy, &limits).unwrap();
        assert!(open.take(Origin::Proxy, &limits).is_err(), "past the total");
        drop(stranger);
        let _stranger = open.take(Origin::Stranger(b), &limits).unwrap();
        drop(first);
        assert!(
            open.take(Origin::Client(a), &limits).is_ok(),
            "the slot was not given back"
        );
        assert_eq!(open.by_source.lock().unwrap().get(&a), None);
        // With no client, every address is a stranger.
        assert!(matches!(
            Origin::of("127.0.0.1".parse().unwrap(), &limits),
            Origin::Stranger(_)
        ));
    }

    #[tokio::test]
    async fn a_write_the_client_never_reads_fails_after_the_timeout() {
        let (near, _far) = tokio::io::duplex(64);
        let mut bounded = WriteDeadline::new(near, Duration::from_millis(100), MIN_READ_RATE);
        let started = Instant::now();
        let result = tokio::time::timeout(Duration::from_secs(5), bounded.write_all(&[b'x'; 4096]))
            .await
            .expect("the write ends by itself");
        assert_eq!(result.unwrap_err().kind(), io::ErrorKind::TimedOut);
        assert!(started.elapsed() >= Duration::from_millis(100));
    }

    #[tokio::test]
    async fn writes_that_progress_are_not_cut_off() {
        let (near, mut far) = tokio::io::duplex(64);
        // At 64 bytes every 20 ms the reader takes 3200 bytes a second.
        let mut bounded = WriteDeadline::new(near, Duration::from_millis(200), 100);
        let reader = tokio::spawn(async move {
            let mut all = Vec::new();
            let mut chunk = [0u8; 64];
            loop {
                // A slow reader: each pause is shorter than the timeout, their sum longer.
                tokio::time::sleep(Duration::from_millis(20)).await;
                match tokio::io::AsyncReadExt::read(&mut far, &mut chunk).await {
                    Ok(0) | Err(_) => return all,
                    Ok(n) => all.extend_from_slice(&chunk[..n]),
                }
            }
        });
        bounded.write_all(&[b'y'; 1024]).await.unwrap();
        bounded.shutdown().await.unwrap();
        drop(bounded);
        assert_eq!(reader.await.unwrap().len(), 1024);
    }

    /// A regression test: a write stalled for a timeout failed, but every byte the
    /// client took started the timeout afresh, so a reader taking a few bytes now and
    /// then held its answer (megabytes, for a public `exchangeInfo`) in memory for hours.
    #[tokio::test]
    async fn a_client_that_reads_a_trickle_at_a_time_is_cut_off() {
        let (near, mut far) = tokio::io::duplex(64);
        let mut bounded = WriteDeadline::new(near, Duration::from_millis(300), 5000);
        let reader = tokio::spawn(async move {
            let mut chunk = [0u8; 50];
            let mut taken = 0;
            loop {
                // 50 bytes every 100 ms: 500 bytes a second, each pause within the timeout.
                tokio::time::sleep(Duration::from_millis(100)).await;
                match tokio::io::AsyncReadExt::read(&mut far, &mut chunk).await {
                    Ok(0) | Err(_) => return taken,
                    Ok(n) => taken += n,
                }
            }
        });
        let started = tokio::time::Instant::now();
        let result =
            tokio::time::timeout(Duration::from_secs(20), bounded.write_all(&[b'z'; 1 << 20]))
                .await
                .expect("the write ends by itself");
        assert_eq!(result.unwrap_err().kind(), io::ErrorKind::TimedOut);
        let took = started.elapsed();
        assert!(took < Duration::from_secs(5), "{took:?}");
        drop(bounded);
        assert!(reader.await.unwrap() < 5_000);
    }
}
