//! The requests each flow (fairness id) has in flight from this picker, for flow
//! control's `headroom`: the top of the pool's capacity goes only to a flow holding less
//! than an equal share of them. A [`Held`] guard is one dispatched request's place; it
//! lives as long as the request and gives the place back when dropped, so a failed or
//! abandoned request cannot leave its flow counted. A flow holding nothing has no entry:
//! the map never outgrows the requests in flight.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

/// Requests in flight per flow.
#[derive(Debug, Default)]
pub struct InFlight {
    per_flow: HashMap<Arc<str>, usize>,
    total: usize,
}

impl InFlight {
    /// Whether `flow` holds less than an equal share of the requests in flight (the flow
    /// counted among the holders): with a flood holding 31 and a light tenant 1, the
    /// light one is under its share (1 × 2 < 32), the flood is not (31 × 2 ≥ 32). With
    /// nothing in flight every flow is.
    pub fn under_share(&self, flow: &str) -> bool {
        let mine = self.per_flow.get(flow).copied().unwrap_or(0);
        let holders = self.per_flow.len() + usize::from(mine == 0);
        mine * holders < self.total.max(1)
    }

    /// What `flow` holds now.
    pub fn of(&self, flow: &str) -> usize {
        self.per_flow.get(flow).copied().unwrap_or(0)
    }

    fn add(&mut self, flow: &Arc<str>) {
        *self.per_flow.entry(flow.clone()).or_default() += 1;
        self.total += 1;
    }

    fn remove(&mut self, flow: &str) {
        let Some(n) = self.per_flow.get_mut(flow) else {
            return;
        };
        *n -= 1;
        if *n == 0 {
            self.per_flow.remove(flow);
        }
        self.total -= 1;
    }
}

/// The counts of one controller, shared with its guards.
#[derive(Debug, Default)]
pub struct Holdings(Mutex<InFlight>);

impl Holdings {
    pub fn lock(&self) -> MutexGuard<'_, InFlight> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts one more request of `flow` in flight until the guard drops.
    pub fn hold(self: &Arc<Self>, flow: &Arc<str>) -> Held {
        self.lock().add(flow);
        Held {
            holdings: self.clone(),
            flow: flow.clone(),
        }
    }
}

/// One dispatched request's place in its flow's count.
#[derive(Debug)]
pub struct Held {
    holdings: Arc<Holdings>,
    flow: Arc<str>,
}

impl Drop for Held {
    fn drop(&mut self) {
        self.holdings.lock().remove(&self.flow);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flow_under_an_equal_share_is_told_apart_and_guards_give_places_back() {
        let h = Arc::new(Holdings::default());
        let (flood, light): (Arc<str>, Arc<str>) = ("flood".into(), "light".into());
        assert!(h.lock().under_share("flood"), "nothing in flight");
        let mut guards: Vec<Held> = (0..31).map(|_| h.hold(&flood)).collect();
        assert!(
            !h.lock().under_share("flood"),
            "the only holder has all of it"
        );
        assert!(h.lock().under_share("light"), "0 of 31, not holding yet");
        let one = h.hold(&light);
        assert!(h.lock().under_share("light"), "1 × 2 < 32");
        assert!(!h.lock().under_share("flood"), "31 × 2 ≥ 32");
        // Equal shares: neither is under.
        guards.truncate(1);
        {
            let held = h.lock();
            assert_eq!((held.of("flood"), held.of("light")), (1, 1));
            assert!(!held.under_share("light") && !held.under_share("flood"));
        }
        drop(one);
        drop(guards);
        let held = h.lock();
        assert_eq!(
            (held.total, held.per_flow.len()),
            (0, 0),
            "no entry outlives its requests"
        );
    }
}
