//! End-to-end tests with real processes: the `tollgate` binary, a real Envoy 1.40 (see
//! `scripts/test`, which installs it), a mock upstream and a client on loopback sockets.
//! Every test picks its own ephemeral ports and temp dirs, so tests run in parallel.
//! Nothing waits on a fixed sleep: readiness, logs and metrics are polled.
//!
//! - `envoy`: Envoy → tollgate ext_proc → upstream in BUFFERED, STREAMED and
//!   FULL_DUPLEX_STREAMED, with tollgate's `modeOverride` on and off; SSE; route names;
//!   failure modes.
//! - `mode_override`: Envoy ignoring tollgate's `mode_override` (`allow_mode_override:
//!   false`) in STREAMED and BUFFERED: bodies in pieces or whole still reach the guard
//!   whole; in NONE the missing body fails the fail-closed guard.
//! - `proxy`: the standalone proxy: header policies, SSE, error replies (malformed or
//!   abandoned request bodies, upstream failures without the upstream's address).
//! - `listeners`: connection bounds on every listener: first-byte, header-read, idle
//!   and body-progress timeouts, the connection limit, accept backoff at EMFILE,
//!   `--workers`.
//! - `balance`: several weighted backends on one proxy route: the weights, a backend
//!   killed mid-run (retried, ejected, back in use), a 429 retried elsewhere, no retry
//!   once a response is under way.
//! - `buffers`: bounded buffers against a hostile upstream (gzip bombs, huge SSE lines).
//! - `otlp`: spans with GenAI attributes at an OTLP receiver written with
//!   OpenTelemetry's stubs, over gRPC and HTTP; W3C trace context both ways.
//! - `parity`: one scenario through both adapters gives the same exchange.
//! - `llm`: token accounting driven by the official `openai` and `anthropic` Python SDKs,
//!   through Envoy (STREAMED, FULL_DUPLEX_STREAMED) and the proxy: the usage the upstream
//!   reported equals the metrics, the access log and Envoy's dynamic metadata; usage
//!   chunks only for clients that asked; SSE timing; malformed JSON.
//! - `hard_budget`: budgets enforced mid-stream with the official SDKs, through the
//!   proxy and Envoy: a stream crossing its budget ends with `finish_reason: "length"`,
//!   charged exactly the output delivered; the next request gets 429.
//! - `lifecycle`: admin endpoints, hot reload, graceful shutdown.
//! - `reload`: hot reload against saves in place, emptied files and port edits.
//! - `secrets`: no credential reaches a log line or `/config`.
//! - `cors`: the `cors` policy through Envoy and the proxy: preflights answered, never
//!   forwarded; CORS headers only for allowed origins.
//! - `cli`: `validate` on examples and bad files, `envoy --mode validate` on deploy/envoy.
//! - `deploy_k8s`: the deploy/k8s manifests parse and agree with each other; the tollgate
//!   configs in their ConfigMaps validate, the sidecar's Envoy config too.
//! - `epp_envoy`: the endpoint picker behind a real Envoy forwarding to the pick
//!   (ORIGINAL_DST on metadata or header, override_host), spoofing, fail-open/closed.
//! - `epp_flow`: flow control behind Envoy: a flooding tenant waits in the queues while a
//!   light one keeps its idle latency; full bands and expired waits are dropped with
//!   llm-d's reasons.
//! - `epp_standalone`: the picker in tollgate's own proxy over simulated model servers.
//! - `epp_long_prompt`: 220 KB prompts picked on the start of their body, behind Envoy
//!   and in the proxy; a model named last waits unless `x-gateway-model-name` names it.
//! - `epp_pd`: prefill/decode disaggregation over simulated prefill and decode
//!   instances, through the proxy and Envoy: long prompts split, short or cached ones not.
//! - `epp_session`: session affinity (token and session id) with the `openai` SDK
//!   through Envoy over simulated model servers; a dead instance's session re-binds.
//! - `epp_kv_events`: the precise prefix cache fed by a Python (pyzmq, msgpack) vLLM
//!   KV-event publisher: the pick follows the events, garbage is counted, silence falls
//!   back to the approximate index; the simulator's own publisher.
//! - `epp_protocol`: a black-box suite of the endpoint-picker protocol over gRPC, as a
//!   gateway drives it; points at any picker with `TOLLGATE_EPP_TARGET`.
//! - `ext_proc_client`: the `extProc` policy against an independent Python ext_proc
//!   server and tollgate's own, through the proxy and Envoy: mutations both ways,
//!   immediate responses, a closed stream, a timeout, fail open and fail closed.
//! - `guard`: the prompt guard with the official SDKs through Envoy and the proxy:
//!   entities split across SSE events arrive masked, rejected prompts never go upstream.
//! - `mcp`: the MCP gateway in the proxy, multiplexing MCP servers of the official Python
//!   SDK (1.x and 2.x) for the SDK's clients; the transport's statuses with a plain
//!   client; two replicas sharing sessions by key.
//! - `xds`: tollgate as Envoy's control plane: Envoy bootstrapped from its ADS (SotW and
//!   Delta) carries token-accounted traffic; a config edit under load moves Envoy with
//!   no failed request (both variants); a NACK keeps the last good version; ECDS
//!   changes with no listener drain; per-node binds and a restart; picker routes land
//!   on the pick; malformed requests; a tollgate sidecar following a control plane.
//! - `translate`: `llmProvider` translation with the official SDKs: an OpenAI client on
//!   an Anthropic provider and the reverse, streamed and not, with tools, through the
//!   proxy and Envoy; usage carried over exactly and counted once; provider errors in
//!   the client's shape.
//! - `sim`: the model-server simulator with the official `openai` SDK: streamed usage,
//!   prefix-cache hits (cached tokens, lower TTFT), `/metrics` read by the picker's parser.
//!
//! The test modules live in `tests/e2e/` (named by `#[path]`: a file directly in `tests/`
//! would be built as a test binary of its own); support code in `tests/support/`.

mod support;

#[path = "e2e/a2a.rs"]
mod a2a;
#[path = "e2e/agentgateway.rs"]
mod agentgateway;
#[path = "e2e/balance.rs"]
mod balance;
#[path = "e2e/buffers.rs"]
mod buffers;
#[path = "e2e/cli.rs"]
mod cli;
#[path = "e2e/cors.rs"]
mod cors;
#[path = "e2e/deploy_k8s.rs"]
mod deploy_k8s;
#[path = "e2e/envoy.rs"]
mod envoy;
#[path = "e2e/epp_envoy.rs"]
mod epp_envoy;
#[path = "e2e/epp_flow.rs"]
mod epp_flow;
#[path = "e2e/epp_kv_events.rs"]
mod epp_kv_events;
#[path = "e2e/epp_long_prompt.rs"]
mod epp_long_prompt;
#[path = "e2e/epp_pd.rs"]
mod epp_pd;
#[path = "e2e/epp_protocol.rs"]
mod epp_protocol;
#[path = "e2e/epp_session.rs"]
mod epp_session;
#[path = "e2e/epp_standalone.rs"]
mod epp_standalone;
#[path = "e2e/ext_proc_client.rs"]
mod ext_proc_client;
#[path = "e2e/guard.rs"]
mod guard;
#[path = "e2e/hard_budget.rs"]
mod hard_budget;
#[path = "e2e/lifecycle.rs"]
mod lifecycle;
#[path = "e2e/limits.rs"]
mod limits;
#[path = "e2e/listeners.rs"]
mod listeners;
#[path = "e2e/llm.rs"]
mod llm;
#[path = "e2e/mcp.rs"]
mod mcp;
#[path = "e2e/mcp_auth.rs"]
mod mcp_auth;
#[path = "e2e/mcp_clients.rs"]
mod mcp_clients;
#[path = "e2e/mcp_envoy.rs"]
mod mcp_envoy;
#[path = "e2e/mcp_guard.rs"]
mod mcp_guard;
#[path = "e2e/mcp_limits.rs"]
mod mcp_limits;
#[path = "e2e/mcp_modern.rs"]
mod mcp_modern;
#[path = "e2e/mcp_relay.rs"]
mod mcp_relay;
#[path = "e2e/mode_override.rs"]
mod mode_override;
#[path = "e2e/otlp.rs"]
mod otlp;
#[path = "e2e/parity.rs"]
mod parity;
#[path = "e2e/proxy.rs"]
mod proxy;
#[path = "e2e/reload.rs"]
mod reload;
#[path = "e2e/rewrite.rs"]
mod rewrite;
#[path = "e2e/secrets.rs"]
mod secrets;
#[path = "e2e/sim.rs"]
mod sim;
#[path = "e2e/translate.rs"]
mod translate;
#[path = "e2e/xds.rs"]
mod xds;
#[path = "e2e/xds_mcp.rs"]
mod xds_mcp;
#[path = "e2e/xds_per_type.rs"]
mod xds_per_type;
#[path = "e2e/xds_routing.rs"]
mod xds_routing;
