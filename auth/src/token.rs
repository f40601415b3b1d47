//! JWT access and refresh tokens (HS256, signed with `SLUICE_SECRET_KEY`).

use chrono::{DateTime, Duration, Utc};
use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::AuthError;

/// A tenant the token's user belongs to, and the role there.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TenantClaim {
    pub id: Uuid,
    pub slug: String,
    pub role: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    pub sub: Uuid,
    pub username: String,
    /// `access` or `refresh`.
    pub typ: String,
    pub jti: Uuid,
    pub iat: i64,
    pub exp: i64,
    #[serde(default)]
    pub tenants: Vec<TenantClaim>,
}

#[derive(Clone)]
pub struct Tokens {
    enc: EncodingKey,
    dec: DecodingKey,
    pub access_ttl: Duration,
    pub refresh_ttl: Duration,
}

/// A freshly signed token.
pub struct Issued {
    pub token: String,
    pub jti: Uuid,
    pub expires_at: DateTime<Utc>,
}

impl Tokens {
    pub fn new(secret: &str, access_ttl: Duration, refresh_ttl: Duration) -> Self {
        Self {
            enc: EncodingKey::from_secret(secret.as_bytes()),
            dec: DecodingKey::from_secret(secret.as_bytes()),
            access_ttl,
            refresh_ttl,
        }
    }

    fn issue(
        &self,
        user: Uuid,
        username: &str,
        typ: &str,
        ttl: Duration,
        tenants: Vec<TenantClaim>,
    ) -> Result<Issued, AuthError> {
        let now = Utc::now();
        let expires_at = now + ttl;
        let claims = Claims {
            sub: user,
            username: username.to_string(),
            typ: typ.to_string(),
            jti: Uuid::new_v4(),
            iat: now.timestamp(),
            exp: expires_at.timestamp(),
            tenants,
        };
        let token = encode(&Header::new(Algorithm::HS256), &claims, &self.enc)
            .map_err(|_| AuthError::InvalidToken)?;
        Ok(Issued {
            token,
            jti: claims.jti,
            expires_at,
        })
    }

    pub fn access(
        &self,
        user: Uuid,
        username: &str,
        tenants: Vec<TenantClaim>,
    ) -> Result<Issued, AuthError> {
        self.issue(user, username, "access", self.access_ttl, tenants)
    }

    pub fn refresh(&self, user: Uuid, username: &str) -> Result<Issued, AuthError> {
        self.issue(user, username, "refresh", self.refresh_ttl, Vec::new())
    }

    /// Checks signature, expiry (no leeway) and kind.
    pub fn verify(&self, token: &str, typ: &str) -> Result<Claims, AuthError> {
        let mut v = Validation::new(Algorithm::HS256);
        v.leeway = 0;
        v.set_required_spec_claims(&["exp", "sub"]);
        let data = decode::<Claims>(token, &self.dec, &v).map_err(|_| AuthError::InvalidToken)?;
        if data.claims.typ != typ {
            return Err(AuthError::InvalidToken);
        }
        Ok(data.claims)
    }
}

/// Whether a bearer credential looks like a JWT (three base64url parts).
pub fn looks_like_jwt(s: &str) -> bool {
    s.starts_with("eyJ") && s.matches('.').count() == 2
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_are_checked() {
        let t = Tokens::new(
            "a-secret-of-enough-length-for-tests!",
            Duration::minutes(15),
            Duration::days(7),
        );
        let user = Uuid::new_v4();
        let tenants = vec![TenantClaim {
            id: Uuid::new_v4(),
            slug: "acme".into(),
            role: "admin".into(),
        }];
        let a = t.access(user, "ann", tenants.clone()).unwrap();
        assert!(looks_like_jwt(&a.token));
        let c = t.verify(&a.token, "access").unwrap();
        assert_eq!(c.sub, user);
        assert_eq!(c.tenants, tenants);
        assert_eq!(t.verify(&a.token, "refresh"), Err(AuthError::InvalidToken));
        let other = Tokens::new(
            "another-secret-of-enough-length-xyz",
            Duration::minutes(15),
            Duration::days(7),
        );
        assert_eq!(
            other.verify(&a.token, "access"),
            Err(AuthError::InvalidToken)
        );
        let expired = Tokens::new(
            "a-secret-of-enough-length-for-tests!",
            Duration::seconds(-5),
            Duration::days(7),
        );
        let e = expired.access(user, "ann", vec![]).unwrap();
        assert_eq!(t.verify(&e.token, "access"), Err(AuthError::InvalidToken));
    }
}
