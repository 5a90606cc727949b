//! keygate's HTTP gateway.
//!
//! A bot calls `http://HOST:PORT/<exchange>/<native path>` (today `/binance/…`) exactly as
//! it would call the exchange, with its virtual key. `handle` in this file is the whole
//! request path, top to bottom, written once against `keygate_exchanges::Adapter`:
//!
//! 1. route (by the path's API family, or by a Binance host named in it) and refuse
//!    anything ambiguous (path tricks, method overrides, big bodies, a body on a GET or
//!    HEAD);
//! 2. authenticate: the client by its API key, its signature over the raw bytes, the
//!    timestamp window (checked again before forwarding, should keygate's own calls to
//!    the exchange have outlasted it);
//! 3. classify what the request would do, check who may call at all (status, expiry,
//!    source address), and only then use up its signature in the replay cache (a read's
//!    for its own endpoint, anything else's for every request), so that a captured
//!    request sent first from a foreign address spends nothing (unknown endpoints are
//!    denied; a read is refused while large answers to signed requests pile up for slow
//!    clients, see `answers.rs`);
//! 4. decide against the client's policy;
//! 5. audit: durably, before forwarding, for trades, cancels, withdrawals and transfers;
//! 6. re-sign with the real key and forward, never retrying; return the answer as it came.
//!
//! Public market data needs no key: nothing authenticates or decides it (steps 2 and 4),
//! it is audited like the rest (a call asking the exchange's clock is answered with
//! keygate's own, which judges the timestamps, and not sent), and it pauses while the
//! exchange reports its request weight used past a cap, which is kept for signed
//! requests. So do signed reads (step 3) and the ticker calls keygate makes itself to
//! price orders (step 4), each at a higher cap (see `weight.rs`); orders, cancels,
//! withdrawals and transfers never do.
//! Public data is also refused while large answers held for slow clients reach
//! [`ClientLimits::max_answer_bytes`].
//!
//! Denials answer in the exchange's own error shape (for Binance,
//! `{"code": -2015, "msg": "keygate: …"}`).
//!
//! This crate owns no storage and no crypto of its own: accounts and clients come from
//! `keygate-store` through a [`registry::Live`] view that reloads within a second of any
//! change, decisions from `keygate-policy`, signatures from `keygate-exchanges`.
//!
//! [`Server`] runs the gateway, as `keygate serve` does, on one worker thread per core,
//! over plain HTTP or, with [`Server::start_tls`] and a [`ListenerCertificate`] (which a
//! renewed certificate replaces while it serves), HTTPS. The
//! [`admin`] module serves `/healthz` and Prometheus `/metrics` on a listener of its own.
//! What the log cannot tell of itself (it cannot be written; a reload left every client
//! refused) is raised as an alert through a `keygate_monitor::Alerter`
//! ([`Gateway::with_alerter`]).
//!
//! ```no_run
//! # fn run(gateway: keygate_gateway::Gateway) -> std::io::Result<()> {
//! let addr = "127.0.0.1:8080".parse().expect("a valid address");
//! let server = keygate_gateway::Server::start(addr, 2, &gateway)?;
//! println!("listening on http://{}/binance", server.local_addr());
//! server.shutdown()
//! # }
//! ```

pub mod admin;
mod answers;
mod caps;

pub use answers::AnswersHeld;
pub use caps::signed_read_weight_cap;
pub mod registry;
mod replay;
pub use replay::{TakenEarlier, MAX_FINGERPRINTS, MAX_FINGERPRINTS_PER_CLIENT};
mod server;
mod tls;
pub mod upstream;
pub mod weight;
// Private but for its entry point for fuzzing (`fuzz/fuzz_targets/wire_answer.rs`).
#[cfg(feature = "fuzzing")]
pub mod wire;
#[cfg(not(feature = "fuzzing"))]
mod wire;

pub use rustls::ServerConfig as TlsConfig;
pub use server::Server;
pub use tls::{Certified, ListenerCertificate};

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::{Body, HttpBody as _};
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use ipnet::IpNet;
use keygate_audit::AuditLog;
use keygate_core::{
    Action, ActionKind, BatchOrder, ClientStatus, Denial, Event, EventBody, OrderRef, OrderTerms,
    Outcome, OutcomeEvent, RequestEvent, Rule,
};
use keygate_exchanges::{Adapter, Binance, ClientKey, ClientRequest, Refusal, Route};
use keygate_monitor::{Alert, AlertRule, Alerter, Severity};
use keygate_policy::{DailyReservation, Decider};
use rand::Rng;
use rust_decimal::Decimal;

use crate::answers::{AnswerBudget, Caller};
use crate::caps::{cap_for, over_share, payer, weight_paused, HeldBack};
use crate::registry::{AccountEntry, ClientEntry, Live, Registry, Verifier};
use crate::replay::ReplayCache;
use crate::upstream::{Budget, Failure, Sent, Unpriced, Upstream};
use crate::weight::{Charge, Pool, Reservation, WeightGauge};

/// Largest request body accepted, in bytes. Binance's own requests are far smaller.
pub const MAX_REQUEST_BODY_BYTES: usize = 64 * 1024;
/// How long a trade waits for its audit event to become durable.
const AUDIT_DEADLINE: Duration = Duration::from_secs(5);

/// What a client may hold of the gateway, so that slow or numerous connections cannot
/// starve the bots.
#[derive(Clone, Copy, Debug)]
pub struct ClientLimits {
    /// How long a client may take to send a request's headers, and then its body; also
    /// how long a kept-alive connection may wait idle for its next request. Past it the
    /// connection is closed (a body that is late is refused and audited first).
    pub timeout: Duration,
    /// Connections open at once over all workers; more are closed as they arrive. Of
    /// them, addresses no client may call from (outside every allow list) hold half at
    /// most, all together, so that the bots' addresses keep the rest.
    pub max_connections: usize,
    /// Connections open at once from one address, so that one source cannot hold them
    /// all; more from it are closed as they arrive. Trusted proxies are exempt (every
    /// bot behind one shares its address); they count against `max_connections` only.
    pub max_connections_per_source: usize,
    /// Idle connections to the exchanges kept for reuse, over all workers and exchange
    /// hosts (each worker keeps its share); when more free up, the one idle longest is
    /// closed. Each is an open file, as a bot's connection is.
    pub max_idle_exchange_connections: usize,
    /// Public market data, which needs no key, is refused once the calls held back for
    /// their weight (public data, signed reads and test orders, the lookups that price
    /// orders) have spent this much request weight in the current minute, so that it
    /// cannot spend the weight signed requests need. The ticker calls that price clients'
    /// orders go on to half as much again (up to 2000), and signed reads halfway to that:
    /// no client's reads can keep others' orders from being priced. Near the exchange's
    /// limit by its own count, whoever spent it, all three stop too ([`weight::Cap`]).
    /// Orders, cancels,
    /// withdrawals and transfers are not refused for the weight others used, only once
    /// their own client's requests pass its share of the pool in a minute (the exchange's
    /// limit less this cap and a tenth; test orders are weighed as reads).
    pub public_weight_cap: u64,
    /// Large answers (16 KiB and more) held until their last byte is written to their
    /// client, in bytes over all connections: at this or more, public market data is
    /// refused (429, rule `answer_backlog`), and signed reads too once answers to signed
    /// requests alone hold this much. Orders, cancels, withdrawals and transfers are
    /// never refused for it. See `answers.rs` for what it bounds and what it does not.
    pub max_answer_bytes: usize,
    /// Fingerprints of one client's signed requests the replay cache holds inside their
    /// windows, two a request ([`MAX_FINGERPRINTS_PER_CLIENT`], an eighth of all
    /// it holds, by default): past it the client's requests are refused (429) until
    /// windows end, so that one leaked key cannot fill the cache for every client. At
    /// most [`MAX_FINGERPRINTS`]. For benchmarks that send every request as one
    /// client; `keygate serve` keeps the default.
    pub max_fingerprints_per_client: usize,
    /// Let public data, pricing and signed reads use a pool's weight up to the caps
    /// alone, past what the exchange's adapter keeps for orders, cancels and
    /// reconciliation ([`Adapter::shared_weight_limit`]). For benchmarks against a
    /// simulator that reports more weight than any exchange allows; `keygate serve`
    /// never sets it, since a leaked key's orders could then go unchecked.
    pub spend_weight_kept_for_reconciliation: bool,
}

impl Default for ClientLimits {
    /// 30 seconds, as nginx gives a client to send its headers; 1024 connections, 256 from
    /// one address; 512 idle connections to the exchanges; public
    /// calls paused from 1200 weight a minute (a fifth of Binance's spot limit of 6000,
    /// half of its futures limit of 2400), so signed reads from 1500 and pricing from
    /// 1800; 256 MiB of large answers held for clients.
    fn default() -> ClientLimits {
        ClientLimits {
            timeout: Duration::from_secs(30),
            max_connections: 1024,
            max_connections_per_source: 256,
            max_idle_exchange_connections: 512,
            public_weight_cap: 1200,
            max_answer_bytes: 256 * 1024 * 1024,
            max_fingerprints_per_client: MAX_FINGERPRINTS_PER_CLIENT,
            spend_weight_kept_for_reconciliation: false,
        }
    }
}

/// An error starting the gateway.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The HTTP client could not be built.
    #[error("cannot build the upstream HTTP client: {0}")]
    Upstream(String),
    /// The listener's certificate or private key is refused.
    #[error("TLS for the listener: {0}")]
    Tls(String),
}

/// Everything the request path needs. All of it is shared by every request, but for the
/// pool of upstream connections, which each worker thread of a [`Server`] has its own.
pub struct Gateway {
    live: Arc<Live>,
    decider: Arc<Decider>,
    audit: AuditLog,
    upstream: Upstream,
    replay: Arc<ReplayCache>,
    weight: Arc<WeightGauge>,
    trusted_proxies: Arc<[IpNet]>,
    limits: ClientLimits,
    /// Large answers held for clients, over all workers.
    answers: Arc<AnswerBudget>,
    binance: Binance,
    alerter: Option<Alerter>,
    /// When the last audit-unavailable alert was raised (ms; 0 for never).
    audit_alerted_ms: Arc<AtomicU64>,
}

impl Gateway {
    /// A gateway over `live` accounts and clients, writing to `audit`. `X-Forwarded-For`
    /// is believed only from peers in `trusted_proxies`.
    /// `upstream_timeout` bounds each exchange call ([`upstream::UPSTREAM_TIMEOUT`] in
    /// production); past it the outcome is unknown and the call is never retried.
    ///
    /// Replays are caught by one gateway's memory of the signatures it saw: it refuses
    /// every request signed before it was made (answered as stale), and vouches for the
    /// rest. So one gateway at a time serves a vault, and one made to take over from
    /// another is made no sooner than [`keygate_exchanges::MAX_TIMESTAMP_AHEAD_MS`] after
    /// that one stopped, by which time what it took signed ahead of its clock has come
    /// of age (`keygate serve` holds a lock on the home and waits so).
    pub fn new(
        live: Arc<Live>,
        audit: AuditLog,
        trusted_proxies: Vec<IpNet>,
        upstream_timeout: Duration,
    ) -> Result<Gateway, Error> {
        Ok(Gateway {
            live,
            decider: Arc::new(Decider::new()),
            audit,
            upstream: Upstream::new(upstream_timeout)?,
            replay: Arc::new(ReplayCache::new(now_ms())),
            weight: Arc::default(),
            trusted_proxies: trusted_proxies.into(),
            limits: ClientLimits::default(),
            answers: AnswerBudget::new(ClientLimits::default().max_answer_bytes),
            binance: Binance,
            alerter: None,
            audit_alerted_ms: Arc::default(),
        })
    }

    /// The same gateway with other [`ClientLimits`] than the defaults.
    pub fn with_client_limits(mut self, limits: ClientLimits) -> Gateway {
        let per_client = limits.max_fingerprints_per_client;
        match Arc::get_mut(&mut self.replay) {
            Some(replay) => replay.hold_per_client(per_client),
            // Shared already (never, as gateways are made): one of its own, made now.
            None => {
                let mut replay = ReplayCache::new(now_ms());
                replay.hold_per_client(per_client);
                self.replay = Arc::new(replay);
            }
        }
        self.limits = limits;
        self.answers = AnswerBudget::new(limits.max_answer_bytes);
        self
    }

    /// The large answers held for slow clients, for the admin listener's metrics.
    pub fn answers_held(&self) -> AnswersHeld {
        AnswersHeld(Arc::clone(&self.answers))
    }

    /// The request weight each exchange host reported used this minute, by base URL, for
    /// the admin listener's metrics.
    pub fn weight_gauge(&self) -> Arc<WeightGauge> {
        Arc::clone(&self.weight)
    }

    /// Refuses the requests signed at the times `taken` holds (as signed before keygate
    /// started), which a keygate that ran before could have taken: so that a captured
    /// request it took is not taken again by this one when this host's clock was set
    /// back across the restart. Before the first request.
    pub fn refuse_taken_earlier(&self, taken: TakenEarlier) {
        self.replay.refuse_taken_earlier(taken);
    }

    /// Counts an earlier request toward today's limits, as it was counted when it was
    /// decided: pass today's events from the audit log before serving, so that a restart
    /// does not give every client a fresh daily allowance.
    pub fn count_earlier(&self, event: &keygate_core::Event) {
        self.decider.count_earlier(event, now_ms());
    }

    /// The same gateway, raising alerts through `alerter` that the log cannot raise itself:
    /// when the audit log cannot be written (at most one a minute), and when an exchange
    /// asks keygate's address to back off (`exchange_back_off`, through its weight gauge).
    pub fn with_alerter(mut self, alerter: Alerter) -> Gateway {
        self.weight.alert_through(alerter.clone());
        self.alerter = Some(alerter);
        self
    }

    /// Appends a request's event as its lane says.
    fn append_event(&self, event: Event, lane: AuditLane) {
        match lane {
            AuditLane::Kept => self.audit.append_kept(event),
            AuditLane::Client => self.audit.append(event),
            AuditLane::Unattributed => self.audit.append_unattributed(event),
        }
    }

    /// Raises [`AlertRule::AuditUnavailable`], unless it was raised in the last minute.
    fn alert_audit_unavailable(&self, reason: &NotDurable) {
        const QUIET_MS: u64 = 60_000;
        let Some(alerter) = &self.alerter else {
            return;
        };
        let now = now_ms();
        let last = self.audit_alerted_ms.load(Ordering::Relaxed);
        let due = last == 0 || now.saturating_sub(last) >= QUIET_MS;
        if due
            && self
                .audit_alerted_ms
                .compare_exchange(last, now.max(1), Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            alerter.raise(Alert::outside_log(
                Severity::Critical,
                AlertRule::AuditUnavailable,
                format!(
                    "the audit log cannot be written ({reason}): orders, withdrawals and \
                     transfers are refused until it can"
                ),
            ));
        }
    }

    /// The same gateway with a pool of upstream connections of its own, for one of
    /// `workers` workers.
    fn with_own_pool(&self, workers: usize) -> Gateway {
        Gateway {
            live: self.live.clone(),
            decider: self.decider.clone(),
            audit: self.audit.clone(),
            upstream: self
                .upstream
                .with_own_pool(self.limits.max_idle_exchange_connections / workers.max(1)),
            replay: self.replay.clone(),
            weight: self.weight.clone(),
            trusted_proxies: self.trusted_proxies.clone(),
            limits: self.limits,
            answers: Arc::clone(&self.answers),
            binance: Binance,
            alerter: self.alerter.clone(),
            audit_alerted_ms: self.audit_alerted_ms.clone(),
        }
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    now_us() / 1000
}

/// Microseconds since the Unix epoch.
fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// The timestamp to forward a request with that its bot signed at `signed_at_us` (on
/// keygate's clock, which its freshness was checked against), when that clock reads
/// `now_us` and the exchange's `exchange_now_ms`: the exchange's now, less the time the
/// request has been on its way, rounded up to the millisecond. The exchange counts the
/// request's window from it, so the window closes where the bot's closes. A bot's clock
/// ahead of keygate's (as far as freshness allows) gains it nothing: never later than the
/// exchange's now.
fn timestamp_as_old_as(exchange_now_ms: u64, signed_at_us: u64, now_us: u64) -> u64 {
    let age_ms = now_us.saturating_sub(signed_at_us).div_ceil(1000);
    exchange_now_ms.saturating_sub(age_ms)
}

/// Picks the exchange adapter by the path's first segment. A new exchange is one line here.
async fn route(gw: &Gateway, peer: SocketAddr, request: Request) -> Response {
    let path = request.uri().path();
    let prefix = path.split('/').nth(1).unwrap_or("");
    match prefix {
        "binance" => handle(gw, &gw.binance, peer, request).await,
        _ => {
            let (audit, _) = Audit::from_peer(
                gw,
                "",
                peer,
                request.method(),
                request.uri().path(),
                request.headers(),
            );
            let body =
                serde_json::json!({ "error": "keygate: no exchange is routed at this path" });
            let response = (StatusCode::NOT_FOUND, axum::Json(body)).into_response();
            audit.deny(response, Rule::UnknownEndpoint, "no such route")
        }
    }
}

/// The request path. Every early return is audited and never forwarded: a denial, or
/// keygate's own answer to a client asking for the exchange's clock.
async fn handle<A: Adapter>(
    gw: &Gateway,
    adapter: &A,
    peer: SocketAddr,
    request: Request,
) -> Response {
    let refuse = |refusal| refusal_response(adapter, refusal);
    let (parts, body) = request.into_parts();
    let method = parts.method.clone();
    let exchange = adapter.exchange();
    // 1. Route: a native path that means one thing, on a host the exchange has. `route`
    //    matched the first segment, so the path starts with `/<exchange>`.
    let native = &parts.uri.path()[1 + exchange.as_str().len()..];
    let (mut audit, source_known) =
        Audit::from_peer(gw, exchange.as_str(), peer, &method, native, &parts.headers);
    // A request refused before its signature is checked is still recorded as about the
    // key it presents, as one whose signature fails is (found by review: a bot's
    // malformed order was logged with no client, and `audit query --client` never showed
    // it). Not a public call's: those name no client when allowed either, though some
    // clients (python-binance) send their API key with every call.
    let presented = adapter.client_api_key(&parts.headers);
    if !source_known {
        let msg = format!(
            "keygate: the request came through trusted proxy {}, and its \
             X-Forwarded-For does not name the source address",
            audit.source_ip
        );
        return audit.deny_presenting(
            presented,
            refuse(Refusal::Denied(&msg)),
            Rule::SourceIp,
            &msg,
        );
    }
    if let Err(reason) = check_path(native) {
        return audit.deny_presenting(
            presented,
            refuse(Refusal::Malformed(reason)),
            Rule::Malformed,
            reason,
        );
    }
    if let Some(header) = METHOD_OVERRIDE_HEADERS
        .iter()
        .find(|h| parts.headers.contains_key(**h))
    {
        let msg = format!("method override header {header} is not accepted");
        return audit.deny_presenting(
            presented,
            refuse(Refusal::Malformed(&msg)),
            Rule::Malformed,
            &msg,
        );
    }
    if let Some(reason) = parts
        .headers
        .iter()
        .find_map(|(name, value)| adapter.refused_header(name.as_str(), value.as_bytes()))
    {
        return audit.deny_presenting(
            presented,
            refuse(Refusal::Malformed(reason)),
            Rule::Malformed,
            reason,
        );
    }
    let Some(Route {
        base: default_base,
        path: native,
    }) = adapter.route(native)
    else {
        return audit.deny_presenting(
            presented,
            refuse(Refusal::UnknownRoute),
            Rule::UnknownEndpoint,
            "no exchange host serves this path",
        );
    };
    // From here on the event names the path the exchange is sent (`/api/v3/order`, not
    // `/api.binance.com/api/v3/order` as ccxt's host-named URLs have it), as the
    // reconciliation and the alerts read it.
    audit.path = native.to_owned();
    let body = match read_body(body, gw.limits.timeout).await {
        Ok(body) => body,
        Err((refusal, rule, reason)) => {
            return audit.deny_presenting(presented, refuse(refusal), rule, reason)
        }
    };
    // The exchange reads a GET's parameters from its query alone (Binance: "GET
    // parameters must go in the query string"): a body would be parameters, and a
    // signature, that keygate verified and classified but the exchange never reads.
    if (method == Method::GET || method == Method::HEAD) && !body.is_empty() {
        let msg = "a GET or HEAD request carries no body; send its parameters in the query";
        return audit.deny_presenting(
            presented,
            refuse(Refusal::Malformed(msg)),
            Rule::Malformed,
            msg,
        );
    }
    let query = parts.uri.query().unwrap_or("");
    let content_type = parts
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let signed = match adapter
        .parse(query, &body, content_type)
        .and_then(|signed| {
            signed
                .check_for_path(method.as_str(), native)
                .map(|()| signed)
        }) {
        Ok(r) => r,
        Err(e) => {
            return audit.deny_presenting(
                presented,
                refuse(Refusal::Invalid(&e)),
                Rule::Malformed,
                &e.to_string(),
            )
        }
    };

    // Public market data: no key, nothing to decide, forwarded without any client header.
    let kind = adapter.classify_endpoint(method.as_str(), native);
    if kind == ActionKind::Public {
        audit.action = Some(Action::new(kind, format!("{method} {native}")));
        if !body.is_empty() || signed.is_signed() {
            let msg = "public endpoints take no body and no signature";
            return audit.deny(refuse(Refusal::Malformed(msg)), Rule::Malformed, msg);
        }
        return forward_public(gw, adapter, audit, &method, native, query, default_base).await;
    }

    // Until it is classified in full, once its signature verifies, a request is recorded
    // as the kind of its endpoint: a withdrawal sent with a client's API key and a
    // signature that does not verify is a withdrawal denied, which the monitor raises as
    // critical (found by review: recorded as unknown, it raised nothing).
    audit.endpoint_kind = kind;

    // 2. Authenticate: one API key header, a known client of this exchange, a valid
    //    signature, a fresh timestamp (a signature never seen before is asked of the
    //    replay cache in step 3, once the client may call at all).
    let Some(api_key) = presented else {
        return audit.deny(
            refuse(Refusal::MissingKey),
            Rule::Authentication,
            "missing or repeated API key header",
        );
    };
    let registry = gw.live.snapshot();
    let Some(client) = registry.client(api_key) else {
        // A retired key is refused as any unknown one (its sender learns nothing), but
        // recorded as a dead key: whoever sent it holds an old key of that client. Not
        // under the client's name: nothing can verify its signature any more.
        let (rule, reason) = match registry.retired_key_holder(api_key) {
            Some(name) => {
                audit.key_of = Some(name.as_str().to_owned());
                (
                    Rule::Expired,
                    format!("a key of client {name} that a rotation retired"),
                )
            }
            None => (Rule::Authentication, "unknown API key".to_owned()),
        };
        let msg = "keygate: invalid API-key";
        return audit.deny(refuse(Refusal::Denied(msg)), rule, &reason);
    };
    // Recorded as about the client's key until its signature verifies.
    audit.key_of = Some(client.name.as_str().to_owned());
    let account = registry.account(&client.account);
    if account.as_ref().is_some_and(|a| a.exchange != exchange) {
        let msg = "keygate: this key has no account on this exchange";
        return audit.deny(refuse(Refusal::Denied(msg)), Rule::Authentication, msg);
    }
    let key = match &*client.verifier {
        Verifier::Hmac(secret) => ClientKey::Hmac(secret.expose_secret()),
        Verifier::Ed25519(public) => ClientKey::Ed25519(public),
    };
    // An endpoint keygate does not know, sent unsigned (Binance's user data streams,
    // `listenKey`, take the API key alone): refused as unknown, as it would be signed,
    // rather than told to add a signature that would change nothing.
    if !signed.is_signed()
        && adapter.classify_endpoint(method.as_str(), native) == ActionKind::Unknown
    {
        // The path is the sender's, of any length: bounded in the answer as in the event.
        let msg = bounded(format!(
            "endpoint {method} {native} is not known to keygate"
        ));
        return audit.deny(
            refuse(Refusal::Denied(&format!("keygate: {msg}"))),
            Rule::UnknownEndpoint,
            &msg,
        );
    }
    if let Err(e) = signed.verify(key) {
        // Not recorded as the client's own request: an API key is no secret, and anyone
        // holding one could otherwise write events under the client's name.
        let msg = format!("{e} (for the API key of client {})", client.name);
        return audit.deny(refuse(Refusal::Invalid(&e)), Rule::Authentication, &msg);
    }
    // Its own request now: the name moves from `key_of`. Its parameters are the
    // client's, so a denial from here on records what it would have done, classified in
    // full, though the request may still be a stale or replayed copy (found by review: a
    // stale withdrawal was recorded without its asset, amount or destination).
    let classified = || signed.classify(method.as_str(), native);
    audit.client = audit.key_of.take();
    audit.previous_key = client.key_valid_until_ms.is_some();
    audit.account = Some(client.account.as_str().to_owned());
    // No account: removed (`account remove` keeps its clients only once they are
    // revoked) or one that does not open (logged when the registry was loaded).
    let Some(account) = account else {
        let (rule, msg) = if client.status == ClientStatus::Revoked {
            let msg = format!("client {} is revoked; its account was removed", client.name);
            (Rule::Revoked, msg)
        } else {
            let msg = format!("the account of client {} is not available", client.name);
            (Rule::Authentication, msg)
        };
        audit.action = Some(classified());
        return audit.deny(
            refuse(Refusal::Denied(&format!("keygate: {msg}"))),
            rule,
            &msg,
        );
    };
    // What a change made while the request waits is told from.
    let decided = Decided {
        api_key,
        client,
        account,
        decided_on: &registry,
    };
    let now = now_ms();
    let freshness = match signed.check_freshness(now) {
        Ok(freshness) => freshness,
        Err(e) => {
            audit.action = Some(classified());
            return audit.deny(
                refuse(Refusal::Invalid(&e)),
                Rule::Authentication,
                &e.to_string(),
            );
        }
    };
    if client.key_valid_until_ms.is_some_and(|until| now >= until) {
        let msg = format!(
            "keygate: this key of client {} was rotated and its grace period is over",
            client.name
        );
        audit.action = Some(classified());
        return audit.deny(refuse(Refusal::Denied(&msg)), Rule::Expired, &msg);
    }

    // 3. Classify, from the same parsed parameters that will be forwarded. A denial from
    //    here on records what the request would have done.
    // Recorded from here on with the request's event, whatever is decided.
    let action = &*audit.action.insert(classified());
    let request = |notional: Option<Decimal>| keygate_policy::Request {
        client: client.name.as_str(),
        status: client.status,
        expires_at_ms: client.expires_ms,
        policy: &client.policy,
        source_ip: audit.source_ip,
        action,
        notional,
        order_notionals: &[],
        now_ms: now,
    };
    // Who may call at all (status, expiry, allow list) before the replay cache: a
    // captured request sent first from an address its client may not use is refused
    // without spending its signature, and the bot's own copy still goes through. After
    // the freshness check, which remembers nothing: a stale capture is a stale request,
    // not a foreign address. Recorded with what it would have done: a frozen key's
    // withdrawal is a withdrawal denied, which the monitor raises as critical.
    if let Err(denial) = keygate_policy::check_standing(&request(None)) {
        let msg = format!("keygate: {}", denial.message);
        return audit.deny(refuse(Refusal::Denied(&msg)), denial.rule, &denial.message);
    }
    if !gw.replay.remembers(freshness.signed_at_us) {
        // Answered as a stale timestamp, which clients know to sign again.
        return audit.deny(
            refuse(Refusal::Invalid(&keygate_exchanges::Error::StaleTimestamp)),
            Rule::Replay,
            "signed before keygate started, or at a time a keygate that ran before (its \
             clock ahead of this one's) may have used this signature; sign the request again",
        );
    }
    // A request that verified has a signature; without one, every such request would
    // share one replay id, so none is forwarded.
    let Some(replay_id) = signed.replay_id() else {
        tracing::error!("a verified request has no signature to remember");
        return audit.deny(
            refuse(Refusal::Internal),
            Rule::Internal,
            "no signature to remember",
        );
    };
    // A read's signature is used up for its own endpoint (and for orders), since two
    // reads of different endpoints may share one; anything else's for every request.
    let reach = match action.kind {
        ActionKind::Read | ActionKind::Public | ActionKind::Unknown => replay::Reach::Endpoint {
            method: method.as_str(),
            path: native,
        },
        ActionKind::Trade
        | ActionKind::Cancel
        | ActionKind::Withdraw
        | ActionKind::Transfer
        | ActionKind::KeyManagement => replay::Reach::Everywhere,
    };
    match gw.replay.sighting(
        &replay_id,
        client.name.as_str(),
        reach,
        replay::Moment::at(now),
        freshness.valid_through_us,
    ) {
        replay::Sighting::First => {}
        replay::Sighting::Seen => {
            let msg = "keygate: this signature was already used; sign the request again (two \
                       requests with the same parameters signed in the same millisecond have \
                       one signature)";
            return audit.deny(refuse(Refusal::Replayed(msg)), Rule::Replay, msg);
        }
        replay::Sighting::ClockSetBack => {
            let msg = "keygate: the system clock was set back, and keygate forgot the \
                       signatures of this request's window: it may have been sent before; \
                       sign it again once the clock has passed the time it showed";
            return audit.deny(refuse(Refusal::Replayed(msg)), Rule::Replay, msg);
        }
        replay::Sighting::Full => {
            let msg = "keygate: too many signed requests inside their windows to remember; \
                       send again in a moment";
            return audit.deny(refuse(Refusal::TooMany(msg)), Rule::ReplayCacheFull, msg);
        }
    }
    audit.attributed = true;
    // A read is refused while large answers to signed requests pile up for slow clients
    // (before it counts against the client's rate); nothing that trades, cancels or moves
    // money is held back by them.
    if action.kind == ActionKind::Read && gw.answers.refuses(Caller::Signed) {
        let msg = ANSWER_BACKLOG;
        return audit.deny(refuse(Refusal::TooMany(msg)), Rule::AnswerBacklog, msg);
    }
    let base = decided
        .account
        .upstream
        .clone()
        .unwrap_or_else(|| default_base.to_owned());
    let pool = Pool {
        upstream: &base,
        name: adapter.weight_pool(native),
    };
    // While the exchange asks the address to back off, nothing is sent, not even an order
    // or a cancel: the exchange would refuse it, and count it towards a ban (or a longer
    // one) that stops every client. A read is held back here, before it reserves weight;
    // anything else once it is decided (below, and again just before it would be sent).
    // Either way a request its policy denies is recorded, and alerted, as denied: a read
    // probing for symbols or scopes during a pause is decided first too.
    if action.kind == ActionKind::Read {
        if let Some((response, msg)) = answer_while_backing_off(adapter, &gw.weight, pool) {
            // Not counted against its client's rate: a bot that reads again while the
            // exchange asks keygate to wait would otherwise find its first orders after
            // the pause refused for its rate.
            let decided = gw.decider.decide_read_held_back(&request(None));
            if let keygate_core::Decision::Deny(denial) = decided {
                let response = denial_response(adapter, &denial);
                return audit.deny(response, denial.rule, &denial.message);
            }
            return audit.deny(response, Rule::ExchangeBackOff, &msg);
        }
    }
    // A read reserves its weight as public data does (also before it counts against its
    // client's rate), at a cap between public data's and pricing's: a client's rate counts
    // requests, not their weight, so reads of every symbol's orders could otherwise spend
    // the weight that prices other clients' orders. A test order, which places nothing,
    // is weighed as a read (found by review: test orders at 20 each could take the
    // address to the exchange's 429, pausing every client's cancels). Handed back if the
    // request is refused from here on.
    let weighed_as_read = action.kind == ActionKind::Read || action.validates_only;
    let request_weight = if action.kind == ActionKind::Read {
        adapter.signed_read_weight(native, query)
    } else {
        adapter.order_weight(method.as_str(), native)
    };
    if weighed_as_read {
        let cap = cap_for(gw, adapter, pool, HeldBack::SignedReads);
        match gw.weight.reserve(pool, cap, request_weight, now_ms()) {
            Ok(reservation) => audit.weight = Held(Some(reservation)),
            Err(over) => {
                let msg = weight_paused(
                    "signed reads and test orders are",
                    over,
                    "orders and cancels",
                );
                return audit.deny(refuse(Refusal::TooMany(&msg)), Rule::WeightReserved, &msg);
            }
        }
    }
    let payer = payer(gw, adapter, pool, client.name.as_str());

    // 4. Decide. An order the request alone does not bound (a sell, a market order in
    //    base quantity) is priced from the public book ticker when a notional limit applies,
    //    but only once every other rule has passed: a request denied for its symbol or
    //    scope causes no traffic at all. One that is priced has counted against its
    //    client's rate, whatever the final decision; its ticker lookup, answered with a
    //    price or without, stands for a second (until a buy that fills at once is sent
    //    there), and a lookup is a public call, paused at the weight cap.
    //    A market buy of more than the best ask offers is priced at the book (a depth
    //    lookup). A batch is decided order by order, each priced as it would be alone (one
    //    ticker lookup per symbol, at most five), its market buys in a symbol at the book
    //    as one (each at the ask up to which the book fills it and those before it).
    let mut notionals: Vec<_> = action
        .orders()
        .iter()
        .map(|order| order.stated_notional().map(|n| n.normalize()))
        .collect();
    // Held until the request is answered, or is not sent.
    let mut _buying = None;
    let mut decision = gw
        .decider
        .reserve(&request(None).with_order_notionals(&notionals));
    if let Err(Denial {
        rule: Rule::PriceUnavailable,
        ..
    }) = &decision
    {
        let cap = cap_for(gw, adapter, pool, HeldBack::Pricing);
        // Charged to the client, within a share of its own: one client's orders, each
        // denied once priced, must not spend the weight that prices everyone's (found
        // by review).
        let budget = Budget { cap, payer };
        match gw
            .upstream
            .price_orders(adapter, &base, native, action, &gw.weight, budget)
            .await
        {
            Ok((priced, buying)) => {
                notionals = priced;
                _buying = Some(buying);
                decision = gw
                    .decider
                    .reserve_priced(&request(None).with_order_notionals(&notionals));
            }
            Err(Unpriced::Paused | Unpriced::Unreached) => {
                // The exchange asks the address to back off (it may have begun while the
                // lookup waited): answered as such.
                if let Some((response, msg)) = answer_while_backing_off(adapter, &gw.weight, pool) {
                    return audit.deny(response, Rule::ExchangeBackOff, &msg);
                }
                // As the order itself would be answered, which bots try again (found by
                // review: an outage read as a denial, -2015, the one given to orders
                // that can never be priced).
                let msg = "the exchange could not be reached to price this order (no \
                           answer, a server error, or a wait it asked for); it was not sent";
                return audit.deny(refuse(Refusal::Unreachable), Rule::ExchangeUnreachable, msg);
            }
            // Other buys on their way take the book this one would be priced at: told as
            // a refusal to send again in a moment, which bots do.
            Err(Unpriced::Contended) => {
                let msg = "other orders on their way take the book this order would be priced \
                           at; it was not sent: send it again once they are answered";
                return audit.deny(refuse(Refusal::TooMany(msg)), Rule::PriceUnavailable, msg);
            }
            Err(Unpriced::Weight(refused)) => {
                let msg = match refused {
                    weight::Refused::Cap(over) => weight_paused(
                        "pricing orders from the exchange's ticker is",
                        over,
                        "orders that need no price, and cancels",
                    ),
                    weight::Refused::Share(over) => over_share(payer, over, pool),
                };
                return audit.deny(refuse(Refusal::TooMany(&msg)), Rule::WeightReserved, &msg);
            }
        }
    }
    audit.notional = keygate_policy::total_notional(&notionals);
    if action.is_batch() {
        audit.order_notionals = notionals;
    }
    // A pause another request began once this one's lookups were answered leaves the
    // order unpriced (a lookup made or asked off during a pause was answered above): it is
    // held back for that, not denied for its price. Any other denial stands.
    if let (
        Err(Denial {
            rule: Rule::PriceUnavailable,
            ..
        }),
        Some((response, msg)),
    ) = (
        &decision,
        answer_while_backing_off(adapter, &gw.weight, pool),
    ) {
        return audit.deny(response, Rule::ExchangeBackOff, &msg);
    }
    match decision {
        // Handed back if the request is refused from here on, or never reaches the
        // exchange.
        Ok(reservation) => audit.reservation = Held(Some(reservation)),
        Err(denial) => {
            let response = denial_response(adapter, &denial);
            return audit.deny(response, denial.rule, &denial.message);
        }
    }
    debug_assert_eq!(client.status, ClientStatus::Active);
    // Charged to its client once decided (a request its policy denies costs it nothing),
    // with the lookup below if it needs one, and before that lookup: an order or a cancel
    // is not held back for the weight others used, only once its own client's requests
    // would pass its share of the address's limit (found by review: one client's cancels
    // could take the address to the exchange's 429, which stops every client). Nothing is
    // charged while the exchange asks the address to back off, nor a new order while it
    // asks the account to place none.
    let places_orders = action.places_new_orders();
    let held_back = || {
        answer_while_backing_off(adapter, &gw.weight, pool).or_else(|| {
            answer_while_orders_wait(adapter, &gw.weight, &client.account, pool, places_orders)
        })
    };
    if let Some((response, msg)) = held_back() {
        return audit.deny(response, Rule::ExchangeBackOff, &msg);
    }
    let symbol_lookup = client
        .policy
        .symbols
        .as_ref()
        .and_then(|_| signed.symbol_lookup(method.as_str(), native));
    let lookup_weight = symbol_lookup
        .as_ref()
        .map_or(0, |(path, query)| adapter.signed_read_weight(path, query));
    let weight = request_weight.saturating_add(lookup_weight);
    let part = if weighed_as_read {
        weight::SharePart::Reads
    } else {
        weight::SharePart::Requests
    };
    match gw.weight.charge(payer, part, pool, weight, now_ms()) {
        // Handed back if the request is not sent (the lookup's part once it is made).
        Ok(charge) => audit.charge = Held(Some(charge)),
        Err(over) => {
            let msg = over_share(payer, over, pool);
            return audit.deny(refuse(Refusal::TooMany(&msg)), Rule::WeightReserved, &msg);
        }
    }
    // A request the exchange takes by an account-wide id names a symbol it ignores (a
    // conditional order's cancel): for a client held to a symbol list, the exchange is
    // asked first which symbol that order is in.
    if let Some(lookup) = symbol_lookup {
        if let Err((response, rule, msg)) = check_order_symbol(
            gw,
            adapter,
            &mut audit,
            &decided,
            pool,
            lookup,
            lookup_weight,
        )
        .await
        {
            return audit.deny(response, rule, &msg);
        }
    }

    // What the request waited for since it was checked and decided (its price, the
    // symbol of the order it names; then its audit event and the exchange's clock) may
    // have taken seconds. The exchange takes the re-signed request by its new timestamp:
    // one past the bot's own window would execute though the bot may have given up on
    // it, and sent it again. And a freeze, a revoke, a panic or a new policy made
    // meanwhile holds for this request too, not only for those after it, as does the
    // exchange asking to back off. So these are checked again before the request is
    // recorded as about to be sent, and after the last wait.
    // What is not refused is signed with the account's real key as it is then: one
    // rotated meanwhile is not used again (found by review).
    #[allow(
        clippy::result_large_err,
        reason = "a refusal is made once, and becomes the answer"
    )]
    let refusal_since_decided = || -> Result<Arc<AccountEntry>, Refused> {
        let now = now_ms();
        if let Err(e) = signed.check_freshness(now) {
            let msg = format!("{e} by the time keygate was to forward it");
            let response = refusal_response(adapter, Refusal::Invalid(&e));
            return Err((response, Rule::Authentication, msg));
        }
        if let Some((response, msg)) = held_back() {
            return Err((response, Rule::ExchangeBackOff, msg));
        }
        decided.changed_in(&gw.live.snapshot(), now).map_err(|msg| {
            let text = format!("keygate: {msg}");
            let response = refusal_response(adapter, Refusal::Denied(&text));
            (response, Rule::PolicyChanged, msg)
        })
    };
    if let Err((response, rule, msg)) = refusal_since_decided() {
        return audit.deny(response, rule, &msg);
    }

    // 5. Audit: an order, a withdrawal or a transfer is durable in the log before
    //    anything is sent; the rest is recorded with its outcome.
    if audit.action.as_ref().is_some_and(|a| a.kind.is_sensitive()) {
        if let Err(reason) = audit.write_pending().await {
            tracing::error!(%reason, "audit log unavailable; request not forwarded");
            gw.alert_audit_unavailable(&reason);
            // Should the pending event still land (a write that timed out), this one
            // follows it and says the request was not forwarded.
            let message = format!("audit log unavailable: {reason}");
            return audit.deny(
                refuse(Refusal::AuditUnavailable),
                Rule::AuditUnavailable,
                &message,
            );
        }
    }

    // 6. Re-sign with the real key and a timestamp on the exchange's clock, as old as
    //    the bot's was when keygate stamps it: the exchange then takes the request until
    //    the end of the bot's own window and no later, however long the connection to it
    //    takes from here.
    let exchange_now_ms = gw
        .upstream
        .exchange_time_ms(adapter, &base, native, &gw.weight)
        .await;
    let account = match refusal_since_decided() {
        Ok(account) => account,
        Err((response, rule, msg)) => return audit.deny(response, rule, &msg),
    };
    let timestamp = timestamp_as_old_as(exchange_now_ms, freshness.signed_at_us, now_us());
    let forward = signed.resign(
        account.api_key.expose_secret(),
        account.secret.expose_secret().as_bytes(),
        timestamp,
    );
    if let Some((name, _)) = forward
        .headers
        .iter()
        .find(|(_, value)| !wire::is_header_value(value))
    {
        tracing::error!(
            header = name,
            "re-signed header is not a valid header value"
        );
        return audit.deny(
            refuse(Refusal::Internal),
            Rule::Internal,
            "invalid upstream header",
        );
    }
    let moves_the_book = audit.action.as_ref().map_or_else(Vec::new, |action| {
        gw.upstream
            .forget_markets_moved(adapter, &base, native, action)
    });
    let url = upstream_url(&base, native, &forward.query);
    let answer = gw
        .forward(
            adapter,
            audit,
            &method,
            pool,
            &url,
            &forward.headers,
            forward.body.as_bytes(),
            None,
            || match refusal_since_decided() {
                Ok(now) if Arc::ptr_eq(&now, &account) => None,
                Ok(_) => {
                    let msg = "the real key of its account was rotated as the request was \
                               sent; it was not sent";
                    let text = format!("keygate: {msg}");
                    let response = refusal_response(adapter, Refusal::Denied(&text));
                    Some((response, Rule::PolicyChanged, msg.to_owned()))
                }
                Err(refusal) => Some(refusal),
            },
        )
        .await;
    for symbol in moves_the_book {
        gw.upstream
            .forget_market(adapter, &base, native, &symbol, None);
    }
    answer
}

/// A request's body, read in full within `timeout`, or why it is refused: too large,
/// cut short, malformed, or late. A request without a body (a signed GET) is complete
/// once its head is read: no timer is armed to wait for bytes that are not coming.
async fn read_body(
    body: Body,
    timeout: Duration,
) -> Result<bytes::Bytes, (Refusal<'static>, Rule, &'static str)> {
    if body.is_end_stream() {
        return Ok(bytes::Bytes::new());
    }
    match tokio::time::timeout(timeout, axum::body::to_bytes(body, MAX_REQUEST_BODY_BYTES)).await {
        Ok(Ok(body)) => Ok(body),
        Ok(Err(e)) if is_length_limit(&e) => {
            Err((Refusal::TooLarge, Rule::Malformed, "request body too large"))
        }
        Ok(Err(e)) if is_cut_short(&e) => {
            let msg = "the request body was cut short";
            Err((Refusal::Malformed(msg), Rule::ClientGone, msg))
        }
        Ok(Err(_)) => {
            let msg = "the request body is malformed";
            Err((Refusal::Malformed(msg), Rule::Malformed, msg))
        }
        Err(_) => {
            let msg = "request body was not received in time";
            Err((Refusal::Malformed(msg), Rule::Malformed, msg))
        }
    }
}

/// For a client held to a symbol list, whether the order a request names by an
/// account-wide id is in the symbol the request names, as the exchange answers `lookup`
/// (a signed read) asked with the account's real key as it is now; its weight
/// (`lookup_weight`, charged with the request's) is spent from the client's charge once
/// it went. `Err` is the refusal.
async fn check_order_symbol<A: Adapter>(
    gw: &Gateway,
    adapter: &A,
    audit: &mut Audit<'_>,
    decided: &Decided<'_>,
    pool: Pool<'_>,
    lookup: (&'static str, String),
    lookup_weight: u64,
) -> Result<(), Refused> {
    let refuse = |refusal| refusal_response(adapter, refusal);
    let denied = |rule, msg: String| -> Refused {
        let response = refusal_response(adapter, Refusal::Denied(&format!("keygate: {msg}")));
        (response, rule, msg)
    };
    // Signed with the account's key as it is now: one rotated since the request was
    // decided is not used again (found by review).
    let account = match decided.changed_in(&gw.live.snapshot(), now_ms()) {
        Ok(account) => account,
        Err(msg) => return Err(denied(Rule::PolicyChanged, msg)),
    };
    let found = gw
        .order_symbol(
            adapter,
            account.api_key.expose_secret(),
            account.secret.expose_secret().as_bytes(),
            pool.upstream,
            lookup,
        )
        .await;
    // The lookup went: what it weighed is spent, whatever happens to the request.
    if !matches!(found, OrderSymbol::Unreached) {
        audit.charge.0 = audit.charge.0.take().map(|c| c.less(lookup_weight));
    }
    if let (OrderSymbol::Unsaid | OrderSymbol::Unreached, Some((response, msg))) =
        (&found, answer_while_backing_off(adapter, &gw.weight, pool))
    {
        return Err((response, Rule::ExchangeBackOff, msg));
    }
    let (found, headers) = match found {
        OrderSymbol::In(symbol, headers) => (symbol, headers),
        OrderSymbol::Unsaid => {
            let msg = format!(
                "the exchange did not say which symbol the order this request names is in, \
                 and client {} is limited to a symbol list",
                decided.client.name
            );
            return Err(denied(Rule::Symbol, msg));
        }
        // As the request itself would be answered, which bots try again.
        OrderSymbol::Unreached => {
            let msg = "the exchange could not be reached to ask which symbol the order this \
                       request names is in; it was not sent";
            let response = refuse(Refusal::Unreachable);
            return Err((response, Rule::ExchangeUnreachable, msg.to_owned()));
        }
        // Answered as the exchange answers a request naming an order it does not have
        // (ccxt's `OrderNotFound`), not as a denial: cancelling a stop that already
        // triggered is routine. Nothing else is sent.
        OrderSymbol::NoSuchOrder(answer) => {
            let msg = "the exchange has no order by the id this request names";
            let mut response = Response::new(gw.answers.body(answer.body, Caller::Signed));
            *response.status_mut() = answer.status;
            *response.headers_mut() = answer.headers;
            return Err((response, Rule::NoSuchOrder, msg.to_owned()));
        }
    };
    let action = audit.action.as_ref();
    if action.and_then(|a| a.symbol.as_ref()) == Some(&found) {
        return Ok(());
    }
    let msg = format!(
        "the order this request names is in symbol {found}, not the one it names, and \
         client {} is limited to a symbol list",
        decided.client.name
    );
    let its_own = action.and_then(|a| a.market).is_some_and(|market| {
        decided
            .client
            .policy
            .lists_symbol(&market.listed_symbol(&found))
    });
    // In a symbol the client may trade: told so, as it may look there (found by review:
    // answered as unknown, a bot took its live stop for gone).
    if its_own {
        return Err(denied(Rule::Symbol, msg));
    }
    // Else answered as the exchange answers an order it does not have, with the lookup's
    // headers as that answer has them (found by review: the answer named the symbol, so a
    // client without the read scope learned that another bot's order exists and its
    // symbol). The symbol is in the audit event only.
    let mut response = refuse(Refusal::NoSuchOrder);
    *response.headers_mut() = headers;
    Err((response, Rule::Symbol, msg))
}

/// A request refused on its way: the answer, the rule that refused it, and the reason
/// its event records.
type Refused = (Response, Rule, String);

/// A call for public market data, checked and classified: answered by keygate itself
/// when it asks for the exchange's clock, held back while the exchange asks the address
/// to back off or its weight is spent, else forwarded to `default_base` (or the public
/// upstream configured for the exchange) with no client header.
async fn forward_public<A: Adapter>(
    gw: &Gateway,
    adapter: &A,
    audit: Audit<'_>,
    method: &Method,
    native: &str,
    query: &str,
    default_base: &str,
) -> Response {
    let refuse = |refusal| refusal_response(adapter, refusal);
    if gw.answers.refuses(Caller::Public) {
        let msg = ANSWER_BACKLOG;
        return audit.deny(refuse(Refusal::TooMany(msg)), Rule::AnswerBacklog, msg);
    }
    // A client that sets its clock by the exchange's is told keygate's, which is what
    // judges its timestamps: told the exchange's, it would be refused whenever this
    // host's clock is a second off. Nothing is sent, and no weight spent.
    if let Some(body) = adapter.clock_answer(method.as_str(), native, query, now_ms()) {
        return audit.answer_itself(json_response(StatusCode::OK, body));
    }
    let registry = gw.live.snapshot();
    let base = registry
        .public_upstream(adapter.exchange())
        .unwrap_or(default_base);
    let weight = adapter.public_weight(native, query);
    let pool = Pool {
        upstream: base,
        name: adapter.weight_pool(native),
    };
    let cap = cap_for(gw, adapter, pool, HeldBack::PublicData);
    if let Some((response, msg)) = answer_while_backing_off(adapter, &gw.weight, pool) {
        return audit.deny(response, Rule::ExchangeBackOff, &msg);
    }
    // Settled once the answer's weight is recorded; else its estimate counts as spent.
    let reservation = match gw.weight.reserve(pool, cap, weight, now_ms()) {
        Ok(reservation) => reservation,
        Err(over) => {
            let msg = weight_paused("public market data is", over, "signed requests");
            return audit.deny(refuse(Refusal::TooMany(&msg)), Rule::WeightReserved, &msg);
        }
    };
    let url = upstream_url(base, native, query);
    gw.forward(
        adapter,
        audit,
        method,
        pool,
        &url,
        &[],
        b"",
        Some(reservation),
        || None,
    )
    .await
}

/// A client as a request was decided for it, with the view it was read from.
struct Decided<'k> {
    /// The API key the request presented.
    api_key: &'k str,
    client: &'k Arc<ClientEntry>,
    /// The client's account in that view, whose real key would sign the request.
    account: &'k Arc<AccountEntry>,
    /// The view.
    decided_on: &'k Registry,
}

impl Decided<'_> {
    /// Why the request may no longer be sent, by `registry` as it is now and the clock at
    /// `now` (ms): the client was frozen (even if unfrozen since, or every client was
    /// refused meanwhile), revoked or changed, its key or itself expired, or its account
    /// is gone or points elsewhere (every client is gone while a reload fails).
    /// Otherwise, the account as it is now, whose real key signs the request: the one it
    /// was decided with may have been rotated since.
    ///
    /// Each is denied by [`Rule::PolicyChanged`], not by the rule a new request would meet
    /// (`frozen`, `revoked`): this one was signed and sent before the change, and the
    /// alert a dead key raises ("whoever sent this still holds it") would read, in the
    /// middle of an incident, as the key being used after it was frozen.
    fn changed_in(&self, registry: &Registry, now: u64) -> Result<Arc<AccountEntry>, String> {
        let decided = &self.client;
        let name = &decided.name;
        let Some(client) = registry.client(self.api_key) else {
            return Err(format!(
                "the key of client {name} was withdrawn while the request waited; it was not \
                 sent"
            ));
        };
        let account = registry.account(&client.account);
        let what = match client.status {
            ClientStatus::Frozen => "frozen",
            ClientStatus::Revoked => "revoked",
            ClientStatus::Active if client.name != *name => "replaced",
            ClientStatus::Active
                if client.stops != decided.stops
                    || registry.every_client_stopped()
                        != self.decided_on.every_client_stopped() =>
            {
                "frozen, and let go since,"
            }
            ClientStatus::Active if client.expires_ms.is_some_and(|at| now >= at) => "expired",
            ClientStatus::Active if client.key_valid_until_ms.is_some_and(|at| now >= at) => {
                "rotated, and this key's grace period ended,"
            }
            // The same entry unless the registry was reloaded: then the policy may differ.
            ClientStatus::Active
                if !Arc::ptr_eq(client, decided) && client.policy != decided.policy =>
            {
                "given another policy"
            }
            ClientStatus::Active => match account {
                None => "left without its account",
                Some(account)
                    if account.exchange != self.account.exchange
                        || account.upstream != self.account.upstream =>
                {
                    "given an account on another upstream"
                }
                Some(account) => return Ok(Arc::clone(account)),
            },
        };
        Err(format!(
            "client {name} was {what} while the request waited; it was not sent"
        ))
    }
}

/// While the exchange asks `pool`'s address to back off ([`WeightGauge::paused`]), the
/// answer to a request held back, as the exchange itself answers meanwhile (429, or 418
/// for a ban) with how long is left in `Retry-After`, and the reason, for its event.
fn answer_while_backing_off<A: Adapter>(
    adapter: &A,
    weight: &WeightGauge,
    pool: Pool<'_>,
) -> Option<(Response, String)> {
    let paused = weight.paused(pool)?;
    let now_ms = now_ms();
    let message = if paused.banned {
        format!(
            "keygate: the exchange banned this address (HTTP 418) until {}; nothing is sent \
             to it until then, which would make the ban longer",
            keygate_core::rfc3339(paused.until_ms)
        )
    } else {
        format!(
            "keygate: the exchange answered that this address used up its request weight \
             (HTTP 429) and asked for nothing more until {}; nothing is sent to it until \
             then, which would bring on a ban",
            keygate_core::rfc3339(paused.until_ms)
        )
    };
    let refusal = Refusal::ExchangeBackOff {
        message: &message,
        banned: paused.banned,
    };
    let mut response = refusal_response(adapter, refusal);
    let seconds_left = paused.until_ms.saturating_sub(now_ms).div_ceil(1000).max(1);
    response
        .headers_mut()
        .insert(http::header::RETRY_AFTER, HeaderValue::from(seconds_left));
    Some((response, message))
}

/// While the exchange asks `account` to place no new order in `pool`
/// ([`WeightGauge::orders_paused`]), the answer to a request that `places_orders`, as
/// the exchange answers an account over its order count (429) with how long is left in
/// `Retry-After`, and the reason, for its event. Cancels, reads, test orders and
/// settings go on, as do other accounts' orders.
fn answer_while_orders_wait<A: Adapter>(
    adapter: &A,
    weight: &WeightGauge,
    account: &keygate_core::Name,
    pool: Pool<'_>,
    places_orders: bool,
) -> Option<(Response, String)> {
    if !places_orders {
        return None;
    }
    let left = weight.orders_paused(account.as_str(), pool)?;
    let seconds_left = left.as_millis().div_ceil(1000).max(1);
    let message = format!(
        "keygate: the exchange answered that account {account} placed too many orders \
         (HTTP 429) and asked for no new one for {seconds_left} s more; none is sent until \
         then, which would bring on a ban of the address"
    );
    let mut response = refusal_response(adapter, Refusal::TooManyOrders(&message));
    response.headers_mut().insert(
        http::header::RETRY_AFTER,
        HeaderValue::from(u64::try_from(seconds_left).unwrap_or(u64::MAX)),
    );
    Some((response, message))
}

/// The answer to a request its client's policy denies, in the exchange's error shape
/// (the message may quote what the request named, a symbol, at any length: it is cut).
/// A client over its rate is asked to wait until its rate has room (`Retry-After`, in
/// whole seconds, at least one: a batch counts for as many seconds as it takes at the
/// rate), as the exchange answers too many requests (429), which clients retry later;
/// found by review: as a denial (401, -2015) ccxt took it for a dead key, and a client
/// with a low rate could not load its markets. Every other denial is -2015.
fn denial_response<A: Adapter>(adapter: &A, denial: &Denial) -> Response {
    let msg = bounded(format!("keygate: {}", denial.message));
    if denial.rule != Rule::Rate {
        return refusal_response(adapter, Refusal::Denied(&msg));
    }
    let seconds = denial.retry_after_ms.unwrap_or(1000).div_ceil(1000).max(1);
    let mut response = refusal_response(adapter, Refusal::TooMany(&msg));
    response
        .headers_mut()
        .insert(http::header::RETRY_AFTER, HeaderValue::from(seconds));
    response
}

/// A refusal in the exchange's own error shape.
fn refusal_response<A: Adapter>(adapter: &A, refusal: Refusal<'_>) -> Response {
    let (status, body) = adapter.refusal(refusal);
    json_response(
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        body,
    )
}

/// An answer keygate makes itself: `body`, JSON.
fn json_response(status: StatusCode, body: Vec<u8>) -> Response {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// What the exchange said of the order a [`ClientRequest::symbol_lookup`] read names.
enum OrderSymbol {
    /// It is in this symbol; the headers of the exchange's answer (its weight).
    In(String, HeaderMap),
    /// There is no such order: the exchange's answer, as it came.
    NoSuchOrder(upstream::Response),
    /// Nothing that can be read.
    Unsaid,
    /// The exchange could not be reached: the lookup was not sent.
    Unreached,
}

impl Gateway {
    /// Which symbol the order a [`ClientRequest::symbol_lookup`] read names is in, as the
    /// exchange says when asked with the real key.
    async fn order_symbol<A: Adapter>(
        &self,
        adapter: &A,
        api_key: &str,
        secret: &[u8],
        base: &str,
        (path, query): (&str, String),
    ) -> OrderSymbol {
        let Ok(read) = adapter.parse(&query, b"", None) else {
            return OrderSymbol::Unsaid;
        };
        let pool = Pool {
            upstream: base,
            name: adapter.weight_pool(path),
        };
        // Made for a cancel, which was charged to its client with this lookup, and is not
        // refused for the weight others used; but its weight is held while it is in
        // flight, for the pool's count that held-back calls stop at near the limit.
        let estimate = adapter.signed_read_weight(path, &query);
        let reservation = Some(self.weight.hold(pool, estimate));
        let timestamp = self
            .upstream
            .exchange_time_ms(adapter, base, path, &self.weight)
            .await;
        let forward = read.resign(api_key, secret, timestamp);
        let url = upstream_url(base, path, &forward.query);
        let answer = match self
            .upstream
            .send(adapter, &Method::GET, &url, &forward.headers, b"")
            .await
        {
            Ok(answer) => answer,
            // Nothing was sent.
            Err(Failure::Unreachable(_) | Failure::Refused(_)) => {
                if let Some(reservation) = reservation {
                    reservation.release();
                }
                return OrderSymbol::Unreached;
            }
            Err(Failure::TimedOut | Failure::NoAnswer(_)) => return OrderSymbol::Unsaid,
        };
        self.weight.note_answer(adapter, pool, &answer, reservation);
        if adapter.is_no_such_order(answer.status, &answer.body) {
            return OrderSymbol::NoSuchOrder(answer);
        }
        if !answer.status.is_success() {
            return OrderSymbol::Unsaid;
        }
        match adapter.parse_order_symbol(&answer.body) {
            Some(symbol) => OrderSymbol::In(symbol, answer.headers),
            None => OrderSymbol::Unsaid,
        }
    }

    /// Step 6: send once to `url`, note the request weight it reports as used in `pool`
    /// (settling the public call's `weight` reservation, or the one a signed read's audit
    /// holds), audit the outcome. An action that moves money is sent only when its
    /// pending event is durable (step 5). `withhold` is asked once the connection is
    /// ready, just before the request is written: connecting may take seconds, in which
    /// its client may be frozen or its window run out.
    // Each argument is a piece of the request path's state; a struct would only rename them.
    #[allow(clippy::too_many_arguments)]
    async fn forward<A: Adapter>(
        &self,
        adapter: &A,
        mut audit: Audit<'_>,
        method: &Method,
        pool: Pool<'_>,
        url: &str,
        headers: &[(&'static str, String)],
        body: &[u8],
        weight: Option<Reservation<'_>>,
        withhold: impl Fn() -> Option<Refused>,
    ) -> Response {
        // A signed read's reservation, held by its audit until now.
        let weight = weight.or_else(|| audit.weight.0.take());
        let sensitive = audit.action.as_ref().is_some_and(|a| a.kind.is_sensitive());
        let places_orders = audit
            .action
            .as_ref()
            .is_some_and(|a| a.kind == ActionKind::Trade);
        let caller = match audit.action.as_ref().map(|a| a.kind) {
            Some(ActionKind::Public) => Caller::Public,
            _ => Caller::Signed,
        };
        if sensitive && !audit.pending_written {
            tracing::error!("an action that moves money reached the upstream call unaudited");
            let response = refusal_response(adapter, Refusal::Internal);
            return audit.deny(
                response,
                Rule::Internal,
                "not forwarded: its event was not durable",
            );
        }
        // From here the exchange may have the request: should this future be dropped all
        // the same (the request path panicked), the guard still records it, with its
        // outcome unknown. A client that hangs up does not drop it (see `server.rs`).
        let mut in_flight = InFlight {
            started: audit.started,
            audit: Some(audit),
            sensitive,
        };
        let result = self
            .upstream
            .send_unless(adapter, method, url, headers, body, withhold)
            .await;
        match result {
            Ok(Sent::Withheld((response, rule, msg))) => {
                // Nothing was sent: its reservations are free again, and it is recorded
                // as denied, as it would have been a moment earlier.
                if let Some(reservation) = weight {
                    reservation.release();
                }
                match in_flight.audit.take() {
                    Some(audit) => audit.deny(response, rule, &msg),
                    None => refusal_response(adapter, Refusal::Internal),
                }
            }
            Ok(Sent::Answered(answer)) => {
                // The exchange's ids of what it placed, for `keygate reconcile` to know
                // them from orders placed behind keygate's back. Read from any answer:
                // one that failed in part (a cancel-replace whose cancel failed) may
                // still have placed an order.
                let order_ids = if places_orders {
                    adapter.placed_order_ids(in_flight.path(), &answer.body)
                } else {
                    Vec::new()
                };
                // An answer that says the exchange does not know whether the request
                // executed (a 5xx, Binance's -1007) leaves an order or a withdrawal
                // unknown, as a timeout does; the bot gets the answer as it came.
                let outcome =
                    if sensitive && adapter.is_execution_unknown(answer.status, &answer.body) {
                        tracing::error!(
                            path = in_flight.path(),
                            status = answer.status.as_u16(),
                            "the exchange answered that it does not know whether the request \
                         executed; outcome unknown, not retried"
                        );
                        Outcome::Unknown
                    } else {
                        Outcome::Answered
                    };
                // An account over its order count: its new orders wait as asked, here, so
                // that going on does not bring on a ban of the address.
                let orders_wait = adapter
                    .orders_back_off(answer.status, &answer.headers, &answer.body)
                    .filter(|_| places_orders);
                if let (Some(seconds), Some(account)) = (
                    orders_wait,
                    in_flight.audit.as_ref().and_then(|a| a.account.as_deref()),
                ) {
                    self.weight
                        .pause_orders(account, pool, Duration::from_secs(seconds));
                }
                in_flight.finish_placing(Some(answer.status.as_u16()), outcome, order_ids);
                if caller == Caller::Signed
                    && adapter.refused_the_timestamp(answer.status, &answer.body)
                {
                    self.upstream.doubt_clock(pool.upstream);
                }
                self.weight.note_answer(adapter, pool, &answer, weight);
                let mut response = Response::new(self.answers.body(answer.body, caller));
                *response.status_mut() = answer.status;
                *response.headers_mut() = answer.headers;
                response
            }
            Err(Failure::TimedOut) => {
                tracing::error!(
                    path = in_flight.path(),
                    "upstream timed out; outcome unknown, not retried"
                );
                in_flight.finish(None, Outcome::Unknown);
                refusal_response(adapter, Refusal::NoAnswer)
            }
            Err(Failure::NoAnswer(reason)) => {
                tracing::error!(path = in_flight.path(), %reason, "upstream answer lost; outcome unknown, not retried");
                in_flight.finish(None, Outcome::Unknown);
                refusal_response(adapter, Refusal::NoAnswer)
            }
            Err(Failure::Unreachable(reason) | Failure::Refused(reason)) => {
                tracing::error!(%reason, "upstream unreachable");
                // Nothing was sent: what the request reserved of its client's daily
                // limits is free again.
                if let Some(audit) = in_flight.audit.as_mut() {
                    audit.release_reservation();
                }
                // Nor did it spend any request weight.
                if let Some(reservation) = weight {
                    reservation.release();
                }
                in_flight.finish(None, Outcome::UpstreamUnreachable);
                refusal_response(adapter, Refusal::Unreachable)
            }
        }
    }
}

/// A request the exchange may have: its audit record is finished with what came back, or,
/// if the request is dropped first (the request path panicked), with an unknown outcome.
struct InFlight<'a> {
    audit: Option<Audit<'a>>,
    sensitive: bool,
    started: Instant,
}

impl InFlight<'_> {
    fn path(&self) -> &str {
        self.audit.as_ref().map_or("", |a| a.path.as_str())
    }

    fn finish(self, upstream_status: Option<u16>, outcome: Outcome) {
        self.finish_placing(upstream_status, outcome, Vec::new());
    }

    /// Finishes the record of a request that placed the orders `order_ids`.
    fn finish_placing(
        mut self,
        upstream_status: Option<u16>,
        outcome: Outcome,
        order_ids: Vec<String>,
    ) {
        self.record(upstream_status, outcome, order_ids);
    }

    fn record(&mut self, upstream_status: Option<u16>, outcome: Outcome, order_ids: Vec<String>) {
        if let Some(audit) = self.audit.take() {
            let latency_us = self.started.elapsed().as_micros() as u64;
            audit.finish(
                upstream_status,
                latency_us,
                outcome,
                self.sensitive,
                order_ids,
            );
        }
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.record(None, Outcome::Unknown, Vec::new());
    }
}

/// Headers that ask a server to treat a request as another method. A proxy in front of
/// the exchange that honoured one would make keygate's classification wrong.
const METHOD_OVERRIDE_HEADERS: &[&str] = &[
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
];

/// A native path is accepted only in its one canonical spelling: no percent-encoding,
/// no dot segments, no empty segments, no `;` parameters, no backslashes.
fn check_path(path: &str) -> Result<(), &'static str> {
    let clean = path.starts_with('/')
        && path.len() > 1
        && !path.ends_with('/')
        && path
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'/' || b == b'-' || b == b'_' || b == b'.')
        && !path.contains("//")
        && !path.split('/').any(|s| s == "." || s == "..");
    if clean {
        Ok(())
    } else {
        Err("path is not canonical (encoded characters, dot or empty segments, or parameters)")
    }
}

/// Why public data and signed reads are refused while [`ClientLimits::max_answer_bytes`]
/// is held.
const ANSWER_BACKLOG: &str =
    "keygate: too many large answers are waiting for clients that read them slowly; try again shortly";

/// Whether reading a body failed because it passed [`MAX_REQUEST_BODY_BYTES`].
fn is_length_limit(error: &axum::Error) -> bool {
    caused_by(error, |e| e.is::<http_body_util::LengthLimitError>())
}

/// Whether reading a body failed because the client stopped sending it (closed or reset
/// its connection midway), rather than because what it sent was malformed.
fn is_cut_short(error: &axum::Error) -> bool {
    caused_by(error, |e| {
        e.downcast_ref::<hyper::Error>()
            .is_some_and(|h| h.is_incomplete_message() || h.is_closed())
            || e.downcast_ref::<std::io::Error>().is_some_and(|io| {
                matches!(
                    io.kind(),
                    std::io::ErrorKind::UnexpectedEof
                        | std::io::ErrorKind::ConnectionReset
                        | std::io::ErrorKind::ConnectionAborted
                        | std::io::ErrorKind::BrokenPipe
                )
            })
    })
}

/// Whether `error`, or an error it was caused by, is one `test` picks out.
fn caused_by(
    error: &axum::Error,
    test: impl Fn(&(dyn std::error::Error + 'static)) -> bool,
) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = source {
        if test(e) {
            return true;
        }
        source = e.source();
    }
    false
}

/// `base` (scheme and host), `path`, and `?query` unless the query is empty, in one
/// allocation: every forwarded request makes one.
fn upstream_url(base: &str, path: &str, query: &str) -> String {
    let mut url = String::with_capacity(base.len() + path.len() + 1 + query.len());
    url.push_str(base);
    url.push_str(path);
    if !query.is_empty() {
        url.push('?');
        url.push_str(query);
    }
    url
}

/// The address a request comes from: the peer, unless the peer is a trusted proxy. Then
/// `X-Forwarded-For` is read from the right, hop by hop, and the first address that is not
/// a trusted proxy is the source (or the left-most, if every hop is a trusted proxy).
/// `None` when a trusted proxy sent no `X-Forwarded-For`, or hops the trusted proxies
/// added cannot be read: the source is then unknown, and the request is refused rather
/// than credited to the proxy (a loopback TLS terminator that adds no header would
/// otherwise make every client a loopback one, which the default allow list takes).
fn source_ip(trusted: &[IpNet], peer: IpAddr, headers: &HeaderMap) -> Option<IpAddr> {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|n| n.contains(ip));
    // An IPv4 peer of a dual-stack listener arrives as `::ffff:a.b.c.d`; allow lists
    // name it in IPv4.
    let peer = peer.to_canonical();
    if !is_trusted(&peer) {
        return Some(peer);
    }
    let mut hops: Vec<&str> = Vec::new();
    for value in headers.get_all("x-forwarded-for") {
        hops.extend(value.to_str().ok()?.split(','));
    }
    if hops.is_empty() {
        return None;
    }
    let mut source = peer;
    for hop in hops.iter().rev() {
        source = hop.trim().parse::<IpAddr>().ok()?.to_canonical();
        if !is_trusted(&source) {
            break;
        }
    }
    Some(source)
}

/// The most of any text a request names (method, path, symbol, client order id, asset,
/// destination) or a message an event keeps: whoever reaches the listener chooses them,
/// and a refused request must not cost the log kilobytes.
const MAX_EVENT_TEXT: usize = 512;

/// `text`, cut to [`MAX_EVENT_TEXT`] bytes (at a character boundary) with a note of its
/// full length when longer.
fn bounded(text: String) -> String {
    if text.len() <= MAX_EVENT_TEXT {
        return text;
    }
    let mut end = MAX_EVENT_TEXT;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes)", &text[..end], text.len())
}

/// `terms` with the id of the order it modifies [`bounded`] as any text an event takes
/// from a request.
fn bounded_terms(mut terms: OrderTerms) -> OrderTerms {
    terms.modifies = terms.modifies.map(|order| match order {
        OrderRef::OrderId(id) => OrderRef::OrderId(bounded(id)),
        OrderRef::ClientOrderId(id) => OrderRef::ClientOrderId(bounded(id)),
    });
    terms
}

/// How a request's event is queued for the audit log.
#[derive(Clone, Copy)]
enum AuditLane {
    /// What follows its pending event: what became of an order or a withdrawal is not
    /// dropped under a flood.
    Kept,
    /// The client's own request: counted against that client's bounds.
    Client,
    /// A request without a valid key, or a stale or replayed one: counted against the
    /// bound of requests without a valid key, whatever client it names.
    Unattributed,
}

/// The audit event of one request, filled in as the request path learns more.
///
/// Every request ends in an event: [`Audit::deny`] or [`Audit::finish`] writes it, and
/// if neither did (the request was dropped before it was forwarded: the request path
/// panicked, or keygate stopped serving it), dropping the audit writes one.
///
/// Copied only to build an event from while the request goes on: a copy holds none of
/// the request's reservations ([`Held`]).
#[derive(Clone)]
struct Audit<'a> {
    gw: &'a Gateway,
    exchange: &'static str,
    request_id: String,
    source_ip: IpAddr,
    /// The trusted proxy whose X-Forwarded-For named `source_ip`.
    forwarded_by: Option<String>,
    /// What the request's endpoint does, recorded while `action` is none (the request is
    /// not classified in full yet).
    endpoint_kind: ActionKind,
    method: String,
    path: String,
    client: Option<String>,
    /// The client whose key the request presented, until its signature verifies (then
    /// the name moves into `client`).
    key_of: Option<String>,
    /// Whether the request was signed with the client's previous key, in its rotation's
    /// grace window.
    previous_key: bool,
    account: Option<String>,
    action: Option<Action>,
    notional: Option<Decimal>,
    /// A batch's orders' notionals, as stated or priced (empty for any other request).
    order_notionals: Vec<Option<Decimal>>,
    /// What the decision reserved of the client's daily limits, until the request is
    /// forwarded.
    reservation: Held<DailyReservation>,
    /// The request weight a signed read reserved, until it is forwarded.
    weight: Held<Reservation<'a>>,
    /// The request weight charged to its client, handed back if it is not forwarded.
    charge: Held<Charge<'a>>,
    /// The signature verified, was fresh and was seen for the first time: the request is
    /// the client's own (a stale or replayed one could be anyone's who saw it once).
    attributed: bool,
    /// The pending event is queued: what follows it is kept, however many background
    /// events wait (it may land even when the wait for it timed out).
    pending_queued: bool,
    /// The pending event is durable.
    pending_written: bool,
    /// Its event is made; nothing is left to write on drop.
    recorded: bool,
    /// When the request's head had been read: its latency counts from here.
    started: Instant,
}

impl<'a> Audit<'a> {
    /// The audit of a request from `peer`: its source the address `source_ip` gives (the
    /// peer's own when no trusted proxy's `X-Forwarded-For` names one, in one form: found
    /// by review, an IPv4 proxy on a dual-stack listener was recorded `::ffff:a.b.c.d`
    /// here and `a.b.c.d` elsewhere), and the trusted proxy that vouched for it, so that
    /// a host inside a trusted network naming addresses it has no right to can be found
    /// from the log (found by review). With it, whether the source is known: false when
    /// a trusted proxy's header names none, and the source is then the proxy.
    fn from_peer(
        gw: &'a Gateway,
        exchange: &'static str,
        peer: SocketAddr,
        method: &Method,
        path: &str,
        headers: &HeaderMap,
    ) -> (Audit<'a>, bool) {
        let peer = peer.ip().to_canonical();
        let source = source_ip(&gw.trusted_proxies, peer, headers);
        let mut audit = Audit::new(gw, exchange, source.unwrap_or(peer), method, path);
        if gw.trusted_proxies.iter().any(|net| net.contains(&peer)) {
            audit.forwarded_by = Some(peer.to_string());
        }
        (audit, source.is_some())
    }

    fn new(
        gw: &'a Gateway,
        exchange: &'static str,
        source_ip: IpAddr,
        method: &Method,
        path: &str,
    ) -> Audit<'a> {
        Audit {
            gw,
            exchange,
            request_id: hex::encode(rand::thread_rng().gen::<u64>().to_be_bytes()),
            source_ip,
            forwarded_by: None,
            endpoint_kind: ActionKind::Unknown,
            method: method.as_str().to_owned(),
            path: path.to_owned(),
            client: None,
            key_of: None,
            previous_key: false,
            account: None,
            action: None,
            notional: None,
            order_notionals: Vec::new(),
            reservation: Held(None),
            weight: Held(None),
            charge: Held(None),
            attributed: false,
            pending_queued: false,
            pending_written: false,
            recorded: false,
            started: Instant::now(),
        }
    }

    /// The request event, made of this audit's own fields.
    fn into_event(
        mut self,
        allowed: bool,
        denial: Option<Denial>,
        upstream_status: Option<u16>,
        latency_us: Option<u64>,
        outcome: Outcome,
    ) -> Event {
        self.recorded = true;
        let action = self
            .action
            .take()
            .unwrap_or_else(|| Action::new(self.endpoint_kind, String::new()));
        let destination = action.destination();
        Event {
            ts_ms: now_ms(),
            body: EventBody::Request(RequestEvent {
                request_id: std::mem::take(&mut self.request_id),
                exchange: self.exchange.into(),
                // Moved into `client` when the signature verified: never both.
                key_of: self.key_of.take(),
                client: self.client.take(),
                account: self.account.take(),
                source_ip: self.source_ip.to_string(),
                method: bounded(std::mem::take(&mut self.method)),
                path: bounded(std::mem::take(&mut self.path)),
                action: action.kind,
                symbol: action.listed_symbol().map(bounded),
                side: action.side,
                client_order_id: action.client_order_id.map(bounded),
                notional: self.notional,
                amount: action.amount,
                asset: action.asset.map(bounded),
                destination: destination.map(bounded),
                network: action.network.map(bounded),
                allowed,
                rule: denial.as_ref().map(|d| d.rule),
                message: denial.map(|d| bounded(d.message)),
                upstream_status,
                latency_us,
                outcome,
                validates_only: action.validates_only,
                previous_key: self.previous_key,
                forwarded_by: self.forwarded_by.take(),
                places_no_order: action.places_no_order,
                orders: action
                    .batch
                    .iter()
                    .enumerate()
                    .map(|(i, order)| BatchOrder {
                        symbol: bounded(order.listed_symbol().unwrap_or_default()),
                        side: order.side,
                        client_order_id: order.client_order_id.clone().map(bounded),
                        terms: order.terms.clone().map(bounded_terms),
                        notional: self.order_notionals.get(i).copied().flatten(),
                    })
                    .collect(),
                terms: action.terms.map(bounded_terms),
            }),
        }
    }

    /// [`Audit::deny`] for a request refused before its signature is checked: recorded as
    /// about the client whose API key it presents (`key_of`), if any, unverified.
    fn deny_presenting(
        mut self,
        presented: Option<&str>,
        response: Response,
        rule: Rule,
        message: &str,
    ) -> Response {
        if let Some(api_key) = presented {
            let registry = self.gw.live.snapshot();
            self.key_of = registry.client(api_key).map(|c| c.name.as_str().to_owned());
        }
        self.deny(response, rule, message)
    }

    /// Records a denial (in the background: nothing is forwarded, so nothing waits) and
    /// answers the client.
    fn deny(mut self, response: Response, rule: Rule, message: &str) -> Response {
        tracing::debug!(rule = %rule, path = %self.path, "denied");
        self.release_reservation();
        let gw = self.gw;
        let lane = self.lane();
        let event = self.into_event(
            false,
            Some(Denial::new(rule, message)),
            None,
            None,
            Outcome::NotForwarded,
        );
        gw.append_event(event, lane);
        response
    }

    /// Records a request keygate answered itself with `response`, and returns that.
    fn answer_itself(self, response: Response) -> Response {
        let gw = self.gw;
        let lane = self.lane();
        let latency_us = self.started.elapsed().as_micros() as u64;
        let event = self.into_event(
            true,
            None,
            None,
            Some(latency_us),
            Outcome::AnsweredByKeygate,
        );
        gw.append_event(event, lane);
        response
    }

    /// Hands back what the decision reserved of the client's daily limits, and the
    /// weight a read reserved: the request does not reach the exchange.
    fn release_reservation(&mut self) {
        if let Some(reservation) = self.reservation.0.take() {
            self.gw.decider.release(reservation);
        }
        if let Some(weight) = self.weight.0.take() {
            weight.release();
        }
        if let Some(charge) = self.charge.0.take() {
            charge.refund();
        }
    }

    /// How this request's events are queued.
    fn lane(&self) -> AuditLane {
        match (self.pending_queued, self.attributed) {
            (true, _) => AuditLane::Kept,
            (false, true) => AuditLane::Client,
            (false, false) => AuditLane::Unattributed,
        }
    }

    /// Writes the request event and waits until it is durable.
    async fn write_pending(&mut self) -> Result<u64, NotDurable> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let event = self
            .clone()
            .into_event(true, None, None, None, Outcome::Pending);
        self.pending_queued = self.gw.audit.append_durable(
            event,
            Box::new(move |result| {
                // The request may have stopped waiting (past its deadline); then nobody is.
                let _ = tx.send(result);
            }),
        );
        let result = match tokio::time::timeout(AUDIT_DEADLINE, rx).await {
            Ok(Ok(result)) => result.map_err(NotDurable::Log),
            Ok(Err(_)) => Err(NotDurable::Dropped),
            Err(_) => Err(NotDurable::TimedOut),
        };
        self.pending_written = result.is_ok();
        result
    }

    /// Records what the exchange did.
    fn finish(
        mut self,
        upstream_status: Option<u16>,
        latency_us: u64,
        outcome: Outcome,
        pending: bool,
        order_ids: Vec<String>,
    ) {
        let gw = self.gw;
        let lane = self.lane();
        let event = if pending && self.pending_written {
            self.outcome_event(upstream_status, latency_us, outcome, order_ids)
        } else {
            self.into_event(true, None, upstream_status, Some(latency_us), outcome)
        };
        gw.append_event(event, lane);
    }

    /// The event that follows a pending one, with what became of the request.
    fn outcome_event(
        &mut self,
        upstream_status: Option<u16>,
        latency_us: u64,
        outcome: Outcome,
        order_ids: Vec<String>,
    ) -> Event {
        self.recorded = true;
        Event {
            ts_ms: now_ms(),
            body: EventBody::Outcome(OutcomeEvent {
                request_id: std::mem::take(&mut self.request_id),
                client: self.client.take(),
                upstream_status,
                latency_us,
                outcome,
                order_ids,
                interrupted: false,
            }),
        }
    }
}

/// Why a request's pending event is not known to be durable: the request is then not
/// forwarded. Said in the request's denial, serve's log and the `audit_unavailable`
/// alert; none of it holds a secret (the audit log's errors name the database, not what
/// is in it).
#[derive(Debug)]
enum NotDurable {
    /// The audit log said why.
    Log(keygate_audit::Error),
    /// The audit log dropped the event without saying what became of it.
    Dropped,
    /// No word within [`AUDIT_DEADLINE`]; the event may still be written.
    TimedOut,
}

impl std::fmt::Display for NotDurable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NotDurable::Log(e) => e.fmt(f),
            NotDurable::Dropped => f.write_str("audit writer dropped the event"),
            NotDurable::TimedOut => f.write_str("audit write timed out"),
        }
    }
}

/// What a request reserved (of its client's daily limits, of the request weight), held
/// by one [`Audit`] only: a copy of the audit (made to write its pending event) holds
/// none, so that the reservation is handed back once at most.
struct Held<T>(Option<T>);

impl<T> Clone for Held<T> {
    /// Holds nothing: see the type's doc.
    fn clone(&self) -> Held<T> {
        Held(None)
    }
}

impl Drop for Audit<'_> {
    /// A request dropped before it was forwarded (the request path panicked, with rule
    /// `internal`; or keygate stopped serving it, with rule `client_gone`: a client that
    /// hangs up does not drop its request, see `server.rs`): recorded as denied and not
    /// forwarded. The event is whole, so that it stands alone even when a pending event it
    /// follows was never written; when that one was, they share their `request_id`.
    fn drop(&mut self) {
        if self.recorded {
            return;
        }
        let (rule, message) = if std::thread::panicking() {
            (Rule::Internal, "keygate failed while handling the request")
        } else {
            (
                Rule::ClientGone,
                "the connection ended before the request was forwarded",
            )
        };
        self.release_reservation();
        let gw = self.gw;
        let event = self.clone().into_event(
            false,
            Some(Denial::new(rule, message)),
            None,
            None,
            Outcome::NotForwarded,
        );
        self.recorded = true;
        gw.append_event(event, self.lane());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_forwarded_timestamp_is_as_old_as_the_bots() {
        let exchange_now_ms = 1_700_000_010_000;
        let now_us = 1_700_000_000_000_000;
        // Signed 3.2005 s ago: 3201 ms older than the exchange's now.
        assert_eq!(
            timestamp_as_old_as(exchange_now_ms, now_us - 3_200_500, now_us),
            exchange_now_ms - 3_201
        );
        assert_eq!(
            timestamp_as_old_as(exchange_now_ms, now_us, now_us),
            exchange_now_ms
        );
        // A bot ahead of keygate's clock: the exchange's now, not later.
        assert_eq!(
            timestamp_as_old_as(exchange_now_ms, now_us + 800_000, now_us),
            exchange_now_ms
        );
    }

    #[test]
    fn long_event_texts_are_cut_with_their_length() {
        assert_eq!(bounded("short".into()), "short");
        let long = "é".repeat(400);
        let cut = bounded(long.clone());
        assert!(cut.ends_with("… (800 bytes)"), "{cut}");
        assert!(cut.len() < MAX_EVENT_TEXT + 20);
        assert!(long.starts_with(cut.trim_end_matches("… (800 bytes)")));
    }

    #[test]
    fn only_canonical_paths_pass() {
        assert!(check_path("/api/v3/order").is_ok());
        for bad in [
            "/api/v3/../v3/order",
            "/api//v3/order",
            "/api/v3/order;x=1",
            "/api/v3/%6Frder",
            "/api/v3/order/",
            "/",
            "/api\\v3",
            "/api/./v3",
        ] {
            assert!(check_path(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let source = |peer: &str, forwarded: &[&str]| {
            let mut headers = HeaderMap::new();
            for value in forwarded {
                headers.append("x-forwarded-for", HeaderValue::from_str(value).unwrap());
            }
            source_ip(&trusted, ip(peer), &headers)
        };
        // An untrusted peer is the source, whatever it claims.
        assert_eq!(source("127.0.0.1", &["1.2.3.4"]), Some(ip("127.0.0.1")));
        // Through a trusted proxy: the right-most hop that is not a trusted proxy.
        assert_eq!(
            source("10.0.0.1", &["1.2.3.4, 10.0.0.2"]),
            Some(ip("1.2.3.4"))
        );
        assert_eq!(
            source("10.0.0.1", &["9.9.9.9", "1.2.3.4"]),
            Some(ip("1.2.3.4"))
        );
        // What the client itself wrote, left of that hop, does not matter.
        assert_eq!(
            source("10.0.0.1", &["junk, 203.0.113.9"]),
            Some(ip("203.0.113.9"))
        );
        // Every hop a trusted proxy: the left-most.
        assert_eq!(
            source("10.0.0.1", &["10.0.0.3, 10.0.0.2"]),
            Some(ip("10.0.0.3"))
        );
        // A regression test: a trusted proxy that sent no header was taken for the
        // client, so a loopback TLS terminator adding none made every client loopback.
        assert_eq!(source("10.0.0.1", &[]), None);
        assert_eq!(source("127.0.0.1", &[]), Some(ip("127.0.0.1")));
        // Hops the trusted proxies added that cannot be read: unknown, never the proxy.
        assert_eq!(source("10.0.0.1", &["1.2.3.4, junk"]), None);
        assert_eq!(source("10.0.0.1", &["1.2.3.4:5678"]), None);
        assert_eq!(source("10.0.0.1", &["10.0.0.2, junk, 10.0.0.3"]), None);
        // A dual-stack listener's IPv4 peers and hops are IPv4, as allow lists name them.
        assert_eq!(
            source("::ffff:127.0.0.1", &["1.2.3.4"]),
            Some(ip("127.0.0.1"))
        );
        assert_eq!(
            source("::ffff:10.0.0.1", &["::ffff:1.2.3.4"]),
            Some(ip("1.2.3.4"))
        );
    }
}
