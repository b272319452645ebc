//! Every error a client can see, with its stable numeric code and the WebSocket close code
//! that ends a session with it: the one mapping of error → wire code → close code (the
//! gateway adds HTTP statuses in its `errors` module). Clients decode `Error` frames with it.

/// Stable error codes carried by `Error` frames and REST error bodies. Never renumber.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum ErrorCode {
    /// The frame could not be decoded or verified.
    BadFrame = 1000,
    /// Hello carried a protocol major version this server does not speak.
    UnsupportedVersion = 1001,
    /// A frame other than Hello arrived before Hello.
    NotAuthenticated = 1002,
    /// A second Hello on an authenticated session.
    AlreadyAuthenticated = 1003,
    /// The frame is larger than the configured maximum.
    FrameTooLarge = 1004,
    /// Too many malformed frames on one session.
    TooManyBadFrames = 1005,
    /// No Hello within the hello timeout.
    HelloTimeout = 1006,
    /// Nothing received within the idle timeout.
    IdleTimeout = 1007,
    /// A frame that is not replay-safe arrived as QUIC 0-RTT early data; send it again after
    /// the handshake (only Hello, Ping, Join, Leave, History, Conversations, Search, Send and Read are
    /// accepted early).
    EarlyData = 1008,
    /// The token is missing, malformed or its signature is wrong.
    AuthFailed = 1100,
    /// The token has expired.
    TokenExpired = 1101,
    /// Unknown conversation (or one the user cannot see).
    NotFound = 1200,
    /// The user may not do this (not a participant, not the owner).
    Forbidden = 1201,
    /// A block between the users forbids it.
    Blocked = 1202,
    /// A moderator banned the user: the session is closed, new ones and REST calls refused.
    Banned = 1203,
    /// A moderator muted the user: sending is refused until the time the message names.
    Muted = 1204,
    /// A moderation rule refused the message (the error's message says why); nothing stored.
    Moderated = 1205,
    /// A moderation rule held the message for review: not delivered (nor stored in the
    /// conversation) unless a moderator releases it.
    Held = 1206,
    /// The request is invalid (a field is missing, empty or malformed).
    Invalid = 1300,
    /// The message is longer than the configured maximum.
    MessageTooLong = 1301,
    /// An upload's bytes are of a type the server does not accept (typed by content, never by
    /// the name or the header).
    MediaUnsupported = 1302,
    /// An upload is larger than its type's limit (bytes, or an image's pixels).
    MediaTooLarge = 1303,
    /// Too many requests; slow down.
    RateLimited = 1400,
    /// The user has as many sessions on this node as it allows; close one first.
    TooManySessions = 1402,
    /// The session did not read fast enough and was closed; reconnect and resume.
    SlowConsumer = 1500,
    /// Storage cannot serve right now; nothing was stored, retrying later is safe.
    StorageUnavailable = 1600,
    /// A bug on the server.
    Internal = 1601,
    /// This node does not offer the feature (e.g. search on a storage engine without an
    /// index); retrying will not help.
    Unsupported = 1602,
    /// The server is shutting down; reconnect (to any node).
    ShuttingDown = 1700,
    /// Events may have been missed (the cluster bus lost some); reconnect and resume.
    Resync = 1701,
}

impl ErrorCode {
    /// The numeric wire code.
    pub fn code(self) -> u16 {
        self as u16
    }

    /// The code for a numeric value (clients decoding Error frames).
    pub fn from_code(code: u16) -> Option<Self> {
        use ErrorCode::*;
        [
            BadFrame,
            UnsupportedVersion,
            NotAuthenticated,
            AlreadyAuthenticated,
            FrameTooLarge,
            TooManyBadFrames,
            HelloTimeout,
            IdleTimeout,
            EarlyData,
            AuthFailed,
            TokenExpired,
            NotFound,
            Forbidden,
            Blocked,
            Banned,
            Muted,
            Moderated,
            Held,
            Invalid,
            MessageTooLong,
            MediaUnsupported,
            MediaTooLarge,
            RateLimited,
            TooManySessions,
            SlowConsumer,
            StorageUnavailable,
            Internal,
            Unsupported,
            ShuttingDown,
            Resync,
        ]
        .into_iter()
        .find(|c| c.code() == code)
    }

    /// snake_case name used in REST error bodies and logs.
    pub fn name(self) -> &'static str {
        use ErrorCode::*;
        match self {
            BadFrame => "bad_frame",
            UnsupportedVersion => "unsupported_version",
            NotAuthenticated => "not_authenticated",
            AlreadyAuthenticated => "already_authenticated",
            FrameTooLarge => "frame_too_large",
            TooManyBadFrames => "too_many_bad_frames",
            HelloTimeout => "hello_timeout",
            IdleTimeout => "idle_timeout",
            EarlyData => "early_data",
            AuthFailed => "auth_failed",
            TokenExpired => "token_expired",
            NotFound => "not_found",
            Forbidden => "forbidden",
            Blocked => "blocked",
            Banned => "banned",
            Muted => "muted",
            Moderated => "moderated",
            Held => "held",
            Invalid => "invalid",
            MessageTooLong => "message_too_long",
            MediaUnsupported => "media_unsupported",
            MediaTooLarge => "media_too_large",
            RateLimited => "rate_limited",
            TooManySessions => "too_many_sessions",
            SlowConsumer => "slow_consumer",
            StorageUnavailable => "storage_unavailable",
            Internal => "internal",
            Unsupported => "unsupported",
            ShuttingDown => "shutting_down",
            Resync => "resync",
        }
    }

    /// The WebSocket close code sent when this error ends a session: the standard code where
    /// one fits (1009 too big, 1012 restart), otherwise 3000 + the error code (4xxx).
    pub fn close_code(self) -> u16 {
        match self {
            ErrorCode::FrameTooLarge => close::MESSAGE_TOO_BIG,
            ErrorCode::ShuttingDown | ErrorCode::Resync => close::SERVICE_RESTART,
            ErrorCode::Internal => close::INTERNAL_ERROR,
            other => close::APPLICATION + other.code(),
        }
    }
}

/// WebSocket close codes (RFC 6455 §7.4) the server sends or interprets. A QUIC connection
/// closes with the same numbers as its application error code (0 for a normal close).
pub mod close {
    /// Normal closure.
    pub const NORMAL: u16 = 1000;
    /// A protocol violation (bad framing, unmasked frame, bad close payload).
    pub const PROTOCOL_ERROR: u16 = 1002;
    /// Never sent: "the connection ended without a close frame".
    pub const ABNORMAL: u16 = 1006;
    /// A text message that is not UTF-8.
    pub const INVALID_PAYLOAD: u16 = 1007;
    /// A message over the size limit.
    pub const MESSAGE_TOO_BIG: u16 = 1009;
    /// The server hit a bug.
    pub const INTERNAL_ERROR: u16 = 1011;
    /// The server is restarting (or resyncing): reconnect.
    pub const SERVICE_RESTART: u16 = 1012;
    /// Application close codes are `APPLICATION + error code` (4xxx for Parley's 1xxx codes).
    pub const APPLICATION: u16 = 3000;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_close_codes_are_valid() {
        for code in 0..=u16::MAX {
            if let Some(c) = ErrorCode::from_code(code) {
                assert_eq!(c.code(), code);
                let close = c.close_code();
                // RFC 6455: 1000-2999 defined by the RFC, 3000-4999 for applications.
                assert!((1000..5000).contains(&close), "{c:?}");
                assert_ne!(close, 1005);
                assert_ne!(close, close::ABNORMAL);
            }
        }
        assert_eq!(ErrorCode::from_code(1500), Some(ErrorCode::SlowConsumer));
        assert_eq!(ErrorCode::SlowConsumer.close_code(), 4500);
    }
}
