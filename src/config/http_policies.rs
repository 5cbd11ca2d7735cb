//! Route policies with agentgateway's keys and meaning that change where and how a
//! request goes, or answer it: `urlRewrite` (authority and path), `backendAuth` (the
//! credential the upstream gets) and `directResponse` (a fixed answer). Each error
//! names its field. The key of `backendAuth` is a secret: hidden in `Debug` and
//! redacted in the config dump.

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::ConfigError;

/// `urlRewrite`: what the upstream gets instead of the client's authority and path.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct UrlRewrite {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authority: Option<AuthorityRewrite>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathRewrite>,
}

/// The new authority (the `Host` the upstream sees).
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub enum AuthorityRewrite {
    /// `host[:port]`, replacing the whole authority.
    Full(String),
    /// A new host, keeping the request's port.
    Host(String),
    /// A new port, keeping the request's host.
    Port(u16),
}

/// The new path (the query string is kept).
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub enum PathRewrite {
    /// Replaces the whole path.
    Full(String),
    /// Replaces the part of the path the route's `pathPrefix` matched.
    Prefix(String),
}

impl UrlRewrite {
    /// Checks the values at `path` (`….policies.urlRewrite`).
    pub fn check(&self, path: &str) -> Result<(), ConfigError> {
        match &self.authority {
            Some(AuthorityRewrite::Full(a))
                if http::uri::Authority::try_from(a.as_str()).is_err() =>
            {
                return Err(ConfigError::field(
                    format!("{path}.authority.full"),
                    format!("{a:?} is not host[:port]"),
                ))
            }
            Some(AuthorityRewrite::Host(h)) if h.is_empty() || h.contains([':', '/', ' ']) => {
                return Err(ConfigError::field(
                    format!("{path}.authority.host"),
                    format!("{h:?} is not a host name"),
                ))
            }
            _ => {}
        }
        let (kind, p) = match &self.path {
            Some(PathRewrite::Full(p)) => ("full", p),
            Some(PathRewrite::Prefix(p)) => ("prefix", p),
            None => return Ok(()),
        };
        if !p.starts_with('/') || p.contains(['?', '#', ' ']) {
            return Err(ConfigError::field(
                format!("{path}.path.{kind}"),
                format!("{p:?} must be a path starting with / (no query)"),
            ));
        }
        Ok(())
    }
}

/// `backendAuth`: the credential the upstream gets.
#[derive(Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub enum BackendAuth {
    /// This key as `Authorization: Bearer <key>`, replacing the client's: the key
    /// itself (`${ENV}` works), or `{file: path}` to read it from a file at load.
    Key(KeySource),
    /// The client's own `Authorization` goes upstream as it came.
    Passthrough {},
}

/// Where a `backendAuth` key comes from.
#[derive(Clone, Deserialize, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum KeySource {
    Inline(String),
    File {
        /// A file holding the key (surrounding white space is ignored).
        file: String,
    },
}

impl fmt::Debug for BackendAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BackendAuth::Key(KeySource::Inline(_)) => f.write_str("Key(<redacted>)"),
            BackendAuth::Key(KeySource::File { file }) => write!(f, "Key(file {file:?})"),
            BackendAuth::Passthrough {} => f.write_str("Passthrough"),
        }
    }
}

impl BackendAuth {
    /// The key (read from its file when it is one), checked at `path`
    /// (`….policies.backendAuth`); `None` for passthrough.
    pub fn key(&self, path: &str) -> Result<Option<String>, ConfigError> {
        let key = match self {
            BackendAuth::Passthrough {} => return Ok(None),
            BackendAuth::Key(KeySource::Inline(k)) => k.clone(),
            BackendAuth::Key(KeySource::File { file }) => std::fs::read_to_string(file)
                .map_err(|e| {
                    ConfigError::field(
                        format!("{path}.key.file"),
                        format!("cannot read {file}: {e}"),
                    )
                })?
                .trim()
                .to_string(),
        };
        if key.is_empty() || http::HeaderValue::from_str(&format!("Bearer {key}")).is_err() {
            return Err(ConfigError::field(
                format!("{path}.key"),
                "must be a non-empty key of visible characters",
            ));
        }
        Ok(Some(key))
    }
}

/// `requestRedirect`: the client is sent elsewhere (`Location`), nothing forwarded.
/// Each part not given stays the request's.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RequestRedirect {
    /// `http` or `https`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheme: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authority: Option<AuthorityRewrite>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathRewrite>,
    /// 301, 302 (default), 303, 307 or 308.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
}

impl RequestRedirect {
    /// The status, the parts checked at `path` (`….policies.requestRedirect`).
    pub fn check(&self, path: &str) -> Result<http::StatusCode, ConfigError> {
        if let Some(s) = self
            .scheme
            .as_deref()
            .filter(|s| !matches!(*s, "http" | "https"))
        {
            return Err(ConfigError::field(
                format!("{path}.scheme"),
                format!("{s:?} is not http or https"),
            ));
        }
        let parts = UrlRewrite {
            authority: self.authority.clone(),
            path: self.path.clone(),
        };
        parts.check(path)?;
        let status = self.status.unwrap_or(302);
        match status {
            301 | 302 | 303 | 307 | 308 => Ok(http::StatusCode::from_u16(status).expect("valid")),
            other => Err(ConfigError::field(
                format!("{path}.status"),
                format!("{other} is not a redirect status (301, 302, 303, 307, 308)"),
            )),
        }
    }
}

/// `directResponse`: a fixed answer, nothing forwarded.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DirectResponse {
    /// The status, 200 to 599.
    pub status: u16,
    /// The body. Default empty.
    #[serde(default)]
    pub body: String,
}

impl DirectResponse {
    /// The status, checked at `path` (`….policies.directResponse`).
    pub fn status(&self, path: &str) -> Result<http::StatusCode, ConfigError> {
        http::StatusCode::from_u16(self.status)
            .ok()
            .filter(|s| (200..600).contains(&s.as_u16()))
            .ok_or_else(|| {
                ConfigError::field(
                    format!("{path}.status"),
                    format!("{} is not 200 to 599", self.status),
                )
            })
    }
}

#[cfg(test)]
mod tests;
