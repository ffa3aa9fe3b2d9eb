//! `shardcast`: run the server (default) or subscribe as a client (`sub`).

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::parser::ValueSource;
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use shardcast_server::cli::{LogFormat, ServeArgs};
use shardcast_server::client::SubArgs;
use shardcast_server::Server;
use tracing::{error, info};
use tracing_subscriber::EnvFilter;

// The shards allocate a frame per message and free it when the last
// subscriber's write completes, often on another thread; mimalloc's
// thread-free lists handle that cross-thread pattern well.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser, Debug)]
#[command(
    name = "shardcast",
    version,
    about = "WebSocket broadcast server for real-time trading data"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the server (the default).
    Serve(Box<ServeArgs>),
    /// Connect to a server and print the events of some channels.
    Sub(SubArgs),
}

fn main() -> ExitCode {
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    // Server flags before a subcommand would be silently ignored.
    if let (Some(command), Some(flag)) = (&cli.command, server_flag_given(&matches)) {
        let name = match command {
            Command::Serve(_) => "serve",
            Command::Sub(_) => "sub",
        };
        eprintln!(
            "shardcast: --{flag} is a server flag given before `{name}`: put server flags after `serve` (or use no subcommand), and leave them out of `sub`"
        );
        return ExitCode::from(2);
    }
    match cli.command {
        Some(Command::Sub(args)) => sub(args),
        Some(Command::Serve(args)) => serve(&args),
        None => serve(&cli.serve),
    }
}

/// The first server flag written on the command line before a subcommand
/// (one set by its environment variable is not a mistake).
fn server_flag_given(matches: &clap::ArgMatches) -> Option<String> {
    ServeArgs::augment_args(clap::Command::new("serve"))
        .get_arguments()
        .map(|arg| arg.get_id().as_str().to_owned())
        .find(|id| matches.value_source(id) == Some(ValueSource::CommandLine))
}

fn sub(args: SubArgs) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("shardcast: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(shardcast_server::client::run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("shardcast: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Logs go to stderr (stdout stays the program's output), filtered by
/// `--log` / `SHARDCAST_LOG`, else `RUST_LOG`, else `info`; as text on a
/// terminal (coloured) and JSON lines otherwise, unless `--log-format` says.
fn init_logging(args: &ServeArgs) -> Result<(), String> {
    let directives = match &args.log {
        Some(log) => log.clone(),
        None => std::env::var("RUST_LOG").unwrap_or_else(|_| "info".to_owned()),
    };
    let filter = EnvFilter::try_new(&directives)
        .map_err(|e| format!("invalid log filter {directives:?}: {e}"))?;
    let terminal = std::io::stderr().is_terminal();
    let format = args.log_format.unwrap_or(if terminal {
        LogFormat::Text
    } else {
        LogFormat::Json
    });
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => logs.with_ansi(terminal).init(),
        LogFormat::Json => logs.json().init(),
    }
    Ok(())
}

fn serve(args: &ServeArgs) -> ExitCode {
    if let Err(e) = init_logging(args) {
        eprintln!("shardcast: {e}");
        return ExitCode::from(2);
    }
    let config = match args.to_raw_config().and_then(|raw| raw.validate()) {
        Ok(config) => config,
        Err(e) => {
            error!("configuration: {e}");
            return ExitCode::from(2);
        }
    };
    let server = match Server::start(config) {
        Ok(server) => server,
        Err(e) => {
            error!("{e:#}");
            return ExitCode::FAILURE;
        }
    };
    if let Err(e) = wait_and_drain(&server) {
        error!("cannot wait for signals: {e}");
    }
    info!("shutting down: closing connections with 1001");
    server.shutdown();
    info!("stopped");
    ExitCode::SUCCESS
}

/// Blocks until SIGINT or SIGTERM, then drains (lame duck) for
/// `shutdown.drain_seconds`; a second signal cuts the drain short.
fn wait_and_drain(server: &Server) -> std::io::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
        let over = server.app().config.drain;
        if over.is_zero() {
            return Ok(());
        }
        tokio::select! {
            () = server.drain(over) => {}
            _ = int.recv() => info!("second signal: drain cut short"),
            _ = term.recv() => info!("second signal: drain cut short"),
        }
        Ok(())
    })
}
