//! `tollgate sim`: a pool of simulated vLLM-like model servers in one process, to test
//! and benchmark endpoint picking without GPUs. Each instance has its own loopback
//! listener, speaks the OpenAI API (`/v1/chat/completions`, `/v1/completions`, JSON and
//! SSE, `/v1/models`) and exports vLLM's Prometheus metrics (`/metrics`).
//!
//! # The cost model
//! Every constant is a flag (defaults in brackets); time passes on tokio timers, so an
//! instance costs CPU only for its HTTP work.
//! - Tokens: prompt characters / 4, rounded up (the picker's approximation). The prompt
//!   is the request's text as the picker reads it (messages joined with newlines).
//! - Batch slots (`--max-running` [64]): requests beyond it wait in a FIFO queue
//!   (`vllm:num_requests_waiting`).
//! - KV cache (`--kv-blocks` [8192] blocks of 16 tokens): a running request holds
//!   ceil((prompt + generated tokens) / 16) blocks (`vllm:kv_cache_usage_perc` = held /
//!   capacity). Admission also waits until the request's final footprint (prompt plus
//!   all its output tokens) fits next to the final footprints of the running requests,
//!   so decoding never runs out of blocks (no preemption). A request that could never
//!   fit is answered 400.
//! - Prefix cache: an LRU of chained xxHash64 block hashes over 64-character blocks (16
//!   tokens × 4 characters), seeded with the request's model (a LoRA adapter caches
//!   apart), capacity `--kv-blocks` blocks. A prompt's leading blocks found there are its
//!   cached tokens (`usage.prompt_tokens_details.cached_tokens`); its blocks are recorded
//!   when its prefill ends.
//! - Prefill: `--prefill-overhead-us` [2000] + `--prefill-us-per-token` [100] × the
//!   prompt tokens not cached. Prefills are compute-bound: one at a time per instance, in
//!   arrival order, so a long uncached prefill delays every other first token. The
//!   prefill produces the first output token.
//! - Decode: each further token takes one step of `--decode-step-us` [10000] +
//!   `--decode-step-per-seq-us` [100] × (running requests − 1), as batched decoding slows
//!   with the batch. With `--prefill-stalls-decode` a step also waits for the prefill
//!   running on its instance (one GPU, prefills not chunked), as an aggregated server's
//!   running requests stall while it prefills a long prompt.
//! - Output: `max_completion_tokens` / `max_tokens` when given (finish reason `length`),
//!   else `--default-max-tokens` [32] (finish reason `stop`); the text is `tok1 tok2 …`.
//! - Prefill/decode disaggregation (`--role` [both], `--prefill-instances` [0]): a
//!   decoding instance (`decode` or `both`) given `x-prefiller-host-port` sends the
//!   request, with `max_tokens` 1 and not streamed, to that instance over HTTP (which
//!   queues and prefills it as any request, recording the prompt in its prefix cache),
//!   then admits it itself and, instead of a prefill, pulls the KV cache of the prompt
//!   tokens it does not cache: `--kv-transfer-us-per-token` [5] × those tokens, taking
//!   no prefill turn; the prompt is then in its prefix cache, and the first token is
//!   the prefill instance's. The response names both (`x-sim-endpoint`,
//!   `x-sim-prefill-endpoint`). A failed prefill call falls back to a local prefill.
//!
//! Each instance prints `listening http://ADDR` on stdout once it listens; the process
//! serves until SIGTERM or SIGINT.

pub mod engine;
pub mod kv_publish;
pub mod metrics;
pub mod output;
pub mod pd;
pub mod server;

use std::io::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

pub use engine::{CostModel, Instance};
pub use pd::Role;
pub use server::Server;

/// Flags of `tollgate sim`.
#[derive(Clone, Debug, clap::Args)]
pub struct SimArgs {
    /// Instances to run, each on its own port.
    #[arg(long, default_value_t = 1)]
    pub instances: usize,
    /// Address of the first instance; port 0 gives each instance an ephemeral port,
    /// another port P gives instance i port P + i.
    #[arg(long, default_value = "127.0.0.1:0", conflicts_with = "base_port")]
    pub listen: SocketAddr,
    /// Shorthand for `--listen 127.0.0.1:P`.
    #[arg(long)]
    pub base_port: Option<u16>,
    /// The served model's name.
    #[arg(long, default_value = "sim-model")]
    pub model: String,
    /// LoRA adapters served (comma-separated): a request naming one counts as that
    /// adapter in `vllm:lora_requests_info`.
    #[arg(long, value_delimiter = ',')]
    pub lora: Vec<String>,
    /// `max_lora` reported in `vllm:lora_requests_info` (default: the adapters given, at
    /// least 1).
    #[arg(long)]
    pub max_lora: Option<usize>,
    /// Continuous-batching slots per instance.
    #[arg(long, default_value_t = 64)]
    pub max_running: usize,
    /// KV-cache capacity per instance, in blocks of 16 tokens (also the prefix cache's).
    #[arg(long, default_value_t = 8192)]
    pub kv_blocks: usize,
    /// Prefill time per uncached prompt token, in microseconds.
    #[arg(long, default_value_t = 100)]
    pub prefill_us_per_token: u64,
    /// Fixed time of every prefill, in microseconds.
    #[arg(long, default_value_t = 2000)]
    pub prefill_overhead_us: u64,
    /// Decode step time with one running request, in microseconds.
    #[arg(long, default_value_t = 10_000)]
    pub decode_step_us: u64,
    /// Added to the decode step per further running request, in microseconds.
    #[arg(long, default_value_t = 100)]
    pub decode_step_per_seq_us: u64,
    /// Output tokens of a request that gives no `max_tokens`.
    #[arg(long, default_value_t = 32)]
    pub default_max_tokens: u64,
    /// Export `vllm:gpu_cache_usage_perc` (older vLLM) instead of
    /// `vllm:kv_cache_usage_perc`.
    #[arg(long)]
    pub legacy_kv_metric: bool,
    /// The instances' role for prefill/decode disaggregation.
    #[arg(long, value_enum, default_value_t = Role::Both)]
    pub role: Role,
    /// The first N instances are `prefill` whatever `--role` says (one process serving
    /// both sides of a disaggregated pool).
    #[arg(long, default_value_t = 0)]
    pub prefill_instances: usize,
    /// Time to pull one prompt token's KV cache from a prefill instance, in
    /// microseconds.
    #[arg(long, default_value_t = 5)]
    pub kv_transfer_us_per_token: u64,
    /// A decode step waits for the prefill running on its instance (one GPU, prefills
    /// not chunked): what disaggregation takes off the decoding instances.
    #[arg(long)]
    pub prefill_stalls_decode: bool,
    /// Publish KV-cache events as vLLM does (ZeroMQ PUB, msgpack) on the instance's IP:
    /// port 0 gives each instance an ephemeral port, another port P gives instance i
    /// port P + i. Each prints `kv-events tcp://ADDR` after its `listening` line.
    #[arg(long)]
    pub kv_events_port: Option<u16>,
}

impl SimArgs {
    /// The cost model the flags describe.
    pub fn cost_model(&self) -> CostModel {
        CostModel {
            prefill_per_token: Duration::from_micros(self.prefill_us_per_token),
            prefill_overhead: Duration::from_micros(self.prefill_overhead_us),
            decode_step: Duration::from_micros(self.decode_step_us),
            decode_step_per_seq: Duration::from_micros(self.decode_step_per_seq_us),
            max_running: self.max_running,
            kv_blocks: self.kv_blocks,
            kv_transfer_per_token: Duration::from_micros(self.kv_transfer_us_per_token),
            prefill_stalls_decode: self.prefill_stalls_decode,
        }
    }

    /// The role of instance `i`.
    pub fn role_of(&self, i: usize) -> Role {
        if i < self.prefill_instances {
            Role::Prefill
        } else {
            self.role
        }
    }

    /// The address instance `i` binds.
    pub fn address(&self, i: usize) -> Result<SocketAddr, SimError> {
        let base = match self.base_port {
            Some(p) => SocketAddr::new(IpAddr::from([127, 0, 0, 1]), p),
            None => self.listen,
        };
        if base.port() == 0 {
            return Ok(base);
        }
        let port =
            u16::try_from(usize::from(base.port()) + i).map_err(|_| SimError::PortRange {
                base,
                instances: self.instances,
            })?;
        Ok(SocketAddr::new(base.ip(), port))
    }
}

/// Why the simulator could not start.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("--instances must be at least 1")]
    NoInstances,
    #[error("--max-running and --kv-blocks must be at least 1")]
    NoCapacity,
    #[error("{instances} instances from {base} run past port 65535")]
    PortRange { base: SocketAddr, instances: usize },
    #[error("binding instance {index}'s KV-event publisher to {endpoint}: {source}")]
    KvEvents {
        index: usize,
        endpoint: String,
        source: zeromq::ZmqError,
    },
    #[error("binding instance {index} to {addr}: {source}")]
    Bind {
        index: usize,
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// Binds every instance (announcing each on stdout), serves until SIGTERM or SIGINT.
pub async fn run(args: SimArgs) -> Result<(), SimError> {
    if args.instances == 0 {
        return Err(SimError::NoInstances);
    }
    if args.max_running == 0 || args.kv_blocks == 0 {
        return Err(SimError::NoCapacity);
    }
    let mut tasks = Vec::with_capacity(args.instances);
    for index in 0..args.instances {
        let addr = args.address(index)?;
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| SimError::Bind {
                index,
                addr,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| SimError::Bind {
            index,
            addr,
            source,
        })?;
        let server = Arc::new(server_for(&args, addr, args.role_of(index)));
        let published = match args.kv_events_port {
            Some(port) => Some(publish_events(&server, index, port).await?),
            None => None,
        };
        tasks.push(tokio::spawn(server.serve(listener)));
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "listening http://{addr}");
        if let Some(endpoint) = published {
            let _ = writeln!(out, "kv-events {endpoint}");
        }
        let _ = out.flush();
    }
    wait_for_signal().await;
    for t in tasks {
        t.abort();
    }
    Ok(())
}

/// Starts instance `index`'s KV-event publisher on its IP, port `port` (+ `index`
/// unless 0); the bound `tcp://` endpoint.
async fn publish_events(server: &Server, index: usize, port: u16) -> Result<String, SimError> {
    let port = match port {
        0 => 0,
        p => u16::try_from(usize::from(p) + index).unwrap_or(0),
    };
    let endpoint = format!("tcp://{}", SocketAddr::new(server.addr.ip(), port));
    let (sink, bound) =
        kv_publish::start(&endpoint)
            .await
            .map_err(|source| SimError::KvEvents {
                index,
                endpoint,
                source,
            })?;
    server.instance.publish_to(sink);
    Ok(bound)
}

/// The server of one instance at `addr`, in `role`.
pub fn server_for(args: &SimArgs, addr: SocketAddr, role: Role) -> Server {
    Server {
        instance: Instance::new(args.cost_model(), args.lora.clone()),
        addr,
        style: metrics::MetricsStyle {
            model: args.model.clone(),
            legacy_kv_name: args.legacy_kv_metric,
            max_lora: args.max_lora.unwrap_or(args.lora.len().max(1)),
        },
        default_max_tokens: args.default_max_tokens,
        role,
        client: pd::client(),
    }
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[cfg(test)]
mod tests;
