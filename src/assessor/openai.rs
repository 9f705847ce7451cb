//! The `openai` assessor: asks the Responses API for the assessment, in
//! the report format's own fields, through a strict JSON schema
//! (`text.format: json_schema`).
//!
//! The request runs async on the executor, owned by the session's
//! [`Running`](super::Running): dropping the session (shutdown) abandons it
//! at once. 429 and 5xx answers are retried with backoff within
//! [`Settings::budget`]; a malformed answer, any other error, or running out
//! of time falls back to the `rubric` assessor, and the report says so
//! (`assessor.fallback_reason`). Writing the report stays on a worker
//! thread, like every assessor's.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_rustls::rustls::ClientConfig;
use serde_json::{json, Value};
use smol::future::FutureExt;
use smol::Timer;

use crate::config::Config;
use crate::script::Script;
use crate::upstream::{self, Endpoint, Secret};

/// Largest answer read from the API.
const MAX_ANSWER_BYTES: usize = 2 * 1024 * 1024;

/// Time kept back from `assessment.timeout` for the fallback and the
/// write, so that a slow API still ends in a report, not a timeout.
const FALLBACK_MARGIN: Duration = Duration::from_secs(3);

/// Settings built from the configuration (startup, SIGHUP).
pub struct Settings {
    pub endpoint: Endpoint,
    pub tls: Arc<ClientConfig>,
    pub key: Secret,
    pub model: String,
    /// How long the request, retries included, may take.
    pub budget: Duration,
}

impl Settings {
    pub fn from_config(config: &Config) -> Result<Settings, String> {
        let a = &config.assessment;
        Ok(Settings {
            endpoint: Endpoint::parse(&a.openai_url)?,
            tls: upstream::tls_config(config.openai.ca_file.as_deref())?,
            key: upstream::api_key(config.openai.api_key_file.as_deref())?,
            model: a.openai_model.clone(),
            budget: a
                .timeout
                .0
                .saturating_sub(FALLBACK_MARGIN)
                .max(Duration::from_secs(1)),
        })
    }
}

/// What the request came to.
pub enum Outcome {
    /// The model's assessment fields, not yet checked.
    Assessment(Value),
    /// Why the rubric stands in.
    Failed(String),
}

/// Asks for the assessment. Never fails: a failure is an outcome.
pub async fn request(settings: &Settings, script: &Script, transcript: &Value) -> Outcome {
    let body = request_body(&settings.model, script, transcript).to_string();
    let deadline = Instant::now() + settings.budget;
    let mut backoff = Duration::from_millis(500);
    let mut last: String;
    loop {
        let attempt = upstream::post_json(
            &settings.endpoint,
            &settings.tls,
            &settings.key,
            body.as_bytes(),
            MAX_ANSWER_BYTES,
        )
        .or(async {
            Timer::at(deadline).await;
            Err(format!("no answer within {} s", settings.budget.as_secs()))
        })
        .await;
        let wait = match attempt {
            Ok(r) if r.status == 200 => return parse_answer(&r.body),
            Ok(r) if r.status == 429 || r.status >= 500 => {
                last = format!("the API answered HTTP {}", r.status);
                r.retry_after.map(Duration::from_secs).unwrap_or(backoff)
            }
            Ok(r) => {
                let code = serde_json::from_slice::<Value>(&r.body)
                    .ok()
                    .and_then(|v| v["error"]["code"].as_str().map(str::to_owned))
                    .unwrap_or_default();
                log::error!(
                    "openai assessor: the API refused the request: HTTP {} {code}",
                    r.status
                );
                return Outcome::Failed(format!("the API answered HTTP {} {code}", r.status));
            }
            Err(e) if Instant::now() >= deadline => return Outcome::Failed(e),
            Err(e) => {
                last = e;
                backoff
            }
        };
        if Instant::now() + wait >= deadline {
            return Outcome::Failed(format!("{last}; out of time for retries"));
        }
        log::debug!("openai assessor: {last}; retrying in {wait:?}");
        Timer::after(wait).await;
        backoff = (backoff * 2).min(Duration::from_secs(8));
    }
}

/// The assessment in a Responses API answer: the JSON text of its
/// `output_text` part.
fn parse_answer(body: &[u8]) -> Outcome {
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        return Outcome::Failed("the API's answer is not JSON".into());
    };
    let text = v["output"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|o| o["type"] == "message")
        .flat_map(|o| o["content"].as_array().into_iter().flatten())
        .find(|c| c["type"] == "output_text")
        .and_then(|c| c["text"].as_str());
    let Some(text) = text else {
        return Outcome::Failed("the API's answer has no output_text".into());
    };
    match serde_json::from_str::<Value>(text) {
        Ok(a) if a.is_object() => Outcome::Assessment(a),
        _ => Outcome::Failed("the model's assessment is not a JSON object".into()),
    }
}

/// Keeps only the evidence quotes that are verbatim in the answers to
/// their question: a model paraphrases, and a quote the candidate did not
/// say must not reach a report.
pub fn keep_verbatim_evidence(assessment: &mut Value, answers: &[(String, String)]) {
    let Some(questions) = assessment["questions"].as_array_mut() else {
        return;
    };
    for q in questions {
        let id = q["question_id"].as_str().unwrap_or("").to_owned();
        if let Some(evidence) = q["evidence"].as_array_mut() {
            evidence.retain(|quote| {
                quote.as_str().is_some_and(|quote| {
                    !quote.trim().is_empty()
                        && answers
                            .iter()
                            .any(|(qid, text)| *qid == id && text.contains(quote))
                })
            });
        }
    }
}

/// The request: the rubric and the transcript as input, the assessment's
/// shape as a strict JSON schema.
pub fn request_body(model: &str, script: &Script, transcript: &Value) -> Value {
    let rubric: Vec<Value> = script
        .questions
        .iter()
        .map(|q| {
            json!({"question_id": q.id, "question": q.text, "keywords": q.keywords,
                   "min_words": q.min_words})
        })
        .collect();
    let instructions = "You assess a job interview from its transcript. For each question of the rubric, \
        score the candidate's answers from 0 to 100, give short reasons, and quote the candidate's own words \
        verbatim as evidence (empty when there is none). The keywords are topics a strong answer touches on; \
        length alone earns nothing. An unanswered question scores 0. Then give an overall score (0-100), \
        a recommendation (strong_yes, yes, lean_no or no), and a summary of two to four sentences \
        written to the candidate, who may be shown it alone: no scores, no recommendation, no ranking. Copy each question's question_id and question text exactly.";
    json!({
        "model": model,
        "instructions": instructions,
        "input": [{
            "role": "user",
            "content": [{"type": "input_text", "text": json!({
                "interview": script.title,
                "rubric": rubric,
                "transcript": transcript["items"],
            }).to_string()}],
        }],
        "text": {"format": {
            "type": "json_schema",
            "name": "interview_assessment",
            "strict": true,
            "schema": assessment_schema(),
        }},
        "store": false,
    })
}

/// The fields an assessor gives, as a schema the Responses API's strict
/// mode takes (every property required, no others; bounds are checked by
/// the report's own validator afterwards).
fn assessment_schema() -> Value {
    json!({
        "type": "object",
        "additionalProperties": false,
        "required": ["summary", "questions", "overall_score", "recommendation"],
        "properties": {
            "summary": {"type": "string"},
            "overall_score": {"type": "integer"},
            "recommendation": {"type": "string", "enum": ["strong_yes", "yes", "lean_no", "no"]},
            "questions": {"type": "array", "items": {
                "type": "object",
                "additionalProperties": false,
                "required": ["question_id", "question", "score", "reasons", "evidence"],
                "properties": {
                    "question_id": {"type": "string"},
                    "question": {"type": "string"},
                    "score": {"type": "integer"},
                    "reasons": {"type": "array", "items": {"type": "string"}},
                    "evidence": {"type": "array", "items": {"type": "string"}},
                },
            }},
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_answer_text_is_found_and_parsed() {
        let body = json!({"output": [
            {"type": "reasoning", "summary": []},
            {"type": "message", "content": [{"type": "output_text", "text": "{\"summary\":\"ok\"}"}]},
        ]});
        match parse_answer(body.to_string().as_bytes()) {
            Outcome::Assessment(a) => assert_eq!(a["summary"], "ok"),
            Outcome::Failed(e) => panic!("{e}"),
        }
        assert!(matches!(parse_answer(b"nope"), Outcome::Failed(_)));
        let no_json = json!({"output": [{"type": "message", "content": [{"type": "output_text", "text": "hi"}]}]});
        assert!(matches!(
            parse_answer(no_json.to_string().as_bytes()),
            Outcome::Failed(_)
        ));
    }

    #[test]
    fn paraphrased_evidence_is_dropped() {
        let mut a = json!({"questions": [{"question_id": "q1", "evidence": ["I wrote tests", "I am great", ""]}]});
        keep_verbatim_evidence(
            &mut a,
            &[("q1".into(), "First I wrote tests for it.".into())],
        );
        assert_eq!(a["questions"][0]["evidence"], json!(["I wrote tests"]));
    }

    #[test]
    fn the_request_carries_the_rubric_and_a_strict_schema() {
        let script = Script::builtin();
        let body = request_body("gpt-5-mini", &script, &json!({"items": []}));
        assert_eq!(body["text"]["format"]["strict"], true);
        let input = body["input"][0]["content"][0]["text"].as_str().unwrap();
        assert!(input.contains(&script.questions[0].text));
    }
}
