//! The precise prefix cache (`prefixCache.mode: kvEvents`): an exact index of the
//! blocks each model server holds, fed by its vLLM KV-cache events, used in place of the
//! approximate index (`prefix`) for the endpoints that publish.
//!
//! # The key scheme
//! The engine names blocks by its own hashes (a salted sha256 or a Python `hash`, which
//! the picker cannot recompute), but every `BlockStored` carries the blocks' token ids.
//! As llm-d's KV-cache indexer does, each engine block is given the picker's own key:
//! `key = xxHash64(parent_key ‖ token ids of the block, seed "tollgate")` (the parent
//! key little-endian, each id as a u32 little-endian), the first block chained on
//! `xxHash64(lora_name, seed)` (empty for the base model), a later one on the key its
//! engine parent was given. A prompt tokenized by the picker and cut into blocks of
//! `blockSize` tokens gives the same keys ([`index::prompt_keys`]), so the leading keys
//! an endpoint holds are the prompt blocks it has cached. The picker looks prompts up
//! with no LoRA name: a request for an adapter matches the base model's blocks only.
//!
//! # Freshness and fallback
//! An endpoint is scored from this index while it is *fresh*: a message (any batch,
//! even empty) came within `staleAfter` (default 30 s). One never heard from, or silent
//! for longer, is scored from the approximate index, which the picker keeps recording
//! for every endpoint. A prompt that cannot be tokenized (tokenizer down, timeout) uses
//! the approximate index for every endpoint: the request never fails for it. An exact
//! match count is scaled into the approximate index's block unit (the same share of
//! the prompt), so the scorers and the latency model read both alike.
//!
//! Modules: `decode` (the wire format), `index` (one endpoint's keys, reference-counted
//! and bounded), `endpoint` (an endpoint's index, freshness and counters), `subscriber`
//! (the ZeroMQ task), `tokenize` (`/tokenize` or tiktoken).

pub mod decode;
pub mod endpoint;
pub mod index;
mod subscriber;
pub mod tokenize;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;

use self::endpoint::EndpointEvents;
use self::tokenize::Tokenizer;
use super::scheduling::Candidate;
use crate::config::{PrefixCacheConfig, PrefixCacheMode};

/// Most blocks of one prompt looked up (256 Ki tokens at 16 a block).
pub const MAX_PROMPT_BLOCKS: usize = 16_384;

/// One endpoint's subscription; its task stops when this is dropped.
#[derive(Debug)]
struct Subscription {
    events: Arc<EndpointEvents>,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if let Some(t) = self
            .task
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            t.abort();
        }
    }
}

/// A pick's guess that its endpoint holds the prompt's blocks, kept while the request
/// prefills there: dropped (at the first token, the end, a move to another endpoint),
/// it leaves the guess `speculativeTtl` more for the endpoint's events to confirm it.
#[derive(Debug)]
pub struct PrefillGuess {
    events: Arc<EndpointEvents>,
    keys: Vec<u64>,
    ticket: endpoint::Ticket,
    grace: Duration,
}

impl Drop for PrefillGuess {
    fn drop(&mut self) {
        self.events
            .settle(&self.keys, self.ticket, Instant::now() + self.grace);
    }
}

/// What `/metrics` shows of a pool's KV events (over its current members).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KvEventsStats {
    /// Endpoints scored from the exact index now.
    pub fresh: usize,
    /// Engine blocks indexed.
    pub blocks: usize,
    pub batches: u64,
    pub malformed: u64,
    pub gaps: u64,
    /// Prompts the tokenizer failed on (scored from the approximate index).
    pub tokenize_failures: u64,
}

/// The KV-event subscriptions of one pool and its tokenizer.
#[derive(Debug)]
pub struct KvEvents {
    port: subscriber::Port,
    topic: String,
    stale_after: Duration,
    speculative_ttl: Duration,
    block_size: usize,
    capacity: usize,
    tokenizer: Tokenizer,
    subs: ArcSwap<HashMap<SocketAddr, Arc<Subscription>>>,
    /// Serialises [`KvEvents::sync`].
    sync: Mutex<()>,
    /// Rotates the endpoint asked to tokenize.
    next: AtomicUsize,
    tokenize_failures: AtomicU64,
}

impl KvEvents {
    /// The precise prefix cache a validated config asks for; `None` in `approximate`
    /// mode.
    pub fn from_config(c: &PrefixCacheConfig) -> Option<Arc<KvEvents>> {
        if c.mode != PrefixCacheMode::KvEvents {
            return None;
        }
        Some(Arc::new(KvEvents {
            port: match c.kv_events.port_offset {
                Some(o) => subscriber::Port::Offset(o),
                None => subscriber::Port::Fixed(c.kv_events.port),
            },
            topic: c.kv_events.topic.clone(),
            stale_after: c.kv_events.stale_after.get(),
            speculative_ttl: c.kv_events.speculative_ttl.get(),
            block_size: c.block_size as usize,
            capacity: c.kv_events.max_blocks_per_endpoint,
            tokenizer: Tokenizer::from_config(&c.tokenizer),
            subs: Default::default(),
            sync: Mutex::new(()),
            next: AtomicUsize::new(0),
            tokenize_failures: AtomicU64::new(0),
        }))
    }

    pub fn stale_after(&self) -> Duration {
        self.stale_after
    }

    /// Subscribes to the members `addrs` not yet subscribed to, and drops the
    /// subscriptions of endpoints that left. Tasks start only inside a Tokio runtime; a
    /// later call inside one starts those that could not.
    pub fn sync(&self, addrs: impl IntoIterator<Item = SocketAddr>) {
        let _guard = self.sync.lock().unwrap_or_else(|e| e.into_inner());
        let old = self.subs.load_full();
        let runtime = tokio::runtime::Handle::try_current().ok();
        let mut next = HashMap::new();
        for addr in addrs {
            let sub = old.get(&addr).cloned().unwrap_or_else(|| {
                Arc::new(Subscription {
                    events: Arc::new(EndpointEvents::new(self.capacity)),
                    task: Mutex::new(None),
                })
            });
            if let Some(rt) = &runtime {
                let mut task = sub.task.lock().unwrap_or_else(|e| e.into_inner());
                if task.is_none() {
                    match subscriber::Target::new(addr, self.port, &self.topic, self.stale_after) {
                        Some(t) => *task = Some(rt.spawn(subscriber::run(t, sub.events.clone()))),
                        None => {
                            tracing::warn!(endpoint = %addr, "kv events: the port offset leaves the port range; not subscribed")
                        }
                    }
                }
            }
            next.insert(addr, sub);
        }
        self.subs.store(Arc::new(next));
    }

    /// The event state of endpoint `addr`, when subscribed.
    pub fn events(&self, addr: &SocketAddr) -> Option<Arc<EndpointEvents>> {
        self.subs.load().get(addr).map(|s| s.events.clone())
    }

    /// Replaces the prefix match of every candidate whose endpoint is fresh with the
    /// exact one for the prompt's `keys`, scaled to `total_blocks` approximate blocks.
    pub fn refine(
        &self,
        cands: &mut [Candidate],
        addr_of: impl Fn(usize) -> SocketAddr,
        keys: &[u64],
        total_blocks: usize,
        now: Instant,
    ) {
        if keys.is_empty() {
            return;
        }
        let subs = self.subs.load();
        for c in cands {
            let Some(sub) = subs.get(&addr_of(c.slot)) else {
                continue;
            };
            if let Some(matched) = sub.events.matched(keys, self.stale_after, now) {
                c.prefix_matched = matched * total_blocks / keys.len();
            }
        }
    }

    /// The prompt of `keys` was just sent to `addr`: its blocks count as held there
    /// while the request prefills and `speculativeTtl` after (dropping the returned
    /// guess ends the prefill), until the endpoint's events report them. `None` when
    /// speculative indexing is off or `addr` is not subscribed.
    pub fn speculate(&self, addr: &SocketAddr, keys: &[u64], now: Instant) -> Option<PrefillGuess> {
        if self.speculative_ttl.is_zero() || keys.is_empty() {
            return None;
        }
        let events = self.subs.load().get(addr)?.events.clone();
        let ticket = events.speculate(keys, now);
        Some(PrefillGuess {
            events,
            keys: keys.to_vec(),
            ticket,
            grace: self.speculative_ttl,
        })
    }

    /// The block keys of `prompt` for `model`, or `None` — the prompt is too short for
    /// a block, no endpoint is fresh (the keys would not be used), or tokenizing failed
    /// (counted, logged at debug). `chat_body` is a chat completion's body: its
    /// `messages` go to `/tokenize` for the server's chat template. `endpoint` mode asks
    /// the fresh members in turn.
    pub async fn block_keys(
        &self,
        model: &str,
        prompt: &[u8],
        chat_body: Option<&[u8]>,
        now: Instant,
    ) -> Option<Vec<u64>> {
        // A token is at least a byte: fewer bytes than a block's tokens make no block.
        if prompt.len() < self.block_size {
            return None;
        }
        let server = self.tokenizing_server(now)?;
        let text = String::from_utf8_lossy(prompt);
        let messages = chat_body.and_then(chat_messages);
        let input = match &messages {
            Some(m) => tokenize::Prompt::Chat {
                messages: m,
                text: &text,
            },
            None => tokenize::Prompt::Text(&text),
        };
        match self.tokenizer.tokens(model, input, server).await {
            Ok(tokens) => Some(index::prompt_keys(
                &tokens,
                self.block_size,
                None,
                MAX_PROMPT_BLOCKS,
            )),
            Err(e) => {
                self.tokenize_failures.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(error = %e, "kv events: tokenizing failed; approximate prefix index used");
                None
            }
        }
    }

    /// The next fresh member in turn (the one `endpoint` mode asks), or `None` when no
    /// member is fresh.
    fn tokenizing_server(&self, now: Instant) -> Option<SocketAddr> {
        let subs = self.subs.load();
        let mut fresh: Vec<SocketAddr> = subs
            .iter()
            .filter(|(_, s)| s.events.is_fresh(self.stale_after, now))
            .map(|(a, _)| *a)
            .collect();
        if fresh.is_empty() {
            return None;
        }
        fresh.sort_unstable();
        Some(fresh[self.next.fetch_add(1, Ordering::Relaxed) % fresh.len()])
    }

    /// The pool's figures at `now`.
    pub fn stats(&self, now: Instant) -> KvEventsStats {
        let mut s = KvEventsStats {
            tokenize_failures: self.tokenize_failures.load(Ordering::Relaxed),
            ..Default::default()
        };
        for sub in self.subs.load().values() {
            let e = &sub.events;
            s.fresh += usize::from(e.is_fresh(self.stale_after, now));
            s.blocks += e.blocks();
            s.batches += e.counters.batches.load(Ordering::Relaxed);
            s.malformed += e.counters.malformed.load(Ordering::Relaxed);
            s.gaps += e.counters.gaps.load(Ordering::Relaxed);
        }
        s
    }
}

/// The `messages` of a chat completion body, when it has a list of them.
fn chat_messages(body: &[u8]) -> Option<serde_json::Value> {
    #[derive(serde::Deserialize)]
    struct Chat {
        messages: serde_json::Value,
    }
    let chat: Chat = serde_json::from_slice(body).ok()?;
    chat.messages.is_array().then_some(chat.messages)
}

#[cfg(test)]
mod tests;
