//! tunlab: a terminal lab for carrying many TCP connections over one UDP link.
//!
//! Engine modules ([`wire`], [`transport`], [`event`], [`link`], [`roles`], [`lab`],
//! [`capture`]) know nothing about terminals; front ends consume the lab's [`event`] stream. The terminal front
//! end is [`tui`], the only module that uses ratatui.

pub mod app;
pub mod capture;
pub mod cli;
pub mod describe;
pub mod destination;
pub mod event;
pub mod fd_limit;
pub mod headless;
pub mod impair;
pub mod lab;
pub mod link;
pub mod monitor;
pub mod net;
pub mod netns;
pub mod roles;
pub mod script;
pub mod secret;
pub mod shutdown;
pub mod tasks;
pub mod topology;
pub mod transport;
pub mod tui;
pub mod tunnel;
pub mod wire;
