//! A TLS client that accepts any certificate, to look at what a server presents (a
//! self-signed endpoint-picker port, as a gateway that encrypts without verifying sees it).

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

#[derive(Debug)]
struct AcceptAny;

impl ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        rustls::crypto::ring::default_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A client config that accepts any server certificate, offering `alpn`.
pub fn insecure_client_config(alpn: Vec<Vec<u8>>) -> rustls::ClientConfig {
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .dangerous()
    .with_custom_certificate_verifier(Arc::new(AcceptAny))
    .with_no_client_auth();
    config.alpn_protocols = alpn;
    config
}

/// The DER certificate the server at `addr` presents for `sni` (panics when the
/// handshake fails).
pub async fn peer_certificate(addr: (&str, u16), sni: &str) -> Vec<u8> {
    let config = insecure_client_config(Vec::new());
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connecting");
    let name = ServerName::try_from(sni.to_string()).unwrap();
    let tls = connector.connect(name, tcp).await.expect("TLS handshake");
    let (_, session) = tls.get_ref();
    session
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| c.to_vec())
        .expect("a certificate")
}

/// A self-signed certificate for `localhost` written into `dir`: (cert, key) PEM paths.
/// The certificate is its own CA: give its path as `caFile` to trust it.
pub fn localhost_cert(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, certified.cert.pem()).unwrap();
    std::fs::write(&key, certified.signing_key.serialize_pem()).unwrap();
    (cert, key)
}

/// A tollgate serving TLS (`cert`, `key`) on `port` in front of the plaintext
/// `upstream`: a TLS upstream for tests.
pub async fn tls_front(
    port: u16,
    cert: &std::path::Path,
    key: &std::path::Path,
    upstream: u16,
) -> super::tollgate::Tollgate {
    super::tollgate::Tollgate::start(&format!(
        "binds:\n- port: {port}\n  tls: {{ certFile: {c}, keyFile: {k} }}\n  listeners:\n  - routes:\n    - backends: [ {{ host: \"127.0.0.1:{upstream}\" }} ]\n",
        c = cert.display(),
        k = key.display(),
    ))
    .await
}
