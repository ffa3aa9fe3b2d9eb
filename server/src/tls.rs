//! TLS on the listener: the certificate and key loaded (and reloaded on
//! SIGHUP), and the handshake of each accepted connection, bounded.
//!
//! Shared by all shards: the current rustls configuration sits behind a lock
//! taken once per handshake to clone an `Arc`, never on the delivery path.
//! A reload builds a whole new configuration first and swaps it in only
//! when it is valid, so a bad file on disk leaves the server serving the
//! certificate it had; connections already open keep their sessions.
//!
//! A handshake runs on the shard that accepted the connection, as one of its
//! tasks, in steps bounded so that a flood of handshakes can neither stall
//! the shard's deliveries nor lock honest clients out:
//! 1. the connection gate has already counted the socket (per address and
//!    in total) before the handshake begins;
//! 2. the ClientHello is read (a plain HTTP request is answered 400 and
//!    closed); this is network time, and a client that stalls here holds
//!    nothing but its socket;
//! 3. the shard's budget gives the handshake a turn: at most
//!    [`TlsSettings::handshakes_per_second`] a second per shard, so the
//!    cryptography (one task poll each: key exchange and signature) takes
//!    a bounded share of the shard's time, whatever the flood; the others
//!    wait, costing nothing;
//! 4. the server's flight is sent and the client's last flight read;
//! 5. all of it must finish within [`TlsSettings::handshake_timeout`], or
//!    the socket is closed.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use parking_lot::RwLock;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::Acceptor;
use rustls::ServerConfig as RustlsConfig;
use shardcast_engine::{RateLimit, RateLimiter};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_rustls::LazyConfigAcceptor;
use tracing::{info, warn};

/// Where the certificate and key are, and how handshakes are bounded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsSettings {
    /// PEM file: the certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM file: the private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// Time a client has to complete the handshake, waiting included.
    pub handshake_timeout: Duration,
    /// Handshakes a shard starts per second (its cryptography), at most.
    pub handshakes_per_second: u32,
}

/// Why the certificate or key cannot be used. Each names its file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The file cannot be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The file holds no usable PEM item of the kind expected.
    #[error("{path}: {what}")]
    Pem {
        /// The file.
        path: String,
        /// What is missing or malformed.
        what: String,
    },
    /// The leaf certificate is not valid now.
    #[error("{path}: the certificate {what}")]
    Validity {
        /// The file.
        path: String,
        /// Expired or not yet valid, with the date.
        what: String,
    },
    /// The key does not belong to the certificate, or is of a kind rustls
    /// cannot sign with.
    #[error("{key} does not go with {cert}: {why}")]
    Mismatch {
        /// The certificate file.
        cert: String,
        /// The key file.
        key: String,
        /// What rustls said.
        why: String,
    },
}

/// The certificate in force, reloadable. Shared by all shards.
#[derive(Debug)]
pub struct Tls {
    settings: TlsSettings,
    current: RwLock<Arc<RustlsConfig>>,
    /// One handshake budget per shard, indexed by the shard's number.
    budgets: Box<[Budget]>,
    counts: HandshakeCounts,
}

/// Handshakes by outcome, and reloads. Shared; relaxed counters.
#[derive(Debug, Default)]
pub struct HandshakeCounts {
    /// Completed handshakes.
    pub completed: AtomicU64,
    /// Handshakes that failed: not TLS, no common version or cipher, an alert.
    pub failed: AtomicU64,
    /// Handshakes cut off by the timeout, waiting included.
    pub timed_out: AtomicU64,
    /// Certificate reloads that took effect.
    pub reloaded: AtomicU64,
    /// Certificate reloads refused (the old certificate stays).
    pub reload_failed: AtomicU64,
}

impl Tls {
    /// Loads the certificate and key for a server of `shards` shards.
    pub fn load(settings: TlsSettings, shards: usize) -> Result<Self, TlsError> {
        let config = build(&settings.cert, &settings.key, SystemTime::now())?;
        let budgets = (0..shards.max(1)).map(|_| Budget::default()).collect();
        Ok(Self {
            settings,
            current: RwLock::new(config),
            budgets,
            counts: HandshakeCounts::default(),
        })
    }

    /// The settings it was loaded with.
    pub fn settings(&self) -> &TlsSettings {
        &self.settings
    }

    /// Handshake and reload counts.
    pub fn counts(&self) -> &HandshakeCounts {
        &self.counts
    }

    /// Reads the files again; new handshakes use them if they are valid.
    /// On error the certificate in force stays, and the error is returned.
    pub fn reload(&self) -> Result<(), TlsError> {
        match build(&self.settings.cert, &self.settings.key, SystemTime::now()) {
            Ok(config) => {
                *self.current.write() = config;
                self.counts.reloaded.fetch_add(1, Ordering::Relaxed);
                info!(cert = %self.settings.cert.display(), "TLS certificate reloaded; new connections use it");
                Ok(())
            }
            Err(e) => {
                self.counts.reload_failed.fetch_add(1, Ordering::Relaxed);
                warn!(error = %e, "TLS certificate not reloaded; still serving the previous one");
                Err(e)
            }
        }
    }

    /// Runs the server side of the handshake on `stream`, on shard `shard`,
    /// within the bounds above. `None`: it failed or timed out (logged at
    /// debug level; the socket is dropped).
    pub async fn accept(
        &self,
        mut stream: TcpStream,
        shard: usize,
    ) -> Option<TlsStream<TcpStream>> {
        let budget = &self.budgets[shard % self.budgets.len()];
        let peer = stream.peer_addr().ok();
        let handshake = async {
            if plain_http(&mut stream).await {
                self.counts.failed.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(?peer, "plain HTTP on the TLS port; answered 400");
                return None;
            }
            let failed = |e: std::io::Error| {
                self.counts.failed.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(?peer, error = %e, "TLS handshake failed");
            };
            // 1. The ClientHello: network time, no work of ours.
            let hello = LazyConfigAcceptor::new(Acceptor::default(), stream);
            let start = hello.await.map_err(failed).ok()?;
            // 2. A turn in the shard's budget, then the cryptography (the
            //    first poll of the rest) and the client's last flight.
            budget.turn(self.settings.handshakes_per_second).await;
            let config = Arc::clone(&self.current.read());
            start.into_stream(config).await.map_err(failed).ok()
        };
        match tokio::time::timeout(self.settings.handshake_timeout, handshake).await {
            Ok(Some(tls)) => {
                self.counts.completed.fetch_add(1, Ordering::Relaxed);
                Some(tls)
            }
            Ok(None) => None,
            Err(_) => {
                self.counts.timed_out.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(?peer, "TLS handshake timed out");
                None
            }
        }
    }
}

/// A shard's handshake budget: a GCRA bucket of `handshakes_per_second`
/// with a one-second burst. Shared (each shard takes only its own, so the
/// lock is uncontended).
#[derive(Debug, Default)]
struct Budget {
    bucket: parking_lot::Mutex<RateLimiter>,
}

impl Budget {
    /// Waits for a turn: at once while within the rate, else in steps of
    /// one interval (the handshake's timeout still runs).
    async fn turn(&self, per_second: u32) {
        let limit = RateLimit::per_second(per_second);
        let interval = Duration::from_secs(1) / per_second.max(1);
        loop {
            let now = u64::try_from(EPOCH.elapsed().as_nanos()).unwrap_or(u64::MAX);
            if self.bucket.lock().try_acquire(limit, now) {
                return;
            }
            tokio::time::sleep(interval.max(Duration::from_millis(1))).await;
        }
    }
}

/// The origin of the budgets' clock.
static EPOCH: std::sync::LazyLock<Instant> = std::sync::LazyLock::new(Instant::now);

/// Whether the client spoke plain HTTP (a TLS record starts with 0x16, a
/// request with a method's letters); if so it is told, in plain HTTP, to
/// use `https://` or `wss://`.
async fn plain_http(stream: &mut TcpStream) -> bool {
    const USE_TLS: &[u8] = b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: 52\r\nConnection: close\r\n\r\nThis port serves TLS: use https:// or wss:// here.\r\n";
    let mut first = [0u8; 1];
    match stream.peek(&mut first).await {
        Ok(1) if first[0].is_ascii_uppercase() => {
            // Read the request (what has come of it), so that closing with
            // unread bytes does not reset the connection over the answer.
            let mut request = [0u8; 4096];
            let _ = stream.try_read(&mut request);
            let _ = stream.write_all(USE_TLS).await;
            let _ = stream.shutdown().await;
            true
        }
        _ => false,
    }
}

/// A rustls configuration from the two files, checked at `now`.
fn build(cert: &Path, key: &Path, now: SystemTime) -> Result<Arc<RustlsConfig>, TlsError> {
    let cert_name = cert.display().to_string();
    let key_name = key.display().to_string();
    let cert_pem = read(cert)?;
    let key_pem = read(key)?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(&cert_name, format!("not a PEM certificate chain: {e}")))?;
    let Some(leaf) = chain.first() else {
        return Err(pem_error(&cert_name, "no CERTIFICATE in the file"));
    };
    check_validity(leaf, now).map_err(|what| TlsError::Validity {
        path: cert_name.clone(),
        what,
    })?;
    let private = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|e| pem_error(&key_name, format!("no usable PEM private key: {e}")))?;
    #[allow(deprecated)]
    // ring over aws-lc-rs: no C toolchain beyond cc; no post-quantum key exchange.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    provider
        .key_provider
        .load_private_key(private.clone_key())
        .map_err(|e| pem_error(&key_name, format!("not a usable private key: {e}")))?;
    let mut config = RustlsConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| pem_error(&cert_name, e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, private)
        .map_err(|e| TlsError::Mismatch {
            cert: cert_name,
            key: key_name,
            why: e.to_string(),
        })?;
    // WebSocket upgrades are HTTP/1.1; a client offering h2 too gets this.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.display().to_string(),
        source,
    })
}

fn pem_error(path: &str, what: impl Into<String>) -> TlsError {
    TlsError::Pem {
        path: path.to_owned(),
        what: what.into(),
    }
}

/// Whether the certificate is valid at `now`: `Err` says how it is not.
fn check_validity(leaf: &CertificateDer<'_>, now: SystemTime) -> Result<(), String> {
    let (_, parsed) =
        x509_parser::parse_x509_certificate(leaf).map_err(|e| format!("cannot be parsed: {e}"))?;
    let validity = parsed.validity();
    let now = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    if now > validity.not_after.timestamp() {
        return Err(format!("expired on {}", validity.not_after));
    }
    if now < validity.not_before.timestamp() {
        return Err(format!("is not valid before {}", validity.not_before));
    }
    Ok(())
}
