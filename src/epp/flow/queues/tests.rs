use std::time::Duration;

use super::*;

fn limits(fairness: FairnessPolicy, ordering: OrderingPolicy) -> Limits {
    Limits {
        max_requests: 100,
        max_bytes: 10_000,
        fairness,
        ordering,
    }
}

struct Maker {
    t0: Instant,
    next: u64,
}

impl Maker {
    fn new() -> Self {
        Maker {
            t0: Instant::now(),
            next: 0,
        }
    }

    /// Entry `id` of `flow` arriving at `at_ms`, costing `cost`, due `deadline_ms`.
    fn entry(&mut self, flow: &str, at_ms: u64, cost: f64, deadline_ms: u64) -> Entry<u64> {
        self.next += 1;
        Entry {
            id: self.next,
            flow: Arc::from(flow),
            bytes: 10,
            cost,
            arrived: self.t0 + Duration::from_millis(at_ms),
            deadline: self.t0 + Duration::from_millis(deadline_ms),
            payload: self.next,
        }
    }
}

fn drain(q: &mut Queues<u64>) -> Vec<(i32, String)> {
    std::iter::from_fn(|| q.pop().map(|(p, e)| (p, e.flow.to_string()))).collect()
}

#[test]
fn higher_priority_bands_go_first() {
    let mut q = Queues::new(limits(FairnessPolicy::Tokens, OrderingPolicy::Fcfs));
    let mut m = Maker::new();
    q.push(-1, m.entry("a", 0, 1.0, 0)).unwrap();
    q.push(0, m.entry("b", 1, 1.0, 0)).unwrap();
    q.push(5, m.entry("c", 2, 1.0, 0)).unwrap();
    q.push(0, m.entry("d", 3, 1.0, 0)).unwrap();
    assert_eq!(q.len(), 4);
    let order: Vec<i32> = drain(&mut q).into_iter().map(|(p, _)| p).collect();
    assert_eq!(order, vec![5, 0, 0, -1]);
    assert!(q.is_empty());
}

#[test]
fn token_fairness_serves_the_flow_that_consumed_least() {
    let mut q = Queues::new(limits(FairnessPolicy::Tokens, OrderingPolicy::Fcfs));
    let mut m = Maker::new();
    // A heavy flow queues 6 requests of 1,000 tokens first; a light one 3 of 100.
    for i in 0..6 {
        q.push(0, m.entry("heavy", i, 1000.0, 0)).unwrap();
    }
    for i in 0..3 {
        q.push(0, m.entry("light", 10 + i, 100.0, 0)).unwrap();
    }
    let order: Vec<String> = drain(&mut q).into_iter().map(|(_, f)| f).collect();
    // Equal counters: the shorter queue (light) first; then heavy's first request
    // charges it 1,000, and every other light request (100 each) goes before heavy's
    // second.
    assert_eq!(
        order,
        vec!["light", "heavy", "light", "light", "heavy", "heavy", "heavy", "heavy", "heavy"]
    );
    assert_eq!(q.counter(0, "heavy"), 6000.0);
    assert_eq!(q.counter(0, "light"), 300.0);
}

#[test]
fn request_fairness_alternates_flows() {
    let mut q = Queues::new(limits(FairnessPolicy::Requests, OrderingPolicy::Fcfs));
    let mut m = Maker::new();
    for i in 0..3 {
        q.push(0, m.entry("a", i, 1.0, 0)).unwrap();
    }
    for i in 0..3 {
        q.push(0, m.entry("b", 10 + i, 1.0, 0)).unwrap();
    }
    let order: Vec<String> = drain(&mut q).into_iter().map(|(_, f)| f).collect();
    assert_eq!(order, vec!["a", "b", "a", "b", "a", "b"]);
}

#[test]
fn fcfs_fairness_is_arrival_order_across_flows() {
    let mut q = Queues::new(limits(FairnessPolicy::Fcfs, OrderingPolicy::Fcfs));
    let mut m = Maker::new();
    q.push(0, m.entry("a", 5, 1.0, 0)).unwrap();
    q.push(0, m.entry("b", 1, 1.0, 0)).unwrap();
    q.push(0, m.entry("a", 7, 1.0, 0)).unwrap();
    q.push(0, m.entry("b", 6, 1.0, 0)).unwrap();
    let order: Vec<String> = drain(&mut q).into_iter().map(|(_, f)| f).collect();
    assert_eq!(order, vec!["b", "a", "b", "a"]);
}

#[test]
fn deadline_ordering_serves_the_earliest_deadline_of_a_flow() {
    let mut q = Queues::new(limits(FairnessPolicy::Tokens, OrderingPolicy::Deadline));
    let mut m = Maker::new();
    let late = m.entry("a", 0, 1.0, 900);
    let soon = m.entry("a", 1, 1.0, 50);
    let (late_id, soon_id) = (late.id, soon.id);
    q.push(0, late).unwrap();
    q.push(0, soon).unwrap();
    assert_eq!(q.pop().unwrap().1.id, soon_id);
    assert_eq!(q.pop().unwrap().1.id, late_id);
}

#[test]
fn an_idle_flow_cannot_bank_credit() {
    let mut q = Queues::new(limits(FairnessPolicy::Tokens, OrderingPolicy::Fcfs));
    let mut m = Maker::new();
    // "busy" has consumed 10,000 while "sleeper" sent nothing.
    q.charge(0, &Arc::from("busy"), 10_000.0);
    q.push(0, m.entry("busy", 0, 100.0, 0)).unwrap();
    q.push(0, m.entry("sleeper", 1, 100.0, 0)).unwrap();
    // sleeper is lifted to busy's counter: they alternate instead of sleeper taking 100
    // requests in a row.
    assert_eq!(q.counter(0, "sleeper"), 10_000.0);
    for i in 0..4 {
        q.push(0, m.entry("sleeper", 2 + i, 100.0, 0)).unwrap();
        q.push(0, m.entry("busy", 2 + i, 100.0, 0)).unwrap();
    }
    let order: Vec<String> = drain(&mut q).into_iter().map(|(_, f)| f).collect();
    let sleeper_first_five = order.iter().take(5).filter(|f| *f == "sleeper").count();
    assert!(sleeper_first_five <= 3, "{order:?}");
}

#[test]
fn band_caps_refuse_requests_and_bytes() {
    let mut q = Queues::new(Limits {
        max_requests: 2,
        max_bytes: 25,
        fairness: FairnessPolicy::Tokens,
        ordering: OrderingPolicy::Fcfs,
    });
    let mut m = Maker::new();
    q.push(0, m.entry("a", 0, 1.0, 0)).unwrap();
    q.push(0, m.entry("a", 1, 1.0, 0)).unwrap();
    assert_eq!(q.push(0, m.entry("b", 2, 1.0, 0)), Err(Full::Requests(2)));
    // Another band has its own room.
    q.push(1, m.entry("b", 3, 1.0, 0)).unwrap();
    let mut big = m.entry("c", 4, 1.0, 0);
    big.bytes = 16;
    // Band 1 holds 10 bytes: 16 more would pass 25.
    assert_eq!(q.push(1, big), Err(Full::Bytes(10)));
}

#[test]
fn a_request_that_gives_up_leaves_at_once() {
    let mut q = Queues::new(limits(FairnessPolicy::Tokens, OrderingPolicy::Fcfs));
    let mut m = Maker::new();
    let a = m.entry("a", 0, 1.0, 0);
    let (flow, id) = (a.flow.clone(), a.id);
    q.push(0, a).unwrap();
    q.push(0, m.entry("b", 1, 1.0, 0)).unwrap();
    assert_eq!(q.remove(0, &flow, id).map(|e| e.id), Some(id));
    assert_eq!(q.remove(0, &flow, id).map(|e| e.id), None, "only once");
    assert_eq!(q.len(), 1);
    assert_eq!(q.pop().unwrap().1.flow.as_ref(), "b");
    assert!(q.pop().is_none());
    // Nothing was charged for the request that left.
    assert_eq!(q.counter(0, "a"), 0.0);
}

#[test]
fn invented_fairness_ids_cost_bounded_memory() {
    let mut q = Queues::new(limits(FairnessPolicy::Tokens, OrderingPolicy::Fcfs));
    let mut m = Maker::new();
    for i in 0..(MAX_COUNTERS as u64 * 3) {
        q.push(0, m.entry(&format!("tenant-{i}"), i, 10.0, 0))
            .unwrap();
        q.pop().unwrap();
    }
    assert!(q.is_empty());
    assert!(
        q.counters_held(0) <= MAX_COUNTERS + 1,
        "{} counters",
        q.counters_held(0)
    );
}

#[test]
fn corrections_adjust_a_flow_and_never_go_below_zero() {
    let mut q: Queues<u64> = Queues::new(limits(FairnessPolicy::Tokens, OrderingPolicy::Fcfs));
    let a: Arc<str> = Arc::from("a");
    q.charge(0, &a, 500.0);
    q.charge(0, &a, -200.0);
    assert_eq!(q.counter(0, "a"), 300.0);
    q.charge(0, &a, -1000.0);
    assert_eq!(q.counter(0, "a"), 0.0);
}
