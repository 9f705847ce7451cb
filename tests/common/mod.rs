//! Test harness: starts the real `interviewd` binary on port 0 with a
//! temporary state directory, reads the bound address from its log, and
//! drives it with real WebSocket clients. Every wait has a deadline.
#![allow(dead_code)]

pub mod mock;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::{Message, WebSocket};

/// Generous bound for anything a test waits on; CI machines are noisy.
pub const WAIT: Duration = Duration::from_secs(20);

pub struct Daemon {
    child: Child,
    pub addr: SocketAddr,
    pub state: tempfile::TempDir,
    log: Arc<Mutex<String>>,
    /// Hears from the log reader when it reaches EOF; taken once heard.
    log_eof: Option<std::sync::mpsc::Receiver<()>>,
}

/// How long to wait, after the daemon exits, for its last log lines. A child
/// that outlived the daemon can hold the pipe open; the log is then read
/// as it is.
const LOG_EOF_WAIT: Duration = Duration::from_secs(2);

impl Daemon {
    /// Starts `interviewd serve` with this configuration file text (may be
    /// empty) and waits for its `listening on` line.
    pub fn start(config: &str) -> Daemon {
        Daemon::start_with(config, |_| {})
    }

    /// Like [`Daemon::start`], but without `--listen`: the configuration
    /// file alone decides the address (it must name a free one).
    pub fn start_listening_as_configured(config: &str) -> Daemon {
        Daemon::launch(config, false, |_| {})
    }

    /// Like [`Daemon::start`], with a chance to adjust the command first.
    pub fn start_with(config: &str, customize: impl FnOnce(&mut Command)) -> Daemon {
        Daemon::launch(config, true, customize)
    }

    /// Like [`Daemon::start`], in a directory the caller prepared: its
    /// `state` entry (a directory, or a link to one such as a mount point)
    /// is the state directory. The configuration file goes next to it.
    pub fn start_in(dir: tempfile::TempDir, config: &str) -> Daemon {
        Daemon::launch_in(dir, config, true, |_| {})
    }

    /// Starts the daemon again, after it has exited, on the same state
    /// directory and configuration file (a restart after a crash).
    pub fn restart(mut self) -> Daemon {
        assert!(
            matches!(self.child.try_wait(), Ok(Some(_))),
            "restart needs the daemon to have exited"
        );
        let state = std::mem::replace(&mut self.state, tempfile::tempdir().expect("temp dir"));
        let config = std::fs::read_to_string(state.path().join("interviewd.toml")).expect("config");
        drop(self);
        Daemon::launch_in(state, &config, true, |_| {})
    }

    fn launch(
        config: &str,
        listen_on_any_port: bool,
        customize: impl FnOnce(&mut Command),
    ) -> Daemon {
        Daemon::launch_in(
            tempfile::tempdir().expect("temp dir"),
            config,
            listen_on_any_port,
            customize,
        )
    }

    fn launch_in(
        state: tempfile::TempDir,
        config: &str,
        listen_on_any_port: bool,
        customize: impl FnOnce(&mut Command),
    ) -> Daemon {
        let config_path = state.path().join("interviewd.toml");
        std::fs::write(&config_path, config).expect("write config");
        let mut command = Command::new(env!("CARGO_BIN_EXE_interviewd"));
        command
            .arg("serve")
            .arg("--config")
            .arg(&config_path)
            .args(["--log-level", "debug", "--state-dir"])
            .arg(state.path().join("state"))
            .env_remove("JOURNAL_STREAM")
            // A test run under systemd must not hand the daemons its
            // service manager's channels.
            .env_remove("NOTIFY_SOCKET")
            .env_remove("WATCHDOG_USEC")
            .env_remove("WATCHDOG_PID")
            .env_remove("LISTEN_FDS")
            .env_remove("LISTEN_PID")
            .env_remove("LISTEN_FDNAMES")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if listen_on_any_port {
            command.args(["--listen", "127.0.0.1:0"]);
        }
        customize(&mut command);
        let mut child = command.spawn().expect("start interviewd");
        let stderr = child.stderr.take().expect("piped stderr");
        let log = Arc::new(Mutex::new(String::new()));
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let sink = log.clone();
        let (eof_tx, log_eof) = std::sync::mpsc::channel();
        // Owned by the Daemon: ends at EOF, i.e. when the process exits,
        // and says so through `log_eof`.
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                // Other lines mention the address too (the debug line of
                // READY=1 under NOTIFY_SOCKET): only the one that is just it.
                if let Some(Ok(addr)) = line
                    .split("listening on ")
                    .nth(1)
                    .map(|a| a.trim().parse::<SocketAddr>())
                {
                    let _ = addr_tx.send(addr);
                }
                let mut log = sink.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
            let _ = eof_tx.send(());
        });
        let addr = match addr_rx.recv_timeout(WAIT) {
            Ok(addr) => addr,
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "daemon did not log its address; log:\n{}",
                    log.lock().unwrap()
                );
            }
        };
        Daemon {
            child,
            addr,
            state,
            log,
            log_eof: Some(log_eof),
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn url(&self) -> String {
        format!("ws://{}/v1/realtime", self.addr)
    }

    pub fn state_dir(&self) -> PathBuf {
        self.state.path().join("state")
    }

    pub fn config_path(&self) -> PathBuf {
        self.state.path().join("interviewd.toml")
    }

    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) has no memory-safety preconditions.
        assert_eq!(unsafe { libc::kill(self.pid(), signal) }, 0, "kill failed");
    }

    /// Waits for the process to exit; panics (with the log) after `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                // The daemon's last lines may still be in the pipe: wait for
                // the reader to reach EOF, within a bound.
                if let Some(eof) = self.log_eof.take() {
                    let _ = eof.recv_timeout(LOG_EOF_WAIT);
                }
                return status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!(
                    "daemon did not exit within {timeout:?}; log:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Sends `signal` and returns the exit status and the time to exit.
    pub fn stop(&mut self, signal: i32, timeout: Duration) -> (ExitStatus, Duration) {
        let start = Instant::now();
        self.signal(signal);
        let status = self.wait_exit(timeout);
        (status, start.elapsed())
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Waits until the log contains `needle`; panics after [`WAIT`].
    pub fn wait_for_log(&self, needle: &str) {
        let deadline = Instant::now() + WAIT;
        while !self.log().contains(needle) {
            if Instant::now() > deadline {
                panic!("log never contained {needle:?}; log:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn journal_path(&self, session_id: &str) -> PathBuf {
        self.state_dir()
            .join("sessions")
            .join(format!("{session_id}.jsonl"))
    }

    /// Reads a session's journal the way the daemon reads it.
    pub fn journal(&self, session_id: &str) -> interviewd::journal::Transcript {
        interviewd::journal::read(&self.journal_path(session_id)).expect("journal parses")
    }

    pub fn report_path(&self, session_id: &str) -> PathBuf {
        self.state_dir()
            .join("reports")
            .join(format!("{session_id}.json"))
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// How a read ended when it did not yield an event.
#[derive(Debug, PartialEq)]
pub enum Ended {
    /// A close frame with this code.
    Closed(u16),
    /// The TCP connection ended without a close frame.
    Dropped,
    TimedOut,
}

/// A blocking WebSocket client with a read deadline on every read.
pub struct Client {
    pub ws: WebSocket<TcpStream>,
    /// Every event received so far, in order.
    pub events: Vec<Value>,
    pub session_id: String,
}

impl Client {
    /// Connects without reading anything.
    pub fn connect_raw(url: &str) -> Client {
        Client::connect_raw_with(url, &[])
    }

    /// Connects with extra request headers, without reading anything.
    pub fn connect_raw_with(url: &str, headers: &[(&str, &str)]) -> Client {
        use tungstenite::client::IntoClientRequest;
        let addr = url
            .trim_start_matches("ws://")
            .split('/')
            .next()
            .unwrap()
            .to_owned();
        let stream = TcpStream::connect(&addr).expect("connect");
        stream.set_read_timeout(Some(WAIT)).unwrap();
        stream.set_write_timeout(Some(WAIT)).unwrap();
        let mut request = url.into_client_request().expect("request");
        for (name, value) in headers {
            request.headers_mut().insert(
                tungstenite::http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.parse().unwrap(),
            );
        }
        let (ws, _) = tungstenite::client(request, stream).expect("websocket handshake");
        Client {
            ws,
            events: Vec::new(),
            session_id: String::new(),
        }
    }

    /// Connects and reads through the greeting (`session.created` up to the
    /// first `response.done`).
    pub fn connect(url: &str) -> Client {
        let mut c = Client::connect_raw(url);
        let created = c.wait_for("session.created");
        c.session_id = created["session"]["id"]
            .as_str()
            .expect("session id")
            .to_owned();
        c.wait_for("response.done");
        c
    }

    pub fn send(&mut self, event: Value) {
        self.ws
            .send(Message::text(event.to_string()))
            .expect("send");
    }

    pub fn send_text(&mut self, text: &str) {
        self.ws.send(Message::text(text.to_owned())).expect("send");
    }

    /// The next event, or how the connection ended.
    pub fn next_event(&mut self) -> Result<Value, Ended> {
        loop {
            match self.ws.read() {
                Ok(Message::Text(t)) => {
                    let v: Value = serde_json::from_str(t.as_str()).expect("server sends JSON");
                    self.events.push(v.clone());
                    return Ok(v);
                }
                Ok(Message::Close(frame)) => {
                    // Send the queued close reply, completing the handshake
                    // as a real client does.
                    let _ = self.ws.flush();
                    return Err(Ended::Closed(
                        frame.map(|f| u16::from(f.code)).unwrap_or(1005),
                    ));
                }
                Ok(_) => continue,
                Err(tungstenite::Error::Io(e))
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return Err(Ended::TimedOut);
                }
                Err(_) => return Err(Ended::Dropped),
            }
        }
    }

    /// Reads until an event of type `ty`; panics if the connection ends first.
    pub fn wait_for(&mut self, ty: &str) -> Value {
        loop {
            match self.next_event() {
                Ok(v) if v["type"] == ty => return v,
                Ok(_) => continue,
                Err(e) => panic!(
                    "waiting for {ty}: connection ended: {e:?}; events: {:#?}",
                    self.events
                ),
            }
        }
    }

    /// Reads until the connection ends; returns how, skipping events.
    pub fn read_to_end(&mut self) -> Ended {
        loop {
            if let Err(e) = self.next_event() {
                return e;
            }
        }
    }

    /// Sends an answer and waits for its confirmation; returns the item id.
    pub fn answer(&mut self, text: &str) -> String {
        self.send(user_message(text));
        let done = self.wait_for("conversation.item.done");
        done["item"]["id"].as_str().expect("item id").to_owned()
    }

    /// Asks for the next interviewer turn and waits for it.
    pub fn next_turn(&mut self) -> Value {
        self.send(json!({"type": "response.create"}));
        self.wait_for("response.done")
    }

    /// Answers every question with `text` until the assessment starts.
    pub fn answer_all(&mut self, text: &str) {
        for _ in 0..100 {
            self.answer(text);
            self.send(json!({"type": "response.create"}));
            loop {
                match self.next_event() {
                    Ok(v) if v["type"] == "interview.assessment.started" => return,
                    Ok(v) if v["type"] == "response.done" => {
                        // Either another question, or the closing remark
                        // followed by assessment.started.
                        break;
                    }
                    Ok(_) => continue,
                    Err(e) => panic!("connection ended mid-interview: {e:?}"),
                }
            }
            if self
                .events
                .iter()
                .any(|e| e["type"] == "interview.assessment.started")
            {
                return;
            }
            // Peek: after the closing remark the started event follows at once.
            if let Some(last) = self.events.last() {
                let text = last["response"]["output"][0]["content"][0]["text"]
                    .as_str()
                    .unwrap_or("");
                if text.contains("last question") {
                    self.wait_for("interview.assessment.started");
                    return;
                }
            }
        }
        panic!("the interview never ended");
    }

    /// The text of the last interviewer turn.
    pub fn last_turn_text(&self) -> String {
        self.events
            .iter()
            .rev()
            .find(|e| e["type"] == "response.done")
            .and_then(|e| e["response"]["output"][0]["content"][0]["text"].as_str())
            .unwrap_or_default()
            .to_owned()
    }
}

pub fn user_message(text: &str) -> Value {
    json!({
        "type": "conversation.item.create",
        "item": {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}
    })
}

pub fn close_code(code: CloseCode) -> u16 {
    u16::from(code)
}

/// Writes a config file with a `command` assessor that runs `script` under sh.
pub fn command_assessor_config(script: &str, extra: &str) -> String {
    format!(
        "[assessment]\nkind = \"command\"\ncommand = [\"/bin/sh\", \"-c\", {}]\n{extra}\n",
        toml_string(script)
    )
}

pub fn toml_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Sends a raw HTTP request and returns the status line's code.
pub fn http_status(addr: SocketAddr, request: &str) -> u16 {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf);
    text.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// Processes whose command line contains `needle` (for "no child survives").
pub fn processes_matching(needle: &str) -> Vec<i32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains(needle) {
            found.push(pid);
        }
    }
    found
}

/// Records in a journal of the given kind.
pub fn records<'a>(t: &'a interviewd::journal::Transcript, kind: &str) -> Vec<&'a Value> {
    t.records.iter().filter(|r| r["kind"] == kind).collect()
}

pub fn path_exists(p: &Path) -> bool {
    p.exists()
}

/// Checks a report against docs/report.schema.json with the daemon's own
/// validator; panics naming every problem.
pub fn assert_valid_report(report: &Value) {
    if let Err(e) = interviewd::assessor::report::validate(report) {
        panic!("the report breaks docs/report.schema.json: {e}\nreport: {report:#}");
    }
}

/// Reads a report file, checks it against the schema and returns it.
pub fn read_valid_report(path: &Path) -> Value {
    let bytes = std::fs::read(path)
        .unwrap_or_else(|e| panic!("cannot read report {}: {e}", path.display()));
    let report: Value = serde_json::from_slice(&bytes).expect("the report file is JSON");
    assert_valid_report(&report);
    report
}

/// The whole report of a completed assessment: reads it from disk
/// (`daemon.report_path` of the event's `session_id`, written before the
/// event is sent) and checks it against the schema, after checking that
/// `completed`, an `interview.assessment.completed` event, carries the view
/// of it that its `shared` says (`assessment.share_with_candidate`): the
/// whole report for `full`, exactly the session id and the summary for
/// `summary`, `null` for `none`.
pub fn full_report(daemon: &Daemon, completed: &Value) -> Value {
    assert_eq!(
        completed["type"], "interview.assessment.completed",
        "{completed:#}"
    );
    let id = completed["session_id"]
        .as_str()
        .unwrap_or_else(|| panic!("no session_id: {completed:#}"));
    let report = read_valid_report(&daemon.report_path(id));
    assert_eq!(report["session_id"], id, "the report on disk is another's");
    let delivered = &completed["report"];
    match completed["shared"].as_str() {
        Some("full") => assert_eq!(
            *delivered, report,
            "shared \"full\": the delivered report is not the one on disk"
        ),
        Some("summary") => assert_eq!(
            *delivered,
            json!({"session_id": id, "summary": report["summary"]}),
            "shared \"summary\": not the summary view of the report on disk"
        ),
        Some("none") => assert!(
            delivered.is_null(),
            "shared \"none\", yet a report was delivered: {delivered:#}"
        ),
        _ => panic!("`shared` is not full, summary or none: {completed:#}"),
    }
    report
}

/// The assessment fields a `command` assessor prints for `script`, valid
/// for any answers: one entry per question, no evidence.
pub fn valid_assessment(script: &interviewd::script::Script, summary: &str) -> Value {
    let questions: Vec<Value> = script
        .questions
        .iter()
        .map(|q| {
            json!({"question_id": q.id, "question": q.text, "score": 60,
                   "reasons": ["a test assessor"], "evidence": []})
        })
        .collect();
    json!({
        "summary": summary,
        "questions": questions,
        "overall_score": 60,
        "recommendation": "yes",
    })
}

/// The fields of `report` an assessor provides (the rest are the daemon's).
pub fn assessment_part(report: &Value) -> Value {
    let keep = ["summary", "questions", "overall_score", "recommendation"];
    let fields = report
        .as_object()
        .expect("a report is an object")
        .iter()
        .filter(|(k, _)| keep.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    Value::Object(fields)
}

/// Runs a command to completion with a deadline (its whole process group is
/// killed when the deadline passes); returns status, stdout and stderr.
pub fn run_with_deadline(cmd: &mut Command, timeout: Duration) -> (ExitStatus, String, String) {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let pump = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = r.read_to_string(&mut s);
            s
        })
    };
    let out = pump(Box::new(child.stdout.take().unwrap()));
    let err = pump(Box::new(child.stderr.take().unwrap()));
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if Instant::now() > deadline {
            // SAFETY: kill(2) has no memory-safety preconditions.
            unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
            let _ = child.wait();
            panic!(
                "{cmd:?} did not finish within {timeout:?}; stdout:\n{}\nstderr:\n{}",
                out.join().unwrap(),
                err.join().unwrap()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    (status, out.join().unwrap(), err.join().unwrap())
}

pub fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Runs a peer's set-up script (`tests/peer/setup.sh`, `tests/node/setup.sh`)
/// into `target/NAME`, once: a file lock keeps parallel tests from
/// installing at the same time. Fails the test with the set-up output if it
/// fails (no network is no reason to skip).
pub fn install_peer(setup: &str, name: &str) -> PathBuf {
    let dir = repo().join("target").join(name);
    let lock = repo().join("target").join(format!("{name}.lock"));
    let (status, out, err) = run_with_deadline(
        Command::new("sh")
            .arg("-c")
            .arg(r#"exec flock -w 600 "$1" bash "$2" "$3""#)
            .arg("sh")
            .arg(&lock)
            .arg(repo().join(setup))
            .arg(&dir)
            .current_dir(repo()),
        Duration::from_secs(900),
    );
    assert!(
        status.success(),
        "{setup} failed ({status}); stdout:\n{out}\nstderr:\n{err}"
    );
    dir
}

/// The Python peer's python (tests/peer/setup.sh).
pub fn peer_python() -> PathBuf {
    let python = install_peer("tests/peer/setup.sh", "realtime-peer").join("bin/python");
    assert!(python.exists(), "no {} after setup", python.display());
    python
}

/// A throwaway CA and a server certificate for 127.0.0.1 in `dir`
/// (tests/peer/make_test_ca.py).
pub fn make_test_ca(dir: &Path) {
    let (status, _, err) = run_with_deadline(
        Command::new("python3")
            .arg(repo().join("tests/peer/make_test_ca.py"))
            .arg(dir),
        WAIT,
    );
    assert!(status.success(), "make_test_ca.py: {err}");
}

/// `interviewd invite create ARGS` on the daemon's state directory: the
/// token and the invite id from its output.
pub fn create_invite(daemon: &Daemon, args: &[&str]) -> (String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_interviewd"))
        .args(["invite", "create", "--state-dir"])
        .arg(daemon.state_dir())
        .args(args)
        .output()
        .expect("run interviewd invite create");
    assert!(
        out.status.success(),
        "invite create {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = String::from_utf8(out.stdout).unwrap();
    let token = out
        .lines()
        .find_map(|l| l.strip_prefix("token:"))
        .expect("token line")
        .trim()
        .to_owned();
    let id = out
        .split_whitespace()
        .find(|w| w.starts_with("inv_"))
        .expect("invite id")
        .to_owned();
    (token, id)
}

/// A Python peer (a mock server) started from tests/peer, owned by the
/// test: killed with its process group when dropped.
pub struct Peer {
    child: Child,
    pub addr: SocketAddr,
}

impl Peer {
    /// Starts `python tests/peer/SCRIPT ARGS...` and waits (bounded) for its
    /// `listening on ADDR` line.
    pub fn start(script: &str, args: &[&str]) -> Peer {
        let python = peer_python();
        let mut child = Command::new(python)
            .arg(repo().join("tests/peer").join(script))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {script}: {e}"));
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        // Ends at the peer's EOF, i.e. when the Peer kills it.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(addr) = line.split("listening on ").nth(1) {
                    let _ = tx.send(addr.trim().to_owned());
                }
            }
        });
        let addr = match rx.recv_timeout(WAIT) {
            Ok(a) => a.parse().expect("peer address"),
            Err(_) => {
                let _ = child.kill();
                panic!("{script} did not say where it listens");
            }
        };
        Peer { child, addr }
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        // SAFETY: kill(2) on the peer's own process group.
        unsafe { libc::kill(-(self.child.id() as i32), libc::SIGKILL) };
        let _ = self.child.wait();
    }
}

/// A TCP connection whose receive and/or send buffers are set before
/// connecting (so that the window it advertises stays small): what a
/// client that does not read, or writes into a full socket, looks like.
/// The kernel rounds the sizes up to its minimum.
pub fn connect_with_buffers(
    addr: SocketAddr,
    receive: Option<libc::c_int>,
    send: Option<libc::c_int>,
) -> TcpStream {
    use std::os::fd::FromRawFd;
    let SocketAddr::V4(v4) = addr else {
        panic!("the daemon listens on IPv4 in tests");
    };
    // SAFETY: plain socket calls on a descriptor owned by the TcpStream
    // from its creation; every pointer passed points to a live local of
    // the stated size.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
        let stream = TcpStream::from_raw_fd(fd);
        for (option, bytes) in [(libc::SO_RCVBUF, receive), (libc::SO_SNDBUF, send)] {
            let Some(bytes) = bytes else { continue };
            let set = libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                option,
                (&bytes as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
            assert_eq!(set, 0, "setsockopt: {}", std::io::Error::last_os_error());
        }
        let sin = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: v4.port().to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from(*v4.ip()).to_be(),
            },
            sin_zero: [0; 8],
        };
        let connected = libc::connect(
            fd,
            (&sin as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        );
        assert_eq!(connected, 0, "connect: {}", std::io::Error::last_os_error());
        stream
    }
}

/// Starts `interviewd client URL` with piped stdout and stderr; stdin is
/// `stdin` (piped unless the test gives a terminal), and no API key is
/// passed down.
pub fn spawn_terminal_client_with(url: &str, stdin: Stdio) -> Child {
    Command::new(env!("CARGO_BIN_EXE_interviewd"))
        .args(["client", url])
        .env_remove("OPENAI_API_KEY")
        .stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the client")
}

/// `spawn_terminal_client_with(url, Stdio::piped())`.
pub fn spawn_terminal_client(url: &str) -> Child {
    spawn_terminal_client_with(url, Stdio::piped())
}
