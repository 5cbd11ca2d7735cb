//! The request body's part of the pick: scanned as it arrives when the pick can start
//! on the body's start (`scan`), else read whole — the model (rewritten in the body
//! when a rewrite applies) and the prompt — then scheduled and announced.

use std::sync::Arc;

use super::control::target_model;
use super::model_rewrite::{set_model, ModelWriteBack};
use super::scan::{PromptScan, Read};
use super::EndpointPicker;
use crate::epp::Rng;
use crate::llm::{Api, LlmRequest};
use crate::pipeline::{Body, Ctx, Flow, LocalReply, ProcessorError};

// === impl EndpointPicker ===

impl EndpointPicker {
    /// The request body phase: the pick once the body (or, scanned, its start) tells
    /// the model and the prompt.
    pub(super) async fn request_body(
        &mut self,
        cx: &mut Ctx,
        body: &mut Body,
    ) -> Result<Flow, ProcessorError> {
        if self.picked.is_some() {
            return Ok(Flow::Continue);
        }
        // Cut: the transport sends no more of this body (Envoy's BUFFERED_PARTIAL).
        let cut = body.is_truncated() && !body.end_of_stream();
        let rewrites = self.rewrites_model();
        let read = match self.scan.as_mut() {
            Some(scan) => match scan.push(body.data(), body.end_of_stream()) {
                Read::More if cut => scan.cut(),
                read => read,
            },
            None if body.end_of_stream() => Read::Whole(body.data().clone()),
            None if cut && rewrites => {
                return Ok(Flow::Respond(self.cut_too_soon(
                    body.data().len(),
                    "the route rewrites the model, which edits the whole body",
                )))
            }
            None if cut => self.read_cut(body.data()),
            None => return Ok(Flow::Continue),
        };
        let metrics = &self.shared.services.metrics.inference;
        match &read {
            Read::Ready(early) => metrics.body_read_at_pick.observe(early.seen as f64),
            Read::Whole(whole) => metrics.body_read_at_pick.observe(whole.len() as f64),
            _ => {}
        }
        match read {
            Read::More => Ok(Flow::Continue),
            Read::Ready(early) => {
                self.model = Some(early.model.clone());
                self.max_output_tokens = early.max_output_tokens;
                // The whole prompt's length, for its token estimate: the declared body.
                let declared = self.declared_len.map_or(0, |n| n as usize);
                let chars = declared.max(early.seen).max(early.prompt.len());
                self.pick_and_announce(cx, early.model, early.prompt, chars)
                    .await
            }
            Read::Whole(whole) => self.pick_whole(cx, body, whole).await,
            Read::NoModel { json } => Ok(Flow::Respond(self.bad_request(if json {
                "request body has no model"
            } else {
                "request body is not JSON"
            }))),
            Read::Cut { json: false } => {
                Ok(Flow::Respond(self.bad_request("request body is not JSON")))
            }
            Read::Cut { json: true } => Ok(Flow::Respond(self.cut_too_soon(
                body.data().len(),
                "its model is not in them: name it in x-gateway-model-name, or write it \
                 before the messages",
            ))),
        }
    }

    /// The start of a body the picker reads whole (the KV-events prefix cache, an API
    /// whose prompt is not in body order) when no more of it will come: the pick is made
    /// on the start, scored by the approximate index.
    fn read_cut(&self, start: &bytes::Bytes) -> Read {
        let mut scan = PromptScan::of(self.api, self.control.model.clone());
        match scan.push(start, false) {
            Read::More => scan.cut(),
            read => read,
        }
    }

    /// Whether the request's model is rewritten (in the body).
    fn rewrites_model(&self) -> bool {
        self.control.rewrite.is_some() || !self.shared.policy.model_rewrites.is_empty()
    }

    /// A 413 for a body the gateway sent only the first `seen` bytes of, too few for
    /// the pick (`why`).
    fn cut_too_soon(&self, seen: usize, why: &str) -> LocalReply {
        let message = format!(
            "the gateway reads only the first {seen} bytes of this request body (Envoy's \
             BUFFERED_PARTIAL body mode, up to its buffer limit) and {why}"
        );
        // The type of the pipeline's own 413 for a body past a buffer limit.
        let reply = LocalReply::error(
            http::StatusCode::PAYLOAD_TOO_LARGE,
            "request_too_large",
            &message,
        );
        self.reject(reply, super::INVALID_REQUEST)
    }

    /// The pick can start before the body's end: the API lists its prompt in body
    /// order, and nothing needs the whole body (a model rewrite edits it, the KV-events
    /// prefix cache tokenizes all of it).
    pub(super) fn may_pick_early(&self) -> bool {
        PromptScan::applies_to(self.api)
            && !self.rewrites_model()
            && !self.shared.handle.pool.reads_kv_events()
    }

    /// Picks for a body read whole: its model (rewritten in the body when a rewrite
    /// applies — `body` is then the whole body) and its prompt.
    async fn pick_whole(
        &mut self,
        cx: &mut Ctx,
        body: &mut Body,
        whole: bytes::Bytes,
    ) -> Result<Flow, ProcessorError> {
        let (model, prompt) = match model_and_prompt(cx, self.api, &whole) {
            Ok(v) => v,
            Err(e) => return Ok(Flow::Respond(self.bad_request(&e.to_string()))),
        };
        self.model = Some(model.clone());
        let target = Rng::with_thread(|rng| {
            target_model(
                &model,
                self.control.rewrite.as_deref(),
                &self.shared.policy.model_rewrites,
                rng,
            )
        });
        if let Some(t) = &target {
            let rewritten = set_model(&whole, t).filter(|_| body.is_whole());
            let Some(rewritten) = rewritten else {
                return Ok(Flow::Respond(self.bad_request(
                    "request body has no top-level string model to rewrite",
                )));
            };
            body.replace(rewritten.into());
            self.write_back = Some(ModelWriteBack::new(t, &model));
        }
        self.target = target;
        let scheduled_model = self.target.clone().unwrap_or(model);
        let pool = &self.shared.handle.pool;
        let chat = (self.api == Some(Api::ChatCompletions)).then_some(whole.as_ref());
        self.block_keys = pool
            .prompt_block_keys(&scheduled_model, &prompt, chat)
            .await;
        let chars = prompt.len();
        self.pick_and_announce(cx, scheduled_model, prompt, chars)
            .await
    }

    /// Schedules, then announces the pick (and a prefill endpoint) or answers the
    /// drop.
    async fn pick_and_announce(
        &mut self,
        cx: &mut Ctx,
        model: String,
        prompt: Vec<u8>,
        prompt_chars: usize,
    ) -> Result<Flow, ProcessorError> {
        let destination = match self.pick(cx, model, prompt, prompt_chars).await {
            Ok(d) => d,
            Err(reply) => return Ok(Flow::Respond(*reply)),
        };
        self.announce(cx, destination, None)?;
        self.announce_prefill(cx);
        Ok(Flow::Continue)
    }
}

/// Why a request body gives nothing to pick on: the 400's message.
#[derive(Debug, thiserror::Error)]
enum BadBody {
    #[error(transparent)]
    Llm(#[from] crate::llm::LlmError),
    #[error("request body is not JSON: {0}")]
    NotJson(serde_json::Error),
    #[error("request body has no model")]
    NoModel,
}

/// The model and the prompt bytes to hash: from the parsed request when there is one.
fn model_and_prompt(cx: &Ctx, api: Option<Api>, body: &[u8]) -> Result<(String, Vec<u8>), BadBody> {
    let request: Arc<LlmRequest> = match (&cx.llm, api) {
        (Some(f), _) => f.request.clone(),
        (None, Some(api)) => Arc::new(LlmRequest::parse(api, body)?),
        (None, None) => {
            // Not an API tollgate knows: only `model` is read; the whole body is hashed.
            let v: serde_json::Value = serde_json::from_slice(body).map_err(BadBody::NotJson)?;
            let model = v
                .get("model")
                .and_then(|m| m.as_str())
                .filter(|m| !m.is_empty())
                .ok_or(BadBody::NoModel)?;
            return Ok((model.to_string(), body.to_vec()));
        }
    };
    let model = request
        .model
        .clone()
        .filter(|m| !m.is_empty())
        .ok_or(BadBody::NoModel)?;
    Ok((model, request.prompt_text().into_bytes()))
}
