//! The server's half of the codec: client frames in (verified, then decoded), server frames out.

use bytes::Bytes;
use flatbuffers::{ForwardsUOffset, UnionWIPOffset, Vector, WIPOffset};
use parley_schema::wire as w;
use parley_types::{ConversationKind, ConversationSummary, Message, MessageId};

use super::{
    DecodeError, DecodeLimits, Fbb, MAX_LISTED_PARTICIPANTS, conv, kind_of, media, media_of,
    opt_id, opt_str, uuid, with_builder,
};
use crate::frames::*;

// ------------------------------------------------------------------------------ decoding

/// Decodes and verifies one client frame.
pub fn decode_client(buf: &[u8], limits: &DecodeLimits) -> Result<ClientFrame, DecodeError> {
    let f = flatbuffers::root_with_opts::<w::ClientFrame>(limits.verifier(), buf)
        .map_err(|e| DecodeError::Invalid(e.to_string()))?;
    let missing = DecodeError::UnknownBody;
    let body = match f.body_type() {
        w::ClientBody::Hello => hello(f.body_as_hello().ok_or(missing)?),
        w::ClientBody::Join => ClientBody::Join {
            conversation: conv(f.body_as_join().ok_or(missing)?.conversation()),
        },
        w::ClientBody::Leave => ClientBody::Leave {
            conversation: conv(f.body_as_leave().ok_or(missing)?.conversation()),
        },
        w::ClientBody::Send => send(f.body_as_send().ok_or(missing)?)?,
        w::ClientBody::Typing => {
            let t = f.body_as_typing().ok_or(missing)?;
            ClientBody::Typing {
                conversation: conv(t.conversation()),
                active: t.active(),
            }
        }
        w::ClientBody::Read => {
            let r = f.body_as_read().ok_or(missing)?;
            ClientBody::Read {
                conversation: conv(r.conversation()),
                up_to: MessageId(r.up_to()),
            }
        }
        w::ClientBody::History => {
            let h = f.body_as_history().ok_or(missing)?;
            ClientBody::History {
                conversation: conv(h.conversation()),
                before: opt_id(h.before()),
                limit: h.limit(),
            }
        }
        w::ClientBody::Conversations => {
            let c = f.body_as_conversations().ok_or(missing)?;
            ClientBody::Conversations {
                cursor: c.cursor().filter(|c| !c.is_empty()).map(str::to_owned),
                limit: c.limit(),
                query: c.query().filter(|q| !q.is_empty()).map(str::to_owned),
            }
        }
        w::ClientBody::Ping => ClientBody::Ping {
            nonce: f.body_as_ping().ok_or(missing)?.nonce(),
        },
        w::ClientBody::Refresh => ClientBody::Refresh {
            token: f.body_as_refresh().ok_or(missing)?.token().to_owned(),
        },
        w::ClientBody::Search => {
            let q = f.body_as_search().ok_or(missing)?;
            ClientBody::Search(SearchQuery {
                query: q.query().to_owned(),
                conversation: q.conversation().map(conv),
                before: opt_id(q.before()),
                limit: q.limit(),
                by_relevance: q.by_relevance(),
                offset: q.offset(),
            })
        }
        w::ClientBody::Mute => {
            let m = f.body_as_mute().ok_or(missing)?;
            ClientBody::Mute {
                conversation: conv(m.conversation()),
                muted: m.muted(),
                until_ms: m.until_ms(),
            }
        }
        _ => return Err(missing),
    };
    Ok(ClientFrame { seq: f.seq(), body })
}

fn hello(h: w::Hello<'_>) -> ClientBody {
    let resume = h
        .resume()
        .map(|v| {
            v.iter()
                .map(|r| ResumePoint {
                    conversation: conv(r.conversation()),
                    last_message_id: MessageId(r.last_message_id()),
                    last_seq: r.last_seq(),
                })
                .collect()
        })
        .unwrap_or_default();
    ClientBody::Hello(Hello {
        token: h.token().to_owned(),
        protocol_major: h.protocol_major(),
        protocol_minor: h.protocol_minor(),
        resume,
        client_name: h.client_name().map(str::to_owned),
    })
}

fn send(s: w::Send<'_>) -> Result<ClientBody, DecodeError> {
    Ok(ClientBody::Send(SendMessage {
        conversation: conv(s.conversation()),
        client_msg_id: s.client_msg_id().to_owned(),
        kind: kind_of(s.kind())?,
        content: s.content().unwrap_or_default().to_owned(),
        media: media_of(s.media()),
    }))
}

// ------------------------------------------------------------------------------ encoding

type Body = (w::ServerBody, WIPOffset<UnionWIPOffset>);

/// Encodes one server frame.
pub fn encode_server(frame: &ServerFrame) -> Bytes {
    with_builder(|fbb| {
        let (body_type, body) = match &frame.body {
            ServerBody::Welcome(x) => welcome(fbb, x),
            ServerBody::Ack(x) => ack(fbb, x),
            ServerBody::MessageNew(m) => message_new(fbb, m),
            ServerBody::Typing {
                conversation,
                user,
                active,
            } => typing(fbb, *conversation, user, *active),
            ServerBody::MessageRead {
                conversation,
                reader,
                up_to,
                read_at_ms,
            } => message_read(fbb, *conversation, reader, *up_to, *read_at_ms),
            ServerBody::HistoryPage {
                conversation,
                messages,
                next_before,
            } => history_page(fbb, *conversation, messages, *next_before),
            ServerBody::ConversationPage { items, next_cursor } => {
                conversation_page(fbb, items, next_cursor.as_deref())
            }
            ServerBody::Presence {
                user,
                online,
                last_seen_ms,
            } => presence(fbb, user, *online, *last_seen_ms),
            ServerBody::Error {
                code,
                message,
                fatal,
            } => error(fbb, *code, message, *fatal),
            ServerBody::Pong {
                nonce,
                server_time_ms,
            } => pong(fbb, *nonce, *server_time_ms),
            ServerBody::Resumed {
                conversation,
                replayed,
                complete,
                last_seq,
            } => resumed(fbb, *conversation, *replayed, *complete, *last_seq),
            ServerBody::ConversationDeleted { conversation, by } => {
                conversation_deleted(fbb, *conversation, by)
            }
            ServerBody::ConversationUpdated(s) => conversation_updated(fbb, s),
            ServerBody::Goaway {
                reason,
                reconnect_after_ms,
            } => goaway(fbb, reason, *reconnect_after_ms),
            ServerBody::SearchResults {
                hits,
                next_before,
                next_offset,
            } => search_results(fbb, hits, *next_before, *next_offset),
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

fn welcome(fbb: &mut Fbb, x: &Welcome) -> Body {
    let user_id = opt_str(fbb, &x.user);
    let args = w::WelcomeArgs {
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
        token_expires_ms: x.token_expires_ms,
    };
    let b = w::Welcome::create(fbb, &args);
    (w::ServerBody::Welcome, b.as_union_value())
}

fn ack(fbb: &mut Fbb, x: &Ack) -> Body {
    let args = w::AckArgs {
        message_id: x.message_id.0,
        created_at_ms: x.created_at_ms,
        duplicate: x.duplicate,
        message_seq: x.message_seq,
    };
    let b = w::Ack::create(fbb, &args);
    (w::ServerBody::Ack, b.as_union_value())
}

fn message_new(fbb: &mut Fbb, m: &Message) -> Body {
    let message = Some(message(fbb, m));
    let b = w::MessageNew::create(fbb, &w::MessageNewArgs { message });
    (w::ServerBody::MessageNew, b.as_union_value())
}

fn typing(
    fbb: &mut Fbb,
    conversation: parley_types::ConversationId,
    user: &str,
    active: bool,
) -> Body {
    let user_id = opt_str(fbb, user);
    let c = uuid(conversation);
    let args = w::TypingEventArgs {
        conversation: Some(&c),
        user_id,
        active,
    };
    let b = w::TypingEvent::create(fbb, &args);
    (w::ServerBody::TypingEvent, b.as_union_value())
}

fn message_read(
    fbb: &mut Fbb,
    conversation: parley_types::ConversationId,
    reader: &str,
    up_to: MessageId,
    read_at_ms: i64,
) -> Body {
    let reader_id = opt_str(fbb, reader);
    let c = uuid(conversation);
    let args = w::MessageReadArgs {
        conversation: Some(&c),
        reader_id,
        up_to: up_to.0,
        read_at_ms,
    };
    let b = w::MessageRead::create(fbb, &args);
    (w::ServerBody::MessageRead, b.as_union_value())
}

fn history_page(
    fbb: &mut Fbb,
    conversation: parley_types::ConversationId,
    list: &[Message],
    next_before: Option<MessageId>,
) -> Body {
    let messages = Some(messages(fbb, list));
    let c = uuid(conversation);
    let args = w::HistoryPageArgs {
        conversation: Some(&c),
        messages,
        next_before: next_before.map_or(0, |m| m.0),
    };
    let b = w::HistoryPage::create(fbb, &args);
    (w::ServerBody::HistoryPage, b.as_union_value())
}

fn conversation_page(fbb: &mut Fbb, items: &[ConversationSummary], next: Option<&str>) -> Body {
    let list: Vec<_> = items.iter().map(|s| summary(fbb, s)).collect();
    let items = Some(fbb.create_vector(&list));
    let next_cursor = next.map(|c| fbb.create_string(c));
    let b = w::ConversationPage::create(fbb, &w::ConversationPageArgs { items, next_cursor });
    (w::ServerBody::ConversationPage, b.as_union_value())
}

fn presence(fbb: &mut Fbb, user: &str, online: bool, last_seen_ms: i64) -> Body {
    let user_id = opt_str(fbb, user);
    let args = w::PresenceArgs {
        user_id,
        online,
        last_seen_ms,
    };
    let b = w::Presence::create(fbb, &args);
    (w::ServerBody::Presence, b.as_union_value())
}

fn error(fbb: &mut Fbb, code: u16, message: &str, fatal: bool) -> Body {
    let message = opt_str(fbb, message);
    let args = w::ErrorArgs {
        code,
        message,
        fatal,
    };
    let b = w::Error::create(fbb, &args);
    (w::ServerBody::Error, b.as_union_value())
}

fn pong(fbb: &mut Fbb, nonce: u64, server_time_ms: i64) -> Body {
    let args = w::PongArgs {
        nonce,
        server_time_ms,
    };
    let b = w::Pong::create(fbb, &args);
    (w::ServerBody::Pong, b.as_union_value())
}

fn resumed(
    fbb: &mut Fbb,
    conversation: parley_types::ConversationId,
    replayed: u32,
    complete: bool,
    last_seq: u64,
) -> Body {
    let c = uuid(conversation);
    let args = w::ResumedArgs {
        conversation: Some(&c),
        replayed,
        complete,
        last_seq,
    };
    let b = w::Resumed::create(fbb, &args);
    (w::ServerBody::Resumed, b.as_union_value())
}

fn conversation_deleted(
    fbb: &mut Fbb,
    conversation: parley_types::ConversationId,
    by: &str,
) -> Body {
    let by_user_id = opt_str(fbb, by);
    let c = uuid(conversation);
    let args = w::ConversationDeletedArgs {
        conversation: Some(&c),
        by_user_id,
    };
    let b = w::ConversationDeleted::create(fbb, &args);
    (w::ServerBody::ConversationDeleted, b.as_union_value())
}

fn conversation_updated(fbb: &mut Fbb, s: &ConversationSummary) -> Body {
    let conversation = Some(summary(fbb, s));
    let b = w::ConversationUpdated::create(fbb, &w::ConversationUpdatedArgs { conversation });
    (w::ServerBody::ConversationUpdated, b.as_union_value())
}

fn goaway(fbb: &mut Fbb, reason: &str, reconnect_after_ms: u32) -> Body {
    let reason = opt_str(fbb, reason);
    let args = w::GoawayArgs {
        reason,
        reconnect_after_ms,
    };
    let b = w::Goaway::create(fbb, &args);
    (w::ServerBody::Goaway, b.as_union_value())
}

fn search_results(
    fbb: &mut Fbb,
    hits: &[SearchHit],
    next_before: Option<MessageId>,
    next_offset: Option<u32>,
) -> Body {
    let list: Vec<_> = hits
        .iter()
        .map(|h| {
            let sender_id = opt_str(fbb, &h.sender);
            let snippet = opt_str(fbb, &h.snippet);
            let spans: Vec<u32> = h.highlights.iter().flat_map(|&(a, b)| [a, b]).collect();
            let highlights = Some(fbb.create_vector(&spans));
            let c = uuid(h.conversation);
            w::SearchHit::create(
                fbb,
                &w::SearchHitArgs {
                    conversation: Some(&c),
                    message_id: h.message_id.0,
                    seq: h.seq,
                    sender_id,
                    created_at_ms: h.created_at_ms,
                    snippet,
                    highlights,
                },
            )
        })
        .collect();
    let hits = Some(fbb.create_vector(&list));
    let args = w::SearchResultsArgs {
        hits,
        next_before: next_before.map_or(0, |m| m.0),
        next_offset: next_offset.unwrap_or(0),
    };
    let b = w::SearchResults::create(fbb, &args);
    (w::ServerBody::SearchResults, b.as_union_value())
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
            seq: m.seq,
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
            last_seq: c.last_seq,
        },
    )
}
