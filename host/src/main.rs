//! The `logsec` command line (ARCHITECTURE §5).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use logsec::cmd::{check, decisions, explain, plugins, replay, run as daemon};
use logsec::config::Config;
use logsec::paths::{default_plugin_dir, default_rules};

/// Lines are allocated by the reader thread and freed by the workers; mimalloc handles that
/// cross-thread pattern far better than the system allocator (measured: see the README).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "logsec", version, about = "Real-time log security agent")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run logs through parse → detect → policy (rules only) and report flagged requests; applies nothing.
    Check {
        /// One JSON object per flagged request on stdout.
        #[arg(long)]
        json: bool,
        /// Parser to use.
        #[arg(long, default_value = "nginx")]
        format: String,
        /// Plugin directory [default: target/plugins in the workspace, else /usr/lib/logsec/plugins].
        #[arg(long)]
        plugins: Option<PathBuf>,
        /// Rules file for the patterns detector [default: rules/patterns.json].
        #[arg(long)]
        rules: Option<PathBuf>,
        /// Worker threads [default: one per core].
        #[arg(long)]
        workers: Option<usize>,
        /// Lines per batch crossing into the plugins.
        #[arg(long, default_value_t = check::DEFAULT_BATCH_LINES)]
        batch_size: usize,
        /// Log files; none or `-` reads stdin.
        files: Vec<PathBuf>,
    },
    /// Run the daemon: tail the sources, analyse, store, respond. Without --config, runs on the bundled
    /// sample logs with SQLite in ./data and dry-run blocking.
    Run {
        /// Configuration file (TOML).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Run historical logs (plain or gzip) through the whole pipeline into the store, with the logs'
    /// own timestamps. Lines stored before (same file content and offset) are not stored again.
    Replay {
        /// Configuration file (TOML) for the store, plugins and response settings [default: as for run].
        #[arg(long)]
        config: Option<PathBuf>,
        /// Parser [default: the first source's format in the configuration, else nginx].
        #[arg(long)]
        format: Option<String>,
        /// Print each decision on stdout, as `logsec run` does.
        #[arg(long)]
        show_decisions: bool,
        /// Log files, oldest first (the request cache follows the logs' time).
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Everything logsec knows about one address: its stored requests, the rules' findings, each
    /// analyst's verdict and reasoning, tool results, actions, and what the brain remembers.
    Explain {
        /// Configuration file (TOML) naming the store and the brain [default: as for run].
        #[arg(long)]
        config: Option<PathBuf>,
        /// One JSON document instead of text.
        #[arg(long)]
        json: bool,
        /// The address.
        ip: String,
    },
    /// Ban decisions: list them, ban an address or block by hand, lift a ban. A running daemon
    /// applies the change within seconds (within a second with a Redis brain).
    Decisions {
        #[command(subcommand)]
        action: DecisionsCommand,
    },
    /// List the plugins in a directory with kind, version and state.
    Plugins {
        /// Plugin directory [default: as for check].
        #[arg(long)]
        plugins: Option<PathBuf>,
        /// Rules file handed to the patterns detector while validating it.
        #[arg(long)]
        rules: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum DecisionsCommand {
    /// The decisions in force (newest first).
    List {
        /// Configuration file (for the store).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Also ended and lifted decisions.
        #[arg(long)]
        all: bool,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
        /// Most decisions shown.
        #[arg(long, default_value_t = 1000)]
        limit: i64,
    },
    /// Ban an address or a CIDR block.
    Add {
        /// Configuration file (store, allowlist, ban lengths, brain).
        #[arg(long)]
        config: Option<PathBuf>,
        /// How long ("4h", "7d") [default: the ban length for the value's next offence].
        #[arg(long, value_parser = parse_duration)]
        duration: Option<logsec::config::HumanDuration>,
        /// Why (shown in lists and to bouncers as the scenario).
        #[arg(long, default_value = "manual")]
        reason: String,
        /// Address or CIDR block.
        value: String,
    },
    /// Lift the bans on an address or CIDR block.
    Delete {
        /// Configuration file (store, brain).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Address or CIDR block.
        value: String,
    },
}

fn parse_duration(s: &str) -> Result<logsec::config::HumanDuration, String> {
    logsec::config::duration::parse(s).map(logsec::config::HumanDuration)
}

fn load(config: Option<PathBuf>) -> anyhow::Result<Config> {
    match config {
        Some(path) => Config::load(&path),
        None => Ok(Config::default()),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // `plugins` shows failures in its table; the other commands warn on stderr.
    init_logging(match cli.command {
        Command::Plugins { .. } => "error",
        Command::Run { .. } => "info",
        Command::Replay { .. } | Command::Explain { .. } | Command::Decisions { .. } => "warn",
        Command::Check { .. } => "warn",
    });
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("logsec: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Check {
            json,
            format,
            plugins,
            rules,
            workers,
            batch_size,
            files,
        } => {
            let opts = check::CheckOptions {
                json,
                format,
                plugin_dir: plugins.unwrap_or_else(default_plugin_dir),
                rules: rules.unwrap_or_else(default_rules),
                inputs: files,
                workers: workers.unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get())),
                batch_lines: batch_size,
            };
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::with_capacity(1 << 16, stdout.lock());
            let summary = check::run(&opts, &mut out)?;
            out.flush().ok();
            eprint!("{}", summary.render());
            Ok(ExitCode::SUCCESS)
        }
        Command::Run { config } => {
            let config = match config {
                Some(path) => Config::load(&path)?,
                None => daemon::default_config(),
            };
            daemon::run(config)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Replay {
            config,
            format,
            show_decisions,
            files,
        } => {
            let config = match config {
                Some(path) => Config::load(&path)?,
                None => Config::default(),
            };
            let summary = replay::replay(config, &files, format, show_decisions)?;
            eprint!("{}", summary.render());
            Ok(if summary.failed.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Command::Explain { config, json, ip } => {
            let config = match config {
                Some(path) => Config::load(&path)?,
                None => Config::default(),
            };
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::new(stdout.lock());
            explain::explain(&config, &ip, json, &mut out)?;
            out.flush()?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Decisions { action } => {
            let (config, action) = match action {
                DecisionsCommand::List {
                    config,
                    all,
                    json,
                    limit,
                } => (config, decisions::Action::List { all, json, limit }),
                DecisionsCommand::Add {
                    config,
                    duration,
                    reason,
                    value,
                } => (
                    config,
                    decisions::Action::Add {
                        value,
                        duration,
                        reason,
                    },
                ),
                DecisionsCommand::Delete { config, value } => (config, decisions::Action::Delete { value }),
            };
            let config = load(config)?;
            let mut out = std::io::stdout().lock();
            let done = decisions::decisions(&config, action, &mut out)?;
            Ok(if done { ExitCode::SUCCESS } else { ExitCode::from(1) })
        }
        Command::Plugins { plugins: dir, rules } => {
            let dir = dir.unwrap_or_else(default_plugin_dir);
            let rules_text = std::fs::read_to_string(rules.unwrap_or_else(default_rules)).ok();
            let mut out = std::io::stdout().lock();
            plugins::run(&dir, rules_text, &mut out)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn init_logging(default_level: &str) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_env("LOGSEC_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .init();
}
