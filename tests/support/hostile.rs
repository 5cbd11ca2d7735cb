//! Hostile upstream answers for the buffer-limit tests, served by the mock upstream on
//! `POST /v1/chat/completions` when the request has `x-mock-hostile`:
//!
//! - `sse-gzip-bomb`: a gzip-encoded event stream — one content chunk, then
//!   `x-mock-bomb-mib` (default 2048) MiB of `data: {}` events. Each MiB is one gzip
//!   member of about 1 KiB (concatenated members are one body), so the bomb costs the
//!   mock nothing to make and ~1 KiB per MiB on the wire.
//! - `json-gzip-bomb`: a gzip-encoded chat completion whose content is `x-mock-bomb-mib`
//!   MiB of `a`, made the same way.
//! - `sse-long-line`: an uncompressed event stream — one content chunk, one `data:` line
//!   of `x-mock-line-mib` (default 20) MiB, a last chunk and `data: [DONE]`.

use std::convert::Infallible;
use std::io::Write;

use bytes::Bytes;
use flate2::write::GzEncoder;
use flate2::Compression;
use http::{Response, StatusCode};
use http_body_util::{combinators::BoxBody, BodyExt, Full};

const MIB: usize = 1024 * 1024;

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// A chat chunk carrying `text`, as an SSE event.
pub fn chunk(text: &str) -> String {
    let v = serde_json::json!({"id": "c1", "object": "chat.completion.chunk", "model": "gpt-4o",
        "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": null}]});
    format!("data: {v}\n\n")
}

/// `head`, then `mib` MiB of `filler` repeated, then `tail`: gzip members, one body.
fn bomb(head: &[u8], filler: &[u8], mib: u64, tail: &[u8]) -> Vec<u8> {
    let block: Vec<u8> = filler.iter().copied().cycle().take(MIB).collect();
    let member = gzip(&block);
    let mut body = gzip(head);
    for _ in 0..mib {
        body.extend_from_slice(&member);
    }
    body.extend(gzip(tail));
    body
}

/// The `sse-gzip-bomb` body.
pub fn sse_bomb(mib: u64) -> Vec<u8> {
    bomb(
        chunk("Hello").as_bytes(),
        b"data: {}\n\n",
        mib,
        b"data: [DONE]\n\n",
    )
}

/// The `json-gzip-bomb` body.
pub fn json_bomb(mib: u64) -> Vec<u8> {
    bomb(
        br#"{"id":"c1","model":"gpt-4o","choices":[{"index":0,"message":{"role":"assistant","content":""#,
        b"a",
        mib,
        br#""},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":1}}"#,
    )
}

/// The `sse-long-line` body: its first event, and the rest.
pub fn long_line(mib: u64) -> (String, String) {
    let line = "x".repeat(mib as usize * MIB);
    let rest = format!("data: {line}\n\n{}data: [DONE]\n\n", chunk(" world"));
    (chunk("Hello"), rest)
}

/// The answer for `kind`; `number` reads the request's numeric `x-mock-*` headers.
pub fn response(
    kind: &str,
    number: &dyn Fn(&str, u64) -> u64,
) -> Response<BoxBody<Bytes, Infallible>> {
    let mib = number("x-mock-bomb-mib", 2048);
    let (content_type, gzipped, body) = match kind {
        "sse-gzip-bomb" => ("text/event-stream", true, sse_bomb(mib)),
        "json-gzip-bomb" => ("application/json", true, json_bomb(mib)),
        "sse-long-line" => {
            let (first, rest) = long_line(number("x-mock-line-mib", 20));
            (
                "text/event-stream",
                false,
                format!("{first}{rest}").into_bytes(),
            )
        }
        other => panic!("unknown x-mock-hostile {other:?}"),
    };
    let mut resp = Response::new(Full::new(Bytes::from(body)).boxed());
    *resp.status_mut() = StatusCode::OK;
    let h = resp.headers_mut();
    h.insert("content-type", content_type.parse().unwrap());
    if gzipped {
        h.insert("content-encoding", "gzip".parse().unwrap());
    }
    resp
}
