//! Label values that a client or an upstream chooses (a request's `model`, the model an
//! upstream says it used): kept bounded, so no request can grow `/metrics` or the
//! process without limit. A label keeps its first `maxValuesPerLabel` distinct values
//! and counts every later new one as [`OTHER`]; every value is cut to `maxValueBytes`
//! at a character boundary first (`limits.labels`). The bounds are process-wide and
//! follow reloads: values already kept stay kept.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::config::LabelLimits;

/// The value counted for every new value past the bound.
pub const OTHER: &str = "other";

/// The bounds in force, shared by every bounded label.
#[derive(Debug)]
pub struct LabelBounds {
    max_values: AtomicUsize,
    max_bytes: AtomicUsize,
}

impl Default for LabelBounds {
    fn default() -> Self {
        let limits = LabelLimits::default();
        LabelBounds {
            max_values: AtomicUsize::new(limits.max_values_per_label),
            max_bytes: AtomicUsize::new(limits.max_value_bytes),
        }
    }
}

impl LabelBounds {
    /// Applies a (re)loaded config's bounds.
    pub fn configure(&self, limits: &LabelLimits) {
        self.max_values
            .store(limits.max_values_per_label, Ordering::Relaxed);
        self.max_bytes
            .store(limits.max_value_bytes, Ordering::Relaxed);
    }

    /// `value` cut to the byte bound, for a log field or a label.
    pub fn field<'a>(&self, value: &'a str) -> &'a str {
        truncate(value, self.max_bytes.load(Ordering::Relaxed))
    }
}

/// `value`'s longest prefix of at most `max` bytes that ends at a character boundary.
pub fn truncate(value: &str, max: usize) -> &str {
    if value.len() <= max {
        return value;
    }
    let mut end = max;
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    &value[..end]
}

/// One label's values: the first distinct ones kept, every later new one [`OTHER`].
#[derive(Debug)]
pub struct BoundedLabel {
    bounds: Arc<LabelBounds>,
    seen: Mutex<HashSet<Box<str>>>,
}

impl BoundedLabel {
    pub fn new(bounds: Arc<LabelBounds>) -> Self {
        BoundedLabel {
            bounds,
            seen: Mutex::new(HashSet::new()),
        }
    }

    /// `value` as a label value: cut to the byte bound, then itself if it was seen
    /// before or there is room for it, else [`OTHER`].
    pub fn value(&self, value: &str) -> String {
        let value = self.bounds.field(value);
        let mut seen = self.seen.lock().expect("label value lock");
        if seen.contains(value) {
            return value.to_string();
        }
        if seen.len() >= self.bounds.max_values.load(Ordering::Relaxed) {
            return OTHER.to_string();
        }
        seen.insert(value.into());
        value.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn label(values: usize, bytes: usize) -> BoundedLabel {
        let bounds = Arc::new(LabelBounds::default());
        bounds.configure(&LabelLimits {
            max_values_per_label: values,
            max_value_bytes: bytes,
        });
        BoundedLabel::new(bounds)
    }

    #[test]
    fn first_values_kept_then_other() {
        let l = label(3, 128);
        for v in ["a", "b", "c"] {
            assert_eq!(l.value(v), v);
        }
        assert_eq!(l.value("d"), OTHER);
        assert_eq!(l.value("a"), "a", "a value kept stays kept");
    }

    #[test]
    fn long_values_are_cut_at_a_char_boundary() {
        let l = label(10, 8);
        assert_eq!(l.value("abcdefghij"), "abcdefgh");
        // 'é' is two bytes: byte 8 falls inside the fifth one.
        assert_eq!(l.value("ééééé"), "éééé");
        assert_eq!(truncate("short", 8), "short");
        let huge = "m".repeat(1 << 20);
        assert_eq!(l.value(&huge).len(), 8);
    }

    #[test]
    fn values_cut_to_the_same_prefix_are_one_value() {
        let l = label(2, 8);
        assert_eq!(l.value("prefix-0-aaaa"), "prefix-0");
        assert_eq!(l.value("prefix-0-bbbb"), "prefix-0");
        assert_eq!(l.value("other-model"), "other-mo");
        assert_eq!(l.value("third"), OTHER);
    }

    #[test]
    fn a_reload_changes_the_bounds() {
        let bounds = Arc::new(LabelBounds::default());
        let l = BoundedLabel::new(bounds.clone());
        assert_eq!(l.value("a"), "a");
        bounds.configure(&LabelLimits {
            max_values_per_label: 1,
            max_value_bytes: 128,
        });
        assert_eq!(l.value("b"), OTHER);
        assert_eq!(l.value("a"), "a");
    }
}
