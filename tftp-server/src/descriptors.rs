//! File descriptors: every transfer holds its socket, so a server with thousands of concurrent
//! transfers needs a higher limit than the usual 1,024, and must not admit more transfers than
//! its limit allows.
//!
//! A download of a local file holds no descriptor of its own: every transfer of a file reads
//! through one shared descriptor ([`crate::file::FileSource`]). An upload, or a handler's
//! reader that keeps a descriptor (a connection to an origin), holds a second one, opened when
//! the request is answered, before the transfer starts: where none is left, the request gets
//! "Server busy" then (`EMFILE` and `ENFILE` map to it), never a transfer cut half-way.

use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};

/// Descriptors kept aside for listeners, logs, the runtime and the handler's own needs.
const RESERVED: u64 = 128;

/// Raise the soft `RLIMIT_NOFILE` to the hard limit, as most servers (and Go's runtime) do;
/// with `raise_hard` and the privilege to do so (root, `CAP_SYS_RESOURCE`), first raise the
/// hard limit to the kernel's `fs.nr_open`. Returns the soft limit now in force.
pub fn raise_fd_limit(raise_hard: bool) -> u64 {
    let limit = getrlimit(Resource::Nofile);
    if raise_hard {
        let nr_open = std::fs::read_to_string("/proc/sys/fs/nr_open")
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .unwrap_or(1 << 20);
        let wanted = Rlimit {
            current: Some(nr_open),
            maximum: Some(nr_open),
        };
        if limit.maximum.is_some_and(|m| m < nr_open) && setrlimit(Resource::Nofile, wanted).is_ok()
        {
            return nr_open;
        }
    }
    if limit.current != limit.maximum {
        let raised = Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        };
        let _ = setrlimit(Resource::Nofile, raised);
    }
    getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX)
}

/// Whether `error` is the process or the system out of descriptors (`EMFILE`, `ENFILE`): a
/// passing shortage, answered "Server busy", not the file's or the request's fault.
pub(crate) fn exhausted(error: &std::io::Error) -> bool {
    use rustix::io::Errno;
    matches!(
        Errno::from_io_error(error),
        Some(Errno::MFILE | Errno::NFILE)
    )
}

/// How many concurrent transfers `fd_limit` descriptors allow (a socket each, after a
/// reserve).
pub fn session_budget(fd_limit: u64) -> usize {
    usize::try_from(fd_limit.saturating_sub(RESERVED))
        .unwrap_or(usize::MAX)
        .max(1)
}

/// Cap `max_sessions` to what the process's descriptor limit allows (after raising the soft
/// limit to the hard one), so that requests beyond it get "Server busy" up front rather than
/// a transfer failing half-way with an I/O error when a socket or file cannot be opened.
/// Returns the (possibly lowered) value.
pub fn fit_sessions(max_sessions: usize) -> usize {
    let budget = session_budget(raise_fd_limit(false));
    if max_sessions > budget {
        tracing::warn!(
            max_sessions,
            capped = budget,
            "too few file descriptors for the configured concurrent sessions; capping them \
             (raise the hard RLIMIT_NOFILE, e.g. LimitNOFILE= in the systemd unit)"
        );
        return budget;
    }
    max_sessions
}

/// The descriptors beyond one for each of `max_sessions` transfers (after the reserve): what
/// connected transfers may take for their second socket (see [`crate::connect`]).
pub fn spare_descriptors(max_sessions: usize) -> usize {
    session_budget(raise_fd_limit(false)).saturating_sub(max_sessions)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_is_a_descriptor_a_session_after_a_reserve() {
        assert_eq!(session_budget(20_000), 19_872);
        assert_eq!(session_budget(1_024), 896);
        assert_eq!(session_budget(10), 1);
        assert_eq!(fit_sessions(1), 1);
    }
}
