//! Append-only timelines of domain objects — a lead's history, a ticket's events: rows of
//! (owner id, time, actor, kind, JSON detail) in a table of their own, only ever added to,
//! read oldest first. One writer and one reader for every such table.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value as Json;

use super::rows::Cols;
use super::transaction::{Tx, on_tx};
use super::{Store, StoreError, from_millis, millis};

/// A timeline table and the column naming its owner.
#[derive(Debug, Clone, Copy)]
pub(super) struct Timeline {
    pub table: &'static str,
    pub owner: &'static str,
}

/// One entry of a timeline.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct TimelineEntry {
    pub at: DateTime<Utc>,
    pub actor: String,
    /// What happened: `created`, `assigned`, `status`, `reply`, … (each timeline lists
    /// its kinds).
    pub kind: String,
    #[schema(value_type = Object)]
    pub detail: Json,
}

impl Timeline {
    /// Appends `entries` of `owner` in one statement.
    pub async fn append(
        self,
        tx: &mut Tx<'_>,
        owner: &str,
        actor: &str,
        entries: &[(&str, Json)],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        if entries.is_empty() {
            return Ok(());
        }
        let values: Vec<String> = (0..entries.len())
            .map(|i| format!("($1, $2, $3, ${}, ${})", 4 + 2 * i, 5 + 2 * i))
            .collect();
        let sql = format!(
            "INSERT INTO {} ({}, at, actor, kind, detail) VALUES {}",
            self.table,
            self.owner,
            values.join(", ")
        );
        let details: Vec<String> = entries.iter().map(|(_, d)| d.to_string()).collect();
        on_tx!(tx, |conn| {
            let mut query = sqlx::query(&sql).bind(owner).bind(millis(now)).bind(actor);
            for ((kind, _), detail) in entries.iter().zip(&details) {
                query = query.bind(*kind).bind(detail);
            }
            query.execute(conn).await.map(|_| ())
        })?;
        Ok(())
    }

    /// Everything of `owner`, oldest first.
    pub async fn read(self, store: &Store, owner: &str) -> Result<Vec<TimelineEntry>, StoreError> {
        let sql = format!(
            "SELECT at, actor, kind, detail FROM {} WHERE {} = $1 ORDER BY id",
            self.table, self.owner
        );
        on_reader!(store, |pool| {
            let rows = sqlx::query(&sql).bind(owner).fetch_all(pool).await?;
            rows.iter()
                .map(|r| {
                    Ok(TimelineEntry {
                        at: from_millis(r.int("at")),
                        actor: r.text("actor"),
                        kind: r.text("kind"),
                        detail: serde_json::from_str(&r.text("detail"))?,
                    })
                })
                .collect()
        })
    }
}
