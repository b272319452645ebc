//! The REST API (JSON, `Authorization: Bearer <JWT>`, the seed's camelCase field names).
//!
//! | method | path | does |
//! |---|---|---|
//! | GET | /api/conversations?cursor=&limit= | the caller's conversations by last activity |
//! | POST | /api/conversations | `{sellerId, listingId}` → direct (caller = buyer, idempotent); `{participantIds, title}` → group |
//! | GET | /api/conversations/:id | one conversation |
//! | DELETE | /api/conversations/:id | delete it for everyone (direct: either side; group: creator) |
//! | GET | /api/conversations/:id/messages?beforeSeq=&limit= | history, newest first (`before=<id>` too) |
//! | POST | /api/conversations/:id/messages | send (`Idempotency-Key` = client_msg_id); delivered live |
//! | POST | /api/conversations/:id/read | `{upTo}`: move the read watermark |
//! | GET | /api/unread | unread counts |
//! | POST | /api/blocks, DELETE /api/blocks/:userId | block / unblock a user |
//! | POST | /api/reports | report a user (optionally a conversation / message) |

mod handlers;
mod json;

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::header;
use hyper::{Method, Request, Response, StatusCode};
use parley_proto::ErrorCode;
use parley_types::ConversationId;
use serde_json::Value;

use super::response::{Body, error};
use crate::auth::AuthError;
use crate::clock::Now;
use crate::errors::{ClientError, http_status};
use crate::node::Node;
use json::{Query, invalid};

type Reply = Result<Response<Body>, ClientError>;

/// Serves one `/api/...` request.
pub(crate) async fn handle(node: &Node, req: Request<Incoming>) -> Response<Body> {
    match route(node, req).await {
        Ok(resp) => resp,
        Err(e) => {
            node.metrics.error(e.code.code());
            let status =
                StatusCode::from_u16(http_status(e.code)).unwrap_or(StatusCode::BAD_REQUEST);
            error(status, e.code.name(), &e.message)
        }
    }
}

/// A request as the handlers see it.
struct Call<'a> {
    node: &'a Node,
    user: Arc<str>,
    now: Now,
    query: Query<'a>,
    req: Request<Incoming>,
}

impl Call<'_> {
    /// The JSON body, at most `--max-body-bytes`.
    async fn json(self) -> Result<Value, ClientError> {
        let limit = self.node.settings.max_body_bytes;
        let body: Bytes = Limited::new(self.req.into_body(), limit)
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

    fn header(&self, name: &str) -> Result<Option<String>, ClientError> {
        self.req
            .headers()
            .get(name)
            .map(|v| v.to_str().map(str::to_owned))
            .transpose()
            .map_err(|_| invalid(format!("{name} must be ASCII")))
    }
}

async fn route(node: &Node, req: Request<Incoming>) -> Reply {
    let now = Now::get();
    let user: Arc<str> = authenticate(node, &req, now)?.into();
    let method = req.method().clone();
    let path = req.uri().path().trim_end_matches('/').to_owned();
    let query_string = req.uri().query().map(str::to_owned);
    let call = Call {
        node,
        user,
        now,
        query: Query::parse(query_string.as_deref()),
        req,
    };
    let segments: Vec<&str> = path.split('/').skip(2).collect();
    match (&method, segments.as_slice()) {
        (&Method::GET, ["conversations"]) => handlers::list(call).await,
        (&Method::POST, ["conversations"]) => handlers::create(call).await,
        (&Method::GET, ["conversations", id]) => handlers::get(call, conversation_id(id)?).await,
        (&Method::DELETE, ["conversations", id]) => {
            handlers::delete(call, conversation_id(id)?).await
        }
        (&Method::GET, ["conversations", id, "messages"]) => {
            handlers::history(call, conversation_id(id)?).await
        }
        (&Method::POST, ["conversations", id, "messages"]) => {
            handlers::send(call, conversation_id(id)?).await
        }
        (&Method::POST, ["conversations", id, "read"]) => {
            handlers::read(call, conversation_id(id)?).await
        }
        (&Method::GET, ["unread"]) => handlers::unread(call).await,
        (&Method::POST, ["blocks"]) => handlers::block(call).await,
        (&Method::DELETE, ["blocks", target]) => {
            let target = (*target).to_owned();
            handlers::unblock(call, &target).await
        }
        (&Method::POST, ["reports"]) => handlers::report(call).await,
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
            AuthError::Expired => ClientError::new(ErrorCode::TokenExpired, "token expired"),
            AuthError::Invalid(why) => {
                ClientError::new(ErrorCode::AuthFailed, format!("invalid token: {why}"))
            }
        })
}

fn conversation_id(s: &str) -> Result<ConversationId, ClientError> {
    s.parse()
        .map_err(|_| ClientError::new(ErrorCode::NotFound, "no such conversation"))
}
