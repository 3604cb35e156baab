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
//! - **Kernel timestamps.** Each segment carries the time the kernel stamped it
//!   (`SO_TIMESTAMPNS`), on the same clock as the link's frames, so the writer can merge both
//!   in time order ([`super::order`]).
//! - **Needs `CAP_NET_RAW`** in the network namespace of `lo`: root, the capability on the
//!   binary, or the lab's own namespace (`--netns`). [`TcpCapture::open`] checks that first,
//!   before anything starts, and [`TcpCaptureError`] says how to get it.

use std::io;
use std::mem::{size_of, zeroed};
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use etherparse::{NetSlice, SlicedPacket, TransportSlice};
use tokio::sync::mpsc;

use crate::event::{EventKind, EventSink, TcpFlags, TcpSegmentSummary};

/// The interface the lab's TCP legs cross.
pub const LOOPBACK: &str = "lo";

/// Bytes kept of each segment: all of it (loopback's MTU is 65536).
const SNAPLEN: u32 = 262_144;
/// How often the reader looks up from the socket to see whether it should stop.
const POLL_EVERY: Duration = Duration::from_millis(50);

/// `PACKET_OUTGOING` (linux/if_packet.h): a packet this host sent, as a packet socket sees it.
const PACKET_OUTGOING: u32 = 4;
/// `SO_TIMESTAMPNS` / `SCM_TIMESTAMPNS` (asm-generic/socket.h).
const SO_TIMESTAMPNS: libc::c_int = 35;
/// `SO_ATTACH_FILTER` (asm-generic/socket.h).
const SO_ATTACH_FILTER: libc::c_int = 26;

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
            filter: program.as_ptr() as *mut libc::sock_filter,
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
        let on: libc::c_int = 1;
        // SAFETY: an int option, passed by pointer with its size.
        check(unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                SO_TIMESTAMPNS,
                (&raw const on).cast(),
                size_of::<libc::c_int>() as libc::socklen_t,
            )
        })?;
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
    fd: OwnedFd,
    ports: Vec<u16>,
    segments: mpsc::Sender<Segment>,
    events: EventSink,
    stop: Arc<AtomicBool>,
}

impl Reader {
    fn run(self) {
        let mut buf = vec![0u8; SNAPLEN as usize];
        loop {
            let stopping = self.stop.load(Ordering::Relaxed);
            if !stopping && !self.wait_readable() {
                continue;
            }
            // Read everything queued now; when stopping, that is the last of it.
            loop {
                match self.receive(&mut buf) {
                    Ok(Some((len, time))) => {
                        if !self.deliver(&buf[..len], time) {
                            return; // the writer is gone
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        self.events.log(
                            crate::event::Level::Error,
                            crate::event::Role::Proxy1,
                            format!("TCP capture stopped: reading {LOOPBACK} failed: {e}"),
                        );
                        return;
                    }
                }
            }
            if stopping {
                return;
            }
        }
    }

    /// Waits up to [`POLL_EVERY`] for a packet; false when none came.
    fn wait_readable(&self) -> bool {
        let mut poll = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one pollfd, owned here.
        let ready = unsafe { libc::poll(&mut poll, 1, POLL_EVERY.as_millis() as libc::c_int) };
        ready > 0
    }

    /// One packet without waiting: its length and kernel timestamp; `None` when none is queued.
    fn receive(&self, buf: &mut [u8]) -> io::Result<Option<(usize, SystemTime)>> {
        // Room for one SCM_TIMESTAMPNS control message (a timespec), generously aligned.
        let mut control = [0u64; 8];
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        // SAFETY: msghdr is plain data; the pointers set below outlive the call.
        let mut msg: libc::msghdr = unsafe { zeroed() };
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = size_of::<[u64; 8]>() as _;
        // SAFETY: msg describes valid buffers; MSG_DONTWAIT never blocks.
        let n = unsafe { libc::recvmsg(self.fd.as_raw_fd(), &mut msg, libc::MSG_DONTWAIT) };
        if n < 0 {
            let error = io::Error::last_os_error();
            return match error.kind() {
                io::ErrorKind::WouldBlock => Ok(None),
                io::ErrorKind::Interrupted => Ok(None),
                _ => Err(error),
            };
        }
        let mut time = None;
        // SAFETY: walking the control messages the kernel wrote into `control`, with the
        // libc macros that bound each step by msg_controllen.
        unsafe {
            let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
            while !cmsg.is_null() {
                if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == SO_TIMESTAMPNS {
                    let ts: libc::timespec = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast());
                    time = Some(UNIX_EPOCH + Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32));
                }
                cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
            }
        }
        Ok(Some((n as usize, time.unwrap_or_else(SystemTime::now))))
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
