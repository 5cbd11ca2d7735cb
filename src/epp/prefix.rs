//! The prefix-cache index of the reference picker: the prompt is cut into 64-character
//! blocks (16 tokens × 4 characters), each block hashed with xxHash64 chained on the
//! previous block's hash, the chain seeded with the model; each endpoint keeps an LRU of
//! the block hashes it was recently sent, and scores by how many leading blocks of a new
//! prompt it holds. The LRU's capacity follows the endpoint's KV cache once its
//! `cache_config_info` says how big that is ([`capacity_for`]).

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use super::hash::xxh64;
use super::metrics::CacheConfig;

/// Characters per block (the reference's 16 tokens × 4 characters).
pub const BLOCK_SIZE: usize = 64;
/// Most blocks hashed per prompt (the rest of a longer prompt is not indexed).
pub const MAX_BLOCKS: usize = 256;
/// Block hashes kept per endpoint until its cache geometry is known (the reference's
/// default LRU capacity).
pub const LRU_CAPACITY: usize = 31_250;
/// Tokens one block stands for (64 characters at 4 characters a token).
pub const TOKENS_PER_BLOCK: u64 = 16;
/// Largest auto-tuned capacity (a bound on memory whatever an endpoint reports).
pub const MAX_LRU_CAPACITY: usize = 4_000_000;

/// The LRU capacity matching an endpoint's KV cache: its tokens
/// (`num_gpu_blocks × block_size`) over the tokens one hashed block stands for.
pub fn capacity_for(cache: &CacheConfig) -> usize {
    let tokens = cache.num_gpu_blocks.saturating_mul(cache.block_size);
    ((tokens / TOKENS_PER_BLOCK) as usize).clamp(1, MAX_LRU_CAPACITY)
}

/// The chained block hashes of a prompt sent to `model`. Only whole blocks count.
pub fn block_hashes(model: &str, prompt: &[u8]) -> Vec<u64> {
    let mut prev = xxh64(model.as_bytes(), 0);
    let mut buf = [0u8; BLOCK_SIZE + 8];
    prompt
        .chunks_exact(BLOCK_SIZE)
        .take(MAX_BLOCKS)
        .map(|block| {
            buf[..BLOCK_SIZE].copy_from_slice(block);
            buf[BLOCK_SIZE..].copy_from_slice(&prev.to_le_bytes());
            prev = xxh64(&buf, 0);
            prev
        })
        .collect()
}

/// Hashes the keys are already: xxHash64 outputs are spread well enough to index a
/// table as they are.
#[derive(Clone, Copy, Default, Debug)]
pub struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

const NIL: u32 = u32::MAX;

#[derive(Debug, Clone, Copy)]
struct Node {
    hash: u64,
    prev: u32,
    next: u32,
}

/// A least-recently-used set of block hashes: a hash table into a slab of nodes linked
/// most- to least-recently used, so every operation is O(1) and nothing is allocated
/// once the slab is full.
#[derive(Debug)]
pub struct Lru {
    capacity: usize,
    map: HashMap<u64, u32, BuildHasherDefault<PassThrough>>,
    nodes: Vec<Node>,
    free: Vec<u32>,
    head: u32,
    tail: u32,
}

impl Lru {
    pub fn new(capacity: usize) -> Self {
        Lru {
            capacity: capacity.max(1),
            map: HashMap::default(),
            nodes: Vec::new(),
            free: Vec::new(),
            head: NIL,
            tail: NIL,
        }
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Changes the capacity, evicting the least recently used beyond it.
    pub fn set_capacity(&mut self, capacity: usize) {
        self.capacity = capacity.max(1);
        while self.map.len() > self.capacity {
            self.evict();
        }
        if self.nodes.len() > self.capacity * 2 && self.free.len() > self.capacity {
            self.compact();
        }
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn contains(&self, hash: u64) -> bool {
        self.map.contains_key(&hash)
    }

    fn unlink(&mut self, i: u32) {
        let Node { prev, next, .. } = self.nodes[i as usize];
        match prev {
            NIL => self.head = next,
            p => self.nodes[p as usize].next = next,
        }
        match next {
            NIL => self.tail = prev,
            n => self.nodes[n as usize].prev = prev,
        }
    }

    fn push_front(&mut self, i: u32) {
        self.nodes[i as usize].prev = NIL;
        self.nodes[i as usize].next = self.head;
        match self.head {
            NIL => self.tail = i,
            h => self.nodes[h as usize].prev = i,
        }
        self.head = i;
    }

    /// Drops the least recently used; its hash.
    fn evict(&mut self) -> Option<u64> {
        let t = self.tail;
        if t == NIL {
            return None;
        }
        self.unlink(t);
        let hash = self.nodes[t as usize].hash;
        self.map.remove(&hash);
        self.free.push(t);
        Some(hash)
    }

    /// Removes `hash`; whether it was there.
    pub fn remove(&mut self, hash: u64) -> bool {
        let Some(i) = self.map.remove(&hash) else {
            return false;
        };
        self.unlink(i);
        self.free.push(i);
        true
    }

    /// [`Lru::insert`], returning the hash evicted to make room, if any.
    pub fn insert_evicting(&mut self, hash: u64) -> Option<u64> {
        let evicted = if !self.map.contains_key(&hash) && self.map.len() >= self.capacity {
            self.evict()
        } else {
            None
        };
        self.insert(hash);
        evicted
    }

    /// Rebuilds the slab after a large shrink, keeping the order.
    fn compact(&mut self) {
        let mut order = Vec::with_capacity(self.map.len());
        let mut i = self.tail;
        while i != NIL {
            order.push(self.nodes[i as usize].hash);
            i = self.nodes[i as usize].prev;
        }
        *self = Lru::new(self.capacity);
        for h in order {
            self.insert(h);
        }
    }

    /// Adds (or refreshes) `hash`, evicting the least recently used beyond capacity.
    pub fn insert(&mut self, hash: u64) {
        if let Some(&i) = self.map.get(&hash) {
            if self.head != i {
                self.unlink(i);
                self.push_front(i);
            }
            return;
        }
        if self.map.len() >= self.capacity {
            self.evict();
        }
        let node = Node {
            hash,
            prev: NIL,
            next: NIL,
        };
        let i = match self.free.pop() {
            Some(i) => {
                self.nodes[i as usize] = node;
                i
            }
            None => {
                self.nodes.push(node);
                (self.nodes.len() - 1) as u32
            }
        };
        self.map.insert(hash, i);
        self.push_front(i);
    }

    /// Leading blocks of `hashes` this endpoint holds (stops at the first miss).
    pub fn matched(&self, hashes: &[u64]) -> usize {
        hashes.iter().take_while(|h| self.contains(**h)).count()
    }

    /// Records a prompt sent to this endpoint, its blocks last to first: the first ends
    /// up the most recent and the last the first to go. vLLM frees a finished request's
    /// blocks in reverse order for the same reason: a cache short of room then loses a
    /// prompt's end and keeps its start, which still matches (a lost first block would
    /// leave every later one unmatchable).
    pub fn record(&mut self, hashes: &[u64]) {
        for h in hashes.iter().rev() {
            self.insert(*h);
        }
    }

    /// Makes the blocks of `hashes` held here the most recent, the first of them most of
    /// all (the order [`Lru::record`] leaves); inserts nothing.
    pub fn refresh(&mut self, hashes: &[u64]) {
        for &h in hashes.iter().rev() {
            if self.contains(h) {
                self.insert(h);
            }
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
    fn lru_order_survives_refreshes_shrinks_and_reuse() {
        let mut l = Lru::new(4);
        l.record(&[1, 2, 3, 4]); // order now (new→old) 1 2 3 4
        l.insert(3); // 3 1 2 4
        l.insert(5); // evicts 4
        assert!(!l.contains(4));
        l.set_capacity(2); // keeps 5 3
        assert_eq!(l.len(), 2);
        assert!(l.contains(5) && l.contains(3) && !l.contains(1) && !l.contains(2));
        l.set_capacity(3);
        l.record(&[6, 7]); // evicts 3, the oldest
        assert!(l.contains(5) && l.contains(6) && l.contains(7) && !l.contains(3));
        // A big shrink compacts the slab without losing order.
        let mut big = Lru::new(1000);
        big.record(&(0..1000).collect::<Vec<u64>>());
        big.set_capacity(10);
        assert_eq!(big.len(), 10);
        assert!(big.nodes.len() <= 20);
        assert!((0..10).all(|h| big.contains(h)));
        big.insert(5000);
        assert!(!big.contains(9) && big.contains(8));
    }

    #[test]
    fn remove_and_insert_evicting_keep_the_order() {
        let mut l = Lru::new(3);
        assert_eq!(l.insert_evicting(1), None);
        l.record(&[2, 3]);
        assert!(l.remove(2));
        assert!(!l.remove(2));
        assert_eq!(l.insert_evicting(4), None, "room was made by the remove");
        assert_eq!(l.insert_evicting(3), None, "a refresh evicts nothing");
        assert_eq!(l.insert_evicting(5), Some(1));
        assert_eq!(l.insert_evicting(6), Some(4));
        assert_eq!(l.len(), 3);
        assert!(l.contains(3) && l.contains(5) && l.contains(6));
    }

    #[test]
    fn capacity_follows_the_cache_geometry() {
        let c = CacheConfig {
            block_size: 16,
            num_gpu_blocks: 27_000,
        };
        assert_eq!(capacity_for(&c), 27_000);
        let c = CacheConfig {
            block_size: 32,
            num_gpu_blocks: 1000,
        };
        assert_eq!(capacity_for(&c), 2000);
        let huge = CacheConfig {
            block_size: u64::MAX,
            num_gpu_blocks: u64::MAX,
        };
        assert_eq!(capacity_for(&huge), MAX_LRU_CAPACITY);
    }

    #[test]
    fn a_cache_short_of_room_loses_a_prompts_end_first() {
        // Room for 6 blocks: a 4-block prompt, then another that needs 3 of its own.
        let (a, b) = ([1, 2, 3, 4], [10, 11, 12]);
        let mut l = Lru::new(6);
        l.record(&a);
        l.record(&b);
        assert_eq!(
            l.matched(&a),
            3,
            "a keeps its first 3 blocks, not its last 3"
        );
        // A hit refreshes the start first as well.
        l.refresh(&a);
        l.insert(13); // evicts b's last block, the oldest now
        assert_eq!((l.matched(&a), l.matched(&b)), (3, 2));
        l.refresh(&[99]);
        assert!(!l.contains(99), "refresh inserts nothing");
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
