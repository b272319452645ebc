//! A load client's connection over WebSocket or QUIC: connect (from a chosen source address),
//! Hello → Welcome, then frames. Server frames are peeked without allocation.

use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use anyhow::{Context, bail};
use bytes::Bytes;
use fastwebsockets::{Frame, OpCode, Payload, Role, WebSocket, WebSocketRead, WebSocketWrite};
use gateway::quic::client::{FramedRecv, FramedSend};
use parley_proto::codec::DecodeLimits;
use parley_proto::codec::client::{decode_server, encode_client};
use parley_proto::{ClientBody, ClientFrame, Hello, ResumePoint, ServerBody};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpSocket, TcpStream};

/// How one client connects.
#[derive(Clone)]
pub enum Via {
    WebSocket {
        target: SocketAddr,
        source: Option<IpAddr>,
    },
    Quic {
        target: SocketAddr,
        endpoint: quinn::Endpoint,
        config: quinn::ClientConfig,
        zero_rtt: bool,
    },
}

impl Via {
    /// The same client reconnecting: over QUIC, with 0-RTT from its session ticket.
    pub fn reconnecting(&self) -> Via {
        match self {
            Via::Quic {
                target,
                endpoint,
                config,
                ..
            } => Via::Quic {
                target: *target,
                endpoint: endpoint.clone(),
                config: config.clone(),
                zero_rtt: true,
            },
            ws => ws.clone(),
        }
    }
}

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

/// The read side: whole frames (and, over QUIC, datagrams).
pub enum Reader {
    WebSocket(WebSocketRead<OwnedReadHalf>),
    Quic {
        recv: FramedRecv,
        connection: quinn::Connection,
    },
}

impl Reader {
    /// The next server frame; None once the connection is closed or broken.
    pub async fn next(&mut self) -> Option<Bytes> {
        match self {
            Reader::WebSocket(read) => loop {
                let frame = read
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
            },
            Reader::Quic { recv, connection } => tokio::select! {
                f = recv.read_frame() => f.ok().flatten(),
                d = connection.read_datagram() => d.ok(),
            },
        }
    }
}

/// The write side plus the frame sequence counter.
pub struct Writer {
    inner: WriterInner,
    seq: u32,
}

enum WriterInner {
    WebSocket(WebSocketWrite<OwnedWriteHalf>),
    Quic {
        send: FramedSend,
        connection: quinn::Connection,
    },
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
        match &mut self.inner {
            WriterInner::WebSocket(w) => w
                .write_frame(Frame::binary(Payload::Owned(bytes.to_vec())))
                .await
                .context("write")?,
            WriterInner::Quic { send, .. } => send.write_frame(&bytes).await?,
        }
        Ok(self.seq)
    }

    pub async fn close(&mut self) {
        match &mut self.inner {
            WriterInner::WebSocket(w) => {
                let _ = w.write_frame(Frame::close(1000, b"")).await;
            }
            WriterInner::Quic { send, connection } => {
                let _ = send.send.finish();
                connection.close(0u8.into(), b"");
            }
        }
    }
}

/// A connected, authenticated session.
pub struct Session {
    pub reader: Reader,
    pub writer: Writer,
    /// Microseconds from the start of connecting to Welcome.
    pub connect_us: u64,
    /// Whether QUIC 0-RTT was used.
    pub zero_rtt: bool,
}

/// Connects and authenticates.
pub async fn connect(via: &Via, token: &str, resume: Vec<ResumePoint>) -> anyhow::Result<Session> {
    let start = Instant::now();
    let (mut reader, mut writer, zero_rtt) = match via {
        Via::WebSocket { target, source } => {
            let mut stream = tcp(*target, *source).await.context("tcp connect")?;
            handshake(&mut stream, *target, "/ws").await?;
            let ws = WebSocket::after_handshake(stream, Role::Client);
            let (read, write) = ws.split(|s| s.into_split());
            (
                Reader::WebSocket(read),
                Writer {
                    inner: WriterInner::WebSocket(write),
                    seq: 0,
                },
                false,
            )
        }
        Via::Quic {
            target,
            endpoint,
            config,
            zero_rtt,
        } => {
            let conn =
                gateway::quic::client::connect(endpoint, config, *target, "localhost", *zero_rtt)
                    .await
                    .context("quic connect")?;
            (
                Reader::Quic {
                    recv: conn.recv,
                    connection: conn.connection.clone(),
                },
                Writer {
                    inner: WriterInner::Quic {
                        send: conn.send,
                        connection: conn.connection,
                    },
                    seq: 0,
                },
                conn.zero_rtt,
            )
        }
    };
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
            zero_rtt,
        }),
        Ok(ServerBody::Error { code, message, .. }) => bail!("refused: {code} {message}"),
        other => bail!("expected Welcome, got {other:?}"),
    }
}
