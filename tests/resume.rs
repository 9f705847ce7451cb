//! Resume: a dropped connection does not end the interview.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

/// Reads until an event of type `ty`, keeping everything read.
fn until(c: &mut Client, ty: &str) -> Value {
    c.wait_for(ty)
}

/// Connects presenting `token` as a Bearer token.
fn connect_with(daemon: &Daemon, token: &str) -> Client {
    Client::connect_raw_with(
        &daemon.url(),
        &[("Authorization", &format!("Bearer {token}"))],
    )
}

/// Answers the current question with enough words to move on.
fn answer_and_next(c: &mut Client, text: &str) {
    c.send(user_message(&format!("{text} {}", "word ".repeat(60))));
    until(c, "conversation.item.done");
    c.send(json!({"type": "response.create"}));
    until(c, "response.done");
}

/// The session's transcript once its end line is on disk.
fn ended_journal(daemon: &Daemon, id: &str) -> interviewd::journal::Transcript {
    let deadline = Instant::now() + WAIT;
    loop {
        let journal = daemon.journal(id);
        if journal.end_reason().is_some() {
            return journal;
        }
        assert!(Instant::now() < deadline, "no end line in {id}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn drop_tcp(c: Client) {
    let stream = c.ws.get_ref().try_clone().unwrap();
    stream.shutdown(std::net::Shutdown::Both).unwrap();
    drop(c);
}

/// In open mode a session whose TCP connection drops mid-interview is
/// suspended, and the resume token from its `session.created` takes it
/// back: the same session id, the conversation so far, `interview.resumed`,
/// the open question asked again; the interview then finishes, the journal
/// has every answer once, and the report covers the whole interview.
#[test]
fn a_dropped_connection_resumes_with_its_token_and_the_interview_finishes() {
    let daemon = Daemon::start("[assessment]\nshare_with_candidate = \"full\"\n");
    let mut c = Client::connect(&daemon.url());
    let created = c.events[0].clone();
    let token = created["session"]["resume_token"]
        .as_str()
        .expect("resume_token")
        .to_owned();
    assert!(token.starts_with("rst_"), "{token}");
    answer_and_next(&mut c, "first answer");
    answer_and_next(&mut c, "second answer");
    let id = c.session_id.clone();
    drop_tcp(c);
    daemon.wait_for_log(&format!("session {id}: suspended"));

    let reconnected = Instant::now();
    let mut c = connect_with(&daemon, &token);
    let again = until(&mut c, "session.created");
    assert_eq!(again["session"]["id"], id.as_str());
    until(&mut c, "interview.resumed");
    let turn = until(&mut c, "response.done");
    let took = reconnected.elapsed();
    let replayed = c
        .events
        .iter()
        .filter(|e| e["type"] == "conversation.item.done")
        .count();
    assert!(replayed >= 5, "{replayed} items replayed");
    let text = turn["response"]["output"][0]["content"][0]["text"]
        .as_str()
        .unwrap();
    let script = interviewd::script::Script::builtin();
    assert!(text.contains(&script.questions[2].text), "{text}");
    eprintln!("reconnect to the resumed question: {took:?}");
    c.session_id = id.clone();
    c.answer_all("the rest of my answers, about tests, logs and a lock");
    let done = until(&mut c, "interview.assessment.completed");
    let report = full_report(&daemon, &done);
    assert_eq!(c.read_to_end(), Ended::Closed(1000));
    let journal = ended_journal(&daemon, &id);
    let answers: Vec<&str> = records(&journal, "item")
        .iter()
        .filter(|r| r["role"] == "user")
        .filter_map(|r| r["text"].as_str())
        .collect();
    assert_eq!(
        answers
            .iter()
            .filter(|a| a.starts_with("first answer"))
            .count(),
        1
    );
    assert_eq!(
        answers
            .iter()
            .filter(|a| a.starts_with("second answer"))
            .count(),
        1
    );
    assert_eq!(report["interview_complete"], true, "{report:#}");
    assert_eq!(records(&journal, "suspended").len(), 1);
    assert_eq!(journal.end_reason(), Some("completed"));
}

/// In invite mode the invite resumes its session, even a single-use one
/// already used; a second connection while the first is live takes the
/// session over and the first gets close 4000.
#[test]
fn the_invite_resumes_its_session_and_a_second_connection_takes_it_over() {
    let daemon = Daemon::start("[access]\nmode = \"invite\"\n");
    let (token, _) = create_invite(&daemon, &[]);
    let mut first = connect_with(&daemon, &token);
    let created = until(&mut first, "session.created");
    let id = created["session"]["id"].as_str().unwrap().to_owned();
    assert!(created["session"].get("resume_token").is_none());
    until(&mut first, "response.done");
    answer_and_next(&mut first, "an answer");

    let mut second = connect_with(&daemon, &token);
    let again = until(&mut second, "session.created");
    assert_eq!(again["session"]["id"], id.as_str());
    until(&mut second, "interview.resumed");
    assert_eq!(first.read_to_end(), Ended::Closed(4000));

    drop_tcp(second);
    daemon.wait_for_log(&format!("session {id}: suspended"));
    let mut third = connect_with(&daemon, &token);
    let again = until(&mut third, "session.created");
    assert_eq!(again["session"]["id"], id.as_str());
    until(&mut third, "interview.resumed");
}

/// A session not resumed within sessions.resume_window ends with the reason
/// it was suspended for; its token then opens nothing of it.
#[test]
fn a_session_not_resumed_in_time_ends() {
    let daemon = Daemon::start("[sessions]\nresume_window = \"300ms\"\n");
    let c = Client::connect(&daemon.url());
    let token = c.events[0]["session"]["resume_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let id = c.session_id.clone();
    drop_tcp(c);
    daemon.wait_for_log(&format!(
        "session {id}: not resumed within sessions.resume_window"
    ));
    assert_eq!(
        ended_journal(&daemon, &id).end_reason(),
        Some("client_closed")
    );
    let mut c = connect_with(&daemon, &token);
    let created = until(&mut c, "session.created");
    assert_ne!(created["session"]["id"], id.as_str());
}

/// What a suspended session costs: RSS with 200 sessions connected, then
/// with the same 200 suspended (their clients gone), reported per session.
#[test]
fn suspended_sessions_cost_little_memory() {
    let daemon = Daemon::start("[limits]\nmax_sessions_per_ip = 1000\n");
    let rss = || {
        let status = std::fs::read_to_string(format!("/proc/{}/status", daemon.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            .unwrap()
    };
    let before = rss();
    let clients: Vec<Client> = (0..200).map(|_| Client::connect(&daemon.url())).collect();
    let connected = rss();
    for c in clients {
        drop_tcp(c);
    }
    let deadline = Instant::now() + WAIT;
    while daemon.log().matches(": suspended (").count() < 200 {
        assert!(Instant::now() < deadline, "not all suspended");
        std::thread::sleep(Duration::from_millis(20));
    }
    let suspended = rss();
    eprintln!(
        "RSS: idle {before} KiB, 200 connected {connected} KiB ({:.1} KiB each), 200 suspended {suspended} KiB ({:.1} KiB each)",
        (connected.saturating_sub(before)) as f64 / 200.0,
        (suspended.saturating_sub(before)) as f64 / 200.0
    );
    assert!(
        suspended <= connected + 2048,
        "suspending grew the daemon: {connected} -> {suspended} KiB"
    );
}

/// Resume survives a restart: stopped mid-interview by `signal` (SIGTERM:
/// the client gets 1012 and the journal says `suspended`; SIGKILL: the
/// next start's recovery says so), the daemon starts again, rebuilds the
/// session from its journal, and the token resumes it: same id, the
/// conversation, `interview.resumed`, the open question again. The
/// interview then finishes with every answer journaled once.
fn resumes_across_a_restart(signal: i32) {
    let mut daemon = Daemon::start("");
    let mut c = Client::connect(&daemon.url());
    let token = c.events[0]["session"]["resume_token"]
        .as_str()
        .unwrap()
        .to_owned();
    answer_and_next(&mut c, "first answer");
    let id = c.session_id.clone();
    if signal == libc::SIGTERM {
        let (status, _) = daemon.stop(libc::SIGTERM, WAIT);
        assert_eq!(status.code(), Some(0));
        assert_eq!(c.read_to_end(), Ended::Closed(1012));
        assert!(
            daemon.journal(&id).is_suspended(),
            "{:#?}",
            daemon.journal(&id).records
        );
    } else {
        daemon.signal(libc::SIGKILL);
        daemon.wait_exit(WAIT);
        drop(c);
    }
    let daemon = daemon.restart();
    daemon.wait_for_log(&format!("session {id}: restored from its journal"));
    let mut c = connect_with(&daemon, &token);
    let again = until(&mut c, "session.created");
    assert_eq!(again["session"]["id"], id.as_str());
    assert_eq!(again["session"]["resume_token"], token.as_str());
    until(&mut c, "interview.resumed");
    let turn = until(&mut c, "response.done");
    let script = interviewd::script::Script::builtin();
    let text = turn["response"]["output"][0]["content"][0]["text"]
        .as_str()
        .unwrap();
    assert!(text.contains(&script.questions[1].text), "{text}");
    c.session_id = id.clone();
    c.answer_all("the rest of my answers, about tests and logs");
    let done = until(&mut c, "interview.assessment.completed");
    let report = full_report(&daemon, &done);
    let journal = ended_journal(&daemon, &id);
    let firsts = records(&journal, "item")
        .iter()
        .filter(|r| {
            r["role"] == "user"
                && r["text"]
                    .as_str()
                    .is_some_and(|t| t.starts_with("first answer"))
        })
        .count();
    assert_eq!(firsts, 1);
    assert_eq!(report["interview_complete"], true);
    assert_eq!(journal.end_reason(), Some("completed"));
}

#[test]
/// See `resumes_across_a_restart`: SIGTERM.
fn an_interview_resumes_after_sigterm_and_restart() {
    resumes_across_a_restart(libc::SIGTERM);
}

#[test]
/// See `resumes_across_a_restart`: SIGKILL.
fn an_interview_resumes_after_sigkill_and_restart() {
    resumes_across_a_restart(libc::SIGKILL);
}
