//! After a restart (or a crash): interviews that stopped mid-interview are
//! rebuilt from their journals and can be resumed within
//! `sessions.resume_window`. The journal is the source of truth: a
//! transcript that stops with a `suspended` line (written at shutdown, when
//! the client left, or by recovery after a crash) holds everything the
//! session needs: its key (the invite, or the resume token's hash), its
//! script, its conversation and where the interviewer stood (replayed).
//! Past the window such a transcript is ended, with the reason it was
//! suspended for.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value;

use super::{Control, EndGuard, Env, JournalState, Phase, Session, Shared, Suspension};
use crate::interviewer::Interviewer;
use crate::journal::{self, EndReason};
use crate::protocol::Item;

/// A suspended interview found in the journal.
pub struct Suspended {
    pub session_id: String,
    header: Value,
    items: Vec<(Item, Option<String>)>,
    pub reason: EndReason,
    pub detail: String,
    /// How long ago it was suspended.
    pub age: Duration,
    /// It had reached its assessment: the assessment is done again, and a
    /// client that resumes the session gets the report.
    pub assessing: bool,
}

/// Transcripts under `sessions_dir` that stop suspended: mid-interview, or
/// in an assessment whose report is not in `reports_dir`.
pub fn find(sessions_dir: &Path, reports_dir: &Path) -> Vec<Suspended> {
    let mut found = Vec::new();
    for (id, path) in journal::session_files(sessions_dir) {
        let id = id.as_str();
        let Ok(t) = journal::read(&path) else {
            continue;
        };
        if !t.is_suspended() || t.records.iter().any(|r| r["kind"] == "assessment") {
            continue;
        }
        let assessing = t.records.iter().any(|r| r["kind"] == "phase");
        if assessing && reports_dir.join(format!("{id}.json")).exists() {
            continue;
        }
        let Some(last) = t.records.iter().rev().find(|r| r["kind"] == "suspended") else {
            continue;
        };
        let reason = match last["reason"].as_str() {
            Some("client_closed") => EndReason::ClientClosed,
            Some("stale") => EndReason::Stale,
            Some("shutdown") => EndReason::Shutdown,
            _ => EndReason::Error,
        };
        let age = last["at"]
            .as_str()
            .and_then(|at| humantime::parse_rfc3339(at).ok())
            .and_then(|at| SystemTime::now().duration_since(at).ok())
            .unwrap_or_default();
        let items = t.conversation();
        found.push(Suspended {
            session_id: id.to_owned(),
            header: t.records.first().cloned().unwrap_or(Value::Null),
            items,
            reason,
            detail: last["detail"].as_str().unwrap_or("").to_owned(),
            age,
            assessing,
        });
    }
    found
}

impl Suspended {
    /// The key a client resumes it with.
    pub fn key(&self) -> Option<String> {
        if let Some(id) = self.header["invite"].as_str() {
            return Some(format!("invite:{id}"));
        }
        self.header["resume_token_sha256"]
            .as_str()
            .map(|h| format!("token:{h}"))
    }
}

/// Runs a restored session: suspended until a client resumes it or its
/// window passes. Like `run`, it removes its entry when it ends.
pub async fn run(
    key: u64,
    shared: std::rc::Rc<Shared>,
    env: Env,
    found: Suspended,
    (control_tx, control): (
        async_channel::Sender<Control>,
        async_channel::Receiver<Control>,
    ),
) {
    let guard = EndGuard {
        shared: shared.clone(),
        journal: env.journal.clone(),
    };
    shared.journal.set(JournalState::Open);
    shared.phase.set(Phase::Suspended);
    let id = shared.id.clone();
    let window = env.config.sessions.resume_window.0;
    let resume_key = found.key();
    let (reason, detail) = (found.reason, found.detail.clone());
    let remaining = window.saturating_sub(found.age);
    let assessing = found.assessing;
    let session = match (
        resume_key.clone(),
        rebuild(shared.clone(), env.clone(), found),
    ) {
        // An assessment is done again whatever the window.
        (Some(resume_key), Ok(session)) if assessing => Some((resume_key, session)),
        _ if remaining.is_zero() => {
            log::info!("session {id}: its resume window passed while the daemon was down");
            None
        }
        (Some(resume_key), Ok(mut session)) => {
            session.suspended = Some(Suspension {
                reason,
                detail: detail.clone(),
                until: Instant::now() + remaining,
            });
            Some((resume_key, session))
        }
        (_, Err(why)) => {
            log::warn!("session {id}: cannot be resumed after the restart: {why}");
            None
        }
        (None, _) => {
            log::warn!(
                "session {id}: cannot be resumed after the restart: its transcript names no key"
            );
            None
        }
    };
    let Some((resume_key, mut session)) = session else {
        super::record_end(
            &shared,
            &env.journal,
            reason,
            Some(&detail),
            super::Record::End,
        );
        drop(guard);
        let _ = env.events.try_send(super::Event::Ended(key));
        return;
    };
    log::info!("session {id}: restored from its journal; resumable");
    env.resumable
        .borrow_mut()
        .insert(resume_key.clone(), control_tx.clone());
    let finish = if assessing {
        log::info!("session {id}: its assessment was interrupted; assessing it again");
        match session.run_assessment().await {
            Ok(()) => session.run_loop(&control).await,
            Err(finish) => finish,
        }
    } else {
        session.run_loop(&control).await
    };
    session.conclude(finish, &resume_key, &control_tx).await;
    drop(guard);
    let _ = env.events.try_send(super::Event::Ended(key));
}

/// The session as its journal leaves it.
fn rebuild(shared: std::rc::Rc<Shared>, mut env: Env, found: Suspended) -> Result<Session, String> {
    let header = &found.header;
    let script = match header["script"].as_str() {
        Some(name) => Arc::new(super::admit::load_named(&env, name)?),
        None if header["script_title"].as_str() == Some(env.script.title.as_str()) => {
            env.script.clone()
        }
        None => return Err("its script is no longer the configured one".into()),
    };
    env.script = script.clone();
    let mut items = super::Items::default();
    let mut highest = 0u64;
    let mut bytes = 0u64;
    for (item, question) in found.items {
        if let Some(n) = item
            .id
            .strip_prefix("item_")
            .and_then(|n| n.parse::<u64>().ok())
        {
            highest = highest.max(n);
        }
        bytes += item.text.len() as u64 + super::conversation::RECORD_OVERHEAD;
        items.push(item, question);
    }
    let engine = header["interviewer"].as_str().unwrap_or("scripted");
    let interviewer = match Interviewer::restored(engine, script.clone(), env.relay.clone(), &items)
    {
        Some(interviewer) => interviewer,
        // The interview is over: any engine will do, none will be asked.
        None if found.assessing => {
            Interviewer::new(crate::config::InterviewerKind::Scripted, script, None)
        }
        None => {
            return Err(format!(
            "the `{engine}` interviewer cannot pick it up (not configured, or the script changed)"
        ))
        }
    };
    let invite = header["invite"]
        .as_str()
        .and_then(|id| env.invites.borrow_mut().get(id));
    let mut session = Session::restored(shared, env, interviewer, items);
    session.ids.skip_past(highest);
    session.transcript_bytes = bytes;
    session.invite = invite;
    Ok(session)
}
