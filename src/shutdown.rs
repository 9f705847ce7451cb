//! The shutdown sequence: one linear function, one step per `Step`, each
//! logged with how long it took.
//!
//! ```text
//! signal ─► 1 stop accepting ─► 2 close clients (1012) ─► 3 cancel sessions
//!          ─► 4 stop children (TERM, then KILL) ─► 5 drain journal, join threads ─► exit
//!             └──────── close_grace ────────┘
//!          └────────────────────────── shutdown.deadline ─────────────────────────┘
//! ```
//!
//! A second SIGINT/SIGTERM at any point exits at once (see `signals`).

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};

use smol::future::FutureExt;
use smol::net::TcpListener;
use smol::Timer;

use crate::children::ChildGroups;
use crate::config::Config;
use crate::exit;
use crate::journal::{EndReason, Journal};
use crate::server::Table;
use crate::session::Control;
use crate::signals::SignalThread;
use crate::workers::{wait_for, WorkerKind, Workers};

/// How long assessment children get between SIGTERM and SIGKILL, at most:
/// a program that handles SIGTERM exits in milliseconds; one that ignores
/// it must not eat the whole deadline, since the journal and the threads
/// still need time after it.
const CHILD_TERM_GRACE: Duration = Duration::from_millis(500);

/// Time left for the signal thread to notice its handle was closed; it
/// wakes at once, so this only bounds a wait that cannot really block.
const SIGNAL_THREAD_JOIN: Duration = Duration::from_millis(200);

#[derive(Debug, Clone, Copy)]
enum Step {
    StopAccepting,
    CloseClients,
    CancelSessions,
    StopChildren,
    DrainJournal,
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (n, name) = match self {
            Step::StopAccepting => (1, "stop accepting and sweeping"),
            Step::CloseClients => (2, "close clients"),
            Step::CancelSessions => (3, "cancel sessions"),
            Step::StopChildren => (4, "stop assessment processes"),
            Step::DrainJournal => (5, "drain journal, join threads"),
        };
        write!(f, "{n}/5 {name}")
    }
}

/// What the sequence needs besides the listener and the table.
pub struct Shutdown {
    pub trigger: &'static str,
    /// When the signal arrived (on the signal thread): the deadline and the
    /// reported total count from here, not from when the loop heard it.
    pub received: Instant,
    pub config: Rc<Config>,
    pub journal: Journal,
    pub workers: Rc<RefCell<Workers>>,
    pub children: ChildGroups,
    pub signal_thread: SignalThread,
    /// Where [`Record`] is written, for the next process's `/metrics`.
    pub state_dir: PathBuf,
}

/// A finished shutdown, as `STATE/last-shutdown.json` keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// Each step and how long it took, in milliseconds, in order.
    pub steps: Vec<(String, u64)>,
    /// From the signal to the end of the sequence.
    pub total_ms: u64,
    /// The exit status the sequence returned.
    pub status: i32,
}

/// The file [`Record`] is kept in, in the state directory.
pub const RECORD_FILE: &str = "last-shutdown.json";

impl Record {
    /// The previous process's record, if it left one that parses.
    pub fn read(state_dir: &Path) -> Option<Record> {
        let text = std::fs::read(state_dir.join(RECORD_FILE)).ok()?;
        serde_json::from_slice(&text).ok()
    }

    /// Written whole (temporary file, fsync, rename): a crash leaves the
    /// old record or the new one, never half of one.
    fn write(&self, state_dir: &Path) -> std::io::Result<()> {
        use std::io::Write;
        let tmp = state_dir.join(format!("{RECORD_FILE}.tmp"));
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(&serde_json::to_vec(self).expect("record serializes"))?;
        file.sync_all()?;
        std::fs::rename(&tmp, state_dir.join(RECORD_FILE))
    }
}

fn done(steps: &mut Vec<(String, u64)>, step: Step, started: Instant, detail: impl fmt::Display) {
    let ms = started.elapsed().as_millis() as u64;
    log::info!("shutdown {step}: {detail} ({ms} ms)");
    steps.push((step.to_string(), ms));
}

/// Runs the whole sequence and returns the exit status.
pub async fn run(s: Shutdown, listener: TcpListener, mut table: Table) -> i32 {
    let began = s.received;
    let deadline = began + s.config.shutdown.deadline.0;
    log::info!(
        "received {} {} ms ago: shutting down (deadline {})",
        s.trigger,
        began.elapsed().as_millis(),
        humantime::format_duration(s.config.shutdown.deadline.0)
    );

    let mut steps = Vec::new();
    let t = Instant::now();
    drop(listener);
    done(&mut steps, Step::StopAccepting, t, phase_counts(&table));

    let t = Instant::now();
    for entry in table.values() {
        let _ = entry.control.try_send(Control::GoAway);
    }
    let grace_end = (t + s.config.shutdown.close_grace.0).min(deadline);
    let all_closed = async {
        for entry in table.values_mut() {
            if !entry.task.is_finished() {
                (&mut entry.task).await;
            }
        }
    };
    all_closed
        .or(async {
            Timer::at(grace_end).await;
        })
        .await;
    let closed = table.values().filter(|e| e.task.is_finished()).count();
    done(
        &mut steps,
        Step::CloseClients,
        t,
        format!("{closed} of {} closed their clients", table.len()),
    );

    let t = Instant::now();
    let mut cancelled = 0;
    for (_, entry) in std::mem::take(&mut table) {
        if !entry.task.is_finished() {
            entry.shared.cancel_reason.set(EndReason::Shutdown);
            entry.task.cancel().await;
            cancelled += 1;
        }
    }
    done(
        &mut steps,
        Step::CancelSessions,
        t,
        format!("{cancelled} cancelled"),
    );

    let t = Instant::now();
    let termed = s.children.close_and_signal(libc::SIGTERM);
    // Returns at once when no assessment is running.
    let left = wait_for(
        &s.workers,
        WorkerKind::Assessment,
        (t + CHILD_TERM_GRACE).min(deadline),
    )
    .await;
    let killed = s.children.signal_all(libc::SIGKILL);
    done(
        &mut steps,
        Step::StopChildren,
        t,
        format!(
            "{termed} process group(s) sent SIGTERM, {killed} SIGKILL; {} assessment thread(s) still running",
            left.len()
        ),
    );

    let t = Instant::now();
    let queued = s.journal.queued();
    s.journal.close();
    let mut unfinished = wait_for(&s.workers, WorkerKind::Journal, deadline).await;
    unfinished.extend(wait_for(&s.workers, WorkerKind::Assessment, deadline).await);
    done(
        &mut steps,
        Step::DrainJournal,
        t,
        format!(
            "{queued} journal record(s) were queued; {} thread(s) unfinished",
            unfinished.len()
        ),
    );

    s.signal_thread.close();
    wait_for(
        &s.workers,
        WorkerKind::Signals,
        Instant::now() + SIGNAL_THREAD_JOIN,
    )
    .await;

    let total = began.elapsed().as_millis();
    let status = if unfinished.is_empty() && s.children.is_empty() {
        exit::OK
    } else {
        exit::SHUTDOWN_INCOMPLETE
    };
    let record = Record {
        steps,
        total_ms: total as u64,
        status,
    };
    if let Err(e) = record.write(&s.state_dir) {
        log::warn!(
            "cannot record this shutdown in {}: {e}",
            s.state_dir.join(RECORD_FILE).display()
        );
    }
    if status == exit::OK {
        log::info!("shutdown complete in {total} ms");
        exit::OK
    } else {
        log::error!(
            "shutdown incomplete after {total} ms: thread(s) not finished: {}; exiting with status {}",
            if unfinished.is_empty() { "none".into() } else { unfinished.join(", ") },
            exit::SHUTDOWN_INCOMPLETE
        );
        exit::SHUTDOWN_INCOMPLETE
    }
}

/// "3 live sessions: 2 interview, 1 assessing".
fn phase_counts(table: &Table) -> String {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for entry in table.values() {
        *counts.entry(entry.shared.phase.get().as_str()).or_default() += 1;
    }
    let total: usize = counts.values().sum();
    let phases: Vec<String> = counts.iter().map(|(p, n)| format!("{n} {p}")).collect();
    if phases.is_empty() {
        "0 live sessions".into()
    } else {
        format!("{total} live session(s): {}", phases.join(", "))
    }
}
