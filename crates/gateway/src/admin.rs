//! The admin listener: `GET /healthz` and `GET /metrics` (Prometheus), on an address of
//! their own, apart from the bots' listener. Read-only; it holds no key and changes
//! nothing.

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use keygate_audit::AuditLog;
use keygate_monitor::{write_gauge, Metrics};

use crate::registry::Live;
use crate::weight::WeightGauge;
use serde_json::json;
use tokio::sync::oneshot;

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
}

/// The admin endpoints, for tests to drive with `oneshot` and for [`AdminServer`] to serve.
pub fn admin_app(state: AdminState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

/// 200 while the gateway serves; 503 when the audit writer is gone (every order,
/// withdrawal and transfer is then refused) or the last reload of accounts and clients
/// failed (every request is then refused).
async fn healthz(State(state): State<AdminState>) -> impl IntoResponse {
    let monitor_seq = state.metrics.last_seq();
    let problem = if let Some(reason) = state.live.failure() {
        Some(format!(
            "refusing every client: the last reload failed ({reason})"
        ))
    } else if !state.audit.is_writing() {
        Some(
            "the audit writer has stopped: orders, withdrawals and transfers are refused"
                .to_owned(),
        )
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
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
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
                    let served = match tokio::net::TcpListener::from_std(listener) {
                        Ok(listener) => {
                            axum::serve(listener, admin_app(state))
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
