//! A header block that processors read and change. Changes are applied to the map at
//! once, so later processors see them, and the names touched are remembered so an
//! adapter can express the result as a minimal mutation (ext_proc) or just use the map
//! (proxy).

use http::header::{HeaderMap, HeaderName, HeaderValue};

/// Request or response headers (or trailers) of one exchange.
#[derive(Debug, Default)]
pub struct Headers {
    map: HeaderMap,
    touched: Vec<HeaderName>,
}

/// The net change to a header block: names to remove, and names whose values to set
/// (first value replaces, the rest are appended).
#[derive(Debug, Default, PartialEq)]
pub struct HeaderDiff {
    pub remove: Vec<HeaderName>,
    pub set: Vec<(HeaderName, Vec<HeaderValue>)>,
}

impl HeaderDiff {
    pub fn is_empty(&self) -> bool {
        self.remove.is_empty() && self.set.is_empty()
    }
}

impl Headers {
    pub fn new(map: HeaderMap) -> Self {
        Headers {
            map,
            touched: Vec::new(),
        }
    }

    pub fn map(&self) -> &HeaderMap {
        &self.map
    }

    /// The first value of `name` as text, if present and valid UTF-8.
    pub fn get_str(&self, name: &str) -> Option<&str> {
        self.map.get(name).and_then(|v| v.to_str().ok())
    }

    /// Replaces all values of `name` with `value`.
    pub fn set(&mut self, name: HeaderName, value: HeaderValue) {
        self.touch(&name);
        self.map.insert(name, value);
    }

    /// Adds a value to `name`, keeping existing ones.
    pub fn append(&mut self, name: HeaderName, value: HeaderValue) {
        self.touch(&name);
        self.map.append(name, value);
    }

    /// Removes every value of `name`.
    pub fn remove(&mut self, name: &HeaderName) {
        if self.map.contains_key(name) {
            self.touch(name);
            self.map.remove(name);
        }
    }

    /// Names changed so far.
    pub fn touched(&self) -> &[HeaderName] {
        &self.touched
    }

    /// The net change since this block was created.
    pub fn diff(&self) -> HeaderDiff {
        let mut diff = HeaderDiff::default();
        for name in &self.touched {
            let values: Vec<HeaderValue> = self.map.get_all(name).iter().cloned().collect();
            if values.is_empty() {
                diff.remove.push(name.clone());
            } else {
                diff.set.push((name.clone(), values));
            }
        }
        diff
    }

    pub fn into_map(self) -> HeaderMap {
        self.map
    }

    fn touch(&mut self, name: &HeaderName) {
        if !self.touched.contains(name) {
            self.touched.push(name.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hv(s: &'static str) -> HeaderValue {
        HeaderValue::from_static(s)
    }

    #[test]
    fn diff_is_net_change() {
        let mut map = HeaderMap::new();
        map.insert("keep", hv("1"));
        map.insert("gone", hv("x"));
        map.append("multi", hv("a"));
        let mut h = Headers::new(map);
        h.remove(&HeaderName::from_static("gone"));
        h.set(HeaderName::from_static("new"), hv("n"));
        h.append(HeaderName::from_static("multi"), hv("b"));
        h.remove(&HeaderName::from_static("absent"));
        let d = h.diff();
        assert_eq!(d.remove, vec![HeaderName::from_static("gone")]);
        assert_eq!(
            d.set,
            vec![
                (HeaderName::from_static("new"), vec![hv("n")]),
                (HeaderName::from_static("multi"), vec![hv("a"), hv("b")]),
            ]
        );
        assert_eq!(h.map()["keep"], "1");
    }

    #[test]
    fn set_then_remove_is_a_removal() {
        let mut h = Headers::new(HeaderMap::new());
        h.set(HeaderName::from_static("x"), hv("1"));
        h.remove(&HeaderName::from_static("x"));
        assert_eq!(h.diff().remove, vec![HeaderName::from_static("x")]);
        assert!(h.diff().set.is_empty());
    }
}
