//! Safe on the open internet: TLS on the plain port, file modes.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;

/// A TLS ClientHello on the plain-text port is recognised from its first
/// bytes and closed at once (well within 100 ms, not after the handshake
/// timeout), with a log line that says what happened.
#[test]
fn a_tls_client_hello_on_the_plain_port_is_closed_at_once() {
    let daemon = Daemon::start("[limits]\nhandshake_timeout = \"30s\"\n");
    let hello: [u8; 16] = [
        0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03, 0x9a, 0x41, 0x07, 0, 0,
    ];
    let mut s = TcpStream::connect(daemon.addr).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    let sent = Instant::now();
    s.write_all(&hello).unwrap();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let took = sent.elapsed();
    assert!(
        buf.is_empty(),
        "answered: {:?}",
        String::from_utf8_lossy(&buf)
    );
    assert!(took < Duration::from_millis(100), "closed after {took:?}");
    daemon.wait_for_log("speaks TLS");
    eprintln!("ClientHello on the plain port closed after {took:?}");
}

/// Every file the daemon writes in its state directory is 0600 and every
/// directory 0700, even outside systemd and whatever the umask.
#[test]
fn state_files_are_private() {
    let daemon = Daemon::start_with("", |cmd| {
        // SAFETY: umask(2) in the child before exec.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(cmd, || {
                libc::umask(0o022);
                Ok(())
            });
        }
    });
    let mut c = Client::connect(&daemon.url());
    c.answer_all("an answer about tests, logs and a lock");
    c.wait_for("interview.assessment.completed");
    let report = daemon.report_path(&c.session_id);
    let deadline = Instant::now() + WAIT;
    while !report.exists() {
        assert!(Instant::now() < deadline, "no report");
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut seen = 0;
    check_modes(&daemon.state_dir(), &mut seen);
    assert!(seen >= 4, "only {seen} entries checked");
}

fn check_modes(dir: &Path, seen: &mut usize) {
    let mode = std::fs::metadata(dir).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700, "{} has mode {mode:o}", dir.display());
    *seen += 1;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            check_modes(&path, seen);
        } else {
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{} has mode {mode:o}", path.display());
            *seen += 1;
        }
    }
}

/// A throwaway CA and a server certificate for 127.0.0.1 in `dir`
/// (tests/peer/make_test_ca.py).
fn make_ca(dir: &Path) {
    let (status, _, err) = run_with_deadline(
        std::process::Command::new("python3")
            .arg(repo().join("tests/peer/make_test_ca.py"))
            .arg(dir),
        WAIT,
    );
    assert!(status.success(), "make_test_ca.py: {err}");
}

/// Connects over wss:// trusting `ca` only; the session id, or why not.
fn tls_probe(addr: std::net::SocketAddr, ca: &Path) -> Result<String, String> {
    let (status, out, err) = run_with_deadline(
        std::process::Command::new(peer_python())
            .arg(repo().join("tests/peer/tls_probe.py"))
            .arg(addr.to_string())
            .arg(ca),
        WAIT,
    );
    if status.success() {
        Ok(out.trim().to_owned())
    } else {
        Err(err)
    }
}

/// With server.tls_cert and server.tls_key the listener speaks wss:// only:
/// a client that trusts the CA gets its interview; a plain ws:// client
/// gets no session. SIGHUP re-reads the files: a renewed certificate (here
/// from another CA) serves new connections without a restart, a session
/// opened before keeps going, and a bad file is refused while the old
/// certificate keeps serving.
#[test]
fn tls_is_built_in_and_a_renewed_certificate_is_served_after_sighup() {
    let certs = tempfile::tempdir().unwrap();
    let (one, two) = (certs.path().join("one"), certs.path().join("two"));
    make_ca(&one);
    make_ca(&two);
    let live = certs.path().join("live");
    std::fs::create_dir(&live).unwrap();
    let install = |from: &Path| {
        std::fs::copy(from.join("server.pem"), live.join("cert.pem")).unwrap();
        std::fs::copy(from.join("server.key"), live.join("key.pem")).unwrap();
    };
    install(&one);
    let config = format!(
        "[server]\ntls_cert = {}\ntls_key = {}\n",
        toml_string(live.join("cert.pem").to_str().unwrap()),
        toml_string(live.join("key.pem").to_str().unwrap()),
    );
    let daemon = Daemon::start(&config);
    let first = tls_probe(daemon.addr, &one.join("ca.pem")).expect("wss with the first CA");
    assert!(first.starts_with("sess_"), "{first}");
    assert!(tls_probe(daemon.addr, &two.join("ca.pem")).is_err());
    // A plain-text client gets no session.
    let plain = std::panic::catch_unwind(|| Client::connect_raw(&daemon.url()));
    assert!(plain.is_err(), "a ws:// client was served on a TLS port");

    install(&two);
    daemon.signal(libc::SIGHUP);
    daemon.wait_for_log("TLS certificate re-read");
    let second =
        tls_probe(daemon.addr, &two.join("ca.pem")).expect("wss with the renewed certificate");
    assert!(second.starts_with("sess_"));

    std::fs::write(live.join("cert.pem"), "not a certificate").unwrap();
    daemon.signal(libc::SIGHUP);
    daemon.wait_for_log("keeping the current configuration and certificate");
    tls_probe(daemon.addr, &two.join("ca.pem")).expect("the old certificate keeps serving");
}
