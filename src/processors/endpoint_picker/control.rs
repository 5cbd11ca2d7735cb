//! The request's control headers of the endpoint-picker protocol, read once and then
//! stripped: the inference objective (its priority decides shedding), the fairness id,
//! and a model-name rewrite the gateway asked for. Both spellings are read
//! (`x-llm-d-*`, and the older `x-gateway-*`); every `x-llm-d-*` and `x-gateway-*`
//! header is removed so none reaches the model server, and a client-sent
//! `x-gateway-destination-endpoint` can never steer the pick.

use http::HeaderName;

use crate::config::{EndpointPickerPolicy, ModelRewrite};
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
}

impl Control {
    /// Reads the control headers, then strips every `x-llm-d-*` / `x-gateway-*` header.
    pub fn take(headers: &mut Headers, policy: &EndpointPickerPolicy) -> Control {
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
        let control = Control {
            priority,
            objective,
            fairness_id: first(FAIRNESS),
            rewrite: first(REWRITE),
        };
        let names: Vec<HeaderName> = headers
            .map()
            .keys()
            .filter(|n| n.as_str().starts_with("x-llm-d-") || n.as_str().starts_with("x-gateway-"))
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
            ("x-gateway-destination-endpoint", "10.0.0.1:80"),
            ("x-llm-d-anything", "1"),
            ("authorization", "Bearer k"),
        ]);
        let c = Control::take(&mut h, &p);
        assert_eq!(c.objective.as_deref(), Some("batch"));
        assert_eq!(c.priority, -1);
        assert_eq!(c.fairness_id.as_deref(), Some("tenant-a"));
        assert_eq!(c.rewrite.as_deref(), Some("m-v2"));
        let left: Vec<&str> = h.map().keys().map(|k| k.as_str()).collect();
        assert_eq!(left, vec!["authorization"]);

        let mut h = headers(&[
            ("x-llm-d-inference-objective", "chat"),
            ("x-gateway-inference-objective", "batch"),
        ]);
        assert_eq!(
            Control::take(&mut h, &p).priority,
            5,
            "x-llm-d- wins over x-gateway-"
        );
        let mut h = headers(&[("x-gateway-inference-objective", "unknown")]);
        assert_eq!(Control::take(&mut h, &p).priority, 0);
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
