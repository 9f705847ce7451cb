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
    make_test_ca(&one);
    make_test_ca(&two);
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

/// Runs `interviewd invite ARGS --state-dir STATE`; its stdout.
fn invite_cli(daemon: &Daemon, args: &[&str]) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_interviewd"))
        .arg("invite")
        .args(args)
        .arg("--state-dir")
        .arg(daemon.state_dir())
        .output()
        .expect("run interviewd invite");
    assert!(
        out.status.success(),
        "invite {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// An upgrade request with extra header lines; `(status, body)`.
fn upgrade(daemon: &Daemon, target: &str, extra: &str) -> (u16, String) {
    let mut s = TcpStream::connect(daemon.addr).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    write!(
        s,
        "GET {target} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{extra}\r\n"
    )
    .unwrap();
    let mut buf = [0u8; 4096];
    let n = s.read(&mut buf).unwrap_or(0);
    let text = String::from_utf8_lossy(&buf[..n]).to_string();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("").to_owned();
    (status, body)
}

fn transcripts(daemon: &Daemon) -> usize {
    std::fs::read_dir(daemon.state_dir().join("sessions"))
        .map(|d| d.count())
        .unwrap_or(0)
}

const INVITE_MODE: &str = "[access]\nmode = \"invite\"\n";

/// In invite mode a missing, unknown, expired, used or revoked token gets
/// HTTP 401 with a one-line reason and starts no session; the token works
/// as `Authorization: Bearer`, as the browser subprotocol and as
/// `?invite=`; the invite's candidate is in the transcript header and the
/// report; the state directory holds no token.
#[test]
fn invites_admit_their_holders_and_nobody_else() {
    let daemon = Daemon::start(INVITE_MODE);
    let (token, id) = create_invite(
        &daemon,
        &[
            "--candidate",
            "Ada Lovelace <ada@example.com>",
            "--uses",
            "3",
        ],
    );
    let (_, expired_id) = create_invite(&daemon, &["--expires", "0s"]);
    let expired = {
        let (t, i) = create_invite(&daemon, &["--expires", "0s"]);
        assert_ne!(i, expired_id);
        t
    };
    let (revoked, revoked_id) = create_invite(&daemon, &[]);
    invite_cli(&daemon, &["revoke", &revoked_id]);
    let (single, _) = create_invite(&daemon, &["--uses", "1"]);

    for (what, target, extra, reason) in [
        ("no token", "/v1/realtime", String::new(), "required"),
        (
            "unknown",
            "/v1/realtime",
            "Authorization: Bearer ivt_0000\r\n".to_owned(),
            "not valid",
        ),
        (
            "expired",
            "/v1/realtime",
            format!("Authorization: Bearer {expired}\r\n"),
            "expired",
        ),
        (
            "revoked",
            "/v1/realtime",
            format!("Authorization: Bearer {revoked}\r\n"),
            "revoked",
        ),
    ] {
        let (status, body) = upgrade(&daemon, target, &extra);
        assert_eq!(status, 401, "{what}: {body}");
        assert!(body.contains(reason), "{what}: {body}");
    }
    assert_eq!(transcripts(&daemon), 0, "a refused token started a session");

    // The three ways to present a token: the first opens a session, the
    // others, with the same invite, take that session over (resume).
    let mut as_header = Client::connect_raw_with(
        &daemon.url(),
        &[("Authorization", &format!("Bearer {token}"))],
    );
    let created = as_header.wait_for("session.created");
    let session_id = created["session"]["id"].as_str().unwrap().to_owned();
    let mut as_protocol = Client::connect_raw_with(
        &daemon.url(),
        &[(
            "Sec-WebSocket-Protocol",
            &format!("realtime, openai-insecure-api-key.{token}"),
        )],
    );
    assert_eq!(
        as_protocol.wait_for("session.created")["session"]["id"],
        session_id.as_str()
    );
    let mut c = Client::connect_raw_with(&format!("{}?invite={token}", daemon.url()), &[]);
    assert_eq!(
        c.wait_for("session.created")["session"]["id"],
        session_id.as_str()
    );
    assert_eq!(as_header.read_to_end(), Ended::Closed(4000));
    assert_eq!(as_protocol.read_to_end(), Ended::Closed(4000));
    c.session_id = session_id;

    // A single-use invite: its session can be resumed, but once that
    // session has ended the invite opens no other.
    let mut first = Client::connect_raw_with(
        &daemon.url(),
        &[("Authorization", &format!("Bearer {single}"))],
    );
    first.wait_for("response.done");
    first.send(serde_json::json!({"type": "interview.finish"}));
    first.wait_for("interview.assessment.completed");
    assert_eq!(first.read_to_end(), Ended::Closed(1000));
    let deadline = Instant::now() + WAIT;
    let status = loop {
        let (status, body) = upgrade(
            &daemon,
            "/v1/realtime",
            &format!("Authorization: Bearer {single}\r\n"),
        );
        // The session's end is a moment behind its last frame.
        if status != 101 || Instant::now() > deadline {
            assert_eq!(body.trim(), "this invite has already been used");
            break status;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status, 401);

    c.wait_for("response.done");
    c.answer_all("an answer about tests and logs");
    let done = c.wait_for("interview.assessment.completed");
    let report = read_valid_report(&daemon.report_path(&c.session_id));
    assert_eq!(
        report["candidate"], "Ada Lovelace <ada@example.com>",
        "{done}"
    );
    let header = &daemon.journal(&c.session_id).records[0];
    assert_eq!(header["invite"], id.as_str());
    assert_eq!(header["candidate"], "Ada Lovelace <ada@example.com>");

    // Nothing in the state directory or the log holds a token.
    for t in [&token, &single, &revoked, &expired] {
        assert!(
            !daemon.log().contains(t.as_str()),
            "a token reached the log"
        );
        for entry in walk(&daemon.state_dir()) {
            let text = std::fs::read_to_string(&entry).unwrap_or_default();
            assert!(
                !text.contains(t.as_str()),
                "{} holds a token",
                entry.display()
            );
        }
    }
    let list = invite_cli(&daemon, &["list"]);
    assert!(
        list.contains(&format!("{id}  active    1/3 used")),
        "{list}"
    );
    assert!(list.contains(&format!("{revoked_id}  revoked")), "{list}");
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let p = entry.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// With access.allowed_origins set, a browser upgrade from another origin
/// gets 403 (cross-site WebSocket hijacking); a listed origin and a client
/// with no Origin are let in.
#[test]
fn browser_origins_not_listed_are_refused() {
    let daemon =
        Daemon::start("[access]\nallowed_origins = [\"https://interviews.example.com\"]\n");
    let (status, _) = upgrade(&daemon, "/v1/realtime", "Origin: https://evil.example\r\n");
    assert_eq!(status, 403);
    let (status, _) = upgrade(
        &daemon,
        "/v1/realtime",
        "Origin: https://interviews.example.com\r\n",
    );
    assert_eq!(status, 101);
    let (status, _) = upgrade(&daemon, "/v1/realtime", "");
    assert_eq!(status, 101);
}

/// `open` on a public address is refused at start unless
/// access.allow_open_on_public says it is meant; `check-config` says why.
#[test]
fn open_access_on_a_public_address_must_be_meant() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("c.toml");
    std::fs::write(
        &file,
        "[server]\nlisten = \"0.0.0.0:0\"\n[access]\nmode = \"open\"\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_interviewd"))
        .arg("check-config")
        .arg(&file)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("access.mode") && err.contains("allow_open_on_public"),
        "{err}"
    );
    std::fs::write(&file, "[server]\nlisten = \"0.0.0.0:0\"\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_interviewd"))
        .arg("check-config")
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// No report is lost: SIGTERM during a slow assessment stops it; when the
/// daemon starts again the interview is assessed again, a client that
/// resumes the session is told `interview.assessment.started` and gets the
/// report, which is on disk; the transcript ends `completed`.
#[test]
fn an_assessment_interrupted_by_a_restart_is_done_after_it() {
    let gate = tempfile::tempdir().unwrap();
    let d = gate.path().display();
    std::fs::write(
        gate.path().join("assessment.json"),
        valid_assessment(&interviewd::script::Script::builtin(), "After the restart.").to_string(),
    )
    .unwrap();
    let script = format!(
        "cat > /dev/null; while [ ! -e '{d}/go' ]; do sleep 0.02; done; cat '{d}/assessment.json'"
    );
    let mut daemon = Daemon::start(&command_assessor_config(
        &script,
        "share_with_candidate = \"full\"\n",
    ));
    let mut c = Client::connect(&daemon.url());
    let token = c.events[0]["session"]["resume_token"]
        .as_str()
        .unwrap()
        .to_owned();
    c.answer("an answer about tests");
    c.send(serde_json::json!({"type": "interview.finish"}));
    c.wait_for("interview.assessment.started");
    let id = c.session_id.clone();
    let (status, _) = daemon.stop(libc::SIGTERM, WAIT);
    assert_eq!(status.code(), Some(0));
    assert!(!daemon.report_path(&id).exists());
    let daemon = daemon.restart();
    daemon.wait_for_log(&format!(
        "session {id}: its assessment was interrupted; assessing it again"
    ));
    let mut c = Client::connect_raw_with(
        &daemon.url(),
        &[("Authorization", &format!("Bearer {token}"))],
    );
    let again = c.wait_for("session.created");
    assert_eq!(again["session"]["id"], id.as_str());
    c.wait_for("interview.resumed");
    c.wait_for("interview.assessment.started");
    std::fs::write(gate.path().join("go"), "").unwrap();
    let done = c.wait_for("interview.assessment.completed");
    let report = full_report(&daemon, &done);
    assert_eq!(report["summary"], "After the restart.");
    assert_eq!(c.read_to_end(), Ended::Closed(1000));
    let deadline = Instant::now() + WAIT;
    while daemon.journal(&id).end_reason() != Some("completed") {
        assert!(
            Instant::now() < deadline,
            "{:#?}",
            daemon.journal(&id).records
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let journal = daemon.journal(&id);
    assert_eq!(
        records(&journal, "assessment").len(),
        1,
        "{:#?}",
        journal.records
    );
}

/// Journals written before interviews were suspended at shutdown (an `end`
/// line with reason `shutdown` after the assessment began, and no report)
/// are still assessed at the next start.
#[test]
fn an_old_journal_interrupted_in_its_assessment_is_assessed_at_start() {
    // The journal is there before the daemon starts, as after an upgrade.
    let dir = tempfile::tempdir().unwrap();
    let sessions = dir.path().join("state").join("sessions");
    std::fs::create_dir_all(&sessions).unwrap();
    let id = "sess_0123456789abcdef0123456789abcdef";
    let script = interviewd::script::Script::builtin();
    let lines = [
        serde_json::json!({"kind": "header", "session_id": id, "script_title": script.title,
            "interviewer": "scripted", "assessor": "rubric", "started_at": "2026-11-30T10:00:00.000Z"}),
        serde_json::json!({"kind": "item", "item_id": "item_000002", "role": "assistant",
            "text": "Hello.", "at": "2026-11-30T10:00:00.000Z"}),
        serde_json::json!({"kind": "item", "item_id": "item_000003", "role": "user",
            "question_id": script.questions[0].id, "text": "I built a service with my team.",
            "at": "2026-11-30T10:00:01.000Z"}),
        serde_json::json!({"kind": "phase", "phase": "assessing", "at": "2026-11-30T10:00:02.000Z"}),
        serde_json::json!({"kind": "end", "reason": "shutdown", "at": "2026-11-30T10:00:03.000Z"}),
    ];
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(sessions.join(format!("{id}.jsonl")), text).unwrap();
    let mut daemon = Daemon::start_in(dir, "");
    daemon.wait_for_log(&format!("session {id}: assessed again"));
    let report = read_valid_report(&daemon.report_path(id));
    assert_eq!(report["interview_complete"], false);
    let deadline = Instant::now() + WAIT;
    while daemon.journal(id).end_reason() != Some("completed") {
        assert!(
            Instant::now() < deadline,
            "{:#?}",
            daemon.journal(id).records
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let (status, _) = daemon.stop(libc::SIGTERM, WAIT);
    assert_eq!(status.code(), Some(0));
}
