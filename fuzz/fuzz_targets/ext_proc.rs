//! The ext_proc stream state machine, fed arbitrary `ProcessingRequest` sequences over
//! real pipelines (token accounting, prompt guards, header policies, token limits).
//! Every answer is a response of the message's side (or an immediate response) or a
//! protocol error that ends the stream; outside FULL_DUPLEX_STREAMED each message gets
//! exactly one reply of its kind; nothing follows an immediate response; streamed
//! chunks stay within `MAX_STREAMED_CHUNK`; ending and dropping the stream never panics.
//!
//! The input is a text script, one message per line, so seeds are readable:
//!
//! ```text
//! config 1                   pipeline 0..=3 (see PIPELINES)
//! modes streamed buffered    Envoy's body modes: none streamed buffered partial duplex
//! obs                        observability mode for the whole stream (a filter setting
//!                            in Envoy: it never changes within a stream)
//! route openai               xds.route_name on the next request headers
//! rh eos ; :method: POST ; :path: /v1/chat/completions ; content-type: application/json
//! qb eos {"model":"gpt-4o"}  request body (escapes: \n \r \t \\ \xNN)
//! qt ; x-trailer: 1          request trailers
//! sh ; :status: 200          response headers; sb / st: response body / trailers
//! empty                      a message with no request phase
//! ```
#![no_main]

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use envoy_types::pb::envoy::config::core::v3::{HeaderMap, HeaderValue};
use envoy_types::pb::envoy::extensions::filters::http::ext_proc::v3::processing_mode::BodySendMode;
use envoy_types::pb::envoy::service::ext_proc::v3::{
    body_mutation::Mutation, processing_request::Request as In,
    processing_response::Response as Out, HttpBody, HttpHeaders, HttpTrailers, ProcessingRequest,
    ProcessingResponse, ProtocolConfiguration,
};
use envoy_types::pb::google::protobuf::{value::Kind, Struct, Value};
use libfuzzer_sys::fuzz_target;
use tokio::runtime::Runtime;
use tollgate::adapters::ext_proc::{ExtProcStream, MAX_STREAMED_CHUNK};
use tollgate::config::parse_str;
use tollgate::pipeline::Pipeline;
use tollgate::services::Services;

const TOKEN_LIMITS: &str = r#"
binds:
- port: 8080
  listeners:
  - routes:
    - name: limited
      policies:
        tokenAccounting: {}
        tokenLimit:
          limits:
          - name: per-key
            key: 'request.headers["authorization"]'
            tokensPerMinute: 50
      backends:
      - host: 127.0.0.1:8000
"#;

const PIPELINES: [&str; 4] = [
    include_str!("../../examples/token-accounting.yaml"),
    include_str!("../../examples/prompt-guard.yaml"),
    include_str!("../../examples/header-policies.yaml"),
    TOKEN_LIMITS,
];

/// A current-thread runtime (only `block_on` drives it) and the pipelines, built in it.
fn world() -> &'static (Runtime, Vec<Arc<Pipeline>>) {
    static WORLD: OnceLock<(Runtime, Vec<Arc<Pipeline>>)> = OnceLock::new();
    WORLD.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        // The header-policies example takes its upstream key from the environment.
        std::env::set_var("UPSTREAM_API_KEY", "sk-fuzz");
        let services = Services::new();
        let pipelines = {
            let _in_runtime = rt.enter();
            PIPELINES
                .iter()
                .map(|yaml| {
                    Arc::new(Pipeline::build(parse_str(yaml).unwrap(), services.clone()).unwrap())
                })
                .collect()
        };
        (rt, pipelines)
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(script) = std::str::from_utf8(data) else {
        return;
    };
    let (rt, pipelines) = world();
    let mut config = 0;
    let mut modes = None;
    let mut obs = false;
    let mut route = None;
    let mut messages = Vec::new();
    for line in script.lines().take(64) {
        let (op, rest) = line.split_once(' ').unwrap_or((line, ""));
        match op {
            "config" => config = rest.trim().parse::<usize>().unwrap_or(0) % pipelines.len(),
            "modes" => {
                let mut m = rest.split_whitespace().map(mode);
                modes = Some((m.next().unwrap_or_default(), m.next().unwrap_or_default()));
            }
            "obs" => obs = true,
            "route" => route = Some(rest.trim().to_owned()),
            _ => {
                if let Some(msg) = message(op, rest, route.take()) {
                    messages.push(msg);
                }
            }
        }
    }
    if let (Some((req, resp)), Some(first)) = (modes, messages.first_mut()) {
        first.protocol_config = Some(ProtocolConfiguration {
            request_body_mode: req as i32,
            response_body_mode: resp as i32,
            send_body_without_waiting_for_header_response: false,
        });
    }
    for msg in &mut messages {
        msg.observability_mode = obs;
    }
    let mut stream = ExtProcStream::new(pipelines[config].clone());
    let mut check = Checker {
        duplex: modes.map_or([false; 2], |(q, s)| {
            [q, s].map(|m| m == BodySendMode::FullDuplexStreamed)
        }),
        answered_locally: false,
    };
    for msg in messages {
        let (side, kind, observed) = (side_of(&msg), kind_of(&msg), msg.observability_mode);
        match rt.block_on(stream.on_message(msg)) {
            Ok(replies) => check.replies(side, kind, observed, &replies),
            Err(e) => {
                assert!(!e.to_string().is_empty());
                break; // the service answers a gRPC error and ends the stream
            }
        }
    }
    stream.end();
    drop(stream);
});

/// What a sequence of replies must satisfy.
struct Checker {
    /// Per side (request, response): Envoy sends this side FULL_DUPLEX_STREAMED.
    duplex: [bool; 2],
    answered_locally: bool,
}

impl Checker {
    fn replies(
        &mut self,
        side: Option<usize>,
        kind: Option<&str>,
        observed: bool,
        replies: &[ProcessingResponse],
    ) {
        if self.answered_locally || observed {
            assert!(
                replies.is_empty(),
                "a reply after an immediate response or in observability mode"
            );
            return;
        }
        let side = side.expect("a message without a phase is an error");
        for r in replies {
            let out = r.response.as_ref().expect("a reply without a response");
            if let Out::ImmediateResponse(_) = out {
                assert_eq!(
                    replies.len(),
                    1,
                    "an immediate response among other replies"
                );
                self.answered_locally = true;
                return;
            }
            let (reply_side, reply_kind) = reply_kind(out);
            assert_eq!(reply_side, side, "a reply for the other direction");
            if !self.duplex[side] {
                assert_eq!(Some(reply_kind), kind, "a reply of another kind");
            }
            if let Some(mode) = &r.mode_override {
                assert!(
                    !self.duplex[side],
                    "a mode override in FULL_DUPLEX_STREAMED"
                );
                let modes = [mode.request_body_mode, mode.response_body_mode];
                assert!(
                    modes
                        .iter()
                        .all(|&m| m != BodySendMode::FullDuplexStreamed as i32),
                    "an override to FULL_DUPLEX_STREAMED"
                );
            }
            if let Some(Mutation::StreamedResponse(s)) = streamed(out) {
                assert!(
                    s.body.len() <= MAX_STREAMED_CHUNK,
                    "an oversized streamed chunk"
                );
            }
        }
        if !self.duplex[side] {
            assert_eq!(
                replies.len(),
                1,
                "not exactly one reply outside FULL_DUPLEX_STREAMED"
            );
        }
    }
}

fn mode(name: &str) -> BodySendMode {
    match name {
        "streamed" => BodySendMode::Streamed,
        "buffered" => BodySendMode::Buffered,
        "partial" => BodySendMode::BufferedPartial,
        "duplex" => BodySendMode::FullDuplexStreamed,
        _ => BodySendMode::None,
    }
}

/// One script line as a message; `None` for a line that is not one.
fn message(op: &str, rest: &str, route: Option<String>) -> Option<ProcessingRequest> {
    let mut segments = rest.split(" ; ");
    let flags = segments.next().unwrap_or("");
    let eos = flags.split_whitespace().next() == Some("eos");
    let headers = || -> Option<HeaderMap> {
        let headers = segments
            .clone()
            .filter_map(|s| s.split_once(": "))
            .map(|(k, v)| HeaderValue {
                key: k.trim().to_owned(),
                value: String::new(),
                raw_value: unescape(v),
            })
            .collect();
        Some(HeaderMap { headers })
    };
    let body = || HttpBody {
        body: unescape(
            rest.strip_prefix("eos")
                .map_or(rest, |r| r.strip_prefix(' ').unwrap_or(r)),
        ),
        end_of_stream: eos,
        ..Default::default()
    };
    let request = match op {
        "rh" => In::RequestHeaders(HttpHeaders {
            headers: headers(),
            end_of_stream: eos,
            ..Default::default()
        }),
        "sh" => In::ResponseHeaders(HttpHeaders {
            headers: headers(),
            end_of_stream: eos,
            ..Default::default()
        }),
        "qb" => In::RequestBody(body()),
        "sb" => In::ResponseBody(body()),
        "qt" => In::RequestTrailers(HttpTrailers {
            trailers: headers(),
        }),
        "st" => In::ResponseTrailers(HttpTrailers {
            trailers: headers(),
        }),
        "empty" => return Some(ProcessingRequest::default()),
        _ => return None,
    };
    let mut attributes = HashMap::new();
    if let Some(name) = route {
        let value = Value {
            kind: Some(Kind::StringValue(name)),
        };
        let fields = [("xds.route_name".to_owned(), value)].into_iter().collect();
        attributes.insert("envoy.filters.http.ext_proc".to_owned(), Struct { fields });
    }
    Some(ProcessingRequest {
        request: Some(request),
        attributes,
        ..Default::default()
    })
}

/// `\n`, `\r`, `\t`, `\\` and `\xNN` escapes; anything else is literal.
fn unescape(text: &str) -> Vec<u8> {
    let b = text.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let (byte, used) = match (b[i], b.get(i + 1)) {
            (b'\\', Some(b'n')) => (b'\n', 2),
            (b'\\', Some(b'r')) => (b'\r', 2),
            (b'\\', Some(b't')) => (b'\t', 2),
            (b'\\', Some(b'\\')) => (b'\\', 2),
            (b'\\', Some(b'x')) => {
                match text.get(i + 2..i + 4).map(|h| u8::from_str_radix(h, 16)) {
                    Some(Ok(v)) => (v, 4),
                    _ => (b'\\', 1),
                }
            }
            (c, _) => (c, 1),
        };
        out.push(byte);
        i += used;
    }
    out
}

/// 0 for the request side, 1 for the response side.
fn side_of(msg: &ProcessingRequest) -> Option<usize> {
    match msg.request.as_ref()? {
        In::RequestHeaders(_) | In::RequestBody(_) | In::RequestTrailers(_) => Some(0),
        _ => Some(1),
    }
}

fn kind_of(msg: &ProcessingRequest) -> Option<&'static str> {
    Some(match msg.request.as_ref()? {
        In::RequestHeaders(_) | In::ResponseHeaders(_) => "headers",
        In::RequestBody(_) | In::ResponseBody(_) => "body",
        In::RequestTrailers(_) | In::ResponseTrailers(_) => "trailers",
    })
}

fn reply_kind(out: &Out) -> (usize, &'static str) {
    match out {
        Out::RequestHeaders(_) => (0, "headers"),
        Out::RequestBody(_) => (0, "body"),
        Out::RequestTrailers(_) => (0, "trailers"),
        Out::ResponseHeaders(_) => (1, "headers"),
        Out::ResponseBody(_) => (1, "body"),
        Out::ResponseTrailers(_) => (1, "trailers"),
        Out::ImmediateResponse(_) => unreachable!("handled by the caller"),
        Out::StreamedImmediateResponse(_) => panic!("tollgate sent a streamed immediate response"),
    }
}

fn streamed(out: &Out) -> Option<&Mutation> {
    match out {
        Out::RequestBody(b) | Out::ResponseBody(b) => b
            .response
            .as_ref()?
            .body_mutation
            .as_ref()?
            .mutation
            .as_ref(),
        _ => None,
    }
}
