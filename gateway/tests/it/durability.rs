//! An Ack means the message survives `kill -9`.

use std::collections::HashSet;

use crate::support::*;
use parley_proto::*;

/// Every message id in the conversation, from the REST history (all pages).
async fn stored_ids(gw: &Gateway, conv: parley_types::ConversationId) -> HashSet<u64> {
    let mut ids = HashSet::new();
    let mut before = String::new();
    loop {
        let path = format!("/api/conversations/{conv}/messages?limit=100{before}");
        let (status, page, _) = get(gw, "bob", &path).await;
        assert_eq!(status, 200, "{page}");
        for m in page["messages"].as_array().unwrap() {
            ids.insert(m["id"].as_str().unwrap().parse().unwrap());
        }
        match page["nextBefore"].as_str() {
            Some(b) => before = format!("&before={b}"),
            None => return ids,
        }
    }
}

#[tokio::test]
async fn every_acked_message_survives_kill_9() {
    let mut gw = Gateway::start(UNLIMITED);
    let conv = direct(&gw, "alice", "bob", "l").await;
    // Four senders pipelining sends, so acks come from many group-committed batches.
    let mut tasks = Vec::new();
    for s in 0..4 {
        let addr = gw.addr;
        tasks.push(tokio::spawn(async move {
            let mut c = Client::connect_at(addr, "alice", vec![]).await;
            let n = 250;
            for i in 0..n {
                c.send(send_text(conv, &format!("s{s}-{i}"), "durable"))
                    .await;
            }
            let mut acked = Vec::new();
            while acked.len() < n {
                if let ServerBody::Ack(a) = c.next().await.body {
                    acked.push(a.message_id.0);
                }
            }
            acked
        }));
    }
    let mut acked = HashSet::new();
    for t in tasks {
        acked.extend(t.await.unwrap());
    }
    assert_eq!(acked.len(), 1000);

    gw.kill9();
    gw.restart();
    let stored = stored_ids(&gw, conv).await;
    let missing: Vec<_> = acked.difference(&stored).collect();
    assert!(
        missing.is_empty(),
        "{} acked messages lost: {missing:?}",
        missing.len()
    );
    assert_eq!(stored.len(), 1000, "nothing unacked was invented");
}

#[tokio::test]
async fn acked_messages_survive_a_kill_in_the_middle_of_a_send_storm() {
    let mut gw = Gateway::start(UNLIMITED);
    let conv = direct(&gw, "alice", "bob", "l").await;
    let mut c = Client::connect(&gw, "alice").await;
    for i in 0..2000 {
        c.send(send_text(conv, &format!("m{i}"), "storm")).await;
    }
    // Take some acks, then kill while the rest are in flight.
    let mut acked = Vec::new();
    while acked.len() < 300 {
        if let ServerBody::Ack(a) = c.next().await.body {
            acked.push(a.message_id.0);
        }
    }
    gw.kill9();
    gw.restart();
    let stored = stored_ids(&gw, conv).await;
    for id in &acked {
        assert!(stored.contains(id), "acked message {id} lost");
    }
    // The restarted node keeps working on the same data.
    let mut c = Client::connect(&gw, "alice").await;
    let ack = c.send_text(conv, "after-restart", "still here").await;
    assert!(
        acked.iter().all(|id| ack.message_id.0 > *id),
        "ids keep increasing"
    );
}
