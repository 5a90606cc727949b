//! HTTP/1.1 to the exchange: a request written as bytes, its answer read back.
//!
//! keygate writes its upstream requests itself rather than through a general-purpose
//! client. The bytes on the wire are then exactly the request that was classified and
//! re-signed, built in one buffer and written in one call, with nothing between the
//! request and the socket. Answers are read with `httparse` and framed as RFC 9112 §6.3
//! says: no body for `HEAD`, 1xx, 204 and 304; chunked when the last transfer coding is
//! `chunked`; else `Content-Length`; else until the exchange closes the connection.

use std::fmt;
use std::io;

use bytes::{Buf, Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Largest answer head accepted, in bytes.
const MAX_HEAD_BYTES: usize = 64 * 1024;
/// Most header lines in an answer head.
const MAX_HEADERS: usize = 128;
/// Largest answer body accepted. Binance's largest answers (the full `exchangeInfo`) are
/// a few megabytes.
const MAX_BODY_BYTES: usize = 64 * 1024 * 1024;
/// Longest chunk-size or trailer line of a chunked body.
const MAX_LINE_BYTES: usize = 4 * 1024;
/// How much room a read asks for at least.
const READ_CHUNK: usize = 8 * 1024;
/// Most interim (1xx) answers skipped before the final one.
const MAX_INTERIM_ANSWERS: usize = 8;
/// Header names keygate sets itself or that would change how the exchange frames or
/// treats the request; a caller may not pass them.
const FRAMING_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
    "expect",
];

/// An answer read in full.
#[derive(Debug)]
pub(crate) struct Answer {
    pub status: StatusCode,
    /// The headers that `keep` chose.
    pub headers: HeaderMap,
    pub body: Bytes,
    /// Whether the connection may carry another request.
    pub keep_alive: bool,
}

/// Why a request could not be written or its answer read.
#[derive(Debug)]
pub(crate) enum WireError {
    Io(io::Error),
    /// The exchange closed the connection before the answer was complete.
    Closed,
    /// The answer does not parse as HTTP/1.1.
    Malformed(&'static str),
    /// The answer's head or body is larger than keygate accepts.
    TooLarge,
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WireError::Io(e) => write!(f, "{e}"),
            WireError::Closed => f.write_str("connection closed before the answer was complete"),
            WireError::Malformed(what) => write!(f, "malformed answer: {what}"),
            WireError::TooLarge => f.write_str("answer too large"),
        }
    }
}

impl From<io::Error> for WireError {
    fn from(e: io::Error) -> WireError {
        WireError::Io(e)
    }
}

/// Appends the request `method target HTTP/1.1` to `out`, with a `host` header,
/// `headers`, a `content-length` when there is a body or the method expects one, and
/// `body`. Refuses anything that could change the request's framing: a target that is
/// not visible ASCII, a header name that is not a token or is one of the framing headers
/// keygate writes or never sends (`content-length`, `transfer-encoding`, `connection`…),
/// a header value with a control character.
pub(crate) fn encode_request(
    out: &mut Vec<u8>,
    method: &Method,
    target: &str,
    host: &str,
    headers: &[(&str, String)],
    body: &[u8],
) -> Result<(), &'static str> {
    if target.is_empty() || !target.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("request target is not visible ASCII");
    }
    out.extend_from_slice(method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\nhost: ");
    push_value(out, host)?;
    for (name, value) in headers {
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return Err("header name is not a token");
        }
        if FRAMING_HEADERS.iter().any(|h| h.eq_ignore_ascii_case(name)) {
            return Err("header would change the request's framing");
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        push_value(out, value)?;
    }
    let expects_body = matches!(*method, Method::POST | Method::PUT | Method::PATCH);
    if !body.is_empty() || expects_body {
        out.extend_from_slice(b"\r\ncontent-length: ");
        out.extend_from_slice(body.len().to_string().as_bytes());
    }
    out.extend_from_slice(b"\r\n\r\n");
    out.extend_from_slice(body);
    Ok(())
}

/// Whether `value` can be sent as a header value: no control character but tab.
pub(crate) fn is_header_value(value: &str) -> bool {
    value
        .bytes()
        .all(|b| (b >= 0x20 || b == b'\t') && b != 0x7f)
}

fn push_value(out: &mut Vec<u8>, value: &str) -> Result<(), &'static str> {
    if !is_header_value(value) {
        return Err("header value has a control character");
    }
    out.extend_from_slice(value.as_bytes());
    Ok(())
}

/// Why a write failed, and whether the stream had accepted any byte of the request by
/// then. A request of which nothing was accepted never left.
#[derive(Debug)]
pub(crate) struct WriteFailure {
    pub error: io::Error,
    pub accepted_any: bool,
}

/// Writes `request` and flushes it.
pub(crate) async fn write_request<S: AsyncWrite + Unpin>(
    stream: &mut S,
    request: &[u8],
) -> Result<(), WriteFailure> {
    let mut written = 0;
    while written < request.len() {
        match stream.write(&request[written..]).await {
            Ok(0) => {
                return Err(WriteFailure {
                    error: io::ErrorKind::WriteZero.into(),
                    accepted_any: written > 0,
                })
            }
            Ok(n) => written += n,
            Err(error) => {
                return Err(WriteFailure {
                    error,
                    accepted_any: written > 0,
                })
            }
        }
    }
    stream.flush().await.map_err(|error| WriteFailure {
        error,
        accepted_any: true,
    })
}

/// How an answer's body ends.
enum Framing {
    Empty,
    Length(usize),
    Chunked,
    UntilClose,
}

/// A parsed answer head.
struct Head {
    status: StatusCode,
    headers: HeaderMap,
    framing: Framing,
    keep_alive: bool,
    len: usize,
}

/// Reads the answer to a `method` request from `stream`, starting with what is already
/// in `buf`; keeps the headers for which `keep` says yes. Up to eight interim (1xx)
/// answers are skipped. On success `buf` holds whatever followed the answer.
pub(crate) async fn read_answer<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut BytesMut,
    method: &Method,
    keep: impl Fn(&str) -> bool,
) -> Result<Answer, WireError> {
    for _ in 0..=MAX_INTERIM_ANSWERS {
        // The head is parsed once its end is in: parsing each partial read again would
        // cost time in the square of its length.
        let mut scanned = 0;
        let head = loop {
            let end_seen = buf[scanned..].windows(4).any(|w| w == b"\r\n\r\n");
            if end_seen {
                break parse_head(buf, method, &keep)?
                    .ok_or(WireError::Malformed("head does not parse"))?;
            }
            if buf.len() >= MAX_HEAD_BYTES {
                return Err(WireError::TooLarge);
            }
            scanned = buf.len().saturating_sub(3);
            fill(stream, buf).await?;
        };
        buf.advance(head.len);
        if head.status == StatusCode::SWITCHING_PROTOCOLS {
            return Err(WireError::Malformed("unrequested protocol switch"));
        }
        if head.status.is_informational() {
            continue;
        }
        let mut keep_alive = head.keep_alive;
        let body = match head.framing {
            Framing::Empty => Bytes::new(),
            Framing::Length(len) => {
                if len > MAX_BODY_BYTES {
                    return Err(WireError::TooLarge);
                }
                // The length is the exchange's word: reserve up to a megabyte on it, and
                // let a larger body grow as it arrives.
                buf.reserve(len.saturating_sub(buf.len()).min(1024 * 1024));
                while buf.len() < len {
                    fill(stream, buf).await?;
                }
                buf.split_to(len).freeze()
            }
            Framing::Chunked => read_chunked(stream, buf).await?,
            Framing::UntilClose => {
                keep_alive = false;
                loop {
                    if buf.len() > MAX_BODY_BYTES {
                        return Err(WireError::TooLarge);
                    }
                    reserve(buf);
                    if stream.read_buf(buf).await? == 0 {
                        break;
                    }
                }
                buf.split().freeze()
            }
        };
        return Ok(Answer {
            status: head.status,
            headers: head.headers,
            body,
            keep_alive,
        });
    }
    Err(WireError::Malformed("too many interim answers"))
}

/// The head at the start of `buf`, or `None` if it is not complete yet.
fn parse_head(
    buf: &[u8],
    method: &Method,
    keep: &impl Fn(&str) -> bool,
) -> Result<Option<Head>, WireError> {
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut slots);
    let len = match response.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(WireError::TooLarge),
        Err(_) => return Err(WireError::Malformed("head does not parse")),
    };
    let status = response
        .code
        .and_then(|code| StatusCode::from_u16(code).ok())
        .ok_or(WireError::Malformed("bad status code"))?;
    let http11 = response.version == Some(1);
    let mut headers = HeaderMap::new();
    let mut content_length: Option<usize> = None;
    let mut transfer_encoding: Option<&[u8]> = None;
    let mut close = !http11;
    let mut close_option = false;
    for header in response.headers.iter() {
        let name = header.name;
        if name.eq_ignore_ascii_case("content-length") {
            let len = parse_length(header.value)?;
            if content_length.is_some_and(|seen| seen != len) {
                return Err(WireError::Malformed("conflicting content-length"));
            }
            content_length = Some(len);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            if transfer_encoding.is_some() {
                return Err(WireError::Malformed("repeated transfer-encoding"));
            }
            transfer_encoding = Some(header.value);
        } else if name.eq_ignore_ascii_case("connection") {
            for token in header.value.split(|b| *b == b',') {
                let token = token.trim_ascii();
                if token.eq_ignore_ascii_case(b"close") {
                    close_option = true;
                } else if token.eq_ignore_ascii_case(b"keep-alive") && !http11 {
                    close = false;
                }
            }
        }
        if keep(name) {
            if let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_bytes(header.value),
            ) {
                headers.append(name, value);
            }
        }
    }
    // `close` wins over `keep-alive`, whichever of them comes first (RFC 9112 §9.3).
    close |= close_option;
    // An HTTP/1.0 answer with a transfer coding is framed faultily: the connection is
    // closed after it, as RFC 9112 §6.1 requires.
    close |= !http11 && transfer_encoding.is_some();
    let no_body = *method == Method::HEAD
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    let framing = if no_body {
        Framing::Empty
    } else if let Some(codings) = transfer_encoding {
        // A length next to a transfer coding may be a smuggling attempt: the coding wins
        // and the connection is not reused.
        close |= content_length.is_some();
        let last = codings.rsplit(|b| *b == b',').next().unwrap_or_default();
        if last.trim_ascii().eq_ignore_ascii_case(b"chunked") {
            Framing::Chunked
        } else {
            Framing::UntilClose
        }
    } else if let Some(len) = content_length {
        Framing::Length(len)
    } else {
        Framing::UntilClose
    };
    Ok(Some(Head {
        status,
        headers,
        framing,
        keep_alive: !close,
        len,
    }))
}

fn parse_length(value: &[u8]) -> Result<usize, WireError> {
    let bad = || WireError::Malformed("bad content-length");
    if value.is_empty() || value.len() > 19 || !value.iter().all(u8::is_ascii_digit) {
        return Err(bad());
    }
    std::str::from_utf8(value)
        .ok()
        .and_then(|v| v.parse().ok())
        .ok_or_else(bad)
}

/// A chunked body: `size[;extensions]CRLF data CRLF`… up to a zero size, then trailer
/// lines (ignored) up to an empty line.
async fn read_chunked<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut BytesMut,
) -> Result<Bytes, WireError> {
    let mut body = BytesMut::new();
    loop {
        let line = read_line(stream, buf).await?;
        let size_text = line.split(|b| *b == b';').next().unwrap_or_default();
        let size_text = size_text.trim_ascii();
        if size_text.is_empty()
            || size_text.len() > 15
            || !size_text.iter().all(u8::is_ascii_hexdigit)
        {
            return Err(WireError::Malformed("bad chunk size"));
        }
        let size = size_text.iter().fold(0usize, |n, d| {
            n * 16 + (*d as char).to_digit(16).unwrap_or(0) as usize
        });
        if size == 0 {
            let mut trailers = 0;
            loop {
                let line = read_line(stream, buf).await?;
                if line.is_empty() {
                    return Ok(body.freeze());
                }
                trailers += line.len() + 2;
                if trailers > MAX_HEAD_BYTES {
                    return Err(WireError::TooLarge);
                }
            }
        }
        if body.len() + size > MAX_BODY_BYTES {
            return Err(WireError::TooLarge);
        }
        while buf.len() < size + 2 {
            fill(stream, buf).await?;
        }
        if &buf[size..size + 2] != b"\r\n" {
            return Err(WireError::Malformed("chunk not followed by CRLF"));
        }
        body.extend_from_slice(&buf[..size]);
        buf.advance(size + 2);
    }
}

/// The next CRLF-terminated line, without its CRLF.
async fn read_line<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut BytesMut,
) -> Result<Bytes, WireError> {
    loop {
        if let Some(end) = buf.windows(2).position(|w| w == b"\r\n") {
            let line = buf.split_to(end).freeze();
            buf.advance(2);
            return Ok(line);
        }
        if buf.len() > MAX_LINE_BYTES {
            return Err(WireError::TooLarge);
        }
        fill(stream, buf).await?;
    }
}

/// Reads more of the answer into `buf`; the connection closing first is an error.
async fn fill<S: AsyncRead + Unpin>(stream: &mut S, buf: &mut BytesMut) -> Result<(), WireError> {
    reserve(buf);
    if stream.read_buf(buf).await? == 0 {
        return Err(WireError::Closed);
    }
    Ok(())
}

fn reserve(buf: &mut BytesMut) {
    if buf.capacity() - buf.len() < READ_CHUNK / 2 {
        buf.reserve(READ_CHUNK);
    }
}

/// Reads `data` as an exchange's answer, for the `wire_answer` fuzz target, and returns
/// whether an answer was read. The first byte picks the request method (`HEAD` when its
/// high bit is set, else `GET`) and how many bytes each read hands over (its low seven
/// bits, plus one); the rest is what the exchange sent. Every header is kept.
///
/// Panics only if `read_answer` does, or breaks an invariant: the body and the bytes left
/// over for the next answer are never more than was sent, and `HEAD` has no body.
#[cfg(any(test, feature = "fuzzing"))]
pub fn fuzz_read_answer(data: &[u8]) -> bool {
    let Some((&control, sent)) = data.split_first() else {
        return false;
    };
    let method = if control & 0x80 == 0 {
        Method::GET
    } else {
        Method::HEAD
    };
    let mut stream = Pieces::split(sent, &[usize::from(control & 0x7f) + 1]);
    let mut buf = BytesMut::new();
    let read = read_answer(&mut stream, &mut buf, &method, |_| true);
    let Ok(answer) = complete_now(read) else {
        return false;
    };
    assert!(answer.body.len() + buf.len() <= sent.len());
    assert!(method != Method::HEAD || answer.body.is_empty());
    true
}

/// The output of `future`, which must complete when first polled: anything that reads
/// only from [`Pieces`] does, since its reads are never pending.
#[cfg(any(test, feature = "fuzzing"))]
fn complete_now<F: std::future::Future>(future: F) -> F::Output {
    use std::task::{Context, Poll, Waker};

    let mut context = Context::from_waker(Waker::noop());
    match std::pin::pin!(future).poll(&mut context) {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("a future reading from memory was left pending"),
    }
}

/// An in-memory stream that hands out its pieces one read at a time (the part of a piece
/// that does not fit the reader's room comes with the next read), then ends.
#[cfg(any(test, feature = "fuzzing"))]
struct Pieces {
    pieces: Vec<Vec<u8>>,
    next: usize,
    /// How much of the next piece was handed out already.
    offset: usize,
}

#[cfg(any(test, feature = "fuzzing"))]
impl Pieces {
    /// `bytes` cut into pieces whose lengths cycle through `lengths` (a zero counts as
    /// one; no lengths at all, as one piece).
    fn split(bytes: &[u8], lengths: &[usize]) -> Pieces {
        let lengths = if lengths.is_empty() {
            &[usize::MAX][..]
        } else {
            lengths
        };
        let mut pieces = Vec::new();
        let mut rest = bytes;
        for &length in lengths.iter().cycle() {
            if rest.is_empty() {
                break;
            }
            let (piece, after) = rest.split_at(length.clamp(1, rest.len()));
            pieces.push(piece.to_vec());
            rest = after;
        }
        Pieces {
            pieces,
            next: 0,
            offset: 0,
        }
    }
}

#[cfg(any(test, feature = "fuzzing"))]
impl AsyncRead for Pieces {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        out: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some(piece) = this.pieces.get(this.next) {
            let rest = &piece[this.offset..];
            let handed = rest.len().min(out.remaining());
            out.put_slice(&rest[..handed]);
            if handed == rest.len() {
                this.next += 1;
                this.offset = 0;
            } else {
                this.offset += handed;
            }
        }
        std::task::Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads the answer to a `method` request from `bytes`, delivered `step` bytes at a
    /// time; keeps only the content type.
    async fn answer_of(bytes: &[u8], step: usize, method: Method) -> Result<Answer, WireError> {
        let mut stream = Pieces::split(bytes, &[step]);
        read_answer(&mut stream, &mut BytesMut::new(), &method, |n| {
            n.eq_ignore_ascii_case("content-type")
        })
        .await
    }

    #[test]
    fn requests_are_written_as_classified_and_refuse_framing_tricks() {
        let mut out = Vec::new();
        let headers = [("x-mbx-apikey", "KEY".to_owned())];
        encode_request(
            &mut out,
            &Method::POST,
            "/api/v3/order?symbol=BTCUSDT",
            "api.binance.com",
            &headers,
            b"quantity=1",
        )
        .unwrap();
        assert_eq!(
            out,
            b"POST /api/v3/order?symbol=BTCUSDT HTTP/1.1\r\nhost: api.binance.com\r\nx-mbx-apikey: KEY\r\ncontent-length: 10\r\n\r\nquantity=1"
        );
        out.clear();
        encode_request(&mut out, &Method::GET, "/api/v3/time", "h", &[], b"").unwrap();
        assert_eq!(out, b"GET /api/v3/time HTTP/1.1\r\nhost: h\r\n\r\n");
        let bad_value = [("x-mbx-apikey", "KEY\r\nx-evil: 1".to_owned())];
        assert!(encode_request(&mut out, &Method::GET, "/a", "h", &bad_value, b"").is_err());
        let bad_name = [("x evil", "1".to_owned())];
        assert!(encode_request(&mut out, &Method::GET, "/a", "h", &bad_name, b"").is_err());
        for framing in ["Content-Length", "transfer-encoding", "Host", "connection"] {
            let smuggled = [(framing, "0".to_owned())];
            assert!(
                encode_request(&mut out, &Method::POST, "/a", "h", &smuggled, b"x").is_err(),
                "{framing}"
            );
        }
        assert!(encode_request(&mut out, &Method::GET, "/a b", "h", &[], b"").is_err());
        assert!(encode_request(&mut out, &Method::GET, "/a\r\n", "h", &[], b"").is_err());
    }

    #[tokio::test]
    async fn bodies_are_framed_by_length_chunks_or_close_in_any_pieces() {
        let cases: [(&[u8], &[u8], bool); 4] = [
            (
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 13\r\n\r\n{\"ok\": true}\n",
                b"{\"ok\": true}\n",
                true,
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4;ext=1\r\n{\"a\"\r\n5\r\n: 1}\n\r\n0\r\nx-trailer: 1\r\n\r\n",
                b"{\"a\": 1}\n",
                true,
            ),
            (b"HTTP/1.1 200 OK\r\n\r\nuntil the end", b"until the end", false),
            (
                b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\n{}",
                b"{}",
                false,
            ),
        ];
        for (wire, body, keep_alive) in cases {
            for step in [1, 3, 7, wire.len()] {
                let answer = answer_of(wire, step, Method::GET).await.unwrap();
                assert_eq!(answer.status, StatusCode::OK);
                assert_eq!(&answer.body[..], body, "step {step}");
                assert_eq!(answer.keep_alive, keep_alive, "step {step}");
            }
        }
        let answer = answer_of(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Other: 1\r\nContent-Length: 2\r\n\r\n{}",
            5,
            Method::GET,
        )
        .await
        .unwrap();
        assert_eq!(answer.headers.len(), 1);
        assert_eq!(answer.headers["content-type"], "application/json");
    }

    #[tokio::test]
    async fn answers_without_a_body_take_none() {
        for (wire, method) in [
            (&b"HTTP/1.1 204 No Content\r\n\r\n"[..], Method::DELETE),
            (
                b"HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n",
                Method::GET,
            ),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n",
                Method::HEAD,
            ),
        ] {
            let answer = answer_of(wire, 4, method).await.unwrap();
            assert!(answer.body.is_empty());
            assert!(answer.keep_alive);
        }
    }

    #[tokio::test]
    async fn malformed_truncated_or_ambiguous_answers_are_errors() {
        for wire in [
            &b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort"[..],
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n{}",
            b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 1e3\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}XX0\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n",
            b"HTTP/1.1 101 Switching Protocols\r\n\r\n",
            b"NOT HTTP\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Len",
        ] {
            assert!(
                answer_of(wire, 3, Method::GET).await.is_err(),
                "{}",
                String::from_utf8_lossy(wire)
            );
        }
        // A length beside a transfer coding: the coding frames the body, and the
        // connection is not reused.
        let answer = answer_of(
            b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
            6,
            Method::GET,
        )
        .await
        .unwrap();
        assert_eq!(&answer.body[..], b"{}");
        assert!(!answer.keep_alive);
    }

    #[tokio::test]
    async fn endless_interim_answers_and_trailers_are_refused() {
        let mut interim = b"HTTP/1.1 103 Early Hints\r\n\r\n".repeat(MAX_INTERIM_ANSWERS);
        interim.extend_from_slice(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}");
        assert_eq!(
            &answer_of(&interim, 64, Method::GET).await.unwrap().body[..],
            b"{}"
        );
        let mut endless = b"HTTP/1.1 103 Early Hints\r\n\r\n".repeat(MAX_INTERIM_ANSWERS + 1);
        endless.extend_from_slice(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}");
        assert!(answer_of(&endless, 64, Method::GET).await.is_err());

        let mut trailers = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n".to_vec();
        for i in 0..10_000 {
            trailers.extend_from_slice(format!("x-t{i}: 1\r\n").as_bytes());
        }
        trailers.extend_from_slice(b"\r\n");
        assert!(matches!(
            answer_of(&trailers, 4096, Method::GET).await,
            Err(WireError::TooLarge)
        ));
    }

    #[tokio::test]
    async fn oversized_heads_are_refused() {
        let mut wire = b"HTTP/1.1 200 OK\r\n".to_vec();
        for i in 0..200 {
            wire.extend_from_slice(format!("x-h{i}: 1\r\n").as_bytes());
        }
        wire.extend_from_slice(b"\r\n");
        assert!(matches!(
            answer_of(&wire, 1000, Method::GET).await,
            Err(WireError::TooLarge)
        ));
        let mut endless = b"HTTP/1.1 200 OK\r\nx-long: ".to_vec();
        endless.resize(MAX_HEAD_BYTES + 10, b'a');
        assert!(matches!(
            answer_of(&endless, 4096, Method::GET).await,
            Err(WireError::TooLarge)
        ));
    }

    /// Regression: an HTTP/1.0 answer with `Connection: close, keep-alive` kept its
    /// connection, as the later option overrode the earlier. `close` wins, whatever the
    /// order (RFC 9112 §9.3). Found by `answers_read_back_as_sent_however_the_bytes_arrive`.
    #[tokio::test]
    async fn http10_close_beside_keep_alive_closes_the_connection() {
        for wire in [
            &b"HTTP/1.0 200 OK\r\nConnection: close, keep-alive\r\nContent-Length: 2\r\n\r\n{}"[..],
            b"HTTP/1.0 200 OK\r\nConnection: close\r\nConnection: Keep-Alive\r\nContent-Length: 2\r\n\r\n{}",
        ] {
            let answer = answer_of(wire, 5, Method::GET).await.unwrap();
            assert!(!answer.keep_alive, "{}", String::from_utf8_lossy(wire));
        }
        let answer = answer_of(
            b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\n{}",
            5,
            Method::GET,
        )
        .await
        .unwrap();
        assert!(answer.keep_alive);
    }

    /// Regression: an HTTP/1.0 answer with a `Transfer-Encoding` and `Connection:
    /// keep-alive` kept its connection. RFC 9112 §6.1 takes such framing for faulty and
    /// has the connection closed after the answer. Found by
    /// `answers_read_back_as_sent_however_the_bytes_arrive`.
    #[tokio::test]
    async fn http10_answer_with_a_transfer_coding_closes_the_connection() {
        let chunked =
            b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n";
        let with_body = [&chunked[..], b"2\r\n{}\r\n0\r\n\r\n"].concat();
        for (wire, method) in [(&with_body[..], Method::GET), (&chunked[..], Method::HEAD)] {
            let answer = answer_of(wire, 5, method).await.unwrap();
            assert!(!answer.keep_alive, "{}", String::from_utf8_lossy(wire));
        }
    }

    #[test]
    fn fuzz_read_answer_reads_or_refuses_a_corpus_of_tricky_answers() {
        const GET: u8 = 0x00;
        const HEAD: u8 = 0x80;
        let corpus: &[(u8, &[u8], bool)] = &[
            (GET, b"", false),
            (GET, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}", true),
            (0x7f, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1;\r\nx\r\n0\r\n\r\n", true),
            (GET, b"HTTP/1.1 200 OK\r\n\r\n", true),
            (GET, b"HTTP/1.1 999 X\r\nContent-Length: 0\r\n\r\n", true),
            (HEAD, b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n", true),
            (HEAD, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", true),
            (GET, b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx", true),
            (GET, b"HTTP/1.1 200 OK\r\nContent-Length: +1\r\n\r\nx", false),
            (GET, b"HTTP/1.1 200 OK\r\nContent-Length: 18446744073709551615\r\n\r\n", false),
            (GET, b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n", false),
            (GET, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffff\r\n", false),
            (GET, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\n", false),
            (GET, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nxy", false),
            (GET, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", false),
            (GET, b"HTTP/1.1 200 OK\r\nX: a\r\n b\r\nContent-Length: 0\r\n\r\n", false),
            (GET, b"HTTP/1.1 200 OK\r\nX: a\x00b\r\nContent-Length: 0\r\n\r\n", false),
            (GET, b"HTTP/1.1 101 Switching Protocols\r\n\r\n", false),
            (GET, b"HTTP/1.1 099 X\r\n\r\n", false),
            (GET, b"HTTP/2 200\r\n\r\n", false),
            (GET, b"\r\n\r\n", false),
        ];
        for (control, sent, reads) in corpus {
            let data = [&[*control][..], sent].concat();
            assert_eq!(
                fuzz_read_answer(&data),
                *reads,
                "{}",
                String::from_utf8_lossy(sent)
            );
        }
        let mut interim = vec![GET];
        interim.extend(b"HTTP/1.1 103 Early Hints\r\n\r\n".repeat(MAX_INTERIM_ANSWERS));
        interim.extend(b"HTTP/1.1 204 No Content\r\n\r\n");
        assert!(fuzz_read_answer(&interim));
        interim.splice(1..1, b"HTTP/1.1 100 Continue\r\n\r\n".iter().copied());
        assert!(!fuzz_read_answer(&interim));
    }
}
