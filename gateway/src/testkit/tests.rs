//! The executor, resume, fan-out, slow consumers, retries and the bus, in memory under a paused
//! clock: whole nodes with several shards, no sockets, no sleeps.

use std::time::Duration;

use parley_proto::{Ack, ClientBody, ErrorCode, ResumePoint, ServerBody, close};
use parley_types::{ConversationId, Position};

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

fn point(conversation: ConversationId, at: Position) -> ResumePoint {
    ResumePoint::at(conversation, at)
}

/// Where an Ack puts its sender.
fn acked(a: &Ack) -> Position {
    Position {
        seq: a.message_seq,
        id: a.message_id,
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
        let mut acks = Vec::new();
        for i in 0..5 {
            acks.push(alice.send_text(c, &format!("m{i}"), "x").await);
        }
        let seqs: Vec<u64> = acks.iter().map(|a| a.message_seq).collect();
        assert_eq!(seqs, vec![1, 2, 3, 4, 5]);
        let mut bob = n.connect(1, "bob", vec![point(c, acked(&acks[1]))]).await;
        let mut got = Vec::new();
        loop {
            let f = bob.next().await;
            match f.body {
                ServerBody::MessageNew(m) => got.push(m.id),
                ServerBody::Resumed {
                    replayed,
                    complete,
                    last_seq,
                    ..
                } => {
                    assert_eq!((replayed, complete, last_seq), (3, true, 5));
                    break;
                }
                _ => {}
            }
        }
        let ids: Vec<_> = acks.iter().map(|a| a.message_id).collect();
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
        let resume = vec![point(c, Position::default())];
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
async fn a_send_stalled_after_storage_holds_up_only_its_conversation_until_the_fill() {
    local(async {
        let n = node(Options::default());
        let c = direct(&n, "alice", "bob").await;
        let other = direct(&n, "carol", "bob").await;
        let mut alice = n.connect(0, "alice", vec![]).await;
        let mut bob = n.connect(1, "bob", vec![]).await;
        let mut carol = n.connect(0, "carol", vec![]).await;
        bob.send_text(c, "hello", "first").await;
        assert_eq!(alice.next_message().await.seq, 1);
        n.gates.close("slow");
        let start = tokio::time::Instant::now();
        // Stored as seq 2, then stuck before delivery.
        let slow = alice.send(text(c, "slow", "stuck after storage"));
        n.gates.reached("slow").await;
        // Another conversation is not held up at all.
        let elsewhere = carol.send_text(other, "c1", "unrelated").await;
        assert_eq!(bob.next_message().await.id, elsewhere.message_id);
        assert_eq!(start.elapsed(), Duration::ZERO);
        // Bob's reply is seq 3: it waits for seq 2, which comes from storage after the fill
        // delay — in order, to both.
        let fast = bob.send(text(c, "fast", "hi"));
        let first = alice.next_message().await;
        assert_eq!(
            (first.seq, first.content.as_str()),
            (2, "stuck after storage")
        );
        let second = alice.next_message().await;
        assert_eq!((second.seq, second.content.as_str()), (3, "hi"));
        assert_eq!(start.elapsed(), crate::state::sequencer::FILL_AFTER);
        let got = bob.next_message().await;
        assert_eq!((got.seq, got.content.as_str()), (2, "stuck after storage"));
        let ack = bob.next_where(|f| f.seq == fast).await;
        assert!(
            matches!(ack.body, ServerBody::Ack(a) if a.message_seq == 3),
            "{ack:?}"
        );
        // The stalled Send is still answered once it gets going, and nothing is repeated.
        n.gates.open("slow");
        let ack = alice.next_where(|f| f.seq == slow).await;
        assert!(
            matches!(ack.body, ServerBody::Ack(a) if a.message_seq == 2),
            "{ack:?}"
        );
        for who in [&mut alice, &mut bob] {
            let rest = who.drain_for(Duration::from_secs(1)).await;
            assert!(!rest.iter().any(is_message), "no repeats: {rest:?}");
        }
        let stats = &n.node.chat.delivery.lines.stats;
        assert_eq!(stats.fills.load(std::sync::atomic::Ordering::Relaxed), 1);
    })
    .await;
}

/// The defect this order fixes: two senders on different shards, the earlier seq delayed
/// between storage and delivery. A reader that got only the later one and resumed from it
/// would never see the earlier one; now it gets them in seq order, so its resume point always
/// has everything before it.
#[tokio::test(start_paused = true)]
async fn senders_on_two_shards_reach_a_reader_in_seq_order_and_a_resume_loses_nothing() {
    local(async {
        let n = node(Options::default());
        let members = vec!["bob".to_string(), "carol".into()];
        let g = n
            .node
            .chat
            .create_group("alice", &members, "deal", Now::get())
            .await
            .expect("group")
            .id;
        let mut alice = n.connect(0, "alice", vec![]).await;
        let mut bob = n.connect(1, "bob", vec![]).await;
        let mut carol = n.connect(1, "carol", vec![]).await;
        n.gates.close("a1");
        let a1 = alice.send(text(g, "a1", "from shard 0"));
        n.gates.reached("a1").await;
        let b1 = bob.send_text(g, "b1", "from shard 1").await;
        assert_eq!(b1.message_seq, 2, "alice's message took seq 1");
        // Carol reads one message and drops off.
        let first = carol.next_message().await;
        assert_eq!(first.seq, 1, "seq 1 first: {first:?}");
        let at = Position::of(&first);
        carol.disconnect().await;
        n.gates.open("a1");
        alice.next_where(|f| f.seq == a1).await;
        let mut carol = n.connect(1, "carol", vec![point(g, at)]).await;
        let replayed = carol.next_message().await;
        assert_eq!((replayed.seq, replayed.id), (2, b1.message_id));
        let rest = carol.drain_for(Duration::from_secs(1)).await;
        assert!(!rest.iter().any(is_message), "{rest:?}");
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn a_message_stalled_before_the_bus_reaches_the_other_node_in_order() {
    local(async {
        let broker = MemoryBroker::new();
        let (one, two) = cluster(&broker);
        let c = direct(&one, "alice", "bob").await;
        let mut alice = one.connect(0, "alice", vec![]).await;
        let mut bob = two.connect(1, "bob", vec![]).await;
        let mut bob_phone = two.connect(0, "bob", vec![]).await;
        bus_connected(&one).await;
        bus_connected(&two).await;
        // Alice's message is stored on node 1 and stalls before it is published; bob's reply
        // on node 2 comes after it.
        one.gates.close("a1");
        let a1 = alice.send(text(c, "a1", "first"));
        one.gates.reached("a1").await;
        let b1 = bob.send(text(c, "b1", "second"));
        // Bob's other device, a fresh line on node 2, gets both in order (look-back).
        let first = bob_phone.next_message().await;
        assert_eq!((first.seq, first.content.as_str()), (1, "first"));
        assert_eq!(bob_phone.next_message().await.seq, 2);
        let got = bob.next_message().await;
        assert_eq!(got.seq, 1);
        let ack = bob.next_where(|f| f.seq == b1).await;
        assert!(
            matches!(ack.body, ServerBody::Ack(a) if a.message_seq == 2),
            "{ack:?}"
        );
        // Node 1 starts its line the same way (look-back): alice sees her own message from
        // storage while her Send is still held, then bob's, in order. (Waiting for them here,
        // with the Send still held, is what makes this deterministic: opened earlier, the Ack
        // could take seq 1's place in node 1's line before its look-back ran.)
        assert_eq!(alice.next_message().await.seq, 1);
        assert_eq!(alice.next_message().await.seq, 2);
        one.gates.open("a1");
        alice.next_where(|f| f.seq == a1).await;
        let rest = bob_phone.drain_for(Duration::from_secs(1)).await;
        assert!(!rest.iter().any(is_message), "no repeats: {rest:?}");
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
