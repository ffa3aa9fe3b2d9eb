//! `shardcast`: run the server (default), check a configuration
//! (`check-config`), or subscribe as a client (`sub`).

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::parser::ValueSource;
use clap::{ArgMatches, Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use shardcast_server::cli::{document_defaults, CheckArgs, LogFormat, ServeArgs};
use shardcast_server::client::SubArgs;
use shardcast_server::config::{effective_settings, HIDDEN};
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
    propagate_version = true,
    about = "WebSocket broadcast server for real-time trading data"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ServeArgs,
}

// Each subcommand's `--version` prints `shardcast <version>`, as the top's does.
#[derive(Subcommand, Debug)]
enum Command {
    /// Run the server (the default).
    #[command(display_name = "shardcast")]
    Serve(Box<ServeArgs>),
    /// Check a configuration (file, environment and flags, as `serve`
    /// would read them) and print the settings in force.
    #[command(display_name = "shardcast")]
    CheckConfig(Box<CheckArgs>),
    /// Connect to a server and print the events of some channels.
    #[command(display_name = "shardcast")]
    Sub(SubArgs),
}

fn main() -> ExitCode {
    let mut command = document_defaults(Cli::command())
        .mut_subcommand("serve", document_defaults)
        .mut_subcommand("check-config", document_defaults);
    let matches = command
        .try_get_matches_from_mut(std::env::args_os())
        .unwrap_or_else(|e| exit_naming_variable(&command, e));
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    // Server flags before a subcommand would be silently ignored.
    if let (Some(command), Some(flag)) = (&cli.command, server_flag_given(&matches)) {
        let name = match command {
            Command::Serve(_) => "serve",
            Command::CheckConfig(_) => "check-config",
            Command::Sub(_) => "sub",
        };
        eprintln!(
            "shardcast: --{flag} is a server flag given before `{name}`: put server flags after `serve` or `check-config` (or use no subcommand), and leave them out of `sub`"
        );
        return ExitCode::from(2);
    }
    match cli.command {
        Some(Command::Sub(args)) => sub(args),
        Some(Command::Serve(args)) => serve(&args),
        Some(Command::CheckConfig(args)) => {
            let variables = command
                .find_subcommand("check-config")
                .zip(matches.subcommand_matches("check-config"))
                .map(|(command, matches)| from_environment(command, matches));
            check_config(*args, &variables.unwrap_or_default())
        }
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

/// Exits as clap would, but when the invalid value came from a flag's
/// environment variable, names the variable: the operator looks for a flag
/// nobody wrote otherwise.
fn exit_naming_variable(command: &clap::Command, error: clap::Error) -> ! {
    if matches!(
        error.kind(),
        ErrorKind::InvalidValue | ErrorKind::ValueValidation
    ) {
        if let (Some(ContextValue::String(flag)), Some(ContextValue::String(value))) = (
            error.get(ContextKind::InvalidArg),
            error.get(ContextKind::InvalidValue),
        ) {
            let long = flag.split(' ').next().unwrap_or_default();
            let variable = all_arguments(command)
                .find(|arg| arg.get_long().is_some_and(|l| long == format!("--{l}")))
                .and_then(|arg| arg.get_env())
                .filter(|name| std::env::var_os(name).is_some_and(|v| v == value.as_str()));
            if let Some(name) = variable {
                let message = error.render().to_string().replacen(
                    &format!("for '{flag}'"),
                    &format!(
                        "for {} (the environment variable of '{flag}')",
                        name.to_string_lossy()
                    ),
                    1,
                );
                eprint!("{message}");
                std::process::exit(2);
            }
        }
    }
    error.exit()
}

/// The arguments of `command` and of its subcommands.
fn all_arguments(command: &clap::Command) -> impl Iterator<Item = &clap::Arg> {
    command.get_arguments().chain(
        command
            .get_subcommands()
            .flat_map(|sub| sub.get_arguments()),
    )
}

/// The environment variables that set flags of `command`, parsed as `matches`.
fn from_environment(command: &clap::Command, matches: &ArgMatches) -> Vec<String> {
    command
        .get_arguments()
        .filter(|arg| matches.value_source(arg.get_id().as_str()) == Some(ValueSource::EnvVariable))
        .filter_map(|arg| Some(arg.get_env()?.to_string_lossy().into_owned()))
        .collect()
}

/// Validates the configuration `serve` would run with and prints its
/// settings as TOML on stdout; exit 2 with the error naming the file and
/// key when it is invalid.
fn check_config(args: CheckArgs, variables: &[String]) -> ExitCode {
    let args = args.into_serve();
    if !variables.is_empty() {
        eprintln!("shardcast: from the environment: {}", variables.join(", "));
    }
    let raw = match args.to_raw_config() {
        Ok(raw) => raw,
        Err(e) => {
            eprintln!("shardcast: {e}");
            return ExitCode::from(2);
        }
    };
    let config = match raw.clone().validate() {
        Ok(config) => config,
        Err(e) => {
            match &args.config {
                Some(path) => eprintln!("shardcast: {}: {e}", path.display()),
                None => eprintln!("shardcast: {e}"),
            }
            return ExitCode::from(2);
        }
    };
    let text = match toml::to_string(&effective_settings(&raw, &config)) {
        Ok(text) => text,
        Err(e) => {
            eprintln!("shardcast: cannot print the settings: {e}");
            return ExitCode::FAILURE;
        }
    };
    let source = match &args.config {
        Some(path) => format!("{} with", path.display()),
        None => "the defaults with".to_owned(),
    };
    println!("# Valid: the settings in force, from {source} the environment and flags.");
    println!("# Secrets show as {HIDDEN}.");
    print!("{text}");
    if config.dev_key.is_some() {
        eprintln!(
            "shardcast: no [[api_keys]]: the server would run in development mode with one key holding every role"
        );
    }
    ExitCode::SUCCESS
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
/// `shutdown.drain_seconds`; a second signal cuts the drain short. SIGHUP
/// meanwhile reloads the TLS certificate (new handshakes use it; open
/// connections keep theirs).
fn wait_and_drain(server: &Server) -> std::io::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let mut hup = signal(SignalKind::hangup())?;
        loop {
            tokio::select! {
                _ = int.recv() => break,
                _ = term.recv() => break,
                _ = hup.recv() => {
                    if server.app().tls.is_some() {
                        info!("SIGHUP: reloading the TLS certificate");
                        // Logged either way by the reload itself.
                        let _ = server.reload_tls();
                    } else {
                        info!("SIGHUP: nothing to reload (no TLS certificate configured)");
                    }
                }
            }
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
