//! Who a request acts as: a tenant, a role in it, and the subject (user or
//! API key) that rate limits are counted against.

use std::str::FromStr;

use sluice_storage::keys::KeyDirectory;
use uuid::Uuid;

use crate::token::{looks_like_jwt, Tokens};
use crate::AuthError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    Owner,
    Admin,
    Dba,
    Developer,
    Operator,
    Viewer,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Admin => "admin",
            Role::Dba => "dba",
            Role::Developer => "developer",
            Role::Operator => "operator",
            Role::Viewer => "viewer",
        }
    }

    /// Every role but viewer may record operations and change data.
    pub fn can_write(self) -> bool {
        self != Role::Viewer
    }

    /// The role an API key's permissions amount to.
    pub fn of_key_permissions(perms: &[String]) -> Role {
        let has = |p: &str| perms.iter().any(|x| x == p);
        if has("owner") {
            Role::Owner
        } else if has("admin") {
            Role::Admin
        } else if has("write") {
            Role::Developer
        } else {
            Role::Viewer
        }
    }
}

impl FromStr for Role {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "owner" => Role::Owner,
            "admin" => Role::Admin,
            "dba" => Role::Dba,
            "developer" => Role::Developer,
            "operator" => Role::Operator,
            "viewer" => Role::Viewer,
            _ => return Err(()),
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subject {
    User(Uuid),
    ApiKey(Uuid),
}

impl Subject {
    pub fn id(self) -> Uuid {
        match self {
            Subject::User(u) | Subject::ApiKey(u) => u,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub tenant_id: Uuid,
    pub tenant_slug: String,
    pub role: Role,
    pub subject: Subject,
}

fn matches_tenant(header: &str, id: Uuid, slug: &str) -> bool {
    let h = header.trim();
    h.eq_ignore_ascii_case(slug) || Uuid::parse_str(h).is_ok_and(|u| u == id)
}

/// Resolves `Authorization` and `X-Tenant-ID` header values.
///
/// A JWT must carry a membership in the named tenant (the header may be
/// left out when the user belongs to exactly one); the member is marked
/// active for the key directory's next batched flush. An API key acts for its
/// own tenant only; the header, when sent, must name that tenant.
pub fn resolve(
    authorization: Option<&str>,
    x_tenant: Option<&str>,
    keys: &KeyDirectory,
    tokens: &Tokens,
) -> Result<Principal, AuthError> {
    let cred = authorization
        .and_then(|h| {
            let (scheme, rest) = h.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
        })
        .filter(|c| !c.is_empty())
        .ok_or(AuthError::MissingCredentials)?;
    let x_tenant = x_tenant.map(str::trim).filter(|t| !t.is_empty());
    if looks_like_jwt(cred) {
        let claims = tokens.verify(cred, "access")?;
        let tenant = match x_tenant {
            Some(h) => claims
                .tenants
                .iter()
                .find(|t| matches_tenant(h, t.id, &t.slug))
                .ok_or(AuthError::WrongTenant)?,
            None if claims.tenants.len() == 1 => &claims.tenants[0],
            None => return Err(AuthError::TenantRequired),
        };
        keys.mark_member_active(tenant.id, claims.sub);
        return Ok(Principal {
            tenant_id: tenant.id,
            tenant_slug: tenant.slug.clone(),
            role: tenant.role.parse().unwrap_or(Role::Viewer),
            subject: Subject::User(claims.sub),
        });
    }
    let key = keys.authenticate(cred).ok_or(AuthError::InvalidToken)?;
    if let Some(h) = x_tenant {
        if !matches_tenant(h, key.tenant_id, &key.tenant_slug) {
            return Err(AuthError::WrongTenant);
        }
    }
    Ok(Principal {
        tenant_id: key.tenant_id,
        tenant_slug: key.tenant_slug.clone(),
        role: Role::of_key_permissions(&key.permissions),
        subject: Subject::ApiKey(key.id),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::TenantClaim;
    use chrono::Duration;

    #[test]
    fn jwt_needs_membership_of_the_named_tenant() {
        let tokens = Tokens::new(
            "a-secret-of-enough-length-for-tests!",
            Duration::minutes(5),
            Duration::days(1),
        );
        let keys = KeyDirectory::default();
        let acme = TenantClaim {
            id: Uuid::new_v4(),
            slug: "acme".into(),
            role: "dba".into(),
        };
        let user = Uuid::new_v4();
        let t = tokens.access(user, "u", vec![acme.clone()]).unwrap().token;
        let bearer = format!("Bearer {t}");
        let p = resolve(Some(&bearer), Some("acme"), &keys, &tokens).unwrap();
        assert_eq!(p.tenant_id, acme.id);
        assert_eq!(p.role, Role::Dba);
        assert_eq!(p.subject, Subject::User(user));
        assert!(resolve(Some(&bearer), Some(&acme.id.to_string()), &keys, &tokens).is_ok());
        assert!(resolve(Some(&bearer), None, &keys, &tokens).is_ok());
        assert_eq!(
            resolve(Some(&bearer), Some("globex"), &keys, &tokens),
            Err(AuthError::WrongTenant)
        );
        assert_eq!(
            resolve(None, Some("acme"), &keys, &tokens),
            Err(AuthError::MissingCredentials)
        );
        assert_eq!(
            resolve(Some("Basic abc"), Some("acme"), &keys, &tokens),
            Err(AuthError::MissingCredentials)
        );
        assert_eq!(
            resolve(Some("Bearer sk_live_unknown"), Some("acme"), &keys, &tokens),
            Err(AuthError::InvalidToken)
        );
    }
}
