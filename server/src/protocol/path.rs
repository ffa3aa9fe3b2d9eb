//! Path templates: how a protocol says where it is served.
//!
//! Immutable once parsed; shared by all shards. A template is a path of
//! `/`-separated segments, each literal text or a parameter in braces
//! (`/api/v1/ws/market/{isin}`). A parameter matches one non-empty segment,
//! percent-decoded, at most [`MAX_PARAM_LEN`] bytes. A last segment `{*name}`
//! matches the rest of the path, whatever it is (empty, or holding `/`),
//! percent-decoded. Matching allocates only the parameters' values.

use crate::request::percent_decode_segment;

/// Longest parameter value accepted, in bytes (after decoding).
pub const MAX_PARAM_LEN: usize = 256;

/// A parsed path template. Shared; immutable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PathTemplate {
    text: &'static str,
    segments: Box<[Part]>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Part {
    Literal(&'static str),
    Param(&'static str),
    Rest(&'static str),
}

/// The parameters a path matched, in template order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Params(Vec<(&'static str, String)>);

impl Params {
    /// The value of parameter `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A template that cannot be used (a programming error, reported at start-up).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid path template {0:?}: use /-separated literal segments and {{name}} parameters")]
pub struct InvalidTemplate(pub &'static str);

impl PathTemplate {
    /// Parses `text`.
    pub fn parse(text: &'static str) -> Result<Self, InvalidTemplate> {
        let path = text.strip_prefix('/').ok_or(InvalidTemplate(text))?;
        if path.is_empty() {
            // The root: no segment.
            return Ok(Self {
                text,
                segments: Box::new([]),
            });
        }
        let name_ok = |name: &str| {
            !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        };
        let last = path.split('/').count() - 1;
        let segments = path
            .split('/')
            .enumerate()
            .map(|(i, segment)| {
                let braced = segment.strip_prefix('{').and_then(|s| s.strip_suffix('}'));
                match braced {
                    Some(name) if i == last && name.strip_prefix('*').is_some_and(name_ok) => {
                        Ok(Part::Rest(&name[1..]))
                    }
                    Some(name) if name_ok(name) => Ok(Part::Param(name)),
                    None if !segment.is_empty() && !segment.contains(['{', '}']) => {
                        Ok(Part::Literal(segment))
                    }
                    _ => Err(InvalidTemplate(text)),
                }
            })
            .collect::<Result<Box<[Part]>, _>>()?;
        Ok(Self { text, segments })
    }

    /// The template as written.
    pub fn as_str(&self) -> &'static str {
        self.text
    }

    /// Whether the template has no parameter.
    pub fn is_exact(&self) -> bool {
        self.segments.iter().all(|p| matches!(p, Part::Literal(_)))
    }

    /// The parameters of `path`, if it matches.
    pub fn matches(&self, path: &str) -> Option<Params> {
        if self.segments.is_empty() {
            return (path == "/").then(Params::default);
        }
        // What is left of the path: `None` once its last segment is used.
        let mut rest = Some(path.strip_prefix('/')?);
        let mut params = Params::default();
        for segment in self.segments.iter() {
            let text = rest?;
            let (part, after) = match text.split_once('/') {
                Some((part, after)) => (part, Some(after)),
                None => (text, None),
            };
            match *segment {
                Part::Literal(lit) if lit == part => {}
                Part::Literal(_) => return None,
                Part::Param(name) => {
                    let value = percent_decode_segment(part);
                    if value.is_empty() || value.len() > MAX_PARAM_LEN {
                        return None;
                    }
                    params.0.push((name, value.into_owned()));
                }
                Part::Rest(name) => {
                    params
                        .0
                        .push((name, percent_decode_segment(text).into_owned()));
                    return Some(params);
                }
            }
            rest = after;
        }
        rest.is_none().then_some(params)
    }

    /// Whether some path matches both templates (segment by segment, a
    /// parameter matching anything, a rest matching one or more segments).
    pub fn overlaps(&self, other: &PathTemplate) -> bool {
        let fixed = |t: &PathTemplate| {
            let rest = matches!(t.segments.last(), Some(Part::Rest(_)));
            (t.segments.len() - usize::from(rest), rest)
        };
        let ((a, a_rest), (b, b_rest)) = (fixed(self), fixed(other));
        let lengths = match (a_rest, b_rest) {
            (false, false) => a == b,
            (true, false) => b > a,
            (false, true) => a > b,
            (true, true) => true,
        };
        lengths
            && self
                .segments
                .iter()
                .zip(other.segments.iter())
                .take(a.min(b))
                .all(|pair| match pair {
                    (Part::Literal(x), Part::Literal(y)) => x == y,
                    _ => true,
                })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_root_matches_only_itself() {
        let root = PathTemplate::parse("/").unwrap();
        assert!(root.matches("/").is_some());
        assert!(root.matches("/x").is_none());
        assert!(root.matches("").is_none());
        let other = PathTemplate::parse("/health").unwrap();
        assert!(!root.overlaps(&other) && !other.overlaps(&root));
        assert!(PathTemplate::parse("//").is_err());
    }

    #[test]
    fn templates_match_literal_paths_and_decode_parameters() {
        let market = PathTemplate::parse("/api/v1/ws/market/{isin}").unwrap();
        let params = market.matches("/api/v1/ws/market/US0378331005").unwrap();
        assert_eq!(params.get("isin"), Some("US0378331005"));
        assert_eq!(
            market
                .matches("/api/v1/ws/market/a%20b")
                .unwrap()
                .get("isin"),
            Some("a b")
        );
        assert_eq!(market.matches("/api/v1/ws/market/"), None);
        assert_eq!(market.matches("/api/v1/ws/market"), None);
        assert_eq!(market.matches("/api/v1/ws/market/a/b"), None);
        assert_eq!(market.matches("/api/v1/ws/auction/a"), None);
        let long = format!("/api/v1/ws/market/{}", "x".repeat(MAX_PARAM_LEN + 1));
        assert_eq!(market.matches(&long), None);
        let exact = PathTemplate::parse("/ws/telemetry").unwrap();
        assert!(exact.is_exact() && !market.is_exact());
        assert_eq!(exact.matches("/ws/telemetry"), Some(Params::default()));
        assert_eq!(exact.matches("/ws/telemetry/"), None);
    }

    #[test]
    fn malformed_templates_and_overlaps_are_found() {
        for bad in [
            "",
            "ws",
            "/a//b",
            "/a/{}",
            "/a/{b",
            "/a/b}",
            "/a/{b-c}",
            "/a/{*b}/c",
            "/{*}",
        ] {
            assert!(PathTemplate::parse(bad).is_err(), "{bad:?}");
        }
        let t = |s| PathTemplate::parse(s).unwrap();
        assert!(t("/a/{x}").overlaps(&t("/a/b")));
        assert!(t("/a/{x}").overlaps(&t("/a/{y}")));
        assert!(!t("/a/{x}").overlaps(&t("/b/{y}")));
        assert!(!t("/a/{x}").overlaps(&t("/a/{x}/c")));
        assert!(t("/a/{*rest}").overlaps(&t("/a/b/c")));
        assert!(t("/a/b/c").overlaps(&t("/a/{*rest}")));
        assert!(!t("/a/{*rest}").overlaps(&t("/a")));
        assert!(!t("/a/{*rest}").overlaps(&t("/b/{*rest}")));
    }

    #[test]
    fn a_rest_parameter_takes_the_rest_of_the_path_whatever_it_is() {
        let clients = PathTemplate::parse("/api/v1/websocket/clients/{*clientId}").unwrap();
        let id = |path: &str| {
            clients
                .matches(path)
                .map(|p| p.get("clientId").unwrap().to_owned())
        };
        assert_eq!(
            id("/api/v1/websocket/clients/desk-7").as_deref(),
            Some("desk-7")
        );
        assert_eq!(
            id("/api/v1/websocket/clients/desk%207").as_deref(),
            Some("desk 7")
        );
        assert_eq!(id("/api/v1/websocket/clients/a/b").as_deref(), Some("a/b"));
        assert_eq!(id("/api/v1/websocket/clients/").as_deref(), Some(""));
        assert_eq!(id("/api/v1/websocket/clients"), None);
    }
}
