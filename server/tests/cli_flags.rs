//! Server flags are never silently ignored: written before a subcommand
//! (`shardcast --shards 2 sub …`), they are refused with a message saying
//! where they go. Run against the real binary.

use std::process::Command;

fn run(args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_shardcast"))
        .args(args)
        .env_remove("SHARDCAST_SHARDS")
        .output()
        .expect("the binary runs");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_server_flag_before_a_subcommand_is_refused_by_name() {
    for subcommand in [&["sub", "market-data"][..], &["serve", "--no-demo"][..]] {
        let mut args = vec!["--shards", "2"];
        args.extend_from_slice(subcommand);
        let (code, stderr) = run(&args);
        assert_eq!(code, Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains("--shards is a server flag"), "{stderr}");
        assert!(
            stderr.contains(&format!("before `{}`", subcommand[0])),
            "{stderr}"
        );
    }
}
