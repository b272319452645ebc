//! The push services, behind one call: a notification for one device in, what became of it
//! out. Each provider speaks its service's HTTP API exactly (auth header, TTL, urgency and
//! collapse headers, payload limits) to a base URL that is configurable, so tests run them
//! against local fakes that check the requests as the real services do.
//!
//! What a response means, for every provider alike: 2xx sent; the device is gone (404/410,
//! FCM `UNREGISTERED`, APNs `BadDeviceToken`) → the dispatcher removes it; 429 and 5xx (and a network error) → retry,
//! after `Retry-After` when the service says; anything else failed for good (a metric and a
//! log line, the device kept).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::Client;
use parley_types::{ConversationId, MessageId};
use ring::hmac;
use serde_json::{Value, json};

use super::device::{Device, Platform};
use super::webpush::{self, Subscription, Vapid};

/// Longest a push service's response body is read (errors are small JSON).
const MAX_RESPONSE_BYTES: usize = 64 * 1024;
/// The OAuth2 scope FCM HTTP v1 needs.
const FCM_SCOPE: &str = "https://www.googleapis.com/auth/firebase.messaging";
/// An FCM access token is renewed this long before it expires.
const TOKEN_MARGIN: Duration = Duration::from_secs(300);

/// What a push says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// New messages: a visible notification.
    Message,
    /// The conversation was read up to `seq` (on some device): a silent update that
    /// clears its notification and sets the badge, where the platform has one.
    Read,
}

/// What one push is about.
#[derive(Clone, Debug)]
pub(crate) struct Notification {
    pub(crate) kind: Kind,
    pub(crate) user: String,
    pub(crate) conversation: ConversationId,
    pub(crate) message_id: MessageId,
    pub(crate) seq: u64,
    pub(crate) sender: String,
    /// Messages this notification stands for (coalesced).
    pub(crate) count: u32,
    /// The user's unread messages over all conversations: the badge.
    pub(crate) unread_total: u64,
    /// The message's text, only when the node is configured to include it.
    pub(crate) text: Option<String>,
}

impl Notification {
    /// The JSON every provider carries (as its payload, or its data fields).
    pub(crate) fn json(&self) -> Value {
        if self.kind == Kind::Read {
            return json!({
                "type": "read",
                "conversationId": self.conversation.to_string(),
                "seq": self.seq,
                "unread": self.unread_total,
            });
        }
        let mut v = json!({
            "type": "message",
            "conversationId": self.conversation.to_string(),
            "messageId": self.message_id.0.to_string(),
            "seq": self.seq,
            "senderId": self.sender,
            "count": self.count,
            "unread": self.unread_total,
        });
        if let Some(text) = &self.text {
            v["text"] = Value::String(text.clone());
        }
        v
    }

    /// A collapse key per conversation: a device shows one notification per conversation,
    /// replaced by the next (RFC 8030 `Topic`: at most 32 URL-safe base64 characters).
    pub(crate) fn topic(&self) -> String {
        webpush::b64url(self.conversation.as_bytes())
    }

    /// Names this push for the receiver's de-duplication (webhook `Idempotency-Key`).
    pub(crate) fn idempotency_key(&self) -> String {
        match self.kind {
            Kind::Message => format!("{}:{}:{}", self.user, self.conversation, self.seq),
            Kind::Read => format!("{}:{}:read:{}", self.user, self.conversation, self.seq),
        }
    }

    /// How urgently the service should deliver it: a silent update can wait for the
    /// device's next wake-up.
    fn urgent(&self) -> bool {
        self.kind == Kind::Message
    }
}

/// What became of one push to one device.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    Sent,
    /// The service says the device no longer exists: remove it.
    Gone(&'static str),
    /// Try again, after this long when the service said.
    Retry {
        after: Option<Duration>,
        reason: &'static str,
    },
    /// Failed for good.
    Failed(&'static str),
}

/// How long a push service keeps an undelivered notification, and how urgent it is.
#[derive(Clone, Debug)]
pub(crate) struct Delivery {
    pub(crate) ttl: Duration,
}

/// Web Push (RFC 8030) with encrypted payloads (RFC 8291) and VAPID (RFC 8292).
pub(crate) struct WebPushConfig {
    pub(crate) vapid: Vapid,
}

/// FCM HTTP v1 with a service account.
pub(crate) struct FcmConfig {
    pub(crate) project_id: String,
    pub(crate) client_email: String,
    /// The service account's RSA key, PEM.
    pub(crate) private_key_pem: String,
    /// Where access tokens come from (the service account's `token_uri`).
    pub(crate) token_uri: String,
    /// `https://fcm.googleapis.com` unless pointed elsewhere.
    pub(crate) base_url: String,
}

/// The marketplace's own notification service.
pub(crate) struct WebhookConfig {
    pub(crate) url: String,
    /// Signs every request (`X-Parley-Signature`).
    pub(crate) secret: Vec<u8>,
}

/// APNs with a token-based provider key (`.p8`).
pub(crate) struct ApnsConfig {
    /// The `.p8` key Apple issued (PKCS#8 PEM, P-256).
    pub(crate) key_pem: String,
    pub(crate) key_id: String,
    pub(crate) team_id: String,
    /// `https://api.push.apple.com` (or the sandbox) unless pointed elsewhere.
    pub(crate) base_url: String,
}

/// APNs's settings, its signing key, and the provider token while it is good.
struct Apns {
    config: ApnsConfig,
    key: jsonwebtoken::EncodingKey,
    token: Mutex<Option<(String, Instant)>>,
}

/// How long an APNs provider token is used (Apple: refresh between 20 and 60 minutes).
const APNS_TOKEN_LIFETIME: Duration = Duration::from_secs(40 * 60);

/// FCM's settings, the service account's key, and the access token while it is good.
struct Fcm {
    config: FcmConfig,
    key: jsonwebtoken::EncodingKey,
    token: Mutex<Option<(String, Instant)>>,
}

/// The providers this node sends with (a platform without one: the push fails, counted).
pub(crate) struct Providers {
    http: Http,
    delivery: Delivery,
    webpush: Option<WebPushConfig>,
    fcm: Option<Fcm>,
    apns: Option<Apns>,
    webhook: Option<(WebhookConfig, hmac::Key)>,
}

impl Providers {
    pub(crate) fn new(
        delivery: Delivery,
        request_timeout: Duration,
        webpush: Option<WebPushConfig>,
        fcm: Option<FcmConfig>,
        apns: Option<ApnsConfig>,
        webhook: Option<WebhookConfig>,
    ) -> Result<Self, String> {
        let apns = match apns {
            Some(c) => {
                let key = jsonwebtoken::EncodingKey::from_ec_pem(c.key_pem.as_bytes())
                    .map_err(|e| format!("APNs key: {e}"))?;
                Some(Apns {
                    config: c,
                    key,
                    token: Mutex::new(None),
                })
            }
            None => None,
        };
        let fcm = match fcm {
            Some(c) => {
                let key = jsonwebtoken::EncodingKey::from_rsa_pem(c.private_key_pem.as_bytes())
                    .map_err(|e| format!("FCM service account private_key: {e}"))?;
                Some(Fcm {
                    config: c,
                    key,
                    token: Mutex::new(None),
                })
            }
            None => None,
        };
        let webhook = webhook.map(|c| {
            let key = hmac::Key::new(hmac::HMAC_SHA256, &c.secret);
            (c, key)
        });
        Ok(Self {
            http: Http::new(request_timeout)?,
            delivery,
            webpush,
            fcm,
            apns,
            webhook,
        })
    }

    /// The VAPID public key browsers subscribe with (`applicationServerKey`), when Web Push
    /// is configured.
    pub(crate) fn vapid_public_key(&self) -> Option<String> {
        self.webpush.as_ref().map(|w| w.vapid.public_key_b64())
    }

    /// Sends `n` to `device`.
    pub(crate) async fn send(&self, device: &Device, n: &Notification) -> Outcome {
        match &device.platform {
            Platform::Webpush {
                endpoint,
                p256dh,
                auth,
            } => self.webpush(endpoint, p256dh, auth, n).await,
            Platform::Fcm { token } => self.fcm(token, n).await,
            Platform::Webhook { token } => self.webhook(device, token, n).await,
            Platform::Apns { token, topic } => self.apns(token, topic, n).await,
        }
    }

    async fn apns(&self, device_token: &str, topic: &str, n: &Notification) -> Outcome {
        let Some(apns) = &self.apns else {
            return Outcome::Failed("not_configured");
        };
        let Ok(bearer) = apns_token(apns) else {
            return Outcome::Failed("provider_token");
        };
        let body = match n.kind {
            Kind::Message => {
                let body_text = match &n.text {
                    Some(t) => t.clone(),
                    None if n.count > 1 => format!("{} new messages", n.count),
                    None => "New message".to_owned(),
                };
                // The app's notification service extension may rewrite it (mutable-content).
                json!({
                    "aps": {
                        "alert": { "title": "New message", "body": body_text },
                        "badge": n.unread_total,
                        "sound": "default",
                        "thread-id": n.conversation.to_string(),
                        "mutable-content": 1,
                    },
                    "parley": n.json(),
                })
            }
            // A background push: the badge, and the app removes the conversation's
            // delivered notifications (thread-id) when it wakes.
            Kind::Read => json!({
                "aps": { "badge": n.unread_total, "content-available": 1 },
                "parley": n.json(),
            }),
        }
        .to_string();
        if body.len() > 4096 {
            return Outcome::Failed("payload_too_large");
        }
        let expiration = unix_now() + self.delivery.ttl.as_secs();
        let url = format!(
            "{}/3/device/{device_token}",
            apns.config.base_url.trim_end_matches('/')
        );
        let mut headers = vec![
            (header::AUTHORIZATION, format!("bearer {bearer}")),
            (HeaderName::from_static("apns-topic"), topic.to_owned()),
            (
                HeaderName::from_static("apns-push-type"),
                if n.urgent() { "alert" } else { "background" }.to_owned(),
            ),
            // Apple: background pushes must use priority 5.
            (
                HeaderName::from_static("apns-priority"),
                if n.urgent() { "10" } else { "5" }.to_owned(),
            ),
            (
                HeaderName::from_static("apns-expiration"),
                expiration.to_string(),
            ),
            (header::CONTENT_TYPE, "application/json".to_owned()),
        ];
        if n.urgent() {
            // Replaces the conversation's previous notification (a background push shows
            // nothing, so it replaces nothing).
            headers.push((HeaderName::from_static("apns-collapse-id"), n.topic()));
        }
        match self.http.post_h2(&url, &headers, body.into()).await {
            Ok((status, headers, body)) => {
                let reason = String::from_utf8_lossy(&body);
                if status == StatusCode::FORBIDDEN && reason.contains("ProviderToken") {
                    // Expired or refused early: a fresh one next time.
                    *apns.token.lock().unwrap_or_else(|e| e.into_inner()) = None;
                    return Outcome::Retry {
                        after: None,
                        reason: "provider_token",
                    };
                }
                if status == StatusCode::BAD_REQUEST
                    && (reason.contains("BadDeviceToken")
                        || reason.contains("DeviceTokenNotForTopic"))
                {
                    return Outcome::Gone("bad_device_token");
                }
                by_status(status, &headers, "")
            }
            Err(reason) => Outcome::Retry {
                after: None,
                reason,
            },
        }
    }

    async fn webpush(&self, endpoint: &str, p256dh: &str, auth: &str, n: &Notification) -> Outcome {
        let Some(w) = &self.webpush else {
            return Outcome::Failed("not_configured");
        };
        let Ok(sub) = Subscription::parse(endpoint, p256dh, auth) else {
            return Outcome::Gone("bad_subscription");
        };
        let Ok(body) = webpush::encrypt(&sub, n.json().to_string().as_bytes()) else {
            return Outcome::Failed("payload_too_large");
        };
        let ttl = self.delivery.ttl.as_secs();
        let Ok(vapid) = w.vapid.authorization(endpoint, unix_now(), 12 * 3600) else {
            return Outcome::Failed("vapid");
        };
        let headers = [
            (header::AUTHORIZATION, vapid),
            (header::CONTENT_ENCODING, "aes128gcm".to_owned()),
            (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
            (HeaderName::from_static("ttl"), ttl.to_string()),
            (
                HeaderName::from_static("urgency"),
                if n.urgent() { "high" } else { "normal" }.to_owned(),
            ),
            (HeaderName::from_static("topic"), n.topic()),
        ];
        match self.http.post(endpoint, &headers, body.into()).await {
            Ok((status, headers, _)) => by_status(status, &headers, ""),
            Err(reason) => Outcome::Retry {
                after: None,
                reason,
            },
        }
    }

    async fn webhook(&self, device: &Device, token: &str, n: &Notification) -> Outcome {
        let Some((c, key)) = &self.webhook else {
            return Outcome::Failed("not_configured");
        };
        let body = json!({
            "userId": n.user,
            "deviceId": device.id,
            "token": token,
            "notification": n.json(),
        })
        .to_string();
        let t = unix_now();
        let signed = format!("{t}.{body}");
        let mac = hmac::sign(key, signed.as_bytes());
        let signature = format!("t={t},v1={}", hex(mac.as_ref()));
        let headers = [
            (header::CONTENT_TYPE, "application/json".to_owned()),
            (HeaderName::from_static("x-parley-signature"), signature),
            (
                HeaderName::from_static("idempotency-key"),
                n.idempotency_key(),
            ),
        ];
        match self.http.post(&c.url, &headers, body.into()).await {
            Ok((status, headers, _)) => by_status(status, &headers, ""),
            Err(reason) => Outcome::Retry {
                after: None,
                reason,
            },
        }
    }

    async fn fcm(&self, token: &str, n: &Notification) -> Outcome {
        let Some(fcm) = &self.fcm else {
            return Outcome::Failed("not_configured");
        };
        let (c, cached) = (&fcm.config, &fcm.token);
        let access = match self.fcm_token(fcm).await {
            Ok(t) => t,
            Err(o) => return o,
        };
        // FCM's data values are strings.
        let data: serde_json::Map<String, Value> = n
            .json()
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, v)| {
                let s = match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                (k.clone(), Value::String(s))
            })
            .collect();
        let body = json!({
            "message": {
                "token": token,
                "data": data,
                "android": {
                    "collapse_key": n.topic(),
                    "priority": if n.urgent() { "high" } else { "normal" },
                    "ttl": format!("{}s", self.delivery.ttl.as_secs()),
                },
            }
        })
        .to_string();
        let url = format!(
            "{}/v1/projects/{}/messages:send",
            c.base_url.trim_end_matches('/'),
            c.project_id
        );
        let headers = [
            (header::AUTHORIZATION, format!("Bearer {access}")),
            (header::CONTENT_TYPE, "application/json".to_owned()),
        ];
        match self.http.post(&url, &headers, body.into()).await {
            Ok((status, headers, body)) => {
                if status == StatusCode::UNAUTHORIZED {
                    // The token was revoked or expired early: fetch a new one next time.
                    *cached.lock().unwrap_or_else(|e| e.into_inner()) = None;
                }
                by_status(status, &headers, &String::from_utf8_lossy(&body))
            }
            Err(reason) => Outcome::Retry {
                after: None,
                reason,
            },
        }
    }

    /// An OAuth2 access token for FCM: the cached one, or one bought with a signed JWT
    /// (RFC 7523) from the service account's token endpoint.
    async fn fcm_token(&self, fcm: &Fcm) -> Result<String, Outcome> {
        let (c, key, cached) = (&fcm.config, &fcm.key, &fcm.token);
        if let Some((t, until)) = cached.lock().unwrap_or_else(|e| e.into_inner()).as_ref()
            && Instant::now() < *until
        {
            return Ok(t.clone());
        }
        let now = unix_now();
        let claims = json!({
            "iss": c.client_email,
            "scope": FCM_SCOPE,
            "aud": c.token_uri,
            "iat": now,
            "exp": now + 3600,
        });
        let header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
        let assertion =
            jsonwebtoken::encode(&header, &claims, key).map_err(|_| Outcome::Failed("oauth"))?;
        let form = format!(
            "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion={assertion}"
        );
        let headers = [(
            header::CONTENT_TYPE,
            "application/x-www-form-urlencoded".to_owned(),
        )];
        let (status, resp_headers, body) = self
            .http
            .post(&c.token_uri, &headers, form.into())
            .await
            .map_err(|reason| Outcome::Retry {
                after: None,
                reason,
            })?;
        if !status.is_success() {
            return Err(match by_status(status, &resp_headers, "") {
                Outcome::Retry { after, .. } => Outcome::Retry {
                    after,
                    reason: "oauth",
                },
                _ => Outcome::Failed("oauth"),
            });
        }
        let v: Value = serde_json::from_slice(&body).map_err(|_| Outcome::Failed("oauth"))?;
        let token = v["access_token"]
            .as_str()
            .ok_or(Outcome::Failed("oauth"))?
            .to_owned();
        let lifetime = Duration::from_secs(v["expires_in"].as_u64().unwrap_or(3600));
        let until = Instant::now() + lifetime.saturating_sub(TOKEN_MARGIN);
        *cached.lock().unwrap_or_else(|e| e.into_inner()) = Some((token.clone(), until));
        Ok(token)
    }
}

/// The APNs provider token (an ES256 JWT: `kid` the key id, `iss` the team, `iat` now), the
/// cached one while it is young enough.
fn apns_token(apns: &Apns) -> Result<String, jsonwebtoken::errors::Error> {
    let mut cached = apns.token.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((t, until)) = cached.as_ref()
        && Instant::now() < *until
    {
        return Ok(t.clone());
    }
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    header.kid = Some(apns.config.key_id.clone());
    let claims = json!({ "iss": apns.config.team_id, "iat": unix_now() });
    let token = jsonwebtoken::encode(&header, &claims, &apns.key)?;
    *cached = Some((token.clone(), Instant::now() + APNS_TOKEN_LIFETIME));
    Ok(token)
}

/// What a push service's status means (see the module's doc); `body` is searched for FCM's
/// `UNREGISTERED`.
fn by_status(status: StatusCode, headers: &HeaderMap, body: &str) -> Outcome {
    match status.as_u16() {
        200..=299 => Outcome::Sent,
        404 | 410 => Outcome::Gone("gone"),
        400 if body.contains("UNREGISTERED") => Outcome::Gone("unregistered"),
        429 => Outcome::Retry {
            after: retry_after(headers),
            reason: "rate_limited",
        },
        413 => Outcome::Failed("payload_too_large"),
        500..=599 => Outcome::Retry {
            after: retry_after(headers),
            reason: "server_error",
        },
        401 | 403 => Outcome::Failed("unauthorized"),
        _ => Outcome::Failed("refused"),
    }
}

/// `Retry-After` in seconds (the HTTP-date form is not used by push services).
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let secs: u64 = headers
        .get(header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_secs(secs.min(24 * 3600)))
}

fn unix_now() -> u64 {
    u64::try_from(crate::clock::wall_ms() / 1000).unwrap_or(0)
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

use crate::outbound::Connector;

/// HTTP/1.1 and HTTP/2 (APNs; TLS with ALPN `h2`, or prior knowledge on `http://`), with a
/// deadline on the whole exchange.
struct Http {
    client: Client<Connector, Full<Bytes>>,
    h2: Client<Connector, Full<Bytes>>,
    timeout: Duration,
}

impl Http {
    fn new(timeout: Duration) -> Result<Self, String> {
        use crate::outbound::{Version, client};
        let client = client("push", Version::Http1, timeout, Duration::from_secs(60))?;
        // One connection per host, many streams on it (what APNs asks of a provider).
        let h2 =
            crate::outbound::client("push", Version::Http2, timeout, Duration::from_secs(600))?;
        Ok(Self {
            client,
            h2,
            timeout,
        })
    }

    /// [`Http::post`] over HTTP/2.
    async fn post_h2(
        &self,
        url: &str,
        headers: &[(HeaderName, String)],
        body: Bytes,
    ) -> Result<(StatusCode, HeaderMap, Bytes), &'static str> {
        self.exchange(&self.h2, url, headers, body).await
    }

    /// POSTs `body`; the status, headers and (at most 64 KiB of) body, or why there is none.
    async fn post(
        &self,
        url: &str,
        headers: &[(HeaderName, String)],
        body: Bytes,
    ) -> Result<(StatusCode, HeaderMap, Bytes), &'static str> {
        self.exchange(&self.client, url, headers, body).await
    }

    async fn exchange(
        &self,
        client: &Client<Connector, Full<Bytes>>,
        url: &str,
        headers: &[(HeaderName, String)],
        body: Bytes,
    ) -> Result<(StatusCode, HeaderMap, Bytes), &'static str> {
        let mut req = Request::builder().method(Method::POST).uri(url);
        for (name, value) in headers {
            let value = HeaderValue::from_str(value).map_err(|_| "bad_header")?;
            req = req.header(name, value);
        }
        let req = req
            .header(header::CONTENT_LENGTH, body.len())
            .body(Full::new(body))
            .map_err(|_| "bad_url")?;
        let exchange = async {
            let resp = client.request(req).await.map_err(|_| "network")?;
            let (parts, body) = resp.into_parts();
            let body = Limited::new(body, MAX_RESPONSE_BYTES)
                .collect()
                .await
                .map_err(|_| "network")?
                .to_bytes();
            Ok((parts.status, parts.headers, body))
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| "timeout")?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_mean_what_the_services_say() {
        let none = HeaderMap::new();
        assert_eq!(by_status(StatusCode::CREATED, &none, ""), Outcome::Sent);
        assert_eq!(
            by_status(StatusCode::GONE, &none, ""),
            Outcome::Gone("gone")
        );
        assert_eq!(
            by_status(StatusCode::NOT_FOUND, &none, ""),
            Outcome::Gone("gone")
        );
        assert_eq!(
            by_status(
                StatusCode::BAD_REQUEST,
                &none,
                r#"{"error":{"details":[{"errorCode":"UNREGISTERED"}]}}"#
            ),
            Outcome::Gone("unregistered")
        );
        let mut later = HeaderMap::new();
        later.insert(header::RETRY_AFTER, HeaderValue::from_static("7"));
        assert_eq!(
            by_status(StatusCode::TOO_MANY_REQUESTS, &later, ""),
            Outcome::Retry {
                after: Some(Duration::from_secs(7)),
                reason: "rate_limited"
            }
        );
        assert_eq!(
            by_status(StatusCode::SERVICE_UNAVAILABLE, &none, ""),
            Outcome::Retry {
                after: None,
                reason: "server_error"
            }
        );
        assert_eq!(
            by_status(StatusCode::FORBIDDEN, &none, ""),
            Outcome::Failed("unauthorized")
        );
    }

    #[test]
    fn the_topic_is_a_valid_collapse_key() {
        let n = Notification {
            kind: Kind::Message,
            user: "u".into(),
            conversation: ConversationId::random(),
            message_id: MessageId(1),
            seq: 1,
            sender: "s".into(),
            count: 1,
            unread_total: 1,
            text: None,
        };
        let t = n.topic();
        assert!(t.len() <= 32);
        assert!(
            t.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
        assert!(n.json().get("text").is_none(), "no text unless configured");
    }
}
