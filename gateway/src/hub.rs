//! Node-wide shared state and fan-out. Everything here is `Send + Sync` and lock-free or
//! sharded-lock (dashmap); no lock is held across `.await`.
//!
//! Fan-out: an event is encoded once by the caller; `fanout` groups the recipients by the
//! shards where they have sessions (from `users`) and makes one push per shard into that
//! shard's bounded inbox. The shard then hands the same `Bytes` to each local session's outbox.

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use dashmap::DashMap;
use parley_storage::Storage;
use parley_types::{Conversation, ConversationId, MessageId};
use tokio::sync::mpsc;
use tokio::time::Instant;

use parley_proto::{ErrorCode, FrameKind};

use crate::errors::ClientError;
use crate::outbox::Class;
use crate::ratelimit::TokenBucket;

/// Conversations cached before the cache is cleared (a memory bound; a miss is one read).
const CONVERSATION_CACHE_LIMIT: usize = 200_000;

/// Message ids this node remembers having delivered (see [`Hub::first_delivery`]).
pub const DELIVERED_WINDOW: usize = 1 << 18;

/// The most recent message ids delivered by this node, oldest forgotten first.
#[derive(Default)]
struct Delivered {
    set: HashSet<u64>,
    order: VecDeque<u64>,
}

/// One push into a shard's inbox: the same frame for these users' sessions on that shard.
#[derive(Debug)]
pub struct Delivery {
    pub users: Vec<Arc<str>>,
    /// A session that must not get it (the one that caused it).
    pub exclude_session: Option<u64>,
    pub frame: Bytes,
    pub class: Class,
    /// What the frame is (metrics; typing may go as a QUIC datagram).
    pub kind: FrameKind,
    /// When the Send that caused it arrived (messages only), for the send → deliver histogram.
    pub received_at: Option<Instant>,
}

/// What to fan out: an encoded frame and how to treat it.
#[derive(Clone, Debug)]
pub struct Event {
    pub frame: Bytes,
    pub class: Class,
    pub kind: FrameKind,
    pub received_at: Option<Instant>,
}

impl Event {
    /// Encodes `body` once for every recipient.
    pub fn new(body: parley_proto::ServerBody, class: Class) -> Self {
        let kind = body.kind();
        Self {
            frame: parley_proto::codec::server::encode_server(&parley_proto::ServerFrame::push(
                body,
            )),
            class,
            kind,
            received_at: None,
        }
    }
}

/// A user's sessions on this node.
#[derive(Debug)]
struct UserSessions {
    per_shard: Box<[u32]>,
    total: u32,
    last_seen_ms: i64,
}

/// Online state of a user as this node knows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PresenceState {
    pub online: bool,
    /// When the user's last session on this node closed (0: never seen).
    pub last_seen_ms: i64,
}

/// Counters the metrics endpoint and tests read.
#[derive(Debug, Default)]
pub struct HubStats {
    pub deliveries_dropped_inbox_full: AtomicU64,
    pub fanouts: AtomicU64,
}

/// Node-wide state shared by all shards.
pub struct Hub {
    inboxes: Vec<mpsc::Sender<Delivery>>,
    users: DashMap<Arc<str>, UserSessions>,
    conversations: DashMap<ConversationId, Arc<Conversation>>,
    send_buckets: DashMap<Arc<str>, TokenBucket>,
    send_rate: (f64, u32),
    storage: Arc<dyn Storage>,
    delivered: Mutex<Delivered>,
    pub stats: HubStats,
}

impl Hub {
    /// A hub for shards whose inboxes are `inboxes` (index = shard id).
    pub fn new(
        inboxes: Vec<mpsc::Sender<Delivery>>,
        storage: Arc<dyn Storage>,
        user_messages_per_sec: f64,
        user_message_burst: u32,
    ) -> Self {
        Self {
            inboxes,
            users: DashMap::new(),
            conversations: DashMap::new(),
            send_buckets: DashMap::new(),
            send_rate: (user_messages_per_sec, user_message_burst),
            storage,
            delivered: Mutex::new(Delivered::default()),
            stats: HubStats::default(),
        }
    }

    /// Records that this node delivers message `id` now; false if it already did (within the
    /// last [`DELIVERED_WINDOW`] messages). Live delivery of a message is exactly-once per node
    /// through this: a Send retried after its first node crashed between storing and
    /// delivering is delivered by the retry, and a retry of a delivered message is not.
    pub fn first_delivery(&self, id: MessageId) -> bool {
        let mut d = self.delivered.lock().unwrap_or_else(|e| e.into_inner());
        if !d.set.insert(id.0) {
            return false;
        }
        d.order.push_back(id.0);
        if d.order.len() > DELIVERED_WINDOW
            && let Some(old) = d.order.pop_front()
        {
            d.set.remove(&old);
        }
        true
    }

    pub fn storage(&self) -> &Arc<dyn Storage> {
        &self.storage
    }

    pub fn shard_count(&self) -> usize {
        self.inboxes.len()
    }

    /// Records a session of `user` on `shard`; `true` when it is the user's first on the node.
    pub fn session_opened(&self, user: &Arc<str>, shard: usize) -> bool {
        let shards = self.inboxes.len();
        let mut entry = self
            .users
            .entry(user.clone())
            .or_insert_with(|| UserSessions {
                per_shard: vec![0; shards].into_boxed_slice(),
                total: 0,
                last_seen_ms: 0,
            });
        if let Some(n) = entry.per_shard.get_mut(shard) {
            *n += 1;
        }
        entry.total += 1;
        entry.total == 1
    }

    /// Forgets a session; `true` when it was the user's last on the node.
    pub fn session_closed(&self, user: &str, shard: usize, now_ms: i64) -> bool {
        let Some(mut entry) = self.users.get_mut(user) else {
            return false;
        };
        if let Some(n) = entry.per_shard.get_mut(shard) {
            *n = n.saturating_sub(1);
        }
        entry.total = entry.total.saturating_sub(1);
        if entry.total == 0 {
            entry.last_seen_ms = now_ms;
            true
        } else {
            false
        }
    }

    pub fn presence(&self, user: &str) -> PresenceState {
        match self.users.get(user) {
            Some(e) => PresenceState {
                online: e.total > 0,
                last_seen_ms: e.last_seen_ms,
            },
            None => PresenceState {
                online: false,
                last_seen_ms: 0,
            },
        }
    }

    /// Sessions on this node (all users).
    pub fn online_users(&self) -> usize {
        self.users.iter().filter(|e| e.total > 0).count()
    }

    /// Takes a send token for `user`, or refuses with `RateLimited`.
    pub fn take_send_token(&self, user: &Arc<str>, now: Instant) -> Result<(), ClientError> {
        let (rate, burst) = self.send_rate;
        let mut bucket = self
            .send_buckets
            .entry(user.clone())
            .or_insert_with(|| TokenBucket::new(rate, burst, now));
        if bucket.try_take(now) {
            Ok(())
        } else {
            Err(ClientError::new(
                ErrorCode::RateLimited,
                "sending too fast; slow down",
            ))
        }
    }

    /// The conversation (cached), or NotFound.
    pub async fn conversation(&self, id: ConversationId) -> Result<Arc<Conversation>, ClientError> {
        if let Some(c) = self.conversations.get(&id) {
            return Ok(c.clone());
        }
        let c = self
            .storage
            .conversation(id)
            .await?
            .ok_or_else(|| ClientError::new(ErrorCode::NotFound, "no such conversation"))?;
        let c = Arc::new(c);
        if self.conversations.len() >= CONVERSATION_CACHE_LIMIT {
            self.conversations.clear();
        }
        self.conversations.insert(id, c.clone());
        Ok(c)
    }

    /// The conversation if `user` takes part in it: NotFound / Forbidden otherwise.
    pub async fn conversation_for(
        &self,
        id: ConversationId,
        user: &str,
    ) -> Result<Arc<Conversation>, ClientError> {
        let c = self.conversation(id).await?;
        if c.has_participant(user) {
            Ok(c)
        } else {
            Err(ClientError::new(
                ErrorCode::Forbidden,
                "not a participant of this conversation",
            ))
        }
    }

    /// Drops a cached conversation (deleted or changed).
    pub fn forget_conversation(&self, id: ConversationId) {
        self.conversations.remove(&id);
    }

    /// Delivers `event` to every session of `users` on this node, except `skip_user`'s and the
    /// session `exclude_session`. Messages and other reliable events wait for inbox space
    /// (slowing only the publisher); ephemeral ones are dropped when an inbox is full.
    pub async fn fanout<'a>(
        &self,
        users: impl IntoIterator<Item = &'a str>,
        skip_user: Option<&str>,
        exclude_session: Option<u64>,
        event: Event,
    ) {
        let Event {
            frame,
            class,
            kind,
            received_at,
        } = event;
        let mut per_shard: Vec<Vec<Arc<str>>> = vec![Vec::new(); self.inboxes.len()];
        for user in users {
            if Some(user) == skip_user {
                continue;
            }
            if let Some(entry) = self.users.get(user) {
                for (shard, n) in entry.per_shard.iter().enumerate() {
                    if *n > 0
                        && let Some(list) = per_shard.get_mut(shard)
                    {
                        list.push(entry.key().clone());
                    }
                }
            }
        }
        self.stats.fanouts.fetch_add(1, Ordering::Relaxed);
        for (shard, users) in per_shard.into_iter().enumerate() {
            if users.is_empty() {
                continue;
            }
            let Some(inbox) = self.inboxes.get(shard) else {
                continue;
            };
            let delivery = Delivery {
                users,
                exclude_session,
                frame: frame.clone(),
                class,
                kind,
                received_at,
            };
            if class == Class::Ephemeral {
                if inbox.try_send(delivery).is_err() {
                    self.stats
                        .deliveries_dropped_inbox_full
                        .fetch_add(1, Ordering::Relaxed);
                }
            } else if inbox.send(delivery).await.is_err() {
                // The shard stopped (shutdown): its sessions are gone and will resume elsewhere.
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_is_delivered_once_within_the_window() {
        let dir = tempfile::tempdir().expect("tmp");
        let storage = Arc::new(
            parley_storage::embedded::Embedded::open(dir.path(), Default::default())
                .expect("storage"),
        );
        let hub = Hub::new(Vec::new(), storage, 1.0, 1);
        assert!(hub.first_delivery(MessageId(7)));
        assert!(!hub.first_delivery(MessageId(7)));
        for id in 100..100 + DELIVERED_WINDOW as u64 {
            assert!(hub.first_delivery(MessageId(id)));
        }
        // Forgotten once the window moved past it.
        assert!(hub.first_delivery(MessageId(7)));
        assert!(!hub.first_delivery(MessageId(100 + DELIVERED_WINDOW as u64 - 1)));
    }
}
