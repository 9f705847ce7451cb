//! The smallest end-to-end checks; the detailed suites live beside this file.

mod common;

use common::*;

/// A whole scripted interview completes through the real binary: report on
/// disk, delivered to the client, connection closed with 1000.
#[test]
fn a_full_interview_completes_and_closes_with_1000() {
    let mut daemon = Daemon::start("");
    let mut client = Client::connect(&daemon.url());
    client.answer_all(
        "I built a service with my team, designed the storage and shipped it to users.",
    );
    let done = client.wait_for("interview.assessment.completed");
    assert_valid_report(&done["report"]);
    assert_eq!(done["report"]["interview_complete"], true);
    assert_eq!(client.read_to_end(), Ended::Closed(1000));
    assert_eq!(
        read_valid_report(&daemon.report_path(&client.session_id)),
        done["report"]
    );
    let (status, _) = daemon.stop(libc::SIGTERM, WAIT);
    assert_eq!(status.code(), Some(0), "log:\n{}", daemon.log());
    let journal = daemon.journal(&client.session_id);
    assert_eq!(journal.end_reason(), Some("completed"));
}
