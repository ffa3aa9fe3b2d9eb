//! Unit tests of `conn.rs`.

use super::*;
use crate::sansio::outbox::SlowConsumerPolicy;
use tokio::net::TcpStream;

#[tokio::test]
async fn nothing_is_queued_after_a_close_is_requested() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap());
    let (accepted, _client) = tokio::join!(listener.accept(), client);
    let (stream, peer) = accepted.unwrap();
    let limits = OutboxLimits {
        max_messages: 16,
        max_bytes: 1 << 16,
        policy: SlowConsumerPolicy::Drop,
    };
    let key = ConnKey {
        index: 0,
        generation: 0,
    };
    let gate = crate::gate::Gate::new(crate::EngineConfig::default().gate);
    let permit = gate.admit(peer.ip()).unwrap();
    let conn = Conn::new(
        key,
        Transport::plain(stream),
        peer,
        "c".into(),
        "owner".into(),
        crate::EngineConfig::default().delivery(crate::FormatId::first()),
        permit,
        limits,
        None,
        Instant::now(),
        ConnWake::new(key, &Arc::default()),
    );
    conn.send_control(Bytes::from_static(b"before"));
    assert_eq!(conn.state.borrow().mailbox.outbox.len(), 1);
    conn.request_close(CloseReason::ServerShutdown);
    conn.send_control(Bytes::from_static(b"heartbeat after close"));
    assert_eq!(conn.state.borrow().mailbox.outbox.len(), 1);
    // A panicking session callback is caught, not propagated.
    assert!(guarded(&conn, || {}).is_ok());
    assert!(guarded(&conn, || panic!("a protocol bug")).is_err());
}

/// What every open connection holds for its whole life stays within
/// budget (docs/architecture.md, *Memory per connection*): no task, a
/// waker of a few words, and its own state does not creep up unnoticed
/// (it fills its class: 624 bytes when this was written, on the server's
/// build, whose tokio features make a `TcpStream` 8 bytes larger than the
/// engine's alone).
#[test]
fn a_connection_holds_little_for_its_life() {
    // With its `Arc` counts, within the allocator's 48-byte class.
    let wake = std::mem::size_of::<ConnWake>();
    assert!(wake + 16 <= 48, "a connection's waker is {wake} bytes");
    // With its `Rc` counts, within the allocator's 640-byte class.
    let conn = std::mem::size_of::<Conn>();
    assert!(conn + 16 <= 640, "a Conn is {conn} bytes");
}
