//! Which web pages may use credentials against this server.
//!
//! Read-only after start-up. Browsers send `Origin` with every WebSocket
//! upgrade and every cross-site request; other clients usually send none
//! and are not affected. A request that carries both a credential and an
//! `Origin` is served only when the origin is allowed:
//! - by default, only pages served from the same host and port as the
//!   request's `Host` (a dashboard served next to the server);
//! - `allowed_origins = ["https://desk.example.com", …]` adds those origins
//!   exactly (scheme, host and port), and answers their CORS preflights;
//! - `allowed_origins = ["*"]` allows every origin (for servers reached only
//!   through a gateway that checks origins itself).
//!
//! In development mode (the built-in key, which anyone can know) the `Host`
//! must also name the loopback interface, so that a page whose name
//! resolves to 127.0.0.1 (DNS rebinding) cannot pass as "same host".

use hyper::header::{HeaderMap, HOST, ORIGIN};

/// The origin rules. Shared by all shards; read-only.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OriginPolicy {
    allowed: Allowed,
    loopback_hosts_only: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Allowed {
    SameHost,
    List(Vec<String>),
    Any,
}

/// Why a request's origin was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum OriginError {
    /// The page's origin is not allowed to use credentials here.
    #[error("origin {0:?} is not allowed: serve the page from this server's host or add its origin to allowed_origins")]
    NotAllowed(String),
    /// Development mode, reached under a name that is not loopback.
    #[error("in development mode the server answers only requests addressed to localhost or a loopback address")]
    NotLoopback,
}

/// What an allowed request may be told in CORS headers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cors {
    /// Not a cross-origin browser request: no CORS headers.
    None,
    /// Allowed cross-origin: echo this origin in `Access-Control-Allow-Origin`.
    Allow(String),
}

impl OriginPolicy {
    /// A policy from `allowed_origins` (empty: same host only).
    pub fn new(allowed_origins: &[String], loopback_hosts_only: bool) -> Result<Self, String> {
        let allowed = if allowed_origins.iter().any(|o| o == "*") {
            Allowed::Any
        } else if allowed_origins.is_empty() {
            Allowed::SameHost
        } else {
            let mut list = Vec::with_capacity(allowed_origins.len());
            for origin in allowed_origins {
                let normal = normalize_origin(origin).ok_or_else(|| {
                    format!("{origin:?} is not an origin like https://desk.example.com")
                })?;
                list.push(normal);
            }
            Allowed::List(list)
        };
        Ok(Self {
            allowed,
            loopback_hosts_only,
        })
    }

    /// Checks a request that carries a credential.
    pub fn check(&self, headers: &HeaderMap) -> Result<Cors, OriginError> {
        let host = headers
            .get(HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("");
        if self.loopback_hosts_only && !is_loopback_host(host) {
            return Err(OriginError::NotLoopback);
        }
        let Some(origin) = headers.get(ORIGIN) else {
            return Ok(Cors::None);
        };
        let text = origin.to_str().unwrap_or("");
        let Some(normal) = normalize_origin(text) else {
            // `null` (sandboxed frames, file: pages) and garbage.
            return match self.allowed {
                Allowed::Any => Ok(Cors::None),
                _ => Err(OriginError::NotAllowed(
                    crate::input::sanitize(text, 128).into_owned(),
                )),
            };
        };
        if same_host(&normal, host) {
            return Ok(Cors::None);
        }
        match &self.allowed {
            Allowed::Any => Ok(Cors::Allow(normal)),
            Allowed::List(list) if list.contains(&normal) => Ok(Cors::Allow(normal)),
            _ => Err(OriginError::NotAllowed(
                crate::input::sanitize(text, 128).into_owned(),
            )),
        }
    }

    /// The origin of a CORS preflight, if its origin is explicitly allowed.
    pub fn preflight(&self, headers: &HeaderMap) -> Option<String> {
        let normal = normalize_origin(headers.get(ORIGIN)?.to_str().ok()?)?;
        match &self.allowed {
            Allowed::Any => Some(normal),
            Allowed::List(list) if list.contains(&normal) => Some(normal),
            _ => None,
        }
    }
}

/// `scheme://host[:port]`, lower-cased, default port dropped; `None` for
/// anything else (paths, `null`, other schemes).
fn normalize_origin(origin: &str) -> Option<String> {
    let (scheme, rest) = origin.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "http" => ":80",
        "https" => ":443",
        _ => return None,
    };
    if rest.is_empty() || rest.contains(['/', '?', '#', '@']) || !rest.is_ascii() {
        return None;
    }
    let authority = rest.to_ascii_lowercase();
    let authority = authority.strip_suffix(default_port).unwrap_or(&authority);
    Some(format!("{scheme}://{authority}"))
}

/// Whether the normalized `origin` names the same host and port as `host`
/// (the request's `Host` header).
fn same_host(origin: &str, host: &str) -> bool {
    let Some((scheme, authority)) = origin.split_once("://") else {
        return false;
    };
    let host = host.to_ascii_lowercase();
    let default_port = if scheme == "https" { ":443" } else { ":80" };
    let host = host.strip_suffix(default_port).unwrap_or(&host);
    !host.is_empty() && authority == host
}

/// Whether `host` (a `Host` header) names the loopback interface.
fn is_loopback_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    fn headers(host: &str, origin: Option<&str>) -> HeaderMap {
        let mut map = HeaderMap::new();
        map.insert(HOST, HeaderValue::from_str(host).unwrap());
        if let Some(origin) = origin {
            map.insert(ORIGIN, HeaderValue::from_str(origin).unwrap());
        }
        map
    }

    #[test]
    fn by_default_only_pages_from_the_same_host_may_use_credentials() {
        let policy = OriginPolicy::new(&[], false).unwrap();
        assert_eq!(
            policy.check(&headers("md.example.com:8000", None)),
            Ok(Cors::None)
        );
        assert_eq!(
            policy.check(&headers(
                "md.example.com:8000",
                Some("http://md.example.com:8000")
            )),
            Ok(Cors::None)
        );
        assert_eq!(
            policy.check(&headers(
                "md.example.com",
                Some("https://MD.example.com:443")
            )),
            Ok(Cors::None)
        );
        assert!(policy
            .check(&headers(
                "md.example.com:8000",
                Some("https://evil.example")
            ))
            .is_err());
        assert!(policy
            .check(&headers("md.example.com:8000", Some("null")))
            .is_err());
        assert!(policy
            .check(&headers(
                "md.example.com:8000",
                Some("http://md.example.com:9000")
            ))
            .is_err());
    }

    #[test]
    fn listed_origins_are_allowed_exactly_and_star_allows_all() {
        let policy = OriginPolicy::new(&["https://desk.example.com".into()], false).unwrap();
        assert_eq!(
            policy.check(&headers("api:8000", Some("https://desk.example.com"))),
            Ok(Cors::Allow("https://desk.example.com".into()))
        );
        assert!(policy
            .check(&headers("api:8000", Some("http://desk.example.com")))
            .is_err());
        assert_eq!(
            policy.preflight(&headers("api:8000", Some("https://desk.example.com"))),
            Some("https://desk.example.com".into())
        );
        assert_eq!(
            policy.preflight(&headers("api:8000", Some("https://other.example"))),
            None
        );
        let any = OriginPolicy::new(&["*".into()], false).unwrap();
        assert!(any
            .check(&headers("api:8000", Some("https://x.example")))
            .is_ok());
        assert!(OriginPolicy::new(&["desk.example.com".into()], false).is_err());
    }

    #[test]
    fn development_mode_answers_loopback_names_only() {
        let policy = OriginPolicy::new(&[], true).unwrap();
        for host in [
            "127.0.0.1:8000",
            "localhost:8000",
            "[::1]:8000",
            "localhost",
        ] {
            assert_eq!(policy.check(&headers(host, None)), Ok(Cors::None), "{host}");
        }
        assert_eq!(
            policy.check(&headers(
                "rebound.example:8000",
                Some("http://rebound.example:8000")
            )),
            Err(OriginError::NotLoopback)
        );
    }
}
