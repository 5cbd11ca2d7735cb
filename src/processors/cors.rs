//! `cors`: browsers' cross-origin checks answered at the gateway, with Envoy's CORS
//! semantics (as agentgateway follows them):
//!
//! - a request without `Origin` is not a CORS request: nothing happens;
//! - a preflight (`OPTIONS` with `Origin` and a non-empty
//!   `Access-Control-Request-Method`) is answered here, never forwarded: 200 with the
//!   allowed methods, headers, max age, credentials and exposed headers when the origin
//!   is allowed, 200 without any CORS header when it is not (the browser then refuses);
//! - an `OPTIONS` from an allowed origin is answered the same way;
//! - any other request from an allowed origin goes upstream, and its response gets
//!   `Access-Control-Allow-Origin` (the request's origin, so credentials work),
//!   `Access-Control-Allow-Credentials`, `Access-Control-Expose-Headers` and
//!   `Vary: Origin`, and so does a reply another policy answers it with (a 401 from
//!   `mcpAuthentication`, a 429 from a limit); from an origin not allowed it goes
//!   upstream untouched.
//!
//! Origins match on scheme, host and port (the scheme's default when absent); `*` in a
//! pattern's host matches any run of characters (`https://*.example.com`).

use std::sync::Arc;

use async_trait::async_trait;
use http::{header, HeaderName, HeaderValue, StatusCode};

use crate::config::{ConfigError, CorsPolicy, FailureMode};
use crate::pipeline::{
    Ctx, Flow, Headers, LocalReply, Processor, ProcessorError, ProcessorFactory,
};

/// A list that may be `*`.
#[derive(Debug, Default)]
enum AnyOr<T> {
    #[default]
    Nothing,
    Any,
    Listed(Vec<T>),
}

impl<T> AnyOr<T> {
    fn parse(
        items: &[String],
        path: &str,
        one: impl Fn(&str) -> Option<T>,
        what: &str,
    ) -> Result<Self, ConfigError> {
        if items.iter().any(|i| i == "*") {
            return Ok(AnyOr::Any);
        }
        if items.is_empty() {
            return Ok(AnyOr::Nothing);
        }
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            out.push(one(item).ok_or_else(|| {
                ConfigError::field(format!("{path}[{i}]"), format!("{item:?} is not {what}"))
            })?);
        }
        Ok(AnyOr::Listed(out))
    }
}

/// `scheme://host[:port]`, lowercased, the port filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Origin {
    https: bool,
    host: String,
    port: u16,
}

impl Origin {
    fn parse(text: &str, wildcard_host: bool) -> Option<Self> {
        let (scheme, rest) = text.split_once("://")?;
        let https = match scheme.to_ascii_lowercase().as_str() {
            "https" => true,
            "http" => false,
            _ => return None,
        };
        if rest.is_empty() || rest.contains(['/', '?', '#', '@']) {
            return None;
        }
        let (host, port) = match rest.rsplit_once(':') {
            Some((host, port)) if !host.contains(':') => {
                let port: u16 = port.parse().ok().filter(|p| *p != 0)?;
                (host, port)
            }
            Some(_) => return None,
            None => (rest, if https { 443 } else { 80 }),
        };
        if host.is_empty() || (!wildcard_host && host.contains('*')) {
            return None;
        }
        Some(Origin {
            https,
            host: host.to_ascii_lowercase(),
            port,
        })
    }

    /// Whether this pattern (its host may hold `*`) matches `origin`.
    fn matches(&self, origin: &Origin) -> bool {
        self.https == origin.https && self.port == origin.port && glob(&self.host, &origin.host)
    }
}

/// `*` matches any run of characters (none included).
fn glob(pattern: &str, text: &str) -> bool {
    let Some((first, rest)) = pattern.split_once('*') else {
        return pattern == text;
    };
    let Some(mut tail) = text.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = rest.split('*').collect();
    let (last, middle) = parts.split_last().expect("split yields one part at least");
    for part in middle {
        match tail.find(part) {
            Some(i) => tail = &tail[i + part.len()..],
            None => return false,
        }
    }
    tail.len() >= last.len() && tail.ends_with(last)
}

#[derive(Debug)]
struct Compiled {
    origins: AnyOr<Origin>,
    methods: AnyOr<http::Method>,
    headers: AnyOr<HeaderName>,
    expose: Option<HeaderValue>,
    credentials: bool,
    max_age: Option<HeaderValue>,
}

fn joined<T: AsRef<str>>(items: &[T]) -> Option<HeaderValue> {
    let text = items
        .iter()
        .map(|i| i.as_ref())
        .collect::<Vec<_>>()
        .join(", ");
    HeaderValue::from_str(&text).ok()
}

/// Factory of one `cors` policy.
pub struct CorsFactory {
    policy: Arc<Compiled>,
}

impl CorsFactory {
    /// Compiles the policy; `path` is its field path, for errors.
    pub fn new(p: &CorsPolicy, path: &str) -> Result<Self, ConfigError> {
        let origins = AnyOr::parse(
            &p.allow_origins,
            &format!("{path}.allowOrigins"),
            |o| Origin::parse(o, true),
            "* or scheme://host[:port] (http or https, no path)",
        )?;
        let methods = AnyOr::parse(
            &p.allow_methods,
            &format!("{path}.allowMethods"),
            |m| http::Method::from_bytes(m.as_bytes()).ok(),
            "an HTTP method",
        )?;
        let headers = AnyOr::parse(
            &p.allow_headers,
            &format!("{path}.allowHeaders"),
            |h| HeaderName::from_bytes(h.as_bytes()).ok(),
            "a header name",
        )?;
        for (i, h) in p.expose_headers.iter().enumerate() {
            if h != "*" && HeaderName::from_bytes(h.as_bytes()).is_err() {
                return Err(ConfigError::field(
                    format!("{path}.exposeHeaders[{i}]"),
                    format!("{h:?} is not a header name"),
                ));
            }
        }
        let expose = (!p.expose_headers.is_empty())
            .then(|| joined(&p.expose_headers))
            .flatten();
        let max_age = p.max_age.map(|d| HeaderValue::from(d.get().as_secs()));
        Ok(CorsFactory {
            policy: Arc::new(Compiled {
                origins,
                methods,
                headers,
                expose,
                credentials: p.allow_credentials,
                max_age,
            }),
        })
    }
}

impl ProcessorFactory for CorsFactory {
    fn name(&self) -> &'static str {
        "cors"
    }

    fn failure_mode(&self) -> FailureMode {
        FailureMode::FailClosed
    }

    fn new_processor(&self, _cx: &Ctx) -> Option<Box<dyn Processor>> {
        Some(Box::new(Cors {
            policy: self.policy.clone(),
            allowed_origin: None,
        }))
    }
}

struct Cors {
    policy: Arc<Compiled>,
    /// The origin of an allowed CORS request, echoed on its response.
    allowed_origin: Option<HeaderValue>,
}

impl Compiled {
    fn allows(&self, origin: &str) -> bool {
        match &self.origins {
            AnyOr::Nothing => false,
            AnyOr::Any => true,
            AnyOr::Listed(patterns) => {
                Origin::parse(origin, false).is_some_and(|o| patterns.iter().any(|p| p.matches(&o)))
            }
        }
    }

    /// What a preflight is allowed: the listed items, or what it asked for under `*`
    /// (a literal `*` without credentials when it asked for nothing).
    fn echo(&self, any: bool, asked: Option<&str>) -> Option<HeaderValue> {
        if !any {
            return None;
        }
        let asked = asked
            .map(|a| {
                a.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .collect::<Vec<_>>()
            })
            .filter(|a| !a.is_empty());
        match asked {
            Some(items) => joined(&items),
            None if !self.credentials => Some(HeaderValue::from_static("*")),
            None => None,
        }
    }

    fn preflight(&self, origin: HeaderValue, headers: &Headers) -> LocalReply {
        let mut reply = LocalReply {
            status: StatusCode::OK,
            headers: http::HeaderMap::new(),
            body: bytes::Bytes::new(),
            details: "cors_preflight".into(),
        };
        let h = &mut reply.headers;
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        h.insert(header::VARY, HeaderValue::from_static("origin"));
        let methods = match &self.methods {
            AnyOr::Listed(m) => joined(m),
            other => self.echo(
                matches!(other, AnyOr::Any),
                headers.get_str("access-control-request-method"),
            ),
        };
        let allowed_headers = match &self.headers {
            AnyOr::Listed(list) => joined(list),
            other => self.echo(
                matches!(other, AnyOr::Any),
                headers.get_str("access-control-request-headers"),
            ),
        };
        let pairs = [
            (header::ACCESS_CONTROL_ALLOW_METHODS, methods),
            (header::ACCESS_CONTROL_ALLOW_HEADERS, allowed_headers),
            (header::ACCESS_CONTROL_MAX_AGE, self.max_age.clone()),
            (header::ACCESS_CONTROL_EXPOSE_HEADERS, self.expose.clone()),
            (
                header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                self.credentials.then(|| HeaderValue::from_static("true")),
            ),
        ];
        for (name, value) in pairs {
            if let Some(v) = value {
                h.insert(name, v);
            }
        }
        reply
    }
}

#[async_trait]
impl Processor for Cors {
    async fn on_request_headers(
        &mut self,
        cx: &mut Ctx,
        headers: &mut Headers,
    ) -> Result<Flow, ProcessorError> {
        let Some(origin) = headers.get_str("origin").map(str::to_string) else {
            return Ok(Flow::Continue);
        };
        let options = cx.request.method.eq_ignore_ascii_case("OPTIONS");
        let preflight = options
            && headers
                .get_str("access-control-request-method")
                .is_some_and(|m| !m.trim().is_empty());
        let allowed = self.policy.allows(&origin);
        match (allowed, preflight) {
            (false, true) => Ok(Flow::Respond(LocalReply {
                status: StatusCode::OK,
                headers: http::HeaderMap::new(),
                body: bytes::Bytes::new(),
                details: "cors_preflight_origin_not_allowed".into(),
            })),
            (false, false) => Ok(Flow::Continue),
            (true, _) => {
                let Ok(value) = HeaderValue::from_str(&origin) else {
                    return Ok(Flow::Continue);
                };
                if options {
                    return Ok(Flow::Respond(self.policy.preflight(value, headers)));
                }
                self.allowed_origin = Some(value);
                Ok(Flow::Continue)
            }
        }
    }

    async fn on_response_headers(
        &mut self,
        _cx: &mut Ctx,
        headers: &mut Headers,
    ) -> Result<Flow, ProcessorError> {
        if let Some(origin) = self.allowed_origin.take() {
            for (name, value) in self.policy.response_headers(origin) {
                if name == header::VARY {
                    headers.append(name, value);
                } else {
                    headers.set(name, value);
                }
            }
        }
        Ok(Flow::Continue)
    }

    /// A 401, 403 or 429 another policy answered an allowed origin with gets the CORS
    /// headers too, or the page could not read why it was refused.
    fn on_local_reply(&mut self, _cx: &Ctx, reply: &mut LocalReply) {
        if let Some(origin) = self.allowed_origin.take() {
            for (name, value) in self.policy.response_headers(origin) {
                reply.headers.append(name, value);
            }
        }
    }
}

impl Compiled {
    /// The headers of a response to an allowed origin's request.
    fn response_headers(&self, origin: HeaderValue) -> Vec<(HeaderName, HeaderValue)> {
        let mut out = vec![(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin)];
        if self.credentials {
            out.push((
                header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            ));
        }
        if let Some(expose) = &self.expose {
            out.push((header::ACCESS_CONTROL_EXPOSE_HEADERS, expose.clone()));
        }
        out.push((header::VARY, HeaderValue::from_static("origin")));
        out
    }
}

#[cfg(test)]
#[path = "cors_tests.rs"]
mod tests;
