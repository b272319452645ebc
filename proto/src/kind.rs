//! What a frame is, as one enum per direction instead of raw numbers: metrics label frames by
//! it, events carry it, transports pick a channel by it (typing may travel as a QUIC datagram).

/// The kind of a server → client frame. Events carry it from the encoder to the shards and over
/// the cluster bus (as [`FrameKind::code`]), so nobody re-derives it from the encoded bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FrameKind {
    Welcome,
    Ack,
    MessageNew,
    Typing,
    MessageRead,
    HistoryPage,
    ConversationPage,
    Presence,
    Error,
    Pong,
    Resumed,
    ConversationDeleted,
    ConversationUpdated,
    Goaway,
    SearchResults,
}

impl FrameKind {
    /// Every kind, in [`FrameKind::index`] order.
    pub const ALL: [FrameKind; 15] = [
        FrameKind::Welcome,
        FrameKind::Ack,
        FrameKind::MessageNew,
        FrameKind::Typing,
        FrameKind::MessageRead,
        FrameKind::HistoryPage,
        FrameKind::ConversationPage,
        FrameKind::Presence,
        FrameKind::Error,
        FrameKind::Pong,
        FrameKind::Resumed,
        FrameKind::ConversationDeleted,
        FrameKind::ConversationUpdated,
        FrameKind::Goaway,
        FrameKind::SearchResults,
    ];

    /// Dense index 0..ALL.len() (metrics arrays).
    pub fn index(self) -> usize {
        self as usize
    }

    /// A stable one-byte code (the cluster bus's encoding of an event's kind).
    pub fn code(self) -> u8 {
        self as u8
    }

    /// The kind of a [`FrameKind::code`].
    pub fn from_code(code: u8) -> Option<Self> {
        Self::ALL.get(usize::from(code)).copied()
    }

    /// snake_case name (metrics labels).
    pub fn name(self) -> &'static str {
        match self {
            FrameKind::Welcome => "welcome",
            FrameKind::Ack => "ack",
            FrameKind::MessageNew => "message_new",
            FrameKind::Typing => "typing",
            FrameKind::MessageRead => "message_read",
            FrameKind::HistoryPage => "history_page",
            FrameKind::ConversationPage => "conversation_page",
            FrameKind::Presence => "presence",
            FrameKind::Error => "error",
            FrameKind::Pong => "pong",
            FrameKind::Resumed => "resumed",
            FrameKind::ConversationDeleted => "conversation_deleted",
            FrameKind::ConversationUpdated => "conversation_updated",
            FrameKind::Goaway => "goaway",
            FrameKind::SearchResults => "search_results",
        }
    }

    /// Whether a transport may send it unreliably (a QUIC datagram): typing indicators, which
    /// expire by themselves.
    pub fn may_be_datagram(self) -> bool {
        self == FrameKind::Typing
    }
}

/// The kind of a client → server frame (metrics labels).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ClientKind {
    Hello,
    Join,
    Leave,
    Send,
    Typing,
    Read,
    History,
    Conversations,
    Ping,
    Refresh,
    Search,
    Mute,
}

impl ClientKind {
    /// Every kind, in [`ClientKind::index`] order.
    pub const ALL: [ClientKind; 12] = [
        ClientKind::Hello,
        ClientKind::Join,
        ClientKind::Leave,
        ClientKind::Send,
        ClientKind::Typing,
        ClientKind::Read,
        ClientKind::History,
        ClientKind::Conversations,
        ClientKind::Ping,
        ClientKind::Refresh,
        ClientKind::Search,
        ClientKind::Mute,
    ];

    /// Dense index 0..ALL.len() (metrics arrays).
    pub fn index(self) -> usize {
        self as usize
    }

    /// snake_case name (metrics labels).
    pub fn name(self) -> &'static str {
        match self {
            ClientKind::Hello => "hello",
            ClientKind::Join => "join",
            ClientKind::Leave => "leave",
            ClientKind::Send => "send",
            ClientKind::Typing => "typing",
            ClientKind::Read => "read",
            ClientKind::History => "history",
            ClientKind::Conversations => "conversations",
            ClientKind::Ping => "ping",
            ClientKind::Refresh => "refresh",
            ClientKind::Search => "search",
            ClientKind::Mute => "mute",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_indexes_round_trip() {
        for (i, k) in FrameKind::ALL.iter().enumerate() {
            assert_eq!(k.index(), i);
            assert_eq!(FrameKind::from_code(k.code()), Some(*k));
        }
        assert_eq!(FrameKind::from_code(200), None);
        for (i, k) in ClientKind::ALL.iter().enumerate() {
            assert_eq!(k.index(), i);
        }
    }
}
