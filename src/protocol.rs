//! The wire protocol: OpenAI Realtime API (GA) events, plus `interview.*`
//! events of our own. docs/protocol.md is the reference; tests validate the
//! server events against the official SDK's types.
//!
//! Builders here produce complete server events as JSON values; the session
//! stamps each with its `event_id` as it sends it ([`Stamp`]).

use serde_json::{json, Value};

use crate::ids::Counter;
use crate::script::word_count;

/// The model name reported in `session.created`; the scripted interviewer
/// is not a model, and says so.
pub const SCRIPTED_MODEL: &str = "interviewd-scripted";

/// Longest client `event_id` we echo back in errors.
const MAX_EVENT_ID: usize = 256;

/// Assigns each outgoing event its `event_id`.
pub struct Stamp<'a>(pub &'a Counter);

impl Stamp<'_> {
    pub fn apply(&self, mut event: Value) -> Value {
        event["event_id"] = json!(self.0.next("event"));
        event
    }
}

/// A conversation item, as the session keeps it.
#[derive(Debug, Clone)]
pub struct Item {
    pub id: String,
    pub role: Role,
    pub text: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    User,
    Assistant,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Assistant => "assistant",
        }
    }
}

impl Item {
    /// The item as the Realtime API shows it, with the given status.
    pub fn to_json(&self, status: &str) -> Value {
        let content = match self.role {
            Role::User => json!([{"type": "input_text", "text": self.text}]),
            Role::Assistant => json!([{"type": "output_text", "text": self.text}]),
        };
        json!({
            "id": self.id,
            "object": "realtime.item",
            "type": "message",
            "status": status,
            "role": self.role.as_str(),
            "content": content,
        })
    }
}

pub fn session_created(session: serde_json::Value) -> Value {
    json!({"type": "session.created", "session": session})
}

/// The whole event sequence the real API sends for one completed text
/// response: the response and its single message item, the item's one text
/// part streamed as deltas, then everything marked done. `phase` goes into
/// the response's `metadata.interview_phase`: `closing` on the last one.
pub fn text_response(
    response_id: &str,
    conversation_id: &str,
    item: &Item,
    previous_item_id: Option<&str>,
    phase: &str,
) -> Vec<Value> {
    let response = |status: &str, output: Value| {
        json!({
            "id": response_id,
            "object": "realtime.response",
            "status": status,
            "status_details": null,
            "output": output,
            "conversation_id": conversation_id,
            "output_modalities": ["text"],
            "max_output_tokens": "inf",
            "metadata": {"interview_phase": phase},
            "usage": null,
        })
    };
    let in_progress = json!({
        "id": item.id, "object": "realtime.item", "type": "message",
        "status": "in_progress", "role": "assistant", "content": [],
    });
    let done_item = item.to_json("completed");
    // An event about the item's one content part.
    let part_event = |ty: &str, extra: Value| {
        let mut v = json!({"type": ty, "response_id": response_id, "item_id": item.id, "output_index": 0, "content_index": 0});
        merge(&mut v, extra);
        v
    };
    let mut events = vec![
        json!({"type": "response.created", "response": response("in_progress", json!([]))}),
        json!({"type": "response.output_item.added", "response_id": response_id, "output_index": 0, "item": in_progress}),
        json!({"type": "conversation.item.added", "previous_item_id": previous_item_id, "item": in_progress}),
        part_event(
            "response.content_part.added",
            json!({"part": {"type": "text", "text": ""}}),
        ),
    ];
    for delta in deltas(&item.text) {
        events.push(part_event(
            "response.output_text.delta",
            json!({"delta": delta}),
        ));
    }
    events.extend([
        part_event("response.output_text.done", json!({"text": item.text})),
        part_event("response.content_part.done", json!({"part": {"type": "text", "text": item.text}})),
        json!({"type": "response.output_item.done", "response_id": response_id, "output_index": 0, "item": done_item}),
        json!({"type": "conversation.item.done", "previous_item_id": previous_item_id, "item": done_item}),
        json!({"type": "response.done", "response": response("completed", json!([done_item]))}),
    ]);
    events
}

fn merge(into: &mut Value, from: Value) {
    if let (Some(into), Value::Object(from)) = (into.as_object_mut(), from) {
        into.extend(from);
    }
}

/// Splits text into the chunks streamed as deltas: a few words each, the
/// way a model streams, whitespace kept so that the deltas concatenate to
/// exactly the text.
pub fn deltas(text: &str) -> Vec<&str> {
    const WORDS_PER_DELTA: usize = 4;
    let mut out = Vec::new();
    let mut start = 0;
    let mut words = 0;
    let mut in_word = false;
    for (i, c) in text.char_indices() {
        if c.is_whitespace() {
            if in_word {
                words += 1;
                if words == WORDS_PER_DELTA {
                    out.push(&text[start..i]);
                    start = i;
                    words = 0;
                }
            }
            in_word = false;
        } else {
            in_word = true;
        }
    }
    if start < text.len() || out.is_empty() {
        out.push(&text[start..]);
    }
    out
}

pub fn user_item_added(item: &Item, previous_item_id: Option<&str>) -> [Value; 2] {
    let v = item.to_json("completed");
    [
        json!({"type": "conversation.item.added", "previous_item_id": previous_item_id, "item": v}),
        json!({"type": "conversation.item.done", "previous_item_id": previous_item_id, "item": v}),
    ]
}

pub fn item_retrieved(item: &Item) -> Value {
    json!({"type": "conversation.item.retrieved", "item": item.to_json("completed")})
}

pub fn item_deleted(item_id: &str) -> Value {
    json!({"type": "conversation.item.deleted", "item_id": item_id})
}

/// An `error` event in the Realtime shape.
pub fn error(e: &ProtocolError, client_event_id: Option<&str>) -> Value {
    json!({
        "type": "error",
        "error": {
            "type": e.kind,
            "code": e.code,
            "message": e.message,
            "param": e.param,
            "event_id": client_event_id,
        }
    })
}

pub fn assessment_started(session_id: &str) -> Value {
    json!({"type": "interview.assessment.started", "session_id": session_id})
}

pub fn keepalive(elapsed_ms: u64) -> Value {
    json!({"type": "interview.keepalive", "phase": "assessing", "elapsed_ms": elapsed_ms})
}

/// `interview.assessment.completed`, with as much of the report as
/// `assessment.share_with_candidate` allows: `shared` says which.
pub fn assessment_completed(
    session_id: &str,
    report: &Value,
    share: crate::config::Share,
) -> Value {
    use crate::config::Share;
    let (shared, report) = match share {
        Share::Full => ("full", report.clone()),
        Share::Summary => (
            "summary",
            json!({"session_id": report["session_id"], "summary": report["summary"]}),
        ),
        Share::None => ("none", Value::Null),
    };
    json!({"type": "interview.assessment.completed", "session_id": session_id,
           "shared": shared, "report": report})
}

pub fn assessment_failed(session_id: &str, reason: &str) -> Value {
    json!({"type": "interview.assessment.failed", "session_id": session_id, "reason": reason})
}

/// What a client asked for.
#[derive(Debug, PartialEq)]
pub enum ClientEvent {
    /// `conversation.item.create` with a user text message.
    CreateItem {
        text: String,
    },
    /// `response.create`: the interviewer's next turn.
    CreateResponse,
    CancelResponse,
    DeleteItem {
        item_id: String,
    },
    RetrieveItem {
        item_id: String,
    },
    /// `interview.finish`: skip the remaining questions.
    Finish,
    /// `session.update`: the candidate's choices are applied, the rest is
    /// ignored (see `interviewer::CandidateChoices`).
    UpdateSession {
        session: Value,
    },
    /// Audio and playback events: `input_audio_buffer.append`, `.commit`,
    /// `.clear`, `conversation.item.truncate`, `output_audio_buffer.clear`.
    Audio {
        kind: &'static str,
    },
}

/// The error for an item id the conversation does not have.
pub fn item_not_found(item_id: &str) -> ProtocolError {
    let shown: String = item_id.chars().take(64).collect();
    ProtocolError::invalid(
        "item_not_found",
        format!("no item with id `{shown}` in this conversation"),
        Some("item_id"),
    )
}

/// A client event we refuse, with the Realtime error fields.
#[derive(Debug, Clone, PartialEq)]
pub struct ProtocolError {
    pub kind: &'static str,
    pub code: &'static str,
    pub message: String,
    pub param: Option<String>,
}

impl ProtocolError {
    pub fn invalid(
        code: &'static str,
        message: impl Into<String>,
        param: Option<&str>,
    ) -> ProtocolError {
        ProtocolError {
            kind: "invalid_request_error",
            code,
            message: message.into(),
            param: param.map(str::to_owned),
        }
    }

    pub fn server(code: &'static str, message: impl Into<String>) -> ProtocolError {
        ProtocolError {
            kind: "server_error",
            code,
            message: message.into(),
            param: None,
        }
    }
}

/// Parses one text frame. Returns the client's `event_id` (when it sent a
/// usable one) so that errors can point at the offending event.
pub fn parse(
    text: &str,
    max_text_bytes: usize,
) -> (Option<String>, Result<ClientEvent, ProtocolError>) {
    if let Some(parsed) = parse_append(text) {
        return parsed;
    }
    let value: Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            return (
                None,
                Err(ProtocolError::invalid(
                    "invalid_json",
                    format!("the frame is not valid JSON: {e}"),
                    None,
                )),
            );
        }
    };
    let Some(obj) = value.as_object() else {
        return (
            None,
            Err(ProtocolError::invalid(
                "invalid_event",
                "an event must be a JSON object",
                None,
            )),
        );
    };
    let event_id = match obj.get("event_id") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.len() <= MAX_EVENT_ID => Some(s.clone()),
        Some(Value::String(_)) => {
            let msg = format!("`event_id` is longer than {MAX_EVENT_ID} bytes");
            return (
                None,
                Err(ProtocolError::invalid(
                    "string_above_max_length",
                    msg,
                    Some("event_id"),
                )),
            );
        }
        Some(_) => {
            return (
                None,
                Err(ProtocolError::invalid(
                    "invalid_type",
                    "`event_id` must be a string",
                    Some("event_id"),
                )),
            );
        }
    };
    let result = parse_event(obj, max_text_bytes);
    (event_id, result)
}

/// The fast path for `input_audio_buffer.append`, most of a voice
/// session's traffic: the frame is checked (valid JSON, `audio` a string)
/// with a borrowed parse that builds no tree and copies no audio. `None`
/// for anything else, which takes the general path.
fn parse_append(text: &str) -> Option<(Option<String>, Result<ClientEvent, ProtocolError>)> {
    use std::borrow::Cow;
    #[derive(serde::Deserialize)]
    struct Append<'a> {
        #[serde(rename = "type", borrow)]
        ty: Cow<'a, str>,
        #[serde(borrow)]
        event_id: Option<Cow<'a, str>>,
        #[serde(borrow)]
        audio: Cow<'a, str>,
    }
    if !text.contains("input_audio_buffer.append") {
        return None;
    }
    let a: Append = serde_json::from_str(text).ok()?;
    if a.ty != "input_audio_buffer.append"
        || a.audio.is_empty()
        || a.event_id
            .as_ref()
            .is_some_and(|id| id.len() > MAX_EVENT_ID)
    {
        return None;
    }
    Some((
        a.event_id.map(Cow::into_owned),
        Ok(ClientEvent::Audio {
            kind: "input_audio_buffer.append",
        }),
    ))
}

fn parse_event(
    obj: &serde_json::Map<String, Value>,
    max_text_bytes: usize,
) -> Result<ClientEvent, ProtocolError> {
    let Some(ty) = obj.get("type").and_then(Value::as_str) else {
        return Err(ProtocolError::invalid(
            "missing_required_parameter",
            "missing required parameter: `type`",
            Some("type"),
        ));
    };
    match ty {
        "conversation.item.create" => parse_item_create(obj, max_text_bytes),
        "response.create" => Ok(ClientEvent::CreateResponse),
        "response.cancel" => Ok(ClientEvent::CancelResponse),
        "conversation.item.delete" => Ok(ClientEvent::DeleteItem {
            item_id: item_id(obj)?,
        }),
        "conversation.item.retrieve" => Ok(ClientEvent::RetrieveItem {
            item_id: item_id(obj)?,
        }),
        "interview.finish" => Ok(ClientEvent::Finish),
        "session.update" => match obj.get("session") {
            Some(session @ Value::Object(_)) => Ok(ClientEvent::UpdateSession {
                session: session.clone(),
            }),
            Some(_) => Err(ProtocolError::invalid(
                "invalid_type",
                "`session` must be an object",
                Some("session"),
            )),
            None => Err(ProtocolError::invalid(
                "missing_required_parameter",
                "missing required parameter: `session`",
                Some("session"),
            )),
        },
        "input_audio_buffer.append" => match obj.get("audio") {
            Some(Value::String(a)) if !a.is_empty() => Ok(ClientEvent::Audio {
                kind: "input_audio_buffer.append",
            }),
            Some(Value::String(_)) => Err(ProtocolError::invalid(
                "invalid_value",
                "`audio` is empty",
                Some("audio"),
            )),
            Some(_) => Err(ProtocolError::invalid(
                "invalid_type",
                "`audio` must be a base64 string",
                Some("audio"),
            )),
            None => Err(ProtocolError::invalid(
                "missing_required_parameter",
                "missing required parameter: `audio`",
                Some("audio"),
            )),
        },
        "input_audio_buffer.commit" => Ok(ClientEvent::Audio {
            kind: "input_audio_buffer.commit",
        }),
        "input_audio_buffer.clear" => Ok(ClientEvent::Audio {
            kind: "input_audio_buffer.clear",
        }),
        "conversation.item.truncate" => Ok(ClientEvent::Audio {
            kind: "conversation.item.truncate",
        }),
        "output_audio_buffer.clear" => Ok(ClientEvent::Audio {
            kind: "output_audio_buffer.clear",
        }),
        other => {
            let shown: String = other.chars().take(64).collect();
            Err(ProtocolError::invalid(
                "invalid_value",
                format!("unknown event type `{shown}`"),
                Some("type"),
            ))
        }
    }
}

fn item_id(obj: &serde_json::Map<String, Value>) -> Result<String, ProtocolError> {
    match obj.get("item_id").and_then(Value::as_str) {
        Some(id) if id.len() <= MAX_EVENT_ID => Ok(id.to_owned()),
        Some(_) => Err(ProtocolError::invalid(
            "string_above_max_length",
            "`item_id` is too long",
            Some("item_id"),
        )),
        None => Err(ProtocolError::invalid(
            "missing_required_parameter",
            "missing required parameter: `item_id`",
            Some("item_id"),
        )),
    }
}

fn parse_item_create(
    obj: &serde_json::Map<String, Value>,
    max_text_bytes: usize,
) -> Result<ClientEvent, ProtocolError> {
    let Some(item) = obj.get("item").and_then(Value::as_object) else {
        return Err(ProtocolError::invalid(
            "missing_required_parameter",
            "missing required parameter: `item`",
            Some("item"),
        ));
    };
    match item.get("type").and_then(Value::as_str) {
        Some("message") => {}
        Some(other) => {
            let msg = format!("item type `{other}` is not supported; send a user `message`");
            return Err(ProtocolError::invalid(
                "invalid_value",
                msg,
                Some("item.type"),
            ));
        }
        None => {
            let msg = "missing required parameter: `item.type`";
            return Err(ProtocolError::invalid(
                "missing_required_parameter",
                msg,
                Some("item.type"),
            ));
        }
    }
    if item.get("role").and_then(Value::as_str) != Some("user") {
        let msg = "only `user` messages can be added; the interviewer's turns are its own";
        return Err(ProtocolError::invalid(
            "invalid_value",
            msg,
            Some("item.role"),
        ));
    }
    let Some(content) = item.get("content").and_then(Value::as_array) else {
        if item.get("content").is_some() {
            let msg = "`item.content` must be an array of content parts";
            return Err(ProtocolError::invalid(
                "invalid_type",
                msg,
                Some("item.content"),
            ));
        }
        let msg = "missing required parameter: `item.content`";
        return Err(ProtocolError::invalid(
            "missing_required_parameter",
            msg,
            Some("item.content"),
        ));
    };
    let mut text = String::new();
    for (i, part) in content.iter().enumerate() {
        let param = format!("item.content[{i}]");
        match part.get("type").and_then(Value::as_str) {
            Some("input_text") => {}
            Some("input_audio") => {
                let msg = "audio is not supported by the scripted interviewer; send `input_text`";
                return Err(ProtocolError::invalid(
                    "unsupported_audio",
                    msg,
                    Some(&param),
                ));
            }
            _ => {
                let msg = "content parts must be `input_text`";
                return Err(ProtocolError::invalid(
                    "invalid_value",
                    msg,
                    Some(&format!("{param}.type")),
                ));
            }
        }
        let Some(t) = part.get("text").and_then(Value::as_str) else {
            let msg = "`text` must be a string";
            return Err(ProtocolError::invalid(
                "invalid_type",
                msg,
                Some(&format!("{param}.text")),
            ));
        };
        if !text.is_empty() {
            text.push('\n');
        }
        text.push_str(t);
        if text.len() > max_text_bytes {
            let msg = format!("the answer is longer than {max_text_bytes} bytes");
            return Err(ProtocolError::invalid(
                "string_above_max_length",
                msg,
                Some(&format!("{param}.text")),
            ));
        }
    }
    if word_count(&text) == 0 {
        let msg = "the message has no words";
        return Err(ProtocolError::invalid(
            "empty_message",
            msg,
            Some("item.content"),
        ));
    }
    Ok(ClientEvent::CreateItem { text })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deltas_concatenate_to_the_text() {
        for text in [
            "",
            "one",
            "a b c d e f g h i j",
            "  lead and trail  ",
            "Hello, and welcome.\n\nFirst: why?",
        ] {
            assert_eq!(deltas(text).concat(), text);
        }
        assert!(deltas("a b c d e f g h i j").len() > 1);
    }

    #[test]
    fn user_text_items_parse() {
        let frame = r#"{"type":"conversation.item.create","event_id":"e1","item":{"type":"message","role":"user","content":[{"type":"input_text","text":"hi"}]}}"#;
        let (id, ev) = parse(frame, 100);
        assert_eq!(id.as_deref(), Some("e1"));
        assert_eq!(ev.unwrap(), ClientEvent::CreateItem { text: "hi".into() });
    }

    #[test]
    fn bad_input_names_what_is_wrong() {
        assert_eq!(parse("{", 100).1.unwrap_err().code, "invalid_json");
        assert_eq!(parse("[]", 100).1.unwrap_err().code, "invalid_event");
        assert_eq!(
            parse(r#"{"type":"nope"}"#, 100).1.unwrap_err().code,
            "invalid_value"
        );
        assert_eq!(
            parse(r#"{"type":"session.update"}"#, 100)
                .1
                .unwrap_err()
                .code,
            "missing_required_parameter"
        );
        let long = format!(
            r#"{{"type":"conversation.item.create","item":{{"type":"message","role":"user","content":[{{"type":"input_text","text":"{}"}}]}}}}"#,
            "x".repeat(101)
        );
        assert_eq!(
            parse(&long, 100).1.unwrap_err().code,
            "string_above_max_length"
        );
        let system = r#"{"type":"conversation.item.create","item":{"type":"message","role":"system","content":[]}}"#;
        assert_eq!(
            parse(system, 100).1.unwrap_err().param.as_deref(),
            Some("item.role")
        );
    }
}
