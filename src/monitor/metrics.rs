//! `GET /metrics` in the Prometheus text format (0.0.4), read from the exact counters at
//! every scrape.
//!
//! The exposition is written by `prometheus-client` (the Prometheus project's Rust client):
//! a [`Collector`] turns a fresh copy of the counters into constant metrics on each scrape,
//! so nothing is counted twice and the roles' hot paths are untouched. The HTTP side is a
//! minimal HTTP/1.1 responder on tokio (one request per connection, `Connection: close`):
//! a scrape endpoint needs nothing more, and a web framework would be most of the binary.
//!
//! Metric names (all `tunlab_` prefixed; counters end in `_total`; base units):
//!
//! | metric | labels | what |
//! |---|---|---|
//! | `tunlab_info` | `monitored`, `version` | always 1 |
//! | `tunlab_start_time_seconds` | | Unix time the monitor started |
//! | `tunlab_frames_total` | `endpoint`, `direction` (sent/received), `type` | frames by type |
//! | `tunlab_link_bytes_total` | `endpoint`, `direction` | datagram bytes |
//! | `tunlab_malformed_datagrams_total` | `endpoint` | datagrams that did not decode |
//! | `tunlab_ignored_datagrams_total` | `endpoint` | dropped on purpose (stranger, id not open…) |
//! | `tunlab_retransmissions_total` | `endpoint`, `cause` (timeout/fast) | reliable modes: frames sent again |
//! | `tunlab_rtt_seconds` (histogram) | `endpoint` | reliable modes: each round-trip sample the retransmission timers took (Karn's rule); none in classic mode |
//! | `tunlab_sealed_rejected_datagrams_total` | `endpoint`, `reason` (unauthentic, replayed, peer_reject) | a sealed link's drops |
//! | `tunlab_connections_total` | `role` | connections opened |
//! | `tunlab_connections_open` | `role` | open now |
//! | `tunlab_connections_peak` | `role` | most open at once |
//! | `tunlab_connections_refused_total` | `role` | refused (`NOK`) |
//! | `tunlab_connections_unanswered_total` | `role` | `C` never answered |
//! | `tunlab_emulator_offered_frames_total` | `direction` | frames offered to the emulator |
//! | `tunlab_emulator_delivered_datagrams_total` | `direction` | datagrams that crossed |
//! | `tunlab_emulator_dropped_frames_total` | `direction`, `cause` | drops by cause |
//! | `tunlab_emulator_{duplicated,reordered,corrupted,delayed}_frames_total` | `direction` | |
//! | `tunlab_emulator_queued_datagrams` | `direction` | waiting in the delay line now |
//! | `tunlab_emulator_loss_ratio` (0 to 1), `tunlab_emulator_delay_seconds` | `direction` | settings now |
//! | `tunlab_capture_frames_written_total`, `tunlab_capture_written_bytes_total` | | |
//! | `tunlab_capture_tap_waits_total` | | times a link socket waited for room in the capture's ring |
//! | `tunlab_capture_refused_frames_total` | | frames that reached a stopped capture (not in the file) |
//! | `tunlab_events_dropped_total` | | events the consumer was too slow for |
//! | `tunlab_idle_timeout_seconds` | | the proxies' idle timeout now |

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::{Registry, Unit};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::MonitorSources;
use crate::impair::DropCause;
use crate::tasks::Tasks;
use crate::topology::LinkDirection;
use crate::transport::totals::{RTT_BUCKETS, RttSnapshot};
use crate::wire::FrameKind;

/// The `Content-Type` of what `/metrics` returns.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// Scrapes served at once; more wait for a turn (a scrape takes well under a millisecond).
const CONCURRENT_SCRAPES: usize = 16;
/// The longest request head accepted.
const MAX_REQUEST: usize = 8 * 1024;
/// How long a client may take to send its request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// The whole exposition, as `/metrics` serves it.
pub fn render(sources: &MonitorSources) -> String {
    let mut registry = Registry::with_prefix("tunlab");
    registry.register_collector(Box::new(TunlabCollector(sources.clone())));
    let mut text = String::new();
    prometheus_client::encoding::prometheus_text::encode(&mut text, &registry)
        .expect("writing to a String cannot fail");
    text
}

/// Reads the counters at each scrape.
#[derive(Debug)]
struct TunlabCollector(MonitorSources);

fn frame_type(kind: FrameKind) -> &'static str {
    match kind {
        FrameKind::Connect => "connect",
        FrameKind::ConnectOk => "ok",
        FrameKind::ConnectNok => "nok",
        FrameKind::Data => "data",
        FrameKind::Ack => "ack",
        FrameKind::Close => "close",
    }
}

fn direction_label(direction: LinkDirection) -> &'static str {
    match direction {
        LinkDirection::ToProxy2 => "to_proxy2",
        LinkDirection::ToProxy1 => "to_proxy1",
    }
}

fn cause_label(cause: DropCause) -> &'static str {
    match cause {
        DropCause::Loss => "loss",
        DropCause::Burst => "burst",
        DropCause::Blackhole => "blackhole",
        DropCause::QueueFull => "queue_full",
        DropCause::Stopped => "stopped",
        DropCause::SendFailed => "send_failed",
        DropCause::ByHand => "by_hand",
    }
}

const FRAME_KINDS: [FrameKind; 6] = FrameKind::ALL;
const DIRECTIONS: [LinkDirection; 2] = [LinkDirection::ToProxy2, LinkDirection::ToProxy1];
const CAUSES: [DropCause; 7] = [
    DropCause::Loss,
    DropCause::Burst,
    DropCause::Blackhole,
    DropCause::QueueFull,
    DropCause::Stopped,
    DropCause::SendFailed,
    DropCause::ByHand,
];

type Labels = Vec<(&'static str, String)>;

/// Writes one metric family: a descriptor, then one sample per label set.
fn family<M: EncodeMetric>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    metric_type: MetricType,
    samples: Vec<(Labels, M)>,
) -> Result<(), std::fmt::Error> {
    if samples.is_empty() {
        return Ok(());
    }
    let mut metric = encoder.encode_descriptor(name, help, unit, metric_type)?;
    for (labels, value) in samples {
        if labels.is_empty() {
            value.encode(metric.encode_family(&Vec::<(&str, String)>::new())?)?;
        } else {
            value.encode(metric.encode_family(&labels)?)?;
        }
    }
    Ok(())
}

/// One endpoint's RTT histogram as read at the scrape (prometheus-client has constant
/// counters and gauges, not a constant histogram; its own `Histogram` would be a second
/// copy of counts the transport totals already keep exactly).
struct ConstHistogram(RttSnapshot);

impl EncodeMetric for ConstHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        // The encoder wants each bucket's own count, the +Inf one last, and makes them
        // cumulative itself.
        let buckets: Vec<(f64, u64)> = RTT_BUCKETS
            .iter()
            .copied()
            .chain([f64::INFINITY])
            .zip(self.0.per_bucket)
            .collect();
        encoder.encode_histogram::<NoLabelSet>(
            self.0.sum.as_secs_f64(),
            self.0.count(),
            &buckets,
            None,
        )
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

fn counter(value: u64) -> ConstCounter<u64> {
    ConstCounter::new(value)
}

fn gauge(value: f64) -> ConstGauge<f64> {
    ConstGauge::new(value)
}

fn counter_family(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    samples: Vec<(Labels, u64)>,
) -> Result<(), std::fmt::Error> {
    let samples = samples.into_iter().map(|(l, v)| (l, counter(v))).collect();
    family(encoder, name, help, unit, MetricType::Counter, samples)
}

fn gauge_family(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    samples: Vec<(Labels, f64)>,
) -> Result<(), std::fmt::Error> {
    let samples = samples.into_iter().map(|(l, v)| (l, gauge(v))).collect();
    family(encoder, name, help, unit, MetricType::Gauge, samples)
}

impl Collector for TunlabCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let sources = &self.0;
        let e = &mut encoder;
        gauge_family(
            e,
            "info",
            "What this process monitors; always 1.",
            None,
            vec![(
                vec![
                    ("monitored", sources.name.to_string()),
                    ("version", env!("CARGO_PKG_VERSION").to_string()),
                ],
                1.0,
            )],
        )?;
        let start = sources
            .started
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64();
        gauge_family(
            e,
            "start_time",
            "When the monitored lab or role started, in seconds since the Unix epoch.",
            Some(&Unit::Seconds),
            vec![(vec![], start)],
        )?;

        // The link endpoints: exactly what LinkStats counts.
        let links: Vec<_> = sources
            .links
            .iter()
            .map(|(endpoint, stats)| (endpoint.label(), stats.snapshot()))
            .collect();
        let mut frames = Vec::new();
        let mut bytes = Vec::new();
        let mut malformed = Vec::new();
        let mut ignored = Vec::new();
        let mut retransmits = Vec::new();
        let mut rtt = Vec::new();
        let mut sealed = Vec::new();
        for (endpoint, stats) in &links {
            rtt.push((
                vec![("endpoint", endpoint.to_string())],
                ConstHistogram(stats.transport.rtt),
            ));
            // The reliable modes' transports, counted by the tunnel pump as it sends.
            for (cause, n) in [
                ("timeout", stats.transport.counts.retransmits_timeout),
                ("fast", stats.transport.counts.retransmits_fast),
                ("probe", stats.transport.counts.retransmits_probe),
            ] {
                retransmits.push((
                    vec![
                        ("endpoint", endpoint.to_string()),
                        ("cause", cause.to_string()),
                    ],
                    n,
                ));
            }
            for (reason, n) in [
                ("unauthentic", stats.unauthentic),
                ("replayed", stats.replayed),
                ("peer_reject", stats.peer_rejects),
            ] {
                sealed.push((
                    vec![
                        ("endpoint", endpoint.to_string()),
                        ("reason", reason.to_string()),
                    ],
                    n,
                ));
            }
            for (direction, counts) in [("sent", stats.sent), ("received", stats.received)] {
                for kind in FRAME_KINDS {
                    frames.push((
                        vec![
                            ("endpoint", endpoint.to_string()),
                            ("direction", direction.to_string()),
                            ("type", frame_type(kind).to_string()),
                        ],
                        counts.get(kind),
                    ));
                }
            }
            for (direction, n) in [
                ("sent", stats.sent_bytes),
                ("received", stats.received_bytes),
            ] {
                bytes.push((
                    vec![
                        ("endpoint", endpoint.to_string()),
                        ("direction", direction.to_string()),
                    ],
                    n,
                ));
            }
            malformed.push((vec![("endpoint", endpoint.to_string())], stats.malformed));
            ignored.push((vec![("endpoint", endpoint.to_string())], stats.ignored));
        }
        counter_family(
            e,
            "frames",
            "Frames this endpoint sent to or received from the link, by type.",
            None,
            frames,
        )?;
        counter_family(
            e,
            "link",
            "Datagram bytes this endpoint sent to or received from the link, headers included.",
            Some(&Unit::Bytes),
            bytes,
        )?;
        counter_family(
            e,
            "malformed_datagrams",
            "Datagrams that arrived at this endpoint and did not decode.",
            None,
            malformed,
        )?;
        counter_family(
            e,
            "retransmissions",
            "Data and close frames this endpoint sent again (reliable modes), by cause.",
            None,
            retransmits,
        )?;
        family(
            e,
            "rtt",
            "Round-trip times the reliable modes' retransmission timers measured: one sample per ack that newly acknowledges a frame sent only once (Karn's rule). Classic mode has no acks, so no samples.",
            Some(&Unit::Seconds),
            MetricType::Histogram,
            rtt,
        )?;
        counter_family(
            e,
            "ignored_datagrams",
            "Datagrams this endpoint dropped on purpose (a stranger, an id not open, unexpected, overflow).",
            None,
            ignored,
        )?;
        counter_family(
            e,
            "sealed_rejected_datagrams",
            "Sealed link (--key-file): datagrams dropped because they failed authentication, were replayed, or were proxy2's rejects of our frames.",
            None,
            sealed,
        )?;

        // Connections, from the exact connection table.
        // Every monitored role, with zeros before its first connection.
        let totals: Vec<_> = sources
            .roles()
            .into_iter()
            .map(|role| (role, sources.conns.totals(role)))
            .collect();
        let role = |r: crate::topology::Role| vec![("role", r.label().to_string())];
        counter_family(
            e,
            "connections",
            "Connections opened (at a proxy: asked for with C).",
            None,
            totals.iter().map(|(r, t)| (role(*r), t.opened)).collect(),
        )?;
        gauge_family(
            e,
            "connections_open",
            "Connections open now.",
            None,
            totals
                .iter()
                .map(|(r, t)| (role(*r), t.current as f64))
                .collect(),
        )?;
        gauge_family(
            e,
            "connections_peak",
            "The most connections open at once.",
            None,
            totals
                .iter()
                .map(|(r, t)| (role(*r), t.peak as f64))
                .collect(),
        )?;
        counter_family(
            e,
            "connections_refused",
            "Connections the far side refused (NOK).",
            None,
            totals.iter().map(|(r, t)| (role(*r), t.refused)).collect(),
        )?;
        counter_family(
            e,
            "connections_unanswered",
            "Connections whose C was never answered.",
            None,
            totals
                .iter()
                .map(|(r, t)| (role(*r), t.unanswered))
                .collect(),
        )?;

        // The link emulator, on a role that has one.
        if let Some(emulator) = &sources.emulator {
            let report = emulator.report();
            let per_direction = |value: &dyn Fn(LinkDirection) -> u64| -> Vec<(Labels, u64)> {
                DIRECTIONS
                    .iter()
                    .map(|d| {
                        (
                            vec![("direction", direction_label(*d).to_string())],
                            value(*d),
                        )
                    })
                    .collect()
            };
            counter_family(
                e,
                "emulator_offered_frames",
                "Frames offered to the link emulator.",
                None,
                per_direction(&|d| report.direction(d).sent),
            )?;
            counter_family(
                e,
                "emulator_delivered_datagrams",
                "Datagrams the emulator let cross (copies included).",
                None,
                per_direction(&|d| report.direction(d).delivered),
            )?;
            let mut dropped = Vec::new();
            for direction in DIRECTIONS {
                let counts = report.direction(direction).dropped_by;
                for cause in CAUSES {
                    let n = match cause {
                        DropCause::Loss => counts.loss,
                        DropCause::Burst => counts.burst,
                        DropCause::Blackhole => counts.blackhole,
                        DropCause::QueueFull => counts.queue_full,
                        DropCause::Stopped => counts.stopped,
                        DropCause::SendFailed => counts.send_failed,
                        DropCause::ByHand => counts.by_hand,
                    };
                    dropped.push((
                        vec![
                            ("direction", direction_label(direction).to_string()),
                            ("cause", cause_label(cause).to_string()),
                        ],
                        n,
                    ));
                }
            }
            counter_family(
                e,
                "emulator_dropped_frames",
                "Frames the emulator dropped, by cause.",
                None,
                dropped,
            )?;
            for (name, help, value) in [
                (
                    "emulator_duplicated_frames",
                    "Extra copies the emulator sent.",
                    &(|d: LinkDirection| report.direction(d).duplicated) as &dyn Fn(_) -> u64,
                ),
                (
                    "emulator_reordered_frames",
                    "Frames a later frame overtook.",
                    &|d| report.direction(d).reordered,
                ),
                (
                    "emulator_corrupted_frames",
                    "Frames with a flipped payload bit.",
                    &|d| report.direction(d).corrupted,
                ),
                (
                    "emulator_delayed_frames",
                    "Frames that left later than they were offered.",
                    &|d| report.direction(d).delayed,
                ),
            ] {
                counter_family(e, name, help, None, per_direction(value))?;
            }
            let per_direction_f64 = |value: &dyn Fn(LinkDirection) -> f64| -> Vec<(Labels, f64)> {
                DIRECTIONS
                    .iter()
                    .map(|d| {
                        (
                            vec![("direction", direction_label(*d).to_string())],
                            value(*d),
                        )
                    })
                    .collect()
            };
            gauge_family(
                e,
                "emulator_queued_datagrams",
                "Datagrams waiting in the emulator's delay line now.",
                None,
                per_direction_f64(&|d| report.direction(d).queued as f64),
            )?;
            gauge_family(
                e,
                "emulator_loss",
                "The random loss the emulator is set to, from 0 to 1.",
                Some(&Unit::Other("ratio".into())),
                per_direction_f64(&|d| report.settings.direction(d).loss.get() / 100.0),
            )?;
            gauge_family(
                e,
                "emulator_delay",
                "The delay the emulator is set to.",
                Some(&Unit::Seconds),
                per_direction_f64(&|d| report.settings.direction(d).delay.as_secs_f64()),
            )?;
        }

        if let Some(relay) = &sources.relay {
            let r = relay.snapshot();
            let legs = |values: [u64; 4]| -> Vec<(Labels, u64)> {
                ["from_peers", "to_target", "from_target", "to_peers"]
                    .into_iter()
                    .zip(values)
                    .map(|(leg, n)| (vec![("leg", leg.to_string())], n))
                    .collect()
            };
            counter_family(
                e,
                "relay_datagrams",
                "Datagrams that arrived at the relay (from_peers, from_target) or that it forwarded (to_target, to_peers).",
                None,
                legs([r.from_peers, r.to_target, r.from_target, r.to_peers]),
            )?;
            counter_family(
                e,
                "relay",
                "Bytes of those datagrams (UDP payload).",
                Some(&Unit::Bytes),
                legs([
                    r.from_peers_bytes,
                    r.to_target_bytes,
                    r.from_target_bytes,
                    r.to_peers_bytes,
                ]),
            )?;
            gauge_family(
                e,
                "relay_peers",
                "Peers with a socket of their own toward the target now.",
                None,
                vec![(vec![], r.peers_now as f64)],
            )?;
            for (name, help, value) in [
                (
                    "relay_peers_opened",
                    "Peers given a socket of their own.",
                    r.peers_opened,
                ),
                (
                    "relay_peers_expired",
                    "Peers whose socket was closed after --peer-idle of silence.",
                    r.peers_expired,
                ),
                (
                    "relay_peers_refused_datagrams",
                    "Datagrams dropped because --max-peers peers already had a socket.",
                    r.peers_refused,
                ),
                (
                    "relay_target_refused_datagrams",
                    "Datagrams the target refused (ICMP port unreachable).",
                    r.target_refused,
                ),
                (
                    "relay_send_failures",
                    "Sends the operating system refused.",
                    r.send_failed,
                ),
            ] {
                counter_family(e, name, help, None, vec![(vec![], value)])?;
            }
        }

        if let Some(capture) = &sources.capture {
            counter_family(
                e,
                "capture_frames_written",
                "Frames written to the capture file.",
                None,
                vec![(vec![], capture.frames_written())],
            )?;
            counter_family(
                e,
                "capture_written",
                "Size of the capture file so far.",
                Some(&Unit::Bytes),
                vec![(vec![], capture.bytes_written())],
            )?;
            counter_family(
                e,
                "capture_tap_waits",
                "Times a link socket found the capture's ring full and waited for the writer \
                 (the capture never drops a frame; it slows the tunnel instead).",
                None,
                vec![(vec![], capture.tap_waits())],
            )?;
            counter_family(
                e,
                "capture_refused_frames",
                "Frames that reached the capture after its writer had stopped (finished or \
                 failed), and so are not in the file.",
                None,
                vec![(vec![], capture.refused())],
            )?;
        }
        counter_family(
            e,
            "events_dropped",
            "Events the screen or log was too slow for (counters are exact regardless).",
            None,
            vec![(vec![], sources.events.dropped())],
        )?;
        if let Some(timeout) = sources.idle_timeouts.first() {
            gauge_family(
                e,
                "idle_timeout",
                "A tunnel connection idle this long is closed.",
                Some(&Unit::Seconds),
                vec![(vec![], timeout.get().as_secs_f64())],
            )?;
        }
        Ok(())
    }
}

/// Serves `/metrics` until `stop`, one task per request in `tasks`.
pub async fn serve(
    listener: TcpListener,
    sources: MonitorSources,
    stop: CancellationToken,
    tasks: Tasks,
) {
    let turns = Arc::new(Semaphore::new(CONCURRENT_SCRAPES));
    loop {
        let accepted = tokio::select! {
            () = stop.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let Ok((stream, peer)) = accepted else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let Ok(turn) = turns.clone().acquire_owned().await else {
            return;
        };
        let sources = sources.clone();
        let stop = stop.clone();
        tasks.spawn("metrics request", async move {
            tokio::select! {
                () = stop.cancelled() => {}
                () = respond(stream, peer, &sources) => {}
            }
            drop(turn);
        });
    }
}

/// A parsed request line.
#[derive(Debug, PartialEq, Eq)]
struct Request<'a> {
    method: &'a str,
    path: &'a str,
}

/// The status line, headers and body for one request head: pure, so it is tested apart.
fn answer(head: &[u8], sources: &MonitorSources) -> (u16, &'static str, String) {
    let Some(request) = parse_request(head) else {
        return (
            400,
            "Bad Request",
            "a request line is METHOD PATH HTTP/1.x\n".into(),
        );
    };
    // The query string does not matter (Prometheus may add some).
    let path = request.path.split('?').next().unwrap_or("");
    match (request.method, path) {
        ("GET" | "HEAD", "/metrics") => (200, "OK", render(sources)),
        ("GET" | "HEAD", "/") => (
            200,
            "OK",
            format!(
                "tunlab {} ({}): the metrics are at /metrics\n",
                env!("CARGO_PKG_VERSION"),
                sources.name
            ),
        ),
        ("GET" | "HEAD", _) => (404, "Not Found", "only /metrics is here\n".into()),
        _ => (
            405,
            "Method Not Allowed",
            "only GET and HEAD are served\n".into(),
        ),
    }
}

fn parse_request(head: &[u8]) -> Option<Request<'_>> {
    let head = std::str::from_utf8(head).ok()?;
    let line = head.lines().next()?;
    let mut parts = line.split(' ');
    let (method, path, version) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || !version.starts_with("HTTP/1.") || !path.starts_with('/') {
        return None;
    }
    Some(Request { method, path })
}

async fn respond(mut stream: TcpStream, _peer: SocketAddr, sources: &MonitorSources) {
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    let complete = tokio::time::timeout(REQUEST_TIMEOUT, async {
        loop {
            if head.windows(4).any(|w| w == b"\r\n\r\n") || head.windows(2).any(|w| w == b"\n\n") {
                return true;
            }
            if head.len() > MAX_REQUEST {
                return false;
            }
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return false,
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .unwrap_or(false);
    let (status, reason, body, content_type) = if complete {
        let (status, reason, body) = answer(&head, sources);
        let content_type = if status == 200 && body.starts_with("# ") {
            CONTENT_TYPE
        } else {
            "text/plain; charset=utf-8"
        };
        (status, reason, body, content_type)
    } else if head.len() > MAX_REQUEST {
        (
            431,
            "Request Header Fields Too Large",
            "request too large\n".to_string(),
            "text/plain; charset=utf-8",
        )
    } else {
        return;
    };
    let head_only = head.starts_with(b"HEAD ");
    let mut response = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    if status == 405 {
        response.push_str("Allow: GET, HEAD\r\n");
    }
    response.push_str("\r\n");
    if !head_only {
        response.push_str(&body);
    }
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::EventSink;
    use crate::link::LinkStats;
    use crate::monitor::ConnTable;
    use crate::topology::{Endpoint, Role};

    fn sources() -> MonitorSources {
        MonitorSources::new(
            "proxy1",
            Role::Proxy1,
            EventSink::disabled(),
            Arc::new(ConnTable::new()),
        )
        .with_link(Endpoint::Proxy1, Arc::new(LinkStats::default()))
    }

    #[test]
    fn requests_are_answered_by_path_and_method() {
        let sources = sources();
        let (status, _, body) = answer(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", &sources);
        assert_eq!(status, 200);
        assert!(
            body.contains("# TYPE tunlab_frames_total counter"),
            "{body}"
        );
        assert_eq!(
            answer(b"GET /metrics?x=1 HTTP/1.0\r\n\r\n", &sources).0,
            200
        );
        assert_eq!(answer(b"GET /other HTTP/1.1\r\n\r\n", &sources).0, 404);
        assert_eq!(answer(b"POST /metrics HTTP/1.1\r\n\r\n", &sources).0, 405);
        assert_eq!(answer(b"nonsense\r\n\r\n", &sources).0, 400);
        assert_eq!(answer(b"GET metrics HTTP/1.1\r\n\r\n", &sources).0, 400);
    }

    #[test]
    fn names_follow_prometheus_conventions() {
        let text = render(&sources());
        for line in text.lines().filter(|l| l.starts_with("# TYPE ")) {
            let mut parts = line.split(' ').skip(2);
            let (name, kind) = (parts.next().unwrap(), parts.next().unwrap());
            assert!(name.starts_with("tunlab_"), "{line}");
            assert_eq!(kind == "counter", name.ends_with("_total"), "{line}");
        }
        assert!(text.contains("tunlab_link_bytes_total{endpoint=\"proxy1\",direction=\"sent\"} 0"));
        assert!(text.contains("tunlab_start_time_seconds "));
    }
}
