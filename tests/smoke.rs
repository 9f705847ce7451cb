//! The smallest end-to-end checks; the detailed suites live beside this file.

mod common;

use common::*;

/// A whole scripted interview completes through the real binary: report on
/// disk, delivered to the client (the default `summary` view of it),
/// connection closed with 1000.
#[test]
fn a_full_interview_completes_and_closes_with_1000() {
    let mut daemon = Daemon::start("");
    let mut client = Client::connect(&daemon.url());
    client.answer_all(
        "I built a service with my team, designed the storage and shipped it to users.",
    );
    let done = client.wait_for("interview.assessment.completed");
    assert_eq!(done["session_id"], client.session_id.as_str());
    assert_eq!(done["shared"], "summary");
    let report = full_report(&daemon, &done);
    assert_eq!(report["interview_complete"], true);
    // With the defaults (rubric, summary view) the candidate sees no score.
    let shown = done["report"]["summary"].as_str().unwrap();
    assert!(
        !shown.contains(&report["overall_score"].to_string()) && !shown.contains("/100"),
        "the summary shows a score: {shown}"
    );
    assert_eq!(client.read_to_end(), Ended::Closed(1000));
    let (status, _) = daemon.stop(libc::SIGTERM, WAIT);
    assert_eq!(status.code(), Some(0), "log:\n{}", daemon.log());
    let journal = daemon.journal(&client.session_id);
    assert_eq!(journal.end_reason(), Some("completed"));
}
