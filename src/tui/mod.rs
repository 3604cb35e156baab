//! The terminal front end: all four roles live on one screen, a panel per connection id, a
//! ladder diagram of the selected one, and keys that drive the lab.
//!
//! This is the only module that knows about ratatui and crossterm. It reads the lab's event
//! stream like any other consumer, and changes the lab only through [`crate::lab::Lab`]'s
//! methods, the same ones the headless script runner calls.
//!
//! - [`state`]: what is known, a pure fold of events (`update`) and lab snapshots.
//! - [`render`]: one file per panel, pure functions of the state.
//! - [`app`]: keys to commands (pure), and setting up and tearing down the lab and terminal.
//! - [`screen_loop`]: the loop that ties lab, state and screen together, on any backend.
//! - `terminal`: raw mode, the alternate screen, and restoring them on every way out.

pub mod app;
pub mod conn_table;
pub mod play;
pub mod render;
pub mod screen_loop;
pub mod state;
mod terminal;

pub use app::run;
