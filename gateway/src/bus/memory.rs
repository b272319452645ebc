//! The bus's log in memory: what Redis does for the bus, for the nodes of one process (the
//! in-process test harness and the bus suite). Partitioned logs with bounded retention,
//! presence counts, heartbeats that expire on Tokio's clock (so a paused test clock applies),
//! and two faults tests can cause: the log becoming unreachable, and a restart that loses
//! everything (Redis without persistence).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::{BusError, Log, LogReader};

/// How long a reap claim holds.
const CLAIM: Duration = Duration::from_secs(30);

#[derive(Default)]
struct Partition {
    /// Offset of `entries[0]`; offsets start at 1.
    first: u64,
    entries: VecDeque<Bytes>,
}

impl Partition {
    /// Offset of the newest entry (0: never written).
    fn last(&self) -> u64 {
        self.first + self.entries.len() as u64 - u64::from(self.first > 0)
    }
}

#[derive(Default)]
struct State {
    /// Bumped by a restart that loses everything.
    epoch: u64,
    reachable: bool,
    partitions: HashMap<u32, Partition>,
    heartbeats: HashMap<u16, Instant>,
    nodes: HashSet<u16>,
    counts: HashMap<String, HashMap<u16, i64>>,
    node_users: HashMap<u16, HashSet<String>>,
    seen: HashMap<String, i64>,
    claims: HashMap<u16, Instant>,
    windows: HashMap<String, HashMap<String, i64>>,
}

/// The shared "Redis" of one process's nodes.
pub(crate) struct MemoryBroker {
    state: Mutex<State>,
    appended: Notify,
}

impl MemoryBroker {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(State {
                reachable: true,
                ..State::default()
            }),
            appended: Notify::new(),
        })
    }

    /// A node's handle on this broker.
    pub(crate) fn log(self: &Arc<Self>) -> Arc<MemoryLog> {
        Arc::new(MemoryLog {
            broker: self.clone(),
        })
    }

    /// Makes every operation fail (`false`) or work again (`true`).
    pub(crate) fn set_reachable(&self, reachable: bool) {
        self.lock().reachable = reachable;
        self.appended.notify_waiters();
    }

    /// A restart that loses every record and key (Redis without persistence).
    pub(crate) fn restart_empty(&self) {
        let mut s = self.lock();
        let epoch = s.epoch + 1;
        *s = State {
            epoch,
            reachable: true,
            ..State::default()
        };
        drop(s);
        self.appended.notify_waiters();
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The state, if the broker is reachable.
    fn up(&self) -> Result<MutexGuard<'_, State>, BusError> {
        let s = self.lock();
        if s.reachable {
            Ok(s)
        } else {
            Err(BusError("memory log unreachable".into()))
        }
    }
}

/// One node's handle on a [`MemoryBroker`].
pub(crate) struct MemoryLog {
    broker: Arc<MemoryBroker>,
}

#[async_trait]
impl Log for MemoryLog {
    async fn append(&self, records: &[(u32, Bytes)], retention: u64) -> Result<(), BusError> {
        let mut s = self.broker.up()?;
        for (p, bytes) in records {
            let part = s.partitions.entry(*p).or_default();
            if part.first == 0 {
                part.first = 1;
            }
            part.entries.push_back(bytes.clone());
            while part.entries.len() as u64 > retention.max(1) {
                part.entries.pop_front();
                part.first += 1;
            }
        }
        drop(s);
        self.broker.appended.notify_waiters();
        Ok(())
    }

    fn reader(&self, partitions: u32) -> Box<dyn LogReader> {
        Box::new(MemoryReader {
            broker: self.broker.clone(),
            partitions,
            positions: None,
            epoch: 0,
        })
    }

    async fn session_opened(&self, user: &str, node: u16) -> Result<i64, BusError> {
        let mut s = self.broker.up()?;
        let n = s
            .counts
            .entry(user.to_owned())
            .or_default()
            .entry(node)
            .or_default();
        *n += 1;
        let n = *n;
        s.node_users
            .entry(node)
            .or_default()
            .insert(user.to_owned());
        Ok(n)
    }

    async fn session_closed(&self, user: &str, node: u16) -> Result<i64, BusError> {
        let mut s = self.broker.up()?;
        let counts = s.counts.entry(user.to_owned()).or_default();
        let n = counts.entry(node).or_default();
        *n -= 1;
        let n = *n;
        if n <= 0 {
            counts.remove(&node);
            if let Some(users) = s.node_users.get_mut(&node) {
                users.remove(user);
            }
        }
        Ok(n.max(0))
    }

    async fn session_counts(&self, users: &[&str]) -> Result<Vec<Vec<(u16, i64)>>, BusError> {
        let s = self.broker.up()?;
        Ok(users
            .iter()
            .map(|u| {
                s.counts
                    .get(*u)
                    .map(|c| c.iter().map(|(n, c)| (*n, *c)).collect())
                    .unwrap_or_default()
            })
            .collect())
    }

    async fn heartbeat(&self, node: u16, ttl: Duration) -> Result<(), BusError> {
        let mut s = self.broker.up()?;
        s.heartbeats.insert(node, Instant::now() + ttl);
        s.nodes.insert(node);
        Ok(())
    }

    async fn alive(&self, nodes: &[u16]) -> Result<Vec<bool>, BusError> {
        let s = self.broker.up()?;
        let now = Instant::now();
        Ok(nodes
            .iter()
            .map(|n| s.heartbeats.get(n).is_some_and(|until| *until > now))
            .collect())
    }

    async fn nodes(&self) -> Result<Vec<u16>, BusError> {
        Ok(self.broker.up()?.nodes.iter().copied().collect())
    }

    async fn claim(&self, dead: u16, _me: u16) -> Result<bool, BusError> {
        let mut s = self.broker.up()?;
        let now = Instant::now();
        if s.claims.get(&dead).is_some_and(|until| *until > now) {
            return Ok(false);
        }
        s.claims.insert(dead, now + CLAIM);
        Ok(true)
    }

    async fn node_users(&self, node: u16) -> Result<Vec<String>, BusError> {
        let s = self.broker.up()?;
        let users = s.node_users.get(&node);
        Ok(users
            .map(|u| u.iter().cloned().collect())
            .unwrap_or_default())
    }

    async fn drop_counts(&self, node: u16, users: &[String]) -> Result<(), BusError> {
        let mut s = self.broker.up()?;
        for u in users {
            if let Some(c) = s.counts.get_mut(u) {
                c.remove(&node);
            }
        }
        Ok(())
    }

    async fn forget_node(&self, node: u16) -> Result<(), BusError> {
        let mut s = self.broker.up()?;
        s.node_users.remove(&node);
        s.nodes.remove(&node);
        Ok(())
    }

    async fn set_seen(&self, user: &str, at_ms: i64) -> Result<(), BusError> {
        self.broker.up()?.seen.insert(user.to_owned(), at_ms);
        Ok(())
    }

    async fn seen(&self, users: &[&str]) -> Result<Vec<Option<i64>>, BusError> {
        let s = self.broker.up()?;
        Ok(users.iter().map(|u| s.seen.get(*u).copied()).collect())
    }

    async fn window_add(
        &self,
        key: &str,
        member: &str,
        now_ms: i64,
        window_ms: i64,
    ) -> Result<u64, BusError> {
        let mut s = self.broker.up()?;
        let set = s.windows.entry(key.to_owned()).or_default();
        set.insert(member.to_owned(), now_ms);
        set.retain(|_, at| *at > now_ms - window_ms);
        Ok(set.len() as u64)
    }

    async fn leave(&self, node: u16) -> Result<(), BusError> {
        let mut s = self.broker.up()?;
        s.heartbeats.remove(&node);
        s.nodes.remove(&node);
        Ok(())
    }
}

struct MemoryReader {
    broker: Arc<MemoryBroker>,
    partitions: u32,
    /// The last offset read per partition (None until the first `resume`).
    positions: Option<Vec<u64>>,
    /// The broker's epoch when the positions were taken.
    epoch: u64,
}

#[async_trait]
impl LogReader for MemoryReader {
    async fn connect(&mut self) -> Result<bool, BusError> {
        let s = self.broker.up()?;
        let ends = |s: &State| -> Vec<u64> {
            (0..self.partitions)
                .map(|p| s.partitions.get(&p).map_or(0, Partition::last))
                .collect()
        };
        let Some(positions) = &self.positions else {
            self.positions = Some(ends(&s));
            self.epoch = s.epoch;
            return Ok(false);
        };
        if s.epoch != self.epoch {
            // Everything was lost: read from the new start; missed if we had read anything.
            let missed = positions.iter().any(|p| *p > 0);
            self.positions = Some(vec![0; self.partitions as usize]);
            self.epoch = s.epoch;
            return Ok(missed);
        }
        // Missed when an entry after our position was trimmed.
        let missed = positions.iter().enumerate().any(|(p, pos)| {
            s.partitions
                .get(&(p as u32))
                .is_some_and(|part| part.first > pos + 1)
        });
        Ok(missed)
    }

    async fn read(&mut self, block: Duration) -> Result<Vec<Bytes>, BusError> {
        let deadline = Instant::now() + block;
        loop {
            let appended = self.broker.appended.notified();
            {
                let s = self.broker.up()?;
                if s.epoch != self.epoch {
                    return Err(BusError("memory log restarted".into()));
                }
                let positions = self.positions.get_or_insert_with(Vec::new);
                positions.resize(self.partitions as usize, 0);
                let mut out = Vec::new();
                for (p, pos) in positions.iter_mut().enumerate() {
                    let Some(part) = s.partitions.get(&(p as u32)) else {
                        continue;
                    };
                    let from = (*pos + 1).max(part.first);
                    for offset in from..=part.last() {
                        if let Some(b) = part.entries.get((offset - part.first) as usize) {
                            out.push(b.clone());
                        }
                        *pos = offset;
                    }
                }
                if !out.is_empty() {
                    return Ok(out);
                }
            }
            if tokio::time::timeout_at(deadline, appended).await.is_err() {
                return Ok(Vec::new());
            }
        }
    }
}
