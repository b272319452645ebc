//! The client's half of the codec: client frames out, server frames in (verified, then decoded
//! whole, or peeked without allocating for load clients).

use bytes::Bytes;
use flatbuffers::{UnionWIPOffset, WIPOffset};
use parley_schema::wire as w;
use parley_types::{
    Conversation, ConversationId, ConversationKind, ConversationSummary, Message, MessageId,
};

use super::{
    DecodeError, DecodeLimits, Fbb, conv, kind_of, media, media_of, opt_id, opt_str, uuid,
    with_builder,
};
use crate::frames::*;
use crate::kind::FrameKind;

// ------------------------------------------------------------------------------ encoding

type Body = (w::ClientBody, WIPOffset<UnionWIPOffset>);

/// Encodes one client frame.
pub fn encode_client(frame: &ClientFrame) -> Bytes {
    with_builder(|fbb| {
        let (body_type, body) = match &frame.body {
            ClientBody::Hello(h) => hello(fbb, h),
            ClientBody::Join { conversation } => {
                let c = uuid(*conversation);
                let args = w::JoinArgs {
                    conversation: Some(&c),
                };
                let b = w::Join::create(fbb, &args);
                (w::ClientBody::Join, b.as_union_value())
            }
            ClientBody::Leave { conversation } => {
                let c = uuid(*conversation);
                let args = w::LeaveArgs {
                    conversation: Some(&c),
                };
                let b = w::Leave::create(fbb, &args);
                (w::ClientBody::Leave, b.as_union_value())
            }
            ClientBody::Send(s) => send(fbb, s),
            ClientBody::Typing {
                conversation,
                active,
            } => {
                let c = uuid(*conversation);
                let args = w::TypingArgs {
                    conversation: Some(&c),
                    active: *active,
                };
                let b = w::Typing::create(fbb, &args);
                (w::ClientBody::Typing, b.as_union_value())
            }
            ClientBody::Read {
                conversation,
                up_to,
            } => {
                let c = uuid(*conversation);
                let args = w::ReadArgs {
                    conversation: Some(&c),
                    up_to: up_to.0,
                };
                let b = w::Read::create(fbb, &args);
                (w::ClientBody::Read, b.as_union_value())
            }
            ClientBody::History {
                conversation,
                before,
                limit,
            } => history(fbb, *conversation, *before, *limit),
            ClientBody::Conversations {
                cursor,
                limit,
                query,
            } => {
                let cursor = cursor.as_deref().map(|c| fbb.create_string(c));
                let query = query.as_deref().map(|q| fbb.create_string(q));
                let args = w::ConversationsArgs {
                    cursor,
                    limit: *limit,
                    query,
                };
                let b = w::Conversations::create(fbb, &args);
                (w::ClientBody::Conversations, b.as_union_value())
            }
            ClientBody::Ping { nonce } => {
                let b = w::Ping::create(fbb, &w::PingArgs { nonce: *nonce });
                (w::ClientBody::Ping, b.as_union_value())
            }
            ClientBody::Refresh { token } => {
                let token = Some(fbb.create_string(token));
                let b = w::Refresh::create(fbb, &w::RefreshArgs { token });
                (w::ClientBody::Refresh, b.as_union_value())
            }
            ClientBody::Search(q) => search(fbb, q),
            ClientBody::Mute {
                conversation,
                muted,
                until_ms,
            } => {
                let args = w::MuteArgs {
                    conversation: Some(&uuid(*conversation)),
                    muted: *muted,
                    until_ms: *until_ms,
                };
                let b = w::Mute::create(fbb, &args);
                (w::ClientBody::Mute, b.as_union_value())
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

fn hello(fbb: &mut Fbb, h: &Hello) -> Body {
    let token = Some(fbb.create_string(&h.token));
    let points: Vec<_> = h
        .resume
        .iter()
        .map(|r| {
            let c = uuid(r.conversation);
            let args = w::ResumePointArgs {
                conversation: Some(&c),
                last_message_id: r.last_message_id.0,
                last_seq: r.last_seq,
            };
            w::ResumePoint::create(fbb, &args)
        })
        .collect();
    let resume = (!points.is_empty()).then(|| fbb.create_vector(&points));
    let client_name = h.client_name.as_deref().map(|n| fbb.create_string(n));
    let args = w::HelloArgs {
        token,
        protocol_major: h.protocol_major,
        protocol_minor: h.protocol_minor,
        resume,
        client_name,
    };
    let b = w::Hello::create(fbb, &args);
    (w::ClientBody::Hello, b.as_union_value())
}

fn send(fbb: &mut Fbb, s: &SendMessage) -> Body {
    let client_msg_id = Some(fbb.create_string(&s.client_msg_id));
    let content = opt_str(fbb, &s.content);
    let media = s.media.as_ref().map(|m| media(fbb, m));
    let c = uuid(s.conversation);
    let args = w::SendArgs {
        conversation: Some(&c),
        client_msg_id,
        kind: w::MessageKind(s.kind.code()),
        content,
        media,
    };
    let b = w::Send::create(fbb, &args);
    (w::ClientBody::Send, b.as_union_value())
}

fn history(
    fbb: &mut Fbb,
    conversation: ConversationId,
    before: Option<MessageId>,
    limit: u16,
) -> Body {
    let c = uuid(conversation);
    let args = w::HistoryArgs {
        conversation: Some(&c),
        before: before.map_or(0, |m| m.0),
        limit,
    };
    let b = w::History::create(fbb, &args);
    (w::ClientBody::History, b.as_union_value())
}

fn search(fbb: &mut Fbb, q: &SearchQuery) -> Body {
    let query = Some(fbb.create_string(&q.query));
    let c = q.conversation.map(uuid);
    let args = w::SearchArgs {
        query,
        conversation: c.as_ref(),
        before: q.before.map_or(0, |m| m.0),
        limit: q.limit,
        by_relevance: q.by_relevance,
        offset: q.offset,
    };
    let b = w::Search::create(fbb, &args);
    (w::ClientBody::Search, b.as_union_value())
}

// ------------------------------------------------------------------------------ decoding

/// Decodes and verifies one server frame.
pub fn decode_server(buf: &[u8], limits: &DecodeLimits) -> Result<ServerFrame, DecodeError> {
    let f = flatbuffers::root_with_opts::<w::ServerFrame>(limits.verifier(), buf)
        .map_err(|e| DecodeError::Invalid(e.to_string()))?;
    let body = match f.body_type() {
        w::ServerBody::Welcome => welcome_of(f.body_as_welcome()),
        w::ServerBody::Ack => f.body_as_ack().map(|x| {
            ServerBody::Ack(Ack {
                message_id: MessageId(x.message_id()),
                created_at_ms: x.created_at_ms(),
                duplicate: x.duplicate(),
                message_seq: x.message_seq(),
            })
        }),
        w::ServerBody::MessageNew => match f.body_as_message_new() {
            Some(x) => Some(ServerBody::MessageNew(message_of(x.message())?)),
            None => None,
        },
        w::ServerBody::HistoryPage => match f.body_as_history_page() {
            Some(x) => Some(history_page_of(x)?),
            None => None,
        },
        w::ServerBody::ConversationPage => match f.body_as_conversation_page() {
            Some(x) => Some(conversation_page_of(x)?),
            None => None,
        },
        w::ServerBody::SearchResults => f.body_as_search_results().map(search_results_of),
        w::ServerBody::ConversationUpdated => match f.body_as_conversation_updated() {
            Some(x) => Some(ServerBody::ConversationUpdated(summary_of(
                x.conversation(),
            )?)),
            None => None,
        },
        _ => event_of(&f),
    };
    Ok(ServerFrame {
        seq: f.seq(),
        body: body.ok_or(DecodeError::UnknownBody)?,
    })
}

fn welcome_of(x: Option<w::Welcome<'_>>) -> Option<ServerBody> {
    let x = x?;
    Some(ServerBody::Welcome(Welcome {
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
        token_expires_ms: x.token_expires_ms(),
    }))
}

fn history_page_of(x: w::HistoryPage<'_>) -> Result<ServerBody, DecodeError> {
    Ok(ServerBody::HistoryPage {
        conversation: conv(x.conversation()),
        messages: x
            .messages()
            .map(|v| v.iter().map(message_of).collect::<Result<Vec<_>, _>>())
            .transpose()?
            .unwrap_or_default(),
        next_before: opt_id(x.next_before()),
    })
}

fn conversation_page_of(x: w::ConversationPage<'_>) -> Result<ServerBody, DecodeError> {
    Ok(ServerBody::ConversationPage {
        items: x
            .items()
            .map(|v| v.iter().map(summary_of).collect::<Result<Vec<_>, _>>())
            .transpose()?
            .unwrap_or_default(),
        next_cursor: x.next_cursor().map(str::to_owned),
    })
}

fn search_results_of(x: w::SearchResults<'_>) -> ServerBody {
    let hits = x
        .hits()
        .map(|v| {
            v.iter()
                .map(|h| {
                    let spans: Vec<u32> = h
                        .highlights()
                        .map(|s| s.iter().collect())
                        .unwrap_or_default();
                    SearchHit {
                        conversation: conv(h.conversation()),
                        message_id: MessageId(h.message_id()),
                        seq: h.seq(),
                        sender: h.sender_id().unwrap_or_default().to_owned(),
                        created_at_ms: h.created_at_ms(),
                        snippet: h.snippet().unwrap_or_default().to_owned(),
                        highlights: spans.chunks_exact(2).map(|p| (p[0], p[1])).collect(),
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    ServerBody::SearchResults {
        hits,
        next_before: opt_id(x.next_before()),
        next_offset: (x.next_offset() > 0).then_some(x.next_offset()),
    }
}

/// The small event bodies (no nested tables to verify field by field).
fn event_of(f: &w::ServerFrame<'_>) -> Option<ServerBody> {
    Some(match f.body_type() {
        w::ServerBody::TypingEvent => {
            let x = f.body_as_typing_event()?;
            ServerBody::Typing {
                conversation: conv(x.conversation()),
                user: x.user_id().unwrap_or_default().to_owned(),
                active: x.active(),
            }
        }
        w::ServerBody::MessageRead => {
            let x = f.body_as_message_read()?;
            ServerBody::MessageRead {
                conversation: conv(x.conversation()),
                reader: x.reader_id().unwrap_or_default().to_owned(),
                up_to: MessageId(x.up_to()),
                read_at_ms: x.read_at_ms(),
            }
        }
        w::ServerBody::Presence => {
            let x = f.body_as_presence()?;
            ServerBody::Presence {
                user: x.user_id().unwrap_or_default().to_owned(),
                online: x.online(),
                last_seen_ms: x.last_seen_ms(),
            }
        }
        w::ServerBody::Error => {
            let x = f.body_as_error()?;
            ServerBody::Error {
                code: x.code(),
                message: x.message().unwrap_or_default().to_owned(),
                fatal: x.fatal(),
            }
        }
        w::ServerBody::Pong => {
            let x = f.body_as_pong()?;
            ServerBody::Pong {
                nonce: x.nonce(),
                server_time_ms: x.server_time_ms(),
            }
        }
        w::ServerBody::Resumed => {
            let x = f.body_as_resumed()?;
            ServerBody::Resumed {
                conversation: conv(x.conversation()),
                replayed: x.replayed(),
                complete: x.complete(),
                last_seq: x.last_seq(),
            }
        }
        w::ServerBody::ConversationDeleted => {
            let x = f.body_as_conversation_deleted()?;
            ServerBody::ConversationDeleted {
                conversation: conv(x.conversation()),
                by: x.by_user_id().unwrap_or_default().to_owned(),
            }
        }
        w::ServerBody::Goaway => {
            let x = f.body_as_goaway()?;
            ServerBody::Goaway {
                reason: x.reason().unwrap_or_default().to_owned(),
                reconnect_after_ms: x.reconnect_after_ms(),
            }
        }
        _ => return None,
    })
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
        seq: m.seq(),
        visibility: Default::default(),
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
    let mut conversation = Conversation::new(conv(i.id()), kind, participants, i.created_at_ms());
    conversation.last_activity_ms = i.last_activity_ms();
    conversation.last_message_id = last_message.as_ref().map(|m| m.id);
    conversation.last_seq = i.last_seq();
    Ok(ConversationSummary {
        conversation,
        last_message,
        unread: u64::from(i.unread_count()),
    })
}

/// The parts of a server frame a load client needs, borrowed from the buffer (no allocation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerPeek<'a> {
    Ack {
        seq: u32,
        message_id: MessageId,
        message_seq: u64,
    },
    Error {
        seq: u32,
        code: u16,
        fatal: bool,
    },
    MessageNew {
        conversation: ConversationId,
        id: MessageId,
        /// The message's position in its conversation.
        message_seq: u64,
        sender: &'a str,
        content: &'a str,
    },
    /// Any other body.
    Other {
        seq: u32,
        kind: FrameKind,
    },
}

/// Verifies a server frame and borrows what a load client needs from it.
pub fn peek_server<'a>(
    buf: &'a [u8],
    limits: &DecodeLimits,
) -> Result<ServerPeek<'a>, DecodeError> {
    let f = flatbuffers::root_with_opts::<w::ServerFrame>(limits.verifier(), buf)
        .map_err(|e| DecodeError::Invalid(e.to_string()))?;
    let seq = f.seq();
    let missing = DecodeError::UnknownBody;
    Ok(match f.body_type() {
        w::ServerBody::Ack => {
            let a = f.body_as_ack().ok_or(missing)?;
            ServerPeek::Ack {
                seq,
                message_id: MessageId(a.message_id()),
                message_seq: a.message_seq(),
            }
        }
        w::ServerBody::Error => {
            let e = f.body_as_error().ok_or(missing)?;
            ServerPeek::Error {
                seq,
                code: e.code(),
                fatal: e.fatal(),
            }
        }
        w::ServerBody::MessageNew => {
            let m = f.body_as_message_new().ok_or(missing)?.message();
            ServerPeek::MessageNew {
                conversation: conv(m.conversation()),
                id: MessageId(m.id()),
                message_seq: m.seq(),
                sender: m.sender_id().unwrap_or_default(),
                content: m.content().unwrap_or_default(),
            }
        }
        other => ServerPeek::Other {
            seq,
            kind: wire_kind(other).ok_or(missing)?,
        },
    })
}

/// The kind of a wire union tag.
fn wire_kind(t: w::ServerBody) -> Option<FrameKind> {
    Some(match t {
        w::ServerBody::Welcome => FrameKind::Welcome,
        w::ServerBody::Ack => FrameKind::Ack,
        w::ServerBody::MessageNew => FrameKind::MessageNew,
        w::ServerBody::TypingEvent => FrameKind::Typing,
        w::ServerBody::MessageRead => FrameKind::MessageRead,
        w::ServerBody::HistoryPage => FrameKind::HistoryPage,
        w::ServerBody::ConversationPage => FrameKind::ConversationPage,
        w::ServerBody::Presence => FrameKind::Presence,
        w::ServerBody::Error => FrameKind::Error,
        w::ServerBody::Pong => FrameKind::Pong,
        w::ServerBody::Resumed => FrameKind::Resumed,
        w::ServerBody::ConversationDeleted => FrameKind::ConversationDeleted,
        w::ServerBody::ConversationUpdated => FrameKind::ConversationUpdated,
        w::ServerBody::Goaway => FrameKind::Goaway,
        _ => return None,
    })
}
