//! The WebSocket link: a TCP connection (optionally from a chosen source address), the client
//! side of the upgrade on `/ws`, then fastwebsockets frames split into a read and a write half.

use std::net::{IpAddr, SocketAddr};

use bytes::Bytes;
use fastwebsockets::{Frame, OpCode, Payload, Role, WebSocket, WebSocketRead, WebSocketWrite};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpSocket, TcpStream};

use crate::Error;

/// Largest upgrade response accepted.
const MAX_HANDSHAKE: usize = 8192;

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
pub async fn handshake(stream: &mut TcpStream, host: SocketAddr, path: &str) -> Result<(), Error> {
    let key = uuid::Uuid::new_v4().simple().to_string();
    let key = &key[..22];
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    stream.write_all(req.as_bytes()).await?;
    let mut buf = Vec::with_capacity(256);
    let mut chunk = [0u8; 512];
    loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(Error::Handshake(
                "connection closed during the WebSocket handshake".into(),
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            if !buf.starts_with(b"HTTP/1.1 101") {
                let head = String::from_utf8_lossy(&buf[..buf.len().min(80)]).into_owned();
                let line = head.lines().next().unwrap_or_default().to_owned();
                return Err(Error::Handshake(format!("upgrade refused: {line}")));
            }
            if end + 4 != buf.len() {
                return Err(Error::Handshake(
                    "unexpected bytes after the handshake".into(),
                ));
            }
            return Ok(());
        }
        if buf.len() > MAX_HANDSHAKE {
            return Err(Error::Handshake("handshake response too large".into()));
        }
    }
}

/// Connects and upgrades: the two halves of the WebSocket.
pub async fn connect(
    target: SocketAddr,
    source: Option<IpAddr>,
    path: &str,
) -> Result<(WsRead, WsWrite), Error> {
    let mut stream = tcp(target, source).await?;
    handshake(&mut stream, target, path).await?;
    // A second handle on the socket, to reset it (`WsWrite::abort`).
    let std = stream.into_std()?;
    let socket = std.try_clone()?;
    let stream = TcpStream::from_std(std)?;
    let ws = WebSocket::after_handshake(stream, Role::Client);
    let (read, write) = ws.split(|s| s.into_split());
    Ok((WsRead { read }, WsWrite { write, socket }))
}

/// What the read half got.
#[derive(Debug)]
pub enum WsEvent {
    Binary(Bytes),
    Text(Bytes),
    /// The server's close frame (its code, if it sent one), or the connection ended.
    Closed(Option<u16>),
}

/// The read half.
pub struct WsRead {
    read: WebSocketRead<OwnedReadHalf>,
}

impl WsRead {
    /// The next data message or the end; pings and pongs are skipped (fastwebsockets does not
    /// answer pings on a split socket; the server never relies on them).
    pub async fn next(&mut self) -> WsEvent {
        loop {
            let frame = match self
                .read
                .read_frame(&mut |_| async { Ok::<(), std::convert::Infallible>(()) })
                .await
            {
                Ok(f) => f,
                Err(_) => return WsEvent::Closed(None),
            };
            let payload = || match &frame.payload {
                Payload::Bytes(b) => Bytes::copy_from_slice(b),
                other => Bytes::copy_from_slice(other),
            };
            match frame.opcode {
                OpCode::Binary => return WsEvent::Binary(payload()),
                OpCode::Text => return WsEvent::Text(payload()),
                OpCode::Close => {
                    let code = frame
                        .payload
                        .get(..2)
                        .map(|c| u16::from_be_bytes([c[0], c[1]]));
                    return WsEvent::Closed(code);
                }
                _ => continue,
            }
        }
    }
}

/// The write half.
pub struct WsWrite {
    write: WebSocketWrite<OwnedWriteHalf>,
    socket: std::net::TcpStream,
}

impl WsWrite {
    /// Makes the connection end with a TCP reset instead of a close once it is dropped (a
    /// network that dies under the client, a process killed).
    pub fn abort(&self) -> std::io::Result<()> {
        socket2::SockRef::from(&self.socket).set_linger(Some(std::time::Duration::ZERO))
    }

    /// One binary message.
    pub async fn binary(&mut self, bytes: &[u8]) -> Result<(), Error> {
        self.frame(true, OpCode::Binary, bytes).await
    }

    /// One raw frame (`fin`, opcode, payload): fragments, text, pings, close frames — for
    /// tests of the server's framing.
    pub async fn frame(&mut self, fin: bool, opcode: OpCode, payload: &[u8]) -> Result<(), Error> {
        let frame = Frame::new(fin, opcode, None, Payload::Owned(payload.to_vec()));
        self.write
            .write_frame(frame)
            .await
            .map_err(|e| Error::Io(std::io::Error::other(e.to_string())))
    }

    /// A close frame with `code`.
    pub async fn close(&mut self, code: u16) -> Result<(), Error> {
        self.write
            .write_frame(Frame::close(code, b""))
            .await
            .map_err(|e| Error::Io(std::io::Error::other(e.to_string())))
    }
}
