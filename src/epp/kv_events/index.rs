//! One endpoint's exact prefix index: the picker's block keys of the blocks the
//! endpoint reports holding, built from its `BlockStored` / `BlockRemoved` /
//! `AllBlocksCleared` events.
//!
//! Each engine block hash maps to the key computed from the block's token ids chained on
//! its parent's key ([`chain_key`]), so a prompt tokenized by the picker is looked up
//! without knowing the engine's hash function. Keys are reference-counted: a key stored
//! twice (the same block in two media, or two engine hashes with the same tokens) goes
//! only after two removes. The index is bounded: past `capacity` engine blocks, the
//! least recently stored is dropped.

use std::collections::HashMap;
use std::hash::BuildHasherDefault;

use super::decode::{BlockStored, Event};
use crate::epp::hash::xxh64;
use crate::epp::prefix::{Lru, PassThrough};

/// Seed of every block key ("tollgate" in ASCII).
pub const KEY_SEED: u64 = 0x746f_6c6c_6761_7465;

/// The key a chain starts from: the LoRA adapter's name (empty for the base model).
pub fn root_key(lora: Option<&str>) -> u64 {
    xxh64(lora.unwrap_or("").as_bytes(), KEY_SEED)
}

/// The key of a block of `tokens` following the block keyed `parent`:
/// xxHash64(parent little-endian ‖ each token id as u32 little-endian, [`KEY_SEED`]).
pub fn chain_key(parent: u64, tokens: &[u32]) -> u64 {
    let mut buf = Vec::with_capacity(8 + tokens.len() * 4);
    buf.extend_from_slice(&parent.to_le_bytes());
    for t in tokens {
        buf.extend_from_slice(&t.to_le_bytes());
    }
    xxh64(&buf, KEY_SEED)
}

/// The keys of a tokenized prompt's whole blocks of `block_size` tokens, at most
/// `max_blocks`.
pub fn prompt_keys(
    tokens: &[u32],
    block_size: usize,
    lora: Option<&str>,
    max_blocks: usize,
) -> Vec<u64> {
    let mut prev = root_key(lora);
    tokens
        .chunks_exact(block_size.max(1))
        .take(max_blocks)
        .map(|block| {
            prev = chain_key(prev, block);
            prev
        })
        .collect()
}

/// What applying an event did that the subscriber counts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Applied {
    /// Stored blocks whose parent the index does not know (their keys cannot be
    /// computed): skipped.
    pub orphaned: usize,
    /// Blocks dropped to stay within the capacity.
    pub evicted: usize,
    /// Keys the engine no longer holds (removed), or every key (`AllCleared`).
    pub gone: Gone,
}

/// Keys an event took away.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Gone {
    #[default]
    None,
    Keys(Vec<u64>),
    All,
}

#[derive(Clone, Copy, Debug)]
struct Block {
    key: u64,
    /// Times the engine stored this hash without removing it.
    stores: u32,
}

type Map<V> = HashMap<u64, V, BuildHasherDefault<PassThrough>>;

/// The exact prefix index of one endpoint.
#[derive(Debug)]
pub struct BlockIndex {
    blocks: Map<Block>,
    keys: Map<u32>,
    /// Engine hashes, most recently stored first: the eviction order.
    order: Lru,
}

impl BlockIndex {
    pub fn new(capacity: usize) -> Self {
        BlockIndex {
            blocks: Map::default(),
            keys: Map::default(),
            order: Lru::new(capacity),
        }
    }

    /// Engine blocks held.
    pub fn len(&self) -> usize {
        self.blocks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.blocks.is_empty()
    }

    /// Whether the block of `key` is held.
    pub fn contains(&self, key: u64) -> bool {
        self.keys.contains_key(&key)
    }

    /// Leading `keys` of a prompt this endpoint holds (stops at the first miss).
    pub fn matched(&self, keys: &[u64]) -> usize {
        keys.iter()
            .take_while(|k| self.keys.contains_key(k))
            .count()
    }

    pub fn apply(&mut self, event: &Event) -> Applied {
        match event {
            Event::Stored(s) => self.store(s),
            Event::Removed { block_hashes, .. } => {
                let gone = block_hashes
                    .iter()
                    .filter_map(|h| self.remove(*h))
                    .collect();
                Applied {
                    gone: Gone::Keys(gone),
                    ..Applied::default()
                }
            }
            Event::AllCleared => {
                self.clear();
                Applied {
                    gone: Gone::All,
                    ..Applied::default()
                }
            }
        }
    }

    fn store(&mut self, s: &BlockStored) -> Applied {
        let mut applied = Applied::default();
        let mut parent = match s.parent_block_hash {
            None => root_key(s.lora_name.as_deref()),
            Some(p) => match self.blocks.get(&p) {
                Some(b) => b.key,
                None => {
                    applied.orphaned = s.block_hashes.len();
                    return applied;
                }
            },
        };
        let size = s.block_size as usize;
        for (hash, tokens) in s.block_hashes.iter().zip(s.token_ids.chunks_exact(size)) {
            let key = chain_key(parent, tokens);
            parent = key;
            match self.blocks.get_mut(hash) {
                Some(b) if b.key == key => b.stores = b.stores.saturating_add(1),
                Some(_) => {
                    // The engine reused the hash for other tokens: the old block is gone.
                    self.forget(*hash);
                    self.blocks.insert(*hash, Block { key, stores: 1 });
                }
                None => {
                    self.blocks.insert(*hash, Block { key, stores: 1 });
                }
            }
            *self.keys.entry(key).or_insert(0) += 1;
            if let Some(old) = self.order.insert_evicting(*hash) {
                self.forget(old);
                applied.evicted += 1;
            }
        }
        applied
    }

    /// One remove of engine block `hash`: its key goes when every store is undone
    /// (returned then).
    fn remove(&mut self, hash: u64) -> Option<u64> {
        let b = self.blocks.get_mut(&hash)?;
        b.stores -= 1;
        let (key, gone) = (b.key, b.stores == 0);
        if gone {
            self.blocks.remove(&hash);
            self.order.remove(hash);
        }
        self.release(key, 1);
        (!self.keys.contains_key(&key)).then_some(key)
    }

    /// Drops engine block `hash` whatever its store count.
    fn forget(&mut self, hash: u64) {
        if let Some(b) = self.blocks.remove(&hash) {
            self.order.remove(hash);
            self.release(b.key, b.stores);
        }
    }

    fn release(&mut self, key: u64, n: u32) {
        if let Some(c) = self.keys.get_mut(&key) {
            *c = c.saturating_sub(n);
            if *c == 0 {
                self.keys.remove(&key);
            }
        }
    }

    pub fn clear(&mut self) {
        let capacity = self.order.capacity();
        *self = BlockIndex::new(capacity);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(hashes: &[u64], parent: Option<u64>, tokens: &[u32]) -> Event {
        Event::Stored(BlockStored {
            block_hashes: hashes.to_vec(),
            parent_block_hash: parent,
            token_ids: tokens.to_vec(),
            block_size: 2,
            ..Default::default()
        })
    }

    fn removed(hashes: &[u64]) -> Event {
        Event::Removed {
            block_hashes: hashes.to_vec(),
            medium: None,
        }
    }

    #[test]
    fn engine_blocks_map_to_the_keys_a_tokenized_prompt_gives() {
        let mut ix = BlockIndex::new(100);
        // Two events, the second chained on the first's last block.
        ix.apply(&stored(&[101, 102], None, &[1, 2, 3, 4]));
        ix.apply(&stored(&[103], Some(102), &[5, 6]));
        let keys = prompt_keys(&[1, 2, 3, 4, 5, 6, 7], 2, None, 100);
        assert_eq!(keys.len(), 3, "only whole blocks");
        assert_eq!(ix.matched(&keys), 3);
        // Another prompt sharing the first block only.
        assert_eq!(ix.matched(&prompt_keys(&[1, 2, 9, 9], 2, None, 100)), 1);
        // Same tokens under a LoRA adapter: another chain.
        assert_eq!(ix.matched(&prompt_keys(&[1, 2], 2, Some("sql"), 100)), 0);
        assert_eq!(prompt_keys(&[1; 100], 2, None, 7).len(), 7);
    }

    #[test]
    fn a_key_stored_twice_goes_after_two_removes() {
        let mut ix = BlockIndex::new(100);
        let keys = prompt_keys(&[1, 2], 2, None, 10);
        ix.apply(&stored(&[7], None, &[1, 2]));
        // The same block again (e.g. another medium), and under another engine hash.
        ix.apply(&stored(&[7], None, &[1, 2]));
        ix.apply(&stored(&[8], None, &[1, 2]));
        ix.apply(&removed(&[7]));
        ix.apply(&removed(&[8]));
        assert_eq!(ix.matched(&keys), 1, "one store of hash 7 is left");
        ix.apply(&removed(&[7]));
        assert_eq!(ix.matched(&keys), 0);
        assert!(ix.is_empty());
        // Removing what is not there changes nothing.
        ix.apply(&removed(&[7, 99]));
        assert!(ix.keys.is_empty());
    }

    #[test]
    fn all_blocks_cleared_empties_the_endpoint() {
        let mut ix = BlockIndex::new(100);
        ix.apply(&stored(&[1, 2], None, &[1, 2, 3, 4]));
        ix.apply(&Event::AllCleared);
        assert!(ix.is_empty());
        assert_eq!(ix.matched(&prompt_keys(&[1, 2], 2, None, 10)), 0);
        // Still usable, and still bounded as before.
        ix.apply(&stored(&[1], None, &[1, 2]));
        assert_eq!(ix.len(), 1);
        assert_eq!(ix.order.capacity(), 100);
    }

    #[test]
    fn an_unknown_parent_orphans_the_blocks() {
        let mut ix = BlockIndex::new(100);
        let a = ix.apply(&stored(&[5, 6], Some(4), &[1, 2, 3, 4]));
        assert_eq!(a.orphaned, 2);
        assert!(ix.is_empty());
    }

    #[test]
    fn the_capacity_bounds_the_index_least_recently_stored_first() {
        let mut ix = BlockIndex::new(3);
        // A chain of 5 blocks: the 2 oldest go.
        let tokens: Vec<u32> = (0..10).collect();
        let a = ix.apply(&stored(&[1, 2, 3, 4, 5], None, &tokens));
        assert_eq!(a.evicted, 2);
        assert_eq!(ix.len(), 3);
        assert_eq!(ix.keys.len(), 3);
        let keys = prompt_keys(&tokens, 2, None, 10);
        assert_eq!(ix.matched(&keys), 0, "the first block went");
        assert_eq!(ix.matched(&keys[2..]), 3);
        // Stores far beyond the capacity stay bounded.
        for h in 100..10_000u64 {
            ix.apply(&stored(&[h], None, &[h as u32, 0]));
        }
        assert_eq!((ix.len(), ix.keys.len()), (3, 3));
        assert!(ix.order.len() <= 3);
    }

    #[test]
    fn a_reused_engine_hash_replaces_its_block() {
        let mut ix = BlockIndex::new(10);
        ix.apply(&stored(&[1], None, &[1, 2]));
        ix.apply(&stored(&[1], None, &[3, 4]));
        assert_eq!(ix.matched(&prompt_keys(&[1, 2], 2, None, 10)), 0);
        assert_eq!(ix.matched(&prompt_keys(&[3, 4], 2, None, 10)), 1);
        assert_eq!(ix.keys.len(), 1);
    }
}
