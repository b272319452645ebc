//! Sessions over QUIC: the connection's one bidirectional stream carries length-prefixed
//! frames to the session core; datagrams carry typing indicators both ways. Like the WebSocket
//! transport it only moves bytes.

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use bytes::BytesMut;
use parley_proto::framing::{Parsed, parse_frame, put_frame};
use quinn::{Connection, RecvStream, SendStream, VarInt};

use crate::driver::{self, FrameSource, Incoming};
use crate::metrics::{ConnectionGauge, Transport};
use crate::outbox::{Item, Next, Outbox};
use crate::ratelimit::TokenBucket;
use crate::session::Origin;
use crate::shard::ConnGuard;
use crate::shard::Shard;
use crate::state::admission::Admitted;
use parley_proto::ErrorCode;

/// Datagrams accepted per second per connection (typing needs a few); the rest are dropped
/// before they are decoded.
const DATAGRAMS_PER_SEC: f64 = 20.0;
const DATAGRAM_BURST: u32 = 40;
/// Largest stream chunk taken at once.
const CHUNK: usize = 64 * 1024;

/// Reads frames from the stream and datagrams from the connection.
struct QuicSource {
    connection: Connection,
    recv: RecvStream,
    buf: BytesMut,
    max_frame: usize,
    /// The stream was opened in 0-RTT and the handshake is not confirmed yet.
    early: Rc<Cell<bool>>,
    datagrams: TokenBucket,
    outbox: Rc<Outbox>,
}

impl QuicSource {
    fn parse(&mut self) -> Option<Incoming> {
        let frame = match parse_frame(&mut self.buf, self.max_frame) {
            Parsed::Frame(f) => f,
            Parsed::NeedMore => return None,
            Parsed::TooLarge(_) => return Some(Incoming::Oversized),
        };
        if self.buf.is_empty() {
            // Drained: an idle connection keeps no read buffer.
            self.buf = BytesMut::new();
        }
        let origin = if self.early.get() {
            Origin::Early
        } else {
            Origin::Stream
        };
        Some(Incoming::Frame(frame, origin))
    }
}

impl FrameSource for QuicSource {
    async fn next(&mut self) -> Incoming {
        loop {
            if let Some(incoming) = self.parse() {
                return incoming;
            }
            tokio::select! {
                chunk = self.recv.read_chunk(CHUNK, true) => match chunk {
                    Ok(Some(c)) => self.buf.extend_from_slice(&c.bytes),
                    Ok(None) => {
                        self.outbox.close_normal(0);
                        return Incoming::Closed;
                    }
                    Err(_) => {
                        self.outbox.close_normal(0);
                        return Incoming::Closed;
                    }
                },
                d = self.connection.read_datagram() => match d {
                    Ok(bytes) => {
                        if self.datagrams.try_take(tokio::time::Instant::now()) {
                            return Incoming::Frame(bytes, Origin::Datagram);
                        }
                    }
                    Err(_) => {
                        self.outbox.close_normal(0);
                        return Incoming::Closed;
                    }
                },
            }
        }
    }
}

/// Serves one incoming QUIC connection on this shard until it ends.
pub(crate) async fn serve(shard: Rc<Shard>, incoming: quinn::Incoming, admitted: Admitted) {
    let guard = ConnGuard::new(&shard, Rc::new(admitted));
    let Ok(connecting) = incoming.accept() else {
        return;
    };
    // A server can always take 0-RTT data (quinn returns Err only on clients without a
    // ticket); `confirmed` resolves once the handshake is done.
    let Ok((connection, confirmed)) = connecting.into_0rtt() else {
        return;
    };
    let Some((send, recv)) = accept_stream(&shard, &connection).await else {
        return;
    };
    let early = Rc::new(Cell::new(recv.is_0rtt()));
    if early.get() {
        let flag = early.clone();
        tokio::task::spawn_local(async move {
            confirmed.await;
            flag.set(false);
        });
    }
    run(shard, connection, send, recv, early, guard).await;
}

/// The client's session stream, within the hello timeout.
async fn accept_stream(shard: &Shard, c: &Connection) -> Option<(SendStream, RecvStream)> {
    let wait = shard.node.limits.hello_timeout;
    match tokio::time::timeout(wait, c.accept_bi()).await {
        Ok(Ok(pair)) => Some(pair),
        Ok(Err(_)) => None,
        Err(_) => {
            let code = ErrorCode::HelloTimeout;
            c.close(
                VarInt::from_u32(u32::from(code.close_code())),
                code.name().as_bytes(),
            );
            None
        }
    }
}

async fn run(
    shard: Rc<Shard>,
    connection: Connection,
    send: SendStream,
    recv: RecvStream,
    early: Rc<Cell<bool>>,
    guard: ConnGuard,
) {
    let cfg = &shard.node.settings;
    let outbox = Rc::new(Outbox::new(
        cfg.outbox_frames,
        cfg.outbox_bytes,
        shard.node.outbox_budget.clone(),
    ));
    let gauge = ConnectionGauge::open(&shard.node.metrics, shard.id, Transport::Quic);
    let writer = tokio::task::spawn_local(write_loop(
        connection.clone(),
        send,
        outbox.clone(),
        cfg.write_timeout,
    ));
    let source = QuicSource {
        connection,
        recv,
        buf: BytesMut::new(),
        max_frame: shard.node.limits.max_frame_bytes,
        early,
        datagrams: TokenBucket::new(
            DATAGRAMS_PER_SEC,
            DATAGRAM_BURST,
            tokio::time::Instant::now(),
        ),
        outbox: outbox.clone(),
    };
    driver::drive(shard, source, outbox).await;
    let _ = writer.await;
    drop((gauge, guard));
}

/// Drains the outbox onto the stream (one write per batch) and datagrams; closes the
/// connection with the session's close code at the end.
async fn write_loop(
    connection: Connection,
    mut send: SendStream,
    outbox: Rc<Outbox>,
    write_timeout: Duration,
) {
    let mut items = Vec::new();
    loop {
        let next = outbox.next(&mut items).await;
        let mut buf = Vec::new();
        for item in items.drain(..) {
            match item {
                Item::Frame(b) => put_frame(&mut buf, &b),
                Item::Datagram(b) => {
                    let fits = connection
                        .max_datagram_size()
                        .is_some_and(|max| b.len() <= max);
                    // Typing may be lost: the 5 s expiry on the server and a client-side
                    // timeout cover it. Without datagram support it goes on the stream.
                    if !fits || connection.send_datagram(b.clone()).is_err() {
                        put_frame(&mut buf, &b);
                    }
                }
                // WebSocket-only items.
                Item::Text(_) | Item::Pong(_) => {}
            }
        }
        let closing = match next {
            Next::Items => None,
            Next::Close(c) => {
                if let Some(f) = driver::final_frame(&c) {
                    put_frame(&mut buf, &f);
                }
                Some(c)
            }
        };
        if !buf.is_empty() {
            match tokio::time::timeout(write_timeout, send.write_all(&buf)).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => {
                    outbox.close_normal(0);
                    return;
                }
                Err(_) => {
                    outbox.close(ErrorCode::SlowConsumer);
                    connection.close(
                        VarInt::from_u32(u32::from(ErrorCode::SlowConsumer.close_code())),
                        b"slow_consumer",
                    );
                    return;
                }
            }
        }
        if let Some(c) = closing {
            // Let the last frames reach the client before the connection closes.
            let _ = send.finish();
            let _ = tokio::time::timeout(Duration::from_secs(2), send.stopped()).await;
            let code = if c.error.is_some() { c.close_code } else { 0 };
            let reason = c.error.map_or("", ErrorCode::name);
            connection.close(VarInt::from_u32(u32::from(code)), reason.as_bytes());
            return;
        }
    }
}
