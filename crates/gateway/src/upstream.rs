//! The exchange side: one pooled HTTPS client, the exchange clock, market prices.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
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

type Connector = hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>;
type HttpsClient = hyper_util::client::legacy::Client<Connector, Full<Bytes>>;

/// The HTTP client to the exchanges, with their clock offsets.
pub struct Upstream {
    http: HttpsClient,
    connector: Connector,
    timeout: Duration,
    offsets: Arc<RwLock<HashMap<String, (i64, Instant)>>>,
}

impl Upstream {
    /// A pooled HTTP/1.1 client over rustls (webpki roots). `timeout` bounds each call,
    /// answer included. The only retry is hyper's for a pooled connection that closed
    /// before the request was written: such a request never left, so it cannot execute
    /// twice. A request that may have been sent is never sent again.
    pub fn new(timeout: Duration) -> Result<Upstream, rustls::Error> {
        let mut tcp = hyper_util::client::legacy::connect::HttpConnector::new();
        tcp.enforce_http(false);
        tcp.set_connect_timeout(Some(Duration::from_secs(5)));
        tcp.set_nodelay(true);
        let tls = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_webpki_roots(rustls::crypto::ring::default_provider())?
            .https_or_http()
            .enable_http1()
            .wrap_connector(tcp);
        Ok(Upstream {
            http: pooled_client(tls.clone()),
            connector: tls,
            timeout,
            offsets: Arc::new(RwLock::new(HashMap::new())),
        })
    }

    /// The same client with a pool of its own, for one worker thread: a pooled
    /// connection is driven by a task on the runtime that opened it, so a worker that
    /// borrowed another's connection would hand every request across threads. The clock
    /// offsets stay shared.
    pub fn with_own_pool(&self) -> Upstream {
        Upstream {
            http: pooled_client(self.connector.clone()),
            connector: self.connector.clone(),
            timeout: self.timeout,
            offsets: self.offsets.clone(),
        }
    }

    /// Sends one request. Never retried.
    pub async fn send(
        &self,
        method: Method,
        url: &str,
        headers: HeaderMap,
        body: Bytes,
    ) -> Result<Response, Failure> {
        let uri = check_url(url)?;
        let mut request = http::Request::new(Full::new(body));
        *request.method_mut() = method;
        *request.uri_mut() = uri;
        *request.headers_mut() = headers;
        let exchange = async {
            let response = self.http.request(request).await.map_err(|e| {
                if e.is_connect() {
                    Failure::Unreachable(e.to_string())
                } else {
                    // The request may have been written: its outcome is unknown.
                    Failure::TimedOut
                }
            })?;
            let (parts, body) = response.into_parts();
            let body = body
                .collect()
                .await
                .map_err(|_| Failure::TimedOut)?
                .to_bytes();
            Ok((parts, body))
        };
        let (parts, body) = match tokio::time::timeout(self.timeout, exchange).await {
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

fn pooled_client(connector: Connector) -> HttpsClient {
    hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(60))
        .build(connector)
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
