//! Startup recovery: transcripts that a crash left open.
//!
//! A daemon that was SIGKILLed, or a machine that lost power, leaves the
//! transcripts of its live sessions without an end line, and perhaps with a
//! torn last line (a write cut short; it was never acknowledged). At start,
//! before anything else is written, each torn line is cut and each such
//! transcript gets a `suspended` line (reason `error`): every transcript
//! then ends well-formed, and the interview can still be resumed
//! (`session::restore`) or, past its resume window, is ended.
//!
//! Only the tail of each file is read, so this costs about one open and one
//! small read per transcript.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::Path;

use serde_json::{json, Value};

use crate::ids;
use crate::journal::{now_rfc3339, EndReason};

/// Read size when looking backwards for the start of the last line.
const CHUNK: usize = 8 * 1024;

/// What recovery did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Recovered {
    /// Transcripts that had no end line and got one.
    pub closed: usize,
    /// Torn last lines cut off.
    pub torn: usize,
    /// Transcripts that could not be read or repaired (logged).
    pub failed: usize,
}

/// Closes every open transcript in `dir`.
pub fn recover(dir: &Path) -> Recovered {
    let mut done = Recovered::default();
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => {
            log::error!("recovery: cannot list {}: {e}", dir.display());
            return done;
        }
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let is_transcript = path.extension().is_some_and(|e| e == "jsonl")
            && path
                .file_stem()
                .and_then(|s| s.to_str())
                .is_some_and(ids::is_session_id);
        if !is_transcript {
            continue;
        }
        match recover_file(&path) {
            Ok((closed, torn)) => {
                done.closed += usize::from(closed);
                done.torn += usize::from(torn);
            }
            Err(e) => {
                log::error!("recovery: {}: {e}", path.display());
                done.failed += 1;
            }
        }
    }
    done
}

/// Returns (closed, torn) for one transcript.
fn recover_file(path: &Path) -> std::io::Result<(bool, bool)> {
    let file = OpenOptions::new().read(true).write(true).open(path)?;
    let mut len = file.metadata()?.len();
    if len == 0 {
        return Ok((false, false)); // the header never made it: nothing to close
    }
    let mut torn = false;
    if last_byte(&file, len)? != b'\n' {
        len = line_start(&file, len)?;
        file.set_len(len)?;
        torn = true;
    }
    let closed = if len == 0 {
        false
    } else {
        let start = line_start(&file, len - 1)?;
        let mut last = vec![0u8; (len - 1 - start) as usize];
        file.read_exact_at(&mut last, start)?;
        // A session the daemon stopped without suspending or ending (a
        // crash) is suspended now: it may be resumed (session::restore) or,
        // past its resume window, ended with this reason.
        let settled = serde_json::from_slice::<Value>(&last)
            .is_ok_and(|v| v["kind"] == "end" || v["kind"] == "suspended");
        if !settled {
            let record = json!({
                "kind": "suspended",
                "reason": EndReason::Error.as_str(),
                "detail": "the daemon stopped without closing this session",
                "at": now_rfc3339(),
            });
            let mut line = record.to_string();
            line.push('\n');
            file.write_all_at(line.as_bytes(), len)?;
        }
        !settled
    };
    if closed || torn {
        file.sync_data()?;
    }
    Ok((closed, torn))
}

fn last_byte(file: &File, len: u64) -> std::io::Result<u8> {
    let mut byte = [0u8; 1];
    file.read_exact_at(&mut byte, len - 1)?;
    Ok(byte[0])
}

/// The offset where the line holding byte `end - 1` starts: just after the
/// previous newline before `end`, or 0.
fn line_start(file: &File, end: u64) -> std::io::Result<u64> {
    let mut buf = vec![0u8; CHUNK];
    let mut pos = end;
    while pos > 0 {
        let n = CHUNK.min(pos as usize);
        let from = pos - n as u64;
        file.read_exact_at(&mut buf[..n], from)?;
        if let Some(i) = buf[..n].iter().rposition(|&b| b == b'\n') {
            return Ok(from + i as u64 + 1);
        }
        pos = from;
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn transcript(dir: &Path, body: &[u8]) -> std::path::PathBuf {
        let path = dir.join(format!("{}.jsonl", ids::session_id()));
        std::fs::write(&path, body).unwrap();
        path
    }

    #[test]
    fn closes_open_transcripts_and_cuts_torn_lines() {
        let dir = tempfile::tempdir().unwrap();
        let open = transcript(dir.path(), b"{\"kind\":\"header\"}\n{\"kind\":\"item\"}\n");
        let torn = transcript(dir.path(), b"{\"kind\":\"header\"}\n{\"kind\":\"it");
        let ended = transcript(
            dir.path(),
            b"{\"kind\":\"header\"}\n{\"kind\":\"end\",\"reason\":\"completed\"}\n",
        );
        let other = dir.path().join("notes.jsonl");
        std::fs::write(&other, b"{\"kind\":").unwrap();

        let done = recover(dir.path());
        assert_eq!(
            done,
            Recovered {
                closed: 2,
                torn: 1,
                failed: 0
            }
        );
        for path in [&open, &torn] {
            let t = crate::journal::read(path).unwrap();
            assert!(!t.torn_tail);
            assert_eq!(t.records.last().unwrap()["kind"], "suspended");
            assert_eq!(t.end_reason(), Some("error"));
        }
        assert_eq!(crate::journal::read(&torn).unwrap().records.len(), 2);
        assert_eq!(
            crate::journal::read(&ended).unwrap().end_reason(),
            Some("completed")
        );
        assert_eq!(
            std::fs::read(&other).unwrap(),
            b"{\"kind\":",
            "files that are not transcripts are left alone"
        );
        assert_eq!(
            recover(dir.path()),
            Recovered::default(),
            "recovery is idempotent"
        );
    }

    #[test]
    fn finds_the_last_line_across_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let long = format!(
            "{{\"kind\":\"item\",\"text\":\"{}\"}}\n",
            "x".repeat(3 * CHUNK)
        );
        let path = transcript(
            dir.path(),
            format!("{{\"kind\":\"header\"}}\n{long}{}", &long[..CHUNK + 5]).as_bytes(),
        );
        assert_eq!(
            recover(dir.path()),
            Recovered {
                closed: 1,
                torn: 1,
                failed: 0
            }
        );
        let t = crate::journal::read(&path).unwrap();
        assert_eq!(t.records.len(), 3);
        assert_eq!(t.records[1]["text"].as_str().unwrap().len(), 3 * CHUNK);
    }
}
