//! The scripted engine: walks an interview script, a greeting with the
//! first question, then one question per turn, with a question's follow-up
//! once when the answer is thin. Text only; no network.

use std::sync::Arc;

use super::{session_object, CandidateChoices, Ctx, Output};
use crate::protocol::{self, ClientEvent, Item, ProtocolError, Role, SCRIPTED_MODEL};
use crate::script::Script;

/// How the turn after a resume starts: `restore` knows it is not a step of
/// the walk.
pub const RESUME_PREFIX: &str = "Welcome back. Where we stopped: ";

fn turn_text(turn: &Turn) -> &str {
    match turn {
        Turn::Ask(t) | Turn::Close(t) => t,
    }
}

/// The closing remark when the candidate ends the interview before the
/// last question.
pub const EARLY_CLOSING: &str = "We'll stop here. Thank you for your answers; I'm putting together the assessment now, it will only take a moment.";

/// One interviewer turn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Turn {
    /// A question (or a follow-up, or a re-prompt); the interview goes on.
    Ask(String),
    /// The closing remark; the assessment starts after it.
    Close(String),
}

/// Walks a script: greeting with the first question, then one question per
/// turn, with the question's follow-up once when the answer is thin.
#[derive(Clone)]
pub struct Scripted {
    script: Arc<Script>,
    current: usize,
    follow_up_asked: bool,
    closed: bool,
}

impl Scripted {
    pub fn new(script: Arc<Script>) -> Scripted {
        Scripted {
            script,
            current: 0,
            follow_up_asked: false,
            closed: false,
        }
    }

    fn opening(&mut self) -> Turn {
        Turn::Ask(format!(
            "{}\n\n{}",
            self.script.greeting, self.script.questions[0].text
        ))
    }

    fn respond(&mut self, answer_words: usize) -> Turn {
        if self.closed {
            return Turn::Close(self.script.closing.clone());
        }
        let question = &self.script.questions[self.current];
        if answer_words == 0 {
            return Turn::Ask(format!("Whenever you are ready: {}", question.text));
        }
        if answer_words < question.min_words as usize && !self.follow_up_asked {
            if let Some(follow_up) = &question.follow_up {
                self.follow_up_asked = true;
                return Turn::Ask(follow_up.clone());
            }
        }
        self.current += 1;
        self.follow_up_asked = false;
        match self.script.questions.get(self.current) {
            Some(next) => Turn::Ask(next.text.clone()),
            None => self.finish(),
        }
    }

    fn finish(&mut self) -> Turn {
        self.closed = true;
        if self.current < self.script.questions.len() {
            // Ended early (interview.finish): the script's closing remark
            // may say that was the last question; it was not.
            return Turn::Close(EARLY_CLOSING.to_owned());
        }
        Turn::Close(self.script.closing.clone())
    }

    pub fn current_question(&self) -> Option<&str> {
        if self.closed {
            return None;
        }
        self.script
            .questions
            .get(self.current)
            .map(|q| q.id.as_str())
    }
}

impl Scripted {
    pub fn session_object(&self, session_id: &str, expires_at: u64) -> serde_json::Value {
        let summary = format!(
            "Scripted interview \"{}\": {} questions, asked in order.",
            self.script.title,
            self.script.questions.len()
        );
        session_object(session_id, SCRIPTED_MODEL, &["text"], &summary, expires_at)
    }

    pub(super) fn open(&mut self, ctx: &Ctx<'_>) -> Vec<Output> {
        let turn = self.opening();
        self.turn(turn, ctx)
    }

    pub(super) fn item_added(&mut self, item: &Item, previous: Option<&str>) -> Vec<Output> {
        protocol::user_item_added(item, previous)
            .into_iter()
            .map(Output::Send)
            .collect()
    }

    pub(super) fn client_event(&mut self, event: ClientEvent, ctx: &Ctx<'_>) -> Vec<Output> {
        match event {
            ClientEvent::CreateResponse => {
                let words = self.current_question().map_or(0, |q| ctx.items.words_for(q));
                let turn = self.respond(words);
                self.turn(turn, ctx)
            }
            ClientEvent::Finish => {
                let turn = self.finish();
                self.turn(turn, ctx)
            }
            ClientEvent::CancelResponse => vec![Output::Report(ProtocolError::invalid(
                "response_cancel_not_active",
                "Cancellation failed: no active response found",
                None,
            ))],
            ClientEvent::RetrieveItem { item_id } => match ctx.items.get(&item_id) {
                Some(item) => vec![Output::Send(protocol::item_retrieved(item))],
                None => vec![Output::Report(protocol::item_not_found(&item_id))],
            },
            ClientEvent::UpdateSession { session } => {
                // Text is all this engine speaks: the candidate's choices of
                // modality and audio format change nothing, and the
                // operator's fields are not the candidate's to change.
                let _ = CandidateChoices::from_update(&session);
                vec![Output::Send(super::session_updated(self.session_object(ctx.session_id, ctx.expires_at)))]
            }
            ClientEvent::Audio { kind } => vec![Output::Refuse(ProtocolError::invalid(
                "unsupported_audio",
                format!("`{kind}`: audio is not supported by the scripted interviewer; send text with conversation.item.create"),
                None,
            ))],
            // Handled by the session before it reaches an engine.
            ClientEvent::CreateItem { .. } | ClientEvent::DeleteItem { .. } => Vec::new(),
        }
    }

    /// The engine as it stood after the conversation in `items` (a session
    /// restored after a restart): the walk is replayed turn by turn and
    /// must produce the same interviewer lines; `None` if it does not (the
    /// script has changed).
    pub fn restore(script: Arc<Script>, items: &crate::session::Items) -> Option<Scripted> {
        let mut engine = Scripted::new(script);
        let mut words: std::collections::HashMap<&str, usize> = Default::default();
        let mut opened = false;
        for (item, question) in items.iter_with_questions() {
            match item.role {
                Role::User => {
                    if let Some(q) = question {
                        *words.entry(q).or_default() += crate::script::word_count(&item.text);
                    }
                }
                Role::Assistant if item.text.starts_with(RESUME_PREFIX) => {}
                Role::Assistant => {
                    let said = if !opened {
                        opened = true;
                        engine.opening()
                    } else {
                        let current = engine.current_question().unwrap_or("");
                        let heard = words.get(current).copied().unwrap_or(0);
                        let mut next = engine.clone();
                        match next.respond(heard) {
                            turn if turn_text(&turn) == item.text => {
                                engine = next;
                                turn
                            }
                            _ => engine.finish(),
                        }
                    };
                    if turn_text(&said) != item.text {
                        return None;
                    }
                }
            }
        }
        opened.then_some(engine)
    }

    /// After a resume: the question the candidate was answering, asked
    /// again.
    pub(super) fn resume(&mut self, ctx: &Ctx<'_>) -> Vec<Output> {
        if self.closed {
            return Vec::new();
        }
        let question = &self.script.questions[self.current];
        let asked = match (&question.follow_up, self.follow_up_asked) {
            (Some(follow_up), true) => follow_up.clone(),
            _ => question.text.clone(),
        };
        self.turn(Turn::Ask(format!("{RESUME_PREFIX}{asked}")), ctx)
    }

    /// A turn as outputs: its line of the transcript, then the text
    /// response that carries it, marked as the closing one when it is.
    fn turn(&mut self, turn: Turn, ctx: &Ctx<'_>) -> Vec<Output> {
        let (text, closing) = match turn {
            Turn::Ask(text) => (text, false),
            Turn::Close(text) => (text, true),
        };
        let item = Item {
            id: ctx.ids.next("item"),
            role: Role::Assistant,
            text,
        };
        let response_id = ctx.ids.next("resp");
        let phase = if closing { "closing" } else { "interview" };
        let events = protocol::text_response(
            &response_id,
            ctx.conversation_id,
            &item,
            ctx.items.last_id(),
            phase,
        );
        let mut out = vec![Output::Transcript {
            item,
            answers: None,
        }];
        out.extend(events.into_iter().map(Output::Send));
        if closing {
            out.push(Output::Closed);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn script() -> Arc<Script> {
        Arc::new(
            Script::parse(
                "title='t'\ngreeting='Hi.'\nclosing='Bye.'\n\
                 [[questions]]\ntext='Q1'\nfollow_up='More?'\nmin_words=3\n\
                 [[questions]]\ntext='Q2'\n",
            )
            .unwrap(),
        )
    }

    #[test]
    fn walks_the_script_with_one_follow_up() {
        let mut s = Scripted::new(script());
        assert_eq!(s.opening(), Turn::Ask("Hi.\n\nQ1".into()));
        assert_eq!(s.respond(0), Turn::Ask("Whenever you are ready: Q1".into()));
        assert_eq!(s.respond(1), Turn::Ask("More?".into()));
        assert_eq!(s.respond(2), Turn::Ask("Q2".into()));
        assert_eq!(s.current_question(), Some("q2"));
        assert_eq!(s.respond(1), Turn::Close("Bye.".into()));
        assert_eq!(s.current_question(), None);
    }
}
