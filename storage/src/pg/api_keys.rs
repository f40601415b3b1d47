//! API keys, stored as hashes. The plaintext exists only in the answer to
//! the call that created the key.

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use crate::keys;
use crate::Result;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct LiveKey {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub tenant_slug: String,
    pub key_hash: Vec<u8>,
    pub permissions: Vec<String>,
    pub rate_limit_per_min: Option<i32>,
    pub expires_at: Option<DateTime<Utc>>,
}

/// What to create.
#[derive(Debug, Clone)]
pub struct NewKey<'a> {
    pub tenant_id: Uuid,
    pub name: &'a str,
    pub permissions: &'a [String],
    pub rate_limit_per_min: Option<u32>,
    pub expires_at: Option<DateTime<Utc>>,
}

/// Stores `plaintext` (hashed) as a key; idempotent for the same plaintext.
pub async fn insert(pool: &PgPool, new: &NewKey<'_>, plaintext: &str) -> Result<Uuid> {
    let id = Uuid::new_v4();
    let row: (Uuid,) = sqlx::query_as(
        "INSERT INTO api_keys (id, tenant_id, name, key_hash, key_preview, permissions, rate_limit_per_min, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
         ON CONFLICT (key_hash) DO UPDATE SET revoked_at = NULL
         RETURNING id",
    )
    .bind(id)
    .bind(new.tenant_id)
    .bind(new.name)
    .bind(keys::hash(plaintext).to_vec())
    .bind(keys::preview(plaintext))
    .bind(new.permissions)
    .bind(new.rate_limit_per_min.map(|v| v as i32))
    .bind(new.expires_at)
    .fetch_one(pool)
    .await?;
    Ok(row.0)
}

/// Creates a fresh random key; returns its id and the plaintext.
pub async fn create(pool: &PgPool, new: &NewKey<'_>) -> Result<(Uuid, String)> {
    let plaintext = keys::generate();
    let id = insert(pool, new, &plaintext).await?;
    Ok((id, plaintext))
}

pub async fn revoke(pool: &PgPool, tenant_id: Uuid, id: Uuid) -> Result<bool> {
    let r = sqlx::query(
        "UPDATE api_keys SET revoked_at = now(), prev_key_hash = NULL, prev_valid_until = NULL WHERE id = $1 AND tenant_id = $2 AND revoked_at IS NULL",
    )
    .bind(id)
    .bind(tenant_id)
    .execute(pool)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// Every key that is neither revoked nor expired, and each rotated key's
/// previous hash while its grace period lasts (expiring at its end).
pub async fn live(pool: &PgPool) -> Result<Vec<LiveKey>> {
    Ok(sqlx::query_as::<_, LiveKey>(
        "SELECT k.id, k.tenant_id, t.slug AS tenant_slug, k.key_hash, k.permissions, k.rate_limit_per_min, k.expires_at
         FROM api_keys k JOIN tenants t ON t.id = k.tenant_id
         WHERE k.revoked_at IS NULL AND (k.expires_at IS NULL OR k.expires_at > now())
         UNION ALL
         SELECT k.id, k.tenant_id, t.slug AS tenant_slug, k.prev_key_hash AS key_hash, k.permissions, k.rate_limit_per_min,
                LEAST(k.expires_at, k.prev_valid_until) AS expires_at
         FROM api_keys k JOIN tenants t ON t.id = k.tenant_id
         WHERE k.revoked_at IS NULL AND k.prev_key_hash IS NOT NULL AND k.prev_valid_until > now()
           AND (k.expires_at IS NULL OR k.expires_at > now())",
    )
    .fetch_all(pool)
    .await?)
}

pub async fn touch(pool: &PgPool, ids: &[Uuid]) -> Result<()> {
    sqlx::query("UPDATE api_keys SET last_used_at = now() WHERE id = ANY($1)")
        .bind(ids)
        .execute(pool)
        .await?;
    Ok(())
}
