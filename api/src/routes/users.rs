//! A tenant's users, managed by its owners and admins (`/api/v1/users`):
//! list, create, read, partial update, delete. Users are the identity
//! model's users (argon2id passwords) with a membership in the tenant; the
//! integer `id` the API shows is the user's `num`. No answer carries any
//! password field. Guards: nobody removes their own admin rights or
//! deactivates/deletes themselves, and the tenant's last active
//! owner/admin cannot be demoted, deactivated or deleted (409); only an
//! owner may grant or take away the `owner` role.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use sluice_auth::password;
use sluice_auth::principal::{Principal, Role, Subject};
use sluice_storage::breaker::CallError;
use sluice_storage::pg::users::{self, NewUser, Outcome, TenantUser, UserChanges, ROLES};
use sluice_storage::StorageError;

use crate::audit::AuditNote;
use crate::auth::Member;
use crate::error::{ApiError, ApiResult, FieldError};
use crate::openapi::backup::admin::{UserRequest, UserUpdate, UserView};
use crate::openapi::backup::{BackupError, Deleted, MemberRefusals, Unprocessable};
use crate::validate::{object, Field, Validator};
use crate::ApiState;

fn require_admin(p: &Principal) -> ApiResult<()> {
    if matches!(p.role, Role::Owner | Role::Admin) {
        Ok(())
    } else {
        Err(ApiError::Forbidden(format!(
            "role {} may not manage users (owner or admin only)",
            p.role.as_str()
        )))
    }
}

fn rfc3339(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

fn user_json(u: &TenantUser) -> Value {
    json!({
        "id": u.num,
        "username": u.username,
        "email": u.email,
        "full_name": u.full_name,
        "role": u.role,
        "is_active": u.is_active,
        "created_at": rfc3339(&u.created_at),
    })
}

fn user_id(id: &str) -> ApiResult<i64> {
    id.parse::<i64>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| ApiError::not_found("user"))
}

/// An argon2id hash of `pw`, computed off the async threads.
pub(crate) async fn hash(pw: String) -> ApiResult<String> {
    let failed = || ApiError::Validation("could not hash the password".into());
    tokio::task::spawn_blocking(move || password::hash(&pw))
        .await
        .map_err(|_| failed())?
        .map_err(|_| failed())
}

/// 3 to 64 characters: letters, digits, `.`, `_`, `@`, `-`.
pub(crate) fn username_ok(name: &str) -> bool {
    (3..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._@-".contains(c))
}

/// The shortest password accepted.
pub(crate) const PASSWORD_MIN: usize = 8;

fn valid_username(v: &mut Validator, name: &str) {
    if !username_ok(name) {
        v.fail(FieldError::body(
            &["username"],
            "username must be 3 to 64 characters: letters, digits, . _ @ -",
            "value_error.username",
        ));
    }
}

fn valid_password(v: &mut Validator, pw: &str) {
    if pw.chars().count() < PASSWORD_MIN {
        v.fail(FieldError::body(
            &["password"],
            "ensure this value has at least 8 characters",
            "value_error.any_str.min_length",
        ));
    }
}

fn valid_email(v: &mut Validator, email: Option<&str>) {
    if email.is_some_and(|e| !e.contains('@')) {
        v.fail(FieldError::body(
            &["email"],
            "value is not a valid email address",
            "value_error.email",
        ));
    }
}

/// Only an owner hands out or takes away `owner`.
fn check_owner_grant(p: &Principal, old: Option<&str>, new: Option<&str>) -> ApiResult<()> {
    let touches_owner =
        new == Some("owner") || (old == Some("owner") && new.is_some_and(|n| n != "owner"));
    if touches_owner && p.role != Role::Owner {
        return Err(ApiError::Forbidden(
            "only an owner may grant or take away the owner role".into(),
        ));
    }
    Ok(())
}

/// The tenant's users (owners and admins only).
#[utoipa::path(
    get,
    path = "/api/v1/users",
    operation_id = "users_list",
    tag = "backup",
    responses(
        (status = 200, body = Vec<UserView>, description = "Every user of the tenant"),
        MemberRefusals,
    ),
    security(("bearerAuth" = []))
)]
pub async fn list(State(state): State<ApiState>, Member(p): Member) -> ApiResult<Json<Value>> {
    require_admin(&p)?;
    let tenant = p.tenant_id;
    let all = state.pg.run(|pg| users::list_in_tenant(pg, tenant)).await?;
    Ok(Json(Value::Array(all.iter().map(user_json).collect())))
}

#[utoipa::path(
    get,
    path = "/api/v1/users/{id}",
    operation_id = "users_get_one",
    tag = "backup",
    params(("id" = i64, Path, description = "The user's id")),
    responses(
        (status = 200, body = UserView, description = "The user"),
        (status = 404, body = BackupError, description = "No such user in the tenant (or an id that is not a positive integer)"),
        MemberRefusals,
    ),
    security(("bearerAuth" = []))
)]
pub async fn get_one(
    State(state): State<ApiState>,
    Member(p): Member,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    require_admin(&p)?;
    let id = user_id(&id)?;
    let tenant = p.tenant_id;
    let u = state
        .pg
        .run(|pg| users::get_in_tenant(pg, tenant, id))
        .await?
        .ok_or_else(|| ApiError::not_found("user"))?;
    Ok(Json(user_json(&u)))
}

#[utoipa::path(
    post,
    path = "/api/v1/users",
    operation_id = "users_create",
    tag = "backup",
    request_body(content = UserRequest, content_type = "application/json"),
    responses(
        (status = 201, body = UserView, description = "The user created"),
        (status = 409, body = BackupError, description = "The username is taken"),
        (status = 422, body = Unprocessable, description = "Fields at fault (an unknown role included)"),
        MemberRefusals,
    ),
    security(("bearerAuth" = []))
)]
pub async fn create(
    State(state): State<ApiState>,
    Member(p): Member,
    body: Bytes,
) -> ApiResult<(StatusCode, Extension<AuditNote>, Json<Value>)> {
    require_admin(&p)?;
    let obj = object(&body)?;
    let mut v = Validator::new();
    let username = v.string(&obj, &["username"], 64).value();
    let username = v.require(username, &["username"]);
    if let Some(u) = &username {
        valid_username(&mut v, u);
    }
    let pw = v.secret(&obj, &["password"], 1024).value();
    let pw = v.require(pw, &["password"]);
    if let Some(pw) = &pw {
        valid_password(&mut v, pw);
    }
    let email = v.string(&obj, &["email"], 254).value();
    valid_email(&mut v, email.as_deref());
    let full_name = v.string(&obj, &["full_name"], 200).value();
    let role = v.choice(&obj, &["role"], &ROLES).value();
    let is_active = v.bool(&obj, &["is_active"]).value().unwrap_or(true);
    v.finish()?;
    let (Some(username), Some(pw)) = (username, pw) else {
        return Err(ApiError::BadRequest(
            "username and password are required".into(),
        ));
    };
    let role = role.unwrap_or_else(|| "viewer".to_string());
    check_owner_grant(&p, None, Some(&role))?;
    let hash = hash(pw).await?;
    let new = NewUser {
        username: &username,
        email: email.as_deref(),
        full_name: full_name.as_deref(),
        password_hash: &hash,
    };
    let tenant = p.tenant_id;
    let u = state
        .pg
        .run(|pg| users::create_in_tenant(pg, tenant, &new, &role, is_active))
        .await
        .map_err(|e| match e {
            CallError::Storage(StorageError::Invalid(m)) => ApiError::Conflict(m),
            other => other.into(),
        })?;
    tracing::info!(user = u.num, role = %u.role, "user created");
    let note = AuditNote::new("user_create", "user", Some(u.num))
        .details(json!({"username": u.username, "role": u.role}));
    Ok((StatusCode::CREATED, Extension(note), Json(user_json(&u))))
}

/// A partial update.
#[utoipa::path(
    put,
    path = "/api/v1/users/{id}",
    operation_id = "users_update",
    tag = "backup",
    params(("id" = i64, Path, description = "The user's id")),
    request_body(content = UserUpdate, content_type = "application/json"),
    responses(
        (status = 200, body = UserView, description = "The user updated"),
        (status = 404, body = BackupError, description = "No such user in the tenant (or an id that is not a positive integer)"),
        (status = 409, body = BackupError, description = "Deactivating or demoting yourself, the tenant's last owner or admin, or a user of other tenants too (only their role here may change)"),
        (status = 422, body = Unprocessable, description = "Fields at fault"),
        MemberRefusals,
    ),
    security(("bearerAuth" = []))
)]
pub async fn update(
    State(state): State<ApiState>,
    Member(p): Member,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<(Extension<AuditNote>, Json<Value>)> {
    require_admin(&p)?;
    let id = user_id(&id)?;
    let obj = object(&body)?;
    let mut v = Validator::new();
    let role = v.choice(&obj, &["role"], &ROLES);
    let is_active = v.bool(&obj, &["is_active"]);
    let email = v.string(&obj, &["email"], 254);
    if let Field::Set(e) = &email {
        valid_email(&mut v, Some(e));
    }
    let full_name = v.string(&obj, &["full_name"], 200);
    let pw = v.secret(&obj, &["password"], 1024);
    if let Field::Set(pw) = &pw {
        valid_password(&mut v, pw);
    }
    v.finish()?;
    let present = |f: &Field<String>| !matches!(f, Field::Absent);
    let mut changes = UserChanges {
        email: present(&email).then(|| email.clone().value()),
        full_name: present(&full_name).then(|| full_name.clone().value()),
        password_hash: None,
        is_active: is_active.value(),
        role: role.value(),
    };
    let tenant = p.tenant_id;
    let target = state
        .pg
        .run(|pg| users::get_in_tenant(pg, tenant, id))
        .await?
        .ok_or_else(|| ApiError::not_found("user"))?;
    if p.subject == Subject::User(target.id) {
        if changes.is_active == Some(false) {
            return Err(ApiError::Conflict("you cannot deactivate yourself".into()));
        }
        let demoted = changes
            .role
            .as_deref()
            .is_some_and(|r| r != "owner" && r != "admin");
        if demoted {
            return Err(ApiError::Conflict(
                "you cannot remove your own admin role".into(),
            ));
        }
    }
    check_owner_grant(&p, Some(&target.role), changes.role.as_deref())?;
    let mut fields: Vec<&str> = Vec::new();
    for (name, set) in [
        ("role", changes.role.is_some()),
        ("is_active", changes.is_active.is_some()),
        ("email", changes.email.is_some()),
        ("full_name", changes.full_name.is_some()),
    ] {
        if set {
            fields.push(name);
        }
    }
    if let Field::Set(pw) = pw {
        changes.password_hash = Some(hash(pw).await?);
        fields.push("password");
    }
    let outcome = state
        .pg
        .run(|pg| users::update_in_tenant(pg, tenant, id, &changes))
        .await?;
    state.member_cache.invalidate(&(target.id, tenant)).await;
    let u = match outcome {
        Outcome::Done(Some(u)) => u,
        Outcome::Done(None) | Outcome::NotFound => return Err(ApiError::not_found("user")),
        Outcome::LastAdmin => return Err(ApiError::Conflict(
            "this is the tenant's last active owner or admin: it cannot be demoted or deactivated"
                .into(),
        )),
        Outcome::Shared => {
            return Err(ApiError::Conflict(
                "this user also belongs to other tenants: only their role here can be changed"
                    .into(),
            ))
        }
    };
    tracing::info!(user = u.num, "user updated");
    let note = AuditNote::new("user_update", "user", Some(u.num))
        .details(json!({"username": u.username, "fields": fields}));
    Ok((Extension(note), Json(user_json(&u))))
}

#[utoipa::path(
    delete,
    path = "/api/v1/users/{id}",
    operation_id = "users_delete",
    tag = "backup",
    params(("id" = i64, Path, description = "The user's id")),
    responses(
        (status = 200, body = Deleted, description = "The user is gone"),
        (status = 404, body = BackupError, description = "No such user in the tenant (or an id that is not a positive integer)"),
        (status = 409, body = BackupError, description = "Deleting yourself, or the tenant's last owner or admin"),
        MemberRefusals,
    ),
    security(("bearerAuth" = []))
)]
pub async fn delete(
    State(state): State<ApiState>,
    Member(p): Member,
    Path(id): Path<String>,
) -> ApiResult<(Extension<AuditNote>, Json<Value>)> {
    require_admin(&p)?;
    let id = user_id(&id)?;
    let tenant = p.tenant_id;
    let target = state
        .pg
        .run(|pg| users::get_in_tenant(pg, tenant, id))
        .await?
        .ok_or_else(|| ApiError::not_found("user"))?;
    if p.subject == Subject::User(target.id) {
        return Err(ApiError::Conflict("you cannot delete yourself".into()));
    }
    check_owner_grant(&p, Some(&target.role), Some("none"))?;
    let outcome = state
        .pg
        .run(|pg| users::remove_from_tenant(pg, tenant, id))
        .await?;
    state.member_cache.invalidate(&(target.id, tenant)).await;
    match outcome {
        Outcome::Done(_) => {}
        Outcome::NotFound | Outcome::Shared => return Err(ApiError::not_found("user")),
        Outcome::LastAdmin => {
            return Err(ApiError::Conflict(
                "this is the tenant's last active owner or admin: it cannot be deleted".into(),
            ))
        }
    }
    tracing::info!(user = id, "user deleted");
    let note = AuditNote::new("user_delete", "user", Some(id))
        .details(json!({"username": target.username}));
    Ok((Extension(note), Json(json!({"id": id, "deleted": true}))))
}
