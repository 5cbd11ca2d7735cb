//! An Envoy configured without ADS: its bootstrap names tollgate's per-type CDS and
//! LDS, and the listeners and clusters tollgate sends it name the per-type RDS, EDS and
//! ECDS through that bootstrap's cluster (`xds.bootstrapCluster`), SotW or Delta as the
//! stream that carried them. It carries OpenAI-style traffic through tollgate's
//! ext_proc and follows a config edit.

use std::time::Duration;

use crate::support::envoy::Envoy;
use crate::support::tollgate::Tollgate;
use crate::support::upstream::MockUpstream;
use crate::support::{eventually, free_port};
use crate::xds::{chat, config, first_reply, xds_status};

async fn follows_the_per_type_services(delta: bool) {
    let upstream = MockUpstream::start().await;
    let (ext_proc, listen) = (free_port(), free_port());
    let tollgate = Tollgate::start(&config(ext_proc, listen, upstream.port)).await;
    let envoy = Envoy::start_per_type("no-ads", ext_proc, delta).await;
    first_reply(listen).await;

    let reply = chat(listen, "per-type-chat").await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.header("x-tollgate-total-tokens"), Some("29"));

    // One stream per type, each ACKed at the version it was sent.
    let status = xds_status(&tollgate).await;
    let variant = if delta { "delta" } else { "sotw" };
    let mut seen = Vec::new();
    for stream in status["streams"].as_array().expect("streams") {
        assert_eq!(stream["node"], "no-ads", "{status:#}");
        assert_eq!(stream["variant"], variant, "{status:#}");
        for (kind, t) in stream["types"].as_object().expect("types") {
            if t["sent_version"].as_str().is_some_and(|v| !v.is_empty()) {
                assert_eq!(t["acked_version"], t["sent_version"], "{kind}: {status:#}");
                seen.push(kind.clone());
            }
        }
    }
    seen.sort();
    assert_eq!(
        seen,
        [
            "cluster",
            "endpoint",
            "extension_config",
            "listener",
            "route"
        ],
        "{status:#}"
    );
    // What Envoy holds names the per-type services, not ADS.
    let dump = envoy.config_dump().await;
    let listeners = dump["configs"]
        .as_array()
        .expect("configs")
        .iter()
        .find(|c| {
            c["@type"]
                .as_str()
                .is_some_and(|t| t.ends_with("ListenersConfigDump"))
        })
        .expect("listeners in the dump");
    let listener = &listeners["dynamic_listeners"][0]["active_state"]["listener"];
    let hcm = &listener["filter_chains"][0]["filters"][0]["typed_config"];
    let rds = &hcm["rds"]["config_source"]["api_config_source"];
    let api = if delta { "DELTA_GRPC" } else { "GRPC" };
    assert_eq!(rds["api_type"], api, "{hcm:#}");
    assert_eq!(
        rds["grpc_services"][0]["envoy_grpc"]["cluster_name"], "xds_cluster",
        "{hcm:#}"
    );
    let ecds = &hcm["http_filters"][0]["config_discovery"]["config_source"];
    assert_eq!(ecds["api_config_source"]["api_type"], api, "{hcm:#}");
    assert!(!dump.to_string().contains("\"ads\":{}"), "{dump}");

    // An edit moves the route to another upstream.
    let moved = MockUpstream::start().await;
    tollgate.rewrite_config(&config(ext_proc, listen, moved.port));
    eventually(
        "Envoy following the edit over the per-type services",
        Duration::from_secs(10),
        || async {
            chat(listen, "after-edit").await;
            let ids = moved.requests();
            ids.iter()
                .any(|r| r.header("x-test-id").as_deref() == Some("after-edit"))
                .then_some(())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_without_ads_follows_the_sotw_per_type_services() {
    follows_the_per_type_services(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_without_ads_follows_the_delta_per_type_services() {
    follows_the_per_type_services(true).await;
}
