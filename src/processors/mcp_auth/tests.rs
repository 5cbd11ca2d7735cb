use jsonwebtoken::get_current_timestamp;
use serde_json::{json, Value};

use crate::auth::Issuer;
use crate::pipeline::testing::{build_error, exchange_at, header_map};
use crate::pipeline::{Exchange, Headers, Verdict};

struct Setup {
    issuer: Issuer,
    _dir: tempfile::TempDir,
    yaml: String,
}

fn setup(extra: &str) -> Setup {
    let issuer = Issuer::new("k1");
    let dir = tempfile::tempdir().unwrap();
    let jwks = dir.path().join("jwks.json");
    std::fs::write(&jwks, Issuer::jwks(&[&issuer]).to_string()).unwrap();
    let yaml = format!(
        "binds:\n- port: 1\n  listeners:\n  - routes:\n    - matches: [{{path: {{exact: /mcp}}}}]\n      policies:\n        mcpAuthentication:\n          issuer: https://idp.test\n          audiences: [https://gw.test/mcp]\n          jwks: {{file: {}}}\n{extra}",
        jwks.display()
    );
    Setup {
        issuer,
        _dir: dir,
        yaml,
    }
}

fn claims() -> Value {
    json!({"iss": "https://idp.test", "aud": "https://gw.test/mcp", "sub": "alice",
           "exp": get_current_timestamp() + 300, "scope": "tools"})
}

async fn run(ex: &mut Exchange, pairs: &[(&str, &str)]) -> (Verdict, Headers) {
    let mut headers = Headers::new(header_map(pairs));
    let verdict = ex.request_headers(&mut headers).await;
    (verdict, headers)
}

fn refusal(v: Verdict) -> (u16, String, Value) {
    let Verdict::Respond(r) = v else {
        panic!("expected a refusal")
    };
    let challenge = r
        .headers
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let body = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
    (r.status.as_u16(), challenge, body)
}

const METADATA: &str =
    "resource_metadata=\"https://gw.test/.well-known/oauth-protected-resource/mcp\"";

#[tokio::test]
async fn a_good_token_passes_with_its_claims_and_is_not_forwarded() {
    let s = setup("");
    let mut ex = exchange_at(&s.yaml, "POST", "/mcp");
    let bearer = format!("Bearer {}", s.issuer.sign(&claims()));
    let (verdict, headers) = run(&mut ex, &[("authorization", &bearer)]).await;
    assert!(matches!(verdict, Verdict::Continue(())), "{verdict:?}");
    assert_eq!(ex.cx.jwt.as_ref().unwrap()["sub"], "alice");
    assert!(headers.map().get("authorization").is_none());
}

#[tokio::test]
async fn no_token_is_401_with_the_metadata_url() {
    let s = setup("");
    let mut ex = exchange_at(&s.yaml, "POST", "/mcp");
    let (status, challenge, body) = refusal(run(&mut ex, &[]).await.0);
    assert_eq!(status, 401);
    assert_eq!(challenge, format!("Bearer {METADATA}"));
    assert_eq!(body["error"]["message"], "a bearer token is required");
    assert_eq!(body["id"], Value::Null);
}

#[tokio::test]
async fn a_bad_token_is_401_invalid_token_naming_why() {
    let s = setup("");
    let mut expired = claims();
    expired["exp"] = json!(get_current_timestamp() - 600);
    for (token, why) in [
        (s.issuer.sign(&expired), "token expired"),
        ("abc".to_string(), "malformed token"),
    ] {
        let mut ex = exchange_at(&s.yaml, "POST", "/mcp");
        let bearer = format!("Bearer {token}");
        let (status, challenge, _) = refusal(run(&mut ex, &[("authorization", &bearer)]).await.0);
        assert_eq!(status, 401);
        let want =
            format!("Bearer error=\"invalid_token\", error_description=\"{why}\", {METADATA}");
        assert_eq!(challenge, want);
    }
}

#[tokio::test]
async fn a_missing_scope_is_403_insufficient_scope() {
    let s = setup("          requiredScopes: [tools, admin]\n");
    let mut ex = exchange_at(&s.yaml, "POST", "/mcp");
    let bearer = format!("Bearer {}", s.issuer.sign(&claims()));
    let (status, challenge, _) = refusal(run(&mut ex, &[("authorization", &bearer)]).await.0);
    assert_eq!(status, 403);
    let want = format!("Bearer error=\"insufficient_scope\", scope=\"admin\", {METADATA}");
    assert_eq!(challenge, want);
    let mut ex = exchange_at(&s.yaml, "POST", "/mcp");
    let (status, challenge, _) = refusal(run(&mut ex, &[]).await.0);
    assert_eq!(status, 401);
    assert_eq!(
        challenge,
        format!("Bearer {METADATA}, scope=\"tools admin\"")
    );
}

#[tokio::test]
async fn the_metadata_document_is_served_with_cors() {
    let s = setup("          resourceMetadata: {resourceName: Tools}\n");
    let path = "/.well-known/oauth-protected-resource/mcp";
    let mut ex = exchange_at(&s.yaml, "GET", path);
    let Verdict::Respond(r) = run(&mut ex, &[]).await.0 else {
        panic!("no document")
    };
    assert_eq!(r.status, 200);
    assert_eq!(r.headers["access-control-allow-origin"], "*");
    let doc: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(
        doc,
        json!({"resource": "https://gw.test/mcp", "authorization_servers": ["https://idp.test"],
               "bearer_methods_supported": ["header"], "resource_name": "Tools"})
    );
    let mut ex = exchange_at(&s.yaml, "OPTIONS", path);
    let Verdict::Respond(r) = run(&mut ex, &[]).await.0 else {
        panic!("no preflight answer")
    };
    assert_eq!(r.status, 204);
    // The route matches the metadata path though its own match is `/mcp` only.
    let p = crate::pipeline::testing::pipeline(&s.yaml);
    let head = crate::pipeline::testing::request_head("GET", path);
    let selected = p
        .ext_proc_routes
        .select(&head, &http::HeaderMap::new(), None);
    assert!(selected.is_some());
}

#[test]
fn config_errors_name_their_fields() {
    let s = setup("          clockSkew: 10m\n");
    let err = build_error(&s.yaml);
    assert!(
        err.contains("binds[0].listeners[0].routes[0].policies.mcpAuthentication.clockSkew: must be at most 5m"),
        "{err}"
    );
    let s = setup("          resourceMetadata: {resource: 'ftp://gw.test/mcp'}\n");
    let err = build_error(&s.yaml);
    assert!(err.contains("mcpAuthentication.resourceMetadata.resource: \"ftp://gw.test/mcp\" must start with https:// or http://"), "{err}");
    let s = setup("");
    let yaml = s
        .yaml
        .replace("jwks: {file:", "jwks: {url: http://127.0.0.1:9/k, file:");
    let err = build_error(&yaml);
    assert!(
        err.contains("mcpAuthentication.jwks: set exactly one of `file` and `url`"),
        "{err}"
    );
    let yaml = s.yaml.replace("jwks.json", "missing.json");
    let err = build_error(&yaml);
    assert!(
        err.contains("mcpAuthentication.jwks.file: cannot read file"),
        "{err}"
    );
}
