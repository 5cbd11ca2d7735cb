//! `limits.buffers`: Buffers that hold client or upstream data.
//!
//! Each bound caps one buffer that a hostile or broken upstream could otherwise grow
//! without limit: the SSE line being read, the SSE event being assembled, a JSON
//! response collected for usage, and what a compressed body inflates to. Hitting one
//! stops inspection of that body; what happens to the rest of it is the policy's failure
//! mode (see the README's "Limits" table).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::config::ConfigError;
use crate::llm::{DecodeLimits, SseLimits};

/// 1 MiB: an SSE line is one `data:` field; providers send a token or a few per line
/// (well under 1 KiB), and even a whole tool-call argument or a final usage chunk stays
/// far below this.
pub const DEFAULT_SSE_LINE_BYTES: usize = SseLimits::DEFAULT.line_bytes;
/// 4 MiB: an event is the `data:` lines joined; a few lines of the largest shape above,
/// with room for servers that split one JSON document over several lines.
pub const DEFAULT_SSE_EVENT_BYTES: usize = SseLimits::DEFAULT.event_bytes;
/// 16 MiB: a non-streamed completion with its usage; the largest output windows today
/// (~128k tokens) are well under 1 MiB of JSON, so this leaves room for `n` choices and
/// logprobs.
pub const DEFAULT_JSON_BODY_BYTES: usize = 16 * 1024 * 1024;
/// 64 MiB: what one response body may decompress to while it is inspected; four times
/// the JSON bound, so any body tollgate would read whole fits after decoding.
pub const DEFAULT_DECOMPRESSED_BYTES: u64 = DecodeLimits::DEFAULT.max_bytes;
/// 400: measured on chat-completions SSE, gzip shrinks varied text about 45 times and a
/// model repeating one token about 250 times (its events differ in a few bytes); JSON
/// bodies shrink 5–20 times. A body inflating past 400 times is a bomb. The byte bound
/// does most of the work; the ratio stops a bomb early, before it reaches it.
pub const DEFAULT_DECOMPRESSION_RATIO: u32 = DecodeLimits::DEFAULT.max_ratio;

/// Above this, a value is a typo rather than a bound (1 TiB for sizes).
const MAX_BYTES: u64 = 1 << 40;
/// Above this, a ratio bounds nothing (deflate tops out near 1032:1).
const MAX_RATIO: u32 = 100_000;

/// Buffers that hold client or upstream data.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BufferLimits {
    /// Longest SSE line held while its end has not arrived, in bytes. Default 1 MiB.
    #[serde(default = "sse_line_bytes")]
    pub sse_line_bytes: usize,
    /// Largest SSE event (its `data` lines joined) held before it completes, in bytes.
    /// Default 4 MiB.
    #[serde(default = "sse_event_bytes")]
    pub sse_event_bytes: usize,
    /// Largest non-streamed JSON response collected to read its usage, in bytes; past
    /// it the response passes uncounted. Default 16 MiB.
    #[serde(default = "json_body_bytes")]
    pub json_body_bytes: usize,
    /// Most bytes one compressed response body may decode to while it is inspected.
    /// Default 64 MiB.
    #[serde(default = "decompressed_bytes")]
    pub decompressed_bytes: u64,
    /// Most decoded bytes per compressed byte (checked once a body has decoded to more
    /// than 1 MiB, so a short, very compressible body always passes). Default 400.
    #[serde(default = "decompression_ratio")]
    pub decompression_ratio: u32,
}

fn sse_line_bytes() -> usize {
    DEFAULT_SSE_LINE_BYTES
}
fn sse_event_bytes() -> usize {
    DEFAULT_SSE_EVENT_BYTES
}
fn json_body_bytes() -> usize {
    DEFAULT_JSON_BODY_BYTES
}
fn decompressed_bytes() -> u64 {
    DEFAULT_DECOMPRESSED_BYTES
}
fn decompression_ratio() -> u32 {
    DEFAULT_DECOMPRESSION_RATIO
}

impl Default for BufferLimits {
    fn default() -> Self {
        BufferLimits {
            sse_line_bytes: DEFAULT_SSE_LINE_BYTES,
            sse_event_bytes: DEFAULT_SSE_EVENT_BYTES,
            json_body_bytes: DEFAULT_JSON_BODY_BYTES,
            decompressed_bytes: DEFAULT_DECOMPRESSED_BYTES,
            decompression_ratio: DEFAULT_DECOMPRESSION_RATIO,
        }
    }
}

impl BufferLimits {
    /// Checks every bound; `path` is this section's field path (`limits.buffers`).
    pub fn validate(&self, path: &str) -> Result<(), ConfigError> {
        let sizes = [
            ("sseLineBytes", self.sse_line_bytes as u64),
            ("sseEventBytes", self.sse_event_bytes as u64),
            ("jsonBodyBytes", self.json_body_bytes as u64),
            ("decompressedBytes", self.decompressed_bytes),
        ];
        for (name, value) in sizes {
            if value == 0 || value > MAX_BYTES {
                return Err(ConfigError::field(
                    format!("{path}.{name}"),
                    format!("{value} is not a usable size: give 1 to {MAX_BYTES} bytes"),
                ));
            }
        }
        if self.sse_event_bytes < self.sse_line_bytes {
            return Err(ConfigError::field(
                format!("{path}.sseEventBytes"),
                "an event holds at least one line: give at least sseLineBytes",
            ));
        }
        let ratio = self.decompression_ratio;
        if !(1..=MAX_RATIO).contains(&ratio) {
            return Err(ConfigError::field(
                format!("{path}.decompressionRatio"),
                format!("{ratio} is not a usable ratio: give 1 to {MAX_RATIO}"),
            ));
        }
        Ok(())
    }

    /// The SSE parser's bounds.
    pub fn sse(&self) -> SseLimits {
        SseLimits {
            line_bytes: self.sse_line_bytes,
            event_bytes: self.sse_event_bytes,
        }
    }

    /// The body decoder's bounds.
    pub fn decode(&self) -> DecodeLimits {
        DecodeLimits {
            max_bytes: self.decompressed_bytes,
            max_ratio: self.decompression_ratio,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(yaml: &str) -> Result<(), ConfigError> {
        let limits: BufferLimits = serde_yaml::from_str(yaml).unwrap();
        limits.validate("limits.buffers")
    }

    #[test]
    fn defaults_are_valid_and_keys_are_camel_case() {
        let limits: BufferLimits = serde_yaml::from_str("{}").unwrap();
        assert_eq!(limits.sse_line_bytes, 1024 * 1024);
        assert_eq!(limits.decompression_ratio, 400);
        limits.validate("limits.buffers").unwrap();
        check("{sseLineBytes: 10, sseEventBytes: 20, jsonBodyBytes: 5, decompressedBytes: 7, decompressionRatio: 3}").unwrap();
        assert!(serde_yaml::from_str::<BufferLimits>("{lineBytes: 1}").is_err());
    }

    #[test]
    fn zero_and_absurd_values_name_their_field() {
        for (yaml, field) in [
            ("{sseLineBytes: 0}", "limits.buffers.sseLineBytes"),
            ("{sseEventBytes: 0}", "limits.buffers.sseEventBytes"),
            ("{sseEventBytes: 1000}", "limits.buffers.sseEventBytes"),
            ("{jsonBodyBytes: 0}", "limits.buffers.jsonBodyBytes"),
            (
                "{decompressedBytes: 18446744073709551615}",
                "limits.buffers.decompressedBytes",
            ),
            (
                "{decompressionRatio: 0}",
                "limits.buffers.decompressionRatio",
            ),
            (
                "{decompressionRatio: 1000000}",
                "limits.buffers.decompressionRatio",
            ),
        ] {
            let err = check(yaml).unwrap_err().to_string();
            assert!(err.starts_with(&format!("{field}: ")), "{yaml}: {err}");
        }
    }
}
