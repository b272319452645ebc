//! The command line: every setting a flag with an environment variable (the seed's `PORT`,
//! `CLIENT_URL`, `JWT_SECRET`, `REDIS_URL` names where it had them). Defaults are the named
//! constants of the module each setting belongs to.

use std::net::IpAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::media;
use crate::node;
use crate::push;
use crate::session::limits;

/// Deliveries queued toward one shard.
pub(crate) const DEFAULT_SHARD_INBOX: usize = 64 * 1024;
/// Sends per second per user.
pub(crate) const DEFAULT_USER_MESSAGES_PER_SEC: f64 = 20.0;
/// Burst above that rate.
pub(crate) const DEFAULT_USER_MESSAGE_BURST: u32 = 40;
/// Writes per fsync in the embedded engine.
pub(crate) const DEFAULT_STORAGE_MAX_BATCH: usize = 2048;
/// Bus partitions.
pub(crate) const DEFAULT_REDIS_PARTITIONS: u32 = 16;
/// Events kept per bus partition.
pub(crate) const DEFAULT_REDIS_STREAM_MAXLEN: u64 = 100_000;
/// Events queued for Redis while it is away.
pub(crate) const DEFAULT_REDIS_PUBLISH_QUEUE: usize = 100_000;
/// A node silent this long is dead, ms.
pub(crate) const DEFAULT_PRESENCE_TTL_MS: u64 = 10_000;

/// Parley chat gateway.
#[derive(Debug, Parser)]
#[command(name = "gateway", version, about = "Parley real-time chat gateway")]
pub(crate) struct Cli {
    #[command(flatten)]
    pub(crate) options: Options,

    /// Validate the configuration, print it, and exit.
    #[arg(long)]
    pub(crate) check_config: bool,

    #[command(subcommand)]
    pub(crate) command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Print a JWT for USER signed with the configured (or generated development) secret.
    Token {
        /// The user id (the token's `sub`).
        user: String,
        /// Lifetime, e.g. `3600`, `90s`, `30m`, `24h`, `7d`.
        #[arg(long, default_value = "24h")]
        ttl: String,
    },
    /// Apply the CQL schema to the --scylla cluster (idempotent) and exit.
    Migrate,
    /// Rebuild the search index from storage (embedded storage; stop the node first) and exit.
    Reindex,
}

/// Every setting, as given. [`Config::from_options`] validates it.
#[derive(Debug, Clone, Args)]
pub(crate) struct Options {
    /// TCP port for HTTP, WebSocket (/ws) and the REST API.
    #[arg(long, env = "PORT", default_value_t = 3001)]
    pub(crate) port: u16,
    /// Address to listen on.
    #[arg(long, env = "PARLEY_BIND", default_value = "0.0.0.0")]
    pub(crate) bind: IpAddr,
    /// Allowed CORS origins, comma-separated (`*` = any).
    #[arg(long, env = "CLIENT_URL", default_value = "http://localhost:3000")]
    pub(crate) client_url: String,
    /// Directory of the embedded storage and the generated development secret.
    #[arg(long, env = "PARLEY_DATA_DIR", default_value = "./data")]
    pub(crate) data_dir: PathBuf,
    /// HS256 secret for JWTs (at least 16 bytes). Unset: a development secret is generated
    /// once and kept in the data directory.
    #[arg(long, env = "JWT_SECRET", hide_env_values = true)]
    pub(crate) jwt_secret: Option<String>,
    /// PEM file of an RSA (RS256) or Ed25519 (EdDSA) public key accepted for JWTs. With it
    /// and no JWT_SECRET, HS256 tokens are refused (no development secret).
    #[arg(long, env = "JWT_PUBLIC_KEY_FILE")]
    pub(crate) jwt_public_key: Option<PathBuf>,
    /// The `iss` every token must carry. Unset: not checked.
    #[arg(long, env = "JWT_ISSUER")]
    pub(crate) jwt_issuer: Option<String>,
    /// A value every token's `aud` must contain. Unset: not checked.
    #[arg(long, env = "JWT_AUDIENCE")]
    pub(crate) jwt_audience: Option<String>,
    /// Longest token lifetime accepted (exp − iat), seconds.
    #[arg(long, env = "JWT_MAX_LIFETIME_S", default_value_t = crate::auth::DEFAULT_MAX_TOKEN_LIFETIME_S)]
    pub(crate) jwt_max_lifetime_s: i64,
    /// Clock difference tolerated for a token's nbf and iat, seconds.
    #[arg(long, env = "JWT_LEEWAY_S", default_value_t = crate::auth::DEFAULT_TOKEN_LEEWAY_S)]
    pub(crate) jwt_leeway_s: i64,
    /// This node's id (0-1023), part of every message id: unique per node of a cluster.
    #[arg(long, env = "PARLEY_NODE_ID", default_value_t = 0)]
    pub(crate) node_id: u16,
    /// Shard threads (each with its own listener and runtime). 0 = one per core.
    #[arg(long, env = "PARLEY_SHARDS", default_value_t = 0)]
    pub(crate) shards: usize,
    /// Largest frame a client may send, bytes.
    #[arg(long, env = "PARLEY_MAX_FRAME_BYTES", default_value_t = limits::DEFAULT_MAX_FRAME_BYTES)]
    pub(crate) max_frame_bytes: usize,
    /// Longest message content, in characters (Unicode scalar values).
    #[arg(long, env = "PARLEY_MAX_MESSAGE_CHARS", default_value_t = limits::DEFAULT_MAX_MESSAGE_CHARS)]
    pub(crate) max_message_chars: usize,
    /// Frames queued toward one session before it counts as a slow consumer.
    #[arg(long, env = "PARLEY_OUTBOX_FRAMES", default_value_t = node::DEFAULT_OUTBOX_FRAMES)]
    pub(crate) outbox_frames: usize,
    /// Bytes queued toward one session before it counts as a slow consumer.
    #[arg(long, env = "PARLEY_OUTBOX_BYTES", default_value_t = node::DEFAULT_OUTBOX_BYTES)]
    pub(crate) outbox_bytes: usize,
    /// Bytes queued toward clients on the whole node; past it, sessions holding the most are
    /// closed as slow consumers first (they reconnect and resume).
    #[arg(long, env = "PARLEY_OUTBOX_NODE_BYTES", default_value_t = node::DEFAULT_OUTBOX_NODE_BYTES)]
    pub(crate) outbox_node_bytes: usize,
    /// Sessions one user may have on a node at once; one more is refused (1402).
    #[arg(long, env = "PARLEY_MAX_SESSIONS_PER_USER", default_value_t = node::DEFAULT_MAX_SESSIONS_PER_USER)]
    pub(crate) max_sessions_per_user: usize,
    /// Deliveries queued toward one shard from the others.
    #[arg(long, env = "PARLEY_SHARD_INBOX", default_value_t = DEFAULT_SHARD_INBOX)]
    pub(crate) shard_inbox: usize,
    /// Heartbeat interval told to clients in Welcome, ms.
    #[arg(long, env = "PARLEY_HEARTBEAT_MS", default_value_t = limits::DEFAULT_HEARTBEAT_MS)]
    pub(crate) heartbeat_ms: u64,
    /// Close a session that sent nothing for this long, ms.
    #[arg(long, env = "PARLEY_IDLE_TIMEOUT_MS", default_value_t = limits::DEFAULT_IDLE_TIMEOUT_MS)]
    pub(crate) idle_timeout_ms: u64,
    /// Close a connection that sent no Hello within this long, ms.
    #[arg(long, env = "PARLEY_HELLO_TIMEOUT_MS", default_value_t = limits::DEFAULT_HELLO_TIMEOUT_MS)]
    pub(crate) hello_timeout_ms: u64,
    /// A typing indicator ends by itself after this long without a refresh, ms.
    #[arg(long, env = "PARLEY_TYPING_TTL_MS", default_value_t = limits::DEFAULT_TYPING_TTL_MS)]
    pub(crate) typing_ttl_ms: u64,
    /// Close a session whose socket accepts no bytes for this long, ms.
    #[arg(long, env = "PARLEY_WRITE_TIMEOUT_MS", default_value_t = node::DEFAULT_WRITE_TIMEOUT_MS)]
    pub(crate) write_timeout_ms: u64,
    /// SO_SNDBUF of client TCP connections, bytes (0: the kernel autotunes, up to 4 MiB per
    /// connection that does not read).
    #[arg(long, env = "PARLEY_SOCKET_SEND_BUFFER_BYTES", default_value_t = node::DEFAULT_SOCKET_SEND_BUFFER)]
    pub(crate) socket_send_buffer_bytes: usize,
    /// A Bearer token `/metrics` requires (Prometheus `authorization` credentials). Unset:
    /// `/metrics` answers loopback clients only.
    #[arg(long, env = "PARLEY_METRICS_TOKEN", hide_env_values = true)]
    pub(crate) metrics_token: Option<String>,
    /// REST requests per second per user (every endpoint counts).
    #[arg(long, env = "PARLEY_REST_REQUESTS_PER_SEC", default_value_t = node::DEFAULT_REST_REQUESTS_PER_SEC)]
    pub(crate) rest_requests_per_sec: f64,
    /// REST requests a user may make in a burst above that rate.
    #[arg(long, env = "PARLEY_REST_REQUEST_BURST", default_value_t = node::DEFAULT_REST_REQUEST_BURST)]
    pub(crate) rest_request_burst: u32,
    /// Groups one user may create per hour (a group puts its members in touch without asking
    /// them, so this bounds how many people one account can reach that way).
    #[arg(long, env = "PARLEY_GROUPS_PER_USER_PER_HOUR", default_value_t = node::DEFAULT_GROUPS_PER_USER_PER_HOUR)]
    pub(crate) groups_per_user_per_hour: u32,
    /// A moderation rules file (JSON; see README "Moderation"): every message's text is checked
    /// against it before it is stored. Read again when it changes.
    #[arg(long, env = "PARLEY_MODERATION_RULES")]
    pub(crate) moderation_rules: Option<std::path::PathBuf>,
    /// How often the moderation rules file is checked for changes, ms.
    #[arg(long, env = "PARLEY_MODERATION_RELOAD_MS", default_value_t = 2000)]
    pub(crate) moderation_reload_ms: u64,
    /// An external classifier for `classifier` moderation rules: `http://host:port/path`
    /// (see README "Moderation").
    #[arg(long, env = "PARLEY_MODERATION_CLASSIFIER_URL")]
    pub(crate) moderation_classifier_url: Option<String>,
    /// Time a classifier call may take (connect included), ms; past it the rule fails open or
    /// closed as it says.
    #[arg(
        long,
        env = "PARLEY_MODERATION_CLASSIFIER_TIMEOUT_MS",
        default_value_t = 250
    )]
    pub(crate) moderation_classifier_timeout_ms: u64,
    /// Classifier calls in flight at most; past that a message is not sent to it.
    #[arg(
        long,
        env = "PARLEY_MODERATION_CLASSIFIER_CONCURRENCY",
        default_value_t = 64
    )]
    pub(crate) moderation_classifier_concurrency: usize,
    /// Reports one user may file per hour.
    #[arg(long, env = "PARLEY_REPORTS_PER_USER_PER_HOUR", default_value_t = node::DEFAULT_REPORTS_PER_USER_PER_HOUR)]
    pub(crate) reports_per_user_per_hour: u32,
    /// Time an HTTP client gets to send a request's headers, ms.
    #[arg(long, env = "PARLEY_HTTP_HEADER_TIMEOUT_MS", default_value_t = node::DEFAULT_HTTP_HEADER_TIMEOUT_MS)]
    pub(crate) http_header_timeout_ms: u64,
    /// Time an HTTP client gets to send a whole request body, ms.
    #[arg(long, env = "PARLEY_HTTP_BODY_TIMEOUT_MS", default_value_t = node::DEFAULT_HTTP_BODY_TIMEOUT_MS)]
    pub(crate) http_body_timeout_ms: u64,
    /// A kept-alive HTTP connection silent this long between requests is closed, ms.
    #[arg(long, env = "PARLEY_HTTP_IDLE_TIMEOUT_MS", default_value_t = node::DEFAULT_HTTP_IDLE_TIMEOUT_MS)]
    pub(crate) http_idle_timeout_ms: u64,
    /// Messages per second one user may send (all sessions and REST together).
    #[arg(long, env = "PARLEY_USER_MESSAGES_PER_SEC", default_value_t = DEFAULT_USER_MESSAGES_PER_SEC)]
    pub(crate) user_messages_per_sec: f64,
    /// Burst of messages a user may send above the rate.
    #[arg(long, env = "PARLEY_USER_MESSAGE_BURST", default_value_t = DEFAULT_USER_MESSAGE_BURST)]
    pub(crate) user_message_burst: u32,
    /// Frames per second one session may send.
    #[arg(long, env = "PARLEY_SESSION_FRAMES_PER_SEC", default_value_t = limits::DEFAULT_FRAMES_PER_SEC)]
    pub(crate) session_frames_per_sec: f64,
    /// Burst of frames a session may send above the rate.
    #[arg(long, env = "PARLEY_SESSION_FRAME_BURST", default_value_t = limits::DEFAULT_FRAME_BURST)]
    pub(crate) session_frame_burst: u32,
    /// Malformed frames tolerated per session before it is closed.
    #[arg(long, env = "PARLEY_MAX_BAD_FRAMES", default_value_t = limits::DEFAULT_MAX_BAD_FRAMES)]
    pub(crate) max_bad_frames: u32,
    /// Resume points accepted in one Hello.
    #[arg(long, env = "PARLEY_MAX_RESUME_POINTS", default_value_t = limits::DEFAULT_MAX_RESUME_POINTS)]
    pub(crate) max_resume_points: usize,
    /// Missed messages replayed per conversation on resume (older ones: History).
    #[arg(long, env = "PARLEY_RESUME_MAX_MESSAGES", default_value_t = node::DEFAULT_RESUME_MAX_MESSAGES)]
    pub(crate) resume_max_messages: usize,
    /// Messages one Hello may replay over all its resume points (the rest: `complete =
    /// false`, resume again).
    #[arg(long, env = "PARLEY_RESUME_MAX_TOTAL_MESSAGES", default_value_t = node::DEFAULT_RESUME_MAX_TOTAL_MESSAGES)]
    pub(crate) resume_max_total_messages: usize,
    /// Bytes of replayed frames one Hello may cause over all its resume points.
    #[arg(long, env = "PARLEY_RESUME_MAX_TOTAL_BYTES", default_value_t = node::DEFAULT_RESUME_MAX_TOTAL_BYTES)]
    pub(crate) resume_max_total_bytes: usize,
    /// Largest REST request body, bytes.
    #[arg(long, env = "PARLEY_MAX_BODY_BYTES", default_value_t = node::DEFAULT_MAX_BODY_BYTES)]
    pub(crate) max_body_bytes: usize,
    /// Writes committed by one fsync in the embedded engine (group commit).
    #[arg(long, env = "PARLEY_STORAGE_MAX_BATCH", default_value_t = DEFAULT_STORAGE_MAX_BATCH)]
    pub(crate) storage_max_batch: usize,
    /// Embedded storage, under concurrent load: wait this long for more writes before an
    /// fsync (fewer fsyncs and wake-ups per message, more latency), µs. 0: commit at once.
    #[arg(long, env = "PARLEY_STORAGE_COMMIT_DELAY_US", default_value_t = 0)]
    pub(crate) storage_commit_delay_us: u64,
    /// Embedded storage: memtable size per keyspace, MiB. Memory grows with data up to about
    /// this much per keyspace written to (plus one being flushed) before it flushes.
    #[arg(long, env = "PARLEY_STORAGE_MEMTABLE_MIB", default_value_t = 32)]
    pub(crate) storage_memtable_mib: u64,
    /// On SIGINT/SIGTERM, how long sessions get to drain before the process exits, ms.
    #[arg(long, env = "PARLEY_SHUTDOWN_GRACE_MS", default_value_t = node::DEFAULT_SHUTDOWN_GRACE_MS)]
    pub(crate) shutdown_grace_ms: u64,
    /// On SIGINT/SIGTERM, how long `/readyz` answers 503 while the node still serves, before
    /// sessions are told to go (time for a load balancer to stop sending new clients), ms.
    #[arg(long, env = "PARLEY_SHUTDOWN_READY_DELAY_MS", default_value_t = node::DEFAULT_SHUTDOWN_READY_DELAY_MS)]
    pub(crate) shutdown_ready_delay_ms: u64,
    /// After Goaway, how long a session answers frames still arriving (with `shutting_down`)
    /// before it closes, ms. 0: it closes with the Goaway.
    #[arg(long, env = "PARLEY_SHUTDOWN_DRAIN_MS", default_value_t = limits::DEFAULT_SHUTDOWN_DRAIN_MS)]
    pub(crate) shutdown_drain_ms: u64,
    /// Redis for running as a cluster (fan-out over Redis Streams, presence across nodes),
    /// e.g. `redis://10.0.0.5:6379`. Unset: a single node.
    #[arg(long, env = "REDIS_URL")]
    pub(crate) redis: Option<String>,
    /// Redis Streams partitions of the cluster bus (the same on every node).
    #[arg(long, env = "PARLEY_REDIS_PARTITIONS", default_value_t = DEFAULT_REDIS_PARTITIONS)]
    pub(crate) redis_partitions: u32,
    /// Events kept per partition (`XADD MAXLEN ~`): how long a node may be cut off and still
    /// catch up from the streams.
    #[arg(long, env = "PARLEY_REDIS_STREAM_MAXLEN", default_value_t = DEFAULT_REDIS_STREAM_MAXLEN)]
    pub(crate) redis_stream_maxlen: u64,
    /// Events a node queues for Redis while it is unreachable; past this it drops them and,
    /// once Redis is back, tells the other nodes to have their clients resume from storage.
    #[arg(long, env = "PARLEY_REDIS_PUBLISH_QUEUE", default_value_t = DEFAULT_REDIS_PUBLISH_QUEUE)]
    pub(crate) redis_publish_queue: usize,
    /// A node whose heartbeat is this old is dead and its users go offline, ms.
    #[arg(long, env = "PARLEY_PRESENCE_TTL_MS", default_value_t = DEFAULT_PRESENCE_TTL_MS)]
    pub(crate) presence_ttl_ms: u64,
    /// ScyllaDB (or Cassandra) contact points, `host:9042,...`: history there instead of the
    /// embedded store.
    #[arg(long, env = "SCYLLA_NODES", value_delimiter = ',')]
    pub(crate) scylla: Vec<String>,
    /// ScyllaDB keyspace.
    #[arg(long, env = "SCYLLA_KEYSPACE", default_value = "parley")]
    pub(crate) scylla_keyspace: String,
    /// Consistency of reads and writes: one, quorum, local_quorum, all.
    #[arg(long, env = "SCYLLA_CONSISTENCY", default_value = "local_quorum")]
    pub(crate) scylla_consistency: String,
    /// Replication of the keyspace when --migrate creates it: `simple:N` or `dc1:N,dc2:N`.
    #[arg(long, env = "SCYLLA_REPLICATION", default_value = "simple:1")]
    pub(crate) scylla_replication: String,
    /// Create the keyspace and tables (deploy/cql/schema.cql) at start if missing.
    #[arg(long, env = "PARLEY_MIGRATE", default_value_t = false)]
    pub(crate) migrate: bool,
    /// UDP port of the QUIC endpoint (ALPN `parley/1`); default: the HTTP port's number.
    #[arg(long, env = "PARLEY_QUIC_PORT")]
    pub(crate) quic_port: Option<u16>,
    /// PEM certificate chain for QUIC. Unset (with --tls-key): a self-signed certificate is
    /// generated once into the data directory and its SHA-256 fingerprint logged.
    #[arg(long, env = "PARLEY_TLS_CERT")]
    pub(crate) tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long, env = "PARLEY_TLS_KEY")]
    pub(crate) tls_key: Option<PathBuf>,
    /// Log filter (tracing EnvFilter syntax), e.g. `info`, `gateway=debug`.
    #[arg(
        long,
        env = "RUST_LOG",
        default_value = "info,fjall=warn,lsm_tree=warn"
    )]
    pub(crate) log: String,
    /// Connections (TCP and QUIC) the node takes at most; more are refused at accept.
    /// 0: the process's open-files limit less 256 (kept for storage and Redis).
    #[arg(long, env = "PARLEY_MAX_CONNECTIONS", default_value_t = 0)]
    pub(crate) max_connections: usize,
    /// Connections one IP address may hold at most. 0: no limit (behind a proxy or load
    /// balancer, where every client has the proxy's address).
    #[arg(long, env = "PARLEY_MAX_CONNECTIONS_PER_IP", default_value_t = node::DEFAULT_MAX_CONNECTIONS_PER_IP)]
    pub(crate) max_connections_per_ip: u32,
    /// Directory of uploaded media (blobs and records). Default: `media/` in the data
    /// directory. Nodes of a cluster share an S3 bucket instead (`--media-s3-bucket`), or
    /// this directory on a shared filesystem.
    #[arg(long, env = "PARLEY_MEDIA_DIR")]
    pub(crate) media_dir: Option<PathBuf>,
    /// S3 bucket for media: the cluster engine (every node reads and writes the same bucket,
    /// so any node serves any upload). Unset: the directory store (`--media-dir`).
    #[arg(long, env = "PARLEY_MEDIA_S3_BUCKET")]
    pub(crate) media_s3_bucket: Option<String>,
    /// An S3-compatible server instead of AWS, e.g. `http://127.0.0.1:9000` (path-style
    /// requests; `http://` allowed here only).
    #[arg(long, env = "PARLEY_MEDIA_S3_ENDPOINT")]
    pub(crate) media_s3_endpoint: Option<String>,
    /// The bucket's region.
    #[arg(long, env = "PARLEY_MEDIA_S3_REGION", default_value = "us-east-1")]
    pub(crate) media_s3_region: String,
    /// Media keys go under this prefix in the bucket (e.g. `parley`); empty: its root.
    #[arg(long, env = "PARLEY_MEDIA_S3_PREFIX", default_value = "")]
    pub(crate) media_s3_prefix: String,
    /// Access key id for the bucket (prefer the environment variable to the flag).
    #[arg(long, env = "AWS_ACCESS_KEY_ID", hide_env_values = true)]
    pub(crate) media_s3_access_key_id: Option<String>,
    /// Secret access key for the bucket (prefer the environment variable to the flag).
    #[arg(long, env = "AWS_SECRET_ACCESS_KEY", hide_env_values = true)]
    pub(crate) media_s3_secret_access_key: Option<String>,
    /// One S3 request's deadline, ms (retries included: a dead store fails an upload or a
    /// download within about this long).
    #[arg(long, env = "PARLEY_MEDIA_S3_TIMEOUT_MS", default_value_t = 10_000)]
    pub(crate) media_s3_timeout_ms: u64,
    /// Keys that sign media URLs, `kid:secret,kid:secret` (secrets at least 16 bytes): the
    /// first signs, all verify (rotation). Unset: one key derived from the HS256 JWT secret.
    #[arg(long, env = "PARLEY_MEDIA_URL_KEYS", hide_env_values = true)]
    pub(crate) media_url_keys: Option<String>,
    /// Prefix of media URLs: a CDN whose origin is this gateway's `/media/` route, e.g.
    /// `https://cdn.example.com`. Empty: URLs relative to the gateway (`/media/...`).
    #[arg(long, env = "CDN_BASE_URL", default_value = "")]
    pub(crate) media_base_url: String,
    /// A media URL is good for at least this many seconds (and at most an hour more: expiries
    /// are rounded up to the hour so a CDN caches one URL).
    #[arg(long, env = "PARLEY_MEDIA_URL_TTL_S", default_value_t = media::DEFAULT_URL_TTL_S)]
    pub(crate) media_url_ttl_s: u64,
    /// Largest image upload, bytes.
    #[arg(long, env = "PARLEY_MEDIA_MAX_IMAGE_BYTES", default_value_t = media::DEFAULT_MAX_IMAGE_BYTES)]
    pub(crate) media_max_image_bytes: usize,
    /// Largest file upload, bytes.
    #[arg(long, env = "PARLEY_MEDIA_MAX_FILE_BYTES", default_value_t = media::DEFAULT_MAX_FILE_BYTES)]
    pub(crate) media_max_file_bytes: usize,
    /// Images over this many pixels are refused before they are decoded.
    #[arg(long, env = "PARLEY_MEDIA_MAX_IMAGE_PIXELS", default_value_t = media::DEFAULT_MAX_IMAGE_PIXELS)]
    pub(crate) media_max_image_pixels: u64,
    /// An upload never sent in a message is removed this long after it was made, s (and can no
    /// longer be sent a little before: a tenth of this, at most 5 minutes).
    #[arg(long, env = "PARLEY_MEDIA_UNSENT_TTL_S", default_value_t = media::DEFAULT_UNSENT_TTL_S)]
    pub(crate) media_unsent_ttl_s: u64,
    /// How often the node looks for uploads to remove, ms.
    #[arg(long, env = "PARLEY_MEDIA_COLLECT_EVERY_MS", default_value_t = media::DEFAULT_COLLECT_EVERY_S * 1000)]
    pub(crate) media_collect_every_ms: u64,
    /// Threads that decode and encode images (at a lower CPU priority than the chat). 0: half
    /// the cores, at least one, so image work never takes every core of a chat node.
    #[arg(long, env = "PARLEY_MEDIA_IMAGE_WORKERS", default_value_t = 0)]
    pub(crate) media_image_workers: usize,
    /// MIME types of files accepted, comma-separated (images: always JPEG, PNG, WebP, GIF).
    /// Default: PDF, plain text, zip, office documents, audio (Ogg, MP3, M4A, AAC), MP4.
    #[arg(long, env = "PARLEY_MEDIA_FILE_TYPES")]
    pub(crate) media_file_types: Option<String>,
    /// Uploads one user may make per hour.
    #[arg(long, env = "PARLEY_MEDIA_UPLOADS_PER_HOUR", default_value_t = node::DEFAULT_MEDIA_UPLOADS_PER_HOUR)]
    pub(crate) media_uploads_per_hour: u32,
    /// Time a client gets to send a whole upload, ms.
    #[arg(long, env = "PARLEY_MEDIA_UPLOAD_TIMEOUT_MS", default_value_t = node::DEFAULT_MEDIA_UPLOAD_TIMEOUT_MS)]
    pub(crate) media_upload_timeout_ms: u64,
    /// Message search (`GET /api/search`): on one node an index in the data directory's
    /// `search/`, fed from storage; in a cluster the `--solr` collection. `false` turns it off.
    #[arg(long, env = "PARLEY_SEARCH", default_value_t = true, action = clap::ArgAction::Set)]
    pub(crate) search: bool,
    /// Longest a stored message waits to become searchable (the index commits this often
    /// under load; an idle one at once), ms.
    #[arg(long, env = "PARLEY_SEARCH_COMMIT_MS", default_value_t = 1000)]
    pub(crate) search_commit_ms: u64,
    /// A cluster's message index: a SolrCloud collection's URL,
    /// `http(s)://[user:pass@]host:port/solr/<collection>` (schema: deploy/dev/solr/configset).
    /// Needs a cluster (`--redis` and `--scylla`); unset, a cluster has no search.
    /// Preview: not yet tried against a live Solr.
    #[arg(long, env = "PARLEY_SOLR_URL")]
    pub(crate) solr: Option<String>,
    /// Longest one request to Solr may take, ms.
    #[arg(long, env = "PARLEY_SOLR_TIMEOUT_MS", default_value_t = 5000)]
    pub(crate) solr_timeout_ms: u64,
    /// Push notifications to users with no live session (`PUT /api/devices/:id`): Web Push,
    /// FCM, APNs and a webhook. Needs the embedded storage or a cluster (`--redis`, which then
    /// needs `--push-vapid-key-file`); `false` turns it off.
    #[arg(long, env = "PARLEY_PUSH", default_value_t = true, action = clap::ArgAction::Set)]
    pub(crate) push: bool,
    /// How long a push waits after a message, ms: a user back within it gets none, and the
    /// conversation's later messages join it (one notification, updated).
    #[arg(long, env = "PARLEY_PUSH_GRACE_MS", default_value_t = push::DEFAULT_GRACE_MS)]
    pub(crate) push_grace_ms: u64,
    /// How long a push is retried (429, 5xx, network) before it is dropped, seconds.
    #[arg(long, env = "PARLEY_PUSH_MAX_AGE_S", default_value_t = push::DEFAULT_MAX_AGE_SECS)]
    pub(crate) push_max_age_s: u64,
    /// How long a push service keeps a notification for a device that is off, seconds.
    #[arg(long, env = "PARLEY_PUSH_TTL_S", default_value_t = push::DEFAULT_TTL_SECS)]
    pub(crate) push_ttl_s: u64,
    /// Devices one user may register.
    #[arg(long, env = "PARLEY_PUSH_MAX_DEVICES", default_value_t = push::DEFAULT_MAX_DEVICES)]
    pub(crate) push_max_devices: usize,
    /// Put the message's text (its first 200 characters) into notifications. Off by default:
    /// a lock screen shows it, and the push services see it (Web Push payloads are
    /// end-to-end encrypted; FCM's are not).
    #[arg(long, env = "PARLEY_PUSH_INCLUDE_TEXT", default_value_t = false, action = clap::ArgAction::Set)]
    pub(crate) push_include_text: bool,
    /// Hosts a Web Push subscription's endpoint may be on, comma-separated (`*.domain`: any
    /// subdomain). Default: the push services of Chrome, Firefox, Safari and Edge.
    #[arg(long, env = "PARLEY_PUSH_WEBPUSH_HOSTS")]
    pub(crate) push_webpush_hosts: Option<String>,
    /// The VAPID key (PKCS#8 PEM, P-256). Default: `vapid-key.pem` in the data directory,
    /// generated on first start.
    #[arg(long, env = "PARLEY_PUSH_VAPID_KEY_FILE")]
    pub(crate) push_vapid_key_file: Option<PathBuf>,
    /// Who runs this node, for the push services (`mailto:` or `https:` URL).
    #[arg(
        long,
        env = "PARLEY_PUSH_VAPID_SUBJECT",
        default_value = "mailto:push@localhost"
    )]
    pub(crate) push_vapid_subject: String,
    /// The Firebase service account JSON (`project_id`, `client_email`, `private_key`,
    /// `token_uri`): FCM on.
    #[arg(long, env = "PARLEY_PUSH_FCM_SERVICE_ACCOUNT")]
    pub(crate) push_fcm_service_account: Option<PathBuf>,
    /// FCM's base URL.
    #[arg(
        long,
        env = "PARLEY_PUSH_FCM_URL",
        default_value = "https://fcm.googleapis.com"
    )]
    pub(crate) push_fcm_url: String,
    /// The APNs token key Apple issued (`AuthKey_<id>.p8`): APNs on.
    #[arg(long, env = "PARLEY_PUSH_APNS_KEY_FILE")]
    pub(crate) push_apns_key_file: Option<PathBuf>,
    /// The APNs key's id (10 characters, from Apple's developer account).
    #[arg(long, env = "PARLEY_PUSH_APNS_KEY_ID")]
    pub(crate) push_apns_key_id: Option<String>,
    /// The Apple developer team id the key belongs to.
    #[arg(long, env = "PARLEY_PUSH_APNS_TEAM_ID")]
    pub(crate) push_apns_team_id: Option<String>,
    /// APNs's base URL (`https://api.sandbox.push.apple.com` for development builds).
    #[arg(
        long,
        env = "PARLEY_PUSH_APNS_URL",
        default_value = "https://api.push.apple.com"
    )]
    pub(crate) push_apns_url: String,
    /// The marketplace's notification service: `webhook` devices are pushed here, signed.
    #[arg(long, env = "PARLEY_PUSH_WEBHOOK_URL")]
    pub(crate) push_webhook_url: Option<String>,
    /// The webhook's HMAC-SHA256 key (at least 16 bytes; `X-Parley-Signature`).
    #[arg(long, env = "PARLEY_PUSH_WEBHOOK_SECRET", hide_env_values = true)]
    pub(crate) push_webhook_secret: Option<String>,
    /// One request to a push service, connection included, ms.
    #[arg(long, env = "PARLEY_PUSH_TIMEOUT_MS", default_value_t = 10_000)]
    pub(crate) push_timeout_ms: u64,
    /// The web chat page (`web/dist`, embedded in the binary) at `/`, `/index.html` and
    /// `/assets/…`; `false` turns it off (`/` is then 404).
    #[arg(long, env = "PARLEY_WEB_PAGE", default_value_t = true, action = clap::ArgAction::Set)]
    pub(crate) web_page: bool,
    /// Serve test-only endpoints (/test/echo for the Autobahn suite). Never in production.
    #[arg(long, env = "PARLEY_TEST_ENDPOINTS", default_value_t = false)]
    pub(crate) test_endpoints: bool,
}
