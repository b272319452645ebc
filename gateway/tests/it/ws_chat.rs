//! End to end over real WebSockets: a started gateway process, tokio-tungstenite clients.

use std::time::Duration;

use crate::support::*;
use parley_proto::*;
use parley_types::{MessageId, Position};

#[tokio::test]
async fn two_users_chat_and_every_device_gets_it() {
    let gw = Gateway::start(&[]);
    let conv = direct(&gw, "alice", "bob", "listing-1").await;
    let mut alice = Client::connect(&gw, "alice").await;
    let mut alice_phone = Client::connect(&gw, "alice").await;
    let mut bob = Client::connect(&gw, "bob").await;

    let ack = alice.send_text(conv, "m1", "is it still available?").await;
    assert!(ack.message_id.0 > 0 && !ack.duplicate);
    let got = bob.next_message().await;
    assert_eq!(got.id, ack.message_id);
    assert_eq!(
        (got.sender.as_str(), got.content.as_str()),
        ("alice", "is it still available?")
    );
    assert_eq!(got.created_at_ms, ack.created_at_ms);
    // The sender's other device gets it too; the sending session gets only the Ack.
    assert_eq!(alice_phone.next_message().await.id, ack.message_id);
    alice
        .expect_none(Duration::from_millis(300), is_message)
        .await;

    let reply = bob.send_text(conv, "r1", "yes!").await;
    assert_eq!(alice.next_message().await.id, reply.message_id);
    assert_eq!(alice_phone.next_message().await.id, reply.message_id);
    assert!(reply.message_id > ack.message_id, "ids are time-ordered");
}

#[tokio::test]
async fn retried_send_returns_the_first_ack_and_delivers_once() {
    let gw = Gateway::start(&[]);
    let conv = direct(&gw, "alice", "bob", "l").await;
    let mut alice = Client::connect(&gw, "alice").await;
    let mut bob = Client::connect(&gw, "bob").await;
    let first = alice.send_text(conv, "retry-me", "hello").await;
    let second = alice.send_text(conv, "retry-me", "hello").await;
    assert_eq!(second.message_id, first.message_id);
    assert_eq!(second.created_at_ms, first.created_at_ms);
    assert!(!first.duplicate && second.duplicate);
    assert_eq!(bob.next_message().await.id, first.message_id);
    bob.expect_none(Duration::from_millis(300), is_message)
        .await;
    let (_, page, _) = get(&gw, "bob", &format!("/api/conversations/{conv}/messages")).await;
    assert_eq!(page["messages"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn typing_is_relayed_and_ends_by_itself_and_on_disconnect() {
    let gw = Gateway::start(&["--typing-ttl-ms", "400"]);
    let conv = direct(&gw, "alice", "bob", "l").await;
    let mut alice = Client::connect(&gw, "alice").await;
    let mut bob = Client::connect(&gw, "bob").await;
    let typing = |active| ClientBody::Typing {
        conversation: conv,
        active,
    };
    let is_typing = |f: &ServerFrame| matches!(f.body, ServerBody::Typing { .. });
    let typing_state = |f: ServerFrame| match f.body {
        ServerBody::Typing {
            conversation,
            user,
            active,
        } => (conversation, user, active),
        other => panic!("{other:?}"),
    };

    alice.send(typing(true)).await;
    assert_eq!(
        typing_state(bob.next_where(is_typing).await),
        (conv, "alice".into(), true)
    );
    alice.send(typing(false)).await;
    assert_eq!(
        typing_state(bob.next_where(is_typing).await),
        (conv, "alice".into(), false)
    );

    // No refresh: the server ends it after the TTL.
    alice.send(typing(true)).await;
    let started = tokio::time::Instant::now();
    assert!(typing_state(bob.next_where(is_typing).await).2);
    assert!(!typing_state(bob.next_where(is_typing).await).2);
    assert!(started.elapsed() >= Duration::from_millis(300));
    // The typist never hears their own typing.
    alice
        .expect_none(Duration::from_millis(100), is_typing)
        .await;

    alice.send(typing(true)).await;
    assert!(typing_state(bob.next_where(is_typing).await).2);
    alice.close().await;
    let (_, user, active) = typing_state(bob.next_where(is_typing).await);
    assert_eq!((user.as_str(), active), ("alice", false));
}

#[tokio::test]
async fn read_receipts_move_watermarks_and_unread_counts() {
    let gw = Gateway::start(&[]);
    let conv = direct(&gw, "alice", "bob", "l").await;
    let mut alice = Client::connect(&gw, "alice").await;
    let mut bob = Client::connect(&gw, "bob").await;
    let mut bob_tablet = Client::connect(&gw, "bob").await;
    let mut ids = Vec::new();
    for i in 0..3 {
        ids.push(
            alice
                .send_text(conv, &format!("m{i}"), "hi")
                .await
                .message_id,
        );
    }
    let unread = |json: serde_json::Value| json["total"].as_u64().unwrap();
    let (_, json, _) = get(&gw, "bob", "/api/unread").await;
    assert_eq!(unread(json), 3);

    let r = bob
        .request(ClientBody::Read {
            conversation: conv,
            up_to: ids[1],
        })
        .await;
    assert!(
        matches!(r.body, ServerBody::Ack(Ack { message_id, duplicate: false, .. }) if message_id == ids[1])
    );
    let is_read = |f: &ServerFrame| matches!(f.body, ServerBody::MessageRead { .. });
    for c in [&mut alice, &mut bob_tablet] {
        match c.next_where(is_read).await.body {
            ServerBody::MessageRead {
                conversation,
                reader,
                up_to,
                read_at_ms,
            } => {
                assert_eq!(
                    (conversation, reader.as_str(), up_to),
                    (conv, "bob", ids[1])
                );
                assert!(read_at_ms > 0);
            }
            _ => unreachable!(),
        }
    }
    let (_, json, _) = get(&gw, "bob", "/api/unread").await;
    assert_eq!(unread(json), 1);

    // An id that is not one of this conversation's messages is refused by its seq and moves
    // nothing: one from another conversation (newer than all of these), one from nowhere.
    let other = direct(&gw, "alice", "bob", "other listing").await;
    let foreign = alice.send_text(other, "f", "elsewhere").await.message_id;
    for up_to in [foreign, MessageId(u64::MAX)] {
        let r = bob
            .request(ClientBody::Read {
                conversation: conv,
                up_to,
            })
            .await;
        assert_eq!(error_code(&r), Some(1300), "{r:?}");
    }
    let (_, json, _) = get(&gw, "bob", "/api/unread").await;
    assert_eq!(unread(json), 2, "ids[2] of conv and the one of other");

    // Backwards is a no-op: acknowledged as unchanged, nobody is told.
    let r = bob
        .request(ClientBody::Read {
            conversation: conv,
            up_to: ids[0],
        })
        .await;
    assert!(
        matches!(r.body, ServerBody::Ack(Ack { message_id, duplicate: true, .. }) if message_id == ids[1])
    );
    alice.expect_none(Duration::from_millis(300), is_read).await;
}

#[tokio::test]
async fn presence_goes_to_contacts_only() {
    let gw = Gateway::start(&[]);
    let conv = direct(&gw, "alice", "bob", "l").await;
    let mut bob = Client::connect(&gw, "bob").await;
    let mut stranger = Client::connect(&gw, "stranger").await;
    let is_presence = |f: &ServerFrame| matches!(f.body, ServerBody::Presence { .. });
    let presence = |f: ServerFrame| match f.body {
        ServerBody::Presence {
            user,
            online,
            last_seen_ms,
        } => (user, online, last_seen_ms),
        _ => unreachable!(),
    };

    let alice = Client::connect(&gw, "alice").await;
    assert_eq!(
        presence(bob.next_where(is_presence).await),
        ("alice".into(), true, 0)
    );
    // A second device is not a new "online".
    let alice_phone = Client::connect(&gw, "alice").await;
    alice.close().await;
    bob.expect_none(Duration::from_millis(300), is_presence)
        .await;
    alice_phone.close().await;
    let (user, online, last_seen) = presence(bob.next_where(is_presence).await);
    assert_eq!((user.as_str(), online), ("alice", false));
    assert!(last_seen > 0);
    stranger
        .expect_none(Duration::from_millis(200), is_presence)
        .await;

    // Join answers with the other participants' presence.
    let r = bob.request(ClientBody::Join { conversation: conv }).await;
    assert!(matches!(r.body, ServerBody::Ack(_)));
    let (user, online, last_seen_after) = presence(bob.next_where(is_presence).await);
    assert_eq!(
        (user.as_str(), online, last_seen_after),
        ("alice", false, last_seen)
    );
    let r = bob.request(ClientBody::Leave { conversation: conv }).await;
    assert!(matches!(r.body, ServerBody::Ack(_)));
}

/// Presence is pushed through direct conversations and groups of up to 100; in a bigger group
/// it is asked for (Join).
#[tokio::test]
async fn presence_is_not_pushed_through_big_groups() {
    let gw = Gateway::start(&[]);
    let crowd: Vec<String> = std::iter::once("dave".to_owned())
        .chain((0..99).map(|i| format!("filler{i}")))
        .collect();
    let big = group(&gw, "alice", &crowd, "101 people").await;
    group(&gw, "alice", &["erin".to_owned()], "two").await;
    let mut dave = Client::connect(&gw, "dave").await;
    let mut erin = Client::connect(&gw, "erin").await;
    let mut alice = Client::connect(&gw, "alice").await;
    let alice_online = |f: &ServerFrame| matches!(&f.body, ServerBody::Presence { user, online: true, .. } if user == "alice");
    erin.next_where(alice_online).await;
    // The announcement is made before alice's first frame is handled, so anything sent to
    // dave comes before her message.
    alice.send_text(big, "m1", "hello all").await;
    let first = dave
        .next_where(|f| alice_online(f) || matches!(f.body, ServerBody::MessageNew(_)))
        .await;
    assert!(matches!(first.body, ServerBody::MessageNew(_)), "{first:?}");
    // Asked for, it is there.
    let r = dave.request(ClientBody::Join { conversation: big }).await;
    assert!(matches!(r.body, ServerBody::Ack(_)));
    dave.next_where(alice_online).await;
}

#[tokio::test]
async fn history_pages_newest_first_over_the_socket() {
    let gw = Gateway::start(UNLIMITED);
    let conv = direct(&gw, "alice", "bob", "l").await;
    let mut alice = Client::connect(&gw, "alice").await;
    let mut sent = Vec::new();
    for i in 0..120 {
        sent.push(
            alice
                .send_text(conv, &format!("m{i}"), &format!("#{i}"))
                .await
                .message_id,
        );
    }
    let mut bob = Client::connect(&gw, "bob").await;
    let mut seen = Vec::new();
    let mut before = None;
    let mut sizes = Vec::new();
    loop {
        let page = bob
            .request(ClientBody::History {
                conversation: conv,
                before,
                limit: 0,
            })
            .await;
        let ServerBody::HistoryPage {
            messages,
            next_before,
            ..
        } = page.body
        else {
            panic!("{page:?}")
        };
        sizes.push(messages.len());
        seen.extend(messages.iter().map(|m| m.id));
        match next_before {
            Some(b) => before = Some(b),
            None => break,
        }
    }
    assert_eq!(sizes, vec![50, 50, 20], "default page is 50");
    sent.reverse();
    assert_eq!(seen, sent);
    let big = bob
        .request(ClientBody::History {
            conversation: conv,
            before: None,
            limit: 1000,
        })
        .await;
    assert!(
        matches!(big.body, ServerBody::HistoryPage { ref messages, .. } if messages.len() == 100)
    );
}

#[tokio::test]
async fn conversation_list_has_last_message_and_unread_counts() {
    let gw = Gateway::start(&[]);
    let c1 = direct(&gw, "buyer", "seller1", "l").await;
    let c2 = direct(&gw, "buyer", "seller2", "l").await;
    let c3 = direct(&gw, "buyer", "seller3", "l").await;
    let mut s2 = Client::connect(&gw, "seller2").await;
    s2.send_text(c2, "a", "first").await;
    let mut s1 = Client::connect(&gw, "seller1").await;
    s1.send_text(c1, "b", "one").await;
    s1.send_text(c1, "c", "two").await;

    let mut buyer = Client::connect(&gw, "buyer").await;
    let page = buyer
        .request(ClientBody::Conversations {
            cursor: None,
            limit: 2,
            query: None,
        })
        .await;
    let ServerBody::ConversationPage { items, next_cursor } = page.body else {
        panic!("{page:?}")
    };
    assert_eq!(items.len(), 2);
    assert_eq!(items[0].conversation.id, c1, "most recent activity first");
    assert_eq!(items[0].unread, 2);
    assert_eq!(items[0].last_message.as_ref().unwrap().content, "two");
    assert_eq!(items[1].conversation.id, c2);
    assert_eq!(items[1].unread, 1);
    let page = buyer
        .request(ClientBody::Conversations {
            cursor: next_cursor,
            limit: 2,
            query: None,
        })
        .await;
    let ServerBody::ConversationPage { items, next_cursor } = page.body else {
        panic!("{page:?}")
    };
    assert_eq!(items.len(), 1);
    assert_eq!(items[0].conversation.id, c3);
    assert!(items[0].last_message.is_none());
    assert!(next_cursor.is_none());

    let (status, json, _) = get(&gw, "buyer", "/api/conversations?limit=10").await;
    assert_eq!(status, 200);
    let list = json["conversations"].as_array().unwrap();
    assert_eq!(list.len(), 3);
    assert_eq!(list[0]["unreadCount"], 2);
    assert_eq!(list[0]["lastMessage"]["content"], "two");
    assert_eq!(list[0]["sellerId"], "seller1");
}

/// A client before protocol 1.1 resumes by message id.
#[tokio::test]
async fn resume_by_id_replays_missed_messages_without_gap_or_duplicate() {
    let gw = Gateway::start(UNLIMITED);
    let conv = direct(&gw, "alice", "bob", "l").await;
    let mut alice = Client::connect(&gw, "alice").await;
    let mut bob = Client::connect(&gw, "bob").await;
    let mut all = Vec::new();
    for i in 0..5 {
        all.push(
            alice
                .send_text(conv, &format!("a{i}"), "x")
                .await
                .message_id,
        );
    }
    let mut received = Vec::new();
    for _ in 0..5 {
        received.push(bob.next_message().await.id);
    }
    bob.close().await;
    for i in 5..12 {
        all.push(
            alice
                .send_text(conv, &format!("a{i}"), "y")
                .await
                .message_id,
        );
    }
    let last = *received.last().unwrap();
    let mut bob = Client::connect_resume(&gw, "bob", vec![resume_point_by_id(conv, last)]).await;
    for _ in 5..12 {
        received.push(bob.next_message().await.id);
    }
    let resumed = bob
        .next_where(|f| matches!(f.body, ServerBody::Resumed { .. }))
        .await;
    assert!(matches!(
        resumed.body,
        ServerBody::Resumed { replayed: 7, complete: true, conversation, last_seq: 12 }
            if conversation == conv
    ));
    // Live messages follow the replay.
    all.push(alice.send_text(conv, "live", "z").await.message_id);
    received.push(bob.next_message().await.id);
    assert_eq!(received, all);
    bob.expect_none(Duration::from_millis(300), is_message)
        .await;
}

#[tokio::test]
async fn resume_under_a_steady_send_load_loses_and_repeats_nothing() {
    let gw = Gateway::start(UNLIMITED);
    let conv = direct(&gw, "alice", "bob", "l").await;
    let addr = gw.addr;
    // Bob is online before the first message, so he gets every one of them live from seq 1.
    let mut bob = Client::connect(&gw, "bob").await;
    let sender = tokio::spawn(async move {
        let mut alice = Client::connect_at(addr, "alice", vec![]).await;
        let mut ids = Vec::new();
        for i in 0..300 {
            ids.push(
                alice
                    .send_text(conv, &format!("m{i}"), "load")
                    .await
                    .message_id,
            );
        }
        ids
    });
    let mut received: Vec<MessageId> = Vec::new();
    let mut at = Position::default();
    // Drop off three times while alice keeps sending, resuming from the last message.
    for drop_after in [40, 110, 190, 300] {
        while received.len() < drop_after {
            let m = bob.next_message().await;
            assert_eq!(m.seq, at.seq + 1, "in seq order");
            at = Position::of(&m);
            received.push(m.id);
        }
        if drop_after == 300 {
            break;
        }
        drop(bob);
        bob = Client::connect_resume(&gw, "bob", vec![resume_point(conv, at)]).await;
    }
    let sent = sender.await.unwrap();
    assert_eq!(received, sent, "every message once, in order");
    bob.expect_none(Duration::from_millis(300), is_message)
        .await;
}

#[tokio::test]
async fn group_messages_reach_every_member() {
    let gw = Gateway::start(&[]);
    let members: Vec<String> = (0..60).map(|i| format!("member{i}")).collect();
    let conv = group(&gw, "host", &members, "Garage sale").await;
    let mut clients = Vec::new();
    for m in &members {
        clients.push(Client::connect(&gw, m).await);
    }
    // Members learned about the group when it was created only if online; now chat.
    let mut host = Client::connect(&gw, "host").await;
    let mut ids = Vec::new();
    for i in 0..10 {
        ids.push(
            host.send_text(conv, &format!("h{i}"), &format!("item {i}"))
                .await
                .message_id,
        );
    }
    for c in &mut clients {
        for id in &ids {
            assert_eq!(c.next_message().await.id, *id, "{} in order", c.user);
        }
    }
    // A member's reply reaches the host and the other members.
    let reply = clients[7].send_text(conv, "r", "dibs").await;
    assert_eq!(host.next_message().await.id, reply.message_id);
    assert_eq!(clients[0].next_message().await.id, reply.message_id);
}

#[tokio::test]
async fn rest_sends_are_delivered_live_and_idempotent() {
    let gw = Gateway::start(&[]);
    let conv = direct(&gw, "alice", "bot", "l").await;
    let mut alice = Client::connect(&gw, "alice").await;
    let path = format!("/api/conversations/{conv}/messages");
    let body = r#"{"content":"Your item shipped"}"#;
    let headers = [("idempotency-key", "ship-1")];
    let (status, json, _) = http(
        gw.addr,
        "POST",
        &path,
        Some(&token("bot")),
        Some(body),
        &headers,
    )
    .await;
    assert_eq!(status, 201, "{json}");
    let id: u64 = json["id"].as_str().unwrap().parse().unwrap();
    let m = alice.next_message().await;
    assert_eq!(
        (m.id.0, m.sender.as_str(), m.content.as_str()),
        (id, "bot", "Your item shipped")
    );
    let (status, json, headers) = http(
        gw.addr,
        "POST",
        &path,
        Some(&token("bot")),
        Some(body),
        &headers,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(json["id"].as_str().unwrap(), id.to_string());
    assert_eq!(headers.get("idempotent-replayed").unwrap(), "true");
    alice
        .expect_none(Duration::from_millis(300), is_message)
        .await;
}

#[tokio::test]
async fn deleting_a_conversation_tells_its_participants() {
    let gw = Gateway::start(&[]);
    let conv = direct(&gw, "alice", "bob", "l").await;
    let mut bob = Client::connect(&gw, "bob").await;
    let path = format!("/api/conversations/{conv}");
    let (status, _, _) = delete(&gw, "mallory", &path).await;
    assert_eq!(status, 403);
    let (status, _, _) = delete(&gw, "alice", &path).await;
    assert_eq!(status, 204);
    let f = bob
        .next_where(|f| matches!(f.body, ServerBody::ConversationDeleted { .. }))
        .await;
    assert!(
        matches!(f.body, ServerBody::ConversationDeleted { conversation, ref by } if conversation == conv && by == "alice")
    );
    let r = bob.request(send_text(conv, "x", "hello?")).await;
    assert_eq!(error_code(&r), Some(1200));
}

#[tokio::test]
async fn a_slow_consumer_is_cut_off_while_others_keep_receiving() {
    let args = [UNLIMITED, &["--outbox-frames", "64"]].concat();
    let gw = Gateway::start(&args);
    let conv = group(&gw, "seller", &["slow".into(), "fast".into()], "auction").await;
    let mut slow = Client::connect(&gw, "slow").await;
    let mut fast = Client::connect(&gw, "fast").await;
    let mut seller = Client::connect(&gw, "seller").await;
    let fast_reader = tokio::spawn(async move {
        let mut ids = Vec::new();
        for _ in 0..3000 {
            ids.push(fast.next_message().await.id);
        }
        ids
    });
    // `slow` reads nothing while 3 000 messages of ~4 KB each (12 MB) are sent: more than the
    // socket buffers hold, so its outbox overflows.
    let text = "x".repeat(3900);
    let mut sent = Vec::new();
    for i in 0..3000 {
        sent.push(
            seller
                .send_text(conv, &format!("m{i}"), &text)
                .await
                .message_id,
        );
    }
    assert_eq!(
        fast_reader.await.unwrap(),
        sent,
        "the fast member got everything in order"
    );
    let closed = slow.closed().await;
    assert_eq!(closed.error, Some(1500), "slow consumer error frame");
    assert_eq!(closed.code, Some(4500), "slow consumer close code");
}

#[tokio::test]
async fn metrics_count_connections_frames_deliveries_and_errors() {
    let gw = Gateway::start(&[]);
    let conv = direct(&gw, "alice", "bob", "l").await;
    let mut alice = Client::connect(&gw, "alice").await;
    let mut bob = Client::connect(&gw, "bob").await;
    alice.send_text(conv, "m1", "hello").await;
    bob.next_message().await;
    let unknown = parley_types::ConversationId::random();
    let r = alice.request(send_text(unknown, "m2", "lost")).await;
    assert_eq!(error_code(&r), Some(1200));
    let stream = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    drop(stream);
    let (status, body, _) = http(gw.addr, "GET", "/metrics", None, None, &[]).await;
    assert_eq!(status, 200);
    let text = body.as_str().unwrap().to_owned();
    let value = |prefix: &str| -> f64 {
        text.lines()
            .filter(|l| l.starts_with(prefix))
            .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
            .sum()
    };
    assert_eq!(value("parley_connections{transport=\"ws\""), 2.0, "{text}");
    assert_eq!(value("parley_frames_in_total{type=\"send\"}"), 2.0);
    assert_eq!(value("parley_frames_in_total{type=\"hello\"}"), 2.0);
    assert_eq!(value("parley_frames_out_total{type=\"message_new\"}"), 1.0);
    assert!(value("parley_deliveries_total") >= 1.0);
    assert_eq!(value("parley_errors_total{code=\"1200\""), 1.0, "{text}");
    assert_eq!(value("parley_send_to_deliver_seconds_count"), 1.0);
    assert!(value("parley_storage_seconds_count{op=\"write\"}") >= 2.0);
    assert!(value("process_resident_memory_bytes") > 1e6);
    assert_eq!(value("parley_online_users"), 2.0);
}

#[tokio::test]
async fn reads_show_how_far_the_others_have_read_except_across_a_block() {
    let gw = Gateway::start(&[]);
    let conv = group(&gw, "seller", &["ann".into(), "ben".into()], "bikes").await;
    let path = format!("/api/conversations/{conv}/messages");
    let mut ids = Vec::new();
    for text in ["one", "two"] {
        let (status, json, _) =
            post(&gw, "seller", &path, &format!(r#"{{"content":"{text}"}}"#)).await;
        assert_eq!(status, 201, "{json}");
        ids.push(json["id"].as_str().unwrap().to_owned());
    }
    let reads = format!("/api/conversations/{conv}/reads");
    let users = |v: &serde_json::Value| -> Vec<(String, String, u64)> {
        v["reads"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r["userId"].as_str().unwrap().to_owned(),
                    r["upTo"].as_str().unwrap().to_owned(),
                    r["seq"].as_u64().unwrap(),
                )
            })
            .collect()
    };
    // Nobody but the sender has read: ann sees the seller's own watermark only (sending reads).
    let (status, json, _) = get(&gw, "ann", &reads).await;
    assert_eq!(status, 200, "{json}");
    assert_eq!(users(&json), vec![("seller".into(), ids[1].clone(), 2)]);
    let read = format!("/api/conversations/{conv}/read");
    let (status, _, _) = post(&gw, "ben", &read, &format!(r#"{{"upTo":"{}"}}"#, ids[0])).await;
    assert_eq!(status, 200);
    let (_, json, _) = get(&gw, "seller", &reads).await;
    assert_eq!(users(&json), vec![("ben".into(), ids[0].clone(), 1)]);
    assert!(json["reads"][0]["readAt"].as_str().unwrap().ends_with('Z'));
    // A block between ann and ben hides ben's receipts from ann (and only from her).
    let (status, _, _) = post(&gw, "ann", "/api/blocks", r#"{"userId":"ben"}"#).await;
    assert_eq!(status, 204);
    let (_, json, _) = get(&gw, "ann", &reads).await;
    assert_eq!(users(&json), vec![("seller".into(), ids[1].clone(), 2)]);
    let (_, json, _) = get(&gw, "seller", &reads).await;
    assert_eq!(users(&json).len(), 1);
    // Not a participant: 403; no such conversation: 404.
    assert_eq!(get(&gw, "mallory", &reads).await.0, 403);
    let unknown = format!(
        "/api/conversations/{}/reads",
        parley_types::ConversationId::random()
    );
    assert_eq!(get(&gw, "ann", &unknown).await.0, 404);
}
