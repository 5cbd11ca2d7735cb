//! Bearer-token authentication: JWTs (RFC 7519) checked against a JWKS for signature,
//! issuer, audience, expiry and not-before (with a bounded clock skew), and the scopes
//! a route requires. No transport types: the `mcpAuthentication` processor asks
//! [`JwtAuth::verify`] and turns its answer into 401 / 403 replies with the
//! `WWW-Authenticate` challenge of RFC 6750 and RFC 9728.
//!
//! ```text
//! Authorization: Bearer <jwt> ── bearer_token ──► JwtAuth::verify ──► claims (cx.jwt)
//!                                                   │ kid unknown: KeyStore::refetch_for_unknown_kid
//!                                                   └ AuthError ──► 401 invalid_token / 403 insufficient_scope
//! ```

pub mod crypto;
pub mod issuer;
pub mod jwks;

use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{decode, decode_header, Algorithm, Validation};
use serde_json::Value;

pub use issuer::Issuer;
pub use jwks::{JwksError, JwksSource, Key, KeyStore};

/// The longest token read; longer ones are refused unparsed.
pub const MAX_TOKEN_LEN: usize = 16 * 1024;

/// What a token must satisfy.
#[derive(Debug)]
pub struct JwtAuth {
    pub issuer: String,
    /// The token's `aud` must name one of these (RFC 8707: the server's canonical URI).
    pub audiences: Vec<String>,
    pub clock_skew: Duration,
    /// Every one must be in the token's `scope` (space-separated) or `scp` claim.
    pub required_scopes: Vec<String>,
    pub keys: Arc<KeyStore>,
}

/// Why a request is not let through.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No bearer token at all: the client should start the OAuth flow.
    #[error("a bearer token is required")]
    Missing,
    /// A token that does not verify; the text is the `error_description`.
    #[error("{0}")]
    Invalid(String),
    /// A valid token without the scopes the route requires.
    #[error("the token lacks scope {missing:?}")]
    Scope { missing: String },
    /// The keys could not be obtained (the JWKS source is down and none was ever read).
    #[error("the token's signing keys are unavailable")]
    KeysUnavailable,
}

/// The token of an `Authorization: Bearer …` value (scheme case-insensitive).
pub fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

impl JwtAuth {
    /// The claims of a token that passes every check.
    pub async fn verify(&self, token: &str) -> Result<Value, AuthError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(AuthError::Invalid("token too long".into()));
        }
        self.keys.start_refresh();
        let header =
            decode_header(token).map_err(|_| AuthError::Invalid("malformed token".into()))?;
        let mut candidates = self.candidates(header.kid.as_deref(), header.alg);
        if candidates.is_empty() {
            self.keys.refetch_for_unknown_kid().await;
            candidates = self.candidates(header.kid.as_deref(), header.alg);
        }
        if candidates.is_empty() {
            if !self.keys.loaded() {
                return Err(AuthError::KeysUnavailable);
            }
            return Err(AuthError::Invalid(match header.kid {
                Some(_) => "unknown signing key (kid)".into(),
                None => format!("no key for algorithm {:?}", header.alg),
            }));
        }
        let validation = self.validation(header.alg);
        let mut last = AuthError::Invalid("invalid signature".into());
        for key in candidates {
            match decode::<Value>(token, &key.key, &validation) {
                Ok(data) => return self.check_scopes(data.claims),
                Err(e) => last = AuthError::Invalid(describe(e.kind())),
            }
        }
        Err(last)
    }

    /// The keys that may have signed a token with this `kid` and `alg`.
    fn candidates(&self, kid: Option<&str>, alg: Algorithm) -> Vec<Key> {
        self.keys
            .keys()
            .iter()
            .filter(|k| k.family == alg.family() && k.alg.is_none_or(|a| a == alg))
            .filter(|k| kid.is_none() || k.kid.as_deref() == kid)
            .cloned()
            .collect()
    }

    fn validation(&self, alg: Algorithm) -> Validation {
        let mut v = Validation::new(alg);
        v.set_issuer(&[&self.issuer]);
        v.set_audience(&self.audiences);
        v.set_required_spec_claims(&["exp", "iss", "aud"]);
        v.leeway = self.clock_skew.as_secs();
        v.validate_nbf = true;
        v
    }

    fn check_scopes(&self, claims: Value) -> Result<Value, AuthError> {
        let held = scopes(&claims);
        match self
            .required_scopes
            .iter()
            .find(|s| !held.contains(&s.as_str()))
        {
            Some(missing) => Err(AuthError::Scope {
                missing: missing.clone(),
            }),
            None => Ok(claims),
        }
    }
}

/// The scopes a token holds: `scope` (space-separated, RFC 8693) or `scp` (a list).
pub fn scopes(claims: &Value) -> Vec<&str> {
    if let Some(s) = claims.get("scope").and_then(Value::as_str) {
        return s.split_ascii_whitespace().collect();
    }
    claims
        .get("scp")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// The `error_description` for a token `jsonwebtoken` refused.
fn describe(kind: &ErrorKind) -> String {
    match kind {
        ErrorKind::ExpiredSignature => "token expired".into(),
        ErrorKind::ImmatureSignature => "token not yet valid (nbf)".into(),
        ErrorKind::InvalidIssuer => "wrong issuer".into(),
        ErrorKind::InvalidAudience => "wrong audience".into(),
        ErrorKind::InvalidSignature => "invalid signature".into(),
        ErrorKind::MissingRequiredClaim(c) => format!("missing claim {c:?}"),
        ErrorKind::InvalidAlgorithm | ErrorKind::MissingAlgorithm => {
            "algorithm not allowed for the key".into()
        }
        _ => "malformed token".into(),
    }
}

#[cfg(test)]
mod tests;
