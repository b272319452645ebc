//! The QUIC endpoint's TLS: certificate and key from config, or a self-signed pair generated
//! once into the data directory (its SHA-256 fingerprint is logged so clients can pin it).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use parley_proto::QUIC_ALPN as ALPN;

/// Certificate file name in the data directory when none is configured.
pub(crate) const DEV_CERT_FILE: &str = "quic-cert.pem";
/// Key file name in the data directory when none is configured.
pub(crate) const DEV_KEY_FILE: &str = "quic-key.pem";

/// The endpoint's certificate chain and key.
pub(crate) struct TlsMaterial {
    pub(crate) certs: Vec<CertificateDer<'static>>,
    pub(crate) key: PrivateKeyDer<'static>,
    /// Where the certificate (PEM) is.
    pub(crate) cert_path: PathBuf,
    /// SHA-256 of the leaf certificate (DER), `AB:CD:…`.
    pub(crate) fingerprint: String,
    /// Generated just now (self-signed).
    pub(crate) generated: bool,
}

/// SHA-256 fingerprint of a DER certificate, colon-separated upper-case hex.
pub(crate) fn fingerprint(der: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, der);
    digest
        .as_ref()
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Reads the configured pair, or loads / generates the development pair in `data_dir`.
pub(crate) fn load_or_generate(
    cert: Option<&Path>,
    key: Option<&Path>,
    data_dir: &Path,
) -> anyhow::Result<TlsMaterial> {
    let (cert_path, key_path, generated) = match (cert, key) {
        (Some(c), Some(k)) => (c.to_owned(), k.to_owned(), false),
        (None, None) => {
            let (c, k) = (data_dir.join(DEV_CERT_FILE), data_dir.join(DEV_KEY_FILE));
            let generated = !(c.exists() && k.exists());
            if generated {
                generate(&c, &k)?;
            }
            (c, k, generated)
        }
        _ => bail!("--tls-cert and --tls-key go together"),
    };
    let certs = CertificateDer::pem_file_iter(&cert_path)
        .with_context(|| format!("read {}", cert_path.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("parse {}", cert_path.display()))?;
    let Some(leaf) = certs.first() else {
        bail!("no certificate in {}", cert_path.display());
    };
    let fingerprint = fingerprint(leaf);
    let key = PrivateKeyDer::from_pem_file(&key_path)
        .with_context(|| format!("read a private key from {}", key_path.display()))?;
    Ok(TlsMaterial {
        certs,
        key,
        cert_path,
        fingerprint,
        generated,
    })
}

/// A self-signed certificate for `localhost`, `127.0.0.1` and `::1`, valid for ten years.
fn generate(cert_path: &Path, key_path: &Path) -> anyhow::Result<()> {
    let names = vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ];
    let ck = rcgen::generate_simple_self_signed(names).context("generate a certificate")?;
    if let Some(dir) = cert_path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    crate::files::write_private(key_path, &ck.signing_key.serialize_pem())?;
    std::fs::write(cert_path, ck.cert.pem())?;
    Ok(())
}

/// The quinn server configuration: TLS 1.3 with ALPN `parley/1`, session tickets and 0-RTT,
/// datagrams, one bidirectional stream per connection.
pub(crate) fn server_config(
    material: &TlsMaterial,
    idle_timeout: Duration,
) -> anyhow::Result<quinn::ServerConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_no_client_auth()
        .with_single_cert(material.certs.clone(), material.key.clone_key())
        .context("certificate and key do not match")?;
    tls.alpn_protocols = vec![ALPN.to_vec()];
    // 0-RTT: quinn requires this exact value. rustls accepts early data only on stateful
    // resumption (each ticket used once), which bounds replays to other nodes; the session
    // core accepts only replay-safe frames as early data anyway.
    tls.max_early_data_size = u32::MAX;
    tls.session_storage = rustls::server::ServerSessionMemoryCache::new(64 * 1024);
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls)?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    let mut transport = quinn::TransportConfig::default();
    transport
        .max_concurrent_bidi_streams(1u8.into())
        .max_concurrent_uni_streams(0u8.into())
        .datagram_receive_buffer_size(Some(64 * 1024))
        .max_idle_timeout(Some(
            quinn::IdleTimeout::try_from(idle_timeout).context("idle timeout")?,
        ));
    config.transport_config(Arc::new(transport));
    config.migration(true);
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_pair_is_kept_and_reloaded() {
        let dir = tempfile::tempdir().expect("tmp");
        let first = load_or_generate(None, None, dir.path()).expect("generate");
        assert!(first.generated);
        assert_eq!(first.fingerprint.len(), 32 * 3 - 1);
        let again = load_or_generate(None, None, dir.path()).expect("reload");
        assert!(!again.generated);
        assert_eq!(again.fingerprint, first.fingerprint);
        assert!(server_config(&again, Duration::from_secs(30)).is_ok());
        assert!(load_or_generate(Some(&again.cert_path), None, dir.path()).is_err());
    }
}
