//! What accounting keeps for the access line, only when a `logging.fields` expression
//! reads it (`crate::access_log::Wants`): the request's sampling parameters
//! (`llm.params`, one more typed read of the body it already holds) and the
//! completion's text (`llm.completion`: the streamed text deltas it already follows, or
//! the texts of a JSON response it already collects), cut at
//! `crate::access_log::BODY_LIMIT` bytes in all.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::access_log::{cut, BODY_LIMIT};
use crate::llm::{Api, LlmRequest};

/// Which of the two to keep.
#[derive(Clone, Copy, Debug, Default)]
pub struct Keep {
    pub params: bool,
    pub completion: bool,
}

/// The parameters agentgateway's `llm.params` names, as the body has them.
#[derive(Deserialize, Serialize)]
struct Params {
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_p: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_k: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    frequency_penalty: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    presence_penalty: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    seed: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    encoding_format: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dimensions: Option<Value>,
}

/// The request's parameters; `max_tokens` is the output cap whatever the API calls it
/// (`max_completion_tokens`, `max_output_tokens`). `None` when the body is not an
/// object.
pub fn params(body: &[u8], request: &LlmRequest) -> Option<Map<String, Value>> {
    let read: Params = serde_json::from_slice(body).ok()?;
    let Ok(Value::Object(mut map)) = serde_json::to_value(read) else {
        return None;
    };
    if let Some(cap) = request.max_output_tokens {
        map.insert("max_tokens".into(), cap.into());
    }
    Some(map)
}

/// The completion's text as it is followed.
#[derive(Debug)]
pub struct Completion {
    texts: Vec<String>,
    room: usize,
}

impl Default for Completion {
    fn default() -> Self {
        Completion {
            texts: Vec::new(),
            room: BODY_LIMIT,
        }
    }
}

impl Completion {
    /// A streamed text delta: a stream's text is one entry, its choices together.
    pub fn push_delta(&mut self, text: &str) {
        if self.texts.is_empty() {
            self.texts.push(String::new());
        }
        let kept = cut(text, self.room);
        self.room -= kept.len();
        self.texts[0].push_str(kept);
    }

    /// The texts of a whole JSON response of `api`: one per choice (Chat, Completions),
    /// per output message (Responses), or the message's (Messages).
    pub fn read_json(&mut self, api: Api, body: &[u8]) {
        let Ok(json) = serde_json::from_slice::<Value>(body) else {
            return;
        };
        for text in json_texts(api, &json) {
            let kept = cut(&text, self.room);
            self.room -= kept.len();
            self.texts.push(kept.to_string());
        }
    }

    pub fn texts(&self) -> Vec<String> {
        self.texts.clone()
    }
}

fn json_texts(api: Api, json: &Value) -> Vec<String> {
    let list = |v: &Value| v.as_array().cloned().unwrap_or_default();
    let text_parts = |parts: &Value, kind: &str| -> String {
        list(parts)
            .iter()
            .filter(|p| p["type"] == kind)
            .filter_map(|p| p["text"].as_str())
            .collect()
    };
    match api {
        Api::ChatCompletions => list(&json["choices"])
            .iter()
            .map(|c| match &c["message"]["content"] {
                Value::String(s) => s.clone(),
                parts => text_parts(parts, "text"),
            })
            .collect(),
        Api::Completions => list(&json["choices"])
            .iter()
            .filter_map(|c| c["text"].as_str().map(str::to_string))
            .collect(),
        Api::Responses => list(&json["output"])
            .iter()
            .filter(|item| item["type"] == "message")
            .map(|item| text_parts(&item["content"], "output_text"))
            .collect(),
        Api::Messages => vec![text_parts(&json["content"], "text")],
        Api::Embeddings | Api::CountTokens => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn params_are_read_and_the_cap_normalized() {
        let body = br#"{"model":"m","temperature":0.2,"top_p":1,"max_completion_tokens":50,"messages":[]}"#;
        let request = LlmRequest::parse(Api::ChatCompletions, body).unwrap();
        let p = params(body, &request).unwrap();
        assert_eq!(p["temperature"], json!(0.2));
        assert_eq!(p["top_p"], json!(1));
        assert_eq!(p["max_tokens"], json!(50));
        assert!(!p.contains_key("seed"));
    }

    #[test]
    fn texts_of_each_api_and_the_bound() {
        let mut c = Completion::default();
        let chat =
            json!({"choices": [{"message": {"content": "a"}}, {"message": {"content": "b"}}]});
        c.read_json(Api::ChatCompletions, chat.to_string().as_bytes());
        assert_eq!(c.texts(), ["a", "b"]);
        let messages = json!({"content": [{"type": "text", "text": "x"}, {"type": "tool_use"}, {"type": "text", "text": "y"}]});
        let mut c = Completion::default();
        c.read_json(Api::Messages, messages.to_string().as_bytes());
        assert_eq!(c.texts(), ["xy"]);
        let responses = json!({"output": [{"type": "reasoning"}, {"type": "message", "content": [{"type": "output_text", "text": "r"}]}]});
        let mut c = Completion::default();
        c.read_json(Api::Responses, responses.to_string().as_bytes());
        assert_eq!(c.texts(), ["r"]);
        let mut c = Completion::default();
        c.push_delta("Hel");
        c.push_delta("lo");
        c.push_delta(&"é".repeat(BODY_LIMIT));
        let texts = c.texts();
        assert!(texts[0].starts_with("Hello"));
        assert!(texts[0].len() <= BODY_LIMIT && texts[0].len() > BODY_LIMIT - 2);
    }
}
