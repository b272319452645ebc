//! `GET /api/search`: message search over the caller's conversations.
//!
//! `q` (required, at most 200 characters): words that must all match, `"a phrase"`, and the
//! last word as a prefix while it is being typed (no space after it); case and accents never
//! matter; CJK text matches any two or more characters in a row. `conversation=<id>` keeps to
//! one conversation; `sort=newest` (default: pages with `before=<nextBefore>`) or
//! `sort=relevance` (pages with `offset=<nextOffset>`); `limit` 1..=100 (default 20).

use hyper::StatusCode;
use parley_types::{ConversationId, MessageId};
use serde_json::{Value, json};

use super::json::invalid;
use super::{Call, Reply, percent_decoded};
use crate::clock::rfc3339;
use crate::search::{SearchRequest, SortBy};
use crate::transport::response::json as json_response;

pub(super) async fn search(c: Call<'_>) -> Reply {
    let q = match c.query.get("q") {
        Some(raw) => percent_decoded(&raw.replace('+', " "))?,
        None => return Err(invalid("q is required")),
    };
    let conversation = c
        .query
        .get("conversation")
        .map(|s| s.parse::<ConversationId>())
        .transpose()
        .map_err(|_| invalid("conversation must be a conversation id"))?;
    let before = c
        .query
        .get("before")
        .map(|s| s.parse::<u64>().map(MessageId))
        .transpose()
        .map_err(|_| invalid("before must be a message id"))?;
    let sort = match c.query.get("sort") {
        None | Some("newest") => SortBy::Newest,
        Some("relevance") => SortBy::Relevance,
        Some(_) => return Err(invalid("sort must be newest or relevance")),
    };
    let offset = match c.query.get("offset") {
        None => 0,
        Some(s) => s
            .parse::<usize>()
            .ok()
            .filter(|n| *n <= MAX_OFFSET)
            .ok_or_else(|| invalid(format!("offset must be 0..={MAX_OFFSET}")))?,
    };
    let limit = c
        .query
        .limit(crate::search::DEFAULT_LIMIT)?
        .min(crate::search::MAX_LIMIT);
    let request = SearchRequest {
        q,
        conversation,
        before,
        sort,
        offset,
        limit,
    };
    let page = c.node.chat.search(&c.user, request).await?;
    let results: Vec<Value> = page
        .hits
        .iter()
        .map(|h| {
            json!({
                "conversationId": h.conversation.to_string(),
                "messageId": h.id.0.to_string(),
                "seq": h.seq,
                "senderId": h.sender,
                "createdAt": rfc3339(h.created_at_ms),
                "snippet": h.snippet,
                "highlights": h.highlights.iter().map(|&(a, b)| [a, b]).collect::<Vec<_>>(),
            })
        })
        .collect();
    let body = json!({
        "results": results,
        "nextBefore": page.next_before.map(|id| id.0.to_string()),
        "nextOffset": page.next_offset,
    });
    Ok(json_response(StatusCode::OK, body.to_string()))
}

/// Deepest relevance page (offset) served: scoring cost grows with it.
const MAX_OFFSET: usize = 1000;
