//! Secrets redacted by their shape, wherever tollgate shows text it did not write: log
//! lines, the `/config` dump, error messages. One place decides what a secret looks like:
//!
//! - a URL's userinfo (`https://user:pass@host`) and its credential-like query or
//!   fragment parameters (`?key=…`, `api_key`, `token`, `sig`, `password`, …);
//! - the values of headers that carry credentials (`authorization`, `cookie`,
//!   `x-goog-api-key`, and any name containing `token`, `secret`, `key`, …);
//! - fields named like secrets (`apiKey`, `password`, `clientSecret`, …).
//!
//! Everything else passes through borrowed, so the common case costs one scan.

use std::borrow::Cow;

/// What a redacted value is replaced with.
pub const REDACTED: &str = "<redacted>";

/// Header names that carry credentials although no word below says so.
const CREDENTIAL_HEADERS: &[&str] = &["cookie", "set-cookie", "www-authenticate"];

/// A header or parameter name containing one of these carries a credential.
const SECRET_WORDS: &[&str] = &[
    "auth",
    "token",
    "secret",
    "key",
    "password",
    "passwd",
    "credential",
    "signature",
    "session",
];

/// Query parameter names that are credentials although no word above is in them.
const SECRET_PARAMS: &[&str] = &["sig", "pwd", "pass", "code", "jwt", "sas"];

/// Whether a header with this name carries a credential (case-insensitive).
pub fn is_secret_header(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    CREDENTIAL_HEADERS.contains(&lower.as_str()) || SECRET_WORDS.iter().any(|w| lower.contains(w))
}

/// Whether a URL query (or fragment) parameter with this name carries a credential.
pub fn is_secret_param(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    SECRET_PARAMS.contains(&lower.as_str()) || SECRET_WORDS.iter().any(|w| lower.contains(w))
}

/// Whether a config field with this name holds a secret (`apiKey`, `password`,
/// `clientSecret`, …). Names of files holding secrets (`keyFile`) are not secrets.
pub fn is_secret_field(name: &str) -> bool {
    const ENDINGS: &[&str] = &[
        "key",
        "apikey",
        "token",
        "secret",
        "password",
        "passwd",
        "credentials",
    ];
    let lower = name.to_ascii_lowercase();
    !lower.ends_with("file") && ENDINGS.iter().any(|w| lower.ends_with(w))
}

/// `url` with its userinfo and credential-like query and fragment parameters replaced
/// by [`REDACTED`]. Text that is not a URL with such parts comes back borrowed.
pub fn redact_url(url: &str) -> Cow<'_, str> {
    let Some(scheme_end) = url.find("://") else {
        return Cow::Borrowed(url);
    };
    let rest_at = scheme_end + 3;
    let authority_end = url[rest_at..]
        .find(['/', '?', '#'])
        .map_or(url.len(), |i| rest_at + i);
    let userinfo_end = url[rest_at..authority_end].rfind('@').map(|i| rest_at + i);
    let query_at = url[authority_end..]
        .find(['?', '#'])
        .map(|i| authority_end + i);
    let secret_param = query_at.is_some_and(|q| has_secret_param(&url[q + 1..]));
    if userinfo_end.is_none() && !secret_param {
        return Cow::Borrowed(url);
    }
    let mut out = String::with_capacity(url.len());
    match userinfo_end {
        Some(at) => {
            out.push_str(&url[..rest_at]);
            out.push_str(REDACTED);
            out.push_str(&url[at..authority_end]);
        }
        None => out.push_str(&url[..authority_end]),
    }
    let Some(q) = query_at else {
        out.push_str(&url[authority_end..]);
        return Cow::Owned(out);
    };
    out.push_str(&url[authority_end..q]);
    redact_params(&url[q..], &mut out);
    Cow::Owned(out)
}

/// Whether a query or fragment (after its `?`/`#`) holds a credential-like parameter.
fn has_secret_param(params: &str) -> bool {
    params
        .split(['&', ';', '?', '#'])
        .any(|p| p.split_once('=').is_some_and(|(k, _)| is_secret_param(k)))
}

/// Copies `params` (starting at its `?` or `#`) into `out`, values of secret names
/// replaced.
fn redact_params(params: &str, out: &mut String) {
    let mut rest = params;
    while !rest.is_empty() {
        // Each piece starts with its separator.
        let end = rest[1..]
            .find(['&', ';', '?', '#'])
            .map_or(rest.len(), |i| i + 1);
        let (piece, tail) = rest.split_at(end);
        let (sep, body) = piece.split_at(1);
        out.push_str(sep);
        match body.split_once('=') {
            Some((k, _)) if is_secret_param(k) => {
                out.push_str(k);
                out.push('=');
                out.push_str(REDACTED);
            }
            _ => out.push_str(body),
        }
        rest = tail;
    }
}

/// `text` with every URL in it passed through [`redact_url`]: for free text such as a
/// formatted log line or an error message. A URL ends at whitespace, a quote, `<`, `>`
/// or a backslash (JSON escapes), without the punctuation that may follow it in prose
/// (`: , . ; ) ]`).
pub fn redact_text(text: &str) -> Cow<'_, str> {
    if !text.contains("://") {
        return Cow::Borrowed(text);
    }
    let mut out = String::new();
    let mut copied = 0;
    let mut search = 0;
    while let Some(i) = text[search..].find("://") {
        let sep = search + i;
        let start = text[..sep]
            .rfind(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')))
            .map_or(0, |j| j + 1);
        let end = text[sep..]
            .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '<' | '>' | '\\' | '`'))
            .map_or(text.len(), |j| sep + j);
        let end = sep
            + text[sep..end]
                .trim_end_matches([':', ',', '.', ';', ')', ']'])
                .len();
        if let Cow::Owned(redacted) = redact_url(&text[start..end]) {
            out.push_str(&text[copied..start]);
            out.push_str(&redacted);
            copied = end;
        }
        search = end.max(sep + 3);
    }
    if copied == 0 {
        return Cow::Borrowed(text);
    }
    out.push_str(&text[copied..]);
    Cow::Owned(out)
}

#[cfg(test)]
mod tests;
