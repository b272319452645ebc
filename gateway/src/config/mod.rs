//! Configuration: the flags ([`options`]) parsed once into typed sub-configurations, each the
//! type the module it configures takes (session limits, node settings, storage engines, the
//! bus). Every problem is reported at once. `gateway --check-config` validates and prints
//! the result without starting. Only `cli` and `server` use this module.

mod options;

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

pub(crate) use options::{Cli, Command, Options};
use parley_storage::embedded::EmbeddedConfig;
use parley_storage::scylla::ScyllaConfig;

use crate::bus::BusConfig;
use crate::files::write_private;
use crate::media::MediaConfig;
use crate::media::s3::S3Config;
use crate::node::Settings;
use crate::session::SessionLimits;

/// File in the data directory holding the generated development secret.
pub(crate) const DEV_SECRET_FILE: &str = "dev-jwt-secret";

/// Where the node listens.
#[derive(Debug, Clone)]
pub(crate) struct Listen {
    pub(crate) port: u16,
    pub(crate) bind: IpAddr,
    /// None: the same number as the HTTP port.
    pub(crate) quic_port: Option<u16>,
    pub(crate) tls_cert: Option<PathBuf>,
    pub(crate) tls_key: Option<PathBuf>,
    pub(crate) shards: usize,
}

/// Which storage engine, and how to reach it.
#[derive(Debug, Clone)]
pub(crate) enum Engine {
    Embedded(EmbeddedConfig),
    Scylla {
        config: ScyllaConfig,
        /// CQL replication map literal for `--migrate` / `gateway migrate`.
        replication: String,
        migrate: bool,
    },
}

/// Running as a cluster.
#[derive(Debug, Clone)]
pub(crate) struct Cluster {
    pub(crate) redis_url: String,
    pub(crate) bus: BusConfig,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) listen: Listen,
    pub(crate) data_dir: PathBuf,
    pub(crate) log: String,
    pub(crate) jwt_secret: Option<String>,
    pub(crate) jwt_public_key: Option<PathBuf>,
    pub(crate) token_rules: crate::auth::TokenRules,
    pub(crate) session: SessionLimits,
    pub(crate) node: Settings,
    /// Sends per second per user, and the burst above it.
    pub(crate) send_rate: (f64, u32),
    pub(crate) shard_inbox: usize,
    pub(crate) engine: Engine,
    pub(crate) cluster: Option<Cluster>,
    /// The moderation rules file, and how often it is checked for changes.
    pub(crate) moderation: Option<(PathBuf, Duration)>,
    /// The classifier's URL, timeout and concurrency cap.
    pub(crate) classifier: Option<(String, Duration, usize)>,
    /// Uploads and media URLs (no keys: derived from the JWT secret at start).
    pub(crate) media: MediaConfig,
    /// Where media bytes live.
    pub(crate) media_store: MediaStoreConfig,
    /// How often uploads never sent are looked for.
    pub(crate) media_collect_every: Duration,
    /// Message search, when on (the embedded storage, or a cluster with `--solr`).
    pub(crate) search: Option<SearchConfig>,
    /// Push notifications, when on (embedded storage only).
    pub(crate) push: Option<PushSettings>,
}

/// Push on this node: the dispatcher's rules and where each provider's keys are.
#[derive(Debug, Clone)]
pub(crate) struct PushSettings {
    pub(crate) rules: crate::push::PushConfig,
    pub(crate) ttl: Duration,
    pub(crate) timeout: Duration,
    /// The VAPID key's file (generated there when it does not exist).
    pub(crate) vapid_key_file: PathBuf,
    pub(crate) vapid_subject: String,
    pub(crate) fcm_service_account: Option<PathBuf>,
    pub(crate) fcm_url: String,
    /// The APNs `.p8` key's file, its key id and the team id.
    pub(crate) apns: Option<(PathBuf, String, String)>,
    pub(crate) apns_url: String,
    /// The webhook's URL and key.
    pub(crate) webhook: Option<(String, String)>,
}

/// Message search on this node.
#[derive(Debug, Clone)]
pub(crate) struct SearchConfig {
    pub(crate) engine: SearchEngine,
    /// Longest a stored message waits for the commit that makes it searchable.
    pub(crate) commit_every: Duration,
}

/// Which index.
#[derive(Debug, Clone)]
pub(crate) enum SearchEngine {
    /// One node: tantivy in this directory (the data directory's `search/`).
    Embedded(PathBuf),
    /// A cluster: this Solr collection, each request within the timeout.
    Solr { url: String, timeout: Duration },
}

/// Where media bytes live.
#[derive(Debug, Clone)]
pub(crate) enum MediaStoreConfig {
    /// Files in a directory (the embedded default: the data dir's `media/`).
    Dir(PathBuf),
    /// An S3-compatible bucket (a cluster).
    S3(S3Config),
}

/// Problems found while validating, reported together.
#[derive(Default)]
struct Problems(Vec<String>);

impl Problems {
    fn check(&mut self, ok: bool, msg: &str) {
        if !ok {
            self.0.push(msg.to_owned());
        }
    }
}

impl Config {
    /// Validates `o`. Every problem is reported at once, one per line.
    pub(crate) fn from_options(o: &Options) -> Result<Self, String> {
        let mut p = Problems::default();
        let session = session_limits(o, &mut p);
        let node = settings(o, &mut p);
        let engine = engine(o, &mut p);
        let cluster = cluster(o, &mut p);
        let media = media(o, &mut p);
        let media_store = media_store(o, &mut p);
        other_checks(o, &mut p);
        if !p.0.is_empty() {
            return Err(p.0.join("\n"));
        }
        let shards = if o.shards == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            o.shards
        };
        Ok(Self {
            listen: Listen {
                port: o.port,
                bind: o.bind,
                quic_port: o.quic_port,
                tls_cert: o.tls_cert.clone(),
                tls_key: o.tls_key.clone(),
                shards,
            },
            data_dir: o.data_dir.clone(),
            log: o.log.clone(),
            jwt_secret: o.jwt_secret.clone(),
            jwt_public_key: o.jwt_public_key.clone(),
            token_rules: crate::auth::TokenRules {
                issuer: o.jwt_issuer.clone(),
                audience: o.jwt_audience.clone(),
                max_lifetime_s: o.jwt_max_lifetime_s,
                leeway_s: o.jwt_leeway_s,
            },
            session,
            node,
            send_rate: (o.user_messages_per_sec, o.user_message_burst),
            shard_inbox: o.shard_inbox,
            // `engine` is None only when a problem was recorded above.
            engine: engine.ok_or("invalid storage settings")?,
            cluster,
            moderation: o
                .moderation_rules
                .clone()
                .map(|path| (path, Duration::from_millis(o.moderation_reload_ms))),
            classifier: o.moderation_classifier_url.clone().map(|url| {
                (
                    url,
                    Duration::from_millis(o.moderation_classifier_timeout_ms),
                    o.moderation_classifier_concurrency,
                )
            }),
            media,
            media_store,
            media_collect_every: Duration::from_millis(o.media_collect_every_ms),
            search: search_settings(o),
            // Push follows the embedded change feed, or in a cluster the bus (ScyllaDB alone
            // has neither).
            push: (o.push && (o.scylla.is_empty() || o.redis.is_some())).then(|| push_settings(o)),
        })
    }

    /// The HS256 secret: the configured one, or the development secret in the data directory
    /// (generated and saved on first use; `generated` tells the caller to log that).
    pub(crate) fn resolve_secret(&self) -> std::io::Result<Secret> {
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
    pub(crate) fn describe(&self) -> String {
        let storage = match &self.engine {
            Engine::Embedded(_) => format!("embedded in {}", self.data_dir.display()),
            Engine::Scylla { config, .. } => {
                format!("scylla {:?} keyspace {}", config.nodes, config.keyspace)
            }
        };
        let cluster = match &self.cluster {
            Some(c) => format!("redis, {} partitions", c.bus.partitions),
            None => "single node".to_owned(),
        };
        let jwt = match (&self.jwt_secret, &self.jwt_public_key) {
            (Some(_), Some(_)) => "HS256 secret + public key",
            (Some(_), None) => "HS256 secret",
            (None, Some(_)) => "public key only",
            (None, None) => "generated dev secret, dev sign-in open",
        };
        let (l, s, n) = (&self.listen, &self.session, &self.node);
        format!(
            "listen {}:{} | shards {} | node {} | storage {storage} | cluster {cluster} | jwt {jwt} \
             | cors {:?} | frame ≤ {} B | message ≤ {} chars | outbox {} frames/{} B | heartbeat \
             {:?} idle {:?}",
            l.bind,
            l.port,
            l.shards,
            s.node_id,
            n.cors_origins,
            s.max_frame_bytes,
            s.max_message_chars,
            n.outbox_frames,
            n.outbox_bytes,
            s.heartbeat,
            s.idle_timeout,
        )
    }
}

fn session_limits(o: &Options, p: &mut Problems) -> SessionLimits {
    p.check(
        o.node_id <= parley_types::ids::MAX_NODE,
        "--node-id must be 0..=1023",
    );
    p.check(
        (512..=16 << 20).contains(&o.max_frame_bytes),
        "--max-frame-bytes must be 512..=16777216",
    );
    p.check(
        (1..=100_000).contains(&o.max_message_chars),
        "--max-message-chars must be 1..=100000",
    );
    p.check(
        o.max_message_chars.saturating_mul(4) < o.max_frame_bytes,
        "--max-frame-bytes must hold a message of --max-message-chars 4-byte characters",
    );
    p.check(
        o.heartbeat_ms >= 1_000,
        "--heartbeat-ms must be at least 1000",
    );
    p.check(
        o.idle_timeout_ms > o.heartbeat_ms,
        "--idle-timeout-ms must be longer than --heartbeat-ms",
    );
    p.check(
        o.hello_timeout_ms >= 100,
        "--hello-timeout-ms must be at least 100",
    );
    p.check(
        o.typing_ttl_ms >= 100,
        "--typing-ttl-ms must be at least 100",
    );
    p.check(
        o.session_frames_per_sec > 0.0 && o.session_frames_per_sec.is_finite(),
        "--session-frames-per-sec must be positive",
    );
    p.check(
        o.session_frame_burst >= 1,
        "--session-frame-burst must be at least 1",
    );
    p.check(
        (1..=100_000).contains(&o.max_resume_points),
        "--max-resume-points must be 1..=100000",
    );
    SessionLimits {
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
        shutdown_drain: Duration::from_millis(o.shutdown_drain_ms),
    }
}

fn settings(o: &Options, p: &mut Problems) -> Settings {
    p.check(o.outbox_frames >= 16, "--outbox-frames must be at least 16");
    p.check(
        o.outbox_bytes >= o.max_frame_bytes,
        "--outbox-bytes must be at least --max-frame-bytes",
    );
    p.check(
        o.outbox_node_bytes >= o.outbox_bytes,
        "--outbox-node-bytes must be at least --outbox-bytes",
    );
    p.check(
        o.max_sessions_per_user >= 1,
        "--max-sessions-per-user must be at least 1",
    );
    for (value, flag) in [
        (o.http_header_timeout_ms, "--http-header-timeout-ms"),
        (o.http_body_timeout_ms, "--http-body-timeout-ms"),
        (o.http_idle_timeout_ms, "--http-idle-timeout-ms"),
    ] {
        p.check(value >= 100, &format!("{flag} must be at least 100"));
    }
    p.check(
        o.write_timeout_ms >= 100,
        "--write-timeout-ms must be at least 100",
    );
    p.check(
        o.metrics_token
            .as_ref()
            .is_none_or(|t| t.is_empty() || t.len() >= 16),
        "--metrics-token must be at least 16 characters",
    );
    p.check(
        o.socket_send_buffer_bytes == 0 || (4096..=64 << 20).contains(&o.socket_send_buffer_bytes),
        "--socket-send-buffer-bytes must be 0 (autotuning) or 4096..=67108864",
    );
    p.check(
        (1..=100_000).contains(&o.resume_max_messages),
        "--resume-max-messages must be 1..=100000",
    );
    p.check(
        (1..=10_000_000).contains(&o.resume_max_total_messages),
        "--resume-max-total-messages must be 1..=10000000",
    );
    p.check(
        (1 << 16..=1 << 32).contains(&o.resume_max_total_bytes),
        "--resume-max-total-bytes must be 65536..=4294967296",
    );
    p.check(
        (1024..=16 << 20).contains(&o.max_body_bytes),
        "--max-body-bytes must be 1024..=16777216",
    );
    let cors_origins = o
        .client_url
        .split(',')
        .map(|s| s.trim().trim_end_matches('/').to_owned())
        .filter(|s| !s.is_empty())
        .collect();
    Settings {
        outbox_frames: o.outbox_frames,
        outbox_bytes: o.outbox_bytes,
        outbox_node_bytes: o.outbox_node_bytes,
        max_sessions_per_user: o.max_sessions_per_user,
        write_timeout: Duration::from_millis(o.write_timeout_ms),
        socket_send_buffer: o.socket_send_buffer_bytes,
        metrics_token: o.metrics_token.clone().filter(|t| !t.is_empty()),
        rest_rate: (o.rest_requests_per_sec, o.rest_request_burst),
        groups_per_user_per_hour: o.groups_per_user_per_hour,
        reports_per_user_per_hour: o.reports_per_user_per_hour,
        http_header_timeout: Duration::from_millis(o.http_header_timeout_ms),
        http_body_timeout: Duration::from_millis(o.http_body_timeout_ms),
        http_idle_timeout: Duration::from_millis(o.http_idle_timeout_ms),
        resume_max_messages: o.resume_max_messages,
        resume_max_total_messages: o.resume_max_total_messages,
        resume_max_total_bytes: o.resume_max_total_bytes,
        max_body_bytes: o.max_body_bytes,
        shutdown_grace: Duration::from_millis(o.shutdown_grace_ms),
        shutdown_ready_delay: Duration::from_millis(o.shutdown_ready_delay_ms),
        cors_origins,
        test_endpoints: o.test_endpoints,
        web_page: o.web_page,
        // The node signs with the generated development secret exactly when neither a secret
        // nor a public key is configured (`Config::resolve_secret` gives `dev_file` then; with
        // a public key alone there is no secret at all).
        dev_sign_in: o.jwt_secret.is_none() && o.jwt_public_key.is_none(),
        max_connections: match o.max_connections {
            0 => open_files_limit().map_or(crate::node::DEFAULT_MAX_CONNECTIONS, |n| {
                usize::try_from(n.saturating_sub(256).max(64)).unwrap_or(usize::MAX)
            }),
            n => n,
        },
        max_connections_per_ip: o.max_connections_per_ip,
        media_uploads_per_hour: o.media_uploads_per_hour,
        media_upload_timeout: Duration::from_millis(o.media_upload_timeout_ms),
    }
}

/// The media settings (`url_keys` empty: derive one from the JWT secret at start).
fn media(o: &Options, p: &mut Problems) -> MediaConfig {
    let mut m = MediaConfig::with_keys(Vec::new());
    if let Some(keys) = &o.media_url_keys {
        for pair in keys.split(',').filter(|k| !k.trim().is_empty()) {
            match pair.trim().split_once(':') {
                Some((kid, secret))
                    if !kid.is_empty()
                        && kid.len() <= 16
                        && kid.bytes().all(|b| b.is_ascii_alphanumeric())
                        && secret.len() >= 16 =>
                {
                    m.url_keys
                        .push((kid.to_owned(), secret.as_bytes().to_vec()));
                }
                _ => p.check(
                    false,
                    "--media-url-keys must be kid:secret pairs (kid 1-16 letters or digits, \
                     secret at least 16 bytes), comma-separated",
                ),
            }
        }
    }
    let base = o.media_base_url.trim_end_matches('/');
    p.check(
        base.is_empty() || base.starts_with("https://") || base.starts_with("http://"),
        "--media-base-url must be an http(s) URL",
    );
    m.base_url = base.to_owned();
    p.check(
        o.media_url_ttl_s >= 60,
        "--media-url-ttl-s must be at least 60",
    );
    m.url_ttl_s = o.media_url_ttl_s;
    p.check(
        o.media_max_image_bytes >= 1024 && o.media_max_file_bytes >= 1024,
        "--media-max-image-bytes and --media-max-file-bytes must be at least 1024",
    );
    m.max_image_bytes = o.media_max_image_bytes;
    m.max_file_bytes = o.media_max_file_bytes;
    p.check(
        o.media_max_image_pixels >= 1_000_000,
        "--media-max-image-pixels must be at least 1000000",
    );
    m.images.max_pixels = o.media_max_image_pixels;
    p.check(
        (1..=365 * 24 * 3600).contains(&o.media_unsent_ttl_s),
        "--media-unsent-ttl-s must be 1..=31536000",
    );
    m.unsent_ttl_ms = o.media_unsent_ttl_s as i64 * 1000;
    p.check(
        o.media_collect_every_ms >= 100,
        "--media-collect-every-ms must be at least 100",
    );
    p.check(
        o.media_image_workers <= 256,
        "--media-image-workers must be at most 256",
    );
    m.image_concurrency = match o.media_image_workers {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get().div_ceil(2)),
        n => n,
    };
    if let Some(types) = &o.media_file_types {
        m.file_types = types
            .split(',')
            .map(|t| t.trim().to_ascii_lowercase())
            .filter(|t| !t.is_empty())
            .collect();
    }
    p.check(
        o.media_uploads_per_hour >= 1,
        "--media-uploads-per-hour must be at least 1",
    );
    p.check(
        o.media_upload_timeout_ms >= 1000,
        "--media-upload-timeout-ms must be at least 1000",
    );
    m
}

/// Where media bytes live: the S3 bucket if one is named, else the directory.
fn media_store(o: &Options, p: &mut Problems) -> MediaStoreConfig {
    let Some(bucket) = &o.media_s3_bucket else {
        return MediaStoreConfig::Dir(
            o.media_dir
                .clone()
                .unwrap_or_else(|| o.data_dir.join("media")),
        );
    };
    p.check(
        o.media_dir.is_none(),
        "--media-dir and --media-s3-bucket name two stores: give one",
    );
    p.check(
        !bucket.is_empty()
            && bucket.len() <= 63
            && bucket
                .bytes()
                .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'.' | b'-')),
        "--media-s3-bucket must be an S3 bucket name (lowercase letters, digits, '.', '-')",
    );
    if let Some(e) = &o.media_s3_endpoint {
        p.check(
            e.starts_with("http://") || e.starts_with("https://"),
            "--media-s3-endpoint must be an http(s) URL",
        );
    }
    let key = |v: &Option<String>| v.clone().filter(|k| !k.is_empty());
    let (id, secret) = (
        key(&o.media_s3_access_key_id),
        key(&o.media_s3_secret_access_key),
    );
    p.check(
        id.is_some() && secret.is_some(),
        "--media-s3-bucket needs AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or \
         --media-s3-access-key-id and --media-s3-secret-access-key)",
    );
    p.check(
        o.media_s3_timeout_ms >= 100,
        "--media-s3-timeout-ms must be at least 100",
    );
    MediaStoreConfig::S3(S3Config {
        bucket: bucket.clone(),
        endpoint: o
            .media_s3_endpoint
            .as_ref()
            .map(|e| e.trim_end_matches('/').to_owned()),
        region: o.media_s3_region.clone(),
        prefix: o.media_s3_prefix.clone(),
        access_key_id: id.unwrap_or_default(),
        secret_access_key: secret.unwrap_or_default(),
        request_timeout: Duration::from_millis(o.media_s3_timeout_ms),
    })
}

/// The soft limit on open files of this process (`/proc/self/limits`; None elsewhere).
fn open_files_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// The storage engine; None (with problems recorded) when its settings are invalid.
fn engine(o: &Options, p: &mut Problems) -> Option<Engine> {
    p.check(
        (1..=65_536).contains(&o.storage_max_batch),
        "--storage-max-batch must be 1..=65536",
    );
    p.check(
        o.storage_commit_delay_us <= 10_000,
        "--storage-commit-delay-us must be 0..=10000",
    );
    p.check(
        (1..=256).contains(&o.storage_memtable_mib),
        "--storage-memtable-mib must be 1..=256",
    );
    p.check(
        parley_storage::scylla::valid_keyspace(&o.scylla_keyspace),
        "--scylla-keyspace must be a CQL identifier (letters, digits, _)",
    );
    let consistency = consistency(&o.scylla_consistency);
    p.check(
        consistency.is_some(),
        "--scylla-consistency must be one, two, three, quorum, local_quorum, each_quorum, all or local_one",
    );
    let replication = parley_storage::scylla::replication(&o.scylla_replication).ok();
    p.check(
        replication.is_some(),
        "--scylla-replication must be simple:N or dc:N,dc:N",
    );
    p.check(
        !o.migrate || !o.scylla.is_empty(),
        "--migrate needs --scylla",
    );
    if o.scylla.is_empty() {
        return Some(Engine::Embedded(EmbeddedConfig {
            node_id: o.node_id,
            max_batch: o.storage_max_batch,
            commit_delay: Duration::from_micros(o.storage_commit_delay_us),
            memtable_bytes: o.storage_memtable_mib << 20,
            ..EmbeddedConfig::default()
        }));
    }
    Some(Engine::Scylla {
        config: ScyllaConfig {
            nodes: o.scylla.clone(),
            keyspace: o.scylla_keyspace.clone(),
            consistency: consistency?,
            node_id: o.node_id,
        },
        replication: replication?,
        migrate: o.migrate,
    })
}

fn cluster(o: &Options, p: &mut Problems) -> Option<Cluster> {
    p.check(
        (1..=1024).contains(&o.redis_partitions),
        "--redis-partitions must be 1..=1024",
    );
    p.check(
        o.redis_stream_maxlen >= 1000,
        "--redis-stream-maxlen must be at least 1000",
    );
    p.check(
        (16..=10_000_000).contains(&o.redis_publish_queue),
        "--redis-publish-queue must be 16..=10000000",
    );
    p.check(
        (1_000..=300_000).contains(&o.presence_ttl_ms),
        "--presence-ttl-ms must be 1000..=300000",
    );
    let url = o.redis.as_ref()?;
    p.check(
        redis::Client::open(url.as_str()).is_ok(),
        "--redis / REDIS_URL is not a valid Redis URL",
    );
    // A cluster's nodes must agree on history and on who a token belongs to.
    p.check(
        !o.scylla.is_empty(),
        "--redis needs --scylla: the nodes of a cluster must share their history",
    );
    p.check(
        o.jwt_secret.is_some() || o.jwt_public_key.is_some(),
        "--redis needs JWT_SECRET (or JWT_PUBLIC_KEY_FILE) shared by every node: \
         a generated development secret is per node",
    );
    p.check(
        o.jwt_secret.is_some() || o.media_url_keys.is_some(),
        "--redis with only JWT_PUBLIC_KEY_FILE needs --media-url-keys shared by every node \
         (media URLs are otherwise signed with a key derived from JWT_SECRET)",
    );
    p.check(
        !o.push || o.push_vapid_key_file.is_some(),
        "--redis with push on needs --push-vapid-key-file shared by every node (browsers \
         subscribe to one VAPID key; a generated one is per node), or --push false",
    );
    Some(Cluster {
        redis_url: url.clone(),
        bus: BusConfig {
            node_id: o.node_id,
            partitions: o.redis_partitions,
            retention: o.redis_stream_maxlen,
            publish_queue: o.redis_publish_queue,
            presence_ttl: Duration::from_millis(o.presence_ttl_ms),
        },
    })
}

fn push_settings(o: &Options) -> PushSettings {
    let webpush_hosts = match &o.push_webpush_hosts {
        Some(list) => list
            .split(',')
            .map(|h| h.trim().to_ascii_lowercase())
            .filter(|h| !h.is_empty())
            .collect(),
        None => crate::push::DEFAULT_WEBPUSH_HOSTS
            .iter()
            .map(|h| (*h).to_owned())
            .collect(),
    };
    PushSettings {
        rules: crate::push::PushConfig {
            grace: Duration::from_millis(o.push_grace_ms),
            max_age: Duration::from_secs(o.push_max_age_s),
            max_devices: o.push_max_devices,
            include_text: o.push_include_text,
            webpush_hosts,
        },
        ttl: Duration::from_secs(o.push_ttl_s),
        timeout: Duration::from_millis(o.push_timeout_ms),
        vapid_key_file: o
            .push_vapid_key_file
            .clone()
            .unwrap_or_else(|| o.data_dir.join("vapid-key.pem")),
        vapid_subject: o.push_vapid_subject.clone(),
        fcm_service_account: o.push_fcm_service_account.clone(),
        fcm_url: o.push_fcm_url.clone(),
        apns: o.push_apns_key_file.clone().map(|f| {
            (
                f,
                o.push_apns_key_id.clone().unwrap_or_default(),
                o.push_apns_team_id.clone().unwrap_or_default(),
            )
        }),
        apns_url: o.push_apns_url.clone(),
        webhook: o
            .push_webhook_url
            .clone()
            .zip(o.push_webhook_secret.clone()),
    }
}

fn push_checks(o: &Options, p: &mut Problems) {
    p.check(
        o.push_grace_ms <= 3_600_000,
        "--push-grace-ms must be at most 3600000",
    );
    p.check(
        (1..=7 * 86_400).contains(&o.push_max_age_s),
        "--push-max-age-s must be 1..=604800",
    );
    p.check(
        o.push_ttl_s <= 28 * 86_400,
        "--push-ttl-s must be at most 2419200 (28 days, the longest the services keep one)",
    );
    p.check(
        (1..=100).contains(&o.push_max_devices),
        "--push-max-devices must be 1..=100",
    );
    p.check(
        (100..=60_000).contains(&o.push_timeout_ms),
        "--push-timeout-ms must be 100..=60000",
    );
    p.check(
        o.push_vapid_subject.starts_with("mailto:") || o.push_vapid_subject.starts_with("https:"),
        "--push-vapid-subject must be a mailto: or https: URL",
    );
    p.check(
        o.push_apns_key_file.is_none()
            || (o.push_apns_key_id.is_some() && o.push_apns_team_id.is_some()),
        "--push-apns-key-file needs --push-apns-key-id and --push-apns-team-id",
    );
    p.check(
        o.push_webhook_url.is_some() == o.push_webhook_secret.is_some(),
        "--push-webhook-url and --push-webhook-secret go together",
    );
    p.check(
        o.push_webhook_secret.as_ref().is_none_or(|s| s.len() >= 16),
        "--push-webhook-secret must be at least 16 bytes",
    );
    p.check(
        o.push_webhook_url
            .as_ref()
            .is_none_or(|u| u.starts_with("https://") || u.starts_with("http://")),
        "--push-webhook-url must be an http(s) URL",
    );
}

/// Search: tantivy on the embedded storage, Solr in a cluster that names it, else none.
fn search_settings(o: &Options) -> Option<SearchConfig> {
    let engine = match (&o.solr, o.scylla.is_empty()) {
        _ if !o.search => return None,
        (None, true) => SearchEngine::Embedded(o.data_dir.join("search")),
        (Some(url), false) => SearchEngine::Solr {
            url: url.clone(),
            timeout: Duration::from_millis(o.solr_timeout_ms),
        },
        _ => return None,
    };
    Some(SearchConfig {
        engine,
        commit_every: Duration::from_millis(o.search_commit_ms),
    })
}

fn other_checks(o: &Options, p: &mut Problems) {
    push_checks(o, p);
    if o.solr.is_some() {
        p.check(
            !o.scylla.is_empty() && o.redis.is_some(),
            "--solr is a cluster's index: it needs --scylla and --redis (one node searches its own index)",
        );
        p.check(
            (100..=120_000).contains(&o.solr_timeout_ms),
            "--solr-timeout-ms must be 100..=120000",
        );
    }
    p.check(o.shards <= 1024, "--shards must be at most 1024");
    p.check(
        (10..=600_000).contains(&o.search_commit_ms),
        "--search-commit-ms must be 10..=600000",
    );
    p.check(
        (100..=3_600_000).contains(&o.moderation_reload_ms),
        "--moderation-reload-ms must be 100..=3600000",
    );
    p.check(
        (1..=10_000).contains(&o.moderation_classifier_timeout_ms),
        "--moderation-classifier-timeout-ms must be 1..=10000",
    );
    p.check(
        (1..=10_000).contains(&o.moderation_classifier_concurrency),
        "--moderation-classifier-concurrency must be 1..=10000",
    );
    p.check(
        o.moderation_classifier_url.is_none() || o.moderation_rules.is_some(),
        "--moderation-classifier-url needs --moderation-rules (rules decide what a score does)",
    );
    p.check(o.shard_inbox >= 16, "--shard-inbox must be at least 16");
    p.check(
        o.user_messages_per_sec > 0.0 && o.user_messages_per_sec.is_finite(),
        "--user-messages-per-sec must be positive",
    );
    p.check(
        o.user_message_burst >= 1,
        "--user-message-burst must be at least 1",
    );
    p.check(
        o.rest_requests_per_sec > 0.0 && o.rest_requests_per_sec.is_finite(),
        "--rest-requests-per-sec must be positive",
    );
    p.check(
        o.rest_request_burst >= 1,
        "--rest-request-burst must be at least 1",
    );
    p.check(
        o.groups_per_user_per_hour >= 1,
        "--groups-per-user-per-hour must be at least 1",
    );
    p.check(
        o.reports_per_user_per_hour >= 1,
        "--reports-per-user-per-hour must be at least 1",
    );
    if let Some(secret) = &o.jwt_secret {
        p.check(secret.len() >= 16, "JWT_SECRET must be at least 16 bytes");
    }
    p.check(
        o.jwt_max_lifetime_s >= 60,
        "--jwt-max-lifetime-s must be at least 60",
    );
    p.check(
        (0..=3600).contains(&o.jwt_leeway_s),
        "--jwt-leeway-s must be 0..=3600",
    );
    p.check(
        o.tls_cert.is_some() == o.tls_key.is_some(),
        "--tls-cert and --tls-key go together",
    );
    for path in [&o.tls_cert, &o.tls_key].into_iter().flatten() {
        p.check(
            path.is_file(),
            "--tls-cert / --tls-key must name readable files",
        );
    }
    if let Some(path) = &o.jwt_public_key {
        p.check(path.is_file(), "--jwt-public-key must name a readable file");
    }
    p.check(
        tracing_subscriber::EnvFilter::try_new(&o.log).is_ok(),
        "--log is not a valid filter",
    );
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

/// The HS256 secret in use.
pub(crate) struct Secret {
    pub(crate) bytes: Vec<u8>,
    /// Where the development secret lives, when it is one.
    pub(crate) dev_file: Option<PathBuf>,
    /// Whether it was generated just now.
    pub(crate) generated: bool,
}

/// Parses a lifetime: plain seconds or a number with `s`, `m`, `h` or `d`.
pub(crate) fn parse_ttl(s: &str) -> Result<i64, String> {
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
    use clap::Parser;

    use super::*;

    fn parse(args: &[&str]) -> Result<Config, String> {
        let cli = Cli::try_parse_from(std::iter::once("gateway").chain(args.iter().copied()))
            .map_err(|e| e.to_string())?;
        Config::from_options(&cli.options)
    }

    #[test]
    fn defaults_are_valid() {
        let c = parse(&["--port", "3001", "--client-url", "http://localhost:3000"]).expect("ok");
        assert_eq!(c.listen.port, 3001);
        assert_eq!(c.session.max_message_chars, 4000);
        assert!(c.listen.shards >= 1);
        assert_eq!(c.node.cors_origins, vec!["http://localhost:3000"]);
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
        let cluster = [
            "--redis",
            "redis://127.0.0.1:6379",
            "--scylla",
            "127.0.0.1:9042",
            "--jwt-secret",
            "a-secret-of-enough-bytes",
        ];
        parse(&cluster).expect_err("push needs a shared VAPID key");
        let vapid = ["--push-vapid-key-file", "/etc/parley/vapid.pem"];
        parse(&[&cluster[..], &vapid[..]].concat()).expect("a valid cluster node");
    }

    #[test]
    fn the_dev_sign_in_is_open_only_with_the_development_secret() {
        let pem = PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/testdata/ed25519-test-public.pem"
        ));
        // Set here, whatever JWT_SECRET or JWT_PUBLIC_KEY_FILE the test process has.
        let open = |secret: Option<&str>, public_key: Option<&PathBuf>| {
            let mut o = Cli::try_parse_from(["gateway"]).expect("parse").options;
            o.jwt_secret = secret.map(str::to_owned);
            o.jwt_public_key = public_key.cloned();
            Config::from_options(&o).expect("valid").node.dev_sign_in
        };
        let secret = Some("a-secret-of-enough-bytes");
        assert!(open(None, None));
        assert!(!open(secret, None));
        assert!(!open(None, Some(&pem)));
        assert!(!open(secret, Some(&pem)));
    }

    #[test]
    fn the_web_page_is_on_unless_turned_off() {
        assert!(parse(&[]).expect("valid").node.web_page);
        let off = parse(&["--web-page", "false"]).expect("valid");
        assert!(!off.node.web_page);
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
