//! Runs a checked scenario against a real lab: starts it, performs each step through the
//! `Lab` API (the same calls the TUI's keys make), reads the event stream the whole time,
//! and stops at the deadline if the steps take too long.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::capture::{CaptureOutcome, CaptureRun};
use super::fold::Fold;
use super::scenario::{
    Action, ClientSel, Condition, FramePick, HeldAction, MAX_DEADLINE, Scenario, Step,
};
use crate::capture::TcpCapture;
use crate::event::{ClientEnd, ClientId, Event, EventSink};
use crate::impair::LinkSettings;
use crate::lab::{Lab, LabAddrs, LabSnapshot};
use crate::monitor::{ConnTable, Monitor, MonitorPlan, MonitorSources};
use crate::roles::echo_client::ClientStatus;

/// Events the stream holds before it starts dropping (and counting) them. The runner reads
/// continuously, so this only absorbs bursts.
const EVENT_CAPACITY: usize = 256 * 1024;
/// How often a `wait_for` looks at the lab again (and a front may redraw).
pub const POLL: Duration = Duration::from_millis(10);
/// After the steps, the counters must stay still this long before the snapshot is taken, so
/// frames in flight (an `X` after a close) are counted…
const SETTLE_QUIET: Duration = Duration::from_millis(60);
/// …but never longer than this.
const SETTLE_LIMIT: Duration = Duration::from_secs(1);

/// What a run observed: everything the expectations and the report are made of.
pub struct Outcome {
    /// Exact counters and client statuses, taken once the steps were over and the link quiet.
    pub snapshot: LabSnapshot,
    /// The event stream, folded per connection, up to the snapshot.
    pub fold: Fold,
    pub capture: Option<CaptureOutcome>,
    pub addrs: LabAddrs,
    /// Bytes the steps asked each client to send.
    pub requested: HashMap<ClientId, u64>,
    /// Steps that finished.
    pub steps_completed: usize,
    /// Why the steps did not all finish (a step failed, or the deadline passed).
    pub failure: Option<String>,
    /// From the lab's start to the snapshot.
    pub duration: Duration,
    /// The link emulator's settings when the lab started (the snapshot has them at the end).
    pub link_at_start: LinkSettings,
    /// Each `socks5` step's client, in step order (SOCKS5 client 1, 2…).
    pub socks5: Vec<crate::script::socks5_client::Socks5Outcome>,
}

/// Why a step could not go on.
struct StepFailure(String);

/// Who watches a run: the headless summary (stdout), or the TUI's `--play`. The runner
/// calls it at each point a person could see or steer; it never draws anything itself.
#[allow(async_fn_in_trait)] // implemented in this crate only, and awaited in place
pub trait Front {
    /// A line of the step log.
    fn say(&mut self, line: String);
    /// Every event the runner reads, in order, before the runner folds it.
    fn event(&mut self, _event: &Event) {}
    /// Before step `index` runs: false stops the run (the person quit). May use the lab (the
    /// TUI's keys do).
    async fn before_step(&mut self, _lab: &mut Lab, _index: usize, _step: &Step) -> bool {
        true
    }
    /// Step `index` is done.
    fn step_done(&mut self, _index: usize) {}
    /// While time passes inside a step, about every [`POLL`]: a chance to redraw.
    fn tick(&mut self, _lab: &Lab) {}
    /// Whether the scenario's deadline applies (not while a person steps through it).
    fn deadline_applies(&self) -> bool {
        true
    }
    /// Cancelled when the person wants to stop in the middle of a step (the run then ends
    /// cleanly, like on Ctrl-C).
    fn stop(&self) -> Option<tokio_util::sync::CancellationToken> {
        None
    }
}

/// The headless front: the step log on stdout.
pub struct Stdout;

impl Front for Stdout {
    fn say(&mut self, line: String) {
        println!("{line}");
    }
}

/// Runs `scenario`, serving `/metrics` and the admin protocol meanwhile when `monitor` asks.
/// `Err` means the lab could not start (the scenario is then unusable as written here, for
/// example a fixed port that is taken). Cancelling `shutdown` (Ctrl-C or SIGTERM: see
/// [`crate::shutdown::SignalToken`]) ends the steps; the lab still stops cleanly.
pub async fn run(
    scenario: &Scenario,
    monitor: &MonitorPlan,
    shutdown: CancellationToken,
) -> anyhow::Result<Outcome> {
    run_with(scenario, monitor, shutdown, &mut Stdout).await
}

/// Runs `scenario` with `front` watching (and, between steps, steering), until the steps end
/// or `shutdown` is cancelled.
pub async fn run_with<F: Front>(
    scenario: &Scenario,
    monitor: &MonitorPlan,
    shutdown: CancellationToken,
    front: &mut F,
) -> anyhow::Result<Outcome> {
    let (events, receiver) = EventSink::channel(EVENT_CAPACITY);
    // The permission to read loopback is checked before any file is made.
    let tcp = if scenario.lab.capture_tcp {
        Some(TcpCapture::open()?)
    } else {
        None
    };
    // The monitor's connection table sees every event before the channel could drop one.
    let conns = monitor.is_on().then(|| Arc::new(ConnTable::new()));
    let events = match &conns {
        Some(conns) => events.with_observer(conns.clone()),
        None => events,
    };
    let mut capture = scenario
        .lab
        .capture
        .map(|format| {
            let lab = &scenario.lab;
            CaptureRun::start(
                format,
                &lab.capture_dir,
                lab.wire,
                &scenario.name,
                &events,
                lab.capture_tcp,
            )
        })
        .transpose()?;
    let tcp_events = events.clone();
    let mut config = scenario.lab.lab_config();
    config.capture = capture.as_ref().map(CaptureRun::tap);
    if let Some(link) = &scenario.lab.link {
        link.configure(&mut config);
    }
    let lab = match Lab::start(config, events).await {
        Ok(lab) => lab,
        Err(e) => {
            if let Some(capture) = capture {
                capture.abandon().await;
            }
            return Err(e);
        }
    };
    let addrs = lab.addrs();
    if let (Some(capture), Some(tcp)) = (&mut capture, tcp) {
        let ports = [addrs.proxy1_tcp.port(), addrs.server.port()];
        capture.capture_tcp(tcp, &ports, tcp_events)?;
        front.say(format!(
            "capturing the TCP legs too: ports {} and {} on {}",
            ports[0],
            ports[1],
            crate::capture::tcp::LOOPBACK
        ));
    }
    let link_at_start = lab.link_settings();
    front.say(format!(
        "lab up: echo server {} (tcp), proxy2 {} (udp), proxy1 {} (tcp) / {} (udp)",
        addrs.server, addrs.proxy2_udp, addrs.proxy1_tcp, addrs.proxy1_udp
    ));
    let monitor = match conns {
        Some(conns) => {
            let status = capture.as_ref().map(CaptureRun::status);
            match Monitor::start(monitor, MonitorSources::for_lab(&lab, conns, status)).await {
                Ok(monitor) => Some(monitor),
                Err(e) => {
                    lab.shutdown().await;
                    if let Some(capture) = capture {
                        capture.abandon().await;
                    }
                    return Err(e);
                }
            }
        }
        None => None,
    };
    if let Some(line) = monitor.as_ref().and_then(Monitor::describe) {
        front.say(line);
    }
    let deadline_applies = front.deadline_applies();
    let stop = front.stop().unwrap_or_default();
    let mut runner = Runner {
        front,
        lab,
        receiver,
        fold: Fold::default(),
        started: Instant::now(),
        requested: HashMap::new(),
        current: None,
        waiting_on: None,
        steps_completed: 0,
        socks5: Vec::new(),
    };

    // Everything from here to the last step is bounded by the deadline (unless a person
    // steps through it: then they decide when it ends).
    let deadline = if deadline_applies {
        runner.started + scenario.deadline
    } else {
        runner.started + MAX_DEADLINE * 24
    };
    let steps = async {
        runner
            .start_clients(scenario.lab.clients)
            .await
            .map_err(|StepFailure(why)| {
                StepFailure(format!("the lab's first clients did not start: {why}"))
            })?;
        runner.run_steps(&scenario.steps).await
    };
    // Ctrl-C or SIGTERM ends the steps too, but not the run: the lab still stops cleanly,
    // the capture is drained to disk and the report written, so nothing is lost.
    let ended = tokio::select! {
        result = tokio::time::timeout_at(deadline, steps) => Some(Ok(result)),
        () = shutdown.cancelled() => None,
        () = stop.cancelled() => Some(Err(())),
    };
    let failure = match ended {
        Some(Ok(Ok(Ok(())))) => None,
        Some(Ok(Ok(Err(StepFailure(why))))) => Some(why),
        Some(Ok(Err(_elapsed))) => Some(runner.deadline_message(scenario)),
        Some(Err(())) => Some(match &runner.current {
            Some(step) => format!("stopped during the step at line {} (quit)", step.line),
            None => "stopped (quit)".to_string(),
        }),
        None => Some("interrupted by a signal (Ctrl-C or SIGTERM): stopping the lab".to_string()),
    };
    if let Some(why) = &failure {
        let line = format!("{} {why}", runner.stamp());
        runner.front.say(line);
    }

    runner.settle().await;
    let snapshot = runner.lab.snapshot();
    runner.drain();
    let duration = runner.started.elapsed();
    let Runner {
        lab,
        fold,
        requested,
        steps_completed,
        socks5,
        ..
    } = runner;
    if let Some(monitor) = monitor {
        monitor.stop().await;
    }
    lab.shutdown().await;
    let capture = match capture {
        Some(capture) => Some(capture.finish().await),
        None => None,
    };
    Ok(Outcome {
        snapshot,
        fold,
        capture,
        addrs,
        requested,
        steps_completed,
        failure,
        duration,
        link_at_start,
        socks5,
    })
}

struct Runner<'f, F: Front> {
    front: &'f mut F,
    lab: Lab,
    receiver: mpsc::Receiver<Event>,
    fold: Fold,
    started: Instant,
    requested: HashMap<ClientId, u64>,
    /// The step running now, for the deadline message.
    current: Option<Step>,
    /// What the current `wait_for` is still waiting for.
    waiting_on: Option<String>,
    steps_completed: usize,
    /// What each SOCKS5 client step got, in order.
    socks5: Vec<crate::script::socks5_client::Socks5Outcome>,
}

impl<F: Front> Runner<'_, F> {
    /// `[  0.123s]`: time since the lab started, for the step log.
    fn stamp(&self) -> String {
        format!("[{:>8.3}s]", self.started.elapsed().as_secs_f64())
    }

    /// Takes in every event already in the stream.
    fn drain(&mut self) {
        while let Ok(event) = self.receiver.try_recv() {
            self.front.event(&event);
            self.fold.apply(&event.kind);
        }
    }

    /// Lets time pass until `until`, taking in events as they come.
    async fn pass_time_until(&mut self, until: Instant) {
        let mut next_tick = Instant::now() + POLL;
        loop {
            tokio::select! {
                event = self.receiver.recv() => match event {
                    Some(event) => {
                        self.front.event(&event);
                        self.fold.apply(&event.kind);
                    }
                    None => {
                        tokio::time::sleep_until(until).await;
                        return;
                    }
                },
                () = tokio::time::sleep_until(until) => return,
                () = tokio::time::sleep_until(next_tick) => {
                    self.front.tick(&self.lab);
                    next_tick = Instant::now() + POLL;
                }
            }
        }
    }

    /// Starts clients in order: on a fresh lab, client N gets id N-1.
    async fn start_clients(&mut self, n: u32) -> Result<(), StepFailure> {
        self.lab
            .add_clients(n)
            .await
            .map_err(|e| StepFailure(e.to_string()))?;
        Ok(())
    }

    async fn run_steps(&mut self, steps: &[Step]) -> Result<(), StepFailure> {
        for (index, step) in steps.iter().enumerate() {
            self.drain();
            if !self.front.before_step(&mut self.lab, index, step).await {
                return Err(StepFailure(format!(
                    "stopped before the step at line {} (quit)",
                    step.line
                )));
            }
            if let Some(at) = step.at {
                self.pass_time_until(self.started + at).await;
            }
            self.current = Some(step.clone());
            self.waiting_on = None;
            let line = format!(
                "{} line {:<4} {}",
                self.stamp(),
                step.line,
                step.action.describe()
            );
            self.front.say(line);
            self.run_step(&step.action)
                .await
                .map_err(|StepFailure(why)| {
                    StepFailure(format!("step at line {} failed: {why}", step.line))
                })?;
            self.steps_completed += 1;
            self.front.step_done(index);
        }
        self.current = None;
        Ok(())
    }

    async fn run_step(&mut self, action: &Action) -> Result<(), StepFailure> {
        let lab_error = |e: crate::lab::LabError| StepFailure(e.to_string());
        match action {
            Action::StartClients(n) => self.start_clients(*n).await,
            Action::Send {
                clients,
                message,
                count,
                interval,
            } => {
                for round in 0..*count {
                    for client in self.live_clients(clients)? {
                        let requested = self.requested.entry(client).or_default();
                        let bytes = message.bytes_at(*requested);
                        *requested += bytes.len() as u64;
                        self.lab.client_send(client, bytes).map_err(lab_error)?;
                    }
                    if round + 1 < *count && !interval.is_zero() {
                        self.pass_time_until(Instant::now() + *interval).await;
                    }
                }
                Ok(())
            }
            Action::Close { clients, how } => {
                for client in self.live_clients(clients)? {
                    self.lab.client_close(client, *how).map_err(lab_error)?;
                }
                Ok(())
            }
            Action::Stop(role) => self.lab.stop_role(role.role()).await.map_err(lab_error),
            Action::Start(role) => self.lab.start_role(role.role()).await.map_err(lab_error),
            Action::Wait(duration) => {
                self.pass_time_until(Instant::now() + *duration).await;
                Ok(())
            }
            Action::WaitFor {
                condition,
                clients,
                timeout,
            } => self.wait_for(*condition, clients, *timeout).await,
            Action::SetLink(spec) => spec.apply(&mut self.lab).map_err(lab_error),
            Action::Hold(on) => {
                self.lab.set_hold(*on);
                Ok(())
            }
            Action::Held {
                what,
                pick,
                timeout,
            } => self.act_on_held(*what, pick, *timeout).await,
            Action::Socks5(request) => {
                let addrs = self.lab.addrs();
                let proxy1 = addrs.proxy1_socks5.ok_or_else(|| {
                    StepFailure("the lab has no SOCKS5 port ([lab.socks5])".into())
                })?;
                // The client runs while the events keep being folded (a long one would
                // otherwise fill the event channel).
                let client = crate::script::socks5_client::run(request, proxy1, addrs.server);
                tokio::pin!(client);
                let outcome = loop {
                    tokio::select! {
                        outcome = &mut client => break outcome,
                        () = tokio::time::sleep(POLL) => self.drain(),
                    }
                };
                self.front.say(format!(
                    "{} SOCKS5 client {}: {}{}",
                    self.stamp(),
                    self.socks5.len() + 1,
                    outcome.reply.name(),
                    match outcome.echo_intact {
                        Some(true) => ", echo intact",
                        Some(false) => ", echo changed",
                        None => "",
                    }
                ));
                self.socks5.push(outcome);
                Ok(())
            }
        }
    }

    /// Waits until the picked frame is held (frames reach the link when their role sends
    /// them), then releases, drops or duplicates it.
    async fn act_on_held(
        &mut self,
        what: HeldAction,
        pick: &FramePick,
        timeout: Option<Duration>,
    ) -> Result<(), StepFailure> {
        let give_up = timeout.map(|t| Instant::now() + t);
        loop {
            let held = self.lab.held_frames();
            if let Some(frame) = pick.find(&held) {
                let id = frame.id;
                let done = match what {
                    HeldAction::Release => self.lab.release_held(Some(id)),
                    HeldAction::Drop => self.lab.drop_held(id),
                    HeldAction::Duplicate => self.lab.duplicate_held(id),
                };
                return match done {
                    Some(_) => Ok(()),
                    None => Err(StepFailure(format!("{pick} was let go meanwhile"))),
                };
            }
            let listing: Vec<String> = held
                .iter()
                .map(|h| {
                    // Numbered from the connection's ISNs, as the trace numbers them.
                    let bases = self.fold.bases(h.frame.id, h.direction);
                    format!(
                        "{} {}",
                        h.direction.arrow(),
                        crate::describe::frame_label_relative(&h.frame, bases)
                    )
                })
                .collect();
            let now = if listing.is_empty() {
                "nothing is held".to_string()
            } else {
                format!("held: {}", listing.join(", "))
            };
            self.waiting_on = Some(format!("{pick}; {now}"));
            if let Some(give_up) = give_up
                && Instant::now() >= give_up
            {
                return Err(StepFailure(format!(
                    "{pick} did not come within {}; {now}",
                    humantime::format_duration(timeout.unwrap_or_default())
                )));
            }
            self.pass_time_until(Instant::now() + POLL).await;
        }
    }

    /// The clients a send or close applies to: with "all", the ones still connected; a
    /// client named on purpose must still be connected.
    fn live_clients(&self, selection: &ClientSel) -> Result<Vec<ClientId>, StepFailure> {
        match selection {
            ClientSel::All => {
                let live: Vec<ClientId> = self
                    .lab
                    .client_ids()
                    .into_iter()
                    .filter(|&c| self.status(c).ended.is_none())
                    .collect();
                if live.is_empty() {
                    return Err(StepFailure("every client has already ended".into()));
                }
                Ok(live)
            }
            ClientSel::Some(list) => {
                for &client in list {
                    if let Some(end) = self.status(client).ended {
                        return Err(StepFailure(format!(
                            "client {client} has already ended ({})",
                            end_label(end)
                        )));
                    }
                }
                Ok(list.clone())
            }
        }
    }

    fn status(&self, client: ClientId) -> ClientStatus {
        self.lab.client_status(client).unwrap_or_default()
    }

    async fn wait_for(
        &mut self,
        condition: Condition,
        selection: &ClientSel,
        timeout: Option<Duration>,
    ) -> Result<(), StepFailure> {
        let give_up = timeout.map(|t| Instant::now() + t);
        loop {
            self.drain();
            match self.condition(condition, selection)? {
                None => return Ok(()),
                Some(pending) => self.waiting_on = Some(pending),
            }
            if let Some(give_up) = give_up
                && Instant::now() >= give_up
            {
                return Err(StepFailure(format!(
                    "gave up after {}: {}",
                    humantime::format_duration(timeout.unwrap_or_default()),
                    self.waiting_on.as_deref().unwrap_or("")
                )));
            }
            self.pass_time_until(Instant::now() + POLL).await;
        }
    }

    /// `None` when the condition holds; otherwise what is still missing. An error when it
    /// can no longer hold (the client it waits for has ended).
    fn condition(
        &self,
        condition: Condition,
        selection: &ClientSel,
    ) -> Result<Option<String>, StepFailure> {
        if condition == Condition::IdsFree {
            // After a lossy period an `X` may have been lost: then only the idle timeout frees
            // the id at the side that missed it, and the message says so.
            let idle = humantime::format_duration(self.lab.config().proxy2.idle_timeout.get());
            let busy: Vec<String> = self
                .fold
                .busy()
                .map(|c| {
                    if c.freed_at_proxy1 {
                        format!(
                            "id {} still taken at proxy2 (if proxy1's X{} was lost, proxy2 frees it after idle_timeout, {idle})",
                            c.id, c.id
                        )
                    } else {
                        format!("id {} still taken at proxy1", c.id)
                    }
                })
                .collect();
            return Ok((!busy.is_empty()).then(|| busy.join(", ")));
        }
        let named = matches!(selection, ClientSel::Some(_));
        let clients = match selection {
            ClientSel::All => self.lab.client_ids(),
            ClientSel::Some(list) => list.clone(),
        };
        let mut pending = Vec::new();
        for client in clients {
            let status = self.status(client);
            let conn = status.local.and_then(|local| self.fold.latest_for(local));
            let ended = |what: &str| {
                StepFailure(format!(
                    "client {client} ended ({}) {what}",
                    status.ended.map_or("", end_label)
                ))
            };
            match condition {
                Condition::Echoes => {
                    let requested = self.requested.get(&client).copied().unwrap_or(0);
                    if status.echoed_bytes >= requested {
                        continue;
                    }
                    if status.ended.is_some() {
                        if named {
                            return Err(ended(&format!(
                                "with {} of {requested} bytes echoed",
                                status.echoed_bytes
                            )));
                        }
                        continue;
                    }
                    pending.push(format!(
                        "client {client} has {} of {requested} bytes back",
                        status.echoed_bytes
                    ));
                }
                Condition::Closed => {
                    if status.ended.is_none() {
                        pending.push(format!("client {client} is still connected"));
                    }
                }
                Condition::Open => match conn {
                    Some(conn) if conn.opened && !conn.freed_at_proxy1 => {}
                    _ if status.ended.is_some() => {
                        if named {
                            return Err(ended("before its tunnel connection opened"));
                        }
                    }
                    Some(conn) => {
                        pending.push(format!("client {client} has id {} but no OK yet", conn.id));
                    }
                    None => pending.push(format!("client {client} has no tunnel id yet")),
                },
                Condition::Waiting => {
                    let waited = status.local.is_some_and(|local| self.fold.waited(local));
                    if !waited {
                        if status.ended.is_some() && named {
                            return Err(ended("without waiting for an id"));
                        }
                        pending.push(format!("client {client} is not waiting for an id"));
                    }
                }
                Condition::IdsFree => unreachable!("handled above"),
            }
        }
        Ok((!pending.is_empty()).then(|| pending.join(", ")))
    }

    /// The message when the deadline cuts the steps short.
    fn deadline_message(&self, scenario: &Scenario) -> String {
        let deadline = humantime::format_duration(scenario.deadline);
        match &self.current {
            Some(step) => {
                let mut message = format!(
                    "deadline of {deadline} passed during the step at line {} ({})",
                    step.line,
                    step.action.describe()
                );
                if let Some(pending) = &self.waiting_on {
                    message.push_str(&format!("; still waiting: {pending}"));
                }
                message
            }
            None => format!("deadline of {deadline} passed before the steps were over"),
        }
    }

    /// Waits until the exact counters and client statuses stop changing (bounded), so the
    /// last frames of a close are counted.
    async fn settle(&mut self) {
        let limit = Instant::now() + SETTLE_LIMIT;
        let mut last = self.counters();
        let mut quiet_since = Instant::now();
        while Instant::now() < limit {
            self.pass_time_until(Instant::now() + POLL).await;
            let now = self.counters();
            if now != last {
                last = now;
                quiet_since = Instant::now();
            } else if quiet_since.elapsed() >= SETTLE_QUIET {
                break;
            }
        }
        self.drain();
    }

    fn counters(&self) -> Quiet {
        let snapshot = self.lab.snapshot();
        (snapshot.proxy1, snapshot.proxy2, snapshot.clients)
    }
}

/// What must stop changing before the final snapshot.
type Quiet = (
    crate::link::LinkStatsSnapshot,
    crate::link::LinkStatsSnapshot,
    Vec<(ClientId, ClientStatus)>,
);

/// How a client ended, in a few words.
pub fn end_label(end: ClientEnd) -> &'static str {
    match end {
        ClientEnd::ByClient(crate::event::CloseKind::Fin) => "closed with FIN",
        ClientEnd::ByClient(crate::event::CloseKind::Rst) => "aborted with RST",
        ClientEnd::ByTunnel => "closed by the tunnel",
        ClientEnd::Error => "socket error",
    }
}
