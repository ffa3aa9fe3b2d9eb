//! Several servers as one through a Redis Cluster of three primaries, with
//! sharded pub/sub: each topic's counter, history and channel live on the
//! node owning its slot, and nodes follow topics with `SSUBSCRIBE`.
//!
//! Each test starts its own cluster on ephemeral ports (skipping, loudly,
//! where `redis-server` is not installed) and in-process servers.

mod common;

use std::collections::BTreeSet;
use std::process::Command;

use common::*;
use serde_json::json;

/// Topics enough to land on every primary.
const TOPICS: [&str; 8] = [
    "prices.1", "prices.2", "prices.3", "prices.4", "prices.5", "prices.6", "prices.7", "prices.8",
];

/// What `PUBSUB <list>` says on every node of `cluster`, together.
fn pubsub(cluster: &RedisCluster, list: &str) -> BTreeSet<String> {
    let mut channels = BTreeSet::new();
    for node in &cluster.nodes {
        let out = Command::new("redis-cli")
            .args(["-p", &node.port.to_string(), "pubsub", list])
            .output()
            .expect("redis-cli runs");
        channels.extend(
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter(|l| !l.is_empty())
                .map(str::to_owned),
        );
    }
    channels
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topics_on_every_shard_reach_every_node_with_the_same_seq() {
    let Some(cluster) = RedisCluster::start() else {
        return;
    };
    let a = cluster_node(&cluster.seeds(), "a").await;
    let b = cluster_node(&cluster.seeds(), "b").await;
    let mut on_b = b.subscriber(&TOPICS).await;
    let mut on_a = a.subscriber(&TOPICS).await;
    for round in 1..=2u64 {
        for topic in TOPICS {
            let seq = a.publish(topic, json!({"topic": topic}), None).await;
            assert_eq!(seq, round, "{topic}");
        }
    }
    // Another node continues each topic's sequence.
    assert_eq!(
        b.publish("prices.1", json!({"topic": "prices.1"}), None)
            .await,
        3
    );
    for ws in [&mut on_a, &mut on_b] {
        let got = events(ws, 2 * TOPICS.len() + 1).await;
        for topic in TOPICS {
            let per_topic: Vec<u64> = got
                .iter()
                .filter(|e| e["channel"] == topic)
                .map(|e| e["seq"].as_u64().unwrap())
                .collect();
            let expected: &[u64] = if topic == "prices.1" {
                &[1, 2, 3]
            } else {
                &[1, 2]
            };
            assert_eq!(per_topic, expected, "{topic}: {got:?}");
        }
    }
    // Followed with sharded subscriptions, spread over the primaries; no
    // plain channel at all.
    let sharded = pubsub(&cluster, "shardchannels");
    let expected: BTreeSet<String> = TOPICS
        .iter()
        .map(|t| format!("shardcast:{{{t}}}"))
        .collect();
    assert_eq!(sharded, expected);
    assert!(pubsub(&cluster, "channels").is_empty());
    let holders = cluster
        .nodes
        .iter()
        .filter(|node| {
            let out = Command::new("redis-cli")
                .args(["-p", &node.port.to_string(), "pubsub", "shardchannels"])
                .output()
                .expect("redis-cli runs");
            !out.stdout.trim_ascii().is_empty()
        })
        .count();
    assert!(holders >= 2, "the topics all landed on one shard");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_resumes_on_another_node_through_the_cluster() {
    let Some(cluster) = RedisCluster::start() else {
        return;
    };
    let a = cluster_node(&cluster.seeds(), "a").await;
    let b = cluster_node(&cluster.seeds(), "b").await;
    let mut first = a.telemetry("").await;
    let epoch = subscribe_at(&mut first, "t1").await;
    for n in 1..=3 {
        a.publish("t1", json!({"n": n}), None).await;
    }
    assert_eq!(seqs(&events(&mut first, 3).await), [1, 2, 3]);
    drop(first);
    for n in 4..=5 {
        a.publish("t1", json!({"n": n}), None).await;
    }
    let mut second = b.telemetry("").await;
    let ack = resume(&mut second, "t1", &epoch, 3).await;
    assert_eq!(ack["positions"]["t1"]["seq"], 5, "{ack}");
    let got = events(&mut second, 2).await;
    assert_eq!(seqs(&got), [4, 5]);
    assert_eq!(got[0]["data"], json!({"n": 4}));
}
