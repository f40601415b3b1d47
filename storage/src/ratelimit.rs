//! Per-API-key request quotas with governor, shared by ingest and api. Each key gets its own GCRA
//! limiter at its own quota (the key's, else the global default); 0 means
//! unlimited.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, RwLock};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use uuid::Uuid;

type Entry = (u32, Arc<DefaultDirectRateLimiter>);

pub struct KeyLimiter {
    default_per_min: u32,
    limiters: RwLock<HashMap<Uuid, Entry>>,
    clock: DefaultClock,
}

impl KeyLimiter {
    pub fn new(default_per_min: u32) -> Self {
        Self {
            default_per_min,
            limiters: RwLock::new(HashMap::new()),
            clock: DefaultClock::default(),
        }
    }

    fn limiter(&self, key: Uuid, per_min: NonZeroU32) -> Arc<DefaultDirectRateLimiter> {
        if let Ok(map) = self.limiters.read() {
            if let Some((q, l)) = map.get(&key) {
                if *q == per_min.get() {
                    return l.clone();
                }
            }
        }
        let l = Arc::new(RateLimiter::direct(Quota::per_minute(per_min)));
        if let Ok(mut map) = self.limiters.write() {
            map.insert(key, (per_min.get(), l.clone()));
        }
        l
    }

    /// `Ok` when the key may send now, else the seconds to wait.
    pub fn check(&self, key: Uuid, key_quota: Option<u32>) -> Result<(), u64> {
        let per_min = key_quota.unwrap_or(self.default_per_min);
        let Some(per_min) = NonZeroU32::new(per_min) else {
            return Ok(());
        };
        self.limiter(key, per_min).check().map_err(|not_until| {
            let wait = not_until.wait_time_from(self.clock.now());
            wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_per_key() {
        let l = KeyLimiter::new(3);
        let a = Uuid::from_u128(1);
        let b = Uuid::from_u128(2);
        for _ in 0..3 {
            assert!(l.check(a, None).is_ok());
        }
        let wait = l.check(a, None).unwrap_err();
        assert!((1..=20).contains(&wait));
        assert!(l.check(b, None).is_ok());
        assert!(l.check(b, Some(0)).is_ok());
        let unlimited = KeyLimiter::new(0);
        for _ in 0..10_000 {
            assert!(unlimited.check(a, None).is_ok());
        }
    }
}
