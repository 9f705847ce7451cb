//! A session's side of the WebSocket: bounded writes, the close handshake,
//! and the wait for whatever happens next.

use std::time::{Duration, Instant};

use async_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use async_tungstenite::tungstenite::protocol::{CloseFrame, Role};
use async_tungstenite::tungstenite::{Error as WsError, Message};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use smol::future::FutureExt;
use smol::Timer;

use super::{Assessing, Control, Lost, Session, Wake, CLOSE_REPLY_TIMEOUT};
use crate::budget::Budget;
use crate::handshake::Ws;
use crate::interviewer::Interviewer;
use crate::journal::{now_rfc3339, EndReason};
use crate::protocol::Stamp;

impl Session {
    /// Lets go of a client that cannot be written to. Mid-interview the
    /// session then ends (see `Session::run`); during the assessment the
    /// assessment carries on, and the journal says the client left.
    fn lose_client(&mut self, lost: Lost) {
        self.ws = None;
        self.record_client_gone(&lost.detail);
        self.lost = Some(lost);
    }

    /// Logs and (during the assessment) journals that the client has gone.
    pub(super) fn record_client_gone(&self, why: &str) {
        if self.assessing.is_none() {
            log::debug!("session {}: {why}", self.shared.id);
            return;
        }
        log::info!(
            "session {}: {why}; the assessment continues",
            self.shared.id
        );
        self.env.journal.append(
            &self.shared.id,
            json!({"kind": "client_gone", "detail": why, "at": now_rfc3339()}),
        );
    }
    /// Lets go of a client that has gone. If it sent a close frame,
    /// tungstenite has queued the reply; flushing sends it, completing the
    /// close handshake.
    pub(super) async fn drop_client(&mut self) {
        if let Some(mut ws) = self.ws.take() {
            let _ = ws
                .flush()
                .or(async {
                    Timer::after(CLOSE_REPLY_TIMEOUT).await;
                    Ok(())
                })
                .await;
        }
    }

    /// Swaps the WebSocket's buffers, grown by a large message, for fresh
    /// small ones. Safe only between frames (see `connection`): then
    /// tungstenite holds no unread byte, and after the flush nothing unsent.
    pub(super) async fn shrink_buffers(&mut self) {
        let timeout = self.send_timeout();
        let Some(ws) = &mut self.ws else {
            return;
        };
        if !ws.get_ref().at_frame_boundary() {
            return;
        }
        if let Err(lost) = bounded(ws.flush(), timeout).await {
            self.lose_client(lost);
            return;
        }
        let Some(ws) = self.ws.take() else {
            return;
        };
        let config = *ws.get_config();
        let connection = ws.into_inner();
        self.ws = Some(Ws::from_raw_socket(connection, Role::Server, Some(config)).await);
    }

    /// How long one write to the client may take (`limits.send_timeout`).
    fn send_timeout(&self) -> Duration {
        self.env.config.limits.send_timeout.0
    }

    pub(super) async fn send(&mut self, event: Value) {
        self.send_all(vec![event]).await;
    }

    /// Sends events as one write. A client that cannot take them within
    /// `limits.send_timeout` is treated as gone.
    pub(super) async fn send_all(&mut self, events: Vec<Value>) {
        let messages = events
            .into_iter()
            .flat_map(|e| self.for_client(e))
            .collect();
        self.send_messages(messages).await;
    }

    /// An event as the client gets it. A client that connected with
    /// `?interview_events=0` knows only the Realtime API's events: our
    /// `interview.*` events are left out, keepalives become WebSocket pings
    /// and the report a last assistant message.
    pub(super) fn for_client(&self, event: Value) -> Vec<Message> {
        let ty = event["type"].as_str().unwrap_or("");
        if self.interview_events || !ty.starts_with("interview.") {
            return vec![self.stamped(event)];
        }
        let text = match ty {
            "interview.keepalive" => return vec![Message::Ping(Default::default())],
            "interview.assessment.completed" => {
                let summary = event["report"]["summary"].as_str().unwrap_or("");
                format!("Your interview has been assessed. {summary}")
            }
            "interview.assessment.failed" => {
                "Your interview has been recorded; its assessment could not be completed.".into()
            }
            _ => return Vec::new(),
        };
        let item = crate::protocol::Item {
            id: self.ids.next("item"),
            role: crate::protocol::Role::Assistant,
            text,
        };
        crate::protocol::user_item_added(&item, self.items.last_id())
            .into_iter()
            .map(|e| self.stamped(e))
            .collect()
    }

    /// An event as a text frame, with its `event_id`.
    pub(super) fn stamped(&self, event: Value) -> Message {
        Message::text(Stamp(&self.ids).apply(event).to_string())
    }

    /// Sends frames as one write, bounded by `limits.send_timeout`.
    pub(super) async fn send_messages(&mut self, messages: Vec<Message>) {
        if messages.is_empty() {
            return;
        }
        let timeout = self.send_timeout();
        let Some(ws) = &mut self.ws else {
            return;
        };
        let write = async {
            for message in messages {
                ws.feed(message).await?;
            }
            ws.flush().await
        };
        if let Err(lost) = bounded(write, timeout).await {
            self.lose_client(lost);
        }
    }

    pub(super) async fn send_raw(&mut self, message: Message) {
        let timeout = self.send_timeout();
        if let Some(ws) = &mut self.ws {
            if let Err(lost) = bounded(ws.send(message), timeout).await {
                self.lose_client(lost);
            }
        }
    }

    /// Sends a close frame and waits briefly for the client's reply.
    pub(super) async fn close(&mut self, code: CloseCode, reason: &str) {
        let timeout = self.send_timeout();
        let Some(mut ws) = self.ws.take() else {
            return;
        };
        let frame = CloseFrame {
            code,
            reason: reason.into(),
        };
        if bounded(ws.close(Some(frame)), timeout).await.is_err() {
            return;
        }
        // A client that keeps sending must not keep this loop (and so the
        // executor) busy past the timeout: it spends a budget too.
        let drain = async {
            let mut budget = Budget::default();
            while let Some(Ok(m)) = ws.next().await {
                budget.spend(m.len()).await;
            }
        };
        drain
            .or(async {
                Timer::after(CLOSE_REPLY_TIMEOUT).await;
            })
            .await;
    }
}

/// Runs a write bounded by `timeout` (`limits.send_timeout`); on failure,
/// says how the client was lost and which end reason that is.
async fn bounded(
    write: impl std::future::Future<Output = Result<(), WsError>>,
    timeout: Duration,
) -> Result<(), Lost> {
    async {
        write.await.map_err(|e| Lost {
            reason: EndReason::ClientClosed,
            detail: format!("connection lost: {e}"),
        })
    }
    .or(async {
        Timer::after(timeout).await;
        Err(Lost {
            reason: EndReason::Error,
            detail: format!(
                "client did not read for {}",
                humantime::format_duration(timeout)
            ),
        })
    })
    .await
}

/// Waits for the next thing the session must handle. Control messages come
/// first so that a busy client cannot delay shutdown.
pub(super) async fn next_wake(
    ws: &mut Option<Ws>,
    assessing: &Option<Assessing>,
    interviewer: &mut Interviewer,
    control: &async_channel::Receiver<Control>,
    next_ping: Instant,
    resume_until: Option<Instant>,
) -> Wake {
    let connected = ws.is_some();
    let control = async {
        match control.recv().await {
            Ok(c) => Wake::Control(c),
            // The loop is gone; it will drop us. Nothing to do meanwhile.
            Err(_) => std::future::pending().await,
        }
    };
    let assessment = async {
        match assessing {
            Some(a) => {
                async { Wake::Assessed(a.job.result().await) }
                    .or(async {
                        Timer::at(a.deadline).await;
                        Wake::AssessmentTimedOut
                    })
                    .or(async {
                        Timer::at(a.next_keepalive).await;
                        Wake::Keepalive
                    })
                    .await
            }
            None => std::future::pending().await,
        }
    };
    let frame = async {
        match ws {
            Some(ws) => Wake::Frame(ws.next().await),
            None => std::future::pending().await,
        }
    };
    let ping = async {
        if !connected {
            return std::future::pending().await;
        }
        Timer::at(next_ping).await;
        Wake::Ping
    };
    let engine = async { Wake::Engine(interviewer.wake().await) };
    let expiry = async {
        match resume_until {
            Some(at) => {
                Timer::at(at).await;
                Wake::ResumeExpired
            }
            None => std::future::pending().await,
        }
    };
    control
        .or(assessment)
        .or(frame)
        .or(engine)
        .or(ping)
        .or(expiry)
        .await
}
