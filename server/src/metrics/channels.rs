//! The per-channel families, with the number of `channel` labels capped.
//!
//! Channels are created by clients (within quotas), so a family with one
//! series per channel would let them grow the exposition, and the
//! scraper's memory, without bound. Each per-channel family therefore has
//! one series for each of the `[metrics] max_channel_labels` most published
//! live channels, and one `channel="other"` series holding the rest: the
//! channels past the cap, those that have expired, and a channel really
//! named `other`. `other` is the family's total minus the labelled series,
//! so `sum()` over a family is exactly its total, which is also exported
//! unlabelled (`shardcast_messages_sent_total` beside
//! `shardcast_channel_messages_sent_total`).
//!
//! Every family ranks by `published`, so the labelled channels are the same
//! in all of them and can be divided one by another.

use shardcast_engine::{Counts, EngineStats, TopicSummary};

use super::text::{Exposition, Kind};

/// The label value of the series holding every channel without its own.
pub const OTHER: &str = "other";

/// One per-channel family: its total family and its per-channel family.
struct Family {
    total: &'static str,
    per_channel: &'static str,
    help: &'static str,
    of: fn(&Counts) -> u64,
}

/// The message families kept per channel, besides `published`.
const FAMILIES: [Family; 3] = [
    Family {
        total: "shardcast_messages_sent_total",
        per_channel: "shardcast_channel_messages_sent_total",
        help: "Events written to client sockets (replays excluded)",
        of: |c| c.sent,
    },
    Family {
        total: "shardcast_messages_conflated_total",
        per_channel: "shardcast_channel_messages_conflated_total",
        help: "Events replaced in a full outbox by a newer one of the same channel and key (slow_consumer = conflate)",
        of: |c| c.conflated,
    },
    Family {
        total: "shardcast_messages_dropped_total",
        per_channel: "shardcast_channel_messages_dropped_total",
        help: "Events not delivered to a subscriber (every reason)",
        of: Counts::dropped_total,
    },
];

/// The channels that get series of their own: at most `cap`, the most
/// published first (ties by name), listed by name.
pub(super) fn labelled(topics: &[TopicSummary], cap: usize) -> Vec<&TopicSummary> {
    let mut ranked: Vec<&TopicSummary> =
        topics.iter().filter(|t| &*t.topic.name != OTHER).collect();
    if ranked.len() > cap {
        let by_rank = |a: &&TopicSummary, b: &&TopicSummary| {
            (b.topic.published, &a.topic.name).cmp(&(a.topic.published, &b.topic.name))
        };
        ranked.select_nth_unstable_by(cap, by_rank);
        ranked.truncate(cap);
    }
    ranked.sort_unstable_by(|a, b| a.topic.name.cmp(&b.topic.name));
    ranked
}

/// Writes every message family: the unlabelled total, then the per-channel
/// family with its `other` series.
pub(super) fn render(out: &mut Exposition, stats: &EngineStats, cap: usize) {
    let shown = labelled(&stats.topics, cap);
    write(
        out,
        (
            "shardcast_messages_published_total",
            "shardcast_channel_messages_published_total",
        ),
        "Messages accepted by publish",
        stats.published,
        &shown,
        |t| t.topic.published,
    );
    for family in &FAMILIES {
        write(
            out,
            (family.total, family.per_channel),
            family.help,
            (family.of)(&stats.counts),
            &shown,
            |t| (family.of)(&t.counts),
        );
    }
}

fn write(
    out: &mut Exposition,
    (total_name, channel_name): (&str, &str),
    help: &str,
    total: u64,
    shown: &[&TopicSummary],
    value: impl Fn(&TopicSummary) -> u64,
) {
    out.single(
        total_name,
        Kind::Counter,
        &format!("{help}, all channels."),
        total,
    );
    out.family(
        channel_name,
        Kind::Counter,
        &format!(
            "{help}, by channel: the most published channels, the rest under channel=\"other\"."
        ),
    );
    let mut labelled = 0u64;
    for topic in shown {
        let n = value(topic);
        labelled += n;
        out.sample(channel_name, &[("channel", &topic.topic.name)], n);
    }
    out.sample(
        channel_name,
        &[("channel", OTHER)],
        total.saturating_sub(labelled),
    );
}
