//! Raising the open-file limit: each session holds a socket and, while it
//! runs, a journal file, so the usual soft limit of 1024 caps a daemon at a
//! few hundred sessions.

/// Raises the soft RLIMIT_NOFILE to the hard limit; returns (old, new).
pub fn raise_nofile() -> std::io::Result<(u64, u64)> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let old = lim.rlim_cur;
    if lim.rlim_cur < lim.rlim_max {
        lim.rlim_cur = lim.rlim_max;
        // SAFETY: setrlimit reads the struct we own.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok((old, lim.rlim_cur))
}

/// Descriptors the daemon may need at its limits: a socket and a transcript
/// per session, a socket per connection in its handshake, and a margin for
/// the listener, the journal directory, logs and assessment pipes.
pub fn descriptors_needed(limits: &crate::config::Limits) -> u64 {
    const MARGIN: u64 = 64;
    2 * limits.max_sessions as u64 + limits.max_handshakes as u64 + MARGIN
}

/// Warns when the open-file limit cannot hold what the limits allow:
/// sessions past it would fail with `transcript_unavailable`.
pub fn warn_if_short(limits: &crate::config::Limits, nofile: u64) {
    let needed = descriptors_needed(limits);
    if nofile < needed {
        log::warn!(
            "limits.max_sessions ({}) and limits.max_handshakes ({}) need about {needed} open files, \
             but the open-file limit is {nofile}: sessions past about {} will be refused; \
             raise the limit (LimitNOFILE= under systemd) or lower limits.max_sessions",
            limits.max_sessions,
            limits.max_handshakes,
            nofile.saturating_sub(limits.max_handshakes as u64 + 64) / 2
        );
    }
}

/// The soft open-file limit now.
pub fn nofile() -> Option<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    (unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0).then_some(lim.rlim_cur)
}
