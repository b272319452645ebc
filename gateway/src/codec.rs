//! The only module (besides `parley-schema`) that knows the wire format: FlatBuffers frames to
//! and from the plain types of [`crate::protocol`].
//!
//! Decoding runs the FlatBuffers verifier with explicit limits before touching a field, so
//! malformed or hostile input becomes a [`DecodeError`], never a panic. Encoding reuses one
//! builder per thread; a fan-out event is encoded once and its `Bytes` shared by every recipient.

use std::cell::RefCell;

use bytes::Bytes;
use flatbuffers::{FlatBufferBuilder, ForwardsUOffset, Vector, VerifierOptions, WIPOffset};
use parley_schema::wire as w;
use parley_storage::{
    Conversation, ConversationId, ConversationKind, ConversationSummary, MediaRef, Message,
    MessageId, MessageKind,
};

use crate::protocol::*;

/// Participants listed per conversation in list pages and updates (the count is always exact).
pub const MAX_LISTED_PARTICIPANTS: usize = 100;

/// Why a frame could not be decoded. The text is safe to send back to the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("frame is not a valid flatbuffer: {0}")]
    Invalid(String),
    #[error("frame has no body or an unknown body type")]
    UnknownBody,
    #[error("{0}")]
    BadField(&'static str),
}

/// Verifier limits for frames from clients.
#[derive(Clone, Debug)]
pub struct DecodeLimits {
    opts: VerifierOptions,
}

impl DecodeLimits {
    /// Limits for client frames of at most `max_frame_bytes` carrying at most `max_resume`
    /// resume points (the frame with the most tables).
    pub fn client(max_frame_bytes: usize, max_resume: usize) -> Self {
        Self {
            opts: VerifierOptions {
                max_depth: 8,
                max_tables: max_resume + 16,
                max_apparent_size: max_frame_bytes.saturating_mul(2),
                ignore_missing_null_terminator: false,
            },
        }
    }

    /// Limits for server frames read by clients (tests, load test): pages are bigger.
    pub fn server() -> Self {
        Self {
            opts: VerifierOptions {
                max_depth: 16,
                max_tables: 1_000_000,
                max_apparent_size: 256 << 20,
                ignore_missing_null_terminator: false,
            },
        }
    }
}

// ------------------------------------------------------------------------------ decoding

fn conv(u: &w::Uuid) -> ConversationId {
    ConversationId::from_halves(u.hi(), u.lo())
}

fn kind_of(k: w::MessageKind) -> Result<MessageKind, DecodeError> {
    MessageKind::from_code(k.0).ok_or(DecodeError::BadField("unknown message kind"))
}

fn media_of(m: Option<w::MediaRef<'_>>) -> Option<MediaRef> {
    m.map(|m| MediaRef {
        url: m.url().unwrap_or_default().to_owned(),
        mime_type: m.mime_type().unwrap_or_default().to_owned(),
        size_bytes: m.size_bytes(),
        name: m.name().unwrap_or_default().to_owned(),
        width: m.width(),
        height: m.height(),
    })
}

fn opt_id(id: u64) -> Option<MessageId> {
    (id != 0).then_some(MessageId(id))
}

/// Decodes and verifies one client frame.
pub fn decode_client(buf: &[u8], limits: &DecodeLimits) -> Result<ClientFrame, DecodeError> {
    let f = flatbuffers::root_with_opts::<w::ClientFrame>(&limits.opts, buf)
        .map_err(|e| DecodeError::Invalid(e.to_string()))?;
    let body = match f.body_type() {
        w::ClientBody::Hello => {
            let h = f.body_as_hello().ok_or(DecodeError::UnknownBody)?;
            ClientBody::Hello(Hello {
                token: h.token().to_owned(),
                protocol_major: h.protocol_major(),
                protocol_minor: h.protocol_minor(),
                resume: h
                    .resume()
                    .map(|v| {
                        v.iter()
                            .map(|r| ResumePoint {
                                conversation: conv(r.conversation()),
                                last_message_id: MessageId(r.last_message_id()),
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
                client_name: h.client_name().map(str::to_owned),
            })
        }
        w::ClientBody::Join => {
            let j = f.body_as_join().ok_or(DecodeError::UnknownBody)?;
            ClientBody::Join {
                conversation: conv(j.conversation()),
            }
        }
        w::ClientBody::Leave => {
            let l = f.body_as_leave().ok_or(DecodeError::UnknownBody)?;
            ClientBody::Leave {
                conversation: conv(l.conversation()),
            }
        }
        w::ClientBody::Send => {
            let s = f.body_as_send().ok_or(DecodeError::UnknownBody)?;
            ClientBody::Send(SendMessage {
                conversation: conv(s.conversation()),
                client_msg_id: s.client_msg_id().to_owned(),
                kind: kind_of(s.kind())?,
                content: s.content().unwrap_or_default().to_owned(),
                media: media_of(s.media()),
            })
        }
        w::ClientBody::Typing => {
            let t = f.body_as_typing().ok_or(DecodeError::UnknownBody)?;
            ClientBody::Typing {
                conversation: conv(t.conversation()),
                active: t.active(),
            }
        }
        w::ClientBody::Read => {
            let r = f.body_as_read().ok_or(DecodeError::UnknownBody)?;
            ClientBody::Read {
                conversation: conv(r.conversation()),
                up_to: MessageId(r.up_to()),
            }
        }
        w::ClientBody::History => {
            let h = f.body_as_history().ok_or(DecodeError::UnknownBody)?;
            ClientBody::History {
                conversation: conv(h.conversation()),
                before: opt_id(h.before()),
                limit: h.limit(),
            }
        }
        w::ClientBody::Conversations => {
            let c = f.body_as_conversations().ok_or(DecodeError::UnknownBody)?;
            ClientBody::Conversations {
                cursor: c.cursor().filter(|c| !c.is_empty()).map(str::to_owned),
                limit: c.limit(),
            }
        }
        w::ClientBody::Ping => {
            let p = f.body_as_ping().ok_or(DecodeError::UnknownBody)?;
            ClientBody::Ping { nonce: p.nonce() }
        }
        _ => return Err(DecodeError::UnknownBody),
    };
    Ok(ClientFrame { seq: f.seq(), body })
}

fn message_of(m: w::Message<'_>) -> Result<Message, DecodeError> {
    Ok(Message {
        id: MessageId(m.id()),
        conversation: conv(m.conversation()),
        sender: m.sender_id().unwrap_or_default().to_owned(),
        kind: kind_of(m.kind())?,
        content: m.content().unwrap_or_default().to_owned(),
        media: media_of(m.media()),
        client_msg_id: m.client_msg_id().unwrap_or_default().to_owned(),
        created_at_ms: m.created_at_ms(),
        seq: 0,
    })
}

fn summary_of(i: w::ConversationItem<'_>) -> Result<ConversationSummary, DecodeError> {
    let participants: Vec<String> = i
        .participant_ids()
        .map(|v| v.iter().map(str::to_owned).collect())
        .unwrap_or_default();
    let kind = match i.kind() {
        w::ConversationKind::Group => ConversationKind::Group {
            title: i.title().unwrap_or_default().to_owned(),
            creator: String::new(),
        },
        _ => ConversationKind::Direct {
            buyer: i.buyer_id().unwrap_or_default().to_owned(),
            seller: i.seller_id().unwrap_or_default().to_owned(),
            listing: i.listing_id().unwrap_or_default().to_owned(),
        },
    };
    let last_message = i.last_message().map(message_of).transpose()?;
    Ok(ConversationSummary {
        conversation: Conversation {
            id: conv(i.id()),
            kind,
            participants,
            created_at_ms: i.created_at_ms(),
            last_activity_ms: i.last_activity_ms(),
            last_message_id: last_message.as_ref().map(|m| m.id),
            last_seq: 0,
        },
        last_message,
        unread: u64::from(i.unread_count()),
    })
}

/// Decodes and verifies one server frame (for clients: tests and the load test).
pub fn decode_server(buf: &[u8], limits: &DecodeLimits) -> Result<ServerFrame, DecodeError> {
    let f = flatbuffers::root_with_opts::<w::ServerFrame>(&limits.opts, buf)
        .map_err(|e| DecodeError::Invalid(e.to_string()))?;
    let missing = DecodeError::UnknownBody;
    let body = match f.body_type() {
        w::ServerBody::Welcome => {
            let x = f.body_as_welcome().ok_or(missing)?;
            ServerBody::Welcome(Welcome {
                user: x.user_id().unwrap_or_default().to_owned(),
                session_id: x.session_id(),
                node_id: x.node_id(),
                heartbeat_ms: x.heartbeat_ms(),
                idle_timeout_ms: x.idle_timeout_ms(),
                protocol_major: x.protocol_major(),
                protocol_minor: x.protocol_minor(),
                max_frame_bytes: x.max_frame_bytes(),
                max_message_chars: x.max_message_chars(),
                server_time_ms: x.server_time_ms(),
            })
        }
        w::ServerBody::Ack => {
            let x = f.body_as_ack().ok_or(missing)?;
            ServerBody::Ack(Ack {
                message_id: MessageId(x.message_id()),
                created_at_ms: x.created_at_ms(),
                duplicate: x.duplicate(),
            })
        }
        w::ServerBody::MessageNew => {
            let x = f.body_as_message_new().ok_or(missing)?;
            ServerBody::MessageNew(message_of(x.message())?)
        }
        w::ServerBody::TypingEvent => {
            let x = f.body_as_typing_event().ok_or(missing)?;
            ServerBody::Typing {
                conversation: conv(x.conversation()),
                user: x.user_id().unwrap_or_default().to_owned(),
                active: x.active(),
            }
        }
        w::ServerBody::MessageRead => {
            let x = f.body_as_message_read().ok_or(missing)?;
            ServerBody::MessageRead {
                conversation: conv(x.conversation()),
                reader: x.reader_id().unwrap_or_default().to_owned(),
                up_to: MessageId(x.up_to()),
                read_at_ms: x.read_at_ms(),
            }
        }
        w::ServerBody::HistoryPage => {
            let x = f.body_as_history_page().ok_or(missing)?;
            ServerBody::HistoryPage {
                conversation: conv(x.conversation()),
                messages: x
                    .messages()
                    .map(|v| v.iter().map(message_of).collect::<Result<Vec<_>, _>>())
                    .transpose()?
                    .unwrap_or_default(),
                next_before: opt_id(x.next_before()),
            }
        }
        w::ServerBody::ConversationPage => {
            let x = f.body_as_conversation_page().ok_or(missing)?;
            ServerBody::ConversationPage {
                items: x
                    .items()
                    .map(|v| v.iter().map(summary_of).collect::<Result<Vec<_>, _>>())
                    .transpose()?
                    .unwrap_or_default(),
                next_cursor: x.next_cursor().map(str::to_owned),
            }
        }
        w::ServerBody::Presence => {
            let x = f.body_as_presence().ok_or(missing)?;
            ServerBody::Presence {
                user: x.user_id().unwrap_or_default().to_owned(),
                online: x.online(),
                last_seen_ms: x.last_seen_ms(),
            }
        }
        w::ServerBody::Error => {
            let x = f.body_as_error().ok_or(missing)?;
            ServerBody::Error {
                code: x.code(),
                message: x.message().unwrap_or_default().to_owned(),
                fatal: x.fatal(),
            }
        }
        w::ServerBody::Pong => {
            let x = f.body_as_pong().ok_or(missing)?;
            ServerBody::Pong {
                nonce: x.nonce(),
                server_time_ms: x.server_time_ms(),
            }
        }
        w::ServerBody::Resumed => {
            let x = f.body_as_resumed().ok_or(missing)?;
            ServerBody::Resumed {
                conversation: conv(x.conversation()),
                replayed: x.replayed(),
                complete: x.complete(),
            }
        }
        w::ServerBody::ConversationDeleted => {
            let x = f.body_as_conversation_deleted().ok_or(missing)?;
            ServerBody::ConversationDeleted {
                conversation: conv(x.conversation()),
                by: x.by_user_id().unwrap_or_default().to_owned(),
            }
        }
        w::ServerBody::ConversationUpdated => {
            let x = f.body_as_conversation_updated().ok_or(missing)?;
            ServerBody::ConversationUpdated(summary_of(x.conversation())?)
        }
        w::ServerBody::Goaway => {
            let x = f.body_as_goaway().ok_or(missing)?;
            ServerBody::Goaway {
                reason: x.reason().unwrap_or_default().to_owned(),
                reconnect_after_ms: x.reconnect_after_ms(),
            }
        }
        _ => return Err(missing),
    };
    Ok(ServerFrame { seq: f.seq(), body })
}

/// The parts of a server frame a load client needs, borrowed from the buffer (no allocation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerPeek<'a> {
    Ack {
        seq: u32,
        message_id: MessageId,
    },
    Error {
        seq: u32,
        code: u16,
        fatal: bool,
    },
    MessageNew {
        conversation: ConversationId,
        id: MessageId,
        sender: &'a str,
        content: &'a str,
    },
    /// Any other body: its [`ServerBody::index`].
    Other {
        seq: u32,
        kind: usize,
    },
}

/// Verifies a server frame and borrows what a load client needs from it.
pub fn peek_server<'a>(
    buf: &'a [u8],
    limits: &DecodeLimits,
) -> Result<ServerPeek<'a>, DecodeError> {
    let f = flatbuffers::root_with_opts::<w::ServerFrame>(&limits.opts, buf)
        .map_err(|e| DecodeError::Invalid(e.to_string()))?;
    let seq = f.seq();
    Ok(match f.body_type() {
        w::ServerBody::Ack => {
            let a = f.body_as_ack().ok_or(DecodeError::UnknownBody)?;
            ServerPeek::Ack {
                seq,
                message_id: MessageId(a.message_id()),
            }
        }
        w::ServerBody::Error => {
            let e = f.body_as_error().ok_or(DecodeError::UnknownBody)?;
            ServerPeek::Error {
                seq,
                code: e.code(),
                fatal: e.fatal(),
            }
        }
        w::ServerBody::MessageNew => {
            let m = f
                .body_as_message_new()
                .ok_or(DecodeError::UnknownBody)?
                .message();
            ServerPeek::MessageNew {
                conversation: conv(m.conversation()),
                id: MessageId(m.id()),
                sender: m.sender_id().unwrap_or_default(),
                content: m.content().unwrap_or_default(),
            }
        }
        other => ServerPeek::Other {
            seq,
            // Union tags are 1-based in the same order as ServerBody::NAMES.
            kind: usize::from(other.0).saturating_sub(1),
        },
    })
}

// ------------------------------------------------------------------------------ encoding

thread_local! {
    static BUILDER: RefCell<FlatBufferBuilder<'static>> =
        RefCell::new(FlatBufferBuilder::with_capacity(1024));
}

/// Runs `build` on this thread's builder and copies the finished frame out.
fn with_builder(build: impl FnOnce(&mut FlatBufferBuilder<'static>)) -> Bytes {
    BUILDER.with(|cell| {
        let mut fbb = cell.borrow_mut();
        fbb.reset();
        build(&mut fbb);
        let out = Bytes::copy_from_slice(fbb.finished_data());
        // Keep the scratch buffer from growing without bound after one huge page.
        if fbb.unfinished_data().len() > 1 << 20 {
            *fbb = FlatBufferBuilder::with_capacity(1024);
        }
        out
    })
}

fn uuid(c: ConversationId) -> w::Uuid {
    let (hi, lo) = c.halves();
    w::Uuid::new(hi, lo)
}

type Fbb = FlatBufferBuilder<'static>;

fn opt_str<'a>(fbb: &mut Fbb, s: &str) -> Option<WIPOffset<&'a str>> {
    (!s.is_empty()).then(|| fbb.create_string(s))
}

fn media<'a>(fbb: &mut Fbb, m: &MediaRef) -> WIPOffset<w::MediaRef<'a>> {
    let url = opt_str(fbb, &m.url);
    let mime_type = opt_str(fbb, &m.mime_type);
    let name = opt_str(fbb, &m.name);
    w::MediaRef::create(
        fbb,
        &w::MediaRefArgs {
            url,
            mime_type,
            size_bytes: m.size_bytes,
            name,
            width: m.width,
            height: m.height,
        },
    )
}

fn message<'a>(fbb: &mut Fbb, m: &Message) -> WIPOffset<w::Message<'a>> {
    let sender_id = opt_str(fbb, &m.sender);
    let content = opt_str(fbb, &m.content);
    let media = m.media.as_ref().map(|x| media(fbb, x));
    let client_msg_id = opt_str(fbb, &m.client_msg_id);
    let conversation = uuid(m.conversation);
    w::Message::create(
        fbb,
        &w::MessageArgs {
            id: m.id.0,
            conversation: Some(&conversation),
            sender_id,
            kind: w::MessageKind(m.kind.code()),
            content,
            media,
            client_msg_id,
            created_at_ms: m.created_at_ms,
        },
    )
}

fn summary<'a>(fbb: &mut Fbb, s: &ConversationSummary) -> WIPOffset<w::ConversationItem<'a>> {
    let c = &s.conversation;
    let (kind, title, listing, buyer, seller) = match &c.kind {
        ConversationKind::Direct {
            buyer,
            seller,
            listing,
        } => (
            w::ConversationKind::Direct,
            "",
            listing.as_str(),
            buyer.as_str(),
            seller.as_str(),
        ),
        ConversationKind::Group { title, .. } => {
            (w::ConversationKind::Group, title.as_str(), "", "", "")
        }
    };
    let title = opt_str(fbb, title);
    let listing_id = opt_str(fbb, listing);
    let buyer_id = opt_str(fbb, buyer);
    let seller_id = opt_str(fbb, seller);
    let names: Vec<WIPOffset<&str>> = c
        .participants
        .iter()
        .take(MAX_LISTED_PARTICIPANTS)
        .map(|p| fbb.create_string(p))
        .collect();
    let participant_ids = Some(fbb.create_vector(&names));
    let last_message = s.last_message.as_ref().map(|m| message(fbb, m));
    let id = uuid(c.id);
    w::ConversationItem::create(
        fbb,
        &w::ConversationItemArgs {
            id: Some(&id),
            kind,
            title,
            listing_id,
            buyer_id,
            seller_id,
            participant_ids,
            created_at_ms: c.created_at_ms,
            last_activity_ms: c.last_activity_ms,
            last_message,
            unread_count: s.unread.min(u64::from(u32::MAX)) as u32,
            participant_count: c.participants.len() as u32,
        },
    )
}

fn messages<'a>(
    fbb: &mut Fbb,
    list: &[Message],
) -> WIPOffset<Vector<'a, ForwardsUOffset<w::Message<'a>>>> {
    let items: Vec<_> = list.iter().map(|m| message(fbb, m)).collect();
    fbb.create_vector(&items)
}

/// Encodes one server frame.
pub fn encode_server(frame: &ServerFrame) -> Bytes {
    with_builder(|fbb| {
        let (body_type, body) = match &frame.body {
            ServerBody::Welcome(x) => {
                let user_id = opt_str(fbb, &x.user);
                let b = w::Welcome::create(
                    fbb,
                    &w::WelcomeArgs {
                        user_id,
                        session_id: x.session_id,
                        node_id: x.node_id,
                        heartbeat_ms: x.heartbeat_ms,
                        idle_timeout_ms: x.idle_timeout_ms,
                        protocol_major: x.protocol_major,
                        protocol_minor: x.protocol_minor,
                        max_frame_bytes: x.max_frame_bytes,
                        max_message_chars: x.max_message_chars,
                        server_time_ms: x.server_time_ms,
                    },
                );
                (w::ServerBody::Welcome, b.as_union_value())
            }
            ServerBody::Ack(x) => {
                let b = w::Ack::create(
                    fbb,
                    &w::AckArgs {
                        message_id: x.message_id.0,
                        created_at_ms: x.created_at_ms,
                        duplicate: x.duplicate,
                    },
                );
                (w::ServerBody::Ack, b.as_union_value())
            }
            ServerBody::MessageNew(m) => {
                let message = Some(message(fbb, m));
                let b = w::MessageNew::create(fbb, &w::MessageNewArgs { message });
                (w::ServerBody::MessageNew, b.as_union_value())
            }
            ServerBody::Typing {
                conversation,
                user,
                active,
            } => {
                let user_id = opt_str(fbb, user);
                let c = uuid(*conversation);
                let b = w::TypingEvent::create(
                    fbb,
                    &w::TypingEventArgs {
                        conversation: Some(&c),
                        user_id,
                        active: *active,
                    },
                );
                (w::ServerBody::TypingEvent, b.as_union_value())
            }
            ServerBody::MessageRead {
                conversation,
                reader,
                up_to,
                read_at_ms,
            } => {
                let reader_id = opt_str(fbb, reader);
                let c = uuid(*conversation);
                let b = w::MessageRead::create(
                    fbb,
                    &w::MessageReadArgs {
                        conversation: Some(&c),
                        reader_id,
                        up_to: up_to.0,
                        read_at_ms: *read_at_ms,
                    },
                );
                (w::ServerBody::MessageRead, b.as_union_value())
            }
            ServerBody::HistoryPage {
                conversation,
                messages: list,
                next_before,
            } => {
                let messages = Some(messages(fbb, list));
                let c = uuid(*conversation);
                let b = w::HistoryPage::create(
                    fbb,
                    &w::HistoryPageArgs {
                        conversation: Some(&c),
                        messages,
                        next_before: next_before.map_or(0, |m| m.0),
                    },
                );
                (w::ServerBody::HistoryPage, b.as_union_value())
            }
            ServerBody::ConversationPage { items, next_cursor } => {
                let list: Vec<_> = items.iter().map(|s| summary(fbb, s)).collect();
                let items = Some(fbb.create_vector(&list));
                let next_cursor = next_cursor.as_deref().map(|c| fbb.create_string(c));
                let b = w::ConversationPage::create(
                    fbb,
                    &w::ConversationPageArgs { items, next_cursor },
                );
                (w::ServerBody::ConversationPage, b.as_union_value())
            }
            ServerBody::Presence {
                user,
                online,
                last_seen_ms,
            } => {
                let user_id = opt_str(fbb, user);
                let b = w::Presence::create(
                    fbb,
                    &w::PresenceArgs {
                        user_id,
                        online: *online,
                        last_seen_ms: *last_seen_ms,
                    },
                );
                (w::ServerBody::Presence, b.as_union_value())
            }
            ServerBody::Error {
                code,
                message,
                fatal,
            } => {
                let message = opt_str(fbb, message);
                let b = w::Error::create(
                    fbb,
                    &w::ErrorArgs {
                        code: *code,
                        message,
                        fatal: *fatal,
                    },
                );
                (w::ServerBody::Error, b.as_union_value())
            }
            ServerBody::Pong {
                nonce,
                server_time_ms,
            } => {
                let b = w::Pong::create(
                    fbb,
                    &w::PongArgs {
                        nonce: *nonce,
                        server_time_ms: *server_time_ms,
                    },
                );
                (w::ServerBody::Pong, b.as_union_value())
            }
            ServerBody::Resumed {
                conversation,
                replayed,
                complete,
            } => {
                let c = uuid(*conversation);
                let b = w::Resumed::create(
                    fbb,
                    &w::ResumedArgs {
                        conversation: Some(&c),
                        replayed: *replayed,
                        complete: *complete,
                    },
                );
                (w::ServerBody::Resumed, b.as_union_value())
            }
            ServerBody::ConversationDeleted { conversation, by } => {
                let by_user_id = opt_str(fbb, by);
                let c = uuid(*conversation);
                let b = w::ConversationDeleted::create(
                    fbb,
                    &w::ConversationDeletedArgs {
                        conversation: Some(&c),
                        by_user_id,
                    },
                );
                (w::ServerBody::ConversationDeleted, b.as_union_value())
            }
            ServerBody::ConversationUpdated(s) => {
                let conversation = Some(summary(fbb, s));
                let b = w::ConversationUpdated::create(
                    fbb,
                    &w::ConversationUpdatedArgs { conversation },
                );
                (w::ServerBody::ConversationUpdated, b.as_union_value())
            }
            ServerBody::Goaway {
                reason,
                reconnect_after_ms,
            } => {
                let reason = opt_str(fbb, reason);
                let b = w::Goaway::create(
                    fbb,
                    &w::GoawayArgs {
                        reason,
                        reconnect_after_ms: *reconnect_after_ms,
                    },
                );
                (w::ServerBody::Goaway, b.as_union_value())
            }
        };
        let root = w::ServerFrame::create(
            fbb,
            &w::ServerFrameArgs {
                seq: frame.seq,
                body_type,
                body: Some(body),
            },
        );
        fbb.finish_minimal(root);
    })
}

/// Encodes one client frame (for clients: tests and the load test).
pub fn encode_client(frame: &ClientFrame) -> Bytes {
    with_builder(|fbb| {
        let (body_type, body) = match &frame.body {
            ClientBody::Hello(h) => {
                let token = Some(fbb.create_string(&h.token));
                let points: Vec<_> = h
                    .resume
                    .iter()
                    .map(|r| {
                        let c = uuid(r.conversation);
                        w::ResumePoint::create(
                            fbb,
                            &w::ResumePointArgs {
                                conversation: Some(&c),
                                last_message_id: r.last_message_id.0,
                            },
                        )
                    })
                    .collect();
                let resume = (!points.is_empty()).then(|| fbb.create_vector(&points));
                let client_name = h.client_name.as_deref().map(|n| fbb.create_string(n));
                let b = w::Hello::create(
                    fbb,
                    &w::HelloArgs {
                        token,
                        protocol_major: h.protocol_major,
                        protocol_minor: h.protocol_minor,
                        resume,
                        client_name,
                    },
                );
                (w::ClientBody::Hello, b.as_union_value())
            }
            ClientBody::Join { conversation } => {
                let c = uuid(*conversation);
                let b = w::Join::create(
                    fbb,
                    &w::JoinArgs {
                        conversation: Some(&c),
                    },
                );
                (w::ClientBody::Join, b.as_union_value())
            }
            ClientBody::Leave { conversation } => {
                let c = uuid(*conversation);
                let b = w::Leave::create(
                    fbb,
                    &w::LeaveArgs {
                        conversation: Some(&c),
                    },
                );
                (w::ClientBody::Leave, b.as_union_value())
            }
            ClientBody::Send(s) => {
                let client_msg_id = Some(fbb.create_string(&s.client_msg_id));
                let content = opt_str(fbb, &s.content);
                let media = s.media.as_ref().map(|m| media(fbb, m));
                let c = uuid(s.conversation);
                let b = w::Send::create(
                    fbb,
                    &w::SendArgs {
                        conversation: Some(&c),
                        client_msg_id,
                        kind: w::MessageKind(s.kind.code()),
                        content,
                        media,
                    },
                );
                (w::ClientBody::Send, b.as_union_value())
            }
            ClientBody::Typing {
                conversation,
                active,
            } => {
                let c = uuid(*conversation);
                let b = w::Typing::create(
                    fbb,
                    &w::TypingArgs {
                        conversation: Some(&c),
                        active: *active,
                    },
                );
                (w::ClientBody::Typing, b.as_union_value())
            }
            ClientBody::Read {
                conversation,
                up_to,
            } => {
                let c = uuid(*conversation);
                let b = w::Read::create(
                    fbb,
                    &w::ReadArgs {
                        conversation: Some(&c),
                        up_to: up_to.0,
                    },
                );
                (w::ClientBody::Read, b.as_union_value())
            }
            ClientBody::History {
                conversation,
                before,
                limit,
            } => {
                let c = uuid(*conversation);
                let b = w::History::create(
                    fbb,
                    &w::HistoryArgs {
                        conversation: Some(&c),
                        before: before.map_or(0, |m| m.0),
                        limit: *limit,
                    },
                );
                (w::ClientBody::History, b.as_union_value())
            }
            ClientBody::Conversations { cursor, limit } => {
                let cursor = cursor.as_deref().map(|c| fbb.create_string(c));
                let b = w::Conversations::create(
                    fbb,
                    &w::ConversationsArgs {
                        cursor,
                        limit: *limit,
                    },
                );
                (w::ClientBody::Conversations, b.as_union_value())
            }
            ClientBody::Ping { nonce } => {
                let b = w::Ping::create(fbb, &w::PingArgs { nonce: *nonce });
                (w::ClientBody::Ping, b.as_union_value())
            }
        };
        let root = w::ClientFrame::create(
            fbb,
            &w::ClientFrameArgs {
                seq: frame.seq,
                body_type,
                body: Some(body),
            },
        );
        fbb.finish_minimal(root);
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> DecodeLimits {
        DecodeLimits::client(64 * 1024, 100)
    }

    fn sample_message() -> Message {
        Message {
            id: MessageId(77),
            conversation: ConversationId::random(),
            sender: "alice".into(),
            kind: MessageKind::Image,
            content: "caption ✓".into(),
            media: Some(MediaRef {
                url: "https://cdn.example/a.jpg".into(),
                mime_type: "image/jpeg".into(),
                size_bytes: 1234,
                name: "a.jpg".into(),
                width: 640,
                height: 480,
            }),
            client_msg_id: "c-1".into(),
            created_at_ms: 1_800_000_000_000,
            seq: 0,
        }
    }

    #[test]
    fn every_client_frame_round_trips() {
        let c = ConversationId::random();
        let bodies = vec![
            ClientBody::Hello(Hello {
                token: "t".into(),
                protocol_major: 1,
                protocol_minor: 0,
                resume: vec![ResumePoint {
                    conversation: c,
                    last_message_id: MessageId(9),
                }],
                client_name: Some("ios/1.0".into()),
            }),
            ClientBody::Join { conversation: c },
            ClientBody::Leave { conversation: c },
            ClientBody::Send(SendMessage {
                conversation: c,
                client_msg_id: "x".into(),
                kind: MessageKind::File,
                content: "c".into(),
                media: sample_message().media,
            }),
            ClientBody::Typing {
                conversation: c,
                active: true,
            },
            ClientBody::Read {
                conversation: c,
                up_to: MessageId(5),
            },
            ClientBody::History {
                conversation: c,
                before: Some(MessageId(3)),
                limit: 20,
            },
            ClientBody::Conversations {
                cursor: Some("1_abc".into()),
                limit: 10,
            },
            ClientBody::Ping { nonce: 42 },
        ];
        for (i, body) in bodies.into_iter().enumerate() {
            let frame = ClientFrame {
                seq: i as u32 + 1,
                body,
            };
            let bytes = encode_client(&frame);
            assert_eq!(decode_client(&bytes, &limits()), Ok(frame));
        }
    }

    #[test]
    fn server_frames_round_trip() {
        let m = sample_message();
        let summary = ConversationSummary {
            conversation: Conversation {
                id: m.conversation,
                kind: ConversationKind::Direct {
                    buyer: "b".into(),
                    seller: "s".into(),
                    listing: "l".into(),
                },
                participants: vec!["b".into(), "s".into()],
                created_at_ms: 1,
                last_activity_ms: 2,
                last_message_id: Some(m.id),
                last_seq: 0,
            },
            last_message: Some(m.clone()),
            unread: 3,
        };
        let frames = vec![
            ServerBody::MessageNew(m.clone()),
            ServerBody::Ack(Ack {
                message_id: MessageId(1),
                created_at_ms: 2,
                duplicate: true,
            }),
            ServerBody::HistoryPage {
                conversation: m.conversation,
                messages: vec![m.clone(), m.clone()],
                next_before: Some(MessageId(77)),
            },
            ServerBody::ConversationPage {
                items: vec![summary.clone()],
                next_cursor: None,
            },
            ServerBody::ConversationUpdated(summary),
            ServerBody::Error {
                code: 1200,
                message: "no".into(),
                fatal: false,
            },
        ];
        for body in frames {
            let frame = ServerFrame::new(5, body);
            let decoded = decode_server(&encode_server(&frame), &DecodeLimits::server());
            assert_eq!(decoded, Ok(frame));
        }
    }

    #[test]
    fn peek_borrows_what_load_clients_need() {
        let m = sample_message();
        let bytes = encode_server(&ServerFrame::push(ServerBody::MessageNew(m.clone())));
        assert_eq!(
            peek_server(&bytes, &DecodeLimits::server()),
            Ok(ServerPeek::MessageNew {
                conversation: m.conversation,
                id: m.id,
                sender: "alice",
                content: "caption ✓",
            })
        );
        let pong = ServerFrame::new(
            9,
            ServerBody::Pong {
                nonce: 1,
                server_time_ms: 2,
            },
        );
        let bytes = encode_server(&pong);
        assert_eq!(
            peek_server(&bytes, &DecodeLimits::server()),
            Ok(ServerPeek::Other {
                seq: 9,
                kind: pong.body.index()
            })
        );
    }

    #[test]
    fn garbage_and_truncation_are_errors_not_panics() {
        let good = encode_client(&ClientFrame {
            seq: 1,
            body: ClientBody::Send(SendMessage {
                conversation: ConversationId::random(),
                client_msg_id: "x".into(),
                kind: MessageKind::Text,
                content: "hello".into(),
                media: None,
            }),
        });
        for cut in 0..good.len() {
            let _ = decode_client(&good[..cut], &limits());
        }
        // Flip every byte in turn: must never panic.
        for i in 0..good.len() {
            let mut bad = good.to_vec();
            bad[i] ^= 0xff;
            let _ = decode_client(&bad, &limits());
        }
        assert!(decode_client(b"", &limits()).is_err());
        assert!(decode_client(&[0xff; 64], &limits()).is_err());
    }

    #[test]
    fn invalid_utf8_in_a_string_is_rejected() {
        let frame = encode_client(&ClientFrame {
            seq: 1,
            body: ClientBody::Send(SendMessage {
                conversation: ConversationId::random(),
                client_msg_id: "x".into(),
                kind: MessageKind::Text,
                content: "héllo".into(),
                media: None,
            }),
        });
        let mut bad = frame.to_vec();
        let pos = bad
            .windows(2)
            .position(|w| w == "é".as_bytes())
            .expect("content bytes");
        bad[pos + 1] = 0xff;
        assert!(matches!(
            decode_client(&bad, &limits()),
            Err(DecodeError::Invalid(_))
        ));
    }

    #[test]
    fn verifier_limits_bound_table_count() {
        let frame = ClientFrame {
            seq: 1,
            body: ClientBody::Hello(Hello {
                token: "t".into(),
                protocol_major: 1,
                protocol_minor: 0,
                resume: (0..500)
                    .map(|i| ResumePoint {
                        conversation: ConversationId::random(),
                        last_message_id: MessageId(i),
                    })
                    .collect(),
                client_name: None,
            }),
        };
        let bytes = encode_client(&frame);
        assert!(decode_client(&bytes, &DecodeLimits::client(1 << 20, 100)).is_err());
        assert!(decode_client(&bytes, &DecodeLimits::client(1 << 20, 1000)).is_ok());
    }
}
