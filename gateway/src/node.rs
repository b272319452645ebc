//! What every shard and every request handler of one node shares.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use parley_storage::Storage;

use crate::auth::Authenticator;
use crate::cluster::Cluster;
use crate::config::{Config, SessionLimits};
use crate::hub::Hub;
use crate::metrics::Metrics;

/// The node: configuration, authentication, storage and the hub. `Send + Sync`, behind `Arc`.
pub struct Node {
    pub config: Arc<Config>,
    pub limits: Arc<SessionLimits>,
    pub auth: Arc<Authenticator>,
    pub hub: Arc<Hub>,
    pub storage: Arc<dyn Storage>,
    pub metrics: Arc<Metrics>,
    /// The cluster link, when running with Redis.
    pub cluster: Option<Arc<Cluster>>,
    /// Bumped when local sessions must reconnect and resume (cluster bus gap).
    resync: tokio::sync::watch::Sender<u64>,
    shutting_down: AtomicBool,
}

impl Node {
    pub fn new(
        config: Arc<Config>,
        auth: Arc<Authenticator>,
        hub: Arc<Hub>,
        storage: Arc<dyn Storage>,
        metrics: Arc<Metrics>,
        cluster: Option<Arc<Cluster>>,
    ) -> Self {
        Self {
            limits: Arc::new(config.session.clone()),
            config,
            auth,
            hub,
            storage,
            metrics,
            cluster,
            resync: tokio::sync::watch::Sender::new(0),
            shutting_down: AtomicBool::new(false),
        }
    }

    /// Asks every local session to reconnect and resume.
    pub fn resync(&self) {
        self.resync.send_modify(|n| *n += 1);
    }

    /// Watches for [`Node::resync`].
    pub fn resync_rx(&self) -> tokio::sync::watch::Receiver<u64> {
        self.resync.subscribe()
    }

    pub fn begin_shutdown(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::SeqCst)
    }
}
