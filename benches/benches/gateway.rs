//! The gateway's hot paths without sockets:
//! - `session`: the session state machine per event (decode + verify + rules → outputs);
//! - `fanout`: one message from `Hub::fanout` through the shard inbox into 1, 100 and 10 000
//!   local members' outboxes (encode once, share `Bytes`);
//! - `shard_inbox`: deliveries per second through one bounded inbox between two threads.

use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use gateway::auth::{Authenticator, mint_hs256};
use gateway::clock::Now;
use gateway::config::{Cli, Config};
use gateway::hub::{Delivery, Event, Hub};
use gateway::node::Node;
use gateway::outbox::{Class, Next, Outbox};
use gateway::session::Session;
use gateway::shard::Shard;
use parley_proto::codec::client::encode_client;
use parley_proto::*;
use parley_storage::embedded::{Embedded, EmbeddedConfig};
use parley_types::{ConversationId, Message, MessageId, MessageKind};
use tokio::sync::{mpsc, watch};

const SECRET: &[u8] = b"bench-secret-0123456789abcdef";

fn config() -> Config {
    let cli = Cli::parse_from([
        "gateway",
        "--outbox-frames",
        "1000000",
        "--outbox-bytes",
        "1000000000",
    ]);
    Config::from_options(&cli.options).expect("config")
}

fn session_events(c: &mut Criterion) {
    let cfg = config();
    let auth = Arc::new(Authenticator::new(SECRET, None).expect("auth"));
    let limits = Arc::new(gateway::config::SessionLimits {
        frames_per_sec: 1e12,
        frame_burst: u32::MAX,
        ..cfg.session.clone()
    });
    let mut session = Session::new(1, limits, auth, Now::get());
    let hello = encode_client(&ClientFrame {
        seq: 1,
        body: ClientBody::Hello(Hello {
            token: mint_hs256(SECRET, "alice", 3600, gateway::clock::wall_ms()),
            protocol_major: 1,
            protocol_minor: 0,
            resume: vec![],
            client_name: None,
        }),
    });
    let mut out = Vec::new();
    session.handle_frame(Now::get(), &hello, &mut out);
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
        g.bench_function(name, |b| {
            b.iter(|| {
                out.clear();
                session.handle_frame(Now::get(), &bytes, &mut out);
            })
        });
    }
    g.finish();
}

fn message_event() -> Event {
    Event::new(
        ServerBody::MessageNew(Message {
            id: MessageId(384_082_353_594_564_608),
            conversation: ConversationId::random(),
            sender: "user-0".into(),
            kind: MessageKind::Text,
            content: "Hi! Is the bike still available? I could pick it up tomorrow.".into(),
            media: None,
            client_msg_id: "c".into(),
            created_at_ms: 1,
            seq: 1,
        }),
        Class::Reliable,
    )
}

fn fanout(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("tmp");
    let storage = Arc::new(Embedded::open(dir.path(), EmbeddedConfig::default()).expect("storage"));
    let (inbox_tx, mut inbox_rx) = mpsc::channel::<Delivery>(1 << 16);
    let hub = Arc::new(Hub::new(vec![inbox_tx], storage.clone(), 1e9, u32::MAX));
    let metrics = Arc::new(gateway::metrics::Metrics::new(1));
    let auth = Arc::new(Authenticator::new(SECRET, None).expect("auth"));
    let node = Arc::new(Node::new(
        Arc::new(config()),
        auth,
        hub.clone(),
        storage,
        metrics,
        None,
    ));
    let (_stop, shutdown) = watch::channel(false);
    let shard = Rc::new(Shard::new(0, node, shutdown));
    let mut g = c.benchmark_group("fanout");
    g.measurement_time(Duration::from_secs(5));
    for members in [1usize, 100, 10_000] {
        let users: Vec<String> = (0..members).map(|i| format!("member{i}")).collect();
        let outboxes: Vec<Rc<Outbox>> = users
            .iter()
            .enumerate()
            .map(|(i, u)| {
                let user: Arc<str> = u.as_str().into();
                let o = Rc::new(Outbox::new(1_000_000, 1_000_000_000));
                shard.register(&user, i as u64, o.clone());
                hub.session_opened(&user, 0);
                o
            })
            .collect();
        let event = message_event();
        g.throughput(Throughput::Elements(members as u64));
        g.bench_function(format!("{members} members"), |b| {
            b.iter_custom(|iters| {
                let mut took = Duration::ZERO;
                for _ in 0..iters {
                    let start = Instant::now();
                    rt.block_on(hub.fanout(
                        users.iter().map(String::as_str),
                        None,
                        None,
                        event.clone(),
                    ));
                    while let Ok(d) = inbox_rx.try_recv() {
                        shard.deliver(&d);
                    }
                    took += start.elapsed();
                    // Empty the outboxes outside the measurement.
                    rt.block_on(async {
                        let mut buf = Vec::new();
                        for o in &outboxes {
                            if !o.is_empty() {
                                let _: Next = o.next(&mut buf).await;
                                buf.clear();
                            }
                        }
                    });
                }
                took
            })
        });
        for (i, u) in users.iter().enumerate() {
            shard.unregister(u, i as u64);
            hub.session_closed(u, 0, 0);
        }
    }
    g.finish();
}

fn shard_inbox(c: &mut Criterion) {
    let mut g = c.benchmark_group("shard_inbox");
    const BATCH: usize = 100_000;
    g.throughput(Throughput::Elements(BATCH as u64));
    let event = message_event();
    g.bench_function("deliveries across threads", |b| {
        b.iter_batched(
            || (),
            |()| {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .build()
                    .expect("runtime");
                rt.block_on(async {
                    let (tx, mut rx) = mpsc::channel::<Delivery>(1 << 16);
                    let users: Vec<Arc<str>> = vec!["a".into()];
                    let frame = event.frame.clone();
                    let producer = tokio::spawn(async move {
                        for _ in 0..BATCH {
                            let d = Delivery {
                                users: users.clone(),
                                exclude_session: None,
                                frame: frame.clone(),
                                class: Class::Reliable,
                                kind: parley_proto::FrameKind::MessageNew,
                                received_at: None,
                            };
                            if tx.send(d).await.is_err() {
                                break;
                            }
                        }
                    });
                    let mut buf = Vec::with_capacity(256);
                    let mut n = 0;
                    while n < BATCH {
                        let got = rx.recv_many(&mut buf, 256).await;
                        if got == 0 {
                            break;
                        }
                        n += got;
                        buf.clear();
                    }
                    let _ = producer.await;
                })
            },
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
