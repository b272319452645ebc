//! The bus's streams read as a work queue: a Redis consumer group over the event partitions,
//! so each committed message reaches exactly one node's push dispatcher — and, through a
//! second group read the same way (`search`, lease `parley:searchlease:{p}`), one node's search
//! indexer.
//!
//! - **Group.** `push` on every `parley:ev:{p}`, created at the stream's end the first time a
//!   node with push starts (`XGROUP CREATE … $ MKSTREAM`; other nodes find it there). A node
//!   reads with `XREADGROUP` as consumer `<node id>` and acknowledges (`XACK`) an entry once
//!   no notification waits on it; until then it is in the group's pending list.
//! - **Leases.** One node reads a partition at a time, so one conversation's messages (one
//!   partition) meet in one dispatcher and coalesce. `parley:pushlease:{p}` holds the reader's
//!   id for the lease time, renewed at a third of it. A node takes free partitions up to its
//!   share (partitions / live nodes, rounded up); a lease moves only when its holder stops
//!   renewing (it died, or lost Redis for longer than the lease) — not to balance a node that
//!   joined later.
//! - **Taking over.** A node that takes a partition first claims everything pending in it
//!   (`XAUTOCLAIM … 0`: the previous reader's, or its own from before a restart) and hands
//!   those entries on as replays: the dispatcher checks whether each was pushed already.
//!   Entries trimmed from the stream (`MAXLEN ~` retention) before anyone took them are lost
//!   to push, and counted.

use std::collections::{BTreeSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use parley_types::ConversationId;
use redis::aio::ConnectionManager;
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::BusError;
use super::record::Record;
use super::redis::stream_key;
use crate::event::Class;

/// What a group is read for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Purpose {
    /// Push notifications: group `push`; a shadowed message (its sender's only) is not one.
    Push,
    /// The search index: group `search`; every message, shadowed ones too (their sender
    /// finds them).
    Search,
}

impl Purpose {
    /// The group's name on every stream.
    fn group(self) -> &'static str {
        match self {
            Purpose::Push => "push",
            Purpose::Search => "search",
        }
    }
}
/// Entries claimed per `XAUTOCLAIM`.
const CLAIM_BATCH: usize = 256;

/// Takes the lease `KEYS[1]` for `ARGV[1]` for `ARGV[2]` ms when it is free or already its
/// own (renewal): 1 when it holds it now.
const LEASE: &str = r"
local v = redis.call('GET', KEYS[1])
if v == false then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
if v == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
";

fn lease_key(purpose: Purpose, p: u32) -> String {
    format!("parley:{}lease:{{{p}}}", purpose.group())
}

fn err(e: redis::RedisError) -> BusError {
    BusError(e.to_string())
}

/// One entry handed to this node.
#[derive(Clone, Debug)]
pub(crate) struct GroupEntry {
    pub(crate) partition: u32,
    pub(crate) id: String,
    /// The message it announces (`None`: not a message, or from a node too old to say).
    pub(crate) at: Option<(ConversationId, u64)>,
    /// Handed out before (claimed from a pending list).
    pub(crate) replay: bool,
}

struct State {
    created: bool,
    owned: BTreeSet<u32>,
    last_lease: Option<Instant>,
    /// Entries claimed or read, not handed out yet.
    claimed: VecDeque<GroupEntry>,
}

/// This node's reader of the group.
pub(crate) struct StreamGroup {
    purpose: Purpose,
    conn: ConnectionManager,
    me: u16,
    partitions: u32,
    lease: Duration,
    state: Mutex<State>,
    owned: AtomicU64,
    /// Pending entries gone from the stream before anyone pushed them.
    pub(crate) lost: AtomicU64,
}

impl StreamGroup {
    /// Connects to `url` (Redis must be reachable at start; later outages are retried by
    /// the caller). `lease`: how long a partition stays this node's without renewal.
    pub(crate) async fn connect(
        purpose: Purpose,
        url: &str,
        me: u16,
        partitions: u32,
        lease: Duration,
    ) -> Result<Self, BusError> {
        let client = redis::Client::open(url).map_err(err)?;
        let conn = ConnectionManager::new(client).await.map_err(err)?;
        Ok(Self {
            purpose,
            conn,
            me,
            partitions,
            lease,
            state: Mutex::new(State {
                created: false,
                owned: BTreeSet::new(),
                last_lease: None,
                claimed: VecDeque::new(),
            }),
            owned: AtomicU64::new(0),
            lost: AtomicU64::new(0),
        })
    }

    /// Partitions this node reads now.
    pub(crate) fn owned(&self) -> u64 {
        self.owned.load(Ordering::Relaxed)
    }

    /// Up to `max` entries (`max` ≥ 1): claimed ones first, then new ones of the partitions
    /// held.
    pub(crate) async fn take(&self, max: usize) -> Result<Vec<GroupEntry>, BusError> {
        let mut s = self.state.lock().await;
        if !s.created {
            self.create().await?;
            s.created = true;
        }
        if s.last_lease.is_none_or(|t| t.elapsed() >= self.lease / 3) {
            self.leases(&mut s).await?;
            s.last_lease = Some(Instant::now());
        }
        if !s.claimed.is_empty() {
            let n = max.min(s.claimed.len());
            return Ok(s.claimed.drain(..n).collect());
        }
        if s.owned.is_empty() {
            return Ok(Vec::new());
        }
        let mut cmd = redis::cmd("XREADGROUP");
        cmd.arg("GROUP")
            .arg(self.purpose.group())
            .arg(self.me)
            .arg("COUNT")
            .arg(max.max(1))
            .arg("STREAMS");
        for p in &s.owned {
            cmd.arg(stream_key(*p));
        }
        for _ in &s.owned {
            cmd.arg(">");
        }
        let reply: Option<redis::streams::StreamReadReply> =
            cmd.query_async(&mut self.conn.clone()).await.map_err(err)?;
        let mut out = Vec::new();
        for key in reply.map(|r| r.keys).unwrap_or_default() {
            let Some(partition) = s.owned.iter().copied().find(|p| stream_key(*p) == key.key)
            else {
                continue;
            };
            for e in key.ids {
                out.push(entry(self.purpose, partition, e, false));
            }
        }
        // COUNT is per stream: what is beyond `max` waits here (pending to this node already)
        // for the next take.
        if out.len() > max {
            s.claimed.extend(out.drain(max..));
        }
        Ok(out)
    }

    /// Acknowledges entries (any node may: the group forgets them).
    pub(crate) async fn ack(&self, ids: &[(u32, String)]) -> Result<(), BusError> {
        if ids.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for (p, id) in ids {
            pipe.cmd("XACK")
                .arg(stream_key(*p))
                .arg(self.purpose.group())
                .arg(id)
                .ignore();
        }
        pipe.query_async::<()>(&mut self.conn.clone())
            .await
            .map_err(err)
    }

    /// Creates the group on every partition where it is missing.
    async fn create(&self) -> Result<(), BusError> {
        for p in 0..self.partitions {
            let made: redis::RedisResult<()> = redis::cmd("XGROUP")
                .arg("CREATE")
                .arg(stream_key(p))
                .arg(self.purpose.group())
                .arg("$")
                .arg("MKSTREAM")
                .query_async(&mut self.conn.clone())
                .await;
            match made {
                Ok(()) => {}
                Err(e) if e.code() == Some("BUSYGROUP") => {}
                Err(e) => return Err(err(e)),
            }
        }
        Ok(())
    }

    /// Renews the leases held, takes free ones up to this node's share, and claims what is
    /// pending in each partition newly taken.
    async fn leases(&self, s: &mut State) -> Result<(), BusError> {
        let ms = u64::try_from(self.lease.as_millis()).unwrap_or(u64::MAX);
        let mut conn = self.conn.clone();
        let mut kept = BTreeSet::new();
        for p in s.owned.clone() {
            if self.lease_one(&mut conn, p, ms).await? {
                kept.insert(p);
            } else {
                tracing::warn!(
                    partition = p,
                    group = self.purpose.group(),
                    "lost a queue partition's lease"
                );
            }
        }
        s.owned = kept;
        let share = self
            .partitions
            .div_ceil(self.live_nodes(&mut conn).await?.max(1));
        // Start the search at a place of our own, so nodes starting together do not all
        // contend for partition 0 first.
        let start = u32::from(self.me) % self.partitions.max(1);
        for i in 0..self.partitions {
            if s.owned.len() >= share as usize {
                break;
            }
            let p = (start + i) % self.partitions;
            if s.owned.contains(&p) || !self.lease_one(&mut conn, p, ms).await? {
                continue;
            }
            self.claim(&mut conn, p, &mut s.claimed).await?;
            s.owned.insert(p);
        }
        self.owned.store(s.owned.len() as u64, Ordering::Relaxed);
        Ok(())
    }

    async fn lease_one(
        &self,
        conn: &mut ConnectionManager,
        p: u32,
        ms: u64,
    ) -> Result<bool, BusError> {
        let held: i64 = redis::cmd("EVAL")
            .arg(LEASE)
            .arg(1)
            .arg(lease_key(self.purpose, p))
            .arg(self.me)
            .arg(ms)
            .query_async(conn)
            .await
            .map_err(err)?;
        Ok(held == 1)
    }

    /// Nodes with a live heartbeat (see `RedisLog::heartbeat`).
    async fn live_nodes(&self, conn: &mut ConnectionManager) -> Result<u32, BusError> {
        let nodes: Vec<u16> = redis::cmd("SMEMBERS")
            .arg(super::redis::NODES)
            .query_async(conn)
            .await
            .map_err(err)?;
        if nodes.is_empty() {
            return Ok(1);
        }
        let mut pipe = redis::pipe();
        for n in &nodes {
            pipe.exists(super::redis::node_key(*n));
        }
        let alive: Vec<bool> = pipe.query_async(conn).await.map_err(err)?;
        Ok(alive.iter().filter(|a| **a).count().max(1) as u32)
    }

    /// Claims everything pending in partition `p` for this node.
    async fn claim(
        &self,
        conn: &mut ConnectionManager,
        p: u32,
        into: &mut VecDeque<GroupEntry>,
    ) -> Result<(), BusError> {
        let mut from = "0-0".to_owned();
        loop {
            let reply: redis::streams::StreamAutoClaimReply = redis::cmd("XAUTOCLAIM")
                .arg(stream_key(p))
                .arg(self.purpose.group())
                .arg(self.me)
                .arg(0)
                .arg(&from)
                .arg("COUNT")
                .arg(CLAIM_BATCH)
                .query_async(conn)
                .await
                .map_err(err)?;
            self.lost
                .fetch_add(reply.deleted_ids.len() as u64, Ordering::Relaxed);
            let purpose = self.purpose;
            into.extend(
                reply
                    .claimed
                    .into_iter()
                    .map(|e| entry(purpose, p, e, true)),
            );
            if reply.next_stream_id == "0-0" {
                return Ok(());
            }
            from = reply.next_stream_id;
        }
    }
}

/// What one stream entry announces.
fn entry(
    purpose: Purpose,
    partition: u32,
    e: redis::streams::StreamId,
    replay: bool,
) -> GroupEntry {
    let at = match e.map.get("e") {
        Some(redis::Value::BulkString(b)) => message_at(purpose, Bytes::copy_from_slice(b)),
        _ => None,
    };
    GroupEntry {
        partition,
        id: e.id,
        at,
        replay,
    }
}

/// The message a record announces to its conversation's participants.
fn message_at(purpose: Purpose, bytes: Bytes) -> Option<(ConversationId, u64)> {
    let Record::Event(e) = Record::decode(bytes)? else {
        return None;
    };
    match e.class {
        Class::Message { conversation, seq }
            if seq > 0 && (purpose == Purpose::Search || !e.actor_only) =>
        {
            Some((conversation, seq))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use parley_testsupport::RedisServer;

    use super::*;

    /// XREADGROUP's COUNT is per stream: a take never hands out more than asked, and what it
    /// read beyond comes with the next takes, each entry once.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_take_hands_out_at_most_max_and_keeps_the_rest() {
        let redis = RedisServer::start();
        let g = StreamGroup::connect(Purpose::Search, &redis.url(), 1, 4, Duration::from_secs(3))
            .await
            .expect("connect");
        assert!(
            g.take(10).await.expect("take").is_empty(),
            "created at the end"
        );
        let mut conn = g.conn.clone();
        for p in 0..4 {
            for i in 0..10 {
                let _: String = redis::cmd("XADD")
                    .arg(stream_key(p))
                    .arg("*")
                    .arg("n")
                    .arg(i)
                    .query_async(&mut conn)
                    .await
                    .expect("xadd");
            }
        }
        let mut seen = HashSet::new();
        loop {
            let taken = g.take(7).await.expect("take");
            assert!(taken.len() <= 7, "{} handed out", taken.len());
            if taken.is_empty() {
                break;
            }
            for e in taken {
                assert!(seen.insert((e.partition, e.id)), "handed out twice");
            }
        }
        assert_eq!(seen.len(), 40);
    }
}
