//! One simulated model server's scheduler and cost model: continuous-batching slots, a
//! FIFO waiting queue, KV-cache blocks, a prefix cache, one-at-a-time prefills and
//! batched decode steps. Time passes on tokio timers only.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::oneshot;

use super::kv_publish::Sink;
use crate::epp::hash::xxh64;
use crate::epp::prefix::Lru;

/// Characters per token (the picker's approximation).
pub const CHARS_PER_TOKEN: usize = 4;
/// Tokens per KV-cache block (vLLM's default block size).
pub const BLOCK_TOKENS: usize = 16;
/// Characters per prefix-cache block.
pub const BLOCK_CHARS: usize = BLOCK_TOKENS * CHARS_PER_TOKEN;

/// The constants of the cost model (each a flag of `tollgate sim`).
#[derive(Clone, Debug)]
pub struct CostModel {
    /// Prefill time per prompt token not found in the prefix cache.
    pub prefill_per_token: Duration,
    /// Fixed time of every prefill (scheduling, the first forward pass).
    pub prefill_overhead: Duration,
    /// Decode step time with one running sequence.
    pub decode_step: Duration,
    /// Added to the decode step per further running sequence.
    pub decode_step_per_seq: Duration,
    /// Continuous-batching slots: requests running at once.
    pub max_running: usize,
    /// KV-cache capacity in blocks of 16 tokens (also the prefix cache's capacity).
    pub kv_blocks: usize,
    /// Time to pull one prompt token's KV cache from a prefill instance.
    pub kv_transfer_per_token: Duration,
    /// A decode step cannot overlap a prefill on the same instance (one GPU, prefills
    /// not chunked): running requests stall while a prefill runs.
    pub prefill_stalls_decode: bool,
}

impl Default for CostModel {
    fn default() -> Self {
        CostModel {
            prefill_per_token: Duration::from_micros(100),
            prefill_overhead: Duration::from_millis(2),
            decode_step: Duration::from_millis(10),
            decode_step_per_seq: Duration::from_micros(100),
            max_running: 64,
            kv_blocks: 8192,
            kv_transfer_per_token: Duration::from_micros(5),
            prefill_stalls_decode: false,
        }
    }
}

/// Prompt tokens of a prompt text: characters / 4, rounded up (an empty prompt is one
/// token).
pub fn prompt_tokens(prompt: &str) -> u64 {
    (prompt.len().div_ceil(CHARS_PER_TOKEN) as u64).max(1)
}

/// Blocks needed for `tokens` tokens.
pub fn blocks_for(tokens: u64) -> usize {
    (tokens as usize).div_ceil(BLOCK_TOKENS)
}

/// The chained block hashes of a prompt for `model`: whole 64-character blocks, each
/// hashed with the previous block's hash, the chain seeded with the model (an adapter
/// has a cache of its own). Unlike the picker's index, a long prompt is hashed whole.
pub fn block_hashes(model: &str, prompt: &[u8]) -> Vec<u64> {
    let mut prev = xxh64(model.as_bytes(), 0);
    let mut buf = Vec::with_capacity(BLOCK_CHARS + 8);
    prompt
        .chunks_exact(BLOCK_CHARS)
        .map(|block| {
            buf.clear();
            buf.extend_from_slice(block);
            buf.extend_from_slice(&prev.to_le_bytes());
            prev = xxh64(&buf, 0);
            prev
        })
        .collect()
}

/// Why a request cannot be served.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AdmitError {
    #[error(
        "the request needs {needed} KV-cache blocks (prompt and output), the cache has {capacity}"
    )]
    TooLarge { needed: usize, capacity: usize },
}

/// What a request asks of an instance.
#[derive(Clone, Debug)]
pub struct Job {
    /// The request's model (an adapter name counts as that adapter).
    pub model: String,
    /// The prompt's tokens.
    pub prompt_tokens: u64,
    /// Tokens to generate.
    pub max_tokens: u64,
    /// The prompt's chained block hashes ([`block_hashes`]).
    pub hashes: Vec<u64>,
    /// The prompt's token ids (`kv_publish::token_ids`) when the instance publishes KV
    /// events, else empty.
    pub token_ids: Vec<u32>,
}

/// A snapshot of an instance's gauges and counters.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Snapshot {
    pub running: usize,
    pub waiting: usize,
    /// KV-cache blocks held by running requests.
    pub kv_held: usize,
    pub kv_blocks: usize,
    /// Adapters of running and of waiting requests (deduplicated, in adapter order).
    pub running_adapters: Vec<String>,
    pub waiting_adapters: Vec<String>,
    /// Prompt tokens looked up in the prefix cache, and those found.
    pub prefix_queries: u64,
    pub prefix_hits: u64,
    /// Requests finished (completed or abandoned by the client after admission).
    pub requests: u64,
    pub prompt_tokens: u64,
    pub generation_tokens: u64,
}

struct Waiter {
    blocks: usize,
    adapter: Option<usize>,
    tx: oneshot::Sender<Admitted>,
}

struct State {
    running: usize,
    /// Final footprint (prompt + all output) of the running requests: admission keeps
    /// it within capacity, so decoding never runs out of blocks (no preemption).
    reserved: usize,
    /// Blocks held now (prompt + generated so far) by the running requests.
    held: usize,
    waiting: VecDeque<Waiter>,
    running_per_adapter: Vec<usize>,
    cache: Lru,
    prefix_queries: u64,
    prefix_hits: u64,
    requests: u64,
    prompt_tokens: u64,
    generation_tokens: u64,
    /// When the prefill running now ends (`prefill_stalls_decode`).
    prefill_until: Option<tokio::time::Instant>,
}

/// One simulated model server.
pub struct Instance {
    cost: CostModel,
    adapters: Vec<String>,
    state: Mutex<State>,
    /// Prefills are compute-bound: one at a time, in arrival order (tokio's mutex is
    /// fair).
    prefill: tokio::sync::Mutex<()>,
    /// Where the prefix cache's changes are published (`--kv-events-port`).
    events: std::sync::OnceLock<Arc<Sink>>,
}

impl Instance {
    pub fn new(cost: CostModel, adapters: Vec<String>) -> Arc<Self> {
        let state = State {
            running: 0,
            reserved: 0,
            held: 0,
            waiting: VecDeque::new(),
            running_per_adapter: vec![0; adapters.len()],
            cache: Lru::new(cost.kv_blocks),
            prefix_queries: 0,
            prefix_hits: 0,
            requests: 0,
            prompt_tokens: 0,
            generation_tokens: 0,
            prefill_until: None,
        };
        Arc::new(Instance {
            cost,
            adapters,
            state: Mutex::new(state),
            prefill: tokio::sync::Mutex::new(()),
            events: std::sync::OnceLock::new(),
        })
    }

    /// Publishes the prefix cache's changes to `sink` from now on (once).
    pub fn publish_to(&self, sink: Arc<Sink>) {
        let _ = self.events.set(sink);
    }

    /// Whether the instance publishes KV events (its jobs need token ids).
    pub fn publishes(&self) -> bool {
        self.events.get().is_some()
    }

    pub fn cost(&self) -> &CostModel {
        &self.cost
    }

    pub fn adapters(&self) -> &[String] {
        &self.adapters
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits (FIFO) for a batch slot and room in the KV cache for the whole request,
    /// then holds them until the returned [`Running`] is dropped.
    pub async fn admit(self: &Arc<Self>, job: Job) -> Result<Running, AdmitError> {
        let blocks = blocks_for(job.prompt_tokens + job.max_tokens);
        if blocks > self.cost.kv_blocks {
            return Err(AdmitError::TooLarge {
                needed: blocks,
                capacity: self.cost.kv_blocks,
            });
        }
        let adapter = self.adapters.iter().position(|a| *a == job.model);
        let rx = {
            let mut st = self.lock();
            if st.waiting.is_empty() && self.fits(&st, blocks) {
                let slot = self.take_slot(&mut st, blocks, adapter);
                drop(st);
                return Ok(Running::new(slot, job));
            }
            let (tx, rx) = oneshot::channel();
            st.waiting.push_back(Waiter {
                blocks,
                adapter,
                tx,
            });
            rx
        };
        // The sender is only dropped with the instance, which outlives its requests.
        let slot = rx.await.expect("a queued request's instance is alive");
        Ok(Running::new(slot, job))
    }

    fn fits(&self, st: &State, blocks: usize) -> bool {
        st.running < self.cost.max_running && st.reserved + blocks <= self.cost.kv_blocks
    }

    fn take_slot(
        self: &Arc<Self>,
        st: &mut State,
        blocks: usize,
        adapter: Option<usize>,
    ) -> Admitted {
        st.running += 1;
        st.reserved += blocks;
        if let Some(a) = adapter {
            st.running_per_adapter[a] += 1;
        }
        Admitted {
            instance: self.clone(),
            reserved: blocks,
            held: 0,
            adapter,
            generated: 0,
        }
    }

    /// Admits queued requests, in order, while the head fits. Slots whose requester
    /// gave up are returned, to be dropped once the lock is released.
    fn pump(self: &Arc<Self>, st: &mut State) -> Vec<Admitted> {
        let mut abandoned = Vec::new();
        while let Some(head) = st.waiting.front() {
            if head.tx.is_closed() {
                st.waiting.pop_front();
                continue;
            }
            if !self.fits(st, head.blocks) {
                break;
            }
            let w = st.waiting.pop_front().expect("the head exists");
            let slot = self.take_slot(st, w.blocks, w.adapter);
            if let Err(slot) = w.tx.send(slot) {
                abandoned.push(slot);
            }
        }
        abandoned
    }

    /// The gauges and counters now.
    pub fn snapshot(&self) -> Snapshot {
        let st = self.lock();
        let mut waiting_per_adapter = vec![false; self.adapters.len()];
        let mut waiting = 0;
        for w in st.waiting.iter().filter(|w| !w.tx.is_closed()) {
            waiting += 1;
            if let Some(a) = w.adapter {
                waiting_per_adapter[a] = true;
            }
        }
        let names = |on: &dyn Fn(usize) -> bool| -> Vec<String> {
            (0..self.adapters.len())
                .filter(|i| on(*i))
                .map(|i| self.adapters[i].clone())
                .collect()
        };
        Snapshot {
            running: st.running,
            waiting,
            kv_held: st.held,
            kv_blocks: self.cost.kv_blocks,
            running_adapters: names(&|i| st.running_per_adapter[i] > 0),
            waiting_adapters: names(&|i| waiting_per_adapter[i]),
            prefix_queries: st.prefix_queries,
            prefix_hits: st.prefix_hits,
            requests: st.requests,
            prompt_tokens: st.prompt_tokens,
            generation_tokens: st.generation_tokens,
        }
    }
}

/// A batch slot and its KV-cache reservation; released on drop.
pub struct Admitted {
    instance: Arc<Instance>,
    reserved: usize,
    held: usize,
    adapter: Option<usize>,
    generated: u64,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let instance = self.instance.clone();
        let abandoned = {
            let mut st = instance.lock();
            st.running -= 1;
            st.reserved -= self.reserved;
            st.held -= self.held;
            if let Some(a) = self.adapter {
                st.running_per_adapter[a] -= 1;
            }
            st.requests += 1;
            st.generation_tokens += self.generated;
            instance.pump(&mut st)
        };
        drop(abandoned);
    }
}

/// An admitted request: prefill, then decode token by token.
pub struct Running {
    slot: Admitted,
    job: Job,
    cached_tokens: u64,
}

impl Running {
    fn new(mut slot: Admitted, job: Job) -> Self {
        let prompt_blocks = blocks_for(job.prompt_tokens);
        {
            let mut st = slot.instance.lock();
            st.held += prompt_blocks;
            st.prompt_tokens += job.prompt_tokens;
        }
        slot.held = prompt_blocks;
        Running {
            slot,
            job,
            cached_tokens: 0,
        }
    }

    /// Runs the prefill (after the prefills queued before it): its time is the fixed
    /// overhead plus the prompt tokens not in the prefix cache. Produces the first token.
    /// Returns the cached prompt tokens.
    pub async fn prefill(&mut self) -> u64 {
        let instance = self.slot.instance.clone();
        let _turn = instance.prefill.lock().await;
        let matched = instance.lock().cache.matched(&self.job.hashes);
        let cached = ((matched * BLOCK_TOKENS) as u64).min(self.job.prompt_tokens);
        let uncached = self.job.prompt_tokens - cached;
        let cost = &instance.cost;
        let took = cost.prefill_overhead + cost.prefill_per_token * uncached as u32;
        instance.lock().prefill_until = Some(tokio::time::Instant::now() + took);
        tokio::time::sleep(took).await;
        {
            let mut st = instance.lock();
            match instance.events.get() {
                Some(sink) => {
                    let lora = instance.adapters.iter().find(|a| **a == self.job.model);
                    sink.record(&mut st.cache, &self.job, lora.map(String::as_str));
                }
                None => st.cache.record(&self.job.hashes),
            }
            st.prefix_queries += self.job.prompt_tokens;
            st.prefix_hits += cached;
        }
        self.cached_tokens = cached;
        self.grow();
        cached
    }

    /// Instead of a prefill: pulls the KV cache of the prompt tokens not in the prefix
    /// cache from the instance that prefilled them (a transfer, not compute: no prefill
    /// turn is taken), records the prompt, and has the first token (made by the prefill
    /// instance). Returns the cached prompt tokens.
    pub async fn transfer(&mut self) -> u64 {
        let instance = self.slot.instance.clone();
        let matched = instance.lock().cache.matched(&self.job.hashes);
        let cached = ((matched * BLOCK_TOKENS) as u64).min(self.job.prompt_tokens);
        let pulled = (self.job.prompt_tokens - cached) as u32;
        tokio::time::sleep(instance.cost.kv_transfer_per_token * pulled).await;
        {
            let mut st = instance.lock();
            st.cache.record(&self.job.hashes);
            st.prefix_queries += self.job.prompt_tokens;
            st.prefix_hits += cached;
        }
        self.cached_tokens = cached;
        self.grow();
        cached
    }

    /// Waits one decode step (longer the more sequences run) and produces a token; with
    /// `prefill_stalls_decode`, after the prefill running now.
    pub async fn decode(&mut self) {
        let cost = &self.slot.instance.cost;
        let (others, stall) = {
            let st = self.slot.instance.lock();
            let stall = st
                .prefill_until
                .filter(|_| cost.prefill_stalls_decode)
                .map(|until| until.saturating_duration_since(tokio::time::Instant::now()));
            (
                st.running.saturating_sub(1) as u32,
                stall.unwrap_or_default(),
            )
        };
        tokio::time::sleep(stall + cost.decode_step + cost.decode_step_per_seq * others).await;
        self.grow();
    }

    /// One more token generated: the KV cache holds its block.
    fn grow(&mut self) {
        self.slot.generated += 1;
        let held = blocks_for(self.job.prompt_tokens + self.slot.generated).min(self.slot.reserved);
        if held > self.slot.held {
            self.slot.instance.lock().held += held - self.slot.held;
            self.slot.held = held;
        }
    }

    pub fn generated(&self) -> u64 {
        self.slot.generated
    }

    pub fn cached_tokens(&self) -> u64 {
        self.cached_tokens
    }

    pub fn job(&self) -> &Job {
        &self.job
    }
}

#[cfg(test)]
mod tests;
