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
    inner: Arc<Mutex<Groups>>,
}

#[derive(Default)]
struct Groups {
    live: BTreeSet<libc::pid_t>,
    /// Set when shutdown begins: no new child may start after it.
    closed: bool,
}

impl ChildGroups {
    fn groups(&self) -> MutexGuard<'_, Groups> {
        // A panic while holding this lock cannot leave the set inconsistent.
        self.inner
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    /// Starts a child and registers its group in one step, so that shutdown
    /// cannot signal the groups between the two and miss this one. Refused
    /// once shutdown has begun. The lock is held across fork/exec, about a
    /// millisecond; nothing waits on it for long.
    pub fn spawn(
        &self,
        command: &mut std::process::Command,
    ) -> std::io::Result<std::process::Child> {
        let mut groups = self.groups();
        if groups.closed {
            return Err(std::io::Error::other("the daemon is shutting down"));
        }
        let child = command.spawn()?;
        groups.live.insert(child.id() as libc::pid_t);
        Ok(child)
    }

    pub fn remove(&self, pgid: libc::pid_t) {
        self.groups().live.remove(&pgid);
    }

    pub fn len(&self) -> usize {
        self.groups().live.len()
    }

    /// Refuses new children from now on, and signals the live groups.
    pub fn close_and_signal(&self, signal: libc::c_int) -> usize {
        let mut groups = self.groups();
        groups.closed = true;
        groups
            .live
            .iter()
            .filter(|&&pgid| kill_group(pgid, signal))
            .count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Sends `signal` to every registered group; returns how many were signalled.
    pub fn signal_all(&self, signal: libc::c_int) -> usize {
        let groups = self.groups();
        groups
            .live
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
