//! What a pool shows on `/metrics` (`inference_pool_*`): the endpoints with fresh
//! metrics, their mean KV-cache use and queue, the size of the prefix index, and the
//! KV-event figures of a pool in `kvEvents` mode.

use std::time::Instant;

use super::Pool;
use crate::metrics::{PoolStats, PoolStatsSource};

impl PoolStatsSource for Pool {
    fn pool_stats(&self) -> PoolStats {
        let now = Instant::now();
        let stale_after = self.spec().stale_after;
        let mut stats = PoolStats {
            kv_events: self.policy().prefix_cache.as_ref().map(|kv| kv.stats(now)),
            ..Default::default()
        };
        let (mut kv, mut queue) = (0.0, 0.0);
        for e in self.endpoints().iter() {
            stats.prefix_index_size += e.prefix_usage().0;
            if let (Some(m), false) = e.metrics(stale_after, now) {
                stats.ready += 1;
                kv += m.kv_cache;
                queue += m.waiting;
            }
        }
        if stats.ready > 0 {
            stats.average_kv_cache = kv / stats.ready as f64;
            stats.average_queue = queue / stats.ready as f64;
        }
        stats
    }
}
