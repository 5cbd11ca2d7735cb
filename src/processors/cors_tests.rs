//! The `cors` policy through the pipeline, as a browser's requests reach it.

use http::HeaderMap;

use super::*;
use crate::pipeline::testing::exchange_at;
use crate::pipeline::Verdict;

fn route(policy: &str) -> String {
    format!(
        "binds:\n- port: 1\n  listeners:\n  - routes:\n    - policies:\n        cors: {policy}\n"
    )
}

const POLICY: &str = "{ allowOrigins: [\"https://app.example.com\", \"https://*.tools.example.com:8443\"], allowMethods: [GET, POST], allowHeaders: [content-type, authorization], exposeHeaders: [x-request-id], allowCredentials: true, maxAge: 10m }";

fn headers(pairs: &[(&'static str, &str)]) -> Headers {
    let mut map = HeaderMap::new();
    for (k, v) in pairs {
        map.insert(*k, HeaderValue::from_str(v).unwrap());
    }
    Headers::new(map)
}

async fn request(
    policy: &str,
    method: &str,
    pairs: &[(&'static str, &str)],
) -> (Verdict, crate::pipeline::Exchange) {
    let mut ex = exchange_at(&route(policy), method, "/v1/chat/completions");
    let mut h = headers(pairs);
    let verdict = ex.request_headers(&mut h).await;
    (verdict, ex)
}

#[tokio::test]
async fn an_allowed_preflight_is_answered_here_with_the_policy() {
    let (verdict, _) = request(
        POLICY,
        "OPTIONS",
        &[
            ("origin", "https://app.example.com"),
            ("access-control-request-method", "POST"),
        ],
    )
    .await;
    let Verdict::Respond(reply) = verdict else {
        panic!("a preflight is never forwarded")
    };
    assert_eq!(reply.status, 200);
    let h = &reply.headers;
    assert_eq!(h["access-control-allow-origin"], "https://app.example.com");
    assert_eq!(h["access-control-allow-methods"], "GET, POST");
    assert_eq!(
        h["access-control-allow-headers"],
        "content-type, authorization"
    );
    assert_eq!(h["access-control-max-age"], "600");
    assert_eq!(h["access-control-allow-credentials"], "true");
    assert_eq!(h["access-control-expose-headers"], "x-request-id");
    assert_eq!(h["vary"], "origin");
}

#[tokio::test]
async fn a_preflight_from_another_origin_gets_no_cors_headers_and_is_not_forwarded() {
    for origin in [
        "https://evil.example.com",
        "http://app.example.com",
        "https://app.example.com:444",
        "https://x.tools.example.com",
        "not an origin",
    ] {
        let (verdict, _) = request(
            POLICY,
            "OPTIONS",
            &[
                ("origin", origin),
                ("access-control-request-method", "POST"),
            ],
        )
        .await;
        let Verdict::Respond(reply) = verdict else {
            panic!("{origin}: answered locally")
        };
        assert_eq!(reply.status, 200, "{origin}");
        assert!(reply.headers.is_empty(), "{origin}: {:?}", reply.headers);
    }
}

#[tokio::test]
async fn wildcard_hosts_and_explicit_ports_match() {
    let (verdict, _) = request(
        POLICY,
        "OPTIONS",
        &[
            ("origin", "https://a.b.tools.example.com:8443"),
            ("access-control-request-method", "GET"),
        ],
    )
    .await;
    let Verdict::Respond(reply) = verdict else {
        panic!()
    };
    assert_eq!(
        reply.headers["access-control-allow-origin"],
        "https://a.b.tools.example.com:8443"
    );
}

#[tokio::test]
async fn allowed_requests_get_the_headers_on_their_response_others_pass_untouched() {
    let (verdict, mut ex) = request(POLICY, "POST", &[("origin", "https://app.example.com")]).await;
    assert!(matches!(verdict, Verdict::Continue(())));
    ex.cx.response_status = Some(200);
    let mut resp = headers(&[("vary", "accept-encoding")]);
    let _ = ex.response_headers(&mut resp).await;
    let m = resp.map();
    assert_eq!(m["access-control-allow-origin"], "https://app.example.com");
    assert_eq!(m["access-control-allow-credentials"], "true");
    assert_eq!(m["access-control-expose-headers"], "x-request-id");
    let vary: Vec<_> = m.get_all("vary").iter().collect();
    assert_eq!(vary, ["accept-encoding", "origin"]);

    for pairs in [&[("origin", "https://evil.example.com")][..], &[][..]] {
        let (verdict, mut ex) = request(POLICY, "POST", pairs).await;
        assert!(matches!(verdict, Verdict::Continue(())));
        ex.cx.response_status = Some(200);
        let mut resp = headers(&[]);
        let _ = ex.response_headers(&mut resp).await;
        assert!(
            resp.map().get("access-control-allow-origin").is_none(),
            "{pairs:?}"
        );
    }
}

#[tokio::test]
async fn wildcards_echo_what_the_preflight_asks() {
    let policy = "{ allowOrigins: [\"*\"], allowMethods: [\"*\"], allowHeaders: [\"*\"] }";
    let (verdict, _) = request(
        policy,
        "OPTIONS",
        &[
            ("origin", "http://localhost:5173"),
            ("access-control-request-method", "PUT"),
            ("access-control-request-headers", "x-a,  x-b"),
        ],
    )
    .await;
    let Verdict::Respond(reply) = verdict else {
        panic!()
    };
    assert_eq!(
        reply.headers["access-control-allow-origin"],
        "http://localhost:5173"
    );
    assert_eq!(reply.headers["access-control-allow-methods"], "PUT");
    assert_eq!(reply.headers["access-control-allow-headers"], "x-a, x-b");
    assert!(reply
        .headers
        .get("access-control-allow-credentials")
        .is_none());
}

#[test]
fn bad_policies_name_the_field() {
    for (policy, field) in [
        ("{ allowOrigins: [\"ftp://x\"] }", "cors.allowOrigins[0]"),
        (
            "{ allowOrigins: [\"https://x/path\"] }",
            "cors.allowOrigins[0]",
        ),
        ("{ allowMethods: [\"GE T\"] }", "cors.allowMethods[0]"),
        (
            "{ allowHeaders: [ok, \"bad header\"] }",
            "cors.allowHeaders[1]",
        ),
        ("{ exposeHeaders: [\"x y\"] }", "cors.exposeHeaders[0]"),
    ] {
        let loaded = crate::config::parse_str(&route(policy)).unwrap();
        let err = match crate::pipeline::Pipeline::build(loaded, crate::services::Services::new()) {
            Ok(_) => panic!("{policy} accepted"),
            Err(e) => e.to_string(),
        };
        assert!(
            err.contains(&format!("binds[0].listeners[0].routes[0].policies.{field}")),
            "{policy}: {err}"
        );
    }
}

#[test]
fn glob_matches_runs_of_characters() {
    assert!(glob("*.example.com", "a.example.com"));
    assert!(glob("*.example.com", "a.b.example.com"));
    assert!(!glob("*.example.com", "example.com"));
    assert!(glob("a*b*c", "abc"));
    assert!(glob("a*b*c", "aXbYc"));
    assert!(!glob("a*b*c", "aXbY"));
    assert!(glob("*", ""));
    assert!(!glob("x", "y"));
}

#[tokio::test]
async fn a_refusal_by_a_later_policy_carries_the_cors_headers() {
    // The prompt guard refuses the prompt (an API key in it) after cors let it through.
    let yaml = format!(
        "binds:\n- port: 1\n  listeners:\n  - routes:\n    - policies:\n        cors: {POLICY}\n        requestHeaderModifier: {{ set: {{ x-a: b }} }}\n        promptGuard:\n          request:\n            rules:\n            - {{ name: secrets, builtins: [openai_api_key], action: reject }}\n"
    );
    let mut ex = crate::pipeline::testing::exchange_at(&yaml, "POST", "/v1/chat/completions");
    let mut h = headers(&[
        ("origin", "https://app.example.com"),
        ("content-type", "application/json"),
    ]);
    assert!(matches!(
        ex.request_headers(&mut h).await,
        Verdict::Continue(())
    ));
    let body = bytes::Bytes::from_static(br#"{"model":"m","messages":[{"role":"user","content":"my key is sk-proj-AbCdEfGhIjKlMnOpQrStUvWxYz0123456789AbCdEfGhIjKl"}]}"#);
    let Verdict::Respond(reply) = ex.request_body(body, true, false).await else {
        panic!("the guard rejects the prompt")
    };
    assert_eq!(reply.status, 403, "{reply:?}");
    assert_eq!(
        reply.headers["access-control-allow-origin"],
        "https://app.example.com"
    );
    assert_eq!(reply.headers["access-control-allow-credentials"], "true");
}
