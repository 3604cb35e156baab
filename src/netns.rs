//! `--netns`: the lab in a user and network namespace of its own.
//!
//! Reading the TCP legs off loopback (`--capture-tcp`) needs `CAP_NET_RAW`. A process that
//! creates a new user namespace holds every capability inside it, and a network namespace
//! created with it (it comes with its own loopback, down) belongs to that user namespace: so
//! an ordinary user can capture there, on a loopback only the lab uses. The price: nothing
//! outside the namespace can reach the lab's ports (no Python proxy from another terminal, no
//! Wireshark on the host's `lo`); [`NOTICE`] says so when the lab starts.
//!
//! `unshare(2)` refuses `CLONE_NEWUSER` in a multi-threaded process, so [`enter`] must run
//! before the async runtime starts its threads: `app::prepare` calls it right after parsing.

// Unsafe is allowed here, and only here: unshare(2) and the uid/gid maps of a new network
// namespace are raw libc calls; they run before any thread is started.
#![allow(unsafe_code)]

use std::io;

/// What the lab says on stderr when it runs in its own namespace.
pub const NOTICE: &str = "--netns: the lab runs in a network namespace of its own, with its own \
loopback; programs outside it (a course script in another terminal, Wireshark on this machine's \
lo, a scrape of --metrics or --admin) cannot reach it, and it cannot reach them. Its captures \
are written to the usual files.";

/// Why the lab could not get a namespace of its own.
#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    #[error(
        "--netns: cannot create a user and network namespace ({0}); this kernel or container \
         does not allow unprivileged user namespaces (see the sysctls \
         user.max_user_namespaces and kernel.unprivileged_userns_clone, or AppArmor's \
         kernel.apparmor_restrict_unprivileged_userns). Run as root or give tunlab \
         CAP_NET_RAW instead"
    )]
    Unshare(io::Error),
    #[error("--netns: cannot set up the namespace: {what}: {error}")]
    Setup {
        what: &'static str,
        error: io::Error,
    },
}

/// Moves this process into a new user and network namespace where it is root (mapped to the
/// user who ran it) and brings the namespace's loopback up. Call it while the process is
/// single-threaded.
pub fn enter() -> Result<(), NetnsError> {
    // SAFETY: getuid/getgid cannot fail.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    // SAFETY: unshare only changes this process's namespaces; the result is checked.
    if unsafe { libc::unshare(libc::CLONE_NEWUSER | libc::CLONE_NEWNET) } != 0 {
        return Err(NetnsError::Unshare(io::Error::last_os_error()));
    }
    let setup = |what: &'static str| move |error: io::Error| NetnsError::Setup { what, error };
    // setgroups must be denied before an unprivileged process may write its gid map.
    std::fs::write("/proc/self/setgroups", "deny").map_err(setup("deny setgroups"))?;
    std::fs::write("/proc/self/uid_map", format!("0 {uid} 1\n")).map_err(setup("map the uid"))?;
    std::fs::write("/proc/self/gid_map", format!("0 {gid} 1\n")).map_err(setup("map the gid"))?;
    loopback_up().map_err(setup("bring lo up"))
}

/// `ip link set lo up`, with the SIOCGIFFLAGS / SIOCSIFFLAGS ioctls.
fn loopback_up() -> io::Result<()> {
    // SAFETY: a plain socket(2) call, checked; closed below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the descriptor is ours alone.
    let _socket = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    // SAFETY: ifreq is plain data; all-zero is a valid start.
    let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
    for (slot, byte) in request.ifr_name.iter_mut().zip(b"lo\0") {
        *slot = *byte as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS fills ifr_flags of the ifreq we pass.
    if unsafe { libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut request) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: ifr_flags is the union member SIOCGIFFLAGS just wrote.
    unsafe {
        request.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
    }
    // SAFETY: SIOCSIFFLAGS reads the ifreq we pass.
    if unsafe { libc::ioctl(fd, libc::SIOCSIFFLAGS, &request) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
