//! The sans-IO core: everything about messages, frames and queues that can
//! be decided without a socket, a thread or a clock of its own.
//!
//! The layering rule: **nothing here imports from the runtime** (the
//! shards, connections, reader, delivery, broker or engine handle; see
//! `crate::shard` and `crate::engine`). These modules take `now` and
//! return decisions, so each edge case is a fast deterministic unit test;
//! `layering_is_kept` below checks the rule on the sources themselves.

pub mod budget;
pub mod close;
pub mod counts;
pub mod decode;
pub mod delivery;
pub mod format;
pub mod frame;
pub mod history;
pub mod ids;
pub mod json;
pub mod mailbox;
pub mod message;
pub mod outbox;
pub mod pacer;
pub mod pattern;
pub mod quota;
pub mod rate;
pub mod replay;

#[cfg(all(test, not(shardcast_loom)))]
mod tests {
    /// The modules of the runtime, which the core may not name.
    const RUNTIME: [&str; 8] = [
        "crate::shard",
        "crate::engine",
        "crate::broker",
        "crate::topic",
        "crate::registry",
        "crate::stats",
        "crate::gate",
        "crate::config",
    ];

    #[test]
    fn layering_is_kept() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/sansio");
        let mut checked = 0;
        let mut stack = vec![dir];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    stack.push(path);
                    continue;
                }
                let text = std::fs::read_to_string(&path).unwrap();
                for runtime in RUNTIME {
                    for (n, line) in text.lines().enumerate() {
                        let code = line.split("//").next().unwrap_or("");
                        let quoted = format!("\"{runtime}\"");
                        assert!(
                            !code.contains(runtime) || code.contains(&quoted),
                            "{}:{}: the sans-IO core names {runtime}",
                            path.display(),
                            n + 1
                        );
                    }
                }
                checked += 1;
            }
        }
        assert!(checked >= 17, "only {checked} files checked");
    }
}
