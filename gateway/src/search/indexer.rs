//! Feeds the index from storage's change feed, on a thread of its own at a lower CPU priority
//! (nice 10; tantivy's indexing and merge threads, started from it, inherit it), so indexing
//! never takes the CPU from the chat: the send path only writes one more small key in the batch
//! it commits anyway.
//!
//! The feed is read page by page from the index's watermark; each message is read from storage
//! (a deleted conversation's are gone: skipped, and its delete removes what was indexed), added,
//! and committed with the cursor reached at most every `commit_every` — so a message is
//! searchable within about `poll + commit_every` of being stored. After a commit the feed is
//! trimmed below the watermark.
//!
//! A rebuild (an index that never committed while storage holds conversations, or a feed
//! trimmed past the watermark: history the feed no longer has) scans every conversation, then
//! catches up on the feed from the cursor it started at, skipping what the scan already saw,
//! and commits only once past where the scan ended: so it runs while the node serves, and a
//! crash during it starts it again rather than leaving an index with gaps or duplicates.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering::{self, Relaxed};
use std::time::{Duration, Instant};

use parley_storage::{Change, ChangeKind, Storage, StorageError};
use parley_types::ConversationId;
use tokio::runtime::Runtime;

use super::embedded::Writer;
pub(crate) use super::scan::Scanned;
use super::scan::{ParticipantCache, Scan};
use super::{SearchError, Tantivy};

/// Feed entries read per call.
const PAGE: usize = 1024;
/// Documents buffered before a commit even if `commit_every` has not passed.
const COMMIT_DOCS: usize = 50_000;
/// How much less CPU priority indexing gets (Linux nice).
const NICE: i32 = 10;
/// Wait before trying again after an error.
const RETRY: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub(crate) enum IndexerError {
    #[error(transparent)]
    Search(#[from] SearchError),
    #[error("storage: {0}")]
    Storage(#[from] StorageError),
}

/// Follows the feed into the index.
pub(crate) struct Indexer {
    pub(crate) index: Arc<Tantivy>,
    pub(crate) storage: Arc<dyn Storage>,
    /// Longest a stored message waits for the commit that makes it searchable.
    pub(crate) commit_every: Duration,
    /// How often an idle indexer looks at the feed.
    pub(crate) poll: Duration,
    /// Another reader of the feed (push) still needs the entries above this cursor: the
    /// indexer trims only below it (`u64::MAX`: no other reader).
    pub(crate) keep_above: Arc<std::sync::atomic::AtomicU64>,
}

/// Where following stands.
struct Follow {
    cursor: u64,
    /// Adds and deletes since the last commit.
    pending: usize,
    last_commit: Instant,
    /// During a rebuild's catch-up: per conversation, the last seq the scan indexed.
    scanned: HashMap<ConversationId, u64>,
    /// The feed's head when the scan ended: no commit before the cursor reaches it.
    hold_until: u64,
    participants: ParticipantCache,
}

impl Indexer {
    /// Where the feed may be trimmed once the index holds everything up to `cursor`.
    fn trim_below(&self, cursor: u64) -> u64 {
        cursor.min(self.keep_above.load(Ordering::Relaxed).saturating_add(1))
    }

    /// Starts the indexing thread; it runs for the life of the process.
    pub(crate) fn spawn(self) -> std::io::Result<()> {
        std::thread::Builder::new()
            .name("parley-search-index".into())
            .spawn(move || {
                lower_priority();
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        tracing::error!(error = %e, "search: no runtime for the indexer");
                        return;
                    }
                };
                self.run(&rt);
            })
            .map(drop)
    }

    fn run(&self, rt: &Runtime) {
        loop {
            let mut writer = match self.index.open_writer() {
                Ok(w) => w,
                Err(e) => {
                    tracing::error!(error = %e, "search: cannot open the index writer");
                    std::thread::sleep(RETRY);
                    continue;
                }
            };
            match self.follow(rt, &mut writer) {
                Ok(()) => return,
                Err(IndexerError::Storage(StorageError::Unsupported(why))) => {
                    tracing::error!(why, "search: storage has no change feed; indexing stops");
                    return;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "search: indexing failed; retrying from the last commit");
                    if let Err(e) = writer.rollback() {
                        tracing::warn!(error = %e, "search: rollback failed");
                    }
                    drop(writer);
                    std::thread::sleep(RETRY);
                }
            }
        }
    }

    /// From the last commit (rebuilding first if the feed cannot bring the index up to date),
    /// forever; returns only with an error.
    fn follow(&self, rt: &Runtime, writer: &mut Writer) -> Result<(), IndexerError> {
        let mut f = match self.start_cursor(rt)? {
            Some(cursor) => Follow::at(cursor),
            None => {
                tracing::info!("search: rebuilding the index from storage");
                let started = Instant::now();
                let f = self.rebuild(rt, writer, &mut |s| {
                    if s.conversations.is_multiple_of(1000) {
                        tracing::info!(
                            conversations = s.conversations,
                            messages = s.messages,
                            "search: rebuilding"
                        );
                    }
                })?;
                tracing::info!(took = ?started.elapsed(), "search: scan done, catching up");
                f
            }
        };
        loop {
            let n = self.step(rt, writer, &mut f)?;
            self.commit_if_due(rt, writer, &mut f)?;
            if n < PAGE {
                std::thread::sleep(self.poll);
            }
        }
    }

    /// `gateway reindex`: rebuilds the whole index (storage idle: the node is stopped), commits
    /// it with the feed's head, and returns what it scanned.
    pub(crate) fn reindex(
        &self,
        rt: &Runtime,
        progress: &mut dyn FnMut(Scanned),
    ) -> Result<Scanned, IndexerError> {
        let mut writer = self.index.open_writer()?;
        let mut scanned = Scanned::default();
        let mut f = self.rebuild(rt, &mut writer, &mut |s| {
            scanned = s;
            progress(s);
        })?;
        while self.step(rt, &mut writer, &mut f)? > 0 {}
        writer.commit(f.cursor)?;
        rt.block_on(self.storage.trim_changes(self.trim_below(f.cursor)))?;
        Ok(scanned)
    }

    /// The cursor to follow from, or None when a rebuild is needed.
    fn start_cursor(&self, rt: &Runtime) -> Result<Option<u64>, IndexerError> {
        let first = rt
            .block_on(self.storage.changes(0, 1))?
            .first()
            .map(|c| c.cursor);
        let watermark = self.index.watermark()?;
        Ok(match watermark {
            Some(w) if first.is_none_or(|first| first <= w.saturating_add(1)) => Some(w),
            Some(_) => None,
            None => {
                let any = rt.block_on(self.storage.conversations_after(None, 1))?;
                any.is_empty().then_some(0)
            }
        })
    }

    /// Empties the index and adds every message of every conversation; returns where to
    /// follow the feed from (see the module).
    fn rebuild(
        &self,
        rt: &Runtime,
        writer: &mut Writer,
        progress: &mut dyn FnMut(Scanned),
    ) -> Result<Follow, IndexerError> {
        writer.clear()?;
        let start = self.head(rt)?;
        let mut scanned = HashMap::new();
        let mut scan = Scan::new(&*self.storage);
        while let Some(page) = rt.block_on(scan.next())? {
            for m in &page.messages {
                writer.add(m, &page.participants)?;
            }
            if let Some(last) = page.finished {
                scanned.insert(page.conversation, last);
                progress(scan.scanned);
            }
        }
        let mut f = Follow::at(start);
        f.scanned = scanned;
        f.hold_until = self.head(rt)?;
        f.pending = 1;
        Ok(f)
    }

    /// The feed's newest cursor.
    fn head(&self, rt: &Runtime) -> Result<u64, IndexerError> {
        let mut cursor = self.index.watermark()?.unwrap_or(0);
        loop {
            let page = rt.block_on(self.storage.changes(cursor, PAGE))?;
            match page.last() {
                Some(last) => cursor = last.cursor,
                None => return Ok(cursor),
            }
        }
    }

    /// Indexes one page of the feed; returns how many entries it had.
    fn step(
        &self,
        rt: &Runtime,
        writer: &mut Writer,
        f: &mut Follow,
    ) -> Result<usize, IndexerError> {
        let changes = rt.block_on(self.storage.changes(f.cursor, PAGE))?;
        if let Ok(head) = rt.block_on(self.storage.last_change()) {
            self.index.stats.head.fetch_max(head, Relaxed);
        }
        let Some(last) = changes.last() else {
            return Ok(0);
        };
        self.index.stats.head.fetch_max(last.cursor, Relaxed);
        // The participants of every conversation named (cached across pages), then every
        // message still wanted, read in one go.
        let named = changes
            .iter()
            .filter(|c| matches!(c.kind, ChangeKind::Message { .. }))
            .map(|c| c.conversation)
            .collect::<Vec<_>>();
        rt.block_on(f.participants.load(&*self.storage, &named))?;
        let wanted = |f: &Follow, c: &Change| match c.kind {
            ChangeKind::Message { seq } => {
                let scanned = f.scanned.get(&c.conversation).is_some_and(|&s| seq <= s);
                let live = f.participants.get(&c.conversation).is_some();
                (!scanned && live).then_some((c.conversation, seq))
            }
            ChangeKind::Deleted => None,
        };
        let picks: Vec<Option<(ConversationId, u64)>> =
            changes.iter().map(|c| wanted(f, c)).collect();
        let at: Vec<(ConversationId, u64)> = picks.iter().flatten().copied().collect();
        let mut messages = rt.block_on(self.storage.messages_at(at))?.into_iter();
        for (c, pick) in changes.iter().zip(&picks) {
            match c.kind {
                ChangeKind::Message { .. } => {
                    if pick.is_none() {
                        continue;
                    }
                    let (Some(Some(m)), Some(participants)) =
                        (messages.next(), f.participants.get(&c.conversation))
                    else {
                        // Gone: its conversation was deleted (and purged) after this entry.
                        continue;
                    };
                    writer.add(&m, participants)?;
                    f.pending += 1;
                }
                ChangeKind::Deleted => {
                    writer.delete_conversation(c.conversation);
                    f.participants.forget(c.conversation);
                    f.pending += 1;
                }
            }
        }
        f.cursor = last.cursor;
        Ok(changes.len())
    }

    fn commit_if_due(
        &self,
        rt: &Runtime,
        writer: &mut Writer,
        f: &mut Follow,
    ) -> Result<(), IndexerError> {
        let due = f.pending >= COMMIT_DOCS || f.last_commit.elapsed() >= self.commit_every;
        if f.pending == 0 || !due || f.cursor < f.hold_until {
            return Ok(());
        }
        writer.commit(f.cursor)?;
        f.pending = 0;
        f.last_commit = Instant::now();
        f.scanned = HashMap::new();
        rt.block_on(self.storage.trim_changes(self.trim_below(f.cursor)))?;
        Ok(())
    }
}

impl Follow {
    fn at(cursor: u64) -> Self {
        Self {
            cursor,
            pending: 0,
            last_commit: Instant::now(),
            scanned: HashMap::new(),
            hold_until: 0,
            participants: ParticipantCache::default(),
        }
    }
}

fn lower_priority() {
    let tid = rustix::thread::gettid();
    if let Err(e) = rustix::process::setpriority_process(Some(tid), NICE) {
        tracing::warn!(error = %e, "search: the indexer keeps the node's CPU priority");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use parley_storage::embedded::{Embedded, EmbeddedConfig};
    use parley_types::{MessageKind, NewMessage, Visibility};

    fn text(conversation: ConversationId, sender: &str, id: &str) -> NewMessage {
        NewMessage {
            conversation,
            sender: sender.into(),
            kind: MessageKind::Text,
            content: format!("walrus {id}"),
            media: None,
            client_msg_id: id.into(),
            now_ms: 1,
            visibility: Visibility::Everyone,
        }
    }

    fn count(index: &Tantivy) -> usize {
        let parsed = super::super::Parsed::parse("walrus ").expect("parses");
        let mut total = 0;
        let mut before = None;
        loop {
            let hits = index
                .run(&super::super::Search {
                    user: "b".into(),
                    query: parsed.clone(),
                    conversation: None,
                    before,
                    exclude_senders: Vec::new(),
                    sort: super::super::SortBy::Newest,
                    offset: 0,
                    limit: 100,
                })
                .expect("search");
            total += hits.len();
            match hits.last() {
                Some(h) if hits.len() == 100 => before = Some(h.id),
                _ => return total,
            }
        }
    }

    /// Messages stored while a rebuild scans — into a conversation already scanned and into
    /// one not yet — are each indexed once: the scan's and the feed's copies meet.
    #[test]
    fn a_rebuild_while_messages_arrive_indexes_each_once() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let dir = tempfile::tempdir().expect("tempdir");
        let storage: Arc<dyn Storage> = Arc::new(
            Embedded::open(dir.path().join("store"), EmbeddedConfig::default()).expect("open"),
        );
        let mut convs = Vec::new();
        for listing in ["x", "y", "z"] {
            let c = rt
                .block_on(storage.create_direct("b", "s", listing, 1))
                .expect("create")
                .conversation
                .id;
            for i in 0..30 {
                rt.block_on(storage.append(text(c, "s", &format!("{listing}{i}"))))
                    .expect("append");
            }
            convs.push(c);
        }
        let index = Arc::new(Tantivy::open(&dir.path().join("search")).expect("index"));
        let indexer = Indexer {
            index: index.clone(),
            storage: storage.clone(),
            commit_every: Duration::ZERO,
            poll: Duration::ZERO,
            keep_above: Arc::new(std::sync::atomic::AtomicU64::new(u64::MAX)),
        };
        assert_eq!(
            indexer.start_cursor(&rt).expect("start"),
            None,
            "a rebuild is due"
        );
        let mut writer = index.open_writer().expect("writer");
        let mut extra = 0;
        let mut f = indexer
            .rebuild(&rt, &mut writer, &mut |s| {
                if s.conversations == 1 {
                    // Into every conversation: scanned, being scanned next, last.
                    for (n, c) in convs.iter().enumerate() {
                        let m = text(*c, "b", &format!("late{n}"));
                        rt.block_on(storage.append(m)).expect("append");
                        extra += 1;
                    }
                }
            })
            .expect("rebuild");
        assert_eq!(extra, 3);
        while indexer.step(&rt, &mut writer, &mut f).expect("step") > 0 {}
        indexer
            .commit_if_due(&rt, &mut writer, &mut f)
            .expect("commit");
        assert_eq!(index.watermark().expect("wm"), Some(f.cursor));
        assert_eq!(count(&index), 93);
        assert_eq!(index.docs(), 93);
        // Following on from the commit adds only what is new.
        rt.block_on(storage.append(text(convs[0], "s", "new")))
            .expect("append");
        let mut f = Follow::at(
            indexer
                .start_cursor(&rt)
                .expect("start")
                .expect("no rebuild"),
        );
        while indexer.step(&rt, &mut writer, &mut f).expect("step") > 0 {}
        writer.commit(f.cursor).expect("commit");
        assert_eq!(count(&index), 94);
    }
}
