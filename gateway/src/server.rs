//! Starting and stopping a node: one listener per shard on the same port (SO_REUSEPORT, so the
//! kernel spreads connections), one thread per shard, and a shutdown signal passed down.

use std::net::{SocketAddr, TcpListener as StdListener};
use std::rc::Rc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Context;
use parley_storage::Storage;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::sync::{mpsc, watch};

use crate::auth::Authenticator;
use crate::config::Config;
use crate::hub::{Delivery, Hub};
use crate::metered::Metered;
use crate::metrics::Metrics;
use crate::node::Node;
use crate::shard::Shard;

/// A running node.
pub struct Running {
    addr: SocketAddr,
    node: Arc<Node>,
    shutdown: watch::Sender<bool>,
    threads: Vec<JoinHandle<()>>,
}

impl Running {
    /// Where HTTP / WebSocket listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn node(&self) -> &Arc<Node> {
        &self.node
    }

    /// Stops accepting, tells every session to reconnect elsewhere, waits for them to drain
    /// (up to the configured grace) and for the shard threads to end.
    pub fn shutdown(self) {
        self.node.begin_shutdown();
        let _ = self.shutdown.send(true);
        for t in self.threads {
            let _ = t.join();
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

/// Starts `config.shards` shards serving on `config.bind:config.port` (port 0: any free port,
/// the same for every shard).
pub fn start(
    config: Config,
    storage: Arc<dyn Storage>,
    auth: Authenticator,
) -> anyhow::Result<Running> {
    let shards = config.shards.max(1);
    let first = bind(SocketAddr::new(config.bind, config.port))
        .with_context(|| format!("cannot listen on {}:{}", config.bind, config.port))?;
    let addr = first.local_addr()?;
    let mut listeners = vec![first];
    for _ in 1..shards {
        listeners.push(bind(addr).with_context(|| format!("cannot add a listener on {addr}"))?);
    }
    let metrics = Arc::new(Metrics::new(shards));
    let storage: Arc<dyn Storage> = Arc::new(Metered::new(storage, metrics.clone()));
    let (inboxes, receivers): (Vec<_>, Vec<_>) = (0..shards)
        .map(|_| mpsc::channel::<Delivery>(config.shard_inbox))
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
    ));
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let cores = core_affinity::get_core_ids().unwrap_or_default();
    let pin = shards <= cores.len();
    let mut threads = Vec::with_capacity(shards);
    for (id, (listener, inbox)) in listeners.into_iter().zip(receivers).enumerate() {
        let node = node.clone();
        let shutdown = shutdown_rx.clone();
        let core = pin.then(|| cores.get(id).copied()).flatten();
        let thread = std::thread::Builder::new()
            .name(format!("parley-shard-{id}"))
            .spawn(move || {
                if let Some(core) = core {
                    core_affinity::set_for_current(core);
                }
                run_shard(Shard::new(id, node, shutdown), listener, inbox);
            })
            .context("spawn shard thread")?;
        threads.push(thread);
    }
    Ok(Running {
        addr,
        node,
        shutdown: shutdown_tx,
        threads,
    })
}

fn run_shard(shard: Shard, listener: StdListener, inbox: mpsc::Receiver<Delivery>) {
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
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, shard_main(Rc::new(shard), listener, inbox));
}

async fn shard_main(shard: Rc<Shard>, listener: StdListener, inbox: mpsc::Receiver<Delivery>) {
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
