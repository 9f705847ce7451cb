//! Resource limits: running out of file descriptors.

mod common;

use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::*;

/// The hard (and so soft) open-file limit the daemon runs under here.
const NOFILE: u64 = 48;

/// Runs the daemon under a hard (and so soft) resource limit.
fn limit(cmd: &mut std::process::Command, resource: libc::__rlimit_resource_t, value: u64) {
    // SAFETY: setrlimit is async-signal-safe.
    unsafe {
        cmd.pre_exec(move || {
            let lim = libc::rlimit {
                rlim_cur: value,
                rlim_max: value,
            };
            if libc::setrlimit(resource, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

fn open_fds(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// When accept() fails with EMFILE the daemon warns once, keeps serving
/// the sessions it has without spinning, accepts again once a descriptor
/// is free, and does not warn again when it hits the limit again soon.
#[test]
fn fd_exhaustion_is_logged_once_and_live_sessions_carry_on() {
    // A short resume window: the sessions let go here end soon after.
    let daemon = Daemon::start_with("[sessions]\nresume_window = \"100ms\"\n", |cmd| {
        limit(cmd, libc::RLIMIT_NOFILE, NOFILE)
    });
    // Every session takes two descriptors (socket, transcript); a bare TCP
    // connection in its handshake takes one. Even out the free count,
    // counted once a first session is up (so that everything the daemon
    // opens lazily is open).
    let mut clients = vec![Client::connect(&daemon.url())];
    let free = NOFILE as usize - open_fds(daemon.pid());
    let mut _filler = None;
    if free % 2 == 1 {
        _filler = Some(TcpStream::connect(daemon.addr).unwrap());
        let deadline = Instant::now() + WAIT;
        while NOFILE as usize - open_fds(daemon.pid()) != free - 1 {
            assert!(
                Instant::now() < deadline,
                "filler connection never accepted"
            );
            std::thread::yield_now();
        }
    }

    // Connect sessions until one is left waiting in the backlog.
    let pending = loop {
        let (tx, rx) = mpsc::channel();
        let url = daemon.url();
        let attempt = std::thread::spawn(move || {
            let mut client = Client::connect_raw(&url);
            let first = client.next_event();
            let _ = tx.send(());
            match first {
                Ok(event) if event["type"] == "session.created" => {
                    client.session_id = event["session"]["id"].as_str().unwrap_or("").into();
                    client.wait_for("response.done");
                    Ok(client)
                }
                Ok(event) => Err(format!(
                    "unexpected first event {event}; then {:?}",
                    client.read_to_end()
                )),
                Err(ended) => Err(format!("ended before session.created: {ended:?}")),
            }
        });
        let deadline = Instant::now() + WAIT;
        let connected = loop {
            if rx.recv_timeout(Duration::from_millis(20)).is_ok() {
                break true;
            }
            if daemon.log().contains("accept failed") {
                break false;
            }
            assert!(
                Instant::now() < deadline,
                "neither connected nor EMFILE; log:\n{}",
                daemon.log()
            );
        };
        if !connected {
            break attempt;
        }
        match attempt.join().expect("client thread") {
            Ok(client) => clients.push(client),
            // The last descriptor went to the socket, none was left for the
            // transcript: refused with a clear error, not a hang.
            Err(why) => assert!(
                why.contains("transcript_unavailable") || why.contains("1011"),
                "{why}"
            ),
        }
        assert!(
            clients.len() < NOFILE as usize,
            "never ran out of descriptors"
        );
    };
    assert!(
        daemon.log().contains("Too many open files"),
        "log:\n{}",
        daemon.log()
    );
    assert!(
        clients.len() >= 2,
        "too few sessions before the limit: {}",
        clients.len()
    );

    // Live sessions carry on while accepts fail.
    let answered = clients[0].answer("Still here while the daemon is out of descriptors.");
    assert!(answered.starts_with("item_"));

    // Freeing sessions lets the waiting connection in, and new ones after it.
    let freed: Vec<String> = (0..2)
        .map(|_| clients.pop().expect("two sessions").session_id.clone())
        .collect();
    let waited = pending.join().expect("client thread");
    if let Err(why) = &waited {
        assert!(
            why.contains("1011"),
            "the waiting connection got no clear answer: {why}"
        );
    }
    for id in &freed {
        daemon.wait_for_log(&format!("session {id} ended"));
    }
    let fresh = Client::connect(&daemon.url());
    assert!(fresh.session_id.starts_with("sess_"));
    // Logged by the first accept that worked: the waiting connection's, or
    // this one's when the waiting connection had been accepted just before
    // the failure (accept() fails with EMFILE once the last descriptor is
    // taken, even with nobody waiting).
    daemon.wait_for_log("accepting again after");

    // Hitting the limit again within a minute is noted at debug level, not
    // warned about again: a daemon flapping at its limit must not flood
    // the log. Bare connections fill the table (one descriptor each).
    let _flood: Vec<TcpStream> = (0..NOFILE)
        .map(|_| TcpStream::connect(daemon.addr).unwrap())
        .collect();
    daemon.wait_for_log("again, within");
    assert_eq!(
        daemon.log().matches("accept failed").count(),
        1,
        "accept failures must be warned about once a minute at most; log:\n{}",
        daemon.log()
    );
}

/// Largest file the daemon may write in the write-failure test.
const FSIZE: u64 = 4096;

/// A transcript write that fails (here: past the file-size limit, as on a
/// full disk) is reported to the client as an `error` and not acknowledged;
/// the session and the daemon carry on, and the transcript stays readable
/// to its end, without the partial line.
#[test]
fn a_failed_answer_write_is_reported_and_not_acknowledged() {
    let mut daemon = Daemon::start_with("[limits]\nmax_text_bytes = 8192\n", |cmd| {
        limit(cmd, libc::RLIMIT_FSIZE, FSIZE)
    });
    let mut client = Client::connect(&daemon.url());
    let kept = client.answer("A short answer that fits in the transcript.");

    let big = "word ".repeat(FSIZE as usize / 4);
    let mut event = user_message(&big);
    event["event_id"] = serde_json::json!("too_big_for_disk");
    client.send(event);
    let error = client.wait_for("error");
    assert_eq!(error["error"]["code"], "transcript_write_failed", "{error}");
    assert_eq!(error["error"]["event_id"], "too_big_for_disk");
    let confirmed_big = client.events.iter().any(|e| {
        e["type"] == "conversation.item.done" && e["item"]["content"][0]["text"] == big.as_str()
    });
    assert!(
        !confirmed_big,
        "an answer that is not on disk was acknowledged"
    );

    // The session goes on, and so does the daemon.
    let turn = client.next_turn();
    assert_eq!(turn["response"]["status"], "completed");
    let other = Client::connect(&daemon.url());
    assert!(other.session_id.starts_with("sess_"));
    daemon.wait_for_log("answer not recorded");

    let (status, _) = daemon.stop(libc::SIGTERM, WAIT);
    assert_eq!(status.code(), Some(0), "log:\n{}", daemon.log());
    let transcript = daemon.journal(&client.session_id);
    assert!(!transcript.torn_tail, "a partial line was left behind");
    let answers: Vec<&str> = records(&transcript, "item")
        .iter()
        .filter(|r| r["role"] == "user")
        .filter_map(|r| r["text"].as_str())
        .collect();
    assert_eq!(answers, ["A short answer that fits in the transcript."]);
    assert!(records(&transcript, "item")
        .iter()
        .any(|r| r["item_id"] == kept.as_str()));
    assert_eq!(transcript.end_reason(), Some("shutdown"));
}
