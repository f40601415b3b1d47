//! Bodies of `/api/v1/auth/*`: login, registration, refresh, `me`.

use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

/// `POST /api/v1/auth/login` (JSON, or the same fields as an OAuth2
/// password form, `application/x-www-form-urlencoded`).
#[derive(Serialize, ToSchema)]
#[schema(as = BackupLoginRequest)]
pub struct LoginRequest {
    pub username: String,
    pub password: String,
}

/// An access token (a JWT for `Authorization: Bearer`) and its refresh token.
#[derive(Serialize, ToSchema)]
pub struct TokenPair {
    pub access_token: String,
    /// Traded once for a new pair at `POST /api/v1/auth/refresh`.
    pub refresh_token: String,
    pub token_type: Bearer,
    /// The access token's lifetime, in seconds.
    pub expires_in: i64,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Bearer {
    Bearer,
}

/// `POST /api/v1/auth/register`: a new user, owner of a new tenant.
#[derive(Serialize, ToSchema)]
pub struct RegisterRequest {
    #[schema(pattern = "^[A-Za-z0-9._@-]{3,64}$")]
    pub username: String,
    #[schema(min_length = 8)]
    pub password: String,
    pub email: Option<String>,
    pub full_name: Option<String>,
}

/// The registered user (never the password) and the tenant they own.
#[derive(Serialize, ToSchema)]
pub struct Registered {
    pub id: Uuid,
    pub username: String,
    pub email: Option<String>,
    pub full_name: Option<String>,
    pub role: OwnerRole,
    pub is_active: bool,
    pub created_at: DateTime<Utc>,
    pub tenant: TenantView,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum OwnerRole {
    Owner,
}

#[derive(Serialize, ToSchema)]
pub struct TenantView {
    pub id: Uuid,
    pub slug: String,
    pub name: String,
}

/// `POST /api/v1/auth/refresh`.
#[derive(Serialize, ToSchema)]
pub struct RefreshRequest {
    pub refresh_token: String,
}

/// `GET /api/v1/auth/me`: a user (JWT) or an API key.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum Me {
    User(MeUser),
    ApiKey(MeKey),
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum UserType {
    User,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum KeyType {
    ApiKey,
}

#[derive(Serialize, ToSchema)]
pub struct MeUser {
    #[serde(rename = "type")]
    pub kind: UserType,
    pub id: Uuid,
    pub username: String,
    pub email: Option<String>,
    pub full_name: Option<String>,
    pub is_active: bool,
    pub created_at: DateTime<Utc>,
    pub current_tenant: CurrentTenant,
    pub tenants: Vec<Membership>,
}

#[derive(Serialize, ToSchema)]
pub struct MeKey {
    #[serde(rename = "type")]
    pub kind: KeyType,
    pub id: Uuid,
    pub current_tenant: CurrentTenant,
    pub tenants: Vec<CurrentTenant>,
}

/// The tenant a request acts in, and the caller's role there.
#[derive(Serialize, ToSchema)]
pub struct CurrentTenant {
    pub id: Uuid,
    pub slug: String,
    pub role: Role,
}

#[derive(Serialize, ToSchema)]
pub struct Membership {
    pub id: Uuid,
    pub slug: String,
    pub name: String,
    pub role: Role,
}

/// The conventions' roles.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
#[schema(as = UserRole)]
pub enum Role {
    Owner,
    Admin,
    Dba,
    Developer,
    Operator,
    Viewer,
}
