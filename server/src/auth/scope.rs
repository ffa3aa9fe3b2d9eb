//! Channel scopes: which channels a key or token may subscribe to or
//! publish into.
//!
//! Immutable once built; shared by every connection of its principal. A
//! scope is a list of [`Pattern`]s (`market-data`, `prices.*`, `desk.**`);
//! token scopes are templates in which `{sub}` stands for the token's
//! subject, substituted as literal text (a subject that is not one plain
//! segment, `A-Z a-z 0-9 _ - :` only, is refused with the token, so it can
//! never widen a pattern — no `*`, no `.` — or reach into another subject's
//! channels).

use shardcast_engine::Pattern;

/// Longest token subject that may stand in a channel name.
const MAX_SUBJECT_LEN: usize = 128;

/// Whether `subject` is one plain segment: nothing a pattern gives meaning to.
fn is_plain_segment(subject: &str) -> bool {
    !subject.is_empty()
        && subject.len() <= MAX_SUBJECT_LEN
        && subject
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b':'))
}

/// Channels a principal may use for one role. Shared; immutable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Every channel.
    All,
    /// Channels matching any of these patterns (none: nothing).
    Only(Vec<Pattern>),
}

/// A pattern in a scope that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScopeError {
    /// Not a valid name or pattern.
    #[error("{0:?} is not a channel name or pattern (dot-separated segments with no whitespace; `*` for one segment, a final `**` for the rest, a final `text*` for a prefix)")]
    Pattern(String),
    /// A token's subject cannot stand in a channel name.
    #[error("the token subject {0:?} cannot be used in a channel name: use 1-128 characters from A-Z a-z 0-9 _ - :")]
    Subject(String),
}

impl Scope {
    /// A scope of `patterns`.
    pub fn parse<S: AsRef<str>>(patterns: &[S]) -> Result<Scope, ScopeError> {
        patterns
            .iter()
            .map(|p| Pattern::parse(p.as_ref()).map_err(|_| ScopeError::Pattern(p.as_ref().into())))
            .collect::<Result<Vec<_>, _>>()
            .map(Scope::Only)
    }

    /// A scope of `templates` with every `{sub}` replaced by `subject`.
    pub fn for_subject<S: AsRef<str>>(templates: &[S], subject: &str) -> Result<Scope, ScopeError> {
        // One segment exactly: a `.` would let `bob.orders` reach the
        // channels of `bob` under `positions.{sub}.orders`, a final `*`
        // (`bo*`) would make a prefix of it.
        if !is_plain_segment(subject) {
            return Err(ScopeError::Subject(
                crate::input::sanitize(subject, 64).into_owned(),
            ));
        }
        // A prefix that ends in the subject (`accounts:{sub}*`) would give
        // `bob` the channels of `bobby`: the subject must be followed by a
        // delimiter of the template's own before any `*`.
        if let Some(template) = templates.iter().find(|t| t.as_ref().contains("{sub}*")) {
            return Err(ScopeError::Pattern(template.as_ref().into()));
        }
        let expanded: Vec<String> = templates
            .iter()
            .map(|t| t.as_ref().replace("{sub}", subject))
            .collect();
        Scope::parse(&expanded)
    }

    /// Whether `channel` is in scope.
    pub fn allows(&self, channel: &str) -> bool {
        match self {
            Scope::All => true,
            Scope::Only(patterns) => patterns.iter().any(|p| p.matches(channel)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_grant_exactly_what_they_name() {
        let scope = Scope::parse(&["market-data", "prices.*"]).unwrap();
        assert!(scope.allows("market-data"));
        assert!(scope.allows("prices.AAPL"));
        assert!(!scope.allows("positions"));
        assert!(!scope.allows("prices.AAPL.bid"));
        assert!(!Scope::parse::<&str>(&[]).unwrap().allows("market-data"));
        assert!(Scope::All.allows("anything"));
        assert!(Scope::parse(&["bad name"]).is_err());
    }

    #[test]
    fn the_subject_is_substituted_as_literal_text() {
        let scope = Scope::for_subject(&["positions.{sub}", "market-data"], "trader-17").unwrap();
        assert!(scope.allows("positions.trader-17"));
        assert!(!scope.allows("positions.trader-18"));
        assert!(scope.allows("market-data"));
        // A subject cannot smuggle in a wildcard or break out of its segment.
        assert!(Scope::for_subject(&["positions.{sub}"], "*").is_err());
        assert!(Scope::for_subject(&["positions.{sub}"], "bo*").is_err());
        assert!(Scope::for_subject(&["positions.{sub}"], "b\"o").is_err());
        assert!(Scope::for_subject(&["positions.{sub}"], "a b").is_err());
        assert!(Scope::for_subject(&["positions.{sub}"], "").is_err());
        assert!(Scope::for_subject(&["positions.{sub}.orders"], "bob.orders").is_err());
        // A template cannot make the subject a prefix of other subjects.
        assert!(Scope::for_subject(&["accounts:{sub}*"], "bob").is_err());
        let scope = Scope::for_subject(&["accounts:{sub}:*"], "bob").unwrap();
        assert!(scope.allows("accounts:bob:orders"));
        assert!(!scope.allows("accounts:bobby:orders"));
    }
}
