//! Two or three shardcast nodes joined through a `redis-server` of the
//! test's own (`redis_process.rs`).

use super::TestServer;

/// A node joined to the others through Redis at `url`, named `node`.
pub fn node(url: &str, node: &str, extra: &str) -> TestServer {
    TestServer::start(&format!(
        "{extra}\n[broker]\nkind = \"redis\"\nurl = \"{url}\"\nnode_id = \"{node}\"\ntimeout_ms = 500\n"
    ))
}
