//! Where a run's connections go: one server (`--url`), or several shardcast
//! nodes acting as one through a broker (`--urls`).
//!
//! 1. The urls are checked before anything connects ([`check`]): every one
//!    must have the same scheme, because `--tls` and `--tls-ca` apply to all
//!    of them (a url without a scheme counts as `ws://`, as with `--url`).
//!    A mix is refused naming the first url and the first that differs.
//! 2. Each url is resolved to an address. Urls that resolve to the same
//!    address are one node ([`Nodes::new`]): its stats are read once (a url
//!    given twice is not counted twice) and its subscribers are one entry
//!    of the per-node breakdown.
//! 3. Publishers — WebSocket, HTTP and the burst publisher — all go to the
//!    first url: its node is the *publishing node*, node 0.
//! 4. Subscriber connection `i` goes to url `i mod n` (round-robin over the
//!    urls as given, duplicates included) and keeps it across reconnects.
//!
//! Plain data, built once at start and read by every task; owned by the
//! loadgen's single thread.

use std::fmt;
use std::net::SocketAddr;

/// How every url of a run connects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    /// `ws://` or no scheme: TLS only with `--tls` or `--tls-ca`.
    Ws,
    /// `wss://`: TLS.
    Wss,
}

impl Scheme {
    /// `url`'s scheme and its `host:port` (up to the first `/`).
    pub fn split(url: &str) -> (Scheme, &str) {
        let (scheme, rest) = match url.strip_prefix("wss://") {
            Some(rest) => (Scheme::Wss, rest),
            None => (Scheme::Ws, url.strip_prefix("ws://").unwrap_or(url)),
        };
        (scheme, rest.split('/').next().unwrap_or(rest))
    }
}

/// Why a list of urls cannot be run.
#[derive(Debug, PartialEq, Eq)]
pub enum UrlsError {
    /// No url at all.
    None,
    /// Two urls of different schemes: the first url, and the first that
    /// does not share its scheme.
    MixedSchemes { first: String, other: String },
}

impl fmt::Display for UrlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UrlsError::None => write!(f, "--urls: no url given"),
            UrlsError::MixedSchemes { first, other } => write!(
                f,
                "--urls mixes schemes: {first} and {other}; give every node ws:// or every \
                 node wss:// (--tls and --tls-ca apply to all)"
            ),
        }
    }
}

impl std::error::Error for UrlsError {}

/// Checked urls: the scheme they share and each one's `host:port`, in order.
#[derive(Debug, PartialEq, Eq)]
pub struct Checked {
    pub scheme: Scheme,
    pub hosts: Vec<String>,
}

/// Checks `urls` (step 1): at least one, all of one scheme.
pub fn check(urls: &[String]) -> Result<Checked, UrlsError> {
    let first = urls.first().ok_or(UrlsError::None)?;
    let (scheme, _) = Scheme::split(first);
    let mut hosts = Vec::with_capacity(urls.len());
    for url in urls {
        let (this, host) = Scheme::split(url);
        if this != scheme {
            return Err(UrlsError::MixedSchemes {
                first: first.clone(),
                other: url.clone(),
            });
        }
        hosts.push(host.to_owned());
    }
    Ok(Checked { scheme, hosts })
}

/// The urls of a run and the nodes behind them. Built once at start; read
/// by every task on the loadgen's single thread.
#[derive(Debug)]
pub struct Nodes {
    /// Every url as given, in order.
    urls: Vec<String>,
    /// Per url: its node, an index into `addrs`.
    node_of_url: Vec<usize>,
    /// The distinct nodes' addresses in order of first appearance; node 0
    /// is the publishing node.
    addrs: Vec<SocketAddr>,
}

impl Nodes {
    /// `urls` with the address each resolved to, in the same order (step 2).
    ///
    /// # Panics
    /// If `urls` is empty or `resolved` is not as long as `urls`.
    pub fn new(urls: Vec<String>, resolved: &[SocketAddr]) -> Self {
        assert!(!urls.is_empty() && urls.len() == resolved.len());
        let mut addrs: Vec<SocketAddr> = Vec::new();
        let node_of_url = resolved
            .iter()
            .map(|addr| match addrs.iter().position(|a| a == addr) {
                Some(node) => node,
                None => {
                    addrs.push(*addr);
                    addrs.len() - 1
                }
            })
            .collect();
        Self {
            urls,
            node_of_url,
            addrs,
        }
    }

    /// Resolves `urls`, whose `hosts` [`check`] gave, in order (step 2).
    pub async fn resolve(urls: Vec<String>, hosts: &[String]) -> anyhow::Result<Self> {
        let mut resolved = Vec::with_capacity(hosts.len());
        for host in hosts {
            let addr = tokio::net::lookup_host(host.as_str())
                .await?
                .next()
                .ok_or_else(|| anyhow::anyhow!("cannot resolve {host}"))?;
            resolved.push(addr);
        }
        Ok(Self::new(urls, &resolved))
    }

    /// Where every publisher connects: the first url's node (step 3).
    pub fn publisher(&self) -> SocketAddr {
        self.addrs[0]
    }

    /// The node of subscriber connection `id`: that of url `id mod n` (step 4).
    #[inline]
    pub fn node_of(&self, id: usize) -> usize {
        self.node_of_url[id % self.urls.len()]
    }

    /// Where subscriber connection `id` connects.
    pub fn subscriber(&self, id: usize) -> SocketAddr {
        self.addrs[self.node_of(id)]
    }

    /// The distinct nodes' addresses, the publishing node first: whose
    /// stats a run reads.
    pub fn addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// Every url as given.
    pub fn urls(&self) -> &[String] {
        &self.urls
    }

    /// The url naming `node`: the first given that resolved to it.
    pub fn label(&self, node: usize) -> &str {
        let at = self.node_of_url.iter().position(|&n| n == node);
        at.map_or("?", |at| &self.urls[at])
    }

    /// More than one url was given: the report breaks latency down per node.
    pub fn several(&self) -> bool {
        self.urls.len() > 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(urls: &[&str]) -> Vec<String> {
        urls.iter().map(|&u| u.to_owned()).collect()
    }

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn one_scheme_is_shared_and_hosts_are_split_off() {
        let checked = check(&strings(&["wss://a:1/x", "wss://b:2"])).unwrap();
        assert_eq!(checked.scheme, Scheme::Wss);
        assert_eq!(checked.hosts, ["a:1", "b:2"]);
        // No scheme is ws://, as with --url.
        let checked = check(&strings(&["ws://a:1", "b:2"])).unwrap();
        assert_eq!(
            (checked.scheme, checked.hosts[1].as_str()),
            (Scheme::Ws, "b:2")
        );
    }

    #[test]
    fn a_mix_of_schemes_is_refused_naming_both() {
        let err = check(&strings(&["ws://a:1", "ws://b:2", "wss://c:3"])).unwrap_err();
        assert_eq!(
            err,
            UrlsError::MixedSchemes {
                first: "ws://a:1".into(),
                other: "wss://c:3".into()
            }
        );
        let said = err.to_string();
        assert!(
            said.contains("ws://a:1") && said.contains("wss://c:3"),
            "{said}"
        );
        assert!(check(&strings(&["wss://a:1", "b:2"])).is_err());
        assert_eq!(check(&[]), Err(UrlsError::None));
    }

    #[test]
    fn subscribers_go_round_robin_and_publishers_to_the_first() {
        let urls = strings(&["ws://a:1", "ws://b:2", "ws://c:3"]);
        let nodes = Nodes::new(urls, &[addr(1), addr(2), addr(3)]);
        assert_eq!(nodes.publisher(), addr(1));
        let assigned: Vec<SocketAddr> = (0..7).map(|id| nodes.subscriber(id)).collect();
        assert_eq!(
            assigned,
            [
                addr(1),
                addr(2),
                addr(3),
                addr(1),
                addr(2),
                addr(3),
                addr(1)
            ]
        );
        assert_eq!(nodes.addrs(), [addr(1), addr(2), addr(3)]);
        assert!(nodes.several());
    }

    #[test]
    fn urls_of_one_address_are_one_node() {
        // The same server twice, spelt two ways, and a second server.
        let urls = strings(&["ws://127.0.0.1:1", "ws://localhost:1", "ws://127.0.0.1:2"]);
        let nodes = Nodes::new(urls, &[addr(1), addr(1), addr(2)]);
        assert_eq!(
            nodes.addrs(),
            [addr(1), addr(2)],
            "stats read once per node"
        );
        let node_of: Vec<usize> = (0..6).map(|id| nodes.node_of(id)).collect();
        assert_eq!(node_of, [0, 0, 1, 0, 0, 1]);
        assert_eq!(nodes.label(0), "ws://127.0.0.1:1");
        assert_eq!(nodes.label(1), "ws://127.0.0.1:2");
        let one = Nodes::new(strings(&["ws://a:1"]), &[addr(1)]);
        assert!(!one.several());
        assert_eq!(one.node_of(12345), 0);
    }
}
