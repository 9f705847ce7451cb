//! Resume: a dropped connection does not end the interview.
//!
//! A session whose client disappears mid-interview (a close without
//! `interview.finish`, a TCP drop, a client that stopped reading, the
//! sweeper) is *suspended*: the journal says so (`suspended`), a relay's
//! upstream is closed, and the session's future waits, keeping its session
//! slot, holding the conversation, for
//! `sessions.resume_window`. A client that presents the session's key
//! within the window takes it over: the invite it was opened with
//! (`access.mode = "invite"`), or the resume token sent in its
//! `session.created` (`open` mode). After the window the session ends with
//! the reason it was suspended for.
//!
//! A second connection for a session whose client is still connected takes
//! it over too; the old connection gets close 4000 "session taken over".
//! (Refusing would lock out a candidate whose old connection is a zombie
//! that the server has not noticed yet, which is the common case after a
//! network change.)

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::IpAddr;
use std::rc::Rc;
use std::time::Instant;

use async_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use serde_json::json;

use super::{Control, EndReason, Flow, Phase, Session, Suspension};
use crate::handshake::Ws;
use crate::interviewer::Ctx;
use crate::journal::now_rfc3339;
use crate::protocol;

/// Live and suspended sessions by their resume key (`invite:ID` or
/// `token:SHA256`), for new connections to find them. Entries are removed
/// by their sessions when they end.
pub type Registry = Rc<RefCell<HashMap<String, async_channel::Sender<Control>>>>;

/// Removes `key` from the registry if it still names this session (a newer
/// session may have taken the key since).
pub fn unregister(registry: &Registry, key: &str, session: &async_channel::Sender<Control>) {
    let mut registry = registry.borrow_mut();
    if registry.get(key).is_some_and(|tx| tx.same_channel(session)) {
        registry.remove(key);
    }
}

/// A new connection for an existing session.
pub struct TakeOver {
    pub ws: Ws,
    /// A place under the session limits, for a session that holds none
    /// (one restored after a restart); `None` when there was no room (a
    /// candidate coming back is not turned away for that).
    pub slot: Option<crate::admission::Ticket>,
    /// The resume token the client presented (`open` mode), to show it
    /// again in `session.created`.
    pub token: Option<String>,
    pub client: IpAddr,
    pub interview_events: bool,
}

/// The close code an old connection gets when another takes its session.
pub const TAKEN_OVER: u16 = 4000;

impl Session {
    /// The client is gone mid-interview: wait for it, for
    /// `sessions.resume_window`.
    pub(super) fn suspend(&mut self, reason: EndReason, detail: String) {
        let window = self.env.config.sessions.resume_window.0;
        log::info!(
            "session {}: suspended ({detail}); resumable for {}",
            self.shared.id,
            humantime::format_duration(window)
        );
        // The transcript file is closed meanwhile: a suspended session
        // holds no descriptor (the next line reopens it).
        self.env.journal.append_and_close(
            &self.shared.id,
            json!({"kind": "suspended", "reason": reason.as_str(), "detail": detail, "at": now_rfc3339()}),
        );
        // The session keeps its slot (and so its place under
        // limits.max_sessions and max_sessions_per_ip): disconnecting must
        // not be a way around the limits.
        self.ws = None;
        self.interviewer.suspend();
        self.shared.phase.set(Phase::Suspended);
        self.suspended = Some(Suspension {
            reason,
            detail,
            until: Instant::now() + window,
        });
    }

    /// A new connection takes the session over: the old one (if any) is
    /// closed with 4000, the new one gets the session as it stands.
    pub(super) async fn take_over(&mut self, t: TakeOver) -> Flow {
        if self.ws.is_some() {
            self.close(CloseCode::from(TAKEN_OVER), "session taken over")
                .await;
        }
        self.ws = Some(t.ws);
        if self.slot.is_none() {
            self.slot = t.slot;
        }
        if self.invite.is_none() && self.resume_token.is_none() {
            self.resume_token = t.token;
        }
        self.interview_events = t.interview_events;
        self.suspended = None;
        self.lost = None;
        let now = Instant::now();
        self.shared.last_activity.set(now);
        self.next_ping = now + self.env.config.sessions.ping_interval.0;
        self.shared.phase.set(if self.assessing.is_some() {
            Phase::Assessing
        } else {
            Phase::Interview
        });
        log::info!("session {} resumed by {}", self.shared.id, t.client);
        self.env.journal.append(
            &self.shared.id,
            json!({"kind": "resumed", "at": now_rfc3339()}),
        );
        // The session as it stands: who it is, what was said, then where
        // it is.
        let mut events = vec![self.created_event()];
        let mut previous: Option<String> = None;
        for item in self.items.iter() {
            events.extend(protocol::user_item_added(item, previous.as_deref()));
            previous = Some(item.id.clone());
        }
        events.push(json!({"type": "interview.resumed", "session_id": &*self.shared.id}));
        if self.assessing.is_some() {
            events.push(protocol::assessment_started(&self.shared.id));
            self.send_all(events).await;
            return Ok(());
        }
        self.send_all(events).await;
        let ctx = ctx!(self);
        let outputs = self.interviewer.resume(&ctx).await;
        self.apply(outputs, None).await
    }
}
