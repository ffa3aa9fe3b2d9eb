//! `--help` shows every server flag's default, read from the settings the
//! server applies, and `--version` prints `shardcast <version>` at every
//! level. Run against the real binary.

use std::process::Command;

fn run(args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_shardcast"))
        .args(args)
        .output()
        .expect("the binary runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{args:?}: {stderr}");
    (out.status.code(), String::from_utf8(out.stdout).unwrap())
}

/// Each flag of `help` with the text that follows it, up to the next flag.
fn flags(help: &str) -> Vec<(String, String)> {
    let mut flags: Vec<(String, String)> = Vec::new();
    for line in help.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("--") || trimmed.starts_with("-h,") || trimmed.starts_with("-V,") {
            let name = trimmed.split([' ', ',']).find(|w| w.starts_with("--"));
            flags.push((name.unwrap_or(trimmed).to_owned(), String::new()));
        } else if let Some((_, text)) = flags.last_mut() {
            text.push_str(trimmed);
            text.push(' ');
        }
    }
    flags
}

/// The default `help` shows for `flag`.
fn default_of<'a>(flags: &'a [(String, String)], flag: &str) -> &'a str {
    let (_, text) = flags
        .iter()
        .find(|(name, _)| name == flag)
        .unwrap_or_else(|| panic!("{flag} is listed"));
    let start = text.find("[default: ").expect("a default") + "[default: ".len();
    let end = start + text[start..].find(']').expect("closed");
    &text[start..end]
}

#[test]
fn every_server_flag_shows_its_default() {
    for args in [
        &["--help"][..],
        &["serve", "--help"][..],
        &["check-config", "--help"][..],
    ] {
        let (_, help) = run(args);
        let flags = flags(&help);
        assert!(flags.len() > 20, "{args:?}: {help}");
        for (flag, text) in &flags {
            if flag == "--help" || flag == "--version" {
                continue;
            }
            assert!(text.contains("[default: "), "{args:?} {flag}: {text}");
        }
        // The values the server applies.
        assert_eq!(default_of(&flags, "--listen"), "127.0.0.1:8000");
        assert_eq!(default_of(&flags, "--max-frame-size"), "65536");
        assert_eq!(default_of(&flags, "--heartbeat-interval"), "15");
        assert_eq!(default_of(&flags, "--heartbeat-timeout"), "45");
        assert_eq!(default_of(&flags, "--slow-consumer"), "conflate");
        assert_eq!(default_of(&flags, "--no-demo"), "false");
        assert_eq!(default_of(&flags, "--metrics-listen"), "none");
    }
}

#[test]
fn version_prints_the_name_and_version_at_every_level() {
    let expected = format!("shardcast {}\n", env!("CARGO_PKG_VERSION"));
    for args in [
        &["--version"][..],
        &["-V"][..],
        &["serve", "--version"][..],
        &["check-config", "--version"][..],
        &["sub", "--version"][..],
    ] {
        let (code, stdout) = run(args);
        assert_eq!(code, Some(0), "{args:?}");
        assert_eq!(stdout, expected, "{args:?}");
    }
}
