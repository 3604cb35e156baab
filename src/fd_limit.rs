//! The open-file limit (`RLIMIT_NOFILE)`: every TCP connection through the tunnel costs each
//! proxy one descriptor (proxy1 its client's, proxy2 its server connection), and an in-process
//! lab four per echo client (client, proxy1, proxy2, server). Distributions start processes
//! with a soft limit of 1024 and a hard limit far above it, so [`raise_to_hard`] lifts the soft
//! limit to the hard one at startup, as servers such as nginx and Go's runtime do. What still
//! runs out is reported with [`describe_io_error`]: the limit and how to raise it, never a
//! panic or a silent stall.

// Unsafe is allowed here, and only here: getrlimit/setrlimit are raw libc calls on a struct we
// own.
#![allow(unsafe_code)]

use std::io;

/// The process's soft and hard open-file limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FdLimit {
    /// What the kernel enforces now.
    pub soft: u64,
    /// How far an unprivileged process may raise `soft`.
    pub hard: u64,
}

/// The current limits, or `None` where the platform does not say.
pub fn current() -> Option<FdLimit> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one `rlimit` through a valid pointer and keeps nothing.
    let ok = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &raw mut limit) } == 0;
    ok.then_some(FdLimit {
        soft: limit.rlim_cur,
        hard: limit.rlim_max,
    })
}

/// Raises the soft limit to the hard limit; returns the limits now in force. Harmless when
/// they are already equal (or unlimited); a refusal leaves the limits as they were.
pub fn raise_to_hard() -> Option<FdLimit> {
    let before = current()?;
    if before.soft >= before.hard {
        return Some(before);
    }
    let wanted = libc::rlimit {
        rlim_cur: before.hard,
        rlim_max: before.hard,
    };
    // SAFETY: setrlimit reads one valid `rlimit` and keeps nothing.
    let raised = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raw const wanted) } == 0;
    if raised { current() } else { Some(before) }
}

/// Whether an error says that the process (EMFILE) or the whole system (ENFILE) has no
/// descriptor left.
pub fn is_exhausted(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
}

/// An I/O error as a log line: the error itself and, when descriptors ran out, the limit
/// and how to raise it.
pub fn describe_io_error(e: &io::Error) -> String {
    if !is_exhausted(e) {
        return e.to_string();
    }
    match (e.raw_os_error(), current()) {
        (Some(libc::ENFILE), _) => format!(
            "{e}: the whole system is out of file descriptors (fs.file-max); close some \
             programs or raise it with sysctl"
        ),
        (_, Some(limit)) => format!(
            "{e}: this process may have {} open at once (RLIMIT_NOFILE, hard limit {}); each \
             tunnel connection takes one per proxy. Raise it with `ulimit -n` (the hard limit \
             needs root: `ulimit -Hn`, or LimitNOFILE= in a systemd unit) or carry fewer \
             connections",
            limit.soft, limit.hard
        ),
        (_, None) => format!("{e}: raise the open-file limit (`ulimit -n`)"),
    }
}

/// Descriptors the in-process lab uses besides its clients' (sockets of the roles, the
/// capture, the terminal, the runtime), with room to spare.
const LAB_OVERHEAD: u64 = 256;

/// Whether the in-process lab can start `clients` echo clients: each takes four descriptors
/// (the client's socket, proxy1's, proxy2's connection to the server, the server's). `Err`
/// says how many are needed, what the limit is and how to raise it.
pub fn room_for_lab_clients(clients: u32) -> Result<(), String> {
    let Some(limit) = current() else {
        return Ok(());
    };
    let needed = 4 * u64::from(clients) + LAB_OVERHEAD;
    if needed <= limit.soft {
        return Ok(());
    }
    Err(format!(
        "--clients {clients} needs about {needed} file descriptors (four per client: the \
         client, proxy1, proxy2 and the server each hold one), and this process may have {} \
         (RLIMIT_NOFILE, hard limit {}). Start at most {} clients, or raise the limit \
         (`ulimit -n`; the hard limit needs root: `ulimit -Hn {needed}`)",
        limit.soft,
        limit.hard,
        limit.soft.saturating_sub(LAB_OVERHEAD) / 4
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raising_never_lowers_and_reaches_the_hard_limit() {
        let before = current().expect("Linux reports RLIMIT_NOFILE");
        let after = raise_to_hard().expect("Linux reports RLIMIT_NOFILE");
        assert!(after.soft >= before.soft);
        assert_eq!(after.hard, before.hard);
        assert_eq!(after.soft, after.hard);
    }

    #[test]
    fn running_out_of_descriptors_says_which_limit_and_how_to_raise_it() {
        let e = io::Error::from_raw_os_error(libc::EMFILE);
        let text = describe_io_error(&e);
        assert!(text.contains("RLIMIT_NOFILE"), "{text}");
        assert!(text.contains("ulimit -n"), "{text}");
        let other = io::Error::from_raw_os_error(libc::ECONNREFUSED);
        assert_eq!(describe_io_error(&other), other.to_string());
    }

    #[test]
    fn too_many_lab_clients_for_the_limit_is_a_clear_error() {
        let limit = raise_to_hard().expect("Linux reports RLIMIT_NOFILE");
        assert_eq!(room_for_lab_clients(3), Ok(()));
        let too_many = u32::try_from(limit.soft / 4 + 1).unwrap_or(u32::MAX);
        let message = room_for_lab_clients(too_many).unwrap_err();
        assert!(message.contains("four per client"), "{message}");
        assert!(message.contains(&limit.soft.to_string()), "{message}");
    }
}
