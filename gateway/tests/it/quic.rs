//! QUIC end to end: a Rust quinn client (parley_client::quic) against a started gateway —
//! the same protocol and session core as WebSocket, datagrams for typing, connection
//! migration, 0-RTT, loss, and bad input.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::support::*;
use parley_proto::*;
use parley_types::MessageId;
use tokio::net::UdpSocket;
use tokio::sync::Mutex;

fn typing(conversation: parley_types::ConversationId, active: bool) -> ClientBody {
    ClientBody::Typing {
        conversation,
        active,
    }
}

fn is_typing(f: &ServerFrame) -> bool {
    matches!(f.body, ServerBody::Typing { .. })
}

#[tokio::test]
async fn quic_sessions_chat_type_read_page_and_resume() {
    let gw = Gateway::start(&[]);
    let config = quic_config(&gw);
    let conv = direct(&gw, "alice", "bob", "l").await;
    let mut alice = Client::quic(gw.quic_addr, &config, "alice", vec![]).await;
    let mut bob = Client::quic(gw.quic_addr, &config, "bob", vec![]).await;
    assert!(alice.welcome().session_id != bob.welcome().session_id);

    let join = alice.request(ClientBody::Join { conversation: conv }).await;
    assert!(matches!(join.body, ServerBody::Ack(_)));
    let ack = alice.send_text(conv, "q1", "hello over quic").await;
    let got = bob.next_message().await;
    assert_eq!(
        (got.id, got.content.as_str()),
        (ack.message_id, "hello over quic")
    );

    // Typing as a datagram, relayed as a datagram (both peers take datagrams).
    bob.send_datagram(typing(conv, true));
    let t = alice.next_where(is_typing).await;
    assert!(matches!(t.body, ServerBody::Typing { active: true, ref user, .. } if user == "bob"));
    assert!(alice.datagrams() >= 1, "typing came as a datagram");

    let r = bob
        .request(ClientBody::Read {
            conversation: conv,
            up_to: ack.message_id,
        })
        .await;
    assert!(matches!(r.body, ServerBody::Ack(_)));
    let read = alice
        .next_where(|f| matches!(f.body, ServerBody::MessageRead { .. }))
        .await;
    assert!(matches!(read.body, ServerBody::MessageRead { up_to, .. } if up_to == ack.message_id));

    let page = bob
        .request(ClientBody::History {
            conversation: conv,
            before: None,
            limit: 10,
        })
        .await;
    assert!(
        matches!(page.body, ServerBody::HistoryPage { ref messages, .. } if messages.len() == 1)
    );

    // Resume: bob leaves, misses three messages, comes back and gets them in order.
    bob.close().await;
    let mut missed = Vec::new();
    for i in 0..3 {
        missed.push(
            alice
                .send_text(conv, &format!("m{i}"), "while away")
                .await
                .message_id,
        );
    }
    let mut bob = Client::quic(
        gw.quic_addr,
        &config,
        "bob",
        vec![resume_point(conv, acked(&ack))],
    )
    .await;
    for id in &missed {
        assert_eq!(bob.next_message().await.id, *id);
    }
    let resumed = bob
        .next_where(|f| matches!(f.body, ServerBody::Resumed { .. }))
        .await;
    assert!(matches!(
        resumed.body,
        ServerBody::Resumed {
            replayed: 3,
            complete: true,
            ..
        }
    ));
}

#[tokio::test]
async fn quic_and_websocket_users_share_a_conversation() {
    let gw = Gateway::start(&["--typing-ttl-ms", "500"]);
    let config = quic_config(&gw);
    let conv = direct(&gw, "phone", "browser", "l").await;
    let mut phone = Client::quic(gw.quic_addr, &config, "phone", vec![]).await;
    let mut browser = Client::connect(&gw, "browser").await;
    let is_presence = |f: &ServerFrame| matches!(f.body, ServerBody::Presence { .. });
    let online = phone.next_where(is_presence).await;
    assert!(
        matches!(online.body, ServerBody::Presence { ref user, online: true, .. } if user == "browser")
    );

    let a = phone.send_text(conv, "p1", "from the app").await;
    assert_eq!(browser.next_message().await.id, a.message_id);
    let b = browser.send_text(conv, "b1", "from the web").await;
    assert_eq!(phone.next_message().await.id, b.message_id);

    browser.send(typing(conv, true)).await;
    assert!(matches!(
        phone.next_where(is_typing).await.body,
        ServerBody::Typing { active: true, .. }
    ));
    phone.send_datagram(typing(conv, true));
    assert!(matches!(
        browser.next_where(is_typing).await.body,
        ServerBody::Typing { active: true, .. }
    ));
    // Nobody refreshes: both end by themselves after the TTL.
    assert!(matches!(
        phone.next_where(is_typing).await.body,
        ServerBody::Typing { active: false, .. }
    ));
    assert!(matches!(
        browser.next_where(is_typing).await.body,
        ServerBody::Typing { active: false, .. }
    ));

    // Browser's own message moved its watermark past `a`: read a newer one from the phone.
    let c = phone.send_text(conv, "p2", "read me").await;
    assert_eq!(browser.next_message().await.id, c.message_id);
    browser
        .request(ClientBody::Read {
            conversation: conv,
            up_to: c.message_id,
        })
        .await;
    let read = phone
        .next_where(|f| matches!(f.body, ServerBody::MessageRead { .. }))
        .await;
    assert!(matches!(read.body, ServerBody::MessageRead { ref reader, .. } if reader == "browser"));

    browser.close().await;
    let offline = phone.next_where(is_presence).await;
    assert!(
        matches!(offline.body, ServerBody::Presence { ref user, online: false, .. } if user == "browser")
    );
}

#[tokio::test]
async fn migration_to_a_new_address_keeps_the_session() {
    let gw = Gateway::start(UNLIMITED);
    let config = quic_config(&gw);
    let conv = direct(&gw, "mobile", "desk", "l").await;
    let mut mobile = Client::quic(gw.quic_addr, &config, "mobile", vec![]).await;
    let session = mobile.welcome().session_id;
    let addr = gw.addr;
    let sender = tokio::spawn(async move {
        let mut desk = Client::connect_at(addr, "desk", vec![]).await;
        let mut ids = Vec::new();
        for i in 0..200 {
            ids.push(
                desk.send_text(conv, &format!("d{i}"), "keep going")
                    .await
                    .message_id,
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        ids
    });
    let mut got = Vec::new();
    while got.len() < 60 {
        got.push(mobile.next_message().await.id);
    }
    // Wi-Fi → cellular: a new local port mid-conversation.
    mobile.rebind();
    let own = mobile.send_text(conv, "after-move", "still me").await;
    assert!(own.message_id.0 > 0);
    let sent = sender.await.unwrap();
    while got.len() < sent.len() {
        got.push(mobile.next_message().await.id);
    }
    assert_eq!(got, sent, "nothing lost or duplicated across the move");
    mobile
        .expect_none(Duration::from_millis(300), |f| {
            matches!(f.body, ServerBody::Welcome(_))
        })
        .await;
    let pong = mobile.request(ClientBody::Ping { nonce: 5 }).await;
    assert!(matches!(pong.body, ServerBody::Pong { nonce: 5, .. }));
    assert_eq!(mobile.welcome().session_id, session, "same session");
}

#[tokio::test]
async fn zero_rtt_reconnect_sends_hello_in_the_first_flight() {
    let gw = Gateway::start(&[]);
    let config = quic_config(&gw);
    let mut first = Client::quic(gw.quic_addr, &config, "alice", vec![]).await;
    assert!(!first.used_0rtt());
    // A round trip after the handshake, so the session ticket has arrived.
    first.request(ClientBody::Ping { nonce: 1 }).await;
    first.close().await;
    let mut again = Client::quic_unauthenticated(gw.quic_addr, &config, "alice", true).await;
    assert!(again.used_0rtt(), "the second connection used 0-RTT");
    again.hello(vec![]).await;
    let pong = again.request(ClientBody::Ping { nonce: 2 }).await;
    assert!(matches!(pong.body, ServerBody::Pong { nonce: 2, .. }));
}

#[tokio::test]
async fn wrong_alpn_is_refused() {
    let gw = Gateway::start(&[]);
    let certs = parley_client::quic::load_certs(&gw.cert).unwrap();
    let config = parley_client::quic::client_config_with_alpn(&certs, b"h3").unwrap();
    let endpoint = parley_client::quic::endpoint("127.0.0.1:0".parse().unwrap()).unwrap();
    let result =
        parley_client::quic::connect(&endpoint, &config, gw.quic_addr, "localhost", false).await;
    assert!(
        result.is_err(),
        "a client without ALPN parley/1 must not connect"
    );
}

#[tokio::test]
async fn garbage_and_oversized_prefixes_close_the_session() {
    let gw = Gateway::start(&["--max-frame-bytes", "20000"]);
    let config = quic_config(&gw);
    let mut c = Client::quic(gw.quic_addr, &config, "alice", vec![]).await;
    for _ in 0..5 {
        c.send_bytes(b"\x01\x02not a flatbuffer").await;
        assert_eq!(error_code(&c.next().await), Some(1000));
    }
    c.send_bytes(b"garbage").await;
    let closed = c.closed().await;
    assert_eq!((closed.error, closed.code), (Some(1005), Some(4005)));

    // A length prefix over the limit is refused before anything is read or allocated for it.
    let mut c = Client::quic(gw.quic_addr, &config, "alice", vec![]).await;
    c.send_stream_raw(&u32::MAX.to_le_bytes()).await;
    let closed = c.closed().await;
    assert_eq!((closed.error, closed.code), (Some(1004), Some(1009)));
    // The node keeps serving.
    let mut c = Client::quic(gw.quic_addr, &config, "alice", vec![]).await;
    assert!(matches!(
        c.request(ClientBody::Ping { nonce: 0 }).await.body,
        ServerBody::Pong { .. }
    ));
}

#[tokio::test]
async fn a_datagram_flood_is_rate_limited() {
    let gw = Gateway::start(UNLIMITED);
    let config = quic_config(&gw);
    let conv = direct(&gw, "flooder", "victim", "l").await;
    let mut flooder = Client::quic(gw.quic_addr, &config, "flooder", vec![]).await;
    let mut victim = Client::quic(gw.quic_addr, &config, "victim", vec![]).await;
    for i in 0..2000 {
        // Alternate so every one would be a relayed change if it got through.
        flooder.send_datagram(typing(conv, i % 2 == 0));
        if i % 100 == 0 {
            tokio::task::yield_now().await;
        }
    }
    let mut relayed = 0;
    while tokio::time::timeout(Duration::from_millis(500), victim.next_where(is_typing))
        .await
        .is_ok()
    {
        relayed += 1;
    }
    assert!(relayed > 0, "some typing got through");
    assert!(relayed <= 80, "{relayed} of 2000 datagrams relayed");
    let pong = flooder.request(ClientBody::Ping { nonce: 9 }).await;
    assert!(
        matches!(pong.body, ServerBody::Pong { nonce: 9, .. }),
        "the flooder's session survives"
    );
}

/// A UDP relay that drops `drop_per_mille` of the packets each way and holds back some
/// others a few milliseconds, so they arrive out of order. One upstream socket per client, so
/// the server sees each client's own address.
async fn lossy_relay(server: SocketAddr, drop_per_mille: u64, seed: u64) -> SocketAddr {
    let front = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
    let addr = front.local_addr().unwrap();
    let upstreams: Arc<Mutex<HashMap<SocketAddr, Arc<UdpSocket>>>> = Arc::default();
    let rng = Arc::new(std::sync::Mutex::new(seed | 1));
    let roll = {
        let rng = rng.clone();
        move || {
            let mut s = rng.lock().unwrap();
            *s ^= *s << 13;
            *s ^= *s >> 7;
            *s ^= *s << 17;
            *s % 1000
        }
    };
    let forward = {
        let roll = roll.clone();
        move |sock: Arc<UdpSocket>, to: SocketAddr, data: Vec<u8>| {
            let r = roll();
            if r < drop_per_mille {
                return;
            }
            if r < drop_per_mille + 100 {
                // Hold this one back: later packets overtake it.
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(3)).await;
                    let _ = sock.send_to(&data, to).await;
                });
            } else {
                let _ = sock.try_send_to(&data, to);
            }
        }
    };
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65_536];
        loop {
            let Ok((n, client)) = front.recv_from(&mut buf).await else {
                return;
            };
            let upstream = {
                let mut map = upstreams.lock().await;
                if let Some(u) = map.get(&client) {
                    u.clone()
                } else {
                    let u = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
                    map.insert(client, u.clone());
                    let (front, u2, forward) = (front.clone(), u.clone(), forward.clone());
                    tokio::spawn(async move {
                        let mut buf = vec![0u8; 65_536];
                        while let Ok((n, _)) = u2.recv_from(&mut buf).await {
                            forward(front.clone(), client, buf[..n].to_vec());
                        }
                    });
                    u
                }
            };
            forward(upstream, server, buf[..n].to_vec());
        }
    });
    addr
}

#[tokio::test]
async fn a_thousand_messages_arrive_complete_and_in_order_through_loss() {
    let gw = Gateway::start(UNLIMITED);
    let config = quic_config(&gw);
    let conv = direct(&gw, "sender", "receiver", "l").await;
    let relay = lossy_relay(gw.quic_addr, 50, 0x5eed).await;
    let mut receiver = Client::quic(relay, &config, "receiver", vec![]).await;
    let mut sender = Client::quic(relay, &config, "sender", vec![]).await;
    let reader = tokio::spawn(async move {
        let mut got: Vec<MessageId> = Vec::new();
        while got.len() < 1000 {
            got.push(receiver.next_message().await.id);
        }
        got
    });
    // Pipelined sends, then every Ack.
    for i in 0..1000 {
        sender
            .send(send_text(conv, &format!("m{i}"), &format!("message {i}")))
            .await;
    }
    let mut acked = Vec::new();
    while acked.len() < 1000 {
        if let ServerBody::Ack(a) = sender.next().await.body {
            acked.push(a.message_id);
        }
    }
    let got = tokio::time::timeout(Duration::from_secs(60), reader)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got, acked, "all 1000, in order, once each");
}
