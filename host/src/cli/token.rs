//! `kontor token create | list | revoke`: API tokens for scripts and people, made on the
//! command line because the API itself only answers to a token. A token is printed once;
//! only its SHA-256 is stored.

use std::process::ExitCode;

use clap::Subcommand;
use kontor::access::Permission;
use kontor::config::Config;
use kontor::store::tokens::NewToken;

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
        /// How long the token is valid (`90d`, `12h`); default: until revoked.
        #[arg(long, value_name = "DURATION")]
        expires: Option<String>,
        /// Narrow the token to these permissions of its role (repeat the flag), such as
        /// `events:write` for a CI job that only delivers events.
        #[arg(long = "scope", value_name = "PERMISSION")]
        scopes: Vec<String>,
    },
    /// List the tokens: id, role, narrowing, expiry, revocation and last use (never the
    /// tokens themselves).
    List,
    /// Revoke a token by its id (from `token list`); it fails with 401 from then on.
    Revoke { id: String },
}

pub fn run(config: &Config, command: TokenCommand) -> anyhow::Result<ExitCode> {
    super::runtime()?.block_on(async {
        let store = super::open_store(config).await?;
        let now = chrono::Utc::now();
        match command {
            TokenCommand::Create {
                role,
                description,
                expires,
                scopes,
            } => {
                let expires_at = match &expires {
                    None => None,
                    Some(text) => {
                        let length = kontor_time::parse_positive_duration(text)
                            .map_err(|e| anyhow::anyhow!("--expires: {e}"))?;
                        Some(now + chrono::Duration::from_std(length)?)
                    }
                };
                for scope in &scopes {
                    let permission = Permission::parse(scope).ok_or_else(|| {
                        anyhow::anyhow!(
                            "--scope `{scope}` is not a permission (see README, \"Access control\")"
                        )
                    })?;
                    let role = kontor::access::Role::parse(&role).expect("clap checked it");
                    if !kontor::access::allows(role, permission) {
                        anyhow::bail!("--scope `{scope}`: the {role} role does not have it");
                    }
                }
                let (token, hash) = kontor::api::new_token();
                let id = uuid::Uuid::now_v7().to_string();
                store
                    .tokens()
                    .create(
                        &id,
                        &hash,
                        &NewToken {
                            role: &role,
                            description: description.as_deref(),
                            expires_at,
                            scopes: (!scopes.is_empty()).then_some(scopes.as_slice()),
                        },
                        now,
                    )
                    .await?;
                println!("{token}");
                eprintln!("created {role} token {id}; it is shown only once");
            }
            TokenCommand::List => {
                let time = |t: Option<chrono::DateTime<chrono::Utc>>| {
                    t.map(|t| t.format("%Y-%m-%d %H:%M").to_string())
                        .unwrap_or_else(|| "-".into())
                };
                println!("id\trole\tscopes\texpires\trevoked\tlast used\tdescription");
                for token in store.tokens().list().await? {
                    println!(
                        "{}\t{}\t{}\t{}\t{}\t{}\t{}",
                        token.id,
                        token.role,
                        token
                            .scopes
                            .map(|s| s.join(","))
                            .unwrap_or_else(|| "all".into()),
                        time(token.expires_at),
                        time(token.revoked_at),
                        time(token.last_used_at),
                        token.description.unwrap_or_default()
                    );
                }
            }
            TokenCommand::Revoke { id } => {
                if !store.tokens().revoke(&id, now).await? {
                    anyhow::bail!("there is no token `{id}` that is not revoked already");
                }
                eprintln!("revoked token {id}");
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}
