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
    /// Bytes with a u32 length.
    pub fn bytes(&mut self, v: &[u8]) -> &mut Self {
        self.u32(v.len() as u32);
        self.0.extend_from_slice(v);
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
    /// Whether every field has been read.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }
    /// Bytes with a u32 length.
    pub fn bytes(&mut self) -> Result<&'a [u8]> {
        let len = self.u32()? as usize;
        self.take(len)
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
    // Added after the first records were written: absent means `Everyone`, then the
    // upload's fields (absent: an outside URL, or no media).
    let upload = m.media.as_ref().filter(|x| !x.id.is_empty());
    if m.visibility != Visibility::Everyone || upload.is_some() {
        w.u8(m.visibility.code());
    }
    if let Some(x) = upload {
        w.str(&x.id)
            .u32(x.thumb_width)
            .u32(x.thumb_height)
            .str(&x.placeholder)
            .u32(x.duration_ms);
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
            ..MediaRef::default()
        }),
    };
    let visibility = match r.is_empty() {
        true => Visibility::Everyone,
        false => Visibility::from_code(r.u8()?)
            .ok_or_else(|| StorageError::Corrupt("unknown visibility".into()))?,
    };
    let mut media = media;
    if let Some(x) = media.as_mut().filter(|_| !r.is_empty()) {
        x.id = r.str()?;
        x.thumb_width = r.u32()?;
        x.thumb_height = r.u32()?;
        x.placeholder = r.str()?;
        x.duration_ms = r.u32()?;
    }
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
        visibility,
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

/// A change-feed entry: tag (0 message, 1 deleted), conversation, seq (0 for a delete).
pub(crate) fn encode_change(conv: ConversationId, kind: crate::ChangeKind) -> Vec<u8> {
    let mut w = Writer::record();
    let (tag, seq) = match kind {
        crate::ChangeKind::Message { seq } => (0, seq),
        crate::ChangeKind::Deleted => (1, 0),
    };
    w.u8(tag).bytes16(conv.as_bytes()).u64(seq);
    w.finish()
}

pub(crate) fn decode_change(cursor: u64, buf: &[u8]) -> Result<crate::Change> {
    let mut r = Reader::record(buf)?;
    let tag = r.u8()?;
    let conversation = ConversationId::from_bytes(r.bytes16()?);
    let seq = r.u64()?;
    let kind = match tag {
        0 => crate::ChangeKind::Message { seq },
        1 => crate::ChangeKind::Deleted,
        t => return Err(StorageError::Corrupt(format!("unknown change kind {t}"))),
    };
    Ok(crate::Change {
        cursor,
        conversation,
        kind,
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

/// A report as stored: the report, its snapshot, then its resolution (if any).
pub(crate) fn encode_report(rep: &Report) -> Vec<u8> {
    let mut w = Writer::record();
    w.bytes16(rep.id.as_bytes())
        .str(&rep.reporter)
        .str(&rep.reported_user)
        .u64(rep.message.map_or(0, |m| m.0))
        .str(&rep.reason)
        .i64(rep.created_at_ms);
    match rep.conversation {
        Some(c) => w.u8(1).bytes16(c.as_bytes()),
        None => w.u8(0),
    };
    w.bytes(&encode_snapshot(&rep.snapshot));
    match &rep.resolution {
        None => w.u8(0),
        Some(r) => w.u8(1).bytes(&encode_resolution(r)),
    };
    // Added after reports with resolutions were written: absent means none.
    if let Some(h) = &rep.held {
        w.u8(h.kind.code())
            .str(&h.content)
            .str(&h.client_msg_id)
            .i64(h.created_at_ms);
    }
    w.finish()
}

pub(crate) fn decode_report(buf: &[u8]) -> Result<Report> {
    let mut r = Reader::record(buf)?;
    let id = uuid::Uuid::from_bytes(r.bytes16()?);
    let reporter = r.str()?;
    let reported_user = r.str()?;
    let message = Some(r.u64()?).filter(|&m| m != 0).map(MessageId);
    let reason = r.str()?;
    let created_at_ms = r.i64()?;
    let conversation = match r.u8()? {
        0 => None,
        _ => Some(ConversationId::from_bytes(r.bytes16()?)),
    };
    // Reports stored before snapshots end here.
    let (snapshot, resolution) = if r.is_empty() {
        (ReportSnapshot::default(), None)
    } else {
        let snapshot = decode_snapshot(r.bytes()?)?;
        let resolution = match r.u8()? {
            0 => None,
            _ => Some(decode_resolution(r.bytes()?)?),
        };
        (snapshot, resolution)
    };
    let held = match r.is_empty() {
        true => None,
        false => Some(HeldMessage {
            kind: MessageKind::from_code(r.u8()?)
                .ok_or_else(|| StorageError::Corrupt("unknown message kind".into()))?,
            content: r.str()?,
            client_msg_id: r.str()?,
            created_at_ms: r.i64()?,
        }),
    };
    Ok(Report {
        id,
        reporter,
        reported_user,
        conversation,
        message,
        reason,
        created_at_ms,
        snapshot,
        resolution,
        held,
    })
}

/// A report snapshot (its own record: the ScyllaDB engine stores it as a blob).
pub(crate) fn encode_snapshot(s: &ReportSnapshot) -> Vec<u8> {
    let mut w = Writer::record();
    w.u32(s.participant_count).u32(s.participants.len() as u32);
    for p in &s.participants {
        w.str(p);
    }
    w.u32(s.messages.len() as u32);
    for m in &s.messages {
        w.bytes(&encode_message(m));
    }
    w.finish()
}

pub(crate) fn decode_snapshot(buf: &[u8]) -> Result<ReportSnapshot> {
    let mut r = Reader::record(buf)?;
    let participant_count = r.u32()?;
    let n = r.u32()? as usize;
    let mut participants = Vec::with_capacity(n.min(MAX_SNAPSHOT_PARTICIPANTS));
    for _ in 0..n {
        participants.push(r.str()?);
    }
    let n = r.u32()? as usize;
    let mut messages = Vec::with_capacity(n.min(MAX_SNAPSHOT_MESSAGES));
    for _ in 0..n {
        messages.push(decode_message(r.bytes()?)?);
    }
    Ok(ReportSnapshot {
        participants,
        participant_count,
        messages,
    })
}

/// A resolution (its own record: the ScyllaDB engine stores it as a blob).
pub(crate) fn encode_resolution(res: &Resolution) -> Vec<u8> {
    let mut w = Writer::record();
    w.u8(res.action.code())
        .i64(res.action.until_ms())
        .str(&res.moderator)
        .str(&res.note)
        .i64(res.at_ms)
        .bytes16(res.audit_id.as_bytes());
    w.finish()
}

pub(crate) fn decode_resolution(buf: &[u8]) -> Result<Resolution> {
    let mut r = Reader::record(buf)?;
    let code = r.u8()?;
    let until = r.i64()?;
    Ok(Resolution {
        action: ModAction::from_code(code, until)
            .ok_or_else(|| StorageError::Corrupt("unknown moderation action".into()))?,
        moderator: r.str()?,
        note: r.str()?,
        at_ms: r.i64()?,
        audit_id: uuid::Uuid::from_bytes(r.bytes16()?),
    })
}

pub(crate) fn encode_entry(e: &ModerationEntry) -> Vec<u8> {
    let mut w = Writer::record();
    w.bytes16(e.id.as_bytes())
        .i64(e.at_ms)
        .str(&e.moderator)
        .str(&e.target)
        .u8(e.action.code())
        .i64(e.action.until_ms())
        .str(&e.note);
    match e.report {
        None => w.u8(0),
        Some(id) => w.u8(1).bytes16(id.as_bytes()),
    };
    w.finish()
}

pub(crate) fn decode_entry(buf: &[u8]) -> Result<ModerationEntry> {
    let mut r = Reader::record(buf)?;
    let id = uuid::Uuid::from_bytes(r.bytes16()?);
    let at_ms = r.i64()?;
    let moderator = r.str()?;
    let target = r.str()?;
    let code = r.u8()?;
    let until = r.i64()?;
    let note = r.str()?;
    let report = match r.u8()? {
        0 => None,
        _ => Some(uuid::Uuid::from_bytes(r.bytes16()?)),
    };
    Ok(ModerationEntry {
        id,
        at_ms,
        moderator,
        target,
        action: ModAction::from_code(code, until)
            .ok_or_else(|| StorageError::Corrupt("unknown moderation action".into()))?,
        report,
        note,
    })
}

pub(crate) fn encode_standing(s: &Standing) -> Vec<u8> {
    let mut w = Writer::record();
    w.u8(u8::from(s.banned) | (u8::from(s.shadowed) << 1))
        .i64(s.muted_until_ms)
        .u32(s.warnings)
        .i64(s.updated_at_ms);
    w.finish()
}

pub(crate) fn decode_standing(buf: &[u8]) -> Result<Standing> {
    let mut r = Reader::record(buf)?;
    let flags = r.u8()?;
    Ok(Standing {
        banned: flags & 1 != 0,
        shadowed: flags & 2 != 0,
        muted_until_ms: r.i64()?,
        warnings: r.u32()?,
        updated_at_ms: r.i64()?,
    })
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
                ..MediaRef::default()
            }),
            client_msg_id: "c1".into(),
            created_at_ms: 1_800_000_000_000,
            seq: 9,
            visibility: if media {
                Visibility::Sender
            } else {
                Visibility::Everyone
            },
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
    fn an_upload_round_trips_with_either_visibility() {
        for visibility in [Visibility::Everyone, Visibility::Sender] {
            let mut m = message(true);
            m.visibility = visibility;
            m.media = Some(MediaRef {
                mime_type: "image/jpeg".into(),
                size_bytes: 1234,
                name: "toy.jpg".into(),
                width: 2048,
                height: 1536,
                id: "0190f0f0-0000-7000-8000-000000000001".into(),
                thumb_width: 320,
                thumb_height: 240,
                placeholder: "#a0b0c0".into(),
                ..MediaRef::default()
            });
            assert_eq!(decode_message(&encode_message(&m)), Ok(m));
        }
    }

    #[test]
    fn a_message_stored_before_visibility_reads_as_everyone() {
        let m = message(false);
        let mut shadowed = m.clone();
        shadowed.visibility = Visibility::Sender;
        let mut bytes = encode_message(&shadowed);
        assert_eq!(bytes.pop(), Some(1), "the visibility byte comes last");
        assert_eq!(bytes, encode_message(&m));
        assert_eq!(decode_message(&bytes), Ok(m));
    }

    #[test]
    fn reports_round_trip_with_and_without_resolution() {
        let mut rep = Report {
            id: uuid::Uuid::now_v7(),
            reporter: "bob".into(),
            reported_user: "ünï".into(),
            conversation: Some(ConversationId::random()),
            message: Some(MessageId(42)),
            reason: "scam".into(),
            created_at_ms: 7,
            snapshot: ReportSnapshot {
                participants: vec!["bob".into(), "ünï".into()],
                participant_count: 2,
                messages: vec![message(false), message(true)],
            },
            resolution: None,
            held: None,
        };
        assert_eq!(decode_report(&encode_report(&rep)), Ok(rep.clone()));
        rep.held = Some(HeldMessage {
            kind: MessageKind::Text,
            content: "my wallet bc1q…".into(),
            client_msg_id: "c9".into(),
            created_at_ms: 6,
        });
        assert_eq!(decode_report(&encode_report(&rep)), Ok(rep.clone()));
        rep.resolution = Some(Resolution {
            action: ModAction::Mute { until_ms: 99 },
            moderator: "mod".into(),
            note: "n".into(),
            at_ms: 8,
            audit_id: uuid::Uuid::now_v7(),
        });
        assert_eq!(decode_report(&encode_report(&rep)), Ok(rep));
        let e = ModerationEntry {
            id: uuid::Uuid::now_v7(),
            at_ms: 1,
            moderator: "mod".into(),
            target: "ünï".into(),
            action: ModAction::Ban,
            report: None,
            note: String::new(),
        };
        assert_eq!(decode_entry(&encode_entry(&e)), Ok(e));
        let st = Standing {
            banned: false,
            shadowed: true,
            muted_until_ms: 5,
            warnings: 2,
            updated_at_ms: 3,
        };
        assert_eq!(decode_standing(&encode_standing(&st)), Ok(st));
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
        // (The visibility byte is optional: cut off alone, it reads as `Everyone`.)
        let bytes = encode_message(&message(true));
        for cut in 0..bytes.len() - 1 {
            assert!(decode_message(&bytes[..cut]).is_err());
        }
    }
}
