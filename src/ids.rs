//! Identifiers: unguessable session ids and per-session event/item ids.

use std::cell::Cell;

/// `sess_` followed by 128 random bits in lowercase hex: unguessable, and
/// safe as a file name on every filesystem.
pub fn session_id() -> String {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).expect("the OS random source is available");
    let mut id = String::with_capacity(37);
    id.push_str("sess_");
    for b in bytes {
        id.push_str(&format!("{b:02x}"));
    }
    id
}

/// True for strings `session_id` could have produced; used before a
/// client-supplied id is turned into a path.
pub fn is_session_id(s: &str) -> bool {
    s.len() == 37
        && s.starts_with("sess_")
        && s[5..]
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

/// Per-session counters for event, item and response ids. Ids only need to
/// be unique within a session; the session id already makes them global.
#[derive(Default)]
pub struct Counter {
    next: Cell<u64>,
}

impl Counter {
    /// Makes the next id greater than `n` (after a restore, so that new
    /// ids do not repeat the ones in the journal).
    pub fn skip_past(&self, n: u64) {
        if self.next.get() < n {
            self.next.set(n);
        }
    }

    pub fn next(&self, prefix: &str) -> String {
        let n = self.next.get() + 1;
        self.next.set(n);
        format!("{prefix}_{n:06}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_ids_are_distinct_and_recognised() {
        let a = session_id();
        let b = session_id();
        assert_ne!(a, b);
        assert!(is_session_id(&a));
        assert!(!is_session_id("sess_../../etc/passwd"));
    }
}
