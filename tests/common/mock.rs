//! The mock Realtime API (tests/peer/mock_realtime.py, described in
//! tests/peer/mock_realtime.md), for the relay and browser tests.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::Peer;

/// Polls `probe` until it yields a value; panics with `what` (and
/// `context()`) after `timeout`.
pub fn wait_until<T>(
    what: &str,
    timeout: Duration,
    mut probe: impl FnMut() -> Option<T>,
    context: impl Fn() -> String,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = probe() {
            return v;
        }
        if Instant::now() > deadline {
            panic!("{what}: not within {timeout:?}\n{}", context());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A running mock_realtime.py (killed with its process group on drop) and
/// its control directory.
pub struct Mock {
    peer: Peer,
    /// Holds the control directory (`control/`).
    dir: tempfile::TempDir,
    tls: bool,
}

impl Mock {
    /// Starts the mock with these extra arguments and waits for its
    /// `listening on` line.
    pub fn start(args: &[&str]) -> Mock {
        let dir = tempfile::tempdir().expect("temp dir");
        let control = dir.path().join("control");
        std::fs::create_dir_all(&control).unwrap();
        let control = control.to_str().expect("a UTF-8 temp dir").to_owned();
        let mut all = vec!["--port", "0", "--control-dir", &control];
        all.extend_from_slice(args);
        let peer = Peer::start("mock_realtime.py", &all);
        Mock {
            peer,
            dir,
            tls: args.contains(&"--tls-cert"),
        }
    }

    pub fn control(&self) -> PathBuf {
        self.dir.path().join("control")
    }

    pub fn url(&self) -> String {
        let scheme = if self.tls { "wss" } else { "ws" };
        format!("{scheme}://{}/v1/realtime", self.peer.addr)
    }

    /// Writes a control file atomically (a temporary file, then rename).
    pub fn write_control(&self, name: &str, text: &str) {
        let tmp = self.control().join(format!(".{name}.tmp"));
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, self.control().join(name)).unwrap();
    }

    /// The scenario of every connection while no `next-scenario` line is
    /// left.
    pub fn set_scenario(&self, spec: &str) {
        self.write_control("scenario", &format!("{spec}\n"));
    }

    /// One scenario per new connection, in order.
    pub fn set_next_scenarios(&self, specs: &[&str]) {
        self.write_control("next-scenario", &format!("{}\n", specs.join("\n")));
    }

    /// HTTP requests the mock has had, refused ones included.
    pub fn connections(&self) -> usize {
        std::fs::read_to_string(self.control().join("connections"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0)
    }

    /// The records of connection `n` so far (a line still being written is
    /// skipped).
    pub fn log(&self, n: usize) -> Vec<Value> {
        let path = self.control().join(format!("connection-{n}.jsonl"));
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// The raw text of connection `n`'s log.
    pub fn log_text(&self, n: usize) -> String {
        std::fs::read_to_string(self.control().join(format!("connection-{n}.jsonl")))
            .unwrap_or_default()
    }

    /// The client events connection `n` received, as logged.
    pub fn client_events(&self, n: usize) -> Vec<Value> {
        self.log(n)
            .into_iter()
            .filter(|r| r["kind"] == "client")
            .map(|r| r["event"].clone())
            .collect()
    }

    pub fn audio(&self, n: usize) -> Value {
        let path = self.control().join(format!("connection-{n}.audio.json"));
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        serde_json::from_str(&text).expect("audio.json parses")
    }

    /// Waits until connection `n`'s handler has ended (its `closed` record).
    pub fn wait_closed(&self, n: usize, timeout: Duration) -> Value {
        wait_until(
            &format!("the mock's connection {n} closed"),
            timeout,
            || self.log(n).into_iter().find(|r| r["kind"] == "closed"),
            || self.diagnostics(),
        )
    }

    /// Fails on any `mock_bug` record (the mock sent an invalid event or a
    /// handler raised): the tests would then be testing the mock.
    pub fn assert_no_mock_bugs(&self) {
        for n in 1..=self.connections() {
            for r in self.log(n) {
                assert_ne!(r["kind"], "mock_bug", "connection {n}: {r}");
            }
        }
    }

    pub fn diagnostics(&self) -> String {
        let mut s = format!("mock connections: {}\n", self.connections());
        for n in 1..=self.connections() {
            let text = self.log_text(n);
            let tail: Vec<&str> = text.lines().rev().take(15).collect();
            s.push_str(&format!(
                "--- connection-{n}.jsonl (last lines, newest first)\n"
            ));
            for l in tail {
                s.push_str(&l.chars().take(400).collect::<String>());
                s.push('\n');
            }
        }
        s
    }
}
