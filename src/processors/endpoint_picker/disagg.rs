//! Prefill/decode disaggregation in the processor (see `crate::epp::disagg`): the
//! destination is picked among the endpoints that decode; then, when the decider splits
//! the request, a prefill endpoint is picked among the `prefill` ones by the same profile
//! and named to the destination in `x-prefiller-host-port` (a late request header next
//! to the destination's). A client's own `x-prefiller-host-port` is always stripped: it
//! would make the decode side send the prompt wherever the client says.

use std::net::SocketAddr;

use http::{HeaderName, HeaderValue};

use super::EndpointPicker;
use crate::epp::disagg::PREFILLER_HEADER;
use crate::epp::{InFlight, PickRequest, Picked, Prompt};
use crate::pipeline::{Ctx, Headers};

/// The prefill side of a split request.
pub struct Prefill {
    /// `ip:port`.
    pub endpoint: String,
    /// Its share of the prefill endpoint's load, held until the response starts.
    pub _load: InFlight,
}

/// Removes a client's `x-prefiller-host-port`.
pub fn strip_client_header(headers: &mut Headers) {
    headers.remove(&HeaderName::from_static(PREFILLER_HEADER));
}

// === impl EndpointPicker ===

impl EndpointPicker {
    /// The endpoints the destination is picked among: the gateway's subset (if any),
    /// restricted to those that decode when the pool has roles.
    pub(super) fn destination_subset(
        &self,
        hint: Option<Vec<SocketAddr>>,
    ) -> Option<Vec<SocketAddr>> {
        match &self.shared.handle.disaggregation {
            Some(d) => d.decode_subset(&self.shared.handle.pool.endpoints(), hint),
            None => hint,
        }
    }

    /// Picks the prefill endpoint of a request `decode` was picked for, when the decider
    /// splits it (`prompt_chars` long, the destination holding `decode.prefix_matched`
    /// blocks) and a prefill endpoint is available; `None` runs it aggregated.
    pub(super) fn pick_prefill(
        &self,
        cx: &Ctx,
        model: &str,
        decode: &Picked,
        prompt_chars: usize,
    ) -> Option<Prefill> {
        let d = self.shared.handle.disaggregation.as_ref()?;
        if !d.splits(prompt_chars, decode.prefix_matched) {
            return None;
        }
        let pool = &self.shared.handle.pool;
        let prefillers = d.prefill_subset(&pool.endpoints());
        if prefillers.is_empty() {
            return None;
        }
        let mut prefill = PickRequest::new(model, b"");
        prefill.prompt = Prompt::Hashes(&decode.hashes);
        prefill.prompt_tokens = Some(prompt_chars as u64 / crate::epp::load::CHARS_PER_TOKEN);
        prefill.expected_output_tokens = Some(1);
        prefill.subset = Some(&prefillers);
        match pool.pick(&prefill) {
            Ok(p) => {
                tracing::debug!(request_id = %cx.request_id, prefill = %p.endpoint(), decode = %decode.endpoint(), "request disaggregated");
                Some(Prefill {
                    endpoint: p.endpoint().to_string(),
                    _load: p.in_flight,
                })
            }
            Err(e) => {
                tracing::debug!(request_id = %cx.request_id, error = %e, "no prefill endpoint: aggregated");
                None
            }
        }
    }

    /// Names the prefill endpoint, if the request was split, to the destination.
    pub(super) fn announce_prefill(&self, cx: &mut Ctx) {
        let Some(p) = &self.prefill else { return };
        if let Ok(v) = HeaderValue::from_str(&p.endpoint) {
            cx.late_request_headers
                .push((HeaderName::from_static(PREFILLER_HEADER), v));
        }
    }
}
