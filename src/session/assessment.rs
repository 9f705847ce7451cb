//! A session's assessment: starting the job, keepalives while it runs, and
//! delivering its outcome.

use std::time::Instant;

use async_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use serde_json::{json, Value};

use super::{Assessing, EndReason, Finish, Flow, Phase, Session};
use crate::assessor;
use crate::journal::now_rfc3339;
use crate::protocol;

impl Session {
    pub(super) async fn start_assessment(&mut self) -> Flow {
        self.shared.phase.set(Phase::Assessing);
        self.env.journal.append(
            &self.shared.id,
            json!({"kind": "phase", "phase": "assessing", "at": now_rfc3339()}),
        );
        self.send(protocol::assessment_started(&self.shared.id))
            .await;
        let answers: Vec<(String, String)> = self
            .items
            .answers()
            .map(|(q, text)| (q.to_owned(), text.to_owned()))
            .collect();
        // Whether every question was answered, or the interview ended
        // early (interview.finish); the report's `interview_complete`.
        let interview_complete = assessor::interview_complete(&self.env.script, &answers);
        let transcript = json!({
            "session_id": &*self.shared.id,
            "script": &*self.env.script,
            "answers": answers.iter().map(|(q, t)| json!({"question_id": q, "text": t})).collect::<Vec<_>>(),
            "items": self.items.iter().map(|i| json!({"item_id": i.id, "role": i.role.as_str(), "text": i.text})).collect::<Vec<_>>(),
            "interview_complete": interview_complete,
        });
        let input = assessor::Input {
            session_id: self.shared.id.to_string(),
            candidate: self.invite.as_ref().and_then(|i| i.candidate.clone()),
            script: self.env.script.clone(),
            answers,
            interview_complete,
            transcript,
        };
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
        let elapsed = self
            .assessing
            .take()
            .map(|a| a.started.elapsed().as_millis() as u64)
            .unwrap_or(0);
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
                self.send(protocol::assessment_completed(&id, &report))
                    .await;
                Err(Finish {
                    reason: EndReason::Completed,
                    detail: None,
                    close: Some((CloseCode::Normal, "interview complete")),
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
