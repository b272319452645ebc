//! One function per REST endpoint: parse, call the chat operation, shape the JSON.

use hyper::header::HeaderValue;
use hyper::{Response, StatusCode};
use parley_proto::SendMessage;
use parley_types::{
    ConversationId, ListCursor, MediaRef, MessageId, MessageKind, NewReport, Position,
    ReportSnapshot,
};
use serde::Deserialize;
use serde_json::{Value, json};

use super::json::{IdString, conversation_json, invalid, message_json, parse};
use super::{Call, Reply};
use crate::clock::rfc3339;
use crate::errors::ClientError;
use crate::session::{CONVERSATIONS_DEFAULT, HISTORY_DEFAULT, validate_send};
use crate::transport::response::{Body, json as json_response};

/// Longest report reason, characters.
const MAX_REASON_CHARS: usize = 2000;

fn ok(status: StatusCode, v: Value) -> Reply {
    Ok(json_response(status, v.to_string()))
}

fn no_content() -> Reply {
    let mut resp = Response::new(Body::default());
    *resp.status_mut() = StatusCode::NO_CONTENT;
    Ok(resp)
}

pub(super) async fn list(c: Call<'_>) -> Reply {
    let cursor = c
        .query
        .get("cursor")
        .map(|c| c.parse::<ListCursor>())
        .transpose()
        .map_err(|()| invalid("malformed cursor"))?;
    let limit = c.query.limit(CONVERSATIONS_DEFAULT)?;
    let page = match c.query.get("q") {
        Some(raw) => {
            let q = super::percent_decoded(&raw.replace('+', " "))?;
            c.node
                .chat
                .search_conversations(&c.user, &q, cursor, limit)
                .await?
        }
        None => c.node.chat.list(&c.user, cursor, limit).await?,
    };
    let items: Vec<Value> = page
        .items
        .iter()
        .map(|s| conversation_json(&s.conversation, s.last_message.as_ref(), s.unread))
        .collect();
    let next = page.next_cursor.map(|c| c.to_string());
    ok(
        StatusCode::OK,
        json!({ "conversations": items, "nextCursor": next }),
    )
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Direct {
    seller_id: String,
    listing_id: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Group {
    participant_ids: Vec<String>,
    #[serde(default)]
    title: String,
}

pub(super) async fn create(c: Call<'_>) -> Reply {
    let (node, user, now) = (c.node, c.user.clone(), c.now);
    let body = c.json().await?;
    if body.get("participantIds").is_some() {
        let g: Group = parse(body)?;
        node.group_limiter.take(&user, now.mono)?;
        let conv = node
            .chat
            .create_group(&user, &g.participant_ids, &g.title, now)
            .await?;
        return ok(StatusCode::CREATED, conversation_json(&conv, None, 0));
    }
    let d: Direct = parse(body)?;
    let created = node
        .chat
        .create_direct(&user, &d.seller_id, &d.listing_id, now)
        .await?;
    let status = if created.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    ok(status, conversation_json(&created.conversation, None, 0))
}

/// A page of participants when `?limit=` is not given (the most a page holds, too).
const PARTICIPANTS_DEFAULT: usize = parley_storage::MAX_PAGE;

/// Participant ids of one conversation, a page at a time: `?offset=&limit=`.
pub(super) async fn participants(c: Call<'_>, id: ConversationId) -> Reply {
    let conv = c.node.chat.conversations.for_user(id, &c.user).await?;
    let offset = c
        .query
        .get("offset")
        .map(str::parse::<usize>)
        .transpose()
        .map_err(|_| invalid("offset must be a number"))?
        .unwrap_or(0);
    let limit = c.query.limit(PARTICIPANTS_DEFAULT)?;
    let all = &conv.participants;
    let page = &all[offset.min(all.len())..(offset.saturating_add(limit)).min(all.len())];
    let next = (offset.saturating_add(limit) < all.len()).then(|| offset + limit);
    ok(
        StatusCode::OK,
        json!({ "participantIds": page, "participantCount": all.len(), "nextOffset": next }),
    )
}

pub(super) async fn get(c: Call<'_>, id: ConversationId) -> Reply {
    let conv = c.node.chat.conversations.for_user(id, &c.user).await?;
    ok(StatusCode::OK, conversation_json(&conv, None, 0))
}

pub(super) async fn delete(c: Call<'_>, id: ConversationId) -> Reply {
    c.node.chat.delete_conversation(&c.user, id).await?;
    no_content()
}

/// History, newest first: `?beforeSeq=` (preferred) or `?before=<message id>`; the answer's
/// `nextBeforeSeq` / `nextBefore` continue it.
pub(super) async fn history(c: Call<'_>, id: ConversationId) -> Reply {
    let number = |name: &str, what: &str| {
        c.query
            .get(name)
            .map(|b| b.parse::<u64>())
            .transpose()
            .map_err(|_| invalid(format!("{name} must be {what}")))
    };
    let before_id = number("before", "a message id")?;
    let before_seq = number("beforeSeq", "a seq (1 or more)")?;
    let before = match (before_seq, before_id) {
        (Some(0), _) => return Err(invalid("beforeSeq must be a seq (1 or more)")),
        (Some(seq), id) => Some(Position {
            seq,
            id: MessageId(id.unwrap_or(0)),
        }),
        (None, Some(id)) => Some(Position {
            seq: 0,
            id: MessageId(id),
        }),
        (None, None) => None,
    };
    let limit = c.query.limit(HISTORY_DEFAULT)?;
    let page = c.node.chat.history(&c.user, id, before, limit).await?;
    let messages: Vec<Value> = page.messages.iter().map(message_json).collect();
    let next = page.next_before.map(|p| p.id.0.to_string());
    let next_seq = page.next_before.map(|p| p.seq);
    ok(
        StatusCode::OK,
        json!({ "messages": messages, "nextBefore": next, "nextBeforeSeq": next_seq }),
    )
}

/// `{"id"}`: the id `POST /api/media` returned; the server fills the rest. A `url` (an
/// outside link, accepted before uploads existed) is refused.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct MediaBody {
    #[serde(default)]
    id: String,
    #[serde(default)]
    url: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct SendBody {
    #[serde(default)]
    content: String,
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    media: Option<MediaBody>,
    #[serde(default)]
    client_msg_id: Option<String>,
}

pub(super) async fn send(c: Call<'_>, conversation: ConversationId) -> Reply {
    let key = c.header("idempotency-key")?;
    let (node, user, now) = (c.node, c.user.clone(), c.now);
    let b: SendBody = parse(c.json().await?)?;
    let kind = match b.kind.as_deref() {
        None | Some("text") => MessageKind::Text,
        Some("image") => MessageKind::Image,
        Some("file") => MessageKind::File,
        Some(_) => return Err(invalid("type must be text, image or file")),
    };
    let client_msg_id = key
        .or(b.client_msg_id)
        .unwrap_or_else(|| format!("http-{}", uuid::Uuid::new_v4().simple()));
    let message = SendMessage {
        conversation,
        client_msg_id,
        kind,
        content: b.content,
        media: b.media.map(|m| MediaRef {
            id: m.id,
            url: m.url,
            ..MediaRef::default()
        }),
    };
    // The same content rules the socket protocol applies (one copy, in the session core).
    validate_send(&node.limits, &message).map_err(|(code, msg)| ClientError::new(code, msg))?;
    let appended = node.chat.send_message(&user, message, now, None).await?;
    let status = if appended.duplicate {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    let mut resp = json_response(status, message_json(&appended.message).to_string());
    if appended.duplicate {
        resp.headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    Ok(resp)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReadBody {
    up_to: IdString,
}

pub(super) async fn read(c: Call<'_>, conversation: ConversationId) -> Reply {
    let (node, user, now) = (c.node, c.user.clone(), c.now);
    let body: ReadBody = parse(c.json().await?)?;
    let up_to = MessageId(body.up_to.0);
    let r = node
        .chat
        .mark_read(&user, conversation, up_to, now, None)
        .await?;
    ok(
        StatusCode::OK,
        json!({
            "conversationId": conversation.to_string(),
            "upTo": r.state.up_to.0.to_string(),
            "readAt": rfc3339(r.state.read_at_ms),
            "advanced": r.advanced,
        }),
    )
}

/// `GET /api/conversations/:id/reads`: how far the other participants have read.
pub(super) async fn reads(c: Call<'_>, conversation: ConversationId) -> Reply {
    let reads: Vec<Value> = c
        .node
        .chat
        .reads(&c.user, conversation)
        .await?
        .into_iter()
        .map(|(user, r)| {
            json!({
                "userId": user,
                "upTo": r.up_to.0.to_string(),
                "seq": r.seq,
                "readAt": rfc3339(r.read_at_ms),
            })
        })
        .collect();
    ok(StatusCode::OK, json!({ "reads": reads }))
}

pub(super) async fn unread(c: Call<'_>) -> Reply {
    let counts = c.node.chat.unread(&c.user).await?;
    let total: u64 = counts.iter().map(|(_, n)| n).sum();
    let list: Vec<Value> = counts
        .iter()
        .map(|(c, n)| json!({ "conversationId": c.to_string(), "unreadCount": n }))
        .collect();
    ok(
        StatusCode::OK,
        json!({ "total": total, "conversations": list }),
    )
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BlockBody {
    user_id: String,
}

pub(super) async fn block(c: Call<'_>) -> Reply {
    let (node, user, now) = (c.node, c.user.clone(), c.now);
    let body: BlockBody = parse(c.json().await?)?;
    crate::auth::validate_user_id(&body.user_id).map_err(invalid)?;
    if body.user_id == *user {
        return Err(invalid("cannot block yourself"));
    }
    node.chat.set_block(&user, &body.user_id, true, now).await?;
    no_content()
}

pub(super) async fn blocks(c: Call<'_>) -> Reply {
    let blocks: Vec<Value> = c
        .node
        .chat
        .blocks_of(&c.user)
        .await?
        .into_iter()
        .map(|(user, at)| json!({ "userId": user, "blockedAt": rfc3339(at) }))
        .collect();
    ok(StatusCode::OK, json!({ "blocks": blocks }))
}

pub(super) async fn unblock(c: Call<'_>, target: &str) -> Reply {
    crate::auth::validate_user_id(target).map_err(invalid)?;
    c.node.chat.set_block(&c.user, target, false, c.now).await?;
    no_content()
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ReportBody {
    user_id: String,
    #[serde(default)]
    conversation_id: Option<String>,
    #[serde(default)]
    message_id: Option<IdString>,
    reason: String,
}

pub(super) async fn report(c: Call<'_>) -> Reply {
    let (node, user, now) = (c.node, c.user.clone(), c.now);
    let b: ReportBody = parse(c.json().await?)?;
    crate::auth::validate_user_id(&b.user_id).map_err(invalid)?;
    if b.reason.trim().is_empty() || b.reason.chars().count() > MAX_REASON_CHARS {
        return Err(invalid("reason must be 1 to 2000 characters"));
    }
    if b.user_id == *user {
        return Err(invalid("cannot report yourself"));
    }
    let conversation = b
        .conversation_id
        .as_deref()
        .map(super::conversation_id)
        .transpose()?;
    let message = b.message_id.map(|m| MessageId(m.0));
    // Every id must resolve: the conversation is the reporter's and the reported user's, the
    // message is in it and the reported user sent it.
    match (conversation, message) {
        (None, Some(_)) => return Err(invalid("a messageId needs its conversationId")),
        (None, None) => {}
        (Some(conv), message) => {
            let c = node.chat.conversations.for_user(conv, &user).await?;
            if !c.has_participant(&b.user_id) {
                return Err(invalid("the reported user is not in that conversation"));
            }
            if let Some(id) = message {
                let m = node.chat.message(&user, conv, id).await?;
                match m {
                    None => return Err(invalid("no such message in that conversation")),
                    Some(m) if m.sender != b.user_id => {
                        return Err(invalid("that message is not the reported user's"));
                    }
                    Some(_) => {}
                }
            }
        }
    }
    node.report_limiter.take(&user, now.mono)?;
    let snapshot = match conversation {
        Some(conv) => node.chat.report_snapshot(conv, message).await?,
        None => ReportSnapshot::default(),
    };
    let id = node
        .chat
        .report(NewReport {
            reporter: user.to_string(),
            reported_user: b.user_id,
            conversation,
            message,
            reason: b.reason,
            now_ms: now.wall_ms,
            snapshot,
            held: None,
        })
        .await?;
    ok(StatusCode::CREATED, json!({ "id": id.to_string() }))
}

/// Every body the API reads, from one JSON value, through the checks made before storage
/// (fuzzing: none of it may panic).
#[cfg(feature = "fuzz-internals")]
pub(super) fn fuzz_bodies(v: &Value) {
    let id = |s: &str| crate::auth::validate_user_id(s).is_ok();
    if let Ok(d) = parse::<Direct>(v.clone()) {
        let _ = (
            id(&d.seller_id),
            parley_types::rules::listing_id(&d.listing_id),
        );
    }
    if let Ok(g) = parse::<Group>(v.clone()) {
        let _ = g.participant_ids.iter().all(|p| id(p));
        let _ = parley_types::rules::title(&g.title);
    }
    if let Ok(b) = parse::<SendBody>(v.clone()) {
        let _ = (
            b.content.chars().count(),
            b.kind,
            b.media.map(|m| (m.id.len(), m.url.len())),
        );
        let _ = b
            .client_msg_id
            .map(|k| parley_types::rules::client_msg_id(&k));
    }
    let _ = parse::<ReadBody>(v.clone()).map(|r| r.up_to.0);
    let _ = parse::<BlockBody>(v.clone()).map(|b| id(&b.user_id));
    if let Ok(r) = parse::<ReportBody>(v.clone()) {
        let _ = (
            id(&r.user_id),
            r.reason.chars().count(),
            r.message_id.map(|m| m.0),
        );
        let _ = r.conversation_id.map(|c| c.parse::<ConversationId>());
    }
}
