//! Interview scripts: what the scripted interviewer says, and the rubric
//! hints the rubric assessor scores against.
//!
//! A script is a TOML file (see docs/example-script.toml). The built-in one
//! is compiled into the binary so that the daemon runs with no files at all.

use std::fmt;
use std::path::Path;

use serde::{Deserialize, Serialize};

const BUILTIN: &str = include_str!("builtin_script.toml");

/// Upper bounds that keep a bad script from producing absurd sessions.
const MAX_QUESTIONS: usize = 100;
const MAX_TEXT: usize = 4096;

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Script {
    pub title: String,
    pub greeting: String,
    pub closing: String,
    pub questions: Vec<Question>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Question {
    /// A stable name for the question, used in reports. Defaults to `q<N>`.
    #[serde(default)]
    pub id: String,
    pub text: String,
    /// Asked once when the first answer is shorter than `min_words`.
    #[serde(default)]
    pub follow_up: Option<String>,
    /// Topics or words a good answer mentions (case-insensitive).
    #[serde(default)]
    pub keywords: Vec<String>,
    /// Words below which an answer counts as thin.
    #[serde(default)]
    pub min_words: u32,
}

/// The words of a text, lowercased: runs of letters and digits. Both the
/// follow-up rule (`min_words`) and the rubric count words this way.
/// How many words `text` has, as [`words`] splits them, without allocating.
pub fn word_count(text: &str) -> usize {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .count()
}

pub fn words(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
}

#[derive(Debug)]
pub struct ScriptError(pub String);

impl fmt::Display for ScriptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ScriptError {}

impl Script {
    pub fn builtin() -> Script {
        Script::parse(BUILTIN).expect("the built-in script is valid")
    }

    /// Loads a script file, or the built-in script when `path` is `None`.
    pub fn load(path: Option<&Path>) -> Result<Script, ScriptError> {
        let Some(path) = path else {
            return Ok(Script::builtin());
        };
        let text = std::fs::read_to_string(path).map_err(|e| {
            ScriptError(format!(
                "cannot read interview script {}: {e}",
                path.display()
            ))
        })?;
        Script::parse(&text)
            .map_err(|e| ScriptError(format!("interview script {}: {e}", path.display())))
    }

    pub fn parse(text: &str) -> Result<Script, ScriptError> {
        let mut script: Script =
            toml::from_str(text).map_err(|e| ScriptError(e.to_string().trim_end().to_owned()))?;
        script.validate()?;
        for (i, q) in script.questions.iter_mut().enumerate() {
            if q.id.is_empty() {
                q.id = format!("q{}", i + 1);
            }
        }
        Ok(script)
    }

    fn validate(&self) -> Result<(), ScriptError> {
        let err = |m: String| Err(ScriptError(m));
        if self.questions.is_empty() {
            return err("`questions` must list at least one question".into());
        }
        if self.questions.len() > MAX_QUESTIONS {
            return err(format!(
                "`questions` lists more than {MAX_QUESTIONS} questions"
            ));
        }
        for (key, text) in [
            ("title", &self.title),
            ("greeting", &self.greeting),
            ("closing", &self.closing),
        ] {
            if text.trim().is_empty() {
                return err(format!("`{key}` must not be empty"));
            }
            if text.len() > MAX_TEXT {
                return err(format!("`{key}` is longer than {MAX_TEXT} bytes"));
            }
        }
        let mut seen = std::collections::HashSet::new();
        for (i, q) in self.questions.iter().enumerate() {
            let n = i + 1;
            if q.text.trim().is_empty() || q.text.len() > MAX_TEXT {
                return err(format!(
                    "question {n}: `text` must be 1 to {MAX_TEXT} bytes"
                ));
            }
            if !q.id.is_empty() && !seen.insert(q.id.as_str()) {
                return err(format!("question {n}: duplicate id `{}`", q.id));
            }
            let single_word = |k: &String| words(k).eq(std::iter::once(k.to_lowercase()));
            if let Some(k) = q.keywords.iter().find(|k| !single_word(k)) {
                return err(format!(
                    "question {n}: keyword `{k}` must be a single word of letters and digits"
                ));
            }
            if q.follow_up
                .as_deref()
                .is_some_and(|f| f.trim().is_empty() || f.len() > MAX_TEXT)
            {
                return err(format!(
                    "question {n}: `follow_up` must be 1 to {MAX_TEXT} bytes"
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_script_is_a_short_screen() {
        let s = Script::builtin();
        assert!((5..=6).contains(&s.questions.len()));
        assert!(s
            .questions
            .iter()
            .all(|q| !q.keywords.is_empty() && q.min_words > 0));
    }

    #[test]
    fn missing_ids_are_numbered_and_duplicates_refused() {
        let s = Script::parse("title='t'\ngreeting='g'\nclosing='c'\n[[questions]]\ntext='a'\n[[questions]]\ntext='b'\n").unwrap();
        assert_eq!(s.questions[1].id, "q2");
        let e = Script::parse("title='t'\ngreeting='g'\nclosing='c'\n[[questions]]\nid='x'\ntext='a'\n[[questions]]\nid='x'\ntext='b'\n");
        assert!(e.unwrap_err().0.contains("duplicate"));
    }

    #[test]
    fn keywords_must_be_single_words() {
        let e = Script::parse("title='t'\ngreeting='g'\nclosing='c'\n[[questions]]\ntext='a'\nkeywords=['hash map']\n");
        assert!(e.unwrap_err().0.contains("hash map"));
        let e = Script::parse(
            "title='t'\ngreeting='g'\nclosing='c'\n[[questions]]\ntext='a'\nkeywords=['C++']\n",
        );
        assert!(e.unwrap_err().0.contains("C++"));
        assert_eq!(
            words("I'm fine, thanks").collect::<Vec<_>>(),
            ["i", "m", "fine", "thanks"]
        );
    }

    #[test]
    fn unknown_keys_are_refused() {
        let e = Script::parse(
            "title='t'\ngreeting='g'\nclosing='c'\nbogus=1\n[[questions]]\ntext='a'\n",
        );
        assert!(e.unwrap_err().0.contains("bogus"));
    }
}
