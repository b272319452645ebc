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
    let nodes = vec![contact_point()];
    let keyspace = format!("conformance_{}", uuid::Uuid::new_v4().simple());
    {
        let _ddl = ddl_lock().lock().await;
        Scylla::migrate(
            &nodes,
            &keyspace,
            &replication("simple:1").expect("replication"),
        )
        .await
        .expect("create the schema");
    }
    let engine = Scylla::connect(&ScyllaConfig {
        nodes,
        keyspace: keyspace.clone(),
        consistency: Consistency::LocalQuorum,
        node_id: 1,
    })
    .await
    .expect("connect");
    (keyspace, engine)
}

parley_storage::conformance_tests!(fresh);
