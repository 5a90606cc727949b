//! Exchange adapters: read a bot's signed request the way the exchange would, and write
//! the same request signed with the real key.
//!
//! For each exchange, one module knows:
//!
//! - how the request is parsed, byte for byte, and which parsing ambiguities to refuse
//!   (duplicate parameters, a parameter in both query and body);
//! - how a client's signature is verified over the bytes as received;
//! - what the request would do ([`keygate_core::Action`]): the endpoint table, where an
//!   endpoint not in the table is [`keygate_core::ActionKind::Unknown`];
//! - how the same parameters are re-signed with the real key.
//!
//! Each exchange implements [`Adapter`] (and its request type [`ClientRequest`]); the
//! gateway's request path is written once against these traits, so adding an exchange
//! to the gateway means adding one module here, one simulator in `keygate-mockex`, and
//! its route in the gateway (the adapter as one field of `Gateway`, one line in its
//! `route`). Reconciliation (`keygate reconcile`) is written against [`Adapter`] too, and
//! takes an exchange's list windows, page sizes and weight ceilings from its adapter.
//!
//! It is not a network client: no I/O happens here, so every function can be tested
//! against the exchanges' published vectors (`crates/exchanges/tests/vectors.json`).
//!
//! ```
//! use keygate_exchanges::binance;
//!
//! let secret = b"NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j";
//! let payload = b"symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=0.1&recvWindow=5000&timestamp=1499827319559";
//! assert_eq!(
//!     binance::hmac_signature(secret, payload),
//!     "c8db56825ae71d6d79447849e617115f4a920fa2acdcab2b053c4b2838bd6b71"
//! );
//! ```

pub mod binance;

pub use binance::Binance;
pub use keygate_core::{ExchangeConditionalOrder, ExchangeOrder, ExchangeWithdrawal};

/// The furthest ahead of keygate's clock a request's timestamp may run and still be
/// fresh, with every exchange (Binance: one second): a keygate that ran before may have
/// taken a request signed up to this long after it stopped.
pub const MAX_TIMESTAMP_AHEAD_MS: u64 = 1_000;

/// The longest a signed request stays valid after its timestamp, with every exchange
/// (Binance's largest `recvWindow`): how long a signature must be remembered to be
/// refused when sent again.
pub const LONGEST_WINDOW_MS: u64 = binance::MAX_RECV_WINDOW_MS;

/// The most characters of an exchange's own error text ([`Adapter::error_text`]) that
/// keygate repeats: an answer is the exchange's to write, and not always short.
pub const MAX_ERROR_TEXT: usize = 200;

use std::borrow::Cow;
use std::collections::BTreeMap;

use ed25519_dalek::VerifyingKey;
use http::HeaderMap;
use keygate_core::{Action, ActionKind, Exchange, Market};
use rust_decimal::Decimal;

/// What a trade request places, as reconciliation lists it ([`Adapter::order_placement`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OrderPlacement {
    /// The market whose orders the request's are: each numbers its orders apart.
    pub market: Market,
    /// Whether they are conditional orders, which the exchange numbers apart from orders
    /// until they trigger.
    pub conditional: bool,
    /// Whether the request places new orders: not one that changes the account's
    /// settings, tests an order or modifies one in place (which keeps its id).
    pub places_new: bool,
    /// How many orders the exchange lists for each order the request names: one, or the
    /// legs of an order list.
    pub legs: u8,
}

/// [`Adapter::order_placement`] of `exchange`'s adapter, for code that knows an exchange
/// by name (an audit event's) rather than by its adapter.
pub fn order_placement(exchange: Exchange, method: &str, path: &str) -> Option<OrderPlacement> {
    match exchange {
        Exchange::Binance => Binance.order_placement(method, path),
    }
}

/// The top of a market's book, as an order is priced at it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Quote {
    /// Where a buy starts filling: the best ask (the best bid, when a crossed book has it
    /// higher).
    pub price: Decimal,
    /// What the best ask offers: a buy of more fills above it, and is priced at the book.
    pub size: Decimal,
}

/// How a client proves who it is.
pub enum ClientKey<'a> {
    /// A shared HMAC secret.
    Hmac(&'a [u8]),
    /// An Ed25519 public key; keygate never sees the private key.
    Ed25519(&'a VerifyingKey),
}

/// A request rebuilt for the exchange, signed with the real key. Its `Debug` shows no
/// header value (one is the real API key) and no signature, and the header values are
/// wiped when it is dropped.
pub struct Forward {
    /// The query string, without `?`.
    pub query: String,
    /// The body; empty when the client sent none.
    pub body: String,
    /// The headers the exchange needs (the real API key, the content type). Nothing of the
    /// client's headers is carried over.
    pub headers: Vec<(&'static str, String)>,
}

impl std::fmt::Debug for Forward {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let unsigned = |text: &str| {
            text.split('&')
                .map(|pair| match pair.split_once('=') {
                    Some(("signature", _)) => "signature=<withheld>",
                    _ => pair,
                })
                .collect::<Vec<_>>()
                .join("&")
        };
        let header_names: Vec<&str> = self.headers.iter().map(|(name, _)| *name).collect();
        f.debug_struct("Forward")
            .field("query", &unsigned(&self.query))
            .field("body", &unsigned(&self.body))
            .field("header_names", &header_names)
            .finish()
    }
}

impl Drop for Forward {
    fn drop(&mut self) {
        for (_, value) in &mut self.headers {
            zeroize::Zeroize::zeroize(value);
        }
    }
}

/// Why keygate answers a request itself instead of forwarding it. The adapter says it in
/// the exchange's own error shape, so that client libraries raise their usual exceptions.
#[derive(Clone, Copy, Debug)]
pub enum Refusal<'a> {
    /// The request did not parse, verify or pass the time window.
    Invalid(&'a Error),
    /// Authentication or policy said no; the message starts with `keygate:` and names the
    /// rule, never a key.
    Denied(&'a str),
    /// The signature was used before inside its window: a captured request sent again,
    /// or the same request signed twice in the same millisecond (threads of one bot
    /// sharing a key). Answered as a nonce used twice, which clients sign again; the
    /// message starts with `keygate:`.
    Replayed(&'a str),
    /// The order the request names is not one its client may name: answered as the
    /// exchange answers an order it does not have, so that a client learns nothing of
    /// orders outside its symbol list (not even that they exist).
    NoSuchOrder,
    /// No usable API key header.
    MissingKey,
    /// Nothing is routed at this path.
    UnknownRoute,
    /// The request is ambiguous or malformed in a way the parser does not see (path,
    /// headers).
    Malformed(&'a str),
    /// The body is larger than any real request.
    TooLarge,
    /// The audit log cannot be written, so nothing was forwarded.
    AuditUnavailable,
    /// No answer came from the exchange (none in time, or one broken off); the request
    /// may have executed.
    NoAnswer,
    /// The exchange could not be reached; nothing was sent.
    Unreachable,
    /// Something inside keygate failed; the detail is in its log.
    Internal,
    /// Too many requests: the message starts with `keygate:` and says which limit.
    TooMany(&'a str),
    /// The exchange answered that the account placed too many orders, and the time it
    /// asked for is not over: the message starts with `keygate:` and says until when.
    TooManyOrders(&'a str),
    /// The exchange asked this address to send nothing more for a while (a [`BackOff`]
    /// not yet over): the message starts with `keygate:` and says until when; `banned`
    /// when the exchange banned the address rather than asked it to wait.
    ExchangeBackOff {
        /// Why, and until when.
        message: &'a str,
        /// Whether the address is banned.
        banned: bool,
    },
}

/// An exchange's answer asking the address that sent it to send nothing more for a while:
/// its request weight is used up, or it is banned for having gone on regardless.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BackOff {
    /// How long, in seconds, as the exchange said (`Retry-After`).
    pub seconds: u64,
    /// Whether the address is banned from the exchange's whole host (every weight pool
    /// on it), not only asked to let one pool's weight recover.
    pub banned: bool,
}

/// The time window of a fresh signed request, in microseconds since the epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Freshness {
    /// Its timestamp.
    pub signed_at_us: u64,
    /// The last instant at which the exchange's timestamp check takes it: after that the
    /// request is stale, so a copy of it is refused without being remembered.
    pub valid_through_us: u64,
}

/// A client's request, parsed once and then verified, classified and re-signed from that
/// one parsed form.
pub trait ClientRequest: Send + Sync {
    /// Whether the request carries a signature at all.
    fn is_signed(&self) -> bool;
    /// A value unique to this signed request, for replay detection: the signature in
    /// one canonical spelling, since a signature the exchange accepts in several
    /// spellings must be caught in any of them.
    fn replay_id(&self) -> Option<Cow<'_, str>>;
    /// Verifies the client's signature over the bytes as received.
    fn verify(&self, key: ClientKey<'_>) -> Result<(), Error>;
    /// Checks the request's timestamp against `now_ms`: when it was signed, and until
    /// when the exchange would take it.
    fn check_freshness(&self, now_ms: u64) -> Result<Freshness, Error>;
    /// Checks what `method` at the native `path` the request goes to asks of its
    /// parameters beyond what every path asks (Binance: futures take an integer
    /// `recvWindow`, spot a decimal one; a batch's list of orders must read): a request
    /// the exchange would refuse as malformed, or that keygate cannot read, is not sent.
    fn check_for_path(&self, method: &str, path: &str) -> Result<(), Error>;
    /// What the request would do at `method path`.
    fn classify(&self, method: &str, path: &str) -> Action;
    /// The same request signed with the real key, stamped `timestamp_ms`.
    fn resign(&self, api_key: &str, secret: &[u8], timestamp_ms: u64) -> Forward;
    /// For a request at `method path` that the exchange takes by an account-wide id
    /// whatever symbol it names (Binance: cancelling or reading one conditional order),
    /// the signed read that says which symbol that order is in: a native path and a query
    /// to parse and re-sign (its timestamp a placeholder); `None` for any other request,
    /// whose symbol binds it.
    fn symbol_lookup(&self, method: &str, path: &str) -> Option<(&'static str, String)>;
}

/// What a real key may do, as the exchange reports it (`keygate doctor --exchange`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyPermissions {
    /// It may withdraw funds off the exchange.
    pub can_withdraw: bool,
    /// It may move funds between wallets or accounts.
    pub can_transfer: bool,
    /// It may trade USD-M futures (and so have placed orders there).
    pub can_trade_futures: bool,
    /// It may use the margin account.
    pub can_use_margin: bool,
    /// It may trade options.
    pub can_trade_options: bool,
    /// It may trade with portfolio margin.
    pub can_use_portfolio_margin: bool,
    /// It works only from the addresses the exchange was told.
    pub ip_restricted: bool,
}

impl KeyPermissions {
    /// The markets the key may trade in that keygate neither forwards to nor reconciles:
    /// an order a leaked key placed there is found by nothing.
    pub fn unwatched_markets(&self) -> Vec<&'static str> {
        [
            (self.can_use_margin, "margin"),
            (self.can_trade_options, "options"),
            (self.can_use_portfolio_margin, "portfolio margin"),
        ]
        .into_iter()
        .filter_map(|(may, market)| may.then_some(market))
        .collect()
    }
}

/// Where a native path goes on the exchange.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Route<'p> {
    /// The host's base URL, `https://host`.
    pub base: &'static str,
    /// The path on that host.
    pub path: &'p str,
}

/// One exchange, as the gateway's request path sees it.
pub trait Adapter: Send + Sync + 'static {
    /// The exchange's parsed request.
    type Request: ClientRequest;

    /// Which exchange this is; its name is the route prefix (`/binance`).
    fn exchange(&self) -> Exchange;
    /// Where `path` goes: the exchange host and the path on it. `None` for a path keygate
    /// does not route.
    fn route<'p>(&self, path: &'p str) -> Option<Route<'p>>;
    /// The class of `method path` from the endpoint table; unknown is denied.
    fn classify_endpoint(&self, method: &str, path: &str) -> ActionKind;
    /// The client's API key: exactly one header, or `None`.
    fn client_api_key<'h>(&self, headers: &'h HeaderMap) -> Option<&'h str>;
    /// Parses the raw query (without `?`) and body.
    fn parse(
        &self,
        query: &str,
        body: &[u8],
        content_type: Option<&str>,
    ) -> Result<Self::Request, Error>;
    /// The public endpoint reporting the exchange's clock for `path`'s host.
    fn time_path(&self, path: &str) -> &'static str;
    /// The answer to `method path?query` when it is a client asking the exchange's clock,
    /// stating `now_ms`: keygate judges a client's timestamps on its own clock, so a
    /// client that sets its clock by the exchange's (python-binance's `AsyncClient`
    /// always does) must be told keygate's. `None` for any other call.
    fn clock_answer(&self, method: &str, path: &str, query: &str, now_ms: u64) -> Option<Vec<u8>>;
    /// Reads the clock out of that endpoint's answer, in milliseconds.
    fn parse_server_time(&self, body: &[u8]) -> Option<u64>;
    /// The public endpoint (path and query) pricing `symbol` on `path`'s market.
    fn ticker_path(&self, path: &str, symbol: &str) -> Option<String>;
    /// Reads the price an order of `symbol` is counted at out of that endpoint's answer:
    /// at least what a market buy starts filling at (Binance: the best ask), with what is
    /// offered there; `None` when the answer prices another symbol, or has no such price.
    fn parse_ticker_price(&self, body: &[u8], symbol: &str) -> Option<Quote>;
    /// Whether `order` (one of [`Action::orders`]), a buy priced at the market, may fill
    /// at once from the best ask up (a market buy, a limit pegged to the asks): then one
    /// of more than the best ask offers is priced at the book. Not a stop or a
    /// take-profit, which fills when it triggers, an order list's leg, a modification, or
    /// a test that places nothing.
    fn takes_the_book(&self, order: &Action) -> bool;
    /// Whether `order` is priced at the book for its whole quantity: one that takes it at
    /// once ([`Adapter::takes_the_book`]), or a buy that becomes a market order when it
    /// triggers (a stop or take-profit without a limit price, an order list's leg of such
    /// a type), which then takes the book as a market buy does (found by review: one of
    /// more than the book holds was counted at its trigger, where the same market buy
    /// was refused).
    fn priced_at_the_book(&self, order: &Action) -> bool {
        self.takes_the_book(order)
    }
    /// The public endpoint (path and query) listing the asks of `symbol`'s book on
    /// `path`'s market, deep enough to price a buy of more than the best ask offers.
    fn depth_path(&self, path: &str, symbol: &str) -> Option<String>;
    /// Reads out of that endpoint's answer the price up to which a buy of `quantity`
    /// fills: the ask at which the asks, best first, add up to it. `None` when they do
    /// not (the book is too thin, or the answer lists fewer levels), or it does not read.
    fn parse_depth_price(&self, body: &[u8], quantity: Decimal) -> Option<Decimal>;
    /// The HTTP status and body of a refusal, in the exchange's error shape.
    fn refusal(&self, refusal: Refusal<'_>) -> (u16, Vec<u8>);
    /// The pool of request weight a call on `path` draws from: the exchange limits each
    /// pool on its own (Binance: `/api`, `/sapi`, `/fapi`…), so what one reports says
    /// nothing of another, even when one upstream URL serves them all.
    fn weight_pool(&self, path: &str) -> &'static str;
    /// The request weight the exchange says this address has used in the current minute
    /// of `pool` (as [`Adapter::weight_pool`] names it), from the headers of the answer to
    /// a call that drew from it.
    fn used_weight(&self, pool: &str, headers: &HeaderMap) -> Option<u64>;
    /// Whether a header of the exchange's answer is passed back to the bot (and kept for
    /// [`Adapter::used_weight`]), beside the content type and `Retry-After`, which are
    /// for every exchange: its rate-limit counters, say. Never a header that could carry
    /// an API key, should a proxy on the way echo the real one back.
    fn passes_back_header(&self, name: &str) -> bool;
    /// The most of `pool`'s weight in a minute that public data, order pricing and signed
    /// reads may use, whatever the gateway's caps are set to: what is above is kept for
    /// orders, cancels and reconciliation's reads (which stop at a ceiling of their own
    /// above this, by more than the heaviest single call), so that neither callers
    /// without a key nor a bot's reads can keep the check for a leaked key from running.
    fn shared_weight_limit(&self, pool: &str) -> u64;
    /// The request weight of `pool` used in a minute past which reconciliation's reads
    /// wait for the next minute: above [`Adapter::shared_weight_limit`] by more than the
    /// heaviest single call, so that neither public data nor the bots' signed reads can
    /// hold the weight there, and below [`Adapter::weight_limit`] by what the bots' orders
    /// and cancels need.
    fn reconciliation_weight_ceiling(&self, pool: &str) -> u64;
    /// The request weight the exchange allows an address in a minute in `pool` (past it,
    /// it refuses everything from the address, and bans it if it goes on).
    fn weight_limit(&self, pool: &str) -> u64;
    /// The request weight past which the lookups that price orders pause in any pool,
    /// however far the gateway's public cap would let them go (half as much again past
    /// it): below the lowest limit of a pool orders go to ([`Adapter::weight_limit`]) by
    /// what cancels need, since a ban for weight stops cancels too.
    fn pricing_weight_ceiling(&self) -> u64;
    /// The most symbols the orders of one request are priced in: as many as a batch of
    /// orders can name, so that no request costs the exchange's request weight without
    /// end. Orders in symbols past it are left unpriced, and so denied where a notional
    /// limit applies.
    fn max_priced_symbols(&self) -> usize;
    /// An upper estimate of the request weight of the public call `path?query`, which the
    /// gateway reserves while the call is in flight, so that a burst of public calls sent
    /// before any answer reports its weight cannot pass the cap all at once.
    fn public_weight(&self, path: &str, query: &str) -> u64;
    /// An upper estimate of the request weight of the signed read `path?query` (an
    /// [`ActionKind::Read`]), which the gateway reserves while the read is in flight, as it
    /// does [`Adapter::public_weight`]'s, so that reads cannot spend the weight that
    /// pricing orders needs.
    fn signed_read_weight(&self, path: &str, query: &str) -> u64;
    /// An upper estimate of the request weight of the signed request `method path` that
    /// is not a read (an order, a test order, a cancel, a withdrawal…), which the gateway
    /// charges to its client: no client may spend more than its share of a pool.
    fn order_weight(&self, method: &str, path: &str) -> u64;
    /// The signed read (a native path) that reports what the real key may do.
    fn permissions_path(&self) -> &'static str;
    /// Reads that endpoint's answer.
    fn parse_permissions(&self, body: &[u8]) -> Option<KeyPermissions>;
    /// The signed read (a native path and query) of what the account holds in `market`,
    /// asset by asset; `None` for a market whose holdings keygate does not read.
    fn holdings(&self, market: Market) -> Option<(&'static str, String)>;
    /// Reads that endpoint's answer: each asset held, with what is held of it (free and
    /// locked together), above zero.
    fn parse_holdings(&self, body: &[u8]) -> Option<BTreeMap<String, Decimal>>;
    /// The public read (a native path and query) that names every symbol of `market`;
    /// `None` as for [`Adapter::holdings`].
    fn symbol_list(&self, market: Market) -> Option<(&'static str, String)>;
    /// Reads that endpoint's answer: the symbols, as the exchange names them, each with
    /// its last price when the answer gives one that reads.
    fn parse_symbol_list(&self, body: &[u8]) -> Option<Vec<(String, Option<Decimal>)>>;
    /// The signed read (a native path and query) listing the fees the account paid for
    /// its trades in `market` from `from_ms` to `to_ms`, every symbol's, one a trade: the
    /// `page`th page (from 1) of at most [`TRADE_FEES_PAGE`]. `None` for a market whose
    /// fees keygate does not read.
    fn trade_fees(
        &self,
        market: Market,
        from_ms: u64,
        to_ms: u64,
        page: u32,
    ) -> Option<(&'static str, String)>;
    /// Reads that endpoint's answer: the symbol of each fee listed.
    fn parse_trade_fee_symbols(&self, body: &[u8]) -> Option<Vec<String>>;
    /// Reads the symbol out of the answer of a [`ClientRequest::symbol_lookup`] read.
    fn parse_order_symbol(&self, body: &[u8]) -> Option<String>;
    /// The parameters of a signed read keygate makes with the real key (its `query`, the
    /// exchange's clock `timestamp_ms` and whatever window the exchange takes), for
    /// [`Adapter::parse`] to read and [`ClientRequest::resign`] to sign.
    fn own_read_params(&self, query: &str, timestamp_ms: u64) -> String;
    /// Why a request header the exchange acts on is refused: one that changes what the
    /// exchange reads or answers (Binance's `X-MBX-TIME-UNIT: MICROSECOND`) in a way
    /// keygate does not follow. `None` for any other header (none of a bot's headers is
    /// forwarded).
    fn refused_header(&self, name: &str, value: &[u8]) -> Option<&'static str>;
    /// Whether the answer of a [`ClientRequest::symbol_lookup`] read says that the order
    /// it names does not exist (an order already cancelled, or a stop that triggered):
    /// the request that named it is answered so, as the exchange would answer it.
    fn is_no_such_order(&self, status: http::StatusCode, body: &[u8]) -> bool;
    /// The signed read (native path and query, without timestamp) listing the real key's
    /// account's withdrawals applied for from `since_ms` on, newest first, the first
    /// `offset` left out: a full answer is followed by the next page.
    fn withdrawal_history(&self, since_ms: u64, offset: usize) -> (&'static str, String);
    /// The most withdrawals one answer of [`Adapter::withdrawal_history`]'s endpoint lists:
    /// an answer this long may leave some out, listed from the next `offset`.
    fn withdrawal_history_limit(&self) -> usize;
    /// How far back from now [`Adapter::withdrawal_history`] lists withdrawals, in
    /// milliseconds: a window that starts earlier cannot be read in full.
    fn withdrawal_history_span_ms(&self) -> u64;
    /// Reads that endpoint's answer.
    fn parse_withdrawal_history(&self, body: &[u8]) -> Option<Vec<ExchangeWithdrawal>>;
    /// The exchange's ids of the orders a successful trade request to `path` (a native
    /// path) placed, from its answer: one for a single order, several for an order list;
    /// for a conditional order, its own id (numbered apart from orders); none when the
    /// answer names none.
    fn placed_order_ids(&self, path: &str, body: &[u8]) -> Vec<String>;
    /// What a trade request `method path` (a native path) places, in a market whose
    /// orders reconciliation lists; `None` in another.
    fn order_placement(&self, method: &str, path: &str) -> Option<OrderPlacement>;
    /// Whether an answer of `status` with `body` says that the exchange does not know
    /// whether the request executed, or says nothing keygate can read of it (a success
    /// that is not the exchange's format): an order or a withdrawal so answered may have
    /// gone through, and is recorded with its outcome unknown.
    fn is_execution_unknown(&self, status: http::StatusCode, body: &[u8]) -> bool;
    /// Whether an answer of `status` with `headers` and `body` asks the address to back
    /// off, and for how long: sending more before then prolongs or brings on a ban that
    /// stops every client behind keygate. A limit of one account (its orders) is not the
    /// address's, and asks nothing of the others.
    fn back_off(
        &self,
        status: http::StatusCode,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Option<BackOff>;
    /// Whether an answer of `status` with `headers` and `body` says the account placed too
    /// many orders (Binance's 429 and -1015), and for how many seconds it should place
    /// none: the account's limit, not the address's ([`Adapter::back_off`]), so its
    /// cancels and reads and the other accounts go on. Going on placing orders after such
    /// a 429 risks a ban of the address, which stops every client behind keygate.
    fn orders_back_off(
        &self,
        status: http::StatusCode,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Option<u64>;
    /// Whether the exchange refused a request for its timestamp (Binance's -1021): the
    /// timestamp keygate stamped on its clock, corrected by the offset it measured, was
    /// off by the exchange's, which may have moved since.
    fn refused_the_timestamp(&self, status: http::StatusCode, body: &[u8]) -> bool;
    /// Whether a read refused with `status` and `body` may succeed when asked again: the
    /// exchange was busy, failed, or found the request's time off, rather than refusing
    /// the request itself (a symbol it does not know, a permission the key lacks).
    fn may_pass_when_asked_again(&self, status: http::StatusCode, body: &[u8]) -> bool;
    /// What a refusal's `body` says in the exchange's own words (Binance: `-2015: Invalid
    /// API-key, IP, or permissions for action.`), at most [`MAX_ERROR_TEXT`] characters
    /// of it, control characters left out; `None` when it is not in the exchange's error
    /// shape.
    fn error_text(&self, body: &[u8]) -> Option<String>;
    /// The markets whose orders reconciliation lists, in the order it lists them: those
    /// where [`Adapter::order_history`] and [`Adapter::open_orders`] are a read.
    fn order_markets(&self) -> &'static [Market];
    /// The signed read (native path and query, without timestamp) listing the real key's
    /// account's orders in `symbol` of `market` placed from `from_ms` to `to_ms` (less than
    /// [`Adapter::order_history_span_ms`] apart); `None` for a market whose orders keygate
    /// does not list.
    fn order_history(
        &self,
        market: Market,
        symbol: &str,
        from_ms: u64,
        to_ms: u64,
    ) -> Option<(&'static str, String)>;
    /// The longest span of [`Adapter::order_history`], in milliseconds, in every market it
    /// lists: `to_ms` is less than this after `from_ms` (Binance: a day, the longest span
    /// spot lists at once; USD-M takes longer spans, and a day serves both).
    fn order_history_span_ms(&self) -> u64;
    /// The most orders one answer of [`Adapter::order_history`]'s endpoint lists: an
    /// answer this long may leave some of its span out, listed again in parts.
    fn order_history_limit(&self) -> usize;
    /// The signed read (a native path and query) listing the account's open orders of
    /// `market` in every symbol, whoever placed them; `None` as for
    /// [`Adapter::order_history`].
    fn open_orders(&self, market: Market) -> Option<(&'static str, String)>;
    /// Reads the answer of [`Adapter::order_history`]'s endpoint or of
    /// [`Adapter::open_orders`]'s.
    fn parse_order_history(&self, body: &[u8]) -> Option<Vec<ExchangeOrder>>;
    /// Whether `order` looks like one the exchange placed itself (a futures liquidation),
    /// by its client order id. A hint only: a key may choose such an id, so only an order
    /// the exchange lists among [`Adapter::forced_orders`] is the exchange's.
    fn may_be_forced(&self, order: &ExchangeOrder) -> bool;
    /// The signed read (native path and query) listing the orders the exchange placed
    /// itself in the account's `market` from `from_ms` to `to_ms` (liquidations,
    /// auto-deleveraging), read as [`Adapter::parse_order_history`] reads; `None` for a
    /// market where it places none keygate lists.
    fn forced_orders(
        &self,
        market: Market,
        from_ms: u64,
        to_ms: u64,
    ) -> Option<(&'static str, String)>;
    /// The signed read (native path and query) listing the account's conditional orders
    /// in `symbol` of `market` placed from `from_ms` to `to_ms` (less than
    /// [`Adapter::conditional_order_history_span_ms`] apart), whatever became of them;
    /// `None` for a market without conditional orders of their own.
    fn conditional_order_history(
        &self,
        market: Market,
        symbol: &str,
        from_ms: u64,
        to_ms: u64,
    ) -> Option<(&'static str, String)>;
    /// The longest span of [`Adapter::conditional_order_history`], in milliseconds, as
    /// [`Adapter::order_history_span_ms`] is of orders (Binance: less than seven days).
    fn conditional_order_history_span_ms(&self) -> u64;
    /// The most conditional orders one answer of
    /// [`Adapter::conditional_order_history`]'s endpoint lists, as
    /// [`Adapter::order_history_limit`] is of orders.
    fn conditional_order_history_limit(&self) -> usize;
    /// The signed read (a native path and query) listing the account's conditional orders
    /// of `market` waiting for their trigger, in every symbol; `None` as for
    /// [`Adapter::conditional_order_history`].
    fn open_conditional_orders(&self, market: Market) -> Option<(&'static str, String)>;
    /// Reads the answer of either of those endpoints.
    fn parse_conditional_orders(&self, body: &[u8]) -> Option<Vec<ExchangeConditionalOrder>>;
}

/// The most fees one page of [`Adapter::trade_fees`] lists: a full page is followed by the
/// next.
pub const TRADE_FEES_PAGE: usize = 1000;

/// An error reading a client's request. Each variant maps to the exchange's own error code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A parameter appears twice, in the query, in the body, or across both.
    #[error("duplicate values for parameter {name:?}")]
    DuplicateParameter {
        /// The parameter's name.
        name: String,
    },
    /// The request cannot be read unambiguously.
    #[error("malformed request: {reason}")]
    Malformed {
        /// What is wrong, safe to show the client.
        reason: String,
    },
    /// The request carries more parameters than any request of the exchange's does.
    #[error("more than {limit} parameters")]
    TooManyParameters {
        /// The most a request may carry.
        limit: usize,
    },
    /// A required parameter is absent.
    #[error("mandatory parameter {name:?} was not sent")]
    MissingParameter {
        /// The parameter's name.
        name: &'static str,
    },
    /// The signature does not verify.
    #[error("signature for this request is not valid")]
    BadSignature,
    /// The timestamp is outside the receive window.
    #[error("timestamp for this request is outside of the recvWindow")]
    StaleTimestamp,
    /// The timestamp is ahead of the clock it is checked against by more than the
    /// exchange allows ([`MAX_TIMESTAMP_AHEAD_MS`]).
    #[error(
        "timestamp for this request was {MAX_TIMESTAMP_AHEAD_MS}ms ahead of the server's time"
    )]
    TimestampAhead,
    /// The receive window is larger than the exchange allows.
    #[error("recvWindow must be at most {}", binance::MAX_RECV_WINDOW_MS)]
    RecvWindowTooLarge,
}
