//! The development sign-in, `/api/dev/token`: on a node that signs with the generated
//! development secret (no `JWT_SECRET`, no public key), anyone who can reach it gets a token
//! for any user id, so the web page (and curl) can sign in without an auth service. On every
//! other node it does not exist: 404 `not_found`, as an unknown route.
//!
//! - `GET` → `{"enabled": true}`: the page asks whether to offer the sign-in.
//! - `POST {"userId"}` → `{"token", "userId", "expiresAt"}` (Unix ms): a token for that user,
//!   [`DEV_TOKEN_TTL_S`] long (never beyond `--jwt-max-lifetime-s`), with `iss`/`aud` when the
//!   node requires them. The id follows the rules of every user id (else 400 `invalid`).
//!
//! Rate: there is no per-address limiter for requests without a token; a mint counts as one
//! REST request of the user it is for (`--rest-requests-per-sec`), after the id is checked.

use hyper::body::Incoming;
use hyper::{Method, Request, StatusCode};
use parley_proto::ErrorCode;
use serde::Deserialize;
use serde_json::json;

use super::json::{invalid, parse};
use super::{Reply, json_body};
use crate::clock::Now;
use crate::errors::ClientError;
use crate::node::Node;
use crate::transport::response::json as json_response;

/// Where it lives.
pub(super) const PATH: &str = "/api/dev/token";
/// Lifetime of a development token: a day of work.
const DEV_TOKEN_TTL_S: i64 = 24 * 3600;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct SignIn {
    user_id: String,
}

/// Serves [`PATH`].
pub(super) async fn token(node: &Node, req: Request<Incoming>, now: Now) -> Reply {
    let no_route = || ClientError::new(ErrorCode::NotFound, "no such route");
    if !node.settings.dev_sign_in {
        return Err(no_route());
    }
    match *req.method() {
        Method::GET => Ok(json_response(
            StatusCode::OK,
            json!({ "enabled": true }).to_string(),
        )),
        Method::POST => {
            let body: SignIn = parse(json_body(node, req).await?)?;
            crate::auth::validate_user_id(&body.user_id).map_err(invalid)?;
            node.rest_limiter
                .take(&body.user_id.as_str().into(), now.mono)?;
            let minted = node
                .auth
                .mint(&body.user_id, DEV_TOKEN_TTL_S, now.wall_ms)
                // The development secret is an HS256 one: never None on a node that gets here.
                .ok_or_else(no_route)?;
            let reply = json!({
                "token": minted.token,
                "userId": body.user_id,
                "expiresAt": minted.expires_ms,
            });
            Ok(json_response(StatusCode::OK, reply.to_string()))
        }
        _ => Err(no_route()),
    }
}
