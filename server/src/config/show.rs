//! The settings in force, as TOML: what `shardcast check-config` prints, and
//! where `--help` finds each flag's default.
//!
//! Values are read back from the validated [`ServerConfig`], so a default
//! shown is the one applied, never restated; what validation compiles into
//! other shapes (`channels`, `[[channel_rules]]`, `[[api_keys]]`, `[jwt]`,
//! `allowed_origins`) is echoed from the raw settings. Secrets never
//! appear: API keys, `jwt.hs256_secret` and `bondx.jwt_secret` show as
//! [`HIDDEN`]. Durations are whole seconds (fractions for `fastws.*`).

use std::time::Duration;

use toml::{Table, Value};

use super::channels::policy_name;
use super::{RawConfig, ServerConfig};
use crate::auth::default_key_name;
use crate::protocol::bondx::Class;

/// What a secret shows as.
pub const HIDDEN: &str = "<hidden>";

/// Every setting in force, by its key. `raw` is what `config` was validated from.
pub fn effective_settings(raw: &RawConfig, config: &ServerConfig) -> Table {
    let engine = &config.engine;
    let gate = &engine.gate;
    let mut top = table([
        ("listen", config.listen.to_string().into()),
        ("shards", int(engine.shards.get())),
        ("pin_threads", engine.pin_threads.into()),
        ("demo", config.demo.into()),
        ("max_connections", int(gate.max_connections)),
        ("max_connections_per_ip", cap(gate.max_per_address)),
        ("max_http_connections", int(gate.max_http)),
        (
            "max_http_connections_per_ip",
            cap(gate.max_http_per_address),
        ),
        ("max_header_bytes", int(config.max_header_bytes)),
        ("request_timeout_seconds", seconds(config.request_timeout)),
        ("max_frame_size", int(engine.max_message_size)),
        ("max_publish_body", int(config.publish.max_body)),
        ("max_publish_batch", int(config.publish.max_batch)),
        ("open_paths", strings(&config.open_paths)),
        (
            "channels",
            strings(raw.channels.as_deref().unwrap_or_default()),
        ),
        (
            "allowed_origins",
            strings(raw.allowed_origins.as_deref().unwrap_or_default()),
        ),
    ]);
    if let Some(address) = config.metrics_listen {
        top.insert("metrics_listen".into(), address.to_string().into());
    }
    super::tls::show(config, &mut top);
    super::broker::show(config, &mut top);
    if let Some(rules) = &raw.channel_rules {
        let rules = rules.iter().map(|rule| {
            let mut out = table([("pattern", rule.pattern.as_str().into())]);
            set_given(
                &mut out,
                [
                    ("overflow", rule.overflow.as_deref().map(Value::from)),
                    ("priority", rule.priority.as_deref().map(Value::from)),
                    ("max_rate", rule.max_rate.map(int)),
                ],
            );
            Value::Table(out)
        });
        top.insert("channel_rules".into(), Value::Array(rules.collect()));
    }
    if let Some(keys) = raw.api_keys.as_ref().filter(|keys| !keys.is_empty()) {
        let keys = keys.iter().map(|key| {
            let name = key.name.clone();
            let mut out = table([
                ("key", HIDDEN.into()),
                (
                    "name",
                    name.unwrap_or_else(|| default_key_name(&key.key)).into(),
                ),
                ("roles", strings(&key.roles)),
            ]);
            set_given(
                &mut out,
                [
                    ("subscribe", key.subscribe.as_deref().map(strings)),
                    ("publish", key.publish.as_deref().map(strings)),
                    (
                        "topic_creation_rate",
                        key.topic_creation_rate.map(Value::from),
                    ),
                    ("topic_creation_burst", key.topic_creation_burst.map(int)),
                ],
            );
            Value::Table(out)
        });
        top.insert("api_keys".into(), Value::Array(keys.collect()));
    }
    if let Some(jwt) = &raw.jwt {
        let mut out = Table::new();
        set_given(
            &mut out,
            [
                (
                    "hs256_secret",
                    jwt.hs256_secret.as_ref().map(|_| HIDDEN.into()),
                ),
                (
                    "hs256_secret_file",
                    jwt.hs256_secret_file.as_deref().map(Value::from),
                ),
                (
                    "rs256_public_keys",
                    jwt.rs256_public_keys.as_deref().map(strings),
                ),
                (
                    "es256_public_keys",
                    jwt.es256_public_keys.as_deref().map(strings),
                ),
                ("issuer", jwt.issuer.as_deref().map(Value::from)),
                ("audience", jwt.audience.as_deref().map(Value::from)),
                ("leeway_seconds", jwt.leeway_seconds.map(int)),
                (
                    "default_channels",
                    jwt.default_channels.as_deref().map(strings),
                ),
            ],
        );
        top.insert("jwt".into(), Value::Table(out));
    }

    let telemetry = &config.telemetry;
    top.insert(
        "telemetry".into(),
        Value::Table(table([
            (
                "heartbeat_interval_seconds",
                seconds(telemetry.heartbeat_interval),
            ),
            (
                "heartbeat_timeout_seconds",
                seconds(telemetry.heartbeat_timeout),
            ),
            (
                "rate_limit_per_second",
                int(telemetry.rate_limit_per_second),
            ),
            ("replay_limit", int(telemetry.replay_limit)),
            ("commands_per_second", int(telemetry.commands_per_second)),
        ])),
    );
    top.insert(
        "outbox".into(),
        Value::Table(table([
            ("max_messages", int(engine.outbox.max_messages)),
            ("max_bytes", int(engine.outbox.max_bytes)),
            ("slow_consumer", policy_name(engine.outbox.policy).into()),
            ("coalesce_above_cpu", engine.coalesce_above_cpu.into()),
        ])),
    );
    top.insert(
        "topics".into(),
        Value::Table(table([
            ("history", int(engine.history.capacity)),
            ("max_keys", int(engine.history.max_keys)),
            ("history_bytes", int(engine.history.max_bytes)),
            ("max_total_bytes", int(engine.max_history_bytes)),
            ("max_topics", int(engine.max_topics)),
            ("max_subscriptions", int(engine.max_subscriptions)),
            ("ring_slots", int(engine.ring_slots)),
            ("ring_max_slots", int(engine.ring_max_slots)),
            ("idle_expiry_seconds", seconds(engine.topic_idle_expiry)),
            ("creation_rate", config.quota.rate_per_second.into()),
            ("creation_burst", int(config.quota.burst)),
            ("max_created_per_key", int(config.quota.max_live)),
        ])),
    );

    let bondx = &config.bondx;
    let limits = Class::ALL.map(|class| {
        let limit = bondx.limit(class);
        (
            class.name(),
            Value::Table(table([
                ("burst", int(limit.burst)),
                ("per_minute", int(limit.per_minute)),
            ])),
        )
    });
    let mut section = table([
        ("jwt_leeway_seconds", seconds(bondx.leeway)),
        (
            "heartbeat_interval_seconds",
            seconds(bondx.heartbeat_interval),
        ),
        (
            "connection_timeout_seconds",
            seconds(bondx.connection_timeout),
        ),
        (
            "background_interval_seconds",
            seconds(bondx.background_interval),
        ),
        ("extra_scope", strings(&bondx.extra_scope)),
        ("rate_limits", Value::Table(table(limits))),
    ]);
    set_given(
        &mut section,
        [
            (
                "jwt_secret",
                raw.bondx.jwt_secret.as_ref().map(|_| HIDDEN.into()),
            ),
            (
                "jwt_secret_file",
                raw.bondx.jwt_secret_file.as_deref().map(Value::from),
            ),
        ],
    );
    top.insert("bondx".into(), Value::Table(section));

    let fastws = &config.fastws;
    top.insert(
        "fastws".into(),
        Value::Table(table([
            ("require_api_key", fastws.require_api_key.into()),
            (
                "heartbeat_interval_seconds",
                fastws.heartbeat_interval.as_secs_f64().into(),
            ),
            (
                "max_connection_lifespan_seconds",
                fastws.max_connection_lifespan.as_secs_f64().into(),
            ),
        ])),
    );
    let simple = &config.simple;
    let feeds = &simple.feeds;
    top.insert(
        "simple".into(),
        Value::Table(table([
            ("enabled", simple.enabled.into()),
            ("require_api_key", simple.require_api_key.into()),
            ("ping_interval_seconds", seconds(simple.ping_interval)),
            (
                "price_update_interval_seconds",
                seconds(simple.price_update_interval),
            ),
            (
                "portfolio_update_interval_seconds",
                seconds(simple.portfolio_update_interval),
            ),
            ("max_connections", int(simple.max_connections)),
            ("max_symbols", int(simple.max_symbols)),
            ("stale_after_intervals", int(simple.stale_after_intervals)),
            ("messages_per_second", int(simple.messages_per_second)),
            (
                "feeds",
                Value::Table(table([
                    ("price_updates", feeds.price_updates.as_str().into()),
                    ("signals", feeds.signals.as_str().into()),
                    ("trades", feeds.trades.as_str().into()),
                    ("portfolio", feeds.portfolio.as_str().into()),
                ])),
            ),
        ])),
    );
    top.insert(
        "shutdown".into(),
        Value::Table(table([("drain_seconds", seconds(config.drain))])),
    );
    top.insert("compression".into(), config.compression.shown());
    top.insert(
        "metrics".into(),
        Value::Table(table([(
            "max_channel_labels",
            int(config.metrics.max_channel_labels),
        )])),
    );
    top
}

/// The value at a dotted `key` (`telemetry.replay_limit`), if listed.
pub fn lookup<'a>(settings: &'a Table, key: &str) -> Option<&'a Value> {
    let (section, rest) = match key.split_once('.') {
        Some((section, rest)) => (section, Some(rest)),
        None => (key, None),
    };
    let value = settings.get(section)?;
    match (rest, value) {
        (None, value) => Some(value),
        (Some(rest), Value::Table(inner)) => lookup(inner, rest),
        (Some(_), _) => None,
    }
}

fn table<const N: usize>(pairs: [(&str, Value); N]) -> Table {
    pairs
        .into_iter()
        .map(|(key, value)| (key.to_owned(), value))
        .collect()
}

/// Inserts the values given; a key whose value is `None` is left out.
fn set_given<const N: usize>(table: &mut Table, pairs: [(&str, Option<Value>); N]) {
    for (key, value) in pairs {
        if let Some(value) = value {
            table.insert(key.to_owned(), value);
        }
    }
}

fn int<T: TryInto<i64>>(n: T) -> Value {
    Value::Integer(n.try_into().unwrap_or(i64::MAX))
}

/// A per-address cap, where 0 (as written) stands for none.
fn cap(n: usize) -> Value {
    int(if n == usize::MAX { 0 } else { n })
}

fn seconds(duration: Duration) -> Value {
    int(duration.as_secs())
}

fn strings<S: AsRef<str>>(list: &[S]) -> Value {
    Value::Array(list.iter().map(|s| s.as_ref().into()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(text: &str) -> Table {
        let raw = RawConfig::from_toml(text).unwrap();
        effective_settings(&raw, &raw.clone().validate().unwrap())
    }

    #[test]
    fn the_listing_reads_back_as_the_same_settings() {
        let text = "listen = \"127.0.0.1:9000\"\nchannels = [\"prices.*\"]\n\
            [[channel_rules]]\npattern = \"orders.*\"\noverflow = \"disconnect\"\n\
            [telemetry]\nheartbeat_timeout_seconds = \"2m\"\n\
            [fastws]\nheartbeat_interval_seconds = \"1500ms\"\n\
            [jwt]\nissuer = \"auth\"\nhs256_secret = \"0123456789abcdef0123456789abcdef\"";
        let first = settings(text);
        assert_eq!(
            lookup(&first, "telemetry.heartbeat_timeout_seconds"),
            Some(&int(120))
        );
        assert_eq!(
            lookup(&first, "fastws.heartbeat_interval_seconds"),
            Some(&Value::Float(1.5))
        );
        let printed = toml::to_string(&first).unwrap();
        let again = printed.replace(HIDDEN, "0123456789abcdef0123456789abcdef");
        assert_eq!(settings(&again), first, "{printed}");
        assert_eq!(
            settings(&toml::to_string(&settings("")).unwrap()),
            settings("")
        );
    }

    #[test]
    fn secrets_are_hidden() {
        let secret = "0123456789abcdef0123456789abcdef";
        let text = format!(
            "[[api_keys]]\nkey = \"desk-ui-7f3c9a\"\nroles = [\"subscribe\"]\n\
             [jwt]\nhs256_secret = \"{secret}\"\n[bondx]\njwt_secret = \"{secret}\""
        );
        let printed = toml::to_string(&settings(&text)).unwrap();
        assert!(
            !printed.contains(secret) && !printed.contains("desk-ui-7f3c9a"),
            "{printed}"
        );
        assert_eq!(printed.matches(HIDDEN).count(), 3, "{printed}");
        assert!(
            printed.contains(&default_key_name("desk-ui-7f3c9a")),
            "{printed}"
        );
    }

    /// The keys a section accepts, as the parser lists them when refusing
    /// an unknown one.
    fn accepted_keys(section: &str) -> Vec<String> {
        let text = match section {
            "" => "unknown_key = 1".to_owned(),
            _ => format!("[{section}]\nunknown_key = 1"),
        };
        let err = RawConfig::from_toml(&text).unwrap_err();
        // "expected one of `a`, `b`", or "expected `a`" for a single key.
        let list = err.split("expected").nth(1).expect("a list of keys");
        list.split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn every_key_is_listed() {
        // Listed only when set: they have no default value.
        let unset = [
            "metrics_listen",
            "listen_plain",
            "tls",
            "broker",
            "channel_rules",
            "api_keys",
            "jwt",
            "jwt_secret",
            "jwt_secret_file",
            // Refused when set (replaced by `ring_slots`).
            "shard_inbox",
        ];
        let defaults = settings("");
        for section in [
            "",
            "telemetry",
            "outbox",
            "topics",
            "bondx",
            "bondx.rate_limits",
            "fastws",
            "simple",
            "simple.feeds",
            "shutdown",
            "metrics",
        ] {
            let listed = match section {
                "" => &defaults,
                _ => match lookup(&defaults, section) {
                    Some(Value::Table(inner)) => inner,
                    other => panic!("{section}: {other:?}"),
                },
            };
            let keys = accepted_keys(section);
            assert!(!keys.is_empty(), "`{section}`: {keys:?}");
            for key in keys {
                assert!(
                    listed.contains_key(&key) || unset.contains(&key.as_str()),
                    "`{section}` `{key}` is missing from the listing"
                );
            }
        }
    }
}
