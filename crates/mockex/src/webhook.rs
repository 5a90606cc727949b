//! A webhook receiver for tests: takes every request on loopback, keeps it, and answers
//! with the statuses it was told to (then 200), as a chat service or pager would: a 429
//! says when to come back in `Retry-After`, as Slack's does.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::response::IntoResponse;
use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use crate::{lock, wait_for, Error};

/// One request the receiver got.
#[derive(Clone, Debug)]
pub struct Hook {
    /// Path and query, as sent.
    pub path: String,
    /// Headers, names in lowercase.
    pub headers: HeaderMap,
    /// The body, as sent.
    pub body: Vec<u8>,
    /// When it arrived.
    pub at: Instant,
}

/// The `Retry-After` of a 429, in seconds.
pub const RETRY_AFTER_S: u64 = 2;

impl Hook {
    /// A header's value, when present and text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

#[derive(Default)]
struct Received {
    hooks: Vec<Hook>,
    statuses: Vec<u16>,
}

/// A running receiver; stops when dropped.
pub struct WebhookReceiver {
    /// The bound address.
    pub addr: SocketAddr,
    received: Arc<Mutex<Received>>,
    _stop: oneshot::Sender<()>,
}

impl WebhookReceiver {
    /// A URL on the receiver (`http://ADDR` + `path`).
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Everything received so far.
    pub fn hooks(&self) -> Vec<Hook> {
        lock(&self.received).hooks.clone()
    }

    /// Waits (polling, at most `timeout`) until `n` requests came, and returns them all.
    pub fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Hook> {
        wait_for(n, timeout, || self.hooks())
    }

    /// Waits (polling, at most `timeout`) until `n` of the requests came that `keep`
    /// keeps, and returns those.
    pub fn wait_for_kept(
        &self,
        n: usize,
        timeout: Duration,
        keep: impl Fn(&Hook) -> bool,
    ) -> Vec<Hook> {
        wait_for(n, timeout, || {
            self.hooks().into_iter().filter(|hook| keep(hook)).collect()
        })
    }
}

/// Binds `listen` and receives webhooks in a tokio task, answering the first requests
/// with `statuses` in order and every later one with 200.
pub async fn spawn_receiver(
    listen: SocketAddr,
    statuses: Vec<u16>,
) -> Result<WebhookReceiver, Error> {
    let bind = |source| Error::Bind {
        addr: listen,
        source,
    };
    let listener = TcpListener::bind(listen).await.map_err(bind)?;
    let addr = listener.local_addr().map_err(bind)?;
    let received = Arc::new(Mutex::new(Received {
        hooks: Vec::new(),
        statuses,
    }));
    let app = Router::new()
        .fallback(receive)
        .with_state(Arc::clone(&received));
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(async move {
        let served = axum::serve(listener, app).with_graceful_shutdown(async move {
            let _ = stopped.await;
        });
        if let Err(error) = served.await {
            tracing::error!(%error, "webhook receiver stopped");
        }
    });
    Ok(WebhookReceiver {
        addr,
        received,
        _stop: stop,
    })
}

async fn receive(
    State(received): State<Arc<Mutex<Received>>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> impl IntoResponse {
    let mut received = lock(&received);
    received.hooks.push(Hook {
        path: uri
            .path_and_query()
            .map_or_else(|| uri.path().to_owned(), |p| p.as_str().to_owned()),
        headers,
        body: body.to_vec(),
        at: Instant::now(),
    });
    let status = if received.statuses.is_empty() {
        200
    } else {
        received.statuses.remove(0)
    };
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut answer = HeaderMap::new();
    if status == StatusCode::TOO_MANY_REQUESTS {
        answer.insert(header::RETRY_AFTER, RETRY_AFTER_S.into());
    }
    (status, answer)
}
