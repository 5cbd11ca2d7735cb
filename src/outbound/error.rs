//! What building a client can fail with, and the two helpers that keep URL credentials
//! out of error text: [`RedactedUrl`] for a URL an error carries, [`error_chain`] for the
//! messages of errors from below (hyper, the OS) that may quote one.

use std::borrow::Cow;
use std::fmt;
use std::path::PathBuf;

use crate::redact::{redact_text, redact_url};

/// Why a client could not be built. Each message carries its cause, so the causes are
/// not also chained as `source()`.
#[derive(Debug, thiserror::Error)]
pub enum OutboundError {
    #[error("TLS protocol versions: {error}")]
    Protocols { error: rustls::Error },
    #[error("CA file {}: {error}", path.display())]
    CaFile {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("CA file {}: bad certificate: {error}", path.display())]
    CaCert { path: PathBuf, error: rustls::Error },
    #[error("CA file {}: no PEM certificate in it", path.display())]
    NoCaCert { path: PathBuf },
    #[error("client certificate {}: {error}", path.display())]
    ClientKey { path: PathBuf, error: String },
    #[error("invalid SNI name {name:?}: {error}")]
    Sni {
        name: String,
        error: rustls::pki_types::InvalidDnsNameError,
    },
}

// === impl RedactedUrl ===

/// A URL that shows itself — `Display` and `Debug` alike — with its userinfo and
/// credential-like query parameters redacted, so that an error or a log line carrying it
/// cannot leak them. [`RedactedUrl::expose`] gives the URL itself, for the request.
#[derive(Clone, PartialEq, Eq)]
pub struct RedactedUrl(String);

impl RedactedUrl {
    pub fn new(url: impl Into<String>) -> Self {
        RedactedUrl(url.into())
    }

    /// The URL with its credentials, for making the request; never for showing.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The URL as it may be shown.
    pub fn redacted(&self) -> Cow<'_, str> {
        redact_url(&self.0)
    }
}

impl From<String> for RedactedUrl {
    fn from(url: String) -> Self {
        RedactedUrl(url)
    }
}

impl From<&str> for RedactedUrl {
    fn from(url: &str) -> Self {
        RedactedUrl(url.to_string())
    }
}

impl fmt::Display for RedactedUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl fmt::Debug for RedactedUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.redacted(), f)
    }
}

/// `e` and its sources, joined by `": "`, with every URL in them redacted: hyper's own
/// message ("client error (Connect)") says little without the causes below it.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    redact_text(&out).into_owned()
}
