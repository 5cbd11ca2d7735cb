//! How the picker admits a request: through flow control's queues or straight to the
//! pool, the replies for what either refused (llm-d's drop reasons and statuses), and
//! the latency objectives checked against what the response showed.

use std::time::Instant;

use http::StatusCode;

use super::EndpointPicker;
use crate::epp::flow::{FlowDrop, FlowRequest, PickSpec};
use crate::epp::{PickRejection, Picked};
use crate::pipeline::{Ctx, LocalReply};

// === impl EndpointPicker ===

impl EndpointPicker {
    /// Picks for `spec`: through flow control's queues when the pool has them, else at
    /// once.
    pub(super) async fn schedule(
        &mut self,
        cx: &Ctx,
        spec: PickSpec,
    ) -> Result<Picked, LocalReply> {
        let Some(flow) = self.shared.handle.flow.clone() else {
            let mut req = spec.request(std::time::Duration::ZERO);
            // Without queues, a sheddable request is refused while the pool is saturated.
            req.priority = i64::from(spec.priority);
            req.may_wait = false;
            return self
                .shared
                .handle
                .pool
                .pick(&req)
                .map_err(|r| self.pick_rejected(cx, r));
        };
        let request = FlowRequest {
            bytes: spec.prompt_chars.max(spec.prompt.len()) as u64,
            priority: spec.priority,
            pick: spec,
            fairness_id: self.control.flow().to_string(),
            ttft_slo: self.control.slo_ttft,
            ttl: self.control.queue_ttl,
        };
        match flow.admit(request).await {
            Ok(admitted) => {
                self.queued = admitted.queued;
                self.charge = Some(admitted.charge);
                Ok(admitted.picked)
            }
            Err(dropped) => Err(self.flow_dropped(cx, dropped)),
        }
    }

    /// The reply to a request the pool refused.
    pub(super) fn pick_rejected(&self, cx: &Ctx, rejection: PickRejection) -> LocalReply {
        match rejection {
            PickRejection::Saturated { saturation } => self.dropped(
                StatusCode::TOO_MANY_REQUESTS,
                "rejected-saturated",
                &format!(
                    "the pool is saturated ({saturation:.2}) and the request's objective is sheddable"
                ),
            ),
            PickRejection::SloUnattainable { .. } | PickRejection::SloNotYet { .. } => self
                .dropped(
                    StatusCode::TOO_MANY_REQUESTS,
                    "rejected-slo-unattainable",
                    &rejection.to_string(),
                ),
            PickRejection::NoEndpoints => self.dropped(
                StatusCode::SERVICE_UNAVAILABLE,
                "rejected-no-endpoints",
                if cx.endpoint_subset.is_some() {
                    "no endpoint of the pool is in the gateway's subset"
                } else {
                    "no endpoint to pick"
                },
            ),
        }
    }

    /// The reply to a request flow control refused (llm-d's reasons and statuses).
    pub(super) fn flow_dropped(&self, cx: &Ctx, dropped: FlowDrop) -> LocalReply {
        let message = dropped.to_string();
        match dropped {
            FlowDrop::QueueFull(_) => self.dropped(
                StatusCode::TOO_MANY_REQUESTS,
                "rejected-saturated",
                &message,
            ),
            FlowDrop::TtlExpired(_) => self.dropped(
                StatusCode::TOO_MANY_REQUESTS,
                "rejected-ttl-expired",
                &message,
            ),
            FlowDrop::Pick(rejection) => self.pick_rejected(cx, rejection),
            FlowDrop::ShuttingDown => self.dropped(
                StatusCode::SERVICE_UNAVAILABLE,
                "rejected-shutting-down",
                &message,
            ),
        }
    }

    /// The first token came: the prediction's error, and the TTFT objective (counted
    /// from the request's arrival, queueing included).
    pub(super) fn first_token(&mut self, cx: &Ctx) {
        let now = Instant::now();
        self.first_token_at = Some(now);
        if let Some(f) = self.in_flight.as_mut() {
            f.first_token(now);
        }
        let m = &self.shared.services.metrics.slo;
        if let Some((predicted, at)) = self.predicted_ttft {
            m.observe_ttft(predicted, now.duration_since(at).as_secs_f64());
        }
        if self
            .control
            .slo_ttft
            .is_some_and(|slo| now.duration_since(cx.started) > slo)
        {
            m.violated("ttft");
        }
    }

    /// At the end of a stream: the time per output token against its objective.
    pub(super) fn check_tpot(&self) {
        let (Some(slo), Some(first)) = (self.control.slo_tpot, self.first_token_at) else {
            return;
        };
        if self.delivered >= 2 {
            let per_token = first.elapsed() / (self.delivered - 1) as u32;
            if per_token > slo {
                self.shared.services.metrics.slo.violated("tpot");
            }
        }
    }
}
