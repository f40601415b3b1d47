//! Redis stream layout: error events go to `{prefix}:errors:{N}`, one
//! stream per shard, the shard chosen by a hash of the tenant. The braces
//! are a Redis Cluster hash tag, so a cluster spreads shards over nodes.

use deadpool_redis::redis::{self, AsyncCommands};
use uuid::Uuid;

use crate::Result;

/// The consumer group every worker joins.
pub const GROUP: &str = "sluice-workers";

/// Where a deployment's streams live.
#[derive(Debug, Clone)]
pub struct StreamLayout {
    pub prefix: String,
    pub shards: u16,
}

impl StreamLayout {
    pub fn new(prefix: impl Into<String>, shards: u16) -> Self {
        Self {
            prefix: prefix.into(),
            shards: shards.max(1),
        }
    }

    pub fn shard_of(&self, tenant_id: Uuid) -> u16 {
        (xxhash_rust::xxh3::xxh3_64(tenant_id.as_bytes()) % u64::from(self.shards)) as u16
    }

    pub fn errors_key(&self, shard: u16) -> String {
        format!("{}:errors:{{{}}}", self.prefix, shard)
    }

    pub fn all_error_keys(&self) -> Vec<String> {
        (0..self.shards).map(|s| self.errors_key(s)).collect()
    }

    /// Every stream consumed by the workers: errors and operations.
    pub fn all_stream_keys(&self) -> Vec<String> {
        let mut keys = self.all_error_keys();
        keys.extend(self.all_ops_keys());
        keys
    }

    /// Creates the consumer group on every stream (and the stream with it).
    pub async fn ensure_groups(&self, conn: &mut deadpool_redis::Connection) -> Result<()> {
        for key in self.all_stream_keys() {
            let res: redis::RedisResult<()> = redis::cmd("XGROUP")
                .arg("CREATE")
                .arg(&key)
                .arg(GROUP)
                .arg("0")
                .arg("MKSTREAM")
                .query_async(conn)
                .await;
            match res {
                Ok(()) => {}
                Err(e) if e.code() == Some("BUSYGROUP") => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Entries not yet processed and deleted, over all shards.
    pub async fn backlog(&self, conn: &mut deadpool_redis::Connection) -> Result<u64> {
        let mut pipe = redis::pipe();
        for key in self.all_stream_keys() {
            pipe.xlen(key);
        }
        let lens: Vec<u64> = pipe.query_async(conn).await?;
        Ok(lens.into_iter().sum())
    }

    /// Removes every stream of this layout (tests use their own prefix).
    pub async fn destroy(&self, conn: &mut deadpool_redis::Connection) -> Result<()> {
        for key in self.all_stream_keys() {
            let _: () = conn.del(key).await?;
        }
        for shard in 0..self.shards {
            let _: () = conn.del(self.running_key(shard)).await?;
        }
        Ok(())
    }
}

/// Milliseconds part of a stream entry id (`1700000000000-3`).
pub fn entry_millis(id: &str) -> Option<i64> {
    id.split('-').next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_carry_hash_tags() {
        let l = StreamLayout::new("sluice", 8);
        assert_eq!(l.errors_key(7), "sluice:errors:{7}");
        assert!(l.shard_of(Uuid::from_u128(42)) < 8);
        assert_eq!(entry_millis("1700000000000-3"), Some(1_700_000_000_000));
    }
}
