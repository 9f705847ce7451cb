//! One interview session: a future that owns a client connection from the
//! HTTP request to the final close frame.
//!
//! The central loop holds each session's `Task` in its table. Removing the
//! entry drops the task, which cancels the session where it stands; the
//! session's [`EndGuard`] then writes the journal's end line with the reason
//! the loop gave (`stale` or `shutdown`). Sessions that end by themselves
//! write it directly (`completed`, `client_closed`, `error`).
//!
//! Everything here runs on the executor thread: the session never blocks.
//! Disk writes go to the journal thread, assessments to worker threads.

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use async_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use async_tungstenite::tungstenite::{Error as WsError, Message};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use smol::future::FutureExt;
use smol::net::TcpStream;
use smol::Timer;

use crate::assessor::{self, Assessor, Running};
use crate::children::ChildGroups;
use crate::config::Config;
use crate::handshake::{self, HandshakeError, Ws};
use crate::ids::Counter;
use crate::interviewer::{Interviewer, Turn};
use crate::journal::{now_rfc3339, EndReason, Journal};
use crate::protocol::{self, ClientEvent, Item, ProtocolError, Role, Stamp};
use crate::script::Script;
use crate::workers::Workers;

/// How long one write to a client may take. A client that does not read
/// for this long is treated as gone, so it cannot pin a session forever.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// How long we wait for the client's reply to our close frame; waiting
/// lets the close handshake finish before the TCP connection is torn down.
const CLOSE_REPLY_TIMEOUT: Duration = Duration::from_secs(1);

/// Read buffer per connection. tungstenite's default is 128 KiB, allocated
/// up front; interview events are small, and the buffer grows on demand for
/// the rare large frame.
const READ_BUFFER_BYTES: usize = 4 * 1024;

/// What a session is doing, as the loop sees it (shutdown logs, sweeper).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Handshake,
    Interview,
    Assessing,
    Closing,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Handshake => "handshake",
            Phase::Interview => "interview",
            Phase::Assessing => "assessing",
            Phase::Closing => "closing",
        }
    }
}

/// Messages from the loop to a session.
#[derive(Debug)]
pub enum Control {
    /// Shutdown: send close 1012 to the client and end.
    GoAway,
}

/// Messages from a session to the loop.
#[derive(Debug)]
pub enum Event {
    /// The session's future is about to return; remove its entry.
    Ended(u64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum JournalState {
    NotOpened,
    Open,
    Ended,
}

/// State the loop and the session share. Single-threaded, so plain `Cell`s.
pub struct Shared {
    pub id: Arc<str>,
    pub phase: Cell<Phase>,
    /// The last time any frame arrived from the client; the sweeper reads it.
    pub last_activity: Cell<Instant>,
    /// Set by the loop before it drops the task; written as the end reason.
    pub cancel_reason: Cell<EndReason>,
    journal: Cell<JournalState>,
}

impl Shared {
    pub fn new(id: String) -> Shared {
        Shared {
            id: id.into(),
            phase: Cell::new(Phase::Handshake),
            last_activity: Cell::new(Instant::now()),
            cancel_reason: Cell::new(EndReason::Error),
            journal: Cell::new(JournalState::NotOpened),
        }
    }
}

/// What a session needs from the daemon, fixed when it starts: a reload
/// (SIGHUP) changes what later sessions get, never a live one.
#[derive(Clone)]
pub struct Env {
    pub config: Rc<Config>,
    pub script: Arc<Script>,
    pub journal: Journal,
    pub workers: Rc<RefCell<Workers>>,
    pub children: ChildGroups,
    pub reports_dir: Rc<PathBuf>,
    pub events: async_channel::Sender<Event>,
}

/// Writes the end line of a session cancelled by drop.
struct EndGuard {
    shared: Rc<Shared>,
    journal: Journal,
}

impl Drop for EndGuard {
    fn drop(&mut self) {
        if self.shared.journal.get() == JournalState::Open {
            let reason = self.shared.cancel_reason.get();
            let detail = match reason {
                EndReason::Stale => "no client activity within sessions.idle_timeout",
                EndReason::Shutdown => "daemon shutdown",
                _ => "session cancelled",
            };
            self.journal.end(&self.shared.id, reason, Some(detail));
            self.shared.journal.set(JournalState::Ended);
        }
    }
}

/// Runs a session to its end. `admit` is false when the daemon is full: the
/// request gets HTTP 503 and nothing else happens.
pub async fn run(
    key: u64,
    shared: Rc<Shared>,
    env: Env,
    stream: TcpStream,
    peer: SocketAddr,
    admit: bool,
    control: async_channel::Receiver<Control>,
) {
    let guard = EndGuard {
        shared: shared.clone(),
        journal: env.journal.clone(),
    };
    serve(&shared, &env, stream, peer, admit, control).await;
    drop(guard);
    let _ = env.events.try_send(Event::Ended(key));
}

async fn serve(
    shared: &Rc<Shared>,
    env: &Env,
    stream: TcpStream,
    peer: SocketAddr,
    admit: bool,
    control: async_channel::Receiver<Control>,
) {
    let limits = &env.config.limits;
    let ws_config = WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER_BYTES)
        .write_buffer_size(0)
        .max_write_buffer_size(limits.max_message_bytes.max(1 << 20))
        .max_message_size(Some(limits.max_message_bytes))
        .max_frame_size(Some(limits.max_message_bytes));
    let upgrade = async {
        Upgrade::Done(
            handshake::accept(stream, admit, ws_config)
                .await
                .map(Box::new),
        )
    }
    .or(async {
        Timer::after(limits.handshake_timeout.0).await;
        Upgrade::TimedOut
    })
    .or(async {
        // A client still in its handshake has no session to close yet:
        // on shutdown it is simply dropped, without waiting for it.
        let _ = control.recv().await;
        Upgrade::ShuttingDown
    })
    .await;
    let ws = match upgrade {
        Upgrade::Done(Ok(ws)) => *ws,
        Upgrade::Done(Err(HandshakeError::Refused(503))) => {
            log::warn!(
                "refused {peer}: at limits.max_sessions ({})",
                limits.max_sessions
            );
            return;
        }
        Upgrade::Done(Err(e)) => {
            log::debug!("connection from {peer}: {e}");
            return;
        }
        Upgrade::TimedOut => {
            log::info!(
                "connection from {peer}: no complete request within limits.handshake_timeout"
            );
            return;
        }
        Upgrade::ShuttingDown => return,
    };
    shared.phase.set(Phase::Interview);
    shared.last_activity.set(Instant::now());
    let mut session = Session::new(shared.clone(), env.clone(), ws);
    log::info!("session {} started for {peer}", shared.id);
    let finish = session.run(&control).await;
    record_end(
        shared,
        &env.journal,
        finish.reason,
        finish.detail.as_deref(),
    );
    if let Some((code, why)) = finish.close {
        session.close(code, why).await;
    }
}

/// Writes the end line (once) and logs the end.
fn record_end(shared: &Shared, journal: &Journal, reason: EndReason, detail: Option<&str>) {
    if shared.journal.get() == JournalState::Open {
        journal.end(&shared.id, reason, detail);
        shared.journal.set(JournalState::Ended);
    }
    let detail = detail.map(|d| format!(" ({d})")).unwrap_or_default();
    log::info!("session {} ended: {}{detail}", shared.id, reason.as_str());
}

/// How the HTTP part of a connection ended.
enum Upgrade {
    Done(Result<Box<Ws>, HandshakeError>),
    TimedOut,
    ShuttingDown,
}

/// An assessment in progress.
struct Assessing {
    job: Running,
    started: Instant,
    deadline: Instant,
    next_keepalive: Instant,
}

/// What woke the session up.
enum Wake {
    Frame(Option<Result<Message, WsError>>),
    Control(Control),
    Ping,
    Keepalive,
    Assessed(Result<Value, String>),
    AssessmentTimedOut,
}

/// How a session ends: the journal's end line, then (if the client is
/// still there) a close frame. The end line is written first, so that
/// whatever happens during the close handshake cannot change it.
struct Finish {
    reason: EndReason,
    detail: Option<String>,
    close: Option<(CloseCode, &'static str)>,
}

impl Finish {
    fn closing(reason: EndReason, detail: &str, code: CloseCode, why: &'static str) -> Finish {
        Finish {
            reason,
            detail: Some(detail.to_owned()),
            close: Some((code, why)),
        }
    }

    fn quietly(reason: EndReason, detail: String) -> Finish {
        Finish {
            reason,
            detail: Some(detail),
            close: None,
        }
    }
}

/// The outcome of handling one thing: go on, or end.
type Flow = Result<(), Finish>;

struct Session {
    shared: Rc<Shared>,
    env: Env,
    /// `None` once the client has gone; an assessment carries on without it.
    ws: Option<Ws>,
    ids: Counter,
    conversation_id: String,
    interviewer: Interviewer,
    assessor: Assessor,
    /// The conversation, in order (deleted items removed).
    items: Vec<Item>,
    /// The question each user item answers, by item id.
    answered: Vec<(String, String)>,
    invalid_streak: u32,
    next_ping: Instant,
    assessing: Option<Assessing>,
}

impl Session {
    fn new(shared: Rc<Shared>, env: Env, ws: Ws) -> Session {
        let interviewer = Interviewer::new(env.config.interview.engine, env.script.clone());
        let assessor = Assessor::from_config(&env.config);
        let conversation_id = format!("conv_{}", &shared.id[5..21]);
        Session {
            next_ping: Instant::now() + env.config.sessions.ping_interval.0,
            shared,
            env,
            ws: Some(ws),
            ids: Counter::default(),
            conversation_id,
            interviewer,
            assessor,
            items: Vec::new(),
            answered: Vec::new(),
            invalid_streak: 0,
            assessing: None,
        }
    }

    async fn run(&mut self, control: &async_channel::Receiver<Control>) -> Finish {
        match self.start().await {
            Ok(()) => {}
            Err(end) => return end,
        }
        loop {
            let wake = next_wake(&mut self.ws, &self.assessing, control, self.next_ping).await;
            let flow = match wake {
                Wake::Control(Control::GoAway) => Err(Finish::closing(
                    EndReason::Shutdown,
                    "daemon shutdown",
                    CloseCode::Restart,
                    "service restart",
                )),
                Wake::Frame(frame) => self.on_frame(frame).await,
                Wake::Ping => {
                    self.next_ping = Instant::now() + self.env.config.sessions.ping_interval.0;
                    self.send_raw(Message::Ping(Default::default())).await;
                    Ok(())
                }
                Wake::Keepalive => self.keepalive().await,
                Wake::Assessed(result) => self.assessed(result).await,
                Wake::AssessmentTimedOut => {
                    if let Some(a) = &self.assessing {
                        a.job.terminate().await;
                    }
                    let timeout = humantime::format_duration(self.env.config.assessment.timeout.0);
                    self.assessed(Err(format!(
                        "the assessment did not finish within {timeout}"
                    )))
                    .await
                }
            };
            if let Err(end) = flow {
                return end;
            }
            if self.ws.is_none() && self.assessing.is_none() {
                // A write timed out: the client stopped reading mid-interview.
                let detail = format!("client did not read for {} s", SEND_TIMEOUT.as_secs());
                return Finish::quietly(EndReason::Error, detail);
            }
        }
    }

    /// Opens the journal, then greets the candidate.
    async fn start(&mut self) -> Flow {
        let header = json!({
            "kind": "header",
            "session_id": &*self.shared.id,
            "started_at": now_rfc3339(),
            "script_title": self.env.script.title,
            "interviewer": "scripted",
            "assessor": self.assessor.name(),
            "daemon_version": env!("CARGO_PKG_VERSION"),
        });
        if let Err(e) = self
            .env
            .journal
            .append_durable(&self.shared.id, header)
            .await
        {
            log::error!("session {}: cannot open transcript: {e}", self.shared.id);
            let error = ProtocolError::server(
                "transcript_unavailable",
                format!("the interview cannot be recorded: {e}"),
            );
            self.send(protocol::error(&error, None)).await;
            return Err(Finish::closing(
                EndReason::Error,
                &e.to_string(),
                CloseCode::Error,
                "transcript unavailable",
            ));
        }
        self.shared.journal.set(JournalState::Open);
        let expires_at = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
            + 3600;
        let created = protocol::session_created(
            &self.shared.id,
            &self.interviewer.instructions(),
            expires_at,
        );
        self.send(created).await;
        match self.interviewer.opening().await {
            Ok(turn) => self.emit_turn(turn).await,
            Err(e) => Err(Finish::quietly(
                EndReason::Error,
                format!("interviewer failed: {}", e.0),
            )),
        }
    }

    async fn on_frame(&mut self, frame: Option<Result<Message, WsError>>) -> Flow {
        if matches!(frame, Some(Ok(_))) {
            self.shared.last_activity.set(Instant::now());
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
            Some(Ok(Message::Close(_))) | None => {
                self.client_gone("client closed the connection").await
            }
            Some(Ok(_)) => Ok(()), // ping, pong: activity only
            Some(Err(WsError::Capacity(e))) => Err(Finish::closing(
                EndReason::Error,
                &format!("client frame over limits.max_message_bytes: {e}"),
                CloseCode::Size,
                "message too big",
            )),
            Some(Err(WsError::Utf8(_))) => Err(Finish::closing(
                EndReason::Error,
                "client sent invalid UTF-8",
                CloseCode::Invalid,
                "text frame is not UTF-8",
            )),
            Some(Err(WsError::Protocol(e))) => Err(Finish::closing(
                EndReason::Error,
                &format!("WebSocket protocol error: {e}"),
                CloseCode::Protocol,
                "protocol error",
            )),
            Some(Err(e)) => self.client_gone(&format!("connection lost: {e}")).await,
        }
    }

    /// The client is gone. Mid-interview that ends the session; during the
    /// assessment the report is still produced and written.
    async fn client_gone(&mut self, why: &str) -> Flow {
        if let Some(mut ws) = self.ws.take() {
            // If the client sent a close frame, tungstenite has queued the
            // reply; flushing sends it, completing the close handshake.
            let _ = ws
                .flush()
                .or(async {
                    Timer::after(CLOSE_REPLY_TIMEOUT).await;
                    Ok(())
                })
                .await;
        }
        if self.assessing.is_some() {
            log::info!(
                "session {}: {why}; the assessment continues",
                self.shared.id
            );
            self.env.journal.append(
                &self.shared.id,
                json!({"kind": "client_gone", "detail": why, "at": now_rfc3339()}),
            );
            return Ok(());
        }
        Err(Finish::quietly(EndReason::ClientClosed, why.to_owned()))
    }

    async fn on_text(&mut self, text: &str) -> Flow {
        let (event_id, parsed) = protocol::parse(text, self.env.config.limits.max_text_bytes);
        match parsed {
            Ok(event) => {
                self.invalid_streak = 0;
                self.on_event(event, event_id.as_deref()).await
            }
            Err(e) => self.refuse(e, event_id.as_deref()).await,
        }
    }

    /// Answers an invalid event with an `error`; too many in a row and the
    /// client is closed with 1008.
    async fn refuse(&mut self, e: ProtocolError, event_id: Option<&str>) -> Flow {
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
    async fn report(&mut self, e: ProtocolError, event_id: Option<&str>) -> Flow {
        self.send(protocol::error(&e, event_id)).await;
        Ok(())
    }

    async fn on_event(&mut self, event: ClientEvent, event_id: Option<&str>) -> Flow {
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
            ClientEvent::CreateItem { text } => self.add_answer(text, event_id).await,
            ClientEvent::CreateResponse => {
                let words = self.words_for_current_question();
                match self.interviewer.respond(words).await {
                    Ok(turn) => self.emit_turn(turn).await,
                    Err(e) => Err(Finish::quietly(
                        EndReason::Error,
                        format!("interviewer failed: {}", e.0),
                    )),
                }
            }
            ClientEvent::Finish => match self.interviewer.finish().await {
                Ok(turn) => self.emit_turn(turn).await,
                Err(e) => Err(Finish::quietly(
                    EndReason::Error,
                    format!("interviewer failed: {}", e.0),
                )),
            },
            ClientEvent::CancelResponse => {
                let e = ProtocolError::invalid(
                    "response_cancel_not_active",
                    "Cancellation failed: no active response found",
                    None,
                );
                self.report(e, event_id).await
            }
            ClientEvent::RetrieveItem { item_id } => {
                match self.items.iter().find(|i| i.id == item_id) {
                    Some(item) => {
                        let event = protocol::item_retrieved(item);
                        self.send(event).await;
                        Ok(())
                    }
                    None => self.report(item_not_found(&item_id), event_id).await,
                }
            }
            ClientEvent::DeleteItem { item_id } => self.delete_item(item_id, event_id).await,
        }
    }

    /// Records a candidate's answer; confirms it only once it is on disk.
    async fn add_answer(&mut self, text: String, event_id: Option<&str>) -> Flow {
        let question = self
            .interviewer
            .current_question()
            .unwrap_or_default()
            .to_owned();
        let item = Item {
            id: self.ids.next("item"),
            role: Role::User,
            text,
        };
        let record = json!({
            "kind": "item", "item_id": item.id, "role": "user", "question_id": question,
            "text": item.text, "at": now_rfc3339(),
        });
        if let Err(e) = self
            .env
            .journal
            .append_durable(&self.shared.id, record)
            .await
        {
            log::error!("session {}: answer not recorded: {e}", self.shared.id);
            let error = ProtocolError::server(
                "transcript_write_failed",
                format!("your answer was not saved, please send it again: {e}"),
            );
            return self.report(error, event_id).await;
        }
        let previous = self.items.last().map(|i| i.id.clone());
        for event in protocol::user_item_added(&item, previous.as_deref()) {
            self.send(event).await;
        }
        self.answered.push((item.id.clone(), question));
        self.items.push(item);
        Ok(())
    }

    async fn delete_item(&mut self, item_id: String, event_id: Option<&str>) -> Flow {
        let Some(pos) = self.items.iter().position(|i| i.id == item_id) else {
            return self.report(item_not_found(&item_id), event_id).await;
        };
        if self.items[pos].role != Role::User {
            let e = ProtocolError::invalid(
                "invalid_value",
                "only the candidate's own items can be deleted",
                Some("item_id"),
            );
            return self.report(e, event_id).await;
        }
        let record = json!({"kind": "item_deleted", "item_id": item_id, "at": now_rfc3339()});
        if let Err(e) = self
            .env
            .journal
            .append_durable(&self.shared.id, record)
            .await
        {
            let error = ProtocolError::server(
                "transcript_write_failed",
                format!("the item was not deleted: {e}"),
            );
            return self.report(error, event_id).await;
        }
        self.items.remove(pos);
        self.answered.retain(|(id, _)| *id != item_id);
        self.send(protocol::item_deleted(&item_id)).await;
        Ok(())
    }

    fn words_for_current_question(&self) -> usize {
        let Some(current) = self.interviewer.current_question() else {
            return 0;
        };
        self.answered
            .iter()
            .filter(|(_, q)| q == current)
            .filter_map(|(id, _)| self.items.iter().find(|i| i.id == *id))
            .map(|i| i.text.split_whitespace().count())
            .sum()
    }

    /// Sends an interviewer turn as a complete text response; after the
    /// closing remark, starts the assessment.
    async fn emit_turn(&mut self, turn: Turn) -> Flow {
        let (text, closing) = match turn {
            Turn::Ask(text) => (text, false),
            Turn::Close(text) => (text, true),
        };
        let item = Item {
            id: self.ids.next("item"),
            role: Role::Assistant,
            text,
        };
        self.env.journal.append(
            &self.shared.id,
            json!({"kind": "item", "item_id": item.id, "role": "assistant", "text": item.text, "at": now_rfc3339()}),
        );
        let previous = self.items.last().map(|i| i.id.clone());
        let response_id = self.ids.next("resp");
        let events = protocol::text_response(
            &response_id,
            &self.conversation_id,
            &item,
            previous.as_deref(),
        );
        self.items.push(item);
        self.send_all(events).await;
        if closing {
            self.start_assessment().await
        } else {
            Ok(())
        }
    }

    async fn start_assessment(&mut self) -> Flow {
        self.shared.phase.set(Phase::Assessing);
        self.env.journal.append(
            &self.shared.id,
            json!({"kind": "phase", "phase": "assessing", "at": now_rfc3339()}),
        );
        self.send(protocol::assessment_started(&self.shared.id))
            .await;
        let answers: Vec<(String, String)> = self
            .answered
            .iter()
            .filter_map(|(id, q)| {
                self.items
                    .iter()
                    .find(|i| i.id == *id)
                    .map(|i| (q.clone(), i.text.clone()))
            })
            .collect();
        let transcript = json!({
            "session_id": &*self.shared.id,
            "script": &*self.env.script,
            "answers": answers.iter().map(|(q, t)| json!({"question_id": q, "text": t})).collect::<Vec<_>>(),
            "items": self.items.iter().map(|i| json!({"item_id": i.id, "role": i.role.as_str(), "text": i.text})).collect::<Vec<_>>(),
        });
        let input = assessor::Input {
            session_id: self.shared.id.to_string(),
            script: self.env.script.clone(),
            answers,
            transcript,
        };
        let started = assessor::start(
            &self.assessor,
            input,
            self.env.reports_dir.to_path_buf(),
            &mut self.env.workers.borrow_mut(),
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

    async fn keepalive(&mut self) -> Flow {
        let Some(a) = &mut self.assessing else {
            return Ok(());
        };
        let interval = self.env.config.assessment.keepalive_interval.0;
        a.next_keepalive = (a.next_keepalive + interval).max(Instant::now());
        let elapsed = a.started.elapsed().as_millis() as u64;
        self.send(protocol::keepalive(elapsed)).await;
        Ok(())
    }

    async fn assessed(&mut self, result: Result<Value, String>) -> Flow {
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

    async fn send(&mut self, event: Value) {
        self.send_all(vec![event]).await;
    }

    /// Sends events as one write. A client that cannot take them within
    /// [`SEND_TIMEOUT`] is treated as gone.
    async fn send_all(&mut self, events: Vec<Value>) {
        let Some(ws) = &mut self.ws else {
            return;
        };
        let stamp = Stamp(&self.ids);
        let write = async {
            for event in events {
                ws.feed(Message::text(stamp.apply(event).to_string()))
                    .await?;
            }
            ws.flush().await
        };
        if !with_timeout(write).await {
            log::info!(
                "session {}: client not reading; dropping the connection",
                self.shared.id
            );
            self.ws = None;
        }
    }

    async fn send_raw(&mut self, message: Message) {
        if let Some(ws) = &mut self.ws {
            if !with_timeout(ws.send(message)).await {
                self.ws = None;
            }
        }
    }

    /// Sends a close frame and waits briefly for the client's reply.
    async fn close(&mut self, code: CloseCode, reason: &str) {
        let Some(mut ws) = self.ws.take() else {
            return;
        };
        let frame = CloseFrame {
            code,
            reason: reason.into(),
        };
        if !with_timeout(ws.close(Some(frame))).await {
            return;
        }
        let drain = async { while let Some(Ok(_)) = ws.next().await {} };
        drain
            .or(async {
                Timer::after(CLOSE_REPLY_TIMEOUT).await;
            })
            .await;
    }
}

/// True when the write finished in time and without error.
async fn with_timeout(write: impl std::future::Future<Output = Result<(), WsError>>) -> bool {
    async { write.await.is_ok() }
        .or(async {
            Timer::after(SEND_TIMEOUT).await;
            false
        })
        .await
}

fn item_not_found(item_id: &str) -> ProtocolError {
    let shown: String = item_id.chars().take(64).collect();
    ProtocolError::invalid(
        "item_not_found",
        format!("no item with id `{shown}` in this conversation"),
        Some("item_id"),
    )
}

/// Waits for the next thing the session must handle. Control messages come
/// first so that a busy client cannot delay shutdown.
async fn next_wake(
    ws: &mut Option<Ws>,
    assessing: &Option<Assessing>,
    control: &async_channel::Receiver<Control>,
    next_ping: Instant,
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
    control.or(assessment).or(frame).or(ping).await
}
