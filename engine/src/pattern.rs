//! Topic-name patterns: the one matcher behind channel rules (which names
//! exist) and the server's scopes (which names a key may use).
//!
//! Sans-IO, immutable once parsed, shared freely. A pattern is a sequence of
//! dot-separated segments:
//! - a literal segment matches itself;
//! - `*` matches exactly one non-empty segment (`prices.*` matches
//!   `prices.AAPL`, not `prices` or `prices.AAPL.bid`);
//! - `**`, as the last segment only, matches one or more segments
//!   (`desk.**` matches `desk.a` and `desk.a.b`; `**` alone matches every name).
//!
//! Matching walks the name once, with no allocation and no backtracking.

use crate::topic::{validate_name, TopicError};

/// A parsed pattern. Shared by all threads; immutable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pattern {
    segments: Box<[Segment]>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Segment {
    Literal(Box<str>),
    One,
    Rest,
}

impl Pattern {
    /// Parses `text`: an exact topic name, or segments with `*` and a final `**`.
    pub fn parse(text: &str) -> Result<Self, TopicError> {
        let invalid = || TopicError::InvalidName(crate::topic::shown(text));
        if text.len() > crate::topic::MAX_NAME_LEN {
            return Err(invalid());
        }
        let parts: Vec<&str> = text.split('.').collect();
        let last = parts.len() - 1;
        let mut segments = Vec::with_capacity(parts.len());
        for (i, part) in parts.into_iter().enumerate() {
            segments.push(match part {
                "*" => Segment::One,
                "**" if i == last => Segment::Rest,
                _ => {
                    validate_name(part).map_err(|_| invalid())?;
                    Segment::Literal(part.into())
                }
            });
        }
        Ok(Self {
            segments: segments.into(),
        })
    }

    /// Whether the pattern has no wildcard, i.e. names exactly one topic.
    pub fn is_exact(&self) -> bool {
        self.segments
            .iter()
            .all(|s| matches!(s, Segment::Literal(_)))
    }

    /// Whether `name` matches.
    pub fn matches(&self, name: &str) -> bool {
        let mut parts = name.split('.');
        for segment in self.segments.iter() {
            let Some(part) = parts.next() else {
                return false;
            };
            match segment {
                Segment::Literal(lit) if **lit == *part => {}
                Segment::Literal(_) => return false,
                Segment::One if part.is_empty() => return false,
                Segment::One => {}
                Segment::Rest => return !part.is_empty() && parts.all(|p| !p.is_empty()),
            }
        }
        parts.next().is_none()
    }
}

impl std::fmt::Display for Pattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, segment) in self.segments.iter().enumerate() {
            if i > 0 {
                f.write_str(".")?;
            }
            f.write_str(match segment {
                Segment::Literal(lit) => lit,
                Segment::One => "*",
                Segment::Rest => "**",
            })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> Pattern {
        Pattern::parse(text).unwrap()
    }

    #[test]
    fn one_star_is_one_segment_and_a_final_double_star_is_the_rest() {
        assert!(p("prices.*").matches("prices.AAPL"));
        assert!(!p("prices.*").matches("prices"));
        assert!(!p("prices.*").matches("prices."));
        assert!(!p("prices.*").matches("prices.AAPL.bid"));
        assert!(p("fx.*.spot").matches("fx.EURUSD.spot"));
        assert!(!p("fx.*.spot").matches("fx.EURUSD.fwd"));
        assert!(p("desk.**").matches("desk.a"));
        assert!(p("desk.**").matches("desk.a.b.c"));
        assert!(!p("desk.**").matches("desk"));
        assert!(!p("desk.**").matches("desk.a..b"));
        assert!(p("**").matches("market-data"));
        assert!(p("**").matches("a.b"));
        assert!(p("market-data").matches("market-data"));
        assert!(!p("market-data").matches("market-data.x"));
        assert!(p("market-data").is_exact());
        assert!(!p("a.*").is_exact());
    }

    #[test]
    fn malformed_patterns_are_refused() {
        for bad in [
            "",
            "a..b",
            "pri ces.*",
            "a.**.b",
            "a.***",
            "a*",
            &"x".repeat(129),
        ] {
            assert!(Pattern::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(p("a.*.c.**").to_string(), "a.*.c.**");
    }
}
