//! Conversations: the unchanging row, activity, memberships, the direct triple's claim.

use std::collections::BTreeSet;

use parley_types::*;
use uuid::Uuid;

use super::rows::ConvRow;
use super::{Scylla, futures_join_all, seq_bucket, unavailable};
use crate::error::{Result, StorageError};

impl Scylla {
    pub(super) async fn load_static(&self, id: ConversationId) -> Result<Option<Conversation>> {
        let rows: Vec<ConvRow> = self.rows(&self.st.conversations.conv_get, (id.0,)).await?;
        rows.into_iter()
            .next()
            .map(ConvRow::into_conversation)
            .transpose()
    }
    pub(super) async fn load(&self, id: ConversationId) -> Result<Option<Conversation>> {
        type Head = (Option<i64>, Option<i64>, Option<i64>);
        let (c, head) = tokio::try_join!(
            self.load_static(id),
            self.rows::<Head>(&self.st.conversations.head_get, (id.0,))
        )?;
        Ok(c.map(|mut c| {
            if let Some((seq, last, at)) = head.into_iter().next() {
                c.last_seq = seq.unwrap_or(0).max(0) as u64;
                c.last_message_id = last.filter(|v| *v > 0).map(|v| MessageId(v as u64));
                if let Some(at) = at {
                    c.last_activity_ms = c.last_activity_ms.max(at);
                }
            }
            c
        }))
    }
    /// Up to `limit` conversations after `after` in token order (the partitioner's: every
    /// conversation once, pages that go on where the last one stopped).
    pub(super) async fn scan(
        &self,
        after: Option<ConversationId>,
        limit: usize,
    ) -> Result<Vec<Conversation>> {
        let limit = i32::try_from(limit.max(1)).unwrap_or(i32::MAX);
        let st = &self.st.conversations;
        let rows: Vec<(Uuid,)> = match after {
            None => self.rows(&st.conv_scan_first, (limit,)).await?,
            Some(a) => self.rows(&st.conv_scan, (a.0, limit)).await?,
        };
        let futs: Vec<_> = rows
            .into_iter()
            .map(|(id,)| self.load(ConversationId(id)))
            .collect();
        // One deleted between the scan and its load: left out.
        Ok(futures_join_all(futs)
            .await?
            .into_iter()
            .flatten()
            .collect())
    }
    pub(super) async fn member_ids(&self, user: &str) -> Result<Vec<ConversationId>> {
        let rows: Vec<(Uuid,)> = self
            .rows(&self.st.conversations.member_list, (user,))
            .await?;
        Ok(rows.into_iter().map(|(id,)| ConversationId(id)).collect())
    }
    pub(super) async fn member_conversations(&self, user: &str) -> Result<Vec<Conversation>> {
        let ids = self.member_ids(user).await?;
        let loaded = {
            let futs: Vec<_> = ids.into_iter().map(|id| self.load(id)).collect();
            futures_join_all(futs).await
        }?;
        Ok(loaded.into_iter().flatten().collect())
    }
    pub(super) async fn insert_conversation(&self, c: &Conversation) -> Result<()> {
        {
            let futs: Vec<_> = c
                .participants
                .iter()
                .map(|u| self.exec(&self.st.conversations.member_insert, (u.clone(), c.id.0)))
                .collect();
            futures_join_all(futs).await
        }?;
        self.exec(&self.st.conversations.conv_insert, ConvRow::of(c))
            .await
    }
    pub(super) async fn create_direct(
        &self,
        buyer: &str,
        seller: &str,
        listing: &str,
        now_ms: i64,
    ) -> Result<Created> {
        crate::rules::direct_ids(buyer, seller, listing)?;
        let existing = |this: &Self| {
            let this = this.clone();
            let (b, s, l) = (buyer.to_owned(), seller.to_owned(), listing.to_owned());
            async move {
                let rows: Vec<(Option<Uuid>,)> = this
                    .rows(&this.st.conversations.direct_get, (b, s, l))
                    .await?;
                Ok::<_, StorageError>(rows.into_iter().next().and_then(|(id,)| id))
            }
        };
        if let Some(id) = existing(self).await? {
            let c = self
                .eventually(|| self.load(ConversationId(id)))
                .await?
                .ok_or_else(|| StorageError::Unavailable("conversation row missing".into()))?;
            return Ok(Created {
                conversation: c,
                created: false,
            });
        }
        if self.blocked_between(buyer, seller).await? {
            return Err(StorageError::Blocked);
        }
        let id = ConversationId::random();
        let claim = self
            .session
            .execute_unpaged(
                &self.st.conversations.direct_claim,
                (buyer, seller, listing, id.0),
            )
            .await
            .map_err(unavailable)?
            .into_rows_result()
            .map_err(unavailable)?;
        let applied = claim
            .rows::<scylla::value::Row>()
            .map_err(|e| StorageError::Corrupt(e.to_string()))?
            .next()
            .and_then(|r| r.ok())
            .and_then(|r| r.columns.first().cloned().flatten())
            .and_then(|v| v.as_boolean())
            .unwrap_or(false);
        if !applied {
            // Someone else created it first: theirs is the one.
            let winner = existing(self)
                .await?
                .ok_or_else(|| StorageError::Unavailable("direct claim vanished".into()))?;
            let c = self
                .eventually(|| self.load(ConversationId(winner)))
                .await?
                .ok_or_else(|| StorageError::Unavailable("conversation row missing".into()))?;
            return Ok(Created {
                conversation: c,
                created: false,
            });
        }
        let c = Conversation::new_direct(id, buyer, seller, listing, now_ms);
        self.insert_conversation(&c).await?;
        Ok(Created {
            conversation: c,
            created: true,
        })
    }
    pub(super) async fn create_group(
        &self,
        creator: &str,
        participants: &[String],
        title: &str,
        now_ms: i64,
    ) -> Result<Conversation> {
        let all = crate::rules::group_members(creator, participants)?;
        let blocked = {
            let futs: Vec<_> = all
                .iter()
                .filter(|u| *u != creator)
                .map(|u| self.blocked_between(creator, u))
                .collect();
            futures_join_all(futs).await
        }?;
        if blocked.into_iter().any(|b| b) {
            return Err(StorageError::Blocked);
        }
        let kind = ConversationKind::Group {
            title: title.to_owned(),
            creator: creator.to_owned(),
        };
        let c = Conversation::new(ConversationId::random(), kind, all, now_ms);
        self.insert_conversation(&c).await?;
        Ok(c)
    }
    pub(super) async fn delete_conversation(
        &self,
        id: ConversationId,
        by: &str,
    ) -> Result<Conversation> {
        let c = self.load(id).await?.ok_or(StorageError::NotFound)?;
        if !c.may_delete(by) {
            return Err(StorageError::Forbidden(
                "only its owners may delete a conversation",
            ));
        }
        // The row that makes it exist goes first; the rest is cleanup.
        self.exec(&self.st.conversations.conv_delete, (id.0,))
            .await?;
        if let ConversationKind::Direct {
            buyer,
            seller,
            listing,
        } = &c.kind
        {
            self.exec(
                &self.st.conversations.direct_delete,
                (buyer, seller, listing),
            )
            .await?;
        }
        {
            let futs: Vec<_> = c
                .participants
                .iter()
                .map(|u| self.exec(&self.st.conversations.member_delete, (u.clone(), id.0)))
                .collect();
            futures_join_all(futs).await
        }?;
        {
            let futs: Vec<_> = (0..=seq_bucket(c.last_seq))
                .map(|b| self.exec(&self.st.messages.msg_delete_bucket, (id.0, b)))
                .collect();
            futures_join_all(futs).await
        }?;
        tokio::try_join!(
            self.exec(&self.st.messages.key_delete_all, (id.0,)),
            self.exec(&self.st.messages.mark_delete_all, (id.0,)),
            self.exec(&self.st.conversations.head_delete, (id.0,)),
        )?;
        Ok(c)
    }
    pub(super) async fn list_conversations(
        &self,
        user: &str,
        cursor: Option<ListCursor>,
        limit: usize,
    ) -> Result<ConversationPage> {
        let limit = limit.clamp(1, MAX_PAGE);
        let all = self.member_conversations(user).await?;
        let (page, next_cursor) = crate::rules::page(all, cursor, limit);
        let futs: Vec<_> = page
            .into_iter()
            .map(|c| async move {
                let last_message = match c.last_seq {
                    0 => None,
                    seq => self.message(c.id, seq).await?,
                };
                Ok(ConversationSummary {
                    unread: self.unread(&c, user).await?,
                    conversation: c,
                    last_message,
                })
            })
            .collect();
        let items = futures_join_all(futs).await?;
        Ok(ConversationPage { items, next_cursor })
    }
    pub(super) async fn unread_counts(&self, user: &str) -> Result<Vec<(ConversationId, u64)>> {
        let all = self.member_conversations(user).await?;
        let counts = {
            let futs: Vec<_> = all
                .iter()
                .map(|c| async move { Ok((c.id, self.unread(c, user).await?)) })
                .collect();
            futures_join_all(futs).await
        }?;
        Ok(counts.into_iter().filter(|(_, n)| *n > 0).collect())
    }
    pub(super) async fn contacts(
        &self,
        user: &str,
        max_participants: usize,
    ) -> Result<Vec<String>> {
        let set: BTreeSet<String> = self
            .member_conversations(user)
            .await?
            .into_iter()
            .filter(|c| c.participants.len() <= max_participants)
            .flat_map(|c| c.participants)
            .filter(|p| p != user)
            .collect();
        Ok(set.into_iter().collect())
    }
}
