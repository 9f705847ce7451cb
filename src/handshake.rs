//! The HTTP side of a connection: read the request, answer it, and upgrade
//! to a WebSocket when it asks for `/v1/realtime`.
//!
//! We parse the request ourselves (with httparse) rather than let tungstenite
//! do it, so that every refusal is a proper HTTP answer: 404 for another
//! path, 426 for a plain GET, 503 when the daemon is full. This is also
//! where health and metrics endpoints will be served.

use std::fmt;

use async_tungstenite::tungstenite::handshake::derive_accept_key;
use async_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use async_tungstenite::WebSocketStream;
use smol::io::{AsyncReadExt, AsyncWriteExt};
use smol::net::TcpStream;

/// The one endpoint.
pub const REALTIME_PATH: &str = "/v1/realtime";

/// Largest request head we read; browsers send well under 4 KiB.
const MAX_REQUEST_HEAD: usize = 16 * 1024;
const MAX_HEADERS: usize = 64;

/// The subprotocol browsers offer to the Realtime API; echoed when offered,
/// or the browser drops the connection.
const REALTIME_SUBPROTOCOL: &str = "realtime";

pub type Ws = WebSocketStream<TcpStream>;

#[derive(Debug)]
pub enum HandshakeError {
    Io(std::io::Error),
    /// The client closed before sending a whole request.
    Eof,
    /// Not HTTP, or a head over the size limit; answered with 400 or 431.
    BadRequest(&'static str),
    /// Answered with this status and no upgrade.
    Refused(u16),
}

impl fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HandshakeError::Io(e) => write!(f, "i/o error: {e}"),
            HandshakeError::Eof => f.write_str("client closed before the request was complete"),
            HandshakeError::BadRequest(why) => write!(f, "bad request: {why}"),
            HandshakeError::Refused(status) => write!(f, "refused with HTTP {status}"),
        }
    }
}

impl From<std::io::Error> for HandshakeError {
    fn from(e: std::io::Error) -> Self {
        HandshakeError::Io(e)
    }
}

/// Reads the request and upgrades it. `admit` is false when the daemon is
/// at `limits.max_sessions`: the request is answered with 503.
pub async fn accept(
    mut stream: TcpStream,
    admit: bool,
    config: WebSocketConfig,
) -> Result<Ws, HandshakeError> {
    let (head_len, buf) = read_head(&mut stream).await?;
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    if request.parse(&buf[..head_len]).is_err() {
        return refuse(
            &mut stream,
            400,
            "malformed HTTP request\n",
            HandshakeError::BadRequest("malformed"),
        )
        .await;
    }
    let path = request.path.unwrap_or("");
    let path = path.split('?').next().unwrap_or("");
    if path != REALTIME_PATH {
        let body = format!("no such endpoint; interviews are served at {REALTIME_PATH}\n");
        return refuse(&mut stream, 404, &body, HandshakeError::Refused(404)).await;
    }
    if request.method != Some("GET") {
        return refuse(
            &mut stream,
            405,
            "use GET with a WebSocket upgrade\n",
            HandshakeError::Refused(405),
        )
        .await;
    }
    let header = |name: &str| {
        request
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .and_then(|h| std::str::from_utf8(h.value).ok())
    };
    let upgrade = header("upgrade").is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    let connection = header("connection").is_some_and(|v| {
        v.split(',')
            .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
    });
    let version_ok = header("sec-websocket-version") == Some("13");
    let (Some(key), true, true, true) =
        (header("sec-websocket-key"), upgrade, connection, version_ok)
    else {
        let body = "this endpoint speaks WebSocket (version 13) only\n";
        return refuse(&mut stream, 426, body, HandshakeError::Refused(426)).await;
    };
    if !admit {
        let body = "the interview service is at capacity; try again shortly\n";
        return refuse(&mut stream, 503, body, HandshakeError::Refused(503)).await;
    }
    let offered = header("sec-websocket-protocol")
        .is_some_and(|v| v.split(',').any(|p| p.trim() == REALTIME_SUBPROTOCOL));
    let subprotocol = if offered {
        format!("Sec-WebSocket-Protocol: {REALTIME_SUBPROTOCOL}\r\n")
    } else {
        String::new()
    };
    let response = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n{subprotocol}\r\n",
        derive_accept_key(key.as_bytes())
    );
    stream.write_all(response.as_bytes()).await?;
    stream.flush().await?;
    // Bytes the client sent after its request (a pipelined first frame) are
    // handed to the WebSocket rather than lost.
    let rest = buf[head_len..].to_vec();
    Ok(WebSocketStream::from_partially_read(stream, rest, Role::Server, Some(config)).await)
}

/// Reads until the end of the request head; returns its length and all
/// bytes read so far.
async fn read_head(stream: &mut TcpStream) -> Result<(usize, Vec<u8>), HandshakeError> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(HandshakeError::Eof);
        }
        let searched_from = buf.len().saturating_sub(3);
        buf.extend_from_slice(&chunk[..n]);
        if let Some(pos) = buf[searched_from..]
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
        {
            return Ok((searched_from + pos + 4, buf));
        }
        if buf.len() > MAX_REQUEST_HEAD {
            let why = "request head too large";
            let _ = write_response(stream, 431, "request head too large\n").await;
            return Err(HandshakeError::BadRequest(why));
        }
    }
}

async fn refuse(
    stream: &mut TcpStream,
    status: u16,
    body: &str,
    error: HandshakeError,
) -> Result<Ws, HandshakeError> {
    write_response(stream, status, body).await?;
    Err(error)
}

async fn write_response(stream: &mut TcpStream, status: u16, body: &str) -> std::io::Result<()> {
    let reason = match status {
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        426 => "Upgrade Required",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Error",
    };
    let extra = match status {
        426 => "Upgrade: websocket\r\n",
        503 => "Retry-After: 5\r\n",
        _ => "",
    };
    let response = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n{extra}\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.flush().await
}
