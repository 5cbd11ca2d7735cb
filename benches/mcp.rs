//! MCP gateway hot paths.
//! - `mcp/session`: `SessionKeys::seal` and `open` of a three-target session (UUID
//!   upstream session ids, a subject), alone and as the pair an `initialize` and a later
//!   request cost; `open` with a rotated key ring, where the old key opens after the new
//!   one failed; and, as the baseline in the same run, the JSON round trip of the same
//!   state without encryption or base64.
//! - `mcp/session_kdf`: for comparison, one PBKDF2-HMAC-SHA256 derivation with 100,000
//!   iterations — what a gateway that derives its session key per request pays on each.
//! - `mcp/relay`: tagging the id of a server→client request with its target and reading
//!   it back from the client's answer.

use std::hint::black_box;
use std::num::NonZeroU32;

use criterion::{criterion_group, criterion_main, Criterion};
use ring::pbkdf2;
use serde_json::{json, Value};
use tollgate::mcp::relay::{tag_id, untag_id};
use tollgate::mcp::{SessionKeys, SessionState, TargetSession};

fn state() -> SessionState {
    let target = |name: &str, sid: &str| TargetSession {
        target: name.to_string(),
        session_id: Some(sid.to_string()),
        protocol_version: "2025-06-18".to_string(),
    };
    SessionState {
        targets: vec![
            target("weather", "0f8c5e3a-52a4-4c8e-9a7e-0c5d1b0e6a11"),
            target("calendar", "8d0b7c1e-2f43-4a9b-b1e5-6c2d9e0f7a32"),
            target("mail", "c3a91f60-7b2d-4e8c-a5f4-19d0e6b8c253"),
        ],
        protocol_version: "2025-06-18".to_string(),
        subject: Some("user-123".to_string()),
        fingerprint: 0x5d45_b9d0_8b15_1fcf,
        issued_at: 1_760_000_000,
    }
}

fn session(c: &mut Criterion) {
    let keys = SessionKeys::new(&[[7u8; 32]]).unwrap();
    let rotated = SessionKeys::new(&[[8u8; 32], [7u8; 32]]).unwrap();
    let s = state();
    let token = keys.seal(&s);
    assert_eq!(rotated.open(&token).as_ref(), Some(&s));

    let mut g = c.benchmark_group("mcp/session");
    g.bench_function("json round trip (baseline)", |b| {
        b.iter(|| {
            let json = serde_json::to_vec(black_box(&s)).unwrap();
            serde_json::from_slice::<SessionState>(&json).unwrap()
        })
    });
    g.bench_function("seal", |b| b.iter(|| keys.seal(black_box(&s))));
    g.bench_function("open", |b| b.iter(|| keys.open(black_box(&token)).unwrap()));
    g.bench_function("seal+open", |b| {
        b.iter(|| keys.open(&keys.seal(black_box(&s))).unwrap())
    });
    g.bench_function("open, old key of two", |b| {
        b.iter(|| rotated.open(black_box(&token)).unwrap())
    });
    g.finish();
}

fn session_kdf(c: &mut Criterion) {
    let iterations = NonZeroU32::new(100_000).unwrap();
    let secret = b"a session secret of the gateway";
    let salt = b"0f8c5e3a-52a4-4c8e-9a7e-0c5d1b0e6a11";
    let mut g = c.benchmark_group("mcp/session_kdf");
    g.sample_size(10);
    g.bench_function("pbkdf2-hmac-sha256, 100k iterations", |b| {
        b.iter(|| {
            let mut key = [0u8; 32];
            pbkdf2::derive(
                pbkdf2::PBKDF2_HMAC_SHA256,
                iterations,
                black_box(salt),
                black_box(secret),
                &mut key,
            );
            key
        })
    });
    g.finish();
}

fn relay(c: &mut Criterion) {
    let numeric = json!(42);
    let text = json!("0f8c5e3a-52a4-4c8e-9a7e-0c5d1b0e6a11");
    let tagged = tag_id(2, &text);
    assert_eq!(untag_id(&tagged), Some((2, text.clone())));
    let mut g = c.benchmark_group("mcp/relay");
    g.bench_function("tag_id, number", |b| {
        b.iter(|| tag_id(black_box(2), black_box(&numeric)))
    });
    g.bench_function("tag_id, UUID string", |b| {
        b.iter(|| tag_id(black_box(2), black_box(&text)))
    });
    g.bench_function("untag_id, UUID string", |b| {
        b.iter(|| untag_id(black_box(&tagged)).unwrap())
    });
    let plain = Value::from(7);
    g.bench_function("untag_id, untagged id", |b| {
        b.iter(|| untag_id(black_box(&plain)))
    });
    g.finish();
}

criterion_group!(benches, session, session_kdf, relay);
criterion_main!(benches);
