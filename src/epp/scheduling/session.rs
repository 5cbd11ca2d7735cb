//! Session affinity: which candidate is the endpoint of the request's session, and the
//! bindings of the stateful strategy.
//!
//! - The `token` strategy is stateless: the token is the base64 of the endpoint's name
//!   (`ip:port`; a reference-style `namespace/name` whose name is `ip:port` is read too),
//!   made by [`encode_token`] and read by [`decode_token`].
//! - The `sessionId` strategy keeps a [`SessionStore`]: session id → endpoint, forgotten
//!   when unused for the TTL, bounded (the least recently used goes first).
//! - [`mark`] flags the session's candidate, unless it is saturated (fresh metrics with
//!   a fullness of 1 or more by the saturation detector): then the session falls back
//!   to the other endpoints and re-binds to the new pick.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;

use super::saturation::Detector;
use super::Candidate;
use crate::epp::hash::xxh64;

/// The token of the endpoint named `name`.
pub fn encode_token(name: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(name)
}

/// The endpoint a token names; `None` when it is not base64 of `[namespace/]ip:port`.
pub fn decode_token(token: &str) -> Option<SocketAddr> {
    let token = token.trim();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(token)
        .or_else(|_| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(token))
        .ok()?;
    let text = std::str::from_utf8(&bytes).ok()?;
    text.rsplit('/').next()?.parse().ok()
}

/// Flags the candidate at `slot` (the session's endpoint) as the session's, unless its
/// fresh metrics say it is saturated.
pub fn mark(c: &mut [Candidate], slot: Option<usize>, detector: &Detector) {
    let Some(slot) = slot else { return };
    for c in c.iter_mut().filter(|c| c.slot == slot) {
        c.session = c.stale || detector.fullness(c) < 1.0;
    }
}

/// Bindings of session ids to endpoints.
#[derive(Debug)]
pub struct SessionStore {
    ttl: Duration,
    max: usize,
    inner: Mutex<Bindings>,
}

#[derive(Debug, Default)]
struct Bindings {
    /// Hash of the session id → (endpoint, last use, its key in `by_use`).
    map: HashMap<u64, (SocketAddr, Instant, u64)>,
    /// Use order: sequence → session hash, oldest first.
    by_use: BTreeMap<u64, u64>,
    next: u64,
}

impl SessionStore {
    pub fn new(ttl: Duration, max: usize) -> Self {
        SessionStore {
            ttl,
            max: max.max(1),
            inner: Mutex::new(Bindings::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Bindings> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The endpoint `id` is bound to, if the binding is alive at `now`; a use refreshes it.
    pub fn get(&self, id: &str, now: Instant) -> Option<SocketAddr> {
        let key = xxh64(id.as_bytes(), 0);
        let mut b = self.lock();
        let &(addr, used, _) = b.map.get(&key)?;
        if now.saturating_duration_since(used) > self.ttl {
            b.remove(key);
            return None;
        }
        b.touch(key, addr, now);
        Some(addr)
    }

    /// Binds `id` to `addr` (again) at `now`; forgets expired bindings and, past the
    /// bound, the least recently used.
    pub fn bind(&self, id: &str, addr: SocketAddr, now: Instant) {
        let key = xxh64(id.as_bytes(), 0);
        let mut b = self.lock();
        b.touch(key, addr, now);
        while let Some((_, &oldest)) = b.by_use.first_key_value() {
            let used = b.map[&oldest].1;
            let expired = now.saturating_duration_since(used) > self.ttl;
            if !expired && b.map.len() <= self.max {
                break;
            }
            b.remove(oldest);
        }
    }

    /// Sessions remembered.
    pub fn len(&self) -> usize {
        self.lock().map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Bindings {
    fn touch(&mut self, key: u64, addr: SocketAddr, now: Instant) {
        if let Some((_, _, seq)) = self.map.get(&key) {
            self.by_use.remove(seq);
        }
        let seq = self.next;
        self.next += 1;
        self.by_use.insert(seq, key);
        self.map.insert(key, (addr, now, seq));
    }

    fn remove(&mut self, key: u64) {
        if let Some((_, _, seq)) = self.map.remove(&key) {
            self.by_use.remove(&seq);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn tokens_round_trip_and_read_the_reference_shape() {
        let t = encode_token("127.0.0.1:8000");
        assert_eq!(t, "MTI3LjAuMC4xOjgwMDA=");
        assert_eq!(decode_token(&t), Some(addr("127.0.0.1:8000")));
        assert_eq!(
            decode_token(&encode_token("default/[::1]:9000")),
            Some(addr("[::1]:9000"))
        );
        for bad in [
            "",
            "not base64!",
            &encode_token("pod-name"),
            &encode_token("a:b"),
        ] {
            assert_eq!(decode_token(bad), None, "{bad}");
        }
    }

    #[test]
    fn mark_flags_the_session_endpoint_unless_saturated() {
        let d = Detector::default();
        let mut c: Vec<Candidate> = (0..3).map(Candidate::idle).collect();
        mark(&mut c, Some(1), &d);
        assert_eq!(
            c.iter().map(|c| c.session).collect::<Vec<_>>(),
            [false, true, false]
        );
        let mut c: Vec<Candidate> = (0..3).map(Candidate::idle).collect();
        c[1].waiting = 5.0; // fullness 5 / 5 = 1
        mark(&mut c, Some(1), &d);
        assert!(c.iter().all(|c| !c.session), "saturated: no affinity");
        let mut c: Vec<Candidate> = (0..2).map(Candidate::idle).collect();
        mark(&mut c, Some(7), &d);
        mark(&mut c, None, &d);
        assert!(c.iter().all(|c| !c.session), "gone or no session: none");
    }

    #[test]
    fn bindings_expire_refresh_and_stay_bounded() {
        let s = SessionStore::new(Duration::from_secs(10), 2);
        let t0 = Instant::now();
        s.bind("a", addr("127.0.0.1:1"), t0);
        assert_eq!(
            s.get("a", t0 + Duration::from_secs(8)),
            Some(addr("127.0.0.1:1"))
        );
        // Refreshed at 8 s: alive at 16 s, gone after 18 s.
        assert_eq!(
            s.get("a", t0 + Duration::from_secs(16)),
            Some(addr("127.0.0.1:1"))
        );
        assert_eq!(s.get("a", t0 + Duration::from_secs(27)), None);
        assert!(s.is_empty());
        s.bind("a", addr("127.0.0.1:1"), t0);
        s.bind("b", addr("127.0.0.1:2"), t0 + Duration::from_secs(1));
        s.get("a", t0 + Duration::from_secs(2)); // b is now the least recently used
        s.bind("c", addr("127.0.0.1:3"), t0 + Duration::from_secs(3));
        assert_eq!(s.len(), 2);
        assert_eq!(s.get("b", t0 + Duration::from_secs(3)), None, "evicted");
        assert!(s.get("a", t0 + Duration::from_secs(3)).is_some());
        s.bind("a", addr("127.0.0.1:9"), t0 + Duration::from_secs(4));
        assert_eq!(
            s.get("a", t0 + Duration::from_secs(4)),
            Some(addr("127.0.0.1:9")),
            "re-bound"
        );
    }
}
