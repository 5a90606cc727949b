//! Signed reads from an exchange with a real key, for the commands that ask the exchange
//! itself (`account add` and `rotate`, `doctor --exchange`, `reconcile`). Never a write:
//! nothing here can move money.

use anyhow::Context;
use http::Method;
use keygate_exchanges::{Adapter, ClientRequest};
use std::path::Path;
use std::sync::{mpsc, Arc, Mutex};

use keygate_gateway::upstream::{Failure, Upstream, UPSTREAM_TIMEOUT};
use keygate_gateway::weight::{Paused, Pool, WeightGauge};
use keygate_store::{Account, ExchangePause, Store};
use keygate_vault::{MasterKey, SecretString};

/// How [`keep_pauses`] writes a new pause to the database.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Keeping {
    /// At once, in the thread that was answered: for a command, which sends one read at
    /// a time.
    AsTheyCome,
    /// From a thread of its own: for `serve`, whose workers must not wait for the
    /// database's write lock.
    InTheBackground,
}

/// Makes the pauses the exchanges ask of this address outlive the process: those `store`
/// keeps that still run are taken up by `weight`, and each one `weight` is asked for from
/// now on is kept in `store`. Binance bans an address that goes on sending after a 429,
/// for longer each time: a gateway restarted during a pause, or a command run beside it,
/// must not send either.
pub fn keep_pauses(store: Store, weight: &WeightGauge, keeping: Keeping) -> anyhow::Result<()> {
    let now_ms = keygate_gateway::now_ms();
    let kept = store
        .exchange_pauses(now_ms)
        .context("reading the pauses the exchanges asked for")?;
    for pause in kept {
        let paused = Paused {
            until_ms: pause.until_ms,
            banned: pause.banned,
        };
        weight.resume_pause(&pause.upstream, paused, now_ms);
    }
    let keep = move |store: &Store, upstream: &str, paused: Paused| {
        let pause = ExchangePause {
            upstream: upstream.to_owned(),
            until_ms: paused.until_ms,
            banned: paused.banned,
        };
        if let Err(e) = store.keep_exchange_pause(&pause, keygate_gateway::now_ms()) {
            tracing::error!(
                upstream = keygate_gateway::upstream::origin(upstream),
                "cannot keep the exchange's pause in the database ({e}); a restart before \
                 it ends would send again"
            );
        }
    };
    match keeping {
        Keeping::AsTheyCome => {
            let store = Mutex::new(store);
            weight.keep_pauses_with(Box::new(move |upstream, paused| {
                keep(
                    &store.lock().unwrap_or_else(|p| p.into_inner()),
                    upstream,
                    paused,
                );
            }));
        }
        Keeping::InTheBackground => {
            let (sender, pauses) = mpsc::channel::<(String, Paused)>();
            std::thread::Builder::new()
                .name("keygate-pauses".into())
                .spawn(move || {
                    for (upstream, paused) in pauses {
                        keep(&store, &upstream, paused);
                    }
                })
                .context("starting the thread that keeps the exchanges' pauses")?;
            weight.keep_pauses_with(Box::new(move |upstream, paused| {
                let _ = sender.send((upstream.to_owned(), paused));
            }));
        }
    }
    Ok(())
}

/// Why a signed read has no answer to use. Its text names no key and no signature.
pub struct ReadError {
    /// What failed.
    pub reason: String,
    /// Whether asking the same again may do: the exchange was not reached, did not
    /// answer, or refused for a reason that passes
    /// ([`Adapter::may_pass_when_asked_again`]: a failure, the weight, a clock off). Not
    /// when it refused the request itself (a symbol it does not know, a permission the
    /// key lacks), nor when keygate could not make it.
    pub may_pass: bool,
}

impl ReadError {
    pub fn lasting(reason: impl Into<String>) -> ReadError {
        ReadError {
            reason: reason.into(),
            may_pass: false,
        }
    }

    fn passing(reason: String) -> ReadError {
        ReadError {
            reason,
            may_pass: true,
        }
    }
}

impl From<ReadError> for String {
    fn from(error: ReadError) -> String {
        error.reason
    }
}

/// A successful answer to a signed read.
pub struct Answer {
    /// Its body.
    pub body: Vec<u8>,
    /// The request weight the exchange says the address used this minute, when it says.
    pub used_weight: Option<u64>,
}

/// The exchanges, as a command reaches them: keygate's own upstream client, driven to
/// completion one read at a time. Nothing is sent to an upstream while the exchange asks
/// the address to back off ([`WeightGauge::paused`]): a read then fails at once, as one
/// that may pass.
pub struct Exchanges {
    runtime: tokio::runtime::Runtime,
    upstream: Upstream,
    weight: Arc<WeightGauge>,
}

impl Exchanges {
    /// The client, with the gateway's upstream timeout, keeping to the pauses the
    /// exchanges asked of this address that the database at `db` keeps (a running
    /// gateway's among them), and keeping there those it is asked for.
    pub fn keeping_pauses_in(db: &Path) -> anyhow::Result<Exchanges> {
        let store = Store::open(db).context("opening the database for the exchanges' pauses")?;
        let weight = Arc::new(WeightGauge::default());
        keep_pauses(store, &weight, Keeping::AsTheyCome)?;
        Exchanges::sharing(weight)
    }

    /// The client, keeping to the pauses of `weight` and telling it of the answers that
    /// ask for one: `serve`'s reconciliation shares the gateway's, since both send from
    /// the same address.
    pub fn sharing(weight: Arc<WeightGauge>) -> anyhow::Result<Exchanges> {
        Ok(Exchanges {
            runtime: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("starting the HTTP client")?,
            upstream: Upstream::new(UPSTREAM_TIMEOUT).context("starting the HTTP client")?,
            weight,
        })
    }

    /// GETs `path?query` from `account`'s exchange, signed with its real key, and returns
    /// a successful answer. Errors say what failed, never with a key or a signature.
    pub fn signed_read<A: Adapter>(
        &self,
        adapter: &A,
        master: &MasterKey,
        account: &Account,
        path: &str,
        query: &str,
    ) -> Result<Answer, ReadError> {
        self.runtime.block_on(signed_read(
            adapter,
            (&self.upstream, &self.weight),
            master,
            account,
            path,
            query,
        ))
    }

    /// How far the clock of the exchange host serving `path` for `account` is ahead of
    /// this host's (behind: negative), in milliseconds, as last measured (once in five
    /// minutes); `None` when it could not be.
    pub fn clock_skew_ms<A: Adapter>(
        &self,
        adapter: &A,
        account: &Account,
        path: &str,
    ) -> Option<i64> {
        let base = base_for(adapter, account.upstream.as_deref(), path).ok()?;
        self.runtime.block_on(
            self.upstream
                .clock_offset_ms(adapter, &base, path, &self.weight),
        )
    }

    /// GETs the public `path?query` from `account`'s exchange (from its upstream, when
    /// one replaces the exchange's hosts), with no key.
    pub fn public_read<A: Adapter>(
        &self,
        adapter: &A,
        account: &Account,
        path: &str,
        query: &str,
    ) -> Result<Answer, ReadError> {
        let base = base_for(adapter, account.upstream.as_deref(), path)?;
        let pool = not_paused(adapter, &self.weight, &base, path)?;
        let url = match query {
            "" => format!("{base}{path}"),
            query => format!("{base}{path}?{query}"),
        };
        let answer =
            self.runtime
                .block_on(self.upstream.send(adapter, &Method::GET, &url, &[], b""));
        answered(adapter, path, answer, (&self.weight, pool))
    }

    /// Asks the exchange (or `upstream`, which replaces its hosts) whether it takes the
    /// key `api_key` with `secret`, by reading what the key may do with it. Errors say
    /// what failed: the exchange refused it, or could not be asked.
    pub fn check_key<A: Adapter>(
        &self,
        adapter: &A,
        upstream: Option<&str>,
        api_key: &SecretString,
        secret: &SecretString,
    ) -> Result<(), ReadError> {
        let path = adapter.permissions_path();
        let answer = self.runtime.block_on(read_signed_with(
            adapter,
            (&self.upstream, &self.weight),
            upstream,
            (api_key, secret),
            path,
            "",
        ))?;
        adapter
            .parse_permissions(&answer.body)
            .map(|_| ())
            .ok_or_else(|| ReadError::lasting("its answer does not read"))
    }
}

async fn signed_read<A: Adapter>(
    adapter: &A,
    upstream: (&Upstream, &WeightGauge),
    master: &MasterKey,
    account: &Account,
    path: &str,
    query: &str,
) -> Result<Answer, ReadError> {
    let api_key = account
        .open_api_key(master)
        .map_err(|e| ReadError::lasting(e.to_string()))?;
    let secret = account
        .open_secret(master)
        .map_err(|e| ReadError::lasting(e.to_string()))?;
    read_signed_with(
        adapter,
        upstream,
        account.upstream.as_deref(),
        (&api_key, &secret),
        path,
        query,
    )
    .await
}

/// Where `path` is asked: `upstream` when one replaces the exchange's hosts, else the
/// exchange host that serves it.
fn base_for<A: Adapter>(
    adapter: &A,
    upstream: Option<&str>,
    path: &str,
) -> Result<String, ReadError> {
    match upstream {
        Some(base) => Ok(base.to_owned()),
        None => adapter
            .route(path)
            .map(|r| r.base.to_owned())
            .ok_or_else(|| ReadError::lasting("no exchange host serves it")),
    }
}

/// GETs `path?query` signed with `(api_key, secret)` from the exchange host serving it,
/// or from `base` when one replaces them.
async fn read_signed_with<A: Adapter>(
    adapter: &A,
    (upstream, weight): (&Upstream, &WeightGauge),
    base: Option<&str>,
    (api_key, secret): (&SecretString, &SecretString),
    path: &str,
    query: &str,
) -> Result<Answer, ReadError> {
    let base = base_for(adapter, base, path)?;
    let pool = not_paused(adapter, weight, &base, path)?;
    // On the exchange's clock, as the gateway signs: a host clock a second ahead would
    // have every read refused as signed in the future (-1021).
    let now = upstream
        .exchange_time_ms(adapter, &base, path, weight)
        .await;
    // The clock's answer may have asked for a pause.
    not_paused(adapter, weight, &base, path)?;
    let params = adapter.own_read_params(query, now);
    let request = adapter
        .parse(&params, b"", None)
        .map_err(|e| ReadError::lasting(e.to_string()))?;
    let signed = request.resign(
        api_key.expose_secret(),
        secret.expose_secret().as_bytes(),
        now,
    );
    let url = format!("{base}{path}?{}", signed.query);
    let answer = upstream
        .send(adapter, &Method::GET, &url, &signed.headers, b"")
        .await;
    answered(adapter, path, answer, (weight, pool))
}

/// The weight pool a read of `path` from `base` draws from, unless the exchange asks the
/// address to send nothing there now: then why not.
fn not_paused<'a, A: Adapter>(
    adapter: &A,
    weight: &WeightGauge,
    base: &'a str,
    path: &str,
) -> Result<Pool<'a>, ReadError> {
    let pool = Pool {
        upstream: base,
        name: adapter.weight_pool(path),
    };
    match weight.paused(pool) {
        Some(paused) => Err(ReadError::passing(format!(
            "not sent: the exchange asked keygate's address to back off (HTTP {}) until {}",
            if paused.banned { 418 } else { 429 },
            crate::output::rfc3339(paused.until_ms)
        ))),
        None => Ok(pool),
    }
}

/// A read's answer, or why there is none: the exchange was not reached, did not answer,
/// or refused (for a reason that may pass, or for one that lasts).
fn answered<A: Adapter>(
    adapter: &A,
    path: &str,
    answer: Result<keygate_gateway::upstream::Response, Failure>,
    (weight, pool): (&WeightGauge, Pool<'_>),
) -> Result<Answer, ReadError> {
    let answer = answer.map_err(|failure| {
        ReadError::passing(match failure {
            Failure::Unreachable(reason) | Failure::Refused(reason) => {
                format!("unreachable: {reason}")
            }
            Failure::NoAnswer(reason) => format!("no answer: {reason}"),
            Failure::TimedOut => "no answer in time".to_owned(),
        })
    })?;
    let status = answer.status;
    weight.note_answer(adapter, pool, &answer, None);
    if !status.is_success() {
        let reason = match adapter.error_text(&answer.body) {
            // The exchange's words, or those of whoever answers in its place, reach alerts:
            // a name in them is not made a link (found by review).
            Some(text) => format!(
                "it answered HTTP {} ({})",
                status.as_u16(),
                keygate_monitor::defanged(&text)
            ),
            None => format!("it answered HTTP {}", status.as_u16()),
        };
        return Err(if adapter.may_pass_when_asked_again(status, &answer.body) {
            ReadError::passing(reason)
        } else {
            ReadError::lasting(reason)
        });
    }
    Ok(Answer {
        used_weight: adapter.used_weight(adapter.weight_pool(path), &answer.headers),
        body: answer.body.to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use keygate_exchanges::Binance;
    use keygate_mockex::Credential;

    use super::*;

    /// A regression test (from a review): `serve`'s reconciliation had a client of its own,
    /// which knew nothing of the pauses the exchange asked the gateway for, and sent its
    /// reads into a ban. It now keeps to the gateway's pauses and tells it of the answers
    /// that ask for one.
    #[test]
    fn nothing_is_read_while_the_exchange_asks_to_back_off() {
        // Clear of a minute's turn, when the simulator's weight starts again.
        let into_minute = keygate_gateway::now_ms() % 60_000;
        if into_minute > 55_000 {
            std::thread::sleep(std::time::Duration::from_millis(60_100 - into_minute));
        }
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let exchange = runtime
            .block_on(keygate_mockex::spawn(
                "127.0.0.1:0".parse().unwrap(),
                vec![Credential::hmac("KEY", "SECRET")],
            ))
            .unwrap();
        // The clock's second sample takes the weight past 1: the exchange asks to wait.
        exchange.simulator().set_weight_limit(1);
        let weight = Arc::new(WeightGauge::default());
        let exchanges = Exchanges::sharing(Arc::clone(&weight)).unwrap();
        let (key, secret) = (
            SecretString::new("KEY".into()),
            SecretString::new("SECRET".into()),
        );
        let url = exchange.url();
        let not_sent = |read: Result<(), ReadError>| {
            read.is_err_and(|e| e.may_pass && e.reason.starts_with("not sent"))
        };
        assert!(not_sent(exchanges.check_key(
            &Binance,
            Some(&url),
            &key,
            &secret
        )));
        let paths = || -> Vec<String> {
            let requests = exchange.simulator().requests();
            requests.into_iter().map(|r| r.path).collect()
        };
        assert_eq!(paths(), ["/api/v3/time", "/api/v3/time"]);
        let pool = Pool {
            upstream: &url,
            name: "/sapi",
        };
        assert!(weight.paused(pool).is_some());
        // Nothing at all while it lasts, the clock included.
        assert!(not_sent(exchanges.check_key(
            &Binance,
            Some(&url),
            &key,
            &secret
        )));
        assert_eq!(paths().len(), 2);
    }

    /// A regression test (from a review): an exchange's error text went into
    /// `reconcile_failed` alerts as it came, so an answer naming
    /// `binance-unfreeze.com/now` put a link in the operator's chat or mail.
    #[test]
    fn names_in_an_exchange_s_error_text_are_not_links() {
        let weight = WeightGauge::default();
        let pool = Pool {
            upstream: "https://api.binance.com",
            name: "/api",
        };
        let answer = keygate_gateway::upstream::Response {
            status: http::StatusCode::BAD_REQUEST,
            headers: http::HeaderMap::new(),
            body: br#"{"code":-1121,"msg":"Invalid symbol. Verify at binance-unfreeze.com/now."}"#
                .to_vec()
                .into(),
        };
        let Err(refused) = answered(&Binance, "/api/v3/allOrders", Ok(answer), (&weight, pool))
        else {
            panic!("an error answer was read as an answer");
        };
        assert_eq!(
            refused.reason,
            "it answered HTTP 400 (-1121: Invalid symbol. Verify at binance-unfreeze[.]com/now.)"
        );
    }
}
