//! The REST API (JSON, `Authorization: Bearer <JWT>`, the seed's camelCase field names).
//!
//! | method | path | does |
//! |---|---|---|
//! | GET | /api/conversations?cursor=&limit= | the caller's conversations by last activity |
//! | POST | /api/conversations | `{sellerId, listingId}` → direct (caller = buyer, idempotent); `{participantIds, title}` → group |
//! | GET | /api/conversations/:id | one conversation (at most 100 participant ids, and `participantCount`) |
//! | GET | /api/conversations/:id/participants?offset=&limit= | its participant ids, a page at a time |
//! | GET | /api/conversations/:id/reads | how far the other participants have read (read ticks) |
//! | DELETE | /api/conversations/:id | delete it for everyone (direct: either side; group: creator) |
//! | GET | /api/conversations/:id/messages?beforeSeq=&limit= | history, newest first (`before=<id>` too) |
//! | POST | /api/conversations/:id/messages | send (`Idempotency-Key` = client_msg_id); delivered live |
//! | POST | /api/conversations/:id/read | `{upTo}`: move the read watermark |
//! | GET | /api/unread | unread counts |
//! | GET | /api/search?q=&conversation=&before=&sort=&offset=&limit= | my messages matching `q` (see `search`) |
//! | GET | /api/blocks | the users I blocked |
//! | POST | /api/blocks, DELETE /api/blocks/:userId | block / unblock a user |
//! | POST | /api/reports | report a user (optionally a conversation / message) |
//! | GET | /api/standing | my standing (warnings, muted until, banned) |
//! | POST | /api/media?conversation=&name= | upload (raw body; typed by its bytes) → `{id, url, …}` |
//! | GET | /api/media/:id | my upload's record, with fresh URLs |
//! | PUT, GET, DELETE | /api/devices/:id, /api/devices | my push devices (see `push`) |
//! | GET, PUT | /api/conversations/:id/mute | mute a conversation's pushes |
//! | GET | /api/push/vapid | the Web Push `applicationServerKey` |
//!
//! Only on a node with the development secret, and without a token (`dev`):
//!
//! | method | path | does |
//! |---|---|---|
//! | GET | /api/dev/token | `{enabled: true}` (404 on any other node) |
//! | POST | /api/dev/token | `{userId}` → `{token, userId, expiresAt}`: a 24 h token for that user |
//!
//! With the role claim `parley_role: "admin"` in the token, the admin API (`admin`):
//!
//! | method | path | does |
//! |---|---|---|
//! | GET | /api/admin/reports?status=open\|all&userId=&before=&limit= | reports, newest first |
//! | GET | /api/admin/reports/:id | one report with its snapshot and resolution |
//! | POST | /api/admin/reports/:id/resolve | `{action, durationSecs?, note?}` on the reported user |
//! | POST | /api/admin/reports/:id/release | `{note?}`: send a held message, close its report |
//! | GET | /api/admin/users/:id | a user's standing |
//! | POST | /api/admin/users/:id/actions | `{action, durationSecs?, note?}` without a report |
//! | GET | /api/admin/log?userId=&before=&limit= | the moderation log, newest first |

mod admin;
mod dev;
mod handlers;
mod json;
mod media;
mod push;
mod search;

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
    /// The token has the admin role.
    admin: bool,
    now: Now,
    query: Query<'a>,
    req: Request<Incoming>,
}

impl Call<'_> {
    /// The JSON body (see [`json_body`]).
    async fn json(self) -> Result<Value, ClientError> {
        json_body(self.node, self.req).await
    }

    /// The body (see [`read_body`]).
    async fn body(
        self,
        limit: usize,
        deadline: std::time::Duration,
        too_large: ClientError,
        late: &str,
    ) -> Result<Bytes, ClientError> {
        read_body(self.req, limit, deadline, too_large, late).await
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

/// `req`'s JSON body, at most `--max-body-bytes`, all of it within `--http-body-timeout-ms` (a
/// trickling body holds nothing longer).
async fn json_body(node: &Node, req: Request<Incoming>) -> Result<Value, ClientError> {
    let limit = node.settings.max_body_bytes;
    let deadline = node.settings.http_body_timeout;
    let too_large = ClientError::new(
        ErrorCode::FrameTooLarge,
        format!("request body larger than {limit} bytes"),
    );
    let late = "the request body did not arrive in time";
    let body = read_body(req, limit, deadline, too_large, late).await?;
    serde_json::from_slice(&body).map_err(|e| invalid(format!("body is not valid JSON: {e}")))
}

/// `req`'s body, at most `limit` bytes (else `too_large`), all of it within `deadline` (else
/// `late`). A `Content-Length` over the limit is refused before a byte of it is read.
async fn read_body(
    req: Request<Incoming>,
    limit: usize,
    deadline: std::time::Duration,
    too_large: ClientError,
    late: &str,
) -> Result<Bytes, ClientError> {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large);
    }
    let read = Limited::new(req.into_body(), limit).collect();
    Ok(tokio::time::timeout(deadline, read)
        .await
        .map_err(|_| invalid(late))?
        .map_err(
            |e| match e.downcast_ref::<http_body_util::LengthLimitError>() {
                Some(_) => too_large,
                None => invalid("the request body could not be read"),
            },
        )?
        .to_bytes())
}

async fn route(node: &Node, req: Request<Incoming>) -> Reply {
    let now = Now::get();
    // The one route without a token: it hands them out (and on most nodes does not exist).
    if req.uri().path().trim_end_matches('/') == dev::PATH {
        return dev::token(node, req, now).await;
    }
    let verified = authenticate(node, &req, now)?;
    let user: Arc<str> = verified.user.into();
    node.rest_limiter.take(&user, now.mono)?;
    node.chat.not_banned(&user).await?;
    let method = req.method().clone();
    let path = req.uri().path().trim_end_matches('/').to_owned();
    let query_string = req.uri().query().map(str::to_owned);
    let call = Call {
        node,
        user,
        admin: verified.admin,
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
        (&Method::GET, ["conversations", id, "reads"]) => {
            handlers::reads(call, conversation_id(id)?).await
        }
        (&Method::GET, ["conversations", id, "participants"]) => {
            handlers::participants(call, conversation_id(id)?).await
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
        (&Method::GET, ["search"]) => search::search(call).await,
        (&Method::GET, ["blocks"]) => handlers::blocks(call).await,
        (&Method::POST, ["blocks"]) => handlers::block(call).await,
        (&Method::DELETE, ["blocks", target]) => {
            let target = percent_decoded(target)?;
            handlers::unblock(call, &target).await
        }
        (&Method::POST, ["reports"]) => handlers::report(call).await,
        (&Method::GET, ["standing"]) => admin::own_standing(call).await,
        (&Method::GET, ["conversations", id, "mute"]) => {
            push::mute(call, conversation_id(id)?).await
        }
        (&Method::PUT, ["conversations", id, "mute"]) => {
            push::set_mute(call, conversation_id(id)?).await
        }
        (&Method::GET, ["devices"]) => push::devices(call).await,
        (&Method::PUT, ["devices", id]) => push::put_device(call, id).await,
        (&Method::DELETE, ["devices", id]) => push::delete_device(call, id).await,
        (&Method::GET, ["push", "vapid"]) => push::vapid(call).await,
        (&Method::POST, ["media"]) => media::upload(call).await,
        (&Method::GET, ["media", id]) => media::get(call, id).await,
        (_, ["admin", rest @ ..]) => {
            if !call.admin {
                return Err(ClientError::new(
                    ErrorCode::Forbidden,
                    format!(
                        "the admin API needs a token with {} \"{}\"",
                        crate::auth::ROLE_CLAIM,
                        crate::auth::ADMIN_ROLE
                    ),
                ));
            }
            match (&method, rest) {
                (&Method::GET, ["reports"]) => admin::reports(call).await,
                (&Method::GET, ["reports", id]) => admin::report(call, report_id(id)?).await,
                (&Method::POST, ["reports", id, "resolve"]) => {
                    admin::resolve(call, report_id(id)?).await
                }
                (&Method::POST, ["reports", id, "release"]) => {
                    admin::release(call, report_id(id)?).await
                }
                (&Method::GET, ["users", id]) => admin::standing(call, &percent_decoded(id)?).await,
                (&Method::POST, ["users", id, "actions"]) => {
                    admin::act(call, &percent_decoded(id)?).await
                }
                (&Method::GET, ["log"]) => admin::log(call).await,
                _ => Err(ClientError::new(ErrorCode::NotFound, "no such route")),
            }
        }
        _ => Err(ClientError::new(ErrorCode::NotFound, "no such route")),
    }
}

/// A path segment with its `%XX` escapes decoded (ids may need them), as UTF-8.
fn percent_decoded(segment: &str) -> Result<String, ClientError> {
    let bad = || invalid("a path segment has a malformed %-escape or is not UTF-8");
    let raw = segment.as_bytes();
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        if raw[i] == b'%' {
            let hex = raw.get(i + 1..i + 3).ok_or_else(bad)?;
            if !hex.iter().all(u8::is_ascii_hexdigit) {
                return Err(bad());
            }
            let hex = std::str::from_utf8(hex).map_err(|_| bad())?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| bad())?);
            i += 3;
        } else {
            out.push(raw[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| bad())
}

fn report_id(s: &str) -> Result<uuid::Uuid, ClientError> {
    s.parse()
        .map_err(|_| ClientError::new(ErrorCode::NotFound, "no such report"))
}

fn authenticate(
    node: &Node,
    req: &Request<Incoming>,
    now: Now,
) -> Result<crate::auth::Verified, ClientError> {
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

/// A request line and body as a client could send them, through every parser the API runs
/// before it reaches storage: path segments, the query string, the JSON body (fuzzing).
/// The input is `path?query`, a newline, then the body.
#[cfg(feature = "fuzz-internals")]
pub(crate) fn fuzz_parse(data: &[u8]) {
    let (head, body) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let head = String::from_utf8_lossy(head);
    let (path, query) = match head.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (&*head, None),
    };
    for segment in path.split('/') {
        if let Ok(decoded) = percent_decoded(segment) {
            let _ = crate::auth::validate_user_id(&decoded);
        }
        let _ = conversation_id(segment);
    }
    let q = Query::parse(query);
    let _ = q.limit(50);
    let _ = q
        .get("cursor")
        .map(|c| c.parse::<parley_types::ListCursor>());
    let _ = q.get("beforeSeq").map(|c| c.parse::<u64>());
    if body.len() <= crate::node::DEFAULT_MAX_BODY_BYTES
        && let Ok(v) = serde_json::from_slice::<Value>(body)
    {
        handlers::fuzz_bodies(&v);
    }
}
