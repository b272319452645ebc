//! The web chat page embedded from `web/dist` (headers, revalidation, HEAD, `--web-page`) and
//! the development sign-in (`/api/dev/token`: only with the development secret).

use bytes::Bytes;
use serde_json::Value;

use crate::support::*;

const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
    img-src 'self' data: blob: http: https:; connect-src 'self' ws: wss:; object-src 'none'; \
    base-uri 'none'; frame-ancestors *";

/// A file of `web/dist` as this build saw it (the gateway binary embedded the same bytes, in
/// the same cargo run; reading it now could race a rebuild of the web client).
fn dist(file: &str) -> &'static [u8] {
    match file {
        "index.html" => include_bytes!("../../../web/dist/index.html"),
        "assets/app.js" => include_bytes!("../../../web/dist/assets/app.js"),
        "assets/app.css" => include_bytes!("../../../web/dist/assets/app.css"),
        _ => panic!("{file} is not embedded"),
    }
}

fn header<'a>(h: &'a hyper::HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).map(|v| v.to_str().unwrap())
}

async fn fetch(
    gw: &Gateway,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, hyper::HeaderMap, Bytes) {
    request(gw.addr, method, path, None, Bytes::new(), headers, WAIT).await
}

#[tokio::test]
async fn the_page_and_its_assets_are_served_from_web_dist_with_their_headers() {
    let gw = Gateway::start(&[]);
    for (path, file, ty) in [
        ("/", "index.html", "text/html; charset=utf-8"),
        ("/index.html", "index.html", "text/html; charset=utf-8"),
        (
            "/assets/app.js",
            "assets/app.js",
            "text/javascript; charset=utf-8",
        ),
        (
            "/assets/app.css",
            "assets/app.css",
            "text/css; charset=utf-8",
        ),
    ] {
        let (status, h, body) = fetch(&gw, "GET", path, &[]).await;
        assert_eq!(status, 200, "{path}");
        assert_eq!(body.as_ref(), dist(file), "{path}: the bytes of {file}");
        assert_eq!(header(&h, "content-type"), Some(ty), "{path}");
        assert_eq!(header(&h, "cache-control"), Some("no-cache"), "{path}");
        assert_eq!(
            header(&h, "x-content-type-options"),
            Some("nosniff"),
            "{path}"
        );
        assert_eq!(header(&h, "referrer-policy"), Some("no-referrer"), "{path}");
        let csp = header(&h, "content-security-policy");
        if file == "index.html" {
            assert_eq!(csp, Some(CSP), "{path}");
        } else {
            assert_eq!(csp, None, "{path}: the CSP is the page's");
        }
        let etag = header(&h, "etag").expect("an ETag").to_owned();
        assert!(
            etag.starts_with('"') && etag.ends_with('"') && etag.len() > 2,
            "{path}: a strong ETag, got {etag}"
        );

        // Revalidation: the same tag (also weak, or in a list) → 304 without a body.
        for tag in [
            etag.clone(),
            format!("W/{etag}"),
            format!("\"other\", {etag}"),
        ] {
            let (status, h304, body) = fetch(&gw, "GET", path, &[("if-none-match", &tag)]).await;
            assert_eq!(status, 304, "{path} If-None-Match {tag}");
            assert!(body.is_empty());
            assert_eq!(header(&h304, "etag"), Some(etag.as_str()));
            assert_eq!(header(&h304, "cache-control"), Some("no-cache"));
        }
        let (status, _, body) = fetch(&gw, "GET", path, &[("if-none-match", "\"not-it\"")]).await;
        assert_eq!(status, 200, "{path}: another tag gets the bytes");
        assert_eq!(body.as_ref(), dist(file));

        // HEAD: the same headers, no body.
        let (status, head, body) = fetch(&gw, "HEAD", path, &[]).await;
        assert_eq!(status, 200, "HEAD {path}");
        assert!(body.is_empty(), "HEAD {path}");
        assert_eq!(header(&head, "etag"), Some(etag.as_str()));
        assert_eq!(header(&head, "content-type"), Some(ty));
        let len = dist(file).len().to_string();
        assert_eq!(header(&head, "content-length"), Some(len.as_str()));
    }
    // Nothing else is served from there, and the page is read-only.
    for (method, path) in [
        ("GET", "/assets/other.js"),
        ("GET", "/index.htm"),
        ("POST", "/"),
        ("DELETE", "/assets/app.js"),
    ] {
        let (status, json, _) = http(gw.addr, method, path, None, None, &[]).await;
        assert_eq!(status, 404, "{method} {path}");
        assert_eq!(json["error"]["code"], "not_found");
    }
}

#[tokio::test]
async fn with_web_page_false_the_page_is_not_served() {
    let gw = Gateway::start(&["--web-page", "false"]);
    for path in ["/", "/index.html", "/assets/app.js", "/assets/app.css"] {
        let (status, json, _) = http(gw.addr, "GET", path, None, None, &[]).await;
        assert_eq!(status, 404, "{path}");
        assert_eq!(json["error"]["code"], "not_found", "{path}");
    }
    let (status, _, _) = http(gw.addr, "GET", "/healthz", None, None, &[]).await;
    assert_eq!(status, 200, "the rest still serves");
}

/// POST /api/dev/token as `user_id`; status and JSON.
async fn sign_in(gw: &Gateway, body: &str) -> (u16, Value) {
    let (status, json, h) = http(gw.addr, "POST", "/api/dev/token", None, Some(body), &[]).await;
    if status == 200 || status == 400 {
        assert_eq!(header(&h, "content-type"), Some("application/json"));
    }
    (status, json)
}

#[tokio::test]
async fn the_dev_sign_in_mints_tokens_that_rest_and_websocket_sessions_accept() {
    let gw = Gateway::start_dev(&[]);
    let (status, json, _) = http(gw.addr, "GET", "/api/dev/token", None, None, &[]).await;
    assert_eq!(
        (status, json),
        (200, serde_json::json!({ "enabled": true }))
    );

    let before = wall_ms();
    let (status, json) = sign_in(&gw, r#"{"userId":"alice"}"#).await;
    assert_eq!(status, 200, "{json}");
    assert_eq!(json["userId"], "alice");
    let token = json["token"].as_str().expect("a token").to_owned();
    let expires = json["expiresAt"].as_i64().expect("expiresAt, Unix ms");
    let day = 24 * 3600 * 1000;
    assert!(
        (before + day - 1000..=wall_ms() + day).contains(&expires),
        "24 h from now, got {expires} (now {before})"
    );
    assert_eq!(json.as_object().unwrap().len(), 3, "{json}");

    // REST takes it.
    let (status, json, _) = http(
        gw.addr,
        "GET",
        "/api/conversations",
        Some(&token),
        None,
        &[],
    )
    .await;
    assert_eq!(status, 200, "{json}");
    assert!(json["conversations"].is_array(), "{json}");
    // A token of another secret does not work here: the node uses its development secret.
    let (status, _, _) = get(&gw, "alice", "/api/conversations").await;
    assert_eq!(status, 401);

    // So does a WebSocket session, and it knows the expiry.
    let mut c = Client::unauthenticated(gw.addr, "alice").await;
    let welcome = c.hello_with_token(token.clone()).await;
    assert_eq!(welcome.user, "alice");
    assert_eq!(welcome.token_expires_ms, expires);
    let r = c.request(parley_proto::ClientBody::Ping { nonce: 9 }).await;
    assert!(matches!(
        r.body,
        parley_proto::ServerBody::Pong { nonce: 9, .. }
    ));
    c.close().await;

    // Two users can talk with their development tokens.
    let (_, bob) = sign_in(&gw, r#"{"userId":"bob"}"#).await;
    let bob = bob["token"].as_str().unwrap().to_owned();
    let (status, conv, _) = http(
        gw.addr,
        "POST",
        "/api/conversations",
        Some(&token),
        Some(r#"{"sellerId":"bob","listingId":"42"}"#),
        &[],
    )
    .await;
    assert_eq!(status, 201, "{conv}");
    let path = format!("/api/conversations/{}", conv["id"].as_str().unwrap());
    let (status, _, _) = http(gw.addr, "GET", &path, Some(&bob), None, &[]).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn the_dev_sign_in_refuses_ids_that_are_not_user_ids() {
    let gw = Gateway::start_dev(&[]);
    let long = "a".repeat(200);
    let bodies = [
        serde_json::json!({ "userId": "" }).to_string(),
        serde_json::json!({ "userId": long }).to_string(),
        serde_json::json!({ "userId": "ali\u{7}ce" }).to_string(),
        serde_json::json!({ "userId": "ali\u{200B}ce" }).to_string(),
        serde_json::json!({ "userId": " alice" }).to_string(),
        serde_json::json!({ "userId": 42 }).to_string(),
        serde_json::json!({}).to_string(),
        serde_json::json!({ "userId": "alice", "role": "admin" }).to_string(),
        "not json".to_owned(),
    ];
    for body in &bodies {
        let (status, json) = sign_in(&gw, body).await;
        assert_eq!(status, 400, "{body}: {json}");
        assert_eq!(json["error"]["code"], "invalid", "{body}: {json}");
        assert!(json["error"]["message"].is_string(), "{json}");
    }
    // The longest id there may be (128 bytes) is one.
    let (status, json) = sign_in(
        &gw,
        &serde_json::json!({ "userId": "b".repeat(128) }).to_string(),
    )
    .await;
    assert_eq!(status, 200, "{json}");
}

#[tokio::test]
async fn a_dev_token_keeps_to_the_lifetime_cap_and_carries_issuer_and_audience() {
    let gw = Gateway::start_dev(&[
        "--jwt-max-lifetime-s",
        "3600",
        "--jwt-issuer",
        "market",
        "--jwt-audience",
        "chat",
    ]);
    let before = wall_ms();
    let (status, json) = sign_in(&gw, r#"{"userId":"carol"}"#).await;
    assert_eq!(status, 200, "{json}");
    let expires = json["expiresAt"].as_i64().unwrap();
    let hour = 3_600_000;
    assert!(
        (before + hour - 1000..=wall_ms() + hour).contains(&expires),
        "an hour (the cap), got {expires}"
    );
    let token = json["token"].as_str().unwrap();
    let (status, json, _) = http(gw.addr, "GET", "/api/unread", Some(token), None, &[]).await;
    assert_eq!(status, 200, "accepted with iss and aud required: {json}");
}

#[tokio::test]
async fn with_a_jwt_secret_the_dev_sign_in_does_not_exist() {
    let gw = Gateway::start(&[]);
    let unknown = get(&gw, "alice", "/api/no-such-route").await;
    assert_eq!(unknown.0, 404);
    for (method, token) in [
        ("GET", None),
        ("POST", None),
        ("GET", Some(token("alice"))),
        ("POST", Some(token("alice"))),
    ] {
        let body = (method == "POST").then_some(r#"{"userId":"alice"}"#);
        let (status, json, _) = http(
            gw.addr,
            method,
            "/api/dev/token",
            token.as_deref(),
            body,
            &[],
        )
        .await;
        assert_eq!(status, 404, "{method} with token {}", token.is_some());
        assert_eq!(json, unknown.1, "exactly as an unknown route");
    }
    // The page itself is there, without a sign-in behind it.
    let (status, _, _) = fetch(&gw, "GET", "/", &[]).await;
    assert_eq!(status, 200);
}
