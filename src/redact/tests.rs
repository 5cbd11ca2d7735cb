//! One test per secret shape, and the shapes that must pass untouched.

use super::*;

#[test]
fn url_userinfo_is_hidden_user_and_password_alike() {
    assert_eq!(
        redact_url("redis://:hunter2@127.0.0.1:6379/0"),
        "redis://<redacted>@127.0.0.1:6379/0"
    );
    assert_eq!(
        redact_url("https://bob:pw@example.com/v1?x=1"),
        "https://<redacted>@example.com/v1?x=1"
    );
    assert_eq!(
        redact_url("https://ghp_token@github.com"),
        "https://<redacted>@github.com"
    );
}

#[test]
fn credential_query_parameters_are_hidden_others_kept() {
    let cases = [
        ("http://h/guard?key=S1", "http://h/guard?key=<redacted>"),
        (
            "http://h/m?model=x&api_key=S1&apikey=S2",
            "http://h/m?model=x&api_key=<redacted>&apikey=<redacted>",
        ),
        (
            "https://h/p?access_token=S1;sig=S2&se=2030",
            "https://h/p?access_token=<redacted>;sig=<redacted>&se=2030",
        ),
        (
            "https://h/p?X-Amz-Signature=S1&X-Amz-Credential=S2",
            "https://h/p?X-Amz-Signature=<redacted>&X-Amz-Credential=<redacted>",
        ),
        (
            "https://h/p?password=S1&secret=S2&token=S3",
            "https://h/p?password=<redacted>&secret=<redacted>&token=<redacted>",
        ),
        (
            "https://h/cb#access_token=S1&x=1",
            "https://h/cb#access_token=<redacted>&x=1",
        ),
    ];
    for (url, want) in cases {
        assert_eq!(redact_url(url), want, "{url}");
    }
}

#[test]
fn urls_without_secrets_are_borrowed_unchanged() {
    for url in [
        "http://127.0.0.1:8080/v1/chat/completions",
        "https://api.openai.com/v1/moderations?model=omni",
        "http://h/a@b",
        "not a url",
        "127.0.0.1:6379",
    ] {
        assert!(matches!(redact_url(url), Cow::Borrowed(_)), "{url}");
    }
}

#[test]
fn credential_headers_by_name_and_by_word() {
    for name in [
        "Authorization",
        "proxy-authorization",
        "x-api-key",
        "api-key",
        "X-Goog-Api-Key",
        "cookie",
        "set-cookie",
        "x-auth-token",
        "x-client-secret",
        "x-amz-security-token",
    ] {
        assert!(is_secret_header(name), "{name}");
    }
    for name in ["content-type", "x-request-id", "host", "x-team", "accept"] {
        assert!(!is_secret_header(name), "{name}");
    }
}

#[test]
fn secret_fields_by_name_but_not_file_paths() {
    for name in ["apiKey", "password", "clientSecret", "token", "bearerToken"] {
        assert!(is_secret_field(name), "{name}");
    }
    for name in ["keyFile", "url", "failureMode", "model", "certFile"] {
        assert!(!is_secret_field(name), "{name}");
    }
}

#[test]
fn urls_inside_free_text_are_redacted() {
    let line = r#"WARN guard service failed error=guard webhook http://127.0.0.1:9/g?key=S1: refused url="redis://:S2@h:1" ok=http://h/plain"#;
    let out = redact_text(line);
    assert!(!out.contains("S1") && !out.contains("S2"), "{out}");
    assert!(
        out.contains("http://127.0.0.1:9/g?key=<redacted>:"),
        "{out}"
    );
    assert!(out.contains(r#""redis://<redacted>@h:1""#), "{out}");
    assert!(out.contains("ok=http://h/plain"), "{out}");
    // JSON log lines escape quotes with a backslash, which ends the URL.
    let json = r#"{"error":"webhook \"https://h/x?token=S3\" failed"}"#;
    assert_eq!(
        redact_text(json),
        r#"{"error":"webhook \"https://h/x?token=<redacted>\" failed"}"#
    );
    assert!(matches!(redact_text("no url here"), Cow::Borrowed(_)));
    assert!(matches!(
        redact_text("see http://h/p?q=1"),
        Cow::Borrowed(_)
    ));
}
