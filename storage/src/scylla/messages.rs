//! Messages: bucketed history, idempotent appends, read watermarks.

use parley_types::ids::timestamp_ms;
use parley_types::*;

use super::rows::{MsgInsert, MsgRow};
use super::{Scylla, bucket_of, id_bucket, key_stripe};
use crate::MAX_PAGE;
use crate::error::{Result, StorageError};

impl Scylla {
    pub(super) async fn message(
        &self,
        conv: ConversationId,
        id: MessageId,
    ) -> Result<Option<Message>> {
        let rows: Vec<MsgRow> = self
            .rows(
                &self.st.messages.msg_get,
                (conv.0, id_bucket(id), id.0 as i64),
            )
            .await?;
        rows.into_iter()
            .next()
            .map(|r| r.into_message(conv))
            .transpose()
    }
    pub(super) async fn read_state(
        &self,
        conv: ConversationId,
        user: &str,
    ) -> Result<Option<ReadState>> {
        let rows: Vec<(Option<i64>, Option<i64>)> = self
            .rows(&self.st.messages.read_get, (conv.0, user))
            .await?;
        Ok(rows.into_iter().next().and_then(|(up_to, at)| {
            up_to.map(|u| ReadState {
                up_to: MessageId(u as u64),
                seq: 0,
                read_at_ms: at.unwrap_or(0),
            })
        }))
    }
    pub(super) async fn write_read_state(
        &self,
        conv: ConversationId,
        user: &str,
        up_to: MessageId,
        at: i64,
    ) -> Result<()> {
        self.exec(
            &self.st.messages.read_set,
            (up_to.0 as i64, up_to.0 as i64, at, conv.0, user),
        )
        .await
    }
    pub(super) async fn count_after(
        &self,
        c: &Conversation,
        after: MessageId,
        cap: usize,
    ) -> Result<u64> {
        let Some(last) = c.last_message_id else {
            return Ok(0);
        };
        if last <= after {
            return Ok(0);
        }
        let low = if after.0 == 0 {
            bucket_of(c.created_at_ms)
        } else {
            id_bucket(after)
        };
        let mut count = 0usize;
        let mut bucket = id_bucket(last);
        while bucket >= low && count < cap {
            let rows: Vec<(i64,)> = self
                .rows(
                    &self.st.messages.msg_ids_after,
                    (c.id.0, bucket, after.0 as i64, (cap - count) as i32),
                )
                .await?;
            count += rows.len();
            bucket -= 1;
        }
        Ok(count as u64)
    }
    pub(super) async fn insert_message(&self, m: &Message) -> Result<()> {
        let row = MsgInsert::new(m, id_bucket(m.id));
        let st = &self.st.messages;
        match &m.media {
            None => self.exec(&st.msg_insert, row).await,
            Some(media) => self.exec(&st.msg_insert_media, row.with_media(media)).await,
        }
    }
    pub(super) async fn append(&self, m: NewMessage) -> Result<Appended> {
        let c = self
            .load(m.conversation)
            .await?
            .ok_or(StorageError::NotFound)?;
        if !c.has_participant(&m.sender) {
            return Err(StorageError::Forbidden("not a participant"));
        }
        let _key = self.key_locks[key_stripe(m.conversation, &m.sender, &m.client_msg_id)]
            .lock()
            .await;
        let key = (m.conversation.0, m.sender.clone(), m.client_msg_id.clone());
        let found: Vec<(Option<i64>, Option<i32>)> =
            self.rows(&self.st.messages.key_get, key.clone()).await?;
        if let Some((Some(id), _)) = found.into_iter().next() {
            let id = MessageId(id as u64);
            if let Some(message) = self.message(m.conversation, id).await? {
                return Ok(Appended {
                    message,
                    duplicate: true,
                });
            }
            // The first attempt stopped between its key and its message: finish it, same id.
            let message = m.into_message(id, 0, timestamp_ms(id));
            self.insert_message(&message).await?;
            return Ok(Appended {
                message,
                duplicate: false,
            });
        }
        if let ConversationKind::Direct { buyer, seller, .. } = &c.kind
            && self.blocked_between(buyer, seller).await?
        {
            return Err(StorageError::Blocked);
        }
        let id = self.next_id(m.now_ms);
        self.exec(
            &self.st.messages.key_insert,
            (
                key.0,
                key.1.clone(),
                key.2.clone(),
                id.0 as i64,
                id_bucket(id),
            ),
        )
        .await?;
        // Read the key back: a racing writer of the same key on another node may have won.
        let back: Vec<(Option<i64>, Option<i32>)> =
            self.rows(&self.st.messages.key_get, key).await?;
        if let Some((Some(other), _)) = back.into_iter().next()
            && other as u64 != id.0
        {
            let other = MessageId(other as u64);
            let message = self
                .eventually(|| self.message(m.conversation, other))
                .await?
                .ok_or_else(|| {
                    StorageError::Unavailable("racing duplicate not stored yet".into())
                })?;
            return Ok(Appended {
                message,
                duplicate: true,
            });
        }
        let now_ms = m.now_ms;
        let message = m.into_message(id, 0, now_ms);
        self.insert_message(&message).await?;
        tokio::try_join!(
            self.exec(
                &self.st.conversations.activity_set,
                (id.0 as i64, id.0 as i64, now_ms, message.conversation.0)
            ),
            self.write_read_state(message.conversation, &message.sender, id, now_ms),
        )?;
        Ok(Appended {
            message,
            duplicate: false,
        })
    }
    pub(super) async fn history(
        &self,
        conversation: ConversationId,
        before: Option<MessageId>,
        limit: usize,
    ) -> Result<HistoryPage> {
        let limit = limit.clamp(1, MAX_PAGE);
        let Some(c) = self.load(conversation).await? else {
            return Ok(HistoryPage::default());
        };
        let Some(last) = c.last_message_id else {
            return Ok(HistoryPage::default());
        };
        let start = before.unwrap_or(MessageId(u64::MAX));
        let low = bucket_of(c.created_at_ms);
        let mut bucket = id_bucket(start.min(MessageId(last.0.saturating_add(1))));
        let mut messages = Vec::with_capacity(limit + 1);
        // One extra row tells whether an older page exists.
        while bucket >= low && messages.len() <= limit {
            let want = (limit + 1 - messages.len()) as i32;
            let rows: Vec<MsgRow> = self
                .rows(
                    &self.st.messages.msg_before,
                    (
                        conversation.0,
                        bucket,
                        start.0.min(i64::MAX as u64) as i64,
                        want,
                    ),
                )
                .await?;
            for r in rows {
                messages.push(r.into_message(conversation)?);
            }
            bucket -= 1;
        }
        let more = messages.len() > limit;
        messages.truncate(limit);
        let next_before = if more {
            messages.last().map(|m| m.id)
        } else {
            None
        };
        Ok(HistoryPage {
            messages,
            next_before,
        })
    }
    pub(super) async fn messages_after(
        &self,
        conversation: ConversationId,
        after: MessageId,
        limit: usize,
    ) -> Result<Vec<Message>> {
        let Some(c) = self.load(conversation).await? else {
            return Ok(Vec::new());
        };
        let Some(last) = c.last_message_id else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        if after >= last || after.0 > i64::MAX as u64 {
            return Ok(out);
        }
        let mut bucket = if after.0 == 0 {
            bucket_of(c.created_at_ms)
        } else {
            id_bucket(after).max(bucket_of(c.created_at_ms))
        };
        let high = id_bucket(last);
        while bucket <= high && out.len() < limit {
            let want = (limit - out.len()) as i32;
            let rows: Vec<MsgRow> = self
                .rows(
                    &self.st.messages.msg_after,
                    (conversation.0, bucket, after.0 as i64, want),
                )
                .await?;
            for r in rows {
                out.push(r.into_message(conversation)?);
            }
            bucket += 1;
        }
        Ok(out)
    }
    pub(super) async fn mark_read(
        &self,
        conversation: ConversationId,
        user: &str,
        up_to: MessageId,
        now_ms: i64,
    ) -> Result<ReadOutcome> {
        let c = self
            .load(conversation)
            .await?
            .ok_or(StorageError::NotFound)?;
        if !c.has_participant(user) {
            return Err(StorageError::Forbidden("not a participant"));
        }
        let current = self
            .read_state(conversation, user)
            .await?
            .unwrap_or(ReadState {
                up_to: MessageId(0),
                seq: 0,
                read_at_ms: 0,
            });
        // The newest message at or before `up_to`.
        let target = match c.last_message_id {
            None => None,
            Some(last) if last <= up_to => Some(last),
            Some(_) => {
                let low = bucket_of(c.created_at_ms);
                let mut bucket = id_bucket(up_to);
                let mut found = None;
                while bucket >= low && found.is_none() {
                    let rows: Vec<(i64,)> = self
                        .rows(
                            &self.st.messages.msg_at_or_before,
                            (conversation.0, bucket, up_to.0.min(i64::MAX as u64) as i64),
                        )
                        .await?;
                    found = rows.into_iter().next().map(|(id,)| MessageId(id as u64));
                    bucket -= 1;
                }
                found
            }
        };
        match target {
            Some(id) if id > current.up_to => {
                self.write_read_state(conversation, user, id, now_ms)
                    .await?;
                Ok(ReadOutcome {
                    state: ReadState {
                        up_to: id,
                        seq: 0,
                        read_at_ms: now_ms,
                    },
                    advanced: true,
                })
            }
            _ => Ok(ReadOutcome {
                state: current,
                advanced: false,
            }),
        }
    }
}
