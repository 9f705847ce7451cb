//! Named OS threads for blocking work, each owned by this registry.
//!
//! Blocking work never runs on the executor thread: the journal writer (disk
//! writes and fdatasync), assessment jobs (scoring, and the waits on child
//! processes) and the signal thread each run on a named thread registered
//! here. A thread tells the registry it has finished through a channel (from
//! a drop guard, so a panicking thread reports too); the central loop reaps
//! finished threads as they report, and at shutdown waits for the rest with
//! a deadline, naming any that did not finish.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::thread::JoinHandle;
use std::time::Instant;

use smol::future::FutureExt;
use smol::Timer;

/// What a thread does; shutdown waits for the kinds in a fixed order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkerKind {
    /// The journal writer: ends when the journal channel is closed and drained.
    Journal,
    /// An assessment job: ends when scoring is done or its child process exits.
    Assessment,
    /// The signal-hook thread: ends when its handle is closed, last of all.
    Signals,
}

struct Worker {
    name: String,
    kind: WorkerKind,
    handle: JoinHandle<()>,
}

pub struct Workers {
    threads: BTreeMap<u64, Worker>,
    next_id: u64,
    done_tx: async_channel::Sender<u64>,
    done_rx: async_channel::Receiver<u64>,
}

/// Sends the thread's id when dropped, i.e. when the thread's closure
/// returns or unwinds.
struct DoneGuard {
    id: u64,
    done: async_channel::Sender<u64>,
}

impl Drop for DoneGuard {
    fn drop(&mut self) {
        let _ = self.done.try_send(self.id);
    }
}

impl Default for Workers {
    fn default() -> Self {
        let (done_tx, done_rx) = async_channel::unbounded();
        Workers {
            threads: BTreeMap::new(),
            next_id: 0,
            done_tx,
            done_rx,
        }
    }
}

impl Workers {
    /// Starts a named thread owned by the registry.
    pub fn spawn(
        &mut self,
        name: String,
        kind: WorkerKind,
        work: impl FnOnce() + Send + 'static,
    ) -> std::io::Result<()> {
        let id = self.next_id;
        self.next_id += 1;
        let guard = DoneGuard {
            id,
            done: self.done_tx.clone(),
        };
        let handle = std::thread::Builder::new()
            .name(name.clone())
            .spawn(move || {
                let _guard = guard;
                work();
            })?;
        self.threads.insert(id, Worker { name, kind, handle });
        Ok(())
    }

    /// The channel on which finished threads report their id.
    pub fn done_events(&self) -> async_channel::Receiver<u64> {
        self.done_rx.clone()
    }

    /// Joins a thread that reported it finished (instant: it has returned).
    pub fn reap(&mut self, id: u64) {
        if let Some(worker) = self.threads.remove(&id) {
            if worker.handle.join().is_err() {
                log::error!("thread {} panicked", worker.name);
            }
        }
    }

    pub fn count(&self, kind: WorkerKind) -> usize {
        self.threads.values().filter(|w| w.kind == kind).count()
    }

    pub fn names(&self, kind: WorkerKind) -> Vec<String> {
        self.threads
            .values()
            .filter(|w| w.kind == kind)
            .map(|w| w.name.clone())
            .collect()
    }
}

/// Waits until no thread of `kind` is left or `deadline` passes; returns the
/// names of the threads still running. Never holds the borrow across an await.
pub async fn wait_for(
    workers: &RefCell<Workers>,
    kind: WorkerKind,
    deadline: Instant,
) -> Vec<String> {
    let done = workers.borrow().done_events();
    loop {
        if workers.borrow().count(kind) == 0 {
            return Vec::new();
        }
        let finished = async { done.recv().await.ok() }
            .or(async {
                Timer::at(deadline).await;
                None
            })
            .await;
        match finished {
            Some(id) => workers.borrow_mut().reap(id),
            None => return workers.borrow().names(kind),
        }
    }
}
