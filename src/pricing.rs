//! The price table: US dollars per million tokens per model, from `llm.prices`, used for
//! money budgets and the cost metric. Keys match a model exactly, or by prefix when they
//! end in `*`; the longest key that matches wins.

use std::collections::BTreeMap;

use crate::config::ModelPrice;
use crate::llm::Usage;

/// A compiled price table.
#[derive(Clone, Debug, Default)]
pub struct Prices {
    exact: BTreeMap<String, ModelPrice>,
    /// Prefix keys, longest first.
    prefixes: Vec<(String, ModelPrice)>,
}

impl Prices {
    pub fn new(table: &BTreeMap<String, ModelPrice>) -> Self {
        let mut prices = Prices::default();
        for (key, price) in table {
            match key.strip_suffix('*') {
                Some(prefix) => prices.prefixes.push((prefix.to_string(), price.clone())),
                None => {
                    prices.exact.insert(key.clone(), price.clone());
                }
            }
        }
        prices
            .prefixes
            .sort_by_key(|p| std::cmp::Reverse(p.0.len()));
        prices
    }

    pub fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.prefixes.is_empty()
    }

    /// The price of `model`, if the table has one.
    pub fn price(&self, model: &str) -> Option<&ModelPrice> {
        self.exact.get(model).or_else(|| {
            self.prefixes
                .iter()
                .find(|(p, _)| model.starts_with(p.as_str()))
                .map(|(_, price)| price)
        })
    }

    /// What `usage` of `model` costs in US dollars. Cached and cache-creation input tokens
    /// are priced at their own rates (default: the input rate) and the rest of the input
    /// at the input rate.
    pub fn cost(&self, model: &str, usage: &Usage) -> Option<f64> {
        let p = self.price(model)?;
        let cached = usage.cached_input_tokens;
        let creation = usage.cache_creation_input_tokens;
        let plain_input = usage
            .input_tokens
            .saturating_sub(cached.saturating_add(creation));
        let dollars = plain_input as f64 * p.input
            + cached as f64 * p.cached_input.unwrap_or(p.input)
            + creation as f64 * p.cache_creation_input.unwrap_or(p.input)
            + usage.output_tokens as f64 * p.output;
        Some(dollars / 1_000_000.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> Prices {
        let mut t = BTreeMap::new();
        let price = |input, output, cached| ModelPrice {
            input,
            output,
            cached_input: cached,
            cache_creation_input: None,
        };
        t.insert("gpt-4o*".to_string(), price(2.5, 10.0, Some(1.25)));
        t.insert("gpt-4o-mini*".to_string(), price(0.15, 0.6, None));
        t.insert("claude-x".to_string(), price(3.0, 15.0, None));
        Prices::new(&t)
    }

    #[test]
    fn longest_prefix_and_exact_matches() {
        let t = table();
        assert_eq!(t.price("gpt-4o-2024-08-06").unwrap().input, 2.5);
        assert_eq!(t.price("gpt-4o-mini-2024").unwrap().input, 0.15);
        assert_eq!(t.price("claude-x").unwrap().input, 3.0);
        assert!(t.price("claude-x-2").is_none());
    }

    #[test]
    fn cached_tokens_priced_at_their_rate() {
        let usage = Usage {
            input_tokens: 1_000_000,
            cached_input_tokens: 400_000,
            output_tokens: 100_000,
            ..Default::default()
        };
        let cost = table().cost("gpt-4o", &usage).unwrap();
        // 600k × 2.5 + 400k × 1.25 + 100k × 10, per million.
        assert!((cost - (1.5 + 0.5 + 1.0)).abs() < 1e-9, "{cost}");
    }
}
