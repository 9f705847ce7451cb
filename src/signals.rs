//! The signal thread: signal-hook turns SIGINT, SIGTERM and SIGHUP into
//! messages on a channel that the central loop selects over.
//!
//! The second SIGINT/SIGTERM is handled here, not in the loop: shutdown may be
//! waiting on a stuck thread, and the operator's second Ctrl+C must work even
//! then. This thread kills the assessment process groups and exits at once.

use std::time::Instant;

use async_channel::{Receiver, Sender};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR2};
use signal_hook::iterator::{Handle, Signals};

use crate::children::ChildGroups;
use crate::exit;
use crate::workers::{WorkerKind, Workers};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// SIGINT or SIGTERM, and when it arrived: begin the shutdown sequence.
    /// The arrival time is logged here, on the signal thread, so that the
    /// log shows it even if the loop is slow to hear it.
    Terminate(&'static str, Instant),
    /// SIGHUP: re-read the configuration.
    Reload,
    /// SIGUSR2, only with `serve --debug-stall-signal`: block the central
    /// loop, to test that systemd's watchdog catches a stuck loop.
    Stall,
}

/// Owns the signal thread; `close` ends it.
pub struct SignalThread {
    handle: Handle,
}

impl SignalThread {
    /// Ends the thread; call it last, since after it a second signal no
    /// longer forces an exit.
    pub fn close(&self) {
        self.handle.close();
    }
}

pub fn start(
    workers: &mut Workers,
    children: ChildGroups,
    debug_stall: bool,
) -> std::io::Result<(Receiver<Signal>, SignalThread)> {
    let mut signals = Signals::new([SIGINT, SIGTERM, SIGHUP])?;
    if debug_stall {
        signals.add_signal(SIGUSR2)?;
    }
    let handle = signals.handle();
    let (tx, rx) = async_channel::unbounded();
    workers.spawn("signals".into(), WorkerKind::Signals, move || {
        forward(&mut signals, &tx, &children);
    })?;
    Ok((rx, SignalThread { handle }))
}

fn forward(signals: &mut Signals, tx: &Sender<Signal>, children: &ChildGroups) {
    let mut terminating = false;
    for signal in signals.forever() {
        let name = match signal {
            SIGINT => "SIGINT",
            SIGTERM => "SIGTERM",
            SIGUSR2 => {
                let _ = tx.try_send(Signal::Stall);
                continue;
            }
            _ => {
                let _ = tx.try_send(Signal::Reload);
                continue;
            }
        };
        if terminating {
            force_exit(name, children);
        }
        terminating = true;
        log::info!("{name} received");
        let _ = tx.try_send(Signal::Terminate(name, Instant::now()));
    }
}

fn force_exit(name: &str, children: &ChildGroups) -> ! {
    let killed = children.signal_all(libc::SIGKILL);
    log::error!(
        "second {name} during shutdown: exiting now (status {}), {killed} assessment process group(s) killed",
        exit::FORCED
    );
    // _exit, not exit: other threads are still running and must not race
    // with atexit handlers. Nothing acknowledged is lost: every acknowledged
    // answer was fsynced before it was acknowledged.
    // SAFETY: _exit has no preconditions.
    unsafe { libc::_exit(exit::FORCED) }
}
