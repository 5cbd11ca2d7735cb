//! The rustls client config of outbound connections: the built-in web roots, or the CA
//! certificates of one PEM file instead, or — `insecure`, for test servers — no
//! verification of the server's certificate at all; optionally a client certificate
//! (mutual TLS).

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
    /// Accept any server certificate (the handshake's signatures are still checked).
    pub insecure: bool,
    /// PEM certificate chain and private key presented to the server.
    pub client_cert: Option<(PathBuf, PathBuf)>,
}

/// The rustls config for `tls` (ring, the safe default protocol versions). The SNI is
/// applied by the connector, not here.
pub fn client_config(tls: &TlsOptions) -> Result<rustls::ClientConfig, OutboundError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|error| OutboundError::Protocols { error })?;
    let builder = if tls.insecure {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyServerCert(provider)))
    } else {
        match &tls.ca_file {
            None => builder.with_webpki_roots(),
            Some(path) => builder.with_root_certificates(roots_from(path)?),
        }
    };
    match &tls.client_cert {
        None => Ok(builder.with_no_client_auth()),
        Some((cert, key)) => {
            let (chain, key) = client_identity(cert, key)?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|error| OutboundError::ClientKey {
                    path: cert.clone(),
                    error: error.to_string(),
                })
        }
    }
}

/// A client certificate chain and its private key, from PEM files.
fn client_identity(
    cert: &Path,
    key: &Path,
) -> Result<
    (
        Vec<rustls::pki_types::CertificateDer<'static>>,
        rustls::pki_types::PrivateKeyDer<'static>,
    ),
    OutboundError,
> {
    let read = |path: &Path| {
        std::fs::read(path).map_err(|error| OutboundError::ClientKey {
            path: path.to_path_buf(),
            error: error.to_string(),
        })
    };
    let bad = |path: &Path, what: &str| OutboundError::ClientKey {
        path: path.to_path_buf(),
        error: what.to_string(),
    };
    let chain: Vec<_> = rustls_pemfile::certs(&mut read(cert)?.as_slice())
        .collect::<Result<_, _>>()
        .map_err(|e| bad(cert, &e.to_string()))?;
    if chain.is_empty() {
        return Err(bad(cert, "no PEM certificate in it"));
    }
    let key = rustls_pemfile::private_key(&mut read(key)?.as_slice())
        .map_err(|e| bad(key, &e.to_string()))?
        .ok_or_else(|| bad(key, "no PEM private key in it"))?;
    Ok((chain, key))
}

/// `insecure`: takes any certificate for any name, still checking that the server
/// holds the certificate's key (the handshake signatures).
#[derive(Debug)]
struct AnyServerCert(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyServerCert {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.0.signature_verification_algorithms;
        rustls::crypto::verify_tls12_signature(message, cert, dss, algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.0.signature_verification_algorithms;
        rustls::crypto::verify_tls13_signature(message, cert, dss, algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
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
