//! The emulator's command-line flags, shared by the lab and the standalone `proxy1` and
//! `proxy2` subcommands (flattened into each).
//!
//! Every setting has a two-way form (`--loss 10`) and one per direction
//! (`--loss-to-proxy2 10`, `--loss-to-proxy1 5`); a per-direction flag wins over the two-way
//! one. Bad values are refused by clap with the reason (`--loss 150`: "150 is not a
//! percentage from 0 to 100"). What they ask for (`LinkArgs::settings`) is in `app::args`.

// Doc comments here are --help text, printed as written: no Markdown backticks.
#![allow(clippy::doc_markdown)]

use std::time::Duration;

use clap::Args;

use crate::impair::settings::{BitRate, BurstLoss, Percent, parse_delay, parse_queue};

/// Link emulator flags.
#[derive(Debug, Args, Clone, Default, PartialEq)]
#[command(
    next_help_heading = "Link emulator (every flag also comes as --FLAG-to-proxy2 and --FLAG-to-proxy1; see --help)"
)]
pub struct LinkArgs {
    /// Drop PCT % of frames at random (0-100, fractions allowed: 0.5).
    #[arg(long, value_name = "PCT")]
    pub loss: Option<Percent>,

    /// Like --loss, only for frames proxy1 sends to proxy2.
    #[arg(long, value_name = "PCT", hide_short_help = true)]
    pub loss_to_proxy2: Option<Percent>,

    /// Like --loss, only for frames proxy2 sends to proxy1.
    #[arg(long, value_name = "PCT", hide_short_help = true)]
    pub loss_to_proxy1: Option<Percent>,

    /// Gilbert-Elliott burst loss: a burst starts with ENTER % chance per frame and ends with LEAVE % (mean length 100/LEAVE frames); frames in a burst are lost at LOSS % (default 100). Adds to --loss.
    #[arg(long, value_name = "ENTER,LEAVE[,LOSS]")]
    pub burst: Option<BurstLoss>,

    /// Like --burst, only for frames proxy1 sends to proxy2.
    #[arg(long, value_name = "ENTER,LEAVE[,LOSS]", hide_short_help = true)]
    pub burst_to_proxy2: Option<BurstLoss>,

    /// Like --burst, only for frames proxy2 sends to proxy1.
    #[arg(long, value_name = "ENTER,LEAVE[,LOSS]", hide_short_help = true)]
    pub burst_to_proxy1: Option<BurstLoss>,

    /// Delay every frame by TIME (20ms, 1.5s; at most 60s).
    #[arg(long, value_name = "TIME", value_parser = parse_delay)]
    pub delay: Option<Duration>,

    /// Like --delay, only for frames proxy1 sends to proxy2.
    #[arg(long, value_name = "TIME", value_parser = parse_delay, hide_short_help = true)]
    pub delay_to_proxy2: Option<Duration>,

    /// Like --delay, only for frames proxy2 sends to proxy1.
    #[arg(long, value_name = "TIME", value_parser = parse_delay, hide_short_help = true)]
    pub delay_to_proxy1: Option<Duration>,

    /// Vary each frame's delay uniformly within ±TIME (never below 0; jitter alone never reorders).
    #[arg(long, value_name = "TIME", value_parser = parse_delay)]
    pub jitter: Option<Duration>,

    /// Like --jitter, only for frames proxy1 sends to proxy2.
    #[arg(long, value_name = "TIME", value_parser = parse_delay, hide_short_help = true)]
    pub jitter_to_proxy2: Option<Duration>,

    /// Like --jitter, only for frames proxy2 sends to proxy1.
    #[arg(long, value_name = "TIME", value_parser = parse_delay, hide_short_help = true)]
    pub jitter_to_proxy1: Option<Duration>,

    /// Send PCT % of frames twice (the copy right behind the original).
    #[arg(long, value_name = "PCT")]
    pub dup: Option<Percent>,

    /// Like --dup, only for frames proxy1 sends to proxy2.
    #[arg(long, value_name = "PCT", hide_short_help = true)]
    pub dup_to_proxy2: Option<Percent>,

    /// Like --dup, only for frames proxy2 sends to proxy1.
    #[arg(long, value_name = "PCT", hide_short_help = true)]
    pub dup_to_proxy1: Option<Percent>,

    /// Hold PCT % of frames back until the next frame has gone ahead of them.
    #[arg(long, value_name = "PCT")]
    pub reorder: Option<Percent>,

    /// Like --reorder, only for frames proxy1 sends to proxy2.
    #[arg(long, value_name = "PCT", hide_short_help = true)]
    pub reorder_to_proxy2: Option<Percent>,

    /// Like --reorder, only for frames proxy2 sends to proxy1.
    #[arg(long, value_name = "PCT", hide_short_help = true)]
    pub reorder_to_proxy1: Option<Percent>,

    /// Flip one payload bit in PCT % of D frames (headers and C/OK/NOK/X frames are never touched).
    #[arg(long, value_name = "PCT")]
    pub corrupt: Option<Percent>,

    /// Like --corrupt, only for frames proxy1 sends to proxy2.
    #[arg(long, value_name = "PCT", hide_short_help = true)]
    pub corrupt_to_proxy2: Option<Percent>,

    /// Like --corrupt, only for frames proxy2 sends to proxy1.
    #[arg(long, value_name = "PCT", hide_short_help = true)]
    pub corrupt_to_proxy1: Option<Percent>,

    /// Limit the link to RATE bits per second (64000, 512kbit, 2mbit, 1gbit); frames queue, and are dropped when the queue is full.
    #[arg(long, value_name = "RATE")]
    pub rate: Option<BitRate>,

    /// Like --rate, only for frames proxy1 sends to proxy2.
    #[arg(long, value_name = "RATE", hide_short_help = true)]
    pub rate_to_proxy2: Option<BitRate>,

    /// Like --rate, only for frames proxy2 sends to proxy1.
    #[arg(long, value_name = "RATE", hide_short_help = true)]
    pub rate_to_proxy1: Option<BitRate>,

    /// Frames the --rate queue holds before it drops [default: 100].
    #[arg(long, value_name = "FRAMES", value_parser = parse_queue)]
    pub queue: Option<usize>,

    /// Like --queue, only for frames proxy1 sends to proxy2.
    #[arg(long, value_name = "FRAMES", value_parser = parse_queue, hide_short_help = true)]
    pub queue_to_proxy2: Option<usize>,

    /// Like --queue, only for frames proxy2 sends to proxy1.
    #[arg(long, value_name = "FRAMES", value_parser = parse_queue, hide_short_help = true)]
    pub queue_to_proxy1: Option<usize>,

    /// Drop every frame (the link is cut; counters still count).
    #[arg(long)]
    pub blackhole: bool,

    /// Like --blackhole, only for frames proxy1 sends to proxy2.
    #[arg(long, hide_short_help = true)]
    pub blackhole_to_proxy2: bool,

    /// Like --blackhole, only for frames proxy2 sends to proxy1.
    #[arg(long, hide_short_help = true)]
    pub blackhole_to_proxy1: bool,

    /// Seed for every emulator decision: the same seed and the same frames give the same
    /// losses, copies and delays, so a run can be replayed [default: random, and printed].
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,
}
