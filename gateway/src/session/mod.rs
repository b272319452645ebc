//! The session protocol as a state machine without I/O.
//!
//! Bytes and the current time go in; frames to send and commands to execute come out. It knows
//! no sockets, runtime or storage: the driver (`conn`) feeds it what the transport read, runs
//! the commands (storage, fan-out) and writes the frames. So every protocol rule (hello first,
//! version check, auth, limits, rate, malformed input, heartbeats, idle and typing timers) is
//! tested in memory with a virtual clock.
//!
//! Call order for a driver: `handle_frame` for each frame read, `handle_timeout` whenever
//! `next_deadline` passes, `handle_oversized` when the transport refused a frame for its size,
//! `handle_transport_closed` once at the end. After an `Output::Close`, stop reading.

use std::sync::Arc;

use parley_types::{ConversationId, ListCursor, MAX_PAGE, MessageId, MessageKind};
use tokio::time::Instant;

use crate::auth::{AuthError, Authenticator};
use crate::clock::Now;

use crate::ratelimit::TokenBucket;
use parley_proto::codec::DecodeLimits;
use parley_proto::codec::server::decode_client;
use parley_proto::*;

/// Default and largest History page.
pub(crate) const HISTORY_DEFAULT: usize = 50;
/// Default Conversations page.
pub(crate) const CONVERSATIONS_DEFAULT: usize = 20;
/// Conversations one session may show as typing at once.
pub(crate) const MAX_TYPING: usize = 32;

/// How a frame reached the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Origin {
    /// The session's stream (WebSocket, or QUIC after the handshake).
    Stream,
    /// QUIC 0-RTT early data: possibly replayed.
    Early,
    /// A QUIC datagram: unreliable, possibly duplicated.
    Datagram,
}

/// Frames whose effect does not change when they are replayed (see `handle_frame_from`).
fn replay_safe(body: &ClientBody) -> bool {
    !matches!(body, ClientBody::Typing { .. } | ClientBody::Refresh { .. })
}

/// What the driver must do next.
// Outputs live for one step in a reused Vec; boxing the large frame variant would allocate on
// every reply instead.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Output {
    /// Send this frame to this session's client.
    Send(ServerFrame),
    /// Run this command (storage, fan-out) for the session.
    Do(Command),
    /// Close the session with this error's close code, after sending what was queued before.
    Close(ErrorCode),
}

/// Work that needs storage or other sessions. `seq` is the request's, for its answer.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Command {
    /// The session authenticated: register it, announce presence, replay missed messages.
    Start {
        user: Arc<str>,
        resume: Vec<ResumePoint>,
    },
    Join {
        seq: u32,
        conversation: ConversationId,
    },
    Leave {
        seq: u32,
        conversation: ConversationId,
    },
    Send {
        seq: u32,
        message: Box<SendMessage>,
    },
    /// Relay a typing state (`seq` 0 when the server itself ends it).
    Typing {
        seq: u32,
        conversation: ConversationId,
        active: bool,
    },
    Read {
        seq: u32,
        conversation: ConversationId,
        up_to: MessageId,
    },
    History {
        seq: u32,
        conversation: ConversationId,
        before: Option<MessageId>,
        limit: usize,
    },
    Conversations {
        seq: u32,
        cursor: Option<ListCursor>,
        limit: usize,
        /// Only those this matches (a conversation search).
        query: Option<String>,
    },
    /// Search the user's messages (protocol 1.4).
    Search {
        seq: u32,
        query: Box<parley_proto::SearchQuery>,
    },
    /// No pushes of `conversation` for the user (protocol 1.5): `None` unmutes; `Some(0)`
    /// until unmuted; else until that Unix ms.
    Mute {
        seq: u32,
        conversation: ConversationId,
        until: Option<i64>,
    },
}

#[derive(Debug)]
enum Phase {
    AwaitingHello {
        deadline: Instant,
    },
    Active {
        user: Arc<str>,
        /// The session ends when its (newest) token expires.
        token_expires: Instant,
    },
    Closed,
}

#[derive(Debug)]
struct TypingState {
    conversation: ConversationId,
    expires: Instant,
    relayed: Instant,
}

/// One client session's protocol state.
pub(crate) struct Session {
    limits: Arc<SessionLimits>,
    auth: Arc<Authenticator>,
    decode: DecodeLimits,
    id: u64,
    phase: Phase,
    last_rx: Instant,
    bad_frames: u32,
    frames: TokenBucket,
    typing: Vec<TypingState>,
    /// A fatal error was emitted: ignore further input.
    closing: bool,
    /// Goaway was sent: until this instant frames get `shutting_down`, then the session
    /// closes.
    draining: Option<Instant>,
}

impl Session {
    /// A new session with id `id`, connected at `now`.
    pub(crate) fn new(
        id: u64,
        limits: Arc<SessionLimits>,
        auth: Arc<Authenticator>,
        now: Now,
    ) -> Self {
        Self {
            decode: DecodeLimits::client(limits.max_frame_bytes, limits.max_resume_points),
            frames: TokenBucket::new(limits.frames_per_sec, limits.frame_burst, now.mono),
            phase: Phase::AwaitingHello {
                deadline: now.mono + limits.hello_timeout,
            },
            last_rx: now.mono,
            bad_frames: 0,
            typing: Vec::new(),
            closing: false,
            draining: None,
            id,
            limits,
            auth,
        }
    }

    /// The authenticated user, once Hello succeeded.
    #[cfg(test)]
    pub(crate) fn user(&self) -> Option<&Arc<str>> {
        match &self.phase {
            Phase::Active { user, .. } => Some(user),
            _ => None,
        }
    }

    /// Whether the session ended (or is ending after a fatal error).
    pub(crate) fn is_closed(&self) -> bool {
        self.closing || matches!(self.phase, Phase::Closed)
    }

    /// When `handle_timeout` must next be called.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        if self.closing {
            return None;
        }
        if let Some(end) = self.draining {
            return Some(end);
        }
        match &self.phase {
            Phase::AwaitingHello { deadline } => Some(*deadline),
            Phase::Active { token_expires, .. } => {
                let idle = self.last_rx + self.limits.idle_timeout;
                Some(
                    self.typing
                        .iter()
                        .map(|t| t.expires)
                        .fold(idle.min(*token_expires), Instant::min),
                )
            }
            Phase::Closed => None,
        }
    }

    /// One frame (one WebSocket message / one length-prefixed QUIC frame) from the client.
    /// Returns the decoded body's kind (None: not decodable), for metrics.
    #[cfg(test)]
    pub(crate) fn handle_frame(
        &mut self,
        now: Now,
        bytes: &[u8],
        out: &mut Vec<Output>,
    ) -> Option<ClientKind> {
        self.handle_frame_from(now, bytes, Origin::Stream, out)
    }

    /// A frame that arrived by `origin` (QUIC: 0-RTT early data, or a datagram).
    ///
    /// - Early data may be a replay by an attacker, so only replay-safe frames are accepted:
    ///   Hello, Ping, Join, Leave, History, Conversations and Search have no lasting effect, Send is
    ///   idempotent by client_msg_id and Read only moves a watermark forward. Anything else
    ///   gets `early_data` (1008) and must be sent again after the handshake.
    /// - Datagrams carry only Typing; anything else, or undecodable, is ignored (a datagram
    ///   may be lost or duplicated anyway, so it never counts as a bad frame).
    pub(crate) fn handle_frame_from(
        &mut self,
        now: Now,
        bytes: &[u8],
        origin: Origin,
        out: &mut Vec<Output>,
    ) -> Option<ClientKind> {
        if self.is_closed() {
            return None;
        }
        if origin == Origin::Datagram {
            let frame = decode_client(bytes, &self.decode).ok()?;
            if !matches!(frame.body, ClientBody::Typing { .. })
                || !matches!(self.phase, Phase::Active { .. })
            {
                return None;
            }
            self.last_rx = now.mono;
            let kind = frame.body.kind();
            if self.frames.try_take(now.mono) {
                self.active(now, frame.seq, frame.body, out);
            }
            return Some(kind);
        }
        if origin == Origin::Early
            && let Ok(frame) = decode_client(bytes, &self.decode)
            && !replay_safe(&frame.body)
        {
            self.last_rx = now.mono;
            let msg = "not accepted as 0-RTT early data; send it again after the handshake";
            error(out, frame.seq, ErrorCode::EarlyData, msg);
            return Some(frame.body.kind());
        }
        self.last_rx = now.mono;
        let frame = match decode_client(bytes, &self.decode) {
            Ok(f) => f,
            Err(e) => {
                self.bad_frames += 1;
                if self.bad_frames > self.limits.max_bad_frames {
                    self.fail(
                        0,
                        ErrorCode::TooManyBadFrames,
                        "too many malformed frames",
                        out,
                    );
                } else {
                    error(out, 0, ErrorCode::BadFrame, e.to_string());
                }
                return None;
            }
        };
        let kind = frame.body.kind();
        if self.draining.is_some() {
            let msg = "server shutting down; reconnect and send it again";
            error(out, frame.seq, ErrorCode::ShuttingDown, msg);
            return Some(kind);
        }
        if !self.frames.try_take(now.mono) {
            error(
                out,
                frame.seq,
                ErrorCode::RateLimited,
                "too many frames; slow down",
            );
            return Some(kind);
        }
        let seq = frame.seq;
        match &self.phase {
            Phase::AwaitingHello { .. } => match frame.body {
                ClientBody::Hello(hello) => self.hello(now, seq, hello, out),
                _ => self.fail(seq, ErrorCode::NotAuthenticated, "send Hello first", out),
            },
            Phase::Active { .. } => self.active(now, seq, frame.body, out),
            Phase::Closed => {}
        }
        Some(kind)
    }

    /// The transport refused a frame larger than `max_frame_bytes` (it cannot read past it).
    pub(crate) fn handle_oversized(&mut self, out: &mut Vec<Output>) {
        let msg = format!("frame larger than {} bytes", self.limits.max_frame_bytes);
        self.fail(0, ErrorCode::FrameTooLarge, msg, out);
    }

    /// Timers: hello timeout, idle timeout, token expiry, typing expiry.
    pub(crate) fn handle_timeout(&mut self, now: Now, out: &mut Vec<Output>) {
        if self.closing {
            return;
        }
        if let Some(end) = self.draining {
            if now.mono >= end {
                self.fail(
                    0,
                    ErrorCode::ShuttingDown,
                    "server shutting down; reconnect",
                    out,
                );
            }
            return;
        }
        match &self.phase {
            Phase::AwaitingHello { deadline } if now.mono >= *deadline => {
                self.fail(0, ErrorCode::HelloTimeout, "no Hello in time", out);
            }
            Phase::Active { token_expires, .. } if now.mono >= *token_expires => {
                let msg = "the session's token expired: send Refresh before it does, or \
                           reconnect with a fresh token";
                self.fail(0, ErrorCode::TokenExpired, msg, out);
            }
            Phase::Active { .. } => {
                if now.mono >= self.last_rx + self.limits.idle_timeout {
                    let msg = "nothing received within the idle timeout";
                    self.fail(0, ErrorCode::IdleTimeout, msg, out);
                    return;
                }
                self.typing.retain(|t| {
                    if t.expires <= now.mono {
                        out.push(Output::Do(Command::Typing {
                            seq: 0,
                            conversation: t.conversation,
                            active: false,
                        }));
                        false
                    } else {
                        true
                    }
                });
            }
            _ => {}
        }
    }

    /// The server is shutting down: tell the client to reconnect (Goaway). Frames that were
    /// already on their way are answered with `shutting_down` (by their seq) for the drain
    /// time; then the session closes. A session without Hello closes at once.
    pub(crate) fn handle_shutdown(&mut self, now: Now, out: &mut Vec<Output>) {
        if self.is_closed() || self.draining.is_some() {
            return;
        }
        out.push(Output::Send(ServerFrame::push(ServerBody::Goaway {
            reason: "server shutting down".into(),
            reconnect_after_ms: 0,
        })));
        let drain = self.limits.shutdown_drain;
        if matches!(self.phase, Phase::Active { .. }) && !drain.is_zero() {
            self.draining = Some(now.mono + drain);
        } else {
            self.fail(
                0,
                ErrorCode::ShuttingDown,
                "server shutting down; reconnect",
                out,
            );
        }
    }

    /// The node may have missed events for this session (cluster bus gap): tell the client to
    /// reconnect and resume, which replays what it missed from storage.
    pub(crate) fn handle_resync(&mut self, out: &mut Vec<Output>) {
        if self.is_closed() {
            return;
        }
        out.push(Output::Send(ServerFrame::push(ServerBody::Goaway {
            reason: "resync: reconnect and resume".into(),
            reconnect_after_ms: 0,
        })));
        self.fail(
            0,
            ErrorCode::Resync,
            "events may have been missed; reconnect and resume",
            out,
        );
    }

    /// The connection is gone: end typing states the client left active.
    pub(crate) fn handle_transport_closed(&mut self, out: &mut Vec<Output>) {
        for t in self.typing.drain(..) {
            out.push(Output::Do(Command::Typing {
                seq: 0,
                conversation: t.conversation,
                active: false,
            }));
        }
        self.phase = Phase::Closed;
    }

    fn fail(
        &mut self,
        seq: u32,
        code: ErrorCode,
        message: impl Into<String>,
        out: &mut Vec<Output>,
    ) {
        out.push(Output::Send(ServerFrame::new(
            seq,
            ServerBody::Error {
                code: code.code(),
                message: message.into(),
                fatal: true,
            },
        )));
        out.push(Output::Close(code));
        // Typing states end in handle_transport_closed, which the driver calls next.
        self.closing = true;
    }

    fn hello(&mut self, now: Now, seq: u32, hello: Hello, out: &mut Vec<Output>) {
        if hello.protocol_major != PROTOCOL_MAJOR {
            let msg = format!(
                "protocol {}.{} not supported; this server speaks {PROTOCOL_MAJOR}.x",
                hello.protocol_major, hello.protocol_minor
            );
            return self.fail(seq, ErrorCode::UnsupportedVersion, msg, out);
        }
        let verified = match self.auth.verify(&hello.token, now.wall_ms) {
            Ok(v) => v,
            Err(AuthError::Expired) => {
                return self.fail(seq, ErrorCode::TokenExpired, "token expired", out);
            }
            Err(AuthError::Invalid(why)) => {
                return self.fail(
                    seq,
                    ErrorCode::AuthFailed,
                    format!("invalid token: {why}"),
                    out,
                );
            }
        };
        if hello.resume.len() > self.limits.max_resume_points {
            let msg = format!("at most {} resume points", self.limits.max_resume_points);
            return self.fail(seq, ErrorCode::Invalid, msg, out);
        }
        // Each conversation resumed costs what a History of it would: one frame of the
        // session's rate. The replay is already accepted, so the frames after it pay.
        let resumed = distinct_conversations(&hello.resume);
        if resumed > 1 {
            let debt = self.limits.max_resume_points as f64;
            self.frames.charge((resumed - 1) as f64, debt, now.mono);
        }
        let user: Arc<str> = verified.user.into();
        let token_expires = expiry(now, verified.expires_ms);
        let l = &self.limits;
        out.push(Output::Send(ServerFrame::new(
            seq,
            ServerBody::Welcome(Welcome {
                user: user.to_string(),
                session_id: self.id,
                node_id: l.node_id,
                heartbeat_ms: l.heartbeat.as_millis() as u32,
                idle_timeout_ms: l.idle_timeout.as_millis() as u32,
                protocol_major: PROTOCOL_MAJOR,
                protocol_minor: PROTOCOL_MINOR,
                max_frame_bytes: l.max_frame_bytes as u32,
                max_message_chars: l.max_message_chars as u32,
                server_time_ms: now.wall_ms,
                token_expires_ms: verified.expires_ms,
            }),
        )));
        out.push(Output::Do(Command::Start {
            user: user.clone(),
            resume: hello.resume,
        }));
        self.phase = Phase::Active {
            user,
            token_expires,
        };
    }

    fn active(&mut self, now: Now, seq: u32, body: ClientBody, out: &mut Vec<Output>) {
        let cmd = match body {
            ClientBody::Hello(_) => {
                return error(
                    out,
                    seq,
                    ErrorCode::AlreadyAuthenticated,
                    "already authenticated",
                );
            }
            ClientBody::Ping { nonce } => {
                out.push(Output::Send(ServerFrame::new(
                    seq,
                    ServerBody::Pong {
                        nonce,
                        server_time_ms: now.wall_ms,
                    },
                )));
                return;
            }
            ClientBody::Refresh { token } => return self.refresh(now, seq, &token, out),
            ClientBody::Join { conversation } => Command::Join { seq, conversation },
            ClientBody::Leave { conversation } => Command::Leave { seq, conversation },
            ClientBody::Send(message) => match validate_send(&self.limits, &message) {
                Ok(()) => Command::Send {
                    seq,
                    message: Box::new(message),
                },
                Err((code, why)) => return error(out, seq, code, why),
            },
            ClientBody::Typing {
                conversation,
                active,
            } => match self.typing(now.mono, conversation, active) {
                Ok(true) => Command::Typing {
                    seq,
                    conversation,
                    active,
                },
                Ok(false) => return,
                Err(()) => {
                    let msg = "typing in too many conversations at once";
                    return error(out, seq, ErrorCode::RateLimited, msg);
                }
            },
            ClientBody::Read {
                conversation,
                up_to,
            } => Command::Read {
                seq,
                conversation,
                up_to,
            },
            ClientBody::History {
                conversation,
                before,
                limit,
            } => Command::History {
                seq,
                conversation,
                before,
                limit: page_size(limit, HISTORY_DEFAULT),
            },
            ClientBody::Search(query) => Command::Search {
                seq,
                query: Box::new(query),
            },
            ClientBody::Mute {
                conversation,
                muted,
                until_ms,
            } => {
                let until = match (muted, until_ms) {
                    (false, _) => None,
                    (true, 0) => Some(0),
                    (true, t) if t > now.wall_ms => Some(t),
                    (true, _) => {
                        let why = "until_ms must be a future time (Unix ms), or 0";
                        return error(out, seq, ErrorCode::Invalid, why);
                    }
                };
                Command::Mute {
                    seq,
                    conversation,
                    until,
                }
            }
            ClientBody::Conversations {
                cursor,
                limit,
                query,
            } => {
                let cursor = match cursor.map(|c| c.parse::<ListCursor>()).transpose() {
                    Ok(c) => c,
                    Err(()) => return error(out, seq, ErrorCode::Invalid, "malformed cursor"),
                };
                Command::Conversations {
                    seq,
                    cursor,
                    limit: page_size(limit, CONVERSATIONS_DEFAULT),
                    query,
                }
            }
        };
        out.push(Output::Do(cmd));
    }

    /// Updates typing state; `Ok(true)` when the change must be relayed.
    fn typing(
        &mut self,
        now: Instant,
        conversation: ConversationId,
        active: bool,
    ) -> Result<bool, ()> {
        let ttl = self.limits.typing_ttl;
        let pos = self
            .typing
            .iter()
            .position(|t| t.conversation == conversation);
        match (pos, active) {
            (None, false) => Ok(false),
            (Some(i), false) => {
                self.typing.swap_remove(i);
                Ok(true)
            }
            (Some(i), true) => {
                let t = &mut self.typing[i];
                t.expires = now + ttl;
                // Refreshes are relayed at most every half TTL so receivers' timers stay alive
                // without echoing every keystroke.
                if now >= t.relayed + ttl / 2 {
                    t.relayed = now;
                    Ok(true)
                } else {
                    Ok(false)
                }
            }
            (None, true) => {
                if self.typing.len() >= MAX_TYPING {
                    return Err(());
                }
                self.typing.push(TypingState {
                    conversation,
                    expires: now + ttl,
                    relayed: now,
                });
                Ok(true)
            }
        }
    }
}

impl Session {
    /// A fresh token for this session: the same user's, expiring later. Answered by an Ack
    /// whose `created_at_ms` is the new expiry; a refused one leaves the old expiry in force.
    fn refresh(&mut self, now: Now, seq: u32, token: &str, out: &mut Vec<Output>) {
        let Phase::Active {
            user,
            token_expires,
        } = &mut self.phase
        else {
            return;
        };
        let v = match self.auth.verify(token, now.wall_ms) {
            Ok(v) => v,
            Err(AuthError::Expired) => {
                return error(out, seq, ErrorCode::TokenExpired, "that token expired");
            }
            Err(AuthError::Invalid(why)) => {
                let msg = format!("invalid token: {why}");
                return error(out, seq, ErrorCode::AuthFailed, msg);
            }
        };
        if *v.user != **user {
            let msg = "a session's token can only be refreshed with one for the same user";
            return error(out, seq, ErrorCode::Forbidden, msg);
        }
        *token_expires = (*token_expires).max(expiry(now, v.expires_ms));
        let ack = Ack {
            created_at_ms: v.expires_ms,
            ..Ack::default()
        };
        out.push(Output::Send(ServerFrame::new(seq, ServerBody::Ack(ack))));
    }
}

/// The monotonic instant of a wall-clock expiry.
fn expiry(now: Now, expires_ms: i64) -> Instant {
    let left = u64::try_from(expires_ms.saturating_sub(now.wall_ms)).unwrap_or(0);
    now.mono + std::time::Duration::from_millis(left)
}

/// The content rules of a Send (id, length in characters, kind and media), shared with REST.
pub(crate) fn validate_send(
    limits: &SessionLimits,
    m: &SendMessage,
) -> Result<(), (ErrorCode, String)> {
    let invalid = |why: &str| Err((ErrorCode::Invalid, why.to_owned()));
    if let Err(why) = parley_types::rules::client_msg_id(&m.client_msg_id) {
        return invalid(&format!("client_msg_id {why}"));
    }
    let chars = m.content.chars().count();
    if chars > limits.max_message_chars {
        return Err((
            ErrorCode::MessageTooLong,
            format!(
                "message has {chars} characters; the limit is {}",
                limits.max_message_chars
            ),
        ));
    }
    match (&m.kind, &m.media) {
        (MessageKind::Hidden, _) => invalid("hidden is a kind only the server sends"),
        (MessageKind::Text, Some(_)) => invalid("text messages carry no media"),
        (MessageKind::Text, None) if m.content.trim().is_empty() => {
            invalid("message content must not be empty")
        }
        (MessageKind::Image | MessageKind::File, None) => {
            invalid("image and file messages need media")
        }
        (_, Some(media)) => {
            if !media.url.is_empty() {
                return invalid(
                    "outside media URLs are refused: upload with POST /api/media and send its id",
                );
            }
            if media.id.parse::<uuid::Uuid>().is_err() {
                return invalid("media_id must be the id POST /api/media returned");
            }
            Ok(())
        }
        (MessageKind::Text, None) => Ok(()),
    }
}

fn page_size(asked: u16, default: usize) -> usize {
    match asked {
        0 => default,
        n => usize::from(n).min(MAX_PAGE),
    }
}

fn error(out: &mut Vec<Output>, seq: u32, code: ErrorCode, message: impl Into<String>) {
    out.push(Output::Send(ServerFrame::new(
        seq,
        ServerBody::Error {
            code: code.code(),
            message: message.into(),
            fatal: false,
        },
    )));
}

#[cfg(test)]
mod tests;

pub(crate) mod limits;
pub(crate) use limits::SessionLimits;

/// How many conversations the resume points name (each is replayed once).
fn distinct_conversations(points: &[ResumePoint]) -> usize {
    let mut ids: Vec<_> = points.iter().map(|p| p.conversation).collect();
    ids.sort_unstable();
    ids.dedup();
    ids.len()
}
