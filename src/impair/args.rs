//! The emulator's command-line flags, shared by the lab and the standalone `proxy1` and
//! `proxy2` subcommands (flattened into each).
//!
//! Every setting has a two-way form (`--loss 10`) and one per direction
//! (`--loss-to-proxy2 10`, `--loss-to-proxy1 5`); a per-direction flag wins over the two-way
//! one. Bad values are refused by clap with the reason (`--loss 150`: "150 is not a
//! percentage from 0 to 100").

// Doc comments here are --help text, printed as written: no Markdown backticks.
#![allow(clippy::doc_markdown)]

use std::time::Duration;

use clap::Args;

use super::settings::{
    BitRate, BurstLoss, DirectionSettings, LinkSettings, Percent, parse_delay, parse_queue,
};
use crate::topology::LinkDirection;

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

impl LinkArgs {
    /// The settings these flags ask for.
    pub fn settings(&self) -> LinkSettings {
        LinkSettings {
            to_proxy2: self.direction(LinkDirection::ToProxy2),
            to_proxy1: self.direction(LinkDirection::ToProxy1),
        }
    }

    /// The settings of one direction: its own flags, else the two-way ones, else nothing.
    pub fn direction(&self, direction: LinkDirection) -> DirectionSettings {
        fn pick<T: Clone>(one_way: &Option<T>, both: &Option<T>) -> Option<T> {
            one_way.clone().or_else(|| both.clone())
        }
        let up = direction == LinkDirection::ToProxy2;
        macro_rules! flag {
            ($both:ident, $to_proxy2:ident, $to_proxy1:ident) => {
                pick(
                    if up {
                        &self.$to_proxy2
                    } else {
                        &self.$to_proxy1
                    },
                    &self.$both,
                )
            };
        }
        let defaults = DirectionSettings::default();
        DirectionSettings {
            loss: flag!(loss, loss_to_proxy2, loss_to_proxy1).unwrap_or(defaults.loss),
            burst: flag!(burst, burst_to_proxy2, burst_to_proxy1),
            delay: flag!(delay, delay_to_proxy2, delay_to_proxy1).unwrap_or(defaults.delay),
            jitter: flag!(jitter, jitter_to_proxy2, jitter_to_proxy1).unwrap_or(defaults.jitter),
            dup: flag!(dup, dup_to_proxy2, dup_to_proxy1).unwrap_or(defaults.dup),
            reorder: flag!(reorder, reorder_to_proxy2, reorder_to_proxy1)
                .unwrap_or(defaults.reorder),
            corrupt: flag!(corrupt, corrupt_to_proxy2, corrupt_to_proxy1)
                .unwrap_or(defaults.corrupt),
            rate: flag!(rate, rate_to_proxy2, rate_to_proxy1),
            queue: flag!(queue, queue_to_proxy2, queue_to_proxy1).unwrap_or(defaults.queue),
            blackhole: self.blackhole
                || if up {
                    self.blackhole_to_proxy2
                } else {
                    self.blackhole_to_proxy1
                },
            ..defaults
        }
    }
}
