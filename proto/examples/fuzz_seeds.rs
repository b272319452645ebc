//! Writes the fuzz targets' seed inputs (`fuzz/seeds/<target>/`): one valid input per frame
//! kind and shape, so the fuzzers start from inputs that get past the first checks.
//!
//!   cargo run -p parley-proto --features client,server,token --example fuzz_seeds -- fuzz/seeds

use std::path::Path;

use parley_proto::codec::client::encode_client;
use parley_proto::codec::server::encode_server;
use parley_proto::framing::put_frame;
use parley_proto::*;
use parley_types::{ConversationId, MediaRef, Message, MessageId, MessageKind};

/// The fuzz harness's secret and wall clock (`gateway::fuzzing`).
const SECRET: &[u8] = b"fuzz-secret-0123456789abcdef";
const WALL_MS: i64 = 1_800_000_000_000;

fn client_bodies(c: ConversationId) -> Vec<ClientBody> {
    let media = MediaRef {
        url: "https://cdn.example/a.jpg".into(),
        mime_type: "image/jpeg".into(),
        size_bytes: 1234,
        name: "a.jpg".into(),
        width: 640,
        height: 480,
        id: "0190f0f0-0000-7000-8000-000000000001".into(),
        ..MediaRef::default()
    };
    vec![
        ClientBody::Hello(Hello {
            token: token::mint_hs256(SECRET, "alice", 3600, WALL_MS),
            protocol_major: 1,
            protocol_minor: 2,
            resume: vec![ResumePoint {
                conversation: c,
                last_message_id: MessageId(9),
                last_seq: 3,
            }],
            client_name: Some("ios/1.0".into()),
        }),
        ClientBody::Join { conversation: c },
        ClientBody::Leave { conversation: c },
        ClientBody::Send(SendMessage {
            conversation: c,
            client_msg_id: "k1".into(),
            kind: MessageKind::Text,
            content: "hello ✓".into(),
            media: None,
        }),
        ClientBody::Send(SendMessage {
            conversation: c,
            client_msg_id: "k2".into(),
            kind: MessageKind::Image,
            content: String::new(),
            media: Some(media),
        }),
        ClientBody::Typing {
            conversation: c,
            active: true,
        },
        ClientBody::Read {
            conversation: c,
            up_to: MessageId(5),
        },
        ClientBody::History {
            conversation: c,
            before: Some(MessageId(3)),
            limit: 20,
        },
        ClientBody::Conversations {
            cursor: Some("1_abc".into()),
            limit: 10,
            query: Some("lego cas".into()),
        },
        ClientBody::Search(parley_proto::SearchQuery {
            query: "\"pay me\" out".into(),
            conversation: Some(c),
            before: Some(MessageId(9)),
            limit: 20,
            by_relevance: true,
            offset: 20,
        }),
        ClientBody::Ping { nonce: 42 },
        ClientBody::Refresh {
            token: token::mint_hs256(SECRET, "alice", 7200, WALL_MS),
        },
        ClientBody::Mute {
            conversation: c,
            muted: true,
            until_ms: 0,
        },
    ]
}

fn write(dir: &Path, target: &str, name: &str, bytes: &[u8]) {
    let d = dir.join(target);
    std::fs::create_dir_all(&d).expect("create seed dir");
    std::fs::write(d.join(name), bytes).expect("write seed");
}

/// A masked WebSocket frame, as a client sends it.
fn ws_frame(opcode: u8, fin: bool, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![opcode | if fin { 0x80 } else { 0 }];
    match payload.len() {
        n if n < 126 => f.push(0x80 | n as u8),
        n => {
            f.push(0x80 | 126);
            f.extend((n as u16).to_be_bytes());
        }
    }
    let mask = [0x11, 0x22, 0x33, 0x44];
    f.extend(mask);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    f
}

fn main() {
    let dir = std::env::args().nth(1).expect("usage: fuzz_seeds <dir>");
    let dir = Path::new(&dir);
    let c: ConversationId = "0b1e6f0e-58a8-4d5e-9a3b-6f2d2c1e9a10".parse().expect("id");
    let mut session = vec![0u8];
    let mut quic = vec![7u8];
    let mut ws = Vec::new();
    for (i, body) in client_bodies(c).into_iter().enumerate() {
        let name = format!("{:02}-{:?}", i, body.kind()).to_lowercase();
        let bytes = encode_client(&ClientFrame {
            seq: i as u32 + 1,
            body,
        });
        write(dir, "client_frame", &name, &bytes);
        if i > 0 {
            session.extend((bytes.len() as u16).to_be_bytes());
            session.extend_from_slice(&bytes);
        }
        put_frame(&mut quic, &bytes);
        ws.extend(ws_frame(0x2, true, &bytes));
    }
    write(dir, "session", "all-kinds", &session);
    write(dir, "quic_framing", "all-kinds", &quic);
    ws.extend(ws_frame(0x9, true, b"ping"));
    ws.extend(ws_frame(0x1, false, "fragmented ".as_bytes()));
    ws.extend(ws_frame(0x0, true, "text ✓".as_bytes()));
    ws.extend(ws_frame(0x8, true, &1000u16.to_be_bytes()));
    write(dir, "ws_frames", "all-kinds", &ws);

    let message = Message {
        id: MessageId(77),
        conversation: c,
        sender: "alice".into(),
        kind: MessageKind::Text,
        content: "caption ✓".into(),
        media: None,
        client_msg_id: "c-1".into(),
        created_at_ms: WALL_MS,
        seq: 5,
        visibility: Default::default(),
    };
    let server = [
        ServerBody::MessageNew(message),
        ServerBody::Pong {
            nonce: 1,
            server_time_ms: WALL_MS,
        },
        ServerBody::Resumed {
            conversation: c,
            replayed: 3,
            complete: true,
            last_seq: 8,
        },
        ServerBody::Error {
            code: 1300,
            message: "invalid".into(),
            fatal: false,
        },
    ];
    for (i, body) in server.into_iter().enumerate() {
        let name = format!("{i:02}-{:?}", body.kind()).to_lowercase();
        write(
            dir,
            "server_frame",
            &name,
            &encode_server(&ServerFrame::new(1, body)),
        );
    }

    let rest = [
        format!(
            "/api/conversations/{c}/messages?limit=5&beforeSeq=3\n{{\"content\":\"hi\",\"clientMsgId\":\"k\",\"type\":\"image\",\"media\":{{\"url\":\"https://x/a.jpg\",\"mimeType\":\"image/jpeg\",\"sizeBytes\":3,\"width\":1,\"height\":2}}}}"
        ),
        "/api/conversations?cursor=1_abc&limit=20\n{\"sellerId\":\"bob\",\"listingId\":\"l-1\"}"
            .to_owned(),
        "/api/conversations\n{\"participantIds\":[\"a\",\"b\"],\"title\":\"Family 👨‍👩‍👧\"}".to_owned(),
        format!("/api/conversations/{c}/read\n{{\"upTo\":\"123\"}}"),
        "/api/blocks/bob%2F%C3%BC\n{\"userId\":\"bob smith\"}".to_owned(),
        format!(
            "/api/reports\n{{\"userId\":\"mallory\",\"conversationId\":\"{c}\",\"messageId\":7,\"reason\":\"spam\"}}"
        ),
    ];
    for (i, r) in rest.iter().enumerate() {
        write(dir, "rest", &format!("{i:02}"), r.as_bytes());
    }
    let good = token::mint_hs256(SECRET, "alice", 3600, WALL_MS);
    write(dir, "token", "hs256", good.as_bytes());
    let claims = format!(
        "{{\"sub\":\"alice\",\"iss\":\"market\",\"aud\":[\"chat\"],\"iat\":{0},\"nbf\":{0},\"exp\":{1}}}",
        WALL_MS / 1000,
        WALL_MS / 1000 + 3600
    );
    write(dir, "token", "claims", claims.as_bytes());
}
