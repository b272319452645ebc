//! Storage decorators: [`Wrapped`] runs every storage call through an [`Around`], which sees
//! what the call is and the future that does it. [`Timing`] times every call into the metrics
//! (write and read latency, errors), so every engine is measured the same way without knowing
//! about metrics; the in-process test harness wraps storage the same way to hold the clock
//! still while storage works, and to order what tests need ordered.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use async_trait::async_trait;
use parley_storage::{Result, Storage};
use parley_types::*;
use tokio::time::Instant;

use crate::metrics::{Metrics, StorageOp};

/// What a storage call is, for an [`Around`].
#[derive(Clone, Copy, Debug)]
pub(crate) enum Call<'a> {
    /// A write; for an append, its client_msg_id when the [`Around`] asked to see them.
    Write(#[cfg_attr(not(test), allow(dead_code))] Option<&'a str>),
    Read,
    Health,
}

pub(crate) type CallFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T>> + Send + 'a>>;

/// Something done around every storage call.
pub(crate) trait Around: Send + Sync + 'static {
    /// Whether [`Call::Write`] carries an append's client_msg_id (a copy per append).
    const SEES_APPENDS: bool = false;

    fn around<'a, T: Send + 'a>(
        &'a self,
        call: Call<'a>,
        f: CallFuture<'a, T>,
    ) -> CallFuture<'a, T>;
}

/// A storage engine with an [`Around`] on every call.
pub(crate) struct Wrapped<A> {
    inner: Arc<dyn Storage>,
    around: A,
}

impl<A: Around> Wrapped<A> {
    pub(crate) fn new(inner: Arc<dyn Storage>, around: A) -> Self {
        Self { inner, around }
    }
}

/// Times calls into the metrics.
pub(crate) struct Timing(pub(crate) Arc<Metrics>);

impl Around for Timing {
    fn around<'a, T: Send + 'a>(
        &'a self,
        call: Call<'a>,
        f: CallFuture<'a, T>,
    ) -> CallFuture<'a, T> {
        Box::pin(async move {
            let start = Instant::now();
            let r = f.await;
            let op = match call {
                Call::Write(_) => StorageOp::Write,
                Call::Read => StorageOp::Read,
                Call::Health => return r,
            };
            self.0.storage(op, start.elapsed(), r.is_ok());
            r
        })
    }
}

/// The metered storage the node uses.
pub(crate) type Metered = Wrapped<Timing>;

const W: Call<'static> = Call::Write(None);
const R: Call<'static> = Call::Read;

#[async_trait]
impl<A: Around> Storage for Wrapped<A> {
    async fn create_direct(
        &self,
        buyer: &str,
        seller: &str,
        listing: &str,
        now_ms: i64,
    ) -> Result<Created> {
        let f = self.inner.create_direct(buyer, seller, listing, now_ms);
        self.around.around(W, f).await
    }
    async fn create_group(
        &self,
        creator: &str,
        participants: &[String],
        title: &str,
        now_ms: i64,
    ) -> Result<Conversation> {
        let f = self
            .inner
            .create_group(creator, participants, title, now_ms);
        self.around.around(W, f).await
    }
    async fn conversation(&self, id: ConversationId) -> Result<Option<Conversation>> {
        self.around.around(R, self.inner.conversation(id)).await
    }
    async fn delete_conversation(&self, id: ConversationId, by: &str) -> Result<Conversation> {
        self.around
            .around(W, self.inner.delete_conversation(id, by))
            .await
    }
    async fn append(&self, message: NewMessage) -> Result<Appended> {
        let key = A::SEES_APPENDS.then(|| message.client_msg_id.clone());
        let f = self.inner.append(message);
        self.around.around(Call::Write(key.as_deref()), f).await
    }
    async fn history(
        &self,
        c: ConversationId,
        before: Option<Position>,
        limit: usize,
    ) -> Result<HistoryPage> {
        self.around
            .around(R, self.inner.history(c, before, limit))
            .await
    }
    async fn messages_after(
        &self,
        c: ConversationId,
        after: Position,
        limit: usize,
    ) -> Result<Vec<Message>> {
        self.around
            .around(R, self.inner.messages_after(c, after, limit))
            .await
    }
    async fn mark_read(
        &self,
        c: ConversationId,
        user: &str,
        up_to: MessageId,
        now_ms: i64,
    ) -> Result<ReadOutcome> {
        self.around
            .around(W, self.inner.mark_read(c, user, up_to, now_ms))
            .await
    }
    async fn list_conversations(
        &self,
        user: &str,
        cursor: Option<ListCursor>,
        limit: usize,
    ) -> Result<ConversationPage> {
        let f = self.inner.list_conversations(user, cursor, limit);
        self.around.around(R, f).await
    }
    async fn read_state(&self, c: ConversationId, user: &str) -> Result<Option<ReadState>> {
        self.around.around(R, self.inner.read_state(c, user)).await
    }
    async fn unread_counts(&self, user: &str) -> Result<Vec<(ConversationId, u64)>> {
        self.around.around(R, self.inner.unread_counts(user)).await
    }
    async fn contacts(&self, user: &str, max_participants: usize) -> Result<Vec<String>> {
        self.around
            .around(R, self.inner.contacts(user, max_participants))
            .await
    }
    async fn set_block(&self, user: &str, target: &str, blocked: bool, now_ms: i64) -> Result<()> {
        let f = self.inner.set_block(user, target, blocked, now_ms);
        self.around.around(W, f).await
    }
    async fn blocks(&self, user: &str) -> Result<Vec<(String, i64)>> {
        self.around.around(R, self.inner.blocks(user)).await
    }
    async fn put_value(&self, owner: &str, key: &str, value: Option<Vec<u8>>) -> Result<()> {
        let f = self.inner.put_value(owner, key, value);
        self.around.around(W, f).await
    }
    async fn values(
        &self,
        owner: &str,
        prefix: &str,
        limit: usize,
    ) -> Result<Vec<(String, Vec<u8>)>> {
        let f = self.inner.values(owner, prefix, limit);
        self.around.around(R, f).await
    }
    async fn block_relations(&self, user: &str) -> Result<Vec<String>> {
        self.around
            .around(R, self.inner.block_relations(user))
            .await
    }
    async fn is_blocked_between(&self, a: &str, b: &str) -> Result<bool> {
        self.around
            .around(R, self.inner.is_blocked_between(a, b))
            .await
    }
    async fn report(&self, report: NewReport) -> Result<uuid::Uuid> {
        self.around.around(W, self.inner.report(report)).await
    }
    async fn report_by_id(&self, id: uuid::Uuid) -> Result<Option<Report>> {
        self.around.around(R, self.inner.report_by_id(id)).await
    }
    async fn reports(
        &self,
        filter: &ReportFilter,
        before: Option<uuid::Uuid>,
        limit: usize,
    ) -> Result<Vec<Report>> {
        self.around
            .around(R, self.inner.reports(filter, before, limit))
            .await
    }
    async fn moderate(&self, entry: ModerationEntry) -> Result<Standing> {
        self.around.around(W, self.inner.moderate(entry)).await
    }
    async fn standing(&self, user: &str) -> Result<Standing> {
        self.around.around(R, self.inner.standing(user)).await
    }
    async fn moderation_log(
        &self,
        target: Option<&str>,
        before: Option<uuid::Uuid>,
        limit: usize,
    ) -> Result<Vec<ModerationEntry>> {
        self.around
            .around(R, self.inner.moderation_log(target, before, limit))
            .await
    }
    async fn health(&self) -> Result<()> {
        self.around.around(Call::Health, self.inner.health()).await
    }
    fn alive(&self) -> bool {
        self.inner.alive()
    }
    async fn changes(&self, after: u64, limit: usize) -> Result<Vec<parley_storage::Change>> {
        self.around
            .around(R, self.inner.changes(after, limit))
            .await
    }
    async fn last_change(&self) -> Result<u64> {
        self.around.around(R, self.inner.last_change()).await
    }
    async fn messages_at(&self, at: Vec<(ConversationId, u64)>) -> Result<Vec<Option<Message>>> {
        self.around.around(R, self.inner.messages_at(at)).await
    }
    async fn trim_changes(&self, below: u64) -> Result<()> {
        self.around.around(W, self.inner.trim_changes(below)).await
    }
    async fn conversations_after(
        &self,
        after: Option<ConversationId>,
        limit: usize,
    ) -> Result<Vec<Conversation>> {
        let f = self.inner.conversations_after(after, limit);
        self.around.around(R, f).await
    }
}
