//! Running as a cluster: fan-out between nodes over Redis Streams, and presence across nodes.
//!
//! Nothing here is home-made distribution: Redis Streams keep the events and the readers'
//! positions make catching up after an outage a matter of reading on from the last id.
//!
//! - **Streams.** `P` partitions (`parley:ev:{p}`, the `{p}` hash tag spreads them over a Redis
//!   Cluster's slots); an event goes to partition `hash(conversation) % P` (presence:
//!   `hash(user) % P`) with `XADD … MAXLEN ~ N`. Every node reads every partition from the
//!   last id it saw, on a connection of its own with no response timeout (a blocking `XREAD`
//!   outlives the client's default 500 ms), and skips the events it published itself.
//! - **Outages.** Publishing never blocks a session: events queue (bounded) while Redis is
//!   away and are written when it returns. The reader reconnects with backoff and reads on from
//!   its last ids. If events it never read are gone — trimmed past retention, or lost with a
//!   Redis restart — it says so (log and `parley_bus_gaps_total`) and asks its local sessions
//!   to reconnect and resume, so clients recover what they missed from storage.
//! - **Presence.** Each node keeps a heartbeat key with a TTL and, per user, its count of
//!   sessions in a hash (`parley:pres:{user}` → node → count). A user is online while any live
//!   node has a session. Nodes check each other's heartbeats; when one dies, one survivor
//!   (elected with `SET NX`) takes its users offline for everyone, within the TTL.

pub mod event;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use parley_types::ConversationId;
use redis::AsyncCommands;
use redis::aio::{ConnectionManager, MultiplexedConnection};
use tokio::sync::{mpsc, oneshot};

use crate::clock::wall_ms;
use crate::hub::Event;
use crate::metrics::Metrics;
use crate::node::Node;
use crate::outbox::Class;
use event::{BusEvent, Record, Target};

/// Longest a Send's Ack waits for its event to reach Redis ([`Cluster::wait_written`]).
const PUBLISH_WAIT: Duration = Duration::from_millis(250);
/// Events written per Redis round trip.
const PUBLISH_BATCH: usize = 256;
/// Events read per `XREAD`.
const READ_BATCH: usize = 512;

/// Cluster settings.
#[derive(Clone, Debug)]
pub struct ClusterConfig {
    pub redis_url: String,
    pub node_id: u16,
    pub partitions: u32,
    pub stream_maxlen: u64,
    /// Events waiting to be written to Redis (while it is away, for example); beyond this the
    /// newest are dropped and counted, and once Redis takes writes again a resync
    /// marker tells every other node to have its sessions resume from storage.
    pub publish_queue: usize,
    /// A node whose heartbeat is older than this is dead; its users go offline.
    pub presence_ttl: Duration,
}

/// Online state across the cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClusterPresence {
    pub online: bool,
    pub last_seen_ms: i64,
}

fn stream_key(p: u32) -> String {
    format!("parley:ev:{{{p}}}")
}

fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// An event waiting for the publisher, and who wants to know when Redis has it.
struct Queued {
    event: BusEvent,
    written: Option<oneshot::Sender<()>>,
}

/// A node's link to the cluster.
pub struct Cluster {
    config: ClusterConfig,
    client: redis::Client,
    commands: ConnectionManager,
    publish_tx: mpsc::Sender<Queued>,
    publish_rx: Mutex<Option<mpsc::Receiver<Queued>>>,
    metrics: Arc<Metrics>,
    connected: AtomicBool,
    /// Set when `publish` dropped an event; cleared when the resync marker is written.
    lost_events: AtomicBool,
    pub stats: ClusterStats,
}

/// Counters for `/metrics`.
#[derive(Default)]
pub struct ClusterStats {
    pub published: AtomicU64,
    pub received: AtomicU64,
    pub dropped: AtomicU64,
    pub gaps: AtomicU64,
    pub duplicates: AtomicU64,
}

impl Cluster {
    /// Connects to Redis (it must be reachable at start; later outages are survived).
    pub async fn connect(
        config: ClusterConfig,
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<Arc<Self>> {
        let client = redis::Client::open(config.redis_url.as_str())?;
        let commands = ConnectionManager::new(client.clone()).await?;
        let (publish_tx, publish_rx) = mpsc::channel(config.publish_queue);
        Ok(Arc::new(Self {
            config,
            client,
            commands,
            publish_tx,
            publish_rx: Mutex::new(Some(publish_rx)),
            metrics,
            connected: AtomicBool::new(true),
            lost_events: AtomicBool::new(false),
            stats: ClusterStats::default(),
        }))
    }

    pub fn node_id(&self) -> u16 {
        self.config.node_id
    }

    /// Whether the reader is connected to Redis now.
    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    /// Starts the publisher, the reader and the presence keeper on `handle`'s runtime.
    pub fn start(self: &Arc<Self>, handle: &tokio::runtime::Handle, node: Arc<Node>) {
        if let Some(rx) = self
            .publish_rx
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            handle.spawn(self.clone().publisher(rx));
        }
        handle.spawn(self.clone().reader(node.clone()));
        handle.spawn(self.clone().presence_keeper(node));
    }

    /// Queues an event for the other nodes; never waits.
    pub fn publish(&self, target: Target, event: &Event, invalidate: Option<ConversationId>) {
        self.enqueue(target, event, invalidate, None);
    }

    /// Queues an event like [`Cluster::publish`]; the receiver completes once Redis has it
    /// (and fails if the event was dropped). See [`Cluster::wait_written`].
    pub fn publish_confirmed(&self, target: Target, event: &Event) -> oneshot::Receiver<()> {
        let (tx, rx) = oneshot::channel();
        self.enqueue(target, event, None, Some(tx));
        rx
    }

    /// Waits until Redis has the event behind `written` — so that a node dying right after an
    /// Ack does not take the event with it — but never longer than [`PUBLISH_WAIT`], and not
    /// at all while Redis is unreachable (sending must keep working then).
    pub async fn wait_written(&self, written: oneshot::Receiver<()>) {
        if self.is_connected() {
            let _ = tokio::time::timeout(PUBLISH_WAIT, written).await;
        }
    }

    fn enqueue(
        &self,
        target: Target,
        event: &Event,
        invalidate: Option<ConversationId>,
        written: Option<oneshot::Sender<()>>,
    ) {
        let e = BusEvent {
            origin: self.config.node_id,
            sent_at_ms: wall_ms(),
            kind: event.kind,
            class: event.class,
            target,
            invalidate,
            frame: event.frame.clone(),
        };
        if self
            .publish_tx
            .try_send(Queued { event: e, written })
            .is_err()
        {
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
            if !self.lost_events.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    "cluster bus: publish queue full, events dropped; other nodes' clients will \
                     resume from storage once Redis takes writes again"
                );
            }
        }
    }

    fn partition_of(&self, e: &BusEvent) -> u32 {
        let h = match &e.target {
            Target::Conversation { id, .. } => fnv(id.as_bytes()),
            Target::Users(users) => match &e.class {
                Class::Message { conversation, .. } => fnv(conversation.as_bytes()),
                _ => fnv(users.first().map_or(&[][..], |u| u.as_bytes())),
            },
        };
        (h % u64::from(self.config.partitions.max(1))) as u32
    }

    /// Appends `e` to partition `p`'s stream, trimmed to about `stream_maxlen` entries.
    fn xadd(&self, pipe: &mut redis::Pipeline, p: u32, e: &Record) {
        pipe.cmd("XADD")
            .arg(stream_key(p))
            .arg("MAXLEN")
            .arg("~")
            .arg(self.config.stream_maxlen)
            .arg("*")
            .arg("e")
            .arg(e.encode().as_ref())
            .ignore();
    }

    /// Writes queued events in batches; on failure keeps the batch and retries with backoff.
    async fn publisher(self: Arc<Self>, mut rx: mpsc::Receiver<Queued>) {
        let mut conn = self.commands.clone();
        let mut batch = Vec::with_capacity(PUBLISH_BATCH);
        while rx.recv_many(&mut batch, PUBLISH_BATCH).await > 0 {
            let mut pipe = redis::pipe();
            for q in &batch {
                self.xadd(
                    &mut pipe,
                    self.partition_of(&q.event),
                    &Record::Event(q.event.clone()),
                );
            }
            if self.lost_events.swap(false, Ordering::Relaxed) {
                // Written after the surviving events of this batch: whoever reads it has
                // everything that was not dropped, and resumes from storage for the rest.
                let marker = Record::Resync {
                    origin: self.config.node_id,
                };
                // One partition is enough: every node reads them all.
                self.xadd(&mut pipe, 0, &marker);
            }
            let mut backoff = Duration::from_millis(50);
            loop {
                match pipe.query_async::<()>(&mut conn).await {
                    Ok(()) => break,
                    Err(e) => {
                        tracing::warn!(error = %e, queued = rx.len(), "cluster bus: publish failed, retrying");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(2));
                    }
                }
            }
            self.stats
                .published
                .fetch_add(batch.len() as u64, Ordering::Relaxed);
            for q in batch.drain(..) {
                if let Some(written) = q.written {
                    let _ = written.send(());
                }
            }
        }
    }

    async fn reader_connection(&self) -> redis::RedisResult<MultiplexedConnection> {
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            // A blocking XREAD must not hit the default 500 ms response timeout.
            .set_response_timeout(None);
        self.client
            .get_multiplexed_async_connection_with_config(&config)
            .await
    }

    /// Reads every partition from the last id seen, forever; reconnects with backoff.
    async fn reader(self: Arc<Self>, node: Arc<Node>) {
        let keys: Vec<String> = (0..self.config.partitions).map(stream_key).collect();
        let mut ids: Vec<String> = Vec::new();
        let mut backoff = Duration::from_millis(100);
        loop {
            let mut conn = match self.reader_connection().await {
                Ok(c) => c,
                Err(e) => {
                    self.connected.store(false, Ordering::Relaxed);
                    tracing::warn!(error = %e, "cluster bus: Redis unreachable, retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    continue;
                }
            };
            backoff = Duration::from_millis(100);
            match self.resume_point(&mut conn, &keys, &mut ids).await {
                Ok(gap) => {
                    if gap {
                        self.stats.gaps.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(
                            "cluster bus: events were lost while this node was away (trimmed \
                             past retention, or Redis restarted); local clients reconnect and \
                             resume from storage"
                        );
                        node.resync();
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cluster bus: cannot resume reading");
                    tokio::time::sleep(backoff).await;
                    continue;
                }
            }
            if !self.connected.swap(true, Ordering::Relaxed) {
                tracing::info!("cluster bus: Redis is back; reading on from the last ids");
            }
            loop {
                let mut cmd = redis::cmd("XREAD");
                cmd.arg("COUNT")
                    .arg(READ_BATCH)
                    .arg("BLOCK")
                    .arg(2000)
                    .arg("STREAMS");
                for k in &keys {
                    cmd.arg(k);
                }
                for id in &ids {
                    cmd.arg(id);
                }
                let reply: redis::RedisResult<Option<redis::streams::StreamReadReply>> =
                    cmd.query_async(&mut conn).await;
                match reply {
                    Ok(Some(reply)) => {
                        for key in reply.keys {
                            let Some(i) = keys.iter().position(|k| *k == key.key) else {
                                continue;
                            };
                            for entry in key.ids {
                                ids[i] = entry.id.clone();
                                if let Some(redis::Value::BulkString(b)) = entry.map.get("e") {
                                    self.deliver(&node, Bytes::copy_from_slice(b)).await;
                                }
                            }
                        }
                    }
                    Ok(None) => {}
                    Err(e) => {
                        self.connected.store(false, Ordering::Relaxed);
                        tracing::warn!(error = %e, "cluster bus: lost Redis, reconnecting");
                        break;
                    }
                }
            }
        }
    }

    /// Where to read from after (re)connecting: the last ids seen, or the streams' ends on the
    /// first connect. `Ok(true)` when events may have been missed.
    async fn resume_point(
        &self,
        conn: &mut MultiplexedConnection,
        keys: &[String],
        ids: &mut Vec<String>,
    ) -> redis::RedisResult<bool> {
        if ids.is_empty() {
            // First connect: start at each stream's end (earlier events predate this node's
            // sessions; clients resume from storage).
            for k in keys {
                let last: redis::streams::StreamRangeReply = redis::cmd("XREVRANGE")
                    .arg(k)
                    .arg("+")
                    .arg("-")
                    .arg("COUNT")
                    .arg(1)
                    .query_async(conn)
                    .await?;
                ids.push(
                    last.ids
                        .first()
                        .map_or_else(|| "0-0".to_owned(), |e| e.id.clone()),
                );
            }
            return Ok(false);
        }
        let mut missed = false;
        for (k, last) in keys.iter().zip(ids.iter()) {
            if last == "0-0" {
                continue;
            }
            // Streams lose entries only from the head: if the last entry we read is still
            // there, everything after it is too.
            let here: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
                .arg(k)
                .arg(last)
                .arg(last)
                .query_async(conn)
                .await?;
            if !here.ids.is_empty() {
                continue;
            }
            // Gone. Trimmed exactly up to it is harmless; trimmed further, or lost (a Redis
            // restart without persistence: the stream, and so its XINFO, is gone), means we
            // missed events.
            let info: redis::RedisResult<redis::Value> = redis::cmd("XINFO")
                .arg("STREAM")
                .arg(k)
                .query_async(conn)
                .await;
            let deleted = info.ok().and_then(|i| field(&i, "max-deleted-entry-id"));
            if deleted.as_deref() != Some(last.as_str()) {
                missed = true;
            }
        }
        Ok(missed)
    }

    /// Delivers one event read from the bus to this node's sessions.
    async fn deliver(&self, node: &Node, bytes: Bytes) {
        let e = match Record::decode(bytes) {
            Some(Record::Event(e)) => e,
            Some(Record::Resync { origin }) => {
                if origin != self.config.node_id {
                    self.stats.gaps.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(
                        origin,
                        "cluster bus: a node dropped events while Redis was away; local clients \
                         reconnect and resume from storage"
                    );
                    node.resync();
                }
                return;
            }
            None => {
                tracing::warn!("cluster bus: undecodable event skipped");
                return;
            }
        };
        if e.origin == self.config.node_id {
            return;
        }
        self.stats.received.fetch_add(1, Ordering::Relaxed);
        let lag = wall_ms().saturating_sub(e.sent_at_ms).max(0) as u64;
        self.metrics.bus_lag.observe(Duration::from_millis(lag));
        if let Class::Message { id, .. } = e.class
            && !node.hub.first_delivery(id)
        {
            self.stats.duplicates.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if let Some(c) = e.invalidate {
            node.hub.forget_conversation(c);
        }
        let event = Event {
            frame: e.frame,
            class: e.class,
            kind: e.kind,
            received_at: None,
        };
        match e.target {
            Target::Users(users) => {
                node.hub
                    .fanout(users.iter().map(String::as_str), None, None, event)
                    .await;
            }
            Target::Conversation { id, skip_user } => {
                let Ok(c) = node.hub.conversation(id).await else {
                    return;
                };
                node.hub
                    .fanout(
                        c.participants.iter().map(String::as_str),
                        skip_user.as_deref(),
                        None,
                        event,
                    )
                    .await;
            }
        }
    }

    fn node_key(id: u16) -> String {
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

    /// Which of `nodes` have a live heartbeat (one MGET).
    async fn live(conn: &mut ConnectionManager, nodes: &[u16]) -> redis::RedisResult<Vec<bool>> {
        if nodes.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = nodes.iter().map(|n| Self::node_key(*n)).collect();
        let alive: Vec<Option<String>> = redis::cmd("MGET").arg(keys).query_async(conn).await?;
        Ok(alive.into_iter().map(|a| a.is_some()).collect())
    }

    /// Sessions of `user` on live nodes other than this one.
    async fn others(&self, conn: &mut ConnectionManager, user: &str) -> redis::RedisResult<i64> {
        let counts: Vec<(u16, i64)> = conn.hgetall(Self::presence_key(user)).await?;
        let others: Vec<(u16, i64)> = counts
            .into_iter()
            .filter(|(n, c)| *n != self.config.node_id && *c > 0)
            .collect();
        let nodes: Vec<u16> = others.iter().map(|(n, _)| *n).collect();
        let alive = Self::live(conn, &nodes).await?;
        Ok(others
            .iter()
            .zip(alive)
            .filter(|(_, a)| *a)
            .map(|((_, c), _)| *c)
            .sum())
    }

    /// A session of `user` opened here; `true` when the user just came online cluster-wide.
    pub async fn session_opened(&self, user: &str) -> redis::RedisResult<bool> {
        let mut conn = self.commands.clone();
        let me = self.config.node_id;
        let (mine,): (i64,) = redis::pipe()
            .hincr(Self::presence_key(user), me, 1)
            .sadd(Self::node_users_key(me), user)
            .ignore()
            .query_async(&mut conn)
            .await?;
        Ok(mine == 1 && self.others(&mut conn, user).await? == 0)
    }

    /// A session of `user` closed here; `true` when the user just went offline cluster-wide.
    pub async fn session_closed(&self, user: &str, now_ms: i64) -> redis::RedisResult<bool> {
        let mut conn = self.commands.clone();
        let me = self.config.node_id;
        let mine: i64 = conn.hincr(Self::presence_key(user), me, -1).await?;
        if mine > 0 {
            return Ok(false);
        }
        let _: () = redis::pipe()
            .hdel(Self::presence_key(user), me)
            .srem(Self::node_users_key(me), user)
            .query_async(&mut conn)
            .await?;
        if self.others(&mut conn, user).await? > 0 {
            return Ok(false);
        }
        let _: () = conn.set(Self::seen_key(user), now_ms).await?;
        Ok(true)
    }

    /// Online state of each of `users` across the cluster: online while this node or a live
    /// one counts a session. Three round trips, however many users.
    pub async fn presence_many(&self, users: &[&str]) -> redis::RedisResult<Vec<ClusterPresence>> {
        if users.is_empty() {
            return Ok(Vec::new());
        }
        let mut conn = self.commands.clone();
        let me = self.config.node_id;
        let mut pipe = redis::pipe();
        for user in users {
            pipe.hgetall(Self::presence_key(user));
        }
        let counts: Vec<Vec<(u16, i64)>> = pipe.query_async(&mut conn).await?;
        let seen_keys: Vec<String> = users.iter().map(|u| Self::seen_key(u)).collect();
        let seen: Vec<Option<i64>> = redis::cmd("MGET")
            .arg(seen_keys)
            .query_async(&mut conn)
            .await?;
        let mut nodes: Vec<u16> = counts
            .iter()
            .flatten()
            .filter(|(n, c)| *n != me && *c > 0)
            .map(|(n, _)| *n)
            .collect();
        nodes.sort_unstable();
        nodes.dedup();
        let alive = Self::live(&mut conn, &nodes).await?;
        let is_live = |n: u16| n == me || nodes.binary_search(&n).is_ok_and(|i| alive[i]);
        Ok(counts
            .iter()
            .zip(seen)
            .map(|(counts, seen)| ClusterPresence {
                online: counts.iter().any(|(n, c)| *c > 0 && is_live(*n)),
                last_seen_ms: seen.unwrap_or(0),
            })
            .collect())
    }

    /// Heartbeat, and taking the users of dead nodes offline.
    async fn presence_keeper(self: Arc<Self>, node: Arc<Node>) {
        let ttl = self.config.presence_ttl;
        let mut tick = tokio::time::interval(ttl / 4);
        loop {
            tick.tick().await;
            if node.is_shutting_down() {
                return;
            }
            if let Err(e) = self.heartbeat().await {
                tracing::debug!(error = %e, "cluster presence: heartbeat failed");
                continue;
            }
            if let Err(e) = self.reap(&node).await {
                tracing::debug!(error = %e, "cluster presence: reaping failed");
            }
        }
    }

    async fn heartbeat(&self) -> redis::RedisResult<()> {
        let mut conn = self.commands.clone();
        let me = self.config.node_id;
        redis::pipe()
            .cmd("SET")
            .arg(Self::node_key(me))
            .arg(wall_ms())
            .arg("PX")
            .arg(self.config.presence_ttl.as_millis() as u64)
            .ignore()
            .sadd("parley:nodes", me)
            .ignore()
            .query_async(&mut conn)
            .await
    }

    /// Takes the users of nodes whose heartbeat expired offline (one survivor does it).
    async fn reap(&self, node: &Node) -> redis::RedisResult<()> {
        let mut conn = self.commands.clone();
        let nodes: Vec<u16> = conn.smembers("parley:nodes").await?;
        for dead in nodes.into_iter().filter(|n| *n != self.config.node_id) {
            let alive: bool = conn.exists(Self::node_key(dead)).await?;
            if alive {
                continue;
            }
            let claimed: Option<String> = redis::cmd("SET")
                .arg(format!("parley:reap:{dead}"))
                .arg(self.config.node_id)
                .arg("NX")
                .arg("EX")
                .arg(30)
                .query_async(&mut conn)
                .await?;
            if claimed.is_none() {
                continue;
            }
            let users: Vec<String> = conn.smembers(Self::node_users_key(dead)).await?;
            tracing::warn!(
                node = dead,
                users = users.len(),
                "cluster presence: node died; its users go offline"
            );
            let now = wall_ms();
            let users: Vec<&str> = users.iter().map(String::as_str).collect();
            if !users.is_empty() {
                let mut pipe = redis::pipe();
                for user in &users {
                    pipe.hdel(Self::presence_key(user), dead).ignore();
                }
                let _: () = pipe.query_async(&mut conn).await?;
            }
            let states = self.presence_many(&users).await?;
            for (user, state) in users.iter().zip(states) {
                if state.online {
                    continue;
                }
                let _: () = conn.set(Self::seen_key(user), now).await?;
                crate::ops::announce_presence(node, user, false, now).await;
            }
            let _: () = redis::pipe()
                .del(Self::node_users_key(dead))
                .srem("parley:nodes", dead)
                .query_async(&mut conn)
                .await?;
        }
        Ok(())
    }

    /// Leaves the cluster cleanly (graceful shutdown): the heartbeat goes at once.
    pub async fn leave(&self) {
        let mut conn = self.commands.clone();
        let me = self.config.node_id;
        let _: redis::RedisResult<()> = redis::pipe()
            .del(Self::node_key(me))
            .srem("parley:nodes", me)
            .query_async(&mut conn)
            .await;
    }
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
