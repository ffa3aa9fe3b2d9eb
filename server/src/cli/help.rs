//! The defaults `--help` shows for the server flags, read from the
//! default settings (`config::effective_settings`) so that the help cannot
//! drift from what the server does.

use crate::config::{effective_settings, lookup, RawConfig};

/// Where `--help` finds a server flag's default.
enum Shown {
    /// The key's value in the default settings.
    Key(&'static str),
    /// The negation of the key's value (a `--no-*` switch).
    Not(&'static str),
    /// Words, where the default is not one value.
    Words(&'static str),
}

/// The default of every visible server flag but the logging ones (whose
/// help says it), by argument id.
const DEFAULTS: [(&str, Shown); 35] = [
    ("config", Shown::Words("none")),
    ("listen", Shown::Key("listen")),
    ("shards", Shown::Words("0")),
    ("no_pin", Shown::Not("pin_threads")),
    ("no_demo", Shown::Not("demo")),
    ("max_connections", Shown::Key("max_connections")),
    (
        "max_connections_per_ip",
        Shown::Key("max_connections_per_ip"),
    ),
    ("max_http_connections", Shown::Key("max_http_connections")),
    (
        "max_http_connections_per_ip",
        Shown::Key("max_http_connections_per_ip"),
    ),
    ("allowed_origins", Shown::Key("allowed_origins")),
    ("jwt_hs256_secret_file", Shown::Key("jwt.hs256_secret_file")),
    ("max_frame_size", Shown::Key("max_frame_size")),
    (
        "heartbeat_interval",
        Shown::Key("telemetry.heartbeat_interval_seconds"),
    ),
    (
        "heartbeat_timeout",
        Shown::Key("telemetry.heartbeat_timeout_seconds"),
    ),
    ("rate_limit", Shown::Key("telemetry.rate_limit_per_second")),
    ("replay_limit", Shown::Key("telemetry.replay_limit")),
    ("outbox_max_messages", Shown::Key("outbox.max_messages")),
    ("outbox_max_bytes", Shown::Key("outbox.max_bytes")),
    ("slow_consumer", Shown::Key("outbox.slow_consumer")),
    (
        "coalesce_above_cpu",
        Shown::Key("outbox.coalesce_above_cpu"),
    ),
    ("channels", Shown::Key("channels")),
    (
        "api_keys",
        Shown::Words("none: a development key, dev-api-key on loopback, else random"),
    ),
    ("metrics_listen", Shown::Key("metrics_listen")),
    ("bondx_jwt_secret", Shown::Key("bondx.jwt_secret")),
    ("bondx_jwt_secret_file", Shown::Key("bondx.jwt_secret_file")),
    ("drain_seconds", Shown::Key("shutdown.drain_seconds")),
    ("broker", Shown::Words("memory: this process alone")),
    (
        "broker_url",
        Shown::Words("none (redis: redis://127.0.0.1:6379/0, nats: nats://127.0.0.1:4222)"),
    ),
    ("broker_cluster", Shown::Words("none: one Redis server")),
    ("node_id", Shown::Words("random, logged at start")),
    ("tls_cert", Shown::Words("none: plain HTTP and ws://")),
    ("tls_key", Shown::Words("none")),
    ("listen_plain", Shown::Words("none")),
    ("no_compression", Shown::Not("compression.enabled")),
    ("compression_min_size", Shown::Key("compression.min_size")),
];

/// `command` (which holds the server flags) with each flag's default
/// appended to its help, read from the default settings, so the help
/// cannot drift from what the server does.
pub fn document_defaults(command: clap::Command) -> clap::Command {
    let raw = RawConfig::default();
    // The defaults validate (a unit test says so); if not, the help stays bare.
    let Ok(config) = raw.clone().validate() else {
        return command;
    };
    let settings = effective_settings(&raw, &config);
    DEFAULTS.iter().fold(command, |command, (id, shown)| {
        let text = match shown {
            Shown::Key(key) => shown_value(lookup(&settings, key)),
            Shown::Not(key) => match lookup(&settings, key) {
                Some(toml::Value::Boolean(on)) => (!on).to_string(),
                other => shown_value(other),
            },
            Shown::Words(words) => (*words).to_owned(),
        };
        command.mut_arg(*id, |arg| {
            let help = arg.get_help().map(ToString::to_string).unwrap_or_default();
            arg.help(format!("{help} [default: {text}]"))
        })
    })
}

/// A setting as `--help` writes it: strings unquoted, lists comma-separated.
fn shown_value(value: Option<&toml::Value>) -> String {
    match value {
        None => "none".to_owned(),
        Some(toml::Value::String(text)) => text.clone(),
        Some(toml::Value::Array(list)) if list.is_empty() => "none".to_owned(),
        Some(toml::Value::Array(list)) => list
            .iter()
            .map(|item| shown_value(Some(item)))
            .collect::<Vec<_>>()
            .join(","),
        Some(other) => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use clap::Args;

    use super::*;
    use crate::cli::ServeArgs;

    #[test]
    fn every_visible_server_flag_shows_a_default() {
        let command = document_defaults(ServeArgs::augment_args(clap::Command::new("serve")));
        let help = |id: &str| {
            let arg = command.get_arguments().find(|a| a.get_id() == id);
            arg.and_then(|a| a.get_help()).map(ToString::to_string)
        };
        for arg in command.get_arguments().filter(|arg| !arg.is_hide_set()) {
            let text = help(arg.get_id().as_str()).unwrap_or_default();
            assert!(text.contains("[default: "), "{}: {text}", arg.get_id());
        }
        let listen = help("listen").unwrap();
        assert!(listen.ends_with("[default: 127.0.0.1:8000]"), "{listen}");
        assert!(help("no_demo").unwrap().ends_with("[default: false]"));
        assert!(help("metrics_listen").unwrap().ends_with("[default: none]"));
    }
}
