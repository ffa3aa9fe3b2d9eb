//! Unit tests of `validate.rs`: defaults, refused values, per-address caps.

use super::*;
use crate::config::DEV_API_KEY;

#[test]
fn defaults_match_the_documentation() {
    let config = RawConfig::default().validate().unwrap();
    assert_eq!(config.listen, "127.0.0.1:8000".parse().unwrap());
    assert_eq!(config.engine.heartbeat_interval, Duration::from_secs(15));
    assert_eq!(config.engine.heartbeat_timeout, Duration::from_secs(45));
    assert_eq!(config.telemetry.rate_limit_per_second, 120);
    assert_eq!(config.telemetry.replay_limit, 50);
    assert_eq!(config.dev_key.as_deref(), Some(DEV_API_KEY));
    assert!(config.engine.channels.allows("market-data"));
    assert!(config.demo);
    assert_eq!(config.engine.history.max_bytes, 8 << 20);
    assert_eq!(config.engine.max_history_bytes, 256 << 20);
    assert_eq!(config.engine.topic_idle_expiry, Duration::from_secs(60));
    assert_eq!(
        config.engine.gate,
        GateLimits {
            max_connections: 100_000,
            max_per_address: 4096,
            max_http: 1024,
            max_http_per_address: 128,
            max_sockets: usize::MAX,
        }
    );
    assert_eq!(config.max_header_bytes, 16 * 1024);
    assert_eq!(config.request_timeout, Duration::from_secs(10));
}

#[test]
fn bad_values_fail_naming_the_field() {
    let cases = [
        ("listen = \"nope\"", "listen"),
        (
            "[outbox]\nslow_consumer = \"maybe\"",
            "outbox.slow_consumer",
        ),
        (
            "[telemetry]\nheartbeat_interval_seconds = 0",
            "telemetry.heartbeat_interval_seconds",
        ),
        (
            "[telemetry]\nheartbeat_interval_seconds = 30\nheartbeat_timeout_seconds = 10",
            "telemetry.heartbeat_timeout_seconds",
        ),
        ("channels = [\"bad name\"]", "channels"),
        (
            "[[api_keys]]\nkey = \"abcdefgh\"\nroles = [\"root\"]",
            "api_keys.roles",
        ),
        ("max_connections = 0", "max_connections"),
        (
            "[outbox]\ncoalesce_above_cpu = 1.5",
            "outbox.coalesce_above_cpu",
        ),
        ("max_header_bytes = 100", "max_header_bytes"),
        ("request_timeout_seconds = 0", "request_timeout_seconds"),
        (
            "[topics]\nhistory_bytes = 2000\nmax_total_bytes = 1000",
            "topics.history_bytes",
        ),
        ("[topics]\ncreation_rate = -1.0", "topics.creation_rate"),
        ("[topics]\nhistory = 1048577", "topics.history"),
        ("[topics]\nring_slots = 0", "topics.ring_slots"),
        ("[topics]\nring_slots = 65537", "topics.ring_slots"),
        ("[topics]\nshard_inbox = 65536", "topics.ring_max_slots"),
        (
            "[topics]\nring_max_slots = 1048577",
            "topics.ring_max_slots",
        ),
        (
            "[topics]\nring_slots = 1024\nring_max_slots = 512",
            "topics.ring_max_slots",
        ),
        (
            "[topics]\nidle_expiry_seconds = 0",
            "topics.idle_expiry_seconds",
        ),
        ("allowed_origins = [\"desk\"]", "allowed_origins"),
        (
            "[[api_keys]]\nkey = \"abcdefgh\"\nroles = [\"subscribe\"]\nsubscribe = [\"a b\"]",
            "api_keys.subscribe",
        ),
        ("[jwt]\nissuer = \"x\"", "jwt"),
        ("open_paths = [\"/api/v1/publish\"]", "open_paths"),
        ("[shutdown]\ndrain_seconds = 3601", "shutdown.drain_seconds"),
        (
            "[shutdown]\ndrain_seconds = \"2h\"",
            "shutdown.drain_seconds",
        ),
        ("[jwt]\nhs256_secret = \"short\"", "jwt.hs256_secret"),
        (
            "[jwt]\nrs256_public_keys = [\"/nonexistent/key.pem\"]",
            "jwt.rs256_public_keys",
        ),
    ];
    for (toml, field) in cases {
        let err = RawConfig::from_toml(toml).unwrap().validate().unwrap_err();
        assert!(err.to_string().contains(field), "{toml}: {err}");
    }
}

#[test]
fn public_listen_without_keys_gets_a_random_dev_key() {
    let raw = RawConfig::from_toml("listen = \"0.0.0.0:8000\"").unwrap();
    let key = raw.validate().unwrap().dev_key.unwrap();
    assert_ne!(key, DEV_API_KEY);
}

#[test]
fn zero_means_no_per_address_cap() {
    let raw = RawConfig::from_toml("max_connections_per_ip = 0\nmax_http_connections_per_ip = 0")
        .unwrap();
    let gate = raw.validate().unwrap().engine.gate;
    assert_eq!(gate.max_per_address, usize::MAX);
    assert_eq!(gate.max_http_per_address, usize::MAX);
}
