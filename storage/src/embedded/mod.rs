//! The embedded engine: fjall (an LSM tree) in a data directory, no server needed.
//!
//! Writes go to one writer thread that drains up to `max_batch` requests, applies them to one
//! fjall write batch and commits it with `fdatasync`: one fsync per batch, not per message
//! (group commit), and replies only after the sync, so an acknowledged message survives
//! `kill -9` and power loss. The single writer also assigns message ids, which makes id order
//! equal commit order. Reads run on Tokio's blocking pool against fjall directly; they see only
//! synced data (fjall applies a batch to its memtables after the journal sync).

mod keys;
mod purge;
mod writer;

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use fjall::{Database, Keyspace, KeyspaceCreateOptions};
use tokio::sync::{mpsc, oneshot};

use crate::error::{Result, StorageError};
use crate::record::{
    apply_meta, decode_change, decode_conversation, decode_message, decode_read_state,
};
use crate::{Change, MAX_PAGE, Storage};
use parley_types::*;
use writer::{Op, Writer};

/// Settings of the embedded engine.
#[derive(Clone, Debug)]
pub struct EmbeddedConfig {
    /// Node id put into message ids (0..=1023); unique per node of a cluster.
    pub node_id: u16,
    /// Most write requests committed by one fsync.
    pub max_batch: usize,
    /// Write requests that may wait for the writer before callers are made to wait.
    pub queue: usize,
    /// fjall block cache, bytes.
    pub cache_bytes: u64,
    /// Memtable size per keyspace, bytes (see `Keyspaces::open`).
    pub memtable_bytes: u64,
    /// Under concurrent load, how long the writer waits for more requests before a commit
    /// (group commit window). Zero: commit what is queued at once.
    pub commit_delay: std::time::Duration,
}

impl Default for EmbeddedConfig {
    fn default() -> Self {
        Self {
            node_id: 0,
            max_batch: 2048,
            queue: 16 * 1024,
            cache_bytes: 64 << 20,
            memtable_bytes: 32 << 20,
            commit_delay: std::time::Duration::ZERO,
        }
    }
}

#[derive(Clone)]
pub(crate) struct Keyspaces {
    conv: Keyspace,
    meta: Keyspace,
    msg: Keyspace,
    idem: Keyspace,
    read: Keyspace,
    direct: Keyspace,
    member: Keyspace,
    block: Keyspace,
    report: Keyspace,
    /// Conversations deleted whose messages are still being removed (see `purge`).
    purge: Keyspace,
    /// Each user's conversations in list order (see `keys::activity`).
    activity: Keyspace,
    /// Each user's conversations with unread messages (see `keys::unread`).
    unread: Keyspace,
    /// `block` the other way round (see `keys::blocked_by`).
    blocked_by: Keyspace,
    /// Report ids by queue (see `keys::report_queue`).
    report_queue: Keyspace,
    /// Users' standing (see `keys::standing`).
    standing: Keyspace,
    /// The moderation log: entry id → entry; and by target (`keys::moderation_by_target`).
    moderation: Keyspace,
    moderation_by_target: Keyspace,
    /// The change feed (see `keys::change`), trimmed by its reader.
    changes: Keyspace,
    /// Small records per owner (see `keys::value`).
    values: Keyspace,
}

impl Keyspaces {
    fn open(db: &Database, memtable_bytes: u64) -> fjall::Result<Self> {
        // 32 MiB memtables by default instead of fjall's 64: inserts walk a smaller skiplist
        // (fewer cache misses; 8 MiB measured 23 k → 58 k acknowledged appends/s with 512 in
        // flight in benches/storage.rs, together with mimalloc). Memory: each keyspace written
        // to holds up to one memtable (plus one being flushed), on top of the block cache.
        let opts = || KeyspaceCreateOptions::default().max_memtable_size(memtable_bytes);
        let ks = |name: &str| db.keyspace(name, opts);
        Ok(Self {
            conv: ks("conv")?,
            meta: ks("meta")?,
            msg: ks("msg")?,
            idem: ks("idem")?,
            read: ks("read")?,
            direct: ks("direct")?,
            member: ks("member")?,
            block: ks("block")?,
            report: ks("report")?,
            purge: ks("purge")?,
            activity: ks("activity")?,
            unread: ks("unread")?,
            blocked_by: ks("blocked_by")?,
            report_queue: ks("report_queue")?,
            standing: ks("standing")?,
            moderation: ks("moderation")?,
            moderation_by_target: ks("moderation_by_target")?,
            changes: ks("changes")?,
            values: ks("values")?,
        })
    }
}

/// The on-disk format, in the file [`FORMAT_FILE`] of the data directory: 3 adds the
/// per-user `activity` and `unread` indexes and `blocked_by` (built from the data when a
/// format 2 directory is opened); 2 keys messages by seq (format 1, before this file existed,
/// keyed them by id).
const FORMAT: &str = "parley-embedded 3";
const FORMAT_2: &str = "parley-embedded 2";
const FORMAT_FILE: &str = "PARLEY_FORMAT";

/// What opening a data directory needs.
enum Format {
    Current,
    /// Format 2: build the indexes of format 3, then mark it.
    Upgrade,
}

/// Refuses a data directory written in a format this build cannot read; marks a new (empty)
/// one.
fn check_format(dir: &Path) -> Result<Format> {
    let marker = dir.join(FORMAT_FILE);
    match std::fs::read_to_string(&marker) {
        Ok(found) if found.trim() == FORMAT => return Ok(Format::Current),
        Ok(found) if found.trim() == FORMAT_2 => return Ok(Format::Upgrade),
        Ok(found) => {
            return Err(StorageError::Unavailable(format!(
                "{}: format {:?}, this build reads {FORMAT:?}",
                dir.display(),
                found.trim()
            )));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_error(&marker, e)),
    }
    let empty = match std::fs::read_dir(dir) {
        Ok(mut entries) => entries.next().is_none(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => true,
        Err(e) => return Err(io_error(dir, e)),
    };
    if !empty {
        return Err(StorageError::Unavailable(format!(
            "{} holds data of an older Parley (messages keyed by id, format 1) that this build \
             cannot read; start with an empty data directory",
            dir.display()
        )));
    }
    std::fs::create_dir_all(dir).map_err(|e| io_error(dir, e))?;
    write_format(dir)?;
    Ok(Format::Current)
}

fn write_format(dir: &Path) -> Result<()> {
    let marker = dir.join(FORMAT_FILE);
    std::fs::write(&marker, FORMAT).map_err(|e| io_error(&marker, e))
}

/// Builds the `activity`, `unread` and `blocked_by` indexes of format 3 from the members,
/// conversations, watermarks and blocks of a format 2 directory (before the writer starts, so
/// nothing else writes).
fn build_indexes(db: &Database, ks: &Keyspaces) -> Result<()> {
    let new_batch = || {
        fjall::OwnedWriteBatch::with_capacity(db.clone(), 1024)
            .durability(Some(fjall::PersistMode::SyncAll))
    };
    let mut batch = new_batch();
    let mut n = 0usize;
    for guard in ks.member.iter() {
        let key = guard.key().map_err(unavailable)?;
        let mut r = crate::record::Reader::key(&key);
        let user = r.key_str()?;
        let id = ConversationId::from_bytes(r.bytes16()?);
        let Some(c) = load_conversation(ks, id)? else {
            continue;
        };
        batch.insert(
            &ks.activity,
            keys::activity(&user, c.last_activity_ms, id),
            Vec::new(),
        );
        if unread_of(ks, &c, &user)? > 0 {
            batch.insert(&ks.unread, keys::unread(&user, id), Vec::new());
        }
        n += 1;
        if n.is_multiple_of(10_000) {
            std::mem::replace(&mut batch, new_batch())
                .commit()
                .map_err(unavailable)?;
        }
    }
    for guard in ks.block.iter() {
        let (key, at) = guard.into_inner().map_err(unavailable)?;
        let mut r = crate::record::Reader::key(&key);
        let (blocker, blocked) = (r.key_str()?, r.key_str()?);
        batch.insert(
            &ks.blocked_by,
            keys::blocked_by(&blocked, &blocker),
            at.to_vec(),
        );
    }
    batch.commit().map_err(unavailable)?;
    tracing::info!(
        memberships = n,
        "storage: built the activity, unread and blocked_by indexes"
    );
    Ok(())
}

/// Puts the reports of a directory written before report queues existed into them, with
/// time-ordered ids (they had random ones), before the writer starts.
fn queue_reports(db: &Database, ks: &Keyspaces) -> Result<()> {
    let mut batch = fjall::OwnedWriteBatch::with_capacity(db.clone(), 64)
        .durability(Some(fjall::PersistMode::SyncAll));
    let mut n = 0usize;
    for guard in ks.report.iter() {
        let (key, value) = guard.into_inner().map_err(unavailable)?;
        let mut report = crate::record::decode_report(&value)?;
        if report.id.get_version_num() != 7 {
            batch.remove(&ks.report, key.to_vec());
            report.id = crate::rules::legacy_report_id(report.id, report.created_at_ms);
        }
        batch.insert(
            &ks.report,
            report.id.as_bytes().to_vec(),
            crate::record::encode_report(&report),
        );
        let queues = [
            Some(keys::Queue::All),
            report.resolution.is_none().then_some(keys::Queue::Open),
            Some(keys::Queue::Against(&report.reported_user)),
        ];
        for q in queues.into_iter().flatten() {
            batch.insert(
                &ks.report_queue,
                keys::report_queue(q, &report.id),
                Vec::new(),
            );
        }
        n += 1;
    }
    batch.commit().map_err(unavailable)?;
    tracing::info!(reports = n, "storage: built the report queues");
    Ok(())
}

pub(crate) fn load_report(ks: &Keyspaces, id: uuid::Uuid) -> Result<Option<Report>> {
    match ks.report.get(id.as_bytes()).map_err(unavailable)? {
        Some(bytes) => crate::record::decode_report(&bytes).map(Some),
        None => Ok(None),
    }
}

pub(crate) fn load_standing(ks: &Keyspaces, user: &str) -> Result<Standing> {
    match ks.standing.get(keys::standing(user)).map_err(unavailable)? {
        Some(bytes) => crate::record::decode_standing(&bytes),
        None => Ok(Standing::default()),
    }
}

/// Ids under `prefix` of a time-ordered index, newest first, strictly older than `before`,
/// while `keep` takes them (it returns false to stop).
fn newest_first(
    index: &Keyspace,
    prefix: &[u8],
    before: Option<uuid::Uuid>,
    mut keep: impl FnMut(uuid::Uuid) -> Result<bool>,
) -> Result<()> {
    let mut end = prefix.to_vec();
    match before {
        Some(id) => end.extend_from_slice(id.as_bytes()),
        // Past every 16-byte id under the prefix.
        None => end.extend_from_slice(&[0xff; 17]),
    }
    for guard in index.range(prefix.to_vec()..end).rev() {
        let key = guard.key().map_err(unavailable)?;
        let id =
            keys::trailing_id(&key).ok_or_else(|| StorageError::Corrupt("index key".into()))?;
        if !keep(id)? {
            break;
        }
    }
    Ok(())
}

fn io_error(path: &Path, e: std::io::Error) -> StorageError {
    StorageError::Unavailable(format!("{}: {e}", path.display()))
}

/// The embedded engine. Cheap to clone; all clones share one database and one writer.
#[derive(Clone)]
pub struct Embedded {
    db: Database,
    ks: Arc<Keyspaces>,
    writes: mpsc::Sender<Op>,
}

impl Embedded {
    /// Opens (or creates) the database in `dir` and starts its writer thread.
    pub fn open(dir: impl AsRef<Path>, config: EmbeddedConfig) -> Result<Self> {
        let format = check_format(dir.as_ref())?;
        let db = Database::builder(dir.as_ref())
            .cache_size(config.cache_bytes)
            .open()
            .map_err(unavailable)?;
        let ks = Keyspaces::open(&db, config.memtable_bytes.max(1 << 20)).map_err(unavailable)?;
        if let Format::Upgrade = format {
            build_indexes(&db, &ks)?;
            write_format(dir.as_ref())?;
        }
        if ks.report_queue.iter().next().is_none() && ks.report.iter().next().is_some() {
            queue_reports(&db, &ks)?;
        }
        let (tx, rx) = mpsc::channel(config.queue.max(1));
        // The writer kicks the purger after each delete (and holds its end of the channel
        // for as long as it runs: the purger stops with it). One kick waiting is enough.
        let (kick, kicks) = std::sync::mpsc::sync_channel(1);
        let purger = purge::Purger {
            db: db.clone(),
            ks: ks.clone(),
        };
        let writer = Writer::new(
            db.clone(),
            kick,
            ks.clone(),
            config.node_id,
            config.max_batch.max(1),
            config.commit_delay,
        )?;
        std::thread::Builder::new()
            .name("parley-storage-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| StorageError::Unavailable(format!("spawn writer: {e}")))?;
        std::thread::Builder::new()
            .name("parley-storage-purge".into())
            .spawn(move || purger.run(kicks))
            .map_err(|e| StorageError::Unavailable(format!("spawn purger: {e}")))?;
        Ok(Self {
            db,
            ks: Arc::new(ks),
            writes: tx,
        })
    }

    async fn write<T>(&self, op: impl FnOnce(oneshot::Sender<Result<T>>) -> Op) -> Result<T> {
        let (tx, rx) = oneshot::channel();
        self.writes
            .send(op(tx))
            .await
            .map_err(|_| StorageError::Unavailable("storage writer stopped".into()))?;
        rx.await
            .map_err(|_| StorageError::Unavailable("storage writer stopped".into()))?
    }

    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Keyspaces) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let ks = self.ks.clone();
        tokio::task::spawn_blocking(move || f(&ks))
            .await
            .map_err(|e| StorageError::Unavailable(format!("read task: {e}")))?
    }
}

pub(crate) fn unavailable(e: fjall::Error) -> StorageError {
    StorageError::Unavailable(e.to_string())
}

pub(crate) fn load_conversation(
    ks: &Keyspaces,
    id: ConversationId,
) -> Result<Option<Conversation>> {
    let key = keys::conversation(id);
    let Some(bytes) = ks.conv.get(&key).map_err(unavailable)? else {
        return Ok(None);
    };
    let mut c = decode_conversation(&bytes)?;
    if let Some(meta) = ks.meta.get(&key).map_err(unavailable)? {
        apply_meta(&mut c, &meta)?;
    }
    Ok(Some(c))
}

/// Most change-feed entries one [`Storage::changes`] call returns.
pub const CHANGES_PAGE: usize = 4096;
/// Change-feed entries removed per batch by [`Storage::trim_changes`].
const TRIM_CHUNK: usize = 4096;

/// The newest change-feed cursor (0: the feed is empty).
pub(crate) fn last_change(ks: &Keyspaces) -> Result<u64> {
    match ks.changes.last_key_value() {
        Some(guard) => {
            let key = guard.key().map_err(unavailable)?;
            let raw: [u8; 8] = key
                .as_ref()
                .try_into()
                .map_err(|_| StorageError::Corrupt("change-feed key is not 8 bytes".into()))?;
            Ok(u64::from_be_bytes(raw))
        }
        None => Ok(0),
    }
}

pub(crate) fn load_message(
    ks: &Keyspaces,
    conv: ConversationId,
    seq: u64,
) -> Result<Option<Message>> {
    match ks.msg.get(keys::message(conv, seq)).map_err(unavailable)? {
        Some(bytes) => decode_message(&bytes).map(Some),
        None => Ok(None),
    }
}

/// The seq of the newest message with id ≤ `id` among seqs `1..=last` (0: none). Ids increase
/// with seq (one writer assigns both), so a binary search over seqs finds it: ~log₂(last)
/// point reads.
pub(crate) fn seq_at_or_before(
    ks: &Keyspaces,
    conv: ConversationId,
    last: u64,
    id: MessageId,
) -> Result<u64> {
    let (mut lo, mut hi) = (0u64, last);
    // Invariant: seq `lo` has id ≤ `id` (or is 0); every seq above `hi` has id > `id`.
    while lo < hi {
        let mid = lo + (hi - lo).div_ceil(2);
        let m = load_message(ks, conv, mid)?
            .ok_or_else(|| StorageError::Corrupt(format!("message seq {mid} missing")))?;
        if m.id <= id {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    Ok(lo)
}

/// The seq a position stands for: its own, or (id only) that of the message with its id.
fn position_seq(ks: &Keyspaces, c: &Conversation, p: Position) -> Result<u64> {
    if p.seq > 0 || p.id.0 == 0 {
        Ok(p.seq)
    } else {
        seq_at_or_before(ks, c.id, c.last_seq, p.id)
    }
}

fn load_read_state(ks: &Keyspaces, conv: ConversationId, user: &str) -> Result<Option<ReadState>> {
    match ks
        .read
        .get(keys::read_state(conv, user))
        .map_err(unavailable)?
    {
        Some(bytes) => decode_read_state(&bytes).map(Some),
        None => Ok(None),
    }
}

fn blocked_between(ks: &Keyspaces, a: &str, b: &str) -> Result<bool> {
    Ok(ks
        .block
        .contains_key(keys::block(a, b))
        .map_err(unavailable)?
        || ks
            .block
            .contains_key(keys::block(b, a))
            .map_err(unavailable)?)
}

/// Every conversation `user` takes part in (unordered).
fn member_conversations(ks: &Keyspaces, user: &str) -> Result<Vec<Conversation>> {
    conversations_in(&ks.member, ks, user)
}

/// The conversations of `user`'s keys in `index` (`member` or `unread`: user | conversation).
fn conversations_in(index: &Keyspace, ks: &Keyspaces, user: &str) -> Result<Vec<Conversation>> {
    let prefix = keys::member_prefix(user);
    let mut out = Vec::new();
    for guard in index.prefix(&prefix) {
        let key = guard.key().map_err(unavailable)?;
        let Some(id) = key.get(prefix.len()..prefix.len() + 16) else {
            return Err(StorageError::Corrupt("member key".into()));
        };
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(id);
        if let Some(c) = load_conversation(ks, ConversationId::from_bytes(bytes))? {
            out.push(c);
        }
    }
    Ok(out)
}

/// One page of `user`'s conversations from the `activity` index: `limit` entries after the
/// cursor (one range read), and the cursor of the next page when more follow. An entry whose
/// time no longer matches its conversation (a commit moved it while this read ran) is skipped:
/// the conversation is listed at its new place.
fn activity_page(
    ks: &Keyspaces,
    user: &str,
    cursor: Option<ListCursor>,
    limit: usize,
) -> Result<(Vec<Conversation>, Option<ListCursor>)> {
    let prefix = keys::activity_prefix(user);
    let start = match cursor {
        // Just after the cursor's own key (the keys are unique, so appending a byte is the
        // next one there could be).
        Some(c) => {
            let mut k = keys::activity(user, c.last_activity_ms, c.id);
            k.push(0);
            k
        }
        None => prefix.clone(),
    };
    let mut page = Vec::with_capacity(limit + 1);
    for guard in ks.activity.range(start..) {
        let key = guard.key().map_err(unavailable)?;
        if !key.starts_with(&prefix) {
            break;
        }
        let id = keys::activity_conversation(&key)
            .ok_or_else(|| StorageError::Corrupt("activity key".into()))?;
        let Some(c) = load_conversation(ks, id)? else {
            continue;
        };
        if keys::activity(user, c.last_activity_ms, id) != *key {
            continue;
        }
        page.push(c);
        if page.len() > limit {
            break;
        }
    }
    let more = page.len() > limit;
    page.truncate(limit);
    let next = more.then(|| page.last()).flatten().map(|c| ListCursor {
        last_activity_ms: c.last_activity_ms,
        id: c.id,
    });
    Ok((page, next))
}

/// `user`'s conversations with unread messages, from the `unread` index.
fn unread_conversations(ks: &Keyspaces, user: &str) -> Result<Vec<Conversation>> {
    conversations_in(&ks.unread, ks, user)
}

/// The other users of `user`'s entries in `block` or `blocked_by`, with the time.
fn blocks_in(ks: &Keyspace, user: &str) -> Result<Vec<(String, i64)>> {
    let prefix = keys::member_prefix(user);
    let mut out = Vec::new();
    for guard in ks.prefix(&prefix) {
        let (key, at) = guard.into_inner().map_err(unavailable)?;
        let mut r = crate::record::Reader::key(&key[prefix.len()..]);
        let at = <[u8; 8]>::try_from(&at[..])
            .map(i64::from_be_bytes)
            .map_err(|_| StorageError::Corrupt("block time".into()))?;
        out.push((r.key_str()?, at));
    }
    Ok(out)
}

fn unread_of(ks: &Keyspaces, c: &Conversation, user: &str) -> Result<u64> {
    let read_seq = load_read_state(ks, c.id, user)?.map_or(0, |s| s.seq);
    Ok(c.last_seq.saturating_sub(read_seq))
}

#[async_trait]
impl Storage for Embedded {
    async fn create_direct(
        &self,
        buyer: &str,
        seller: &str,
        listing: &str,
        now_ms: i64,
    ) -> Result<Created> {
        crate::rules::direct_ids(buyer, seller, listing)?;
        let (buyer, seller, listing) = (buyer.to_owned(), seller.to_owned(), listing.to_owned());
        self.write(|reply| Op::CreateDirect {
            buyer,
            seller,
            listing,
            now_ms,
            reply,
        })
        .await
    }

    async fn create_group(
        &self,
        creator: &str,
        participants: &[String],
        title: &str,
        now_ms: i64,
    ) -> Result<Conversation> {
        crate::rules::group(creator, participants, title)?;
        let (creator, participants, title) =
            (creator.to_owned(), participants.to_vec(), title.to_owned());
        self.write(|reply| Op::CreateGroup {
            creator,
            participants,
            title,
            now_ms,
            reply,
        })
        .await
    }

    async fn conversation(&self, id: ConversationId) -> Result<Option<Conversation>> {
        self.read(move |ks| load_conversation(ks, id)).await
    }

    async fn delete_conversation(&self, id: ConversationId, by: &str) -> Result<Conversation> {
        crate::rules::users([by])?;
        let by = by.to_owned();
        self.write(|reply| Op::Delete { id, by, reply }).await
    }

    async fn append(&self, message: NewMessage) -> Result<Appended> {
        crate::rules::message(&message)?;
        self.write(|reply| Op::Append { message, reply }).await
    }

    async fn history(
        &self,
        conversation: ConversationId,
        before: Option<Position>,
        limit: usize,
    ) -> Result<HistoryPage> {
        let limit = limit.clamp(1, MAX_PAGE);
        self.read(move |ks| {
            let Some(c) = load_conversation(ks, conversation)? else {
                return Ok(HistoryPage::default());
            };
            // Strictly older than `before`.
            let newest = match before {
                None => c.last_seq,
                Some(p) if p.seq > 0 => p.seq - 1,
                Some(p) => {
                    seq_at_or_before(ks, c.id, c.last_seq, MessageId(p.id.0.saturating_sub(1)))?
                }
            };
            if newest == 0 {
                return Ok(HistoryPage::default());
            }
            let start = keys::message(conversation, 1);
            let end = keys::message(conversation, newest);
            let mut messages = Vec::with_capacity(limit);
            let mut more = false;
            for guard in ks.msg.range(start..=end).rev() {
                if messages.len() == limit {
                    more = true;
                    break;
                }
                let (_, value) = guard.into_inner().map_err(unavailable)?;
                messages.push(decode_message(&value)?);
            }
            let next_before = if more {
                messages.last().map(Position::of)
            } else {
                None
            };
            Ok(HistoryPage {
                messages,
                next_before,
            })
        })
        .await
    }

    async fn messages_after(
        &self,
        conversation: ConversationId,
        after: Position,
        limit: usize,
    ) -> Result<Vec<Message>> {
        self.read(move |ks| {
            let Some(c) = load_conversation(ks, conversation)? else {
                return Ok(Vec::new());
            };
            let from = position_seq(ks, &c, after)?;
            if from >= c.last_seq {
                return Ok(Vec::new());
            }
            let start = keys::message(conversation, from + 1);
            let end = keys::message(conversation, u64::MAX);
            let mut out = Vec::new();
            for guard in ks.msg.range(start..=end).take(limit) {
                let (_, value) = guard.into_inner().map_err(unavailable)?;
                out.push(decode_message(&value)?);
            }
            Ok(out)
        })
        .await
    }

    async fn mark_read(
        &self,
        conversation: ConversationId,
        user: &str,
        up_to: MessageId,
        now_ms: i64,
    ) -> Result<ReadOutcome> {
        crate::rules::users([user])?;
        let user = user.to_owned();
        self.write(|reply| Op::MarkRead {
            conversation,
            user,
            up_to,
            now_ms,
            reply,
        })
        .await
    }

    async fn read_state(
        &self,
        conversation: ConversationId,
        user: &str,
    ) -> Result<Option<ReadState>> {
        crate::rules::users([user])?;
        let user = user.to_owned();
        self.read(move |ks| load_read_state(ks, conversation, &user))
            .await
    }

    async fn list_conversations(
        &self,
        user: &str,
        cursor: Option<ListCursor>,
        limit: usize,
    ) -> Result<ConversationPage> {
        crate::rules::users([user])?;
        let user = user.to_owned();
        let limit = limit.clamp(1, MAX_PAGE);
        self.read(move |ks| {
            let (page, next_cursor) = activity_page(ks, &user, cursor, limit)?;
            let mut items = Vec::with_capacity(page.len());
            for c in page {
                let last_message = match c.last_seq {
                    0 => None,
                    seq => load_message(ks, c.id, seq)?,
                };
                items.push(ConversationSummary {
                    unread: unread_of(ks, &c, &user)?,
                    conversation: c,
                    last_message,
                });
            }
            Ok(ConversationPage { items, next_cursor })
        })
        .await
    }

    async fn unread_counts(&self, user: &str) -> Result<Vec<(ConversationId, u64)>> {
        crate::rules::users([user])?;
        let user = user.to_owned();
        self.read(move |ks| {
            let mut out = Vec::new();
            for c in unread_conversations(ks, &user)? {
                let unread = unread_of(ks, &c, &user)?;
                if unread > 0 {
                    out.push((c.id, unread));
                }
            }
            Ok(out)
        })
        .await
    }

    async fn contacts(&self, user: &str, max_participants: usize) -> Result<Vec<String>> {
        crate::rules::users([user])?;
        let user = user.to_owned();
        self.read(move |ks| {
            let mut out: Vec<String> = member_conversations(ks, &user)?
                .into_iter()
                .filter(|c| c.participants.len() <= max_participants)
                .flat_map(|c| c.participants)
                .filter(|p| *p != user)
                .collect();
            out.sort_unstable();
            out.dedup();
            Ok(out)
        })
        .await
    }

    async fn set_block(&self, user: &str, target: &str, blocked: bool, now_ms: i64) -> Result<()> {
        crate::rules::users([user, target])?;
        let (user, target) = (user.to_owned(), target.to_owned());
        self.write(|reply| Op::SetBlock {
            user,
            target,
            blocked,
            now_ms,
            reply,
        })
        .await
    }

    async fn put_value(&self, owner: &str, key: &str, value: Option<Vec<u8>>) -> Result<()> {
        crate::rules::value(owner, key, value.as_deref())?;
        let key = keys::value(owner, key);
        self.write(|reply| Op::PutValue { key, value, reply }).await
    }

    async fn values(
        &self,
        owner: &str,
        prefix: &str,
        limit: usize,
    ) -> Result<Vec<(String, Vec<u8>)>> {
        crate::rules::value_prefix(owner, prefix)?;
        let owned = keys::member_prefix(owner).len();
        let range = keys::value(owner, prefix);
        let limit = limit.min(MAX_PAGE);
        self.read(move |ks| {
            let mut out = Vec::new();
            for guard in ks.values.prefix(&range).take(limit) {
                let (key, value) = guard.into_inner().map_err(unavailable)?;
                let key = std::str::from_utf8(&key[owned..])
                    .map_err(|_| StorageError::Corrupt("a value's key".into()))?;
                out.push((key.to_owned(), value.to_vec()));
            }
            Ok(out)
        })
        .await
    }

    async fn is_blocked_between(&self, a: &str, b: &str) -> Result<bool> {
        crate::rules::users([a, b])?;
        let (a, b) = (a.to_owned(), b.to_owned());
        self.read(move |ks| blocked_between(ks, &a, &b)).await
    }

    async fn blocks(&self, user: &str) -> Result<Vec<(String, i64)>> {
        crate::rules::users([user])?;
        let user = user.to_owned();
        self.read(move |ks| {
            // Keys order by length first; the API orders by id.
            let mut out = blocks_in(&ks.block, &user)?;
            out.sort_unstable();
            Ok(out)
        })
        .await
    }

    async fn block_relations(&self, user: &str) -> Result<Vec<String>> {
        crate::rules::users([user])?;
        let user = user.to_owned();
        self.read(move |ks| {
            let mut out: Vec<String> = blocks_in(&ks.block, &user)?
                .into_iter()
                .chain(blocks_in(&ks.blocked_by, &user)?)
                .map(|(u, _)| u)
                .collect();
            out.sort_unstable();
            out.dedup();
            Ok(out)
        })
        .await
    }

    async fn report(&self, report: NewReport) -> Result<uuid::Uuid> {
        crate::rules::report(&report)?;
        self.write(|reply| Op::Report { report, reply }).await
    }

    async fn report_by_id(&self, id: uuid::Uuid) -> Result<Option<Report>> {
        self.read(move |ks| load_report(ks, id)).await
    }

    async fn reports(
        &self,
        filter: &ReportFilter,
        before: Option<uuid::Uuid>,
        limit: usize,
    ) -> Result<Vec<Report>> {
        if let Some(u) = &filter.reported_user {
            crate::rules::users([u.as_str()])?;
        }
        let filter = filter.clone();
        let limit = limit.clamp(1, MAX_PAGE);
        self.read(move |ks| {
            let queue = match (&filter.reported_user, filter.open_only) {
                (Some(u), _) => keys::Queue::Against(u),
                (None, true) => keys::Queue::Open,
                (None, false) => keys::Queue::All,
            };
            let mut out = Vec::with_capacity(limit);
            newest_first(
                &ks.report_queue,
                &keys::report_queue_prefix(queue),
                before,
                |id| {
                    if let Some(r) = load_report(ks, id)?
                        && crate::rules::report_matches(&r, &filter)
                    {
                        out.push(r);
                    }
                    Ok(out.len() < limit)
                },
            )?;
            Ok(out)
        })
        .await
    }

    async fn moderate(&self, entry: ModerationEntry) -> Result<Standing> {
        crate::rules::moderation(&entry)?;
        self.write(|reply| Op::Moderate { entry, reply }).await
    }

    async fn standing(&self, user: &str) -> Result<Standing> {
        crate::rules::users([user])?;
        let user = user.to_owned();
        self.read(move |ks| load_standing(ks, &user)).await
    }

    async fn moderation_log(
        &self,
        target: Option<&str>,
        before: Option<uuid::Uuid>,
        limit: usize,
    ) -> Result<Vec<ModerationEntry>> {
        if let Some(t) = target {
            crate::rules::users([t])?;
        }
        let target = target.map(str::to_owned);
        let limit = limit.clamp(1, MAX_PAGE);
        self.read(move |ks| {
            let mut out = Vec::with_capacity(limit);
            let (index, prefix) = match &target {
                Some(t) => (&ks.moderation_by_target, keys::member_prefix(t)),
                None => (&ks.moderation, Vec::new()),
            };
            newest_first(index, &prefix, before, |id| {
                if let Some(bytes) = ks.moderation.get(id.as_bytes()).map_err(unavailable)? {
                    out.push(crate::record::decode_entry(&bytes)?);
                }
                Ok(out.len() < limit)
            })?;
            Ok(out)
        })
        .await
    }

    fn alive(&self) -> bool {
        !self.writes.is_closed()
    }

    async fn changes(&self, after: u64, limit: usize) -> Result<Vec<Change>> {
        let limit = limit.clamp(1, CHANGES_PAGE);
        self.read(move |ks| {
            let Some(from) = after.checked_add(1) else {
                return Ok(Vec::new());
            };
            let mut out = Vec::new();
            for guard in ks.changes.range(keys::change(from)..).take(limit) {
                let (key, value) = guard.into_inner().map_err(unavailable)?;
                let raw: [u8; 8] = key
                    .as_ref()
                    .try_into()
                    .map_err(|_| StorageError::Corrupt("change-feed key is not 8 bytes".into()))?;
                out.push(decode_change(u64::from_be_bytes(raw), &value)?);
            }
            Ok(out)
        })
        .await
    }

    async fn last_change(&self) -> Result<u64> {
        self.read(last_change).await
    }

    async fn messages_at(&self, at: Vec<(ConversationId, u64)>) -> Result<Vec<Option<Message>>> {
        self.read(move |ks| {
            at.into_iter()
                .map(|(conversation, seq)| load_message(ks, conversation, seq))
                .collect()
        })
        .await
    }

    async fn trim_changes(&self, below: u64) -> Result<()> {
        let db = self.db.clone();
        self.read(move |ks| {
            // The newest entry stays: the writer numbers on from it after a restart.
            let below = below.min(last_change(ks)?);
            loop {
                let mut batch = fjall::OwnedWriteBatch::with_capacity(db.clone(), TRIM_CHUNK);
                let mut n = 0;
                for guard in ks.changes.range(..keys::change(below)).take(TRIM_CHUNK) {
                    batch.remove(&ks.changes, guard.key().map_err(unavailable)?.to_vec());
                    n += 1;
                }
                if n == 0 {
                    return Ok(());
                }
                batch.commit().map_err(unavailable)?;
                if n < TRIM_CHUNK {
                    return Ok(());
                }
            }
        })
        .await
    }

    async fn conversations_after(
        &self,
        after: Option<ConversationId>,
        limit: usize,
    ) -> Result<Vec<Conversation>> {
        let limit = limit.clamp(1, MAX_PAGE);
        self.read(move |ks| {
            let start = match after {
                Some(id) => std::ops::Bound::Excluded(keys::conversation(id)),
                None => std::ops::Bound::Unbounded,
            };
            let mut out = Vec::new();
            for guard in ks
                .conv
                .range::<Vec<u8>, _>((start, std::ops::Bound::Unbounded))
                .take(limit)
            {
                let (key, _) = guard.into_inner().map_err(unavailable)?;
                let id = ConversationId::from_bytes(
                    key.as_ref()
                        .try_into()
                        .map_err(|_| StorageError::Corrupt("conversation key".into()))?,
                );
                if let Some(c) = load_conversation(ks, id)? {
                    out.push(c);
                }
            }
            Ok(out)
        })
        .await
    }

    async fn health(&self) -> Result<()> {
        if self.writes.is_closed() {
            return Err(StorageError::Unavailable("storage writer stopped".into()));
        }
        // A read through the blocking pool: proves reads are served too.
        self.read(|ks| {
            ks.conv.first_key_value();
            Ok(())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conformance::text;

    async fn open() -> (tempfile::TempDir, Embedded) {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = Embedded::open(dir.path(), EmbeddedConfig::default()).expect("open");
        (dir, db)
    }

    crate::conformance_tests!(open);

    /// The same guarantees with a group-commit window.
    mod with_commit_delay {
        use super::*;

        async fn open() -> (tempfile::TempDir, Embedded) {
            let dir = tempfile::tempdir().expect("tempdir");
            let config = EmbeddedConfig {
                commit_delay: std::time::Duration::from_millis(1),
                ..EmbeddedConfig::default()
            };
            let db = Embedded::open(dir.path(), config).expect("open");
            (dir, db)
        }

        crate::conformance_tests!(open);
    }

    async fn direct_id(db: &Embedded, buyer: &str, seller: &str, listing: &str) -> ConversationId {
        let c = db.create_direct(buyer, seller, listing, 1).await;
        c.expect("create").conversation.id
    }

    /// Keys of `c` left in msg, idem and read.
    fn leftovers(db: &Embedded, c: ConversationId) -> usize {
        let prefix = keys::conversation_prefix(c);
        [&db.ks.msg, &db.ks.idem, &db.ks.read]
            .iter()
            .map(|ks| ks.prefix(&prefix).count())
            .sum()
    }

    async fn purged(db: &Embedded, c: ConversationId) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while leftovers(db, c) > 0 || db.ks.purge.iter().next().is_some() {
            assert!(std::time::Instant::now() < deadline, "purged in time");
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }

    async fn reopen(dir: &Path) -> Embedded {
        // The writer and purger threads own the database; they stop soon after the drop.
        loop {
            match Embedded::open(dir, EmbeddedConfig::default()) {
                Ok(db) => break db,
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(20)).await,
            }
        }
    }

    /// A delete commits at once and leaves the messages to the purger, which removes them in
    /// chunks (and finishes after a restart if the node stopped first); other conversations
    /// are untouched.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_deleted_conversations_messages_are_purged_off_the_writer() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (gone, kept);
        {
            let db = Embedded::open(dir.path(), EmbeddedConfig::default()).expect("open");
            gone = direct_id(&db, "b", "s", "l").await;
            kept = direct_id(&db, "b", "s", "m").await;
            let mut appends = tokio::task::JoinSet::new();
            for i in 0..4500 {
                let (db, conversation) = (db.clone(), if i % 1500 == 0 { kept } else { gone });
                appends.spawn(async move {
                    db.append(text(conversation, "b", &i.to_string(), 2))
                        .await
                        .expect("append")
                });
            }
            while appends.join_next().await.is_some() {}
            db.mark_read(
                gone,
                "s",
                db.history(gone, None, 1).await.unwrap().messages[0].id,
                3,
            )
            .await
            .expect("read");
            assert_eq!(
                leftovers(&db, gone),
                2 * 4497 + 2,
                "messages, their keys, 2 watermarks"
            );
            db.delete_conversation(gone, "b").await.expect("delete");
            assert_eq!(db.conversation(gone).await.expect("load"), None);
            assert!(
                db.history(gone, None, 10)
                    .await
                    .expect("h")
                    .messages
                    .is_empty()
            );
            // Closed right away: the purge may or may not have finished.
        }
        let db = reopen(dir.path()).await;
        purged(&db, gone).await;
        assert_eq!(
            db.history(kept, None, 10).await.expect("h").messages.len(),
            3
        );
        let page = db.list_conversations("b", None, 10).await.expect("list");
        assert_eq!(page.items.len(), 1);
        // The triple is free again; a new conversation of it starts empty.
        let again = db.create_direct("b", "s", "l", 4).await.expect("create");
        assert!(again.created);
        assert!(
            db.history(again.conversation.id, None, 10)
                .await
                .unwrap()
                .messages
                .is_empty()
        );
    }

    /// Opening a format 2 directory (no activity, unread or blocked_by index) builds them.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_format_2_directory_gets_its_indexes_built() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (read, unread);
        {
            let db = Embedded::open(dir.path(), EmbeddedConfig::default()).expect("open");
            unread = direct_id(&db, "u", "s1", "l").await;
            read = direct_id(&db, "u", "s2", "l").await;
            for (c, sender, at) in [(unread, "s1", 5), (read, "u", 9)] {
                db.append(text(c, sender, "1", at)).await.expect("append");
            }
            db.set_block("u", "x", true, 3).await.expect("block");
            for ks in [&db.ks.activity, &db.ks.unread, &db.ks.blocked_by] {
                let keys: Vec<_> = ks.iter().map(|g| g.key().expect("key").to_vec()).collect();
                for k in keys {
                    ks.remove(k).expect("remove");
                }
            }
            let empty = db.list_conversations("u", None, 10).await.expect("list");
            assert!(
                empty.items.is_empty(),
                "what format 2 would list from the index"
            );
        }
        std::fs::write(dir.path().join(FORMAT_FILE), FORMAT_2).expect("mark");
        let db = reopen(dir.path()).await;
        let page = db.list_conversations("u", None, 10).await.expect("list");
        let ids: Vec<_> = page.items.iter().map(|i| i.conversation.id).collect();
        assert_eq!(ids, vec![read, unread], "newest activity first");
        assert_eq!(db.unread_counts("u").await.expect("u"), vec![(unread, 1)]);
        assert_eq!(db.block_relations("x").await.expect("b"), vec!["u"]);
        let format = std::fs::read_to_string(dir.path().join(FORMAT_FILE)).expect("read");
        assert_eq!(format, FORMAT);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn survives_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let id;
        {
            let db = Embedded::open(dir.path(), EmbeddedConfig::default()).expect("open");
            let c = db.create_direct("b", "s", "l", 1).await.expect("create");
            id = c.conversation.id;
            db.append(NewMessage {
                conversation: id,
                sender: "b".into(),
                kind: MessageKind::Text,
                content: "kept".into(),
                media: None,
                client_msg_id: "1".into(),
                now_ms: 2,
                visibility: Default::default(),
            })
            .await
            .expect("append");
        }
        let db = reopen(dir.path()).await;
        let page = db.history(id, None, 10).await.expect("history");
        assert_eq!(page.messages.len(), 1);
        assert_eq!(page.messages[0].content, "kept");
    }

    /// The change feed: every append and delete once, in commit order, with cursors that go
    /// on growing across trims and restarts; the newest entry survives any trim.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_change_feed_follows_commits_across_trims_and_restarts() {
        use crate::{Change, ChangeKind};
        let dir = tempfile::tempdir().expect("tempdir");
        let (a, b);
        {
            let db = Embedded::open(dir.path(), EmbeddedConfig::default()).expect("open");
            a = direct_id(&db, "b", "s", "l").await;
            b = direct_id(&db, "b", "s", "m").await;
            assert!(
                db.changes(0, 10).await.expect("feed").is_empty(),
                "creates are not changes"
            );
            let mut appends = tokio::task::JoinSet::new();
            for i in 0..300 {
                let (db, c) = (db.clone(), if i % 3 == 0 { a } else { b });
                appends.spawn(async move {
                    db.append(text(c, "b", &i.to_string(), 2))
                        .await
                        .expect("append")
                });
            }
            while appends.join_next().await.is_some() {}
            // A retry is no change.
            db.append(text(a, "b", "0", 2)).await.expect("retry");
            db.delete_conversation(a, "s").await.expect("delete");
            let feed = db.changes(0, 10_000).await.expect("feed");
            assert_eq!(feed.len(), 301);
            assert!(
                feed.iter()
                    .enumerate()
                    .all(|(i, c)| c.cursor == i as u64 + 1)
            );
            for conv in [a, b] {
                let seqs: Vec<u64> = feed
                    .iter()
                    .filter(|c| c.conversation == conv)
                    .filter_map(|c| match c.kind {
                        ChangeKind::Message { seq } => Some(seq),
                        ChangeKind::Deleted => None,
                    })
                    .collect();
                let want = if conv == a { 100 } else { 200 };
                assert_eq!(
                    seqs,
                    (1..=want).collect::<Vec<_>>(),
                    "each seq once, in order"
                );
            }
            assert_eq!(
                feed.last().copied(),
                Some(Change {
                    cursor: 301,
                    conversation: a,
                    kind: ChangeKind::Deleted
                })
            );
            assert_eq!(db.changes(299, 1).await.expect("page").len(), 1);
            assert_eq!(db.last_change().await.expect("head"), 301);
            let at = db.messages_at(vec![(b, 2), (b, 999)]).await.expect("at");
            assert_eq!(at[0].as_ref().map(|m| m.seq), Some(2));
            assert_eq!(at[1], None);
            assert_eq!(db.changes(u64::MAX, 1).await.expect("past the end"), vec![]);
            db.trim_changes(250).await.expect("trim");
            assert_eq!(db.changes(0, 1).await.expect("feed")[0].cursor, 250);
            db.trim_changes(u64::MAX).await.expect("trim all");
            let left = db.changes(0, 10).await.expect("feed");
            assert_eq!(left.iter().map(|c| c.cursor).collect::<Vec<_>>(), vec![301]);
        }
        let db = reopen(dir.path()).await;
        db.append(text(b, "b", "after restart", 3))
            .await
            .expect("append");
        let feed = db.changes(301, 10).await.expect("feed");
        assert_eq!(
            feed,
            vec![Change {
                cursor: 302,
                conversation: b,
                kind: ChangeKind::Message { seq: 201 }
            }]
        );
        let all = db.conversations_after(None, 10).await.expect("scan");
        assert_eq!(all.iter().map(|c| c.id).collect::<Vec<_>>(), vec![b]);
        assert_eq!(all[0].last_seq, 201);
        assert!(
            db.conversations_after(Some(b), 10)
                .await
                .expect("scan")
                .is_empty()
        );
    }
}
