//! `runtime`: the process's async runtime, read at start (like Envoy's `--concurrency`).

use std::num::NonZeroUsize;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The async runtime.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RuntimeConfig {
    /// Worker threads serving connections and requests. Default: the number of CPU
    /// cores available to the process. `tollgate serve --workers N` overrides it; a
    /// change takes effect after a restart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<u32>")]
    pub workers: Option<NonZeroUsize>,
}

#[cfg(test)]
mod tests {
    use crate::config::parse_str;

    const ROUTE: &str = "binds: [ { port: 1, listeners: [ { routes: [ {} ] } ] } ]\n";

    #[test]
    fn workers_are_read_and_zero_is_refused_by_path() {
        let c = parse_str(&format!("{ROUTE}runtime: {{ workers: 3 }}\n")).unwrap();
        assert_eq!(c.config.runtime.workers.map(|n| n.get()), Some(3));
        let c = parse_str(ROUTE).unwrap();
        assert_eq!(c.config.runtime.workers, None);
        let e = parse_str(&format!("{ROUTE}runtime: {{ workers: 0 }}\n"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("runtime.workers"), "{e}");
    }
}
