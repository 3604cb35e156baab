//! The lab front end chosen by the command line: the TUI on a terminal, the headless demo
//! otherwise.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

use crate::capture::CaptureWriter;
use crate::cli::{LabArgs, wait_for_signal};
use crate::describe::describe;
use crate::event::{CloseKind, EventSink};
use crate::lab::{Lab, LabConfig};
use crate::roles::echo_client::SIMPLE_MESSAGE;

/// Builds the lab's configuration from the command line.
pub fn lab_config(args: &LabArgs) -> LabConfig {
    let base = LabConfig::default();
    LabConfig {
        host: args.host,
        server_port: args.server_port,
        proxy1_port: args.proxy1_port,
        proxy2_port: args.proxy2_port,
        mode: args.wire.wire,
        proxy1: args.proxy1.config(&args.wire, base.proxy1.proxy2),
        proxy2: args.proxy2.config(&args.wire, base.proxy2.server),
        capture: None,
        link: args.link.settings(),
        link_seed: args.link.seed,
    }
}

/// Runs the lab with the built-in demo: every client sends the simple message, checks the
/// echo, and closes with a FIN. Ctrl-C or SIGTERM ends it early, cleanly.
pub async fn run_lab(args: LabArgs) -> anyhow::Result<ExitCode> {
    // Headless: a scenario file, or the built-in demo scenario when there is no terminal.
    if let Some(script) = &args.script {
        return Ok(crate::script::run_file(script, args.report.as_deref()).await);
    }
    if !std::io::stdout().is_terminal() {
        // The demo is the lab's run without a terminal: it captures as the lab would.
        let capture = &args.capture;
        let capture =
            (!capture.no_capture).then(|| (capture.capture_format, capture.capture_dir.clone()));
        return Ok(crate::script::run_demo(args.report.as_deref(), capture).await);
    }
    let (events, mut rx) = EventSink::channel(64 * 1024);
    let printer = tokio::spawn(async move {
        while let Some(event) = rx.recv().await {
            if let Some(line) = describe(&event.kind, false) {
                println!("{line}");
            }
        }
    });
    let capture = match args.capture.plan() {
        Some(plan) => Some(CaptureWriter::start(plan, events.clone())?),
        None => None,
    };
    let config = LabConfig {
        capture: capture.as_ref().map(CaptureWriter::tap),
        ..lab_config(&args)
    };
    let mut lab = match Lab::start(config, events).await {
        Ok(lab) => lab,
        Err(e) => {
            if let Some(capture) = capture {
                capture.abandon().await;
            }
            return Err(e);
        }
    };
    if let Some(capture) = &capture {
        println!(
            "capturing the link to {}",
            capture.status().path().display()
        );
    }
    // None when Ctrl-C or SIGTERM came first.
    let outcome = tokio::select! {
        result = demo(&mut lab, &args) => Some(result),
        _ = wait_for_signal() => None,
    };
    let snapshot = lab.snapshot();
    lab.shutdown().await;
    // After the roles have stopped, so every frame they sent is in the file.
    if let Some(capture) = capture {
        println!("{}", capture.finish().await.describe());
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), printer).await;
    match outcome {
        Some(result) => result?,
        None => {
            println!("interrupted before the demo finished");
            // The shell's convention for "ended by Ctrl-C".
            return Ok(ExitCode::from(130));
        }
    }
    let mut ok = true;
    if !snapshot.link.settings.is_clear() {
        for line in snapshot.link.lines() {
            println!("{line}");
        }
        println!("link emulator seed {}", snapshot.link.seed);
    }
    for (id, status) in &snapshot.clients {
        let intact = status.intact && status.echoed_bytes == status.sent_bytes;
        ok &= intact;
        println!(
            "client {id}: sent {} bytes, echoed {} bytes, {}",
            status.sent_bytes,
            status.echoed_bytes,
            if intact { "intact" } else { "NOT intact" }
        );
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The demo's traffic: each client sends the simple message, waits for its echo, closes.
async fn demo(lab: &mut Lab, args: &LabArgs) -> anyhow::Result<()> {
    let mut clients = Vec::new();
    for _ in 0..args.clients {
        clients.push(lab.add_client().await?);
    }
    for &client in &clients {
        lab.client_send(client, SIMPLE_MESSAGE.to_vec())?;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while tokio::time::Instant::now() < deadline
        && clients.iter().any(|&c| {
            lab.client_status(c)
                .map(|s| s.echoed_bytes < s.sent_bytes || s.sent_bytes == 0)
                .unwrap_or(false)
        })
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for &client in &clients {
        let _ = lab.client_close(client, CloseKind::Fin);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    Ok(())
}
