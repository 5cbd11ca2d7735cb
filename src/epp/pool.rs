//! The pool of endpoints of one picker: its members (replaced at run time by
//! [`Pool::set_endpoints`] without blocking a pick: an `ArcSwap` of the list), the state
//! each member carries across changes (metrics, prefix LRU, in-flight load), the scraper,
//! and [`Pool::pick`], the decision for one request.
//!
//! The scraper starts on first use inside the Tokio runtime (`tollgate validate` builds
//! pipelines without one); each endpoint's task stops when it leaves the pool or the pool
//! is dropped (a reload that replaced the route's policy).

mod endpoint;
mod kv;
mod scrape;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::ops::Deref;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;

use super::kv_events::KvEvents;
use super::load::{Directory, Dispatch, InFlight, Load, CHARS_PER_TOKEN};
use super::metrics::{EndpointMetrics, Mapping, Scrape};
use super::prefix::{block_hashes, TOKENS_PER_BLOCK};
use super::scheduling::saturation::Detector;
use super::scheduling::slo::{self, Slo, SloVerdict};
use super::scheduling::{latency, session, Candidate, Profile, RequestView, Rng};
use crate::config::{ConfigError, EndpointPickerPolicy};

pub use endpoint::Endpoint;
pub use scrape::ScrapeError;
use scrape::Scraper;

/// What a pool is made of.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PoolSpec {
    /// The initial members (empty when a discovery source fills them in).
    pub endpoints: Vec<SocketAddr>,
    /// HTTP path of the Prometheus metrics.
    pub metrics_path: String,
    pub interval: Duration,
    /// Metrics older than this are stale.
    pub stale_after: Duration,
}

/// How a pool decides: the scheduling profile, the saturation detector and the metric
/// names the scraper reads.
#[derive(Debug)]
pub struct PickPolicy {
    pub profile: Profile,
    pub saturation: Detector,
    pub mapping: Arc<Mapping>,
    /// The exact prefix index from KV events (`prefixCache.mode: kvEvents`).
    pub prefix_cache: Option<Arc<KvEvents>>,
}

impl Default for PickPolicy {
    /// The reference: the `default` profile, thresholds 5 and 0.8, vLLM's and SGLang's
    /// metric names.
    fn default() -> Self {
        PickPolicy {
            profile: Profile::from_config(&Default::default()),
            saturation: Detector::default(),
            mapping: Arc::new(Mapping::shared_default().clone()),
            prefix_cache: None,
        }
    }
}

impl PickPolicy {
    /// The policy of an `endpointPicker` config at `path`; errors name the field.
    pub fn from_config(policy: &EndpointPickerPolicy, path: &str) -> Result<Self, ConfigError> {
        policy.scheduling.validate(&format!("{path}.scheduling"))?;
        policy.saturation.validate(&format!("{path}.saturation"))?;
        policy
            .metrics
            .mapping
            .validate(&format!("{path}.metrics.mapping"))?;
        policy
            .prefix_cache
            .validate(&format!("{path}.prefixCache"))?;
        Ok(PickPolicy {
            profile: Profile::from_config(&policy.scheduling),
            saturation: Detector::from_config(&policy.saturation),
            mapping: Arc::new(Mapping::new(&policy.metrics.mapping)),
            prefix_cache: KvEvents::from_config(&policy.prefix_cache),
        })
    }
}

/// The members at one moment.
#[derive(Debug, Default)]
pub struct Members {
    list: Vec<Arc<Endpoint>>,
    by_addr: HashMap<SocketAddr, usize>,
}

impl Members {
    fn new(list: Vec<Arc<Endpoint>>) -> Self {
        let by_addr = list.iter().enumerate().map(|(i, e)| (e.addr, i)).collect();
        Members { list, by_addr }
    }

    /// Index of the endpoint at `addr`.
    pub fn position(&self, addr: &SocketAddr) -> Option<usize> {
        self.by_addr.get(addr).copied()
    }
}

impl Deref for Members {
    type Target = [Arc<Endpoint>];
    fn deref(&self) -> &Self::Target {
        &self.list
    }
}

/// The shared handle on the current members (in-flight guards look endpoints up in it).
#[derive(Debug, Default)]
struct Membership {
    current: ArcSwap<Members>,
}

impl Directory for Membership {
    fn load_of(&self, addr: &SocketAddr) -> Option<Arc<Load>> {
        let m = self.current.load();
        m.position(addr).map(|i| m.list[i].load().clone())
    }
}

/// What a membership change did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MembershipChange {
    pub added: usize,
    pub removed: usize,
    pub kept: usize,
}

/// The prompt of a request to pick for.
#[derive(Clone, Copy, Debug)]
pub enum Prompt<'a> {
    /// The text; hashed here.
    Text(&'a [u8]),
    /// Its block hashes, already computed with [`block_hashes`].
    Hashes(&'a [u64]),
}

/// One request to pick an endpoint for.
#[derive(Clone, Copy, Debug)]
pub struct PickRequest<'a> {
    /// The model (or LoRA adapter) name; empty for a request without a body.
    pub model: &'a str,
    pub prompt: Prompt<'a>,
    /// Estimated prompt tokens; default the prompt's characters / 4.
    pub prompt_tokens: Option<u64>,
    /// The request's max tokens, when it gives them.
    pub expected_output_tokens: Option<u64>,
    /// Negative is sheddable: refused while the pool is saturated.
    pub priority: i64,
    /// The gateway's subset hint: pick only among these.
    pub subset: Option<&'a [SocketAddr]>,
    /// Latency objectives the pick must be predicted to meet (see `scheduling::slo`).
    pub slo: Option<Slo>,
    /// Whether a request no endpoint can serve within its objectives yet may wait
    /// ([`PickRejection::SloNotYet`]) rather than go best effort.
    pub may_wait: bool,
    /// The endpoint of the request's session (session affinity), if it has one.
    pub session: Option<SocketAddr>,
    /// The prompt's exact block keys (`kv_events`), when it was tokenized.
    pub block_keys: Option<&'a [u64]>,
}

impl<'a> PickRequest<'a> {
    /// A request for `model` with `prompt` text, priority 0, no subset.
    pub fn new(model: &'a str, prompt: &'a [u8]) -> Self {
        PickRequest {
            model,
            prompt: Prompt::Text(prompt),
            prompt_tokens: None,
            expected_output_tokens: None,
            priority: 0,
            subset: None,
            slo: None,
            may_wait: false,
            session: None,
            block_keys: None,
        }
    }
}

/// Why no endpoint was picked.
#[derive(Clone, Copy, Debug, PartialEq, thiserror::Error)]
pub enum PickRejection {
    #[error("no endpoint to pick")]
    NoEndpoints,
    #[error("the pool is saturated ({saturation:.2}) and the request is sheddable")]
    Saturated { saturation: f64 },
    #[error("no endpoint is predicted to meet the request's latency objectives (best time to first token {:.0} ms) and the request is sheddable", best_ttft * 1e3)]
    SloUnattainable { best_ttft: f64 },
    #[error("no endpoint is predicted to meet the request's latency objectives yet (best time to first token {:.0} ms)", best_ttft * 1e3)]
    SloNotYet { best_ttft: f64 },
}

/// One candidate's result, for the debug log.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Score {
    /// Index in [`Picked::members`].
    pub slot: usize,
    pub total: f64,
    /// Predicted seconds to the first token, when the profile predicts it.
    pub ttft: Option<f64>,
    pub stale: bool,
}

/// The decision for one request.
#[derive(Debug)]
pub struct Picked {
    /// `ip:port` of the endpoints, ranked; the first is the pick.
    pub endpoints: Vec<String>,
    /// Every candidate that passed the filters.
    pub scores: Vec<Score>,
    /// Blocks the prompt was cut into.
    pub blocks: usize,
    /// Leading blocks the pick already held.
    pub prefix_matched: usize,
    /// The prompt's block hashes (to record where the request was really served).
    pub hashes: Vec<u64>,
    /// The pick's predicted seconds to the first token.
    pub predicted_ttft: f64,
    /// The request's share of the picked endpoint's load; keep it until the response ends.
    pub in_flight: InFlight,
    members: Arc<Members>,
}

impl Picked {
    /// The pick.
    pub fn endpoint(&self) -> &str {
        &self.endpoints[0]
    }

    /// The value of `x-gateway-destination-endpoint`: the pick, then the fallbacks.
    pub fn destination(&self) -> String {
        self.endpoints.join(",")
    }

    /// The members the scores' slots index.
    pub fn members(&self) -> &Members {
        &self.members
    }

    /// `name=score[ ttft=…ms][(stale)]` for each scored candidate.
    pub fn scores_line(&self) -> String {
        let mut out = String::new();
        for s in &self.scores {
            if !out.is_empty() {
                out.push(' ');
            }
            out.push_str(&self.members.list[s.slot].name);
            out.push_str(&format!("={:.3}", s.total));
            if let Some(t) = s.ttft {
                out.push_str(&format!(" ttft={:.1}ms", t * 1e3));
            }
            if s.stale {
                out.push_str("(stale)");
            }
        }
        out
    }
}

/// The endpoints of one picker.
#[derive(Debug)]
pub struct Pool {
    spec: PoolSpec,
    policy: PickPolicy,
    membership: Arc<Membership>,
    /// The scraper once started; its lock also serialises membership changes.
    scraper: Mutex<Option<Scraper>>,
}

impl Pool {
    /// A pool with the reference policy.
    pub fn new(spec: PoolSpec) -> Arc<Pool> {
        Pool::with_policy(spec, PickPolicy::default())
    }

    pub fn with_policy(spec: PoolSpec, policy: PickPolicy) -> Arc<Pool> {
        let mut seen = std::collections::HashSet::new();
        let list = spec
            .endpoints
            .iter()
            .filter(|a| seen.insert(**a))
            .map(|a| Arc::new(Endpoint::new(*a)))
            .collect();
        Arc::new(Pool {
            spec,
            policy,
            membership: Arc::new(Membership {
                current: ArcSwap::from_pointee(Members::new(list)),
            }),
            scraper: Mutex::new(None),
        })
    }

    /// The pool an `endpointPicker` config at `path` describes; errors name the field.
    pub fn from_policy(
        policy: &EndpointPickerPolicy,
        path: &str,
    ) -> Result<Arc<Pool>, ConfigError> {
        let endpoints = super::discovery::addresses(policy, path)?;
        let pick = PickPolicy::from_config(policy, path)?;
        Ok(Pool::with_policy(
            PoolSpec {
                endpoints,
                metrics_path: policy.metrics.path.clone(),
                interval: policy.metrics.interval.get(),
                stale_after: policy.metrics.stale_after.get(),
            },
            pick,
        ))
    }

    pub fn spec(&self) -> &PoolSpec {
        &self.spec
    }

    pub fn policy(&self) -> &PickPolicy {
        &self.policy
    }

    /// The current members.
    pub fn endpoints(&self) -> Arc<Members> {
        self.membership.current.load_full()
    }

    /// Index of the endpoint at `addr` among the current members.
    pub fn position(&self, addr: &SocketAddr) -> Option<usize> {
        self.membership.current.load().position(addr)
    }

    /// The member at `addr`.
    pub fn endpoint(&self, addr: &SocketAddr) -> Option<Arc<Endpoint>> {
        let m = self.membership.current.load();
        m.position(addr).map(|i| m.list[i].clone())
    }

    /// Records a scrape of current member `index`: what it said, or why there is nothing.
    pub fn set_metrics<S: Into<Scrape>>(
        &self,
        index: usize,
        result: Result<S, ScrapeError>,
        now: Instant,
    ) {
        if let Some(e) = self.membership.current.load().list.get(index) {
            e.record_scrape(result.map(Into::into), now);
        }
    }

    /// The last metrics of current member `index`, and whether they are stale at `now`.
    pub fn metrics(&self, index: usize, now: Instant) -> (Option<EndpointMetrics>, bool) {
        let m = self.membership.current.load();
        m.list
            .get(index)
            .map_or((None, true), |e| e.metrics(self.spec.stale_after, now))
    }

    /// The last scrape error of current member `index`.
    pub fn last_error(&self, index: usize) -> Option<ScrapeError> {
        let m = self.membership.current.load();
        m.list.get(index).and_then(|e| e.last_error())
    }

    /// Replaces the members. Endpoints that stay keep their metrics, prefix LRU and load;
    /// new ones are scraped (once the scraper runs); removed ones stop being scraped.
    /// Picks in progress finish on the list they started with.
    pub fn set_endpoints(&self, addrs: Vec<SocketAddr>) -> MembershipChange {
        let scraper = self.scraper.lock().unwrap_or_else(|e| e.into_inner());
        let old = self.membership.current.load_full();
        let mut list: Vec<Arc<Endpoint>> = Vec::with_capacity(addrs.len());
        let mut seen = std::collections::HashSet::with_capacity(addrs.len());
        let mut added = Vec::new();
        for addr in addrs {
            if !seen.insert(addr) {
                continue;
            }
            match old.position(&addr) {
                Some(i) => list.push(old.list[i].clone()),
                None => {
                    let e = Arc::new(Endpoint::new(addr));
                    added.push(e.clone());
                    list.push(e);
                }
            }
        }
        let mut removed = 0;
        for e in old.list.iter().filter(|e| !seen.contains(&e.addr)) {
            e.retire();
            removed += 1;
        }
        let change = MembershipChange {
            added: added.len(),
            removed,
            kept: list.len() - added.len(),
        };
        self.membership.current.store(Arc::new(Members::new(list)));
        if let Some(s) = scraper.as_ref() {
            for e in &added {
                s.spawn(e);
            }
            self.sync_kv_events();
        }
        change
    }

    /// Records a prompt of `hashes` in the prefix index of the member at `addr` (the
    /// gateway served the request there, not where it was picked); `false` when `addr`
    /// is not a member.
    pub fn record_served(&self, addr: &SocketAddr, hashes: &[u64]) -> bool {
        match self.endpoint(addr) {
            Some(e) => {
                e.record_prefix(hashes);
                true
            }
            None => false,
        }
    }

    /// Starts scraping every member, once; a no-op outside a Tokio runtime.
    pub fn start_scraper(&self) {
        let mut guard = self.scraper.lock().unwrap_or_else(|e| e.into_inner());
        if guard.is_some() {
            return;
        }
        let Some(s) = Scraper::in_current_runtime(
            self.policy.mapping.clone(),
            &self.spec.metrics_path,
            self.spec.interval,
        ) else {
            return;
        };
        for e in self.membership.current.load().iter() {
            s.spawn(e);
        }
        *guard = Some(s);
        self.sync_kv_events();
    }

    /// The saturation of all current members at `now` (see `scheduling::saturation`).
    pub fn saturation(&self, now: Instant) -> f64 {
        let m = self.membership.current.load();
        let c: Vec<Candidate> = m
            .list
            .iter()
            .enumerate()
            .map(|(i, e)| e.candidate(i, &[], "", self.spec.stale_after, now))
            .collect();
        self.policy.saturation.saturation(&c)
    }

    /// Picks the endpoints of one request, records its prompt in the pick's prefix LRU
    /// and starts its in-flight share there.
    pub fn pick(&self, req: &PickRequest<'_>) -> Result<Picked, PickRejection> {
        let now = Instant::now();
        let members = self.membership.current.load_full();
        let owned: Vec<u64> = match req.prompt {
            Prompt::Text(text) => block_hashes(req.model, text),
            Prompt::Hashes(h) => h.to_vec(),
        };
        let hashes: &[u64] = &owned;
        let prompt_tokens = req.prompt_tokens.unwrap_or(match req.prompt {
            Prompt::Text(text) => text.len() as u64 / CHARS_PER_TOKEN,
            Prompt::Hashes(h) => h.len() as u64 * TOKENS_PER_BLOCK,
        });
        let mut cands = self.candidates(&members, req, hashes, now)?;
        let view = RequestView {
            total_blocks: hashes.len(),
            prompt_tokens: prompt_tokens as f64,
        };
        let predicts = self.predict(&mut cands, &view, req)?;
        let decision = Rng::with_thread(|rng| self.policy.profile.run(&mut cands, &view, rng));
        let Some(&first) = decision.order.first() else {
            return Err(PickRejection::NoEndpoints);
        };
        let chosen = &cands[first];
        let endpoint = &members.list[chosen.slot];
        endpoint.record_prefix(hashes);
        let guess = match (&self.policy.prefix_cache, req.block_keys) {
            (Some(kv), Some(keys)) => kv.speculate(&endpoint.addr, keys, now),
            _ => None,
        };
        let estimate = latency::estimate(chosen, &view);
        let mut in_flight = InFlight::start(
            self.membership.clone(),
            endpoint.addr,
            endpoint.load().clone(),
            now,
            Dispatch {
                prompt_tokens,
                uncached_tokens: estimate.own_tokens as u64,
                expected_output: req.expected_output_tokens,
                prefill_ahead_tokens: estimate.ahead_tokens,
                base_ttft: estimate.base,
            },
        );
        in_flight.hold_guess(guess);
        let endpoints = decision
            .order
            .iter()
            .map(|&i| members.list[cands[i].slot].name.clone())
            .collect();
        let scores = cands
            .iter()
            .zip(&decision.totals)
            .map(|(c, &total)| Score {
                slot: c.slot,
                total,
                ttft: predicts.then_some(c.ttft),
                stale: c.stale,
            })
            .collect();
        Ok(Picked {
            endpoints,
            scores,
            blocks: hashes.len(),
            prefix_matched: chosen.prefix_matched,
            hashes: owned,
            predicted_ttft: estimate.ttft,
            in_flight,
            members,
        })
    }

    /// The candidates of `req`: the members (or the gateway's subset of them), exact
    /// prefix matches where KV events say, endpoints failing their scrapes and (with the
    /// concurrency detector) those at their bound left out while others remain, the
    /// session's endpoint marked; a sheddable request refused while the pool is
    /// saturated.
    fn candidates(
        &self,
        members: &Members,
        req: &PickRequest<'_>,
        hashes: &[u64],
        now: Instant,
    ) -> Result<Vec<Candidate>, PickRejection> {
        let stale_after = self.spec.stale_after;
        let candidate =
            |slot: usize| members.list[slot].candidate(slot, hashes, req.model, stale_after, now);
        let mut cands: Vec<Candidate> = match req.subset {
            None => (0..members.list.len()).map(candidate).collect(),
            Some(subset) => {
                let mut slots: Vec<usize> =
                    subset.iter().filter_map(|a| members.position(a)).collect();
                slots.sort_unstable();
                slots.dedup();
                slots.into_iter().map(candidate).collect()
            }
        };
        if let (Some(kv), Some(keys)) = (&self.policy.prefix_cache, req.block_keys) {
            kv.refine(
                &mut cands,
                |i| members.list[i].addr,
                keys,
                hashes.len(),
                now,
            );
        }
        if cands.is_empty() {
            return Err(PickRejection::NoEndpoints);
        }
        // An endpoint whose scrapes fail is likely down: never picked while another is
        // up (with every one failing, all stay: the metrics may be what is broken).
        if cands.iter().any(|c| !c.failing) {
            cands.retain(|c| !c.failing);
        }
        self.policy.saturation.keep_room(&mut cands);
        let session_slot = req.session.and_then(|a| members.position(&a));
        session::mark(&mut cands, session_slot, &self.policy.saturation);
        if req.priority < 0 {
            let saturation = self.policy.saturation.saturation(&cands);
            if saturation >= 1.0 {
                return Err(PickRejection::Saturated { saturation });
            }
        }
        Ok(cands)
    }

    /// Predicts each candidate's latency when the profile or the request's objectives
    /// need it (`true` then), and keeps those meeting the objectives (`scheduling::slo`).
    fn predict(
        &self,
        cands: &mut Vec<Candidate>,
        view: &RequestView,
        req: &PickRequest<'_>,
    ) -> Result<bool, PickRejection> {
        let predicts = self.policy.profile.needs_latency() || req.slo.is_some();
        let mut tpot = Vec::new();
        if predicts {
            for c in cands.iter_mut() {
                let e = latency::estimate(c, view);
                c.ttft = e.ttft;
                c.wait = e.wait;
                tpot.push(e.base);
            }
        }
        let Some(objectives) = &req.slo else {
            return Ok(predicts);
        };
        match slo::admit(cands, &tpot, objectives, req.priority < 0, req.may_wait) {
            SloVerdict::Met | SloVerdict::BestEffort => Ok(predicts),
            SloVerdict::Unattainable { best_ttft } => {
                Err(PickRejection::SloUnattainable { best_ttft })
            }
            SloVerdict::NotYet { best_ttft } => Err(PickRejection::SloNotYet { best_ttft }),
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        for e in self.membership.current.load().iter() {
            e.retire();
        }
    }
}

#[cfg(test)]
mod tests;
