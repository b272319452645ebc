//! A quinn runtime that spreads the endpoint's tasks over the shard runtimes.

use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use quinn::{AsyncTimer, AsyncUdpSocket, Runtime, TokioRuntime};
use tokio::runtime::Handle;

/// Spawns quinn's tasks (the endpoint driver and every connection's driver) round-robin onto
/// the shards' runtimes; timers and the UDP socket are Tokio's.
pub(crate) struct ShardedRuntime {
    shards: Vec<Handle>,
    next: AtomicUsize,
}

impl ShardedRuntime {
    pub(crate) fn new(shards: Vec<Handle>) -> Self {
        Self {
            shards,
            next: AtomicUsize::new(0),
        }
    }
}

impl fmt::Debug for ShardedRuntime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShardedRuntime")
            .field("shards", &self.shards.len())
            .finish()
    }
}

impl Runtime for ShardedRuntime {
    fn new_timer(&self, t: Instant) -> Pin<Box<dyn AsyncTimer>> {
        TokioRuntime.new_timer(t)
    }

    fn spawn(&self, future: Pin<Box<dyn Future<Output = ()> + Send>>) {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.shards.len().max(1);
        match self.shards.get(i) {
            Some(h) => {
                h.spawn(future);
            }
            None => {
                tokio::spawn(future);
            }
        }
    }

    fn wrap_udp_socket(&self, sock: std::net::UdpSocket) -> io::Result<Arc<dyn AsyncUdpSocket>> {
        TokioRuntime.wrap_udp_socket(sock)
    }

    fn now(&self) -> Instant {
        TokioRuntime.now()
    }
}
