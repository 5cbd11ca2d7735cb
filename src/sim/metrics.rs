//! The vLLM-style Prometheus text of one simulated instance (`GET /metrics`).

use std::fmt::Write as _;

use super::engine::{Snapshot, BLOCK_TOKENS};

/// How the text is written.
#[derive(Clone, Debug)]
pub struct MetricsStyle {
    /// The served model (`model_name` label).
    pub model: String,
    /// Write `vllm:gpu_cache_usage_perc` (vLLM before 0.10) instead of
    /// `vllm:kv_cache_usage_perc`.
    pub legacy_kv_name: bool,
    /// `max_lora` of `vllm:lora_requests_info`.
    pub max_lora: usize,
}

/// Renders `s`; `now` (Unix seconds) is the value of `vllm:lora_requests_info`.
pub fn render(s: &Snapshot, style: &MetricsStyle, now: f64) -> String {
    let mut out = String::with_capacity(2048);
    let model = escape(&style.model);
    let labels = format!("{{model_name=\"{model}\"}}");
    let mut family = |name: &str, kind: &str, help: &str, series: &str, value: String| {
        let _ = write!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name}{series} {value}\n"
        );
    };
    family(
        "vllm:num_requests_running",
        "gauge",
        "Number of requests in model execution batches.",
        &labels,
        s.running.to_string(),
    );
    family(
        "vllm:num_requests_waiting",
        "gauge",
        "Number of requests waiting to be processed.",
        &labels,
        s.waiting.to_string(),
    );
    let usage = if s.kv_blocks == 0 {
        0.0
    } else {
        s.kv_held as f64 / s.kv_blocks as f64
    };
    family(
        if style.legacy_kv_name {
            "vllm:gpu_cache_usage_perc"
        } else {
            "vllm:kv_cache_usage_perc"
        },
        "gauge",
        "KV-cache usage. 1 means 100 percent usage.",
        &labels,
        format!("{usage}"),
    );
    family(
        "vllm:cache_config_info",
        "gauge",
        "Information of the LLMEngine CacheConfig.",
        &format!(
            "{{block_size=\"{BLOCK_TOKENS}\",num_gpu_blocks=\"{}\"}}",
            s.kv_blocks
        ),
        "1".into(),
    );
    family(
        "vllm:lora_requests_info",
        "gauge",
        "Running stats on lora requests.",
        &format!(
            "{{max_lora=\"{}\",running_lora_adapters=\"{}\",waiting_lora_adapters=\"{}\"}}",
            style.max_lora,
            escape(&s.running_adapters.join(",")),
            escape(&s.waiting_adapters.join(",")),
        ),
        format!("{now:.3}"),
    );
    for (name, help, value) in [
        (
            "vllm:prefix_cache_queries_total",
            "Prefix-cache queries, in tokens.",
            s.prefix_queries,
        ),
        (
            "vllm:prefix_cache_hits_total",
            "Prefix-cache hits, in tokens.",
            s.prefix_hits,
        ),
        (
            "vllm:request_success_total",
            "Requests finished.",
            s.requests,
        ),
        (
            "vllm:prompt_tokens_total",
            "Prefill tokens processed.",
            s.prompt_tokens,
        ),
        (
            "vllm:generation_tokens_total",
            "Generation tokens processed.",
            s.generation_tokens,
        ),
    ] {
        family(name, "counter", help, &labels, value.to_string());
    }
    out
}

/// A label value with `\`, `"` and newlines escaped.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot() -> Snapshot {
        Snapshot {
            running: 3,
            waiting: 2,
            kv_held: 256,
            kv_blocks: 1024,
            running_adapters: vec!["a".into(), "b".into()],
            waiting_adapters: vec![],
            prefix_queries: 100,
            prefix_hits: 64,
            requests: 7,
            prompt_tokens: 100,
            generation_tokens: 50,
        }
    }

    #[test]
    fn the_pickers_parser_reads_it() {
        for legacy in [false, true] {
            let style = MetricsStyle {
                model: "m\"x".into(),
                legacy_kv_name: legacy,
                max_lora: 4,
            };
            let text = render(&snapshot(), &style, 1_700_000_000.5);
            let scrape = crate::epp::metrics::parse(&text).expect("known families");
            let m = scrape.metrics;
            assert_eq!((m.running, m.waiting, m.kv_cache), (3.0, 2.0, 0.25));
            let cache = scrape.cache_config.expect("cache_config_info read");
            assert_eq!((cache.block_size, cache.num_gpu_blocks), (16, 1024));
            let lora = scrape.lora.expect("lora_requests_info read");
            assert_eq!(lora.max_lora, 4);
            assert_eq!(lora.running, vec!["a".to_string(), "b".to_string()]);
            assert_eq!(text.contains("vllm:gpu_cache_usage_perc"), legacy);
            assert!(text
                .contains("vllm:cache_config_info{block_size=\"16\",num_gpu_blocks=\"1024\"} 1\n"));
            assert!(text.contains(
                "vllm:lora_requests_info{max_lora=\"4\",running_lora_adapters=\"a,b\",waiting_lora_adapters=\"\"} 1700000000.500\n"
            ));
            assert!(text.contains("vllm:prefix_cache_hits_total{model_name=\"m\\\"x\"} 64\n"));
        }
    }
}
