//! Starting and stopping a node: one TCP listener per shard on the same port (SO_REUSEPORT, so
//! the kernel spreads connections), one thread per shard, one QUIC endpoint whose work is
//! spread over the shards, and a shutdown signal passed down.

use std::net::{SocketAddr, TcpListener as StdListener, UdpSocket};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Context;
use parley_storage::Storage;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::sync::{mpsc, watch};

use crate::auth::Authenticator;
use crate::cluster::Cluster;
use crate::config::Config;
use crate::hub::{Delivery, Hub};
use crate::metered::Metered;
use crate::metrics::Metrics;
use crate::node::Node;
use crate::quic;
use crate::shard::Shard;

/// QUIC connections waiting for their shard to take them; beyond this they are refused.
const QUIC_BACKLOG: usize = 1024;

/// A running node.
pub struct Running {
    addr: SocketAddr,
    quic_addr: SocketAddr,
    node: Arc<Node>,
    endpoint: quinn::Endpoint,
    shutdown: watch::Sender<bool>,
    threads: Vec<JoinHandle<()>>,
}

impl Running {
    /// Where HTTP / WebSocket listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Where QUIC listens (UDP).
    pub fn quic_addr(&self) -> SocketAddr {
        self.quic_addr
    }

    pub fn node(&self) -> &Arc<Node> {
        &self.node
    }

    /// Stops accepting, tells every session to reconnect elsewhere, waits for them to drain
    /// (up to the configured grace) and for the shard threads to end.
    pub fn shutdown(self, services: &tokio::runtime::Handle) {
        self.node.begin_shutdown();
        let _ = self.shutdown.send(true);
        for t in self.threads {
            let _ = t.join();
        }
        self.endpoint.close(0u8.into(), b"shutdown");
        if let Some(cluster) = &self.node.cluster {
            services.block_on(cluster.leave());
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

/// What a shard thread needs besides its `Shard`.
struct ShardIo {
    listener: StdListener,
    inbox: mpsc::Receiver<Delivery>,
    quic: mpsc::Receiver<quinn::Incoming>,
}

/// Starts `config.shards` shards serving on `config.bind:config.port` (port 0: any free port,
/// the same for every shard) and the QUIC endpoint on the same port number over UDP.
pub fn start(
    config: Config,
    storage: Arc<dyn Storage>,
    auth: Authenticator,
    tls: &quic::tls::TlsMaterial,
    services: &tokio::runtime::Handle,
) -> anyhow::Result<Running> {
    let shards = config.shards.max(1);
    let first = bind(SocketAddr::new(config.bind, config.port))
        .with_context(|| format!("cannot listen on {}:{}", config.bind, config.port))?;
    let addr = first.local_addr()?;
    let quic_addr = SocketAddr::new(config.bind, config.quic_port.unwrap_or(addr.port()));
    let udp = UdpSocket::bind(quic_addr).with_context(|| format!("cannot bind UDP {quic_addr}"))?;
    let quic_addr = udp.local_addr()?;
    let server_config = quic::tls::server_config(tls, config.session.idle_timeout)?;
    let mut listeners = vec![first];
    for _ in 1..shards {
        listeners.push(bind(addr).with_context(|| format!("cannot add a listener on {addr}"))?);
    }
    let metrics = Arc::new(Metrics::new(shards));
    // The cluster link lives on the services runtime (like the storage clients).
    let cluster = match config.cluster() {
        Some(c) => Some(
            services
                .block_on(Cluster::connect(c, metrics.clone()))
                .context("connect to Redis")?,
        ),
        None => None,
    };
    let storage: Arc<dyn Storage> = Arc::new(Metered::new(storage, metrics.clone()));
    let (inboxes, inbox_rx): (Vec<_>, Vec<_>) = (0..shards)
        .map(|_| mpsc::channel::<Delivery>(config.shard_inbox))
        .unzip();
    let (quic_tx, quic_rx): (Vec<_>, Vec<_>) = (0..shards)
        .map(|_| mpsc::channel::<quinn::Incoming>(QUIC_BACKLOG))
        .unzip();
    let hub = Arc::new(Hub::new(
        inboxes,
        storage.clone(),
        config.user_messages_per_sec,
        config.user_message_burst,
    ));
    let node = Arc::new(Node::new(
        Arc::new(config),
        Arc::new(auth),
        hub,
        storage,
        metrics,
        cluster.clone(),
    ));
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let cores = core_affinity::get_core_ids().unwrap_or_default();
    let pin = shards <= cores.len();
    let (handles_tx, handles_rx) = std::sync::mpsc::channel();
    let mut threads = Vec::with_capacity(shards);
    for (id, ((listener, inbox), quic)) in
        listeners.into_iter().zip(inbox_rx).zip(quic_rx).enumerate()
    {
        let node = node.clone();
        let shutdown = shutdown_rx.clone();
        let core = pin.then(|| cores.get(id).copied()).flatten();
        let handles_tx = handles_tx.clone();
        let io = ShardIo {
            listener,
            inbox,
            quic,
        };
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
    let handles: Vec<tokio::runtime::Handle> = handles.into_iter().map(|(_, h)| h).collect();

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
    if let Some(cluster) = &cluster {
        cluster.start(services, node.clone());
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

/// Hands incoming QUIC connections to the shards in turn.
async fn accept_quic(
    endpoint: quinn::Endpoint,
    node: Arc<Node>,
    shards: Vec<mpsc::Sender<quinn::Incoming>>,
) {
    let next = AtomicUsize::new(0);
    while let Some(incoming) = endpoint.accept().await {
        if node.is_shutting_down() {
            incoming.refuse();
            continue;
        }
        let i = next.fetch_add(1, Ordering::Relaxed) % shards.len();
        if let Err(e) = shards[i].try_send(incoming) {
            // That shard is not keeping up: refuse rather than queue without bound.
            let incoming = match e {
                mpsc::error::TrySendError::Full(x) | mpsc::error::TrySendError::Closed(x) => x,
            };
            incoming.refuse();
        }
    }
}

fn run_shard(
    shard: Shard,
    io: ShardIo,
    handles: std::sync::mpsc::Sender<(usize, tokio::runtime::Handle)>,
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
                Ok((stream, _)) => {
                    tokio::task::spawn_local(crate::http::serve_connection(shard.clone(), stream));
                }
                Err(e) => {
                    // Out of file descriptors or similar: back off instead of spinning.
                    tracing::warn!(shard = shard.id, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(incoming) = quic.recv() => {
                tokio::task::spawn_local(quic::transport::serve(shard.clone(), incoming));
            }
            _ = shutdown.wait_for(|s| *s) => break,
        }
    }
    drop(listener);
    let deadline = tokio::time::Instant::now() + shard.node.config.shutdown_grace;
    while shard.connections.get() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tracing::debug!(
        shard = shard.id,
        left = shard.connections.get(),
        "shard stopped"
    );
}
