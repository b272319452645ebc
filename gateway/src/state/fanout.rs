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

use parley_types::ConversationId;

use super::blocks::Blocks;
use super::routes::{Routes, session_shard};
use crate::event::{Class, Event};

/// A Send's Ack, handed to its session in line with the conversation's messages: the session
/// gets it where the others get the MessageNew, so it never arrives before a message with a
/// lower seq (a client may take the Ack's seq as "I have everything up to here").
#[derive(Clone, Debug)]
pub(crate) struct SessionAck {
    pub(crate) user: Arc<str>,
    pub(crate) session: u64,
    pub(crate) frame: Bytes,
    pub(crate) conversation: ConversationId,
    pub(crate) seq: u64,
}

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
    /// The sending session's Ack, which it gets instead of the frame.
    pub(crate) ack: Option<SessionAck>,
    /// Only the Ack goes out (a retried Send of a message delivered already).
    pub(crate) ack_only: bool,
    /// After the frame, close each session with this error.
    pub(crate) close: Option<parley_proto::ErrorCode>,
}

/// The shards' inboxes, addressed through the routes.
pub(crate) struct Fanout {
    inboxes: Vec<mpsc::Sender<Delivery>>,
    routes: Arc<Routes>,
    blocks: Arc<Blocks>,
    /// Ephemeral deliveries dropped because an inbox was full.
    pub(crate) inbox_full_drops: AtomicU64,
}

impl Fanout {
    /// Fan-out into `inboxes` (index = shard id).
    pub(crate) fn new(
        inboxes: Vec<mpsc::Sender<Delivery>>,
        routes: Arc<Routes>,
        blocks: Arc<Blocks>,
    ) -> Self {
        Self {
            inboxes,
            routes,
            blocks,
            inbox_full_drops: AtomicU64::new(0),
        }
    }

    /// Delivers `event` to every session of `users` on this node, except `skip_user`'s, the
    /// session `exclude_session`, and the users with a block between them and the event's
    /// actor.
    pub(crate) async fn send<'a>(
        &self,
        users: impl IntoIterator<Item = &'a str>,
        skip_user: Option<&str>,
        exclude_session: Option<u64>,
        event: Event,
    ) {
        self.push(users, skip_user, exclude_session, event, None)
            .await;
    }

    /// Delivers a message to every session of `users` on this node; the sending session (if
    /// it is on this node) gets `ack` instead.
    pub(crate) async fn send_message<'a>(
        &self,
        users: impl IntoIterator<Item = &'a str>,
        event: Event,
        ack: Option<SessionAck>,
    ) {
        let exclude = ack.as_ref().map(|a| a.session);
        self.push(users, None, exclude, event, ack).await;
    }

    /// Hands only `ack` to its session, behind everything already in its shard's inbox.
    pub(crate) async fn ack_only(&self, ack: SessionAck) {
        let Some(inbox) = self.inboxes.get(session_shard(ack.session)) else {
            return;
        };
        let delivery = Delivery {
            users: Vec::new(),
            exclude_session: Some(ack.session),
            frame: Bytes::new(),
            class: Class::Reliable,
            kind: FrameKind::Ack,
            received_at: None,
            ack: Some(ack),
            ack_only: true,
            close: None,
        };
        let _ = inbox.send(delivery).await;
    }

    async fn push<'a>(
        &self,
        users: impl IntoIterator<Item = &'a str>,
        skip_user: Option<&str>,
        exclude_session: Option<u64>,
        event: Event,
        mut ack: Option<SessionAck>,
    ) {
        let ack_shard = ack.as_ref().map(|a| session_shard(a.session));
        let blocked = match &event.actor {
            None => None,
            Some(actor) => match self.blocks.relations(actor).await {
                Ok(r) => Some(r),
                // Storage cannot say: typing and presence are dropped, a message or a receipt
                // still goes out (it is stored; losing it is worse).
                Err(e) if event.class == Class::Ephemeral => {
                    tracing::debug!(error = %e, "blocks unavailable; ephemeral event dropped");
                    return;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "blocks unavailable; delivering unfiltered");
                    None
                }
            },
        };
        let mut per_shard: Vec<Vec<Arc<str>>> = vec![Vec::new(); self.inboxes.len()];
        // Users with a block with the actor (and, for an actor-only event, everyone but the
        // actor): the hidden frame, if the event has one.
        let mut hidden_per_shard: Vec<Vec<Arc<str>>> = Vec::new();
        for user in users {
            if Some(user) == skip_user {
                continue;
            }
            let hide = blocked.as_ref().is_some_and(|b| b.contains(user))
                || (event.actor_only && event.actor.as_deref() != Some(user));
            let lists = if hide {
                if event.hidden.is_none() {
                    continue;
                }
                if hidden_per_shard.is_empty() {
                    hidden_per_shard = vec![Vec::new(); self.inboxes.len()];
                }
                &mut hidden_per_shard
            } else {
                &mut per_shard
            };
            self.routes.for_each_shard(user, |shard, user| {
                if let Some(list) = lists.get_mut(shard) {
                    list.push(user.clone());
                }
            });
        }
        if let Some(hidden) = &event.hidden {
            for (users, inbox) in hidden_per_shard.into_iter().zip(&self.inboxes) {
                if users.is_empty() {
                    continue;
                }
                let delivery = Delivery {
                    users,
                    exclude_session,
                    frame: hidden.clone(),
                    class: event.class,
                    kind: event.kind,
                    received_at: None,
                    ack: None,
                    ack_only: false,
                    close: None,
                };
                // Messages only (the only events with a hidden frame): never dropped.
                let _ = inbox.send(delivery).await;
            }
        }
        for (shard, (users, inbox)) in per_shard.into_iter().zip(&self.inboxes).enumerate() {
            let ack = if ack_shard == Some(shard) {
                ack.take()
            } else {
                None
            };
            if users.is_empty() && ack.is_none() {
                continue;
            }
            let delivery = Delivery {
                users,
                exclude_session,
                frame: event.frame.clone(),
                class: event.class,
                kind: event.kind,
                received_at: event.received_at,
                ack,
                ack_only: false,
                close: event.close,
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
