//! Push notifications for users with no live session: the device registry (`device`), the
//! providers (`provider`, `webpush`), the dispatcher that follows storage's change feed
//! and decides who gets what, when (`dispatch`), and the silent updates that clear a
//! notification once its conversation is read elsewhere (`cleared`).
//!
//! Records, in storage's per-user values: `device/<id>` (a [`device::Device`] as JSON),
//! `mute/<conversation>` (8 bytes: muted until, Unix ms; 0 = until unmuted), `pushed/<conversation>`
//! (8 bytes: the last seq pushed or decided against), `shown/<conversation>` (8 bytes: the
//! seq of the last notification a device was sent), `cleared/<conversation>` (8 bytes: the
//! last of those a silent update cleared). The dispatcher's cursor is the owner `\0push`'s
//! `cursor`.
//!
//! One node: the dispatcher follows the change feed and the presence check is this node's
//! sessions. A cluster (ScyllaDB keeps no change feed): the dispatcher takes committed
//! messages from a shared [`Queue`] (the bus's streams read through a Redis consumer group,
//! so each message is handled by one node) and asks [`Presence`] across the cluster.

pub(crate) mod cleared;
pub(crate) mod device;
pub(crate) mod dispatch;
pub(crate) mod provider;
pub(crate) mod webpush;

use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dashmap::DashMap;
use parley_storage::{Storage, StorageError};
use parley_types::ConversationId;

use device::Device;
use dispatch::Intent;
use provider::{Kind, Notification, Outcome, Providers};

/// Devices one user may register.
pub(crate) const DEFAULT_MAX_DEVICES: usize = 10;
/// How long after a message its push waits (a user back within it gets none; later messages
/// of the conversation join it).
pub(crate) const DEFAULT_GRACE_MS: u64 = 5_000;
/// How long a push is retried before it is dropped.
pub(crate) const DEFAULT_MAX_AGE_SECS: u64 = 3_600;
/// How long a push service keeps an undelivered notification.
pub(crate) const DEFAULT_TTL_SECS: u64 = 86_400;
/// Longest text a notification carries (when text is included at all).
const MAX_TEXT_CHARS: usize = 200;

/// How push behaves on this node.
#[derive(Clone, Debug)]
pub(crate) struct PushConfig {
    pub(crate) grace: Duration,
    pub(crate) max_age: Duration,
    pub(crate) max_devices: usize,
    /// Put the message's text into notifications (privacy default: off).
    pub(crate) include_text: bool,
    /// Hosts a Web Push subscription's endpoint may be on (`*.domain`: any subdomain).
    pub(crate) webpush_hosts: Vec<String>,
}

/// The push services browsers use today (`--push-webpush-hosts` replaces the list).
pub(crate) const DEFAULT_WEBPUSH_HOSTS: &[&str] = &[
    "fcm.googleapis.com",
    "updates.push.services.mozilla.com",
    "*.push.apple.com",
    "*.notify.windows.com",
];

/// Whether a user has a live session (asked when a push is due).
#[async_trait::async_trait]
pub(crate) trait Presence: Send + Sync + 'static {
    /// `Err`: nobody can tell now (the push is tried again later).
    async fn online(&self, user: &str) -> Result<bool, String>;
}

/// Where one queue entry is, as the queue knows it.
pub(crate) type EntryId = (u32, String);

/// A committed message handed to this node's dispatcher by a [`Queue`].
#[derive(Clone, Debug)]
pub(crate) struct Taken {
    pub(crate) id: EntryId,
    /// The message's place; `None` for an entry that names no message (acknowledged at once).
    pub(crate) at: Option<(ConversationId, u64)>,
    /// Handed out before (to this node before a restart, or to a node that died): its push
    /// may have been sent already.
    pub(crate) replay: bool,
}

/// A cluster's shared queue of committed messages: each entry goes to one node, stays
/// the node's until acknowledged, and passes to another node when this one dies.
#[async_trait::async_trait]
pub(crate) trait Queue: Send + Sync + 'static {
    /// Up to `max` entries for this node (never blocks for long).
    async fn take(&self, max: usize) -> Result<Vec<Taken>, String>;
    /// Done with these entries.
    async fn ack(&self, ids: Vec<EntryId>) -> Result<(), String>;
    /// Partitions of the queue this node reads now (a gauge).
    fn owned(&self) -> u64;
    /// Entries gone from the queue before any node took them (a counter).
    fn lost(&self) -> u64;
}

/// Counters and gauges (`/metrics`).
#[derive(Default)]
pub(crate) struct Stats {
    /// Message × recipient pairs that made or joined an intent.
    pub(crate) messages: AtomicU64,
    /// Of those, the ones that joined an intent already pending.
    pub(crate) coalesced: AtomicU64,
    pub(crate) pending: AtomicU64,
    pub(crate) in_flight: AtomicU64,
    /// The feed cursor read up to.
    pub(crate) cursor: AtomicU64,
    /// Partitions of a cluster's queue this node reads.
    pub(crate) partitions: AtomicU64,
    /// A cluster's queue entries trimmed before any node took them.
    pub(crate) lost: AtomicU64,
    /// Devices removed because their service said they are gone.
    pub(crate) devices_removed: AtomicU64,
    /// Sent, by provider.
    sent: Mutex<BTreeMap<&'static str, u64>>,
    /// Failed, by (provider, reason) (retries included).
    failed: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
    /// Intents that ended without a push, by reason.
    dropped: Mutex<BTreeMap<&'static str, u64>>,
    /// Reads that could clear a notification, by what became of them.
    reads: Mutex<BTreeMap<&'static str, u64>>,
    /// Time from an intent being due to its last device answering, ms: sum and count.
    latency_ms_sum: AtomicU64,
    latency_count: AtomicU64,
}

/// One more of `key` in a labelled counter.
fn bump<K: Ord>(counts: &Mutex<BTreeMap<K, u64>>, key: K) {
    *counts
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .entry(key)
        .or_default() += 1;
}

impl Stats {
    pub(crate) fn dropped(&self, reason: &'static str) {
        bump(&self.dropped, reason);
    }

    pub(crate) fn read(&self, result: &'static str) {
        bump(&self.reads, result);
    }

    fn sent(&self, provider: &'static str) {
        bump(&self.sent, provider);
    }

    fn failed(&self, provider: &'static str, reason: &'static str) {
        bump(&self.failed, (provider, reason));
    }

    /// Prometheus text of every push series.
    pub(crate) fn render(&self, out: &mut String) {
        use std::fmt::Write as _;
        let mut family = |name: &str, help: &str, kind: &str, rows: Vec<(String, u64)>| {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            for (labels, v) in rows {
                let _ = writeln!(out, "{name}{labels} {v}");
            }
        };
        let plain = |v: &AtomicU64| vec![(String::new(), v.load(Relaxed))];
        family(
            "parley_push_messages_total",
            "Message × offline recipient pairs queued for a push (new or coalesced).",
            "counter",
            plain(&self.messages),
        );
        family(
            "parley_push_coalesced_total",
            "Of those, the ones that joined a notification already pending.",
            "counter",
            plain(&self.coalesced),
        );
        let lock = |m: &Mutex<BTreeMap<&'static str, u64>>| {
            m.lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .map(|(k, v)| (k.to_string(), *v))
                .collect::<Vec<_>>()
        };
        family(
            "parley_push_sent_total",
            "Pushes a provider accepted, by provider.",
            "counter",
            lock(&self.sent)
                .into_iter()
                .map(|(p, v)| (format!("{{provider=\"{p}\"}}"), v))
                .collect(),
        );
        let failed = self
            .failed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|((p, r), v)| (format!("{{provider=\"{p}\",reason=\"{r}\"}}"), *v))
            .collect();
        family(
            "parley_push_failed_total",
            "Pushes not accepted, by provider and reason (each retry counts).",
            "counter",
            failed,
        );
        family(
            "parley_push_dropped_total",
            "Notifications that ended without a push, by reason (online, muted, read, expired, no_devices).",
            "counter",
            lock(&self.dropped)
                .into_iter()
                .map(|(r, v)| (format!("{{reason=\"{r}\"}}"), v))
                .collect(),
        );
        family(
            "parley_push_read_updates_total",
            "Reads of a conversation on some device, by what became of them: sent (a silent update cleared its notification on the user's devices), not_shown, still_unread, already, no_devices, queue_full, failed.",
            "counter",
            lock(&self.reads)
                .into_iter()
                .map(|(r, v)| (format!("{{result=\"{r}\"}}"), v))
                .collect(),
        );
        family(
            "parley_push_devices_removed_total",
            "Devices removed because their push service said they no longer exist.",
            "counter",
            plain(&self.devices_removed),
        );
        family(
            "parley_push_pending",
            "Notifications waiting for their time (queue depth).",
            "gauge",
            plain(&self.pending),
        );
        family(
            "parley_push_in_flight",
            "Notifications being sent now.",
            "gauge",
            plain(&self.in_flight),
        );
        family(
            "parley_push_feed_cursor",
            "The change-feed cursor the push dispatcher has read up to.",
            "gauge",
            plain(&self.cursor),
        );
        family(
            "parley_push_partitions",
            "Partitions of the cluster's push queue this node reads (0 on one node).",
            "gauge",
            plain(&self.partitions),
        );
        family(
            "parley_push_queue_lost_total",
            "Messages trimmed from the cluster's streams before a node took them for push.",
            "counter",
            plain(&self.lost),
        );
        // A summary without quantiles: `_sum` / `_count` is the mean.
        family(
            "parley_push_send_milliseconds",
            "Milliseconds from a notification being due to its last device answering.",
            "summary",
            vec![
                ("_sum".to_owned(), self.latency_ms_sum.load(Relaxed)),
                ("_count".to_owned(), self.latency_count.load(Relaxed)),
            ],
        );
    }
}

/// How a push ended.
enum Finished {
    Done,
    /// Try again (with the devices that still need it), after this long when a service said.
    Retry(Intent, Option<Duration>),
}

/// Push on this node: registry, settings, providers and the dispatcher's shared state.
pub(crate) struct Push {
    pub(crate) storage: Arc<dyn Storage>,
    pub(crate) providers: Providers,
    pub(crate) config: PushConfig,
    /// Whether a user has a live session (asked when a push is due).
    presence: Arc<dyn Presence>,
    /// A cluster's queue (None: one node, following the change feed).
    pub(crate) queue: Option<Arc<dyn Queue>>,
    /// Whether a user has any device (a miss reads storage). In a cluster only "yes" is
    /// kept: another node may register a user's first device at any time.
    has_device: DashMap<Arc<str>, bool>,
    /// The feed cursor below which the dispatcher needs nothing (trimming stops here).
    pub(crate) floor: Arc<AtomicU64>,
    pub(crate) stats: Stats,
    /// Reads for the `cleared` task (taken by it once).
    reads: tokio::sync::mpsc::Sender<cleared::Read>,
    reads_rx: Mutex<Option<tokio::sync::mpsc::Receiver<cleared::Read>>>,
}

/// Why a registry call failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PushError {
    #[error("{0}")]
    Refused(#[from] device::Refused),
    #[error("at most {0} devices per user; remove one first")]
    TooMany(usize),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl Push {
    pub(crate) fn new(
        storage: Arc<dyn Storage>,
        providers: Providers,
        config: PushConfig,
        presence: Arc<dyn Presence>,
        queue: Option<Arc<dyn Queue>>,
        floor: Arc<AtomicU64>,
    ) -> Self {
        let (reads, reads_rx) = tokio::sync::mpsc::channel(cleared::QUEUE);
        Self {
            storage,
            providers,
            config,
            presence,
            queue,
            has_device: DashMap::new(),
            floor,
            stats: Stats::default(),
            reads,
            reads_rx: Mutex::new(Some(reads_rx)),
        }
    }

    /// `user` read `conversation` up to `seq` (on some device): the notification a push
    /// showed there may be cleared (see `cleared`). Never waits.
    pub(crate) fn read(&self, user: &Arc<str>, conversation: ConversationId, seq: u64) {
        if self.has_device.get(&**user).is_some_and(|any| !*any) {
            return;
        }
        let read = cleared::Read {
            user: user.clone(),
            conversation,
            seq,
        };
        if self.reads.try_send(read).is_err() {
            self.stats.read("queue_full");
        }
    }

    /// Registers (or replaces) device `id` of `user` from a registration body.
    pub(crate) async fn put_device(
        &self,
        user: &str,
        id: &str,
        body: &serde_json::Value,
        now_ms: i64,
    ) -> Result<Device, PushError> {
        device::check_id(id)?;
        let platform = device::parse(body, &self.config.webpush_hosts)?;
        let existing = self.devices(user).await?;
        // The same subscription or token under another id replaces that one (a browser
        // subscribing again, an app reinstalled): one device, never two pushes.
        for other in existing
            .iter()
            .filter(|d| d.id != id && d.platform == platform)
        {
            self.storage
                .put_value(user, &device::key(&other.id), None)
                .await?;
        }
        let kept = existing
            .iter()
            .filter(|d| d.id != id && d.platform != platform)
            .count();
        if kept >= self.config.max_devices {
            return Err(PushError::TooMany(self.config.max_devices));
        }
        let created_ms = existing
            .iter()
            .find(|d| d.id == id)
            .map_or(now_ms, |d| d.created_ms);
        let d = Device {
            id: id.to_owned(),
            platform,
            created_ms,
        };
        let json = serde_json::to_vec(&d).map_err(|_| StorageError::Corrupt("device".into()))?;
        self.storage
            .put_value(user, &device::key(id), Some(json))
            .await?;
        self.note_devices(user, true);
        Ok(d)
    }

    /// `user`'s devices, in id order (records that no longer parse are skipped).
    pub(crate) async fn devices(&self, user: &str) -> Result<Vec<Device>, StorageError> {
        let found = self
            .storage
            .values(user, device::PREFIX, self.config.max_devices.max(1) * 2)
            .await?;
        Ok(found
            .into_iter()
            .filter_map(|(_, v)| serde_json::from_slice(&v).ok())
            .collect())
    }

    /// Removes device `id`; whether there was one.
    pub(crate) async fn delete_device(&self, user: &str, id: &str) -> Result<bool, PushError> {
        device::check_id(id)?;
        let key = device::key(id);
        if self.storage.value(user, &key).await?.is_none() {
            return Ok(false);
        }
        self.storage.put_value(user, &key, None).await?;
        self.has_device.remove(user);
        Ok(true)
    }

    /// Mutes `conversation` for `user` until `until_ms` (0: until unmuted), or unmutes it
    /// (`None`). The caller checked that the user is in it.
    pub(crate) async fn set_muted(
        &self,
        user: &str,
        conversation: ConversationId,
        until_ms: Option<i64>,
    ) -> Result<(), StorageError> {
        let value = until_ms.map(|t| t.to_be_bytes().to_vec());
        self.storage
            .put_value(user, &mute_key(conversation), value)
            .await
    }

    /// Until when `user` muted `conversation` (`Some(0)`: until unmuted), if it is muted now.
    pub(crate) async fn muted(
        &self,
        user: &str,
        conversation: ConversationId,
        now_ms: i64,
    ) -> Result<Option<i64>, StorageError> {
        let v = self.storage.value(user, &mute_key(conversation)).await?;
        let until = v.and_then(|v| Some(i64::from_be_bytes(v.get(..8)?.try_into().ok()?)));
        Ok(until.filter(|t| *t == 0 || *t > now_ms))
    }

    fn note_devices(&self, user: &str, any: bool) {
        if !any && self.queue.is_some() {
            self.has_device.remove(user);
            return;
        }
        if self.has_device.len() >= dispatch::USERS_CACHED {
            self.has_device.clear();
        }
        self.has_device.insert(Arc::from(user), any);
    }

    async fn has_devices(&self, user: &str) -> Result<bool, StorageError> {
        if let Some(any) = self.has_device.get(user) {
            return Ok(*any);
        }
        let any = !self
            .storage
            .values(user, device::PREFIX, 1)
            .await?
            .is_empty();
        self.note_devices(user, any);
        Ok(any)
    }

    /// Sends one due notification (see `dispatch`).
    async fn deliver(&self, user: &str, conversation: ConversationId, intent: Intent) -> Finished {
        let started = tokio::time::Instant::now();
        match self.try_deliver(user, conversation, &intent).await {
            Ok(Delivered::Dropped(reason)) => {
                self.stats.dropped(reason);
                Finished::Done
            }
            Ok(Delivered::Sent) => {
                let ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
                self.stats.latency_ms_sum.fetch_add(ms, Relaxed);
                self.stats.latency_count.fetch_add(1, Relaxed);
                Finished::Done
            }
            Ok(Delivered::Retry(devices, after)) => Finished::Retry(
                Intent {
                    devices_left: Some(devices),
                    ..intent
                },
                after,
            ),
            Err(e) => {
                tracing::warn!(error = %e, "push: storage or presence failed; retrying");
                Finished::Retry(intent, None)
            }
        }
    }

    async fn try_deliver(
        &self,
        user: &str,
        conversation: ConversationId,
        intent: &Intent,
    ) -> Result<Delivered, StorageError> {
        let online = self
            .presence
            .online(user)
            .await
            .map_err(StorageError::Unavailable)?;
        if online {
            return self.done(user, conversation, intent.seq, "online").await;
        }
        if self.queue.is_some()
            && self
                .pushed(user, conversation)
                .await?
                .is_some_and(|p| p >= intent.seq)
        {
            // Another node took care of it (a cluster's queue moved after a node died).
            return Ok(Delivered::Dropped("already"));
        }
        let now_ms = crate::clock::wall_ms();
        if self.muted(user, conversation, now_ms).await?.is_some() {
            return self.done(user, conversation, intent.seq, "muted").await;
        }
        let read = self.storage.read_state(conversation, user).await?;
        if read.is_some_and(|r| r.seq >= intent.seq) {
            return self.done(user, conversation, intent.seq, "read").await;
        }
        let mut devices = self.devices(user).await?;
        if let Some(left) = &intent.devices_left {
            devices.retain(|d| left.contains(&d.id));
        }
        if devices.is_empty() {
            self.note_devices(user, false);
            return self
                .done(user, conversation, intent.seq, "no_devices")
                .await;
        }
        let unread_total = self.unread_total(user).await?;
        let text = self
            .config
            .include_text
            .then(|| intent.text.chars().take(MAX_TEXT_CHARS).collect());
        let n = Notification {
            kind: Kind::Message,
            user: user.to_owned(),
            conversation,
            message_id: intent.message_id,
            seq: intent.seq,
            sender: intent.sender.clone(),
            count: intent.count,
            unread_total,
            text,
        };
        let (sent, retry, after) = self.send_all(&devices, &n).await?;
        if !sent.is_empty() {
            // A device shows it: a read elsewhere clears it (see `cleared`).
            self.put_seq(user, &cleared::shown_key(conversation), intent.seq)
                .await?;
        }
        if !retry.is_empty() {
            sent.iter().for_each(|p| self.stats.sent(p));
            return Ok(Delivered::Retry(retry, after));
        }
        self.mark_pushed(user, conversation, intent.seq).await?;
        // Counted once recorded: a push the metric shows is not sent again after a restart.
        sent.iter().for_each(|p| self.stats.sent(p));
        Ok(Delivered::Sent)
    }

    /// Sends `n` to each of `devices`; removes those their service says are gone. The
    /// providers that accepted it, the devices to try again, and how long to wait first.
    async fn send_all(
        &self,
        devices: &[Device],
        n: &Notification,
    ) -> Result<(Vec<&'static str>, Vec<String>, Option<Duration>), StorageError> {
        let user = n.user.as_str();
        let outcomes =
            futures_util::future::join_all(devices.iter().map(|d| self.providers.send(d, n))).await;
        let mut retry = Vec::new();
        let mut after: Option<Duration> = None;
        let mut sent = Vec::new();
        for (d, outcome) in devices.iter().zip(outcomes) {
            let provider = d.platform.name();
            match outcome {
                Outcome::Sent => sent.push(provider),
                Outcome::Gone(reason) => {
                    self.stats.failed(provider, reason);
                    self.storage
                        .put_value(user, &device::key(&d.id), None)
                        .await?;
                    self.has_device.remove(user);
                    // Counted once it is gone from storage (a reader of the metric sees it).
                    self.stats.devices_removed.fetch_add(1, Relaxed);
                    tracing::info!(%user, device = %d.id, provider, "push: device gone, removed");
                }
                Outcome::Retry { after: a, reason } => {
                    self.stats.failed(provider, reason);
                    retry.push(d.id.clone());
                    after = after.max(a);
                }
                Outcome::Failed(reason) => {
                    self.stats.failed(provider, reason);
                    tracing::warn!(%user, device = %d.id, provider, reason, "push failed");
                }
            }
        }
        Ok((sent, retry, after))
    }

    /// The user's unread messages over all conversations: the badge.
    async fn unread_total(&self, user: &str) -> Result<u64, StorageError> {
        Ok(self
            .storage
            .unread_counts(user)
            .await?
            .iter()
            .map(|(_, n)| n)
            .sum())
    }

    /// A per-user record holding one seq (`pushed/`, `shown/`, `cleared/`).
    async fn seq_at(&self, user: &str, key: &str) -> Result<Option<u64>, StorageError> {
        Ok(self
            .storage
            .value(user, key)
            .await?
            .and_then(|v| Some(u64::from_be_bytes(v.get(..8)?.try_into().ok()?))))
    }

    async fn put_seq(&self, user: &str, key: &str, seq: u64) -> Result<(), StorageError> {
        self.storage
            .put_value(user, key, Some(seq.to_be_bytes().to_vec()))
            .await
    }

    /// Ends an intent without a push, remembered so a restart does not bring it back.
    async fn done(
        &self,
        user: &str,
        conversation: ConversationId,
        seq: u64,
        reason: &'static str,
    ) -> Result<Delivered, StorageError> {
        self.mark_pushed(user, conversation, seq).await?;
        Ok(Delivered::Dropped(reason))
    }

    /// The last seq pushed (or dropped) for `user` in `conversation`.
    pub(super) async fn pushed(
        &self,
        user: &str,
        conversation: ConversationId,
    ) -> Result<Option<u64>, StorageError> {
        self.seq_at(user, &dispatch::pushed_key(conversation)).await
    }

    async fn mark_pushed(
        &self,
        user: &str,
        conversation: ConversationId,
        seq: u64,
    ) -> Result<(), StorageError> {
        self.put_seq(user, &dispatch::pushed_key(conversation), seq)
            .await
    }
}

enum Delivered {
    Sent,
    Dropped(&'static str),
    Retry(Vec<String>, Option<Duration>),
}

fn mute_key(conversation: ConversationId) -> String {
    format!("mute/{conversation}")
}
