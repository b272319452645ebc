//! A user's push devices: what a client registers, checked once at the edge, stored as JSON in
//! the user's records (`device/<id>`), read back by the dispatcher.
//!
//! | platform | registered with | delivered to |
//! |---|---|---|
//! | `webpush` | the browser's `PushSubscription.toJSON()`: `endpoint`, `keys.p256dh`, `keys.auth` | the subscription's endpoint, on an allowed push-service host (RFC 8030 + 8291 + 8292) |
//! | `fcm` | `token` (the app's registration token) | FCM HTTP v1 |
//! | `apns` | `token` (hex), `topic` (the app's bundle id) | APNs over HTTP/2 (token-based provider auth) |
//! | `webhook` | `token` (opaque to Parley, ≤ 512 bytes) | the node's one configured webhook URL, signed |
//!
//! A webhook device names no URL: the marketplace's own notification service is configured on
//! the node, so a user can never make the node call an address of their choosing (SSRF). For
//! the same reason a Web Push endpoint must be on one of the configured push-service hosts.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::webpush::Subscription;

/// Longest device id (`[A-Za-z0-9._-]`).
pub(crate) const MAX_DEVICE_ID_BYTES: usize = 64;
/// Longest FCM / APNs / webhook token.
pub(crate) const MAX_TOKEN_BYTES: usize = 512;
/// Longest APNs topic.
const MAX_TOPIC_BYTES: usize = 255;

/// The records key of device `id`.
pub(crate) fn key(id: &str) -> String {
    format!("{PREFIX}{id}")
}

/// Every device key starts with this.
pub(crate) const PREFIX: &str = "device/";

/// One registered device.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Device {
    pub(crate) id: String,
    pub(crate) platform: Platform,
    pub(crate) created_ms: i64,
}

/// Where a device's notifications go.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "platform", rename_all = "lowercase")]
pub(crate) enum Platform {
    Webpush {
        endpoint: String,
        p256dh: String,
        auth: String,
    },
    Fcm {
        token: String,
    },
    Apns {
        token: String,
        topic: String,
    },
    Webhook {
        token: String,
    },
}

impl Platform {
    /// The provider's name (metrics labels, JSON).
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Platform::Webpush { .. } => "webpush",
            Platform::Fcm { .. } => "fcm",
            Platform::Apns { .. } => "apns",
            Platform::Webhook { .. } => "webhook",
        }
    }
}

/// Why a registration was refused (the message is the client's).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct Refused(pub(crate) String);

fn refused(m: impl Into<String>) -> Refused {
    Refused(m.into())
}

/// Checks a device id.
pub(crate) fn check_id(id: &str) -> Result<(), Refused> {
    let ok = !id.is_empty()
        && id.len() <= MAX_DEVICE_ID_BYTES
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(refused(format!(
            "a device id is 1 to {MAX_DEVICE_ID_BYTES} characters of A-Z a-z 0-9 . _ -"
        )))
    }
}

/// The platform a registration body names, checked: `webpush_hosts` are the push-service
/// hosts a subscription's endpoint may be on (`*.example.com` matches subdomains).
pub(crate) fn parse(body: &Value, webpush_hosts: &[String]) -> Result<Platform, Refused> {
    let text = |name: &str| -> Result<&str, Refused> {
        body.get(name)
            .and_then(Value::as_str)
            .ok_or_else(|| refused(format!("{name} is required (a string)")))
    };
    let token = |name: &str| -> Result<String, Refused> {
        let t = text(name)?;
        if t.is_empty() || t.len() > MAX_TOKEN_BYTES || !t.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(refused(format!(
                "{name} must be 1 to {MAX_TOKEN_BYTES} printable ASCII characters"
            )));
        }
        Ok(t.to_owned())
    };
    match text("platform")? {
        "webpush" => {
            let endpoint = text("endpoint")?;
            let keys = body
                .get("keys")
                .ok_or_else(|| refused("keys {p256dh, auth} is required"))?;
            let key = |name: &str| -> Result<&str, Refused> {
                keys.get(name)
                    .and_then(Value::as_str)
                    .ok_or_else(|| refused(format!("keys.{name} is required (a string)")))
            };
            let (p256dh, auth) = (key("p256dh")?, key("auth")?);
            Subscription::parse(endpoint, p256dh, auth).map_err(|e| refused(e.to_string()))?;
            if !host_allowed(endpoint, webpush_hosts) {
                return Err(refused(
                    "the subscription's endpoint is not on a push service this node sends to",
                ));
            }
            Ok(Platform::Webpush {
                endpoint: endpoint.to_owned(),
                p256dh: p256dh.to_owned(),
                auth: auth.to_owned(),
            })
        }
        "fcm" => Ok(Platform::Fcm {
            token: token("token")?,
        }),
        "apns" => {
            let token = token("token")?;
            if !token.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(refused("an APNs token is hexadecimal"));
            }
            let topic = text("topic")?;
            let topic_ok = !topic.is_empty()
                && topic.len() <= MAX_TOPIC_BYTES
                && topic
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'));
            if !topic_ok {
                return Err(refused("topic must be the app's bundle id"));
            }
            Ok(Platform::Apns {
                token,
                topic: topic.to_owned(),
            })
        }
        "webhook" => Ok(Platform::Webhook {
            token: token("token")?,
        }),
        other => Err(refused(format!(
            "platform must be webpush, fcm, apns or webhook (not {other:?})"
        ))),
    }
}

/// Whether `endpoint`'s host is one of `hosts` (`*.domain` matches any subdomain of it).
pub(crate) fn host_allowed(endpoint: &str, hosts: &[String]) -> bool {
    let Some(host) = host_of(endpoint) else {
        return false;
    };
    hosts
        .iter()
        .any(|allowed| match allowed.strip_prefix("*.") {
            Some(domain) => host
                .strip_suffix(domain)
                .is_some_and(|sub| sub.ends_with('.') && sub.len() > 1),
            None => host.eq_ignore_ascii_case(allowed),
        })
}

/// The host of an `http(s)://host[:port]/…` URL, lower-cased (no userinfo accepted).
fn host_of(url: &str) -> Option<String> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))?;
    let authority = rest.split(['/', '?', '#']).next()?;
    if authority.contains('@') {
        return None;
    }
    let host = match authority.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => authority,
    };
    (!host.is_empty()).then(|| host.to_ascii_lowercase())
}

/// A device as `GET /api/devices` shows it: no keys, tokens shortened.
pub(crate) fn public_json(d: &Device) -> Value {
    let (kind, hint) = match &d.platform {
        Platform::Webpush { endpoint, .. } => ("webpush", host_of(endpoint).unwrap_or_default()),
        Platform::Fcm { token } | Platform::Apns { token, .. } | Platform::Webhook { token } => {
            let end: String = token
                .chars()
                .rev()
                .take(6)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            (d.platform.name(), format!("…{end}"))
        }
    };
    json!({
        "id": d.id,
        "platform": kind,
        "target": hint,
        "createdAt": crate::clock::rfc3339(d.created_ms),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts() -> Vec<String> {
        vec!["*.push.example".to_owned(), "127.0.0.1".to_owned()]
    }

    #[test]
    fn ids_are_short_and_plain() {
        assert!(check_id("phone-1.a_b").is_ok());
        for bad in ["", "a/b", "a b", "é", &"x".repeat(65), "a\u{200b}"] {
            assert!(check_id(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn endpoints_only_on_allowed_hosts() {
        let h = hosts();
        assert!(host_allowed("https://a.push.example/x", &h));
        assert!(host_allowed("http://127.0.0.1:8080/x", &h));
        assert!(
            !host_allowed("https://push.example/x", &h),
            "the bare domain is not a subdomain"
        );
        assert!(!host_allowed("https://evilpush.example/x", &h));
        assert!(!host_allowed("https://a.push.example@10.0.0.1/x", &h));
        assert!(!host_allowed("https://10.0.0.1/a.push.example", &h));
        assert!(!host_allowed("ftp://127.0.0.1/", &h));
    }

    #[test]
    fn tokens_and_platforms_are_checked() {
        let h = hosts();
        let ok = json!({"platform": "fcm", "token": "abc:DEF_123"});
        assert_eq!(
            parse(&ok, &h).expect("fcm"),
            Platform::Fcm {
                token: "abc:DEF_123".into()
            }
        );
        for bad in [
            json!({"platform": "fcm"}),
            json!({"platform": "fcm", "token": "has space"}),
            json!({"platform": "fcm", "token": "x".repeat(513)}),
            json!({"platform": "apns", "token": "zz", "topic": "com.app"}),
            json!({"platform": "apns", "token": "ab12", "topic": "com app"}),
            json!({"platform": "webhook", "token": ""}),
            json!({"platform": "sms", "token": "x"}),
            json!({"platform": "webpush", "endpoint": "https://a.push.example/x"}),
            json!({"token": "x"}),
        ] {
            assert!(parse(&bad, &h).is_err(), "{bad}");
        }
        let apns = json!({"platform": "apns", "token": "ab12CD", "topic": "com.example.app"});
        assert!(parse(&apns, &h).is_ok());
    }

    #[test]
    fn the_public_view_hides_keys_and_tokens() {
        let d = Device {
            id: "p".into(),
            platform: Platform::Fcm {
                token: "secret-token-abcdef".into(),
            },
            created_ms: 0,
        };
        let v = public_json(&d);
        assert_eq!(v["target"], "…abcdef");
        assert!(!v.to_string().contains("secret"));
    }
}
