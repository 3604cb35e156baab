//! The lab front end chosen by the command line: the TUI on a terminal, the headless demo
//! otherwise.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

use crate::cli::LabArgs;
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
        mode: args.tunnel.wire,
        proxy1: args.tunnel.proxy1_config(base.proxy1.proxy2),
        proxy2: args.tunnel.proxy2_config(base.proxy2.server),
        capture: None,
    }
}

/// Runs the lab: the TUI when stdout is a terminal, otherwise the built-in demo: every client sends the simple message, checks the
/// echo, and closes with a FIN.
pub async fn run_lab(args: LabArgs) -> anyhow::Result<ExitCode> {
    if std::io::stdout().is_terminal() {
        return crate::tui::run(&args).await;
    }
    let (events, mut rx) = EventSink::channel(64 * 1024);
    let printer = tokio::spawn(async move {
        while let Some(event) = rx.recv().await {
            if let Some(line) = describe(&event.kind, false) {
                println!("{line}");
            }
        }
    });
    let mut lab = Lab::start(lab_config(&args), events).await?;
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
    let snapshot = lab.snapshot();
    lab.shutdown().await;
    let _ = tokio::time::timeout(Duration::from_secs(1), printer).await;
    let mut ok = true;
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
