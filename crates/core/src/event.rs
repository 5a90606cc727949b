//! Audit events: what happened, as plain data. Chaining and storage live in `keygate-audit`.

use std::collections::BTreeMap;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::{ActionKind, OrderTerms, Rule, Side};

/// One audit record as appended to the log.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Milliseconds since the Unix epoch, from the gateway's clock.
    pub ts_ms: u64,
    /// What happened.
    #[serde(flatten)]
    pub body: EventBody,
}

/// The kinds of event. Request events dominate the log, so they are not boxed.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventBody {
    /// A request reached the gateway and was decided.
    Request(RequestEvent),
    /// The upstream result of a request whose event was written before forwarding.
    Outcome(OutcomeEvent),
    /// An operator changed accounts, clients or keys.
    Admin(AdminEvent),
    /// Background events that were not kept because the audit writer was too far behind.
    Lost(LostEvents),
}

/// What became of a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Denied or rejected; nothing was sent upstream.
    NotForwarded,
    /// Written before forwarding; an [`OutcomeEvent`] follows.
    Pending,
    /// The exchange answered (any status).
    Answered,
    /// The upstream could not be reached; nothing was sent.
    UpstreamUnreachable,
    /// keygate answered the request itself and sent nothing upstream: a public call
    /// asking the exchange's clock, answered with the clock keygate judges timestamps on.
    AnsweredByKeygate,
    /// The request was sent and may or may not have executed: the upstream timed out, or
    /// answered that it does not know (a 5xx, Binance's -1007) to an action that moves
    /// money.
    Unknown,
}

/// A request and its decision. No secret or signature ever goes in here.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RequestEvent {
    /// Random id tying this event to its [`OutcomeEvent`].
    pub request_id: String,
    /// The exchange route.
    pub exchange: String,
    /// The client, when the API key matched one and the signature verified.
    pub client: Option<String>,
    /// The client whose API key the request presented when `client` is none: a key of
    /// its own whose signature did not verify, or one a rotation retired. An API key is
    /// no secret, so the request is not the client's own; it is about its key, and
    /// `audit query --client` lists it. None in events written before keygate recorded
    /// it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_of: Option<String>,
    /// The account the client is bound to.
    pub account: Option<String>,
    /// The source address used for the decision.
    pub source_ip: String,
    /// The trusted proxy the request came through (`keygate serve --trusted-proxy`), whose
    /// `X-Forwarded-For` named `source_ip`: which proxy vouched for that address. None
    /// for a request from its source itself, and in events written before keygate
    /// recorded it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forwarded_by: Option<String>,
    /// HTTP method.
    pub method: String,
    /// Native path (without the `/binance` prefix).
    pub path: String,
    /// The classified action.
    pub action: ActionKind,
    /// Symbol, for orders and symbol-scoped reads, as symbol lists name it
    /// ([`Action::listed_symbol`](crate::Action::listed_symbol)): `BTCUSDT` on spot,
    /// `usdm:BTCUSDT` on USD-M futures.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub symbol: Option<String>,
    /// Side, for orders.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub side: Option<Side>,
    /// The id the client gave a new order, when it gave one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_order_id: Option<String>,
    /// Quote notional, for orders.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notional: Option<Decimal>,
    /// Withdrawal or transfer amount.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub amount: Option<Decimal>,
    /// Withdrawal or transfer asset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub asset: Option<String>,
    /// Withdrawal destination, `ADDRESS` or `ADDRESS/TAG`, as the request named it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub destination: Option<String>,
    /// The network of a withdrawal (`ETH`, `TRX`), as the request named it; none when it
    /// named none (the exchange takes the asset's default network). Events written
    /// before keygate recorded it have none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    /// Whether the request was allowed.
    pub allowed: bool,
    /// The rule that denied it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<Rule>,
    /// The message the client was given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The upstream HTTP status, when known at write time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream_status: Option<u16>,
    /// Time spent in keygate and upstream, in microseconds, when known at write time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_us: Option<u64>,
    /// What became of it.
    pub outcome: Outcome,
    /// A call that asks and moves nothing: a test order (`order/test`), which the
    /// exchange checks and does not place, so its notional counts against no daily total;
    /// a convert quote, which tells of no money moved.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub validates_only: bool,
    /// Signed with the client's previous key, in the grace window of its rotation: a
    /// rotation is often made because that key may have leaked, and its use then tells
    /// the bot that has not switched (or whoever holds the leaked key) from the new one.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub previous_key: bool,
    /// A trade by scope that places no order (a USD-M setting such as the leverage, an
    /// amendment that can only lower an order's quantity), as the exchange's adapter
    /// classified it: what lists the orders a client placed leaves it out. False in
    /// events written before keygate recorded it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub places_no_order: bool,
    /// The orders of a batch (Binance's `batchOrders`), as each names itself: `symbol`,
    /// `side` and `client_order_id` above are then none, and `notional` is the batch's
    /// total. Empty for any other request, and in events written before keygate read
    /// batches.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub orders: Vec<BatchOrder>,
    /// For an order the exchange lets be modified in place (a USD-M limit order), its
    /// price and quantity, and for a modification the order it modifies
    /// ([`OrderTerms`]); a batch's orders each carry their own. None in events written
    /// before keygate recorded them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub terms: Option<OrderTerms>,
}

impl RequestEvent {
    /// What each order the request named says of itself: a batch's orders, or the
    /// request's own symbol, side and client order id (none of them for a request that
    /// names no symbol).
    pub fn named_orders(&self) -> Vec<BatchOrder> {
        if !self.orders.is_empty() {
            return self.orders.clone();
        }
        match &self.symbol {
            Some(symbol) => vec![BatchOrder {
                symbol: symbol.clone(),
                side: self.side,
                client_order_id: self.client_order_id.clone(),
                terms: self.terms.clone(),
                notional: self.notional,
            }],
            None => Vec::new(),
        }
    }

    /// The symbol the request names, or a batch's: each of its orders' symbols, in
    /// order, separated by spaces (`usdm:BTCUSDT usdm:ETHUSDT`); `None` when it names
    /// none. For what shows an event on one line or in one column.
    pub fn symbols_named(&self) -> Option<String> {
        if self.orders.is_empty() {
            return self.symbol.clone();
        }
        let symbols: Vec<&str> = self.orders.iter().map(|o| o.symbol.as_str()).collect();
        Some(symbols.join(" "))
    }
}

/// One order of a batch, as its [`RequestEvent`] records it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchOrder {
    /// Its symbol, as symbol lists name it (`usdm:BTCUSDT`).
    pub symbol: String,
    /// Its side, when it names one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub side: Option<Side>,
    /// The id the client gave it, when it gave one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_order_id: Option<String>,
    /// Its price and quantity, and the order it modifies, as [`RequestEvent::terms`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub terms: Option<OrderTerms>,
    /// Its notional, as it stated it or as keygate priced it; none when neither (an
    /// unlimited client's market order), and in events written before keygate recorded
    /// it. A batch's `notional` is their total only when every order's is known; a
    /// restarted gateway counts the known ones toward the day, as the running one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notional: Option<Decimal>,
}

/// The upstream result of a request written with [`Outcome::Pending`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutcomeEvent {
    /// The request's id.
    pub request_id: String,
    /// The client.
    pub client: Option<String>,
    /// The upstream HTTP status, when one came back.
    pub upstream_status: Option<u16>,
    /// Latency in microseconds.
    pub latency_us: u64,
    /// What became of it.
    pub outcome: Outcome,
    /// The exchange's ids of the orders it placed, when the request placed orders.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub order_ids: Vec<String>,
    /// keygate stopped (it crashed, or was killed) before the exchange answered: written,
    /// with [`Outcome::Unknown`], by the next `keygate serve` as it starts.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub interrupted: bool,
}

/// An administrative change.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AdminEvent {
    /// Who made it (`cli` for the local command line).
    pub actor: String,
    /// What was done, as `object.verb` (`client.revoke`).
    pub change: String,
    /// The account or client it was done to.
    pub target: String,
    /// Non-secret details.
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub detail: serde_json::Value,
}

/// Background events (reads, denials, and the outcomes of requests already recorded)
/// that the audit writer did not keep: so many of their kind were waiting (events of
/// requests without a valid key, of clients, of one client) that keeping more would have
/// let whoever floods the gateway grow its memory without end, or their commit failed (a
/// full disk). The requests of orders, withdrawals and transfers that were forwarded are
/// never among them: they wait for their event to be written, and are refused when it is
/// not; what came of one may be ([`LostEvents::outcomes`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LostEvents {
    /// How many events were not kept.
    pub count: u64,
    /// When the first of them was to be written (ms since the Unix epoch).
    pub first_ms: u64,
    /// When the last of them was.
    pub last_ms: u64,
    /// How many of them named each client (events of requests whose signature verified;
    /// the rest, of requests without a valid key, are in `count` only).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub clients: BTreeMap<String, u64>,
    /// The request ids of the outcome events among them (the first
    /// [`LostEvents::MAX_OUTCOMES`]): requests that were forwarded, what came of which is
    /// not recorded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outcomes: Vec<String>,
    /// How many of them were withdrawals or transfers denied, by the client whose key
    /// they presented (whether or not their signature verified): someone holding that
    /// key tried to move funds, which the monitor alerts however the loss is quieted
    /// (found by review: a flood of requests without a valid key hid a frozen key's
    /// denied withdrawals in the count).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub funds_denied: BTreeMap<String, u64>,
}

impl LostEvents {
    /// How many request ids of lost outcomes a record names.
    pub const MAX_OUTCOMES: usize = 100;
}

impl Event {
    /// The client the event concerns, if any.
    pub fn client(&self) -> Option<&str> {
        match &self.body {
            EventBody::Request(r) => r.client.as_deref(),
            EventBody::Outcome(o) => o.client.as_deref(),
            EventBody::Admin(a) if a.change.starts_with("client.") => Some(&a.target),
            EventBody::Admin(_) | EventBody::Lost(_) => None,
        }
    }

    /// Whether the event concerns client `name`: its own requests and changes, requests
    /// that presented its API key without its signature (`key_of`), an
    /// administrative change that names it among others (`vault.seal`'s `clients`,
    /// `vault.upgrade`'s `tagged_clients`, `vault.panic`'s `frozen_clients`,
    /// `revoked_clients` and `deleted_clients`, `account.remove`'s `revoked_clients` and
    /// `deleted_clients`), and a record of lost
    /// events that counts some of its own.
    pub fn concerns_client(&self, name: &str) -> bool {
        match &self.body {
            EventBody::Lost(lost) => lost.clients.contains_key(name),
            EventBody::Admin(admin) if !admin.change.starts_with("client.") => [
                "clients",
                "tagged_clients",
                "frozen_clients",
                "revoked_clients",
                "deleted_clients",
            ]
            .iter()
            .filter_map(|field| admin.detail.get(field)?.as_array())
            .flatten()
            .any(|listed| {
                listed.as_str() == Some(name)
                    || listed.get("name").and_then(|n| n.as_str()) == Some(name)
            }),
            EventBody::Request(r) if r.key_of.as_deref() == Some(name) => true,
            _ => self.client() == Some(name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An order event as keygate wrote it before it read batches.
    const OLD_ORDER: &str = r#"{"ts_ms":1,"type":"request","request_id":"r1","exchange":"binance","client":"bot1","account":"main","source_ip":"127.0.0.1","method":"POST","path":"/fapi/v1/order","action":"trade","symbol":"usdm:BTCUSDT","side":"buy","client_order_id":"c1","notional":"100","allowed":true,"outcome":"pending"}"#;

    /// Found by review: a request that presented a client's key without its signature
    /// (one a rotation retired, or a wrong signature) was about no client, so `audit
    /// query --client` left out an old key's use.
    #[test]
    fn a_request_that_presented_a_clients_key_concerns_it() {
        let mut event: Event = serde_json::from_str(OLD_ORDER).unwrap();
        let EventBody::Request(request) = &mut event.body else {
            panic!("a request");
        };
        assert_eq!(request.key_of, None, "events before key_of read without it");
        request.client = None;
        request.key_of = Some("bot2".into());
        assert!(event.concerns_client("bot2"));
        assert!(!event.concerns_client("bot1"));
        assert_eq!(event.client(), None, "not its own request");
        assert!(serde_json::to_string(&event)
            .unwrap()
            .contains(r#""key_of":"bot2""#));
    }

    #[test]
    fn an_event_written_before_batches_were_read_reads_and_writes_back_the_same() {
        let event: Event = serde_json::from_str(OLD_ORDER).unwrap();
        let EventBody::Request(request) = &event.body else {
            panic!("not a request: {event:?}");
        };
        assert!(request.orders.is_empty());
        assert_eq!(
            request.named_orders(),
            vec![BatchOrder {
                symbol: "usdm:BTCUSDT".into(),
                side: Some(Side::Buy),
                client_order_id: Some("c1".into()),
                terms: None,
                notional: request.notional,
            }]
        );
        // The hash chain covers the text: it must come back byte for byte.
        assert_eq!(serde_json::to_string(&event).unwrap(), OLD_ORDER);
    }

    #[test]
    fn a_batch_event_records_each_order_and_reads_back() {
        let mut event: Event = serde_json::from_str(OLD_ORDER).unwrap();
        let EventBody::Request(request) = &mut event.body else {
            panic!("not a request");
        };
        request.path = "/fapi/v1/batchOrders".into();
        request.symbol = None;
        request.side = None;
        request.client_order_id = None;
        request.orders = vec![
            BatchOrder {
                symbol: "usdm:BTCUSDT".into(),
                side: Some(Side::Buy),
                client_order_id: Some("a".into()),
                terms: None,
                notional: Some(rust_decimal::Decimal::from(800)),
            },
            BatchOrder {
                symbol: "usdm:ETHUSDT".into(),
                side: Some(Side::Sell),
                client_order_id: None,
                terms: None,
                notional: None,
            },
        ];
        let text = serde_json::to_string(&event).unwrap();
        assert!(
            text.contains(r#""orders":[{"symbol":"usdm:BTCUSDT","side":"buy","client_order_id":"a","notional":"800"},{"symbol":"usdm:ETHUSDT","side":"sell"}]"#),
            "{text}"
        );
        let back: Event = serde_json::from_str(&text).unwrap();
        assert_eq!(back, event);
        let EventBody::Request(request) = &back.body else {
            panic!("not a request");
        };
        assert_eq!(request.named_orders().len(), 2);
    }
}
