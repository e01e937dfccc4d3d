//! `kontor leads import FILE`: a file of leads (CSV or JSON lines, see
//! [`kontor::crm::lead_file`]) into the store, each as `POST /api/v1/leads` would take
//! it — idempotent on the external id, its `lead.created` runs started in the same
//! transaction (a running server picks them up within its poll interval). Every row is
//! checked first: one bad row and nothing is imported.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Subcommand;
use indicatif::{ProgressBar, ProgressStyle};
use kontor::config::Config;
use kontor::store::audit::Actor;
use kontor::store::leads::Intake;
use sha2::{Digest, Sha256};

#[derive(Subcommand)]
pub enum LeadsCommand {
    /// Import leads from a CSV (header row; `,` or `;`) or JSON-lines file (`.jsonl`):
    /// every row is checked first, with its line and field named; one bad row and
    /// nothing is imported.
    Import { file: PathBuf },
}

pub fn run(config: &Config, command: LeadsCommand) -> anyhow::Result<ExitCode> {
    let LeadsCommand::Import { file } = command;
    let rows = super::simulate::read_rows(&file)?;
    let catalog = kontor::workflow::Catalog::load(&config.workflows_dir, None);
    super::runtime()?.block_on(async {
        let store = super::open_store(config).await?;
        let engine = kontor::engine::Engine::new(
            store.clone(),
            Arc::new(kontor::clock::SystemClock),
            catalog,
            Default::default(),
            Default::default(),
        );
        let bar = ProgressBar::new(rows.len() as u64);
        if let Ok(style) = ProgressStyle::with_template("{prefix:>9} [{bar:30}] {pos}/{len} leads {wide_msg}") {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_prefix("importing");
        let actor = Actor::named(format!("import:{}", file.display()));
        let (mut created, mut known, mut conflicts) = (0usize, 0usize, Vec::new());
        for row in rows {
            let id = uuid::Uuid::now_v7().to_string();
            let runs = engine
                .triggered_runs("lead.created", &row.lead.to_json(&id))
                .map_err(|e| anyhow::anyhow!("{}:{}: {e}", file.display(), row.line))?;
            let hash = hex::encode(Sha256::digest(serde_json::to_vec(&row.lead)?));
            let now = chrono::Utc::now();
            match store.leads().intake(&id, &row.lead, &hash, &runs, &actor, now).await? {
                Intake::Created(_) => created += 1,
                Intake::Again(_) => known += 1,
                Intake::Conflict(lead) => conflicts.push((row.line, lead.external_id, lead.id)),
            }
            bar.inc(1);
        }
        bar.finish_and_clear();
        eprintln!("imported {created} new lead(s); {known} known already with the same fields");
        for (line, external, id) in &conflicts {
            eprintln!(
                "{}:{line}: error: external_id: `{external}` was delivered before with other fields (lead {id}); not changed",
                file.display()
            );
        }
        Ok(if conflicts.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
    })
}
