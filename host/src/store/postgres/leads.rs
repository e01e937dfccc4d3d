//! A delivered lead on PostgreSQL: one transaction of its own (concurrent deliveries of one
//! external id are serialized by an advisory lock inside).

use super::PgStore;
use crate::store::StoreError;
use crate::store::leads::{Intake, NewIntake, intake_in};
use crate::store::transaction::Tx;

pub(in crate::store) async fn intake(db: &PgStore, new: &NewIntake) -> Result<Intake, StoreError> {
    let mut tx = db.pool.begin().await?;
    let intake = intake_in(&mut Tx::from(&mut *tx), new).await?;
    tx.commit().await?;
    Ok(intake)
}
