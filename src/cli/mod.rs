//! Command-line interface. Each subcommand has its own file with its `Args` and `run`.

mod create;
mod inspect;
mod output;
mod seed;
mod serve;
mod tracker;
mod verify;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "bitseed",
    version,
    about = "Publish a folder over BitTorrent: create, track, seed and serve torrents",
    propagate_version = true
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    Create(create::Args),
    Inspect(inspect::Args),
    Seed(seed::Args),
    Verify(verify::Args),
    Serve(serve::Args),
    Tracker(tracker::Args),
}

/// The user asked for something that cannot be done as asked (exit code 2), as opposed to a
/// failure while doing it (exit code 1).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// Runs a subcommand; returns the process exit code.
pub fn run(cli: Cli) -> anyhow::Result<i32> {
    match cli.command {
        Command::Create(args) => create::run(args),
        Command::Inspect(args) => inspect::run(args),
        Command::Seed(args) => seed::run(args),
        Command::Verify(args) => verify::run(args),
        Command::Serve(args) => serve::run(args),
        Command::Tracker(args) => tracker::run(args),
    }
}

/// Logs to stderr at `RUST_LOG`'s levels (info by default), as JSON lines when `json`. Colours
/// only on a terminal, and never with `NO_COLOR` set (no-color.org): journald, `docker logs`
/// and files get plain text.
pub(crate) fn init_logging(json: bool) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        // str0m (the seeder's WebRTC side) warns about what browsers send (a bad SDP media
        // line, a data-channel open it cannot read): remote input, counted in /metrics, not
        // worth a line each at the default level.
        .unwrap_or_else(|_| {
            tracing_subscriber::EnvFilter::new("info,str0m=error,sctp_proto=error")
        });
    let colour = std::io::stderr().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colour);
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

/// A clap error (several lines: the problem, its details, the usage, a pointer to `--help`) on
/// one line, keeping what names the problem: which argument is missing, which values are
/// possible.
pub fn clap_one_line(text: &str) -> String {
    let mut parts = Vec::new();
    let mut usage = None;
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with("For more information") {
            continue;
        }
        if let Some(u) = line.strip_prefix("Usage: ") {
            usage = Some(u);
            continue;
        }
        parts.push(line.strip_prefix("error: ").unwrap_or(line));
    }
    let mut out = parts.join(" ");
    if out.is_empty() {
        out = "invalid arguments".into();
    }
    match usage {
        Some(u) => format!("{out} (usage: {u}; more with --help)"),
        None => format!("{out} (see --help)"),
    }
}

/// An error and its causes on one line, without repeating a cause already in the message.
pub fn one_line(err: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line.replace('\n', " ")
}

/// Raises the soft limit on open files to the hard limit, as long-running servers do: the seeder
/// keeps every published file open (so that a file replaced under its name is noticed), and a
/// shell's default of 1024 would refuse a folder of a few thousand files. Returns the limit now
/// in force.
pub(crate) fn raise_open_files_limit() -> Option<u64> {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let limit = getrlimit(Resource::Nofile);
    if limit.current.is_some() && limit.current != limit.maximum {
        let raised = Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        };
        if let Err(e) = setrlimit(Resource::Nofile, raised) {
            tracing::warn!(
                "cannot raise the open files limit above {:?}: {e}",
                limit.current
            );
            return limit.current;
        }
    }
    getrlimit(Resource::Nofile).current
}

/// Installs the SIGTERM and SIGINT handlers now, not when first awaited: the listening lines
/// are printed before the server waits, and a supervisor (or test) that signals as soon as it
/// sees them must get a clean stop, not the default action of the signal.
pub(crate) fn wait_for_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{signal, SignalKind};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    async move {
        match (term, int) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = int.recv() => {}
                    _ = term.recv() => {}
                }
            }
            _ => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
}
