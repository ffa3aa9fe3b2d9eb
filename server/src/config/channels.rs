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
//! The first rule matching a channel gives its class; rules from the file
//! come before the built-in ones (`risk-alerts` and `positions` are high
//! priority), so a file can change those too.

use std::num::NonZeroU32;

use serde::Deserialize;
use shardcast_engine::{ChannelRules, DeliveryClass, Priority, SlowConsumerPolicy};

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
        let class = DeliveryClass {
            priority: rule
                .priority
                .as_deref()
                .map(parse_priority)
                .transpose()?
                .unwrap_or_default(),
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
        out.declare_class(&rule.pattern, class)
            .map_err(|e| invalid("channel_rules.pattern", e.to_string()))?;
    }
    let high = DeliveryClass {
        priority: Priority::High,
        ..DeliveryClass::default()
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
    fn the_first_matching_rule_gives_the_class_and_file_rules_come_first() {
        let rules = channel_rules(
            &["quotes.*".into()],
            &[
                rule("prices.*", Some("drop_oldest"), None),
                rule("prices.**", Some("disconnect"), Some("high")),
                rule("positions", None, Some("normal")),
            ],
        )
        .unwrap();
        assert!(rules.allows("prices.A") && rules.allows("prices.A.b") && rules.allows("quotes.X"));
        let class = rules.class_of("prices.A");
        assert_eq!(class.overflow, Some(SlowConsumerPolicy::DropOldest));
        assert_eq!(class.priority, Priority::Normal);
        assert_eq!(rules.class_of("prices.A.b").priority, Priority::High);
        assert_eq!(rules.class_of("risk-alerts").priority, Priority::High);
        assert_eq!(rules.class_of("positions").priority, Priority::Normal);
        assert_eq!(rules.class_of("quotes.X"), DeliveryClass::default());
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
    }
}
