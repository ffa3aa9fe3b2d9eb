//! Shared helpers: a real server on an ephemeral port, a tokio-tungstenite
//! client (an implementation independent of the server's), and a minimal
//! HTTP/1.1 client over a plain socket.
#![allow(dead_code)] // Each test binary uses its own subset of these helpers.

mod bondx;
mod bus;
mod bus_process;
mod client;
mod exposition;
mod four;
mod raw;
mod simple;
mod slow;
mod tls;

#[allow(unused_imports)] // Each test binary uses its own subset, as above.
pub use self::{
    bondx::*, bus::*, bus_process::*, client::*, exposition::*, four::*, raw::*, simple::*,
    slow::*, tls::*,
};

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use shardcast_server::{RawConfig, Server};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

pub const ADMIN: &str = "admin-key-000";
pub const SUB: &str = "sub-key-0000";
pub const PUB: &str = "pub-key-0000";

/// How long a test waits for any single thing before failing.
pub const WAIT: Duration = Duration::from_secs(5);

/// A server for one test. Shut down (closing clients with 1001) on drop.
pub struct TestServer {
    server: Option<Server>,
    pub addr: SocketAddr,
    /// Set for a server started with a `[tls]` section: its clients speak
    /// `wss://` and HTTPS, trusting this.
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

impl TestServer {
    /// Starts a server with two unpinned shards, no demo feed (unless `extra`
    /// says `demo = true`), three keys
    /// (admin: every role; sub: subscribe; pub: publish), and `extra` TOML.
    pub fn start(extra: &str) -> Self {
        Self::start_with_keys(extra, "")
    }

    /// As [`TestServer::start`], with `keys` (more `[[api_keys]]` entries or
    /// a `[jwt]` section) appended.
    pub fn start_with_keys(extra: &str, keys: &str) -> Self {
        Self::start_declaring(&[], extra, keys)
    }

    /// As [`TestServer::start_with_keys`], declaring `channels` (rules)
    /// beside the test channels.
    pub fn start_declaring(channels: &[&str], extra: &str, keys: &str) -> Self {
        Self::start_adjusted(channels, extra, keys, |_| {})
    }

    /// As [`TestServer::start_declaring`], with the validated settings
    /// changed by `adjust` (for what no setting reaches).
    pub fn start_adjusted(
        channels: &[&str],
        extra: &str,
        keys: &str,
        adjust: impl FnOnce(&mut shardcast_server::ServerConfig),
    ) -> Self {
        let mut rules = vec!["prices.*", "positions.*", "t1", "t2", "big"];
        rules.extend_from_slice(channels);
        let channels = serde_json::to_string(&rules).expect("rules serialize");
        let toml = format!(
            r#"
listen = "127.0.0.1:0"
shards = 2
pin_threads = false
channels = {channels}
{extra}

[[api_keys]]
key = "{ADMIN}"
roles = ["subscribe", "publish", "admin"]

[[api_keys]]
key = "{SUB}"
roles = ["subscribe"]

[[api_keys]]
key = "{PUB}"
roles = ["publish"]

{keys}
"#
        );
        let mut raw = RawConfig::from_toml(&toml).expect("test config parses");
        // No simulated market unless `extra` asks for it with `demo = true`.
        raw.demo.get_or_insert(false);
        let mut config = raw.validate().expect("test config is valid");
        adjust(&mut config);
        let server = Server::start(config).expect("server starts");
        let addr = server.local_addr();
        Self {
            server: Some(server),
            addr,
            tls: None,
        }
    }

    /// As [`TestServer::start_with_keys`], serving TLS with `cert`.
    pub fn start_tls(extra: &str, keys: &str, cert: &TestCert) -> Self {
        let mut server = Self::start_with_keys(
            &format!(
                "{extra}
{}",
                cert.section()
            ),
            keys,
        );
        server.tls = Some(cert.client());
        server
    }

    pub fn server(&self) -> &Server {
        self.server.as_ref().expect("running")
    }

    /// Shuts down now, waiting for the shards.
    pub fn shutdown(&mut self) {
        if let Some(server) = self.server.take() {
            server.shutdown();
        }
    }

    pub fn ws_url(&self, path_and_query: &str) -> String {
        let scheme = if self.tls.is_some() { "wss" } else { "ws" };
        format!("{scheme}://{}{}", self.addr, path_and_query)
    }

    /// Connects with `key` in the X-API-Key header (none when `None`).
    pub async fn connect(&self, path_and_query: &str, key: Option<&str>) -> Ws {
        let mut request = self.ws_url(path_and_query).into_client_request().unwrap();
        if let Some(key) = key {
            request
                .headers_mut()
                .insert("X-API-Key", key.parse().unwrap());
        }
        let (ws, _) = tokio::time::timeout(WAIT, self.connect_request(request))
            .await
            .expect("connect in time")
            .expect("websocket handshake");
        ws
    }

    /// Attempts a handshake with `headers`; the server's refusal comes back
    /// as `Err(status)`.
    pub async fn try_connect(
        &self,
        path_and_query: &str,
        headers: &[(&str, &str)],
    ) -> Result<Ws, u16> {
        let mut request = self.ws_url(path_and_query).into_client_request().unwrap();
        for (name, value) in headers {
            request.headers_mut().insert(
                tokio_tungstenite::tungstenite::http::HeaderName::from_bytes(name.as_bytes())
                    .unwrap(),
                value.parse().unwrap(),
            );
        }
        match tokio::time::timeout(WAIT, self.connect_request(request))
            .await
            .expect("handshake in time")
        {
            Ok((ws, _)) => Ok(ws),
            Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => Err(resp.status().as_u16()),
            Err(e) => panic!("handshake failed without an HTTP answer: {e}"),
        }
    }

    /// The WebSocket handshake of `request`, over TLS when the server has it.
    async fn connect_request(
        &self,
        request: tokio_tungstenite::tungstenite::handshake::client::Request,
    ) -> Result<
        (
            Ws,
            tokio_tungstenite::tungstenite::handshake::client::Response,
        ),
        tokio_tungstenite::tungstenite::Error,
    > {
        let connector = self.tls.clone().map(tokio_tungstenite::Connector::Rustls);
        tokio_tungstenite::connect_async_tls_with_config(request, None, false, connector).await
    }

    /// Sends `request` (a complete HTTP/1.1 request, head and body) on a new
    /// socket (TLS when the server has it); returns the status, head and
    /// body of the answer.
    pub async fn raw_request(&self, request: &[u8]) -> (u16, String, String) {
        match &self.tls {
            None => raw_request_to(self.addr, request).await,
            Some(client) => {
                let mut stream = tls_connect(self.addr, Arc::clone(client)).await.unwrap();
                stream.write_all(request).await.unwrap();
                let mut response = Vec::new();
                tokio::time::timeout(WAIT, stream.read_to_end(&mut response))
                    .await
                    .expect("answer in time")
                    .expect("answer read");
                parse_response(&response)
            }
        }
    }

    /// Connects to /ws/telemetry and consumes the welcome.
    pub async fn telemetry(&self, query: &str) -> Ws {
        let mut ws = self
            .connect(&format!("/ws/telemetry{query}"), Some(ADMIN))
            .await;
        let welcome = next_json(&mut ws).await;
        assert_eq!(welcome["type"], "welcome", "{welcome}");
        ws
    }

    /// A telemetry client subscribed to `channels` (ack consumed).
    pub async fn subscriber(&self, channels: &[&str]) -> Ws {
        let mut ws = self.telemetry("").await;
        send_json(
            &mut ws,
            serde_json::json!({"action": "subscribe", "channels": channels}),
        )
        .await;
        let ack = next_of_type(&mut ws, "ack").await;
        assert_eq!(
            ack["channels"].as_array().unwrap().len(),
            channels.len(),
            "{ack}"
        );
        ws
    }

    /// An HTTP request; returns the status and the body parsed as JSON (or as a string).
    pub async fn http(
        &self,
        method: &str,
        path: &str,
        key: Option<&str>,
        body: Option<&str>,
    ) -> (u16, Value) {
        let (status, _, body) = self.http_raw(method, path, key, body).await;
        let value = serde_json::from_str(&body).unwrap_or(Value::String(body));
        (status, value)
    }

    /// An HTTP request; returns status, head and body text.
    pub async fn http_raw(
        &self,
        method: &str,
        path: &str,
        key: Option<&str>,
        body: Option<&str>,
    ) -> (u16, String, String) {
        let body = body.unwrap_or("");
        let mut request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
            self.addr,
            body.len()
        );
        if let Some(key) = key {
            request.push_str(&format!("X-API-Key: {key}\r\n"));
        }
        request.push_str("\r\n");
        request.push_str(body);
        self.raw_request(request.as_bytes()).await
    }

    pub async fn publish(&self, channel: &str, data: Value, key: Option<&str>) -> u64 {
        let mut body = serde_json::json!({"channel": channel, "data": data});
        if let Some(key) = key {
            body["key"] = key.into();
        }
        let (status, answer) = self
            .http(
                "POST",
                "/api/v1/publish",
                Some(PUB),
                Some(&body.to_string()),
            )
            .await;
        assert_eq!(status, 200, "{answer}");
        answer["seq"].as_u64().expect("seq in answer")
    }

    /// Publishes `count` messages to `channel` in one HTTP batch; data is
    /// `{"n":0}`, `{"n":1}`, `{"n":2}`…
    pub async fn publish_batch(&self, channel: &str, count: u64) {
        let messages: Vec<Value> = (0..count)
            .map(|n| serde_json::json!({"channel": channel, "data": {"n": n}}))
            .collect();
        let body = serde_json::json!({ "messages": messages }).to_string();
        let (status, answer) = self
            .http("POST", "/api/v1/publish", Some(PUB), Some(&body))
            .await;
        assert_eq!(status, 200, "{answer}");
    }

    pub async fn stats(&self) -> Value {
        let (status, stats) = self
            .http("GET", "/api/v1/websocket/stats", Some(ADMIN), None)
            .await;
        assert_eq!(status, 200);
        stats
    }

    /// The entry of client `id` in `/api/v1/websocket/clients`.
    pub async fn client(&self, id: &str) -> Value {
        let (status, list) = self
            .http("GET", "/api/v1/websocket/clients", Some(ADMIN), None)
            .await;
        assert_eq!(status, 200, "{list}");
        let clients = list["clients"].as_array().expect("a client list");
        let entry = clients.iter().find(|c| c["clientId"] == id);
        entry
            .unwrap_or_else(|| panic!("no client {id}: {list}"))
            .clone()
    }

    /// Connects to the FastWS endpoint, `/api/v1/ws`, with no credential.
    pub async fn fastws(&self) -> Ws {
        self.try_connect("/api/v1/ws", &[])
            .await
            .expect("handshake")
    }

    /// The first client in `/api/v1/websocket/clients` speaking `protocol`.
    pub async fn client_by_protocol(&self, protocol: &str) -> Value {
        let (status, list) = self
            .http("GET", "/api/v1/websocket/clients", Some(ADMIN), None)
            .await;
        assert_eq!(status, 200, "{list}");
        let clients = list["clients"].as_array().expect("a client list");
        let entry = clients.iter().find(|c| c["protocol"] == protocol);
        entry
            .unwrap_or_else(|| panic!("no {protocol} client: {list}"))
            .clone()
    }

    pub async fn metrics(&self) -> String {
        let (status, _, body) = self.http_raw("GET", "/metrics", None, None).await;
        assert_eq!(status, 200);
        body
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Sends `request` (a complete HTTP/1.1 request) to `addr` on a new socket;
/// returns the status, head and body of the answer.
pub async fn raw_request_to(addr: SocketAddr, request: &[u8]) -> (u16, String, String) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(WAIT, stream.read_to_end(&mut response))
        .await
        .expect("response in time")
        .unwrap();
    parse_response(&response)
}

/// Status, head and body of a raw HTTP response.
pub fn parse_response(response: &[u8]) -> (u16, String, String) {
    let text = String::from_utf8_lossy(response).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").expect("a complete response");
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, head.to_owned(), body.to_owned())
}

/// Polls the stats until `check` holds (figures are copied from the shards asynchronously).
pub async fn eventually_stats(server: &TestServer, check: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let stats = server.stats().await;
        if check(&stats) {
            return stats;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "stats never matched: {stats}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

pub fn channel<'a>(stats: &'a Value, name: &str) -> &'a Value {
    stats["channels"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["channel"] == name)
        .unwrap_or_else(|| panic!("channel {name} in stats: {stats}"))
}
