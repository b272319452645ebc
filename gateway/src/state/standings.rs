//! Where each user stands with the moderators (banned, muted, shadowed), cached
//! ([`PerUser`]): every Send, REST call and session start reads it. A moderator's action
//! drops the user's entry here and, through the bus, on every node.

use std::sync::Arc;

use parley_storage::Storage;
use parley_types::Standing;

use super::per_user::PerUser;

pub(crate) struct Standings {
    storage: Arc<dyn Storage>,
    cache: PerUser<Arc<Standing>>,
}

impl Standings {
    pub(crate) fn new(storage: Arc<dyn Storage>) -> Self {
        Self {
            storage,
            cache: PerUser::new(),
        }
    }

    /// `user`'s standing; the error when storage cannot say.
    pub(crate) async fn of(
        &self,
        user: &str,
    ) -> Result<Arc<Standing>, parley_storage::StorageError> {
        let load = async { Ok(Arc::new(self.storage.standing(user).await?)) };
        self.cache.get(user, load).await
    }

    /// Drops what is cached for `users` (a moderator acted on them).
    pub(crate) fn forget(&self, users: &[String]) {
        self.cache.forget(users);
    }
}
