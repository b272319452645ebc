//! Signed media URLs, Discord's `ex`/`hm` style: `{base}/media/{id}/{variant}?ex=&kid=&hm=`
//! where `ex` is the expiry (Unix seconds, hex), `kid` names the key that signed and `hm` is
//! HMAC-SHA256 over kid, id, variant and expiry. The expiry is rounded up to a bucket, so every
//! reader within a bucket gets the same URL and a CDN caches one object for hours. Several
//! keys may verify (rotation): the first signs.

use ring::hmac;

pub(crate) struct UrlSigner {
    /// (key id, key); the first signs, all verify.
    keys: Vec<(String, hmac::Key)>,
    /// A URL is good for at least this long…
    ttl_s: u64,
    /// …and at most this much longer (the expiry is rounded up to a multiple of it).
    bucket_s: u64,
    /// Prefix of every URL ("" = relative to the gateway).
    base: String,
}

/// Why a URL is refused.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Refused {
    Malformed,
    Expired,
    UnknownKey,
    BadSignature,
}

impl UrlSigner {
    pub(crate) fn new(keys: &[(String, Vec<u8>)], ttl_s: u64, bucket_s: u64, base: &str) -> Self {
        Self {
            keys: keys
                .iter()
                .map(|(kid, k)| (kid.clone(), hmac::Key::new(hmac::HMAC_SHA256, k)))
                .collect(),
            ttl_s: ttl_s.max(1),
            bucket_s: bucket_s.max(1),
            base: base.trim_end_matches('/').to_owned(),
        }
    }

    fn input(kid: &str, id: &str, variant: &str, ex: u64) -> String {
        format!("{kid}\n{id}\n{variant}\n{ex:x}")
    }

    /// The URL of `id`'s `variant` for a reader at `now_s`.
    pub(crate) fn url(&self, id: &str, variant: &str, now_s: u64) -> String {
        let Some((kid, key)) = self.keys.first() else {
            return String::new();
        };
        let ex = (now_s + self.ttl_s).div_ceil(self.bucket_s) * self.bucket_s;
        let tag = hmac::sign(key, Self::input(kid, id, variant, ex).as_bytes());
        format!(
            "{}/media/{id}/{variant}?ex={ex:x}&kid={kid}&hm={}",
            self.base,
            hex(tag.as_ref())
        )
    }

    /// Checks a URL's query (`ex`, `kid`, `hm`) for `id`'s `variant` at `now_s`; Ok gives the
    /// expiry (Unix seconds).
    pub(crate) fn verify(
        &self,
        id: &str,
        variant: &str,
        query: Option<&str>,
        now_s: u64,
    ) -> Result<u64, Refused> {
        let (mut ex, mut kid, mut hm) = (None, None, None);
        for pair in query.unwrap_or("").split('&') {
            match pair.split_once('=') {
                Some(("ex", v)) => ex = Some(v),
                Some(("kid", v)) => kid = Some(v),
                Some(("hm", v)) => hm = Some(v),
                _ => {}
            }
        }
        let (Some(ex), Some(kid), Some(hm)) = (ex, kid, hm) else {
            return Err(Refused::Malformed);
        };
        let ex = u64::from_str_radix(ex, 16).map_err(|_| Refused::Malformed)?;
        let tag = unhex(hm).ok_or(Refused::Malformed)?;
        let (kid, key) = self
            .keys
            .iter()
            .find(|(k, _)| k == kid)
            .ok_or(Refused::UnknownKey)?;
        hmac::verify(key, Self::input(kid, id, variant, ex).as_bytes(), &tag)
            .map_err(|_| Refused::BadSignature)?;
        match ex >= now_s {
            true => Ok(ex),
            false => Err(Refused::Expired),
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) || s.len() > 128 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Lowercase hex of `bytes` (the blob keys' content hash).
pub(crate) fn to_hex(bytes: &[u8]) -> String {
    hex(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer(keys: &[(&str, &[u8])]) -> UrlSigner {
        let keys: Vec<_> = keys
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_vec()))
            .collect();
        UrlSigner::new(&keys, 86_400, 3_600, "https://cdn.example/")
    }

    fn query(url: &str) -> &str {
        url.split_once('?').map(|(_, q)| q).unwrap_or("")
    }

    #[test]
    fn urls_verify_until_they_expire_and_share_a_bucket() {
        let s = signer(&[("k1", b"secret-one")]);
        let t = 1_800_000_100; // not on an hour (t + 1 stays in the bucket)
        let url = s.url("m1", "display", t);
        assert!(
            url.starts_with("https://cdn.example/media/m1/display?ex="),
            "{url}"
        );
        let ex = s
            .verify("m1", "display", Some(query(&url)), t)
            .expect("valid");
        assert!(ex >= t + 86_400 && ex < t + 86_400 + 3_600);
        // Readers within the same hour get the same URL (one CDN object).
        assert_eq!(s.url("m1", "display", t + 1), url);
        assert_eq!(
            s.verify("m1", "display", Some(query(&url)), ex + 1),
            Err(Refused::Expired)
        );
    }

    #[test]
    fn tampering_with_any_part_is_refused() {
        let s = signer(&[("k1", b"secret-one")]);
        let t = 1_800_000_000;
        let url = s.url("m1", "thumb", t);
        let q = query(&url);
        assert_eq!(
            s.verify("m2", "thumb", Some(q), t),
            Err(Refused::BadSignature)
        );
        assert_eq!(
            s.verify("m1", "display", Some(q), t),
            Err(Refused::BadSignature)
        );
        let later = q.replacen("ex=", "ex=1", 1);
        assert_eq!(
            s.verify("m1", "thumb", Some(&later), t),
            Err(Refused::BadSignature)
        );
        let flipped = match q.ends_with('0') {
            true => format!("{}1", &q[..q.len() - 1]),
            false => format!("{}0", &q[..q.len() - 1]),
        };
        assert_eq!(
            s.verify("m1", "thumb", Some(&flipped), t),
            Err(Refused::BadSignature)
        );
        let other_kid = q.replace("kid=k1", "kid=k9");
        assert_eq!(
            s.verify("m1", "thumb", Some(&other_kid), t),
            Err(Refused::UnknownKey)
        );
        for bad in [
            None,
            Some(""),
            Some("ex=zz&kid=k1&hm=00"),
            Some("ex=1&kid=k1&hm=0"),
        ] {
            assert_eq!(s.verify("m1", "thumb", bad, t), Err(Refused::Malformed));
        }
    }

    #[test]
    fn an_old_key_still_verifies_after_rotation() {
        let old = signer(&[("k1", b"secret-one")]);
        let rotated = signer(&[("k2", b"secret-two"), ("k1", b"secret-one")]);
        let t = 1_800_000_000;
        let url = old.url("m1", "file", t);
        assert!(rotated.verify("m1", "file", Some(query(&url)), t).is_ok());
        assert!(rotated.url("m1", "file", t).contains("kid=k2"));
        let retired = signer(&[("k2", b"secret-two")]);
        assert_eq!(
            retired.verify("m1", "file", Some(query(&url)), t),
            Err(Refused::UnknownKey)
        );
    }
}
