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

/// Who a token is from and for: its `iss` and `aud` claims (a gateway configured with
/// `JWT_ISSUER` / `JWT_AUDIENCE` requires them). None: the claim is left out.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Scope<'a> {
    pub issuer: Option<&'a str>,
    pub audience: Option<&'a str>,
}

/// An HS256 token for `user` valid for `ttl_secs` from `now_ms`.
pub fn mint_hs256(secret: &[u8], user: &str, ttl_secs: i64, now_ms: i64) -> String {
    mint(secret, user, ttl_secs, now_ms, None, Scope::default())
}

/// An HS256 token like [`mint_hs256`]'s that carries `scope`'s `iss` and `aud`.
pub fn mint_hs256_scoped(
    secret: &[u8],
    user: &str,
    ttl_secs: i64,
    now_ms: i64,
    scope: Scope<'_>,
) -> String {
    mint(secret, user, ttl_secs, now_ms, None, scope)
}

/// An HS256 token like [`mint_hs256`]'s with the admin role (`parley_role: "admin"`).
pub fn mint_hs256_admin(secret: &[u8], user: &str, ttl_secs: i64, now_ms: i64) -> String {
    mint(
        secret,
        user,
        ttl_secs,
        now_ms,
        Some("admin"),
        Scope::default(),
    )
}

/// [`Claims`] with the scope's claims beside them (kept out of `Claims`, which tests and
/// tools build field by field).
#[derive(Serialize)]
struct Scoped<'a> {
    #[serde(flatten)]
    claims: &'a Claims,
    #[serde(skip_serializing_if = "Option::is_none")]
    iss: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    aud: Option<&'a str>,
}

fn mint(
    secret: &[u8],
    user: &str,
    ttl_secs: i64,
    now_ms: i64,
    role: Option<&str>,
    scope: Scope<'_>,
) -> String {
    let now = now_ms / 1000;
    let claims = Claims {
        sub: user.to_owned(),
        exp: now + ttl_secs,
        iat: now,
        parley_role: role.map(str::to_owned),
    };
    let scoped = Scoped {
        claims: &claims,
        iss: scope.issuer,
        aud: scope.audience,
    };
    let key = EncodingKey::from_secret(secret);
    // Encoding plain claims with a valid key cannot fail.
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), &scoped, &key).unwrap_or_default()
}

/// Signs `claims` with `key` (RS256 / EdDSA test tokens too).
pub fn sign(alg: Algorithm, key: &EncodingKey, claims: &Claims) -> String {
    // Encoding plain claims with a valid key cannot fail.
    jsonwebtoken::encode(&Header::new(alg), claims, key).unwrap_or_default()
}
