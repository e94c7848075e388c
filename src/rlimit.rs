//! The open-file limit: raised at startup to what the system allows, and
//! shared so that no part of weir (the API above all) can take the
//! descriptors the sources need for the files they read.

use std::io;

/// The soft and hard `RLIMIT_NOFILE` (`None`: unlimited).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NoFile {
    pub soft: Option<u64>,
    pub hard: Option<u64>,
}

// `rlim_t` is not `u64` on every target.
#[allow(clippy::unnecessary_cast)]
fn limit(v: libc::rlim_t) -> Option<u64> {
    (v != libc::RLIM_INFINITY).then_some(v as u64)
}

/// The current open-file limit.
pub fn nofile() -> io::Result<NoFile> {
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(NoFile {
        soft: limit(rl.rlim_cur),
        hard: limit(rl.rlim_max),
    })
}

/// Raises the soft open-file limit to the hard one (as Go programs and
/// systemd's services do; the default soft limit of 1024 is for `select()`,
/// which weir does not use). Returns the limit now in force.
#[allow(clippy::unnecessary_cast)] // `rlim_t` is not `u64` on every target.
pub fn raise_nofile() -> io::Result<NoFile> {
    let now = nofile()?;
    if now.soft == now.hard {
        return Ok(now);
    }
    let rl = libc::rlimit {
        rlim_cur: now.hard.map_or(libc::RLIM_INFINITY, |h| h as libc::rlim_t),
        rlim_max: now.hard.map_or(libc::RLIM_INFINITY, |h| h as libc::rlim_t),
    };
    // SAFETY: setrlimit only reads the struct.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &rl) } != 0 {
        return Err(io::Error::last_os_error());
    }
    nofile()
}

/// How many API connections may be open at once: the configured number,
/// but never more than a quarter of the open-file limit, so that at least
/// three quarters stay for the sources' files, the sinks' connections and
/// the checkpoints.
pub fn api_budget(max_connections: usize, soft_limit: Option<u64>) -> usize {
    match soft_limit {
        Some(l) => max_connections.min(((l / 4) as usize).max(1)),
        None => max_connections,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_api_gets_at_most_a_quarter_of_the_descriptors() {
        assert_eq!(api_budget(256, Some(1024)), 256);
        assert_eq!(api_budget(256, Some(512)), 128);
        assert_eq!(api_budget(10_000, Some(20_000)), 5_000);
        assert_eq!(api_budget(256, Some(2)), 1);
        assert_eq!(api_budget(256, None), 256);
    }

    #[test]
    fn raising_reaches_the_hard_limit() {
        let after = raise_nofile().unwrap();
        assert_eq!(after.soft, after.hard);
        assert_eq!(nofile().unwrap(), after);
    }
}
