//! Candidate invites: who may start an interview when `access.mode =
//! "invite"`.
//!
//! `interviewd invite create` writes an invite to `STATE_DIR/invites.jsonl`
//! (append-only, 0600, synced) and prints its token once. The file holds
//! only the token's SHA-256, so a leaked state directory does not leak
//! usable tokens. `invite revoke` appends a revocation. The daemon reads the
//! file at start and again whenever it has grown, so an invite created
//! while it runs works at once.
//!
//! An invite's uses are the sessions started with it. Each session's
//! transcript header names its invite, and the transcripts are the source
//! of truth. At start the daemon counts them. A use is recorded durably
//! before the session begins, because the header is, and a crash cannot
//! give a used invite back.

use std::collections::HashMap;
use std::fmt;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The invites file, in the state directory.
pub const FILE: &str = "invites.jsonl";

/// Random bytes in a token: 192 bits, well past guessing.
const TOKEN_BYTES: usize = 24;

/// What a token looks like: `ivt_` and 48 hex digits.
pub const TOKEN_PREFIX: &str = "ivt_";

/// One invite, as the file has it (never the token itself).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invite {
    /// A short public name for the invite (`inv_` + 12 hex digits), for
    /// `invite list` and `invite revoke`.
    pub id: String,
    /// SHA-256 of the token, hex.
    pub sha256: String,
    /// A script in `interview.scripts_dir`; `None`: the configured one.
    pub script: Option<String>,
    /// `NAME <EMAIL>`, as the operator wrote it.
    pub candidate: Option<String>,
    /// Unix seconds.
    pub created_at: u64,
    pub expires_at: u64,
    /// How many sessions it may start.
    pub uses: u32,
}

/// A line of the invites file.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Line {
    Invite(Invite),
    Revoke { id: String, at: u64 },
}

/// Why a token does not open a session (HTTP 401, with this reason).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Missing,
    Unknown,
    Expired,
    Used,
    Revoked,
}

impl Refusal {
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Missing => "missing",
            Refusal::Unknown => "unknown",
            Refusal::Expired => "expired",
            Refusal::Used => "used",
            Refusal::Revoked => "revoked",
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Refusal::Missing => "an invite token is required (Authorization: Bearer TOKEN)",
            Refusal::Unknown => "this invite token is not valid",
            Refusal::Expired => "this invite has expired",
            Refusal::Used => "this invite has already been used",
            Refusal::Revoked => "this invite has been revoked",
        })
    }
}

/// The daemon's view of the invites: the file, the uses, the revocations.
#[derive(Debug)]
pub struct Store {
    path: PathBuf,
    by_hash: HashMap<String, Invite>,
    revoked: HashMap<String, u64>,
    uses: HashMap<String, u32>,
    /// How much of the file has been read (whole lines only).
    read: u64,
}

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// SHA-256 of a token, hex.
pub fn hash(token: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

impl Store {
    /// Reads the invites file and counts the uses recorded in the
    /// transcripts under `sessions_dir`.
    pub fn open(state_dir: &Path, sessions_dir: &Path) -> Store {
        let mut store = Store {
            path: state_dir.join(FILE),
            by_hash: HashMap::new(),
            revoked: HashMap::new(),
            uses: count_uses(sessions_dir),
            read: 0,
        };
        store.refresh();
        store
    }

    /// Reads what was appended to the file since the last read.
    fn refresh(&mut self) {
        let Ok(mut file) = File::open(&self.path) else {
            return;
        };
        let len = file.metadata().map_or(0, |m| m.len());
        if len <= self.read || file.seek(SeekFrom::Start(self.read)).is_err() {
            return;
        }
        let mut text = String::new();
        if file
            .take(len - self.read)
            .read_to_string(&mut text)
            .is_err()
        {
            return;
        }
        // Only whole lines: the CLI may be writing the last one.
        let whole = text.rfind('\n').map_or(0, |i| i + 1);
        for line in text[..whole].lines() {
            match serde_json::from_str::<Line>(line) {
                Ok(Line::Invite(invite)) => {
                    self.by_hash.insert(invite.sha256.clone(), invite);
                }
                Ok(Line::Revoke { id, at }) => {
                    self.revoked.insert(id, at);
                }
                Err(e) => log::warn!("{}: a line that is not an invite: {e}", self.path.display()),
            }
        }
        self.read += whole as u64;
    }

    /// The invite a token names, unless revoked; its expiry and uses are
    /// not checked (a session it opened may be resumed with it).
    pub fn lookup(&mut self, token: Option<&str>) -> Result<Invite, Refusal> {
        let token = token.ok_or(Refusal::Missing)?;
        let digest = hash(token);
        if !self.by_hash.contains_key(&digest) {
            self.refresh();
        }
        let invite = self.by_hash.get(&digest).ok_or(Refusal::Unknown)?;
        if self.revoked.contains_key(&invite.id) {
            return Err(Refusal::Revoked);
        }
        Ok(invite.clone())
    }

    /// The invite with this id, if the file has it.
    pub fn get(&mut self, id: &str) -> Option<Invite> {
        let find = |s: &Store| s.by_hash.values().find(|i| i.id == id).cloned();
        find(self).or_else(|| {
            self.refresh();
            find(self)
        })
    }

    /// Whether the invite may start a new session: not expired, uses left.
    pub fn check_uses(&self, invite: Invite) -> Result<Invite, Refusal> {
        if now() >= invite.expires_at {
            return Err(Refusal::Expired);
        }
        if self.uses.get(&invite.id).copied().unwrap_or(0) >= invite.uses {
            return Err(Refusal::Used);
        }
        Ok(invite)
    }

    /// The invite a token opens for a new session, or why it opens none.
    /// Does not use it.
    pub fn check(&mut self, token: Option<&str>) -> Result<Invite, Refusal> {
        let invite = self.lookup(token)?;
        self.check_uses(invite)
    }

    /// Counts a session started with the invite.
    pub fn record_use(&mut self, id: &str) {
        *self.uses.entry(id.to_owned()).or_default() += 1;
    }
}

/// Uses per invite id, from the transcripts' header lines.
fn count_uses(sessions_dir: &Path) -> HashMap<String, u32> {
    let mut uses = HashMap::new();
    let Ok(entries) = std::fs::read_dir(sessions_dir) else {
        return uses;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().and_then(|e| e.to_str()) != Some("jsonl") {
            continue;
        }
        let Ok(file) = File::open(&path) else {
            continue;
        };
        let mut first = String::new();
        if BufReader::new(file).read_line(&mut first).is_err() {
            continue;
        }
        if let Ok(header) = serde_json::from_str::<Value>(&first) {
            if let Some(id) = header["invite"].as_str() {
                *uses.entry(id.to_owned()).or_default() += 1;
            }
        }
    }
    uses
}

/// Creates an invite: appends it to the file (synced) and returns the token,
/// which is shown once and kept nowhere.
pub fn create(
    state_dir: &Path,
    script: Option<String>,
    candidate: Option<String>,
    expires_in: Duration,
    uses: u32,
) -> std::io::Result<(String, Invite)> {
    let mut bytes = [0u8; TOKEN_BYTES];
    getrandom::fill(&mut bytes).map_err(|e| std::io::Error::other(e.to_string()))?;
    let token = format!("{TOKEN_PREFIX}{}", hex(&bytes));
    let mut id_bytes = [0u8; 6];
    getrandom::fill(&mut id_bytes).map_err(|e| std::io::Error::other(e.to_string()))?;
    let created_at = now();
    let invite = Invite {
        id: format!("inv_{}", hex(&id_bytes)),
        sha256: hash(&token),
        script,
        candidate,
        created_at,
        expires_at: created_at.saturating_add(expires_in.as_secs()),
        uses,
    };
    append(state_dir, &Line::Invite(invite.clone()))?;
    Ok((token, invite))
}

/// Revokes an invite by id; false when there is no such invite.
pub fn revoke(state_dir: &Path, id: &str) -> std::io::Result<bool> {
    let (invites, _) = read_all(state_dir)?;
    if !invites.iter().any(|i| i.id == id) {
        return Ok(false);
    }
    append(
        state_dir,
        &Line::Revoke {
            id: id.to_owned(),
            at: now(),
        },
    )?;
    Ok(true)
}

/// Every invite with its revocation time, for `invite list`.
pub fn read_all(state_dir: &Path) -> std::io::Result<(Vec<Invite>, HashMap<String, u64>)> {
    let path = state_dir.join(FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e),
    };
    let mut invites = Vec::new();
    let mut revoked = HashMap::new();
    for line in text.lines() {
        match serde_json::from_str::<Line>(line) {
            Ok(Line::Invite(i)) => invites.push(i),
            Ok(Line::Revoke { id, at }) => {
                revoked.insert(id, at);
            }
            Err(_) => {}
        }
    }
    Ok((invites, revoked))
}

/// Uses per invite, as the daemon counts them.
pub fn uses(state_dir: &Path) -> HashMap<String, u32> {
    count_uses(&state_dir.join("sessions"))
}

fn append(state_dir: &Path, line: &Line) -> std::io::Result<()> {
    crate::fsutil::private_dir(state_dir)?;
    let mut text = serde_json::to_string(line).map_err(std::io::Error::other)?;
    text.push('\n');
    let mut file = crate::fsutil::open_private_append(&state_dir.join(FILE))?;
    give_to_directory_owner(state_dir, &file)?;
    // One write: a reader sees the whole line or none of it.
    file.write_all(text.as_bytes())?;
    file.sync_all()
}

/// `interviewd invite create` is often run as root on a daemon whose state
/// directory belongs to its own user (systemd's DynamicUser=): the file
/// must then be that user's, or the daemon cannot read it (mode 0600) and
/// refuses every token. Only root can give a file away; anyone else
/// writes as the directory's owner or not at all.
fn give_to_directory_owner(state_dir: &Path, file: &std::fs::File) -> std::io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(());
    }
    let dir = std::fs::metadata(state_dir)?;
    let mine = file.metadata()?;
    if (mine.uid(), mine.gid()) == (dir.uid(), dir.gid()) {
        return Ok(());
    }
    std::os::unix::fs::fchown(file, Some(dir.uid()), Some(dir.gid()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Run as root (`interviewd invite create` by an operator), the invites
    /// file goes to the state directory's owner, the daemon's user, who
    /// could not read a root-owned 0600 file.
    #[test]
    fn invites_written_by_root_belong_to_the_state_directory_owner() {
        use std::os::unix::fs::MetadataExt;
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: needs root to give a file away");
            return;
        }
        let dir = tempfile_dir();
        std::os::unix::fs::chown(&dir, Some(65534), Some(65534)).unwrap();
        create(&dir, None, None, Duration::from_secs(60), 1).unwrap();
        let meta = std::fs::metadata(dir.join(FILE)).unwrap();
        assert_eq!((meta.uid(), meta.gid()), (65534, 65534));
        assert_eq!(meta.mode() & 0o777, 0o600);
    }

    #[test]
    fn an_invite_opens_sessions_until_used_expired_or_revoked() {
        let dir = tempfile_dir();
        let sessions = dir.join("sessions");
        std::fs::create_dir_all(&sessions).unwrap();
        let (token, invite) = create(
            &dir,
            None,
            Some("Ada <ada@example.com>".into()),
            Duration::from_secs(3600),
            1,
        )
        .unwrap();
        assert!(token.starts_with(TOKEN_PREFIX) && token.len() == 4 + 48);
        let file = std::fs::read_to_string(dir.join(FILE)).unwrap();
        assert!(!file.contains(&token), "the token itself was stored");
        let mut store = Store::open(&dir, &sessions);
        assert_eq!(store.check(Some(&token)).unwrap().id, invite.id);
        assert_eq!(store.check(None), Err(Refusal::Missing));
        assert_eq!(store.check(Some("ivt_nope")), Err(Refusal::Unknown));
        store.record_use(&invite.id);
        assert_eq!(store.check(Some(&token)), Err(Refusal::Used));
        // Created while the store is open: seen at once; then revoked.
        let (second, invite2) = create(&dir, None, None, Duration::from_secs(3600), 3).unwrap();
        assert!(store.check(Some(&second)).is_ok());
        assert!(revoke(&dir, &invite2.id).unwrap());
        store.refresh();
        assert_eq!(store.check(Some(&second)), Err(Refusal::Revoked));
        let (expired, _) = create(&dir, None, None, Duration::ZERO, 1).unwrap();
        assert_eq!(store.check(Some(&expired)), Err(Refusal::Expired));
        // Uses survive a restart: they are counted from transcript headers.
        std::fs::write(
            sessions.join("sess_x.jsonl"),
            format!("{{\"kind\":\"header\",\"invite\":\"{}\"}}\n", invite.id),
        )
        .unwrap();
        let mut reopened = Store::open(&dir, &sessions);
        assert_eq!(reopened.check(Some(&token)), Err(Refusal::Used));
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn tempfile_dir() -> PathBuf {
        let mut bytes = [0u8; 8];
        getrandom::fill(&mut bytes).unwrap();
        let dir = std::env::temp_dir().join(format!("interviewd-invites-{}", hex(&bytes)));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}
