//! Clearing a notification once its conversation is read elsewhere. When a user reads a
//! conversation (any device, socket or REST) up to or past the last notification a push
//! showed there, each of the user's devices gets a silent update: the badge (the unread
//! total now) and "clear this conversation" — an APNs background push (`content-available`,
//! priority 5), an FCM data message at normal priority, a Web Push message at urgency
//! `normal` for the service worker, the webhook; each under the conversation's collapse key,
//! so one still waiting at the service replaces the message's push rather than following it.
//!
//! Best effort, by design: reads wait in memory (bounded; a read lost to a full queue or a
//! restart leaves the badge as it was until the next push), each update is sent once (a
//! retryable failure is counted, not retried), and a burst of reads of one conversation
//! makes one update. Nothing here delays a read: the read path only queues.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use parley_storage::StorageError;
use parley_types::{ConversationId, MessageId};
use tokio::sync::Semaphore;
use tokio::time::Instant;

use super::Push;
use super::provider::{Kind, Notification};

/// Reads waiting for the task; past it they are dropped (counted `queue_full`).
pub(super) const QUEUE: usize = 10_000;
/// How long a read waits, so a burst of reads of one conversation makes one update.
const SETTLE: Duration = Duration::from_millis(500);
/// Conversations waiting at once (then reads are dropped until some are done).
const MAX_WAITING: usize = 100_000;
/// Updates being sent at once.
const IN_FLIGHT: usize = 32;

/// A read that may clear a notification.
#[derive(Debug)]
pub(crate) struct Read {
    pub(crate) user: Arc<str>,
    pub(crate) conversation: ConversationId,
    pub(crate) seq: u64,
}

/// The record of the last notification a device was sent, per conversation.
pub(super) fn shown_key(conversation: ConversationId) -> String {
    format!("shown/{conversation}")
}

fn cleared_key(conversation: ConversationId) -> String {
    format!("cleared/{conversation}")
}

type Key = (Arc<str>, ConversationId);

/// Runs until the process ends.
pub(crate) async fn run(push: Arc<Push>) {
    let Some(mut rx) = push
        .reads_rx
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take()
    else {
        return;
    };
    let slots = Arc::new(Semaphore::new(IN_FLIGHT));
    // Every read waits as long, so arrival order is due order.
    let mut due: VecDeque<(Instant, Key)> = VecDeque::new();
    let mut waiting: HashMap<Key, u64> = HashMap::new();
    loop {
        let next = due.front().map(|(at, _)| *at);
        tokio::select! {
            read = rx.recv() => {
                let Some(r) = read else { return };
                let key = (r.user, r.conversation);
                let full = waiting.len() >= MAX_WAITING;
                match waiting.get_mut(&key) {
                    Some(seq) => *seq = (*seq).max(r.seq),
                    None if full => push.stats.read("queue_full"),
                    None => {
                        waiting.insert(key.clone(), r.seq);
                        due.push_back((Instant::now() + SETTLE, key));
                    }
                }
            }
            () = sleep_until(next), if next.is_some() => {
                let Some((_, key)) = due.pop_front() else { continue };
                let Some(seq) = waiting.remove(&key) else { continue };
                let Ok(slot) = slots.clone().acquire_owned().await else { return };
                let push = push.clone();
                tokio::spawn(async move {
                    let result = match push.clear(&key.0, key.1, seq).await {
                        Ok(result) => result,
                        Err(e) => {
                            tracing::warn!(error = %e, "push: clearing a notification failed");
                            "failed"
                        }
                    };
                    push.stats.read(result);
                    drop(slot);
                });
            }
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    if let Some(at) = at {
        tokio::time::sleep_until(at).await;
    }
}

impl Push {
    /// Clears the notification a push showed in `conversation` when the read at `seq`
    /// covers it; what became of the read (a `parley_push_read_updates_total` result).
    async fn clear(
        &self,
        user: &str,
        conversation: ConversationId,
        seq: u64,
    ) -> Result<&'static str, StorageError> {
        if !self.has_devices(user).await? {
            return Ok("no_devices");
        }
        let Some(shown) = self.seq_at(user, &shown_key(conversation)).await? else {
            return Ok("not_shown");
        };
        if shown > seq {
            // What it shows is still unread.
            return Ok("still_unread");
        }
        let key = cleared_key(conversation);
        if self.seq_at(user, &key).await?.is_some_and(|c| c >= shown) {
            return Ok("already");
        }
        let devices = self.devices(user).await?;
        if devices.is_empty() {
            return Ok("no_devices");
        }
        let n = Notification {
            kind: Kind::Read,
            user: user.to_owned(),
            conversation,
            message_id: MessageId::default(),
            seq,
            sender: String::new(),
            count: 0,
            unread_total: self.unread_total(user).await?,
            text: None,
        };
        let (sent, _retry, _after) = self.send_all(&devices, &n).await?;
        if sent.is_empty() {
            return Ok("failed");
        }
        self.put_seq(user, &key, shown).await?;
        Ok("sent")
    }
}
