//! Databases registered for automatic DDL tracking. Their connection URLs
//! are stored encrypted; see [`crate::secrets`].

use sqlx::PgPool;
use uuid::Uuid;

use crate::{Result, StorageError};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TrackedDatabase {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub name: String,
    pub url_ciphertext: Vec<u8>,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

pub async fn insert(
    pool: &PgPool,
    tenant_id: Uuid,
    name: &str,
    url_ciphertext: &[u8],
) -> Result<TrackedDatabase> {
    let res = sqlx::query_as::<_, TrackedDatabase>(
        "INSERT INTO tracked_databases (id, tenant_id, name, url_ciphertext) VALUES ($1, $2, $3, $4)
         RETURNING id, tenant_id, name, url_ciphertext, created_at",
    )
    .bind(Uuid::new_v4())
    .bind(tenant_id)
    .bind(name)
    .bind(url_ciphertext)
    .fetch_one(pool)
    .await;
    match res {
        Ok(d) => Ok(d),
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Err(StorageError::Invalid(
            format!("a database named {name:?} is already tracked"),
        )),
        Err(e) => Err(e.into()),
    }
}

pub async fn list(pool: &PgPool, tenant_id: Option<Uuid>) -> Result<Vec<TrackedDatabase>> {
    Ok(sqlx::query_as::<_, TrackedDatabase>(
        "SELECT id, tenant_id, name, url_ciphertext, created_at FROM tracked_databases
         WHERE $1::uuid IS NULL OR tenant_id = $1 ORDER BY created_at",
    )
    .bind(tenant_id)
    .fetch_all(pool)
    .await?)
}

pub async fn get(pool: &PgPool, tenant_id: Uuid, id: Uuid) -> Result<Option<TrackedDatabase>> {
    Ok(sqlx::query_as::<_, TrackedDatabase>(
        "SELECT id, tenant_id, name, url_ciphertext, created_at FROM tracked_databases
         WHERE tenant_id = $1 AND id = $2",
    )
    .bind(tenant_id)
    .bind(id)
    .fetch_optional(pool)
    .await?)
}

pub async fn delete(pool: &PgPool, tenant_id: Uuid, id: Uuid) -> Result<bool> {
    let r = sqlx::query("DELETE FROM tracked_databases WHERE tenant_id = $1 AND id = $2")
        .bind(tenant_id)
        .bind(id)
        .execute(pool)
        .await?;
    Ok(r.rows_affected() == 1)
}
