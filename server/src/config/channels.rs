//! Which channels exist and how each is delivered: the top-level
//! `channels` list and `[[channel_rules]]` tables, into the engine's
//! [`ChannelRules`].
//!
//! ```toml
//! [[channel_rules]]
//! pattern = "prices.*"      # an exact name or a pattern, as in `channels`
//! overflow = "conflate"     # conflate | drop_oldest | drop_newest | disconnect
//! priority = "normal"       # normal | high
//! max_rate = 10             # most updates a second of each key, per subscription
//! ```
//!
//! For each of `overflow`, `priority` and `max_rate`, the first rule
//! matching a channel that sets it decides; rules from the file come before
//! the built-in ones (`risk-alerts` and `positions` are high priority), so a
//! file can change those too, and a rule that does not name a priority
//! leaves them high.

use std::num::NonZeroU32;

use serde::Deserialize;
use shardcast_engine::{ChannelRules, ClassRule, Priority, SlowConsumerPolicy};

use super::{in_range, invalid, ConfigError, DEFAULT_CHANNELS};
use crate::protocol::common::MAX_RATE;

/// Channels whose messages are high priority unless a rule says otherwise.
pub const HIGH_PRIORITY_CHANNELS: [&str; 2] = ["risk-alerts", "positions"];

/// Rules one file may hold.
const MAX_RULES: usize = 1024;

/// One `[[channel_rules]]` table.
#[derive(Debug, Default, Deserialize, Clone)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
#[allow(missing_docs)] // Each field is its key; docs/configuration.md describes them.
pub struct RawChannelRule {
    pub pattern: String,
    pub overflow: Option<String>,
    pub priority: Option<String>,
    pub max_rate: Option<u32>,
}

/// A slow-consumer policy by its configuration name.
pub fn parse_policy(field: &'static str, name: &str) -> Result<SlowConsumerPolicy, ConfigError> {
    match name {
        "drop_newest" | "drop" => Ok(SlowConsumerPolicy::Drop),
        "drop_oldest" => Ok(SlowConsumerPolicy::DropOldest),
        "disconnect" => Ok(SlowConsumerPolicy::Disconnect),
        "conflate" => Ok(SlowConsumerPolicy::Conflate),
        other => Err(invalid(
            field,
            format!(
                "{other:?}: use \"conflate\", \"drop_oldest\", \"drop_newest\" or \"disconnect\""
            ),
        )),
    }
}

/// The configuration name of a slow-consumer policy (its inverse).
pub fn policy_name(policy: SlowConsumerPolicy) -> &'static str {
    match policy {
        SlowConsumerPolicy::Drop => "drop_newest",
        SlowConsumerPolicy::DropOldest => "drop_oldest",
        SlowConsumerPolicy::Disconnect => "disconnect",
        SlowConsumerPolicy::Conflate => "conflate",
    }
}

fn parse_priority(name: &str) -> Result<Priority, ConfigError> {
    match name {
        "normal" => Ok(Priority::Normal),
        "high" => Ok(Priority::High),
        other => Err(invalid(
            "channel_rules.priority",
            format!("{other:?}: use \"normal\" or \"high\""),
        )),
    }
}

/// The engine's channel rules: the built-in channels, `channels`, and
/// every `[[channel_rules]]` table (which also declares its pattern).
pub fn channel_rules(
    channels: &[String],
    rules: &[RawChannelRule],
) -> Result<ChannelRules, ConfigError> {
    if rules.len() > MAX_RULES {
        return Err(invalid(
            "channel_rules",
            format!("at most {MAX_RULES} rules"),
        ));
    }
    let mut out = ChannelRules::default();
    for rule in DEFAULT_CHANNELS
        .iter()
        .copied()
        .chain(channels.iter().map(String::as_str))
    {
        out.declare(rule)
            .map_err(|e| invalid("channels", e.to_string()))?;
    }
    for rule in rules {
        let class = ClassRule {
            priority: rule.priority.as_deref().map(parse_priority).transpose()?,
            overflow: rule
                .overflow
                .as_deref()
                .map(|name| parse_policy("channel_rules.overflow", name))
                .transpose()?,
            max_rate: rule
                .max_rate
                .map(|rate| {
                    in_range(
                        "channel_rules.max_rate",
                        Some(rate),
                        1,
                        1..=MAX_RATE,
                        " updates a second",
                    )
                    .map(|r| NonZeroU32::new(r).expect("at least 1"))
                })
                .transpose()?,
        };
        if class.priority == Some(Priority::High)
            && (class.overflow.is_some() || class.max_rate.is_some())
        {
            return Err(invalid(
                "channel_rules",
                format!(
                    "{:?}: a high-priority channel is never dropped, conflated or throttled for normal traffic; leave out overflow and max_rate",
                    rule.pattern
                ),
            ));
        }
        out.declare_class(&rule.pattern, class)
            .map_err(|e| invalid("channel_rules.pattern", e.to_string()))?;
    }
    let high = ClassRule {
        priority: Some(Priority::High),
        ..ClassRule::default()
    };
    for name in HIGH_PRIORITY_CHANNELS {
        out.declare_class(name, high)
            .map_err(|e| invalid("channel_rules", e.to_string()))?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(pattern: &str, overflow: Option<&str>, priority: Option<&str>) -> RawChannelRule {
        RawChannelRule {
            pattern: pattern.into(),
            overflow: overflow.map(Into::into),
            priority: priority.map(Into::into),
            max_rate: None,
        }
    }

    #[test]
    fn each_field_comes_from_the_first_rule_that_sets_it_file_rules_first() {
        let rules = channel_rules(
            &["quotes.*".into()],
            &[
                rule("prices.*", Some("drop_oldest"), None),
                rule("prices.**", Some("disconnect"), None),
                rule("prices.**", None, Some("high")),
                rule("positions", None, Some("normal")),
            ],
        )
        .unwrap();
        assert!(rules.allows("prices.A") && rules.allows("prices.A.b") && rules.allows("quotes.X"));
        // Each field from the first rule that sets it.
        let class = rules.class_of("prices.A");
        assert_eq!(class.overflow, Some(SlowConsumerPolicy::DropOldest));
        assert_eq!(class.priority, Priority::High);
        let deeper = rules.class_of("prices.A.b");
        assert_eq!(deeper.overflow, Some(SlowConsumerPolicy::Disconnect));
        assert_eq!(rules.class_of("risk-alerts").priority, Priority::High);
        assert_eq!(rules.class_of("positions").priority, Priority::Normal);
        assert_eq!(rules.class_of("quotes.X"), Default::default());
    }

    #[test]
    fn a_rule_naming_no_priority_leaves_the_built_in_high_channels_high() {
        let rules = channel_rules(&[], &[rule("*", Some("drop_oldest"), None)]).unwrap();
        let alerts = rules.class_of("risk-alerts");
        assert_eq!(alerts.priority, Priority::High);
        assert_eq!(alerts.overflow, Some(SlowConsumerPolicy::DropOldest));
        assert_eq!(rules.class_of("market-data").priority, Priority::Normal);
        // No maximum rate ever holds back a high-priority channel.
        let capped = channel_rules(
            &[],
            &[RawChannelRule {
                max_rate: Some(5),
                ..rule("**", None, None)
            }],
        )
        .unwrap();
        assert_eq!(capped.class_of("positions").max_rate, None);
        assert!(capped.class_of("trades").max_rate.is_some());
    }

    #[test]
    fn every_policy_name_parses_back() {
        for policy in [
            SlowConsumerPolicy::Drop,
            SlowConsumerPolicy::DropOldest,
            SlowConsumerPolicy::Disconnect,
            SlowConsumerPolicy::Conflate,
        ] {
            assert_eq!(parse_policy("x", policy_name(policy)).unwrap(), policy);
        }
    }

    #[test]
    fn bad_rules_are_refused_naming_the_key() {
        let error = |r: RawChannelRule| channel_rules(&[], &[r]).unwrap_err().to_string();
        assert!(error(rule("a", Some("sometimes"), None)).contains("channel_rules.overflow"));
        assert!(error(rule("a", None, Some("urgent"))).contains("channel_rules.priority"));
        assert!(error(rule("a b", None, None)).contains("channel_rules.pattern"));
        let fast = RawChannelRule {
            max_rate: Some(0),
            ..rule("a", None, None)
        };
        assert!(error(fast).contains("channel_rules.max_rate"));
        let both = error(rule("a", Some("drop_oldest"), Some("high")));
        assert!(both.contains("high-priority"), "{both}");
    }
}
