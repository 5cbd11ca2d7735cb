//! `endpointPicker.prefixCache`: where the picker's prefix-cache scores come from. The
//! default, `approximate`, is the picker's own record of where it sent each prompt;
//! `kvEvents` reads each model server's vLLM KV-cache events (a ZeroMQ stream) into an
//! exact index, tokenizing prompts with `tokenizer` to look them up, and falls back to
//! the approximate index for an endpoint that publishes nothing or went silent.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{ConfigError, Duration};

/// The prefix-cache index the picker scores with.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PrefixCacheConfig {
    /// `approximate` (default: where this picker sent each prompt, 64-character blocks)
    /// or `kvEvents` (the blocks each model server reports holding).
    #[serde(default)]
    pub mode: PrefixCacheMode,
    /// The KV-event subscription (`kvEvents` mode).
    #[serde(default)]
    pub kv_events: KvEventsConfig,
    /// How prompts become token ids (`kvEvents` mode). Default `{endpoint: {}}`: the
    /// model server's own `/tokenize`.
    #[serde(default)]
    pub tokenizer: TokenizerConfig,
    /// Tokens per KV-cache block: the model servers' block size (vLLM's `--block-size`).
    /// Default 16.
    #[serde(default = "default_block_size")]
    pub block_size: u32,
}

/// Which prefix-cache index scores the endpoints.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum PrefixCacheMode {
    #[default]
    Approximate,
    KvEvents,
}

/// Where each endpoint publishes its KV-cache events.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct KvEventsConfig {
    /// The port of every endpoint's ZeroMQ PUB socket (`tcp://<endpoint ip>:<port>`).
    /// Default 5557 (vLLM's `tcp://*:5557`).
    #[serde(default = "default_port")]
    pub port: u16,
    /// The publisher's port relative to each endpoint's own (`tcp://<endpoint
    /// ip>:<endpoint port + portOffset>`), for several model servers on one host, each
    /// publishing next to its HTTP port. Replaces `port` when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_offset: Option<i32>,
    /// The topic subscribed to (a prefix; empty is every topic). Default empty.
    #[serde(default)]
    pub topic: String,
    /// An endpoint silent for longer than this is scored from the approximate index
    /// until it publishes again (an idle server publishes nothing, so keep it well above
    /// the gap between two requests of a busy pool). Default `30s`.
    #[serde(default = "default_stale_after")]
    pub stale_after: Duration,
    /// Most blocks indexed per endpoint; the least recently stored go first. Default
    /// 1,000,000.
    #[serde(default = "default_max_blocks")]
    pub max_blocks_per_endpoint: usize,
    /// A pick counts its prompt's blocks as held by the endpoint picked until that
    /// endpoint's events confirm them (llm-d's speculative indexing): while the request
    /// queues and prefills there, and this long after its prefill ends (its first
    /// token, its end or a move elsewhere) for the events to arrive. The blocks are
    /// stored only once the prefill ends, and the prompt's next requests would
    /// otherwise miss it meanwhile. `0s` turns it off. Default `2s`.
    #[serde(default = "default_speculative_ttl")]
    pub speculative_ttl: Duration,
}

/// How a prompt is tokenized: `{endpoint: {...}}` (the default) or
/// `{tiktoken: ENCODING}`, one of the two.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TokenizerConfig {
    /// POST `{model, prompt}` to the model server's vLLM tokenize endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<EndpointTokenizer>,
    /// A BPE encoding in process: `cl100k_base` or `o200k_base` (only right for models
    /// that use it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tiktoken: Option<String>,
}

/// A [`TokenizerConfig`] resolved.
#[derive(Clone, Debug, PartialEq)]
pub enum TokenizerKind {
    Endpoint(EndpointTokenizer),
    Tiktoken(String),
}

impl TokenizerConfig {
    /// The tokenizer chosen (`endpoint` with its defaults when nothing is given).
    pub fn kind(&self) -> TokenizerKind {
        match (&self.endpoint, &self.tiktoken) {
            (_, Some(name)) => TokenizerKind::Tiktoken(name.clone()),
            (Some(e), None) => TokenizerKind::Endpoint(e.clone()),
            (None, None) => TokenizerKind::Endpoint(EndpointTokenizer::default()),
        }
    }
}

/// The model server's tokenize endpoint.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct EndpointTokenizer {
    /// HTTP path. Default `/tokenize`.
    #[serde(default = "default_tokenize_path")]
    pub path: String,
    /// Longest wait for the tokens; past it the pick uses the approximate index.
    /// Default `200ms`, at most `5s`.
    #[serde(default = "default_tokenize_timeout")]
    pub timeout: Duration,
}

impl Default for EndpointTokenizer {
    fn default() -> Self {
        EndpointTokenizer {
            path: default_tokenize_path(),
            timeout: default_tokenize_timeout(),
        }
    }
}

impl Default for PrefixCacheConfig {
    fn default() -> Self {
        PrefixCacheConfig {
            mode: PrefixCacheMode::default(),
            kv_events: KvEventsConfig::default(),
            tokenizer: TokenizerConfig::default(),
            block_size: default_block_size(),
        }
    }
}

impl Default for KvEventsConfig {
    fn default() -> Self {
        KvEventsConfig {
            port: default_port(),
            port_offset: None,
            topic: String::new(),
            stale_after: default_stale_after(),
            max_blocks_per_endpoint: default_max_blocks(),
            speculative_ttl: default_speculative_ttl(),
        }
    }
}

/// Encodings `tokenizer.tiktoken` accepts.
pub const TIKTOKEN_ENCODINGS: [&str; 2] = ["cl100k_base", "o200k_base"];
/// Largest `blockSize`.
pub const MAX_BLOCK_SIZE: u32 = 1024;
/// Largest `kvEvents.maxBlocksPerEndpoint`.
pub const MAX_BLOCKS_PER_ENDPOINT: usize = 16_000_000;

fn default_block_size() -> u32 {
    16
}
fn default_port() -> u16 {
    5557
}
fn default_stale_after() -> Duration {
    Duration::from_secs(30)
}
fn default_speculative_ttl() -> Duration {
    Duration::from_secs(2)
}
fn default_max_blocks() -> usize {
    1_000_000
}
fn default_tokenize_path() -> String {
    "/tokenize".to_string()
}
fn default_tokenize_timeout() -> Duration {
    Duration::from_millis(200)
}

impl PrefixCacheConfig {
    /// Checks the settings; errors name the field under `path`
    /// (`….endpointPicker.prefixCache`).
    pub fn validate(&self, path: &str) -> Result<(), ConfigError> {
        let field =
            |name: &str, message: &str| Err(ConfigError::field(format!("{path}.{name}"), message));
        if self.block_size == 0 || self.block_size > MAX_BLOCK_SIZE {
            return field("blockSize", "must be 1 to 1024 tokens");
        }
        let k = &self.kv_events;
        if k.port == 0 {
            return field("kvEvents.port", "must be a port number above 0");
        }
        if k.port_offset
            .is_some_and(|o| o == 0 || o.unsigned_abs() > 65_535)
        {
            return field("kvEvents.portOffset", "must be -65535 to 65535, not 0");
        }
        if k.stale_after.get().is_zero() {
            return field("kvEvents.staleAfter", "must be more than 0");
        }
        if k.max_blocks_per_endpoint == 0 || k.max_blocks_per_endpoint > MAX_BLOCKS_PER_ENDPOINT {
            return field("kvEvents.maxBlocksPerEndpoint", "must be 1 to 16000000");
        }
        if k.speculative_ttl.get() > std::time::Duration::from_secs(60) {
            return field("kvEvents.speculativeTtl", "must be at most 60s");
        }
        if k.topic.len() > 255 {
            return field("kvEvents.topic", "must be at most 255 bytes");
        }
        if self.tokenizer.endpoint.is_some() && self.tokenizer.tiktoken.is_some() {
            return field("tokenizer", "set one of endpoint and tiktoken");
        }
        match self.tokenizer.kind() {
            TokenizerKind::Endpoint(e) => {
                if !e.path.starts_with('/') {
                    return field("tokenizer.endpoint.path", "must start with /");
                }
                let t = e.timeout.get();
                if t.is_zero() || t > std::time::Duration::from_secs(5) {
                    return field(
                        "tokenizer.endpoint.timeout",
                        "must be more than 0 and at most 5s",
                    );
                }
            }
            TokenizerKind::Tiktoken(name) => {
                if !TIKTOKEN_ENCODINGS.contains(&name.as_str()) {
                    return Err(ConfigError::field(
                        format!("{path}.tokenizer.tiktoken"),
                        format!(
                            "unknown encoding {name:?}: one of {}",
                            TIKTOKEN_ENCODINGS.join(", ")
                        ),
                    ));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> PrefixCacheConfig {
        serde_yaml::from_str(yaml).unwrap_or_else(|e| panic!("{yaml}: {e}"))
    }

    const AT: &str = "routes[0].policies.endpointPicker.prefixCache";

    #[test]
    fn defaults_and_both_tokenizer_forms_parse() {
        let c = parse("{}");
        assert_eq!(c.mode, PrefixCacheMode::Approximate);
        assert_eq!(c.kv_events.port, 5557);
        assert_eq!(
            c.kv_events.stale_after.get(),
            std::time::Duration::from_secs(30)
        );
        assert_eq!(c.block_size, 16);
        assert_eq!(
            c.kv_events.speculative_ttl.get(),
            std::time::Duration::from_secs(2)
        );
        assert_eq!(
            c.tokenizer.kind(),
            TokenizerKind::Endpoint(EndpointTokenizer::default())
        );
        assert_eq!(PrefixCacheConfig::default(), c);
        c.validate(AT).unwrap();
        let c = parse(
            "{mode: kvEvents, kvEvents: {port: 6000, topic: kv, staleAfter: 5s, maxBlocksPerEndpoint: 10},
              tokenizer: {endpoint: {path: /v1/tokenize, timeout: 50ms}}, blockSize: 32}",
        );
        assert_eq!(c.mode, PrefixCacheMode::KvEvents);
        assert_eq!((c.kv_events.port, c.kv_events.topic.as_str()), (6000, "kv"));
        assert_eq!(c.block_size, 32);
        c.validate(AT).unwrap();
        let c = parse("{kvEvents: {portOffset: -2443}}");
        assert_eq!(c.kv_events.port_offset, Some(-2443));
        c.validate(AT).unwrap();
        let c = parse("{mode: kvEvents, tokenizer: {tiktoken: cl100k_base}}");
        assert_eq!(
            c.tokenizer.kind(),
            TokenizerKind::Tiktoken("cl100k_base".into())
        );
        c.validate(AT).unwrap();
    }

    #[test]
    fn unknown_fields_are_refused() {
        for yaml in [
            "{mode: exact}",
            "{kvEvents: {prot: 1}}",
            "{tokenizer: {endpoint: {path: /t, timeot: 1s}}}",
            "{tokenizer: {sentencepiece: x}}",
            "{blocksize: 16}",
        ] {
            assert!(
                serde_yaml::from_str::<PrefixCacheConfig>(yaml).is_err(),
                "{yaml} parsed"
            );
        }
    }

    #[test]
    fn errors_name_the_field_path() {
        for (yaml, field) in [
            ("{kvEvents: {port: 0}}", "kvEvents.port"),
            ("{kvEvents: {portOffset: 0}}", "kvEvents.portOffset"),
            ("{kvEvents: {portOffset: 70000}}", "kvEvents.portOffset"),
            ("{kvEvents: {staleAfter: 0s}}", "kvEvents.staleAfter"),
            (
                "{kvEvents: {speculativeTtl: 61s}}",
                "kvEvents.speculativeTtl",
            ),
            (
                "{kvEvents: {maxBlocksPerEndpoint: 0}}",
                "kvEvents.maxBlocksPerEndpoint",
            ),
            ("{kvEvents: {topic: '{}'}}", "kvEvents.topic"),
            ("{blockSize: 0}", "blockSize"),
            ("{blockSize: 4096}", "blockSize"),
            (
                "{tokenizer: {endpoint: {path: tokenize}}}",
                "tokenizer.endpoint.path",
            ),
            (
                "{tokenizer: {endpoint: {timeout: 0s}}}",
                "tokenizer.endpoint.timeout",
            ),
            (
                "{tokenizer: {endpoint: {timeout: 1m}}}",
                "tokenizer.endpoint.timeout",
            ),
            ("{tokenizer: {tiktoken: p50k_base}}", "tokenizer.tiktoken"),
            (
                "{tokenizer: {endpoint: {}, tiktoken: cl100k_base}}",
                "tokenizer",
            ),
        ] {
            let yaml = yaml.replace("'{}'", &format!("'{}'", "t".repeat(300)));
            let e = parse(&yaml).validate(AT).unwrap_err().to_string();
            assert!(e.contains(&format!("{AT}.{field}:")), "{yaml}: {e}");
        }
    }
}
