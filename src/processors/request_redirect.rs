//! `requestRedirect`: the client gets a redirect (302 unless configured) to the same
//! URL with the configured scheme, authority and path (as `urlRewrite` computes them),
//! the query kept; nothing goes upstream.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use http::{header, HeaderValue, StatusCode};

use super::url_rewrite::Rewrite;
use crate::config::{Config, ConfigError, FailureMode, RequestRedirect};
use crate::pipeline::{
    Ctx, Flow, Headers, LocalReply, Processor, ProcessorError, ProcessorFactory,
};

/// Factory of one `requestRedirect` policy.
pub struct RequestRedirectFactory {
    redirect: Arc<Redirect>,
}

struct Redirect {
    scheme: Option<String>,
    parts: Rewrite,
    status: StatusCode,
}

impl RequestRedirectFactory {
    /// Compiles the policy at `path` for route `route` of `config`.
    pub fn new(
        p: &RequestRedirect,
        config: &Config,
        route: &str,
        path: &str,
    ) -> Result<Self, ConfigError> {
        let status = p.check(path)?;
        Ok(RequestRedirectFactory {
            redirect: Arc::new(Redirect {
                scheme: p.scheme.clone(),
                parts: Rewrite::new(p.authority.clone(), p.path.clone(), config, route),
                status,
            }),
        })
    }
}

impl ProcessorFactory for RequestRedirectFactory {
    fn name(&self) -> &'static str {
        "request_redirect"
    }

    fn failure_mode(&self) -> FailureMode {
        FailureMode::FailClosed
    }

    fn new_processor(&self, _cx: &Ctx) -> Option<Box<dyn Processor>> {
        Some(Box::new(Redirector(self.redirect.clone())))
    }
}

struct Redirector(Arc<Redirect>);

impl Redirect {
    /// Where a request for `scheme://authority/path` goes.
    fn location(&self, scheme: &str, authority: &str, path: &str) -> String {
        let scheme = self.scheme.as_deref().unwrap_or(scheme);
        let authority = self
            .parts
            .authority(authority)
            .unwrap_or_else(|| authority.to_string());
        let path = self.parts.path(path).unwrap_or_else(|| path.to_string());
        format!("{scheme}://{authority}{path}")
    }
}

#[async_trait]
impl Processor for Redirector {
    async fn on_request_headers(
        &mut self,
        cx: &mut Ctx,
        headers: &mut Headers,
    ) -> Result<Flow, ProcessorError> {
        let authority = headers
            .get_str("host")
            .map(str::to_string)
            .unwrap_or_else(|| cx.request.authority.clone());
        let scheme = match cx.request.scheme.as_str() {
            "" => "http",
            s => s,
        };
        let location = self.0.location(scheme, &authority, &cx.request.path);
        let value = HeaderValue::from_str(&location).map_err(|_| {
            ProcessorError::internal(format!(
                "redirect location {location:?} is not a header value"
            ))
        })?;
        let mut reply = LocalReply {
            status: self.0.status,
            headers: http::HeaderMap::new(),
            body: Bytes::new(),
            details: "request_redirect".into(),
        };
        reply.headers.insert(header::LOCATION, value);
        Ok(Flow::Respond(reply))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{AuthorityRewrite, PathRewrite};

    #[test]
    fn locations_keep_what_is_not_configured() {
        let config = Config::default();
        let redirect = |scheme: Option<&str>, authority, path| Redirect {
            scheme: scheme.map(str::to_string),
            parts: Rewrite::new(authority, path, &config, "r"),
            status: StatusCode::FOUND,
        };
        let https = redirect(Some("https"), None, None);
        assert_eq!(
            https.location("http", "gw.local:8080", "/a?b=1"),
            "https://gw.local:8080/a?b=1"
        );
        let moved = redirect(
            None,
            Some(AuthorityRewrite::Host("new.example".into())),
            Some(PathRewrite::Full("/v2".into())),
        );
        assert_eq!(
            moved.location("http", "gw.local:8080", "/a?b=1"),
            "http://new.example:8080/v2?b=1"
        );
    }
}
