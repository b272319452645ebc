//! The shared conformance suite against a real CQL server: Apache Cassandra 5.0 started by
//! `scripts/test.sh` (deploy/dev/cassandra), or ScyllaDB. `PARLEY_CASSANDRA` names it
//! (host:port); without it these tests fail — they never skip.

use std::sync::OnceLock;

use parley_storage::scylla::{Scylla, ScyllaConfig, replication};
use scylla::statement::Consistency;

/// The CQL server under test.
fn contact_point() -> String {
    std::env::var("PARLEY_CASSANDRA").unwrap_or_else(|_| {
        panic!(
            "PARLEY_CASSANDRA is not set: run scripts/test.sh (it starts Cassandra) or point it \
             at a CQL server (host:port)"
        )
    })
}

/// Schema changes one at a time: concurrent DDL on one node makes Cassandra slow to agree.
fn ddl_lock() -> &'static tokio::sync::Mutex<()> {
    static LOCK: OnceLock<tokio::sync::Mutex<()>> = OnceLock::new();
    LOCK.get_or_init(|| tokio::sync::Mutex::new(()))
}

/// A fresh keyspace per test: the suite's user ids never collide between tests.
async fn fresh() -> (String, Scylla) {
    let keyspace = format!("conformance_{}", uuid::Uuid::new_v4().simple());
    let engine = on(&keyspace, 1).await;
    (keyspace, engine)
}

/// The engine as node `node_id` on `keyspace` (created if new).
async fn on(keyspace: &str, node_id: u16) -> Scylla {
    let nodes = vec![contact_point()];
    {
        let _ddl = ddl_lock().lock().await;
        Scylla::migrate(
            &nodes,
            keyspace,
            &replication("simple:1").expect("replication"),
        )
        .await
        .expect("create the schema");
    }
    Scylla::connect(&ScyllaConfig {
        nodes,
        keyspace: keyspace.to_owned(),
        consistency: Consistency::LocalQuorum,
        node_id,
    })
    .await
    .expect("connect")
}

parley_storage::conformance_tests!(fresh);

/// Two nodes (two engines with their own id generators and claim hints) append to one
/// conversation at once, with retries racing across them: seqs stay dense, ids increase
/// with them, every Ack is what is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_appending_at_once_get_dense_seqs() {
    use parley_storage::Storage;
    use parley_types::{MessageKind, NewMessage};
    let keyspace = format!("conformance_{}", uuid::Uuid::new_v4().simple());
    let a = std::sync::Arc::new(on(&keyspace, 1).await);
    let b = std::sync::Arc::new(on(&keyspace, 2).await);
    let members = vec!["u1".to_string(), "u2".into(), "u3".into()];
    let g = a
        .create_group("u0", &members, "race", 1_800_000_000_000)
        .await
        .expect("group");
    let tasks: Vec<_> = (0..120)
        .map(|i| {
            let engine = if i % 2 == 0 { a.clone() } else { b.clone() };
            // Keys k0..k59, each sent once through each node: a retry racing its original.
            let key = format!("k{}", i / 2);
            let sender = format!("u{}", (i / 2) % 4);
            tokio::spawn(async move {
                let m = NewMessage {
                    conversation: g.id,
                    sender,
                    kind: MessageKind::Text,
                    content: key.clone(),
                    media: None,
                    client_msg_id: key,
                    now_ms: 1_800_000_000_000 + i,
                    visibility: Default::default(),
                };
                engine.append(m).await
            })
        })
        .collect();
    let mut acked = Vec::new();
    for t in tasks {
        acked.push(t.await.expect("join").expect("append").message);
    }
    let all = parley_storage::conformance::assert_dense(&*b, g.id, 60).await;
    for m in &acked {
        assert_eq!(all[m.seq as usize - 1], *m, "acked as stored");
    }
}

/// Reports stored in the `reports` table of earlier versions are copied by `migrate` into the
/// moderation tables once: running it again neither duplicates them nor reopens one resolved
/// in the meantime.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_copies_earlier_reports_once() {
    use parley_storage::Storage;
    use parley_types::{ModAction, ModerationEntry, ReportFilter, time_ordered_id};
    let keyspace = format!("conformance_{}", uuid::Uuid::new_v4().simple());
    on(&keyspace, 1).await;
    let session = scylla::client::session_builder::SessionBuilder::new()
        .known_node(contact_point())
        .build()
        .await
        .expect("session");
    let old_id = uuid::Uuid::new_v4();
    session
        .query_unpaged(
            format!(
                "INSERT INTO {keyspace}.reports (id, reporter, reported_user, reason, created_at) VALUES (?, 'b', 's', 'old scam', 1800000000000)"
            ),
            (old_id,),
        )
        .await
        .expect("legacy row");
    let engine = on(&keyspace, 1).await;
    let open = ReportFilter {
        open_only: true,
        ..Default::default()
    };
    let listed = engine.reports(&open, None, 10).await.expect("open");
    assert_eq!(listed.len(), 1, "{listed:?}");
    let r = &listed[0];
    assert_eq!((r.reporter.as_str(), r.reported_user.as_str()), ("b", "s"));
    assert_eq!(
        (r.reason.as_str(), r.created_at_ms),
        ("old scam", 1_800_000_000_000)
    );
    assert_eq!(r.id.get_version_num(), 7);
    engine
        .moderate(ModerationEntry {
            id: time_ordered_id(1_800_000_000_001),
            at_ms: 1_800_000_000_001,
            moderator: "mod".into(),
            target: "s".into(),
            action: ModAction::Dismiss,
            report: Some(r.id),
            note: String::new(),
        })
        .await
        .expect("dismiss");
    let again = on(&keyspace, 1).await;
    assert!(
        again
            .reports(&open, None, 10)
            .await
            .expect("open")
            .is_empty()
    );
    let all = again
        .reports(&ReportFilter::default(), None, 10)
        .await
        .expect("all");
    assert_eq!(all.len(), 1);
    assert!(all[0].resolution.is_some());
}
