//! Who gets a push, and when: follows storage's change feed (a message is in it once it is
//! committed, in the same write), so a push is never lost to a crash between storing and
//! queueing, and the send path does no more work for it.
//!
//! For each message, each other participant with a registered device gets an intent per
//! (user, conversation): one pending notification, updated by later messages (coalesced),
//! due `grace` after the first. When it is due the dispatcher checks again — a live session
//! on this node (the user came back: nothing), the conversation muted, the read watermark at
//! or past the message (read on another device: nothing) — then sends to each device, with
//! the badge (the user's unread total). Retries (429, 5xx, network) back off exponentially,
//! after `Retry-After` when given, only to the devices that need it, until `max_age`; then the
//! intent is dropped, counted.
//!
//! Durability: the feed cursor below every intent not yet done is stored (`\0push` /
//! `cursor`, with the furthest cursor read), and the feed is kept from there (the search
//! indexer trims only below it). After a restart the dispatcher reads the feed again from
//! that cursor; an entry it had read before is checked against the user's `pushed/<conv>`
//! record, written when a push finished, so a push already sent is not sent again. The one
//! window left: a crash after the service accepted a push and before that record was
//! written sends it again — with the same collapse key (`Topic`, `collapse_key`), so the
//! device replaces the notification rather than showing two.
//!
//! A cluster has no change feed: the dispatcher takes committed messages from the push
//! [`Queue`] instead (the bus's streams through a Redis consumer group: each message reaches
//! one node). An entry is acknowledged once no intent stands for it any more; one handed out
//! before (this node restarted, or took over a dead node's part) is checked against
//! `pushed/<conv>` as after a restart here.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::mem;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use parley_storage::{ChangeKind, Storage, StorageError};
use parley_types::{ConversationId, ConversationKind, Message, MessageId, Visibility};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::{EntryId, Finished, Push, Queue};

/// Feed entries read per call.
const PAGE: usize = 512;
/// How often an idle dispatcher looks at the feed.
const POLL: Duration = Duration::from_millis(50);
/// Pushes being sent at once.
const IN_FLIGHT: usize = 64;
/// Intents held at once; past it the dispatcher stops reading the feed until some are done
/// (the feed keeps the rest: nothing is lost, only later).
const MAX_PENDING: usize = 100_000;
/// Conversations whose participants are cached (then all are forgotten).
const CONVERSATIONS_CACHED: usize = 50_000;
/// Users whose "has a device" answer is cached.
pub(super) const USERS_CACHED: usize = 200_000;
/// The first retry's wait, doubled each time.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// How often the cursor is stored while it moves.
const SAVE_EVERY: Duration = Duration::from_millis(200);
/// The dispatcher's own records.
pub(super) const OWNER: &str = "\0push";
const CURSOR_KEY: &str = "cursor";

type Key = (Arc<str>, ConversationId);

/// One pending notification.
#[derive(Clone, Debug)]
pub(super) struct Intent {
    /// The feed cursor of the first message it stands for: the feed is kept from here.
    pub(super) first_cursor: u64,
    pub(super) due: Instant,
    /// When its first message was read (for `max_age`).
    pub(super) born: Instant,
    pub(super) seq: u64,
    pub(super) message_id: MessageId,
    pub(super) sender: String,
    pub(super) text: String,
    pub(super) count: u32,
    pub(super) attempts: u32,
    /// After a partial failure: only these devices still need it.
    pub(super) devices_left: Option<Vec<String>>,
    /// The queue entries it stands for (a cluster; empty on one node).
    pub(super) entries: Vec<u64>,
}

/// Where the dispatcher stands (stored as two big-endian u64).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Cursor {
    /// Every feed entry up to here is done with.
    pub(super) safe: u64,
    /// The furthest entry ever read: entries up to here may have been pushed already.
    pub(super) read: u64,
}

impl Cursor {
    fn encode(self) -> Vec<u8> {
        let mut v = self.safe.to_be_bytes().to_vec();
        v.extend_from_slice(&self.read.to_be_bytes());
        v
    }

    fn decode(v: &[u8]) -> Option<Self> {
        Some(Self {
            safe: u64::from_be_bytes(v.get(..8)?.try_into().ok()?),
            read: u64::from_be_bytes(v.get(8..16)?.try_into().ok()?),
        })
    }
}

/// The cursor below which push needs nothing, when push ever ran on this data.
pub(crate) async fn stored_cursor(storage: &dyn Storage) -> Result<Option<u64>, StorageError> {
    Ok(storage
        .value(OWNER, CURSOR_KEY)
        .await?
        .as_deref()
        .and_then(Cursor::decode)
        .map(|c| c.safe))
}

/// The stored cursor; on a first start, the feed's head (history is not pushed), stored.
pub(crate) async fn load_cursor(storage: &dyn Storage) -> Result<u64, StorageError> {
    if let Some(safe) = stored_cursor(storage).await? {
        return Ok(safe);
    }
    let head = storage.last_change().await?;
    let c = Cursor {
        safe: head,
        read: head,
    };
    storage
        .put_value(OWNER, CURSOR_KEY, Some(c.encode()))
        .await?;
    Ok(head)
}

/// The per-conversation record of the last seq pushed to a user.
pub(super) fn pushed_key(conversation: ConversationId) -> String {
    format!("pushed/{conversation}")
}

/// The dispatcher's state; one task owns it.
struct State {
    push: Arc<Push>,
    /// Feed entries after this are not read yet.
    cursor: u64,
    /// Entries up to here were read before a restart (see the module's doc).
    replay_until: u64,
    pending: HashMap<Key, Intent>,
    due: BinaryHeap<Reverse<(Instant, Key)>>,
    /// Being sent: the first cursor each holds, and its queue entries.
    in_flight: HashMap<Key, (u64, Vec<u64>)>,
    /// A cluster's queue entries not acknowledged yet, by local number: the entry and how
    /// many intents stand for it.
    held: HashMap<u64, (EntryId, u32)>,
    next_entry: u64,
    /// Entries no intent stands for any more, to acknowledge.
    to_ack: Vec<EntryId>,
    /// Taken from the queue, not yet read into intents (by local number).
    backlog: VecDeque<(u64, super::Taken)>,
    participants: HashMap<ConversationId, Option<Arc<ParticipantsOf>>>,
    saved: Cursor,
    last_save: Instant,
}

struct ParticipantsOf {
    group: bool,
    ids: Vec<String>,
}

/// Runs the dispatcher until the process ends.
pub(crate) async fn run(push: Arc<Push>) {
    let stored = loop {
        match push.storage.value(OWNER, CURSOR_KEY).await {
            Ok(v) => break v.as_deref().and_then(Cursor::decode).unwrap_or_default(),
            Err(e) => {
                tracing::warn!(error = %e, "push: reading the cursor failed; retrying");
                tokio::time::sleep(FIRST_BACKOFF).await;
            }
        }
    };
    // Each push in flight sends once: never more than `IN_FLIGHT` waiting.
    let (done_tx, mut done_rx) = mpsc::channel(IN_FLIGHT);
    let mut s = State::new(push, stored);
    loop {
        let mut read = 0;
        if s.pending.len() < MAX_PENDING {
            let read_some = match s.push.queue.clone() {
                Some(queue) => s.read_queue(&*queue).await,
                None => s.read_feed().await,
            };
            match read_some {
                Ok(n) => read = n,
                Err(e) => {
                    tracing::warn!(error = %e, "push: reading committed messages failed");
                    tokio::time::sleep(FIRST_BACKOFF).await;
                }
            }
        }
        s.fire(&done_tx);
        s.save().await;
        s.publish_gauges();
        if read == PAGE {
            // More waiting: read on, but take finished pushes in between.
            while let Ok((key, finished)) = done_rx.try_recv() {
                s.finish(key, finished);
            }
            continue;
        }
        let wake = s
            .due
            .peek()
            .map_or(POLL, |Reverse((at, _))| {
                at.saturating_duration_since(Instant::now())
            })
            .min(POLL);
        tokio::select! {
            () = tokio::time::sleep(wake) => {}
            Some((key, finished)) = done_rx.recv() => s.finish(key, finished),
        }
        while let Ok((key, finished)) = done_rx.try_recv() {
            s.finish(key, finished);
        }
    }
}

impl State {
    fn new(push: Arc<Push>, stored: Cursor) -> Self {
        Self {
            push,
            cursor: stored.safe,
            replay_until: stored.read,
            pending: HashMap::new(),
            due: BinaryHeap::new(),
            in_flight: HashMap::new(),
            held: HashMap::new(),
            next_entry: 0,
            to_ack: Vec::new(),
            backlog: VecDeque::new(),
            participants: HashMap::new(),
            saved: stored,
            last_save: Instant::now(),
        }
    }

    /// Reads one page of the feed into intents; the entries read.
    async fn read_feed(&mut self) -> Result<usize, StorageError> {
        let storage = self.push.storage.clone();
        let changes = storage.changes(self.cursor, PAGE).await?;
        let n = changes.len();
        let at: Vec<(ConversationId, u64)> = changes
            .iter()
            .filter_map(|c| match c.kind {
                ChangeKind::Message { seq } => Some((c.conversation, seq)),
                ChangeKind::Deleted => None,
            })
            .collect();
        let mut messages = storage.messages_at(at).await?.into_iter();
        for change in &changes {
            match change.kind {
                ChangeKind::Deleted => {
                    self.participants.insert(change.conversation, None);
                    let gone: Vec<Intent> = self
                        .pending
                        .extract_if(|(_, c), _| *c == change.conversation)
                        .map(|(_, intent)| intent)
                        .collect();
                    for intent in gone {
                        self.release(&intent.entries);
                    }
                }
                ChangeKind::Message { .. } => {
                    if let Some(Some(m)) = messages.next() {
                        let replay = change.cursor <= self.replay_until;
                        if let Err(e) = self.message(change.cursor, m, replay).await {
                            // Read again after the error: some of its pushes may be sent.
                            self.replay_until = self.replay_until.max(change.cursor);
                            return Err(e);
                        }
                    }
                }
            }
            self.cursor = change.cursor;
        }
        Ok(n)
    }

    /// Takes one batch from a cluster's queue into intents; the entries taken. A batch
    /// that fails part-way (storage unreachable) stays in `backlog` and is read again before
    /// anything new is taken, its failed entry as a replay (some of its pushes may be sent).
    async fn read_queue(&mut self, queue: &dyn Queue) -> Result<usize, StorageError> {
        if self.backlog.is_empty() {
            for t in queue.take(PAGE).await.map_err(StorageError::Unavailable)? {
                let local = self.next_entry;
                self.next_entry += 1;
                self.held.insert(local, (t.id.clone(), 0));
                self.backlog.push_back((local, t));
            }
        }
        let n = self.backlog.len();
        let at: Vec<(ConversationId, u64)> =
            self.backlog.iter().filter_map(|(_, t)| t.at).collect();
        let storage = self.push.storage.clone();
        let mut messages = storage.messages_at(at).await?.into_iter();
        while let Some(&(local, ref t)) = self.backlog.front() {
            let (named, replay) = (t.at.is_some(), t.replay);
            if named
                && let Some(Some(m)) = messages.next()
                && let Err(e) = self.message(local, m, replay).await
            {
                if let Some((_, t)) = self.backlog.front_mut() {
                    t.replay = true;
                }
                return Err(e);
            }
            self.backlog.pop_front();
            if self.held.get(&local).is_some_and(|(_, refs)| *refs == 0)
                && let Some((id, _)) = self.held.remove(&local)
            {
                self.to_ack.push(id);
            }
        }
        Ok(n)
    }

    /// The intents that stood for these entries are done with them.
    fn release(&mut self, entries: &[u64]) {
        for e in entries {
            let Some((_, refs)) = self.held.get_mut(e) else {
                continue;
            };
            *refs = refs.saturating_sub(1);
            if *refs == 0
                && let Some((id, _)) = self.held.remove(e)
            {
                self.to_ack.push(id);
            }
        }
    }

    /// The intents one message makes. `cursor` is its feed cursor (one node) or its local
    /// entry number (a cluster); `replay`: it may have been pushed already.
    async fn message(&mut self, cursor: u64, m: Message, replay: bool) -> Result<(), StorageError> {
        if m.visibility != Visibility::Everyone {
            // Shadowed: nobody but its sender sees it, so nobody is told.
            return Ok(());
        }
        let Some(conv) = self.participants_of(m.conversation).await? else {
            return Ok(());
        };
        let push = self.push.clone();
        let now = Instant::now();
        for user in conv.ids.iter().filter(|p| **p != m.sender) {
            if !push.has_devices(user).await? {
                continue;
            }
            if replay
                && push
                    .pushed(user, m.conversation)
                    .await?
                    .is_some_and(|p| p >= m.seq)
            {
                continue;
            }
            if conv.group && push.storage.is_blocked_between(&m.sender, user).await? {
                // A group message from someone blocked either way is not delivered to them.
                continue;
            }
            let key: Key = (Arc::from(user.as_str()), m.conversation);
            if self
                .pending
                .get(&key)
                .is_some_and(|intent| intent.message_id == m.id)
            {
                // Read again after a failure part-way through this message: counted already.
                continue;
            }
            push.stats.messages.fetch_add(1, Relaxed);
            let entry = push.queue.is_some().then_some(cursor);
            if let Some(e) = entry
                && let Some((_, refs)) = self.held.get_mut(&e)
            {
                *refs += 1;
            }
            match self.pending.get_mut(&key) {
                Some(intent) => {
                    push.stats.coalesced.fetch_add(1, Relaxed);
                    intent.seq = m.seq;
                    intent.message_id = m.id;
                    intent.sender.clone_from(&m.sender);
                    intent.text.clone_from(&m.content);
                    intent.count = intent.count.saturating_add(1);
                    intent.entries.extend(entry);
                }
                None => {
                    let due = now + push.config.grace;
                    self.due.push(Reverse((due, key.clone())));
                    self.pending.insert(
                        key,
                        Intent {
                            first_cursor: cursor,
                            due,
                            born: now,
                            seq: m.seq,
                            message_id: m.id,
                            sender: m.sender.clone(),
                            text: m.content.clone(),
                            count: 1,
                            attempts: 0,
                            devices_left: None,
                            entries: entry.into_iter().collect(),
                        },
                    );
                }
            }
        }
        Ok(())
    }

    async fn participants_of(
        &mut self,
        id: ConversationId,
    ) -> Result<Option<Arc<ParticipantsOf>>, StorageError> {
        if let Some(p) = self.participants.get(&id) {
            return Ok(p.clone());
        }
        if self.participants.len() >= CONVERSATIONS_CACHED {
            self.participants.clear();
        }
        let found = self.push.storage.conversation(id).await?.map(|c| {
            Arc::new(ParticipantsOf {
                group: matches!(c.kind, ConversationKind::Group { .. }),
                ids: c.participants,
            })
        });
        self.participants.insert(id, found.clone());
        Ok(found)
    }

    /// Starts the intents that are due, as many as may be in flight.
    fn fire(&mut self, done: &mpsc::Sender<(Key, Finished)>) {
        let now = Instant::now();
        while self.in_flight.len() < IN_FLIGHT {
            let Some(Reverse((at, _))) = self.due.peek() else {
                break;
            };
            if *at > now {
                break;
            }
            let Some(Reverse((at, key))) = self.due.pop() else {
                break;
            };
            // A key pushed again (retry) leaves its old heap entry behind: skip those, and
            // keys already being sent (their next intent waits for them).
            let current = self.pending.get(&key).is_some_and(|i| i.due == at);
            if !current {
                continue;
            }
            if self.in_flight.contains_key(&key) {
                // Its previous push is still being sent: look again shortly.
                let later = now + POLL;
                if let Some(intent) = self.pending.get_mut(&key) {
                    intent.due = later;
                }
                self.due.push(Reverse((later, key)));
                continue;
            }
            let Some(mut intent) = self.pending.remove(&key) else {
                continue;
            };
            if now.duration_since(intent.born) > self.push.config.max_age {
                self.push.stats.dropped("expired");
                self.release(&intent.entries);
                continue;
            }
            let entries = mem::take(&mut intent.entries);
            self.in_flight
                .insert(key.clone(), (intent.first_cursor, entries));
            let push = self.push.clone();
            let done = done.clone();
            tokio::spawn(async move {
                let finished = push.deliver(&key.0, key.1, intent).await;
                let _ = done.send((key, finished)).await;
            });
        }
    }

    /// Takes back a finished push: done, or to be retried.
    fn finish(&mut self, key: Key, finished: Finished) {
        let entries = self
            .in_flight
            .remove(&key)
            .map(|(_, e)| e)
            .unwrap_or_default();
        let Finished::Retry(mut intent, after) = finished else {
            self.release(&entries);
            return;
        };
        intent.entries = entries;
        intent.attempts += 1;
        let backoff = FIRST_BACKOFF
            .saturating_mul(1 << intent.attempts.min(16).saturating_sub(1))
            .min(MAX_BACKOFF);
        let due = Instant::now() + after.map_or(backoff, |a| a.max(FIRST_BACKOFF));
        match self.pending.get_mut(&key) {
            // Newer messages came meanwhile: one notification for all, to every device,
            // kept from the older cursor.
            Some(newer) => {
                newer.first_cursor = newer.first_cursor.min(intent.first_cursor);
                newer.born = newer.born.min(intent.born);
                newer.attempts = intent.attempts;
                newer.entries.append(&mut intent.entries);
            }
            None => {
                intent.due = due;
                self.due.push(Reverse((due, key.clone())));
                self.pending.insert(key, intent);
            }
        }
    }

    /// Stores where the dispatcher stands when it moved (at most every `SAVE_EVERY`), and
    /// lets the feed be trimmed below it.
    async fn save(&mut self) {
        if let Some(queue) = self.push.queue.clone() {
            if !self.to_ack.is_empty() {
                let ids = mem::take(&mut self.to_ack);
                if let Err(e) = queue.ack(ids.clone()).await {
                    tracing::warn!(error = %e, "push: acknowledging queue entries failed");
                    self.to_ack = ids;
                }
            }
            return;
        }
        let lowest = self
            .pending
            .values()
            .map(|i| i.first_cursor)
            .chain(self.in_flight.values().map(|(c, _)| *c))
            .min();
        let safe = lowest.map_or(self.cursor, |c| c.saturating_sub(1));
        let now = Cursor {
            safe,
            read: self.cursor.max(self.replay_until),
        };
        if now == self.saved || self.last_save.elapsed() < SAVE_EVERY {
            return;
        }
        match self
            .push
            .storage
            .put_value(OWNER, CURSOR_KEY, Some(now.encode()))
            .await
        {
            Ok(()) => {
                self.saved = now;
                self.last_save = Instant::now();
                self.push.floor.store(safe, Relaxed);
            }
            Err(e) => tracing::warn!(error = %e, "push: storing the cursor failed"),
        }
    }

    fn publish_gauges(&self) {
        let stats = &self.push.stats;
        stats.pending.store(self.pending.len() as u64, Relaxed);
        stats.in_flight.store(self.in_flight.len() as u64, Relaxed);
        stats.cursor.store(self.cursor, Relaxed);
        if let Some(q) = &self.push.queue {
            stats.partitions.store(q.owned(), Relaxed);
            stats.lost.store(q.lost(), Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicU64, AtomicUsize};

    use parley_storage::embedded::{Embedded, EmbeddedConfig};
    use parley_types::{MessageKind, NewMessage};

    use super::*;
    use crate::metered::{Around, Call, CallFuture, Wrapped};
    use crate::push::provider::{Delivery, Providers};
    use crate::push::{Presence, PushConfig, Taken, device};

    /// Fails the read `fail_at` reads from now (counting from 1); 0: none.
    #[derive(Default)]
    struct FailRead {
        reads: AtomicUsize,
        fail_at: AtomicUsize,
    }

    impl Around for Arc<FailRead> {
        fn around<'a, T: Send + 'a>(
            &'a self,
            call: Call<'a>,
            f: CallFuture<'a, T>,
        ) -> CallFuture<'a, T> {
            if matches!(call, Call::Read) {
                let n = self.reads.fetch_add(1, Relaxed) + 1;
                if n == self.fail_at.load(Relaxed) {
                    return Box::pin(async { Err(StorageError::Unavailable("injected".into())) });
                }
            }
            f
        }
    }

    struct Nobody;

    #[async_trait::async_trait]
    impl Presence for Nobody {
        async fn online(&self, _: &str) -> Result<bool, String> {
            Ok(false)
        }
    }

    /// A queue holding given entries, each handed out once (as `XREADGROUP >` does).
    #[derive(Default)]
    struct Entries(Mutex<Vec<Taken>>);

    #[async_trait::async_trait]
    impl Queue for Entries {
        async fn take(&self, max: usize) -> Result<Vec<Taken>, String> {
            let mut e = self.0.lock().expect("lock");
            let n = e.len().min(max);
            Ok(e.drain(..n).collect())
        }
        async fn ack(&self, _: Vec<EntryId>) -> Result<(), String> {
            Ok(())
        }
        fn owned(&self) -> u64 {
            1
        }
        fn lost(&self) -> u64 {
            0
        }
    }

    /// A group message from `a` to `b` and `c` (both with a device), read by a dispatcher
    /// whose `k`-th storage read fails; then read again. Whichever read fails, the end is
    /// the same: one intent per recipient standing for the message once, and (in a cluster)
    /// the entry acknowledged only when both are done. `None` once `k` is past every read.
    async fn read_with_failure(k: usize, cluster: bool) -> Option<State> {
        let dir = tempfile::tempdir().expect("tempdir");
        let engine: Arc<dyn Storage> = Arc::new(
            Embedded::open(dir.path().join("store"), EmbeddedConfig::default()).expect("open"),
        );
        let faults = Arc::new(FailRead::default());
        let storage: Arc<dyn Storage> = Arc::new(Wrapped::new(engine, faults.clone()));
        let g = storage
            .create_group("a", &["b".into(), "c".into()], "lego", 1)
            .await
            .expect("group");
        for u in ["b", "c"] {
            storage
                .put_value(u, &device::key("phone"), Some(b"{}".to_vec()))
                .await
                .expect("device");
        }
        let m = storage
            .append(NewMessage {
                conversation: g.id,
                sender: "a".into(),
                kind: MessageKind::Text,
                content: "is it still for sale?".into(),
                media: None,
                client_msg_id: "m1".into(),
                now_ms: 2,
                visibility: Visibility::Everyone,
            })
            .await
            .expect("append")
            .message;
        let queue: Option<Arc<dyn Queue>> = cluster.then(|| {
            let q = Entries::default();
            q.0.lock().expect("lock").push(Taken {
                id: (0, "1-0".into()),
                at: Some((g.id, m.seq)),
                replay: false,
            });
            Arc::new(q) as Arc<dyn Queue>
        });
        let providers = Providers::new(
            Delivery {
                ttl: Duration::from_secs(60),
            },
            Duration::from_secs(1),
            None,
            None,
            None,
            None,
        )
        .expect("providers");
        let config = PushConfig {
            grace: Duration::from_secs(5),
            max_age: Duration::from_secs(60),
            max_devices: 5,
            include_text: false,
            webpush_hosts: Vec::new(),
        };
        let push = Arc::new(Push::new(
            storage,
            providers,
            config,
            Arc::new(Nobody),
            queue.clone(),
            Arc::new(AtomicU64::new(0)),
        ));
        let mut s = State::new(push, Cursor::default());
        let read = async |s: &mut State| match &queue {
            Some(q) => s.read_queue(&**q).await,
            None => s.read_feed().await,
        };
        faults.reads.store(0, Relaxed);
        faults.fail_at.store(k, Relaxed);
        let first = read(&mut s).await;
        let failed = faults.reads.load(Relaxed) >= k;
        if !failed {
            return None;
        }
        assert!(first.is_err(), "read {k} failed, so the batch did");
        read(&mut s).await.expect("read again");
        Some(s)
    }

    async fn check(cluster: bool) {
        let mut k = 1;
        while let Some(mut s) = read_with_failure(k, cluster).await {
            assert_eq!(s.pending.len(), 2, "read {k}: one intent per recipient");
            for intent in s.pending.values() {
                assert_eq!(intent.count, 1, "read {k}: the message counted once");
            }
            assert_eq!(s.push.stats.messages.load(Relaxed), 2, "read {k}");
            if cluster {
                assert!(s.backlog.is_empty(), "read {k}: the batch was read");
                assert_eq!(
                    s.held.get(&0).map(|h| h.1),
                    Some(2),
                    "read {k}: two intents"
                );
                let intents: Vec<Intent> = s.pending.drain().map(|(_, i)| i).collect();
                s.release(&intents[0].entries);
                assert!(s.to_ack.is_empty(), "read {k}: one intent still needs it");
                s.release(&intents[1].entries);
                assert_eq!(
                    s.to_ack,
                    vec![(0, "1-0".to_string())],
                    "read {k}: acked once"
                );
            }
            k += 1;
        }
        assert!(
            k > 3,
            "the first read of a batch reaches storage several times"
        );
    }

    #[tokio::test]
    async fn a_batch_that_fails_part_way_is_read_again_and_counted_once_in_a_cluster() {
        check(true).await;
    }

    #[tokio::test]
    async fn a_feed_page_that_fails_part_way_is_read_again_and_counted_once() {
        check(false).await;
    }
}
