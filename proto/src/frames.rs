//! The protocol's frames as plain Rust types. The codec turns bytes into these and back; the
//! session core, executor and clients work on these only.

use parley_types::{
    ConversationId, ConversationSummary, MediaRef, Message, MessageId, MessageKind,
};

use crate::kind::{ClientKind, FrameKind};

/// A frame from a client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientFrame {
    pub seq: u32,
    pub body: ClientBody,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientBody {
    Hello(Hello),
    Join {
        conversation: ConversationId,
    },
    Leave {
        conversation: ConversationId,
    },
    Send(SendMessage),
    Typing {
        conversation: ConversationId,
        active: bool,
    },
    Read {
        conversation: ConversationId,
        up_to: MessageId,
    },
    History {
        conversation: ConversationId,
        before: Option<MessageId>,
        limit: u16,
    },
    Conversations {
        cursor: Option<String>,
        limit: u16,
        /// Only conversations this matches (protocol 1.4).
        query: Option<String>,
    },
    Ping {
        nonce: u64,
    },
    /// A fresh token for the session (protocol 1.2).
    Refresh {
        token: String,
    },
    /// Search my messages (protocol 1.4).
    Search(SearchQuery),
    /// No pushes of `conversation` for me (protocol 1.5): while `muted`, until `until_ms`
    /// (Unix ms; 0: until unmuted).
    Mute {
        conversation: ConversationId,
        muted: bool,
        until_ms: i64,
    },
}

/// A message search (protocol 1.4; see `Search` in the schema).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SearchQuery {
    pub query: String,
    pub conversation: Option<ConversationId>,
    /// Newest first: only messages with an id below this.
    pub before: Option<MessageId>,
    /// 0: the default.
    pub limit: u16,
    pub by_relevance: bool,
    pub offset: u16,
}

/// One message a search found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SearchHit {
    pub conversation: ConversationId,
    pub message_id: MessageId,
    pub seq: u64,
    pub sender: String,
    pub created_at_ms: i64,
    pub snippet: String,
    /// Matched spans of `snippet`, `[start, end)` in characters.
    pub highlights: Vec<(u32, u32)>,
}

impl ClientBody {
    pub fn kind(&self) -> ClientKind {
        match self {
            ClientBody::Hello(_) => ClientKind::Hello,
            ClientBody::Join { .. } => ClientKind::Join,
            ClientBody::Leave { .. } => ClientKind::Leave,
            ClientBody::Send(_) => ClientKind::Send,
            ClientBody::Typing { .. } => ClientKind::Typing,
            ClientBody::Read { .. } => ClientKind::Read,
            ClientBody::History { .. } => ClientKind::History,
            ClientBody::Conversations { .. } => ClientKind::Conversations,
            ClientBody::Ping { .. } => ClientKind::Ping,
            ClientBody::Refresh { .. } => ClientKind::Refresh,
            ClientBody::Search(_) => ClientKind::Search,
            ClientBody::Mute { .. } => ClientKind::Mute,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hello {
    pub token: String,
    pub protocol_major: u16,
    pub protocol_minor: u16,
    pub resume: Vec<ResumePoint>,
    pub client_name: Option<String>,
}

/// "I have every message of `conversation` up to and including seq `last_seq` (the message
/// `last_message_id`), with no gap below it." A server resumes by `last_seq` when it is set,
/// else by `last_message_id` (clients older than protocol 1.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResumePoint {
    pub conversation: ConversationId,
    pub last_message_id: MessageId,
    pub last_seq: u64,
}

impl ResumePoint {
    /// A resume point at `position` of `conversation`.
    pub fn at(conversation: ConversationId, position: parley_types::Position) -> Self {
        Self {
            conversation,
            last_message_id: position.id,
            last_seq: position.seq,
        }
    }

    pub fn position(&self) -> parley_types::Position {
        parley_types::Position {
            seq: self.last_seq,
            id: self.last_message_id,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SendMessage {
    pub conversation: ConversationId,
    pub client_msg_id: String,
    pub kind: MessageKind,
    pub content: String,
    pub media: Option<MediaRef>,
}

/// A frame from the server. `seq` echoes the request it answers; pushed events carry 0.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerFrame {
    pub seq: u32,
    pub body: ServerBody,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServerBody {
    Welcome(Welcome),
    Ack(Ack),
    MessageNew(Message),
    Typing {
        conversation: ConversationId,
        user: String,
        active: bool,
    },
    MessageRead {
        conversation: ConversationId,
        reader: String,
        up_to: MessageId,
        read_at_ms: i64,
    },
    HistoryPage {
        conversation: ConversationId,
        messages: Vec<Message>,
        next_before: Option<MessageId>,
    },
    ConversationPage {
        items: Vec<ConversationSummary>,
        next_cursor: Option<String>,
    },
    Presence {
        user: String,
        online: bool,
        last_seen_ms: i64,
    },
    Error {
        code: u16,
        message: String,
        fatal: bool,
    },
    Pong {
        nonce: u64,
        server_time_ms: i64,
    },
    Resumed {
        conversation: ConversationId,
        replayed: u32,
        complete: bool,
        /// The seq of the last message the replay sent (the resume point's when none).
        last_seq: u64,
    },
    ConversationDeleted {
        conversation: ConversationId,
        by: String,
    },
    ConversationUpdated(ConversationSummary),
    Goaway {
        reason: String,
        reconnect_after_ms: u32,
    },
    /// The answer to a Search (protocol 1.4).
    SearchResults {
        hits: Vec<SearchHit>,
        next_before: Option<MessageId>,
        next_offset: Option<u32>,
    },
}

impl ServerBody {
    pub fn kind(&self) -> FrameKind {
        match self {
            ServerBody::Welcome(_) => FrameKind::Welcome,
            ServerBody::Ack(_) => FrameKind::Ack,
            ServerBody::MessageNew(_) => FrameKind::MessageNew,
            ServerBody::Typing { .. } => FrameKind::Typing,
            ServerBody::MessageRead { .. } => FrameKind::MessageRead,
            ServerBody::HistoryPage { .. } => FrameKind::HistoryPage,
            ServerBody::ConversationPage { .. } => FrameKind::ConversationPage,
            ServerBody::Presence { .. } => FrameKind::Presence,
            ServerBody::Error { .. } => FrameKind::Error,
            ServerBody::Pong { .. } => FrameKind::Pong,
            ServerBody::Resumed { .. } => FrameKind::Resumed,
            ServerBody::ConversationDeleted { .. } => FrameKind::ConversationDeleted,
            ServerBody::ConversationUpdated(_) => FrameKind::ConversationUpdated,
            ServerBody::Goaway { .. } => FrameKind::Goaway,
            ServerBody::SearchResults { .. } => FrameKind::SearchResults,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Welcome {
    pub user: String,
    pub session_id: u64,
    pub node_id: u16,
    pub heartbeat_ms: u32,
    pub idle_timeout_ms: u32,
    pub protocol_major: u16,
    pub protocol_minor: u16,
    pub max_frame_bytes: u32,
    pub max_message_chars: u32,
    pub server_time_ms: i64,
    /// When the session's token expires (Unix ms); send `Refresh` before.
    pub token_expires_ms: i64,
}

/// Success of a request. For Send: the stored message's id, time and seq (and whether this
/// was a retry of an earlier Send); for Read: the watermark's; for other requests the fields
/// are zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Ack {
    pub message_id: MessageId,
    pub created_at_ms: i64,
    pub duplicate: bool,
    pub message_seq: u64,
}

impl ServerFrame {
    pub fn new(seq: u32, body: ServerBody) -> Self {
        Self { seq, body }
    }

    /// An event pushed without a request (seq 0).
    pub fn push(body: ServerBody) -> Self {
        Self { seq: 0, body }
    }
}
