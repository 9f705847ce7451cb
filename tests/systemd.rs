//! interviewd as Debian installs it, under a real systemd (issue 9).
//!
//! Each test boots a private systemd through tests/systemd/harness.sh (PID 1
//! of new namespaces, on a throw-away overlay of `/`, never on the real
//! root), builds the package with `cargo deb` from this test's own binary,
//! installs it with apt inside, and drives the shipped units with
//! `systemctl` and real clients over the shared network namespace:
//!
//! - install, readiness, `systemctl status`, and `apt purge` leaving nothing;
//! - `systemctl stop` with 100 clients in every phase;
//! - `systemctl reload` (a good and a broken configuration) and the watchdog;
//! - `systemctl restart` under a stream of connections (socket activation);
//! - a relayed interview with the API key from `LoadCredential=` only.
//!
//! The tests take turns (one harness at a time: they share the package's
//! port and the machine's two cores). They need root, util-linux, overlayfs,
//! cgroup2, apt and `cargo deb` (cargo-deb, installed by .ci/run). Without
//! root or cargo-deb a test says why it skips, and fails instead when
//! INTERVIEWD_REQUIRE_ROOT_TESTS=1; INTERVIEWD_SKIP_SYSTEMD=1 skips them
//! explicitly. Figures (stop time, restart counts, watchdog time) are printed
//! to stderr: `cargo test --test systemd -- --nocapture`.

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use common::mock::{wait_until, Mock};
use common::*;

/// The address interviewd.socket listens on as shipped.
const SHIPPED_PORT: u16 = 8765;

/// An answer that mentions what the built-in script's questions look for.
const ANSWER: &str = "I designed the storage layer, wrote the tests, measured latency \
                      with metrics and logs, and shipped it with my team of three.";

// ---------------------------------------------------------------------------
// Whether the tests can run here.
// ---------------------------------------------------------------------------

/// Whether `test` must not run here; says why. A missing requirement is a
/// failure instead when INTERVIEWD_REQUIRE_ROOT_TESTS=1.
fn skipped(test: &str) -> bool {
    if std::env::var("INTERVIEWD_SKIP_SYSTEMD").is_ok_and(|v| !v.is_empty() && v != "0") {
        eprintln!("skipped: {test}: INTERVIEWD_SKIP_SYSTEMD is set");
        return true;
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return skip(
            test,
            "needs root (the systemd harness boots a private systemd)",
        );
    }
    let cargo_deb = Command::new(cargo())
        .args(["deb", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !cargo_deb {
        return skip(
            test,
            "needs `cargo deb` (cargo-deb, installed by .ci/run) to build the package",
        );
    }
    false
}

fn skip(test: &str, why: &str) -> bool {
    if std::env::var("INTERVIEWD_REQUIRE_ROOT_TESTS").as_deref() == Ok("1") {
        panic!("{test}: {why}, and INTERVIEWD_REQUIRE_ROOT_TESTS=1");
    }
    eprintln!("skipped: {test}: {why}");
    true
}

fn cargo() -> std::ffi::OsString {
    std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into())
}

/// One harness at a time: the tests share the package's port, and a
/// harness with 100 clients wants the machine's two cores.
fn one_at_a_time() -> MutexGuard<'static, ()> {
    static ONE: Mutex<()> = Mutex::new(());
    ONE.lock().unwrap_or_else(|e| e.into_inner())
}

// ---------------------------------------------------------------------------
// The harness.
// ---------------------------------------------------------------------------

/// What a harness command printed, and whether it succeeded.
struct Run {
    ok: bool,
    out: String,
    err: String,
}

/// One booted private systemd; torn down on drop, whatever happened (its
/// journal is kept under target/systemd-artifacts when the test failed).
struct Harness {
    name: String,
    script: PathBuf,
    state: PathBuf,
    /// Bind-mounted read-write at the same path inside.
    share: PathBuf,
}

impl Harness {
    fn boot(name: &str) -> Harness {
        let pid = std::process::id();
        let harness = Harness {
            name: name.to_owned(),
            script: repo().join("tests/systemd/harness.sh"),
            state: Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("systemd-{pid}-{name}")),
            share: PathBuf::from(format!("/run/interviewd-test-{pid}-{name}")),
        };
        for dir in [&harness.state, &harness.share] {
            let _ = std::fs::remove_dir_all(dir);
            std::fs::create_dir_all(dir).unwrap();
        }
        let booted = harness.run(&["boot"]);
        assert!(
            booted.ok,
            "harness boot failed: {}{}",
            booted.out, booted.err
        );
        harness
    }

    fn run(&self, args: &[&str]) -> Run {
        let (status, out, err) = run_with_deadline(
            Command::new(&self.script)
                .args(args)
                .env("HARNESS_STATE", &self.state)
                .env("HARNESS_SHARE", &self.share),
            Duration::from_secs(90),
        );
        Run {
            ok: status.success(),
            out,
            err,
        }
    }

    /// Runs a harness command that must succeed; its stdout.
    fn ok(&self, args: &[&str]) -> String {
        let run = self.run(args);
        assert!(
            run.ok,
            "harness {args:?} failed:\n{}{}\n--- interviewd's journal:\n{}",
            run.out,
            run.err,
            self.run(&["journal", "-u", "interviewd", "-o", "cat"]).out
        );
        run.out
    }

    fn ctl(&self, args: &[&str]) -> String {
        self.ok(&[&["ctl"], args].concat())
    }

    /// `sh -c SCRIPT` inside; must succeed.
    fn sh(&self, script: &str) -> String {
        self.ok(&["exec", "sh", "-c", script])
    }

    /// Writes `text` to `path` inside, with `mode` (through the share).
    fn put(&self, path: &str, text: &str, mode: &str) {
        let tmp = self.share.join(".put");
        std::fs::write(&tmp, text).unwrap();
        self.ok(&[
            "exec",
            "install",
            "-D",
            "-m",
            mode,
            tmp.to_str().unwrap(),
            path,
        ]);
        std::fs::remove_file(&tmp).unwrap();
    }

    /// `systemctl show -p P,...` as a map.
    fn show(&self, unit: &str, props: &str) -> BTreeMap<String, String> {
        self.ctl(&["show", "-p", props, unit])
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }

    fn main_pid(&self) -> u32 {
        self.show("interviewd", "MainPID")["MainPID"]
            .parse()
            .unwrap()
    }

    /// The unit's journal (the daemon's lines and systemd's about it).
    fn journal(&self) -> String {
        self.ok(&["journal", "-u", "interviewd", "-o", "cat"])
    }

    /// Polls the unit's journal until it shows `needle` past its first
    /// `skip` lines; the journal.
    fn wait_for_journal(&self, needle: &str, skip: usize) -> String {
        wait_until(
            &format!("the journal showing {needle:?}"),
            WAIT,
            || {
                let journal = self.journal();
                let found = journal.lines().skip(skip).any(|l| l.contains(needle));
                found.then_some(journal)
            },
            || self.journal(),
        )
    }

    /// The harness's changes to `/` (its overlay's upper layer), path by
    /// path, leaving out apt's and dpkg's bookkeeping and caches and the
    /// journal's files. Directories count by type, mode and owner; other
    /// files also by size, modification time and link target.
    fn changes(&self) -> BTreeMap<String, String> {
        let out = self.ok(&[
            "exec",
            "find",
            "/run/harness/upper",
            "-mindepth",
            "1",
            "-printf",
            "%P\\t%y %#m %U:%G %s %T@ %l\\n",
        ]);
        const LEFT_OUT: [&str; 7] = [
            "var/lib/apt",
            "var/lib/dpkg",
            "var/cache",
            "var/log/apt",
            "var/log/dpkg.log",
            "var/log/alternatives.log",
            "var/log/journal",
        ];
        out.lines()
            .filter_map(|l| l.split_once('\t'))
            .filter(|(p, _)| {
                !LEFT_OUT
                    .iter()
                    .any(|x| p == x || p.starts_with(&format!("{x}/")))
            })
            .map(|(p, what)| {
                let what = if what.starts_with("d ") {
                    what.split(' ').take(3).collect::<Vec<_>>().join(" ")
                } else {
                    what.to_owned()
                };
                (p.to_owned(), what)
            })
            .collect()
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        let _ = self.run(&["teardown"]);
        if std::thread::panicking() {
            let dir = repo().join("target/systemd-artifacts");
            let kept = dir.join(format!("{}-journal.txt", self.name));
            if std::fs::create_dir_all(&dir).is_ok()
                && std::fs::copy(self.share.join("journal.txt"), &kept).is_ok()
            {
                eprintln!("the harness's journal is in {}", kept.display());
            }
        }
        let _ = std::fs::remove_dir_all(&self.share);
        let _ = std::fs::remove_dir_all(&self.state);
    }
}

// ---------------------------------------------------------------------------
// The package, installed in a harness.
// ---------------------------------------------------------------------------

/// The package as `cargo deb` builds it from this test's binary, in `dir`.
///
/// `cargo deb --no-build` packages the asset `target/release/interviewd`
/// from the target directory. Here that is a private one, TARGET, whose
/// `release/interviewd` is a link to this test's binary (the debug build):
/// no release build is needed, a build running meanwhile in the checkout
/// cannot swap the binary, and cargo-deb's deprecated `--profile dev` is
/// not needed either. The ELF build id, which stripping keeps, proves
/// which binary was packaged.
fn build_deb(dir: &Path) -> PathBuf {
    let binary = Path::new(env!("CARGO_BIN_EXE_interviewd"));
    let target = dir.join("target");
    std::fs::create_dir_all(target.join("release")).unwrap();
    let packaged = target.join("release/interviewd");
    if std::fs::hard_link(binary, &packaged).is_err() {
        std::fs::copy(binary, &packaged).unwrap();
    }
    let (status, out, err) = run_with_deadline(
        Command::new(cargo())
            .args(["deb", "--no-build", "--fast", "--output"])
            .arg(dir)
            .env("CARGO_TARGET_DIR", &target)
            .current_dir(repo()),
        Duration::from_secs(120),
    );
    assert!(status.success(), "cargo deb failed:\n{out}\n{err}");
    let deb = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .unwrap_or_else(|| panic!("cargo deb made no .deb in {}:\n{out}\n{err}", dir.display()));
    let unpacked = dir.join("unpacked");
    let (status, _, err) = run_with_deadline(
        Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&unpacked),
        WAIT,
    );
    assert!(status.success(), "dpkg-deb -x: {err}");
    assert_eq!(
        build_id(&unpacked.join("usr/bin/interviewd")),
        build_id(binary),
        "the package does not hold this test's binary"
    );
    std::fs::remove_dir_all(&unpacked).unwrap();
    std::fs::remove_dir_all(&target).unwrap();
    deb
}

/// An ELF file's GNU build id (readelf).
fn build_id(elf: &Path) -> String {
    let (status, out, err) = run_with_deadline(Command::new("readelf").arg("-n").arg(elf), WAIT);
    assert!(status.success(), "readelf -n {}: {err}", elf.display());
    out.lines()
        .find_map(|l| l.trim().strip_prefix("Build ID:"))
        .unwrap_or_else(|| panic!("no build id in {}", elf.display()))
        .trim()
        .to_owned()
}

/// The shipped port, or a free one when something else holds it (another
/// harness, a daemon a developer runs).
fn pick_port() -> u16 {
    if TcpListener::bind(("127.0.0.1", SHIPPED_PORT)).is_ok() {
        return SHIPPED_PORT;
    }
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    eprintln!("127.0.0.1:{SHIPPED_PORT} is taken on this machine; interviewd.socket gets port {port} instead");
    port
}

/// A booted harness ready for the package: the package's .deb in the
/// share, the system as a real boot leaves it, and any drop-ins in place.
struct Machine {
    h: Harness,
    deb: String,
    port: u16,
}

impl Machine {
    /// Boots a harness for the package. `drop_ins` are (path, text) pairs
    /// written before the package is installed (which starts the units).
    fn prepare(name: &str, drop_ins: &[(&str, &str)]) -> Machine {
        let h = Harness::boot(name);
        let deb = build_deb(&h.share);
        // As on a real boot: sysinit.target (tmpfiles, utmp) and logind
        // (which apt asks for an inhibitor lock) are up before anything is
        // installed, so their first start is not counted as the package's.
        h.ctl(&["start", "sysinit.target", "systemd-logind.service"]);
        // Artefacts of this CI image, not of a Debian server: a Docker-style
        // policy-rc.d that forbids starting services (exit 101), and
        // PackageKit's apt hook, which starts D-Bus services on every dpkg
        // run. The overlay discards both changes.
        h.sh("rm -f /usr/sbin/policy-rc.d && \
             echo '#clear DPkg::Post-Invoke;' > /etc/apt/apt.conf.d/99-harness");
        let port = pick_port();
        if port != SHIPPED_PORT {
            h.put(
                "/etc/systemd/system/interviewd.socket.d/test-port.conf",
                &format!("[Socket]\nListenStream=\nListenStream=127.0.0.1:{port}\n"),
                "644",
            );
        }
        for (path, text) in drop_ins {
            h.put(path, text, "644");
        }
        h.ctl(&["daemon-reload"]);
        Machine {
            deb: deb.to_str().unwrap().to_owned(),
            h,
            port,
        }
    }

    /// `apt-get install ./interviewd_….deb` (apt's scripted interface);
    /// how long it took.
    fn install(&self) -> Duration {
        let t = Instant::now();
        self.h.ok(&[
            "exec",
            "env",
            "DEBIAN_FRONTEND=noninteractive",
            "apt-get",
            "install",
            "-y",
            "--no-install-recommends",
            &self.deb,
        ]);
        t.elapsed()
    }

    fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    fn url(&self) -> String {
        format!("ws://{}/v1/realtime", self.addr())
    }

    /// Writes /etc/interviewd/config.toml.
    fn configure(&self, toml: &str) {
        self.h.put("/etc/interviewd/config.toml", toml, "644");
    }

    /// The MAX of /readyz's "ready: N of MAX sessions".
    fn readyz_max(&self) -> Option<u64> {
        let (_, body) = http_get(self.addr(), "/readyz").ok()?;
        body.split(" of ")
            .nth(1)?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    }

    /// Polls until the service is active and running with a new main
    /// process (not `old`); its pid.
    fn wait_running(&self, old: u32) -> u32 {
        wait_until(
            "interviewd active and running with a new main process",
            WAIT,
            || {
                let s = self
                    .h
                    .show("interviewd", "ActiveState,SubState,MainPID,StatusText");
                let pid: u32 = s["MainPID"].parse().unwrap();
                (s["ActiveState"] == "active"
                    && s["SubState"] == "running"
                    && pid != 0
                    && pid != old)
                    .then_some(pid)
            },
            || self.h.journal(),
        )
    }

    /// Copies every transcript out of /var/lib/interviewd/sessions; by
    /// session id.
    fn transcripts(&self) -> BTreeMap<String, Vec<u8>> {
        let out = self.h.share.join("sessions");
        let _ = std::fs::remove_dir_all(&out);
        std::fs::create_dir_all(&out).unwrap();
        self.h.sh(&format!(
            "cp /var/lib/interviewd/sessions/*.jsonl {}/",
            out.display()
        ));
        std::fs::read_dir(&out)
            .unwrap()
            .flatten()
            .map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                let id = name.trim_end_matches(".jsonl").to_owned();
                (id, std::fs::read(e.path()).unwrap())
            })
            .collect()
    }
}

// ---------------------------------------------------------------------------
// HTTP.
// ---------------------------------------------------------------------------

/// `GET path` on a connection of its own: the status and the body, or
/// what went wrong (a refused or reset connection, a timeout, no answer).
fn http_get(addr: SocketAddr, path: &str) -> Result<(u16, String), String> {
    let limit = Duration::from_secs(10);
    let mut s = TcpStream::connect_timeout(&addr, limit).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(limit)).unwrap();
    s.set_write_timeout(Some(limit)).unwrap();
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .map_err(|e| format!("write: {e}"))?;
    let mut answer = Vec::new();
    s.read_to_end(&mut answer)
        .map_err(|e| format!("read: {e} after {} bytes", answer.len()))?;
    let text = String::from_utf8_lossy(&answer);
    let status = text
        .strip_prefix("HTTP/1.1 ")
        .and_then(|t| t.get(..3))
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("no HTTP answer: {text:?}"))?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    Ok((status, body.to_owned()))
}

// ---------------------------------------------------------------------------
// 1 and 7. Install, readiness, status, purge.
// ---------------------------------------------------------------------------

/// The package installs, enables and starts interviewd.socket and
/// interviewd.service; `systemctl start` returns only once the daemon is
/// ready (at once active/running, its STATUS= saying where it listens,
/// /healthz answering 200), `systemctl status` shows the STATUS= text; and
/// `apt purge` leaves nothing behind: no unit, no user, no state, no
/// /etc/interviewd, no file of / changed (the journal and apt's and dpkg's
/// bookkeeping aside).
#[test]
fn the_package_starts_when_ready_and_purges_without_a_trace() {
    let test = "the_package_starts_when_ready_and_purges_without_a_trace";
    if skipped(test) {
        return;
    }
    let _one = one_at_a_time();
    let m = Machine::prepare("purge", &[]);
    let before = m.h.changes();

    let took = m.install();
    eprintln!("{test}: apt install took {} ms", took.as_millis());
    let s = m.h.show(
        "interviewd.service",
        "ActiveState,SubState,UnitFileState,Type,NotifyAccess",
    );
    assert_eq!(
        (
            &s["ActiveState"][..],
            &s["SubState"][..],
            &s["UnitFileState"][..]
        ),
        ("active", "running", "enabled"),
        "{s:?}"
    );
    // What makes `systemctl start` wait for READY=1.
    assert_eq!(
        (&s["Type"][..], &s["NotifyAccess"][..]),
        ("notify", "main"),
        "{s:?}"
    );
    let socket = m.h.show("interviewd.socket", "ActiveState,UnitFileState");
    assert_eq!(socket["ActiveState"], "active", "{socket:?}");
    assert_eq!(socket["UnitFileState"], "enabled", "{socket:?}");

    // `systemctl start` returns after READY=1: the daemon serves at once.
    m.h.ctl(&["stop", "interviewd"]);
    assert_eq!(
        m.h.show("interviewd", "ActiveState")["ActiveState"],
        "inactive"
    );
    let t = Instant::now();
    m.h.ctl(&["start", "interviewd"]);
    let start_took = t.elapsed();
    let s = m.h.show("interviewd", "ActiveState,SubState,StatusText");
    let healthz = http_get(m.addr(), "/healthz");
    eprintln!(
        "{test}: systemctl start returned after {} ms: {s:?}",
        start_took.as_millis()
    );
    assert_eq!(
        (&s["ActiveState"][..], &s["SubState"][..]),
        ("active", "running"),
        "{s:?}"
    );
    let listening = format!("listening on 127.0.0.1:{}", m.port);
    assert!(s["StatusText"].contains(&listening), "{s:?}");
    assert_eq!(
        healthz,
        Ok((200, "ok\n".to_owned())),
        "/healthz right after start"
    );
    let journal = m.h.journal();
    assert!(
        journal.contains("socket activation: serving the socket systemd passed"),
        "{journal}"
    );

    // One interview, so that purge has transcripts to delete; and a key in
    // the credential file the operator fills in.
    let mut c = Client::connect(&m.url());
    c.answer(ANSWER);
    m.h.put(
        "/etc/interviewd/openai-api-key",
        "sk-test-not-a-key\n",
        "600",
    );

    // The status shows the daemon's STATUS= line, counts included.
    let status = wait_until(
        "STATUS= counting the interview",
        WAIT,
        || {
            let s = m.h.show("interviewd", "StatusText")["StatusText"].clone();
            s.starts_with("1 interviewing").then_some(s)
        },
        || m.h.journal(),
    );
    let shown = m.h.ctl(&["status", "--no-pager", "interviewd"]);
    assert!(
        shown.contains(&format!("Status: \"{status}\"")),
        "systemctl status does not show {status:?}:\n{shown}"
    );
    drop(c);

    m.h.ok(&[
        "exec",
        "env",
        "DEBIAN_FRONTEND=noninteractive",
        "apt-get",
        "purge",
        "-y",
        "interviewd",
    ]);
    for unit in ["interviewd.service", "interviewd.socket"] {
        let s = m.h.show(unit, "LoadState,ActiveState");
        assert_eq!(
            (&s["LoadState"][..], &s["ActiveState"][..]),
            ("not-found", "inactive"),
            "{unit} after purge: {s:?}"
        );
    }
    assert!(
        TcpStream::connect(m.addr()).is_err(),
        "something still listens on {} after purge",
        m.addr()
    );
    assert!(
        !m.h.run(&["exec", "getent", "passwd", "interviewd"]).ok,
        "the user interviewd still exists after purge"
    );
    for path in [
        "/etc/interviewd",
        "/var/lib/interviewd",
        "/var/lib/private/interviewd",
        "/usr/bin/interviewd",
        "/usr/lib/systemd/system/interviewd.service",
        "/usr/lib/systemd/system/interviewd.socket",
        "/usr/share/doc/interviewd",
    ] {
        assert!(
            !m.h.run(&["exec", "test", "-e", path]).ok
                && !m.h.run(&["exec", "test", "-L", path]).ok,
            "{path} is still there after purge"
        );
    }

    // Compared with the system before the install.
    let after = m.h.changes();
    let mut left = Vec::new();
    let paths: std::collections::BTreeSet<&String> = before.keys().chain(after.keys()).collect();
    for path in paths {
        let (was, is) = (before.get(path), after.get(path));
        if was == is {
            continue;
        }
        // A host directory copied up because something was created in it
        // and removed again: unchanged if it is as on the host.
        if was.is_none() && is.is_some_and(|w| w.starts_with("d ") && same_dir(path, w)) {
            continue;
        }
        left.push(format!(
            "{} -> {}: /{path}",
            was.map_or("(absent)", String::as_str),
            is.map_or("(absent)", String::as_str)
        ));
    }
    eprintln!(
        "{test}: apt purge: {} difference(s) from the system before the install",
        left.len()
    );
    assert!(
        left.is_empty(),
        "apt purge left these differences from before the install:\n{}",
        left.join("\n")
    );
}

/// Whether the host's `/PATH` is a directory with this description's mode
/// and owner (`d MODE UID:GID`).
fn same_dir(path: &str, what: &str) -> bool {
    let Ok(meta) = std::fs::symlink_metadata(Path::new("/").join(path)) else {
        return false;
    };
    meta.is_dir()
        && what
            == format!(
                "d 0{:o} {}:{}",
                meta.mode() & 0o7777,
                meta.uid(),
                meta.gid()
            )
}

// ---------------------------------------------------------------------------
// 2. Stop with 100 clients.
// ---------------------------------------------------------------------------

/// Where a WebSocket client is when the daemon is stopped.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Phase {
    /// Read the greeting and said nothing.
    Connected,
    /// Answered a question (acknowledged: on disk).
    Answered,
    /// Answered every question; a `command` assessor is assessing.
    Assessing,
}

struct Outcome {
    phase: Phase,
    session_id: String,
    ended: Ended,
}

/// A client thread: gets to `phase`, says so on `ready`, then reads until
/// the connection ends, as a browser would.
fn client(url: String, phase: Phase, ready: mpsc::Sender<()>) -> std::thread::JoinHandle<Outcome> {
    std::thread::spawn(move || {
        let mut c = Client::connect(&url);
        match phase {
            Phase::Connected => {}
            Phase::Answered => {
                c.answer(ANSWER);
            }
            Phase::Assessing => c.answer_all(ANSWER),
        }
        ready.send(()).unwrap();
        let ended = c.read_to_end();
        Outcome {
            phase,
            session_id: c.session_id.clone(),
            ended,
        }
    })
}

/// How a connection left in its HTTP handshake ended.
fn handshake_end(mut s: TcpStream) -> String {
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut answer = Vec::new();
    match s.read_to_end(&mut answer) {
        Ok(_) if answer.is_empty() => "closed".into(),
        Ok(_) => String::from_utf8_lossy(&answer)
            .lines()
            .next()
            .unwrap_or("")
            .to_owned(),
        Err(e) => format!("error: {e}"),
    }
}

/// `systemctl stop` with 100 clients in every phase (mid-interview with an
/// acknowledged answer, just connected, in a `command` assessment, still in
/// their HTTP handshake) is clean: systemd records success (exit status 0)
/// and kills nothing, every WebSocket client gets close 1012, no connection
/// is reset, and every transcript under /var/lib/interviewd/sessions is
/// complete (an end line, or `suspended` for a session a restart resumes)
/// with every acknowledged answer in it.
#[test]
fn systemctl_stop_with_100_clients_in_every_phase_is_clean() {
    let test = "systemctl_stop_with_100_clients_in_every_phase_is_clean";
    if skipped(test) {
        return;
    }
    let _one = one_at_a_time();
    // How systemd saw the exit, in the unit's journal.
    let m = Machine::prepare(
        "stop",
        &[(
            "/etc/systemd/system/interviewd.service.d/test-stop-hook.conf",
            "[Service]\nExecStopPost=/bin/sh -c 'echo stop-result=$SERVICE_RESULT code=$EXIT_CODE status=$EXIT_STATUS'\n",
        )],
    );
    m.install();
    // An assessor that takes its time, so that sessions can be held in
    // their assessment; it sees SIGTERM at shutdown step 4.
    m.configure(&command_assessor_config("sleep 60", ""));
    let lines = m.h.journal().lines().count();
    m.h.ctl(&["reload", "interviewd"]);
    m.h.wait_for_journal("SIGHUP: configuration reloaded", lines);

    let (ready_tx, ready) = mpsc::channel();
    let mut threads = Vec::new();
    let plan = [
        (Phase::Assessing, 10usize),
        (Phase::Answered, 35),
        (Phase::Connected, 35),
    ];
    for (phase, n) in plan {
        // In batches: a burst of 80 handshakes from one address would meet
        // limits.max_handshakes_per_ip (32).
        for batch in 0..n.div_ceil(10) {
            let k = (n - batch * 10).min(10);
            for _ in 0..k {
                threads.push(client(m.url(), phase, ready_tx.clone()));
            }
            for _ in 0..k {
                if ready.recv_timeout(WAIT).is_err() {
                    let failed: Vec<String> = threads
                        .drain(..)
                        .filter(|t| t.is_finished())
                        .filter_map(|t| t.join().err())
                        .map(|e| format!("{e:?}"))
                        .collect();
                    panic!(
                        "{phase:?} clients did not get there: {failed:?}\n{}",
                        m.h.journal()
                    );
                }
            }
        }
    }
    wait_until(
        "STATUS= with 70 interviewing, 10 assessing",
        WAIT,
        || {
            let s = m.h.show("interviewd", "StatusText")["StatusText"].clone();
            s.starts_with("70 interviewing, 10 assessing, ")
                .then_some(s)
        },
        || m.h.show("interviewd", "StatusText")["StatusText"].clone(),
    );
    // 20 connections that have sent part of their request head. The head
    // must keep coming at 256 bytes/s after 2 s, so a 1.5 KiB one is not
    // refused as too slow for about 8 s: long enough to see them counted.
    let head = format!(
        "GET /v1/realtime HTTP/1.1\r\nHost: {}\r\nX-Padding: {}\r\n",
        m.addr(),
        "p".repeat(1500)
    );
    let handshakes: Vec<TcpStream> = (0..20)
        .map(|_| {
            let mut s = TcpStream::connect(m.addr()).unwrap();
            s.write_all(head.as_bytes()).unwrap();
            s
        })
        .collect();
    let status = wait_until(
        "STATUS= with 20 connecting",
        WAIT,
        || {
            let s = m.h.show("interviewd", "StatusText")["StatusText"].clone();
            s.contains(" 20 connecting;").then_some(s)
        },
        || m.h.show("interviewd", "StatusText")["StatusText"].clone(),
    );
    eprintln!("{test}: before the stop: {status}");

    let lines = m.h.journal().lines().count();
    let t = Instant::now();
    m.h.ctl(&["stop", "interviewd"]);
    let took = t.elapsed();
    eprintln!(
        "{test}: systemctl stop with 100 clients took {} ms",
        took.as_millis()
    );

    let handshakes: Vec<String> = handshakes.into_iter().map(handshake_end).collect();
    let outcomes: Vec<Outcome> = threads
        .into_iter()
        .map(|t| t.join().expect("a client thread panicked"))
        .collect();
    let journal = m.h.journal();
    let since: Vec<&str> = journal.lines().skip(lines).collect();
    eprintln!(
        "{test}: the daemon's account: {}",
        since
            .iter()
            .filter(|l| l.contains("shutdown complete") || l.contains("shutdown 1/5"))
            .cloned()
            .collect::<Vec<_>>()
            .join(" / ")
    );
    assert!(
        since
            .iter()
            .any(|l| l.contains("100 live session(s): 10 assessing, 20 handshake, 70 interview")),
        "the daemon did not see the 100 clients at the stop:\n{journal}"
    );
    assert!(
        since
            .iter()
            .any(|l| l.contains("stop-result=success code=exited status=0")),
        "systemd did not see a clean exit:\n{journal}"
    );
    assert!(
        since.iter().any(|l| l.contains("shutdown complete in")),
        "{journal}"
    );
    // systemd's lines ("Killing process N (sleep) with signal SIGKILL",
    // "State 'stop-sigterm' timed out. Killing."), not the daemon's own
    // account of its assessors ("…, 0 SIGKILL; …").
    let killed: Vec<&&str> = since
        .iter()
        .filter(|l| {
            l.contains("Killing") || l.contains("with signal SIGKILL") || l.contains("timed out")
        })
        .collect();
    assert!(killed.is_empty(), "systemd killed something: {killed:?}");
    assert!(
        took < Duration::from_secs(4),
        "systemctl stop took {took:?} (TimeoutStopSec=10s, shutdown.deadline 2s)"
    );

    let not_1012: Vec<String> = outcomes
        .iter()
        .filter(|o| o.ended != Ended::Closed(1012))
        .map(|o| format!("{:?} {}: {:?}", o.phase, o.session_id, o.ended))
        .collect();
    assert!(
        not_1012.is_empty(),
        "{} of 80 WebSocket clients did not get 1012: {not_1012:?}",
        not_1012.len()
    );
    let mut ends: BTreeMap<&str, usize> = BTreeMap::new();
    for h in &handshakes {
        *ends.entry(h.as_str()).or_default() += 1;
    }
    eprintln!("{test}: the 20 connections in their handshake: {ends:?}");
    assert!(
        handshakes.iter().all(|h| !h.starts_with("error")),
        "a connection in its handshake was reset: {handshakes:?}"
    );

    // Every transcript is complete, with what was acknowledged in it.
    let transcripts = m.transcripts();
    assert_eq!(transcripts.len(), 80, "{:?}", transcripts.keys());
    let mut lasts: BTreeMap<String, usize> = BTreeMap::new();
    for (id, bytes) in &transcripts {
        let t = interviewd::journal::parse(bytes)
            .unwrap_or_else(|e| panic!("transcript {id} does not parse: {e}"));
        assert!(!t.torn_tail, "transcript {id} has a torn tail");
        assert!(t.end_reason().is_some(), "transcript {id} is not complete");
        let last = t
            .records
            .iter()
            .rev()
            .find(|r| r["kind"] == "end" || r["kind"] == "suspended")
            .unwrap();
        *lasts
            .entry(format!(
                "{} {}",
                last["kind"].as_str().unwrap_or("?"),
                last["reason"].as_str().unwrap_or("?")
            ))
            .or_default() += 1;
    }
    eprintln!("{test}: how the 80 transcripts end: {lasts:?}");
    for o in &outcomes {
        let bytes = transcripts
            .get(&o.session_id)
            .unwrap_or_else(|| panic!("no transcript for {:?} {}", o.phase, o.session_id));
        let t = interviewd::journal::parse(bytes).unwrap();
        let answers = records(&t, "item")
            .into_iter()
            .filter(|r| r["role"] == "user")
            .count();
        let assessing = !records(&t, "phase").is_empty();
        let expected = match o.phase {
            Phase::Connected => answers == 0 && !assessing,
            Phase::Answered => answers == 1 && !assessing,
            Phase::Assessing => answers >= 6 && assessing,
        };
        assert!(
            expected,
            "{:?} {}: {answers} answer(s), assessing {assessing}:\n{}",
            o.phase,
            o.session_id,
            String::from_utf8_lossy(bytes)
        );
    }
}

// ---------------------------------------------------------------------------
// 3 and 4. Reload; the watchdog.
// ---------------------------------------------------------------------------

/// `systemctl reload` applies a changed configuration without a restart
/// (/readyz shows the new limits.max_sessions, same main process); a
/// broken file makes `systemctl reload` fail, visibly, while the daemon
/// keeps serving the old configuration (and refuses the file by itself on
/// a direct SIGHUP). A central loop that stops (`--debug-stall-signal`,
/// SIGUSR2) is killed by the watchdog and restarted by Restart=on-failure.
#[test]
fn reload_applies_good_config_refuses_broken_and_the_watchdog_restarts_a_stuck_loop() {
    let test = "reload_applies_good_config_refuses_broken_and_the_watchdog_restarts_a_stuck_loop";
    if skipped(test) {
        return;
    }
    let _one = one_at_a_time();
    let m = Machine::prepare("reload", &[]);
    m.install();
    assert_eq!(m.readyz_max(), Some(2000), "the shipped default");
    let pid = m.h.main_pid();

    // A good change.
    m.configure("[limits]\nmax_sessions = 7\n");
    let lines = m.h.journal().lines().count();
    m.h.ctl(&["reload", "interviewd"]);
    wait_until(
        "/readyz showing max_sessions 7",
        WAIT,
        || (m.readyz_max() == Some(7)).then_some(()),
        || m.h.journal(),
    );
    m.h.wait_for_journal(
        "SIGHUP: configuration reloaded; changed: limits.max_sessions",
        lines,
    );
    assert_eq!(m.h.main_pid(), pid, "a reload restarted the daemon");

    // A broken file: ExecReload's check-config refuses it, and the daemon
    // is not signalled.
    m.configure("[limits]\nmax_sessions = \"seven\"\n");
    let lines = m.h.journal().lines().count();
    let reload = m.h.run(&["ctl", "reload", "interviewd"]);
    assert!(!reload.ok, "systemctl reload accepted a broken file");
    let journal = m.h.wait_for_journal("Reload failed", lines);
    let refusal: Vec<&str> = journal
        .lines()
        .skip(lines)
        .filter(|l| l.contains("max_sessions"))
        .collect();
    assert!(
        !refusal.is_empty(),
        "the journal does not say what is wrong with the file:\n{journal}"
    );
    eprintln!("{test}: broken file: systemctl reload failed; journal: {refusal:?}");
    // The daemon refuses it by itself too, when signalled directly.
    m.h.ctl(&["kill", "-s", "SIGHUP", "--kill-whom=main", "interviewd"]);
    m.h.wait_for_journal(
        "SIGHUP: reload refused, keeping the current configuration",
        lines,
    );
    let s = wait_until(
        "interviewd active again after the refused reload",
        WAIT,
        || {
            let s = m.h.show("interviewd", "ActiveState,SubState,MainPID");
            (s["ActiveState"] == "active").then_some(s)
        },
        || m.h.journal(),
    );
    assert_eq!(s["SubState"], "running");
    assert_eq!(s["MainPID"], pid.to_string(), "the daemon was replaced");
    assert_eq!(
        m.readyz_max(),
        Some(7),
        "the old configuration is not served"
    );

    // The watchdog: a drop-in that lets SIGUSR2 stall the central loop,
    // with a short WatchdogSec.
    m.configure("");
    m.h.put(
        "/etc/systemd/system/interviewd.service.d/test-stall.conf",
        "[Service]\nExecStart=\nExecStart=/usr/bin/interviewd serve --config /etc/interviewd/config.toml --debug-stall-signal\nWatchdogSec=2s\n",
        "644",
    );
    m.h.ctl(&["daemon-reload"]);
    m.h.ctl(&["restart", "interviewd"]);
    let stalled = m.h.main_pid();
    assert_eq!(m.h.show("interviewd", "WatchdogUSec")["WatchdogUSec"], "2s");
    assert_eq!(http_get(m.addr(), "/healthz").map(|r| r.0), Ok(200));
    let lines = m.h.journal().lines().count();
    let t = Instant::now();
    m.h.ctl(&["kill", "-s", "SIGUSR2", "--kill-whom=main", "interviewd"]);
    m.h.wait_for_journal("blocking the central loop until killed", lines);
    let restarted = m.wait_running(stalled);
    let took = t.elapsed();
    let journal = m.h.wait_for_journal("Watchdog timeout", lines);
    eprintln!(
        "{test}: watchdog: SIGUSR2 to a new main process running took {} ms (WatchdogSec=2s, RestartSec=1s)",
        took.as_millis()
    );
    assert!(
        journal
            .lines()
            .skip(lines)
            .any(|l| l.contains("Failed with result 'watchdog'")),
        "{journal}"
    );
    assert_ne!(restarted, stalled);
    assert_eq!(m.h.show("interviewd", "NRestarts")["NRestarts"], "1");
    assert_eq!(
        http_get(m.addr(), "/healthz"),
        Ok((200, "ok\n".to_owned())),
        "the restarted daemon"
    );
}

// ---------------------------------------------------------------------------
// 5. Restart under a stream of connections.
// ---------------------------------------------------------------------------

/// One connection of the stream: when it started and how it went.
struct Probe {
    at: Instant,
    /// From connect to the end of the answer.
    took: Duration,
    outcome: Result<u16, String>,
}

/// `systemctl restart interviewd` refuses no connection: the socket stays
/// with systemd, connections made meanwhile wait in its backlog or are
/// answered while the old process drains (503), and each gets a whole HTTP
/// answer.
#[test]
fn systemctl_restart_refuses_no_connection() {
    let test = "systemctl_restart_refuses_no_connection";
    if skipped(test) {
        return;
    }
    let _one = one_at_a_time();
    let m = Machine::prepare("restart", &[]);
    m.install();
    let old = m.h.main_pid();

    let stop = Arc::new(AtomicBool::new(false));
    let made = Arc::new(AtomicUsize::new(0));
    let addr = m.addr();
    let stream = {
        let (stop, made) = (stop.clone(), made.clone());
        std::thread::spawn(move || {
            let mut probes = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let at = Instant::now();
                let outcome = http_get(addr, "/healthz").map(|(status, _)| status);
                probes.push(Probe {
                    at,
                    took: at.elapsed(),
                    outcome,
                });
                made.fetch_add(1, Ordering::Relaxed);
            }
            probes
        })
    };
    let count_reaches = |n: usize| {
        wait_until(
            &format!("{n} connections made"),
            WAIT,
            || (made.load(Ordering::Relaxed) >= n).then_some(()),
            String::new,
        )
    };
    count_reaches(50);
    let t0 = Instant::now();
    m.h.ctl(&["restart", "interviewd"]);
    let t1 = Instant::now();
    let new = m.wait_running(old);
    let n = made.load(Ordering::Relaxed);
    count_reaches(n + 50);
    stop.store(true, Ordering::Relaxed);
    let probes = stream.join().unwrap();

    let during: Vec<&Probe> = probes.iter().filter(|p| p.at >= t0 && p.at <= t1).collect();
    let count = |ps: &[&Probe], status: u16| ps.iter().filter(|p| p.outcome == Ok(status)).count();
    let refused: Vec<String> = probes
        .iter()
        .filter_map(|p| p.outcome.as_ref().err().cloned())
        .collect();
    let all: Vec<&Probe> = probes.iter().collect();
    eprintln!(
        "{test}: systemctl restart took {} ms; {} connections during it: {} got 200, {} got 503, {} refused \
         (in all {}: {} 200, {} 503, {} refused); the longest took {} ms; main pid {old} -> {new}",
        (t1 - t0).as_millis(),
        during.len(),
        count(&during, 200),
        count(&during, 503),
        during.iter().filter(|p| p.outcome.is_err()).count(),
        all.len(),
        count(&all, 200),
        count(&all, 503),
        refused.len(),
        probes.iter().map(|p| p.took).max().unwrap_or_default().as_millis()
    );
    assert!(
        refused.is_empty(),
        "{} connection(s) refused or cut: {refused:?}",
        refused.len()
    );
    let other: Vec<&Result<u16, String>> = probes
        .iter()
        .map(|p| &p.outcome)
        .filter(|o| !matches!(o, Ok(200 | 503)))
        .collect();
    assert!(other.is_empty(), "unexpected answers: {other:?}");
    assert!(
        !during.is_empty(),
        "no connection was made during the restart"
    );
}

// ---------------------------------------------------------------------------
// 6. A relayed interview under the shipped hardening.
// ---------------------------------------------------------------------------

/// The key the daemon gets through LoadCredential= only.
const KEY: &str = "sk-systemd-credential-SECRET-9876543210";

/// A relayed interview (`interview.engine = "openai"`, against the mock
/// Realtime API on the host) completes under the shipped unit, hardening
/// and all, with the API key given only as the `openai-api-key`
/// credential: the upstream receives that key (the mock refuses any
/// other), the key is nowhere in the journal, the transcript or the
/// report, the transcript lands in /var/lib/interviewd/sessions, and
/// `systemctl reload` still works.
#[test]
fn a_relayed_interview_completes_with_the_key_from_load_credential() {
    let test = "a_relayed_interview_completes_with_the_key_from_load_credential";
    if skipped(test) {
        return;
    }
    let _one = one_at_a_time();
    let mock = Mock::start(&["--pace", "0", "--turns", "2", "--expect-key", KEY]);
    let m = Machine::prepare("relay", &[]);
    m.install();
    m.h.put("/etc/interviewd/openai-api-key", &format!("{KEY}\n"), "600");
    m.configure(&format!(
        "[interview]\nengine = \"openai\"\n[openai]\nurl = {}\n",
        toml_string(&mock.url())
    ));
    // The credential is read when the service starts.
    let old = m.h.main_pid();
    m.h.ctl(&["restart", "interviewd"]);
    m.wait_running(old);
    let env = m.h.show("interviewd", "Environment")["Environment"].clone();
    assert!(!env.contains("OPENAI"), "the unit sets {env:?}");

    let mut child = spawn_terminal_client(&m.url());
    {
        let mut stdin = child.stdin.take().unwrap();
        for _ in 0..2 {
            writeln!(stdin, "{ANSWER}").unwrap();
        }
    }
    let status = wait_until(
        "the terminal client finishing the interview",
        WAIT,
        || child.try_wait().unwrap(),
        || format!("{}\n{}", mock.diagnostics(), m.h.journal()),
    );
    let mut stdout = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(
        status.success() && stdout.contains("== Assessment =="),
        "{status}:\n{stdout}\n{stderr}\n{}\n{}",
        mock.diagnostics(),
        m.h.journal()
    );
    // The mock answers 401 to any other key: it got the credential's.
    assert!(mock.connections() >= 1);
    assert!(
        mock.log(1)
            .iter()
            .any(|r| r["kind"] == "server" && r["type"] == "session.created"),
        "{}",
        mock.diagnostics()
    );
    mock.assert_no_mock_bugs();

    // `systemctl reload` works with the key in the credential alone:
    // ExecReload= (which systemd 252 gives no credentials) does not ask for
    // it, and the daemon reads it again on SIGHUP.
    let lines = m.h.journal().lines().count();
    let pid = m.h.main_pid();
    m.h.ctl(&["reload", "interviewd"]);
    m.h.wait_for_journal("SIGHUP: configuration reloaded", lines);
    assert_eq!(m.h.main_pid(), pid, "the reload restarted the daemon");

    let transcript = wait_until(
        "the transcript's end line",
        WAIT,
        || {
            let all = m.transcripts();
            let (id, bytes) = all.into_iter().next()?;
            let t = interviewd::journal::parse(&bytes).ok()?;
            t.end_reason().is_some().then_some((id, t, bytes))
        },
        || m.h.journal(),
    );
    let (id, t, bytes) = transcript;
    assert_eq!(t.end_reason(), Some("completed"), "{id}");
    assert_eq!(records(&t, "header")[0]["interviewer"], "openai");
    assert_eq!(
        records(&t, "item")
            .iter()
            .filter(|r| r["role"] == "user")
            .count(),
        2,
        "{}",
        String::from_utf8_lossy(&bytes)
    );
    assert!(!String::from_utf8_lossy(&bytes).contains(KEY));
    let report = m.h.ok(&[
        "exec",
        "cat",
        &format!("/var/lib/interviewd/reports/{id}.json"),
    ]);
    assert!(!report.contains(KEY), "the key is in the report");
    let journal = m.h.ok(&["journal", "-o", "verbose"]);
    assert!(
        journal.contains(&id),
        "the journal has nothing of the session"
    );
    assert!(!journal.contains(KEY), "the key is in the journal");
    eprintln!("{test}: session {id} relayed, assessed and journaled");
}
