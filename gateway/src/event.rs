//! An event as it travels inside a node and between nodes: a server frame encoded once, what it
//! is, and how a full queue may treat it. Fan-out, the outboxes and the cluster bus all carry
//! this; none of them re-encodes or re-derives anything from the bytes.

use std::sync::Arc;

use bytes::Bytes;
use parley_proto::codec::server::encode_server;
use parley_proto::{FrameKind, ServerBody, ServerFrame};
use parley_types::ConversationId;
use tokio::time::Instant;

/// What a queued frame is, for the overflow policy and resume de-duplication.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Class {
    /// Typing, presence: may be dropped under pressure.
    Ephemeral,
    /// A MessageNew: its conversation and seq (0 from nodes older than protocol 1.1).
    Message {
        conversation: ConversationId,
        seq: u64,
    },
    /// Anything else that must arrive (read receipts, deletions, answers).
    Reliable,
}

/// An encoded server frame and how to treat it.
#[derive(Clone, Debug)]
pub(crate) struct Event {
    pub(crate) frame: Bytes,
    pub(crate) class: Class,
    pub(crate) kind: FrameKind,
    /// When the Send that caused it arrived (local messages only), for the send → deliver
    /// histogram.
    pub(crate) received_at: Option<Instant>,
    /// The user whose message, typing, read receipt or presence this is: users with a block
    /// between them and the actor (either way) do not get it.
    pub(crate) actor: Option<Arc<str>>,
    /// What those users get instead, if anything: a message's place in line (kind Hidden),
    /// so their seqs stay dense. Without it (typing, receipts, presence) they get nothing.
    pub(crate) hidden: Option<Bytes>,
    /// Only the actor's sessions get `frame`; everyone else gets `hidden` (a shadowed
    /// message: visible to its sender only).
    pub(crate) actor_only: bool,
    /// After the frame, close each receiving session with this error (a ban).
    pub(crate) close: Option<parley_proto::ErrorCode>,
}

impl Event {
    /// Encodes `body` once for every recipient.
    pub(crate) fn new(body: ServerBody, class: Class) -> Self {
        let kind = body.kind();
        Self {
            frame: encode_server(&ServerFrame::push(body)),
            class,
            kind,
            received_at: None,
            actor: None,
            hidden: None,
            actor_only: false,
            close: None,
        }
    }

    /// The same event, as `actor`'s (see [`Event::actor`]).
    pub(crate) fn by(mut self, actor: impl Into<Arc<str>>) -> Self {
        self.actor = Some(actor.into());
        self
    }
}
