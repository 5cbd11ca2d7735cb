//! Sessions: their age, the target set and address and user they were made for, renewals.

use super::*;

/// A session older than `session.maxAge` is unknown (404), so the client initializes
/// again; one just inside it opens.
#[tokio::test]
async fn a_session_past_its_max_age_is_unknown() {
    let m = mux(&["a", "b"], &[]);
    let aged = |seconds: u64| {
        let sid = session(&m);
        let mut state = m.keys.open(&sid).unwrap();
        state.issued_at -= seconds;
        m.keys.seal(&state)
    };
    let ping = r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;
    let young = headers(&[("mcp-session-id", &aged(3590))]);
    assert_eq!(send(&m, Method::POST, &young, ping).await.0, 200);
    let old = headers(&[("mcp-session-id", &aged(3700))]);
    let (s, _, b) = send(&m, Method::POST, &old, ping).await;
    assert_eq!((s, &b["error"]["code"]), (404, &json!(-32600)));
}

#[tokio::test]
async fn a_session_for_another_target_set_is_unknown() {
    let a = mux(&["a", "b"], &[]);
    let mut b = mux(&["a", "c"], &[]);
    b.keys = a.keys.clone();
    let sid = session(&a);
    let ping = r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;
    let h = headers(&[("mcp-session-id", &sid)]);
    assert_eq!(send(&a, Method::POST, &h, ping).await.0, 200);
    assert_eq!(send(&b, Method::POST, &h, ping).await.0, 404);
}

#[test]
fn renewals_are_bounded_and_an_ended_session_forgets_its_own() {
    let r = Renewals::default();
    for i in 0..renew::MAX_ENTRIES + 5 {
        r.insert(&format!("t{i}"), 1, format!("s{i}"));
    }
    assert_eq!(r.renewed.len(), renew::MAX_ENTRIES);
    r.insert("mine", 0, "s-new".into());
    assert_eq!(r.get("mine", 0).as_deref(), Some("s-new"));
    assert_eq!(r.get("mine", 1), None);
    assert!(!r.ended("mine"));
    r.end("mine", 2);
    assert!(r.ended("mine"));
    assert_eq!(r.get("mine", 0), None);
    for i in 0..renew::MAX_ENTRIES + 5 {
        r.end(&format!("e{i}"), 0);
    }
    assert_eq!(r.ended.len(), renew::MAX_ENTRIES);
}

#[tokio::test]
async fn a_session_opens_only_for_the_user_it_was_made_for() {
    let m = mux(&["a", "b"], &[]);
    let targets = m
        .targets
        .names()
        .iter()
        .map(|n| TargetSession {
            target: n.clone(),
            session_id: None,
            protocol_version: "2025-06-18".into(),
        })
        .collect();
    let mut state = m.state(targets, "2025-06-18".into());
    state.subject = Some("alice".into());
    let sid = m.keys.seal(&state);
    let h = headers(&[("mcp-session-id", &sid)]);
    let ping = r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;
    let alice = json!({"sub": "alice"});
    let bob = json!({"sub": "bob"});
    let (s, _, _) = send_as(&m, Method::POST, &h, ping, Some(&alice)).await;
    assert_eq!(s, 200);
    for caller in [Some(&bob), None] {
        let (s, _, b) = send_as(&m, Method::POST, &h, ping, caller).await;
        assert_eq!(
            (s, &b["error"]["code"]),
            (404, &json!(-32600)),
            "{caller:?}"
        );
    }
}

#[tokio::test]
async fn a_session_made_for_a_target_at_another_address_does_not_open() {
    let first = mux_at(&["a"], &[dead_port()], &[], Duration::from_secs(5));
    let mut moved = mux_at(&["a"], &[dead_port()], &[], Duration::from_secs(5));
    moved.keys = first.keys.clone();
    let h = headers(&[("mcp-session-id", &session(&first))]);
    let ping = r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;
    assert_eq!(send(&first, Method::POST, &h, ping).await.0, 200);
    assert_eq!(send(&moved, Method::POST, &h, ping).await.0, 404);
}
