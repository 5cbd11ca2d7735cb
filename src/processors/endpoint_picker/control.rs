//! The request's control headers of the endpoint-picker protocol, read once and then
//! stripped: the inference objective (its priority decides shedding), the fairness id,
//! the latency objectives, the queue TTL the client asks for (`x-llm-d-inference-ttl`),
//! a model-name rewrite the gateway asked for, and the model a body-based router in
//! front already read from the body. Both spellings are read
//! (`x-llm-d-*`, and the older `x-gateway-*`); every `x-llm-d-*` and `x-gateway-*`
//! header but the model name is removed so none reaches the model server, and a client-sent
//! `x-gateway-destination-endpoint` can never steer the pick.

use std::time::Duration;

use http::HeaderName;

use crate::config::{EndpointPickerPolicy, ModelRewrite};
use crate::epp::flow::DEFAULT_FLOW;
use crate::epp::scheduling::slo::Slo;
use crate::epp::Rng;
use crate::pipeline::Headers;

const OBJECTIVE: [&str; 2] = [
    "x-llm-d-inference-objective",
    "x-gateway-inference-objective",
];
const FAIRNESS: [&str; 2] = [
    "x-llm-d-inference-fairness-id",
    "x-gateway-inference-fairness-id",
];
const REWRITE: [&str; 2] = ["x-llm-d-model-name-rewrite", "x-gateway-model-name-rewrite"];
/// The model a body-based router in front (the inference extension's BBR) read from the
/// body.
const MODEL: [&str; 2] = ["x-gateway-model-name", "x-llm-d-model-name"];
/// Longest model name taken from a header.
const MAX_MODEL_NAME: usize = 1024;
const SLO_TTFT: [&str; 2] = ["x-llm-d-slo-ttft-ms", "x-slo-ttft-ms"];
const SLO_TPOT: [&str; 2] = ["x-llm-d-slo-tpot-ms", "x-slo-tpot-ms"];

/// The queue TTL a client asks for, in Go duration syntax (llm-d's router header).
const TTL: &str = "x-llm-d-inference-ttl";

/// The largest latency objective accepted: an hour.
const MAX_SLO_MS: u64 = 3_600_000;

/// A control header the picker cannot read (the request is answered 400).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{header} must be {expected}, not {value:?}")]
pub struct BadControl {
    pub header: &'static str,
    pub expected: String,
    pub value: String,
}

impl BadControl {
    fn new(header: &'static str, expected: impl Into<String>, text: &str) -> BadControl {
        BadControl {
            header,
            expected: expected.into(),
            value: crate::metrics::truncate(text, 64).to_string(),
        }
    }
}

/// What the control headers said.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Control {
    /// The objective's name, if one was named.
    pub objective: Option<String>,
    /// The objective's priority (0 when none or unknown); negative is sheddable.
    pub priority: i32,
    pub fairness_id: Option<String>,
    /// The model the gateway wants the request sent as.
    pub rewrite: Option<String>,
    /// The model the request's body names, as a router in front read it
    /// (`x-gateway-model-name`): lets the pick start before the body's `"model"` came.
    pub model: Option<String>,
    /// The request's time-to-first-token objective (`x-llm-d-slo-ttft-ms`).
    pub slo_ttft: Option<Duration>,
    /// Its time-per-output-token objective (`x-llm-d-slo-tpot-ms`).
    pub slo_tpot: Option<Duration>,
    /// The queue TTL it asks for (`x-llm-d-inference-ttl`): it shortens the band's `ttl`,
    /// never extends it.
    pub queue_ttl: Option<Duration>,
}

impl Control {
    /// The fairness id, [`DEFAULT_FLOW`] when none was named.
    pub fn flow(&self) -> &str {
        self.fairness_id.as_deref().unwrap_or(DEFAULT_FLOW)
    }

    /// The latency objectives, when the request carries any.
    pub fn slo(&self) -> Option<Slo> {
        (self.slo_ttft.is_some() || self.slo_tpot.is_some()).then_some(Slo {
            ttft: self.slo_ttft,
            tpot: self.slo_tpot,
        })
    }
}

/// The first of `names` present as whole milliseconds; `Err` when present and not.
fn slo(headers: &Headers, names: [&'static str; 2]) -> Result<Option<Duration>, BadControl> {
    for name in names {
        let Some(v) = headers.map().get(name) else {
            continue;
        };
        let text = String::from_utf8_lossy(v.as_bytes()).trim().to_string();
        return match text.parse::<u64>() {
            Ok(ms) if (1..=MAX_SLO_MS).contains(&ms) => Ok(Some(Duration::from_millis(ms))),
            _ => Err(BadControl::new(
                name,
                format!("a whole number of milliseconds from 1 to {MAX_SLO_MS}"),
                &text,
            )),
        };
    }
    Ok(None)
}

/// The queue TTL header, when present; `Err` when present and not a positive duration.
fn queue_ttl(headers: &Headers) -> Result<Option<Duration>, BadControl> {
    let Some(v) = headers.map().get(TTL) else {
        return Ok(None);
    };
    let text = String::from_utf8_lossy(v.as_bytes()).trim().to_string();
    match go_duration(&text) {
        Some(d) if !d.is_zero() => Ok(Some(d)),
        _ => Err(BadControl::new(
            TTL,
            "a positive Go duration such as 1500ms, 1.5s or 2m30s",
            &text,
        )),
    }
}

/// A Go duration (`time.ParseDuration`): decimal numbers each with a unit (`ns`, `us`,
/// `µs`, `ms`, `s`, `m`, `h`), summed, an optional leading `+`; `None` when not one (a
/// negative one included).
fn go_duration(text: &str) -> Option<Duration> {
    let mut rest = text.strip_prefix('+').unwrap_or(text);
    if rest.is_empty() {
        return None;
    }
    let mut seconds = 0f64;
    while !rest.is_empty() {
        let number = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (n, after) = rest.split_at(number);
        if !n.bytes().any(|b| b.is_ascii_digit()) {
            return None;
        }
        let n: f64 = n.parse().ok()?;
        let unit = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, next) = after.split_at(unit);
        let scale = match unit {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        seconds += n * scale;
        rest = next;
    }
    Duration::try_from_secs_f64(seconds).ok()
}

impl Control {
    /// Reads the control headers, then strips every `x-llm-d-*` / `x-gateway-*` header
    /// (and the `x-slo-*` aliases). A malformed latency objective is an error.
    pub fn take(
        headers: &mut Headers,
        policy: &EndpointPickerPolicy,
    ) -> Result<Control, BadControl> {
        let first = |names: [&str; 2]| -> Option<String> {
            names.iter().find_map(|n| {
                headers
                    .map()
                    .get(*n)
                    .and_then(|v| v.to_str().ok())
                    .map(str::trim)
                    .filter(|v| !v.is_empty())
                    .map(str::to_string)
            })
        };
        let objective = first(OBJECTIVE);
        let priority = objective
            .as_deref()
            .and_then(|name| policy.objectives.iter().find(|o| o.name == name))
            .map_or(0, |o| o.priority);
        let timing = || -> Result<_, BadControl> {
            let slos = (slo(headers, SLO_TTFT)?, slo(headers, SLO_TPOT)?);
            Ok((slos, queue_ttl(headers)?))
        };
        let control = timing().map(|((slo_ttft, slo_tpot), queue_ttl)| Control {
            priority,
            objective,
            fairness_id: first(FAIRNESS),
            rewrite: first(REWRITE),
            model: first(MODEL).filter(|m| m.len() <= MAX_MODEL_NAME),
            slo_ttft,
            slo_tpot,
            queue_ttl,
        });
        let names: Vec<HeaderName> = headers
            .map()
            .keys()
            .filter(|n| {
                let n = n.as_str();
                // The model header stays: routes in front may match on it, and Envoy
                // matches again after the pick clears the route cache.
                let control = n.starts_with("x-llm-d-")
                    || n.starts_with("x-gateway-")
                    || n.starts_with("x-slo-");
                control && !MODEL.contains(&n)
            })
            .cloned()
            .collect();
        for name in &names {
            headers.remove(name);
        }
        control
    }
}

/// The model a request for `model` is sent as: the gateway's rewrite header first, else
/// a configured rewrite's target chosen by weight; `None` when the model stays.
pub fn target_model(
    model: &str,
    header: Option<&str>,
    rewrites: &[ModelRewrite],
    rng: &mut Rng,
) -> Option<String> {
    if let Some(h) = header {
        return (h != model).then(|| h.to_string());
    }
    let rule = rewrites.iter().find(|r| r.model == model)?;
    let total: u64 = rule.targets.iter().map(|t| u64::from(t.weight)).sum();
    if total == 0 {
        return None;
    }
    let mut ticket = rng.next_u64() % total;
    for t in &rule.targets {
        let w = u64::from(t.weight);
        if ticket < w {
            return (t.model != model).then(|| t.model.clone());
        }
        ticket -= w;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(yaml: &str) -> EndpointPickerPolicy {
        serde_yaml::from_str(yaml).unwrap()
    }

    fn headers(pairs: &[(&str, &str)]) -> Headers {
        let mut map = http::HeaderMap::new();
        for (k, v) in pairs {
            map.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        Headers::new(map)
    }

    #[test]
    fn reads_both_spellings_and_strips_all_control_headers() {
        let p = policy("{endpoints: ['127.0.0.1:1'], objectives: [{name: batch, priority: -1}, {name: chat, priority: 5}]}");
        let mut h = headers(&[
            ("x-gateway-inference-objective", "batch"),
            ("x-gateway-inference-fairness-id", "tenant-a"),
            ("x-llm-d-model-name-rewrite", "m-v2"),
            ("x-gateway-model-name", "m"),
            ("x-gateway-destination-endpoint", "10.0.0.1:80"),
            ("x-llm-d-anything", "1"),
            ("authorization", "Bearer k"),
        ]);
        let c = Control::take(&mut h, &p).unwrap();
        assert_eq!(c.objective.as_deref(), Some("batch"));
        assert_eq!(c.priority, -1);
        assert_eq!(c.fairness_id.as_deref(), Some("tenant-a"));
        assert_eq!(c.rewrite.as_deref(), Some("m-v2"));
        assert_eq!(c.model.as_deref(), Some("m"));
        let mut left: Vec<&str> = h.map().keys().map(|k| k.as_str()).collect();
        left.sort();
        assert_eq!(left, vec!["authorization", "x-gateway-model-name"]);

        let mut h = headers(&[
            ("x-llm-d-inference-objective", "chat"),
            ("x-gateway-inference-objective", "batch"),
        ]);
        assert_eq!(
            Control::take(&mut h, &p).unwrap().priority,
            5,
            "x-llm-d- wins over x-gateway-"
        );
        let mut h = headers(&[("x-gateway-inference-objective", "unknown")]);
        assert_eq!(Control::take(&mut h, &p).unwrap().priority, 0);
    }

    #[test]
    fn latency_objectives_are_whole_milliseconds() {
        let p = policy("{endpoints: ['127.0.0.1:1']}");
        let mut h = headers(&[("x-llm-d-slo-ttft-ms", "250"), ("x-slo-tpot-ms", " 40 ")]);
        let c = Control::take(&mut h, &p).unwrap();
        assert_eq!(c.slo_ttft, Some(Duration::from_millis(250)));
        assert_eq!(c.slo_tpot, Some(Duration::from_millis(40)));
        assert_eq!(c.flow(), "default-flow");
        assert!(h.map().is_empty(), "both stripped");
        for (name, value) in [
            ("x-llm-d-slo-ttft-ms", "fast"),
            ("x-llm-d-slo-ttft-ms", "-5"),
            ("x-llm-d-slo-tpot-ms", "0"),
            ("x-slo-ttft-ms", "1.5"),
            ("x-llm-d-slo-ttft-ms", "99999999999999999999999"),
        ] {
            let mut h = headers(&[(name, value)]);
            let e = Control::take(&mut h, &p).unwrap_err();
            assert_eq!(e.header, name);
            assert!(
                e.to_string().contains("whole number of milliseconds"),
                "{e}"
            );
            assert!(h.map().is_empty(), "stripped even when bad");
        }
    }

    #[test]
    fn the_queue_ttl_is_a_go_duration() {
        let p = policy("{endpoints: ['127.0.0.1:1']}");
        for (value, want) in [
            ("1500ms", Duration::from_millis(1500)),
            (" 1.5s ", Duration::from_millis(1500)),
            ("2m30s", Duration::from_secs(150)),
            ("+250us", Duration::from_micros(250)),
            ("1h0.5m", Duration::from_secs(3630)),
            (".5s", Duration::from_millis(500)),
        ] {
            let mut h = headers(&[(TTL, value)]);
            let c = Control::take(&mut h, &p).unwrap();
            assert_eq!(c.queue_ttl, Some(want), "{value:?}");
            assert!(h.map().is_empty(), "stripped");
        }
        for value in ["fast", "0", "0s", "-1s", "10", "1.2.3s", "1x", "s", "1e3ms"] {
            let mut h = headers(&[(TTL, value)]);
            let e = Control::take(&mut h, &p).unwrap_err();
            assert_eq!(e.header, TTL, "{value:?}");
            assert!(e.to_string().contains("positive Go duration"), "{e}");
            assert!(h.map().is_empty(), "stripped even when bad");
        }
        let mut h = headers(&[]);
        assert_eq!(Control::take(&mut h, &p).unwrap().queue_ttl, None);
    }

    #[test]
    fn rewrite_targets_follow_weights() {
        let p = policy(
            "{endpoints: ['127.0.0.1:1'], modelRewrites: [{model: m, targets: [{model: a, weight: 3}, {model: b, weight: 1}, {model: c, weight: 0}]}]}",
        );
        let mut rng = Rng::with_seed(11);
        let mut seen = std::collections::HashMap::new();
        for _ in 0..4000 {
            let t = target_model("m", None, &p.model_rewrites, &mut rng).unwrap();
            *seen.entry(t).or_insert(0usize) += 1;
        }
        let a = seen["a"] as f64 / 4000.0;
        assert!((a - 0.75).abs() < 0.04, "{seen:?}");
        assert!(!seen.contains_key("c"), "weight 0 never chosen");
        assert_eq!(
            target_model("other", None, &p.model_rewrites, &mut rng),
            None
        );
        assert_eq!(
            target_model("m", Some("z"), &p.model_rewrites, &mut rng).as_deref(),
            Some("z"),
            "the gateway's header wins"
        );
        assert_eq!(
            target_model("m", Some("m"), &p.model_rewrites, &mut rng),
            None
        );
    }
}
