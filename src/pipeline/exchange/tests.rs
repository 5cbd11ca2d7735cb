//! Exchange tests: processor order, local replies, failure modes, body modes (stream,
//! buffer, truncated, overflow) and the exactly-once `on_complete` guarantee. Everything
//! runs through `testing::exchange_with` and scripted processors that journal the phases
//! they see.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{HeaderMap, StatusCode};

use crate::config::FailureMode;
use crate::metrics::{ProcessorLabels, RequestLabels};
use crate::pipeline::testing::{entries, exchange_with, scripted, scripted_into, Script};
use crate::pipeline::{BodyMode, BodyOutput, Exchange, Headers, LocalReply, Outcome, Verdict};

type Journal = Arc<Mutex<Vec<String>>>;

fn journal() -> Journal {
    Arc::new(Mutex::new(Vec::new()))
}

fn headers() -> Headers {
    Headers::new(HeaderMap::new())
}

fn out(data: &'static str, end_of_stream: bool, changed: bool) -> BodyOutput {
    BodyOutput {
        data: Bytes::from_static(data.as_bytes()),
        end_of_stream,
        changed,
        ends_stream: false,
    }
}

fn continued<T: std::fmt::Debug>(v: Verdict<T>) -> T {
    match v {
        Verdict::Continue(t) => t,
        Verdict::Respond(r) => panic!("expected Continue, got a local reply {r:?}"),
    }
}

fn responded<T: std::fmt::Debug>(v: Verdict<T>) -> LocalReply {
    match v {
        Verdict::Respond(r) => r,
        Verdict::Continue(t) => panic!("expected a local reply, got Continue({t:?})"),
    }
}

fn json(reply: &LocalReply) -> serde_json::Value {
    serde_json::from_slice(&reply.body).expect("error body is JSON")
}

async fn req_body(ex: &mut Exchange, data: &'static str, eos: bool) -> Verdict<BodyOutput> {
    ex.request_body(Bytes::from_static(data.as_bytes()), eos, false)
        .await
}

async fn resp_body(ex: &mut Exchange, data: &'static str, eos: bool) -> Verdict<BodyOutput> {
    ex.response_body(Bytes::from_static(data.as_bytes()), eos, false)
        .await
}

/// Runs request headers, then (status 200) response headers.
async fn through_headers(ex: &mut Exchange) {
    continued(ex.request_headers(&mut headers()).await);
    ex.cx.response_status = Some(200);
    continued(ex.response_headers(&mut headers()).await);
}

/// An exchange over processors `a` and `b` sharing one journal.
fn two(a: Script, b: Script) -> (Exchange, Journal) {
    let j = journal();
    let a = scripted_into(Script { tag: "a", ..a }, &j);
    let b = scripted_into(Script { tag: "b", ..b }, &j);
    (exchange_with(vec![a, b]), j)
}

fn stream() -> Option<BodyMode> {
    Some(BodyMode::Stream)
}

fn buffer(limit: usize) -> Option<BodyMode> {
    Some(BodyMode::Buffer { limit })
}

fn completions(j: &Journal) -> Vec<String> {
    entries(j)
        .into_iter()
        .filter(|e| e.contains("complete:"))
        .collect()
}

mod bodies;
mod completion;
mod order;
mod scan;
