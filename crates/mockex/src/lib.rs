//! A faithful local simulator of the Binance spot and USD-M futures REST APIs.
//!
//! keygate's integration tests, the `keygate demo` command, the benchmarks and the ccxt
//! end-to-end test talk to this crate over a real loopback socket as if it were Binance.
//!
//! **What it is.** An axum server that authenticates requests exactly as Binance documents
//! (`X-MBX-APIKEY`, HMAC-SHA256 hex or Ed25519 `signature` over the raw query and body as
//! received, the `timestamp`/`recvWindow` window, -1101 for a repeated parameter), holds
//! each key to the permissions its credential describes ([`Restrictions`]), refuses what
//! Binance refuses with Binance's own codes and error shape, reports request weight in
//! Binance's headers and enforces its limits, and keeps per-account balances, wallets,
//! orders, trades, withdrawals and positions, shared by every key of an account
//! ([`Credential::in_account`]). Every request that reaches it is recorded before it is
//! validated, so that a test can prove that a request keygate denied never arrived
//! (`GET /__mock/requests`, cleared by `POST /__mock/reset`).
//!
//! **What it is not.** Not a matching engine: prices never move, a buy at the best ask or
//! a sell at the best bid fills at once, and nothing else fills or triggers unless a test
//! says so (`POST /__mock/trigger`). No COIN-M, options, margin, hedge mode, RSA keys or
//! WebSocket streams; it never opens an outbound connection.
//!
//! `docs/simulator.md` in the repository says, endpoint by endpoint, what it checks, what
//! it keeps and what it leaves out (order types and lists, market data, positions,
//! margin, wallets, price bands, weight limits, the calls ccxt makes that it does not
//! serve).
//!
//! Main types: [`Simulator`] (the shared state and its [`Simulator::router`]),
//! [`RunningSimulator`] (returned by [`spawn`]), [`Credential`] with its [`Restrictions`]
//! and account, [`RecordedRequest`] and [`Received`] (a recorded request with its
//! headers), and [`Error`]. For tests of keygate's alerts, [`spawn_receiver`] runs a
//! webhook receiver ([`WebhookReceiver`]) and [`spawn_smtp_sink`] a mail server that
//! keeps what it is sent ([`SmtpSink`]).
//!
//! ```no_run
//! # async fn demo() -> Result<(), keygate_mockex::Error> {
//! use keygate_mockex::{spawn, Credential, Restrictions};
//!
//! let key = Credential::hmac("my-key", "my-secret").in_account("main");
//! // A second key of the same account that works from anywhere, so may not withdraw;
//! // it sees the balances and orders of `my-key`.
//! let open = Credential::hmac("open-key", "open-secret")
//!     .in_account("main")
//!     .with_restrictions(Restrictions {
//!         ip_restrict: false,
//!         withdrawals: false,
//!         ..Restrictions::default()
//!     });
//! // A key with an account of its own.
//! let other = Credential::hmac("other-key", "other-secret");
//! let sim = spawn(
//!     "127.0.0.1:0".parse().expect("literal address"),
//!     vec![key, open, other],
//! )
//! .await?;
//! println!("Binance lookalike at {}", sim.url());
//! assert!(sim.simulator().requests().is_empty());
//! sim.shutdown();
//! # Ok(())
//! # }
//! ```

mod algo;
mod auth;
mod book;
mod limits;
mod lists;
mod market;
mod routes;
mod smtp;
mod webhook;

pub use smtp::{spawn_smtp_sink, Mail, SmtpSink, BUSY_DOMAIN, GONE_DOMAIN, TARPIT_DOMAIN};
pub use webhook::{spawn_receiver, Hook, WebhookReceiver, RETRY_AFTER_S};

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use crate::auth::{AccountId, Key, KeyMaterial};
use crate::book::Account;
use crate::limits::{Admission, Counters, Family, WeightLimits};
use crate::routes::{ApiError, Ids};

/// How long a graceful shutdown waits for open connections before giving up on them.
const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(5);

/// One API key the simulator accepts, with what it may do.
///
/// Exactly one of `secret` (HMAC-SHA256) or `ed25519_public_key` should be set; when both
/// are, the Ed25519 key wins. `Debug` never prints the secret.
///
/// In a credentials file (see [`load_credentials`]) each entry is an object with
/// `api_key`, `secret` or `ed25519_public_key`, and optionally the fields of
/// [`Restrictions`] (`ip_restrict`, `spot_trading`, `futures`, `withdrawals`,
/// `internal_transfer`, `universal_transfer`, `margin`, each `true` or `false`) and
/// `account`, the name of the account the key belongs to (see [`Credential::in_account`]);
/// a restriction left out keeps its default, no `account` gives the key an account of its
/// own, and any other field is an error, so that a misspelt restriction is not silently
/// the default.
#[derive(Clone, Deserialize)]
#[serde(from = "CredentialEntry")]
pub struct Credential {
    /// The value clients send in `X-MBX-APIKEY`.
    pub api_key: String,
    /// The HMAC secret (raw ASCII, as Binance issues it).
    pub secret: Option<String>,
    /// Base64 of the 32 raw public-key bytes, or a PEM `PUBLIC KEY` (SPKI).
    pub ed25519_public_key: Option<String>,
    /// What the key may do; checked, with the key itself, when the simulator takes it.
    pub restrictions: Restrictions,
    /// The account the key belongs to: every key naming the same account shares its
    /// balances, orders, trades, withdrawals, transfers and positions. `None` gives the key
    /// an account of its own, which no other key sees.
    pub account: Option<String>,
}

impl Credential {
    /// An HMAC-SHA256 key with the default [`Restrictions`].
    pub fn hmac(api_key: impl Into<String>, secret: impl Into<String>) -> Credential {
        Credential {
            api_key: api_key.into(),
            secret: Some(secret.into()),
            ed25519_public_key: None,
            restrictions: Restrictions::default(),
            account: None,
        }
    }

    /// An Ed25519 key with the default [`Restrictions`], given as base64 of the 32 raw
    /// bytes or as a SPKI PEM.
    pub fn ed25519(api_key: impl Into<String>, public_key: impl Into<String>) -> Credential {
        Credential {
            api_key: api_key.into(),
            secret: None,
            ed25519_public_key: Some(public_key.into()),
            restrictions: Restrictions::default(),
            account: None,
        }
    }

    /// The same key with `restrictions` in place of its own.
    pub fn with_restrictions(mut self, restrictions: Restrictions) -> Credential {
        self.restrictions = restrictions;
        self
    }

    /// The same key as one of account `name`'s keys: it sees, and acts on, the same
    /// balances, orders, trades, withdrawals, transfers and positions as every other key
    /// in `name`, as a Binance account's API keys do. What belongs to the key stays its
    /// own: its secret or public key, its [`Restrictions`], and the `X-MBX-APIKEY`
    /// recorded for its requests.
    pub fn in_account(mut self, name: impl Into<String>) -> Credential {
        self.account = Some(name.into());
        self
    }
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credential")
            .field("api_key", &self.api_key)
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .field("ed25519_public_key", &self.ed25519_public_key)
            .field("restrictions", &self.restrictions)
            .field("account", &self.account)
            .finish()
    }
}

/// What one API key may do: what `GET /sapi/v1/account/apiRestrictions` answers for it,
/// and what the simulator enforces.
///
/// A key without `spot_trading` is refused spot orders and cancels, one without `futures`
/// every signed `/fapi` endpoint, each with -2015 "Invalid API-key, IP, or permissions
/// for action."; one without `withdrawals` a withdrawal, one without `universal_transfer`
/// a transfer between its wallets, each with 401 -1002 "You are not authorized to
/// execute this request.", as Binance refuses them. Reading is
/// always on, as on Binance, where it cannot be turned off. `ip_restrict` is reported, not
/// checked: the simulator takes every caller to be at an address the key allows.
///
/// The default is a key Binance can issue and that every endpoint the simulator serves
/// but the universal transfer accepts: IP-restricted, with spot trading, futures and
/// withdrawals, without internal or universal transfers. Binance enables withdrawals only on an IP-restricted key, so
/// `withdrawals` without `ip_restrict` is a state no key can be in, and the simulator
/// refuses a credential that describes it (see [`load_credentials`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Restrictions {
    /// `ipRestrict`: the key works only from the addresses listed for it.
    pub ip_restrict: bool,
    /// `enableSpotAndMarginTrading`: placing and cancelling spot orders.
    pub spot_trading: bool,
    /// `enableFutures`: the USD-M futures API (`/fapi`).
    pub futures: bool,
    /// `enableWithdrawals`: `POST /sapi/v1/capital/withdraw/apply`; needs `ip_restrict`.
    pub withdrawals: bool,
    /// `enableInternalTransfer`: transfers between master and sub-accounts (reported only;
    /// the simulator has no sub-accounts).
    pub internal_transfer: bool,
    /// `permitsUniversalTransfer`: `POST /sapi/v1/asset/transfer`.
    pub universal_transfer: bool,
    /// `enableMargin`: the margin account (reported only; the simulator has no margin
    /// endpoint).
    pub margin: bool,
}

impl Default for Restrictions {
    fn default() -> Restrictions {
        Restrictions {
            ip_restrict: true,
            spot_trading: true,
            futures: true,
            withdrawals: true,
            internal_transfer: false,
            universal_transfer: false,
            margin: false,
        }
    }
}

impl Restrictions {
    /// Why no Binance key can have these restrictions, if none can.
    pub(crate) fn impossible(&self) -> Option<&'static str> {
        (self.withdrawals && !self.ip_restrict).then_some(
            "withdrawals without an IP restriction: Binance enables withdrawals only on an \
             IP-restricted key (set \"ip_restrict\": true or \"withdrawals\": false)",
        )
    }
}

/// One entry of a credentials file, as written; becomes a [`Credential`].
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CredentialEntry {
    api_key: String,
    #[serde(default)]
    secret: Option<String>,
    #[serde(default)]
    ed25519_public_key: Option<String>,
    #[serde(default)]
    ip_restrict: Option<bool>,
    #[serde(default)]
    spot_trading: Option<bool>,
    #[serde(default)]
    futures: Option<bool>,
    #[serde(default)]
    withdrawals: Option<bool>,
    #[serde(default)]
    internal_transfer: Option<bool>,
    #[serde(default)]
    universal_transfer: Option<bool>,
    #[serde(default)]
    margin: Option<bool>,
    #[serde(default)]
    account: Option<String>,
}

impl From<CredentialEntry> for Credential {
    fn from(entry: CredentialEntry) -> Credential {
        let default = Restrictions::default();
        Credential {
            api_key: entry.api_key,
            secret: entry.secret,
            ed25519_public_key: entry.ed25519_public_key,
            restrictions: Restrictions {
                ip_restrict: entry.ip_restrict.unwrap_or(default.ip_restrict),
                spot_trading: entry.spot_trading.unwrap_or(default.spot_trading),
                futures: entry.futures.unwrap_or(default.futures),
                withdrawals: entry.withdrawals.unwrap_or(default.withdrawals),
                internal_transfer: entry.internal_transfer.unwrap_or(default.internal_transfer),
                universal_transfer: entry
                    .universal_transfer
                    .unwrap_or(default.universal_transfer),
                margin: entry.margin.unwrap_or(default.margin),
            },
            account: entry.account,
        }
    }
}

/// Reads a JSON list of `{"api_key", "secret"}` or `{"api_key", "ed25519_public_key"}`
/// objects, each optionally with its [`Restrictions`] and the `account` it belongs to (see
/// [`Credential`]), and checks that each one is usable: a key, restrictions a Binance key
/// can have, an account name that is not empty, and no API key given twice.
///
/// Here `trader` and `reader` are two keys of account `main` (one set of balances and
/// orders, each key with its own permissions), and `other` has an account of its own:
///
/// ```json
/// [
///   {"api_key": "trader", "secret": "s1", "account": "main"},
///   {"api_key": "reader", "secret": "s2", "account": "main", "ip_restrict": false,
///    "withdrawals": false, "spot_trading": false, "futures": false},
///   {"api_key": "other", "secret": "s3"}
/// ]
/// ```
pub fn load_credentials(path: &Path) -> Result<Vec<Credential>, Error> {
    let text = read_credentials_file(path).map_err(|source| Error::ReadCredentials {
        path: path.to_owned(),
        source,
    })?;
    let credentials: Vec<Credential> =
        serde_json::from_slice(&text).map_err(|source| Error::ParseCredentials {
            path: path.to_owned(),
            source,
        })?;
    let mut seen = HashSet::new();
    for credential in &credentials {
        Key::from_credential(credential)?;
        if !seen.insert(credential.api_key.as_str()) {
            return Err(Error::InvalidCredential {
                api_key: credential.api_key.clone(),
                reason: "given twice: one key has one secret and one account",
            });
        }
    }
    Ok(credentials)
}

/// The largest credentials file read: thousands of keys, so that a path to a device
/// (`/dev/zero`) is refused rather than read until memory runs out.
const MAX_CREDENTIALS_FILE_BYTES: u64 = 1 << 20;

/// Reads a regular file of at most [`MAX_CREDENTIALS_FILE_BYTES`].
fn read_credentials_file(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read as _;
    let file = std::fs::File::open(path)?;
    let refused = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidInput, what);
    if !file.metadata()?.is_file() {
        return Err(refused("not a regular file"));
    }
    let mut bytes = Vec::new();
    file.take(MAX_CREDENTIALS_FILE_BYTES + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_CREDENTIALS_FILE_BYTES {
        return Err(refused("larger than a credentials file may be (1 MiB)"));
    }
    Ok(bytes)
}

/// Checks a Binance `signature` value for `payload` with this crate's own verifier.
///
/// `payload` is the raw query string (minus `signature`) concatenated without separator to
/// the raw form body; `signature` is the value as sent (hex for HMAC keys; for Ed25519 keys,
/// base64, then percent-encoded, read as Binance reads a parameter: a `+` left unencoded is
/// a space, so such a signature fails). Returns false for an unusable credential. Exposed
/// so other crates can cross-check their signer against an independent implementation.
pub fn verify_signature(credential: &Credential, payload: &[u8], signature: &str) -> bool {
    KeyMaterial::from_credential(credential)
        .map(|material| material.verify(payload, signature))
        .unwrap_or(false)
}

/// The simulator's errors.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The credentials file could not be read.
    #[error("cannot read credentials file {path}")]
    ReadCredentials {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The credentials file is not a JSON list of credentials.
    #[error("cannot parse credentials file {path}")]
    ParseCredentials {
        /// The file.
        path: PathBuf,
        /// The JSON error (position only, never file content).
        source: serde_json::Error,
    },
    /// A credential has no usable secret or public key, or describes restrictions no
    /// Binance key can have.
    #[error("invalid credential for api key {api_key}: {reason}")]
    InvalidCredential {
        /// The credential's API key.
        api_key: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// The listen address could not be bound.
    #[error("cannot bind {addr}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The server failed while accepting or serving.
    #[error("simulator server failed")]
    Serve {
        /// The I/O error.
        source: std::io::Error,
    },
}

/// One request as it reached the simulator, recorded before any validation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedRequest {
    /// HTTP method, e.g. `POST`.
    pub method: String,
    /// Path without the query, e.g. `/api/v3/order`.
    pub path: String,
    /// Raw query string as received (empty when there was none).
    pub query: String,
    /// Raw body as received (lossily decoded as UTF-8).
    pub body: String,
    /// The `X-MBX-APIKEY` header, if sent.
    pub api_key: Option<String>,
}

/// One request as it reached the simulator, with every header it carried.
///
/// `GET /__mock/requests` answers a list of these: the fields of [`RecordedRequest`] and
/// `headers`, a list of `[name, value]` pairs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Received {
    /// The request line and body.
    #[serde(flatten)]
    pub request: RecordedRequest,
    /// Every header in the order received, names in lower case, values lossily decoded
    /// as UTF-8. A header sent twice is listed twice.
    pub headers: Vec<(String, String)>,
}

impl Received {
    /// The values of header `name` (any case), in the order received.
    pub fn header<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// The simulator's shared state: keys, accounts, orders, trades and the request record.
///
/// Cloning is cheap and shares the state.
#[derive(Clone)]
pub struct Simulator {
    inner: Arc<Inner>,
}

struct Inner {
    keys: HashMap<String, Key>,
    state: Mutex<State>,
    record: Mutex<Vec<Received>>,
    /// Request weight and spot orders counted, as the rate-limit headers report them,
    /// with the weight limits and each host's 429s and bans.
    limits: Mutex<Counters>,
    started_ms: u64,
    /// The simulator's clock minus the machine's, in milliseconds.
    clock_offset_ms: AtomicI64,
    /// Symbols whose price the public endpoints do not tell.
    withheld: Mutex<HashSet<String>>,
    /// Paths every request to which fails.
    failing: Mutex<HashSet<String>>,
    /// Paths every request to which runs and is then answered "execution status unknown".
    answered_unknown: Mutex<HashSet<String>>,
    /// Paths every request to which is answered this much later.
    delayed: Mutex<HashMap<String, Duration>>,
}

struct State {
    /// One account for each account named in credentials and each key that names none.
    accounts: HashMap<AccountId, Account>,
    ids: Ids,
}

impl State {
    /// Fresh accounts for `keys`: one for each account they name, however many keys name
    /// it, and one for each key that names none.
    fn new<'a>(keys: impl Iterator<Item = &'a Key>) -> State {
        State {
            accounts: keys
                .map(|key| (key.account.clone(), Account::new()))
                .collect(),
            ids: Ids {
                next_order_id: 1,
                next_trade_id: 1,
                next_withdraw_id: 1,
                next_cancel_id: 1,
                next_transfer_id: 1,
                next_algo_id: algo::FIRST_ALGO_ID,
                next_order_list_id: lists::FIRST_ORDER_LIST_ID,
            },
        }
    }
}

/// Polls `read` until it holds `n` items or `timeout` has passed; returns the last read.
fn wait_for<T>(n: usize, timeout: Duration, read: impl Fn() -> Vec<T>) -> Vec<T> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let items = read();
        if items.len() >= n || std::time::Instant::now() >= deadline {
            return items;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Locks a mutex, ignoring poisoning: every critical section leaves the state consistent
/// before anything that could panic, so a poisoned lock holds usable data.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Milliseconds since the Unix epoch (0 if the clock is before 1970).
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

impl Simulator {
    /// Creates a simulator accepting `credentials`, each account with fresh starting
    /// balances (10 BTC, 100 ETH, 1 000 000 USDT, 1000 BNB, 10 000 XRP on spot; 100 000
    /// USDT on USD-M): one account for each name the credentials give in
    /// [`Credential::account`], shared by the keys that give it, and one for each key that
    /// gives none.
    ///
    /// A credential that is unusable (see [`load_credentials`]), restrictions no Binance
    /// key can have included, is skipped with a warning, so requests with its key get -2015.
    pub fn new(credentials: Vec<Credential>) -> Simulator {
        let mut keys = HashMap::new();
        for credential in &credentials {
            match Key::from_credential(credential) {
                Ok(key) => {
                    keys.insert(credential.api_key.clone(), key);
                }
                Err(error) => tracing::warn!(%error, "skipping credential"),
            }
        }
        let state = State::new(keys.values());
        Simulator {
            inner: Arc::new(Inner {
                keys,
                state: Mutex::new(state),
                record: Mutex::new(Vec::new()),
                limits: Mutex::new(Counters::default()),
                started_ms: now_ms(),
                clock_offset_ms: AtomicI64::new(0),
                withheld: Mutex::new(HashSet::new()),
                failing: Mutex::new(HashSet::new()),
                answered_unknown: Mutex::new(HashSet::new()),
                delayed: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// The HTTP application; every path is handled, unknown ones with a 404.
    pub fn router(&self) -> axum::Router {
        routes::router(self.clone())
    }

    /// A copy of the request record, oldest first.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.inner.record)
            .iter()
            .map(|r| r.request.clone())
            .collect()
    }

    /// A copy of the request record with each request's headers, oldest first.
    pub fn received(&self) -> Vec<Received> {
        lock(&self.inner.record).clone()
    }

    /// Runs the simulator's clock `offset_ms` ahead of the machine's (behind, if
    /// negative): `serverTime`, the `timestamp` window of signed requests and the times
    /// written into answers all follow it, as they follow the exchange's own clock.
    pub fn set_clock_offset_ms(&self, offset_ms: i64) {
        self.inner
            .clock_offset_ms
            .store(offset_ms, Ordering::Relaxed);
    }

    /// The simulator's clock, in milliseconds since the Unix epoch: the machine's plus
    /// the offset set with [`Simulator::set_clock_offset_ms`].
    pub fn clock_ms(&self) -> u64 {
        now_ms().saturating_add_signed(self.inner.clock_offset_ms.load(Ordering::Relaxed))
    }

    /// Makes the public price endpoints (`ticker/price`, `ticker/24hr`, `bookTicker`)
    /// refuse to tell the price of `symbol`, as an exchange under load may: asked for it
    /// alone they answer HTTP 503 with code -1001, and lists of every symbol leave it out.
    /// Orders on it are still taken.
    pub fn withhold_price(&self, symbol: &str) {
        lock(&self.inner.withheld).insert(symbol.to_owned());
    }

    pub(crate) fn is_price_withheld(&self, symbol: &str) -> bool {
        lock(&self.inner.withheld).contains(symbol)
    }

    /// Makes every later request to `path` fail as an exchange under load may: HTTP 503
    /// with code -1001, after it is recorded and before anything else is looked at.
    pub fn fail_endpoint(&self, path: &str) {
        lock(&self.inner.failing).insert(path.to_owned());
    }

    pub(crate) fn is_failing(&self, path: &str) -> bool {
        lock(&self.inner.failing).contains(path)
    }

    /// Makes every later request to `path`, whatever its method, run as usual and then be
    /// answered HTTP 503 with code -1007, "execution status unknown", as Binance answers
    /// when its matching engine times out: an order so answered may well have been
    /// placed, and it is, if it passed the simulator's checks (one refused is answered
    /// so too).
    pub fn answer_unknown_after_execution(&self, path: &str) {
        lock(&self.inner.answered_unknown).insert(path.to_owned());
    }

    pub(crate) fn answers_unknown(&self, path: &str) -> bool {
        lock(&self.inner.answered_unknown).contains(path)
    }

    /// Makes every later request to `path` wait `delay` before it is handled, as an
    /// exchange under load may: it is recorded when it arrives, and then answered (or
    /// failed, see [`Simulator::fail_endpoint`]) as usual, its signature's `timestamp`
    /// window checked at that later time. A zero `delay` answers `path` at once again.
    pub fn delay_endpoint(&self, path: &str, delay: Duration) {
        let mut delayed = lock(&self.inner.delayed);
        if delay.is_zero() {
            delayed.remove(path);
        } else {
            delayed.insert(path.to_owned(), delay);
        }
    }

    /// How long requests to `path` wait before they are handled, if at all.
    pub(crate) fn delay_of(&self, path: &str) -> Option<Duration> {
        lock(&self.inner.delayed).get(path).copied()
    }

    /// Sets the request-weight limit per minute of every API family (`/api`, the
    /// IP-weighted `/sapi`, `/fapi`, `/dapi`) to `limit`, from now on; the weight already
    /// used this minute, and any ban, stand. For tests of what a client does past the
    /// limit (a small `limit`), or of load that Binance would refuse (`u64::MAX`, no
    /// limit). See the crate documentation for what happens past it.
    pub fn set_weight_limit(&self, limit: u64) {
        self.change_limits(|limits| limits.each(limit));
    }

    /// Replaces the limits with what `change` makes of them.
    fn change_limits(&self, change: impl FnOnce(WeightLimits) -> WeightLimits) {
        let mut counters = lock(&self.inner.limits);
        let limits = change(counters.limits());
        counters.set_limits(limits);
    }

    /// Sets the length of a host's first IP ban to `seconds` (at least 1; Binance's is 120),
    /// from the next ban on; each later ban lasts twice the one before, three days at most.
    pub fn set_first_ban_s(&self, seconds: u64) {
        self.change_limits(|limits| WeightLimits {
            first_ban_s: seconds.max(1),
            ..limits
        });
    }

    /// Whether answers refused for their weight (429, 418) carry `Retry-After`, from now
    /// on: they do unless told otherwise. Spot's documentation promises the header,
    /// USD-M's does not, so clients are tested without it too.
    pub fn set_retry_after(&self, sent: bool) {
        self.change_limits(|limits| WeightLimits {
            retry_after: sent,
            ..limits
        });
    }

    /// Sets the new spot orders an account may place in 10 seconds (Binance's is 100), from
    /// now on; past it, orders are refused with -1015.
    pub fn set_orders_per_ten_seconds(&self, limit: u64) {
        self.change_limits(|limits| WeightLimits {
            orders_per_ten_seconds: limit,
            ..limits
        });
    }

    /// Whether `account` may place `orders` more spot orders now.
    pub(crate) fn may_place_orders(&self, account: &AccountId, orders: u64) -> bool {
        lock(&self.inner.limits).may_place_orders(account, orders, now_ms())
    }

    /// The limits in force: each family's weight per minute and the first ban's length.
    pub(crate) fn weight_limits(&self) -> WeightLimits {
        lock(&self.inner.limits).limits()
    }

    /// Clears the request record; with `state`, also restores balances and forgets orders,
    /// conditional orders among them (and restarts every id counter), and restores the
    /// default weight limits and first ban, lifts every ban and forgets earlier ones, and
    /// forgets the weight used this minute.
    pub fn reset(&self, state: bool) {
        lock(&self.inner.record).clear();
        if state {
            *lock(&self.inner.state) = State::new(self.inner.keys.values());
            lock(&self.inner.limits).reset_limits();
        }
    }

    pub(crate) fn record(&self, request: Received) {
        lock(&self.inner.record).push(request);
    }

    pub(crate) fn key(&self, api_key: &str) -> Option<&Key> {
        self.inner.keys.get(api_key)
    }

    pub(crate) fn started_ms(&self) -> u64 {
        self.inner.started_ms
    }

    /// Adds request weight to `family`'s counter for the current minute of the
    /// simulator's clock (`account`'s counter, for weight counted per account) and returns
    /// the minute's total, refusing nothing.
    pub(crate) fn add_weight(
        &self,
        family: Family,
        account: Option<&AccountId>,
        weight: u32,
    ) -> u64 {
        let now = self.clock_ms();
        lock(&self.inner.limits).add_weight(family, account, weight, now)
    }

    /// Decides whether a request of `weight` to `family` runs, by its IP's weight this
    /// minute on the simulator's clock and the host's bans, and counts its weight unless
    /// it is banned (see [`Admission`]); `account` is the one whose UID weight it adds to.
    pub(crate) fn admit(
        &self,
        family: Family,
        account: Option<&AccountId>,
        weight: u32,
    ) -> Admission {
        let now = self.clock_ms();
        lock(&self.inner.limits).admit(family, account, weight, now)
    }

    /// Counts a spot order placed in `account`, by any of its keys; returns the account's
    /// orders in the current 10 seconds and day.
    pub(crate) fn add_order(&self, account: &AccountId) -> [u64; 2] {
        lock(&self.inner.limits).add_order(account, now_ms())
    }

    /// Counts USD-M order requests of `account` (see [`Counters::add_futures_orders`]);
    /// returns its counts of the current 10 seconds and minute.
    pub(crate) fn add_futures_orders(
        &self,
        account: &AccountId,
        ten_seconds: u64,
        minute: u64,
    ) -> [u64; 2] {
        lock(&self.inner.limits).add_futures_orders(account, ten_seconds, minute, now_ms())
    }

    /// Takes the spot orders of `account` that filled as they were placed off its
    /// unfilled order count, once each.
    pub(crate) fn count_fills(&self, account: &AccountId) {
        let fills = self
            .with_account_of(account, |account, _| {
                Ok(std::mem::take(&mut account.unreported_fills))
            })
            .unwrap_or(0);
        let mut limits = lock(&self.inner.limits);
        for _ in 0..fills {
            limits.fill_order(account, now_ms());
        }
    }

    /// Runs `f` on the account of a known key.
    pub(crate) fn with_account<T>(
        &self,
        api_key: &str,
        f: impl FnOnce(&mut Account, &mut Ids) -> Result<T, ApiError>,
    ) -> Result<T, ApiError> {
        let key = self.key(api_key).ok_or_else(ApiError::rejected_key)?;
        self.with_account_of(&key.account, f)
    }

    /// Runs `f` on `account`.
    fn with_account_of<T>(
        &self,
        account: &AccountId,
        f: impl FnOnce(&mut Account, &mut Ids) -> Result<T, ApiError>,
    ) -> Result<T, ApiError> {
        let now = self.clock_ms();
        let mut state = lock(&self.inner.state);
        let State { accounts, ids } = &mut *state;
        let account = accounts
            .get_mut(account)
            .ok_or_else(ApiError::rejected_key)?;
        book::expire_countdowns(account, now);
        f(account, ids)
    }

    /// Runs `f` on the account `holds` is true of (the first such, in no set order), if
    /// there is one: for a control endpoint that names something of an account, not the
    /// account.
    pub(crate) fn with_account_where<T>(
        &self,
        holds: impl Fn(&Account) -> bool,
        f: impl FnOnce(&mut Account, &mut Ids) -> T,
    ) -> Option<T> {
        let now = self.clock_ms();
        let mut state = lock(&self.inner.state);
        let State { accounts, ids } = &mut *state;
        let account = accounts.values_mut().find(|account| holds(account))?;
        book::expire_countdowns(account, now);
        Some(f(account, ids))
    }

    /// The open interest of USD-M `symbol`: the size of every account's position in it,
    /// long or short, added up. The simulator's accounts trade against its published book,
    /// not with each other, so their positions are all the contracts it knows to be open.
    pub(crate) fn open_interest(&self, symbol: &str) -> rust_decimal::Decimal {
        lock(&self.inner.state)
            .accounts
            .values()
            .filter_map(|account| account.positions.get(symbol))
            .map(|position| position.abs())
            .sum()
    }
}

/// A simulator serving in a background tokio task; it stops on drop or [`Self::shutdown`].
pub struct RunningSimulator {
    /// The bound address (useful with port 0).
    pub addr: SocketAddr,
    simulator: Simulator,
    stop: Option<oneshot::Sender<()>>,
}

impl RunningSimulator {
    /// `http://<addr>`, the base URL to point clients at.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The shared state, e.g. to read the request record without HTTP.
    pub fn simulator(&self) -> &Simulator {
        &self.simulator
    }

    /// Starts a graceful shutdown (open connections get a short deadline).
    pub fn shutdown(mut self) {
        self.stop_now();
    }

    fn stop_now(&mut self) {
        if let Some(stop) = self.stop.take() {
            // The server task may already have ended; then there is nothing to stop.
            let _ = stop.send(());
        }
    }
}

impl Drop for RunningSimulator {
    fn drop(&mut self) {
        self.stop_now();
    }
}

/// Binds `listen` (port 0 allowed) and serves a new simulator in a tokio task.
pub async fn spawn(
    listen: SocketAddr,
    credentials: Vec<Credential>,
) -> Result<RunningSimulator, Error> {
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|source| Error::Bind {
            addr: listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| Error::Bind {
        addr: listen,
        source,
    })?;
    let simulator = Simulator::new(credentials);
    let (stop, stopped) = oneshot::channel::<()>();
    let served = simulator.clone();
    tokio::spawn(async move {
        let shutdown = async move {
            // A dropped sender also means stop.
            let _ = stopped.await;
        };
        if let Err(error) = serve_simulator(listener, served, shutdown).await {
            tracing::error!(%error, "mock exchange stopped");
        }
    });
    Ok(RunningSimulator {
        addr,
        simulator,
        stop: Some(stop),
    })
}

/// Serves a new simulator on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    credentials: Vec<Credential>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    serve_simulator(listener, Simulator::new(credentials), shutdown).await
}

async fn serve_simulator(
    listener: TcpListener,
    simulator: Simulator,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let (begun, begun_rx) = oneshot::channel::<()>();
    let server = axum::serve(listener, simulator.router()).with_graceful_shutdown(async move {
        shutdown.await;
        let _ = begun.send(());
    });
    tokio::select! {
        result = async { server.await } => result.map_err(|source| Error::Serve { source }),
        () = async {
            if begun_rx.await.is_err() {
                // The server ended on its own; let the other branch report it.
                std::future::pending::<()>().await;
            }
            tokio::time::sleep(SHUTDOWN_DEADLINE).await;
        } => Ok(()),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)] // Tests may panic.
mod tests {
    use super::*;

    #[test]
    fn debug_redacts_secret() {
        let text = format!("{:?}", Credential::hmac("k", "very-secret-value"));
        assert!(!text.contains("very-secret-value"));
        assert!(text.contains("<redacted>"));
    }

    #[test]
    fn load_credentials_rejects_unusable_entries() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("good.json");
        std::fs::write(&good, r#"[{"api_key":"a","secret":"s"},{"api_key":"b","ed25519_public_key":"11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="}]"#).unwrap();
        assert_eq!(load_credentials(&good).unwrap().len(), 2);
        let bad = dir.path().join("bad.json");
        std::fs::write(&bad, r#"[{"api_key":"a"}]"#).unwrap();
        assert!(matches!(
            load_credentials(&bad),
            Err(Error::InvalidCredential { .. })
        ));
        // Regression: the file was read whole, whatever it was.
        assert!(matches!(
            load_credentials(Path::new("/dev/zero")),
            Err(Error::ReadCredentials { .. })
        ));
        let huge = dir.path().join("huge.json");
        std::fs::write(&huge, vec![b' '; 2 << 20]).unwrap();
        assert!(matches!(
            load_credentials(&huge),
            Err(Error::ReadCredentials { .. })
        ));
        // Regression: the second entry of a key silently replaced the first.
        let twice = dir.path().join("twice.json");
        std::fs::write(
            &twice,
            r#"[{"api_key":"a","secret":"s1"},{"api_key":"a","secret":"s2","account":"x"}]"#,
        )
        .unwrap();
        let refused = load_credentials(&twice).unwrap_err();
        assert!(
            refused.to_string().contains("api key a: given twice"),
            "{refused}"
        );
    }

    /// Regression: every key had the same fixed permissions, withdrawals from any address
    /// among them, a state no Binance key can be in. An entry now describes its key's
    /// restrictions; an old entry keeps a default Binance can give; one describing a key
    /// Binance cannot issue is refused, and so is a field the format does not know.
    #[test]
    fn credentials_describe_restrictions_binance_can_give() {
        let dir = tempfile::tempdir().unwrap();
        let file = |name: &str, text: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            path
        };
        let old = load_credentials(&file("old.json", r#"[{"api_key":"a","secret":"s"}]"#)).unwrap();
        assert_eq!(old[0].restrictions, Restrictions::default());
        assert!(Restrictions::default().impossible().is_none());
        assert!(Restrictions::default().ip_restrict);

        let described = load_credentials(&file(
            "described.json",
            r#"[{"api_key":"r","secret":"s","ip_restrict":false,"withdrawals":false,
                 "spot_trading":false,"futures":false,"internal_transfer":true,
                 "universal_transfer":true}]"#,
        ))
        .unwrap();
        assert_eq!(
            described[0].restrictions,
            Restrictions {
                ip_restrict: false,
                spot_trading: false,
                futures: false,
                withdrawals: false,
                internal_transfer: true,
                universal_transfer: true,
                margin: false,
            }
        );

        // Withdrawals (the default) without an IP restriction: no such key exists.
        let impossible = file(
            "impossible.json",
            r#"[{"api_key":"w","secret":"s","ip_restrict":false}]"#,
        );
        let err = load_credentials(&impossible).unwrap_err();
        assert!(
            matches!(&err, Error::InvalidCredential { api_key, .. } if api_key == "w"),
            "{err:?}"
        );
        let text = err.to_string();
        assert!(
            text.contains("withdrawals") && text.contains("IP"),
            "{text}"
        );

        let misspelt = file(
            "misspelt.json",
            r#"[{"api_key":"m","secret":"s","withdraw":false}]"#,
        );
        assert!(matches!(
            load_credentials(&misspelt),
            Err(Error::ParseCredentials { .. })
        ));
    }

    /// Keys may name the account they belong to; keys naming one share it, a key naming
    /// none has its own, and an empty name is refused rather than taken for an account.
    #[test]
    fn credentials_name_the_account_a_key_belongs_to() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("accounts.json");
        std::fs::write(
            &path,
            r#"[{"api_key":"a","secret":"s","account":"main"},
                {"api_key":"b","secret":"s","account":"main","withdrawals":false},
                {"api_key":"c","secret":"s"}]"#,
        )
        .unwrap();
        let credentials = load_credentials(&path).unwrap();
        let accounts: Vec<_> = credentials.iter().map(|c| c.account.as_deref()).collect();
        assert_eq!(accounts, [Some("main"), Some("main"), None]);
        assert!(format!("{:?}", credentials[0]).contains(r#"account: Some("main")"#));
        let simulator = Simulator::new(credentials);
        let account_of = |k: &str| simulator.key(k).map(|key| key.account.clone());
        assert_eq!(account_of("a"), account_of("b"));
        assert_ne!(account_of("a"), account_of("c"));
        assert_eq!(lock(&simulator.inner.state).accounts.len(), 2);
        // Per key still: the restrictions.
        assert!(simulator.key("a").unwrap().restrictions.withdrawals);
        assert!(!simulator.key("b").unwrap().restrictions.withdrawals);

        std::fs::write(&path, r#"[{"api_key":"a","secret":"s","account":""}]"#).unwrap();
        let err = load_credentials(&path).unwrap_err();
        assert!(
            matches!(&err, Error::InvalidCredential { api_key, reason }
                if api_key == "a" && reason.contains("account")),
            "{err:?}"
        );
    }

    /// A key that names no account is not in an account named like the key.
    #[test]
    fn a_keys_own_account_is_not_an_account_of_that_name() {
        let simulator = Simulator::new(vec![
            Credential::hmac("main", "s"),
            Credential::hmac("other", "s").in_account("main"),
        ]);
        assert_ne!(
            simulator.key("main").map(|k| &k.account),
            simulator.key("other").map(|k| &k.account)
        );
        assert_eq!(lock(&simulator.inner.state).accounts.len(), 2);
    }

    const KEY: &str = "k";
    const SECRET: &str = "s";

    /// `params&timestamp=AT&signature=…`, signed with `SECRET`.
    fn signed_at(params: &str, at_ms: u64) -> String {
        use hmac::Mac as _;
        let payload = format!("{params}&timestamp={at_ms}");
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
        mac.update(payload.as_bytes());
        let signature = hex::encode(mac.finalize().into_bytes());
        format!("{payload}&signature={signature}")
    }

    /// GETs `path_and_query` with the API key and `extra` headers; (status, JSON body).
    async fn get(
        sim: &RunningSimulator,
        path_and_query: &str,
        extra: &[(&str, &str)],
    ) -> (u16, serde_json::Value) {
        let mut request = reqwest::Client::new()
            .get(format!("{}{path_and_query}", sim.url()))
            .header("X-MBX-APIKEY", KEY);
        for (name, value) in extra {
            request = request.header(*name, *value);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap())
    }

    async fn start() -> RunningSimulator {
        spawn(
            "127.0.0.1:0".parse().unwrap(),
            vec![Credential::hmac(KEY, SECRET)],
        )
        .await
        .unwrap()
    }

    #[tokio::test]
    async fn every_header_of_a_request_is_recorded() {
        let sim = start().await;
        get(
            &sim,
            "/api/v3/ping",
            &[("Cookie", "a=1"), ("X-Forwarded-For", "10.0.0.1")],
        )
        .await;
        let received = sim.simulator().received();
        assert_eq!(received.len(), 1);
        assert_eq!(received[0].request.api_key.as_deref(), Some(KEY));
        assert_eq!(received[0].header("cookie").collect::<Vec<_>>(), ["a=1"]);
        assert_eq!(
            received[0].header("X-FORWARDED-FOR").collect::<Vec<_>>(),
            ["10.0.0.1"]
        );
        assert_eq!(
            received[0].header("x-mbx-apikey").collect::<Vec<_>>(),
            [KEY]
        );
        // Over HTTP: the fields of a recorded request, and its headers as pairs.
        let (_, list) = get(&sim, "/__mock/requests", &[]).await;
        assert_eq!(list[0]["api_key"], KEY);
        assert_eq!(list[0]["path"], "/api/v3/ping");
        assert!(list[0]["headers"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!(["cookie", "a=1"])));
        let parsed: Vec<Received> = serde_json::from_value(list.clone()).unwrap();
        assert_eq!(parsed, received);
        let plain: Vec<RecordedRequest> = serde_json::from_value(list).unwrap();
        assert_eq!(plain, sim.simulator().requests());
    }

    #[tokio::test]
    async fn a_clock_offset_moves_server_time_and_the_timestamp_window() {
        let sim = start().await;
        sim.simulator().set_clock_offset_ms(30_000);
        let (_, time) = get(&sim, "/api/v3/time", &[]).await;
        let server = time["serverTime"].as_u64().unwrap();
        let ahead = server.abs_diff(now_ms() + 30_000);
        assert!(ahead < 2_000, "serverTime {server} is not 30 s ahead");
        // Signed on the machine's clock, a request is 30 s late for the simulator's.
        let path = |at| format!("/api/v3/account?{}", signed_at("recvWindow=10000", at));
        let (status, body) = get(&sim, &path(now_ms()), &[]).await;
        assert_eq!(
            (status, body["code"].as_i64()),
            (400, Some(-1021)),
            "{body}"
        );
        let (status, body) = get(&sim, &path(now_ms() + 30_000), &[]).await;
        assert_eq!(status, 200, "{body}");
        // Behind: the machine's time is 30 s in the simulator's future.
        sim.simulator().set_clock_offset_ms(-30_000);
        let (status, body) = get(&sim, &path(now_ms()), &[]).await;
        assert_eq!(
            (status, body["code"].as_i64()),
            (400, Some(-1021)),
            "{body}"
        );
        assert!(body["msg"].as_str().unwrap().contains("ahead"), "{body}");
    }

    #[tokio::test]
    async fn a_withheld_price_is_an_error_alone_and_missing_from_lists() {
        let sim = start().await;
        sim.simulator().withhold_price("BTCUSDT");
        for path in [
            "/api/v3/ticker/price?symbol=BTCUSDT",
            "/api/v3/ticker/24hr?symbol=BTCUSDT",
            "/api/v3/ticker/bookTicker?symbol=BTCUSDT",
        ] {
            let (status, body) = get(&sim, path, &[]).await;
            assert_eq!(
                (status, body["code"].as_i64()),
                (503, Some(-1001)),
                "{path}"
            );
        }
        let (status, body) = get(&sim, "/api/v3/ticker/price?symbol=ETHUSDT", &[]).await;
        assert_eq!(
            (status, body["price"].as_str()),
            (200, Some("3000.00000000"))
        );
        let (_, all) = get(&sim, "/api/v3/ticker/price", &[]).await;
        let symbols: Vec<&str> = all
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["symbol"].as_str().unwrap())
            .collect();
        assert!(symbols.contains(&"ETHUSDT") && !symbols.contains(&"BTCUSDT"));
    }
}
