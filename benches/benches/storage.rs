//! Embedded engine (fjall, group commit, fdatasync per batch): acknowledged appends per second
//! with 1, 64 and 512 appends in flight, and one history page. Runs on the disk under the
//! system temp dir; the figure is durable throughput (every append waited for its fsync).
//!
//! Then what one request costs a user with 5 000 conversations (a list page of 1 and of 50,
//! the unread counts with 10 unread, and for scale the contacts, which still load every
//! conversation, as the list did before the activity index), and how long an append of
//! another conversation waits while a 100 000-message conversation is deleted.

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use parley_storage::Storage;
use parley_storage::embedded::{Embedded, EmbeddedConfig};
use parley_types::{ConversationId, MessageKind, NewMessage};

const CONVERSATIONS: usize = 256;

fn setup(rt: &tokio::runtime::Runtime) -> (tempfile::TempDir, Arc<Embedded>, Vec<ConversationId>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Arc::new(Embedded::open(dir.path(), EmbeddedConfig::default()).expect("open"));
    let convs = rt.block_on(async {
        let mut v = Vec::new();
        for i in 0..CONVERSATIONS {
            let c = db
                .create_direct(&format!("buyer{i}"), &format!("seller{i}"), "listing", 1)
                .await
                .expect("create");
            v.push(c.conversation.id);
        }
        v
    });
    (dir, db, convs)
}

fn message(conv: ConversationId, i: usize) -> NewMessage {
    NewMessage {
        conversation: conv,
        sender: format!("buyer{}", i % CONVERSATIONS),
        kind: MessageKind::Text,
        content: "Hi! Is the bike still available? I could pick it up tomorrow.".into(),
        media: None,
        client_msg_id: format!("m{i}"),
        now_ms: 1_795_637_975_123,
        visibility: Default::default(),
    }
}

fn appends(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let (_dir, db, convs) = setup(&rt);
    let mut g = c.benchmark_group("embedded_append_group_commit");
    g.measurement_time(Duration::from_secs(8));
    let mut counter = 0usize;
    for in_flight in [1usize, 64, 512] {
        g.throughput(Throughput::Elements(in_flight as u64));
        g.bench_function(format!("{in_flight} in flight"), |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                rt.block_on(async {
                    for _ in 0..iters {
                        let mut tasks = Vec::with_capacity(in_flight);
                        for _ in 0..in_flight {
                            counter += 1;
                            let i = counter;
                            let db = db.clone();
                            let conv = convs[i % CONVERSATIONS];
                            tasks.push(tokio::spawn(async move {
                                db.append(message(conv, i)).await.expect("append")
                            }));
                        }
                        for t in tasks {
                            t.await.expect("join");
                        }
                    }
                });
                start.elapsed()
            })
        });
    }
    g.finish();

    let mut g = c.benchmark_group("embedded_history");
    let conv = convs[0];
    rt.block_on(async {
        for i in 0..500 {
            db.append(NewMessage {
                client_msg_id: format!("h{i}"),
                ..message(conv, 0)
            })
            .await
            .expect("append");
        }
    });
    g.throughput(Throughput::Elements(1));
    g.bench_function("page of 50, newest first", |b| {
        b.iter(|| rt.block_on(db.history(conv, None, 50)).expect("history"))
    });
    g.finish();
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// Appends `n` messages to `conv`, 512 in flight.
async fn fill(db: &Arc<Embedded>, conv: ConversationId, sender: &str, n: usize, tag: &str) {
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..n {
        if tasks.len() >= 512 {
            tasks.join_next().await;
        }
        let (db, sender, id) = (db.clone(), sender.to_owned(), format!("{tag}{i}"));
        tasks.spawn(async move {
            db.append(NewMessage {
                sender,
                client_msg_id: id,
                ..message(conv, 0)
            })
            .await
            .expect("append")
        });
    }
    while tasks.join_next().await.is_some() {}
}

fn a_user_with_many_conversations(c: &mut Criterion) {
    const N: usize = 5000;
    let rt = runtime();
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Arc::new(Embedded::open(dir.path(), EmbeddedConfig::default()).expect("open"));
    rt.block_on(async {
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..N {
            if tasks.len() >= 512 {
                tasks.join_next().await;
            }
            let db = db.clone();
            tasks.spawn(async move {
                let buyer = format!("buyer{i}");
                let c = db
                    .create_direct(&buyer, "seller", "listing", 1)
                    .await
                    .expect("create");
                let m = db
                    .append(NewMessage {
                        sender: buyer,
                        client_msg_id: "1".into(),
                        ..message(c.conversation.id, 0)
                    })
                    .await
                    .expect("append");
                // All read but 10.
                if i % (N / 10) != 0 {
                    db.mark_read(c.conversation.id, "seller", m.message.id, 2)
                        .await
                        .expect("read");
                }
            });
        }
        while tasks.join_next().await.is_some() {}
    });
    let mut g = c.benchmark_group("embedded_user_with_5000_conversations");
    g.throughput(Throughput::Elements(1));
    g.bench_function("list, page of 1", |b| {
        b.iter(|| {
            rt.block_on(db.list_conversations("seller", None, 1))
                .expect("list")
        })
    });
    g.bench_function("list, page of 50", |b| {
        b.iter(|| {
            rt.block_on(db.list_conversations("seller", None, 50))
                .expect("list")
        })
    });
    g.bench_function("unread counts (10 unread)", |b| {
        b.iter(|| {
            let u = rt.block_on(db.unread_counts("seller")).expect("unread");
            assert_eq!(u.len(), 10);
        })
    });
    g.bench_function("contacts (loads all 5000)", |b| {
        b.iter(|| rt.block_on(db.contacts("seller", 100)).expect("contacts"))
    });
    g.finish();
}

fn append_while_a_big_conversation_is_deleted(c: &mut Criterion) {
    const BIG: usize = 100_000;
    let rt = runtime();
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Arc::new(Embedded::open(dir.path(), EmbeddedConfig::default()).expect("open"));
    let other = rt.block_on(async {
        let c = db
            .create_direct("b", "s", "other", 1)
            .await
            .expect("create");
        c.conversation.id
    });
    let mut g = c.benchmark_group("embedded_delete_100000_messages");
    g.sample_size(10);
    g.warm_up_time(Duration::from_millis(1));
    let mut round = 0usize;
    g.bench_function(
        "another conversation's append, sent just after the delete",
        |b| {
            b.iter_custom(|iters| {
                let mut waited = Duration::ZERO;
                for _ in 0..iters {
                    round += 1;
                    waited += rt.block_on(async {
                        let big = db
                            .create_direct("b", "s", &format!("big{round}"), 1)
                            .await
                            .expect("create")
                            .conversation
                            .id;
                        fill(&db, big, "b", BIG, "x").await;
                        let deleting = {
                            let db = db.clone();
                            tokio::spawn(async move { db.delete_conversation(big, "b").await })
                        };
                        tokio::task::yield_now().await;
                        let start = Instant::now();
                        db.append(NewMessage {
                            sender: "s".into(),
                            client_msg_id: format!("o{round}"),
                            ..message(other, 0)
                        })
                        .await
                        .expect("append");
                        let took = start.elapsed();
                        deleting.await.expect("join").expect("delete");
                        took
                    });
                }
                waited
            })
        },
    );
    g.finish();
}

// The gateway runs on mimalloc; measure with it too.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

criterion_group!(
    benches,
    appends,
    a_user_with_many_conversations,
    append_while_a_big_conversation_is_deleted
);
criterion_main!(benches);
