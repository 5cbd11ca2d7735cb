//! The processor registry: which policies become processors, and in what order they run.
//!
//! Order, and why:
//! 1. `request_header_modifier` — first, so every later processor (guards, accounting,
//!    endpoint picking) sees the headers the operator meant the upstream to get.
//! 2. `response_header_modifier` — its response hook runs after the upstream answered;
//!    listed here so that response-side processors added later run before it and the
//!    operator's response headers have the last word.

mod headers;

use std::sync::Arc;

use crate::config::{ConfigError, Policies};
use crate::pipeline::ProcessorFactory;

pub use headers::{HeaderModifierFactory, HeaderSide};

/// The processor factories for a route's policies, in run order. `path` is the policies'
/// field path, for errors.
pub fn for_route(
    policies: &Policies,
    path: &str,
) -> Result<Vec<Arc<dyn ProcessorFactory>>, ConfigError> {
    let mut factories: Vec<Arc<dyn ProcessorFactory>> = Vec::new();
    if let Some(m) = &policies.request_header_modifier {
        factories.push(Arc::new(HeaderModifierFactory::new(
            HeaderSide::Request,
            m,
            &format!("{path}.requestHeaderModifier"),
        )?));
    }
    if let Some(m) = &policies.response_header_modifier {
        factories.push(Arc::new(HeaderModifierFactory::new(
            HeaderSide::Response,
            m,
            &format!("{path}.responseHeaderModifier"),
        )?));
    }
    Ok(factories)
}
