//! The cluster bus: fan-out between nodes and presence across them.
//!
//! The bus knows no node. It is built on a [`Log`] — partitioned, append-only, readable from a
//! position, plus the few key/value operations presence needs: Redis Streams in production
//! ([`redis::RedisLog`]), memory in tests ([`memory::MemoryLog`]) — and reports what it reads
//! through the [`BusHandler`] the node registers (Centrifuge's `BrokerEventHandler` shape).
//! One suite (`suite.rs`) runs against both logs.
//!
//! - **Partitions.** An event goes to partition `hash(conversation) % P` (presence:
//!   `hash(user) % P`), so one conversation's events stay in order. Every node reads every
//!   partition from the last position it saw, and skips the events it published itself.
//! - **Outages.** Publishing never blocks a session: events queue (bounded) while the log is
//!   away and are written when it returns; a node whose queue overflowed writes a resync marker
//!   once it can. The reader reconnects with backoff and reads on from its last positions. If
//!   events it never read are gone — trimmed past retention, lost with a Redis restart, or
//!   dropped by a publisher — it tells the handler ([`BusHandler::gap`]) so local sessions
//!   resume from storage.
//! - **Presence.** Each node keeps a heartbeat with a TTL and, per user, its count of sessions.
//!   A user is online while any live node has a session. Nodes check each other's heartbeats;
//!   when one dies, one survivor (a claim that expires) takes its users offline for everyone,
//!   within the TTL ([`BusHandler::went_offline`]).

pub(crate) mod group;
#[cfg(test)]
pub(crate) mod memory;
mod record;
pub(crate) mod redis;
#[cfg(test)]
mod suite;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

use crate::clock::wall_ms;
use crate::event::Class;
use crate::metrics::Histogram;
use record::Record;
pub(crate) use record::{BusEvent, Invalidate, Outgoing, Target};

/// Longest a Send's Ack waits for its event to reach the log ([`Bus::wait_written`]).
const PUBLISH_WAIT: Duration = Duration::from_millis(250);
/// Events written per round trip.
const PUBLISH_BATCH: usize = 256;
/// How long one read waits for new records.
const READ_BLOCK: Duration = Duration::from_secs(2);

/// Settings of the bus.
#[derive(Clone, Debug)]
pub(crate) struct BusConfig {
    pub(crate) node_id: u16,
    pub(crate) partitions: u32,
    /// Events kept per partition (Redis: `XADD MAXLEN ~`).
    pub(crate) retention: u64,
    /// Events waiting to be written (while the log is away, for example); beyond this the
    /// newest are dropped and counted, and once the log takes writes again a resync marker
    /// tells every other node to have its sessions resume from storage.
    pub(crate) publish_queue: usize,
    /// A node whose heartbeat is older than this is dead; its users go offline.
    pub(crate) presence_ttl: Duration,
}

/// The bus's own failure: the log cannot be reached or answered nonsense.
#[derive(Debug, Clone, thiserror::Error)]
#[error("cluster bus unavailable: {0}")]
pub(crate) struct BusError(pub(crate) String);

/// Online state across the cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ClusterPresence {
    pub(crate) online: bool,
    pub(crate) last_seen_ms: i64,
}

/// What the bus reports to the node that registered it.
#[async_trait]
pub(crate) trait BusHandler: Send + Sync + 'static {
    /// An event another node published (a node's own events are skipped).
    async fn event(&self, event: BusEvent);
    /// Events may have been lost: local sessions must resume from storage.
    fn gap(&self);
    /// These users' last sessions were on nodes that died: they are offline since `at_ms`.
    async fn went_offline(&self, users: Vec<String>, at_ms: i64);
}

/// The log the bus is built on. Positions are the log's own (Redis stream ids).
#[async_trait]
pub(crate) trait Log: Send + Sync + 'static {
    /// Appends `(partition, record)`s in order. On `Err` some may have been written; the
    /// caller retries them all (readers drop duplicates).
    async fn append(&self, records: &[(u32, Bytes)], retention: u64) -> Result<(), BusError>;
    /// A reader of every partition (not connected yet).
    fn reader(&self, partitions: u32) -> Box<dyn LogReader>;
    /// A session of `user` opened on `node`: that node's new count for the user.
    async fn session_opened(&self, user: &str, node: u16) -> Result<i64, BusError>;
    /// A session closed: that node's new count (its entry is removed at zero).
    async fn session_closed(&self, user: &str, node: u16) -> Result<i64, BusError>;
    /// Per user, `(node, sessions)` for every node that counts some.
    async fn session_counts(&self, users: &[&str]) -> Result<Vec<Vec<(u16, i64)>>, BusError>;
    /// Refreshes `node`'s heartbeat for `ttl` and lists it among the known nodes.
    async fn heartbeat(&self, node: u16, ttl: Duration) -> Result<(), BusError>;
    /// Which of `nodes` have a live heartbeat.
    async fn alive(&self, nodes: &[u16]) -> Result<Vec<bool>, BusError>;
    /// Every node ever listed and not yet forgotten.
    async fn nodes(&self) -> Result<Vec<u16>, BusError>;
    /// Claims the reaping of `dead` for `me` (at most one claim wins for a while).
    async fn claim(&self, dead: u16, me: u16) -> Result<bool, BusError>;
    /// Users `node` counted sessions for.
    async fn node_users(&self, node: u16) -> Result<Vec<String>, BusError>;
    /// Removes `node`'s session counts for `users`.
    async fn drop_counts(&self, node: u16, users: &[String]) -> Result<(), BusError>;
    /// Removes `node`'s user list and its listing (after its users were taken offline).
    async fn forget_node(&self, node: u16) -> Result<(), BusError>;
    async fn set_seen(&self, user: &str, at_ms: i64) -> Result<(), BusError>;
    async fn seen(&self, users: &[&str]) -> Result<Vec<Option<i64>>, BusError>;
    /// Removes `node`'s heartbeat and listing (a clean leave).
    async fn leave(&self, node: u16) -> Result<(), BusError>;
    /// Puts `member` in the set `key` at `now_ms`, forgets members older than `window_ms`
    /// and returns how many distinct members are left (the set expires with its window):
    /// spam counting across the cluster.
    async fn window_add(
        &self,
        key: &str,
        member: &str,
        now_ms: i64,
        window_ms: i64,
    ) -> Result<u64, BusError>;
}

/// Reads every partition from its position. Positions survive reconnections.
#[async_trait]
pub(crate) trait LogReader: Send {
    /// Opens the reader's own connection (again, after an error), then sets or checks the
    /// positions: the partitions' ends the first time; afterwards `Ok(true)` when records
    /// after the positions are gone (lost events).
    async fn connect(&mut self) -> Result<bool, BusError>;
    /// The records after the positions (advancing them), waiting up to `block` for some.
    async fn read(&mut self, block: Duration) -> Result<Vec<Bytes>, BusError>;
}

/// Counters for `/metrics`.
#[derive(Default)]
pub(crate) struct BusStats {
    pub(crate) published: AtomicU64,
    pub(crate) received: AtomicU64,
    pub(crate) dropped: AtomicU64,
    pub(crate) gaps: AtomicU64,
    /// Now − publication time of each event read.
    pub(crate) lag: Histogram,
    connected: AtomicBool,
}

impl BusStats {
    /// Whether the reader is connected to the log now.
    pub(crate) fn connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }
}

/// Completes once the log holds an event ([`Bus::publish_confirmed`]).
pub(crate) struct Written(oneshot::Receiver<()>);

/// An event waiting for the publisher, and who wants to know when the log has it.
struct Queued {
    record: Record,
    partition: u32,
    written: Option<oneshot::Sender<()>>,
}

/// A node's link to the cluster.
pub(crate) struct Bus {
    config: BusConfig,
    log: Arc<dyn Log>,
    queue: mpsc::Sender<Queued>,
    queue_rx: Mutex<Option<mpsc::Receiver<Queued>>>,
    /// Set when `publish` dropped an event; cleared when the resync marker is written.
    lost_events: AtomicBool,
    leaving: AtomicBool,
    stats: BusStats,
}

fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

impl Bus {
    pub(crate) fn new(config: BusConfig, log: Arc<dyn Log>) -> Arc<Self> {
        let (queue, rx) = mpsc::channel(config.publish_queue.max(1));
        Arc::new(Self {
            config,
            log,
            queue,
            queue_rx: Mutex::new(Some(rx)),
            lost_events: AtomicBool::new(false),
            leaving: AtomicBool::new(false),
            stats: BusStats::default(),
        })
    }

    pub(crate) fn stats(&self) -> &BusStats {
        &self.stats
    }

    /// Starts the publisher, the reader and the presence keeper on `runtime`.
    pub(crate) fn start(
        self: &Arc<Self>,
        runtime: &tokio::runtime::Handle,
        handler: Arc<dyn BusHandler>,
    ) {
        let rx = self
            .queue_rx
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(rx) = rx {
            runtime.spawn(self.clone().publisher(rx));
        }
        runtime.spawn(self.clone().reader(handler.clone()));
        runtime.spawn(self.clone().presence_keeper(handler));
    }

    /// Queues an event for the other nodes; never waits.
    pub(crate) fn publish(&self, o: Outgoing) {
        self.enqueue(o, None);
    }

    /// Queues an event like [`Bus::publish`]; the result completes once the log has it (and
    /// fails if the event was dropped). See [`Bus::wait_written`].
    pub(crate) fn publish_confirmed(&self, o: Outgoing) -> Written {
        let (tx, rx) = oneshot::channel();
        self.enqueue(o, Some(tx));
        Written(rx)
    }

    /// Waits until the log has the event behind `written` — so that a node dying right after
    /// an Ack does not take the event with it — but never longer than [`PUBLISH_WAIT`], and not
    /// at all while the log is unreachable (sending must keep working then).
    pub(crate) async fn wait_written(&self, written: Written) {
        if self.stats.connected() {
            let _ = tokio::time::timeout(PUBLISH_WAIT, written.0).await;
        }
    }

    fn partition_of(&self, o: &Outgoing) -> u32 {
        let h = match (&o.target, &o.event.class) {
            (Target::Conversation { id, .. }, _) => fnv(id.as_bytes()),
            (Target::Users(_), Class::Message { conversation, .. }) => fnv(conversation.as_bytes()),
            (Target::Users(users), _) => fnv(users.first().map_or(&[][..], |u| u.as_bytes())),
        };
        (h % u64::from(self.config.partitions.max(1))) as u32
    }

    fn enqueue(&self, o: Outgoing, written: Option<oneshot::Sender<()>>) {
        let partition = self.partition_of(&o);
        let record = Record::event(self.config.node_id, wall_ms(), o);
        let queued = Queued {
            record,
            partition,
            written,
        };
        if self.queue.try_send(queued).is_err() {
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
            if !self.lost_events.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    "cluster bus: publish queue full, events dropped; other nodes' clients will \
                     resume from storage once the bus takes writes again"
                );
            }
        }
    }

    /// Writes queued events in batches; on failure keeps the batch and retries with backoff.
    async fn publisher(self: Arc<Self>, mut rx: mpsc::Receiver<Queued>) {
        let mut batch = Vec::with_capacity(PUBLISH_BATCH);
        while rx.recv_many(&mut batch, PUBLISH_BATCH).await > 0 {
            let mut records: Vec<(u32, Bytes)> = batch
                .iter()
                .map(|q| (q.partition, q.record.encode()))
                .collect();
            if self.lost_events.swap(false, Ordering::Relaxed) {
                // Written after the surviving events of this batch: whoever reads it has
                // everything that was not dropped, and resumes from storage for the rest.
                // One partition is enough: every node reads them all.
                let marker = Record::Resync {
                    origin: self.config.node_id,
                };
                records.push((0, marker.encode()));
            }
            let mut backoff = Duration::from_millis(50);
            while let Err(e) = self.log.append(&records, self.config.retention).await {
                tracing::warn!(error = %e, queued = rx.len(), "cluster bus: publish failed, retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
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

    /// Reads every partition from the last position seen, forever; reconnects with backoff.
    async fn reader(self: Arc<Self>, handler: Arc<dyn BusHandler>) {
        let mut backoff = Duration::from_millis(100);
        let mut reader = self.log.reader(self.config.partitions);
        loop {
            match reader.connect().await {
                Ok(gap) => {
                    if gap {
                        self.gap(
                            &*handler,
                            "events were lost while this node was away (trimmed past \
                             retention, or Redis restarted)",
                        );
                    }
                }
                Err(e) => {
                    self.disconnected(&e, backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    continue;
                }
            }
            backoff = Duration::from_millis(100);
            if !self.stats.connected.swap(true, Ordering::Relaxed) {
                tracing::info!("cluster bus: connected; reading on from the last positions");
            }
            loop {
                match reader.read(READ_BLOCK).await {
                    Ok(records) => {
                        for bytes in records {
                            self.deliver(&*handler, bytes).await;
                        }
                    }
                    Err(e) => {
                        self.disconnected(&e, Duration::ZERO).await;
                        break;
                    }
                }
            }
        }
    }

    async fn disconnected(&self, e: &BusError, wait: Duration) {
        self.stats.connected.store(false, Ordering::Relaxed);
        tracing::warn!(error = %e, "cluster bus: log unreachable, retrying");
        tokio::time::sleep(wait).await;
    }

    fn gap(&self, handler: &dyn BusHandler, why: &str) {
        self.stats.gaps.fetch_add(1, Ordering::Relaxed);
        tracing::warn!("cluster bus: {why}; local clients reconnect and resume from storage");
        handler.gap();
    }

    /// Hands one record read from the log to the handler.
    async fn deliver(&self, handler: &dyn BusHandler, bytes: Bytes) {
        match Record::decode(bytes) {
            Some(Record::Event(e)) if e.origin != self.config.node_id => {
                self.stats.received.fetch_add(1, Ordering::Relaxed);
                let lag = wall_ms().saturating_sub(e.sent_at_ms).max(0) as u64;
                self.stats.lag.observe(Duration::from_millis(lag));
                handler.event(*e).await;
            }
            Some(Record::Resync { origin }) if origin != self.config.node_id => {
                self.gap(handler, "a node dropped events while the bus was away");
            }
            Some(_) => {}
            None => tracing::warn!("cluster bus: undecodable record skipped"),
        }
    }

    /// Sessions of `user` on live nodes other than this one.
    async fn elsewhere(&self, user: &str) -> Result<i64, BusError> {
        let me = self.config.node_id;
        let counts = self.log.session_counts(&[user]).await?;
        let others: Vec<(u16, i64)> = counts
            .into_iter()
            .flatten()
            .filter(|(n, c)| *n != me && *c > 0)
            .collect();
        let nodes: Vec<u16> = others.iter().map(|(n, _)| *n).collect();
        let alive = self.log.alive(&nodes).await?;
        Ok(others
            .iter()
            .zip(alive)
            .filter(|(_, a)| *a)
            .map(|((_, c), _)| *c)
            .sum())
    }

    /// See [`Log::window_add`].
    pub(crate) async fn window_add(
        &self,
        key: &str,
        member: &str,
        now_ms: i64,
        window_ms: i64,
    ) -> Result<u64, BusError> {
        self.log.window_add(key, member, now_ms, window_ms).await
    }

    /// A session of `user` opened here; `true` when the user just came online cluster-wide.
    pub(crate) async fn session_opened(&self, user: &str) -> Result<bool, BusError> {
        let mine = self.log.session_opened(user, self.config.node_id).await?;
        Ok(mine == 1 && self.elsewhere(user).await? == 0)
    }

    /// A session of `user` closed here; `true` when the user just went offline cluster-wide.
    pub(crate) async fn session_closed(&self, user: &str, now_ms: i64) -> Result<bool, BusError> {
        let mine = self.log.session_closed(user, self.config.node_id).await?;
        if mine > 0 || self.elsewhere(user).await? > 0 {
            return Ok(false);
        }
        self.log.set_seen(user, now_ms).await?;
        Ok(true)
    }

    /// Online state of each of `users` across the cluster: online while this node or a live
    /// one counts a session.
    pub(crate) async fn presence_many(
        &self,
        users: &[&str],
    ) -> Result<Vec<ClusterPresence>, BusError> {
        if users.is_empty() {
            return Ok(Vec::new());
        }
        let me = self.config.node_id;
        let counts = self.log.session_counts(users).await?;
        let seen = self.log.seen(users).await?;
        let mut nodes: Vec<u16> = counts
            .iter()
            .flatten()
            .filter(|(n, c)| *n != me && *c > 0)
            .map(|(n, _)| *n)
            .collect();
        nodes.sort_unstable();
        nodes.dedup();
        let alive = self.log.alive(&nodes).await?;
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
    async fn presence_keeper(self: Arc<Self>, handler: Arc<dyn BusHandler>) {
        let ttl = self.config.presence_ttl;
        let mut tick = tokio::time::interval(ttl / 4);
        loop {
            tick.tick().await;
            if self.leaving.load(Ordering::Relaxed) {
                return;
            }
            if let Err(e) = self.log.heartbeat(self.config.node_id, ttl).await {
                tracing::debug!(error = %e, "cluster presence: heartbeat failed");
                continue;
            }
            if let Err(e) = self.reap(&*handler).await {
                tracing::debug!(error = %e, "cluster presence: reaping failed");
            }
        }
    }

    /// Takes the users of nodes whose heartbeat expired offline (one survivor does it).
    async fn reap(&self, handler: &dyn BusHandler) -> Result<(), BusError> {
        let me = self.config.node_id;
        let others: Vec<u16> = self
            .log
            .nodes()
            .await?
            .into_iter()
            .filter(|n| *n != me)
            .collect();
        let alive = self.log.alive(&others).await?;
        for (dead, _) in others.into_iter().zip(alive).filter(|(_, a)| !a) {
            if !self.log.claim(dead, me).await? {
                continue;
            }
            let users = self.log.node_users(dead).await?;
            tracing::warn!(
                node = dead,
                users = users.len(),
                "cluster presence: node died; its users go offline"
            );
            self.log.drop_counts(dead, &users).await?;
            let names: Vec<&str> = users.iter().map(String::as_str).collect();
            let states = self.presence_many(&names).await?;
            let now = wall_ms();
            let mut offline = Vec::new();
            for (user, state) in users.into_iter().zip(states) {
                if !state.online {
                    self.log.set_seen(&user, now).await?;
                    offline.push(user);
                }
            }
            if !offline.is_empty() {
                handler.went_offline(offline, now).await;
            }
            self.log.forget_node(dead).await?;
        }
        Ok(())
    }

    /// Leaves the cluster cleanly (graceful shutdown): the heartbeat goes at once.
    pub(crate) async fn leave(&self) {
        self.leaving.store(true, Ordering::Relaxed);
        let _ = self.log.leave(self.config.node_id).await;
    }
}
