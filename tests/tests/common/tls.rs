//! TLS for tests: a self-signed certificate made on the spot (rcgen) and
//! written to PEM files the server reads, and a rustls client that trusts
//! exactly that certificate.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use rustls::pki_types::CertificateDer;

/// A certificate for `127.0.0.1` and `localhost`, in PEM files of its own.
pub struct TestCert {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// The certificate as the server presents it.
    pub der: Vec<u8>,
}

impl TestCert {
    pub fn new() -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "shardcast-tls-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let mut cert = Self {
            cert: dir.join("cert.pem"),
            key: dir.join("key.pem"),
            der: Vec::new(),
        };
        cert.renew();
        cert
    }

    /// Writes a new certificate and key over the files.
    pub fn renew(&mut self) {
        let made = rcgen::generate_simple_self_signed(vec![
            "127.0.0.1".to_owned(),
            "localhost".to_owned(),
        ])
        .unwrap();
        std::fs::write(&self.cert, made.cert.pem()).unwrap();
        std::fs::write(&self.key, made.key_pair.serialize_pem()).unwrap();
        self.der = made.cert.der().to_vec();
    }

    /// The `[tls]` section serving this certificate.
    pub fn section(&self) -> String {
        format!(
            "[tls]\ncert = '{}'\nkey = '{}'\n",
            self.cert.display(),
            self.key.display()
        )
    }

    /// A client that trusts this certificate (and nothing else).
    pub fn client(&self) -> Arc<rustls::ClientConfig> {
        client_trusting(&self.der)
    }
}

impl Drop for TestCert {
    fn drop(&mut self) {
        if let Some(dir) = self.cert.parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// A rustls client (ring) whose only root is `der`.
pub fn client_trusting(der: &[u8]) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from(der.to_vec())).unwrap();
    #[allow(deprecated)] // The server's provider; see server/src/tls.rs.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    Arc::new(config)
}

/// Opens a TLS connection to `addr` as `127.0.0.1` with `client`.
pub async fn tls_connect(
    addr: std::net::SocketAddr,
    client: Arc<rustls::ClientConfig>,
) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    tokio_rustls::TlsConnector::from(client)
        .connect(name, tcp)
        .await
}
