//! Hostile clients (issue 5), through the real binary: a connection that
//! floods frames, SIGTERM during a flood, slowloris tricklers from several
//! addresses, a session pushing every per-session bound, 20,000 tiny
//! answers, one large frame per session, a full disk, connection floods
//! that could flood the log, gaps in the HTTP handshake, and the
//! per-address caps (behind a trusted proxy too).
//!
//! Every wait has a deadline. Figures (latencies, RSS, counts) are printed
//! with eprintln! so that a run shows how close each bound is.
//!
//! Source addresses 127.0.0.2 … 127.0.0.6 stand for distinct clients: the
//! whole of 127.0.0.0/8 is local on Linux, so a socket bound to one of them
//! reaches the daemon on 127.0.0.1.

mod common;

use std::collections::BTreeMap;
use std::ffi::CString;
use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tungstenite::client::IntoClientRequest;
use tungstenite::handshake::HandshakeError;
use tungstenite::http::{HeaderName, HeaderValue};

use common::*;

/// Events per second and burst so high that the limiter never acts: the
/// tests that use them are about the scheduler, not the limiter.
const NO_RATE_LIMIT: &str = "events_per_second = 10000000\nevents_burst = 10000000\n";

/// Upper bound for a shutdown whose deadline is the default 2 s.
const PROMPT_EXIT: Duration = Duration::from_secs(5);

/// "At once": well under every timeout and grace the daemon has.
const AT_ONCE: Duration = Duration::from_secs(1);

/// "Promptly", for an HTTP answer: well under `limits.handshake_timeout`.
const PROMPT_ANSWER: Duration = Duration::from_secs(2);

/// A valid WebSocket key (RFC 6455's sample: base64 of 16 bytes).
const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

// ---------------------------------------------------------------------------
// 1, 2: fair scheduling under a flood

/// One client writing frames as fast as it can (pings and pongs, without
/// reading) does not slow down everyone else: while it floods, a fresh
/// client's greeting (connect through the first `response.done`) stays fast.
#[test]
fn a_flooding_client_does_not_delay_other_greetings() {
    const PROBE_EVERY: Duration = Duration::from_millis(200);
    const PROBING: Duration = Duration::from_secs(3);
    const MAX_GREETING: Duration = Duration::from_secs(1);
    let daemon = Daemon::start(&format!("[limits]\n{NO_RATE_LIMIT}"));
    let flood = Flood::start(&daemon, 1, 1);
    flood.wait_until_flowing();

    let greetings = probe_greetings(&daemon.url(), LOCALHOST, PROBE_EVERY, PROBING);
    let flooded = flood.stop();

    let times = all_served(&greetings, "while one client flooded");
    let (p50, max) = (times[times.len() / 2], times[times.len() - 1]);
    eprintln!(
        "greetings under a flood ({} MiB written by the flooder): {} probes, p50 {} ms, max {} ms",
        flooded >> 20,
        times.len(),
        p50.as_millis(),
        max.as_millis()
    );
    assert!(
        max < MAX_GREETING,
        "a greeting took {max:?} while one client flooded (p50 {p50:?})"
    );
}

/// SIGTERM while 100 connections flood: the daemon still exits 0 within
/// `shutdown.deadline` (+ slack), and every client that reads gets 1012.
#[test]
fn sigterm_during_a_flood_exits_zero_and_readers_get_1012() {
    const FLOODERS: usize = 100;
    const READERS: usize = 10;
    let mut daemon = Daemon::start(&format!("[limits]\n{NO_RATE_LIMIT}"));
    let mut readers: Vec<Client> = (0..READERS)
        .map(|_| Client::connect(&daemon.url()))
        .collect();
    let flood = Flood::start(&daemon, FLOODERS, 4);
    flood.wait_until_flowing();

    let signalled = Instant::now();
    daemon.signal(libc::SIGTERM);
    let (status, took, ended) = std::thread::scope(|s| {
        let reading: Vec<_> = readers
            .iter_mut()
            .map(|client| {
                s.spawn(move || {
                    let ended = client.read_to_end();
                    let _ = client.ws.flush(); // the reply to the close frame
                    ended
                })
            })
            .collect();
        let status = daemon.wait_exit(2 * PROMPT_EXIT);
        let took = signalled.elapsed();
        let ended: Vec<Ended> = reading
            .into_iter()
            .map(|r| r.join().expect("reader thread"))
            .collect();
        (status, took, ended)
    });
    let flooded = flood.stop();
    eprintln!(
        "SIGTERM during a flood of {FLOODERS} connections ({} MiB written): exited in {} ms",
        flooded >> 20,
        took.as_millis()
    );
    assert_eq!(status.code(), Some(0), "log:\n{}", daemon.log());
    assert!(took < PROMPT_EXIT, "took {took:?}; log:\n{}", daemon.log());
    assert!(
        ended.iter().all(|e| *e == Ended::Closed(1012)),
        "readers ended {ended:?}; log:\n{}",
        daemon.log()
    );
}

// ---------------------------------------------------------------------------
// 3: per-session bounds

/// `limits.max_items` bounds a conversation (answers and interviewer items):
/// the answer that would go past it is refused with `conversation_full`,
/// is neither acknowledged nor journaled, and the session carries on.
#[test]
fn an_answer_past_max_items_is_refused_with_conversation_full() {
    const MAX_ITEMS: usize = 5;
    let daemon = Daemon::start(&format!("[limits]\nmax_items = {MAX_ITEMS}\n"));
    let mut client = Client::connect(&daemon.url());
    // The greeting is the first item; each acknowledged answer adds one.
    let first = client.answer("answer number 1");
    for n in 2..MAX_ITEMS {
        client.answer(&format!("answer number {n}"));
    }
    refuse_answer(
        &daemon,
        &mut client,
        "one answer too many",
        "conversation_full",
    );

    // The session carries on.
    client.send(json!({"type": "conversation.item.retrieve", "item_id": first}));
    let retrieved = client.wait_for("conversation.item.retrieved");
    assert_eq!(retrieved["item"]["id"], first.as_str());
}

/// `limits.max_transcript_bytes` bounds what one session writes to disk: the
/// answer that would cross it is refused with `transcript_full`, is not
/// acknowledged, and the transcript stays within the bound.
#[test]
fn an_answer_past_max_transcript_bytes_is_refused_with_transcript_full() {
    const MAX_BYTES: u64 = 4096;
    let daemon = Daemon::start(&format!("[limits]\nmax_transcript_bytes = {MAX_BYTES}\n"));
    let mut client = Client::connect(&daemon.url());
    // About 1.5 KB each: a few fit, and max_items (2000) is far away.
    let answer = |n: usize| format!("answer {n}: {}", "lorem ipsum ".repeat(120));
    let mut acked = 0;
    while acked < 10 {
        let text = answer(acked);
        client.send(user_message(&text));
        let reply = wait_for_any(&mut client, &["conversation.item.done", "error"]);
        if reply["type"] == "error" {
            assert_eq!(reply["error"]["code"], "transcript_full", "{reply}");
            assert_not_journaled(&daemon, &client.session_id, &text);
            break;
        }
        acked += 1;
    }
    assert!(
        (1..10).contains(&acked),
        "{acked} answers of 1.5 KB acknowledged under a {MAX_BYTES}-byte bound"
    );
    let size = std::fs::metadata(daemon.journal_path(&client.session_id))
        .expect("transcript")
        .len();
    eprintln!("transcript bound {MAX_BYTES}: {acked} answers, {size} bytes");
    assert!(size <= MAX_BYTES, "transcript is {size} bytes");
}

/// `limits.events_per_second`: frames over the rate are dropped unprocessed,
/// with a `rate_limited` error about once a second (not once per frame),
/// and a client that stays over the rate is closed with 1008 after about
/// three seconds.
#[test]
fn a_client_over_the_event_rate_is_rate_limited_then_closed_with_1008() {
    const RATE: u64 = 20;
    let daemon = Daemon::start(&format!(
        "[limits]\nevents_per_second = {RATE}\nevents_burst = {RATE}\n"
    ));
    let mut client = Client::connect(&daemon.url());
    let stream = client.ws.get_ref();
    stream
        .set_read_timeout(Some(Duration::from_secs(8)))
        .unwrap();
    let cancel = text_frame(&json!({"type": "response.cancel"}));
    // 200 frames at once, then 200 a second, until the daemon closes.
    let started = Instant::now();
    let writer = Writer::start(
        stream.try_clone().expect("clone"),
        cancel.repeat(200),
        Some((cancel, Duration::from_millis(5))),
    );

    let mut codes: BTreeMap<String, u64> = BTreeMap::new();
    let ended = loop {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "still open after 10 s over the rate; errors: {codes:?}"
        );
        match client.next_event() {
            Ok(e) if e["type"] == "error" => {
                let code = e["error"]["code"].as_str().unwrap_or("?").to_owned();
                *codes.entry(code).or_default() += 1;
            }
            Ok(_) => {}
            Err(ended) => break ended,
        }
    };
    let closed_after = started.elapsed();
    drop(writer);
    let limited = codes.get("rate_limited").copied().unwrap_or(0);
    let processed = codes
        .get("response_cancel_not_active")
        .copied()
        .unwrap_or(0);
    eprintln!(
        "over the rate: closed after {} ms with {ended:?}; errors {codes:?}",
        closed_after.as_millis()
    );
    assert_eq!(ended, Ended::Closed(1008), "errors: {codes:?}");
    assert!(limited >= 1, "no rate_limited error; errors: {codes:?}");
    let secs = closed_after.as_secs() + 1;
    assert!(
        limited <= secs + 1,
        "{limited} rate_limited errors in {closed_after:?}: more than about one a second"
    );
    assert!(
        processed <= RATE + RATE * secs + RATE,
        "{processed} frames processed in {closed_after:?} at {RATE}/s: frames over the rate were not dropped"
    );
    assert!(
        (Duration::from_millis(1500)..Duration::from_secs(6)).contains(&closed_after),
        "closed after {closed_after:?}; expected about 3 s over the rate"
    );
}

// ---------------------------------------------------------------------------
// 4: every event costs O(1) or O(its size); answers without words

/// Every client event costs O(1) or O(its size): after 20,000 one-word
/// answers, `response.create` is still answered at once.
#[test]
fn twenty_thousand_answers_keep_response_create_fast() {
    const ANSWERS: usize = 20_000;
    const ACKS_WITHIN: Duration = Duration::from_secs(120);
    const MAX_RESPONSE: Duration = Duration::from_millis(500);
    let daemon = Daemon::start(&format!("[limits]\nmax_items = 50000\n{NO_RATE_LIMIT}"));
    let mut client = Client::connect(&daemon.url());
    let frames: Vec<u8> = (0..ANSWERS)
        .flat_map(|n| text_frame(&user_message(&format!("w{n}"))))
        .collect();
    let started = Instant::now();
    let writer = Writer::start(
        client.ws.get_ref().try_clone().expect("clone"),
        frames,
        None,
    );
    // Each answer waits for its fdatasync: this part takes 10-30 s here.
    let deadline = started + ACKS_WITHIN;
    let mut acked = 0;
    while acked < ANSWERS {
        assert!(
            Instant::now() < deadline,
            "only {acked} answers acknowledged in {ACKS_WITHIN:?}"
        );
        let event = wait_for_any(&mut client, &["conversation.item.done", "error"]);
        assert_eq!(event["type"], "conversation.item.done", "{event}");
        acked += 1;
    }
    writer.finish().expect("writing the answers");
    let answering = started.elapsed();
    client.events.clear(); // 40,000 events; the rest of the test needs none of them

    let asked = Instant::now();
    let turn = client.next_turn();
    let took = asked.elapsed();
    eprintln!(
        "{ANSWERS} answers acknowledged in {} ms; then response.create answered in {} ms",
        answering.as_millis(),
        took.as_millis()
    );
    assert_eq!(turn["response"]["status"], "completed");
    assert!(
        took < MAX_RESPONSE,
        "response.create after {ANSWERS} answers took {took:?}"
    );
}

/// An answer with no words ("--", "  ...  ") is refused like an empty one,
/// with `empty_message`, and is neither acknowledged nor journaled.
#[test]
fn answers_without_words_are_refused_as_empty() {
    let daemon = Daemon::start("");
    let mut client = Client::connect(&daemon.url());
    for text in ["--", "  ...  ", "?!\n-"] {
        refuse_answer(&daemon, &mut client, text, "empty_message");
    }
    // A real answer is still taken.
    client.answer("a word");
}

// ---------------------------------------------------------------------------
// 5: slowloris and the handshake caps

/// Slowloris: 2,500 connections from four addresses trickle their request
/// heads (a byte a second, reconnecting when cut) while a client from a
/// fifth address is served, greeting and all, every time it connects. With
/// the default caps (256 handshakes, 32 per address) and the minimum pace,
/// the tricklers are cut rather than held.
#[test]
fn slowloris_from_four_addresses_does_not_lock_out_a_fifth() {
    const PER_SOURCE: usize = 625;
    const SOURCES: [u8; 4] = [2, 3, 4, 5];
    const TRICKLING: Duration = Duration::from_secs(6);
    const PROBE_EVERY: Duration = Duration::from_secs(1);
    const MAX_GREETING: Duration = Duration::from_secs(3);
    raise_nofile_limit();
    let daemon = Daemon::start("");
    let sources: Vec<Ipv4Addr> = SOURCES.iter().map(|&n| loopback(n)).collect();
    let trickle = Trickle::start(daemon.addr, &sources, PER_SOURCE);
    let total = (PER_SOURCE * SOURCES.len()) as u64;
    poll_until("every trickler to send its request line", WAIT, || {
        trickle.started() >= total
    });

    let greetings = probe_greetings(&daemon.url(), loopback(6), PROBE_EVERY, TRICKLING);
    let (started, cuts) = trickle.stop();
    eprintln!(
        "slowloris: {total} tricklers, {started} request lines sent, {cuts} cut; \
         greetings from 127.0.0.6: {greetings:?}"
    );
    let times = all_served(&greetings, "from 127.0.0.6 during the slowloris");
    assert!(times.len() >= 4, "too few probes: {times:?}");
    assert!(
        times.iter().all(|t| *t < MAX_GREETING),
        "greetings from 127.0.0.6: {times:?}"
    );
    assert!(
        cuts >= total,
        "only {cuts} cuts among {total} tricklers: trickling heads are being held"
    );
}

/// A request head must arrive at a minimum pace: a client trickling a
/// byte a second is cut within a few seconds, long before
/// `limits.handshake_timeout`.
#[test]
fn a_trickled_request_head_is_cut_long_before_the_handshake_timeout() {
    let daemon = Daemon::start("[limits]\nhandshake_timeout = \"30s\"\n");
    let mut trickler = TcpStream::connect(daemon.addr).expect("connect");
    let started = Instant::now();
    trickler
        .write_all(b"GET /v1/realtime HTTP/1.1\r\n")
        .expect("request line");
    // One byte a second; each one-second read timeout is the pace.
    trickler
        .set_read_timeout(Some(Duration::from_secs(1)))
        .unwrap();
    let mut buf = [0u8; 512];
    let cut_after = loop {
        assert!(
            started.elapsed() < Duration::from_secs(8),
            "a trickler (1 byte/s) was held for 8 s"
        );
        if trickler.write_all(b"a").is_err() {
            break started.elapsed();
        }
        match trickler.read(&mut buf) {
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            _ => break started.elapsed(), // closed, reset, or answered (408)
        }
    };
    eprintln!("trickler cut after {} ms", cut_after.as_millis());
    assert!(
        cut_after < Duration::from_secs(6),
        "cut after {cut_after:?}"
    );
}

/// `limits.max_handshakes_per_ip` and `limits.max_handshakes`: a connection
/// beyond either cap is closed at once, without waiting for the handshake
/// timeout, while the connections within the caps are left alone; once
/// handshakes end, another address is served.
#[test]
fn connections_beyond_the_handshake_caps_are_closed_at_once() {
    let daemon = Daemon::start(
        "[limits]\nmax_handshakes = 8\nmax_handshakes_per_ip = 4\nhandshake_timeout = \"30s\"\n",
    );
    let idle = |n: u8, count: usize| -> Vec<TcpStream> {
        (0..count)
            .map(|_| connect_from(loopback(n), daemon.addr, false).expect("connect"))
            .collect()
    };
    let from_2 = idle(2, 4);
    let mut fifth = idle(2, 1).pop().unwrap();
    let per_ip = closed_within(&mut fifth, AT_ONCE);
    assert!(
        per_ip.is_some(),
        "a 5th handshake from 127.0.0.2 was held (cap 4 per address)"
    );
    assert_still_open(&from_2, "127.0.0.2 within its cap");

    let from_3 = idle(3, 4);
    let mut ninth = idle(4, 1).pop().unwrap();
    let global = closed_within(&mut ninth, AT_ONCE);
    assert!(global.is_some(), "a 9th handshake in all was held (cap 8)");
    assert_still_open(&from_2, "127.0.0.2 within the caps");
    assert_still_open(&from_3, "127.0.0.3 within the caps");
    eprintln!("closed at once: per address after {per_ip:?}, in all after {global:?}");

    // Handshakes that end free their places.
    drop(from_3);
    let served = retry_until(WAIT, || open_session(&daemon.url(), loopback(5), &[]));
    if let Err(refusal) = served {
        panic!("127.0.0.5 was never served: {refusal:?}");
    }
    drop(from_2);
}

// ---------------------------------------------------------------------------
// 6: memory comes back

/// Memory comes back: after each of 200 idle sessions has received one
/// frame near `limits.max_message_bytes` (and answered it with an error),
/// the daemon's RSS returns to within 10 MiB of its idle figure.
#[test]
fn memory_returns_after_200_sessions_each_receive_a_large_frame() {
    const SESSIONS: usize = 200;
    const FRAME_BYTES: usize = 250 * 1024;
    const SLACK_KIB: u64 = 10 * 1024;
    let daemon = Daemon::start("");
    let mut clients: Vec<Client> = (0..SESSIONS)
        .map(|_| Client::connect(&daemon.url()))
        .collect();
    let idle = rss_kib(daemon.pid());

    let big = json!({"type": "conversation.item.retrieve", "item_id": "x".repeat(FRAME_BYTES)})
        .to_string();
    assert!(
        big.len() < 256 * 1024,
        "the frame must stay under the limit"
    );
    for client in &mut clients {
        client.send_text(&big);
        client.wait_for("error");
    }
    let loaded = rss_kib(daemon.pid());
    let mut after = loaded;
    let settled = Instant::now() + Duration::from_secs(3);
    while after > idle + SLACK_KIB && Instant::now() < settled {
        std::thread::sleep(Duration::from_millis(50));
        after = rss_kib(daemon.pid());
    }
    eprintln!(
        "RSS with {SESSIONS} idle sessions: {} MiB; after one {} KiB frame each: {} MiB, settling to {} MiB",
        idle / 1024,
        FRAME_BYTES / 1024,
        loaded / 1024,
        after / 1024
    );
    assert!(
        after <= idle + SLACK_KIB,
        "RSS stayed at {after} KiB, idle was {idle} KiB"
    );
    // The sessions are still there.
    let turn = clients[0].next_turn();
    assert_eq!(turn["response"]["status"], "completed");
}

// ---------------------------------------------------------------------------
// 7: full disk

/// On a full disk, sessions that cannot open their transcript are refused
/// (`transcript_unavailable`, close 1011) and leave no empty transcript
/// file behind; once there is room again, sessions are served.
#[test]
fn a_full_disk_leaves_no_empty_transcripts() {
    const TEST: &str = "a_full_disk_leaves_no_empty_transcripts";
    const REFUSED: usize = 20;
    if !running_as_root(TEST) {
        return;
    }
    let disk = match SmallDisk::mount("256k") {
        Ok(disk) => disk,
        Err(e) => return skip(TEST, &format!("cannot mount a tmpfs: {e}")),
    };
    let dir = tempfile::tempdir().expect("temp dir");
    std::os::unix::fs::symlink(disk.path(), dir.path().join("state")).expect("symlink");
    let daemon = Daemon::start_in(dir, "");
    let filler = disk.fill();

    for n in 0..REFUSED {
        let mut client = Client::connect_raw(&daemon.url());
        let first = client.next_event();
        let code = first
            .as_ref()
            .map(|e| e["error"]["code"].clone())
            .unwrap_or_default();
        assert_eq!(
            code, "transcript_unavailable",
            "client {n} on a full disk: {first:?}"
        );
        assert_eq!(client.read_to_end(), Ended::Closed(1011), "client {n}");
    }
    let sessions = disk.path().join("sessions");
    let empty: Vec<PathBuf> = std::fs::read_dir(&sessions)
        .expect("sessions dir")
        .flatten()
        .filter(|e| e.metadata().map(|m| m.len() == 0).unwrap_or(false))
        .map(|e| e.path())
        .collect();
    assert!(
        empty.is_empty(),
        "{} empty transcript(s) left by refused sessions: {empty:?}",
        empty.len()
    );

    std::fs::remove_file(filler).expect("remove the filler");
    let client = Client::connect(&daemon.url());
    assert!(client.session_id.starts_with("sess_"));
}

// ---------------------------------------------------------------------------
// 8: log floods

/// A thousand refused connections produce a handful of log lines, not a
/// thousand: neither refusals at `limits.max_sessions` (503) nor requests
/// that are not HTTP (400) can be used to flood the log.
#[test]
fn a_thousand_refused_connections_log_a_handful_of_lines() {
    const ATTACK: usize = 1000;
    const HANDFUL: usize = 20;
    let daemon = Daemon::start("[limits]\nmax_sessions = 1\n");
    let _holder = Client::connect(&daemon.url());
    let upgrade = upgrade_request("\r\n", "HTTP/1.1", Some("x"), KEY);
    for (what, request, status) in [
        ("at limits.max_sessions", upgrade.as_slice(), 503),
        ("not HTTP", b"hello\r\n\r\n".as_slice(), 400),
    ] {
        let mut outcomes = BTreeMap::new();
        let lines = log_lines_during(&daemon, || {
            outcomes = hammer(daemon.addr, request, ATTACK, 4);
        });
        eprintln!(
            "{ATTACK} connections {what}: {outcomes:?}; {} log line(s):\n{}",
            lines.len(),
            lines.join("\n")
        );
        assert_eq!(
            outcomes.get(&format!("HTTP {status}")),
            Some(&ATTACK),
            "{what}: {outcomes:?}"
        );
        assert!(
            lines.len() < HANDFUL,
            "{ATTACK} connections {what} logged {} lines",
            lines.len()
        );
    }
}

// ---------------------------------------------------------------------------
// 9: gaps in the handshake, invalid close codes

/// Gaps in the HTTP handshake: a bare-LF head is answered, not held; bytes
/// that are not HTTP get 400 at once; a bad `Sec-WebSocket-Key`, HTTP/1.0
/// and a missing `Host` get 400; the 426 answer names the WebSocket version
/// the endpoint speaks.
#[test]
fn handshake_gaps_are_answered_promptly() {
    let daemon = Daemon::start("");
    // (what, request, expected status; None: any answer, as long as it comes)
    let cases: Vec<(&str, Vec<u8>, Option<u16>)> = vec![
        (
            "a well-formed upgrade",
            upgrade_request("\r\n", "HTTP/1.1", Some("x"), KEY),
            Some(101),
        ),
        (
            "a bare-LF upgrade",
            upgrade_request("\n", "HTTP/1.1", Some("x"), KEY),
            None,
        ),
        (
            "a binary record",
            vec![0x17, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00],
            Some(400),
        ),
        ("a line of text", b"hello\r\n\r\n".to_vec(), Some(400)),
        (
            "key `abc`",
            upgrade_request("\r\n", "HTTP/1.1", Some("x"), "abc"),
            Some(400),
        ),
        (
            "key of 5 bytes",
            upgrade_request("\r\n", "HTTP/1.1", Some("x"), "c2hvcnQ="),
            Some(400),
        ),
        (
            "key not base64",
            upgrade_request("\r\n", "HTTP/1.1", Some("x"), &"!".repeat(24)),
            Some(400),
        ),
        (
            "HTTP/1.0",
            upgrade_request("\r\n", "HTTP/1.0", Some("x"), KEY),
            Some(400),
        ),
        (
            "no Host",
            upgrade_request("\r\n", "HTTP/1.1", None, KEY),
            Some(400),
        ),
    ];
    let mut wrong = Vec::new();
    for (what, request, expected) in &cases {
        match http_answer(daemon.addr, LOCALHOST, request, PROMPT_ANSWER) {
            Ok(answer) => {
                eprintln!(
                    "{what}: HTTP {} after {} ms",
                    answer.status,
                    answer.after.as_millis()
                );
                if expected.is_some_and(|status| status != answer.status) {
                    wrong.push(format!(
                        "{what}: HTTP {}, expected {expected:?}",
                        answer.status
                    ));
                }
            }
            Err(e) => wrong.push(format!("{what}: {e}")),
        }
    }
    // A plain GET: 426, naming the version the endpoint speaks.
    let plain = b"GET /v1/realtime HTTP/1.1\r\nHost: x\r\n\r\n";
    match http_answer(daemon.addr, LOCALHOST, plain, PROMPT_ANSWER) {
        Ok(a) if a.status == 426 && a.header("sec-websocket-version") == Some("13") => {}
        Ok(a) => wrong.push(format!(
            "a plain GET: expected 426 with Sec-WebSocket-Version: 13, got\n{}",
            a.head
        )),
        Err(e) => wrong.push(format!("a plain GET: {e}")),
    }
    assert!(
        wrong.is_empty(),
        "{} gap(s):\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}

/// A close frame with a code that may not be sent (999, 1005, 1006, 5000)
/// is a protocol error: the daemon answers 1002, and the journal's end line
/// says `error`, not `client_closed`.
#[test]
fn invalid_close_codes_are_protocol_errors() {
    let daemon = Daemon::start("");
    for code in [999u16, 1005, 1006, 5000] {
        let mut client = Client::connect(&daemon.url());
        let mut raw = client.ws.get_ref().try_clone().expect("clone");
        raw.write_all(&client_frame(CLOSE, &code.to_be_bytes()))
            .expect("close frame");
        let ended = client.read_to_end();
        assert_eq!(ended, Ended::Closed(1002), "close code {code}");
        assert_eq!(
            end_reason(&daemon, &client.session_id),
            "error",
            "close code {code}"
        );
    }
}

// ---------------------------------------------------------------------------
// 10: sessions per address, trusted proxies

/// `limits.max_sessions_per_ip`: a third session from one address gets HTTP
/// 429 with `Retry-After`, another address is still served, an
/// `X-Forwarded-For` header from a peer that is not a trusted proxy changes
/// nothing, and a session that ends frees its place (once its resume
/// window has passed: a suspended session keeps it).
#[test]
fn sessions_per_address_are_capped_with_429() {
    // No trusted proxy (loopback is trusted by default).
    let daemon = Daemon::start(
        "[server]\ntrusted_proxies = []\n[limits]\nmax_sessions_per_ip = 2\n[sessions]\nresume_window = \"200ms\"\n",
    );
    let url = daemon.url();
    let claiming = |ip: &'static str| [("X-Forwarded-For", ip)];
    let first = session(&url, LOCALHOST, &claiming("203.0.113.1"));
    let _second = session(&url, LOCALHOST, &claiming("203.0.113.2"));
    let third = open_session(&url, LOCALHOST, &claiming("203.0.113.3"));
    assert_too_many(third, "a third session from 127.0.0.1");
    let _other = session(&url, loopback(2), &[]);

    drop(first);
    let again = retry_until(WAIT, || open_session(&url, LOCALHOST, &[]));
    if let Err(refusal) = again {
        panic!("the freed place was never given out: {refusal:?}");
    }
}

/// Behind a trusted proxy the cap applies to the `X-Forwarded-For` address:
/// each forwarded address gets its own quota, and the proxy's own address
/// is not charged for the sessions it forwards.
#[test]
fn a_trusted_proxy_forwards_the_address_the_cap_applies_to() {
    let daemon = Daemon::start(
        "[server]\ntrusted_proxies = [\"127.0.0.1\"]\n[limits]\nmax_sessions_per_ip = 2\n",
    );
    let url = daemon.url();
    let for_a = [("X-Forwarded-For", "203.0.113.7")];
    let for_b = [("X-Forwarded-For", "203.0.113.8")];
    let _a: Vec<Client> = (0..2).map(|_| session(&url, LOCALHOST, &for_a)).collect();
    assert_too_many(
        open_session(&url, LOCALHOST, &for_a),
        "a third session for 203.0.113.7",
    );
    let _b: Vec<Client> = (0..2).map(|_| session(&url, LOCALHOST, &for_b)).collect();
    let _proxy = session(&url, LOCALHOST, &[]);
}

// ---------------------------------------------------------------------------
// Helpers: addresses and sessions

const LOCALHOST: Ipv4Addr = Ipv4Addr::LOCALHOST;

fn loopback(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, n)
}

/// A TCP connection from `src` to `dst`. With `nonblocking`, the socket is
/// non-blocking and the connect may still be in progress.
fn connect_from(src: Ipv4Addr, dst: SocketAddr, nonblocking: bool) -> std::io::Result<TcpStream> {
    let SocketAddr::V4(dst) = dst else {
        panic!("the daemon listens on IPv4 in tests");
    };
    let sockaddr = |a: SocketAddrV4| libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: a.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(*a.ip()).to_be(),
        },
        sin_zero: [0; 8],
    };
    let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    let flags =
        libc::SOCK_STREAM | libc::SOCK_CLOEXEC | if nonblocking { libc::SOCK_NONBLOCK } else { 0 };
    // SAFETY: plain socket calls; the descriptor is owned by `stream` as
    // soon as it exists, and every pointer points to a live local of `len`
    // bytes.
    unsafe {
        let fd = libc::socket(libc::AF_INET, flags, 0);
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let stream = TcpStream::from_raw_fd(fd);
        let local = sockaddr(SocketAddrV4::new(src, 0));
        if libc::bind(fd, &local as *const _ as *const libc::sockaddr, len) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let remote = sockaddr(dst);
        if libc::connect(fd, &remote as *const _ as *const libc::sockaddr, len) != 0 {
            let e = std::io::Error::last_os_error();
            if !(nonblocking && e.raw_os_error() == Some(libc::EINPROGRESS)) {
                return Err(e);
            }
        }
        Ok(stream)
    }
}

/// Why a session was not opened.
#[derive(Debug)]
struct Refusal {
    /// The HTTP status, when the daemon answered with one.
    status: Option<u16>,
    retry_after: Option<String>,
    /// What happened, for failure messages (read through `Debug`).
    #[allow(dead_code)]
    detail: String,
}

/// Opens a session from `src` with extra request headers and reads through
/// its greeting (`session.created` … first `response.done`).
fn open_session(url: &str, src: Ipv4Addr, headers: &[(&str, &str)]) -> Result<Client, Refusal> {
    open_session_within(url, src, headers, WAIT)
}

/// Like [`open_session`], with a bound on each read and write.
fn open_session_within(
    url: &str,
    src: Ipv4Addr,
    headers: &[(&str, &str)],
    wait: Duration,
) -> Result<Client, Refusal> {
    let refusal = |detail: String| Refusal {
        status: None,
        retry_after: None,
        detail,
    };
    let addr = url.trim_start_matches("ws://").split('/').next().unwrap();
    let stream = connect_from(src, addr.parse().expect("address"), false)
        .map_err(|e| refusal(format!("connect: {e}")))?;
    stream.set_read_timeout(Some(wait)).unwrap();
    stream.set_write_timeout(Some(wait)).unwrap();
    let mut request = url.into_client_request().expect("request");
    for (name, value) in headers {
        request.headers_mut().append(
            HeaderName::from_bytes(name.as_bytes()).expect("header name"),
            HeaderValue::from_str(value).expect("header value"),
        );
    }
    let ws = match tungstenite::client(request, stream) {
        Ok((ws, _)) => ws,
        Err(HandshakeError::Failure(tungstenite::Error::Http(response))) => {
            return Err(Refusal {
                status: Some(response.status().as_u16()),
                retry_after: response
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned),
                detail: format!("HTTP {}", response.status()),
            })
        }
        Err(e) => return Err(refusal(format!("handshake: {e}"))),
    };
    let mut client = Client {
        ws,
        events: Vec::new(),
        session_id: String::new(),
    };
    loop {
        match client.next_event() {
            Ok(e) if e["type"] == "session.created" => {
                client.session_id = e["session"]["id"].as_str().unwrap_or("").to_owned();
            }
            Ok(e) if e["type"] == "response.done" => return Ok(client),
            Ok(_) => {}
            Err(ended) => {
                return Err(refusal(format!(
                    "ended before the greeting: {ended:?}; events: {:?}",
                    client.events
                )))
            }
        }
    }
}

/// How long a probe waits on each read or write of its greeting.
const PROBE_WAIT: Duration = Duration::from_secs(5);

/// Opens a fresh session from `src` every `every` for `during`; each result
/// is the time from connect to the end of the greeting, or why the session
/// was not opened (each read and write bounded by [`PROBE_WAIT`]).
fn probe_greetings(
    url: &str,
    src: Ipv4Addr,
    every: Duration,
    during: Duration,
) -> Vec<Result<Duration, Refusal>> {
    let mut greetings = Vec::new();
    let until = Instant::now() + during;
    while Instant::now() < until {
        let started = Instant::now();
        let opened = open_session_within(url, src, &[], PROBE_WAIT);
        greetings.push(opened.map(|_| started.elapsed()));
        std::thread::sleep(every.saturating_sub(started.elapsed()));
    }
    greetings
}

/// The greeting times, sorted; panics if a probe was not served.
fn all_served(greetings: &[Result<Duration, Refusal>], when: &str) -> Vec<Duration> {
    let mut times = Vec::new();
    for greeted in greetings {
        match greeted {
            Ok(took) => times.push(*took),
            Err(e) => panic!("a client was not served {when}: {e:?}; all probes: {greetings:?}"),
        }
    }
    times.sort();
    times
}

/// Like [`open_session`]; panics if the session is refused.
fn session(url: &str, src: Ipv4Addr, headers: &[(&str, &str)]) -> Client {
    open_session(url, src, headers)
        .unwrap_or_else(|r| panic!("session from {src} {headers:?} refused: {r:?}"))
}

fn assert_too_many(opened: Result<Client, Refusal>, what: &str) {
    let refusal = opened
        .err()
        .unwrap_or_else(|| panic!("{what} was served; expected 429"));
    assert_eq!(refusal.status, Some(429), "{what}: {refusal:?}");
    let retry_after = refusal.retry_after.as_deref().unwrap_or("");
    assert!(
        !retry_after.is_empty() && retry_after.bytes().all(|b| b.is_ascii_digit()),
        "{what}: Retry-After {retry_after:?}"
    );
}

/// Calls `attempt` until it succeeds or `within` passes; returns the last result.
fn retry_until<T, E>(within: Duration, mut attempt: impl FnMut() -> Result<T, E>) -> Result<T, E> {
    let deadline = Instant::now() + within;
    loop {
        let result = attempt();
        if result.is_ok() || Instant::now() > deadline {
            return result;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Polls `done` until it holds; panics after `within`.
fn poll_until(what: &str, within: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Reads until an event of one of these types; panics if the connection ends.
fn wait_for_any(client: &mut Client, types: &[&str]) -> Value {
    loop {
        match client.next_event() {
            Ok(e) if types.iter().any(|t| e["type"] == *t) => return e,
            Ok(_) => {}
            Err(ended) => panic!("waiting for {types:?}: connection ended: {ended:?}"),
        }
    }
}

/// Sends an answer that must be refused with `code`: checks the error, that
/// it was not acknowledged, and that it is not in the journal.
fn refuse_answer(daemon: &Daemon, client: &mut Client, text: &str, code: &str) {
    let mut event = user_message(text);
    event["event_id"] = json!("refused");
    client.send(event);
    let reply = wait_for_any(client, &["conversation.item.done", "error"]);
    assert_eq!(reply["type"], "error", "{text:?} was acknowledged: {reply}");
    assert_eq!(reply["error"]["code"], code, "{text:?}: {reply}");
    assert_eq!(reply["error"]["event_id"], "refused", "{reply}");
    assert_not_journaled(daemon, &client.session_id, text);
}

/// The reason in a session's end line, once the journal has one (the end
/// line is written without waiting for the disk); panics after [`WAIT`].
fn end_reason(daemon: &Daemon, session_id: &str) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        let journal = daemon.journal(session_id);
        if let Some(reason) = journal.end_reason() {
            return reason.to_owned();
        }
        assert!(
            Instant::now() < deadline,
            "session {session_id} has no end line: {:#?}",
            journal.records
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn assert_not_journaled(daemon: &Daemon, session_id: &str, text: &str) {
    let journal = daemon.journal(session_id);
    assert!(
        !journal.records.iter().any(|r| r["text"] == text),
        "refused answer {text:?} is in the journal"
    );
}

// ---------------------------------------------------------------------------
// Helpers: raw frames, floods and writers

const TEXT: u8 = 0x1;
const CLOSE: u8 = 0x8;
const PING: u8 = 0x9;
const PONG: u8 = 0xA;

/// A client frame (RFC 6455 §5.2), FIN set, masked with an all-zero key so
/// that the payload goes on the wire as it is.
fn client_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut frame = vec![0x80 | opcode];
    match payload.len() {
        n if n < 126 => frame.push(0x80 | n as u8),
        n if n <= 0xffff => {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            frame.push(0x80 | 127);
            frame.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    frame.extend_from_slice(&[0; 4]);
    frame.extend_from_slice(payload);
    frame
}

fn text_frame(event: &Value) -> Vec<u8> {
    client_frame(TEXT, event.to_string().as_bytes())
}

/// What a flooder writes, over and over: pings and pongs. They cost the
/// reader a frame each, and the pongs the daemon owes in return are so
/// small that a flooder that never reads is not slowed down by them for a
/// long while.
fn flood_frames() -> Vec<u8> {
    [client_frame(PING, b""), client_frame(PONG, b"")]
        .concat()
        .repeat(512)
}

/// Greeted sessions whose raw connections write [`flood_frames`] as fast as
/// the kernel takes them, without reading, from a few threads. Stopped and
/// joined on drop.
struct Flood {
    stop: Arc<AtomicBool>,
    written: Arc<AtomicU64>,
    threads: Vec<JoinHandle<()>>,
}

impl Flood {
    fn start(daemon: &Daemon, connections: usize, threads: usize) -> Flood {
        let mut groups: Vec<Vec<TcpStream>> = (0..threads).map(|_| Vec::new()).collect();
        for n in 0..connections {
            let client = Client::connect(&daemon.url());
            groups[n % threads].push(client.ws.get_ref().try_clone().expect("clone"));
        }
        let stop = Arc::new(AtomicBool::new(false));
        let written = Arc::new(AtomicU64::new(0));
        let frames = Arc::new(flood_frames());
        let threads = groups
            .into_iter()
            .map(|streams| {
                let (stop, written, frames) = (stop.clone(), written.clone(), frames.clone());
                std::thread::spawn(move || flood(streams, &frames, &stop, &written))
            })
            .collect();
        Flood {
            stop,
            written,
            threads,
        }
    }

    /// Waits until the flood has written a few MiB; panics after [`WAIT`].
    fn wait_until_flowing(&self) {
        poll_until("the flood to flow", WAIT, || {
            self.written.load(Ordering::Relaxed) >= 4 << 20
        });
    }

    /// Stops the flood; returns the bytes written.
    fn stop(mut self) -> u64 {
        self.halt();
        self.written.load(Ordering::Relaxed)
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

impl Drop for Flood {
    fn drop(&mut self) {
        self.halt();
    }
}

/// One flood thread: writes `frames` round and round on every stream
/// that takes them, until stopped or every stream has failed.
fn flood(streams: Vec<TcpStream>, frames: &[u8], stop: &AtomicBool, written: &AtomicU64) {
    let mut at = vec![0usize; streams.len()];
    let mut alive: Vec<bool> = streams
        .iter()
        .map(|s| s.set_nonblocking(true).is_ok())
        .collect();
    while !stop.load(Ordering::Relaxed) && alive.contains(&true) {
        let mut fds: Vec<libc::pollfd> = streams
            .iter()
            .zip(&alive)
            .map(|(s, &ok)| libc::pollfd {
                fd: if ok { s.as_raw_fd() } else { -1 },
                events: libc::POLLOUT,
                revents: 0,
            })
            .collect();
        // SAFETY: `fds` is a live array of `fds.len()` pollfd structs.
        unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, 20) };
        for (i, fd) in fds.iter().enumerate() {
            if fd.revents == 0 || !alive[i] {
                continue;
            }
            // A few writes each, so that one fast reader does not starve
            // the other streams of this thread.
            for _ in 0..8 {
                match (&streams[i]).write(&frames[at[i]..]) {
                    Ok(n) if n > 0 => {
                        written.fetch_add(n as u64, Ordering::Relaxed);
                        at[i] = (at[i] + n) % frames.len();
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    _ => {
                        alive[i] = false;
                        break;
                    }
                }
            }
        }
    }
}

/// A thread writing raw bytes to a connection: `first`, then, with
/// `repeat`, the given bytes once per interval until stopped or the
/// connection fails. Stopped and joined on drop.
struct Writer {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<std::io::Result<()>>>,
}

impl Writer {
    fn start(mut stream: TcpStream, first: Vec<u8>, repeat: Option<(Vec<u8>, Duration)>) -> Writer {
        stream.set_write_timeout(Some(WAIT)).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || {
            stream.write_all(&first)?;
            let Some((bytes, every)) = repeat else {
                return Ok(());
            };
            while !stopped.load(Ordering::Relaxed) {
                stream.write_all(&bytes)?;
                std::thread::sleep(every);
            }
            Ok(())
        });
        Writer {
            stop,
            thread: Some(thread),
        }
    }

    /// Stops the writer and returns how its writing ended.
    fn finish(mut self) -> std::io::Result<()> {
        self.stop.store(true, Ordering::Relaxed);
        let thread = self.thread.take().expect("joined once");
        thread.join().expect("writer thread")
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

// ---------------------------------------------------------------------------
// Helpers: slowloris

/// Slowloris: from each source address, `per_source` connections that send
/// a request line and then one byte of a header a second, never finishing
/// the head. A connection that is cut (closed, reset, or answered) is
/// opened again at its next tick. One thread per source address, each
/// polling its sockets. Stopped and joined on drop.
struct Trickle {
    stop: Arc<AtomicBool>,
    started: Arc<AtomicU64>,
    cuts: Arc<AtomicU64>,
    threads: Vec<JoinHandle<()>>,
}

/// The request line; then one byte a second of `X-Slow: aaaa…`.
const TRICKLE_LINE: &[u8] = b"GET /v1/realtime HTTP/1.1\r\n";
const TRICKLE_HEADER: &[u8] = b"X-Slow: ";
const TICK: Duration = Duration::from_secs(1);
/// Each trickler acts once a [`TICK`], in one of this many phases of the
/// tick, so that (re)connects come as a steady stream. One burst a second
/// would overflow the listen backlog (128) and delay every client's SYN by a
/// second: the kernel's doing, not the daemon's.
const PHASES: usize = 20;

impl Trickle {
    fn start(dst: SocketAddr, sources: &[Ipv4Addr], per_source: usize) -> Trickle {
        let stop = Arc::new(AtomicBool::new(false));
        let started = Arc::new(AtomicU64::new(0));
        let cuts = Arc::new(AtomicU64::new(0));
        let threads = sources
            .iter()
            .map(|&src| {
                let (stop, started, cuts) = (stop.clone(), started.clone(), cuts.clone());
                std::thread::spawn(move || {
                    let counters = (started.as_ref(), cuts.as_ref());
                    trickle(src, dst, per_source, &stop, counters)
                })
            })
            .collect();
        Trickle {
            stop,
            started,
            cuts,
            threads,
        }
    }

    /// Request lines sent so far (one per connection that got through).
    fn started(&self) -> u64 {
        self.started.load(Ordering::Relaxed)
    }

    /// Stops the tricklers; returns (request lines sent, cuts).
    fn stop(mut self) -> (u64, u64) {
        self.halt();
        (self.started(), self.cuts.load(Ordering::Relaxed))
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

impl Drop for Trickle {
    fn drop(&mut self) {
        self.halt();
    }
}

/// One trickling connection and how many bytes of its head it has sent.
struct Trickler {
    stream: TcpStream,
    sent: usize,
}

impl Trickler {
    /// Connects and sends the request line, or as much of it as the
    /// socket takes while the connect is still in progress.
    fn open(src: Ipv4Addr, dst: SocketAddr) -> std::io::Result<Trickler> {
        let mut t = Trickler {
            stream: connect_from(src, dst, true)?,
            sent: 0,
        };
        t.step()?;
        Ok(t)
    }

    fn sent_request_line(&self) -> bool {
        self.sent >= TRICKLE_LINE.len()
    }

    /// Sends the rest of the request line, or the next header byte. A
    /// connect still in progress takes nothing yet.
    fn step(&mut self) -> std::io::Result<()> {
        let next;
        let bytes = if self.sent < TRICKLE_LINE.len() {
            &TRICKLE_LINE[self.sent..]
        } else {
            let k = self.sent - TRICKLE_LINE.len();
            next = [*TRICKLE_HEADER.get(k).unwrap_or(&b'a')];
            &next[..]
        };
        match self.stream.write(bytes) {
            Ok(n) => self.sent += n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
        Ok(())
    }

    /// After poll said the socket is readable: whether the daemon has cut
    /// it (closed it, reset it, or answered instead of waiting).
    fn cut(&mut self) -> bool {
        let mut buf = [0u8; 512];
        !matches!(self.stream.read(&mut buf), Err(e) if e.kind() == ErrorKind::WouldBlock)
    }
}

fn trickle(
    src: Ipv4Addr,
    dst: SocketAddr,
    count: usize,
    stop: &AtomicBool,
    (started, cuts): (&AtomicU64, &AtomicU64),
) {
    let mut slots: Vec<Option<Trickler>> = (0..count).map(|_| None).collect();
    let mut phase = 0;
    let mut next_phase = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        if Instant::now() >= next_phase {
            for slot in slots.iter_mut().skip(phase).step_by(PHASES) {
                let had_sent_line = slot.as_ref().is_some_and(Trickler::sent_request_line);
                match slot {
                    None => *slot = Trickler::open(src, dst).ok(),
                    Some(t) => {
                        if t.step().is_err() {
                            *slot = None;
                            cuts.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                if !had_sent_line && slot.as_ref().is_some_and(Trickler::sent_request_line) {
                    started.fetch_add(1, Ordering::Relaxed);
                }
            }
            phase = (phase + 1) % PHASES;
            next_phase += TICK / PHASES as u32;
        }
        // Until the next phase, wait for the daemon to cut someone.
        let wait = next_phase.saturating_duration_since(Instant::now());
        let mut fds: Vec<libc::pollfd> = slots
            .iter()
            .map(|slot| libc::pollfd {
                fd: slot.as_ref().map_or(-1, |t| t.stream.as_raw_fd()),
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        // SAFETY: `fds` is a live array of `fds.len()` pollfd structs.
        unsafe {
            libc::poll(
                fds.as_mut_ptr(),
                fds.len() as libc::nfds_t,
                wait.as_millis() as libc::c_int,
            )
        };
        for (slot, fd) in slots.iter_mut().zip(&fds) {
            if fd.revents != 0 && slot.as_mut().is_some_and(Trickler::cut) {
                *slot = None;
                cuts.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// Raises this process's soft open-file limit to its hard limit (the
/// slowloris test holds thousands of sockets).
fn raise_nofile_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a pointer to a live local.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0);
        limit.rlim_cur = limit.rlim_max;
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &limit), 0);
    }
    assert!(
        limit.rlim_cur >= 4096,
        "the open-file limit ({}) is too low for this test",
        limit.rlim_cur
    );
}

// ---------------------------------------------------------------------------
// Helpers: raw HTTP

/// An HTTP upgrade request to the endpoint, with these line endings,
/// version, Host (if any) and key.
fn upgrade_request(eol: &str, version: &str, host: Option<&str>, key: &str) -> Vec<u8> {
    let host = host.map(|h| format!("Host: {h}{eol}")).unwrap_or_default();
    format!(
        "GET /v1/realtime {version}{eol}{host}Upgrade: websocket{eol}Connection: Upgrade{eol}\
         Sec-WebSocket-Version: 13{eol}Sec-WebSocket-Key: {key}{eol}{eol}"
    )
    .into_bytes()
}

/// The head of an HTTP answer.
#[derive(Debug)]
struct HttpAnswer {
    status: u16,
    head: String,
    /// From connect to the end of the head.
    after: Duration,
}

impl HttpAnswer {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// Sends `request` from `src` on a fresh connection and reads the answer's
/// head (or whatever came before the connection closed) for at most
/// `within`. Err: no HTTP status line came.
fn http_answer(
    dst: SocketAddr,
    src: Ipv4Addr,
    request: &[u8],
    within: Duration,
) -> Result<HttpAnswer, String> {
    let started = Instant::now();
    let mut stream = connect_from(src, dst, false).map_err(|e| format!("connect: {e}"))?;
    stream.set_read_timeout(Some(within)).unwrap();
    // A write can fail if the daemon closed at once; the answer is read anyway.
    let _ = stream.write_all(request);
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    let ended = loop {
        if head.windows(4).any(|w| w == b"\r\n\r\n") {
            break "complete".to_owned();
        }
        if started.elapsed() > within {
            break format!("no complete answer within {within:?}");
        }
        match stream.read(&mut buf) {
            Ok(0) => break "closed".to_owned(),
            Ok(n) => head.extend_from_slice(&buf[..n]),
            Err(e) => break format!("{e}"),
        }
    };
    let head = String::from_utf8_lossy(&head).into_owned();
    let head = head.split("\r\n\r\n").next().unwrap_or("").to_owned();
    let status = head
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok());
    match status {
        Some(status) => Ok(HttpAnswer {
            status,
            head,
            after: started.elapsed(),
        }),
        None => Err(format!(
            "no HTTP answer ({ended} after {} ms): {head:?}",
            started.elapsed().as_millis()
        )),
    }
}

/// Makes `n` connections, `parallel` at a time, each sending `request`;
/// returns how many ended in each way ("HTTP 503", or why there was no answer).
fn hammer(dst: SocketAddr, request: &[u8], n: usize, parallel: usize) -> BTreeMap<String, usize> {
    let per_thread: Vec<Vec<String>> = std::thread::scope(|s| {
        let threads: Vec<_> = (0..parallel)
            .map(|t| {
                s.spawn(move || {
                    (t..n)
                        .step_by(parallel)
                        .map(|_| match http_answer(dst, LOCALHOST, request, WAIT) {
                            Ok(answer) => format!("HTTP {}", answer.status),
                            Err(e) => e,
                        })
                        .collect()
                })
            })
            .collect();
        threads
            .into_iter()
            .map(|t| t.join().expect("hammer thread"))
            .collect()
    });
    let mut outcomes = BTreeMap::new();
    for outcome in per_thread.into_iter().flatten() {
        *outcomes.entry(outcome).or_default() += 1;
    }
    outcomes
}

/// Whether the daemon closes `stream` (with or without a few bytes of
/// answer) within `within`; Some(when) if it did.
fn closed_within(stream: &mut TcpStream, within: Duration) -> Option<Duration> {
    let started = Instant::now();
    stream.set_read_timeout(Some(within)).unwrap();
    let mut buf = [0u8; 512];
    while started.elapsed() < within {
        match stream.read(&mut buf) {
            Ok(0) => return Some(started.elapsed()),
            Ok(_) => {} // a best-effort answer before the close
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return None
            }
            Err(_) => return Some(started.elapsed()),
        }
    }
    None
}

/// Asserts that the daemon has neither closed nor answered these connections.
fn assert_still_open(streams: &[TcpStream], what: &str) {
    for stream in streams {
        stream.set_nonblocking(true).unwrap();
        let mut buf = [0u8; 1];
        let state = (&*stream).read(&mut buf);
        stream.set_nonblocking(false).unwrap();
        assert!(
            matches!(&state, Err(e) if e.kind() == ErrorKind::WouldBlock),
            "{what}: a connection was cut: {state:?}"
        );
    }
}

// ---------------------------------------------------------------------------
// Helpers: the log, memory, a small disk

/// The log lines the daemon wrote while `attack` ran. A SIGHUP afterwards
/// marks the end: the loop logs the reload after the lines already queued.
fn log_lines_during(daemon: &Daemon, attack: impl FnOnce()) -> Vec<String> {
    const MARKER: &str = "SIGHUP: configuration reloaded";
    let before = daemon.log().lines().count();
    let markers = daemon.log().matches(MARKER).count();
    attack();
    daemon.signal(libc::SIGHUP);
    poll_until("the SIGHUP marker in the log", WAIT, || {
        daemon.log().matches(MARKER).count() > markers
    });
    daemon
        .log()
        .lines()
        .skip(before)
        .filter(|line| !line.contains("SIGHUP"))
        .map(str::to_owned)
        .collect()
}

/// The resident set size of a process, in KiB.
fn rss_kib(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// Says why a test does not run; a failure instead when
/// INTERVIEWD_REQUIRE_ROOT_TESTS=1 says root tests must run.
fn skip(test: &str, why: &str) {
    if std::env::var("INTERVIEWD_REQUIRE_ROOT_TESTS").as_deref() == Ok("1") {
        panic!("{test}: {why}, and INTERVIEWD_REQUIRE_ROOT_TESTS=1");
    }
    eprintln!("skipping {test}: {why}");
}

fn running_as_root(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if !root {
        skip(test, "it needs root to mount a tmpfs");
    }
    root
}

/// A small tmpfs mounted on a temporary directory; unmounted on drop
/// (lazily, so that files the daemon still holds cannot stop it).
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(size: &str) -> std::io::Result<SmallDisk> {
        let dir = tempfile::tempdir()?;
        let target = CString::new(dir.path().as_os_str().as_bytes()).expect("no NUL");
        let options = CString::new(format!("size={size}")).expect("no NUL");
        // SAFETY: every pointer is a live NUL-terminated string.
        let mounted = unsafe {
            libc::mount(
                c"tmpfs".as_ptr(),
                target.as_ptr(),
                c"tmpfs".as_ptr(),
                0,
                options.as_ptr().cast(),
            )
        };
        if mounted != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(SmallDisk { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Fills the disk with one file, to the last byte; returns its path.
    fn fill(&self) -> PathBuf {
        let path = self.path().join("filler");
        let mut file = std::fs::File::create(&path).expect("filler");
        for chunk in [4096, 1] {
            let bytes = vec![0u8; chunk];
            loop {
                match file.write(&bytes) {
                    Ok(n) if n > 0 => {}
                    Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
                    other => panic!("filling the disk: {other:?}"),
                }
            }
        }
        path
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        if let Ok(target) = CString::new(self.path().as_os_str().as_bytes()) {
            // SAFETY: a live NUL-terminated string.
            unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
        }
    }
}
