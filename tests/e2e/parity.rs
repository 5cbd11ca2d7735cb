//! One scenario through both adapters gives the same exchange.

use crate::support::assert_sse_one_by_one;
use crate::support::client;
use crate::support::envoy::{Envoy, ListenerSpec, Mode};
use crate::support::scenario::{self, Ports};
use crate::support::tollgate::Tollgate;
use crate::support::upstream::MockUpstream;

const REQUEST_HEADERS: &[&str] = &["x-set", "x-overwrite", "x-multi", "x-drop", "x-test-id"];
const RESPONSE_HEADERS: &[&str] = &[
    "x-tollgate",
    "x-tollgate-route",
    "x-resp-multi",
    "x-upstream-secret",
    "x-upstream",
    "content-type",
];

/// The same request through Envoy (each mode, bodies through tollgate) and through
/// the proxy: the upstream gets the same request and the client the same response.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_and_proxy_give_the_same_exchange() {
    let upstream = MockUpstream::start().await;
    let ports = Ports::free();
    let _tollgate = Tollgate::start(&scenario::config(ports, upstream.port, false)).await;
    let modes = [Mode::Buffered, Mode::Streamed, Mode::FullDuplex];
    let specs: Vec<_> = modes
        .iter()
        .map(|m| ListenerSpec::new(ports.ext_proc, upstream.port, *m))
        .collect();
    let envoy = Envoy::start(&specs).await;

    // The same x-test-id on every run, so it is compared too; runs are sequential.
    let req = scenario::chat_request("parity");
    let by_proxy = client::must(ports.proxy, req.clone()).await;
    let proxied = upstream.requests().pop().expect("the proxied request");
    scenario::assert_client_response(&by_proxy, &req);
    scenario::assert_upstream_request(&proxied, &req);

    for (i, mode) in modes.iter().enumerate() {
        let by_envoy = client::must(envoy.port(i), req.clone()).await;
        let seen = upstream
            .requests()
            .pop()
            .expect("the request through Envoy");
        assert_eq!(seen.method, proxied.method, "{mode:?}");
        assert_eq!(seen.path, proxied.path, "{mode:?}");
        assert!(seen.body == proxied.body, "{mode:?}: request bodies differ");
        for h in REQUEST_HEADERS {
            assert_eq!(
                scenario::flat(seen.header_all(h)),
                scenario::flat(proxied.header_all(h)),
                "{mode:?}: upstream request header {h}"
            );
        }
        assert_eq!(by_envoy.status, by_proxy.status, "{mode:?}");
        assert_eq!(
            by_envoy.body, by_proxy.body,
            "{mode:?}: response bodies differ"
        );
        for h in RESPONSE_HEADERS {
            assert_eq!(
                scenario::flat(by_envoy.header_all(h)),
                scenario::flat(by_proxy.header_all(h)),
                "{mode:?}: response header {h}"
            );
        }
    }

    // A stream gives the same events both ways.
    let streamed = assert_sse_one_by_one(ports.proxy, &upstream, "parity-sse-proxy").await;
    let through_envoy = assert_sse_one_by_one(envoy.port(1), &upstream, "parity-sse-envoy").await;
    assert_eq!(streamed, through_envoy);
}
