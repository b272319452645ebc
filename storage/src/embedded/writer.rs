//! The embedded engine's single writer: group commit, id assignment, read-modify-write logic.
//!
//! A batch's requests see each other's effects through `Pending` (an overlay over the committed
//! state), so two appends in one batch get consecutive seqs and an idempotent retry inside the
//! same batch is still a duplicate. The conversation cache holds committed records only: it is
//! updated after a successful commit and left alone when a commit fails.

use std::collections::{HashMap, HashSet};
use std::sync::mpsc::SyncSender;

use fjall::{Database, OwnedWriteBatch, PersistMode};
use tokio::sync::{mpsc, oneshot};

use super::{
    Keyspaces, keys, last_change, load_conversation, load_message, load_report, load_standing,
    seq_at_or_before, unavailable,
};
use crate::ChangeKind;
use crate::error::{Result, StorageError};
use crate::record::{
    decode_read_state, encode_change, encode_conversation, encode_entry, encode_message,
    encode_meta, encode_read_state, encode_report, encode_standing,
};
use parley_types::ids::IdGenerator;
use parley_types::*;

/// Conversations kept in the writer's cache before it is cleared (a bound on memory, not a
/// tuning knob: a miss costs one point read).
const CACHE_LIMIT: usize = 100_000;

/// Commits slower than this are logged: every waiting sender felt it.
const SLOW_COMMIT: std::time::Duration = std::time::Duration::from_millis(50);

type Reply<T> = oneshot::Sender<Result<T>>;

pub(super) enum Op {
    CreateDirect {
        buyer: String,
        seller: String,
        listing: String,
        now_ms: i64,
        reply: Reply<Created>,
    },
    CreateGroup {
        creator: String,
        participants: Vec<String>,
        title: String,
        now_ms: i64,
        reply: Reply<Conversation>,
    },
    Delete {
        id: ConversationId,
        by: String,
        reply: Reply<Conversation>,
    },
    Append {
        message: NewMessage,
        reply: Reply<Appended>,
    },
    MarkRead {
        conversation: ConversationId,
        user: String,
        up_to: MessageId,
        now_ms: i64,
        reply: Reply<ReadOutcome>,
    },
    SetBlock {
        user: String,
        target: String,
        blocked: bool,
        now_ms: i64,
        reply: Reply<()>,
    },
    Report {
        report: NewReport,
        reply: Reply<uuid::Uuid>,
    },
    PutValue {
        key: Vec<u8>,
        value: Option<Vec<u8>>,
        reply: Reply<()>,
    },
    Moderate {
        entry: ModerationEntry,
        reply: Reply<Standing>,
    },
}

/// A reply waiting for its batch's commit.
enum Done {
    Created(Reply<Created>, Result<Created>),
    Conversation(Reply<Conversation>, Result<Conversation>),
    Appended(Reply<Appended>, Result<Appended>),
    Read(Reply<ReadOutcome>, Result<ReadOutcome>),
    Unit(Reply<()>, Result<()>),
    Report(Reply<uuid::Uuid>, Result<uuid::Uuid>),
    Standing(Reply<Standing>, Result<Standing>),
}

impl Done {
    /// Sends the result, or `err` instead of a success when the commit failed. A caller that
    /// went away is not an error.
    fn send(self, err: Option<&StorageError>) {
        fn pick<T>(r: Result<T>, err: Option<&StorageError>) -> Result<T> {
            match (r, err) {
                (Ok(_), Some(e)) => Err(e.clone()),
                (r, _) => r,
            }
        }
        match self {
            Done::Created(tx, r) => drop(tx.send(pick(r, err))),
            Done::Conversation(tx, r) => drop(tx.send(pick(r, err))),
            Done::Appended(tx, r) => drop(tx.send(pick(r, err))),
            Done::Read(tx, r) => drop(tx.send(pick(r, err))),
            Done::Unit(tx, r) => drop(tx.send(pick(r, err))),
            Done::Report(tx, r) => drop(tx.send(pick(r, err))),
            Done::Standing(tx, r) => drop(tx.send(pick(r, err))),
        }
    }
}

/// Uncommitted effects of the current batch.
struct Pending {
    batch: OwnedWriteBatch,
    /// Conversations written in this batch (None: deleted).
    convs: HashMap<ConversationId, Option<Conversation>>,
    /// Of those, the ones created in this batch (their static record is written too).
    created: HashSet<ConversationId>,
    idem: HashMap<Vec<u8>, Message>,
    reads: HashMap<Vec<u8>, ReadState>,
    direct: HashMap<Vec<u8>, ConversationId>,
    blocks: HashMap<Vec<u8>, bool>,
    /// Messages appended in this batch, per conversation, ascending.
    appended: HashMap<ConversationId, Vec<(MessageId, u64)>>,
    /// The committed last activity of each conversation in `convs` (None: created in this
    /// batch), to move its `activity` keys once at commit.
    activity_before: HashMap<ConversationId, Option<i64>>,
    /// `unread` keys to set (true) or remove (false).
    unread: HashMap<Vec<u8>, bool>,
    /// Reports and standings written in this batch.
    reports: HashMap<uuid::Uuid, Report>,
    standings: HashMap<String, Standing>,
    /// Change-feed entries of this batch, in apply order (cursors given at commit).
    changes: Vec<(ConversationId, ChangeKind)>,
    done: Vec<Done>,
}

impl Pending {
    fn new(db: &Database, capacity: usize) -> Self {
        Self {
            batch: OwnedWriteBatch::with_capacity(db.clone(), capacity)
                .durability(Some(PersistMode::SyncData)),
            convs: HashMap::new(),
            created: HashSet::new(),
            idem: HashMap::new(),
            reads: HashMap::new(),
            direct: HashMap::new(),
            blocks: HashMap::new(),
            appended: HashMap::new(),
            activity_before: HashMap::new(),
            unread: HashMap::new(),
            reports: HashMap::new(),
            standings: HashMap::new(),
            changes: Vec::new(),
            done: Vec::new(),
        }
    }
}

pub(super) struct Writer {
    db: Database,
    /// Wakes the purger after a delete committed (see `purge`).
    purge_kick: SyncSender<()>,
    ks: Keyspaces,
    ids: IdGenerator,
    max_batch: usize,
    commit_delay: std::time::Duration,
    cache: HashMap<ConversationId, Conversation>,
    /// Every block key (blocker | blocked), committed. Blocks are few and checked on every
    /// direct append; the writer is their only mutator, so memory is exact and saves two
    /// point reads per message.
    blocks: HashSet<Vec<u8>>,
    /// The cursor of the newest change-feed entry committed (0: none yet).
    last_change: u64,
}

impl Writer {
    pub fn new(
        db: Database,
        purge_kick: SyncSender<()>,
        ks: Keyspaces,
        node_id: u16,
        max_batch: usize,
        commit_delay: std::time::Duration,
    ) -> Result<Self> {
        let mut blocks = HashSet::new();
        for guard in ks.block.iter() {
            blocks.insert(guard.key().map_err(unavailable)?.to_vec());
        }
        let last_change = last_change(&ks)?;
        Ok(Self {
            db,
            purge_kick,
            ks,
            ids: IdGenerator::new(node_id),
            max_batch,
            commit_delay,
            cache: HashMap::new(),
            blocks,
            last_change,
        })
    }

    /// Runs until every sender is gone: take what is queued (up to `max_batch`), apply it,
    /// commit once, reply to all.
    pub fn run(mut self, mut rx: mpsc::Receiver<Op>) {
        let mut ops = Vec::with_capacity(self.max_batch);
        let mut last = 0usize;
        while let Some(first) = rx.blocking_recv() {
            ops.push(first);
            // Under concurrent load (the last batch had company), wait a moment for more
            // requests so one fsync covers them: fewer fsyncs and wake-ups per message, for
            // up to `commit_delay` more latency. An idle writer commits at once.
            if last > 1 && !self.commit_delay.is_zero() {
                std::thread::sleep(self.commit_delay);
            }
            while ops.len() < self.max_batch {
                match rx.try_recv() {
                    Ok(op) => ops.push(op),
                    Err(_) => break,
                }
            }
            last = ops.len();
            // A bug in one request must not take the writer (and every later write) with it:
            // its batch is dropped — its callers get an error — and the writer goes on.
            let batch = std::panic::AssertUnwindSafe(|| self.apply_batch(&mut ops));
            if std::panic::catch_unwind(batch).is_err() {
                tracing::error!("storage: a write panicked; its batch was dropped");
                ops.clear();
                self.reload_after_panic();
            }
        }
        if let Err(e) = self.db.persist(PersistMode::SyncAll) {
            tracing::error!(error = %e, "storage: final persist failed");
        }
    }

    /// Applies `ops` (emptying it) and commits them in as few batches as it can.
    fn apply_batch(&mut self, ops: &mut Vec<Op>) {
        let mut pending = Pending::new(&self.db, ops.len());
        for op in ops.drain(..) {
            if matches!(op, Op::Delete { .. }) {
                // A delete removes a whole conversation: commit what came before it and give
                // it a batch of its own, so no batch both writes and deletes a key. Its
                // messages are left to the purger.
                self.commit(std::mem::replace(&mut pending, Pending::new(&self.db, 1)));
                self.apply(&mut pending, op);
                self.commit(std::mem::replace(&mut pending, Pending::new(&self.db, 1)));
                // Full: a kick is already waiting, which is enough.
                let _ = self.purge_kick.try_send(());
            } else {
                self.apply(&mut pending, op);
            }
        }
        self.commit(pending);
    }

    /// After a panic the in-memory state may not match what was committed: read it again.
    fn reload_after_panic(&mut self) {
        self.cache.clear();
        let mut blocks = HashSet::new();
        for guard in self.ks.block.iter() {
            match guard.key() {
                Ok(key) => {
                    blocks.insert(key.to_vec());
                }
                Err(e) => tracing::error!(error = %e, "storage: reloading blocks failed"),
            }
        }
        self.blocks = blocks;
        match last_change(&self.ks) {
            Ok(last) => self.last_change = last,
            Err(e) => tracing::error!(error = %e, "storage: reloading the change feed failed"),
        }
    }

    fn commit(&mut self, mut p: Pending) {
        if p.done.is_empty() {
            return;
        }
        for (id, conv) in &p.convs {
            let key = keys::conversation(*id);
            match conv {
                Some(c) => {
                    if p.created.contains(id) {
                        p.batch
                            .insert(&self.ks.conv, key.clone(), encode_conversation(c));
                    }
                    p.batch.insert(&self.ks.meta, key, encode_meta(c));
                    let before = p.activity_before.get(id).copied().flatten();
                    if before != Some(c.last_activity_ms) {
                        for user in &c.participants {
                            if let Some(before) = before {
                                p.batch
                                    .remove(&self.ks.activity, keys::activity(user, before, *id));
                            }
                            let now = keys::activity(user, c.last_activity_ms, *id);
                            p.batch.insert(&self.ks.activity, now, Vec::new());
                        }
                    }
                }
                None => {
                    p.batch.remove(&self.ks.conv, key.clone());
                    p.batch.remove(&self.ks.meta, key);
                }
            }
        }
        let mut cursor = self.last_change;
        for (conv, kind) in p.changes.drain(..) {
            cursor += 1;
            p.batch.insert(
                &self.ks.changes,
                keys::change(cursor),
                encode_change(conv, kind),
            );
        }
        for (key, unread) in p.unread.drain() {
            if unread {
                p.batch.insert(&self.ks.unread, key, Vec::new());
            } else {
                p.batch.remove(&self.ks.unread, key);
            }
        }
        let started = std::time::Instant::now();
        let ops = p.done.len();
        let result = if p.batch.is_empty() {
            Ok(())
        } else {
            p.batch.commit().map_err(unavailable)
        };
        let took = started.elapsed();
        if took > SLOW_COMMIT {
            tracing::warn!(?took, ops, "storage: slow commit (fsync)");
        }
        match &result {
            Ok(()) => {
                self.last_change = cursor;
                for (key, blocked) in p.blocks {
                    if blocked {
                        self.blocks.insert(key);
                    } else {
                        self.blocks.remove(&key);
                    }
                }
                if self.cache.len() > CACHE_LIMIT {
                    self.cache.clear();
                }
                for (id, conv) in p.convs {
                    match conv {
                        Some(c) => self.cache.insert(id, c),
                        None => self.cache.remove(&id),
                    };
                }
            }
            Err(e) => tracing::error!(error = %e, ops = p.done.len(), "storage: commit failed"),
        }
        let err = result.err();
        for done in p.done {
            done.send(err.as_ref());
        }
    }

    fn apply(&mut self, p: &mut Pending, op: Op) {
        match op {
            Op::CreateDirect {
                buyer,
                seller,
                listing,
                now_ms,
                reply,
            } => {
                let r = self.create_direct(p, &buyer, &seller, &listing, now_ms);
                p.done.push(Done::Created(reply, r));
            }
            Op::CreateGroup {
                creator,
                participants,
                title,
                now_ms,
                reply,
            } => {
                let r = self.create_group(p, &creator, &participants, &title, now_ms);
                p.done.push(Done::Conversation(reply, r));
            }
            Op::Append { message, reply } => {
                let r = self.append(p, message);
                p.done.push(Done::Appended(reply, r));
            }
            Op::MarkRead {
                conversation,
                user,
                up_to,
                now_ms,
                reply,
            } => {
                let r = self.mark_read(p, conversation, &user, up_to, now_ms);
                p.done.push(Done::Read(reply, r));
            }
            Op::SetBlock {
                user,
                target,
                blocked,
                now_ms,
                reply,
            } => {
                let key = keys::block(&user, &target);
                let by = keys::blocked_by(&target, &user);
                if blocked {
                    let at = now_ms.to_be_bytes().to_vec();
                    p.batch.insert(&self.ks.block, key.clone(), at.clone());
                    p.batch.insert(&self.ks.blocked_by, by, at);
                } else {
                    p.batch.remove(&self.ks.block, key.clone());
                    p.batch.remove(&self.ks.blocked_by, by);
                }
                p.blocks.insert(key, blocked);
                p.done.push(Done::Unit(reply, Ok(())));
            }
            Op::PutValue { key, value, reply } => {
                match value {
                    Some(v) => p.batch.insert(&self.ks.values, key, v),
                    None => p.batch.remove(&self.ks.values, key),
                }
                p.done.push(Done::Unit(reply, Ok(())));
            }
            Op::Report { report, reply } => {
                let id = time_ordered_id(report.now_ms);
                let report = report.into_report(id);
                self.put_report(p, &report, true);
                p.reports.insert(id, report);
                p.done.push(Done::Report(reply, Ok(id)));
            }
            Op::Moderate { entry, reply } => {
                let r = self.moderate(p, entry);
                p.done.push(Done::Standing(reply, r));
            }
            Op::Delete { id, by, reply } => {
                let r = self.delete(p, id, &by);
                p.done.push(Done::Conversation(reply, r));
            }
        }
    }

    /// The conversation as this batch sees it.
    /// Writes a report and its queue keys (`new`: all, open and against its user; a resolved
    /// one leaves the open queue).
    fn put_report(&self, p: &mut Pending, report: &Report, new: bool) {
        let q = &self.ks.report_queue;
        p.batch.insert(
            &self.ks.report,
            report.id.as_bytes().to_vec(),
            encode_report(report),
        );
        if new {
            p.batch.insert(
                q,
                keys::report_queue(keys::Queue::All, &report.id),
                Vec::new(),
            );
            p.batch.insert(
                q,
                keys::report_queue(keys::Queue::Open, &report.id),
                Vec::new(),
            );
            let against = keys::Queue::Against(&report.reported_user);
            p.batch
                .insert(q, keys::report_queue(against, &report.id), Vec::new());
        }
        if report.resolution.is_some() {
            p.batch
                .remove(q, keys::report_queue(keys::Queue::Open, &report.id));
        }
    }

    /// A moderator's action: the report's resolution (checked first: nothing is written when
    /// it fails), the target's standing, the log entry.
    fn moderate(&mut self, p: &mut Pending, e: ModerationEntry) -> Result<Standing> {
        if let Some(id) = e.report {
            let mut report = match p.reports.get(&id) {
                Some(r) => r.clone(),
                None => load_report(&self.ks, id)?.ok_or(StorageError::NotFound)?,
            };
            crate::rules::resolve(&mut report, &e)?;
            self.put_report(p, &report, false);
            p.reports.insert(id, report);
        }
        let before = match p.standings.get(&e.target) {
            Some(s) => s.clone(),
            None => load_standing(&self.ks, &e.target)?,
        };
        let after = before.after(e.action, e.at_ms);
        if after != before {
            p.batch.insert(
                &self.ks.standing,
                keys::standing(&e.target),
                encode_standing(&after),
            );
            p.standings.insert(e.target.clone(), after.clone());
        }
        p.batch.insert(
            &self.ks.moderation,
            e.id.as_bytes().to_vec(),
            encode_entry(&e),
        );
        p.batch.insert(
            &self.ks.moderation_by_target,
            keys::moderation_by_target(&e.target, &e.id),
            Vec::new(),
        );
        Ok(after)
    }

    fn conversation(&mut self, p: &Pending, id: ConversationId) -> Result<Option<Conversation>> {
        if let Some(c) = p.convs.get(&id) {
            return Ok(c.clone());
        }
        if let Some(c) = self.cache.get(&id) {
            return Ok(Some(c.clone()));
        }
        let loaded = load_conversation(&self.ks, id)?;
        if let Some(c) = &loaded {
            self.cache.insert(id, c.clone());
        }
        Ok(loaded)
    }

    fn blocked(&self, p: &Pending, a: &str, b: &str) -> bool {
        [keys::block(a, b), keys::block(b, a)]
            .into_iter()
            .any(|key| match p.blocks.get(&key) {
                Some(blocked) => *blocked,
                None => self.blocks.contains(&key),
            })
    }

    fn read_state(&self, p: &Pending, key: &[u8]) -> Result<Option<ReadState>> {
        if let Some(s) = p.reads.get(key) {
            return Ok(Some(s.clone()));
        }
        match self.ks.read.get(key).map_err(unavailable)? {
            Some(v) => decode_read_state(&v).map(Some),
            None => Ok(None),
        }
    }

    fn put_read_state(&self, p: &mut Pending, key: Vec<u8>, state: ReadState) {
        p.batch
            .insert(&self.ks.read, key.clone(), encode_read_state(&state));
        p.reads.insert(key, state);
    }

    fn insert_conversation(&self, p: &mut Pending, c: Conversation) {
        for user in &c.participants {
            p.batch
                .insert(&self.ks.member, keys::member(user, c.id), Vec::new());
        }
        p.created.insert(c.id);
        p.activity_before.insert(c.id, None);
        p.convs.insert(c.id, Some(c));
    }

    fn create_direct(
        &mut self,
        p: &mut Pending,
        buyer: &str,
        seller: &str,
        listing: &str,
        now_ms: i64,
    ) -> Result<Created> {
        crate::rules::direct_ids(buyer, seller, listing)?;
        let key = keys::direct(buyer, seller, listing);
        let existing = match p.direct.get(&key) {
            Some(id) => Some(*id),
            None => self
                .ks
                .direct
                .get(&key)
                .map_err(unavailable)?
                .and_then(|v| <[u8; 16]>::try_from(&v[..]).ok())
                .map(ConversationId::from_bytes),
        };
        if let Some(id) = existing
            && let Some(conversation) = self.conversation(p, id)?
        {
            return Ok(Created {
                conversation,
                created: false,
            });
        }
        if self.blocked(p, buyer, seller) {
            return Err(StorageError::Blocked);
        }
        let c = Conversation::new_direct(ConversationId::random(), buyer, seller, listing, now_ms);
        p.batch
            .insert(&self.ks.direct, key.clone(), c.id.as_bytes().to_vec());
        p.direct.insert(key, c.id);
        self.insert_conversation(p, c.clone());
        Ok(Created {
            conversation: c,
            created: true,
        })
    }

    fn create_group(
        &mut self,
        p: &mut Pending,
        creator: &str,
        participants: &[String],
        title: &str,
        now_ms: i64,
    ) -> Result<Conversation> {
        let all = crate::rules::group_members(creator, participants)?;
        if all
            .iter()
            .any(|u| u != creator && self.blocked(p, creator, u))
        {
            return Err(StorageError::Blocked);
        }
        let kind = ConversationKind::Group {
            title: title.to_owned(),
            creator: creator.to_owned(),
        };
        let c = Conversation::new(ConversationId::random(), kind, all, now_ms);
        self.insert_conversation(p, c.clone());
        Ok(c)
    }

    fn delete(&mut self, p: &mut Pending, id: ConversationId, by: &str) -> Result<Conversation> {
        let c = self.conversation(p, id)?.ok_or(StorageError::NotFound)?;
        if !c.may_delete(by) {
            return Err(StorageError::Forbidden(
                "only its owners may delete a conversation",
            ));
        }
        if let ConversationKind::Direct {
            buyer,
            seller,
            listing,
        } = &c.kind
        {
            p.batch
                .remove(&self.ks.direct, keys::direct(buyer, seller, listing));
        }
        for user in &c.participants {
            p.batch.remove(&self.ks.member, keys::member(user, id));
            p.batch.remove(
                &self.ks.activity,
                keys::activity(user, c.last_activity_ms, id),
            );
            p.batch.remove(&self.ks.unread, keys::unread(user, id));
        }
        // Messages, idempotency keys and watermarks: unreachable once the record is gone,
        // removed by the purger in small batches.
        p.batch
            .insert(&self.ks.purge, keys::conversation(id), Vec::<u8>::new());
        p.changes.push((id, ChangeKind::Deleted));
        p.convs.insert(id, None);
        Ok(c)
    }

    fn append(&mut self, p: &mut Pending, m: NewMessage) -> Result<Appended> {
        let mut c = self
            .conversation(p, m.conversation)?
            .ok_or(StorageError::NotFound)?;
        if !c.has_participant(&m.sender) {
            return Err(StorageError::Forbidden("not a participant"));
        }
        let idem_key = keys::idempotency(m.conversation, &m.sender, &m.client_msg_id);
        if let Some(message) = self.find_idempotent(p, &idem_key, &m)? {
            return Ok(Appended {
                message,
                duplicate: true,
            });
        }
        if let ConversationKind::Direct { buyer, seller, .. } = &c.kind
            && self.blocked(p, buyer, seller)
        {
            return Err(StorageError::Blocked);
        }
        let id = self
            .ids
            .next_after(m.now_ms, c.last_message_id.unwrap_or_default());
        let seq = c.last_seq + 1;
        let now_ms = m.now_ms;
        let message = m.into_message(id, seq, now_ms);
        p.batch.insert(
            &self.ks.msg,
            keys::message(message.conversation, seq),
            encode_message(&message),
        );
        p.batch
            .insert(&self.ks.idem, idem_key.clone(), seq.to_be_bytes().to_vec());
        p.idem.insert(idem_key, message.clone());
        p.appended.entry(c.id).or_default().push((id, seq));
        p.changes.push((c.id, ChangeKind::Message { seq }));
        // Sending reads the conversation up to one's own message.
        let state = ReadState {
            up_to: id,
            seq,
            read_at_ms: now_ms,
        };
        self.put_read_state(p, keys::read_state(c.id, &message.sender), state);
        c.last_seq = seq;
        c.last_message_id = Some(id);
        p.activity_before
            .entry(c.id)
            .or_insert(Some(c.last_activity_ms));
        c.last_activity_ms = c.last_activity_ms.max(now_ms);
        for user in &c.participants {
            let unread = *user != message.sender;
            p.unread.insert(keys::unread(user, c.id), unread);
        }
        p.convs.insert(c.id, Some(c));
        Ok(Appended {
            message,
            duplicate: false,
        })
    }

    fn find_idempotent(&self, p: &Pending, key: &[u8], m: &NewMessage) -> Result<Option<Message>> {
        if let Some(found) = p.idem.get(key)
            && found.sender == m.sender
            && found.client_msg_id == m.client_msg_id
        {
            return Ok(Some(found.clone()));
        }
        let Some(v) = self.ks.idem.get(key).map_err(unavailable)? else {
            return Ok(None);
        };
        let seq = <[u8; 8]>::try_from(&v[..])
            .map(u64::from_be_bytes)
            .map_err(|_| StorageError::Corrupt("idempotency record".into()))?;
        let Some(stored) = load_message(&self.ks, m.conversation, seq)? else {
            return Err(StorageError::Corrupt(
                "idempotency key without message".into(),
            ));
        };
        // The key is a hash: confirm it is this sender's key, not a collision.
        Ok(
            (stored.sender == m.sender && stored.client_msg_id == m.client_msg_id)
                .then_some(stored),
        )
    }

    fn mark_read(
        &mut self,
        p: &mut Pending,
        conv: ConversationId,
        user: &str,
        up_to: MessageId,
        now_ms: i64,
    ) -> Result<ReadOutcome> {
        let c = self.conversation(p, conv)?.ok_or(StorageError::NotFound)?;
        if !c.has_participant(user) {
            return Err(StorageError::Forbidden("not a participant"));
        }
        let key = keys::read_state(conv, user);
        let current = self.read_state(p, &key)?.unwrap_or_default();
        // The id must name a message of this conversation: an id from elsewhere (or between
        // two messages) is refused, it does not read "up to about there".
        let target = match self.newest_at_or_before(p, &c, up_to)? {
            Some((id, seq)) if id == up_to => (id, seq),
            _ => {
                return Err(StorageError::Invalid(
                    "no such message in this conversation",
                ));
            }
        };
        match target {
            (id, seq) if seq > current.seq => {
                if seq == c.last_seq {
                    p.unread.insert(keys::unread(user, conv), false);
                }
                let state = ReadState {
                    up_to: id,
                    seq,
                    read_at_ms: now_ms,
                };
                self.put_read_state(p, key, state.clone());
                Ok(ReadOutcome {
                    state,
                    advanced: true,
                })
            }
            _ => Ok(ReadOutcome {
                state: current,
                advanced: false,
            }),
        }
    }

    /// (id, seq) of the newest message of `c` with id ≤ `up_to`.
    fn newest_at_or_before(
        &self,
        p: &Pending,
        c: &Conversation,
        up_to: MessageId,
    ) -> Result<Option<(MessageId, u64)>> {
        if let Some(last) = c.last_message_id
            && last <= up_to
        {
            return Ok(Some((last, c.last_seq)));
        }
        // Appended in this batch and not yet visible in fjall.
        let batch = p.appended.get(&c.id).map_or(&[][..], Vec::as_slice);
        if let Some(found) = batch.iter().rev().find(|(id, _)| *id <= up_to) {
            return Ok(Some(*found));
        }
        let committed = c.last_seq - batch.len() as u64;
        let seq = seq_at_or_before(&self.ks, c.id, committed, up_to)?;
        Ok(match seq {
            0 => None,
            seq => load_message(&self.ks, c.id, seq)?.map(|m| (m.id, m.seq)),
        })
    }
}
