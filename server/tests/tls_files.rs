//! TLS on the real binary: certificate files that cannot serve stop the
//! server at start with exit code 2 and an error naming the file; SIGHUP
//! reloads the certificate for new handshakes; `--listen-plain` serves
//! only the health checks, in plain HTTP.

mod common;

use common::{free_port, start_binary, wait_for_log, Logs};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{CertificateParams, KeyPair};
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::Child;

/// PEM files in a directory of the test's own, removed on drop.
struct Files(PathBuf);

impl Files {
    fn new(test: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("shardcast-tls-{}-{test}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    /// Writes a certificate (valid unless `expired`) and its key (or another
    /// key, when `mismatched`); returns the paths and the certificate.
    fn write(&self, expired: bool, mismatched: bool) -> (String, String, Vec<u8>) {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap();
        if expired {
            params.not_before = rcgen::date_time_ymd(2020, 1, 1);
            params.not_after = rcgen::date_time_ymd(2021, 1, 1);
        }
        let cert = params.self_signed(&key).unwrap();
        let written_key = if mismatched {
            KeyPair::generate().unwrap()
        } else {
            key
        };
        let cert_path = self.0.join("cert.pem");
        let key_path = self.0.join("key.pem");
        std::fs::write(&cert_path, cert.pem()).unwrap();
        std::fs::write(&key_path, written_key.serialize_pem()).unwrap();
        (path(&cert_path), path(&key_path), cert.der().to_vec())
    }
}

impl Drop for Files {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn path(p: &Path) -> String {
    p.to_str().unwrap().to_owned()
}

/// `shardcast check-config` and `serve` with these TLS files: exit code and stderr.
fn start_with(cert: &str, key: &str) -> Vec<(Option<i32>, String)> {
    ["check-config", "serve"]
        .iter()
        .map(|command| {
            let out = std::process::Command::new(env!("CARGO_BIN_EXE_shardcast"))
                .args([command, "--no-demo", "--listen", "127.0.0.1:0"])
                .args(["--tls-cert", cert, "--tls-key", key, "--log-format", "text"])
                .output()
                .expect("the binary runs");
            (out.status.code(), String::from_utf8(out.stderr).unwrap())
        })
        .collect()
}

#[test]
fn files_that_cannot_serve_stop_the_start_naming_the_file() {
    let files = Files::new("bad");

    let (cert, key, _) = files.write(true, false);
    for (code, stderr) in start_with(&cert, &key) {
        assert_eq!(code, Some(2), "{stderr}");
        assert!(
            stderr.contains(&cert) && stderr.contains("expired"),
            "{stderr}"
        );
    }

    let (cert, key, _) = files.write(false, true);
    for (code, stderr) in start_with(&cert, &key) {
        assert_eq!(code, Some(2), "{stderr}");
        assert!(stderr.contains(&key) && stderr.contains(&cert), "{stderr}");
    }

    let (cert, key, _) = files.write(false, false);
    std::fs::write(
        &key,
        "-----BEGIN PRIVATE KEY-----\nbroken\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    for (code, stderr) in start_with(&cert, &key) {
        assert_eq!(code, Some(2), "{stderr}");
        assert!(
            stderr.contains("tls.key") && stderr.contains(&key),
            "{stderr}"
        );
    }

    let missing = format!("{key}.missing");
    for (code, stderr) in start_with(&cert, &missing) {
        assert_eq!(code, Some(2), "{stderr}");
        assert!(stderr.contains(&missing), "{stderr}");
    }
}

/// A TLS server on free ports (and a plain health listener), its logs.
async fn serve(cert: &str, key: &str) -> (Child, u16, u16, Logs) {
    let (port, plain) = (free_port(), free_port());
    let (listen, listen_plain) = (format!("127.0.0.1:{port}"), format!("127.0.0.1:{plain}"));
    let args = [
        "--listen",
        &listen,
        "--listen-plain",
        &listen_plain,
        "--tls-cert",
        cert,
        "--tls-key",
        key,
    ];
    let (child, logs) = start_binary(&args).await;
    (child, port, plain, logs)
}

/// `GET path` over TLS, trusting only `der`: the status line, or the
/// handshake's error.
async fn https_get(port: u16, der: &[u8], path: &str) -> Result<String, std::io::Error> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from(der.to_vec())).unwrap();
    #[allow(deprecated)] // The server's provider.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = TcpStream::connect(("127.0.0.1", port)).await?;
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(client))
        .connect(name, tcp)
        .await?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    tls.write_all(request.as_bytes()).await?;
    let mut answer = Vec::new();
    tls.read_to_end(&mut answer).await?;
    let answer = String::from_utf8_lossy(&answer);
    Ok(answer.lines().next().unwrap_or_default().to_owned())
}

async fn plain_get(port: u16, path: &str) -> String {
    let mut tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    tcp.read_to_end(&mut answer).await.unwrap();
    String::from_utf8_lossy(&answer)
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn sighup_reloads_the_certificate_and_the_plain_port_serves_health_only() {
    let files = Files::new("reload");
    let (cert, key, first) = files.write(false, false);
    let (child, port, plain, mut logs) = serve(&cert, &key).await;
    assert!(https_get(port, &first, "/health")
        .await
        .unwrap()
        .contains(" 200 "));

    assert!(plain_get(plain, "/health").await.contains(" 200 "));
    assert!(plain_get(plain, "/ready").await.contains(" 200 "));
    assert!(plain_get(plain, "/api/v1/stats").await.contains(" 404 "));

    let (_, _, second) = files.write(false, false);
    let pid = child.id().unwrap().to_string();
    let status = std::process::Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap();
    assert!(status.success());
    wait_for_log(&mut logs, "TLS certificate reloaded").await;
    assert!(
        https_get(port, &first, "/health").await.is_err(),
        "the old certificate is gone"
    );
    assert!(https_get(port, &second, "/health")
        .await
        .unwrap()
        .contains(" 200 "));

    // A bad file: logged, and the certificate in force stays.
    std::fs::write(files.0.join("cert.pem"), "garbage").unwrap();
    std::process::Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap();
    wait_for_log(&mut logs, "TLS certificate not reloaded").await;
    assert!(https_get(port, &second, "/health")
        .await
        .unwrap()
        .contains(" 200 "));
}
