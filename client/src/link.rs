//! One connection to a gateway over WebSocket or QUIC, as a read half of whole server frames
//! and a write half of client frames. Frames are bytes here; [`crate::Client`] decodes them.

use std::net::{IpAddr, SocketAddr};

use bytes::Bytes;
use parley_proto::codec::client::encode_client;
use parley_proto::{ClientBody, ClientFrame};

use crate::Error;
use crate::quic::{FramedRecv, FramedSend};
use crate::ws::{WsEvent, WsRead, WsWrite};

/// How a client connects.
#[derive(Clone)]
pub enum Via {
    WebSocket {
        target: SocketAddr,
        /// Local address to connect from (None: the kernel picks).
        source: Option<IpAddr>,
    },
    Quic {
        target: SocketAddr,
        endpoint: quinn::Endpoint,
        config: quinn::ClientConfig,
        /// Try 0-RTT with a ticket from an earlier connection.
        zero_rtt: bool,
    },
}

impl Via {
    /// WebSocket to `target` on `/ws`.
    pub fn ws(target: SocketAddr) -> Self {
        Via::WebSocket {
            target,
            source: None,
        }
    }

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

/// What the read half got.
#[derive(Debug)]
pub enum Event {
    /// One whole frame from the session stream.
    Frame(Bytes),
    /// A frame that came as a QUIC datagram (typing indicators).
    Datagram(Bytes),
    /// The connection ended, with its close code (WebSocket close / QUIC application code).
    Closed(Option<u16>),
}

/// The read side.
pub enum Reader {
    WebSocket(WsRead),
    Quic {
        recv: FramedRecv,
        connection: quinn::Connection,
    },
}

impl Reader {
    /// The next event. Not cancel-safe over QUIC mid-frame: keep it in one place of a select.
    pub async fn next(&mut self) -> Event {
        match self {
            Reader::WebSocket(read) => match read.next().await {
                WsEvent::Binary(b) | WsEvent::Text(b) => Event::Frame(b),
                WsEvent::Closed(code) => Event::Closed(code),
            },
            Reader::Quic { recv, connection } => tokio::select! {
                f = recv.read_frame() => match f {
                    Ok(Some(b)) => Event::Frame(b),
                    _ => {
                        // The server finishes the stream, then closes the connection with
                        // the session's close code: wait for that code.
                        connection.closed().await;
                        Event::Closed(quic_close_code(connection))
                    }
                },
                d = connection.read_datagram() => match d {
                    Ok(b) => Event::Datagram(b),
                    Err(_) => Event::Closed(quic_close_code(connection)),
                },
            },
        }
    }
}

/// The application close code of a closed QUIC connection.
pub fn quic_close_code(c: &quinn::Connection) -> Option<u16> {
    match c.close_reason() {
        Some(quinn::ConnectionError::ApplicationClosed(a)) => {
            u16::try_from(a.error_code.into_inner()).ok()
        }
        _ => None,
    }
}

/// The write side plus the frame sequence counter.
pub struct Writer {
    inner: WriterInner,
    seq: u32,
}

pub enum WriterInner {
    WebSocket(WsWrite),
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
    pub async fn send(&mut self, body: ClientBody) -> Result<u32, Error> {
        self.seq = self.seq.wrapping_add(1);
        let bytes = encode_client(&ClientFrame {
            seq: self.seq,
            body,
        });
        self.send_bytes(&bytes).await?;
        Ok(self.seq)
    }

    /// Sends raw bytes as one frame (WebSocket binary message / QUIC length-prefixed frame).
    pub async fn send_bytes(&mut self, bytes: &[u8]) -> Result<(), Error> {
        match &mut self.inner {
            WriterInner::WebSocket(w) => w.binary(bytes).await,
            WriterInner::Quic { send, .. } => send.write_frame(bytes).await,
        }
    }

    /// A frame as a QUIC datagram (the server reads only Typing from datagrams).
    pub fn send_datagram(&mut self, body: ClientBody) -> Result<(), Error> {
        self.seq = self.seq.wrapping_add(1);
        let bytes = encode_client(&ClientFrame {
            seq: self.seq,
            body,
        });
        match &self.inner {
            WriterInner::Quic { connection, .. } => connection
                .send_datagram(bytes)
                .map_err(|e| Error::Quic(e.to_string())),
            WriterInner::WebSocket(_) => Err(Error::Unsupported("datagrams need QUIC")),
        }
    }

    /// The transport underneath, for tests that speak it raw.
    pub fn inner(&mut self) -> &mut WriterInner {
        &mut self.inner
    }

    /// Closes cleanly: a close frame, or the QUIC stream finished.
    pub async fn close(&mut self) {
        match &mut self.inner {
            WriterInner::WebSocket(w) => {
                let _ = w.close(parley_proto::close::NORMAL).await;
            }
            WriterInner::Quic { send, .. } => {
                let _ = send.send.finish();
            }
        }
    }
}

/// An open connection, before Hello.
pub struct Link {
    pub reader: Reader,
    pub writer: Writer,
    /// Whether QUIC 0-RTT was used.
    pub zero_rtt: bool,
    /// The QUIC connection (None over WebSocket).
    pub quic: Option<quinn::Connection>,
}

/// Opens a connection (WebSocket upgrade on `/ws`, or a QUIC connection and its stream).
pub async fn open(via: &Via) -> Result<Link, Error> {
    match via {
        Via::WebSocket { target, source } => {
            let (read, write) = crate::ws::connect(*target, *source, "/ws").await?;
            Ok(Link {
                reader: Reader::WebSocket(read),
                writer: Writer {
                    inner: WriterInner::WebSocket(write),
                    seq: 0,
                },
                zero_rtt: false,
                quic: None,
            })
        }
        Via::Quic {
            target,
            endpoint,
            config,
            zero_rtt,
        } => {
            let conn =
                crate::quic::connect(endpoint, config, *target, "localhost", *zero_rtt).await?;
            Ok(Link {
                reader: Reader::Quic {
                    recv: conn.recv,
                    connection: conn.connection.clone(),
                },
                writer: Writer {
                    inner: WriterInner::Quic {
                        send: conn.send,
                        connection: conn.connection.clone(),
                    },
                    seq: 0,
                },
                zero_rtt: conn.zero_rtt,
                quic: Some(conn.connection),
            })
        }
    }
}
