//! Endpoints from DNS: every A and AAAA record of a name (the system resolver, through
//! `tokio::net::lookup_host`), each with the configured port, re-resolved every `refresh`
//! — a headless Service's name in Kubernetes gives its ready pods. A failed lookup keeps
//! the last good list and is logged (a warning when it starts failing, then at debug
//! level until it resolves again).

use std::net::SocketAddr;
use std::time::Duration;

use tokio::sync::watch;

use super::{normalize, publish, sleep_unless_closed};

/// The addresses of `name`, each with `port`, sorted and deduplicated.
pub async fn resolve(name: &str, port: u16) -> std::io::Result<Vec<SocketAddr>> {
    let list = normalize(tokio::net::lookup_host((name, port)).await?.collect());
    if list.is_empty() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("{name} has no A or AAAA record"),
        ));
    }
    Ok(list)
}

/// Resolves `name` every `refresh` and publishes the list on `tx` until every receiver
/// is gone.
pub(crate) async fn run(
    name: String,
    port: u16,
    refresh: Duration,
    tx: watch::Sender<Vec<SocketAddr>>,
) {
    let mut failing = false;
    loop {
        let result = tokio::select! {
            _ = tx.closed() => return,
            r = resolve(&name, port) => r,
        };
        match result {
            Ok(list) => {
                let count = list.len();
                if publish(&tx, list) {
                    tracing::info!(name, port, endpoints = count, "DNS endpoints changed");
                } else if failing {
                    tracing::info!(name, port, endpoints = count, "DNS lookup succeeds again");
                }
                failing = false;
            }
            Err(e) if !failing => {
                tracing::warn!(name, port, error = %e, "DNS lookup failed; keeping the last good list");
                failing = true;
            }
            Err(e) => tracing::debug!(name, port, error = %e, "DNS lookup still failing"),
        }
        if !sleep_unless_closed(&tx, refresh).await {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::epp::discovery::{watch, EndpointSource};

    #[tokio::test]
    async fn localhost_resolves_to_loopback_with_the_port() {
        let list = resolve("localhost", 8123).await.unwrap();
        assert!(!list.is_empty());
        for a in &list {
            assert!(a.ip().is_loopback(), "{a}");
            assert_eq!(a.port(), 8123);
        }
        let mut sorted = list.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted, list);
    }

    #[tokio::test]
    async fn an_ip_literal_resolves_to_itself() {
        assert_eq!(
            resolve("127.0.0.7", 9).await.unwrap(),
            vec!["127.0.0.7:9".parse::<SocketAddr>().unwrap()]
        );
    }

    /// A name that fails before any resolver is asked (it cannot be passed to the C
    /// library), so the tests send no query off the machine.
    const UNRESOLVABLE: &str = "bad\0name";

    #[tokio::test]
    async fn a_bad_name_fails() {
        assert!(resolve(UNRESOLVABLE, 80).await.is_err());
    }

    #[tokio::test]
    async fn watch_publishes_localhost() {
        let source = EndpointSource::Dns {
            name: "localhost".into(),
            port: 8000,
            refresh: Duration::from_millis(50),
        };
        let mut rx = watch(source, Default::default());
        assert!(rx.borrow().is_empty(), "DNS starts empty");
        let list = tokio::time::timeout(Duration::from_secs(10), rx.wait_for(|l| !l.is_empty()))
            .await
            .expect("no lookup within 10 s")
            .unwrap()
            .clone();
        let loopback: Vec<SocketAddr> = ["127.0.0.1:8000", "[::1]:8000"]
            .iter()
            .map(|a| a.parse().unwrap())
            .collect();
        assert!(list.iter().all(|a| loopback.contains(a)), "{list:?}");
        // Re-resolving gives the same set: nothing more is sent.
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!rx.has_changed().unwrap());
    }

    #[tokio::test]
    async fn a_failing_lookup_keeps_the_last_list_and_the_task_stops() {
        let (tx, rx) = watch::channel(vec!["127.0.0.1:1".parse::<SocketAddr>().unwrap()]);
        let task = tokio::spawn(run(UNRESOLVABLE.into(), 80, Duration::from_millis(20), tx));
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(rx.borrow().len(), 1);
        assert!(!rx.has_changed().unwrap());
        drop(rx);
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .expect("the task did not stop")
            .unwrap();
    }
}
