#!/usr/bin/env python3
"""Prefill/decode (P/D) disaggregation against aggregated serving, in the simulator.

Two setups, each on a fresh `tollgate sim` process with the same number of instances
(default 4) and the same cost flags, behind tollgate's own proxy (standalone mode: a
`binds:` route whose policy is `endpointPicker` over the instances, `tollgate serve`):
- aggregated: every instance `--role both`, no `roles` / `disaggregation` in the picker;
- disaggregated: the first `--prefill-instances` (default 3) instances `prefill`, the
  rest `decode` (`--prefill-instances 3 --role decode`), the picker given `roles:` and
  `disaggregation: {nonCachedTokens: 256}`: the destination is a decode instance, which
  (named a prefill instance in `x-prefiller-host-port`) has the prompt prefilled there
  over HTTP, pulls its KV cache (`--kv-transfer-us-per-token`) and decodes.

Why 3 prefill + 1 decode: in the simulator's cost model prefills are serialized per
instance (one at a time, 50 µs per uncached token here: a 12K-token prompt holds an
instance's compute for 0.6 s) while decode steps batch every running request (25 ms a
step + 0.5 ms per further running sequence), so with long prompts and ~100 output tokens
the prefill side needs most of the instances: one decode instance carries ~12 sequences
at once (its KV cache, 16,384 blocks, fits ~20 such requests) while three prefill
instances run ~4.8 prefills a second. With 2 + 2 the two prefill instances (3.2/s) are
the bottleneck and the decode ones idle. Both setups run the simulator with `--prefill-stalls-decode`: a decode step waits for
the prefill running on its instance (one GPU, prefills not chunked), which is what
disaggregation takes off the decoding instances (`--sim-args` without it: an aggregated
instance is then a full prefill engine and a full decode engine at once, and P/D only
pays its KV transfer and its fewer prefill engines).

Workload: closed loop, `--concurrency` (default 16) clients each sending one streamed
(`stream: true`) chat request at a time, prompts of `--min-tokens`..`--max-tokens`
(default 8K..16K tokens, 4 characters each) that start with a unique id (never in any
prefix cache), outputs of `--min-output`..`--max-output` (64..128) tokens; the same
request sequence in both setups. A warm-up (`--warmup`, 10 s) runs first, then the
window (`--duration`, 60 s) is measured without a break in the load.

Printed per setup: throughput (requests and output tokens completed in the window, per
second), TTFT p50/p90/p99 (time to the first SSE data event), time per output token
p50/p90 ((e2e − TTFT) / (tokens − 1)), end-to-end latency p50/p90 (requests started and
finished in the window), errors, and how many requests were disaggregated (responses
carrying `x-sim-prefill-endpoint`); then P/D ÷ aggregated ratios. The bench fails (exit
1) when the binary is missing, when a setup completes no request in the window, or when
the P/D setup disaggregated nothing. Results also go to target/epp-pd.json.

Run through scripts/bench-epp (builds release), or directly once built:
.venv/bin/python benches/epp_pd.py [--tollgate target/debug/tollgate]. The binary
defaults to $TOLLGATE_BIN, else target/release/tollgate, else target/debug/tollgate.
"""
import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import epp_quality as q  # noqa: E402  (the shared process helpers, percentiles)

SIM_ARGS = ("--prefill-stalls-decode --prefill-us-per-token 50 --prefill-overhead-us 2000 --decode-step-us 25000 "
            "--decode-step-per-seq-us 500 --max-running 64 --kv-blocks 16384 "
            "--kv-transfer-us-per-token 5")

TOLLGATE = """admin: {{ address: "127.0.0.1:{admin}" }}
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
{pd}"""


def default_binary():
    env = os.environ.get("TOLLGATE_BIN")
    if env:
        return env
    release = os.path.join(q.TARGET, "release", "tollgate")
    return release if os.access(release, os.X_OK) else os.path.join(q.TARGET, "debug", "tollgate")


def corpus(chars, seed=11):
    rng = random.Random(seed)
    out, n = [], 0
    while n < chars:
        w = rng.choice(q.WORDS)
        out.append(w)
        n += len(w) + 1
    return " ".join(out)


class Rec:
    __slots__ = ("start", "ttft", "end", "tokens", "error", "endpoint", "prefill")

    def __init__(self, start):
        self.start, self.ttft, self.end, self.tokens = start, None, None, 0
        self.error = self.endpoint = self.prefill = None


async def one(client, url, body):
    rec = Rec(time.perf_counter())
    try:
        async with client.stream("POST", url, json=body) as r:
            if r.status_code != 200:
                await r.aread()
                rec.error = f"http {r.status_code}"
            else:
                rec.endpoint = r.headers.get("x-sim-endpoint")
                rec.prefill = r.headers.get("x-sim-prefill-endpoint")
                done = False
                async for line in r.aiter_lines():
                    if not line.startswith("data: "):
                        continue
                    if rec.ttft is None:
                        rec.ttft = time.perf_counter() - rec.start
                    if line == "data: [DONE]":
                        done = True
                        break
                    rec.tokens += 1
                if not done:
                    rec.error = "truncated stream"
    except q.httpx.HTTPError as e:
        rec.error = type(e).__name__
    rec.end = time.perf_counter()
    return rec


async def drive(url, args, text):
    """Closed loop: `concurrency` workers, each sending one request at a time until the
    warm-up and the window are over. Returns every request's record and the window."""
    recs = []
    limits = q.httpx.Limits(max_connections=args.concurrency,
                            max_keepalive_connections=args.concurrency)
    async with q.httpx.AsyncClient(limits=limits, timeout=q.httpx.Timeout(300.0)) as client:
        t0 = time.perf_counter() + args.warmup
        t1 = t0 + args.duration

        async def worker(i):
            rng = random.Random(1000 + i)  # the same sequence in both setups
            n = 0
            while time.perf_counter() < t1:
                n += 1
                tokens = rng.randint(args.min_tokens, args.max_tokens)
                head = f"Request {i}-{n}-{rng.randrange(10**12)}: summarise this. "
                off = rng.randrange(len(text) - 4 * tokens)
                content = head + text[off:off + 4 * tokens - len(head)]
                body = {"model": q.MODEL, "stream": True,
                        "max_tokens": rng.randint(args.min_output, args.max_output),
                        "messages": [{"role": "user", "content": content}]}
                recs.append(await one(client, url, body))

        await asyncio.gather(*(worker(i) for i in range(args.concurrency)))
    return recs, t0, t1


def summarise(name, recs, t0, t1):
    done = [r for r in recs if r.error is None and t0 <= r.end <= t1]
    inside = [r for r in done if r.start >= t0]
    errors = [r for r in recs if r.error is not None and t0 <= r.end <= t1]
    kinds = {}
    for r in errors:
        kinds[r.error] = kinds.get(r.error, 0) + 1
    span = t1 - t0
    ttft = [r.ttft for r in done]
    tpot = [(r.end - r.start - r.ttft) / (r.tokens - 1) for r in done if r.tokens > 1]
    e2e = [r.end - r.start for r in inside]
    endpoints, prefills = {}, {}
    for r in done:
        endpoints[r.endpoint] = endpoints.get(r.endpoint, 0) + 1
        if r.prefill:
            prefills[r.prefill] = prefills.get(r.prefill, 0) + 1
    return {
        "setup": name,
        "completed": len(done),
        "errors": len(errors),
        "error_kinds": kinds,
        "errors_outside_window": sum(1 for r in recs if r.error is not None) - len(errors),
        "throughput_rps": len(done) / span,
        "output_tokens_per_s": sum(r.tokens for r in done) / span,
        "ttft_p50_ms": q.pct(ttft, 0.50) * 1e3,
        "ttft_p90_ms": q.pct(ttft, 0.90) * 1e3,
        "ttft_p99_ms": q.pct(ttft, 0.99) * 1e3,
        "tpot_p50_ms": q.pct(tpot, 0.50) * 1e3,
        "tpot_p90_ms": q.pct(tpot, 0.90) * 1e3,
        "e2e_p50_ms": q.pct(e2e, 0.50) * 1e3,
        "e2e_p90_ms": q.pct(e2e, 0.90) * 1e3,
        "e2e_samples": len(e2e),
        "disaggregated": sum(1 for r in done if r.prefill),
        "per_endpoint": dict(sorted(endpoints.items())),
        "per_prefill_endpoint": dict(sorted(prefills.items())),
    }


def run_setup(name, args, tmp, log, text):
    pd = name == "disaggregated"
    sim_args = args.sim_args + (f" --prefill-instances {args.prefill_instances} --role decode"
                                if pd else " --role both")
    sim, addrs = q.start_sim(args.instances, sim_args, log)
    tollgate = None
    try:
        ports = {k: q.free_port() for k in ("admin", "proxy")}
        extra = ""
        if pd:
            roles = ", ".join(f'"{a}": {"prefill" if i < args.prefill_instances else "decode"}'
                              for i, a in enumerate(addrs))
            extra = (f"          roles: {{ {roles} }}\n"
                     f"          disaggregation: {{ nonCachedTokens: {args.non_cached_tokens} }}\n")
        cfg = os.path.join(tmp, f"tollgate-{name}.yaml")
        with open(cfg, "w") as f:
            f.write(TOLLGATE.format(admin=ports["admin"], proxy=ports["proxy"],
                                    endpoints=", ".join(f'"{a}"' for a in addrs), pd=extra))
        ok, why = q.valid(cfg)
        if not ok:
            sys.exit(f"epp-pd: the {name} config {cfg} is invalid: {why}")
        tollgate = subprocess.Popen([q.TOLLGATE, "serve", "-c", cfg], stdout=log,
                                    stderr=subprocess.STDOUT)
        q.wait_http(f"http://127.0.0.1:{ports['admin']}/readyz")
        time.sleep(0.5)  # the first scrapes of every instance
        url = f"http://127.0.0.1:{ports['proxy']}/v1/chat/completions"
        recs, t0, t1 = asyncio.run(drive(url, args, text))
    finally:
        q.stop(tollgate)
        q.stop(sim)
    return summarise(name, recs, t0, t1)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tollgate", default=default_binary(), help="the tollgate binary")
    p.add_argument("--instances", type=int, default=4, help="simulated instances per setup")
    p.add_argument("--prefill-instances", type=int, default=3,
                   help="of --instances, how many prefill in the P/D setup (the rest decode)")
    p.add_argument("--non-cached-tokens", type=int, default=256,
                   help="the picker's disaggregation threshold")
    p.add_argument("--concurrency", type=int, default=16, help="closed-loop clients")
    p.add_argument("--duration", type=float, default=60.0, help="measured seconds")
    p.add_argument("--warmup", type=float, default=10.0, help="warm-up seconds")
    p.add_argument("--min-tokens", type=int, default=8192, help="shortest prompt, in tokens")
    p.add_argument("--max-tokens", type=int, default=16384, help="longest prompt, in tokens")
    p.add_argument("--min-output", type=int, default=64, help="fewest output tokens")
    p.add_argument("--max-output", type=int, default=128, help="most output tokens")
    p.add_argument("--sim-args", default=SIM_ARGS,
                   help="cost-model flags of tollgate sim, the same in both setups")
    p.add_argument("--out", default=os.path.join(q.TARGET, "epp-pd.json"))
    args = p.parse_args()
    if not os.access(args.tollgate, os.X_OK):
        sys.exit(f"epp-pd: {args.tollgate} not found (build tollgate, or run scripts/bench-epp)")
    if not 0 < args.prefill_instances < args.instances:
        sys.exit("epp-pd: --prefill-instances must leave at least one decode instance")
    if not 0 < args.min_tokens <= args.max_tokens or not 0 < args.min_output <= args.max_output:
        sys.exit("epp-pd: bad token ranges")
    q.TOLLGATE = args.tollgate  # q.start_sim and q.valid run this binary
    tmp = tempfile.mkdtemp(prefix="epp-pd-")
    log = open(os.path.join(tmp, "processes.log"), "w")
    text = corpus(4 * args.max_tokens * 4)
    d = args.instances - args.prefill_instances
    print(f"epp-pd: {args.tollgate}; {args.instances} sims ({args.sim_args}); aggregated: "
          f"{args.instances} × both; P/D: {args.prefill_instances} prefill + {d} decode, "
          f"nonCachedTokens {args.non_cached_tokens}; closed loop, {args.concurrency} clients, "
          f"prompts {args.min_tokens}-{args.max_tokens} tokens (unique), outputs "
          f"{args.min_output}-{args.max_output} tokens, streamed; warm-up {args.warmup:g} s, "
          f"window {args.duration:g} s; logs in {tmp}", flush=True)
    rows = {}
    for name in ("aggregated", "disaggregated"):
        started = time.perf_counter()
        r = run_setup(name, args, tmp, log, text)
        rows[name] = r
        print(f"epp-pd: {name:<13} {r['throughput_rps']:.2f} req/s, "
              f"{r['output_tokens_per_s']:.0f} output tok/s; TTFT p50 {r['ttft_p50_ms']:.0f} "
              f"p90 {r['ttft_p90_ms']:.0f} p99 {r['ttft_p99_ms']:.0f} ms; TPOT p50 "
              f"{r['tpot_p50_ms']:.1f} p90 {r['tpot_p90_ms']:.1f} ms; e2e p50 "
              f"{r['e2e_p50_ms']:.0f} p90 {r['e2e_p90_ms']:.0f} ms; {r['completed']} completed, "
              f"{r['errors']} errors{' ' + str(r['error_kinds']) if r['errors'] else ''}; disaggregated "
              f"{r['disaggregated']}/{r['completed']}; per serving endpoint "
              f"{list(r['per_endpoint'].values())}, per prefill endpoint "
              f"{list(r['per_prefill_endpoint'].values())} "
              f"({time.perf_counter() - started:.0f} s)", flush=True)
        if r["completed"] == 0:
            sys.exit(f"epp-pd: the {name} setup completed no request in the window "
                     f"(errors: {r['error_kinds']}); logs in {tmp}")
    agg, pd = rows["aggregated"], rows["disaggregated"]
    if pd["disaggregated"] == 0:
        sys.exit("epp-pd: no request of the P/D setup was disaggregated (no "
                 f"x-sim-prefill-endpoint): the comparison is hollow; logs in {tmp}")

    def ratio(k):
        return pd[k] / agg[k] if agg[k] else float("nan")

    ratios = {k: ratio(k) for k in ("throughput_rps", "output_tokens_per_s", "ttft_p50_ms",
                                    "ttft_p90_ms", "ttft_p99_ms", "tpot_p50_ms", "e2e_p50_ms",
                                    "e2e_p90_ms")}
    print(f"epp-pd: P/D ÷ aggregated: throughput {ratios['throughput_rps']:.2f}× "
          f"(output tok/s {ratios['output_tokens_per_s']:.2f}×), TTFT p50 "
          f"{ratios['ttft_p50_ms']:.2f}× p90 {ratios['ttft_p90_ms']:.2f}× p99 "
          f"{ratios['ttft_p99_ms']:.2f}×, TPOT p50 {ratios['tpot_p50_ms']:.2f}×, e2e p50 "
          f"{ratios['e2e_p50_ms']:.2f}× p90 {ratios['e2e_p90_ms']:.2f}×; disaggregated "
          f"{pd['disaggregated']}/{pd['completed']} of P/D's requests", flush=True)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump({"config": vars(args), "results": rows, "pd_over_aggregated": ratios}, f,
                  indent=2)
    print(f"epp-pd: written {args.out}; logs in {tmp}")


if __name__ == "__main__":
    main()
