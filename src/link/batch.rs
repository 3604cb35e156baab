//! Batched UDP: one system call for many datagrams, each way.
//!
//! Receiving: one `recvmmsg` takes every datagram waiting at the link socket (up to
//! [`BATCH`]), and [`RecvBatch`] hands them out one at a time, so the link above (emulator,
//! capture tap, counters, decoding) still sees one datagram per call, in the order they
//! arrived. Under load a proxy then makes one receive call per burst of frames instead of
//! one per frame; with nothing queued it costs what `recvfrom` did. The relay reads whole
//! batches ([`RecvBatch::recv`], [`RecvBatch::datagrams`]).
//!
//! Sending: [`send_burst`] puts a burst of datagrams for one destination on the wire with
//! as few system calls as the kernel allows: runs of equal-size datagrams (the last of a run
//! may be shorter) become one UDP GSO message each (`UDP_SEGMENT`: the kernel cuts it into
//! the datagrams again, so the receiver sees exactly what separate sends would give), and
//! the messages go in one `sendmmsg`. Where GSO fails (`EIO`: no checksum offload; `EINVAL`:
//! an old kernel, or a segment larger than the path's MTU) the socket's [`SendOffload`]
//! remembers it and the burst goes as one datagram per message, still in one `sendmmsg`.
//!
//! Written on `libc` directly, not `quinn-udp`: see DESIGN.md ("UDP batching").

// Unsafe is allowed here, and only here: recvmmsg(2) and sendmmsg(2) have no safe wrapper
// in std, tokio or socket2: the headers point into buffers owned by the batch (or borrowed
// for the call), which outlive the call.
#![allow(unsafe_code)]

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::net::LinkUdp;

use super::socket::RECV_BUFFER;

/// Datagrams one `recvmmsg` takes at most.
pub const BATCH: usize = 16;

/// Datagrams read from the socket and not handed out yet. Each has a slot of
/// [`RECV_BUFFER`] bytes, so no datagram is ever cut (1 MiB of address space, touched only
/// as far as datagrams fill it).
#[derive(Debug)]
pub struct RecvBatch {
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
    /// Waits until at least one datagram is there and reads every datagram waiting (up to
    /// [`BATCH`]); what an earlier call read and was not taken is forgotten. Cancel-safe:
    /// nothing is read from the socket unless the call completes.
    pub async fn recv(&mut self, socket: &LinkUdp) -> io::Result<()> {
        self.count = 0;
        self.next = 0;
        read_batch(socket, || self.fill(socket.as_raw_fd())).await
    }

    /// The datagrams the last [`RecvBatch::recv`] read, in arrival order, with their senders
    /// (senders of an address family we do not speak are skipped).
    pub fn datagrams(&self) -> impl Iterator<Item = (&[u8], SocketAddr)> {
        (0..self.count).filter_map(|slot| {
            let peer = self.peers[slot]?;
            let start = slot * RECV_BUFFER;
            Some((&self.storage[start..start + self.lens[slot]], peer))
        })
    }

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

    /// Reads every datagram waiting (up to [`BATCH`]) without blocking and returns how many;
    /// `WouldBlock` when there is none.
    fn fill(&mut self, fd: RawFd) -> io::Result<usize> {
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
        Ok(received)
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
    socket: &LinkUdp,
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
        read_batch(socket, || {
            batch
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .fill(socket.as_raw_fd())
        })
        .await?;
    }
}

/// Waits until `socket` is readable and reads what is waiting with `fill` (one `recvmmsg`,
/// which returns how many datagrams it read). A batch shorter than [`BATCH`] proves the queue
/// empty, so the socket's readiness is cleared there and then: the next wait goes straight
/// to the poller, instead of first spending a system call to learn `EAGAIN` (one per
/// datagram of a ping-pong, on the echo's path). The runtime clears it only if no new
/// readiness arrived since the wait ended, so a datagram that came meanwhile is not missed.
async fn read_batch(
    socket: &LinkUdp,
    mut fill: impl FnMut() -> io::Result<usize>,
) -> io::Result<()> {
    loop {
        let mut ready = socket.readable().await?;
        let mut read = 0;
        let outcome = ready.try_io(|_| {
            read = fill()?;
            if read < BATCH {
                Err(io::ErrorKind::WouldBlock.into())
            } else {
                Ok(())
            }
        });
        match outcome {
            Ok(done) => return done,
            // The readiness is cleared: a short batch, or nothing at all.
            Err(_would_block) => {
                if read > 0 {
                    return Ok(());
                }
            }
        }
    }
}

/// Messages one `sendmmsg` carries at most.
const SEND_MESSAGES: usize = 64;

/// Datagrams one `sendmmsg` carries at most (over all its messages): the size of its
/// on-stack iovec array.
const SEND_DATAGRAMS: usize = 128;

/// Segments in one GSO message at most: the kernel's `UDP_MAX_SEGMENTS` (64 until Linux
/// 6.8 raised it to 128; the older bound works on both).
const GSO_SEGMENTS: usize = 64;

/// Bytes in one GSO message at most: the whole must fit one IP packet's 16-bit length
/// (65,535 less an IPv6 and a UDP header; IPv4's header is smaller).
const GSO_BYTES: usize = 65_535 - 40 - 8;

/// Whether UDP GSO is still tried on one socket: on until the kernel refuses it once.
#[derive(Debug)]
pub struct SendOffload {
    gso: AtomicBool,
}

impl Default for SendOffload {
    fn default() -> Self {
        SendOffload::new(true)
    }
}

impl SendOffload {
    /// `gso` false sends every datagram as its own message (still one `sendmmsg` per burst):
    /// the fallback, forced (tests, and `TUNLAB_NO_GSO` for measuring).
    pub fn new(gso: bool) -> Self {
        let forced_off = std::env::var_os("TUNLAB_NO_GSO").is_some_and(|v| v != "0");
        SendOffload {
            gso: AtomicBool::new(gso && !forced_off && kernel_has_gso()),
        }
    }

    /// Whether bursts on this socket are sent with GSO.
    pub fn gso(&self) -> bool {
        self.gso.load(Ordering::Relaxed)
    }

    fn gso_failed(&self) {
        self.gso.store(false, Ordering::Relaxed);
    }
}

/// Whether this kernel knows `UDP_SEGMENT` (Linux 4.18 and later), asked once per process.
/// A kernel without it would not refuse the control message: it would ignore it and send the
/// whole run as one large datagram, so it is asked before GSO is ever tried.
fn kernel_has_gso() -> bool {
    static KNOWN: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *KNOWN.get_or_init(|| {
        let Ok(probe) = std::net::UdpSocket::bind("127.0.0.1:0") else {
            return false;
        };
        let mut value: libc::c_int = 0;
        let mut len = size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: an int option read into an int of our own, its length passed.
        let got = unsafe {
            libc::getsockopt(
                probe.as_raw_fd(),
                libc::SOL_UDP,
                libc::UDP_SEGMENT,
                std::ptr::from_mut(&mut value).cast(),
                &raw mut len,
            )
        };
        got == 0
    })
}

/// How many of `datagrams` (from the first) go in one message: a GSO run of equal-size
/// datagrams, the last of which may be shorter (but not empty), within the kernel's bounds;
/// 1 without GSO.
fn message_len(datagrams: &[&[u8]], gso: bool) -> usize {
    let Some(first) = datagrams.first() else {
        return 0;
    };
    let size = first.len();
    if !gso || size == 0 {
        return 1;
    }
    let mut taken = 1;
    let mut bytes = size;
    for datagram in &datagrams[1..] {
        if taken == GSO_SEGMENTS || bytes + datagram.len() > GSO_BYTES {
            break;
        }
        if datagram.len() == size {
            taken += 1;
            bytes += size;
        } else {
            if !datagram.is_empty() && datagram.len() < size {
                // A shorter one ends the run.
                taken += 1;
            }
            break;
        }
    }
    taken
}

/// One `sendmmsg` of the first messages of `datagrams` (without blocking): how many
/// datagrams went. An error is about the first message.
fn send_some(
    fd: RawFd,
    to: Option<&socket2::SockAddr>,
    datagrams: &[&[u8]],
    gso: bool,
) -> io::Result<usize> {
    // The cmsg space of one `UDP_SEGMENT` (a u16), rounded up as the kernel expects.
    const CMSG_SPACE: usize = 24;
    // SAFETY: all-zero bytes are valid for these plain C structs.
    let mut iovecs: [libc::iovec; SEND_DATAGRAMS] = unsafe { std::mem::zeroed() };
    let mut headers: [libc::mmsghdr; SEND_MESSAGES] = unsafe { std::mem::zeroed() };
    let mut controls = [[0u64; CMSG_SPACE / 8]; SEND_MESSAGES];
    // How many datagrams each message carries.
    let mut segments = [0usize; SEND_MESSAGES];
    let mut messages = 0;
    let mut used = 0;
    while messages < SEND_MESSAGES && used < datagrams.len() {
        let rest = &datagrams[used..];
        let take = message_len(&rest[..rest.len().min(SEND_DATAGRAMS - used)], gso);
        if take == 0 {
            break;
        }
        for (iovec, datagram) in iovecs[used..used + take].iter_mut().zip(rest) {
            iovec.iov_base = datagram.as_ptr().cast_mut().cast();
            iovec.iov_len = datagram.len();
        }
        let header = &mut headers[messages].msg_hdr;
        if let Some(to) = to {
            header.msg_name = to.as_ptr().cast_mut().cast();
            header.msg_namelen = to.len();
        }
        header.msg_iov = iovecs[used..].as_mut_ptr();
        header.msg_iovlen = take;
        if take > 1 {
            let control = &mut controls[messages];
            header.msg_control = control.as_mut_ptr().cast();
            header.msg_controllen = CMSG_SPACE;
            // SAFETY: the control buffer is CMSG_SPACE(2) bytes, aligned for cmsghdr, and
            // the header points at it; CMSG_FIRSTHDR/CMSG_DATA stay inside it.
            unsafe {
                let cmsg = libc::CMSG_FIRSTHDR(header);
                (*cmsg).cmsg_level = libc::SOL_UDP;
                (*cmsg).cmsg_type = libc::UDP_SEGMENT;
                (*cmsg).cmsg_len = libc::CMSG_LEN(size_of::<u16>() as u32) as usize;
                let size = rest[0].len() as u16;
                std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<u16>(), size);
            }
        }
        segments[messages] = take;
        messages += 1;
        used += take;
    }
    // SAFETY: each header points at its own iovecs (into `datagrams`, borrowed for the
    // call), the destination (borrowed) and its own control buffer; all outlive the call,
    // which does not block.
    let sent = unsafe {
        libc::sendmmsg(
            fd,
            headers.as_mut_ptr(),
            messages as libc::c_uint,
            libc::MSG_DONTWAIT,
        )
    };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(segments[..sent as usize].iter().sum())
}

/// Sends `datagrams` in order to `to` (`None`: the socket's connected peer), batched (see
/// the module's comment). Returns the ones that failed, by index, with their error; each
/// other datagram was handed to the kernel whole, as a `send_to` of it would have.
///
/// An error fails the first datagram of the message it came with; the rest are tried
/// again, as separate sends would have been. A GSO message refused with `EIO` or `EINVAL`
/// turns GSO off for the socket (in `offload`), and its datagrams go again without it.
pub async fn send_burst(
    socket: &LinkUdp,
    offload: &SendOffload,
    to: Option<SocketAddr>,
    datagrams: &[&[u8]],
) -> Vec<(usize, io::Error)> {
    let to = to.map(socket2::SockAddr::from);
    let mut failed = Vec::new();
    let mut next = 0;
    while next < datagrams.len() {
        let rest = &datagrams[next..];
        let gso = offload.gso();
        let sent = socket
            .send_with(|| send_some(socket.as_raw_fd(), to.as_ref(), rest, gso))
            .await;
        match sent {
            Ok(n) => next += n,
            Err(e)
                if gso
                    && message_len(rest, true) > 1
                    && matches!(e.raw_os_error(), Some(libc::EIO | libc::EINVAL)) =>
            {
                offload.gso_failed();
            }
            Err(e) => {
                failed.push((next, e));
                next += 1;
            }
        }
    }
    failed
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A link socket bound to `addr` (registered for reading, as the proxies' are).
    fn link_udp(addr: &str) -> io::Result<LinkUdp> {
        LinkUdp::from_std(std::net::UdpSocket::bind(addr)?)
    }

    /// More datagrams than one batch, of every size a peer may send (the largest UDP
    /// datagram included), from two senders (IPv4): each comes out once, whole, in order,
    /// with its sender.
    #[tokio::test]
    async fn datagrams_come_out_whole_in_order_with_their_sender() {
        let receiver = link_udp("127.0.0.1:0").unwrap();
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
        let Ok(receiver) = link_udp("[::1]:0") else {
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

    /// Runs of equal sizes go together, a shorter one closes a run, a longer or empty one
    /// starts the next; the kernel's bounds cut long runs.
    #[test]
    fn gso_messages_are_runs_of_equal_sizes_with_a_shorter_last() {
        let full = [0u8; 1400];
        let message = |sizes: &[usize], gso| {
            let datagrams: Vec<&[u8]> = sizes.iter().map(|&n| &full[..n]).collect();
            message_len(&datagrams, gso)
        };
        assert_eq!(message(&[], true), 0);
        assert_eq!(message(&[1400, 1400, 1400], true), 3);
        assert_eq!(message(&[1400, 1400, 300, 1400], true), 3);
        assert_eq!(message(&[1400, 1400, 1400], false), 1);
        assert_eq!(message(&[300, 1400], true), 1, "a longer one starts anew");
        assert_eq!(
            message(&[1400, 0, 1400], true),
            1,
            "an empty one goes alone"
        );
        assert_eq!(message(&[0, 0], true), 1);
        assert_eq!(message(&[1000; 100], true), GSO_SEGMENTS);
        assert_eq!(message(&[1400; 100], true), GSO_BYTES / 1400);
        let big = vec![0u8; 9000];
        let jumbo: Vec<&[u8]> = vec![&big[..]; 10];
        assert_eq!(message_len(&jumbo, true), GSO_BYTES / 9000);
    }

    /// Sends `sizes` as one burst from `sender` and reads them back at a plain socket:
    /// every datagram, whole, in order.
    async fn burst_arrives(sender: &LinkUdp, offload: &SendOffload, sizes: &[usize]) {
        let receiver = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        socket2::SockRef::from(&receiver)
            .set_recv_buffer_size(8 << 20)
            .unwrap();
        receiver
            .set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        let to = receiver.local_addr().unwrap();
        let sent: Vec<Vec<u8>> = sizes
            .iter()
            .enumerate()
            .map(|(n, &size)| (0..size).map(|i| (i * 7 + n) as u8).collect())
            .collect();
        let datagrams: Vec<&[u8]> = sent.iter().map(Vec::as_slice).collect();
        let count = sent.len();
        let reader = std::thread::spawn(move || {
            let mut got = Vec::new();
            let mut buf = vec![0u8; RECV_BUFFER];
            while got.len() < count {
                let (len, _) = receiver.recv_from(&mut buf).expect("a datagram in time");
                got.push(buf[..len].to_vec());
            }
            got
        });
        let failed = send_burst(sender, offload, Some(to), &datagrams).await;
        assert!(failed.is_empty(), "{failed:?}");
        let got = tokio::task::spawn_blocking(move || reader.join().unwrap())
            .await
            .unwrap();
        for (n, (got, sent)) in got.iter().zip(&sent).enumerate() {
            assert_eq!(got, sent, "datagram {n}");
        }
    }

    fn mixed_sizes() -> Vec<usize> {
        let mut sizes = vec![1472; 150];
        sizes.extend([
            100, 0, 1, 1472, 1472, 1471, 1471, 9000, 9000, 8999, 65_507, 3,
        ]);
        sizes.extend(vec![1200; 70]);
        sizes
    }

    #[tokio::test]
    async fn a_burst_goes_out_whole_in_order_with_gso_and_without() {
        let sender = link_udp("127.0.0.1:0").unwrap();
        let offload = SendOffload::default();
        burst_arrives(&sender, &offload, &mixed_sizes()).await;
        assert!(
            offload.gso(),
            "the kernel refused UDP GSO on loopback (Linux has it since 4.18)"
        );
        let plain = SendOffload::new(false);
        burst_arrives(&sender, &plain, &mixed_sizes()).await;
    }

    /// A socket without UDP checksums (`SO_NO_CHECK`) is one on which the kernel refuses
    /// GSO (`EINVAL`): the burst still arrives whole, and the socket stops trying GSO.
    #[tokio::test]
    async fn a_socket_that_refuses_gso_falls_back_and_remembers() {
        let sender = link_udp("127.0.0.1:0").unwrap();
        let on: libc::c_int = 1;
        // SAFETY: a plain int option on a socket we own.
        let set = unsafe {
            libc::setsockopt(
                sender.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_NO_CHECK,
                std::ptr::from_ref(&on).cast(),
                size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        assert_eq!(set, 0, "{}", io::Error::last_os_error());
        let offload = SendOffload::default();
        assert!(offload.gso());
        burst_arrives(&sender, &offload, &mixed_sizes()).await;
        assert!(!offload.gso(), "GSO is off for this socket from now on");
        burst_arrives(&sender, &offload, &mixed_sizes()).await;
    }

    /// A failed datagram is reported by its index and the rest still go: one over the
    /// largest UDP payload, in the middle of a burst.
    #[tokio::test]
    async fn a_datagram_the_kernel_refuses_fails_alone() {
        let sender = link_udp("127.0.0.1:0").unwrap();
        let receiver = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let to = receiver.local_addr().unwrap();
        let small = [1u8; 500];
        let huge = vec![2u8; 65_508];
        let datagrams: Vec<&[u8]> = vec![&small, &small, &huge, &small, &small];
        let failed = send_burst(&sender, &SendOffload::default(), Some(to), &datagrams).await;
        let indices: Vec<usize> = failed.iter().map(|(n, _)| *n).collect();
        assert_eq!(indices, [2], "{failed:?}");
        let mut buf = vec![0u8; RECV_BUFFER];
        for _ in 0..4 {
            let (len, _) = receiver.recv_from(&mut buf).await.unwrap();
            assert_eq!(&buf[..len], &small[..]);
        }
    }
}
