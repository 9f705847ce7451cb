//! The candidate's page (web/) in a real browser: Debian's headless
//! Chromium, driven by selenium from tests/browser/drive.py (one scenario
//! per test), against the real binary, and for voice against the mock
//! Realtime API of tests/peer (mock_realtime.md) through the relay.
//!
//! tests/browser/setup.sh installs chromium, chromium-driver, espeak-ng and
//! sox from Debian's packages (once; quiet when they are there); selenium
//! comes with the Python peer (tests/peer/requirements.txt). The fake
//! microphone plays speech made by espeak-ng. Screenshots of each end state
//! go to target/browser-artifacts/. One browser runs at a time (the audio
//! tests keep real time), and every wait has a deadline.

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use common::mock::Mock;
use common::*;
use interviewd::script::Script;
use serde_json::Value;

/// The key the relay is given (the mock checks it).
const KEY: &str = "sk-browser-test-0123456789";

/// Bytes in one microphone chunk: 40 ms of 24 kHz PCM16 mono.
const CHUNK_BYTES: u64 = 24_000 * 2 * 40 / 1000;

/// A scenario's whole run, browser start to end, at most.
const SCENARIO_DEADLINE: Duration = Duration::from_secs(90);

/// One test at a time, its daemon and mock included: the audio scenarios
/// run on real time, and two Chromiums (or a Chromium and the mocks'
/// Python starting up) on two cores would make their timing a matter of
/// luck.
static ONE_BROWSER: Mutex<()> = Mutex::new(());

fn one_browser() -> MutexGuard<'static, ()> {
    ONE_BROWSER.lock().unwrap_or_else(|e| e.into_inner())
}

/// The programs the scenarios need, from Debian's packages.
const TOOLS: [&str; 4] = [
    "/usr/bin/chromium",
    "/usr/bin/chromedriver",
    "/usr/bin/espeak-ng",
    "/usr/bin/sox",
];

/// Chromium, chromedriver, espeak-ng and sox (tests/browser/setup.sh, once,
/// under the set-up lock), and the peer's python, which has selenium; or
/// `None` when they are missing and cannot be installed (not root): the
/// test then says why it skips, or fails with INTERVIEWD_REQUIRE_ROOT_TESTS=1.
fn browser_python(test: &str) -> Option<PathBuf> {
    let missing: Vec<&str> = TOOLS
        .into_iter()
        .filter(|t| !Path::new(t).exists())
        .collect();
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if !missing.is_empty() && !root {
        let why = format!(
            "{} missing, and installing them (tests/browser/setup.sh) needs root",
            missing.join(", ")
        );
        if std::env::var("INTERVIEWD_REQUIRE_ROOT_TESTS").as_deref() == Ok("1") {
            panic!("{test}: {why}, and INTERVIEWD_REQUIRE_ROOT_TESTS=1");
        }
        eprintln!("skipping {test}: {why}");
        return None;
    }
    install_peer("tests/browser/setup.sh", "browser-deps");
    Some(peer_python())
}

fn artifacts() -> PathBuf {
    let dir = repo().join("target").join("browser-artifacts");
    std::fs::create_dir_all(&dir).expect("target/browser-artifacts");
    dir
}

fn drive_command(python: &Path, scenario: &str, url: &str, extra: &[String]) -> Command {
    let mut cmd = Command::new(python);
    cmd.arg(repo().join("tests/browser/drive.py"))
        .arg(scenario)
        .arg("--url")
        .arg(url)
        .arg("--artifacts")
        .arg(artifacts())
        .args(extra)
        // Selenium must not look for drivers or browsers on the network.
        .env("SE_OFFLINE", "true")
        .env("SE_AVOID_STATS", "true");
    cmd
}

/// The `RESULT` line of a drive.py run; panics with its output (and
/// `context()`) if it failed.
fn parse_result(
    scenario: &str,
    out: (std::process::ExitStatus, String, String),
    context: &dyn Fn() -> String,
) -> Value {
    let (status, stdout, stderr) = out;
    let line = stdout.lines().rev().find_map(|l| l.strip_prefix("RESULT "));
    match (status.success(), line) {
        (true, Some(line)) => serde_json::from_str(line).expect("RESULT is JSON"),
        _ => panic!(
            "browser scenario {scenario} failed ({status}); screenshots in {}\nstderr:\n{stderr}\nstdout:\n{stdout}\n{}",
            artifacts().display(),
            context()
        ),
    }
}

/// Runs one scenario of drive.py against `url` and returns its facts.
fn drive(
    python: &Path,
    scenario: &str,
    url: &str,
    extra: &[String],
    context: &dyn Fn() -> String,
) -> Value {
    let started = Instant::now();
    let out = run_with_deadline(
        &mut drive_command(python, scenario, url, extra),
        SCENARIO_DEADLINE,
    );
    let facts = parse_result(scenario, out, context);
    eprintln!(
        "browser scenario {scenario}: {:.1} s (Chromium started in {} s, the page's part {} s)",
        started.elapsed().as_secs_f64(),
        facts["launch_s"],
        facts["scenario_s"]
    );
    facts
}

/// The browser's console entries that are errors or CSP reports.
fn console_problems(entries: &Value) -> Vec<String> {
    entries
        .as_array()
        .expect("console entries")
        .iter()
        .filter(|e| {
            let msg = e["message"].as_str().unwrap_or("");
            e["level"] == "SEVERE"
                || e["level"] == "WARNING"
                || msg.contains("Content Security Policy")
                || msg.contains("Refused to")
        })
        .map(|e| e.to_string())
        .collect()
}

fn assert_clean_console(facts: &Value) {
    let problems = console_problems(&facts["console"]);
    assert!(
        problems.is_empty(),
        "console errors or CSP reports:\n{}",
        problems.join("\n")
    );
    assert_eq!(facts["hooks"]["cspViolations"], 0, "CSP violations");
}

/// The transcript on the page: (role, text) per line; item ids are unique.
fn lines(facts: &Value) -> Vec<(String, String)> {
    let lines = facts["lines"].as_array().expect("lines");
    let mut ids: Vec<&str> = lines.iter().map(|l| l["id"].as_str().unwrap()).collect();
    ids.sort_unstable();
    let n = ids.len();
    ids.dedup();
    assert_eq!(ids.len(), n, "a line twice: {lines:#?}");
    lines
        .iter()
        .map(|l| {
            (
                l["role"].as_str().unwrap().to_owned(),
                l["text"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn said(facts: &Value) -> String {
    facts["hooks"]["said"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect::<Vec<_>>()
        .join(" | ")
}

fn closes(facts: &Value) -> Vec<u64> {
    facts["hooks"]["closes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["code"].as_u64().unwrap())
        .collect()
}

/// A command assessor that takes `secs` (for keepalives on screen) and
/// then prints a valid assessment with `summary`.
fn slow_assessor(dir: &Path, secs: f64, summary: &str) -> String {
    let file = dir.join("assessment.json");
    std::fs::write(
        &file,
        valid_assessment(&Script::builtin(), summary).to_string(),
    )
    .unwrap();
    command_assessor_config(
        &format!("cat >/dev/null; sleep {secs}; cat '{}'", file.display()),
        "keepalive_interval = \"200ms\"\nshare_with_candidate = \"full\"\n",
    )
}

// ---------------------------------------------------------------------------
// The mock Realtime API (tests/peer/mock_realtime.md).
// ---------------------------------------------------------------------------

/// A relay to `mock`, with `rest` appended to the configuration.
fn start_relay(mock: &Mock, rest: &str) -> Daemon {
    let config = format!(
        "[interview]\nengine = \"openai\"\n[openai]\nurl = \"{}\"\n{rest}\n",
        mock.url()
    );
    Daemon::start_with(&config, |cmd| {
        cmd.env("OPENAI_API_KEY", KEY)
            .env_remove("CREDENTIALS_DIRECTORY");
    })
}

fn page_url(daemon: &Daemon) -> String {
    format!("http://{}/", daemon.addr)
}

// ---------------------------------------------------------------------------
// 1. Text, with the scripted engine.
// ---------------------------------------------------------------------------

/// A whole text interview with the scripted engine, through the page
/// alone, with an invite link (`#invite=`): a wrong invite first shows the
/// could-not-connect screen; with the right one, started from the keyboard,
/// each question shows once, every typed answer shows once, the
/// assessment's progress shows its elapsed time, and the full report shows
/// what the daemon wrote to reports/. On the way, the same link opened in a
/// second tab takes the interview over (close 4000, said on the first
/// tab), and the first tab takes it back. The page logs nothing to the
/// console (after the refused invite).
#[test]
fn a_text_interview_in_the_browser_from_invite_to_report() {
    let _one = one_browser();
    let Some(python) = browser_python("a_text_interview_in_the_browser_from_invite_to_report")
    else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let config = format!(
        "[access]\nmode = \"invite\"\n{}",
        slow_assessor(work.path(), 1.5, "Assessed in the browser.")
    );
    let daemon = Daemon::start(&config);
    let (token, _) = create_invite(&daemon, &[]);
    let url = format!("{}#invite={token}", page_url(&daemon));
    let bad = format!("{}#invite=ivt_{}", page_url(&daemon), "0".repeat(48));
    let facts = drive(&python, "text", &url, &["--bad-url".into(), bad], &|| {
        daemon.log()
    });

    // The wrong invite: the generic screen (a browser cannot see the 401).
    let bad_end = facts["bad_end"]
        .as_str()
        .expect("the could-not-connect screen");
    assert!(bad_end.contains("Could not connect"), "{bad_end}");
    assert!(bad_end.contains("invite may be invalid"), "{bad_end}");
    assert_clean_console(&facts);

    // The same invite in a second tab took the interview over, and the
    // first tab took it back; each was told when it lost it.
    let takeover = &facts["takeover"];
    for tab in ["first_end", "second_end"] {
        let end = takeover[tab]
            .as_str()
            .unwrap_or_else(|| panic!("{takeover:#}"));
        assert!(
            end.contains("opened in another window") && end.contains("Continue here instead"),
            "{tab}: {end}"
        );
    }
    assert_eq!(takeover["first_closes"][0]["code"], 4000, "{takeover:#}");
    // The second tab got the whole conversation, then the open question.
    assert_eq!(
        takeover["second_lines"].as_u64().unwrap(),
        takeover["lines_before"].as_u64().unwrap() + 1,
        "{takeover:#}"
    );

    // The interview.
    let lines = lines(&facts);
    let script = Script::builtin();
    for (i, q) in script.questions.iter().enumerate() {
        let asked = lines
            .iter()
            .filter(|(role, text)| role == "assistant" && text.contains(&q.text))
            .count();
        // The question open at the take-overs was asked again after each
        // ("Welcome back. Where we stopped: ...").
        let expected = if i == 2 { 3 } else { 1 };
        assert_eq!(
            asked, expected,
            "{:?} asked {asked} times: {lines:#?}",
            q.text
        );
    }
    let answers: Vec<&String> = lines
        .iter()
        .filter(|(r, _)| r == "user")
        .map(|(_, t)| t)
        .collect();
    assert_eq!(answers.len(), script.questions.len(), "{lines:#?}");
    assert_eq!(facts["answered"], script.questions.len());
    assert!(lines
        .last()
        .is_some_and(|(r, t)| r == "assistant" && t.contains("That was the last question")));
    let progress = facts["progress"]
        .as_str()
        .expect("the assessment's progress was on screen");
    assert!(progress.ends_with("s so far."), "{progress}");

    // The report, as written.
    let session = facts["hooks"]["sessionId"].as_str().unwrap();
    let report = read_valid_report(&daemon.report_path(session));
    let shown = facts["report"].as_str().expect("the report on screen");
    assert!(shown.contains("Assessed in the browser."), "{shown}");
    assert!(
        shown.contains(&format!("Overall score\n{} / 100", report["overall_score"]))
            || shown.contains(&format!("{} / 100", report["overall_score"])),
        "{shown}"
    );
    for q in &script.questions {
        assert!(
            shown.contains(&q.text),
            "{:?} not in the report: {shown}",
            q.text
        );
    }
    assert_eq!(closes(&facts), [4000, 1000]);
    assert_eq!(facts["step"], "done");
    assert_eq!(facts["hooks"]["mode"], "text");
    assert_eq!(facts["hooks"]["chunksSent"], 0);
}

// ---------------------------------------------------------------------------
// 2, 3. Voice, through the relay.
// ---------------------------------------------------------------------------

/// A spoken interview through the relay: the fake microphone (espeak-ng)
/// speaks two answers. The mock receives the page's audio as 24 kHz PCM16
/// in 40 ms chunks, at the rate of real time, voiced (its VAD cuts two
/// turns of speech from it); the page plays every sample of the
/// interviewer's audio; both sides' transcripts show; the report shows.
/// Prints the measured round trip (last voiced chunk sent to the reply's
/// first sample played).
#[test]
fn a_voice_interview_in_the_browser_through_the_relay() {
    let _one = one_browser();
    let Some(python) = browser_python("a_voice_interview_in_the_browser_through_the_relay") else {
        return;
    };
    let mock = Mock::start(&["--expect-key", KEY, "--turns", "2", "--audio-ms", "800"]);
    let daemon = start_relay(&mock, "");
    let facts = drive(&python, "voice", &page_url(&daemon), &[], &|| {
        format!("{}\ndaemon log:\n{}", mock.diagnostics(), daemon.log())
    });
    mock.assert_no_mock_bugs();
    assert_clean_console(&facts);
    let hooks = &facts["hooks"];
    assert_eq!(hooks["mode"], "voice", "{hooks}");
    assert_eq!(hooks["model"], "gpt-realtime");

    // What the microphone sent, as the mock received it.
    let audio = mock.audio(1);
    let input = &audio["input"];
    let bytes = input["bytes"].as_u64().unwrap();
    assert!(bytes > 0, "no audio reached the mock: {audio:#}");
    assert_eq!(input["format"], "audio/pcm");
    assert_eq!(bytes, hooks["bytesSent"].as_u64().unwrap(), "{audio:#}");
    let chunks = hooks["chunksSent"].as_u64().unwrap();
    assert_eq!(
        bytes,
        chunks * CHUNK_BYTES,
        "chunks are not 40 ms of 24 kHz PCM16"
    );
    let appends = mock
        .client_events(1)
        .iter()
        .filter(|e| e["type"] == "input_audio_buffer.append")
        .count() as u64;
    assert_eq!(appends, chunks);
    // 24 kHz: the audio's duration is the time it took to capture.
    let audio_ms = bytes as f64 / 48.0;
    let wall_ms =
        hooks["lastChunkAt"].as_f64().unwrap() - hooks["firstChunkAt"].as_f64().unwrap() + 40.0;
    assert!(
        (audio_ms / wall_ms - 1.0).abs() < 0.1,
        "{audio_ms} ms of audio sent in {wall_ms} ms"
    );
    let turns = audio["turns"].as_array().unwrap();
    assert_eq!(turns.len(), 2, "{audio:#}");
    let speech_ms = facts["speech_s"].as_f64().unwrap() * 1000.0;
    for t in turns {
        let voiced = t["speech_ms"].as_f64().unwrap();
        assert!(
            voiced > speech_ms * 0.5 && voiced < speech_ms * 1.3,
            "the mock heard {voiced} ms of speech in a turn of {speech_ms} ms: {t}"
        );
    }
    assert!(hooks["voicedChunksSent"].as_u64().unwrap() > 0);

    // What the page played.
    let sent: u64 = audio["responses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["audio_bytes"].as_u64().unwrap_or(0) / 2)
        .sum();
    assert!(sent > 0);
    assert_eq!(hooks["samplesReceived"].as_u64().unwrap(), sent);
    assert_eq!(
        hooks["samplesPlayed"].as_u64().unwrap(),
        sent,
        "not every sample was played"
    );

    // Both transcripts, and the report.
    let lines = lines(&facts);
    for n in 1..=2 {
        assert!(
            lines
                .iter()
                .any(|(r, t)| r == "user" && t.starts_with(&format!("candidate answer {n} ("))),
            "answer {n} not on the page: {lines:#?}"
        );
    }
    for q in ["Question 1:", "Question 2:", "That concludes the interview"] {
        assert!(
            lines.iter().any(|(r, t)| r == "assistant" && t.contains(q)),
            "{q:?} not on the page: {lines:#?}"
        );
    }
    let shown = facts["report"].as_str().expect("the report on screen");
    assert!(shown.contains("you answered 2 of 6 questions"), "{shown}");
    assert_eq!(closes(&facts), [1000]);
    assert_eq!(hooks["truncates"], 0, "a barge-in where there was none");

    let trips = hooks["roundTrips"].as_array().unwrap();
    assert_eq!(trips.len(), 2, "{trips:?}");
    eprintln!(
        "audio round trip against the mock (last voiced chunk sent -> reply's first sample \
         played, output latency {} ms and the mock's 500 ms end-of-turn silence included): {:?} ms; \
         from input_audio_buffer.committed: {:?} ms; underruns: {}",
        hooks["outputLatencyMs"],
        trips
            .iter()
            .map(|t| t["speech_end_to_play_ms"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        trips
            .iter()
            .map(|t| t["committed_to_play_ms"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        hooks["underruns"]
    );
}

/// Barge-in: the candidate speaks while the interviewer's long greeting
/// plays. The page stops playback at once (nothing more of the greeting is
/// played) and sends `conversation.item.truncate` for the greeting's item,
/// content 0, with `audio_end_ms` = what was played; the mock truncates
/// the item there. The candidate's turn then gets its reply, played. The
/// mute button works from the keyboard.
#[test]
fn speech_over_the_interviewer_stops_playback_and_truncates() {
    let _one = one_browser();
    let Some(python) = browser_python("speech_over_the_interviewer_stops_playback_and_truncates")
    else {
        return;
    };
    let mock = Mock::start(&["--expect-key", KEY, "--turns", "3", "--audio-ms", "5000"]);
    let daemon = start_relay(&mock, "");
    let facts = drive(&python, "bargein", &page_url(&daemon), &[], &|| {
        format!("{}\ndaemon log:\n{}", mock.diagnostics(), daemon.log())
    });
    mock.assert_no_mock_bugs();
    assert_clean_console(&facts);
    let truncate = &facts["truncate"];
    let greeting = &mock.audio(1)["responses"][0];
    assert_eq!(truncate["item_id"], greeting["item_id"], "{greeting}");
    let end_ms = truncate["audio_end_ms"].as_u64().unwrap();
    assert!(
        (300..5000).contains(&end_ms),
        "audio_end_ms {end_ms}: {facts:#}"
    );
    // audio_end_ms is what was played, to within a report interval.
    let played_ms = facts["played_at_truncate"].as_u64().unwrap() * 1000 / 24_000;
    assert!(
        played_ms.abs_diff(end_ms) <= 100,
        "played {played_ms} ms, truncated at {end_ms} ms"
    );
    let sent = mock
        .client_events(1)
        .into_iter()
        .find(|e| e["type"] == "conversation.item.truncate")
        .expect("the mock got the truncate");
    assert_eq!(sent["item_id"], greeting["item_id"]);
    assert_eq!(sent["content_index"], 0);
    assert_eq!(sent["audio_end_ms"], end_ms);
    let truncated = mock
        .log(1)
        .into_iter()
        .find(|r| r["kind"] == "truncated")
        .expect("the mock truncated the item");
    assert_eq!(truncated["audio_end_ms"], end_ms, "{truncated}");
    // The mock's VAD cancelled the greeting too, as the real API does.
    assert_eq!(greeting["status"], "cancelled", "{greeting}");
    let page_lines = facts["lines"].as_array().unwrap();
    assert_eq!(page_lines[0]["interrupted"], true, "{page_lines:#?}");
    assert!(facts["hooks"]["audioItems"].as_u64().unwrap() >= 2);
    // The mute button, pressed from the keyboard.
    let muted = &facts["muted"];
    assert_eq!(muted["pressed"], "true", "{muted}");
    assert_eq!(muted["label"], "Unmute microphone", "{muted}");
    assert!(
        muted["note"].as_str().unwrap().contains("Microphone muted"),
        "{muted}"
    );
}

// ---------------------------------------------------------------------------
// 4. A restart mid-interview.
// ---------------------------------------------------------------------------

/// A free port on 127.0.0.1 (bound, then released for the daemon).
fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// interviewd started again on a state directory and configuration that a
/// [`Daemon`] left, listening where the configuration says (the harness's
/// `restart` picks a new port, and a page reconnects to its own origin).
/// Killed on drop.
struct Relaunched {
    child: Child,
    log: Arc<Mutex<String>>,
    _state: tempfile::TempDir,
}

impl Relaunched {
    fn start(state: tempfile::TempDir) -> Relaunched {
        let mut child = Command::new(env!("CARGO_BIN_EXE_interviewd"))
            .arg("serve")
            .arg("--config")
            .arg(state.path().join("interviewd.toml"))
            .args(["--log-level", "debug", "--state-dir"])
            .arg(state.path().join("state"))
            .env_remove("JOURNAL_STREAM")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start interviewd again");
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = log.clone();
        // Ends at EOF, when the process exits.
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(addr) = line.split("listening on ").nth(1) {
                    let _ = tx.send(addr.trim().parse::<SocketAddr>().ok());
                }
                let mut log = sink.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        let relaunched = Relaunched {
            child,
            log,
            _state: state,
        };
        if rx.recv_timeout(WAIT).ok().flatten().is_none() {
            panic!("the daemon did not listen again:\n{}", relaunched.log());
        }
        relaunched
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    fn state_dir(&self) -> PathBuf {
        self._state.path().join("state")
    }
}

impl Drop for Relaunched {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The daemon restarts mid-interview (SIGTERM, then again on the same
/// address and state): the page shows the restart (close 1012),
/// reconnects by itself with the resume token it was given (`open` mode),
/// gets the same session back without a line twice, and the interview
/// finishes with the report.
#[test]
fn the_page_rides_out_a_daemon_restart() {
    let _one = one_browser();
    let Some(python) = browser_python("the_page_rides_out_a_daemon_restart") else {
        return;
    };
    let port = free_port();
    let work = tempfile::tempdir().unwrap();
    let config = format!(
        "[server]\nlisten = \"127.0.0.1:{port}\"\n{}",
        slow_assessor(work.path(), 0.5, "Assessed after a restart.")
    );
    let mut daemon = Daemon::start_listening_as_configured(&config);
    assert_eq!(daemon.addr.port(), port);
    let sync = tempfile::tempdir().unwrap();
    let url = page_url(&daemon);
    let sync_dir = sync.path().to_owned();
    let browser = std::thread::spawn(move || {
        run_with_deadline(
            &mut drive_command(
                &python,
                "restart",
                &url,
                &["--sync".into(), sync_dir.to_str().unwrap().into()],
            ),
            SCENARIO_DEADLINE,
        )
    });
    // The page has answered once and shows the second question.
    let ready = sync.path().join("ready");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ready.exists() {
        if browser.is_finished() {
            let out = browser.join().unwrap();
            parse_result("restart", out, &|| daemon.log());
            panic!("the browser scenario ended before the restart");
        }
        assert!(Instant::now() < deadline, "the page never got ready");
        std::thread::sleep(Duration::from_millis(50));
    }
    let session_before = std::fs::read_to_string(&ready).unwrap();
    let (status, took) = daemon.stop(libc::SIGTERM, WAIT);
    assert!(status.success(), "{status}: {}", daemon.log());
    eprintln!("daemon stopped in {took:?}");
    let state = std::mem::replace(&mut daemon.state, tempfile::tempdir().unwrap());
    drop(daemon);
    let daemon = Relaunched::start(state);
    let out = browser.join().unwrap();
    let facts = parse_result("restart", out, &|| daemon.log());
    eprintln!(
        "browser scenario restart: the page's part {} s",
        facts["scenario_s"]
    );
    assert_clean_console_but_reconnects(&facts);

    let hooks = &facts["hooks"];
    assert_eq!(
        hooks["sessionId"],
        session_before.as_str(),
        "another session"
    );
    let codes = closes(&facts);
    assert_eq!(codes.first(), Some(&1012), "{codes:?}");
    assert_eq!(codes.last(), Some(&1000), "{codes:?}");
    assert!(hooks["reconnects"].as_u64().unwrap() >= 1);
    let said = said(&facts);
    assert!(
        said.contains("The service is restarting, reconnecting"),
        "{said}"
    );
    assert!(said.contains("Reconnected"), "{said}");
    // The transcript survived and was not duplicated by the replay.
    let before = lines(&facts["before"]);
    let after = lines(&facts);
    assert_eq!(&after[..before.len()], &before[..], "{after:#?}");
    let script = Script::builtin();
    for q in &script.questions {
        let n = after
            .iter()
            .filter(|(r, t)| r == "assistant" && t.contains(&q.text))
            .count();
        // The question open at the restart is asked again after it.
        let expected = if q.id == script.questions[1].id { 2 } else { 1 };
        assert_eq!(n, expected, "{:?}: {after:#?}", q.text);
    }
    assert!(after
        .iter()
        .any(|(r, t)| r == "assistant" && t.starts_with("Welcome back")));
    let user: Vec<&String> = after
        .iter()
        .filter(|(r, _)| r == "user")
        .map(|(_, t)| t)
        .collect();
    assert_eq!(user.len(), script.questions.len(), "{after:#?}");
    let mut unique = user.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), user.len(), "an answer twice: {user:#?}");
    let shown = facts["report"].as_str().expect("the report on screen");
    assert!(shown.contains("Assessed after a restart."), "{shown}");
    let report = read_valid_report(
        &daemon
            .state_dir()
            .join("reports")
            .join(format!("{session_before}.json")),
    );
    assert_eq!(report["summary"], "Assessed after a restart.");
}

/// As [`assert_clean_console`], but a reconnect that finds the daemon
/// down makes Chromium log the failed WebSocket: those lines alone are
/// allowed.
fn assert_clean_console_but_reconnects(facts: &Value) {
    let problems: Vec<String> = console_problems(&facts["console"])
        .into_iter()
        .filter(|p| !(p.contains("WebSocket connection to") && p.contains("failed")))
        .collect();
    assert!(problems.is_empty(), "console:\n{}", problems.join("\n"));
    assert_eq!(facts["hooks"]["cspViolations"], 0);
}

// ---------------------------------------------------------------------------
// 5. No microphone.
// ---------------------------------------------------------------------------

/// The microphone is refused (Chromium denies permission prompts): in a
/// voice interview the page says so, offers the text box, and a typed
/// answer gets the interviewer's next question; no audio was sent. With no
/// microphone at all, the page says that instead.
#[test]
fn a_refused_microphone_falls_back_to_text() {
    let _one = one_browser();
    let Some(python) = browser_python("a_refused_microphone_falls_back_to_text") else {
        return;
    };
    let mock = Mock::start(&["--expect-key", KEY, "--turns", "2", "--audio-ms", "300"]);
    let daemon = start_relay(&mock, "");
    let facts = drive(&python, "refused", &page_url(&daemon), &[], &|| {
        format!("{}\ndaemon log:\n{}", mock.diagnostics(), daemon.log())
    });
    mock.assert_no_mock_bugs();
    let hooks = &facts["hooks"];
    assert_eq!(hooks["mode"], "voice");
    assert_eq!(hooks["mic"], "denied");
    let note = facts["mic_note"].as_str().unwrap();
    assert!(
        note.contains("Microphone access was refused") && note.contains("type your answers"),
        "{note}"
    );
    assert_eq!(hooks["chunksSent"], 0);
    let events = mock.client_events(1);
    assert!(
        !events
            .iter()
            .any(|e| e["type"] == "input_audio_buffer.append"),
        "audio was sent"
    );
    let typed = events
        .iter()
        .find(|e| e["type"] == "conversation.item.create" && e["item"]["role"] == "user")
        .expect("the typed answer reached the mock");
    let text = typed["item"]["content"][0]["text"].as_str().unwrap();
    let lines = lines(&facts);
    assert!(
        lines.iter().any(|(r, t)| r == "user" && t == text),
        "{lines:#?}"
    );
    // The interviewer is still heard.
    assert!(hooks["samplesPlayed"].as_u64().unwrap() > 0);
    assert_clean_console(&facts);

    // No microphone at all: the same offer, said differently.
    let facts = drive(&python, "absent", &page_url(&daemon), &[], &|| daemon.log());
    assert_eq!(facts["hooks"]["mic"], "absent");
    let note = facts["mic_note"].as_str().unwrap();
    assert!(
        note.contains("No microphone was found") && note.contains("type your answers"),
        "{note}"
    );
    assert_clean_console(&facts);
}

// ---------------------------------------------------------------------------
// 6. A clean page.
// ---------------------------------------------------------------------------

/// The page loads, starts and takes an answer with nothing in the
/// browser's console (no error, no CSP violation, under the daemon's
/// strict policy); every control has a label; the page declares its
/// language and a viewport, and on a phone-sized screen (390 px) nothing
/// overflows sideways.
#[test]
fn the_page_loads_cleanly_and_accessibly() {
    let _one = one_browser();
    let Some(python) = browser_python("the_page_loads_cleanly_and_accessibly") else {
        return;
    };
    let daemon = Daemon::start("");
    let facts = drive(&python, "clean", &page_url(&daemon), &[], &|| daemon.log());
    assert!(
        facts["loaded_console"].as_array().unwrap().is_empty(),
        "{}",
        facts["loaded_console"]
    );
    assert!(
        facts["console"].as_array().unwrap().is_empty(),
        "console: {}",
        facts["console"]
    );
    assert_eq!(facts["hooks"]["cspViolations"], 0);
    let checks = &facts["checks"];
    assert_eq!(checks["unlabelled"], serde_json::json!([]), "{checks}");
    assert_eq!(checks["nameless"], serde_json::json!([]), "{checks}");
    assert_eq!(checks["lang"], "en");
    assert_eq!(checks["viewport"], true);
    assert!(
        facts["overflow"].as_i64().unwrap() <= 0,
        "the page is wider than a phone: {}",
        facts["overflow"]
    );
    assert_eq!(lines(&facts).len(), 3);
}
