//! Embedded engine (fjall, group commit, fdatasync per batch): acknowledged appends per second
//! with 1, 64 and 512 appends in flight, and one history page. Runs on the disk under the
//! system temp dir; the figure is durable throughput (every append waited for its fsync).

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

// The gateway runs on mimalloc; measure with it too.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

criterion_group!(benches, appends);
criterion_main!(benches);
