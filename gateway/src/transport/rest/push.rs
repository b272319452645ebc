//! The push endpoints: the caller's devices, muted conversations, and the VAPID key a
//! browser subscribes with.
//!
//! | method | path | does |
//! |---|---|---|
//! | PUT | /api/devices/:id | register (or replace) a device: `{platform: "webpush", endpoint, keys: {p256dh, auth}}` (a `PushSubscription.toJSON()` plus `platform`), `{platform: "fcm", token}`, `{platform: "apns", token, topic}`, `{platform: "webhook", token}` |
//! | GET | /api/devices | my devices (no keys; tokens shortened) |
//! | DELETE | /api/devices/:id | remove one (204; 404 when there is none) |
//! | GET | /api/conversations/:id/mute | `{muted, until}` |
//! | PUT | /api/conversations/:id/mute | `{muted: true}` (until unmuted), `{muted: true, forSecs}` or `{muted: true, until: <Unix ms>}`, `{muted: false}`: no pushes for it while muted |
//! | GET | /api/push/vapid | `{publicKey}`: the `applicationServerKey` for `pushManager.subscribe` |

use hyper::StatusCode;
use parley_proto::ErrorCode;
use parley_types::ConversationId;
use serde_json::{Value, json};

use super::json::invalid;
use super::{Call, Reply};
use crate::clock::rfc3339;
use crate::errors::ClientError;
use crate::push::device::public_json;
use crate::push::{Push, PushError};
use crate::transport::response::json as json_response;

fn ok(v: Value) -> Reply {
    Ok(json_response(StatusCode::OK, v.to_string()))
}

fn push<'a>(c: &Call<'a>) -> Result<&'a Push, ClientError> {
    c.node.chat.push_or_unsupported()
}

fn client_error(e: PushError) -> ClientError {
    match e {
        PushError::Refused(r) => invalid(r.0),
        PushError::TooMany(_) => invalid(e.to_string()),
        PushError::Storage(s) => s.into(),
    }
}

pub(super) async fn put_device(c: Call<'_>, id: &str) -> Reply {
    let p = push(&c)?;
    let (user, now) = (c.user.clone(), c.now);
    let body = c.json().await?;
    let d = p
        .put_device(&user, id, &body, now.wall_ms)
        .await
        .map_err(client_error)?;
    ok(public_json(&d))
}

pub(super) async fn devices(c: Call<'_>) -> Reply {
    let p = push(&c)?;
    let list = p.devices(&c.user).await?;
    let items: Vec<Value> = list.iter().map(public_json).collect();
    ok(json!({ "devices": items }))
}

pub(super) async fn delete_device(c: Call<'_>, id: &str) -> Reply {
    let p = push(&c)?;
    if p.delete_device(&c.user, id).await.map_err(client_error)? {
        let mut resp = hyper::Response::new(crate::transport::response::Body::default());
        *resp.status_mut() = StatusCode::NO_CONTENT;
        Ok(resp)
    } else {
        Err(ClientError::new(ErrorCode::NotFound, "no such device"))
    }
}

pub(super) async fn mute(c: Call<'_>, conversation: ConversationId) -> Reply {
    let p = push(&c)?;
    c.node
        .chat
        .conversations
        .for_user(conversation, &c.user)
        .await?;
    let until = p.muted(&c.user, conversation, c.now.wall_ms).await?;
    ok(mute_json(until))
}

pub(super) async fn set_mute(c: Call<'_>, conversation: ConversationId) -> Reply {
    let p = push(&c)?;
    let (node, user, now) = (c.node, c.user.clone(), c.now);
    node.chat
        .conversations
        .for_user(conversation, &user)
        .await?;
    let body = c.json().await?;
    let muted = body
        .get("muted")
        .and_then(Value::as_bool)
        .ok_or_else(|| invalid("muted is required (true or false)"))?;
    if let Some(secs) = body.get("forSecs") {
        let secs = secs
            .as_u64()
            .filter(|s| (1..=366 * 86_400).contains(s))
            .ok_or_else(|| invalid("forSecs must be 1..=31622400"))?;
        if !muted {
            return Err(invalid("forSecs goes with muted: true"));
        }
        let until = now.wall_ms + i64::try_from(secs * 1000).unwrap_or(i64::MAX);
        p.set_muted(&user, conversation, Some(until)).await?;
        return ok(mute_json(Some(until)));
    }
    let until = match (muted, body.get("until")) {
        (false, _) => None,
        (true, None | Some(Value::Null)) => Some(0),
        (true, Some(Value::Number(n))) => {
            let ms = n
                .as_i64()
                .filter(|ms| *ms > now.wall_ms)
                .ok_or_else(|| invalid("until must be a future time"))?;
            Some(ms)
        }
        (true, Some(_)) => return Err(invalid("until must be Unix milliseconds")),
    };
    p.set_muted(&user, conversation, until).await?;
    ok(mute_json(until))
}

fn mute_json(until: Option<i64>) -> Value {
    json!({
        "muted": until.is_some(),
        "until": until.filter(|t| *t > 0).map(rfc3339),
    })
}

pub(super) async fn vapid(c: Call<'_>) -> Reply {
    let p = push(&c)?;
    match p.providers.vapid_public_key() {
        Some(key) => ok(json!({ "publicKey": key })),
        None => Err(ClientError::new(
            ErrorCode::Unsupported,
            "Web Push is not configured on this node",
        )),
    }
}
