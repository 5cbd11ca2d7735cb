//! Prompt token estimates before the upstream answers, with OpenAI's BPE encodings
//! (tiktoken-rs), so limits can charge up front and true up on the real usage.
//!
//! The message overhead is the one OpenAI's cookbook documents for chat models, which
//! agentgateway also uses: 3 tokens per message, plus its role (1 token for every
//! standard role), plus 1 per `name`, plus 3 priming the reply. Only text counts: images,
//! audio, files and tool definitions are not estimated (they are not in
//! [`LlmRequest::prompt`]). Completions and Embeddings inputs have no message overhead;
//! their token-id inputs count as given.
//!
//! Encodings: `o200k_base` for the gpt-4o, gpt-4.1, gpt-4.5, gpt-5, o1, o3, o4 and
//! gpt-oss families; `cl100k_base` for gpt-4, gpt-3.5 and text-embedding-* — and, as
//! an approximation, for every non-OpenAI model (Claude, Llama, Mistral, Gemini…), whose
//! tokenizers are not public or not shipped here. Anthropic's tokenizer is not
//! cl100k_base and its counts differ (not measured here; Anthropic's count_tokens
//! endpoint gives the exact figure): an estimate to charge against a limit, trued up by
//! the response's real usage, never a bill.
//!
//! Each BPE table is built once per process, on first use (tiktoken-rs's singletons,
//! a `LazyLock` each). Building one is expensive — about 200 ms for o200k_base and 45 ms
//! for cl100k_base on the 2-core dev machine, release build — so a processor should call
//! [`prewarm`] when it is configured, not let the first request pay. Counting runs at
//! about 30 MB/s of text (benches/llm.rs): 1 MiB of prompt costs ~30 ms of CPU.

use tiktoken_rs::CoreBPE;

use super::api::Api;
use super::request::LlmRequest;

/// Tokens every chat message costs besides its text: `<|start|>`, `<|message|>` or
/// `\n`, `<|end|>`.
const PER_MESSAGE: u64 = 3;
/// The role's own token.
const PER_ROLE: u64 = 1;
/// A `name` field's extra token.
const PER_NAME: u64 = 1;
/// Every reply is primed with `<|start|>assistant<|message|>`.
const REPLY_PRIMING: u64 = 3;

/// A BPE encoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Encoding {
    O200kBase,
    Cl100kBase,
}

// === impl Encoding ===

impl Encoding {
    /// The encoding for a model name. A provider prefix (`openai/gpt-4o`,
    /// `azure/…`) is ignored; names are case-insensitive.
    pub fn for_model(model: &str) -> Encoding {
        let name = model
            .rsplit('/')
            .next()
            .unwrap_or(model)
            .to_ascii_lowercase();
        const O200K: [&str; 10] = [
            "gpt-4o",
            "chatgpt-4o",
            "gpt-4.1",
            "gpt-4.5",
            "gpt-5",
            "gpt-oss",
            "o1",
            "o3",
            "o4",
            "codex-",
        ];
        if O200K.iter().any(|p| name.starts_with(p)) {
            Encoding::O200kBase
        } else {
            Encoding::Cl100kBase
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Encoding::O200kBase => "o200k_base",
            Encoding::Cl100kBase => "cl100k_base",
        }
    }

    /// Tokens of `text` (special tokens are read as plain text).
    pub fn count(self, text: &str) -> u64 {
        self.bpe().count_ordinary(text) as u64
    }

    fn bpe(self) -> &'static CoreBPE {
        match self {
            Encoding::O200kBase => tiktoken_rs::o200k_base_singleton(),
            Encoding::Cl100kBase => tiktoken_rs::cl100k_base_singleton(),
        }
    }
}

/// Builds both BPE tables now (see the module doc).
pub fn prewarm() {
    Encoding::O200kBase.count("");
    Encoding::Cl100kBase.count("");
}

/// The estimated input tokens of `req` for `model` (see the module doc for the rules).
pub fn estimate_prompt_tokens(model: &str, req: &LlmRequest) -> u64 {
    let encoding = Encoding::for_model(model);
    let text: u64 = req.prompt.iter().map(|p| encoding.count(&p.text)).sum();
    let overhead = match req.api {
        Api::Completions | Api::Embeddings => 0,
        Api::ChatCompletions | Api::Responses | Api::Messages | Api::CountTokens => {
            let names = req
                .prompt
                .iter()
                .filter(|p| p.kind == super::PartKind::Name)
                .count() as u64;
            u64::from(req.messages) * (PER_MESSAGE + PER_ROLE) + names * PER_NAME + REPLY_PRIMING
        }
    };
    text + overhead + req.prompt_token_ids
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llm::LlmRequest;

    #[test]
    fn encoding_by_model_family() {
        for m in [
            "gpt-4o",
            "gpt-4o-mini",
            "GPT-4.1-nano",
            "gpt-5",
            "o1-preview",
            "o3-mini",
            "o4-mini",
            "openai/gpt-4o",
            "chatgpt-4o-latest",
            "gpt-oss-120b",
        ] {
            assert_eq!(Encoding::for_model(m), Encoding::O200kBase, "{m}");
        }
        for m in [
            "gpt-4",
            "gpt-4-turbo",
            "gpt-3.5-turbo",
            "text-embedding-3-small",
            "text-embedding-ada-002",
            "claude-sonnet-4-5",
            "llama-3.1-70b",
            "",
        ] {
            assert_eq!(Encoding::for_model(m), Encoding::Cl100kBase, "{m}");
        }
    }

    #[test]
    fn counts_match_known_tokenizations() {
        // Reference counts from OpenAI's tiktoken.
        assert_eq!(Encoding::Cl100kBase.count("hello world"), 2);
        assert_eq!(Encoding::O200kBase.count("hello world"), 2);
        assert_eq!(Encoding::Cl100kBase.count(""), 0);
    }

    #[test]
    fn chat_overhead_matches_the_cookbook() {
        // The OpenAI cookbook's example: two messages, one with a name.
        let body = br#"{"model":"gpt-4","messages":[
            {"role":"system","content":"You are a helpful assistant."},
            {"role":"user","name":"example_user","content":"New synergies will help drive top-line growth."}
        ]}"#;
        let req = LlmRequest::parse(Api::ChatCompletions, body).unwrap();
        let text = Encoding::Cl100kBase.count("You are a helpful assistant.")
            + Encoding::Cl100kBase.count("New synergies will help drive top-line growth.")
            + Encoding::Cl100kBase.count("example_user");
        // 2 messages × (3 + role) + 1 name + 3 priming.
        assert_eq!(estimate_prompt_tokens("gpt-4", &req), text + 8 + 1 + 3);
    }

    #[test]
    fn completions_and_embeddings_have_no_overhead() {
        let req = LlmRequest::parse(Api::Embeddings, br#"{"input":["hello world",[1,2,3]]}"#);
        // An array mixing strings and token arrays is accepted and both are counted.
        let req = req.unwrap();
        assert_eq!(
            estimate_prompt_tokens("text-embedding-3-small", &req),
            2 + 3
        );
    }
}
