//! Starting and stopping a node: one TCP listener per shard on the same port (SO_REUSEPORT, so
//! the kernel spreads connections), one thread per shard, one QUIC endpoint whose work is
//! spread over the shards, and a shutdown signal passed down.

use std::net::{SocketAddr, TcpListener as StdListener, UdpSocket};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Context;
use parley_storage::Storage;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::sync::{mpsc, watch};

use crate::auth::Authenticator;
use crate::bus::Bus;
use crate::bus::group::{Purpose, StreamGroup};
use crate::bus::redis::RedisLog;
use crate::chat::{Chat, Stages};
use crate::config::Config;
use crate::config::SearchEngine;
use crate::config::{MediaStoreConfig, PushSettings};
use crate::media::Media;
use crate::media::s3::S3Store;
use crate::metered::{Metered, Timing};
use crate::metrics::Metrics;
use crate::moderation::Moderation;
use crate::node::BusEvents;
use crate::node::{Node, Settings};
use crate::push::provider::{ApnsConfig, FcmConfig, Providers, WebPushConfig, WebhookConfig};
use crate::push::{Push, PushConfig};
use crate::search::indexer::Indexer;
use crate::search::{SearchIndex, Tantivy};
use crate::session::SessionLimits;
use crate::shard::Shard;
use crate::state::admission::Admitted;
use crate::state::blocks::Blocks;
use crate::state::fanout::{Delivery, Fanout};
use crate::state::limiter::UserLimiter;
use crate::state::routes::Routes;
use crate::transport::quic;

/// How often an idle search indexer looks at the change feed.
const SEARCH_POLL: Duration = Duration::from_millis(100);

/// QUIC connections waiting for their shard to take them; beyond this they are refused.
const QUIC_BACKLOG: usize = 1024;

/// A running node.
pub(crate) struct Running {
    addr: SocketAddr,
    quic_addr: SocketAddr,
    node: Arc<Node>,
    endpoint: quinn::Endpoint,
    shutdown: watch::Sender<bool>,
    threads: Vec<JoinHandle<()>>,
}

impl Running {
    /// Where HTTP / WebSocket listens.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Where QUIC listens (UDP).
    pub(crate) fn quic_addr(&self) -> SocketAddr {
        self.quic_addr
    }

    /// Drains: `/readyz` answers 503 at once while everything is still served, for the
    /// ready delay; then the listeners close, every session gets Goaway and answers what is
    /// still arriving for the drain time; the shards wait for their connections (up to the
    /// grace) and end.
    pub(crate) fn shutdown(self, services: &tokio::runtime::Handle) {
        self.node.lifecycle.begin_shutdown();
        std::thread::sleep(self.node.settings.shutdown_ready_delay);
        let _ = self.shutdown.send(true);
        for t in self.threads {
            let _ = t.join();
        }
        self.endpoint.close(0u8.into(), b"shutdown");
        if let Some(bus) = &self.node.chat.bus {
            services.block_on(bus.leave());
        }
    }
}

fn bind(addr: SocketAddr) -> std::io::Result<StdListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(4096)?;
    Ok(socket.into())
}

/// This node's consumer of the bus's streams for `purpose` (push or search).
fn consumer_group(
    services: &tokio::runtime::Handle,
    c: &crate::config::Cluster,
    purpose: Purpose,
) -> anyhow::Result<StreamGroup> {
    services
        .block_on(StreamGroup::connect(
            purpose,
            &c.redis_url,
            c.bus.node_id,
            c.bus.partitions,
            c.bus.presence_ttl,
        ))
        .with_context(|| format!("{purpose:?}: connect to Redis for the bus's consumer group"))
}

/// What a shard thread needs besides its `Shard`.
struct ShardIo {
    listener: StdListener,
    inbox: mpsc::Receiver<Delivery>,
    quic: mpsc::Receiver<(quinn::Incoming, Admitted)>,
}

/// Starts `config.listen.shards` shards serving on the configured address (port 0: any free
/// port, the same for every shard) and the QUIC endpoint on the same port number over UDP.
pub(crate) fn start(
    config: Config,
    storage: Arc<dyn Storage>,
    auth: Authenticator,
    tls: &quic::tls::TlsMaterial,
    services: &tokio::runtime::Handle,
) -> anyhow::Result<Running> {
    let l = &config.listen;
    let shards = l.shards.max(1);
    let first = bind(SocketAddr::new(l.bind, l.port))
        .with_context(|| format!("cannot listen on {}:{}", l.bind, l.port))?;
    let addr = first.local_addr()?;
    let quic_addr = SocketAddr::new(l.bind, l.quic_port.unwrap_or(addr.port()));
    let udp = UdpSocket::bind(quic_addr).with_context(|| format!("cannot bind UDP {quic_addr}"))?;
    let quic_addr = udp.local_addr()?;
    let server_config = quic::tls::server_config(tls, config.session.idle_timeout)?;
    let mut listeners = vec![first];
    for _ in 1..shards {
        listeners.push(bind(addr).with_context(|| format!("cannot add a listener on {addr}"))?);
    }
    let (inboxes, inbox_rx): (Vec<_>, Vec<_>) = (0..shards)
        .map(|_| mpsc::channel::<Delivery>(config.shard_inbox))
        .unzip();
    let (quic_tx, quic_rx): (Vec<_>, Vec<_>) = (0..shards)
        .map(|_| mpsc::channel::<(quinn::Incoming, Admitted)>(QUIC_BACKLOG))
        .unzip();
    let node = build_node(config, storage, auth, inboxes, services)?;
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let io = listeners
        .into_iter()
        .zip(inbox_rx)
        .zip(quic_rx)
        .map(|((listener, inbox), quic)| ShardIo {
            listener,
            inbox,
            quic,
        })
        .collect();
    let (threads, handles) = spawn_shards(&node, io, &shutdown_rx)?;
    // One endpoint for the node (see quic/mod.rs); its tasks run on the shards.
    let runtime = Arc::new(quic::runtime::ShardedRuntime::new(handles.clone()));
    let endpoint = {
        let _context = handles[0].enter();
        quinn::Endpoint::new(
            quinn::EndpointConfig::default(),
            Some(server_config),
            udp,
            runtime,
        )?
    };
    handles[0].spawn(accept_quic(endpoint.clone(), node.clone(), quic_tx));
    if let Some(bus) = &node.chat.bus {
        bus.start(services, Arc::new(BusEvents(node.clone())));
    }
    Ok(Running {
        addr,
        quic_addr,
        node,
        endpoint,
        shutdown: shutdown_tx,
        threads,
    })
}

/// The node's parts, wired: storage timed into the metrics, the bus when clustered.
fn build_node(
    config: Config,
    storage: Arc<dyn Storage>,
    auth: Authenticator,
    inboxes: Vec<mpsc::Sender<Delivery>>,
    services: &tokio::runtime::Handle,
) -> anyhow::Result<Arc<Node>> {
    // The bus lives on the services runtime (like the storage clients).
    let bus = match &config.cluster {
        Some(c) => {
            let log = services
                .block_on(RedisLog::connect(&c.redis_url))
                .context("connect to Redis")?;
            Some(Bus::new(c.bus.clone(), Arc::new(log)))
        }
        None => None,
    };
    let classifier = match &config.classifier {
        Some((url, timeout, concurrency)) => Some(
            crate::moderation::classifier::Classifier::new(url, *timeout, *concurrency)
                .map_err(|e| anyhow::anyhow!("moderation classifier: {e}"))?,
        ),
        None => None,
    };
    let moderation = match &config.moderation {
        Some((path, _)) => Moderation::from_file(path.clone(), classifier)
            .map_err(|e| anyhow::anyhow!("moderation rules: {e}"))?,
        None => Moderation::disabled(),
    };
    let moderation = Arc::new(moderation);
    if let Some((_, every)) = config.moderation {
        services.spawn(moderation.clone().watch(every));
    }
    let media = media(&config).context("media store")?;
    services.spawn(
        media
            .clone()
            .collect_forever(config.media_collect_every, || {
                crate::clock::Now::get().wall_ms
            }),
    );
    // Push and search read the same change feed; the feed is trimmed only below both.
    let push = match &config.push {
        Some(ps) => {
            let (floor, queue) = match &config.cluster {
                // A cluster: the bus's streams through a consumer group (no change feed).
                Some(c) => {
                    let group = consumer_group(services, c, Purpose::Push)?;
                    let queue: Arc<dyn crate::push::Queue> = Arc::new(PushQueue(group));
                    (u64::MAX, Some(queue))
                }
                None => {
                    let floor = services
                        .block_on(crate::push::dispatch::load_cursor(&*storage))
                        .context("push: read the change feed's cursor")?;
                    (floor, None)
                }
            };
            let providers = push_providers(ps)?;
            Some(PushParts {
                providers,
                config: ps.rules.clone(),
                floor: Arc::new(AtomicU64::new(floor)),
                queue,
            })
        }
        None => None,
    };
    let keep_above = push
        .as_ref()
        .map_or_else(|| Arc::new(AtomicU64::new(u64::MAX)), |p| p.floor.clone());
    let search: Option<Arc<dyn SearchIndex>> = match &config.search {
        Some(sc) => match &sc.engine {
            SearchEngine::Embedded(dir) => {
                let index = Arc::new(
                    Tantivy::open(dir)
                        .with_context(|| format!("open the search index in {}", dir.display()))?,
                );
                Indexer {
                    index: index.clone(),
                    storage: storage.clone(),
                    commit_every: sc.commit_every,
                    poll: SEARCH_POLL,
                    keep_above: keep_above.clone(),
                }
                .spawn()
                .context("start the search indexer")?;
                Some(index)
            }
            SearchEngine::Solr { url, timeout } => {
                let Some(c) = &config.cluster else {
                    anyhow::bail!("--solr needs a cluster (--redis)");
                };
                let solr = Arc::new(
                    crate::search::solr::Solr::new(url, *timeout).map_err(anyhow::Error::msg)?,
                );
                services
                    .block_on(solr.ping())
                    .with_context(|| format!("search: the Solr collection at {url}"))?;
                let group = consumer_group(services, c, Purpose::Search)?;
                let index: Arc<dyn SearchIndex> = solr;
                services.spawn(
                    crate::search::cluster::ClusterIndexer {
                        index: index.clone(),
                        storage: storage.clone(),
                        queue: Arc::new(SearchQueue(group)),
                        commit_every: sc.commit_every,
                        poll: SEARCH_POLL,
                    }
                    .run(),
                );
                Some(index)
            }
        },
        None => {
            // The index does not read the change feed: keep it from growing (its newest entry
            // stays), past what push still needs.
            let storage = storage.clone();
            let keep_above = keep_above.clone();
            services.spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_secs(60)).await;
                    let below = keep_above.load(Ordering::Relaxed).saturating_add(1);
                    match storage.trim_changes(below).await {
                        Ok(()) => {}
                        Err(parley_storage::StorageError::Unsupported(_)) => return,
                        Err(e) => tracing::warn!(error = %e, "trimming the change feed failed"),
                    }
                }
            });
            None
        }
    };
    let parts = Parts {
        settings: config.node,
        limits: config.session,
        auth,
        send_rate: config.send_rate,
        moderation,
        media,
        search,
        push,
    };
    let node = assemble(parts, storage, inboxes, bus);
    if let Some(push) = &node.chat.push {
        services.spawn(crate::push::dispatch::run(push.clone()));
        services.spawn(crate::push::cleared::run(push.clone()));
    }
    Ok(node)
}

/// What a node is made of besides storage, its shards' inboxes and the bus.
pub(crate) struct Parts {
    pub(crate) settings: Settings,
    pub(crate) limits: SessionLimits,
    pub(crate) auth: Authenticator,
    /// Sends per second per user, and the burst above it.
    pub(crate) send_rate: (f64, u32),
    pub(crate) moderation: Arc<Moderation>,
    pub(crate) media: Arc<Media>,
    /// The message index (None: search is off).
    pub(crate) search: Option<Arc<dyn SearchIndex>>,
    /// Push notifications (None: off).
    pub(crate) push: Option<PushParts>,
}

/// What push is made of before the node exists (it asks the node's routes who is online).
pub(crate) struct PushParts {
    pub(crate) providers: Providers,
    pub(crate) config: PushConfig,
    /// The change-feed cursor push still needs entries above.
    pub(crate) floor: Arc<AtomicU64>,
    /// A cluster's push queue (None: one node, on the change feed).
    pub(crate) queue: Option<Arc<dyn crate::push::Queue>>,
}

/// The bus's consumer group as push's queue.
struct PushQueue(StreamGroup);

#[async_trait::async_trait]
impl crate::push::Queue for PushQueue {
    async fn take(&self, max: usize) -> Result<Vec<crate::push::Taken>, String> {
        let taken = self.0.take(max).await.map_err(|e| e.to_string())?;
        Ok(taken
            .into_iter()
            .map(|e| crate::push::Taken {
                id: (e.partition, e.id),
                at: e.at,
                replay: e.replay,
            })
            .collect())
    }

    async fn ack(&self, ids: Vec<crate::push::EntryId>) -> Result<(), String> {
        self.0.ack(&ids).await.map_err(|e| e.to_string())
    }

    fn owned(&self) -> u64 {
        self.0.owned()
    }

    fn lost(&self) -> u64 {
        self.0.lost.load(Ordering::Relaxed)
    }
}

/// The bus's consumer group `search` as the cluster indexer's queue.
struct SearchQueue(StreamGroup);

#[async_trait::async_trait]
impl crate::search::cluster::Queue for SearchQueue {
    async fn take(&self, max: usize) -> Result<Vec<crate::search::cluster::Entry>, String> {
        let taken = self.0.take(max).await.map_err(|e| e.to_string())?;
        Ok(taken
            .into_iter()
            .map(|e| crate::search::cluster::Entry {
                id: (e.partition, e.id),
                at: e.at,
            })
            .collect())
    }

    async fn ack(&self, ids: Vec<(u32, String)>) -> Result<(), String> {
        self.0.ack(&ids).await.map_err(|e| e.to_string())
    }
}

/// Who is online for push: this node's sessions, then (a cluster) every live node's.
struct PushPresence {
    routes: Arc<Routes>,
    bus: Option<Arc<Bus>>,
}

#[async_trait::async_trait]
impl crate::push::Presence for PushPresence {
    async fn online(&self, user: &str) -> Result<bool, String> {
        if self.routes.presence(user).online {
            return Ok(true);
        }
        let Some(bus) = &self.bus else {
            return Ok(false);
        };
        let p = bus
            .presence_many(&[user])
            .await
            .map_err(|e| e.to_string())?;
        Ok(p.first().is_some_and(|p| p.online))
    }
}

/// The push providers `ps` configures: Web Push always (with the VAPID key from its file,
/// generated there on first start), FCM and the webhook when configured.
fn push_providers(ps: &PushSettings) -> anyhow::Result<Providers> {
    let vapid =
        crate::push::webpush::Vapid::load_or_generate(&ps.vapid_key_file, &ps.vapid_subject)
            .map_err(|e| anyhow::anyhow!("VAPID key {}: {e}", ps.vapid_key_file.display()))?;
    let fcm = match &ps.fcm_service_account {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("read {}", path.display()))?;
            let v: serde_json::Value = serde_json::from_str(&text)
                .with_context(|| format!("{} is not JSON", path.display()))?;
            let field = |name: &str| -> anyhow::Result<String> {
                v[name]
                    .as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| anyhow::anyhow!("{}: {name} is missing", path.display()))
            };
            Some(FcmConfig {
                project_id: field("project_id")?,
                client_email: field("client_email")?,
                private_key_pem: field("private_key")?,
                token_uri: field("token_uri")?,
                base_url: ps.fcm_url.clone(),
            })
        }
        None => None,
    };
    let apns = match &ps.apns {
        Some((path, key_id, team_id)) => Some(ApnsConfig {
            key_pem: std::fs::read_to_string(path)
                .with_context(|| format!("read {}", path.display()))?,
            key_id: key_id.clone(),
            team_id: team_id.clone(),
            base_url: ps.apns_url.clone(),
        }),
        None => None,
    };
    let webhook = ps.webhook.as_ref().map(|(url, secret)| WebhookConfig {
        url: url.clone(),
        secret: secret.as_bytes().to_vec(),
    });
    Providers::new(
        crate::push::provider::Delivery { ttl: ps.ttl },
        ps.timeout,
        Some(WebPushConfig { vapid }),
        fcm,
        apns,
        webhook,
    )
    .map_err(|e| anyhow::anyhow!("push: {e}"))
}

/// The media service: the store `config` names, URLs signed with `--media-url-keys` or
/// a key derived from the HS256 secret.
fn media(config: &Config) -> anyhow::Result<Arc<Media>> {
    let mut m = config.media.clone();
    if m.url_keys.is_empty() {
        let secret = config.resolve_secret().context("JWT secret")?;
        m.url_keys = vec![("0".into(), media_key_from(&secret.bytes))];
    }
    let media = match &config.media_store {
        MediaStoreConfig::Dir(dir) => {
            Media::on_disk(dir.clone(), m).with_context(|| format!("open {}", dir.display()))?
        }
        MediaStoreConfig::S3(s3) => {
            let store = S3Store::open(s3).with_context(|| format!("S3 bucket {}", s3.bucket))?;
            Media::new(Arc::new(store), m).context("start the image workers")?
        }
    };
    Ok(Arc::new(media))
}

/// The media URL key derived from the JWT secret (so one shared secret is enough for a
/// cluster), never the secret itself.
pub(crate) fn media_key_from(secret: &[u8]) -> Vec<u8> {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    ring::hmac::sign(&key, b"parley media url key v1")
        .as_ref()
        .to_vec()
}

/// Puts a node together (the running server and the in-process test harness alike).
pub(crate) fn assemble(
    parts: Parts,
    storage: Arc<dyn Storage>,
    inboxes: Vec<mpsc::Sender<Delivery>>,
    bus: Option<Arc<Bus>>,
) -> Arc<Node> {
    let metrics = Arc::new(Metrics::new(inboxes.len()));
    let storage: Arc<dyn Storage> = Arc::new(Metered::new(storage, Timing(metrics.clone())));
    let routes = Arc::new(Routes::new(inboxes.len()));
    let blocks = Arc::new(Blocks::new(storage.clone()));
    let fanout = Fanout::new(inboxes, routes.clone(), blocks.clone());
    let (rate, burst) = parts.send_rate;
    let limiter = UserLimiter::new(rate, burst);
    let push = parts.push.map(|p| {
        let presence = PushPresence {
            routes: routes.clone(),
            bus: bus.clone(),
        };
        Arc::new(Push::new(
            storage.clone(),
            p.providers,
            p.config,
            Arc::new(presence),
            p.queue,
            p.floor,
        ))
    });
    let chat = Chat::new(
        storage,
        routes,
        blocks,
        fanout,
        limiter,
        bus,
        Stages {
            moderation: parts.moderation,
            media: parts.media,
            search: parts.search,
            push,
        },
    );
    Arc::new(Node::new(
        parts.settings,
        parts.limits,
        Arc::new(parts.auth),
        chat,
        metrics,
    ))
}

/// Starts one thread per shard (pinned to a core when there are enough); returns the threads
/// and their runtimes' handles, by shard id.
fn spawn_shards(
    node: &Arc<Node>,
    io: Vec<ShardIo>,
    shutdown: &watch::Receiver<bool>,
) -> anyhow::Result<(Vec<JoinHandle<()>>, Vec<tokio::runtime::Handle>)> {
    let shards = io.len();
    let cores = core_affinity::get_core_ids().unwrap_or_default();
    let pin = shards <= cores.len();
    let (handles_tx, handles_rx) = std::sync::mpsc::sync_channel(shards);
    let mut threads = Vec::with_capacity(shards);
    for (id, io) in io.into_iter().enumerate() {
        let node = node.clone();
        let shutdown = shutdown.clone();
        let core = pin.then(|| cores.get(id).copied()).flatten();
        let handles_tx = handles_tx.clone();
        let thread = std::thread::Builder::new()
            .name(format!("parley-shard-{id}"))
            .spawn(move || {
                if let Some(core) = core {
                    core_affinity::set_for_current(core);
                }
                run_shard(Shard::new(id, node, shutdown), io, handles_tx);
            })
            .context("spawn shard thread")?;
        threads.push(thread);
    }
    drop(handles_tx);
    let mut handles = Vec::with_capacity(shards);
    for _ in 0..shards {
        let (id, h) = handles_rx
            .recv_timeout(Duration::from_secs(10))
            .context("a shard runtime did not start")?;
        handles.push((id, h));
    }
    handles.sort_by_key(|(id, _)| *id);
    Ok((threads, handles.into_iter().map(|(_, h)| h).collect()))
}

/// Hands incoming QUIC connections to the shards in turn.
async fn accept_quic(
    endpoint: quinn::Endpoint,
    node: Arc<Node>,
    shards: Vec<mpsc::Sender<(quinn::Incoming, Admitted)>>,
) {
    let next = AtomicUsize::new(0);
    while let Some(incoming) = endpoint.accept().await {
        if node.lifecycle.is_shutting_down() {
            incoming.refuse();
            continue;
        }
        let Ok(admitted) = node.admission.admit(incoming.remote_address().ip()) else {
            incoming.refuse();
            continue;
        };
        let i = next.fetch_add(1, Ordering::Relaxed) % shards.len();
        if let Err(e) = shards[i].try_send((incoming, admitted)) {
            // That shard is not keeping up: refuse rather than queue without bound.
            let (incoming, _) = match e {
                mpsc::error::TrySendError::Full(x) | mpsc::error::TrySendError::Closed(x) => x,
            };
            incoming.refuse();
        }
    }
}

fn run_shard(
    shard: Shard,
    io: ShardIo,
    handles: std::sync::mpsc::SyncSender<(usize, tokio::runtime::Handle)>,
) {
    // Storage reads run on the blocking pool; a few threads per shard serve them. Tokio's
    // default of 512 let a burst of connects start hundreds of threads, each keeping a stack
    // and allocator caches resident.
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .max_blocking_threads(8)
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "shard runtime failed to start");
            return;
        }
    };
    let _ = handles.send((shard.id, rt.handle().clone()));
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, shard_main(Rc::new(shard), io));
}

async fn shard_main(shard: Rc<Shard>, io: ShardIo) {
    let ShardIo {
        listener,
        inbox,
        mut quic,
    } = io;
    tokio::task::spawn_local(shard.clone().run_inbox(inbox));
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(shard = shard.id, error = %e, "listener failed");
            return;
        }
    };
    let mut shutdown = shard.shutdown.clone();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    // Over a limit: closed at once, before it costs anything more.
                    if let Ok(admitted) = shard.node.admission.admit(peer.ip()) {
                        let serve = crate::transport::http::serve_connection(shard.clone(), stream, admitted);
                        tokio::task::spawn_local(serve);
                    }
                }
                Err(e) => {
                    // Out of file descriptors or similar: back off instead of spinning.
                    tracing::warn!(shard = shard.id, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some((incoming, admitted)) = quic.recv() => {
                tokio::task::spawn_local(quic::transport::serve(shard.clone(), incoming, admitted));
            }
            _ = shutdown.wait_for(|s| *s) => break,
        }
    }
    drop(listener);
    let deadline = tokio::time::Instant::now() + shard.node.settings.shutdown_grace;
    while shard.connections.get() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tracing::debug!(
        shard = shard.id,
        left = shard.connections.get(),
        "shard stopped"
    );
}
