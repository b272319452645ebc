//! Message search for a user: the index (`crate::search`) asked with the user's blocks left
//! out, and every hit checked against the conversation as it is now (a conversation deleted or
//! left since it was indexed never shows).

use std::sync::Arc;

use parley_proto::ErrorCode;

use super::Chat;
use crate::errors::ClientError;
use parley_types::{ConversationPage, ListCursor};

use crate::search::{
    ConversationQuery, Parsed, Search, SearchIndex, SearchPage, SearchRequest, SortBy,
};

/// Conversations one conversation search looks through before it answers with what it found
/// (and a cursor to go on from).
const MAX_SCANNED: usize = 2000;

impl Chat {
    /// The user's messages matching `r`, from conversations they are in now, never from users
    /// with a block between them.
    pub(crate) async fn search(
        &self,
        user: &str,
        r: SearchRequest,
    ) -> Result<SearchPage, ClientError> {
        let Some(index) = self.search.clone() else {
            return Err(ClientError::new(
                ErrorCode::Unsupported,
                "search is not available on this node (it needs the embedded storage and --search on)",
            ));
        };
        let parsed =
            Parsed::parse(&r.q).map_err(|why| ClientError::new(ErrorCode::Invalid, why))?;
        if let Some(c) = r.conversation {
            self.conversations.for_user(c, user).await?;
        }
        let blocked = self.blocks.relations(user).await?;
        let limit = r.limit.clamp(1, crate::search::MAX_LIMIT);
        let (user_owned, sort, offset) = (user.to_owned(), r.sort, r.offset);
        let (conversation, before) = (r.conversation, r.before);
        let raw = run(index, move |index| {
            let exclude: Vec<String> = blocked.iter().cloned().collect();
            index.search(&Search {
                user: &user_owned,
                query: &parsed,
                conversation,
                before,
                exclude_senders: &exclude,
                sort,
                offset,
                limit,
            })
        })
        .await?;
        let full = raw.len() == limit;
        let next_before = match sort {
            SortBy::Newest if full => raw.last().map(|h| h.id),
            _ => None,
        };
        let next_offset = (sort == SortBy::Relevance && full).then_some(offset + raw.len());
        let mut hits = Vec::with_capacity(raw.len());
        for hit in raw {
            match self.conversations.for_user(hit.conversation, user).await {
                Ok(_) => hits.push(hit),
                Err(e) if matches!(e.code, ErrorCode::NotFound | ErrorCode::Forbidden) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(SearchPage {
            hits,
            next_before,
            next_offset,
        })
    }
}

impl Chat {
    /// `user`'s conversations matching `q` (see `search::ConversationQuery`), by last
    /// activity: up to `limit`, looking through at most [`MAX_SCANNED`] from `cursor`; the
    /// page's `next_cursor` goes on from where it stopped.
    pub(crate) async fn search_conversations(
        &self,
        user: &str,
        q: &str,
        mut cursor: Option<ListCursor>,
        limit: usize,
    ) -> Result<ConversationPage, ClientError> {
        let query =
            ConversationQuery::parse(q).map_err(|why| ClientError::new(ErrorCode::Invalid, why))?;
        let limit = limit.clamp(1, parley_types::MAX_PAGE);
        let mut out = ConversationPage::default();
        let mut scanned = 0;
        loop {
            let page = self.list(user, cursor, parley_types::MAX_PAGE).await?;
            for item in page.items {
                scanned += 1;
                cursor = Some(ListCursor {
                    last_activity_ms: item.conversation.last_activity_ms,
                    id: item.conversation.id,
                });
                if query.matches(&item, user) {
                    out.items.push(item);
                }
                if out.items.len() == limit || scanned == MAX_SCANNED {
                    out.next_cursor = cursor;
                    return Ok(out);
                }
            }
            if page.next_cursor.is_none() {
                return Ok(out);
            }
        }
    }
}

/// Runs a query on the blocking pool (tantivy reads and scores synchronously).
async fn run<T: Send + 'static>(
    index: Arc<SearchIndex>,
    f: impl FnOnce(&SearchIndex) -> Result<T, crate::search::SearchError> + Send + 'static,
) -> Result<T, ClientError> {
    let result = tokio::task::spawn_blocking(move || f(&index))
        .await
        .map_err(|e| crate::search::SearchError::Join(e.to_string()));
    match result.and_then(|r| r) {
        Ok(v) => Ok(v),
        Err(e) => {
            tracing::warn!(error = %e, "search failed");
            Err(ClientError::new(
                ErrorCode::StorageUnavailable,
                "search is unavailable right now; retry later",
            ))
        }
    }
}
