//! The HTTP side of a connection: read the request, answer it, and upgrade
//! to a WebSocket when it asks for `/v1/realtime`.
//!
//! We parse the request ourselves (with httparse) rather than let tungstenite
//! do it, so that every refusal is a proper HTTP answer: 400 for what is not
//! a valid WebSocket request, 404 for another path, 426 for a plain GET, 429
//! and 503 when the daemon will not take the session. This is also where
//! health and metrics endpoints will be served.
//!
//! [`examine`] is a pure function of the bytes read so far, so that every
//! input, however hostile, is decided without I/O (and property-tested):
//! it needs more bytes, or it has an answer, or it is an upgrade.
//! [`accept`] does the reading, at a minimum pace.

use std::fmt;
use std::time::{Duration, Instant};

use async_tungstenite::tungstenite::handshake::derive_accept_key;
use async_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use async_tungstenite::WebSocketStream;
use smol::future::FutureExt;
use smol::io::{AsyncReadExt, AsyncWriteExt};
use smol::Timer;

use crate::admission::Refusal;
use crate::connection::{Connection, Transport};

/// The one endpoint.
pub const REALTIME_PATH: &str = "/v1/realtime";

/// Largest request head we read; browsers send well under 4 KiB.
pub const MAX_REQUEST_HEAD: usize = 16 * 1024;
const MAX_HEADERS: usize = 64;

/// The subprotocol browsers offer to the Realtime API; echoed when offered,
/// or the browser drops the connection.
const REALTIME_SUBPROTOCOL: &str = "realtime";

/// The subprotocol prefix browsers use to pass an API key to the Realtime
/// API (a browser cannot set `Authorization`); here it carries the invite.
const KEY_SUBPROTOCOL_PREFIX: &str = "openai-insecure-api-key.";

/// How long a new connection may take to start its request: a browser that
/// opened the connection ahead of time (preconnect) sends within this, a
/// slowloris client does not get to hold the slot for the whole
/// `limits.handshake_timeout`.
pub const HEAD_GRACE: Duration = Duration::from_secs(2);

/// After the grace, the head must keep arriving at this many bytes per
/// second. A real request head (a few hundred bytes) arrives in one packet;
/// a client trickling a byte a second is cut within a second or two.
pub const HEAD_MIN_RATE: u64 = 256;

/// Seconds a refused client is told to wait (`Retry-After`).
const RETRY_AFTER_SECS: u32 = 5;

pub type Ws = WebSocketStream<Connection>;

#[derive(Debug)]
pub enum HandshakeError {
    Io(std::io::Error),
    /// The client closed before sending a whole request.
    Eof,
    /// The head did not arrive at [`HEAD_MIN_RATE`]; answered with 408.
    TooSlow,
    /// Answered with this status and no upgrade (a bad or unroutable
    /// request).
    Answered(u16),
    /// A valid request the daemon would not take (401, 403, 429, 503);
    /// `admit` has logged why.
    Denied(u16),
    /// A TLS ClientHello on a plain-text port: closed at once.
    TlsOnPlainPort,
}

impl fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HandshakeError::Io(e) => write!(f, "i/o error: {e}"),
            HandshakeError::Eof => f.write_str("client closed before the request was complete"),
            HandshakeError::TooSlow => write!(
                f,
                "request head arrived slower than {HEAD_MIN_RATE} bytes/s; answered 408"
            ),
            HandshakeError::Answered(status) => write!(f, "answered HTTP {status}"),
            HandshakeError::Denied(status) => write!(f, "refused with HTTP {status}"),
            HandshakeError::TlsOnPlainPort => f.write_str(
                "the client speaks TLS (wss:// or https://) to a plain-text port; closed. Set server.tls_cert and server.tls_key, or connect with ws://",
            ),
        }
    }
}

impl From<std::io::Error> for HandshakeError {
    fn from(e: std::io::Error) -> Self {
        HandshakeError::Io(e)
    }
}

/// A WebSocket upgrade request for [`REALTIME_PATH`], validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The query string, without `?`.
    pub query: Option<String>,
    pub key: String,
    /// Whether the client offered the `realtime` subprotocol.
    pub offers_realtime: bool,
    /// Every `X-Forwarded-For` header, in order.
    pub forwarded_for: Vec<String>,
    /// The browser's `Origin`, when it sent one.
    pub origin: Option<String>,
    /// The client's token: `Authorization: Bearer TOKEN` (what the Realtime
    /// SDKs send as their API key), the browser subprotocol
    /// `openai-insecure-api-key.TOKEN`, or `?invite=TOKEN`, in that order.
    pub token: Option<String>,
    /// The length of the head; the bytes after it are the first frames.
    pub head_len: usize,
}

/// An HTTP answer that ends the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub body: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Examined {
    /// The head is not complete yet.
    NeedMore,
    Answer(Answer),
    Upgrade(Request),
    /// The bytes are a TLS handshake, on a port that does not speak TLS.
    Tls,
    /// A GET or HEAD for another path: an HTTP endpoint (`endpoints`).
    Page(PageRequest),
}

/// A plain HTTP GET or HEAD, for one of the `endpoints`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRequest {
    pub path: String,
    pub head: bool,
    pub if_none_match: Option<String>,
    /// The bearer token of `Authorization: Bearer TOKEN`, if any.
    pub bearer: Option<String>,
    /// Every `X-Forwarded-For` header, in order.
    pub forwarded_for: Vec<String>,
}

/// What [`accept`] ends with when the client did not fail.
pub enum Accepted<T> {
    /// The WebSocket, the request and what `admit` returned.
    Upgrade(Box<(Ws, Request, T)>),
    /// A plain HTTP request, for the caller to answer on the stream.
    Page(Box<(Transport, PageRequest)>),
}

fn answer(status: u16, body: impl Into<String>) -> Examined {
    Examined::Answer(Answer {
        status,
        body: body.into(),
    })
}

/// Decides what to do with the bytes read so far.
pub fn examine(buf: &[u8]) -> Examined {
    // A TLS record header: content type 22 (handshake), version 3.x.
    if buf.first() == Some(&0x16) && buf.get(1).is_none_or(|&b| b == 0x03) {
        return Examined::Tls;
    }
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    let head_len = match request.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() > MAX_REQUEST_HEAD => {
            return answer(431, "request head too large\n");
        }
        Ok(httparse::Status::Partial) => return Examined::NeedMore,
        Err(httparse::Error::TooManyHeaders) => {
            return answer(431, "too many request headers\n");
        }
        Err(e) => return answer(400, format!("malformed HTTP request: {e}\n")),
    };
    if head_len > MAX_REQUEST_HEAD {
        return answer(431, "request head too large\n");
    }
    let target = request.path.unwrap_or("");
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q.to_owned())),
        None => (target, None),
    };
    // RFC 6455 4.1: an HTTP/1.1 GET with a Host header.
    if request.version != Some(1) {
        return answer(400, "HTTP/1.1 is required\n");
    }
    let headers: &[httparse::Header] = request.headers;
    let all = |name: &'static str| header_values(headers, name);
    let header = |name: &'static str| all(name).next();
    if header("host").is_none_or(|h| h.trim().is_empty()) {
        return answer(400, "missing Host header\n");
    }
    let bearer = header("authorization").and_then(|v| {
        let (scheme, token) = v.trim().split_once(' ')?;
        scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
    });
    if path != REALTIME_PATH {
        let upgrading = header("upgrade").is_some();
        if matches!(request.method, Some("GET" | "HEAD")) && !upgrading {
            return Examined::Page(PageRequest {
                path: path.to_owned(),
                head: request.method == Some("HEAD"),
                if_none_match: header("if-none-match").map(str::to_owned),
                bearer: bearer.map(str::to_owned),
                forwarded_for: all("x-forwarded-for").map(str::to_owned).collect(),
            });
        }
        return answer(
            404,
            format!("no such endpoint; interviews are served at {REALTIME_PATH}\n"),
        );
    }
    if request.method != Some("GET") {
        return answer(405, "use GET with a WebSocket upgrade\n");
    }
    let upgrade = header("upgrade").is_some_and(|v| v.trim().eq_ignore_ascii_case("websocket"));
    let connection = all("connection").any(|v| {
        v.split(',')
            .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
    });
    let version_ok = header("sec-websocket-version").map(str::trim) == Some("13");
    if !(upgrade && connection && version_ok) {
        return answer(426, "this endpoint speaks WebSocket (version 13) only\n");
    }
    let key = match header("sec-websocket-key").map(str::trim) {
        Some(key) if valid_key(key) => key.to_owned(),
        _ => return answer(400, "Sec-WebSocket-Key must be 16 bytes in base64\n"),
    };
    let protocols: Vec<&str> = all("sec-websocket-protocol")
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    let offers_realtime = protocols.contains(&REALTIME_SUBPROTOCOL);
    let from_protocol = protocols
        .iter()
        .find_map(|p| p.strip_prefix(KEY_SUBPROTOCOL_PREFIX));
    let from_query = query.as_deref().and_then(|q| {
        q.split('&')
            .filter_map(|pair| pair.split_once('='))
            .find(|(k, _)| *k == "invite")
            .map(|(_, v)| v)
    });
    let token = bearer
        .or(from_protocol)
        .or(from_query)
        .filter(|t| !t.is_empty())
        .map(str::to_owned);
    Examined::Upgrade(Request {
        query,
        key,
        offers_realtime,
        forwarded_for: all("x-forwarded-for").map(str::to_owned).collect(),
        origin: header("origin").map(|o| o.trim().to_owned()),
        token,
        head_len,
    })
}

/// Every value of the header `name` that is UTF-8.
fn header_values<'a>(
    headers: &'a [httparse::Header<'a>],
    name: &'static str,
) -> impl Iterator<Item = &'a str> {
    headers
        .iter()
        .filter(move |h| h.name.eq_ignore_ascii_case(name))
        .filter_map(|h| std::str::from_utf8(h.value).ok())
}

/// RFC 6455 4.1: the key is 16 bytes, base64-encoded (24 characters, the
/// last two `=`).
fn valid_key(key: &str) -> bool {
    let b = key.as_bytes();
    b.len() == 24
        && b[22..] == *b"=="
        && b[..22]
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b'+' || *c == b'/')
}

/// Why `accept`'s `admit` turned a valid request away: the HTTP answer.
#[derive(Debug)]
pub struct Denied {
    pub status: u16,
    pub body: String,
}

impl From<Refusal> for Denied {
    fn from(refusal: Refusal) -> Denied {
        let (status, body) = match refusal {
            Refusal::SessionsPerIp => (429, "too many interviews from your address\n"),
            _ => (
                503,
                "the interview service is at capacity; try again shortly\n",
            ),
        };
        Denied {
            status,
            body: body.into(),
        }
    }
}

/// Reads the request and upgrades it. `admit` decides, once the request is
/// read, whether the daemon takes the session (who the client is, whether
/// there is room); what it returns goes with the session. A plain GET or
/// HEAD for another path is handed back for `endpoints` to answer.
pub async fn accept<T>(
    mut stream: Transport,
    config: WebSocketConfig,
    admit: impl FnOnce(&Request) -> Result<T, Denied>,
) -> Result<Accepted<T>, HandshakeError> {
    let (request, buf) = match read_head(&mut stream).await? {
        (Examined::Upgrade(request), buf) => (request, buf),
        (Examined::Answer(a), _) => {
            write_response(&mut stream, a.status, &a.body).await?;
            return Err(HandshakeError::Answered(a.status));
        }
        (Examined::Tls, _) => return Err(HandshakeError::TlsOnPlainPort),
        (Examined::Page(page), _) => return Ok(Accepted::Page(Box::new((stream, page)))),
        (Examined::NeedMore, _) => unreachable!("read_head returns a decision"),
    };
    let admitted = match admit(&request) {
        Ok(admitted) => admitted,
        Err(denied) => {
            write_response(&mut stream, denied.status, &denied.body).await?;
            return Err(HandshakeError::Denied(denied.status));
        }
    };
    let subprotocol = if request.offers_realtime {
        format!("Sec-WebSocket-Protocol: {REALTIME_SUBPROTOCOL}\r\n")
    } else {
        String::new()
    };
    let response = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n{subprotocol}\r\n",
        derive_accept_key(request.key.as_bytes())
    );
    stream.write_all(response.as_bytes()).await?;
    stream.flush().await?;
    // Bytes the client sent after its request (a pipelined first frame) are
    // handed to the WebSocket rather than lost.
    let connection = Connection::new(stream, &buf[request.head_len..])?;
    let ws = WebSocketStream::from_raw_socket(connection, Role::Server, Some(config)).await;
    Ok(Accepted::Upgrade(Box::new((ws, request, admitted))))
}

/// Reads until [`examine`] has a decision, at [`HEAD_MIN_RATE`].
async fn read_head(stream: &mut Transport) -> Result<(Examined, Vec<u8>), HandshakeError> {
    let started = Instant::now();
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let due =
            started + HEAD_GRACE + Duration::from_millis(buf.len() as u64 * 1000 / HEAD_MIN_RATE);
        let read = async { Some(stream.read(&mut chunk).await) }
            .or(async {
                Timer::at(due).await;
                None
            })
            .await;
        let n = match read {
            Some(read) => read?,
            None => {
                let _ = write_response(stream, 408, "request head too slow\n").await;
                return Err(HandshakeError::TooSlow);
            }
        };
        if n == 0 {
            return Err(HandshakeError::Eof);
        }
        buf.extend_from_slice(&chunk[..n]);
        match examine(&buf) {
            Examined::NeedMore => continue,
            decided => return Ok((decided, buf)),
        }
    }
}

/// The reason phrase and extra headers of a status we answer with.
fn status_line(status: u16) -> (&'static str, String) {
    match status {
        200 => ("OK", String::new()),
        400 => ("Bad Request", String::new()),
        401 => ("Unauthorized", "WWW-Authenticate: Bearer\r\n".into()),
        403 => ("Forbidden", String::new()),
        404 => ("Not Found", String::new()),
        405 => ("Method Not Allowed", "Allow: GET\r\n".into()),
        408 => ("Request Timeout", String::new()),
        426 => (
            "Upgrade Required",
            "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n".into(),
        ),
        429 => (
            "Too Many Requests",
            format!("Retry-After: {RETRY_AFTER_SECS}\r\n"),
        ),
        431 => ("Request Header Fields Too Large", String::new()),
        503 => (
            "Service Unavailable",
            format!("Retry-After: {RETRY_AFTER_SECS}\r\n"),
        ),
        _ => ("Error", String::new()),
    }
}

/// A whole plain-text HTTP response that closes the connection.
pub fn response(status: u16, body: &str) -> String {
    typed_response(status, "text/plain; charset=utf-8", body)
}

/// The same with another content type. Never cached: these are refusals
/// and probe answers, true only at the moment they are given.
pub fn typed_response(status: u16, content_type: &str, body: &str) -> String {
    let (reason, extra) = status_line(status);
    format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n{extra}\r\n{body}",
        body.len()
    )
}

async fn write_response(stream: &mut Transport, status: u16, body: &str) -> std::io::Result<()> {
    stream.write_all(response(status, body).as_bytes()).await?;
    stream.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "GET /v1/realtime HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";

    fn status(head: &str) -> Option<u16> {
        match examine(head.as_bytes()) {
            Examined::Answer(a) => Some(a.status),
            _ => None,
        }
    }

    #[test]
    fn a_valid_upgrade_is_accepted_with_crlf_or_bare_lf() {
        assert!(matches!(examine(GOOD.as_bytes()), Examined::Upgrade(_)));
        let lf = GOOD.replace("\r\n", "\n");
        assert!(matches!(examine(lf.as_bytes()), Examined::Upgrade(_)));
        assert_eq!(examine(&GOOD.as_bytes()[..30]), Examined::NeedMore);
    }

    #[test]
    fn rfc_6455_requirements_are_enforced() {
        assert_eq!(status(&GOOD.replace("HTTP/1.1", "HTTP/1.0")), Some(400));
        assert_eq!(status(&GOOD.replace("Host: x\r\n", "")), Some(400));
        assert_eq!(
            status(&GOOD.replace("dGhlIHNhbXBsZSBub25jZQ==", "short")),
            Some(400)
        );
        assert_eq!(
            status(&GOOD.replace("Upgrade: websocket\r\n", "")),
            Some(426)
        );
        assert_eq!(status(&GOOD.replace("/v1/realtime", "/")), Some(404));
        assert_eq!(status(&GOOD.replace("GET", "POST")), Some(405));
        assert_eq!(examine(b"\x16\x03\x01\x02\x00\x01\x00"), Examined::Tls);
        assert_eq!(status("\x17\x03\x01\x02\x00\x01\x00"), Some(400));
        assert!(response(426, "").contains("Sec-WebSocket-Version: 13\r\n"));
        assert!(response(429, "").contains("Retry-After: "));
    }
}
