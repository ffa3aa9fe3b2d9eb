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
    let poll = mio::Poll::new().unwrap();
    let transport = crate::Transport::plain(stream)
        .attach(poll.registry(), crate::shard::poller::token(key))
        .unwrap();
    let conn = Conn::new(
        key,
        transport,
        peer.port(),
        "c".into(),
        "owner".into(),
        crate::EngineConfig::default().delivery(crate::FormatId::first()),
        permit,
        limits,
        None,
        Instant::now(),
        Rc::default(),
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
/// budget (docs/architecture.md, *Memory per connection*): no task, no
/// waker or readiness state of its own beyond a few bytes in the `Conn`,
/// and its own state does not creep up unnoticed.
#[test]
fn a_connection_holds_little_for_its_life() {
    // The socket, its TLS session boxed, and one byte of readiness.
    let transport = std::mem::size_of::<Attached>();
    assert!(
        transport <= 16,
        "a connection's transport is {transport} bytes"
    );
    // With its `Rc` counts, within the allocator's 512-byte class (it
    // fills it: 496 bytes when this was written).
    let conn = std::mem::size_of::<Conn>();
    assert!(conn + 16 <= 512, "a Conn is {conn} bytes");
}
