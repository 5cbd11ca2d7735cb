//! How the endpoint picker decides: `endpointPicker.scheduling` (a preset profile or a
//! custom chain of filters, weighted scorers and a picker), `endpointPicker.saturation`
//! (when sheddable requests are refused) and `endpointPicker.metrics.mapping` (which
//! Prometheus families mean what).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{ConfigError, Duration, SessionAffinityConfig, SessionSpec, SessionStrategy};

/// The scheduling profile: either a preset (`{profile: latencyAware}`) or a custom chain
/// (`{filters: [...], scorers: [{type, weight}], picker}`). Nothing given means the
/// `default` preset.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SchedulingConfig {
    /// A preset: `default` (the reference: queue ×2, kvCache ×2, prefixCache ×3, max
    /// score), `latencyAware` (sticky to the longest cached prefix until its predicted
    /// time to first token is worse than the best other's by a margin, then the lowest
    /// predicted time to first token), `random`, `roundRobin`. Excludes `filters`,
    /// `scorers` and `picker`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<ProfilePreset>,
    /// Filters run in order before scoring; each keeps a subset of the candidates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filters: Option<Vec<FilterConfig>>,
    /// Scorers; each score is clamped to [0, 1] and multiplied by its weight.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scorers: Option<Vec<ScorerConfig>>,
    /// How the pick is made from the scores. Default `maxScore`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub picker: Option<PickerKind>,
    /// Endpoints returned: the first is the pick, the others are the gateway's ranked
    /// fallbacks. Default 1.
    #[serde(default = "default_max_endpoints")]
    pub max_num_of_endpoints: usize,
}

/// A preset scheduling profile.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum ProfilePreset {
    Default,
    LatencyAware,
    Random,
    RoundRobin,
}

/// A filter of a custom profile.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(tag = "type", rename_all = "camelCase", deny_unknown_fields)]
pub enum FilterConfig {
    /// Keeps the endpoints whose queue is in the lowest band (min + (max − min) / n).
    LeastQueue {},
    /// Keeps the endpoints whose KV-cache utilisation is in the lowest band.
    LeastKvCache {},
    /// Keeps the endpoints that run or queue the request's LoRA adapter or have a free
    /// adapter slot, when any do.
    LoraAffinity {},
    /// Keeps the endpoints holding the longest cached prefix of the prompt, unless their
    /// predicted time to first token exceeds the best other's × `ttftRatio` + `ttftMargin`.
    PrefixAffinity(PrefixAffinityConfig),
    /// Keeps only the endpoint of the request's session, when it is a candidate and not
    /// saturated; else every candidate (never none).
    SessionAffinity(SessionAffinityConfig),
}

/// Parameters of the `prefixAffinity` filter.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PrefixAffinityConfig {
    /// How many times slower than the best other endpoint the prefix holder may be
    /// predicted to answer before it is given up. Default 1.5.
    #[serde(default = "default_ttft_ratio")]
    pub ttft_ratio: f64,
    /// Added to the allowance. Default `50ms`.
    #[serde(default = "default_ttft_margin")]
    pub ttft_margin: Duration,
}

/// A weighted scorer of a custom profile.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ScorerConfig {
    #[serde(rename = "type")]
    pub kind: ScorerKind,
    /// Multiplies the score. Default 1; must be more than 0.
    #[serde(default = "default_weight")]
    pub weight: f64,
    /// `sessionAffinity` only: `token` (default) or `sessionId`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strategy: Option<SessionStrategy>,
    /// `sessionAffinity` only: the session header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
    /// `sessionAffinity` with `sessionId` only: an unused binding's life. Default `600s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<Duration>,
    /// `sessionAffinity` with `sessionId` only: sessions remembered. Default 100,000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_sessions: Option<usize>,
}

/// What a scorer looks at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum ScorerKind {
    /// `(maxQ − q) / (maxQ − minQ)` over the scraped queues; 1 when all are equal.
    Queue,
    /// `1 − KV-cache utilisation`.
    KvCache,
    /// Leading prompt blocks the endpoint holds / blocks of the prompt.
    PrefixCache,
    /// 1 adapter running, 0.8 free adapter slot, 0.6 adapter waiting, else 0; 1 when the
    /// endpoint reports no LoRA state.
    Lora,
    /// Fewer prompt and decode tokens in flight from this picker scores higher.
    InFlightLoad,
    /// Lowest predicted time to first token / this endpoint's.
    Latency,
    /// 1 for the endpoint of the request's session (unless saturated), else 0.
    SessionAffinity,
}

/// How the pick is made.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum PickerKind {
    /// The highest total score; ties broken at random.
    #[default]
    MaxScore,
    /// Uniformly at random.
    Random,
    /// Each endpoint in turn.
    RoundRobin,
}

/// When the pool is saturated (at 1 or more; requests with a negative priority are then
/// refused, and with `flowControl` every request waits in its queue). `utilization`: the
/// mean over the candidates of `max(queue / queueThreshold, kvCache / kvCacheThreshold)`
/// (stale metrics count as 1). `concurrency`: the mean over the candidates of
/// `max(requests / maxConcurrency, tokens / maxTokenConcurrency)` in flight from this
/// picker (no scrape lag: a dispatch counts at once).
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SaturationConfig {
    /// `utilization` (default) or `concurrency`.
    #[serde(default)]
    pub detector: DetectorKind,
    /// Queue length that counts as full. Default 5.
    #[serde(default = "default_queue_threshold")]
    pub queue_threshold: f64,
    /// KV-cache utilisation that counts as full. Default 0.8.
    #[serde(default = "default_kv_threshold")]
    pub kv_cache_threshold: f64,
    /// `concurrency`: requests in flight per endpoint that count as full. Default 100.
    #[serde(default = "default_max_concurrency")]
    pub max_concurrency: u64,
    /// `concurrency`: prompt and output tokens in flight per endpoint that count as
    /// full. Default 1,000,000.
    #[serde(default = "default_max_token_concurrency")]
    pub max_token_concurrency: u64,
}

/// How saturation is measured.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum DetectorKind {
    /// From the scraped queue lengths and KV-cache utilisation.
    #[default]
    Utilization,
    /// From this picker's requests and tokens in flight.
    Concurrency,
}

fn default_max_concurrency() -> u64 {
    100
}
fn default_max_token_concurrency() -> u64 {
    1_000_000
}

/// Prometheus family names read for each quantity; the first byte and the whole name of
/// a line are compared against these only.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct MetricsMapping {
    /// Requests queued (summed over series). Default vLLM's and SGLang's names.
    #[serde(default = "default_waiting")]
    pub waiting: Vec<String>,
    /// Requests running (summed over series).
    #[serde(default = "default_running")]
    pub running: Vec<String>,
    /// KV-cache utilisation 0..=1 (largest series wins).
    #[serde(default = "default_kv_cache")]
    pub kv_cache: Vec<String>,
    /// LoRA state: labels `max_lora`, `running_lora_adapters`, `waiting_lora_adapters`;
    /// the value is a timestamp and the newest series wins.
    #[serde(default = "default_lora_info")]
    pub lora_info: Vec<String>,
    /// Cache geometry: labels `block_size`, `num_gpu_blocks`.
    #[serde(default = "default_cache_config")]
    pub cache_config: Vec<String>,
}

fn default_max_endpoints() -> usize {
    1
}
fn default_ttft_ratio() -> f64 {
    1.5
}
fn default_ttft_margin() -> Duration {
    Duration::from_millis(50)
}
fn default_weight() -> f64 {
    1.0
}
fn default_queue_threshold() -> f64 {
    5.0
}
fn default_kv_threshold() -> f64 {
    0.8
}
fn names(n: &[&str]) -> Vec<String> {
    n.iter().map(|s| s.to_string()).collect()
}
fn default_waiting() -> Vec<String> {
    names(&["vllm:num_requests_waiting", "sglang:num_queue_reqs"])
}
fn default_running() -> Vec<String> {
    names(&["vllm:num_requests_running", "sglang:num_running_reqs"])
}
fn default_kv_cache() -> Vec<String> {
    names(&[
        "vllm:kv_cache_usage_perc",
        "vllm:gpu_cache_usage_perc",
        "sglang:token_usage",
    ])
}
fn default_lora_info() -> Vec<String> {
    names(&["vllm:lora_requests_info"])
}
fn default_cache_config() -> Vec<String> {
    names(&["vllm:cache_config_info"])
}

impl Default for SchedulingConfig {
    fn default() -> Self {
        SchedulingConfig {
            profile: None,
            filters: None,
            scorers: None,
            picker: None,
            max_num_of_endpoints: default_max_endpoints(),
        }
    }
}

impl Default for PrefixAffinityConfig {
    fn default() -> Self {
        PrefixAffinityConfig {
            ttft_ratio: default_ttft_ratio(),
            ttft_margin: default_ttft_margin(),
        }
    }
}

impl Default for SaturationConfig {
    fn default() -> Self {
        SaturationConfig {
            detector: DetectorKind::default(),
            queue_threshold: default_queue_threshold(),
            kv_cache_threshold: default_kv_threshold(),
            max_concurrency: default_max_concurrency(),
            max_token_concurrency: default_max_token_concurrency(),
        }
    }
}

impl Default for MetricsMapping {
    fn default() -> Self {
        MetricsMapping {
            waiting: default_waiting(),
            running: default_running(),
            kv_cache: default_kv_cache(),
            lora_info: default_lora_info(),
            cache_config: default_cache_config(),
        }
    }
}

fn positive(at: String, v: f64) -> Result<(), ConfigError> {
    if v.is_finite() && v > 0.0 {
        Ok(())
    } else {
        Err(ConfigError::field(
            at,
            format!("{v} must be a number more than 0"),
        ))
    }
}

impl SchedulingConfig {
    /// Whether this is a custom chain rather than a preset.
    pub fn is_custom(&self) -> bool {
        self.filters.is_some() || self.scorers.is_some() || self.picker.is_some()
    }

    /// Checks the profile; `at` is the path of this node (`….endpointPicker.scheduling`).
    pub fn validate(&self, at: &str) -> Result<(), ConfigError> {
        if self.profile.is_some() && self.is_custom() {
            return Err(ConfigError::field(
                format!("{at}.profile"),
                "a preset profile cannot be combined with filters, scorers or picker",
            ));
        }
        if self.max_num_of_endpoints == 0 {
            return Err(ConfigError::field(
                format!("{at}.maxNumOfEndpoints"),
                "must be at least 1",
            ));
        }
        for (i, f) in self.filters.iter().flatten().enumerate() {
            if let FilterConfig::PrefixAffinity(p) = f {
                if !(p.ttft_ratio.is_finite() && p.ttft_ratio >= 1.0) {
                    return Err(ConfigError::field(
                        format!("{at}.filters[{i}].ttftRatio"),
                        format!("{} must be a number of at least 1", p.ttft_ratio),
                    ));
                }
            }
        }
        let scorers = self.scorers.as_deref().unwrap_or_default();
        self.validate_sessions(at)?;
        for (i, s) in scorers.iter().enumerate() {
            positive(format!("{at}.scorers[{i}].weight"), s.weight)?;
            if scorers[..i].iter().any(|o| o.kind == s.kind) {
                return Err(ConfigError::field(
                    format!("{at}.scorers[{i}].type"),
                    "listed twice",
                ));
            }
        }
        if self.is_custom()
            && self.picker.unwrap_or_default() == PickerKind::MaxScore
            && scorers.is_empty()
        {
            return Err(ConfigError::field(
                format!("{at}.scorers"),
                "the maxScore picker needs at least one scorer",
            ));
        }
        Ok(())
    }
}

/// The TTL of an unused session binding of the `sessionAffinity` filter (reference).
const FILTER_SESSION_TTL: std::time::Duration = std::time::Duration::from_secs(300);
/// The same for the scorer (reference).
const SCORER_SESSION_TTL: std::time::Duration = std::time::Duration::from_secs(600);

impl ScorerConfig {
    /// The session parameters of a `sessionAffinity` scorer.
    pub fn session(&self) -> SessionAffinityConfig {
        SessionAffinityConfig {
            strategy: self.strategy.unwrap_or_default(),
            header: self.header.clone(),
            ttl: self.ttl,
            max_sessions: self.max_sessions,
        }
    }
}

impl SchedulingConfig {
    /// The profile's session affinity (its `sessionAffinity` filter or scorer), with
    /// defaults filled in.
    pub fn session_affinity(&self) -> Option<SessionSpec> {
        let filter = self.filters.iter().flatten().find_map(|f| match f {
            FilterConfig::SessionAffinity(c) => Some(c.spec(FILTER_SESSION_TTL)),
            _ => None,
        });
        filter.or_else(|| {
            self.scorers
                .iter()
                .flatten()
                .find(|s| s.kind == ScorerKind::SessionAffinity)
                .map(|s| s.session().spec(SCORER_SESSION_TTL))
        })
    }

    /// At most one `sessionAffinity` (filter or scorer), valid; session parameters only
    /// on a `sessionAffinity` scorer.
    fn validate_sessions(&self, at: &str) -> Result<(), ConfigError> {
        let mut seen: Option<String> = None;
        let mut once = |here: String| match &seen {
            Some(first) => Err(ConfigError::field(
                here,
                format!("a profile has one session affinity, already at {first}"),
            )),
            None => {
                seen = Some(here);
                Ok(())
            }
        };
        for (i, f) in self.filters.iter().flatten().enumerate() {
            if let FilterConfig::SessionAffinity(c) = f {
                c.validate(&format!("{at}.filters[{i}]"))?;
                once(format!("{at}.filters[{i}].type"))?;
            }
        }
        for (i, s) in self.scorers.iter().flatten().enumerate() {
            let here = format!("{at}.scorers[{i}]");
            if s.kind == ScorerKind::SessionAffinity {
                s.session().validate(&here)?;
                once(format!("{here}.type"))?;
                continue;
            }
            let given = [
                ("strategy", s.strategy.is_some()),
                ("header", s.header.is_some()),
                ("ttl", s.ttl.is_some()),
                ("maxSessions", s.max_sessions.is_some()),
            ];
            if let Some((field, _)) = given.iter().find(|(_, set)| *set) {
                return Err(ConfigError::field(
                    format!("{here}.{field}"),
                    "only the sessionAffinity scorer takes session parameters",
                ));
            }
        }
        Ok(())
    }
}

impl SaturationConfig {
    /// Checks the thresholds; `at` is the path of this node.
    pub fn validate(&self, at: &str) -> Result<(), ConfigError> {
        positive(format!("{at}.queueThreshold"), self.queue_threshold)?;
        positive(format!("{at}.kvCacheThreshold"), self.kv_cache_threshold)?;
        positive(format!("{at}.maxConcurrency"), self.max_concurrency as f64)?;
        positive(
            format!("{at}.maxTokenConcurrency"),
            self.max_token_concurrency as f64,
        )
    }
}

impl MetricsMapping {
    /// The lists with their field names, in a fixed order.
    pub fn lists(&self) -> [(&'static str, &[String]); 5] {
        [
            ("waiting", &self.waiting),
            ("running", &self.running),
            ("kvCache", &self.kv_cache),
            ("loraInfo", &self.lora_info),
            ("cacheConfig", &self.cache_config),
        ]
    }

    /// Checks every name is a Prometheus metric name listed once; `at` is the path of
    /// this node (`….metrics.mapping`).
    pub fn validate(&self, at: &str) -> Result<(), ConfigError> {
        let mut seen: Vec<&str> = Vec::new();
        for (field, list) in self.lists() {
            for (i, name) in list.iter().enumerate() {
                let here = format!("{at}.{field}[{i}]");
                let valid = name
                    .bytes()
                    .next()
                    .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_' || b == b':')
                    && name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':');
                if !valid {
                    return Err(ConfigError::field(
                        here,
                        format!("{name:?} is not a Prometheus metric name"),
                    ));
                }
                if seen.contains(&name.as_str()) {
                    return Err(ConfigError::field(here, format!("{name} is mapped twice")));
                }
                seen.push(name);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sched(yaml: &str) -> SchedulingConfig {
        serde_yaml::from_str(yaml).unwrap()
    }

    #[test]
    fn presets_and_custom_chains_parse() {
        let s = sched("profile: latencyAware");
        assert_eq!(s.profile, Some(ProfilePreset::LatencyAware));
        assert_eq!(s.max_num_of_endpoints, 1);
        assert!(!s.is_custom());
        s.validate("x").unwrap();

        let s = sched(
            "{filters: [{type: loraAffinity}, {type: prefixAffinity, ttftRatio: 2, ttftMargin: 10ms}],
              scorers: [{type: queue, weight: 2}, {type: latency}], picker: maxScore, maxNumOfEndpoints: 3}",
        );
        assert!(s.is_custom());
        assert_eq!(
            s.filters.as_ref().unwrap()[1],
            FilterConfig::PrefixAffinity(PrefixAffinityConfig {
                ttft_ratio: 2.0,
                ttft_margin: Duration::from_millis(10)
            })
        );
        assert_eq!(s.scorers.as_ref().unwrap()[1].weight, 1.0);
        assert_eq!(s.max_num_of_endpoints, 3);
        s.validate("x").unwrap();

        let f: Vec<FilterConfig> = serde_yaml::from_str("[{type: prefixAffinity}]").unwrap();
        assert_eq!(
            f[0],
            FilterConfig::PrefixAffinity(PrefixAffinityConfig::default())
        );
    }

    #[test]
    fn unknown_fields_and_types_are_refused() {
        for yaml in [
            "{profile: fastest}",
            "{scorers: [{type: queue, wieght: 2}]}",
            "{filters: [{type: prefixAffinity, ratio: 2}]}",
            "{filters: [{type: nearest}]}",
            "{filters: [{type: leastQueue, ttftRatio: 2}]}",
            "{picker: best}",
            "{maxEndpoints: 2}",
        ] {
            assert!(
                serde_yaml::from_str::<SchedulingConfig>(yaml).is_err(),
                "{yaml}"
            );
        }
    }

    #[test]
    fn errors_name_the_field() {
        for (yaml, field) in [
            ("{profile: random, picker: random}", "s.profile"),
            ("{maxNumOfEndpoints: 0}", "s.maxNumOfEndpoints"),
            (
                "{scorers: [{type: queue}, {type: kvCache, weight: 0}]}",
                "s.scorers[1].weight",
            ),
            (
                "{scorers: [{type: queue, weight: -1}]}",
                "s.scorers[0].weight",
            ),
            (
                "{scorers: [{type: queue}, {type: queue}]}",
                "s.scorers[1].type",
            ),
            ("{filters: [{type: loraAffinity}]}", "s.scorers"),
            (
                "{filters: [{type: leastQueue}, {type: prefixAffinity, ttftRatio: 0.5}], scorers: [{type: latency}]}",
                "s.filters[1].ttftRatio",
            ),
        ] {
            let e = sched(yaml).validate("s").unwrap_err().to_string();
            assert!(e.contains(&format!("{field}:")), "{yaml}: {e}");
        }
        // A random picker needs no scorer.
        sched("{picker: random}").validate("s").unwrap();
    }

    #[test]
    fn session_affinity_parses_and_errors_name_the_field() {
        let s = sched(
            "{filters: [{type: sessionAffinity, strategy: sessionId}], scorers: [{type: queue}]}",
        );
        s.validate("s").unwrap();
        let spec = s.session_affinity().unwrap();
        assert_eq!(spec.header, "x-session-id");
        assert_eq!(
            spec.ttl,
            std::time::Duration::from_secs(300),
            "the filter's TTL"
        );
        let s = sched("{scorers: [{type: sessionAffinity, weight: 5, strategy: sessionId}]}");
        s.validate("s").unwrap();
        assert_eq!(
            s.session_affinity().unwrap().ttl,
            std::time::Duration::from_secs(600),
            "the scorer's TTL"
        );
        let s = sched("{scorers: [{type: sessionAffinity}]}");
        assert_eq!(s.session_affinity().unwrap().header, "x-session-token");
        assert_eq!(sched("{profile: default}").session_affinity(), None);
        for (yaml, field) in [
            (
                "{filters: [{type: sessionAffinity}], scorers: [{type: sessionAffinity}]}",
                "s.scorers[0].type",
            ),
            (
                "{scorers: [{type: queue, header: x-session-token}]}",
                "s.scorers[0].header",
            ),
            (
                "{scorers: [{type: kvCache}, {type: sessionAffinity, ttl: 1s}]}",
                "s.scorers[1].ttl",
            ),
            (
                "{filters: [{type: leastQueue}, {type: sessionAffinity, header: 'a b'}], scorers: [{type: queue}]}",
                "s.filters[1].header",
            ),
        ] {
            let e = sched(yaml).validate("s").unwrap_err().to_string();
            assert!(e.contains(&format!("{field}:")), "{yaml}: {e}");
        }
    }

    #[test]
    fn saturation_thresholds_must_be_positive() {
        let s: SaturationConfig = serde_yaml::from_str("{queueThreshold: 10}").unwrap();
        assert_eq!((s.queue_threshold, s.kv_cache_threshold), (10.0, 0.8));
        s.validate("p.saturation").unwrap();
        let s: SaturationConfig = serde_yaml::from_str("{kvCacheThreshold: 0}").unwrap();
        let e = s.validate("p.saturation").unwrap_err().to_string();
        assert!(e.contains("p.saturation.kvCacheThreshold"), "{e}");
        let s: SaturationConfig =
            serde_yaml::from_str("{detector: concurrency, maxConcurrency: 4}").unwrap();
        assert_eq!(s.detector, DetectorKind::Concurrency);
        assert_eq!((s.max_concurrency, s.max_token_concurrency), (4, 1_000_000));
        let s: SaturationConfig = serde_yaml::from_str("{maxTokenConcurrency: 0}").unwrap();
        let e = s.validate("p.saturation").unwrap_err().to_string();
        assert!(e.contains("p.saturation.maxTokenConcurrency:"), "{e}");
        assert!(serde_yaml::from_str::<SaturationConfig>("{detector: vibes}").is_err());
    }

    #[test]
    fn mapping_defaults_overrides_and_errors() {
        let m: MetricsMapping = serde_yaml::from_str("{waiting: [my:queue]}").unwrap();
        assert_eq!(m.waiting, vec!["my:queue"]);
        assert_eq!(m.lora_info, vec!["vllm:lora_requests_info"]);
        m.validate("m").unwrap();
        MetricsMapping::default().validate("m").unwrap();
        for (yaml, field) in [
            ("{running: ['ok', 'bad name']}", "m.running[1]"),
            ("{kvCache: ['']}", "m.kvCache[0]"),
            (
                "{cacheConfig: [vllm:num_requests_waiting]}",
                "m.cacheConfig[0]",
            ),
        ] {
            let m: MetricsMapping = serde_yaml::from_str(yaml).unwrap();
            let e = m.validate("m").unwrap_err().to_string();
            assert!(e.contains(&format!("{field}:")), "{yaml}: {e}");
        }
    }
}
