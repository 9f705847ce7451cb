//! The report format (docs/report.schema.json, docs/report.md): what the
//! `rubric` assessor writes, what a `command` assessor must print, and the
//! documented examples, all through the real binary.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;
use interviewd::script::Script;
use serde_json::{json, Value};

/// A two-question script: `stems` lists keywords in one form that answers
/// use in another; `topic` has keywords and a length to reach.
const SCRIPT: &str = "title = \"Report tests\"\n\
    greeting = \"Welcome.\"\n\
    closing = \"That was the last question.\"\n\
    [[questions]]\nid = \"stems\"\ntext = \"How do you keep code healthy?\"\n\
    keywords = [\"tests\", \"readability\", \"synchronization\"]\nmin_words = 5\n\
    [[questions]]\nid = \"topic\"\ntext = \"How would you prevent a race condition?\"\n\
    keywords = [\"lock\", \"mutex\", \"atomic\", \"thread\"]\nmin_words = 20\n";

fn write_script(dir: &Path) -> PathBuf {
    let path = dir.join("script.toml");
    std::fs::write(&path, SCRIPT).expect("write script");
    path
}

fn script_config(script: &Path) -> String {
    format!(
        "[interview]\nscript = {}\n",
        toml_string(&script.to_string_lossy())
    )
}

/// Answers the questions in turn (one answer each) and waits for the
/// outcome of the assessment: `interview.assessment.completed` or
/// `interview.assessment.failed`.
fn interview(daemon: &Daemon, answers: &[&str]) -> (Client, Value) {
    let mut c = Client::connect(&daemon.url());
    for a in answers {
        c.answer(a);
        c.next_turn();
    }
    if answers.len() < Script::parse(SCRIPT).unwrap().questions.len() {
        c.send(json!({"type": "interview.finish"}));
    }
    c.wait_for("interview.assessment.started");
    let outcome = loop {
        let e = c.next_event().expect("the outcome of the assessment");
        if e["type"] == "interview.assessment.completed"
            || e["type"] == "interview.assessment.failed"
        {
            break e;
        }
    };
    assert_eq!(c.read_to_end(), Ended::Closed(1000));
    (c, outcome)
}

/// A daemon with the test script and a `command` assessor that prints
/// `assessment` (after reading its stdin).
fn command_daemon(dir: &Path, assessment: &Value) -> Daemon {
    let printed = dir.join("assessment.json");
    std::fs::write(&printed, assessment.to_string()).unwrap();
    let sh = format!("cat >/dev/null; cat '{}'", printed.display());
    Daemon::start(&format!(
        "{}{}",
        command_assessor_config(&sh, ""),
        script_config(&write_script(dir))
    ))
}

fn rubric_daemon(dir: &Path) -> Daemon {
    Daemon::start(&script_config(&write_script(dir)))
}

const ANSWERS: [&str; 2] = [
    "I write tests first.",
    "I would put a mutex around the shared counter so that only one thread at a time \
     can change it, or use an atomic integer instead of a lock when that is enough.",
];

/// Runs a command-assessed interview whose assessor prints `assessment`;
/// checks that it failed end to end (event, journal, log, no report file)
/// and returns the reason.
fn failed_reason(assessment: Value) -> String {
    let dir = tempfile::tempdir().unwrap();
    let daemon = command_daemon(dir.path(), &assessment);
    let (c, outcome) = interview(&daemon, &ANSWERS);
    assert_eq!(
        outcome["type"], "interview.assessment.failed",
        "{outcome:#}"
    );
    let reason = outcome["reason"].as_str().unwrap().to_owned();
    assert!(
        !daemon.report_path(&c.session_id).exists(),
        "an invalid report is not written"
    );
    daemon.wait_for_log(&format!("assessment failed: {reason}"));
    let journal = ended_journal(&daemon, &c.session_id);
    let assessment = records(&journal, "assessment");
    assert_eq!(assessment[0]["outcome"], "failed");
    assert_eq!(assessment[0]["reason"], reason.as_str());
    reason
}

/// The session's transcript once its end line is on disk (records other
/// than answers are synced with a later batch).
fn ended_journal(daemon: &Daemon, id: &str) -> interviewd::journal::Transcript {
    let deadline = Instant::now() + WAIT;
    loop {
        let journal = daemon.journal(id);
        if journal.end_reason().is_some() {
            return journal;
        }
        assert!(
            Instant::now() < deadline,
            "the transcript of {id} never got its end line"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn valid() -> Value {
    valid_assessment(&Script::parse(SCRIPT).unwrap(), "Test summary.")
}

/// A `command` report that breaks the schema fails the assessment, and the
/// reason names the field, its value and the rule.
#[test]
fn an_invalid_command_report_fails_naming_the_field() {
    let mut assessment = valid();
    assessment["questions"][0]["score"] = json!(140);
    assert_eq!(
        failed_reason(assessment),
        "the assessor's report is invalid: questions[0].score: 140 is greater than the maximum of 100"
    );
}

/// A report in a shape of its own (as a `command` could print before there
/// was a format) names what is missing and what is unknown.
#[test]
fn a_report_of_another_shape_is_refused() {
    let reason = failed_reason(json!({"score": 7, "note": "from the command"}));
    assert!(
        reason.starts_with("the assessor's report is invalid: "),
        "{reason}"
    );
    for needle in [
        "missing required property \"summary\"",
        "missing required property \"questions\"",
        "unknown property \"note\"",
    ] {
        assert!(reason.contains(needle), "{needle}: {reason}");
    }
}

/// Evidence must be quoted from the candidate's answers to that question.
#[test]
fn evidence_that_the_candidate_did_not_say_is_refused() {
    let mut assessment = valid();
    assessment["questions"][1]["evidence"] = json!(["I would put a mutex", "I love locks"]);
    assert_eq!(
        failed_reason(assessment),
        "the assessor's report is invalid: questions[1].evidence[1]: \"I love locks\" is not a verbatim quote of the candidate's answers to \"topic\""
    );
}

/// A valid `command` report is completed with the daemon's fields; quotes
/// from the answers pass.
#[test]
fn a_valid_command_report_is_completed_by_the_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let mut assessment = valid();
    assessment["questions"][1]["evidence"] =
        json!(["I would put a mutex around the shared counter"]);
    let daemon = command_daemon(dir.path(), &assessment);
    let (c, outcome) = interview(&daemon, &ANSWERS);
    assert_eq!(
        outcome["type"], "interview.assessment.completed",
        "{outcome:#}"
    );
    assert_eq!(outcome["session_id"], c.session_id.as_str());
    let report = &full_report(&daemon, &outcome);
    assert_eq!(assessment_part(report), assessment);
    assert_eq!(report["report_version"], 1);
    assert_eq!(report["session_id"], c.session_id.as_str());
    assert_eq!(
        report["assessor"],
        json!({"kind": "command", "model": null})
    );
    assert_eq!(report["script_title"], "Report tests");
    assert_eq!(report["interview_complete"], true);
    assert_eq!(report["candidate"], Value::Null);
}

/// The rubric matches keywords on stems: "tested" mentions "tests",
/// "readable" "readability", "synchronized" "synchronization"; the
/// sentences that mention them are the evidence.
#[test]
fn the_rubric_matches_keywords_on_word_stems() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = rubric_daemon(dir.path());
    let (_, outcome) = interview(
        &daemon,
        &["Everything is tested and readable. Access is synchronized."],
    );
    let report = &full_report(&daemon, &outcome);
    let q = &report["questions"][0];
    assert_eq!(q["question_id"], "stems");
    let reasons = q["reasons"].to_string();
    assert!(
        reasons.contains("mentioned 3 of 3 keywords: tests, readability, synchronization"),
        "{q:#}"
    );
    assert_eq!(
        q["evidence"],
        json!([
            "Everything is tested and readable.",
            "Access is synchronized."
        ])
    );
    // 8 words of 5, every keyword: 100.
    assert_eq!(q["score"], 100);
    // interview.finish skipped the second question.
    assert_eq!(report["interview_complete"], false);
    assert_eq!(report["questions"][1]["score"], 0);
    assert_eq!(report["assessor"], json!({"kind": "rubric", "model": null}));
}

/// A long answer that is off the topic scores low: its length alone earns
/// nothing, however far past min_words it goes.
#[test]
fn an_off_topic_long_answer_scores_low() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = rubric_daemon(dir.path());
    let off_topic = "Last summer my family and I drove to the coast, where we spent two \
                     weeks walking along the cliffs, swimming in the cold sea, eating \
                     far too much ice cream and reading novels on the beach every \
                     afternoon until the sun went down behind the old harbour wall.";
    let (_, outcome) = interview(&daemon, &["Tests and readability.", off_topic]);
    let report = &full_report(&daemon, &outcome);
    let q = &report["questions"][1];
    assert_eq!(q["question_id"], "topic");
    assert_eq!(q["score"], 0, "{q:#}");
    assert_eq!(q["evidence"], json!([]));
    assert!(
        q["reasons"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r == "no keyword mentioned: length does not count"),
        "{q:#}"
    );
    assert_eq!(report["interview_complete"], true);

    // The same length on the topic scores high.
    let (_, outcome) = interview(&daemon, &["Tests and readability.", ANSWERS[1]]);
    let on_topic = &full_report(&daemon, &outcome)["questions"][1];
    assert!(on_topic["score"].as_u64().unwrap() >= 90, "{on_topic:#}");
}

/// The JSON blocks of the documentation that show reports.
fn documented_reports(doc: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(doc))
        .unwrap_or_else(|e| panic!("{doc}: {e}"));
    let mut found = Vec::new();
    let mut block: Option<String> = None;
    for line in text.lines() {
        match (&mut block, line.trim_start()) {
            (None, "```json") => block = Some(String::new()),
            (Some(b), "```") => {
                let v: Value = serde_json::from_str(b)
                    .unwrap_or_else(|e| panic!("{doc}: a ```json block is not JSON: {e}"));
                if v.get("report_version").is_some() {
                    found.push(v);
                }
                block = None;
            }
            (Some(b), _) => {
                b.push_str(line);
                b.push('\n');
            }
            _ => {}
        }
    }
    found
}

/// The schema file is draft 2020-12 JSON, and the reports the
/// documentation shows are valid against it.
#[test]
fn the_documented_reports_are_valid() {
    let schema: Value = serde_json::from_str(interviewd::assessor::report::SCHEMA).unwrap();
    assert_eq!(
        schema["$schema"],
        "https://json-schema.org/draft/2020-12/schema"
    );
    let on_disk = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/report.schema.json"),
    )
    .unwrap();
    assert_eq!(on_disk, interviewd::assessor::report::SCHEMA);
    let examples = documented_reports("docs/report.md");
    assert!(!examples.is_empty(), "docs/report.md shows no report");
    for report in &examples {
        assert_valid_report(report);
    }
}
