//! Users, their memberships in tenants, and refresh tokens.

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use crate::{Result, StorageError};

/// The six roles, strongest first.
pub const ROLES: [&str; 6] = ["owner", "admin", "dba", "developer", "operator", "viewer"];

#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize)]
pub struct User {
    pub id: Uuid,
    pub username: String,
    pub email: Option<String>,
    pub full_name: Option<String>,
    #[serde(skip)]
    pub password_hash: String,
    pub is_active: bool,
    pub created_at: DateTime<Utc>,
}

/// A user's place in one tenant.
#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct Membership {
    pub tenant_id: Uuid,
    pub slug: String,
    pub name: String,
    pub role: String,
}

pub struct NewUser<'a> {
    pub username: &'a str,
    pub email: Option<&'a str>,
    pub full_name: Option<&'a str>,
    pub password_hash: &'a str,
}

const USER_COLUMNS: &str = "id, username, email, full_name, password_hash, is_active, created_at";

/// Creates a user; `Invalid` when the username is taken.
pub async fn create(pool: &PgPool, new: &NewUser<'_>) -> Result<User> {
    let res = sqlx::query_as::<_, User>(sqlx::AssertSqlSafe(format!(
        "INSERT INTO users (id, username, email, full_name, password_hash) VALUES ($1, $2, $3, $4, $5)
         RETURNING {USER_COLUMNS}"
    )))
    .bind(Uuid::new_v4())
    .bind(new.username)
    .bind(new.email)
    .bind(new.full_name)
    .bind(new.password_hash)
    .fetch_one(pool)
    .await;
    match res {
        Ok(u) => Ok(u),
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
            Err(StorageError::Invalid("username is already taken".into()))
        }
        Err(e) => Err(e.into()),
    }
}

/// Creates the user or, when it exists, sets its password.
pub async fn upsert_password(pool: &PgPool, username: &str, password_hash: &str) -> Result<User> {
    Ok(sqlx::query_as::<_, User>(sqlx::AssertSqlSafe(format!(
        "INSERT INTO users (id, username, password_hash) VALUES ($1, $2, $3)
         ON CONFLICT (username) DO UPDATE SET password_hash = EXCLUDED.password_hash, updated_at = now()
         RETURNING {USER_COLUMNS}"
    )))
    .bind(Uuid::new_v4())
    .bind(username)
    .bind(password_hash)
    .fetch_one(pool)
    .await?)
}

pub async fn by_username(pool: &PgPool, username: &str) -> Result<Option<User>> {
    Ok(sqlx::query_as::<_, User>(sqlx::AssertSqlSafe(format!(
        "SELECT {USER_COLUMNS} FROM users WHERE username = $1"
    )))
    .bind(username)
    .fetch_optional(pool)
    .await?)
}

pub async fn by_id(pool: &PgPool, id: Uuid) -> Result<Option<User>> {
    Ok(sqlx::query_as::<_, User>(sqlx::AssertSqlSafe(format!(
        "SELECT {USER_COLUMNS} FROM users WHERE id = $1"
    )))
    .bind(id)
    .fetch_optional(pool)
    .await?)
}

/// Adds (or changes) a user's role in a tenant.
pub async fn set_membership(
    pool: &PgPool,
    tenant_id: Uuid,
    user_id: Uuid,
    role: &str,
) -> Result<()> {
    if !ROLES.contains(&role) {
        return Err(StorageError::Invalid(format!("unknown role {role:?}")));
    }
    sqlx::query(
        "INSERT INTO tenant_members (tenant_id, user_id, role) VALUES ($1, $2, $3)
         ON CONFLICT (tenant_id, user_id) DO UPDATE SET role = EXCLUDED.role",
    )
    .bind(tenant_id)
    .bind(user_id)
    .bind(role)
    .execute(pool)
    .await?;
    Ok(())
}

pub async fn memberships(pool: &PgPool, user_id: Uuid) -> Result<Vec<Membership>> {
    Ok(sqlx::query_as::<_, Membership>(
        "SELECT t.id AS tenant_id, t.slug, t.name, m.role FROM tenant_members m
         JOIN tenants t ON t.id = m.tenant_id WHERE m.user_id = $1 ORDER BY t.slug",
    )
    .bind(user_id)
    .fetch_all(pool)
    .await?)
}

/// Records a refresh token's id so it can be used once.
pub async fn store_refresh(
    pool: &PgPool,
    id: Uuid,
    user_id: Uuid,
    expires_at: DateTime<Utc>,
) -> Result<()> {
    sqlx::query("INSERT INTO refresh_tokens (id, user_id, expires_at) VALUES ($1, $2, $3)")
        .bind(id)
        .bind(user_id)
        .bind(expires_at)
        .execute(pool)
        .await?;
    Ok(())
}

/// Marks a refresh token used; false when unknown, used or expired.
pub async fn use_refresh(pool: &PgPool, id: Uuid, user_id: Uuid) -> Result<bool> {
    let r = sqlx::query(
        "UPDATE refresh_tokens SET used_at = now()
         WHERE id = $1 AND user_id = $2 AND used_at IS NULL AND expires_at > now()",
    )
    .bind(id)
    .bind(user_id)
    .execute(pool)
    .await?;
    Ok(r.rows_affected() == 1)
}
