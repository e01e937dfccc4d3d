//! `kontor serve`: the HTTP API, the engine's workers and the cron triggers in one
//! process, until SIGINT or SIGTERM. The wiring itself lives in the library's
//! `kontor::server`; this file only applies the command line on top of the config.

use std::process::ExitCode;

use kontor::config::Config;

#[derive(clap::Args)]
pub struct ServeArgs {
    /// Address to listen on, e.g. `0.0.0.0:8080` (default: `listen` from the config or
    /// KONTOR_LISTEN). Links in emails follow it unless `public_url` is set.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
}

pub fn run(mut config: Config, args: ServeArgs) -> anyhow::Result<ExitCode> {
    if let Some(listen) = args.listen {
        config.set_listen(listen)?;
    }
    super::init_tracing(&config);
    super::runtime()?.block_on(kontor::server::serve(config))?;
    Ok(ExitCode::SUCCESS)
}
