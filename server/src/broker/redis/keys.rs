//! What a topic is in Redis: its keys, its channel, and the two scripts
//! that number and read it.
//!
//! For a topic `NAME` under the prefix `P` (`{` `}` `%` in the name are
//! percent-encoded, so the hash tag is always the whole name):
//! - `P:{NAME}:m`: a hash, `epoch` (16 hex digits) and `seq` (the last);
//! - `P:{NAME}:h`: a list, the last `history` messages, oldest first;
//! - `P:{NAME}:s`: a hash, the latest message of each key (at most
//!   `max_keys` keys; a new key past that is not kept there);
//! - `P:{NAME}`: the pub/sub channel (a sharded channel in a Redis
//!   Cluster).
//!
//! All four share the hash tag `{NAME}`, so in a Redis Cluster they live on
//! one shard and one script can touch them all. Each key expires after
//! `history_ttl_seconds` without a publish (or a server catching up).

use redis::Script;

/// Numbers one message, keeps it and publishes it, atomically: every
/// server sees the same number for the same message, and whatever a server
/// receives on the channel is already in the history a catch-up reads.
///
/// KEYS: meta, history, snapshot. ARGV: channel, epoch if the topic is new,
/// history size, max keys, ttl seconds, body, keep (1/0), key ("" for none),
/// the publish command ([`publish_command`]).
/// Returns `{epoch, seq}`.
pub const PUBLISH: &str = r"
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if not epoch then
  epoch = ARGV[2]
  redis.call('HSET', KEYS[1], 'epoch', epoch)
end
local seq = redis.call('HINCRBY', KEYS[1], 'seq', 1)
local entry = epoch .. ':' .. seq .. ':' .. ARGV[6]
local ttl = tonumber(ARGV[5])
if ARGV[7] == '1' then
  local size = tonumber(ARGV[3])
  if size > 0 then
    redis.call('RPUSH', KEYS[2], entry)
    redis.call('LTRIM', KEYS[2], -size, -1)
    redis.call('EXPIRE', KEYS[2], ttl)
  end
  if ARGV[8] ~= '' and tonumber(ARGV[4]) > 0 then
    if redis.call('HEXISTS', KEYS[3], ARGV[8]) == 1
       or redis.call('HLEN', KEYS[3]) < tonumber(ARGV[4]) then
      redis.call('HSET', KEYS[3], ARGV[8], entry)
      redis.call('EXPIRE', KEYS[3], ttl)
    end
  end
end
redis.call('EXPIRE', KEYS[1], ttl)
redis.call(ARGV[9], ARGV[1], entry)
return {epoch, seq}
";

/// Reads a topic's state for a catch-up, giving it an epoch if it has none
/// yet (so every server agrees on it before the first publish).
///
/// KEYS: meta, history, snapshot. ARGV: epoch if the topic is new, ttl.
/// Returns `{epoch, seq, history entries, snapshot entries}`.
pub const LOAD: &str = r"
if redis.call('HSETNX', KEYS[1], 'epoch', ARGV[1]) == 1 then
  redis.call('HSET', KEYS[1], 'seq', 0)
end
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[2]))
local meta = redis.call('HMGET', KEYS[1], 'epoch', 'seq')
return {meta[1], meta[2], redis.call('LRANGE', KEYS[2], 0, -1), redis.call('HVALS', KEYS[3])}
";

/// How the publish script publishes: `SPUBLISH` to a sharded channel in a
/// Redis Cluster (only the node owning the topic's slot carries it), plain
/// `PUBLISH` on one server.
pub fn publish_command(cluster: bool) -> &'static str {
    if cluster {
        "SPUBLISH"
    } else {
        "PUBLISH"
    }
}

/// The scripts, hashed once.
pub struct Scripts {
    pub publish: Script,
    pub load: Script,
}

impl Scripts {
    pub fn new() -> Self {
        Self {
            publish: Script::new(PUBLISH),
            load: Script::new(LOAD),
        }
    }
}

/// A topic's keys and channel under `prefix`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicKeys {
    pub meta: String,
    pub history: String,
    pub snapshot: String,
    pub channel: String,
}

impl TopicKeys {
    pub fn new(prefix: &str, name: &str) -> Self {
        let tag = hash_tag(name);
        Self {
            meta: format!("{prefix}:{{{tag}}}:m"),
            history: format!("{prefix}:{{{tag}}}:h"),
            snapshot: format!("{prefix}:{{{tag}}}:s"),
            channel: format!("{prefix}:{{{tag}}}"),
        }
    }
}

/// `name` with `%`, `{` and `}` percent-encoded: the whole name is the hash
/// tag, whatever it holds.
fn hash_tag(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        match c {
            '%' => out.push_str("%25"),
            '{' => out.push_str("%7B"),
            '}' => out.push_str("%7D"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_topics_keys_share_one_hash_tag() {
        let keys = TopicKeys::new("sc", "prices.AAPL");
        assert_eq!(keys.meta, "sc:{prices.AAPL}:m");
        assert_eq!(keys.history, "sc:{prices.AAPL}:h");
        assert_eq!(keys.channel, "sc:{prices.AAPL}");
    }

    #[test]
    fn braces_in_a_name_cannot_break_the_tag() {
        let keys = TopicKeys::new("sc", "}a{b%");
        assert_eq!(keys.meta, "sc:{%7Da%7Bb%25}:m");
        assert_ne!(
            TopicKeys::new("sc", "a%7D").channel,
            TopicKeys::new("sc", "a}").channel
        );
    }
}
