//! Blocks hold on every path between the two users, both ways: group messages (live, history,
//! resume: only their place, kind Hidden), typing, read receipts, presence, new conversations;
//! and in a cluster on every node.
//!
//! The single-node test runs one shard, so every event goes through one inbox in order: a
//! marker message that another user sends after an event was delivered to someone proves the
//! event would have reached the blocked user before the marker. Nothing waits for an absence.

use crate::support::*;
use parley_proto::*;
use parley_types::{ConversationId, MessageKind};

async fn set_block(gw: &Gateway, user: &str, target: &str, blocked: bool) {
    let (status, json, _) = if blocked {
        let body = format!(r#"{{"userId":"{target}"}}"#);
        http(
            gw.addr,
            "POST",
            "/api/blocks",
            Some(&token(user)),
            Some(&body),
            &[],
        )
        .await
    } else {
        let path = format!("/api/blocks/{target}");
        http(gw.addr, "DELETE", &path, Some(&token(user)), None, &[]).await
    };
    assert_eq!(status, 204, "{json}");
}

/// The next MessageNew, or any frame `also` matches, whichever comes first.
async fn next_message_or(c: &mut Client, also: impl Fn(&ServerFrame) -> bool) -> ServerFrame {
    c.next_where(|f| matches!(f.body, ServerBody::MessageNew(_)) || also(f))
        .await
}

fn content(f: &ServerFrame) -> &str {
    match &f.body {
        ServerBody::MessageNew(m) => &m.content,
        other => panic!("expected a message, got {other:?}"),
    }
}

fn typing_of(user: &'static str) -> impl Fn(&ServerFrame) -> bool {
    move |f| matches!(&f.body, ServerBody::Typing { user: u, .. } if u == user)
}

fn read_by(user: &'static str) -> impl Fn(&ServerFrame) -> bool {
    move |f| matches!(&f.body, ServerBody::MessageRead { reader, .. } if reader == user)
}

fn presence_of(user: &'static str, online: bool) -> impl Fn(&ServerFrame) -> bool {
    move |f| matches!(&f.body, ServerBody::Presence { user: u, online: o, .. } if u == user && *o == online)
}

/// Anything of `user`'s: a message, typing, a read receipt, presence.
fn is_from(user: &'static str) -> impl Fn(&ServerFrame) -> bool {
    move |f| match &f.body {
        ServerBody::Typing { user: u, .. }
        | ServerBody::Presence { user: u, .. }
        | ServerBody::MessageRead { reader: u, .. } => u == user,
        ServerBody::MessageNew(m) => m.sender == user,
        _ => false,
    }
}

async fn history(c: &mut Client, conversation: ConversationId) -> Vec<String> {
    let r = c
        .request(ClientBody::History {
            conversation,
            before: None,
            limit: 100,
        })
        .await;
    match r.body {
        ServerBody::HistoryPage { messages, .. } => {
            messages.into_iter().map(|m| m.content).collect()
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_block_stops_every_channel_between_two_users_both_ways() {
    let gw = Gateway::start(&["--shards", "1"]);
    let g = group(&gw, "carol", &["alice".into(), "bob".into()], "three").await;
    let d = direct(&gw, "alice", "bob", "bike").await;
    let mut carol = Client::connect(&gw, "carol").await;
    let mut bob = Client::connect(&gw, "bob").await;
    let mut alice = Client::connect(&gw, "alice").await;
    bob.next_where(presence_of("alice", true)).await;
    let before = alice.send_text(g, "a0", "before the block").await;
    assert_eq!(
        content(&next_message_or(&mut bob, |_| false).await),
        "before the block"
    );

    set_block(&gw, "bob", "alice", true).await;
    let (_, json, _) = get(&gw, "bob", "/api/blocks").await;
    assert_eq!(json["blocks"][0]["userId"], "alice", "{json}");
    assert_eq!(json["blocks"].as_array().unwrap().len(), 1);

    // Group messages, both ways: carol gets them, the other one only their place.
    let a1 = alice.send_text(g, "a1", "from alice").await;
    let b1 = bob.send_text(g, "b1", "from bob").await;
    carol.send_text(g, "c1", "marker 1").await;
    for (c, other, seq) in [
        (&mut alice, "bob", b1.message_seq),
        (&mut bob, "alice", a1.message_seq),
    ] {
        let h = c.next_message().await;
        assert_eq!(
            (h.kind, h.sender.as_str(), h.content.as_str(), h.seq),
            (MessageKind::Hidden, other, "", seq)
        );
        assert!(h.media.is_none() && h.client_msg_id.is_empty());
        assert_eq!(c.next_message().await.content, "marker 1");
    }
    // (Her own marker comes back to her as the Ack.)
    let seen: Vec<String> = [
        carol.next_message().await,
        carol.next_message().await,
        carol.next_message().await,
    ]
    .into_iter()
    .map(|m| m.content)
    .collect();
    assert_eq!(seen, ["before the block", "from alice", "from bob"]);

    // Typing.
    alice
        .send(ClientBody::Typing {
            conversation: g,
            active: true,
        })
        .await;
    carol.next_where(typing_of("alice")).await;
    carol.send_text(g, "c2", "marker 2").await;
    assert_eq!(
        content(&next_message_or(&mut bob, is_from("alice")).await),
        "marker 2"
    );

    // Read receipts.
    let marker2 = alice.next_message().await;
    let r = alice
        .request(ClientBody::Read {
            conversation: g,
            up_to: marker2.id,
        })
        .await;
    assert!(matches!(r.body, ServerBody::Ack(_)), "{r:?}");
    carol.next_where(read_by("alice")).await;
    carol.send_text(g, "c3", "marker 3").await;
    assert_eq!(
        content(&next_message_or(&mut bob, is_from("alice")).await),
        "marker 3"
    );

    // Presence: alice goes offline; carol hears it, bob does not.
    alice.close().await;
    carol.next_where(presence_of("alice", false)).await;
    carol.send_text(g, "c4", "marker 4").await;
    assert_eq!(
        content(&next_message_or(&mut bob, is_from("alice")).await),
        "marker 4"
    );
    // And a Join does not answer with it either.
    let r = bob.request(ClientBody::Join { conversation: g }).await;
    assert!(matches!(r.body, ServerBody::Ack(_)));
    let p = bob
        .next_where(|f| matches!(f.body, ServerBody::Presence { .. }))
        .await;
    assert!(is_from("carol")(&p), "{p:?}");

    // History, both ways (newest first; the other's messages are empty places); carol sees
    // everything.
    let markers = ["marker 4", "marker 3", "marker 2", "marker 1"];
    let of_bob = history(&mut bob, g).await;
    assert_eq!(of_bob, [&markers[..], &["from bob", "", ""]].concat());
    let mut alice = Client::connect(&gw, "alice").await;
    let of_alice = history(&mut alice, g).await;
    assert_eq!(
        of_alice,
        [&markers[..], &["", "from alice", "before the block"]].concat()
    );
    assert_eq!(
        history(&mut carol, g).await,
        [
            &markers[..],
            &["from bob", "from alice", "before the block"]
        ]
        .concat()
    );

    // A resume replay leaves them out too.
    let mut bob2 = Client::connect_resume(
        &gw,
        "bob",
        vec![ResumePoint {
            conversation: g,
            last_message_id: before.message_id,
            last_seq: before.message_seq,
        }],
    )
    .await;
    let mut replayed = Vec::new();
    loop {
        let f = bob2
            .next_where(|f| {
                matches!(
                    f.body,
                    ServerBody::MessageNew(_) | ServerBody::Resumed { .. }
                )
            })
            .await;
        match f.body {
            ServerBody::MessageNew(m) => replayed.push(m.content),
            _ => break,
        }
    }
    assert_eq!(
        replayed,
        [
            "", "from bob", "marker 1", "marker 2", "marker 3", "marker 4"
        ]
    );

    // No new conversations, no direct messages.
    let (status, json, _) = http(
        gw.addr,
        "POST",
        "/api/conversations",
        Some(&token("alice")),
        Some(r#"{"participantIds":["bob","carol"],"title":"again"}"#),
        &[],
    )
    .await;
    assert_eq!(
        (status, json["error"]["code"].as_str()),
        (403, Some("blocked")),
        "{json}"
    );
    let r = alice.request(send_text(d, "a2", "direct")).await;
    assert_eq!(error_code(&r), Some(1202));

    // Unblocked: alice reaches bob again.
    set_block(&gw, "bob", "alice", false).await;
    let (_, json, _) = get(&gw, "bob", "/api/blocks").await;
    assert_eq!(json["blocks"].as_array().unwrap().len(), 0);
    alice.send_text(g, "a3", "after the unblock").await;
    assert_eq!(
        content(&next_message_or(&mut bob, |_| false).await),
        "after the unblock"
    );
}

/// A block made on node 1 holds on node 2 as soon as node 2 has read it from the bus (node 2
/// had the two users' relations cached from before the block).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_block_made_on_one_node_holds_on_the_others() {
    let redis = RedisServer::start();
    let ks = keyspace();
    let n1 = cluster_node(&redis, &ks, 1, &["--shards", "1"]);
    let n2 = cluster_node(&redis, &ks, 2, &["--shards", "1"]);
    let g = group(&n2, "carol", &["alice".into(), "bob".into()], "three").await;
    let mut alice = Client::connect(&n2, "alice").await;
    let mut bob = Client::connect(&n2, "bob").await;
    let mut carol = Client::connect(&n2, "carol").await;
    // Node 2 caches alice's relations (none) delivering this.
    alice.send_text(g, "a0", "before").await;
    assert_eq!(bob.next_message().await.content, "before");
    assert_eq!(carol.next_message().await.content, "before");

    let invalidations = |text: &str| metric_value(text, "parley_block_invalidations_total");
    let seen = invalidations(&metrics(n2.addr).await);
    set_block(&n1, "bob", "alice", true).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while invalidations(&metrics(n2.addr).await) <= seen {
        assert!(
            tokio::time::Instant::now() < deadline,
            "node 2 never heard of the block"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }

    alice.send_text(g, "a1", "after").await;
    carol.send_text(g, "c1", "marker").await;
    let h = bob.next_message().await;
    assert_eq!((h.kind, h.content.as_str()), (MessageKind::Hidden, ""));
    assert_eq!(bob.next_message().await.content, "marker");
    assert_eq!(carol.next_message().await.content, "after");
}

/// A report's ids must resolve (its conversation is the reporter's and the reported user's,
/// its message is in it and theirs; nobody reports themselves), and a reporter files only so
/// many per hour.
#[tokio::test]
async fn reports_must_name_real_things_and_are_limited_per_reporter() {
    let gw = Gateway::start(&["--reports-per-user-per-hour", "2"]);
    let c = direct(&gw, "alice", "bob", "bike").await;
    let other = direct(&gw, "alice", "carol", "bike").await;
    let strangers = direct(&gw, "dave", "erin", "bike").await;
    let mut alice = Client::connect(&gw, "alice").await;
    let mut bob = Client::connect(&gw, "bob").await;
    let mut carol = Client::connect(&gw, "carol").await;
    let by_bob = bob
        .send_text(c, "b1", "pay me outside the site")
        .await
        .message_id;
    let by_alice = alice.send_text(c, "a1", "no thanks").await.message_id;
    let by_carol = carol.send_text(other, "c1", "hello").await.message_id;
    let report =
        |user: &str, conv: Option<ConversationId>, msg: Option<parley_types::MessageId>| {
            let mut body = serde_json::json!({ "userId": user, "reason": "scam" });
            if let Some(c) = conv {
                body["conversationId"] = c.to_string().into();
            }
            if let Some(m) = msg {
                body["messageId"] = m.0.to_string().into();
            }
            body.to_string()
        };
    let cases = [
        (report("alice", Some(c), None), 400, "yourself"),
        (
            report("bob", None, Some(by_bob)),
            400,
            "a message without its conversation",
        ),
        (
            report("dave", Some(strangers), None),
            403,
            "a conversation alice is not in",
        ),
        (report("carol", Some(c), None), 400, "carol is not in c"),
        (
            report("bob", Some(c), Some(parley_types::MessageId(1))),
            400,
            "an unknown message",
        ),
        (
            report("bob", Some(c), Some(by_carol)),
            400,
            "a message of another conversation",
        ),
        (
            report("bob", Some(c), Some(by_alice)),
            400,
            "a message that is not bob's",
        ),
    ];
    for (body, want, what) in &cases {
        let (status, json, _) = post(&gw, "alice", "/api/reports", body).await;
        assert_eq!(status, *want, "{what}: {json}");
    }
    // The refused ones took nothing from the limit: two pass, the third is refused.
    for _ in 0..2 {
        let (status, json, _) = post(
            &gw,
            "alice",
            "/api/reports",
            &report("bob", Some(c), Some(by_bob)),
        )
        .await;
        assert_eq!(status, 201, "{json}");
    }
    let (status, json, headers) =
        post(&gw, "alice", "/api/reports", &report("bob", None, None)).await;
    assert_eq!(status, 429, "{json}");
    assert!(headers.contains_key("retry-after"));
}
