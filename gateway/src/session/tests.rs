//! The session core in memory: frames in, outputs out, time passed by hand.

use std::sync::Arc;
use std::time::Duration;

use parley_types::{ConversationId, MediaRef, MessageId, MessageKind};
use tokio::time::Instant;

use super::*;
use crate::auth::{Authenticator, mint_hs256};
use parley_proto::codec::client::encode_client;

const SECRET: &[u8] = b"0123456789abcdef-test-secret";
const WALL: i64 = 1_800_000_000_000;

struct Harness {
    s: Session,
    t0: Instant,
    elapsed: Duration,
}

impl Harness {
    fn new() -> Self {
        Self::with(SessionLimits::default())
    }

    fn with(limits: SessionLimits) -> Self {
        let auth = Arc::new(
            Authenticator::new(Some(SECRET), None, crate::auth::TokenRules::default())
                .expect("auth"),
        );
        let t0 = Instant::now();
        let now = Now {
            mono: t0,
            wall_ms: WALL,
        };
        Self {
            s: Session::new(7, Arc::new(limits), auth, now),
            t0,
            elapsed: Duration::ZERO,
        }
    }

    fn now(&self) -> Now {
        Now {
            mono: self.t0 + self.elapsed,
            wall_ms: WALL + self.elapsed.as_millis() as i64,
        }
    }

    fn advance(&mut self, d: Duration) -> Vec<Output> {
        self.elapsed += d;
        let mut out = Vec::new();
        if self.s.next_deadline().is_some_and(|d| d <= self.now().mono) {
            self.s.handle_timeout(self.now(), &mut out);
        }
        out
    }

    fn send(&mut self, seq: u32, body: ClientBody) -> Vec<Output> {
        self.raw(&encode_client(&ClientFrame { seq, body }))
    }

    fn raw(&mut self, bytes: &[u8]) -> Vec<Output> {
        let mut out = Vec::new();
        self.s.handle_frame(self.now(), bytes, &mut out);
        out
    }

    fn hello_as(&mut self, user: &str) -> Vec<Output> {
        let token = mint_hs256(SECRET, user, 3600, WALL);
        self.send(1, hello(&token))
    }

    fn active(user: &str) -> Self {
        let mut h = Self::new();
        let out = h.hello_as(user);
        assert!(matches!(
            out[0],
            Output::Send(ServerFrame {
                body: ServerBody::Welcome(_),
                ..
            })
        ));
        h
    }
}

fn hello(token: &str) -> ClientBody {
    ClientBody::Hello(Hello {
        token: token.into(),
        protocol_major: 1,
        protocol_minor: 0,
        resume: vec![],
        client_name: None,
    })
}

fn send_text(conversation: ConversationId, id: &str, content: &str) -> ClientBody {
    ClientBody::Send(SendMessage {
        conversation,
        client_msg_id: id.into(),
        kind: MessageKind::Text,
        content: content.into(),
        media: None,
    })
}

/// The error code of a single Error frame, and whether it was fatal (followed by Close).
fn error_of(out: &[Output]) -> (u16, bool) {
    match out {
        [
            Output::Send(ServerFrame {
                body: ServerBody::Error { code, fatal, .. },
                ..
            }),
        ] => (*code, *fatal),
        [
            Output::Send(ServerFrame {
                body:
                    ServerBody::Error {
                        code, fatal: true, ..
                    },
                ..
            }),
            Output::Close(c),
        ] => {
            assert_eq!(c.code(), *code);
            (*code, true)
        }
        other => panic!("expected one error, got {other:?}"),
    }
}

fn command(out: &[Output]) -> &Command {
    match out {
        [Output::Do(c)] => c,
        other => panic!("expected one command, got {other:?}"),
    }
}

#[test]
fn hello_gives_welcome_then_start_with_resume_points() {
    let mut h = Harness::new();
    let token = mint_hs256(SECRET, "alice", 3600, WALL);
    let conv = ConversationId::random();
    let out = h.send(
        9,
        ClientBody::Hello(Hello {
            token,
            protocol_major: 1,
            protocol_minor: 3,
            resume: vec![ResumePoint {
                conversation: conv,
                last_message_id: MessageId(5),
                last_seq: 0,
            }],
            client_name: Some("web".into()),
        }),
    );
    let [
        Output::Send(welcome),
        Output::Do(Command::Start { user, resume }),
    ] = &out[..]
    else {
        panic!("{out:?}");
    };
    assert_eq!(welcome.seq, 9);
    let ServerBody::Welcome(w) = &welcome.body else {
        panic!("{welcome:?}");
    };
    assert_eq!((w.user.as_str(), w.session_id), ("alice", 7));
    assert_eq!(w.max_message_chars, 4000);
    assert_eq!(w.heartbeat_ms, 25_000);
    assert_eq!(&**user, "alice");
    assert_eq!(resume[0].conversation, conv);
    assert_eq!(h.s.user().map(|u| &**u), Some("alice"));
}

#[test]
fn anything_before_hello_is_fatal() {
    let mut h = Harness::new();
    let out = h.send(1, ClientBody::Ping { nonce: 1 });
    assert_eq!(error_of(&out), (ErrorCode::NotAuthenticated.code(), true));
    assert!(h.s.is_closed());
    // Nothing more is processed after a fatal error.
    assert!(h.hello_as("alice").is_empty());
}

#[test]
fn unknown_major_version_is_refused() {
    let mut h = Harness::new();
    let token = mint_hs256(SECRET, "alice", 3600, WALL);
    let out = h.send(
        1,
        ClientBody::Hello(Hello {
            token,
            protocol_major: 2,
            protocol_minor: 0,
            resume: vec![],
            client_name: None,
        }),
    );
    assert_eq!(error_of(&out), (ErrorCode::UnsupportedVersion.code(), true));
}

#[test]
fn bad_and_expired_tokens_are_refused_with_their_codes() {
    let mut h = Harness::new();
    let forged = mint_hs256(b"another-secret-of-16+", "alice", 3600, WALL);
    assert_eq!(
        error_of(&h.send(1, hello(&forged))),
        (ErrorCode::AuthFailed.code(), true)
    );

    let mut h = Harness::new();
    let expired = mint_hs256(SECRET, "alice", 60, WALL - 120_000);
    assert_eq!(
        error_of(&h.send(1, hello(&expired))),
        (ErrorCode::TokenExpired.code(), true)
    );

    let mut h = Harness::new();
    assert_eq!(
        error_of(&h.send(1, hello("garbage"))),
        (ErrorCode::AuthFailed.code(), true)
    );
}

#[test]
fn too_many_resume_points_are_refused() {
    let mut h = Harness::with(SessionLimits {
        max_resume_points: 2,
        ..SessionLimits::default()
    });
    let token = mint_hs256(SECRET, "alice", 3600, WALL);
    let resume = (0..3)
        .map(|i| ResumePoint {
            conversation: ConversationId::random(),
            last_message_id: MessageId(i),
            last_seq: 0,
        })
        .collect();
    let out = h.send(
        1,
        ClientBody::Hello(Hello {
            token,
            protocol_major: 1,
            protocol_minor: 0,
            resume,
            client_name: None,
        }),
    );
    // The verifier's table limit follows max_resume_points, so this fails as a bad frame or
    // as too many points; either way nothing is started.
    assert!(!out.iter().any(|o| matches!(o, Output::Do(_))), "{out:?}");
}

#[test]
fn second_hello_is_an_error_but_not_fatal() {
    let mut h = Harness::active("alice");
    assert_eq!(
        error_of(&h.hello_as("bob")),
        (ErrorCode::AlreadyAuthenticated.code(), false)
    );
    assert_eq!(h.s.user().map(|u| &**u), Some("alice"));
}

#[test]
fn ping_gets_pong_with_nonce() {
    let mut h = Harness::active("alice");
    let out = h.send(4, ClientBody::Ping { nonce: 99 });
    assert_eq!(
        out,
        vec![Output::Send(ServerFrame::new(
            4,
            ServerBody::Pong {
                nonce: 99,
                server_time_ms: WALL
            }
        ))]
    );
}

#[test]
fn malformed_frames_get_errors_then_a_close() {
    let mut h = Harness::active("alice");
    for _ in 0..5 {
        assert_eq!(
            error_of(&h.raw(b"\x01\x02garbage")),
            (ErrorCode::BadFrame.code(), false)
        );
    }
    assert_eq!(
        error_of(&h.raw(b"")),
        (ErrorCode::TooManyBadFrames.code(), true)
    );
    assert!(h.s.is_closed());
}

#[test]
fn hello_timeout_closes_a_silent_connection() {
    let mut h = Harness::new();
    assert!(h.advance(Duration::from_secs(9)).is_empty());
    let out = h.advance(Duration::from_secs(1));
    assert_eq!(error_of(&out), (ErrorCode::HelloTimeout.code(), true));
}

#[test]
fn idle_timeout_counts_from_the_last_frame() {
    let mut h = Harness::active("alice");
    assert!(h.advance(Duration::from_secs(70)).is_empty());
    h.send(2, ClientBody::Ping { nonce: 0 });
    assert!(
        h.advance(Duration::from_secs(70)).is_empty(),
        "ping reset the timer"
    );
    let out = h.advance(Duration::from_secs(5));
    assert_eq!(error_of(&out), (ErrorCode::IdleTimeout.code(), true));
}

#[test]
fn typing_is_relayed_on_change_refreshed_and_expires() {
    let mut h = Harness::active("alice");
    let c = ConversationId::random();
    let typing = |active| ClientBody::Typing {
        conversation: c,
        active,
    };
    let relayed = |out: &[Output], active: bool| matches!(command(out), Command::Typing { conversation, active: a, .. } if *conversation == c && *a == active);
    // Stop without start: nothing.
    assert!(h.send(2, typing(false)).is_empty());
    assert!(relayed(&h.send(3, typing(true)), true));
    // A refresh soon after is not echoed to everyone.
    h.advance(Duration::from_secs(1));
    assert!(h.send(4, typing(true)).is_empty());
    // A refresh after half the TTL is, so receivers' timers stay alive.
    h.advance(Duration::from_secs(2));
    assert!(relayed(&h.send(5, typing(true)), true));
    // Explicit stop.
    assert!(relayed(&h.send(6, typing(false)), false));
    // Start again and let it lapse: the server ends it after 5 s without a refresh.
    assert!(relayed(&h.send(7, typing(true)), true));
    assert!(h.advance(Duration::from_millis(4_900)).is_empty());
    let out = h.advance(Duration::from_millis(100));
    assert!(matches!(
        command(&out),
        Command::Typing {
            seq: 0,
            active: false,
            ..
        }
    ));
    assert!(h.advance(Duration::from_secs(5)).is_empty(), "ended once");
}

#[test]
fn disconnect_ends_active_typing() {
    let mut h = Harness::active("alice");
    let c = ConversationId::random();
    h.send(
        2,
        ClientBody::Typing {
            conversation: c,
            active: true,
        },
    );
    let mut out = Vec::new();
    h.s.handle_transport_closed(&mut out);
    assert!(
        matches!(command(&out), Command::Typing { active: false, conversation, .. } if *conversation == c)
    );
}

#[test]
fn message_length_is_counted_in_characters() {
    let mut h = Harness::active("alice");
    let c = ConversationId::random();
    // 4 000 four-byte characters: at the limit, accepted.
    let at_limit = "😀".repeat(4000);
    assert!(matches!(
        command(&h.send(2, send_text(c, "a", &at_limit))),
        Command::Send { seq: 2, .. }
    ));
    let over = "a".repeat(4001);
    assert_eq!(
        error_of(&h.send(3, send_text(c, "b", &over))),
        (ErrorCode::MessageTooLong.code(), false)
    );
}

#[test]
fn send_fields_are_validated() {
    let mut h = Harness::active("alice");
    let c = ConversationId::random();
    let invalid = ErrorCode::Invalid.code();
    assert_eq!(
        error_of(&h.send(2, send_text(c, "a", "   "))),
        (invalid, false)
    );
    assert_eq!(
        error_of(&h.send(3, send_text(c, "", "hi"))),
        (invalid, false)
    );
    assert_eq!(
        error_of(&h.send(4, send_text(c, &"x".repeat(65), "hi"))),
        (invalid, false)
    );
    assert_eq!(
        error_of(&h.send(5, send_text(c, "a\nb", "hi"))),
        (invalid, false)
    );
    // Media is an upload's id; the server fills the rest. An outside URL is refused.
    let media = |kind, id: &str, url: &str| {
        ClientBody::Send(SendMessage {
            conversation: c,
            client_msg_id: "m".into(),
            kind,
            content: String::new(),
            media: (!(id.is_empty() && url.is_empty())).then(|| MediaRef {
                id: id.into(),
                url: url.into(),
                ..MediaRef::default()
            }),
        })
    };
    let upload = "0190f0f0-0000-7000-8000-000000000001";
    assert_eq!(
        error_of(&h.send(6, media(MessageKind::Image, "", ""))),
        (invalid, false)
    );
    assert_eq!(
        error_of(&h.send(
            7,
            media(MessageKind::Image, "", "https://tracker.example/a.png")
        )),
        (invalid, false)
    );
    assert_eq!(
        error_of(&h.send(8, media(MessageKind::Image, "not-an-id", ""))),
        (invalid, false)
    );
    assert_eq!(
        error_of(&h.send(9, media(MessageKind::Image, upload, "https://x/a.png"))),
        (invalid, false)
    );
    assert_eq!(
        error_of(&h.send(10, media(MessageKind::Text, upload, ""))),
        (invalid, false)
    );
    assert!(matches!(
        command(&h.send(11, media(MessageKind::File, upload, ""))),
        Command::Send { .. }
    ));
}

#[test]
fn pages_default_and_clamp() {
    let mut h = Harness::active("alice");
    let c = ConversationId::random();
    let history = |limit| ClientBody::History {
        conversation: c,
        before: None,
        limit,
    };
    assert!(matches!(
        command(&h.send(2, history(0))),
        Command::History { limit: 50, .. }
    ));
    assert!(matches!(
        command(&h.send(3, history(500))),
        Command::History { limit: 100, .. }
    ));
    assert!(matches!(
        command(&h.send(4, history(7))),
        Command::History { limit: 7, .. }
    ));
    let list = |cursor: Option<&str>| ClientBody::Conversations {
        cursor: cursor.map(str::to_owned),
        limit: 0,
        query: None,
    };
    assert!(matches!(
        command(&h.send(5, list(None))),
        Command::Conversations {
            limit: 20,
            cursor: None,
            ..
        }
    ));
    assert_eq!(
        error_of(&h.send(6, list(Some("garbage")))),
        (ErrorCode::Invalid.code(), false)
    );
}

#[test]
fn frame_rate_is_limited_per_session() {
    let mut h = Harness::with(SessionLimits {
        frames_per_sec: 10.0,
        frame_burst: 5,
        ..SessionLimits::default()
    });
    h.hello_as("alice");
    let mut limited = 0;
    for i in 0..10 {
        let out = h.send(i, ClientBody::Ping { nonce: 0 });
        if let [
            Output::Send(ServerFrame {
                body: ServerBody::Error { code, .. },
                ..
            }),
        ] = &out[..]
        {
            assert_eq!(*code, ErrorCode::RateLimited.code());
            limited += 1;
        }
    }
    assert_eq!(limited, 6, "burst of 5, hello took one");
    h.advance(Duration::from_millis(200));
    assert!(matches!(
        &h.send(20, ClientBody::Ping { nonce: 0 })[..],
        [Output::Send(ServerFrame {
            body: ServerBody::Pong { .. },
            ..
        })]
    ));
}

#[test]
fn each_conversation_resumed_counts_against_the_frame_rate() {
    let limits = SessionLimits {
        frames_per_sec: 100.0,
        frame_burst: 10,
        ..SessionLimits::default()
    };
    let token = mint_hs256(SECRET, "alice", 3600, WALL);
    let hello_with = |conversations: &[ConversationId]| {
        let resume = conversations
            .iter()
            .flat_map(|&conversation| {
                // Every conversation twice: it is replayed (and charged) once.
                [1, 2].map(|seq| ResumePoint {
                    conversation,
                    last_message_id: MessageId(seq),
                    last_seq: seq,
                })
            })
            .collect();
        ClientBody::Hello(Hello {
            token: token.clone(),
            protocol_major: 1,
            protocol_minor: 1,
            resume,
            client_name: None,
        })
    };
    let pong = |out: &[Output]| {
        matches!(
            out,
            [Output::Send(ServerFrame {
                body: ServerBody::Pong { .. },
                ..
            })]
        )
    };
    let conversations: Vec<_> = (0..300).map(|_| ConversationId::random()).collect();
    let mut h = Harness::with(limits.clone());
    let out = h.send(1, hello_with(&conversations));
    assert!(
        out.iter().any(|o| matches!(
            o,
            Output::Do(Command::Start { resume, .. }) if resume.len() == 600
        )),
        "{out:?}"
    );
    // 10 - 300 = -290 tokens: 2.9 s at 100/s before the next frame is accepted.
    assert_eq!(
        error_of(&h.send(2, ClientBody::Ping { nonce: 0 })),
        (ErrorCode::RateLimited.code(), false)
    );
    h.advance(Duration::from_millis(2800));
    assert!(!pong(&h.send(3, ClientBody::Ping { nonce: 0 })));
    h.advance(Duration::from_millis(200));
    assert!(pong(&h.send(4, ClientBody::Ping { nonce: 0 })));

    // A Hello resuming one conversation costs only itself.
    let mut h = Harness::with(limits);
    h.send(1, hello_with(&conversations[..1]));
    for seq in 2..11 {
        assert!(pong(&h.send(seq, ClientBody::Ping { nonce: 0 })), "{seq}");
    }
}

#[test]
fn oversized_frames_and_shutdown_are_fatal() {
    let mut h = Harness::active("alice");
    let mut out = Vec::new();
    h.s.handle_oversized(&mut out);
    assert_eq!(error_of(&out), (ErrorCode::FrameTooLarge.code(), true));

    // Shutdown: Goaway, then every frame still arriving is answered with shutting_down (by its
    // seq, not fatal) for the drain time, then the session closes.
    let mut h = Harness::active("alice");
    let mut out = Vec::new();
    h.s.handle_shutdown(h.now(), &mut out);
    assert!(matches!(
        &out[..],
        [Output::Send(ServerFrame {
            body: ServerBody::Goaway { .. },
            ..
        })]
    ));
    let c = ConversationId::random();
    let out = h.send(9, send_text(c, "late", "hi"));
    assert_eq!(error_of(&out), (ErrorCode::ShuttingDown.code(), false));
    assert!(matches!(&out[0], Output::Send(ServerFrame { seq: 9, .. })));
    assert!(h.advance(Duration::from_millis(999)).is_empty());
    let out = h.advance(Duration::from_millis(1));
    assert_eq!(error_of(&out), (ErrorCode::ShuttingDown.code(), true));

    // Without Hello there is nothing to drain.
    let mut h = Harness::new();
    let mut out = Vec::new();
    h.s.handle_shutdown(h.now(), &mut out);
    assert_eq!(error_of(&out[1..]), (ErrorCode::ShuttingDown.code(), true));
}

#[test]
fn join_leave_read_become_commands_with_their_seq() {
    let mut h = Harness::active("alice");
    let c = ConversationId::random();
    assert_eq!(
        command(&h.send(2, ClientBody::Join { conversation: c })),
        &Command::Join {
            seq: 2,
            conversation: c
        }
    );
    assert_eq!(
        command(&h.send(3, ClientBody::Leave { conversation: c })),
        &Command::Leave {
            seq: 3,
            conversation: c
        }
    );
    assert_eq!(
        command(&h.send(
            4,
            ClientBody::Read {
                conversation: c,
                up_to: MessageId(77)
            }
        )),
        &Command::Read {
            seq: 4,
            conversation: c,
            up_to: MessageId(77)
        }
    );
}

/// A small deterministic generator (xorshift) so the fuzz loop needs no extra crate.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn random_and_mutated_input_never_panics() {
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    let c = ConversationId::random();
    let valid: Vec<Vec<u8>> = vec![
        encode_client(&ClientFrame {
            seq: 1,
            body: send_text(c, "a", "hello"),
        })
        .to_vec(),
        encode_client(&ClientFrame {
            seq: 2,
            body: ClientBody::Hello(Hello {
                token: mint_hs256(SECRET, "alice", 3600, WALL),
                protocol_major: 1,
                protocol_minor: 0,
                resume: vec![ResumePoint {
                    conversation: c,
                    last_message_id: MessageId(3),
                    last_seq: 0,
                }],
                client_name: Some("x".into()),
            }),
        })
        .to_vec(),
        encode_client(&ClientFrame {
            seq: 3,
            body: ClientBody::Conversations {
                cursor: Some("1_00000000000000000000000000000000".into()),
                limit: 7,
                query: None,
            },
        })
        .to_vec(),
    ];
    let limits = SessionLimits {
        max_bad_frames: u32::MAX,
        frame_burst: u32::MAX,
        ..SessionLimits::default()
    };
    for round in 0..20_000 {
        // Half the time an authenticated session, half a fresh one.
        let mut h = Harness::with(limits.clone());
        if round % 2 == 0 {
            h.hello_as("alice");
        }
        let mut frame = valid[(rng.next() % valid.len() as u64) as usize].clone();
        match rng.next() % 3 {
            0 => {
                for _ in 0..1 + rng.next() % 4 {
                    let i = (rng.next() % frame.len() as u64) as usize;
                    frame[i] = rng.next() as u8;
                }
            }
            1 => frame.truncate((rng.next() % frame.len() as u64) as usize),
            _ => {
                frame = (0..rng.next() % 256).map(|_| rng.next() as u8).collect();
            }
        }
        let _ = h.raw(&frame);
    }
}

#[test]
fn early_data_accepts_only_replay_safe_frames() {
    let mut h = Harness::new();
    let token = mint_hs256(SECRET, "alice", 3600, WALL);
    let frame = |seq, body| encode_client(&ClientFrame { seq, body });
    let mut out = Vec::new();
    h.s.handle_frame_from(h.now(), &frame(1, hello(&token)), Origin::Early, &mut out);
    assert!(matches!(
        out[0],
        Output::Send(ServerFrame {
            body: ServerBody::Welcome(_),
            ..
        })
    ));
    let c = ConversationId::random();
    for body in [
        send_text(c, "idempotent", "hi"),
        ClientBody::Read {
            conversation: c,
            up_to: MessageId(1),
        },
        ClientBody::History {
            conversation: c,
            before: None,
            limit: 5,
        },
    ] {
        out.clear();
        h.s.handle_frame_from(h.now(), &frame(2, body), Origin::Early, &mut out);
        assert!(matches!(
            command(&out),
            Command::Send { .. } | Command::Read { .. } | Command::History { .. }
        ));
    }
    out.clear();
    h.s.handle_frame_from(
        h.now(),
        &frame(
            3,
            ClientBody::Typing {
                conversation: c,
                active: true,
            },
        ),
        Origin::Early,
        &mut out,
    );
    assert_eq!(error_of(&out), (ErrorCode::EarlyData.code(), false));
    // After the handshake the same frame is fine.
    out.clear();
    h.s.handle_frame_from(
        h.now(),
        &frame(
            4,
            ClientBody::Typing {
                conversation: c,
                active: true,
            },
        ),
        Origin::Stream,
        &mut out,
    );
    assert!(matches!(
        command(&out),
        Command::Typing { active: true, .. }
    ));
}

#[test]
fn datagrams_carry_only_typing_and_never_count_as_bad_frames() {
    let mut h = Harness::active("alice");
    let c = ConversationId::random();
    let mut out = Vec::new();
    for _ in 0..20 {
        h.s.handle_frame_from(h.now(), b"garbage", Origin::Datagram, &mut out);
    }
    let ping = encode_client(&ClientFrame {
        seq: 2,
        body: ClientBody::Ping { nonce: 1 },
    });
    h.s.handle_frame_from(h.now(), &ping, Origin::Datagram, &mut out);
    assert!(out.is_empty() && !h.s.is_closed(), "{out:?}");
    let typing = encode_client(&ClientFrame {
        seq: 3,
        body: ClientBody::Typing {
            conversation: c,
            active: true,
        },
    });
    h.s.handle_frame_from(h.now(), &typing, Origin::Datagram, &mut out);
    assert!(matches!(
        command(&out),
        Command::Typing { active: true, .. }
    ));
    // Before Hello, datagrams are ignored too.
    let mut fresh = Harness::new();
    fresh
        .s
        .handle_frame_from(fresh.now(), &typing, Origin::Datagram, &mut out);
    assert!(!fresh.s.is_closed());
}

#[test]
fn a_session_ends_when_its_token_expires_unless_refreshed() {
    let mut h = Harness::new();
    let token = mint_hs256(SECRET, "alice", 100, WALL);
    let out = h.send(1, hello(&token));
    let Output::Send(ServerFrame {
        body: ServerBody::Welcome(w),
        ..
    }) = &out[0]
    else {
        panic!("{out:?}")
    };
    assert_eq!(w.token_expires_ms, WALL + 100_000);
    // Keep the session busy (no idle timeout) until shortly before the expiry, then refresh.
    for _ in 0..9 {
        h.advance(Duration::from_secs(10));
        h.send(2, ClientBody::Ping { nonce: 1 });
    }
    // Another user's token, an expired one, a forged one: refused, the old expiry stands.
    let other = mint_hs256(SECRET, "mallory", 3600, WALL + 90_000);
    assert_eq!(
        error_of(&h.send(3, ClientBody::Refresh { token: other })),
        (1201, false)
    );
    let forged = mint_hs256(b"not-the-secret-0123456789", "alice", 3600, WALL + 90_000);
    assert_eq!(
        error_of(&h.send(4, ClientBody::Refresh { token: forged })),
        (1100, false)
    );
    let fresh = mint_hs256(SECRET, "alice", 300, WALL + 90_000);
    let out = h.send(5, ClientBody::Refresh { token: fresh });
    assert!(
        matches!(&out[..], [Output::Send(ServerFrame { seq: 5, body: ServerBody::Ack(a) })]
            if a.created_at_ms == WALL + 390_000),
        "{out:?}"
    );
    // Past the first token's expiry the session goes on...
    h.advance(Duration::from_secs(20));
    h.send(6, ClientBody::Ping { nonce: 2 });
    for _ in 0..27 {
        h.advance(Duration::from_secs(10));
        h.send(7, ClientBody::Ping { nonce: 3 });
    }
    assert!(!h.s.is_closed());
    // ...and ends at the new one's, with 1101.
    let out = h.advance(Duration::from_secs(20));
    assert_eq!(error_of(&out), (1101, true));
}

#[test]
fn refresh_is_not_accepted_as_early_data() {
    let mut h = Harness::active("alice");
    let token = mint_hs256(SECRET, "alice", 3600, WALL);
    let bytes = encode_client(&ClientFrame {
        seq: 9,
        body: ClientBody::Refresh { token },
    });
    let mut out = Vec::new();
    h.s.handle_frame_from(h.now(), &bytes, Origin::Early, &mut out);
    assert_eq!(error_of(&out), (1008, false));
}
