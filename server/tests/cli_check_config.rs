//! `shardcast check-config FILE` validates what `serve` would run with
//! (the file, then the environment and flags), prints the settings in
//! force as TOML with secrets hidden and exits 0, or exits 2 naming the
//! file and the key. Durations take units. Run against the real binary.

use std::path::PathBuf;
use std::process::{Command, Output};

/// A TOML file in the test's own directory, removed on drop.
struct File(PathBuf);

impl File {
    fn new(name: &str, text: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("shardcast-check-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        Self(path)
    }

    fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for File {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Runs `shardcast check-config` with `args`, `env` set and every other
/// `SHARDCAST_*` variable of these tests cleared.
fn check(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_shardcast"));
    command.arg("check-config").args(args);
    for name in [
        "SHARDCAST_CONFIG",
        "SHARDCAST_NO_DEMO",
        "SHARDCAST_NO_PIN",
        "SHARDCAST_HEARTBEAT_TIMEOUT",
        "SHARDCAST_API_KEYS",
    ] {
        command.env_remove(name);
    }
    command.envs(env.iter().copied());
    let Output {
        status,
        stdout,
        stderr,
    } = command.output().expect("the binary runs");
    (
        status.code(),
        String::from_utf8(stdout).unwrap(),
        String::from_utf8(stderr).unwrap(),
    )
}

/// The printed settings, parsed.
fn settings(stdout: &str) -> toml::Table {
    toml::from_str(stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

#[test]
fn a_valid_file_prints_the_settings_in_force_with_secrets_hidden() {
    let secret = "0123456789abcdef0123456789abcdef";
    let file = File::new(
        "valid.toml",
        &format!(
            "listen = \"127.0.0.1:9100\"\n\
             [telemetry]\nheartbeat_timeout_seconds = \"1m30s\"\n\
             [[api_keys]]\nkey = \"desk-ui-7f3c9a\"\nname = \"desk\"\nroles = [\"subscribe\"]\n\
             [jwt]\nhs256_secret = \"{secret}\"\n"
        ),
    );
    let (code, stdout, stderr) = check(&[file.path()], &[]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        !stdout.contains(secret) && !stdout.contains("desk-ui-7f3c9a"),
        "{stdout}"
    );
    let settings = settings(&stdout);
    assert_eq!(settings["listen"].as_str(), Some("127.0.0.1:9100"));
    // From the file, with units; defaults filled in.
    assert_eq!(
        settings["telemetry"]["heartbeat_timeout_seconds"].as_integer(),
        Some(90)
    );
    assert_eq!(
        settings["telemetry"]["heartbeat_interval_seconds"].as_integer(),
        Some(15)
    );
    assert_eq!(settings["max_frame_size"].as_integer(), Some(65536));
    assert_eq!(settings["api_keys"][0]["name"].as_str(), Some("desk"));
    assert_eq!(settings["api_keys"][0]["key"].as_str(), Some("<hidden>"));
    assert_eq!(settings["jwt"]["hs256_secret"].as_str(), Some("<hidden>"));
}

#[test]
fn the_environment_and_flags_apply_as_they_would_to_serve() {
    let file = File::new("env.toml", "demo = true\n");
    let (code, stdout, stderr) = check(
        &[file.path(), "--max-frame-size", "4096"],
        &[
            ("SHARDCAST_NO_PIN", "yes"),
            ("SHARDCAST_HEARTBEAT_TIMEOUT", "2m"),
        ],
    );
    assert_eq!(code, Some(0), "{stderr}");
    let settings = settings(&stdout);
    assert_eq!(settings["max_frame_size"].as_integer(), Some(4096));
    assert_eq!(settings["pin_threads"].as_bool(), Some(false));
    assert_eq!(
        settings["telemetry"]["heartbeat_timeout_seconds"].as_integer(),
        Some(120)
    );
    assert!(
        stderr.contains("SHARDCAST_HEARTBEAT_TIMEOUT") && stderr.contains("SHARDCAST_NO_PIN"),
        "the variables in effect are named: {stderr}"
    );
    // No keys configured: the operator is told.
    assert!(stderr.contains("development mode"), "{stderr}");
}

#[test]
fn an_invalid_value_exits_2_naming_the_file_and_the_key() {
    let file = File::new(
        "invalid.toml",
        "[telemetry]\nheartbeat_interval_seconds = \"1m\"\nheartbeat_timeout_seconds = \"15s\"\n",
    );
    let (code, stdout, stderr) = check(&[file.path()], &[]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stdout.is_empty(), "{stdout}");
    assert!(stderr.contains(file.path()), "{stderr}");
    assert!(
        stderr.contains("telemetry.heartbeat_timeout_seconds"),
        "{stderr}"
    );
}

#[test]
fn an_unknown_key_exits_2_naming_it_and_its_line() {
    let file = File::new("unknown.toml", "listen = \"127.0.0.1:1\"\nlisen = 1\n");
    let (code, _, stderr) = check(&[file.path()], &[]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains(file.path()), "{stderr}");
    assert!(stderr.contains("unknown field `lisen`"), "{stderr}");
    assert!(stderr.contains("line 2"), "{stderr}");
}

#[test]
fn a_missing_file_exits_2_naming_it() {
    let (code, _, stderr) = check(&["/nonexistent/shardcast.toml"], &[]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("cannot read /nonexistent/shardcast.toml"),
        "{stderr}"
    );
}

#[test]
fn durations_take_units_and_a_bad_one_exits_2_naming_the_key() {
    let seconds = File::new(
        "seconds.toml",
        "[telemetry]\nheartbeat_timeout_seconds = 15\n",
    );
    let units = File::new(
        "units.toml",
        "[telemetry]\nheartbeat_timeout_seconds = \"15s\"\n",
    );
    let (_, with_seconds, _) = check(&[seconds.path()], &[]);
    let (code, with_units, stderr) = check(&[units.path()], &[]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(
        with_units.replace(units.path(), seconds.path()),
        with_seconds
    );

    for (name, value) in [("typo.toml", "\"15x\""), ("fraction.toml", "\"1500ms\"")] {
        let file = File::new(
            name,
            &format!("[telemetry]\nheartbeat_timeout_seconds = {value}\n"),
        );
        let (code, _, stderr) = check(&[file.path()], &[]);
        assert_eq!(code, Some(2), "{value}: {stderr}");
        assert!(
            stderr.contains("heartbeat_timeout_seconds = "),
            "{value}: {stderr}"
        );
    }
    let (code, _, stderr) = check(&[], &[("SHARDCAST_HEARTBEAT_TIMEOUT", "soon")]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("SHARDCAST_HEARTBEAT_TIMEOUT"), "{stderr}");
}
