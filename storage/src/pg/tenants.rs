//! Tenants: every row of every other table belongs to one.

use sqlx::PgPool;
use uuid::Uuid;

use crate::Result;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Tenant {
    pub id: Uuid,
    pub slug: String,
    pub name: String,
}

/// Returns the tenant with this slug, creating it when missing.
pub async fn ensure(pool: &PgPool, slug: &str, name: &str) -> Result<Tenant> {
    sqlx::query(
        "INSERT INTO tenants (id, slug, name) VALUES ($1, $2, $3) ON CONFLICT (slug) DO NOTHING",
    )
    .bind(Uuid::new_v4())
    .bind(slug)
    .bind(name)
    .execute(pool)
    .await?;
    Ok(
        sqlx::query_as::<_, Tenant>("SELECT id, slug, name FROM tenants WHERE slug = $1")
            .bind(slug)
            .fetch_one(pool)
            .await?,
    )
}

/// The tenant with this id or slug, if any.
pub async fn find(pool: &PgPool, id_or_slug: &str) -> Result<Option<Tenant>> {
    let id = Uuid::parse_str(id_or_slug).ok();
    Ok(
        sqlx::query_as::<_, Tenant>(
            "SELECT id, slug, name FROM tenants WHERE id = $1 OR slug = $2",
        )
        .bind(id)
        .bind(id_or_slug)
        .fetch_optional(pool)
        .await?,
    )
}

pub async fn delete(pool: &PgPool, id: Uuid) -> Result<()> {
    sqlx::query("DELETE FROM tenants WHERE id = $1")
        .bind(id)
        .execute(pool)
        .await?;
    Ok(())
}
