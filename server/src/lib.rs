//! The shardcast server: HTTP and WebSocket endpoints over the sharded engine.
//!
//! [`Server::start`] binds the listener, starts the engine's shards, serves
//! HTTP on them ([`http::HttpHandler`]) and, when configured, the demo feed.
//! The binary (`src/main.rs`) adds flags, logging and signal handling; the
//! integration tests start a [`Server`] on an ephemeral port.
#![forbid(unsafe_code)]

pub mod admin;
pub mod auth;
pub mod broker;
pub mod cli;
pub mod client;
pub mod config;
pub mod dashboard;
pub mod demo;
pub mod extensions;
pub mod files;
pub mod http;
pub mod input;
pub mod metrics;
pub mod protocol;
pub mod request;
pub mod stall;
pub mod tls;
pub mod upgrade;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use shardcast_engine::Engine;
use tracing::{info, warn};

pub use config::{RawConfig, ServerConfig};

/// What every request handler and session shares. Shared by all shards; read-only.
#[derive(Debug)]
pub struct App {
    /// The validated configuration.
    pub config: ServerConfig,
    /// The engine.
    pub engine: Engine,
    /// Every endpoint of every protocol, by path.
    pub routes: protocol::Routes,
    /// When the server started.
    pub started: Instant,
    /// When the server started, on the wall clock (read once, so that
    /// `process_start_time_seconds` stays put when the clock is adjusted).
    pub started_at: std::time::SystemTime,
    /// WebSocket upgrade requests and refusals, for `/metrics`.
    pub upgrades: metrics::Upgrades,
    /// The on-demand feeds of the simulated market (bars and quotes of any
    /// symbol while subscribed); `None` without the demo feed.
    pub producers: Option<demo::Producers>,
    /// The last `/metrics` exposition and when it was rendered: scrapes
    /// within a second share it, so a busy scraper (the path is open by
    /// default) cannot make every shard walk its connections per request.
    pub metrics_cache: parking_lot::Mutex<Option<(Instant, bytes::Bytes)>>,
    /// Set when a shutdown begins draining: `/health` and `/ready` answer
    /// 503 and WebSocket upgrades are refused from then on.
    pub draining: AtomicBool,
    /// What the live dashboards share: tickets and the latest sample.
    pub dashboard: dashboard::Dashboard,
    /// The certificate in force, when serving TLS.
    pub tls: Option<Arc<tls::Tls>>,
    /// The external broker joining this server to others, if any.
    pub bus: Option<Arc<dyn broker::Bus>>,
}

impl App {
    /// Whether the server is draining before it stops.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// The broker as `/health` shows it: its kind, and whether it is
    /// reachable (`ok`) or not (`unreachable`: the server is degraded).
    pub fn broker_status(&self) -> (&'static str, &'static str) {
        match &self.bus {
            None => ("in_process", "ok"),
            Some(bus) if bus.health().is_connected() => (bus.kind(), "ok"),
            Some(bus) => (bus.kind(), "unreachable"),
        }
    }
}

/// How often [`Server::drain`] closes a batch of connections.
pub const DRAIN_STEP: Duration = Duration::from_millis(100);
/// How long [`Server::drain`] waits, after its last step, for the close
/// handshakes of the last batch.
pub const DRAIN_LINGER: Duration = Duration::from_secs(1);

/// A running server.
#[derive(Debug)]
pub struct Server {
    app: Arc<App>,
    addr: SocketAddr,
    metrics_addr: Option<SocketAddr>,
    plain_addr: Option<SocketAddr>,
    demo: Option<demo::DemoFeed>,
}

impl Server {
    /// Binds, starts the shards and begins accepting.
    pub fn start(mut config: ServerConfig) -> anyhow::Result<Self> {
        config.engine.gate = files::fit_to_process(config.engine.gate, config.engine.shards.get());
        let listener = std::net::TcpListener::bind(config.listen)
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        let addr = listener.local_addr()?;
        let metrics_listener = match config.metrics_listen {
            Some(at) => Some(
                std::net::TcpListener::bind(at)
                    .with_context(|| format!("cannot listen on {at} (metrics_listen)"))?,
            ),
            None => None,
        };
        let plain_listener = match config.listen_plain {
            Some(at) => Some(
                std::net::TcpListener::bind(at)
                    .with_context(|| format!("cannot listen on {at} (listen_plain)"))?,
            ),
            None => None,
        };
        let tls = match &config.tls {
            Some(settings) => Some(Arc::new(
                tls::Tls::load(settings.clone(), config.engine.shards.get())
                    .context("cannot load the TLS certificate")?,
            )),
            None => None,
        };
        let mut registry = protocol::Registry::default();
        protocol::register_all(&mut registry, &config)?;
        for rule in registry.declared_channels() {
            config
                .engine
                .channels
                .declare(rule)
                .with_context(|| format!("a protocol declares the channel rule {rule:?}"))?;
        }
        let (formats, routes) = registry.finish();
        let (broker, bus) = broker::build(&config.broker, &config.engine);
        let engine = Engine::start(config.engine.clone(), formats, broker)
            .context("cannot start the shard threads")?;
        let bus = bus.inspect(|bus| bus.start(engine.clone()));
        let producers = if config.demo {
            Some(demo::Producers::start(engine.clone()).context("cannot start the demo feed")?)
        } else {
            None
        };
        let app = Arc::new(App {
            config,
            engine: engine.clone(),
            producers,
            routes,
            started: Instant::now(),
            started_at: std::time::SystemTime::now(),
            upgrades: metrics::Upgrades::default(),
            metrics_cache: parking_lot::Mutex::new(None),
            draining: AtomicBool::new(false),
            dashboard: dashboard::Dashboard::default(),
            tls: tls.clone(),
            bus,
        });
        engine.serve(
            listener,
            Arc::new(http::HttpHandler::new(Arc::clone(&app), tls.clone())),
        );
        let plain_addr = match plain_listener {
            Some(plain) => {
                let addr = plain.local_addr()?;
                engine.serve(
                    plain,
                    Arc::new(http::HttpHandler::health_only(Arc::clone(&app))),
                );
                Some(addr)
            }
            None => None,
        };
        let metrics_addr = match metrics_listener {
            Some(metrics) => {
                let addr = metrics.local_addr()?;
                let handler = http::HttpHandler::metrics_only(Arc::clone(&app));
                engine.serve(metrics, Arc::new(handler));
                Some(addr)
            }
            None => None,
        };
        let demo = if app.config.demo {
            Some(demo::DemoFeed::start(engine.clone()).context("cannot start the demo feed")?)
        } else {
            None
        };
        info!(
            %addr,
            tls = tls.is_some(),
            plain = ?plain_addr,
            metrics = ?metrics_addr,
            shards = app.config.engine.shards.get(),
            pinned = app.config.engine.pin_threads,
            "shardcast listening"
        );
        if let Some(key) = &app.config.dev_key {
            warn!(
                api_key = %key,
                "no API keys configured: using a development key with every role; configure [[api_keys]] before exposing this server"
            );
        }
        Ok(Self {
            app,
            addr,
            metrics_addr,
            plain_addr,
            demo,
        })
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The address of the metrics listener, if one was configured.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// The address of the plain health-check listener of a TLS server.
    pub fn plain_addr(&self) -> Option<SocketAddr> {
        self.plain_addr
    }

    /// Reads the TLS certificate and key again (on SIGHUP): new handshakes
    /// use them when they are valid; on error the old ones stay (logged).
    /// Nothing to do for a plain server.
    pub fn reload_tls(&self) -> Result<(), tls::TlsError> {
        match &self.app.tls {
            Some(tls) => tls.reload(),
            None => Ok(()),
        }
    }

    /// The engine.
    pub fn engine(&self) -> &Engine {
        &self.app.engine
    }

    /// The shared application state.
    pub fn app(&self) -> &Arc<App> {
        &self.app
    }

    /// Lame duck, the first part of a graceful shutdown: from now on
    /// `/health` and `/ready` answer 503 `draining` and WebSocket upgrades
    /// are refused (503, `Retry-After`); the WebSocket connections open are
    /// closed with 1001 `SERVER_DRAINING` in paced batches spread evenly
    /// over `over` (one batch every [`DRAIN_STEP`]), so that their clients
    /// reconnect elsewhere a few at a time rather than all at once.
    /// Publishing and delivery go on for the connections not yet closed.
    /// Returns when every connection is gone, or [`DRAIN_LINGER`] after
    /// `over` has passed; then call [`Server::shutdown`]. A future: drop it to cut the drain short.
    pub async fn drain(&self, over: Duration) {
        self.app.draining.store(true, Ordering::Relaxed);
        let open = self.app.engine.connections();
        info!(
            connections = open,
            drain_seconds = over.as_secs_f64(),
            "draining: /health and /ready answer 503, new WebSocket connections are refused, open ones are closed with 1001 in batches"
        );
        let steps = u32::try_from(over.as_millis() / DRAIN_STEP.as_millis())
            .unwrap_or(u32::MAX)
            .max(1);
        let started = Instant::now();
        // Step k at k steps in, the last at `over`: a balancer polling
        // `/ready` sees the 503 before the first clients are sent away.
        let mut ticks =
            tokio::time::interval_at(tokio::time::Instant::now() + DRAIN_STEP, DRAIN_STEP);
        for step in 1..=steps {
            if self.app.engine.connections() == 0 {
                break;
            }
            ticks.tick().await;
            self.app.engine.shed(step, steps);
        }
        // The last batch's close handshakes.
        let linger = Instant::now() + DRAIN_LINGER;
        while self.app.engine.connections() > 0 && Instant::now() < linger {
            ticks.tick().await;
        }
        info!(
            closed = open.saturating_sub(self.app.engine.connections()),
            left = self.app.engine.connections(),
            seconds = started.elapsed().as_secs_f64(),
            "drained"
        );
    }

    /// Stops accepting, closes every client with 1001 after flushing, and
    /// waits for the shards to finish.
    pub fn shutdown(mut self) {
        if let Some(mut demo) = self.demo.take() {
            demo.stop();
        }
        if let Some(producers) = &self.app.producers {
            producers.stop();
        }
        self.app.engine.shutdown();
        self.app.engine.join();
    }
}
