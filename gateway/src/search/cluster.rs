//! Feeds a cluster's index (Solr) from the bus: a [`Queue`] over the event streams (a Redis
//! consumer group of its own, `search`), so each committed message is indexed by whichever
//! node takes it, and passes to another node if this one dies before it acknowledged.
//!
//! A batch: entries are taken until [`BATCH`] or `commit_every` after the first, the messages
//! they announce read from storage in one call (a deleted conversation's are gone: skipped),
//! added, committed, and only then acknowledged. A batch that fails (storage or Solr down) is
//! kept and tried again; an entry indexed twice (a node died between commit and ack, and
//! another took its entries over) replaces its own document: never found twice.
//!
//! Deletes do not come this way: the node that deletes a conversation removes its documents
//! itself (`Chat::delete_conversation`), and every hit is checked against the conversation as
//! it is now anyway.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use parley_storage::{Storage, StorageError};
use parley_types::ConversationId;

use super::scan::{ParticipantCache, Scan, Scanned};
use super::{SearchError, SearchIndex};

/// Entries indexed in one commit at most.
const BATCH: usize = 512;
/// Wait before trying again after an error.
const RETRY: Duration = Duration::from_secs(1);

/// One queue entry: its id (for the ack) and the message it announces, if any.
#[derive(Clone, Debug)]
pub(crate) struct Entry {
    pub(crate) id: (u32, String),
    pub(crate) at: Option<(ConversationId, u64)>,
}

/// A cluster's shared queue of committed messages (the bus's consumer group `search`).
#[async_trait]
pub(crate) trait Queue: Send + Sync + 'static {
    /// Up to `max` entries for this node (never blocks for long).
    async fn take(&self, max: usize) -> Result<Vec<Entry>, String>;
    /// Done with these entries.
    async fn ack(&self, ids: Vec<(u32, String)>) -> Result<(), String>;
}

#[derive(Debug, thiserror::Error)]
enum BatchError {
    #[error(transparent)]
    Search(#[from] SearchError),
    #[error("storage: {0}")]
    Storage(#[from] StorageError),
}

/// The bus-fed indexer of one node.
pub(crate) struct ClusterIndexer {
    pub(crate) index: Arc<dyn SearchIndex>,
    pub(crate) storage: Arc<dyn Storage>,
    pub(crate) queue: Arc<dyn Queue>,
    /// Longest an entry waits for the commit that makes it searchable (after it was taken).
    pub(crate) commit_every: Duration,
    /// How often an idle indexer looks at the queue.
    pub(crate) poll: Duration,
}

impl ClusterIndexer {
    /// Runs for the life of the node.
    pub(crate) async fn run(self) {
        let mut batch: Vec<Entry> = Vec::new();
        let mut participants = ParticipantCache::default();
        loop {
            if batch.is_empty() {
                match self.fill().await {
                    Ok(b) => batch = b,
                    Err(e) => {
                        tracing::warn!(error = %e, "search: the queue failed; retrying");
                        tokio::time::sleep(RETRY).await;
                        continue;
                    }
                }
                if batch.is_empty() {
                    tokio::time::sleep(self.poll).await;
                    continue;
                }
            }
            if let Err(e) = self.index_batch(&batch, &mut participants).await {
                tracing::warn!(error = %e, entries = batch.len(), "search: indexing a batch failed; retrying it");
                tokio::time::sleep(RETRY).await;
                continue;
            }
            let ids: Vec<(u32, String)> = batch.iter().map(|e| e.id.clone()).collect();
            let n = ids.len() as u64;
            if let Err(e) = self.queue.ack(ids).await {
                // Left pending: taken again (and indexed again, harmlessly) by the node that
                // takes the partition over.
                tracing::warn!(error = %e, "search: acknowledging a batch failed");
            }
            self.index.stats().watermark.fetch_add(n, Relaxed);
            batch.clear();
        }
    }

    /// Entries taken until [`BATCH`] or `commit_every` after the first (empty: nothing came
    /// within one poll). Each take counts in the stats' head at once: the lag shows what this
    /// node holds.
    async fn fill(&self) -> Result<Vec<Entry>, String> {
        let mut batch = self.take(BATCH).await?;
        if batch.is_empty() {
            return Ok(batch);
        }
        let first = Instant::now();
        while batch.len() < BATCH {
            let Some(left) = self.commit_every.checked_sub(first.elapsed()) else {
                break;
            };
            let more = self.take(BATCH - batch.len()).await?;
            if more.is_empty() {
                tokio::time::sleep(self.poll.min(left)).await;
            }
            batch.extend(more);
        }
        Ok(batch)
    }

    async fn take(&self, max: usize) -> Result<Vec<Entry>, String> {
        let taken = self.queue.take(max).await?;
        self.index
            .stats()
            .head
            .fetch_add(taken.len() as u64, Relaxed);
        Ok(taken)
    }

    async fn index_batch(
        &self,
        batch: &[Entry],
        p: &mut ParticipantCache,
    ) -> Result<(), BatchError> {
        let at: Vec<(ConversationId, u64)> = batch.iter().filter_map(|e| e.at).collect();
        if at.is_empty() {
            return Ok(());
        }
        let named: Vec<ConversationId> = at.iter().map(|&(c, _)| c).collect();
        p.load(&*self.storage, &named).await?;
        let messages = self.storage.messages_at(at.clone()).await?;
        let mut writer = self.index.clone().writer()?;
        for ((c, _), m) in at.iter().zip(messages) {
            // Gone: deleted (or its conversation deleted) since it was announced.
            let (Some(m), Some(participants)) = (m, p.get(c)) else {
                continue;
            };
            writer.add(&m, participants)?;
        }
        writer.commit(0).await?;
        Ok(())
    }
}

/// Documents written between commits while rebuilding.
const REINDEX_COMMIT_DOCS: usize = 5_000;

/// `gateway reindex` in a cluster: every message of every conversation in storage written to
/// `index` again, committed every [`REINDEX_COMMIT_DOCS`] documents (what is there is replaced
/// by id; the nodes go on indexing meanwhile). Returns what it scanned.
pub(crate) async fn reindex(
    storage: &dyn Storage,
    index: Arc<dyn SearchIndex>,
    progress: &mut (dyn FnMut(Scanned) + Send),
) -> Result<Scanned, String> {
    let mut scan = Scan::new(storage);
    let mut writer = index.writer().map_err(|e| e.to_string())?;
    let mut pending = 0;
    while let Some(page) = scan.next().await.map_err(|e| format!("storage: {e}"))? {
        for m in &page.messages {
            writer
                .add(m, &page.participants)
                .map_err(|e| e.to_string())?;
        }
        pending += page.messages.len();
        if pending >= REINDEX_COMMIT_DOCS {
            writer.commit(0).await.map_err(|e| e.to_string())?;
            pending = 0;
        }
        if page.finished.is_some() {
            progress(scan.scanned);
        }
    }
    writer.commit(0).await.map_err(|e| e.to_string())?;
    Ok(scan.scanned)
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use parley_storage::embedded::{Embedded, EmbeddedConfig};
    use parley_types::{MessageKind, NewMessage, Visibility};
    use tokio::sync::Notify;

    use super::*;
    use crate::search::{Parsed, Search, SortBy, Tantivy};

    /// A queue that hands out what a test put in it and records acknowledgements.
    #[derive(Default)]
    struct Entries {
        waiting: Mutex<Vec<Entry>>,
        acked: Mutex<Vec<(u32, String)>>,
        changed: Notify,
    }

    #[async_trait]
    impl Queue for Entries {
        async fn take(&self, max: usize) -> Result<Vec<Entry>, String> {
            let mut w = self.waiting.lock().expect("lock");
            let n = max.min(w.len());
            Ok(w.drain(..n).collect())
        }
        async fn ack(&self, ids: Vec<(u32, String)>) -> Result<(), String> {
            self.acked.lock().expect("lock").extend(ids);
            self.changed.notify_waiters();
            Ok(())
        }
    }

    async fn found(index: &Arc<dyn SearchIndex>, user: &str, q: &str) -> Vec<u64> {
        let s = Search {
            user: user.into(),
            query: Parsed::parse(q).expect("parses"),
            conversation: None,
            before: None,
            exclude_senders: Vec::new(),
            sort: SortBy::Newest,
            offset: 0,
            limit: 50,
        };
        let hits = index.clone().search(s).await.expect("search");
        hits.iter().map(|h| h.seq).collect()
    }

    /// Messages announced by the queue are indexed with their conversation's participants
    /// (a shadowed one for its sender only), an entry naming a message that is gone is
    /// skipped, an entry announced twice is found once, and every entry is acknowledged
    /// only after the commit that made it searchable.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn announced_messages_become_searchable_then_are_acknowledged() {
        let dir = tempfile::tempdir().expect("tempdir");
        let storage: Arc<dyn Storage> = Arc::new(
            Embedded::open(dir.path().join("store"), EmbeddedConfig::default()).expect("open"),
        );
        let g = storage
            .create_group("a", &["b".into(), "c".into()], "lego", 1)
            .await
            .expect("group");
        let mut seqs = Vec::new();
        for (i, (text, visibility)) in [
            ("the Lego castle", Visibility::Everyone),
            ("castle price agreed", Visibility::Everyone),
            ("castle: pay me outside", Visibility::Sender),
        ]
        .into_iter()
        .enumerate()
        {
            let m = storage
                .append(NewMessage {
                    conversation: g.id,
                    sender: "a".into(),
                    kind: MessageKind::Text,
                    content: text.into(),
                    media: None,
                    client_msg_id: format!("m{i}"),
                    now_ms: 2,
                    visibility,
                })
                .await
                .expect("append")
                .message;
            seqs.push(m.seq);
        }
        let queue = Arc::new(Entries::default());
        {
            let mut w = queue.waiting.lock().expect("lock");
            for (i, &seq) in seqs.iter().chain([&seqs[0], &99]).enumerate() {
                w.push(Entry {
                    id: (0, format!("{i}-0")),
                    at: Some((g.id, seq)),
                });
            }
            // Not a message (a receipt, a deletion).
            w.push(Entry {
                id: (1, "9-0".into()),
                at: None,
            });
        }
        let index: Arc<dyn SearchIndex> = Arc::new(Tantivy::in_memory());
        let indexer = ClusterIndexer {
            index: index.clone(),
            storage,
            queue: queue.clone(),
            commit_every: Duration::from_millis(50),
            poll: Duration::from_millis(10),
        };
        let task = tokio::spawn(indexer.run());
        tokio::time::timeout(Duration::from_secs(20), async {
            loop {
                let changed = queue.changed.notified();
                if queue.acked.lock().expect("lock").len() == 6 {
                    return;
                }
                changed.await;
            }
        })
        .await
        .expect("every entry acknowledged");
        task.abort();
        assert_eq!(found(&index, "b", "castle ").await, [2, 1]);
        assert_eq!(found(&index, "a", "castle ").await, [3, 2, 1]);
        assert_eq!(found(&index, "c", "lego cas").await, [1]);
        assert_eq!(found(&index, "mallory", "castle ").await, Vec::<u64>::new());
        let mut acked = queue.acked.lock().expect("lock").clone();
        acked.sort();
        assert_eq!(acked.len(), 6, "each once: {acked:?}");
    }
}
