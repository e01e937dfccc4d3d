//! `kontor user add | list | change | deactivate | activate`: the people tokens belong to,
//! on the command line (admins do the same through `/api/v1/users`). Every change is in
//! the audit log, made by `cli`.

use std::process::ExitCode;

use clap::{Args, Subcommand};
use kontor::config::Config;
use kontor::store::Store;
use kontor::store::audit::Actor;
use kontor::store::users::{User, UserFields};

const ROLES: [&str; 6] = [
    "admin",
    "integrator",
    "marketing",
    "service-lead",
    "sales",
    "viewer",
];

#[derive(Subcommand)]
pub enum UserCommand {
    /// Add a user; then give them a token with `kontor token create --user EMAIL`.
    Add {
        /// Their full name, e.g. "Jürgen Groß".
        #[arg(long)]
        name: String,
        /// Their email address (unique; stored in lower case).
        #[arg(long)]
        email: String,
        /// A role (repeat the flag for several).
        #[arg(long = "role", required = true, value_parser = ROLES)]
        roles: Vec<String>,
        /// The sales team they work in.
        #[arg(long)]
        team: Option<String>,
        /// The id territory rules and the CRM use for them (unique).
        #[arg(long)]
        rep: Option<String>,
    },
    /// List the users: id, email, name, roles, team, rep id, active.
    List,
    /// Change a user's name, email, roles, team or rep id.
    Change(ChangeArgs),
    /// Deactivate a user: their tokens are refused (401) from now on.
    Deactivate {
        /// Their email or id.
        user: String,
    },
    /// Activate a deactivated user again.
    Activate {
        /// Their email or id.
        user: String,
    },
}

#[derive(Args)]
pub struct ChangeArgs {
    /// Their email or id.
    user: String,
    /// Their new full name.
    #[arg(long)]
    name: Option<String>,
    /// Their new email address (unique; stored in lower case).
    #[arg(long)]
    email: Option<String>,
    /// The new roles, replacing the old (repeat the flag for several).
    #[arg(long = "role", value_parser = ROLES)]
    roles: Vec<String>,
    /// Their new sales team.
    #[arg(long, conflicts_with = "no_team")]
    team: Option<String>,
    /// Take them out of their team.
    #[arg(long)]
    no_team: bool,
    /// Their new rep id (unique).
    #[arg(long, conflicts_with = "no_rep")]
    rep: Option<String>,
    /// Remove their rep id.
    #[arg(long)]
    no_rep: bool,
}

pub fn run(config: &Config, command: UserCommand) -> anyhow::Result<ExitCode> {
    super::runtime()?.block_on(async {
        let store = super::open_store(config).await?;
        let actor = Actor::cli();
        let now = chrono::Utc::now();
        match command {
            UserCommand::Add {
                name,
                email,
                roles,
                team,
                rep,
            } => {
                let fields = kontor::users::check_new(UserFields {
                    name: Some(name),
                    email: Some(email),
                    roles: Some(roles),
                    team: Some(team),
                    rep: Some(rep),
                    active: None,
                })
                .map_err(flag_error)?;
                let id = uuid::Uuid::now_v7().to_string();
                let user = store.users().create(&id, &fields, &actor, now).await??;
                eprintln!(
                    "added {} ({}) as {}; give them a token with `kontor token create --user {}`",
                    user.email,
                    user.id,
                    user.roles.join(", "),
                    user.email
                );
            }
            UserCommand::List => {
                println!("id\temail\tname\troles\tteam\trep\tactive");
                for u in store.users().list().await? {
                    println!(
                        "{}\t{}\t{}\t{}\t{}\t{}\t{}",
                        u.id,
                        u.email,
                        u.name,
                        u.roles.join(","),
                        u.team.as_deref().unwrap_or("-"),
                        u.rep.as_deref().unwrap_or("-"),
                        if u.active { "yes" } else { "no" }
                    );
                }
            }
            UserCommand::Change(args) => {
                let clear_or = |clear: bool, value: Option<String>| {
                    if clear { Some(None) } else { value.map(Some) }
                };
                let fields = kontor::users::check_change(UserFields {
                    name: args.name,
                    email: args.email,
                    roles: (!args.roles.is_empty()).then_some(args.roles),
                    team: clear_or(args.no_team, args.team),
                    rep: clear_or(args.no_rep, args.rep),
                    active: None,
                })
                .map_err(flag_error)?;
                let user = change(&store, &args.user, &fields, &actor, now).await?;
                eprintln!("changed {}", user.email);
            }
            UserCommand::Deactivate { user } => {
                let fields = UserFields {
                    active: Some(false),
                    ..UserFields::default()
                };
                let user = change(&store, &user, &fields, &actor, now).await?;
                eprintln!("deactivated {}: their tokens are refused", user.email);
            }
            UserCommand::Activate { user } => {
                let fields = UserFields {
                    active: Some(true),
                    ..UserFields::default()
                };
                let user = change(&store, &user, &fields, &actor, now).await?;
                eprintln!("activated {}", user.email);
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// A field's problem named by its flag (`roles` is `--role`).
fn flag_error(e: kontor::users::FieldError) -> anyhow::Error {
    let flag = if e.field == "roles" { "role" } else { e.field };
    anyhow::anyhow!("--{flag}: {}", e.message)
}

async fn change(
    store: &Store,
    who: &str,
    fields: &UserFields,
    actor: &Actor,
    now: chrono::DateTime<chrono::Utc>,
) -> anyhow::Result<User> {
    let user = store
        .users()
        .find(who)
        .await?
        .ok_or_else(|| anyhow::anyhow!("there is no user `{who}` (see `kontor user list`)"))?;
    match store.users().update(&user.id, fields, actor, now).await? {
        Some(changed) => Ok(changed?),
        None => anyhow::bail!("there is no user `{who}`"),
    }
}
