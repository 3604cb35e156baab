//! The sealed link (`--key-file`) on real loopback sockets: the echo comes back intact, the
//! capture holds no plaintext, a proxy1 with another key gets nothing through, a replayed
//! datagram is rejected and counted, and `tunlab decrypt` restores frames tshark and the
//! dissector read.

mod capture_support;
mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use capture_support::{lab_writer, read_pcap};
use common::*;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use tunlab::capture::CaptureFormat;
use tunlab::event::{EventKind, EventSink};
use tunlab::impair::settings::{DirectionSettings, LinkSettings, Percent};
use tunlab::lab::{Lab, LabConfig};
use tunlab::link::LinkSocket;
use tunlab::link::seal::{self, Seal, SealKey, Side};
use tunlab::net::{bind_tcp, bind_udp};
use tunlab::roles::proxy1::Proxy1Config;
use tunlab::roles::proxy2::Proxy2Config;
use tunlab::roles::{proxy1, proxy2};
use tunlab::topology::Endpoint;
use tunlab::transport::{RtoConfig, TransportConfig};
use tunlab::wire::{MAX_DATAGRAM, WireMode, extended};

const DISSECTOR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/assets/wireshark/tunlab.lua");

/// A marker that must never appear in the capture of a sealed link.
const MARKER: &[u8] = b"tunlab-plaintext-marker:";

/// Client `n`'s data: the marker and a counter, over and over (so a grep of the capture is a
/// real test), then pseudo-random binary.
fn client_data(n: u64, len: usize) -> Vec<u8> {
    let mut data = Vec::with_capacity(len);
    let mut i = 0u64;
    while data.len() < len / 2 {
        data.extend_from_slice(MARKER);
        data.extend_from_slice(format!("{n}:{i};").as_bytes());
        i += 1;
    }
    data.extend_from_slice(&random_bytes(n, len - data.len()));
    data.truncate(len);
    data
}

/// Polls `check` every 20 ms until it returns something (bounded by `within`).
async fn poll_until<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    within(what, async {
        loop {
            if let Some(found) = check() {
                return found;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

struct SealedRun {
    capture: PathBuf,
    addrs: tunlab::lab::LabAddrs,
    key: SealKey,
    proxy2_stats: tunlab::link::LinkStatsSnapshot,
    _dir: tempfile::TempDir,
}

/// A selective-repeat lab sealed with a fresh key, its capture in `format`, over a link
/// that does `link` both ways: `clients` clients echo `bytes` each, byte-exact.
async fn sealed_lab(
    clients: u64,
    bytes: usize,
    format: CaptureFormat,
    link: DirectionSettings,
) -> SealedRun {
    let dir = tempfile::tempdir().unwrap();
    let key = SealKey::generate().unwrap();
    let (events, _rx) = EventSink::channel(16);
    std::mem::forget(_rx);
    let writer = lab_writer(dir.path(), format, &events);
    let mut config = LabConfig {
        mode: WireMode::SelectiveRepeat,
        key: Some(key.clone()),
        capture: Some(writer.tap()),
        link: LinkSettings::symmetric(link),
        link_seed: Some(11),
        ..LabConfig::ephemeral()
    };
    // A short fixed timer keeps an impaired run quick on loopback.
    let transport = TransportConfig {
        rto: RtoConfig::Fixed(Duration::from_millis(20)),
        max_timeouts: 50,
        ..TransportConfig::for_mode(WireMode::SelectiveRepeat)
    };
    config.proxy1.transport = Some(transport);
    config.proxy2.transport = Some(transport);
    let lab = Lab::start(config, events).await.expect("lab starts");
    let proxy1 = lab.addrs().proxy1_tcp;
    let tasks: Vec<_> = (0..clients)
        .map(|n| {
            tokio::spawn(async move {
                let data = client_data(n, bytes);
                let mut stream = TcpStream::connect(proxy1).await.unwrap();
                let echoed = echo_through(&mut stream, &data, usize::MAX).await;
                (data, echoed)
            })
        })
        .collect();
    for (n, task) in tasks.into_iter().enumerate() {
        let (data, echoed) = within("an echo", task).await.unwrap();
        assert_eq!(echoed.len(), data.len(), "client {n}");
        assert!(echoed == data, "client {n}: the echo differs");
    }
    let addrs = lab.addrs();
    let snapshot = lab.snapshot();
    assert_eq!(snapshot.proxy2.unauthentic, 0);
    assert_eq!(snapshot.proxy1.unauthentic, 0);
    lab.shutdown().await;
    let capture = writer.finish().await.path;
    SealedRun {
        capture,
        addrs,
        key,
        proxy2_stats: snapshot.proxy2,
        _dir: dir,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sealed_link_echoes_intact_and_its_capture_holds_no_plaintext() {
    let run = sealed_lab(
        3,
        200_000,
        CaptureFormat::Pcap,
        DirectionSettings::default(),
    )
    .await;
    let file = std::fs::read(&run.capture).unwrap();
    assert!(!contains(&file, MARKER), "the capture file holds plaintext");
    let packets = read_pcap(&run.capture);
    assert!(packets.len() > 100, "the traffic was captured");
    let mut frames = 0;
    for packet in &packets {
        assert!(
            packet.datagram.len() <= MAX_DATAGRAM,
            "a datagram over 1500 bytes"
        );
        assert_eq!(
            packet.datagram[0],
            extended::MAGIC_SEALED,
            "every datagram is sealed"
        );
        let header = seal::Header::parse(&packet.datagram).expect("a sealed header");
        if matches!(header.kind, seal::kind::TO_PROXY2 | seal::kind::TO_PROXY1) {
            frames += 1;
        }
    }
    assert!(frames > 100);
    // Full-size data frames use the whole 1500 bytes, seal included.
    assert!(packets.iter().any(|p| p.datagram.len() == MAX_DATAGRAM));
    assert!(run.proxy2_stats.received.data > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_datagram_from_the_capture_is_rejected_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let key = SealKey::generate().unwrap();
    let (events, _rx) = EventSink::channel(16);
    std::mem::forget(_rx);
    let writer = lab_writer(dir.path(), CaptureFormat::Pcap, &events);
    let config = LabConfig {
        mode: WireMode::SelectiveRepeat,
        key: Some(key.clone()),
        capture: Some(writer.tap()),
        ..LabConfig::ephemeral()
    };
    let lab = Lab::start(config, events).await.expect("lab starts");
    let data = client_data(1, 5000);
    let mut stream = TcpStream::connect(lab.addrs().proxy1_tcp).await.unwrap();
    assert_eq!(echo_through(&mut stream, &data, usize::MAX).await, data);
    // The capture writer holds records for half a second to order them: wait until proxy1's
    // data frames are in the file.
    let proxy2 = lab.addrs().proxy2_udp;
    let capture = dir.path().to_path_buf();
    let sealed_frames = poll_until("sealed frames in the capture", || {
        let file = std::fs::read_dir(&capture).ok()?.next()?.ok()?.path();
        let frames: Vec<Vec<u8>> = read_pcap(&file)
            .into_iter()
            .filter(|p| p.dst == proxy2)
            .map(|p| p.datagram)
            .filter(|d| seal::Header::parse(d).is_some_and(|h| h.kind == seal::kind::TO_PROXY2))
            .collect();
        (frames.len() >= 3).then_some(frames)
    })
    .await;
    let before = lab.snapshot().proxy2;
    // From a socket of our own (another address), and twice.
    let raw = RawPeer::new(proxy2).await;
    for datagram in sealed_frames.iter().take(3) {
        raw.send(datagram).await;
        raw.send(datagram).await;
    }
    let after = poll_until("the replays counted", || {
        let after = lab.snapshot().proxy2;
        (after.replayed >= before.replayed + 6).then_some(after)
    })
    .await;
    assert_eq!(after.replayed, before.replayed + 6);
    assert_eq!(
        after.received, before.received,
        "nothing replayed was delivered"
    );
    assert_eq!(after.unauthentic, before.unauthentic);
    // A forged datagram (a counter never used, so the replay window lets it through to the
    // tag check) fails authentication instead.
    let mut forged = sealed_frames[0].clone();
    forged[18] ^= 0x7f;
    raw.send(&forged).await;
    poll_until("the forgery counted", || {
        (lab.snapshot().proxy2.unauthentic == before.unauthentic + 1).then_some(())
    })
    .await;
    // The tunnel still works.
    assert_eq!(echo_through(&mut stream, &data, usize::MAX).await, data);
    drop(stream);
    lab.shutdown().await;
    writer.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy1_with_another_key_gets_nothing_through() {
    let stop = CancellationToken::new();
    let server = start_echo_server(&stop).await;
    let p2_link = LinkSocket::new(
        bind_udp(localhost()).unwrap(),
        Endpoint::Proxy2,
        WireMode::SelectiveRepeat,
        EventSink::disabled(),
    )
    .unwrap()
    .with_seal(Seal::new(SealKey::generate().unwrap(), Side::Proxy2));
    let p2_addr = p2_link.local_addr();
    let p2_stats = p2_link.stats().clone();
    tokio::spawn(proxy2::run(
        p2_link,
        Proxy2Config::new(server),
        stop.clone(),
    ));

    let (events, mut rx) = EventSink::channel(1024);
    let listener = bind_tcp(localhost()).unwrap();
    let p1_tcp = listener.local_addr().unwrap();
    let p1_link = LinkSocket::new(
        bind_udp(localhost()).unwrap(),
        Endpoint::Proxy1,
        WireMode::SelectiveRepeat,
        events,
    )
    .unwrap()
    .with_seal(Seal::new(SealKey::generate().unwrap(), Side::Proxy1));
    let p1_stats = p1_link.stats().clone();
    let config = Proxy1Config {
        connect_attempts: 3,
        connect_retry: Duration::from_millis(150),
        ..Proxy1Config::new(p2_addr)
    };
    tokio::spawn(proxy1::run(listener, p1_link, config, stop.clone()));

    let mut client = TcpStream::connect(p1_tcp).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut client, b"secret hello\n")
        .await
        .unwrap();
    let (got, _) = within("the client is closed", read_to_close(&mut client)).await;
    assert!(got.is_empty(), "the client is told nothing: {got:?}");

    let p2 = p2_stats.snapshot();
    assert!(p2.unauthentic >= 1, "proxy2 counted the rejected frames");
    assert_eq!(p2.received.total(), 0, "proxy2 decoded nothing");
    assert_eq!(p2.sent.total(), 0, "proxy2 sent no frame");
    let p1 = p1_stats.snapshot();
    assert_eq!(p1.received.total(), 0);
    assert!(p1.peer_rejects >= 1, "proxy1 counted proxy2's rejects");
    let mut logged = Vec::new();
    while let Ok(event) = rx.try_recv() {
        if let EventKind::Log { message, .. } = event.kind {
            logged.push(message);
        }
    }
    assert!(
        logged
            .iter()
            .any(|m| m.starts_with("proxy2 rejects our frames: wrong key?")),
        "proxy1 says why: {logged:#?}"
    );
    stop.cancel();
}

#[test]
fn key_file_errors_are_clear() {
    let dir = tempfile::tempdir().unwrap();
    let tunlab = env!("CARGO_BIN_EXE_tunlab");
    let key = dir.path().join("link.key");
    let out = Command::new(tunlab)
        .arg("keygen")
        .arg(&key)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let again = Command::new(tunlab)
        .arg("keygen")
        .arg(&key)
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));
    let run = |args: &[&str]| {
        let out = Command::new(tunlab).args(args).output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let key = key.to_str().unwrap();
    let (code, err) = run(&["proxy2", "0", "localhost", "1818", "--key-file", key]);
    assert_eq!(code, Some(2));
    assert!(err.contains("extended modes only"), "{err}");
    let (code, err) = run(&[
        "proxy1",
        "0",
        "localhost",
        "3328",
        "--wire",
        "selective-repeat",
        "--key-file",
        "/nonexistent/k",
    ]);
    assert_eq!(code, Some(2));
    assert!(err.contains("cannot read key file"), "{err}");
    let short = dir.path().join("short.key");
    std::fs::write(&short, "abcd\n").unwrap();
    let (code, err) = run(&[
        "proxy1",
        "0",
        "localhost",
        "3328",
        "--wire",
        "go-back-n",
        "--key-file",
        short.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(2));
    assert!(err.contains("holds 4 hex digits"), "{err}");
}

fn tshark_infos(file: &Path) -> Vec<String> {
    let output = Command::new("tshark")
        .args(["-n", "-r"])
        .arg(file)
        .args(["-X", &format!("lua_script:{DISSECTOR}")])
        .args([
            "-o",
            "udp.check_checksum:TRUE",
            "-o",
            "ip.check_checksum:TRUE",
        ])
        .args([
            "-T",
            "fields",
            "-e",
            "_ws.col.Protocol",
            "-e",
            "_ws.col.Info",
            "-e",
            "_ws.expert.severity",
        ])
        .output()
        .expect("tshark runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "tshark failed: {stderr}");
    assert!(
        !stderr.to_lowercase().contains("lua"),
        "the dissector complained: {stderr}"
    );
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(has_tshark), ignore = "needs tshark (apt install tshark)")]
async fn decrypt_restores_frames_that_tshark_and_the_dissector_read() {
    let run = sealed_lab(2, 20_000, CaptureFormat::Pcap, DirectionSettings::default()).await;
    let key_file = run._dir.path().join("link.key");
    std::fs::write(&key_file, run.key.to_hex()).unwrap();
    let out = run._dir.path().join("opened.pcap");
    let output = Command::new(env!("CARGO_BIN_EXE_tunlab"))
        .arg("decrypt")
        .arg(&run.capture)
        .arg("-o")
        .arg(&out)
        .arg("--key-file")
        .arg(&key_file)
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let opened = read_pcap(&out); // checks IP and UDP lengths and checksums
    let sealed = read_pcap(&run.capture);
    assert_eq!(opened.len(), sealed.len(), "every packet is kept");
    let file = std::fs::read(&out).unwrap();
    assert!(
        contains(&file, MARKER),
        "the decrypted capture shows the data"
    );
    let data_frames = opened
        .iter()
        .filter(|p| p.datagram[0] == extended::MAGIC)
        .count();
    assert!(data_frames > 10);
    // The sealed capture, as the dissector shows it.
    let infos = tshark_infos(&run.capture);
    assert_eq!(infos.len(), sealed.len());
    assert!(infos.iter().all(|i| i.contains("sealed")), "{infos:#?}");
    // The opened one: the extended frames again.
    let infos = tshark_infos(&out);
    assert!(
        infos
            .iter()
            .any(|i| i.contains(" D") && i.contains("tunlab-plaintext-marker")),
        "{infos:#?}"
    );
    let _ = run.addrs;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sealed_link_stays_intact_through_loss_duplication_reordering_and_corruption() {
    let impaired = DirectionSettings {
        loss: Percent::new(10.0).unwrap(),
        dup: Percent::new(2.0).unwrap(),
        reorder: Percent::new(5.0).unwrap(),
        corrupt: Percent::new(1.0).unwrap(),
        ..DirectionSettings::default()
    };
    // pcapng, so that the decryption of that format is checked too.
    let run = sealed_lab(3, 100_000, CaptureFormat::Pcapng, impaired).await;
    let file = std::fs::read(&run.capture).unwrap();
    assert!(!contains(&file, MARKER), "the capture file holds plaintext");
    // The emulator acts on frames before they are sealed (a corrupted one fails its CRC
    // inside), and its duplicates are sealed twice, with two counters: nothing is taken for
    // a replay, and nothing fails authentication.
    assert_eq!(run.proxy2_stats.unauthentic, 0);
    assert_eq!(run.proxy2_stats.replayed, 0);
    assert!(
        run.proxy2_stats.malformed > 0,
        "corrupted frames were caught by the CRC"
    );
    let key_file = run._dir.path().join("link.key");
    std::fs::write(&key_file, run.key.to_hex()).unwrap();
    let out = run._dir.path().join("opened.pcapng");
    let output = Command::new(env!("CARGO_BIN_EXE_tunlab"))
        .arg("decrypt")
        .arg(&run.capture)
        .arg("-o")
        .arg(&out)
        .arg("--key-file")
        .arg(&key_file)
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let opened = capture_support::read_pcapng(&out);
    let sealed = capture_support::read_pcapng(&run.capture);
    assert_eq!(opened.packets.len(), sealed.packets.len());
    assert!(contains(&std::fs::read(&out).unwrap(), MARKER));
    // The emulator's comments survive the decryption.
    let comments =
        |f: &capture_support::PcapNgFile| f.packets.iter().filter(|p| p.comment.is_some()).count();
    assert!(comments(&sealed) > 0, "the impaired run left comments");
    assert_eq!(comments(&opened), comments(&sealed));
}
