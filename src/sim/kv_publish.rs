//! `tollgate sim --kv-events-port P`: each instance publishes its prefix cache's changes
//! as vLLM does — a ZeroMQ PUB socket sending `[topic, sequence (8 bytes big-endian),
//! msgpack EventBatch]`, the batch and its events in msgspec's array form:
//! `[ts, [["BlockStored", block_hashes, parent_block_hash, token_ids, 16, nil, "GPU",
//! lora_name], ["BlockRemoved", block_hashes, "GPU"], ["AllBlocksCleared"]], 0]`.
//!
//! A block is stored when a prefill records a block hash the cache did not hold (a run
//! of new blocks is one event, chained on the block before it), removed when the LRU
//! evicts it. Token ids come from [`token_ids`], which the instance's `/tokenize` also
//! answers with. The publisher starts with `AllBlocksCleared` (a fresh cache); events
//! are queued to the publishing task (at most [`QUEUE`] batches; more are dropped and
//! the sequence number shows the gap to subscribers as vLLM's would).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use serde::ser::{SerializeTuple, Serializer};
use serde::Serialize;
use tokio::sync::mpsc;
use zeromq::{Socket, SocketSend, ZmqMessage};

use super::engine::{Job, BLOCK_TOKENS, CHARS_PER_TOKEN};
use crate::epp::hash::xxh64;
use crate::epp::kv_events::decode::{BlockStored, Event};
use crate::epp::prefix::Lru;

/// Batches queued to the publishing task.
pub const QUEUE: usize = 4096;
/// Token ids of the simulated vocabulary are below this.
pub const VOCAB: u64 = 1 << 17;

/// The simulated token ids of a prompt: one per 4 characters (the last may be
/// shorter), each a hash of its characters — deterministic across instances and runs.
pub fn token_ids(prompt: &str) -> Vec<u32> {
    prompt
        .as_bytes()
        .chunks(CHARS_PER_TOKEN)
        .map(|c| (xxh64(c, 0x746f_6b65_6e73) % VOCAB) as u32)
        .collect()
}

/// Where an instance's cache changes go.
#[derive(Debug)]
pub struct Sink {
    tx: mpsc::Sender<Vec<Event>>,
    pub dropped: AtomicU64,
}

impl Sink {
    /// Records `job`'s blocks in `cache` (as [`Lru::record`]) and queues the events
    /// that describes.
    pub fn record(&self, cache: &mut Lru, job: &Job, lora: Option<&str>) {
        let mut events = Vec::new();
        let mut run: Option<BlockStored> = None;
        for (i, &h) in job.hashes.iter().enumerate() {
            if cache.contains(h) {
                cache.insert(h);
                events.extend(run.take().map(Event::Stored));
                continue;
            }
            if let Some(old) = cache.insert_evicting(h) {
                events.extend(run.take().map(Event::Stored));
                events.push(Event::Removed {
                    block_hashes: vec![old],
                    medium: Some("GPU".into()),
                });
            }
            let Some(tokens) = job.token_ids.get(i * BLOCK_TOKENS..(i + 1) * BLOCK_TOKENS) else {
                continue; // no ids (not tokenized): nothing to tell
            };
            let r = run.get_or_insert_with(|| BlockStored {
                parent_block_hash: i.checked_sub(1).map(|p| job.hashes[p]),
                block_size: BLOCK_TOKENS as u32,
                medium: Some("GPU".into()),
                lora_name: lora.map(str::to_string),
                ..Default::default()
            });
            r.block_hashes.push(h);
            r.token_ids.extend_from_slice(tokens);
        }
        events.extend(run.map(Event::Stored));
        // Stored first to last (the events' chain order), then ordered as vLLM frees a
        // request's blocks: its first blocks are evicted last.
        cache.refresh(&job.hashes);
        if !events.is_empty() && self.tx.try_send(events).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Binds a PUB socket at `endpoint` (`tcp://ip:port`, port 0 for any) and starts
/// publishing what the returned sink is given; the bound endpoint.
pub async fn start(endpoint: &str) -> Result<(Arc<Sink>, String), zeromq::ZmqError> {
    let mut socket = zeromq::PubSocket::new();
    let bound = socket.bind(endpoint).await?.to_string();
    let (tx, rx) = mpsc::channel(QUEUE);
    let sink = Arc::new(Sink {
        tx,
        dropped: AtomicU64::new(0),
    });
    let _ = sink.tx.try_send(vec![Event::AllCleared]);
    tokio::spawn(publish(socket, rx));
    Ok((sink, bound))
}

/// Sends every queued batch (coalescing what waits) until the sink is dropped.
async fn publish(mut socket: zeromq::PubSocket, mut rx: mpsc::Receiver<Vec<Event>>) {
    let mut seq: u64 = 0;
    while let Some(mut events) = rx.recv().await {
        while events.len() < 1024 {
            match rx.try_recv() {
                Ok(more) => events.extend(more),
                Err(_) => break,
            }
        }
        let payload = match encode_batch(&events, unix_now()) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, "sim: encoding KV events failed");
                continue;
            }
        };
        let frames = vec![
            Bytes::new(),
            Bytes::copy_from_slice(&seq.to_be_bytes()),
            Bytes::from(payload),
        ];
        seq += 1;
        let Ok(message) = ZmqMessage::try_from(frames) else {
            continue;
        };
        if let Err(e) = socket.send(message).await {
            tracing::debug!(error = %e, "sim: publishing KV events failed");
        }
    }
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// An `EventBatch` in msgspec's array form, data-parallel rank 0.
pub fn encode_batch(events: &[Event], ts: f64) -> Result<Vec<u8>, rmp_serde::encode::Error> {
    let wire: Vec<Wire> = events.iter().map(Wire).collect();
    rmp_serde::to_vec(&(ts, wire, 0i64))
}

/// One event in vLLM's array form.
struct Wire<'a>(&'a Event);

impl Serialize for Wire<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Event::Stored(b) => {
                let mut t = s.serialize_tuple(8)?;
                t.serialize_element("BlockStored")?;
                t.serialize_element(&b.block_hashes)?;
                t.serialize_element(&b.parent_block_hash)?;
                t.serialize_element(&b.token_ids)?;
                t.serialize_element(&b.block_size)?;
                t.serialize_element(&b.lora_id)?;
                t.serialize_element(&b.medium)?;
                t.serialize_element(&b.lora_name)?;
                t.end()
            }
            Event::Removed {
                block_hashes,
                medium,
            } => ("BlockRemoved", block_hashes, medium).serialize(s),
            Event::AllCleared => ("AllBlocksCleared",).serialize(s),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::epp::kv_events::decode::decode_batch;
    use crate::epp::kv_events::index::{prompt_keys, BlockIndex};
    use crate::sim::engine::{block_hashes, BLOCK_CHARS};

    fn job(prompt: &str) -> Job {
        Job {
            model: "m".into(),
            prompt_tokens: 0,
            max_tokens: 1,
            hashes: block_hashes("m", prompt.as_bytes()),
            token_ids: token_ids(prompt),
        }
    }

    #[test]
    fn token_ids_are_deterministic_one_per_four_characters() {
        let ids = token_ids("abcdabcdxy");
        assert_eq!(ids.len(), 3);
        assert_eq!(ids[0], ids[1]);
        assert_ne!(ids[1], ids[2]);
        assert!(ids.iter().all(|&i| u64::from(i) < VOCAB));
        assert_eq!(
            token_ids("x".repeat(BLOCK_CHARS).as_str()).len(),
            BLOCK_TOKENS
        );
    }

    #[tokio::test]
    async fn cache_changes_become_events_a_picker_indexes_as_the_prompt_keys() {
        let (tx, mut rx) = mpsc::channel(16);
        let sink = Sink {
            tx,
            dropped: AtomicU64::new(0),
        };
        let mut cache = Lru::new(4);
        let a = "a".repeat(BLOCK_CHARS * 3);
        sink.record(&mut cache, &job(&a), None);
        let first = rx.try_recv().unwrap();
        assert_eq!(first.len(), 1, "one run of 3 new blocks");
        // Shares 2 blocks, adds 2: one evicted (capacity 4), one run after it.
        let b = format!("{}{}", &a[..BLOCK_CHARS * 2], "b".repeat(BLOCK_CHARS * 2));
        sink.record(&mut cache, &job(&b), None);
        let second = rx.try_recv().unwrap();
        // Through the wire format and into a picker's index.
        let mut ix = BlockIndex::new(100);
        for events in [first, second] {
            let batch = decode_batch(&encode_batch(&events, 1.0).unwrap()).unwrap();
            assert_eq!(batch.events, events, "the encoding round-trips");
            for e in &batch.events {
                ix.apply(e);
            }
        }
        assert_eq!(ix.len(), 4, "what the cache holds");
        let keys_b = prompt_keys(&token_ids(&b), BLOCK_TOKENS, None, 100);
        assert_eq!(ix.matched(&keys_b), 4);
        let keys_a = prompt_keys(&token_ids(&a), BLOCK_TOKENS, None, 100);
        assert_eq!(ix.matched(&keys_a), 2, "a's third block was evicted");
        // Nothing new: no event.
        sink.record(&mut cache, &job(&b), None);
        assert!(rx.try_recv().is_err());
    }
}
