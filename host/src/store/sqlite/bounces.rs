//! Bounce reports on SQLite go through the group-commit writer: a burst of reports from
//! a mail provider shares commits with everything else being written, and each report
//! with the suppression it calls for is one write.

use chrono::{DateTime, Utc};

use super::SqliteStore;
use super::group_commit::GroupWrite;
use crate::store::StoreError;
use crate::store::audit::Actor;
use crate::store::suppressions::{Bounce, Bounced};

pub(in crate::store) async fn bounce(
    db: &SqliteStore,
    bounce: &Bounce,
    actor: &Actor,
    now: DateTime<Utc>,
) -> Result<Bounced, StoreError> {
    GroupWrite::submit(&db.group, |reply| GroupWrite::Bounce {
        bounce: bounce.clone(),
        actor: actor.clone(),
        now,
        reply,
    })
    .await
}
