//! Admission of connections: how many sockets one address may hold, how
//! many may be in their HTTP stage, and how many may be WebSockets.
//!
//! Shared by all shards. Its one lock is taken when a socket is accepted,
//! when it upgrades, and when it closes — never per message. Counting is
//! exact: a WebSocket slot is reserved *before* the handshake is answered,
//! so a burst of upgrades can never overshoot `max_connections`.
//!
//! A socket's life, as the gate sees it:
//! 1. accepted: [`Gate::admit`] counts it against its address, the
//!    HTTP-stage limit and the sockets the open-file limit allows, or
//!    refuses it (the acceptor closes it at once);
//! 2. upgrading: [`PeerPermit::establish`] moves it from the HTTP stage to
//!    a WebSocket slot, or refuses (the server answers 503);
//! 3. closed: dropping the permit (with the socket) gives everything back.
//!
//! IPv6 peers are counted per /64, the block one subscriber line gets, so
//! that one client cannot evade its cap by rotating addresses in its block.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Arc;

use parking_lot::Mutex;

/// The gate's limits. `usize::MAX` means none.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GateLimits {
    /// WebSocket connections at once.
    pub max_connections: usize,
    /// Sockets (any stage) from one address (IPv6: one /64).
    pub max_per_address: usize,
    /// Sockets in their HTTP stage (handshakes and HTTP requests) at once.
    pub max_http: usize,
    /// Sockets in their HTTP stage from one address.
    pub max_http_per_address: usize,
    /// Sockets of any stage at once: what the process's open-file limit
    /// leaves for them.
    pub max_sockets: usize,
}

/// Why a socket was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// Its address holds its limit of sockets.
    #[error("{limit} connections from this address already")]
    Address {
        /// The limit.
        limit: usize,
    },
    /// The server holds its limit of sockets in the HTTP stage.
    #[error("{limit} HTTP connections open already")]
    Http {
        /// The limit.
        limit: usize,
    },
    /// Its address holds its limit of sockets in the HTTP stage.
    #[error("{limit} HTTP connections from this address already")]
    HttpAddress {
        /// The limit.
        limit: usize,
    },
    /// The server holds its limit of WebSocket connections.
    #[error("the server holds its limit of {limit} WebSocket connections")]
    Full {
        /// The limit.
        limit: usize,
    },
    /// The process holds as many sockets as its open-file limit allows.
    #[error("{limit} sockets open already: the open-file limit")]
    Sockets {
        /// The limit.
        limit: usize,
    },
}

impl Refused {
    /// A stable snake_case label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Refused::Address { .. } => "address",
            Refused::Http { .. } => "http",
            Refused::HttpAddress { .. } => "http_address",
            Refused::Full { .. } => "full",
            Refused::Sockets { .. } => "out_of_files",
        }
    }

    fn index(&self) -> usize {
        match self {
            Refused::Address { .. } => 0,
            Refused::Http { .. } => 1,
            Refused::HttpAddress { .. } => 2,
            Refused::Full { .. } => 3,
            Refused::Sockets { .. } => 4,
        }
    }
}

/// Labels of the refusal counters, in [`GateStats::refused`] order; the
/// last counts sockets refused for the open-file limit (by the gate, or
/// accepted with the acceptor's spare descriptor and closed at once).
pub const REFUSAL_LABELS: [&str; 5] = ["address", "http", "http_address", "full", "out_of_files"];

/// The gate's figures at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GateStats {
    /// WebSocket connections counted (reserved or attached).
    pub websockets: usize,
    /// Sockets in their HTTP stage.
    pub http: usize,
    /// Sockets refused since start, by [`REFUSAL_LABELS`].
    pub refused: [u64; 5],
    /// Sockets accepted since start, the refused ones included.
    pub accepted: u64,
}

/// Connection admission for one engine. Shared by all shards.
#[derive(Debug)]
pub struct Gate {
    limits: GateLimits,
    state: Mutex<GateState>,
}

#[derive(Debug, Default)]
struct GateState {
    by_address: HashMap<IpAddr, AddressCount>,
    http: usize,
    websockets: usize,
    refused: [u64; 5],
    accepted: u64,
}

#[derive(Debug, Default, Clone, Copy)]
struct AddressCount {
    all: usize,
    http: usize,
}

/// What one address is counted under: IPv4 as is, IPv6 by its /64 (a
/// network hands its hosts a /64, so one client may hold any address in
/// it). Per-address limits elsewhere count by it too.
pub fn address_block(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let bits = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(Ipv6Addr::from(bits))
            }
        },
    }
}

impl Gate {
    /// A gate enforcing `limits`.
    pub fn new(limits: GateLimits) -> Arc<Self> {
        Arc::new(Self {
            limits,
            state: Mutex::default(),
        })
    }

    /// Counts a newly accepted socket from `ip`, in its HTTP stage.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<PeerPermit, Refused> {
        let address = address_block(ip);
        let mut state = self.state.lock();
        state.accepted += 1;
        let count = state.by_address.get(&address).copied().unwrap_or_default();
        let refused = if state.http + state.websockets >= self.limits.max_sockets {
            Some(Refused::Sockets {
                limit: self.limits.max_sockets,
            })
        } else if count.all >= self.limits.max_per_address {
            Some(Refused::Address {
                limit: self.limits.max_per_address,
            })
        } else if count.http >= self.limits.max_http_per_address {
            Some(Refused::HttpAddress {
                limit: self.limits.max_http_per_address,
            })
        } else if state.http >= self.limits.max_http {
            Some(Refused::Http {
                limit: self.limits.max_http,
            })
        } else {
            None
        };
        if let Some(refused) = refused {
            state.refused[refused.index()] += 1;
            return Err(refused);
        }
        state.http += 1;
        let entry = state.by_address.entry(address).or_default();
        entry.all += 1;
        entry.http += 1;
        Ok(PeerPermit {
            gate: Arc::clone(self),
            address: ip,
            websocket: false,
        })
    }

    /// WebSocket connections counted now (reserved or attached).
    pub fn websockets(&self) -> usize {
        self.state.lock().websockets
    }

    /// Counts, and refusals since start.
    pub fn stats(&self) -> GateStats {
        let state = self.state.lock();
        GateStats {
            websockets: state.websockets,
            http: state.http,
            refused: state.refused,
            accepted: state.accepted,
        }
    }

    /// Counts a socket closed at once because the process had no file
    /// descriptor to spare.
    pub(crate) fn note_out_of_files(&self) {
        let mut state = self.state.lock();
        state.accepted += 1;
        state.refused[4] += 1;
    }

    /// Sockets in their HTTP stage now.
    pub fn http(&self) -> usize {
        self.state.lock().http
    }

    fn release(&self, address: IpAddr, websocket: bool) {
        let address = address_block(address);
        let mut state = self.state.lock();
        if websocket {
            state.websockets -= 1;
        } else {
            state.http -= 1;
        }
        if let Some(count) = state.by_address.get_mut(&address) {
            count.all -= 1;
            if !websocket {
                count.http -= 1;
            }
            if count.all == 0 {
                state.by_address.remove(&address);
            }
        }
    }
}

/// One admitted socket's place in the gate; dropping it gives the place back.
/// Moves with the socket (from the acceptor to the HTTP layer to the shard
/// that owns the WebSocket).
#[derive(Debug)]
pub struct PeerPermit {
    gate: Arc<Gate>,
    /// The peer's own address; it is counted under its [`address_block`].
    address: IpAddr,
    websocket: bool,
}

impl PeerPermit {
    /// Moves the socket from its HTTP stage into a WebSocket slot, reserved
    /// now; refused (and left as it was) when the server is full.
    pub fn establish(&mut self) -> Result<(), Refused> {
        if self.websocket {
            return Ok(());
        }
        let mut state = self.gate.state.lock();
        if state.websockets >= self.gate.limits.max_connections {
            let refused = Refused::Full {
                limit: self.gate.limits.max_connections,
            };
            state.refused[refused.index()] += 1;
            return Err(refused);
        }
        state.websockets += 1;
        state.http -= 1;
        if let Some(count) = state.by_address.get_mut(&address_block(self.address)) {
            count.http -= 1;
        }
        self.websocket = true;
        Ok(())
    }

    /// Whether the socket holds a WebSocket slot.
    pub fn is_websocket(&self) -> bool {
        self.websocket
    }

    /// The socket's peer's address, as accepted (the limits count it
    /// under its /64 if it is IPv6).
    pub fn address(&self) -> IpAddr {
        self.address
    }
}

impl Drop for PeerPermit {
    fn drop(&mut self) {
        self.gate.release(self.address, self.websocket);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gate(max_connections: usize, per_address: usize, http: usize, http_per: usize) -> Arc<Gate> {
        Gate::new(GateLimits {
            max_connections,
            max_per_address: per_address,
            max_http: http,
            max_http_per_address: http_per,
            max_sockets: usize::MAX,
        })
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn websocket_slots_are_reserved_exactly_and_returned_on_drop() {
        let gate = gate(2, 100, 100, 100);
        let mut permits: Vec<PeerPermit> = (0..5)
            .map(|_| gate.admit(ip("10.0.0.1")).unwrap())
            .collect();
        let upgraded = permits
            .iter_mut()
            .map(|p| p.establish().is_ok())
            .filter(|&ok| ok)
            .count();
        assert_eq!(upgraded, 2);
        assert_eq!(gate.websockets(), 2);
        assert_eq!(gate.http(), 3);
        let refused = permits.iter_mut().find(|p| !p.is_websocket()).unwrap();
        assert_eq!(refused.establish(), Err(Refused::Full { limit: 2 }));
        permits.retain(|p| !p.is_websocket());
        assert_eq!(gate.websockets(), 0);
        assert_eq!(gate.stats().refused, [0, 0, 0, 4, 0]);
        assert_eq!(
            gate.stats().accepted,
            5,
            "refused upgrades were accepted sockets"
        );
        assert!(permits[0].establish().is_ok());
        drop(permits);
        assert_eq!((gate.websockets(), gate.http()), (0, 0));
        assert!(gate.state.lock().by_address.is_empty());
    }

    #[test]
    fn addresses_are_capped_alone_and_ipv6_by_its_64_block() {
        let gate = gate(100, 2, 100, 100);
        let _a = gate.admit(ip("2001:db8::1")).unwrap();
        let _b = gate.admit(ip("2001:db8::ffff:1")).unwrap();
        assert_eq!(
            gate.admit(ip("2001:db8::2")).unwrap_err(),
            Refused::Address { limit: 2 }
        );
        let _other = gate.admit(ip("2001:db8:0:1::1")).unwrap();
        let _v4 = gate.admit(ip("192.0.2.1")).unwrap();
        let _mapped = gate.admit(ip("::ffff:192.0.2.1")).unwrap();
        assert_eq!(
            gate.admit(ip("192.0.2.1")).unwrap_err(),
            Refused::Address { limit: 2 }
        );
    }

    /// A permit names its peer by the peer's own address (logs, the
    /// client listing, per-address rules of protocols), while the limits
    /// count it under its /64; its block is freed with it.
    #[test]
    fn a_permit_keeps_its_peers_own_address_and_frees_its_block() {
        let gate = gate(100, 2, 100, 100);
        let mut a = gate.admit(ip("2001:db8::1234")).unwrap();
        assert_eq!(a.address(), ip("2001:db8::1234"));
        a.establish().unwrap();
        let b = gate.admit(ip("2001:db8::5678")).unwrap();
        assert_eq!(b.address(), ip("2001:db8::5678"));
        assert_eq!(
            gate.admit(ip("2001:db8::9")).unwrap_err(),
            Refused::Address { limit: 2 }
        );
        drop((a, b));
        assert!(gate.state.lock().by_address.is_empty());
        assert!(gate.admit(ip("2001:db8::9")).is_ok());
    }

    #[test]
    fn sockets_of_every_stage_count_against_the_open_file_budget() {
        let gate = Gate::new(GateLimits {
            max_sockets: 3,
            ..crate::EngineConfig::default().gate
        });
        let mut a = gate.admit(ip("10.0.0.1")).unwrap();
        a.establish().unwrap();
        let _b = gate.admit(ip("10.0.0.2")).unwrap();
        let _c = gate.admit(ip("10.0.0.3")).unwrap();
        assert_eq!(
            gate.admit(ip("10.0.0.4")).unwrap_err(),
            Refused::Sockets { limit: 3 }
        );
        drop(a);
        gate.admit(ip("10.0.0.4")).unwrap();
        assert_eq!(gate.stats().refused[4], 1);
        assert_eq!(
            gate.stats().accepted,
            5,
            "refused sockets count as accepted"
        );
    }

    #[test]
    fn the_http_stage_is_capped_globally_and_per_address() {
        let gate = gate(100, 100, 3, 2);
        let mut a1 = gate.admit(ip("10.0.0.1")).unwrap();
        let _a2 = gate.admit(ip("10.0.0.1")).unwrap();
        assert_eq!(
            gate.admit(ip("10.0.0.1")).unwrap_err(),
            Refused::HttpAddress { limit: 2 }
        );
        let _b1 = gate.admit(ip("10.0.0.2")).unwrap();
        assert_eq!(
            gate.admit(ip("10.0.0.3")).unwrap_err(),
            Refused::Http { limit: 3 }
        );
        // An upgraded socket leaves the HTTP stage and frees its place there.
        a1.establish().unwrap();
        let _a3 = gate.admit(ip("10.0.0.1")).unwrap();
    }
}
