//! A Prometheus text-format reader that looks only at the families scheduling needs:
//! vLLM's `vllm:num_requests_waiting`, `vllm:num_requests_running`,
//! `vllm:kv_cache_usage_perc` (older: `vllm:gpu_cache_usage_perc`), and SGLang's
//! `sglang:num_queue_reqs`, `sglang:num_running_reqs`, `sglang:token_usage`. Other lines
//! are skipped after a look at their first bytes.

/// What one scrape of an endpoint said.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct EndpointMetrics {
    /// Requests queued, not yet running.
    pub waiting: f64,
    /// Requests running.
    pub running: f64,
    /// KV-cache utilisation, 0..=1.
    pub kv_cache: f64,
}

#[derive(Clone, Copy)]
enum Field {
    Waiting,
    Running,
    KvCache,
}

const FAMILIES: &[(&str, Field)] = &[
    ("vllm:num_requests_waiting", Field::Waiting),
    ("vllm:num_requests_running", Field::Running),
    ("vllm:kv_cache_usage_perc", Field::KvCache),
    ("vllm:gpu_cache_usage_perc", Field::KvCache),
    ("sglang:num_queue_reqs", Field::Waiting),
    ("sglang:num_running_reqs", Field::Running),
    ("sglang:token_usage", Field::KvCache),
];

/// Reads a scrape. Series of one family (several label sets) are summed, except the KV
/// utilisation, where the largest wins. `None` when no known family was present.
pub fn parse(text: &str) -> Option<EndpointMetrics> {
    let mut m = EndpointMetrics::default();
    let mut seen = false;
    for line in text.lines() {
        let line = line.trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let first = line.as_bytes()[0];
        if first != b'v' && first != b's' {
            continue;
        }
        let name_end = line.find(['{', ' ', '\t']).unwrap_or(line.len());
        let Some(&(_, field)) = FAMILIES.iter().find(|(n, _)| *n == &line[..name_end]) else {
            continue;
        };
        let Some(value) = sample_value(&line[name_end..]) else {
            continue;
        };
        seen = true;
        match field {
            Field::Waiting => m.waiting += value,
            Field::Running => m.running += value,
            Field::KvCache => m.kv_cache = m.kv_cache.max(value),
        }
    }
    seen.then_some(m)
}

/// The value of a sample line after the metric name: `{labels} value [timestamp]`.
fn sample_value(rest: &str) -> Option<f64> {
    let rest = if rest.starts_with('{') {
        // Label values may hold `}` inside quotes.
        let mut in_quotes = false;
        let mut escaped = false;
        let mut end = None;
        for (i, c) in rest.char_indices() {
            match c {
                _ if escaped => escaped = false,
                '\\' if in_quotes => escaped = true,
                '"' => in_quotes = !in_quotes,
                '}' if !in_quotes => {
                    end = Some(i);
                    break;
                }
                _ => {}
            }
        }
        &rest[end? + 1..]
    } else {
        rest
    };
    let v: f64 = rest.split_ascii_whitespace().next()?.parse().ok()?;
    v.is_finite().then_some(v)
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
"#;

    #[test]
    fn reads_vllm_families() {
        let m = parse(VLLM).unwrap();
        assert_eq!(m.running, 3.0);
        assert_eq!(m.waiting, 8.0);
        assert_eq!(m.kv_cache, 0.25);
    }

    #[test]
    fn reads_the_older_kv_cache_name() {
        let text = "vllm:gpu_cache_usage_perc{model_name=\"m\"} 0.5 1712345678\nvllm:num_requests_waiting 2\n";
        let m = parse(text).unwrap();
        assert_eq!(m.kv_cache, 0.5);
        assert_eq!(m.waiting, 2.0);
    }

    #[test]
    fn reads_sglang_families() {
        let text = "sglang:num_queue_reqs{model_name=\"m\"} 4\nsglang:num_running_reqs{model_name=\"m\"} 2\nsglang:token_usage{model_name=\"m\"} 0.75\n";
        let m = parse(text).unwrap();
        assert_eq!((m.waiting, m.running, m.kv_cache), (4.0, 2.0, 0.75));
    }

    #[test]
    fn unknown_or_broken_text_is_none() {
        assert_eq!(parse("up 1\nfoo{a=\"b\"} 2\n"), None);
        assert_eq!(parse("vllm:num_requests_waiting{a=\"b\" 2\n"), None);
        assert_eq!(parse("vllm:num_requests_waiting NaN\n"), None);
        assert_eq!(parse(""), None);
    }
}
