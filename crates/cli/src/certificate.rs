//! The HTTPS listener's certificate files, watched while `keygate serve` runs.
//!
//! A renewed certificate (the files changed, and stayed as they are for one look) is
//! presented from the next connection on, without a restart; one that cannot be used
//! (it does not read, its key is not its own, it has expired) leaves the one being
//! presented in place, and says so as a `tls_certificate` alert. So does a certificate
//! near its end, from [`WARN_BEFORE`] before it, once a day and at each change of
//! severity. serve does not start on an expired certificate.

use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context as _};
use keygate_gateway::{Certified, ListenerCertificate};
use keygate_monitor::{Alert, AlertRule, Alerter, Severity};

use crate::home::read_bounded;
use crate::output::{rfc3339, span};

/// How long before its end a certificate is alerted on (a warning).
pub const WARN_BEFORE: Duration = Duration::from_secs(14 * 86_400);
/// How long before its end the alert becomes critical.
const CRITICAL_BEFORE: Duration = Duration::from_secs(3 * 86_400);
/// The most a certificate chain file may hold: a chain is a few kilobytes.
const MAX_CERTIFICATE_FILE_LEN: u64 = 1024 * 1024;
/// How often the files are looked at.
const LOOK_EVERY: Duration = Duration::from_secs(2);
/// How often an alert on the same state of a certificate is raised again.
const REMIND_EVERY: Duration = Duration::from_secs(86_400);

/// The certificate chain and private key files given to `serve`.
pub struct CertificateFiles {
    cert: PathBuf,
    key: PathBuf,
}

/// What identifies a file's state without reading it: a renewal replaces the file (a new
/// inode, as certbot's links do) or rewrites it (a new time and, likely, length), and a
/// change of its mode or owner (a key made owner-only after a renewal was refused for
/// its mode) changes its status time.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Stamp {
    device: u64,
    inode: u64,
    modified_ns: i128,
    changed_ns: i128,
    len: u64,
}

impl Stamp {
    /// `None` for a file that cannot be looked at (missing while a renewal moves it).
    fn of(path: &Path) -> Option<Stamp> {
        let meta = std::fs::metadata(path).ok()?;
        Some(Stamp {
            device: meta.dev(),
            inode: meta.ino(),
            modified_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
            changed_ns: i128::from(meta.ctime()) * 1_000_000_000 + i128::from(meta.ctime_nsec()),
            len: meta.len(),
        })
    }
}

type Stamps = (Option<Stamp>, Option<Stamp>);

impl CertificateFiles {
    /// The files at `cert` (the chain, the server's certificate first) and `key` (its
    /// private key, in a file only its owner can read).
    pub fn new(cert: &Path, key: &Path) -> CertificateFiles {
        CertificateFiles {
            cert: cert.to_owned(),
            key: key.to_owned(),
        }
    }

    fn stamps(&self) -> Stamps {
        (Stamp::of(&self.cert), Stamp::of(&self.key))
    }

    fn read(&self) -> anyhow::Result<Certified> {
        let chain = read_bounded(&self.cert, MAX_CERTIFICATE_FILE_LEN)?;
        let key =
            keygate_vault::read_secret_file_up_to(&self.key, keygate_vault::MAX_TLS_KEY_FILE_LEN)
                .with_context(|| format!("reading the TLS key {}", self.key.display()))?;
        Ok(Certified::from_pem(&chain, key.expose_secret())?)
    }

    /// Reads the certificate serve starts with: refused if it has expired, warned of in
    /// the log if it is not valid yet (this machine's clock, or a certificate issued for
    /// later).
    pub fn read_to_start(self) -> anyhow::Result<StartingCertificate> {
        let stamps = self.stamps();
        let first = self.read()?;
        let now = SystemTime::now();
        match first.not_after() {
            Some(end) if end <= now => bail!(
                "the TLS certificate {} expired at {}; renew it",
                self.cert.display(),
                rfc3339(unix_ms(end))
            ),
            Some(_) => {}
            None => tracing::warn!(
                certificate = %self.cert.display(),
                "the TLS certificate's validity does not read: keygate cannot say when it expires"
            ),
        }
        if let Some(start) = first.not_before().filter(|start| *start > now) {
            tracing::warn!(
                not_before = %rfc3339(unix_ms(start)),
                "the TLS certificate is not valid yet: bots that check it cannot connect until then"
            );
        }
        Ok(StartingCertificate {
            files: self,
            stamps,
            first,
        })
    }
}

/// A certificate read to start serve with, to be watched once alerts can be raised.
pub struct StartingCertificate {
    files: CertificateFiles,
    stamps: Stamps,
    first: Certified,
}

impl StartingCertificate {
    /// The listener's certificate, from now on replaced by a renewal of the files and
    /// alerted on through `alerter` as its end comes near; a thread of its own looks at
    /// the files as long as the process runs.
    pub fn watch(self, alerter: Alerter) -> anyhow::Result<Arc<ListenerCertificate>> {
        let mut watch = Watch {
            not_after: self.first.not_after(),
            files: self.files,
            used: self.stamps,
            last_seen: self.stamps,
            reminded: None,
        };
        let listener = ListenerCertificate::new(self.first);
        let raise = |alert: Alert| alerter.raise(alert);
        watch.remind(SystemTime::now(), &raise);
        let watched = Arc::clone(&listener);
        std::thread::Builder::new()
            .name("keygate-certificate".into())
            .spawn(move || loop {
                std::thread::sleep(LOOK_EVERY);
                watch.look(&watched, SystemTime::now(), &|alert| alerter.raise(alert));
            })
            .context("starting the certificate watch thread")?;
        Ok(listener)
    }
}

/// The state of the files and of the certificate being presented.
struct Watch {
    files: CertificateFiles,
    /// When the certificate presented ends, if its validity reads.
    not_after: Option<SystemTime>,
    /// The files as they were when last read.
    used: Stamps,
    /// The files as they were at the last look: a change is read once it holds for a
    /// whole look, so that a renewal caught halfway (the chain written, not yet its key)
    /// is not refused.
    last_seen: Stamps,
    /// The last expiry alert: when, and its severity and whether it said "expired".
    reminded: Option<(Instant, Severity, bool)>,
}

impl Watch {
    fn look(&mut self, listener: &ListenerCertificate, now: SystemTime, raise: &dyn Fn(Alert)) {
        let stamps = self.files.stamps();
        let settled = stamps == self.last_seen;
        self.last_seen = stamps;
        if settled && stamps != self.used {
            self.used = stamps;
            self.renew(listener, now, raise);
        }
        self.remind(now, raise);
    }

    fn renew(&mut self, listener: &ListenerCertificate, now: SystemTime, raise: &dyn Fn(Alert)) {
        let still = match self.not_after {
            Some(end) => format!(
                "serve goes on presenting the certificate valid until {}",
                rfc3339(unix_ms(end))
            ),
            None => "serve goes on presenting the certificate it has".to_owned(),
        };
        let refused = match self.files.read() {
            Ok(next) if next.not_after().is_some_and(|end| end <= now) => format!(
                "the renewed TLS certificate {} expired at {}; {still}",
                self.files.cert.display(),
                rfc3339(unix_ms(next.not_after().unwrap_or(now)))
            ),
            Ok(next) => {
                self.not_after = next.not_after();
                listener.replace(next);
                self.reminded = None;
                tracing::info!(
                    certificate = %self.files.cert.display(),
                    not_after = %self.not_after.map_or_else(|| "unknown".to_owned(), |end| rfc3339(unix_ms(end))),
                    "presenting the renewed TLS certificate from the next connection on"
                );
                return;
            }
            Err(e) => {
                format!("the TLS certificate files changed but cannot be used ({e:#}); {still}")
            }
        };
        raise(Alert::outside_log(
            Severity::Warning,
            AlertRule::TlsCertificate,
            refused,
        ));
    }

    /// Raises an alert while the certificate is near its end: at the first look that
    /// finds it so, when the severity or expiry changes, and once a day.
    fn remind(&mut self, now: SystemTime, raise: &dyn Fn(Alert)) {
        let Some(not_after) = self.not_after else {
            return;
        };
        let left = not_after.duration_since(now).ok();
        let severity = match left {
            Some(left) if left > WARN_BEFORE => {
                self.reminded = None;
                return;
            }
            Some(left) if left > CRITICAL_BEFORE => Severity::Warning,
            _ => Severity::Critical,
        };
        let expired = left.is_none();
        if let Some((at, was, was_expired)) = self.reminded {
            if was == severity && was_expired == expired && at.elapsed() < REMIND_EVERY {
                return;
            }
        }
        self.reminded = Some((Instant::now(), severity, expired));
        let until = rfc3339(unix_ms(not_after));
        let summary = match left {
            None => format!(
                "the HTTPS listener's certificate expired at {until}: bots that check it cannot connect; renew {} and its key (serve presents a renewed one without a restart)",
                self.files.cert.display()
            ),
            Some(left) => format!(
                "the HTTPS listener's certificate expires in {} ({until}); renew {} and its key (serve presents a renewed one without a restart)",
                span(u64::try_from(left.as_millis()).unwrap_or(u64::MAX)),
                self.files.cert.display()
            ),
        };
        raise(Alert::outside_log(
            severity,
            AlertRule::TlsCertificate,
            summary,
        ));
    }
}

/// Milliseconds since the Unix epoch; 0 for a time before it.
fn unix_ms(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use super::*;

    const DAY: Duration = Duration::from_secs(86_400);

    fn watch_of(not_after: SystemTime) -> Watch {
        Watch {
            files: CertificateFiles::new(Path::new("/nonexistent/cert.pem"), Path::new("/k")),
            not_after: Some(not_after),
            used: (None, None),
            last_seen: (None, None),
            reminded: None,
        }
    }

    fn reminded(watch: &mut Watch, now: SystemTime) -> Vec<Alert> {
        let raised = RefCell::new(Vec::new());
        watch.remind(now, &|alert| raised.borrow_mut().push(alert));
        raised.into_inner()
    }

    #[test]
    fn a_certificate_far_from_its_end_raises_nothing() {
        let now = SystemTime::now();
        assert!(reminded(&mut watch_of(now + 15 * DAY), now).is_empty());
    }

    #[test]
    fn a_certificate_near_its_end_is_told_once_then_again_as_it_gets_worse() {
        let now = SystemTime::now();
        let mut watch = watch_of(now + 5 * DAY);
        let first = reminded(&mut watch, now);
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].severity, Severity::Warning);
        assert_eq!(first[0].rule, AlertRule::TlsCertificate);
        assert!(
            first[0].summary.contains("expires in 5d"),
            "{}",
            first[0].summary
        );
        assert!(reminded(&mut watch, now + DAY / 2).is_empty());
        let critical = reminded(&mut watch, now + 2 * DAY + DAY / 2);
        assert_eq!(critical[0].severity, Severity::Critical);
        assert!(reminded(&mut watch, now + 3 * DAY).is_empty());
        let expired = reminded(&mut watch, now + 5 * DAY + Duration::from_secs(1));
        assert_eq!(expired[0].severity, Severity::Critical);
        assert!(
            expired[0].summary.contains("expired at"),
            "{}",
            expired[0].summary
        );
    }

    #[test]
    fn files_that_cannot_be_read_leave_the_certificate_and_say_so() {
        let now = SystemTime::now();
        let first = {
            let made = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
            Certified::from_pem(
                made.cert.pem().as_bytes(),
                made.key_pair.serialize_pem().as_bytes(),
            )
            .unwrap()
        };
        let mut watch = watch_of(first.not_after().unwrap());
        let listener = ListenerCertificate::new(first);
        let raised = RefCell::new(Vec::new());
        watch.renew(&listener, now, &|alert| raised.borrow_mut().push(alert));
        let raised = raised.into_inner();
        assert_eq!(raised.len(), 1);
        assert!(
            raised[0].summary.contains("cannot be used")
                && raised[0].summary.contains("goes on presenting"),
            "{}",
            raised[0].summary
        );
    }
}
