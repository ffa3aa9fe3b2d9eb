//! The sans-IO core: everything about messages, frames and queues that can
//! be decided without a socket, a thread or a clock of its own.
//!
//! The layering rule: **nothing here imports from the runtime** (the
//! shards, connections, reader, delivery, broker or engine handle; see
//! `crate::shard` and `crate::engine`). These modules take `now` and
//! return decisions, so each edge case is a fast deterministic unit test;
//! `layering_is_kept` below checks the rule on the sources themselves: every
//! `crate::` path in this folder's code must continue with `sansio`, or
//! with `ring`: the fan-out ring (`crate::ring`), whose window a topic's
//! history reads, is a data structure with no runtime either, and the same
//! test checks that it names nothing else of the crate.

pub mod beat;
pub mod budget;
pub mod census;
pub mod close;
pub mod counts;
pub mod decode;
pub mod deflate;
pub mod delivery;
pub mod drain;
pub mod encoder;
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
pub mod publishing;
pub mod quota;
pub mod rate;
pub mod replay;
pub mod throttle;

#[cfg(all(test, not(shardcast_loom)))]
mod tests {
    /// `crate::` paths in `line` (comments stripped) that leave the core.
    fn escapes(line: &str) -> Vec<String> {
        let code = line.split("//").next().unwrap_or("");
        code.match_indices("crate::")
            .map(|(at, _)| &code[at + "crate::".len()..])
            .filter(|rest| !rest.starts_with("sansio") && !rest.starts_with("ring"))
            .map(|rest| rest.chars().take(24).collect())
            .collect()
    }

    #[test]
    fn layering_is_kept() {
        assert_eq!(
            escapes("use crate::sansio::ids::TopicId;"),
            Vec::<String>::new()
        );
        assert_eq!(escapes("use crate::{Engine, LocalShard};").len(), 1);
        assert_eq!(
            escapes("    let x = crate::shard::run; // crate::y").len(),
            1
        );
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        // The ring, which the core may use, uses nothing of the crate.
        let ring = std::fs::read_to_string(src.join("ring.rs")).unwrap();
        let mut ring_files = vec![ring];
        let mut dirs = vec![src.join("ring")];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    dirs.push(path);
                } else {
                    ring_files.push(std::fs::read_to_string(&path).unwrap());
                }
            }
        }
        for text in &ring_files {
            for line in text.lines() {
                let code = line.split("//").next().unwrap_or("");
                assert!(
                    !code.contains("crate::"),
                    "the ring names the crate: {line}"
                );
            }
        }
        assert!(ring_files.len() >= 5, "the ring's files were not found");
        let dir = src.join("sansio");
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
                // This file's test names paths that leave the core, as strings.
                let own = path.ends_with("sansio/mod.rs");
                for (n, line) in text.lines().enumerate() {
                    let found = escapes(line);
                    assert!(
                        own || found.is_empty(),
                        "{}:{}: the sans-IO core reaches out to crate::{}",
                        path.display(),
                        n + 1,
                        found.join(", crate::")
                    );
                }
                checked += 1;
            }
        }
        assert!(checked >= 20, "only {checked} files checked");
    }
}
