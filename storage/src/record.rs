//! Compact binary encoding of stored records and composite keys, shared by engines that store
//! bytes. Every record starts with a format byte so a later version can read older ones.
//!
//! Keys that embed a variable-length string length-prefix it (u16 big-endian), so a prefix scan
//! for user "ab" never matches user "abc" and any byte may appear in an id.

use crate::error::{Result, StorageError};
use parley_types::*;

const FORMAT: u8 = 1;

/// Appends fields to a byte buffer.
#[derive(Default)]
pub(crate) struct Writer(pub Vec<u8>);

impl Writer {
    pub fn record() -> Self {
        Writer(vec![FORMAT])
    }
    pub fn u8(&mut self, v: u8) -> &mut Self {
        self.0.push(v);
        self
    }
    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    pub fn i64(&mut self, v: i64) -> &mut Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    pub fn bytes16(&mut self, v: &[u8; 16]) -> &mut Self {
        self.0.extend_from_slice(v);
        self
    }
    /// A string with a u32 length (values).
    pub fn str(&mut self, v: &str) -> &mut Self {
        self.u32(v.len() as u32);
        self.0.extend_from_slice(v.as_bytes());
        self
    }
    /// A string with a u16 length (keys; ids are limited well below 64 KiB).
    pub fn key_str(&mut self, v: &str) -> &mut Self {
        let len = v.len().min(u16::MAX as usize);
        self.0.extend_from_slice(&(len as u16).to_be_bytes());
        self.0.extend_from_slice(&v.as_bytes()[..len]);
        self
    }
    pub fn finish(self) -> Vec<u8> {
        self.0
    }
}

/// Reads fields back; every read checks bounds and fails with `Corrupt`, never panics.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn record(buf: &'a [u8]) -> Result<Self> {
        let mut r = Reader { buf };
        let format = r.u8()?;
        if format != FORMAT {
            return Err(StorageError::Corrupt(format!(
                "unknown record format {format}"
            )));
        }
        Ok(r)
    }
    /// A key (keys have no format byte).
    pub fn key(buf: &'a [u8]) -> Self {
        Reader { buf }
    }
    /// A string with a u16 length (keys, see `Writer::key_str`).
    pub fn key_str(&mut self) -> Result<String> {
        let len = u16::from_be_bytes(self.array()?) as usize;
        let bytes = self.take(len)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| StorageError::Corrupt("bad utf-8".into()))
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.buf.len() < n {
            return Err(StorageError::Corrupt("record truncated".into()));
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }
    pub fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }
    pub fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_be_bytes(self.array()?))
    }
    pub fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_be_bytes(self.array()?))
    }
    pub fn i64(&mut self) -> Result<i64> {
        Ok(i64::from_be_bytes(self.array()?))
    }
    pub fn bytes16(&mut self) -> Result<[u8; 16]> {
        self.array()
    }
    pub fn str(&mut self) -> Result<String> {
        let len = self.u32()? as usize;
        let bytes = self.take(len)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| StorageError::Corrupt("bad utf-8".into()))
    }
}

pub(crate) fn encode_message(m: &Message) -> Vec<u8> {
    let mut w = Writer::record();
    w.u64(m.id.0)
        .bytes16(m.conversation.as_bytes())
        .str(&m.sender)
        .u8(m.kind.code())
        .str(&m.content)
        .str(&m.client_msg_id)
        .i64(m.created_at_ms)
        .u64(m.seq);
    match &m.media {
        None => {
            w.u8(0);
        }
        Some(media) => {
            w.u8(1)
                .str(&media.url)
                .str(&media.mime_type)
                .u64(media.size_bytes)
                .str(&media.name)
                .u32(media.width)
                .u32(media.height);
        }
    }
    w.finish()
}

pub(crate) fn decode_message(buf: &[u8]) -> Result<Message> {
    let mut r = Reader::record(buf)?;
    let id = MessageId(r.u64()?);
    let conversation = ConversationId::from_bytes(r.bytes16()?);
    let sender = r.str()?;
    let kind = MessageKind::from_code(r.u8()?)
        .ok_or_else(|| StorageError::Corrupt("unknown message kind".into()))?;
    let content = r.str()?;
    let client_msg_id = r.str()?;
    let created_at_ms = r.i64()?;
    let seq = r.u64()?;
    let media = match r.u8()? {
        0 => None,
        _ => Some(MediaRef {
            url: r.str()?,
            mime_type: r.str()?,
            size_bytes: r.u64()?,
            name: r.str()?,
            width: r.u32()?,
            height: r.u32()?,
        }),
    };
    Ok(Message {
        id,
        conversation,
        sender,
        kind,
        content,
        media,
        client_msg_id,
        created_at_ms,
        seq,
    })
}

pub(crate) fn encode_conversation(c: &Conversation) -> Vec<u8> {
    let mut w = Writer::record();
    w.bytes16(c.id.as_bytes());
    match &c.kind {
        ConversationKind::Direct {
            buyer,
            seller,
            listing,
        } => {
            w.u8(0).str(buyer).str(seller).str(listing);
        }
        ConversationKind::Group { title, creator } => {
            w.u8(1).str(title).str(creator);
        }
    }
    w.u32(c.participants.len() as u32);
    for p in &c.participants {
        w.str(p);
    }
    w.i64(c.created_at_ms);
    w.finish()
}

/// The part of a conversation every message changes, kept apart from the (unchanging,
/// possibly 1 000-participant) record so an append rewrites 25 bytes, not the whole record.
pub(crate) fn encode_meta(c: &Conversation) -> Vec<u8> {
    let mut w = Writer::record();
    w.u64(c.last_seq)
        .u64(c.last_message_id.map_or(0, |m| m.0))
        .i64(c.last_activity_ms);
    w.finish()
}

/// Applies a meta record to a conversation decoded from its static record.
pub(crate) fn apply_meta(c: &mut Conversation, buf: &[u8]) -> Result<()> {
    let mut r = Reader::record(buf)?;
    c.last_seq = r.u64()?;
    c.last_message_id = match r.u64()? {
        0 => None,
        id => Some(MessageId(id)),
    };
    c.last_activity_ms = r.i64()?;
    Ok(())
}

pub(crate) fn decode_conversation(buf: &[u8]) -> Result<Conversation> {
    let mut r = Reader::record(buf)?;
    let id = ConversationId::from_bytes(r.bytes16()?);
    let kind = match r.u8()? {
        0 => ConversationKind::Direct {
            buyer: r.str()?,
            seller: r.str()?,
            listing: r.str()?,
        },
        1 => ConversationKind::Group {
            title: r.str()?,
            creator: r.str()?,
        },
        k => {
            return Err(StorageError::Corrupt(format!(
                "unknown conversation kind {k}"
            )));
        }
    };
    let n = r.u32()? as usize;
    let mut participants = Vec::with_capacity(n.min(crate::MAX_GROUP_PARTICIPANTS + 1));
    for _ in 0..n {
        participants.push(r.str()?);
    }
    let created_at_ms = r.i64()?;
    Ok(Conversation {
        id,
        kind,
        participants,
        created_at_ms,
        last_activity_ms: created_at_ms,
        last_message_id: None,
        last_seq: 0,
    })
}

pub(crate) fn encode_read_state(s: &ReadState) -> Vec<u8> {
    let mut w = Writer::record();
    w.u64(s.up_to.0).u64(s.seq).i64(s.read_at_ms);
    w.finish()
}

pub(crate) fn decode_read_state(buf: &[u8]) -> Result<ReadState> {
    let mut r = Reader::record(buf)?;
    Ok(ReadState {
        up_to: MessageId(r.u64()?),
        seq: r.u64()?,
        read_at_ms: r.i64()?,
    })
}

pub(crate) fn encode_report(id: &uuid::Uuid, rep: &NewReport) -> Vec<u8> {
    let mut w = Writer::record();
    w.bytes16(id.as_bytes())
        .str(&rep.reporter)
        .str(&rep.reported_user)
        .u64(rep.message.map_or(0, |m| m.0))
        .str(&rep.reason)
        .i64(rep.now_ms);
    match rep.conversation {
        Some(c) => w.u8(1).bytes16(c.as_bytes()),
        None => w.u8(0),
    };
    w.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(media: bool) -> Message {
        Message {
            id: MessageId(42),
            conversation: ConversationId::random(),
            sender: "ünï".into(),
            kind: if media {
                MessageKind::Image
            } else {
                MessageKind::Text
            },
            content: "hello".into(),
            media: media.then(|| MediaRef {
                url: "https://cdn/x.png".into(),
                mime_type: "image/png".into(),
                size_bytes: 12,
                name: "x.png".into(),
                width: 3,
                height: 4,
            }),
            client_msg_id: "c1".into(),
            created_at_ms: 1_800_000_000_000,
            seq: 9,
        }
    }

    #[test]
    fn messages_round_trip() {
        for media in [false, true] {
            let m = message(media);
            assert_eq!(decode_message(&encode_message(&m)), Ok(m));
        }
    }

    #[test]
    fn conversations_round_trip() {
        let c = Conversation {
            id: ConversationId::random(),
            kind: ConversationKind::Direct {
                buyer: "b".into(),
                seller: "s".into(),
                listing: "l".into(),
            },
            participants: vec!["b".into(), "s".into()],
            created_at_ms: 1,
            last_activity_ms: 2,
            last_message_id: Some(MessageId(3)),
            last_seq: 4,
        };
        let mut back = decode_conversation(&encode_conversation(&c)).expect("decode");
        apply_meta(&mut back, &encode_meta(&c)).expect("meta");
        assert_eq!(back, c);
    }

    #[test]
    fn truncated_records_are_errors_not_panics() {
        let bytes = encode_message(&message(true));
        for cut in 0..bytes.len() {
            assert!(decode_message(&bytes[..cut]).is_err());
        }
    }
}
