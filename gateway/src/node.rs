//! What every shard and every request handler of one node shares.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use parley_storage::Storage;

use crate::auth::Authenticator;
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
    shutting_down: AtomicBool,
}

impl Node {
    pub fn new(
        config: Arc<Config>,
        auth: Arc<Authenticator>,
        hub: Arc<Hub>,
        storage: Arc<dyn Storage>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            limits: Arc::new(config.session.clone()),
            config,
            auth,
            hub,
            storage,
            metrics,
            shutting_down: AtomicBool::new(false),
        }
    }

    pub fn begin_shutdown(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::SeqCst)
    }
}
