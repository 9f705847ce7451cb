//! Interviewer engines: who asks the questions.
//!
//! The session talks to an [`Interviewer`] and never to a particular engine.
//! Today there is one engine, `scripted`, which walks an interview script.
//! The `openai` engine (relaying to the Realtime API over wss) becomes one
//! more variant here: the methods are `async` so that it can stream.

use std::sync::Arc;

use crate::config::InterviewerKind;
use crate::script::Script;

/// One interviewer turn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Turn {
    /// A question (or a follow-up, or a re-prompt); the interview goes on.
    Ask(String),
    /// The closing remark; the assessment starts after it.
    Close(String),
}

/// An engine failure; the session reports it to the client as an `error`.
#[derive(Debug)]
pub struct EngineError(pub String);

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

    /// The interviewer's instructions, shown in `session.created`.
    pub fn instructions(&self) -> String {
        match self {
            Interviewer::Scripted(s) => format!(
                "Scripted interview \"{}\": {} questions, asked in order.",
                s.script.title,
                s.script.questions.len()
            ),
        }
    }

    /// The greeting and the first question.
    pub async fn opening(&mut self) -> Result<Turn, EngineError> {
        match self {
            Interviewer::Scripted(s) => Ok(s.opening()),
        }
    }

    /// The next turn, given how many words the candidate has said in answer
    /// to the current question.
    pub async fn respond(&mut self, answer_words: usize) -> Result<Turn, EngineError> {
        match self {
            Interviewer::Scripted(s) => Ok(s.respond(answer_words)),
        }
    }

    /// The closing remark, whatever questions remain (`interview.finish`).
    pub async fn finish(&mut self) -> Result<Turn, EngineError> {
        match self {
            Interviewer::Scripted(s) => Ok(s.finish()),
        }
    }

    /// The id of the question being answered now; `None` once closed.
    pub fn current_question(&self) -> Option<&str> {
        match self {
            Interviewer::Scripted(s) => s.current_question(),
        }
    }
}

/// Walks a script: greeting with the first question, then one question per
/// turn, with the question's follow-up once when the answer is thin.
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
        Turn::Close(self.script.closing.clone())
    }

    fn current_question(&self) -> Option<&str> {
        if self.closed {
            return None;
        }
        self.script
            .questions
            .get(self.current)
            .map(|q| q.id.as_str())
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
