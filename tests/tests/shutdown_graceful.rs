//! Shutdown closes every client with 1001 after flushing what was queued.

mod common;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_flushes_queued_events_then_closes_with_1001() {
    let mut server = TestServer::start("[telemetry]\nrate_limit_per_second = 0");
    let mut ws = server.subscriber(&["t1"]).await;
    server.publish_batch("t1", 200).await;
    tokio::task::block_in_place(|| server.shutdown());
    for seq in 1..=200u64 {
        assert_eq!(
            next_of_type(&mut ws, "event").await["seq"].as_u64(),
            Some(seq)
        );
    }
    assert_eq!(close_code(&mut ws).await, (1001, "SERVER_SHUTDOWN".into()));
    // No longer accepting.
    assert!(tokio::net::TcpStream::connect(server.addr).await.is_err());
}
