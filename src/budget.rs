//! Cooperative fairness: how much work a task may do before it gives the
//! executor back.
//!
//! The executor is single-threaded and cooperative. A socket read that finds
//! data ready returns at once, without ever yielding; a client that writes
//! as fast as TCP allows would keep its session's future ready forever, and
//! nothing else (other sessions, the listener, timers, the signal channel)
//! would run. Every loop that reads a socket therefore spends a [`Budget`]
//! and yields when it is used up: the task goes to the back of the
//! executor's queue and everything else that is ready runs first. The
//! executor itself polls the reactor (I/O readiness and timers) at least
//! every 200 task runs.
//!
//! With [`FRAMES`] frames or [`BYTES`] bytes per turn, one turn of a
//! flooding session costs tens of microseconds, so a thousand busy sessions
//! delay any other by a few milliseconds per round.

/// Frames a task may handle per turn.
pub const FRAMES: u32 = 16;

/// Bytes a task may handle per turn: a turn with one large frame yields
/// after it.
pub const BYTES: usize = 64 * 1024;

#[derive(Debug, Default)]
pub struct Budget {
    frames: u32,
    bytes: usize,
}

impl Budget {
    /// Counts one frame of `bytes`; yields to the executor when the turn's
    /// budget is spent.
    pub async fn spend(&mut self, bytes: usize) {
        self.frames += 1;
        self.bytes += bytes;
        if self.frames >= FRAMES || self.bytes >= BYTES {
            self.frames = 0;
            self.bytes = 0;
            smol::future::yield_now().await;
        }
    }
}
