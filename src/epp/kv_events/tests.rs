use std::time::{Duration, Instant};

use serde_json::json;
use zeromq::{Socket, SocketSend, ZmqMessage};

use super::endpoint::test_frames as frames;
use super::*;

fn config(yaml: &str) -> PrefixCacheConfig {
    serde_yaml::from_str(yaml).unwrap()
}

#[test]
fn approximate_mode_has_no_kv_events() {
    assert!(KvEvents::from_config(&config("{}")).is_none());
    assert!(KvEvents::from_config(&config("{mode: kvEvents}")).is_some());
}

#[test]
fn fresh_endpoints_are_scored_exactly_the_others_keep_the_approximate_match() {
    let kv = KvEvents::from_config(&config(
        "{mode: kvEvents, blockSize: 2, kvEvents: {staleAfter: 10s}}",
    ))
    .unwrap();
    let (a, b, c): (SocketAddr, SocketAddr, SocketAddr) = (
        "127.0.0.1:1".parse().unwrap(),
        "127.0.0.1:2".parse().unwrap(),
        "127.0.0.1:3".parse().unwrap(),
    );
    kv.sync([a, b, c]); // no runtime: no task, state only
    let now = Instant::now();
    // a holds the prompt's 2 blocks, b holds nothing but publishes, c never published.
    let store = json!([1.0, [["BlockStored", [1, 2], null, [1, 2, 3, 4], 2]]]);
    kv.events(&a)
        .unwrap()
        .receive(&frames(0, store), now)
        .unwrap();
    kv.events(&b)
        .unwrap()
        .receive(&frames(0, json!([1.0, []])), now)
        .unwrap();
    let keys = index::prompt_keys(&[1, 2, 3, 4], 2, None, 10);
    let mut cands: Vec<Candidate> = (0..3).map(Candidate::idle).collect();
    for c in &mut cands {
        c.prefix_matched = 5; // what the approximate index said
    }
    let addrs = [a, b, c];
    kv.refine(&mut cands, |slot| addrs[slot], &keys, 10, now);
    let matched: Vec<usize> = cands.iter().map(|c| c.prefix_matched).collect();
    assert_eq!(
        matched,
        [10, 0, 5],
        "2 of 2 blocks is 10 of 10; c keeps its own"
    );
    // Past staleAfter every endpoint falls back.
    let later = now + Duration::from_secs(11);
    for c in &mut cands {
        c.prefix_matched = 5;
    }
    kv.refine(&mut cands, |slot| addrs[slot], &keys, 10, later);
    assert!(cands.iter().all(|c| c.prefix_matched == 5));
    let s = kv.stats(now);
    assert_eq!((s.fresh, s.blocks, s.batches), (2, 2, 2));
    assert_eq!(kv.stats(later).fresh, 0);
    // An endpoint that left takes its state with it.
    kv.sync([b]);
    assert!(kv.events(&a).is_none());
    assert_eq!(kv.stats(now).blocks, 0);
}

#[tokio::test]
async fn block_keys_need_a_fresh_endpoint_and_a_tokenizer() {
    let kv = KvEvents::from_config(&config(
        "{mode: kvEvents, tokenizer: {tiktoken: cl100k_base}}",
    ))
    .unwrap();
    let a: SocketAddr = "127.0.0.1:1".parse().unwrap();
    kv.sync([a]);
    let prompt = "word ".repeat(100);
    let now = Instant::now();
    assert_eq!(
        kv.block_keys("m", prompt.as_bytes(), None, now).await,
        None,
        "nobody publishes"
    );
    kv.events(&a)
        .unwrap()
        .receive(&frames(0, json!([1.0, []])), now)
        .unwrap();
    let keys = kv
        .block_keys("m", prompt.as_bytes(), None, now)
        .await
        .unwrap();
    let tokens = tiktoken_rs::cl100k_base_singleton().encode_ordinary(&prompt);
    assert_eq!(
        keys,
        index::prompt_keys(&tokens, 16, None, MAX_PROMPT_BLOCKS)
    );
    assert_eq!(keys.len(), tokens.len() / 16);
    assert_eq!(kv.block_keys("m", b"", None, now).await, None);
}

#[tokio::test]
async fn a_failing_tokenizer_is_counted_and_gives_no_keys() {
    let kv = KvEvents::from_config(&config(
        "{mode: kvEvents, tokenizer: {endpoint: {timeout: 100ms}}}",
    ))
    .unwrap();
    // The endpoint is a closed port: its /tokenize refuses.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    kv.sync([closed]);
    let now = Instant::now();
    kv.events(&closed)
        .unwrap()
        .receive(&frames(0, json!([1.0, []])), now)
        .unwrap();
    let prompt = "a prompt of a few blocks ".repeat(10);
    assert_eq!(kv.block_keys("m", prompt.as_bytes(), None, now).await, None);
    assert_eq!(kv.stats(now).tokenize_failures, 1);
    // Too short for a block: not even asked.
    assert_eq!(kv.block_keys("m", b"hello", None, now).await, None);
    assert_eq!(kv.stats(now).tokenize_failures, 1);
}

/// Publishes `frames` on `socket` until `done` says the subscriber has them.
async fn publish_until(
    socket: &mut zeromq::PubSocket,
    frames: Vec<Vec<u8>>,
    done: impl Fn() -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(
            Instant::now() < deadline,
            "the subscriber never got the message"
        );
        let m = ZmqMessage::try_from(
            frames
                .iter()
                .map(|f| bytes::Bytes::from(f.clone()))
                .collect::<Vec<_>>(),
        )
        .unwrap();
        socket.send(m).await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn the_subscriber_reads_a_zeromq_publisher_and_survives_garbage() {
    let mut publisher = zeromq::PubSocket::new();
    let bound = publisher.bind("tcp://127.0.0.1:0").await.unwrap();
    let port: u16 = bound
        .to_string()
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let kv = KvEvents::from_config(&config(&format!(
        "{{mode: kvEvents, blockSize: 2, kvEvents: {{port: {port}, staleAfter: 5s}}}}"
    )))
    .unwrap();
    // The endpoint's HTTP port does not matter: events come from the same IP's `port`.
    let endpoint: SocketAddr = "127.0.0.1:8000".parse().unwrap();
    kv.sync([endpoint]);
    let events = kv.events(&endpoint).unwrap();
    // Garbage first (the subscriber may not be connected yet: repeated until counted).
    publish_until(
        &mut publisher,
        vec![b"".to_vec(), vec![1, 2], b"x".to_vec()],
        || events.counters.malformed.load(Ordering::Relaxed) > 0,
    )
    .await;
    let store = json!([
        1.0,
        [["BlockStored", [7, 8], null, [1, 2, 3, 4], 2, null, "GPU"]]
    ]);
    publish_until(&mut publisher, frames(0, store), || events.blocks() == 2).await;
    let keys = index::prompt_keys(&[1, 2, 3, 4], 2, None, 10);
    assert_eq!(
        events.matched(&keys, Duration::from_secs(5), Instant::now()),
        Some(2)
    );
    drop(kv);
    // The task was aborted with the pool's KV events: nobody holds the state now.
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(Arc::strong_count(&events), 1);
}

#[test]
fn a_pick_counts_its_prompt_as_held_while_it_prefills_and_the_ttl_after() {
    let kv = KvEvents::from_config(&config(
        "{mode: kvEvents, blockSize: 2, kvEvents: {staleAfter: 600s, speculativeTtl: 2s}}",
    ))
    .unwrap();
    let (a, b): (SocketAddr, SocketAddr) = (
        "127.0.0.1:1".parse().unwrap(),
        "127.0.0.1:2".parse().unwrap(),
    );
    kv.sync([a, b]);
    let now = Instant::now();
    for addr in [a, b] {
        let ev = kv.events(&addr).unwrap();
        ev.receive(&frames(0, json!([1.0, []])), now).unwrap();
    }
    let keys = index::prompt_keys(&[1, 2, 3, 4], 2, None, 10);
    let matched = |at: Instant| -> Vec<usize> {
        let mut cands: Vec<Candidate> = (0..2).map(Candidate::idle).collect();
        let addrs = [a, b];
        kv.refine(&mut cands, |slot| addrs[slot], &keys, 2, at);
        cands.iter().map(|c| c.prefix_matched).collect()
    };
    assert_eq!(matched(now), [0, 0]);
    let first = kv.speculate(&a, &keys, now).expect("a guess");
    assert_eq!(matched(now), [2, 0], "sent to a: held there at once");
    assert_eq!(
        matched(now + Duration::from_secs(300)),
        [2, 0],
        "held for as long as the request prefills, however long it queues"
    );
    // A second request with the same prompt; the first one's prefill ends.
    let second = kv.speculate(&a, &keys, now).expect("a guess");
    drop(first);
    assert_eq!(
        matched(now + Duration::from_secs(300)),
        [2, 0],
        "the second still prefills"
    );
    drop(second);
    let settled = Instant::now();
    assert_eq!(matched(settled + Duration::from_millis(1990)), [2, 0]);
    assert_eq!(
        matched(settled + Duration::from_secs(3)),
        [0, 0],
        "never confirmed: gone the TTL after the prefill"
    );
    // Confirmed by the events: held for good.
    let store = json!([1.0, [["BlockStored", [1, 2], null, [1, 2, 3, 4], 2]]]);
    kv.events(&a)
        .unwrap()
        .receive(&frames(1, store), now)
        .unwrap();
    assert_eq!(matched(now + Duration::from_secs(300)), [2, 0]);
    // The engine's word wins over a settled guess: removed blocks are not held, even
    // within the TTL of a pick that sent them there again...
    drop(kv.speculate(&a, &keys, now));
    let removed = json!([1.0, [["BlockRemoved", [1, 2], "GPU"]]]);
    kv.events(&a)
        .unwrap()
        .receive(&frames(2, removed.clone()), now)
        .unwrap();
    assert_eq!(matched(now), [0, 0]);
    // ...but a request still prefilling there stores them again.
    let pending = kv.speculate(&a, &keys, now).expect("a guess");
    kv.events(&a)
        .unwrap()
        .receive(&frames(3, removed), now)
        .unwrap();
    assert_eq!(matched(now), [2, 0]);
    // A publisher restart clears every guess; the old request's settling is a no-op.
    kv.events(&a)
        .unwrap()
        .receive(&frames(0, json!([1.0, []])), now)
        .unwrap();
    assert_eq!(matched(now), [0, 0]);
    let fresh = kv.speculate(&a, &keys, now).expect("a guess");
    drop(pending);
    assert_eq!(
        matched(Instant::now() + Duration::from_secs(300)),
        [2, 0],
        "the stale ticket did not settle the new request's guess"
    );
    drop(fresh);

    let off = KvEvents::from_config(&config(
        "{mode: kvEvents, blockSize: 2, kvEvents: {speculativeTtl: 0s}}",
    ))
    .unwrap();
    off.sync([b]);
    off.events(&b)
        .unwrap()
        .receive(&frames(0, json!([1.0, []])), now)
        .unwrap();
    assert!(off.speculate(&b, &keys, now).is_none());
    assert_eq!(
        off.events(&b)
            .unwrap()
            .matched(&keys, Duration::from_secs(60), now),
        Some(0)
    );
}

#[test]
fn speculative_keys_are_bounded_per_endpoint() {
    let ev = endpoint::EndpointEvents::new(10);
    let now = Instant::now();
    ev.receive(&frames(0, json!([1.0, []])), now).unwrap();
    let many: Vec<u64> = (0..endpoint::MAX_SPECULATIVE as u64 + 100).collect();
    let ticket = ev.speculate(&many, now);
    let stale = Duration::from_secs(60);
    assert_eq!(
        ev.matched(&many, stale, now),
        Some(endpoint::MAX_SPECULATIVE)
    );
    // Pending guesses are never dropped for room...
    let later = now + Duration::from_secs(3);
    ev.speculate(&[u64::MAX], later);
    assert_eq!(ev.matched(&[u64::MAX], stale, later), Some(0));
    // ...settled ones past their grace are.
    ev.settle(&many, ticket, now + Duration::from_secs(2));
    ev.speculate(&[u64::MAX], later);
    assert_eq!(ev.matched(&[u64::MAX], stale, later), Some(1));
}
