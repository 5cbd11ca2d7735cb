//! Session affinity of the endpoint picker: the parameters of the `sessionAffinity`
//! filter and scorer of a custom scheduling profile, and their checks.
//!
//! Two strategies, as llm-d's session-affinity plugins: `token` (stateless: the client
//! echoes a header carrying the base64 of the endpoint that served it) and `sessionId`
//! (stateful: the client sends an opaque id the picker binds to an endpoint for a TTL).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{ConfigError, Duration};

/// The default header of the `token` strategy (request and response).
pub const SESSION_TOKEN_HEADER: &str = "x-session-token";
/// The default header of the `sessionId` strategy.
pub const SESSION_ID_HEADER: &str = "x-session-id";
/// The default bound on the sessions the `sessionId` strategy remembers.
pub const DEFAULT_MAX_SESSIONS: usize = 100_000;

/// How a request names the endpoint of its session.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum SessionStrategy {
    /// Stateless: the request header carries the base64 of the endpoint that served the
    /// conversation before (`ip:port`, or `namespace/ip:port`); the response sets it to
    /// the endpoint picked, for the client to echo.
    #[default]
    Token,
    /// Stateful: the request header carries an opaque session id; the picker binds it to
    /// the endpoint picked, until it is unused for `ttl`.
    SessionId,
}

/// Parameters of the `sessionAffinity` filter (and of the scorer, flattened into it).
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SessionAffinityConfig {
    /// `token` (default) or `sessionId`.
    #[serde(default)]
    pub strategy: SessionStrategy,
    /// The header: default `x-session-token` (`token`) or `x-session-id` (`sessionId`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
    /// `sessionId` only: how long an unused binding lasts. Default `300s` for the filter,
    /// `600s` for the scorer (the reference's defaults).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<Duration>,
    /// `sessionId` only: the sessions remembered; past it the least recently used is
    /// forgotten. Default 100,000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_sessions: Option<usize>,
}

/// A session-affinity setting with its defaults filled in.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SessionSpec {
    pub strategy: SessionStrategy,
    pub header: http::HeaderName,
    pub ttl: std::time::Duration,
    pub max_sessions: usize,
}

impl SessionAffinityConfig {
    /// Checks the parameters; `at` is the path of the filter or scorer.
    pub fn validate(&self, at: &str) -> Result<(), ConfigError> {
        if let Some(h) = &self.header {
            let lower = h.to_ascii_lowercase();
            if http::HeaderName::from_bytes(h.as_bytes()).is_err() {
                return Err(ConfigError::field(
                    format!("{at}.header"),
                    format!("{h:?} is not a header name"),
                ));
            }
            if lower.starts_with("x-llm-d-") || lower.starts_with("x-gateway-") {
                return Err(ConfigError::field(
                    format!("{at}.header"),
                    "x-llm-d-* and x-gateway-* headers are stripped before scheduling",
                ));
            }
        }
        if self.strategy == SessionStrategy::Token {
            for (field, set) in [
                ("ttl", self.ttl.is_some()),
                ("maxSessions", self.max_sessions.is_some()),
            ] {
                if set {
                    return Err(ConfigError::field(
                        format!("{at}.{field}"),
                        "only the sessionId strategy keeps sessions",
                    ));
                }
            }
        }
        if self.ttl.is_some_and(|t| t.get().is_zero()) {
            return Err(ConfigError::field(
                format!("{at}.ttl"),
                "must be more than 0",
            ));
        }
        if self.max_sessions == Some(0) {
            return Err(ConfigError::field(
                format!("{at}.maxSessions"),
                "must be at least 1",
            ));
        }
        Ok(())
    }

    /// The setting with defaults filled in; `default_ttl` differs for filter and scorer.
    /// Call on a validated config.
    pub fn spec(&self, default_ttl: std::time::Duration) -> SessionSpec {
        let default_header = match self.strategy {
            SessionStrategy::Token => SESSION_TOKEN_HEADER,
            SessionStrategy::SessionId => SESSION_ID_HEADER,
        };
        let header = self
            .header
            .as_deref()
            .and_then(|h| http::HeaderName::from_bytes(h.as_bytes()).ok())
            .unwrap_or_else(|| http::HeaderName::from_static(default_header));
        SessionSpec {
            strategy: self.strategy,
            header,
            ttl: self.ttl.map_or(default_ttl, Duration::get),
            max_sessions: self.max_sessions.unwrap_or(DEFAULT_MAX_SESSIONS),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> SessionAffinityConfig {
        serde_yaml::from_str(yaml).unwrap()
    }

    #[test]
    fn defaults_follow_the_strategy() {
        let s = parse("{}").spec(std::time::Duration::from_secs(300));
        assert_eq!(s.strategy, SessionStrategy::Token);
        assert_eq!(s.header, "x-session-token");
        let s = parse("{strategy: sessionId}").spec(std::time::Duration::from_secs(600));
        assert_eq!(s.header, "x-session-id");
        assert_eq!(s.ttl, std::time::Duration::from_secs(600));
        assert_eq!(s.max_sessions, 100_000);
        let c = parse("{strategy: sessionId, header: X-Conversation, ttl: 5s, maxSessions: 7}");
        c.validate("f").unwrap();
        let s = c.spec(std::time::Duration::from_secs(600));
        assert_eq!(
            (s.header.as_str(), s.ttl, s.max_sessions),
            ("x-conversation", std::time::Duration::from_secs(5), 7)
        );
    }

    #[test]
    fn errors_name_the_field() {
        for (yaml, field) in [
            ("{header: 'bad header'}", "f.header"),
            ("{header: x-gateway-session}", "f.header"),
            ("{ttl: 10s}", "f.ttl"),
            ("{maxSessions: 10}", "f.maxSessions"),
            ("{strategy: sessionId, ttl: 0s}", "f.ttl"),
            ("{strategy: sessionId, maxSessions: 0}", "f.maxSessions"),
        ] {
            let e = parse(yaml).validate("f").unwrap_err().to_string();
            assert!(e.contains(&format!("{field}:")), "{yaml}: {e}");
        }
        assert!(serde_yaml::from_str::<SessionAffinityConfig>("{strategy: cookie}").is_err());
    }
}
