//! The REST API's JSON shapes (the seed's camelCase names) and its query strings.

use parley_proto::ErrorCode;
use parley_proto::codec::MAX_LISTED_PARTICIPANTS;
use parley_types::{Conversation, ConversationKind, Message};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::clock::rfc3339;
use crate::errors::ClientError;

pub(super) fn invalid(msg: impl Into<String>) -> ClientError {
    ClientError::new(ErrorCode::Invalid, msg)
}

pub(super) fn parse<T: serde::de::DeserializeOwned>(v: Value) -> Result<T, ClientError> {
    serde_json::from_value(v).map_err(|e| invalid(format!("invalid body: {e}")))
}

/// A message id in JSON: a string (ids exceed JavaScript's 2^53) or a number.
#[derive(Debug)]
pub(super) struct IdString(pub(super) u64);

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

/// `key=value` pairs of a query string (the first of a repeated key wins).
pub(super) struct Query<'a>(Vec<(&'a str, &'a str)>);

impl<'a> Query<'a> {
    pub(super) fn parse(q: Option<&'a str>) -> Self {
        Query(
            q.unwrap_or_default()
                .split('&')
                .filter_map(|kv| kv.split_once('=').or(Some((kv, ""))))
                .filter(|(k, _)| !k.is_empty())
                .collect(),
        )
    }

    pub(super) fn get(&self, key: &str) -> Option<&'a str> {
        self.0
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| *v)
            .filter(|v| !v.is_empty())
    }

    /// `limit=`, clamped to a page; `default` when absent.
    pub(super) fn limit(&self, default: usize) -> Result<usize, ClientError> {
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

pub(super) fn message_json(m: &Message) -> Value {
    json!({
        "id": m.id.0.to_string(),
        "seq": m.seq,
        "conversationId": m.conversation.to_string(),
        "senderId": m.sender,
        "type": m.kind.as_str(),
        "content": m.content,
        "media": m.media.as_ref().map(|x| json!({
            "id": (!x.id.is_empty()).then_some(x.id.as_str()),
            "url": x.url,
            "mimeType": x.mime_type,
            "sizeBytes": x.size_bytes,
            "name": x.name,
            "width": x.width,
            "height": x.height,
            "thumbUrl": (!x.thumb_url.is_empty()).then_some(x.thumb_url.as_str()),
            "thumbWidth": (x.thumb_width > 0).then_some(x.thumb_width),
            "thumbHeight": (x.thumb_height > 0).then_some(x.thumb_height),
            "placeholder": (!x.placeholder.is_empty()).then_some(x.placeholder.as_str()),
            "durationMs": (x.duration_ms > 0).then_some(x.duration_ms),
        })),
        "clientMsgId": m.client_msg_id,
        "createdAt": rfc3339(m.created_at_ms),
    })
}

/// A conversation as the API shows it. At most [`MAX_LISTED_PARTICIPANTS`] participant ids
/// (as the socket protocol lists them), with `participantCount`; the whole list is paged at
/// `GET /api/conversations/:id/participants`.
pub(super) fn conversation_json(c: &Conversation, last: Option<&Message>, unread: u64) -> Value {
    let listed = &c.participants[..c.participants.len().min(MAX_LISTED_PARTICIPANTS)];
    let mut v = json!({
        "id": c.id.to_string(),
        "participantIds": listed,
        "participantCount": c.participants.len(),
        "createdAt": rfc3339(c.created_at_ms),
        "lastActivityAt": rfc3339(c.last_activity_ms),
        "lastMessage": last.map(message_json),
        "lastSeq": last.map(|m| m.seq),
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
