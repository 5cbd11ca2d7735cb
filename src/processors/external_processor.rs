//! `extProc`: an external processing server called for each request of a route, as
//! Envoy's ext_proc filter calls one (`ext_proc_client`): the request and response
//! headers (unless skipped), the bodies when asked (`buffered`: whole; `streamed`: each
//! chunk, one answer each), with the server's header and body mutations applied and
//! its immediate response answering the client. A failure or a timeout is the policy's
//! `failureMode`: `failClosed` answers 500 (504 for a timeout), `failOpen` goes on
//! without the server. A server that closes the stream is done with the exchange.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use envoy_types::pb::envoy::service::ext_proc::v3::{
    processing_response::Response, CommonResponse, ProcessingRequest, ProcessingResponse,
};
use http::StatusCode;

use crate::config::{BodySendMode, ConfigError, ExtProcPolicy, FailureMode, HeaderSendMode};
use crate::ext_proc_client::{convert, CallError, ExtProcClient, ExtProcStream};
use crate::pipeline::{
    Body, BodyMode, Ctx, Flow, Headers, Processor, ProcessorError, ProcessorFactory,
};

/// Factory of one route's `extProc` policy.
pub struct ExternalProcessorFactory {
    shared: Arc<Shared>,
}

struct Shared {
    policy: ExtProcPolicy,
    client: ExtProcClient,
    /// Largest body sent in `buffered` mode (`limits.buffers.jsonBodyBytes`).
    limit: usize,
}

impl ExternalProcessorFactory {
    /// Compiles the policy at `path`.
    pub fn new(
        p: &ExtProcPolicy,
        connect_timeout: Duration,
        limit: usize,
        path: &str,
    ) -> Result<Self, ConfigError> {
        p.check(path)?;
        let client = ExtProcClient::new(&p.host, p.timeout.get(), connect_timeout)
            .map_err(|e| ConfigError::field(format!("{path}.host"), e))?;
        Ok(ExternalProcessorFactory {
            shared: Arc::new(Shared {
                policy: p.clone(),
                client,
                limit,
            }),
        })
    }
}

impl ProcessorFactory for ExternalProcessorFactory {
    fn name(&self) -> &'static str {
        "ext_proc"
    }

    fn failure_mode(&self) -> FailureMode {
        self.shared.policy.failure_mode
    }

    fn new_processor(&self, _cx: &Ctx) -> Option<Box<dyn Processor>> {
        Some(Box::new(External {
            shared: self.shared.clone(),
            stream: None,
            done: false,
        }))
    }
}

struct External {
    shared: Arc<Shared>,
    stream: Option<ExtProcStream>,
    /// The server closed the stream: the exchange goes on without it.
    done: bool,
}

/// Which phase an answer is for (the kind it must have).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    RequestHeaders,
    RequestBody,
    ResponseHeaders,
    ResponseBody,
}

/// What the server said about a phase.
enum Answer {
    /// Go on, with these changes (none when the server is done with the exchange).
    Common(Option<CommonResponse>),
    /// Answer the client with this.
    Reply(crate::pipeline::LocalReply),
}

impl External {
    /// Sends `message` and reads the answer of `phase`.
    async fn ask(
        &mut self,
        mut message: ProcessingRequest,
        phase: Phase,
    ) -> Result<Answer, ProcessorError> {
        if self.done {
            return Ok(Answer::Common(None));
        }
        let answer = match self.stream.as_mut() {
            Some(stream) => stream.call(message).await,
            None => {
                let mode = &self.shared.policy.processing_mode;
                message.protocol_config = Some(convert::protocol_config(mode));
                self.shared
                    .client
                    .open(message)
                    .await
                    .map(|(stream, answer)| {
                        self.stream = Some(stream);
                        answer
                    })
            }
        }
        .map_err(call_error)?;
        let Some(answer) = answer else {
            self.done = true;
            return Ok(Answer::Common(None));
        };
        read(answer, phase)
    }
}

/// The answer for `phase`, or an error when it is of another kind.
fn read(answer: ProcessingResponse, phase: Phase) -> Result<Answer, ProcessorError> {
    let common = match (answer.response, phase) {
        (Some(Response::ImmediateResponse(ir)), _) => {
            return Ok(Answer::Reply(convert::local_reply(&ir)))
        }
        (Some(Response::RequestHeaders(h)), Phase::RequestHeaders)
        | (Some(Response::ResponseHeaders(h)), Phase::ResponseHeaders) => h.response,
        (Some(Response::RequestBody(b)), Phase::RequestBody)
        | (Some(Response::ResponseBody(b)), Phase::ResponseBody) => b.response,
        (other, phase) => {
            return Err(ProcessorError::internal(format!(
                "the ext_proc server answered {phase:?} with {}",
                other.map_or("nothing", |r| kind(&r))
            )))
        }
    };
    Ok(Answer::Common(common))
}

fn kind(r: &Response) -> &'static str {
    match r {
        Response::RequestHeaders(_) => "request headers",
        Response::ResponseHeaders(_) => "response headers",
        Response::RequestBody(_) => "a request body",
        Response::ResponseBody(_) => "a response body",
        Response::RequestTrailers(_) | Response::ResponseTrailers(_) => "trailers",
        Response::ImmediateResponse(_) => "an immediate response",
        Response::StreamedImmediateResponse(_) => "a streamed immediate response",
    }
}

fn call_error(e: CallError) -> ProcessorError {
    let status = match e {
        CallError::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
        CallError::Failed { .. } => StatusCode::INTERNAL_SERVER_ERROR,
    };
    ProcessorError {
        status,
        message: e.to_string(),
    }
}

fn body_mode(mode: BodySendMode, limit: usize) -> BodyMode {
    match mode {
        BodySendMode::None => BodyMode::Skip,
        BodySendMode::Buffered => BodyMode::Buffer { limit },
        BodySendMode::Streamed => BodyMode::Stream,
    }
}

#[async_trait]
impl Processor for External {
    async fn on_request_headers(
        &mut self,
        cx: &mut Ctx,
        headers: &mut Headers,
    ) -> Result<Flow, ProcessorError> {
        if self.shared.policy.processing_mode.request_header_mode == HeaderSendMode::Skip {
            return Ok(Flow::Continue);
        }
        let message = convert::request_headers(&cx.request, headers.map(), cx.request_body_empty);
        match self.ask(message, Phase::RequestHeaders).await? {
            Answer::Reply(reply) => Ok(Flow::Respond(reply)),
            Answer::Common(common) => {
                if let Some(m) = common.and_then(|c| c.header_mutation) {
                    if let Some(path) = convert::apply_headers(&m, headers).path {
                        cx.upstream_path = Some(path);
                        cx.keep_route = true;
                    }
                }
                Ok(Flow::Continue)
            }
        }
    }

    fn request_body_mode(&self) -> BodyMode {
        body_mode(
            self.shared.policy.processing_mode.request_body_mode,
            self.shared.limit,
        )
    }

    async fn on_request_body(
        &mut self,
        cx: &mut Ctx,
        body: &mut Body,
    ) -> Result<Flow, ProcessorError> {
        let message = convert::body(true, body.data(), body.end_of_stream());
        let answer = self.ask(message, Phase::RequestBody).await?;
        apply_body(answer, body, |headers| {
            // Held request headers (a buffered body) take the server's changes too.
            cx.late_request_headers.extend(
                headers
                    .into_map()
                    .into_iter()
                    .filter_map(|(k, v)| Some((k?, v))),
            );
        })
    }

    async fn on_response_headers(
        &mut self,
        cx: &mut Ctx,
        headers: &mut Headers,
    ) -> Result<Flow, ProcessorError> {
        if self.shared.policy.processing_mode.response_header_mode == HeaderSendMode::Skip {
            return Ok(Flow::Continue);
        }
        let status = cx.response_status.unwrap_or(200);
        let message = convert::response_headers(status, headers.map(), false);
        match self.ask(message, Phase::ResponseHeaders).await? {
            Answer::Reply(reply) => Ok(Flow::Respond(reply)),
            Answer::Common(common) => {
                if let Some(m) = common.and_then(|c| c.header_mutation) {
                    convert::apply_headers(&m, headers);
                }
                Ok(Flow::Continue)
            }
        }
    }

    fn response_body_mode(&self) -> BodyMode {
        body_mode(
            self.shared.policy.processing_mode.response_body_mode,
            self.shared.limit,
        )
    }

    async fn on_response_body(
        &mut self,
        cx: &mut Ctx,
        body: &mut Body,
    ) -> Result<Flow, ProcessorError> {
        let message = convert::body(false, body.data(), body.end_of_stream());
        let answer = self.ask(message, Phase::ResponseBody).await?;
        apply_body(answer, body, |headers| {
            cx.late_response_headers.extend(
                headers
                    .into_map()
                    .into_iter()
                    .filter_map(|(k, v)| Some((k?, v))),
            );
        })
    }
}

/// A body phase's answer: the body mutation, and header changes handed to `late`
/// (they reach the peer only when the headers were held for the body).
fn apply_body(
    answer: Answer,
    body: &mut Body,
    late: impl FnOnce(Headers),
) -> Result<Flow, ProcessorError> {
    let common = match answer {
        Answer::Reply(reply) => return Ok(Flow::Respond(reply)),
        Answer::Common(None) => return Ok(Flow::Continue),
        Answer::Common(Some(common)) => common,
    };
    if let Some(new) = convert::mutated_body(&common) {
        body.replace(new);
    }
    if let Some(m) = &common.header_mutation {
        let mut headers = Headers::new(http::HeaderMap::new());
        convert::apply_headers(m, &mut headers);
        late(headers);
    }
    Ok(Flow::Continue)
}
