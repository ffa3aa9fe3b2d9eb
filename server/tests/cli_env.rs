//! Switches set from the environment read as an operator writes them:
//! `1/0`, `true/false`, `yes/no`, `on/off`; anything else stops the binary
//! with exit 2 naming the variable, not a flag nobody wrote. Run against the
//! real binary; `check-config` shows what the server would run with.

use std::process::{Command, Output};

fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_shardcast"));
    command
        .args(args)
        .env_remove("SHARDCAST_CONFIG")
        .env_remove("SHARDCAST_NO_DEMO")
        .env_remove("SHARDCAST_NO_PIN")
        .envs(env.iter().copied());
    command.output().expect("the binary runs")
}

/// `demo` and `pin_threads` as `check-config` prints them with `env` set.
fn switches(env: &[(&str, &str)]) -> (bool, bool) {
    let out = run(&["check-config"], env);
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{env:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let settings: toml::Table = toml::from_str(&stdout).unwrap();
    (
        settings["demo"].as_bool().unwrap(),
        settings["pin_threads"].as_bool().unwrap(),
    )
}

#[test]
fn switch_variables_read_1_0_true_false_yes_no() {
    assert_eq!(switches(&[]), (true, true));
    for off in ["0", "false", "FALSE", "no", "off"] {
        let env = [("SHARDCAST_NO_DEMO", off), ("SHARDCAST_NO_PIN", off)];
        assert_eq!(switches(&env), (true, true), "{off} leaves the demo on");
    }
    for on in ["1", "true", "True", "yes", "on"] {
        let env = [("SHARDCAST_NO_DEMO", on), ("SHARDCAST_NO_PIN", on)];
        assert_eq!(switches(&env), (false, false), "{on} turns the demo off");
    }
}

#[test]
fn a_garbage_switch_exits_2_naming_the_variable() {
    for args in [&[][..], &["serve"][..], &["check-config"][..]] {
        let out = run(args, &[("SHARDCAST_NO_DEMO", "maybe")]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.contains("SHARDCAST_NO_DEMO") && stderr.contains("maybe"),
            "{args:?}: {stderr}"
        );
    }
}
