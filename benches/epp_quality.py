#!/usr/bin/env python3
"""Scheduling-quality benchmark of tollgate's endpoint picker.

A pool of simulated model servers (`tollgate sim --instances 8`, one process), Envoy 1.40
(--concurrency 1) in front with ext_proc FULL_DUPLEX_STREAMED to tollgate and an
ORIGINAL_DST cluster keyed on the `x-gateway-destination-endpoint` request header, and
tollgate running `endpointPicker` over the 8 instances. For each scheduling profile
(`policies.endpointPicker.scheduling: {profile: NAME}`; a profile the binary does not
know is skipped, and `default` falls back to no `scheduling` key), the simulator and
tollgate are restarted (cold prefix caches), warmed up, then driven for a fixed time by
a multi-tenant workload: each tenant has a long shared system prompt, each request adds
a short unique user message, streams, and arrives open-loop (Poisson). The default rate
(32/s) is about 1.5× what the pool completes under round-robin (about 20/s on this cost
model), so throughput shows how far each profile carries the pool: every instance's prefix cache (`--kv-blocks`)
holds only a few tenants' prompts, so spreading tenants over all instances makes most
prefills miss, while prefix-aware picking keeps each tenant's prompt warm somewhere.

Profiles named `envoy:roundRobin`, `envoy:random` or `envoy:leastRequest` run no picker:
Envoy balances over the pool by itself (a baseline that needs no scheduling profile).

Per profile: requests sent in the window, errors, throughput (requests completed within
the window / window), TTFT p50/p99 (first content chunk), end-to-end p99, and each as a
ratio to round-robin (the picker's `roundRobin`, else `envoy:roundRobin`, else the first
profile), and the pool's prefix-cache hit ratio. The table is printed and written to
target/epp-quality.json.

Run through scripts/bench-epp (installs Envoy and the client library into .venv, builds
release). Knobs: --profiles, --rate, --duration, --warmup, --tenants, --hot-share (one
tenant sends that share of the traffic: the case where the endpoint caching its prompt
becomes the bottleneck), the simulator's cost model (--sim-args), and --prefix-cache
(a comma list of `approximate` and `kvEvents`: each of tollgate's profiles runs once per
mode, `kvEvents` rows named `PROFILE+kvEvents`; there the simulator publishes its cache
changes as vLLM's KV events next to each instance's port and the picker reads them with
`prefixCache: {mode: kvEvents, kvEvents: {portOffset: 1000}}`, tokenizing prompts with
the instances' `/tokenize`). A small --sim-args `--kv-blocks` makes the instances evict,
where the approximate index believes blocks are still cached and the events know.

`--workload evictions` is that case in one command: 40 tenants whose system prompts
(about 95 blocks each, 3,800 in all) exceed the pool's prefix caches (`--kv-blocks 400`
× 8 instances = 3,200 blocks), so every instance keeps evicting tenants' prompts; the
profiles `default` and `latencyAware`, each with `--prefix-cache approximate,kvEvents`.
Options given explicitly override the preset's. There the simulator publishes KV events
in every run (the `approximate` picker ignores them), the script subscribes to them and
prints, per run, the blocks the instances stored and evicted in the window — the
evicted ones that lay inside a tenant's shared system prompt counted apart — and, in
`kvEvents` runs, tollgate's `tollgate_epp_kv_events_*` figures; the comparison ends with
kvEvents ÷ approximate per profile (TTFT p50/p90, throughput, prefix hits).
(`--count-evictions` does the counting with any other workload.)

Each picker run also prints what the picker expected, from its `/metrics` over the
window: the mean predicted TTFT, the latency model's mean |observed − predicted| /
observed, and the mean share of each prompt the picked endpoint held by the picker's
index (approximate or KV events), to set against the hits the instances report.

`--replicas N` runs N picker processes behind the one Envoy, which spreads the ext_proc
streams over them as over the replicas of a Deployment: each approximate index then
knows only its own picks (about 1/N of a tenant's requests), while every replica reads
the same KV events — the case the precise cache is for.

TOLLGATE_BIN runs another tollgate binary than target/release/tollgate (e.g. the debug
build; ENVOY_BIN likewise for Envoy).
"""
import argparse
import asyncio
import json
import os
import random
import shlex
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

try:
    import httpx
except ImportError:  # the openai SDK's HTTP client, installed by scripts/install-test-deps
    import httpx2 as httpx

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = os.environ.get("CARGO_TARGET_DIR") or os.path.join(ROOT, "target")
TOLLGATE = os.environ.get("TOLLGATE_BIN") or os.path.join(TARGET, "release", "tollgate")
ENVOY = os.environ.get("ENVOY_BIN") or os.path.join(ROOT, ".venv", "bin", "envoy")
MODEL = "sim-model"

# 400 µs per uncached prompt token (a 1,500-token system prompt costs 600 ms of
# prefill), 10 ms decode steps; 600 KV blocks of 16 tokens: the prefix cache holds about
# six tenants' prompts, and about six requests run at once.
SIM_ARGS = ("--prefill-us-per-token 400 --prefill-overhead-us 2000 --decode-step-us 10000 "
            "--decode-step-per-seq-us 200 --kv-blocks 600 --max-running 32")

# Workload presets (--workload): the defaults of the options they name; an option given
# on the command line wins.
WORKLOADS = {
    "standard": {
        "profiles": "envoy:roundRobin,random,roundRobin,default,latencyAware",
        "tenants": 16, "sim_args": SIM_ARGS, "prefix_cache": "approximate",
        "count_evictions": False,
    },
    # 40 tenants × ~95 blocks of system prompt = ~3,800 blocks against 8 × 400 = 3,200
    # blocks of prefix cache in the pool: the instances keep evicting tenants' prompts.
    "evictions": {
        "profiles": "default,latencyAware",
        "tenants": 40, "sim_args": SIM_ARGS.replace("--kv-blocks 600", "--kv-blocks 400"),
        "prefix_cache": "approximate,kvEvents", "count_evictions": True,
    },
}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url, timeout=20.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.05)
    sys.exit(f"epp-quality: {url} did not become ready within {timeout}s")


def stop(proc):
    if proc and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# Instance i of a KV-event run listens on BASE + i and publishes on BASE + KV_OFFSET + i.
KV_OFFSET = 1000


def free_base(instances):
    """A port BASE with BASE + i and BASE + KV_OFFSET + i free for every instance i,
    below the ephemeral range (where the other listeners' port 0 lands)."""
    rng = random.Random()
    for _ in range(200):
        base = rng.randrange(20000, 30000 - KV_OFFSET - instances)
        try:
            for port in [base + i for i in range(instances)] + \
                        [base + KV_OFFSET + i for i in range(instances)]:
                with socket.socket() as s:
                    s.bind(("127.0.0.1", port))
        except OSError:
            continue
        return base
    sys.exit("epp-quality: no free port range for the KV-event publishers")


def start_sim(instances, sim_args, log, kv_events=False):
    """The pool; with `kv_events`, instance i (listening on BASE + i) publishes its KV
    events on BASE + KV_OFFSET + i."""
    listen = ["--listen", "127.0.0.1:0"]
    if kv_events:
        base = free_base(instances)
        listen = ["--listen", f"127.0.0.1:{base}", "--kv-events-port", str(base + KV_OFFSET)]
    proc = subprocess.Popen(
        [TOLLGATE, "sim", "--instances", str(instances), *listen,
         "--model", MODEL, *shlex.split(sim_args)],
        stdout=subprocess.PIPE, stderr=log, text=True)
    addrs = []
    while len(addrs) < instances:
        line = proc.stdout.readline()
        if not line:
            sys.exit("epp-quality: tollgate sim exited before listening")
        if line.startswith("listening http://"):
            addrs.append(line.strip().removeprefix("listening http://"))
    return proc, addrs


class KvEventCounter:
    """Subscribes to every instance's KV events (ZeroMQ SUB, msgpack EventBatch in array
    form) and counts, per instance, the blocks stored, the blocks removed (evicted), and
    the removed blocks that lay within the first `shared_blocks` blocks of a prompt (a
    tenant's shared system prompt: the position is followed through each BlockStored's
    parent)."""

    def __init__(self, addrs, shared_blocks):
        import threading
        import msgpack
        import zmq
        self._msgpack, self._zmq = msgpack, zmq
        self.shared_blocks = shared_blocks
        self.counts = [{"stored": 0, "removed": 0, "removed_shared": 0, "batches": 0}
                       for _ in addrs]
        self._pos = [{} for _ in addrs]
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ctx = zmq.Context()
        self._socks = []
        for a in addrs:
            host, port = a.rsplit(":", 1)
            sock = self._ctx.socket(zmq.SUB)
            sock.setsockopt(zmq.SUBSCRIBE, b"")
            sock.connect(f"tcp://{host}:{int(port) + KV_OFFSET}")
            self._socks.append(sock)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        poller = self._zmq.Poller()
        index = {}
        for i, sock in enumerate(self._socks):
            poller.register(sock, self._zmq.POLLIN)
            index[sock] = i
        while not self._stop.is_set():
            for sock, _ in poller.poll(100):
                while True:
                    try:
                        frames = sock.recv_multipart(self._zmq.NOBLOCK)
                    except self._zmq.Again:
                        break
                    self._apply(index[sock], frames[-1])

    def _apply(self, i, payload):
        try:
            _, events, *_ = self._msgpack.unpackb(payload, raw=False)
        except Exception:  # noqa: BLE001 — a count, not a decoder under test
            return
        pos, c = self._pos[i], self.counts[i]
        with self._lock:
            c["batches"] += 1
            for ev in events:
                kind = ev[0]
                if kind == "BlockStored":
                    hashes, parent = ev[1], ev[2]
                    base = 0 if parent is None else (pos[parent] + 1 if parent in pos else None)
                    for k, h in enumerate(hashes):
                        pos[h] = None if base is None else base + k
                    c["stored"] += len(hashes)
                elif kind == "BlockRemoved":
                    for h in ev[1]:
                        p = pos.get(h)
                        if p is not None and p < self.shared_blocks:
                            c["removed_shared"] += 1
                    c["removed"] += len(ev[1])
                elif kind == "AllBlocksCleared":
                    pos.clear()

    def snapshot(self):
        with self._lock:
            return [dict(c) for c in self.counts]

    def close(self):
        self._stop.set()
        self._thread.join(timeout=5)
        for sock in self._socks:
            sock.close(linger=0)
        self._ctx.term()


# What the picker expected: predicted TTFT per pick, |observed − predicted| / observed,
# and the share of each prompt the picked endpoint held by the picker's index (to set
# against the hits the instances report).
PREDICTION_SAMPLES = ("llm_d_epp_request_predicted_ttft_seconds_sum",
                      "llm_d_epp_request_predicted_ttft_seconds_count",
                      "tollgate_epp_ttft_prediction_error_ratio_sum",
                      "tollgate_epp_ttft_prediction_error_ratio_count",
                      "inference_extension_prefix_indexer_hit_ratio_sum",
                      "inference_extension_prefix_indexer_hit_ratio_count")


def scrape_picker_metrics(admin):
    """tollgate's `tollgate_epp_kv_events_*` samples and the latency model's sums and
    counts (`PREDICTION_SAMPLES`), each summed over pools."""
    out = {}
    with urllib.request.urlopen(f"http://127.0.0.1:{admin}/metrics", timeout=2) as r:
        for line in r.read().decode().splitlines():
            name = line.split("{", 1)[0].split(" ", 1)[0]
            if name.startswith("tollgate_epp_kv_events_") or name in PREDICTION_SAMPLES:
                out[name] = out.get(name, 0.0) + float(line.rsplit(" ", 1)[1])
    return out


def prediction_in_window(m0, m1):
    """The window's mean predicted TTFT (ms) and mean prediction error, or None."""
    d = {k: m1.get(k, 0.0) - m0.get(k, 0.0) for k in PREDICTION_SAMPLES}
    n_pred, n_err, n_hit = (d[PREDICTION_SAMPLES[i]] for i in (1, 3, 5))
    if n_pred <= 0 or n_err <= 0 or n_hit <= 0:
        return None
    return {"predicted_ttft_mean_ms": 1000 * d[PREDICTION_SAMPLES[0]] / n_pred,
            "prediction_error_mean": d[PREDICTION_SAMPLES[2]] / n_err,
            "index_hit_at_pick_mean": d[PREDICTION_SAMPLES[4]] / n_hit}


TOLLGATE_CONFIG = """admin: {{ address: "127.0.0.1:{admin}" }}
extProc: {{ address: "127.0.0.1:{ext_proc}" }}
logging: {{ level: warn }}
binds:
- port: {proxy}
  listeners:
  - name: inference
    routes:
    - name: chat
      policies:
        endpointPicker:
          endpoints: [{endpoints}]
          metrics: {{ path: /metrics, interval: 50ms, staleAfter: 200ms }}
{scheduling}{prefix_cache}      backends: [ {{ host: "{first}" }} ]
"""


def picker_metrics(replicas):
    """`scrape_picker_metrics` summed over the picker replicas."""
    out = {}
    for r in replicas:
        for k, v in scrape_picker_metrics(r["admin"]).items():
            out[k] = out.get(k, 0.0) + v
    return out


def tollgate_config(tmp, ports, addrs, profile, with_key, kv_events=False, replica=0):
    scheduling = f"          scheduling: {{ profile: {profile} }}\n" if with_key else ""
    prefix_cache = (f"          prefixCache: {{ mode: kvEvents, kvEvents: {{ portOffset: {KV_OFFSET} }} }}\n"
                    if kv_events else "")
    text = TOLLGATE_CONFIG.format(
        admin=ports["admin"], ext_proc=ports["ext_proc"], proxy=ports["proxy"],
        endpoints=", ".join(f'"{a}"' for a in addrs), scheduling=scheduling,
        prefix_cache=prefix_cache, first=addrs[0])
    suffix = "+kvEvents" if kv_events else ""
    path = os.path.join(tmp, f"tollgate-{profile}{suffix}-{replica}.yaml")
    with open(path, "w") as f:
        f.write(text)
    return path


def valid(path):
    r = subprocess.run([TOLLGATE, "validate", "-c", path], capture_output=True, text=True)
    return r.returncode == 0, (r.stdout + r.stderr).strip()


ENVOY_CONFIG = """admin:
  address: {{ socket_address: {{ address: 127.0.0.1, port_value: {admin} }} }}
static_resources:
  listeners:
  - name: ingress
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: {listen} }} }}
    per_connection_buffer_limit_bytes: 8388608
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: ingress
          codec_type: AUTO
          stream_idle_timeout: 300s
          request_timeout: 0s
          route_config:
            name: routes
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - name: chat
                match: {{ prefix: "/" }}
                route: {{ cluster: pool, timeout: 0s }}
          http_filters:
          - name: envoy.filters.http.ext_proc
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.ext_proc.v3.ExternalProcessor
              grpc_service: {{ envoy_grpc: {{ cluster_name: tollgate }} }}
              failure_mode_allow: false
              message_timeout: 5s
              max_message_timeout: 10s
              processing_mode:
                request_header_mode: SEND
                response_header_mode: SEND
                request_body_mode: FULL_DUPLEX_STREAMED
                response_body_mode: FULL_DUPLEX_STREAMED
                request_trailer_mode: SEND
                response_trailer_mode: SEND
              request_attributes: ["xds.route_name"]
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
  - name: tollgate
    type: STATIC
    connect_timeout: 0.5s
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: {{ http2_protocol_options: {{}} }}
    circuit_breakers:
      thresholds: [ {{ priority: DEFAULT, max_requests: 100000, max_pending_requests: 100000 }} ]
    load_assignment:
      cluster_name: tollgate
      endpoints:
      - lb_endpoints:
{ext_proc_endpoints}
  # The pool: Envoy connects to whatever ip:port the picker put in the header.
  - name: pool
    type: ORIGINAL_DST
    lb_policy: CLUSTER_PROVIDED
    connect_timeout: 1s
    original_dst_lb_config:
      use_http_header: true
      http_header_name: x-gateway-destination-endpoint
    circuit_breakers:
      thresholds: [ {{ priority: DEFAULT, max_requests: 100000, max_pending_requests: 100000, max_connections: 100000 }} ]
"""


def envoy_config(admin, listen, ext_proc_ports):
    """ENVOY_CONFIG for Envoy's admin and listener ports, the ext_proc cluster holding one
    host per picker replica (Envoy spreads the ext_proc streams over them)."""
    return ENVOY_CONFIG.format(
        admin=admin, listen=listen,
        ext_proc_endpoints="\n".join(
            "        - endpoint: { address: { socket_address: "
            f"{{ address: 127.0.0.1, port_value: {port} }} }} }}"
            for port in ext_proc_ports))


# Baselines without the picker: Envoy balancing over the same pool by itself.
ENVOY_DIRECT = """admin:
  address: {{ socket_address: {{ address: 127.0.0.1, port_value: {admin} }} }}
static_resources:
  listeners:
  - name: ingress
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: {listen} }} }}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: ingress
          request_timeout: 0s
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {{ prefix: "/" }}
                route: {{ cluster: pool, timeout: 0s }}
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
  - name: pool
    type: STATIC
    lb_policy: {policy}
    connect_timeout: 1s
    circuit_breakers:
      thresholds: [ {{ priority: DEFAULT, max_requests: 100000, max_pending_requests: 100000, max_connections: 100000 }} ]
    load_assignment:
      cluster_name: pool
      endpoints:
      - lb_endpoints:
{endpoints}"""

ENVOY_POLICIES = {"roundRobin": "ROUND_ROBIN", "random": "RANDOM", "leastRequest": "LEAST_REQUEST"}


def start_direct_envoy(tmp, name, addrs, log):
    """Envoy alone over `addrs` with lb policy `name`; returns (process, url)."""
    listen, admin = free_port(), free_port()
    endpoints = "".join(
        f"        - endpoint: {{ address: {{ socket_address: {{ address: {a.rsplit(':', 1)[0]}, "
        f"port_value: {a.rsplit(':', 1)[1]} }} }} }}\n" for a in addrs)
    path = os.path.join(tmp, f"envoy-{name}.yaml")
    with open(path, "w") as f:
        f.write(ENVOY_DIRECT.format(admin=admin, listen=listen, policy=ENVOY_POLICIES[name],
                                    endpoints=endpoints))
    proc = subprocess.Popen([ENVOY, "-c", path, "--concurrency", "1", "--log-level", "warn",
                             "--base-id", str(listen)], stdout=log, stderr=subprocess.STDOUT)
    wait_http(f"http://127.0.0.1:{admin}/ready")
    return proc, f"http://127.0.0.1:{listen}/v1/chat/completions"


# --- the workload -------------------------------------------------------------------

WORDS = ("account policy region invoice shipment latency customer contract schedule "
         "inventory forecast ticket escalation refund warranty supplier catalogue audit "
         "compliance quota summary analysis dashboard pipeline release incident").split()


def system_prompt(tenant, chars):
    rng = random.Random(tenant)
    out = [f"You are the assistant of tenant {tenant}. Follow these instructions."]
    while sum(len(w) + 1 for w in out) < chars:
        out.append(rng.choice(WORDS))
    return " ".join(out)[:chars]


class Stats:
    def __init__(self):
        self.ttft, self.e2e, self.done_at = [], [], []
        # Flow control's queue time of each dispatched request (its response header).
        self.queued_ms = []
        # Each completed request's (TTFT s, ms queued in tollgate, ms queued in the
        # simulator for a batch slot, the simulator's own TTFT ms: slot, prefills queued
        # before it, its prefill): where a slow first token waited.
        self.waits = []
        self.sent = self.errors = 0
        self.error_kinds = {}
        self.endpoints = {}

    def error(self, kind):
        self.errors += 1
        self.error_kinds[kind] = self.error_kinds.get(kind, 0) + 1


async def one(client, url, system, user, max_tokens, stats, headers=None):
    body = {"model": MODEL, "stream": True, "max_tokens": max_tokens,
            "messages": [{"role": "system", "content": system},
                         {"role": "user", "content": user}]}
    start = time.perf_counter()
    ttft = None
    try:
        async with client.stream("POST", url, json=body, headers=headers) as r:
            if r.status_code != 200:
                await r.aread()
                stats.error(f"http {r.status_code}")
                return
            queued = r.headers.get("x-llm-d-flow-queue-duration-ms")
            if queued is not None:
                stats.queued_ms.append(float(queued))
            in_server = float(r.headers.get("x-sim-queued-ms", "nan"))
            server_ttft = float(r.headers.get("x-sim-ttft-ms", "nan"))
            ep = r.headers.get("x-sim-endpoint", "?")
            stats.endpoints[ep] = stats.endpoints.get(ep, 0) + 1
            done = False
            async for line in r.aiter_lines():
                if not line.startswith("data: "):
                    continue
                data = line[6:]
                if data == "[DONE]":
                    done = True
                    break
                if ttft is None:
                    chunk = json.loads(data)
                    if any(c.get("delta", {}).get("content") for c in chunk.get("choices", [])):
                        ttft = time.perf_counter() - start
            if not done or ttft is None:
                stats.error("truncated stream")
                return
    except (httpx.HTTPError, json.JSONDecodeError) as e:
        stats.error(type(e).__name__)
        return
    end = time.perf_counter()
    stats.ttft.append(ttft)
    stats.waits.append((ttft, float(queued or 0.0), in_server, server_ttft))
    stats.e2e.append(end - start)
    stats.done_at.append(end)


async def drive(url, rate, duration, tenants, prompt_chars, max_tokens, seed, drain,
                hot_share=0.0):
    """Poisson arrivals at `rate` for `duration` s, a `hot_share` of them from tenant 0
    and the rest spread evenly; returns Stats and the window."""
    rng = random.Random(seed)
    systems = [system_prompt(t, prompt_chars) for t in range(tenants)]
    stats = Stats()
    limits = httpx.Limits(max_connections=4096, max_keepalive_connections=4096)
    timeout = httpx.Timeout(120.0, connect=5.0)
    async with httpx.AsyncClient(limits=limits, timeout=timeout) as client:
        tasks = []
        t0 = time.perf_counter()
        next_at = t0
        n = 0
        while True:
            next_at += rng.expovariate(rate)
            if next_at - t0 >= duration:
                break
            delay = next_at - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tenant = 0 if rng.random() < hot_share else rng.randrange(tenants)
            n += 1
            user = f"Request {seed}-{n}: summarise item {rng.randrange(10**9)} for me, briefly."
            stats.sent += 1
            tasks.append(asyncio.create_task(
                one(client, url, systems[tenant], user, max_tokens, stats)))
        t_end = t0 + duration
        if tasks:
            finished, pending = await asyncio.wait(tasks, timeout=drain)
            for t in pending:
                t.cancel()
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)
                for _ in pending:
                    stats.error("unfinished after drain")
    return stats, t0, t_end


def pct(values, q):
    if not values:
        return float("nan")
    v = sorted(values)
    return v[min(len(v) - 1, int(q * len(v)))]


def summarise(profile, stats, t0, t_end):
    in_window = sum(1 for t in stats.done_at if t <= t_end)
    return {
        "profile": profile,
        "requests": stats.sent,
        "completed": len(stats.e2e),
        "errors": stats.errors,
        "error_kinds": stats.error_kinds,
        "throughput_rps": in_window / (t_end - t0),
        "ttft_p50_ms": pct(stats.ttft, 0.50) * 1000,
        "ttft_p90_ms": pct(stats.ttft, 0.90) * 1000,
        "ttft_p99_ms": pct(stats.ttft, 0.99) * 1000,
        "e2e_p50_ms": pct(stats.e2e, 0.50) * 1000,
        "e2e_p99_ms": pct(stats.e2e, 0.99) * 1000,
        "per_endpoint": dict(sorted(stats.endpoints.items())),
    }


def scrape_prefix_hits(addrs):
    """Prefix-cache hit ratio (tokens) over the pool, from the sims' own counters."""
    q = h = 0.0
    for a in addrs:
        with urllib.request.urlopen(f"http://{a}/metrics", timeout=2) as r:
            for line in r.read().decode().splitlines():
                if line.startswith("vllm:prefix_cache_queries_total"):
                    q += float(line.rsplit(" ", 1)[1])
                elif line.startswith("vllm:prefix_cache_hits_total"):
                    h += float(line.rsplit(" ", 1)[1])
    return h, q


def runs(profiles, prefix_caches):
    """(profile, reads KV events) for each run: Envoy's own balancers once, tollgate's
    profiles once per prefix-cache mode."""
    modes = [m.strip() for m in prefix_caches.split(",") if m.strip()]
    unknown = [m for m in modes if m not in ("approximate", "kvEvents")]
    if unknown or not modes:
        sys.exit(f"epp-quality: --prefix-cache takes approximate and/or kvEvents, not {unknown}")
    out = []
    for profile in [s.strip() for s in profiles.split(",") if s.strip()]:
        if profile.startswith("envoy:"):
            out.append((profile, False))
        else:
            out.extend((profile, m == "kvEvents") for m in modes)
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workload", choices=sorted(WORKLOADS), default="standard",
                   help="preset: standard (16 tenants, --kv-blocks 600, every profile, "
                        "approximate index) or evictions (40 tenants whose prompts exceed "
                        "the pool's caches, --kv-blocks 400, profiles default,latencyAware, "
                        "--prefix-cache approximate,kvEvents, --count-evictions); options "
                        "given explicitly override the preset")
    p.add_argument("--profiles", default=None,
                   help="comma-separated scheduling profiles of the picker, in run order; "
                        "envoy:roundRobin, envoy:random, envoy:leastRequest are Envoy "
                        "balancing the pool alone (no picker), as a reference (default: "
                        "the --workload preset's)")
    p.add_argument("--instances", type=int, default=8)
    p.add_argument("--replicas", type=int, default=1,
                   help="picker replicas (tollgate processes, each with its own prefix "
                        "index) Envoy spreads the requests over, as in a Deployment of "
                        "several; each knows only the picks it made itself")
    p.add_argument("--rate", type=float, default=32.0, help="requests per second")
    p.add_argument("--duration", type=float, default=40.0, help="measured seconds")
    p.add_argument("--warmup", type=float, default=8.0, help="warm-up seconds")
    p.add_argument("--drain", type=float, default=30.0,
                   help="seconds to wait for requests in flight at the window's end")
    p.add_argument("--tenants", type=int, default=None,
                   help="tenants (distinct system prompts); default: the preset's, 16 or 40")
    p.add_argument("--hot-share", type=float, default=0.0,
                   help="share of the requests from tenant 0 (a hot tenant); default 0: "
                        "every tenant alike")
    p.add_argument("--prompt-chars", type=int, default=6000,
                   help="characters of each tenant's system prompt")
    p.add_argument("--max-tokens", type=int, default=16)
    p.add_argument("--sim-args", default=None,
                   help=f"cost-model flags of tollgate sim (default: {SIM_ARGS!r}; "
                        "--workload evictions: the same with --kv-blocks 400)")
    p.add_argument("--prefix-cache", default=None,
                   help="comma list of approximate, kvEvents: the picker's prefix index(es) "
                        "(default: the preset's, approximate or approximate,kvEvents)")
    p.add_argument("--count-evictions", action=argparse.BooleanOptionalAction, default=None,
                   help="the simulator publishes KV events in every run and the script "
                        "counts the blocks each run's instances stored and evicted in the "
                        "window (default: on with --workload evictions)")
    p.add_argument("--out", default=os.path.join(TARGET, "epp-quality.json"))
    args = p.parse_args()
    for k, v in WORKLOADS[args.workload].items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    shared_blocks = max(0, args.prompt_chars // 64 - 1)  # blocks wholly in a system prompt
    for binary in (TOLLGATE, ENVOY):
        if not os.access(binary, os.X_OK):
            sys.exit(f"epp-quality: {binary} not found (run scripts/bench-epp)")

    tmp = tempfile.mkdtemp(prefix="epp-quality-")
    ports = {k: free_port() for k in ("envoy", "envoy_admin")}
    # Each picker replica's own ports; Envoy spreads the ext_proc streams over them.
    replicas = [{k: free_port() for k in ("admin", "ext_proc", "proxy")}
                for _ in range(args.replicas)]
    envoy_yaml = os.path.join(tmp, "envoy.yaml")
    with open(envoy_yaml, "w") as f:
        f.write(envoy_config(ports["envoy_admin"], ports["envoy"],
                             [r["ext_proc"] for r in replicas]))
    envoy_log = open(os.path.join(tmp, "envoy.log"), "w")
    envoy = subprocess.Popen([ENVOY, "-c", envoy_yaml, "--concurrency", "1",
                              "--log-level", "warn"], stdout=envoy_log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{ports['envoy']}/v1/chat/completions"
    results = []
    print(f"epp-quality: {args.instances} sims ({args.sim_args}), {args.tenants} tenants × "
          f"{args.prompt_chars}-char system prompts, {args.max_tokens} output tokens, "
          f"Poisson {args.rate}/s, hot tenant share {args.hot_share:.0%}, warm-up {args.warmup:.0f}s, window {args.duration:.0f}s; "
          f"workload {args.workload}; {args.replicas} picker replica(s); binary {TOLLGATE}; "
          f"logs in {tmp}", flush=True)
    try:
        wait_http(f"http://127.0.0.1:{ports['envoy_admin']}/ready")
        for profile, kv in runs(args.profiles, args.prefix_cache):
            run_name = f"{profile}+kvEvents" if kv else profile
            sim_log = open(os.path.join(tmp, f"sim-{run_name}.log"), "w")
            sim, addrs = start_sim(args.instances, args.sim_args, sim_log,
                                   kv or args.count_evictions)
            counter = KvEventCounter(addrs, shared_blocks) if args.count_evictions else None
            tollgates = []
            direct = None
            target = url
            try:
                if profile.startswith("envoy:"):
                    name = profile.removeprefix("envoy:")
                    if name not in ENVOY_POLICIES:
                        print(f"epp-quality: skipping {profile}: not one of "
                              f"{', '.join('envoy:' + n for n in ENVOY_POLICIES)}", flush=True)
                        continue
                    direct_log = open(os.path.join(tmp, f"envoy-{name}.log"), "w")
                    direct, target = start_direct_envoy(tmp, name, addrs, direct_log)
                else:
                    with_key = True
                    path = tollgate_config(tmp, replicas[0], addrs, profile, True, kv)
                    ok, why = valid(path)
                    if not ok and profile == "default":
                        with_key = False
                        path = tollgate_config(tmp, replicas[0], addrs, profile, False, kv)
                        ok, why = valid(path)
                    if not ok:
                        print(f"epp-quality: skipping profile {run_name}: {why}", flush=True)
                        continue
                    tollgates = []
                    for i, r in enumerate(replicas):
                        path = tollgate_config(tmp, r, addrs, profile, with_key, kv, i)
                        tg_log = open(os.path.join(tmp, f"tollgate-{run_name}-{i}.log"), "w")
                        tollgates.append(subprocess.Popen([TOLLGATE, "serve", "-c", path],
                                                          stdout=tg_log,
                                                          stderr=subprocess.STDOUT))
                    for r in replicas:
                        wait_http(f"http://127.0.0.1:{r['admin']}/readyz")
                time.sleep(0.5)  # first scrapes of every endpoint
                warm, _, _ = asyncio.run(drive(target, args.rate, args.warmup, args.tenants,
                                               args.prompt_chars, args.max_tokens, 1, 5.0,
                                               args.hot_share))
                h0, q0 = scrape_prefix_hits(addrs)
                c0 = counter.snapshot() if counter else None
                m0 = picker_metrics(replicas) if tollgates else None
                stats, t0, t_end = asyncio.run(drive(target, args.rate, args.duration,
                                                     args.tenants, args.prompt_chars,
                                                     args.max_tokens, 2, args.drain,
                                                     args.hot_share))
                h1, q1 = scrape_prefix_hits(addrs)
                time.sleep(0.3)  # the last batches of the window reach the subscriber
                c1 = counter.snapshot() if counter else None
                m1 = picker_metrics(replicas) if tollgates else None
                row = summarise(run_name, stats, t0, t_end)
                row["warmup_errors"] = warm.errors
                row["replicas"] = 0 if profile.startswith("envoy:") else args.replicas
                row["prefix_hit_ratio"] = (h1 - h0) / (q1 - q0) if q1 > q0 else 0.0
                if counter:
                    d = [{k: b[k] - a[k] for k in a} for a, b in zip(c0, c1)]
                    row["kv_events_window"] = {
                        "stored": sum(x["stored"] for x in d),
                        "evicted": sum(x["removed"] for x in d),
                        "evicted_shared_prefix": sum(x["removed_shared"] for x in d),
                        "evicted_per_instance": [x["removed"] for x in d],
                        "evicted_since_start": sum(x["removed"] for x in c1),
                    }
                if kv:
                    row["tollgate_kv_events"] = {"window_start": m0, "window_end": m1}
                prediction = prediction_in_window(m0, m1) if tollgates else None
                if prediction:
                    row.update(prediction)
                results.append(row)
                print(f"epp-quality: {run_name}: {row['completed']}/{row['requests']} ok, "
                      f"{row['errors']} errors, TTFT p50 {row['ttft_p50_ms']:.0f} ms, "
                      f"p90 {row['ttft_p90_ms']:.0f} ms, "
                      f"prefix hits {row['prefix_hit_ratio']:.0%}, per endpoint "
                      f"{list(row['per_endpoint'].values())}", flush=True)
                if counter:
                    e = row["kv_events_window"]
                    print(f"epp-quality: {run_name}: instances' KV events in the window: "
                          f"{e['stored']} blocks stored, {e['evicted']} evicted "
                          f"({e['evicted_shared_prefix']} inside a tenant's system prompt; "
                          f"per instance {e['evicted_per_instance']}), "
                          f"{e['evicted_since_start']} evicted since start", flush=True)
                if kv:
                    print(f"epp-quality: {run_name}: tollgate at the window's end: "
                          + ", ".join(f"{k.removeprefix('tollgate_epp_kv_events_')} "
                                      f"{m1[k]:.0f}" + (f" (+{m1[k] - m0.get(k, 0):.0f})"
                                                        if k.endswith("_total") else "")
                                      for k in sorted(m1)
                                      if k.startswith("tollgate_epp_kv_events_")), flush=True)
                if prediction:
                    print(f"epp-quality: {run_name}: latency model in the window: predicted "
                          f"TTFT mean {prediction['predicted_ttft_mean_ms']:.0f} ms, "
                          f"|observed − predicted| / observed mean "
                          f"{prediction['prediction_error_mean']:.2f}; prompt share held at "
                          f"the pick by the picker's index {prediction['index_hit_at_pick_mean']:.0%} "
                          f"(the instances' hits: {row['prefix_hit_ratio']:.0%})", flush=True)
            finally:
                if counter:
                    counter.close()
                for t in tollgates:
                    stop(t)
                stop(direct)
                stop(sim)
    finally:
        stop(envoy)

    if not results:
        sys.exit("epp-quality: no profile ran")
    base = next((r for r in results if r["profile"] == "roundRobin"),
                next((r for r in results if r["profile"] == "envoy:roundRobin"), results[0]))
    for r in results:
        r["baseline"] = base["profile"]
        for k in ("throughput_rps", "ttft_p50_ms", "ttft_p99_ms", "e2e_p99_ms"):
            r[f"{k}_ratio"] = r[k] / base[k] if base[k] else float("nan")
    print()
    print(f"ratios (×) are to {base['profile']}")
    head = (f"{'profile':<24}{'requests':>9}{'errors':>7}{'thru r/s':>9}{'×':>6}"
            f"{'TTFT p50':>10}{'×':>6}{'TTFT p90':>10}{'TTFT p99':>10}{'×':>6}"
            f"{'e2e p99':>10}{'×':>6}{'hits':>6}")
    print(head)
    print("-" * len(head))
    for r in results:
        print(f"{r['profile']:<24}{r['requests']:>9}{r['errors']:>7}"
              f"{r['throughput_rps']:>9.2f}{r['throughput_rps_ratio']:>6.2f}"
              f"{r['ttft_p50_ms']:>8.0f}ms{r['ttft_p50_ms_ratio']:>6.2f}"
              f"{r['ttft_p90_ms']:>8.0f}ms"
              f"{r['ttft_p99_ms']:>8.0f}ms{r['ttft_p99_ms_ratio']:>6.2f}"
              f"{r['e2e_p99_ms']:>8.0f}ms{r['e2e_p99_ms_ratio']:>6.2f}"
              f"{r['prefix_hit_ratio']:>6.0%}")
    by_name = {r["profile"]: r for r in results}
    pairs = [(by_name[n], by_name[n + "+kvEvents"]) for n in by_name
             if n + "+kvEvents" in by_name]
    if pairs:
        print()
        print("kvEvents ÷ approximate, per profile (< 1 is better for TTFT, > 1 for "
              "throughput and hits)")
        for a, k in pairs:
            ratio = {m: (k[m] / a[m] if a[m] else float("nan"))
                     for m in ("ttft_p50_ms", "ttft_p90_ms", "throughput_rps",
                               "prefix_hit_ratio")}
            k["vs_approximate"] = ratio
            print(f"  {a['profile']}: TTFT p50 {ratio['ttft_p50_ms']:.2f}×, TTFT p90 "
                  f"{ratio['ttft_p90_ms']:.2f}×, throughput {ratio['throughput_rps']:.2f}×, "
                  f"prefix hits {ratio['prefix_hit_ratio']:.2f}× "
                  f"({a['prefix_hit_ratio']:.1%} → {k['prefix_hit_ratio']:.1%})")
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump({"config": vars(args), "results": results}, f, indent=2)
    print(f"\nwritten to {args.out}")


if __name__ == "__main__":
    main()
