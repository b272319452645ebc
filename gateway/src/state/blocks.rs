//! Who has a block with whom, cached ([`PerUser`]): every event with an actor (a message,
//! typing, a read receipt, presence) skips the users with a block between them and the actor,
//! so the cache is read on every fan-out and storage only on a miss. A block or unblock drops
//! both users' entries here and, through the bus, on every node.

use std::collections::HashSet;
use std::sync::Arc;

use parley_storage::Storage;

use super::per_user::PerUser;

/// The users with a block between them and one user.
pub(crate) type Relations = Arc<HashSet<String>>;

pub(crate) struct Blocks {
    storage: Arc<dyn Storage>,
    cache: PerUser<Relations>,
}

impl Blocks {
    pub(crate) fn new(storage: Arc<dyn Storage>) -> Self {
        Self {
            storage,
            cache: PerUser::new(),
        }
    }

    /// The users with a block between them and `user`, either way. If storage cannot answer,
    /// the error: a caller must not treat "unknown" as "none".
    pub(crate) async fn relations(
        &self,
        user: &str,
    ) -> Result<Relations, parley_storage::StorageError> {
        let load = async {
            let users = self.storage.block_relations(user).await?;
            Ok(Arc::new(users.into_iter().collect()))
        };
        self.cache.get(user, load).await
    }

    /// Drops what is cached for `users` (a block between them changed).
    pub(crate) fn forget(&self, users: &[String]) {
        self.cache.forget(users);
    }

    /// Invalidations so far (the `parley_block_invalidations_total` metric).
    pub(crate) fn invalidations(&self) -> u64 {
        self.cache.invalidations()
    }
}
