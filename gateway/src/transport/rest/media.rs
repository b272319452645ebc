//! `POST /api/media?conversation=<id>&name=<file name>`: an upload, the raw bytes as the
//! body (any `Content-Type`: the type comes from the bytes). Answered 201 with the media's id
//! (send it in a message of kind image or file) and its signed URLs.

use std::sync::Arc;

use hyper::StatusCode;
use hyper::header::{self, HeaderValue};
use parley_proto::ErrorCode;
use serde_json::{Value, json};

use super::json::invalid;
use super::{Call, Reply, conversation_id, percent_decoded};
use crate::errors::ClientError;
use crate::media::{MediaError, MediaKind, MediaRecord, Upload};
use crate::transport::response::json as json_response;

pub(super) async fn upload(c: Call<'_>) -> Reply {
    let node = c.node;
    let media = &node.chat.media;
    let conversation = conversation_id(
        c.query
            .get("conversation")
            .ok_or_else(|| invalid("?conversation=<id> is required: media belongs to one"))?,
    )?;
    let name = c.query.get("name").map(percent_decoded).transpose()?;
    node.chat
        .conversations
        .for_user(conversation, &c.user)
        .await?;
    node.upload_limiter.take(&c.user, c.now.mono).map_err(|e| {
        ClientError::new(
            e.code,
            format!(
                "{}: at most {} uploads an hour",
                e.message, node.settings.media_uploads_per_hour
            ),
        )
    })?;
    let _admitted = media.admit().map_err(error)?;
    let limit = media.config().max_upload_bytes();
    let too_large = ClientError::new(
        ErrorCode::MediaTooLarge,
        format!("uploads are at most {limit} bytes"),
    );
    let deadline = node.settings.media_upload_timeout;
    let late = "the upload did not arrive in time";
    let user = c.user.clone();
    let now = c.now;
    let bytes = c.body(limit, deadline, too_large, late).await?;
    if bytes.is_empty() {
        return Err(invalid("the upload is empty"));
    }
    let (record, cost) = media
        .upload(Upload {
            owner: user.to_string(),
            conversation,
            name: name.unwrap_or_default(),
            bytes,
            now_ms: now.wall_ms,
        })
        .await
        .map_err(error)?;
    node.metrics.media_upload(
        record.kind == MediaKind::Image,
        cost.bytes_in,
        cost.bytes_stored,
        cost.processing,
    );
    let body = media_json(node, &record, now.wall_ms);
    let mut resp = json_response(StatusCode::CREATED, body.to_string());
    if let Ok(v) = HeaderValue::from_str(&format!("/api/media/{}", record.id)) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    Ok(resp)
}

/// `GET /api/media/:id`: the uploader's own record (fresh URLs).
pub(super) async fn get(c: Call<'_>, id: &str) -> Reply {
    let media = &c.node.chat.media;
    let not_found = || ClientError::new(ErrorCode::NotFound, "no such media");
    let id: uuid::Uuid = id.parse().map_err(|_| not_found())?;
    let record = media
        .record(id)
        .await
        .map_err(error)?
        .ok_or_else(not_found)?;
    if record.owner != *c.user {
        return Err(not_found());
    }
    let body = media_json(c.node, &record, c.now.wall_ms);
    Ok(json_response(StatusCode::OK, body.to_string()))
}

fn media_json(node: &crate::node::Node, r: &Arc<MediaRecord>, now_ms: i64) -> Value {
    let media = &node.chat.media;
    let main = r.renditions.first();
    let thumb = r.rendition("thumb");
    json!({
        "id": r.id.to_string(),
        "type": match r.kind { MediaKind::Image => "image", MediaKind::File => "file" },
        "conversationId": r.conversation.to_string(),
        "name": r.name,
        "mimeType": main.map(|m| m.mime_type.as_str()),
        "sizeBytes": main.map(|m| m.size_bytes),
        "width": main.map(|m| m.width),
        "height": main.map(|m| m.height),
        "url": main.map(|m| media.url(r.id, &m.variant, now_ms)),
        "thumbUrl": thumb.map(|t| media.url(r.id, &t.variant, now_ms)),
        "thumbWidth": thumb.map(|t| t.width),
        "thumbHeight": thumb.map(|t| t.height),
        "placeholder": (!r.placeholder.is_empty()).then_some(r.placeholder.as_str()),
        "durationMs": (r.duration_ms > 0).then_some(r.duration_ms),
        "uploadBytes": r.upload_bytes,
        "uploadSha256": r.upload_sha256,
        "originalWidth": (r.kind == MediaKind::Image).then_some(r.width),
        "originalHeight": (r.kind == MediaKind::Image).then_some(r.height),
        "createdAt": crate::clock::rfc3339(r.created_ms),
    })
}

fn error(e: MediaError) -> ClientError {
    let (code, message) = e.into_client();
    ClientError::new(code, message)
}
