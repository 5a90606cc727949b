//! Where alerts go: webhooks (an HTTPS POST of JSON, signed when a secret is configured)
//! and email, each tried again when it fails.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use keygate_vault::SecretBytes;
use reqwest::Url;
use serde::Serialize;
use sha2::Sha256;

use crate::email::{Email, Recipients};
use crate::{Alert, Error, Severity};

/// How long one attempt at a delivery may take, whole: connecting, TLS, and the HTTP
/// exchange or the whole SMTP dialogue (lettre's own timeout bounds the connection only).
pub(crate) const DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);
/// The waits before each further attempt at a delivery that failed. Alerts are not
/// orders: sending one twice is better than not at all.
const RETRY_DELAYS: [Duration; 2] = [Duration::from_secs(1), Duration::from_secs(3)];
/// The longest wait a receiver's `Retry-After` gets before the next attempt: the alerts
/// behind this one wait too.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(10);

/// A failed attempt at a delivery.
pub(crate) struct Failed {
    /// What went wrong, without a credential.
    pub(crate) reason: String,
    /// How long the receiver asked to be left alone (`Retry-After`, in seconds).
    pub(crate) retry_after: Option<Duration>,
    /// Asking again would change nothing (a mail server refused every recipient left
    /// for good).
    pub(crate) permanent: bool,
}

impl From<String> for Failed {
    fn from(reason: String) -> Failed {
        Failed {
            reason,
            retry_after: None,
            permanent: false,
        }
    }
}

/// Somewhere alerts go, besides serve's log.
pub enum Sink {
    /// An HTTPS POST of JSON.
    Webhook(Webhook),
    /// An email.
    Email(Email),
}

impl Sink {
    /// Where it goes, without credentials: `https://host/…`, `smtp://host:port`.
    pub fn destination(&self) -> String {
        match self {
            Sink::Webhook(hook) => hook.destination(),
            Sink::Email(email) => email.destination(),
        }
    }

    /// Whether `alert` is severe enough for it.
    pub fn wants(&self, alert: &Alert) -> bool {
        match self {
            Sink::Webhook(hook) => hook.wants(alert),
            Sink::Email(email) => email.wants(alert),
        }
    }

    /// Sends `alert`, trying again after each of [`RETRY_DELAYS`] while it fails, unless
    /// asking again would change nothing. An email goes to each recipient on its own, and
    /// only those not reached yet are tried again. The error
    /// ([`Error::WebhookNotDelivered`], [`Error::EmailNotDelivered`]) names the
    /// destination and the last failure, never a credential; with it, what a later try
    /// is to deliver (`resume`), when one could deliver what this one did not: an email,
    /// to the recipients it has not reached yet (so that none gets it twice), none when
    /// every one left refused it for good.
    pub(crate) async fn deliver(
        &self,
        http: &reqwest::Client,
        alert: &Alert,
        resume: Option<Recipients>,
    ) -> (Result<(), Error>, Option<Recipients>) {
        let mut delays = RETRY_DELAYS.iter();
        let mut mail = resume.unwrap_or_else(|| match self {
            Sink::Email(email) => email.recipients(),
            Sink::Webhook(_) => Recipients::default(),
        });
        loop {
            let attempt = match self {
                Sink::Webhook(hook) => {
                    tokio::time::timeout(DELIVERY_TIMEOUT, hook.post(http, alert))
                        .await
                        .unwrap_or_else(|_| {
                            Err(format!("no answer within {} s", DELIVERY_TIMEOUT.as_secs()).into())
                        })
                }
                // Each recipient has the time of its own.
                Sink::Email(email) => email.send_each(alert, &mut mail).await,
            };
            match (attempt, delays.next()) {
                (Ok(()), _) => return (Ok(()), None),
                (Err(failed), Some(delay)) if !failed.permanent => {
                    let asked = failed
                        .retry_after
                        .map_or(Duration::ZERO, |asked| asked.min(MAX_RETRY_AFTER));
                    tokio::time::sleep((*delay).max(asked)).await;
                }
                (Err(failed), _) => {
                    let resume = (!failed.permanent).then(|| mail.still_to_reach());
                    let (destination, cause) = (self.destination(), failed.reason);
                    let error = match self {
                        Sink::Webhook(_) => Error::WebhookNotDelivered { destination, cause },
                        Sink::Email(_) => Error::EmailNotDelivered { destination, cause },
                    };
                    return (Err(error), resume);
                }
            }
        }
    }
}

/// A webhook: alerts of at least `min_severity` are POSTed to its URL as JSON.
///
/// With a secret, each POST carries `X-Keygate-Timestamp` (milliseconds since the epoch)
/// and `X-Keygate-Signature: sha256=HEX`, the HMAC-SHA256 under the secret of the
/// timestamp, a `.`, and the body, so the receiver can tell keygate's alerts from forged
/// ones and old ones replayed.
///
/// The URL is never logged or shown whole: a chat webhook's path is its credential.
pub struct Webhook {
    url: Url,
    secret: Option<SecretBytes>,
    min_severity: Severity,
}

impl Webhook {
    /// A webhook to `url`: HTTPS, or plain HTTP to a loopback address only.
    pub fn new(
        url: &str,
        secret: Option<SecretBytes>,
        min_severity: Severity,
    ) -> Result<Webhook, Error> {
        let bad = |reason: &str| Error::BadWebhook {
            reason: reason.to_owned(),
        };
        let url = Url::parse(url).map_err(|e| bad(&format!("not a URL ({e})")))?;
        match url.scheme() {
            "https" => {}
            // `localhost` is connected to at the loopback addresses it resolves to only
            // ([`LocalhostOnLoopback`]), whatever the hosts file says at delivery.
            "http" if loopback_address(url.host_str().unwrap_or("")).is_some() => {}
            "http" => return Err(bad("plain http is allowed to loopback addresses only")),
            _ => {
                return Err(bad(
                    "the scheme must be https (or http to a loopback address)",
                ))
            }
        }
        if url.host().is_none() || !url.username().is_empty() || url.password().is_some() {
            return Err(bad("the URL needs a host and no user name or password"));
        }
        Ok(Webhook {
            url,
            secret,
            min_severity,
        })
    }

    /// Where the webhook goes, without its path or query: `https://hooks.example.com/…`.
    pub fn destination(&self) -> String {
        let host = self.url.host_str().unwrap_or("?");
        match self.url.port() {
            Some(port) => format!("{}://{host}:{port}/…", self.url.scheme()),
            None => format!("{}://{host}/…", self.url.scheme()),
        }
    }

    /// Whether `alert` is severe enough for this webhook.
    pub fn wants(&self, alert: &Alert) -> bool {
        alert.severity >= self.min_severity
    }

    /// POSTs `alert` once.
    async fn post(&self, http: &reqwest::Client, alert: &Alert) -> Result<(), Failed> {
        let payload = Payload::of(alert);
        let body = serde_json::to_vec(&payload).map_err(|e| e.to_string())?;
        let mut request = http
            .post(self.url.clone())
            .timeout(DELIVERY_TIMEOUT)
            .header("content-type", "application/json")
            .header("x-keygate-alert-id", payload.id.as_str())
            .header("user-agent", concat!("keygate/", env!("CARGO_PKG_VERSION")));
        if let Some(secret) = &self.secret {
            let timestamp = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis())
                .to_string();
            request = request
                .header("x-keygate-signature", sign(secret, &timestamp, &body))
                .header("x-keygate-timestamp", timestamp);
        }
        let response = request
            .body(body)
            .send()
            .await
            // reqwest's errors quote the URL, which may hold the webhook's credential; the
            // errors under it say why (connection refused, a certificate), not where.
            .map_err(|e| with_causes(&e.without_url()))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        // Seconds only: the HTTP-date form is read as no wish at all.
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        Err(Failed {
            reason: format!("answered {status}"),
            retry_after,
            permanent: false,
        })
    }
}

/// The value of `X-Keygate-Signature` for `body` sent at `timestamp`.
pub fn sign(secret: &SecretBytes, timestamp: &str, body: &[u8]) -> String {
    #[allow(clippy::expect_used, reason = "HMAC takes keys of any length")]
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.expose_secret())
        .expect("HMAC accepts keys of any length");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// The HTTP client every webhook is sent with: rustls, no redirects (a redirect would
/// carry the alert somewhere nobody configured), no proxy from the environment.
pub(crate) fn http_client() -> Result<reqwest::Client, Error> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .dns_resolver(std::sync::Arc::new(LocalhostOnLoopback))
        .build()
        .map_err(|e| Error::BadWebhook {
            reason: format!("cannot build the HTTP client: {}", e.without_url()),
        })
}

/// The webhooks' name resolution: the system's, but `localhost` resolves to its loopback
/// addresses only, and to nothing without one. A plain-http webhook to `localhost` was
/// accepted for being loopback ([`loopback_address`]); a hosts file changed since must
/// not send its alerts elsewhere in plain text.
struct LocalhostOnLoopback;

impl reqwest::dns::Resolve for LocalhostOnLoopback {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let resolved = tokio::net::lookup_host((host.as_str(), 0)).await?;
            let addresses: Vec<std::net::SocketAddr> = if host.eq_ignore_ascii_case("localhost") {
                resolved.filter(|a| a.ip().is_loopback()).collect()
            } else {
                resolved.collect()
            };
            if addresses.is_empty() {
                let reason = format!("{host} resolves to no address alerts may go to");
                return Err(reason.into());
            }
            let addresses: reqwest::dns::Addrs = Box::new(addresses.into_iter());
            Ok(addresses)
        })
    }
}

/// The loopback address to reach `host` (an IP address, bracketed or not, or a name) at
/// without TLS, when it is this machine: the only place alerts may go in plain text. A
/// name counts only when every address it resolves to is loopback: `localhost` in a hosts
/// file that sends it elsewhere is refused, not trusted for its name (and the webhooks
/// connect to it at loopback addresses only, [`LocalhostOnLoopback`]; an email server, at
/// the address returned here).
pub(crate) fn loopback_address(host: &str) -> Option<std::net::IpAddr> {
    use std::net::ToSocketAddrs;
    let unbracketed = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = unbracketed.parse::<std::net::IpAddr>() {
        return ip.is_loopback().then_some(ip);
    }
    if !host.eq_ignore_ascii_case("localhost") {
        return None;
    }
    let resolved: Vec<std::net::IpAddr> =
        (host, 0).to_socket_addrs().ok()?.map(|a| a.ip()).collect();
    if resolved.is_empty() || !resolved.iter().all(|ip| ip.is_loopback()) {
        return None;
    }
    // IPv4 first: every loopback server listens there.
    resolved
        .iter()
        .find(|ip| ip.is_ipv4())
        .or(resolved.first())
        .copied()
}

/// The JSON a webhook receives: the alert, plus `text`, which chat services (Slack,
/// Mattermost) show as the message.
#[derive(Serialize)]
struct Payload<'a> {
    text: String,
    /// The alert's id ([`alert_id`]), also sent as `X-Keygate-Alert-Id`.
    id: String,
    #[serde(flatten)]
    alert: &'a Alert,
}

impl Payload<'_> {
    fn of(alert: &Alert) -> Payload<'_> {
        Payload {
            text: format!(
                "[keygate {}] {}",
                alert.severity.as_str(),
                chat_escaped(&alert.summary)
            ),
            id: alert_id(alert),
            alert,
        }
    }
}

/// What names an alert, for a receiver to drop repeats by: the first 128 bits of
/// SHA-256 over everything it says, in hex. The same in every attempt to deliver it, and
/// when a restarted `serve` raises an alert of the log again (but for `outcome_unknown`,
/// whose summary names the request it read before); two alerts that differ in anything
/// (two withdrawals one reconciliation found) have two.
pub(crate) fn alert_id(alert: &Alert) -> String {
    use sha2::Digest;
    let said = serde_json::to_vec(alert).unwrap_or_default();
    hex::encode(&Sha256::digest(&said)[..16])
}

/// `summary` with `&`, `<` and `>` escaped as Slack and Mattermost ask, and [`defanged`]:
/// a summary quotes what a bot sent, and `<https://…|text>` there would show as a link
/// of the bot's making in the operator's alert channel.
fn chat_escaped(summary: &str) -> String {
    defanged(
        &summary
            .replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;"),
    )
}

/// `text` with the links, mentions and encoded words a bot could have written into it
/// broken, as security teams write an address not to be followed: a Markdown link's `](`
/// becomes `] (`, which no Markdown reads as a link (Mattermost renders
/// `[Re-approve keygate](https://…)`); `://` becomes `[:]//` and `www.` `www[.]`, which
/// chat and mail clients do not turn into links; `@` becomes `[@]`, so that `@channel`
/// or `@here` notifies nobody; and `=?` becomes `=[?]`, so that a mail client does not
/// decode an RFC 2047 encoded word (`=?utf-8?b?…?=`) in a subject into the characters
/// the rest of the text is kept free of.
pub(crate) fn defanged(text: &str) -> String {
    let text = text
        .replace("://", "[:]//")
        .replace('@', "[@]")
        .replace("=?", "=[?]");
    let mut out = String::with_capacity(text.len());
    let mut rest = text.as_str();
    while let Some(at) = rest
        .as_bytes()
        .windows(4)
        .position(|w| w.eq_ignore_ascii_case(b"www."))
    {
        out.push_str(&rest[..at + 3]);
        out.push_str("[.]");
        rest = &rest[at + 4..];
    }
    out.push_str(rest);
    // Last: the brackets written above must not close a link either (`@(` is `[@](`).
    out.replace("](", "] (")
}

/// An error and, after it, each error under it: reqwest's own says only "error sending
/// request".
fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(e) = cause {
        let more = e.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        cause = e.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AlertRule, AlertsConfig, EmailConfig, SmtpSecurity};

    /// Found by review: two alerts one reconciliation raises (two withdrawals) share
    /// their rule, event and time, which the docs told receivers to drop repeats by.
    #[test]
    fn an_alert_id_is_the_same_for_the_same_alert_only() {
        let first = Alert::outside_log(
            Severity::Critical,
            AlertRule::UnreconciledWithdrawal,
            "withdrawal 1 on account main was not made through keygate".into(),
        );
        let second = Alert {
            summary: "withdrawal 2 on account main was not made through keygate".into(),
            ..first.clone()
        };
        assert_eq!(alert_id(&first), alert_id(&first.clone()));
        assert_ne!(alert_id(&first), alert_id(&second));
    }

    /// Regression (from a review): only `&<>` were escaped, so a withdrawal address of
    /// `[Re-approve keygate](https://evil.example/a)` showed in Mattermost as a link of the
    /// bot's making, and a bare URL became one in Slack and mail.
    #[test]
    fn markdown_links_and_urls_a_bot_wrote_are_broken() {
        let alert = Alert::outside_log(
            Severity::Critical,
            AlertRule::Test,
            "withdrawal to [Re-approve keygate](https://evil.example/a) denied".into(),
        );
        let payload = serde_json::to_value(Payload::of(&alert)).unwrap();
        let text = payload["text"].as_str().unwrap();
        assert!(!text.contains("](") && !text.contains("://"), "{text}");
        assert!(text.contains("https[:]//evil.example/a"), "{text}");
    }

    /// Regression (from a review): `www.` addresses stayed links in chat and mail, `@channel`
    /// notified a whole alert channel, and an RFC 2047 encoded word in an email's subject
    /// was decoded by mail clients into a direction override and a line separator.
    #[test]
    fn bare_addresses_mentions_and_encoded_words_a_bot_wrote_are_broken() {
        assert_eq!(
            defanged("to WWW.evil.example/login?next=@channel and www.x"),
            "to WWW[.]evil.example/login?next=[@]channel and www[.]x"
        );
        assert_eq!(
            defanged("to =?utf-8?b?4oCuTU9DLkxJVkXigKhvaw==?= on TRX"),
            "to =[?]utf-8?b?4oCuTU9DLkxJVkXigKhvaw==[?]= on TRX"
        );
        assert_eq!(defanged("plain ütf-8 text"), "plain ütf-8 text");
        // Found by review: the brackets written for `@` and `www.` made a link again.
        for sneaky in ["[a]@(//e.x)", "x www.(//e.x)", "=?(//e.x)"] {
            assert!(!defanged(sneaky).contains("]("), "{}", defanged(sneaky));
        }
    }

    #[test]
    fn a_webhook_message_shows_no_link_a_bot_made() {
        let alert = Alert::outside_log(
            Severity::Info,
            AlertRule::Test,
            "withdrawal to <https://phish.example|your keygate> & more".into(),
        );
        let payload = serde_json::to_value(Payload::of(&alert)).unwrap();
        assert_eq!(
            payload["text"],
            "[keygate info] withdrawal to &lt;https[:]//phish.example|your keygate&gt; &amp; more"
        );
        // The alert's own fields are as raised: receivers that read them escape for
        // themselves.
        assert_eq!(payload["summary"], alert.summary);
    }

    /// Regression (from a review): a webhook nobody listens at failed with "error sending
    /// request", without why.
    #[tokio::test]
    async fn a_failed_post_says_why_and_not_the_path() {
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = closed.local_addr().unwrap().port();
        drop(closed);
        let hook = Webhook::new(
            &format!("http://127.0.0.1:{port}/hook-credential-path"),
            None,
            Severity::Info,
        )
        .unwrap();
        let alert = Alert::outside_log(Severity::Info, AlertRule::Test, "test".into());
        let failed = hook
            .post(&reqwest::Client::new(), &alert)
            .await
            .unwrap_err();
        assert!(
            failed.reason.to_lowercase().contains("connection refused"),
            "{}",
            failed.reason
        );
        assert!(
            !failed.reason.contains("hook-credential-path"),
            "{}",
            failed.reason
        );
    }

    /// Settings of one email sink to `server` (on loopback, without TLS), mailing `to`.
    fn plain_email_to(server: &str, to: &[&str]) -> crate::Settings {
        AlertsConfig {
            emails: vec![EmailConfig {
                server: server.to_owned(),
                security: Some(SmtpSecurity::None),
                from: "keygate@example.com".into(),
                to: to.iter().map(|t| t.to_string()).collect(),
                username: None,
                password_file: None,
                min_severity: None,
            }],
            ..AlertsConfig::default()
        }
        .settings()
        .unwrap()
    }

    /// A regression test: lettre's timeout bounds the connection only, so a mail server
    /// that took the connection and never answered held the monitor thread, and with it
    /// every later alert and serve's shutdown, for ever. Time is paused: it moves on only
    /// while nothing else can happen, so the bound is checked exactly and at once.
    #[test]
    fn a_mail_server_that_never_answers_fails_within_the_delivery_timeouts() {
        // The kernel completes the connection; nobody ever reads or writes on it.
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let settings = plain_email_to(
            &silent.local_addr().unwrap().to_string(),
            &["oncall@example.com"],
        );
        let alert = Alert::outside_log(Severity::Critical, AlertRule::Test, "test".into());
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .unwrap();
        let http = http_client().unwrap();
        let (result, took) = runtime.block_on(async {
            let started = tokio::time::Instant::now();
            let delivery = settings.sinks[0].deliver(&http, &alert, None);
            let result = tokio::time::timeout(Duration::from_secs(3600), delivery)
                .await
                .map(|(result, _)| result);
            (result, started.elapsed())
        });
        let failure = result
            .expect("the delivery never ended")
            .unwrap_err()
            .to_string();
        assert!(failure.contains("email to smtp://127.0.0.1"), "{failure}");
        let bound = DELIVERY_TIMEOUT * 3 + RETRY_DELAYS.iter().sum::<Duration>();
        assert!(took <= bound, "{took:?}");
        drop(silent);
    }

    /// Found by review: a lane tried an email again from the start, and the mailboxes
    /// that had it got it again at every try. A later try goes to the recipients the
    /// first did not reach, alone.
    #[test]
    fn a_later_try_of_an_email_goes_to_the_recipients_not_reached_alone() {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let smtp = runtime
            .block_on(keygate_mockex::spawn_smtp_sink(
                "127.0.0.1:0".parse().unwrap(),
            ))
            .unwrap();
        let busy = format!("later@{}", keygate_mockex::BUSY_DOMAIN);
        let settings = plain_email_to(&smtp.addr.to_string(), &[&busy, "oncall@example.com"]);
        let alert = Alert::outside_log(Severity::Critical, AlertRule::Test, "test".into());
        let http = http_client().unwrap();
        let (first, resume) = runtime.block_on(settings.sinks[0].deliver(&http, &alert, None));
        assert!(first.is_err());
        assert_eq!(smtp.mails().len(), 1, "oncall mailed once");
        assert_eq!(smtp.asked(&busy), 3, "the busy one at each attempt");
        let resume = resume.expect("refused for now: to be tried again");
        let (again, _) = runtime.block_on(settings.sinks[0].deliver(&http, &alert, Some(resume)));
        assert!(again.is_err());
        assert_eq!(smtp.asked(&busy), 6);
        assert_eq!(smtp.mails().len(), 1, "oncall mailed again");
    }

    #[test]
    fn only_https_or_loopback_http_without_credentials_is_accepted() {
        for good in [
            "https://hooks.example.com/services/T0/B0/XYZ",
            "http://127.0.0.1:9000/alerts",
            "http://[::1]/x",
            "http://localhost:81/",
        ] {
            assert!(
                Webhook::new(good, None, Severity::Warning).is_ok(),
                "{good}"
            );
        }
        for bad in [
            "http://hooks.example.com/x",
            "ftp://127.0.0.1/x",
            "https://user:pw@hooks.example.com/x",
            "not a url",
            "http://10.0.0.1/x",
        ] {
            assert!(
                matches!(
                    Webhook::new(bad, None, Severity::Warning),
                    Err(Error::BadWebhook { .. })
                ),
                "{bad}"
            );
        }
    }

    /// A regression test (found by review): `localhost` was trusted by its name, so a
    /// hosts file sending it elsewhere sent alerts there in plain text. It is resolved
    /// when the webhook is made, and again, to loopback addresses only, at delivery.
    #[test]
    fn a_plain_webhook_to_localhost_goes_to_loopback_addresses_only() {
        use reqwest::dns::Resolve;
        let hook = Webhook::new("http://localhost:81/alerts", None, Severity::Warning).unwrap();
        assert_eq!(hook.url.host_str(), Some("localhost"));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let resolved: Vec<std::net::SocketAddr> = runtime
            .block_on(LocalhostOnLoopback.resolve("localhost".parse().unwrap()))
            .unwrap()
            .collect();
        assert!(!resolved.is_empty());
        assert!(
            resolved.iter().all(|a| a.ip().is_loopback()),
            "{resolved:?}"
        );
        assert_eq!(loopback_address("localhost.example.com"), None);
        assert_eq!(
            loopback_address("[::1]"),
            Some(std::net::Ipv6Addr::LOCALHOST.into())
        );
    }

    #[test]
    fn the_destination_hides_the_path_that_holds_a_chat_webhook_credential() {
        let hook = Webhook::new(
            "https://hooks.example.com/services/T0/B0/s3cretpath?token=abc",
            None,
            Severity::Info,
        )
        .unwrap();
        assert_eq!(hook.destination(), "https://hooks.example.com/…");
        let local = Webhook::new("http://127.0.0.1:9000/a", None, Severity::Info).unwrap();
        assert_eq!(local.destination(), "http://127.0.0.1:9000/…");
    }

    #[test]
    fn the_signature_covers_the_timestamp_and_the_body() {
        let secret = SecretBytes::new(b"key".to_vec());
        let signature = sign(&secret, "1700000000000", b"{}");
        // HMAC-SHA256("key", "1700000000000.{}"), computed independently (Python's hmac).
        assert_eq!(
            signature,
            "sha256=36a72f4525d3323bd0f238fe82098164fb77b1e42288ff8e07b074c686178ad3"
        );
        assert_ne!(sign(&secret, "1700000000001", b"{}"), signature);
        assert_ne!(sign(&secret, "1700000000000", b"{ }"), signature);
    }
}
