//! Who has a block with whom, cached: every event with an actor (a message, typing, a read
//! receipt, presence) skips the users with a block between them and the actor, so the cache
//! is read on every fan-out and storage only on a miss.
//!
//! A change (block or unblock) drops both users' entries here and, through the bus, on every
//! node. A load that raced with a change is not cached: each change bumps an epoch, and a load
//! keeps its result only if the epoch did not move while it read.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use dashmap::DashMap;
use parley_storage::Storage;

/// Users cached before the cache is cleared (a memory bound; a miss is one read).
const CACHE_LIMIT: usize = 100_000;

/// The users with a block between them and one user.
pub(crate) type Relations = Arc<HashSet<String>>;

pub(crate) struct Blocks {
    storage: Arc<dyn Storage>,
    cache: DashMap<String, Relations>,
    epoch: AtomicU64,
}

impl Blocks {
    pub(crate) fn new(storage: Arc<dyn Storage>) -> Self {
        Self {
            storage,
            cache: DashMap::new(),
            epoch: AtomicU64::new(0),
        }
    }

    /// The users with a block between them and `user`, either way. If storage cannot answer,
    /// the error: a caller must not treat "unknown" as "none".
    pub(crate) async fn relations(
        &self,
        user: &str,
    ) -> Result<Relations, parley_storage::StorageError> {
        if let Some(r) = self.cache.get(user) {
            return Ok(r.clone());
        }
        let epoch = self.epoch.load(Ordering::Acquire);
        let loaded: Relations = Arc::new(
            self.storage
                .block_relations(user)
                .await?
                .into_iter()
                .collect(),
        );
        if self.epoch.load(Ordering::Acquire) == epoch {
            if self.cache.len() >= CACHE_LIMIT {
                self.cache.clear();
            }
            self.cache.insert(user.to_owned(), loaded.clone());
        }
        Ok(loaded)
    }

    /// Drops what is cached for `users` (a block between them changed).
    pub(crate) fn forget(&self, users: &[String]) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        // (The epoch counts the invalidations too.)
        for u in users {
            self.cache.remove(u);
        }
    }

    /// Invalidations so far (the `parley_block_invalidations_total` metric).
    pub(crate) fn invalidations(&self) -> u64 {
        self.epoch.load(Ordering::Relaxed)
    }
}
