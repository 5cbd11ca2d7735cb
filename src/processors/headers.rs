//! `requestHeaderModifier` / `responseHeaderModifier`: set, add and remove headers on the
//! request before it goes upstream, or on the response before it reaches the client.
//! Operations apply in the order remove → set → add.

use std::sync::Arc;

use async_trait::async_trait;
use http::{HeaderName, HeaderValue};

use crate::config::{ConfigError, FailureMode, HeaderModifier as HeaderModifierPolicy};
use crate::pipeline::{Ctx, Flow, Headers, Processor, ProcessorError, ProcessorFactory};

/// Which header block a modifier changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeaderSide {
    Request,
    Response,
}

#[derive(Debug)]
struct Ops {
    remove: Vec<HeaderName>,
    set: Vec<(HeaderName, HeaderValue)>,
    add: Vec<(HeaderName, HeaderValue)>,
}

/// Factory of one header-modifier policy.
pub struct HeaderModifierFactory {
    side: HeaderSide,
    ops: Arc<Ops>,
    failure_mode: FailureMode,
}

impl HeaderModifierFactory {
    /// Compiles the policy; `path` is its field path, for errors.
    pub fn new(
        side: HeaderSide,
        m: &HeaderModifierPolicy,
        path: &str,
    ) -> Result<Self, ConfigError> {
        let pair = |kind: &str, (name, value): (&String, &String)| {
            let field = format!("{path}.{kind}.{name}");
            let n = crate::pipeline::header_name_at(name, &field)?;
            let v = HeaderValue::from_str(value)
                .map_err(|_| ConfigError::field(&field, "invalid header value"))?;
            Ok::<_, ConfigError>((n, v))
        };
        let ops = Ops {
            remove: m
                .remove
                .iter()
                .enumerate()
                .map(|(i, n)| crate::pipeline::header_name_at(n, &format!("{path}.remove[{i}]")))
                .collect::<Result<_, _>>()?,
            set: m
                .set
                .iter()
                .map(|p| pair("set", p))
                .collect::<Result<_, _>>()?,
            add: m
                .add
                .iter()
                .map(|p| pair("add", p))
                .collect::<Result<_, _>>()?,
        };
        Ok(HeaderModifierFactory {
            side,
            ops: Arc::new(ops),
            failure_mode: m.failure_mode,
        })
    }
}

impl ProcessorFactory for HeaderModifierFactory {
    fn name(&self) -> &'static str {
        match self.side {
            HeaderSide::Request => "request_header_modifier",
            HeaderSide::Response => "response_header_modifier",
        }
    }

    fn failure_mode(&self) -> FailureMode {
        self.failure_mode
    }

    fn new_processor(&self, _cx: &Ctx) -> Option<Box<dyn Processor>> {
        Some(Box::new(HeaderModifier {
            side: self.side,
            ops: self.ops.clone(),
        }))
    }
}

struct HeaderModifier {
    side: HeaderSide,
    ops: Arc<Ops>,
}

impl HeaderModifier {
    fn apply(&self, headers: &mut Headers) {
        for name in &self.ops.remove {
            headers.remove(name);
        }
        for (name, value) in &self.ops.set {
            headers.set(name.clone(), value.clone());
        }
        for (name, value) in &self.ops.add {
            headers.append(name.clone(), value.clone());
        }
    }
}

#[async_trait]
impl Processor for HeaderModifier {
    async fn on_request_headers(
        &mut self,
        _cx: &mut Ctx,
        headers: &mut Headers,
    ) -> Result<Flow, ProcessorError> {
        if self.side == HeaderSide::Request {
            self.apply(headers);
        }
        Ok(Flow::Continue)
    }

    async fn on_response_headers(
        &mut self,
        _cx: &mut Ctx,
        headers: &mut Headers,
    ) -> Result<Flow, ProcessorError> {
        if self.side == HeaderSide::Response {
            self.apply(headers);
        }
        Ok(Flow::Continue)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::testing::exchange_for;

    #[tokio::test]
    async fn request_ops_apply_in_order_remove_set_add() {
        let yaml = "binds:\n- port: 1\n  listeners:\n  - routes:\n    - policies:\n        requestHeaderModifier:\n          remove: [x-drop]\n          set: {x-set: one, x-both: s}\n          add: {x-both: a}\n";
        let mut ex = exchange_for(yaml);
        let mut map = http::HeaderMap::new();
        map.insert("x-drop", HeaderValue::from_static("1"));
        map.insert("x-set", HeaderValue::from_static("old"));
        let mut h = Headers::new(map);
        assert!(matches!(
            ex.request_headers(&mut h).await,
            crate::pipeline::Verdict::Continue(())
        ));
        let m = h.map();
        assert!(m.get("x-drop").is_none());
        assert_eq!(m["x-set"], "one");
        let both: Vec<_> = m.get_all("x-both").iter().collect();
        assert_eq!(both, vec!["s", "a"]);
    }

    #[tokio::test]
    async fn response_modifier_leaves_request_alone() {
        let yaml = "binds:\n- port: 1\n  listeners:\n  - routes:\n    - policies:\n        responseHeaderModifier:\n          set: {x-r: v}\n";
        let mut ex = exchange_for(yaml);
        let mut req = Headers::new(http::HeaderMap::new());
        let _ = ex.request_headers(&mut req).await;
        assert!(req.diff().is_empty());
        let mut resp = Headers::new(http::HeaderMap::new());
        ex.cx.response_status = Some(200);
        let _ = ex.response_headers(&mut resp).await;
        assert_eq!(resp.map()["x-r"], "v");
    }
}
