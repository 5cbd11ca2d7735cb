//! Client building: CA files, SNI, the protocol choice, and URL redaction in errors.

use std::convert::Infallible;
use std::path::PathBuf;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::service::service_fn;

use super::*;

fn ca_options(path: PathBuf) -> ClientOptions {
    ClientOptions {
        tls: TlsOptions {
            ca_file: Some(path),
            ..Default::default()
        },
        ..Default::default()
    }
}

fn build(options: &ClientOptions) -> Result<HttpClient<Empty<Bytes>>, OutboundError> {
    client(options)
}

#[test]
fn a_missing_ca_file_is_an_error_naming_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("absent-ca.pem");
    let err = build(&ca_options(path.clone())).unwrap_err();
    assert!(matches!(err, OutboundError::CaFile { .. }), "{err:?}");
    let shown = err.to_string();
    assert!(shown.contains(&path.display().to_string()), "{shown}");
}

#[test]
fn a_ca_file_without_a_certificate_is_an_error_naming_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("not-pem.txt");
    std::fs::write(&path, "just some text\n").unwrap();
    let err = build(&ca_options(path.clone())).unwrap_err();
    assert!(matches!(err, OutboundError::NoCaCert { .. }), "{err:?}");
    assert!(err.to_string().contains(&path.display().to_string()));
}

#[test]
fn an_invalid_sni_is_an_error_naming_it() {
    let options = ClientOptions {
        tls: TlsOptions {
            sni: Some("not a name!".to_string()),
            ..Default::default()
        },
        ..Default::default()
    };
    let err = build(&options).unwrap_err();
    assert!(matches!(err, OutboundError::Sni { .. }), "{err:?}");
    assert!(err.to_string().contains("\"not a name!\""), "{err}");
}

#[test]
fn a_redacted_url_hides_userinfo_and_keys_in_display_and_debug() {
    #[derive(Debug, thiserror::Error)]
    #[error("calling {url} failed")]
    struct CallFailed {
        url: RedactedUrl,
    }
    let url = "https://bob:hunter2@guard.example/check?api_key=S3CRET&model=m";
    let err = CallFailed { url: url.into() };
    let shown = err.to_string();
    assert_eq!(
        shown,
        "calling https://<redacted>@guard.example/check?api_key=<redacted>&model=m failed"
    );
    let debugged = format!("{err:?}");
    assert!(
        !debugged.contains("hunter2") && !debugged.contains("S3CRET"),
        "{debugged}"
    );
    assert_eq!(err.url.expose(), url);
}

#[test]
fn an_error_chain_joins_the_sources_and_redacts_urls_in_them() {
    #[derive(Debug, thiserror::Error)]
    #[error("request failed")]
    struct Outer(#[source] Inner);
    #[derive(Debug, thiserror::Error)]
    #[error("no route to http://user:pw@10.0.0.1/x?token=T0K")]
    struct Inner;
    assert_eq!(
        error_chain(&Outer(Inner)),
        "request failed: no route to http://<redacted>@10.0.0.1/x?token=<redacted>"
    );
}

/// Serves one connection on a loopback port, answering each request with its HTTP
/// version; returns the `http://` base URL.
async fn version_server() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let service = service_fn(|req: http::Request<hyper::body::Incoming>| async move {
            let version = format!("{:?}", req.version());
            Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from(version))))
        });
        let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
            .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
            .await;
    });
    format!("http://{addr}")
}

async fn version_seen(protocol: Protocol) -> String {
    let base = version_server().await;
    let client = build(&ClientOptions {
        protocol,
        connect_timeout: Some(Duration::from_secs(5)),
        ..Default::default()
    })
    .unwrap();
    let resp = client.get(base.parse().unwrap()).await.unwrap();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(body.to_vec()).unwrap()
}

#[tokio::test]
async fn the_protocol_choice_is_the_version_spoken() {
    assert_eq!(version_seen(Protocol::Http1).await, "HTTP/1.1");
    assert_eq!(version_seen(Protocol::Http2).await, "HTTP/2.0");
}

/// Serves TLS with a fresh self-signed certificate for `localhost` on one connection;
/// returns the `https://127.0.0.1:…` base URL and the certificate's PEM.
async fn tls_server() -> (String, String) {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(certified.signing_key.serialize_der().into());
    let config = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![certified.cert.der().clone()], key)
    .unwrap();
    (serve_tls(config).await, certified.cert.pem())
}

#[tokio::test]
async fn a_ca_file_and_sni_are_what_the_handshake_verifies() {
    let (base, ca_pem) = tls_server().await;
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, ca_pem).unwrap();
    let get = |tls: TlsOptions| {
        let base = base.clone();
        async move {
            let client = build(&ClientOptions {
                tls,
                ..Default::default()
            })
            .unwrap();
            client.get(base.parse().unwrap()).await
        }
    };
    // The certificate names `localhost`, the URL an IP: the SNI decides what is verified.
    let ok = get(TlsOptions {
        ca_file: Some(ca.clone()),
        sni: Some("localhost".to_string()),
        ..Default::default()
    })
    .await
    .unwrap();
    assert_eq!(ok.status(), http::StatusCode::OK);
    // The built-in web roots do not trust the self-signed CA.
    let err = get(TlsOptions {
        sni: Some("localhost".to_string()),
        ..Default::default()
    })
    .await
    .unwrap_err();
    assert!(
        error_chain(&err).contains("certificate"),
        "{}",
        error_chain(&err)
    );
    // Without the SNI the name checked is 127.0.0.1, which the certificate does not hold.
    let err = get(TlsOptions {
        ca_file: Some(ca),
        ..Default::default()
    })
    .await
    .unwrap_err();
    assert!(
        error_chain(&err).contains("certificate"),
        "{}",
        error_chain(&err)
    );
    // `insecure`: neither the unknown CA nor the wrong name stops it.
    let ok = get(TlsOptions {
        insecure: true,
        ..Default::default()
    })
    .await
    .unwrap();
    assert_eq!(ok.status(), http::StatusCode::OK);
}

/// Serves `ok` over TLS with `config` on loopback; the `https://127.0.0.1:…` base URL.
async fn serve_tls(config: rustls::ServerConfig) -> String {
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let Ok(tls) = acceptor.accept(stream).await else {
                continue;
            };
            let service = service_fn(|_req: http::Request<hyper::body::Incoming>| async {
                Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from_static(b"ok"))))
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                .await;
        }
    });
    format!("https://{addr}")
}

/// A server that asks for a client certificate signed by `client_ca`.
async fn mtls_server(client_ca: &rcgen::Certificate) -> String {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(certified.signing_key.serialize_der().into());
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(client_ca.der().clone()).unwrap();
    let verifier =
        rustls::server::WebPkiClientVerifier::builder_with_provider(roots.into(), provider.clone())
            .build()
            .unwrap();
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![certified.cert.der().clone()], key)
        .unwrap();
    serve_tls(config).await
}

#[tokio::test]
async fn a_client_certificate_is_presented_when_configured() {
    let client = rcgen::generate_simple_self_signed(vec!["tollgate".to_string()]).unwrap();
    let base = mtls_server(&client.cert).await;
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("client.pem"), dir.path().join("client.key"));
    std::fs::write(&cert, client.cert.pem()).unwrap();
    std::fs::write(&key, client.signing_key.serialize_pem()).unwrap();
    let get = |client_cert: Option<(PathBuf, PathBuf)>| {
        let base = base.clone();
        async move {
            let options = ClientOptions {
                tls: TlsOptions {
                    insecure: true,
                    client_cert,
                    ..Default::default()
                },
                ..Default::default()
            };
            build(&options).unwrap().get(base.parse().unwrap()).await
        }
    };
    let ok = get(Some((cert.clone(), key.clone()))).await.unwrap();
    assert_eq!(ok.status(), http::StatusCode::OK);
    assert!(get(None).await.is_err(), "no certificate: refused");
    // A key file without a key is an error when the client is built.
    let err = client_config(&TlsOptions {
        client_cert: Some((cert.clone(), cert)),
        ..Default::default()
    })
    .unwrap_err();
    assert!(err.to_string().contains("no PEM private key"), "{err}");
}
