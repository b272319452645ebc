//! A storage decorator that times every call into the metrics (write and read latency, errors),
//! so every engine is measured the same way without knowing about metrics.

use std::future::Future;
use std::sync::Arc;

use async_trait::async_trait;
use parley_storage::*;
use parley_types::*;
use tokio::time::Instant;

use crate::metrics::{Metrics, StorageOp};

pub struct Metered {
    inner: Arc<dyn Storage>,
    metrics: Arc<Metrics>,
}

impl Metered {
    pub fn new(inner: Arc<dyn Storage>, metrics: Arc<Metrics>) -> Self {
        Self { inner, metrics }
    }

    async fn timed<T>(&self, op: StorageOp, call: impl Future<Output = Result<T>>) -> Result<T> {
        let start = Instant::now();
        let r = call.await;
        self.metrics.storage(op, start.elapsed(), r.is_ok());
        r
    }
}

use StorageOp::{Read, Write};

#[async_trait]
impl Storage for Metered {
    async fn create_direct(
        &self,
        buyer: &str,
        seller: &str,
        listing: &str,
        now_ms: i64,
    ) -> Result<Created> {
        self.timed(
            Write,
            self.inner.create_direct(buyer, seller, listing, now_ms),
        )
        .await
    }
    async fn create_group(
        &self,
        creator: &str,
        participants: &[String],
        title: &str,
        now_ms: i64,
    ) -> Result<Conversation> {
        self.timed(
            Write,
            self.inner
                .create_group(creator, participants, title, now_ms),
        )
        .await
    }
    async fn conversation(&self, id: ConversationId) -> Result<Option<Conversation>> {
        self.timed(Read, self.inner.conversation(id)).await
    }
    async fn delete_conversation(&self, id: ConversationId, by: &str) -> Result<Conversation> {
        self.timed(Write, self.inner.delete_conversation(id, by))
            .await
    }
    async fn append(&self, message: NewMessage) -> Result<Appended> {
        self.timed(Write, self.inner.append(message)).await
    }
    async fn history(
        &self,
        c: ConversationId,
        before: Option<MessageId>,
        limit: usize,
    ) -> Result<HistoryPage> {
        self.timed(Read, self.inner.history(c, before, limit)).await
    }
    async fn messages_after(
        &self,
        c: ConversationId,
        after: MessageId,
        limit: usize,
    ) -> Result<Vec<Message>> {
        self.timed(Read, self.inner.messages_after(c, after, limit))
            .await
    }
    async fn mark_read(
        &self,
        c: ConversationId,
        user: &str,
        up_to: MessageId,
        now_ms: i64,
    ) -> Result<ReadOutcome> {
        self.timed(Write, self.inner.mark_read(c, user, up_to, now_ms))
            .await
    }
    async fn list_conversations(
        &self,
        user: &str,
        cursor: Option<ListCursor>,
        limit: usize,
    ) -> Result<ConversationPage> {
        self.timed(Read, self.inner.list_conversations(user, cursor, limit))
            .await
    }
    async fn unread_counts(&self, user: &str) -> Result<Vec<(ConversationId, u64)>> {
        self.timed(Read, self.inner.unread_counts(user)).await
    }
    async fn contacts(&self, user: &str) -> Result<Vec<String>> {
        self.timed(Read, self.inner.contacts(user)).await
    }
    async fn set_block(&self, user: &str, target: &str, blocked: bool, now_ms: i64) -> Result<()> {
        self.timed(Write, self.inner.set_block(user, target, blocked, now_ms))
            .await
    }
    async fn is_blocked_between(&self, a: &str, b: &str) -> Result<bool> {
        self.timed(Read, self.inner.is_blocked_between(a, b)).await
    }
    async fn report(&self, report: NewReport) -> Result<uuid::Uuid> {
        self.timed(Write, self.inner.report(report)).await
    }
    async fn health(&self) -> Result<()> {
        self.inner.health().await
    }
}
