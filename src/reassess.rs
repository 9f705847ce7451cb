//! Assessments are durable work: an interview that finished but whose
//! report is not on disk (the daemon was stopped or crashed during the
//! assessment) is assessed again when the daemon starts, on the same worker
//! threads, and its report written.
//!
//! The transcript is the source of truth: it says the assessment began
//! (`phase: assessing`) and, if it ended, how (`assessment`). The answers
//! come from its lines (deleted ones left out), the script from its header.

use std::path::Path;
use std::sync::Arc;

use crate::journal;
use crate::protocol::Item;
use crate::script::Script;

/// An interview to assess again.
pub struct Pending {
    pub session_id: String,
    pub candidate: Option<String>,
    pub script: Arc<Script>,
    /// The conversation, in order, with the question each answer answers.
    pub items: Vec<(Item, Option<String>)>,
}

/// Interviews under `sessions_dir` that entered the assessment and have
/// neither an outcome in their transcript nor a report in `reports_dir`.
pub fn find(
    sessions_dir: &Path,
    reports_dir: &Path,
    script: &Arc<Script>,
    scripts_dir: Option<&Path>,
) -> Vec<Pending> {
    let mut pending = Vec::new();
    for (id, path) in journal::session_files(sessions_dir) {
        let id = id.as_str();
        if reports_dir.join(format!("{id}.json")).exists() {
            continue;
        }
        let Ok(transcript) = journal::read(&path) else {
            continue;
        };
        if transcript.is_suspended() {
            // Restored as a session, which assesses it (`session::restore`).
            continue;
        }
        let records = &transcript.records;
        let began = records
            .iter()
            .any(|r| r["kind"] == "phase" && r["phase"] == "assessing");
        let ended = records.iter().any(|r| r["kind"] == "assessment");
        if !began || ended {
            continue;
        }
        let header = records.first();
        let named = header.and_then(|h| h["script"].as_str());
        let title = header.and_then(|h| h["script_title"].as_str());
        let script = match named {
            Some(name) => match crate::session::admit::named_script_path(scripts_dir, name)
                .and_then(|p| Script::load(Some(&p)).map_err(|e| e.to_string()))
            {
                Ok(s) => Arc::new(s),
                Err(e) => {
                    log::warn!("session {id}: cannot assess it again: its script `{name}`: {e}");
                    continue;
                }
            },
            None if title == Some(script.title.as_str()) => script.clone(),
            None => {
                log::warn!(
                    "session {id}: cannot assess it again: its script (\"{}\") is no longer the configured one",
                    title.unwrap_or("?")
                );
                continue;
            }
        };
        let items = transcript.conversation();
        pending.push(Pending {
            session_id: id.to_owned(),
            candidate: header
                .and_then(|h| h["candidate"].as_str())
                .map(str::to_owned),
            script,
            items,
        });
    }
    pending
}
