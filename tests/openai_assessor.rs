//! The `openai` assessor against a mock Responses API
//! (tests/peer/mock_responses.py), through the real binary.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

const KEY: &str = "sk-planted-ASSESSOR-0123456789";

/// The mock and a daemon whose assessor is `openai` at the mock; the
/// scenario lines answer the requests in order.
fn setup(scenario: &[&str], extra: &str) -> (Peer, tempfile::TempDir, Daemon) {
    let ctl = tempfile::tempdir().expect("temp dir");
    if !scenario.is_empty() {
        std::fs::write(ctl.path().join("scenario"), scenario.join("\n") + "\n").unwrap();
    }
    let mock = Peer::start(
        "mock_responses.py",
        &[
            "--control-dir",
            ctl.path().to_str().unwrap(),
            "--expect-key",
            KEY,
        ],
    );
    let config = format!(
        "[assessment]\nkind = \"openai\"\nopenai_url = \"http://{}/v1/responses\"\nkeepalive_interval = \"200ms\"\n{extra}",
        mock.addr
    );
    let daemon = Daemon::start_with(&config, |cmd| {
        cmd.env("OPENAI_API_KEY", KEY);
    });
    (mock, ctl, daemon)
}

/// Runs a whole scripted interview and returns the report (on disk, and
/// delivered as `assessment.share_with_candidate` says).
fn interview(daemon: &Daemon) -> (Client, Value) {
    let mut c = Client::connect(&daemon.url());
    c.answer_all("I wrote tests and read the logs and metrics, then traced the bug to a race in shared state with a lock");
    let done = c.wait_for("interview.assessment.completed");
    let report = full_report(daemon, &done);
    (c, report)
}

fn request(ctl: &tempfile::TempDir, n: usize) -> Value {
    let text = std::fs::read_to_string(ctl.path().join(format!("request-{n}.json")))
        .unwrap_or_else(|e| panic!("request {n} was not made: {e}"));
    serde_json::from_str(&text).unwrap()
}

/// A good answer becomes the report: assessor `openai` with its model, the
/// request carries the rubric and a strict schema and the key only in its
/// header, and a quote the candidate never said is dropped.
#[test]
fn the_model_s_assessment_becomes_the_report() {
    let (_mock, ctl, daemon) = setup(&["ok"], "");
    let (_c, report) = interview(&daemon);
    assert_eq!(report["assessor"]["kind"], "openai", "{report:#}");
    assert_eq!(report["assessor"]["model"], "gpt-5-mini");
    assert_eq!(report["overall_score"], 70);
    let evidence = &report["questions"][0]["evidence"];
    assert_eq!(evidence.as_array().unwrap().len(), 1, "{evidence}");
    assert_eq!(evidence[0], "I wrote tests and");
    let sent = request(&ctl, 1);
    assert_eq!(sent["key_ok"], true);
    assert_eq!(sent["body"]["text"]["format"]["type"], "json_schema");
    assert_eq!(sent["body"]["text"]["format"]["strict"], true);
    let input = sent["body"]["input"][0]["content"][0]["text"]
        .as_str()
        .unwrap();
    let script = interviewd::script::Script::builtin();
    assert!(input.contains(&script.questions[0].text));
    assert!(!sent.to_string().contains(KEY));
    let on_disk = read_valid_report(&daemon.report_path(report["session_id"].as_str().unwrap()));
    assert_eq!(on_disk, report);
}

/// A malformed answer, or one that breaks the report format, falls back to
/// the rubric, and the report says which assessor produced it and why.
#[test]
fn unusable_answers_fall_back_to_the_rubric() {
    for (scenario, why) in [
        ("malformed", "not a JSON object"),
        ("bad_shape", "greater than the maximum"),
    ] {
        let (_mock, _ctl, daemon) = setup(&[scenario], "");
        let (_c, report) = interview(&daemon);
        assert_eq!(
            report["assessor"]["kind"], "rubric",
            "{scenario}: {report:#}"
        );
        let reason = report["assessor"]["fallback_reason"].as_str().unwrap_or("");
        assert!(
            reason.contains(why),
            "{scenario}: fallback reason {reason:?}"
        );
    }
}

/// 429 and 5xx are retried (with the server's Retry-After) and the second
/// answer is used.
#[test]
fn rate_limits_and_server_errors_are_retried() {
    let (_mock, ctl, daemon) = setup(&["429", "500", "ok"], "");
    let (_c, report) = interview(&daemon);
    assert_eq!(report["assessor"]["kind"], "openai", "{report:#}");
    for n in 1..=3 {
        request(&ctl, n);
    }
}

/// A refused key (401) is not retried: the rubric stands in at once, and
/// the log names the status, never the key.
#[test]
fn a_refused_key_falls_back_at_once_and_is_never_logged() {
    let (_mock, ctl, daemon) = setup(&["401"], "");
    let (_c, report) = interview(&daemon);
    assert_eq!(report["assessor"]["kind"], "rubric");
    assert!(report["assessor"]["fallback_reason"]
        .as_str()
        .unwrap()
        .contains("401"));
    assert!(!ctl.path().join("request-2.json").exists(), "retried a 401");
    daemon.wait_for_log("HTTP 401");
    assert!(!daemon.log().contains(KEY));
    assert!(!report.to_string().contains(KEY));
}

/// An API that never answers does not hold up shutdown: SIGTERM during the
/// request exits 0 within the deadline, and the client gets 1012.
#[test]
fn sigterm_abandons_a_request_that_never_answers() {
    let (_mock, ctl, mut daemon) = setup(&["hang"], "timeout = \"60s\"\n");
    let mut c = Client::connect(&daemon.url());
    c.answer("an answer");
    c.send(serde_json::json!({"type": "interview.finish"}));
    c.wait_for("interview.assessment.started");
    let deadline = Instant::now() + WAIT;
    while !ctl.path().join("request-1.json").exists() {
        assert!(Instant::now() < deadline, "the request was never made");
        std::thread::sleep(Duration::from_millis(20));
    }
    let (status, took) = daemon.stop(libc::SIGTERM, WAIT);
    assert_eq!(status.code(), Some(0), "{}", daemon.log());
    assert!(took < Duration::from_secs(3), "shutdown took {took:?}");
    assert_eq!(c.read_to_end(), Ended::Closed(1012));
    eprintln!("SIGTERM to exit with a hanging assessment request: {took:?}");
}
