//! Topic names and patterns: what a name may contain, the one matcher behind
//! channel rules (which names exist) and the server's scopes (which names a
//! key may use), and [`ChannelRules`].
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

use std::collections::HashSet;

use crate::sansio::quota::QuotaError;

/// Longest topic name or key accepted.
pub const MAX_NAME_LEN: usize = 128;

fn is_name_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-' | b':')
}

/// A name as errors quote it: at most [`MAX_NAME_LEN`] bytes, so that an
/// error about a 64 KiB name costs a reply of a few hundred bytes, not a copy
/// of the name (errors quote it with escapes, never raw).
pub(crate) fn shown(name: &str) -> String {
    let mut end = name.len().min(MAX_NAME_LEN);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    name[..end].to_owned()
}

/// Why a topic could not be had.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum TopicError {
    /// Empty, too long, or with characters outside `A-Z a-z 0-9 . _ - :`.
    #[error("invalid channel name {0:?}: use 1-128 characters from A-Z a-z 0-9 . _ - :")]
    InvalidName(String),
    /// No channel rule declares this name.
    #[error("unknown channel {0:?}: it is not declared in the server's channel rules")]
    Undeclared(String),
    /// The engine already holds its maximum number of topics.
    #[error("channel {name:?} cannot be created: the server holds its limit of {limit} channels")]
    TooManyTopics {
        /// The name that was refused.
        name: String,
        /// The configured limit.
        limit: usize,
    },
    /// Half the topic limit is already held by topics that exist only for
    /// the principals that created them (subscribers), leaving the rest to
    /// topics with retained state.
    #[error("channel {name:?} cannot be created: {limit} channels already exist only for their subscribers")]
    TooManyUnclaimed {
        /// The name that was refused.
        name: String,
        /// The limit (half of `max_topics`).
        limit: usize,
    },
    /// The caller's topic-creation quota refused a new topic.
    #[error("channel {name:?} cannot be created: {quota}")]
    Quota {
        /// The name that was refused.
        name: String,
        /// Which limit.
        quota: QuotaError,
    },
}

/// Checks a concrete topic name (no wildcards).
pub fn validate_name(name: &str) -> Result<(), TopicError> {
    if name.is_empty() || name.len() > MAX_NAME_LEN || !name.bytes().all(is_name_char) {
        return Err(TopicError::InvalidName(shown(name)));
    }
    Ok(())
}

/// Which topic names exist: exact names plus [`Pattern`]s. Read-only after start-up.
#[derive(Clone, Debug, Default)]
pub struct ChannelRules {
    exact: HashSet<Box<str>>,
    patterns: Vec<Pattern>,
}

impl ChannelRules {
    /// Adds a rule: an exact name, or a pattern with `*` segments and an optional final `**`.
    pub fn declare(&mut self, rule: &str) -> Result<(), TopicError> {
        let pattern = Pattern::parse(rule)?;
        if pattern.is_exact() {
            self.exact.insert(rule.into());
        } else {
            self.patterns.push(pattern);
        }
        Ok(())
    }

    /// Whether `name` is declared, exactly or by a pattern.
    pub fn allows(&self, name: &str) -> bool {
        self.exact.contains(name) || self.patterns.iter().any(|p| p.matches(name))
    }
}

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
        let invalid = || TopicError::InvalidName(shown(text));
        if text.len() > MAX_NAME_LEN {
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
impl ChannelRules {
    /// Rules from a list that is known to be valid.
    pub(crate) fn of(list: &[&str]) -> Self {
        let mut rules = ChannelRules::default();
        for rule in list {
            rules.declare(rule).unwrap();
        }
        rules
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

    #[test]
    fn patterns_match_exactly_one_segment_per_star() {
        let rules = ChannelRules::of(&["market-data", "prices.*", "fx.*.spot"]);
        assert!(rules.allows("market-data"));
        assert!(rules.allows("prices.AAPL"));
        assert!(rules.allows("fx.EURUSD.spot"));
        assert!(!rules.allows("prices"));
        assert!(!rules.allows("prices."));
        assert!(!rules.allows("prices.AAPL.bid"));
        assert!(!rules.allows("fx.EURUSD.fwd"));
        assert!(!rules.allows("market-data.x"));
    }

    #[test]
    fn errors_quote_at_most_the_name_limit() {
        let long = "\u{85}".repeat(32 * 1024);
        let TopicError::InvalidName(shown) = validate_name(&long).unwrap_err() else {
            panic!("invalid");
        };
        assert!(shown.len() <= MAX_NAME_LEN);
        assert!(validate_name(&long).unwrap_err().to_string().len() < 1024);
    }

    #[test]
    fn names_with_unsafe_characters_are_refused() {
        for bad in ["", "a b", "quote\"d", "back\\slash", "é", &"x".repeat(129)] {
            assert!(validate_name(bad).is_err(), "{bad:?}");
        }
        assert!(validate_name("prices.US0378331005:bid_1-2").is_ok());
        let mut rules = ChannelRules::default();
        assert!(rules.declare("pri ces.*").is_err());
    }
}
