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
