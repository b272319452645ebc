//! The token a client presents in `Hello` (and as a REST bearer token): a JWT whose `sub` is the
//! user id. The gateway verifies it (`gateway::auth`); development tools, tests and the load
//! test mint HS256 tokens with [`mint_hs256`] (production tokens come from the marketplace's
//! own auth service).

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::{Deserialize, Serialize};

/// The claims Parley reads.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The user id.
    pub sub: String,
    /// Expiry, Unix seconds.
    pub exp: i64,
    /// Issued at, Unix seconds.
    #[serde(default)]
    pub iat: i64,
    /// The user's role in Parley: `"admin"` opens the admin API (moderators).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parley_role: Option<String>,
}

/// An HS256 token for `user` valid for `ttl_secs` from `now_ms`.
pub fn mint_hs256(secret: &[u8], user: &str, ttl_secs: i64, now_ms: i64) -> String {
    mint(secret, user, ttl_secs, now_ms, None)
}

/// An HS256 token like [`mint_hs256`]'s with the admin role (`parley_role: "admin"`).
pub fn mint_hs256_admin(secret: &[u8], user: &str, ttl_secs: i64, now_ms: i64) -> String {
    mint(secret, user, ttl_secs, now_ms, Some("admin"))
}

fn mint(secret: &[u8], user: &str, ttl_secs: i64, now_ms: i64, role: Option<&str>) -> String {
    let now = now_ms / 1000;
    let claims = Claims {
        sub: user.to_owned(),
        exp: now + ttl_secs,
        iat: now,
        parley_role: role.map(str::to_owned),
    };
    sign(Algorithm::HS256, &EncodingKey::from_secret(secret), &claims)
}

/// Signs `claims` with `key` (RS256 / EdDSA test tokens too).
pub fn sign(alg: Algorithm, key: &EncodingKey, claims: &Claims) -> String {
    // Encoding plain claims with a valid key cannot fail.
    jsonwebtoken::encode(&Header::new(alg), claims, key).unwrap_or_default()
}
