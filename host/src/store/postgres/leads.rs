//! Leads on PostgreSQL: a delivered lead and an assignment each a transaction of its own
//! (advisory locks inside serialize deliveries of one external id and the assignments of
//! one team across processes).

use super::PgStore;
use crate::store::StoreError;
use crate::store::leads::{Intake, NewIntake, RouteRequest, intake_in, route_keyed};
use crate::store::transaction::Tx;

pub(in crate::store) async fn intake(
    db: &PgStore,
    mut new: NewIntake,
) -> Result<Intake, StoreError> {
    new.versions_stored = new
        .runs
        .iter()
        .map(|r| db.version_stored(&r.version))
        .collect();
    let mut tx = db.pool.begin().await?;
    let intake = intake_in(&mut Tx::from(&mut *tx), &new).await?;
    tx.commit().await?;
    if matches!(intake, Intake::Created(_)) {
        db.versions_stored(new.runs.iter().map(|r| &r.version));
    }
    Ok(intake)
}

pub(in crate::store) async fn route(
    db: &PgStore,
    request: &RouteRequest<'_>,
) -> Result<serde_json::Value, StoreError> {
    let mut tx = db.pool.begin().await?;
    let result = route_keyed(&mut Tx::from(&mut *tx), request).await?;
    tx.commit().await?;
    Ok(result)
}
