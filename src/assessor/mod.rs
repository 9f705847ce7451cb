//! Assessor engines: who writes the report once the interview ends. One
//! file per engine; this file is the contract ([`Assessor`], [`Input`],
//! [`start`], [`Running`]).
//!
//! - [`rubric`]: the built-in, deterministic scorer.
//! - `command`: the operator's program, as a child in its own process
//!   group, the transcript as JSON on stdin, the assessment on stdout.
//! - [`openai`]: the Responses API, async on the executor (so that dropping
//!   the session abandons the request), falling back to the rubric.
//!
//! The job's blocking part runs on its own named worker thread, never on
//! the executor. It completes the assessment into a report with the
//! daemon's own fields, validates it against the report format ([`report`],
//! docs/report.schema.json), and writes it to
//! `STATE_DIR/reports/<session_id>.json` atomically before it reports back,
//! so a report exists even if the client has gone.
//!
//! The session enforces `assessment.timeout` (see [`Running::terminate`]);
//! shutdown signals every group through [`ChildGroups`].

use std::path::PathBuf;
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

use crate::script::{word_count, Script};
use crate::workers::{WorkerKind, Workers};

mod command;
pub mod openai;
pub mod report;
pub mod rubric;

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;

/// How long a timed-out child gets between SIGTERM and SIGKILL; long enough
/// for a well-behaved program to clean up, short enough not to matter.
const TERM_GRACE: Duration = Duration::from_secs(1);

#[derive(Clone)]
pub enum Assessor {
    Rubric,
    Command { argv: Vec<String> },
    Openai(Rc<openai::Settings>),
}

impl Assessor {
    /// `openai` is the `openai` assessor's settings, built when it is
    /// configured; without them the rubric stands in.
    pub fn from_config(config: &Config, openai: Option<&Rc<openai::Settings>>) -> Assessor {
        match (config.assessment.kind, openai) {
            (AssessorKind::Command, _) => Assessor::Command {
                argv: config.assessment.command.clone(),
            },
            (AssessorKind::Openai, Some(settings)) => Assessor::Openai(settings.clone()),
            _ => Assessor::Rubric,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Assessor::Rubric => "rubric",
            Assessor::Command { .. } => "command",
            Assessor::Openai(_) => "openai",
        }
    }
}

/// What an assessor is given.
pub struct Input {
    pub session_id: String,
    /// Who was interviewed, from the invite.
    pub candidate: Option<String>,
    pub script: Arc<Script>,
    /// (question id, answer text), in the order given.
    pub answers: Vec<(String, String)>,
    /// Whether every question has an answer: [`interview_complete`].
    pub interview_complete: bool,
    /// The whole transcript, as sent to a `command` on stdin.
    pub transcript: Value,
}

impl Input {
    /// The input for a conversation: its items in order and the answers
    /// as (question id, text).
    pub fn new<'a>(
        session_id: String,
        candidate: Option<String>,
        script: Arc<Script>,
        items: impl Iterator<Item = &'a crate::protocol::Item>,
        answers: impl Iterator<Item = (&'a str, &'a str)>,
    ) -> Input {
        let answers: Vec<(String, String)> = answers
            .map(|(q, text)| (q.to_owned(), text.to_owned()))
            .collect();
        // Whether every question was answered, or the interview ended
        // early (interview.finish); the report's `interview_complete`.
        let interview_complete = interview_complete(&script, &answers);
        let transcript = serde_json::json!({
            "session_id": session_id,
            "script": &*script,
            "answers": answers.iter().map(|(q, t)| serde_json::json!({"question_id": q, "text": t})).collect::<Vec<_>>(),
            "items": items.map(|i| serde_json::json!({"item_id": i.id, "role": i.role.as_str(), "text": i.text})).collect::<Vec<_>>(),
            "interview_complete": interview_complete,
        });
        Input {
            session_id,
            candidate,
            script,
            answers,
            interview_complete,
            transcript,
        }
    }
}

/// Whether an interview is complete: every question of the script has an
/// answer of at least one word. An interview ended early (by
/// `interview.finish`, or at a limit) leaves questions without one, and so
/// does deleting the only answer to a question. The report's
/// `interview_complete`.
pub fn interview_complete(script: &Script, answers: &[(String, String)]) -> bool {
    script.questions.iter().all(|q| {
        answers
            .iter()
            .any(|(id, text)| *id == q.id && word_count(text) > 0)
    })
}

/// A job in progress, held by its session. Dropping it abandons an
/// `openai` request in flight; a worker thread finishes on its own (and a
/// child is stopped by the session's timeout or by shutdown).
pub struct Running {
    result: async_channel::Receiver<Result<Value, String>>,
    /// The child's process group, 0 while there is none.
    pgid: Arc<AtomicI32>,
    /// The `openai` request, polled by [`Running::result`] until it has
    /// handed its outcome to the worker thread.
    request: RefCell<Option<Pin<Box<dyn Future<Output = ()>>>>>,
}

impl Running {
    /// The report (already on disk), or why there is none.
    pub async fn result(&self) -> Result<Value, String> {
        // The request is driven here, one poll at a time; the borrow never
        // spans an await.
        let drive = std::future::poll_fn(|cx| {
            let mut slot = self.request.borrow_mut();
            if let Some(request) = slot.as_mut() {
                if request.as_mut().poll(cx).is_ready() {
                    *slot = None;
                }
            }
            std::task::Poll::Pending
        });
        async {
            self.result
                .recv()
                .await
                .unwrap_or_else(|_| Err("the assessment job ended without a result".into()))
        }
        .or(drive)
        .await
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

/// What a worker thread does with an assessment.
enum Job {
    Rubric,
    Command(Vec<String>),
    /// The `openai` answer, to be completed and checked.
    Openai {
        assessment: Value,
        model: String,
    },
    /// The rubric, standing in for the `openai` assessor.
    Fallback {
        reason: String,
    },
}

/// Starts a job: on a named worker thread, or for `openai` first the
/// request on the executor, then the thread.
pub fn start(
    assessor: &Assessor,
    input: Input,
    reports_dir: PathBuf,
    workers: &Rc<RefCell<Workers>>,
    children: &ChildGroups,
) -> std::io::Result<Running> {
    let (tx, result) = async_channel::bounded(1);
    let pgid = Arc::new(AtomicI32::new(0));
    let job = match assessor {
        Assessor::Rubric => Job::Rubric,
        Assessor::Command { argv } => Job::Command(argv.clone()),
        Assessor::Openai(settings) => {
            let settings = settings.clone();
            let workers = workers.clone();
            let children = children.clone();
            let job_pgid = pgid.clone();
            let request = async move {
                let outcome = openai::request(&settings, &input.script, &input.transcript).await;
                let job = match outcome {
                    openai::Outcome::Assessment(assessment) => Job::Openai {
                        assessment,
                        model: settings.model.clone(),
                    },
                    openai::Outcome::Failed(reason) => {
                        log::warn!(
                            "session {}: openai assessor failed ({reason}); the rubric stands in",
                            input.session_id
                        );
                        Job::Fallback { reason }
                    }
                };
                let spawned = spawn_job(
                    job,
                    input,
                    reports_dir,
                    &mut workers.borrow_mut(),
                    &children,
                    job_pgid,
                    tx.clone(),
                );
                if let Err(e) = spawned {
                    let _ = tx.try_send(Err(format!("cannot start the assessment: {e}")));
                }
            };
            return Ok(Running {
                result,
                pgid,
                request: RefCell::new(Some(Box::pin(request))),
            });
        }
    };
    spawn_job(
        job,
        input,
        reports_dir,
        &mut workers.borrow_mut(),
        children,
        pgid.clone(),
        tx,
    )?;
    Ok(Running {
        result,
        pgid,
        request: RefCell::new(None),
    })
}

fn spawn_job(
    job: Job,
    input: Input,
    reports_dir: PathBuf,
    workers: &mut Workers,
    children: &ChildGroups,
    job_pgid: Arc<AtomicI32>,
    tx: async_channel::Sender<Result<Value, String>>,
) -> std::io::Result<()> {
    let children = children.clone();
    let name = format!("assess-{}", &input.session_id[5..13]);
    workers.spawn(name, WorkerKind::Assessment, move || {
        let provenance = |kind: &'static str, model: Option<String>, fallback: Option<String>| {
            report::Provenance {
                kind,
                model,
                fallback_reason: fallback,
            }
        };
        let (assessment, assessor) = match job {
            Job::Rubric => (
                Ok(rubric::assess(&input.script, &input.answers)),
                provenance("rubric", None, None),
            ),
            Job::Command(argv) => (
                command::run_command(&argv, &input.transcript, &children, &job_pgid),
                provenance("command", None, None),
            ),
            Job::Openai {
                mut assessment,
                model,
            } => {
                openai::keep_verbatim_evidence(&mut assessment, &input.answers);
                (Ok(assessment), provenance("openai", Some(model), None))
            }
            Job::Fallback { reason } => (
                Ok(rubric::assess(&input.script, &input.answers)),
                provenance(
                    "rubric",
                    None,
                    Some(format!("the openai assessor failed: {reason}")),
                ),
            ),
        };
        let context = |assessor| report::Context {
            session_id: &input.session_id,
            candidate: input.candidate.as_deref(),
            script: &input.script,
            answers: &input.answers,
            interview_complete: input.interview_complete,
            assessor,
            generated_at: now_rfc3339(),
        };
        let model_used = assessor.kind == "openai";
        let mut assembled =
            assessment.and_then(|assessment| report::assemble(assessment, &context(assessor)));
        if model_used {
            if let Err(reason) = &assembled {
                // The model's answer broke the report format: the rubric
                // stands in, and the report says why.
                let fallback = provenance(
                    "rubric",
                    None,
                    Some(format!(
                        "the openai assessor's answer was unusable: {reason}"
                    )),
                );
                assembled = report::assemble(
                    rubric::assess(&input.script, &input.answers),
                    &context(fallback),
                );
            }
        }
        let outcome = assembled.and_then(|report| {
            let path = reports_dir.join(format!("{}.json", input.session_id));
            let bytes = serde_json::to_vec_pretty(&report).expect("JSON values serialize");
            write_atomic(&path, &bytes)
                .map(|()| report)
                .map_err(|e| format!("cannot write report {}: {e}", path.display()))
        });
        let _ = tx.try_send(outcome);
    })?;
    Ok(())
}
