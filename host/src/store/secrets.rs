//! Secrets as stored: sealed values under their names, with the fingerprint of the master
//! key that sealed them. Sealing and opening is the `secrets` module's job; the store never
//! sees a plaintext. Setting and deleting one is audited (by name) in the same transaction.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::Row;

use super::BeginWrite;
use super::audit::{Actor, Change, append};
use super::transaction::Tx;
use super::{Store, StoreError, from_millis, millis};

/// Sealed secret values. Made by [`Store::secrets`].
#[derive(Clone, Copy)]
pub struct Secrets<'a> {
    pub(super) store: &'a Store,
}

/// A sealed value as stored.
#[derive(Debug, Clone)]
pub struct Sealed {
    /// Fingerprint of the master key that sealed it.
    pub key_id: String,
    pub nonce: Vec<u8>,
    pub ciphertext: Vec<u8>,
}

/// A stored secret as listed: never its value.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SecretInfo {
    pub name: String,
    /// Fingerprint of the master key that sealed it.
    pub key_id: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Secrets<'_> {
    /// Stores a sealed secret (insert or replace), audited as set by `actor`.
    pub async fn put(
        self,
        name: &str,
        sealed: &Sealed,
        actor: &Actor,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let change = Change::new(actor, "secret.put", name)
            .with(serde_json::json!({"key_id": sealed.key_id}));
        on_writer!(self.store, |pool| {
            let mut tx = pool.begin_write().await?;
            sqlx::query(
                "INSERT INTO secrets (name, key_id, nonce, ciphertext, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $5)
                 ON CONFLICT (name) DO UPDATE SET key_id = excluded.key_id, nonce = excluded.nonce,
                                                  ciphertext = excluded.ciphertext, updated_at = excluded.updated_at",
            )
            .bind(name)
            .bind(&sealed.key_id)
            .bind(&sealed.nonce)
            .bind(&sealed.ciphertext)
            .bind(millis(now))
            .execute(&mut *tx)
            .await?;
            append(Tx::from(&mut *tx), &change, now).await?;
            tx.commit().await?;
            Ok(())
        })
    }

    /// Stores a sealed secret unless one of that name exists; returns whether it did
    /// (several processes creating the same secret at once: one wins, all read it).
    pub async fn put_if_absent(
        self,
        name: &str,
        sealed: &Sealed,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        on_writer!(self.store, |pool| {
            Ok(sqlx::query(
            "INSERT INTO secrets (name, key_id, nonce, ciphertext, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $5)
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(&sealed.key_id)
        .bind(&sealed.nonce)
        .bind(&sealed.ciphertext)
        .bind(millis(now))
        .execute(pool)
        .await?
        .rows_affected()
            == 1)
        })
    }

    /// The sealed value of a secret, if it exists.
    pub async fn get(self, name: &str) -> Result<Option<Sealed>, StoreError> {
        on_reader!(self.store, |pool| {
            let row = sqlx::query("SELECT key_id, nonce, ciphertext FROM secrets WHERE name = $1")
                .bind(name)
                .fetch_optional(pool)
                .await?;
            Ok(row.map(|r| Sealed {
                key_id: r.get("key_id"),
                nonce: r.get("nonce"),
                ciphertext: r.get("ciphertext"),
            }))
        })
    }

    /// Names and times of all secrets (never their values).
    pub async fn list(self) -> Result<Vec<SecretInfo>, StoreError> {
        on_reader!(self.store, |pool| {
            let rows = sqlx::query(
                "SELECT name, key_id, created_at, updated_at FROM secrets ORDER BY name",
            )
            .fetch_all(pool)
            .await?;
            Ok(rows
                .iter()
                .map(|r| SecretInfo {
                    name: r.get("name"),
                    key_id: r.get("key_id"),
                    created_at: from_millis(r.get("created_at")),
                    updated_at: from_millis(r.get("updated_at")),
                })
                .collect())
        })
    }

    /// Deletes a secret, audited as done by `actor`; returns whether it existed.
    pub async fn delete(
        self,
        name: &str,
        actor: &Actor,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let change = Change::new(actor, "secret.delete", name);
        on_writer!(self.store, |pool| {
            let mut tx = pool.begin_write().await?;
            let deleted = sqlx::query("DELETE FROM secrets WHERE name = $1")
                .bind(name)
                .execute(&mut *tx)
                .await?
                .rows_affected()
                == 1;
            if deleted {
                append(Tx::from(&mut *tx), &change, now).await?;
                tx.commit().await?;
            }
            Ok(deleted)
        })
    }

    /// Re-seals every secret in one transaction: `reseal` gets each name and sealed value
    /// and returns the new sealed value. Nothing changes if any secret fails.
    pub async fn reseal<E>(
        self,
        mut reseal: impl FnMut(&str, &Sealed) -> Result<Sealed, E>,
        now: DateTime<Utc>,
    ) -> Result<Result<usize, E>, StoreError> {
        // PostgreSQL locks the rows against a concurrent rotation; SQLite's single writer
        // serializes it anyway (and has no FOR UPDATE).
        let select = match self.store.backend {
            super::Backend::Sqlite(_) => "SELECT name, key_id, nonce, ciphertext FROM secrets",
            super::Backend::Postgres(_) => {
                "SELECT name, key_id, nonce, ciphertext FROM secrets FOR UPDATE"
            }
        };
        on_writer!(self.store, |pool| {
            let mut tx = pool.begin_write().await?;
            let rows = sqlx::query(select).fetch_all(&mut *tx).await?;
            for r in &rows {
                let name: String = r.get("name");
                let sealed = Sealed {
                    key_id: r.get("key_id"),
                    nonce: r.get("nonce"),
                    ciphertext: r.get("ciphertext"),
                };
                let new = match reseal(&name, &sealed) {
                    Ok(new) => new,
                    Err(e) => return Ok(Err(e)),
                };
                sqlx::query("UPDATE secrets SET key_id = $1, nonce = $2, ciphertext = $3, updated_at = $4 WHERE name = $5")
                    .bind(&new.key_id)
                    .bind(&new.nonce)
                    .bind(&new.ciphertext)
                    .bind(millis(now))
                    .bind(&name)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            Ok(Ok(rows.len()))
        })
    }
}
