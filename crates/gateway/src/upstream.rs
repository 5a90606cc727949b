//! The exchange side: a pooled HTTPS client, the exchange clock, market prices.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, RwLock};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::uri::{Authority, Scheme};
use http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use keygate_exchanges::Adapter;
use rust_decimal::Decimal;

/// How long a call to the exchange may take before its outcome is unknown.
pub const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a measured clock offset is trusted.
const CLOCK_TTL: Duration = Duration::from_secs(300);

/// An answer from the exchange.
pub struct Response {
    /// HTTP status.
    pub status: StatusCode,
    /// Headers worth passing back (content type, rate limits).
    pub headers: HeaderMap,
    /// Body, as received.
    pub body: Bytes,
}

/// Why the exchange gave no answer.
#[derive(Debug)]
pub enum Failure {
    /// Connecting failed: the request never left.
    Unreachable(String),
    /// The request left but no answer came in time: it may have executed.
    TimedOut,
    /// The upstream URL is not allowed (plain HTTP to a non-loopback host).
    Refused(String),
}

type Connector = hyper_rustls::HttpsConnector<HttpConnector>;
type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;
type Stream = hyper_rustls::MaybeHttpsStream<hyper_util::rt::TokioIo<tokio::net::TcpStream>>;
type Driver = hyper::client::conn::http1::Connection<Stream, Full<Bytes>>;

/// How long an idle upstream connection is kept for reuse.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Idle connections kept per exchange host and worker; more are closed when they free up.
const POOL_MAX_IDLE: usize = 256;

/// The HTTP client to the exchanges, with their clock offsets.
///
/// HTTP/1.1 over rustls (webpki roots), or plain HTTP to loopback only. Connections are
/// kept alive in a small pool of this client's own: a worker thread of the gateway has
/// its own `Upstream`, so a request and the connection carrying it stay on one thread.
pub struct Upstream {
    connector: Connector,
    pool: Mutex<HashMap<Origin, Vec<Idle>>>,
    timeout: Duration,
    offsets: Arc<RwLock<HashMap<String, (i64, Instant)>>>,
}

/// Where a connection goes: scheme and authority.
type Origin = (Scheme, Authority);

/// A keep-alive connection waiting for its next request.
struct Idle {
    connection: Connection,
    since: Instant,
}

/// One HTTP/1.1 connection: the handle that sends requests and the future that moves its
/// bytes. The future is polled by the request using the connection, inside that request's
/// task, rather than by a task of its own: a request then never waits for another task to
/// be scheduled to write it or to hand its answer back.
struct Connection {
    sender: Sender,
    /// `None` once the connection has ended.
    driver: Option<Pin<Box<Driver>>>,
}

impl Connection {
    /// Whether the connection is still usable. An idle connection is not polled, so this
    /// polls it once, which notices an exchange that closed it meanwhile.
    fn is_open(&mut self) -> bool {
        poll_driver(&mut self.driver, &mut Context::from_waker(Waker::noop()));
        self.driver.is_some() && !self.sender.is_closed()
    }
}

/// Runs `work` (a send, a read of the answer) while moving the connection's bytes.
async fn drive<F: Future>(driver: &mut Option<Pin<Box<Driver>>>, work: F) -> F::Output {
    let mut work = std::pin::pin!(work);
    std::future::poll_fn(|cx| {
        poll_driver(driver, cx);
        work.as_mut().poll(cx)
    })
    .await
}

fn poll_driver(driver: &mut Option<Pin<Box<Driver>>>, cx: &mut Context<'_>) {
    if let Some(running) = driver.as_mut() {
        if let Poll::Ready(result) = running.as_mut().poll(cx) {
            if let Err(e) = result {
                tracing::debug!(error = %e, "upstream connection ended");
            }
            *driver = None;
        }
    }
}

impl Upstream {
    /// A client whose calls each take at most `timeout`, answer included.
    ///
    /// Nothing that may have reached the exchange is ever sent again. The one retry is
    /// for a request that provably never left: hyper hands it back when the pooled
    /// connection it was given had closed before a byte of it was written, and it goes
    /// out once on a new connection.
    pub fn new(timeout: Duration) -> Result<Upstream, rustls::Error> {
        let mut tcp = HttpConnector::new();
        tcp.enforce_http(false);
        tcp.set_connect_timeout(Some(Duration::from_secs(5)));
        tcp.set_nodelay(true);
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_webpki_roots(rustls::crypto::ring::default_provider())?
            .https_or_http()
            .enable_http1()
            .wrap_connector(tcp);
        Ok(Upstream {
            connector,
            pool: Mutex::new(HashMap::new()),
            timeout,
            offsets: Arc::new(RwLock::new(HashMap::new())),
        })
    }

    /// The same client with a pool of its own, for one worker thread: a connection's
    /// socket is registered with the runtime that opened it, so a worker that borrowed
    /// another's connection would have each of its wake-ups cross threads. The clock
    /// offsets stay shared.
    pub fn with_own_pool(&self) -> Upstream {
        Upstream {
            connector: self.connector.clone(),
            pool: Mutex::new(HashMap::new()),
            timeout: self.timeout,
            offsets: self.offsets.clone(),
        }
    }

    /// Sends one request to `url` and reads the whole answer. See [`Upstream::new`] for
    /// the one case where a request is sent on a second connection.
    pub async fn send(
        &self,
        method: Method,
        url: &str,
        headers: HeaderMap,
        body: Bytes,
    ) -> Result<Response, Failure> {
        let uri = check_url(url)?;
        let origin = origin(&uri)?;
        let mut request = http::Request::new(Full::new(body));
        *request.method_mut() = method;
        *request.uri_mut() = origin_form(&uri);
        *request.headers_mut() = headers;
        let host = HeaderValue::from_str(origin.1.as_str())
            .map_err(|_| Failure::Refused("upstream host is not a valid header".into()))?;
        request.headers_mut().insert(http::header::HOST, host);

        let (parts, body) =
            match tokio::time::timeout(self.timeout, self.exchange(&uri, &origin, request)).await {
                Ok(result) => result?,
                Err(_) => return Err(Failure::TimedOut),
            };
        let mut headers = HeaderMap::new();
        for (name, value) in &parts.headers {
            let n = name.as_str();
            if n == "content-type" || n.starts_with("x-mbx-") || n == "retry-after" {
                headers.append(name.clone(), value.clone());
            }
        }
        Ok(Response {
            status: parts.status,
            headers,
            body,
        })
    }

    /// One request and its whole answer, on a pooled connection or a new one.
    async fn exchange(
        &self,
        uri: &Uri,
        origin: &Origin,
        mut request: http::Request<Full<Bytes>>,
    ) -> Result<(http::response::Parts, Bytes), Failure> {
        let mut pooled_only = true;
        loop {
            let pooled = if pooled_only {
                self.checkout(origin)
            } else {
                None
            };
            let is_new = pooled.is_none();
            let mut connection = match pooled {
                Some(connection) => connection,
                None => self.connect(uri).await?,
            };
            let Connection { sender, driver } = &mut connection;
            if drive(driver, sender.ready()).await.is_err() {
                if is_new {
                    return Err(Failure::Unreachable("connection closed before use".into()));
                }
                continue; // a pooled connection that closed; nothing was sent on it
            }
            match drive(driver, sender.try_send_request(request)).await {
                Ok(response) => {
                    let (parts, body) = response.into_parts();
                    // Past this point the exchange has the request: any failure means
                    // its outcome is unknown.
                    let body = drive(driver, body.collect())
                        .await
                        .map_err(|_| Failure::TimedOut)?
                        .to_bytes();
                    self.checkin(origin, connection);
                    return Ok((parts, body));
                }
                Err(mut failed) => match failed.take_message() {
                    Some(unsent) if !is_new => {
                        request = unsent;
                        pooled_only = false;
                    }
                    Some(_) => return Err(Failure::Unreachable(failed.into_error().to_string())),
                    None => return Err(Failure::TimedOut),
                },
            }
        }
    }

    /// A live idle connection to `origin`, the most recently used first.
    fn checkout(&self, origin: &Origin) -> Option<Connection> {
        let mut pool = self.pool.lock().unwrap_or_else(|p| p.into_inner());
        let idle = pool.get_mut(origin)?;
        while let Some(mut idle) = idle.pop() {
            if idle.since.elapsed() < POOL_IDLE_TIMEOUT && idle.connection.is_open() {
                return Some(idle.connection);
            }
        }
        None
    }

    /// Keeps a connection whose answer was read in full for the next request.
    fn checkin(&self, origin: &Origin, mut connection: Connection) {
        if !connection.is_open() {
            return;
        }
        let mut pool = self.pool.lock().unwrap_or_else(|p| p.into_inner());
        let idle = match pool.get_mut(origin) {
            Some(idle) => idle,
            None => pool.entry(origin.clone()).or_default(),
        };
        if idle.len() >= POOL_MAX_IDLE {
            // Full: forget the connections that closed or idled out since they came back.
            idle.retain_mut(|c| c.since.elapsed() < POOL_IDLE_TIMEOUT && c.connection.is_open());
        }
        if idle.len() < POOL_MAX_IDLE {
            idle.push(Idle {
                connection,
                since: Instant::now(),
            });
        }
    }

    /// A new connection: TCP, then TLS unless plain HTTP to loopback.
    async fn connect(&self, uri: &Uri) -> Result<Connection, Failure> {
        let stream = tower::ServiceExt::oneshot(self.connector.clone(), uri.clone())
            .await
            .map_err(|e| Failure::Unreachable(e.to_string()))?;
        let (sender, connection) = hyper::client::conn::http1::handshake(stream)
            .await
            .map_err(|e| Failure::Unreachable(e.to_string()))?;
        Ok(Connection {
            sender,
            driver: Some(Box::pin(connection)),
        })
    }

    /// The exchange's clock for `base`: local time corrected by the last measured offset,
    /// measured again when older than five minutes. Falls back to local time. One offset
    /// per base URL: the hosts behind one base share the exchange's clock.
    pub async fn exchange_time_ms<A: Adapter>(
        &self,
        adapter: &A,
        base: &str,
        native_path: &str,
        now_ms: u64,
    ) -> u64 {
        let cached = self
            .offsets
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(base)
            .copied();
        let offset = match cached {
            Some((offset, at)) if at.elapsed() < CLOCK_TTL => offset,
            _ => {
                let url = format!("{base}{}", adapter.time_path(native_path));
                let offset = self.measure_offset(adapter, &url).await.unwrap_or(0);
                self.offsets
                    .write()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(base.to_owned(), (offset, Instant::now()));
                offset
            }
        };
        now_ms.saturating_add_signed(offset)
    }

    async fn measure_offset<A: Adapter>(&self, adapter: &A, url: &str) -> Option<i64> {
        let before = crate::now_ms();
        let response = self
            .send(Method::GET, url, HeaderMap::new(), Bytes::new())
            .await
            .ok()?;
        let after = crate::now_ms();
        let server = adapter.parse_server_time(&response.body)?;
        let midpoint = before + (after - before) / 2;
        Some(server as i64 - midpoint as i64)
    }

    /// The last price of `symbol` from the exchange's public ticker.
    pub async fn price<A: Adapter>(
        &self,
        adapter: &A,
        base: &str,
        native_path: &str,
        symbol: &str,
    ) -> Option<Decimal> {
        let url = format!("{base}{}", adapter.ticker_path(native_path, symbol)?);
        let response = self
            .send(Method::GET, &url, HeaderMap::new(), Bytes::new())
            .await
            .ok()?;
        if !response.status.is_success() {
            return None;
        }
        adapter.parse_ticker_price(&response.body)
    }
}

/// The scheme and authority of a checked URL.
fn origin(uri: &Uri) -> Result<Origin, Failure> {
    match (uri.scheme(), uri.authority()) {
        (Some(scheme), Some(authority)) => Ok((scheme.clone(), authority.clone())),
        _ => Err(Failure::Refused("upstream URL has no host".into())),
    }
}

/// `/path?query` of `uri`, as HTTP/1.1 sends it to an origin server.
fn origin_form(uri: &Uri) -> Uri {
    let mut parts = http::uri::Parts::default();
    parts.path_and_query = uri.path_and_query().cloned();
    // Path and query alone always make a valid URI; "/" if there is none.
    Uri::from_parts(parts).unwrap_or_else(|_| Uri::from_static("/"))
}

/// Parses `url`, allowing plain HTTP only to loopback; everything else must be HTTPS.
fn check_url(url: &str) -> Result<Uri, Failure> {
    let refused =
        || Failure::Refused("upstream must be https:// (plain http only to loopback)".into());
    let uri: Uri = url
        .parse()
        .map_err(|_| Failure::Refused("upstream URL does not parse".into()))?;
    match uri.scheme_str() {
        Some("https") => Ok(uri),
        Some("http") => {
            let host = uri.host().unwrap_or("");
            let host = host.trim_start_matches('[').trim_end_matches(']');
            let loopback = host == "localhost"
                || host
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback());
            if loopback {
                Ok(uri)
            } else {
                Err(refused())
            }
        }
        _ => Err(refused()),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

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
    }

    /// A one-route HTTP server on loopback; counts connections and requests.
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
                    let mut buf = [0u8; 1024];
                    loop {
                        let mut seen = Vec::new();
                        while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                            match stream.read(&mut buf).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => seen.extend_from_slice(&buf[..n]),
                            }
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
                    }
                });
            }
        });
        (url, connections, requests)
    }

    async fn get(upstream: &Upstream, url: &str) -> Result<Response, Failure> {
        upstream
            .send(Method::GET, url, HeaderMap::new(), Bytes::new())
            .await
    }

    #[tokio::test]
    async fn a_request_the_exchange_has_read_is_never_sent_again() {
        let (url, connections, requests) = fake_exchange(Then::Hang).await;
        let upstream = Upstream::new(Duration::from_secs(5)).unwrap();
        assert!(matches!(get(&upstream, &url).await, Err(Failure::TimedOut)));
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

    #[test]
    fn plain_http_only_to_loopback() {
        assert!(check_url("https://api.binance.com/api/v3/time").is_ok());
        assert!(check_url("http://127.0.0.1:9000/api").is_ok());
        assert!(check_url("http://localhost:9000/api").is_ok());
        assert!(check_url("http://[::1]:9000/api").is_ok());
        assert!(check_url("http://api.binance.com/api").is_err());
        assert!(check_url("http://127.0.0.1.evil.com/api").is_err());
        assert!(check_url("ftp://x").is_err());
    }
}
