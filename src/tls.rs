//! TLS for the listener: `server.tls_cert` and `server.tls_key` (PEM), with
//! rustls and the same crypto provider as the relay's client side.
//!
//! The configuration is built at startup and again on SIGHUP, so that a
//! renewed certificate (certbot, an ACME client) is served to new
//! connections without a restart; a file that does not load is refused and
//! the old configuration keeps serving. Live sessions keep the TLS session
//! they have.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures_rustls::rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// How long a client may take over its TLS handshake: a real one takes a
/// round trip or two; a client that trickles it does not get to hold its
/// slot for the whole `limits.handshake_timeout`.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// Loads a certificate chain and its key into a server configuration.
pub fn server_config(cert: &Path, key_file: &Path) -> Result<Arc<ServerConfig>, String> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| format!("cannot read {}: {e}", cert.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: {e}", cert.display()))?;
    if chain.is_empty() {
        return Err(format!("{}: no PEM certificate in it", cert.display()));
    }
    let key = PrivateKeyDer::from_pem_file(key_file)
        .map_err(|e| format!("{}: no usable PEM private key: {e}", key_file.display()))?;
    let provider = Arc::new(futures_rustls::rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| {
            format!(
                "{} and {} do not make a certificate and key: {e}",
                cert.display(),
                key_file.display()
            )
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
