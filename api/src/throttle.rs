//! Login throttling: failed logins are counted in Redis per username and
//! per client address, in fixed windows shared by every API process (keys
//! under the deployment's prefix, expiring with their window). Past the
//! limit, logins for that username or from that address are refused with
//! `429` and `Retry-After` (the window's remaining seconds) before the
//! password is even checked. A successful login clears its username's
//! count (not the address's). When Redis cannot be reached the check lets
//! the login through (logged): throttling must not lock everyone out.

use std::time::Duration;

use deadpool_redis::redis;

use crate::error::ApiError;
use crate::ApiState;

/// The limits (defaults: 5 failures per username and 20 per address in
/// 15 minutes).
#[derive(Debug, Clone, Copy)]
pub struct LoginLimits {
    pub per_username: u32,
    pub per_address: u32,
    pub window: Duration,
}

impl Default for LoginLimits {
    fn default() -> Self {
        Self {
            per_username: 5,
            per_address: 20,
            window: Duration::from_secs(15 * 60),
        }
    }
}

fn keys(state: &ApiState, username: &str, ip: Option<&str>) -> Vec<String> {
    let mut k = vec![format!(
        "{}:login-fail:user:{}",
        state.job_namespace,
        username.trim().to_lowercase()
    )];
    if let Some(ip) = ip {
        k.push(format!("{}:login-fail:ip:{ip}", state.job_namespace));
    }
    k
}

/// Refuses the login when its username or address is over its limit.
pub async fn check(state: &ApiState, username: &str, ip: Option<&str>) -> Result<(), ApiError> {
    let limits = state.login_limits;
    let keys = keys(state, username, ip);
    let answer: Result<Vec<(Option<i64>, i64)>, String> = async {
        let mut conn = state.redis.get().await.map_err(|e| e.to_string())?;
        let mut pipe = redis::pipe();
        for k in &keys {
            pipe.cmd("GET").arg(k).cmd("PTTL").arg(k);
        }
        let flat: Vec<Option<i64>> = pipe
            .query_async(&mut conn)
            .await
            .map_err(|e| e.to_string())?;
        Ok(flat
            .chunks(2)
            .map(|c| (c[0], c.get(1).copied().flatten().unwrap_or(-1)))
            .collect())
    }
    .await;
    let counts = match answer {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "login throttle unavailable; letting the login through");
            return Ok(());
        }
    };
    for (i, (n, ttl_ms)) in counts.iter().enumerate() {
        let limit = if i == 0 {
            limits.per_username
        } else {
            limits.per_address
        };
        if limit > 0 && n.unwrap_or(0) >= i64::from(limit) {
            let retry_after = if *ttl_ms > 0 {
                u64::try_from(*ttl_ms).unwrap_or(0).div_ceil(1000)
            } else {
                limits.window.as_secs()
            };
            return Err(ApiError::RateLimited {
                retry_after: retry_after.max(1),
            });
        }
    }
    Ok(())
}

/// Counts one failed login against its username and address.
pub async fn failed(state: &ApiState, username: &str, ip: Option<&str>) {
    let window = state.login_limits.window.as_secs().max(1);
    let keys = keys(state, username, ip);
    let res: Result<(), String> = async {
        let mut conn = state.redis.get().await.map_err(|e| e.to_string())?;
        let mut pipe = redis::pipe();
        for k in &keys {
            pipe.cmd("INCR")
                .arg(k)
                .ignore()
                .cmd("EXPIRE")
                .arg(k)
                .arg(window)
                .arg("NX")
                .ignore();
        }
        pipe.query_async::<()>(&mut conn)
            .await
            .map_err(|e| e.to_string())
    }
    .await;
    if let Err(e) = res {
        tracing::warn!(error = %e, "could not count a failed login");
    }
}

/// Clears the username's count after a successful login.
pub async fn succeeded(state: &ApiState, username: &str) {
    let key = keys(state, username, None).remove(0);
    let res: Result<(), String> = async {
        let mut conn = state.redis.get().await.map_err(|e| e.to_string())?;
        redis::cmd("DEL")
            .arg(&key)
            .query_async::<()>(&mut conn)
            .await
            .map_err(|e| e.to_string())
    }
    .await;
    if let Err(e) = res {
        tracing::warn!(error = %e, "could not clear a login's failure count");
    }
}
