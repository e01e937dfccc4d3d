//! `kontor bench engine|fan-out|email|plugin`: performance figures measured on this machine.
//! The measuring lives in the library (`kontor::bench`, `kontor::bench::email`), beside
//! the code it measures; this file turns the command line into its options.

use std::process::ExitCode;

use clap::Subcommand;
use kontor::config::Config;

#[derive(Subcommand)]
pub enum BenchCommand {
    /// Render, DKIM-sign and deliver queued messages to an SMTP server on loopback:
    /// messages/s and peak RSS.
    Email {
        /// Messages to queue and send.
        #[arg(long, default_value_t = 20_000)]
        messages: usize,
        /// DKIM algorithm: ed25519, rsa (2048 bits) or off.
        #[arg(long, default_value = "ed25519")]
        dkim: String,
        /// Send to this SMTP server (HOST:PORT, no TLS) instead of the built-in sink.
        #[arg(long)]
        smtp: Option<String>,
        /// Messages rendered and sent at the same time.
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
        /// SMTP connections.
        #[arg(long, default_value_t = 8)]
        pool_size: u32,
    },
    /// No-op step throughput and the end-to-end latency of a 3-step workflow.
    Engine {
        /// Runs of the one-step workflow for the throughput figure.
        #[arg(long, default_value_t = 20_000)]
        runs: usize,
        /// Runs of the 3-step workflow for the latency figures.
        #[arg(long, default_value_t = 1_000)]
        latency_runs: usize,
        /// Engine workers (default: `engine.workers` from the config).
        #[arg(long)]
        workers: Option<usize>,
        /// Run on PostgreSQL: a scratch database is created next to the one this URL
        /// names (the user needs CREATEDB) and dropped afterwards. Default: a temp SQLite file.
        #[arg(long, value_name = "URL")]
        postgres: Option<String>,
        /// `kontor` processes working on the PostgreSQL database at once (this one and
        /// N-1 helpers it starts).
        #[arg(long, default_value_t = 1, requires = "postgres")]
        processes: usize,
        /// Also time a workflow of N steps that each commit on their own: plugin steps
        /// calling `lead-scoring` from the plugins folder, each result committed before
        /// the next call (as a durable-execution engine checkpoints every step).
        #[arg(long, value_name = "N")]
        durable_steps: Option<usize>,
    },
    /// How fast one `start` with `for_each` creates its children, at each size
    /// (children/s must not fall as the size grows), and the peak RSS.
    FanOut {
        /// Children per fan-out, comma-separated.
        #[arg(long, value_delimiter = ',', default_values_t = [1_000, 10_000, 100_000])]
        sizes: Vec<usize>,
        /// Engine workers (default: `engine.workers` from the config).
        #[arg(long)]
        workers: Option<usize>,
        /// Run on PostgreSQL: a scratch database is created next to the one this URL
        /// names (the user needs CREATEDB) and dropped afterwards. Default: a temp SQLite file.
        #[arg(long, value_name = "URL")]
        postgres: Option<String>,
    },
    /// (Internal) a helper process of `bench engine --processes`: works on DATABASE once
    /// told to go on stdin, until stdin closes.
    #[command(hide = true)]
    EngineHelper {
        database: String,
        #[arg(long)]
        workers: usize,
        #[arg(long)]
        batch_size: u32,
    },
    /// Instantiate + call overhead of a plugin (p50/p99), calls/s, and start-up with and
    /// without the on-disk code cache.
    Plugin {
        /// A `.wasm` file, or the name of a plugin in the plugins folder.
        #[arg(default_value = "lead-scoring")]
        plugin: String,
        /// The step input: a JSON file or inline JSON.
        #[arg(long, default_value = "{}")]
        input: String,
        /// Calls to measure.
        #[arg(long, default_value_t = 100_000)]
        calls: usize,
        /// Concurrent tasks for the throughput figure.
        #[arg(long, default_value_t = 4)]
        tasks: usize,
    },
}

pub fn run(config: &Config, command: BenchCommand) -> anyhow::Result<ExitCode> {
    let runtime = super::runtime()?;
    match command {
        BenchCommand::Email {
            messages,
            dkim,
            smtp,
            concurrency,
            pool_size,
        } => runtime.block_on(kontor::bench::email::run(
            kontor::bench::email::EmailBenchOptions {
                messages,
                dkim,
                smtp,
                concurrency,
                pool_size,
                workflows_dir: config.workflows_dir.clone(),
            },
        ))?,
        BenchCommand::Engine {
            runs,
            latency_runs,
            workers,
            postgres,
            processes,
            durable_steps,
        } => {
            let settings = engine_settings(config, workers);
            let durable_steps = match durable_steps {
                Some(steps) => {
                    let plugins = runtime.block_on(kontor::server::plugin_registry(
                        config,
                        None,
                        Default::default(),
                    ))?;
                    anyhow::ensure!(
                        plugins.get("lead-scoring").is_ok(),
                        "--durable-steps calls the lead-scoring plugin, which is not in {}",
                        config.plugins_dir.display()
                    );
                    Some((steps.max(1), plugins))
                }
                None => None,
            };
            runtime.block_on(kontor::bench::engine(kontor::bench::EngineBenchOptions {
                runs,
                latency_runs,
                settings,
                postgres,
                processes: processes.max(1),
                durable_steps,
            }))?;
        }
        BenchCommand::FanOut {
            sizes,
            workers,
            postgres,
        } => {
            let settings = engine_settings(config, workers);
            runtime.block_on(kontor::bench::fan_out::run(
                kontor::bench::fan_out::FanOutBenchOptions {
                    sizes,
                    settings,
                    postgres,
                },
            ))?;
        }
        BenchCommand::EngineHelper {
            database,
            workers,
            batch_size,
        } => {
            let mut settings = kontor::server::engine_settings(config);
            settings.workers = workers.max(1);
            settings.batch_size = batch_size;
            runtime.block_on(kontor::bench::engine_helper(&database, settings))?;
        }
        BenchCommand::Plugin {
            plugin,
            input,
            calls,
            tasks,
        } => {
            let path = super::plugin::component_path(config, &plugin)?.1;
            let input = super::plugin::read_json("input", &input)?;
            runtime.block_on(kontor::bench::plugin(kontor::bench::PluginBenchOptions {
                path,
                input,
                calls,
                tasks,
            }))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The configuration's engine settings, with `--workers` if given.
fn engine_settings(config: &Config, workers: Option<usize>) -> kontor::engine::EngineSettings {
    let mut settings = kontor::server::engine_settings(config);
    if let Some(w) = workers {
        settings.workers = w.max(1);
    }
    settings
}
