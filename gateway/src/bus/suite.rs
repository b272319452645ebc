//! One suite for the bus on every log: the memory log here, and Redis (a `redis-server` each
//! test starts, from `PARLEY_REDIS_SERVER`, which `scripts/test.sh` sets). What a node relies
//! on: events reach the other nodes in order and never their origin, confirmations, presence
//! counted across nodes, a dead node's users taken offline, and every way of losing events
//! reported as a gap — nothing else.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use parley_proto::FrameKind;
use parley_types::ConversationId;
use tokio::sync::Notify;

use super::memory::MemoryBroker;
use super::*;
use crate::event::{Class, Event};

/// How long a case waits for something that must happen.
const WAIT: Duration = Duration::from_secs(20);

/// A log backend and the faults a test can cause on it.
#[async_trait]
pub(super) trait Backend: Send + Sync {
    /// A fresh handle (a node's connection).
    async fn log(&self) -> Arc<dyn Log>;
    /// Stops (false) or restarts (true) the log, keeping what it holds.
    fn set_reachable(&self, reachable: bool);
    /// Restarts the log with nothing in it.
    fn restart_empty(&self);
}

#[async_trait]
impl Backend for Arc<MemoryBroker> {
    async fn log(&self) -> Arc<dyn Log> {
        MemoryBroker::log(self)
    }
    fn set_reachable(&self, reachable: bool) {
        MemoryBroker::set_reachable(self, reachable);
    }
    fn restart_empty(&self) {
        MemoryBroker::restart_empty(self);
    }
}

/// What a handler saw.
#[derive(Default)]
struct Seen {
    events: Vec<BusEvent>,
    gaps: usize,
    offline: Vec<String>,
}

#[derive(Default)]
struct Recorder {
    seen: Mutex<Seen>,
    changed: Notify,
}

#[async_trait]
impl BusHandler for Recorder {
    async fn event(&self, event: BusEvent) {
        self.seen.lock().unwrap().events.push(event);
        self.changed.notify_waiters();
    }
    fn gap(&self) {
        self.seen.lock().unwrap().gaps += 1;
        self.changed.notify_waiters();
    }
    async fn went_offline(&self, users: Vec<String>, _at_ms: i64) {
        self.seen.lock().unwrap().offline.extend(users);
        self.changed.notify_waiters();
    }
}

impl Recorder {
    /// Waits until `done` holds of what was seen; panics after [`WAIT`].
    async fn until(&self, what: &str, done: impl Fn(&Seen) -> bool) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let changed = self.changed.notified();
            if done(&self.seen.lock().unwrap()) {
                return;
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                panic!("timed out waiting for {what}");
            }
        }
    }
}

fn config(node_id: u16) -> BusConfig {
    BusConfig {
        node_id,
        partitions: 4,
        retention: 10_000,
        publish_queue: 1000,
        presence_ttl: Duration::from_secs(1),
    }
}

async fn start(backend: &dyn Backend, config: BusConfig) -> (Arc<Bus>, Arc<Recorder>) {
    let bus = Bus::new(config, backend.log().await);
    let recorder = Arc::new(Recorder::default());
    bus.start(&tokio::runtime::Handle::current(), recorder.clone());
    (bus, recorder)
}

/// Waits until every node of `nodes` has a live heartbeat.
async fn live(b: &dyn Backend, nodes: &[u16]) {
    let log = b.log().await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while !log.alive(nodes).await.unwrap().iter().all(|a| *a) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "nodes {nodes:?} never live"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits until `bus` reads from the log (its first positions are taken).
async fn connected(bus: &Bus) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !bus.stats().connected() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "bus never connected"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn message(conversation: ConversationId, n: u64) -> Outgoing {
    Outgoing {
        event: Event {
            frame: Bytes::from(n.to_be_bytes().to_vec()),
            class: Class::Message {
                conversation,
                seq: n,
            },
            kind: FrameKind::MessageNew,
            received_at: None,
            actor: None,
            hidden: None,
            actor_only: false,
            close: None,
        },
        target: Target::Conversation {
            id: conversation,
            skip_user: None,
        },
        invalidate: None,
    }
}

fn ids(seen: &Seen) -> Vec<u64> {
    seen.events
        .iter()
        .filter_map(|e| match e.class {
            Class::Message { seq, .. } => Some(seq),
            _ => None,
        })
        .collect()
}

pub(super) async fn events_reach_other_nodes_in_order_and_never_their_origin(b: &dyn Backend) {
    let (a, seen_a) = start(b, config(1)).await;
    let (other, seen_b) = start(b, config(2)).await;
    connected(&a).await;
    connected(&other).await;
    let c = ConversationId::random();
    for n in 1..=200 {
        a.publish(message(c, n));
    }
    seen_b.until("200 events", |s| s.events.len() >= 200).await;
    assert_eq!(
        ids(&seen_b.seen.lock().unwrap()),
        (1..=200).collect::<Vec<_>>()
    );
    assert!(
        seen_a.seen.lock().unwrap().events.is_empty(),
        "own events skipped"
    );
    let e = seen_b.seen.lock().unwrap().events[0].clone();
    assert_eq!((e.origin, e.kind), (1, FrameKind::MessageNew));
}

pub(super) async fn confirmed_publishes_complete_once_written(b: &dyn Backend) {
    let (a, _) = start(b, config(1)).await;
    connected(&a).await;
    let written = a.publish_confirmed(message(ConversationId::random(), 1));
    tokio::time::timeout(WAIT, written.0)
        .await
        .expect("confirmed in time")
        .expect("written, not dropped");
}

pub(super) async fn presence_is_counted_across_nodes(b: &dyn Backend) {
    let (a, _) = start(b, config(1)).await;
    let (other, _) = start(b, config(2)).await;
    // Heartbeats make both nodes live for each other.
    connected(&a).await;
    connected(&other).await;
    live(b, &[1, 2]).await;
    assert!(
        a.session_opened("u").await.unwrap(),
        "first session anywhere"
    );
    assert!(
        !other.session_opened("u").await.unwrap(),
        "already online on node 1"
    );
    assert!(!a.session_opened("u").await.unwrap());
    let p = other.presence_many(&["u", "nobody"]).await.unwrap();
    assert!(p[0].online && !p[1].online);
    assert!(
        !a.session_closed("u", 5).await.unwrap(),
        "a second session on node 1"
    );
    assert!(
        !a.session_closed("u", 6).await.unwrap(),
        "still online on node 2"
    );
    assert!(other.session_closed("u", 7).await.unwrap(), "the last one");
    let p = a.presence_many(&["u"]).await.unwrap();
    assert_eq!(
        p[0],
        ClusterPresence {
            online: false,
            last_seen_ms: 7
        }
    );
}

pub(super) async fn a_dead_nodes_users_go_offline(b: &dyn Backend) {
    // Node 1 runs on a runtime of its own, so the test can kill it (no clean leave).
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let dying = Bus::new(config(1), b.log().await);
    dying.start(rt.handle(), Arc::new(Recorder::default()));
    let (survivor, seen) = start(b, config(2)).await;
    connected(&survivor).await;
    {
        let dying = dying.clone();
        rt.spawn(async move {
            dying.session_opened("u").await.unwrap();
            dying.session_opened("v").await.unwrap();
        })
        .await
        .unwrap();
    }
    live(b, &[1, 2]).await;
    let p = survivor.presence_many(&["u", "v"]).await.unwrap();
    assert!(
        p[0].online && p[1].online,
        "node 1's heartbeat is live: {p:?}"
    );
    rt.shutdown_background();
    seen.until("node 1's users offline", |s| s.offline.len() >= 2)
        .await;
    let mut offline = seen.seen.lock().unwrap().offline.clone();
    offline.sort();
    assert_eq!(offline, vec!["u", "v"]);
    let p = survivor.presence_many(&["u", "v"]).await.unwrap();
    assert!(!p[0].online && p[0].last_seen_ms > 0);
}

pub(super) async fn events_queued_while_the_log_was_away_arrive_without_a_gap(b: &dyn Backend) {
    let (a, _) = start(b, config(1)).await;
    let (other, seen) = start(b, config(2)).await;
    connected(&a).await;
    connected(&other).await;
    let c = ConversationId::random();
    a.publish(message(c, 1));
    seen.until("the first event", |s| !s.events.is_empty())
        .await;
    b.set_reachable(false);
    for n in 2..=6 {
        a.publish(message(c, n));
    }
    b.set_reachable(true);
    seen.until("the queued events", |s| s.events.len() >= 6)
        .await;
    let s = seen.seen.lock().unwrap();
    assert_eq!(ids(&s), (1..=6).collect::<Vec<_>>());
    assert_eq!(s.gaps, 0);
}

pub(super) async fn a_publisher_that_dropped_events_makes_the_others_resync(b: &dyn Backend) {
    let (a, _) = start(
        b,
        BusConfig {
            publish_queue: 16,
            ..config(1)
        },
    )
    .await;
    let (other, seen) = start(b, config(2)).await;
    connected(&a).await;
    connected(&other).await;
    b.set_reachable(false);
    let c = ConversationId::random();
    for n in 1..=100 {
        a.publish(message(c, n));
    }
    assert!(
        a.stats().dropped.load(Ordering::Relaxed) > 0,
        "the queue overflowed"
    );
    b.set_reachable(true);
    seen.until("a gap", |s| s.gaps >= 1).await;
}

pub(super) async fn a_log_that_lost_everything_is_a_gap(b: &dyn Backend) {
    let (a, _) = start(b, config(1)).await;
    let (other, seen) = start(b, config(2)).await;
    connected(&a).await;
    connected(&other).await;
    a.publish(message(ConversationId::random(), 1));
    seen.until("an event", |s| !s.events.is_empty()).await;
    b.restart_empty();
    seen.until("a gap", |s| s.gaps >= 1).await;
    // And the bus works on afterwards.
    a.publish(message(ConversationId::random(), 2));
    seen.until("the next event", |s| s.events.len() >= 2).await;
}

/// Spam counting: distinct members within the window, the same for every node's handle.
pub(super) async fn windowed_sets_count_distinct_members_across_nodes(b: &dyn Backend) {
    let (one, two) = (b.log().await, b.log().await);
    let t = 1_800_000_000_000;
    let w = 60_000;
    assert_eq!(one.window_add("k", "c1", t, w).await.expect("add"), 1);
    assert_eq!(two.window_add("k", "c1", t + 1, w).await.expect("add"), 1);
    assert_eq!(two.window_add("k", "c2", t + 2, w).await.expect("add"), 2);
    assert_eq!(
        one.window_add("other", "c1", t + 3, w).await.expect("add"),
        1
    );
    // c1 was last added at t + 1: out of the window at t + 1 + w.
    assert_eq!(
        one.window_add("k", "c3", t + 1 + w, w).await.expect("add"),
        2
    );
}

/// One `#[tokio::test]` per case, each on a fresh backend from `$backend`.
macro_rules! bus_suite {
    ($backend:expr) => {
        $crate::bus::suite::bus_suite!(@cases $backend;
            events_reach_other_nodes_in_order_and_never_their_origin,
            confirmed_publishes_complete_once_written,
            presence_is_counted_across_nodes,
            a_dead_nodes_users_go_offline,
            events_queued_while_the_log_was_away_arrive_without_a_gap,
            a_publisher_that_dropped_events_makes_the_others_resync,
            a_log_that_lost_everything_is_a_gap,
            windowed_sets_count_distinct_members_across_nodes,
        );
    };
    (@cases $backend:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let backend = $backend;
                $crate::bus::suite::$case(&backend).await;
            }
        )*
    };
}
pub(crate) use bus_suite;

mod on_memory {
    super::bus_suite!(super::MemoryBroker::new());
}

mod on_redis {
    use parley_testsupport::RedisServer;

    use super::*;
    use crate::bus::redis::RedisLog;

    #[async_trait]
    impl Backend for RedisServer {
        async fn log(&self) -> Arc<dyn Log> {
            Arc::new(RedisLog::connect(&self.url()).await.unwrap())
        }
        fn set_reachable(&self, reachable: bool) {
            if reachable {
                self.restart()
            } else {
                self.stop()
            }
        }
        fn restart_empty(&self) {
            RedisServer::restart_empty(self);
        }
    }

    super::bus_suite!(RedisServer::start());
}
