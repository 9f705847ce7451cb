//! Durable transcripts: one append-only JSON-lines file per session,
//! `STATE_DIR/sessions/<session_id>.jsonl`.
//!
//! Sessions never touch the disk. They send records to the journal writer
//! thread over a channel; where durability is promised (a candidate's
//! answer) they wait for the writer's acknowledgement, which it sends only
//! after the line is written and `fdatasync`ed. The writer commits in
//! batches: every record that queued while it was syncing goes into the next
//! write and shares one sync per file, so 200 sessions answering at once cost
//! a few syncs, not 200.
//!
//! A crash can leave a torn last line; [`read`] detects and ignores it, and
//! at the next start `recovery` cuts it and closes the transcript.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde_json::{json, Value};
use smol::future::FutureExt;
use smol::Timer;

use crate::recovery::{self, Recovered};
use crate::workers::{WorkerKind, Workers};

/// Most records written per batch before syncing; bounds the latency one
/// busy batch can add to the acknowledgements queued behind it.
const MAX_BATCH: usize = 512;

/// How long a session waits for the disk to confirm a durable write. A
/// healthy disk takes milliseconds; past this the disk is in trouble (a hung
/// network mount, a dying device) and the candidate is told the answer was
/// not saved, rather than left waiting with no reply.
const ACK_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a session ended, as written in its last journal line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    Completed,
    ClientClosed,
    Stale,
    Shutdown,
    Error,
}

impl EndReason {
    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::Completed => "completed",
            EndReason::ClientClosed => "client_closed",
            EndReason::Stale => "stale",
            EndReason::Shutdown => "shutdown",
            EndReason::Error => "error",
        }
    }
}

/// A write that could not be made durable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JournalError {
    /// The disk refused (full, permissions, missing directory...).
    Io(String),
    /// The writer is gone: the daemon is shutting down.
    Closed,
    /// The disk did not confirm the write within `ACK_TIMEOUT` (10 s). The line
    /// may still land; it was not acknowledged, so nothing was promised.
    TimedOut,
}

impl fmt::Display for JournalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JournalError::Io(m) => write!(f, "transcript write failed: {m}"),
            JournalError::Closed => f.write_str("transcript writer is shut down"),
            JournalError::TimedOut => write!(
                f,
                "the disk did not confirm the write within {} s",
                ACK_TIMEOUT.as_secs()
            ),
        }
    }
}

struct Op {
    session: Arc<str>,
    line: String,
    ack: Option<async_channel::Sender<Result<(), JournalError>>>,
    /// The session's last record: close its file afterwards.
    last: bool,
}

/// The sending side of the journal. Cheap to clone; usable from any thread.
#[derive(Clone)]
pub struct Journal {
    tx: async_channel::Sender<Op>,
}

pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}

impl Journal {
    /// Starts the writer thread for `dir` (created if missing).
    pub fn start(dir: PathBuf, workers: &mut Workers) -> std::io::Result<Journal> {
        crate::fsutil::private_dir(&dir)?;
        // Before anything new is written, and before startup reads the
        // transcripts (to resume or re-assess them): settle what a crash
        // left open.
        let recovered = recovery::recover(&dir);
        if recovered != Recovered::default() {
            log::warn!(
                "journal: {} transcript(s) left open by an unclean stop were suspended ({} torn line(s) cut, {} could not be repaired)",
                recovered.closed,
                recovered.torn,
                recovered.failed
            );
        }
        let (tx, rx) = async_channel::unbounded();
        workers.spawn("journal-writer".into(), WorkerKind::Journal, move || {
            writer(dir, rx)
        })?;
        Ok(Journal { tx })
    }

    /// Appends a record and waits until it is on disk.
    pub async fn append_durable(
        &self,
        session: &Arc<str>,
        record: Value,
    ) -> Result<(), JournalError> {
        let (ack, done) = async_channel::bounded(1);
        self.send(session, record, Some(ack), false)?;
        async { done.recv().await.unwrap_or(Err(JournalError::Closed)) }
            .or(async {
                Timer::after(ACK_TIMEOUT).await;
                Err(JournalError::TimedOut)
            })
            .await
    }

    /// Appends a record without waiting; it is synced with the next batch.
    pub fn append(&self, session: &Arc<str>, record: Value) {
        let _ = self.send(session, record, None, false);
    }

    /// Appends a record and lets the writer close the file (a suspended
    /// session); the next record reopens it.
    pub fn append_and_close(&self, session: &Arc<str>, record: Value) {
        let _ = self.send(session, record, None, true);
    }

    /// Appends the session's end line and lets the writer close the file.
    /// Synchronous so that it can run from a drop guard.
    pub fn end(&self, session: &Arc<str>, reason: EndReason, detail: Option<&str>) {
        crate::metrics::session_ended(reason);
        let mut record = json!({"kind": "end", "reason": reason.as_str(), "at": now_rfc3339()});
        if let Some(detail) = detail {
            record["detail"] = json!(detail);
        }
        let _ = self.send(session, record, None, true);
    }

    fn send(
        &self,
        session: &Arc<str>,
        record: Value,
        ack: Option<async_channel::Sender<Result<(), JournalError>>>,
        last: bool,
    ) -> Result<(), JournalError> {
        let mut line = record.to_string();
        line.push('\n');
        let op = Op {
            session: session.clone(),
            line,
            ack,
            last,
        };
        self.tx.try_send(op).map_err(|_| JournalError::Closed)
    }

    /// Closes the channel: the writer drains what is queued, syncs and exits.
    pub fn close(&self) -> bool {
        self.tx.close()
    }

    pub fn queued(&self) -> usize {
        self.tx.len()
    }
}

fn writer(dir: PathBuf, rx: async_channel::Receiver<Op>) {
    // Held open for syncing the directory after a file is created, so that
    // creating a session costs exactly one descriptor (its file).
    let dir_handle = File::open(&dir);
    if let Err(e) = &dir_handle {
        log::error!("journal: cannot open {}: {e}", dir.display());
    }
    let mut files: HashMap<Arc<str>, Open> = HashMap::new();
    while let Ok(first) = rx.recv_blocking() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        commit(&dir, dir_handle.as_ref().ok(), &mut files, batch);
    }
    log::debug!(
        "journal writer: channel closed and drained, {} file(s) open",
        files.len()
    );
}

/// Writes a batch, syncs every file it touched, then acknowledges.
fn commit(
    dir: &Path,
    dir_handle: Option<&File>,
    files: &mut HashMap<Arc<str>, Open>,
    batch: Vec<Op>,
) {
    let mut failed: HashMap<Arc<str>, String> = HashMap::new();
    let mut touched: HashSet<Arc<str>> = HashSet::new();
    let mut created = false;
    for op in &batch {
        if failed.contains_key(&op.session) {
            continue;
        }
        let written = write_line(dir, files, op, &mut created).and_then(|()| {
            if op.last {
                // Sync and close now rather than at the end of the batch, so
                // that the descriptor is free for sessions that open their
                // files later in this same batch.
                files
                    .remove(&op.session)
                    .map_or(Ok(()), |open| timed_sync(&open.file))
            } else {
                touched.insert(op.session.clone());
                Ok(())
            }
        });
        if let Err(e) = written {
            crate::log_limited!(
                log::Level::Error,
                "journal write failed",
                "journal {}: {e}",
                op.session
            );
            files.remove(&op.session);
            failed.insert(op.session.clone(), e.to_string());
        }
    }
    if created {
        // A new file's directory entry must be durable too, or a crash can
        // lose the whole transcript even though its lines were synced.
        let synced = match dir_handle {
            Some(d) => d.sync_all(),
            None => File::open(dir).and_then(|d| d.sync_all()),
        };
        if let Err(e) = synced {
            log::error!("journal: syncing {}: {e}", dir.display());
        }
    }
    for session in &touched {
        if failed.contains_key(session) {
            continue;
        }
        if let Some(open) = files.get(session) {
            if let Err(e) = timed_sync(&open.file) {
                log::error!("journal {session}: fdatasync: {e}");
                files.remove(session);
                failed.insert(session.clone(), e.to_string());
            }
        }
    }
    for op in batch {
        if let Some(ack) = op.ack {
            let result = match failed.get(&op.session) {
                Some(e) => Err(JournalError::Io(e.clone())),
                None => Ok(()),
            };
            let _ = ack.try_send(result);
        }
    }
}

fn write_line(
    dir: &Path,
    files: &mut HashMap<Arc<str>, Open>,
    op: &Op,
    created: &mut bool,
) -> std::io::Result<()> {
    if !files.contains_key(&op.session) {
        let path = dir.join(format!("{}.jsonl", op.session));
        let file = crate::fsutil::open_private_append(&path)?;
        let len = file.metadata()?.len();
        if len == 0 {
            *created = true;
        }
        files.insert(op.session.clone(), Open { file, len });
    }
    let open = files.get_mut(&op.session).expect("inserted above");
    match open.file.write_all(op.line.as_bytes()) {
        Ok(()) => {
            open.len += op.line.len() as u64;
            Ok(())
        }
        Err(e) => {
            // A short write (disk full, file size limit) leaves part of a
            // line; cut it off so that a later line cannot follow it and
            // the transcript stays readable to its end.
            let _ = open.file.set_len(open.len);
            if open.len == 0 {
                // Not even the header made it: the session is refused, and
                // an empty file would only litter the directory (one per
                // refused connection while the disk is full).
                files.remove(&op.session);
                let _ = std::fs::remove_file(dir.join(format!("{}.jsonl", op.session)));
            }
            Err(e)
        }
    }
}

/// A session's open transcript and its length in whole lines.
struct Open {
    file: File,
    len: u64,
}

/// The transcripts in `dir`: (session id, path), in no particular order.
pub fn session_files(dir: &Path) -> Vec<(String, PathBuf)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .filter_map(|p| {
            let id = p.file_stem()?.to_str()?.to_owned();
            crate::ids::is_session_id(&id).then_some((id, p))
        })
        .collect()
}

/// A journal file as read back.
#[derive(Debug)]
pub struct Transcript {
    pub records: Vec<Value>,
    /// The file ended in a partial line (a crash mid-write); it was ignored.
    pub torn_tail: bool,
}

impl Transcript {
    /// How the session stopped: its last `end` line's reason, or, for a
    /// session that stopped suspended (it may still be resumed), the
    /// reason it was suspended for.
    pub fn end_reason(&self) -> Option<&str> {
        let last = self
            .records
            .iter()
            .rev()
            .find(|r| r["kind"] == "end" || r["kind"] == "suspended")?;
        if last["kind"] == "suspended" && !self.is_suspended() {
            return self
                .records
                .iter()
                .rev()
                .find(|r| r["kind"] == "end")
                .and_then(|r| r["reason"].as_str());
        }
        last["reason"].as_str()
    }

    /// The conversation as it stands in the transcript: its items in
    /// order, deleted ones left out, each candidate's with the question it
    /// answers.
    pub fn conversation(&self) -> Vec<(crate::protocol::Item, Option<String>)> {
        use crate::protocol::{Item, Role};
        let deleted: HashSet<&str> = self
            .records
            .iter()
            .filter(|r| r["kind"] == "item_deleted")
            .filter_map(|r| r["item_id"].as_str())
            .collect();
        self.records
            .iter()
            .filter(|r| r["kind"] == "item")
            .filter(|r| !deleted.contains(r["item_id"].as_str().unwrap_or("")))
            .map(|r| {
                let role = if r["role"] == "user" {
                    Role::User
                } else {
                    Role::Assistant
                };
                let question = (role == Role::User)
                    .then(|| r["question_id"].as_str().map(str::to_owned))
                    .flatten();
                let item = Item {
                    id: r["item_id"].as_str().unwrap_or("").to_owned(),
                    role,
                    text: r["text"].as_str().unwrap_or("").to_owned(),
                };
                (item, question)
            })
            .collect()
    }

    /// Whether the transcript stops suspended: resumable, not ended.
    pub fn is_suspended(&self) -> bool {
        self.records
            .iter()
            .rev()
            .find(|r| matches!(r["kind"].as_str(), Some("end" | "suspended" | "resumed")))
            .is_some_and(|r| r["kind"] == "suspended")
    }
}

/// Reads a journal file. A partial last line is ignored (and reported in
/// `torn_tail`); a corrupt line anywhere else is an error naming the line.
pub fn read(path: &Path) -> std::io::Result<Transcript> {
    let bytes = std::fs::read(path)?;
    parse(&bytes).map_err(|m| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{}: {m}", path.display()),
        )
    })
}

pub fn parse(bytes: &[u8]) -> Result<Transcript, String> {
    let mut records = Vec::new();
    let mut torn_tail = false;
    let mut lines = bytes.split(|&b| b == b'\n').enumerate().peekable();
    while let Some((n, line)) = lines.next() {
        let is_last = lines.peek().is_none();
        if is_last {
            // Text after the final newline is a write the crash cut short.
            torn_tail = !line.is_empty();
            break;
        }
        if line.is_empty() {
            continue;
        }
        match serde_json::from_slice::<Value>(line) {
            Ok(v) if v.is_object() => records.push(v),
            _ => return Err(format!("line {} is not a JSON object", n + 1)),
        }
    }
    Ok(Transcript { records, torn_tail })
}

/// fdatasync, timed for the `interviewd_journal_sync_seconds` histogram.
fn timed_sync(file: &File) -> std::io::Result<()> {
    let t = std::time::Instant::now();
    let synced = file.sync_data();
    crate::metrics::METRICS
        .journal_sync_seconds
        .observe(t.elapsed());
    synced
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn torn_last_line_is_ignored() {
        let t = parse(b"{\"kind\":\"header\"}\n{\"kind\":\"item\",\"te").unwrap();
        assert_eq!(t.records.len(), 1);
        assert!(t.torn_tail);
        let t = parse(b"{\"kind\":\"header\"}\n").unwrap();
        assert!(!t.torn_tail);
    }

    #[test]
    fn corruption_before_the_end_is_an_error() {
        let e = parse(b"{\"kind\":\"header\"}\nxx\n{\"kind\":\"end\"}\n").unwrap_err();
        assert!(e.contains("line 2"), "{e}");
    }
}
