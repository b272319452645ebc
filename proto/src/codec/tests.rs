//! Both halves of the codec against each other: every frame round-trips; hostile bytes are
//! errors, never panics.

use parley_types::{
    Conversation, ConversationId, ConversationKind, ConversationSummary, MediaRef, Message,
    MessageId, MessageKind,
};

use super::DecodeError;
use super::DecodeLimits;
use super::client::{ServerPeek, decode_server, encode_client, peek_server};
use super::server::{decode_client, encode_server};
use crate::frames::*;

fn limits() -> DecodeLimits {
    DecodeLimits::client(64 * 1024, 100)
}

fn sample_message() -> Message {
    Message {
        id: MessageId(77),
        conversation: ConversationId::random(),
        sender: "alice".into(),
        kind: MessageKind::Image,
        content: "caption ✓".into(),
        media: Some(MediaRef {
            url: "https://cdn.example/a.jpg".into(),
            mime_type: "image/jpeg".into(),
            size_bytes: 1234,
            name: "a.jpg".into(),
            width: 640,
            height: 480,
            id: "0190f0f0-0000-7000-8000-000000000001".into(),
            thumb_width: 320,
            thumb_height: 240,
            placeholder: "#102030".into(),
            duration_ms: 0,
            thumb_url: "https://cdn.example/t.jpg".into(),
        }),
        client_msg_id: "c-1".into(),
        created_at_ms: 1_800_000_000_000,
        seq: 5,
        visibility: Default::default(),
    }
}

#[test]
fn every_client_frame_round_trips() {
    let c = ConversationId::random();
    let bodies = vec![
        ClientBody::Hello(Hello {
            token: "t".into(),
            protocol_major: 1,
            protocol_minor: 0,
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
            client_msg_id: "x".into(),
            kind: MessageKind::File,
            content: "c".into(),
            media: sample_message().media,
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
            query: None,
        },
        ClientBody::Conversations {
            cursor: None,
            limit: 0,
            query: Some("lego cas".into()),
        },
        ClientBody::Ping { nonce: 42 },
        ClientBody::Refresh {
            token: "eyJhbGciOi.fresh.token".into(),
        },
        ClientBody::Mute {
            conversation: c,
            muted: true,
            until_ms: 1_790_000_000_000,
        },
        ClientBody::Mute {
            conversation: c,
            muted: false,
            until_ms: 0,
        },
        ClientBody::Search(SearchQuery {
            query: "lego cas".into(),
            conversation: Some(c),
            before: Some(MessageId(9)),
            limit: 20,
            by_relevance: true,
            offset: 40,
        }),
        ClientBody::Search(SearchQuery {
            query: "\"pay me\"".into(),
            conversation: None,
            before: None,
            limit: 0,
            by_relevance: false,
            offset: 0,
        }),
    ];
    for (i, body) in bodies.into_iter().enumerate() {
        let frame = ClientFrame {
            seq: i as u32 + 1,
            body,
        };
        let bytes = encode_client(&frame);
        assert_eq!(decode_client(&bytes, &limits()), Ok(frame));
    }
}

#[test]
fn server_frames_round_trip() {
    let m = sample_message();
    let summary = ConversationSummary {
        conversation: Conversation {
            id: m.conversation,
            kind: ConversationKind::Direct {
                buyer: "b".into(),
                seller: "s".into(),
                listing: "l".into(),
            },
            participants: vec!["b".into(), "s".into()],
            created_at_ms: 1,
            last_activity_ms: 2,
            last_message_id: Some(m.id),
            last_seq: m.seq,
        },
        last_message: Some(m.clone()),
        unread: 3,
    };
    let frames = vec![
        ServerBody::MessageNew(m.clone()),
        ServerBody::Ack(Ack {
            message_id: MessageId(1),
            created_at_ms: 2,
            duplicate: true,
            message_seq: 12,
        }),
        ServerBody::HistoryPage {
            conversation: m.conversation,
            messages: vec![m.clone(), m.clone()],
            next_before: Some(MessageId(77)),
        },
        ServerBody::ConversationPage {
            items: vec![summary.clone()],
            next_cursor: None,
        },
        ServerBody::ConversationUpdated(summary),
        ServerBody::Error {
            code: 1200,
            message: "no".into(),
            fatal: false,
        },
        ServerBody::Resumed {
            conversation: m.conversation,
            replayed: 3,
            complete: false,
            last_seq: 41,
        },
        ServerBody::SearchResults {
            hits: vec![SearchHit {
                conversation: m.conversation,
                message_id: MessageId(7),
                seq: 3,
                sender: "alice".into(),
                created_at_ms: 11,
                snippet: "the Lego castle ✓".into(),
                highlights: vec![(4, 8), (9, 15)],
            }],
            next_before: Some(MessageId(7)),
            next_offset: None,
        },
        ServerBody::SearchResults {
            hits: vec![],
            next_before: None,
            next_offset: Some(20),
        },
    ];
    for body in frames {
        let frame = ServerFrame::new(5, body);
        let decoded = decode_server(&encode_server(&frame), &DecodeLimits::server());
        assert_eq!(decoded, Ok(frame));
    }
}

#[test]
fn peek_borrows_what_load_clients_need() {
    let m = sample_message();
    let bytes = encode_server(&ServerFrame::push(ServerBody::MessageNew(m.clone())));
    assert_eq!(
        peek_server(&bytes, &DecodeLimits::server()),
        Ok(ServerPeek::MessageNew {
            conversation: m.conversation,
            id: m.id,
            message_seq: m.seq,
            sender: "alice",
            content: "caption ✓",
        })
    );
    let pong = ServerFrame::new(
        9,
        ServerBody::Pong {
            nonce: 1,
            server_time_ms: 2,
        },
    );
    let bytes = encode_server(&pong);
    assert_eq!(
        peek_server(&bytes, &DecodeLimits::server()),
        Ok(ServerPeek::Other {
            seq: 9,
            kind: pong.body.kind()
        })
    );
}

#[test]
fn garbage_and_truncation_are_errors_not_panics() {
    let good = encode_client(&ClientFrame {
        seq: 1,
        body: ClientBody::Send(SendMessage {
            conversation: ConversationId::random(),
            client_msg_id: "x".into(),
            kind: MessageKind::Text,
            content: "hello".into(),
            media: None,
        }),
    });
    for cut in 0..good.len() {
        let _ = decode_client(&good[..cut], &limits());
    }
    // Flip every byte in turn: must never panic.
    for i in 0..good.len() {
        let mut bad = good.to_vec();
        bad[i] ^= 0xff;
        let _ = decode_client(&bad, &limits());
    }
    assert!(decode_client(b"", &limits()).is_err());
    assert!(decode_client(&[0xff; 64], &limits()).is_err());
}

#[test]
fn invalid_utf8_in_a_string_is_rejected() {
    let frame = encode_client(&ClientFrame {
        seq: 1,
        body: ClientBody::Send(SendMessage {
            conversation: ConversationId::random(),
            client_msg_id: "x".into(),
            kind: MessageKind::Text,
            content: "héllo".into(),
            media: None,
        }),
    });
    let mut bad = frame.to_vec();
    let pos = bad
        .windows(2)
        .position(|w| w == "é".as_bytes())
        .expect("content bytes");
    bad[pos + 1] = 0xff;
    assert!(matches!(
        decode_client(&bad, &limits()),
        Err(DecodeError::Invalid(_))
    ));
}

#[test]
fn verifier_limits_bound_table_count() {
    let frame = ClientFrame {
        seq: 1,
        body: ClientBody::Hello(Hello {
            token: "t".into(),
            protocol_major: 1,
            protocol_minor: 0,
            resume: (0..500)
                .map(|i| ResumePoint {
                    conversation: ConversationId::random(),
                    last_message_id: MessageId(i),
                    last_seq: i,
                })
                .collect(),
            client_name: None,
        }),
    };
    let bytes = encode_client(&frame);
    assert!(decode_client(&bytes, &DecodeLimits::client(1 << 20, 100)).is_err());
    assert!(decode_client(&bytes, &DecodeLimits::client(1 << 20, 1000)).is_ok());
}
