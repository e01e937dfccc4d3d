//! The `kontor` command line.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use kontor::config::Config;
use kontor::workflow::Catalog;

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
    Serve,
    /// Check workflow files without running them; prints `file:line:col: error: ...`
    /// for every problem and exits non-zero if there is any.
    Check {
        /// Workflow folders or files (default: `workflows_dir` from the config).
        paths: Vec<PathBuf>,
    },
    /// Measure performance on this machine (temp SQLite file or a scratch PostgreSQL
    /// database; see README for figures).
    Bench {
        #[command(subcommand)]
        command: BenchCommand,
    },
    /// Write, build, try and inspect WebAssembly step plugins.
    Plugin {
        #[command(subcommand)]
        command: PluginCommand,
    },
    /// Email: preview templates, check channels, rotate the unsubscribe-link key.
    Email {
        #[command(subcommand)]
        command: EmailCommand,
    },
    /// Manage secrets (encrypted at rest under the master key).
    Secret {
        #[command(subcommand)]
        command: SecretCommand,
    },
    /// Manage API tokens.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
}

#[derive(Subcommand)]
enum BenchCommand {
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

#[derive(Subcommand)]
enum PluginCommand {
    /// Scaffold a plugin crate in the plugins folder (and add it to its workspace).
    New {
        /// Lower-case name with dashes, e.g. `next-best-offer`.
        name: String,
        /// An ERP connector (a REST API with a token) instead of a step.
        #[arg(long)]
        connector: bool,
    },
    /// Compile plugin crates for wasm32-wasip2 into `plugins/NAME.wasm` and check them.
    Build {
        /// One plugin; default: every plugin of the plugins workspace.
        name: Option<String>,
    },
    /// Run a plugin once in the real sandbox with its configured grants; prints the
    /// output, its log, the duration, fuel used and peak memory. Secrets come from the
    /// store; key-value writes are shown, not kept.
    Test {
        /// A `.wasm` file, or the name of a plugin in the plugins folder.
        plugin: String,
        /// The step input: a JSON file, `-` for stdin, or inline JSON.
        #[arg(long)]
        input: String,
        /// The plugin configuration (default: `[plugin.NAME.config]` from kontor.toml).
        #[arg(long)]
        config: Option<String>,
        /// For an ERP connector: the function to call (e.g. `customer-by-email`);
        /// `--input` holds its arguments (`{"email": "..."}`).
        #[arg(long)]
        call: Option<String>,
    },
    /// Show a component's world, exports, imports and the grants it asks for.
    Inspect {
        /// A `.wasm` file, or the name of a plugin in the plugins folder.
        plugin: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum EmailCommand {
    /// Render a template: prints subject and text, writes the HTML part to a file.
    Preview {
        /// Template name (a folder in workflows/templates/).
        template: String,
        /// Locale; falls back to the template's fallback locale.
        #[arg(long, default_value = "de")]
        locale: String,
        /// JSON file with the data (default: the template's sample data).
        #[arg(long)]
        data: Option<PathBuf>,
        /// Where to write the HTML part (default: preview-TEMPLATE-LOCALE.html).
        #[arg(long)]
        html_out: Option<PathBuf>,
    },
    /// Open every configured channel (reading its secrets, parsing its DKIM key) and
    /// print it; fails naming what is wrong.
    Channels,
    /// Add a new key for signing unsubscribe links; links in mail already sent keep
    /// working (older keys still verify).
    RotateUnsubscribeKey,
}

#[derive(Subcommand)]
enum SecretCommand {
    /// Store a secret; the value is read from standard input (one trailing newline is
    /// removed), so it never appears in the shell history or the process list.
    Set { name: String },
    /// List secret names (never values).
    List,
    /// Delete a secret.
    Delete { name: String },
    /// Generate a new master key and re-encrypt every secret with it. With a key file the
    /// file is replaced; with KONTOR_MASTER_KEY the new key is printed for you to set.
    RotateMasterKey,
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Create a token and print it once; only its SHA-256 is stored.
    Create {
        /// The token's role.
        #[arg(long, default_value = "admin", value_parser = ["admin"])]
        role: String,
        /// A note on what the token is for.
        #[arg(long)]
        description: Option<String>,
    },
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
    let config = Config::load(cli.config.as_deref(), |k| std::env::var(k).ok())?;
    match cli.command {
        Command::Check { paths } => Ok(check(&config, paths)),
        Command::Serve => {
            init_tracing(&config);
            runtime()?.block_on(kontor::server::serve(config))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench {
            command:
                BenchCommand::Email {
                    messages,
                    dkim,
                    smtp,
                    concurrency,
                    pool_size,
                },
        } => {
            runtime()?.block_on(kontor::email::bench::run(kontor::email::bench::EmailBenchOptions {
                messages,
                dkim,
                smtp,
                concurrency,
                pool_size,
                workflows_dir: config.workflows_dir.clone(),
            }))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench {
            command:
                BenchCommand::Engine {
                    runs,
                    latency_runs,
                    workers,
                    postgres,
                    processes,
                },
        } => {
            let mut settings = kontor::server::engine_settings(&config);
            if let Some(w) = workers {
                settings.workers = w.max(1);
            }
            runtime()?.block_on(kontor::bench::engine(kontor::bench::EngineBenchOptions {
                runs,
                latency_runs,
                settings,
                postgres,
                processes: processes.max(1),
            }))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench {
            command:
                BenchCommand::EngineHelper {
                    database,
                    workers,
                    batch_size,
                },
        } => {
            let mut settings = kontor::server::engine_settings(&config);
            settings.workers = workers.max(1);
            settings.batch_size = batch_size;
            runtime()?.block_on(kontor::bench::engine_helper(&database, settings))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench {
            command:
                BenchCommand::Plugin {
                    plugin,
                    input,
                    calls,
                    tasks,
                },
        } => {
            let path = kontor::plugin_tool::component_path(&config, &plugin)?.1;
            let input = kontor::plugin_tool::read_json("input", &input)?;
            runtime()?.block_on(kontor::bench::plugin(kontor::bench::PluginBenchOptions {
                path,
                input,
                calls,
                tasks,
            }))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Secret { command } => runtime()?.block_on(secret(&config, command)),
        Command::Plugin { command } => match command {
            PluginCommand::New { name, connector } => {
                kontor::plugin_tool::new(&config, &name, connector)
            }
            PluginCommand::Build { name } => kontor::plugin_tool::build(&config, name.as_deref()),
            PluginCommand::Test {
                plugin,
                input,
                config: plugin_config,
                call,
            } => kontor::plugin_tool::test(
                &config,
                &plugin,
                &input,
                plugin_config.as_deref(),
                call.as_deref(),
            ),
            PluginCommand::Inspect { plugin, json } => {
                kontor::plugin_tool::inspect(&config, &plugin, json)
            }
        },
        Command::Email {
            command:
                EmailCommand::Preview {
                    template,
                    locale,
                    data,
                    html_out,
                },
        } => preview(&config, &template, &locale, data, html_out),
        Command::Email {
            command: EmailCommand::Channels,
        } => runtime()?.block_on(async {
            let (store, key) = store_and_key(&config).await?;
            let channels =
                kontor::email::dispatch::open_channels(&config.channel, &store, &key).await?;
            for channel in channels.values() {
                println!(
                    "{}\t{}\tfrom {}\tDKIM {}",
                    channel.name,
                    channel.transport_name(),
                    channel.from_address(),
                    channel.dkim_algorithm.as_deref().unwrap_or("off")
                );
            }
            Ok(ExitCode::SUCCESS)
        }),
        Command::Email {
            command: EmailCommand::RotateUnsubscribeKey,
        } => runtime()?.block_on(async {
            let (store, key) = store_and_key(&config).await?;
            let ring = kontor::email::unsubscribe::Keyring::rotate(&store, &key).await?;
            eprintln!(
                "new unsubscribe key {} signs from the next start of `kontor serve`; older links keep working",
                ring.current_id()
            );
            Ok(ExitCode::SUCCESS)
        }),
        Command::Token {
            command: TokenCommand::Create { role, description },
        } => runtime()?.block_on(async {
            let store = open_store(&config).await?;
            let (token, hash) = kontor::api::new_token();
            let id = uuid::Uuid::now_v7().to_string();
            store
                .tokens().insert(
                    &id,
                    &hash,
                    &role,
                    description.as_deref(),
                    chrono::Utc::now(),
                )
                .await?;
            println!("{token}");
            eprintln!("created {role} token {id}; it is shown only once");
            Ok(ExitCode::SUCCESS)
        }),
    }
}

async fn open_store(config: &Config) -> anyhow::Result<kontor::store::Store> {
    kontor::store::Store::open(&config.database_url)
        .await
        .with_context(|| {
            format!(
                "opening the store at {}",
                kontor::store::redact(&config.database_url)
            )
        })
}

/// The store and the secrets master key, for commands that read or write secrets.
async fn store_and_key(
    config: &Config,
) -> anyhow::Result<(kontor::store::Store, kontor::secrets::MasterKey)> {
    let store = open_store(config).await?;
    let key = config
        .master_key()
        .context("loading the secrets master key")?;
    Ok((store, key))
}

async fn secret(config: &Config, command: SecretCommand) -> anyhow::Result<ExitCode> {
    use kontor::secrets::{MasterKey, check_name};
    let (store, key) = store_and_key(config).await?;
    match command {
        SecretCommand::Set { name } => {
            check_name(&name)?;
            let mut value = zeroize::Zeroizing::new(String::new());
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut value)
                .context("reading the value from stdin")?;
            let trimmed = value
                .strip_suffix('\n')
                .map(|v| v.strip_suffix('\r').unwrap_or(v))
                .unwrap_or(&value);
            anyhow::ensure!(!trimmed.is_empty(), "the value on standard input is empty");
            store
                .secrets()
                .put(
                    &name,
                    &key.seal(&name, trimmed.as_bytes()),
                    chrono::Utc::now(),
                )
                .await?;
            eprintln!(
                "stored secret `{name}` (encrypted with master key {})",
                key.id()
            );
        }
        SecretCommand::List => {
            for s in store.secrets().list().await? {
                println!(
                    "{}\tkey {}\tupdated {}",
                    s.name,
                    s.key_id,
                    s.updated_at.to_rfc3339()
                );
            }
        }
        SecretCommand::Delete { name } => {
            anyhow::ensure!(
                store.secrets().delete(&name).await?,
                "there is no secret `{name}`"
            );
            eprintln!("deleted secret `{name}`");
        }
        SecretCommand::RotateMasterKey => {
            let new = MasterKey::generate();
            if config.master_key.is_some() {
                // Print first: if anything fails later, the old key still opens everything.
                println!("{}", &*new.to_hex());
                let n = kontor::secrets::reseal_all(&store, &key, &new).await?;
                eprintln!(
                    "re-encrypted {n} secret(s) with master key {}; set KONTOR_MASTER_KEY to the key printed above",
                    new.id()
                );
            } else {
                let file = &config.secrets.master_key_file;
                let pending = file.with_extension("key.new");
                kontor::secrets::write_key_file(&pending, &new)
                    .with_context(|| format!("writing {}", pending.display()))?;
                let n = kontor::secrets::reseal_all(&store, &key, &new).await?;
                std::fs::rename(&pending, file).with_context(|| {
                    format!(
                        "secrets now use the key in {}; move it to {}",
                        pending.display(),
                        file.display()
                    )
                })?;
                eprintln!(
                    "re-encrypted {n} secret(s); {} now holds master key {}",
                    file.display(),
                    new.id()
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `kontor email preview`.
fn preview(
    config: &Config,
    name: &str,
    locale: &str,
    data: Option<PathBuf>,
    html_out: Option<PathBuf>,
) -> anyhow::Result<ExitCode> {
    let templates = kontor::templates::TemplateSet::load(&config.workflows_dir.join("templates"));
    for d in &templates.diagnostics {
        eprintln!("{d}");
    }
    let template = templates.get(name).with_context(|| {
        let known: Vec<&str> = templates.names().collect();
        format!(
            "there is no email template `{name}` (templates: {})",
            known.join(", ")
        )
    })?;
    let data: serde_json::Value = match data {
        None => template.sample.clone(),
        Some(path) => serde_json::from_str(
            &std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))?,
        )
        .with_context(|| format!("{} is not valid JSON", path.display()))?,
    };
    let rendered = templates.render(name, locale, &data)?;
    let html_path = html_out
        .unwrap_or_else(|| PathBuf::from(format!("preview-{name}-{}.html", rendered.locale)));
    std::fs::write(&html_path, &rendered.html)
        .with_context(|| format!("writing {}", html_path.display()))?;
    println!("Locale:  {}", rendered.locale);
    println!("Subject: {}", rendered.subject);
    println!();
    println!("{}", rendered.text.trim_end());
    println!();
    println!("HTML part written to {}", html_path.display());
    Ok(ExitCode::SUCCESS)
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

fn init_tracing(config: &Config) {
    use tracing_subscriber::EnvFilter;
    let spec = std::env::var("RUST_LOG").unwrap_or_else(|_| config.log.level.clone());
    let mut filter = EnvFilter::new(&spec);
    // The plugin compiler logs every instruction at debug/trace: quiet unless asked for.
    for noisy in [
        "cranelift_codegen",
        "cranelift_frontend",
        "wasmtime_internal_cranelift",
        "regalloc2",
    ] {
        if !spec.contains(noisy)
            && let Ok(directive) = format!("{noisy}=warn").parse()
        {
            filter = filter.add_directive(directive);
        }
    }
    // Colours only on a terminal; a log file or journal gets plain text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    if config.log.format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// `kontor check`: every problem under the given folders, or only in the given files.
fn check(config: &Config, paths: Vec<PathBuf>) -> ExitCode {
    let paths = if paths.is_empty() {
        vec![config.workflows_dir.clone()]
    } else {
        paths
    };
    let mut problems = 0usize;
    let mut checked = 0usize;
    // Plugins are loaded for real (from the on-disk code cache when warm), so a step
    // naming a plugin that is missing or does not export `step` is a problem here.
    let plugins = match runtime().and_then(|rt| {
        rt.block_on(kontor::server::plugin_registry(
            config,
            None,
            Default::default(),
        ))
    }) {
        Ok(registry) => {
            let index = kontor::workflow::PluginIndex::from_registry(&registry);
            for (name, problem) in &index.plugins {
                if let Some(problem) = problem {
                    let file = index.dir.join(format!("{name}.wasm")).display().to_string();
                    let problem = problem.strip_prefix(&format!("{file} ")).unwrap_or(problem);
                    println!("{file}: error: {problem}");
                    problems += 1;
                }
            }
            Some(index)
        }
        Err(e) => {
            eprintln!("error: the plugin runtime cannot start: {e:#}");
            problems += 1;
            None
        }
    };
    let channels = config.channel_names();
    for path in &paths {
        let (root, only) = if path.is_dir() {
            (path.clone(), None)
        } else if path.is_file() {
            let parent = path.parent().map(PathBuf::from).unwrap_or_default();
            // A calendar's or template's catalog is the folder above `calendars/` or
            // `templates/`.
            let root = path
                .ancestors()
                .find(|a| {
                    a.file_name()
                        .is_some_and(|n| n == "calendars" || n == "templates")
                })
                .and_then(|a| a.parent())
                .map(PathBuf::from)
                .unwrap_or(parent);
            (root, Some(path.clone()))
        } else {
            eprintln!("{}: error: no such file or folder", path.display());
            problems += 1;
            continue;
        };
        let catalog = Catalog::load_with(&root, plugins.as_ref(), Some(&channels));
        checked += match &only {
            Some(_) => 1,
            None => catalog.workflows.len(),
        };
        for diagnostic in catalog.all_diagnostics() {
            if only
                .as_ref()
                .is_some_and(|f| !same_file(f, &diagnostic.file))
            {
                continue;
            }
            println!("{diagnostic}");
            problems += 1;
        }
    }
    if problems > 0 {
        eprintln!("{problems} problem(s) found");
        ExitCode::FAILURE
    } else {
        eprintln!("ok: {checked} workflow file(s) checked, no problems");
        ExitCode::SUCCESS
    }
}

fn same_file(a: &std::path::Path, b: &std::path::Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}
