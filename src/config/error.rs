//! Config errors: each names where it is, and [`ConfigErrors`] collects every problem of
//! a file so `tollgate validate` and a rejected reload report them all at once.
//!
//! Parse errors (YAML syntax, unknown fields, wrong types) still stop at the first per
//! document — serde cannot go on past a field it could not read; semantic validation
//! (regexes, addresses, header names, policies, route names, …) reports every problem,
//! down to the first of each policy.

/// A configuration problem, always with where it is.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("invalid YAML: {0}")]
    Yaml(String),
    #[error("the config is empty (no YAML document, or only comments)")]
    Empty,
    #[error("{path}: {message}")]
    Field { path: String, message: String },
    #[error("{} problems:\n{}", .0.len(), list(.0))]
    Many(Vec<ConfigError>),
}

impl ConfigError {
    /// An error at `path`; an empty path (the document itself) reads `(root)`.
    pub fn field(path: impl Into<String>, message: impl Into<String>) -> Self {
        let path = path.into();
        ConfigError::Field {
            path: if path.is_empty() {
                "(root)".into()
            } else {
                path
            },
            message: message.into(),
        }
    }

    /// The single problems this error stands for (itself, unless it is `Many`).
    pub fn problems(&self) -> Vec<&ConfigError> {
        match self {
            ConfigError::Many(all) => all.iter().flat_map(ConfigError::problems).collect(),
            one => vec![one],
        }
    }
}

fn list(errors: &[ConfigError]) -> String {
    errors
        .iter()
        .map(|e| format!("  {e}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Collects problems instead of stopping at the first.
#[derive(Debug, Default)]
pub struct ConfigErrors(Vec<ConfigError>);

impl ConfigErrors {
    /// Records `e` (each problem of a `Many` on its own).
    pub fn push(&mut self, e: ConfigError) {
        match e {
            ConfigError::Many(all) => all.into_iter().for_each(|e| self.push(e)),
            one => self.0.push(one),
        }
    }

    /// The value of `result`, or `None` with its error recorded.
    pub fn check<T>(&mut self, result: Result<T, ConfigError>) -> Option<T> {
        result.map_err(|e| self.push(e)).ok()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `Ok(value)` when nothing was recorded; otherwise the one problem, or all of them.
    pub fn finish<T>(mut self, value: T) -> Result<T, ConfigError> {
        match self.0.len() {
            0 => Ok(value),
            1 => Err(self.0.pop().expect("one")),
            _ => Err(ConfigError::Many(self.0)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collects_every_problem_flattened_and_lists_them() {
        let mut errs = ConfigErrors::default();
        assert_eq!(errs.check(Ok::<_, ConfigError>(1)), Some(1));
        errs.push(ConfigError::field("a.b", "bad"));
        errs.check(Err::<(), _>(ConfigError::Many(vec![
            ConfigError::field("c", "worse"),
            ConfigError::field("d[0]", "worst"),
        ])));
        let err = errs.finish(()).unwrap_err();
        assert_eq!(err.problems().len(), 3);
        assert_eq!(
            err.to_string(),
            "3 problems:\n  a.b: bad\n  c: worse\n  d[0]: worst"
        );
        let mut one = ConfigErrors::default();
        one.push(ConfigError::field("x", "y"));
        assert_eq!(one.finish(()).unwrap_err().to_string(), "x: y");
    }
}
