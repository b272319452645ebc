//! Every limit and every bad-input path, end to end: each gets a clear error, nothing panics,
//! and the gateway keeps serving others.

use std::time::Duration;

use crate::support::*;
use parley_client::token::mint_hs256;
use parley_proto::codec::client::encode_client;
use parley_proto::*;
use parley_types::{ConversationId, MessageKind};

fn hello_with(token: String, major: u16) -> ClientBody {
    ClientBody::Hello(Hello {
        token,
        protocol_major: major,
        protocol_minor: 0,
        resume: vec![],
        client_name: None,
    })
}

/// The gateway still serves a fresh client after whatever a test threw at it.
async fn still_serving(gw: &Gateway) {
    let mut c = Client::connect(gw, "canary").await;
    let r = c.request(ClientBody::Ping { nonce: 7 }).await;
    assert!(matches!(r.body, ServerBody::Pong { nonce: 7, .. }));
}

#[tokio::test]
async fn frames_before_hello_and_bad_tokens_are_refused_with_codes() {
    let gw = Gateway::start(&[]);
    let mut c = Client::unauthenticated(gw.addr, "x").await;
    c.send(ClientBody::Ping { nonce: 1 }).await;
    let closed = c.closed().await;
    assert_eq!((closed.error, closed.code), (Some(1002), Some(4002)));

    let mut c = Client::unauthenticated(gw.addr, "x").await;
    let forged = mint_hs256(b"not-the-gateway-secret", "alice", 60, wall_ms());
    c.send(hello_with(forged, 1)).await;
    let closed = c.closed().await;
    assert_eq!((closed.error, closed.code), (Some(1100), Some(4100)));

    let mut c = Client::unauthenticated(gw.addr, "x").await;
    let expired = mint_hs256(SECRET.as_bytes(), "alice", 1, wall_ms() - 10_000);
    c.send(hello_with(expired, 1)).await;
    let closed = c.closed().await;
    assert_eq!((closed.error, closed.code), (Some(1101), Some(4101)));

    let mut c = Client::unauthenticated(gw.addr, "x").await;
    c.send(hello_with(token("alice"), 9)).await;
    let closed = c.closed().await;
    assert_eq!((closed.error, closed.code), (Some(1001), Some(4001)));

    let mut c = Client::connect(&gw, "alice").await;
    let r = c.request(hello_with(token("bob"), 1)).await;
    assert_eq!(error_code(&r), Some(1003));
    still_serving(&gw).await;
}

#[tokio::test]
async fn malformed_frames_get_errors_then_a_close() {
    let gw = Gateway::start(&[]);
    let mut c = Client::connect(&gw, "alice").await;
    for i in 0..5 {
        if i % 2 == 0 {
            c.ws_frame(true, OpCode::Binary, b"\x00\x01garbage").await;
        } else {
            // A text message is not a protocol frame either.
            c.ws_frame(true, OpCode::Text, b"hello").await;
        }
        let f = c.next().await;
        assert_eq!(error_code(&f), Some(1000), "{f:?}");
        assert_eq!(f.seq, 0);
    }
    // The session still works between bad frames...
    let r = c.request(ClientBody::Ping { nonce: 1 }).await;
    assert!(matches!(r.body, ServerBody::Pong { .. }));
    // ...until one too many.
    c.send_bytes(b"\xff\xff\xff\xff").await;
    let closed = c.closed().await;
    assert_eq!((closed.error, closed.code), (Some(1005), Some(4005)));
    still_serving(&gw).await;
}

#[tokio::test]
async fn invalid_utf8_inside_a_frame_is_a_bad_frame() {
    let gw = Gateway::start(&[]);
    let conv = direct(&gw, "alice", "bob", "l").await;
    let mut c = Client::connect(&gw, "alice").await;
    let mut bytes = encode_client(&ClientFrame {
        seq: 5,
        body: send_text(conv, "id", "héllo"),
    })
    .to_vec();
    let at = bytes.windows(2).position(|w| w == "é".as_bytes()).unwrap();
    bytes[at + 1] = 0xff;
    c.send_bytes(&bytes).await;
    let f = c.next().await;
    assert_eq!(error_code(&f), Some(1000));
    still_serving(&gw).await;
}

#[tokio::test]
async fn oversized_frames_are_refused_before_they_are_read() {
    let gw = Gateway::start(&["--max-frame-bytes", "20000"]);
    let mut c = Client::connect(&gw, "alice").await;
    c.send_bytes(&vec![0u8; 20_001]).await;
    let closed = c.closed().await;
    assert_eq!((closed.error, closed.code), (Some(1004), Some(1009)));

    // Fragments that only add up to too much are refused too.
    let mut c = Client::connect(&gw, "alice").await;
    let chunk = vec![0u8; 8_000];
    c.ws_frame(false, OpCode::Binary, &chunk).await;
    c.ws_frame(false, OpCode::Continuation, &chunk).await;
    c.ws_frame(true, OpCode::Continuation, &chunk).await;
    let closed = c.closed().await;
    assert_eq!((closed.error, closed.code), (Some(1004), Some(1009)));
    still_serving(&gw).await;
}

#[tokio::test]
async fn fragmented_frames_within_the_limit_are_assembled() {
    let gw = Gateway::start(&[]);
    let mut c = Client::connect(&gw, "alice").await;
    let bytes = encode_client(&ClientFrame {
        seq: 42,
        body: ClientBody::Ping { nonce: 3 },
    });
    let (a, b) = bytes.split_at(bytes.len() / 2);
    c.ws_frame(false, OpCode::Binary, a).await;
    c.ws_frame(true, OpCode::Ping, b"in-between").await;
    c.ws_frame(true, OpCode::Continuation, b).await;
    let f = c.next().await;
    assert_eq!(f.seq, 42);
    assert!(matches!(f.body, ServerBody::Pong { nonce: 3, .. }));
}

#[tokio::test]
async fn message_length_and_fields_are_checked() {
    let gw = Gateway::start(&[]);
    let conv = direct(&gw, "alice", "bob", "l").await;
    let mut c = Client::connect(&gw, "alice").await;
    let r = c.request(send_text(conv, "long", &"é".repeat(4001))).await;
    assert_eq!(error_code(&r), Some(1301));
    // 4 000 characters of 2 bytes each are within the limit.
    let ok = c.request(send_text(conv, "max", &"é".repeat(4000))).await;
    assert!(matches!(ok.body, ServerBody::Ack(_)), "{ok:?}");
    let r = c.request(send_text(conv, "empty", "  ")).await;
    assert_eq!(error_code(&r), Some(1300));
    let r = c
        .request(ClientBody::Send(SendMessage {
            conversation: conv,
            client_msg_id: "img".into(),
            kind: MessageKind::Image,
            content: String::new(),
            media: None,
        }))
        .await;
    assert_eq!(error_code(&r), Some(1300));
    let r = c
        .request(ClientBody::Conversations {
            cursor: Some("not-a-cursor".into()),
            limit: 5,
            query: None,
        })
        .await;
    assert_eq!(error_code(&r), Some(1300));
}

#[tokio::test]
async fn unknown_and_foreign_conversations_are_refused() {
    let gw = Gateway::start(&[]);
    let conv = direct(&gw, "alice", "bob", "l").await;
    let mut mallory = Client::connect(&gw, "mallory").await;
    let unknown = ConversationId::random();
    for body in [
        send_text(unknown, "x", "hi"),
        ClientBody::Join {
            conversation: unknown,
        },
        ClientBody::History {
            conversation: unknown,
            before: None,
            limit: 10,
        },
        ClientBody::Read {
            conversation: unknown,
            up_to: parley_types::MessageId(1),
        },
    ] {
        assert_eq!(error_code(&mallory.request(body).await), Some(1200));
    }
    for body in [
        send_text(conv, "x", "hi"),
        ClientBody::Join { conversation: conv },
        ClientBody::History {
            conversation: conv,
            before: None,
            limit: 10,
        },
        ClientBody::Typing {
            conversation: conv,
            active: true,
        },
    ] {
        assert_eq!(error_code(&mallory.request(body).await), Some(1201));
    }
    let (status, json, _) = get(
        &gw,
        "mallory",
        &format!("/api/conversations/{conv}/messages"),
    )
    .await;
    assert_eq!(
        (status, json["error"]["code"].as_str()),
        (403, Some("forbidden"))
    );
}

#[tokio::test]
async fn blocked_users_cannot_message_each_other() {
    let gw = Gateway::start(&[]);
    let conv = direct(&gw, "alice", "bob", "l").await;
    let (status, _, _) = post(&gw, "bob", "/api/blocks", r#"{"userId":"alice"}"#).await;
    assert_eq!(status, 204);
    let mut alice = Client::connect(&gw, "alice").await;
    assert_eq!(
        error_code(&alice.request(send_text(conv, "x", "hi")).await),
        Some(1202)
    );
    let (status, json, _) = post(
        &gw,
        "alice",
        "/api/conversations",
        r#"{"sellerId":"bob","listingId":"other"}"#,
    )
    .await;
    assert_eq!(
        (status, json["error"]["code"].as_str()),
        (403, Some("blocked"))
    );
    let (status, _, _) = delete(&gw, "bob", "/api/blocks/alice").await;
    assert_eq!(status, 204);
    assert!(matches!(
        alice.request(send_text(conv, "y", "hi")).await.body,
        ServerBody::Ack(_)
    ));
    let (status, json, _) = http(
        gw.addr,
        "POST",
        "/api/reports",
        Some(&token("bob")),
        Some(&format!(
            r#"{{"userId":"alice","conversationId":"{conv}","reason":"spam"}}"#
        )),
        &[],
    )
    .await;
    assert_eq!(status, 201, "{json}");
}

#[tokio::test]
async fn send_rate_is_limited_per_user() {
    let gw = Gateway::start(&["--user-messages-per-sec", "1", "--user-message-burst", "3"]);
    let conv = direct(&gw, "alice", "bob", "l").await;
    let mut phone = Client::connect(&gw, "alice").await;
    let mut laptop = Client::connect(&gw, "alice").await;
    let mut codes = Vec::new();
    for i in 0..3 {
        let c = if i % 2 == 0 { &mut phone } else { &mut laptop };
        codes.push(error_code(
            &c.request(send_text(conv, &format!("m{i}"), "hi")).await,
        ));
    }
    assert_eq!(codes, vec![None, None, None]);
    // The bucket is per user, across sessions.
    let r = laptop.request(send_text(conv, "m3", "hi")).await;
    assert_eq!(error_code(&r), Some(1400));
}

#[tokio::test]
async fn hello_and_idle_timeouts_close_silent_connections() {
    let gw = Gateway::start(&[
        "--hello-timeout-ms",
        "300",
        "--heartbeat-ms",
        "1000",
        "--idle-timeout-ms",
        "1500",
    ]);
    let mut silent = Client::unauthenticated(gw.addr, "silent").await;
    let closed = silent.closed().await;
    assert_eq!((closed.error, closed.code), (Some(1006), Some(4006)));

    let mut idle = Client::connect(&gw, "idle").await;
    assert_eq!(idle.welcome().heartbeat_ms, 1000);
    let mut alive = Client::connect(&gw, "alive").await;
    let start = tokio::time::Instant::now();
    let heartbeat = async {
        for _ in 0..4 {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let r = alive.request(ClientBody::Ping { nonce: 0 }).await;
            assert!(matches!(r.body, ServerBody::Pong { .. }));
        }
    };
    let (closed, ()) = tokio::join!(idle.closed(), heartbeat);
    assert_eq!((closed.error, closed.code), (Some(1007), Some(4007)));
    assert!(start.elapsed() >= Duration::from_millis(1400));
}

#[tokio::test]
async fn rest_errors_are_json_with_the_right_status() {
    let gw = Gateway::start(&["--max-body-bytes", "2048"]);
    let conv = direct(&gw, "alice", "bob", "l").await;
    let t = token("alice");
    let code = |json: &serde_json::Value| json["error"]["code"].as_str().unwrap_or("").to_owned();

    let (s, j, _) = http(gw.addr, "GET", "/api/conversations", None, None, &[]).await;
    assert_eq!((s, code(&j)), (401, "auth_failed".into()));
    let (s, j, _) = http(
        gw.addr,
        "GET",
        "/api/conversations",
        Some("nope"),
        None,
        &[],
    )
    .await;
    assert_eq!((s, code(&j)), (401, "auth_failed".into()));
    let (s, j, _) = http(
        gw.addr,
        "POST",
        "/api/conversations",
        Some(&t),
        Some("{not json"),
        &[],
    )
    .await;
    assert_eq!((s, code(&j)), (400, "invalid".into()));
    let (s, j, _) = http(
        gw.addr,
        "POST",
        "/api/conversations",
        Some(&t),
        Some(r#"{"sellerId":"alice","listingId":"l"}"#),
        &[],
    )
    .await;
    assert_eq!((s, code(&j)), (400, "invalid".into()), "{j}");
    let big = format!(r#"{{"content":"{}"}}"#, "a".repeat(4000));
    let path = format!("/api/conversations/{conv}/messages");
    let (s, j, _) = http(gw.addr, "POST", &path, Some(&t), Some(&big), &[]).await;
    assert_eq!((s, code(&j)), (413, "frame_too_large".into()));
    let long = format!(r#"{{"content":"{}"}}"#, "é".repeat(1000));
    let gw2 = Gateway::start(&["--max-message-chars", "999"]);
    let conv2 = direct(&gw2, "alice", "bob", "l").await;
    let path2 = format!("/api/conversations/{conv2}/messages");
    let (s, j, _) = http(gw2.addr, "POST", &path2, Some(&t), Some(&long), &[]).await;
    assert_eq!((s, code(&j)), (400, "message_too_long".into()));
    let (s, j, _) = http(
        gw.addr,
        "GET",
        &format!("/api/conversations/{}", ConversationId::random()),
        Some(&t),
        None,
        &[],
    )
    .await;
    assert_eq!((s, code(&j)), (404, "not_found".into()));
    let (s, j, _) = http(
        gw.addr,
        "GET",
        "/api/conversations/not-a-uuid/messages",
        Some(&t),
        None,
        &[],
    )
    .await;
    assert_eq!((s, code(&j)), (404, "not_found".into()));
    let (s, j, _) = http(
        gw.addr,
        "GET",
        &format!("{path}?limit=abc"),
        Some(&t),
        None,
        &[],
    )
    .await;
    assert_eq!((s, code(&j)), (400, "invalid".into()));
    let (s, j, _) = http(gw.addr, "GET", "/nowhere", None, None, &[]).await;
    assert_eq!((s, code(&j)), (404, "not_found".into()));
    let (s, _, _) = http(gw.addr, "GET", "/healthz", None, None, &[]).await;
    assert_eq!(s, 200);
    let (s, _, _) = http(gw.addr, "GET", "/readyz", None, None, &[]).await;
    assert_eq!(s, 200);
    // The echo endpoint exists only for tests.
    let (s, _, _) = http(gw.addr, "GET", "/test/echo", None, None, &[]).await;
    assert_eq!(s, 404);
}

#[tokio::test]
async fn cors_allows_configured_origins_only() {
    let gw = Gateway::start(&["--client-url", "https://app.example,https://admin.example"]);
    let t = token("alice");
    let (_, _, h) = http(
        gw.addr,
        "GET",
        "/api/conversations",
        Some(&t),
        None,
        &[("origin", "https://app.example")],
    )
    .await;
    assert_eq!(
        h.get("access-control-allow-origin").unwrap(),
        "https://app.example"
    );
    let (_, _, h) = http(
        gw.addr,
        "GET",
        "/api/conversations",
        Some(&t),
        None,
        &[("origin", "https://evil.example")],
    )
    .await;
    assert!(h.get("access-control-allow-origin").is_none());
    let (s, _, h) = http(
        gw.addr,
        "OPTIONS",
        "/api/conversations",
        None,
        None,
        &[("origin", "https://admin.example")],
    )
    .await;
    assert_eq!(s, 204);
    assert_eq!(
        h.get("access-control-allow-origin").unwrap(),
        "https://admin.example"
    );
    assert!(
        h.get("access-control-allow-headers")
            .unwrap()
            .to_str()
            .unwrap()
            .contains("authorization")
    );
}

#[tokio::test]
async fn unmasked_client_frames_are_refused() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let gw = Gateway::start(&[]);
    let mut s = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let req = format!(
        "GET /ws HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        gw.addr
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 1024];
    let mut got = Vec::new();
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = s.read(&mut buf).await.unwrap();
        assert!(n > 0, "closed during the handshake");
        got.extend_from_slice(&buf[..n]);
    }
    assert!(got.starts_with(b"HTTP/1.1 101"));
    // A binary frame without the mask bit.
    s.write_all(&[0x82, 0x03, 1, 2, 3]).await.unwrap();
    let mut reply = Vec::new();
    let _ = tokio::time::timeout(WAIT, s.read_to_end(&mut reply)).await;
    assert!(reply.len() >= 4, "expected a close frame, got {reply:?}");
    assert_eq!(reply[0], 0x88, "a close frame");
    assert_eq!(u16::from_be_bytes([reply[2], reply[3]]), 1002);
}
