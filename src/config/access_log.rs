//! `logging.fields`: access-log fields computed by CEL, in agentgateway's shape
//! (`config.logging.fields` in an agentgateway file moves here). The expressions are
//! compiled, and the names checked, when the pipeline is built
//! (`crate::access_log::AccessLog::compile`), with their field paths.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Fields added to, or left out of, the access line (one line per exchange, target
/// `tollgate::access`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AccessLogFields {
    /// Field name → CEL expression over `request`, `response`, `llm`, `jwt` and
    /// `route` (see the README's "Access-log fields"), evaluated once when the line is
    /// written. A field whose expression fails or yields null is left out; a
    /// `flattenRecursive(…)` result becomes one field per leaf (`name.0.content`). A
    /// name that is also a built-in field replaces it.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub add: BTreeMap<String, String>,
    /// Built-in fields to leave out of the line (`llm.ttft_ms`, `request_id`, …).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remove: Vec<String>,
}

impl AccessLogFields {
    pub fn is_empty(&self) -> bool {
        self.add.is_empty() && self.remove.is_empty()
    }
}
