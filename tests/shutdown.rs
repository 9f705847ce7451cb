//! Shutdown in every state: idle, mid-interview, mid-assessment (polite,
//! stubborn and escaped children), mid-handshake, behind a client that never
//! reads, 200 clients at once, a second signal, and SIGKILL.
//!
//! Every shutdown test checks the exit status, the time from signal to exit
//! (logged in ms), the close code each reading client got (1012), that no
//! assessment process survives, that every acknowledged answer is in the
//! journal, and that unfinished sessions end with reason "shutdown".

mod common;

use common::*;

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::json;
use tungstenite::{Message, WebSocket};

/// Upper bound for a shutdown whose target is well under a second.
const PROMPT: Duration = Duration::from_secs(5);

/// Stops an idle daemon with `signal`: exit 0, promptly, with the signal
/// named in the log.
fn idle_daemon_exits_zero_on(signal: i32, name: &str) {
    let mut daemon = Daemon::start("");
    let (status, took) = daemon.stop(signal, WAIT);
    eprintln!("idle {name}: exited in {} ms", took.as_millis());
    assert_eq!(status.code(), Some(0), "log:\n{}", daemon.log());
    assert!(took < PROMPT, "took {took:?}; log:\n{}", daemon.log());
    let log = daemon.log();
    assert!(log.contains(&format!("received {name}")), "log:\n{log}");
    assert!(log.contains("shutdown complete"), "log:\n{log}");
}

/// Idle daemon: SIGTERM exits 0 promptly.
#[test]
fn idle_daemon_exits_zero_on_sigterm() {
    idle_daemon_exits_zero_on(libc::SIGTERM, "SIGTERM");
}

/// Idle daemon: SIGINT exits 0 promptly, like SIGTERM.
#[test]
fn idle_daemon_exits_zero_on_sigint() {
    idle_daemon_exits_zero_on(libc::SIGINT, "SIGINT");
}

/// Mid-interview: the client gets 1012 (a complete close handshake), both
/// acknowledged answers are journaled, the session ends "shutdown", exit 0.
#[test]
fn mid_interview_client_gets_1012_and_answers_are_journaled() {
    let mut daemon = Daemon::start("");
    let mut client = Client::connect(&daemon.url());
    let mut acked = Vec::new();
    for n in 0..2 {
        acked.push(answer_acked(&mut client, &long_answer("mid", n)));
        client.next_turn();
    }

    let (status, took, ended) = stop_reading(&mut daemon, libc::SIGTERM, &mut client);
    eprintln!("mid-interview SIGTERM: exited in {} ms", took.as_millis());
    assert_eq!(ended, Ended::Closed(1012), "log:\n{}", daemon.log());
    assert_eq!(status.code(), Some(0), "log:\n{}", daemon.log());
    assert!(took < PROMPT, "took {took:?}; log:\n{}", daemon.log());
    // The close handshake completed within the close grace; nothing was cancelled.
    assert!(
        daemon.log().contains("1 of 1 closed their clients"),
        "log:\n{}",
        daemon.log()
    );
    assert_answers_journaled(&daemon, &client.session_id, &acked);
    assert_ended_by_shutdown(&daemon, &client.session_id);
}

/// Mid-assessment (child exits on SIGTERM): client gets 1012, exit 0, the
/// child is gone, the journal has the assessing phase and end "shutdown".
#[test]
fn slow_assessment_child_is_stopped_and_session_ends_shutdown() {
    let sandbox = Sandbox::new();
    let mut daemon = Daemon::start(&command_assessor_config(&sandbox.polite(), ""));
    let (mut client, acked) = into_assessment(&daemon, "polite");
    let pid = sandbox.wait_pids(1)[0];
    assert!(
        alive(pid),
        "the assessor should be running before the signal"
    );
    assert!(
        !sandbox.survivors().is_empty(),
        "marker must find the child"
    );

    let (status, took, ended) = stop_reading(&mut daemon, libc::SIGTERM, &mut client);
    eprintln!("assessing SIGTERM: exited in {} ms", took.as_millis());
    assert_eq!(ended, Ended::Closed(1012), "log:\n{}", daemon.log());
    assert_eq!(status.code(), Some(0), "log:\n{}", daemon.log());
    assert!(took < PROMPT, "took {took:?}; log:\n{}", daemon.log());
    assert_eq!(sandbox.wait_no_survivors(PROMPT), Vec::<i32>::new());
    assert!(!alive(pid));
    assert_answers_journaled(&daemon, &client.session_id, &acked);
    assert_phase_assessing(&daemon, &client.session_id);
    assert_ended_by_shutdown(&daemon, &client.session_id);
}

/// Mid-assessment with a child that ignores SIGTERM: it is SIGKILLed, and the
/// daemon still exits 0 well within the deadline with nothing left behind.
#[test]
fn assessment_child_ignoring_sigterm_is_killed_and_exit_is_zero() {
    let sandbox = Sandbox::new();
    let mut daemon = Daemon::start(&command_assessor_config(&sandbox.stubborn(), ""));
    let (mut client, acked) = into_assessment(&daemon, "stubborn");
    let pid = sandbox.wait_pids(1)[0];
    assert!(alive(pid));
    // The shell and its sleep both carry the marker.
    wait_until("the stubborn sleep to start", || {
        sandbox.survivors().len() >= 2
    });

    let (status, took, ended) = stop_reading(&mut daemon, libc::SIGTERM, &mut client);
    eprintln!("stubborn child SIGTERM: exited in {} ms", took.as_millis());
    assert_eq!(ended, Ended::Closed(1012), "log:\n{}", daemon.log());
    assert_eq!(status.code(), Some(0), "log:\n{}", daemon.log());
    // Default deadline is 2 s; the SIGKILL comes after 0.5 s.
    assert!(took < PROMPT, "took {took:?}; log:\n{}", daemon.log());
    let log = daemon.log();
    assert!(
        log.contains("1 process group(s) sent SIGTERM, 1 SIGKILL"),
        "log:\n{log}"
    );
    assert_eq!(sandbox.wait_no_survivors(PROMPT), Vec::<i32>::new());
    assert_answers_journaled(&daemon, &client.session_id, &acked);
    assert_phase_assessing(&daemon, &client.session_id);
    assert_ended_by_shutdown(&daemon, &client.session_id);
}

/// Shutdown during an assessment's termination grace (timed out, child
/// ignoring SIGTERM) is still heard at once: the client gets 1012 within
/// the close grace instead of being cut off, and nothing survives.
#[test]
fn shutdown_during_the_termination_grace_still_closes_with_1012() {
    let sandbox = Sandbox::new();
    let config = command_assessor_config(&sandbox.stubborn(), "timeout = \"300ms\"");
    let mut daemon = Daemon::start(&config);
    let (mut client, acked) = into_assessment(&daemon, "grace");
    sandbox.wait_pids(1);
    daemon.wait_for_log("assessment timed out after 300ms; stopping it");

    let (status, took, ended) = stop_reading(&mut daemon, libc::SIGTERM, &mut client);
    eprintln!(
        "shutdown during the termination grace: exited in {} ms",
        took.as_millis()
    );
    assert_eq!(ended, Ended::Closed(1012), "log:\n{}", daemon.log());
    assert_eq!(status.code(), Some(0), "log:\n{}", daemon.log());
    assert!(took < PROMPT, "took {took:?}");
    assert_eq!(sandbox.wait_no_survivors(PROMPT), Vec::<i32>::new());
    assert_answers_journaled(&daemon, &client.session_id, &acked);
    assert_ended_by_shutdown(&daemon, &client.session_id);
}

/// After a SIGKILL that also tore the last write, the next start settles
/// the transcript: the torn line is cut, a `suspended` line (reason
/// `error`) says what happened, so that the interview can still be
/// resumed, and every acknowledged answer is still there.
#[test]
fn the_next_start_closes_transcripts_a_crash_left_open() {
    let mut daemon = Daemon::start("");
    let mut client = Client::connect(&daemon.url());
    let acked: Vec<(String, String)> = (0..3)
        .map(|i| answer_acked(&mut client, &long_answer("recover", i)))
        .collect();
    let (status, _) = daemon.stop(libc::SIGKILL, WAIT);
    assert_eq!(status.signal(), Some(libc::SIGKILL));
    let path = daemon.journal_path(&client.session_id);
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap();
    file.write_all(b"{\"kind\":\"item\",\"role\":\"user\",\"te")
        .unwrap();
    drop(file);
    assert!(daemon.journal(&client.session_id).torn_tail);

    let daemon = daemon.restart();
    daemon.wait_for_log(
        "1 transcript(s) left open by an unclean stop were suspended (1 torn line(s) cut",
    );
    let transcript = daemon.journal(&client.session_id);
    assert!(!transcript.torn_tail);
    assert!(transcript.is_suspended());
    assert_eq!(transcript.end_reason(), Some("error"));
    let suspended = records(&transcript, "suspended");
    assert!(suspended[0]["detail"]
        .as_str()
        .unwrap()
        .contains("stopped without closing"));
    assert_answers_journaled(&daemon, &client.session_id, &acked);
    // The restarted daemon serves as usual.
    let fresh = Client::connect(&daemon.url());
    assert!(fresh.session_id.starts_with("sess_"));
}

/// 200 clients in mixed phases (greeted, answering, assessing): all get 1012,
/// exit 0 in bounded time, every acknowledged answer journaled, no child left.
#[test]
fn two_hundred_clients_in_mixed_phases_all_get_1012() {
    const CLIENTS: usize = 200;
    const DRIVERS: usize = 8;
    let sandbox = Sandbox::new();
    let mut daemon = Daemon::start(&command_assessor_config(&sandbox.polite(), ""));
    let url = daemon.url();
    let started = Instant::now();
    let mut driven: Vec<Driven> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..DRIVERS)
            .map(|t| {
                let url = &url;
                s.spawn(move || {
                    (t..CLIENTS)
                        .step_by(DRIVERS)
                        .map(|i| drive(url, i))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("driver thread"))
            .collect()
    });
    let assessing = driven.iter().filter(|d| d.phase == Mix::Assessing).count();
    let answering = driven.iter().filter(|d| d.phase == Mix::Answering).count();
    assert!(assessing > 0 && answering > 0 && assessing + answering < CLIENTS);
    sandbox.wait_pids(assessing);
    eprintln!(
        "200 clients: in position after {} ms ({assessing} assessing, {answering} answering)",
        started.elapsed().as_millis()
    );

    let signalled = Instant::now();
    daemon.signal(libc::SIGTERM);
    let (status, took) = std::thread::scope(|s| {
        let readers: Vec<_> = driven
            .chunks_mut(CLIENTS / DRIVERS)
            .map(|chunk| {
                s.spawn(move || {
                    for d in chunk.iter_mut() {
                        d.ended = Some(read_close(&mut d.client));
                    }
                })
            })
            .collect();
        let status = daemon.wait_exit(WAIT);
        let took = signalled.elapsed();
        for r in readers {
            r.join().expect("reader thread");
        }
        (status, took)
    });
    eprintln!("200 clients SIGTERM: exited in {} ms", took.as_millis());
    assert_eq!(status.code(), Some(0), "log:\n{}", daemon.log());
    assert!(took < PROMPT, "took {took:?}; log:\n{}", daemon.log());
    let not_1012: Vec<_> = driven
        .iter()
        .filter(|d| d.ended != Some(Ended::Closed(1012)))
        .map(|d| (&d.client.session_id, d.phase, &d.ended))
        .collect();
    assert!(
        not_1012.is_empty(),
        "{} client(s) did not get 1012: {not_1012:?}",
        not_1012.len()
    );
    for d in &driven {
        assert_answers_journaled(&daemon, &d.client.session_id, &d.acked);
        assert_ended_by_shutdown(&daemon, &d.client.session_id);
        if d.phase == Mix::Assessing {
            assert_phase_assessing(&daemon, &d.client.session_id);
        }
    }
    assert_eq!(sandbox.wait_no_survivors(PROMPT), Vec::<i32>::new());
}

/// A client stuck halfway through its HTTP request line does not hold up
/// shutdown, even with a long close grace: exit 0 promptly, a reader gets 1012.
#[test]
fn half_sent_http_request_does_not_delay_shutdown() {
    // Long enough that waiting for the half request would break the bound.
    let mut daemon = Daemon::start(
        "[limits]\nhandshake_timeout = \"60s\"\n\
         [shutdown]\nclose_grace = \"10s\"\ndeadline = \"20s\"\n",
    );
    let mut half = TcpStream::connect(daemon.addr).expect("connect");
    half.write_all(b"GET /v1/real")
        .expect("half a request line");
    // Accepts are in order: once this client is greeted, the half request
    // above has been accepted too.
    let mut client = Client::connect(&daemon.url());

    let (status, took, ended) = stop_reading(&mut daemon, libc::SIGTERM, &mut client);
    eprintln!("half handshake SIGTERM: exited in {} ms", took.as_millis());
    assert_eq!(ended, Ended::Closed(1012), "log:\n{}", daemon.log());
    assert_eq!(status.code(), Some(0), "log:\n{}", daemon.log());
    assert!(took < PROMPT, "took {took:?}; log:\n{}", daemon.log());
    assert_ended_by_shutdown(&daemon, &client.session_id);
    drop(half);
}

/// A client that never reads (server writes backed up) does not hold up
/// shutdown: exit 0 promptly, its session ends "shutdown", a reader gets 1012.
#[test]
fn client_that_never_reads_does_not_delay_shutdown() {
    let mut daemon = Daemon::start(&format!("[limits]\n{UNLIMITED_RATE}"));
    let mut reader = Client::connect(&daemon.url());

    let (stuck, stuck_id) = never_reading_client(&daemon);

    let (status, took, ended) = stop_reading(&mut daemon, libc::SIGTERM, &mut reader);
    eprintln!(
        "never-reading client SIGTERM: exited in {} ms",
        took.as_millis()
    );
    assert_eq!(ended, Ended::Closed(1012), "log:\n{}", daemon.log());
    assert_eq!(status.code(), Some(0), "log:\n{}", daemon.log());
    assert!(took < PROMPT, "took {took:?}; log:\n{}", daemon.log());
    assert_ended_by_shutdown(&daemon, &reader.session_id);
    assert_ended_by_shutdown(&daemon, &stuck_id);
    drop(stuck);
}

/// A second SIGTERM while shutdown waits on a stuck assessment thread exits
/// at once with status 4; the child's own process group is gone.
#[test]
fn second_sigterm_while_a_thread_is_stuck_exits_4_at_once() {
    let sandbox = Sandbox::new();
    let config = command_assessor_config(&sandbox.escaped(), "[shutdown]\ndeadline = \"30s\"\n");
    let mut daemon = Daemon::start(&config);
    let (mut client, acked) = into_assessment(&daemon, "second");
    let escaped = Escaped::wait(&sandbox);
    assert!(!sandbox.in_group_survivors(escaped.0).is_empty());

    daemon.signal(libc::SIGTERM);
    assert_eq!(read_close(&mut client), Ended::Closed(1012));
    // Step 4 has run; step 5 now waits (up to 30 s) for the blocked thread.
    daemon.wait_for_log("shutdown 4/5");
    daemon.wait_for_log("journal writer: channel closed and drained");
    assert!(alive(daemon.pid()), "log:\n{}", daemon.log());
    assert!(
        daemon
            .log()
            .contains("1 assessment thread(s) still running"),
        "the test needs a stuck thread; log:\n{}",
        daemon.log()
    );

    let (status, took) = daemon.stop(libc::SIGTERM, WAIT);
    eprintln!("second SIGTERM: exited in {} ms", took.as_millis());
    assert_eq!(status.code(), Some(4), "log:\n{}", daemon.log());
    assert!(took < Duration::from_secs(2), "took {took:?}");
    assert!(
        daemon.log().contains("second SIGTERM"),
        "log:\n{}",
        daemon.log()
    );
    assert!(
        wait_for_none(|| sandbox.in_group_survivors(escaped.0)).is_empty(),
        "a process of the assessor's group survived"
    );
    // The escaped process is outside the daemon's reach by construction.
    assert!(alive(escaped.0), "the stuck-thread setup did not hold");
    assert_answers_journaled(&daemon, &client.session_id, &acked);
    assert_ended_by_shutdown(&daemon, &client.session_id);
}

/// A second signal (SIGINT) during the close grace exits 4 at once and
/// SIGKILLs the live assessment groups, TERM-ignoring grandchildren included.
#[test]
fn second_signal_during_close_grace_kills_child_groups_and_exits_4() {
    let sandbox = Sandbox::new();
    let extra = format!(
        "[shutdown]\nclose_grace = \"20s\"\ndeadline = \"30s\"\n[limits]\n{UNLIMITED_RATE}"
    );
    let mut daemon = Daemon::start(&command_assessor_config(&sandbox.stubborn(), &extra));
    let (mut client, acked) = into_assessment(&daemon, "grace");
    let pid = sandbox.wait_pids(1)[0];
    wait_until("the stubborn sleep to start", || {
        sandbox.survivors().len() >= 2
    });
    // A session blocked writing to a client that never reads does not see
    // the shutdown request (for up to its 10 s send timeout), so step 2
    // waits on it; the assessment group is still untouched meanwhile.
    let (stuck, _) = never_reading_client(&daemon);

    daemon.signal(libc::SIGTERM);
    assert_eq!(read_close(&mut client), Ended::Closed(1012));
    daemon.wait_for_log("shutdown 1/5");
    assert!(
        !daemon.log().contains("shutdown 2/5"),
        "log:\n{}",
        daemon.log()
    );
    assert!(
        alive(pid),
        "the child must still be running at the second signal"
    );

    let (status, took) = daemon.stop(libc::SIGINT, WAIT);
    eprintln!(
        "second SIGINT in close grace: exited in {} ms",
        took.as_millis()
    );
    assert_eq!(status.code(), Some(4), "log:\n{}", daemon.log());
    assert!(took < Duration::from_secs(2), "took {took:?}");
    let log = daemon.log();
    assert!(log.contains("second SIGINT"), "log:\n{log}");
    assert!(
        log.contains("1 assessment process group(s) killed"),
        "log:\n{log}"
    );
    // The second signal really came during step 2.
    assert!(!log.contains("shutdown 2/5"), "log:\n{log}");
    assert_eq!(sandbox.wait_no_survivors(PROMPT), Vec::<i32>::new());
    assert_answers_journaled(&daemon, &client.session_id, &acked);
    drop(stuck);
}

/// A thread that cannot finish makes shutdown give up at the deadline with
/// status 3, naming the thread; clients still get 1012.
#[test]
fn stuck_thread_past_deadline_exits_3_naming_it() {
    let sandbox = Sandbox::new();
    let extra = "[shutdown]\ndeadline = \"1s\"\nclose_grace = \"100ms\"\n";
    let mut daemon = Daemon::start(&command_assessor_config(&sandbox.escaped(), extra));
    let (mut client, acked) = into_assessment(&daemon, "deadline");
    let escaped = Escaped::wait(&sandbox);

    let (status, took, ended) = stop_reading(&mut daemon, libc::SIGTERM, &mut client);
    eprintln!(
        "stuck thread, 1 s deadline: exited in {} ms",
        took.as_millis()
    );
    assert_eq!(ended, Ended::Closed(1012), "log:\n{}", daemon.log());
    assert_eq!(status.code(), Some(3), "log:\n{}", daemon.log());
    assert!(
        took >= Duration::from_millis(1000),
        "left before the deadline: {took:?}"
    );
    assert!(took < Duration::from_secs(4), "took {took:?}");
    let thread = format!("assess-{}", &client.session_id[5..13]);
    let log = daemon.log();
    assert!(log.contains("shutdown incomplete"), "log:\n{log}");
    assert!(
        log.contains(&format!("thread(s) not finished: {thread}")),
        "log does not name {thread}:\n{log}"
    );
    assert!(
        wait_for_none(|| sandbox.in_group_survivors(escaped.0)).is_empty(),
        "a process of the assessor's group survived"
    );
    assert_answers_journaled(&daemon, &client.session_id, &acked);
    assert_ended_by_shutdown(&daemon, &client.session_id);
}

/// SIGKILL mid-interview: the journal parses and holds every acknowledged
/// answer, with no end line.
#[test]
fn sigkill_mid_interview_keeps_every_acknowledged_answer() {
    let mut daemon = Daemon::start("");
    let mut client = Client::connect(&daemon.url());
    let mut acked = Vec::new();
    for n in 0..4 {
        acked.push(answer_acked(&mut client, &long_answer("killed", n)));
        client.next_turn();
    }
    // The last answer is acknowledged but never followed by a turn.
    acked.push(answer_acked(&mut client, &long_answer("killed", 4)));

    let (status, took) = daemon.stop(libc::SIGKILL, WAIT);
    eprintln!("SIGKILL: exited in {} ms", took.as_millis());
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(libc::SIGKILL)
    );
    assert_eq!(client.read_to_end(), Ended::Dropped);
    let journal = interviewd::journal::read(&daemon.journal_path(&client.session_id))
        .expect("the journal parses after SIGKILL");
    assert_eq!(records(&journal, "header").len(), 1);
    assert_answers_journaled(&daemon, &client.session_id, &acked);
    assert_eq!(journal.end_reason(), None);
}

/// SIGKILL mid-assessment: the assessor child does not outlive the daemon.
#[test]
fn sigkill_mid_assessment_leaves_no_child() {
    let sandbox = Sandbox::new();
    let mut daemon = Daemon::start(&command_assessor_config(&sandbox.polite(), ""));
    let (_client, _) = into_assessment(&daemon, "sigkill");
    let pid = sandbox.wait_pids(1)[0];
    assert!(alive(pid));

    let (status, took) = daemon.stop(libc::SIGKILL, WAIT);
    eprintln!("SIGKILL mid-assessment: exited in {} ms", took.as_millis());
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(libc::SIGKILL)
    );
    assert_eq!(sandbox.wait_no_survivors(PROMPT), Vec::<i32>::new());
}

// ---------------------------------------------------------------------------
// Helpers for this file.
// ---------------------------------------------------------------------------

/// An answer long enough (over every question's min_words) that the next
/// turn is the next question, tagged so each one is unique.
fn long_answer(tag: &str, n: usize) -> String {
    format!(
        "{tag} answer {n}: I designed and built the storage layer of a project with my team, \
         wrote the tests, read the logs and metrics to reproduce each hypothesis, shipped it \
         to users, and was responsible for the rollback plan, the monitoring, the documentation \
         and the code review feedback that kept the whole thing readable and correct for months."
    )
}

/// Sends an answer, waits for its conversation.item.done; returns (item id, text).
fn answer_acked(client: &mut Client, text: &str) -> (String, String) {
    let id = client.answer(text);
    (id, text.to_owned())
}

/// Connects, answers once, finishes the interview and waits until the
/// assessment has started.
fn into_assessment(daemon: &Daemon, tag: &str) -> (Client, Vec<(String, String)>) {
    let mut client = Client::connect(&daemon.url());
    let acked = vec![answer_acked(&mut client, &long_answer(tag, 0))];
    client.send(json!({"type": "interview.finish"}));
    client.wait_for("interview.assessment.started");
    (client, acked)
}

/// Signals the daemon, reads the client to its end, waits for the exit;
/// returns the status, the time from signal to exit, and how the client ended.
fn stop_reading(
    daemon: &mut Daemon,
    signal: i32,
    client: &mut Client,
) -> (std::process::ExitStatus, Duration, Ended) {
    let start = Instant::now();
    daemon.signal(signal);
    let ended = read_close(client);
    let status = daemon.wait_exit(WAIT);
    (status, start.elapsed(), ended)
}

/// Reads until the connection ends and, like a well-behaved client, sends
/// the reply to the server's close frame (`read_to_end` leaves it queued).
fn read_close(client: &mut Client) -> Ended {
    let ended = client.read_to_end();
    let _ = client.ws.flush();
    ended
}

fn assert_answers_journaled(daemon: &Daemon, session_id: &str, acked: &[(String, String)]) {
    let journal = daemon.journal(session_id);
    let users: Vec<_> = records(&journal, "item")
        .into_iter()
        .filter(|r| r["role"] == "user")
        .collect();
    for (id, text) in acked {
        assert!(
            users
                .iter()
                .any(|r| r["item_id"] == id.as_str() && r["text"] == text.as_str()),
            "session {session_id}: acknowledged answer {id} missing from the journal: {:#?}",
            journal.records
        );
    }
}

/// Stopped by the shutdown, once: an end line (a session being assessed)
/// or a `suspended` line (mid-interview: resumable after the restart).
fn assert_ended_by_shutdown(daemon: &Daemon, session_id: &str) {
    let journal = daemon.journal(session_id);
    let stops = records(&journal, "end").len() + records(&journal, "suspended").len();
    assert_eq!(stops, 1, "session {session_id}: {:#?}", journal.records);
    assert_eq!(
        journal.end_reason(),
        Some("shutdown"),
        "session {session_id}: {:#?}",
        journal.records
    );
}

fn assert_phase_assessing(daemon: &Daemon, session_id: &str) {
    let journal = daemon.journal(session_id);
    assert!(
        records(&journal, "phase")
            .iter()
            .any(|r| r["phase"] == "assessing"),
        "session {session_id}: no assessing phase: {:#?}",
        journal.records
    );
}

/// What a driven client in the 200-client test was brought to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mix {
    Greeted,
    Answering,
    Assessing,
}

struct Driven {
    client: Client,
    phase: Mix,
    acked: Vec<(String, String)>,
    ended: Option<Ended>,
}

/// Brings client `i` to its phase: 30% greeted, 40% answering (1 to 3
/// answers, some waiting for the next turn), 30% assessing.
fn drive(url: &str, i: usize) -> Driven {
    let mut client = Client::connect(url);
    let tag = format!("c{i}");
    let (phase, acked) = match i % 10 {
        0..=2 => (Mix::Greeted, Vec::new()),
        3..=6 => {
            let mut acked = Vec::new();
            for n in 0..=(i % 3) {
                acked.push(answer_acked(&mut client, &long_answer(&tag, n)));
                if n < i % 3 || i % 2 == 0 {
                    client.next_turn();
                }
            }
            (Mix::Answering, acked)
        }
        _ => {
            let acked = vec![answer_acked(&mut client, &long_answer(&tag, 0))];
            client.send(json!({"type": "interview.finish"}));
            client.wait_for("interview.assessment.started");
            (Mix::Assessing, acked)
        }
    };
    Driven {
        client,
        phase,
        acked,
        ended: None,
    }
}

/// A temp dir for an assessor's pid files, with `sleep` linked inside it so
/// that every process the assessor starts has the dir's path (the marker)
/// in its command line. Kills whatever still carries the marker on drop.
struct Sandbox {
    dir: tempfile::TempDir,
}

impl Sandbox {
    fn new() -> Sandbox {
        let dir = tempfile::tempdir().expect("temp dir");
        std::os::unix::fs::symlink("/bin/sleep", dir.path().join("sleep")).expect("symlink");
        Sandbox { dir }
    }

    fn dir(&self) -> String {
        self.dir.path().display().to_string()
    }

    fn marker(&self) -> String {
        format!("{}/", self.dir())
    }

    /// Records its pid, then becomes `sleep 60` (dies on SIGTERM).
    fn polite(&self) -> String {
        let d = self.dir();
        format!("echo $$ > {d}/pid.$$.tmp && mv {d}/pid.$$.tmp {d}/pid.$$; exec {d}/sleep 60")
    }

    /// Ignores SIGTERM (and so does its sleep); records the shell's pid.
    fn stubborn(&self) -> String {
        let d = self.dir();
        format!(
            "trap '' TERM; echo $$ > {d}/pid.$$.tmp && mv {d}/pid.$$.tmp {d}/pid.$$; {d}/sleep 60"
        )
    }

    /// Starts a sleep in a new session (outside the assessor's process group)
    /// that holds the assessor's stdout open, so the job thread stays blocked
    /// reading it whatever happens to the group; records the escapee's pid.
    /// Its stderr goes to /dev/null: the daemon's stderr is the harness's log
    /// pipe, which must reach EOF when the daemon exits.
    fn escaped(&self) -> String {
        let d = self.dir();
        format!(
            "setsid sh -c 'echo $$ > {d}/escaped.tmp && mv {d}/escaped.tmp {d}/escaped; exec {d}/sleep 60 2>/dev/null' & wait"
        )
    }

    /// Pids recorded by `polite`/`stubborn` assessors so far.
    fn pids(&self) -> Vec<i32> {
        let mut pids = Vec::new();
        for entry in std::fs::read_dir(self.dir.path()).unwrap().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with("pid.") && !name.ends_with(".tmp") {
                let text = std::fs::read_to_string(entry.path()).unwrap();
                pids.push(text.trim().parse().expect("pid"));
            }
        }
        pids
    }

    /// Waits until `n` assessors have recorded their pid.
    fn wait_pids(&self, n: usize) -> Vec<i32> {
        wait_until(&format!("{n} assessor pid file(s)"), || {
            self.pids().len() >= n
        });
        self.pids()
    }

    fn escaped_pid_file(&self) -> PathBuf {
        self.dir.path().join("escaped")
    }

    /// Live (non-zombie) processes carrying the marker.
    fn survivors(&self) -> Vec<i32> {
        processes_matching(&self.marker())
            .into_iter()
            .filter(|&p| alive(p))
            .collect()
    }

    /// Survivors other than the escaped process.
    fn in_group_survivors(&self, escaped: i32) -> Vec<i32> {
        self.survivors()
            .into_iter()
            .filter(|&p| p != escaped)
            .collect()
    }

    /// Waits (bounded) for every marked process to be gone; returns those left.
    fn wait_no_survivors(&self, timeout: Duration) -> Vec<i32> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = self.survivors();
            if left.is_empty() || Instant::now() > deadline {
                return left;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        for pid in self.survivors() {
            // SAFETY: kill(2) has no memory-safety preconditions.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

/// The escaped sleep's pid; killed on drop (the daemon cannot reach it).
struct Escaped(i32);

impl Escaped {
    fn wait(sandbox: &Sandbox) -> Escaped {
        let file = sandbox.escaped_pid_file();
        wait_until("the escaped process's pid file", || file.exists());
        let pid = std::fs::read_to_string(&file)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert!(alive(pid), "the escaped process is not running");
        Escaped(pid)
    }
}

impl Drop for Escaped {
    fn drop(&mut self) {
        if alive(self.0) {
            // SAFETY: kill(2) has no memory-safety preconditions.
            unsafe { libc::kill(self.0, libc::SIGKILL) };
        }
    }
}

/// True while `pid` exists and is not a zombie.
fn alive(pid: i32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // The state follows the parenthesised command name.
    stat.rsplit(')')
        .next()
        .and_then(|rest| rest.trim_start().chars().next())
        .is_some_and(|state| state != 'Z' && state != 'X')
}

/// Polls `done` until it holds; panics after [`WAIT`].
fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !done() {
        if Instant::now() > deadline {
            panic!("timed out waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Polls `found` until it is empty or [`PROMPT`] passes; returns the last result.
fn wait_for_none(mut found: impl FnMut() -> Vec<i32>) -> Vec<i32> {
    let deadline = Instant::now() + PROMPT;
    loop {
        let left = found();
        if left.is_empty() || Instant::now() > deadline {
            return left;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A client that reads only `session.created`, then sends `response.create`
/// until its writes back up: the server, blocked writing responses nobody
/// reads, has stopped reading. Returns the socket (keep it open) and the
/// session id.
/// Lifts the client rate limit (keys of `[limits]`), for tests whose client
/// floods on purpose to fill its socket: the send timeout, not the rate
/// limit, is under test.
const UNLIMITED_RATE: &str = "events_per_second = 100000000\nevents_burst = 100000000\n";

fn never_reading_client(daemon: &Daemon) -> (WebSocket<TcpStream>, String) {
    let stream = connect_with_small_buffers(daemon.addr, 4096);
    let (mut stuck, _) = tungstenite::client(daemon.url(), stream).expect("handshake");
    let created = match stuck.read().expect("session.created") {
        Message::Text(t) => serde_json::from_str::<serde_json::Value>(t.as_str()).unwrap(),
        other => panic!("expected session.created, got {other:?}"),
    };
    let stuck_id = created["session"]["id"].as_str().unwrap().to_owned();
    stuck
        .get_ref()
        .set_write_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let flood_until = Instant::now() + WAIT;
    let mut sent = 0u64;
    let backed_up = loop {
        if Instant::now() > flood_until || sent > 2_000_000 {
            break false;
        }
        match stuck.send(Message::text(
            json!({"type": "response.create"}).to_string(),
        )) {
            Ok(()) => sent += 1,
            Err(tungstenite::Error::Io(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                break true
            }
            Err(e) => panic!("flood failed after {sent} events: {e}"),
        }
    };
    assert!(backed_up, "writes never backed up after {sent} events");
    eprintln!("never-reading client: backed up after {sent} events");
    (stuck, stuck_id)
}

/// A TCP connection whose receive and send buffers are set to `bytes` before
/// connecting, so that a client that does not read fills up quickly, and
/// our own writes back up soon after the server stops reading.
fn connect_with_small_buffers(addr: SocketAddr, bytes: libc::c_int) -> TcpStream {
    let stream = connect_with_buffers(addr, Some(bytes), Some(bytes));
    stream.set_read_timeout(Some(WAIT)).unwrap();
    stream
}
