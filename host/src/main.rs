//! The `kontor` command line: parses the arguments and hands each subcommand to its file
//! under [`cli`] (a module of this binary; see its docs for why).

mod cli;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};
use kontor::config::Config;

#[derive(Parser)]
#[command(
    name = "kontor",
    version,
    about = "Workflow and campaign automation for CRM + ERP"
)]
struct Cli {
    /// Configuration file (default: ./kontor.toml if it exists), given before the
    /// command: `kontor --config prod.toml serve`. `KONTOR_*` variables override it, e.g.
    /// KONTOR_LISTEN, KONTOR_DATABASE_URL, KONTOR_WORKFLOWS_DIR.
    #[arg(long, env = "KONTOR_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server: HTTP API, engine workers and cron triggers.
    Serve(cli::serve::ServeArgs),
    /// Check workflow files without running them; prints `file:line:col: error: ...`
    /// for every problem and exits non-zero if there is any.
    Check(cli::check::CheckArgs),
    /// Measure performance on this machine (temp SQLite file or a scratch PostgreSQL
    /// database; see README for figures).
    Bench {
        #[command(subcommand)]
        command: cli::bench::BenchCommand,
    },
    /// Write, build, try and inspect WebAssembly step plugins.
    Plugin {
        #[command(subcommand)]
        command: cli::plugin::PluginCommand,
    },
    /// Email: preview templates, check channels, rotate the unsubscribe-link key.
    Email {
        #[command(subcommand)]
        command: cli::email::EmailCommand,
    },
    /// Manage secrets (encrypted at rest under the master key).
    Secret {
        #[command(subcommand)]
        command: cli::secret::SecretCommand,
    },
    /// Manage API tokens.
    Token {
        #[command(subcommand)]
        command: cli::token::TokenCommand,
    },
    /// Manage the people tokens belong to: their roles, team and rep id.
    User {
        #[command(subcommand)]
        command: cli::user::UserCommand,
    },
    /// Leads: import a CSV or JSON-lines file.
    Leads {
        #[command(subcommand)]
        command: cli::leads::LeadsCommand,
    },
    /// What lead routing would do with a file of leads, without writing anything.
    Simulate(cli::simulate::SimulateArgs),
    /// Sales teams at run time: who takes leads now, absence, active.
    Team {
        #[command(subcommand)]
        command: cli::team::TeamCommand,
    },
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell) to stdout.
    Completions(cli::completions::CompletionsArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    // Loaded by the commands that use it: completions describe the command line, not a
    // deployment, and work before any kontor.toml exists.
    let config = || Config::load(cli.config.as_deref(), |k| std::env::var(k).ok());
    match cli.command {
        Command::Serve(args) => cli::serve::run(config()?, args),
        Command::Check(args) => Ok(cli::check::run(&config()?, args)),
        Command::Bench { command } => cli::bench::run(&config()?, command),
        Command::Plugin { command } => cli::plugin::run(&config()?, command),
        Command::Email { command } => cli::email::run(&config()?, command),
        Command::Secret { command } => cli::secret::run(&config()?, command),
        Command::Token { command } => cli::token::run(&config()?, command),
        Command::User { command } => cli::user::run(&config()?, command),
        Command::Team { command } => cli::team::run(&config()?, command),
        Command::Leads { command } => cli::leads::run(&config()?, command),
        Command::Simulate(args) => cli::simulate::run(&config()?, args),
        Command::Completions(args) => Ok(cli::completions::run(&args, Cli::command())),
    }
}
