//! The QUIC link: what a mobile app does, in Rust. One bidirectional stream carries the
//! protocol's framing (`parley_proto::framing`); typing indicators may arrive as datagrams.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use parley_proto::QUIC_ALPN;
use parley_proto::framing::{Parsed, parse_frame, put_frame};
use quinn::{Connection, Endpoint, RecvStream, SendStream};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use crate::Error;

/// Largest server frame a client takes (history and conversation pages are the big ones).
const MAX_SERVER_FRAME: usize = 64 << 20;

/// Certificates from a PEM file (to trust the gateway's self-signed certificate).
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, Error> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| Error::Tls(format!("read {}: {e}", path.display())))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Error::Tls(format!("parse {}: {e}", path.display())))?;
    Ok(certs)
}

/// A client configuration trusting `roots`, offering ALPN `parley/1`, keeping session tickets
/// for 0-RTT, with datagrams and a keep-alive.
pub fn client_config(roots: &[CertificateDer<'static>]) -> Result<quinn::ClientConfig, Error> {
    client_config_with_alpn(roots, QUIC_ALPN)
}

/// As [`client_config`] with another ALPN (tests of refusal).
pub fn client_config_with_alpn(
    roots: &[CertificateDer<'static>],
    alpn: &[u8],
) -> Result<quinn::ClientConfig, Error> {
    let tls_err = |e: &dyn std::fmt::Display| Error::Tls(e.to_string());
    let mut store = rustls::RootCertStore::empty();
    for c in roots {
        store.add(c.clone()).map_err(|e| tls_err(&e))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| tls_err(&e))?
        .with_root_certificates(store)
        .with_no_client_auth();
    tls.alpn_protocols = vec![alpn.to_vec()];
    tls.enable_early_data = true;
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls).map_err(|e| tls_err(&e))?;
    let mut config = quinn::ClientConfig::new(Arc::new(crypto));
    let mut transport = quinn::TransportConfig::default();
    transport.keep_alive_interval(Some(Duration::from_secs(10)));
    config.transport_config(Arc::new(transport));
    Ok(config)
}

/// A client endpoint on `bind` (port 0: any); one endpoint can hold many connections.
pub fn endpoint(bind: SocketAddr) -> Result<Endpoint, Error> {
    Ok(Endpoint::client(bind)?)
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
) -> Result<QuicConn, Error> {
    let quic = |e: &dyn std::fmt::Display| Error::Quic(e.to_string());
    let connecting = endpoint
        .connect_with(config.clone(), addr, server_name)
        .map_err(|e| quic(&e))?;
    let (connection, used_0rtt) = if zero_rtt {
        match connecting.into_0rtt() {
            Ok((c, _accepted)) => (c, true),
            Err(connecting) => (connecting.await.map_err(|e| quic(&e))?, false),
        }
    } else {
        (connecting.await.map_err(|e| quic(&e))?, false)
    };
    let (send, recv) = connection.open_bi().await.map_err(|e| quic(&e))?;
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
    pub async fn write_frame(&mut self, frame: &[u8]) -> Result<(), Error> {
        let mut buf = Vec::with_capacity(frame.len() + 4);
        put_frame(&mut buf, frame);
        self.write_raw(&buf).await
    }

    /// Bytes as they are, without a length prefix (tests of the server's framing).
    pub async fn write_raw(&mut self, bytes: &[u8]) -> Result<(), Error> {
        self.send
            .write_all(bytes)
            .await
            .map_err(|e| Error::Quic(e.to_string()))
    }
}

/// Reads length-prefixed frames.
pub struct FramedRecv {
    pub recv: RecvStream,
    buf: BytesMut,
}

impl FramedRecv {
    /// The next frame; None when the stream ended.
    pub async fn read_frame(&mut self) -> Result<Option<Bytes>, Error> {
        loop {
            match parse_frame(&mut self.buf, MAX_SERVER_FRAME) {
                Parsed::Frame(f) => return Ok(Some(f)),
                Parsed::TooLarge(n) => return Err(Error::Protocol(format!("frame of {n} bytes"))),
                Parsed::NeedMore => {}
            }
            match self.recv.read_chunk(64 * 1024, true).await {
                Ok(Some(chunk)) => self.buf.extend_from_slice(&chunk.bytes),
                Ok(None) => return Ok(None),
                Err(e) => return Err(Error::Quic(e.to_string())),
            }
        }
    }
}
