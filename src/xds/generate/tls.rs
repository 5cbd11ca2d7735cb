//! TLS transport sockets: a bind's certificate for Envoy's listener, and TLS towards a
//! backend (verified against the system roots or a CA file, the server name checked
//! against the certificate) or towards tollgate's own self-signed ext_proc server.

use envoy_types::pb::envoy::config::core::v3::{
    data_source, transport_socket, DataSource, TransportSocket,
};
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
    certificate_validation_context::SystemRootCerts, common_tls_context, subject_alt_name_matcher,
    CertificateValidationContext, CommonTlsContext, DownstreamTlsContext, SubjectAltNameMatcher,
    TlsCertificate, UpstreamTlsContext,
};
use envoy_types::pb::envoy::r#type::matcher::v3::{string_matcher, StringMatcher};
use envoy_types::util::pack_any;

use crate::config::{BackendTls, ServerTls};

const TLS_SOCKET: &str = "envoy.transport_sockets.tls";

fn file(path: &str) -> Option<DataSource> {
    Some(DataSource {
        specifier: Some(data_source::Specifier::Filename(path.to_string())),
        ..Default::default()
    })
}

fn socket(typed: envoy_types::pb::google::protobuf::Any) -> TransportSocket {
    TransportSocket {
        name: TLS_SOCKET.into(),
        config_type: Some(transport_socket::ConfigType::TypedConfig(typed)),
    }
}

/// A listener's TLS: Envoy reads the bind's certificate and key files itself (the
/// sidecar shares tollgate's volume), and offers HTTP/2 and HTTP/1.1 by ALPN.
pub fn downstream(tls: &ServerTls) -> TransportSocket {
    let context = DownstreamTlsContext {
        common_tls_context: Some(CommonTlsContext {
            tls_certificates: vec![TlsCertificate {
                certificate_chain: file(&tls.cert_file),
                private_key: file(&tls.key_file),
                ..Default::default()
            }],
            alpn_protocols: vec!["h2".into(), "http/1.1".into()],
            ..Default::default()
        }),
        ..Default::default()
    };
    socket(pack_any(context))
}

/// TLS to a backend: the server's certificate verified against `caFile` or the system
/// roots, and its name (`sni`, default the host) matched against the certificate —
/// or, `insecure`, nothing verified (Envoy without a validation context); the client
/// certificate (`certFile`, `keyFile`) presented when there is one.
pub fn upstream(tls: &BackendTls, host: &str, http2: bool) -> TransportSocket {
    let sni = tls.sni.clone().unwrap_or_else(|| host.to_string());
    let validation = (!tls.insecure).then(|| verify_server(tls, &sni));
    let context = UpstreamTlsContext {
        sni,
        common_tls_context: Some(CommonTlsContext {
            validation_context_type: validation
                .map(common_tls_context::ValidationContextType::ValidationContext),
            tls_certificates: match (&tls.cert_file, &tls.key_file) {
                (Some(cert), Some(key)) => vec![TlsCertificate {
                    certificate_chain: file(cert),
                    private_key: file(key),
                    ..Default::default()
                }],
                _ => Vec::new(),
            },
            alpn_protocols: if http2 { vec!["h2".into()] } else { vec![] },
            ..Default::default()
        }),
        ..Default::default()
    };
    socket(pack_any(context))
}

/// The backend's certificate checked against `caFile` or the system roots, for `sni`.
fn verify_server(tls: &BackendTls, sni: &str) -> CertificateValidationContext {
    CertificateValidationContext {
        trusted_ca: tls.ca_file.as_deref().and_then(file),
        system_root_certs: tls.ca_file.is_none().then(SystemRootCerts::default),
        match_typed_subject_alt_names: vec![SubjectAltNameMatcher {
            san_type: subject_alt_name_matcher::SanType::Dns as i32,
            matcher: Some(StringMatcher {
                match_pattern: Some(string_matcher::MatchPattern::Exact(sni.to_string())),
                ..Default::default()
            }),
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// TLS to tollgate's ext_proc server when it serves its self-signed certificate:
/// encrypted, not verified (the certificate is made at each start), as gateways treat
/// their endpoint pickers.
pub fn self_signed_ext_proc() -> TransportSocket {
    let context = UpstreamTlsContext {
        sni: "localhost".into(),
        common_tls_context: Some(CommonTlsContext {
            alpn_protocols: vec!["h2".into()],
            ..Default::default()
        }),
        ..Default::default()
    };
    socket(pack_any(context))
}
