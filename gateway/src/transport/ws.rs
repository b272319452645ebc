//! The WebSocket transport: it only moves bytes. One binary message is one protocol frame.
//!
//! The upgrade handshake, frame-header formatting, masking and close-code rules come from
//! fastwebsockets; frames are read by our own small reader because fastwebsockets' reader keeps
//! an 8 KiB buffer per connection for its whole life, does not check that client frames are
//! masked (RFC 6455 §5.1) and does not cap a fragmented message's total size. This reader
//! holds no buffer while a connection is idle (a buffer is allocated only once bytes are
//! readable and released when it is drained), refuses unmasked frames, and applies one size
//! limit to frames and to assembled messages. Writing batches everything queued into one
//! socket write.

use std::rc::Rc;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use fastwebsockets::{CloseCode, Frame, OpCode, Payload, WebSocket};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use parley_proto::close;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

use super::deadline::Deadlines;
use crate::driver::{self, FrameSource, Incoming};
use crate::metrics::{ConnectionGauge, Transport};
use crate::outbox::{Item, Next, Outbox};
use crate::session::Origin;
use crate::shard::ConnGuard;
use crate::shard::Shard;
use parley_proto::ErrorCode;

/// Bytes read per readiness event when no frame needs more.
const READ_CHUNK: usize = 4096;

/// A whole WebSocket message.
#[derive(Debug)]
pub(crate) enum Message {
    Binary(Bytes),
    Text(Bytes),
}

/// Why reading stopped.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum End {
    /// The peer closed (its close frame was answered) or the connection broke.
    Closed,
    /// A message over the size limit.
    Oversized,
}

/// Why a frame could not be read.
#[derive(Debug, PartialEq, Eq)]
enum FrameError {
    /// End of stream or an I/O error.
    Closed,
    /// A protocol violation: close with this code.
    Protocol(u16),
    /// A frame over the size limit (refused before its payload is read).
    Oversized,
}

/// One unmasked client frame.
struct RawFrame {
    fin: bool,
    opcode: OpCode,
    payload: Bytes,
}

/// Reads client frames: parses headers, enforces masking and limits, unmasks payloads.
struct FrameReader {
    io: OwnedReadHalf,
    buf: BytesMut,
    max_payload: usize,
}

impl FrameReader {
    async fn next(&mut self) -> Result<RawFrame, FrameError> {
        loop {
            if let Some(frame) = self.parse()? {
                return Ok(frame);
            }
            self.fill().await?;
        }
    }

    /// A whole frame from the buffer, if it holds one.
    fn parse(&mut self) -> Result<Option<RawFrame>, FrameError> {
        let frame = parse_frame(&mut self.buf, self.max_payload)?;
        if frame.is_some() && self.buf.is_empty() {
            // Drained: an idle connection keeps no read buffer.
            self.buf = BytesMut::new();
        }
        Ok(frame)
    }

    /// Waits until the socket is readable, then reads into a buffer allocated only now.
    async fn fill(&mut self) -> Result<(), FrameError> {
        loop {
            self.io.readable().await.map_err(|_| FrameError::Closed)?;
            if self.buf.capacity() - self.buf.len() < READ_CHUNK / 4 {
                self.buf.reserve(READ_CHUNK);
            }
            match self.io.try_read_buf(&mut self.buf) {
                Ok(0) => return Err(FrameError::Closed),
                Ok(_) => return Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if self.buf.is_empty() {
                        self.buf = BytesMut::new();
                    }
                }
                Err(_) => return Err(FrameError::Closed),
            }
        }
    }
}

/// Parses one client frame off the front of `buf` (hyper's `role.rs` way: bytes in, a frame
/// or "need more" out, no I/O): checks the RSV bits, the opcode, masking, control-frame rules
/// and the size limit from the header alone, before any payload is read; unmasks the payload.
fn parse_frame(buf: &mut BytesMut, max_payload: usize) -> Result<Option<RawFrame>, FrameError> {
    let b = &buf[..];
    let [b0, b1, ..] = *b else {
        return Ok(None);
    };
    // No extension is negotiated, so the RSV bits must be zero.
    if b0 & 0x70 != 0 {
        return Err(FrameError::Protocol(close::PROTOCOL_ERROR));
    }
    let fin = b0 & 0x80 != 0;
    let opcode =
        OpCode::try_from(b0 & 0x0f).map_err(|_| FrameError::Protocol(close::PROTOCOL_ERROR))?;
    if b1 & 0x80 == 0 {
        // RFC 6455 §5.1: the server MUST close on an unmasked client frame.
        return Err(FrameError::Protocol(close::PROTOCOL_ERROR));
    }
    let (len, at) = match b1 & 0x7f {
        126 => match b.get(2..4) {
            Some(l) => (u64::from(u16::from_be_bytes([l[0], l[1]])), 4),
            None => return Ok(None),
        },
        127 => match b.get(2..10) {
            Some(l) => {
                let mut n = [0u8; 8];
                n.copy_from_slice(l);
                (u64::from_be_bytes(n), 10)
            }
            None => return Ok(None),
        },
        n => (u64::from(n), 2),
    };
    let control = matches!(opcode, OpCode::Close | OpCode::Ping | OpCode::Pong);
    if control && (!fin || len > 125) {
        return Err(FrameError::Protocol(close::PROTOCOL_ERROR));
    }
    if len > max_payload as u64 {
        return Err(FrameError::Oversized);
    }
    let len = len as usize;
    let header = at + 4;
    if b.len() < header + len {
        buf.reserve(header + len - b.len());
        return Ok(None);
    }
    let mask = [b[at], b[at + 1], b[at + 2], b[at + 3]];
    buf.advance(header);
    let mut payload = buf.split_to(len);
    fastwebsockets::unmask(&mut payload, mask);
    Ok(Some(RawFrame {
        fin,
        opcode,
        payload: payload.freeze(),
    }))
}

/// Every frame in `data`, as the reader would take them off a socket (fuzzing).
#[cfg(feature = "fuzz-internals")]
pub(crate) fn fuzz_frames(data: &[u8]) {
    let mut buf = BytesMut::from(data);
    while let Ok(Some(frame)) = parse_frame(&mut buf, 1 << 16) {
        if frame.opcode == OpCode::Text {
            let _ = std::str::from_utf8(&frame.payload);
        }
        let _ = frame.fin;
    }
}

/// The read half: frames → whole messages, control frames answered through the outbox.
pub(crate) struct WsSource {
    reader: FrameReader,
    outbox: Rc<Outbox>,
    max_message: usize,
    /// A fragmented message being assembled: opcode, bytes, and how far its UTF-8 is checked.
    partial: Option<(OpCode, Vec<u8>, usize)>,
}

impl WsSource {
    fn new(io: OwnedReadHalf, early: Bytes, outbox: Rc<Outbox>, max_message: usize) -> Self {
        Self {
            reader: FrameReader {
                io,
                buf: BytesMut::from(&early[..]),
                max_payload: max_message,
            },
            outbox,
            max_message,
            partial: None,
        }
    }

    /// The next whole message; control frames are handled on the way.
    pub(crate) async fn next_message(&mut self) -> Result<Message, End> {
        loop {
            let RawFrame {
                fin,
                opcode,
                payload,
            } = match self.reader.next().await {
                Ok(f) => f,
                Err(FrameError::Oversized) => return Err(End::Oversized),
                Err(FrameError::Protocol(code)) => return Err(self.protocol_error(code)),
                Err(FrameError::Closed) => {
                    self.outbox.close_normal(close::ABNORMAL);
                    return Err(End::Closed);
                }
            };
            match opcode {
                OpCode::Close => return Err(self.peer_closed(&payload)),
                OpCode::Ping => self.outbox.push_pong(payload),
                OpCode::Pong => {}
                OpCode::Text | OpCode::Binary => {
                    if self.partial.is_some() {
                        return Err(self.protocol_error(close::PROTOCOL_ERROR));
                    }
                    if fin {
                        return Ok(match opcode {
                            OpCode::Text if std::str::from_utf8(&payload).is_err() => {
                                return Err(self.protocol_error(close::INVALID_PAYLOAD));
                            }
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
                        return Err(self.protocol_error(close::PROTOCOL_ERROR));
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
                return Some(self.protocol_error(close::INVALID_PAYLOAD));
            }
        }
        None
    }

    fn peer_closed(&mut self, payload: &[u8]) -> End {
        let code = match payload {
            [] => close::NORMAL,
            [_] => return self.protocol_error(close::PROTOCOL_ERROR),
            [hi, lo, reason @ ..] => {
                let code = u16::from_be_bytes([*hi, *lo]);
                if !CloseCode::from(code).is_allowed() {
                    return self.protocol_error(close::PROTOCOL_ERROR);
                }
                if std::str::from_utf8(reason).is_err() {
                    return self.protocol_error(close::INVALID_PAYLOAD);
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
}

impl FrameSource for WsSource {
    async fn next(&mut self) -> Incoming {
        match self.next_message().await {
            // A text message is not a protocol frame; the session reports it as malformed.
            Ok(Message::Binary(b) | Message::Text(b)) => Incoming::Frame(b, Origin::Stream),
            Err(End::Oversized) => Incoming::Oversized,
            Err(End::Closed) => Incoming::Closed,
        }
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
pub(crate) async fn write_loop(mut w: OwnedWriteHalf, outbox: Rc<Outbox>, write_timeout: Duration) {
    let mut items = Vec::new();
    loop {
        let next = outbox.next(&mut items).await;
        let size: usize = items
            .iter()
            .map(|i| match i {
                Item::Frame(b) | Item::Datagram(b) | Item::Text(b) | Item::Pong(b) => b.len() + 10,
            })
            .sum();
        let mut buf = Vec::with_capacity(size + 256);
        for item in items.drain(..) {
            match item {
                Item::Frame(b) | Item::Datagram(b) => put_frame(&mut buf, OpCode::Binary, &b),
                Item::Text(b) => put_frame(&mut buf, OpCode::Text, &b),
                Item::Pong(b) => put_frame(&mut buf, OpCode::Pong, &b),
            }
        }
        let closing = match next {
            Next::Items => None,
            Next::Close(c) => {
                if let Some(f) = driver::final_frame(&c) {
                    put_frame(&mut buf, OpCode::Binary, &f);
                }
                if c.close_code != close::ABNORMAL {
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
                    outbox.close_normal(close::ABNORMAL);
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

/// Splits an upgraded connection into the source and the writer half, sharing one outbox.
fn split(
    ws: WebSocket<TokioIo<Upgraded>>,
    shard: &Shard,
) -> Option<(WsSource, OwnedWriteHalf, Rc<Outbox>)> {
    let upgraded = ws.into_inner().into_inner();
    // The upgraded stream is the TcpStream hyper served; take it back to split it without a
    // lock, keeping any bytes hyper already read past the handshake.
    let parts = match upgraded.downcast::<TokioIo<Deadlines<TcpStream>>>() {
        Ok(p) => p,
        Err(_) => {
            tracing::error!("websocket: upgraded stream is not a TcpStream");
            return None;
        }
    };
    // The session keeps its own time (idle timeout, write timeout): drop the HTTP deadlines.
    let (r, w) = parts.io.into_inner().into_inner().into_split();
    let cfg = &shard.node.settings;
    let outbox = Rc::new(Outbox::new(
        cfg.outbox_frames,
        cfg.outbox_bytes,
        shard.node.outbox_budget.clone(),
    ));
    // `read_buf` is a slice of hyper's request buffer: copy the (usually empty) rest so that
    // buffer is freed instead of pinned for the connection's life.
    let source = WsSource::new(
        r,
        Bytes::copy_from_slice(&parts.read_buf),
        outbox.clone(),
        shard.node.limits.max_frame_bytes,
    );
    Some((source, w, outbox))
}

/// Starts a protocol session on an upgraded `/ws` connection: a reader/session task and a
/// writer task, both small while idle (1.2 KB and 0.3 KB of future state, measured).
pub(crate) fn start_session(shard: Rc<Shard>, ws: WebSocket<TokioIo<Upgraded>>, guard: ConnGuard) {
    let Some((source, w, outbox)) = split(ws, &shard) else {
        return;
    };
    let gauge = ConnectionGauge::open(&shard.node.metrics, shard.id, Transport::WebSocket);
    let writer = tokio::task::spawn_local(write_loop(
        w,
        outbox.clone(),
        shard.node.settings.write_timeout,
    ));
    tokio::task::spawn_local(async move {
        let _open = (guard, gauge);
        driver::drive(shard, source, outbox).await;
        let _ = writer.await;
    });
}

/// Echoes every message back (the Autobahn suite's target), over exactly the transport and
/// limits `/ws` uses. Served only with `--test-endpoints`.
pub(crate) async fn serve_echo(
    shard: Rc<Shard>,
    ws: WebSocket<TokioIo<Upgraded>>,
    _guard: ConnGuard,
) {
    let Some((mut source, w, outbox)) = split(ws, &shard) else {
        return;
    };
    let writer = tokio::task::spawn_local(write_loop(
        w,
        outbox.clone(),
        shard.node.settings.write_timeout,
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A masked client frame, as a browser sends it.
    fn client_frame(b0: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
        let mut out = vec![b0];
        match payload.len() {
            n @ 0..=125 => out.push(0x80 | n as u8),
            n @ 126..=0xffff => {
                out.push(0x80 | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(0x80 | 127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        out
    }

    fn parse(bytes: &[u8], max: usize) -> Result<Option<RawFrame>, FrameError> {
        parse_frame(&mut BytesMut::from(bytes), max)
    }

    #[test]
    fn rfc6455_examples_parse() {
        // RFC 6455 §5.7: a single-frame masked text message "Hello".
        let hello = b"\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58";
        let f = parse(hello, 1024).expect("valid").expect("whole");
        assert!(f.fin);
        assert_eq!(f.opcode, OpCode::Text);
        assert_eq!(&f.payload[..], b"Hello");
        // A masked ping with a body, and a binary frame with a 16-bit length.
        let ping = client_frame(0x89, b"Hello", [1, 2, 3, 4]);
        let f = parse(&ping, 1024).expect("valid").expect("whole");
        assert_eq!((f.opcode, &f.payload[..]), (OpCode::Ping, &b"Hello"[..]));
        let big = vec![7u8; 300];
        let f = parse(&client_frame(0x82, &big, [9, 8, 7, 6]), 1024)
            .expect("valid")
            .expect("whole");
        assert_eq!(&f.payload[..], &big[..]);
    }

    #[test]
    fn any_prefix_needs_more_and_the_rest_stays_buffered() {
        let mut two = client_frame(0x02, b"first", [1, 1, 1, 1]);
        two.extend(client_frame(0x80, b"second", [2, 2, 2, 2]));
        let one_len = two.len() - client_frame(0x80, b"second", [2, 2, 2, 2]).len();
        for cut in 0..one_len {
            assert!(matches!(parse(&two[..cut], 1024), Ok(None)), "cut {cut}");
        }
        let mut buf = BytesMut::from(&two[..]);
        let a = parse_frame(&mut buf, 1024).expect("ok").expect("first");
        assert_eq!((a.fin, &a.payload[..]), (false, &b"first"[..]));
        let b = parse_frame(&mut buf, 1024).expect("ok").expect("second");
        assert_eq!(
            (b.fin, b.opcode, &b.payload[..]),
            (true, OpCode::Continuation, &b"second"[..])
        );
        assert!(buf.is_empty());
    }

    #[test]
    fn protocol_violations_are_refused_from_the_header() {
        let unmasked = [0x82, 0x03, b'a', b'b', b'c'];
        assert_eq!(
            parse(&unmasked, 1024).err(),
            Some(FrameError::Protocol(1002))
        );
        let rsv = client_frame(0xc2, b"x", [0; 4]);
        assert_eq!(parse(&rsv, 1024).err(), Some(FrameError::Protocol(1002)));
        let bad_opcode = client_frame(0x83, b"x", [0; 4]);
        assert_eq!(
            parse(&bad_opcode, 1024).err(),
            Some(FrameError::Protocol(1002))
        );
        let fragmented_ping = client_frame(0x09, b"x", [0; 4]);
        assert_eq!(
            parse(&fragmented_ping, 1024).err(),
            Some(FrameError::Protocol(1002))
        );
        let long_close = client_frame(0x88, &[0u8; 126], [0; 4]);
        assert_eq!(
            parse(&long_close, 1024).err(),
            Some(FrameError::Protocol(1002))
        );
    }

    #[test]
    fn an_oversized_frame_is_refused_before_its_payload_arrives() {
        // Only the header of a 2^40-byte frame: refused, nothing reserved for it.
        let mut header = vec![0x82, 0x80 | 127];
        header.extend_from_slice(&(1u64 << 40).to_be_bytes());
        header.extend_from_slice(&[0; 4]);
        let mut buf = BytesMut::from(&header[..]);
        assert_eq!(
            parse_frame(&mut buf, 65536).err(),
            Some(FrameError::Oversized)
        );
        assert!(buf.capacity() < 1 << 20);
        // At the limit exactly is fine.
        let at_limit = client_frame(0x82, &[1u8; 64], [3; 4]);
        assert!(parse(&at_limit, 64).expect("ok").is_some());
        assert_eq!(parse(&at_limit, 63).err(), Some(FrameError::Oversized));
    }
}
