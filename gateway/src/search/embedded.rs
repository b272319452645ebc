//! The embedded engine: a tantivy index in the data directory.
//!
//! One document per message: its text (and a file's name) through the [`analyzer`], stored for
//! snippets; the conversation and sender as raw terms; who may see it (`members`: every
//! participant, or only the sender for a shadowed message) so one term filters a user's
//! messages; the message id as a fast field, for newest-first order and `before` paging.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use async_trait::async_trait;
use parley_types::{ConversationId, Message, MessageId};
use tantivy::collector::TopDocs;
use tantivy::directory::MmapDirectory;
use tantivy::schema::{
    FAST, Field, INDEXED, IndexRecordOption, STORED, STRING, Schema, TextFieldIndexing,
    TextOptions, Value,
};
use tantivy::{
    DocAddress, Index, IndexReader, IndexWriter as TantivyWriter, Order, ReloadPolicy,
    TantivyDocument, Term,
};

use super::{
    Hit, IndexWriter, MAX_LIMIT, SNIPPET_CHARS, Search, SearchError, SearchIndex, SearchStats,
    SortBy, analyzer,
};

/// Memory the index writer may buffer before it writes a segment (tantivy's floor is 15 MB).
const WRITER_BYTES: usize = 32 << 20;

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

/// The embedded message index.
pub(crate) struct Tantivy {
    index: Index,
    reader: IndexReader,
    fields: Fields,
    pub(crate) stats: SearchStats,
}

impl Tantivy {
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
    pub(crate) fn open_writer(self: &Arc<Self>) -> Result<Writer, SearchError> {
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
    pub(crate) fn run(&self, s: &Search) -> Result<Vec<Hit>, SearchError> {
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
    pub(super) must: Vec<Term>,
    pub(super) must_not: Vec<Term>,
    pub(super) before: Option<Term>,
}

impl QueryScope {
    fn new(f: Fields, s: &Search) -> Self {
        let mut must = vec![Term::from_field_text(f.members, &s.user)];
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
    index: Arc<Tantivy>,
    writer: TantivyWriter,
}

impl Writer {
    /// Adds `m` (of a conversation with these participants), replacing a document of the
    /// same message.
    pub(crate) fn add(&self, m: &Message, participants: &[String]) -> Result<(), SearchError> {
        let f = self.index.fields;
        let mut doc = TantivyDocument::default();
        doc.add_text(f.conversation, m.conversation.to_string());
        doc.add_text(f.sender, &m.sender);
        for p in super::members(m, participants) {
            doc.add_text(f.members, p);
        }
        doc.add_u64(f.id, m.id.0);
        doc.add_u64(f.seq, m.seq);
        doc.add_i64(f.at, m.created_at_ms);
        doc.add_text(f.text, super::indexed_text(m));
        // A delete applies to what was added before it: the new document stays.
        self.writer.delete_term(Term::from_field_u64(f.id, m.id.0));
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
    use super::{ConversationQuery, Parsed};
    use std::sync::OnceLock;
    static INDEX: OnceLock<Arc<Tantivy>> = OnceLock::new();
    let _ = ConversationQuery::parse(q);
    let Ok(parsed) = Parsed::parse(q) else { return };
    let _ = parsed.snippet(body, SNIPPET_CHARS);
    let _ = parsed.snippet(q, 3);
    let index = INDEX.get_or_init(|| {
        let (schema, fields) = Fields::schema();
        let index =
            Arc::new(Tantivy::with_index(Index::create_in_ram(schema), fields).expect("index"));
        let mut w = index.open_writer().expect("writer");
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
            visibility: parley_types::Visibility::Everyone,
        };
        w.add(&m, &["a".into(), "b".into()]).expect("add");
        w.commit(1).expect("commit");
        index
    });
    for sort in [SortBy::Newest, SortBy::Relevance] {
        let _ = index.run(&Search {
            user: "a".into(),
            query: parsed.clone(),
            conversation: None,
            before: Some(MessageId(u64::MAX)),
            exclude_senders: vec!["x".into()],
            sort,
            offset: 0,
            limit: 5,
        });
    }
}

#[async_trait]
impl SearchIndex for Tantivy {
    fn engine(&self) -> &'static str {
        "tantivy"
    }

    fn stats(&self) -> &SearchStats {
        &self.stats
    }

    async fn search(self: Arc<Self>, s: Search) -> Result<Vec<Hit>, SearchError> {
        // tantivy reads and scores synchronously: on the blocking pool.
        tokio::task::spawn_blocking(move || self.run(&s))
            .await
            .map_err(|e| SearchError::Join(e.to_string()))?
    }

    fn writer(self: Arc<Self>) -> Result<Box<dyn IndexWriter>, SearchError> {
        Ok(Box::new(self.open_writer()?))
    }
}

#[async_trait]
impl IndexWriter for Writer {
    fn add(&mut self, m: &Message, participants: &[String]) -> Result<(), SearchError> {
        Writer::add(self, m, participants)
    }

    fn delete_conversation(&mut self, conversation: ConversationId) {
        Writer::delete_conversation(self, conversation);
    }

    async fn commit(&mut self, checkpoint: u64) -> Result<(), SearchError> {
        Writer::commit(self, checkpoint)
    }
}
