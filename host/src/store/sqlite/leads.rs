//! A delivered lead on SQLite goes through the group-commit writer: leads arriving together
//! (a form burst, an import) share commits with each other and with the engine's writes.

use super::SqliteStore;
use super::group_commit::GroupWrite;
use crate::store::StoreError;
use crate::store::leads::{Intake, NewIntake};

pub(in crate::store) async fn intake(
    db: &SqliteStore,
    new: NewIntake,
) -> Result<Intake, StoreError> {
    GroupWrite::submit(&db.group, |reply| GroupWrite::Lead {
        intake: Box::new(new),
        reply,
    })
    .await
}
