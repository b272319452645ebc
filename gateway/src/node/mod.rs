//! The node: what every shard and request handler of one node shares — its settings, the
//! session limits, authentication, the chat operations (which own the node-wide state in
//! [`crate::state`]), metrics and the lifecycle — and the handler it registers with the bus.
//! `Send + Sync`, behind `Arc`.

mod bus_events;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

pub(crate) use bus_events::BusEvents;

use crate::auth::Authenticator;
use crate::chat::Chat;
use crate::metrics::Metrics;
use crate::session::SessionLimits;

/// Frames queued toward one session before it is a slow consumer.
pub(crate) const DEFAULT_OUTBOX_FRAMES: usize = 1024;
/// Bytes queued toward one session before it is a slow consumer.
pub(crate) const DEFAULT_OUTBOX_BYTES: usize = 4 << 20;
/// Close a session whose socket takes no bytes for this long, ms.
pub(crate) const DEFAULT_WRITE_TIMEOUT_MS: u64 = 30_000;
/// Messages replayed per conversation on resume.
pub(crate) const DEFAULT_RESUME_MAX_MESSAGES: usize = 1000;
/// Largest REST body, bytes.
pub(crate) const DEFAULT_MAX_BODY_BYTES: usize = 64 * 1024;
/// Drain time at shutdown, ms.
pub(crate) const DEFAULT_SHUTDOWN_GRACE_MS: u64 = 5_000;

/// What the transports and the driver read of the configuration.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    /// Frames queued toward one session before it is a slow consumer.
    pub(crate) outbox_frames: usize,
    /// Bytes queued toward one session before it is a slow consumer.
    pub(crate) outbox_bytes: usize,
    /// Close a session whose socket takes no bytes for this long.
    pub(crate) write_timeout: Duration,
    /// Messages replayed per conversation on resume.
    pub(crate) resume_max_messages: usize,
    /// Largest REST request body.
    pub(crate) max_body_bytes: usize,
    /// Drain time at shutdown.
    pub(crate) shutdown_grace: Duration,
    /// Allowed CORS origins; `["*"]` = any.
    pub(crate) cors_origins: Vec<String>,
    /// Serve `/test/echo`.
    pub(crate) test_endpoints: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            outbox_frames: DEFAULT_OUTBOX_FRAMES,
            outbox_bytes: DEFAULT_OUTBOX_BYTES,
            write_timeout: Duration::from_millis(DEFAULT_WRITE_TIMEOUT_MS),
            resume_max_messages: DEFAULT_RESUME_MAX_MESSAGES,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            shutdown_grace: Duration::from_millis(DEFAULT_SHUTDOWN_GRACE_MS),
            cors_origins: Vec::new(),
            test_endpoints: false,
        }
    }
}

/// Stopping, and asking every session to resume.
pub(crate) struct Lifecycle {
    /// Bumped when local sessions must reconnect and resume (cluster bus gap).
    resync: tokio::sync::watch::Sender<u64>,
    shutting_down: AtomicBool,
}

impl Lifecycle {
    fn new() -> Self {
        Self {
            resync: tokio::sync::watch::Sender::new(0),
            shutting_down: AtomicBool::new(false),
        }
    }

    /// Asks every local session to reconnect and resume.
    pub(crate) fn resync(&self) {
        self.resync.send_modify(|n| *n += 1);
    }

    /// Watches for [`Lifecycle::resync`].
    pub(crate) fn resync_rx(&self) -> tokio::sync::watch::Receiver<u64> {
        self.resync.subscribe()
    }

    pub(crate) fn begin_shutdown(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
    }

    pub(crate) fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::SeqCst)
    }
}

/// The node's parts.
pub(crate) struct Node {
    pub(crate) settings: Settings,
    pub(crate) limits: Arc<SessionLimits>,
    pub(crate) auth: Arc<Authenticator>,
    pub(crate) chat: Chat,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) lifecycle: Lifecycle,
}

impl Node {
    pub(crate) fn new(
        settings: Settings,
        limits: SessionLimits,
        auth: Arc<Authenticator>,
        chat: Chat,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            settings,
            limits: Arc::new(limits),
            auth,
            chat,
            metrics,
            lifecycle: Lifecycle::new(),
        }
    }
}
