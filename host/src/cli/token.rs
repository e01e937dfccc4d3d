//! `kontor token create`: API tokens for scripts and people, made on the command line
//! because the API itself only answers to a token. A token is printed once; only its
//! SHA-256 is stored.

use std::process::ExitCode;

use clap::Subcommand;
use kontor::config::Config;

#[derive(Subcommand)]
pub enum TokenCommand {
    /// Create a token and print it once; only its SHA-256 is stored.
    Create {
        /// The token's role: what it may do is the role's row of the permission table
        /// (README, "Access control").
        #[arg(long, default_value = "admin", value_parser = ["admin", "integrator", "marketing", "service-lead", "sales", "viewer"])]
        role: String,
        /// A note on what the token is for.
        #[arg(long)]
        description: Option<String>,
    },
}

pub fn run(config: &Config, command: TokenCommand) -> anyhow::Result<ExitCode> {
    let TokenCommand::Create { role, description } = command;
    super::runtime()?.block_on(async {
        let store = super::open_store(config).await?;
        let (token, hash) = kontor::api::new_token();
        let id = uuid::Uuid::now_v7().to_string();
        store
            .tokens()
            .insert(
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
    })
}
