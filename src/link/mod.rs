//! One end of the UDP link: a socket that speaks frames, counts everything it does, reports
//! it on the event stream and feeds the capture tap.
//!
//! Both proxies use [`LinkSocket`], so framing, counting, tracing, capture and link
//! emulation behave the same on either side.

pub mod seal;

pub mod batch;
mod counters;
pub mod decrypt;
mod emulator;
mod socket;
mod tap;

pub use counters::{KindCounters, KindCounts, LinkStats, LinkStatsSnapshot};
pub use emulator::EmulatorScope;
pub use socket::{LinkSocket, RECV_BUFFER, Received, SealStatus};
pub use tap::TapScope;
