//! The SotW state machine against hand-made snapshots.

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::google::protobuf::Any;
use envoy_types::pb::google::rpc::Status as RpcStatus;

use super::*;
use crate::xds::snapshot::{CLUSTER, ENDPOINT, LISTENER};
use crate::xds::stream::testing::TestStream;

fn any(tag: &str) -> Any {
    Any {
        type_url: "t".into(),
        value: tag.as_bytes().to_vec(),
    }
}

fn snapshot(items: &[(&'static str, &str, &str)]) -> Snapshot {
    Snapshot::new(
        items
            .iter()
            .map(|(t, n, body)| (*t, n.to_string(), any(body))),
    )
}

fn request(type_url: &str, names: &[&str], nonce: &str, version: &str) -> DiscoveryRequest {
    DiscoveryRequest {
        node: Some(Node {
            id: "n".into(),
            ..Default::default()
        }),
        type_url: type_url.into(),
        resource_names: names.iter().map(|s| s.to_string()).collect(),
        response_nonce: nonce.into(),
        version_info: version.into(),
        ..Default::default()
    }
}

#[test]
fn wildcard_ack_nack_and_push() {
    let t = TestStream::new();
    let cx = t.cx();
    let mut s = Sotw::default();
    let v1 = snapshot(&[(CLUSTER, "a", "1"), (CLUSTER, "b", "1")]);
    let out = s
        .on_request(request(CLUSTER, &[], "", ""), &v1, &cx)
        .unwrap();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].resources.len(), 2);
    let (version, nonce) = (out[0].version_info.clone(), out[0].nonce.clone());
    // The ACK asks for nothing new.
    let ack = s.on_request(request(CLUSTER, &[], &nonce, &version), &v1, &cx);
    assert!(ack.unwrap().is_empty());
    assert_eq!(
        t.registered.status.lock().unwrap().types["cluster"].acked_version,
        version
    );
    // The same content again is no push.
    assert!(s
        .on_snapshot(&snapshot(&[(CLUSTER, "a", "1"), (CLUSTER, "b", "1")]), &cx)
        .is_empty());
    // A change is pushed, whole.
    let v2 = snapshot(&[(CLUSTER, "a", "2"), (CLUSTER, "b", "1")]);
    let push = s.on_snapshot(&v2, &cx);
    assert_eq!(push.len(), 1);
    assert_eq!(push[0].resources.len(), 2);
    assert_ne!(push[0].version_info, version);
    // A NACK keeps the node on v1: recorded, counted, not re-sent.
    let mut nack = request(CLUSTER, &[], &push[0].nonce, &version);
    nack.error_detail = Some(RpcStatus {
        code: 3,
        message: "bad cluster a".into(),
        details: vec![],
    });
    assert!(s.on_request(nack, &v2, &cx).unwrap().is_empty());
    let status = t.registered.status.lock().unwrap().types["cluster"].clone();
    let last = status.last_nack.expect("the NACK is recorded");
    assert_eq!(last.message, "bad cluster a");
    assert_eq!(last.kept_version, version);
    assert_eq!(last.refused_version, push[0].version_info);
    assert_eq!(status.acked_version, version);
    let nacks = t.xds.metrics.encode();
    assert!(
        nacks.contains("tollgate_xds_nacks_total{variant=\"test\",type=\"cluster\"} 1"),
        "{nacks}"
    );
    // The next config change goes out as usual.
    let v3 = snapshot(&[(CLUSTER, "a", "3"), (CLUSTER, "b", "1")]);
    assert_eq!(s.on_snapshot(&v3, &cx).len(), 1);
}

#[test]
fn stale_nonces_are_ignored() {
    let t = TestStream::new();
    let cx = t.cx();
    let mut s = Sotw::default();
    let v1 = snapshot(&[(LISTENER, "l", "1")]);
    let first = s
        .on_request(request(LISTENER, &[], "", ""), &v1, &cx)
        .unwrap();
    let v2 = snapshot(&[(LISTENER, "l", "2")]);
    let second = s.on_snapshot(&v2, &cx);
    assert_eq!(second.len(), 1);
    // The ACK of the first response arrives after the second was sent: stale.
    let late = request(LISTENER, &[], &first[0].nonce, &first[0].version_info);
    assert!(s.on_request(late, &v2, &cx).unwrap().is_empty());
    assert_eq!(
        t.registered.status.lock().unwrap().types["listener"].acked_version,
        ""
    );
}

#[test]
fn named_requests_wait_until_every_name_exists() {
    let t = TestStream::new();
    let cx = t.cx();
    let mut s = Sotw::default();
    let without = snapshot(&[(ENDPOINT, "a", "1")]);
    let held = s
        .on_request(request(ENDPOINT, &["a", "b"], "", ""), &without, &cx)
        .unwrap();
    assert!(held.is_empty(), "b does not exist yet");
    let with = snapshot(&[
        (ENDPOINT, "a", "1"),
        (ENDPOINT, "b", "1"),
        (ENDPOINT, "c", "1"),
    ]);
    let out = s.on_snapshot(&with, &cx);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].resources.len(), 2, "only the names asked for");
    // A change to a resource not asked for sends nothing.
    let other = snapshot(&[
        (ENDPOINT, "a", "1"),
        (ENDPOINT, "b", "1"),
        (ENDPOINT, "c", "2"),
    ]);
    assert!(s.on_snapshot(&other, &cx).is_empty());
    // Dropping a name is a new subscription, answered at once.
    let ack = &out[0];
    let fewer = request(ENDPOINT, &["a"], &ack.nonce, &ack.version_info);
    let out = s.on_request(fewer, &other, &cx).unwrap();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].resources.len(), 1);
}

#[test]
fn bad_requests_end_the_stream_with_invalid_argument() {
    let t = TestStream::new();
    let cx = t.cx();
    let mut s = Sotw::default();
    let snap = Snapshot::default();
    let err = s
        .on_request(request("type.googleapis.com/x.Y", &[], "", ""), &snap, &cx)
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(
        err.message().contains("unknown type URL"),
        "{}",
        err.message()
    );
    let names: Vec<String> = (0..=crate::xds::stream::MAX_NAMES)
        .map(|i| i.to_string())
        .collect();
    let mut many = request(ENDPOINT, &[], "", "");
    many.resource_names = names;
    let err = s.on_request(many, &snap, &cx).unwrap_err();
    assert!(
        err.message().contains("resource names"),
        "{}",
        err.message()
    );
}

#[test]
fn routes_wait_until_their_clusters_and_endpoints_are_acked() {
    use crate::xds::snapshot::ROUTE;
    let t = TestStream::new();
    let cx = t.cx();
    let mut s = Sotw::default();
    let snap = Snapshot::with_needs([
        (CLUSTER, "c".to_string(), any("c"), vec![]),
        (ENDPOINT, "c".to_string(), any("e"), vec![]),
        (ROUTE, "r".to_string(), any("r"), vec!["c".to_string()]),
    ]);
    assert!(s
        .on_request(request(ROUTE, &["r"], "", ""), &snap, &cx)
        .unwrap()
        .is_empty());
    let cds = s
        .on_request(request(CLUSTER, &[], "", ""), &snap, &cx)
        .unwrap();
    assert_eq!(cds.len(), 1);
    let eds = s
        .on_request(request(ENDPOINT, &["c"], "", ""), &snap, &cx)
        .unwrap();
    assert_eq!(eds.len(), 1, "{eds:?}");
    // The cluster ACK alone is not enough: its endpoints are still on their way.
    let ack = request(CLUSTER, &[], &cds[0].nonce, &cds[0].version_info);
    assert!(s.on_request(ack, &snap, &cx).unwrap().is_empty());
    let ack = request(ENDPOINT, &["c"], &eds[0].nonce, &eds[0].version_info);
    let out = s.on_request(ack, &snap, &cx).unwrap();
    assert_eq!(
        out.len(),
        1,
        "the held route configuration goes out with the last ACK"
    );
    assert_eq!(out[0].type_url, ROUTE);
}
