//! systemd integration: service notifications (`sd_notify`) and socket
//! activation (`LISTEN_FDS`). The `sd-notify` crate reads the environment
//! and formats the messages; the datagram is sent here, non-blocking,
//! because the crate's send blocks when the receiver's queue is full, and
//! these are sent from the central loop, which must never block: a
//! message that does not fit at once is dropped (the next STATUS or
//! WATCHDOG replaces it). Without `NOTIFY_SOCKET` every notification is a
//! no-op, and without `LISTEN_FDS` the daemon binds `server.listen` itself.
//!
//! What the service manager is told, and when:
//!
//! | message | when |
//! |---|---|
//! | `READY=1` | the listener is bound and the journal directory is writable |
//! | `STATUS=...` | sessions by phase, at most once a second, when it changes |
//! | `WATCHDOG=1` | from the central loop, at half of `WATCHDOG_USEC`, so a stuck loop is caught |
//! | `RELOADING=1`, `MONOTONIC_USEC=` | a SIGHUP reload begins |
//! | `READY=1` | the reload is done (taken or refused) |
//! | `STOPPING=1` | the shutdown sequence begins |

use std::fmt::Write;
use std::os::fd::{FromRawFd, RawFd};
use std::os::unix::net::{SocketAddr as UnixSocketAddr, UnixDatagram};
use std::time::{Duration, Instant};

use sd_notify::NotifyState;

/// STATUS= is sent at most this often: systemd keeps only the last one,
/// and a busy daemon changes its counts far more often than anyone reads
/// `systemctl status`.
pub const STATUS_INTERVAL: Duration = Duration::from_secs(1);

/// The notifications this process sends, and when the next ones are due;
/// built once at start, owned by the central loop.
#[derive(Debug)]
pub struct Notifier {
    /// Where `NOTIFY_SOCKET` points, when it is set: someone listens.
    socket: Option<UnixSocketAddr>,
    /// How often to send WATCHDOG=1 (half of `WATCHDOG_USEC`), when the
    /// unit has `WatchdogSec=`.
    watchdog_every: Option<Duration>,
    next_watchdog: Option<Instant>,
    next_status: Option<Instant>,
    /// The last STATUS= text sent, so that an unchanged one is not resent.
    last_status: String,
}

impl Notifier {
    /// Reads the environment systemd gave the process.
    pub fn from_env() -> Notifier {
        let socket = std::env::var_os("NOTIFY_SOCKET").and_then(|path| {
            let address = socket_address(&path);
            if let Err(e) = &address {
                log::warn!("NOTIFY_SOCKET={path:?} is not usable: {e}; systemd will not hear from the daemon");
            }
            address.ok()
        });
        let watchdog_every = sd_notify::watchdog_enabled()
            .filter(|d| !d.is_zero())
            .map(|d| d / 2);
        let now = Instant::now();
        Notifier {
            next_watchdog: watchdog_every.map(|_| now),
            next_status: socket.as_ref().map(|_| now + STATUS_INTERVAL),
            socket,
            watchdog_every,
            last_status: String::new(),
        }
    }

    /// When the loop next owes the service manager something (a watchdog
    /// ping, a status update), if ever.
    pub fn next_due(&self) -> Option<Instant> {
        match (self.next_watchdog, self.next_status) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Sends what is due at `now`: WATCHDOG=1, and `status()` if it changed.
    pub fn on_due(&mut self, now: Instant, status: impl FnOnce() -> String) {
        if let (Some(due), Some(every)) = (self.next_watchdog, self.watchdog_every) {
            if due <= now {
                self.send(&[NotifyState::Watchdog]);
                self.next_watchdog = Some(now + every);
            }
        }
        if self.next_status.is_some_and(|due| due <= now) {
            let status = status();
            if status != self.last_status {
                self.send(&[NotifyState::Status(&status)]);
                self.last_status = status;
            }
            self.next_status = Some(now + STATUS_INTERVAL);
        }
    }

    /// Sends one datagram without blocking; whether it went.
    fn send(&self, states: &[NotifyState]) -> bool {
        let Some(address) = &self.socket else {
            return false;
        };
        let mut message = String::new();
        for state in states {
            let _ = writeln!(message, "{state}");
        }
        let sent = UnixDatagram::unbound().and_then(|socket| {
            socket.set_nonblocking(true)?;
            socket.send_to_addr(message.as_bytes(), address)
        });
        match sent {
            Ok(_) => true,
            Err(e) => {
                crate::log_limited!(
                    log::Level::Warn,
                    "sd_notify",
                    "cannot notify the service manager ($NOTIFY_SOCKET): {e}; message dropped"
                );
                false
            }
        }
    }

    pub fn ready(&mut self, status: &str) {
        if self.send(&[NotifyState::Ready, NotifyState::Status(status)]) {
            log::debug!("sd_notify: READY=1 ({status})");
        }
        self.last_status = status.to_owned();
    }

    /// RELOADING=1 with the time it began, as systemd 253 and later require.
    pub fn reloading(&self) {
        let Ok(now) = NotifyState::monotonic_usec_now() else {
            self.send(&[NotifyState::Reloading]);
            return;
        };
        self.send(&[
            NotifyState::Reloading,
            now,
            NotifyState::Status("reloading the configuration"),
        ]);
    }

    pub fn stopping(&mut self, status: &str) {
        self.send(&[NotifyState::Stopping, NotifyState::Status(status)]);
        self.last_status = status.to_owned();
    }
}

/// `NOTIFY_SOCKET`: a path, or `@name` for the abstract namespace.
fn socket_address(value: &std::ffi::OsStr) -> std::io::Result<UnixSocketAddr> {
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::ffi::OsStrExt;
    match value.as_bytes() {
        [b'@', name @ ..] => UnixSocketAddr::from_abstract_name(name),
        [b'/', ..] => UnixSocketAddr::from_pathname(value),
        _ => Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "neither an absolute path nor @abstract",
        )),
    }
}

/// A listening socket passed by systemd (`interviewd.socket`), if any.
/// `LISTEN_FDS`/`LISTEN_PID` are removed from the environment, so that
/// assessment processes do not believe the socket is theirs.
///
/// Call before any thread is started: it changes the environment.
pub fn activated_listener() -> Result<Option<std::net::TcpListener>, String> {
    // SAFETY: called from `serve` before the signal thread, the journal
    // thread or any other thread exists, so nothing reads the environment
    // concurrently.
    let fds: Vec<RawFd> = unsafe { sd_notify::listen_fds_and_unset_env() }
        .map_err(|e| format!("socket activation: {e}"))?
        .collect();
    // SAFETY: as above; the names go with the descriptors.
    unsafe { std::env::remove_var("LISTEN_FDNAMES") };
    let Some(&fd) = fds.first() else {
        return Ok(None);
    };
    if fds.len() > 1 {
        return Err(format!(
            "socket activation: {} sockets were passed; interviewd serves one (ListenStream= once in interviewd.socket)",
            fds.len()
        ));
    }
    let mut listening: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt on a descriptor number with a correctly sized
    // output buffer; a descriptor that is not a socket fails with ENOTSOCK.
    let r = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_ACCEPTCONN,
            (&mut listening as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if r != 0 || listening == 0 {
        return Err(
            "socket activation: the passed descriptor is not a listening stream socket (interviewd.socket needs ListenStream=, Accept=no)"
                .into(),
        );
    }
    // SAFETY: systemd passed us this descriptor (LISTEN_PID is ours) and
    // nothing else in the process owns it.
    let listener = unsafe { std::net::TcpListener::from_raw_fd(fd) };
    match listener.local_addr() {
        Ok(_) => Ok(Some(listener)),
        Err(e) => Err(format!(
            "socket activation: the passed socket is not a TCP socket: {e}"
        )),
    }
}
