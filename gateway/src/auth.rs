//! JWT authentication: HS256 with the configured secret, plus RS256 or EdDSA when a public key
//! is configured. The user id is the token's `sub`. Expiry is checked against the `now` passed
//! in, so the session core stays deterministic under a virtual clock.

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use parley_proto::token::Claims;
pub(crate) use parley_proto::token::mint_hs256;

/// Longest accepted user id (bytes). Ids are opaque but bounded: they are stored and sent often.
pub(crate) const MAX_USER_ID_BYTES: usize = 128;

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
    hs256: DecodingKey,
    public: Option<(Algorithm, DecodingKey)>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("public_key", &self.public.as_ref().map(|(a, _)| a))
            .finish_non_exhaustive()
    }
}

impl Authenticator {
    /// HS256 with `secret`; with `public_key_pem`, also RS256 (RSA key) or EdDSA (Ed25519 key).
    pub(crate) fn new(secret: &[u8], public_key_pem: Option<&[u8]>) -> Result<Self, String> {
        let public = match public_key_pem {
            None => None,
            Some(pem) => Some(
                DecodingKey::from_rsa_pem(pem)
                    .map(|k| (Algorithm::RS256, k))
                    .or_else(|_| DecodingKey::from_ed_pem(pem).map(|k| (Algorithm::EdDSA, k)))
                    .map_err(|e| format!("public key is neither RSA nor Ed25519 PEM: {e}"))?,
            ),
        };
        Ok(Self {
            hs256: DecodingKey::from_secret(secret),
            public,
        })
    }

    /// The user id of a valid, unexpired token.
    pub(crate) fn verify(&self, token: &str, now_ms: i64) -> Result<String, AuthError> {
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| AuthError::Invalid(e.to_string()))?;
        let key = match (header.alg, &self.public) {
            (Algorithm::HS256, _) => &self.hs256,
            (alg, Some((public_alg, key))) if alg == *public_alg => key,
            (alg, _) => {
                return Err(AuthError::Invalid(format!(
                    "algorithm {alg:?} not accepted"
                )));
            }
        };
        let mut validation = Validation::new(header.alg);
        // Expiry is checked below against the caller's clock.
        validation.validate_exp = false;
        validation.set_required_spec_claims(&["exp", "sub"]);
        let data = jsonwebtoken::decode::<Claims>(token, key, &validation)
            .map_err(|e| AuthError::Invalid(e.to_string()))?;
        let claims = data.claims;
        if claims.exp.saturating_mul(1000) <= now_ms {
            return Err(AuthError::Expired);
        }
        validate_user_id(&claims.sub).map_err(|e| AuthError::Invalid(e.into()))?;
        Ok(claims.sub)
    }
}

/// User ids: 1..=128 bytes, no control characters.
pub(crate) fn validate_user_id(id: &str) -> Result<(), &'static str> {
    if id.is_empty() || id.len() > MAX_USER_ID_BYTES {
        return Err("user id must be 1 to 128 bytes");
    }
    if id.chars().any(char::is_control) {
        return Err("user id must not contain control characters");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::EncodingKey;

    const NOW: i64 = 1_800_000_000_000;

    #[test]
    fn valid_token_gives_its_subject() {
        let auth = Authenticator::new(b"secret", None).expect("auth");
        let token = mint_hs256(b"secret", "alice", 60, NOW);
        assert_eq!(auth.verify(&token, NOW), Ok("alice".into()));
    }

    #[test]
    fn wrong_secret_garbage_and_expiry_are_refused() {
        let auth = Authenticator::new(b"secret", None).expect("auth");
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

    fn sign(alg: Algorithm, key: &EncodingKey, user: &str, exp_ms: i64) -> String {
        let claims = Claims {
            sub: user.into(),
            exp: exp_ms / 1000,
            iat: 0,
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

        let ed = Authenticator::new(b"secret", Some(ed_public)).expect("ed auth");
        assert_eq!(ed.verify(&ed_token, NOW), Ok("carol".into()));
        assert!(
            ed.verify(&rsa_token, NOW).is_err(),
            "RS256 not configured here"
        );
        let hs = mint_hs256(b"secret", "alice", 60, NOW);
        assert_eq!(ed.verify(&hs, NOW), Ok("alice".into()), "HS256 still works");

        let rsa = Authenticator::new(b"secret", Some(rsa_public)).expect("rsa auth");
        assert_eq!(rsa.verify(&rsa_token, NOW), Ok("dave".into()));
        assert!(rsa.verify(&ed_token, NOW).is_err());
        let expired = sign(Algorithm::RS256, &rsa_key, "dave", NOW - 1);
        assert_eq!(rsa.verify(&expired, NOW), Err(AuthError::Expired));

        assert!(Authenticator::new(b"secret", Some(b"not a pem")).is_err());
    }

    #[test]
    fn unsupported_algorithms_are_refused() {
        let auth = Authenticator::new(b"secret", None).expect("auth");
        // alg "none" with an empty signature.
        let header = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0";
        let claims = "eyJzdWIiOiJhbGljZSIsImV4cCI6OTk5OTk5OTk5OX0";
        assert!(auth.verify(&format!("{header}.{claims}."), NOW).is_err());
    }
}
