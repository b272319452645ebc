//! Message search: one [`SearchIndex`] trait, two engines behind it, one conformance suite for
//! both (`conformance.rs`).
//!
//! - **One node** ([`embedded`]): a tantivy index in the data directory, fed from storage's
//!   change feed by the [`indexer`]. The index's commit carries the feed cursor it includes
//!   (the watermark): a restart — after a crash or `kill -9` too — goes on from there, so
//!   nothing is lost and, since a commit holds every document up to its cursor and none after,
//!   nothing is indexed twice.
//! - **A cluster** ([`solr`]): messages live in ScyllaDB, which has no full-text search; a
//!   SolrCloud collection holds the index, fed from the bus by [`cluster`] (a Redis consumer
//!   group: each message indexed by whichever node takes it; a document's key is the message
//!   id, so one indexed again after a crash replaces itself). Written to Solr's documented
//!   JSON API; not yet run against a live Solr (no Solr in the test run so far: issue 15).
//!
//! Both see text the same way: [`analyzer`] runs here, in the gateway — Solr receives the
//! terms already made and only splits them at spaces — so words, phrases, the word being typed,
//! folded diacritics and CJK bigrams match alike on both engines.
//!
//! The chat layer asks through `Chat::search`, which leaves out blocked users' messages and
//! checks that the asker is in each hit's conversation *now*.

pub(crate) mod analyzer;
pub(crate) mod cluster;
mod conversations;
pub(crate) mod embedded;
pub(crate) mod indexer;
mod query;
mod scan;
pub(crate) mod solr;

#[cfg(test)]
mod conformance;

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use async_trait::async_trait;
use parley_types::{ConversationId, Message, MessageId};

pub(crate) use conversations::ConversationQuery;
pub(crate) use embedded::Tantivy;
pub(crate) use query::Parsed;

/// Most results one search returns, and how many when the client does not say.
pub(crate) const MAX_LIMIT: usize = 100;
pub(crate) const DEFAULT_LIMIT: usize = 20;

/// Characters of text around the first match in a snippet.
pub(crate) const SNIPPET_CHARS: usize = 160;

#[derive(Debug, thiserror::Error)]
pub(crate) enum SearchError {
    #[error("search index: {0}")]
    Index(#[from] tantivy::TantivyError),
    #[error("search index: {0}")]
    Dir(#[from] tantivy::directory::error::OpenDirectoryError),
    #[error("search index: {0}")]
    Io(#[from] std::io::Error),
    #[error("search index: the blocking pool: {0}")]
    Join(String),
    #[error("search engine: {0}")]
    Remote(String),
}

/// Counters for the metrics page.
#[derive(Default)]
pub(crate) struct SearchStats {
    /// Messages indexed, deletes applied, commits made, searches served.
    pub(crate) indexed: AtomicU64,
    pub(crate) deleted: AtomicU64,
    pub(crate) commits: AtomicU64,
    pub(crate) queries: AtomicU64,
    /// Searches run again relaxed (see `solr::unit_clause`).
    pub(crate) relaxed: AtomicU64,
    /// Embedded: the change-feed cursor of the last commit, and the feed's newest cursor seen.
    /// Cluster: queue entries this node made searchable, and entries it took.
    pub(crate) watermark: AtomicU64,
    pub(crate) head: AtomicU64,
}

/// One hit, before the chat layer checked it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Hit {
    pub(crate) conversation: ConversationId,
    pub(crate) id: MessageId,
    pub(crate) seq: u64,
    pub(crate) sender: String,
    pub(crate) created_at_ms: i64,
    /// Up to [`SNIPPET_CHARS`] characters of the text around the first match.
    pub(crate) snippet: String,
    /// Matched spans of `snippet`, `[start, end)` in characters (Unicode scalar values).
    pub(crate) highlights: Vec<(usize, usize)>,
}

/// Result order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SortBy {
    /// Newest first (by message id; pages with `before`).
    Newest,
    /// Best match first (BM25; pages with an offset).
    Relevance,
}

/// What a client asks.
pub(crate) struct SearchRequest {
    pub(crate) q: String,
    pub(crate) conversation: Option<ConversationId>,
    pub(crate) before: Option<MessageId>,
    pub(crate) sort: SortBy,
    pub(crate) offset: usize,
    pub(crate) limit: usize,
}

/// One page of results. It may hold fewer than `limit` hits and still have a next page: go
/// on while `next_before` (newest first) or `next_offset` (relevance) is set.
pub(crate) struct SearchPage {
    pub(crate) hits: Vec<Hit>,
    pub(crate) next_before: Option<MessageId>,
    pub(crate) next_offset: Option<usize>,
}

/// One search, as the chat layer asks it of an engine.
#[derive(Clone, Debug)]
pub(crate) struct Search {
    pub(crate) user: String,
    pub(crate) query: Parsed,
    pub(crate) conversation: Option<ConversationId>,
    /// Only messages with an id below this.
    pub(crate) before: Option<MessageId>,
    /// Users whose messages never appear (blocks, either way).
    pub(crate) exclude_senders: Vec<String>,
    pub(crate) sort: SortBy,
    pub(crate) offset: usize,
    pub(crate) limit: usize,
}

/// A message index: what it finds for whom, and how it is written.
#[async_trait]
pub(crate) trait SearchIndex: Send + Sync + 'static {
    /// "tantivy" or "solr" (logs, errors).
    fn engine(&self) -> &'static str;

    fn stats(&self) -> &SearchStats;

    /// The messages `s.user` may see that match `s` (at most `s.limit`, in `s.sort` order).
    /// The chat layer still checks each hit's conversation.
    async fn search(self: Arc<Self>, s: Search) -> Result<Vec<Hit>, SearchError>;

    /// A writer. The embedded index has one at a time (its indexer's); Solr any number.
    fn writer(self: Arc<Self>) -> Result<Box<dyn IndexWriter>, SearchError>;
}

/// Changes to an index, searchable after [`IndexWriter::commit`].
#[async_trait]
pub(crate) trait IndexWriter: Send {
    /// Adds `m` (of a conversation with these participants); a message already in the index
    /// (the same id) is replaced, never found twice.
    fn add(&mut self, m: &Message, participants: &[String]) -> Result<(), SearchError>;

    /// Removes every message of `conversation`.
    fn delete_conversation(&mut self, conversation: ConversationId);

    /// Makes what was added and deleted searchable, in the order it came. `checkpoint`: where
    /// the feed stands (the embedded engine keeps it as its watermark; Solr ignores it). The
    /// writer takes more changes after.
    async fn commit(&mut self, checkpoint: u64) -> Result<(), SearchError>;
}

/// The text indexed for `m`: its content and a file's name.
pub(crate) fn indexed_text(m: &Message) -> String {
    let mut text = m.content.clone();
    if let Some(media) = &m.media
        && !media.name.is_empty()
    {
        text.push('\n');
        text.push_str(&media.name);
    }
    text
}

/// Who may find `m`: every participant, or only the sender for a shadowed message.
pub(crate) fn members<'a>(m: &'a Message, participants: &'a [String]) -> &'a [String] {
    match m.visibility {
        parley_types::Visibility::Everyone => participants,
        // Shadowed: found by its sender only, like everyone else sees only its place.
        parley_types::Visibility::Sender => std::slice::from_ref(&m.sender),
    }
}

#[cfg(feature = "fuzz-internals")]
pub(crate) use embedded::fuzz_query;
