//! The gateway's hot paths without sockets (through `gateway::bench`, the internals the
//! `bench-internals` feature exposes to this crate):
//! - `session`: the session state machine per event (decode + verify + rules → outputs);
//! - `fanout`: one message through a shard's inbox into 1, 100 and 10 000 local members'
//!   outboxes (encode once, share `Bytes`);
//! - `shard_inbox`: deliveries per second through one bounded inbox between two threads.

use std::time::Duration;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use gateway::bench::{FanoutBench, SessionBench, inbox_across_threads};
use parley_proto::codec::client::encode_client;
use parley_proto::*;
use parley_types::{ConversationId, MessageId, MessageKind};

fn session_events(c: &mut Criterion) {
    let mut session = SessionBench::new();
    let conv = ConversationId::random();
    let frames = [
        (
            "send",
            ClientBody::Send(SendMessage {
                conversation: conv,
                client_msg_id: "0f6c1c1e-8e0a-4b8e".into(),
                kind: MessageKind::Text,
                content: "Hi! Is the bike still available? I could pick it up tomorrow.".into(),
                media: None,
            }),
        ),
        (
            "typing",
            ClientBody::Typing {
                conversation: conv,
                active: true,
            },
        ),
        (
            "read",
            ClientBody::Read {
                conversation: conv,
                up_to: MessageId(99),
            },
        ),
        ("ping", ClientBody::Ping { nonce: 7 }),
    ];
    let mut g = c.benchmark_group("session");
    g.throughput(Throughput::Elements(1));
    for (name, body) in frames {
        let bytes = encode_client(&ClientFrame { seq: 2, body });
        g.bench_function(name, |b| b.iter(|| session.handle(&bytes)));
    }
    g.finish();
}

fn fanout(c: &mut Criterion) {
    let mut g = c.benchmark_group("fanout");
    g.measurement_time(Duration::from_secs(5));
    for members in [1usize, 100, 10_000] {
        let mut bench = FanoutBench::new(members);
        g.throughput(Throughput::Elements(members as u64));
        g.bench_function(format!("{members} members"), |b| {
            b.iter_custom(|iters| (0..iters).map(|_| bench.run()).sum())
        });
    }
    g.finish();
}

fn shard_inbox(c: &mut Criterion) {
    let mut g = c.benchmark_group("shard_inbox");
    const BATCH: usize = 100_000;
    g.throughput(Throughput::Elements(BATCH as u64));
    g.bench_function("deliveries across threads", |b| {
        b.iter_batched(
            || (),
            |()| inbox_across_threads(BATCH),
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

// The gateway runs on mimalloc; measure with it too.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

criterion_group!(benches, session_events, fanout, shard_inbox);
criterion_main!(benches);
