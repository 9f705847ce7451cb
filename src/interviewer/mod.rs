//! Interviewer engines: who asks the questions.
//!
//! A session is "client socket ⇄ engine". The session owns the client
//! connection, the limits, the conversation (`session::Items`) and the
//! transcript; an engine decides what the interviewer says. They talk in
//! [`Output`]s: server events to send, transcript lines to make durable
//! first, refusals, and the end of the interview. The transcript and
//! durability rules therefore live once, in the session, whatever the
//! engine.
//!
//! - [`scripted`]: walks an interview script; no network, the embedded
//!   default.
//!
//! Every engine method is `async` and cancelled by drop, with the session.

use serde_json::{json, Value};

use crate::config::InterviewerKind;
use crate::ids::Counter;
use crate::protocol::{ClientEvent, Item, ProtocolError};
use crate::script::Script;
use crate::session::Items;

pub mod scripted;

use std::sync::Arc;

pub use scripted::Scripted;

/// An engine failure; the session reports it to the client as an `error`
/// (`interviewer_failed`) and closes with 1011.
#[derive(Debug)]
pub struct EngineError(pub String);

/// What an engine asks the session to do, in order.
#[derive(Debug)]
pub enum Output {
    /// Send this server event (the session stamps its `event_id`).
    Send(Value),
    /// Journal this line of the conversation, durably, before anything that
    /// follows it is sent; `answers` names the question a candidate's line
    /// answers.
    Transcript { item: Item, answers: Option<String> },
    /// Refuse the client event being handled: it was invalid (counts
    /// towards `limits.max_invalid_events`).
    Refuse(ProtocolError),
    /// Tell the client the event being handled could not be done (not its
    /// fault, or not garbage).
    Report(ProtocolError),
    /// The closing remark has been sent: the assessment starts.
    Closed,
}

/// What an engine may read of the session's state.
pub struct Ctx<'a> {
    pub session_id: &'a str,
    pub expires_at: u64,
    pub items: &'a Items,
    pub ids: &'a Counter,
    pub conversation_id: &'a str,
}

pub enum Interviewer {
    Scripted(Scripted),
}

impl Interviewer {
    pub fn new(kind: InterviewerKind, script: Arc<Script>) -> Interviewer {
        match kind {
            InterviewerKind::Scripted => Interviewer::Scripted(Scripted::new(script)),
        }
    }

    /// The engine's name, as configured (`interview.engine`).
    pub fn name(&self) -> &'static str {
        match self {
            Interviewer::Scripted(_) => "scripted",
        }
    }

    /// The session as the client is shown it (`session.created`,
    /// `session.updated`): never the operator's instructions or rubric.
    pub fn session_object(&self, session_id: &str, expires_at: u64) -> Value {
        match self {
            Interviewer::Scripted(s) => s.session_object(session_id, expires_at),
        }
    }

    /// The interviewer's opening.
    pub async fn open(&mut self, ctx: &Ctx<'_>) -> Result<Vec<Output>, EngineError> {
        match self {
            Interviewer::Scripted(s) => Ok(s.open(ctx)),
        }
    }

    /// A candidate's message, already journaled by the session.
    pub async fn item_added(
        &mut self,
        item: &Item,
        previous_item_id: Option<&str>,
    ) -> Result<Vec<Output>, EngineError> {
        match self {
            Interviewer::Scripted(s) => Ok(s.item_added(item, previous_item_id)),
        }
    }

    /// Any other client event the session accepted.
    pub async fn client_event(
        &mut self,
        event: ClientEvent,
        ctx: &Ctx<'_>,
    ) -> Result<Vec<Output>, EngineError> {
        match self {
            Interviewer::Scripted(s) => Ok(s.client_event(event, ctx)),
        }
    }

    /// The id of the question being answered now; `None` once the
    /// interview is over.
    pub fn current_question(&self) -> Option<&str> {
        match self {
            Interviewer::Scripted(s) => s.current_question(),
        }
    }

    /// Whether the candidate's items live in the session alone (so that
    /// the session can delete them); a relayed conversation lives upstream
    /// too.
    pub fn owns_conversation(&self) -> bool {
        match self {
            Interviewer::Scripted(_) => true,
        }
    }
}

/// The parts of a client's `session.update` a candidate may choose; the
/// rest (instructions, tools, voice, model, turn detection…) belong to the
/// operator and are ignored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CandidateChoices {
    /// `["text"]` or `["audio"]`, when the client set it.
    pub output_modalities: Option<Vec<String>>,
    pub input_audio_format: Option<Value>,
    pub output_audio_format: Option<Value>,
}

impl CandidateChoices {
    pub fn from_update(session: &Value) -> CandidateChoices {
        let modalities = session
            .get("output_modalities")
            .and_then(Value::as_array)
            .map(|m| {
                m.iter()
                    .filter_map(Value::as_str)
                    .filter(|m| matches!(*m, "text" | "audio"))
                    .map(str::to_owned)
                    .collect::<Vec<_>>()
            })
            .filter(|m| !m.is_empty());
        let format = |dir: &str| {
            session
                .pointer(&format!("/audio/{dir}/format"))
                .filter(|f| f.is_object())
                .cloned()
        };
        CandidateChoices {
            output_modalities: modalities,
            input_audio_format: format("input"),
            output_audio_format: format("output"),
        }
    }
}

/// The GA session object's shape with what an engine fills in.
pub fn session_object(
    session_id: &str,
    model: &str,
    output_modalities: &[&str],
    instructions: &str,
    expires_at: u64,
) -> Value {
    json!({
        "type": "realtime",
        "object": "realtime.session",
        "id": session_id,
        "model": model,
        "output_modalities": output_modalities,
        "instructions": instructions,
        "tools": [],
        "tool_choice": "none",
        "max_output_tokens": "inf",
        "tracing": null,
        "prompt": null,
        "expires_at": expires_at,
    })
}
