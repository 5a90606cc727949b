//! The `[alerts]` settings of `config.toml`, as written and as validated.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::{Email, EmailSettings, Error, Severity, Sink, SmtpSecurity, Thresholds, Webhook};

/// The `[alerts]` table of `config.toml`, as written.
///
/// ```toml
/// [alerts]
/// denial_burst = 10        # denials of one client or address ...
/// denial_window = "60s"    # ... within this window make an alert
/// quiet_period = "10m"     # one alert per client and rule in this period
/// source_memory = "7d"     # a client's addresses are remembered this long
/// symbol_memory = "30d"    # and the symbols it traded, this long
///
/// [[alerts.webhook]]
/// url = "https://hooks.example.com/services/T0/B0/XYZ"
/// secret_file = "/etc/keygate/webhook.secret"   # optional: signs each POST
/// min_severity = "warning"                      # info, warning (default) or critical
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertsConfig {
    /// See [`Thresholds::denial_burst`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub denial_burst: Option<usize>,
    /// See [`Thresholds::denial_window`], as `60s`, `5m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub denial_window: Option<String>,
    /// See [`Thresholds::quiet_period`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quiet_period: Option<String>,
    /// See [`Thresholds::source_memory`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_memory: Option<String>,
    /// See [`Thresholds::symbol_memory`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub symbol_memory: Option<String>,
    /// The webhooks.
    #[serde(default, rename = "webhook", skip_serializing_if = "Vec::is_empty")]
    pub webhooks: Vec<WebhookConfig>,
    /// The email recipients.
    #[serde(default, rename = "email", skip_serializing_if = "Vec::is_empty")]
    pub emails: Vec<EmailConfig>,
}

/// One `[[alerts.email]]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailConfig {
    /// The mail server, `HOST:PORT`.
    pub server: String,
    /// `starttls`, `tls`, or `none` (a loopback server only); by default `tls` on port
    /// 465, where the server expects it, and `starttls` elsewhere.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security: Option<SmtpSecurity>,
    /// The sender.
    pub from: String,
    /// The recipients.
    pub to: Vec<String>,
    /// The user name, when the server wants one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// A file, readable by its owner only, holding the password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_file: Option<PathBuf>,
    /// The least severity sent (default: critical: a mailbox is not a dashboard).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_severity: Option<Severity>,
}

/// One `[[alerts.webhook]]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Where alerts are POSTed.
    pub url: String,
    /// A file, readable by its owner only, whose content signs each POST.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_file: Option<PathBuf>,
    /// The least severity sent (default: warning).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_severity: Option<Severity>,
}

impl AlertsConfig {
    /// Whether nothing is set.
    pub fn is_empty(&self) -> bool {
        self == &AlertsConfig::default()
    }

    /// The rules' thresholds alone (what `keygate alerts list` and the incident report
    /// need), without reading any secret file.
    pub fn thresholds(&self) -> Result<Thresholds, Error> {
        let defaults = Thresholds::default();
        let duration = |setting: &'static str, value: &Option<String>, default| match value {
            None => Ok(default),
            // The command line's grammar: a value one takes, the other reads the same.
            Some(text) => match keygate_core::parse_duration(text) {
                Ok(d) if !d.is_zero() => Ok(d),
                Ok(_) => Err(Error::BadSetting {
                    setting,
                    reason: "must be longer than zero".into(),
                }),
                Err(e) => Err(Error::BadSetting {
                    setting,
                    reason: e.to_string(),
                }),
            },
        };
        let denial_burst = match self.denial_burst {
            Some(0) => {
                return Err(Error::BadSetting {
                    setting: "denial_burst",
                    reason: "must be at least 1".into(),
                })
            }
            Some(n) => n,
            None => defaults.denial_burst,
        };
        Ok(Thresholds {
            denial_burst,
            denial_window: duration("denial_window", &self.denial_window, defaults.denial_window)?,
            quiet_period: duration("quiet_period", &self.quiet_period, defaults.quiet_period)?,
            source_memory: duration("source_memory", &self.source_memory, defaults.source_memory)?,
            symbol_memory: duration("symbol_memory", &self.symbol_memory, defaults.symbol_memory)?,
        })
    }

    /// The settings these make: durations parsed, URLs checked, secrets read.
    pub fn settings(&self) -> Result<Settings, Error> {
        let thresholds = self.thresholds()?;
        let mut sinks = Vec::new();
        for hook in &self.webhooks {
            let secret = hook
                .secret_file
                .as_deref()
                .map(keygate_vault::read_secret_file)
                .transpose()?;
            let min_severity = hook.min_severity.unwrap_or(Severity::Warning);
            sinks.push(Sink::Webhook(Webhook::new(
                &hook.url,
                secret,
                min_severity,
            )?));
        }
        for email in &self.emails {
            let credentials = match (&email.username, &email.password_file) {
                (Some(user), Some(file)) => {
                    Some((user.as_str(), keygate_vault::read_secret_file(file)?))
                }
                (None, None) => None,
                _ => {
                    return Err(Error::BadEmail {
                        reason: "username and password_file go together".into(),
                    })
                }
            };
            sinks.push(Sink::Email(Email::new(EmailSettings {
                server: &email.server,
                security: email.security.unwrap_or_else(|| {
                    if email.server.ends_with(":465") {
                        SmtpSecurity::Tls
                    } else {
                        SmtpSecurity::Starttls
                    }
                }),
                from: &email.from,
                to: &email.to,
                credentials,
                min_severity: email.min_severity.unwrap_or(Severity::Critical),
            })?));
        }
        Ok(Settings { thresholds, sinks })
    }
}

/// Validated alert settings.
pub struct Settings {
    /// The rules' thresholds.
    pub thresholds: Thresholds,
    /// Where alerts go, besides the log.
    pub sinks: Vec<Sink>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression: the config file read durations with a looser grammar than the command
    /// line, so `10M` was ten months of quiet and `1ms` a denial window no burst fits in.
    #[test]
    fn durations_read_as_on_the_command_line() {
        let with = |quiet_period: &str| AlertsConfig {
            quiet_period: Some(quiet_period.to_owned()),
            ..AlertsConfig::default()
        };
        assert_eq!(
            with("1h30m").thresholds().unwrap().quiet_period,
            std::time::Duration::from_secs(5400)
        );
        for typo in ["10M", "1ms", "1.5m", "0s"] {
            let refused = with(typo).thresholds().unwrap_err().to_string();
            assert!(refused.contains("quiet_period"), "{typo}: {refused}");
        }
    }

    /// Found by review: the default was STARTTLS whatever the port, the weaker of the
    /// two; on 465, where the server speaks TLS from the first byte, it is TLS.
    #[test]
    fn an_email_sink_on_port_465_speaks_tls_unless_told_otherwise() {
        let security = |server: &str, security: Option<SmtpSecurity>| {
            let config = AlertsConfig {
                emails: vec![EmailConfig {
                    server: server.to_owned(),
                    security,
                    from: "keygate@example.com".into(),
                    to: vec!["oncall@example.com".into()],
                    username: None,
                    password_file: None,
                    min_severity: None,
                }],
                ..AlertsConfig::default()
            };
            match &config.settings().unwrap().sinks[..] {
                [Sink::Email(email)] => email.security(),
                _ => panic!("one email sink"),
            }
        };
        assert_eq!(security("smtp.example.com:465", None), SmtpSecurity::Tls);
        assert_eq!(
            security("smtp.example.com:587", None),
            SmtpSecurity::Starttls
        );
        assert_eq!(
            security("smtp.example.com:465", Some(SmtpSecurity::Starttls)),
            SmtpSecurity::Starttls
        );
    }
}
