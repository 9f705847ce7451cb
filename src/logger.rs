//! A small stderr logger.
//!
//! Under systemd (`JOURNAL_STREAM` set) lines carry a `<N>` priority prefix
//! and no timestamp, since journald adds its own; in a terminal they carry an
//! RFC 3339 timestamp. The level can change at run time (SIGHUP reload)
//! through `log::set_max_level`.

use std::io::Write;
use std::time::SystemTime;

use log::{Level, Log, Metadata, Record};

struct Logger {
    journald: bool,
}

static JOURNALD: Logger = Logger { journald: true };
static TERMINAL: Logger = Logger { journald: false };

/// Installs the logger; a second call is a no-op.
pub fn init(level: log::LevelFilter) {
    let logger = if std::env::var_os("JOURNAL_STREAM").is_some() {
        &JOURNALD
    } else {
        &TERMINAL
    };
    if log::set_logger(logger).is_ok() {
        log::set_max_level(level);
    }
}

impl Log for Logger {
    fn enabled(&self, metadata: &Metadata) -> bool {
        // Other crates' records (tungstenite's "Received close frame", …)
        // only from warnings up unless trace is asked for: their debug
        // lines are noise, and some repeat what a client sent.
        let ours = metadata.target().starts_with("interviewd");
        let ceiling = if ours || log::max_level() == log::LevelFilter::Trace {
            log::max_level()
        } else {
            log::LevelFilter::Warn.min(log::max_level())
        };
        metadata.level() <= ceiling
    }

    fn log(&self, record: &Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        // One write per line so that lines from the signal thread and the
        // main thread never interleave mid-line.
        let line = if self.journald {
            let prio = match record.level() {
                Level::Error => 3,
                Level::Warn => 4,
                Level::Info => 6,
                Level::Debug | Level::Trace => 7,
            };
            format!("<{prio}>{}\n", record.args())
        } else {
            format!(
                "{} {:5} {}\n",
                humantime::format_rfc3339_millis(SystemTime::now()),
                record.level(),
                record.args()
            )
        };
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }

    fn flush(&self) {}
}
