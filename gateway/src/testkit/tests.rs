//! The executor, resume, fan-out, slow consumers, retries and the bus, in memory under a paused
//! clock: whole nodes with several shards, no sockets, no sleeps.

use std::time::Duration;

use parley_proto::{ClientBody, ErrorCode, ResumePoint, ServerBody, close};
use parley_types::{ConversationId, MessageId};

use super::client::{is_message, text};
use super::*;
use crate::clock::Now;

fn node(o: Options) -> TestNode {
    TestNode::start(o)
}

async fn direct(n: &TestNode, buyer: &str, seller: &str) -> ConversationId {
    let created = n
        .node
        .chat
        .create_direct(buyer, seller, "listing-1", Now::get())
        .await
        .expect("create");
    created.conversation.id
}

fn point(conversation: ConversationId, last: MessageId) -> ResumePoint {
    ResumePoint {
        conversation,
        last_message_id: last,
    }
}

#[tokio::test(start_paused = true)]
async fn a_message_reaches_the_other_shard_and_the_senders_other_devices() {
    local(async {
        let n = node(Options::default());
        let c = direct(&n, "alice", "bob").await;
        let mut alice = n.connect(0, "alice", vec![]).await;
        let mut alice_phone = n.connect(1, "alice", vec![]).await;
        let mut bob = n.connect(1, "bob", vec![]).await;
        let ack = alice.send_text(c, "m1", "hello").await;
        assert!(!ack.duplicate);
        let m = bob.next_message().await;
        assert_eq!((m.id, m.content.as_str()), (ack.message_id, "hello"));
        assert_eq!(alice_phone.next_message().await.id, ack.message_id);
        // The sending session gets the Ack, not a copy.
        let rest = alice.drain_for(Duration::from_secs(1)).await;
        assert!(!rest.iter().any(is_message), "{rest:?}");
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn join_answers_with_the_others_presence() {
    local(async {
        let n = node(Options::default());
        let c = direct(&n, "alice", "bob").await;
        let mut bob = n.connect(1, "bob", vec![]).await;
        let mut alice = n.connect(0, "alice", vec![]).await;
        // Bob hears alice come online.
        let p = bob
            .next_where(|f| matches!(f.body, ServerBody::Presence { .. }))
            .await;
        assert!(
            matches!(p.body, ServerBody::Presence { online: true, ref user, .. } if user == "alice")
        );
        let ack = alice.request(ClientBody::Join { conversation: c }).await;
        assert!(matches!(ack.body, ServerBody::Ack(_)), "{ack:?}");
        let p = alice
            .next_where(|f| matches!(f.body, ServerBody::Presence { .. }))
            .await;
        assert_eq!(p.seq, 0, "presence is pushed, not an answer");
        assert!(
            matches!(p.body, ServerBody::Presence { online: true, ref user, .. } if user == "bob"),
            "{p:?}"
        );
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn resume_replays_what_was_missed_then_goes_live_without_duplicates() {
    local(async {
        let n = node(Options::default());
        let c = direct(&n, "alice", "bob").await;
        let mut alice = n.connect(0, "alice", vec![]).await;
        let mut ids = Vec::new();
        for i in 0..5 {
            ids.push(alice.send_text(c, &format!("m{i}"), "x").await.message_id);
        }
        let mut bob = n.connect(1, "bob", vec![point(c, ids[1])]).await;
        let mut got = Vec::new();
        loop {
            let f = bob.next().await;
            match f.body {
                ServerBody::MessageNew(m) => got.push(m.id),
                ServerBody::Resumed {
                    replayed, complete, ..
                } => {
                    assert_eq!((replayed, complete), (3, true));
                    break;
                }
                _ => {}
            }
        }
        assert_eq!(got, ids[2..]);
        let live = alice.send_text(c, "m5", "live").await.message_id;
        assert_eq!(bob.next_message().await.id, live);
        let rest = bob.drain_for(Duration::from_secs(1)).await;
        assert!(!rest.iter().any(is_message), "no duplicate: {rest:?}");
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn messages_sent_during_a_replay_are_held_and_released_once() {
    local(async {
        let n = node(Options::default());
        let c = direct(&n, "alice", "bob").await;
        let mut alice = n.connect(0, "alice", vec![]).await;
        let first = alice.send_text(c, "m0", "before").await.message_id;
        // Bob starts resuming; alice sends while that runs (same virtual instant).
        let mut bob = n.open(1, "bob");
        let resume = vec![point(c, MessageId(0))];
        let hello = bob.hello(resume);
        let send = alice.send_text(c, "m1", "during");
        let (_, ack) = tokio::join!(hello, send);
        let mut got = Vec::new();
        for f in bob.drain_for(Duration::from_secs(1)).await {
            if let ServerBody::MessageNew(m) = f.body {
                got.push(m.id);
            }
        }
        assert_eq!(got, vec![first, ack.message_id], "each once, in order");
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn a_retried_send_is_stored_and_delivered_once() {
    local(async {
        let n = node(Options::default());
        let c = direct(&n, "alice", "bob").await;
        let mut alice = n.connect(0, "alice", vec![]).await;
        let mut bob = n.connect(1, "bob", vec![]).await;
        let a = alice.send_text(c, "same", "once").await;
        let b = alice.send_text(c, "same", "once").await;
        assert!(!a.duplicate && b.duplicate);
        assert_eq!(a.message_id, b.message_id);
        let got: Vec<_> = bob
            .drain_for(Duration::from_secs(1))
            .await
            .into_iter()
            .filter(is_message)
            .collect();
        assert_eq!(got.len(), 1, "{got:?}");
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn a_session_that_does_not_read_is_closed_as_a_slow_consumer_and_others_go_on() {
    local(async {
        let n = node(Options {
            settings: Settings {
                outbox_frames: 16,
                ..Settings::default()
            },
            ..Options::default()
        });
        let c = direct(&n, "alice", "bob").await;
        let mut alice = n.connect(0, "alice", vec![]).await;
        let mut slow = n.connect(1, "bob", vec![]).await;
        let mut fast = n.connect(1, "bob", vec![]).await;
        for i in 0..40 {
            alice.send_text(c, &format!("m{i}"), "x").await;
            // The fast device keeps up.
            fast.next_message().await;
        }
        let closing = slow.closed().await;
        assert_eq!(closing.error, Some(ErrorCode::SlowConsumer));
        assert_eq!(closing.close_code, 4500);
        let last = slow.pending().back().cloned().expect("a final frame");
        assert!(matches!(
            last.body,
            ServerBody::Error {
                code: 1500,
                fatal: true,
                ..
            }
        ));
        alice.send_text(c, "after", "still fine").await;
        assert_eq!(fast.next_message().await.content, "still fine");
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn silence_ends_a_session_at_the_idle_timeout_and_typing_expires() {
    local(async {
        let n = node(Options::default());
        let c = direct(&n, "alice", "bob").await;
        let mut alice = n.connect(0, "alice", vec![]).await;
        let mut bob = n.connect(1, "bob", vec![]).await;
        alice.send(ClientBody::Typing {
            conversation: c,
            active: true,
        });
        let start = tokio::time::Instant::now();
        let on = bob
            .next_where(|f| matches!(f.body, ServerBody::Typing { active: true, .. }))
            .await;
        assert_eq!(on.seq, 0);
        let off = bob
            .next_where(|f| matches!(f.body, ServerBody::Typing { active: false, .. }))
            .await;
        assert_eq!(off.seq, 0);
        assert_eq!(
            start.elapsed(),
            n.node.limits.typing_ttl,
            "the server ended it on time"
        );
        let closing = alice.closed().await;
        assert_eq!(closing.error, Some(ErrorCode::IdleTimeout));
        assert_eq!(start.elapsed(), n.node.limits.idle_timeout);
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn shutdown_sends_goaway_and_closes_every_session() {
    local(async {
        let n = node(Options::default());
        let mut a = n.connect(0, "alice", vec![]).await;
        let mut b = n.connect(1, "bob", vec![]).await;
        n.shutdown();
        for c in [&mut a, &mut b] {
            let g = c
                .next_where(|f| matches!(f.body, ServerBody::Goaway { .. }))
                .await;
            assert_eq!(g.seq, 0);
            let closing = c.closed().await;
            assert_eq!(closing.close_code, close::SERVICE_RESTART);
        }
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn two_nodes_on_one_bus_deliver_to_each_other() {
    local(async {
        let broker = MemoryBroker::new();
        let (one, two) = cluster(&broker);
        let c = direct(&one, "alice", "bob").await;
        let mut alice = one.connect(0, "alice", vec![]).await;
        let mut bob = two.connect(1, "bob", vec![]).await;
        bus_connected(&two).await;
        let ack = alice.send_text(c, "m1", "across").await;
        assert_eq!(bob.next_message().await.id, ack.message_id);
        bob.send(text(c, "r1", "back"));
        assert_eq!(alice.next_message().await.content, "back");
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn a_bus_that_lost_events_makes_every_local_session_resync() {
    local(async {
        let broker = MemoryBroker::new();
        let (one, two) = cluster(&broker);
        let c = direct(&one, "alice", "bob").await;
        let mut alice = one.connect(0, "alice", vec![]).await;
        let mut bob = two.connect(1, "bob", vec![]).await;
        bus_connected(&two).await;
        // Node 2 has read from the bus...
        alice.send_text(c, "m1", "read").await;
        bob.next_message().await;
        // ...then the bus lost everything (Redis restarted without persistence).
        broker.restart_empty();
        for c in [&mut alice, &mut bob] {
            let closing = c.closed().await;
            assert_eq!(closing.error, Some(ErrorCode::Resync));
            assert_eq!(closing.close_code, close::SERVICE_RESTART);
        }
    })
    .await;
}

/// Two nodes (ids 1 and 2) on one memory bus, sharing their storage.
fn cluster(broker: &Arc<MemoryBroker>) -> (TestNode, TestNode) {
    let one = node(Options {
        node_id: 1,
        bus: Some(broker.clone()),
        ..Options::default()
    });
    let two = node(Options {
        node_id: 2,
        bus: Some(broker.clone()),
        storage_of: Some(one.storage()),
        ..Options::default()
    });
    (one, two)
}

/// Waits until the node's bus reader is connected.
async fn bus_connected(n: &TestNode) {
    for _ in 0..1000 {
        if n.node
            .chat
            .bus
            .as_ref()
            .is_some_and(|b| b.stats().connected())
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    panic!("the bus never connected");
}

#[tokio::test(start_paused = true)]
async fn a_send_waiting_on_storage_holds_up_no_one_else() {
    local(async {
        let n = node(Options::default());
        let c = direct(&n, "alice", "bob").await;
        let mut alice = n.connect(0, "alice", vec![]).await;
        let mut bob = n.connect(1, "bob", vec![]).await;
        n.gates.close("slow");
        let slow = alice.send(text(c, "slow", "stuck in storage"));
        // Bob chats on meanwhile, and alice's session receives.
        let fast = bob.send_text(c, "fast", "hi").await;
        assert_eq!(alice.next_message().await.id, fast.message_id);
        assert!(
            !alice.pending().iter().any(|f| f.seq == slow),
            "no answer while storage holds it"
        );
        n.gates.open("slow");
        let ack = alice.next_where(|f| f.seq == slow).await;
        assert!(matches!(ack.body, ServerBody::Ack(_)), "{ack:?}");
        assert_eq!(bob.next_message().await.content, "stuck in storage");
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn the_last_session_closing_takes_the_user_offline() {
    local(async {
        let n = node(Options::default());
        direct(&n, "alice", "bob").await;
        let mut bob = n.connect(1, "bob", vec![]).await;
        let laptop = n.connect(0, "alice", vec![]).await;
        let phone = n.connect(1, "alice", vec![]).await;
        let online = |f: &parley_proto::ServerFrame| {
            matches!(&f.body, ServerBody::Presence { user, online: true, .. } if user == "alice")
        };
        bob.next_where(online).await;
        laptop.disconnect().await;
        let offline = |f: &parley_proto::ServerFrame| {
            matches!(&f.body, ServerBody::Presence { user, online: false, .. } if user == "alice")
        };
        let early = bob.drain_for(Duration::from_secs(1)).await;
        assert!(!early.iter().any(offline), "still online on the phone: {early:?}");
        phone.disconnect().await;
        let p = bob.next_where(offline).await;
        assert!(matches!(p.body, ServerBody::Presence { last_seen_ms, .. } if last_seen_ms > 0));
    })
    .await;
}
