//! Configuration: command-line flags, each with an environment variable (the seed's `PORT`,
//! `CLIENT_URL`, `JWT_SECRET`, `REDIS_URL` names where it had them), typed, validated once at
//! start. `gateway --check-config` validates and prints the result without starting.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

/// Parley chat gateway.
#[derive(Debug, Parser)]
#[command(name = "gateway", version, about = "Parley real-time chat gateway")]
pub struct Cli {
    #[command(flatten)]
    pub options: Options,

    /// Validate the configuration, print it, and exit.
    #[arg(long)]
    pub check_config: bool,

    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
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
}

/// Every setting, as given. [`Config::from_options`] validates it.
#[derive(Debug, Clone, Args)]
pub struct Options {
    /// TCP port for HTTP, WebSocket (/ws) and the REST API.
    #[arg(long, env = "PORT", default_value_t = 3001)]
    pub port: u16,
    /// Address to listen on.
    #[arg(long, env = "PARLEY_BIND", default_value = "0.0.0.0")]
    pub bind: IpAddr,
    /// Allowed CORS origins, comma-separated (`*` = any).
    #[arg(long, env = "CLIENT_URL", default_value = "http://localhost:3000")]
    pub client_url: String,
    /// Directory of the embedded storage and the generated development secret.
    #[arg(long, env = "PARLEY_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
    /// HS256 secret for JWTs (at least 16 bytes). Unset: a development secret is generated
    /// once and kept in the data directory.
    #[arg(long, env = "JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// PEM file of an RSA (RS256) or Ed25519 (EdDSA) public key also accepted for JWTs.
    #[arg(long, env = "JWT_PUBLIC_KEY_FILE")]
    pub jwt_public_key: Option<PathBuf>,
    /// This node's id (0-1023), part of every message id: unique per node of a cluster.
    #[arg(long, env = "PARLEY_NODE_ID", default_value_t = 0)]
    pub node_id: u16,
    /// Shard threads (each with its own listener and runtime). 0 = one per core.
    #[arg(long, env = "PARLEY_SHARDS", default_value_t = 0)]
    pub shards: usize,
    /// Largest frame a client may send, bytes.
    #[arg(long, env = "PARLEY_MAX_FRAME_BYTES", default_value_t = 64 * 1024)]
    pub max_frame_bytes: usize,
    /// Longest message content, in characters (Unicode scalar values).
    #[arg(long, env = "PARLEY_MAX_MESSAGE_CHARS", default_value_t = 4000)]
    pub max_message_chars: usize,
    /// Frames queued toward one session before it counts as a slow consumer.
    #[arg(long, env = "PARLEY_OUTBOX_FRAMES", default_value_t = 1024)]
    pub outbox_frames: usize,
    /// Bytes queued toward one session before it counts as a slow consumer.
    #[arg(long, env = "PARLEY_OUTBOX_BYTES", default_value_t = 4 << 20)]
    pub outbox_bytes: usize,
    /// Deliveries queued toward one shard from the others.
    #[arg(long, env = "PARLEY_SHARD_INBOX", default_value_t = 64 * 1024)]
    pub shard_inbox: usize,
    /// Heartbeat interval told to clients in Welcome, ms.
    #[arg(long, env = "PARLEY_HEARTBEAT_MS", default_value_t = 25_000)]
    pub heartbeat_ms: u64,
    /// Close a session that sent nothing for this long, ms.
    #[arg(long, env = "PARLEY_IDLE_TIMEOUT_MS", default_value_t = 75_000)]
    pub idle_timeout_ms: u64,
    /// Close a connection that sent no Hello within this long, ms.
    #[arg(long, env = "PARLEY_HELLO_TIMEOUT_MS", default_value_t = 10_000)]
    pub hello_timeout_ms: u64,
    /// A typing indicator ends by itself after this long without a refresh, ms.
    #[arg(long, env = "PARLEY_TYPING_TTL_MS", default_value_t = 5_000)]
    pub typing_ttl_ms: u64,
    /// Close a session whose socket accepts no bytes for this long, ms.
    #[arg(long, env = "PARLEY_WRITE_TIMEOUT_MS", default_value_t = 30_000)]
    pub write_timeout_ms: u64,
    /// Messages per second one user may send (all sessions and REST together).
    #[arg(long, env = "PARLEY_USER_MESSAGES_PER_SEC", default_value_t = 20.0)]
    pub user_messages_per_sec: f64,
    /// Burst of messages a user may send above the rate.
    #[arg(long, env = "PARLEY_USER_MESSAGE_BURST", default_value_t = 40)]
    pub user_message_burst: u32,
    /// Frames per second one session may send.
    #[arg(long, env = "PARLEY_SESSION_FRAMES_PER_SEC", default_value_t = 100.0)]
    pub session_frames_per_sec: f64,
    /// Burst of frames a session may send above the rate.
    #[arg(long, env = "PARLEY_SESSION_FRAME_BURST", default_value_t = 200)]
    pub session_frame_burst: u32,
    /// Malformed frames tolerated per session before it is closed.
    #[arg(long, env = "PARLEY_MAX_BAD_FRAMES", default_value_t = 5)]
    pub max_bad_frames: u32,
    /// Resume points accepted in one Hello.
    #[arg(long, env = "PARLEY_MAX_RESUME_POINTS", default_value_t = 1000)]
    pub max_resume_points: usize,
    /// Missed messages replayed per conversation on resume (older ones: History).
    #[arg(long, env = "PARLEY_RESUME_MAX_MESSAGES", default_value_t = 1000)]
    pub resume_max_messages: usize,
    /// Largest REST request body, bytes.
    #[arg(long, env = "PARLEY_MAX_BODY_BYTES", default_value_t = 64 * 1024)]
    pub max_body_bytes: usize,
    /// Writes committed by one fsync in the embedded engine (group commit).
    #[arg(long, env = "PARLEY_STORAGE_MAX_BATCH", default_value_t = 2048)]
    pub storage_max_batch: usize,
    /// Embedded storage, under concurrent load: wait this long for more writes before an
    /// fsync (fewer fsyncs and wake-ups per message, more latency), µs. 0: commit at once.
    #[arg(long, env = "PARLEY_STORAGE_COMMIT_DELAY_US", default_value_t = 0)]
    pub storage_commit_delay_us: u64,
    /// On SIGINT/SIGTERM, how long sessions get to drain before the process exits, ms.
    #[arg(long, env = "PARLEY_SHUTDOWN_GRACE_MS", default_value_t = 5_000)]
    pub shutdown_grace_ms: u64,
    /// Redis for running as a cluster (fan-out over Redis Streams, presence across nodes),
    /// e.g. `redis://10.0.0.5:6379`. Unset: a single node.
    #[arg(long, env = "REDIS_URL")]
    pub redis: Option<String>,
    /// Redis Streams partitions of the cluster bus (the same on every node).
    #[arg(long, env = "PARLEY_REDIS_PARTITIONS", default_value_t = 16)]
    pub redis_partitions: u32,
    /// Events kept per partition (`XADD MAXLEN ~`): how long a node may be cut off and still
    /// catch up from the streams.
    #[arg(long, env = "PARLEY_REDIS_STREAM_MAXLEN", default_value_t = 100_000)]
    pub redis_stream_maxlen: u64,
    /// Events a node queues for Redis while it is unreachable; past this it drops them and,
    /// once Redis is back, tells the other nodes to have their clients resume from storage.
    #[arg(long, env = "PARLEY_REDIS_PUBLISH_QUEUE", default_value_t = 100_000)]
    pub redis_publish_queue: usize,
    /// A node whose heartbeat is this old is dead and its users go offline, ms.
    #[arg(long, env = "PARLEY_PRESENCE_TTL_MS", default_value_t = 10_000)]
    pub presence_ttl_ms: u64,
    /// ScyllaDB (or Cassandra) contact points, `host:9042,...`: history there instead of the
    /// embedded store.
    #[arg(long, env = "SCYLLA_NODES", value_delimiter = ',')]
    pub scylla: Vec<String>,
    /// ScyllaDB keyspace.
    #[arg(long, env = "SCYLLA_KEYSPACE", default_value = "parley")]
    pub scylla_keyspace: String,
    /// Consistency of reads and writes: one, quorum, local_quorum, all.
    #[arg(long, env = "SCYLLA_CONSISTENCY", default_value = "local_quorum")]
    pub scylla_consistency: String,
    /// Replication of the keyspace when --migrate creates it: `simple:N` or `dc1:N,dc2:N`.
    #[arg(long, env = "SCYLLA_REPLICATION", default_value = "simple:1")]
    pub scylla_replication: String,
    /// Create the keyspace and tables (deploy/cql/schema.cql) at start if missing.
    #[arg(long, env = "PARLEY_MIGRATE", default_value_t = false)]
    pub migrate: bool,
    /// UDP port of the QUIC endpoint (ALPN `parley/1`); default: the HTTP port's number.
    #[arg(long, env = "PARLEY_QUIC_PORT")]
    pub quic_port: Option<u16>,
    /// PEM certificate chain for QUIC. Unset (with --tls-key): a self-signed certificate is
    /// generated once into the data directory and its SHA-256 fingerprint logged.
    #[arg(long, env = "PARLEY_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long, env = "PARLEY_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// Log filter (tracing EnvFilter syntax), e.g. `info`, `gateway=debug`.
    #[arg(
        long,
        env = "RUST_LOG",
        default_value = "info,fjall=warn,lsm_tree=warn"
    )]
    pub log: String,
    /// Serve test-only endpoints (/test/echo for the Autobahn suite). Never in production.
    #[arg(long, env = "PARLEY_TEST_ENDPOINTS", default_value_t = false)]
    pub test_endpoints: bool,
}

/// Limits and timers of one session (the session core's whole view of the configuration).
#[derive(Debug, Clone)]
pub struct SessionLimits {
    pub node_id: u16,
    pub max_frame_bytes: usize,
    pub max_message_chars: usize,
    pub heartbeat: Duration,
    pub idle_timeout: Duration,
    pub hello_timeout: Duration,
    pub typing_ttl: Duration,
    pub frames_per_sec: f64,
    pub frame_burst: u32,
    pub max_bad_frames: u32,
    pub max_resume_points: usize,
}

impl Default for SessionLimits {
    fn default() -> Self {
        Self {
            node_id: 0,
            max_frame_bytes: 64 * 1024,
            max_message_chars: 4000,
            heartbeat: Duration::from_secs(25),
            idle_timeout: Duration::from_secs(75),
            hello_timeout: Duration::from_secs(10),
            typing_ttl: Duration::from_secs(5),
            frames_per_sec: 100.0,
            frame_burst: 200,
            max_bad_frames: 5,
            max_resume_points: 1000,
        }
    }
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub port: u16,
    pub bind: IpAddr,
    /// Allowed CORS origins; empty = none, `["*"]` = any.
    pub cors_origins: Vec<String>,
    pub data_dir: PathBuf,
    pub jwt_secret: Option<String>,
    pub jwt_public_key: Option<PathBuf>,
    pub shards: usize,
    pub session: SessionLimits,
    pub outbox_frames: usize,
    pub outbox_bytes: usize,
    pub shard_inbox: usize,
    pub write_timeout: Duration,
    pub user_messages_per_sec: f64,
    pub user_message_burst: u32,
    pub resume_max_messages: usize,
    pub max_body_bytes: usize,
    pub storage_max_batch: usize,
    pub storage_commit_delay: Duration,
    pub shutdown_grace: Duration,
    pub log: String,
    pub test_endpoints: bool,
    /// None: the same number as the HTTP port.
    pub quic_port: Option<u16>,
    pub redis: Option<String>,
    pub redis_partitions: u32,
    pub redis_stream_maxlen: u64,
    pub redis_publish_queue: usize,
    pub presence_ttl: Duration,
    pub scylla: Vec<String>,
    pub scylla_keyspace: String,
    pub scylla_consistency: scylla::statement::Consistency,
    /// CQL replication map literal.
    pub scylla_replication: String,
    pub migrate: bool,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
}

/// File in the data directory holding the generated development secret.
pub const DEV_SECRET_FILE: &str = "dev-jwt-secret";

impl Config {
    /// Validates `o`. Every problem is reported at once, one per line.
    pub fn from_options(o: &Options) -> Result<Self, String> {
        let mut problems = Vec::new();
        let mut check = |ok: bool, msg: &str| {
            if !ok {
                problems.push(msg.to_owned());
            }
        };
        check(
            o.node_id <= parley_types::ids::MAX_NODE,
            "--node-id must be 0..=1023",
        );
        check(o.shards <= 1024, "--shards must be at most 1024");
        check(
            (512..=16 << 20).contains(&o.max_frame_bytes),
            "--max-frame-bytes must be 512..=16777216",
        );
        check(
            (1..=100_000).contains(&o.max_message_chars),
            "--max-message-chars must be 1..=100000",
        );
        check(
            o.max_message_chars.saturating_mul(4) < o.max_frame_bytes,
            "--max-frame-bytes must hold a message of --max-message-chars 4-byte characters",
        );
        check(o.outbox_frames >= 16, "--outbox-frames must be at least 16");
        check(
            o.outbox_bytes >= o.max_frame_bytes,
            "--outbox-bytes must be at least --max-frame-bytes",
        );
        check(o.shard_inbox >= 16, "--shard-inbox must be at least 16");
        check(
            o.heartbeat_ms >= 1_000,
            "--heartbeat-ms must be at least 1000",
        );
        check(
            o.idle_timeout_ms > o.heartbeat_ms,
            "--idle-timeout-ms must be longer than --heartbeat-ms",
        );
        check(
            o.hello_timeout_ms >= 100,
            "--hello-timeout-ms must be at least 100",
        );
        check(
            o.typing_ttl_ms >= 100,
            "--typing-ttl-ms must be at least 100",
        );
        check(
            o.write_timeout_ms >= 100,
            "--write-timeout-ms must be at least 100",
        );
        check(
            o.user_messages_per_sec > 0.0 && o.user_messages_per_sec.is_finite(),
            "--user-messages-per-sec must be positive",
        );
        check(
            o.user_message_burst >= 1,
            "--user-message-burst must be at least 1",
        );
        check(
            o.session_frames_per_sec > 0.0 && o.session_frames_per_sec.is_finite(),
            "--session-frames-per-sec must be positive",
        );
        check(
            o.session_frame_burst >= 1,
            "--session-frame-burst must be at least 1",
        );
        check(
            (1..=100_000).contains(&o.max_resume_points),
            "--max-resume-points must be 1..=100000",
        );
        check(
            (1..=100_000).contains(&o.resume_max_messages),
            "--resume-max-messages must be 1..=100000",
        );
        check(
            (1024..=16 << 20).contains(&o.max_body_bytes),
            "--max-body-bytes must be 1024..=16777216",
        );
        check(
            (1..=65_536).contains(&o.storage_max_batch),
            "--storage-max-batch must be 1..=65536",
        );
        check(
            o.storage_commit_delay_us <= 10_000,
            "--storage-commit-delay-us must be 0..=10000",
        );
        if let Some(secret) = &o.jwt_secret {
            check(secret.len() >= 16, "JWT_SECRET must be at least 16 bytes");
        }
        check(
            (1..=1024).contains(&o.redis_partitions),
            "--redis-partitions must be 1..=1024",
        );
        check(
            o.redis_stream_maxlen >= 1000,
            "--redis-stream-maxlen must be at least 1000",
        );
        check(
            (16..=10_000_000).contains(&o.redis_publish_queue),
            "--redis-publish-queue must be 16..=10000000",
        );
        check(
            (1_000..=300_000).contains(&o.presence_ttl_ms),
            "--presence-ttl-ms must be 1000..=300000",
        );
        if let Some(url) = &o.redis {
            check(
                redis::Client::open(url.as_str()).is_ok(),
                "--redis / REDIS_URL is not a valid Redis URL",
            );
        }
        check(
            parley_storage::scylla::valid_keyspace(&o.scylla_keyspace),
            "--scylla-keyspace must be a CQL identifier (letters, digits, _)",
        );
        check(
            consistency(&o.scylla_consistency).is_some(),
            "--scylla-consistency must be one, two, three, quorum, local_quorum, each_quorum, all or local_one",
        );
        check(
            parley_storage::scylla::replication(&o.scylla_replication).is_ok(),
            "--scylla-replication must be simple:N or dc:N,dc:N",
        );
        check(
            !o.migrate || !o.scylla.is_empty(),
            "--migrate needs --scylla",
        );
        // A cluster's nodes must agree on history and on who a token belongs to.
        check(
            o.redis.is_none() || !o.scylla.is_empty(),
            "--redis needs --scylla: the nodes of a cluster must share their history",
        );
        check(
            o.redis.is_none() || o.jwt_secret.is_some() || o.jwt_public_key.is_some(),
            "--redis needs JWT_SECRET (or JWT_PUBLIC_KEY_FILE) shared by every node: \
             a generated development secret is per node",
        );
        check(
            o.tls_cert.is_some() == o.tls_key.is_some(),
            "--tls-cert and --tls-key go together",
        );
        for path in [&o.tls_cert, &o.tls_key].into_iter().flatten() {
            check(
                path.is_file(),
                "--tls-cert / --tls-key must name readable files",
            );
        }
        if let Some(path) = &o.jwt_public_key {
            check(path.is_file(), "--jwt-public-key must name a readable file");
        }
        check(
            tracing_subscriber::EnvFilter::try_new(&o.log).is_ok(),
            "--log is not a valid filter",
        );
        if !problems.is_empty() {
            return Err(problems.join("\n"));
        }
        let cors_origins = o
            .client_url
            .split(',')
            .map(|s| s.trim().trim_end_matches('/').to_owned())
            .filter(|s| !s.is_empty())
            .collect();
        let shards = if o.shards == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            o.shards
        };
        Ok(Self {
            port: o.port,
            bind: o.bind,
            cors_origins,
            data_dir: o.data_dir.clone(),
            jwt_secret: o.jwt_secret.clone(),
            jwt_public_key: o.jwt_public_key.clone(),
            shards,
            session: SessionLimits {
                node_id: o.node_id,
                max_frame_bytes: o.max_frame_bytes,
                max_message_chars: o.max_message_chars,
                heartbeat: Duration::from_millis(o.heartbeat_ms),
                idle_timeout: Duration::from_millis(o.idle_timeout_ms),
                hello_timeout: Duration::from_millis(o.hello_timeout_ms),
                typing_ttl: Duration::from_millis(o.typing_ttl_ms),
                frames_per_sec: o.session_frames_per_sec,
                frame_burst: o.session_frame_burst,
                max_bad_frames: o.max_bad_frames,
                max_resume_points: o.max_resume_points,
            },
            outbox_frames: o.outbox_frames,
            outbox_bytes: o.outbox_bytes,
            shard_inbox: o.shard_inbox,
            write_timeout: Duration::from_millis(o.write_timeout_ms),
            user_messages_per_sec: o.user_messages_per_sec,
            user_message_burst: o.user_message_burst,
            resume_max_messages: o.resume_max_messages,
            max_body_bytes: o.max_body_bytes,
            storage_max_batch: o.storage_max_batch,
            storage_commit_delay: Duration::from_micros(o.storage_commit_delay_us),
            shutdown_grace: Duration::from_millis(o.shutdown_grace_ms),
            log: o.log.clone(),
            test_endpoints: o.test_endpoints,
            quic_port: o.quic_port,
            redis: o.redis.clone(),
            redis_partitions: o.redis_partitions,
            redis_stream_maxlen: o.redis_stream_maxlen,
            redis_publish_queue: o.redis_publish_queue,
            presence_ttl: Duration::from_millis(o.presence_ttl_ms),
            scylla: o.scylla.clone(),
            scylla_keyspace: o.scylla_keyspace.clone(),
            scylla_consistency: consistency(&o.scylla_consistency)
                .unwrap_or(scylla::statement::Consistency::LocalQuorum),
            scylla_replication: parley_storage::scylla::replication(&o.scylla_replication)
                .unwrap_or_default(),
            migrate: o.migrate,
            tls_cert: o.tls_cert.clone(),
            tls_key: o.tls_key.clone(),
        })
    }

    /// The HS256 secret: the configured one, or the development secret in the data directory
    /// (generated and saved on first use; `generated` tells the caller to log that).
    pub fn resolve_secret(&self) -> std::io::Result<Secret> {
        if let Some(s) = &self.jwt_secret {
            return Ok(Secret {
                bytes: s.as_bytes().to_vec(),
                dev_file: None,
                generated: false,
            });
        }
        let path = self.data_dir.join(DEV_SECRET_FILE);
        match std::fs::read_to_string(&path) {
            Ok(s) if s.trim().len() >= 16 => Ok(Secret {
                bytes: s.trim().as_bytes().to_vec(),
                dev_file: Some(path),
                generated: false,
            }),
            Ok(_) | Err(_) => {
                std::fs::create_dir_all(&self.data_dir)?;
                let mut raw = [0u8; 32];
                getrandom::fill(&mut raw).map_err(|e| std::io::Error::other(e.to_string()))?;
                let hex: String = raw.iter().map(|b| format!("{b:02x}")).collect();
                write_private(&path, &hex)?;
                Ok(Secret {
                    bytes: hex.into_bytes(),
                    dev_file: Some(path),
                    generated: true,
                })
            }
        }
    }

    /// A human summary for `--check-config` and the start-up log (no secrets).
    pub fn describe(&self) -> String {
        format!(
            "listen {}:{} | shards {} | node {} | storage {} | cluster {} | jwt {} | cors {:?} | \
             frame ≤ {} B | message ≤ {} chars | outbox {} frames/{} B | heartbeat {:?} idle {:?}",
            self.bind,
            self.port,
            self.shards,
            self.session.node_id,
            if self.scylla.is_empty() {
                format!("embedded in {}", self.data_dir.display())
            } else {
                format!("scylla {:?} keyspace {}", self.scylla, self.scylla_keyspace)
            },
            if self.redis.is_some() {
                format!("redis, {} partitions", self.redis_partitions)
            } else {
                "single node".to_owned()
            },
            match (&self.jwt_secret, &self.jwt_public_key) {
                (Some(_), Some(_)) => "HS256 secret + public key",
                (Some(_), None) => "HS256 secret",
                (None, Some(_)) => "dev secret + public key",
                (None, None) => "generated dev secret",
            },
            self.cors_origins,
            self.session.max_frame_bytes,
            self.session.max_message_chars,
            self.outbox_frames,
            self.outbox_bytes,
            self.session.heartbeat,
            self.session.idle_timeout,
        )
    }
}

fn consistency(s: &str) -> Option<scylla::statement::Consistency> {
    use scylla::statement::Consistency::*;
    Some(match s.to_ascii_lowercase().as_str() {
        "one" => One,
        "two" => Two,
        "three" => Three,
        "quorum" => Quorum,
        "local_quorum" => LocalQuorum,
        "each_quorum" => EachQuorum,
        "all" => All,
        "local_one" => LocalOne,
        _ => return None,
    })
}

impl Config {
    /// The cluster settings, when running with Redis.
    pub fn cluster(&self) -> Option<crate::cluster::ClusterConfig> {
        self.redis
            .as_ref()
            .map(|url| crate::cluster::ClusterConfig {
                redis_url: url.clone(),
                node_id: self.session.node_id,
                partitions: self.redis_partitions,
                stream_maxlen: self.redis_stream_maxlen,
                publish_queue: self.redis_publish_queue,
                presence_ttl: self.presence_ttl,
            })
    }

    /// The ScyllaDB settings, when configured.
    pub fn scylla(&self) -> Option<parley_storage::scylla::ScyllaConfig> {
        (!self.scylla.is_empty()).then(|| parley_storage::scylla::ScyllaConfig {
            nodes: self.scylla.clone(),
            keyspace: self.scylla_keyspace.clone(),
            consistency: self.scylla_consistency,
            node_id: self.session.node_id,
        })
    }
}

/// The HS256 secret in use.
pub struct Secret {
    pub bytes: Vec<u8>,
    /// Where the development secret lives, when it is one.
    pub dev_file: Option<PathBuf>,
    /// Whether it was generated just now.
    pub generated: bool,
}

/// Writes a file readable by its owner only.
pub fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    opts.mode(0o600);
    let mut f = opts.open(path)?;
    f.write_all(contents.as_bytes())?;
    f.sync_all()
}

/// Parses a lifetime: plain seconds or a number with `s`, `m`, `h` or `d`.
pub fn parse_ttl(s: &str) -> Result<i64, String> {
    let s = s.trim();
    let (num, unit) = match s.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (&s[..i], c),
        _ => (s, 's'),
    };
    let n: i64 = num.parse().map_err(|_| format!("bad duration {s:?}"))?;
    let mult = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        _ => return Err(format!("bad duration unit in {s:?} (use s, m, h or d)")),
    };
    if n <= 0 {
        return Err("duration must be positive".into());
    }
    Ok(n.saturating_mul(mult))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Config, String> {
        let cli = Cli::try_parse_from(std::iter::once("gateway").chain(args.iter().copied()))
            .map_err(|e| e.to_string())?;
        Config::from_options(&cli.options)
    }

    #[test]
    fn defaults_are_valid() {
        let c = parse(&["--port", "3001", "--client-url", "http://localhost:3000"]).expect("ok");
        assert_eq!(c.port, 3001);
        assert_eq!(c.session.max_message_chars, 4000);
        assert!(c.shards >= 1);
        assert_eq!(c.cors_origins, vec!["http://localhost:3000"]);
    }

    #[test]
    fn every_problem_is_reported() {
        let err = parse(&[
            "--node-id",
            "5000",
            "--max-frame-bytes",
            "10",
            "--idle-timeout-ms",
            "1000",
            "--jwt-secret",
            "short",
        ])
        .expect_err("invalid");
        assert!(err.contains("--node-id"), "{err}");
        assert!(err.contains("--max-frame-bytes"), "{err}");
        assert!(err.contains("--idle-timeout-ms"), "{err}");
        assert!(err.contains("JWT_SECRET"), "{err}");
    }

    #[test]
    fn a_cluster_needs_shared_history_and_a_shared_secret() {
        let err = parse(&["--redis", "redis://127.0.0.1:6379"]).expect_err("invalid");
        assert!(err.contains("--redis needs --scylla"), "{err}");
        assert!(err.contains("--redis needs JWT_SECRET"), "{err}");
        parse(&[
            "--redis",
            "redis://127.0.0.1:6379",
            "--scylla",
            "127.0.0.1:9042",
            "--jwt-secret",
            "a-secret-of-enough-bytes",
        ])
        .expect("a valid cluster node");
    }

    #[test]
    fn ttl_parses_units() {
        assert_eq!(parse_ttl("90"), Ok(90));
        assert_eq!(parse_ttl("30m"), Ok(1800));
        assert_eq!(parse_ttl("24h"), Ok(86_400));
        assert_eq!(parse_ttl("7d"), Ok(604_800));
        assert!(parse_ttl("-1h").is_err());
        assert!(parse_ttl("1w").is_err());
        assert!(parse_ttl("h").is_err());
    }

    #[test]
    fn dev_secret_is_generated_once_and_kept() {
        let dir = tempfile::tempdir().expect("tmp");
        let dir_arg = dir.path().to_str().expect("utf8").to_owned();
        let c = parse(&["--data-dir", &dir_arg]).expect("ok");
        let mut c = c;
        c.jwt_secret = None;
        let first = c.resolve_secret().expect("first");
        assert!(first.generated);
        let second = c.resolve_secret().expect("second");
        assert!(!second.generated);
        assert_eq!(first.bytes, second.bytes);
    }
}
