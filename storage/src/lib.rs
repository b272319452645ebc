//! Parley's storage: one async trait ([`Storage`]) whose guarantees are written on it, the
//! conformance suite every engine must pass ([`conformance`]), and the embedded engine
//! ([`embedded::Embedded`], fjall with group commit).

pub mod conformance;
pub mod embedded;
mod error;
mod record;
mod rules;
pub mod scylla;

use async_trait::async_trait;
use parley_types::*;

pub use error::{Result, StorageError};

/// Most participants a group conversation may have.
pub const MAX_GROUP_PARTICIPANTS: usize = 1_000;
/// Largest page [`Storage::history`] and [`Storage::list_conversations`] return.
pub use parley_types::MAX_PAGE;
/// Longest key of [`Storage::put_value`].
pub const MAX_VALUE_KEY_BYTES: usize = 256;
/// Largest value of [`Storage::put_value`].
pub const MAX_VALUE_BYTES: usize = 8 * 1024;

/// History, conversations and read state.
///
/// Guarantees every engine gives (the [`conformance`] suite checks each one):
///
/// - **Durability.** When a write method returns `Ok`, its effect survives a crash of the
///   process (and, for the embedded engine, loss of power): callers acknowledge to clients only
///   after `Ok`. On `Err` the write may or may not have happened; retrying with the same
///   idempotency key is safe.
/// - **Ordering.** Every message gets a `seq`, its position in its conversation: 1, 2, 3, … in
///   commit order, dense (no gap, no repeat) however many writers append at once on however many
///   nodes. A message with seq `n` is readable before any message with seq `n + 1` is
///   acknowledged, so a reader who sees `n + 1` can always read `n` (this is what lets
///   delivery fill a gap from storage). Ids are unique across a cluster and increase with seq
///   within a conversation (time-ordered otherwise); history pages and resume go by seq, and
///   by id where a caller only has an id. `Conversation::last_seq` is the seq of the last
///   message, `ReadState::seq` that of the watermark.
/// - **Idempotency.** An append with a (conversation, sender, client_msg_id) already stored
///   writes nothing and returns the stored message with `duplicate = true`.
/// - **Pagination.** [`Storage::history`] is newest first, at most `limit` (clamped to
///   [`MAX_PAGE`]) messages strictly older than `before`, and `next_before` is `Some` exactly when
///   older messages exist. Walking pages until `None` yields every message once.
///   [`Storage::list_conversations`] orders by last activity descending, then id; pages chain
///   through `next_cursor` without repeats while activity does not change.
/// - **Watermarks.** A read watermark never moves backwards; [`Storage::mark_read`] with an
///   older message leaves it unchanged and says so. Appending a message moves the sender's own
///   watermark to it, so unread counts never include a user's own messages. Unread counts are
///   the messages after the watermark: `last_seq - watermark seq`.
/// - **Authorization.** Appends and read marks by a non-participant fail with
///   [`StorageError::Forbidden`]; unknown conversations with [`StorageError::NotFound`].
/// - **Uniqueness.** One direct conversation per (buyer, seller, listing), whoever creates it
///   and however many create it at once.
#[async_trait]
pub trait Storage: Send + Sync + 'static {
    /// The direct conversation of (buyer, seller, listing): created with both as participants,
    /// or the existing one returned with `created = false`. Fails with `Blocked` when either
    /// user blocked the other and it does not exist yet; `Invalid` when buyer == seller.
    async fn create_direct(
        &self,
        buyer: &str,
        seller: &str,
        listing: &str,
        now_ms: i64,
    ) -> Result<Created>;

    /// A new group conversation of `creator` plus `participants` (duplicates removed), at most
    /// [`MAX_GROUP_PARTICIPANTS`] in all. Fails with `Blocked` when the creator and one of
    /// them blocked each other (either way).
    async fn create_group(
        &self,
        creator: &str,
        participants: &[String],
        title: &str,
        now_ms: i64,
    ) -> Result<Conversation>;

    /// The conversation, or `None` when it does not exist (or was deleted).
    async fn conversation(&self, id: ConversationId) -> Result<Option<Conversation>>;

    /// Deletes the conversation with its messages and read state, if `by` may
    /// ([`Conversation::may_delete`]). Afterwards the direct triple is free again.
    async fn delete_conversation(&self, id: ConversationId, by: &str) -> Result<Conversation>;

    /// Appends a message (see Ordering, Idempotency, Authorization above). A direct
    /// conversation between users who blocked each other refuses with `Blocked`.
    async fn append(&self, message: NewMessage) -> Result<Appended>;

    /// Newest-first page of messages strictly older than `before` (None: from the newest): by
    /// its seq, or by its id when only the id is known.
    async fn history(
        &self,
        conversation: ConversationId,
        before: Option<Position>,
        limit: usize,
    ) -> Result<HistoryPage>;

    /// Up to `limit` messages after `after`, in seq order (resume, filling a delivery gap): those
    /// with seq > `after.seq`; when only `after.id` is known (seq 0, id set), those after that
    /// message.
    async fn messages_after(
        &self,
        conversation: ConversationId,
        after: Position,
        limit: usize,
    ) -> Result<Vec<Message>>;

    /// Moves `user`'s watermark to the message `up_to` (never backwards: an older one leaves
    /// it where it was, `advanced = false`). `up_to` must be the id of a message of this
    /// conversation: any other id (between two messages, newer than the newest, of another
    /// conversation) is `Invalid` and changes nothing.
    async fn mark_read(
        &self,
        conversation: ConversationId,
        user: &str,
        up_to: MessageId,
        now_ms: i64,
    ) -> Result<ReadOutcome>;

    /// `user`'s read watermark in `conversation` (None: nothing read yet). No check of who
    /// asks, nor that the conversation still exists: the caller checks both.
    async fn read_state(
        &self,
        conversation: ConversationId,
        user: &str,
    ) -> Result<Option<ReadState>>;

    /// One page of `user`'s conversations (see Pagination), each with its last message and the
    /// user's unread count.
    async fn list_conversations(
        &self,
        user: &str,
        cursor: Option<ListCursor>,
        limit: usize,
    ) -> Result<ConversationPage>;

    /// `(conversation, unread)` for each of `user`'s conversations with unread messages.
    async fn unread_counts(&self, user: &str) -> Result<Vec<(ConversationId, u64)>>;

    /// Users who share at least one conversation of at most `max_participants` participants
    /// with `user` (not `user`), each once. (Presence goes to these: in a bigger group it is
    /// asked for, not pushed.)
    async fn contacts(&self, user: &str, max_participants: usize) -> Result<Vec<String>>;

    /// Blocks (`blocked = true`) or unblocks `target` for `user`.
    async fn set_block(&self, user: &str, target: &str, blocked: bool, now_ms: i64) -> Result<()>;

    /// Whether either of the two users blocked the other.
    async fn is_blocked_between(&self, a: &str, b: &str) -> Result<bool>;

    /// The users `user` blocked, with when, in id order.
    async fn blocks(&self, user: &str) -> Result<Vec<(String, i64)>>;

    /// Every user with a block between them and `user`, either way (whom `user` blocked and
    /// who blocked `user`), each once, in id order.
    async fn block_relations(&self, user: &str) -> Result<Vec<String>>;

    /// Stores an abuse report with its snapshot, open; returns its id (UUID v7: time-ordered).
    async fn report(&self, report: NewReport) -> Result<uuid::Uuid>;

    /// The report `id`, or `None`.
    async fn report_by_id(&self, id: uuid::Uuid) -> Result<Option<Report>>;

    /// Reports matching `filter`, newest first, strictly older than `before` (a report id),
    /// at most `limit` (clamped to [`MAX_PAGE`]).
    async fn reports(
        &self,
        filter: &ReportFilter,
        before: Option<uuid::Uuid>,
        limit: usize,
    ) -> Result<Vec<Report>>;

    /// Applies a moderator's action: the target's new standing ([`Standing::after`]), the
    /// resolution of `entry.report` when set (it must exist — `NotFound` — be open and be
    /// against `entry.target` — `Invalid` otherwise, and then nothing is written), and the
    /// entry in the moderation log. Returns the new standing. Two moderators resolving one
    /// report at once: one wins, the other gets `Invalid`.
    async fn moderate(&self, entry: ModerationEntry) -> Result<Standing>;

    /// `user`'s standing (the default one when no moderator ever acted on them).
    async fn standing(&self, user: &str) -> Result<Standing>;

    /// The moderation log, newest first, of one target or of all, strictly older than
    /// `before`, at most `limit` (clamped to [`MAX_PAGE`]).
    async fn moderation_log(
        &self,
        target: Option<&str>,
        before: Option<uuid::Uuid>,
        limit: usize,
    ) -> Result<Vec<ModerationEntry>>;

    /// Stores (`Some`) or removes (`None`) the small record `key` of `owner`: a user's push
    /// devices, muted conversations and push progress live here (owner: the user id, or a
    /// node-internal name starting with `\0`, which no user id can). Keys are 1 to
    /// [`MAX_VALUE_KEY_BYTES`] bytes, values at most [`MAX_VALUE_BYTES`] (`Invalid` beyond).
    async fn put_value(&self, owner: &str, key: &str, value: Option<Vec<u8>>) -> Result<()>;

    /// `owner`'s records whose key starts with `prefix`, in key order (byte order of the
    /// UTF-8), at most `limit` (clamped to [`MAX_PAGE`]).
    async fn values(
        &self,
        owner: &str,
        prefix: &str,
        limit: usize,
    ) -> Result<Vec<(String, Vec<u8>)>>;

    /// `owner`'s record `key`, or `None`.
    async fn value(&self, owner: &str, key: &str) -> Result<Option<Vec<u8>>> {
        let found = self.values(owner, key, 1).await?;
        Ok(found.into_iter().find(|(k, _)| k == key).map(|(_, v)| v))
    }

    /// `Ok` when the engine can serve reads and writes now (readiness probes).
    async fn health(&self) -> Result<()>;

    /// `false` once the engine can no longer serve writes without a restart of the process
    /// (the embedded engine's writer thread is gone) — liveness probes; a database that does
    /// not answer right now is `health`'s business, not this.
    fn alive(&self) -> bool {
        true
    }

    /// Up to `limit` entries of the change feed with a cursor above `after`, in commit order:
    /// every message appended and every conversation deleted, each once, with cursors that
    /// only grow (search indexing follows this). `Unsupported` on an engine without one.
    async fn changes(&self, after: u64, limit: usize) -> Result<Vec<Change>> {
        let _ = (after, limit);
        Err(StorageError::Unsupported(
            "this engine keeps no change feed",
        ))
    }

    /// The newest change-feed cursor (0: none yet). `Unsupported` without a feed.
    async fn last_change(&self) -> Result<u64> {
        Err(StorageError::Unsupported(
            "this engine keeps no change feed",
        ))
    }

    /// The messages at these (conversation, seq) places, each `None` when it is not there (its
    /// conversation was deleted and purged — a deleted conversation's messages may be read
    /// until then, so a reader checks the conversation): what a feed page names, read in one go.
    async fn messages_at(&self, at: Vec<(ConversationId, u64)>) -> Result<Vec<Option<Message>>> {
        let mut out = Vec::with_capacity(at.len());
        for (conversation, seq) in at {
            let before = Position {
                seq: seq.saturating_sub(1),
                id: MessageId::default(),
            };
            let found = self.messages_after(conversation, before, 1).await?;
            out.push(found.into_iter().next().filter(|m| m.seq == seq));
        }
        Ok(out)
    }

    /// Removes the feed's entries with a cursor below `below` (their reader is done with
    /// them). The newest entry is always kept, so cursors go on from it after a restart.
    async fn trim_changes(&self, below: u64) -> Result<()> {
        let _ = below;
        Err(StorageError::Unsupported(
            "this engine keeps no change feed",
        ))
    }

    /// Up to `limit` conversations after `after` in the engine's scan order (embedded: by id;
    /// ScyllaDB: by token): paging from the last one returned reaches every conversation once
    /// (rebuilding a search index). `Unsupported` on an engine that cannot scan.
    async fn conversations_after(
        &self,
        after: Option<ConversationId>,
        limit: usize,
    ) -> Result<Vec<Conversation>> {
        let _ = (after, limit);
        Err(StorageError::Unsupported(
            "this engine cannot list every conversation",
        ))
    }
}

/// One entry of [`Storage::changes`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Change {
    /// Its place in the feed (1, 2, 3, … in commit order; gaps only where entries were trimmed).
    pub cursor: u64,
    pub conversation: ConversationId,
    pub kind: ChangeKind,
}

/// What changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChangeKind {
    /// The message with this seq was appended.
    Message { seq: u64 },
    /// The conversation was deleted, with all its messages.
    Deleted,
}
