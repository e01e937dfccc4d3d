//! Leads on SQLite go through the group-commit writer: leads arriving together (a form
//! burst, an import) and the assignments of `route` steps share commits with each other
//! and with the engine's writes.

use super::SqliteStore;
use super::group_commit::GroupWrite;
use crate::store::StoreError;
use crate::store::leads::{Intake, NewIntake, OwnedRoute};

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

pub(in crate::store) async fn route(
    db: &SqliteStore,
    route: OwnedRoute,
) -> Result<serde_json::Value, StoreError> {
    GroupWrite::submit(&db.group, |reply| GroupWrite::Route {
        route: Box::new(route),
        reply,
    })
    .await
}
