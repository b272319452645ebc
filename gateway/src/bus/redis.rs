//! The bus's log on Redis: Streams for the events, plain keys for presence.
//!
//! - `parley:ev:{p}`: partition `p`'s stream (the `{p}` hash tag spreads partitions over a
//!   Redis Cluster's slots), `XADD … MAXLEN ~ N`. Readers block in `XREAD` on a connection of
//!   their own with no response timeout (a blocking read outlives the client's default 500 ms).
//! - `parley:node:{id}` heartbeat (TTL), `parley:nodes` the known nodes, `parley:pres:{user}`
//!   node → session count, `parley:nodeusers:{id}` the users a node counts, `parley:seen:{user}`
//!   when the user was last seen, `parley:reap:{id}` the claim to reap a dead node (`SET NX EX`).

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use redis::AsyncCommands;
use redis::aio::{ConnectionManager, MultiplexedConnection};

use super::{BusError, Log, LogReader};

/// Records read per `XREAD`.
const READ_BATCH: usize = 512;
/// How long a reap claim holds.
const CLAIM_SECS: u64 = 30;

pub(super) fn stream_key(p: u32) -> String {
    format!("parley:ev:{{{p}}}")
}

pub(super) fn node_key(id: u16) -> String {
    format!("parley:node:{id}")
}

fn presence_key(user: &str) -> String {
    format!("parley:pres:{user}")
}

fn node_users_key(id: u16) -> String {
    format!("parley:nodeusers:{id}")
}

fn seen_key(user: &str) -> String {
    format!("parley:seen:{user}")
}

pub(super) const NODES: &str = "parley:nodes";

fn err(e: redis::RedisError) -> BusError {
    BusError(e.to_string())
}

/// The log on one Redis (or a Redis Cluster through hash tags).
pub(crate) struct RedisLog {
    client: redis::Client,
    commands: ConnectionManager,
}

impl RedisLog {
    /// Connects (Redis must be reachable at start; later outages are survived).
    pub(crate) async fn connect(url: &str) -> Result<Self, BusError> {
        let client = redis::Client::open(url).map_err(err)?;
        let commands = ConnectionManager::new(client.clone()).await.map_err(err)?;
        Ok(Self { client, commands })
    }

    fn conn(&self) -> ConnectionManager {
        self.commands.clone()
    }
}

#[async_trait]
impl Log for RedisLog {
    async fn append(&self, records: &[(u32, Bytes)], retention: u64) -> Result<(), BusError> {
        let mut pipe = redis::pipe();
        for (p, bytes) in records {
            pipe.cmd("XADD")
                .arg(stream_key(*p))
                .arg("MAXLEN")
                .arg("~")
                .arg(retention)
                .arg("*")
                .arg("e")
                .arg(bytes.as_ref())
                .ignore();
        }
        pipe.query_async::<()>(&mut self.conn()).await.map_err(err)
    }

    fn reader(&self, partitions: u32) -> Box<dyn LogReader> {
        Box::new(RedisReader {
            client: self.client.clone(),
            conn: None,
            keys: (0..partitions).map(stream_key).collect(),
            ids: Vec::new(),
        })
    }

    async fn session_opened(&self, user: &str, node: u16) -> Result<i64, BusError> {
        let (mine,): (i64,) = redis::pipe()
            .hincr(presence_key(user), node, 1)
            .sadd(node_users_key(node), user)
            .ignore()
            .query_async(&mut self.conn())
            .await
            .map_err(err)?;
        Ok(mine)
    }

    async fn session_closed(&self, user: &str, node: u16) -> Result<i64, BusError> {
        let mut conn = self.conn();
        let mine: i64 = conn
            .hincr(presence_key(user), node, -1)
            .await
            .map_err(err)?;
        if mine <= 0 {
            redis::pipe()
                .hdel(presence_key(user), node)
                .srem(node_users_key(node), user)
                .query_async::<()>(&mut conn)
                .await
                .map_err(err)?;
        }
        Ok(mine.max(0))
    }

    async fn session_counts(&self, users: &[&str]) -> Result<Vec<Vec<(u16, i64)>>, BusError> {
        if users.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for user in users {
            pipe.hgetall(presence_key(user));
        }
        pipe.query_async(&mut self.conn()).await.map_err(err)
    }

    async fn heartbeat(&self, node: u16, ttl: Duration) -> Result<(), BusError> {
        redis::pipe()
            .cmd("SET")
            .arg(node_key(node))
            .arg(crate::clock::wall_ms())
            .arg("PX")
            .arg(ttl.as_millis() as u64)
            .ignore()
            .sadd(NODES, node)
            .ignore()
            .query_async(&mut self.conn())
            .await
            .map_err(err)
    }

    async fn alive(&self, nodes: &[u16]) -> Result<Vec<bool>, BusError> {
        if nodes.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = nodes.iter().map(|n| node_key(*n)).collect();
        let alive: Vec<Option<String>> = redis::cmd("MGET")
            .arg(keys)
            .query_async(&mut self.conn())
            .await
            .map_err(err)?;
        Ok(alive.into_iter().map(|a| a.is_some()).collect())
    }

    async fn nodes(&self) -> Result<Vec<u16>, BusError> {
        self.conn().smembers(NODES).await.map_err(err)
    }

    async fn claim(&self, dead: u16, me: u16) -> Result<bool, BusError> {
        let claimed: Option<String> = redis::cmd("SET")
            .arg(format!("parley:reap:{dead}"))
            .arg(me)
            .arg("NX")
            .arg("EX")
            .arg(CLAIM_SECS)
            .query_async(&mut self.conn())
            .await
            .map_err(err)?;
        Ok(claimed.is_some())
    }

    async fn node_users(&self, node: u16) -> Result<Vec<String>, BusError> {
        self.conn()
            .smembers(node_users_key(node))
            .await
            .map_err(err)
    }

    async fn drop_counts(&self, node: u16, users: &[String]) -> Result<(), BusError> {
        if users.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for user in users {
            pipe.hdel(presence_key(user), node).ignore();
        }
        pipe.query_async(&mut self.conn()).await.map_err(err)
    }

    async fn forget_node(&self, node: u16) -> Result<(), BusError> {
        redis::pipe()
            .del(node_users_key(node))
            .srem(NODES, node)
            .query_async(&mut self.conn())
            .await
            .map_err(err)
    }

    async fn set_seen(&self, user: &str, at_ms: i64) -> Result<(), BusError> {
        self.conn().set(seen_key(user), at_ms).await.map_err(err)
    }

    async fn seen(&self, users: &[&str]) -> Result<Vec<Option<i64>>, BusError> {
        if users.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = users.iter().map(|u| seen_key(u)).collect();
        redis::cmd("MGET")
            .arg(keys)
            .query_async(&mut self.conn())
            .await
            .map_err(err)
    }

    async fn leave(&self, node: u16) -> Result<(), BusError> {
        redis::pipe()
            .del(node_key(node))
            .srem(NODES, node)
            .query_async(&mut self.conn())
            .await
            .map_err(err)
    }

    async fn window_add(
        &self,
        key: &str,
        member: &str,
        now_ms: i64,
        window_ms: i64,
    ) -> Result<u64, BusError> {
        // One round trip, applied as one (MULTI): a sorted set scored by time.
        let (count,): (u64,) = redis::pipe()
            .atomic()
            .zadd(key, member, now_ms)
            .ignore()
            .zrembyscore(key, "-inf", now_ms - window_ms)
            .ignore()
            .zcard(key)
            .pexpire(key, window_ms)
            .ignore()
            .query_async(&mut self.conn())
            .await
            .map_err(err)?;
        Ok(count)
    }
}

/// Reads every partition's stream from the last id seen.
struct RedisReader {
    client: redis::Client,
    conn: Option<MultiplexedConnection>,
    keys: Vec<String>,
    /// The last id read per partition (empty until the first `resume`).
    ids: Vec<String>,
}

#[async_trait]
impl LogReader for RedisReader {
    async fn connect(&mut self) -> Result<bool, BusError> {
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            // A blocking XREAD must not hit the default 500 ms response timeout.
            .set_response_timeout(None);
        let conn = self
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(err)?;
        let conn = self.conn.insert(conn);
        if self.ids.is_empty() {
            // First connect: start at each stream's end (earlier events predate this node's
            // sessions; clients resume from storage).
            for k in &self.keys {
                let last: redis::streams::StreamRangeReply = redis::cmd("XREVRANGE")
                    .arg(k)
                    .arg("+")
                    .arg("-")
                    .arg("COUNT")
                    .arg(1)
                    .query_async(conn)
                    .await
                    .map_err(err)?;
                let id = last.ids.first().map(|e| e.id.clone());
                self.ids.push(id.unwrap_or_else(|| "0-0".to_owned()));
            }
            return Ok(false);
        }
        let mut missed = false;
        for (k, last) in self.keys.iter().zip(&self.ids) {
            if last != "0-0" && !still_there(conn, k, last).await? {
                missed = true;
            }
        }
        Ok(missed)
    }

    async fn read(&mut self, block: Duration) -> Result<Vec<Bytes>, BusError> {
        let mut cmd = redis::cmd("XREAD");
        cmd.arg("COUNT")
            .arg(READ_BATCH)
            .arg("BLOCK")
            .arg(block.as_millis() as u64)
            .arg("STREAMS");
        for k in &self.keys {
            cmd.arg(k);
        }
        for id in &self.ids {
            cmd.arg(id);
        }
        let conn = self
            .conn
            .as_mut()
            .ok_or_else(|| BusError("not connected".into()))?;
        let reply: Option<redis::streams::StreamReadReply> = match cmd.query_async(conn).await {
            Ok(r) => r,
            Err(e) => {
                self.conn = None;
                return Err(err(e));
            }
        };
        let mut out = Vec::new();
        for key in reply.map(|r| r.keys).unwrap_or_default() {
            let Some(i) = self.keys.iter().position(|k| *k == key.key) else {
                continue;
            };
            for entry in key.ids {
                self.ids[i] = entry.id.clone();
                if let Some(redis::Value::BulkString(b)) = entry.map.get("e") {
                    out.push(Bytes::copy_from_slice(b));
                }
            }
        }
        Ok(out)
    }
}

/// Whether reading on after `last` in stream `k` misses nothing. Streams lose entries only
/// from the head: if the last entry read is still there, everything after it is too. If it is
/// gone, being trimmed exactly up to it is harmless; trimmed further, or lost (a Redis restart
/// without persistence: the stream, and so its XINFO, is gone), means events were missed.
async fn still_there(
    conn: &mut MultiplexedConnection,
    k: &str,
    last: &str,
) -> Result<bool, BusError> {
    let here: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
        .arg(k)
        .arg(last)
        .arg(last)
        .query_async(conn)
        .await
        .map_err(err)?;
    if !here.ids.is_empty() {
        return Ok(true);
    }
    let info: redis::RedisResult<redis::Value> = redis::cmd("XINFO")
        .arg("STREAM")
        .arg(k)
        .query_async(conn)
        .await;
    let deleted = info.ok().and_then(|i| field(&i, "max-deleted-entry-id"));
    Ok(deleted.as_deref() == Some(last))
}

/// A string field of a key/value reply (RESP2 flat array or RESP3 map).
fn field(reply: &redis::Value, name: &str) -> Option<String> {
    let text = |v: &redis::Value| match v {
        redis::Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        redis::Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    };
    match reply {
        redis::Value::Array(items) => items
            .chunks(2)
            .find(|kv| kv.first().and_then(text).as_deref() == Some(name))
            .and_then(|kv| kv.get(1).and_then(text)),
        redis::Value::Map(pairs) => pairs
            .iter()
            .find(|(k, _)| text(k).as_deref() == Some(name))
            .and_then(|(_, v)| text(v)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_keys_are_hash_tagged_per_partition() {
        assert_eq!(stream_key(3), "parley:ev:{3}");
    }
}
