//! Connections the daemon makes: to the OpenAI Realtime API (a WebSocket)
//! and to the Responses API (HTTP). TCP and TLS (rustls, with the webpki
//! roots plus `openai.ca_file`) run async on the executor, so that dropping
//! the future that owns a connection closes it: a session cancelled at
//! shutdown takes its upstream with it.
//!
//! Name resolution is the one blocking step; `async-net` runs it on the
//! `blocking` crate's thread pool, which ends with the process.

use std::fmt;
use std::io;
use std::path::Path;
use std::sync::Arc;

use async_tungstenite::tungstenite::client::IntoClientRequest;
use async_tungstenite::tungstenite::http::HeaderValue;
use async_tungstenite::tungstenite::protocol::WebSocketConfig;
use async_tungstenite::WebSocketStream;
use futures_rustls::rustls::{ClientConfig, RootCertStore};
use futures_rustls::TlsConnector;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use smol::net::TcpStream;

/// An API key or token. Never shown: `Debug` and `Display` print a
/// placeholder, so that a key cannot reach a log line by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Secret {
        Secret(value)
    }

    /// The value itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether `presented` is this secret. Digests are compared, not the
    /// bytes, so the time taken says nothing about how much matched.
    pub fn matches(&self, presented: &str) -> bool {
        use ring::digest::{digest, SHA256};
        digest(&SHA256, self.0.as_bytes()).as_ref()
            == digest(&SHA256, presented.as_bytes()).as_ref()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// A secret from, in order: the systemd credential `credential`
/// (`$CREDENTIALS_DIRECTORY/NAME`, from `LoadCredential=`), then `file`.
/// Whitespace is trimmed. An empty credential counts as none (the Debian
/// package creates the API key's file empty so that the unit starts
/// without one); an empty `file` is an error, since it was named on
/// purpose. `what` names the secret in errors, which never contain it.
pub fn secret(credential: &str, file: Option<&Path>, what: &str) -> Result<Option<Secret>, String> {
    if SECRETS_UNCHECKED.load(std::sync::atomic::Ordering::Relaxed) {
        return Ok(Some(Secret::new("<not checked>".into())));
    }
    let read = |path: &Path| -> Result<String, String> {
        std::fs::read_to_string(path)
            .map(|text| text.trim().to_owned())
            .map_err(|e| format!("cannot read the {what} from {}: {e}", path.display()))
    };
    if let Some(dir) = std::env::var_os("CREDENTIALS_DIRECTORY") {
        let path = Path::new(&dir).join(credential);
        if path.exists() {
            let value = read(&path)?;
            if !value.is_empty() {
                return Ok(Some(Secret::new(value)));
            }
        }
    }
    match file {
        Some(path) => match read(path)? {
            value if value.is_empty() => Err(format!(
                "{} is empty; it should hold the {what}",
                path.display()
            )),
            value => Ok(Some(Secret::new(value))),
        },
        None => Ok(None),
    }
}

/// The OpenAI API key: the credential `openai-api-key`, else `key_file`
/// (see [`secret`]), else `$OPENAI_API_KEY`.
pub fn api_key(key_file: Option<&Path>) -> Result<Secret, String> {
    if let Some(key) = secret("openai-api-key", key_file, "API key")? {
        return Ok(key);
    }
    match std::env::var("OPENAI_API_KEY") {
        Ok(key) if !key.trim().is_empty() => Ok(Secret::new(key.trim().to_owned())),
        _ => Err("no OpenAI API key: put it in the systemd credential `openai-api-key` (/etc/interviewd/openai-api-key with the Debian package), openai.api_key_file or $OPENAI_API_KEY".into()),
    }
}

/// Set by `check-config --skip-secrets`: [`secret`] then reads nothing and
/// answers a placeholder, so that the rest of the settings can be checked
/// where the secrets cannot be read (systemd 252 gives `ExecReload=` no
/// credentials). The daemon itself never sets it.
pub static SECRETS_UNCHECKED: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

/// Where to connect, from a `ws://`, `wss://`, `http://` or `https://` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub url: String,
    pub secure: bool,
    pub host: String,
    pub port: u16,
    /// The path and query, `/` at least.
    pub target: String,
}

impl Endpoint {
    pub fn parse(url: &str) -> Result<Endpoint, String> {
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| format!("`{url}` is not a URL"))?;
        let (secure, default_port) = match scheme {
            "wss" | "https" => (true, 443),
            "ws" | "http" => (false, 80),
            _ => {
                return Err(format!(
                    "`{url}`: the scheme must be ws, wss, http or https"
                ))
            }
        };
        let (authority, target) = match rest.find(['/', '?']) {
            Some(i) => (&rest[..i], rest[i..].to_owned()),
            None => (rest, "/".to_owned()),
        };
        let target = if target.starts_with('?') {
            format!("/{target}")
        } else {
            target
        };
        if authority.contains('@') {
            return Err(format!("`{url}`: credentials in the URL are not supported"));
        }
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || authority.starts_with('[') => match p.parse() {
                Ok(port) => (h, port),
                Err(_) if authority.starts_with('[') && authority.ends_with(']') => {
                    (authority, default_port)
                }
                Err(_) => return Err(format!("`{url}`: bad port `{p}`")),
            },
            _ => (authority, default_port),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(format!("`{url}` has no host"));
        }
        Ok(Endpoint {
            url: url.to_owned(),
            secure,
            host: host.to_owned(),
            port,
            target,
        })
    }
}

/// The TLS client configuration: the webpki roots, plus the PEM
/// certificates in `ca_file` when given.
pub fn tls_config(ca_file: Option<&Path>) -> Result<Arc<ClientConfig>, String> {
    let mut roots = RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    if let Some(path) = ca_file {
        let certs: Vec<CertificateDer> = CertificateDer::pem_file_iter(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?
            .collect::<Result<_, _>>()
            .map_err(|e| format!("{}: {e}", path.display()))?;
        if certs.is_empty() {
            return Err(format!("{}: no PEM certificate in it", path.display()));
        }
        for cert in certs {
            roots
                .add(cert)
                .map_err(|e| format!("{}: {e}", path.display()))?;
        }
    }
    let provider = Arc::new(futures_rustls::rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// A connection the daemon makes, plain or TLS.
pub type Stream = crate::connection::Transport;

/// Opens a TCP connection to the endpoint, with TLS when it is secure.
pub async fn connect(endpoint: &Endpoint, tls: &Arc<ClientConfig>) -> io::Result<Stream> {
    let tcp = TcpStream::connect((endpoint.host.as_str(), endpoint.port)).await?;
    let _ = tcp.set_nodelay(true);
    if !endpoint.secure {
        return Ok(Stream::Plain(tcp));
    }
    let name = ServerName::try_from(endpoint.host.clone())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let tls = TlsConnector::from(tls.clone()).connect(name, tcp).await?;
    Ok(Stream::Tls(Box::new(tls.into())))
}

/// Opens a WebSocket to the endpoint with `Authorization: Bearer KEY`.
pub async fn websocket(
    endpoint: &Endpoint,
    tls: &Arc<ClientConfig>,
    key: &Secret,
    config: WebSocketConfig,
) -> Result<WebSocketStream<Stream>, String> {
    let stream = connect(endpoint, tls)
        .await
        .map_err(|e| format!("cannot connect to {}:{}: {e}", endpoint.host, endpoint.port))?;
    let ws_url = format!(
        "{}://{}:{}{}",
        if endpoint.secure { "wss" } else { "ws" },
        bracket(&endpoint.host),
        endpoint.port,
        endpoint.target
    );
    let mut request = ws_url
        .into_client_request()
        .map_err(|e| format!("bad upstream URL: {e}"))?;
    let mut auth = HeaderValue::from_str(&format!("Bearer {}", key.expose()))
        .map_err(|_| "the API key has characters a header cannot carry".to_owned())?;
    auth.set_sensitive(true);
    request.headers_mut().insert("Authorization", auth);
    let (ws, _response) =
        async_tungstenite::client_async_with_config(request, stream, Some(config))
            .await
            .map_err(|e| match e {
                async_tungstenite::tungstenite::Error::Http(response) => {
                    format!(
                        "the upstream refused the WebSocket: HTTP {}",
                        response.status()
                    )
                }
                other => format!("WebSocket handshake with the upstream failed: {other}"),
            })?;
    Ok(ws)
}

/// An HTTP response, read whole.
#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub body: Vec<u8>,
    /// `Retry-After` in seconds, when given.
    pub retry_after: Option<u64>,
}

/// POSTs a JSON body with `Authorization: Bearer KEY` and reads the whole
/// answer (at most `max_body` bytes; `Content-Length`, chunked, or up to
/// the close). Async on the executor: dropping the future abandons the
/// request and closes the connection.
pub async fn post_json(
    endpoint: &Endpoint,
    tls: &Arc<ClientConfig>,
    key: &Secret,
    body: &[u8],
    max_body: usize,
) -> Result<HttpResponse, String> {
    use smol::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = connect(endpoint, tls)
        .await
        .map_err(|e| format!("cannot connect to {}:{}: {e}", endpoint.host, endpoint.port))?;
    let head = format!(
        "POST {} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nAccept: application/json\r\nContent-Length: {}\r\nConnection: close\r\nUser-Agent: interviewd/{}\r\n\r\n",
        endpoint.target,
        bracket(&endpoint.host),
        key.expose(),
        body.len(),
        env!("CARGO_PKG_VERSION"),
    );
    let io = |e: io::Error| format!("HTTP exchange with {} failed: {e}", endpoint.host);
    stream.write_all(head.as_bytes()).await.map_err(io)?;
    stream.write_all(body).await.map_err(io)?;
    stream.flush().await.map_err(io)?;
    let limit = max_body + 64 * 1024;
    let mut buf = Vec::with_capacity(8 * 1024);
    let mut chunk = [0u8; 8 * 1024];
    let (status, head_len, length, chunked, retry_after) = loop {
        let n = stream.read(&mut chunk).await.map_err(io)?;
        if n == 0 {
            return Err(format!(
                "{} closed the connection before answering",
                endpoint.host
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut response = httparse::Response::new(&mut headers);
        match response.parse(&buf) {
            Ok(httparse::Status::Complete(len)) => {
                let header = |name: &str| {
                    response
                        .headers
                        .iter()
                        .find(|h| h.name.eq_ignore_ascii_case(name))
                        .and_then(|h| std::str::from_utf8(h.value).ok())
                        .map(str::trim)
                };
                let length = header("content-length").and_then(|v| v.parse::<usize>().ok());
                let chunked = header("transfer-encoding")
                    .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
                let retry = header("retry-after").and_then(|v| v.parse::<u64>().ok());
                break (response.code.unwrap_or(0), len, length, chunked, retry);
            }
            Ok(httparse::Status::Partial) if buf.len() < 64 * 1024 => continue,
            Ok(httparse::Status::Partial) => return Err("HTTP response head too large".into()),
            Err(e) => return Err(format!("malformed HTTP response: {e}")),
        }
    };
    let mut raw = buf.split_off(head_len);
    loop {
        let done = match (length, chunked) {
            (_, true) => dechunk(&raw)?.is_some(),
            (Some(len), false) => raw.len() >= len,
            (None, false) => false,
        };
        if done {
            break;
        }
        if raw.len() > limit {
            return Err(format!("the HTTP answer is larger than {max_body} bytes"));
        }
        let n = stream.read(&mut chunk).await.map_err(io)?;
        if n == 0 {
            if length.is_none() && !chunked {
                break;
            }
            return Err(format!(
                "{} closed the connection mid-answer",
                endpoint.host
            ));
        }
        raw.extend_from_slice(&chunk[..n]);
    }
    let body = if chunked {
        dechunk(&raw)?.unwrap_or_default()
    } else {
        raw.truncate(length.unwrap_or(raw.len()));
        raw
    };
    if body.len() > max_body {
        return Err(format!("the HTTP answer is larger than {max_body} bytes"));
    }
    Ok(HttpResponse {
        status,
        body,
        retry_after,
    })
}

/// Decodes a chunked body; `None` while it is incomplete.
fn dechunk(raw: &[u8]) -> Result<Option<Vec<u8>>, String> {
    let mut out = Vec::new();
    let mut at = 0;
    loop {
        let Some(eol) = raw[at..].windows(2).position(|w| w == b"\r\n") else {
            return Ok(None);
        };
        let line = std::str::from_utf8(&raw[at..at + eol]).map_err(|_| "bad chunk size")?;
        let size = usize::from_str_radix(line.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| format!("bad chunk size `{line}`"))?;
        at += eol + 2;
        if size == 0 {
            return Ok(Some(out));
        }
        if raw.len() < at + size + 2 {
            return Ok(None);
        }
        out.extend_from_slice(&raw[at..at + size]);
        at += size + 2;
    }
}

fn bracket(host: &str) -> String {
    if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_into_endpoints() {
        let e = Endpoint::parse("wss://api.openai.com/v1/realtime?model=gpt-realtime").unwrap();
        assert_eq!(
            (e.secure, e.host.as_str(), e.port, e.target.as_str()),
            (
                true,
                "api.openai.com",
                443,
                "/v1/realtime?model=gpt-realtime"
            )
        );
        let e = Endpoint::parse("ws://127.0.0.1:9000").unwrap();
        assert_eq!((e.secure, e.port, e.target.as_str()), (false, 9000, "/"));
        let e = Endpoint::parse("http://[::1]:8080/v1/responses").unwrap();
        assert_eq!((e.host.as_str(), e.port), ("::1", 8080));
        assert!(Endpoint::parse("ftp://x").is_err());
        assert!(Endpoint::parse("wss://user:pw@x/").is_err());
        assert!(Endpoint::parse("wss://x:notaport/").is_err());
    }

    #[test]
    fn chunked_bodies_decode_when_whole() {
        assert_eq!(
            dechunk(b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n").unwrap(),
            Some(b"hello world".to_vec())
        );
        assert_eq!(dechunk(b"5\r\nhel").unwrap(), None);
        assert!(dechunk(b"zz\r\n").is_err());
    }

    #[test]
    fn secrets_do_not_print() {
        let s = Secret::new("sk-very-secret".into());
        assert!(!format!("{s:?} {s}").contains("sk-"));
    }
}
