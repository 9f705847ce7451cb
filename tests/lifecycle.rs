//! Session lifecycle, assessment, durability, configuration and the command
//! line, all through the real `interviewd` binary.

mod common;

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;
use interviewd::journal::Transcript;
use serde_json::{json, Value};
use tungstenite::Message;

// ---------------------------------------------------------------------------
// Helpers local to this file.
// ---------------------------------------------------------------------------

/// Polls `f` until it yields a value; panics with `what` after [`WAIT`].
fn poll<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Starts a daemon with a `command` assessor running `script`, and takes a
/// two-answer interview with it into the assessment.
fn assessed_interview(dir: &Path, script: &str, assessment_extra: &str) -> (Daemon, Client) {
    let daemon = command_daemon(dir, script, assessment_extra);
    let mut c = Client::connect(&daemon.url());
    run_short_interview(&mut c, ["An answer.", "Another answer."]);
    (daemon, c)
}

/// Checks a failed assessment end to end: `interview.assessment.failed`
/// with a reason containing `needle`, close 1000, the journal's outcome
/// "failed", and no report on disk. Returns the journal.
fn assert_assessment_failed(daemon: &Daemon, c: &mut Client, needle: &str) -> Transcript {
    let failed = c.wait_for("interview.assessment.failed");
    let reason = failed["reason"].as_str().unwrap();
    assert!(reason.contains(needle), "{reason}");
    assert_eq!(c.read_to_end(), Ended::Closed(1000));
    let journal = ended_journal(daemon, &c.session_id);
    assert_eq!(records(&journal, "assessment")[0]["outcome"], "failed");
    assert!(!daemon.report_path(&c.session_id).exists());
    journal
}

/// A session whose `command` assessment will overrun its 500 ms timeout.
struct Overdue {
    daemon: Daemon,
    c: Client,
    /// In the assessor's `sleep` command line, for finding survivors.
    marker: String,
    _dir: tempfile::TempDir,
}

/// Runs an interview into a `command` assessment with `timeout = "500ms"`
/// (and `share_with_candidate = "full"`: a late report is delivered whole);
/// `script(pidfile, sleep)` gives the assessor's shell script, which must
/// write its pid to `pidfile` and run `sleep` (a 30 s sleep with a unique
/// marker). Returns once the script has started.
fn overdue_assessment(script: impl Fn(&str, &str) -> String) -> Overdue {
    let dir = tempfile::tempdir().unwrap();
    let marker = format!("sleep 30.{}", unique());
    let pidfile = dir.path().join("child.pid");
    // What the assessor prints, if it gets that far: `cat PIDFILE.report`.
    let (assessment, _) = assessment_file(dir.path(), "Delivered late.");
    std::fs::copy(&assessment, dir.path().join("child.pid.report")).unwrap();
    let script = script(&toml_unsafe_free(&pidfile.to_string_lossy()), &marker);
    let (daemon, c) = assessed_interview(
        dir.path(),
        &script,
        "timeout = \"500ms\"\nshare_with_candidate = \"full\"\n",
    );
    wait_for_pid_file(&pidfile);
    Overdue {
        daemon,
        c,
        marker,
        _dir: dir,
    }
}

/// Waits until an assessor script has written its pid file (whole line).
fn wait_for_pid_file(path: &Path) {
    poll("the assessor's pid file", || {
        std::fs::read_to_string(path)
            .ok()
            .filter(|s| s.ends_with('\n'))
    });
}

/// Waits until no process carries `marker` in its command line; panics
/// after [`WAIT`].
fn wait_until_gone(marker: &str) {
    poll(&format!("no process matching {marker:?}"), || {
        processes_matching(marker).is_empty().then_some(())
    });
}

/// Waits until the session's journal has an end line and returns it whole.
fn ended_journal(daemon: &Daemon, id: &str) -> Transcript {
    let path = daemon.journal_path(id);
    let deadline = Instant::now() + WAIT;
    loop {
        if let Ok(t) = interviewd::journal::read(&path) {
            if t.end_reason().is_some() {
                return t;
            }
        }
        if Instant::now() > deadline {
            panic!(
                "journal {} never got an end line; log:\n{}",
                path.display(),
                daemon.log()
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Waits until `needle` occurs at least `n` times in the daemon's log.
fn wait_for_log_count(daemon: &Daemon, needle: &str, n: usize) {
    let deadline = Instant::now() + WAIT;
    while daemon.log().matches(needle).count() < n {
        if Instant::now() > deadline {
            panic!(
                "log never contained {needle:?} {n} time(s); log:\n{}",
                daemon.log()
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A string unique to this test run, to recognise our own child processes.
fn unique() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{}{:09}", std::process::id(), nanos)
}

/// Writes a two-question interview script whose texts carry `tag`.
fn write_script(dir: &Path, tag: &str) -> PathBuf {
    let path = dir.join(format!("script-{tag}.toml"));
    let text = format!(
        "title = \"Lifecycle {tag}\"\n\
         greeting = \"Welcome to the {tag} interview.\"\n\
         closing = \"That was the last question of the {tag} interview.\"\n\
         [[questions]]\nid = \"alpha\"\ntext = \"{tag} question one: what do you build?\"\n\
         [[questions]]\nid = \"beta\"\ntext = \"{tag} question two: how do you test it?\"\n"
    );
    std::fs::write(&path, text).expect("write script");
    path
}

/// Writes the valid assessment a test `command` assessor prints for the
/// [`write_script`] script into `dir`. Returns the file's path, to `cat`,
/// and the assessment.
fn assessment_file(dir: &Path, summary: &str) -> (String, Value) {
    let script = interviewd::script::Script::load(Some(&write_script(dir, "cmd"))).unwrap();
    let assessment = valid_assessment(&script, summary);
    let path = dir.join("assessment.json");
    std::fs::write(&path, assessment.to_string()).unwrap();
    (toml_unsafe_free(&path.to_string_lossy()), assessment)
}

fn script_config(script: &Path) -> String {
    format!(
        "\n[interview]\nscript = {}\n",
        toml_string(&script.to_string_lossy())
    )
}

/// Answers both questions of a [`write_script`] script and waits for the
/// assessment to start.
fn run_short_interview(c: &mut Client, answers: [&str; 2]) {
    for a in answers {
        c.answer(a);
        c.send(json!({"type": "response.create"}));
        c.wait_for("response.done");
    }
    c.wait_for("interview.assessment.started");
}

/// A daemon with a `command` assessor running `sh -c script` and the short
/// two-question interview script.
fn command_daemon(dir: &Path, script: &str, assessment_extra: &str) -> Daemon {
    let interview = write_script(dir, "cmd");
    Daemon::start(&format!(
        "{}{}",
        command_assessor_config(script, assessment_extra),
        script_config(&interview)
    ))
}

/// Runs the binary to completion with a deadline; stdin is closed.
fn run_cli(args: &[&str]) -> Output {
    let child = Command::new(env!("CARGO_BIN_EXE_interviewd"))
        .args(args)
        .env_remove("JOURNAL_STREAM")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run interviewd");
    wait_output(child, &format!("interviewd {args:?}"))
}

fn wait_output(child: Child, what: &str) -> Output {
    let pid = child.id() as i32;
    let (tx, rx) = std::sync::mpsc::channel();
    let waiter = std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(WAIT) {
        Ok(out) => {
            waiter.join().unwrap();
            out.expect("wait for child")
        }
        Err(_) => {
            // SAFETY: kill(2) on our own child's pid; no memory preconditions.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            let _ = waiter.join();
            panic!("{what} did not exit within {WAIT:?}");
        }
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Attempts a WebSocket handshake and returns the HTTP status of a refusal
/// (or 101 when the upgrade succeeded).
fn upgrade_status(url: &str, addr: SocketAddr) -> u16 {
    let stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(WAIT)).unwrap();
    match tungstenite::client(url, stream) {
        Ok(_) => 101,
        Err(tungstenite::HandshakeError::Failure(tungstenite::Error::Http(resp))) => {
            resp.status().as_u16()
        }
        Err(e) => panic!("handshake failed unexpectedly: {e}"),
    }
}

// ---------------------------------------------------------------------------
// Assessment.
// ---------------------------------------------------------------------------

/// While a slow assessment runs, the client receives interview.keepalive at
/// about assessment.keepalive_interval with growing elapsed_ms, then the
/// command's assessment completed by the daemon into a valid report (also
/// written to disk), then close 1000.
#[test]
fn keepalives_flow_during_a_slow_assessment_then_the_report_arrives() {
    let dir = tempfile::tempdir().unwrap();
    let (assessment, expected) = assessment_file(dir.path(), "From the command.");
    let daemon = command_daemon(
        dir.path(),
        &format!("cat >/dev/null; sleep 2; cat {assessment}"),
        "keepalive_interval = \"300ms\"\n",
    );
    let mut c = Client::connect(&daemon.url());
    run_short_interview(&mut c, ["I build compilers.", "With property tests."]);
    let started = Instant::now();
    let mut keepalives: Vec<(Duration, u64)> = Vec::new();
    let completed = loop {
        let ev = c
            .next_event()
            .unwrap_or_else(|e| panic!("connection ended during the assessment: {e:?}"));
        match ev["type"].as_str().unwrap() {
            "interview.keepalive" => {
                assert_eq!(ev["phase"], "assessing", "{ev}");
                keepalives.push((started.elapsed(), ev["elapsed_ms"].as_u64().unwrap()));
            }
            "interview.assessment.completed" => break ev,
            other => panic!("unexpected event during the assessment: {other}: {ev}"),
        }
    };
    let total = started.elapsed();
    let n = keepalives.len();
    assert!(n >= 3, "only {n} keepalives in {total:?}: {keepalives:?}");
    // No burst: at most one per interval (plus slack) over the whole wait.
    let most = (total.as_millis() / 300) as usize + 2;
    assert!(n <= most, "{n} keepalives in {total:?}: {keepalives:?}");
    for w in keepalives.windows(2) {
        assert!(w[1].1 > w[0].1, "elapsed_ms not increasing: {keepalives:?}");
        assert!(
            w[1].1 - w[0].1 >= 100,
            "keepalives closer than the interval allows: {keepalives:?}"
        );
    }
    assert!(
        keepalives[n - 1].1 <= total.as_millis() as u64 + 500,
        "elapsed_ms ahead of the wall clock: {keepalives:?} total {total:?}"
    );
    let mut gaps: Vec<Duration> = keepalives.windows(2).map(|w| w[1].0 - w[0].0).collect();
    gaps.sort();
    let median = gaps[gaps.len() / 2];
    assert!(
        median >= Duration::from_millis(200) && median <= Duration::from_millis(1000),
        "median keepalive gap {median:?}: {keepalives:?}"
    );
    assert!(
        *gaps.last().unwrap() < Duration::from_millis(1500),
        "a keepalive gap far over the interval: {keepalives:?}"
    );

    assert_eq!(completed["session_id"], c.session_id.as_str());
    let report = &full_report(&daemon, &completed);
    assert_eq!(assessment_part(report), expected);
    assert_eq!(report["session_id"], c.session_id.as_str());
    assert_eq!(
        report["assessor"],
        json!({"kind": "command", "model": null})
    );
    assert_eq!(report["script_title"], "Lifecycle cmd");
    assert_eq!(report["interview_complete"], true);
    assert_eq!(c.read_to_end(), Ended::Closed(1000));

    let journal = ended_journal(&daemon, &c.session_id);
    let assessment = records(&journal, "assessment");
    assert_eq!(assessment.len(), 1, "{:#?}", journal.records);
    assert_eq!(assessment[0]["outcome"], "completed");
    assert_eq!(journal.end_reason(), Some("completed"));
}

/// A command assessor receives the whole transcript as JSON on stdin: the
/// session id and every answer with its question id.
#[test]
fn command_assessor_reads_the_transcript_as_json_on_stdin() {
    let dir = tempfile::tempdir().unwrap();
    let saved = dir.path().join("stdin.json");
    let (assessment, expected) = assessment_file(dir.path(), "Read from stdin.");
    let script = format!(
        "cat > {}; cat {assessment}",
        toml_unsafe_free(&saved.to_string_lossy())
    );
    let daemon = command_daemon(dir.path(), &script, "");
    let mut c = Client::connect(&daemon.url());
    run_short_interview(
        &mut c,
        [
            "First answer about compilers.",
            "Second answer about tests.",
        ],
    );
    let done = c.wait_for("interview.assessment.completed");
    assert_eq!(done["session_id"], c.session_id.as_str());
    assert_eq!(assessment_part(&full_report(&daemon, &done)), expected);
    assert_eq!(c.read_to_end(), Ended::Closed(1000));

    let input: Value = serde_json::from_slice(&std::fs::read(&saved).expect("stdin saved"))
        .expect("the assessor's stdin is JSON");
    assert_eq!(input["session_id"], c.session_id.as_str());
    let answers: Vec<(String, String)> = input["answers"]
        .as_array()
        .expect("answers array")
        .iter()
        .map(|a| {
            (
                a["question_id"].as_str().unwrap().to_owned(),
                a["text"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        answers,
        vec![
            ("alpha".into(), "First answer about compilers.".into()),
            ("beta".into(), "Second answer about tests.".into()),
        ]
    );
    assert_eq!(input["interview_complete"], true);
    let items = input["items"].as_array().expect("items array");
    assert!(
        items.iter().any(|i| i["role"] == "assistant"
            && i["text"].as_str().unwrap().contains("cmd question two")),
        "{items:#?}"
    );
}

/// The largest report a `command` assessor may print (just under 1 MiB)
/// reaches the client whole (`share_with_candidate = "full"`): the daemon's
/// write limits leave room for it.
#[test]
fn a_report_near_the_size_limit_is_delivered_whole() {
    let dir = tempfile::tempdir().unwrap();
    let filler = 1000 * 1000;
    // A valid assessment whose summary is `filler` x's: its text up to the
    // summary's value, then the x's, then the rest.
    let (_, assessment) = assessment_file(dir.path(), "@");
    let text = assessment.to_string();
    let (head, tail) = text.split_once('@').unwrap();
    std::fs::write(dir.path().join("head"), head).unwrap();
    std::fs::write(dir.path().join("tail"), tail).unwrap();
    let d = toml_unsafe_free(&dir.path().to_string_lossy());
    let script = format!(
        "cat >/dev/null; cat {d}/head; head -c {filler} /dev/zero | tr '\\0' x; cat {d}/tail"
    );
    let (daemon, mut c) =
        assessed_interview(dir.path(), &script, "share_with_candidate = \"full\"\n");
    let completed = c.wait_for("interview.assessment.completed");
    assert_eq!(completed["shared"], "full");
    assert_eq!(
        completed["report"]["summary"].as_str().map(str::len),
        Some(filler)
    );
    assert_valid_report(&completed["report"]);
    assert_eq!(completed["report"], full_report(&daemon, &completed));
    assert_eq!(c.read_to_end(), Ended::Closed(1000));
}

/// The candidate sees only what `assessment.share_with_candidate` allows.
/// For each of `full`, `summary` and `none`, a whole interview is assessed:
/// the report on disk is always whole and valid, and
/// `interview.assessment.completed` carries `shared` and the whole report,
/// exactly its summary view (session id and summary) or `null`. With
/// `summary` and `none`, no score, recommendation or question entry, nor
/// the words `questions`, `overall_score` or `recommendation`, is in
/// anything the client receives after the closing remark (checked to be
/// there with `full`).
#[test]
fn the_candidate_sees_only_what_share_with_candidate_allows() {
    const SUMMARY: &str = "Thank you for your time; we will be in touch.";
    const REASON: &str = "SCORED-FOR-THE-PANEL";
    for share in ["full", "summary", "none"] {
        let dir = tempfile::tempdir().unwrap();
        // Distinctive values, to look for in what the client receives.
        let (path, mut expected) = assessment_file(dir.path(), SUMMARY);
        expected["overall_score"] = json!(87);
        expected["recommendation"] = json!("strong_yes");
        for q in expected["questions"].as_array_mut().unwrap() {
            q["score"] = json!(87);
            q["reasons"] = json!([REASON]);
        }
        std::fs::write(&path, expected.to_string()).unwrap();
        // Slow enough for a few keepalives, which must not leak either.
        let daemon = command_daemon(
            dir.path(),
            &format!("cat >/dev/null; sleep 0.3; cat {path}"),
            &format!("keepalive_interval = \"100ms\"\nshare_with_candidate = \"{share}\"\n"),
        );
        let mut c = Client::connect(&daemon.url());
        run_short_interview(&mut c, ["I build compilers.", "With property tests."]);
        let completed = c.wait_for("interview.assessment.completed");
        assert_eq!(c.read_to_end(), Ended::Closed(1000), "{share}");

        let id = c.session_id.as_str();
        assert_eq!(completed["session_id"], id, "{share}: {completed:#}");
        assert_eq!(completed["shared"], share, "{share}: {completed:#}");
        let mut fields: Vec<&str> = completed
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .filter(|k| *k != "event_id")
            .collect();
        fields.sort();
        assert_eq!(
            fields,
            ["report", "session_id", "shared", "type"],
            "{share}: {completed:#}"
        );
        // On disk: whole and valid, whatever the candidate is shown.
        let report = full_report(&daemon, &completed);
        assert_eq!(assessment_part(&report), expected, "{share}");
        assert_eq!(report["session_id"], id);
        assert_eq!(report["interview_complete"], true);
        let delivered = &completed["report"];
        match share {
            "full" => assert_eq!(*delivered, report),
            "summary" => assert_eq!(*delivered, json!({"session_id": id, "summary": SUMMARY})),
            _ => assert_eq!(*delivered, Value::Null),
        }

        // Everything after the closing remark: assessment.started, the
        // keepalives, assessment.completed.
        let started = c
            .events
            .iter()
            .position(|e| e["type"] == "interview.assessment.started")
            .expect("assessment.started");
        let closing = c.events[..started]
            .iter()
            .rposition(|e| e["type"] == "response.done")
            .expect("the closing remark");
        assert!(
            c.events[closing]
                .to_string()
                .contains("last question of the cmd interview"),
            "{share}: not the closing remark: {:#}",
            c.events[closing]
        );
        let after = &c.events[closing + 1..];
        let text: String = after.iter().map(|e| format!("{e}\n")).collect();
        let leaks = [
            "questions",
            "question_id",
            "overall_score",
            "recommendation",
            "score",
            "strong_yes",
            REASON,
            "cmd question one",
        ];
        if share == "full" {
            // The control: the check below would see them.
            for needle in leaks {
                assert!(text.contains(needle), "{share}: no {needle:?} in:\n{text}");
            }
            continue;
        }
        for needle in leaks {
            assert!(
                !text.contains(needle),
                "{share}: {needle:?} reached the candidate:\n{text}"
            );
        }
        // No number at all but the keepalives' elapsed time: no score.
        fn numbers<'a>(v: &'a Value, key: &str, found: &mut Vec<(String, &'a Value)>) {
            match v {
                Value::Number(_) if key != "elapsed_ms" => found.push((key.to_owned(), v)),
                Value::Array(a) => a.iter().for_each(|x| numbers(x, key, found)),
                Value::Object(o) => o.iter().for_each(|(k, x)| numbers(x, k, found)),
                _ => {}
            }
        }
        let mut found = Vec::new();
        for e in after {
            numbers(e, "", &mut found);
        }
        assert!(
            found.is_empty(),
            "{share}: numbers reached the candidate: {found:?}"
        );
        if share == "none" {
            assert!(
                !text.contains(SUMMARY),
                "{share}: the summary was shown:\n{text}"
            );
        }
    }
}

/// Paths from tempfile contain no shell metacharacters; refuse any that do
/// rather than quoting them wrongly.
fn toml_unsafe_free(s: &str) -> String {
    assert!(
        s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-".contains(c)),
        "unexpected characters in {s}"
    );
    s.to_owned()
}

/// A command that exits non-zero fails the assessment: the client gets
/// interview.assessment.failed naming the status and close 1000; the
/// transcript stays on disk with outcome "failed"; no report is written.
#[test]
fn a_failing_command_is_reported_and_the_transcript_kept() {
    let dir = tempfile::tempdir().unwrap();
    let (daemon, mut c) = assessed_interview(dir.path(), "cat >/dev/null; exit 3", "");
    let journal = assert_assessment_failed(&daemon, &mut c, "status 3");
    assert!(
        !c.events
            .iter()
            .any(|e| e["type"] == "interview.assessment.completed"),
        "{:#?}",
        c.events
    );
    let assessment = records(&journal, "assessment");
    assert_eq!(assessment.len(), 1, "{:#?}", journal.records);
    assert!(assessment[0]["reason"]
        .as_str()
        .unwrap()
        .contains("status 3"));
    let answers: Vec<&str> = records(&journal, "item")
        .iter()
        .filter(|r| r["role"] == "user")
        .map(|r| r["text"].as_str().unwrap())
        .collect();
    assert_eq!(answers, ["An answer.", "Another answer."]);
    assert!(!daemon.report_path(&c.session_id).exists());
}

/// Output that is not JSON fails the assessment instead of being passed on.
#[test]
fn invalid_json_from_the_command_fails_the_assessment() {
    let dir = tempfile::tempdir().unwrap();
    let (daemon, mut c) = assessed_interview(dir.path(), "cat >/dev/null; echo 'score: seven'", "");
    assert_assessment_failed(&daemon, &mut c, "JSON");
}

/// An assessment over assessment.timeout is failed with a reason naming the
/// timeout, its child process group is killed, and the session ends.
#[test]
fn a_timed_out_assessment_fails_and_its_child_is_killed() {
    let started = Instant::now();
    // The child really runs (so "no survivor" below is not vacuous).
    let Overdue {
        daemon,
        mut c,
        marker,
        ..
    } = overdue_assessment(|pidfile, sleep| {
        format!("echo $$ > {pidfile}; cat >/dev/null; {sleep}; cat {pidfile}.report")
    });
    let failed = c.wait_for("interview.assessment.failed");
    let took = started.elapsed();
    let reason = failed["reason"].as_str().unwrap();
    assert!(
        reason.contains("500ms") && reason.contains("did not finish"),
        "{reason}"
    );
    assert!(took < Duration::from_secs(5), "failure after {took:?}");
    assert_eq!(c.read_to_end(), Ended::Closed(1000));
    wait_until_gone(&marker);
    let journal = ended_journal(&daemon, &c.session_id);
    let assessment = records(&journal, "assessment");
    assert_eq!(assessment[0]["outcome"], "failed");
    // Measured by the daemon: the job was not given up before its time.
    let ran = assessment[0]["duration_ms"].as_u64().unwrap();
    assert!(ran >= 500, "assessment failed after {ran} ms");
    assert_eq!(journal.end_reason(), Some("error"));
}

/// A timed-out assessor that still delivers its report when told to stop
/// (SIGTERM) within the grace gets that report used: delivered, on disk,
/// journaled as completed.
#[test]
fn a_report_delivered_on_sigterm_after_the_timeout_is_used() {
    // `_dir` holds the report the trap prints: keep it.
    let Overdue {
        daemon,
        mut c,
        marker,
        _dir,
    } = overdue_assessment(|pidfile, sleep| {
        format!(
            "trap 'cat {pidfile}.report; exit 0' TERM; cat >/dev/null; echo $$ > {pidfile}; {sleep} & wait"
        )
    });
    let completed = c.wait_for("interview.assessment.completed");
    assert_eq!(completed["session_id"], c.session_id.as_str());
    assert_eq!(completed["shared"], "full");
    assert_valid_report(&completed["report"]);
    assert_eq!(completed["report"]["summary"], "Delivered late.");
    assert_eq!(c.read_to_end(), Ended::Closed(1000));
    let on_disk = read_valid_report(&daemon.report_path(&c.session_id));
    assert_eq!(on_disk, completed["report"]);
    let journal = ended_journal(&daemon, &c.session_id);
    assert_eq!(records(&journal, "assessment")[0]["outcome"], "completed");
    assert_eq!(journal.end_reason(), Some("completed"));
    wait_until_gone(&marker);
}

/// How a test client leaves.
#[derive(Clone, Copy, Debug)]
enum Leave {
    /// Closes its socket without a close frame (a crash, a lost network).
    DropTcp,
    /// Sends a close frame first.
    CloseFrame,
    /// Keeps the connection open but stops reading (a stuck tab, a client
    /// behind a stalled proxy), so the daemon's writes stall.
    StopReading,
}

/// The send timeout the `Leave` tests run with, so that a client that
/// stops reading is let go quickly.
const SEND_TIMEOUT: &str = "300ms";

/// The clients here flood requests without reading: the rate limit is
/// lifted so that the send timeout, not the rate limit, ends them.
fn send_timeout_config() -> String {
    format!(
        "[limits]\nsend_timeout = \"{SEND_TIMEOUT}\"\nevents_per_second = 1000000\nevents_burst = 1000000\n"
    )
}

/// Makes the client leave; returns it when it is still connected (it must
/// stay so until the test ends).
fn leave(mut c: Client, how: Leave, daemon: &Daemon) -> Option<Client> {
    match how {
        Leave::DropTcp => drop(c),
        Leave::CloseFrame => {
            c.ws.close(None).expect("send close");
            let end = c.read_to_end();
            assert!(matches!(end, Ended::Closed(_) | Ended::Dropped), "{end:?}");
        }
        Leave::StopReading => {
            stop_reading(&mut c, daemon);
            return Some(c);
        }
    }
    None
}

/// Asks for the client's last item over and over without reading the
/// answers, until the daemon's writes stall past `limits.send_timeout` and
/// it lets the client go.
fn stop_reading(c: &mut Client, daemon: &Daemon) {
    let item = c
        .events
        .iter()
        .rev()
        .find(|e| e["type"] == "conversation.item.done")
        .map(|e| e["item"]["id"].clone())
        .expect("the client has an item to ask for");
    let retrieve =
        Message::text(json!({"type": "conversation.item.retrieve", "item_id": item}).to_string());
    let needle = format!("client did not read for {SEND_TIMEOUT}");
    let deadline = Instant::now() + WAIT;
    'flood: while !daemon.log().contains(&needle) {
        assert!(
            Instant::now() < deadline,
            "the daemon never gave up on a client that does not read; log:\n{}",
            daemon.log()
        );
        for _ in 0..200 {
            // Fails once the daemon has let go of the connection.
            if c.ws.send(retrieve.clone()).is_err() {
                break 'flood;
            }
        }
    }
    daemon.wait_for_log(&needle);
}

fn assessment_survives(how: Leave) {
    let dir = tempfile::tempdir().unwrap();
    // The assessor finishes once the test opens the gate, after the client
    // has left, so that the client leaves during the assessment however
    // slow the machine is (bounded: 30 s).
    let gate = dir.path().join("gate");
    let (assessment, expected) = assessment_file(dir.path(), "Finished without the client.");
    let assessor = format!(
        "cat >/dev/null; i=0; while [ ! -e {gate} ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done; \
         cat {assessment}",
        gate = toml_unsafe_free(&gate.to_string_lossy())
    );
    let (daemon, c) = assessed_interview(
        dir.path(),
        &assessor,
        &format!("keepalive_interval = \"100ms\"\n{}", send_timeout_config()),
    );
    let id = c.session_id.clone();
    let _still_connected = leave(c, how, &daemon);
    std::fs::write(&gate, "").unwrap();
    let report_path = daemon.report_path(&id);
    let report: Value = poll("the report file", || {
        std::fs::read(&report_path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
    });
    assert_valid_report(&report);
    assert_eq!(assessment_part(&report), expected);
    let journal = ended_journal(&daemon, &id);
    let kinds: Vec<&str> = journal
        .records
        .iter()
        .map(|r| r["kind"].as_str().unwrap())
        .collect();
    let gone = kinds.iter().position(|k| *k == "client_gone");
    let assessed = kinds.iter().position(|k| *k == "assessment");
    assert!(
        matches!((gone, assessed), (Some(g), Some(a)) if g < a),
        "{how:?}: expected client_gone, then the assessment record: {kinds:?}; log:\n{}",
        daemon.log()
    );
    assert_eq!(records(&journal, "assessment")[0]["outcome"], "completed");
    assert_eq!(journal.end_reason(), Some("completed"));
}

/// A client whose TCP connection drops (no close frame) during the
/// assessment does not cancel it: the journal records client_gone, the
/// completed assessment and end "completed", and the report is written.
#[test]
fn the_assessment_survives_the_client_dropping_its_connection() {
    assessment_survives(Leave::DropTcp);
}

/// Same as above for a client that leaves with a close frame.
#[test]
fn the_assessment_survives_the_client_closing() {
    assessment_survives(Leave::CloseFrame);
}

/// Same as above for a client that stays connected but stops reading: once
/// a write has stalled for `limits.send_timeout` the client is let go and
/// the assessment carries on to its report.
#[test]
fn the_assessment_survives_a_client_that_stops_reading() {
    assessment_survives(Leave::StopReading);
}

// ---------------------------------------------------------------------------
// Ending sessions.
// ---------------------------------------------------------------------------

/// A short resume window, so that a client that leaves is not waited for
/// long (see tests/resume.rs for what happens within it).
const SHORT_RESUME: &str = "[sessions]\nresume_window = \"200ms\"\n";

fn leaves_mid_interview(how: Leave, end_reason: &str) {
    let daemon = Daemon::start(&format!("{}{SHORT_RESUME}", send_timeout_config()));
    let mut c = Client::connect(&daemon.url());
    c.answer("I worked on a payments service.");
    let id = c.session_id.clone();
    let _still_connected = leave(c, how, &daemon);
    let journal = ended_journal(&daemon, &id);
    assert_eq!(
        journal.end_reason(),
        Some(end_reason),
        "{how:?}; log:\n{}",
        daemon.log()
    );
    let answers = records(&journal, "item")
        .iter()
        .filter(|r| r["role"] == "user")
        .count();
    assert_eq!(answers, 1);
    // First suspended (resumable), then ended when nobody came back.
    assert_eq!(
        records(&journal, "suspended").len(),
        1,
        "{:#?}",
        journal.records
    );
}

/// A client whose TCP connection drops mid-interview (no close frame)
/// suspends its session; not resumed, it ends with end reason client_closed.
#[test]
fn a_client_dropping_its_connection_mid_interview_ends_with_client_closed() {
    leaves_mid_interview(Leave::DropTcp, "client_closed");
}

/// A client that sends a close frame mid-interview suspends its session;
/// not resumed, it ends with end reason client_closed.
#[test]
fn a_client_closing_mid_interview_ends_with_client_closed() {
    leaves_mid_interview(Leave::CloseFrame, "client_closed");
}

/// A client that stops reading mid-interview is let go once a write has
/// stalled for `limits.send_timeout`: the session is suspended, then ends
/// with end reason error, and what the client answered stays in the
/// journal.
#[test]
fn a_client_that_stops_reading_mid_interview_is_let_go() {
    leaves_mid_interview(Leave::StopReading, "error");
}

/// The sweeper lets go of a client that holds the connection open but
/// sends nothing for sessions.idle_timeout (socket closed, session
/// suspended, then journal "stale" when not resumed), while a client that
/// keeps sending is left alone.
#[test]
fn the_sweeper_removes_silent_clients_but_not_active_ones() {
    let daemon = Daemon::start(
        "[sessions]\nidle_timeout = \"500ms\"\nsweep_interval = \"100ms\"\nping_interval = \"400ms\"\nresume_window = \"200ms\"\n",
    );
    let mut silent = Client::connect(&daemon.url());
    let mut active = Client::connect(&daemon.url());
    let start = Instant::now();
    let deadline = start + WAIT;
    // Keep the active client busy until the silent one is gone and at least
    // three idle timeouts have passed.
    loop {
        active
            .ws
            .send(Message::Ping(Default::default()))
            .expect("active client send");
        let silent_gone = interviewd::journal::read(&daemon.journal_path(&silent.session_id))
            .map(|t| t.end_reason().is_some())
            .unwrap_or(false);
        if silent_gone && start.elapsed() >= Duration::from_millis(1500) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the silent session was never swept; log:\n{}",
            daemon.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let journal = daemon.journal(&silent.session_id);
    assert_eq!(journal.end_reason(), Some("stale"));
    daemon.wait_for_log(&format!("session {} ended: stale", silent.session_id));
    silent
        .ws
        .get_ref()
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let end = silent.read_to_end();
    assert!(
        matches!(end, Ended::Dropped | Ended::Closed(_)),
        "the stale client's socket was not closed: {end:?}"
    );

    // The active client is still served.
    let turn = active.next_turn();
    assert_eq!(turn["response"]["status"], "completed", "{turn}");
    assert!(
        interviewd::journal::read(&daemon.journal_path(&active.session_id))
            .unwrap()
            .end_reason()
            .is_none(),
        "the active session was ended"
    );
}

/// The server pings every sessions.ping_interval, and a client that only
/// answers those pings (automatic pongs) counts as alive for the sweeper.
#[test]
fn the_server_pings_and_pongs_keep_a_quiet_client_alive() {
    let daemon = Daemon::start(
        "[sessions]\nping_interval = \"100ms\"\nidle_timeout = \"500ms\"\nsweep_interval = \"100ms\"\n",
    );
    let mut c = Client::connect(&daemon.url());
    c.ws.get_ref()
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let start = Instant::now();
    let mut pings = 0;
    // Read for three idle timeouts; tungstenite answers each ping.
    while start.elapsed() < Duration::from_millis(1500) {
        match c.ws.read() {
            Ok(Message::Ping(_)) => pings += 1,
            Ok(other) => panic!("unexpected message while idle: {other:?}"),
            Err(e) => panic!(
                "connection ended after {pings} pings: {e}; log:\n{}",
                daemon.log()
            ),
        }
    }
    assert!(pings >= 3, "only {pings} pings in 1.5 s");
    assert!(pings <= 1500 / 100 + 2, "{pings} pings in 1.5 s");
    let turn = c.next_turn();
    assert_eq!(turn["response"]["status"], "completed", "{turn}");
    assert!(!daemon
        .log()
        .contains(&format!("session {} ended", c.session_id)));
}

// ---------------------------------------------------------------------------
// Disk errors.
// ---------------------------------------------------------------------------

/// A transcript directory that cannot be written is reported to the client
/// (error transcript_unavailable, close 1011) without stopping the daemon;
/// once the directory is back, new sessions work.
#[test]
fn an_unwritable_transcript_directory_is_reported_not_fatal() {
    let mut daemon = Daemon::start("");
    let sessions = daemon.state_dir().join("sessions");
    std::fs::remove_dir_all(&sessions).unwrap();
    std::fs::write(&sessions, b"not a directory").unwrap();

    let mut refused = Client::connect_raw(&daemon.url());
    let error = refused.wait_for("error");
    assert_eq!(error["error"]["code"], "transcript_unavailable", "{error}");
    assert_eq!(refused.read_to_end(), Ended::Closed(1011));
    assert!(
        !refused.events.iter().any(|e| e["type"] == "response.done"),
        "an unrecorded interview was started: {:#?}",
        refused.events
    );
    daemon.wait_for_log("cannot open transcript");

    std::fs::remove_file(&sessions).unwrap();
    std::fs::create_dir(&sessions).unwrap();
    let mut c = Client::connect(&daemon.url());
    c.answer("My answer, durably recorded.");
    let journal = daemon.journal(&c.session_id);
    assert!(records(&journal, "item")
        .iter()
        .any(|r| r["text"] == "My answer, durably recorded."));
    drop(c);
    let (status, _) = daemon.stop(libc::SIGTERM, WAIT);
    assert_eq!(status.code(), Some(0), "log:\n{}", daemon.log());
}

// ---------------------------------------------------------------------------
// Configuration reload.
// ---------------------------------------------------------------------------

/// SIGHUP applies a changed script and limits to new sessions only; a live
/// session keeps its script; an invalid file is refused and the previous
/// configuration stays in force.
#[test]
fn sighup_reloads_for_new_sessions_and_refuses_bad_files() {
    let dir = tempfile::tempdir().unwrap();
    let old_script = write_script(dir.path(), "ALPHA");
    let new_script = write_script(dir.path(), "BRAVO");
    let mut daemon = Daemon::start(&script_config(&old_script));

    let mut before = Client::connect(&daemon.url());
    assert!(
        before.last_turn_text().contains("ALPHA question one"),
        "{}",
        before.last_turn_text()
    );

    std::fs::write(
        daemon.config_path(),
        format!(
            "{}\n[limits]\nmax_sessions = 3\n",
            script_config(&new_script)
        ),
    )
    .unwrap();
    daemon.signal(libc::SIGHUP);
    daemon.wait_for_log("configuration reloaded");
    let log = daemon.log();
    let line = log
        .lines()
        .find(|l| l.contains("configuration reloaded"))
        .unwrap();
    assert!(
        line.contains("interview.script") && line.contains("limits.max_sessions"),
        "{line}"
    );

    let after = Client::connect(&daemon.url());
    assert!(
        after
            .last_turn_text()
            .contains("Welcome to the BRAVO interview"),
        "{}",
        after.last_turn_text()
    );
    // The session that started before the reload keeps its script.
    before.answer("An answer for the old script.");
    before.next_turn();
    assert!(
        before.last_turn_text().contains("ALPHA question two"),
        "{}",
        before.last_turn_text()
    );

    // An invalid file is refused; the reloaded configuration stays.
    std::fs::write(daemon.config_path(), "[limits]\nmax_sesions = 1\n").unwrap();
    daemon.signal(libc::SIGHUP);
    wait_for_log_count(&daemon, "reload refused", 1);
    let log = daemon.log();
    let refused = &log[log.find("reload refused").unwrap()..];
    assert!(refused.contains("max_sesions"), "{refused}");
    let third = Client::connect(&daemon.url());
    assert!(
        third.last_turn_text().contains("BRAVO"),
        "{}",
        third.last_turn_text()
    );
    // limits.max_sessions = 3 from the accepted reload is still in force.
    assert_eq!(upgrade_status(&daemon.url(), daemon.addr), 503);

    drop((before, after, third));
    let (status, _) = daemon.stop(libc::SIGTERM, WAIT);
    assert_eq!(status.code(), Some(0), "log:\n{}", daemon.log());
}

/// A reload that changes server.listen is refused (it needs a restart) and
/// the daemon keeps serving on its address.
#[test]
fn sighup_refuses_a_changed_listen_address() {
    let mut daemon = Daemon::start_listening_as_configured("[server]\nlisten = \"127.0.0.1:0\"\n");
    std::fs::write(daemon.config_path(), "[server]\nlisten = \"127.0.0.1:1\"\n").unwrap();
    daemon.signal(libc::SIGHUP);
    daemon.wait_for_log("reload refused");
    assert!(daemon.log().contains("server.listen"), "{}", daemon.log());
    assert!(!daemon.log().contains("configuration reloaded"));
    let c = Client::connect(&daemon.url());
    assert!(c.session_id.starts_with("sess_"));
    assert!(daemon.journal_path(&c.session_id).exists());
    drop(c);
    let (status, _) = daemon.stop(libc::SIGTERM, WAIT);
    assert_eq!(status.code(), Some(0), "log:\n{}", daemon.log());
}

// ---------------------------------------------------------------------------
// Command line.
// ---------------------------------------------------------------------------

/// --help, --version and `serve --help` succeed and say what they should; an
/// unknown subcommand is a usage error (status 2).
#[test]
fn help_and_version() {
    let help = run_cli(&["--help"]);
    assert_eq!(help.status.code(), Some(0));
    let out = text(&help.stdout);
    for sub in ["serve", "client", "check-config"] {
        assert!(out.contains(sub), "{out}");
    }
    let version = run_cli(&["--version"]);
    assert_eq!(version.status.code(), Some(0));
    assert!(
        text(&version.stdout).contains(env!("CARGO_PKG_VERSION")),
        "{}",
        text(&version.stdout)
    );
    let serve_help = run_cli(&["serve", "--help"]);
    assert_eq!(serve_help.status.code(), Some(0));
    let out = text(&serve_help.stdout);
    for flag in ["--config", "--listen", "--state-dir", "--log-level"] {
        assert!(out.contains(flag), "{out}");
    }
    let bogus = run_cli(&["no-such-command"]);
    assert_eq!(bogus.status.code(), Some(2));
}

/// check-config prints the effective configuration (every section, the
/// file's values applied) for a valid file, and fails with status 1 and a
/// message naming the key for an unknown key, a bad duration, a zero
/// duration or a missing file.
#[test]
fn check_config_prints_the_effective_config_or_names_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.toml");
    std::fs::write(
        &good,
        "[limits]\nmax_sessions = 7\n[sessions]\nping_interval = \"250ms\"\n",
    )
    .unwrap();
    let out = run_cli(&["check-config", good.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let printed = text(&out.stdout);
    let table: toml::Table = toml::from_str(&printed).expect("check-config prints TOML");
    for section in [
        "server",
        "interview",
        "assessment",
        "sessions",
        "limits",
        "shutdown",
    ] {
        assert!(table.contains_key(section), "no [{section}] in:\n{printed}");
    }
    let effective = interviewd::config::Config::parse(&printed).expect("printed config is valid");
    assert_eq!(effective.limits.max_sessions, 7);
    assert_eq!(
        effective.sessions.ping_interval.0,
        Duration::from_millis(250)
    );
    assert_eq!(
        effective.sessions.idle_timeout,
        interviewd::config::Config::default().sessions.idle_timeout
    );

    let cases: [(&str, &str, &[&str]); 3] = [
        (
            "unknown.toml",
            "[sessions]\nidle_timout = \"3s\"\n",
            &["idle_timout"],
        ),
        (
            "duration.toml",
            "[assessment]\ntimeout = \"soon\"\n",
            &["timeout", "soon"],
        ),
        (
            "zero.toml",
            "[shutdown]\ndeadline = \"0s\"\n",
            &["shutdown.deadline"],
        ),
    ];
    for (name, body, needles) in cases {
        let path = dir.path().join(name);
        std::fs::write(&path, body).unwrap();
        let out = run_cli(&["check-config", path.to_str().unwrap()]);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{name}: {err}");
        for n in needles {
            assert!(err.contains(n), "{name}: {err:?} does not name {n}");
        }
        assert!(!err.contains("panicked"), "{err}");
        assert!(out.stdout.is_empty(), "{name}: printed a config anyway");
    }
    let missing = dir.path().join("missing.toml");
    let out = run_cli(&["check-config", missing.to_str().unwrap()]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("missing.toml"), "{err}");
}

/// `serve` with an invalid configuration file exits non-zero with a message
/// naming the key, without serving.
#[test]
fn serve_refuses_an_invalid_config() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[limits]\nmax_sesions = 3\n").unwrap();
    let state = dir.path().join("state");
    let out = run_cli(&[
        "serve",
        "--config",
        bad.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--state-dir",
        state.to_str().unwrap(),
    ]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("max_sesions"), "{err}");
    assert!(!err.contains("listening on"), "{err}");
}

/// `serve` on an address already in use exits 1 with a message naming the
/// address, not a panic.
#[test]
fn serve_on_a_busy_address_fails_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let state = dir.path().join("state");
    let out = run_cli(&[
        "serve",
        "--listen",
        &addr,
        "--state-dir",
        state.to_str().unwrap(),
    ]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&addr) && err.contains("cannot listen"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    drop(taken);
}

/// Waits for the terminal client to exit 0 and returns what it printed.
fn terminal_client_stdout(child: Child) -> String {
    let out = wait_output(child, "interviewd client");
    let stdout = text(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout:\n{stdout}\nstderr:\n{}",
        text(&out.stderr)
    );
    stdout
}

/// The session id the terminal client printed (`Connected (ID).`).
fn terminal_client_session_id(stdout: &str) -> String {
    stdout
        .split("Connected (")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .unwrap_or_else(|| panic!("no session id printed:\n{stdout}"))
        .to_owned()
}

/// The terminal client runs a whole interview from piped stdin and prints
/// the questions, the assessment progress and what it is shown of the
/// report, then exits 0: for `share_with_candidate = "full"` the report
/// (overall score, summary, every question's score), for `"summary"` the
/// summary alone, for `"none"` only that the interview was assessed.
#[test]
fn the_terminal_client_takes_a_whole_interview() {
    let script = interviewd::script::Script::builtin();
    // Long enough for every question's min_words: no follow-ups.
    let answer = "I designed and built a project with my team, wrote tests, read the logs \
                  and metrics, used a hash map for lookup and a tree for ordered range \
                  iteration, prevented a race on shared state with a mutex, reviewed code \
                  for readability and correctness, and learned from documentation and \
                  practice on a side project that we shipped to users.";
    assert!(answer.split_whitespace().count() >= 40);
    for share in ["full", "summary", "none"] {
        let daemon = Daemon::start(&format!(
            "[assessment]\nshare_with_candidate = \"{share}\"\n"
        ));
        let mut child = spawn_terminal_client(&daemon.url());
        {
            let mut stdin = child.stdin.take().unwrap();
            for _ in &script.questions {
                writeln!(stdin, "{answer}").unwrap();
            }
        } // closes stdin
        let stdout = terminal_client_stdout(child);
        assert!(stdout.contains(&script.questions[0].text), "{stdout}");
        assert!(
            stdout.contains(&script.questions[script.questions.len() - 1].text),
            "{stdout}"
        );
        assert!(stdout.contains("Generating your assessment"), "{stdout}");
        assert!(stdout.contains("== Assessment =="), "{stdout}");
        let id = terminal_client_session_id(&stdout);
        let report = read_valid_report(&daemon.report_path(&id));
        let summary = report["summary"].as_str().unwrap();
        let shown = &stdout[stdout.find("== Assessment ==").unwrap()..];
        match share {
            "full" => {
                assert!(shown.contains("Overall:"), "{share}: {stdout}");
                assert!(shown.contains(summary), "{share}: {stdout}");
                for q in &script.questions {
                    assert!(shown.contains(&q.id), "{share}: {}: {stdout}", q.id);
                }
            }
            "summary" => {
                assert_eq!(
                    shown.trim_end(),
                    format!("== Assessment ==\n{summary}"),
                    "{share}: {stdout}"
                );
            }
            _ => {
                assert!(!shown.contains(summary), "{share}: {stdout}");
                assert!(!shown.contains("Overall:"), "{share}: {stdout}");
                assert!(shown.contains("assessed"), "{share}: {stdout}");
            }
        }
    }
}

/// A candidate who thinks longer than `sessions.idle_timeout` before
/// answering is not swept: the terminal client answers the server's pings
/// while it waits for the keyboard.
#[test]
fn the_terminal_client_stays_alive_while_the_candidate_thinks() {
    let daemon = Daemon::start(
        "[sessions]\nidle_timeout = \"400ms\"\nsweep_interval = \"100ms\"\nping_interval = \"100ms\"\n",
    );
    let mut child = spawn_terminal_client(&daemon.url());
    let mut stdin = child.stdin.take().unwrap();
    daemon.wait_for_log("started for");
    // The candidate's pause is the stimulus here: three idle timeouts.
    std::thread::sleep(Duration::from_millis(1200));
    assert!(
        !daemon.log().contains("stale"),
        "swept while thinking:\n{}",
        daemon.log()
    );
    writeln!(
        stdin,
        "After some thought: I built and shipped a project with my team."
    )
    .unwrap();
    writeln!(stdin, "/finish").unwrap();
    drop(stdin);
    let stdout = terminal_client_stdout(child);
    // The default `share_with_candidate = "summary"`: the summary alone,
    // not the scored report.
    let report = read_valid_report(&daemon.report_path(&terminal_client_session_id(&stdout)));
    assert!(
        stdout.contains(report["summary"].as_str().unwrap()),
        "{stdout}"
    );
    assert!(!stdout.contains("Overall:"), "{stdout}");
    assert!(!daemon.log().contains("stale"), "{}", daemon.log());
}

/// At startup the daemon logs the open-file limit it runs with, and the
/// number it logs is the process's real soft limit.
#[test]
fn the_open_file_limit_is_logged_at_start() {
    let daemon = Daemon::start("");
    daemon.wait_for_log("open-file limit");
    let log = daemon.log();
    let line = log.lines().find(|l| l.contains("open-file limit")).unwrap();
    let logged: u64 = line
        .split_whitespace()
        .last()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no number at the end of {line:?}"));
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", daemon.pid())).unwrap();
    let soft: u64 = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|n| n.parse().ok())
        .expect("soft limit in /proc/PID/limits");
    assert_eq!(logged, soft, "{line}");
}

/// At a terminal, a pasted two-line answer is one answer: the transcript
/// holds it whole, as one candidate item, not two answers of which the
/// second would arrive before the interviewer's reply to the first.
#[test]
fn a_pasted_multi_line_answer_is_one_answer_at_a_terminal() {
    use std::os::fd::{FromRawFd, OwnedFd};
    let daemon = Daemon::start("");
    let (mut master, slave) = {
        let (mut master, mut slave) = (0, 0);
        // SAFETY: openpty writes two descriptors into the out-parameters;
        // the name, termios and winsize pointers may be null.
        let r = unsafe {
            libc::openpty(
                &mut master,
                &mut slave,
                std::ptr::null_mut(),
                std::ptr::null(),
                std::ptr::null(),
            )
        };
        assert_eq!(r, 0, "openpty: {}", std::io::Error::last_os_error());
        // SAFETY: both descriptors were just opened and are owned by no one else.
        unsafe {
            (
                std::fs::File::from_raw_fd(master),
                OwnedFd::from_raw_fd(slave),
            )
        }
    };
    let child = spawn_terminal_client_with(&daemon.url(), Stdio::from(slave));
    daemon.wait_for_log("started for");
    // One write, as a terminal delivers a paste.
    let pasted = "I built the storage layer.\nThen I shipped it with my team.";
    master.write_all(format!("{pasted}\n").as_bytes()).unwrap();
    let deadline = Instant::now() + WAIT;
    let id = loop {
        let sessions = daemon.state_dir().join("sessions");
        let found = std::fs::read_dir(&sessions).ok().and_then(|entries| {
            entries.flatten().find_map(|e| {
                let text = std::fs::read(e.path()).ok()?;
                let t = interviewd::journal::parse(&text).ok()?;
                let answered = records(&t, "item").iter().any(|r| r["role"] == "user");
                answered.then(|| e.path().file_stem().unwrap().to_string_lossy().into_owned())
            })
        });
        if let Some(id) = found {
            break id;
        }
        assert!(Instant::now() < deadline, "no answer was journaled");
        std::thread::sleep(Duration::from_millis(20));
    };
    master.write_all(b"/finish\n").unwrap();
    let stdout = terminal_client_stdout(child);
    assert_eq!(terminal_client_session_id(&stdout), id);
    let t = interviewd::journal::parse(&std::fs::read(daemon.journal_path(&id)).unwrap()).unwrap();
    let answers: Vec<&str> = records(&t, "item")
        .iter()
        .filter(|r| r["role"] == "user")
        .map(|r| r["text"].as_str().unwrap())
        .collect();
    assert_eq!(answers, vec![pasted], "{stdout}");
}
