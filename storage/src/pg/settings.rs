//! Health Monitor settings (contract section 6): the API keys as a tenant
//! lists and rotates them, team invitations beside the tenant's members,
//! and integrations (public config in JSON, secrets sealed by
//! [`crate::secrets::SecretBox`]). Every query is scoped to one tenant.

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use crate::keys;
use crate::Result;

/// A key as its tenant's listing shows it (never the hash).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct KeyRow {
    pub id: Uuid,
    pub name: String,
    pub key_preview: String,
    pub permissions: Vec<String>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
}

macro_rules! key_columns {
    () => {
        "id, name, key_preview, permissions, last_used_at, created_at, expires_at"
    };
}

/// The tenant's keys that are not revoked, newest first.
pub async fn list_keys(pool: &PgPool, tenant: Uuid) -> Result<Vec<KeyRow>> {
    Ok(sqlx::query_as::<_, KeyRow>(concat!(
        "SELECT ",
        key_columns!(),
        " FROM api_keys WHERE tenant_id = $1 AND revoked_at IS NULL ORDER BY created_at DESC, id"
    ))
    .bind(tenant)
    .fetch_all(pool)
    .await?)
}

pub async fn get_key(pool: &PgPool, tenant: Uuid, id: Uuid) -> Result<Option<KeyRow>> {
    Ok(sqlx::query_as::<_, KeyRow>(concat!(
        "SELECT ",
        key_columns!(),
        " FROM api_keys WHERE tenant_id = $1 AND id = $2 AND revoked_at IS NULL"
    ))
    .bind(tenant)
    .bind(id)
    .fetch_optional(pool)
    .await?)
}

/// Replaces a live key's secret with a fresh one; the previous secret
/// stays valid for `grace_seconds`. Answers the key and the new plaintext,
/// or `None` for an unknown or revoked key.
pub async fn rotate_key(
    pool: &PgPool,
    tenant: Uuid,
    id: Uuid,
    grace_seconds: i64,
) -> Result<Option<(KeyRow, String)>> {
    let plaintext = keys::generate();
    let row = sqlx::query_as::<_, KeyRow>(concat!(
        "UPDATE api_keys SET prev_key_hash = key_hash,
             prev_valid_until = now() + make_interval(secs => $5::double precision),
             key_hash = $3, key_preview = $4
         WHERE tenant_id = $1 AND id = $2 AND revoked_at IS NULL RETURNING ",
        key_columns!()
    ))
    .bind(tenant)
    .bind(id)
    .bind(keys::hash(&plaintext).to_vec())
    .bind(keys::preview(&plaintext))
    .bind(grace_seconds as f64)
    .fetch_optional(pool)
    .await?;
    Ok(row.map(|r| (r, plaintext)))
}

/// A member or an invitee, as the team listing shows them.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TeamRow {
    pub id: Uuid,
    pub name: Option<String>,
    pub email: Option<String>,
    pub role: String,
    /// `active` or `invited`.
    pub status: String,
    /// A member's last request with its own credentials (flushed in
    /// batches); `None` for an invitee or a member not seen yet.
    pub last_active: Option<DateTime<Utc>>,
    /// When an invitation stops being accepted; `None` for a member.
    pub expires_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

macro_rules! member_select {
    () => {
        "SELECT u.id, COALESCE(u.full_name, u.username) AS name, u.email, m.role,
                'active' AS status, m.last_active_at AS last_active,
                NULL::timestamptz AS expires_at, m.created_at
         FROM tenant_members m JOIN users u ON u.id = m.user_id
         WHERE m.tenant_id = $1 AND u.is_active"
    };
}

/// The tenant's active members, then its pending (unexpired) invitations.
pub async fn team(pool: &PgPool, tenant: Uuid) -> Result<Vec<TeamRow>> {
    Ok(sqlx::query_as::<_, TeamRow>(concat!(
        member_select!(),
        " UNION ALL
         SELECT i.id, NULL AS name, i.email, i.role, 'invited' AS status,
                NULL AS last_active, i.expires_at, i.created_at
         FROM team_invitations i
         WHERE i.tenant_id = $1 AND (i.expires_at IS NULL OR i.expires_at > now())
         ORDER BY created_at, id"
    ))
    .bind(tenant)
    .fetch_all(pool)
    .await?)
}

/// Records an invitation that the token whose SHA-256 is `token_hash`
/// accepts until `expires_at`; `None` when the email is already in the
/// tenant (a member's or a pending invitee's, compared case-insensitively).
/// An expired invitation of the same email is replaced.
pub async fn invite(
    pool: &PgPool,
    tenant: Uuid,
    email: &str,
    role: &str,
    token_hash: &[u8],
    expires_at: DateTime<Utc>,
) -> Result<Option<TeamRow>> {
    let mut tx = pool.begin().await?;
    sqlx::query(
        "DELETE FROM team_invitations
         WHERE tenant_id = $1 AND lower(email) = lower($2) AND expires_at <= now()",
    )
    .bind(tenant)
    .bind(email)
    .execute(&mut *tx)
    .await?;
    let row = sqlx::query_as::<_, TeamRow>(
        "INSERT INTO team_invitations (id, tenant_id, email, role, token_hash, expires_at)
         SELECT $2, $1, $3, $4, $5, $6
         WHERE NOT EXISTS (
             SELECT 1 FROM tenant_members m JOIN users u ON u.id = m.user_id
             WHERE m.tenant_id = $1 AND lower(u.email) = lower($3))
         ON CONFLICT (tenant_id, lower(email)) DO NOTHING
         RETURNING id, NULL::text AS name, email, role, 'invited' AS status,
                   NULL::timestamptz AS last_active, expires_at, created_at",
    )
    .bind(tenant)
    .bind(Uuid::new_v4())
    .bind(email)
    .bind(role)
    .bind(token_hash)
    .bind(expires_at)
    .fetch_optional(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(row)
}

/// Whether a pending, unexpired invitation has this token hash.
pub async fn invitation_pending(pool: &PgPool, token_hash: &[u8]) -> Result<bool> {
    Ok(sqlx::query_scalar::<_, bool>(
        "SELECT EXISTS (SELECT 1 FROM team_invitations
                        WHERE token_hash = $1 AND expires_at > now())",
    )
    .bind(token_hash)
    .fetch_one(pool)
    .await?)
}

/// Who accepts an invitation.
pub enum Joiner<'a> {
    /// A new user; its email is the invitation's.
    New {
        username: &'a str,
        full_name: Option<&'a str>,
        password_hash: &'a str,
    },
    /// A user who already has an account (logged in).
    Existing(Uuid),
}

/// Accepts the pending invitation with this token hash: the invitation is
/// used up and the joiner becomes a member with the invited role, in one
/// transaction. `None` when no unexpired invitation has the token (unknown,
/// expired or already accepted); `Invalid` when the username is taken or
/// the user is already a member.
pub async fn accept_invitation(
    pool: &PgPool,
    token_hash: &[u8],
    joiner: Joiner<'_>,
) -> Result<Option<(Uuid, TeamRow)>> {
    let mut tx = pool.begin().await?;
    let Some((tenant, email, role)) = sqlx::query_as::<_, (Uuid, String, String)>(
        "DELETE FROM team_invitations WHERE token_hash = $1 AND expires_at > now()
         RETURNING tenant_id, email, role",
    )
    .bind(token_hash)
    .fetch_optional(&mut *tx)
    .await?
    else {
        return Ok(None);
    };
    let user = match joiner {
        Joiner::New {
            username,
            full_name,
            password_hash,
        } => {
            let new = crate::pg::users::NewUser {
                username,
                email: Some(&email),
                full_name,
                password_hash,
            };
            crate::pg::users::insert_member(&mut tx, tenant, &new, &role, true).await?
        }
        Joiner::Existing(user) => {
            let added = sqlx::query(
                "INSERT INTO tenant_members (tenant_id, user_id, role) VALUES ($1, $2, $3)
                 ON CONFLICT (tenant_id, user_id) DO NOTHING",
            )
            .bind(tenant)
            .bind(user)
            .bind(&role)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if added == 0 {
                return Err(crate::StorageError::Invalid(
                    "this user is already a member of the team".into(),
                ));
            }
            user
        }
    };
    let row = sqlx::query_as::<_, TeamRow>(concat!(member_select!(), " AND u.id = $2"))
        .bind(tenant)
        .bind(user)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| crate::StorageError::Invalid("this account is deactivated".into()))?;
    tx.commit().await?;
    Ok(Some((tenant, row)))
}

/// One configured integration.
#[derive(Clone, sqlx::FromRow)]
pub struct IntegrationRow {
    pub name: String,
    /// The settings that are not secret.
    pub config: sqlx::types::Json<serde_json::Value>,
    /// A JSON object of the secret settings, sealed.
    pub secrets_sealed: Option<Vec<u8>>,
    pub last_test: Option<DateTime<Utc>>,
    /// Whether the last test delivered (`None`: never tested).
    pub last_ok: Option<bool>,
}

macro_rules! integration_columns {
    () => {
        "name, config, secrets_sealed, last_test, last_ok"
    };
}

pub async fn integrations(pool: &PgPool, tenant: Uuid) -> Result<Vec<IntegrationRow>> {
    Ok(sqlx::query_as::<_, IntegrationRow>(concat!(
        "SELECT ",
        integration_columns!(),
        " FROM hm_integrations WHERE tenant_id = $1 ORDER BY name"
    ))
    .bind(tenant)
    .fetch_all(pool)
    .await?)
}

pub async fn integration(
    pool: &PgPool,
    tenant: Uuid,
    name: &str,
) -> Result<Option<IntegrationRow>> {
    Ok(sqlx::query_as::<_, IntegrationRow>(concat!(
        "SELECT ",
        integration_columns!(),
        " FROM hm_integrations WHERE tenant_id = $1 AND name = $2"
    ))
    .bind(tenant)
    .bind(name)
    .fetch_optional(pool)
    .await?)
}

/// Stores an integration's config (replacing any), clearing the last
/// delivery's outcome.
pub async fn put_integration(
    pool: &PgPool,
    tenant: Uuid,
    name: &str,
    config: serde_json::Value,
    secrets_sealed: Option<Vec<u8>>,
) -> Result<IntegrationRow> {
    Ok(sqlx::query_as::<_, IntegrationRow>(concat!(
        "INSERT INTO hm_integrations (tenant_id, name, config, secrets_sealed)
         VALUES ($1, $2, $3, $4)
         ON CONFLICT (tenant_id, name) DO UPDATE SET config = EXCLUDED.config,
             secrets_sealed = EXCLUDED.secrets_sealed, last_ok = NULL, updated_at = now()
         RETURNING ",
        integration_columns!()
    ))
    .bind(tenant)
    .bind(name)
    .bind(sqlx::types::Json(config))
    .bind(secrets_sealed)
    .fetch_one(pool)
    .await?)
}

/// Records a test's time and outcome.
pub async fn record_test(pool: &PgPool, tenant: Uuid, name: &str, ok: bool) -> Result<()> {
    sqlx::query(
        "UPDATE hm_integrations SET last_test = now(), last_ok = $3
         WHERE tenant_id = $1 AND name = $2",
    )
    .bind(tenant)
    .bind(name)
    .bind(ok)
    .execute(pool)
    .await?;
    Ok(())
}

/// An integration's whole config: its public settings with its sealed
/// secrets opened into them.
pub fn open_config(
    secrets: &crate::secrets::SecretBox,
    row: &IntegrationRow,
) -> Result<serde_json::Map<String, serde_json::Value>> {
    let mut config = match &row.config.0 {
        serde_json::Value::Object(m) => m.clone(),
        _ => serde_json::Map::new(),
    };
    if let Some(sealed) = &row.secrets_sealed {
        let plain = secrets.open(sealed)?;
        if let Ok(serde_json::Value::Object(m)) = serde_json::from_str::<serde_json::Value>(&plain)
        {
            config.extend(m);
        }
    }
    Ok(config)
}
