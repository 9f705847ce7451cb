//! Rate-limited logging for every line an outsider can trigger.
//!
//! A refused connection, a slow handshake or a full disk can happen
//! thousands of times a second when someone wants it to, and an unbounded
//! log is a disk an attacker can fill. Such lines go through
//! [`log_limited!`](crate::log_limited) with a *kind*: the first line of a
//! kind in each [`INTERVAL`] is logged, the others are counted, and the
//! count is logged as one summary line, either with the next line of that
//! kind or by [`flush`], which the central loop calls when
//! [`next_flush`] says so.
//!
//! The state is behind a mutex rather than in a thread-local: the journal
//! writer thread logs disk errors of the same kinds.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// One line per kind per this long: often enough that an operator watching
/// the log sees an attack as it happens, rarely enough that an attack adds
/// a few hundred lines a day at most.
pub const INTERVAL: Duration = Duration::from_secs(10);

struct Slot {
    /// When the last line of this kind was logged.
    logged_at: Instant,
    /// Lines not logged since then.
    suppressed: u64,
    level: log::Level,
}

static SLOTS: Mutex<Option<HashMap<&'static str, Slot>>> = Mutex::new(None);

fn with_slots<T>(f: impl FnOnce(&mut HashMap<&'static str, Slot>) -> T) -> T {
    let mut guard = SLOTS.lock().unwrap_or_else(|e| e.into_inner());
    f(guard.get_or_insert_with(HashMap::new))
}

/// Whether a line of `kind` may be logged now; if so, how many lines of that
/// kind were held back since the last one (to say so in this one).
pub fn allow(kind: &'static str, level: log::Level) -> Option<u64> {
    allow_at(kind, level, Instant::now())
}

fn allow_at(kind: &'static str, level: log::Level, now: Instant) -> Option<u64> {
    with_slots(|slots| match slots.get_mut(kind) {
        Some(slot) if now.duration_since(slot.logged_at) < INTERVAL => {
            slot.suppressed += 1;
            None
        }
        Some(slot) => {
            let held = std::mem::take(&mut slot.suppressed);
            slot.logged_at = now;
            Some(held)
        }
        None => {
            slots.insert(
                kind,
                Slot {
                    logged_at: now,
                    suppressed: 0,
                    level,
                },
            );
            Some(0)
        }
    })
}

/// When [`flush`] next has a summary to log, if ever.
pub fn next_flush() -> Option<Instant> {
    with_slots(|slots| {
        slots
            .values()
            .filter(|s| s.suppressed > 0)
            .map(|s| s.logged_at + INTERVAL)
            .min()
    })
}

/// Logs a summary for every kind whose interval has passed with lines held
/// back, and forgets kinds that have been quiet for a whole interval.
pub fn flush() {
    let now = Instant::now();
    let mut due = Vec::new();
    with_slots(|slots| {
        slots.retain(|kind, slot| {
            if now.duration_since(slot.logged_at) < INTERVAL {
                return true;
            }
            if slot.suppressed > 0 {
                due.push((*kind, slot.level, std::mem::take(&mut slot.suppressed)));
                slot.logged_at = now;
                return true;
            }
            false
        });
    });
    // Logged outside the lock: the logger may block on a full stderr pipe.
    for (kind, level, count) in due {
        log::log!(
            level,
            "{count} more `{kind}` line(s) in the last {} s were not logged",
            INTERVAL.as_secs()
        );
    }
}

/// Logs like `log::log!`, at most once per [`INTERVAL`] for `kind`; lines
/// held back are counted in the next one.
#[macro_export]
macro_rules! log_limited {
    ($level:expr, $kind:expr, $($arg:tt)+) => {
        if log::log_enabled!($level) {
            match $crate::ratelog::allow($kind, $level) {
                Some(0) => log::log!($level, $($arg)+),
                Some(held) => log::log!(
                    $level,
                    "{} ({held} more `{}` line(s) in the last {} s were not logged)",
                    format_args!($($arg)+),
                    $kind,
                    $crate::ratelog::INTERVAL.as_secs()
                ),
                None => {}
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_interval_and_the_rest_counted() {
        let t0 = Instant::now();
        let level = log::Level::Warn;
        assert_eq!(allow_at("test-kind", level, t0), Some(0));
        for i in 1..100 {
            assert_eq!(
                allow_at("test-kind", level, t0 + Duration::from_millis(i)),
                None
            );
        }
        assert_eq!(allow_at("other-kind", level, t0), Some(0));
        assert_eq!(allow_at("test-kind", level, t0 + INTERVAL), Some(99));
        assert_eq!(
            allow_at("test-kind", level, t0 + INTERVAL + Duration::from_secs(1)),
            None
        );
    }
}
