use std::io::Write as _;
use std::time::Duration;

use jsonwebtoken::get_current_timestamp;
use serde_json::json;

use super::*;

struct Fixture {
    auth: JwtAuth,
    issuer: Issuer,
    file: tempfile::NamedTempFile,
}

fn write_jwks(file: &tempfile::NamedTempFile, issuers: &[&Issuer]) {
    let mut f = std::fs::File::create(file.path()).unwrap();
    f.write_all(Issuer::jwks(issuers).to_string().as_bytes())
        .unwrap();
}

fn fixture(scopes: &[&str]) -> Fixture {
    let issuer = Issuer::new("k1");
    let file = tempfile::NamedTempFile::new().unwrap();
    write_jwks(&file, &[&issuer]);
    let client = Arc::new(crate::outbound::client(&Default::default()).unwrap());
    let source = JwksSource::File(file.path().to_path_buf());
    let keys = KeyStore::new(source, Duration::from_secs(3600), client).unwrap();
    let auth = JwtAuth {
        issuer: "https://idp.test".into(),
        audiences: vec!["https://gw.test/mcp".into()],
        clock_skew: Duration::from_secs(30),
        required_scopes: scopes.iter().map(|s| s.to_string()).collect(),
        keys,
    };
    Fixture { auth, issuer, file }
}

fn claims() -> serde_json::Value {
    json!({
        "iss": "https://idp.test", "aud": "https://gw.test/mcp", "sub": "alice",
        "exp": get_current_timestamp() + 300, "scope": "mcp:tools other",
    })
}

fn with(field: &str, value: serde_json::Value) -> serde_json::Value {
    let mut c = claims();
    c[field] = value;
    c
}

fn invalid(text: &str) -> Result<serde_json::Value, AuthError> {
    Err(AuthError::Invalid(text.into()))
}

#[tokio::test]
async fn a_good_token_yields_its_claims() {
    let f = fixture(&["mcp:tools"]);
    let claims = f.auth.verify(&f.issuer.sign(&claims())).await.unwrap();
    assert_eq!(claims["sub"], "alice");
}

#[tokio::test]
async fn each_broken_claim_is_named() {
    let f = fixture(&[]);
    let now = get_current_timestamp();
    let cases = [
        (with("aud", json!("https://other.test")), "wrong audience"),
        (with("iss", json!("https://evil.test")), "wrong issuer"),
        (with("exp", json!(now - 120)), "token expired"),
        (with("nbf", json!(now + 120)), "token not yet valid (nbf)"),
    ];
    for (c, why) in cases {
        assert_eq!(f.auth.verify(&f.issuer.sign(&c)).await, invalid(why), "{c}");
    }
    let mut no_exp = claims();
    no_exp.as_object_mut().unwrap().remove("exp");
    let got = f.auth.verify(&f.issuer.sign(&no_exp)).await;
    assert_eq!(got, invalid("missing claim \"exp\""));
}

#[tokio::test]
async fn skew_within_the_bound_is_tolerated() {
    let f = fixture(&[]);
    let c = with("exp", json!(get_current_timestamp() - 10));
    assert!(f.auth.verify(&f.issuer.sign(&c)).await.is_ok());
}

#[tokio::test]
async fn a_key_outside_the_set_or_a_changed_token_fails() {
    let f = fixture(&[]);
    let stranger = Issuer::new("k1");
    let got = f.auth.verify(&stranger.sign(&claims())).await;
    assert_eq!(got, invalid("invalid signature"));
    let token = f.issuer.sign(&claims());
    let (head, rest) = token.split_once('.').unwrap();
    let (_, sig) = rest.split_once('.').unwrap();
    let forged = format!(
        "{head}.{}.{sig}",
        base64_json(&with("sub", json!("mallory")))
    );
    assert_eq!(f.auth.verify(&forged).await, invalid("invalid signature"));
    assert_eq!(f.auth.verify("not.a.jwt").await, invalid("malformed token"));
    let long = "a".repeat(MAX_TOKEN_LEN + 1);
    assert_eq!(f.auth.verify(&long).await, invalid("token too long"));
}

fn base64_json(v: &serde_json::Value) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
}

#[tokio::test]
async fn a_rotated_key_is_fetched_on_its_first_token_and_unknown_kids_are_rate_limited() {
    let f = fixture(&[]);
    let next = Issuer::new("k2");
    write_jwks(&f.file, &[&f.issuer, &next]);
    let claims = f.auth.verify(&next.sign(&claims())).await.unwrap();
    assert_eq!(claims["sub"], "alice");
    // A third key right away: the cooldown holds the refetch back.
    let third = Issuer::new("k3");
    write_jwks(&f.file, &[&f.issuer, &next, &third]);
    let got = f.auth.verify(&third.sign(&self::claims())).await;
    assert_eq!(got, invalid("unknown signing key (kid)"));
}

#[tokio::test]
async fn a_missing_scope_is_named() {
    let f = fixture(&["mcp:tools", "mcp:admin"]);
    let got = f.auth.verify(&f.issuer.sign(&claims())).await;
    assert_eq!(
        got,
        Err(AuthError::Scope {
            missing: "mcp:admin".into()
        })
    );
    let scp = with("scp", json!(["mcp:tools", "mcp:admin"]));
    let mut scp = scp;
    scp.as_object_mut().unwrap().remove("scope");
    assert!(f.auth.verify(&f.issuer.sign(&scp)).await.is_ok());
}

#[test]
fn bearer_tokens_are_read_case_insensitively() {
    assert_eq!(bearer_token("Bearer abc"), Some("abc"));
    assert_eq!(bearer_token("bearer  abc "), Some("abc"));
    assert_eq!(bearer_token("Basic abc"), None);
    assert_eq!(bearer_token("Bearer "), None);
    assert_eq!(bearer_token("Bearer"), None);
}

#[test]
fn jwks_documents_keep_usable_signing_keys_only() {
    let a = Issuer::new("a");
    let source = JwksSource::File("x".into());
    let doc = json!({"keys": [
        a.jwk(),
        {"kty": "EC", "crv": "P-256", "use": "enc", "kid": "e", "x": a.jwk()["x"], "y": a.jwk()["y"]},
        {"kty": "weird", "kid": "w"},
        {"kty": "RSA", "kid": "r", "n": "sXch", "e": "AQAB"},
    ]});
    let keys = jwks::parse_set(&source, doc.to_string().as_bytes()).unwrap();
    let kids: Vec<_> = keys.iter().map(|k| k.kid.clone().unwrap()).collect();
    assert_eq!(kids, ["a", "r"]);
    let err = jwks::parse_set(&source, b"{\"nokeys\": 1}").unwrap_err();
    assert_eq!(
        err.to_string(),
        "file x is not a JWKS document: no `keys` array"
    );
}

/// A loopback HTTP server answering every request with `body` as JSON; its URL.
async fn serve_json(body: String) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let body = body.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = conn.read(&mut buf).await;
                let head = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                let _ = conn.write_all(head.as_bytes()).await;
                let _ = conn.write_all(body.as_bytes()).await;
            });
        }
    });
    format!("http://127.0.0.1:{port}/jwks.json")
}

fn url_auth(url: &str) -> JwtAuth {
    let client = Arc::new(crate::outbound::client(&Default::default()).unwrap());
    let source = JwksSource::Url(url.parse().unwrap());
    JwtAuth {
        issuer: "https://idp.test".into(),
        audiences: vec!["https://gw.test/mcp".into()],
        clock_skew: Duration::from_secs(30),
        required_scopes: Vec::new(),
        keys: KeyStore::new(source, Duration::from_secs(3600), client).unwrap(),
    }
}

#[tokio::test]
async fn keys_at_a_url_are_fetched_on_first_use_and_a_dead_source_is_unavailable() {
    let issuer = Issuer::new("u1");
    let url = serve_json(Issuer::jwks(&[&issuer]).to_string()).await;
    let auth = url_auth(&url);
    assert!(!auth.keys.loaded());
    let claims = auth.verify(&issuer.sign(&claims())).await.unwrap();
    assert_eq!(claims["sub"], "alice");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dead = url_auth(&format!("http://127.0.0.1:{port}/jwks.json"));
    let got = dead.verify(&issuer.sign(&self::claims())).await;
    assert_eq!(got, Err(AuthError::KeysUnavailable));
}
