//! What travels between nodes on the Redis Streams bus, and its binary form.
//!
//! An event carries the frame exactly as encoded on the origin node, so every node hands the
//! same bytes to its sessions, plus who should get it: the participants of a conversation
//! (each node resolves them from its own conversation cache), or an explicit list of users
//! (presence, and deletions — the conversation is gone by then).

use bytes::{Buf, BufMut, Bytes, BytesMut};
use parley_proto::FrameKind;
use parley_types::{ConversationId, MessageId};

use crate::outbox::Class;

/// First byte of an event record.
const FORMAT: u8 = 1;
/// First byte of the marker "the origin dropped events you will never read".
const RESYNC: u8 = 2;

/// Who receives an event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// Every participant of the conversation, except `skip_user`'s sessions.
    Conversation {
        id: ConversationId,
        skip_user: Option<String>,
    },
    /// These users.
    Users(Vec<String>),
}

/// One event on the bus.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BusEvent {
    /// The node that published it (its own events are skipped when read back).
    pub origin: u16,
    /// Unix ms at publication (for stream lag).
    pub sent_at_ms: i64,
    /// What the frame is.
    pub kind: FrameKind,
    pub class: Class,
    pub target: Target,
    /// Drop the conversation from caches before delivering (deleted or changed).
    pub invalidate: Option<ConversationId>,
    pub frame: Bytes,
}

/// A record on the bus: an event, or a node's resync marker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record {
    Event(BusEvent),
    /// The origin dropped events (its publish queue overflowed): readers resync.
    Resync {
        origin: u16,
    },
}

impl Record {
    pub fn encode(&self) -> Bytes {
        match self {
            Record::Event(e) => e.encode(),
            Record::Resync { origin } => {
                let mut b = BytesMut::with_capacity(3);
                b.put_u8(RESYNC);
                b.put_u16(*origin);
                b.freeze()
            }
        }
    }

    /// None for anything malformed (the stream is shared infrastructure, not trusted to be
    /// well-formed).
    pub fn decode(b: Bytes) -> Option<Self> {
        match b.first() {
            Some(&RESYNC) if b.len() == 3 => Some(Record::Resync {
                origin: u16::from_be_bytes([b[1], b[2]]),
            }),
            Some(&FORMAT) => BusEvent::decode(b).map(Record::Event),
            _ => None,
        }
    }
}

fn put_str(b: &mut BytesMut, s: &str) {
    b.put_u32(s.len() as u32);
    b.put_slice(s.as_bytes());
}

fn get_str(b: &mut Bytes) -> Option<String> {
    if b.remaining() < 4 {
        return None;
    }
    let n = b.get_u32() as usize;
    if b.remaining() < n {
        return None;
    }
    String::from_utf8(b.split_to(n).to_vec()).ok()
}

fn get_conv(b: &mut Bytes) -> Option<ConversationId> {
    if b.remaining() < 16 {
        return None;
    }
    let mut id = [0u8; 16];
    b.copy_to_slice(&mut id);
    Some(ConversationId::from_bytes(id))
}

impl BusEvent {
    pub fn encode(&self) -> Bytes {
        let mut b = BytesMut::with_capacity(64 + self.frame.len());
        b.put_u8(FORMAT);
        b.put_u16(self.origin);
        b.put_i64(self.sent_at_ms);
        b.put_u8(self.kind.code());
        match self.class {
            Class::Ephemeral => b.put_u8(0),
            Class::Reliable => b.put_u8(1),
            Class::Message { conversation, id } => {
                b.put_u8(2);
                b.put_slice(conversation.as_bytes());
                b.put_u64(id.0);
            }
        }
        match &self.target {
            Target::Conversation { id, skip_user } => {
                b.put_u8(0);
                b.put_slice(id.as_bytes());
                match skip_user {
                    Some(u) => {
                        b.put_u8(1);
                        put_str(&mut b, u);
                    }
                    None => b.put_u8(0),
                }
            }
            Target::Users(users) => {
                b.put_u8(1);
                b.put_u32(users.len() as u32);
                for u in users {
                    put_str(&mut b, u);
                }
            }
        }
        match self.invalidate {
            Some(c) => {
                b.put_u8(1);
                b.put_slice(c.as_bytes());
            }
            None => b.put_u8(0),
        }
        b.put_u32(self.frame.len() as u32);
        b.put_slice(&self.frame);
        b.freeze()
    }

    /// Decodes an event; None for anything malformed (the stream is shared infrastructure,
    /// not trusted to be well-formed).
    pub fn decode(mut b: Bytes) -> Option<Self> {
        if b.remaining() < 1 + 2 + 8 + 1 + 1 || b.get_u8() != FORMAT {
            return None;
        }
        let origin = b.get_u16();
        let sent_at_ms = b.get_i64();
        let kind = FrameKind::from_code(b.get_u8())?;
        let class = match b.get_u8() {
            0 => Class::Ephemeral,
            1 => Class::Reliable,
            2 => {
                let conversation = get_conv(&mut b)?;
                if b.remaining() < 8 {
                    return None;
                }
                Class::Message {
                    conversation,
                    id: MessageId(b.get_u64()),
                }
            }
            _ => return None,
        };
        if !b.has_remaining() {
            return None;
        }
        let target = match b.get_u8() {
            0 => {
                let id = get_conv(&mut b)?;
                if !b.has_remaining() {
                    return None;
                }
                let skip_user = match b.get_u8() {
                    0 => None,
                    _ => Some(get_str(&mut b)?),
                };
                Target::Conversation { id, skip_user }
            }
            1 => {
                if b.remaining() < 4 {
                    return None;
                }
                let n = b.get_u32() as usize;
                let mut users = Vec::with_capacity(n.min(10_000));
                for _ in 0..n {
                    users.push(get_str(&mut b)?);
                }
                Target::Users(users)
            }
            _ => return None,
        };
        if !b.has_remaining() {
            return None;
        }
        let invalidate = match b.get_u8() {
            0 => None,
            _ => Some(get_conv(&mut b)?),
        };
        if b.remaining() < 4 {
            return None;
        }
        let n = b.get_u32() as usize;
        if b.remaining() != n {
            return None;
        }
        Some(Self {
            origin,
            sent_at_ms,
            kind,
            class,
            target,
            invalidate,
            frame: b,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip_and_garbage_is_refused() {
        let c = ConversationId::random();
        let events = [
            BusEvent {
                origin: 3,
                sent_at_ms: 1_800_000_000_000,
                kind: FrameKind::MessageNew,
                class: Class::Message {
                    conversation: c,
                    id: MessageId(99),
                },
                target: Target::Conversation {
                    id: c,
                    skip_user: None,
                },
                invalidate: None,
                frame: Bytes::from_static(b"frame"),
            },
            BusEvent {
                origin: 1,
                sent_at_ms: 5,
                kind: FrameKind::Presence,
                class: Class::Ephemeral,
                target: Target::Users(vec!["a".into(), "bé".into()]),
                invalidate: Some(c),
                frame: Bytes::new(),
            },
            BusEvent {
                origin: 1,
                sent_at_ms: 5,
                kind: FrameKind::Typing,
                class: Class::Ephemeral,
                target: Target::Conversation {
                    id: c,
                    skip_user: Some("typist".into()),
                },
                invalidate: None,
                frame: Bytes::from_static(b"t"),
            },
        ];
        for e in events {
            let bytes = e.encode();
            assert_eq!(BusEvent::decode(bytes.clone()), Some(e));
            for cut in 0..bytes.len() {
                assert_eq!(BusEvent::decode(bytes.slice(..cut)), None);
            }
        }
        assert_eq!(BusEvent::decode(Bytes::from_static(b"\xff\xff")), None);
        let marker = Record::Resync { origin: 9 };
        assert_eq!(Record::decode(marker.encode()), Some(marker));
        assert_eq!(Record::decode(Bytes::from_static(b"\x02\x00")), None);
    }
}
