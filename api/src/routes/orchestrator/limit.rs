//! The contract's create limit: 10 `POST /migrations` per user in any
//! rolling 60 seconds, shared by every API process (a sorted set per user
//! in Redis, under the deployment's prefix). A refused request does not
//! count; `Retry-After` is the time until the oldest counted request leaves
//! the window. When Redis cannot be reached the request goes through
//! (logged): the limit must not stop all work.

use std::sync::LazyLock;

use deadpool_redis::redis;

use crate::error::ApiError;
use crate::ApiState;

pub const LIMIT: u32 = 10;
pub const WINDOW_MS: u64 = 60_000;

static SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
local key = KEYS[1]
local now = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local limit = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
if redis.call('ZCARD', key) < limit then
  redis.call('ZADD', key, now, ARGV[4])
  redis.call('PEXPIRE', key, window)
  return 0
end
local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
return math.max(1, tonumber(oldest[2]) + window - now)
",
    )
});

/// Counts one create by `subject`, or refuses it with 429.
pub async fn check(state: &ApiState, subject: uuid::Uuid) -> Result<(), ApiError> {
    let key = format!("{}:orch:create:{subject}", state.job_namespace);
    let now = chrono::Utc::now().timestamp_millis();
    let member = format!("{now}-{}", uuid::Uuid::new_v4().simple());
    let r: Result<i64, String> = async {
        let mut conn = state.redis.get().await.map_err(|e| e.to_string())?;
        SCRIPT
            .key(&key)
            .arg(now)
            .arg(WINDOW_MS)
            .arg(LIMIT)
            .arg(member)
            .invoke_async(&mut conn)
            .await
            .map_err(|e| e.to_string())
    }
    .await;
    match r {
        Ok(0) => Ok(()),
        Ok(wait_ms) => Err(ApiError::RateLimited {
            retry_after: u64::try_from(wait_ms)
                .unwrap_or(1000)
                .div_ceil(1000)
                .clamp(1, 60),
        }),
        Err(e) => {
            tracing::warn!(error = %e, "migration create limit unavailable; letting the request through");
            Ok(())
        }
    }
}
