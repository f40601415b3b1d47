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

/// Sets `last_active_at` of each (tenant, user) membership to now: one
/// statement for the whole batch.
pub async fn touch_members(pool: &PgPool, seen: &[(Uuid, Uuid)]) -> Result<()> {
    let (tenants, users): (Vec<Uuid>, Vec<Uuid>) = seen.iter().copied().unzip();
    sqlx::query(
        "UPDATE tenant_members m SET last_active_at = now()
         FROM unnest($1::uuid[], $2::uuid[]) AS s(tenant_id, user_id)
         WHERE m.tenant_id = s.tenant_id AND m.user_id = s.user_id",
    )
    .bind(&tenants)
    .bind(&users)
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

// ---- A tenant's users, as its admins manage them (`/api/v1/users`). ----

/// A user as one tenant sees them: `num` is the integer id the API shows.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TenantUser {
    pub num: i64,
    pub id: Uuid,
    pub username: String,
    pub email: Option<String>,
    pub full_name: Option<String>,
    pub is_active: bool,
    pub created_at: DateTime<Utc>,
    pub role: String,
    /// How many tenants the user belongs to (this one included).
    pub tenants: i64,
}

macro_rules! tenant_user_select {
    () => {
        "SELECT u.num, u.id, u.username, u.email, u.full_name, u.is_active, u.created_at, m.role, \
         (SELECT count(*) FROM tenant_members o WHERE o.user_id = u.id) AS tenants \
         FROM tenant_members m JOIN users u ON u.id = m.user_id WHERE m.tenant_id = $1"
    };
}

/// The tenant's users, in creation order.
pub async fn list_in_tenant(pool: &PgPool, tenant: Uuid) -> Result<Vec<TenantUser>> {
    Ok(
        sqlx::query_as::<_, TenantUser>(concat!(tenant_user_select!(), " ORDER BY u.num"))
            .bind(tenant)
            .fetch_all(pool)
            .await?,
    )
}

pub async fn get_in_tenant(pool: &PgPool, tenant: Uuid, num: i64) -> Result<Option<TenantUser>> {
    Ok(
        sqlx::query_as::<_, TenantUser>(concat!(tenant_user_select!(), " AND u.num = $2"))
            .bind(tenant)
            .bind(num)
            .fetch_optional(pool)
            .await?,
    )
}

/// Creates a user who belongs to `tenant` with `role`; `Invalid` when the
/// username is taken.
pub async fn create_in_tenant(
    pool: &PgPool,
    tenant: Uuid,
    new: &NewUser<'_>,
    role: &str,
    is_active: bool,
) -> Result<TenantUser> {
    if !ROLES.contains(&role) {
        return Err(StorageError::Invalid(format!("unknown role {role:?}")));
    }
    let mut tx = pool.begin().await?;
    let id = insert_member(&mut tx, tenant, new, role, is_active).await?;
    let u = sqlx::query_as::<_, TenantUser>(concat!(tenant_user_select!(), " AND u.id = $2"))
        .bind(tenant)
        .bind(id)
        .fetch_one(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(u)
}

/// Inserts a new user and its membership of `tenant` with `role` (already
/// checked) in the caller's transaction; `Invalid` when the username is
/// taken. Answers the user's id.
pub async fn insert_member(
    conn: &mut sqlx::PgConnection,
    tenant: Uuid,
    new: &NewUser<'_>,
    role: &str,
    is_active: bool,
) -> Result<Uuid> {
    let id = Uuid::new_v4();
    let res = sqlx::query(
        "INSERT INTO users (id, username, email, full_name, password_hash, is_active)
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(id)
    .bind(new.username)
    .bind(new.email)
    .bind(new.full_name)
    .bind(new.password_hash)
    .bind(is_active)
    .execute(&mut *conn)
    .await;
    match res {
        Ok(_) => {}
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
            return Err(StorageError::Invalid("username is already taken".into()))
        }
        Err(e) => return Err(e.into()),
    }
    sqlx::query("INSERT INTO tenant_members (tenant_id, user_id, role) VALUES ($1, $2, $3)")
        .bind(tenant)
        .bind(id)
        .bind(role)
        .execute(&mut *conn)
        .await?;
    Ok(id)
}

/// A partial update; `None` keeps the old value.
#[derive(Debug, Default)]
pub struct UserChanges {
    pub email: Option<Option<String>>,
    pub full_name: Option<Option<String>>,
    pub password_hash: Option<String>,
    pub is_active: Option<bool>,
    pub role: Option<String>,
}

impl UserChanges {
    /// Whether it touches the user itself (shared by all its tenants),
    /// not only its role here.
    pub fn touches_user(&self) -> bool {
        self.email.is_some()
            || self.full_name.is_some()
            || self.password_hash.is_some()
            || self.is_active.is_some()
    }
}

/// What an update or removal came to.
#[derive(Debug)]
pub enum Outcome {
    Done(Option<TenantUser>),
    NotFound,
    /// It would leave the tenant without an active owner or admin.
    LastAdmin,
    /// The user belongs to other tenants too: only their role and
    /// membership here may be changed.
    Shared,
}

fn is_admin_role(role: &str) -> bool {
    role == "owner" || role == "admin"
}

/// Locks the tenant's admin memberships and the target's row, and tells
/// whether the target is the tenant's only active owner/admin.
async fn lock_admins(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    tenant: Uuid,
    num: i64,
) -> Result<Option<(TenantUser, bool)>> {
    let admins: Vec<(Uuid, bool)> = sqlx::query_as(
        "SELECT u.id, u.is_active FROM tenant_members m JOIN users u ON u.id = m.user_id
         WHERE m.tenant_id = $1 AND m.role IN ('owner', 'admin') FOR UPDATE OF m",
    )
    .bind(tenant)
    .fetch_all(&mut **tx)
    .await?;
    let Some(target) = sqlx::query_as::<_, TenantUser>(concat!(
        tenant_user_select!(),
        " AND u.num = $2 FOR UPDATE OF m"
    ))
    .bind(tenant)
    .bind(num)
    .fetch_optional(&mut **tx)
    .await?
    else {
        return Ok(None);
    };
    let others = admins
        .iter()
        .filter(|(id, active)| *active && *id != target.id)
        .count();
    let only = is_admin_role(&target.role) && target.is_active && others == 0;
    Ok(Some((target, only)))
}

/// Applies `c` to the tenant's user `num`.
pub async fn update_in_tenant(
    pool: &PgPool,
    tenant: Uuid,
    num: i64,
    c: &UserChanges,
) -> Result<Outcome> {
    if let Some(r) = &c.role {
        if !ROLES.contains(&r.as_str()) {
            return Err(StorageError::Invalid(format!("unknown role {r:?}")));
        }
    }
    let mut tx = pool.begin().await?;
    let Some((target, only_admin)) = lock_admins(&mut tx, tenant, num).await? else {
        return Ok(Outcome::NotFound);
    };
    if c.touches_user() && target.tenants > 1 {
        return Ok(Outcome::Shared);
    }
    let demoted = c.role.as_deref().is_some_and(|r| !is_admin_role(r));
    let deactivated = c.is_active == Some(false);
    if only_admin && (demoted || deactivated) {
        return Ok(Outcome::LastAdmin);
    }
    if c.touches_user() {
        sqlx::query(
            "UPDATE users SET
                email = CASE WHEN $2 THEN $3 ELSE email END,
                full_name = CASE WHEN $4 THEN $5 ELSE full_name END,
                password_hash = COALESCE($6, password_hash),
                is_active = COALESCE($7, is_active),
                updated_at = now()
             WHERE id = $1",
        )
        .bind(target.id)
        .bind(c.email.is_some())
        .bind(c.email.clone().flatten())
        .bind(c.full_name.is_some())
        .bind(c.full_name.clone().flatten())
        .bind(c.password_hash.as_deref())
        .bind(c.is_active)
        .execute(&mut *tx)
        .await?;
    }
    if let Some(r) = &c.role {
        sqlx::query("UPDATE tenant_members SET role = $3 WHERE tenant_id = $1 AND user_id = $2")
            .bind(tenant)
            .bind(target.id)
            .bind(r)
            .execute(&mut *tx)
            .await?;
    }
    let u = sqlx::query_as::<_, TenantUser>(concat!(tenant_user_select!(), " AND u.id = $2"))
        .bind(tenant)
        .bind(target.id)
        .fetch_optional(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(Outcome::Done(u))
}

/// Removes the user from the tenant, and deletes the user when it belongs
/// to no other tenant (their refresh tokens go with it).
pub async fn remove_from_tenant(pool: &PgPool, tenant: Uuid, num: i64) -> Result<Outcome> {
    let mut tx = pool.begin().await?;
    let Some((target, only_admin)) = lock_admins(&mut tx, tenant, num).await? else {
        return Ok(Outcome::NotFound);
    };
    if only_admin {
        return Ok(Outcome::LastAdmin);
    }
    sqlx::query("DELETE FROM tenant_members WHERE tenant_id = $1 AND user_id = $2")
        .bind(tenant)
        .bind(target.id)
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "DELETE FROM users WHERE id = $1
         AND NOT EXISTS (SELECT 1 FROM tenant_members WHERE user_id = $1)",
    )
    .bind(target.id)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Outcome::Done(Some(target)))
}

/// The role an active user holds in a tenant now; `None` when the user is
/// gone, deactivated or no longer a member.
pub async fn active_role(pool: &PgPool, user: Uuid, tenant: Uuid) -> Result<Option<String>> {
    Ok(sqlx::query_scalar(
        "SELECT m.role FROM tenant_members m JOIN users u ON u.id = m.user_id
         WHERE m.user_id = $1 AND m.tenant_id = $2 AND u.is_active",
    )
    .bind(user)
    .bind(tenant)
    .fetch_optional(pool)
    .await?)
}
