//! Message search for a user: the index (`crate::search`) asked with the user's blocks left
//! out, and every hit checked against the conversation as it is now (a conversation deleted or
//! left since it was indexed never shows).

use parley_proto::ErrorCode;

use super::Chat;
use crate::errors::ClientError;
use parley_types::{ConversationId, ConversationPage, ListCursor};

use crate::search::{ConversationQuery, Parsed, Search, SearchPage, SearchRequest, SortBy};

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
                "search is not available on this node (one node: --search on; a cluster: --solr)",
            ));
        };
        let parsed =
            Parsed::parse(&r.q).map_err(|why| ClientError::new(ErrorCode::Invalid, why))?;
        if let Some(c) = r.conversation {
            self.conversations.for_user(c, user).await?;
        }
        let blocked = self.blocks.relations(user).await?;
        let limit = r.limit.clamp(1, crate::search::MAX_LIMIT);
        let (sort, offset) = (r.sort, r.offset);
        let engine = index.engine();
        let raw = index
            .search(Search {
                user: user.to_owned(),
                query: parsed,
                conversation: r.conversation,
                before: r.before,
                exclude_senders: blocked.iter().cloned().collect(),
                sort,
                offset,
                limit,
            })
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, engine, "search failed");
                ClientError::new(
                    ErrorCode::StorageUnavailable,
                    "search is unavailable right now; retry later",
                )
            })?;
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

    /// A cluster's index is told of a deleted conversation by the node that deleted it (one
    /// node's index reads deletes from storage's change feed). Not waited for: until it is
    /// done, every hit is checked against the conversation anyway.
    pub(super) fn unindex(&self, conversation: ConversationId) {
        let (Some(index), Some(_)) = (self.search.clone(), &self.bus) else {
            return;
        };
        tokio::spawn(async move {
            let deleted = async {
                let mut w = index.writer()?;
                w.delete_conversation(conversation);
                w.commit(0).await
            };
            if let Err(e) = deleted.await {
                tracing::warn!(error = %e, %conversation, "search: removing a deleted conversation failed");
            }
        });
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
