//! Domain types shared by every storage engine and by the gateway. No wire format lives here.

use crate::Visibility;
use std::fmt;
use std::str::FromStr;

use uuid::Uuid;

/// A conversation id (UUID v4), unique across the cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConversationId(pub Uuid);

impl ConversationId {
    /// A fresh random id.
    pub fn random() -> Self {
        Self(Uuid::new_v4())
    }

    /// The id as 16 big-endian bytes (the on-disk and wire order).
    pub fn as_bytes(&self) -> &[u8; 16] {
        self.0.as_bytes()
    }

    /// The id from 16 big-endian bytes.
    pub fn from_bytes(bytes: [u8; 16]) -> Self {
        Self(Uuid::from_bytes(bytes))
    }

    /// The two big-endian 64-bit halves (the wire's `Uuid` struct).
    pub fn halves(&self) -> (u64, u64) {
        let v = self.0.as_u128();
        ((v >> 64) as u64, v as u64)
    }

    /// The id from its two 64-bit halves.
    pub fn from_halves(hi: u64, lo: u64) -> Self {
        Self(Uuid::from_u128((u128::from(hi) << 64) | u128::from(lo)))
    }
}

impl fmt::Display for ConversationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

impl FromStr for ConversationId {
    type Err = uuid::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s).map(Self)
    }
}

/// A message id: 64 bits, time-ordered (`ms since 2024-01-01 | node | sequence`), unique across
/// the cluster. History and resume points sort by id alone. 0 is never a message id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct MessageId(pub u64);

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// What a message carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum MessageKind {
    #[default]
    Text,
    Image,
    File,
    /// A message shown only as its place in the conversation (seq, id, time, sender): one of
    /// a user with a block between them and the reader. Servers send it; clients never do.
    Hidden,
}

impl MessageKind {
    /// Stable numeric code (matches the wire enum and the on-disk byte).
    pub fn code(self) -> u8 {
        match self {
            MessageKind::Text => 0,
            MessageKind::Image => 1,
            MessageKind::File => 2,
            MessageKind::Hidden => 3,
        }
    }

    /// The kind of a stable numeric code.
    pub fn from_code(code: u8) -> Option<Self> {
        match code {
            0 => Some(MessageKind::Text),
            1 => Some(MessageKind::Image),
            2 => Some(MessageKind::File),
            3 => Some(MessageKind::Hidden),
            _ => None,
        }
    }

    /// Lower-case name, as the REST API spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            MessageKind::Text => "text",
            MessageKind::Image => "image",
            MessageKind::File => "file",
            MessageKind::Hidden => "hidden",
        }
    }
}

/// The media a message carries: an upload to this server (`id` set; `url` and `thumb_url`
/// are signed for each reader when the message is shown, never stored), or, in messages
/// stored before uploads existed, an outside URL.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct MediaRef {
    /// Empty in storage for uploads; filled for readers.
    pub url: String,
    pub mime_type: String,
    pub size_bytes: u64,
    pub name: String,
    /// The display rendition's size (images), pixels.
    pub width: u32,
    pub height: u32,
    /// The server-issued media id ("" for an outside URL).
    pub id: String,
    /// The thumbnail's size (0: none).
    pub thumb_width: u32,
    pub thumb_height: u32,
    /// A colour (`#rrggbb`) to show while the image loads.
    pub placeholder: String,
    /// Length of audio, ms (0: not audio or unknown).
    pub duration_ms: u32,
    /// The thumbnail's URL, filled for readers.
    pub thumb_url: String,
}

/// A stored message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub id: MessageId,
    pub conversation: ConversationId,
    pub sender: String,
    pub kind: MessageKind,
    pub content: String,
    pub media: Option<MediaRef>,
    /// The sender's idempotency key.
    pub client_msg_id: String,
    /// Milliseconds since the Unix epoch, server clock.
    pub created_at_ms: i64,
    /// The message's position in its conversation: 1, 2, 3, … in commit order, with no gap
    /// and no repeat, the same for every reader and on every node. Resume, delivery order and
    /// unread counts go by it.
    pub seq: u64,
    /// Who sees it (shadowed messages: only the sender).
    pub visibility: Visibility,
}

impl Message {
    /// Whether `reader` sees this message's content (others get [`Message::hidden`]).
    pub fn visible_to(&self, reader: &str) -> bool {
        self.visibility == Visibility::Everyone || self.sender == reader
    }

    /// The message as a reader with a block between them and its sender sees it: its place
    /// (seq, id, time) and sender, kind `Hidden`, no content, no media.
    pub fn hidden(&self) -> Message {
        Message {
            id: self.id,
            conversation: self.conversation,
            sender: self.sender.clone(),
            kind: MessageKind::Hidden,
            content: String::new(),
            media: None,
            client_msg_id: String::new(),
            created_at_ms: self.created_at_ms,
            seq: self.seq,
            visibility: Visibility::Everyone,
        }
    }
}

/// Where a reader is in a conversation: the last message it has (its seq and id), with every
/// earlier one. `Position::default()` is "nothing yet".
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Hash)]
pub struct Position {
    pub seq: u64,
    pub id: MessageId,
}

impl Position {
    /// The position right after `m`.
    pub fn of(m: &Message) -> Self {
        Self {
            seq: m.seq,
            id: m.id,
        }
    }
}

/// A message to append; the engine assigns id, seq and time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewMessage {
    pub conversation: ConversationId,
    pub sender: String,
    pub kind: MessageKind,
    pub content: String,
    pub media: Option<MediaRef>,
    pub client_msg_id: String,
    pub now_ms: i64,
    /// Who will see it (the sender's standing and moderation decide).
    pub visibility: Visibility,
}

impl NewMessage {
    /// The stored message this becomes with the `id` and `seq` its engine assigned, created
    /// at `created_at_ms`.
    pub fn into_message(self, id: MessageId, seq: u64, created_at_ms: i64) -> Message {
        Message {
            id,
            conversation: self.conversation,
            sender: self.sender,
            kind: self.kind,
            content: self.content,
            media: self.media,
            client_msg_id: self.client_msg_id,
            created_at_ms,
            seq,
            visibility: self.visibility,
        }
    }
}

/// Result of `Storage::append`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Appended {
    pub message: Message,
    /// `true` when (conversation, sender, client_msg_id) was seen before: `message` is the one
    /// stored the first time and nothing new was written.
    pub duplicate: bool,
}

/// Direct (buyer, seller, listing) or group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConversationKind {
    Direct {
        buyer: String,
        seller: String,
        listing: String,
    },
    Group {
        title: String,
        creator: String,
    },
}

/// A conversation and its participants.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conversation {
    pub id: ConversationId,
    pub kind: ConversationKind,
    /// Every participant, without duplicates, in the order given at creation.
    pub participants: Vec<String>,
    pub created_at_ms: i64,
    /// Time of the last message, or creation time when there is none.
    pub last_activity_ms: i64,
    /// Id of the last message (None when there is none).
    pub last_message_id: Option<MessageId>,
    /// The seq of the last message (0 when there is none): the count of messages appended.
    pub last_seq: u64,
}

impl Conversation {
    /// A new direct conversation of `buyer` with `seller` about `listing`, created at `now_ms`.
    pub fn new_direct(
        id: ConversationId,
        buyer: &str,
        seller: &str,
        listing: &str,
        now_ms: i64,
    ) -> Self {
        Self::new(
            id,
            ConversationKind::Direct {
                buyer: buyer.to_owned(),
                seller: seller.to_owned(),
                listing: listing.to_owned(),
            },
            vec![buyer.to_owned(), seller.to_owned()],
            now_ms,
        )
    }

    /// A conversation with no message yet.
    pub fn new(
        id: ConversationId,
        kind: ConversationKind,
        participants: Vec<String>,
        now_ms: i64,
    ) -> Self {
        Self {
            id,
            kind,
            participants,
            created_at_ms: now_ms,
            last_activity_ms: now_ms,
            last_message_id: None,
            last_seq: 0,
        }
    }

    /// Whether `user` takes part in this conversation.
    pub fn has_participant(&self, user: &str) -> bool {
        self.participants.iter().any(|p| p == user)
    }

    /// Whether `user` may delete it: either side of a direct conversation, a group's creator.
    pub fn may_delete(&self, user: &str) -> bool {
        match &self.kind {
            ConversationKind::Direct { buyer, seller, .. } => user == buyer || user == seller,
            ConversationKind::Group { creator, .. } => user == creator,
        }
    }

    /// Title for display: the group's title; empty for direct conversations.
    pub fn title(&self) -> &str {
        match &self.kind {
            ConversationKind::Direct { .. } => "",
            ConversationKind::Group { title, .. } => title,
        }
    }
}

/// Result of `Storage::create_direct`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Created {
    pub conversation: Conversation,
    /// `false` when it already existed and was returned as it was.
    pub created: bool,
}

/// A newest-first page of history.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct HistoryPage {
    /// Newest first, at most the limit asked for.
    pub messages: Vec<Message>,
    /// Pass as `before` for the next (older) page; None when there is no older message.
    pub next_before: Option<Position>,
}

/// A user's read position in one conversation.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ReadState {
    /// Everything up to and including this message is read.
    pub up_to: MessageId,
    /// The seq of `up_to`.
    pub seq: u64,
    pub read_at_ms: i64,
}

/// Result of `Storage::mark_read`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadOutcome {
    /// The watermark after the call (unchanged when it would have gone backwards).
    pub state: ReadState,
    /// Whether the call moved the watermark forward.
    pub advanced: bool,
}

/// One row of a user's conversation list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConversationSummary {
    pub conversation: Conversation,
    pub last_message: Option<Message>,
    /// Messages after the user's read watermark (own messages advance it, so they never count).
    pub unread: u64,
}

/// Where a conversation list page starts: after the row with this (activity, id).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListCursor {
    pub last_activity_ms: i64,
    pub id: ConversationId,
}

impl fmt::Display for ListCursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}_{}", self.last_activity_ms, self.id.0.simple())
    }
}

impl FromStr for ListCursor {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        let (ms, id) = s.split_once('_').ok_or(())?;
        Ok(ListCursor {
            last_activity_ms: ms.parse().map_err(|_| ())?,
            id: id.parse().map_err(|_| ())?,
        })
    }
}

/// A page of a user's conversations, most recent activity first.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ConversationPage {
    pub items: Vec<ConversationSummary>,
    pub next_cursor: Option<ListCursor>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversation_id_halves_round_trip() {
        let id = ConversationId::random();
        let (hi, lo) = id.halves();
        assert_eq!(ConversationId::from_halves(hi, lo), id);
        assert_eq!(&hi.to_be_bytes()[..], &id.as_bytes()[..8]);
    }

    #[test]
    fn list_cursor_round_trips_and_rejects_garbage() {
        let c = ListCursor {
            last_activity_ms: 1_700_000_000_123,
            id: ConversationId::random(),
        };
        assert_eq!(c.to_string().parse::<ListCursor>(), Ok(c));
        assert!("nope".parse::<ListCursor>().is_err());
        assert!("12_notauuid".parse::<ListCursor>().is_err());
    }
}
