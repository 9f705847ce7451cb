//! A session's conversation: the client's events and the interviewer's turns.

use std::time::Instant;

use async_tungstenite::tungstenite::error::ProtocolError as WsProtocolError;
use async_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use async_tungstenite::tungstenite::{Error as WsError, Message};
use serde_json::{json, Value};

use super::rate::Verdict;
use super::{EndReason, Finish, Flow, JournalState, Session};
use crate::interviewer::{Ctx, EngineError, Output};
use crate::journal::{now_rfc3339, JournalError};
use crate::log_limited;
use crate::protocol::{self, ClientEvent, Item, ProtocolError, Role};

/// What a transcript line costs besides its text (ids, keys, timestamp),
/// counted against `limits.max_transcript_bytes`.
pub(super) const RECORD_OVERHEAD: u64 = 160;

impl Session {
    /// Opens the journal, then greets the candidate.
    pub(super) async fn start(&mut self) -> Flow {
        let header = json!({
            "kind": "header",
            "session_id": &*self.shared.id,
            "started_at": now_rfc3339(),
            "script_title": self.env.script.title,
            "interviewer": self.interviewer.name(),
            "assessor": self.assessor.name(),
            "daemon_version": env!("CARGO_PKG_VERSION"),
        });
        let mut header = header;
        if let Some(invite) = &self.invite {
            // The invite's use is recorded here, durably, with the session.
            header["invite"] = json!(invite.id);
            header["candidate"] = json!(invite.candidate);
            header["script"] = json!(invite.script);
        }
        if let Some(token) = &self.resume_token {
            // What resumes the session after a restart; the token itself is
            // kept nowhere.
            header["resume_token_sha256"] = json!(crate::invites::hash(token));
        }
        if let Err(e) = self.record_durably(header, "cannot open transcript").await {
            return Err(self.unrecordable(e).await);
        }
        self.shared.journal.set(JournalState::Open);
        let created = self.created_event();
        self.send(created).await;
        let ctx = ctx!(self);
        let opened = self.interviewer.open(&ctx).await;
        self.apply(opened, None).await
    }

    /// The transcript cannot be written: the client is told, and the
    /// session ends with 1011.
    async fn unrecordable(&mut self, e: JournalError) -> Finish {
        let error = ProtocolError::server(
            "transcript_unavailable",
            format!("the interview cannot be recorded: {e}"),
        );
        self.send(protocol::error(&error, None)).await;
        Finish::closing(
            EndReason::Error,
            &e.to_string(),
            CloseCode::Error,
            "transcript unavailable",
        )
    }

    /// `session.created` for this session, with its resume token in
    /// `open` mode.
    pub(super) fn created_event(&self) -> Value {
        let mut session = self
            .interviewer
            .session_object(&self.shared.id, self.expires_at);
        if let Some(token) = &self.resume_token {
            session["resume_token"] = json!(token);
        }
        protocol::session_created(session)
    }

    /// Carries out what the engine asked for, in order; if the engine
    /// failed, tells the client and ends the session.
    pub(super) async fn apply(
        &mut self,
        outputs: Result<Vec<Output>, EngineError>,
        event_id: Option<&str>,
    ) -> Flow {
        let outputs = match outputs {
            Ok(outputs) => outputs,
            Err(e) => {
                log::error!("session {}: interviewer failed: {}", self.shared.id, e.0);
                let message = format!("the interviewer failed: {}", e.0);
                let error = ProtocolError::server("interviewer_failed", message.clone());
                self.send(protocol::error(&error, None)).await;
                return Err(Finish::closing(
                    EndReason::Error,
                    &message,
                    CloseCode::Error,
                    "interviewer failed",
                ));
            }
        };
        // Consecutive events go out as one write.
        let mut pending: Vec<Message> = Vec::new();
        for output in outputs {
            match output {
                Output::Send(event) => pending.extend(self.for_client(event)),
                Output::Frame(text) => pending.push(Message::text(text)),
                Output::Transcript { item, answers } => {
                    self.send_messages(std::mem::take(&mut pending)).await;
                    self.record_line(item, answers).await?;
                }
                Output::Refuse(e) => {
                    self.send_messages(std::mem::take(&mut pending)).await;
                    self.refuse(e, event_id).await?;
                }
                Output::Report(e) => pending.push(self.stamped(protocol::error(&e, event_id))),
                Output::Closed => {
                    self.send_messages(std::mem::take(&mut pending)).await;
                    if let Some(why) = self.interviewer.failure() {
                        let record = json!({"kind": "interview_incomplete", "reason": why, "at": now_rfc3339()});
                        self.env.journal.append(&self.shared.id, record);
                    }
                    self.start_assessment().await?;
                }
            }
        }
        self.send_messages(pending).await;
        Ok(())
    }

    /// The engine woke (its upstream, its timers): carry out what it says.
    pub(super) async fn on_engine(&mut self, wake: crate::interviewer::Wake) -> Flow {
        let ctx = ctx!(self);
        let outputs = self.interviewer.on_wake(wake, &ctx).await;
        self.apply(outputs, None).await
    }

    /// Journals a line of the conversation durably and adds it to the
    /// conversation. Nothing the engine sends after it goes out before it
    /// is on disk; if it cannot be written, the interview cannot go on.
    async fn record_line(&mut self, item: Item, answers: Option<String>) -> Flow {
        let mut record = json!({
            "kind": "item", "item_id": item.id, "role": item.role.as_str(),
            "text": item.text, "at": now_rfc3339(),
        });
        if let Some(q) = &answers {
            record["question_id"] = json!(q);
        }
        if let Err(e) = self
            .record_durably(record, "transcript line not recorded")
            .await
        {
            return Err(self.unrecordable(e).await);
        }
        self.transcript_bytes += item.text.len() as u64 + RECORD_OVERHEAD;
        self.items.push(item, answers);
        Ok(())
    }

    /// The client broke the WebSocket rules: it is closed with `code`. That
    /// ends the interview, but not an assessment under way: the report is
    /// still produced, as when a client disconnects.
    async fn violation(&mut self, detail: String, code: CloseCode, why: &'static str) -> Flow {
        if self.assessing.is_none() {
            return Err(Finish::closing(EndReason::Error, &detail, code, why));
        }
        self.close(code, why).await;
        self.client_gone(&detail).await
    }

    pub(super) async fn on_frame(&mut self, frame: Option<Result<Message, WsError>>) -> Flow {
        if let Some(Ok(message)) = &frame {
            let now = Instant::now();
            self.shared.last_activity.set(now);
            if !message.is_close() {
                match self.rate.check(now) {
                    Verdict::Accept => {}
                    Verdict::Refuse { tell } => return self.rate_limited(tell).await,
                    Verdict::Close => {
                        let detail = format!(
                            "over limits.events_per_second ({}) for {} s",
                            self.env.config.limits.events_per_second,
                            super::rate::STRIKES
                        );
                        log_limited!(
                            log::Level::Info,
                            "rate limit",
                            "session {}: closed: {detail}",
                            self.shared.id
                        );
                        return self
                            .violation(detail, CloseCode::Policy, "rate limit exceeded")
                            .await;
                    }
                }
            }
        }
        match frame {
            Some(Ok(Message::Text(text))) => self.on_text(text.as_str()).await,
            Some(Ok(Message::Binary(_))) => {
                let e = ProtocolError::invalid(
                    "binary_not_supported",
                    "binary frames are not supported; send JSON text frames",
                    None,
                );
                self.refuse(e, None).await
            }
            // tungstenite hands on an invalid close code (999, 1005, 5000) as
            // 1002 and has already answered with 1002: a protocol violation.
            Some(Ok(Message::Close(Some(frame)))) if frame.code == CloseCode::Protocol => {
                self.drop_client().await;
                let why = "client closed with a protocol error (1002 or an invalid close code)";
                self.record_client_gone(why);
                if self.assessing.is_some() {
                    return Ok(());
                }
                Err(Finish::quietly(EndReason::Error, why.to_owned()))
            }
            Some(Ok(Message::Close(_))) | None => {
                self.client_gone("client closed the connection").await
            }
            Some(Ok(_)) => Ok(()), // ping, pong: activity only
            // A connection dropped without a close frame: the client is gone,
            // it did nothing wrong on the wire.
            Some(Err(WsError::Protocol(WsProtocolError::ResetWithoutClosingHandshake))) => {
                self.client_gone("connection dropped without a close frame")
                    .await
            }
            Some(Err(WsError::Capacity(e))) => {
                let detail = format!("client frame over limits.max_message_bytes: {e}");
                self.violation(detail, CloseCode::Size, "message too big")
                    .await
            }
            Some(Err(WsError::Utf8(_))) => {
                let detail = "client sent invalid UTF-8".to_owned();
                self.violation(detail, CloseCode::Invalid, "text frame is not UTF-8")
                    .await
            }
            Some(Err(WsError::Protocol(e))) => {
                let detail = format!("WebSocket protocol error: {e}");
                self.violation(detail, CloseCode::Protocol, "protocol error")
                    .await
            }
            Some(Err(e)) => self.client_gone(&format!("connection lost: {e}")).await,
        }
    }

    /// The client is gone. Mid-interview that ends the session; during the
    /// assessment the report is still produced and written.
    pub(super) async fn client_gone(&mut self, why: &str) -> Flow {
        self.drop_client().await;
        self.record_client_gone(why);
        if self.assessing.is_none() {
            self.suspend(EndReason::ClientClosed, why.to_owned());
        }
        Ok(())
    }

    /// A frame over the client's rate was dropped; say so at most once a
    /// second.
    async fn rate_limited(&mut self, tell: bool) -> Flow {
        if tell {
            let limits = &self.env.config.limits;
            let e = ProtocolError::invalid(
                "rate_limited",
                format!(
                    "too many events: at most {} a second (bursts of {}); events over the rate are dropped",
                    limits.events_per_second, limits.events_burst
                ),
                None,
            );
            self.send(protocol::error(&e, None)).await;
        }
        Ok(())
    }

    pub(super) async fn on_text(&mut self, text: &str) -> Flow {
        let (event_id, parsed) = protocol::parse(text, self.env.config.limits.max_text_bytes);
        match parsed {
            Ok(event) => {
                self.invalid_streak = 0;
                self.on_event(event, text, event_id.as_deref()).await
            }
            Err(e) => self.refuse(e, event_id.as_deref()).await,
        }
    }

    /// Answers an invalid event with an `error`; too many in a row and the
    /// client is closed with 1008.
    pub(super) async fn refuse(&mut self, e: ProtocolError, event_id: Option<&str>) -> Flow {
        self.invalid_streak += 1;
        log::debug!(
            "session {}: invalid client event: {}",
            self.shared.id,
            e.message
        );
        self.send(protocol::error(&e, event_id)).await;
        if self.invalid_streak >= self.env.config.limits.max_invalid_events {
            let detail = format!("{} invalid events in a row", self.invalid_streak);
            return Err(Finish::closing(
                EndReason::Error,
                &detail,
                CloseCode::Policy,
                "too many invalid events",
            ));
        }
        Ok(())
    }

    /// An error that is not the client's fault (or not garbage): reported,
    /// and the streak of invalid events is not advanced.
    pub(super) async fn report(&mut self, e: ProtocolError, event_id: Option<&str>) -> Flow {
        self.send(protocol::error(&e, event_id)).await;
        Ok(())
    }

    pub(super) async fn on_event(
        &mut self,
        event: ClientEvent,
        raw: &str,
        event_id: Option<&str>,
    ) -> Flow {
        let over = self.interviewer.current_question().is_none();
        match event {
            ClientEvent::CreateItem { .. }
            | ClientEvent::CreateResponse
            | ClientEvent::DeleteItem { .. }
            | ClientEvent::Finish
                if over =>
            {
                let e = ProtocolError::invalid(
                    "interview_over",
                    "the interview has ended; the assessment is under way",
                    None,
                );
                self.report(e, event_id).await
            }
            ClientEvent::CreateItem { .. } | ClientEvent::CreateResponse if self.is_full() => {
                let e = ProtocolError::invalid(
                    "conversation_full",
                    format!(
                        "the conversation has reached limits.max_items ({} items); send interview.finish",
                        self.env.config.limits.max_items
                    ),
                    None,
                );
                self.report(e, event_id).await
            }
            ClientEvent::CreateItem { text } => self.add_answer(text, event_id).await,
            ClientEvent::DeleteItem { item_id } if self.interviewer.owns_conversation() => {
                self.delete_item(item_id, event_id).await
            }
            ClientEvent::DeleteItem { .. } => {
                let e = ProtocolError::invalid(
                    "invalid_value",
                    "conversation.item.delete is not supported by this interviewer",
                    Some("type"),
                );
                self.refuse(e, event_id).await
            }
            event => {
                let ctx = ctx!(self);
                let outputs = self.interviewer.client_event(event, raw, &ctx).await;
                self.apply(outputs, event_id).await
            }
        }
    }

    /// Records a candidate's answer; confirms it only once it is on disk.
    pub(super) async fn add_answer(&mut self, text: String, event_id: Option<&str>) -> Flow {
        let question = self
            .interviewer
            .current_question()
            .unwrap_or_default()
            .to_owned();
        let cost = text.len() as u64 + RECORD_OVERHEAD;
        if self.transcript_bytes + cost > self.env.config.limits.max_transcript_bytes {
            let e = ProtocolError::invalid(
                "transcript_full",
                format!(
                    "the transcript has reached limits.max_transcript_bytes ({} bytes); send interview.finish",
                    self.env.config.limits.max_transcript_bytes
                ),
                None,
            );
            return self.report(e, event_id).await;
        }
        let item = Item {
            id: self.ids.next("item"),
            role: Role::User,
            text,
        };
        let record = json!({
            "kind": "item", "item_id": item.id, "role": "user", "question_id": question,
            "text": item.text, "at": now_rfc3339(),
        });
        if let Err(e) = self.record_durably(record, "answer not recorded").await {
            let error = ProtocolError::server(
                "transcript_write_failed",
                format!("your answer was not saved, please send it again: {e}"),
            );
            return self.report(error, event_id).await;
        }
        self.transcript_bytes += cost;
        let previous = self.items.last_id().map(str::to_owned);
        let outputs = self
            .interviewer
            .item_added(&item, previous.as_deref())
            .await;
        self.items.push(item, Some(question));
        self.apply(outputs, event_id).await
    }

    pub(super) async fn delete_item(&mut self, item_id: String, event_id: Option<&str>) -> Flow {
        let Some(item) = self.items.get(&item_id) else {
            return self
                .report(protocol::item_not_found(&item_id), event_id)
                .await;
        };
        if item.role != Role::User {
            let e = ProtocolError::invalid(
                "invalid_value",
                "only the candidate's own items can be deleted",
                Some("item_id"),
            );
            return self.report(e, event_id).await;
        }
        let record = json!({"kind": "item_deleted", "item_id": item_id, "at": now_rfc3339()});
        if let Err(e) = self.record_durably(record, "deletion not recorded").await {
            let error = ProtocolError::server(
                "transcript_write_failed",
                format!("the item was not deleted: {e}"),
            );
            return self.report(error, event_id).await;
        }
        self.items.remove(&item_id);
        self.send(protocol::item_deleted(&item_id)).await;
        Ok(())
    }

    /// Appends a record and waits until it is on disk. A failure is logged
    /// as `session ID: {failed}: ERROR` and returned, for the client.
    async fn record_durably(
        &self,
        record: Value,
        failed: &'static str,
    ) -> Result<(), JournalError> {
        let result = self
            .env
            .journal
            .append_durable(&self.shared.id, record)
            .await;
        if let Err(e) = &result {
            // A full disk fails every session at once: one line per kind
            // per interval, not one per session.
            log_limited!(
                log::Level::Error,
                failed,
                "session {}: {failed}: {e}",
                self.shared.id
            );
        }
        result
    }

    /// At `limits.max_items`: no more answers or turns.
    fn is_full(&self) -> bool {
        self.items.len() >= self.env.config.limits.max_items
    }
}
