//! Message search on one node: a tantivy index in the data directory, fed from storage's change
//! feed by the [`indexer`], asked by `Chat::search` (which checks that the asker is in each
//! hit's conversation *now*).
//!
//! One document per message: its text (and a file's name) through the [`analyzer`], stored for
//! snippets; the conversation and sender as raw terms; who may see it (`members`: every
//! participant, or only the sender for a shadowed message) so one term filters a user's
//! messages; the message id as a fast field, for newest-first order and `before` paging.
//!
//! The index's commit carries the feed cursor it includes (the watermark): a restart — after a
//! crash or `kill -9` too — goes on from there, so nothing is lost and, since a commit holds
//! every document up to its cursor and none after, nothing is indexed twice.

pub(crate) mod analyzer;
mod conversations;
pub(crate) mod indexer;
mod query;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use parley_types::{ConversationId, Message, MessageId, Visibility};
use tantivy::collector::TopDocs;
use tantivy::directory::MmapDirectory;
use tantivy::schema::{
    FAST, Field, INDEXED, IndexRecordOption, STORED, STRING, Schema, TextFieldIndexing,
    TextOptions, Value,
};
use tantivy::{
    DocAddress, Index, IndexReader, IndexWriter, Order, ReloadPolicy, TantivyDocument, Term,
};

pub(crate) use conversations::ConversationQuery;
pub(crate) use query::Parsed;

/// Memory the index writer may buffer before it writes a segment (tantivy's floor is 15 MB).
const WRITER_BYTES: usize = 32 << 20;

/// Most results one search returns, and how many when the client does not say.
pub(crate) const MAX_LIMIT: usize = 100;
pub(crate) const DEFAULT_LIMIT: usize = 20;

/// Characters of text around the first match in a snippet.
const SNIPPET_CHARS: usize = 160;

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
}

/// The schema's fields.
#[derive(Clone, Copy)]
struct Fields {
    conversation: Field,
    sender: Field,
    members: Field,
    id: Field,
    seq: Field,
    at: Field,
    text: Field,
}

impl Fields {
    fn schema() -> (Schema, Fields) {
        let mut b = Schema::builder();
        let text = TextOptions::default()
            .set_indexing_options(
                TextFieldIndexing::default()
                    .set_tokenizer(analyzer::NAME)
                    .set_index_option(IndexRecordOption::WithFreqsAndPositions),
            )
            .set_stored();
        let fields = Fields {
            conversation: b.add_text_field("conversation", STRING | STORED),
            sender: b.add_text_field("sender", STRING | STORED),
            members: b.add_text_field("members", STRING),
            id: b.add_u64_field("id", INDEXED | FAST | STORED),
            seq: b.add_u64_field("seq", STORED),
            at: b.add_i64_field("at", STORED),
            text: b.add_text_field("text", text),
        };
        (b.build(), fields)
    }
}

/// Counters for the metrics page.
#[derive(Default)]
pub(crate) struct SearchStats {
    /// Messages indexed, deletes applied, commits made, searches served.
    pub(crate) indexed: AtomicU64,
    pub(crate) deleted: AtomicU64,
    pub(crate) commits: AtomicU64,
    pub(crate) queries: AtomicU64,
    /// The change-feed cursor of the last commit, and the feed's newest cursor seen.
    pub(crate) watermark: AtomicU64,
    pub(crate) head: AtomicU64,
}

/// The message index.
pub(crate) struct SearchIndex {
    index: Index,
    reader: IndexReader,
    fields: Fields,
    pub(crate) stats: SearchStats,
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

/// One search, as the chat layer asks it.
pub(crate) struct Search<'a> {
    pub(crate) user: &'a str,
    pub(crate) query: &'a Parsed,
    pub(crate) conversation: Option<ConversationId>,
    /// Only messages with an id below this.
    pub(crate) before: Option<MessageId>,
    /// Users whose messages never appear (blocks, either way).
    pub(crate) exclude_senders: &'a [String],
    pub(crate) sort: SortBy,
    pub(crate) offset: usize,
    pub(crate) limit: usize,
}

impl SearchIndex {
    /// Opens (or creates) the index in `dir`.
    pub(crate) fn open(dir: &Path) -> Result<Self, SearchError> {
        std::fs::create_dir_all(dir)?;
        let (schema, fields) = Fields::schema();
        let index = Index::open_or_create(MmapDirectory::open(dir)?, schema)?;
        Self::with_index(index, fields)
    }

    /// An index in memory (tests).
    #[cfg(test)]
    pub(crate) fn in_memory() -> Self {
        let (schema, fields) = Fields::schema();
        Self::with_index(Index::create_in_ram(schema), fields).expect("index in memory")
    }

    fn with_index(index: Index, fields: Fields) -> Result<Self, SearchError> {
        index
            .tokenizers()
            .register(analyzer::NAME, analyzer::analyzer());
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()?;
        let stats = SearchStats::default();
        let watermark = committed_watermark(&index)?.unwrap_or(0);
        stats.watermark.store(watermark, Relaxed);
        Ok(Self {
            index,
            reader,
            fields,
            stats,
        })
    }

    /// The feed cursor of the last commit; None when nothing was ever committed with one.
    pub(crate) fn watermark(&self) -> Result<Option<u64>, SearchError> {
        committed_watermark(&self.index)
    }

    /// The one writer of this index (tantivy allows one per directory).
    pub(crate) fn writer(self: &Arc<Self>) -> Result<Writer, SearchError> {
        let writer = self.index.writer_with_num_threads(1, WRITER_BYTES)?;
        Ok(Writer {
            index: self.clone(),
            writer,
        })
    }

    /// Documents in the index as last committed (tests, progress).
    pub(crate) fn docs(&self) -> u64 {
        self.reader.searcher().num_docs()
    }

    /// Runs `s`; the caller checks each hit's conversation and paging.
    pub(crate) fn search(&self, s: &Search<'_>) -> Result<Vec<Hit>, SearchError> {
        self.stats.queries.fetch_add(1, Relaxed);
        let f = self.fields;
        let Some(query) = s.query.to_query(f.text, QueryScope::new(f, s)) else {
            return Ok(Vec::new());
        };
        let searcher = self.reader.searcher();
        let limit = s.limit.clamp(1, MAX_LIMIT);
        let addresses: Vec<DocAddress> = match s.sort {
            SortBy::Newest => searcher
                .search(
                    &query,
                    &TopDocs::with_limit(limit).order_by_fast_field::<u64>("id", Order::Desc),
                )?
                .into_iter()
                .map(|(_, a)| a)
                .collect(),
            SortBy::Relevance => searcher
                .search(
                    &query,
                    &TopDocs::with_limit(limit)
                        .and_offset(s.offset)
                        .order_by_score(),
                )?
                .into_iter()
                .map(|(_, a)| a)
                .collect(),
        };
        let mut hits = Vec::with_capacity(addresses.len());
        for address in addresses {
            let doc: TantivyDocument = searcher.doc(address)?;
            let text = |field| doc.get_first(field).and_then(|v| v.as_str()).unwrap_or("");
            let conversation = match text(f.conversation).parse::<ConversationId>() {
                Ok(c) => c,
                Err(_) => continue,
            };
            let number = |field| doc.get_first(field).and_then(|v| v.as_u64()).unwrap_or(0);
            let (snippet, highlights) = s.query.snippet(text(f.text), SNIPPET_CHARS);
            hits.push(Hit {
                conversation,
                id: MessageId(number(f.id)),
                seq: number(f.seq),
                sender: text(f.sender).to_owned(),
                created_at_ms: doc.get_first(f.at).and_then(|v| v.as_i64()).unwrap_or(0),
                snippet,
                highlights,
            });
        }
        Ok(hits)
    }
}

/// Filters of one search besides its text (see `query::Parsed::to_query`).
pub(crate) struct QueryScope {
    must: Vec<Term>,
    must_not: Vec<Term>,
    before: Option<Term>,
}

impl QueryScope {
    fn new(f: Fields, s: &Search<'_>) -> Self {
        let mut must = vec![Term::from_field_text(f.members, s.user)];
        if let Some(c) = s.conversation {
            must.push(Term::from_field_text(f.conversation, &c.to_string()));
        }
        Self {
            must,
            must_not: s
                .exclude_senders
                .iter()
                .map(|u| Term::from_field_text(f.sender, u))
                .collect(),
            before: s.before.map(|id| Term::from_field_u64(f.id, id.0)),
        }
    }
}

fn committed_watermark(index: &Index) -> Result<Option<u64>, SearchError> {
    Ok(index
        .load_metas()?
        .payload
        .and_then(|p| p.strip_prefix("feed:")?.parse().ok()))
}

/// The index's writer: add and delete, then commit with the feed cursor reached.
pub(crate) struct Writer {
    index: Arc<SearchIndex>,
    writer: IndexWriter,
}

impl Writer {
    /// Adds `m` (of a conversation with these participants).
    pub(crate) fn add(&self, m: &Message, participants: &[String]) -> Result<(), SearchError> {
        let f = self.index.fields;
        let mut doc = TantivyDocument::default();
        doc.add_text(f.conversation, m.conversation.to_string());
        doc.add_text(f.sender, &m.sender);
        match m.visibility {
            Visibility::Everyone => {
                for p in participants {
                    doc.add_text(f.members, p);
                }
            }
            // Shadowed: found by its sender only, like everyone else sees only its place.
            Visibility::Sender => doc.add_text(f.members, &m.sender),
        }
        doc.add_u64(f.id, m.id.0);
        doc.add_u64(f.seq, m.seq);
        doc.add_i64(f.at, m.created_at_ms);
        let mut text = m.content.clone();
        if let Some(media) = &m.media
            && !media.name.is_empty()
        {
            text.push('\n');
            text.push_str(&media.name);
        }
        doc.add_text(f.text, text);
        self.writer.add_document(doc)?;
        self.index.stats.indexed.fetch_add(1, Relaxed);
        Ok(())
    }

    /// Removes every message of `conversation`.
    pub(crate) fn delete_conversation(&self, conversation: ConversationId) {
        let f = self.index.fields;
        self.writer.delete_term(Term::from_field_text(
            f.conversation,
            &conversation.to_string(),
        ));
        self.index.stats.deleted.fetch_add(1, Relaxed);
    }

    /// Removes everything (a rebuild starts with this).
    pub(crate) fn clear(&self) -> Result<(), SearchError> {
        self.writer.delete_all_documents()?;
        Ok(())
    }

    /// Commits what was added and deleted, as including the feed up to `cursor`, and makes it
    /// searchable.
    pub(crate) fn commit(&mut self, cursor: u64) -> Result<(), SearchError> {
        let mut prepared = self.writer.prepare_commit()?;
        prepared.set_payload(&format!("feed:{cursor}"));
        prepared.commit()?;
        self.index.reader.reload()?;
        self.index.stats.watermark.store(cursor, Relaxed);
        self.index.stats.commits.fetch_add(1, Relaxed);
        Ok(())
    }

    /// Drops what was added since the last commit.
    pub(crate) fn rollback(&mut self) -> Result<(), SearchError> {
        self.writer.rollback()?;
        Ok(())
    }
}

/// Parses `q` both ways, runs it against an index holding `body`, and cuts snippets of `body`
/// (fuzzing: none of it may panic).
#[cfg(feature = "fuzz-internals")]
pub(crate) fn fuzz_query(q: &str, body: &str) {
    use std::sync::OnceLock;
    static INDEX: OnceLock<Arc<SearchIndex>> = OnceLock::new();
    let _ = ConversationQuery::parse(q);
    let Ok(parsed) = Parsed::parse(q) else { return };
    let _ = parsed.snippet(body, SNIPPET_CHARS);
    let _ = parsed.snippet(q, 3);
    let index = INDEX.get_or_init(|| {
        let (schema, fields) = Fields::schema();
        let index =
            Arc::new(SearchIndex::with_index(Index::create_in_ram(schema), fields).expect("index"));
        let mut w = index.writer().expect("writer");
        let m = Message {
            id: MessageId(1),
            conversation: ConversationId(uuid::Uuid::nil()),
            sender: "b".into(),
            kind: parley_types::MessageKind::Text,
            content: "The Lego castle 乐高城堡, café e-mail".into(),
            media: None,
            client_msg_id: "c".into(),
            created_at_ms: 1,
            seq: 1,
            visibility: Visibility::Everyone,
        };
        w.add(&m, &["a".into(), "b".into()]).expect("add");
        w.commit(1).expect("commit");
        index
    });
    for sort in [SortBy::Newest, SortBy::Relevance] {
        let _ = index.search(&Search {
            user: "a",
            query: &parsed,
            conversation: None,
            before: Some(MessageId(u64::MAX)),
            exclude_senders: &["x".into()],
            sort,
            offset: 0,
            limit: 5,
        });
    }
}

#[cfg(test)]
mod tests;
