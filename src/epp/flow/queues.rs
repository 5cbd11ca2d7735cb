//! The queues of flow control, without any waiting: priority bands (highest first), a
//! queue per flow (fairness id) inside each band, and the choice of the next request.
//!
//! Dispatch order:
//! 1. Strict priority: a band is served only while every higher band is empty.
//! 2. Inside a band, the flow by the fairness policy. `tokens` and `requests` keep a
//!    virtual counter per flow (the Virtual Token Counter of Sheng et al., "Fairness in
//!    Serving Large Language Models", OSDI '24): the backlogged flow with the lowest
//!    counter goes next and is charged its cost (weighted tokens, or 1). A flow that
//!    becomes backlogged is lifted to the lowest counter among the backlogged flows (or to
//!    the counter of the last flow to leave, when none is), so a tenant that was idle
//!    cannot bank credit and then flood. `fcfs` takes the band's oldest request.
//! 3. Inside a flow, arrival order (`fcfs`) or earliest deadline (`deadline`).
//!
//! Bounds: each band holds at most `maxRequests` requests and `maxBytes` body bytes; an
//! empty flow's queue is removed at once; counters of flows that are not backlogged are
//! evicted (lowest first) past [`MAX_COUNTERS`] per band, so a client inventing fairness
//! ids costs no memory that outlives its requests.

use std::cmp::Reverse;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use crate::config::{FairnessPolicy, OrderingPolicy};

/// Virtual counters kept per band, beyond the backlogged flows'.
pub const MAX_COUNTERS: usize = 10_000;

/// One queued request.
#[derive(Debug)]
pub struct Entry<T> {
    pub id: u64,
    pub flow: Arc<str>,
    /// Request-body bytes it holds.
    pub bytes: u64,
    /// What dispatching it charges its flow (weighted tokens, or 1).
    pub cost: f64,
    pub arrived: Instant,
    /// When it should be served by (`deadline` ordering).
    pub deadline: Instant,
    pub payload: T,
}

/// Why a request found no room.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Full {
    #[error("the priority band already holds {0} requests")]
    Requests(usize),
    #[error("the priority band already holds {0} bytes")]
    Bytes(u64),
}

/// The bounds and policies of the queues.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_requests: usize,
    pub max_bytes: u64,
    pub fairness: FairnessPolicy,
    pub ordering: OrderingPolicy,
}

#[derive(Debug)]
struct Band<T> {
    flows: HashMap<Arc<str>, VecDeque<Entry<T>>>,
    requests: usize,
    bytes: u64,
    counters: HashMap<Arc<str>, f64>,
    /// The counter of the last flow that stopped being backlogged.
    last_left: f64,
}

impl<T> Default for Band<T> {
    fn default() -> Self {
        Band {
            flows: HashMap::new(),
            requests: 0,
            bytes: 0,
            counters: HashMap::new(),
            last_left: 0.0,
        }
    }
}

/// Every band of one pool.
#[derive(Debug)]
pub struct Queues<T> {
    bands: BTreeMap<Reverse<i32>, Band<T>>,
    limits: Limits,
    len: usize,
}

// === impl Band ===

impl<T> Band<T> {
    fn counter(&self, flow: &str) -> f64 {
        self.counters.get(flow).copied().unwrap_or(0.0)
    }

    /// The floor a flow becoming backlogged is lifted to.
    fn floor(&self) -> f64 {
        self.flows
            .keys()
            .map(|f| self.counter(f))
            .min_by(f64::total_cmp)
            .unwrap_or(self.last_left)
    }

    /// Makes `flow` backlogged (lifted to the floor) if it was not.
    fn activate(&mut self, flow: &Arc<str>) {
        if self.flows.contains_key(flow) {
            return;
        }
        let lifted = self.counter(flow).max(self.floor());
        self.counters.insert(flow.clone(), lifted);
        self.flows.insert(flow.clone(), VecDeque::new());
        self.evict_counters();
    }

    /// Drops the lowest counters of flows that are not backlogged past the bound.
    fn evict_counters(&mut self) {
        if self.counters.len() <= MAX_COUNTERS + self.flows.len() {
            return;
        }
        let mut idle: Vec<(Arc<str>, f64)> = self
            .counters
            .iter()
            .filter(|(f, _)| !self.flows.contains_key(*f))
            .map(|(f, c)| (f.clone(), *c))
            .collect();
        idle.sort_by(|a, b| a.1.total_cmp(&b.1));
        let excess = idle.len().saturating_sub(MAX_COUNTERS * 9 / 10);
        for (f, _) in idle.into_iter().take(excess) {
            self.counters.remove(&f);
        }
    }

    /// The flow to serve next under `fairness`, among the `eligible` ones.
    fn next_flow(
        &self,
        fairness: FairnessPolicy,
        ordering: OrderingPolicy,
        eligible: impl Fn(&str) -> bool,
    ) -> Option<Arc<str>> {
        let flows = self
            .flows
            .iter()
            .filter(|(f, q)| !q.is_empty() && eligible(f));
        match fairness {
            FairnessPolicy::Fcfs => flows
                .filter_map(|(f, q)| Some((f, key(q.get(next_index(q, ordering)?)?, ordering))))
                .min_by_key(|(_, k)| *k)
                .map(|(f, _)| f.clone()),
            FairnessPolicy::Tokens | FairnessPolicy::Requests => flows
                .map(|(f, q)| (f, self.counter(f), q.len(), q.front().map(|e| e.arrived)))
                // Lowest counter; on a tie (a flow just lifted to the floor) the shorter
                // queue, then the older head.
                .min_by(|a, b| a.1.total_cmp(&b.1).then(a.2.cmp(&b.2)).then(a.3.cmp(&b.3)))
                .map(|(f, ..)| f.clone()),
        }
    }

    /// Adds `entry` to its flow's queue (backlogging the flow), at the head when `front`.
    fn put(&mut self, entry: Entry<T>, front: bool) {
        self.activate(&entry.flow);
        self.requests += 1;
        self.bytes += entry.bytes;
        let q = self.flows.get_mut(&entry.flow).expect("activated above");
        if front {
            q.push_front(entry);
        } else {
            q.push_back(entry);
        }
    }

    /// Removes the entry at `index` of `flow`'s queue, dropping the queue when empty.
    fn take(&mut self, flow: &Arc<str>, index: usize) -> Option<Entry<T>> {
        let q = self.flows.get_mut(flow)?;
        let entry = q.remove(index)?;
        if q.is_empty() {
            self.flows.remove(flow);
            self.last_left = self.counter(flow);
        }
        self.requests -= 1;
        self.bytes -= entry.bytes;
        Some(entry)
    }
}

/// The index of the entry a queue serves next.
fn next_index<T>(q: &VecDeque<Entry<T>>, ordering: OrderingPolicy) -> Option<usize> {
    match ordering {
        OrderingPolicy::Fcfs => (!q.is_empty()).then_some(0),
        OrderingPolicy::Deadline => q
            .iter()
            .enumerate()
            .min_by_key(|(_, e)| (e.deadline, e.arrived))
            .map(|(i, _)| i),
    }
}

fn key<T>(e: &Entry<T>, ordering: OrderingPolicy) -> (Instant, Instant) {
    match ordering {
        OrderingPolicy::Fcfs => (e.arrived, e.arrived),
        OrderingPolicy::Deadline => (e.deadline, e.arrived),
    }
}

// === impl Queues ===

impl<T> Queues<T> {
    pub fn new(limits: Limits) -> Self {
        Queues {
            bands: BTreeMap::new(),
            limits,
            len: 0,
        }
    }

    /// Requests queued in every band.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Queues `entry` in band `priority`, unless the band is full.
    pub fn push(&mut self, priority: i32, entry: Entry<T>) -> Result<(), Full> {
        let band = self.bands.entry(Reverse(priority)).or_default();
        if band.requests >= self.limits.max_requests {
            return Err(Full::Requests(band.requests));
        }
        if band.bytes.saturating_add(entry.bytes) > self.limits.max_bytes {
            return Err(Full::Bytes(band.bytes));
        }
        band.put(entry, false);
        self.len += 1;
        Ok(())
    }

    /// Takes the request to dispatch next and charges its flow.
    pub fn pop(&mut self) -> Option<(i32, Entry<T>)> {
        self.pop_if(|_| true)
    }

    /// Like [`Queues::pop`], among the flows of the highest non-empty band that are
    /// `eligible` (none: nothing is taken, lower bands still wait).
    pub fn pop_if(&mut self, eligible: impl Fn(&str) -> bool) -> Option<(i32, Entry<T>)> {
        let (limits, len) = (self.limits, &mut self.len);
        let (&Reverse(priority), band) = self.bands.iter_mut().find(|(_, b)| b.requests > 0)?;
        let flow = band.next_flow(limits.fairness, limits.ordering, eligible)?;
        let index = next_index(&band.flows[&flow], limits.ordering)?;
        // Charged before it leaves, so a flow emptied by it leaves with its charge.
        let cost = band.flows[&flow][index].cost;
        *band.counters.entry(flow.clone()).or_default() += cost;
        let entry = band.take(&flow, index)?;
        *len -= 1;
        Some((priority, entry))
    }

    /// Puts back at the head of its flow a request [`Queues::pop`] took, refunding its
    /// charge (it could not be served after all).
    pub fn restore(&mut self, priority: i32, entry: Entry<T>) {
        let band = self.bands.entry(Reverse(priority)).or_default();
        let (flow, cost) = (entry.flow.clone(), entry.cost);
        band.put(entry, true);
        if let Some(c) = band.counters.get_mut(&flow) {
            *c = (*c - cost).max(0.0);
        }
        self.len += 1;
    }

    /// Removes request `id` of `flow` in band `priority` (it gave up); `None` when it is
    /// no longer queued.
    pub fn remove(&mut self, priority: i32, flow: &Arc<str>, id: u64) -> Option<Entry<T>> {
        let band = self.bands.get_mut(&Reverse(priority))?;
        let index = band.flows.get(flow)?.iter().position(|e| e.id == id)?;
        let entry = band.take(flow, index)?;
        self.len -= 1;
        Some(entry)
    }

    /// Adds `amount` (negative: a refund) to `flow`'s counter in band `priority`: a
    /// request dispatched without queueing, or the correction once its usage is known.
    pub fn charge(&mut self, priority: i32, flow: &Arc<str>, amount: f64) {
        let band = self.bands.entry(Reverse(priority)).or_default();
        let c = band.counters.entry(flow.clone()).or_default();
        *c = (*c + amount).max(0.0);
        band.evict_counters();
    }

    /// The virtual counter of `flow` in band `priority` (0 when it has none).
    pub fn counter(&self, priority: i32, flow: &str) -> f64 {
        self.bands
            .get(&Reverse(priority))
            .map_or(0.0, |b| b.counter(flow))
    }

    /// Counters held in band `priority` (for the memory bound's tests).
    pub fn counters_held(&self, priority: i32) -> usize {
        self.bands
            .get(&Reverse(priority))
            .map_or(0, |b| b.counters.len())
    }
}

#[cfg(test)]
mod tests;
