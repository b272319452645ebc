//! A per-user cache of something storage knows (blocks, standing) that changes rarely and is
//! read on hot paths: a hit is one map lookup, a miss one storage read.
//!
//! A change drops the user's entry here and, through the bus, on every node. A load that raced
//! with a change is not cached: each change bumps an epoch, and a load keeps its result only if
//! the epoch did not move while it read.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};

use dashmap::DashMap;

/// Users cached before the cache is cleared (a memory bound; a miss is one read).
const CACHE_LIMIT: usize = 100_000;

pub(crate) struct PerUser<T> {
    cache: DashMap<String, T>,
    epoch: AtomicU64,
}

impl<T: Clone> PerUser<T> {
    pub(crate) fn new() -> Self {
        Self {
            cache: DashMap::new(),
            epoch: AtomicU64::new(0),
        }
    }

    /// `user`'s value, from the cache or from `load` (whose error is returned, never cached:
    /// a caller must not treat "unknown" as a value).
    pub(crate) async fn get<E, F>(&self, user: &str, load: F) -> Result<T, E>
    where
        F: Future<Output = Result<T, E>>,
    {
        if let Some(v) = self.cache.get(user) {
            return Ok(v.clone());
        }
        let epoch = self.epoch.load(Ordering::Acquire);
        let loaded = load.await?;
        if self.epoch.load(Ordering::Acquire) == epoch {
            if self.cache.len() >= CACHE_LIMIT {
                self.cache.clear();
            }
            self.cache.insert(user.to_owned(), loaded.clone());
        }
        Ok(loaded)
    }

    /// Drops what is cached for `users` (their value changed).
    pub(crate) fn forget(&self, users: &[String]) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        for u in users {
            self.cache.remove(u);
        }
    }

    /// Invalidations so far.
    pub(crate) fn invalidations(&self) -> u64 {
        self.epoch.load(Ordering::Relaxed)
    }
}
