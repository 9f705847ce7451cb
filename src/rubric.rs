//! The built-in `rubric` assessor: deterministic scoring of the answers
//! against each question's rubric hints.
//!
//! For each question, with `w` the words in the candidate's answers to it:
//!
//! ```text
//! length   = min(1, w / min_words)          (1 when min_words is 0 and w > 0)
//! coverage = keywords mentioned / keywords listed   (= length when none listed)
//! score    = round(100 * (0.4 * length + 0.6 * coverage)),  0 when w = 0
//! overall  = round(mean of the question scores)
//! ```
//!
//! A keyword counts as mentioned when some word of the answer starts with
//! it, case-insensitively ("lock" matches "locking"). Bands: 75 and up
//! `strong`, 50 `promising`, 25 `weak`, below `insufficient`.

use serde_json::{json, Value};

use crate::script::{words, Script};

pub const FORMULA: &str =
    "score = round(100 * (0.4 * min(1, words / min_words) + 0.6 * keywords mentioned / keywords listed)); overall = mean";

/// One scored question.
struct Scored<'a> {
    id: &'a str,
    score: u32,
}

pub fn assess(
    session_id: &str,
    script: &Script,
    answers: &[(String, String)],
    generated_at: &str,
) -> Value {
    let mut questions = Vec::new();
    let mut scored = Vec::new();
    for q in &script.questions {
        let text: Vec<&str> = answers
            .iter()
            .filter(|(id, _)| *id == q.id)
            .map(|(_, t)| t.as_str())
            .collect();
        let text = text.join("\n");
        let words: Vec<String> = words(&text).collect();
        let n = words.len();
        let length = match (n, q.min_words) {
            (0, _) => 0.0,
            (_, 0) => 1.0,
            (n, min) => (n as f64 / min as f64).min(1.0),
        };
        let (matched, missed): (Vec<&String>, Vec<&String>) = q
            .keywords
            .iter()
            .partition(|k| words.iter().any(|w| w.starts_with(&k.to_lowercase())));
        let coverage = if q.keywords.is_empty() {
            length
        } else {
            matched.len() as f64 / q.keywords.len() as f64
        };
        let score = if n == 0 {
            0
        } else {
            (100.0 * (0.4 * length + 0.6 * coverage)).round() as u32
        };
        let mut reasons = Vec::new();
        if n == 0 {
            reasons.push("no answer".to_owned());
        } else {
            reasons.push(format!("{n} words (expected at least {})", q.min_words));
            if !matched.is_empty() {
                reasons.push(format!("mentioned: {}", join(&matched)));
            }
            if !missed.is_empty() {
                reasons.push(format!("not mentioned: {}", join(&missed)));
            }
        }
        questions.push(json!({
            "id": q.id,
            "question": q.text,
            "score": score,
            "words": n,
            "min_words": q.min_words,
            "keywords_mentioned": matched,
            "keywords_missed": missed,
            "reasons": reasons,
        }));
        scored.push(Scored { id: &q.id, score });
    }
    let answered = questions
        .iter()
        .filter(|q| q["words"].as_u64() != Some(0))
        .count();
    let overall =
        (scored.iter().map(|s| s.score as f64).sum::<f64>() / scored.len() as f64).round() as u32;
    let band = match overall {
        75.. => "strong",
        50.. => "promising",
        25.. => "weak",
        _ => "insufficient",
    };
    let best = scored
        .iter()
        .max_by_key(|s| s.score)
        .expect("a script has questions");
    let worst = scored
        .iter()
        .rev()
        .min_by_key(|s| s.score)
        .expect("a script has questions");
    let summary = format!(
        "Answered {answered} of {} questions. Overall {overall}/100 ({band}). Strongest: {} ({}); weakest: {} ({}).",
        scored.len(),
        best.id,
        best.score,
        worst.id,
        worst.score
    );
    json!({
        "session_id": session_id,
        "generated_at": generated_at,
        "assessor": "rubric",
        "script_title": script.title,
        "overall_score": overall,
        "band": band,
        "summary": summary,
        "questions": questions,
        "formula": FORMULA,
    })
}

fn join(words: &[&String]) -> String {
    words
        .iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn script() -> Script {
        Script::parse(
            "title='t'\ngreeting='g'\nclosing='c'\n\
             [[questions]]\nid='a'\ntext='A?'\nkeywords=['lock','thread']\nmin_words=4\n\
             [[questions]]\nid='b'\ntext='B?'\nmin_words=2\n",
        )
        .unwrap()
    }

    #[test]
    fn follows_the_documented_formula() {
        let answers = vec![("a".to_owned(), "Locking the shared state.".to_owned())];
        let r = assess("sess_x", &script(), &answers, "now");
        // a: 4 words of 4 -> length 1; 1 of 2 keywords -> 0.5; 100*(0.4+0.3) = 70.
        assert_eq!(r["questions"][0]["score"], 70);
        assert_eq!(r["questions"][0]["keywords_mentioned"], json!(["lock"]));
        // b: unanswered -> 0; overall = 35.
        assert_eq!(r["questions"][1]["score"], 0);
        assert_eq!(r["overall_score"], 35);
        assert_eq!(r["band"], "weak");
    }

    #[test]
    fn is_deterministic() {
        let answers = vec![("b".to_owned(), "two words".to_owned())];
        assert_eq!(
            assess("s", &script(), &answers, "t"),
            assess("s", &script(), &answers, "t")
        );
    }
}
