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
use crate::outbox::Budget;
use crate::session::SessionLimits;
use crate::state::admission::Admission;
use crate::state::limiter::UserLimiter;

/// Frames queued toward one session before it is a slow consumer.
pub(crate) const DEFAULT_OUTBOX_FRAMES: usize = 1024;
/// Bytes queued toward one session before it is a slow consumer.
pub(crate) const DEFAULT_OUTBOX_BYTES: usize = 4 << 20;
/// Bytes queued toward clients on the whole node before the biggest queues are shed.
pub(crate) const DEFAULT_OUTBOX_NODE_BYTES: usize = 256 << 20;
/// Sessions one user may have on a node at once.
pub(crate) const DEFAULT_MAX_SESSIONS_PER_USER: usize = 64;
/// Close a session whose socket takes no bytes for this long, ms.
pub(crate) const DEFAULT_WRITE_TIMEOUT_MS: u64 = 30_000;
/// Messages replayed per conversation on resume.
pub(crate) const DEFAULT_RESUME_MAX_MESSAGES: usize = 1000;
/// Messages one Hello may replay over all its resume points.
pub(crate) const DEFAULT_RESUME_MAX_TOTAL_MESSAGES: usize = 10_000;
/// Bytes of replayed frames one Hello may cause over all its resume points.
pub(crate) const DEFAULT_RESUME_MAX_TOTAL_BYTES: usize = 16 << 20;
/// Largest REST body, bytes.
pub(crate) const DEFAULT_MAX_BODY_BYTES: usize = 64 * 1024;
/// Time a client gets to send a request's headers, ms.
pub(crate) const DEFAULT_HTTP_HEADER_TIMEOUT_MS: u64 = 10_000;
/// Time a client gets to send a whole request body, ms.
pub(crate) const DEFAULT_HTTP_BODY_TIMEOUT_MS: u64 = 10_000;
/// Longest a kept-alive HTTP connection may stay silent between requests, ms.
pub(crate) const DEFAULT_HTTP_IDLE_TIMEOUT_MS: u64 = 60_000;
/// Drain time at shutdown, ms.
pub(crate) const DEFAULT_SHUTDOWN_GRACE_MS: u64 = 5_000;
/// SO_SNDBUF of client TCP connections, bytes: what the kernel may hold for one client that
/// does not read (it doubles the value for its bookkeeping). Autotuning would let it grow to
/// `tcp_wmem`'s maximum (4 MiB) per connection.
pub(crate) const DEFAULT_SOCKET_SEND_BUFFER: usize = 256 << 10;
/// REST requests per second per user (every endpoint counts), and the burst above it.
pub(crate) const DEFAULT_REST_REQUESTS_PER_SEC: f64 = 10.0;
pub(crate) const DEFAULT_REST_REQUEST_BURST: u32 = 40;
/// Groups one user may create per hour.
pub(crate) const DEFAULT_GROUPS_PER_USER_PER_HOUR: u32 = 30;
/// Reports one user may file per hour.
pub(crate) const DEFAULT_REPORTS_PER_USER_PER_HOUR: u32 = 20;
/// Uploads one user may make per hour.
pub(crate) const DEFAULT_MEDIA_UPLOADS_PER_HOUR: u32 = 300;
/// Time a client gets to send a whole upload, ms.
pub(crate) const DEFAULT_MEDIA_UPLOAD_TIMEOUT_MS: u64 = 120_000;
/// On shutdown, how long `/readyz` says 503 before sessions are told to go, ms.
pub(crate) const DEFAULT_SHUTDOWN_READY_DELAY_MS: u64 = 1_000;
/// Connections on the node at most (0 at the command line: the open-files limit less 256).
pub(crate) const DEFAULT_MAX_CONNECTIONS: usize = 20_000;
/// Connections from one address at most (0: no limit, for nodes behind a proxy).
pub(crate) const DEFAULT_MAX_CONNECTIONS_PER_IP: u32 = 4_096;

/// What the transports and the driver read of the configuration.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    /// Frames queued toward one session before it is a slow consumer.
    pub(crate) outbox_frames: usize,
    /// Bytes queued toward one session before it is a slow consumer.
    pub(crate) outbox_bytes: usize,
    /// Bytes queued toward clients on the whole node before the biggest queues are shed.
    pub(crate) outbox_node_bytes: usize,
    /// Sessions one user may have on this node at once.
    pub(crate) max_sessions_per_user: usize,
    /// Close a session (or HTTP connection) whose socket takes no bytes for this long.
    pub(crate) write_timeout: Duration,
    /// SO_SNDBUF of client TCP connections (0: the kernel's autotuning).
    pub(crate) socket_send_buffer: usize,
    /// The Bearer token `/metrics` needs (None: loopback clients only).
    pub(crate) metrics_token: Option<String>,
    /// REST requests per second per user, and the burst above it.
    pub(crate) rest_rate: (f64, u32),
    /// Groups one user may create per hour (also the burst).
    pub(crate) groups_per_user_per_hour: u32,
    pub(crate) reports_per_user_per_hour: u32,
    /// Deadlines of HTTP connections: headers, a whole body, silence between requests.
    pub(crate) http_header_timeout: Duration,
    pub(crate) http_body_timeout: Duration,
    pub(crate) http_idle_timeout: Duration,
    /// Messages replayed per conversation on resume.
    pub(crate) resume_max_messages: usize,
    /// Messages and bytes one Hello may replay in all.
    pub(crate) resume_max_total_messages: usize,
    pub(crate) resume_max_total_bytes: usize,
    /// Largest REST request body.
    pub(crate) max_body_bytes: usize,
    /// Drain time at shutdown.
    pub(crate) shutdown_grace: Duration,
    /// Readiness 503 before Goaway on shutdown.
    pub(crate) shutdown_ready_delay: Duration,
    /// Allowed CORS origins; `["*"]` = any.
    pub(crate) cors_origins: Vec<String>,
    /// Serve `/test/echo`.
    pub(crate) test_endpoints: bool,
    /// Serve the embedded web chat page (`/`, `/index.html`, `/assets/…`).
    pub(crate) web_page: bool,
    /// The node signs with the generated development secret: `/api/dev/token` hands out
    /// tokens for any user (never with `JWT_SECRET` or a public key: then it is 404).
    pub(crate) dev_sign_in: bool,
    /// Connections on the node at most.
    pub(crate) max_connections: usize,
    /// Connections from one address at most (0: no limit).
    pub(crate) max_connections_per_ip: u32,
    /// Uploads one user may make per hour.
    pub(crate) media_uploads_per_hour: u32,
    /// Time a client gets to send a whole upload.
    pub(crate) media_upload_timeout: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            outbox_frames: DEFAULT_OUTBOX_FRAMES,
            outbox_bytes: DEFAULT_OUTBOX_BYTES,
            outbox_node_bytes: DEFAULT_OUTBOX_NODE_BYTES,
            max_sessions_per_user: DEFAULT_MAX_SESSIONS_PER_USER,
            write_timeout: Duration::from_millis(DEFAULT_WRITE_TIMEOUT_MS),
            socket_send_buffer: DEFAULT_SOCKET_SEND_BUFFER,
            metrics_token: None,
            rest_rate: (DEFAULT_REST_REQUESTS_PER_SEC, DEFAULT_REST_REQUEST_BURST),
            groups_per_user_per_hour: DEFAULT_GROUPS_PER_USER_PER_HOUR,
            reports_per_user_per_hour: DEFAULT_REPORTS_PER_USER_PER_HOUR,
            http_header_timeout: Duration::from_millis(DEFAULT_HTTP_HEADER_TIMEOUT_MS),
            http_body_timeout: Duration::from_millis(DEFAULT_HTTP_BODY_TIMEOUT_MS),
            http_idle_timeout: Duration::from_millis(DEFAULT_HTTP_IDLE_TIMEOUT_MS),
            resume_max_messages: DEFAULT_RESUME_MAX_MESSAGES,
            resume_max_total_messages: DEFAULT_RESUME_MAX_TOTAL_MESSAGES,
            resume_max_total_bytes: DEFAULT_RESUME_MAX_TOTAL_BYTES,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            shutdown_grace: Duration::from_millis(DEFAULT_SHUTDOWN_GRACE_MS),
            shutdown_ready_delay: Duration::from_millis(DEFAULT_SHUTDOWN_READY_DELAY_MS),
            cors_origins: Vec::new(),
            test_endpoints: false,
            web_page: true,
            dev_sign_in: false,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_connections_per_ip: DEFAULT_MAX_CONNECTIONS_PER_IP,
            media_uploads_per_hour: DEFAULT_MEDIA_UPLOADS_PER_HOUR,
            media_upload_timeout: Duration::from_millis(DEFAULT_MEDIA_UPLOAD_TIMEOUT_MS),
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
    /// Connections admitted, node-wide and per address.
    pub(crate) admission: Arc<Admission>,
    /// Bytes queued toward clients, node-wide (every outbox counts in it).
    pub(crate) outbox_budget: Arc<Budget>,
    /// REST requests per user.
    pub(crate) rest_limiter: UserLimiter,
    /// Groups a user may create (anyone can put anyone into a group they create).
    pub(crate) group_limiter: UserLimiter,
    /// Reports per user (`--reports-per-user-per-hour`).
    pub(crate) report_limiter: UserLimiter,
    /// Uploads per user (`--media-uploads-per-hour`).
    pub(crate) upload_limiter: UserLimiter,
}

impl Node {
    pub(crate) fn new(
        settings: Settings,
        limits: SessionLimits,
        auth: Arc<Authenticator>,
        chat: Chat,
        metrics: Arc<Metrics>,
    ) -> Self {
        let admission = Admission::new(settings.max_connections, settings.max_connections_per_ip);
        let outbox_budget = Budget::new(settings.outbox_node_bytes);
        let (rate, burst) = settings.rest_rate;
        let rest_limiter =
            UserLimiter::with_refusal(rate, burst, "too many API requests; slow down");
        let per_hour = settings.groups_per_user_per_hour;
        let group_limiter = UserLimiter::with_refusal(
            f64::from(per_hour) / 3600.0,
            per_hour,
            "too many groups created; try again later",
        );
        let per_hour = settings.reports_per_user_per_hour;
        let report_limiter = UserLimiter::with_refusal(
            f64::from(per_hour) / 3600.0,
            per_hour,
            "too many reports; try again later",
        );
        let per_hour = settings.media_uploads_per_hour;
        let upload_limiter = UserLimiter::with_refusal(
            f64::from(per_hour) / 3600.0,
            per_hour,
            "upload quota reached; try again later",
        );
        Self {
            settings,
            limits: Arc::new(limits),
            auth,
            chat,
            metrics,
            lifecycle: Lifecycle::new(),
            admission: Arc::new(admission),
            outbox_budget,
            rest_limiter,
            group_limiter,
            report_limiter,
            upload_limiter,
        }
    }
}
