//! `kontor simulate FILE.csv|FILE.jsonl [--territories DIR] [--compare OLD_DIR]`: what
//! lead routing would do with a file of leads — scored by the scoring plugin, routed by
//! the territory files, assigned by the teams' strategies from the members' current
//! counters — without writing anything: no lead, no counter, no mail. The what-if before
//! a territory change goes live.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use kontor::config::Config;
use kontor::crm::simulation::{Outcome, Scored, moved, per_team, simulate};
use kontor::crm::territory::Territories;

#[derive(Args)]
pub struct SimulateArgs {
    /// Leads: CSV with a header row (`,` or `;`), or JSON lines (`.jsonl`, `.ndjson`).
    pub file: PathBuf,
    /// The territory files to route by (default: `territories/` of the workflows folder).
    #[arg(long)]
    pub territories: Option<PathBuf>,
    /// Also route by these (the rules in force) and list the leads that would move to
    /// another team.
    #[arg(long)]
    pub compare: Option<PathBuf>,
    /// Which territory file's rules (default: the only one, or `sales`).
    #[arg(long)]
    pub set: Option<String>,
    /// The scoring plugin (default `lead-scoring`); `none` leaves leads unscored.
    #[arg(long, default_value = "lead-scoring")]
    pub scoring: String,
}

/// Whether `file` holds JSON lines (else CSV), by its extension.
pub fn is_json_lines(file: &std::path::Path) -> bool {
    matches!(
        file.extension().and_then(|e| e.to_str()),
        Some("jsonl" | "ndjson" | "json")
    )
}

/// Reads and checks every row of `file`; all bad rows are printed, and then it fails.
pub fn read_rows(file: &std::path::Path) -> anyhow::Result<Vec<kontor::crm::lead_file::Row>> {
    let input =
        std::fs::File::open(file).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    let mut rows = Vec::new();
    let mut bad = 0;
    for row in kontor::crm::lead_file::read(std::io::BufReader::new(input), is_json_lines(file)) {
        match row {
            Ok(row) => rows.push(row),
            Err(e) => {
                eprintln!(
                    "{}:{}: error: {}: {}",
                    file.display(),
                    e.line,
                    e.field,
                    e.message
                );
                bad += 1;
            }
        }
    }
    if bad > 0 {
        anyhow::bail!("{bad} bad row(s) in {}; nothing was done", file.display());
    }
    Ok(rows)
}

fn territories_of(
    catalog: &mut kontor::workflow::Catalog,
    dir: &std::path::Path,
) -> anyhow::Result<Territories> {
    let territories = catalog.load_territories(dir, kontor::workflow::DEFAULT_MAX_FILE_SIZE);
    if !territories.diagnostics.is_empty() {
        for d in &territories.diagnostics {
            eprintln!("{d}");
        }
        anyhow::bail!(
            "the territory files in {} have problems (`kontor check` shows them too)",
            dir.display()
        );
    }
    Ok(territories)
}

fn rule_set<'a>(
    t: &'a Territories,
    name: Option<&str>,
) -> anyhow::Result<&'a kontor::crm::territory::RuleSet> {
    let names: Vec<&str> = t.sets.keys().map(String::as_str).collect();
    let name = match name {
        Some(n) => n,
        None if names.len() == 1 => names[0],
        None if names.contains(&"sales") => "sales",
        None => anyhow::bail!(
            "several territory files ({}): pick one with --set",
            names.join(", ")
        ),
    };
    t.sets.get(name).map(|s| s.as_ref()).ok_or_else(|| {
        anyhow::anyhow!(
            "no territory file `{name}` (there are: {})",
            names.join(", ")
        )
    })
}

pub fn run(config: &Config, args: SimulateArgs) -> anyhow::Result<ExitCode> {
    let rows = read_rows(&args.file)?;
    let mut catalog = kontor::workflow::Catalog::load(&config.workflows_dir, None);
    let new_dir = args
        .territories
        .clone()
        .unwrap_or_else(|| config.workflows_dir.join("territories"));
    let new = territories_of(&mut catalog, &new_dir)?;
    let old = args
        .compare
        .as_ref()
        .map(|dir| territories_of(&mut catalog, dir))
        .transpose()?;
    let runtime = super::runtime()?;
    runtime.block_on(async {
        let scored = score(config, &args.scoring, rows).await?;
        let states = current_counters(config, &new).await?;
        let now = chrono::Utc::now();
        let outcomes = simulate(
            &scored,
            rule_set(&new, args.set.as_deref())?,
            &new,
            &states,
            now,
            &catalog.calendars,
        );
        print(&outcomes);
        if let Some(old) = &old {
            let before = simulate(
                &scored,
                rule_set(old, args.set.as_deref())?,
                old,
                &states,
                now,
                &catalog.calendars,
            );
            let moves = moved(&before, &outcomes);
            println!();
            println!(
                "{} of {} lead(s) would move to another team:",
                moves.len(),
                outcomes.len()
            );
            for (line, id, from, to) in moves {
                println!("  line {line}\t{id}\t{from} → {to}");
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// Scores every lead with `plugin` (none with `none`).
async fn score(
    config: &Config,
    plugin: &str,
    rows: Vec<kontor::crm::lead_file::Row>,
) -> anyhow::Result<Vec<Scored>> {
    if plugin == "none" {
        return Ok(rows
            .into_iter()
            .map(|r| Scored {
                line: r.line,
                lead: r.lead,
                score: None,
            })
            .collect());
    }
    let registry = kontor::server::plugin_registry(config, None, Default::default()).await?;
    let scoring = registry.get(plugin).map_err(|e| {
        anyhow::anyhow!("the scoring plugin `{plugin}` does not load: {e} (or pass --scoring none)")
    })?;
    let mut scored = Vec::with_capacity(rows.len());
    for row in rows {
        let invocation = kontor_plugins::Invocation {
            run_id: format!("simulate-{}", row.line),
            workflow: "simulate".into(),
            step: "score".into(),
            attempt: 1,
        };
        let input = row.lead.to_json(&row.lead.external_id);
        let report = scoring
            .call(&invocation, &input)
            .await
            .map_err(|f| anyhow::anyhow!("line {}: scoring failed: {}", row.line, f.error))?;
        scored.push(Scored {
            line: row.line,
            lead: row.lead,
            score: Some(report.output),
        });
    }
    Ok(scored)
}

/// The members' counters from the database when there is one, read only; none
/// otherwise (a SQLite file that does not exist is not made).
async fn current_counters(
    config: &Config,
    territories: &Territories,
) -> anyhow::Result<BTreeMap<String, Vec<kontor::crm::assignment::RepState>>> {
    if let Some(path) = config.database_url.strip_prefix("sqlite://") {
        let path = path.split('?').next().unwrap_or(path);
        if !std::path::Path::new(path).exists() {
            return Ok(BTreeMap::new());
        }
    }
    let store = kontor::store::Store::open_read_only(&config.database_url)
        .await
        .with_context(|| {
            format!(
                "opening the store at {} to read its counters",
                kontor::store::redact(&config.database_url)
            )
        })?;
    let mut states = BTreeMap::new();
    for team in territories.teams.keys() {
        states.insert(team.clone(), store.leads().reps(team).await?);
    }
    Ok(states)
}

fn print(outcomes: &[Outcome]) {
    println!("line\texternal_id\tstage\tscore\tteam\towner\twhy");
    for o in outcomes {
        let owner = match (&o.owner, o.overflow) {
            (Some(owner), _) => owner.clone(),
            (None, Some(reason)) => format!("(overflow: {})", reason.as_str()),
            (None, None) => "-".into(),
        };
        println!(
            "{}\t{}\t{}\t{}\t{}\t{}\t{}",
            o.line,
            o.external_id,
            o.stage.as_str(),
            o.score.map_or("-".into(), |s| s.to_string()),
            o.team,
            owner,
            o.why
        );
    }
    println!();
    println!("team\tleads\tper member");
    for (team, (n, members)) in per_team(outcomes) {
        let members: Vec<String> = members.iter().map(|(m, k)| format!("{m} {k}")).collect();
        println!("{team}\t{n}\t{}", members.join(", "));
    }
    let overflow: Vec<String> = outcomes
        .iter()
        .filter_map(|o| {
            o.overflow
                .map(|r| format!("line {} ({}, {})", o.line, o.team, r.as_str()))
        })
        .collect();
    if !overflow.is_empty() {
        println!();
        println!("overflow: {}", overflow.join("; "));
    }
}
