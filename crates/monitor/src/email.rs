//! The email sink: one message per alert and recipient, over SMTP with STARTTLS or TLS
//! (rustls).

use keygate_vault::SecretBytes;
use lettre::message::header::{ContentType, HeaderName, HeaderValue};
use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde::{Deserialize, Serialize};

use crate::sink::{loopback_address, Failed, DELIVERY_TIMEOUT};
use crate::{Alert, Error, Severity};

/// How the connection to the mail server is protected.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpSecurity {
    /// Plain connection upgraded with STARTTLS, which must succeed (port 587).
    #[default]
    Starttls,
    /// TLS from the first byte (port 465).
    Tls,
    /// No TLS: accepted for a loopback server only (a local relay).
    None,
}

/// An email recipient list on one mail server: alerts of at least `min_severity` are sent
/// as one plain-text message each.
pub struct Email {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    to: Vec<Mailbox>,
    min_severity: Severity,
    destination: String,
    security: SmtpSecurity,
}

/// What [`Email::new`] needs.
pub struct EmailSettings<'a> {
    /// The server, `HOST:PORT`.
    pub server: &'a str,
    /// How the connection is protected.
    pub security: SmtpSecurity,
    /// The sender.
    pub from: &'a str,
    /// The recipients (at least one).
    pub to: &'a [String],
    /// User name and password, when the server wants them.
    pub credentials: Option<(&'a str, SecretBytes)>,
    /// The least severity sent.
    pub min_severity: Severity,
}

impl Email {
    /// Checks the addresses and the server, and builds the transport (no connection yet).
    pub fn new(settings: EmailSettings<'_>) -> Result<Email, Error> {
        let bad = |reason: String| Error::BadEmail { reason };
        let (host, port) = settings
            .server
            .rsplit_once(':')
            .and_then(|(host, port)| Some((host, port.parse::<u16>().ok()?)))
            .filter(|(host, _)| !host.is_empty())
            .ok_or_else(|| bad(format!("server {:?} is not HOST:PORT", settings.server)))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let mailbox = |address: &str| {
            address
                .parse::<Mailbox>()
                .map_err(|e| bad(format!("{address:?} is not an email address ({e})")))
        };
        let from = mailbox(settings.from)?;
        let to = settings
            .to
            .iter()
            .map(|address| mailbox(address))
            .collect::<Result<Vec<_>, _>>()?;
        if to.is_empty() {
            return Err(bad("no recipient (to = [...])".into()));
        }
        let tls =
            || TlsParameters::new(host.to_owned()).map_err(|e| bad(format!("TLS for {host}: {e}")));
        let builder = match settings.security {
            SmtpSecurity::Starttls => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
                .tls(Tls::Required(tls()?)),
            SmtpSecurity::Tls => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
                .tls(Tls::Wrapper(tls()?)),
            SmtpSecurity::None => match loopback_address(host) {
                Some(ip) => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(ip.to_string())
                    .tls(Tls::None),
                None => {
                    return Err(bad(
                        "security = \"none\" is allowed to a loopback server only".into(),
                    ))
                }
            },
        };
        let mut builder = builder.port(port).timeout(Some(DELIVERY_TIMEOUT));
        if let Some((user, password)) = settings.credentials {
            // lettre takes the password as a `String` and keeps it, unlocked and never
            // wiped, for the transport's lifetime (SECURITY.md says so).
            let password = String::from_utf8(password.expose_secret().to_vec())
                .map_err(|_| bad("the password file is not UTF-8".into()))?;
            builder = builder.credentials(Credentials::new(user.to_owned(), password));
        }
        Ok(Email {
            transport: builder.build(),
            from,
            to,
            min_severity: settings.min_severity,
            destination: format!("smtp://{host}:{port}"),
            security: settings.security,
        })
    }

    /// How the connection to the mail server is protected.
    pub fn security(&self) -> SmtpSecurity {
        self.security
    }

    /// The mail server, as `smtp://HOST:PORT`.
    pub fn destination(&self) -> String {
        self.destination.clone()
    }

    /// Whether `alert` is severe enough for these recipients.
    pub fn wants(&self, alert: &Alert) -> bool {
        alert.severity >= self.min_severity
    }

    /// Every recipient, none reached yet.
    pub(crate) fn recipients(&self) -> Recipients {
        Recipients {
            pending: self.to.clone(),
            refused: Vec::new(),
        }
    }

    /// Sends `alert` to each recipient of `mail` not reached yet, one message each: a
    /// server that refuses one mailbox (gone, over quota) stops the whole message at its
    /// `RCPT`, and the others must still hear of the alert. Each has
    /// [`DELIVERY_TIMEOUT`] of its own: a server that delays one mailbox (a callout, a
    /// tarpit) must not use up the time of those after it. A recipient refused for good
    /// is not asked again; one refused for now, or not answered, is, at the next attempt.
    pub(crate) async fn send_each(
        &self,
        alert: &Alert,
        mail: &mut Recipients,
    ) -> Result<(), Failed> {
        let mut retry = Vec::new();
        for to in mail.pending.clone() {
            let sent = tokio::time::timeout(DELIVERY_TIMEOUT, self.send_to(alert, &to))
                .await
                .unwrap_or_else(|_| {
                    Err(Refused {
                        for_good: false,
                        reason: format!("no answer within {} s", DELIVERY_TIMEOUT.as_secs()),
                    })
                });
            match sent {
                Ok(()) => mail.pending.retain(|p| p != &to),
                Err(Refused {
                    for_good: true,
                    reason,
                }) => {
                    mail.pending.retain(|p| p != &to);
                    mail.refused.push(format!("{to} refused: {reason}"));
                }
                Err(Refused { reason, .. }) => retry.push(format!("{to}: {reason}")),
            }
        }
        let mut reasons: Vec<String> = mail.refused.clone();
        reasons.extend(retry);
        if reasons.is_empty() {
            return Ok(());
        }
        Err(Failed {
            reason: reasons.join("; "),
            retry_after: None,
            permanent: mail.pending.is_empty(),
        })
    }

    /// Sends `alert` to `to`, once.
    async fn send_to(&self, alert: &Alert, to: &Mailbox) -> Result<(), Refused> {
        // The addresses were checked when the sink was made, and a body of text always
        // builds: a message that does not would not the next time either.
        let message = Message::builder()
            .from(self.from.clone())
            .to(to.clone())
            .subject(subject(alert))
            .header(ContentType::TEXT_PLAIN)
            // As a webhook's: what a restarted serve sends again has the same id, for a
            // filter to drop (found by review: a mail repeated could not be told).
            .raw_header(HeaderValue::new(
                HeaderName::new_from_ascii_str("X-Keygate-Alert-Id"),
                crate::sink::alert_id(alert),
            ))
            .body(body(alert))
            .map_err(|e| Refused {
                for_good: true,
                reason: e.to_string(),
            })?;
        self.transport
            .send(message)
            .await
            .map(|_| ())
            .map_err(|e| Refused {
                for_good: e.is_permanent(),
                reason: e.to_string(),
            })
    }
}

/// A message the mail server did not take.
struct Refused {
    /// A permanent (5xx) refusal: asking again would change nothing.
    for_good: bool,
    reason: String,
}

/// Where an email alert has still to go, across the attempts to send it (and across a
/// lane's tries: none reached is mailed twice).
#[derive(Debug, Default)]
pub(crate) struct Recipients {
    /// Not reached yet.
    pending: Vec<Mailbox>,
    /// Refused for good, with why.
    refused: Vec<String>,
}

impl Recipients {
    /// Those not reached yet, for a later try; those refused for good are not asked, nor
    /// told of again.
    pub(crate) fn still_to_reach(self) -> Recipients {
        Recipients {
            pending: self.pending,
            refused: Vec::new(),
        }
    }
}

/// `[keygate critical] withdrawal: ...`, the summary cut to keep the subject one line.
fn subject(alert: &Alert) -> String {
    const MAX_SUMMARY: usize = 120;
    let whole = crate::sink::defanged(&alert.summary);
    let mut summary: String = whole.chars().take(MAX_SUMMARY).collect();
    if summary.len() < whole.len() {
        summary.push('…');
    }
    format!(
        "[keygate {}] {}: {summary}",
        alert.severity.as_str(),
        alert.rule.as_str()
    )
}

fn body(alert: &Alert) -> String {
    let mut text = format!(
        "{}\n\nseverity:  {}\nrule:      {}\n",
        crate::sink::defanged(&alert.summary),
        alert.severity.as_str(),
        alert.rule.as_str()
    );
    for (name, value) in [
        ("client", &alert.client),
        ("account", &alert.account),
        ("source", &alert.source_ip),
    ] {
        if let Some(value) = value {
            text.push_str(&format!("{name:<9}  {value}\n"));
        }
    }
    text.push_str(&format!(
        "event:     {} (keygate audit query shows it in context)\ntime:      {}\nalert id:  {}\n",
        alert.event_seq,
        keygate_core::rfc3339(alert.ts_ms),
        crate::sink::alert_id(alert)
    ));
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings<'a>(
        server: &'a str,
        security: SmtpSecurity,
        to: &'a [String],
    ) -> EmailSettings<'a> {
        EmailSettings {
            server,
            security,
            from: "keygate@example.com",
            to,
            credentials: None,
            min_severity: Severity::Warning,
        }
    }

    #[test]
    fn plaintext_is_for_loopback_and_addresses_must_parse() {
        let to = ["oncall@example.com".to_owned()];
        assert!(Email::new(settings(
            "smtp.example.com:587",
            SmtpSecurity::Starttls,
            &to
        ))
        .is_ok());
        assert!(Email::new(settings("smtp.example.com:465", SmtpSecurity::Tls, &to)).is_ok());
        assert!(Email::new(settings("127.0.0.1:2525", SmtpSecurity::None, &to)).is_ok());
        let refused = |s: EmailSettings<'_>| match Email::new(s) {
            Err(Error::BadEmail { reason }) => reason,
            Ok(_) => panic!("accepted"),
            Err(e) => panic!("{e}"),
        };
        assert!(
            refused(settings("smtp.example.com:25", SmtpSecurity::None, &to)).contains("loopback")
        );
        assert!(
            refused(settings("smtp.example.com", SmtpSecurity::Tls, &to)).contains("HOST:PORT")
        );
        assert!(
            refused(settings("smtp.example.com:587", SmtpSecurity::Tls, &[])).contains("recipient")
        );
        let bad = ["not an address".to_owned()];
        assert!(
            refused(settings("smtp.example.com:587", SmtpSecurity::Tls, &bad))
                .contains("not an email")
        );
    }

    #[test]
    fn the_subject_stays_one_short_line() {
        let alert = Alert {
            severity: Severity::Critical,
            rule: crate::AlertRule::Withdrawal,
            summary: "x".repeat(500),
            client: Some("bot1".into()),
            account: None,
            source_ip: None,
            event_seq: 9,
            ts_ms: 1,
        };
        let subject = subject(&alert);
        assert!(subject.starts_with("[keygate critical] withdrawal: xxx"));
        assert!(subject.ends_with('…'));
        assert!(subject.chars().count() < 160);
        let body = body(&alert);
        assert!(body.contains("client     bot1\n"), "{body}");
        assert!(!body.contains("account"));
    }

    /// A regression test (found by review): the body gave the alert's time as raw
    /// milliseconds since the epoch, where everything else keygate shows a person is
    /// RFC 3339.
    #[test]
    fn the_body_gives_the_time_as_rfc3339() {
        let alert = Alert {
            severity: Severity::Critical,
            rule: crate::AlertRule::EventsLost,
            summary: "lost".into(),
            client: None,
            account: None,
            source_ip: None,
            event_seq: 9,
            ts_ms: 1_796_562_797_662,
        };
        let body = body(&alert);
        assert!(
            body.contains("time:      2026-12-06T13:13:17.662Z\n"),
            "{body}"
        );
        assert!(!body.contains("epoch"), "{body}");
    }
}
