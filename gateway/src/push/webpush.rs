//! Web Push's cryptography, without I/O (but for [`Vapid::load_or_generate`], the one call that
//! reads and writes the key file): the payload encrypted for one subscription, and the VAPID
//! header that identifies this server to the push service.
//!
//! - [`Subscription::parse`] checks what a browser's `PushSubscription.toJSON()` gives, once.
//! - [`encrypt`] makes the request body: keys as RFC 8291 derives them, RFC 8188's `aes128gcm`
//!   content coding, one record. A push service takes at most 4096 bytes of body, so the
//!   plaintext is at most [`MAX_PLAINTEXT`] = 4096 − 86 (header) − 1 (delimiter) − 16 (tag)
//!   = 3993 bytes; anything longer is refused, never split or cut.
//! - [`Vapid::authorization`] makes the `Authorization` header of RFC 8292:
//!   `vapid t=<ES256 JWT>, k=<public key>`, signed afresh for every request (nothing cached).
//!
//! Two elliptic-curve crates: every push's ECDH is ring's (an ephemeral key per push; about a
//! fifth of the CPU `p256`'s arithmetic took), but ring only takes ephemeral keys it made
//! itself, and the RFC 8291 example vector fixes the sender's key, so the vector test runs the
//! same [`seal`] on `p256`'s ECDH. `p256` also checks a subscription's key is on the curve and
//! loads the VAPID key. HKDF, AES-128-GCM, ECDSA and randomness are ring's.

use std::fmt;
use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use p256::elliptic_curve::sec1::ToEncodedPoint as _;
use ring::aead::{AES_128_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom as _, SystemRandom};
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};
use ring::{agreement, hkdf};

/// The record size the header announces; the whole payload is one record below it.
const RECORD_SIZE: u32 = 4096;
/// An uncompressed P-256 point: 0x04 || x || y.
const POINT_BYTES: usize = 65;
/// Header (RFC 8188 section 2.1): salt (16), record size (4), key id length (1), key id: the
/// sender's public key (RFC 8291 section 4).
const HEADER_BYTES: usize = 16 + 4 + 1 + POINT_BYTES;
/// AES-GCM's tag.
const TAG_BYTES: usize = 16;
/// The padding delimiter of the last record (RFC 8188 section 2).
const LAST_RECORD: u8 = 2;
/// The body every push service must accept (RFC 8030: at least 4096 octets of payload).
const MAX_BODY_BYTES: usize = 4096;
/// Longest plaintext one message carries.
pub(crate) const MAX_PLAINTEXT: usize = MAX_BODY_BYTES - HEADER_BYTES - 1 - TAG_BYTES;
/// Longest subscription endpoint accepted.
const MAX_ENDPOINT_BYTES: usize = 2048;
/// Longest a VAPID token may live (RFC 8292 section 2: at most 24 hours).
const MAX_VAPID_TTL_SECS: u64 = 24 * 3600;
/// The JWT header RFC 8292 uses, byte for byte.
const JWT_HEADER: &[u8] = br#"{"typ":"JWT","alg":"ES256"}"#;

/// Why a subscription, a payload or a VAPID key was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum WebPushError {
    #[error(
        "the subscription's endpoint must be an http:// or https:// URL with a host, of at most \
         {MAX_ENDPOINT_BYTES} bytes"
    )]
    Endpoint,
    #[error(
        "keys.p256dh must be a P-256 public key: an uncompressed point on the curve (65 bytes), \
         base64url"
    )]
    PublicKey,
    #[error("keys.auth must be 16 bytes, base64url")]
    Auth,
    #[error("the payload is {0} bytes; one Web Push message carries at most {MAX_PLAINTEXT}")]
    TooLong(usize),
    #[error("the VAPID key: {0}")]
    Key(String),
    #[error("the VAPID subject must be a mailto: address or an https:// URL, not {0:?}")]
    Subject(String),
    #[error("the system's random number generator failed")]
    Random,
    /// A primitive refused its input; the lengths here are fixed, so this is a bug, not bad input.
    #[error("the {0} step failed")]
    Crypto(&'static str),
}

/// base64url without padding, the form Web Push writes keys and tokens in.
pub(crate) fn b64url(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// base64url; trailing padding is tolerated (some clients send it).
fn unb64url(text: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(text.trim_end_matches('=')).ok()
}

/// A browser's push subscription: where to send, and the keys to encrypt for.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Subscription {
    /// The push resource (an http(s) URL with a host, at most 2048 bytes).
    pub(crate) endpoint: String,
    /// The user agent's public key, an uncompressed point on P-256.
    pub(crate) p256dh: [u8; POINT_BYTES],
    /// The user agent's authentication secret.
    pub(crate) auth: [u8; 16],
}

impl fmt::Debug for Subscription {
    /// The endpoint only: the keys stay out of logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription")
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

impl Subscription {
    /// Checks a subscription as `PushSubscription.toJSON()` gives it: `endpoint`,
    /// `keys.p256dh` and `keys.auth` (base64url, padding tolerated).
    pub(crate) fn parse(
        endpoint: &str,
        p256dh_b64url: &str,
        auth_b64url: &str,
    ) -> Result<Self, WebPushError> {
        if endpoint.len() > MAX_ENDPOINT_BYTES
            || !endpoint.bytes().all(|b| b.is_ascii_graphic())
            || origin(endpoint).is_none()
        {
            return Err(WebPushError::Endpoint);
        }
        let p256dh: [u8; POINT_BYTES] = unb64url(p256dh_b64url)
            .and_then(|k| k.try_into().ok())
            .filter(|k: &[u8; POINT_BYTES]| k[0] == 4)
            .ok_or(WebPushError::PublicKey)?;
        // On the curve, and not the identity.
        p256::PublicKey::from_sec1_bytes(&p256dh).map_err(|_| WebPushError::PublicKey)?;
        let auth = unb64url(auth_b64url)
            .and_then(|a| a.try_into().ok())
            .ok_or(WebPushError::Auth)?;
        Ok(Self {
            endpoint: endpoint.to_owned(),
            p256dh,
            auth,
        })
    }
}

/// `plaintext` encrypted for `sub` with a fresh sender key and salt: the request body, sent
/// with `Content-Encoding: aes128gcm`.
pub(crate) fn encrypt(sub: &Subscription, plaintext: &[u8]) -> Result<Vec<u8>, WebPushError> {
    if plaintext.len() > MAX_PLAINTEXT {
        return Err(WebPushError::TooLong(plaintext.len()));
    }
    let rng = SystemRandom::new();
    let mut salt = [0u8; 16];
    rng.fill(&mut salt).map_err(|_| WebPushError::Random)?;
    let secret = agreement::EphemeralPrivateKey::generate(&agreement::ECDH_P256, &rng)
        .map_err(|_| WebPushError::Random)?;
    let as_public: [u8; POINT_BYTES] = secret
        .compute_public_key()
        .map_err(|_| WebPushError::Crypto("sender key"))?
        .as_ref()
        .try_into()
        .map_err(|_| WebPushError::Crypto("sender key"))?;
    let ua = agreement::UnparsedPublicKey::new(&agreement::ECDH_P256, &sub.p256dh[..]);
    agreement::agree_ephemeral(secret, &ua, |shared| {
        seal(sub, plaintext, shared, &as_public, salt)
    })
    .map_err(|_| WebPushError::PublicKey)?
}

/// [`encrypt`] with a given sender key and salt: deterministic, for the RFC's example vector.
#[cfg(test)]
fn encrypt_with(
    sub: &Subscription,
    plaintext: &[u8],
    as_secret: [u8; 32],
    salt: [u8; 16],
) -> Result<Vec<u8>, WebPushError> {
    if plaintext.len() > MAX_PLAINTEXT {
        return Err(WebPushError::TooLong(plaintext.len()));
    }
    let secret =
        p256::SecretKey::from_slice(&as_secret).map_err(|_| WebPushError::Crypto("sender key"))?;
    let as_public: [u8; POINT_BYTES] = secret
        .public_key()
        .to_encoded_point(false)
        .as_bytes()
        .try_into()
        .map_err(|_| WebPushError::Crypto("sender key"))?;
    let ua = p256::PublicKey::from_sec1_bytes(&sub.p256dh).map_err(|_| WebPushError::PublicKey)?;
    let shared = p256::ecdh::diffie_hellman(secret.to_nonzero_scalar(), ua.as_affine());
    seal(
        sub,
        plaintext,
        &shared.raw_secret_bytes()[..],
        &as_public,
        salt,
    )
}

/// The body of one record: the keys derived from the ECDH secret `shared`, the header
/// (salt, record size, the sender's public key), the plaintext encrypted with its delimiter.
fn seal(
    sub: &Subscription,
    plaintext: &[u8],
    shared: &[u8],
    as_public: &[u8; POINT_BYTES],
    salt: [u8; 16],
) -> Result<Vec<u8>, WebPushError> {
    let (cek, nonce) = derive(shared, &sub.auth, &sub.p256dh, as_public, &salt)?;

    let mut body = Vec::with_capacity(HEADER_BYTES + plaintext.len() + 1 + TAG_BYTES);
    body.extend_from_slice(&salt);
    body.extend_from_slice(&RECORD_SIZE.to_be_bytes());
    body.push(POINT_BYTES as u8);
    body.extend_from_slice(as_public);
    body.extend_from_slice(plaintext);
    body.push(LAST_RECORD);
    // One record, so its sequence number is 0 and the nonce is used as derived.
    let (_, record) = body
        .split_at_mut_checked(HEADER_BYTES)
        .ok_or(WebPushError::Crypto("record"))?;
    let tag = LessSafeKey::new(cek)
        .seal_in_place_separate_tag(Nonce::assume_unique_for_key(nonce), Aad::empty(), record)
        .map_err(|_| WebPushError::Crypto("AES-GCM"))?;
    body.extend_from_slice(tag.as_ref());
    Ok(body)
}

/// An HKDF output length ring's `expand` takes.
struct Len(usize);

impl hkdf::KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

/// The content-encryption key and nonce both ends derive: RFC 8291 section 3.4 turns the ECDH
/// secret and the auth secret into the input keying material of RFC 8188 section 2.2.
fn derive(
    ecdh_secret: &[u8],
    auth: &[u8; 16],
    ua_public: &[u8; POINT_BYTES],
    as_public: &[u8; POINT_BYTES],
    salt: &[u8; 16],
) -> Result<(UnboundKey, [u8; NONCE_LEN]), WebPushError> {
    let hkdf_failed = |_| WebPushError::Crypto("HKDF");
    let prk_key = hkdf::Salt::new(hkdf::HKDF_SHA256, auth).extract(ecdh_secret);
    let mut ikm = [0u8; 32];
    prk_key
        .expand(&[b"WebPush: info\0", ua_public, as_public], Len(ikm.len()))
        .and_then(|okm| okm.fill(&mut ikm))
        .map_err(hkdf_failed)?;
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, salt).extract(&ikm);
    let cek = prk
        .expand(&[b"Content-Encoding: aes128gcm\0"], &AES_128_GCM)
        .map(UnboundKey::from)
        .map_err(hkdf_failed)?;
    let mut nonce = [0u8; NONCE_LEN];
    prk.expand(&[b"Content-Encoding: nonce\0"], Len(NONCE_LEN))
        .and_then(|okm| okm.fill(&mut nonce))
        .map_err(hkdf_failed)?;
    Ok((cek, nonce))
}

/// This server's VAPID identity (RFC 8292): an ES256 key and a contact for the push service.
pub(crate) struct Vapid {
    key: EcdsaKeyPair,
    subject: String,
}

impl fmt::Debug for Vapid {
    /// The public half only.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Vapid")
            .field("public_key", &self.public_key_b64())
            .field("subject", &self.subject)
            .finish_non_exhaustive()
    }
}

const PEM_BEGIN: &str = "-----BEGIN PRIVATE KEY-----";
const PEM_END: &str = "-----END PRIVATE KEY-----";

impl Vapid {
    /// A P-256 key as unencrypted PKCS#8 PEM, public key included (what
    /// `openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256` writes).
    pub(crate) fn from_pem(pem: &str, subject: &str) -> Result<Self, WebPushError> {
        let subject = check_subject(subject)?;
        if pem.contains("-----BEGIN EC PRIVATE KEY-----") {
            return Err(WebPushError::Key(
                "a SEC1 `EC PRIVATE KEY`; convert it to PKCS#8 with \
                 `openssl pkcs8 -topk8 -nocrypt -in old.pem -out new.pem`"
                    .into(),
            ));
        }
        let body = pem
            .split_once(PEM_BEGIN)
            .and_then(|(_, rest)| rest.split_once(PEM_END))
            .map(|(body, _)| body.split_ascii_whitespace().collect::<String>())
            .ok_or_else(|| WebPushError::Key(format!("no {PEM_BEGIN} … {PEM_END} block")))?;
        let der = STANDARD
            .decode(body)
            .map_err(|_| WebPushError::Key("the PEM body is not base64".into()))?;
        let key =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &der, &SystemRandom::new())
                .map_err(|e| WebPushError::Key(format!("not a PKCS#8 P-256 key pair ({e})")))?;
        Ok(Self { key, subject })
    }

    /// A raw 32-byte private key in base64url, the form web-push libraries print.
    pub(crate) fn from_raw_b64(raw: &str, subject: &str) -> Result<Self, WebPushError> {
        let subject = check_subject(subject)?;
        let bytes: [u8; 32] = unb64url(raw.trim())
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| WebPushError::Key("not 32 bytes of base64url".into()))?;
        let secret = p256::SecretKey::from_slice(&bytes)
            .map_err(|_| WebPushError::Key("not a P-256 private key".into()))?;
        let public = secret.public_key().to_encoded_point(false);
        let key = EcdsaKeyPair::from_private_key_and_public_key(
            &ECDSA_P256_SHA256_FIXED_SIGNING,
            &bytes,
            public.as_bytes(),
            &SystemRandom::new(),
        )
        .map_err(|e| WebPushError::Key(format!("not a P-256 private key ({e})")))?;
        Ok(Self { key, subject })
    }

    /// A key file's text: PKCS#8 PEM, or a raw base64url key.
    pub(crate) fn from_key_text(text: &str, subject: &str) -> Result<Self, WebPushError> {
        if text.trim_start().starts_with("-----") {
            Self::from_pem(text, subject)
        } else {
            Self::from_raw_b64(text, subject)
        }
    }

    /// A new key, and its PKCS#8 PEM to keep (browsers' subscriptions are bound to the public
    /// key: a lost key loses every Web Push subscription).
    pub(crate) fn generate(subject: &str) -> Result<(Self, String), WebPushError> {
        check_subject(subject)?;
        let doc =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
                .map_err(|_| WebPushError::Random)?;
        let mut pem = format!("{PEM_BEGIN}\n");
        for line in STANDARD.encode(doc.as_ref()).as_bytes().chunks(64) {
            pem.push_str(&String::from_utf8_lossy(line));
            pem.push('\n');
        }
        pem.push_str(PEM_END);
        pem.push('\n');
        let vapid = Self::from_pem(&pem, subject)?;
        Ok((vapid, pem))
    }

    /// The key in `path` ([`Self::from_key_text`]), or a new one written there (mode 0600)
    /// when there is no such file. The only I/O of this module.
    pub(crate) fn load_or_generate(path: &Path, subject: &str) -> Result<Self, WebPushError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Self::from_key_text(&text, subject),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                // Written whole under another name, then linked into place: nodes sharing the
                // file that start together end up with one key (the first link wins; the
                // others read it).
                let (vapid, pem) = Self::generate(subject)?;
                let cannot = |e: std::io::Error| WebPushError::Key(format!("cannot write it: {e}"));
                let mut tmp = path.as_os_str().to_owned();
                tmp.push(format!(".{}.tmp", std::process::id()));
                let tmp = std::path::PathBuf::from(tmp);
                crate::files::write_private(&tmp, &pem).map_err(cannot)?;
                let linked = std::fs::hard_link(&tmp, path);
                let _ = std::fs::remove_file(&tmp);
                match linked {
                    Ok(()) => Ok(vapid),
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                        let text = std::fs::read_to_string(path)
                            .map_err(|e| WebPushError::Key(format!("cannot read it: {e}")))?;
                        Self::from_key_text(&text, subject)
                    }
                    Err(e) => Err(cannot(e)),
                }
            }
            Err(e) => Err(WebPushError::Key(format!("cannot read it: {e}"))),
        }
    }

    /// The public key, an uncompressed point in base64url: the `applicationServerKey` browsers
    /// subscribe with, and the header's `k=`.
    pub(crate) fn public_key_b64(&self) -> String {
        b64url(self.key.public_key().as_ref())
    }

    /// The `Authorization` header of a push to `endpoint`: `vapid t=<JWT>, k=<public key>`.
    /// The JWT (ES256) claims `aud` = the endpoint's origin, `exp` = `now_unix` + `ttl_secs`
    /// (at most 24 hours; the caller leaves room for clock skew) and `sub` = the subject.
    pub(crate) fn authorization(
        &self,
        endpoint: &str,
        now_unix: u64,
        ttl_secs: u64,
    ) -> Result<String, WebPushError> {
        let aud = origin(endpoint).ok_or(WebPushError::Endpoint)?;
        let claims = serde_json::json!({
            "aud": aud,
            "exp": now_unix.saturating_add(ttl_secs.min(MAX_VAPID_TTL_SECS)),
            "sub": self.subject,
        });
        let signing_input = format!(
            "{}.{}",
            b64url(JWT_HEADER),
            b64url(claims.to_string().as_bytes())
        );
        // ECDSA_P256_SHA256_FIXED: r || s, 64 bytes, the form JWS (RFC 7518 section 3.4) needs.
        let signature = self
            .key
            .sign(&SystemRandom::new(), signing_input.as_bytes())
            .map_err(|_| WebPushError::Crypto("ECDSA signing"))?;
        Ok(format!(
            "vapid t={signing_input}.{}, k={}",
            b64url(signature.as_ref()),
            self.public_key_b64()
        ))
    }
}

/// A VAPID subject: `mailto:` with an address, or an `https://` URL with a host.
fn check_subject(subject: &str) -> Result<String, WebPushError> {
    let ok = subject.bytes().all(|b| b.is_ascii_graphic())
        && if let Some(address) = subject.strip_prefix("mailto:") {
            address
                .split_once('@')
                .is_some_and(|(user, domain)| !user.is_empty() && !domain.is_empty())
        } else {
            subject.starts_with("https://") && origin(subject).is_some()
        };
    if ok {
        Ok(subject.to_owned())
    } else {
        Err(WebPushError::Subject(subject.to_owned()))
    }
}

/// The origin of an http(s) URL as RFC 6454 serializes it: `scheme://host[:port]`, scheme and
/// host lowercased, user info dropped, the scheme's default port left out. `None` for anything
/// else (another scheme, no host, a bad port).
fn origin(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "https" => 443,
        "http" => 80,
        _ => return None,
    };
    let authority = rest.split(['/', '?', '#']).next()?;
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, hp)| hp);
    let (host, port) = if let Some(literal) = host_port.strip_prefix('[') {
        // An IPv6 literal: `[...]`, then maybe `:port`.
        let (address, after) = literal.split_once(']')?;
        let literal_ok = !address.is_empty()
            && address
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.');
        if !literal_ok {
            return None;
        }
        let port = if after.is_empty() {
            ""
        } else {
            after.strip_prefix(':')?
        };
        (format!("[{address}]"), port)
    } else {
        let (name, port) = host_port.split_once(':').unwrap_or((host_port, ""));
        let name_ok = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
        if !name_ok {
            return None;
        }
        (name.to_owned(), port)
    };
    let host = host.to_ascii_lowercase();
    // An empty port means the default one (WHATWG URL).
    let port = match port {
        "" => default_port,
        p if p.bytes().all(|b| b.is_ascii_digit()) => p.parse::<u16>().ok()?,
        _ => return None,
    };
    Some(if port == default_port {
        format!("{scheme}://{host}")
    } else {
        format!("{scheme}://{host}:{port}")
    })
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;
    use std::path::PathBuf;
    use std::process::{Command, Stdio};

    use ring::signature::{ECDSA_P256_SHA256_FIXED, UnparsedPublicKey};

    use super::*;

    fn b(s: &str) -> Vec<u8> {
        unb64url(s).expect("base64url")
    }

    /// The receiving side, test-only: RFC 8291 decryption with the user agent's private key,
    /// everything else (salt, record size, sender key) read from the body. `None`: it does not
    /// decrypt (wrong key, tampered, bad padding).
    fn decrypt(body: &[u8], ua_secret: &[u8; 32], auth: &[u8; 16]) -> Option<Vec<u8>> {
        let salt: [u8; 16] = body.get(..16)?.try_into().ok()?;
        let rs = u32::from_be_bytes(body.get(16..20)?.try_into().ok()?);
        let id_len = usize::from(*body.get(20)?);
        assert_eq!(id_len, POINT_BYTES, "the key id is the sender's public key");
        let as_public: [u8; POINT_BYTES] = body.get(21..21 + id_len)?.try_into().ok()?;
        let record = body.get(21 + id_len..)?;
        assert!(record.len() <= rs as usize, "one record");
        let ua = p256::SecretKey::from_slice(ua_secret).ok()?;
        let ua_public: [u8; POINT_BYTES] = ua
            .public_key()
            .to_encoded_point(false)
            .as_bytes()
            .try_into()
            .ok()?;
        let sender = p256::PublicKey::from_sec1_bytes(&as_public).ok()?;
        let shared = p256::ecdh::diffie_hellman(ua.to_nonzero_scalar(), sender.as_affine());
        let (cek, nonce) = derive(
            &shared.raw_secret_bytes()[..],
            auth,
            &ua_public,
            &as_public,
            &salt,
        )
        .ok()?;
        let mut record = record.to_vec();
        let plain = LessSafeKey::new(cek)
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::empty(),
                &mut record,
            )
            .ok()?;
        // Padding: zeros after the delimiter; the last record's delimiter is 2.
        let end = plain.iter().rposition(|&x| x != 0)?;
        (plain[end] == LAST_RECORD).then(|| plain[..end].to_vec())
    }

    /// A user agent: its private key and its subscription.
    fn receiver() -> ([u8; 32], Subscription) {
        let rng = SystemRandom::new();
        loop {
            let mut raw = [0u8; 32];
            rng.fill(&mut raw).expect("random");
            let Ok(secret) = p256::SecretKey::from_slice(&raw) else {
                continue;
            };
            let mut auth = [0u8; 16];
            rng.fill(&mut auth).expect("random");
            let public = secret.public_key().to_encoded_point(false);
            let sub = Subscription::parse(
                "https://push.example.net/wpush/v2/abc",
                &b64url(public.as_bytes()),
                &b64url(&auth),
            )
            .expect("subscription");
            return (raw, sub);
        }
    }

    /// RFC 8291 section 5 (keys and intermediate values in its appendix A).
    #[test]
    fn the_rfc_8291_example_encrypts_byte_for_byte() {
        let plaintext = b"When I grow up, I want to be a watermelon";
        let sub = Subscription::parse(
            "https://push.example.net/push/JzLQ3raZJfFBR0aqvOMsLrt54w4rJUsV",
            "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4",
            "BTBZMqHH6r4Tts7J_aSIgg",
        )
        .expect("subscription");
        let as_secret: [u8; 32] = b("yfWPiYE-n46HLnH0KqZOF1fJJU3MYrct3AELtAQ-oRw")
            .try_into()
            .expect("32 bytes");
        let salt: [u8; 16] = b("DGv6ra1nlYgDCS1FRnbzlw").try_into().expect("16 bytes");
        let body = encrypt_with(&sub, plaintext, as_secret, salt).expect("encrypt");
        // The RFC prints it on three lines.
        let expected = concat!(
            "DGv6ra1nlYgDCS1FRnbzlwAAEABBBP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27ml",
            "mlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqKK6PBru3jl7A_yl95bQpu6cVPT",
            "pK4Mqgkf1CXztLVBSt2Ks3oZwbuwXPXLWyouBWLVWGNWQexSgSxsj_Qulcy4a-fN",
        );
        assert_eq!(b64url(&body), expected);
        assert_eq!(
            b64url(&body[21..86]),
            "BP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqKK6PBru3jl7A8",
            "the sender's public key of the example"
        );
        let ua_secret: [u8; 32] = b("q1dXpw3UpT5VOmu_cf_v6ih07Aems3njxI-JWgLcM94")
            .try_into()
            .expect("32 bytes");
        assert_eq!(
            decrypt(&body, &ua_secret, &sub.auth).as_deref(),
            Some(&plaintext[..])
        );
    }

    #[test]
    fn what_encrypt_makes_the_receiver_decrypts_and_each_message_has_its_own_keys() {
        let (ua_secret, sub) = receiver();
        let payload = br#"{"type":"message","count":2}"#;
        let one = encrypt(&sub, payload).expect("one");
        let two = encrypt(&sub, payload).expect("two");
        assert_eq!(
            decrypt(&one, &ua_secret, &sub.auth).as_deref(),
            Some(&payload[..])
        );
        assert_eq!(
            decrypt(&two, &ua_secret, &sub.auth).as_deref(),
            Some(&payload[..])
        );
        assert_ne!(one[..16], two[..16], "a fresh salt");
        assert_ne!(one[21..86], two[21..86], "a fresh sender key");
        assert_eq!(one.len(), HEADER_BYTES + payload.len() + 1 + TAG_BYTES);
        let empty = encrypt(&sub, b"").expect("empty");
        assert_eq!(decrypt(&empty, &ua_secret, &sub.auth), Some(Vec::new()));
        // Only that receiver's key opens it, and any change to it is noticed.
        let (_, other) = receiver();
        let body = encrypt(&other, payload).expect("other");
        assert_eq!(decrypt(&body, &ua_secret, &other.auth), None, "another key");
        let mut tampered = one.clone();
        *tampered.last_mut().expect("a tag") ^= 1;
        assert_eq!(
            decrypt(&tampered, &ua_secret, &sub.auth),
            None,
            "a changed tag"
        );
        assert_eq!(
            decrypt(&one, &ua_secret, &[0; 16]),
            None,
            "another auth secret"
        );
    }

    #[test]
    fn at_most_3993_bytes_fit_one_push_message() {
        assert_eq!(MAX_PLAINTEXT, 3993);
        let (ua_secret, sub) = receiver();
        let at_bound = vec![b'x'; 3993];
        let body = encrypt(&sub, &at_bound).expect("3993 bytes fit");
        assert_eq!(body.len(), 4096, "exactly the most a push service takes");
        assert_eq!(decrypt(&body, &ua_secret, &sub.auth), Some(at_bound));
        assert_eq!(
            encrypt(&sub, &[b'x'; 3994]),
            Err(WebPushError::TooLong(3994))
        );
        assert_eq!(
            encrypt_with(&sub, &[b'x'; 3994], [1; 32], [0; 16]),
            Err(WebPushError::TooLong(3994))
        );
    }

    #[test]
    fn bad_subscriptions_are_refused() {
        let (_, sub) = receiver();
        let key = b64url(&sub.p256dh);
        let auth = b64url(&sub.auth);
        let parse =
            |endpoint: &str, key: &str, auth: &str| Subscription::parse(endpoint, key, auth);

        let ok = parse("https://p.example/x", &key, &auth).expect("fine");
        assert_eq!(ok.endpoint, "https://p.example/x");
        assert_eq!((ok.p256dh, ok.auth), (sub.p256dh, sub.auth));
        assert!(parse("http://127.0.0.1:8080/x", &key, &auth).is_ok());
        assert!(
            parse("https://p/x", &format!("{key}="), &format!("{auth}==")).is_ok(),
            "padding tolerated"
        );
        let longest = format!("https://p/{}", "x".repeat(MAX_ENDPOINT_BYTES - 10));
        assert_eq!(longest.len(), MAX_ENDPOINT_BYTES);
        assert!(parse(&longest, &key, &auth).is_ok());

        for endpoint in [
            "",
            "p.example/x",
            "ftp://p.example/x",
            "https://",
            "https:///x",
            "https://p.example:99999/x",
            "https://p.example:8o/x",
            "https://p example/x",
            "https://p.example/a b",
            "https://[zz]/x",
            &format!("{longest}x"),
        ] {
            assert_eq!(
                parse(endpoint, &key, &auth).err(),
                Some(WebPushError::Endpoint),
                "{endpoint:?}"
            );
        }

        let mut off_curve = sub.p256dh;
        off_curve[64] ^= 1;
        let mut compressed = vec![2 + (sub.p256dh[64] & 1)];
        compressed.extend_from_slice(&sub.p256dh[1..33]);
        let mut wrong_tag = sub.p256dh;
        wrong_tag[0] = 6;
        for bad in [
            b64url(&off_curve),
            b64url(&compressed),
            b64url(&wrong_tag),
            b64url(&[0u8; 65]),
            b64url(&{
                let mut zero = [0u8; 65];
                zero[0] = 4;
                zero
            }),
            b64url(&sub.p256dh[..64]),
            format!("{key}AA"),
            "!!".to_owned(),
            String::new(),
        ] {
            assert_eq!(
                parse("https://p/x", &bad, &auth).err(),
                Some(WebPushError::PublicKey),
                "{bad:?}"
            );
        }

        for bad in [
            b64url(&[1u8; 15]),
            b64url(&[1u8; 17]),
            "*".repeat(22),
            String::new(),
        ] {
            assert_eq!(
                parse("https://p/x", &key, &bad).err(),
                Some(WebPushError::Auth),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn the_audience_is_the_endpoints_origin() {
        for (url, expected) in [
            (
                "https://fcm.googleapis.com/fcm/send/abc",
                Some("https://fcm.googleapis.com"),
            ),
            (
                "https://Push.Example.NET:8443/a?b#c",
                Some("https://push.example.net:8443"),
            ),
            (
                "HTTPS://push.example.net:443/a",
                Some("https://push.example.net"),
            ),
            ("http://127.0.0.1:80/a", Some("http://127.0.0.1")),
            ("http://127.0.0.1:9000", Some("http://127.0.0.1:9000")),
            (
                "https://user:pw@push.example.net/a",
                Some("https://push.example.net"),
            ),
            (
                "https://push.example.net:/a",
                Some("https://push.example.net"),
            ),
            ("http://[::1]:9000/a", Some("http://[::1]:9000")),
            ("https://[2001:DB8::1]/a", Some("https://[2001:db8::1]")),
            ("wss://push.example.net/a", None),
            ("https://:443/a", None),
            ("https://[::1/a", None),
            ("https://[::1]x/a", None),
            ("https://push.example.net:-1/a", None),
        ] {
            assert_eq!(origin(url).as_deref(), expected, "{url}");
        }
    }

    /// The JWT of an `Authorization` header: header, claims, and whether its signature
    /// verifies with the `k=` key.
    fn open_jwt(header: &str) -> (serde_json::Value, serde_json::Value, String) {
        let (t, k) = header
            .strip_prefix("vapid t=")
            .and_then(|rest| rest.split_once(", k="))
            .expect("vapid t=…, k=…");
        let (signing_input, signature) = t.rsplit_once('.').expect("three parts");
        let (head, claims) = signing_input.split_once('.').expect("three parts");
        let signature = b(signature);
        assert_eq!(signature.len(), 64, "r || s");
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, b(k))
            .verify(signing_input.as_bytes(), &signature)
            .expect("the signature verifies with k=");
        (
            serde_json::from_slice(&b(head)).expect("header JSON"),
            serde_json::from_slice(&b(claims)).expect("claims JSON"),
            k.to_owned(),
        )
    }

    #[test]
    fn the_vapid_jwt_verifies_and_claims_origin_expiry_and_subject() {
        let (v, _) = Vapid::generate("mailto:ops@example.com").expect("generated");
        let header = v
            .authorization("https://Push.Example.net:8443/wpush/v2/a?b", 1_000, 3_600)
            .expect("header");
        let (head, claims, k) = open_jwt(&header);
        assert_eq!(head, serde_json::json!({"typ": "JWT", "alg": "ES256"}));
        assert_eq!(k, v.public_key_b64());
        assert_eq!(b(&k).len(), 65);
        assert_eq!(
            claims,
            serde_json::json!({
                "aud": "https://push.example.net:8443",
                "exp": 4_600,
                "sub": "mailto:ops@example.com",
            })
        );

        let capped = v
            .authorization("https://push.example.net/a", 1_000, 99_999)
            .expect("header");
        assert_eq!(
            open_jwt(&capped).1["exp"],
            1_000 + 24 * 3600,
            "capped at 24 h"
        );

        // A flipped bit in the signed part fails verification.
        let (signing_input, signature) = header
            .strip_prefix("vapid t=")
            .and_then(|r| r.split_once(", k="))
            .and_then(|(t, _)| t.rsplit_once('.'))
            .expect("jwt");
        let mut forged = signing_input.as_bytes().to_vec();
        forged[40] ^= 1;
        assert!(
            UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, b(&v.public_key_b64()))
                .verify(&forged, &b(signature))
                .is_err()
        );

        assert_eq!(
            v.authorization("ftp://push.example.net/a", 1_000, 60),
            Err(WebPushError::Endpoint)
        );
    }

    #[test]
    fn vapid_keys_load_from_pem_or_raw_and_bad_ones_are_refused() {
        let subject = "https://chat.example.com";
        let (v, pem) = Vapid::generate(subject).expect("generated");
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"));
        let again = Vapid::from_pem(&pem, subject).expect("its PEM loads");
        assert_eq!(again.public_key_b64(), v.public_key_b64());
        assert_eq!(
            Vapid::from_key_text(&format!("\n{pem}\n"), subject)
                .expect("key text")
                .public_key_b64(),
            v.public_key_b64()
        );

        let raw = [9u8; 32];
        let from_raw = Vapid::from_raw_b64(&b64url(&raw), subject).expect("raw");
        let point = p256::SecretKey::from_slice(&raw)
            .expect("key")
            .public_key()
            .to_encoded_point(false);
        assert_eq!(from_raw.public_key_b64(), b64url(point.as_bytes()));
        assert_eq!(
            Vapid::from_key_text(&format!("{}=\n", b64url(&raw)), subject)
                .expect("a raw key file")
                .public_key_b64(),
            from_raw.public_key_b64()
        );
        open_jwt(
            &from_raw
                .authorization("https://push.example.net/a", 0, 60)
                .expect("header"),
        );

        for bad in [
            b64url(&[0u8; 32]),
            b64url(&[0xffu8; 32]),
            b64url(&[9u8; 31]),
            "not base64!".to_owned(),
        ] {
            assert!(
                matches!(
                    Vapid::from_raw_b64(&bad, subject),
                    Err(WebPushError::Key(_))
                ),
                "{bad:?}"
            );
        }
        for bad in [
            String::new(),
            "-----BEGIN PRIVATE KEY-----\n%%%%\n-----END PRIVATE KEY-----\n".to_owned(),
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n".to_owned(),
            pem.replace("-----END PRIVATE KEY-----", ""),
            "-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n".to_owned(),
        ] {
            assert!(
                matches!(Vapid::from_pem(&bad, subject), Err(WebPushError::Key(_))),
                "{bad:?}"
            );
        }

        for subject in [
            "ops@example.com",
            "mailto:",
            "mailto:ops",
            "mailto:@example.com",
            "mailto:ops@",
            "mailto:o ps@example.com",
            "http://chat.example.com",
            "https://",
            "",
        ] {
            assert_eq!(
                Vapid::from_pem(&pem, subject).err(),
                Some(WebPushError::Subject(subject.to_owned())),
                "{subject:?}"
            );
            assert!(Vapid::generate(subject).is_err(), "{subject:?}");
        }
        assert!(Vapid::from_pem(&pem, "mailto:ops@example.com").is_ok());
    }

    #[test]
    fn the_key_file_is_made_once_then_kept() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("vapid.pem");
        let made = Vapid::load_or_generate(&path, "mailto:ops@example.com").expect("made");
        let loaded = Vapid::load_or_generate(&path, "mailto:ops@example.com").expect("loaded");
        assert_eq!(made.public_key_b64(), loaded.public_key_b64());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    /// Runs `gateway/tests/push/decrypt.py` (PyPI `http-ece` and `cryptography`, installed into
    /// target/test-venv by scripts/test.sh; `PARLEY_PYTHON` names another interpreter) on one
    /// JSON request: its stdout, or its stderr when it refused. Python or its packages missing
    /// fail the test: nothing is skipped.
    fn independent_check(request: &serde_json::Value) -> Result<Vec<u8>, String> {
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
        let python = std::env::var_os("PARLEY_PYTHON")
            .map(PathBuf::from)
            .unwrap_or_else(|| manifest.join("../target/test-venv/bin/python3"));
        let script = manifest.join("tests/push/decrypt.py");
        let mut child = Command::new(&python)
            .arg(&script)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run {}: {e} (scripts/test.sh makes target/test-venv with http-ece; \
                     PARLEY_PYTHON names another Python)",
                    python.display()
                )
            });
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(request.to_string().as_bytes())
            .expect("write the request");
        let out = child.wait_with_output().expect("run decrypt.py");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !stderr.contains("ModuleNotFoundError"),
            "{}: {stderr} (scripts/test.sh installs scripts/test-requirements.txt)",
            python.display()
        );
        if out.status.success() {
            Ok(out.stdout)
        } else {
            Err(format!("{} ({})", stderr.trim(), out.status))
        }
    }

    #[test]
    fn an_independent_implementation_decrypts_it() {
        let (ua_secret, sub) = receiver();
        let request = |body: &[u8]| {
            serde_json::json!({
                "body": b64url(body),
                "private_key": b64url(&ua_secret),
                "auth": b64url(&sub.auth),
            })
        };
        let payload = serde_json::json!({
            "type": "message",
            "conversationId": "0193a5b0-7c1e-7000-8000-000000000001",
            "senderId": "zoë",
            "text": "café ☕ — on arrive",
            "count": 3,
        })
        .to_string();
        let body = encrypt(&sub, payload.as_bytes()).expect("encrypt");
        let plaintext = independent_check(&request(&body)).expect("http_ece decrypts it");
        assert_eq!(String::from_utf8_lossy(&plaintext), payload);

        let longest = vec![b'z'; MAX_PLAINTEXT];
        let body = encrypt(&sub, &longest).expect("encrypt");
        let plaintext = independent_check(&request(&body)).expect("http_ece decrypts it");
        assert_eq!(plaintext, longest);

        // And the check is not vacuous: a changed byte is refused.
        let mut tampered = body;
        tampered[100] ^= 1;
        let refused = independent_check(&request(&tampered)).expect_err("tampered");
        assert!(refused.contains("Decryption error"), "{refused}");
    }

    #[test]
    fn an_independent_implementation_verifies_the_vapid_jwt() {
        let (v, _) = Vapid::generate("mailto:ops@example.com").expect("generated");
        let endpoint = "https://push.example.net:8443/wpush/v2/abc";
        let header = v
            .authorization(endpoint, 1_700_000_000, 12 * 3600)
            .expect("header");
        let out = independent_check(&serde_json::json!({
            "verify_vapid": header,
            "endpoint": endpoint,
        }))
        .expect("cryptography verifies it");
        let claims: serde_json::Value = serde_json::from_slice(&out).expect("claims JSON");
        assert_eq!(
            claims,
            serde_json::json!({
                "aud": "https://push.example.net:8443",
                "exp": 1_700_000_000u64 + 12 * 3600,
                "sub": "mailto:ops@example.com",
            })
        );

        // And the check is not vacuous: another key's k=, or another origin, is refused.
        let (other, _) = Vapid::generate("mailto:ops@example.com").expect("generated");
        let (t, _) = header.split_once(", k=").expect("k=");
        let wrong_key = format!("{t}, k={}", other.public_key_b64());
        let refused = independent_check(&serde_json::json!({
            "verify_vapid": wrong_key,
            "endpoint": endpoint,
        }))
        .expect_err("another key");
        assert!(refused.contains("does not verify"), "{refused}");
        let refused = independent_check(&serde_json::json!({
            "verify_vapid": header,
            "endpoint": "https://push.example.net/wpush/v2/abc",
        }))
        .expect_err("another origin");
        assert!(refused.contains("aud is"), "{refused}");
    }
}
