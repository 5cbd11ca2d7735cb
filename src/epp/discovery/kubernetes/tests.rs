//! Kubernetes discovery against the API server stand-in (`mock_api`): pods turning
//! Ready and back, deletions, terminating pods, target ports × pods, selector changes,
//! pool deletion, expired watches, and the task ending with its receivers.

use super::mock_api::MockApi;
use super::*;
use std::time::Duration;

const NS: &str = "models";
const VLLM: &[(&str, &str)] = &[("app", "vllm")];

fn addrs(list: &[&str]) -> Vec<SocketAddr> {
    let mut v: Vec<SocketAddr> = list.iter().map(|a| a.parse().unwrap()).collect();
    v.sort_unstable();
    v
}

/// Starts following `pool` on the stand-in; the task and the receiver.
fn follow(
    api: &MockApi,
    pool: &str,
) -> (
    tokio::task::JoinHandle<()>,
    watch::Receiver<Vec<SocketAddr>>,
) {
    let (task, rx, _) = follow_with_roles(api, pool);
    (task, rx)
}

/// [`follow`], with the roles the task reports.
fn follow_with_roles(
    api: &MockApi,
    pool: &str,
) -> (
    tokio::task::JoinHandle<()>,
    watch::Receiver<Vec<SocketAddr>>,
    Arc<DiscoveredRoles>,
) {
    let (tx, rx) = watch::channel(Vec::new());
    let roles = Arc::new(DiscoveredRoles::default());
    let task = tokio::spawn(run_with_client(
        api.client(),
        pool.to_string(),
        NS.to_string(),
        tx,
        roles.clone(),
    ));
    (task, rx, roles)
}

/// Waits (at most 10 s) until the receiver holds exactly `want`.
async fn expect(rx: &mut watch::Receiver<Vec<SocketAddr>>, want: &[&str]) {
    let want = addrs(want);
    let ok = tokio::time::timeout(Duration::from_secs(10), rx.wait_for(|l| *l == want))
        .await
        .is_ok_and(|r| r.is_ok());
    assert!(
        ok,
        "timed out waiting for {want:?}; have {:?}",
        *rx.borrow()
    );
}

#[test]
fn pool_spec_reads_the_v1_schema() {
    let obj: DynamicObject = serde_json::from_value(serde_json::json!({
        "apiVersion": "inference.networking.k8s.io/v1",
        "kind": "InferencePool",
        "metadata": {"name": "p"},
        "spec": {
            "selector": {"matchLabels": {"app": "vllm", "tier": "a"}},
            "targetPorts": [{"number": 8000}, {"number": 8001}],
            "appProtocol": "http",
            "endpointPickerRef": {"name": "epp", "port": {"number": 9002}, "failureMode": "FailOpen"},
        },
    }))
    .unwrap();
    let spec = PoolSpec::from_object(&obj).unwrap();
    assert_eq!(spec.label_selector(), "app=vllm,tier=a");
    let ip: IpAddr = "127.0.0.2".parse().unwrap();
    assert_eq!(
        spec.endpoints([ip]),
        addrs(&["127.0.0.2:8000", "127.0.0.2:8001"])
    );
    let mut labels = BTreeMap::new();
    labels.insert("app".to_string(), "vllm".to_string());
    assert!(!spec.selects(&labels));
    labels.insert("tier".to_string(), "a".to_string());
    assert!(spec.selects(&labels));

    for (spec, needle) in [
        (
            serde_json::json!({"selector": {"matchLabels": {}}, "targetPorts": [{"number": 1}]}),
            "matchLabels is empty",
        ),
        (
            serde_json::json!({"selector": {"matchLabels": {"a": "b"}}, "targetPorts": []}),
            "0 ports",
        ),
        (
            serde_json::json!({"selector": {"matchLabels": {"a": "b"}}, "targetPorts": [{"number": 70000}]}),
            "spec:",
        ),
        (
            serde_json::json!({"targetPorts": [{"number": 1}]}),
            "selector",
        ),
    ] {
        let mut o = obj.clone();
        o.data["spec"] = spec;
        let e = PoolSpec::from_object(&o).unwrap_err().to_string();
        assert!(e.contains(needle), "{e}");
    }
    let mut o = obj.clone();
    o.data["spec"] = serde_json::json!({"selector": {"matchLabels": {"a": "b"}}, "targetPorts": [{"number": 0}]});
    assert_eq!(PoolSpec::from_object(&o), Err(PoolSpecError::PortZero));
    o.data.as_object_mut().unwrap().remove("spec");
    assert_eq!(PoolSpec::from_object(&o), Err(PoolSpecError::NoSpec));
}

#[tokio::test]
async fn ready_pods_come_and_go() {
    let api = MockApi::start(NS).await;
    api.apply_pool("pool", VLLM, &[8000]);
    api.apply_pod("a", VLLM, "127.0.0.2", false);
    api.apply_pod("b", VLLM, "127.0.0.3", true);
    // Ready, but not a member; and a member without an IP yet.
    api.apply_pod("other", &[("app", "web")], "127.0.0.9", true);
    api.apply_pod("pending", VLLM, "", false);
    let (task, mut rx) = follow(&api, "pool");
    expect(&mut rx, &["127.0.0.3:8000"]).await;

    api.apply_pod("a", VLLM, "127.0.0.2", true);
    expect(&mut rx, &["127.0.0.2:8000", "127.0.0.3:8000"]).await;
    api.apply_pod("b", VLLM, "127.0.0.3", false);
    expect(&mut rx, &["127.0.0.2:8000"]).await;
    api.apply_pod("c", VLLM, "127.0.0.4", true);
    expect(&mut rx, &["127.0.0.2:8000", "127.0.0.4:8000"]).await;
    // Terminating pods leave at once, even while still Ready.
    api.apply_pod_with("c", VLLM, "127.0.0.4", true, true);
    expect(&mut rx, &["127.0.0.2:8000"]).await;
    api.delete_pod("a");
    expect(&mut rx, &[]).await;

    // The pod watch asked the server for the pool's selector.
    let requests = api.requests();
    assert!(
        requests
            .iter()
            .any(|r| r.starts_with(&format!("/api/v1/namespaces/{NS}/pods?"))
                && r.contains("labelSelector=app=vllm")
                && r.contains("watch=true")),
        "{requests:#?}"
    );
    assert!(
        requests.iter().any(|r| r.starts_with(&format!(
            "/apis/inference.networking.k8s.io/v1/namespaces/{NS}/inferencepools?"
        )) && r.contains("fieldSelector=metadata.name=pool")),
        "{requests:#?}"
    );
    // Every change came through the one watch: listed once, never relisted.
    let pod_lists = requests
        .iter()
        .filter(|r| r.contains("/pods?") && !r.contains("watch=true"))
        .count();
    assert_eq!(pod_lists, 1, "{requests:#?}");

    drop(rx);
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("the task did not stop once the receiver was gone")
        .unwrap();
}

#[tokio::test]
async fn role_labels_give_the_endpoints_roles() {
    let api = MockApi::start(NS).await;
    api.apply_pool("pool", VLLM, &[8000, 8001]);
    let prefill = [("app", "vllm"), (ROLE_LABEL, "prefill")];
    api.apply_pod("p", &prefill, "127.0.0.2", true);
    api.apply_pod(
        "d",
        &[("app", "vllm"), (ROLE_LABEL, "decode")],
        "127.0.0.3",
        true,
    );
    api.apply_pod("plain", VLLM, "127.0.0.4", true);
    // A role llm-d's filters know nothing of: neither stage, so not a member.
    api.apply_pod(
        "e",
        &[("app", "vllm"), (ROLE_LABEL, "encode")],
        "127.0.0.5",
        true,
    );
    let (task, mut rx, roles) = follow_with_roles(&api, "pool");
    let all = [
        "127.0.0.2:8000",
        "127.0.0.2:8001",
        "127.0.0.3:8000",
        "127.0.0.3:8001",
        "127.0.0.4:8000",
        "127.0.0.4:8001",
    ];
    expect(&mut rx, &all).await;
    let role = |a: &str| roles.get(&a.parse().unwrap());
    assert_eq!(role("127.0.0.2:8001"), Some(EndpointRole::Prefill));
    assert_eq!(role("127.0.0.3:8000"), Some(EndpointRole::Decode));
    assert_eq!(role("127.0.0.4:8000"), None, "unlabelled: none reported");
    // Relabelled in place: the role follows, the list stays.
    api.apply_pod(
        "p",
        &[("app", "vllm"), (ROLE_LABEL, "both")],
        "127.0.0.2",
        true,
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while role("127.0.0.2:8000") != Some(EndpointRole::PrefillDecode) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the relabel never came"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(*rx.borrow(), addrs(&all));
    api.delete_pool("pool");
    expect(&mut rx, &[]).await;
    // Leaving endpoints keep their roles until the next change (the pool drops them
    // only once the list arrives): a pool selecting nothing is that change.
    assert_eq!(role("127.0.0.3:8000"), Some(EndpointRole::Decode));
    api.apply_pool("pool", &[("app", "none")], &[8000]);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while role("127.0.0.3:8000").is_some() {
        assert!(tokio::time::Instant::now() < deadline, "the roles stayed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    drop(rx);
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn target_ports_multiply_and_change() {
    let api = MockApi::start(NS).await;
    api.apply_pod("a", VLLM, "127.0.0.2", true);
    api.apply_pod("b", VLLM, "127.0.0.3", true);
    api.apply_pool("pool", VLLM, &[8000, 8001]);
    let (_task, mut rx) = follow(&api, "pool");
    expect(
        &mut rx,
        &[
            "127.0.0.2:8000",
            "127.0.0.2:8001",
            "127.0.0.3:8000",
            "127.0.0.3:8001",
        ],
    )
    .await;
    api.apply_pool("pool", VLLM, &[9000]);
    expect(&mut rx, &["127.0.0.2:9000", "127.0.0.3:9000"]).await;
    // Another pool in the namespace changes nothing.
    rx.borrow_and_update();
    api.apply_pool("unrelated", VLLM, &[7000]);
    api.apply_pod("z", &[("app", "web")], "127.0.0.10", true);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!rx.has_changed().unwrap(), "{:?}", *rx.borrow());
}

#[tokio::test]
async fn an_expired_watch_relists_and_goes_on() {
    let api = MockApi::start(NS).await;
    api.apply_pool("pool", VLLM, &[8000]);
    api.apply_pod("a", VLLM, "127.0.0.2", true);
    let (_task, mut rx) = follow(&api, "pool");
    expect(&mut rx, &["127.0.0.2:8000"]).await;
    api.expire_watches();
    // What changed meanwhile is in the new list; what changes next, in the new watch.
    api.apply_pod("b", VLLM, "127.0.0.3", true);
    expect(&mut rx, &["127.0.0.2:8000", "127.0.0.3:8000"]).await;
    api.delete_pod("a");
    expect(&mut rx, &["127.0.0.3:8000"]).await;
    let pod_lists = api
        .requests()
        .iter()
        .filter(|r| r.contains("/pods?") && !r.contains("watch=true"))
        .count();
    assert_eq!(pod_lists, 2, "{:#?}", api.requests());
}

#[tokio::test]
async fn selector_changes_and_pool_deletion() {
    let api = MockApi::start(NS).await;
    api.apply_pod("a", VLLM, "127.0.0.2", true);
    api.apply_pod("b", &[("app", "sglang")], "127.0.0.3", true);
    let (_task, mut rx) = follow(&api, "pool");
    // No pool yet: nothing.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(rx.borrow().is_empty());

    api.apply_pool("pool", VLLM, &[8000]);
    expect(&mut rx, &["127.0.0.2:8000"]).await;
    api.apply_pool("pool", &[("app", "sglang")], &[8000]);
    expect(&mut rx, &["127.0.0.3:8000"]).await;
    assert!(api
        .requests()
        .iter()
        .any(|r| r.contains("labelSelector=app=sglang")));

    // An invalid pool keeps the last list.
    api.apply_pool("pool", &[("app", "sglang")], &[]);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(*rx.borrow(), addrs(&["127.0.0.3:8000"]));

    api.delete_pool("pool");
    expect(&mut rx, &[]).await;
    api.apply_pool("pool", VLLM, &[8000]);
    expect(&mut rx, &["127.0.0.2:8000"]).await;
}

#[tokio::test]
async fn without_a_client_configuration_the_list_stays_empty_and_the_task_stops() {
    // Outside a cluster and with a kubeconfig path that does not exist, there is no
    // client (nothing is contacted): the list stays empty, and the retry loop still
    // ends with its receivers.
    let (tx, rx) = watch::channel(Vec::new());
    let home = tempfile::tempdir().unwrap();
    // Only the variables `Config::infer` reads are pointed elsewhere.
    std::env::set_var("KUBECONFIG", home.path().join("missing-kubeconfig"));
    let task = tokio::spawn(run("pool".into(), NS.into(), tx, Arc::default()));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(rx.borrow().is_empty());
    drop(rx);
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("the task did not stop")
        .unwrap();
}
