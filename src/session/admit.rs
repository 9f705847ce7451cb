//! Whether a connection whose request has been read becomes a session:
//! the browser's origin, the invite (in `invite` mode), and a session slot.
//! Every refusal is an HTTP answer and a (rate-limited) log line that says
//! why, never with the token.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use super::Env;
use crate::admission::{self, Admission, Ticket};
use crate::config::AccessMode;
use crate::handshake::{Denied, Request};
use crate::invites::{self, Invite};
use crate::log_limited;
use crate::script::Script;

/// What an admitted session starts with.
pub struct Admitted {
    /// Its place under `limits.max_sessions`; given back when dropped.
    /// `None` when it resumes a session, which keeps the place it has.
    pub slot: Option<Ticket>,
    /// The client's address (behind a trusted proxy, the one it names).
    pub client: IpAddr,
    pub invite: Option<Invite>,
    /// The invite's script, or the configured one.
    pub script: Arc<Script>,
    /// The session this connection resumes, if it resumes one.
    pub resume: Option<async_channel::Sender<super::Control>>,
    /// For a new session: the key a later connection resumes it by.
    pub resume_key: String,
    /// For a new session in `open` mode: the token that resumes it.
    pub resume_token: Option<String>,
}

/// The client's address for `request` from `peer`.
pub fn client_of(env: &Env, peer: SocketAddr, request: &Request) -> IpAddr {
    let hops: Vec<&str> = request.forwarded_for.iter().map(String::as_str).collect();
    admission::client_address(peer.ip(), &hops, &env.config.server.trusted_proxies)
}

pub fn admit(env: &Env, peer: SocketAddr, request: &Request) -> Result<Admitted, Denied> {
    if env.status.draining.get() {
        // Under socket activation the next process takes the connection
        // the client makes next; with resume, its interview carries on.
        return Err(Denied {
            status: 503,
            body: "the interview service is restarting; connect again\n".into(),
        });
    }
    let access = &env.config.access;
    if let Some(origin) = &request.origin {
        let origin = origin.trim_end_matches('/');
        if !access.allowed_origins.is_empty()
            && !access
                .allowed_origins
                .iter()
                .any(|o| o.trim_end_matches('/').eq_ignore_ascii_case(origin))
        {
            let shown: String = origin.chars().take(100).collect();
            log_limited!(
                log::Level::Warn,
                "refused origin",
                "refused {peer}: origin `{shown}` is not in access.allowed_origins (HTTP 403)"
            );
            return Err(Denied {
                status: 403,
                body: "this page's origin may not open interviews here\n".into(),
            });
        }
    }
    let mut resume = None;
    let mut resume_token = None;
    let (invite, resume_key) = match env.config.access_mode() {
        AccessMode::Open => {
            // A token we gave out resumes its session; anything else is a
            // new session with a token of its own.
            let known = request.token.as_deref().and_then(|t| {
                let key = format!("token:{}", invites::hash(t));
                env.resumable.borrow().get(&key).cloned()
            });
            match known {
                Some(session) => {
                    resume = Some(session);
                    (None, String::new())
                }
                None => {
                    let token = new_resume_token();
                    let key = format!("token:{}", invites::hash(&token));
                    resume_token = Some(token);
                    (None, key)
                }
            }
        }
        AccessMode::Invite => {
            let token = request.token.as_deref();
            let found = env.invites.borrow_mut().lookup(token);
            let key = found
                .as_ref()
                .ok()
                .map(|invite| format!("invite:{}", invite.id));
            // An invite's live or suspended session is resumed by it, used
            // up or not.
            let session = key
                .as_ref()
                .and_then(|k| env.resumable.borrow().get(k).cloned());
            let checked = match (found, session) {
                (Ok(invite), Some(session)) => {
                    resume = Some(session);
                    Ok(invite)
                }
                (Ok(invite), None) => env.invites.borrow().check_uses(invite),
                (Err(refusal), _) => Err(refusal),
            };
            match checked {
                Ok(invite) => (Some(invite), key.unwrap_or_default()),
                Err(refusal) => {
                    crate::metrics::invite_refused(refusal.as_str());
                    log_limited!(
                        log::Level::Info,
                        "refused invite",
                        "refused {peer}: invite {} (HTTP 401)",
                        refusal.as_str()
                    );
                    return Err(Denied {
                        status: 401,
                        body: format!("{refusal}\n"),
                    });
                }
            }
        }
    };
    let script = match invite.as_ref().and_then(|i| i.script.as_deref()) {
        None => env.script.clone(),
        Some(name) => {
            match load_named(env, name) {
                Ok(script) => Arc::new(script),
                Err(e) => {
                    log::error!("refused {peer}: the invite's script `{name}`: {e}");
                    return Err(Denied {
                    status: 503,
                    body: "this interview cannot start now; please tell the person who invited you\n".into(),
                });
                }
            }
        }
    };
    let client = client_of(env, peer, request);
    let exempt = env.config.server.is_trusted(client);
    // A resumed session keeps its slot: a candidate coming back is never
    // turned away for lack of room.
    let slot = match resume {
        // A session restored after a restart holds no place yet: take one
        // if there is room, and resume anyway if there is not.
        Some(_) => Admission::session(&env.admission, client, exempt, &env.config.limits).ok(),
        None => Some(
            Admission::session(&env.admission, client, exempt, &env.config.limits).map_err(
                |refusal| {
                    log_limited!(
                        log::Level::Warn,
                        "refused",
                        "refused {peer}: {refusal} (limits: {} sessions, {} per address)",
                        env.config.limits.max_sessions,
                        env.config.limits.max_sessions_per_ip
                    );
                    Denied::from(refusal)
                },
            )?,
        ),
    };
    if let (Some(invite), None) = (&invite, &resume) {
        env.invites.borrow_mut().record_use(&invite.id);
    }
    Ok(Admitted {
        slot,
        client,
        invite,
        script,
        resume,
        resume_key,
        resume_token,
    })
}

/// A token that resumes an `open`-mode session: 192 random bits.
fn new_resume_token() -> String {
    let mut bytes = [0u8; 24];
    // A failing system RNG leaves the session without a way back, nothing
    // worse: it is a convenience, not an access control.
    if getrandom::fill(&mut bytes).is_err() {
        return String::new();
    }
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("rst_{hex}")
}

/// A script named by an invite: `interview.scripts_dir/NAME.toml`.
pub fn load_named(env: &Env, name: &str) -> Result<Script, String> {
    named_script_path(env.config.interview.scripts_dir.as_deref(), name)
        .and_then(|path| Script::load(Some(&path)).map_err(|e| e.to_string()))
}

/// Where a named script lives; a name is a plain file stem, never a path.
pub fn named_script_path(
    dir: Option<&std::path::Path>,
    name: &str,
) -> Result<std::path::PathBuf, String> {
    let dir = dir.ok_or("interview.scripts_dir is not set")?;
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(format!(
            "`{name}` is not a script name (letters, digits, - and _)"
        ));
    }
    Ok(dir.join(format!("{name}.toml")))
}
