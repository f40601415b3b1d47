//! API keys: generation, hashing, and the in-memory directory that
//! authenticates requests. Keys are stored only as SHA-256 hashes; a key is
//! random with 190 bits of entropy, so a fast hash is safe and keeps the
//! lookup off the hot path's budget. The directory reloads from Postgres
//! every few seconds, so a revocation takes effect within that interval.
//! Each reload first flushes what was used since the last one, in one
//! batched `UPDATE` each: the keys' `last_used_at` and the team members'
//! `last_active_at` (marked by [`KeyDirectory::mark_member_active`]).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use chrono::{DateTime, Utc};
use rand::Rng;
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use uuid::Uuid;

use crate::pg::{api_keys, users};
use crate::Result;

const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/// A new random key: `sk_live_` and 32 base62 characters.
pub fn generate() -> String {
    token("sk_live_")
}

/// A secret from the OS-seeded CSPRNG: `prefix` and 32 base62 characters
/// (190 bits), stored only as its [`hash`].
pub fn token(prefix: &str) -> String {
    let mut rng = rand::rng();
    let body: String = (0..32)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect();
    format!("{prefix}{body}")
}

pub fn hash(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// What a listing shows of a key: its prefix and last four characters.
pub fn preview(key: &str) -> String {
    let prefix: String = key.chars().take(8).collect();
    let tail: String = {
        let chars: Vec<char> = key.chars().collect();
        chars[chars.len().saturating_sub(4)..].iter().collect()
    };
    format!("{prefix}****{tail}")
}

/// A key as the directory knows it.
#[derive(Debug)]
pub struct KeyInfo {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub tenant_slug: String,
    pub permissions: Vec<String>,
    /// Requests per minute for this key; `None` uses the global default.
    pub rate_limit_per_min: Option<u32>,
    pub expires_at: Option<DateTime<Utc>>,
    used: AtomicBool,
}

impl KeyInfo {
    pub fn new(
        id: Uuid,
        tenant_id: Uuid,
        tenant_slug: String,
        permissions: Vec<String>,
        rate_limit_per_min: Option<u32>,
        expires_at: Option<DateTime<Utc>>,
    ) -> Self {
        Self {
            id,
            tenant_id,
            tenant_slug,
            permissions,
            rate_limit_per_min,
            expires_at,
            used: AtomicBool::new(false),
        }
    }

    pub fn can(&self, permission: &str) -> bool {
        self.permissions
            .iter()
            .any(|p| p == permission || p == "admin" || p == "owner")
    }
}

/// Members seen since the last flush, as (tenant, user); bounded so a
/// flush that keeps failing cannot grow it without end.
type Seen = Arc<Mutex<HashSet<(Uuid, Uuid)>>>;

/// The most distinct members remembered between two flushes.
const MAX_SEEN: usize = 100_000;

/// The in-memory key directory.
#[derive(Clone)]
pub struct KeyDirectory {
    keys: Arc<ArcSwap<HashMap<[u8; 32], Arc<KeyInfo>>>>,
    members_seen: Seen,
}

impl Default for KeyDirectory {
    fn default() -> Self {
        Self {
            keys: Arc::new(ArcSwap::from_pointee(HashMap::new())),
            members_seen: Arc::default(),
        }
    }
}

impl KeyDirectory {
    /// Finds a live key; marks it used for the next `last_used_at` flush.
    pub fn authenticate(&self, key: &str) -> Option<Arc<KeyInfo>> {
        let info = self.keys.load().get(&hash(key)).cloned()?;
        if info.expires_at.is_some_and(|t| t <= Utc::now()) {
            return None;
        }
        info.used.store(true, Ordering::Relaxed);
        Some(info)
    }

    /// Notes that `user` acted in `tenant`; its `last_active_at` is written
    /// at the next flush (no database write per request).
    pub fn mark_member_active(&self, tenant: Uuid, user: Uuid) {
        if let Ok(mut seen) = self.members_seen.lock() {
            if seen.len() < MAX_SEEN {
                seen.insert((tenant, user));
            }
        }
    }

    /// Flushes `last_used_at` and `last_active_at`, then reloads every
    /// live key from Postgres.
    pub async fn refresh(&self, pool: &PgPool) -> Result<usize> {
        let seen: Vec<(Uuid, Uuid)> = self
            .members_seen
            .lock()
            .map(|mut s| s.drain().collect())
            .unwrap_or_default();
        if !seen.is_empty() {
            users::touch_members(pool, &seen).await?;
        }
        let used: Vec<Uuid> = self
            .keys
            .load()
            .values()
            .filter(|k| k.used.swap(false, Ordering::Relaxed))
            .map(|k| k.id)
            .collect();
        if !used.is_empty() {
            api_keys::touch(pool, &used).await?;
        }
        let rows = api_keys::live(pool).await?;
        let map: HashMap<[u8; 32], Arc<KeyInfo>> = rows
            .into_iter()
            .filter_map(|r| {
                let hash: [u8; 32] = r.key_hash.as_slice().try_into().ok()?;
                Some((
                    hash,
                    Arc::new(KeyInfo::new(
                        r.id,
                        r.tenant_id,
                        r.tenant_slug,
                        r.permissions,
                        r.rate_limit_per_min.and_then(|v| u32::try_from(v).ok()),
                        r.expires_at,
                    )),
                ))
            })
            .collect();
        let n = map.len();
        self.keys.store(Arc::new(map));
        Ok(n)
    }

    /// Reloads every `every` until the token is cancelled; errors are
    /// logged and the last good directory stays in force.
    pub async fn run_refresh(
        self,
        pool: PgPool,
        every: Duration,
        shutdown: tokio::sync::watch::Receiver<bool>,
    ) {
        let mut shutdown = shutdown;
        loop {
            if let Err(e) = self.refresh(&pool).await {
                tracing::warn!(error = %e, "api key directory refresh failed");
            }
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = shutdown.changed() => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_random_and_previewed() {
        let a = generate();
        let b = generate();
        assert_ne!(a, b);
        assert_eq!(a.len(), 40);
        assert!(preview(&a).starts_with("sk_live_****"));
        assert!(preview(&a).ends_with(&a[36..]));
        assert_ne!(hash(&a), hash(&b));
    }
}
