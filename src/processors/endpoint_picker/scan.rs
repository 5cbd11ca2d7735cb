//! The picker's reading of a request body as it arrives (`BodyMode::Scan`): the pick
//! needs the model and the prompt's first [`PROMPT_NEEDED`] bytes (what the prefix
//! index hashes: 256 blocks of 64), not the rest of a long prompt. So the body's first
//! bytes are kept until a parse of them — cut and closed by [`PartialJson`] — yields
//! that much prompt text; the rest of the body is only followed for a top-level
//! `"model"`, which the SDKs write after `messages`. Once both are known the pick is
//! made and the request goes on while the rest of its body streams through.
//!
//! Anthropic Messages and Responses start their prompt with a member that may come
//! anywhere in the body (`system`, `instructions`): there the prompt's start is final
//! only once that member has been read whole — at once when it comes before the
//! messages (or input), when it passes when it comes after them (the Anthropic Python
//! SDK's order), at the body's end when there is none.
//!
//! When the model comes last, a router in front that read it into
//! `x-gateway-model-name` (the inference extension's body-based routing) lets the pick
//! start as soon as the prompt's start is in; else the pick waits for the model.
//! A long body that comes in one piece is read the same way: its start parsed, the rest
//! followed. A body that ends before both are known is read whole, as in `Buffer` mode,
//! with that mode's errors; a prefix that does not parse is never an error by itself (the
//! whole body decides).

use bytes::{Bytes, BytesMut};

use crate::epp::prefix::{BLOCK_SIZE, MAX_BLOCKS};
use crate::llm::partial::PartialJson;
use crate::llm::{Api, LlmRequest};

/// Prompt bytes the pick reads: all the prefix index hashes.
pub const PROMPT_NEEDED: usize = BLOCK_SIZE * MAX_BLOCKS;
/// Bytes more that must arrive before the start is parsed again: at least this many,
/// and at least half of what was parsed last time, so that a body whose start never
/// yields the prompt (a long field before it, the wrong shape) costs a bounded number of
/// parses (their bytes add up to at most about three times the body's).
const REPARSE_STEP: usize = 8 * 1024;

/// What a chunk told.
#[derive(Debug, PartialEq)]
pub enum Read {
    /// Not enough yet.
    More,
    /// The pick can be made.
    Ready(Early),
    /// The body ended first: here it is whole.
    Whole(Bytes),
    /// The body ended with the prompt's start read but no model anywhere.
    NoModel { json: bool },
    /// The transport sent only the body's start, and it named no model (`json`: that
    /// start reads as JSON).
    Cut { json: bool },
}

/// What an early pick needs.
#[derive(Debug, PartialEq)]
pub struct Early {
    pub model: String,
    /// The prompt's first [`PROMPT_NEEDED`] bytes.
    pub prompt: Vec<u8>,
    pub max_output_tokens: Option<u64>,
    /// Body bytes read so far.
    pub seen: usize,
}

/// One request body being scanned.
#[derive(Debug)]
pub struct PromptScan {
    /// `None`: not an API tollgate knows; its prompt is the body's bytes.
    api: Option<Api>,
    json: PartialJson,
    /// The body's first bytes, kept until the prompt's start is found in them (then
    /// dropped: the rest is only followed).
    head: BytesMut,
    /// The prompt's start and the output cap, once read.
    prompt: Option<(Vec<u8>, Option<u64>)>,
    /// The model of the part read, or of a router in front.
    model: Option<String>,
    /// The length of the kept start when it was last parsed.
    parsed_at: usize,
    /// Bytes handed to the parser so far.
    parsed_bytes: usize,
    /// The kept start holds the prompt's blocks, but the member that leads the prompt
    /// (see [`leading_member`]) has not been read yet: parsed again once it has.
    awaiting_lead: bool,
}

impl PromptScan {
    /// A scan of a body of `api`; `header_model` is a router's reading of its model.
    pub fn new(api: Api, header_model: Option<String>) -> Self {
        Self::of(Some(api), header_model)
    }

    /// A scan of a body of `api`, or of an API tollgate does not know (`None`: only its
    /// model is read, its bytes are the prompt, as when read whole).
    pub fn of(api: Option<Api>, header_model: Option<String>) -> Self {
        PromptScan {
            api,
            json: PartialJson::new(),
            head: BytesMut::new(),
            prompt: None,
            model: header_model,
            parsed_at: 0,
            parsed_bytes: 0,
            awaiting_lead: false,
        }
    }

    /// The APIs a model server answers whose prompt a body's start tells: Chat
    /// Completions `messages`, Completions `prompt` (in body order), Messages and
    /// Responses (once their leading member has passed).
    pub fn applies_to(api: Option<Api>) -> bool {
        matches!(
            api,
            Some(Api::ChatCompletions | Api::Completions | Api::Messages | Api::Responses)
        )
    }

    /// Whether the prompt's start read from the body's start is final: true unless the
    /// API's prompt starts with a member not yet read.
    fn lead_read(&self) -> bool {
        match self.api.and_then(leading_member) {
            Some(member) => self.json.has_value(member),
            None => true,
        }
    }

    /// Reads the next chunk (`last`: the body ends with it).
    pub fn push(&mut self, chunk: &Bytes, last: bool) -> Read {
        if self.json.is_empty() && last && chunk.len() < PROMPT_NEEDED {
            // A short body, whole: nothing to gain.
            return Read::Whole(chunk.clone());
        }
        // Until the prompt's start is found the chunk is kept and parsed step by step,
        // so a large one (a whole body in one piece) is parsed only as far as needed;
        // the rest is only followed.
        let mut rest = &chunk[..];
        while self.prompt.is_none() && !rest.is_empty() {
            let (piece, more) = rest.split_at(rest.len().min(REPARSE_STEP));
            self.json.push(piece);
            self.head.extend_from_slice(piece);
            self.try_prompt();
            rest = more;
        }
        self.json.push(rest);
        if self.model.is_none() {
            self.model = self.json.model().map(str::to_owned);
        }
        match (&self.prompt, &self.model, last) {
            (Some((prompt, max)), Some(model), _) => Read::Ready(Early {
                model: model.clone(),
                prompt: prompt.clone(),
                max_output_tokens: *max,
                seen: self.json.len(),
            }),
            (None, _, true) => Read::Whole(std::mem::take(&mut self.head).freeze()),
            (Some(_), None, true) => Read::NoModel {
                json: !self.json.lost(),
            },
            _ => Read::More,
        }
    }

    /// No more of the body will come: the transport sent only its start (Envoy's
    /// `BUFFERED_PARTIAL`, up to its buffer limit). The pick is made on what was read —
    /// the prompt's start however short, none when the cut came before it — once the
    /// model is known.
    pub fn cut(&mut self) -> Read {
        if let (None, None) = (&self.prompt, self.api) {
            let head = &self.head[..self.head.len().min(PROMPT_NEEDED)];
            self.prompt = Some((head.to_vec(), None));
        }
        if self.prompt.is_none() && !self.json.lost() {
            let request = self.api.and_then(|api| {
                let closed = self.json.close(&self.head)?;
                LlmRequest::parse(api, &closed).ok()
            });
            if let Some(request) = request {
                let mut text = request.prompt_text().into_bytes();
                text.truncate(PROMPT_NEEDED);
                self.prompt = Some((text, request.max_output_tokens));
                if self.model.is_none() {
                    self.model = request.model.filter(|m| !m.is_empty());
                }
            }
        }
        if self.model.is_none() {
            self.model = self.json.model().map(str::to_owned);
        }
        match (self.model.take(), self.json.lost()) {
            (Some(model), false) => {
                let (prompt, max_output_tokens) = self.prompt.take().unwrap_or_default();
                Read::Ready(Early {
                    model,
                    prompt,
                    max_output_tokens,
                    seen: self.json.len(),
                })
            }
            (_, lost) => Read::Cut { json: !lost },
        }
    }

    /// Parses the kept start, cut and closed, when enough new bytes came: the prompt's
    /// start once it is long enough (and the model, if it came before it).
    fn try_prompt(&mut self) {
        let Some(api) = self.api else {
            return;
        };
        let len = self.head.len();
        let step = REPARSE_STEP.max(self.parsed_at / 2);
        let due = match self.awaiting_lead {
            true => self.lead_read(),
            false => len >= PROMPT_NEEDED && len >= self.parsed_at + step,
        };
        if !due || self.json.lost() {
            return;
        }
        // Once the leading member has passed, this is its one parse; a start that still
        // yields no prompt waits for the next step like any other.
        self.awaiting_lead = false;
        self.parsed_at = len;
        let Some(closed) = self.json.close(&self.head) else {
            return;
        };
        self.parsed_bytes += closed.len();
        let Ok(request) = LlmRequest::parse(api, &closed) else {
            return;
        };
        let mut text = request.prompt_text().into_bytes();
        if text.len() < PROMPT_NEEDED {
            return;
        }
        if !self.lead_read() {
            // The prompt's first member may still come: kept, and parsed once it has.
            self.awaiting_lead = true;
            return;
        }
        text.truncate(PROMPT_NEEDED);
        self.prompt = Some((text, request.max_output_tokens));
        if self.model.is_none() {
            self.model = request.model.filter(|m| !m.is_empty());
        }
        self.head = BytesMut::new();
    }
}

/// The top-level member an API's prompt text starts with that the body may carry
/// after the rest of the prompt.
fn leading_member(api: Api) -> Option<&'static str> {
    match api {
        Api::Messages => Some("system"),
        Api::Responses => Some("instructions"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chat(model_first: bool, prompt_chars: usize) -> String {
        let text = "abcdefgh".repeat(prompt_chars / 8);
        let messages = format!(
            r#"[{{"role":"system","content":"be brief"}},{{"role":"user","content":"{text}"}}]"#
        );
        if model_first {
            format!(r#"{{"model":"m1","max_tokens":7,"messages":{messages}}}"#)
        } else {
            format!(r#"{{"messages":{messages},"max_tokens":7,"model":"m1"}}"#)
        }
    }

    /// Pushes `body` in `piece`-byte chunks; the first answer that is not `More`, and
    /// the bytes pushed until then.
    fn feed(scan: &mut PromptScan, body: &str, piece: usize) -> (Read, usize) {
        let bytes = Bytes::copy_from_slice(body.as_bytes());
        let mut at = 0;
        while at < bytes.len() {
            let end = (at + piece).min(bytes.len());
            let read = scan.push(&bytes.slice(at..end), end == bytes.len());
            if read != Read::More {
                return (read, end);
            }
            at = end;
        }
        (Read::More, at)
    }

    #[test]
    fn a_model_first_long_prompt_is_ready_after_its_first_blocks() {
        let body = chat(true, 220_000);
        let mut scan = PromptScan::new(Api::ChatCompletions, None);
        let (read, at) = feed(&mut scan, &body, 16_384);
        let Read::Ready(early) = read else {
            panic!("{read:?}")
        };
        assert!(at <= 3 * 16_384, "ready after {at} bytes");
        assert_eq!(early.model, "m1");
        assert_eq!(early.max_output_tokens, Some(7));
        // The same bytes the whole body's prompt starts with.
        let whole = LlmRequest::parse(Api::ChatCompletions, body.as_bytes()).unwrap();
        assert_eq!(
            early.prompt,
            whole.prompt_text().as_bytes()[..PROMPT_NEEDED]
        );
    }

    #[test]
    fn a_model_last_body_waits_for_its_model_unless_a_router_named_it() {
        let body = chat(false, 100_000);
        let mut scan = PromptScan::new(Api::ChatCompletions, None);
        let (read, at) = feed(&mut scan, &body, 16_384);
        assert!(
            matches!(read, Read::Ready(ref e) if e.model == "m1"),
            "{read:?}"
        );
        assert_eq!(at, body.len(), "the model is the last field");

        let mut scan = PromptScan::new(Api::ChatCompletions, Some("m1".into()));
        let (read, at) = feed(&mut scan, &body, 16_384);
        assert!(
            matches!(read, Read::Ready(ref e) if e.model == "m1"),
            "{read:?}"
        );
        assert!(at <= 3 * 16_384, "ready after {at} bytes");
    }

    #[test]
    fn short_and_unreadable_bodies_are_read_whole() {
        // Short: the prompt never reaches the blocks the index hashes.
        let body = chat(true, 1_000);
        let mut scan = PromptScan::new(Api::ChatCompletions, Some("m1".into()));
        let (read, _) = feed(&mut scan, &body, 100);
        assert_eq!(read, Read::Whole(Bytes::copy_from_slice(body.as_bytes())));
        // One chunk: handed on as it is.
        let mut scan = PromptScan::new(Api::ChatCompletions, None);
        assert!(matches!(feed(&mut scan, &body, 1 << 20).0, Read::Whole(_)));
        // A long body in one chunk is read early all the same (no whole parse).
        let long = chat(false, 100_000);
        let mut scan = PromptScan::new(Api::ChatCompletions, None);
        let Read::Ready(early) = feed(&mut scan, &long, 1 << 20).0 else {
            panic!("not ready")
        };
        assert_eq!((early.model.as_str(), early.seen), ("m1", long.len()));
        assert_eq!(early.prompt.len(), PROMPT_NEEDED);
        // Not JSON.
        let junk = "x".repeat(40_000);
        let mut scan = PromptScan::new(Api::ChatCompletions, Some("m1".into()));
        assert!(matches!(feed(&mut scan, &junk, 16_384).0, Read::Whole(b) if b.len() == 40_000));
        // The wrong shape: `messages` a string — the whole body's parse says why.
        let bad = format!(r#"{{"model":"m1","messages":"{}"}}"#, "y".repeat(40_000));
        let mut scan = PromptScan::new(Api::ChatCompletions, None);
        assert!(matches!(feed(&mut scan, &bad, 16_384).0, Read::Whole(_)));
    }

    #[test]
    fn a_start_that_never_yields_the_prompt_costs_a_bounded_number_of_parses() {
        let big = "x".repeat(2 << 20);
        // The wrong shape all along: read whole at the end.
        let wrong = format!(r#"{{"model":"m1","messages":"{big}"}}"#);
        let mut scan = PromptScan::new(Api::ChatCompletions, None);
        assert!(matches!(feed(&mut scan, &wrong, 16_384).0, Read::Whole(_)));
        assert!(
            scan.parsed_bytes <= 3 * wrong.len(),
            "{} bytes parsed for a body of {}",
            scan.parsed_bytes,
            wrong.len()
        );
        // A long field before the prompt: the prompt is found after it all the same.
        let late = chat(true, 1_500_000).replacen(
            r#""messages""#,
            &format!(r#""metadata":{{"note":"{big}"}},"messages""#),
            1,
        );
        let mut scan = PromptScan::new(Api::ChatCompletions, None);
        let (read, at) = feed(&mut scan, &late, 16_384);
        let Read::Ready(early) = read else {
            panic!("{read:?}")
        };
        assert_eq!(early.prompt.len(), PROMPT_NEEDED);
        assert!(at < late.len(), "ready after {at} of {} bytes", late.len());
        assert!(
            scan.parsed_bytes <= 3 * at,
            "{} bytes parsed",
            scan.parsed_bytes
        );
    }

    #[test]
    fn a_body_without_a_model_is_told_apart_from_broken_json() {
        let body = chat(true, 60_000).replace(r#""model":"m1","#, "");
        let mut scan = PromptScan::new(Api::ChatCompletions, None);
        assert_eq!(
            feed(&mut scan, &body, 16_384).0,
            Read::NoModel { json: true }
        );
        let broken = format!("{}]]]", &body[..body.len() - 1]);
        let mut scan = PromptScan::new(Api::ChatCompletions, None);
        assert_eq!(
            feed(&mut scan, &broken, 16_384).0,
            Read::NoModel { json: false }
        );
    }

    #[test]
    fn a_cut_body_is_picked_on_what_came() {
        // Model first: the prompt's start as far as it came, even short of the blocks.
        let body = chat(true, 100_000);
        let mut scan = PromptScan::new(Api::ChatCompletions, None);
        assert_eq!(
            scan.push(&Bytes::copy_from_slice(&body.as_bytes()[..9_000]), false),
            Read::More
        );
        let Read::Ready(early) = scan.cut() else {
            panic!("not ready")
        };
        assert_eq!((early.model.as_str(), early.seen), ("m1", 9_000));
        assert_eq!(early.max_output_tokens, Some(7));
        let whole = LlmRequest::parse(Api::ChatCompletions, body.as_bytes()).unwrap();
        assert!(!early.prompt.is_empty() && early.prompt.len() < 9_000);
        assert!(whole.prompt_text().as_bytes().starts_with(&early.prompt));
        // Model last: only a router's header names it.
        let body = chat(false, 100_000);
        let start = Bytes::copy_from_slice(&body.as_bytes()[..40_000]);
        let mut scan = PromptScan::new(Api::ChatCompletions, None);
        assert_eq!(scan.push(&start, false), Read::More);
        assert_eq!(scan.cut(), Read::Cut { json: true });
        let mut scan = PromptScan::new(Api::ChatCompletions, Some("m1".into()));
        let Read::Ready(early) = scan.push(&start, false) else {
            panic!("the prompt's blocks came")
        };
        assert_eq!(early.prompt.len(), PROMPT_NEEDED);
        // Cut before the prompt: picked without one.
        let mut scan = PromptScan::new(Api::ChatCompletions, None);
        assert_eq!(
            scan.push(&Bytes::from_static(br#"{"model":"m3","tools":[{"#), false),
            Read::More
        );
        let Read::Ready(early) = scan.cut() else {
            panic!("not ready")
        };
        assert_eq!((early.model.as_str(), early.prompt.len()), ("m3", 0));
        // Not JSON.
        let mut scan = PromptScan::new(Api::ChatCompletions, Some("m1".into()));
        assert_eq!(
            scan.push(&Bytes::from("x".repeat(40_000)), false),
            Read::More
        );
        assert_eq!(scan.cut(), Read::Cut { json: false });
    }

    #[test]
    fn completions_prompts_scan_too() {
        let text = "z".repeat(50_000);
        let body = format!(r#"{{"model":"m2","prompt":"{text}","max_tokens":3}}"#);
        let mut scan = PromptScan::new(Api::Completions, None);
        let Read::Ready(early) = feed(&mut scan, &body, 16_384).0 else {
            panic!("not ready")
        };
        assert_eq!(early.prompt.len(), PROMPT_NEEDED);
        assert_eq!(early.max_output_tokens, None, "it comes after the prompt");
        assert!(PromptScan::applies_to(Some(Api::Completions)));
        assert!(PromptScan::applies_to(Some(Api::Messages)));
        assert!(!PromptScan::applies_to(Some(Api::Embeddings)));
        assert!(!PromptScan::applies_to(None));
    }

    /// An Anthropic Messages body of a long prompt: `system` before or after
    /// `messages` (the Python SDK writes it after, with `model` between, and `tools`
    /// last), or none.
    fn messages_body(system: Option<bool>) -> String {
        let text = "abcdefgh".repeat(100_000 / 8);
        let messages = format!(r#"[{{"role":"user","content":"{text}"}}]"#);
        let tools = format!(
            r#"[{{"name":"t","description":"{}","input_schema":{{"type":"object"}}}}]"#,
            "d".repeat(60_000)
        );
        match system {
            Some(true) => format!(
                r#"{{"model":"m1","max_tokens":7,"system":"be brief","messages":{messages}}}"#
            ),
            Some(false) => format!(
                r#"{{"max_tokens":7,"messages":{messages},"model":"m1","system":[{{"type":"text","text":"be brief"}}],"tools":{tools}}}"#
            ),
            None => format!(r#"{{"model":"m1","max_tokens":7,"messages":{messages}}}"#),
        }
    }

    /// The first [`PROMPT_NEEDED`] bytes of the whole body's prompt.
    fn whole_prompt_start(api: Api, body: &str) -> Vec<u8> {
        let whole = LlmRequest::parse(api, body.as_bytes()).unwrap();
        whole.prompt_text().as_bytes()[..PROMPT_NEEDED].to_vec()
    }

    #[test]
    fn a_messages_prompt_is_ready_once_its_system_has_passed() {
        // `system` first: ready after the prompt's first blocks, as a chat body.
        let body = messages_body(Some(true));
        let mut scan = PromptScan::new(Api::Messages, None);
        let (read, at) = feed(&mut scan, &body, 16_384);
        let Read::Ready(early) = read else {
            panic!("{read:?}")
        };
        assert!(at <= 3 * 16_384, "ready after {at} bytes");
        assert!(early.prompt.starts_with(b"be brief\nabcdefgh"));
        assert_eq!(early.prompt, whole_prompt_start(Api::Messages, &body));
        // `system` after the messages: ready when it has passed, before the tools; the
        // prompt still starts with it.
        let body = messages_body(Some(false));
        let mut scan = PromptScan::new(Api::Messages, None);
        let (read, at) = feed(&mut scan, &body, 16_384);
        let Read::Ready(early) = read else {
            panic!("{read:?}")
        };
        let system_end = body.find(r#","tools""#).unwrap();
        assert!(
            at >= system_end && at < system_end + 16_384,
            "ready after {at} bytes, the system ends at {system_end}"
        );
        assert_eq!(early.prompt, whole_prompt_start(Api::Messages, &body));
        assert_eq!(
            (early.model.as_str(), early.max_output_tokens),
            ("m1", Some(7))
        );
        // No `system`: one may still come, so the body is read whole.
        let body = messages_body(None);
        let mut scan = PromptScan::new(Api::Messages, None);
        let (read, at) = feed(&mut scan, &body, 16_384);
        assert_eq!(read, Read::Whole(Bytes::copy_from_slice(body.as_bytes())));
        assert_eq!(at, body.len());
    }

    #[test]
    fn a_responses_prompt_is_ready_once_its_instructions_have_passed() {
        let text = "q".repeat(50_000);
        let body = format!(r#"{{"model":"m2","instructions":"answer","input":"{text}"}}"#);
        let mut scan = PromptScan::new(Api::Responses, None);
        let (read, at) = feed(&mut scan, &body, 16_384);
        let Read::Ready(early) = read else {
            panic!("{read:?}")
        };
        assert!(at < body.len(), "ready after {at} bytes");
        assert_eq!(early.prompt, whole_prompt_start(Api::Responses, &body));
        // Instructions last: known only at the end.
        let body = format!(r#"{{"model":"m2","input":"{text}","instructions":"answer"}}"#);
        let mut scan = PromptScan::new(Api::Responses, None);
        let (read, _) = feed(&mut scan, &body, 16_384);
        let Read::Ready(early) = read else {
            panic!("{read:?}")
        };
        assert_eq!(early.seen, body.len());
        assert_eq!(early.prompt, whole_prompt_start(Api::Responses, &body));
    }
}
