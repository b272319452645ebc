//! Push notifications end to end: the real binary, a real HTTP fake of each push service on
//! loopback that checks requests as the service does, Web Push payloads decrypted by an
//! independent implementation (PyPI `http-ece`, `gateway/tests/push/decrypt.py`).

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use p256::elliptic_curve::sec1::ToEncodedPoint;
use parley_proto::{ServerBody, ServerFrame};
use parley_types::ConversationId;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::support::*;

/// One request a fake service received.
#[derive(Debug)]
struct Seen {
    version: hyper::Version,
    path: String,
    headers: hyper::HeaderMap,
    body: Bytes,
}

/// Per path, the statuses (and `Retry-After`) to answer with, in order.
type Script = Arc<Mutex<HashMap<String, VecDeque<(u16, Option<&'static str>)>>>>;

/// A push service on loopback: records every request, answers each path with the statuses
/// scripted for it (then 201), `/token` with an OAuth2 token.
struct Fake {
    addr: SocketAddr,
    seen: mpsc::Receiver<Seen>,
    script: Script,
}

impl Fake {
    async fn start() -> Self {
        Self::serve(false).await
    }

    /// The same, speaking HTTP/2 (prior knowledge, as APNs speaks it over TLS).
    async fn start_h2() -> Self {
        Self::serve(true).await
    }

    async fn serve(h2: bool) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        // Far more than any test sends; a full channel would fail the test, not hang it.
        let (tx, seen) = mpsc::channel(1024);
        let script: Script = Arc::default();
        let s = script.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (tx, s) = (tx.clone(), s.clone());
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let (tx, s) = (tx.clone(), s.clone());
                        async move {
                            let version = req.version();
                            let path = req.uri().path().to_owned();
                            let headers = req.headers().clone();
                            let body = req.into_body().collect().await?.to_bytes();
                            let (status, retry_after) = s
                                .lock()
                                .unwrap()
                                .get_mut(&path)
                                .and_then(VecDeque::pop_front)
                                .unwrap_or((201, None));
                            let reply = if path == "/token" {
                                r#"{"access_token":"fake-access-token","expires_in":3600,"token_type":"Bearer"}"#
                            } else if status == 400 && path.starts_with("/3/device/") {
                                // What APNs answers for a token it does not know.
                                r#"{"reason":"BadDeviceToken"}"#
                            } else {
                                "{}"
                            };
                            tx.try_send(Seen {
                                version,
                                path,
                                headers,
                                body,
                            })
                            .expect("the test reads what the fake saw");
                            let mut resp = Response::new(Full::new(Bytes::from(reply)));
                            *resp.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
                            if let Some(r) = retry_after {
                                resp.headers_mut().insert("retry-after", r.parse().unwrap());
                            }
                            Ok::<_, hyper::Error>(resp)
                        }
                    });
                    let io = TokioIo::new(stream);
                    let _ = if h2 {
                        hyper::server::conn::http2::Builder::new(
                            hyper_util::rt::TokioExecutor::new(),
                        )
                        .serve_connection(io, service)
                        .await
                    } else {
                        hyper::server::conn::http1::Builder::new()
                            .serve_connection(io, service)
                            .await
                    };
                });
            }
        });
        Self { addr, seen, script }
    }

    fn answer(&self, path: &str, statuses: &[(u16, Option<&'static str>)]) {
        self.script
            .lock()
            .unwrap()
            .insert(path.to_owned(), statuses.iter().copied().collect());
    }

    /// The next request (the test fails after a long wait: a push that never comes).
    async fn next(&mut self) -> Seen {
        tokio::time::timeout(Duration::from_secs(30), self.seen.recv())
            .await
            .expect("a push request in time")
            .expect("fake running")
    }

    fn nothing_yet(&mut self) -> bool {
        self.seen.try_recv().is_err()
    }
}

/// A browser's push subscription: its private key and the registration body.
struct Browser {
    endpoint: String,
    private: [u8; 32],
    auth: [u8; 16],
    body: String,
}

fn browser(endpoint: &str) -> Browser {
    let mut private = [0u8; 32];
    getrandom::fill(&mut private).unwrap();
    let key = p256::SecretKey::from_slice(&private).unwrap();
    let public = key.public_key().to_encoded_point(false);
    let auth = [5u8; 16];
    let body = json!({
        "platform": "webpush",
        "endpoint": endpoint,
        "keys": {"p256dh": B64.encode(public.as_bytes()), "auth": B64.encode(auth)},
    })
    .to_string();
    Browser {
        endpoint: endpoint.to_owned(),
        private,
        auth,
        body,
    }
}

/// Runs `gateway/tests/push/decrypt.py` (an implementation independent of Parley's) on
/// `input`: its stdout.
fn independent(input: &Value) -> Vec<u8> {
    let manifest = env!("CARGO_MANIFEST_DIR");
    let python = std::env::var("PARLEY_PYTHON")
        .unwrap_or_else(|_| format!("{manifest}/../target/test-venv/bin/python3"));
    let mut child = std::process::Command::new(&python)
        .arg(format!("{manifest}/tests/push/decrypt.py"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{python}: {e}"));
    use std::io::Write as _;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the independent check refused it: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Decrypts a Web Push request with the independent implementation (PyPI `http-ece`) and
/// verifies its VAPID header (`cryptography`): the payload JSON and the JWT's claims.
fn open(b: &Browser, seen: &Seen) -> (Value, Value) {
    let plaintext = independent(&json!({
        "body": B64.encode(&seen.body),
        "private_key": B64.encode(b.private),
        "auth": B64.encode(b.auth),
    }));
    let claims = independent(&json!({
        "verify_vapid": seen.headers["authorization"].to_str().unwrap(),
        "endpoint": b.endpoint,
    }));
    (
        serde_json::from_slice(&plaintext).unwrap(),
        serde_json::from_slice(&claims).unwrap(),
    )
}

async fn put(gw: &Gateway, user: &str, path: &str, body: &str) -> (u16, Value) {
    let (s, v, _) = http(gw.addr, "PUT", path, Some(&token(user)), Some(body), &[]).await;
    (s, v)
}

async fn send(gw: &Gateway, user: &str, conv: ConversationId, key: &str, text: &str) -> Value {
    let (s, v, _) = http(
        gw.addr,
        "POST",
        &format!("/api/conversations/{conv}/messages"),
        Some(&token(user)),
        Some(&json!({ "content": text }).to_string()),
        &[("idempotency-key", key)],
    )
    .await;
    assert_eq!(s, 201, "{v}");
    v
}

/// Waits until `series` in /metrics reaches `at_least`.
async fn metric_reaches(gw: &Gateway, series: &str, at_least: f64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let v = metric(&metrics(gw.addr).await, series);
        if v >= at_least {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{series} stayed at {v}, below {at_least}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// A labelled counter's value; 0 before its first increment (the series is not shown yet).
fn metric(text: &str, series: &str) -> f64 {
    if text.lines().any(|l| l.starts_with(&format!("{series} "))) {
        metric_value(text, series)
    } else {
        0.0
    }
}

fn push_gateway(grace_ms: &str, extra: &[&str]) -> Gateway {
    let mut args = vec![
        "--push-grace-ms",
        grace_ms,
        "--push-webpush-hosts",
        "127.0.0.1",
    ];
    args.extend_from_slice(extra);
    Gateway::start(&args)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offline_user_gets_one_encrypted_web_push_per_window() {
    let mut fake = Fake::start().await;
    let gw = push_gateway("400", &[]);
    let (s, key, _) = get(&gw, "seller", "/api/push/vapid").await;
    assert_eq!(s, 200);
    let vapid_key = key["publicKey"].as_str().unwrap().to_owned();
    let endpoint = format!("http://{}/wp/seller-1", fake.addr);
    let b = browser(&endpoint);
    let (s, d) = put(&gw, "seller", "/api/devices/laptop", &b.body).await;
    assert_eq!(s, 200, "{d}");
    assert_eq!(d["platform"], "webpush");
    let conv = direct(&gw, "buyer", "seller", "lego-castle").await;
    for i in 0..3 {
        send(
            &gw,
            "buyer",
            conv,
            &format!("m{i}"),
            &format!("is it still for sale? {i}"),
        )
        .await;
    }
    let first = fake.next().await;
    assert_eq!(first.path, "/wp/seller-1");
    let h = &first.headers;
    assert_eq!(h["content-encoding"], "aes128gcm");
    assert_eq!(h["ttl"], "86400");
    assert_eq!(h["urgency"], "high");
    let topic = h["topic"].to_str().unwrap();
    assert!(
        topic.len() <= 32
            && topic
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
    );
    assert!(first.body.len() <= 4096);
    let (payload, jwt) = open(&b, &first);
    assert_eq!(jwt["aud"], format!("http://{}", fake.addr));
    assert!(
        h["authorization"]
            .to_str()
            .unwrap()
            .ends_with(&format!("k={vapid_key}")),
        "signed with the key browsers subscribe with"
    );
    assert_eq!(payload["conversationId"], conv.to_string());
    assert_eq!(payload["senderId"], "buyer");
    assert_eq!(
        payload["count"], 3,
        "three messages, one notification: {payload}"
    );
    assert_eq!(payload["seq"], 3);
    assert_eq!(payload["unread"], 3, "the badge");
    assert!(payload.get("text").is_none(), "no text unless configured");
    // A later message opens a new window: one more push, of that message alone.
    send(&gw, "buyer", conv, "m3", "hello?").await;
    let second = fake.next().await;
    let (payload, _) = open(&b, &second);
    assert_eq!(payload["count"], 1);
    assert_eq!(payload["seq"], 4);
    assert_eq!(payload["unread"], 4);
    assert_eq!(
        second.headers["topic"], first.headers["topic"],
        "same collapse key"
    );
    metric_reaches(&gw, "parley_push_sent_total{provider=\"webpush\"}", 2.0).await;
    let m = metrics(gw.addr).await;
    assert_eq!(
        metric(&m, "parley_push_sent_total{provider=\"webpush\"}"),
        2.0
    );
    assert_eq!(metric(&m, "parley_push_coalesced_total"), 2.0);
    assert!(fake.nothing_yet(), "nothing more was sent");
    // The sender never gets a push for their own messages (buyer has no device anyway);
    // the seller's own reply makes none for the seller.
    send(&gw, "seller", conv, "r1", "yes!").await;
    send(&gw, "buyer", conv, "m4", "great").await;
    let third = fake.next().await;
    let (payload, _) = open(&b, &third);
    assert_eq!(payload["seq"], 6, "the seller's own message made no push");
    assert_eq!(
        payload["unread"], 1,
        "the reply moved the seller's watermark"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn online_back_within_grace_muted_or_read_elsewhere_gets_none() {
    let mut fake = Fake::start().await;
    let gw = push_gateway("2500", &[]);
    let b = browser(&format!("http://{}/wp/s", fake.addr));
    assert_eq!(put(&gw, "seller", "/api/devices/d1", &b.body).await.0, 200);
    let conv = direct(&gw, "buyer", "seller", "l1").await;
    // Online: none.
    let seller = Client::connect(&gw, "seller").await;
    send(&gw, "buyer", conv, "a", "one").await;
    metric_reaches(&gw, "parley_push_dropped_total{reason=\"online\"}", 1.0).await;
    // Gone, then back within the grace: none.
    seller.close().await;
    send(&gw, "buyer", conv, "b", "two").await;
    let seller = Client::connect(&gw, "seller").await;
    metric_reaches(&gw, "parley_push_dropped_total{reason=\"online\"}", 2.0).await;
    seller.close().await;
    // Read on another device before the push was due: none.
    let sent = send(&gw, "buyer", conv, "c", "three").await;
    let (s, v, _) = post(
        &gw,
        "seller",
        &format!("/api/conversations/{conv}/read"),
        &json!({ "upTo": sent["id"] }).to_string(),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    metric_reaches(&gw, "parley_push_dropped_total{reason=\"read\"}", 1.0).await;
    // Muted (over the protocol): none; unmuted (REST): the next one comes.
    let mut app = Client::connect(&gw, "seller").await;
    let acked = app.request(mute(conv, true, 0)).await;
    assert!(
        matches!(acked.body, ServerBody::Ack(ref a) if a.created_at_ms == 0),
        "{acked:?}"
    );
    app.close().await;
    let (_, v, _) = get(&gw, "seller", &format!("/api/conversations/{conv}/mute")).await;
    assert_eq!(v["muted"], true, "{v}");
    send(&gw, "buyer", conv, "d", "four").await;
    metric_reaches(&gw, "parley_push_dropped_total{reason=\"muted\"}", 1.0).await;
    let (s, v) = put(
        &gw,
        "seller",
        &format!("/api/conversations/{conv}/mute"),
        r#"{"muted": false}"#,
    )
    .await;
    assert_eq!((s, &v["muted"]), (200, &json!(false)));
    send(&gw, "buyer", conv, "e", "five").await;
    let push = fake.next().await;
    let (payload, _) = open(&b, &push);
    assert_eq!(
        payload["seq"], 5,
        "the first push is for the last message: {payload}"
    );
    assert_eq!(payload["count"], 1);
    assert_eq!(payload["unread"], 2, "four and five are unread");
    metric_reaches(&gw, "parley_push_sent_total{provider=\"webpush\"}", 1.0).await;
    assert_eq!(
        metric(
            &metrics(gw.addr).await,
            "parley_push_sent_total{provider=\"webpush\"}"
        ),
        1.0,
        "the pushes before it were all dropped"
    );
    assert!(fake.nothing_yet());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gone_device_is_removed_and_a_failing_service_is_retried() {
    let mut fake = Fake::start().await;
    let gw = push_gateway("200", &[]);
    let gone = browser(&format!("http://{}/wp/gone", fake.addr));
    let flaky = browser(&format!("http://{}/wp/flaky", fake.addr));
    fake.answer("/wp/gone", &[(410, None)]);
    fake.answer("/wp/flaky", &[(503, Some("1")), (429, Some("1"))]);
    assert_eq!(
        put(&gw, "seller", "/api/devices/old", &gone.body).await.0,
        200
    );
    assert_eq!(
        put(&gw, "seller", "/api/devices/new", &flaky.body).await.0,
        200
    );
    let conv = direct(&gw, "buyer", "seller", "l2").await;
    send(&gw, "buyer", conv, "a", "hi").await;
    let mut paths = Vec::new();
    for _ in 0..4 {
        paths.push(fake.next().await.path);
    }
    paths.sort();
    assert_eq!(
        paths,
        ["/wp/flaky", "/wp/flaky", "/wp/flaky", "/wp/gone"],
        "the gone device once; the flaky one until it took it"
    );
    metric_reaches(&gw, "parley_push_sent_total{provider=\"webpush\"}", 1.0).await;
    let m = metrics(gw.addr).await;
    assert_eq!(metric(&m, "parley_push_devices_removed_total"), 1.0);
    assert_eq!(
        metric(
            &m,
            "parley_push_failed_total{provider=\"webpush\",reason=\"server_error\"}"
        ),
        1.0
    );
    assert_eq!(
        metric(
            &m,
            "parley_push_failed_total{provider=\"webpush\",reason=\"rate_limited\"}"
        ),
        1.0
    );
    let (_, devices, _) = get(&gw, "seller", "/api/devices").await;
    let ids: Vec<&str> = devices["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["new"], "the gone device was removed");
    assert!(fake.nothing_yet(), "the gone device was not retried");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_pending_at_kill_9_is_sent_once_after_the_restart() {
    let mut fake = Fake::start().await;
    let mut gw = push_gateway("1500", &[]);
    let b = browser(&format!("http://{}/wp/k", fake.addr));
    assert_eq!(put(&gw, "seller", "/api/devices/d", &b.body).await.0, 200);
    let conv = direct(&gw, "buyer", "seller", "l3").await;
    send(&gw, "buyer", conv, "a", "before the crash").await;
    // Killed while the push waits out its grace (nothing sent yet).
    assert!(fake.nothing_yet());
    gw.restart();
    let push = fake.next().await;
    let (payload, _) = open(&b, &push);
    assert_eq!(payload["seq"], 1);
    // Once the node recorded it as sent (the metric counts it then)...
    metric_reaches(&gw, "parley_push_sent_total{provider=\"webpush\"}", 1.0).await;
    // ...restarted again: not sent again. The next message's push is the
    // next request the service sees.
    gw.restart();
    send(&gw, "buyer", conv, "b", "after").await;
    let next = fake.next().await;
    let (payload, _) = open(&b, &next);
    assert_eq!(payload["seq"], 2, "the first push was not sent twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fcm_and_webhook_requests_are_what_the_services_check() {
    let mut fake = Fake::start().await;
    let dir = tempfile::tempdir().unwrap();
    let manifest = env!("CARGO_MANIFEST_DIR");
    let private =
        std::fs::read_to_string(format!("{manifest}/tests/push/fcm-test-key.pem")).unwrap();
    let account = dir.path().join("sa.json");
    std::fs::write(
        &account,
        json!({
            "type": "service_account",
            "project_id": "parley-test",
            "client_email": "push@parley-test.iam.gserviceaccount.com",
            "private_key": private,
            "token_uri": format!("http://{}/token", fake.addr),
        })
        .to_string(),
    )
    .unwrap();
    let secret = "webhook-secret-0123456789";
    let fcm_url = format!("http://{}", fake.addr);
    let hook = format!("http://{}/hook", fake.addr);
    let gw = push_gateway(
        "200",
        &[
            "--push-fcm-service-account",
            account.to_str().unwrap(),
            "--push-fcm-url",
            &fcm_url,
            "--push-webhook-url",
            &hook,
            "--push-webhook-secret",
            secret,
            "--push-include-text",
            "true",
        ],
    );
    let (s, v) = put(
        &gw,
        "seller",
        "/api/devices/phone",
        r#"{"platform":"fcm","token":"fcm-registration-token:abc"}"#,
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        put(
            &gw,
            "seller",
            "/api/devices/crm",
            r#"{"platform":"webhook","token":"crm-42"}"#
        )
        .await
        .0,
        200
    );
    let conv = direct(&gw, "buyer", "seller", "l4").await;
    send(&gw, "buyer", conv, "a", "price ok?").await;
    let mut by_path = HashMap::new();
    for _ in 0..3 {
        let s = fake.next().await;
        by_path.insert(s.path.clone(), s);
    }
    // OAuth2 (RFC 7523): an RS256 JWT of the service account for an access token.
    let token = &by_path["/token"];
    let form = String::from_utf8(token.body.to_vec()).unwrap();
    let assertion = form
        .split('&')
        .find_map(|kv| kv.strip_prefix("assertion="))
        .expect("an assertion");
    assert!(form.contains("grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer"));
    let public = std::fs::read(format!("{manifest}/tests/push/fcm-test-key.pub.pem")).unwrap();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    validation.set_audience(&[format!("http://{}/token", fake.addr)]);
    let claims = jsonwebtoken::decode::<Value>(
        assertion,
        &jsonwebtoken::DecodingKey::from_rsa_pem(&public).unwrap(),
        &validation,
    )
    .expect("signed with the service account's key")
    .claims;
    assert_eq!(claims["iss"], "push@parley-test.iam.gserviceaccount.com");
    assert_eq!(
        claims["scope"],
        "https://www.googleapis.com/auth/firebase.messaging"
    );
    // FCM HTTP v1.
    let send = &by_path["/v1/projects/parley-test/messages:send"];
    assert_eq!(send.headers["authorization"], "Bearer fake-access-token");
    let body: Value = serde_json::from_slice(&send.body).unwrap();
    let m = &body["message"];
    assert_eq!(m["token"], "fcm-registration-token:abc");
    assert_eq!(m["android"]["priority"], "high");
    assert_eq!(m["android"]["ttl"], "86400s");
    assert!(m["android"]["collapse_key"].is_string());
    assert!(
        m["data"]
            .as_object()
            .unwrap()
            .values()
            .all(Value::is_string),
        "FCM data values are strings: {m}"
    );
    assert_eq!(m["data"]["conversationId"], conv.to_string());
    assert_eq!(
        m["data"]["text"], "price ok?",
        "text included when configured"
    );
    assert!(send.body.len() <= 4096);
    // The webhook: HMAC-SHA256 over "<t>.<body>".
    let hook = &by_path["/hook"];
    let sig = hook.headers["x-parley-signature"].to_str().unwrap();
    let (t, v1) = sig
        .strip_prefix("t=")
        .and_then(|r| r.split_once(",v1="))
        .expect("t=…,v1=…");
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    let mut signed = format!("{t}.").into_bytes();
    signed.extend_from_slice(&hook.body);
    let expected: String = ring::hmac::sign(&key, &signed)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(v1, expected);
    let body: Value = serde_json::from_slice(&hook.body).unwrap();
    assert_eq!(body["userId"], "seller");
    assert_eq!(body["token"], "crm-42");
    assert_eq!(body["notification"]["unread"], 1);
    assert_eq!(
        hook.headers["idempotency-key"],
        format!("seller:{conv}:1").as_str()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registrations_are_checked_and_never_leak_keys() {
    let gw = push_gateway("200", &["--push-max-devices", "2"]);
    let ok = browser("http://127.0.0.1:9/wp/x");
    for (path, body, why) in [
        (
            "/api/devices/a",
            r#"{"platform":"sms","token":"x"}"#,
            "unknown platform",
        ),
        ("/api/devices/a", r#"{"platform":"fcm"}"#, "no token"),
        (
            "/api/devices/a%20b",
            r#"{"platform":"fcm","token":"t"}"#,
            "bad id",
        ),
        (
            "/api/devices/a",
            &browser("https://attacker.example/wp").body,
            "endpoint host not allowed (SSRF)",
        ),
        (
            "/api/devices/a",
            r#"{"platform":"webpush","endpoint":"http://127.0.0.1:9/x","keys":{"p256dh":"AAAA","auth":"AAAAAAAAAAAAAAAAAAAAAA"}}"#,
            "not a P-256 key",
        ),
        ("/api/devices/a", "not json", "not JSON"),
    ] {
        let (s, v) = put(&gw, "u", path, body).await;
        assert_eq!(s, 400, "{why}: {v}");
        assert!(
            v["error"]["message"].is_string(),
            "{why}: a clear error: {v}"
        );
    }
    assert_eq!(put(&gw, "u", "/api/devices/one", &ok.body).await.0, 200);
    // The same subscription again under another id replaces it.
    assert_eq!(put(&gw, "u", "/api/devices/two", &ok.body).await.0, 200);
    let (_, list, _) = get(&gw, "u", "/api/devices").await;
    assert_eq!(list["devices"].as_array().unwrap().len(), 1, "{list}");
    assert!(!list.to_string().contains("p256dh") && !list.to_string().contains(&ok.body[60..80]));
    assert_eq!(
        put(
            &gw,
            "u",
            "/api/devices/three",
            r#"{"platform":"fcm","token":"t3"}"#
        )
        .await
        .0,
        200
    );
    let (s, v) = put(
        &gw,
        "u",
        "/api/devices/four",
        r#"{"platform":"fcm","token":"t4"}"#,
    )
    .await;
    assert_eq!(s, 400, "over --push-max-devices: {v}");
    assert_eq!(
        put(
            &gw,
            "u",
            "/api/devices/three",
            r#"{"platform":"fcm","token":"t3b"}"#
        )
        .await
        .0,
        200,
        "replacing one of mine is fine at the cap"
    );
    assert_eq!(delete(&gw, "u", "/api/devices/three").await.0, 204);
    assert_eq!(delete(&gw, "u", "/api/devices/three").await.0, 404);
    let (_, other, _) = get(&gw, "v", "/api/devices").await;
    assert_eq!(other["devices"], json!([]), "devices are per user");
    // Muting needs the conversation to be mine.
    let conv = direct(&gw, "b", "s", "l").await;
    let (s, _) = put(
        &gw,
        "u",
        &format!("/api/conversations/{conv}/mute"),
        r#"{"muted":true}"#,
    )
    .await;
    assert!(s == 403 || s == 404, "{s}");
    let (s, v) = put(
        &gw,
        "b",
        &format!("/api/conversations/{conv}/mute"),
        r#"{"muted":true,"forSecs":60}"#,
    )
    .await;
    assert_eq!(s, 200);
    assert!(v["until"].is_string(), "{v}");
    let (_, v, _) = get(&gw, "b", &format!("/api/conversations/{conv}/mute")).await;
    assert_eq!(v["muted"], true);
    // The protocol's Mute: the same rules.
    let mut u = Client::connect(&gw, "u").await;
    let refused = u.request(mute(conv, true, 0)).await;
    assert!(
        matches!(error_code(&refused), Some(1200 | 1201)),
        "not mine: {refused:?}"
    );
    let mut b = Client::connect(&gw, "b").await;
    let past = b.request(mute(conv, true, wall_ms() - 1)).await;
    assert_eq!(error_code(&past), Some(1300), "a past time: {past:?}");
    let until = wall_ms() + 3_600_000;
    let acked = b.request(mute(conv, true, until)).await;
    assert!(
        matches!(acked.body, ServerBody::Ack(ref a) if a.created_at_ms == until),
        "{acked:?}"
    );
    let (_, v, _) = get(&gw, "b", &format!("/api/conversations/{conv}/mute")).await;
    assert!(v["until"].is_string(), "{v}");
    let acked = b.request(mute(conv, false, until)).await;
    assert!(matches!(acked.body, ServerBody::Ack(_)), "{acked:?}");
    let (_, v, _) = get(&gw, "b", &format!("/api/conversations/{conv}/mute")).await;
    assert_eq!(v["muted"], false, "unmuted over the protocol: {v}");
    // Off: clear errors.
    let off = Gateway::start(&["--push", "false"]);
    let (s, v, _) = get(&off, "u", "/api/devices").await;
    assert_eq!(s, 501, "{v}");
    let conv = direct(&off, "b", "s", "l").await;
    let mut b = Client::connect(&off, "b").await;
    let off_mute = b.request(mute(conv, true, 0)).await;
    assert_eq!(error_code(&off_mute), Some(1602), "{off_mute:?}");
}

/// The protocol's Mute (1.5).
fn mute(conversation: ConversationId, muted: bool, until_ms: i64) -> parley_proto::ClientBody {
    parley_proto::ClientBody::Mute {
        conversation,
        muted,
        until_ms,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apns_requests_are_http2_with_a_provider_token() {
    let mut fake = Fake::start_h2().await;
    let manifest = env!("CARGO_MANIFEST_DIR");
    let key = format!("{manifest}/tests/push/apns-test-key.p8");
    let url = format!("http://{}", fake.addr);
    let gw = push_gateway(
        "200",
        &[
            "--push-apns-key-file",
            &key,
            "--push-apns-key-id",
            "ABC123DEFG",
            "--push-apns-team-id",
            "TEAM123456",
            "--push-apns-url",
            &url,
        ],
    );
    let token = "0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9";
    let body = json!({"platform": "apns", "token": token, "topic": "com.example.market"});
    assert_eq!(
        put(&gw, "seller", "/api/devices/iphone", &body.to_string())
            .await
            .0,
        200
    );
    let stale = json!({"platform": "apns", "token": "ff00", "topic": "com.example.market"});
    assert_eq!(
        put(&gw, "seller", "/api/devices/old-iphone", &stale.to_string())
            .await
            .0,
        200
    );
    fake.answer("/3/device/ff00", &[(400, None)]);
    let conv = direct(&gw, "buyer", "seller", "l5").await;
    send(&gw, "buyer", conv, "a", "hi").await;
    let last = send(&gw, "buyer", conv, "b", "there").await;
    let mut seen = HashMap::new();
    for _ in 0..2 {
        let s = fake.next().await;
        seen.insert(s.path.clone(), s);
    }
    let push = &seen[&format!("/3/device/{token}")];
    assert_eq!(push.version, hyper::Version::HTTP_2);
    let h = &push.headers;
    assert_eq!(h["apns-topic"], "com.example.market");
    assert_eq!(h["apns-push-type"], "alert");
    assert_eq!(h["apns-priority"], "10");
    assert!(h["apns-collapse-id"].len() <= 64);
    let expiration: u64 = h["apns-expiration"].to_str().unwrap().parse().unwrap();
    assert!(expiration > (wall_ms() / 1000) as u64);
    let bearer = h["authorization"]
        .to_str()
        .unwrap()
        .strip_prefix("bearer ")
        .unwrap();
    let public = std::fs::read(format!("{manifest}/tests/push/apns-test-key.pub.pem")).unwrap();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
    validation.required_spec_claims.clear();
    validation.validate_exp = false;
    let decoded = jsonwebtoken::decode::<Value>(
        bearer,
        &jsonwebtoken::DecodingKey::from_ec_pem(&public).unwrap(),
        &validation,
    )
    .expect("an ES256 provider token from the .p8 key");
    assert_eq!(decoded.header.kid.as_deref(), Some("ABC123DEFG"));
    assert_eq!(decoded.claims["iss"], "TEAM123456");
    assert!(decoded.claims["iat"].is_u64());
    let payload: Value = serde_json::from_slice(&push.body).unwrap();
    assert_eq!(payload["aps"]["badge"], 2, "{payload}");
    assert_eq!(
        payload["aps"]["alert"]["body"], "2 new messages",
        "no text by default"
    );
    assert_eq!(payload["aps"]["thread-id"], conv.to_string());
    assert_eq!(payload["parley"]["count"], 2);
    // A token APNs calls bad is removed.
    metric_reaches(&gw, "parley_push_devices_removed_total", 1.0).await;
    let (_, devices, _) = get(&gw, "seller", "/api/devices").await;
    assert_eq!(devices["devices"].as_array().unwrap().len(), 1, "{devices}");
    assert_eq!(devices["devices"][0]["id"], "iphone");
    // Read on the web: the phone gets a background push with the badge, nothing shown.
    read(&gw, "seller", conv, &last).await;
    let update = fake.next().await;
    assert_eq!(update.path, format!("/3/device/{token}"));
    let h = &update.headers;
    assert_eq!(h["apns-push-type"], "background");
    assert_eq!(
        h["apns-priority"], "5",
        "Apple requires 5 for background pushes"
    );
    assert!(h.get("apns-collapse-id").is_none());
    let payload: Value = serde_json::from_slice(&update.body).unwrap();
    assert_eq!(
        payload["aps"],
        json!({"badge": 0, "content-available": 1}),
        "no alert, no sound: {payload}"
    );
    assert_eq!(payload["parley"]["type"], "read");
    assert_eq!(payload["parley"]["conversationId"], conv.to_string());
    metric_reaches(&gw, "parley_push_read_updates_total{result=\"sent\"}", 1.0).await;
}

/// Marks `conv` read up to the message REST sent (`sent`, its JSON).
async fn read(gw: &Gateway, user: &str, conv: ConversationId, sent: &Value) {
    let (s, v, _) = post(
        gw,
        user,
        &format!("/api/conversations/{conv}/read"),
        &json!({ "upTo": sent["id"] }).to_string(),
    )
    .await;
    assert_eq!(s, 200, "{v}");
}

/// A notification a push showed is cleared once its conversation is read on another device:
/// a silent Web Push (urgency normal, the same Topic) with the badge — once per notification,
/// and only when the read covers what it showed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_elsewhere_clears_the_notification_with_a_silent_update() {
    let mut fake = Fake::start().await;
    let gw = push_gateway("300", &[]);
    let b = browser(&format!("http://{}/wp/phone", fake.addr));
    assert_eq!(
        put(&gw, "seller", "/api/devices/phone", &b.body).await.0,
        200
    );
    let conv = direct(&gw, "buyer", "seller", "bike").await;
    let other = direct(&gw, "buyer2", "seller", "bike").await;
    let one = send(&gw, "buyer", conv, "a", "one").await;
    let two = send(&gw, "buyer", conv, "b", "two").await;
    let shown = fake.next().await;
    let (payload, _) = open(&b, &shown);
    assert_eq!(
        (payload["seq"].clone(), payload["count"].clone()),
        (json!(2), json!(2))
    );
    send(&gw, "buyer2", other, "c", "elsewhere").await;
    let (elsewhere, _) = open(&b, &fake.next().await);
    assert_eq!(elsewhere["conversationId"], other.to_string());
    // Read up to one: the notification shows two, still unread: nothing.
    read(&gw, "seller", conv, &one).await;
    metric_reaches(
        &gw,
        "parley_push_read_updates_total{result=\"still_unread\"}",
        1.0,
    )
    .await;
    assert!(fake.nothing_yet());
    // Read up to two (on the laptop): the phone's notification is cleared, silently.
    read(&gw, "seller", conv, &two).await;
    let update = fake.next().await;
    assert_eq!(update.path, "/wp/phone");
    assert_eq!(update.headers["urgency"], "normal");
    assert_eq!(
        update.headers["topic"], shown.headers["topic"],
        "the same collapse key: one still waiting at the service is replaced"
    );
    let (payload, _) = open(&b, &update);
    assert_eq!(
        payload,
        json!({"type": "read", "conversationId": conv.to_string(), "seq": 2, "unread": 1}),
        "the badge counts the other conversation's unread message"
    );
    metric_reaches(&gw, "parley_push_read_updates_total{result=\"sent\"}", 1.0).await;
    // The next message is pushed as before, and its read clears it again: the next two
    // requests, nothing else in between.
    let three = send(&gw, "buyer", conv, "d", "three").await;
    let (payload, _) = open(&b, &fake.next().await);
    assert_eq!(
        (payload["type"].clone(), payload["seq"].clone()),
        (json!("message"), json!(3))
    );
    read(&gw, "seller", conv, &three).await;
    let (payload, _) = open(&b, &fake.next().await);
    assert_eq!(
        (payload["type"].clone(), payload["seq"].clone()),
        (json!("read"), json!(3))
    );
    metric_reaches(&gw, "parley_push_read_updates_total{result=\"sent\"}", 2.0).await;
    // A conversation no push showed anything of: nothing to clear.
    let quiet = direct(&gw, "buyer3", "seller", "bike").await;
    let seller = Client::connect(&gw, "seller").await;
    let m = send(&gw, "buyer3", quiet, "e", "hello").await;
    metric_reaches(&gw, "parley_push_dropped_total{reason=\"online\"}", 1.0).await;
    read(&gw, "seller", quiet, &m).await;
    metric_reaches(
        &gw,
        "parley_push_read_updates_total{result=\"not_shown\"}",
        1.0,
    )
    .await;
    seller.close().await;
    assert!(fake.nothing_yet());
}

/// Two nodes on one Redis and Cassandra: the push queue is the bus's streams read through a
/// consumer group, one node per partition.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_pushes_once_per_window_skips_users_online_elsewhere_and_survives_a_kill() {
    let mut fake = Fake::start().await;
    let redis = RedisServer::start();
    let ks = keyspace();
    let args = [
        "--push-grace-ms",
        "1500",
        "--push-webpush-hosts",
        "127.0.0.1",
        "--redis-partitions",
        "4",
    ];
    let mut n1 = cluster_node(&redis, &ks, 1, &args);
    // Alone, node 1 takes every partition of the queue; node 2 then finds none free.
    metric_reaches(&n1, "parley_push_partitions", 4.0).await;
    let n2 = cluster_node(&redis, &ks, 2, &args);
    let (_, k1, _) = get(&n1, "seller", "/api/push/vapid").await;
    let (_, k2, _) = get(&n2, "seller", "/api/push/vapid").await;
    assert_eq!(
        k1["publicKey"], k2["publicKey"],
        "one VAPID key for the cluster"
    );

    // Registered through node 2, the device is node 1's to push to (storage is shared).
    let b = browser(&format!("http://{}/wp/cluster", fake.addr));
    assert_eq!(put(&n2, "seller", "/api/devices/d", &b.body).await.0, 200);
    let conv = direct(&n1, "buyer", "seller", "lego").await;
    // Sent through both nodes, within one window: one notification.
    send(&n1, "buyer", conv, "m1", "one").await;
    send(&n2, "buyer", conv, "m2", "two").await;
    send(&n1, "buyer", conv, "m3", "three").await;
    let first = fake.next().await;
    let (payload, _) = open(&b, &first);
    assert_eq!(payload["seq"], 3, "{payload}");
    assert_eq!(payload["count"], 3, "coalesced across nodes: {payload}");
    assert_eq!(payload["unread"], 3);
    metric_reaches(&n1, "parley_push_sent_total{provider=\"webpush\"}", 1.0).await;

    // Online on node 2: node 1, which handles the conversation, sends nothing.
    let mut buyer = Client::connect(&n1, "buyer").await;
    let mut seller = Client::connect(&n2, "seller").await;
    send(&n1, "buyer", conv, "m4", "are you there?").await;
    assert_eq!(seller.next_message().await.seq, 4);
    metric_reaches(&n1, "parley_push_dropped_total{reason=\"online\"}", 1.0).await;
    let presence = |online: bool| move |f: &ServerFrame| matches!(&f.body, ServerBody::Presence { user, online: o, .. } if user == "seller" && *o == online);
    buyer.next_where(presence(true)).await;
    seller.close().await;
    // Offline everywhere: told once node 2 counted the close in Redis.
    buyer.next_where(presence(false)).await;
    buyer.close().await;

    // Node 1 is killed while the next push waits out its grace: node 2 takes the partitions
    // over once the leases lapse and sends it, once.
    send(&n2, "buyer", conv, "m5", "still for sale?").await;
    assert!(fake.nothing_yet(), "the grace has not passed");
    n1.kill9();
    let taken_over = fake.next().await;
    let (payload, _) = open(&b, &taken_over);
    assert_eq!(payload["seq"], 5, "{payload}");
    metric_reaches(&n2, "parley_push_partitions", 4.0).await;
    metric_reaches(&n2, "parley_push_sent_total{provider=\"webpush\"}", 1.0).await;
    send(&n2, "buyer", conv, "m6", "hello?").await;
    let next = fake.next().await;
    let (payload, _) = open(&b, &next);
    assert_eq!(payload["seq"], 6, "nothing was pushed twice: {payload}");
}
