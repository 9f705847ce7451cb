//! The candidate's page, served by the daemon from files compiled into the
//! binary (`web/` in the repository): `GET /` and `/assets/...`, with
//! `web.enabled` to turn it off.
//!
//! Every answer carries a strict Content-Security-Policy (scripts and
//! styles from this origin only, no inline script, the WebSocket to this
//! origin, no framing), `X-Content-Type-Options: nosniff` and an ETag (a
//! hash of the file), so that a browser revalidates cheaply (`304`).

use std::sync::OnceLock;

/// A file of the page.
pub struct Asset {
    pub path: &'static str,
    pub content_type: &'static str,
    pub body: &'static [u8],
}

const ASSETS: &[Asset] = &[
    Asset {
        path: "/",
        content_type: "text/html; charset=utf-8",
        body: include_bytes!("../../web/index.html"),
    },
    Asset {
        path: "/assets/app.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../web/app.js"),
    },
    Asset {
        path: "/assets/style.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("../../web/style.css"),
    },
    Asset {
        path: "/assets/audio.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../web/audio.js"),
    },
    Asset {
        path: "/assets/capture-worklet.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../web/capture-worklet.js"),
    },
    Asset {
        path: "/assets/playback-worklet.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../web/playback-worklet.js"),
    },
    Asset {
        path: "/assets/icon.svg",
        content_type: "image/svg+xml",
        body: include_bytes!("../../web/icon.svg"),
    },
];

/// The security headers of every page answer.
const SECURITY: &str =
    "Content-Security-Policy: default-src 'none'; script-src 'self'; style-src 'self'; \
connect-src 'self'; img-src 'self'; media-src 'self' blob:; worker-src 'self'; base-uri 'none'; \
form-action 'none'; frame-ancestors 'none'\r\n\
X-Content-Type-Options: nosniff\r\n\
Referrer-Policy: no-referrer\r\n\
X-Frame-Options: DENY\r\n\
Permissions-Policy: microphone=(self)\r\n";

/// The file at `path` (`/index.html` is `/`), with its ETag.
pub fn find(path: &str) -> Option<(&'static Asset, &'static str)> {
    static TAGS: OnceLock<Vec<String>> = OnceLock::new();
    let tags = TAGS.get_or_init(|| {
        ASSETS
            .iter()
            .map(|a| {
                let digest = ring::digest::digest(&ring::digest::SHA256, a.body);
                let hex: String = digest.as_ref()[..12]
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect();
                format!("\"{hex}\"")
            })
            .collect()
    });
    let path = if path == "/index.html" { "/" } else { path };
    ASSETS
        .iter()
        .position(|a| a.path == path)
        .map(|i| (&ASSETS[i], tags[i].as_str()))
}

/// The answer to a GET for the page: the file, or 404 when there is no
/// such file or the page is not served (`web.enabled = false`).
pub fn answer(request: &crate::handshake::PageRequest, enabled: bool) -> Vec<u8> {
    match find(&request.path).filter(|_| enabled) {
        Some((asset, etag)) => response(asset, etag, request.if_none_match.as_deref()),
        None => super::text(
            404,
            "text/plain; charset=utf-8",
            &format!(
                "no such page; interviews are served at {}\n",
                crate::handshake::REALTIME_PATH
            ),
        ),
    }
}

/// The whole HTTP answer for a page request: 200 with the file, or 304 when
/// the browser's copy is current. (`endpoints::serve` cuts the body for
/// HEAD.)
pub fn response(asset: &Asset, etag: &str, if_none_match: Option<&str>) -> Vec<u8> {
    let fresh = if_none_match.is_some_and(|v| v.split(',').any(|t| t.trim() == etag));
    let (status, body): (&str, &[u8]) = if fresh {
        ("304 Not Modified", b"")
    } else {
        ("200 OK", asset.body)
    };
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {}\r\nContent-Length: {}\r\nETag: {etag}\r\nCache-Control: no-cache\r\nConnection: close\r\n{SECURITY}\r\n",
        asset.content_type,
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assets_are_found_with_stable_etags_and_revalidate() {
        let (index, tag) = find("/").unwrap();
        assert_eq!(find("/index.html").unwrap().1, tag);
        assert!(find("/nope").is_none());
        let full = String::from_utf8_lossy(&response(index, tag, None)).to_string();
        assert!(full.starts_with("HTTP/1.1 200 OK"));
        assert!(full.contains("Content-Security-Policy: default-src 'none'; script-src 'self'"));
        let cached = String::from_utf8_lossy(&response(index, tag, Some(tag))).to_string();
        assert!(cached.starts_with("HTTP/1.1 304"));
        assert!(cached.ends_with("\r\n\r\n"));
    }
}
