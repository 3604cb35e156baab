//! Batched receiving: one `recvmmsg` system call takes every datagram waiting at the link
//! socket (up to [`BATCH`]), and [`RecvBatch`] hands them out one at a time, so the link
//! above (emulator, capture tap, counters, decoding) still sees one datagram per call, in
//! the order they arrived. Under load a proxy then makes one receive call per burst of
//! frames instead of one per frame; with nothing queued it costs what `recvfrom` did.
//!
//! Written on `libc` directly, not `quinn-udp`: see DESIGN.md ("UDP batching").

// Unsafe is allowed here, and only here: recvmmsg(2) has no safe wrapper in std, tokio or
// socket2: the headers point into buffers owned by the batch, which outlive the call.
#![allow(unsafe_code)]

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Mutex;

use tokio::io::Interest;
use tokio::net::UdpSocket;

use super::socket::RECV_BUFFER;

/// Datagrams one `recvmmsg` takes at most.
pub const BATCH: usize = 16;

/// Datagrams read from the socket and not handed out yet. Each has a slot of
/// [`RECV_BUFFER`] bytes, so no datagram is ever cut (1 MiB of address space, touched only
/// as far as datagrams fill it).
#[derive(Debug)]
pub(super) struct RecvBatch {
    storage: Vec<u8>,
    lens: [usize; BATCH],
    peers: [Option<SocketAddr>; BATCH],
    next: usize,
    count: usize,
}

impl Default for RecvBatch {
    fn default() -> Self {
        RecvBatch {
            storage: vec![0; BATCH * RECV_BUFFER],
            lens: [0; BATCH],
            peers: [None; BATCH],
            next: 0,
            count: 0,
        }
    }
}

impl RecvBatch {
    /// Copies the next waiting datagram into `buf`.
    fn pop(&mut self, buf: &mut [u8]) -> Option<(usize, SocketAddr)> {
        while self.next < self.count {
            let slot = self.next;
            self.next += 1;
            // A sender of an address family we do not speak: skipped, as recvfrom's caller
            // could not have answered it either.
            let Some(peer) = self.peers[slot] else {
                continue;
            };
            let len = self.lens[slot].min(buf.len());
            let start = slot * RECV_BUFFER;
            buf[..len].copy_from_slice(&self.storage[start..start + len]);
            return Some((len, peer));
        }
        None
    }

    /// Reads every datagram waiting (up to [`BATCH`]) without blocking; `WouldBlock` when
    /// there is none.
    fn fill(&mut self, fd: RawFd) -> io::Result<()> {
        // SAFETY: all-zero bytes are valid for these plain C structs.
        let mut names: [libc::sockaddr_storage; BATCH] = unsafe { std::mem::zeroed() };
        let mut iovecs: [libc::iovec; BATCH] = unsafe { std::mem::zeroed() };
        let mut headers: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
        for (slot, ((header, iovec), name)) in headers
            .iter_mut()
            .zip(iovecs.iter_mut())
            .zip(names.iter_mut())
            .enumerate()
        {
            iovec.iov_base = self.storage[slot * RECV_BUFFER..].as_mut_ptr().cast();
            iovec.iov_len = RECV_BUFFER;
            header.msg_hdr.msg_name = std::ptr::from_mut(name).cast();
            header.msg_hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            header.msg_hdr.msg_iov = std::ptr::from_mut(iovec);
            header.msg_hdr.msg_iovlen = 1;
        }
        // SAFETY: every header points at its own name and iovec, each iovec at its own
        // RECV_BUFFER-long slot of `storage`; all outlive the call, which does not block.
        let received = unsafe {
            libc::recvmmsg(
                fd,
                headers.as_mut_ptr(),
                BATCH as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if received < 0 {
            return Err(io::Error::last_os_error());
        }
        let received = received as usize;
        for slot in 0..received {
            self.lens[slot] = headers[slot].msg_len as usize;
            self.peers[slot] = socket_addr(&names[slot]);
        }
        self.next = 0;
        self.count = received;
        Ok(())
    }
}

/// The address a datagram came from.
fn socket_addr(name: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match libc::c_int::from(name.ss_family) {
        libc::AF_INET => {
            // SAFETY: the kernel wrote a sockaddr_in, which fits in sockaddr_storage.
            let v4: &libc::sockaddr_in = unsafe { &*std::ptr::from_ref(name).cast() };
            Some(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(u32::from_be(v4.sin_addr.s_addr)),
                u16::from_be(v4.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: the kernel wrote a sockaddr_in6, which fits in sockaddr_storage.
            let v6: &libc::sockaddr_in6 = unsafe { &*std::ptr::from_ref(name).cast() };
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(v6.sin6_addr.s6_addr),
                u16::from_be(v6.sin6_port),
                v6.sin6_flowinfo,
                v6.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

/// Receives one datagram into `buf`, from what an earlier `recvmmsg` read or from a new
/// one. Cancel-safe: a datagram read from the socket stays in `batch` until handed out.
pub(super) async fn recv_from(
    socket: &UdpSocket,
    batch: &Mutex<RecvBatch>,
    buf: &mut [u8],
) -> io::Result<(usize, SocketAddr)> {
    loop {
        if let Some(got) = batch
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .pop(buf)
        {
            return Ok(got);
        }
        socket
            .async_io(Interest::READABLE, || {
                batch
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .fill(socket.as_raw_fd())
            })
            .await?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// More datagrams than one batch, of every size a peer may send (the largest UDP
    /// datagram included), from two senders (IPv4): each comes out once, whole, in order,
    /// with its sender.
    #[tokio::test]
    async fn datagrams_come_out_whole_in_order_with_their_sender() {
        let receiver = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let to = receiver.local_addr().unwrap();
        let a = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        socket2::SockRef::from(&receiver)
            .set_recv_buffer_size(4 << 20)
            .unwrap();
        let sizes = [0usize, 1, 2, 1498, 1500, 4096, 65_507];
        let mut sent = Vec::new();
        for n in 0..(BATCH * 3) {
            let size = sizes[n % sizes.len()];
            let bytes: Vec<u8> = (0..size).map(|i| (i + n) as u8).collect();
            let from = if n % 2 == 0 { &a } else { &b };
            from.send_to(&bytes, to).unwrap();
            sent.push((bytes, from.local_addr().unwrap()));
        }
        let batch = Mutex::new(RecvBatch::default());
        let mut buf = vec![0u8; RECV_BUFFER];
        for (n, (bytes, from)) in sent.iter().enumerate() {
            let (len, peer) = recv_from(&receiver, &batch, &mut buf).await.unwrap();
            assert_eq!(&buf[..len], &bytes[..], "datagram {n}");
            assert_eq!(peer, *from, "datagram {n}");
        }
        assert!(
            batch.lock().unwrap().pop(&mut buf).is_none(),
            "nothing left"
        );
    }

    #[tokio::test]
    async fn ipv6_senders_are_read_back() {
        let Ok(receiver) = UdpSocket::bind("[::1]:0").await else {
            eprintln!("skipped: no IPv6 loopback here");
            return;
        };
        let sender = std::net::UdpSocket::bind("[::1]:0").unwrap();
        sender
            .send_to(b"D0hola", receiver.local_addr().unwrap())
            .unwrap();
        let batch = Mutex::new(RecvBatch::default());
        let mut buf = vec![0u8; RECV_BUFFER];
        let (len, peer) = recv_from(&receiver, &batch, &mut buf).await.unwrap();
        assert_eq!(
            (&buf[..len], peer),
            (&b"D0hola"[..], sender.local_addr().unwrap())
        );
    }
}
