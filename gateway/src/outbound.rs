//! The node's HTTP(S) client for the services it calls (push providers, Solr, S3): rustls with
//! ring and the webpki roots, `http://` allowed, TCP_NODELAY, and a connect deadline of the
//! caller's request timeout (5 s at most). Each caller keeps its own deadline on the whole
//! exchange.

use std::sync::Arc;
use std::time::Duration;

use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// The connector every outbound client uses.
pub(crate) type Connector = hyper_rustls::HttpsConnector<HttpConnector>;

/// Which HTTP the client speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Version {
    Http1,
    /// HTTP/2 only (TLS with ALPN `h2`, or prior knowledge on `http://`): one connection per
    /// host, many streams on it.
    Http2,
}

/// A pooled client; idle connections are closed after `idle`. `what` names the caller in a
/// TLS set-up error.
pub(crate) fn client<B>(
    what: &str,
    version: Version,
    timeout: Duration,
    idle: Duration,
) -> Result<Client<Connector, B>, String>
where
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
{
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tcp = HttpConnector::new();
    tcp.enforce_http(false);
    tcp.set_nodelay(true);
    tcp.set_connect_timeout(Some(timeout.min(Duration::from_secs(5))));
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_webpki_roots(provider)
        .map_err(|e| format!("TLS for {what}: {e}"))?
        .https_or_http();
    let mut builder = Client::builder(TokioExecutor::new());
    builder.pool_idle_timeout(idle);
    Ok(match version {
        Version::Http1 => builder.build(https.enable_http1().wrap_connector(tcp)),
        Version::Http2 => builder
            .http2_only(true)
            .build(https.enable_http2().wrap_connector(tcp)),
    })
}
