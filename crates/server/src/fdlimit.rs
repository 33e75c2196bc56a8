//! The open-file limit: every connection is a file descriptor, so the soft limit (often 1024)
//! is raised to the hard limit at start, and the figure logged. Two libc calls, written here
//! rather than with a crate: libc is already a dependency.

/// File descriptors kept for what is not a connection (the index, storage files, logs,
/// callbacks' sockets, the runtime's own).
pub const RESERVED: u64 = 128;

/// The open-file soft limit now, if the system tells.
pub fn current() -> Option<u64> {
    get().map(|(soft, _)| soft)
}

fn get() -> Option<(u64, u64)> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit into the struct it is given.
    let ok = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0;
    // rlim_t is u64 on 64-bit Linux but not on every target.
    #[allow(clippy::unnecessary_cast)]
    ok.then_some((limit.rlim_cur as u64, limit.rlim_max as u64))
}

/// Raises the open-file soft limit to the hard limit; returns (before, after). Logged by the
/// caller.
pub fn raise() -> Option<(u64, u64)> {
    let (soft, hard) = get()?;
    if soft >= hard {
        return Some((soft, soft));
    }
    let limit = libc::rlimit {
        rlim_cur: hard as libc::rlim_t,
        rlim_max: hard as libc::rlim_t,
    };
    // SAFETY: setrlimit reads one rlimit; raising the soft limit up to the hard one is always
    // allowed.
    let ok = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } == 0;
    Some((soft, if ok { hard } else { soft }))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_soft_limit_ends_at_the_hard_limit() {
        let (_, after) = super::raise().expect("getrlimit works on Linux");
        let (soft, hard) = super::get().unwrap();
        assert_eq!(soft, after);
        assert_eq!(soft, hard);
    }
}
