//! Operating the daemon: what systemd is told (`sd_notify`: READY, STATUS,
//! WATCHDOG, RELOADING, STOPPING), socket activation, the `/healthz`,
//! `/readyz` and `/metrics` endpoints, slow scrapers, draining a half-read
//! request at shutdown, and `check-config`.
//!
//! Everything runs the real binary on real sockets, as any user: the
//! service manager's side of `NOTIFY_SOCKET` is a Unix datagram socket the
//! test binds, and socket activation goes through Debian's
//! `systemd-socket-activate` (no systemd needed as PID 1).

mod common;

use std::collections::{HashMap, HashSet};
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::net::UnixDatagram;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;

use common::*;

// ---------------------------------------------------------------------------
// The service manager's side of sd_notify.

/// A Unix datagram socket standing in for systemd's notification socket:
/// every datagram the daemon sends is kept with the time it arrived.
struct Notifications {
    path: PathBuf,
    received: Arc<Mutex<Vec<(Instant, String)>>>,
    stop: Arc<AtomicBool>,
    reader: Option<std::thread::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

/// One datagram: its index among all received, when it arrived, its text.
type Note = (usize, Instant, String);

impl Notifications {
    fn bind() -> Notifications {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("notify.sock");
        let socket = UnixDatagram::bind(&path).expect("bind the notification socket");
        socket
            .set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (sink, stopped) = (received.clone(), stop.clone());
        // Owned by the Notifications: stops when it is dropped. It always
        // reads, as systemd does, so the daemon's sends never block.
        let reader = std::thread::spawn(move || {
            let mut buf = vec![0u8; 64 * 1024];
            while !stopped.load(Ordering::Relaxed) {
                match socket.recv(&mut buf) {
                    Ok(n) => {
                        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                        sink.lock().unwrap().push((Instant::now(), text));
                    }
                    Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                    Err(e) => panic!("notification socket: {e}"),
                }
            }
        });
        Notifications {
            path,
            received,
            stop,
            reader: Some(reader),
            _dir: dir,
        }
    }

    /// Points the daemon at this socket, with this watchdog setting (and
    /// nothing inherited from the test's own environment).
    fn configure(&self, command: &mut Command, watchdog_usec: Option<&str>) {
        command
            .env("NOTIFY_SOCKET", &self.path)
            .env_remove("WATCHDOG_USEC")
            .env_remove("WATCHDOG_PID")
            .env_remove("LISTEN_FDS")
            .env_remove("LISTEN_PID");
        if let Some(usec) = watchdog_usec {
            command.env("WATCHDOG_USEC", usec);
        }
    }

    fn all(&self) -> Vec<(Instant, String)> {
        self.received.lock().unwrap().clone()
    }

    /// Times of the `WATCHDOG=1` pings received so far.
    fn pings(&self) -> Vec<Instant> {
        self.all()
            .into_iter()
            .filter(|(_, m)| has(m, "WATCHDOG=1"))
            .map(|(t, _)| t)
            .collect()
    }

    /// The first datagram at index `from` or later that `matches`; panics
    /// (with every datagram) after `timeout`.
    fn wait_for(
        &self,
        from: usize,
        what: &str,
        timeout: Duration,
        matches: impl Fn(&str) -> bool,
    ) -> Note {
        let deadline = Instant::now() + timeout;
        loop {
            let all = self.all();
            if let Some((i, (t, m))) = all
                .iter()
                .enumerate()
                .skip(from)
                .find(|(_, (_, m))| matches(m))
            {
                return (i, *t, m.clone());
            }
            if Instant::now() > deadline {
                let texts: Vec<&str> = all.iter().map(|(_, m)| m.as_str()).collect();
                panic!("no {what} within {timeout:?}; received: {texts:#?}");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Notifications {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }
}

/// The datagram has this exact `KEY=VALUE` line.
fn has(message: &str, line: &str) -> bool {
    message.lines().any(|l| l == line)
}

/// The value of `KEY=` in the datagram.
fn field<'a>(message: &'a str, key: &str) -> Option<&'a str> {
    message
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
}

/// CLOCK_MONOTONIC in microseconds: the clock of `MONOTONIC_USEC=`.
fn monotonic_usec() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    assert_eq!(
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) },
        0
    );
    ts.tv_sec as u64 * 1_000_000 + ts.tv_nsec as u64 / 1_000
}

// ---------------------------------------------------------------------------
// Plain HTTP.

/// A whole HTTP answer (the daemon closes after each).
struct Response {
    status: u16,
    head: String,
    body: String,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// Sends `method path` with `headers` and reads the answer to its end.
fn request(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)]) -> Response {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(WAIT)).unwrap();
    let mut text = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\n");
    for (name, value) in headers {
        text.push_str(&format!("{name}: {value}\r\n"));
    }
    text.push_str("\r\n");
    s.write_all(text.as_bytes()).unwrap();
    let mut buf = Vec::new();
    if let Err(e) = s.read_to_end(&mut buf) {
        panic!("{method} {path}: reading the answer: {e}; got so far: {buf:?}");
    }
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("{method} {path}: no HTTP head in {text:?}"));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("{method} {path}: no status in {head:?}"));
    Response {
        status,
        head: head.to_owned(),
        body: body.to_owned(),
    }
}

fn get(addr: SocketAddr, path: &str) -> Response {
    request(addr, "GET", path, &[])
}

/// Polls `f` every 10 ms until it gives a value; panics after `timeout`.
fn poll<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

// ---------------------------------------------------------------------------
// The Prometheus exposition.

/// A parsed scrape: every sample by its full name with labels, as written
/// (`name{label="v"}`).
struct Scrape {
    samples: HashMap<String, f64>,
    text: String,
}

impl Scrape {
    fn get(&self, sample: &str) -> Option<f64> {
        self.samples.get(sample).copied()
    }

    /// The value of `sample`; panics with the whole exposition if absent.
    fn value(&self, sample: &str) -> f64 {
        self.get(sample)
            .unwrap_or_else(|| panic!("no sample {sample} in:\n{}", self.text))
    }
}

/// Checks the text exposition format the way a scraper reads it, and
/// parses it: every sample belongs to the family declared last (samples of
/// a family are together), every family has `# HELP` and `# TYPE` (once),
/// every value is a float, and a histogram's buckets are cumulative with
/// the `+Inf` bucket equal to `_count`.
fn parse_exposition(text: &str) -> Scrape {
    let mut helped = HashSet::new();
    let mut types: HashMap<String, String> = HashMap::new();
    let mut current: Option<String> = None;
    let mut samples = HashMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().unwrap().to_owned();
            assert!(helped.insert(name.clone()), "HELP twice for {name}");
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split(' ');
            let name = parts.next().unwrap().to_owned();
            let kind = parts.next().expect("a type").to_owned();
            assert!(
                ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind.as_str()),
                "unknown type: {line}"
            );
            assert!(
                helped.contains(&name),
                "TYPE before (or without) HELP: {line}"
            );
            assert!(
                types.insert(name.clone(), kind).is_none(),
                "TYPE twice for {name}"
            );
            current = Some(name);
            continue;
        }
        assert!(!line.starts_with('#'), "an unexpected comment: {line}");
        assert!(!line.trim().is_empty(), "an empty line in the exposition");
        let (key, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("no value: {line}"));
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("value is not a float: {line}"));
        let name = key.split('{').next().unwrap();
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| {
                let base = name.strip_suffix(suffix)?;
                (types.get(base).map(String::as_str) == Some("histogram")).then_some(base)
            })
            .unwrap_or(name);
        assert!(
            types.contains_key(family) && helped.contains(family),
            "a sample without HELP and TYPE: {line}"
        );
        assert_eq!(
            current.as_deref(),
            Some(family),
            "a sample away from its family's block: {line}"
        );
        if key.contains('{') {
            assert!(key.ends_with('}'), "unterminated labels: {line}");
        }
        assert!(
            samples.insert(key.to_owned(), value).is_none(),
            "sample twice: {line}"
        );
    }
    for (family, kind) in &types {
        if kind != "histogram" {
            continue;
        }
        let mut buckets: Vec<(f64, f64)> = samples
            .iter()
            .filter_map(|(k, v)| {
                let le = k
                    .strip_prefix(&format!("{family}_bucket{{le=\""))?
                    .strip_suffix("\"}")?;
                let le = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().unwrap()
                };
                Some((le, *v))
            })
            .collect();
        buckets.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap());
        assert!(
            buckets.last().is_some_and(|b| b.0.is_infinite()),
            "{family}: no +Inf bucket"
        );
        assert!(
            buckets.windows(2).all(|w| w[0].1 <= w[1].1),
            "{family}: buckets are not cumulative: {buckets:?}"
        );
        let count = samples
            .get(&format!("{family}_count"))
            .unwrap_or_else(|| panic!("{family}: no _count"));
        assert_eq!(
            buckets.last().unwrap().1,
            *count,
            "{family}: +Inf != _count"
        );
        assert!(
            samples.contains_key(&format!("{family}_sum")),
            "{family}: no _sum"
        );
    }
    Scrape {
        samples,
        text: text.to_owned(),
    }
}

/// `GET /metrics` from loopback: 200 with the exposition's content type,
/// parsed and checked.
fn scrape(addr: SocketAddr) -> Scrape {
    let r = get(addr, "/metrics");
    assert_eq!(r.status, 200, "{}\n{}", r.head, r.body);
    assert_eq!(
        r.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8"),
        "{}",
        r.head
    );
    parse_exposition(&r.body)
}

// ---------------------------------------------------------------------------
// Processes the harness does not start.

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_interviewd")
}

/// A process started by a test (in its own process group, killed with it
/// on drop), with its stderr collected.
struct Proc {
    child: Child,
    log: Arc<Mutex<String>>,
    log_eof: std::sync::mpsc::Receiver<()>,
}

impl Proc {
    fn spawn(command: &mut Command) -> Proc {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {command:?}: {e}"));
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let sink = log.clone();
        let (tx, log_eof) = std::sync::mpsc::channel();
        // Ends at EOF, when the process (group) is gone.
        std::thread::spawn(move || {
            let mut reader = std::io::BufReader::new(stderr);
            let mut line = String::new();
            while matches!(std::io::BufRead::read_line(&mut reader, &mut line), Ok(n) if n > 0) {
                sink.lock().unwrap().push_str(&line);
                line.clear();
            }
            let _ = tx.send(());
        });
        Proc {
            child,
            log,
            log_eof,
        }
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Waits until the log contains `needle`; panics with the log after
    /// [`WAIT`].
    fn wait_for_log(&self, needle: &str) {
        let deadline = Instant::now() + WAIT;
        while !self.log().contains(needle) {
            if Instant::now() > deadline {
                panic!("log never contained {needle:?}; log:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn signal(&self, signal: i32) {
        // SAFETY: kill(2) has no memory-safety preconditions.
        assert_eq!(unsafe { libc::kill(self.child.id() as i32, signal) }, 0);
    }

    fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                let _ = self.log_eof.recv_timeout(Duration::from_secs(2));
                return status;
            }
            if Instant::now() > deadline {
                panic!("did not exit within {timeout:?}; log:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        // SAFETY: kill(2) on the process group this Proc started.
        unsafe { libc::kill(-(self.child.id() as i32), libc::SIGKILL) };
        let _ = self.child.wait();
    }
}

/// `interviewd serve` on any free port with a temporary state directory,
/// at debug level, started directly rather than by `common::Daemon`: that
/// harness's log reader takes every line containing "listening on " for
/// the address line and dies (losing the rest of the log) on the daemon's
/// debug line `sd_notify: READY=1 (...; listening on ADDR)`, which is
/// logged only when NOTIFY_SOCKET is set.
struct Served {
    proc: Proc,
    addr: SocketAddr,
    /// The `--config` file (empty at start).
    config: PathBuf,
    _state: tempfile::TempDir,
}

impl Served {
    /// Starts it and waits for its `listening on ADDR` log line.
    fn start(customize: impl FnOnce(&mut Command)) -> Served {
        Served::launch(customize, |proc| {
            poll("the `listening on` line", WAIT, || {
                proc.log()
                    .lines()
                    .find_map(|l| l.split("listening on ").nth(1)?.trim().parse().ok())
            })
        })
    }

    /// Starts it; `address` waits for whatever says where it listens.
    fn launch(
        customize: impl FnOnce(&mut Command),
        address: impl FnOnce(&Proc) -> SocketAddr,
    ) -> Served {
        let state = tempfile::tempdir().expect("temp dir");
        let config = state.path().join("interviewd.toml");
        std::fs::write(&config, "").unwrap();
        let mut command = Command::new(bin());
        command
            .arg("serve")
            .arg("--config")
            .arg(&config)
            .args([
                "--log-level",
                "debug",
                "--listen",
                "127.0.0.1:0",
                "--state-dir",
            ])
            .arg(state.path().join("state"))
            .env_remove("JOURNAL_STREAM");
        customize(&mut command);
        let proc = Proc::spawn(&mut command);
        let addr = address(&proc);
        Served {
            proc,
            addr,
            config,
            _state: state,
        }
    }

    fn url(&self) -> String {
        format!("ws://{}/v1/realtime", self.addr)
    }

    fn pid(&self) -> i32 {
        self.proc.child.id() as i32
    }

    /// Sends `signal` and waits for the exit; the status and how long it took.
    fn stop(&mut self, signal: i32) -> (ExitStatus, Duration) {
        let started = Instant::now();
        self.proc.signal(signal);
        (self.proc.wait_exit(WAIT), started.elapsed())
    }
}

/// Whether `pid` is alive and not a zombie.
fn running(pid: i32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // The state follows the parenthesized command name.
    let state = stat.rsplit_once(')').map(|(_, rest)| rest.trim_start());
    !matches!(state.and_then(|s| s.chars().next()), Some('Z' | 'X') | None)
}

/// A port that was free a moment ago.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A test that cannot run here says why, or fails when
/// INTERVIEWD_REQUIRE_ROOT_TESTS=1 says it must run.
fn skip(test: &str, why: &str) {
    if std::env::var("INTERVIEWD_REQUIRE_ROOT_TESTS").as_deref() == Ok("1") {
        panic!("{test}: {why}, and INTERVIEWD_REQUIRE_ROOT_TESTS=1");
    }
    eprintln!("SKIPPED {test}: {why}");
}

const ANSWER: &str =
    "I built a service with my team, designed the storage and shipped it to users.";

// ---------------------------------------------------------------------------
// sd_notify

/// What systemd is told over the life of the daemon: `READY=1` with a
/// STATUS naming the bound address once it serves (and /healthz answers
/// the moment READY has arrived), a STATUS update when an interview
/// starts, `RELOADING=1` with a current `MONOTONIC_USEC` then `READY=1` on
/// SIGHUP, and `STOPPING=1` on SIGTERM, after which it exits 0. Without
/// this a `Type=notify` unit never starts, a reload is never seen to end,
/// and `systemctl status` shows nothing true.
#[test]
fn the_service_manager_hears_ready_status_reload_and_stopping() {
    let notes = Notifications::bind();
    // As systemd does: wait for READY=1 alone, not for the log.
    let mut first = None;
    let mut daemon = Served::launch(
        |c| notes.configure(c, None),
        |_| {
            let (i, _, ready) = notes.wait_for(0, "READY=1", WAIT, |m| has(m, "READY=1"));
            let addr = field(&ready, "STATUS")
                .and_then(|s| s.split("listening on ").nth(1)?.trim().parse().ok())
                .unwrap_or_else(|| panic!("no `listening on ADDR` in READY's STATUS: {ready:?}"));
            first = Some((i, ready));
            addr
        },
    );
    let (i, ready) = first.unwrap();
    // READY means serving: one try, no retry.
    let health = get(daemon.addr, "/healthz");
    assert_eq!(
        health.status, 200,
        "/healthz right after READY: {}",
        health.body
    );
    let status = field(&ready, "STATUS").unwrap();
    assert!(status.contains("0 interviewing"), "{status:?}");
    // The address systemd is told is the one the log gives.
    daemon
        .proc
        .wait_for_log(&format!("listening on {}\n", daemon.addr));

    let mut client = Client::connect(&daemon.url());
    // STATUS= is rate-limited to once a second.
    let (i, _, update) = notes.wait_for(
        i + 1,
        "STATUS with 1 interviewing",
        Duration::from_secs(5),
        |m| field(m, "STATUS").is_some_and(|s| s.contains("1 interviewing")),
    );
    assert!(
        !has(&update, "READY=1"),
        "a status update is not READY: {update:?}"
    );

    let before = monotonic_usec();
    daemon.proc.signal(libc::SIGHUP);
    let (j, _, reloading) = notes.wait_for(i + 1, "RELOADING=1", WAIT, |m| has(m, "RELOADING=1"));
    let after = monotonic_usec();
    let stamp: u64 = field(&reloading, "MONOTONIC_USEC")
        .unwrap_or_else(|| panic!("RELOADING=1 without MONOTONIC_USEC: {reloading:?}"))
        .parse()
        .expect("MONOTONIC_USEC is a number");
    assert!(
        (before..=after).contains(&stamp),
        "MONOTONIC_USEC={stamp} is not between {before} and {after} (CLOCK_MONOTONIC)"
    );
    let (j, _, _) = notes.wait_for(j + 1, "READY=1 after the reload", WAIT, |m| {
        has(m, "READY=1")
    });
    daemon.proc.wait_for_log("SIGHUP: configuration reloaded");
    // A refused reload is still a finished one: READY=1 again, or systemd
    // would wait for it until its timeout.
    std::fs::write(&daemon.config, "[sessions]\nping_interval = \"3m\"\n").unwrap();
    daemon.proc.signal(libc::SIGHUP);
    let (j, _, _) = notes.wait_for(j + 1, "RELOADING=1 (refused reload)", WAIT, |m| {
        has(m, "RELOADING=1")
    });
    notes.wait_for(j + 1, "READY=1 after a refused reload", WAIT, |m| {
        has(m, "READY=1")
    });
    daemon.proc.wait_for_log("reload refused");
    // The interview carries on across both.
    client.answer(ANSWER);

    let from = notes.all().len();
    let (status, took) = daemon.stop(libc::SIGTERM);
    assert_eq!(status.code(), Some(0), "log:\n{}", daemon.proc.log());
    let (_, _, stopping) = notes.wait_for(from, "STOPPING=1", Duration::from_secs(2), |m| {
        has(m, "STOPPING=1")
    });
    assert!(
        field(&stopping, "STATUS").is_some_and(|s| s.contains("SIGTERM")),
        "{stopping:?}"
    );
    eprintln!("stopped in {} ms", took.as_millis());
}

/// With `WATCHDOG_USEC=400000` the central loop sends `WATCHDOG=1` about
/// every 200 ms (half the interval, as sd_watchdog_enabled(3) advises), so
/// systemd does not kill a healthy daemon. Loose bounds: the machine is
/// noisy.
#[test]
fn watchdog_pings_come_at_half_the_interval() {
    let notes = Notifications::bind();
    let _daemon = Served::start(|c| notes.configure(c, Some("400000")));
    notes.wait_for(0, "READY=1", WAIT, |m| has(m, "READY=1"));
    let pings = poll("6 watchdog pings", Duration::from_secs(10), || {
        let p = notes.pings();
        (p.len() >= 6).then_some(p)
    });
    let gaps: Vec<Duration> = pings.windows(2).map(|w| w[1] - w[0]).collect();
    let mean = (pings[pings.len() - 1] - pings[0]) / (pings.len() - 1) as u32;
    eprintln!("watchdog gaps: {gaps:?}, mean {mean:?}");
    assert!(
        mean >= Duration::from_millis(100) && mean <= Duration::from_millis(400),
        "mean gap {mean:?} (gaps {gaps:?}); expected about 200 ms"
    );
    // systemd acts after 400 ms without a ping; on a noisy machine allow
    // a single gap twice that, no more.
    assert!(
        gaps.iter().all(|g| *g < Duration::from_millis(800)),
        "a gap long enough for systemd to kill the daemon: {gaps:?}"
    );
}

/// `WATCHDOG_PID` naming another process means the watchdog is not ours
/// (sd_watchdog_enabled(3)): the daemon is ready but sends no
/// `WATCHDOG=1`, which would otherwise be charged to the wrong process.
#[test]
fn watchdog_for_another_pid_sends_no_pings() {
    let notes = Notifications::bind();
    let _daemon = Served::start(|c| {
        notes.configure(c, Some("400000"));
        c.env("WATCHDOG_PID", std::process::id().to_string());
    });
    let (_, ready_at, _) = notes.wait_for(0, "READY=1", WAIT, |m| has(m, "READY=1"));
    // Five intervals' worth of silence is the observation itself.
    let window_end = ready_at + Duration::from_secs(1);
    poll("the observation window", WAIT, || {
        (Instant::now() >= window_end).then_some(())
    });
    let pings = notes.pings();
    assert!(
        pings.is_empty(),
        "{} WATCHDOG=1 sent for another process's watchdog",
        pings.len()
    );
}

/// The watchdog catches a stuck central loop: with `--debug-stall-signal`,
/// SIGUSR2 blocks the loop (the log says so), and the WATCHDOG=1 pings
/// stop (none for over 3× the 200 ms interval) while the process is still
/// alive, which is exactly what makes systemd kill and restart it. If the
/// pings came from a thread other than the loop, they would carry on.
#[test]
fn a_stuck_loop_stops_the_watchdog_pings() {
    let notes = Notifications::bind();
    let mut daemon = Served::start(|c| {
        notes.configure(c, Some("400000"));
        c.arg("--debug-stall-signal");
    });
    poll("3 watchdog pings before the stall", WAIT, || {
        (notes.pings().len() >= 3).then_some(())
    });
    daemon.proc.signal(libc::SIGUSR2);
    daemon.proc.wait_for_log("blocking the central loop");
    // A ping the loop sent just before it took the signal may still be
    // in flight; after this grace none may come.
    let quiet_from = Instant::now() + Duration::from_millis(100);
    let window_end = quiet_from + Duration::from_millis(1000);
    poll("the observation window", WAIT, || {
        (Instant::now() >= window_end).then_some(())
    });
    let late: Vec<Duration> = notes
        .pings()
        .into_iter()
        .filter(|t| *t > quiet_from)
        .map(|t| t - quiet_from)
        .collect();
    assert!(
        late.is_empty(),
        "WATCHDOG=1 still sent by a stuck loop, at {late:?} into the window"
    );
    assert!(
        running(daemon.pid()),
        "the daemon died instead of hanging; log:\n{}",
        daemon.proc.log()
    );
    let (status, _) = daemon.stop(libc::SIGKILL);
    assert_eq!(status.signal(), Some(libc::SIGKILL));
}

/// A service manager that stops reading its notification socket for a
/// while (PID 1 busy in a long `daemon-reload`, a supervisor or proxy that
/// reads only until READY=1) must not stop the daemon: notifications are
/// best-effort datagrams, sent without blocking from the central loop, so
/// once the receiver's queue holds `net.unix.max_dgram_qlen` datagrams the
/// next ones are dropped, and /healthz and SIGTERM are still served.
#[test]
fn a_notification_receiver_that_stops_reading_does_not_block_the_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify.sock");
    // Bound, never read.
    let _deaf = UnixDatagram::bind(&path).unwrap();
    let daemon = Served::start(|c| {
        c.env("NOTIFY_SOCKET", &path)
            .env("WATCHDOG_USEC", "2000")
            .env_remove("WATCHDOG_PID");
    });
    // A ping every millisecond fills the receiver's queue within this.
    let qlen: u64 = std::fs::read_to_string("/proc/sys/net/unix/max_dgram_qlen")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(512);
    let full_at = Instant::now() + Duration::from_millis(2 * qlen + 500);
    poll("the receiver's queue to fill", WAIT, || {
        (Instant::now() >= full_at).then_some(())
    });
    let mut s = TcpStream::connect(daemon.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut answer = Vec::new();
    let read = s.read_to_end(&mut answer);
    let wchan =
        std::fs::read_to_string(format!("/proc/{}/wchan", daemon.pid())).unwrap_or_default();
    assert!(
        read.is_ok() && answer.starts_with(b"HTTP/1.1 200"),
        "/healthz unanswered ({read:?}, {:?}) while the notification socket is full; \
         the daemon's main thread waits in {wchan:?}",
        String::from_utf8_lossy(&answer)
    );
}

// ---------------------------------------------------------------------------
// Socket activation

const SOCKET_ACTIVATE: &str = "/usr/bin/systemd-socket-activate";

/// Under socket activation the daemon serves the socket it was given, not
/// `server.listen` (neither the file's nor `--listen`): the connection that
/// started it (systemd-socket-activate execs the daemon on the first
/// connection) is answered, the log says "socket activation", the address
/// in its `listening on` line is the socket's, nothing listens on the
/// configured address, an interview works, a SIGHUP reload is taken (the
/// file's `server.listen` differs from the socket, but the socket wins
/// there too), and SIGTERM still stops it with status 0 and close 1012.
#[test]
fn socket_activation_serves_the_passed_socket() {
    let test = "socket_activation_serves_the_passed_socket";
    if !Path::new(SOCKET_ACTIVATE).exists() {
        return skip(
            test,
            &format!("no {SOCKET_ACTIVATE} (Debian's systemd package)"),
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("interviewd.toml");
    std::fs::write(&config, "[server]\nlisten = \"127.0.0.1:1\"\n").unwrap();
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut activator = Proc::spawn(
        Command::new(SOCKET_ACTIVATE)
            .arg("-l")
            .arg(addr.to_string())
            .arg(bin())
            .args(["serve", "--log-level", "debug", "--listen", "127.0.0.1:1"])
            .arg("--config")
            .arg(&config)
            .arg("--state-dir")
            .arg(dir.path().join("state")),
    );
    // The activator's own line: it listens before anything is started.
    activator.wait_for_log(&format!("Listening on {addr}"));
    assert!(
        !activator.log().contains("listening on "),
        "the daemon started before any connection:\n{}",
        activator.log()
    );
    // This connection starts the daemon and is served by it.
    let first = get(addr, "/healthz");
    assert_eq!(
        first.status,
        200,
        "{}\nlog:\n{}",
        first.body,
        activator.log()
    );
    assert_eq!(first.body, "ok\n");
    // The log reader may lag the answer by a moment.
    activator.wait_for_log("socket activation: serving the socket systemd passed");
    activator.wait_for_log(&format!("listening on {addr}\n"));
    assert!(
        TcpStream::connect("127.0.0.1:1").is_err(),
        "something listens on the configured 127.0.0.1:1"
    );
    // It is a whole daemon on that socket: an interview works.
    let mut client = Client::connect(&format!("ws://{addr}/v1/realtime"));
    client.answer(ANSWER);
    // A reload keeps the passed socket: the file's server.listen still
    // differs from it, and that is no reason to refuse the reload.
    activator.signal(libc::SIGHUP);
    poll("the reload's outcome in the log", WAIT, || {
        let log = activator.log();
        (log.contains("SIGHUP: configuration reloaded") || log.contains("reload refused"))
            .then_some(())
    });
    let log = activator.log();
    assert!(
        log.contains("SIGHUP: configuration reloaded"),
        "a reload under socket activation was refused:\n{log}"
    );
    assert_eq!(get(addr, "/healthz").status, 200);
    client.answer(ANSWER);
    let started = Instant::now();
    activator.signal(libc::SIGTERM);
    let status = activator.wait_exit(WAIT);
    assert_eq!(status.code(), Some(0), "log:\n{}", activator.log());
    eprintln!(
        "activated daemon stopped in {} ms",
        started.elapsed().as_millis()
    );
    assert_eq!(client.read_to_end(), Ended::Closed(1012));
}

/// Runs `interviewd serve` through `sh` with `LISTEN_PID` set to its own
/// pid, `LISTEN_FDS=fds`, and `redirects` opening descriptors 3 and up
/// (what systemd would pass). Returns the exit status and stderr.
fn serve_with_passed_fds(fds: u32, redirects: &str) -> (ExitStatus, String) {
    let state = tempfile::tempdir().unwrap();
    let script = format!(
        "LISTEN_PID=$$ LISTEN_FDS={fds} exec \"$0\" serve --state-dir \"$1\" --listen 127.0.0.1:0 {redirects}"
    );
    let (status, _out, err) = run_with_deadline(
        Command::new("sh")
            .arg("-c")
            .arg(script)
            .arg(bin())
            .arg(state.path().join("state"))
            .env_remove("NOTIFY_SOCKET"),
        WAIT,
    );
    (status, err)
}

/// A descriptor that is not a listening stream socket (here /dev/null) is
/// refused at start with a message that says what is wrong and what the
/// socket unit needs, and exit status 1 (not a daemon that serves nothing
/// or crashes on its first accept).
#[test]
fn socket_activation_refuses_a_descriptor_that_is_not_a_listening_socket() {
    let (status, err) = serve_with_passed_fds(1, "3</dev/null");
    assert_eq!(status.code(), Some(1), "stderr:\n{err}");
    assert!(
        err.contains("socket activation") && err.contains("not a listening stream socket"),
        "stderr:\n{err}"
    );
    assert!(!err.contains("listening on "), "it served anyway:\n{err}");
}

/// Passes one socket of `kind` (`udp`: bound, not listening; `unix`: a
/// listening Unix stream socket in `dir`) as descriptor 3 with
/// LISTEN_FDS/LISTEN_PID, as systemd would, and runs `interviewd serve`.
fn serve_with_passed_socket(kind: &str) -> (ExitStatus, String) {
    const PASS: &str = r#"
import os, socket, sys
kind, dir, binary = sys.argv[1:4]
if kind == "udp":
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
else:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(os.path.join(dir, "interviewd.sock"))
    s.listen()
if s.fileno() != 3:
    os.dup2(s.fileno(), 3)
os.set_inheritable(3, True)
os.environ["LISTEN_FDS"] = "1"
os.environ["LISTEN_PID"] = str(os.getpid())
os.execv(binary, [binary, "serve", "--state-dir", os.path.join(dir, "state")])
"#;
    let dir = tempfile::tempdir().unwrap();
    let (status, _out, err) = run_with_deadline(
        Command::new("python3")
            .args(["-c", PASS, kind])
            .arg(dir.path())
            .arg(bin())
            .env_remove("NOTIFY_SOCKET"),
        WAIT,
    );
    (status, err)
}

/// Sockets the daemon cannot serve are refused at start, exit status 1,
/// each with its own reason: a datagram socket (`ListenDatagram=`) is not
/// a listening stream socket; a Unix stream socket (`ListenStream=/path`)
/// is not a TCP socket.
#[test]
fn socket_activation_refuses_sockets_it_cannot_serve() {
    let (status, err) = serve_with_passed_socket("udp");
    assert_eq!(status.code(), Some(1), "udp: stderr:\n{err}");
    assert!(
        err.contains("socket activation") && err.contains("not a listening stream socket"),
        "udp: stderr:\n{err}"
    );
    let (status, err) = serve_with_passed_socket("unix");
    assert_eq!(status.code(), Some(1), "unix: stderr:\n{err}");
    assert!(
        err.contains("socket activation") && err.contains("not a TCP socket"),
        "unix: stderr:\n{err}"
    );
}

/// Two passed sockets are refused at start with a clear message (the
/// daemon serves one; which would it pick?), exit status 1.
#[test]
fn socket_activation_refuses_two_descriptors() {
    let (status, err) = serve_with_passed_fds(2, "3</dev/null 4</dev/null");
    assert_eq!(status.code(), Some(1), "stderr:\n{err}");
    assert!(
        err.contains("socket activation") && err.contains("2 sockets were passed"),
        "stderr:\n{err}"
    );
}

// ---------------------------------------------------------------------------
// /healthz and /readyz

/// `/healthz` is 200 "ok" (HEAD: the same head, no body) whatever the load;
/// `/readyz` is 200 "ready: 0 of N sessions" with N = limits.max_sessions,
/// 503 while the daemon is at max_sessions, and 200 again once that
/// interview has ended, so a load balancer sends new candidates elsewhere
/// exactly while they would be refused.
#[test]
fn readiness_follows_capacity_and_health_does_not() {
    let daemon = Daemon::start("[limits]\nmax_sessions = 1\n");
    let health = get(daemon.addr, "/healthz");
    assert_eq!((health.status, health.body.as_str()), (200, "ok\n"));
    let head = request(daemon.addr, "HEAD", "/healthz", &[]);
    assert_eq!(head.status, 200, "{}", head.head);
    assert_eq!(head.header("content-length"), Some("3"), "{}", head.head);
    assert!(head.header("content-type").is_some(), "{}", head.head);
    assert_eq!(head.body, "", "HEAD answered with a body");
    let ready = get(daemon.addr, "/readyz");
    assert_eq!(
        (ready.status, ready.body.as_str()),
        (200, "ready: 0 of 1 sessions\n")
    );

    let mut client = Client::connect(&daemon.url());
    let full = poll("/readyz 503 at max_sessions", WAIT, || {
        let r = get(daemon.addr, "/readyz");
        (r.status == 503).then_some(r)
    });
    assert!(full.body.contains("at capacity"), "{}", full.body);
    let health = get(daemon.addr, "/healthz");
    assert_eq!(
        health.status, 200,
        "health is not capacity: {}",
        health.body
    );

    // End the interview (a client that merely left would be suspended,
    // holding its slot for sessions.resume_window).
    client.send(json!({"type": "interview.finish"}));
    client.wait_for("interview.assessment.completed");
    assert_eq!(client.read_to_end(), Ended::Closed(1000));
    let again = poll("/readyz 200 after the interview", WAIT, || {
        let r = get(daemon.addr, "/readyz");
        (r.status == 200).then_some(r)
    });
    assert_eq!(again.body, "ready: 0 of 1 sessions\n");
}

// ---------------------------------------------------------------------------
// /metrics

/// `/metrics` from loopback is a valid Prometheus exposition (every family
/// with HELP and TYPE, its samples together, float values, cumulative
/// histograms), its gauges show a live interview while it is live, and
/// after one whole scripted interview the counters and histograms have
/// moved: started, ended "completed", assessed "completed", the
/// assessment's and the journal syncs' durations.
#[test]
fn metrics_are_valid_and_count_a_whole_interview() {
    let daemon = Daemon::start("");
    let before = scrape(daemon.addr);
    assert_eq!(
        before.value("interviewd_sessions_started_total{engine=\"scripted\"}"),
        0.0
    );
    assert!(
        before.get("interviewd_last_shutdown_exit_status").is_none(),
        "a first start reports a previous shutdown:\n{}",
        before.text
    );
    let live = "interviewd_sessions{phase=\"interview\",engine=\"scripted\"}";

    let mut client = Client::connect(&daemon.url());
    client.answer(ANSWER);
    let during = scrape(daemon.addr);
    assert_eq!(during.value(live), 1.0, "{}", during.text);
    assert_eq!(during.value("interviewd_session_slots"), 1.0);
    assert_eq!(
        during.value("interviewd_sessions_started_total{engine=\"scripted\"}"),
        1.0
    );

    client.answer_all(ANSWER);
    client.wait_for("interview.assessment.completed");
    assert_eq!(client.read_to_end(), Ended::Closed(1000));
    let after = poll("the session's end in the metrics", WAIT, || {
        let s = scrape(daemon.addr);
        (s.value("interviewd_sessions_ended_total{reason=\"completed\"}") >= 1.0
            && s.value(live) == 0.0)
            .then_some(s)
    });
    for (sample, at_least) in [
        (
            "interviewd_sessions_started_total{engine=\"scripted\"}",
            1.0,
        ),
        ("interviewd_assessments_total{outcome=\"completed\"}", 1.0),
        ("interviewd_assessment_duration_seconds_count", 1.0),
        ("interviewd_journal_sync_seconds_count", 1.0),
    ] {
        assert!(
            after.value(sample) >= at_least,
            "{sample} < {at_least}:\n{}",
            after.text
        );
    }
    assert_eq!(
        after.value("interviewd_assessments_total{outcome=\"failed\"}"),
        0.0
    );
    assert_eq!(after.value("interviewd_session_slots"), 0.0);
}

/// A trusted proxy (loopback, by default) forwarding a client that is not
/// in `metrics.allow` gets 403: a reverse proxy on the same host does not
/// open the metrics to the Internet. Loopback itself still gets them.
#[test]
fn metrics_refuse_a_forwarded_client_outside_allow() {
    let daemon = Daemon::start("");
    let forwarded = request(
        daemon.addr,
        "GET",
        "/metrics",
        &[("X-Forwarded-For", "203.0.113.9")],
    );
    assert_eq!(
        forwarded.status, 403,
        "{}\n{}",
        forwarded.head, forwarded.body
    );
    assert!(
        !forwarded.body.contains("interviewd_"),
        "{}",
        forwarded.body
    );
    scrape(daemon.addr);
}

/// With `metrics.allow = []` and a `token_file`, only
/// `Authorization: Bearer <token>` opens the metrics (401 without a token
/// or with a wrong one, so the scraper knows to authenticate), and the
/// token never reaches the log, even at debug level.
#[test]
fn metrics_token_opens_them_and_never_reaches_the_log() {
    let secrets = tempfile::tempdir().unwrap();
    let token = format!("mtok-{}-{:x}", std::process::id(), monotonic_usec());
    let token_file = secrets.path().join("metrics-token");
    std::fs::write(&token_file, format!("{token}\n")).unwrap();
    let config = format!(
        "[metrics]\nallow = []\ntoken_file = {}\n",
        toml_string(token_file.to_str().unwrap())
    );
    let mut daemon = Daemon::start_with(&config, |c| {
        c.env_remove("CREDENTIALS_DIRECTORY");
    });
    let none = get(daemon.addr, "/metrics");
    assert_eq!(none.status, 401, "{}\n{}", none.head, none.body);
    let wrong = request(
        daemon.addr,
        "GET",
        "/metrics",
        &[("Authorization", "Bearer not-the-token")],
    );
    assert_eq!(wrong.status, 401, "{}\n{}", wrong.head, wrong.body);
    let right = request(
        daemon.addr,
        "GET",
        "/metrics",
        &[("Authorization", &format!("Bearer {token}"))],
    );
    assert_eq!(right.status, 200, "{}\n{}", right.head, right.body);
    parse_exposition(&right.body);
    // Rotation: SIGHUP re-reads the file; the old token no longer opens
    // them, the new one does, and neither is logged.
    let rotated = format!("{token}-rotated");
    std::fs::write(&token_file, &rotated).unwrap();
    daemon.signal(libc::SIGHUP);
    daemon.wait_for_log("SIGHUP: configuration reloaded");
    let bearer = |t: &str| {
        request(
            daemon.addr,
            "GET",
            "/metrics",
            &[("Authorization", &format!("Bearer {t}"))],
        )
        .status
    };
    assert_eq!(
        bearer(&token),
        401,
        "the old token still works after rotation"
    );
    assert_eq!(bearer(&rotated), 200, "the rotated token does not work");
    let (status, _) = daemon.stop(libc::SIGTERM, WAIT);
    assert_eq!(status.code(), Some(0));
    let log = daemon.log();
    assert!(log.contains("refused /metrics"), "log:\n{log}");
    assert!(
        !log.contains(&token),
        "the metrics token is in the log:\n{log}"
    );
}

/// Under systemd the token comes from the credential `metrics-token`
/// (`LoadCredential=`), which wins over `metrics.token_file`: the file's
/// token does not open the metrics then, the credential's does, and
/// neither is logged.
#[test]
fn metrics_token_from_the_systemd_credential_wins_over_the_file() {
    let secrets = tempfile::tempdir().unwrap();
    let file_token = format!("file-{:x}", monotonic_usec());
    let credential = format!("cred-{:x}", monotonic_usec());
    let token_file = secrets.path().join("token");
    std::fs::write(&token_file, &file_token).unwrap();
    let credentials = secrets.path().join("credentials");
    std::fs::create_dir(&credentials).unwrap();
    std::fs::write(credentials.join("metrics-token"), format!("{credential}\n")).unwrap();
    let config = format!(
        "[metrics]\nallow = []\ntoken_file = {}\n",
        toml_string(token_file.to_str().unwrap())
    );
    let mut daemon = Daemon::start_with(&config, |c| {
        c.env("CREDENTIALS_DIRECTORY", &credentials);
    });
    let bearer = |t: &str| {
        request(
            daemon.addr,
            "GET",
            "/metrics",
            &[("Authorization", &format!("Bearer {t}"))],
        )
        .status
    };
    assert_eq!(bearer(&credential), 200);
    assert_eq!(bearer(&file_token), 401);
    // The whole log: stopped, read to its end.
    let (status, _) = daemon.stop(libc::SIGTERM, WAIT);
    assert_eq!(status.code(), Some(0));
    let log = daemon.log();
    assert!(
        !log.contains(&credential) && !log.contains(&file_token),
        "a metrics token is in the log:\n{log}"
    );
}

/// The next process reports how the previous one stopped: after a SIGTERM
/// (exit 0) and a start on the same state directory, `/metrics` has
/// `interviewd_last_shutdown_step_seconds` for each of the 5 steps, the
/// total, and `interviewd_last_shutdown_exit_status 0`.
#[test]
fn metrics_report_the_previous_shutdown() {
    let mut daemon = Daemon::start("");
    let (status, _) = daemon.stop(libc::SIGTERM, WAIT);
    assert_eq!(status.code(), Some(0), "log:\n{}", daemon.log());
    let daemon = daemon.restart();
    let s = scrape(daemon.addr);
    let steps: Vec<(&String, &f64)> = s
        .samples
        .iter()
        .filter(|(k, _)| k.starts_with("interviewd_last_shutdown_step_seconds{"))
        .collect();
    for n in 1..=5 {
        let prefix = format!("interviewd_last_shutdown_step_seconds{{step=\"{n}/5 ");
        let found: Vec<_> = steps
            .iter()
            .filter(|(k, _)| k.starts_with(&prefix))
            .collect();
        assert_eq!(found.len(), 1, "step {n}/5:\n{}", s.text);
        assert!(*found[0].1 >= 0.0 && *found[0].1 < 5.0, "{found:?}");
    }
    assert_eq!(steps.len(), 5, "{}", s.text);
    assert_eq!(s.value("interviewd_last_shutdown_exit_status"), 0.0);
    // Milliseconds, floored: an idle shutdown may well take "0".
    let total = s.value("interviewd_last_shutdown_seconds");
    let longest = steps.iter().map(|(_, v)| **v).fold(0.0, f64::max);
    assert!((longest..5.0).contains(&total), "{total}:\n{}", s.text);
}

// ---------------------------------------------------------------------------
// Slow scrapers

/// A client socket with the smallest receive buffer the kernel allows, set
/// before connecting so that the window it advertises stays tiny.
fn tiny_window_connect(addr: SocketAddr) -> TcpStream {
    connect_with_buffers(addr, Some(1), None)
}

/// One answer and the next interviewer turn; how long both took.
fn round_trip(client: &mut Client) -> Duration {
    let t = Instant::now();
    client.answer(ANSWER);
    client.next_turn();
    t.elapsed()
}

fn mean(d: &[Duration]) -> Duration {
    d.iter().sum::<Duration>() / d.len() as u32
}

/// A scrape is one connection's own task: scrapers that send their request
/// and never read (tiny receive window; `/metrics`, and a large asset
/// whose write may not fit the socket buffers), and scrapers that stop
/// halfway through their request head, cost a live interview nothing
/// measurable, and neither do 50 scrapes at once. A scrape that held the
/// central loop or the executor would add seconds (the write timeout is
/// 10 s, the head's grace 2 s), far past the 1 s allowed here. Nor do they
/// hold up a shutdown.
#[test]
fn slow_and_many_scrapers_do_not_delay_a_session() {
    let mut daemon = Daemon::start("");
    let mut client = Client::connect(&daemon.url());
    let baseline: Vec<Duration> = (0..2).map(|_| round_trip(&mut client)).collect();

    let mut stalled = Vec::new();
    for path in ["/metrics", "/assets/app.js"] {
        for _ in 0..10 {
            let mut s = tiny_window_connect(daemon.addr);
            s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
                .unwrap();
            stalled.push(s);
        }
    }
    // Whether those writes block depends on how far the kernel grows the
    // daemon's send buffer; these certainly wait, in the head's read.
    for _ in 0..10 {
        let mut s = TcpStream::connect(daemon.addr).unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
            .unwrap();
        stalled.push(s);
    }
    // Ten at least are in the table, waiting (the scrape is one more).
    let stuck = poll("the stalled scrapers in the table", WAIT, || {
        let n = scrape(daemon.addr).value("interviewd_handshakes");
        (n >= 11.0).then_some(n)
    });
    let slowed: Vec<Duration> = (0..2).map(|_| round_trip(&mut client)).collect();

    let scrapers: Vec<_> = (0..50)
        .map(|_| {
            let addr = daemon.addr;
            std::thread::spawn(move || get(addr, "/metrics").status)
        })
        .collect();
    let crowded = round_trip(&mut client);
    let statuses: Vec<u16> = scrapers.into_iter().map(|t| t.join().unwrap()).collect();
    eprintln!(
        "round trips: baseline {baseline:?}, with {} stalled scrapers ({stuck} connections in their handshake) {slowed:?}, with 50 scrapes {crowded:?}",
        stalled.len()
    );
    assert!(
        statuses.iter().all(|s| *s == 200),
        "concurrent scrapes: {statuses:?}"
    );
    let allowed = mean(&baseline) + Duration::from_secs(1);
    assert!(
        mean(&slowed) <= allowed,
        "stalled scrapers slowed the interview: {slowed:?} vs {baseline:?}"
    );
    assert!(
        crowded <= allowed,
        "50 scrapes slowed the interview: {crowded:?} vs {baseline:?}"
    );
    // Nor do the stuck writes hold up a shutdown: they are cancelled with
    // everything else, within the usual bound.
    let (status, took) = daemon.stop(libc::SIGTERM, WAIT);
    assert_eq!(status.code(), Some(0), "log:\n{}", daemon.log());
    assert!(
        took < Duration::from_secs(2),
        "shutdown behind stalled scrapers took {took:?}"
    );
    assert_eq!(client.read_to_end(), Ended::Closed(1012));
    drop(stalled);
}

// ---------------------------------------------------------------------------
// Draining

/// A connection that has sent only half its request head when SIGTERM
/// arrives does not hold up the shutdown: it is let go (never upgraded)
/// and the daemon exits 0 within 2 s.
#[test]
fn a_half_sent_request_does_not_hold_up_shutdown() {
    let mut daemon = Daemon::start("");
    let mut half = TcpStream::connect(daemon.addr).unwrap();
    half.write_all(b"GET /v1/realtime HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n")
        .unwrap();
    // The daemon has it: it is in the table, in its handshake (the scrape
    // itself is the other one).
    poll("the half request in the table", WAIT, || {
        (scrape(daemon.addr).value("interviewd_handshakes") >= 2.0).then_some(())
    });
    let (status, took) = daemon.stop(libc::SIGTERM, WAIT);
    assert_eq!(status.code(), Some(0), "log:\n{}", daemon.log());
    assert!(
        took < Duration::from_secs(2),
        "took {took:?}; log:\n{}",
        daemon.log()
    );
    half.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut got = Vec::new();
    match half.read_to_end(&mut got) {
        Ok(_) => {}
        Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
        Err(e) => panic!("the half request's connection did not end: {e}"),
    }
    let got = String::from_utf8_lossy(&got);
    assert!(!got.contains(" 101 "), "upgraded during shutdown: {got}");
    eprintln!("half request: closed after {took:?} with {got:?}");
}

// ---------------------------------------------------------------------------
// check-config

fn check_config(args: &[&str], file: &Path, env: &[(&str, &str)]) -> (ExitStatus, String, String) {
    let mut command = Command::new(bin());
    command
        .arg("check-config")
        .args(args)
        .arg(file)
        .current_dir("/")
        .env_remove("STATE_DIRECTORY")
        .env_remove("CREDENTIALS_DIRECTORY");
    for (k, v) in env {
        command.env(k, v);
    }
    run_with_deadline(&mut command, WAIT)
}

/// `check-config --quiet` (the unit's `ExecReload=` guard) prints nothing
/// at all for a valid file and exits 0.
#[test]
fn check_config_quiet_is_silent_for_a_valid_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("config.toml");
    std::fs::write(
        &file,
        "[limits]\nmax_sessions = 10\n[sessions]\nping_interval = \"30s\"\n",
    )
    .unwrap();
    let (status, out, err) = check_config(&["--quiet"], &file, &[]);
    assert_eq!(status.code(), Some(0), "stderr: {err}");
    assert_eq!((out.as_str(), err.as_str()), ("", ""));
}

/// An invalid file exits 1 with a message that names the key at fault and
/// the one it conflicts with (`sessions.ping_interval` not below the
/// default `sessions.idle_timeout`), with and without `--quiet`, so a
/// refused reload tells the operator what to fix.
#[test]
fn check_config_names_the_keys_of_an_invalid_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("config.toml");
    std::fs::write(&file, "[sessions]\nping_interval = \"3m\"\n").unwrap();
    for args in [&["--quiet"][..], &[][..]] {
        let (status, out, err) = check_config(args, &file, &[]);
        assert_eq!(
            status.code(),
            Some(1),
            "{args:?}: stdout {out} stderr {err}"
        );
        assert!(
            err.contains("sessions.ping_interval") && err.contains("sessions.idle_timeout"),
            "{args:?}: {err}"
        );
        assert_eq!(out, "", "{args:?}: an invalid file printed a configuration");
    }
}

/// `check-config` prints the state directory the daemon would use: a
/// relative `state_dir` resolved against the file's directory (not the
/// working directory), and, without one, `$STATE_DIRECTORY` as systemd
/// sets it.
#[test]
fn check_config_prints_the_state_dir_the_daemon_would_use() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("config.toml");
    std::fs::write(&file, "[server]\nstate_dir = \"state\"\n").unwrap();
    let (status, out, err) = check_config(&[], &file, &[]);
    assert_eq!(status.code(), Some(0), "stderr: {err}");
    let expected = format!(
        "state_dir = {}",
        toml_string(dir.path().join("state").to_str().unwrap())
    );
    assert!(
        out.lines().any(|l| l == expected),
        "expected {expected:?} in:\n{out}"
    );

    std::fs::write(&file, "[limits]\nmax_sessions = 10\n").unwrap();
    let (status, out, err) = check_config(&[], &file, &[("STATE_DIRECTORY", "/var/lib/x")]);
    assert_eq!(status.code(), Some(0), "stderr: {err}");
    assert!(
        out.lines().any(|l| l == "state_dir = \"/var/lib/x\""),
        "expected state_dir = \"/var/lib/x\" in:\n{out}"
    );
}
