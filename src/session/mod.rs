//! One interview session: a future that owns a client connection from the
//! HTTP request to the final close frame.
//!
//! The central loop holds each session's `Task` in its table. Removing the
//! entry drops the task, which cancels the session where it stands; the
//! session's `EndGuard` then writes the journal's end line with the reason
//! the loop gave (`stale` or `shutdown`). Sessions that end by themselves
//! write it directly (`completed`, `client_closed`, `error`).
//!
//! Everything here runs on the executor thread: the session never blocks.
//! Disk writes go to the journal thread, assessments to worker threads.
//!
//! This file holds the lifecycle (handshake, run loop, end); `conversation`
//! handles client events and interviewer turns, `assessment` the report,
//! and `io` the bounded writes, the close handshake and the wait.

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use async_tungstenite::tungstenite::protocol::WebSocketConfig;
use async_tungstenite::tungstenite::{Error as WsError, Message};
use serde_json::Value;
use smol::future::FutureExt;
use smol::net::TcpStream;
use smol::Timer;

use crate::admission::{Admission, Ticket};
use crate::assessor::{Assessor, Running};
use crate::budget::Budget;
use crate::children::ChildGroups;
use crate::config::Config;
use crate::connection::Transport;
use crate::handshake::{self, HandshakeError, Ws};
use crate::ids::Counter;
use crate::interviewer::Interviewer;
use crate::journal::{EndReason, Journal};
use crate::log_limited;
use crate::script::Script;
use crate::workers::Workers;

/// The engine's view of the session, borrowed field by field so that the
/// engine (another field) can be borrowed mutably beside it.
macro_rules! ctx {
    ($s:expr) => {
        Ctx {
            session_id: &$s.shared.id,
            expires_at: $s.expires_at,
            items: &$s.items,
            ids: &$s.ids,
            conversation_id: &$s.conversation_id,
        }
    };
}

pub mod admit;
mod assessment;
mod conversation;
mod io;
mod items;
mod rate;
pub mod restore;
pub mod resume;

pub use items::Items;
use rate::RateLimit;

/// How long we wait for the client's reply to our close frame; waiting
/// lets the close handshake finish before the TCP connection is torn down.
const CLOSE_REPLY_TIMEOUT: Duration = Duration::from_secs(1);

/// How long a connection still in its HTTP handshake may take to be
/// answered once shutdown begins: a request on loopback or a LAN is read
/// and answered in well under a millisecond, an Internet client's in a few
/// round trips; past this it is dropped (it was probably never going to
/// finish). Shorter than the default `shutdown.close_grace` (250 ms).
const HANDSHAKE_DRAIN: Duration = Duration::from_millis(150);

/// Read buffer per connection. tungstenite's default is 128 KiB, allocated
/// up front; interview events are small, and the buffer grows on demand for
/// the rare large frame (and shrinks back after it: [`SHRINK_AFTER`]).
const READ_BUFFER_BYTES: usize = 4 * 1024;

/// A message larger than this has grown tungstenite's buffers; once it is
/// handled they are swapped for fresh ones of [`READ_BUFFER_BYTES`], so that
/// an idle session costs the same whatever it once received.
const SHRINK_AFTER: usize = 16 * 1024;

/// What a session is doing, as the loop sees it (shutdown logs, sweeper).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Handshake,
    Interview,
    Assessing,
    Closing,
    /// The client has gone; waiting for it to resume.
    Suspended,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Handshake => "handshake",
            Phase::Interview => "interview",
            Phase::Assessing => "assessing",
            Phase::Closing => "closing",
            Phase::Suspended => "suspended",
        }
    }
}

/// Messages to a session, from the loop or from a connection that resumes
/// it.
pub enum Control {
    /// Shutdown: send close 1012 to the client and end.
    GoAway,
    /// The sweeper: the client has been silent too long; let it go and
    /// wait for it to resume.
    Stale,
    /// A new connection for this session (see `resume`).
    TakeOver(Box<resume::TakeOver>),
}

/// Messages from a session to the loop.
#[derive(Debug)]
pub enum Event {
    /// The session's future is about to return; remove its entry.
    Ended(u64),
    /// An HTTP endpoint asks for the table's state (`endpoints`).
    Snapshot(async_channel::Sender<crate::endpoints::Snapshot>),
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
    /// The interviewer engine (`scripted`, `openai`) once the session has
    /// one; the loop counts sessions by it for `/metrics`.
    pub engine: Cell<Option<&'static str>>,
    journal: Cell<JournalState>,
}

impl Shared {
    pub fn new(id: String) -> Shared {
        Shared {
            id: id.into(),
            phase: Cell::new(Phase::Handshake),
            last_activity: Cell::new(Instant::now()),
            cancel_reason: Cell::new(EndReason::Error),
            engine: Cell::new(None),
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
    /// Session slots, in all and per client address.
    pub admission: Rc<RefCell<Admission>>,
    /// The invites (`access.mode = "invite"`), shared by every session.
    pub invites: Rc<RefCell<crate::invites::Store>>,
    /// The listener's TLS configuration, when `server.tls_cert` is set.
    pub tls: Option<Arc<futures_rustls::rustls::ServerConfig>>,
    /// Sessions by resume key, for connections that resume one.
    pub resumable: resume::Registry,
    /// The `openai` engine's settings, when it is configured.
    pub relay: Option<Rc<crate::interviewer::openai::Settings>>,
    /// The `openai` assessor's settings, when it is configured.
    pub assessor_openai: Option<Rc<crate::assessor::openai::Settings>>,
    /// The daemon's state as the HTTP endpoints report it.
    pub status: Rc<crate::endpoints::Status>,
    /// The bearer token that opens `/metrics` from any address.
    pub metrics_token: Option<Rc<crate::upstream::Secret>>,
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
            let phase = self.shared.phase.get();
            if reason == EndReason::Shutdown
                && matches!(
                    phase,
                    Phase::Interview | Phase::Suspended | Phase::Assessing
                )
            {
                // Cancelled at shutdown: resumable after the restart, or
                // assessed again (a suspended one is journaled as such
                // already).
                if phase != Phase::Suspended {
                    self.journal
                        .append_and_close(&self.shared.id, suspended_record(reason, Some(detail)));
                }
                self.shared.journal.set(JournalState::Ended);
                return;
            }
            self.journal.end(&self.shared.id, reason, Some(detail));
            self.shared.journal.set(JournalState::Ended);
            log::debug!(
                "session {} ended: {} ({detail})",
                self.shared.id,
                reason.as_str()
            );
        }
    }
}

/// Runs a connection to its end: the handshake (holding `handshake`, its
/// slot among the connections in their handshake), then the session.
pub async fn run(
    key: u64,
    shared: Rc<Shared>,
    env: Env,
    stream: TcpStream,
    peer: SocketAddr,
    handshake: Ticket,
    control: (
        async_channel::Sender<Control>,
        async_channel::Receiver<Control>,
    ),
) {
    let guard = EndGuard {
        shared: shared.clone(),
        journal: env.journal.clone(),
    };
    serve(&shared, &env, stream, peer, handshake, control).await;
    drop(guard);
    let _ = env.events.try_send(Event::Ended(key));
}

async fn serve(
    shared: &Rc<Shared>,
    env: &Env,
    stream: TcpStream,
    peer: SocketAddr,
    handshake: Ticket,
    (control_tx, control): (
        async_channel::Sender<Control>,
        async_channel::Receiver<Control>,
    ),
) {
    let limits = &env.config.limits;
    // Writes are eager (no write buffering) and bounded in time by
    // limits.send_timeout, not in size: tungstenite 0.30 accepts
    // `max_write_buffer_size` but does not apply it.
    let ws_config = WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER_BYTES)
        .write_buffer_size(0)
        .max_message_size(Some(limits.max_message_bytes))
        .max_frame_size(Some(limits.max_message_bytes));
    let upgrade = async {
        let transport = match &env.tls {
            None => Transport::Plain(stream),
            Some(config) => {
                let accepted = futures_rustls::TlsAcceptor::from(config.clone())
                    .accept(stream)
                    .or(async {
                        Timer::after(crate::tls::HANDSHAKE_TIMEOUT).await;
                        Err(std::io::Error::new(
                            std::io::ErrorKind::TimedOut,
                            "no TLS handshake within 5 s",
                        ))
                    })
                    .await;
                match accepted {
                    Ok(tls) => Transport::Tls(Box::new(tls.into())),
                    Err(e) => return Upgrade::Tls(e),
                }
            }
        };
        Upgrade::Done(
            handshake::accept(transport, ws_config, |request| {
                admit::admit(env, peer, request)
            })
            .await,
        )
    }
    .or(async {
        Timer::after(limits.handshake_timeout.0).await;
        Upgrade::TimedOut
    })
    .or(async {
        // A client still in its handshake has no session to close yet. On
        // shutdown it gets HANDSHAKE_DRAIN to finish: a request already
        // read is answered (503 for an interview, see `admit`; a probe or a
        // page as usual), so a restart under socket activation resets no
        // connection that was accepted; a slow one is dropped.
        let _ = control.recv().await;
        Timer::after(HANDSHAKE_DRAIN).await;
        Upgrade::ShuttingDown
    })
    .await;
    let (ws, admitted, interview_events, token_presented) = match upgrade {
        Upgrade::Done(Ok(handshake::Accepted::Page(page))) => {
            let (stream, request) = *page;
            crate::endpoints::serve(stream, request, env, peer).await;
            return;
        }
        Upgrade::Done(Ok(handshake::Accepted::Upgrade(accepted))) => {
            let (ws, request, admitted) = *accepted;
            let interview_events = !query_flag_off(request.query.as_deref(), "interview_events");
            (ws, admitted, interview_events, request.token)
        }
        // admit() has logged why.
        Upgrade::Done(Err(HandshakeError::Denied(_))) => return,
        Upgrade::Done(Err(e @ HandshakeError::TlsOnPlainPort)) => {
            log_limited!(
                log::Level::Info,
                "tls on plain port",
                "connection from {peer}: {e}"
            );
            return;
        }
        Upgrade::Done(Err(e @ HandshakeError::TooSlow)) => {
            log_limited!(
                log::Level::Info,
                "slow handshake",
                "connection from {peer}: {e}"
            );
            return;
        }
        Upgrade::Done(Err(e)) => {
            log_limited!(
                log::Level::Debug,
                "bad handshake",
                "connection from {peer}: {e}"
            );
            return;
        }
        Upgrade::Tls(e) => {
            log_limited!(
                log::Level::Info,
                "tls handshake failed",
                "connection from {peer}: TLS handshake failed: {e}"
            );
            return;
        }
        Upgrade::TimedOut => {
            log_limited!(
                log::Level::Info,
                "slow handshake",
                "connection from {peer}: no complete request within limits.handshake_timeout"
            );
            return;
        }
        Upgrade::ShuttingDown => return,
    };
    // A page answer above is written holding its handshake slot; a session
    // has its own slot from here.
    drop(handshake);
    shared.phase.set(Phase::Interview);
    shared.last_activity.set(Instant::now());
    let client = admitted.client;
    if let Some(session) = admitted.resume {
        // This connection resumes another session: hand it over and end.
        let take_over = resume::TakeOver {
            ws,
            slot: admitted.slot,
            token: token_presented,
            client,
            interview_events,
        };
        if let Err(e) = session.try_send(Control::TakeOver(Box::new(take_over))) {
            log::info!("connection from {peer}: the session it resumes has just ended");
            if let Control::TakeOver(t) = e.into_inner() {
                let mut ws = t.ws;
                let frame = async_tungstenite::tungstenite::protocol::CloseFrame {
                    code: CloseCode::Again,
                    reason: "the session has just ended; connect again".into(),
                };
                let _ = ws
                    .close(Some(frame))
                    .or(async {
                        Timer::after(limits.send_timeout.0).await;
                        Ok(())
                    })
                    .await;
            }
        }
        return;
    }
    let mut session_env = env.clone();
    session_env.script = admitted.script;
    let mut session = Session::new(shared.clone(), session_env, ws, interview_events);
    session.invite = admitted.invite;
    session.slot = admitted.slot;
    session.resume_token = admitted.resume_token;
    let key = admitted.resume_key;
    env.resumable
        .borrow_mut()
        .insert(key.clone(), control_tx.clone());
    crate::metrics::session_started(session.interviewer.engine_name());
    if client == peer.ip() {
        log::info!("session {} started for {peer}", shared.id);
    } else {
        log::info!("session {} started for {client} (via {peer})", shared.id);
    }
    let finish = session.run(&control).await;
    session.conclude(finish, &key, &control_tx).await;
}

/// Writes the end line (once) and logs the end.
fn record_end(
    shared: &Shared,
    journal: &Journal,
    reason: EndReason,
    detail: Option<&str>,
    record: Record,
) {
    if shared.journal.get() == JournalState::Open {
        match record {
            Record::End => journal.end(&shared.id, reason, detail),
            Record::Suspend => {
                journal.append_and_close(&shared.id, suspended_record(reason, detail))
            }
            Record::Nothing => {}
        }
        shared.journal.set(JournalState::Ended);
    }
    let detail = detail.map(|d| format!(" ({d})")).unwrap_or_default();
    match record {
        Record::End => log::info!("session {} ended: {}{detail}", shared.id, reason.as_str()),
        _ => log::info!(
            "session {} stopped, resumable after a restart: {}{detail}",
            shared.id,
            reason.as_str()
        ),
    }
}

/// The journal line of a suspension.
fn suspended_record(reason: EndReason, detail: Option<&str>) -> serde_json::Value {
    serde_json::json!({"kind": "suspended", "reason": reason.as_str(), "detail": detail,
                       "at": crate::journal::now_rfc3339()})
}

/// How the HTTP part of a connection ended.
enum Upgrade {
    Done(Result<handshake::Accepted<admit::Admitted>, HandshakeError>),
    /// The TLS handshake failed (a plain-text client, a bad hello, too slow).
    Tls(std::io::Error),
    TimedOut,
    ShuttingDown,
}

/// A suspended session: why, and until when it can be resumed.
struct Suspension {
    reason: EndReason,
    detail: String,
    until: Instant,
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
    Engine(crate::interviewer::Wake),
    /// The resume window of a suspended session has passed.
    ResumeExpired,
}

/// How a session ends: the journal's end line, then (if the client is
/// still there) a close frame. The end line is written first, so that
/// whatever happens during the close handshake cannot change it.
struct Finish {
    reason: EndReason,
    detail: Option<String>,
    close: Option<(CloseCode, &'static str)>,
    /// What the journal gets: an end line, or (a stop the interview can be
    /// resumed from: shutdown mid-interview) a `suspended` line, or nothing
    /// (it is suspended already).
    record: Record,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Record {
    End,
    Suspend,
    Nothing,
}

impl Finish {
    /// Shutdown: close 1012, "service restart".
    fn go_away() -> Finish {
        Finish::closing(
            EndReason::Shutdown,
            "daemon shutdown",
            CloseCode::Restart,
            "service restart",
        )
    }
    fn closing(reason: EndReason, detail: &str, code: CloseCode, why: &'static str) -> Finish {
        Finish {
            reason,
            detail: Some(detail.to_owned()),
            close: Some((code, why)),
            record: Record::End,
        }
    }

    fn quietly(reason: EndReason, detail: String) -> Finish {
        Finish {
            reason,
            detail: Some(detail),
            close: None,
            record: Record::End,
        }
    }

    /// The same stop, journaled as a suspension (or not at all).
    fn recorded_as(mut self, record: Record) -> Finish {
        self.record = record;
        self
    }
}

/// A client that could not be written to, and what that means for the end.
struct Lost {
    reason: EndReason,
    detail: String,
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
    /// The conversation, in order (deleted items removed); at most
    /// `limits.max_items`.
    items: Items,
    /// Bytes of conversation journaled so far, against
    /// `limits.max_transcript_bytes`.
    transcript_bytes: u64,
    /// The client's frame rate (`limits.events_per_second`).
    rate: RateLimit,
    /// Work done since the session last gave the executor back.
    budget: Budget,
    /// When the session expires, as `session.created` says (Unix seconds).
    expires_at: u64,
    /// The invite that opened the session, if any: named in the transcript
    /// header and the report.
    invite: Option<crate::invites::Invite>,
    /// `open` mode: the token a client presents to resume the session.
    resume_token: Option<String>,
    /// The client's place under `limits.max_sessions`; given back while the
    /// session is suspended.
    slot: Option<Ticket>,
    /// Set while the client is gone and the session waits for it.
    suspended: Option<Suspension>,
    /// False when the client asked for the Realtime API's events only
    /// (`?interview_events=0`): see `Session::for_client`.
    interview_events: bool,
    invalid_streak: u32,
    /// How the client was lost, when a write to it failed.
    lost: Option<Lost>,
    next_ping: Instant,
    assessing: Option<Assessing>,
}

impl Session {
    /// A session rebuilt from its journal (see `restore`): no client yet.
    fn restored(shared: Rc<Shared>, env: Env, interviewer: Interviewer, items: Items) -> Session {
        let mut session = Session::with(shared, env, None, interviewer, true);
        session.items = items;
        session
    }

    fn new(shared: Rc<Shared>, env: Env, ws: Ws, interview_events: bool) -> Session {
        let interviewer = Interviewer::new(
            env.config.interview.engine,
            env.script.clone(),
            env.relay.clone(),
        );
        Session::with(shared, env, Some(ws), interviewer, interview_events)
    }

    fn with(
        shared: Rc<Shared>,
        env: Env,
        ws: Option<Ws>,
        interviewer: Interviewer,
        interview_events: bool,
    ) -> Session {
        let assessor = Assessor::from_config(&env.config, env.assessor_openai.as_ref());
        shared.engine.set(Some(interviewer.engine_name()));
        let conversation_id = format!("conv_{}", &shared.id[5..21]);
        let limits = &env.config.limits;
        let rate = RateLimit::new(
            limits.events_per_second,
            limits.events_burst,
            Instant::now(),
        );
        Session {
            next_ping: Instant::now() + env.config.sessions.ping_interval.0,
            shared,
            env,
            ws,
            ids: Counter::default(),
            conversation_id,
            interviewer,
            assessor,
            items: Items::default(),
            transcript_bytes: 0,
            rate,
            invite: None,
            resume_token: None,
            slot: None,
            suspended: None,
            interview_events,
            expires_at: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs())
                + 3600,
            budget: Budget::default(),
            invalid_streak: 0,
            lost: None,
            assessing: None,
        }
    }

    async fn run(&mut self, control: &async_channel::Receiver<Control>) -> Finish {
        match self.start().await {
            Ok(()) => {}
            Err(end) => return end,
        }
        self.run_loop(control).await
    }

    /// How every session's run ends: it leaves the registry (if `key`
    /// still names it), the journal gets its end (or suspension) line, and
    /// a client still there gets its close frame.
    async fn conclude(
        &mut self,
        finish: Finish,
        key: &str,
        control_tx: &async_channel::Sender<Control>,
    ) {
        resume::unregister(&self.env.resumable, key, control_tx);
        record_end(
            &self.shared,
            &self.env.journal,
            finish.reason,
            finish.detail.as_deref(),
            finish.record,
        );
        if let Some((code, why)) = finish.close {
            self.close(code, why).await;
        }
    }

    /// The session's loop: what happens next, until it ends.
    async fn run_loop(&mut self, control: &async_channel::Receiver<Control>) -> Finish {
        loop {
            let resume_until = self.suspended.as_ref().map(|s| s.until);
            let wake = io::next_wake(
                &mut self.ws,
                &self.assessing,
                &mut self.interviewer,
                control,
                self.next_ping,
                resume_until,
            )
            .await;
            let flow = match wake {
                // Shutdown: an interview can be resumed after the restart,
                // so it is suspended, not ended (an assessment is done
                // again after it: see `reassess`).
                Wake::Control(Control::GoAway) => match self.suspended.take() {
                    // Its client is gone, and the journal says so already.
                    Some(s) => {
                        Err(Finish::quietly(s.reason, s.detail).recorded_as(Record::Nothing))
                    }
                    // Mid-interview it is resumed after the restart; in its
                    // assessment, assessed again (see `restore`).
                    None => Err(Finish::go_away().recorded_as(Record::Suspend)),
                },
                Wake::Control(Control::Stale) => {
                    if self.ws.is_some() && self.assessing.is_none() {
                        self.ws = None;
                        let idle = self.shared.last_activity.get().elapsed().as_secs();
                        self.suspend(EndReason::Stale, format!("no client activity for {idle} s"));
                    }
                    Ok(())
                }
                Wake::Control(Control::TakeOver(t)) => self.take_over(*t).await,
                Wake::ResumeExpired => {
                    let s = self.suspended.take().expect("only while suspended");
                    log::info!(
                        "session {}: not resumed within sessions.resume_window",
                        self.shared.id
                    );
                    return Finish::quietly(s.reason, s.detail);
                }
                Wake::Frame(frame) => {
                    let bytes = frame_len(&frame);
                    let flow = self.on_frame(frame).await;
                    if bytes > SHRINK_AFTER {
                        self.shrink_buffers().await;
                    }
                    self.budget.spend(bytes).await;
                    flow
                }
                Wake::Ping => {
                    self.next_ping = Instant::now() + self.env.config.sessions.ping_interval.0;
                    self.send_raw(Message::Ping(Default::default())).await;
                    Ok(())
                }
                Wake::Keepalive => self.keepalive().await,
                Wake::Engine(wake) => {
                    // An upstream that floods is held to the same budget as
                    // a client that does.
                    let flow = self.on_engine(wake).await;
                    self.budget.spend(0).await;
                    flow
                }
                Wake::Assessed(result) => self.assessed(result).await,
                Wake::AssessmentTimedOut => {
                    // The termination grace can last a second: shutdown must
                    // still be heard meanwhile (step 4 stops the child then).
                    let Some(a) = &self.assessing else { continue };
                    log::info!(
                        "session {}: assessment timed out after {}; stopping it",
                        self.shared.id,
                        humantime::format_duration(self.env.config.assessment.timeout.0)
                    );
                    let late = async { Some(a.job.terminate().await) }
                        .or(async {
                            match control.recv().await {
                                Ok(Control::GoAway) => None,
                                // Heard again after the grace.
                                Ok(_) | Err(_) => std::future::pending().await,
                            }
                        })
                        .await;
                    let Some(late) = late else {
                        return Finish::go_away();
                    };
                    let timeout = humantime::format_duration(self.env.config.assessment.timeout.0);
                    let result = late
                        .ok_or_else(|| format!("the assessment did not finish within {timeout}"));
                    self.assessed(result).await
                }
            };
            if let Err(end) = flow {
                return end;
            }
            if self.ws.is_none() && self.assessing.is_none() && self.suspended.is_none() {
                if self.interviewer.current_question().is_none() {
                    // Lost after the closing remark, before the assessment
                    // started: nothing to resume.
                    return Finish::quietly(EndReason::ClientClosed, "client gone".into());
                }
                // A write failed mid-interview: the client is gone.
                let lost = self.lost.take().unwrap_or(Lost {
                    reason: EndReason::ClientClosed,
                    detail: "client gone".into(),
                });
                self.suspend(lost.reason, lost.detail);
            }
        }
    }
}

/// The size of what a frame carried, for the budget.
fn frame_len(frame: &Option<Result<Message, WsError>>) -> usize {
    match frame {
        Some(Ok(m)) => m.len(),
        _ => 0,
    }
}

/// Whether the query string sets `name` to `0` or `false`.
fn query_flag_off(query: Option<&str>, name: &str) -> bool {
    query
        .into_iter()
        .flat_map(|q| q.split('&'))
        .filter_map(|pair| pair.split_once('='))
        .any(|(k, v)| k == name && matches!(v, "0" | "false"))
}
