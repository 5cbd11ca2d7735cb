//! The pending ledger: what a `RedisStore` charged or refunded while Redis could not be
//! reached, netted per key (and per budget window), waiting to be replayed into Redis.
//! A budget window that ended before the replay is dropped: that period's usage no
//! longer limits anything, and crediting it to the current window would be wrong.

use dashmap::DashMap;

use crate::limits::calendar;
use crate::limits::decision::Op;
use crate::limits::limit::Limit;

/// Net pending amounts, keyed by store key and budget window.
#[derive(Debug, Default)]
pub(super) struct Ledger {
    entries: DashMap<Slot, Entry>,
}

/// A key, and for budgets the start of the window the amounts belong to.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) struct Slot {
    pub key: String,
    pub window_start_ms: Option<i64>,
}

/// The latest limit seen for the key, and the net amount: charges minus refunds.
#[derive(Clone, Debug)]
pub(super) struct Entry {
    pub limit: Limit,
    pub net: i64,
}

/// What replaying one entry takes: the slot, its limit, and the operation to apply now;
/// `None` when the entry's budget window has ended or it nets to zero.
pub(super) struct Replay {
    pub slot: Slot,
    pub entry: Entry,
    pub op: Option<Op>,
}

// === impl Ledger ===

impl Ledger {
    /// Remember `op` on `key` at `now_ms` (a reservation counts as a charge).
    pub(super) fn add(&self, key: &str, limit: &Limit, op: Op, now_ms: i64) {
        let amount = i64::try_from(op.amount()).unwrap_or(i64::MAX);
        let delta = match op {
            Op::Reserve(_) | Op::Charge(_) => amount,
            Op::Refund(_) => -amount,
        };
        let slot = Slot {
            key: key.to_owned(),
            window_start_ms: match limit {
                Limit::Bucket(_) => None,
                Limit::Budget(b) => Some(calendar::window(b.period(), now_ms).start_ms),
            },
        };
        self.merge(
            slot,
            Entry {
                limit: limit.clone(),
                net: delta,
            },
        );
    }

    /// Put an entry (back) in, netting it with anything added meanwhile.
    pub(super) fn merge(&self, slot: Slot, entry: Entry) {
        self.entries
            .entry(slot)
            .and_modify(|e| {
                e.net = e.net.saturating_add(entry.net);
                e.limit = entry.limit.clone();
            })
            .or_insert(entry);
    }

    /// Take every entry out, each with the operation that replays it at `now_ms`.
    pub(super) fn take_all(&self, now_ms: i64) -> Vec<Replay> {
        let slots: Vec<Slot> = self.entries.iter().map(|e| e.key().clone()).collect();
        slots
            .into_iter()
            .filter_map(|slot| self.entries.remove(&slot))
            .map(|(slot, entry)| {
                let ended = match (&entry.limit, slot.window_start_ms) {
                    (Limit::Budget(b), Some(start)) => {
                        calendar::window(b.period(), now_ms).start_ms != start
                    }
                    _ => false,
                };
                let op = match entry.net {
                    _ if ended => None,
                    n if n > 0 => Some(Op::Charge(n as u64)),
                    n if n < 0 => Some(Op::Refund(n.unsigned_abs())),
                    _ => None,
                };
                Replay { slot, entry, op }
            })
            .collect()
    }

    /// Entries waiting.
    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::calendar::tests::utc;
    use crate::limits::limit::Period;

    #[test]
    fn amounts_net_per_key_and_budget_window() {
        let ledger = Ledger::default();
        let bucket = Limit::bucket(100, 1.0).unwrap();
        let hourly = Limit::budget(100, Period::Hour).unwrap();
        let t = utc(2025, 5, 1, 10, 30, 0);
        ledger.add("b", &bucket, Op::Reserve(40), t);
        ledger.add("b", &bucket, Op::Refund(15), t + 3_600_000);
        ledger.add("h", &hourly, Op::Charge(10), t);
        ledger.add("h", &hourly, Op::Charge(5), t + 1_000);
        ledger.add("h", &hourly, Op::Charge(7), t + 3_600_000);
        ledger.add("z", &bucket, Op::Charge(5), t);
        ledger.add("z", &bucket, Op::Refund(5), t);
        assert_eq!(ledger.len(), 4);

        let mut replays = ledger.take_all(t + 3_600_000);
        replays.sort_by_key(|r| (r.slot.key.clone(), r.slot.window_start_ms));
        let ops: Vec<_> = replays
            .iter()
            .map(|r| (r.slot.key.as_str(), r.op))
            .collect();
        assert_eq!(
            ops,
            [
                ("b", Some(Op::Charge(25))),
                ("h", None), // the 10:00 hour has ended
                ("h", Some(Op::Charge(7))),
                ("z", None),
            ]
        );
        assert!(ledger.is_empty());
    }

    #[test]
    fn a_net_refund_replays_as_a_refund() {
        let ledger = Ledger::default();
        let bucket = Limit::bucket(100, 1.0).unwrap();
        ledger.add("b", &bucket, Op::Refund(30), 0);
        ledger.add("b", &bucket, Op::Charge(10), 0);
        let replays = ledger.take_all(0);
        assert_eq!(replays[0].op, Some(Op::Refund(20)));
    }
}
