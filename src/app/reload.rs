//! Hot reload: a settled change of the config file (see `config::watch_file`) is parsed,
//! validated and checked against the running config; only then does the new pipeline
//! replace the old one. Anything else leaves the running config in force, with one log
//! line saying why and `tollgate_config_reloads_total{result}` counting it:
//!
//! - `success`: applied;
//! - `failure`: the file is invalid (every problem logged), empty, or would remove
//!   every route or listener;
//! - `restart_required`: it changes listen addresses, ports or their TLS, which only a
//!   restart applies — the whole file is refused, so the open sockets keep their routes.

use std::sync::Arc;

use crate::config::{self, ConfigError, ReloadRefusal};
use crate::metrics::ResultLabels;
use crate::pipeline::{Pipeline, PipelineStore};
use crate::services::Services;

/// Why a file was not applied.
#[derive(Debug, thiserror::Error)]
enum Rejected {
    #[error(transparent)]
    Invalid(#[from] ConfigError),
    #[error(transparent)]
    Refused(#[from] ReloadRefusal),
}

/// Applies `text` (the new content of the config from `origin`: the file's path, or
/// the xDS server) if it is valid and may replace the running config; `Err` says why
/// it was not applied (an xDS NACK carries it).
pub(super) fn reload(
    store: &PipelineStore,
    services: &Arc<Services>,
    origin: &str,
    text: &str,
) -> Result<(), String> {
    let outcome = candidate(store, services, text);
    let result = match &outcome {
        Ok(_) => "success",
        Err(Rejected::Refused(ReloadRefusal::NeedsRestart(_))) => "restart_required",
        Err(_) => "failure",
    };
    services
        .metrics
        .config_reloads
        .get_or_create(&ResultLabels { result })
        .inc();
    match outcome {
        Ok(pipeline) => {
            let path = origin;
            let later = config::start_only_changes(store.load().config(), pipeline.config());
            crate::app::log_notices(&pipeline.loaded.notices);
            store.replace(pipeline);
            tracing::info!(path = %path, "config reloaded");
            // After the swap: a route Envoy learns of is already tollgate's.
            match services.xds.publish(store.load().config()) {
                Ok(true) => tracing::info!("xDS resources changed; pushed to the connected nodes"),
                Ok(false) => {}
                Err(e) => {
                    tracing::error!(error = %e, "xDS resources not regenerated; nodes keep the previous ones")
                }
            }
            if !later.is_empty() {
                tracing::warn!(sections = %later.join(", "), "these sections are read at start: their changes apply after a restart");
            }
            Ok(())
        }
        Err(Rejected::Refused(e @ ReloadRefusal::NeedsRestart(_))) => {
            tracing::error!(
                path = %origin, error = %e,
                "config reload rejected: restart tollgate to apply this file; the running config stays in force"
            );
            Err(e.to_string())
        }
        // Every problem on the one line (`validate` prints them one per line).
        Err(e) => {
            let line = e.to_string().replace(":\n  ", ": ").replace("\n  ", "; ");
            tracing::error!(
                path = %origin, error = %line,
                "config reload rejected; the running config stays in force"
            );
            Err(line)
        }
    }
}

/// The pipeline `text` builds, if it may replace the running one.
fn candidate(
    store: &PipelineStore,
    services: &Arc<Services>,
    text: &str,
) -> Result<Pipeline, Rejected> {
    let loaded = config::parse_str(text)?;
    // Checked before building, which may start work (pools, scrapers) for the new file;
    // a file that serves nothing gets the full list of its problems instead.
    if config::check_serves(&loaded.config).is_ok() {
        config::check_reload(store.load().config(), &loaded.config)?;
    }
    Ok(super::validated(loaded, services.clone())?)
}
