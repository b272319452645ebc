//! Drives one session: feeds what the transport read into the session core, runs the commands
//! it asks for (storage, fan-out) and queues frames for the transport's writer. Transports
//! implement [`FrameSource`] and drain the [`Outbox`]; they never see the protocol.

mod executor;
mod replay;

use std::future::Future;
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use parley_proto::codec::server::encode_server;
use parley_proto::{ErrorCode, ServerBody, ServerFrame};

use crate::clock::Now;
use crate::outbox::{Closing, Outbox};
use crate::session::{Origin, Session};
use crate::shard::Shard;
use executor::Executor;

/// What a transport read.
#[derive(Debug)]
pub(crate) enum Incoming {
    /// One whole protocol frame, and how it came.
    Frame(Bytes, Origin),
    /// A frame over the size limit; the transport cannot continue reading.
    Oversized,
    /// The peer closed, or the connection broke.
    Closed,
}

/// The read side of a transport.
pub(crate) trait FrameSource {
    /// The next frame. Need not be cancel-safe: the driver never drops it mid-read.
    fn next(&mut self) -> impl Future<Output = Incoming>;
}

/// Owns the source while reading so the driver can keep one read in flight across `select!`
/// iterations (replacing it with `Pin::set`) instead of cancelling it.
async fn read_one<S: FrameSource>(mut source: S) -> (S, Incoming) {
    let incoming = source.next().await;
    (source, incoming)
}

/// The frame a writer sends just before closing, when the queue that would have carried it was
/// discarded (slow consumer).
pub(crate) fn final_frame(closing: &Closing) -> Option<Bytes> {
    (closing.error == Some(ErrorCode::SlowConsumer)).then(|| {
        encode_server(&ServerFrame::push(ServerBody::Error {
            code: ErrorCode::SlowConsumer.code(),
            message: "too slow to receive; reconnect and resume".into(),
            fatal: true,
        }))
    })
}

/// How long a closed session keeps reading for the client's side of the close.
const LINGER: Duration = Duration::from_secs(2);

/// Runs a session over `source` until it ends; frames go to `outbox`, which the transport's
/// writer drains.
pub(crate) async fn drive<S: FrameSource>(shard: Rc<Shard>, source: S, outbox: Rc<Outbox>) {
    let node = shard.node.clone();
    let id = shard.new_session_id();
    let mut session = Session::new(id, node.limits.clone(), node.auth.clone(), Now::get());
    let mut exec = Executor::new(shard, outbox, id);
    let mut out = Vec::new();
    let mut shutdown = exec.shard.shutdown.clone();
    let mut resync = node.lifecycle.resync_rx();
    let mut shutdown_seen = *shutdown.borrow();
    if shutdown_seen {
        session.handle_shutdown(Now::get(), &mut out);
    }
    let mut read = std::pin::pin!(read_one(source));
    let mut peer_closed = false;
    // `run` is boxed too: it holds whole frames across awaits, and an idle session should
    // not carry that space (the session future: 2.6 KB with it inline, 1.2 KB without).
    while Box::pin(exec.run(&mut out)).await {
        let deadline = session
            .next_deadline()
            .unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600));
        tokio::select! {
            biased;
            _ = exec.outbox.closed() => break,
            _ = shutdown.changed(), if !shutdown_seen => {
                shutdown_seen = true;
                session.handle_shutdown(Now::get(), &mut out);
            }
            _ = resync.changed() => session.handle_resync(&mut out),
            (source, incoming) = &mut read => {
                match incoming {
                    Incoming::Frame(bytes, origin) => {
                        let now = Now::get();
                        if let Some(kind) = session.handle_frame_from(now, &bytes, origin, &mut out) {
                            node.metrics.shard(exec.shard.id).frame_in(kind);
                        }
                    }
                    Incoming::Oversized => session.handle_oversized(&mut out),
                    Incoming::Closed => {
                        peer_closed = true;
                        break;
                    }
                }
                read.set(read_one(source));
            }
            _ = tokio::time::sleep_until(deadline) => session.handle_timeout(Now::get(), &mut out),
        }
    }
    if !peer_closed {
        // The server closed the session: read (and drop) what still arrives until the client
        // closes too, or for LINGER. Dropping the socket with unread input would reset the
        // connection, and a reset can discard what the client has not read yet: the Goaway
        // and the close frame.
        let _ = tokio::time::timeout(LINGER, async {
            loop {
                let (source, incoming) = read.as_mut().await;
                if !matches!(incoming, Incoming::Frame(..)) {
                    return;
                }
                read.set(read_one(source));
            }
        })
        .await;
    }
    out.clear();
    session.handle_transport_closed(&mut out);
    // Boxed for the same reason as commands: rare, large futures out of the idle state.
    Box::pin(async {
        exec.run_after_close(&mut out).await;
        exec.end().await;
    })
    .await;
}
