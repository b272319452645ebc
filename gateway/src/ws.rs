//! The WebSocket transport (fastwebsockets over a hyper upgrade): it only moves bytes. One
//! binary message is one protocol frame. Reading assembles fragments under the same size limit
//! as whole messages; writing batches everything queued into one socket write.

use std::io::Cursor;
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use fastwebsockets::{
    CloseCode, Frame, OpCode, Payload, Role, WebSocket, WebSocketError, WebSocketRead,
};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, Chain};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

use crate::conn::{self, FrameSource, Incoming};
use crate::errors::ErrorCode;
use crate::metrics::Transport;
use crate::outbox::{Item, Next, Outbox};
use crate::shard::Shard;

type Reader = Chain<Cursor<Bytes>, OwnedReadHalf>;

/// A whole WebSocket message.
#[derive(Debug)]
pub enum Message {
    Binary(Bytes),
    Text(Bytes),
}

/// Why reading stopped.
#[derive(Debug, PartialEq, Eq)]
pub enum End {
    /// The peer closed (its close frame was answered) or the connection broke.
    Closed,
    /// A message over the size limit.
    Oversized,
}

/// The read half: frames → whole messages, control frames answered through the outbox.
pub struct WsSource<R> {
    read: WebSocketRead<R>,
    outbox: Rc<Outbox>,
    max_message: usize,
    /// A fragmented message being assembled: opcode, bytes, and how far its UTF-8 is checked.
    partial: Option<(OpCode, Vec<u8>, usize)>,
}

impl<R: AsyncRead + Unpin> WsSource<R> {
    pub fn new(mut read: WebSocketRead<R>, outbox: Rc<Outbox>, max_message: usize) -> Self {
        // Close and ping are answered here, through the outbox, so one writer owns the socket.
        read.set_auto_close(false);
        read.set_auto_pong(false);
        // fastwebsockets refuses frames of at least this size before reading their payload.
        read.set_max_message_size(max_message + 1);
        Self {
            read,
            outbox,
            max_message,
            partial: None,
        }
    }

    /// The next whole message; control frames are handled on the way.
    pub async fn next_message(&mut self) -> Result<Message, End> {
        loop {
            let (fin, opcode, payload) = match self
                .read
                .read_frame(&mut |_| async { Ok::<(), std::convert::Infallible>(()) })
                .await
            {
                Ok(mut f) => {
                    // RFC 6455 §5.1: a server must close on an unmasked client frame.
                    // fastwebsockets does not check it and keeps the mask private, but its
                    // header formatter writes the mask bit.
                    let mut head = [0u8; 16];
                    f.fmt_head(&mut head);
                    if head[1] & 0x80 == 0 {
                        return Err(self.protocol_error(1002));
                    }
                    (f.fin, f.opcode, into_bytes(f.payload))
                }
                Err(e) => return Err(self.fail(e)),
            };
            match opcode {
                OpCode::Close => return Err(self.peer_closed(&payload)),
                OpCode::Ping => {
                    // fastwebsockets already refused pings over 125 bytes.
                    self.outbox.push_pong(payload);
                }
                OpCode::Pong => {
                    if payload.len() > 125 {
                        return Err(self.protocol_error(1002));
                    }
                }
                OpCode::Text | OpCode::Binary => {
                    if self.partial.is_some() {
                        return Err(self.protocol_error(1002));
                    }
                    if fin {
                        // fastwebsockets checked the UTF-8 of whole text frames.
                        return Ok(match opcode {
                            OpCode::Text => Message::Text(payload),
                            _ => Message::Binary(payload),
                        });
                    }
                    self.partial = Some((opcode, payload.to_vec(), 0));
                    if let Some(end) = self.check_partial(false) {
                        return Err(end);
                    }
                }
                OpCode::Continuation => {
                    let Some((_, buf, _)) = &mut self.partial else {
                        return Err(self.protocol_error(1002));
                    };
                    if buf.len() + payload.len() > self.max_message {
                        self.partial = None;
                        return Err(End::Oversized);
                    }
                    buf.extend_from_slice(&payload);
                    if let Some(end) = self.check_partial(fin) {
                        return Err(end);
                    }
                    if fin && let Some((opcode, buf, _)) = self.partial.take() {
                        let data = Bytes::from(buf);
                        return Ok(match opcode {
                            OpCode::Text => Message::Text(data),
                            _ => Message::Binary(data),
                        });
                    }
                }
            }
        }
    }

    /// Validates the UTF-8 of a text message being assembled as far as it goes, so invalid
    /// text fails at the fragment that breaks it.
    fn check_partial(&mut self, fin: bool) -> Option<End> {
        let Some((OpCode::Text, buf, checked)) = &mut self.partial else {
            return None;
        };
        match std::str::from_utf8(&buf[*checked..]) {
            Ok(_) => *checked = buf.len(),
            Err(e) if e.error_len().is_none() && !fin => *checked += e.valid_up_to(),
            Err(_) => {
                self.partial = None;
                return Some(self.protocol_error(1007));
            }
        }
        None
    }

    fn peer_closed(&mut self, payload: &[u8]) -> End {
        let code = match payload.len() {
            0 => 1000,
            1 => return self.protocol_error(1002),
            _ => {
                let code = u16::from_be_bytes([payload[0], payload[1]]);
                if !CloseCode::from(code).is_allowed() || payload.len() > 125 {
                    return self.protocol_error(1002);
                }
                if std::str::from_utf8(&payload[2..]).is_err() {
                    return self.protocol_error(1007);
                }
                code
            }
        };
        self.outbox.close_normal(code);
        End::Closed
    }

    fn protocol_error(&mut self, code: u16) -> End {
        self.outbox.close_normal(code);
        End::Closed
    }

    fn fail(&mut self, e: WebSocketError) -> End {
        match e {
            WebSocketError::FrameTooLarge => End::Oversized,
            WebSocketError::InvalidUTF8 => self.protocol_error(1007),
            WebSocketError::UnexpectedEOF
            | WebSocketError::IoError(_)
            | WebSocketError::ConnectionClosed => {
                self.outbox.close_normal(1006);
                End::Closed
            }
            _ => self.protocol_error(1002),
        }
    }
}

impl<R: AsyncRead + Unpin> FrameSource for WsSource<R> {
    async fn next(&mut self) -> Incoming {
        match self.next_message().await {
            // A text message is not a protocol frame; the session reports it as malformed.
            Ok(Message::Binary(b) | Message::Text(b)) => Incoming::Frame(b),
            Err(End::Oversized) => Incoming::Oversized,
            Err(End::Closed) => Incoming::Closed,
        }
    }
}

/// The payload without a copy when fastwebsockets already owns it.
fn into_bytes(p: Payload<'_>) -> Bytes {
    match p {
        Payload::Bytes(b) => b.freeze(),
        Payload::Owned(v) => Bytes::from(v),
        other => Bytes::copy_from_slice(&other),
    }
}

/// Appends one unmasked server frame to `buf`.
fn put_frame(buf: &mut Vec<u8>, opcode: OpCode, payload: &[u8]) {
    let mut head = [0u8; 14];
    let n = Frame::new(true, opcode, None, Payload::Borrowed(payload)).fmt_head(&mut head);
    buf.extend_from_slice(&head[..n]);
    buf.extend_from_slice(payload);
}

/// The write half: drains the outbox, one socket write per batch, until the session closes.
pub async fn write_loop(mut w: OwnedWriteHalf, outbox: Rc<Outbox>, write_timeout: Duration) {
    let mut items = Vec::new();
    loop {
        let next = outbox.next(&mut items).await;
        let size: usize = items
            .iter()
            .map(|i| match i {
                Item::Frame(b) | Item::Text(b) | Item::Pong(b) => b.len() + 10,
            })
            .sum();
        let mut buf = Vec::with_capacity(size + 256);
        for item in items.drain(..) {
            match item {
                Item::Frame(b) => put_frame(&mut buf, OpCode::Binary, &b),
                Item::Text(b) => put_frame(&mut buf, OpCode::Text, &b),
                Item::Pong(b) => put_frame(&mut buf, OpCode::Pong, &b),
            }
        }
        let closing = match next {
            Next::Items => None,
            Next::Close(c) => {
                if let Some(f) = conn::final_frame(&c) {
                    put_frame(&mut buf, OpCode::Binary, &f);
                }
                if c.close_code != 1006 {
                    let reason = c.error.map_or("", ErrorCode::name).as_bytes();
                    let mut payload = c.close_code.to_be_bytes().to_vec();
                    payload.extend_from_slice(&reason[..reason.len().min(100)]);
                    put_frame(&mut buf, OpCode::Close, &payload);
                }
                Some(c)
            }
        };
        if !buf.is_empty() {
            match tokio::time::timeout(write_timeout, w.write_all(&buf)).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => {
                    outbox.close_normal(1006);
                    return;
                }
                Err(_) => {
                    // The client stopped reading: it is a slow consumer.
                    outbox.close(ErrorCode::SlowConsumer);
                    return;
                }
            }
        }
        if closing.is_some() {
            let _ = tokio::time::timeout(write_timeout, w.shutdown()).await;
            return;
        }
    }
}

/// Splits an upgraded connection into the source and the writer task, sharing one outbox.
fn split(
    ws: WebSocket<TokioIo<Upgraded>>,
    shard: &Shard,
) -> Option<(WsSource<Reader>, OwnedWriteHalf, Rc<Outbox>)> {
    let upgraded = ws.into_inner().into_inner();
    // The upgraded stream is the TcpStream hyper served; take it back to split it without a
    // lock, keeping any bytes hyper already read past the handshake.
    let parts = match upgraded.downcast::<TokioIo<TcpStream>>() {
        Ok(p) => p,
        Err(_) => {
            tracing::error!("websocket: upgraded stream is not a TcpStream");
            return None;
        }
    };
    let (r, w) = parts.io.into_inner().into_split();
    let reader = Cursor::new(parts.read_buf).chain(r);
    let (read, _) = fastwebsockets::after_handshake_split(reader, tokio::io::sink(), Role::Server);
    let cfg = &shard.node.config;
    let outbox = Rc::new(Outbox::new(cfg.outbox_frames, cfg.outbox_bytes));
    let source = WsSource::new(read, outbox.clone(), cfg.session.max_frame_bytes);
    Some((source, w, outbox))
}

/// Runs a protocol session on an upgraded `/ws` connection.
pub async fn serve_session(shard: Rc<Shard>, ws: WebSocket<TokioIo<Upgraded>>) {
    let Some((source, w, outbox)) = split(ws, &shard) else {
        return;
    };
    let metrics = shard.node.metrics.clone();
    let shard_id = shard.id;
    metrics
        .shard(shard_id)
        .connection_opened(Transport::WebSocket);
    let writer = tokio::task::spawn_local(write_loop(
        w,
        outbox.clone(),
        shard.node.config.write_timeout,
    ));
    conn::drive(shard, source, outbox).await;
    let _ = writer.await;
    metrics
        .shard(shard_id)
        .connection_closed(Transport::WebSocket);
}

/// Echoes every message back (the Autobahn suite's target), over exactly the transport and
/// limits `/ws` uses. Served only with `--test-endpoints`.
pub async fn serve_echo(shard: Rc<Shard>, ws: WebSocket<TokioIo<Upgraded>>) {
    let Some((mut source, w, outbox)) = split(ws, &shard) else {
        return;
    };
    let writer = tokio::task::spawn_local(write_loop(
        w,
        outbox.clone(),
        shard.node.config.write_timeout,
    ));
    loop {
        let item = match source.next_message().await {
            Ok(Message::Binary(b)) => Item::Frame(b),
            Ok(Message::Text(b)) => Item::Text(b),
            Err(End::Oversized) => {
                outbox.close(ErrorCode::FrameTooLarge);
                break;
            }
            Err(End::Closed) => break,
        };
        if outbox.push_own(item).await.is_err() {
            break;
        }
    }
    let _ = writer.await;
}
