//! The rustls client config of outbound connections: the built-in web roots, or the CA
//! certificates of one PEM file instead.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use hyper_rustls::ConfigBuilderExt;

use super::OutboundError;

/// TLS towards a server.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct TlsOptions {
    /// PEM file of CA certificates to trust instead of the built-in web roots.
    pub ca_file: Option<PathBuf>,
    /// Server name to send and verify instead of the URL's host.
    pub sni: Option<String>,
}

/// The rustls config for `tls` (ring, the safe default protocol versions, no client
/// certificate). The SNI is applied by the connector, not here.
pub fn client_config(tls: &TlsOptions) -> Result<rustls::ClientConfig, OutboundError> {
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|error| OutboundError::Protocols { error })?;
    let config = match &tls.ca_file {
        None => builder.with_webpki_roots().with_no_client_auth(),
        Some(path) => builder
            .with_root_certificates(roots_from(path)?)
            .with_no_client_auth(),
    };
    Ok(config)
}

/// The CA certificates of a PEM file; a file without one is an error, since every
/// handshake would fail.
fn roots_from(path: &Path) -> Result<rustls::RootCertStore, OutboundError> {
    let file = std::fs::File::open(path).map_err(|error| OutboundError::CaFile {
        path: path.to_path_buf(),
        error,
    })?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut std::io::BufReader::new(file)) {
        let cert = cert.map_err(|error| OutboundError::CaFile {
            path: path.to_path_buf(),
            error,
        })?;
        roots.add(cert).map_err(|error| OutboundError::CaCert {
            path: path.to_path_buf(),
            error,
        })?;
    }
    if roots.is_empty() {
        return Err(OutboundError::NoCaCert {
            path: path.to_path_buf(),
        });
    }
    Ok(roots)
}
