//! `kontor token create | list | revoke`: API tokens for scripts and people, made on the
//! command line because the API itself only answers to a token. A token is printed once;
//! only its SHA-256 is stored.

use std::process::ExitCode;

use clap::Subcommand;
use kontor::access::Permission;
use kontor::config::Config;
use kontor::store::Actor;
use kontor::store::tokens::NewToken;

#[derive(Subcommand)]
pub enum TokenCommand {
    /// Create a token and print it once; only its SHA-256 is stored.
    Create {
        /// The person the token belongs to (their email or id, from `user list`): it
        /// works only while they are active and have its role.
        #[arg(long, value_name = "EMAIL")]
        user: Option<String>,
        /// The token's role: what it may do is the role's row of the permission table
        /// (README, "Access control"). Default: the user's role if they have one, else
        /// admin.
        #[arg(long, value_parser = ["admin", "integrator", "marketing", "service-lead", "sales", "viewer"])]
        role: Option<String>,
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
    /// List the tokens: id, user, role, narrowing, expiry, revocation and last use (never
    /// the tokens themselves).
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
                user,
                role,
                description,
                expires,
                scopes,
            } => {
                let user = match &user {
                    None => None,
                    Some(who) => Some(store.users().find(who).await?.ok_or_else(|| {
                        anyhow::anyhow!("--user: there is no user `{who}` (see `kontor user list`)")
                    })?),
                };
                let role = match (&user, role) {
                    (_, Some(role)) => role,
                    (None, None) => "admin".to_string(),
                    (Some(user), None) if user.roles.len() == 1 => user.roles[0].clone(),
                    (Some(user), None) => anyhow::bail!(
                        "{} has the roles {}: say which this token has with --role",
                        user.email,
                        user.roles.join(", ")
                    ),
                };
                if let Some(user) = &user {
                    anyhow::ensure!(user.active, "--user: {} is deactivated", user.email);
                    anyhow::ensure!(
                        user.roles.contains(&role),
                        "--role {role}: {} does not have that role (they have {})",
                        user.email,
                        user.roles.join(", ")
                    );
                }
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
                            user_id: user.as_ref().map(|u| u.id.as_str()),
                        },
                        &Actor::cli(),
                        now,
                    )
                    .await?;
                println!("{token}");
                match &user {
                    Some(user) => eprintln!(
                        "created {role} token {id} for {}; it is shown only once",
                        user.email
                    ),
                    None => eprintln!("created {role} token {id}; it is shown only once"),
                }
            }
            TokenCommand::List => {
                let time = |t: Option<chrono::DateTime<chrono::Utc>>| {
                    t.map(|t| t.format("%Y-%m-%d %H:%M").to_string())
                        .unwrap_or_else(|| "-".into())
                };
                let users: std::collections::HashMap<String, String> = store
                    .users()
                    .list()
                    .await?
                    .into_iter()
                    .map(|u| (u.id, u.email))
                    .collect();
                println!("id\tuser\trole\tscopes\texpires\trevoked\tlast used\tdescription");
                for token in store.tokens().list().await? {
                    let user = token.user_id.as_ref().map(|id| users.get(id).unwrap_or(id));
                    println!(
                        "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
                        token.id,
                        user.map(String::as_str).unwrap_or("-"),
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
                if !store.tokens().revoke(&id, &Actor::cli(), now).await? {
                    anyhow::bail!("there is no token `{id}` that is not revoked already");
                }
                eprintln!("revoked token {id}");
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}
