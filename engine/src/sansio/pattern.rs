//! Topic names and patterns: what a name may contain, the one matcher behind
//! channel rules (which names exist) and the server's scopes (which names a
//! key may use), and [`ChannelRules`].
//!
//! A topic name is 1 to [`MAX_NAME_LEN`] bytes of UTF-8 with no control
//! characters and no whitespace: letters of any script, digits, and every
//! printable symbol, quotes and backslashes included. So the canonical
//! topics of other protocols, such as `bars:{"resolution":"1","symbol":"AAPL"}`,
//! are ordinary names; every wire format escapes them as JSON requires
//! (`crate::sansio::json`).
//!
//! Sans-IO, immutable once parsed, shared freely. A pattern is a sequence of
//! dot-separated segments:
//! - a literal segment matches itself;
//! - `*` matches exactly one non-empty segment (`prices.*` matches
//!   `prices.AAPL`, not `prices` or `prices.AAPL.bid`);
//! - `**`, as the last segment only, matches one or more segments
//!   (`desk.**` matches `desk.a` and `desk.a.b`; `**` alone matches every name);
//! - a last segment ending in `*` after some text is a **prefix**: it matches
//!   whatever follows that text, at least one character, dots included
//!   (`bars:*` matches `bars:{"resolution":"1.5","symbol":"AAPL"}`;
//!   `fx.EUR*` matches `fx.EURUSD` and `fx.EURUSD.spot`, not `fx.EUR`).
//!
//! `*` has no other place in a pattern, so a name holding a `*` elsewhere
//! can be reached only by a wildcard, never declared exactly. Matching walks
//! the name once, with no allocation and no backtracking.

use std::collections::HashSet;

use crate::sansio::outbox::{ClassRule, DeliveryClass, Priority};
use crate::sansio::quota::QuotaError;

/// Longest topic name accepted, in bytes: room for the canonical topics of
/// parameterised subscriptions (a route and a small JSON object).
pub const MAX_NAME_LEN: usize = 256;

/// Longest message key accepted, in bytes.
pub const MAX_KEY_LEN: usize = 128;

fn is_name_char(c: char) -> bool {
    !c.is_control() && !c.is_whitespace()
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
    /// Empty, too long, or with whitespace or control characters.
    #[error(
        "invalid channel name {0:?}: use 1-256 bytes with no whitespace or control characters"
    )]
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
    if name.is_empty() || name.len() > MAX_NAME_LEN || !name.chars().all(is_name_char) {
        return Err(TopicError::InvalidName(shown(name)));
    }
    Ok(())
}

/// Which topic names exist (exact names plus [`Pattern`]s), and how each
/// is delivered ([`DeliveryClass`]). Read-only after start-up.
#[derive(Clone, Debug, Default)]
pub struct ChannelRules {
    exact: HashSet<Box<str>>,
    patterns: Vec<Pattern>,
    /// What rules say about delivery, in declaration order: for each
    /// field, the first matching rule that sets it wins.
    classes: Vec<(Pattern, ClassRule)>,
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

    /// Declares `rule` (as [`ChannelRules::declare`]) and says how the
    /// topics it matches are delivered: each field of `class` it sets
    /// applies unless a rule declared earlier set it for them.
    pub fn declare_class(&mut self, rule: &str, class: ClassRule) -> Result<(), TopicError> {
        self.declare(rule)?;
        self.classes.push((Pattern::parse(rule)?, class));
        Ok(())
    }

    /// Whether `name` is declared, exactly or by a pattern.
    pub fn allows(&self, name: &str) -> bool {
        self.exact.contains(name) || self.patterns.iter().any(|p| p.matches(name))
    }

    /// How topic `name` is delivered: each field from the first matching
    /// rule that sets it, else its default (normal priority, the
    /// connection's own overflow policy, no maximum rate; none for a
    /// high-priority topic). Asked once, when the topic is made.
    pub fn class_of(&self, name: &str) -> DeliveryClass {
        let mut merged = ClassRule::default();
        for (_, rule) in self.classes.iter().filter(|(p, _)| p.matches(name)) {
            merged.priority = merged.priority.or(rule.priority);
            merged.overflow = merged.overflow.or(rule.overflow);
            merged.max_rate = merged.max_rate.or(rule.max_rate);
        }
        let priority = merged.priority.unwrap_or_default();
        DeliveryClass {
            priority,
            overflow: merged.overflow,
            max_rate: merged.max_rate.filter(|_| priority == Priority::Normal),
        }
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
    /// The rest of the name starts with this text and goes on.
    Prefix(Box<str>),
}

impl Pattern {
    /// Parses `text`: an exact topic name, or segments with `*`, and a last
    /// segment that may be `**` or end in `*` (a prefix).
    pub fn parse(text: &str) -> Result<Self, TopicError> {
        let invalid = || TopicError::InvalidName(shown(text));
        if text.len() > MAX_NAME_LEN {
            return Err(invalid());
        }
        let parts: Vec<&str> = text.split('.').collect();
        let last = parts.len() - 1;
        let mut segments = Vec::with_capacity(parts.len());
        for (i, part) in parts.into_iter().enumerate() {
            let stem = part.strip_suffix('*').filter(|stem| !stem.is_empty());
            segments.push(match (part, stem) {
                ("*", _) => Segment::One,
                ("**", _) if i == last => Segment::Rest,
                (_, Some(stem)) if i == last && !stem.contains('*') => {
                    validate_name(stem).map_err(|_| invalid())?;
                    Segment::Prefix(stem.into())
                }
                _ if part.contains('*') => return Err(invalid()),
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
        // What is left of the name: `None` once its last segment is used.
        let mut rest = Some(name);
        for segment in self.segments.iter() {
            let Some(text) = rest else {
                return false;
            };
            match segment {
                Segment::Prefix(stem) => {
                    return text.len() > stem.len() && text.starts_with(&**stem)
                }
                Segment::Rest => return !text.is_empty() && text.split('.').all(|p| !p.is_empty()),
                Segment::Literal(_) | Segment::One => {}
            }
            let (part, after) = match text.split_once('.') {
                Some((part, after)) => (part, Some(after)),
                None => (text, None),
            };
            let matched = match segment {
                Segment::Literal(lit) => **lit == *part,
                Segment::One => !part.is_empty(),
                Segment::Prefix(_) | Segment::Rest => false,
            };
            if !matched {
                return false;
            }
            rest = after;
        }
        rest.is_none()
    }
}

impl std::fmt::Display for Pattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, segment) in self.segments.iter().enumerate() {
            if i > 0 {
                f.write_str(".")?;
            }
            match segment {
                Segment::Literal(lit) => f.write_str(lit)?,
                Segment::One => f.write_str("*")?,
                Segment::Rest => f.write_str("**")?,
                Segment::Prefix(stem) => write!(f, "{stem}*")?,
            }
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
            "a*b",
            "a*.b",
            "a.b*c",
            "*a",
            "a.**b",
            &"x".repeat(257),
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
    fn names_may_hold_any_printable_character_but_no_space_or_control() {
        for bad in [
            "",
            "a b",
            "tab\there",
            "new\nline",
            "nul\0",
            "del\u{7f}",
            "c1\u{85}",
            "nbsp\u{a0}",
            &"x".repeat(257),
        ] {
            assert!(validate_name(bad).is_err(), "{bad:?}");
        }
        for good in [
            "prices.US0378331005:bid_1-2",
            r#"bars:{"resolution":"1","symbol":"AAPL"}"#,
            r#"executions:{"accountId":"A-1","symbol":"AAPL"}"#,
            "quote\"d",
            "back\\slash",
            "é.株式",
            "*",
            &"x".repeat(256),
        ] {
            assert!(validate_name(good).is_ok(), "{good:?}");
        }
        let mut rules = ChannelRules::default();
        assert!(rules.declare("pri ces.*").is_err());
    }

    #[test]
    fn a_final_segment_ending_in_a_star_is_a_prefix_dots_included() {
        let bars = p("bars:*");
        assert!(bars.matches(r#"bars:{"resolution":"1","symbol":"AAPL"}"#));
        assert!(bars.matches(r#"bars:{"resolution":"1.5","symbol":"BRK.B"}"#));
        assert!(!bars.matches("bars:"));
        assert!(!bars.matches("bars"));
        assert!(!bars.matches("orders:{}"));
        let eur = p("fx.EUR*");
        assert!(eur.matches("fx.EURUSD"));
        assert!(eur.matches("fx.EURUSD.spot"));
        assert!(!eur.matches("fx.EUR"));
        assert!(!eur.matches("fx.USDEUR"));
        assert!(!eur.matches("fxx.EURUSD"));
        assert!(!bars.is_exact());
        assert_eq!(eur.to_string(), "fx.EUR*");
        let rules = ChannelRules::of(&["bars:*", "orders"]);
        assert!(rules.allows(r#"bars:{"symbol":"AAPL"}"#));
        assert!(!rules.allows(r#"orders:{"symbol":"AAPL"}"#));
    }
}
