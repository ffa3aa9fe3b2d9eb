//! Accepting connections: the acceptor on shard 0, the hand-off of each
//! socket to the least-loaded shard, and the [`ConnectionHandler`] that
//! serves it there.
//!
//! Owned by the shard threads: the acceptor runs on shard 0; each handler
//! future runs as a local task of the shard that owns its socket.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};
use tracing::{info, warn};

use super::handle::LocalShard;
use super::inbox::ShardCommand;
use crate::gate::PeerPermit;

/// Serves a freshly accepted TCP connection on the shard that will own it.
///
/// Called on that shard's thread; the returned future runs there as a local
/// task. The engine has no HTTP in it: the handler speaks HTTP, performs the
/// WebSocket upgrade, and calls [`LocalShard::attach`] with the socket and
/// its `permit`. The permit counts the socket in the connection [`Gate`];
/// it must live as long as the socket (dropped with it, or moved into the
/// attachment).
///
/// [`Gate`]: crate::Gate
pub trait ConnectionHandler: Send + Sync + 'static {
    /// Serves `stream` from `peer` on `shard`.
    fn serve(
        &self,
        stream: TcpStream,
        peer: SocketAddr,
        permit: PeerPermit,
        shard: LocalShard,
    ) -> Pin<Box<dyn Future<Output = ()>>>;
}

/// Serves `stream` here; the shard's load counts it until the handler returns.
pub(super) fn serve(
    shard: LocalShard,
    stream: TcpStream,
    peer: SocketAddr,
    permit: PeerPermit,
    handler: &Arc<dyn ConnectionHandler>,
) {
    let inbox_owner = shard.clone();
    let fut = handler.serve(stream, peer, permit, shard);
    tokio::task::spawn_local(async move {
        fut.await;
        inbox_owner.state().inbox().remove_load();
    });
}

/// Accepts connections and spreads them over the shards by load.
///
/// Each socket is first counted in the [`Gate`]; one over a limit is closed
/// at once (after a best-effort `503`), so a flood of idle sockets degrades
/// into refusals, never into a process out of file descriptors. Should the
/// process run out anyway (`EMFILE`), a spare descriptor kept for the
/// purpose is given up to accept and close the waiting connection, so that
/// clients are refused promptly instead of hanging in the backlog.
///
/// [`Gate`]: crate::Gate
pub(super) async fn accept_loop(
    shard: LocalShard,
    listener: TcpListener,
    handler: Arc<dyn ConnectionHandler>,
) {
    if let Ok(addr) = listener.local_addr() {
        info!(addr = %addr, shard = shard.index(), "accepting connections");
    }
    let shared = Arc::clone(shard.state().shared());
    let mut spare = std::fs::File::open("/dev/null").ok();
    let mut refusals = RefusalLog::default();
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) if is_fd_exhaustion(&e) => {
                    refusals.note(Instant::now(), "out of file descriptors");
                    if spare.take().is_some() {
                        let waiting = tokio::time::timeout(Duration::from_millis(100), listener.accept());
                        if let Ok(Ok((stream, _))) = waiting.await {
                            shared.gate().note_out_of_files();
                            refuse(stream);
                        }
                        spare = std::fs::File::open("/dev/null").ok();
                    } else {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                    continue;
                }
                Err(e) => {
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
            () = shared.stopping() => return,
        };
        let permit = match shared.gate().admit(peer.ip()) {
            Ok(permit) => permit,
            Err(refused) => {
                refusals.note(Instant::now(), &refused.to_string());
                refuse(stream);
                continue;
            }
        };
        // Frames are written whole and coalesced by the shard; Nagle would only add delay.
        let _ = stream.set_nodelay(true);
        let target = shared.least_loaded_shard();
        let inbox = shared.inbox(target);
        inbox.add_load();
        if target == shard.index() {
            serve(shard.clone(), stream, peer, permit, &handler);
            continue;
        }
        match stream.into_std() {
            Ok(stream) => inbox.command(ShardCommand::Serve {
                stream,
                peer,
                permit,
                handler: Arc::clone(&handler),
            }),
            Err(e) => {
                inbox.remove_load();
                warn!(%peer, error = %e, "cannot hand over a connection");
            }
        }
    }
}

fn is_fd_exhaustion(e: &std::io::Error) -> bool {
    // EMFILE (24): this process; ENFILE (23): the whole system.
    matches!(e.raw_os_error(), Some(23 | 24))
}

/// Closes a refused socket after offering a `503` without waiting for it.
fn refuse(stream: TcpStream) {
    const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 5\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
    let _ = stream.try_write(BUSY);
}

/// Logs refused connections at most once a second, with how many.
#[derive(Default)]
struct RefusalLog {
    since: Option<Instant>,
    count: u64,
}

impl RefusalLog {
    fn note(&mut self, now: Instant, why: &str) {
        self.count += 1;
        if self
            .since
            .is_none_or(|at| now.duration_since(at) >= Duration::from_secs(1))
        {
            warn!(
                refused = self.count,
                last_reason = why,
                "connections refused"
            );
            self.since = Some(now);
            self.count = 0;
        }
    }
}
