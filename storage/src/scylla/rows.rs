//! Rows as the engine reads and writes them: derived structs, matched to columns by name.

use parley_types::*;
use scylla::{DeserializeRow, SerializeRow};
use uuid::Uuid;

use crate::error::{Result, StorageError};

/// The columns [`MsgRow`] reads, in the order the statements select them.
pub(super) const MSG_COLUMNS: &str = "seq, message_id, sender, kind, content, client_msg_id, \
    created_at, media_url, media_mime, media_size, media_name, media_width, media_height, visibility, \
    media_id, media_thumb_width, media_thumb_height, media_placeholder, media_duration_ms";

/// One row of `messages_by_seq`.
#[derive(DeserializeRow)]
pub(super) struct MsgRow {
    seq: i64,
    message_id: i64,
    sender: String,
    kind: i8,
    content: Option<String>,
    client_msg_id: Option<String>,
    created_at: i64,
    media_url: Option<String>,
    media_mime: Option<String>,
    media_size: Option<i64>,
    media_name: Option<String>,
    media_width: Option<i32>,
    media_height: Option<i32>,
    /// Absent in rows written before the column existed: `Everyone`.
    visibility: Option<i8>,
    /// An upload's fields (absent: an outside URL, or no media).
    media_id: Option<String>,
    media_thumb_width: Option<i32>,
    media_thumb_height: Option<i32>,
    media_placeholder: Option<String>,
    media_duration_ms: Option<i32>,
}

impl MsgRow {
    pub(super) fn into_message(self, conversation: ConversationId) -> Result<Message> {
        let kind = MessageKind::from_code(self.kind as u8)
            .ok_or_else(|| StorageError::Corrupt(format!("message kind {}", self.kind)))?;
        let media = self.media_url.map(|url| MediaRef {
            url,
            mime_type: self.media_mime.unwrap_or_default(),
            size_bytes: self.media_size.unwrap_or(0) as u64,
            name: self.media_name.unwrap_or_default(),
            width: self.media_width.unwrap_or(0) as u32,
            height: self.media_height.unwrap_or(0) as u32,
            id: self.media_id.unwrap_or_default(),
            thumb_width: self.media_thumb_width.unwrap_or(0) as u32,
            thumb_height: self.media_thumb_height.unwrap_or(0) as u32,
            placeholder: self.media_placeholder.unwrap_or_default(),
            duration_ms: self.media_duration_ms.unwrap_or(0) as u32,
            thumb_url: String::new(),
        });
        let visibility = Visibility::from_code(self.visibility.unwrap_or(0) as u8)
            .ok_or_else(|| StorageError::Corrupt(format!("visibility {:?}", self.visibility)))?;
        Ok(Message {
            id: MessageId(self.message_id as u64),
            conversation,
            sender: self.sender,
            kind,
            content: self.content.unwrap_or_default(),
            media,
            client_msg_id: self.client_msg_id.unwrap_or_default(),
            created_at_ms: self.created_at,
            seq: self.seq as u64,
            visibility,
        })
    }
}

/// A message to claim its seq with (only non-null columns are written: no tombstones from
/// nulls).
#[derive(SerializeRow)]
pub(super) struct MsgInsert<'a> {
    conversation_id: Uuid,
    bucket: i32,
    seq: i64,
    message_id: i64,
    sender: &'a str,
    kind: i8,
    content: &'a str,
    client_msg_id: &'a str,
    created_at: i64,
    visibility: i8,
}

/// A message with media to insert.
#[derive(SerializeRow)]
pub(super) struct MsgInsertMedia<'a> {
    #[scylla(flatten)]
    message: MsgInsert<'a>,
    media_url: &'a str,
    media_mime: &'a str,
    media_size: i64,
    media_name: &'a str,
    media_width: i32,
    media_height: i32,
    media_id: &'a str,
    media_thumb_width: i32,
    media_thumb_height: i32,
    media_placeholder: &'a str,
    media_duration_ms: i32,
}

impl<'a> MsgInsert<'a> {
    pub(super) fn new(m: &'a Message, bucket: i32) -> Self {
        Self {
            conversation_id: m.conversation.0,
            bucket,
            seq: m.seq as i64,
            message_id: m.id.0 as i64,
            sender: &m.sender,
            kind: m.kind.code() as i8,
            content: &m.content,
            client_msg_id: &m.client_msg_id,
            created_at: m.created_at_ms,
            visibility: m.visibility.code() as i8,
        }
    }

    pub(super) fn with_media(self, media: &'a MediaRef) -> MsgInsertMedia<'a> {
        MsgInsertMedia {
            message: self,
            media_url: &media.url,
            media_mime: &media.mime_type,
            media_size: media.size_bytes as i64,
            media_name: &media.name,
            media_width: media.width as i32,
            media_height: media.height as i32,
            media_id: &media.id,
            media_thumb_width: media.thumb_width as i32,
            media_thumb_height: media.thumb_height as i32,
            media_placeholder: &media.placeholder,
            media_duration_ms: media.duration_ms as i32,
        }
    }
}

/// One row of `conversations` (the unchanging part).
#[derive(DeserializeRow, SerializeRow)]
pub(super) struct ConvRow {
    id: Uuid,
    kind: i8,
    buyer: Option<String>,
    seller: Option<String>,
    listing: Option<String>,
    title: Option<String>,
    creator: Option<String>,
    participants: Option<Vec<String>>,
    created_at: i64,
}

impl ConvRow {
    pub(super) fn of(c: &Conversation) -> Self {
        let (kind, buyer, seller, listing, title, creator) = match &c.kind {
            ConversationKind::Direct {
                buyer,
                seller,
                listing,
            } => (0i8, Some(buyer), Some(seller), Some(listing), None, None),
            ConversationKind::Group { title, creator } => {
                (1i8, None, None, None, Some(title), Some(creator))
            }
        };
        Self {
            id: c.id.0,
            kind,
            buyer: buyer.cloned(),
            seller: seller.cloned(),
            listing: listing.cloned(),
            title: title.cloned(),
            creator: creator.cloned(),
            participants: Some(c.participants.clone()),
            created_at: c.created_at_ms,
        }
    }

    /// The conversation without its activity (last message, last activity).
    pub(super) fn into_conversation(self) -> Result<Conversation> {
        let kind = match self.kind {
            0 => ConversationKind::Direct {
                buyer: self.buyer.unwrap_or_default(),
                seller: self.seller.unwrap_or_default(),
                listing: self.listing.unwrap_or_default(),
            },
            1 => ConversationKind::Group {
                title: self.title.unwrap_or_default(),
                creator: self.creator.unwrap_or_default(),
            },
            k => return Err(StorageError::Corrupt(format!("conversation kind {k}"))),
        };
        let participants = self.participants.unwrap_or_default();
        Ok(Conversation::new(
            ConversationId(self.id),
            kind,
            participants,
            self.created_at,
        ))
    }
}
