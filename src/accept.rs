//! What the loop does when accept() fails for lack of resources (EMFILE,
//! ENFILE, ENOMEM, ENOBUFS): pause accepting briefly instead of spinning,
//! keep serving the live sessions, and say so in the log without flooding
//! it.
//!
//! A daemon at its descriptor limit flaps: a session ends, a connection
//! from the backlog takes the freed descriptors, and the next accept()
//! fails again (Linux reserves the descriptor before it looks at the
//! backlog, so that happens even with nobody waiting). Each flap is an
//! episode; the first one in [`WARN_EVERY`] is a warning, the others are
//! debug lines, counted in the next warning.

use std::io::ErrorKind;
use std::time::{Duration, Instant};

/// How long accepting pauses after a failure: long enough not to spin on a
/// full fd table, short enough that a freed descriptor is used quickly.
pub const BACKOFF: Duration = Duration::from_millis(100);

/// At most one warning per this long: an operator needs to know the limit
/// is being hit, not every time it is.
pub const WARN_EVERY: Duration = Duration::from_secs(60);

/// accept() errors that mean "out of descriptors or memory": retrying at
/// once would spin, so the loop backs off.
pub fn is_resource_exhaustion(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE) | Some(libc::ENFILE) | Some(libc::ENOMEM) | Some(libc::ENOBUFS)
    ) || e.kind() == ErrorKind::OutOfMemory
}

/// Accept back-off state, owned by the loop.
#[derive(Debug, Default)]
pub struct Backoff {
    /// While set, the loop waits for this instant instead of accepting.
    paused_until: Option<Instant>,
    /// Failed accepts in the current episode; 0 when accepting normally.
    failures: u64,
    /// Whether the current episode was logged as a warning (so its end is
    /// logged at info level too).
    warned: bool,
    /// When the last warning was logged.
    last_warning: Option<Instant>,
    /// Episodes since the last warning that were not logged as warnings.
    quiet_episodes: u64,
}

/// How a failure is to be logged.
#[derive(Debug, PartialEq, Eq)]
pub enum Report {
    /// A new episode, worth a warning; `quiet_episodes` earlier ones were
    /// not warned about.
    Warn { quiet_episodes: u64 },
    /// A new episode within [`WARN_EVERY`] of the last warning.
    QuietEpisode,
    /// Another failure in the current episode.
    Repeat,
}

impl Backoff {
    /// The instant accepting resumes, when paused.
    pub fn paused_until(&self) -> Option<Instant> {
        self.paused_until
    }

    /// The pause is over: try accept() again.
    pub fn resume(&mut self) {
        self.paused_until = None;
    }

    /// Records a resource-exhaustion failure at `now`, pauses accepting,
    /// and says how to log it.
    pub fn failed(&mut self, now: Instant) -> Report {
        self.paused_until = Some(now + BACKOFF);
        self.failures += 1;
        if self.failures > 1 {
            return Report::Repeat;
        }
        let due = self
            .last_warning
            .is_none_or(|last| now.duration_since(last) >= WARN_EVERY);
        if due {
            self.warned = true;
            self.last_warning = Some(now);
            Report::Warn {
                quiet_episodes: std::mem::take(&mut self.quiet_episodes),
            }
        } else {
            self.warned = false;
            self.quiet_episodes += 1;
            Report::QuietEpisode
        }
    }

    /// accept() worked. Returns the episode that just ended, if any: how
    /// many attempts failed and whether it was warned about.
    pub fn succeeded(&mut self) -> Option<(u64, bool)> {
        if self.failures == 0 {
            return None;
        }
        let ended = (self.failures, self.warned);
        self.failures = 0;
        self.warned = false;
        Some(ended)
    }

    /// Logs a failure the way [`Backoff::failed`] decided.
    pub fn log_failure(&mut self, e: &std::io::Error, now: Instant) {
        match self.failed(now) {
            Report::Warn { quiet_episodes } => {
                let earlier = if quiet_episodes > 0 {
                    format!(
                        " (it happened {quiet_episodes} more time(s) since the last warning, \
                         logged at debug level)"
                    )
                } else {
                    String::new()
                };
                log::warn!(
                    "accept failed: {e}; retrying every {} ms while live sessions carry on{earlier}",
                    BACKOFF.as_millis()
                );
            }
            Report::QuietEpisode => log::debug!(
                "accept: {e} again, within {} s of the last warning; retrying every {} ms",
                WARN_EVERY.as_secs(),
                BACKOFF.as_millis()
            ),
            Report::Repeat => {}
        }
    }

    /// Logs the end of an episode, if one just ended.
    pub fn log_success(&mut self) {
        match self.succeeded() {
            Some((failures, true)) => {
                log::info!("accepting again after {failures} failed attempt(s)")
            }
            Some((failures, false)) => {
                log::debug!("accepting again after {failures} failed attempt(s)")
            }
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_warning_per_window_however_often_the_limit_is_hit() {
        let mut b = Backoff::default();
        let t0 = Instant::now();
        assert_eq!(b.failed(t0), Report::Warn { quiet_episodes: 0 });
        assert_eq!(b.failed(t0 + BACKOFF), Report::Repeat);
        assert_eq!(b.paused_until(), Some(t0 + BACKOFF * 2));
        assert_eq!(b.succeeded(), Some((2, true)));
        assert_eq!(b.succeeded(), None);

        // Flapping within the window: quiet, and counted.
        assert_eq!(b.failed(t0 + Duration::from_secs(1)), Report::QuietEpisode);
        assert_eq!(b.succeeded(), Some((1, false)));
        assert_eq!(b.failed(t0 + Duration::from_secs(2)), Report::QuietEpisode);
        assert_eq!(b.succeeded(), Some((1, false)));

        // After the window, a warning that counts the quiet ones.
        assert_eq!(
            b.failed(t0 + WARN_EVERY),
            Report::Warn { quiet_episodes: 2 }
        );
        b.resume();
        assert_eq!(b.paused_until(), None);
    }
}
