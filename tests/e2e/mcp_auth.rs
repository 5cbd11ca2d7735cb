//! The MCP gateway as an OAuth resource server, end to end: JWTs checked against a JWKS
//! file (rotated while tollgate runs), RFC 9728 metadata, CEL rules that filter lists
//! and refuse calls, and sessions bound to their user; driven by the official Python
//! SDK clients (1.x and 2.x) with bearer tokens and by a plain HTTP client.

use jsonwebtoken::get_current_timestamp;
use serde_json::{json, Value};
use tollgate::auth::Issuer;

use crate::support::client::{self, Req};
use crate::support::free_port;
use crate::support::mcp::{gateway_yaml, post, run_clients, McpServer, Sdk, INITIALIZE};
use crate::support::tollgate::Tollgate;

const ISSUER: &str = "https://idp.test";

struct Gateway {
    _tollgate: Tollgate,
    port: u16,
    jwks: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Gateway {
    async fn start(servers: &[&McpServer], issuers: &[&Issuer]) -> Self {
        let port = free_port();
        let dir = tempfile::tempdir().unwrap();
        let jwks = dir.path().join("jwks.json");
        std::fs::write(&jwks, Issuer::jwks(issuers).to_string()).unwrap();
        let policies = format!(
            "      policies:\n        mcpAuthentication:\n          issuer: {ISSUER}\n          audiences: [\"http://127.0.0.1:{port}/mcp\"]\n          jwks: {{file: \"{}\"}}\n          resourceMetadata: {{scopesSupported: [mcp]}}\n        mcpAuthorization:\n          rules:\n          - 'jwt.role == \"admin\"'\n          - 'has(mcp.tool) && mcp.tool.name == \"echo\"'\n",
            jwks.display()
        );
        // weather's own credential (tests start it requiring this header).
        let yaml = gateway_yaml(port, servers, "")
            .replace("      mcp:\n", &format!("{policies}      mcp:\n"))
            .replace(
                "{name: weather, url:",
                "{name: weather, headers: {x-target-key: weather-secret}, url:",
            );
        let tollgate = Tollgate::start(&yaml).await;
        Gateway {
            _tollgate: tollgate,
            port,
            jwks,
            _dir: dir,
        }
    }

    fn audience(&self) -> String {
        format!("http://127.0.0.1:{}/mcp", self.port)
    }

    fn claims(&self, sub: &str, role: &str) -> Value {
        json!({"iss": ISSUER, "aud": self.audience(), "sub": sub, "role": role,
               "exp": get_current_timestamp() + 600})
    }

    fn metadata_url(&self) -> String {
        format!(
            "http://127.0.0.1:{}/.well-known/oauth-protected-resource/mcp",
            self.port
        )
    }
}

fn job(sdk: &str, port: u16, token: &str, calls: &[&str]) -> Value {
    let calls: Vec<Value> = calls
        .iter()
        .map(|n| {
            let arguments = if n.ends_with("echo") {
                json!({"text": "hi"})
            } else {
                json!({})
            };
            json!({"name": n, "arguments": arguments})
        })
        .collect();
    json!({"sdk": sdk, "url": format!("http://127.0.0.1:{port}/mcp"), "calls": calls, "token": token})
}

async fn raw(port: u16, body: &str, token: Option<&str>, session: Option<&str>) -> client::Reply {
    let mut req = post(body);
    if let Some(t) = token {
        req = req.header("authorization", &format!("Bearer {t}"));
    }
    if let Some(s) = session {
        req = req.header("mcp-session-id", s);
    }
    client::must(port, req).await
}

#[tokio::test]
async fn sdk_clients_see_and_call_only_what_their_token_allows() {
    // weather takes only its own credential, and never a client's token.
    let weather = McpServer::start_requiring("weather", "x-target-key=weather-secret").await;
    let calendar = McpServer::start(Sdk::V2, "calendar", true).await;
    let key = Issuer::new("k1");
    let gw = Gateway::start(&[&weather, &calendar], &[&key]).await;
    let intern = key.sign(&gw.claims("ann", "intern"));
    let admin = key.sign(&gw.claims("root", "admin"));
    let jobs = |sdk: &str| {
        vec![
            job(sdk, gw.port, &intern, &["weather__echo", "calendar__echo"]),
            job(sdk, gw.port, &admin, &["calendar__calendar_only"]),
        ]
    };
    for (sdk, venv) in [("1", Sdk::V1), ("2", Sdk::V2)] {
        let results = run_clients(venv, jobs(sdk)).await;
        assert_eq!(
            results[0]["tools"],
            json!(["weather__echo", "calendar__echo"]),
            "sdk {sdk}"
        );
        let texts: Vec<&Value> = results[0]["calls"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| &c["text"])
            .collect();
        assert_eq!(
            texts,
            [&json!("weather:hi"), &json!("calendar:hi")],
            "sdk {sdk}"
        );
        assert_eq!(
            results[1]["tools"].as_array().unwrap().len(),
            4,
            "sdk {sdk}"
        );
        assert_eq!(
            results[1]["calls"][0]["is_error"], false,
            "sdk {sdk}: {}",
            results[1]
        );
    }

    // A call the rules do not allow: 403 with a JSON-RPC error naming the tool.
    let init = raw(gw.port, INITIALIZE, Some(&intern), None).await;
    assert_eq!(init.status, 200, "{}", init.text());
    let sid = init.header("mcp-session-id").unwrap().to_string();
    let call = r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"calendar__calendar_only","arguments":{}}}"#;
    let denied = raw(gw.port, call, Some(&intern), Some(&sid)).await;
    assert_eq!(denied.status, 403, "{}", denied.text());
    assert_eq!(
        (
            denied.json()["id"].clone(),
            denied.json()["error"]["code"].clone()
        ),
        (json!(7), json!(-32001))
    );
    // The intern's session does not open with another user's token.
    let other = raw(gw.port, call, Some(&admin), Some(&sid)).await;
    assert_eq!(other.status, 404, "{}", other.text());
}

#[tokio::test]
async fn tokens_are_checked_and_a_rotated_key_is_picked_up() {
    let weather = McpServer::start(Sdk::V1, "weather", false).await;
    let key = Issuer::new("k1");
    let gw = Gateway::start(&[&weather], &[&key]).await;

    // No token: 401 pointing at the metadata, which is served with CORS.
    let none = raw(gw.port, INITIALIZE, None, None).await;
    assert_eq!(none.status, 401);
    let challenge = format!(
        "Bearer resource_metadata=\"{}\", scope=\"mcp\"",
        gw.metadata_url()
    );
    assert_eq!(none.header("www-authenticate"), Some(challenge.as_str()));
    assert_eq!(none.json()["error"]["code"], -32001);
    let doc = client::must(
        gw.port,
        Req::get("/.well-known/oauth-protected-resource/mcp"),
    )
    .await;
    assert_eq!(doc.status, 200);
    assert_eq!(doc.header("access-control-allow-origin"), Some("*"));
    assert_eq!(
        doc.json(),
        json!({"resource": gw.audience(), "authorization_servers": [ISSUER],
               "bearer_methods_supported": ["header"], "scopes_supported": ["mcp"]})
    );

    // Each broken token: 401 invalid_token saying why.
    let mut wrong_aud = gw.claims("ann", "admin");
    wrong_aud["aud"] = json!("http://127.0.0.1:1/mcp");
    let mut expired = gw.claims("ann", "admin");
    expired["exp"] = json!(get_current_timestamp() - 3600);
    let stranger = Issuer::new("k1");
    let cases = [
        (key.sign(&wrong_aud), "wrong audience"),
        (key.sign(&expired), "token expired"),
        (
            stranger.sign(&gw.claims("ann", "admin")),
            "invalid signature",
        ),
    ];
    for (token, why) in cases {
        let r = raw(gw.port, INITIALIZE, Some(&token), None).await;
        assert_eq!(r.status, 401, "{why}");
        let challenge = r.header("www-authenticate").unwrap_or_default();
        assert!(
            challenge.starts_with(&format!(
                "Bearer error=\"invalid_token\", error_description=\"{why}\""
            )),
            "{challenge}"
        );
    }

    // A new key in the JWKS file is used for its first token, without a restart.
    let next = Issuer::new("k2");
    let token = next.sign(&gw.claims("ann", "admin"));
    std::fs::write(&gw.jwks, Issuer::jwks(&[&key, &next]).to_string()).unwrap();
    let rotated = raw(gw.port, INITIALIZE, Some(&token), None).await;
    assert_eq!(rotated.status, 200, "{}", rotated.text());
}
