//! Hot reload against broken and unsafe edits: saves in place (half-written files), an
//! emptied or commented-out file, a file without routes, and a listen-port edit. None
//! may cost a request: the running config keeps serving until a good file settles.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::support::client;
use crate::support::tollgate::Tollgate;
use crate::support::upstream::MockUpstream;
use crate::support::{self, free_port, metric};

const SUCCESS: &str = r#"tollgate_config_reloads_total{result="success"}"#;
const FAILURE: &str = r#"tollgate_config_reloads_total{result="failure"}"#;
const RESTART: &str = r#"tollgate_config_reloads_total{result="restart_required"}"#;

/// Two routes: `first` for `/first`, then the catch-all `versioned`, which answers
/// with `x-config-version: <version>`. Cut after `first`, the file is still valid YAML
/// with one route that does not match `/`.
fn two_routes(proxy: u16, upstream: u16, version: &str) -> String {
    format!(
        r#"binds:
- port: {proxy}
  listeners:
  - routes:
    - name: first
      matches: [ {{ path: {{ pathPrefix: /first }} }} ]
      backends: [ {{ host: "127.0.0.1:{upstream}" }} ]
    - name: versioned
      policies:
        responseHeaderModifier: {{ set: {{ x-config-version: {version} }} }}
      backends: [ {{ host: "127.0.0.1:{upstream}" }} ]
"#
    )
}

/// GETs `/` on `port` until `stop`, counting answers that are not 200.
fn hammer(
    port: u16,
    stop: Arc<AtomicBool>,
    bad: Arc<AtomicUsize>,
) -> tokio::task::JoinHandle<usize> {
    tokio::spawn(async move {
        let mut sent = 0;
        while !stop.load(Ordering::Relaxed) {
            let reply = client::get(port, "/").await;
            if reply.status != 200 {
                bad.fetch_add(1, Ordering::Relaxed);
            }
            sent += 1;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        sent
    })
}

async fn version(port: u16) -> Option<String> {
    let reply = client::get(port, "/").await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply.header("x-config-version").map(str::to_string)
}

/// Waits for a reload counter. A reload takes two polls (500 ms apart) once the file is
/// stable; the bound leaves room for a loaded machine running the suite in parallel.
async fn wait_metric(tollgate: &Tollgate, name: &str, value: f64) -> String {
    support::eventually(name, Duration::from_secs(20), || async {
        let m = tollgate.metrics().await;
        (metric(&m, name) == Some(value)).then_some(m)
    })
    .await
}

/// Saves in place (each showing a half file for 150 ms, less than a poll), an emptied
/// file, a commented-out one and one whose bind has no routes: not one request fails,
/// only the complete saves apply, and each refusal is logged and counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_saves_never_cost_a_request() {
    let upstream = MockUpstream::start().await;
    let proxy = free_port();
    let tollgate = Tollgate::start(&two_routes(proxy, upstream.port, "v1")).await;
    assert_eq!(version(proxy).await.as_deref(), Some("v1"));
    let (stop, bad) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicUsize::new(0)),
    );
    let load = hammer(proxy, stop.clone(), bad.clone());

    for (i, v) in ["v2", "v3", "v4"].into_iter().enumerate() {
        let yaml = two_routes(proxy, upstream.port, v);
        let cut = yaml.find("    - name: versioned").unwrap();
        tollgate
            .save_config_in_place(&yaml, cut, Duration::from_millis(150))
            .await;
        support::eventually("the saved version", Duration::from_secs(5), || async {
            (version(proxy).await.as_deref() == Some(v)).then_some(())
        })
        .await;
        wait_metric(&tollgate, SUCCESS, (i + 1) as f64).await;
    }

    // Emptied and commented out (no admin section either: the whole file).
    for (i, text) in ["", "# binds:\n#   - port: 1\n"].into_iter().enumerate() {
        std::fs::write(&tollgate.config_path, text).unwrap();
        wait_metric(&tollgate, FAILURE, (i + 1) as f64).await;
    }
    let no_routes = format!("binds:\n- port: {proxy}\n  listeners:\n  - routes: []\n");
    tollgate.rewrite_config(&no_routes);
    wait_metric(&tollgate, FAILURE, 3.0).await;
    stop.store(true, Ordering::Relaxed);
    let sent = load.await.unwrap();
    assert!(sent > 50, "only {sent} requests sent");
    assert_eq!(
        bad.load(Ordering::Relaxed),
        0,
        "requests failed during the saves"
    );
    assert_eq!(version(proxy).await.as_deref(), Some("v4"));
    let metrics = tollgate.metrics().await;
    assert_eq!(metric(&metrics, SUCCESS), Some(3.0), "{metrics}");

    let log = tollgate.log();
    let rejected: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("config reload rejected"))
        .collect();
    assert_eq!(rejected.len(), 3, "{log}");
    assert!(
        rejected[0].contains("the config is empty"),
        "{}",
        rejected[0]
    );
    assert!(
        rejected[1].contains("the config is empty"),
        "{}",
        rejected[1]
    );
    assert!(
        rejected[2].contains("binds[0].listeners: no routes"),
        "{}",
        rejected[2]
    );
}

/// An edit of a listen port is refused as a whole (logged, counted as
/// `restart_required`): the old port keeps its routes. Reverting it applies the rest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_port_edit_keeps_the_old_listener_and_its_routes() {
    let upstream = MockUpstream::start().await;
    let (proxy, other) = (free_port(), free_port());
    let tollgate = Tollgate::start(&two_routes(proxy, upstream.port, "v1")).await;

    tollgate.rewrite_config(&two_routes(other, upstream.port, "v2"));
    let metrics = wait_metric(&tollgate, RESTART, 1.0).await;
    assert_eq!(metric(&metrics, SUCCESS), None, "{metrics}");
    assert_eq!(
        version(proxy).await.as_deref(),
        Some("v1"),
        "old routes kept"
    );
    assert!(
        client::send(other, client::Req::get("/")).await.is_err(),
        "nothing listens on the new port before a restart"
    );
    let log = tollgate.log();
    let line = log
        .lines()
        .find(|l| l.contains("restart tollgate to apply this file"))
        .unwrap_or_else(|| panic!("no refusal logged:\n{log}"));
    assert!(
        line.contains(&format!("binds: 127.0.0.1:{proxy} removed"))
            && line.contains(&format!("binds: 127.0.0.1:{other} added")),
        "{line}"
    );

    tollgate.rewrite_config(&two_routes(proxy, upstream.port, "v3"));
    wait_metric(&tollgate, SUCCESS, 1.0).await;
    assert_eq!(version(proxy).await.as_deref(), Some("v3"));
}
