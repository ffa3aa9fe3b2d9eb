//! How the engine stops: a paced drain (lame duck), then shutdown.

use std::time::{Duration, Instant};

use tracing::warn;

use super::Engine;
use crate::shard::ShardCommand;

/// Longest shutdown waits for publishes in progress to finish routing: a
/// publish takes microseconds in process; one stuck longer (a broker that
/// does not answer) is given up on, with a warning.
const PUBLISH_DRAIN: Duration = Duration::from_secs(2);

impl Engine {
    /// Begins shutdown: stop publishing (waiting, microseconds as a rule
    /// and 2 s at most, for the publishes in progress), stop accepting, and
    /// close every connection with 1001 after flushing what it has queued.
    /// Returns without waiting for the shards; see [`Engine::join`].
    pub fn shutdown(&self) {
        // 1. Publishing stops, and the publishes already in progress finish
        //    routing (see `PublishGate`); 2. every shard drains what was
        //    accepted, then closes its connections.
        self.shared.publishing.close();
        let waited = Instant::now();
        while self.shared.publishing.in_flight() > 0 {
            if waited.elapsed() > PUBLISH_DRAIN {
                warn!(
                    in_flight = self.shared.publishing.in_flight(),
                    "publishes still in progress at shutdown; their messages may be neither delivered nor counted"
                );
                break;
            }
            std::thread::sleep(Duration::from_micros(100));
        }
        self.shared.stop.send_replace(true);
        for inbox in self.shared.inboxes.iter() {
            inbox.command(ShardCommand::Shutdown);
        }
    }

    /// Step `step` (1 to `steps`) of a paced drain (lame duck) before
    /// [`Engine::shutdown`]: every shard closes its share of the connections
    /// open when the drain began, evenly over the steps (see
    /// [`to_close`](crate::sansio::drain::to_close)), with
    /// [`CloseReason::Draining`](crate::CloseReason::Draining) (1001), which
    /// tells the client to reconnect elsewhere; step `steps` closes every
    /// connection left. Publishing and delivery go on for the others.
    pub fn shed(&self, step: u32, steps: u32) {
        for inbox in self.shared.inboxes.iter() {
            inbox.command(ShardCommand::Shed { step, steps });
        }
    }

    /// Whether [`Engine::shutdown`] has begun.
    pub fn is_shutting_down(&self) -> bool {
        self.shared.publishing.is_closed()
    }

    /// Waits for every shard thread to finish. Call from outside the shards.
    pub fn join(&self) {
        let threads = std::mem::take(&mut *self.shared.threads.lock());
        for thread in threads {
            if thread.join().is_err() {
                warn!("a shard thread panicked");
            }
        }
    }
}
