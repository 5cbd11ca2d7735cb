//! The cost model and scheduler of one simulated instance: prefill, transfer, decode
//! (and the prefill stall), FIFO admission beyond the slots, KV-cache accounting.

use super::*;
use tokio::time::Instant;

fn cost() -> CostModel {
    CostModel {
        prefill_per_token: Duration::from_millis(1),
        prefill_overhead: Duration::ZERO,
        decode_step: Duration::from_millis(10),
        decode_step_per_seq: Duration::from_millis(1),
        max_running: 2,
        kv_blocks: 100,
        kv_transfer_per_token: Duration::from_micros(100),
        prefill_stalls_decode: false,
    }
}

fn job(prompt: &str, max_tokens: u64) -> Job {
    Job {
        model: "m".into(),
        prompt_tokens: prompt_tokens(prompt),
        max_tokens,
        hashes: block_hashes("m", prompt.as_bytes()),
        token_ids: Vec::new(),
    }
}

#[test]
fn tokens_blocks_and_hashes() {
    assert_eq!(prompt_tokens(""), 1);
    assert_eq!(prompt_tokens("abcde"), 2);
    assert_eq!(blocks_for(16), 1);
    assert_eq!(blocks_for(17), 2);
    let long = "x".repeat(64 * 300 + 3);
    let h = block_hashes("m", long.as_bytes());
    assert_eq!(h.len(), 300, "long prompts are hashed whole");
    assert_ne!(h[0], h[1]);
    assert_ne!(block_hashes("lora-a", long.as_bytes())[0], h[0]);
}

#[tokio::test(start_paused = true)]
async fn a_cached_prefix_shortens_the_prefill() {
    let inst = Instance::new(cost(), vec![]);
    let prompt = "p".repeat(64 * 10); // 160 tokens, 10 blocks
    let t = Instant::now();
    let mut r = inst.admit(job(&prompt, 4)).await.unwrap();
    assert_eq!(r.prefill().await, 0);
    assert_eq!(t.elapsed(), Duration::from_millis(160));
    drop(r);
    // Same prefix, a different tail of one block: 10 blocks cached.
    let second = format!("{prompt}{}", "q".repeat(64));
    let t = Instant::now();
    let mut r = inst.admit(job(&second, 4)).await.unwrap();
    assert_eq!(r.prefill().await, 160);
    assert_eq!(t.elapsed(), Duration::from_millis(16));
    drop(r);
    let s = inst.snapshot();
    assert_eq!((s.prefix_queries, s.prefix_hits), (160 + 176, 160));
    assert_eq!(
        (s.requests, s.prompt_tokens, s.generation_tokens),
        (2, 336, 2)
    );
}

#[tokio::test(start_paused = true)]
async fn a_transfer_costs_per_uncached_token_and_skips_the_prefill_turn() {
    let inst = Instance::new(cost(), vec![]);
    let prompt = "t".repeat(64 * 10); // 160 tokens
                                      // A long prefill holds the compute; the transfer does not wait for it.
    let mut busy = inst.admit(job(&"u".repeat(4000), 1)).await.unwrap();
    let prefill = tokio::spawn(async move { busy.prefill().await });
    tokio::task::yield_now().await;
    let t = Instant::now();
    let mut r = inst.admit(job(&prompt, 2)).await.unwrap();
    assert_eq!(r.transfer().await, 0);
    assert_eq!(
        t.elapsed(),
        Duration::from_millis(16),
        "160 tokens × 100 µs"
    );
    assert_eq!(r.generated(), 1, "the first token came with the KV cache");
    drop(r);
    let mut r = inst.admit(job(&prompt, 2)).await.unwrap();
    assert_eq!(r.transfer().await, 160, "recorded: nothing left to pull");
    drop(r);
    prefill.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn prefills_run_one_at_a_time() {
    let inst = Instance::new(cost(), vec![]);
    let long = "a".repeat(400 * 4); // 400 tokens
    let short = "b".repeat(10 * 4);
    let t = Instant::now();
    let (mut a, mut b) = (
        inst.admit(job(&long, 1)).await.unwrap(),
        inst.admit(job(&short, 1)).await.unwrap(),
    );
    let (_, tb) = tokio::join!(a.prefill(), async {
        tokio::task::yield_now().await;
        b.prefill().await;
        t.elapsed()
    });
    // The short prompt's first token waits for the long prefill.
    assert_eq!(tb, Duration::from_millis(410));
}

#[tokio::test(start_paused = true)]
async fn a_prefill_stalls_the_decode_steps_only_when_told_to() {
    for (stalls, step) in [(false, 11), (true, 400 + 11)] {
        let inst = Instance::new(
            CostModel {
                prefill_stalls_decode: stalls,
                ..cost()
            },
            vec![],
        );
        let mut decoding = inst.admit(job("d", 3)).await.unwrap();
        decoding.prefill().await;
        let mut long = inst.admit(job(&"a".repeat(400 * 4), 1)).await.unwrap();
        let prefill = tokio::spawn(async move { long.prefill().await });
        tokio::task::yield_now().await;
        let t = Instant::now();
        decoding.decode().await;
        // One step with two running (10 + 1 ms), after the 400 ms prefill if it stalls.
        assert_eq!(t.elapsed(), Duration::from_millis(step), "stalls: {stalls}");
        prefill.await.unwrap();
    }
}

#[tokio::test(start_paused = true)]
async fn requests_beyond_max_running_queue_fifo() {
    let inst = Instance::new(cost(), vec![]);
    let a = inst.admit(job("a", 1)).await.unwrap();
    let b = inst.admit(job("b", 1)).await.unwrap();
    let order = Arc::new(Mutex::new(Vec::new()));
    // c and d queue (in that order), each holding its slot for 10 ms once admitted.
    let queued: Vec<_> = ["c", "d"]
        .into_iter()
        .map(|name| {
            let (inst, order) = (inst.clone(), order.clone());
            tokio::spawn(async move {
                let r = inst.admit(job(name, 1)).await.unwrap();
                order.lock().unwrap().push(name);
                tokio::time::sleep(Duration::from_millis(10)).await;
                drop(r);
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(1)).await;
    let s = inst.snapshot();
    assert_eq!((s.running, s.waiting), (2, 2));
    drop(a);
    tokio::time::sleep(Duration::from_millis(1)).await;
    let s = inst.snapshot();
    assert_eq!((s.running, s.waiting), (2, 1), "c runs, d still waits");
    assert_eq!(*order.lock().unwrap(), ["c"]);
    drop(b);
    for q in queued {
        q.await.unwrap();
    }
    assert_eq!(*order.lock().unwrap(), ["c", "d"]);
    let s = inst.snapshot();
    assert_eq!((s.running, s.waiting, s.requests), (0, 0, 4));
}

#[tokio::test(start_paused = true)]
async fn admission_waits_for_kv_blocks() {
    let mut c = cost();
    c.max_running = 10;
    c.kv_blocks = 10;
    let inst = Instance::new(c, vec![]);
    // 6 blocks reserved (5 for the prompt, 1 for 16 output tokens).
    let mut a = inst.admit(job(&"x".repeat(80 * 4), 16)).await.unwrap();
    assert_eq!(inst.snapshot().kv_held, 5);
    a.prefill().await;
    assert_eq!(inst.snapshot().kv_held, 6, "the first token opened block 6");
    // Needs 5: does not fit next to 6 reserved.
    let i2 = inst.clone();
    let b = tokio::spawn(async move {
        let r = i2.admit(job(&"y".repeat(64 * 4), 16)).await.unwrap();
        r.job().prompt_tokens
    });
    tokio::time::sleep(Duration::from_millis(1)).await;
    assert_eq!(inst.snapshot().waiting, 1);
    drop(a);
    assert_eq!(b.await.unwrap(), 64);
    let s = inst.snapshot();
    assert_eq!((s.waiting, s.running, s.kv_held), (0, 0, 0));
    assert_eq!(
        inst.admit(job(&"z".repeat(200 * 4), 1)).await.err(),
        Some(AdmitError::TooLarge {
            needed: 13,
            capacity: 10
        })
    );
}

#[tokio::test(start_paused = true)]
async fn decode_steps_grow_with_the_batch() {
    let inst = Instance::new(cost(), vec!["lora-a".into()]);
    let mut a = inst.admit(job("a", 3)).await.unwrap();
    let t = Instant::now();
    a.decode().await;
    assert_eq!(t.elapsed(), Duration::from_millis(10));
    let mut j = job("b", 3);
    j.model = "lora-a".into();
    let b = inst.admit(j).await.unwrap();
    assert_eq!(inst.snapshot().running_adapters, vec!["lora-a".to_string()]);
    let t = Instant::now();
    a.decode().await;
    assert_eq!(t.elapsed(), Duration::from_millis(11));
    assert_eq!(a.generated(), 2);
    drop(b);
    assert!(inst.snapshot().running_adapters.is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_client_gone_while_queued_frees_its_place() {
    let mut c = cost();
    c.max_running = 1;
    let inst = Instance::new(c, vec![]);
    let a = inst.admit(job("a", 1)).await.unwrap();
    let i2 = inst.clone();
    let queued = tokio::spawn(async move { i2.admit(job("b", 1)).await.map(|_| ()) });
    tokio::time::sleep(Duration::from_millis(1)).await;
    assert_eq!(inst.snapshot().waiting, 1);
    queued.abort();
    let _ = queued.await;
    assert_eq!(inst.snapshot().waiting, 0);
    drop(a);
    let s = inst.snapshot();
    assert_eq!((s.running, s.waiting), (0, 0));
}
