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
//! - [`openai`]: relays the session to the OpenAI Realtime API, voice both
//!   ways.
//!
//! Every engine method is `async` and cancelled by drop, with the session.

use serde_json::{json, Value};

use crate::config::InterviewerKind;
use crate::ids::Counter;
use crate::protocol::{ClientEvent, Item, ProtocolError};
use crate::script::Script;
use crate::session::Items;

pub mod openai;
pub mod scripted;

use std::rc::Rc;
use std::sync::Arc;

pub use openai::Relay;
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
    /// Send this frame as it is (an upstream event, relayed byte for byte:
    /// the bytes are shared, not copied).
    Frame(async_tungstenite::tungstenite::Utf8Bytes),
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
    Openai(Box<Relay>),
}

impl Interviewer {
    /// The engine's name, as `interview.engine` spells it (metrics labels).
    pub fn engine_name(&self) -> &'static str {
        match self {
            Interviewer::Scripted(_) => "scripted",
            Interviewer::Openai(_) => "openai",
        }
    }
}

/// What woke an engine; handed back to it by [`Interviewer::on_wake`].
pub enum Wake {
    Openai(openai::Wake),
}

impl Interviewer {
    /// `relay` is the `openai` engine's settings, present when that engine
    /// is configured.
    pub fn new(
        kind: InterviewerKind,
        script: Arc<Script>,
        relay: Option<Rc<openai::Settings>>,
    ) -> Interviewer {
        match (kind, relay) {
            (InterviewerKind::Openai, Some(settings)) => {
                Interviewer::Openai(Box::new(Relay::new(settings, script)))
            }
            _ => Interviewer::Scripted(Scripted::new(script)),
        }
    }

    /// The engine for a conversation restored after a restart; `None` when
    /// it cannot pick up (the engine is no longer configured, or the
    /// script has changed).
    pub fn restored(
        name: &str,
        script: Arc<Script>,
        relay: Option<Rc<openai::Settings>>,
        items: &Items,
    ) -> Option<Interviewer> {
        match (name, relay) {
            ("openai", Some(settings)) => {
                let mut r = Relay::new(settings, script);
                r.restore(items);
                Some(Interviewer::Openai(Box::new(r)))
            }
            ("scripted", _) => Scripted::restore(script, items).map(Interviewer::Scripted),
            _ => None,
        }
    }

    /// The engine's name, as configured (`interview.engine`).
    pub fn name(&self) -> &'static str {
        match self {
            Interviewer::Scripted(_) => "scripted",
            Interviewer::Openai(_) => "openai",
        }
    }

    /// Waits for something the engine itself must handle (the relay's
    /// upstream, its timers). Cancel-safe; never ready for `scripted`.
    pub async fn wake(&mut self) -> Wake {
        match self {
            Interviewer::Scripted(_) => std::future::pending().await,
            Interviewer::Openai(r) => Wake::Openai(r.wake().await),
        }
    }

    pub async fn on_wake(&mut self, wake: Wake, ctx: &Ctx<'_>) -> Result<Vec<Output>, EngineError> {
        match (self, wake) {
            (Interviewer::Openai(r), Wake::Openai(w)) => r.on_wake(w, ctx).await,
            _ => Ok(Vec::new()),
        }
    }

    /// The client has gone and the session waits for it: let go of what
    /// costs while nobody listens (the relay's upstream).
    pub fn suspend(&mut self) {
        if let Interviewer::Openai(r) = self {
            r.suspend();
        }
    }

    /// A client has taken the session over: pick up where it stopped.
    pub async fn resume(&mut self, ctx: &Ctx<'_>) -> Result<Vec<Output>, EngineError> {
        match self {
            Interviewer::Scripted(s) => Ok(s.resume(ctx)),
            Interviewer::Openai(r) => Ok(r.resume()),
        }
    }

    /// Why the interview could not be completed, if the engine failed it.
    pub fn failure(&self) -> Option<&str> {
        match self {
            Interviewer::Scripted(_) => None,
            Interviewer::Openai(r) => r.failure(),
        }
    }

    /// The session as the client is shown it (`session.created`,
    /// `session.updated`): never the operator's instructions or rubric.
    pub fn session_object(&self, session_id: &str, expires_at: u64) -> Value {
        match self {
            Interviewer::Scripted(s) => s.session_object(session_id, expires_at),
            Interviewer::Openai(r) => r.session_object(session_id, expires_at),
        }
    }

    /// The interviewer's opening.
    pub async fn open(&mut self, ctx: &Ctx<'_>) -> Result<Vec<Output>, EngineError> {
        match self {
            Interviewer::Scripted(s) => Ok(s.open(ctx)),
            Interviewer::Openai(r) => Ok(r.open()),
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
            Interviewer::Openai(r) => Ok(r.item_added(item).await),
        }
    }

    /// Any other client event the session accepted; `raw` is its frame.
    pub async fn client_event(
        &mut self,
        event: ClientEvent,
        raw: &str,
        ctx: &Ctx<'_>,
    ) -> Result<Vec<Output>, EngineError> {
        match self {
            Interviewer::Scripted(s) => Ok(s.client_event(event, ctx)),
            Interviewer::Openai(r) => Ok(r.client_event(event, raw, ctx).await),
        }
    }

    /// The id of the question being answered now; `None` once the
    /// interview is over.
    pub fn current_question(&self) -> Option<&str> {
        match self {
            Interviewer::Scripted(s) => s.current_question(),
            Interviewer::Openai(r) => r.current_question(),
        }
    }

    /// Whether the candidate's items live in the session alone (so that
    /// the session can delete them); a relayed conversation lives upstream
    /// too.
    pub fn owns_conversation(&self) -> bool {
        match self {
            Interviewer::Scripted(_) => true,
            Interviewer::Openai(_) => false,
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

/// `session.updated` for a client: the session as `session.created` showed
/// it, without the fields the GA `session.updated` does not carry in the
/// SDKs' types (`id`, `object`, `expires_at`), so that strict clients
/// accept it.
pub fn session_updated(mut session: Value) -> Value {
    if let Some(s) = session.as_object_mut() {
        for key in ["id", "object", "expires_at"] {
            s.remove(key);
        }
    }
    json!({"type": "session.updated", "session": session})
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
