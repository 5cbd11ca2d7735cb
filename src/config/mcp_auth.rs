//! `mcpAuthentication` and `mcpAuthorization` (agentgateway's policy names): the route
//! is an OAuth 2.1 resource server that takes JWT bearer tokens checked against a JWKS,
//! publishes RFC 9728 protected-resource metadata, and allows MCP calls by CEL rules.
//! The model and its checks; every error names its field.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::{ConfigError, ConfigErrors, Duration};
use crate::auth::JwksSource;

/// The longest clock skew allowed between tollgate and the token issuer.
const MAX_SKEW: std::time::Duration = std::time::Duration::from_secs(300);
/// Where RFC 9728 puts the metadata document, before the resource's path.
pub const WELL_KNOWN: &str = "/.well-known/oauth-protected-resource";

/// Bearer-token authentication of an MCP route.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct McpAuthentication {
    /// The `iss` every token must carry (`https://idp.example.com`).
    pub issuer: String,
    /// Every token's `aud` must name one of these: the gateway's canonical MCP URL
    /// (RFC 8707), e.g. `https://mcp.example.com/mcp`.
    pub audiences: Vec<String>,
    /// Where the issuer's signing keys are.
    pub jwks: JwksConfig,
    /// Tolerance on `exp` and `nbf`. Default `30s`, at most `5m`.
    #[serde(default = "default_skew")]
    pub clock_skew: Duration,
    /// Scopes every token must hold (`scope` or `scp` claim); a token without them
    /// gets 403 `insufficient_scope`.
    #[serde(default)]
    pub required_scopes: Vec<String>,
    /// The RFC 9728 metadata document served at
    /// `/.well-known/oauth-protected-resource<path of resource>`.
    #[serde(default)]
    pub resource_metadata: ResourceMetadata,
}

/// A JWKS file or URL, re-read every `refresh` and on a token with an unknown `kid`.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct JwksConfig {
    /// A JWKS document on disk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// A JWKS document served over `http://` or `https://`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// How often the keys are re-read. Default `5m`, at least `1s`.
    #[serde(default = "default_refresh")]
    pub refresh: Duration,
}

/// What the metadata document says besides what the policy implies.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ResourceMetadata {
    /// The resource identifier (an absolute `https://` or `http://` URL). Default: the
    /// first of `audiences`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
    /// Authorization servers clients may use. Default: `[issuer]`.
    #[serde(default)]
    pub authorization_servers: Vec<String>,
    /// Scopes advertised to clients. Default: `requiredScopes`.
    #[serde(default)]
    pub scopes_supported: Vec<String>,
    /// A human-readable name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_name: Option<String>,
    /// A URL of documentation for developers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_documentation: Option<String>,
}

/// CEL rules that allow MCP calls. With rules, a `tools/call`, `prompts/get` or
/// `resources/read` goes through only when one rule is true, and lists show only what
/// a rule allows. Variables: `mcp.method`, `mcp.target`, `mcp.tool.name`,
/// `mcp.prompt.name`, `mcp.resource.uri`, `mcp.arguments`, `jwt` (the verified claims;
/// empty without `mcpAuthentication`).
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct McpAuthorization {
    pub rules: Vec<String>,
}

fn default_skew() -> Duration {
    Duration::from_secs(30)
}

fn default_refresh() -> Duration {
    Duration::from_secs(300)
}

/// A checked `mcpAuthentication`.
#[derive(Debug)]
pub struct AuthChecked {
    pub source: JwksSource,
    /// The path of the metadata document (`/.well-known/oauth-protected-resource/mcp`).
    pub metadata_path: String,
    /// Its absolute URL, for `WWW-Authenticate: Bearer resource_metadata=…`.
    pub metadata_url: String,
    /// The document.
    pub metadata: Value,
}

impl McpAuthentication {
    /// Checks the policy at `path` (`….policies.mcpAuthentication`).
    pub fn check(&self, path: &str) -> Result<AuthChecked, ConfigError> {
        let mut errs = ConfigErrors::default();
        if self.issuer.trim().is_empty() {
            errs.push(ConfigError::field(
                format!("{path}.issuer"),
                "must not be empty",
            ));
        }
        if self.audiences.is_empty() || self.audiences.iter().any(|a| a.trim().is_empty()) {
            errs.push(ConfigError::field(
                format!("{path}.audiences"),
                "name at least one audience, none empty (the gateway's MCP URL)",
            ));
        }
        if self.clock_skew.get() > MAX_SKEW {
            errs.push(ConfigError::field(
                format!("{path}.clockSkew"),
                "must be at most 5m",
            ));
        }
        let source = errs.check(self.jwks.check(&format!("{path}.jwks")));
        let resource = self
            .resource_metadata
            .resource
            .clone()
            .or_else(|| self.audiences.first().cloned());
        let at = if self.resource_metadata.resource.is_some() {
            format!("{path}.resourceMetadata.resource")
        } else {
            format!("{path}.audiences[0]")
        };
        let resource = resource.and_then(|r| errs.check(absolute_url(&r, &at).map(|u| (r, u))));
        errs.finish(())?;
        let (resource, uri) = resource.expect("no error recorded");
        let origin = format!(
            "{}://{}",
            uri.scheme_str().unwrap_or("https"),
            uri.authority().expect("checked")
        );
        let resource_path = uri.path().trim_end_matches('/');
        let metadata_path = format!("{WELL_KNOWN}{resource_path}");
        Ok(AuthChecked {
            source: source.expect("no error recorded"),
            metadata_url: format!("{origin}{metadata_path}"),
            metadata_path,
            metadata: self.document(&resource),
        })
    }

    fn document(&self, resource: &str) -> Value {
        let m = &self.resource_metadata;
        let servers = if m.authorization_servers.is_empty() {
            vec![self.issuer.clone()]
        } else {
            m.authorization_servers.clone()
        };
        let scopes = if m.scopes_supported.is_empty() {
            &self.required_scopes
        } else {
            &m.scopes_supported
        };
        let mut doc = json!({
            "resource": resource,
            "authorization_servers": servers,
            "bearer_methods_supported": ["header"],
        });
        if !scopes.is_empty() {
            doc["scopes_supported"] = json!(scopes);
        }
        if let Some(name) = &m.resource_name {
            doc["resource_name"] = json!(name);
        }
        if let Some(docs) = &m.resource_documentation {
            doc["resource_documentation"] = json!(docs);
        }
        doc
    }
}

impl JwksConfig {
    fn check(&self, path: &str) -> Result<JwksSource, ConfigError> {
        if self.refresh.get() < std::time::Duration::from_secs(1) {
            return Err(ConfigError::field(
                format!("{path}.refresh"),
                "must be at least 1s",
            ));
        }
        match (&self.file, &self.url) {
            (Some(file), None) => Ok(JwksSource::File(file.into())),
            (None, Some(url)) => absolute_url(url, &format!("{path}.url")).map(JwksSource::Url),
            _ => Err(ConfigError::field(
                path,
                "set exactly one of `file` and `url`",
            )),
        }
    }
}

/// An absolute `http(s)://` URL with a host, or an error at `path`.
fn absolute_url(url: &str, path: &str) -> Result<http::Uri, ConfigError> {
    let bad = |why: &str| ConfigError::field(path, format!("{url:?} {why}"));
    let uri: http::Uri = url.parse().map_err(|_| bad("is not a URL"))?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) {
        return Err(bad("must start with https:// or http://"));
    }
    match uri.authority() {
        Some(a) if !a.host().is_empty() && !a.as_str().contains('@') => Ok(uri),
        _ => Err(bad("must have a host and no userinfo")),
    }
}
