//! What travels between nodes, and its binary form.
//!
//! An event carries the frame exactly as encoded on the origin node, so every node hands the
//! same bytes to its sessions, plus who should get it: the participants of a conversation
//! (each node resolves them from its own conversation cache), or an explicit list of users
//! (presence, and deletions — the conversation is gone by then). The log is shared
//! infrastructure, not trusted to be well-formed: decoding anything malformed gives `None`.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use parley_proto::FrameKind;
use parley_types::ConversationId;
use std::sync::Arc;

use crate::event::{Class, Event};

/// First byte of an event record without an actor (nodes before blocks filtered events).
const EVENT: u8 = 1;
/// First byte of the marker "the origin dropped events you will never read".
const RESYNC: u8 = 2;
/// First byte of an event record with its actor (see `Event::actor`).
const EVENT_BY: u8 = 3;
/// Event classes on the wire: 0 ephemeral, 1 reliable, then messages.
const CLASS_MESSAGE_BY_ID: u8 = 2;
const CLASS_MESSAGE: u8 = 3;
/// Users per event at most (a group's participants; presence contacts are capped below this).
const MAX_USERS: usize = 100_000;

/// Who receives an event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Target {
    /// Every participant of the conversation, except `skip_user`'s sessions.
    Conversation {
        id: ConversationId,
        skip_user: Option<String>,
    },
    /// These users.
    Users(Vec<String>),
}

/// What the nodes drop from their caches before delivering an event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Invalidate {
    /// The conversation (deleted or changed).
    Conversation(ConversationId),
    /// These users' blocks (one of them blocked or unblocked the other).
    Blocks(Vec<String>),
    /// These users' standing (a moderator acted on them): a banned one's sessions close.
    Standing(Vec<String>),
}

/// What a node publishes: the event and who gets it.
#[derive(Clone, Debug)]
pub(crate) struct Outgoing {
    pub(crate) event: Event,
    pub(crate) target: Target,
    pub(crate) invalidate: Option<Invalidate>,
}

/// One event read from the bus.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct BusEvent {
    /// The node that published it.
    pub(crate) origin: u16,
    /// Unix ms at publication (for stream lag).
    pub(crate) sent_at_ms: i64,
    pub(crate) kind: FrameKind,
    pub(crate) class: Class,
    pub(crate) target: Target,
    pub(crate) invalidate: Option<Invalidate>,
    pub(crate) actor: Option<String>,
    /// The frame for users with a block with the actor (see `Event::hidden`).
    pub(crate) hidden: Option<Bytes>,
    /// See `Event::actor_only`.
    pub(crate) actor_only: bool,
    pub(crate) frame: Bytes,
}

impl BusEvent {
    /// The event as this node delivers it.
    pub(crate) fn into_parts(self) -> (Event, Target, Option<Invalidate>) {
        let event = Event {
            frame: self.frame,
            class: self.class,
            kind: self.kind,
            received_at: None,
            actor: self.actor.map(Arc::from),
            hidden: self.hidden,
            actor_only: self.actor_only,
            close: None,
        };
        (event, self.target, self.invalidate)
    }
}

/// A record in the log: an event, or a node's resync marker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Record {
    Event(Box<BusEvent>),
    /// The origin dropped events (its publish queue overflowed): readers resync.
    Resync {
        origin: u16,
    },
}

impl Record {
    pub(crate) fn encode(&self) -> Bytes {
        match self {
            Record::Event(e) => encode_event(e),
            Record::Resync { origin } => {
                let mut b = BytesMut::with_capacity(3);
                b.put_u8(RESYNC);
                b.put_u16(*origin);
                b.freeze()
            }
        }
    }

    pub(crate) fn decode(mut b: Bytes) -> Option<Self> {
        match b.try_get_u8().ok()? {
            RESYNC => {
                let origin = b.try_get_u16().ok()?;
                b.is_empty().then_some(Record::Resync { origin })
            }
            EVENT => decode_event(b, false).map(|e| Record::Event(Box::new(e))),
            EVENT_BY => decode_event(b, true).map(|e| Record::Event(Box::new(e))),
            _ => None,
        }
    }

    /// The record of an event `origin` publishes at `sent_at_ms`.
    pub(crate) fn event(origin: u16, sent_at_ms: i64, o: Outgoing) -> Self {
        Record::Event(Box::new(BusEvent {
            origin,
            sent_at_ms,
            kind: o.event.kind,
            class: o.event.class,
            target: o.target,
            invalidate: o.invalidate,
            actor: o.event.actor.map(|a| a.to_string()),
            hidden: o.event.hidden,
            actor_only: o.event.actor_only,
            frame: o.event.frame,
        }))
    }
}

fn encode_event(e: &BusEvent) -> Bytes {
    let mut b = BytesMut::with_capacity(64 + e.frame.len());
    b.put_u8(EVENT_BY);
    b.put_u16(e.origin);
    b.put_i64(e.sent_at_ms);
    b.put_u8(e.kind.code());
    match e.class {
        Class::Ephemeral => b.put_u8(0),
        Class::Reliable => b.put_u8(1),
        Class::Message { conversation, seq } => {
            b.put_u8(CLASS_MESSAGE);
            b.put_slice(conversation.as_bytes());
            b.put_u64(seq);
        }
    }
    match &e.target {
        Target::Conversation { id, skip_user } => {
            b.put_u8(0);
            b.put_slice(id.as_bytes());
            put_opt_str(&mut b, skip_user.as_deref());
        }
        Target::Users(users) => {
            b.put_u8(1);
            put_users(&mut b, users);
        }
    }
    match &e.invalidate {
        Some(Invalidate::Conversation(c)) => {
            b.put_u8(1);
            b.put_slice(c.as_bytes());
        }
        Some(Invalidate::Blocks(users)) => {
            b.put_u8(2);
            put_users(&mut b, users);
        }
        Some(Invalidate::Standing(users)) => {
            b.put_u8(3);
            put_users(&mut b, users);
        }
        None => b.put_u8(0),
    }
    put_opt_str(&mut b, e.actor.as_deref());
    match &e.hidden {
        Some(h) => {
            // 2: only the actor gets the frame, everyone else this.
            b.put_u8(if e.actor_only { 2 } else { 1 });
            b.put_u32(h.len() as u32);
            b.put_slice(h);
        }
        None => b.put_u8(0),
    }
    b.put_u32(e.frame.len() as u32);
    b.put_slice(&e.frame);
    b.freeze()
}

fn decode_event(mut b: Bytes, with_actor: bool) -> Option<BusEvent> {
    let origin = b.try_get_u16().ok()?;
    let sent_at_ms = b.try_get_i64().ok()?;
    let kind = FrameKind::from_code(b.try_get_u8().ok()?)?;
    let class = match b.try_get_u8().ok()? {
        0 => Class::Ephemeral,
        1 => Class::Reliable,
        // Before protocol 1.1: the message id, no seq (delivered outside the order).
        CLASS_MESSAGE_BY_ID => {
            let conversation = get_conv(&mut b)?;
            b.try_get_u64().ok()?;
            Class::Message {
                conversation,
                seq: 0,
            }
        }
        CLASS_MESSAGE => Class::Message {
            conversation: get_conv(&mut b)?,
            seq: b.try_get_u64().ok()?,
        },
        _ => return None,
    };
    let target = match b.try_get_u8().ok()? {
        0 => Target::Conversation {
            id: get_conv(&mut b)?,
            skip_user: get_opt_str(&mut b)?,
        },
        1 => Target::Users(get_users(&mut b)?),
        _ => return None,
    };
    let invalidate = match b.try_get_u8().ok()? {
        0 => None,
        1 => Some(Invalidate::Conversation(get_conv(&mut b)?)),
        2 => Some(Invalidate::Blocks(get_users(&mut b)?)),
        3 => Some(Invalidate::Standing(get_users(&mut b)?)),
        _ => return None,
    };
    let (actor, actor_only, hidden) = match with_actor {
        true => {
            let actor = get_opt_str(&mut b)?;
            let actor_only = b.first() == Some(&2);
            (actor, actor_only, get_opt_bytes(&mut b)?)
        }
        false => (None, false, None),
    };
    let n = b.try_get_u32().ok()? as usize;
    if b.remaining() != n {
        return None;
    }
    Some(BusEvent {
        origin,
        sent_at_ms,
        kind,
        class,
        target,
        invalidate,
        actor,
        actor_only,
        hidden,
        frame: b,
    })
}

/// `Some(None)`: absent; `None`: malformed.
fn get_opt_bytes(b: &mut Bytes) -> Option<Option<Bytes>> {
    match b.try_get_u8().ok()? {
        0 => Some(None),
        _ => {
            let n = b.try_get_u32().ok()? as usize;
            (b.remaining() >= n).then(|| Some(b.split_to(n)))
        }
    }
}

fn put_users(b: &mut BytesMut, users: &[String]) {
    b.put_u32(users.len() as u32);
    for u in users {
        put_str(b, u);
    }
}

fn get_users(b: &mut Bytes) -> Option<Vec<String>> {
    let n = b.try_get_u32().ok()? as usize;
    if n > MAX_USERS {
        return None;
    }
    let mut users = Vec::with_capacity(n.min(1024));
    for _ in 0..n {
        users.push(get_str(b)?);
    }
    Some(users)
}

fn put_str(b: &mut BytesMut, s: &str) {
    b.put_u32(s.len() as u32);
    b.put_slice(s.as_bytes());
}

fn put_opt_str(b: &mut BytesMut, s: Option<&str>) {
    match s {
        Some(s) => {
            b.put_u8(1);
            put_str(b, s);
        }
        None => b.put_u8(0),
    }
}

fn get_str(b: &mut Bytes) -> Option<String> {
    let n = b.try_get_u32().ok()? as usize;
    if b.remaining() < n {
        return None;
    }
    String::from_utf8(b.split_to(n).to_vec()).ok()
}

/// `Some(None)`: absent; `None`: malformed.
fn get_opt_str(b: &mut Bytes) -> Option<Option<String>> {
    match b.try_get_u8().ok()? {
        0 => Some(None),
        _ => get_str(b).map(Some),
    }
}

fn get_conv(b: &mut Bytes) -> Option<ConversationId> {
    let mut id = [0u8; 16];
    b.try_copy_to_slice(&mut id).ok()?;
    Some(ConversationId::from_bytes(id))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: FrameKind, class: Class, target: Target, frame: &'static [u8]) -> BusEvent {
        BusEvent {
            origin: 3,
            sent_at_ms: 1_800_000_000_000,
            kind,
            class,
            target,
            invalidate: None,
            actor: None,
            hidden: None,
            actor_only: false,
            frame: Bytes::from_static(frame),
        }
    }

    #[test]
    fn records_round_trip_and_every_truncation_is_refused() {
        let c = ConversationId::random();
        let mut presence = event(
            FrameKind::Presence,
            Class::Ephemeral,
            Target::Users(vec!["a".into(), "bé".into()]),
            b"",
        );
        presence.invalidate = Some(Invalidate::Conversation(c));
        presence.actor = Some("bé".into());
        presence.hidden = Some(Bytes::from_static(b"in its place"));
        let mut shadowed = presence.clone();
        shadowed.actor_only = true;
        shadowed.invalidate = Some(Invalidate::Standing(vec!["bé".into()]));
        let mut blocked = event(
            FrameKind::Presence,
            Class::Ephemeral,
            Target::Users(vec![]),
            b"",
        );
        blocked.invalidate = Some(Invalidate::Blocks(vec!["a".into(), "b".into()]));
        let records = [
            Record::Event(Box::new(event(
                FrameKind::MessageNew,
                Class::Message {
                    conversation: c,
                    seq: 99,
                },
                Target::Conversation {
                    id: c,
                    skip_user: None,
                },
                b"frame",
            ))),
            Record::Event(Box::new(presence)),
            Record::Event(Box::new(shadowed)),
            Record::Event(Box::new(blocked)),
            Record::Event(Box::new(event(
                FrameKind::Typing,
                Class::Ephemeral,
                Target::Conversation {
                    id: c,
                    skip_user: Some("typist".into()),
                },
                b"t",
            ))),
            Record::Resync { origin: 9 },
        ];
        for r in records {
            let bytes = r.encode();
            assert_eq!(Record::decode(bytes.clone()), Some(r));
            for cut in 0..bytes.len() {
                assert_eq!(Record::decode(bytes.slice(..cut)), None);
            }
        }
        assert_eq!(Record::decode(Bytes::from_static(b"\xff\xff")), None);
        assert_eq!(
            Record::decode(Bytes::from_static(b"\x02\x00\x01\x00")),
            None
        );
    }
}
