//! The Delta state machine against hand-made snapshots.

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::google::protobuf::Any;

use super::*;
use crate::xds::snapshot::{CLUSTER, ROUTE};
use crate::xds::stream::testing::TestStream;

fn snapshot(items: &[(&'static str, &str, &str)]) -> Snapshot {
    Snapshot::new(items.iter().map(|(t, n, body)| {
        (
            *t,
            n.to_string(),
            Any {
                type_url: "t".into(),
                value: body.as_bytes().to_vec(),
            },
        )
    }))
}

fn request(
    type_url: &str,
    subscribe: &[&str],
    unsubscribe: &[&str],
    nonce: &str,
) -> DeltaDiscoveryRequest {
    DeltaDiscoveryRequest {
        node: Some(Node {
            id: "n".into(),
            ..Default::default()
        }),
        type_url: type_url.into(),
        resource_names_subscribe: subscribe.iter().map(|s| s.to_string()).collect(),
        resource_names_unsubscribe: unsubscribe.iter().map(|s| s.to_string()).collect(),
        response_nonce: nonce.into(),
        ..Default::default()
    }
}

fn names(r: &DeltaDiscoveryResponse) -> Vec<&str> {
    r.resources.iter().map(|r| r.name.as_str()).collect()
}

#[test]
fn only_changes_are_sent() {
    let t = TestStream::new();
    let cx = t.cx();
    let mut d = Delta::default();
    let v1 = snapshot(&[
        (CLUSTER, "a", "1"),
        (CLUSTER, "b", "1"),
        (CLUSTER, "c", "1"),
    ]);
    let out = d
        .on_request(request(CLUSTER, &[], &[], ""), &v1, &cx)
        .unwrap();
    assert_eq!(names(&out[0]), ["a", "b", "c"]);
    assert!(d
        .on_request(request(CLUSTER, &[], &[], &out[0].nonce), &v1, &cx)
        .unwrap()
        .is_empty());
    // One changed, one removed, one unchanged.
    let v2 = snapshot(&[(CLUSTER, "a", "2"), (CLUSTER, "c", "1")]);
    let push = d.on_snapshot(&v2, &cx);
    assert_eq!(push.len(), 1);
    assert_eq!(names(&push[0]), ["a"]);
    assert_eq!(push[0].removed_resources, ["b"]);
    assert!(d.on_snapshot(&v2, &cx).is_empty(), "nothing left to send");
}

#[test]
fn a_reconnect_with_current_versions_gets_only_what_it_lacks() {
    let t = TestStream::new();
    let cx = t.cx();
    let v1 = snapshot(&[(CLUSTER, "a", "1"), (CLUSTER, "b", "1")]);
    let mut req = request(CLUSTER, &[], &[], "");
    let a = &v1.resources(CLUSTER).items["a"];
    req.initial_resource_versions = [
        ("a".to_string(), a.version.clone()),
        ("gone".to_string(), "x".to_string()),
    ]
    .into();
    let out = Delta::default().on_request(req, &v1, &cx).unwrap();
    assert_eq!(names(&out[0]), ["b"]);
    assert_eq!(out[0].removed_resources, ["gone"]);
}

#[test]
fn explicit_subscriptions_follow_subscribe_and_unsubscribe() {
    let t = TestStream::new();
    let cx = t.cx();
    let mut d = Delta::default();
    let v1 = snapshot(&[(ROUTE, "r1", "1"), (ROUTE, "r2", "1")]);
    let out = d
        .on_request(request(ROUTE, &["r1"], &[], ""), &v1, &cx)
        .unwrap();
    assert_eq!(names(&out[0]), ["r1"]);
    let out = d
        .on_request(request(ROUTE, &["r2"], &["r1"], &out[0].nonce), &v1, &cx)
        .unwrap();
    assert_eq!(names(&out[0]), ["r2"]);
    // r1 is no longer wanted: its change is not sent.
    let v2 = snapshot(&[(ROUTE, "r1", "2"), (ROUTE, "r2", "1")]);
    assert!(d.on_snapshot(&v2, &cx).is_empty());
    // A name that does not exist yet is sent when it appears.
    assert!(d
        .on_request(request(ROUTE, &["r3"], &[], &out[0].nonce), &v2, &cx)
        .unwrap()
        .is_empty());
    let v3 = snapshot(&[(ROUTE, "r2", "1"), (ROUTE, "r3", "1")]);
    assert_eq!(names(&d.on_snapshot(&v3, &cx)[0]), ["r3"]);
}
