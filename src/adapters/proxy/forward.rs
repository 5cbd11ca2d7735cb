//! What the proxy changes on a request and response as it forwards them: hop-by-hop
//! headers dropped (RFC 9110 §7.6.1), `x-request-id` and `x-forwarded-for` set, and the
//! upstream chosen (the endpoint a picker named, else the route's backend).

use std::borrow::Cow;
use std::net::SocketAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

use crate::config::Backend;
use crate::pipeline::RequestHead;

/// Hop-by-hop headers, never forwarded (names, not strings: no parsing per request).
const HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// The request id header, set on every forwarded request.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Where the request goes: the endpoint a picker chose (the first of
/// `x-gateway-destination-endpoint`, spoken to as the route's backend would be, minus
/// TLS, which a pool endpoint address cannot name), else the route's backend.
pub fn upstream_for<'a>(
    backend: Option<&'a Backend>,
    destination: Option<&str>,
) -> Option<Cow<'a, Backend>> {
    match destination.and_then(|d| d.split(',').next()).map(str::trim) {
        Some(pick) if !pick.is_empty() => Some(Cow::Owned(Backend {
            host: pick.to_string(),
            tls: None,
            http2: backend.is_some_and(|b| b.http2),
            weight: 1,
        })),
        _ => backend.map(Cow::Borrowed),
    }
}

/// The pipeline's view of a request's head.
pub fn request_head(parts: &http::request::Parts) -> RequestHead {
    let authority = parts
        .uri
        .authority()
        .map(|a| a.as_str().to_string())
        .or_else(|| {
            parts
                .headers
                .get(header::HOST)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        })
        .unwrap_or_default();
    RequestHead {
        method: parts.method.as_str().to_string(),
        path: parts
            .uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_string(),
        authority,
        scheme: parts.uri.scheme_str().unwrap_or("http").to_string(),
    }
}

/// Removes the hop-by-hop headers and those the `connection` header names. One pass
/// over the map finds which are there (comparing standard names is cheap), so a message
/// without any costs no hashing, and `connection: keep-alive` costs one removal.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let mut present = 0u16;
    for name in headers.keys() {
        if let Some(i) = HOP_BY_HOP.iter().position(|h| h == name) {
            present |= 1 << i;
        }
    }
    if present == 0 {
        return;
    }
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        // `close` names no header; the hop-by-hop ones go below when present.
        .filter(|n| !n.eq_ignore_ascii_case("close") && !is_hop_by_hop(n))
        .filter_map(|n| HeaderName::from_bytes(n.as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for (i, name) in HOP_BY_HOP.iter().enumerate() {
        if present & (1 << i) != 0 {
            headers.remove(name);
        }
    }
}

fn is_hop_by_hop(name: &str) -> bool {
    HOP_BY_HOP
        .iter()
        .any(|h| h.as_str().eq_ignore_ascii_case(name))
}

/// Sets `x-request-id` to the exchange's id unless the request (or a processor) has one.
pub fn set_request_id(headers: &mut HeaderMap, id: &str) {
    if headers.contains_key(&REQUEST_ID) {
        return;
    }
    if let Ok(v) = HeaderValue::from_str(id) {
        headers.insert(REQUEST_ID, v);
    }
}

/// The client's side of a connection, as forwarded: made once per connection.
#[derive(Clone, Debug)]
pub struct Client {
    /// The client's address, for `x-forwarded-for`.
    pub forwarded_for: HeaderValue,
}

impl Client {
    pub fn new(remote: SocketAddr) -> Self {
        Client {
            forwarded_for: HeaderValue::from_str(&remote.ip().to_string())
                .expect("an IP address is a valid header value"),
        }
    }
}

/// Appends the client's address to `x-forwarded-for`.
pub fn append_forwarded_for(headers: &mut HeaderMap, client: &Client) {
    headers.append(
        HeaderName::from_static("x-forwarded-for"),
        client.forwarded_for.clone(),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_and_the_ones_connection_names_are_dropped() {
        let mut h = HeaderMap::new();
        h.insert(
            "connection",
            HeaderValue::from_static("keep-alive, x-private"),
        );
        h.insert("x-private", HeaderValue::from_static("1"));
        h.insert("transfer-encoding", HeaderValue::from_static("chunked"));
        h.insert("x-kept", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.keys().map(|k| k.as_str()).collect::<Vec<_>>(), ["x-kept"]);
        // Without a hop-by-hop header, the map is left as it is.
        let mut h = HeaderMap::new();
        h.insert("x-kept", HeaderValue::from_static("1"));
        h.insert("host", HeaderValue::from_static("a"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 2);
        // `keep-alive` alone is found too.
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 2);
        // A hop-by-hop name that `connection` lists goes whether listed or not, and
        // `close` names nothing.
        h.insert(
            "connection",
            HeaderValue::from_static("close, Upgrade, X-Other"),
        );
        h.insert("upgrade", HeaderValue::from_static("h2c"));
        h.insert("x-other", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 2, "{h:?}");
        assert!(h.contains_key("x-kept") && h.contains_key("host"));
    }

    #[test]
    fn the_pick_wins_over_the_backend_and_keeps_its_protocol() {
        let backend = Backend {
            host: "127.0.0.1:1".into(),
            tls: None,
            http2: true,
            weight: 1,
        };
        let b = upstream_for(Some(&backend), Some(" 127.0.0.2:2 ,127.0.0.3:3")).unwrap();
        assert_eq!((b.host.as_str(), b.http2), ("127.0.0.2:2", true));
        assert_eq!(
            upstream_for(Some(&backend), Some("")).unwrap().host,
            "127.0.0.1:1"
        );
        assert!(upstream_for(None, None).is_none());
    }

    #[test]
    fn request_id_is_kept_or_set_and_forwarded_for_appends() {
        let mut h = HeaderMap::new();
        set_request_id(&mut h, "abc");
        set_request_id(&mut h, "def");
        assert_eq!(h["x-request-id"], "abc");
        h.insert("x-forwarded-for", HeaderValue::from_static("10.0.0.1"));
        append_forwarded_for(&mut h, &Client::new("[::1]:5".parse().unwrap()));
        let all: Vec<_> = h.get_all("x-forwarded-for").iter().collect();
        assert_eq!(all, ["10.0.0.1", "::1"]);
    }
}
