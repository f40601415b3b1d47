//! In-flight tracked operations, held in Redis. Starting records the
//! operation in a hash (timed by Redis's clock, so every node agrees);
//! completing, failing or timing out is one Lua script that removes it,
//! leaves a tombstone (so a second completion is told apart from an unknown
//! id), and appends the finished operation to the operations stream, all
//! atomically. Keys share the shard's hash tag, so a Redis Cluster keeps
//! them in one slot.

use deadpool_redis::redis::{self, Script};
use std::sync::LazyLock;
use uuid::Uuid;

use crate::model::OpStatus;
use crate::streams::StreamLayout;

use crate::Result;

static START: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local t = redis.call('TIME')
local ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('HSET', KEYS[1], 'script_name', ARGV[2], 'script_type', ARGV[3], 'started_ms', ms)
redis.call('EXPIRE', KEYS[1], ARGV[4])
redis.call('ZADD', KEYS[2], ms, ARGV[1])
return ms
",
    )
});

static FINISH: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('EXISTS', KEYS[1]) == 0 then
  if redis.call('EXISTS', KEYS[2]) == 1 then return {'done', redis.call('GET', KEYS[2])} end
  redis.call('ZREM', KEYS[3], ARGV[1])
  return {'missing'}
end
local f = redis.call('HGETALL', KEYS[1])
local h = {}
for i = 1, #f, 2 do h[f[i]] = f[i + 1] end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local started = tonumber(h['started_ms'])
local ev = {
  tenant_id = ARGV[4], operation_id = ARGV[5], script_name = h['script_name'],
  script_type = h['script_type'], status = tonumber(ARGV[2]), started_ms = started,
  completed_ms = now, duration_ms = now - started, origin = 1
}
if ARGV[3] ~= '' then ev['error_message'] = ARGV[3] end
redis.call('XADD', KEYS[4], '*', ARGV[7], cjson.encode(ev))
redis.call('DEL', KEYS[1])
redis.call('SET', KEYS[2], ARGV[2], 'EX', ARGV[6])
redis.call('ZREM', KEYS[3], ARGV[1])
return {'ok', tostring(started), tostring(now), h['script_name'], h['script_type']}
",
    )
});

/// The stream entry field holding a finished operation, as JSON (written
/// by the [`FINISH`] script with `cjson`).
pub const OP_FIELD: &str = "e";

/// How long a completed operation's id is remembered (to answer a second
/// completion clearly).
const TOMBSTONE_SECS: u64 = 7 * 24 * 3600;

/// Where one tenant's operations live in Redis.
pub struct OpKeys {
    pub hash: String,
    pub tombstone: String,
    pub running: String,
    pub stream: String,
    pub member: String,
}

impl StreamLayout {
    pub fn ops_key(&self, shard: u16) -> String {
        format!("{}:ops:{{{}}}", self.prefix, shard)
    }

    pub fn running_key(&self, shard: u16) -> String {
        format!("{}:running:{{{}}}", self.prefix, shard)
    }

    pub fn all_ops_keys(&self) -> Vec<String> {
        (0..self.shards).map(|s| self.ops_key(s)).collect()
    }

    pub fn op_keys(&self, tenant_id: Uuid, operation_id: &str) -> OpKeys {
        let shard = self.shard_of(tenant_id);
        OpKeys {
            hash: format!("{}:op:{{{shard}}}:{tenant_id}:{operation_id}", self.prefix),
            tombstone: format!(
                "{}:opdone:{{{shard}}}:{tenant_id}:{operation_id}",
                self.prefix
            ),
            running: self.running_key(shard),
            stream: self.ops_key(shard),
            member: format!("{tenant_id}:{operation_id}"),
        }
    }
}

/// An operation id: 32 lower-case hex characters.
pub fn new_operation_id() -> String {
    Uuid::new_v4().simple().to_string()
}

pub fn valid_operation_id(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Records a started operation; returns its start (epoch ms, Redis clock).
pub async fn start(
    conn: &mut deadpool_redis::Connection,
    layout: &StreamLayout,
    tenant_id: Uuid,
    operation_id: &str,
    script_name: &str,
    script_type: &str,
    keep_secs: u64,
) -> Result<i64> {
    let k = layout.op_keys(tenant_id, operation_id);
    Ok(START
        .key(&k.hash)
        .key(&k.running)
        .arg(&k.member)
        .arg(script_name)
        .arg(script_type)
        .arg(keep_secs.max(60))
        .invoke_async(conn)
        .await?)
}

/// What finishing an operation found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finish {
    Finished {
        started_ms: i64,
        completed_ms: i64,
        script_name: String,
        script_type: String,
    },
    AlreadyFinished(Option<OpStatus>),
    NotFound,
}

pub async fn finish(
    conn: &mut deadpool_redis::Connection,
    layout: &StreamLayout,
    tenant_id: Uuid,
    operation_id: &str,
    status: OpStatus,
    error_message: Option<&str>,
) -> Result<Finish> {
    let k = layout.op_keys(tenant_id, operation_id);
    let reply: Vec<String> = FINISH
        .key(&k.hash)
        .key(&k.tombstone)
        .key(&k.running)
        .key(&k.stream)
        .arg(&k.member)
        .arg(status as i8)
        .arg(error_message.unwrap_or(""))
        .arg(tenant_id.to_string())
        .arg(operation_id)
        .arg(TOMBSTONE_SECS)
        .arg(OP_FIELD)
        .invoke_async(conn)
        .await?;
    Ok(match reply.first().map(String::as_str) {
        Some("ok") if reply.len() >= 5 => Finish::Finished {
            started_ms: reply[1].parse().unwrap_or_default(),
            completed_ms: reply[2].parse().unwrap_or_default(),
            script_name: reply[3].clone(),
            script_type: reply[4].clone(),
        },
        Some("done") => Finish::AlreadyFinished(
            reply
                .get(1)
                .and_then(|s| s.parse::<i8>().ok())
                .and_then(|v| match v {
                    1 => Some(OpStatus::Completed),
                    2 => Some(OpStatus::Failed),
                    3 => Some(OpStatus::Timeout),
                    _ => None,
                }),
        ),
        _ => Finish::NotFound,
    })
}

/// Operations of a shard started before `before_ms` and still running, as
/// (tenant, operation id).
pub async fn overdue(
    conn: &mut deadpool_redis::Connection,
    layout: &StreamLayout,
    shard: u16,
    before_ms: i64,
    limit: usize,
) -> Result<Vec<(Uuid, String)>> {
    let members: Vec<String> = redis::cmd("ZRANGEBYSCORE")
        .arg(layout.running_key(shard))
        .arg("-inf")
        .arg(format!("({before_ms}"))
        .arg("LIMIT")
        .arg(0)
        .arg(limit)
        .query_async(conn)
        .await?;
    Ok(members
        .into_iter()
        .filter_map(|m| {
            let (t, id) = m.split_once(':')?;
            Some((Uuid::parse_str(t).ok()?, id.to_string()))
        })
        .collect())
}
