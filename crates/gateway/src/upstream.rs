//! The exchange side: one pooled HTTPS client, the exchange clock, market prices.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode};
use keygate_exchanges::binance;
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

/// The HTTP client to the exchanges, with their clock offsets.
pub struct Upstream {
    http: reqwest::Client,
    offsets: Mutex<HashMap<String, (i64, Instant)>>,
}

impl Upstream {
    /// A client with rustls, pooled connections and no automatic retries (reqwest never
    /// retries a request that was sent).
    pub fn new(timeout: Duration) -> Result<Upstream, reqwest::Error> {
        let http = reqwest::Client::builder()
            .use_rustls_tls()
            .timeout(timeout)
            .connect_timeout(Duration::from_secs(5))
            .pool_idle_timeout(Duration::from_secs(60))
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Upstream {
            http,
            offsets: Mutex::new(HashMap::new()),
        })
    }

    /// Sends one request. Never retried.
    pub async fn send(
        &self,
        method: Method,
        url: &str,
        headers: HeaderMap,
        body: Bytes,
    ) -> Result<Response, Failure> {
        check_url(url)?;
        let result = self
            .http
            .request(method, url)
            .headers(headers)
            .body(body)
            .send()
            .await;
        let response = match result {
            Ok(r) => r,
            Err(e) if e.is_connect() => return Err(Failure::Unreachable(e.to_string())),
            Err(e) if e.is_timeout() => return Err(Failure::TimedOut),
            Err(e) => return Err(Failure::Unreachable(e.to_string())),
        };
        let status = response.status();
        let mut headers = HeaderMap::new();
        for (name, value) in response.headers() {
            let n = name.as_str();
            if n == "content-type" || n.starts_with("x-mbx-") || n == "retry-after" {
                headers.append(name.clone(), value.clone());
            }
        }
        match response.bytes().await {
            Ok(body) => Ok(Response {
                status,
                headers,
                body,
            }),
            Err(e) if e.is_timeout() => Err(Failure::TimedOut),
            Err(e) => Err(Failure::Unreachable(e.to_string())),
        }
    }

    /// The exchange's clock for `base`: local time corrected by the last measured offset,
    /// measured again when older than five minutes. Falls back to local time.
    pub async fn exchange_time_ms(&self, base: &str, native_path: &str, now_ms: u64) -> u64 {
        let key = format!("{base}{}", binance::time_path(native_path));
        let cached = self
            .offsets
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
            .copied();
        let offset = match cached {
            Some((offset, at)) if at.elapsed() < CLOCK_TTL => offset,
            _ => {
                let offset = self.measure_offset(&key).await.unwrap_or(0);
                self.offsets
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(key, (offset, Instant::now()));
                offset
            }
        };
        now_ms.saturating_add_signed(offset)
    }

    async fn measure_offset(&self, url: &str) -> Option<i64> {
        let before = crate::now_ms();
        let response = self
            .send(Method::GET, url, HeaderMap::new(), Bytes::new())
            .await
            .ok()?;
        let after = crate::now_ms();
        let server = binance::parse_server_time(&response.body)?;
        let midpoint = before + (after - before) / 2;
        Some(server as i64 - midpoint as i64)
    }

    /// The last price of `symbol` from the public ticker.
    pub async fn price(&self, base: &str, native_path: &str, symbol: &str) -> Option<Decimal> {
        let safe = symbol.bytes().all(|b| b.is_ascii_alphanumeric());
        if !safe {
            return None;
        }
        let url = format!(
            "{base}{}?symbol={symbol}",
            binance::ticker_path(native_path)
        );
        let response = self
            .send(Method::GET, &url, HeaderMap::new(), Bytes::new())
            .await
            .ok()?;
        if !response.status.is_success() {
            return None;
        }
        binance::parse_ticker_price(&response.body)
    }
}

/// Plain HTTP only to loopback; everything else must be HTTPS.
fn check_url(url: &str) -> Result<(), Failure> {
    if url.starts_with("https://") {
        return Ok(());
    }
    if let Some(rest) = url.strip_prefix("http://") {
        let host = rest.split(['/', '?']).next().unwrap_or("");
        let host = host.rsplit_once(':').map_or(host, |(h, _)| h);
        let loopback = host == "localhost"
            || host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
            || host == "[::1]";
        if loopback {
            return Ok(());
        }
    }
    Err(Failure::Refused(
        "upstream must be https:// (plain http only to loopback)".into(),
    ))
}

#[cfg(test)]
mod tests {
    use super::check_url;

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
