//! The candidate's page, served by the daemon (web/ compiled in).

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;

use common::*;

/// A raw HTTP exchange: the response head and body.
fn get(daemon: &Daemon, request: &str) -> (String, Vec<u8>) {
    let mut s = TcpStream::connect(daemon.addr).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let split = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a head")
        + 4;
    (
        String::from_utf8_lossy(&buf[..split]).to_string(),
        buf[split..].to_vec(),
    )
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// `GET /` and the asset paths are served with the right Content-Type, an
/// ETag that revalidates with 304, a strict Content-Security-Policy (no
/// inline script) and nosniff; the page loads its script as a module from
/// this origin; `web.enabled = false` turns it all off (404).
#[test]
fn the_page_is_served_with_strict_headers() {
    let daemon = Daemon::start("");
    let (head, body) = get(&daemon, "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(
        header(&head, "content-type"),
        Some("text/html; charset=utf-8")
    );
    let csp = header(&head, "content-security-policy").unwrap();
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert_eq!(header(&head, "x-content-type-options"), Some("nosniff"));
    let html = String::from_utf8(body).unwrap();
    assert!(
        html.contains(r#"<script type="module" src="/assets/app.js">"#),
        "{html}"
    );
    assert!(!html.contains("<script>"), "inline script in the page");
    let etag = header(&head, "etag").unwrap().to_owned();
    let (head, body) = get(
        &daemon,
        &format!("GET / HTTP/1.1\r\nHost: x\r\nIf-None-Match: {etag}\r\n\r\n"),
    );
    assert!(head.starts_with("HTTP/1.1 304"), "{head}");
    assert!(body.is_empty());
    for (path, ty) in [
        ("/assets/app.js", "text/javascript; charset=utf-8"),
        ("/assets/style.css", "text/css; charset=utf-8"),
    ] {
        let (head, body) = get(&daemon, &format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n"));
        assert!(head.starts_with("HTTP/1.1 200"), "{path}: {head}");
        assert_eq!(header(&head, "content-type"), Some(ty), "{path}");
        assert!(!body.is_empty());
    }
    let (head, _) = get(&daemon, "GET /assets/nope.js HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(head.starts_with("HTTP/1.1 404"), "{head}");
    let (head, body) = get(&daemon, "HEAD / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(
        head.starts_with("HTTP/1.1 200") && body.is_empty(),
        "{head}"
    );

    let headless = Daemon::start("[web]\nenabled = false\n");
    let (head, _) = get(&headless, "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(head.starts_with("HTTP/1.1 404"), "{head}");
}
