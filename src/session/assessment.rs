//! A session's assessment: starting the job, keepalives while it runs, and
//! delivering its outcome.

use std::time::Instant;

use async_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use serde_json::{json, Value};

use super::{Assessing, EndReason, Finish, Flow, Phase, Session};
use crate::assessor;
use crate::journal::now_rfc3339;
use crate::metrics;
use crate::protocol;

impl Session {
    pub(super) async fn start_assessment(&mut self) -> Flow {
        self.env.journal.append(
            &self.shared.id,
            json!({"kind": "phase", "phase": "assessing", "at": now_rfc3339()}),
        );
        self.run_assessment().await
    }

    /// Starts (or, for a session restored after a restart, starts again)
    /// the assessment job.
    pub(super) async fn run_assessment(&mut self) -> Flow {
        self.shared.phase.set(Phase::Assessing);
        self.send(protocol::assessment_started(&self.shared.id))
            .await;
        let input = assessor::Input::new(
            self.shared.id.to_string(),
            self.invite.as_ref().and_then(|i| i.candidate.clone()),
            self.env.script.clone(),
            self.items.iter(),
            self.items.answers(),
        );
        let started = assessor::start(
            &self.assessor,
            input,
            self.env.reports_dir.to_path_buf(),
            &self.env.workers,
            &self.env.children,
        );
        let job = match started {
            Ok(job) => job,
            Err(e) => {
                return self
                    .assessed(Err(format!("cannot start the assessment: {e}")))
                    .await
            }
        };
        let now = Instant::now();
        let config = &self.env.config.assessment;
        self.assessing = Some(Assessing {
            job,
            started: now,
            deadline: now + config.timeout.0,
            next_keepalive: now + config.keepalive_interval.0,
        });
        Ok(())
    }

    pub(super) async fn keepalive(&mut self) -> Flow {
        let Some(a) = &mut self.assessing else {
            return Ok(());
        };
        let interval = self.env.config.assessment.keepalive_interval.0;
        a.next_keepalive = (a.next_keepalive + interval).max(Instant::now());
        let elapsed = a.started.elapsed().as_millis() as u64;
        self.send(protocol::keepalive(elapsed)).await;
        Ok(())
    }

    pub(super) async fn assessed(&mut self, result: Result<Value, String>) -> Flow {
        let took = self
            .assessing
            .take()
            .map(|a| a.started.elapsed())
            .unwrap_or_default();
        let elapsed = took.as_millis() as u64;
        metrics::assessed(&result, took);
        self.shared.phase.set(Phase::Closing);
        let id = self.shared.id.clone();
        match result {
            Ok(report) => {
                let path = format!("reports/{id}.json");
                self.env.journal.append(
                    &id,
                    json!({"kind": "assessment", "outcome": "completed", "report": path, "duration_ms": elapsed, "at": now_rfc3339()}),
                );
                log::info!("session {id}: assessment completed in {elapsed} ms");
                let share = self.env.config.assessment.share_with_candidate;
                self.send(protocol::assessment_completed(&id, &report, share))
                    .await;
                Err(Finish {
                    reason: EndReason::Completed,
                    detail: None,
                    close: Some((CloseCode::Normal, "interview complete")),
                    record: super::Record::End,
                })
            }
            Err(reason) => {
                self.env.journal.append(
                    &id,
                    json!({"kind": "assessment", "outcome": "failed", "reason": reason, "duration_ms": elapsed, "at": now_rfc3339()}),
                );
                log::warn!("session {id}: assessment failed: {reason}");
                self.send(protocol::assessment_failed(&id, &reason)).await;
                Err(Finish::closing(
                    EndReason::Error,
                    &format!("assessment failed: {reason}"),
                    CloseCode::Normal,
                    "interview complete; assessment failed",
                ))
            }
        }
    }
}
