//! What one endpoint's KV events told: its exact index, when it last published and the
//! stream's counters. The subscriber task writes it; picks read it (one short lock).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::decode::{decode_message, DecodeError};
use super::index::{BlockIndex, Gone};

/// The counters of one endpoint's stream (monotonic).
#[derive(Debug, Default)]
pub struct Counters {
    /// Batches applied.
    pub batches: AtomicU64,
    /// Messages dropped: not three frames, not vLLM's format, over a bound.
    pub malformed: AtomicU64,
    /// Jumps in the sequence numbers (messages lost between publisher and picker).
    pub gaps: AtomicU64,
    /// Stored blocks skipped because their parent was unknown.
    pub orphaned: AtomicU64,
    /// Blocks dropped to keep the index within its bound.
    pub evicted: AtomicU64,
}

/// Most speculative keys kept per endpoint (one pick adds at most the prompt's blocks).
pub const MAX_SPECULATIVE: usize = 65_536;

/// A guess that the endpoint holds one block (speculative indexing): held while a
/// request sent here with it is still prefilling (`pending`), then until `until`.
#[derive(Debug)]
struct Guess {
    pending: u32,
    until: Instant,
}

impl Guess {
    fn held(&self, now: Instant) -> bool {
        self.pending > 0 || self.until > now
    }
}

#[derive(Debug)]
struct State {
    index: BlockIndex,
    last_event: Option<Instant>,
    last_seq: Option<u64>,
    /// Keys of prompts just sent here, held while their requests prefill and a grace
    /// period after, unless the events confirm them first (speculative indexing).
    speculative: HashMap<u64, Guess>,
    /// Bumped whenever the guesses are cleared, so a request settles only its own.
    epoch: u64,
}

/// One endpoint's KV-event state.
#[derive(Debug)]
pub struct EndpointEvents {
    state: Mutex<State>,
    pub counters: Counters,
}

impl EndpointEvents {
    /// An endpoint never heard from, indexing at most `capacity` blocks.
    pub fn new(capacity: usize) -> Self {
        EndpointEvents {
            state: Mutex::new(State {
                index: BlockIndex::new(capacity),
                last_event: None,
                last_seq: None,
                speculative: HashMap::new(),
                epoch: 0,
            }),
            counters: Counters::default(),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Decodes and applies one message received at `now`. A sequence number below the
    /// last one means the publisher restarted (its cache started empty): the index is
    /// cleared first. A malformed message changes nothing and is counted.
    pub fn receive<F: AsRef<[u8]>>(&self, frames: &[F], now: Instant) -> Result<(), DecodeError> {
        let message = match decode_message(frames) {
            Ok(m) => m,
            Err(e) => {
                self.counters.malformed.fetch_add(1, Ordering::Relaxed);
                return Err(e);
            }
        };
        let c = &self.counters;
        let mut s = self.state();
        match s.last_seq {
            Some(last) if message.seq <= last => {
                s.index.clear();
                s.clear_guesses();
            }
            Some(last) if message.seq > last + 1 => {
                c.gaps.fetch_add(1, Ordering::Relaxed);
            }
            _ => {}
        }
        s.last_seq = Some(message.seq);
        s.last_event = Some(now);
        for e in &message.batch.events {
            let applied = s.index.apply(e);
            // What the engine says it dropped is not held, whatever a settled pick
            // guessed; a request still prefilling here stores those blocks again.
            match &applied.gone {
                Gone::None => {}
                Gone::All => s.clear_guesses(),
                Gone::Keys(keys) => {
                    for k in keys {
                        if s.speculative.get(k).is_some_and(|g| g.pending == 0) {
                            s.speculative.remove(k);
                        }
                    }
                }
            }
            if applied.orphaned > 0 {
                c.orphaned
                    .fetch_add(applied.orphaned as u64, Ordering::Relaxed);
            }
            if applied.evicted > 0 {
                c.evicted
                    .fetch_add(applied.evicted as u64, Ordering::Relaxed);
            }
        }
        c.batches.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Whether the endpoint published within `stale_after` of `now`.
    pub fn is_fresh(&self, stale_after: Duration, now: Instant) -> bool {
        fresh(&self.state(), stale_after, now)
    }

    /// Leading `keys` held — reported by the events, or sent here by a pick that the
    /// events have not confirmed yet — or `None` when the endpoint is not fresh (never
    /// heard from, or silent for longer than `stale_after`).
    pub fn matched(&self, keys: &[u64], stale_after: Duration, now: Instant) -> Option<usize> {
        let s = self.state();
        if !fresh(&s, stale_after, now) {
            return None;
        }
        if s.speculative.is_empty() {
            return Some(s.index.matched(keys));
        }
        let held =
            |k: &u64| s.index.contains(*k) || s.speculative.get(k).is_some_and(|g| g.held(now));
        Some(keys.iter().take_while(|k| held(k)).count())
    }

    /// Counts `keys` as held while the request just sent here with them prefills (the
    /// events report a prompt's blocks only once its prefill ends). Settled guesses
    /// past their grace go first; past [`MAX_SPECULATIVE`] nothing more is added. The
    /// request hands the returned ticket to [`EndpointEvents::settle`].
    pub fn speculate(&self, keys: &[u64], now: Instant) -> Ticket {
        let mut s = self.state();
        if s.speculative.len() + keys.len() > MAX_SPECULATIVE {
            s.speculative.retain(|_, g| g.held(now));
        }
        let mut room = MAX_SPECULATIVE.saturating_sub(s.speculative.len());
        let mut guessed = 0;
        for k in keys {
            if let Some(g) = s.speculative.get_mut(k) {
                g.pending += 1;
            } else if room > 0 {
                s.speculative.insert(
                    *k,
                    Guess {
                        pending: 1,
                        until: now,
                    },
                );
                room -= 1;
            } else {
                break;
            }
            guessed += 1;
        }
        Ticket {
            guessed,
            epoch: s.epoch,
        }
    }

    /// The request of `ticket` (sent with `keys`) is past its prefill, ended or moved:
    /// its guesses are held until `until` at least, for the events to confirm them.
    pub fn settle(&self, keys: &[u64], ticket: Ticket, until: Instant) {
        let mut s = self.state();
        if s.epoch != ticket.epoch {
            return;
        }
        for k in &keys[..ticket.guessed.min(keys.len())] {
            if let Some(g) = s.speculative.get_mut(k) {
                g.pending = g.pending.saturating_sub(1);
                g.until = g.until.max(until);
            }
        }
    }

    /// Engine blocks indexed.
    pub fn blocks(&self) -> usize {
        self.state().index.len()
    }
}

/// Which of a request's keys [`EndpointEvents::speculate`] counted (its leading
/// `guessed`), and under which clearing of the guesses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ticket {
    guessed: usize,
    epoch: u64,
}

impl State {
    fn clear_guesses(&mut self) {
        self.speculative.clear();
        self.epoch += 1;
    }
}

fn fresh(s: &State, stale_after: Duration, now: Instant) -> bool {
    s.last_event
        .is_some_and(|at| now.saturating_duration_since(at) <= stale_after)
}

/// The frames of a message with sequence number `seq` and `batch` (JSON, packed as
/// msgpack), for tests.
#[cfg(test)]
pub(crate) fn test_frames(seq: u64, batch: serde_json::Value) -> Vec<Vec<u8>> {
    vec![
        Vec::new(),
        seq.to_be_bytes().to_vec(),
        rmp_serde::to_vec(&batch).expect("JSON packs as msgpack"),
    ]
}

#[cfg(test)]
mod tests {
    use super::test_frames as frames;
    use super::*;
    use crate::epp::kv_events::index::prompt_keys;
    use serde_json::json;

    fn store(hash: u64, tokens: [u32; 2]) -> serde_json::Value {
        json!([1.0, [["BlockStored", [hash], null, tokens, 2, null, "GPU"]]])
    }

    #[test]
    fn never_heard_from_or_silent_is_not_fresh() {
        let e = EndpointEvents::new(100);
        let t0 = Instant::now();
        let stale = Duration::from_secs(30);
        let keys = prompt_keys(&[1, 2], 2, None, 10);
        assert_eq!(e.matched(&keys, stale, t0), None, "never heard from");
        e.receive(&frames(0, store(9, [1, 2])), t0).unwrap();
        assert_eq!(
            e.matched(&keys, stale, t0 + Duration::from_secs(30)),
            Some(1)
        );
        assert!(e.is_fresh(stale, t0 + Duration::from_secs(1)));
        assert_eq!(
            e.matched(&keys, stale, t0 + Duration::from_secs(31)),
            None,
            "silent past staleAfter: the approximate index takes over"
        );
        // Any message, even an empty batch, makes it fresh again.
        let t1 = t0 + Duration::from_secs(40);
        e.receive(&frames(1, json!([2.0, []])), t1).unwrap();
        assert_eq!(e.matched(&keys, stale, t1), Some(1));
    }

    #[test]
    fn gaps_are_counted_and_a_restart_clears() {
        let e = EndpointEvents::new(100);
        let now = Instant::now();
        e.receive(&frames(0, store(1, [1, 2])), now).unwrap();
        e.receive(&frames(1, store(2, [3, 4])), now).unwrap();
        e.receive(&frames(5, store(3, [5, 6])), now).unwrap();
        assert_eq!(e.counters.gaps.load(Ordering::Relaxed), 1);
        assert_eq!(e.blocks(), 3);
        // Sequence back at 0: the publisher restarted with an empty cache.
        e.receive(&frames(0, store(4, [7, 8])), now).unwrap();
        assert_eq!(e.blocks(), 1);
        assert_eq!(e.counters.batches.load(Ordering::Relaxed), 4);
    }

    #[test]
    fn malformed_messages_are_counted_and_change_nothing() {
        let e = EndpointEvents::new(100);
        let now = Instant::now();
        e.receive(&frames(0, store(1, [1, 2])), now).unwrap();
        let bad: Vec<Vec<Vec<u8>>> = vec![
            vec![b"x".to_vec()],
            vec![vec![], vec![0; 3], vec![0x90]],
            vec![vec![], 1u64.to_be_bytes().to_vec(), b"garbage".to_vec()],
            frames(1, json!([1.0, [["AllBlocksCleared"], ["Nope"]]])),
        ];
        for f in &bad {
            assert!(e.receive(f, now).is_err());
        }
        assert_eq!(e.counters.malformed.load(Ordering::Relaxed), 4);
        assert_eq!(e.blocks(), 1, "a bad batch is not applied in part");
        e.receive(&frames(1, store(2, [3, 4])), now).unwrap();
        assert_eq!(e.counters.gaps.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn orphans_and_evictions_are_counted() {
        let e = EndpointEvents::new(1);
        let now = Instant::now();
        e.receive(
            &frames(0, json!([1.0, [["BlockStored", [5], 4, [1, 2], 2]]])),
            now,
        )
        .unwrap();
        e.receive(
            &frames(
                1,
                json!([1.0, [["BlockStored", [6, 7], null, [1, 2, 3, 4], 2]]]),
            ),
            now,
        )
        .unwrap();
        assert_eq!(e.counters.orphaned.load(Ordering::Relaxed), 1);
        assert_eq!(e.counters.evicted.load(Ordering::Relaxed), 1);
        assert_eq!(e.blocks(), 1);
    }
}
