//! Captures of a running lab, read back in Rust: every frame the event stream says crossed
//! the link is in the file, byte for byte, with valid headers. Real sockets on 127.0.0.1.

// Unsafe is allowed here, and only here: libc calls on descriptors and pids this test owns (a
// FIFO nobody reads, signals to our children).
#![allow(unsafe_code)]

mod capture_support;

use std::time::{Duration, SystemTime};

use capture_support::*;
use tunlab::capture::{
    CaptureFormat, CapturePlan, CaptureTarget, CaptureWriter, PCAPNG_INTERFACE_NAME,
};
use tunlab::event::{CloseKind, EventKind, EventSink, Level};
use tunlab::impair::{DirectionSettings, LinkSettings, Percent};
use tunlab::lab::{Lab, LabConfig};
use tunlab::topology::Role;
use tunlab::wire::WireMode;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pcap_holds_every_frame_of_a_lab_run() {
    let dir = tempfile::tempdir().unwrap();
    let run = run_lab_traffic(dir.path(), CaptureFormat::Pcap, 4, 8, None).await;
    assert_eq!(run.summary.error, None);
    let name = run
        .summary
        .path
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        name.starts_with("tunlab-")
            && name.ends_with(".pcap")
            && name.len() == "tunlab-20261122-184501.pcap".len(),
        "file named by start time: {name}"
    );
    assert_eq!(run.summary.path.parent().unwrap(), dir.path());
    let captured = read_pcap(&run.summary.path);
    assert_eq!(
        captured.len() as u64,
        run.summary.frames,
        "status counted the frames written"
    );
    assert_eq!(
        std::fs::metadata(&run.summary.path).unwrap().len(),
        run.summary.bytes,
        "status counted the bytes written"
    );
    assert_capture_matches_events(&run, &captured);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pcapng_holds_every_frame_and_the_notes() {
    let dir = tempfile::tempdir().unwrap();
    let note = "dropped by link emulator";
    let lost: &[u8] = b"D0\x00lost\xff";
    let run = run_lab_traffic(dir.path(), CaptureFormat::Pcapng, 3, 5, Some((note, lost))).await;
    assert_eq!(run.summary.error, None);
    assert_eq!(run.summary.path.extension().unwrap(), "pcapng");
    let file = read_pcapng(&run.summary.path);
    assert_eq!(file.packets.len() as u64, run.summary.frames);

    // The section and the interface name the lab.
    assert!(
        file.section_comment
            .as_deref()
            .unwrap()
            .contains("tunlab lab"),
        "{file:?}"
    );
    assert!(file.application.as_deref().unwrap().starts_with("tunlab "));
    assert_eq!(file.interface_name.as_deref(), Some(PCAPNG_INTERFACE_NAME));
    assert!(
        file.interface_description
            .as_deref()
            .unwrap()
            .contains("proxy1 and proxy2")
    );

    // Exactly the one note-bearing record carries a comment, with its bytes and addresses.
    let (noted, link): (Vec<_>, Vec<_>) =
        file.packets.into_iter().partition(|p| p.comment.is_some());
    assert_eq!(noted.len(), 1, "one commented packet");
    assert_eq!(noted[0].comment.as_deref(), Some(note));
    assert_eq!(noted[0].datagram, lost);
    assert_eq!(
        (noted[0].src, noted[0].dst),
        (run.addrs.proxy1_udp, run.addrs.proxy2_udp)
    );

    assert_capture_matches_events(&run, &link);
}

#[tokio::test]
async fn the_file_is_readable_while_the_capture_runs() {
    let dir = tempfile::tempdir().unwrap();
    let (events, _rx) = EventSink::channel(1024);
    for format in [CaptureFormat::Pcap, CaptureFormat::Pcapng] {
        let capture = lab_writer(dir.path(), format, &events);
        let status = capture.status();
        let tap = capture.tap();
        let src = "127.0.0.1:40000".parse().unwrap();
        let dst = "127.0.0.1:3328".parse().unwrap();
        for n in 0..200u32 {
            let datagram = format!("D{}{n}", n % 10).into_bytes();
            tap_at(&tap, SystemTime::now(), src, dst, datagram).await;
        }
        // The writer flushes as soon as its queue is empty; no finish() here.
        wait_until("200 frames in the file", || status.frames_written() == 200).await;
        let captured = match format {
            CaptureFormat::Pcap => read_pcap(status.path()),
            CaptureFormat::Pcapng => read_pcapng(status.path()).packets,
        };
        assert_eq!(
            captured.len(),
            200,
            "{format:?}: a reader sees every frame written so far"
        );
        assert_eq!(captured[199].datagram, b"D9199");
        let summary = capture.finish().await;
        assert_eq!(summary.frames, 200);
    }
}

#[test]
fn a_panic_elsewhere_leaves_a_complete_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("panic.pcap");
    let thread_path = path.clone();
    // A front end that starts a capture, pushes frames and then panics without finishing.
    let outcome = std::thread::spawn(move || {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(async move {
            let plan = CapturePlan::new(
                CaptureTarget::File(thread_path),
                CaptureFormat::Pcap,
                "panic test",
                Role::Proxy1,
            );
            let capture = CaptureWriter::start(plan, EventSink::disabled()).unwrap();
            let tap = capture.tap();
            let (src, dst) = (TAP_PROXY1.parse().unwrap(), TAP_PROXY2.parse().unwrap());
            for n in 0..500u32 {
                let datagram = format!("D1frame {n}").into_bytes();
                tap_at(&tap, SystemTime::now(), src, dst, datagram).await;
            }
            panic!("a bug somewhere in the front end");
        })
    })
    .join();
    assert!(outcome.is_err(), "the thread panicked");
    // Dropping the writer during the unwind wrote what was queued.
    let captured = read_pcap(&path);
    assert_eq!(captured.len(), 500);
    assert_eq!(captured[499].datagram, b"D1frame 499");
}

/// When the disk is slower than the link, the capture's ring fills and the link sockets wait
/// for the writer (backpressure): nothing is dropped, and the waits are counted. The "disk"
/// is a FIFO nobody reads at first, so the writer is stuck in a real write while the taps
/// keep recording; once the FIFO is drained, every record is in the stream, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_ring_makes_the_taps_wait_and_loses_nothing() {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;

    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("slow-disk.pcap");
    let c_path = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a plain libc call on a NUL-terminated path we own.
    assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0, "mkfifo");
    // A reader must exist before the writer can open the FIFO; it reads nothing yet.
    let mut reader = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&fifo)
        .unwrap();
    let mut plan = CapturePlan::new(
        CaptureTarget::File(fifo.clone()),
        CaptureFormat::Pcap,
        "backpressure test",
        Role::Proxy1,
    );
    // Halves of 8 records: 6,000 records of 1 kB cannot fit in the ring, the writer's time
    // order stage (4,096 records) and a 64 kB pipe.
    plan.queue = 8;
    let capture = CaptureWriter::start(plan, EventSink::disabled()).unwrap();
    let status = capture.status();
    let tap = capture.tap();
    const RECORDS: u32 = 6000;
    let datagram = |n: u32| {
        let mut bytes = format!("D{}{n:06}", n % 10).into_bytes();
        bytes.resize(1000, b'.');
        bytes
    };
    let producer = tokio::spawn(async move {
        for n in 0..RECORDS {
            let (src, dst) = (TAP_PROXY1.parse().unwrap(), TAP_PROXY2.parse().unwrap());
            tap_at(&tap, SystemTime::now(), src, dst, datagram(n)).await;
        }
    });
    wait_until("a tap waits for room", || status.tap_waits() > 0).await;
    assert!(
        !producer.is_finished(),
        "the taps wait while the writer cannot write"
    );
    assert!(status.frames_written() < u64::from(RECORDS));

    // Now drain the FIFO (blocking reads from here on) into a regular file.
    // SAFETY: fcntl on a descriptor this test owns.
    unsafe {
        use std::os::fd::AsRawFd;
        let fd = reader.as_raw_fd();
        let flags = libc::fcntl(fd, libc::F_GETFL);
        assert_eq!(libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_NONBLOCK), 0);
    }
    let copy = dir.path().join("copy.pcap");
    let copy_path = copy.clone();
    let drain = std::thread::spawn(move || {
        let mut bytes = Vec::new();
        reader.read_to_end(&mut bytes).unwrap();
        std::fs::write(copy_path, bytes).unwrap();
    });
    producer.await.unwrap();
    let summary = capture.finish().await;
    drain.join().unwrap();
    assert_eq!(summary.error, None);
    assert_eq!(summary.frames, u64::from(RECORDS));
    assert_eq!(status.refused(), 0);
    let captured = read_pcap(&copy);
    assert_eq!(
        captured.len(),
        RECORDS as usize,
        "every record reached the file"
    );
    for (n, record) in (0..RECORDS).zip(&captured) {
        assert_eq!(record.datagram, datagram(n), "record {n}, in order");
    }
}

/// The writer gives up when the file can no longer be written (here: a FIFO whose reader
/// went away, a real EPIPE): it says so with an error event, marks its status failed, and
/// the lab keeps running without waiting on it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_disk_is_loud_and_never_blocks_the_tunnel() {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;

    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("capture.fifo");
    let c_path = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a plain libc call on a NUL-terminated path we own.
    assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0, "mkfifo");
    // A reader must exist before the writer can open the FIFO.
    let mut reader = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&fifo)
        .unwrap();

    let (events, mut rx) = EventSink::channel(1 << 20);
    let mut plan = CapturePlan::new(
        CaptureTarget::File(fifo.clone()),
        CaptureFormat::Pcap,
        "failure test",
        Role::Proxy1,
    );
    // A small queue, so that traffic after the failure would block the tunnel quickly if the
    // tap kept waiting on a writer that is gone.
    plan.queue = 8;
    let capture = CaptureWriter::start(plan, events.clone()).unwrap();
    let status = capture.status();
    let mut header = [0u8; 24];
    reader.read_exact(&mut header).unwrap();
    assert_eq!(&header[..4], &0xa1b2c3d4u32.to_ne_bytes(), "pcap magic");

    let config = LabConfig {
        capture: Some(capture.tap()),
        ..LabConfig::ephemeral()
    };
    let mut lab = Lab::start(config, events.clone()).await.unwrap();
    let client = lab.add_client().await.unwrap();
    lab.client_send(client, b"before".to_vec()).unwrap();
    wait_until("first echo", || {
        lab.client_status(client).unwrap().echoed_bytes == 6
    })
    .await;

    drop(reader); // the "disk" goes away
    let mut sent = 6u64;
    for round in 0..200 {
        let bytes = payload(0, round);
        sent += bytes.len() as u64;
        lab.client_send(client, bytes).unwrap();
        if round == 0 {
            wait_until("the writer notices", || status.failed()).await;
        }
    }
    // Hundreds of frames after the failure, through a queue of 8: the tunnel did not wait.
    wait_until("every echo after the failure", || {
        lab.client_status(client).unwrap().echoed_bytes == sent
    })
    .await;
    assert!(lab.client_status(client).unwrap().intact);

    let error = status.error().expect("an error message");
    assert!(
        error.contains("Broken pipe") && error.contains("keeps running"),
        "{error}"
    );
    lab.shutdown().await;
    let summary = capture.finish().await;
    assert_eq!(summary.error.as_deref(), Some(error.as_str()));
    assert!(
        summary.describe().contains("FAILED"),
        "{}",
        summary.describe()
    );
    drop(events);
    let mut logged = false;
    while let Ok(event) = rx.try_recv() {
        if let EventKind::Log {
            level: Level::Error,
            message,
            ..
        } = &event.kind
        {
            logged |= message.contains("capture to") && message.contains("stopped");
        }
    }
    assert!(logged, "an error Log event announced the failure");
}

#[tokio::test]
async fn a_capture_dir_that_cannot_be_made_is_a_clear_error_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("file");
    std::fs::write(&blocker, b"").unwrap();
    let plan = CapturePlan::new(
        CaptureTarget::Dir(blocker.join("captures")),
        CaptureFormat::Pcap,
        "lab",
        Role::Proxy1,
    );
    let error = CaptureWriter::start(plan, EventSink::disabled()).unwrap_err();
    let text = format!("{error:#}");
    assert!(
        text.contains("cannot create the capture directory"),
        "{text}"
    );
    assert!(
        text.contains("--capture-dir") && text.contains("--no-capture"),
        "{text}"
    );
}

#[tokio::test]
async fn finish_waits_for_every_queued_frame() {
    let dir = tempfile::tempdir().unwrap();
    let (events, _rx) = EventSink::channel(16);
    let capture = lab_writer(dir.path(), CaptureFormat::Pcap, &events);
    let tap = capture.tap();
    // Far more than the queue holds: senders wait, nothing is lost.
    let frames = 20_000u32;
    let producer = tokio::spawn(async move {
        for n in 0..frames {
            let (src, dst) = (TAP_PROXY1.parse().unwrap(), TAP_PROXY2.parse().unwrap());
            tap_at(
                &tap,
                SystemTime::now(),
                src,
                dst,
                format!("D2{n:06}").into_bytes(),
            )
            .await;
        }
    });
    tokio::time::timeout(Duration::from_mins(2), producer)
        .await
        .expect("the producer is not stuck")
        .unwrap();
    let summary = capture.finish().await;
    assert_eq!(summary.frames, u64::from(frames));
    let captured = read_pcap(&summary.path);
    assert_eq!(captured.len(), frames as usize);
    for (n, c) in captured.iter().enumerate() {
        assert_eq!(
            c.datagram,
            format!("D2{n:06}").into_bytes(),
            "in order, none lost"
        );
    }
}

/// With the link emulator losing frames, a classic pcap holds exactly what crossed the wire,
/// and pcapng also keeps each frame dropped before sending, whole (addresses, type, id,
/// length) on the not-sent interface, with a comment that says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_the_link_emulator_dropped_are_comments_in_pcapng_and_absent_from_pcap() {
    for format in [CaptureFormat::Pcapng, CaptureFormat::Pcap] {
        let dir = tempfile::tempdir().unwrap();
        let (events, _rx) = EventSink::channel(1 << 20);
        let capture = lab_writer(dir.path(), format, &events);
        let mut config = LabConfig {
            capture: Some(capture.tap()),
            link: LinkSettings::symmetric(DirectionSettings {
                loss: Percent::new(30.0).unwrap(),
                ..DirectionSettings::default()
            }),
            link_seed: Some(7),
            ..LabConfig::ephemeral()
        };
        // One C each, no retries: once the clients close, the link falls quiet.
        config.proxy1.connect_attempts = 1;
        let mut lab = Lab::start(config, events.clone()).await.unwrap();
        let addrs = lab.addrs();
        let mut clients = Vec::new();
        for _ in 0..4 {
            clients.push(lab.add_client().await.unwrap());
        }
        for round in 0..6 {
            for (n, &client) in clients.iter().enumerate() {
                let _ = lab.client_send(client, payload(n, round));
            }
        }
        wait_until("some frames lost", || {
            let link = lab.snapshot().link;
            link.to_proxy2.dropped_by.loss + link.to_proxy1.dropped_by.loss >= 3
        })
        .await;
        for &client in &clients {
            let _ = lab.client_close(client, CloseKind::Fin);
        }
        // proxy1 closes a half-closed client after the linger, then sends its X frames.
        wait_until("every client closed", || {
            clients
                .iter()
                .all(|&c| lab.client_status(c).unwrap().ended.is_some())
        })
        .await;
        // Until nothing moves, so the snapshot and the file describe the same run.
        let mut last = None;
        let mut still = 0;
        while still < 5 {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let now = lab.snapshot().link;
            still = if Some((now.to_proxy2, now.to_proxy1)) == last {
                still + 1
            } else {
                0
            };
            last = Some((now.to_proxy2, now.to_proxy1));
        }
        // Counted after the shutdown: proxy1 sends X for whatever is still open as it stops.
        let emulator = lab.link_emulator().clone();
        lab.shutdown().await;
        let link = emulator.report();
        let summary = capture.finish().await;
        assert_eq!(summary.error, None);
        let delivered = link.to_proxy2.delivered + link.to_proxy1.delivered;
        let lost = link.to_proxy2.dropped_by.loss + link.to_proxy1.dropped_by.loss;
        assert_eq!(
            link.to_proxy2.dropped + link.to_proxy1.dropped,
            lost,
            "loss only"
        );
        match format {
            CaptureFormat::Pcap => {
                let packets = read_pcap(&summary.path);
                assert_eq!(
                    packets.len() as u64,
                    delivered,
                    "what crossed the wire, only"
                );
                assert_eq!(summary.frames, delivered);
            }
            CaptureFormat::Pcapng => {
                let file = read_pcapng(&summary.path);
                assert_eq!(file.packets.len() as u64, delivered);
                assert!(file.packets.iter().all(|p| p.comment.is_none()));
                assert_eq!(file.not_sent.len() as u64, lost);
                for gone in &file.not_sent {
                    assert_eq!(gone.comment, "link emulator: dropped (loss); not sent");
                    // Ethernet, IPv4 and UDP headers, type and id at least.
                    assert!(gone.original_len >= 14 + 20 + 8 + 2, "{gone:?}");
                    // Named: where it was going, and a frame that decodes.
                    let lab_ends = [addrs.proxy1_udp, addrs.proxy2_udp];
                    assert!(lab_ends.contains(&gone.packet.src), "{gone:?}");
                    assert!(lab_ends.contains(&gone.packet.dst), "{gone:?}");
                    assert_ne!(gone.packet.src, gone.packet.dst);
                    WireMode::Classic
                        .decode(&gone.packet.datagram)
                        .unwrap_or_else(|e| panic!("{gone:?}: {e}"));
                }
                assert_eq!(summary.frames, delivered + lost, "every record is a block");
            }
        }
    }
}

/// The writer hands runs of the tap's ring to the file as they lie, and copies short runs:
/// records put in the ring out of time order (as two proxies' threads do) still reach the
/// file complete and in time order, whatever their sizes, in both formats, and the file is
/// no larger on disk than its records (the preallocated space past them is given back).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_put_out_of_time_order_reach_the_file_whole_and_sorted() {
    use std::os::unix::fs::MetadataExt;

    const RECORDS: u64 = 5000;
    // Stamped ahead of the clock, so that nothing is written before it was put in order
    // (the writer holds a record until it is half a second old, or 4,096 younger ones wait).
    let base = SystemTime::now() + Duration::from_secs(5);
    // Every 5th record is stamped before the two put ahead of it (a put that came late),
    // and sizes go from 2 bytes to a full frame, so runs in the ring are long and short.
    let stamp = |n: u64| {
        let micros = if n % 5 == 4 { n * 10 - 25 } else { n * 10 };
        base + Duration::from_micros(micros)
    };
    let datagram = |n: u64| {
        let mut bytes = format!("D{}{n:06}", n % 10).into_bytes();
        bytes.resize([2, 40, 1400, 300, 1480][(n % 5) as usize].max(8), b'.');
        bytes
    };
    for format in [CaptureFormat::Pcap, CaptureFormat::Pcapng] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(format!("order.{}", format.extension()));
        let capture = file_capture(&path, format, "order test", Role::Proxy1);
        let tap = capture.tap();
        for n in 0..RECORDS {
            let (src, dst) = (TAP_PROXY1.parse().unwrap(), TAP_PROXY2.parse().unwrap());
            tap_at(&tap, stamp(n), src, dst, datagram(n)).await;
        }
        let summary = capture.finish().await;
        assert_eq!(summary.error, None);
        assert_eq!(summary.frames, RECORDS);
        assert_eq!(summary.out_of_order, 0);
        let captured = match format {
            CaptureFormat::Pcap => read_pcap(&path),
            CaptureFormat::Pcapng => read_pcapng(&path).packets,
        };
        let mut expected: Vec<u64> = (0..RECORDS).collect();
        expected.sort_by_key(|&n| stamp(n));
        assert_eq!(captured.len(), expected.len(), "{format:?}: every record");
        for (record, n) in captured.iter().zip(expected) {
            assert_eq!(record.datagram, datagram(n), "{format:?}: record {n}");
            let micros = stamp(n).duration_since(SystemTime::UNIX_EPOCH).unwrap();
            assert_eq!(record.time.as_micros(), micros.as_micros(), "{format:?}");
        }
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(
            meta.len(),
            summary.bytes,
            "{format:?}: the size is the records'"
        );
        assert!(
            meta.blocks() * 512 <= meta.len().next_multiple_of(1 << 20),
            "{format:?}: {} bytes allocated for a {}-byte file",
            meta.blocks() * 512,
            meta.len()
        );
    }
}
