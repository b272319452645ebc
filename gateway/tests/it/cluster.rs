//! A cluster: gateway processes sharing one Redis (fan-out, presence) and one Cassandra
//! (history), started by the tests; the test run provides Cassandra (`PARLEY_CASSANDRA`) and
//! each test its own redis-server.

use std::time::Duration;

use crate::support::cluster_node as node;
use crate::support::*;
use parley_proto::*;
use parley_types::{MessageId, Position};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_share_messages_typing_reads_presence_and_history() {
    let redis = RedisServer::start();
    let ks = keyspace();
    let n1 = node(&redis, &ks, 1, &[]);
    let n2 = node(&redis, &ks, 2, &[]);
    let conv = direct(&n1, "alice", "bob", "bike").await;
    let mut alice = Client::connect(&n1, "alice").await;
    let config = quic_config(&n2);
    let mut bob = Client::quic(n2.quic_addr, &config, "bob", vec![]).await;
    let is_presence = |f: &ServerFrame| matches!(f.body, ServerBody::Presence { .. });
    let p = alice.next_where(is_presence).await;
    assert!(
        matches!(p.body, ServerBody::Presence { ref user, online: true, .. } if user == "bob"),
        "{p:?}"
    );

    let a = alice.send_text(conv, "a1", "across nodes").await;
    let got = bob.next_message().await;
    assert_eq!(
        (got.id, got.content.as_str()),
        (a.message_id, "across nodes")
    );
    let b = bob.send_text(conv, "b1", "and back").await;
    assert_eq!(alice.next_message().await.id, b.message_id);

    bob.send_datagram(ClientBody::Typing {
        conversation: conv,
        active: true,
    });
    let t = alice
        .next_where(|f| matches!(f.body, ServerBody::Typing { .. }))
        .await;
    assert!(matches!(t.body, ServerBody::Typing { ref user, active: true, .. } if user == "bob"));

    let c = alice.send_text(conv, "a2", "read this").await;
    assert_eq!(bob.next_message().await.id, c.message_id);
    bob.request(ClientBody::Read {
        conversation: conv,
        up_to: c.message_id,
    })
    .await;
    let r = alice
        .next_where(|f| matches!(f.body, ServerBody::MessageRead { .. }))
        .await;
    assert!(
        matches!(r.body, ServerBody::MessageRead { ref reader, up_to, .. } if reader == "bob" && up_to == c.message_id)
    );

    // History written through node 1 and node 2, read through node 2's REST API.
    let (status, page, _) = get(&n2, "bob", &format!("/api/conversations/{conv}/messages")).await;
    assert_eq!(status, 200, "{page}");
    let ids: Vec<u64> = page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().parse().unwrap())
        .collect();
    assert_eq!(ids, vec![c.message_id.0, b.message_id.0, a.message_id.0]);

    bob.close().await;
    let p = alice.next_where(is_presence).await;
    assert!(
        matches!(p.body, ServerBody::Presence { ref user, online: false, .. } if user == "bob")
    );
}

/// Receives messages as `user` on `gw`, reconnecting (with resume) whenever the connection
/// ends, until `count` have arrived; returns them in arrival order.
async fn collect(
    mut client: Client,
    gw_addr: std::net::SocketAddr,
    user: &str,
    conv: parley_types::ConversationId,
    count: usize,
) -> Vec<MessageId> {
    let mut got: Vec<MessageId> = Vec::new();
    let mut at = Position::default();
    while got.len() < count {
        match tokio::time::timeout(
            Duration::from_secs(20),
            client.next_where_or_closed(|f| matches!(f.body, ServerBody::MessageNew(_))),
        )
        .await
        {
            Ok(Some(ServerFrame {
                body: ServerBody::MessageNew(m),
                ..
            })) => {
                at = Position::of(&m);
                got.push(m.id);
            }
            Ok(_) => {
                client = Client::connect_at(gw_addr, user, vec![resume_point(conv, at)]).await;
            }
            Err(_) => panic!("{user}: stalled at {} of {count}", got.len()),
        }
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_takes_its_users_offline_and_they_resume_elsewhere() {
    let redis = RedisServer::start();
    let ks = keyspace();
    let mut n1 = node(&redis, &ks, 1, &[]);
    let n2 = node(&redis, &ks, 2, &[]);
    let conv = direct(&n1, "alice", "bob", "l").await;
    let mut bob = Client::connect(&n2, "bob").await;
    let mut alice = Client::connect(&n1, "alice").await;
    let mut acked = Vec::new();
    let mut alice_at = Position::default();
    for i in 0..50 {
        let ack = alice.send_text(conv, &format!("a{i}"), "steady").await;
        alice_at = crate::support::acked(&ack);
        acked.push(ack.message_id);
    }
    // Bob has some of them live.
    let mut got = Vec::new();
    for _ in 0..20 {
        got.push(bob.next_message().await.id);
    }
    n1.kill9();
    let killed = tokio::time::Instant::now();
    let offline = bob
        .next_where(|f| matches!(f.body, ServerBody::Presence { online: false, .. }))
        .await;
    assert!(matches!(offline.body, ServerBody::Presence { ref user, .. } if user == "alice"));
    let took = killed.elapsed();
    assert!(took < Duration::from_secs(15), "offline after {took:?}");

    // Alice comes back on node 2, resumes, and keeps sending.
    let mut alice = Client::connect_resume(&n2, "alice", vec![resume_point(conv, alice_at)]).await;
    for i in 50..80 {
        acked.push(
            alice
                .send_text(conv, &format!("a{i}"), "after")
                .await
                .message_id,
        );
    }
    while got.len() < acked.len() {
        got.push(bob.next_message().await.id);
    }
    assert_eq!(got, acked, "no gap, no duplicate");
    // Every acked message is in Cassandra.
    let page = alice
        .request(ClientBody::History {
            conversation: conv,
            before: None,
            limit: 100,
        })
        .await;
    let ServerBody::HistoryPage { messages, .. } = page.body else {
        panic!("{page:?}")
    };
    let mut stored: Vec<MessageId> = messages.iter().map(|m| m.id).collect();
    stored.reverse();
    assert_eq!(stored, acked);
}

/// Alice on `n1` sends `total` messages 10 ms apart to Bob on `n2`; Redis stops before message
/// `stop_at` and comes back before `restart_at`. Returns what was acked and the distinct
/// messages Bob received (live, or by resuming when his session is told to), in id order.
async fn send_through_redis_outage(
    redis: &mut RedisServer,
    n1: &Gateway,
    n2: &Gateway,
    total: usize,
    stop_at: usize,
    restart_at: usize,
) -> (Vec<MessageId>, Vec<MessageId>) {
    let conv = direct(n1, "alice", "bob", "l").await;
    // Connected (welcomed) before the first send; the task reads on from there.
    let bob = Client::connect_at(n2.addr, "bob", vec![]).await;
    let receiver = {
        let addr = n2.addr;
        tokio::spawn(async move { collect(bob, addr, "bob", conv, total).await })
    };
    let mut alice = Client::connect(n1, "alice").await;
    let mut acked = Vec::new();
    for i in 0..total {
        if i == stop_at {
            redis.stop();
        }
        if i == restart_at {
            redis.restart();
        }
        acked.push(
            alice
                .send_text(conv, &format!("m{i}"), "through the outage")
                .await
                .message_id,
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut got = tokio::time::timeout(Duration::from_secs(90), receiver)
        .await
        .expect("bob got everything in time")
        .unwrap();
    got.sort();
    got.dedup();
    (acked, got)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restart_during_a_send_load_loses_nothing() {
    let mut redis = RedisServer::start();
    let ks = keyspace();
    let n1 = node(&redis, &ks, 1, &[]);
    let n2 = node(&redis, &ks, 2, &[]);
    let (acked, got) = send_through_redis_outage(&mut redis, &n1, &n2, 200, 60, 120).await;
    assert_eq!(
        got, acked,
        "every acked message reached bob on the other node"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_a_node_had_to_drop_are_recovered_through_resume() {
    let mut redis = RedisServer::start();
    let ks = keyspace();
    // Node 1 queues at most 16 events while Redis is away, then drops.
    let n1 = node(&redis, &ks, 1, &["--redis-publish-queue", "16"]);
    let n2 = node(&redis, &ks, 2, &[]);
    let (acked, got) = send_through_redis_outage(&mut redis, &n1, &n2, 80, 10, 70).await;
    assert_eq!(got, acked, "bob resumed what node 1 could not publish");
    let (_, metrics, _) = http(n1.addr, "GET", "/metrics", None, None, &[]).await;
    let dropped = metric(metrics.as_str().unwrap(), "parley_bus_dropped_total");
    assert!(dropped > 0.0, "node 1 dropped events: {dropped}");
    let (_, metrics, _) = http(n2.addr, "GET", "/metrics", None, None, &[]).await;
    let gaps = metric(metrics.as_str().unwrap(), "parley_bus_gaps_total");
    assert!(gaps >= 1.0, "node 2 was told to resync: {gaps}");
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or_else(|| panic!("{name} not in /metrics"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cassandra_down_means_clear_errors_and_recovery() {
    // A CQL server of this test's own, so stopping it disturbs no other test.
    let kit = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy/dev/cassandra/cassandra-test.sh");
    let port = free_port();
    let storage_port = free_port();
    let cass = |cmd: &str, keep: bool| {
        let status = std::process::Command::new("bash")
            .arg(&kit)
            .arg(cmd)
            .env("CASS_CQL_PORT", port.to_string())
            .env("CASS_STORAGE_PORT", storage_port.to_string())
            .env("CASS_HEAP", "512m")
            .env("CASS_KEEP_DATA", if keep { "1" } else { "0" })
            .status()
            .unwrap();
        assert!(status.success(), "cassandra-test.sh {cmd}");
    };
    cass("start", false);
    cass("wait", false);
    struct Stop<F: Fn(&str, bool)>(F);
    impl<F: Fn(&str, bool)> Drop for Stop<F> {
        fn drop(&mut self) {
            (self.0)("stop", false);
        }
    }
    let _stop = Stop(cass);
    let contact = format!("127.0.0.1:{port}");
    let gw = Gateway::start(&[
        "--scylla",
        &contact,
        "--scylla-keyspace",
        "fault",
        "--migrate",
    ]);
    let conv = direct(&gw, "alice", "bob", "l").await;
    let mut alice = Client::connect(&gw, "alice").await;
    let before = alice.send_text(conv, "ok", "stored").await;

    (_stop.0)("stop", false);
    let r = alice.request(send_text(conv, "down", "not stored")).await;
    assert_eq!(error_code(&r), Some(1600), "storage unavailable: {r:?}");
    let (s, _, _) = http(gw.addr, "GET", "/healthz", None, None, &[]).await;
    assert_eq!(s, 200, "the gateway stays up");
    let (s, _, _) = http(gw.addr, "GET", "/readyz", None, None, &[]).await;
    assert_eq!(s, 503, "but is not ready");

    (_stop.0)("start", true);
    (_stop.0)("wait", true);
    let mut ok = None;
    for _ in 0..60 {
        let r = alice.request(send_text(conv, "down", "retried")).await;
        if let ServerBody::Ack(a) = r.body {
            ok = Some(a);
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let after = ok.expect("sends work again once Cassandra is back");
    let page = alice
        .request(ClientBody::History {
            conversation: conv,
            before: None,
            limit: 10,
        })
        .await;
    let ServerBody::HistoryPage { messages, .. } = page.body else {
        panic!("{page:?}")
    };
    let ids: Vec<MessageId> = messages.iter().map(|m| m.id).collect();
    assert_eq!(
        ids,
        vec![after.message_id, before.message_id],
        "the failed send stored nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_delivers_what_a_dead_node_stored_but_never_delivered() {
    let redis = RedisServer::start();
    let ks = keyspace();
    let n1 = node(&redis, &ks, 1, &[]);
    let n2 = node(&redis, &ks, 2, &[]);
    // A node on the same keyspace but off the bus stores without delivering to the cluster:
    // what a node that dies between storing and publishing leaves behind.
    let cass = cassandra();
    let lone = Gateway::start(&[
        "--scylla",
        &cass,
        "--scylla-keyspace",
        &ks,
        "--node-id",
        "3",
    ]);
    let conv = direct(&n1, "alice", "bob", "l").await;
    let mut bob = Client::connect(&n2, "bob").await;
    let mut alice_lone = Client::connect(&lone, "alice").await;
    let first = alice_lone
        .send_text(conv, "m1", "stored, not delivered")
        .await;
    bob.expect_none(Duration::from_millis(500), is_message)
        .await;

    // Alice's app retries on a cluster node: same ack, and now Bob gets it, once.
    let mut alice = Client::connect(&n1, "alice").await;
    let retry = alice.send_text(conv, "m1", "stored, not delivered").await;
    assert_eq!(retry.message_id, first.message_id);
    assert_eq!(bob.next_message().await.id, first.message_id);
    let again = alice.send_text(conv, "m1", "stored, not delivered").await;
    assert_eq!(again.message_id, first.message_id);
    let mut alice2 = Client::connect(&n2, "alice").await;
    let elsewhere = alice2.send_text(conv, "m1", "stored, not delivered").await;
    assert_eq!(elsewhere.message_id, first.message_id);
    bob.expect_none(Duration::from_millis(500), is_message)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_and_deletions_reach_the_other_node() {
    let redis = RedisServer::start();
    let ks = keyspace();
    let n1 = node(&redis, &ks, 1, &[]);
    let n2 = node(&redis, &ks, 2, &[]);
    let mut bob = Client::connect(&n2, "bob").await;
    let mut carol = Client::connect(&n1, "carol").await;
    let conv = group(
        &n1,
        "alice",
        &["bob".to_owned(), "carol".to_owned()],
        "bike club",
    )
    .await;
    // Bob, on the other node, hears of the new group and gets its messages.
    let up = bob
        .next_where(|f| matches!(f.body, ServerBody::ConversationUpdated(_)))
        .await;
    let ServerBody::ConversationUpdated(s) = up.body else {
        unreachable!()
    };
    assert_eq!(s.conversation.id, conv);
    let sent = carol.send_text(conv, "c1", "hello club").await;
    assert_eq!(bob.next_message().await.id, sent.message_id);

    let (status, _, _) = delete(&n1, "alice", &format!("/api/conversations/{conv}")).await;
    assert_eq!(status, 204);
    let gone = bob
        .next_where(|f| matches!(f.body, ServerBody::ConversationDeleted { .. }))
        .await;
    assert!(
        matches!(gone.body, ServerBody::ConversationDeleted { conversation, ref by } if conversation == conv && by == "alice"),
        "{gone:?}"
    );
    // Node 2 forgot the conversation: a send there is refused, not delivered.
    let r = bob.request(send_text(conv, "b1", "anyone?")).await;
    assert_eq!(error_code(&r), Some(1200), "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_migrate_applies_the_schema_once_and_again() {
    let cass = cassandra();
    let ks = keyspace();
    for round in 0..2 {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_gateway"))
            .args(["--scylla", &cass, "--scylla-keyspace", &ks, "migrate"])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "round {round}: {stdout} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.contains(&format!("keyspace {ks}")), "{stdout}");
    }
    // A node started without --migrate works on the schema applied beforehand.
    let gw = Gateway::start(&["--scylla", &cass, "--scylla-keyspace", &ks]);
    let conv = direct(&gw, "alice", "bob", "lamp").await;
    let mut alice = Client::connect(&gw, "alice").await;
    let ack = alice.send_text(conv, "m1", "schema ready").await;
    let page = alice
        .request(ClientBody::History {
            conversation: conv,
            before: None,
            limit: 10,
        })
        .await;
    let ServerBody::HistoryPage { messages, .. } = page.body else {
        panic!("{page:?}")
    };
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].id, ack.message_id);

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gateway"))
        .arg("migrate")
        .output()
        .unwrap();
    assert!(!out.status.success(), "migrate without --scylla fails");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("needs --scylla"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
