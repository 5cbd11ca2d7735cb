//! A Prometheus text-format reader that looks only at the families scheduling needs, as
//! named by a [`Mapping`] (by default vLLM's `vllm:num_requests_waiting`,
//! `vllm:num_requests_running`, `vllm:kv_cache_usage_perc` (older:
//! `vllm:gpu_cache_usage_perc`), `vllm:lora_requests_info`, `vllm:cache_config_info`, and
//! SGLang's `sglang:num_queue_reqs`, `sglang:num_running_reqs`, `sglang:token_usage`).
//! A line whose first byte starts no mapped name is skipped at once; the others are
//! compared by whole name, and only the LoRA and cache-geometry families have their labels
//! read.

use std::sync::OnceLock;

use crate::config::MetricsMapping;

/// The gauges of one scrape of an endpoint.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct EndpointMetrics {
    /// Requests queued, not yet running.
    pub waiting: f64,
    /// Requests running.
    pub running: f64,
    /// KV-cache utilisation, 0..=1.
    pub kv_cache: f64,
}

/// The LoRA state an endpoint reports (`vllm:lora_requests_info`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LoraInfo {
    /// Adapters the endpoint can hold at once.
    pub max_lora: u32,
    /// Adapters with running requests.
    pub running: Vec<String>,
    /// Adapters with queued requests.
    pub waiting: Vec<String>,
}

/// How an endpoint stands with respect to one adapter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoraMatch {
    /// The endpoint reports no LoRA state.
    Unknown,
    /// The adapter has running requests there.
    Running,
    /// The adapter is not active but a slot is free.
    FreeSlot,
    /// The adapter only has queued requests there (no free slot).
    Waiting,
    /// Neither active nor loadable without eviction.
    None,
}

impl LoraInfo {
    /// Where `adapter` stands on this endpoint.
    pub fn matches(&self, adapter: &str) -> LoraMatch {
        if self.running.iter().any(|a| a == adapter) {
            LoraMatch::Running
        } else if self.active() < self.max_lora as usize {
            LoraMatch::FreeSlot
        } else if self.waiting.iter().any(|a| a == adapter) {
            LoraMatch::Waiting
        } else {
            LoraMatch::None
        }
    }

    /// Distinct adapters running or waiting.
    fn active(&self) -> usize {
        self.running.len()
            + self
                .waiting
                .iter()
                .filter(|w| !self.running.contains(w))
                .count()
    }
}

/// The cache geometry an endpoint reports (`vllm:cache_config_info`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CacheConfig {
    /// Tokens per KV block.
    pub block_size: u64,
    /// KV blocks on the GPU.
    pub num_gpu_blocks: u64,
}

/// Everything one scrape said.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Scrape {
    pub metrics: EndpointMetrics,
    /// `None` when the endpoint exports no LoRA family.
    pub lora: Option<LoraInfo>,
    pub cache_config: Option<CacheConfig>,
}

impl From<EndpointMetrics> for Scrape {
    fn from(metrics: EndpointMetrics) -> Self {
        Scrape {
            metrics,
            lora: None,
            cache_config: None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Field {
    Waiting,
    Running,
    KvCache,
    LoraInfo,
    CacheConfig,
}

/// The family names to read, compiled for a fast skip.
#[derive(Clone, Debug)]
pub struct Mapping {
    names: Vec<(Box<str>, Field)>,
    first_bytes: [bool; 256],
}

impl Mapping {
    pub fn new(config: &MetricsMapping) -> Self {
        let fields = [
            Field::Waiting,
            Field::Running,
            Field::KvCache,
            Field::LoraInfo,
            Field::CacheConfig,
        ];
        let mut names = Vec::new();
        let mut first_bytes = [false; 256];
        for ((_, list), field) in config.lists().into_iter().zip(fields) {
            for name in list {
                if let Some(&b) = name.as_bytes().first() {
                    first_bytes[b as usize] = true;
                    names.push((name.as_str().into(), field));
                }
            }
        }
        Mapping { names, first_bytes }
    }

    /// vLLM's and SGLang's names.
    pub fn shared_default() -> &'static Mapping {
        static DEFAULT: OnceLock<Mapping> = OnceLock::new();
        DEFAULT.get_or_init(|| Mapping::new(&MetricsMapping::default()))
    }

    /// Reads a scrape. Series of one family (several label sets) are summed, except the
    /// KV utilisation, where the largest wins, and the LoRA state, where the newest
    /// (largest value) wins. `None` when no mapped family was present.
    pub fn parse(&self, text: &str) -> Option<Scrape> {
        let mut out = Scrape::default();
        let mut seen = false;
        let mut lora_at = f64::NEG_INFINITY;
        for line in text.lines() {
            let line = line.trim_start();
            let Some(&first) = line.as_bytes().first() else {
                continue;
            };
            if !self.first_bytes[first as usize] {
                continue; // comments, blank lines and most families end here
            }
            let name_end = line.find(['{', ' ', '\t']).unwrap_or(line.len());
            let name = &line[..name_end];
            let Some(&(_, field)) = self.names.iter().find(|(n, _)| &**n == name) else {
                continue;
            };
            let Some((labels, value)) = split_sample(&line[name_end..]) else {
                continue;
            };
            match field {
                Field::Waiting => out.metrics.waiting = finite_sum(out.metrics.waiting, value),
                Field::Running => out.metrics.running = finite_sum(out.metrics.running, value),
                Field::KvCache => out.metrics.kv_cache = out.metrics.kv_cache.max(value),
                Field::LoraInfo => {
                    if value < lora_at {
                        continue;
                    }
                    lora_at = value;
                    out.lora = Some(lora_info(labels));
                }
                Field::CacheConfig => {
                    let (mut bs, mut blocks) = (None, None);
                    for (k, v) in Labels(labels) {
                        match k {
                            "block_size" => bs = v.trim().parse::<u64>().ok(),
                            "num_gpu_blocks" => blocks = v.trim().parse::<u64>().ok(),
                            _ => {}
                        }
                    }
                    match (bs, blocks) {
                        (Some(block_size), Some(num_gpu_blocks))
                            if block_size > 0 && num_gpu_blocks > 0 =>
                        {
                            out.cache_config = Some(CacheConfig {
                                block_size,
                                num_gpu_blocks,
                            })
                        }
                        _ => continue,
                    }
                }
            }
            seen = true;
        }
        seen.then_some(out)
    }
}

/// Reads a scrape with the default mapping.
pub fn parse(text: &str) -> Option<Scrape> {
    Mapping::shared_default().parse(text)
}

/// `a + b` kept finite (as every sample is): series that overflow `f64` together read as
/// its largest value, not infinity.
fn finite_sum(a: f64, b: f64) -> f64 {
    (a + b).clamp(-f64::MAX, f64::MAX)
}

fn lora_info(labels: &str) -> LoraInfo {
    let mut info = LoraInfo::default();
    let list = |v: &str| -> Vec<String> {
        v.split(',')
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .map(String::from)
            .collect()
    };
    for (k, v) in Labels(labels) {
        match k {
            "max_lora" => info.max_lora = v.trim().parse().unwrap_or(0),
            "running_lora_adapters" => info.running = list(&v),
            "waiting_lora_adapters" => info.waiting = list(&v),
            _ => {}
        }
    }
    info
}

/// Splits what follows the metric name, `{labels} value [timestamp]`, into the label text
/// (without braces) and the value.
fn split_sample(rest: &str) -> Option<(&str, f64)> {
    let (labels, rest) = if rest.starts_with('{') {
        // Label values may hold `}` inside quotes.
        let mut in_quotes = false;
        let mut escaped = false;
        let mut end = None;
        for (i, c) in rest.bytes().enumerate() {
            match c {
                _ if escaped => escaped = false,
                b'\\' if in_quotes => escaped = true,
                b'"' => in_quotes = !in_quotes,
                b'}' if !in_quotes => {
                    end = Some(i);
                    break;
                }
                _ => {}
            }
        }
        let end = end?;
        (&rest[1..end], &rest[end + 1..])
    } else {
        ("", rest)
    };
    let v: f64 = rest.split_ascii_whitespace().next()?.parse().ok()?;
    v.is_finite().then_some((labels, v))
}

/// The `name="value"` pairs of a label set, values unescaped.
struct Labels<'a>(&'a str);

impl<'a> Iterator for Labels<'a> {
    type Item = (&'a str, String);

    fn next(&mut self) -> Option<Self::Item> {
        let s = self.0.trim_start_matches([',', ' ', '\t']);
        let eq = s.find('=')?;
        let name = s[..eq].trim();
        let after = s[eq + 1..].trim_start().strip_prefix('"')?;
        let mut value = String::new();
        let mut chars = after.char_indices();
        let mut end = None;
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c)) => value.push(c),
                    None => return None,
                },
                '"' => {
                    end = Some(i);
                    break;
                }
                c => value.push(c),
            }
        }
        self.0 = &after[end? + 1..];
        Some((name, value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VLLM: &str = r#"# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="m"} 3.0
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{engine="0",model_name="m"} 7.0
vllm:num_requests_waiting{engine="1",model_name="m"} 1.0
# TYPE vllm:kv_cache_usage_perc gauge
vllm:kv_cache_usage_perc{engine="0",model_name="m{}\""} 0.25
vllm:prompt_tokens_total{model_name="m"} 12345
process_cpu_seconds_total 1.5
vllm:cache_config_info{block_size="16",cache_dtype="auto",num_gpu_blocks="27000",prefix_caching="True"} 1.0
vllm:lora_requests_info{max_lora="4",running_lora_adapters="sql-lora,chat-lora",waiting_lora_adapters=""} 1.7e9
vllm:lora_requests_info{max_lora="4",running_lora_adapters="",waiting_lora_adapters="sql-lora"} 1.6e9
"#;

    #[test]
    fn summed_series_stay_finite() {
        // Two finite samples used to sum to infinity (the `prometheus` fuzz target
        // asserts every value read is finite).
        let s = parse(
            "sglang:num_queue_reqs 1e308\nsglang:num_queue_reqs 1e308\n\
             vllm:num_requests_running{a=\"1\"} -1e308\nvllm:num_requests_running -1e308\n",
        )
        .unwrap();
        assert_eq!(s.metrics.waiting, f64::MAX);
        assert_eq!(s.metrics.running, -f64::MAX);
    }

    #[test]
    fn reads_vllm_families() {
        let s = parse(VLLM).unwrap();
        assert_eq!(s.metrics.running, 3.0);
        assert_eq!(s.metrics.waiting, 8.0);
        assert_eq!(s.metrics.kv_cache, 0.25);
        assert_eq!(
            s.cache_config,
            Some(CacheConfig {
                block_size: 16,
                num_gpu_blocks: 27_000
            })
        );
        let lora = s.lora.unwrap();
        assert_eq!(lora.max_lora, 4);
        assert_eq!(
            lora.running,
            vec!["sql-lora", "chat-lora"],
            "newest series wins"
        );
        assert!(lora.waiting.is_empty());
    }

    #[test]
    fn lora_newest_series_wins_whatever_the_order() {
        let text = "vllm:lora_requests_info{max_lora=\"2\",running_lora_adapters=\"old\",waiting_lora_adapters=\"\"} 10\n\
                    vllm:lora_requests_info{waiting_lora_adapters=\"w1, w2\",max_lora=\"2\",running_lora_adapters=\"new\"} 20\n\
                    vllm:lora_requests_info{max_lora=\"2\",running_lora_adapters=\"older\",waiting_lora_adapters=\"\"} 5\n";
        let l = parse(text).unwrap().lora.unwrap();
        assert_eq!(l.running, vec!["new"]);
        assert_eq!(l.waiting, vec!["w1", "w2"]);
        assert_eq!(parse(text).unwrap().metrics, EndpointMetrics::default());
    }

    #[test]
    fn lora_match_classes() {
        let l = LoraInfo {
            max_lora: 2,
            running: vec!["a".into()],
            waiting: vec!["b".into()],
        };
        assert_eq!(l.matches("a"), LoraMatch::Running);
        // Two distinct adapters active of two slots: none free.
        assert_eq!(l.matches("b"), LoraMatch::Waiting);
        assert_eq!(l.matches("c"), LoraMatch::None);
        let roomy = LoraInfo {
            max_lora: 3,
            ..l.clone()
        };
        assert_eq!(roomy.matches("b"), LoraMatch::FreeSlot);
        assert_eq!(roomy.matches("c"), LoraMatch::FreeSlot);
    }

    #[test]
    fn cache_config_needs_both_numbers() {
        let s = parse("vllm:cache_config_info{block_size=\"16\",num_gpu_blocks=\"None\"} 1\nvllm:num_requests_waiting 1\n").unwrap();
        assert_eq!(s.cache_config, None);
        assert_eq!(parse("vllm:cache_config_info{block_size=\"16\"} 1\n"), None);
    }

    #[test]
    fn reads_the_older_kv_cache_name() {
        let text = "vllm:gpu_cache_usage_perc{model_name=\"m\"} 0.5 1712345678\nvllm:num_requests_waiting 2\n";
        let m = parse(text).unwrap().metrics;
        assert_eq!(m.kv_cache, 0.5);
        assert_eq!(m.waiting, 2.0);
    }

    #[test]
    fn reads_sglang_families() {
        let text = "sglang:num_queue_reqs{model_name=\"m\"} 4\nsglang:num_running_reqs{model_name=\"m\"} 2\nsglang:token_usage{model_name=\"m\"} 0.75\n";
        let m = parse(text).unwrap().metrics;
        assert_eq!((m.waiting, m.running, m.kv_cache), (4.0, 2.0, 0.75));
    }

    #[test]
    fn a_custom_mapping_reads_only_its_names() {
        let cfg = MetricsMapping {
            waiting: vec!["tgi_queue_size".into()],
            running: vec!["tgi_batch_current_size".into()],
            kv_cache: vec![],
            lora_info: vec![],
            cache_config: vec![],
        };
        let m = Mapping::new(&cfg);
        let s = m
            .parse("tgi_queue_size 6\ntgi_batch_current_size 3\nvllm:num_requests_waiting 9\n")
            .unwrap();
        assert_eq!((s.metrics.waiting, s.metrics.running), (6.0, 3.0));
        assert_eq!(m.parse(VLLM), None);
    }

    #[test]
    fn unknown_or_broken_text_is_none() {
        assert_eq!(parse("up 1\nfoo{a=\"b\"} 2\n"), None);
        assert_eq!(parse("vllm:num_requests_waiting{a=\"b\" 2\n"), None);
        assert_eq!(parse("vllm:num_requests_waiting NaN\n"), None);
        assert_eq!(parse("vllm:num_requests_waiting_total 3\n"), None);
        assert_eq!(parse(""), None);
    }

    #[test]
    fn labels_unescape() {
        let l: Vec<_> = Labels(r#"a="x\"y",b = "p\\q" , c="""#).collect();
        assert_eq!(
            l,
            vec![
                ("a", "x\"y".to_string()),
                ("b", "p\\q".to_string()),
                ("c", String::new())
            ]
        );
    }
}
