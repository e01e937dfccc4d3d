//! Scratch PostgreSQL databases: each test and benchmark run gets a database of its own
//! next to the one an admin URL names, and drops it afterwards.

use super::{StoreError, redact};

/// Creates a new, empty PostgreSQL database next to the one `admin_url` names and returns
/// its URL (tests and benchmarks: each gets a database of its own).
pub async fn scratch_postgres_database(
    admin_url: &str,
    prefix: &str,
) -> Result<String, StoreError> {
    use sqlx::Connection;
    let open_error = |reason: String| StoreError::Open {
        url: redact(admin_url),
        reason,
    };
    let mut conn = sqlx::PgConnection::connect(admin_url)
        .await
        .map_err(|e| open_error(e.to_string()))?;
    let name = format!("{prefix}_{}", uuid::Uuid::now_v7().simple());
    sqlx::query(&format!("CREATE DATABASE \"{name}\""))
        .execute(&mut conn)
        .await?;
    let (base, _) = admin_url
        .split_once('?')
        .map_or((admin_url, ""), |(b, q)| (b, q));
    let server = base
        .rsplit_once('/')
        .filter(|(server, _)| server.contains("://") && !server.ends_with('/'))
        .map_or(base, |(server, _)| server);
    let query = admin_url.split_once('?').map(|(_, q)| format!("?{q}"));
    Ok(format!("{server}/{name}{}", query.unwrap_or_default()))
}

/// Drops a database made by [`scratch_postgres_database`] (disconnecting its sessions).
pub async fn drop_scratch_postgres_database(admin_url: &str, url: &str) -> Result<(), StoreError> {
    use sqlx::Connection;
    let name = url
        .split('?')
        .next()
        .and_then(|base| base.rsplit('/').next())
        .unwrap_or_default();
    let mut conn = sqlx::PgConnection::connect(admin_url).await?;
    sqlx::query(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
        .execute(&mut conn)
        .await?;
    Ok(())
}
