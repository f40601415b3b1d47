//! Redis stream layout: error events go to `{prefix}:errors:{N}`, one
//! stream per shard, the shard chosen by a hash of the tenant. The braces
//! are a Redis Cluster hash tag, so a cluster spreads shards over nodes.
//!
//! An error entry carries many events ([`crate::wire`]), so the backlog is
//! counted in events: `{prefix}:backlog:{N}` is raised by ingest beside
//! each `XADD` and lowered by the workers' acknowledgement script for the
//! entries it deletes, so a twice-processed entry is subtracted once.

use std::sync::LazyLock;

use deadpool_redis::redis::{self, AsyncCommands, Script};
use uuid::Uuid;

use crate::wire;
use crate::Result;

/// Acknowledges and deletes a shard's processed entries and lowers its
/// backlog counter by the events of those it actually deleted.
/// KEYS: stream, counter. ARGV: group, then (entry id, events) pairs.
static ACK_ERRORS: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local gone = 0
for i = 2, #ARGV, 2 do
  redis.call('XACK', KEYS[1], ARGV[1], ARGV[i])
  if redis.call('XDEL', KEYS[1], ARGV[i]) == 1 then gone = gone + tonumber(ARGV[i + 1]) end
end
if gone > 0 then redis.call('DECRBY', KEYS[2], gone) end
return gone
",
    )
});

/// A shard's backlog in events: its counter (reset when the stream is
/// empty, which heals any drift) plus its operations stream's length.
/// KEYS: errors stream, counter, operations stream.
static SHARD_BACKLOG: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local n = tonumber(redis.call('GET', KEYS[2]) or '0') or 0
if redis.call('XLEN', KEYS[1]) == 0 then
  if n ~= 0 then redis.call('SET', KEYS[2], 0) end
  n = 0
end
if n < 0 then n = 0 end
return n + redis.call('XLEN', KEYS[3])
",
    )
});

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

    /// The shard's backlog counter: events in its error stream.
    pub fn backlog_key(&self, shard: u16) -> String {
        format!("{}:backlog:{{{}}}", self.prefix, shard)
    }

    /// Queues, in `pipe`, the append of an envelope holding `events`
    /// events to `shard`'s stream and the matching rise of its counter;
    /// the entry id is the pipeline's reply for this call.
    pub fn append(&self, pipe: &mut redis::Pipeline, shard: u16, envelope: &wire::Envelope<'_>) {
        let events = envelope.events();
        pipe.cmd("XADD")
            .arg(self.errors_key(shard))
            .arg("*")
            .arg(wire::COUNT_FIELD)
            .arg(events)
            .arg(wire::FIELD)
            .arg(envelope);
        pipe.cmd("INCRBY")
            .arg(self.backlog_key(shard))
            .arg(events)
            .ignore();
    }

    /// Acknowledges and deletes processed entries of `shard`'s error
    /// stream, given with their event counts; returns the events deleted
    /// now (entries deleted before count nothing).
    pub async fn ack_errors(
        &self,
        conn: &mut deadpool_redis::Connection,
        shard: u16,
        entries: &[(&str, u32)],
    ) -> Result<u64> {
        if entries.is_empty() {
            return Ok(0);
        }
        let mut inv = ACK_ERRORS.key(self.errors_key(shard));
        inv.key(self.backlog_key(shard)).arg(GROUP);
        for (id, n) in entries {
            inv.arg(*id).arg(*n);
        }
        Ok(inv.invoke_async(conn).await?)
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

    /// Events not yet processed and deleted, over all shards: error events
    /// and finished operations.
    pub async fn backlog(&self, conn: &mut deadpool_redis::Connection) -> Result<u64> {
        let mut total = 0u64;
        for shard in 0..self.shards {
            let n: u64 = SHARD_BACKLOG
                .key(self.errors_key(shard))
                .key(self.backlog_key(shard))
                .key(self.ops_key(shard))
                .invoke_async(conn)
                .await?;
            total += n;
        }
        Ok(total)
    }

    /// Removes every stream of this layout (tests use their own prefix).
    pub async fn destroy(&self, conn: &mut deadpool_redis::Connection) -> Result<()> {
        for key in self.all_stream_keys() {
            let _: () = conn.del(key).await?;
        }
        for shard in 0..self.shards {
            let _: () = conn.del(self.running_key(shard)).await?;
            let _: () = conn.del(self.backlog_key(shard)).await?;
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
