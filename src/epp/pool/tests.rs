//! The pool: staleness, membership changes that keep state, the scraper over HTTP
//! (and its stop on removal), LRU auto-tuning, picks with subsets, saturation shedding,
//! fallback lists and the in-flight share, and the latency-aware profile end to end.

use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;
use crate::config::ProfilePreset;
use crate::epp::metrics::{CacheConfig, LoraInfo};
use crate::epp::prefix::LRU_CAPACITY;

fn spec(endpoints: Vec<SocketAddr>) -> PoolSpec {
    PoolSpec {
        endpoints,
        metrics_path: "/metrics".into(),
        interval: Duration::from_millis(10),
        stale_after: Duration::from_millis(200),
    }
}

fn addrs(n: usize) -> Vec<SocketAddr> {
    (0..n)
        .map(|i| format!("127.0.0.1:{}", 9000 + i).parse().unwrap())
        .collect()
}

fn gauges(waiting: f64, kv_cache: f64) -> EndpointMetrics {
    EndpointMetrics {
        waiting,
        running: 0.0,
        kv_cache,
    }
}

fn policy_with(profile: ProfilePreset, max: usize) -> PickPolicy {
    PickPolicy {
        profile: Profile::preset(profile, max),
        ..PickPolicy::default()
    }
}

fn prompt(seed: &str, blocks: usize) -> Vec<u8> {
    let mut p = String::new();
    while p.len() < blocks * 64 {
        p.push_str(seed);
        p.push(' ');
    }
    p.truncate(blocks * 64);
    p.into_bytes()
}

#[test]
fn tracks_staleness_errors_and_ipv6_names() {
    let pool = Pool::new(spec(vec![
        "127.0.0.1:1".parse().unwrap(),
        "[::1]:2".parse().unwrap(),
    ]));
    assert_eq!(pool.endpoints()[1].name, "[::1]:2");
    let t0 = Instant::now();
    assert!(pool.metrics(0, t0).1, "never scraped is stale");
    let m = gauges(3.0, 0.5);
    pool.set_metrics(0, Ok(m), t0);
    assert_eq!(pool.metrics(0, t0), (Some(m), false));
    assert!(pool.metrics(0, t0 + Duration::from_millis(300)).1);
    let boom = ScrapeError::Status {
        status: http::StatusCode::SERVICE_UNAVAILABLE,
    };
    pool.set_metrics::<Scrape>(0, Err(boom.clone()), t0);
    assert_eq!(pool.last_error(0), Some(boom));
    assert_eq!(
        pool.metrics(0, t0).0,
        Some(m),
        "an error keeps the last metrics"
    );
    assert_eq!(pool.metrics(7, t0), (None, true));
}

#[test]
fn picks_record_prefixes_and_respect_the_subset() {
    let a = addrs(3);
    let pool = Pool::new(spec(a.clone()));
    let now = Instant::now();
    pool.set_metrics(0, Ok(gauges(0.0, 0.0)), now);
    pool.set_metrics(1, Ok(gauges(4.0, 0.4)), now);
    pool.set_metrics(2, Ok(gauges(9.0, 0.9)), now);
    let p = prompt("shared system prompt", 8);
    let first = pool.pick(&PickRequest::new("m", &p)).unwrap();
    assert_eq!(first.endpoint(), a[0].to_string());
    assert_eq!(first.blocks, 8);
    assert_eq!(first.scores.len(), 3);
    assert!(
        first.scores_line().contains("127.0.0.1:9000=4.000"),
        "{}",
        first.scores_line()
    );
    drop(first);
    assert_eq!(pool.endpoints()[0].prefix_usage(), (LRU_CAPACITY, 8));

    // Restricted to 1 and 2: 1 is better.
    let subset = [a[2], a[1], "10.9.9.9:1".parse().unwrap()];
    let mut req = PickRequest::new("m", &p);
    req.subset = Some(&subset);
    let picked = pool.pick(&req).unwrap();
    assert_eq!(picked.endpoint(), a[1].to_string());
    assert_eq!(picked.scores.len(), 2);

    let none = ["10.9.9.9:1".parse().unwrap()];
    req.subset = Some(&none);
    assert_eq!(pool.pick(&req).unwrap_err(), PickRejection::NoEndpoints);
    let empty = Pool::new(spec(vec![]));
    assert_eq!(
        empty.pick(&PickRequest::new("m", &p)).unwrap_err(),
        PickRejection::NoEndpoints
    );
}

#[test]
fn precomputed_hashes_match_the_text() {
    let pool = Pool::new(spec(addrs(2)));
    let p = prompt("abc", 4);
    let hashes = block_hashes("m", &p);
    let picked = pool.pick(&PickRequest::new("m", &p)).unwrap();
    let chosen = pool.position(&picked.endpoint().parse().unwrap()).unwrap();
    let mut req = PickRequest::new("m", b"");
    req.prompt = Prompt::Hashes(&hashes);
    let c = pool.endpoints()[chosen].candidate(
        chosen,
        &hashes,
        "m",
        Duration::from_secs(1),
        Instant::now(),
    );
    assert_eq!(c.prefix_matched, 4);
    let again = pool.pick(&req).unwrap();
    assert_eq!(again.blocks, 4);
    assert_eq!(
        again.endpoint(),
        picked.endpoint(),
        "the prefix holder wins the tie"
    );
}

#[test]
fn sheddable_requests_are_refused_when_saturated() {
    let pool = Pool::new(spec(addrs(2)));
    let p = prompt("x", 1);
    let mut req = PickRequest::new("m", &p);
    req.priority = -1;
    // Never scraped: stale, so saturated.
    assert!(matches!(
        pool.pick(&req).unwrap_err(),
        PickRejection::Saturated { saturation } if saturation == 1.0
    ));
    req.priority = 0;
    assert!(pool.pick(&req).is_ok(), "a normal request still goes");
    let now = Instant::now();
    pool.set_metrics(0, Ok(gauges(1.0, 0.2)), now);
    pool.set_metrics(1, Ok(gauges(0.0, 0.4)), now);
    req.priority = -5;
    assert!(pool.pick(&req).is_ok());
    assert!((pool.saturation(now) - (0.25 + 0.5) / 2.0).abs() < 1e-9);
    pool.set_metrics(1, Ok(gauges(9.0, 0.4)), now);
    assert!(pool.pick(&req).is_err());
}

#[test]
fn max_num_of_endpoints_gives_a_ranked_list() {
    let mut a = addrs(3);
    a.push("[::1]:9100".parse().unwrap());
    let pool = Pool::with_policy(spec(a.clone()), policy_with(ProfilePreset::Default, 3));
    let now = Instant::now();
    for (i, w) in [3.0, 0.0, 9.0, 1.0].into_iter().enumerate() {
        pool.set_metrics(i, Ok(gauges(w, 0.0)), now);
    }
    let picked = pool.pick(&PickRequest::new("m", b"")).unwrap();
    assert_eq!(
        picked.endpoints,
        vec!["127.0.0.1:9001", "[::1]:9100", "127.0.0.1:9000"]
    );
    assert_eq!(
        picked.destination(),
        "127.0.0.1:9001,[::1]:9100,127.0.0.1:9000"
    );
}

#[test]
fn in_flight_share_follows_the_request() {
    let a = addrs(2);
    let pool = Pool::new(spec(a.clone()));
    let p = prompt("y", 10); // 640 chars: 160 tokens
    let mut req = PickRequest::new("m", &p);
    req.expected_output_tokens = Some(50);
    let mut picked = pool.pick(&req).unwrap();
    let at = pool.position(&picked.endpoint().parse().unwrap()).unwrap();
    let other = 1 - at;
    let load = |i: usize| pool.endpoints()[i].load().snapshot();
    let s = load(at);
    assert_eq!((s.requests, s.prompt_tokens, s.decode_tokens), (1, 160, 50));
    assert_eq!(s.prefill_tokens, 160, "nothing cached yet");

    // The gateway fell back to the other endpoint.
    picked.in_flight.served_by(a[other]);
    assert_eq!(load(at).requests, 0);
    assert_eq!(load(other).requests, 1);
    let t = Instant::now();
    picked.in_flight.first_token(t);
    picked.in_flight.output_tokens(7);
    assert_eq!(load(other).decode_tokens, 7);
    picked.in_flight.finish(t + Duration::from_millis(60), 7);
    let s = load(other);
    assert_eq!((s.requests, s.tokens()), (0, 0));
    assert!((s.tpot.unwrap() - 0.01).abs() < 1e-6);

    // Dropped unfinished: released.
    let picked = pool.pick(&req).unwrap();
    let at = pool.position(&picked.endpoint().parse().unwrap()).unwrap();
    assert_eq!(load(at).requests, 1);
    drop(picked);
    assert_eq!(load(at).requests, 0);
}

#[test]
fn membership_changes_keep_state_of_those_that_stay() {
    let a = addrs(3);
    let pool = Pool::new(spec(a[..2].to_vec()));
    let now = Instant::now();
    pool.set_metrics(1, Ok(gauges(2.0, 0.3)), now);
    pool.endpoints()[1].record_prefix(&[1, 2, 3]);
    let held = {
        let subset = [a[1]];
        let mut req = PickRequest::new("m", b"");
        req.subset = Some(&subset);
        pool.pick(&req).unwrap()
    };
    let old_members = pool.endpoints();

    let change = pool.set_endpoints(vec![a[2], a[1], a[1]]);
    assert_eq!(
        change,
        MembershipChange {
            added: 1,
            removed: 1,
            kept: 1
        }
    );
    assert!(old_members[0].is_retired());
    assert!(!old_members[1].is_retired());
    let m = pool.endpoints();
    assert_eq!(m.len(), 2);
    assert_eq!(m[0].addr, a[2]);
    assert_eq!(pool.position(&a[1]), Some(1));
    assert_eq!(pool.position(&a[0]), None);
    assert!(
        Arc::ptr_eq(&m[1], &old_members[1]),
        "the same endpoint, state and all"
    );
    assert_eq!(pool.metrics(1, now), (Some(gauges(2.0, 0.3)), false));
    assert_eq!(m[1].prefix_usage().1, 3);
    assert_eq!(
        m[1].load().snapshot().requests,
        1,
        "in flight across the change"
    );
    drop(held);
    assert_eq!(m[1].load().snapshot().requests, 0);
    assert!(pool.metrics(0, now).1, "the new one has nothing yet");

    // Gone and back: a fresh endpoint.
    pool.set_endpoints(vec![]);
    assert!(pool.pick(&PickRequest::new("m", b"")).is_err());
    pool.set_endpoints(vec![a[1]]);
    assert_eq!(pool.endpoints()[0].prefix_usage().1, 0);
}

#[test]
fn cache_geometry_tunes_the_prefix_lru() {
    let pool = Pool::new(spec(addrs(1)));
    let e = pool.endpoints()[0].clone();
    assert_eq!(e.prefix_usage().0, LRU_CAPACITY);
    e.record_prefix(&(0..100).collect::<Vec<u64>>());
    let scrape = Scrape {
        metrics: gauges(0.0, 0.0),
        lora: Some(LoraInfo {
            max_lora: 1,
            running: vec!["ad".into()],
            waiting: vec![],
        }),
        cache_config: Some(CacheConfig {
            block_size: 16,
            num_gpu_blocks: 40,
        }),
    };
    pool.set_metrics(0, Ok(scrape), Instant::now());
    // 40 × 16 tokens / 16 tokens a block.
    assert_eq!(e.prefix_usage(), (40, 40));
    assert_eq!(e.lora().unwrap().running, vec!["ad"]);
    // A scrape without the geometry keeps the tuned capacity.
    pool.set_metrics(0, Ok(gauges(1.0, 0.0)), Instant::now());
    assert_eq!(e.prefix_usage().0, 40);
    assert_eq!(e.cache_config().unwrap().num_gpu_blocks, 40);
    assert_eq!(e.lora(), None);
}

#[test]
fn lora_state_reaches_the_candidates() {
    let pool = Pool::with_policy(
        spec(addrs(3)),
        PickPolicy::from_config(
            &serde_yaml::from_str(
                "{endpoints: ['127.0.0.1:1'], scheduling: {filters: [{type: loraAffinity}], scorers: [{type: lora}]}}",
            )
            .unwrap(),
            "p",
        )
        .unwrap(),
    );
    let now = Instant::now();
    let lora = |running: &[&str], max| Scrape {
        metrics: gauges(0.0, 0.0),
        lora: Some(LoraInfo {
            max_lora: max,
            running: running.iter().map(|s| s.to_string()).collect(),
            waiting: vec![],
        }),
        cache_config: None,
    };
    pool.set_metrics(0, Ok(lora(&["x"], 1)), now);
    pool.set_metrics(1, Ok(lora(&["sql"], 1)), now);
    pool.set_metrics(2, Ok(lora(&["y", "z"], 2)), now);
    for _ in 0..20 {
        let picked = pool.pick(&PickRequest::new("sql", b"")).unwrap();
        assert_eq!(picked.endpoint(), "127.0.0.1:9001");
        assert_eq!(picked.scores.len(), 1, "full endpoints filtered out");
    }
}

#[test]
fn latency_aware_sticks_to_the_prefix_until_it_is_saturated() {
    let a = addrs(3);
    let pool = Pool::with_policy(spec(a.clone()), policy_with(ProfilePreset::LatencyAware, 1));
    let now = Instant::now();
    for i in 0..3 {
        pool.set_metrics(i, Ok(gauges(0.0, 0.1)), now);
    }
    // 4 KiB prompts sharing a long system prompt (60 of 64 blocks).
    let system = prompt("You are a careful assistant.", 60);
    let request = |n: usize| {
        let mut p = system.clone();
        p.extend_from_slice(&prompt(&format!("question {n}"), 4));
        p
    };
    let p0 = request(0);
    let first = pool.pick(&PickRequest::new("m", &p0)).unwrap();
    let home = first.endpoint().to_string();
    drop(first);
    // Held requests pile prefill work on the home endpoint; the next ones stick to it
    // while the wait predicted there (queued prefill + one step, the request's own
    // prefill aside) stays within 1.5× + 50 ms of the best other's.
    let mut held = Vec::new();
    let mut stuck = 0;
    let mut spilled = String::new();
    for n in 1..200 {
        let p = request(n);
        let picked = pool.pick(&PickRequest::new("m", &p)).unwrap();
        if picked.endpoint() != home {
            assert!(
                picked
                    .scores
                    .iter()
                    .all(|s| pool.endpoints()[s.slot].name != home),
                "a spill goes elsewhere: {}",
                picked.scores_line()
            );
            spilled = picked.endpoint().to_string();
            break;
        }
        stuck += 1;
        held.push(picked);
    }
    // Cold defaults: each held request queues 64 uncached tokens (4 new blocks) of
    // prefill (6.4 ms) at home, whose wait is 20 ms + 6.4 ms·k; an idle other waits
    // 20 ms; home spills once 20 + 6.4·k > 1.5 × 20 + 50, i.e. after 10 held requests.
    assert_eq!(stuck, 10, "stuck {stuck}");
    drop(held);
    // Both now hold the system prompt and are idle: either, never the third.
    for n in 1000..1020 {
        let p = request(n);
        let picked = pool.pick(&PickRequest::new("m", &p)).unwrap();
        assert!(
            picked.endpoint() == home || picked.endpoint() == spilled,
            "{}",
            picked.scores_line()
        );
    }
}

#[test]
fn policy_errors_name_their_field() {
    for (yaml, field) in [
        (
            "{scheduling: {scorers: [{type: queue, weight: 0}]}}",
            "p.scheduling.scorers[0].weight",
        ),
        (
            "{saturation: {queueThreshold: -1}}",
            "p.saturation.queueThreshold",
        ),
        (
            "{metrics: {mapping: {waiting: ['a b']}}}",
            "p.metrics.mapping.waiting[0]",
        ),
        (
            "{scheduling: {maxNumOfEndpoints: 0}}",
            "p.scheduling.maxNumOfEndpoints",
        ),
    ] {
        let mut v: serde_yaml::Value = serde_yaml::from_str(yaml).unwrap();
        v["endpoints"] = serde_yaml::from_str("['127.0.0.1:1']").unwrap();
        let policy: EndpointPickerPolicy = serde_yaml::from_value(v).unwrap();
        let e = Pool::from_policy(&policy, "p").unwrap_err().to_string();
        assert!(e.starts_with(&format!("{field}:")), "{yaml}: {e}");
    }
    let ok: EndpointPickerPolicy = serde_yaml::from_str(
        "{endpoints: ['127.0.0.1:1'], scheduling: {profile: roundRobin, maxNumOfEndpoints: 2}}",
    )
    .unwrap();
    let pool = Pool::from_policy(&ok, "p").unwrap();
    assert_eq!(pool.policy().profile.max_endpoints(), 2);
}

/// A metrics server on 127.0.0.1 that counts its requests.
async fn metrics_server(body: &'static str) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let counter = counter.clone();
            tokio::spawn(async move {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let mut buf = [0u8; 1024];
                loop {
                    let Ok(n) = sock.read(&mut buf).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    counter.fetch_add(1, Ordering::SeqCst);
                    let resp = format!(
                        "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    if sock.write_all(resp.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, hits)
}

async fn until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !f() {
        assert!(Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn scrapes_members_old_and_new_and_stops_on_removal() {
    let (a, hits_a) = metrics_server(
        "vllm:num_requests_waiting 5\nvllm:kv_cache_usage_perc 0.4\nvllm:cache_config_info{block_size=\"16\",num_gpu_blocks=\"100\"} 1\n",
    )
    .await;
    let (b, hits_b) = metrics_server("sglang:num_queue_reqs 2\n").await;
    let pool = Pool::new(spec(vec![a]));
    pool.start_scraper();
    pool.start_scraper(); // idempotent
    until("a scraped", || pool.metrics(0, Instant::now()).0.is_some()).await;
    let (m, stale) = pool.metrics(0, Instant::now());
    assert!(!stale);
    assert_eq!((m.unwrap().waiting, m.unwrap().kv_cache), (5.0, 0.4));
    assert_eq!(pool.endpoints()[0].prefix_usage().0, 100, "auto-tuned");

    pool.set_endpoints(vec![b]);
    until("b scraped", || pool.metrics(0, Instant::now()).0.is_some()).await;
    assert_eq!(pool.metrics(0, Instant::now()).0.unwrap().waiting, 2.0);
    // a's task stops: its count settles.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let settled = hits_a.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(hits_a.load(Ordering::SeqCst), settled);
    assert!(hits_b.load(Ordering::SeqCst) > 0);

    // Dropping the pool stops the rest.
    drop(pool);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let settled = hits_b.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(hits_b.load(Ordering::SeqCst), settled);
}

#[test]
fn no_scraper_outside_a_runtime() {
    let pool = Pool::new(spec(addrs(1)));
    pool.start_scraper();
    assert!(pool.scraper.lock().unwrap().is_none());
    pool.set_endpoints(addrs(2));
    assert_eq!(pool.endpoints().len(), 2);
}

#[test]
fn an_endpoint_whose_scrapes_fail_is_avoided_while_another_is_up() {
    let a = addrs(2);
    let pool = Pool::new(spec(a.clone()));
    let now = Instant::now();
    // Endpoint 0 looks idle but cannot be scraped; endpoint 1 is busy but answers.
    let refused = ScrapeError::Request {
        reason: "connection refused".into(),
    };
    pool.set_metrics::<EndpointMetrics>(0, Err(refused), now);
    pool.set_metrics(1, Ok(gauges(8.0, 0.9)), now);
    for _ in 0..50 {
        let picked = pool.pick(&PickRequest::new("m", b"hello")).unwrap();
        assert_eq!(
            picked.endpoint(),
            a[1].to_string(),
            "{}",
            picked.scores_line()
        );
    }
    // Every endpoint failing: the picker still picks (the metrics may be what is broken).
    let down = Pool::new(spec(a.clone()));
    for i in 0..2 {
        let timeout = ScrapeError::Timeout {
            after: Duration::from_secs(1),
        };
        down.set_metrics::<EndpointMetrics>(i, Err(timeout), now);
    }
    let picked = down.pick(&PickRequest::new("m", b"hello")).unwrap();
    assert_eq!(picked.scores.len(), 2, "{}", picked.scores_line());
}
