//! Assessor engines: who writes the report once the interview ends.
//!
//! Every job runs on its own named worker thread, never on the executor:
//! `rubric` scores on the thread; `command` runs the operator's program as a
//! child in its own process group, the transcript as JSON on stdin, the
//! report as JSON on stdout. Either way the thread writes the report to
//! `STATE_DIR/reports/<session_id>.json` atomically before it reports back,
//! so a report exists even if the client has gone. An `openai` assessor
//! becomes one more [`Assessor`] variant.
//!
//! The session enforces `assessment.timeout` (see [`Running::terminate`]);
//! shutdown signals every group through [`ChildGroups`].

use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use smol::future::FutureExt;
use smol::Timer;

use crate::children::{kill_group, ChildGroups};
use crate::config::{AssessorKind, Config};
use crate::fsutil::write_atomic;
use crate::journal::now_rfc3339;
use crate::rubric;
use crate::script::Script;
use crate::workers::{WorkerKind, Workers};

/// Largest report a command may print; more is an error, not an OOM.
const MAX_REPORT_BYTES: u64 = 1024 * 1024;

/// How long a timed-out child gets between SIGTERM and SIGKILL; long enough
/// for a well-behaved program to clean up, short enough not to matter.
const TERM_GRACE: Duration = Duration::from_secs(1);

#[derive(Debug, Clone)]
pub enum Assessor {
    Rubric,
    Command { argv: Vec<String> },
}

impl Assessor {
    pub fn from_config(config: &Config) -> Assessor {
        match config.assessment.kind {
            AssessorKind::Rubric => Assessor::Rubric,
            AssessorKind::Command => Assessor::Command {
                argv: config.assessment.command.clone(),
            },
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Assessor::Rubric => "rubric",
            Assessor::Command { .. } => "command",
        }
    }
}

/// What an assessor is given.
pub struct Input {
    pub session_id: String,
    pub script: Arc<Script>,
    /// (question id, answer text), in the order given.
    pub answers: Vec<(String, String)>,
    /// The whole transcript, as sent to a `command` on stdin.
    pub transcript: Value,
}

/// A job in progress, held by its session.
pub struct Running {
    result: async_channel::Receiver<Result<Value, String>>,
    /// The child's process group, 0 while there is none.
    pgid: Arc<AtomicI32>,
}

impl Running {
    /// The report (already on disk), or why there is none.
    pub async fn result(&self) -> Result<Value, String> {
        self.result
            .recv()
            .await
            .unwrap_or_else(|_| Err("the assessment job ended without a result".into()))
    }

    /// Ends a job that ran out of time: SIGTERM to the child's group, then
    /// SIGKILL after `TERM_GRACE` (1 s). A report the program still delivers
    /// within the grace (it may finish its work as it shuts down) is
    /// returned; like every report, it is already on disk.
    pub async fn terminate(&self) -> Option<Value> {
        let pgid = self.pgid.load(Ordering::SeqCst);
        if pgid == 0 {
            return None; // rubric jobs have no child; they end by themselves
        }
        kill_group(pgid, libc::SIGTERM);
        let reported = async { Some(self.result.recv().await) }
            .or(async {
                Timer::after(TERM_GRACE).await;
                None
            })
            .await;
        match reported {
            Some(Ok(Ok(report))) => Some(report),
            Some(_) => None,
            None => {
                // Re-read: the job clears it once the child is reaped, and a
                // reaped group's id may already belong to someone else.
                let pgid = self.pgid.load(Ordering::SeqCst);
                if pgid != 0 {
                    kill_group(pgid, libc::SIGKILL);
                }
                None
            }
        }
    }
}

/// Starts a job on a named worker thread.
pub fn start(
    assessor: &Assessor,
    input: Input,
    reports_dir: PathBuf,
    workers: &mut Workers,
    children: &ChildGroups,
) -> std::io::Result<Running> {
    let (tx, result) = async_channel::bounded(1);
    let pgid = Arc::new(AtomicI32::new(0));
    let job_pgid = pgid.clone();
    let children = children.clone();
    let assessor = assessor.clone();
    let name = format!("assess-{}", &input.session_id[5..13]);
    workers.spawn(name, WorkerKind::Assessment, move || {
        let report = match &assessor {
            Assessor::Rubric => Ok(rubric::assess(
                &input.session_id,
                &input.script,
                &input.answers,
                &now_rfc3339(),
            )),
            Assessor::Command { argv } => {
                run_command(argv, &input.transcript, &children, &job_pgid)
            }
        };
        let outcome = report.and_then(|report| {
            let path = reports_dir.join(format!("{}.json", input.session_id));
            let bytes = serde_json::to_vec_pretty(&report).expect("JSON values serialize");
            write_atomic(&path, &bytes)
                .map(|()| report)
                .map_err(|e| format!("cannot write report {}: {e}", path.display()))
        });
        let _ = tx.try_send(outcome);
    })?;
    Ok(Running { result, pgid })
}

fn run_command(
    argv: &[String],
    transcript: &Value,
    children: &ChildGroups,
    pgid: &AtomicI32,
) -> Result<Value, String> {
    let mut command = Command::new(&argv[0]);
    command
        .args(&argv[1..])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .process_group(0);
    // SAFETY: prctl and signal are async-signal-safe. If this thread dies
    // (the daemon is SIGKILLed), the kernel kills the child instead of
    // orphaning it.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The daemon ignores SIGXFSZ; the assessor gets the default.
            libc::signal(libc::SIGXFSZ, libc::SIG_DFL);
            Ok(())
        });
    }
    let mut child = children
        .spawn(&mut command)
        .map_err(|e| format!("cannot start assessor `{}`: {e}", argv[0]))?;
    let group = child.id() as libc::pid_t;
    pgid.store(group, Ordering::SeqCst);

    // Write the transcript, then read the report. A child that never reads
    // its stdin cannot block us forever: the timeout kills its group, which
    // breaks the pipe.
    let mut stdin = child.stdin.take().expect("stdin is piped");
    let wrote = stdin.write_all(transcript.to_string().as_bytes());
    drop(stdin);
    let mut out = Vec::new();
    let read = child
        .stdout
        .take()
        .expect("stdout is piped")
        .take(MAX_REPORT_BYTES + 1)
        .read_to_end(&mut out);
    if read.is_ok() && out.len() as u64 > MAX_REPORT_BYTES {
        kill_group(group, libc::SIGKILL);
    }
    let status = child.wait();
    // Whatever the program left behind in its group goes with it.
    kill_group(group, libc::SIGKILL);
    children.remove(group);
    pgid.store(0, Ordering::SeqCst);

    let status = status.map_err(|e| format!("waiting for the assessor: {e}"))?;
    if out.len() as u64 > MAX_REPORT_BYTES {
        return Err(format!(
            "the assessor printed more than {MAX_REPORT_BYTES} bytes"
        ));
    }
    if !status.success() {
        return Err(match status.code() {
            Some(code) => format!("the assessor exited with status {code}"),
            None => format!("the assessor was killed ({status})"),
        });
    }
    if let Err(e) = wrote {
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            return Err(format!("writing the transcript to the assessor: {e}"));
        }
    }
    read.map_err(|e| format!("reading the assessor's report: {e}"))?;
    match serde_json::from_slice::<Value>(&out) {
        Ok(report) if report.is_object() => Ok(report),
        Ok(_) => Err("the assessor's report is not a JSON object".into()),
        Err(e) => Err(format!("the assessor's report is not valid JSON: {e}")),
    }
}
