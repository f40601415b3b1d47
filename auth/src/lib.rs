//! Sluice's identity model, shared by the ingest and API tiers.
//!
//! - [`password`]: argon2 hashing of user passwords.
//! - [`token`]: JWT access tokens (short-lived, carrying the user's tenant
//!   memberships, so checking one needs no database) and refresh tokens
//!   (single use, rotated on every refresh).
//! - [`principal`]: turning `Authorization: Bearer` (a JWT or an API key)
//!   and `X-Tenant-ID` (a tenant id or slug) into the tenant and role a
//!   request acts as, refusing any tenant the caller does not belong to.

pub mod password;
pub mod principal;
pub mod token;

/// The secret used when none is set, accepted only in dev mode.
pub const DEV_SECRET: &str = "sluice-dev-secret-do-not-use-in-production";

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("missing credentials: send Authorization: Bearer <token>")]
    MissingCredentials,
    #[error("invalid or expired token")]
    InvalidToken,
    #[error("X-Tenant-ID header is required")]
    TenantRequired,
    #[error("the caller does not belong to this tenant")]
    WrongTenant,
    #[error("invalid username or password")]
    BadCredentials,
    #[error("password hashing failed")]
    Hashing,
    #[error(
        "SLUICE_SECRET_KEY must be set to a secret of at least 32 characters outside dev mode"
    )]
    WeakSecret,
}

/// The signing secret to use: the configured one, or in dev mode the
/// well-known dev secret. Outside dev mode an empty, short or default
/// secret is refused.
pub fn signing_secret(configured: Option<&str>, dev: bool) -> Result<String, AuthError> {
    match configured.map(str::trim).filter(|s| !s.is_empty()) {
        Some(s) if s == DEV_SECRET && !dev => Err(AuthError::WeakSecret),
        Some(s) if s.len() < 32 && !dev => Err(AuthError::WeakSecret),
        Some(s) => Ok(s.to_string()),
        None if dev => Ok(DEV_SECRET.to_string()),
        None => Err(AuthError::WeakSecret),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_checked_outside_dev() {
        assert_eq!(signing_secret(None, true).unwrap(), DEV_SECRET);
        assert_eq!(signing_secret(None, false), Err(AuthError::WeakSecret));
        assert_eq!(signing_secret(Some(""), false), Err(AuthError::WeakSecret));
        assert_eq!(
            signing_secret(Some("short"), false),
            Err(AuthError::WeakSecret)
        );
        assert_eq!(
            signing_secret(Some(DEV_SECRET), false),
            Err(AuthError::WeakSecret)
        );
        let good = "x".repeat(40);
        assert_eq!(signing_secret(Some(&good), false).unwrap(), good);
    }
}
