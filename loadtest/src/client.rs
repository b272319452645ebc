//! A load client's connection: TCP (from a chosen source address), the WebSocket handshake,
//! Hello → Welcome, then frames. Server frames are peeked without allocation.

use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use anyhow::{Context, bail};
use bytes::Bytes;
use fastwebsockets::{Frame, OpCode, Payload, Role, WebSocket, WebSocketRead, WebSocketWrite};
use gateway::codec::{DecodeLimits, decode_server, encode_client};
use gateway::protocol::{ClientBody, ClientFrame, Hello, ResumePoint, ServerBody};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpSocket, TcpStream};

/// Opens a TCP connection to `target`, bound to `source` when given (many loopback source
/// addresses lift the ~28 k ephemeral ports per address limit).
pub async fn tcp(target: SocketAddr, source: Option<IpAddr>) -> std::io::Result<TcpStream> {
    let socket = if target.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if let Some(ip) = source {
        socket.bind(SocketAddr::new(ip, 0))?;
    }
    let stream = socket.connect(target).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// The client side of the WebSocket upgrade on `path`.
async fn handshake(stream: &mut TcpStream, target: SocketAddr, path: &str) -> anyhow::Result<()> {
    let key = uuid::Uuid::new_v4().simple().to_string();
    let key = &key[..22];
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {target}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    stream.write_all(req.as_bytes()).await?;
    let mut buf = Vec::with_capacity(256);
    let mut chunk = [0u8; 512];
    loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            bail!("connection closed during the WebSocket handshake");
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            if !buf.starts_with(b"HTTP/1.1 101") {
                let line = String::from_utf8_lossy(&buf[..buf.len().min(80)]).into_owned();
                bail!(
                    "upgrade refused: {}",
                    line.lines().next().unwrap_or_default()
                );
            }
            if end + 4 != buf.len() {
                bail!("unexpected bytes after the handshake");
            }
            return Ok(());
        }
        if buf.len() > 8192 {
            bail!("handshake response too large");
        }
    }
}

/// The read half: whole binary messages.
pub struct Reader {
    read: WebSocketRead<OwnedReadHalf>,
}

impl Reader {
    /// The next binary message; None once the connection is closed or broken.
    pub async fn next(&mut self) -> Option<Bytes> {
        loop {
            let frame = self
                .read
                .read_frame(&mut |_| async { Ok::<(), std::convert::Infallible>(()) })
                .await
                .ok()?;
            match frame.opcode {
                OpCode::Binary => {
                    return Some(match frame.payload {
                        Payload::Bytes(b) => b.freeze(),
                        other => Bytes::copy_from_slice(&other),
                    });
                }
                OpCode::Close => return None,
                _ => continue,
            }
        }
    }
}

/// The write half plus the frame sequence counter.
pub struct Writer {
    write: WebSocketWrite<OwnedWriteHalf>,
    seq: u32,
}

impl Writer {
    /// The seq the next `send` will use (register a pending answer before writing).
    pub fn next_seq(&self) -> u32 {
        self.seq.wrapping_add(1)
    }

    /// Sends one frame; returns its seq.
    pub async fn send(&mut self, body: ClientBody) -> anyhow::Result<u32> {
        self.seq = self.seq.wrapping_add(1);
        let bytes = encode_client(&ClientFrame {
            seq: self.seq,
            body,
        });
        self.write
            .write_frame(Frame::binary(Payload::Owned(bytes.to_vec())))
            .await
            .context("write")?;
        Ok(self.seq)
    }

    pub async fn close(&mut self) {
        let _ = self.write.write_frame(Frame::close(1000, b"")).await;
    }
}

/// A connected, authenticated session.
pub struct Session {
    pub reader: Reader,
    pub writer: Writer,
    /// Microseconds from TCP connect to Welcome.
    pub connect_us: u64,
}

/// Connects to `/ws` on `target` and authenticates.
pub async fn connect(
    target: SocketAddr,
    source: Option<IpAddr>,
    token: &str,
    resume: Vec<ResumePoint>,
) -> anyhow::Result<Session> {
    let start = Instant::now();
    let mut stream = tcp(target, source).await.context("tcp connect")?;
    handshake(&mut stream, target, "/ws").await?;
    let ws = WebSocket::after_handshake(stream, Role::Client);
    let (read, write) = ws.split(|s| s.into_split());
    let mut reader = Reader { read };
    let mut writer = Writer { write, seq: 0 };
    writer
        .send(ClientBody::Hello(Hello {
            token: token.to_owned(),
            protocol_major: parley_schema::PROTOCOL_MAJOR,
            protocol_minor: 0,
            resume,
            client_name: Some("parley-loadtest".into()),
        }))
        .await?;
    let first = reader.next().await.context("closed before Welcome")?;
    match decode_server(&first, &DecodeLimits::server()).map(|f| f.body) {
        Ok(ServerBody::Welcome(_)) => Ok(Session {
            reader,
            writer,
            connect_us: start.elapsed().as_micros() as u64,
        }),
        Ok(ServerBody::Error { code, message, .. }) => bail!("refused: {code} {message}"),
        other => bail!("expected Welcome, got {other:?}"),
    }
}
