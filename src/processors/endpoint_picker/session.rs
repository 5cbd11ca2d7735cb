//! Session affinity on the wire: the request's session header read before the pick,
//! the binding made after it, the token written on the response.
//!
//! - `token` (stateless): the request's header (default `x-session-token`) names the
//!   endpoint that served the conversation before (base64 of `ip:port`); the response
//!   carries the same header naming the endpoint that served this request, which the
//!   client echoes next time. A token that does not decode is ignored.
//! - `sessionId` (stateful): the request's header (default `x-session-id`) is an opaque
//!   id; the picker binds it to the endpoint that served it (refreshed on every use,
//!   forgotten after the TTL unused, the least recently used first past the bound).
//!   When the bound endpoint is gone or saturated the pick falls back to the others and
//!   the session re-binds to the new endpoint.
//!
//! Neither header is a control header: both reach the model server unchanged.

use std::net::SocketAddr;
use std::time::Instant;

use http::{HeaderName, HeaderValue};

use crate::config::{EndpointPickerPolicy, SessionSpec, SessionStrategy};
use crate::epp::scheduling::session::{decode_token, encode_token, SessionStore};
use crate::pipeline::Headers;

/// The session affinity of one picker (kept with its pool across reloads).
#[derive(Debug)]
pub struct Affinity {
    spec: SessionSpec,
    /// The bindings of the `sessionId` strategy.
    store: Option<SessionStore>,
}

/// What one request said of its session.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Session {
    /// The session id (`sessionId` strategy).
    id: Option<String>,
    /// The endpoint the session is on, if known.
    pub target: Option<SocketAddr>,
}

impl Affinity {
    /// The affinity of a picker whose profile has a `sessionAffinity` filter or scorer.
    pub fn from_policy(policy: &EndpointPickerPolicy) -> Option<Affinity> {
        let spec = policy.scheduling.session_affinity()?;
        let store = (spec.strategy == SessionStrategy::SessionId)
            .then(|| SessionStore::new(spec.ttl, spec.max_sessions));
        Some(Affinity { spec, store })
    }

    /// The request's session, from its header.
    pub fn read(&self, headers: &Headers, now: Instant) -> Session {
        let Some(value) = headers
            .map()
            .get(&self.spec.header)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
        else {
            return Session::default();
        };
        match &self.store {
            None => Session {
                id: None,
                target: decode_token(value),
            },
            Some(store) => Session {
                target: store.get(value, now),
                id: Some(value.to_string()),
            },
        }
    }

    /// The request's session was served by `endpoint` (`ip:port`): (re-)binds it.
    pub fn served(&self, session: &Session, endpoint: &str, now: Instant) {
        let (Some(store), Some(id)) = (&self.store, &session.id) else {
            return;
        };
        if let Ok(addr) = endpoint.parse() {
            store.bind(id, addr, now);
        }
    }

    /// The response header naming `endpoint` for the client to echo (`token` only).
    pub fn response_header(&self, endpoint: &str) -> Option<(HeaderName, HeaderValue)> {
        if self.store.is_some() {
            return None;
        }
        let value = HeaderValue::from_str(&encode_token(endpoint)).ok()?;
        Some((self.spec.header.clone(), value))
    }

    /// Sessions bound (`sessionId`).
    #[cfg(test)]
    pub fn sessions(&self) -> usize {
        self.store.as_ref().map_or(0, SessionStore::len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn affinity(scheduling: &str) -> Affinity {
        let policy: EndpointPickerPolicy = serde_yaml::from_str(&format!(
            "{{endpoints: ['127.0.0.1:1'], scheduling: {scheduling}}}"
        ))
        .unwrap();
        Affinity::from_policy(&policy).expect("a session affinity")
    }

    fn headers(pairs: &[(&str, &str)]) -> Headers {
        let mut map = http::HeaderMap::new();
        for (k, v) in pairs {
            map.insert(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        Headers::new(map)
    }

    #[test]
    fn token_names_the_endpoint_both_ways() {
        let a = affinity("{scorers: [{type: sessionAffinity, weight: 10}, {type: queue}]}");
        let now = Instant::now();
        let (name, value) = a.response_header("127.0.0.1:8001").unwrap();
        assert_eq!(name, "x-session-token");
        let s = a.read(
            &headers(&[("x-session-token", value.to_str().unwrap())]),
            now,
        );
        assert_eq!(s.target, Some("127.0.0.1:8001".parse().unwrap()));
        let s = a.read(&headers(&[("x-session-token", "garbage")]), now);
        assert_eq!(s, Session::default());
        a.served(&s, "127.0.0.1:8001", now);
        assert_eq!(a.sessions(), 0, "stateless");
    }

    #[test]
    fn session_ids_bind_to_the_endpoint_served() {
        let a = affinity("{filters: [{type: sessionAffinity, strategy: sessionId, header: x-conv}], scorers: [{type: queue}]}");
        let now = Instant::now();
        let h = headers(&[("x-conv", "c-1")]);
        let first = a.read(&h, now);
        assert_eq!(first.target, None, "unknown session");
        a.served(&first, "127.0.0.1:8002", now);
        assert_eq!(
            a.read(&h, now).target,
            Some("127.0.0.1:8002".parse().unwrap())
        );
        a.served(&first, "127.0.0.1:8003", now);
        assert_eq!(
            a.read(&h, now).target,
            Some("127.0.0.1:8003".parse().unwrap()),
            "re-bound"
        );
        assert!(a.response_header("127.0.0.1:8003").is_none());
        assert_eq!(a.read(&headers(&[]), now), Session::default());
        assert_eq!(a.sessions(), 1);
    }
}
