//! Conversations this node has looked at, cached, and who may see them.

use std::sync::Arc;

use dashmap::DashMap;
use parley_proto::ErrorCode;
use parley_storage::Storage;
use parley_types::{Conversation, ConversationId};

use crate::errors::ClientError;

/// Conversations cached before the cache is cleared (a memory bound; a miss is one read).
const CACHE_LIMIT: usize = 200_000;

/// The conversation cache and its authorization rule (participants only).
pub(crate) struct Conversations {
    storage: Arc<dyn Storage>,
    cache: DashMap<ConversationId, Arc<Conversation>>,
}

impl Conversations {
    pub(crate) fn new(storage: Arc<dyn Storage>) -> Self {
        Self {
            storage,
            cache: DashMap::new(),
        }
    }

    /// The conversation (cached), or NotFound.
    pub(crate) async fn get(&self, id: ConversationId) -> Result<Arc<Conversation>, ClientError> {
        if let Some(c) = self.cache.get(&id) {
            return Ok(c.clone());
        }
        let c = self
            .storage
            .conversation(id)
            .await?
            .ok_or_else(|| ClientError::new(ErrorCode::NotFound, "no such conversation"))?;
        let c = Arc::new(c);
        if self.cache.len() >= CACHE_LIMIT {
            self.cache.clear();
        }
        self.cache.insert(id, c.clone());
        Ok(c)
    }

    /// The conversation if `user` takes part in it: NotFound / Forbidden otherwise.
    pub(crate) async fn for_user(
        &self,
        id: ConversationId,
        user: &str,
    ) -> Result<Arc<Conversation>, ClientError> {
        let c = self.get(id).await?;
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
    pub(crate) fn forget(&self, id: ConversationId) {
        self.cache.remove(&id);
    }
}
