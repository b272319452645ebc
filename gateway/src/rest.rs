//! The REST API (JSON, `Authorization: Bearer <JWT>`, the seed's camelCase field names).
//!
//! | method | path | does |
//! |---|---|---|
//! | GET | /api/conversations?cursor=&limit= | the caller's conversations by last activity |
//! | POST | /api/conversations | `{sellerId, listingId}` → direct (caller = buyer, idempotent); `{participantIds, title}` → group |
//! | GET | /api/conversations/:id | one conversation |
//! | DELETE | /api/conversations/:id | delete it for everyone (direct: either side; group: creator) |
//! | GET | /api/conversations/:id/messages?before=&limit= | history, newest first |
//! | POST | /api/conversations/:id/messages | send (`Idempotency-Key` = client_msg_id); delivered live |
//! | POST | /api/conversations/:id/read | `{upTo}`: move the read watermark |
//! | GET | /api/unread | unread counts |
//! | POST | /api/blocks, DELETE /api/blocks/:userId | block / unblock a user |
//! | POST | /api/reports | report a user (optionally a conversation / message) |

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use parley_types::{
    Conversation, ConversationId, ConversationKind, ListCursor, MediaRef, Message, MessageId,
    MessageKind, NewReport,
};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::clock::{Now, rfc3339};
use parley_proto::ErrorCode;

use crate::errors::ClientError;
use crate::http::{Body, error, json as json_response};
use crate::node::Node;
use crate::ops;
use crate::session::{CONVERSATIONS_DEFAULT, HISTORY_DEFAULT};
use parley_proto::SendMessage;

type Reply = Result<Response<Body>, ClientError>;

/// Serves one `/api/...` request.
pub async fn handle(node: &Node, req: Request<Incoming>) -> Response<Body> {
    match route(node, req).await {
        Ok(resp) => resp,
        Err(e) => {
            node.metrics.error(e.code.code());
            let status = StatusCode::from_u16(crate::errors::http_status(e.code))
                .unwrap_or(StatusCode::BAD_REQUEST);
            error(status, e.code.name(), &e.message)
        }
    }
}

fn invalid(msg: impl Into<String>) -> ClientError {
    ClientError::new(ErrorCode::Invalid, msg)
}

async fn route(node: &Node, req: Request<Incoming>) -> Reply {
    let now = Now::get();
    let user: Arc<str> = authenticate(node, &req, now)?.into();
    let method = req.method().clone();
    let path = req.uri().path().trim_end_matches('/').to_owned();
    let query = Query::parse(req.uri().query());
    let segments: Vec<&str> = path.split('/').skip(2).collect();
    match (&method, segments.as_slice()) {
        (&Method::GET, [c]) if *c == "conversations" => list(node, &user, &query).await,
        (&Method::POST, [c]) if *c == "conversations" => {
            create(node, &user, read_json(node, req).await?, now).await
        }
        (&Method::GET, [c, id]) if *c == "conversations" => {
            let c = node
                .hub
                .conversation_for(conversation_id(id)?, &user)
                .await?;
            Ok(json_response(
                StatusCode::OK,
                conversation_json(&c, None, 0).to_string(),
            ))
        }
        (&Method::DELETE, [c, id]) if *c == "conversations" => {
            ops::delete_conversation(node, &user, conversation_id(id)?).await?;
            Ok(no_content())
        }
        (&Method::GET, [c, id, m]) if *c == "conversations" && *m == "messages" => {
            history(node, &user, conversation_id(id)?, &query).await
        }
        (&Method::POST, [c, id, m]) if *c == "conversations" && *m == "messages" => {
            let conversation = conversation_id(id)?;
            let key = req
                .headers()
                .get("idempotency-key")
                .map(|v| v.to_str().map(str::to_owned))
                .transpose()
                .map_err(|_| invalid("Idempotency-Key must be ASCII"))?;
            let body = read_json(node, req).await?;
            send(node, &user, conversation, key, body, now).await
        }
        (&Method::POST, [c, id, r]) if *c == "conversations" && *r == "read" => {
            #[derive(Deserialize)]
            #[serde(rename_all = "camelCase")]
            struct ReadBody {
                up_to: IdString,
            }
            let body: ReadBody = parse(read_json(node, req).await?)?;
            let conversation = conversation_id(id)?;
            let up_to = MessageId(body.up_to.0);
            let r = ops::mark_read(node, &user, conversation, up_to, now, None).await?;
            Ok(json_response(
                StatusCode::OK,
                json!({
                    "conversationId": conversation.to_string(),
                    "upTo": r.state.up_to.0.to_string(),
                    "readAt": rfc3339(r.state.read_at_ms),
                    "advanced": r.advanced,
                })
                .to_string(),
            ))
        }
        (&Method::GET, [u]) if *u == "unread" => {
            let counts = node.storage.unread_counts(&user).await?;
            let total: u64 = counts.iter().map(|(_, n)| n).sum();
            let list: Vec<Value> = counts
                .iter()
                .map(|(c, n)| json!({ "conversationId": c.to_string(), "unreadCount": n }))
                .collect();
            Ok(json_response(
                StatusCode::OK,
                json!({ "total": total, "conversations": list }).to_string(),
            ))
        }
        (&Method::POST, [b]) if *b == "blocks" => {
            #[derive(Deserialize)]
            #[serde(rename_all = "camelCase")]
            struct BlockBody {
                user_id: String,
            }
            let body: BlockBody = parse(read_json(node, req).await?)?;
            crate::auth::validate_user_id(&body.user_id).map_err(invalid)?;
            if body.user_id == *user {
                return Err(invalid("cannot block yourself"));
            }
            node.storage
                .set_block(&user, &body.user_id, true, now.wall_ms)
                .await?;
            Ok(no_content())
        }
        (&Method::DELETE, [b, target]) if *b == "blocks" => {
            node.storage
                .set_block(&user, target, false, now.wall_ms)
                .await?;
            Ok(no_content())
        }
        (&Method::POST, [r]) if *r == "reports" => {
            report(node, &user, read_json(node, req).await?, now).await
        }
        _ => Err(ClientError::new(ErrorCode::NotFound, "no such route")),
    }
}

fn authenticate(node: &Node, req: &Request<Incoming>, now: Now) -> Result<String, ClientError> {
    let header = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| ClientError::new(ErrorCode::AuthFailed, "missing Authorization header"))?;
    let token = header
        .strip_prefix("Bearer ")
        .or_else(|| header.strip_prefix("bearer "))
        .ok_or_else(|| ClientError::new(ErrorCode::AuthFailed, "expected a Bearer token"))?;
    node.auth
        .verify(token.trim(), now.wall_ms)
        .map_err(|e| match e {
            crate::auth::AuthError::Expired => {
                ClientError::new(ErrorCode::TokenExpired, "token expired")
            }
            crate::auth::AuthError::Invalid(why) => {
                ClientError::new(ErrorCode::AuthFailed, format!("invalid token: {why}"))
            }
        })
}

async fn read_json(node: &Node, req: Request<Incoming>) -> Result<Value, ClientError> {
    let limit = node.config.max_body_bytes;
    let body: Bytes = Limited::new(req.into_body(), limit)
        .collect()
        .await
        .map_err(|_| {
            ClientError::new(
                ErrorCode::FrameTooLarge,
                format!("request body larger than {limit} bytes"),
            )
        })?
        .to_bytes();
    serde_json::from_slice(&body).map_err(|e| invalid(format!("body is not valid JSON: {e}")))
}

fn parse<T: serde::de::DeserializeOwned>(v: Value) -> Result<T, ClientError> {
    serde_json::from_value(v).map_err(|e| invalid(format!("invalid body: {e}")))
}

fn conversation_id(s: &str) -> Result<ConversationId, ClientError> {
    s.parse()
        .map_err(|_| ClientError::new(ErrorCode::NotFound, "no such conversation"))
}

fn no_content() -> Response<Body> {
    let mut resp = Response::new(Body::default());
    *resp.status_mut() = StatusCode::NO_CONTENT;
    resp
}

/// A message id in JSON: a string (ids exceed JavaScript's 2^53) or a number.
#[derive(Debug)]
struct IdString(u64);

impl<'de> Deserialize<'de> for IdString {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Value::deserialize(d)? {
            Value::String(s) => s.parse().map(IdString).map_err(serde::de::Error::custom),
            Value::Number(n) => n
                .as_u64()
                .map(IdString)
                .ok_or_else(|| serde::de::Error::custom("message id must be a positive integer")),
            _ => Err(serde::de::Error::custom(
                "message id must be a string or number",
            )),
        }
    }
}

struct Query<'a>(Vec<(&'a str, &'a str)>);

impl<'a> Query<'a> {
    fn parse(q: Option<&'a str>) -> Self {
        Query(
            q.unwrap_or_default()
                .split('&')
                .filter_map(|kv| kv.split_once('=').or(Some((kv, ""))))
                .filter(|(k, _)| !k.is_empty())
                .collect(),
        )
    }

    fn get(&self, key: &str) -> Option<&'a str> {
        self.0
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| *v)
            .filter(|v| !v.is_empty())
    }

    fn limit(&self, default: usize) -> Result<usize, ClientError> {
        match self.get("limit") {
            None => Ok(default),
            Some(v) => v
                .parse::<usize>()
                .ok()
                .filter(|n| *n >= 1)
                .map(|n| n.min(parley_storage::MAX_PAGE))
                .ok_or_else(|| invalid("limit must be a positive integer")),
        }
    }
}

pub fn message_json(m: &Message) -> Value {
    json!({
        "id": m.id.0.to_string(),
        "conversationId": m.conversation.to_string(),
        "senderId": m.sender,
        "type": m.kind.as_str(),
        "content": m.content,
        "media": m.media.as_ref().map(|x| json!({
            "url": x.url,
            "mimeType": x.mime_type,
            "sizeBytes": x.size_bytes,
            "name": x.name,
            "width": x.width,
            "height": x.height,
        })),
        "clientMsgId": m.client_msg_id,
        "createdAt": rfc3339(m.created_at_ms),
    })
}

pub fn conversation_json(c: &Conversation, last: Option<&Message>, unread: u64) -> Value {
    let mut v = json!({
        "id": c.id.to_string(),
        "participantIds": c.participants,
        "createdAt": rfc3339(c.created_at_ms),
        "lastActivityAt": rfc3339(c.last_activity_ms),
        "lastMessage": last.map(message_json),
        "unreadCount": unread,
    });
    let fields = match &c.kind {
        ConversationKind::Direct {
            buyer,
            seller,
            listing,
        } => {
            json!({ "type": "direct", "buyerId": buyer, "sellerId": seller, "listingId": listing })
        }
        ConversationKind::Group { title, creator } => {
            json!({ "type": "group", "title": title, "creatorId": creator })
        }
    };
    if let (Some(obj), Value::Object(extra)) = (v.as_object_mut(), fields) {
        obj.extend(extra);
    }
    v
}

async fn list(node: &Node, user: &str, q: &Query<'_>) -> Reply {
    let cursor = q
        .get("cursor")
        .map(|c| c.parse::<ListCursor>())
        .transpose()
        .map_err(|()| invalid("malformed cursor"))?;
    let page = node
        .storage
        .list_conversations(user, cursor, q.limit(CONVERSATIONS_DEFAULT)?)
        .await?;
    let items: Vec<Value> = page
        .items
        .iter()
        .map(|s| conversation_json(&s.conversation, s.last_message.as_ref(), s.unread))
        .collect();
    Ok(json_response(
        StatusCode::OK,
        json!({
            "conversations": items,
            "nextCursor": page.next_cursor.map(|c| c.to_string()),
        })
        .to_string(),
    ))
}

async fn create(node: &Node, user: &str, body: Value, now: Now) -> Reply {
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
    if body.get("participantIds").is_some() {
        let g: Group = parse(body)?;
        let c = ops::create_group(node, user, &g.participant_ids, &g.title, now).await?;
        return Ok(json_response(
            StatusCode::CREATED,
            conversation_json(&c, None, 0).to_string(),
        ));
    }
    let d: Direct = parse(body)?;
    let created = ops::create_direct(node, user, &d.seller_id, &d.listing_id, now).await?;
    let status = if created.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(json_response(
        status,
        conversation_json(&created.conversation, None, 0).to_string(),
    ))
}

async fn history(node: &Node, user: &str, id: ConversationId, q: &Query<'_>) -> Reply {
    node.hub.conversation_for(id, user).await?;
    let before = q
        .get("before")
        .map(|b| b.parse::<u64>().map(MessageId))
        .transpose()
        .map_err(|_| invalid("before must be a message id"))?;
    let page = node
        .storage
        .history(id, before, q.limit(HISTORY_DEFAULT)?)
        .await?;
    let messages: Vec<Value> = page.messages.iter().map(message_json).collect();
    Ok(json_response(
        StatusCode::OK,
        json!({
            "messages": messages,
            "nextBefore": page.next_before.map(|m| m.0.to_string()),
        })
        .to_string(),
    ))
}

async fn send(
    node: &Node,
    user: &Arc<str>,
    conversation: ConversationId,
    key: Option<String>,
    body: Value,
    now: Now,
) -> Reply {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase", deny_unknown_fields)]
    struct Media {
        url: String,
        #[serde(default)]
        mime_type: String,
        #[serde(default)]
        size_bytes: u64,
        #[serde(default)]
        name: String,
        #[serde(default)]
        width: u32,
        #[serde(default)]
        height: u32,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase", deny_unknown_fields)]
    struct SendBody {
        #[serde(default)]
        content: String,
        #[serde(default, rename = "type")]
        kind: Option<String>,
        #[serde(default)]
        media: Option<Media>,
        #[serde(default)]
        client_msg_id: Option<String>,
    }
    let b: SendBody = parse(body)?;
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
            url: m.url,
            mime_type: m.mime_type,
            size_bytes: m.size_bytes,
            name: m.name,
            width: m.width,
            height: m.height,
        }),
    };
    validate_send(node, &message)?;
    let appended = ops::send_message(node, user, message, now, None).await?;
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

/// The same content rules the socket protocol applies (one copy, in the session core).
fn validate_send(node: &Node, m: &SendMessage) -> Result<(), ClientError> {
    crate::session::validate_send(&node.limits, m)
        .map_err(|(code, msg)| ClientError::new(code, msg))
}

async fn report(node: &Node, user: &str, body: Value, now: Now) -> Reply {
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
    let b: ReportBody = parse(body)?;
    crate::auth::validate_user_id(&b.user_id).map_err(invalid)?;
    if b.reason.trim().is_empty() || b.reason.chars().count() > 2000 {
        return Err(invalid("reason must be 1 to 2000 characters"));
    }
    let conversation = b
        .conversation_id
        .as_deref()
        .map(conversation_id)
        .transpose()?;
    if let Some(c) = conversation {
        node.hub.conversation_for(c, user).await?;
    }
    let id = node
        .storage
        .report(NewReport {
            reporter: user.to_owned(),
            reported_user: b.user_id,
            conversation,
            message: b.message_id.map(|m| MessageId(m.0)),
            reason: b.reason,
            now_ms: now.wall_ms,
        })
        .await?;
    Ok(json_response(
        StatusCode::CREATED,
        json!({ "id": id.to_string() }).to_string(),
    ))
}
