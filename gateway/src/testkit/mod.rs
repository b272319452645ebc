//! The in-process test layer (quinn's `Pair` idea for Parley): a node with several shards on
//! the test's own thread, sessions fed from memory instead of sockets, the embedded engine in a
//! temp dir, and — for clusters — nodes sharing a memory bus. Run under a paused Tokio clock
//! (`#[tokio::test(start_paused = true)]`): time moves only when every task waits, straight to
//! the next timer, so heartbeats, idle timeouts and typing expiry are deterministic, and a
//! test that waits for something that never comes fails at once instead of after real seconds.
//!
//! Storage work happens on threads the clock cannot see, so every storage call holds the clock
//! still while it runs ([`HoldClock`]); [`Gates`] lets a test hold chosen appends back to force
//! an interleaving.

mod client;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::rc::Rc;
use std::sync::{Arc, Mutex};

use parley_storage::Storage;
use parley_storage::embedded::{Embedded, EmbeddedConfig};
use tokio::sync::{Notify, mpsc, watch};

pub(crate) use client::MemClient;

use crate::auth::Authenticator;
use crate::bus::memory::MemoryBroker;
use crate::bus::{Bus, BusConfig};
use crate::metered::{Around, Call, CallFuture, Wrapped};
use crate::node::BusEvents;
use crate::node::{Node, Settings};
use crate::server::{Parts, assemble};
use crate::session::SessionLimits;
use crate::shard::Shard;
use crate::state::fanout::Delivery;

/// The secret test tokens are signed with.
pub(crate) const SECRET: &[u8] = b"parley-testkit-secret-0123456789";

/// Holds a paused clock still while a storage call runs on the engine's threads: a blocking
/// task that lasts as long as the call keeps Tokio from advancing time (it would otherwise
/// jump to the next timer the moment every task waits for storage).
pub(crate) struct HoldClock<G = ()>(pub(crate) G);

/// Appends a test holds back until it opens their gate, by client_msg_id.
#[derive(Default)]
pub(crate) struct Gates {
    closed: Mutex<HashMap<String, Arc<Gate>>>,
}

/// One gate: opened by the test, reached by the append.
#[derive(Default)]
struct Gate {
    open: Notify,
    reached: Notify,
}

impl Gates {
    /// Appends with `client_msg_id` wait (after storage committed them) until [`Gates::open`].
    pub(crate) fn close(&self, client_msg_id: &str) {
        let mut g = self.closed.lock().unwrap_or_else(|e| e.into_inner());
        g.insert(client_msg_id.to_owned(), Arc::default());
    }

    pub(crate) fn open(&self, client_msg_id: &str) {
        let mut g = self.closed.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(gate) = g.remove(client_msg_id) {
            gate.open.notify_one();
        }
    }

    /// Resolves once an append with `client_msg_id` is stored and waits at its (closed) gate.
    pub(crate) async fn reached(&self, client_msg_id: &str) {
        let gate = self.gate(client_msg_id).expect("a closed gate");
        gate.reached.notified().await;
    }

    fn gate(&self, client_msg_id: &str) -> Option<Arc<Gate>> {
        let g = self.closed.lock().unwrap_or_else(|e| e.into_inner());
        g.get(client_msg_id).cloned()
    }
}

impl Around for HoldClock<Arc<Gates>> {
    const SEES_APPENDS: bool = true;

    fn around<'a, T: Send + 'a>(
        &'a self,
        call: Call<'a>,
        f: CallFuture<'a, T>,
    ) -> CallFuture<'a, T> {
        let gate = match call {
            Call::Write(Some(key)) => self.0.gate(key),
            _ => None,
        };
        Box::pin(async move {
            let (done, wait) = std::sync::mpsc::sync_channel::<()>(1);
            let hold = tokio::task::spawn_blocking(move || {
                let _ = wait.recv();
            });
            let r = f.await;
            drop(done);
            let _ = hold.await;
            if let Some(gate) = gate {
                // notify_one keeps a permit: `reached` may start waiting after this.
                gate.reached.notify_one();
                gate.open.notified().await;
            }
            r
        })
    }
}

/// How to build a [`TestNode`].
pub(crate) struct Options {
    pub(crate) shards: usize,
    pub(crate) node_id: u16,
    pub(crate) limits: SessionLimits,
    pub(crate) settings: Settings,
    pub(crate) send_rate: (f64, u32),
    /// Join the cluster on this memory broker.
    pub(crate) bus: Option<Arc<MemoryBroker>>,
    /// Share this node's storage (the nodes of a cluster share their history).
    pub(crate) storage_of: Option<Shared>,
}

/// A media service over a directory, URLs signed with a key of [`SECRET`].
pub(crate) fn test_media(dir: &std::path::Path) -> Arc<crate::media::Media> {
    let config = crate::media::MediaConfig::with_keys(vec![(
        "0".into(),
        crate::server::media_key_from(SECRET),
    )]);
    Arc::new(crate::media::Media::on_disk(dir.to_path_buf(), config).expect("media dir"))
}

/// A node's storage, to give to another node of the same in-process cluster.
#[derive(Clone)]
pub(crate) struct Shared {
    engine: Arc<dyn Storage>,
    _dir: Arc<tempfile::TempDir>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            shards: 2,
            node_id: 0,
            limits: SessionLimits::default(),
            settings: Settings::default(),
            send_rate: (1e6, 1_000_000),
            bus: None,
            storage_of: None,
        }
    }
}

/// A node in this process, its shards on the current thread.
pub(crate) struct TestNode {
    pub(crate) node: Arc<Node>,
    pub(crate) shards: Vec<Rc<Shard>>,
    pub(crate) gates: Arc<Gates>,
    shared: Shared,
    shutdown: watch::Sender<bool>,
}

impl TestNode {
    /// Starts a node; call inside a `LocalSet` (shard tasks are `!Send`).
    pub(crate) fn start(o: Options) -> Self {
        let shared = o.storage_of.clone().unwrap_or_else(|| {
            let dir = tempfile::tempdir().expect("temp dir");
            let config = EmbeddedConfig {
                node_id: o.node_id,
                ..EmbeddedConfig::default()
            };
            let engine = Embedded::open(dir.path(), config).expect("embedded storage");
            Shared {
                engine: Arc::new(engine),
                _dir: Arc::new(dir),
            }
        });
        let gates = Arc::new(Gates::default());
        let storage: Arc<dyn Storage> = Arc::new(Wrapped::new(
            shared.engine.clone(),
            HoldClock(gates.clone()),
        ));
        let (inboxes, inbox_rx): (Vec<_>, Vec<_>) = (0..o.shards)
            .map(|_| mpsc::channel::<Delivery>(1 << 16))
            .unzip();
        let bus = o.bus.as_ref().map(|broker| {
            let config = BusConfig {
                node_id: o.node_id,
                partitions: 4,
                retention: 10_000,
                publish_queue: 10_000,
                presence_ttl: std::time::Duration::from_secs(10),
            };
            Bus::new(config, broker.log())
        });
        let parts = Parts {
            settings: o.settings,
            limits: SessionLimits {
                node_id: o.node_id,
                ..o.limits
            },
            auth: Authenticator::new(Some(SECRET), None, crate::auth::TokenRules::default())
                .expect("auth"),
            send_rate: o.send_rate,
            moderation: Arc::new(crate::moderation::Moderation::disabled()),
            media: test_media(&shared._dir.path().join("media")),
            search: None,
            push: None,
        };
        let node = assemble(parts, storage, inboxes, bus);
        if let Some(bus) = &node.chat.bus {
            bus.start(
                &tokio::runtime::Handle::current(),
                Arc::new(BusEvents(node.clone())),
            );
        }
        let (shutdown, shutdown_rx) = watch::channel(false);
        let shards = inbox_rx
            .into_iter()
            .enumerate()
            .map(|(id, rx)| {
                let shard = Rc::new(Shard::new(id, node.clone(), shutdown_rx.clone()));
                tokio::task::spawn_local(shard.clone().run_inbox(rx));
                shard
            })
            .collect();
        Self {
            node,
            shards,
            gates,
            shared,
            shutdown,
        }
    }

    /// This node's storage, for another node of the same cluster.
    pub(crate) fn storage(&self) -> Shared {
        self.shared.clone()
    }

    /// A session on shard `shard` that has sent nothing yet.
    pub(crate) fn open(&self, shard: usize, user: &str) -> MemClient {
        MemClient::open(self.shards[shard].clone(), user)
    }

    /// A session on `shard`, authenticated as `user`, resuming from `resume`.
    pub(crate) async fn connect(
        &self,
        shard: usize,
        user: &str,
        resume: Vec<parley_proto::ResumePoint>,
    ) -> MemClient {
        let mut c = self.open(shard, user);
        c.hello(resume).await;
        c
    }

    /// Tells every shard to stop (sessions get Goaway and close).
    pub(crate) fn shutdown(&self) {
        self.node.lifecycle.begin_shutdown();
        let _ = self.shutdown.send(true);
    }
}

/// Runs `f` on a `LocalSet` (where the shards' tasks live).
pub(crate) async fn local<F: std::future::Future>(f: F) -> F::Output {
    tokio::task::LocalSet::new().run_until(f).await
}
