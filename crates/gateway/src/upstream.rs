//! The exchange side: a pool of HTTP/1.1 connections (rustls, or plain HTTP to loopback),
//! the exchange clock, market prices.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, Method, StatusCode};
use keygate_core::{Action, Side};
use keygate_exchanges::{Adapter, Quote};
use rust_decimal::Decimal;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;
use zeroize::Zeroizing;

use crate::weight::{Cap, Payer, Pool, Refused, WeightGauge};
use crate::wire::{self, WriteFailure};

/// How long a call to the exchange may take before its outcome is unknown.
pub const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a measured clock offset is trusted.
const CLOCK_TTL: Duration = Duration::from_secs(300);
/// How soon a clock measurement that failed is tried again. Meanwhile the last offset
/// measured stands, or, when there is none, local time.
const CLOCK_RETRY: Duration = Duration::from_secs(10);
/// The longest round trip of a clock sample that is believed: the midpoint it is read at
/// may be off by up to half of it, and an exchange refuses a timestamp more than
/// [`keygate_exchanges::MAX_TIMESTAMP_AHEAD_MS`] ahead of its clock (Binance: -1021).
const MAX_CLOCK_ROUND_TRIP: Duration =
    Duration::from_millis(keygate_exchanges::MAX_TIMESTAMP_AHEAD_MS);
/// How long a ticker or book lookup, what it found or its failure, stands for the orders
/// priced after it: many orders in one symbol within a second cost the exchange one call,
/// not one each, whether the exchange can price that symbol or not.
const PRICE_TTL: Duration = Duration::from_secs(1);
/// The most lookups kept; past it, those older than [`PRICE_TTL`] are dropped.
const PRICES_MAX: usize = 1024;
/// The largest clock offset believed; see [`Upstream::measure_offset`].
const MAX_CLOCK_OFFSET_MS: i64 = 60 * 60 * 1000;
/// How long opening a connection (TCP and TLS) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long an idle upstream connection is kept for reuse: well under the idle timeouts
/// of the exchanges' front servers and load balancers (60 s is common). A connection the
/// server closes just as a request is written on it (its close still on the way, unseen
/// by the peek before reuse) leaves an order's outcome unknown, though it never reached
/// the exchange: a bot on a one-minute loop would meet that on every order (found by
/// review). aiohttp, which ccxt's async clients use, keeps one 15 s too.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(15);
/// Idle connections an [`Upstream`] keeps, over all exchange hosts, unless told otherwise
/// ([`Upstream::with_own_pool`]); more are closed when they free up, the oldest first.
const POOL_MAX_IDLE: usize = 256;

/// An answer from the exchange.
pub struct Response {
    /// HTTP status.
    pub status: StatusCode,
    /// Headers worth passing back (content type, rate limits).
    pub headers: HeaderMap,
    /// Body, as received.
    pub body: Bytes,
}

/// What became of a request given to [`Upstream::send_unless`].
pub(crate) enum Sent<T> {
    /// It was sent, and this is the answer.
    Answered(Response),
    /// It was withheld for this reason before a byte of it was written.
    Withheld(T),
}

/// Why the exchange gave no answer: an outcome each caller tells apart (whether the
/// request may have executed), not an error of the crate's ([`crate::Error`]), so not
/// `#[non_exhaustive]`.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// Connecting failed, or the request could not be written: it never left.
    #[error("the exchange could not be reached: {0}")]
    Unreachable(String),
    /// The request left but no answer came in time: it may have executed.
    #[error("no answer in time")]
    TimedOut,
    /// The request left but its answer was cut short or did not parse: it may have
    /// executed.
    #[error("no answer: {0}")]
    NoAnswer(String),
    /// The upstream URL or request is not allowed (plain HTTP to a non-loopback host, a
    /// header that would change the request's framing).
    #[error("not sent: {0}")]
    Refused(String),
}

/// The HTTP client to the exchanges, with their clock offsets.
///
/// HTTP/1.1 over rustls (webpki roots), or plain HTTP to loopback only. Requests are
/// written by keygate's own HTTP/1.1 code (`wire.rs`), byte for byte as built.
/// Connections are kept alive in a small pool: a worker thread of the gateway has its
/// own `Upstream`, so a request and the connection carrying it stay on one thread.
pub struct Upstream {
    tls: TlsConnector,
    pool: Mutex<HashMap<String, Vec<Idle>>>,
    /// The most idle connections `pool` holds, over all hosts: a bot that goes from one
    /// exchange host to the next leaves a connection idle at each, and each is a file
    /// descriptor that an order's connection may need.
    max_idle: usize,
    timeout: Duration,
    /// The exchange clocks, by base URL.
    clocks: Arc<Mutex<HashMap<String, Arc<Clock>>>>,
    /// Book tickers, shared by every worker.
    prices: Arc<Mutex<Lookups<Quote>>>,
    /// Order books, shared by every worker.
    books: Arc<Mutex<Lookups<Bytes>>>,
    /// What the buys priced at the book and not answered yet will take of each market
    /// (base URL, symbol), shared by every worker: a buy priced meanwhile is priced past
    /// them, not at the book they are about to empty (found by review: five market buys
    /// sent at once were each counted at the top of one book).
    buying: Arc<Mutex<HashMap<(String, String), Decimal>>>,
}

/// The market `symbol` at `base` names in [`Upstream`]'s `buying`: one however its
/// symbol is written (`btcusdt`, `BTCUSDT`), so that buys cannot be spread over spellings.
fn buying_key(base: &str, symbol: &str) -> (String, String) {
    (base.to_owned(), symbol.to_ascii_uppercase())
}

/// What one request's buys will take of the markets they are priced in, held from
/// their pricing until the request is answered (or not sent): dropped, it is handed back
/// ([`Upstream::price_orders`]).
pub struct Buying {
    buying: Arc<Mutex<HashMap<(String, String), Decimal>>>,
    held: Vec<((String, String), Decimal)>,
}

impl Buying {
    /// What this request holds of `market` so far.
    fn held_of(&self, market: &(String, String)) -> Decimal {
        self.held
            .iter()
            .filter(|(held, _)| held == market)
            .fold(Decimal::ZERO, |sum, (_, quantity)| {
                sum.saturating_add(*quantity)
            })
    }

    /// Where a buy of `quantity` in `market`, after `also` of its own request's, fills
    /// the book to: past what the buys on their way hold of it (this request's among
    /// them). When it `takes` the book at once, it is held too, in the same look.
    /// `None` past what a decimal holds.
    fn hold(
        &mut self,
        market: (String, String),
        quantity: Decimal,
        also: Decimal,
        takes: bool,
    ) -> Option<Decimal> {
        let mut buying = self.buying.lock().unwrap_or_else(|p| p.into_inner());
        let held = buying.get(&market).copied().unwrap_or(Decimal::ZERO);
        let through = held.checked_add(also)?.checked_add(quantity)?;
        if takes {
            buying.insert(market.clone(), held.checked_add(quantity)?);
            self.held.push((market, quantity));
        }
        Some(through)
    }
}

impl Drop for Buying {
    fn drop(&mut self) {
        if self.held.is_empty() {
            return;
        }
        let mut buying = self.buying.lock().unwrap_or_else(|p| p.into_inner());
        for (market, quantity) in self.held.drain(..) {
            if let Some(left) = buying.get_mut(&market) {
                *left = left.checked_sub(quantity).unwrap_or(Decimal::ZERO);
                if *left <= Decimal::ZERO {
                    buying.remove(&market);
                }
            }
        }
    }
}

/// What is known of one exchange clock, shared by every worker.
#[derive(Default)]
struct Clock {
    known: Mutex<KnownOffset>,
    /// Held by the one measurement running, so that requests arriving when the offset is
    /// due do not all measure at once.
    measuring: tokio::sync::Mutex<()>,
}

/// The last clock offset measured, and when to measure again.
#[derive(Default)]
struct KnownOffset {
    /// The exchange's clock minus ours, in milliseconds; `None` until a measurement
    /// succeeds.
    offset_ms: Option<i64>,
    /// When the next measurement is due: [`CLOCK_TTL`] after a success, [`CLOCK_RETRY`]
    /// after a failure; `None` (at once) before the first.
    due: Option<Instant>,
    /// When the offset was measured (or last moved), on this host's wall clock (ms since
    /// the epoch) and on its monotonic clock: how far the wall clock was stepped since.
    measured_at: Option<(u64, Instant)>,
    /// When the exchange last refused a timestamp made on the offset
    /// ([`Clock::doubt`]).
    doubted_at: Option<Instant>,
}

/// How far this host's wall clock may move against its monotonic clock between two
/// readings of an offset before it is taken for a step (NTP setting the clock, an
/// operator's `date`): the offset then moves by as much, and is measured again.
const CLOCK_STEP_MS: i64 = 1_000;

impl Clock {
    /// The last offset measured, and whether a measurement is due, at `wall_now_ms` on
    /// this host's wall clock. A wall clock stepped since the offset was measured moves
    /// the offset by the step (the exchange's clock did not move), and makes a
    /// measurement due: an offset kept as it was would date every forwarded request off
    /// by the step until the next measurement, minutes later.
    fn read(&self, wall_now_ms: u64) -> (Option<i64>, bool) {
        let mut known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        if let (Some(offset_ms), Some((wall_then_ms, then))) = (known.offset_ms, known.measured_at)
        {
            let elapsed_ms =
                i64::try_from(now.duration_since(then).as_millis()).unwrap_or(i64::MAX);
            let wall_moved_ms = wall_now_ms as i64 - wall_then_ms as i64;
            let step_ms = wall_moved_ms.saturating_sub(elapsed_ms);
            if step_ms.abs() > CLOCK_STEP_MS {
                known.offset_ms = Some(offset_ms.saturating_sub(step_ms));
                known.measured_at = Some((wall_now_ms, now));
                known.due = None;
            }
        }
        let is_due = known.due.is_none_or(|due| now >= due);
        (known.offset_ms, is_due)
    }

    /// Makes a measurement due at once, the exchange having refused a timestamp made on
    /// the offset: its clock may have moved since the offset was measured (found by
    /// review: an exchange's clock moved, and every order was refused until the offset
    /// was five minutes old). At most once per [`CLOCK_RETRY`]: a request old enough to
    /// be refused for its age is refused whatever the offset.
    fn doubt(&self) {
        let mut known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        if known
            .doubted_at
            .is_some_and(|at| at.elapsed() < CLOCK_RETRY)
        {
            return;
        }
        known.doubted_at = Some(Instant::now());
        known.due = None;
    }

    /// Records a measurement's result, made at `wall_now_ms`. A failure keeps the offset
    /// measured before: the exchange's clock has not moved because its time endpoint did
    /// not answer.
    fn record(&self, measured: Option<i64>, wall_now_ms: u64) {
        let mut known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        let again_in = match measured {
            Some(offset_ms) => {
                known.offset_ms = Some(offset_ms);
                known.measured_at = Some((wall_now_ms, Instant::now()));
                CLOCK_TTL
            }
            None => CLOCK_RETRY,
        };
        known.due = Some(Instant::now() + again_in);
    }
}

/// The last lookup of each (base URL, path and query) made to price orders: what it
/// found (`None` when it failed), and when it was made. Kept for [`PRICE_TTL`], at most
/// [`PRICES_MAX`] of them.
type Lookups<T> = HashMap<(String, String), (Option<T>, Instant)>;

/// What `cache` holds for `key` from the last [`PRICE_TTL`], if anything.
fn fresh<T: Clone>(cache: &Mutex<Lookups<T>>, key: &(String, String)) -> Option<Option<T>> {
    let cache = cache.lock().unwrap_or_else(|p| p.into_inner());
    cache
        .get(key)
        .filter(|(_, at)| at.elapsed() < PRICE_TTL)
        .map(|(found, _)| found.clone())
}

/// Drops what `cache` holds for `key`.
fn forget<T>(cache: &Mutex<Lookups<T>>, key: (String, String)) {
    cache.lock().unwrap_or_else(|p| p.into_inner()).remove(&key);
}

/// Keeps what a lookup of `key` found in `cache` (unless it is full of fresh lookups).
fn remember<T>(cache: &Mutex<Lookups<T>>, key: (String, String), found: Option<T>) {
    let mut cache = cache.lock().unwrap_or_else(|p| p.into_inner());
    if cache.len() >= PRICES_MAX {
        cache.retain(|_, (_, at)| at.elapsed() < PRICE_TTL);
    }
    if cache.len() < PRICES_MAX {
        cache.insert(key, (found, Instant::now()));
    }
}

/// Why a request's orders could not be priced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unpriced {
    /// A lookup would pass the pool's cap for pricing, or its client's share.
    Weight(Refused),
    /// The exchange could not be reached, did not answer, or answered with a server
    /// error: the order could not have been sent either, and may be tried again.
    Unreached,
    /// The exchange asks the address to back off: nothing is sent until then.
    Paused,
    /// The book would price the order on its own, but not past what other requests'
    /// buys on their way will take of it: it may be tried again once they are answered
    /// (found by review: told as an order that can never be priced, which bots do not
    /// send again, though another client's buy, one to be refused, held the book).
    Contended,
}

impl From<Refused> for Unpriced {
    fn from(refused: Refused) -> Unpriced {
        Unpriced::Weight(refused)
    }
}

/// What the lookups that price an order may spend: up to pricing's `cap`, charged to the
/// client whose order it is, within its share ([`Payer`]).
#[derive(Clone, Copy, Debug)]
pub struct Budget<'a> {
    /// Where lookups stop.
    pub cap: Cap,
    /// Who the lookups are charged to.
    pub payer: Payer<'a>,
}

/// A keep-alive connection waiting for its next request.
struct Idle {
    connection: Connection,
    since: Instant,
}

/// One HTTP/1.1 connection and the bytes read from it that are not used yet.
struct Connection {
    stream: Stream,
    buf: BytesMut,
}

/// Plain TCP to loopback, or TLS.
enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl Connection {
    /// Whether the exchange has sent nothing past the answer just read, as far as the
    /// stream knows (bytes already read, decrypted, or reported by the runtime), without a
    /// system call. A connection that fails this is not kept.
    fn is_quiet(&mut self) -> bool {
        if !self.buf.is_empty() {
            return false;
        }
        let mut scratch = [0u8; 64];
        let mut unread = ReadBuf::new(&mut scratch);
        let mut cx = Context::from_waker(Waker::noop());
        Pin::new(&mut self.stream)
            .poll_read(&mut cx, &mut unread)
            .is_pending()
    }

    /// Whether an idle connection can carry a request: the exchange has neither closed it
    /// nor sent anything unasked. An idle connection is not polled, so this asks twice:
    /// the stream ([`Connection::is_quiet`]), then the socket itself, with a peek that
    /// sees what the runtime has not noticed yet.
    fn is_reusable(&mut self) -> bool {
        if !self.is_quiet() {
            return false;
        }
        let mut peeked = [std::mem::MaybeUninit::<u8>::uninit(); 1];
        matches!(
            socket2::SockRef::from(self.stream.tcp()).peek(&mut peeked),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock
        )
    }
}

impl Stream {
    /// The TCP connection underneath.
    fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(s) => s,
            Stream::Tls(s) => s.get_ref().0,
        }
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// Whether an answer header is passed back to the bot: the content type and
/// `Retry-After`, and what the exchange's adapter names (its rate-limit counters).
fn is_passed_back<A: Adapter>(adapter: &A, name: &str) -> bool {
    name.eq_ignore_ascii_case("content-type")
        || name.eq_ignore_ascii_case("retry-after")
        || adapter.passes_back_header(name)
}

/// The scheme and authority of `url` (`https://proxy.example:8443`), without its path:
/// the key of the connection pool (`Target::parse`), and what logs, alerts and metrics
/// name an upstream by. An account's upstream may carry a path (a proxy's), and a path
/// may be a credential.
pub fn origin(url: &str) -> &str {
    let authority_at = url.find("://").map_or(0, |i| i + 3);
    let end = url[authority_at..]
        .find(['/', '?', '#'])
        .map_or(url.len(), |i| authority_at + i);
    &url[..end]
}

impl Upstream {
    /// A client whose calls each take at most `timeout`, answer included.
    ///
    /// Nothing that may have reached the exchange is ever sent again. The one retry is
    /// for a request that provably never left: the pooled connection it was written to
    /// failed before accepting a single byte of it, and it goes out once on a new
    /// connection.
    pub fn new(timeout: Duration) -> Result<Upstream, crate::Error> {
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        Upstream::with_roots(timeout, roots).map_err(|e| crate::Error::Upstream(e.to_string()))
    }

    /// A client that trusts `roots` (the tests' own certificate authority).
    fn with_roots(
        timeout: Duration,
        roots: rustls::RootCertStore,
    ) -> Result<Upstream, rustls::Error> {
        let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Upstream {
            tls: TlsConnector::from(Arc::new(config)),
            pool: Mutex::new(HashMap::new()),
            max_idle: POOL_MAX_IDLE,
            timeout,
            clocks: Arc::new(Mutex::new(HashMap::new())),
            prices: Arc::new(Mutex::new(HashMap::new())),
            books: Arc::new(Mutex::new(HashMap::new())),
            buying: Arc::default(),
        })
    }

    /// The same client with a pool of its own, keeping at most `max_idle` idle
    /// connections (at least one), for one worker thread: a connection's socket is
    /// registered with the runtime that opened it, so a worker that borrowed another's
    /// connection would have each of its wake-ups cross threads. The clock offsets and
    /// prices stay shared.
    pub fn with_own_pool(&self, max_idle: usize) -> Upstream {
        Upstream {
            tls: self.tls.clone(),
            pool: Mutex::new(HashMap::new()),
            max_idle: max_idle.max(1),
            timeout: self.timeout,
            clocks: self.clocks.clone(),
            prices: self.prices.clone(),
            books: self.books.clone(),
            buying: self.buying.clone(),
        }
    }

    /// Sends one request to `url`, on `adapter`'s exchange, and reads the whole answer.
    /// See [`Upstream::new`] for the one case where a request is sent on a second
    /// connection.
    pub async fn send<A: Adapter>(
        &self,
        adapter: &A,
        method: &Method,
        url: &str,
        headers: &[(&'static str, String)],
        body: &[u8],
    ) -> Result<Response, Failure> {
        let never = || None::<std::convert::Infallible>;
        match self
            .send_unless(adapter, method, url, headers, body, never)
            .await?
        {
            Sent::Answered(response) => Ok(response),
            Sent::Withheld(never) => match never {},
        }
    }

    /// As [`Upstream::send`], but asks `withhold` once a new connection is ready, just
    /// before the request is written to it (and again before a second connection, when
    /// the first took none of it): [`Sent::Withheld`], with the reason it gave, when it
    /// gave one, and nothing was sent. Connecting may take seconds, in which what the
    /// request was decided on may change; a pooled connection is taken at once, and not
    /// asked about.
    pub(crate) async fn send_unless<A: Adapter, T>(
        &self,
        adapter: &A,
        method: &Method,
        url: &str,
        headers: &[(&'static str, String)],
        body: &[u8],
        withhold: impl Fn() -> Option<T>,
    ) -> Result<Sent<T>, Failure> {
        let target = Target::parse(url)?;
        // It holds the real API key: wiped when sent, and made large enough at once that
        // no copy is left behind in a smaller allocation.
        let mut request = Zeroizing::new(Vec::with_capacity(wire::encoded_len(
            method,
            target.path_and_query,
            target.authority,
            headers,
            body,
        )));
        wire::encode_request(
            &mut request,
            method,
            target.path_and_query,
            target.authority,
            headers,
            body,
        )
        .map_err(|reason| Failure::Refused(reason.to_owned()))?;
        let keep = |name: &str| is_passed_back(adapter, name);
        let exchange = self.exchange(&target, method, &request, keep, withhold);
        match tokio::time::timeout(self.timeout, exchange).await {
            Ok(result) => result,
            Err(_) => Err(Failure::TimedOut),
        }
    }

    /// One request and its whole answer, on a pooled connection or a new one.
    async fn exchange<T>(
        &self,
        target: &Target<'_>,
        method: &Method,
        request: &[u8],
        keep: impl Fn(&str) -> bool,
        withhold: impl Fn() -> Option<T>,
    ) -> Result<Sent<T>, Failure> {
        let (mut connection, mut is_new) = match self.checkout(target.origin) {
            Some(connection) => (connection, false),
            None => (self.connect(target).await?, true),
        };
        loop {
            // Asked once a new connection is made, which may have taken seconds; a pooled
            // one is taken at once, just after the caller's own last check.
            if let Some(reason) = is_new.then(&withhold).flatten() {
                // Nothing of it was written: the connection is as good as before.
                self.checkin(target.origin, connection);
                return Ok(Sent::Withheld(reason));
            }
            match wire::write_request(&mut connection.stream, request).await {
                Ok(()) => break,
                Err(WriteFailure {
                    accepted_any: false,
                    error,
                }) => {
                    if is_new {
                        return Err(Failure::Unreachable(error.to_string()));
                    }
                    // A pooled connection that failed before taking a byte: the request
                    // never left, so it goes out once more on a new connection.
                    connection = self.connect(target).await?;
                    is_new = true;
                }
                Err(WriteFailure { error, .. }) => {
                    return Err(Failure::NoAnswer(error.to_string()));
                }
            }
        }
        // Past this point the exchange may have the request: any failure means its
        // outcome is unknown.
        let answer = wire::read_answer(&mut connection.stream, &mut connection.buf, method, keep)
            .await
            .map_err(|e| Failure::NoAnswer(e.to_string()))?;
        if answer.keep_alive {
            self.checkin(target.origin, connection);
        }
        Ok(Sent::Answered(Response {
            status: answer.status,
            headers: answer.headers,
            body: answer.body,
        }))
    }

    /// Drops the connections at the front of `idle` (the oldest: each goes back at the
    /// end) that idled out by `now`, without a system call: a burst's extra connections
    /// are not kept until the pool next fills.
    fn forget_idled_out(idle: &mut Vec<Idle>, now: Instant) {
        let stale = idle.partition_point(|c| now.duration_since(c.since) >= POOL_IDLE_TIMEOUT);
        idle.drain(..stale);
    }

    /// A reusable idle connection to `origin`, the most recently used first.
    fn checkout(&self, origin: &str) -> Option<Connection> {
        let mut pool = self.pool.lock().unwrap_or_else(|p| p.into_inner());
        let idle = pool.get_mut(origin)?;
        // One clock read for the whole pool, not one per connection looked at: the
        // search for the idled-out ones alone would read it a few times per request.
        Self::forget_idled_out(idle, Instant::now());
        while let Some(mut idle) = idle.pop() {
            if idle.connection.is_reusable() {
                return Some(idle.connection);
            }
        }
        None
    }

    /// Keeps a connection whose answer was read in full for the next request.
    /// The socket is peeked at when the connection is taken out again, not here.
    fn checkin(&self, origin: &str, mut connection: Connection) {
        if !connection.is_quiet() {
            return;
        }
        // An idle connection holds no buffer: what is left of the last one may share the
        // allocation of the answer it read (a body is split off it), which would then
        // outlive the answer, uncounted by the bound on answers held.
        connection.buf = BytesMut::new();
        let mut pool = self.pool.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let mut held = 0;
        for idle in pool.values_mut() {
            Self::forget_idled_out(idle, now);
            held += idle.len();
        }
        if held >= self.max_idle {
            // Full: the connection idle longest goes, whatever its host. Not peeked at
            // to find closed ones first: that would be a system call per idle connection
            // on every return while the pool stays full.
            let oldest = pool
                .values_mut()
                .filter(|idle| !idle.is_empty())
                .min_by_key(|idle| idle[0].since);
            if let Some(oldest) = oldest {
                oldest.remove(0);
            }
        }
        let idle = match pool.get_mut(origin) {
            Some(idle) => idle,
            None => pool.entry(origin.to_owned()).or_default(),
        };
        idle.push(Idle {
            connection,
            since: now,
        });
    }

    /// A new connection: TCP, then TLS unless plain HTTP to loopback.
    async fn connect(&self, target: &Target<'_>) -> Result<Connection, Failure> {
        let unreachable = |e: &dyn std::fmt::Display| Failure::Unreachable(e.to_string());
        let opened = tokio::time::timeout(CONNECT_TIMEOUT, async {
            let mut addresses: Vec<SocketAddr> =
                tokio::net::lookup_host((target.host, target.port))
                    .await
                    .map_err(|e| unreachable(&e))?
                    .collect();
            if !target.tls {
                // Plain HTTP only to loopback: a name like `localhost` must resolve there.
                addresses.retain(|a| a.ip().is_loopback());
                if addresses.is_empty() {
                    return Err(Failure::Refused(
                        "plain http upstream does not resolve to loopback".into(),
                    ));
                }
            }
            let tcp = TcpStream::connect(&addresses[..])
                .await
                .map_err(|e| unreachable(&e))?;
            // A request goes out in one write; Nagle would only delay it.
            tcp.set_nodelay(true).map_err(|e| unreachable(&e))?;
            if !target.tls {
                return Ok(Stream::Plain(tcp));
            }
            let name = rustls::pki_types::ServerName::try_from(target.host.to_owned())
                .map_err(|e| unreachable(&e))?;
            let tls = self
                .tls
                .connect(name, tcp)
                .await
                .map_err(|e| unreachable(&e))?;
            Ok(Stream::Tls(Box::new(tls)))
        })
        .await
        .map_err(|_| Failure::Unreachable("connecting timed out".into()))??;
        Ok(Connection {
            stream: opened,
            buf: BytesMut::new(),
        })
    }

    /// The exchange's clock for `base`, in milliseconds: local time, read once the offset
    /// is known, corrected by the last offset measured. One offset per base URL: the hosts
    /// behind one base share the exchange's clock.
    ///
    /// The offset is measured again when five minutes old, or ten seconds after a
    /// measurement failed (until then the offset before stands; with none, local time).
    /// One measurement per base URL runs at a time: requests arriving meanwhile use the
    /// offset before, or, when there is none yet, wait for that measurement. None is made
    /// while the exchange asks the address to back off (`weight`, which is told of such an
    /// answer to a measurement).
    pub async fn exchange_time_ms<A: Adapter>(
        &self,
        adapter: &A,
        base: &str,
        native_path: &str,
        weight: &WeightGauge,
    ) -> u64 {
        let offset_ms = self
            .clock_offset_ms(adapter, base, native_path, weight)
            .await;
        // Read only now: a measurement may have taken seconds.
        crate::now_ms().saturating_add_signed(offset_ms.unwrap_or(0))
    }

    /// How far `base`'s clock is ahead of this host's (behind: negative), measured first
    /// if due, as [`Upstream::exchange_time_ms`] corrects by it; `None` when it has not
    /// been measured.
    pub async fn clock_offset_ms<A: Adapter>(
        &self,
        adapter: &A,
        base: &str,
        native_path: &str,
        weight: &WeightGauge,
    ) -> Option<i64> {
        let clock = self.clock(base);
        let (offset_ms, is_due) = clock.read(crate::now_ms());
        let time_path = adapter.time_path(native_path);
        let pool = Pool {
            upstream: base,
            name: adapter.weight_pool(time_path),
        };
        if !is_due || weight.paused(pool).is_some() {
            return offset_ms;
        }
        let _measuring = match clock.measuring.try_lock() {
            Ok(measuring) => measuring,
            Err(_) if offset_ms.is_some() => return offset_ms,
            Err(_) => clock.measuring.lock().await,
        };
        // The measurement waited for, or one that ended since the read above, may have
        // made this one needless.
        let (offset_ms, is_due) = clock.read(crate::now_ms());
        if !is_due {
            return offset_ms;
        }
        let url = format!("{base}{time_path}");
        let measured = self.measure_offset(adapter, &url, pool, weight).await;
        if measured.is_none() {
            tracing::warn!(
                upstream = origin(base),
                path = time_path,
                "the exchange clock could not be measured; the offset measured before \
                 (else local time) stands until it is tried again"
            );
        }
        clock.record(measured, crate::now_ms());
        measured.or(offset_ms)
    }

    /// Measures `base`'s clock again before the next request that needs it, the exchange
    /// having refused a timestamp keygate made on it: at most once every ten seconds.
    pub fn doubt_clock(&self, base: &str) {
        self.clock(base).doubt();
    }

    /// The clock of `base`, shared by every worker.
    fn clock(&self, base: &str) -> Arc<Clock> {
        let mut clocks = self.clocks.lock().unwrap_or_else(|p| p.into_inner());
        match clocks.get(base) {
            Some(clock) => clock.clone(),
            None => clocks.entry(base.to_owned()).or_default().clone(),
        }
    }

    /// The exchange's clock minus ours, in milliseconds, from the quicker of two samples
    /// on one connection. `None` if it cannot be had, if even the quicker round trip took
    /// longer than [`MAX_CLOCK_ROUND_TRIP`], or if it is beyond [`MAX_CLOCK_OFFSET_MS`]:
    /// an exchange whose clock is an hour off is more likely an answer misread.
    ///
    /// The first call usually opens a connection (the pool keeps one idle for a minute,
    /// an offset stands for five), and the DNS, TCP and TLS setup it waits for would put
    /// half its time into the offset, so forwarded timestamps would run ahead of the
    /// exchange. The second goes over the connection the first left in the pool.
    async fn measure_offset<A: Adapter>(
        &self,
        adapter: &A,
        url: &str,
        pool: Pool<'_>,
        weight: &WeightGauge,
    ) -> Option<i64> {
        let first = self.clock_sample(adapter, url, pool, weight).await?;
        let quicker = match self.clock_sample(adapter, url, pool, weight).await {
            Some(second) if second.round_trip < first.round_trip => second,
            _ => first,
        };
        let believed = quicker.round_trip <= MAX_CLOCK_ROUND_TRIP
            && quicker.offset_ms.abs() <= MAX_CLOCK_OFFSET_MS;
        believed.then_some(quicker.offset_ms)
    }

    /// One reading of the exchange's clock at `url`, taken to be at the midpoint of the
    /// round trip.
    async fn clock_sample<A: Adapter>(
        &self,
        adapter: &A,
        url: &str,
        pool: Pool<'_>,
        weight: &WeightGauge,
    ) -> Option<ClockSample> {
        let sent = Instant::now();
        let sent_ms = i64::try_from(crate::now_ms()).ok()?;
        let response = self.send(adapter, &Method::GET, url, &[], b"").await.ok()?;
        let round_trip = sent.elapsed();
        weight.note_answer(adapter, pool, &response, None);
        if !response.status.is_success() {
            return None;
        }
        let server_ms = i64::try_from(adapter.parse_server_time(&response.body)?).ok()?;
        let round_trip_ms = i64::try_from(round_trip.as_millis()).ok()?;
        let offset_ms = server_ms.checked_sub(sent_ms.checked_add(round_trip_ms / 2)?)?;
        Some(ClockSample {
            offset_ms,
            round_trip,
        })
    }

    /// The market price of `symbol` (its best ask and what is offered there, from the
    /// exchange's public book ticker: see [`Adapter::parse_ticker_price`]), by a lookup at
    /// most a second old; `Ok(None)` when the exchange answered without one (a symbol it
    /// does not list), which stands as long as a price does; `Err` when it could not be
    /// reached or answered with a server error, which is not kept.
    ///
    /// A lookup is a public call: it reserves its estimated weight in `weight` and is not
    /// made while the weight used and reserved reach the budget's cap, or the client it
    /// is charged to its share (`Err`, as a public call is refused); the weight the
    /// exchange reports for it goes to `weight`, as a forwarded request's does.
    pub async fn price<A: Adapter>(
        &self,
        adapter: &A,
        base: &str,
        native_path: &str,
        symbol: &str,
        weight: &WeightGauge,
        budget: Budget<'_>,
    ) -> Result<Option<Quote>, Unpriced> {
        let Some(path) = adapter.ticker_path(native_path, symbol) else {
            return Ok(None);
        };
        let key = (base.to_owned(), path);
        if let Some(price) = fresh(&self.prices, &key) {
            return Ok(price);
        }
        let price = self
            .public_lookup(adapter, base, &key.1, weight, budget)
            .await?
            .and_then(|body| adapter.parse_ticker_price(&body, symbol));
        remember(&self.prices, key, price);
        Ok(price)
    }

    /// Forgets the markets the orders of `action`, about to be sent to `native_path` at
    /// `base`, will move, and returns their symbols, to be forgotten again once it is
    /// answered (a look made meanwhile saw the book before it). A buy that fills at once
    /// (at the market, pegged to the asks, a limit or a modification to a price at or
    /// above the best ask kept) moves the book: the next order in its symbol is priced
    /// from a fresh look, not from the book this one empties (found by review). A limit
    /// buy that rests on the book leaves it; one sent with no best ask kept to tell is
    /// taken to cross.
    pub fn forget_markets_moved<A: Adapter>(
        &self,
        adapter: &A,
        base: &str,
        native_path: &str,
        action: &Action,
    ) -> Vec<String> {
        let mut moved = Vec::new();
        for order in action.orders() {
            let Some(symbol) = order.symbol.as_deref() else {
                continue;
            };
            let modified_buy = order.side == Some(Side::Buy) && order.endpoint.starts_with("PUT ");
            if !adapter.takes_the_book(order) && !modified_buy {
                continue;
            }
            let at_market = order.stated_notional().is_none()
                || order
                    .order_type
                    .as_deref()
                    .is_some_and(|t| t.eq_ignore_ascii_case("MARKET"));
            // A modification names its new price as a trigger would (it names no type).
            let limit = if at_market {
                None
            } else {
                order.price.or(order.trigger_price)
            };
            if self.forget_market(adapter, base, native_path, symbol, limit) {
                moved.push(symbol.to_owned());
            }
        }
        moved
    }

    /// Forgets the best ask and the book of `symbol` in `native_path`'s market at `base`,
    /// so that the next order in it is priced from a fresh look, for a buy at the market
    /// (`limit` `None`) or a limit buy at or above the best ask kept; with no best ask kept
    /// to tell, the book (which may outlive it) is forgotten all the same. Returns whether
    /// the buy may cross, so that they are forgotten again once it is answered.
    pub fn forget_market<A: Adapter>(
        &self,
        adapter: &A,
        base: &str,
        native_path: &str,
        symbol: &str,
        limit: Option<Decimal>,
    ) -> bool {
        let Some(ticker) = adapter.ticker_path(native_path, symbol) else {
            return false;
        };
        let key = (base.to_owned(), ticker);
        let kept = fresh(&self.prices, &key).flatten();
        let crosses = match (limit, kept) {
            (None, _) => true,
            (Some(limit), Some(quote)) => quote.price <= limit,
            (Some(_), None) => false,
        };
        if crosses {
            forget(&self.prices, key);
        }
        if crosses || kept.is_none() {
            if let Some(path) = adapter.depth_path(native_path, symbol) {
                forget(&self.books, (base.to_owned(), path));
            }
        }
        crosses || kept.is_none()
    }

    /// The book of the market of `path` (`depth_path`, at `base`), by a lookup at most a
    /// second old, weighed as [`Upstream::price`]'s; `Ok(None)` when the exchange answered
    /// without one (an outage is an `Err`, not kept). Kept like
    /// the book ticker (found by review: looked up for every request, a client's market
    /// buys, each denied, spent the weight that prices every client's orders, several
    /// times its rate).
    async fn book<A: Adapter>(
        &self,
        adapter: &A,
        base: &str,
        depth_path: String,
        weight: &WeightGauge,
        budget: Budget<'_>,
    ) -> Result<Option<Bytes>, Unpriced> {
        let key = (base.to_owned(), depth_path);
        if let Some(book) = fresh(&self.books, &key) {
            return Ok(book);
        }
        let book = self
            .public_lookup(adapter, base, &key.1, weight, budget)
            .await?;
        remember(&self.books, key, book.clone());
        Ok(book)
    }

    /// The price `order` is counted at in `market` (see [`Upstream::price_orders`]): its
    /// best ask, or for a buy priced at the book more than the best ask offers, the ask up
    /// to which the book fills it after what other requests' buys on their way and those
    /// before it in this request will take. One that takes the book at once is held in
    /// `buying` (before anything is awaited, so that buys priced together each see the
    /// others). The book is looked up once per request and symbol, by a lookup at most a
    /// second old ([`Upstream::book`]), as the best ask is; `Ok(None)` when it cannot be
    /// had or holds less.
    // Each argument is a piece of the lookup's state; a struct would only rename them.
    #[allow(clippy::too_many_arguments)]
    async fn market_price<A: Adapter>(
        &self,
        adapter: &A,
        base: &str,
        native_path: &str,
        order: &Action,
        market: &mut Market<'_>,
        buying: &mut Buying,
        weight: &WeightGauge,
        budget: Budget<'_>,
    ) -> Result<Option<Decimal>, Unpriced> {
        let Some(quote) = market.quote else {
            return Ok(None);
        };
        let Some(quantity) = order.quantity.filter(|_| adapter.priced_at_the_book(order)) else {
            return Ok(Some(quote.price));
        };
        let takes = adapter.takes_the_book(order);
        let key = buying_key(base, market.symbol);
        // What this request's own buys in the market take, this one included: what it
        // would be priced at were nothing else on its way.
        let Some(own) = buying
            .held_of(&key)
            .checked_add(market.triggered)
            .and_then(|own| own.checked_add(quantity))
        else {
            return Ok(None);
        };
        let Some(through) = buying.hold(key, quantity, market.triggered, takes) else {
            return Ok(None);
        };
        // A buy that fills when it triggers takes nothing now: the later ones of this
        // request are priced past it, others' are not.
        if !takes {
            market.triggered = market.triggered.saturating_add(quantity);
        }
        if through <= quote.size {
            return Ok(Some(quote.price));
        }
        if market.book.is_none() {
            let book = match adapter.depth_path(native_path, market.symbol) {
                Some(path) => self.book(adapter, base, path, weight, budget).await?,
                None => None,
            };
            market.book = Some(book);
        }
        let Some(book) = market.book.as_ref().and_then(Option::as_ref) else {
            return Ok(None);
        };
        match adapter.parse_depth_price(book, through) {
            // A buy that becomes a market buy at its trigger fills from the ask then up:
            // the book is taken to stand as far above its trigger as it stands above the
            // best ask now (found by review: counted at the higher of the two, short by
            // the depth past the trigger).
            Some(walked) if order.market_buy_when_triggered => {
                let above_the_ask = order
                    .trigger_price
                    .and_then(|trigger| trigger.checked_sub(quote.price))
                    .unwrap_or(Decimal::ZERO)
                    .max(Decimal::ZERO);
                Ok(walked.max(quote.price).checked_add(above_the_ask))
            }
            Some(walked) => Ok(Some(walked.max(quote.price))),
            None if through > own && adapter.parse_depth_price(book, own).is_some() => {
                Err(Unpriced::Contended)
            }
            None => Ok(None),
        }
    }

    /// One public call keygate makes for itself (`path_and_query` at `base`): the body of
    /// a successful answer; `Ok(None)` for a client error's; [`Unpriced::Paused`] while
    /// the exchange asks the address to back off (nothing is sent then), or when the
    /// answer asks it to; [`Unpriced::Unreached`] without an answer, or with a server
    /// error's. Its estimated weight is reserved in `weight` first (and charged to the
    /// budget's payer, who gets it back if nothing was sent), and refused at the budget's
    /// cap or the payer's share.
    async fn public_lookup<A: Adapter>(
        &self,
        adapter: &A,
        base: &str,
        path_and_query: &str,
        weight: &WeightGauge,
        budget: Budget<'_>,
    ) -> Result<Option<Bytes>, Unpriced> {
        let (path, query) = path_and_query
            .split_once('?')
            .unwrap_or((path_and_query, ""));
        let estimate = adapter.public_weight(path, query);
        let pool = Pool {
            upstream: base,
            name: adapter.weight_pool(path),
        };
        if weight.paused(pool).is_some() {
            return Err(Unpriced::Paused);
        }
        // Settled once the answer's weight is recorded; else its estimate counts as spent.
        let now_ms = crate::now_ms();
        let (reservation, charge) =
            weight.reserve_pricing(budget.payer, pool, budget.cap, estimate, now_ms)?;
        let url = format!("{base}{path_and_query}");
        match self.send(adapter, &Method::GET, &url, &[], b"").await {
            Ok(response) => {
                weight.note_answer(adapter, pool, &response, Some(reservation));
                if weight.paused(pool).is_some() {
                    return Err(Unpriced::Paused);
                }
                if response.status.is_server_error() {
                    return Err(Unpriced::Unreached);
                }
                Ok(response.status.is_success().then_some(response.body))
            }
            Err(Failure::Unreachable(_) | Failure::Refused(_)) => {
                // Nothing was sent: neither the address nor the client spent anything.
                reservation.release();
                charge.refund();
                Err(Unpriced::Unreached)
            }
            Err(Failure::TimedOut | Failure::NoAnswer(_)) => Err(Unpriced::Unreached),
        }
    }

    /// The notional of each order of `action` ([`Action::orders`]: a batch's, or the
    /// action itself), in order: stated where the request bounds it, else priced at the
    /// market price of its symbol ([`Upstream::price`], asked once per symbol and for at
    /// most [`Adapter::max_priced_symbols`] symbols); `None` where neither is known.
    ///
    /// A buy priced at the market (a market buy, a limit buy pegged to the asks) may
    /// fill at once, from the best ask up: one of more than the best ask offers is priced
    /// at the ask up to which the exchange's book (asked once per symbol) fills it, after
    /// the buys on their way in that symbol (other requests' and those before it in this
    /// one), which take the cheaper asks first; it is held as taking what it buys until
    /// the request ends (the [`Buying`] returned). A buy that becomes a market buy when it
    /// triggers ([`Adapter::priced_at_the_book`]) is priced at the book the same way, and
    /// held as taking nothing. Refused as [`Unpriced::Contended`] when the book would
    /// price an order alone but not past what other requests hold of it. A modification
    /// and a test that places nothing are priced at the best ask (or their trigger, when
    /// higher).
    ///
    /// All of it within the upstream timeout, as one request to the exchange is: past
    /// it, the order is left unreached, and what it held of the book goes (found by
    /// review: five symbols' lookups, each just within it, held other clients' market
    /// buys as contended for close to a minute).
    pub async fn price_orders<A: Adapter>(
        &self,
        adapter: &A,
        base: &str,
        native_path: &str,
        action: &Action,
        weight: &WeightGauge,
        budget: Budget<'_>,
    ) -> Result<(Vec<Option<Decimal>>, Buying), Unpriced> {
        let pricing = self.price_each_order(adapter, base, native_path, action, weight, budget);
        tokio::time::timeout(self.timeout, pricing)
            .await
            .unwrap_or(Err(Unpriced::Unreached))
    }

    /// [`Upstream::price_orders`], without its bound on time.
    async fn price_each_order<A: Adapter>(
        &self,
        adapter: &A,
        base: &str,
        native_path: &str,
        action: &Action,
        weight: &WeightGauge,
        budget: Budget<'_>,
    ) -> Result<(Vec<Option<Decimal>>, Buying), Unpriced> {
        let mut markets: Vec<Market<'_>> = Vec::new();
        // Made first: whatever it holds is handed back however pricing ends.
        let mut buying = Buying {
            buying: Arc::clone(&self.buying),
            held: Vec::new(),
        };
        let mut notionals = Vec::with_capacity(action.orders().len());
        for order in action.orders() {
            let notional = match (order.stated_notional(), order.symbol.as_deref()) {
                (Some(stated), _) => Some(stated),
                (None, Some(symbol)) => {
                    let market = match markets.iter().position(|m| m.symbol == symbol) {
                        Some(known) => Some(&mut markets[known]),
                        // Past the bound, an order is left unpriced, and so denied.
                        None if markets.len() >= adapter.max_priced_symbols() => None,
                        None => {
                            let quote = self
                                .price(adapter, base, native_path, symbol, weight, budget)
                                .await?;
                            markets.push(Market {
                                symbol,
                                quote,
                                triggered: Decimal::ZERO,
                                book: None,
                            });
                            markets.last_mut()
                        }
                    };
                    match market {
                        Some(market) => self
                            .market_price(
                                adapter,
                                base,
                                native_path,
                                order,
                                market,
                                &mut buying,
                                weight,
                                budget,
                            )
                            .await?
                            .and_then(|price| order.priced_notional(price)),
                        None => None,
                    }
                }
                (None, None) => None,
            };
            notionals.push(notional.map(|n| n.normalize()));
        }
        Ok((notionals, buying))
    }
}

/// What pricing one request's orders has learnt of a symbol's market.
struct Market<'a> {
    symbol: &'a str,
    /// Its book ticker; `None` when the lookup failed.
    quote: Option<Quote>,
    /// What the request's buys that fill when they trigger, priced at the book so far,
    /// will take of it then.
    triggered: Decimal,
    /// Its book, once asked for; `None` inside when that lookup failed.
    book: Option<Option<Bytes>>,
}

/// One reading of an exchange clock.
struct ClockSample {
    /// The exchange's clock minus ours, in milliseconds.
    offset_ms: i64,
    round_trip: Duration,
}

/// Where a request goes, from a checked URL.
#[derive(Debug, PartialEq)]
struct Target<'a> {
    /// `scheme://authority`: the pool key.
    origin: &'a str,
    tls: bool,
    /// `host[:port]`, as the `Host` header carries it.
    authority: &'a str,
    /// The host to connect to and to verify the certificate of, without IPv6 brackets.
    host: &'a str,
    port: u16,
    /// `/path?query`, as HTTP/1.1 sends it to an origin server.
    path_and_query: &'a str,
}

impl<'a> Target<'a> {
    /// Parses `url`, allowing plain HTTP only to loopback; everything else must be HTTPS.
    /// The authority is a host name or IP address and an optional port, nothing else.
    fn parse(url: &'a str) -> Result<Target<'a>, Failure> {
        let refused =
            || Failure::Refused("upstream must be https:// (plain http only to loopback)".into());
        let bad = || Failure::Refused("upstream URL does not parse".into());
        let (tls, rest) = if let Some(rest) = url.strip_prefix("https://") {
            (true, rest)
        } else if let Some(rest) = url.strip_prefix("http://") {
            (false, rest)
        } else {
            return Err(refused());
        };
        let authority_len = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, path_and_query) = rest.split_at(authority_len);
        let (host, port) = match authority.strip_prefix('[') {
            Some(v6) => {
                let (host, after) = v6.split_once(']').ok_or_else(bad)?;
                host.parse::<std::net::Ipv6Addr>().map_err(|_| bad())?;
                match after {
                    "" => (host, None),
                    _ => (host, Some(after.strip_prefix(':').ok_or_else(bad)?)),
                }
            }
            None => match authority.split_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (authority, None),
            },
        };
        let host_ok = !host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b':');
        if !host_ok {
            return Err(bad());
        }
        let port = match port {
            Some(port) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => {
                match port.parse::<u16>() {
                    Ok(0) | Err(_) => return Err(bad()),
                    Ok(port) => port,
                }
            }
            Some(_) => return Err(bad()),
            None if tls => 443,
            None => 80,
        };
        let loopback =
            host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
        if !tls && !loopback {
            return Err(refused());
        }
        let path_and_query = match path_and_query {
            "" => "/",
            p if p.starts_with('?') => return Err(bad()),
            p => p,
        };
        Ok(Target {
            origin: origin(url),
            tls,
            authority,
            host,
            port,
            path_and_query,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    /// What the fake exchange does once it has read a request.
    #[derive(Clone, Copy)]
    enum Then {
        /// Answers and closes the connection.
        AnswerAndClose,
        /// Closes the connection without answering.
        Hang,
        /// Answers every request and keeps the connection open.
        KeepAlive,
        /// Answers, then sends bytes nobody asked for and keeps the connection open.
        AnswerThenJunk,
    }

    /// A one-route HTTP server on loopback; counts connections and requests.
    /// Reads one request head off `stream`; `None` once the stream ends.
    async fn read_head(stream: &mut TcpStream) -> Option<Vec<u8>> {
        let mut buf = [0u8; 1024];
        let mut seen = Vec::new();
        while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
        }
        Some(seen)
    }

    async fn fake_exchange(then: Then) -> (String, Arc<AtomicUsize>, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/api/v3/time", listener.local_addr().unwrap());
        let (connections, requests) =
            (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let (c, r) = (connections.clone(), requests.clone());
        tokio::spawn(async move {
            loop {
                let (mut stream, _) = listener.accept().await.unwrap();
                c.fetch_add(1, Ordering::SeqCst);
                let r = r.clone();
                tokio::spawn(async move {
                    loop {
                        if read_head(&mut stream).await.is_none() {
                            return;
                        }
                        r.fetch_add(1, Ordering::SeqCst);
                        if let Then::Hang = then {
                            return;
                        }
                        let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}";
                        if stream.write_all(answer).await.is_err() {
                            return;
                        }
                        if let Then::AnswerAndClose = then {
                            return;
                        }
                        if let Then::AnswerThenJunk = then {
                            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\n").await;
                        }
                    }
                });
            }
        });
        (url, connections, requests)
    }

    async fn get(upstream: &Upstream, url: &str) -> Result<Response, Failure> {
        upstream
            .send(&keygate_exchanges::Binance, &Method::GET, url, &[], b"")
            .await
    }

    /// Found by review: a request was checked (its client still active) before a new
    /// connection was opened, which may take seconds, and sent however the client
    /// changed meanwhile. The last check comes once the connection is ready.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_request_withheld_once_connected_sends_nothing() {
        let (url, connections, requests) = fake_exchange(Then::KeepAlive).await;
        let upstream = Upstream::new(Duration::from_secs(5)).unwrap();
        let asked_when_connected = AtomicUsize::new(0);
        let sent = upstream.send_unless(
            &keygate_exchanges::Binance,
            &Method::GET,
            &url,
            &[],
            b"",
            || {
                // The connection is open by now (the server counts it once accepted).
                std::thread::sleep(Duration::from_millis(50));
                asked_when_connected.store(connections.load(Ordering::SeqCst), Ordering::SeqCst);
                Some(())
            },
        );
        assert!(matches!(sent.await, Ok(Sent::Withheld(()))));
        assert_eq!(asked_when_connected.load(Ordering::SeqCst), 1);
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(requests.load(Ordering::SeqCst), 0, "nothing was sent");
        // The connection, which took nothing, carries the next request.
        assert!(get(&upstream, &url).await.is_ok());
        assert_eq!(connections.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_request_the_exchange_has_read_is_never_sent_again() {
        let (url, connections, requests) = fake_exchange(Then::Hang).await;
        let upstream = Upstream::new(Duration::from_secs(5)).unwrap();
        assert!(matches!(
            get(&upstream, &url).await,
            Err(Failure::NoAnswer(_))
        ));
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(requests.load(Ordering::SeqCst), 1);
        assert_eq!(connections.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_pooled_connection_the_exchange_closed_is_replaced() {
        let (url, connections, requests) = fake_exchange(Then::AnswerAndClose).await;
        let upstream = Upstream::new(Duration::from_secs(5)).unwrap();
        for _ in 0..3 {
            let answer = get(&upstream, &url).await.ok().unwrap();
            assert_eq!(answer.status, StatusCode::OK);
            assert_eq!(&answer.body[..], b"{}");
        }
        assert_eq!(requests.load(Ordering::SeqCst), 3);
        assert_eq!(connections.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn a_pooled_connection_with_unasked_bytes_is_not_reused() {
        let (url, connections, requests) = fake_exchange(Then::AnswerThenJunk).await;
        let upstream = Upstream::new(Duration::from_secs(5)).unwrap();
        for _ in 0..3 {
            let answer = get(&upstream, &url).await.ok().unwrap();
            assert_eq!(&answer.body[..], b"{}");
            // Let the junk arrive; no task polls the idle connection meanwhile.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(requests.load(Ordering::SeqCst), 3);
        assert_eq!(connections.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn keep_alive_connections_are_reused() {
        let (url, connections, requests) = fake_exchange(Then::KeepAlive).await;
        let upstream = Upstream::new(Duration::from_secs(5)).unwrap();
        for _ in 0..5 {
            assert_eq!(
                get(&upstream, &url).await.ok().unwrap().status,
                StatusCode::OK
            );
        }
        assert_eq!(requests.load(Ordering::SeqCst), 5);
        assert_eq!(connections.load(Ordering::SeqCst), 1);
    }

    /// A regression test: an idle connection kept what was left of its read buffer,
    /// which may share the last answer's allocation; and idle connections past their
    /// timeout stayed until the pool next filled, however long that took.
    #[tokio::test]
    async fn idle_connections_hold_no_buffer_and_idle_out() {
        let (url, connections, _) = fake_exchange(Then::KeepAlive).await;
        let upstream = Upstream::new(Duration::from_secs(5)).unwrap();
        let (a, b, c) = tokio::join!(
            get(&upstream, &url),
            get(&upstream, &url),
            get(&upstream, &url)
        );
        assert!(a.is_ok() && b.is_ok() && c.is_ok());
        assert_eq!(connections.load(Ordering::SeqCst), 3);
        let origin = {
            let pool = upstream.pool.lock().unwrap();
            let (origin, idle) = pool.iter().next().unwrap();
            assert_eq!(idle.len(), 3);
            assert!(idle.iter().all(|i| i.connection.buf.capacity() == 0));
            origin.clone()
        };
        {
            let mut pool = upstream.pool.lock().unwrap();
            for idle in &mut pool.get_mut(&origin).unwrap()[..2] {
                idle.since = Instant::now()
                    .checked_sub(POOL_IDLE_TIMEOUT + Duration::from_secs(1))
                    .unwrap();
            }
        }
        assert!(get(&upstream, &url).await.is_ok());
        assert_eq!(upstream.pool.lock().unwrap()[&origin].len(), 1);
    }

    /// Found by review: idle connections were bounded per exchange host only, so a bot
    /// going from one host to the next left one idle at each, open files that the
    /// orders of bots already connected may need. The bound is over all hosts; the
    /// connection idle longest goes first.
    #[tokio::test]
    async fn idle_connections_are_bounded_over_all_hosts() {
        let upstream = Upstream::new(Duration::from_secs(5))
            .unwrap()
            .with_own_pool(2);
        let (spot, spot_connections, _) = fake_exchange(Then::KeepAlive).await;
        let (futures, _, _) = fake_exchange(Then::KeepAlive).await;
        let (margin, _, _) = fake_exchange(Then::KeepAlive).await;
        for url in [&spot, &futures, &margin] {
            assert!(get(&upstream, url).await.is_ok());
        }
        let held = |upstream: &Upstream| -> usize {
            upstream.pool.lock().unwrap().values().map(Vec::len).sum()
        };
        assert_eq!(held(&upstream), 2);
        // The spot connection, idle longest, was closed: the next spot call opens one.
        assert!(get(&upstream, &spot).await.is_ok());
        assert_eq!(spot_connections.load(Ordering::SeqCst), 2);
        assert_eq!(held(&upstream), 2);
    }

    /// A budget of bot1's under a cap of 200 with 100 held back, and no share of its own.
    fn open_budget() -> Budget<'static> {
        Budget {
            cap: Cap {
                held_back: 100,
                pool: 200,
            },
            payer: Payer {
                client: "bot1",
                share: u64::MAX,
                pricing_share: u64::MAX,
                read_share: u64::MAX,
            },
        }
    }

    /// A regression test: a ticker lookup that failed was not remembered, so each order
    /// in a symbol the exchange does not list had keygate call the ticker again.
    #[tokio::test]
    async fn a_failed_price_lookup_stands_like_a_price() {
        // Its answer, `{}`, names no price.
        let (url, _, requests) = fake_exchange(Then::KeepAlive).await;
        let base = url.trim_end_matches("/api/v3/time");
        let upstream = Upstream::new(Duration::from_secs(5)).unwrap();
        let weight = WeightGauge::default();
        let binance = keygate_exchanges::Binance;
        let budget = open_budget();
        let price =
            |symbol| upstream.price(&binance, base, "/api/v3/order", symbol, &weight, budget);
        for _ in 0..3 {
            assert_eq!(price("ZZZZ1USDT").await, Ok(None));
        }
        assert_eq!(requests.load(Ordering::SeqCst), 1);
        // With the pool's weight at its cap by the exchange's count, no lookup is made.
        let spot = Pool {
            upstream: base,
            name: "/api",
        };
        weight.record(spot, 200, crate::now_ms());
        assert!(price("ZZZZ2USDT").await.is_err());
        assert_eq!(requests.load(Ordering::SeqCst), 1);
    }

    /// Found by review: each lookup that prices an order was bounded by the upstream
    /// timeout, but not all of them together, so an order in five symbols, each looked up
    /// just within it, held other clients' market buys as contended for close to a
    /// minute. Two lookups of 300 ms each, within a timeout of 500 ms, leave it unreached.
    #[tokio::test]
    async fn pricing_an_order_is_bounded_as_one_request_is() {
        let exchange = FakeClock::default();
        exchange.answer_ms.store(300, Ordering::SeqCst);
        let base = exchange.serve().await;
        let upstream = Upstream::new(Duration::from_millis(500)).unwrap();
        let batch = r#"[{"symbol":"BTCUSDT","side":"BUY","type":"MARKET","quantity":"1"},{"symbol":"ETHUSDT","side":"BUY","type":"MARKET","quantity":"1"}]"#;
        let body = format!(
            "batchOrders={}&timestamp=1&signature=00",
            percent_encoding::utf8_percent_encode(batch, percent_encoding::NON_ALPHANUMERIC)
        );
        let path = "/fapi/v1/batchOrders";
        let action = keygate_exchanges::binance::SignedRequest::parse(
            "",
            body.as_bytes(),
            Some("application/x-www-form-urlencoded"),
        )
        .unwrap()
        .classify("POST", path);
        assert_eq!(action.orders().len(), 2);
        let budget = open_budget();
        let binance = keygate_exchanges::Binance;
        let weight = WeightGauge::default();
        let priced = upstream
            .price_orders(&binance, &base, path, &action, &weight, budget)
            .await;
        assert!(matches!(priced, Err(Unpriced::Unreached)));
        assert!(exchange.requests() <= 2);
    }

    /// A fake exchange clock on loopback: answers every request with `{"serverTime": …}`
    /// on kept-alive connections, as Binance's `GET /api/v3/time` does.
    #[derive(Clone, Default)]
    struct FakeClock {
        /// Its clock minus the machine's, in milliseconds.
        offset_ms: Arc<AtomicI64>,
        /// How long the first answer on each new connection is held back before the
        /// clock is read: the time opening a connection (DNS, TCP, TLS) takes before a
        /// request reaches the exchange.
        setup_ms: Arc<AtomicU64>,
        /// How long each answer takes; the clock is read halfway through.
        answer_ms: Arc<AtomicU64>,
        /// Answers 503 without a time.
        failing: Arc<AtomicBool>,
        requests: Arc<AtomicUsize>,
    }

    impl FakeClock {
        /// A clock `offset_ms` ahead of the machine's.
        fn ahead_by(offset_ms: i64) -> FakeClock {
            let clock = FakeClock::default();
            clock.offset_ms.store(offset_ms, Ordering::SeqCst);
            clock
        }

        /// Serves, and returns the base URL.
        async fn serve(&self) -> String {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let base = format!("http://{}", listener.local_addr().unwrap());
            let clock = self.clone();
            tokio::spawn(async move {
                while let Ok((stream, _)) = listener.accept().await {
                    tokio::spawn(clock.clone().answer(stream));
                }
            });
            base
        }

        async fn answer(self, mut stream: TcpStream) {
            let ms = |v: &AtomicU64| Duration::from_millis(v.load(Ordering::SeqCst));
            let mut first = true;
            loop {
                if read_head(&mut stream).await.is_none() {
                    return;
                }
                self.requests.fetch_add(1, Ordering::SeqCst);
                if std::mem::take(&mut first) {
                    tokio::time::sleep(ms(&self.setup_ms)).await;
                }
                let half = ms(&self.answer_ms) / 2;
                tokio::time::sleep(half).await;
                let offset = self.offset_ms.load(Ordering::SeqCst);
                let now = crate::now_ms().saturating_add_signed(offset);
                tokio::time::sleep(half).await;
                let answer = if self.failing.load(Ordering::SeqCst) {
                    let body = r#"{"code":-1001,"msg":"Internal error"}"#;
                    format!(
                        "HTTP/1.1 503 Service Unavailable\r\ncontent-length: {}\r\n\r\n{body}",
                        body.len()
                    )
                } else {
                    let body = format!(r#"{{"serverTime":{now}}}"#);
                    format!(
                        "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
                        body.len()
                    )
                };
                if stream.write_all(answer.as_bytes()).await.is_err() {
                    return;
                }
            }
        }

        fn requests(&self) -> usize {
            self.requests.load(Ordering::SeqCst)
        }
    }

    /// Makes the clock of `base` due for a measurement, as five minutes would.
    fn make_due(upstream: &Upstream, base: &str) {
        upstream.clock(base).known.lock().unwrap().due = Some(Instant::now());
    }

    /// Asserts that `ms` is `expected_ms`, give or take `slack_ms`.
    #[track_caller]
    fn assert_near(ms: i64, expected_ms: i64, slack_ms: i64) {
        assert!(
            ms.abs_diff(expected_ms) <= slack_ms.unsigned_abs(),
            "{ms} is not within {slack_ms} ms of {expected_ms}"
        );
    }

    /// The clock offset `upstream` measures at `url`.
    async fn measure(upstream: &Upstream, url: &str) -> Option<i64> {
        let pool = Pool {
            upstream: url,
            name: "/api",
        };
        let weight = WeightGauge::default();
        upstream
            .measure_offset(&keygate_exchanges::Binance, url, pool, &weight)
            .await
    }

    /// The exchange time `upstream` gives for `base`, minus the machine's time right after.
    async fn time_ahead_ms(upstream: &Upstream, base: &str) -> i64 {
        let binance = keygate_exchanges::Binance;
        let exchange = upstream
            .exchange_time_ms(&binance, base, "/api/v3/order", &WeightGauge::default())
            .await;
        exchange as i64 - crate::now_ms() as i64
    }

    /// A regression test: the clock's round trip was timed from before connecting, and
    /// a new connection is the usual case (an offset stands five minutes, an idle
    /// connection one). Half of the connection's setup went into the offset, and
    /// forwarded timestamps ran ahead of the exchange's clock by it.
    #[tokio::test]
    async fn connection_setup_does_not_count_in_the_clock_offset() {
        let clock = FakeClock::ahead_by(30_000);
        clock.setup_ms.store(800, Ordering::SeqCst);
        let base = clock.serve().await;
        let upstream = Upstream::new(Duration::from_secs(5)).unwrap();
        let url = format!("{base}/api/v3/time");
        let offset = measure(&upstream, &url).await.unwrap();
        assert_near(offset, 30_000, 100);
    }

    /// A regression test: a clock sample was believed however long its round trip, and
    /// the midpoint it is read at may be off by half of it.
    #[tokio::test]
    async fn a_clock_sample_with_a_long_round_trip_is_not_believed() {
        let clock = FakeClock::ahead_by(30_000);
        clock.answer_ms.store(
            MAX_CLOCK_ROUND_TRIP.as_millis() as u64 + 200,
            Ordering::SeqCst,
        );
        let base = clock.serve().await;
        let upstream = Upstream::new(Duration::from_secs(5)).unwrap();
        let url = format!("{base}/api/v3/time");
        assert_eq!(measure(&upstream, &url).await, None);
        assert!(clock.requests() >= 1);
    }

    /// A regression test: the exchange time was local time read before the clock was
    /// measured, and so old by as long as the measurement took.
    #[tokio::test]
    async fn the_exchange_time_is_read_once_the_clock_is_measured() {
        let clock = FakeClock::ahead_by(30_000);
        // Two samples of 400 ms each: the old reading would be 800 ms behind.
        clock.answer_ms.store(400, Ordering::SeqCst);
        let base = clock.serve().await;
        let upstream = Upstream::new(Duration::from_secs(5)).unwrap();
        assert_near(time_ahead_ms(&upstream, &base).await, 30_000, 200);
        assert_eq!(clock.requests(), 2);
    }

    /// A regression test: a failed clock measurement was cached as offset 0 for the five
    /// minutes a good one stands, in place of the offset measured before.
    /// From a review: the offset was kept for five minutes whatever the host's clock did,
    /// so a clock stepped back 20 s dated every forwarded order 20 s off, and the exchange
    /// refused them (-1021) until the next measurement.
    #[test]
    fn a_wall_clock_step_moves_the_offset_and_makes_a_measurement_due() {
        let clock = Clock {
            known: Mutex::default(),
            measuring: tokio::sync::Mutex::new(()),
        };
        let wall = 1_000_000_000;
        clock.record(Some(250), wall);
        assert_eq!(clock.read(wall + 20), (Some(250), false));
        // The wall clock stepped back 20 s, the monotonic one did not.
        assert_eq!(clock.read(wall - 20_000), (Some(20_250), true));
        // Once: the next reading is from the stepped clock.
        assert_eq!(clock.read(wall - 19_990), (Some(20_250), true));
        clock.record(Some(20_240), wall - 19_980);
        assert_eq!(clock.read(wall - 19_970), (Some(20_240), false));
    }

    #[tokio::test]
    async fn a_failed_clock_measurement_keeps_the_last_offset_and_is_retried_soon() {
        let clock = FakeClock::ahead_by(30_000);
        let base = clock.serve().await;
        let upstream = Upstream::new(Duration::from_secs(5)).unwrap();
        assert_near(time_ahead_ms(&upstream, &base).await, 30_000, 200);
        assert_eq!(clock.requests(), 2);

        clock.failing.store(true, Ordering::SeqCst);
        make_due(&upstream, &base);
        assert_near(time_ahead_ms(&upstream, &base).await, 30_000, 200);
        // One sample failed, so there was no second; the next try is in ten seconds, not
        // five minutes, and not at once.
        assert_eq!(clock.requests(), 3);
        let due = upstream.clock(&base).known.lock().unwrap().due.unwrap();
        let retry_in = due.saturating_duration_since(Instant::now());
        assert!(
            retry_in <= CLOCK_RETRY && retry_in > CLOCK_RETRY / 2,
            "{retry_in:?}"
        );
        assert_near(time_ahead_ms(&upstream, &base).await, 30_000, 200);
        assert_eq!(clock.requests(), 3);

        // Once the exchange answers again, the retry measures anew.
        clock.failing.store(false, Ordering::SeqCst);
        clock.offset_ms.store(40_000, Ordering::SeqCst);
        make_due(&upstream, &base);
        assert_near(time_ahead_ms(&upstream, &base).await, 40_000, 200);
        assert_eq!(clock.requests(), 5);
    }

    /// A regression test: every request that found the offset due measured the clock
    /// itself, so a burst of requests when it expired was a burst of clock calls.
    #[tokio::test]
    async fn concurrent_requests_share_one_clock_measurement() {
        const REQUESTS: usize = 8;
        let clock = FakeClock::ahead_by(30_000);
        clock.answer_ms.store(300, Ordering::SeqCst);
        let base = clock.serve().await;
        let upstream = Arc::new(Upstream::new(Duration::from_secs(5)).unwrap());
        let at_once = || {
            let mut requests = tokio::task::JoinSet::new();
            for _ in 0..REQUESTS {
                let (upstream, base) = (upstream.clone(), base.clone());
                requests.spawn(async move { time_ahead_ms(&upstream, &base).await });
            }
            requests.join_all()
        };
        // No offset yet: all wait for the one measurement, and use what it measured.
        for ahead in at_once().await {
            assert_near(ahead, 30_000, 200);
        }
        assert_eq!(clock.requests(), 2);

        // An offset that is due: one request measures, and the others, meanwhile, use
        // the offset before.
        clock.offset_ms.store(40_000, Ordering::SeqCst);
        make_due(&upstream, &base);
        let ahead = at_once().await;
        assert_eq!(clock.requests(), 4);
        let measured = ahead.iter().filter(|a| a.abs_diff(40_000) <= 200).count();
        let before = ahead.iter().filter(|a| a.abs_diff(30_000) <= 200).count();
        assert!(measured >= 1 && before >= 1, "{ahead:?}");
        assert_eq!(measured + before, REQUESTS, "{ahead:?}");
    }

    #[tokio::test]
    async fn answers_come_back_over_verified_tls_on_kept_alive_connections() {
        let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        let cert = certified.cert.der().clone();
        let key =
            rustls::pki_types::PrivateKeyDer::Pkcs8(certified.key_pair.serialize_der().into());
        let server = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], key)
        .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let heads = Arc::new(Mutex::new(Vec::<String>::new()));
        let seen = heads.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (acceptor, seen) = (acceptor.clone(), seen.clone());
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let mut buf = [0u8; 1024];
                    let mut head = Vec::new();
                    while let Ok(n @ 1..) = tls.read(&mut buf).await {
                        head.extend_from_slice(&buf[..n]);
                        if head.ends_with(b"\r\n\r\n") {
                            seen.lock()
                                .unwrap()
                                .push(String::from_utf8_lossy(&head).into());
                            head.clear();
                            let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}";
                            if tls.write_all(answer).await.is_err() {
                                return;
                            }
                        }
                    }
                });
            }
        });
        let url = format!("https://localhost:{port}/api/v3/time");
        let mut roots = rustls::RootCertStore::empty();
        roots.add(cert).unwrap();
        let upstream = Upstream::with_roots(Duration::from_secs(5), roots).unwrap();
        for _ in 0..2 {
            let answer = get(&upstream, &url).await.ok().unwrap();
            assert_eq!(answer.status, StatusCode::OK);
            assert_eq!(&answer.body[..], b"{}");
        }
        assert_eq!(
            *heads.lock().unwrap(),
            vec![
                format!(
                    "GET /api/v3/time HTTP/1.1\r\nhost: localhost:{port}\r\naccept-encoding: identity\r\n\r\n"
                );
                2
            ]
        );
        // The certificate is not one the webpki roots vouch for: nothing is sent.
        let strict = Upstream::new(Duration::from_secs(5)).unwrap();
        assert!(matches!(
            get(&strict, &url).await,
            Err(Failure::Unreachable(_))
        ));
        assert_eq!(heads.lock().unwrap().len(), 2);
    }

    #[test]
    fn only_content_type_and_rate_limit_headers_are_passed_back() {
        let is_passed_back = |name| is_passed_back(&keygate_exchanges::Binance, name);
        for name in [
            "Content-Type",
            "X-MBX-USED-WEIGHT-1M",
            "x-mbx-order-count-10s",
            "X-SAPI-USED-IP-WEIGHT-1M",
            "x-sapi-used-uid-weight-1m",
            "Retry-After",
        ] {
            assert!(is_passed_back(name), "{name}");
        }
        for name in [
            "set-cookie",
            "server",
            "x-sapi-other",
            "x-sapi-used",
            "x-mbx",
            "x-cache",
            "content-length",
            "X-MBX-APIKEY",
        ] {
            assert!(!is_passed_back(name), "{name}");
        }
    }

    #[test]
    fn plain_http_only_to_loopback() {
        let check = |url| Target::parse(url).is_ok();
        assert!(check("https://api.binance.com/api/v3/time"));
        assert!(check("http://127.0.0.1:9000/api"));
        assert!(check("http://localhost:9000/api"));
        assert!(check("http://[::1]:9000/api"));
        assert!(!check("http://api.binance.com/api"));
        assert!(!check("http://127.0.0.1.evil.com/api"));
        assert!(!check("http://user@127.0.0.1/api"));
        assert!(!check("https://api.binance.com:99999/api"));
        assert!(!check("https://api.binance.com:+443/api"));
        assert!(!check("https://api.binance.com:0/api"));
        assert!(!check("http://[::1]evil.example/api"));
        assert!(!check("http://[::1]@evil.example/api"));
        assert!(!check("ftp://x"));
    }

    #[test]
    fn urls_split_into_origin_host_and_target() {
        assert_eq!(
            Target::parse("https://api.binance.com/api/v3/order?symbol=BTCUSDT").ok(),
            Some(Target {
                origin: "https://api.binance.com",
                tls: true,
                authority: "api.binance.com",
                host: "api.binance.com",
                port: 443,
                path_and_query: "/api/v3/order?symbol=BTCUSDT",
            })
        );
        assert_eq!(
            Target::parse("http://[::1]:9000").ok(),
            Some(Target {
                origin: "http://[::1]:9000",
                tls: false,
                authority: "[::1]:9000",
                host: "::1",
                port: 9000,
                path_and_query: "/",
            })
        );
    }
}
