//! The registry of assessment child process groups.
//!
//! Each `command` assessor runs in its own process group so that everything
//! it starts can be signalled at once. The registry is shared by the job
//! threads (which add and remove their group), the shutdown sequence (SIGTERM,
//! then SIGKILL) and the signal thread (SIGKILL before a forced exit), hence
//! the one `Mutex` in the daemon: it guards a set of integers, never the
//! session table, and is never held across a blocking call.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, MutexGuard};

#[derive(Clone, Default)]
pub struct ChildGroups {
    inner: Arc<Mutex<BTreeSet<libc::pid_t>>>,
}

impl ChildGroups {
    fn groups(&self) -> MutexGuard<'_, BTreeSet<libc::pid_t>> {
        // A panic while holding this lock cannot leave the set inconsistent.
        self.inner
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    pub fn add(&self, pgid: libc::pid_t) {
        self.groups().insert(pgid);
    }

    pub fn remove(&self, pgid: libc::pid_t) {
        self.groups().remove(&pgid);
    }

    pub fn len(&self) -> usize {
        self.groups().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Sends `signal` to every registered group; returns how many were signalled.
    pub fn signal_all(&self, signal: libc::c_int) -> usize {
        let groups = self.groups();
        groups
            .iter()
            .filter(|&&pgid| kill_group(pgid, signal))
            .count()
    }
}

/// Signals a whole process group. False when the group no longer exists.
pub fn kill_group(pgid: libc::pid_t, signal: libc::c_int) -> bool {
    if pgid <= 1 {
        return false; // never signal init or "every process"
    }
    // SAFETY: kill(2) has no memory-safety preconditions.
    unsafe { libc::kill(-pgid, signal) == 0 }
}
