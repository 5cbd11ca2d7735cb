//! The prefix-cache index of the reference picker: the prompt is cut into 64-character
//! blocks (16 tokens × 4 characters), each block hashed with xxHash64 chained on the
//! previous block's hash, the chain seeded with the model; each endpoint keeps an LRU of
//! the block hashes it was recently sent, and scores by how many leading blocks of a new
//! prompt it holds.

use std::collections::{BTreeMap, HashMap};

use super::hash::xxh64;

/// Characters per block (the reference's 16 tokens × 4 characters).
pub const BLOCK_SIZE: usize = 64;
/// Most blocks hashed per prompt (the rest of a longer prompt is not indexed).
pub const MAX_BLOCKS: usize = 256;
/// Block hashes kept per endpoint (the reference's default LRU capacity).
pub const LRU_CAPACITY: usize = 31_250;

/// The chained block hashes of a prompt sent to `model`. Only whole blocks count.
pub fn block_hashes(model: &str, prompt: &[u8]) -> Vec<u64> {
    let mut prev = xxh64(model.as_bytes(), 0);
    let mut buf = Vec::with_capacity(BLOCK_SIZE + 8);
    prompt
        .chunks_exact(BLOCK_SIZE)
        .take(MAX_BLOCKS)
        .map(|block| {
            buf.clear();
            buf.extend_from_slice(block);
            buf.extend_from_slice(&prev.to_le_bytes());
            prev = xxh64(&buf, 0);
            prev
        })
        .collect()
}

/// A least-recently-used set of block hashes.
#[derive(Debug)]
pub struct Lru {
    capacity: usize,
    tick: u64,
    by_hash: HashMap<u64, u64>,
    by_tick: BTreeMap<u64, u64>,
}

impl Lru {
    pub fn new(capacity: usize) -> Self {
        Lru {
            capacity: capacity.max(1),
            tick: 0,
            by_hash: HashMap::new(),
            by_tick: BTreeMap::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.by_hash.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_hash.is_empty()
    }

    pub fn contains(&self, hash: u64) -> bool {
        self.by_hash.contains_key(&hash)
    }

    /// Adds (or refreshes) `hash`, evicting the least recently used beyond capacity.
    pub fn insert(&mut self, hash: u64) {
        self.tick += 1;
        if let Some(old) = self.by_hash.insert(hash, self.tick) {
            self.by_tick.remove(&old);
        }
        self.by_tick.insert(self.tick, hash);
        while self.by_hash.len() > self.capacity {
            let Some((_, evicted)) = self.by_tick.pop_first() else {
                break;
            };
            self.by_hash.remove(&evicted);
        }
    }

    /// Leading blocks of `hashes` this endpoint holds (stops at the first miss).
    pub fn matched(&self, hashes: &[u64]) -> usize {
        hashes.iter().take_while(|h| self.contains(**h)).count()
    }

    /// Records a prompt sent to this endpoint.
    pub fn record(&mut self, hashes: &[u64]) {
        for h in hashes {
            self.insert(*h);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_are_chained_and_seeded_with_the_model() {
        let a = "x".repeat(64 * 3 + 10);
        let h = block_hashes("m", a.as_bytes());
        assert_eq!(h.len(), 3, "only whole blocks");
        // Same block text, different position: different hash (chained).
        assert_ne!(h[0], h[1]);
        assert_ne!(block_hashes("other", a.as_bytes())[0], h[0]);
        // A shared prefix gives shared leading hashes.
        let b = format!("{}{}", &a[..128], "y".repeat(64));
        let hb = block_hashes("m", b.as_bytes());
        assert_eq!(hb[..2], h[..2]);
        assert_ne!(hb[2], h[2]);
        assert!(block_hashes("m", b"short").is_empty());
        assert_eq!(
            block_hashes("m", "z".repeat(64 * 300).as_bytes()).len(),
            MAX_BLOCKS
        );
    }

    #[test]
    fn lru_evicts_the_least_recently_used() {
        let mut l = Lru::new(2);
        l.insert(1);
        l.insert(2);
        l.insert(1); // refresh 1
        l.insert(3); // evicts 2
        assert!(l.contains(1) && l.contains(3) && !l.contains(2));
        assert_eq!(l.len(), 2);
    }

    #[test]
    fn matched_counts_leading_blocks_only() {
        let mut l = Lru::new(10);
        l.record(&[1, 2, 4]);
        assert_eq!(l.matched(&[1, 2, 3, 4]), 2);
        assert_eq!(l.matched(&[9, 1]), 0);
        assert_eq!(l.matched(&[]), 0);
    }
}
