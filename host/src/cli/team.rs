//! `kontor team list | absent | present | deactivate | activate`: who takes leads now, and
//! a member's absence or active flag — the same change as
//! `PATCH /api/v1/teams/{team}/members/{member}`, audited as made by `cli`. Teams and
//! members are declared in `workflows/territories/*.yaml`.

use std::process::ExitCode;

use clap::Subcommand;
use kontor::config::Config;
use kontor::crm::assignment::RepState;
use kontor::store::audit::Actor;
use kontor::store::leads::MemberChange;

#[derive(Subcommand)]
pub enum TeamCommand {
    /// Every team of the territory files and its members: capacity, open leads, active,
    /// absence, and whether they take a lead now.
    List,
    /// Mark a member absent: they get no leads from `--from` (default: now) until
    /// `--until` (default: until `kontor team present`).
    Absent {
        team: String,
        /// The member's user id or rep id.
        member: String,
        /// RFC 3339 (`2026-12-21T08:00:00+01:00`) or a date (`2026-12-21`: its start in
        /// Berlin).
        #[arg(long)]
        from: Option<String>,
        /// Like `--from`: the first moment they are back.
        #[arg(long)]
        until: Option<String>,
    },
    /// End a member's absence.
    Present { team: String, member: String },
    /// The member takes no leads until activated again.
    Deactivate { team: String, member: String },
    /// The member takes leads again.
    Activate { team: String, member: String },
}

/// An RFC 3339 time, or a date meaning its start in Berlin.
fn when(flag: &str, text: &str) -> anyhow::Result<chrono::DateTime<chrono::Utc>> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text) {
        return Ok(t.to_utc());
    }
    let date = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d").map_err(|_| {
        anyhow::anyhow!("--{flag}: `{text}` is neither an RFC 3339 time nor a date (2026-12-21)")
    })?;
    Ok(kontor_time::resolve_local(
        chrono_tz::Europe::Berlin,
        date.and_time(chrono::NaiveTime::MIN),
    ))
}

pub fn run(config: &Config, command: TeamCommand) -> anyhow::Result<ExitCode> {
    let catalog = kontor::workflow::Catalog::load(&config.workflows_dir, None);
    let territories = catalog.territories.clone();
    super::runtime()?.block_on(async {
        let store = super::open_store(config).await?;
        let now = chrono::Utc::now();
        let (team, member, change) = match command {
            TeamCommand::List => {
                println!(
                    "team\tmember\tcapacity\topen\tactive\tabsent_from\tabsent_until\tavailable"
                );
                for team in territories.teams.values() {
                    let states = store.leads().reps(&team.name).await?;
                    for m in &team.members {
                        let s = states
                            .iter()
                            .find(|s| s.user == m.user)
                            .cloned()
                            .unwrap_or_else(|| RepState::new(&m.user));
                        let time = |t: Option<chrono::DateTime<chrono::Utc>>| {
                            t.map_or("-".to_string(), |t| t.to_rfc3339())
                        };
                        let available = s.active && !s.absent_at(now) && s.open < m.capacity;
                        println!(
                            "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
                            team.name,
                            m.user,
                            m.capacity,
                            s.open,
                            if s.active { "yes" } else { "no" },
                            time(s.absent_from),
                            time(s.absent_until),
                            if available { "yes" } else { "no" }
                        );
                    }
                }
                return Ok(ExitCode::SUCCESS);
            }
            TeamCommand::Absent {
                team,
                member,
                from,
                until,
            } => {
                let from = Some(match from {
                    Some(f) => when("from", &f)?,
                    None => now,
                });
                let until = until.map(|u| when("until", &u)).transpose()?;
                kontor::crm::assignment::check_absence(from, until)
                    .map_err(|m| anyhow::anyhow!("--until: {m}"))?;
                (
                    team,
                    member,
                    MemberChange {
                        active: None,
                        absent: Some((from, until)),
                    },
                )
            }
            TeamCommand::Present { team, member } => (
                team,
                member,
                MemberChange {
                    active: None,
                    absent: Some((None, None)),
                },
            ),
            TeamCommand::Deactivate { team, member } => (
                team,
                member,
                MemberChange {
                    active: Some(false),
                    absent: None,
                },
            ),
            TeamCommand::Activate { team, member } => (
                team,
                member,
                MemberChange {
                    active: Some(true),
                    absent: None,
                },
            ),
        };
        let (found, declared) = territories
            .member(&team, &member)
            .map_err(|m| anyhow::anyhow!("{m}"))?;
        let after = store
            .leads()
            .set_member(&found.name, &declared.user, &change, &Actor::cli(), now)
            .await?;
        let absence = match (after.absent_from, after.absent_until) {
            (None, None) => "present".to_string(),
            (from, until) => format!(
                "absent from {} until {}",
                from.map_or("now".into(), |t| t.to_rfc3339()),
                until.map_or("further notice".into(), |t| t.to_rfc3339())
            ),
        };
        eprintln!(
            "{} in {}: {}, {absence}",
            declared.user,
            found.name,
            if after.active { "active" } else { "inactive" }
        );
        Ok(ExitCode::SUCCESS)
    })
}
