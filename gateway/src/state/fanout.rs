//! Fan-out: an event is encoded once by the caller; [`Fanout::send`] groups the recipients by
//! the shards where they have sessions ([`Routes`]) and makes one push per shard into that
//! shard's bounded inbox. The shard then hands the same `Bytes` to each local session's outbox.
//!
//! Overflow policy of the inboxes: messages and other reliable events wait for inbox space
//! (slowing only the publisher); ephemeral ones are dropped when an inbox is full (counted).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use parley_proto::FrameKind;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::routes::Routes;
use crate::event::{Class, Event};

/// One push into a shard's inbox: the same frame for these users' sessions on that shard.
#[derive(Debug)]
pub(crate) struct Delivery {
    pub(crate) users: Vec<Arc<str>>,
    /// A session that must not get it (the one that caused it).
    pub(crate) exclude_session: Option<u64>,
    pub(crate) frame: Bytes,
    pub(crate) class: Class,
    /// What the frame is (metrics; typing may go as a QUIC datagram).
    pub(crate) kind: FrameKind,
    /// When the Send that caused it arrived (messages only), for the send → deliver histogram.
    pub(crate) received_at: Option<Instant>,
}

/// The shards' inboxes, addressed through the routes.
pub(crate) struct Fanout {
    inboxes: Vec<mpsc::Sender<Delivery>>,
    routes: Arc<Routes>,
    /// Ephemeral deliveries dropped because an inbox was full.
    pub(crate) inbox_full_drops: AtomicU64,
}

impl Fanout {
    /// Fan-out into `inboxes` (index = shard id).
    pub(crate) fn new(inboxes: Vec<mpsc::Sender<Delivery>>, routes: Arc<Routes>) -> Self {
        Self {
            inboxes,
            routes,
            inbox_full_drops: AtomicU64::new(0),
        }
    }

    /// Delivers `event` to every session of `users` on this node, except `skip_user`'s and the
    /// session `exclude_session`.
    pub(crate) async fn send<'a>(
        &self,
        users: impl IntoIterator<Item = &'a str>,
        skip_user: Option<&str>,
        exclude_session: Option<u64>,
        event: Event,
    ) {
        let mut per_shard: Vec<Vec<Arc<str>>> = vec![Vec::new(); self.inboxes.len()];
        for user in users {
            if Some(user) == skip_user {
                continue;
            }
            self.routes.for_each_shard(user, |shard, user| {
                if let Some(list) = per_shard.get_mut(shard) {
                    list.push(user.clone());
                }
            });
        }
        for (users, inbox) in per_shard.into_iter().zip(&self.inboxes) {
            if users.is_empty() {
                continue;
            }
            let delivery = Delivery {
                users,
                exclude_session,
                frame: event.frame.clone(),
                class: event.class,
                kind: event.kind,
                received_at: event.received_at,
            };
            if event.class == Class::Ephemeral {
                if inbox.try_send(delivery).is_err() {
                    self.inbox_full_drops.fetch_add(1, Ordering::Relaxed);
                }
            } else if inbox.send(delivery).await.is_err() {
                // The shard stopped (shutdown): its sessions are gone and will resume elsewhere.
            }
        }
    }
}
