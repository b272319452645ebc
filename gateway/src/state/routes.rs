//! Where each user's sessions are on this node: per user, a count per shard. Fan-out reads it
//! to know which shard inboxes to push to; presence reads it to know who is online here.

use std::sync::Arc;

use dashmap::DashMap;

/// A session id unique on this node and across a cluster: node (10 bits) | shard (10 bits) |
/// counter (44 bits).
pub(crate) fn session_id(node: u16, shard: usize, counter: u64) -> u64 {
    (u64::from(node & 0x3ff) << 54) | ((shard as u64 & 0x3ff) << 44) | (counter & ((1 << 44) - 1))
}

/// The shard of a session of this node (see [`session_id`]).
pub(crate) fn session_shard(session: u64) -> usize {
    ((session >> 44) & 0x3ff) as usize
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
pub(crate) struct LocalPresence {
    pub(crate) online: bool,
    /// When the user's last session on this node closed (0: never seen).
    pub(crate) last_seen_ms: i64,
}

/// The user → shards table.
pub(crate) struct Routes {
    shards: usize,
    users: DashMap<Arc<str>, UserSessions>,
}

impl Routes {
    pub(crate) fn new(shards: usize) -> Self {
        Self {
            shards,
            users: DashMap::new(),
        }
    }

    /// Records a session of `user` on `shard`; `true` when it is the user's first on the node.
    #[cfg(any(test, feature = "bench-internals"))]
    pub(crate) fn session_opened(&self, user: &Arc<str>, shard: usize) -> bool {
        self.session_opened_within(user, shard, usize::MAX)
            .unwrap_or(false)
    }

    /// Records a session of `user` on `shard` unless the user has `max` on the node already
    /// (`None`); `Some(true)` when it is the user's first.
    pub(crate) fn session_opened_within(
        &self,
        user: &Arc<str>,
        shard: usize,
        max: usize,
    ) -> Option<bool> {
        let shards = self.shards;
        let mut entry = self
            .users
            .entry(user.clone())
            .or_insert_with(|| UserSessions {
                per_shard: vec![0; shards].into_boxed_slice(),
                total: 0,
                last_seen_ms: 0,
            });
        if entry.total as usize >= max {
            return None;
        }
        if let Some(n) = entry.per_shard.get_mut(shard) {
            *n += 1;
        }
        entry.total += 1;
        Some(entry.total == 1)
    }

    /// Forgets a session; `true` when it was the user's last on the node.
    pub(crate) fn session_closed(&self, user: &str, shard: usize, now_ms: i64) -> bool {
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

    pub(crate) fn presence(&self, user: &str) -> LocalPresence {
        match self.users.get(user) {
            Some(e) => LocalPresence {
                online: e.total > 0,
                last_seen_ms: e.last_seen_ms,
            },
            None => LocalPresence {
                online: false,
                last_seen_ms: 0,
            },
        }
    }

    /// Users with a session on this node.
    pub(crate) fn online_users(&self) -> usize {
        self.users.iter().filter(|e| e.total > 0).count()
    }

    /// Calls `f(shard, user)` for every shard where `user` has sessions.
    pub(crate) fn for_each_shard(&self, user: &str, mut f: impl FnMut(usize, &Arc<str>)) {
        if let Some(entry) = self.users.get(user) {
            for (shard, n) in entry.per_shard.iter().enumerate() {
                if *n > 0 {
                    f(shard, entry.key());
                }
            }
        }
    }
}
