//! Socket set-up shared by every role: binding with clear errors, and UDP buffers sized for
//! bursts (classic mode has no flow control, so a small receive buffer is where frames die).

use std::io;
use std::net::SocketAddr;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::{TcpListener, UdpSocket, lookup_host};

/// Receive and send buffer asked for on link sockets. The kernel caps it at
/// `net.core.rmem_max`/`wmem_max`; whatever it grants is fine.
pub const LINK_SOCKET_BUFFER: usize = 4 << 20;

/// Binds a UDP socket for the link with large buffers.
pub fn bind_udp(addr: SocketAddr) -> anyhow::Result<UdpSocket> {
    let bind = || -> io::Result<UdpSocket> {
        let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
        let _ = socket.set_recv_buffer_size(LINK_SOCKET_BUFFER);
        let _ = socket.set_send_buffer_size(LINK_SOCKET_BUFFER);
        socket.set_nonblocking(true)?;
        socket.bind(&addr.into())?;
        UdpSocket::from_std(socket.into())
    };
    bind().map_err(|e| bind_error("UDP", addr, e))
}

/// Binds a TCP listener (with `SO_REUSEADDR`, so a restarted role gets its port back at once).
pub fn bind_tcp(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    let bind = || -> io::Result<TcpListener> {
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        socket.set_reuse_address(true)?;
        socket.set_nonblocking(true)?;
        socket.bind(&addr.into())?;
        // Thousands of clients may connect at once; the kernel caps this at somaxconn.
        socket.listen(4096)?;
        TcpListener::from_std(socket.into())
    };
    bind().map_err(|e| bind_error("TCP", addr, e))
}

fn bind_error(proto: &str, addr: SocketAddr, e: io::Error) -> anyhow::Error {
    let hint = match e.kind() {
        io::ErrorKind::AddrInUse => {
            " (another program already uses this port; pick another or stop it)"
        }
        io::ErrorKind::PermissionDenied => " (ports below 1024 need privileges)",
        io::ErrorKind::AddrNotAvailable => " (this machine has no such address)",
        _ => "",
    };
    anyhow::anyhow!("cannot bind {proto} {addr}: {e}{hint}")
}

/// Resolves `host:port` to one address, preferring IPv4 like the course scripts do.
pub async fn resolve(host: &str, port: u16) -> anyhow::Result<SocketAddr> {
    let addrs: Vec<SocketAddr> = lookup_host((host, port))
        .await
        .map_err(|e| anyhow::anyhow!("cannot resolve host '{host}': {e}"))?
        .collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or(addrs.first())
        .copied()
        .ok_or_else(|| anyhow::anyhow!("host '{host}' has no addresses"))
}

/// The address to bind so as to reach `peer` (IPv4 or IPv6 wildcard, port chosen by the OS).
pub fn unspecified_for(peer: SocketAddr) -> SocketAddr {
    match peer {
        SocketAddr::V4(_) => (std::net::Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
    }
}

/// The local address this machine would use to reach `peer`, port 0. Binding it (rather than
/// the wildcard) makes the socket's own address concrete, so captures show the real one.
pub fn local_bind_towards(peer: SocketAddr) -> SocketAddr {
    let probe = || -> io::Result<SocketAddr> {
        let socket = std::net::UdpSocket::bind(unspecified_for(peer))?;
        socket.connect(peer)?;
        Ok(SocketAddr::new(socket.local_addr()?.ip(), 0))
    };
    probe().unwrap_or_else(|_| unspecified_for(peer))
}

/// A UDP socket of the link (the proxies', the relay's), registered with the runtime for
/// reading only.
///
/// tokio's `UdpSocket` registers for both directions, and the kernel tells a UDP socket's
/// poller it is writable again each time a datagram it sent leaves it (on loopback, at
/// once). So after every burst it sent, a proxy's next wait returned at once with nothing
/// to do: one `epoll_wait` in four was for that (`strace`, BENCHMARKS.md, "One wake-up
/// fewer per send"). Sends here are non-blocking system calls; a UDP socket's send buffer
/// is full only in a moment of congestion on a real interface, and then
/// [`LinkUdp::writable`] waits on a registration for writability made for that wait alone.
#[derive(Debug)]
pub struct LinkUdp {
    fd: tokio::io::unix::AsyncFd<std::net::UdpSocket>,
}

impl LinkUdp {
    /// Takes a bound socket (made non-blocking here) and registers it for reading. Must be
    /// called within a tokio runtime.
    pub fn from_std(socket: std::net::UdpSocket) -> io::Result<LinkUdp> {
        socket.set_nonblocking(true)?;
        let fd = register(socket, tokio::io::Interest::READABLE)?;
        Ok(LinkUdp { fd })
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.fd.get_ref().local_addr()
    }

    /// Connects the socket to `peer` (for UDP only a default destination and a filter: no
    /// packet is sent, so this does not wait).
    pub fn connect(&self, peer: SocketAddr) -> io::Result<()> {
        self.fd.get_ref().connect(peer)
    }

    /// Waits until the socket may have a datagram to read; the guard clears that readiness
    /// when a read through it would block.
    pub async fn readable(
        &self,
    ) -> io::Result<tokio::io::unix::AsyncFdReadyGuard<'_, std::net::UdpSocket>> {
        self.fd.readable().await
    }

    /// Waits until the socket can take a datagram again, on a duplicate of its descriptor
    /// registered for writability for this wait only (the socket's own registration is for
    /// reading).
    pub async fn writable(&self) -> io::Result<()> {
        let duplicate = self.fd.get_ref().try_clone()?;
        let waiter = register(duplicate, tokio::io::Interest::WRITABLE)?;
        waiter.writable().await?.retain_ready();
        Ok(())
    }

    /// Runs the non-blocking send `send` until it does not report `WouldBlock`, waiting for
    /// room between tries.
    pub async fn send_with<R>(&self, mut send: impl FnMut() -> io::Result<R>) -> io::Result<R> {
        loop {
            match send() {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.writable().await?,
                outcome => return outcome,
            }
        }
    }

    /// Receives one datagram into `buf`.
    pub async fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        loop {
            let mut ready = self.readable().await?;
            if let Ok(received) = ready.try_io(|socket| socket.get_ref().recv_from(buf)) {
                return received;
            }
        }
    }

    /// Sends one datagram to `to`.
    pub async fn send_to(&self, datagram: &[u8], to: SocketAddr) -> io::Result<usize> {
        self.send_with(|| self.fd.get_ref().send_to(datagram, to))
            .await
    }
}

/// Registers `socket` with the runtime for `interest` only.
#[allow(unsafe_code)]
fn register(
    socket: std::net::UdpSocket,
    interest: tokio::io::Interest,
) -> io::Result<tokio::io::unix::AsyncFd<std::net::UdpSocket>> {
    // SAFETY: a `std::net::UdpSocket` owns its descriptor, so it stays open and `as_raw_fd`
    // returns that same one for as long as the `AsyncFd` owns the socket; nothing here
    // replaces the socket through `get_mut`.
    Ok(unsafe { tokio::io::unix::AsyncFd::register_with_interest(socket, interest) }?)
}

impl std::os::fd::AsRawFd for LinkUdp {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.fd.as_raw_fd()
    }
}

impl std::os::fd::AsFd for LinkUdp {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.fd.get_ref().as_fd()
    }
}

impl TryFrom<UdpSocket> for LinkUdp {
    type Error = io::Error;

    /// A tokio socket, taken off its registration for both directions.
    fn try_from(socket: UdpSocket) -> io::Result<LinkUdp> {
        LinkUdp::from_std(socket.into_std()?)
    }
}

impl TryFrom<std::net::UdpSocket> for LinkUdp {
    type Error = io::Error;

    fn try_from(socket: std::net::UdpSocket) -> io::Result<LinkUdp> {
        LinkUdp::from_std(socket)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link_udp() -> LinkUdp {
        LinkUdp::from_std(std::net::UdpSocket::bind("127.0.0.1:0").unwrap()).unwrap()
    }

    /// A send the kernel refuses with `EWOULDBLOCK` waits for the socket's writability (on
    /// the duplicate's registration) and goes again; loopback never fills a UDP send
    /// buffer, so the refusal is the closure's own, the wait and the retry are real.
    #[tokio::test]
    async fn a_send_that_would_block_waits_for_room_then_goes() {
        let (sender, receiver) = (link_udp(), link_udp());
        let to = receiver.local_addr().unwrap();
        let mut tries = 0;
        let sent = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            sender.send_with(|| {
                tries += 1;
                if tries == 1 {
                    return Err(io::ErrorKind::WouldBlock.into());
                }
                sender.fd.get_ref().send_to(b"D0hola", to)
            }),
        )
        .await
        .expect("a writable socket ends the wait")
        .unwrap();
        assert_eq!((sent, tries), (6, 2));
        let mut buf = [0u8; 64];
        let (len, from) = receiver.recv_from(&mut buf).await.unwrap();
        assert_eq!(
            (&buf[..len], from),
            (&b"D0hola"[..], sender.local_addr().unwrap())
        );
    }

    /// The events the runtime waits for on `fd`, as the kernel lists them in the fdinfo of
    /// this process's epoll instances (matched by descriptor and inode, since other tests'
    /// runtimes have instances of their own).
    fn registered_events(fd: std::os::fd::RawFd) -> Option<u32> {
        use std::os::unix::fs::MetadataExt;
        let inode = std::fs::metadata(format!("/proc/self/fd/{fd}")).ok()?.ino();
        for entry in std::fs::read_dir("/proc/self/fd").ok()?.flatten() {
            let is_epoll = std::fs::read_link(entry.path())
                .is_ok_and(|target| target.to_string_lossy() == "anon_inode:[eventpoll]");
            if !is_epoll {
                continue;
            }
            let path = format!("/proc/self/fdinfo/{}", entry.file_name().to_string_lossy());
            let Ok(info) = std::fs::read_to_string(path) else {
                continue;
            };
            // `tfd:        7 events: 80002019 data: … ino:f82c12 sdev:9`
            for line in info.lines().filter(|l| l.starts_with("tfd:")) {
                let fields: Vec<&str> = line.split_whitespace().collect();
                let field = |name: &str| {
                    fields
                        .iter()
                        .position(|f| *f == name)
                        .and_then(|at| fields.get(at + 1))
                        .copied()
                };
                let ino = fields
                    .iter()
                    .find_map(|f| f.strip_prefix("ino:"))
                    .and_then(|hex| u64::from_str_radix(hex, 16).ok());
                if field("tfd:") == Some(fd.to_string().as_str()) && ino == Some(inode) {
                    return field("events:").and_then(|hex| u32::from_str_radix(hex, 16).ok());
                }
            }
        }
        None
    }

    /// The kernel's own view of the runtime's registrations: a link socket is waited on for
    /// reading only, while a tokio `UdpSocket` is waited on for writing too (so each
    /// datagram it sends wakes its poller).
    #[tokio::test]
    async fn the_runtime_waits_on_a_link_socket_for_reading_only() {
        use std::os::fd::AsRawFd;
        let link = link_udp();
        let plain = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let link_events =
            registered_events(link.as_raw_fd()).expect("the link socket is registered");
        let plain_events =
            registered_events(plain.as_raw_fd()).expect("the tokio socket is registered");
        let (readable, writable) = (libc::EPOLLIN as u32, libc::EPOLLOUT as u32);
        assert_ne!(
            plain_events & writable,
            0,
            "{plain_events:#x}: the check sees EPOLLOUT"
        );
        assert_ne!(link_events & readable, 0, "{link_events:#x}");
        assert_eq!(link_events & writable, 0, "{link_events:#x}");
    }

    /// Reading through the readiness guard: datagrams sent before and after the first wait
    /// all come out, in order, from their sender.
    #[tokio::test]
    async fn datagrams_are_read_as_they_come() {
        let (a, b) = (link_udp(), link_udp());
        let to = b.local_addr().unwrap();
        a.send_to(b"one", to).await.unwrap();
        let mut buf = [0u8; 64];
        let (len, _) = b.recv_from(&mut buf).await.unwrap();
        assert_eq!(&buf[..len], b"one");
        let reader = tokio::spawn(async move {
            let mut buf = [0u8; 64];
            let (len, from) = b.recv_from(&mut buf).await.unwrap();
            (buf[..len].to_vec(), from)
        });
        tokio::task::yield_now().await;
        a.send_to(b"two", to).await.unwrap();
        let (got, from) = tokio::time::timeout(std::time::Duration::from_secs(10), reader)
            .await
            .expect("woken by the datagram")
            .unwrap();
        assert_eq!((got, from), (b"two".to_vec(), a.local_addr().unwrap()));
    }
}
