//! The two Lua scripts (`bucket.lua`, `budget.lua`) and the one call that runs an
//! operation through them. Each script reads, updates and re-expires one hash in a
//! single atomic step; `Script` sends `EVALSHA` and loads the script on `NOSCRIPT`, so a
//! restarted Redis (empty script cache) needs nothing from us.

use std::sync::LazyLock;

use redis::aio::ConnectionManager;
use redis::Script;

use crate::limits::calendar;
use crate::limits::decision::Op;
use crate::limits::error::StoreFailure;
use crate::limits::limit::Limit;
use crate::limits::store::Applied;

/// Added to every key's expiry: covers clock skew between replicas and Redis, so a key
/// is never forgotten while it still differs from a fresh one.
const SLACK_MS: i64 = 1_000;

static BUCKET: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("bucket.lua")));
static BUDGET: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("budget.lua")));

/// Apply `op` to `key` in Redis, atomically.
pub(super) async fn run(
    conn: &mut ConnectionManager,
    key: &str,
    limit: &Limit,
    op: Op,
    now_ms: i64,
) -> Result<Applied, StoreFailure> {
    match limit {
        Limit::Bucket(b) => {
            let (allowed, level): (i64, String) = BUCKET
                .key(key)
                .arg(op.name())
                .arg(op.amount())
                .arg(now_ms)
                .arg(b.capacity())
                .arg(b.refill_per_second().to_string())
                .arg(SLACK_MS)
                .invoke_async(conn)
                .await?;
            let value = level
                .parse::<f64>()
                .map_err(|_| StoreFailure::Reply(format!("bucket level {level:?}")))?;
            Ok(Applied {
                allowed: allowed == 1,
                value,
            })
        }
        Limit::Budget(b) => {
            let window = calendar::window(b.period(), now_ms);
            let (allowed, used): (i64, i64) = BUDGET
                .key(key)
                .arg(op.name())
                .arg(op.amount())
                .arg(now_ms)
                .arg(b.amount())
                .arg(window.start_ms)
                .arg(window.end_ms)
                .arg(SLACK_MS)
                .invoke_async(conn)
                .await?;
            Ok(Applied {
                allowed: allowed == 1,
                value: used as f64,
            })
        }
    }
}
