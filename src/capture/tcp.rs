//! The TCP legs of the lab, read off the loopback interface as the kernel carried them.
//!
//! The link's UDP frames are tapped inside the proxies, but the handshakes, FINs and RSTs of
//! the TCP legs (client ↔ proxy1, proxy2 ↔ server) happen in the kernel, so they are read
//! from `lo` with a Linux packet socket (`AF_PACKET`, the same kind of socket tcpdump and
//! Wireshark use through libpcap; libc is enough, no library to install).
//!
//! - **Filter in the kernel.** A classic BPF program attached with `SO_ATTACH_FILTER` keeps
//!   only TCP segments to or from the lab's TCP ports ([`filter_program`]). Filtering in user
//!   space instead would copy every packet on `lo` into this socket, first of all the link's
//!   own UDP frames (the busiest traffic in the lab) only to throw them away; the kernel
//!   drops them before they are queued. The reader checks the ports again anyway, since it
//!   parses each segment to describe it.
//! - **Each segment once.** On `lo` a packet socket sees every packet twice: leaving
//!   (`PACKET_OUTGOING`) and arriving (`PACKET_HOST`). The filter drops the outgoing copy,
//!   as libpcap does on loopback, so each segment is in the file once.
//! - **Stamped on delivery, by the kernel.** Segments are read from a `PACKET_RX_RING`
//!   (`TPACKET_V2`, the ring libpcap uses): the kernel writes each frame's time into the ring as
//!   it delivers it, on the same clock as the link's frames, so the writer can merge both in
//!   time order (`capture/order.rs`). Plain `recvmsg` with `SO_TIMESTAMPNS` is not enough on
//!   loopback: TCP's segments carry a delivery time of another clock there, so the kernel
//!   stamps them when they are *read*, milliseconds late, and a client's SYN-ACK would show up
//!   after the `C` it caused.
//! - **Needs `CAP_NET_RAW`** in the network namespace of `lo`: root, the capability on the
//!   binary, or the lab's own namespace (`--netns`). [`TcpCapture::open`] checks that first,
//!   before anything starts, and [`TcpCaptureError`] says how to get it.

// Unsafe is allowed here, and only here: AF_PACKET sockets have no safe wrapper (socket2 stops
// at AF_INET/AF_INET6/AF_UNIX): the libc calls here take buffers and lengths that live across
// each call.
#![allow(unsafe_code)]

use std::io;
use std::mem::{size_of, zeroed};
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::Arc;
use std::sync::atomic::AtomicU32;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use etherparse::{NetSlice, SlicedPacket, TransportSlice};
use tokio::sync::mpsc;

use crate::event::{EventKind, EventSink, TcpFlags, TcpSegmentSummary};

/// The interface the lab's TCP legs cross.
pub const LOOPBACK: &str = "lo";

/// Bytes kept of each segment: all of it (loopback's MTU is 65536, plus the Ethernet header).
const SNAPLEN: u32 = 65_536 + 14;
/// One ring frame: the `TPACKET_V2` header and padding, then a whole segment.
const RING_FRAME: u32 = 128 * 1024;
/// Ring frames: a burst of this many segments waits for the reader without loss (16 MiB).
const RING_FRAMES: u32 = 128;
/// How often the reader looks up from the socket to see whether it should stop.
const POLL_EVERY: Duration = Duration::from_millis(50);

/// `PACKET_OUTGOING` (`linux/if_packet.h)`: a packet this host sent, as a packet socket sees it.
const PACKET_OUTGOING: u32 = 4;
/// `SO_ATTACH_FILTER` (asm-generic/socket.h).
const SO_ATTACH_FILTER: libc::c_int = 26;
// linux/if_packet.h: the receive ring.
const PACKET_RX_RING: libc::c_int = 5;
const PACKET_VERSION: libc::c_int = 10;
const TPACKET_V2: libc::c_int = 1;
/// A ring frame the kernel has filled, for the reader.
const TP_STATUS_USER: u32 = 1;
/// A ring frame that is the kernel's to fill again.
const TP_STATUS_KERNEL: u32 = 0;

/// `struct tpacket_req` (`linux/if_packet.h`).
#[repr(C)]
struct TpacketReq {
    block_size: u32,
    block_nr: u32,
    frame_size: u32,
    frame_nr: u32,
}

/// `struct tpacket2_hdr` (`linux/if_packet.h)`: the start of each ring frame.
#[repr(C)]
struct Tpacket2Hdr {
    status: u32,
    len: u32,
    snaplen: u32,
    mac: u16,
    net: u16,
    sec: u32,
    nsec: u32,
    vlan_tci: u16,
    vlan_tpid: u16,
    padding: [u8; 4],
}

/// One TCP segment as it crossed `lo`.
#[derive(Clone, Debug)]
pub struct Segment {
    /// When the kernel stamped it.
    pub time: SystemTime,
    /// The Ethernet frame exactly as the packet socket read it (loopback: all-zero MACs).
    pub frame: Vec<u8>,
}

/// Why TCP capture cannot start.
#[derive(Debug, thiserror::Error)]
pub enum TcpCaptureError {
    /// No `CAP_NET_RAW` here.
    #[error(
        "TCP capture (--capture-tcp, or capture_tcp in a scenario) reads the TCP legs from the \
         loopback interface with a packet socket, which needs the CAP_NET_RAW capability ({0}). \
         Three ways to get it:\n  \
         1. run tunlab as root (sudo);\n  \
         2. give the binary the capability once: sudo setcap cap_net_raw+ep \"$(command -v tunlab)\";\n  \
         3. add --netns: the lab runs in a network namespace of its own, where it has the \
         capability on its own loopback (programs outside cannot reach it there)"
    )]
    NotPermitted(io::Error),
    /// Anything else (no packet sockets in this kernel, no `lo`…).
    #[error("--capture-tcp cannot read the loopback interface: {0}")]
    Io(io::Error),
}

/// A packet socket, opened (so the permission is known) but not yet reading.
#[derive(Debug)]
pub struct TcpCapture {
    fd: OwnedFd,
}

impl TcpCapture {
    /// Opens the packet socket. It receives nothing until [`TcpCapture::start`] binds it, so
    /// it can be opened before the lab's ports are known, to fail early and clearly.
    pub fn open() -> Result<TcpCapture, TcpCaptureError> {
        // Protocol 0: no packets at all until bind() names a protocol, so nothing unfiltered
        // is ever queued (the filter is attached before the bind).
        // SAFETY: a plain socket(2) call; the result is checked before use.
        let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            let error = io::Error::last_os_error();
            return Err(match error.raw_os_error() {
                Some(libc::EPERM | libc::EACCES) => TcpCaptureError::NotPermitted(error),
                _ => TcpCaptureError::Io(error),
            });
        }
        // SAFETY: fd is a new descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(TcpCapture { fd })
    }

    /// Starts reading the TCP segments to and from `ports` on `lo`: each goes to `segments`
    /// (the capture writer, which waits for none of them to be lost) and, described, to
    /// `events` (the ladder; lossy like every event).
    pub fn start(
        self,
        ports: &[u16],
        segments: mpsc::Sender<Segment>,
        events: EventSink,
    ) -> io::Result<TcpReader> {
        let fd = self.fd.as_raw_fd();
        let program = filter_program(ports);
        let fprog = libc::sock_fprog {
            len: program.len() as u16,
            filter: program.as_ptr().cast_mut(),
        };
        // SAFETY: fprog points at `program`, which outlives the call (the kernel copies it).
        check(unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                SO_ATTACH_FILTER,
                (&raw const fprog).cast(),
                size_of::<libc::sock_fprog>() as libc::socklen_t,
            )
        })?;
        let ring = Ring::new(fd)?;
        let name = std::ffi::CString::new(LOOPBACK).expect("no NUL in the name");
        // SAFETY: a NUL-terminated name.
        let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
        if index == 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: sockaddr_ll is plain data; all-zero is a valid start.
        let mut addr: libc::sockaddr_ll = unsafe { zeroed() };
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_protocol = (libc::ETH_P_ALL as u16).to_be();
        addr.sll_ifindex = index as i32;
        // SAFETY: addr is a sockaddr_ll of the size given.
        check(unsafe {
            libc::bind(
                fd,
                (&raw const addr).cast(),
                size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        })?;
        let stop = Arc::new(AtomicBool::new(false));
        let reader = Reader {
            ring,
            fd: self.fd,
            ports: ports.to_vec(),
            segments,
            events,
            stop: stop.clone(),
        };
        let thread = std::thread::Builder::new()
            .name("tunlab-tcp-capture".into())
            .spawn(move || reader.run())?;
        Ok(TcpReader {
            stop,
            thread: Some(thread),
        })
    }
}

fn check(result: libc::c_int) -> io::Result<()> {
    if result < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// The running reader thread.
#[derive(Debug)]
pub struct TcpReader {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl TcpReader {
    /// Reads what is already queued on the socket, then stops; returns once the thread has
    /// ended (so every segment it read is with the writer).
    pub fn stop(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for TcpReader {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

struct Reader {
    /// Declared before `fd`: unmapped before the socket closes.
    ring: Ring,
    fd: OwnedFd,
    ports: Vec<u16>,
    segments: mpsc::Sender<Segment>,
    events: EventSink,
    stop: Arc<AtomicBool>,
}

impl Reader {
    fn run(mut self) {
        loop {
            let stopping = self.stop.load(Ordering::Relaxed);
            // Everything the kernel has put in the ring; when stopping, that is the last.
            while let Some((frame, time)) = self.ring.next() {
                let delivered = self.deliver(&frame, time);
                if !delivered {
                    return; // the writer is gone
                }
            }
            if stopping {
                return;
            }
            self.wait_readable();
        }
    }

    /// Waits up to [`POLL_EVERY`] for the kernel to fill a ring frame.
    fn wait_readable(&self) {
        let mut poll = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one pollfd, owned here.
        unsafe { libc::poll(&raw mut poll, 1, POLL_EVERY.as_millis() as libc::c_int) };
    }

    /// Hands one packet on if it is a lab segment; false once the writer is gone.
    fn deliver(&self, frame: &[u8], time: SystemTime) -> bool {
        let Some(summary) = summarize(frame) else {
            return true;
        };
        let ours = |addr: SocketAddr| self.ports.contains(&addr.port());
        if !ours(summary.src) && !ours(summary.dst) {
            return true;
        }
        if self.events.is_enabled() {
            self.events
                .emit_at(time, EventKind::TcpSegment { segment: summary });
        }
        let segment = Segment {
            time,
            frame: frame.to_vec(),
        };
        // Waits while the writer is behind: the capture loses nothing.
        self.segments.blocking_send(segment).is_ok()
    }
}

/// The receive ring shared with the kernel (`TPACKET_V2)`: frames the kernel fills and stamps,
/// handed back one by one.
struct Ring {
    base: NonNull<u8>,
    size: usize,
    /// The next frame to look at.
    next: u32,
}

// SAFETY: the mapping is owned by the one thread that reads it.
unsafe impl Send for Ring {}

impl Ring {
    fn new(fd: libc::c_int) -> io::Result<Ring> {
        let version = TPACKET_V2;
        // SAFETY: an int option, passed by pointer with its size.
        check(unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_PACKET,
                PACKET_VERSION,
                (&raw const version).cast(),
                size_of::<libc::c_int>() as libc::socklen_t,
            )
        })?;
        let request = TpacketReq {
            block_size: RING_FRAME,
            block_nr: RING_FRAMES,
            frame_size: RING_FRAME,
            frame_nr: RING_FRAMES,
        };
        // SAFETY: a tpacket_req, passed by pointer with its size.
        check(unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_PACKET,
                PACKET_RX_RING,
                (&raw const request).cast(),
                size_of::<TpacketReq>() as libc::socklen_t,
            )
        })?;
        let size = (RING_FRAME * RING_FRAMES) as usize;
        // SAFETY: maps the ring the kernel just made for this socket; checked below.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                size,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let base = NonNull::new(base.cast()).ok_or_else(|| io::Error::other("mmap gave null"))?;
        Ok(Ring {
            base,
            size,
            next: 0,
        })
    }

    /// The next filled frame (a copy) and the time the kernel delivered it; `None` when the
    /// kernel has filled nothing more yet.
    fn next(&mut self) -> Option<(Vec<u8>, SystemTime)> {
        let offset = (self.next * RING_FRAME) as usize;
        // SAFETY: offset is inside the mapping (next < RING_FRAMES); each frame starts with a
        // tpacket2_hdr, aligned (frames are page-aligned).
        let header = unsafe { self.base.as_ptr().add(offset).cast::<Tpacket2Hdr>() };
        // The status word is shared with the kernel: read it atomically, and only then the
        // rest of the frame (Acquire pairs with the kernel's release of the frame).
        // SAFETY: `status` is the first, 4-byte aligned field of the header.
        let status = unsafe { AtomicU32::from_ptr(&raw mut (*header).status) };
        if status.load(Ordering::Acquire) & TP_STATUS_USER == 0 {
            return None;
        }
        // SAFETY: the kernel filled this frame and does not touch it until status goes back
        // to TP_STATUS_KERNEL; mac + snaplen stays inside the frame.
        let (frame, time) = unsafe {
            let h = &*header;
            let data = std::slice::from_raw_parts(
                self.base.as_ptr().add(offset + usize::from(h.mac)),
                (h.snaplen as usize).min(RING_FRAME as usize - usize::from(h.mac)),
            );
            let time = UNIX_EPOCH + Duration::new(u64::from(h.sec), h.nsec);
            (data.to_vec(), time)
        };
        status.store(TP_STATUS_KERNEL, Ordering::Release);
        self.next = (self.next + 1) % RING_FRAMES;
        Some((frame, time))
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping made in `new`.
        unsafe { libc::munmap(self.base.as_ptr().cast(), self.size) };
    }
}

/// Reads addresses, flags and lengths of a TCP segment in an Ethernet frame.
pub fn summarize(frame: &[u8]) -> Option<TcpSegmentSummary> {
    let packet = SlicedPacket::from_ethernet(frame).ok()?;
    let (src, dst): (IpAddr, IpAddr) = match &packet.net {
        Some(NetSlice::Ipv4(ip)) => (
            ip.header().source_addr().into(),
            ip.header().destination_addr().into(),
        ),
        Some(NetSlice::Ipv6(ip)) => (
            ip.header().source_addr().into(),
            ip.header().destination_addr().into(),
        ),
        _ => return None,
    };
    let Some(TransportSlice::Tcp(tcp)) = &packet.transport else {
        return None;
    };
    Some(TcpSegmentSummary {
        src: SocketAddr::new(src, tcp.source_port()),
        dst: SocketAddr::new(dst, tcp.destination_port()),
        flags: TcpFlags {
            syn: tcp.syn(),
            ack: tcp.ack(),
            fin: tcp.fin(),
            rst: tcp.rst(),
            psh: tcp.psh(),
        },
        seq: tcp.sequence_number(),
        ack: tcp.acknowledgment_number(),
        payload_len: tcp.payload().len(),
    })
}

// Classic BPF (linux/filter.h), enough for the filter below.
const BPF_LD: u16 = 0x00;
const BPF_LDX: u16 = 0x01;
const BPF_JMP: u16 = 0x05;
const BPF_RET: u16 = 0x06;
const BPF_W: u16 = 0x00;
const BPF_H: u16 = 0x08;
const BPF_B: u16 = 0x10;
const BPF_ABS: u16 = 0x20;
const BPF_IND: u16 = 0x40;
const BPF_MSH: u16 = 0xa0;
const BPF_JEQ: u16 = 0x10;
const BPF_JSET: u16 = 0x40;
const BPF_K: u16 = 0x00;

/// Where a conditional jump goes, before offsets are known.
#[derive(Clone, Copy)]
enum To {
    Next,
    Accept,
    Drop,
    /// The first instruction of the IPv6 branch.
    Ipv6,
}

enum Insn {
    Plain(u16, u32),
    Jump(u16, u32, To, To),
}

/// The kernel filter: TCP over IPv4 (not a fragment) or IPv6 (no extension headers), with
/// a source or destination port in `ports`, arriving copies only (`PACKET_OUTGOING` is the
/// same packet on its way out). The same program as
/// `tcpdump -i lo 'inbound and tcp and (port A or port B)'`, written out by hand.
pub fn filter_program(ports: &[u16]) -> Vec<libc::sock_filter> {
    use Insn::{Jump, Plain};
    let pkttype = (libc::SKF_AD_OFF + libc::SKF_AD_PKTTYPE) as u32;
    let mut ipv4 = vec![
        Plain(BPF_LD | BPF_W | BPF_ABS, pkttype),
        Jump(
            BPF_JMP | BPF_JEQ | BPF_K,
            PACKET_OUTGOING,
            To::Drop,
            To::Next,
        ),
        Plain(BPF_LD | BPF_H | BPF_ABS, 12), // EtherType
        Jump(BPF_JMP | BPF_JEQ | BPF_K, 0x0800, To::Next, To::Ipv6),
        Plain(BPF_LD | BPF_B | BPF_ABS, 14 + 9), // IPv4 protocol
        Jump(BPF_JMP | BPF_JEQ | BPF_K, 6, To::Next, To::Drop),
        Plain(BPF_LD | BPF_H | BPF_ABS, 14 + 6), // flags and fragment offset
        Jump(BPF_JMP | BPF_JSET | BPF_K, 0x1fff, To::Drop, To::Next),
        Plain(BPF_LDX | BPF_B | BPF_MSH, 14), // X = IPv4 header length
    ];
    let port_checks = |load_src: Insn, load_dst: Insn, out: &mut Vec<Insn>| {
        for (load, last) in [(load_src, false), (load_dst, true)] {
            out.push(load);
            for (i, port) in ports.iter().enumerate() {
                let otherwise = if last && i + 1 == ports.len() {
                    To::Drop
                } else {
                    To::Next
                };
                out.push(Jump(
                    BPF_JMP | BPF_JEQ | BPF_K,
                    u32::from(*port),
                    To::Accept,
                    otherwise,
                ));
            }
        }
        if ports.is_empty() {
            out.push(Plain(BPF_RET | BPF_K, 0));
        }
    };
    port_checks(
        Plain(BPF_LD | BPF_H | BPF_IND, 14),
        Plain(BPF_LD | BPF_H | BPF_IND, 16),
        &mut ipv4,
    );
    let mut ipv6 = vec![
        Jump(BPF_JMP | BPF_JEQ | BPF_K, 0x86dd, To::Next, To::Drop),
        Plain(BPF_LD | BPF_B | BPF_ABS, 14 + 6), // next header
        Jump(BPF_JMP | BPF_JEQ | BPF_K, 6, To::Next, To::Drop),
    ];
    port_checks(
        Plain(BPF_LD | BPF_H | BPF_ABS, 14 + 40),
        Plain(BPF_LD | BPF_H | BPF_ABS, 14 + 42),
        &mut ipv6,
    );
    let ipv6_at = ipv4.len();
    let mut program: Vec<Insn> = ipv4;
    program.extend(ipv6);
    let accept_at = program.len();
    program.push(Plain(BPF_RET | BPF_K, SNAPLEN));
    let drop_at = program.len();
    program.push(Plain(BPF_RET | BPF_K, 0));
    program
        .iter()
        .enumerate()
        .map(|(at, insn)| match *insn {
            Plain(code, k) => libc::sock_filter {
                code,
                jt: 0,
                jf: 0,
                k,
            },
            Jump(code, k, jt, jf) => {
                let offset = |to: To| {
                    let target = match to {
                        To::Next => at + 1,
                        To::Accept => accept_at,
                        To::Drop => drop_at,
                        To::Ipv6 => ipv6_at,
                    };
                    u8::try_from(target - at - 1).expect("jumps are short in this program")
                };
                libc::sock_filter {
                    code,
                    jt: offset(jt),
                    jf: offset(jf),
                    k,
                }
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A classic BPF interpreter for the few instructions the filter uses, so the program's
    /// logic is checked on real frames without a kernel.
    fn run(program: &[libc::sock_filter], frame: &[u8], pkttype: u32) -> u32 {
        let (mut a, mut x, mut pc) = (0u32, 0u32, 0usize);
        let load = |at: usize, size: usize| -> Option<u32> {
            let bytes = frame.get(at..at + size)?;
            Some(bytes.iter().fold(0, |v, b| (v << 8) | u32::from(*b)))
        };
        loop {
            let insn = program[pc];
            let class = insn.code & 0x07;
            match class {
                c if c == BPF_RET => return insn.k,
                c if c == BPF_LD => {
                    let size = match insn.code & 0x18 {
                        s if s == BPF_W => 4,
                        s if s == BPF_H => 2,
                        _ => 1,
                    };
                    a = if insn.k == (libc::SKF_AD_OFF + libc::SKF_AD_PKTTYPE) as u32 {
                        pkttype
                    } else {
                        let at = if insn.code & 0xe0 == BPF_IND {
                            x as usize + insn.k as usize
                        } else {
                            insn.k as usize
                        };
                        match load(at, size) {
                            Some(v) => v,
                            None => return 0,
                        }
                    };
                }
                c if c == BPF_LDX => {
                    x = u32::from(frame[insn.k as usize] & 0x0f) * 4;
                }
                c if c == BPF_JMP => {
                    let taken = match insn.code & 0xf0 {
                        o if o == BPF_JEQ => a == insn.k,
                        o if o == BPF_JSET => a & insn.k != 0,
                        other => panic!("unexpected jump op {other:#x}"),
                    };
                    pc += usize::from(if taken { insn.jt } else { insn.jf });
                }
                other => panic!("unexpected class {other}"),
            }
            pc += 1;
        }
    }

    fn tcp_frame(src: &str, dst: &str) -> Vec<u8> {
        let (src, dst): (SocketAddr, SocketAddr) = (src.parse().unwrap(), dst.parse().unwrap());
        let eth = etherparse::PacketBuilder::ethernet2([0; 6], [0; 6]);
        let builder = match (src.ip(), dst.ip()) {
            (IpAddr::V4(s), IpAddr::V4(d)) => eth.ipv4(s.octets(), d.octets(), 64),
            (IpAddr::V6(s), IpAddr::V6(d)) => eth.ipv6(s.octets(), d.octets(), 64),
            _ => unreachable!(),
        }
        .tcp(src.port(), dst.port(), 1000, 65535)
        .syn();
        let mut out = Vec::new();
        builder.write(&mut out, b"").unwrap();
        out
    }

    const HOST: u32 = 0;

    #[test]
    fn the_filter_keeps_lab_tcp_segments_arriving_on_lo() {
        let program = filter_program(&[3327, 1818]);
        for (src, dst) in [
            ("127.0.0.1:40000", "127.0.0.1:3327"),
            ("127.0.0.1:3327", "127.0.0.1:40000"),
            ("127.0.0.1:1818", "127.0.0.1:50000"),
            ("[::1]:40000", "[::1]:1818"),
            ("[::1]:3327", "[::1]:40000"),
        ] {
            let frame = tcp_frame(src, dst);
            assert_eq!(run(&program, &frame, HOST), SNAPLEN, "{src} -> {dst}");
            assert_eq!(
                run(&program, &frame, PACKET_OUTGOING),
                0,
                "{src} -> {dst}: the outgoing copy is the same segment"
            );
        }
    }

    #[test]
    fn the_filter_drops_everything_else() {
        let program = filter_program(&[3327, 1818]);
        let other_tcp = tcp_frame("127.0.0.1:40000", "127.0.0.1:8080");
        assert_eq!(run(&program, &other_tcp, HOST), 0);
        let other_v6 = tcp_frame("[::1]:40000", "[::1]:8080");
        assert_eq!(run(&program, &other_v6, HOST), 0);
        // The link's UDP frames, even on a lab port number.
        let udp = crate::capture::ethernet_udp(
            "127.0.0.1:3327".parse().unwrap(),
            "127.0.0.1:3328".parse().unwrap(),
            b"C1",
        )
        .unwrap();
        assert_eq!(run(&program, &udp, HOST), 0);
        // A later IPv4 fragment carries no TCP header where the ports would be.
        let mut fragment = tcp_frame("127.0.0.1:40000", "127.0.0.1:3327");
        fragment[14 + 7] = 0x10;
        assert_eq!(run(&program, &fragment, HOST), 0);
        // ARP and anything short.
        assert_eq!(run(&program, &[0u8; 14], HOST), 0);
        assert_eq!(run(&filter_program(&[]), &other_tcp, HOST), 0);
    }

    #[test]
    fn a_segment_is_summarized() {
        let frame = tcp_frame("127.0.0.1:40000", "127.0.0.1:3327");
        let summary = summarize(&frame).unwrap();
        assert_eq!(summary.src, "127.0.0.1:40000".parse().unwrap());
        assert_eq!(summary.dst.port(), 3327);
        assert!(summary.flags.syn && !summary.flags.ack);
        assert_eq!(summary.seq, 1000);
        assert_eq!(summary.label(), "SYN");
    }
}
