//! A load client's connection: `parley-client`'s link (WebSocket or QUIC, from a chosen
//! source address), Hello → Welcome, then raw frames the scenarios peek at without allocating.

use std::time::Instant;

use anyhow::{Context, bail};
use bytes::Bytes;
use parley_client::link::{Event, open};
pub use parley_client::link::{Via, Writer};
use parley_proto::codec::DecodeLimits;
use parley_proto::codec::client::decode_server;
use parley_proto::{ClientBody, Hello, PROTOCOL_MAJOR, ResumePoint, ServerBody};

/// The read side: whole frames (and, over QUIC, datagrams).
pub struct Reader(parley_client::link::Reader);

impl Reader {
    /// The next server frame; None once the connection is closed or broken.
    pub async fn next(&mut self) -> Option<Bytes> {
        match self.0.next().await {
            Event::Frame(b) | Event::Datagram(b) => Some(b),
            Event::Closed(_) => None,
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
    let link = open(via).await.context("connect")?;
    let (mut reader, mut writer) = (Reader(link.reader), link.writer);
    writer
        .send(ClientBody::Hello(Hello {
            token: token.to_owned(),
            protocol_major: PROTOCOL_MAJOR,
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
            zero_rtt: link.zero_rtt,
        }),
        Ok(ServerBody::Error { code, message, .. }) => bail!("refused: {code} {message}"),
        other => bail!("expected Welcome, got {other:?}"),
    }
}
