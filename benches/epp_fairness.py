#!/usr/bin/env python3
"""Flow control's fairness: a tenant flooding a shared pool against a light tenant.

Two simulated model servers (`tollgate sim`, `--max-running` batch slots each, default
4: the pool runs 8 requests at once), Envoy 1.40 with ext_proc FULL_DUPLEX_STREAMED to tollgate running
`endpointPicker` (load-only scoring: queue and KV cache, so both tenants share both
servers), the pool cluster ORIGINAL_DST on the picker's header. Two tenants send
streamed chat requests, open loop (Poisson), each from a process of its own (in one,
the flood's thousands of open requests would slow the light tenant's event loop and so
its measured TTFT), each naming itself in
`x-llm-d-inference-fairness-id`: the heavy one at 3× what the pool completes, the light
one at 10% of it. Three runs, each on fresh simulators:
- idle: the light tenant alone (its TTFT on an idle pool);
- without flow control: both tenants, the picker as it is without `flowControl` (every
  request goes to a server at once and queues there);
- with flow control: `flowControl: {}` (token fairness) with the concurrency saturation
  detector at the servers' slots;
- with `--headroom H[,H2…]`, one more run per value: `flowControl: {headroom: H}` (the
  top H of the pool's capacity kept for flows under their equal share of the requests
  in flight).
Every request asks for `--max-tokens` output tokens (the simulator produces exactly
that many), or, with `--output-spread S`, a number drawn uniformly from `--max-tokens`
± S of it, as real completions vary in length.
Printed: the light tenant's TTFT p50/p99 in each run and as a ratio to idle (target with
flow control: p99 ≤ 2× idle), and the pool's throughput (requests completed per second,
both tenants) with flow control vs without (target ≥ 0.95×). The table also goes to
target/epp-fairness.json.

Without headroom a work-conserving pool at full use makes a light request wait for a
slot to free, that is for one of the flood's requests to end: up to a request's time
(24 decode steps of 40 ms against a 50 ms prefill here) when the flood's requests
started together, so the light tenant's p99 stays several times its idle TTFT however
the queue is ordered. With lengths that vary, the flood's requests end at different
steps and a slot frees every few steps instead. The headroom buys the
light tenant a free slot at the price of that fraction of the pool while only the
flood is queued; the bigger the pool, the smaller the fraction one slot is.

Run through scripts/bench-epp, or directly once built: .venv/bin/python benches/epp_fairness.py.
"""
import argparse
import asyncio
import concurrent.futures
import multiprocessing
import json
import os
import random
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import epp_quality as q  # noqa: E402  (the shared process helpers and the streamed request)

# 2,000-character prompts: 500 tokens at 100 µs = 50 ms of prefill (each tenant's system
# prompt is cached after its first request); 24 output tokens at 40 ms: about 1 s a
# request; 4 slots per server, so the pool completes about 8 a second. Slow steps keep
# the client's and Envoy's CPU small next to the servers' time on a small machine.
SIM_ARGS = ("--prefill-us-per-token 100 --prefill-overhead-us 2000 --decode-step-us 40000 "
            "--decode-step-per-seq-us 200 --max-running {slots} --kv-blocks 20000")

TOLLGATE = """admin: {{ address: "127.0.0.1:{admin}" }}
extProc: {{ address: "127.0.0.1:{ext_proc}" }}
logging: {{ level: warn }}
policies:
  endpointPicker:
    endpoints: [{endpoints}]
    metrics: {{ path: /metrics, interval: 50ms, staleAfter: 200ms }}
{flow}"""

# Load-only scoring in every run: with the prefix-cache scorer each tenant's cached
# system prompt would pin it to its own server, and the tenants would not share one.
SCHEDULING = """    scheduling: { scorers: [{ type: queue, weight: 1 }, { type: kvCache, weight: 1 }] }
"""

FLOW = """    saturation: {{ detector: concurrency, maxConcurrency: {slots} }}
    flowControl: {{ headroom: {headroom} }}
"""


def output_lengths(max_tokens, spread):
    """The range of a request's `max_tokens`: `max_tokens` ± `spread` of it (the
    simulator produces exactly that many tokens)."""
    lo = max(1, round(max_tokens * (1.0 - spread)))
    return lo, max(lo, round(max_tokens * (1.0 + spread)))


async def tenant(client, url, name, rate, duration, lengths, chars, seed, stats):
    rng = random.Random(seed)
    # Lengths from their own generator: the arrivals are the same whatever the spread.
    length_rng = random.Random(seed + 1000)
    system = q.system_prompt(name, chars)
    headers = {"x-llm-d-inference-fairness-id": name}
    tasks, t0 = [], time.perf_counter()
    next_at = t0
    n = 0
    while True:
        next_at += rng.expovariate(rate)
        if next_at - t0 >= duration:
            break
        delay = next_at - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        n += 1
        stats.sent += 1
        user = f"{name} request {n}: {rng.randrange(10**9)}"
        tasks.append(asyncio.create_task(
            q.one(client, url, system, user, length_rng.randint(*lengths), stats, headers)))
    return tasks


async def drive_tenant(url, name, rate, seed, start_at, duration, lengths, chars, drain):
    """One tenant's arrivals from `start_at` (a `time.perf_counter()` instant: the
    system's monotonic clock, the same in every process) for `duration` s; its Stats."""
    stats = q.Stats()
    # Its own client (connection pool), as separate tenants have: the flood's thousands
    # of queued requests must not hold the light tenant's connections.
    limits = q.httpx.Limits(max_connections=8192, max_keepalive_connections=8192)
    async with q.httpx.AsyncClient(limits=limits, timeout=q.httpx.Timeout(300.0)) as client:
        await asyncio.sleep(max(0.0, start_at - time.perf_counter()))
        tasks = await tenant(client, url, name, rate, duration, lengths, chars, seed, stats)
        _, pending = await asyncio.wait(tasks, timeout=drain) if tasks else (None, [])
        for t in pending:
            t.cancel()
    return stats


def tenant_process(args):
    """A tenant in a process of its own: the flood's thousands of open requests load
    its own event loop, not the light tenant's, whose TTFT is what is measured."""
    return asyncio.run(drive_tenant(*args))


def drive(url, loads, duration, lengths, chars, drain):
    """`loads`: tenant → rate, each tenant in its own process. Returns tenant → Stats,
    and the window."""
    start_at = time.perf_counter() + 2.0  # the processes' start-up
    jobs = [(url, name, rate, i, start_at, duration, lengths, chars, drain)
            for i, (name, rate) in enumerate(loads.items())]
    ctx = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(len(jobs), mp_context=ctx) as pool:
        results = list(pool.map(tenant_process, jobs))
    return dict(zip(loads, results)), start_at, start_at + duration


def start(tmp, ports, slots, headroom, log):
    """`headroom`: None for no flow control."""
    sim, addrs = q.start_sim(2, SIM_ARGS.format(slots=slots), log)
    cfg = os.path.join(tmp, "tollgate.yaml")
    flow = "" if headroom is None else FLOW.format(slots=slots, headroom=headroom)
    with open(cfg, "w") as f:
        f.write(TOLLGATE.format(admin=ports["admin"], ext_proc=ports["ext_proc"],
                                endpoints=", ".join(f'"{a}"' for a in addrs),
                                flow=SCHEDULING + flow))
    tollgate = subprocess.Popen([q.TOLLGATE, "serve", "-c", cfg], stdout=log,
                                stderr=subprocess.STDOUT)
    q.wait_http(f"http://127.0.0.1:{ports['admin']}/readyz")
    time.sleep(0.5)
    return sim, tollgate


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--max-running", type=int, default=4, help="batch slots per server")
    p.add_argument("--capacity", type=float,
                   help="requests per second the pool completes (default: its slots / ~1 s)")
    p.add_argument("--headroom", type=lambda v: [float(h) for h in v.split(",")], default=[],
                   help="also run flow control with this headroom (a comma list: one run "
                        "each)")
    p.add_argument("--duration", type=float, default=40.0)
    p.add_argument("--max-tokens", type=int, default=24)
    p.add_argument("--output-spread", type=float, default=0.0,
                   help="each request's max_tokens drawn uniformly from --max-tokens ± this "
                        "fraction of it (default 0: every request the same length, so "
                        "requests started together end together)")
    p.add_argument("--prompt-chars", type=int, default=2000)
    p.add_argument("--out", default=os.path.join(q.TARGET, "epp-fairness.json"))
    args = p.parse_args()
    for binary in (q.TOLLGATE, q.ENVOY):
        if not os.access(binary, os.X_OK):
            sys.exit(f"epp-fairness: {binary} not found (run scripts/bench-epp)")
    tmp = tempfile.mkdtemp(prefix="epp-fairness-")
    log = open(os.path.join(tmp, "processes.log"), "w")
    ports = {k: q.free_port() for k in ("admin", "ext_proc", "envoy", "envoy_admin")}
    envoy_yaml = os.path.join(tmp, "envoy.yaml")
    with open(envoy_yaml, "w") as f:
        f.write(q.envoy_config(ports["envoy_admin"], ports["envoy"], [ports["ext_proc"]]))
    envoy = subprocess.Popen([q.ENVOY, "-c", envoy_yaml, "--concurrency", "1",
                              "--log-level", "warn", "--base-id", str(ports["envoy"])],
                             stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{ports['envoy']}/v1/chat/completions"
    lengths = output_lengths(args.max_tokens, args.output_spread)
    capacity = args.capacity or 2.0 * args.max_running
    heavy, light = 3.0 * capacity, 0.1 * capacity
    both = {"heavy": heavy, "light": light}
    runs = [("idle", None, {"light": light}),
            ("without flow control", None, both),
            ("with flow control", 0, both)]
    extra = []  # (summary key, run name)
    for h in args.headroom:
        name = f"with flow control, headroom {h}"
        runs.append((name, h, both))
        extra.append((f"headroom_{h}", name))
    rows = {}
    try:
        q.wait_http(f"http://127.0.0.1:{ports['envoy_admin']}/ready")
        for name, headroom, loads in runs:
            sim, tollgate = start(tmp, ports, args.max_running, headroom, log)
            try:
                stats, t0, t_end = drive(url, loads, args.duration, lengths,
                                         args.prompt_chars, drain=120.0)
            finally:
                q.stop(tollgate)
                q.stop(sim)
            done = sum(1 for s in stats.values() for t in s.done_at if t <= t_end)
            lt = stats["light"]
            rows[name] = {
                "light_ttft_p50_ms": q.pct(lt.ttft, 0.50) * 1e3,
                "light_ttft_p90_ms": q.pct(lt.ttft, 0.90) * 1e3,
                "light_ttft_p99_ms": q.pct(lt.ttft, 0.99) * 1e3,
                "light_queued_p50_ms": q.pct(lt.queued_ms, 0.50) if lt.queued_ms else 0.0,
                "light_queued_p99_ms": q.pct(lt.queued_ms, 0.99) if lt.queued_ms else 0.0,
                "light_completed": len(lt.ttft), "light_errors": lt.errors,
                # The slowest first tokens: (TTFT ms, queued in tollgate ms, queued in
                # the simulator for a slot ms, the simulator's TTFT ms — its slot wait,
                # the prefills before it and its own); the rest of a TTFT is Envoy,
                # tollgate's processing and the client.
                "light_slowest": [[round(t * 1e3), round(tq), sq, st]
                                  for t, tq, sq, st in sorted(lt.waits, reverse=True)[:3]],
                "heavy_completed": len(stats["heavy"].ttft) if "heavy" in stats else 0,
                "errors": sum(s.errors for s in stats.values()),
                "throughput_rps": done / (t_end - t0),
            }
            r = rows[name]
            print(f"epp-fairness: {name}: light TTFT p50 {r['light_ttft_p50_ms']:.0f} ms, "
                  f"p90 {r['light_ttft_p90_ms']:.0f} ms, p99 {r['light_ttft_p99_ms']:.0f} ms "
                  f"({r['light_completed']} ok, "
                  f"{r['light_errors']} errors; queued in tollgate p50 "
                  f"{r['light_queued_p50_ms']:.0f} ms, p99 {r['light_queued_p99_ms']:.0f} ms; "
                  f"slowest three TTFT / queued in tollgate / in the server for a slot / "
                  f"the server's TTFT: "
                  f"{', '.join('/'.join(f'{v:.0f}' for v in w) + ' ms' for w in r['light_slowest'])}); "
                  f"pool throughput {r['throughput_rps']:.1f}/s; "
                  f"errors {r['errors']}", flush=True)
    finally:
        q.stop(envoy)
    idle, off, on = (rows[n] for n, _, _ in runs[:3])
    summary = {
        "light_ttft_p99_vs_idle_with_flow_control":
            on["light_ttft_p99_ms"] / idle["light_ttft_p99_ms"],
        "light_ttft_p99_vs_idle_without":
            off["light_ttft_p99_ms"] / idle["light_ttft_p99_ms"],
        "throughput_with_vs_without": on["throughput_rps"] / off["throughput_rps"],
    }
    for tag, name in extra:
        summary[f"light_ttft_p99_vs_idle_with_{tag}"] = (
            rows[name]["light_ttft_p99_ms"] / idle["light_ttft_p99_ms"])
        summary[f"throughput_with_{tag}_vs_without"] = (
            rows[name]["throughput_rps"] / off["throughput_rps"])
    print(f"epp-fairness: light tenant TTFT p99 ÷ idle: with flow control "
          f"{summary['light_ttft_p99_vs_idle_with_flow_control']:.2f}× (target ≤ 2×), without "
          f"{summary['light_ttft_p99_vs_idle_without']:.2f}×; pool throughput with ÷ without "
          f"{summary['throughput_with_vs_without']:.2f}× (target ≥ 0.95×)")
    for tag, name in extra:
        print(f"epp-fairness: {name}: light TTFT p99 ÷ idle "
              f"{summary[f'light_ttft_p99_vs_idle_with_{tag}']:.2f}×, throughput ÷ "
              f"without {summary[f'throughput_with_{tag}_vs_without']:.2f}×")
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump({"config": {"max_running": args.max_running, "capacity": capacity,
                              "headroom": args.headroom,
                              "duration": args.duration,
                              "output_tokens": list(lengths)},
                   "runs": rows, "summary": summary}, f, indent=2)
    print(f"epp-fairness: written {args.out}; logs in {tmp}")


if __name__ == "__main__":
    main()
