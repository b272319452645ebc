//! A reference QUIC client: what a mobile app does, in Rust. The tests and the load test use
//! it; its framing is the protocol's (u32 little-endian length, then one FlatBuffers frame).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use bytes::{Buf, Bytes, BytesMut};
use quinn::{Connection, Endpoint, RecvStream, SendStream};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use super::ALPN;

/// Certificates from a PEM file (to trust the gateway's self-signed certificate).
pub fn load_certs(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    CertificateDer::pem_file_iter(path)
        .with_context(|| format!("read {}", path.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("parse {}", path.display()))
}

/// A client configuration trusting `roots`, offering ALPN `parley/1`, keeping session tickets
/// for 0-RTT, with datagrams and a keep-alive.
pub fn client_config(roots: &[CertificateDer<'static>]) -> anyhow::Result<quinn::ClientConfig> {
    client_config_with_alpn(roots, ALPN)
}

/// As [`client_config`] with another ALPN (tests of refusal).
pub fn client_config_with_alpn(
    roots: &[CertificateDer<'static>],
    alpn: &[u8],
) -> anyhow::Result<quinn::ClientConfig> {
    let mut store = rustls::RootCertStore::empty();
    for c in roots {
        store.add(c.clone()).context("trust the certificate")?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(store)
        .with_no_client_auth();
    tls.alpn_protocols = vec![alpn.to_vec()];
    tls.enable_early_data = true;
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls)?;
    let mut config = quinn::ClientConfig::new(Arc::new(crypto));
    let mut transport = quinn::TransportConfig::default();
    transport.keep_alive_interval(Some(Duration::from_secs(10)));
    config.transport_config(Arc::new(transport));
    Ok(config)
}

/// A client endpoint on `bind` (port 0: any); one endpoint can hold many connections.
pub fn endpoint(bind: SocketAddr) -> anyhow::Result<Endpoint> {
    Endpoint::client(bind).context("bind a QUIC client endpoint")
}

/// An open session stream.
pub struct QuicConn {
    pub connection: Connection,
    pub send: FramedSend,
    pub recv: FramedRecv,
    /// Whether the connection was opened with 0-RTT (frames could be sent before the
    /// handshake finished).
    pub zero_rtt: bool,
}

/// Connects (with 0-RTT when `zero_rtt` and a ticket from an earlier connection exist) and
/// opens the session's stream.
pub async fn connect(
    endpoint: &Endpoint,
    config: &quinn::ClientConfig,
    addr: SocketAddr,
    server_name: &str,
    zero_rtt: bool,
) -> anyhow::Result<QuicConn> {
    let connecting = endpoint.connect_with(config.clone(), addr, server_name)?;
    let (connection, used_0rtt) = if zero_rtt {
        match connecting.into_0rtt() {
            Ok((c, _accepted)) => (c, true),
            Err(connecting) => (connecting.await?, false),
        }
    } else {
        (connecting.await?, false)
    };
    let (send, recv) = connection.open_bi().await?;
    Ok(QuicConn {
        connection,
        send: FramedSend { send },
        recv: FramedRecv {
            recv,
            buf: BytesMut::new(),
        },
        zero_rtt: used_0rtt,
    })
}

/// Writes length-prefixed frames.
pub struct FramedSend {
    pub send: SendStream,
}

impl FramedSend {
    pub async fn write_frame(&mut self, frame: &[u8]) -> anyhow::Result<()> {
        let mut buf = Vec::with_capacity(frame.len() + 4);
        buf.extend_from_slice(&(frame.len() as u32).to_le_bytes());
        buf.extend_from_slice(frame);
        self.send.write_all(&buf).await?;
        Ok(())
    }
}

/// Reads length-prefixed frames.
pub struct FramedRecv {
    pub recv: RecvStream,
    buf: BytesMut,
}

impl FramedRecv {
    /// The next frame; None when the stream ended.
    pub async fn read_frame(&mut self) -> anyhow::Result<Option<Bytes>> {
        loop {
            if self.buf.len() >= 4 {
                let len = u32::from_le_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]])
                    as usize;
                if len > 64 << 20 {
                    bail!("frame of {len} bytes");
                }
                if self.buf.len() >= 4 + len {
                    self.buf.advance(4);
                    return Ok(Some(self.buf.split_to(len).freeze()));
                }
            }
            match self.recv.read_chunk(64 * 1024, true).await? {
                Some(chunk) => self.buf.extend_from_slice(&chunk.bytes),
                None => return Ok(None),
            }
        }
    }
}
