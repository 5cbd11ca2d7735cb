//! Flow control: while a pool is saturated, requests wait in the picker's queues instead
//! of piling onto the model servers, and leave them in priority and fairness order as
//! capacity frees up (llm-d's flow control, with fairness by tokens consumed).
//!
//! A request [`FlowController::admit`]s itself. With nothing queued and the pool below
//! saturation it is picked at once (no task, no channel). Otherwise it is queued (see
//! [`queues`] for the order) and awaits a oneshot: the pool's dispatcher task pops the
//! next request whenever the pool is below saturation, *picks for it* (so the pick's
//! in-flight share counts before the next saturation check) and sends it the result.
//! A queued request holds no thread: it is a parked future. When it goes away (the
//! client hung up: Envoy resets the ext_proc stream, or the proxy drops the request),
//! its [`Waiting`] guard takes it out of the queue at once; past its TTL it leaves with
//! [`FlowDrop::TtlExpired`].
//!
//! With `headroom` the top of the pool's capacity is kept for flows holding less than an
//! equal share of the requests in flight ([`held`]): past `1 − headroom` only their
//! requests go out, so a light tenant does not wait for a flood's request to finish;
//! below it their requests go before the others' (the fairness order then ranks each
//! group), so a light tenant that needs more than the headroom takes the next slot.
//!
//! The dispatcher wakes when a request is queued, when one completes
//! ([`FlowController::released`]), and every [`TICK`] while requests wait (scraped
//! metrics change without telling anyone). It holds only a weak handle: it ends with
//! the controller.

pub mod held;
pub mod queues;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use tokio::sync::{oneshot, Notify};

use self::held::{Held, Holdings};
use self::queues::{Entry, Full, Limits, Queues};
use super::load::CHARS_PER_TOKEN;
use super::pool::{PickRejection, PickRequest, Picked, Pool};
use super::scheduling::slo::Slo;
use crate::config::{FairnessPolicy, FlowControlConfig};
use crate::metrics::{
    FlowControlMetrics, InferencePoolLabels, OutcomeLabels, QueueDurationLabels, QueueLabels,
};

/// How often waiting requests re-check saturation when nothing else wakes them.
pub const TICK: Duration = Duration::from_millis(5);

/// The fairness id of a request that names none (the reference's).
pub const DEFAULT_FLOW: &str = "default-flow";

/// A pick request with its data owned, so it can wait in a queue.
#[derive(Clone, Debug, Default)]
pub struct PickSpec {
    pub model: String,
    /// The prompt text the prefix index hashes (its start is enough).
    pub prompt: Vec<u8>,
    /// The whole prompt's length in characters (more than `prompt` holds when only its
    /// start was read): its token estimate.
    pub prompt_chars: usize,
    pub expected_output_tokens: Option<u64>,
    pub subset: Option<Vec<SocketAddr>>,
    /// The request's latency objectives, as it sent them.
    pub slo: Option<Slo>,
    /// Its priority: negative is sheddable.
    pub priority: i32,
    /// The endpoint of its session (session affinity), if it has one.
    pub session: Option<SocketAddr>,
    /// The prompt's exact block keys (precise prefix cache), when it was tokenized.
    pub block_keys: Option<Vec<u64>>,
}

impl PickSpec {
    /// The borrowed request, `waited` after its arrival. Saturation is flow control's
    /// business once queued: the pick sheds nothing for it (the request waited for room).
    /// A time-to-first-token objective is what is left of it; while some is left the
    /// request may wait for an endpoint that can meet it.
    pub fn request(&self, waited: Duration) -> PickRequest<'_> {
        let mut r = PickRequest::new(&self.model, &self.prompt);
        if self.prompt_chars > self.prompt.len() {
            r.prompt_tokens = Some(self.prompt_tokens());
        }
        r.expected_output_tokens = self.expected_output_tokens;
        r.subset = self.subset.as_deref();
        r.session = self.session;
        r.block_keys = self.block_keys.as_deref();
        if let Some(slo) = self.slo {
            let left = slo.ttft.map(|t| t.saturating_sub(waited));
            r.may_wait = left.is_some_and(|l| !l.is_zero());
            r.slo = Some(Slo { ttft: left, ..slo });
            // Sheddable only as far as objectives go: a request that cannot make its
            // objective is refused rather than queued.
            r.priority = i64::from(self.priority.min(0));
        }
        r
    }

    fn prompt_tokens(&self) -> u64 {
        self.prompt_chars.max(self.prompt.len()) as u64 / CHARS_PER_TOKEN
    }
}

/// One request asking to be dispatched.
#[derive(Debug)]
pub struct FlowRequest {
    pub pick: PickSpec,
    pub priority: i32,
    /// The fairness id (tenant); [`DEFAULT_FLOW`] when the request names none.
    pub fairness_id: String,
    /// Request-body bytes it holds while queued.
    pub bytes: u64,
    /// The time-to-first-token objective it carries, if any (its deadline under
    /// `deadline` ordering).
    pub ttft_slo: Option<Duration>,
    /// The queue TTL it asks for (`x-llm-d-inference-ttl`); the band's `ttl` when that
    /// is shorter or none is asked for.
    pub ttl: Option<Duration>,
}

/// Why flow control refused a request.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum FlowDrop {
    #[error("the pool is saturated and its queue is full: {0}")]
    QueueFull(Full),
    #[error("the request waited {0:?} in the queue, its limit, without the pool freeing up")]
    TtlExpired(Duration),
    #[error(transparent)]
    Pick(PickRejection),
    #[error("the picker is shutting down")]
    ShuttingDown,
}

/// A dispatched request: the pick, how long it waited, and its flow's charge to settle.
#[derive(Debug)]
pub struct Admitted {
    pub picked: Picked,
    /// Time spent queued (`None`: dispatched at once).
    pub queued: Option<Duration>,
    pub charge: Charge,
}

/// What a request's flow was charged at dispatch; [`Charge::settle`] corrects it with
/// the tokens the response reported.
#[derive(Debug)]
pub struct Charge {
    controller: Weak<FlowController>,
    priority: i32,
    flow: Arc<str>,
    /// The prompt tokens estimated at dispatch.
    prompt_tokens: u64,
    estimate: f64,
    /// Its place among its flow's requests in flight (the headroom's share), given back
    /// when the charge is settled or dropped.
    _held: Option<Held>,
}

impl Charge {
    /// Replaces the estimate by the request's real output tokens and, when the response
    /// reported them, its real prompt tokens.
    pub fn settle(self, prompt_tokens: Option<u64>, output_tokens: u64) {
        let Some(c) = self.controller.upgrade() else {
            return;
        };
        if c.settings.fairness != FairnessPolicy::Tokens {
            return;
        }
        let actual = c.cost(prompt_tokens.unwrap_or(self.prompt_tokens), output_tokens);
        c.queues()
            .charge(self.priority, &self.flow, actual - self.estimate);
    }
}

/// What the dispatcher sends a queued request: its pick and its place in flight.
type Dispatched = Result<(Picked, Option<Held>), PickRejection>;
type Reply = oneshot::Receiver<Dispatched>;

/// Where [`FlowController::enter`] left a request.
enum Entered {
    Dispatched(Box<Picked>, Option<Held>),
    Queued(u64, Reply),
}

/// What the saturation detector leaves room for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Room {
    /// Below `1 − headroom`: any request.
    Any,
    /// In the headroom: requests of flows under their equal share of those in flight.
    UnderShare,
    /// Saturated.
    None,
}

/// A queued request's waiting state.
#[derive(Debug)]
struct Waiter {
    pick: PickSpec,
    reply: oneshot::Sender<Dispatched>,
    labels: QueueLabels,
}

/// The flow control of one pool.
#[derive(Debug)]
pub struct FlowController {
    pool: Arc<Pool>,
    settings: FlowControlConfig,
    pool_name: String,
    metrics: FlowControlMetrics,
    queues: Mutex<Queues<Waiter>>,
    held: Arc<Holdings>,
    wake: Arc<Notify>,
    next_id: AtomicU64,
    dispatcher: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

// === impl FlowController ===

impl FlowController {
    pub fn new(
        pool: Arc<Pool>,
        settings: FlowControlConfig,
        pool_name: &str,
        metrics: FlowControlMetrics,
    ) -> Arc<Self> {
        let limits = Limits {
            max_requests: settings.max_requests,
            max_bytes: settings.max_bytes,
            fairness: settings.fairness,
            ordering: settings.ordering,
        };
        Arc::new(FlowController {
            pool,
            settings,
            pool_name: pool_name.to_string(),
            metrics,
            queues: Mutex::new(Queues::new(limits)),
            held: Arc::new(Holdings::default()),
            wake: Arc::new(Notify::new()),
            next_id: AtomicU64::new(1),
            dispatcher: Mutex::new(None),
        })
    }

    fn queues(&self) -> MutexGuard<'_, Queues<Waiter>> {
        self.queues.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Requests waiting now.
    pub fn queued(&self) -> usize {
        self.queues().len()
    }

    /// The virtual counter of a flow in a band (for tests and the debug log).
    pub fn counter(&self, priority: i32, fairness_id: &str) -> f64 {
        self.queues().counter(priority, fairness_id)
    }

    /// A request finished: capacity may have freed up.
    pub fn released(&self) {
        self.wake.notify_one();
    }

    /// What dispatching a request charges its flow.
    fn cost(&self, prompt_tokens: u64, output_tokens: u64) -> f64 {
        match self.settings.fairness {
            FairnessPolicy::Tokens => {
                prompt_tokens as f64 + self.settings.output_token_weight * output_tokens as f64
            }
            FairnessPolicy::Requests => 1.0,
            FairnessPolicy::Fcfs => 0.0,
        }
    }

    /// Which requests may go out now (the saturation gauge is updated on the way).
    fn room(&self) -> Room {
        let s = self.pool.saturation(Instant::now());
        self.metrics
            .saturation
            .get_or_create(&InferencePoolLabels {
                inference_pool: self.pool_name.clone(),
            })
            .set(s);
        if s >= 1.0 {
            Room::None
        } else if s >= 1.0 - self.settings.headroom {
            Room::UnderShare
        } else {
            Room::Any
        }
    }

    /// Requests of `fairness_id` in flight from this picker (for tests and the debug log);
    /// counted only with a headroom, the one thing that reads them.
    pub fn held(&self, fairness_id: &str) -> usize {
        self.held.lock().of(fairness_id)
    }

    /// A dispatched request's place among its flow's requests in flight; none without a
    /// headroom (nothing would read it, and every dispatch would take the lock).
    fn hold(&self, flow: &Arc<str>) -> Option<Held> {
        (self.settings.headroom > 0.0).then(|| self.held.hold(flow))
    }

    /// Dispatches the request now or once the pool has room, in queue order.
    pub async fn admit(self: &Arc<Self>, req: FlowRequest) -> Result<Admitted, FlowDrop> {
        let arrived = Instant::now();
        let flow: Arc<str> = Arc::from(req.fairness_id.as_str());
        let prompt_tokens = req.pick.prompt_tokens();
        let estimate = self.cost(
            prompt_tokens,
            req.pick
                .expected_output_tokens
                .unwrap_or(self.settings.default_output_tokens),
        );
        let charge = Charge {
            controller: Arc::downgrade(self),
            priority: req.priority,
            flow: flow.clone(),
            prompt_tokens,
            estimate,
            _held: None,
        };
        let labels = QueueLabels {
            fairness_id: self.metrics.fairness_label(&req.fairness_id),
            priority: req.priority.to_string(),
            inference_pool: self.pool_name.clone(),
        };
        let bytes = req.bytes;
        let priority = req.priority;
        let ttl = req
            .ttl
            .map_or(self.settings.ttl.get(), |t| t.min(self.settings.ttl.get()));
        let (id, rx) = match self.enter(req, &flow, estimate, (arrived, ttl), &labels)? {
            Entered::Dispatched(picked, held) => {
                return Ok(Admitted {
                    picked: *picked,
                    queued: None,
                    charge: Charge {
                        _held: held,
                        ..charge
                    },
                })
            }
            Entered::Queued(id, rx) => (id, rx),
        };
        self.ensure_dispatcher();
        self.wake.notify_one();
        let waiting = Waiting {
            controller: self,
            priority,
            flow,
            id,
            arrived,
            ttl,
            labels,
            bytes,
            gone: true,
        };
        waiting.wait(rx, charge).await
    }

    /// Picks at once when nothing waits and the pool has room, else queues the request
    /// (`arrived` at the given instant, to wait at most `ttl`).
    fn enter(
        self: &Arc<Self>,
        req: FlowRequest,
        flow: &Arc<str>,
        estimate: f64,
        (arrived, ttl): (Instant, Duration),
        labels: &QueueLabels,
    ) -> Result<Entered, FlowDrop> {
        let mut q = self.queues();
        // Saturation is read only when nothing waits (else the request queues anyway).
        let room = q.is_empty()
            && match self.room() {
                Room::Any => true,
                Room::UnderShare => self.held.lock().under_share(flow),
                Room::None => false,
            };
        if room {
            match self.pool.pick(&req.pick.request(Duration::ZERO)) {
                // No endpoint can meet its objectives yet: it waits like the others.
                Err(PickRejection::SloNotYet { .. }) => {}
                picked => {
                    q.charge(req.priority, flow, estimate);
                    drop(q);
                    self.count(labels, outcome_of(&picked), Duration::ZERO);
                    let picked = picked.map_err(FlowDrop::Pick)?;
                    let held = self.hold(flow);
                    return Ok(Entered::Dispatched(Box::new(picked), held));
                }
            }
        }
        let (tx, rx) = oneshot::channel();
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let bytes = req.bytes;
        let entry = Entry {
            id,
            flow: flow.clone(),
            bytes,
            cost: estimate,
            arrived,
            deadline: arrived + req.ttft_slo.unwrap_or(ttl),
            payload: Waiter {
                pick: req.pick,
                reply: tx,
                labels: labels.clone(),
            },
        };
        if let Err(full) = q.push(req.priority, entry) {
            drop(q);
            self.count(labels, "RejectedCapacity", Duration::ZERO);
            return Err(FlowDrop::QueueFull(full));
        }
        drop(q);
        self.gauge(labels, bytes, 1);
        Ok(Entered::Queued(id, rx))
    }

    fn count(&self, labels: &QueueLabels, outcome: &'static str, waited: Duration) {
        self.metrics
            .requests
            .get_or_create(&OutcomeLabels {
                outcome,
                priority: labels.priority.clone(),
                inference_pool: labels.inference_pool.clone(),
            })
            .inc();
        self.metrics
            .queue_duration
            .get_or_create(&QueueDurationLabels {
                fairness_id: labels.fairness_id.clone(),
                priority: labels.priority.clone(),
                outcome,
                inference_pool: labels.inference_pool.clone(),
            })
            .observe(waited.as_secs_f64());
    }

    /// Adds (`sign` 1) or removes (−1) one queued request from the queue gauges.
    fn gauge(&self, labels: &QueueLabels, bytes: u64, sign: i64) {
        self.metrics.queue_size.get_or_create(labels).inc_by(sign);
        self.metrics
            .queue_bytes
            .get_or_create(labels)
            .inc_by(sign * bytes as i64);
    }

    /// Starts the dispatcher task once (a no-op outside a runtime).
    fn ensure_dispatcher(self: &Arc<Self>) {
        let mut d = self.dispatcher.lock().unwrap_or_else(|e| e.into_inner());
        if d.as_ref().is_some_and(|t| !t.is_finished()) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let weak = Arc::downgrade(self);
        let wake = self.wake.clone();
        *d = Some(runtime.spawn(dispatch_loop(weak, wake)));
    }

    /// Dispatches queued requests while the pool is below saturation (in the headroom,
    /// only those of flows under their equal share).
    fn dispatch_ready(&self) {
        loop {
            let mut q = self.queues();
            if q.is_empty() {
                return;
            }
            // With no endpoint every request goes out, to be answered so.
            let room = if self.pool.endpoints().is_empty() {
                Room::Any
            } else {
                self.room()
            };
            let popped = match room {
                Room::None => None,
                Room::Any if self.settings.headroom == 0.0 => q.pop(),
                // With a headroom, flows under their share go first everywhere.
                room => {
                    let held = self.held.lock();
                    match q.pop_if(|flow| held.under_share(flow)) {
                        None if room == Room::Any => q.pop(),
                        popped => popped,
                    }
                }
            };
            let Some((priority, entry)) = popped else {
                return;
            };
            if entry.payload.reply.is_closed() {
                drop(q);
                self.gauge(&entry.payload.labels, entry.bytes, -1);
                let waited = entry.arrived.elapsed();
                self.count(&entry.payload.labels, "EvictedContextCancelled", waited);
                continue;
            }
            let picked = self
                .pool
                .pick(&entry.payload.pick.request(entry.arrived.elapsed()));
            if let Err(PickRejection::SloNotYet { .. }) = picked {
                // Its objectives are out of reach for now: it keeps its place, and the
                // next tick looks again.
                q.restore(priority, entry);
                return;
            }
            // Counted before the lock goes, so the next turn sees its share.
            let dispatched = picked.map(|p| (p, self.hold(&entry.flow)));
            drop(q);
            let w = entry.payload;
            self.gauge(&w.labels, entry.bytes, -1);
            self.count(&w.labels, outcome_of(&dispatched), entry.arrived.elapsed());
            // A receiver gone meanwhile drops the pick, and its in-flight shares with it.
            let _ = w.reply.send(dispatched);
        }
    }
}

/// The `requests_total` outcome of a pick.
fn outcome_of<T>(picked: &Result<T, PickRejection>) -> &'static str {
    match picked {
        Ok(_) => "Dispatched",
        Err(PickRejection::NoEndpoints) => "RejectedNoEndpoints",
        Err(_) => "RejectedOther",
    }
}

impl Drop for FlowController {
    fn drop(&mut self) {
        if let Some(t) = self.dispatcher.get_mut().ok().and_then(Option::take) {
            t.abort();
        }
    }
}

/// The dispatcher: dispatches whenever woken, and every [`TICK`] while requests wait.
async fn dispatch_loop(controller: Weak<FlowController>, wake: Arc<Notify>) {
    loop {
        let backlog = match controller.upgrade() {
            Some(c) => {
                c.dispatch_ready();
                !c.queues().is_empty()
            }
            None => return,
        };
        let idle = if backlog {
            TICK
        } else {
            Duration::from_secs(1)
        };
        tokio::select! {
            _ = wake.notified() => {}
            _ = tokio::time::sleep(idle) => {}
        }
    }
}

/// A queued request's place: taken out of the queue when the request goes away.
struct Waiting<'a> {
    controller: &'a FlowController,
    priority: i32,
    flow: Arc<str>,
    id: u64,
    arrived: Instant,
    /// The longest it may wait.
    ttl: Duration,
    labels: QueueLabels,
    bytes: u64,
    /// Still counted as given up (the future was dropped) unless cleared.
    gone: bool,
}

impl Waiting<'_> {
    async fn wait(mut self, rx: Reply, charge: Charge) -> Result<Admitted, FlowDrop> {
        let ttl = self.ttl;
        let result = tokio::time::timeout_at((self.arrived + ttl).into(), rx).await;
        self.gone = false;
        match result {
            Ok(Ok(Ok((picked, held)))) => Ok(Admitted {
                picked,
                queued: Some(self.arrived.elapsed()),
                charge: Charge {
                    _held: held,
                    ..charge
                },
            }),
            Ok(Ok(Err(rejection))) => Err(FlowDrop::Pick(rejection)),
            Ok(Err(_)) => Err(FlowDrop::ShuttingDown),
            Err(_) => {
                self.leave("EvictedTTL");
                Err(FlowDrop::TtlExpired(ttl))
            }
        }
    }

    /// Takes the request out of its queue if it is still there, counted as `outcome`.
    fn leave(&self, outcome: &'static str) {
        let c = self.controller;
        let removed = c.queues().remove(self.priority, &self.flow, self.id);
        if removed.is_some() {
            c.gauge(&self.labels, self.bytes, -1);
            c.count(&self.labels, outcome, self.arrived.elapsed());
        }
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        if self.gone {
            self.leave("EvictedContextCancelled");
        }
    }
}

#[cfg(test)]
mod tests;
