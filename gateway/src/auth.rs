//! JWT authentication: HS256 with the configured secret, plus RS256 or EdDSA when a public key
//! is configured. The user id is the token's `sub`. Expiry is checked against the `now` passed
//! in, so the session core stays deterministic under a virtual clock.

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
#[cfg(test)]
pub(crate) use parley_proto::token::mint_hs256;

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum AuthError {
    #[error("invalid token: {0}")]
    Invalid(String),
    #[error("token expired")]
    Expired,
}

/// Verifies tokens. Built once from config; shared by every session.
pub(crate) struct Authenticator {
    /// The HS256 secret and its key; None: HS256 is not accepted (only a public key is
    /// configured).
    hs256: Option<(Vec<u8>, DecodingKey)>,
    public: Option<(Algorithm, DecodingKey)>,
    rules: TokenRules,
}

/// What a token must satisfy besides its signature and expiry.
#[derive(Clone, Debug)]
pub(crate) struct TokenRules {
    /// The `iss` a token must carry (None: any or none).
    pub(crate) issuer: Option<String>,
    /// A value the token's `aud` must contain (None: `aud` is not checked).
    pub(crate) audience: Option<String>,
    /// Longest accepted lifetime, seconds: `exp - iat` (or `exp - now` without `iat`).
    pub(crate) max_lifetime_s: i64,
    /// Clock difference tolerated for `nbf` and `iat` in the future, seconds.
    pub(crate) leeway_s: i64,
}

/// Longest token lifetime accepted by default: 30 days.
pub(crate) const DEFAULT_MAX_TOKEN_LIFETIME_S: i64 = 30 * 24 * 3600;
/// Clock difference tolerated for `nbf` and `iat` by default.
pub(crate) const DEFAULT_TOKEN_LEEWAY_S: i64 = 60;

impl TokenRules {
    /// An HS256 token for `user`, signed with `secret`, that these rules accept: with their
    /// `iss` and `aud`, living `ttl_s` but never longer than their longest lifetime.
    /// `gateway token` and the development sign-in both mint with this.
    pub(crate) fn mint_hs256(&self, secret: &[u8], user: &str, ttl_s: i64, now_ms: i64) -> Minted {
        let ttl_s = ttl_s.min(self.max_lifetime_s);
        let scope = parley_proto::token::Scope {
            issuer: self.issuer.as_deref(),
            audience: self.audience.as_deref(),
        };
        Minted {
            token: parley_proto::token::mint_hs256_scoped(secret, user, ttl_s, now_ms, scope),
            // The token's `exp`, whole seconds (as minted).
            expires_ms: (now_ms / 1000 + ttl_s) * 1000,
            ttl_s,
        }
    }
}

/// A token minted here.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Minted {
    pub(crate) token: String,
    /// Its `exp`, Unix ms.
    pub(crate) expires_ms: i64,
    /// The lifetime it got (less than asked when the rules allow no more).
    pub(crate) ttl_s: i64,
}

impl Default for TokenRules {
    fn default() -> Self {
        Self {
            issuer: None,
            audience: None,
            max_lifetime_s: DEFAULT_MAX_TOKEN_LIFETIME_S,
            leeway_s: DEFAULT_TOKEN_LEEWAY_S,
        }
    }
}

/// A verified token: whose, and until when.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Verified {
    pub(crate) user: String,
    /// Unix ms.
    pub(crate) expires_ms: i64,
    /// The token carries [`ROLE_CLAIM`] = [`ADMIN_ROLE`]: the admin API is open to it.
    pub(crate) admin: bool,
}

/// The JWT claim that names a user's role in Parley.
pub(crate) const ROLE_CLAIM: &str = "parley_role";
/// The role of moderators: [`ROLE_CLAIM`] with this value opens `/api/admin/...`.
pub(crate) const ADMIN_ROLE: &str = "admin";

/// The claims checked here (iss and aud are checked by the JWT library).
#[derive(serde::Deserialize)]
struct Checked {
    sub: String,
    exp: i64,
    #[serde(default)]
    iat: Option<i64>,
    #[serde(default)]
    nbf: Option<i64>,
    /// [`ROLE_CLAIM`].
    #[serde(default)]
    parley_role: Option<String>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            // Never the secret itself.
            .field("hs256", &self.hs256.is_some())
            .field("public_key", &self.public.as_ref().map(|(a, _)| a))
            .field("rules", &self.rules)
            .finish_non_exhaustive()
    }
}

impl Authenticator {
    /// HS256 with `secret` (None: not accepted); with `public_key_pem`, also RS256 (RSA key) or
    /// EdDSA (Ed25519 key).
    pub(crate) fn new(
        secret: Option<&[u8]>,
        public_key_pem: Option<&[u8]>,
        rules: TokenRules,
    ) -> Result<Self, String> {
        let public = match public_key_pem {
            None => None,
            Some(pem) => Some(
                DecodingKey::from_rsa_pem(pem)
                    .map(|k| (Algorithm::RS256, k))
                    .or_else(|_| DecodingKey::from_ed_pem(pem).map(|k| (Algorithm::EdDSA, k)))
                    .map_err(|e| format!("public key is neither RSA nor Ed25519 PEM: {e}"))?,
            ),
        };
        if secret.is_none() && public.is_none() {
            return Err("no way to verify tokens: neither a secret nor a public key".into());
        }
        Ok(Self {
            hs256: secret.map(|s| (s.to_vec(), DecodingKey::from_secret(s))),
            public,
            rules,
        })
    }

    /// A token this authenticator accepts, for `user`: HS256 with its secret (see
    /// [`TokenRules::mint_hs256`]). None when it takes no HS256 tokens. Only the development
    /// sign-in calls this, and only on a node with the development secret.
    pub(crate) fn mint(&self, user: &str, ttl_s: i64, now_ms: i64) -> Option<Minted> {
        let (secret, _) = self.hs256.as_ref()?;
        Some(self.rules.mint_hs256(secret, user, ttl_s, now_ms))
    }

    /// The user and expiry of a valid token at `now_ms`: signed by an accepted key, `sub` a
    /// valid user id, not expired, not before its `nbf`, not issued in the future, not longer
    /// lived than allowed, with the configured `iss`/`aud`, and no `crit` extension (none is
    /// understood here).
    pub(crate) fn verify(&self, token: &str, now_ms: i64) -> Result<Verified, AuthError> {
        let invalid = |e: &dyn std::fmt::Display| AuthError::Invalid(e.to_string());
        let header = jsonwebtoken::decode_header(token).map_err(|e| invalid(&e))?;
        if header.crit.as_ref().is_some_and(|c| !c.is_empty()) {
            return Err(AuthError::Invalid(
                "critical header extensions not supported".into(),
            ));
        }
        let key = match (header.alg, &self.hs256, &self.public) {
            (Algorithm::HS256, Some((_, key)), _) => key,
            (alg, _, Some((public_alg, key))) if alg == *public_alg => key,
            (alg, _, _) => {
                return Err(AuthError::Invalid(format!(
                    "algorithm {alg:?} not accepted"
                )));
            }
        };
        let mut validation = Validation::new(header.alg);
        // Times are checked below against the caller's clock.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        let mut required = vec!["exp", "sub"];
        if let Some(iss) = &self.rules.issuer {
            validation.set_issuer(&[iss]);
            required.push("iss");
        }
        match &self.rules.audience {
            Some(aud) => {
                validation.set_audience(&[aud]);
                required.push("aud");
            }
            None => validation.validate_aud = false,
        }
        validation.set_required_spec_claims(&required);
        let claims = jsonwebtoken::decode::<Checked>(token, key, &validation)
            .map_err(|e| invalid(&e))?
            .claims;
        self.check_times(&claims, now_ms)?;
        validate_user_id(&claims.sub).map_err(AuthError::Invalid)?;
        Ok(Verified {
            admin: claims.parley_role.as_deref() == Some(ADMIN_ROLE),
            user: claims.sub,
            expires_ms: claims.exp.saturating_mul(1000),
        })
    }

    fn check_times(&self, c: &Checked, now_ms: i64) -> Result<(), AuthError> {
        let now = now_ms.div_euclid(1000);
        let leeway = self.rules.leeway_s;
        if c.exp <= now {
            return Err(AuthError::Expired);
        }
        if c.nbf.is_some_and(|nbf| nbf > now + leeway) {
            return Err(AuthError::Invalid("token not valid yet (nbf)".into()));
        }
        if c.iat.is_some_and(|iat| iat > now + leeway) {
            return Err(AuthError::Invalid(
                "token issued in the future (iat)".into(),
            ));
        }
        let from = c.iat.unwrap_or(now);
        if c.exp.saturating_sub(from) > self.rules.max_lifetime_s {
            return Err(AuthError::Invalid(format!(
                "token lifetime over {} s",
                self.rules.max_lifetime_s
            )));
        }
        Ok(())
    }
}

/// A user id by the rules of `parley_types::rules` (1 to 128 bytes, no control or invisible
/// characters, no whitespace at the ends), or why not.
pub(crate) fn validate_user_id(id: &str) -> Result<(), String> {
    parley_types::rules::user_id(id).map_err(|why| format!("user id {why}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header};
    use parley_proto::token::Claims;

    const NOW: i64 = 1_800_000_000_000;

    fn hs(secret: &[u8]) -> Authenticator {
        Authenticator::new(Some(secret), None, TokenRules::default()).expect("auth")
    }

    fn user(v: Result<Verified, AuthError>) -> Result<String, AuthError> {
        v.map(|v| v.user)
    }

    #[test]
    fn valid_token_gives_its_subject_and_expiry() {
        let auth = hs(b"secret");
        let token = mint_hs256(b"secret", "alice", 60, NOW);
        let v = auth.verify(&token, NOW).expect("valid");
        assert_eq!(v.user, "alice");
        assert_eq!(v.expires_ms, NOW + 60_000);
    }

    fn custom(claims: serde_json::Value, header: Header) -> String {
        jsonwebtoken::encode(&header, &claims, &EncodingKey::from_secret(b"secret"))
            .expect("encode")
    }

    #[test]
    fn nbf_iat_lifetime_issuer_audience_and_crit_are_checked() {
        let now = NOW / 1000;
        let auth = hs(b"secret");
        let h = Header::new(Algorithm::HS256);
        let base = |extra: serde_json::Value| {
            let mut c = serde_json::json!({"sub": "alice", "exp": now + 600});
            c.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            c
        };
        let ok = |c| auth.verify(&custom(c, h.clone()), NOW).is_ok();
        assert!(
            ok(base(serde_json::json!({"nbf": now + 30, "iat": now + 30}))),
            "within leeway"
        );
        assert!(
            !ok(base(serde_json::json!({"nbf": now + 120}))),
            "not yet valid"
        );
        assert!(
            !ok(base(serde_json::json!({"iat": now + 120}))),
            "issued in the future"
        );
        let year = serde_json::json!({"sub": "alice", "iat": now, "exp": now + 365 * 86_400});
        assert!(!ok(year), "lives longer than 30 days");
        let mut crit = h.clone();
        crit.crit = Some(vec!["b64".into()]);
        let with_crit = custom(base(serde_json::json!({})), crit);
        assert!(
            auth.verify(&with_crit, NOW).is_err(),
            "unknown crit extension"
        );
        let strict = Authenticator::new(
            Some(b"secret"),
            None,
            TokenRules {
                issuer: Some("market".into()),
                audience: Some("chat".into()),
                ..TokenRules::default()
            },
        )
        .expect("auth");
        let ok = |c| strict.verify(&custom(c, h.clone()), NOW).is_ok();
        assert!(ok(base(
            serde_json::json!({"iss": "market", "aud": ["chat", "x"]})
        )));
        assert!(!ok(base(serde_json::json!({"iss": "evil", "aud": "chat"}))));
        assert!(!ok(base(
            serde_json::json!({"iss": "market", "aud": "other"})
        )));
        assert!(
            !ok(base(serde_json::json!({"aud": "chat"}))),
            "issuer required"
        );
        // Without an audience configured, a token's aud is not held against it.
        assert!(
            auth.verify(
                &custom(base(serde_json::json!({"aud": "x"})), h.clone()),
                NOW
            )
            .is_ok()
        );
    }

    #[test]
    fn with_only_a_public_key_hs256_is_refused() {
        let ed_public = include_bytes!("../testdata/ed25519-test-public.pem");
        let auth = Authenticator::new(None, Some(ed_public), TokenRules::default()).expect("auth");
        let hs = mint_hs256(b"any-dev-secret-0123456789", "alice", 60, NOW);
        assert!(matches!(auth.verify(&hs, NOW), Err(AuthError::Invalid(_))));
        assert!(Authenticator::new(None, None, TokenRules::default()).is_err());
    }

    #[test]
    fn minted_tokens_carry_the_rules_and_stay_within_the_longest_lifetime() {
        let rules = TokenRules {
            issuer: Some("market".into()),
            audience: Some("chat".into()),
            max_lifetime_s: 3600,
            ..TokenRules::default()
        };
        let auth = Authenticator::new(Some(b"secret"), None, rules).expect("auth");
        let minted = auth.mint("alice", 24 * 3600, NOW).expect("an HS256 secret");
        assert_eq!(minted.ttl_s, 3600, "capped at the longest lifetime");
        assert_eq!(minted.expires_ms, NOW + 3_600_000);
        let v = auth
            .verify(&minted.token, NOW)
            .expect("accepted: iss and aud present");
        assert_eq!(
            (v.user.as_str(), v.expires_ms),
            ("alice", minted.expires_ms)
        );
        assert!(!v.admin);
        let plain = hs(b"secret").mint("bob", 60, NOW).expect("minted");
        assert_eq!(plain.ttl_s, 60);
        assert!(hs(b"secret").verify(&plain.token, NOW).is_ok());
        let ed_public = include_bytes!("../testdata/ed25519-test-public.pem");
        let public_only =
            Authenticator::new(None, Some(ed_public), TokenRules::default()).expect("auth");
        assert_eq!(public_only.mint("alice", 60, NOW), None);
    }

    #[test]
    fn wrong_secret_garbage_and_expiry_are_refused() {
        let auth = hs(b"secret");
        let forged = mint_hs256(b"other", "alice", 60, NOW);
        assert!(matches!(
            auth.verify(&forged, NOW),
            Err(AuthError::Invalid(_))
        ));
        assert!(matches!(
            auth.verify("not.a.jwt", NOW),
            Err(AuthError::Invalid(_))
        ));
        assert!(matches!(auth.verify("", NOW), Err(AuthError::Invalid(_))));
        let token = mint_hs256(b"secret", "alice", 60, NOW);
        assert_eq!(auth.verify(&token, NOW + 60_000), Err(AuthError::Expired));
        let bad_sub = mint_hs256(b"secret", "", 60, NOW);
        assert!(matches!(
            auth.verify(&bad_sub, NOW),
            Err(AuthError::Invalid(_))
        ));
    }

    #[test]
    fn only_the_admin_role_claim_opens_the_admin_api() {
        let auth = hs(b"secret");
        let plain = auth.verify(&mint_hs256(b"secret", "u", 60, NOW), NOW);
        assert!(!plain.expect("plain").admin);
        let admin = parley_proto::token::mint_hs256_admin(b"secret", "m", 60, NOW);
        assert!(auth.verify(&admin, NOW).expect("admin").admin);
        for role in ["Admin", "moderator", ""] {
            let claims = Claims {
                sub: "u".into(),
                exp: NOW / 1000 + 60,
                iat: NOW / 1000,
                parley_role: Some(role.into()),
            };
            let t = parley_proto::token::sign(
                Algorithm::HS256,
                &EncodingKey::from_secret(b"secret"),
                &claims,
            );
            assert!(!auth.verify(&t, NOW).expect(role).admin, "{role}");
        }
    }

    fn sign(alg: Algorithm, key: &EncodingKey, user: &str, exp_ms: i64) -> String {
        let claims = Claims {
            sub: user.into(),
            exp: exp_ms / 1000,
            iat: NOW / 1000,
            parley_role: None,
        };
        parley_proto::token::sign(alg, key, &claims)
    }

    #[test]
    fn eddsa_and_rs256_public_keys_are_accepted_when_configured() {
        let ed_private = include_bytes!("../testdata/ed25519-test-private.pem");
        let ed_public = include_bytes!("../testdata/ed25519-test-public.pem");
        let rsa_private = include_bytes!("../testdata/rsa-test-private.pem");
        let rsa_public = include_bytes!("../testdata/rsa-test-public.pem");
        let ed_key = EncodingKey::from_ed_pem(ed_private).expect("ed key");
        let rsa_key = EncodingKey::from_rsa_pem(rsa_private).expect("rsa key");
        let ed_token = sign(Algorithm::EdDSA, &ed_key, "carol", NOW + 60_000);
        let rsa_token = sign(Algorithm::RS256, &rsa_key, "dave", NOW + 60_000);

        let rules = TokenRules::default();
        let ed = Authenticator::new(Some(b"secret"), Some(ed_public), rules.clone()).expect("ed");
        assert_eq!(user(ed.verify(&ed_token, NOW)), Ok("carol".into()));
        assert!(
            ed.verify(&rsa_token, NOW).is_err(),
            "RS256 not configured here"
        );
        let hs = mint_hs256(b"secret", "alice", 60, NOW);
        assert_eq!(
            user(ed.verify(&hs, NOW)),
            Ok("alice".into()),
            "HS256 still works"
        );

        let rsa =
            Authenticator::new(Some(b"secret"), Some(rsa_public), rules.clone()).expect("rsa");
        assert_eq!(user(rsa.verify(&rsa_token, NOW)), Ok("dave".into()));
        assert!(rsa.verify(&ed_token, NOW).is_err());
        let expired = sign(Algorithm::RS256, &rsa_key, "dave", NOW - 1);
        assert_eq!(user(rsa.verify(&expired, NOW)), Err(AuthError::Expired));

        assert!(Authenticator::new(Some(b"secret"), Some(b"not a pem"), rules).is_err());
    }

    #[test]
    fn unsupported_algorithms_are_refused() {
        let auth = hs(b"secret");
        // alg "none" with an empty signature.
        let header = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0";
        let claims = "eyJzdWIiOiJhbGljZSIsImV4cCI6OTk5OTk5OTk5OX0";
        assert!(auth.verify(&format!("{header}.{claims}."), NOW).is_err());
    }
}
