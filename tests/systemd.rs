//! interviewd under a real systemd: `systemctl start` and `systemctl stop`
//! through tests/systemd/harness.sh, which boots a private systemd as PID 1
//! of new namespaces on a throw-away overlay of `/` (never on the real root).
//!
//! Needs root, util-linux (unshare, nsenter), overlayfs and cgroup2, which
//! the project's machines have. Set INTERVIEWD_SKIP_SYSTEMD=1 to skip it
//! explicitly elsewhere; without that, a machine that cannot boot the
//! harness fails the test rather than passing it silently.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::*;

/// One booted harness; torn down on drop, whatever happened.
struct Harness {
    script: PathBuf,
    state: PathBuf,
    share: PathBuf,
}

impl Harness {
    fn boot(state: &Path, share: &Path) -> Harness {
        let harness = Harness {
            script: Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/systemd/harness.sh"),
            state: state.to_owned(),
            share: share.to_owned(),
        };
        std::fs::create_dir_all(&harness.share).unwrap();
        let out = harness.run(&["boot"]);
        assert!(out.status.success(), "harness boot failed: {}", text(&out));
        harness
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new("timeout")
            .arg("60")
            .arg(&self.script)
            .args(args)
            .env("HARNESS_STATE", &self.state)
            .env("HARNESS_SHARE", &self.share)
            .output()
            .expect("run the harness")
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "harness {args:?} failed: {}",
            text(&out)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn journal(&self) -> String {
        self.ok(&["journal", "-u", "interviewd", "-o", "cat"])
    }

    /// Polls the unit's journal until it contains `needle`.
    fn wait_for_journal(&self, needle: &str) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let journal = self.journal();
            if journal.contains(needle) {
                return journal;
            }
            assert!(
                Instant::now() < deadline,
                "journal never showed {needle:?}:\n{journal}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        let _ = self.run(&["teardown"]);
        let _ = std::fs::remove_dir_all(&self.share);
    }
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The shipped unit, pointed at the test binary and a free port, with a
/// stop hook that records how systemd saw the exit.
fn unit_for_test(binary: &Path) -> String {
    let shipped = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd/interviewd.service"),
    )
    .unwrap();
    let exec = format!("ExecStart={} serve --listen 127.0.0.1:0", binary.display());
    let hook = "ExecStopPost=/bin/sh -c 'echo stop-result=$SERVICE_RESULT code=$EXIT_CODE status=$EXIT_STATUS'";
    let unit = shipped.replace(
        "ExecStart=/usr/local/bin/interviewd serve",
        &format!("{exec}\n{hook}"),
    );
    assert_ne!(
        unit, shipped,
        "the shipped unit's ExecStart line changed; update this test"
    );
    unit
}

/// `systemctl stop` on a unit with a live interview stops interviewd
/// cleanly: the client gets 1012, its acknowledged answer and a `shutdown`
/// end line are in the transcript under the unit's StateDirectory, systemd
/// records a successful exit with status 0, and the stop takes well under
/// TimeoutStopSec, with nothing left for systemd to kill.
#[test]
fn systemctl_stop_is_clean_and_loses_nothing() {
    if std::env::var_os("INTERVIEWD_SKIP_SYSTEMD").is_some() {
        eprintln!("skipped: INTERVIEWD_SKIP_SYSTEMD is set");
        return;
    }
    // SAFETY: geteuid has no preconditions.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "the systemd harness needs root (or set INTERVIEWD_SKIP_SYSTEMD=1)"
    );
    let state =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("systemd-{}", std::process::id()));
    // The binary goes where the hardened unit can see it: not under /tmp
    // or /var/tmp (PrivateTmp=), /home or /root (ProtectHome=), wherever
    // the checkout is.
    let share = PathBuf::from(format!("/run/interviewd-test-{}", std::process::id()));
    for dir in [&state, &share] {
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir).unwrap();
    }
    // Binaries must be in place before boot: the overlay may not see later changes.
    let binary = share.join("interviewd");
    std::fs::copy(env!("CARGO_BIN_EXE_interviewd"), &binary).unwrap();
    let unit = share.join("interviewd.service");
    std::fs::write(&unit, unit_for_test(&binary)).unwrap();

    let harness = Harness::boot(&state, &share);
    harness.ok(&["install", unit.to_str().unwrap(), "interviewd.service"]);
    harness.ok(&["ctl", "start", "interviewd"]);
    let journal = harness.wait_for_journal("listening on ");
    let addr = journal
        .lines()
        .find_map(|l| l.split("listening on ").nth(1))
        .expect("address line")
        .trim()
        .to_owned();
    assert!(
        journal.contains("/var/lib/interviewd"),
        "state is not in the StateDirectory:\n{journal}"
    );

    let mut client = Client::connect(&format!("ws://{addr}/v1/realtime"));
    let answer = "I designed the storage layer and shipped it with my team.";
    client.answer(answer);

    // The client reads while systemd stops the daemon, as a browser would.
    let session_id = client.session_id.clone();
    let reader = std::thread::spawn(move || client.read_to_end());
    let started = Instant::now();
    harness.ok(&["ctl", "stop", "interviewd"]);
    let took = started.elapsed();
    eprintln!("systemctl stop took {} ms", took.as_millis());
    assert_eq!(reader.join().unwrap(), Ended::Closed(1012));
    assert!(
        took < Duration::from_secs(4),
        "systemctl stop took {took:?} (TimeoutStopSec=5)"
    );

    let journal = harness.journal();
    assert!(
        journal.contains("stop-result=success code=exited status=0"),
        "systemd did not see a clean exit:\n{journal}"
    );
    assert!(journal.contains("shutdown complete"), "{journal}");
    let transcript = harness.ok(&[
        "exec",
        "cat",
        &format!("/var/lib/interviewd/sessions/{session_id}.jsonl"),
    ]);
    let transcript = interviewd::journal::parse(transcript.as_bytes()).expect("transcript parses");
    assert!(records(&transcript, "item")
        .iter()
        .any(|r| r["role"] == "user" && r["text"] == answer));
    assert_eq!(transcript.end_reason(), Some("shutdown"));
}
