//! Exit statuses, in one place. docs/operations.md documents them.

/// Clean run, or clean shutdown: every session closed, every thread joined.
pub const OK: i32 = 0;
/// The daemon could not start or failed while running (bind error, state
/// directory not writable), or `check-config` found the file invalid.
pub const FAILURE: i32 = 1;
/// Bad command line (clap's own status for usage errors).
pub const USAGE: i32 = 2;
/// Shutdown finished, but not everything within `shutdown.deadline`: some
/// thread or child process had to be abandoned (named in the log).
pub const SHUTDOWN_INCOMPLETE: i32 = 3;
/// A second SIGINT/SIGTERM arrived during shutdown and the daemon exited at
/// once without waiting.
pub const FORCED: i32 = 4;
