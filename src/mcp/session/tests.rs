//! Sealed sessions: round trips, key rotation, tampered and garbage ids, nonces, the
//! token alphabet, and key parsing.

use super::*;

fn state() -> SessionState {
    SessionState {
        targets: vec![
            TargetSession {
                target: "weather".into(),
                session_id: Some("0f8c5e3a-52a4-4c8e-9a7e-0c5d1b0e6a11".into()),
                protocol_version: "2025-06-18".into(),
            },
            TargetSession {
                target: "calendar".into(),
                session_id: None,
                protocol_version: "2025-03-26".into(),
            },
        ],
        protocol_version: "2025-03-26".into(),
        subject: Some("alice".into()),
        fingerprint: 0xdead_beef_cafe_f00d,
        issued_at: 1_760_000_000,
    }
}

fn keys(seeds: &[u8]) -> SessionKeys {
    let bytes: Vec<[u8; KEY_LEN]> = seeds.iter().map(|s| [*s; KEY_LEN]).collect();
    SessionKeys::new(&bytes).unwrap()
}

#[test]
fn round_trip() {
    let k = keys(&[1]);
    let s = state();
    let token = k.seal(&s);
    assert!(token.starts_with("t1."));
    assert_eq!(k.open(&token), Some(s));
    let r = SessionKeys::random();
    assert_eq!(r.open(&r.seal(&state())), Some(state()));
}

#[test]
fn rotated_keys_open_what_the_old_key_sealed() {
    let token = keys(&[1]).seal(&state());
    let rotated = keys(&[2, 1]);
    assert_eq!(rotated.open(&token), Some(state()));
    // The new key seals; the old key alone cannot open that.
    let fresh = rotated.seal(&state());
    assert_eq!(keys(&[1]).open(&fresh), None);
    assert_eq!(keys(&[2]).open(&fresh), Some(state()));
    assert_eq!(keys(&[3]).open(&token), None);
}

#[test]
fn tampered_tokens_do_not_open() {
    let k = keys(&[1]);
    let token = k.seal(&state());
    let raw = URL_SAFE_NO_PAD.decode(&token[PREFIX.len()..]).unwrap();
    for i in [0, NONCE_LEN, raw.len() / 2, raw.len() - 1] {
        let mut bad = raw.clone();
        bad[i] ^= 0x01;
        let bad = format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(&bad));
        assert_eq!(k.open(&bad), None, "byte {i} flipped");
    }
    assert_eq!(k.open(&token[..token.len() - 2]), None);
}

#[test]
fn garbage_does_not_open() {
    let k = keys(&[1]);
    let token = k.seal(&state());
    let short = format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode([1u8, 2, 3]));
    let just_short = format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode([0u8; 27]));
    let huge = format!("{PREFIX}{}", "A".repeat(MAX_TOKEN_LEN));
    let other_prefix = format!("t2.{}", &token[PREFIX.len()..]);
    for id in [
        "",
        "t1.",
        "abc",
        short.as_str(),
        just_short.as_str(),
        "t1.!!!not base64!!!",
        "t1.AAAA=",
        "0f8c5e3a-52a4-4c8e-9a7e-0c5d1b0e6a11",
        &token[PREFIX.len()..],
        other_prefix.as_str(),
        huge.as_str(),
    ] {
        assert_eq!(k.open(id), None, "{id:?}");
    }
}

#[test]
fn a_sealed_non_state_does_not_open() {
    let k = keys(&[1]);
    let mut sealed = b"{\"not\":\"a state\"}".to_vec();
    let nonce = [7u8; NONCE_LEN];
    k.keys[0]
        .seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(AAD),
            &mut sealed,
        )
        .unwrap();
    let token = format!(
        "{PREFIX}{}",
        URL_SAFE_NO_PAD.encode([&nonce[..], &sealed[..]].concat())
    );
    assert_eq!(k.open(&token), None);
}

#[test]
fn each_seal_has_its_own_nonce() {
    let k = keys(&[1]);
    assert_ne!(k.seal(&state()), k.seal(&state()));
}

#[test]
fn tokens_are_visible_ascii() {
    let k = SessionKeys::random();
    for _ in 0..64 {
        let token = k.seal(&state());
        assert!(token.bytes().all(|b| (0x21..=0x7E).contains(&b)), "{token}");
    }
}

#[test]
fn keys_parse_from_base64_and_base64url() {
    let key = [0xfb_u8; KEY_LEN]; // encodes with '+' / '-' and '/' / '_'
    let url = URL_SAFE_NO_PAD.encode(key);
    let std = base64::engine::general_purpose::STANDARD.encode(key);
    assert!(url.contains(['-', '_']) && std.contains(['+', '/']) && std.ends_with('='));
    let from_url = SessionKeys::from_base64(&[url.as_str()]).unwrap();
    let from_std = SessionKeys::from_base64(&[format!(" {std}\n")]).unwrap();
    let token = SessionKeys::new(&[key]).unwrap().seal(&state());
    assert_eq!(from_url.open(&token), Some(state()));
    assert_eq!(from_std.open(&token), Some(state()));
}

#[test]
fn bad_keys_name_their_index() {
    let good = URL_SAFE_NO_PAD.encode([1u8; KEY_LEN]);
    let short = URL_SAFE_NO_PAD.encode([1u8; 16]);
    let e = SessionKeys::from_base64(&[good.as_str(), short.as_str()]).unwrap_err();
    assert!(matches!(e, SessionKeyError::Length { index: 1, len: 16 }));
    assert_eq!(
        e.to_string(),
        "session key [1]: must decode to 32 bytes (got 16)"
    );
    let e = SessionKeys::from_base64(&["***"]).unwrap_err();
    assert!(matches!(e, SessionKeyError::Base64 { index: 0, .. }));
    let none: [&str; 0] = [];
    assert!(matches!(
        SessionKeys::from_base64(&none),
        Err(SessionKeyError::Empty)
    ));
}

#[test]
fn debug_shows_no_key_material() {
    assert_eq!(
        format!("{:?}", keys(&[1, 2])),
        "SessionKeys { keys: 2, .. }"
    );
}

#[test]
fn compact_field_names() {
    let json = serde_json::to_string(&state()).unwrap();
    assert!(json.contains(r#""n":"weather""#) && json.contains(r#""sub":"alice""#));
    assert!(!json.contains("protocol_version"));
    let mut s = state();
    s.subject = None;
    assert!(!serde_json::to_string(&s).unwrap().contains("sub"));
}
