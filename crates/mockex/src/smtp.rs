//! An SMTP sink for tests: a mail server on loopback that speaks enough of RFC 5321
//! (EHLO, AUTH PLAIN, MAIL, RCPT, DATA with dot-stuffing, RSET, NOOP, QUIT) for a real
//! client library to deliver to it, and keeps every message. No TLS, no relaying. A
//! recipient at [`GONE_DOMAIN`] is refused for good (550), as a server refuses a mailbox
//! that no longer exists; one at [`BUSY_DOMAIN`] is refused for now (450), as a full
//! mailbox is; one at [`TARPIT_DOMAIN`] is never answered, as a server that delays
//! unknown recipients (a callout, a tarpit) leaves a client waiting.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

use crate::{lock, wait_for, Error};

/// The domain whose mailboxes the sink refuses with `550 5.1.1`.
pub const GONE_DOMAIN: &str = "gone.example";

/// The domain whose mailboxes the sink refuses for now, with `450 4.2.1`.
pub const BUSY_DOMAIN: &str = "busy.example";

/// The domain whose mailboxes the sink never answers: the session waits at `RCPT` until
/// the client gives up.
pub const TARPIT_DOMAIN: &str = "tarpit.example";

/// The longest line or message the sink takes; a client that sends more is cut off.
const MAX_MESSAGE: usize = 1 << 20;

/// One message the sink accepted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mail {
    /// The `AUTH PLAIN` user name and password, when the client authenticated.
    pub auth: Option<(String, String)>,
    /// `MAIL FROM`.
    pub from: String,
    /// Every `RCPT TO`.
    pub to: Vec<String>,
    /// The message (headers and body), dot-stuffing undone, lines ending in CRLF.
    pub data: String,
}

/// A running SMTP sink; stops accepting when dropped.
pub struct SmtpSink {
    /// The bound address.
    pub addr: SocketAddr,
    mails: Arc<Mutex<Vec<Mail>>>,
    asked: Arc<Mutex<HashMap<String, usize>>>,
    _stop: oneshot::Sender<()>,
}

impl SmtpSink {
    /// Every message accepted so far.
    pub fn mails(&self) -> Vec<Mail> {
        lock(&self.mails).clone()
    }

    /// How many times a client sent `RCPT TO` naming `recipient`, whatever the answer:
    /// a test of retries counts attempts, not time.
    pub fn asked(&self, recipient: &str) -> usize {
        lock(&self.asked).get(recipient).copied().unwrap_or(0)
    }

    /// Waits (polling, at most `timeout`) until `n` messages came, and returns them all.
    pub fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Mail> {
        wait_for(n, timeout, || self.mails())
    }
}

/// Binds `listen` and accepts mail in a tokio task.
pub async fn spawn_smtp_sink(listen: SocketAddr) -> Result<SmtpSink, Error> {
    let bind = |source| Error::Bind {
        addr: listen,
        source,
    };
    let listener = TcpListener::bind(listen).await.map_err(bind)?;
    let addr = listener.local_addr().map_err(bind)?;
    let mails = Arc::new(Mutex::new(Vec::new()));
    let asked = Arc::new(Mutex::new(HashMap::new()));
    let (stop, mut stopped) = oneshot::channel::<()>();
    let keep = Arc::clone(&mails);
    let count = Arc::clone(&asked);
    tokio::spawn(async move {
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => {
                        let keep = Arc::clone(&keep);
                        let count = Arc::clone(&count);
                        tokio::spawn(async move {
                            if let Err(error) = session(stream, &keep, &count).await {
                                tracing::debug!(%error, "smtp sink session ended");
                            }
                        });
                    }
                    Err(error) => tracing::error!(%error, "smtp sink cannot accept"),
                },
                _ = &mut stopped => return,
            }
        }
    });
    Ok(SmtpSink {
        addr,
        mails,
        asked,
        _stop: stop,
    })
}

/// One SMTP session, until QUIT or the client goes.
async fn session(
    stream: TcpStream,
    mails: &Mutex<Vec<Mail>>,
    asked: &Mutex<HashMap<String, usize>>,
) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read);
    write.write_all(b"220 mockex ESMTP sink\r\n").await?;
    let mut auth = None;
    let mut from = None;
    let mut to = Vec::new();
    loop {
        let Some(line) = read_line(&mut lines).await? else {
            return Ok(());
        };
        let upper = line.to_ascii_uppercase();
        let reply: &[u8] = if upper.starts_with("EHLO") {
            b"250-mockex\r\n250-AUTH PLAIN\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n"
        } else if upper.starts_with("HELO") {
            b"250 mockex\r\n"
        } else if upper.starts_with("AUTH PLAIN") {
            let initial = line
                .get("AUTH PLAIN".len()..)
                .unwrap_or("")
                .trim()
                .to_owned();
            let encoded = if initial.is_empty() {
                write.write_all(b"334 \r\n").await?;
                read_line(&mut lines).await?.unwrap_or_default()
            } else {
                initial
            };
            match decode_plain(&encoded) {
                Some(credentials) => {
                    auth = Some(credentials);
                    b"235 2.7.0 authenticated\r\n"
                }
                None => b"501 5.5.2 cannot decode AUTH PLAIN\r\n",
            }
        } else if upper.starts_with("MAIL FROM:") {
            from = Some(address(&line["MAIL FROM:".len()..]));
            to.clear();
            b"250 2.1.0 ok\r\n"
        } else if upper.starts_with("RCPT TO:") {
            if from.is_none() {
                b"503 5.5.1 MAIL first\r\n"
            } else {
                let recipient = address(&line["RCPT TO:".len()..]);
                *lock(asked).entry(recipient.clone()).or_default() += 1;
                if recipient.ends_with(&format!("@{GONE_DOMAIN}")) {
                    b"550 5.1.1 mailbox unavailable\r\n"
                } else if recipient.ends_with(&format!("@{BUSY_DOMAIN}")) {
                    b"450 4.2.1 mailbox busy, try again later\r\n"
                } else if recipient.ends_with(&format!("@{TARPIT_DOMAIN}")) {
                    // Silent until the client gives up and goes.
                    while read_line(&mut lines).await?.is_some() {}
                    return Ok(());
                } else {
                    to.push(recipient);
                    b"250 2.1.5 ok\r\n"
                }
            }
        } else if upper == "DATA" {
            if from.is_none() || to.is_empty() {
                b"503 5.5.1 MAIL and RCPT first\r\n"
            } else {
                write.write_all(b"354 end with <CRLF>.<CRLF>\r\n").await?;
                let data = read_data(&mut lines).await?;
                lock(mails).push(Mail {
                    auth: auth.clone(),
                    from: from.take().unwrap_or_default(),
                    to: std::mem::take(&mut to),
                    data,
                });
                b"250 2.0.0 queued\r\n"
            }
        } else if upper == "RSET" {
            from = None;
            to.clear();
            b"250 2.0.0 ok\r\n"
        } else if upper == "NOOP" {
            b"250 2.0.0 ok\r\n"
        } else if upper == "QUIT" {
            write.write_all(b"221 2.0.0 bye\r\n").await?;
            return Ok(());
        } else {
            b"502 5.5.2 not implemented\r\n"
        };
        write.write_all(reply).await?;
    }
}

/// The next line without its CRLF; `None` when the client went away.
async fn read_line(
    lines: &mut BufReader<tokio::net::tcp::OwnedReadHalf>,
) -> std::io::Result<Option<String>> {
    let mut line = String::new();
    let n = (&mut *lines)
        .take(MAX_MESSAGE as u64)
        .read_line(&mut line)
        .await?;
    if n == 0 {
        return Ok(None);
    }
    Ok(Some(line.trim_end_matches(['\r', '\n']).to_owned()))
}

/// The message after DATA, up to the line holding a single dot, dot-stuffing undone.
async fn read_data(
    lines: &mut BufReader<tokio::net::tcp::OwnedReadHalf>,
) -> std::io::Result<String> {
    let mut data = String::new();
    loop {
        let line = read_line(lines).await?.ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "client left in DATA")
        })?;
        if line == "." {
            return Ok(data);
        }
        data.push_str(line.strip_prefix('.').unwrap_or(&line));
        data.push_str("\r\n");
        if data.len() > MAX_MESSAGE {
            return Err(std::io::Error::other("message too large"));
        }
    }
}

/// `<a@b>` (and any parameters after it) as `a@b`.
fn address(arg: &str) -> String {
    let arg = arg.trim();
    match (arg.find('<'), arg.find('>')) {
        (Some(open), Some(close)) if open < close => arg[open + 1..close].to_owned(),
        _ => arg.split_whitespace().next().unwrap_or("").to_owned(),
    }
}

/// `base64(authzid NUL authcid NUL password)` as (authcid, password).
fn decode_plain(encoded: &str) -> Option<(String, String)> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let mut parts = text.split('\0');
    let _authzid = parts.next()?;
    let user = parts.next()?.to_owned();
    let password = parts.next()?.to_owned();
    Some((user, password))
}
