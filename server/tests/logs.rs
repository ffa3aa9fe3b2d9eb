//! Logs an operator can collect: always on stderr (stdout stays clean for
//! output), JSON lines when not on a terminal, text on request without
//! colour codes off a terminal, and `--log` / `SHARDCAST_LOG` winning over
//! `RUST_LOG`. Run against the real binary, stopped by a configuration
//! error it logs (no server is started).

use std::process::{Command, Output};

/// Runs the binary with an invalid setting (`--shards 1000`) and `args`,
/// with `env` set and the logging variables otherwise cleared.
fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_shardcast"));
    command
        .args(["--no-demo", "--shards", "1000"])
        .args(args)
        .env_remove("RUST_LOG")
        .env_remove("SHARDCAST_LOG")
        .env_remove("SHARDCAST_LOG_FORMAT");
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().expect("the binary runs")
}

#[test]
fn errors_are_json_lines_on_stderr_and_stdout_stays_empty() {
    let out = run(&[], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        out.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let stderr = String::from_utf8(out.stderr).unwrap();
    let lines: Vec<serde_json::Value> = stderr
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect();
    let error = lines
        .iter()
        .find(|l| l["level"] == "ERROR")
        .unwrap_or_else(|| panic!("{stderr}"));
    assert!(
        error["fields"]["message"]
            .as_str()
            .unwrap()
            .contains("shards"),
        "{error}"
    );
}

#[test]
fn text_off_a_terminal_has_no_colour_codes() {
    let out = run(&["--log-format", "text"], &[]);
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains("ERROR") && stderr.contains("shards"),
        "{stderr}"
    );
    assert!(!stderr.contains('\u{1b}'), "{stderr:?}");
}

#[test]
fn the_log_flag_and_its_variable_win_over_rust_log() {
    let silent = run(&[], &[("RUST_LOG", "off")]);
    assert!(silent.stderr.is_empty(), "RUST_LOG alone applies");
    let flag = run(&["--log", "error"], &[("RUST_LOG", "off")]);
    assert!(String::from_utf8_lossy(&flag.stderr).contains("shards"));
    let variable = run(&[], &[("RUST_LOG", "off"), ("SHARDCAST_LOG", "error")]);
    assert!(String::from_utf8_lossy(&variable.stderr).contains("shards"));
}

#[test]
fn a_bad_filter_is_refused_by_name() {
    let out = run(&["--log", "shardcast=loud"], &[]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("invalid log filter") && stderr.contains("loud"),
        "{stderr}"
    );
}
