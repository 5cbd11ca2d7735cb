#!/usr/bin/env python3
"""Long prompts through Envoy and tollgate's endpoint picker: the latency the pick adds.

Two simulated model servers with no compute cost (`tollgate sim`, prefill and decode
nearly free, one output token), and 220 KB chat prompts sent closed-loop at each
concurrency (default 20 and 150) through
- Envoy alone (round robin over the pool): the baseline;
- Envoy with ext_proc FULL_DUPLEX_STREAMED to tollgate running `endpointPicker`, the pool
  cluster ORIGINAL_DST on the picker's header (an inference gateway's setup).
Both setups run in the same process tree one after the other with the same client, so
what differs is the picker's path: Envoy streaming the body to tollgate over gRPC,
tollgate reading the model and prompt and picking, the body streamed back.

`--request-body-mode BUFFERED` runs the picker's route with the request body BUFFERED
instead (Envoy sends the whole body once and tollgate's reply carries the pick as a
header mutation, with no body: nothing streams back). `--request-body-mode
BUFFERED_PARTIAL` sets the picker listener's `per_connection_buffer_limit_bytes` to 32 KB
(Envoy's advice for edge proxies): Envoy sends tollgate only each body's first bytes and
streams the rest upstream itself. `--pieces N --gap-ms G` uploads
each body in N chunks G ms apart (a body arriving over a network: the picker picks on
its first blocks while the rest streams); `--model-last`
writes the model after the messages, as the OpenAI and Anthropic SDKs do, and
`--model-header` names it in `x-gateway-model-name` too, as a router in front does.

Printed per concurrency: p50 / p99 latency of each setup and the difference (the added
latency), requests per second, the ratio, the CPU per request of each process and the
body bytes the picker had read when it picked. The table also goes to
target/epp-long-prompt.json. Reference: the Gateway API Inference Extension's issue #2928
measured about 286 ms of picker time for 220 KB prompts, 261 ms of it waiting for the
body's chunks.

Run through scripts/bench-epp (installs Envoy and the client library into .venv, builds
release), or directly once built: .venv/bin/python benches/epp_long_prompt.py.
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
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import epp_quality as q  # noqa: E402  (the shared process helpers)

SIM_ARGS = ("--prefill-us-per-token 0 --prefill-overhead-us 0 --decode-step-us 200 "
            "--default-max-tokens 1 --max-running 4096 --kv-blocks 4000000")

TOLLGATE = """admin: {{ address: "127.0.0.1:{admin}" }}
extProc: {{ address: "127.0.0.1:{ext_proc}" }}
logging: {{ level: warn }}
policies:
  endpointPicker:
    endpoints: [{endpoints}]
    metrics: {{ path: /metrics, interval: 50ms, staleAfter: 200ms }}
"""


def prompt(chars, rng):
    words = q.WORDS
    out, n = [], 0
    while n < chars:
        w = rng.choice(words)
        out.append(w)
        n += len(w) + 1
    return " ".join(out)[:chars]


def chat_body(chars, rng, model_last):
    messages = [{"role": "user", "content": prompt(chars, rng)}]
    if model_last:  # the OpenAI and Anthropic SDKs' order
        return json.dumps({"messages": messages, "max_tokens": 1, "model": q.MODEL}).encode()
    return json.dumps({"model": q.MODEL, "max_tokens": 1, "messages": messages}).encode()


def paced(body, pieces, gap):
    """`body` as `pieces` chunks `gap` seconds apart (chunked upload), or whole."""
    if pieces <= 1:
        return body
    size = -(-len(body) // pieces)

    async def chunks():
        for i in range(0, len(body), size):
            if i:
                await asyncio.sleep(gap)
            yield body[i:i + size]
    return chunks()


async def drive(url, concurrency, duration, chars, shape):
    client = q.httpx.AsyncClient(timeout=60.0, limits=q.httpx.Limits(
        max_connections=concurrency, max_keepalive_connections=concurrency))
    rng = random.Random(7)
    bodies = [chat_body(chars, rng, shape["model_last"]) for _ in range(16)]
    latencies, errors = [], 0
    stop_at = time.perf_counter() + duration
    headers = {"content-type": "application/json"}
    if shape["model_header"]:  # a router in front read the model (body-based routing)
        headers["x-gateway-model-name"] = q.MODEL

    async def worker(i):
        nonlocal errors
        n = i
        while time.perf_counter() < stop_at:
            body = bodies[n % len(bodies)]
            n += concurrency
            t = time.perf_counter()
            try:
                r = await client.post(url, content=paced(body, shape["pieces"], shape["gap"]),
                                      headers=headers)
                if r.status_code == 200:
                    latencies.append(time.perf_counter() - t)
                else:
                    errors += 1
            except Exception:  # noqa: BLE001 (counted, the run goes on)
                errors += 1

    t0 = time.perf_counter()
    await asyncio.gather(*(worker(i) for i in range(concurrency)))
    elapsed = time.perf_counter() - t0
    await client.aclose()
    return latencies, errors, elapsed


def cpu_seconds(pid):
    """User + system CPU seconds a process has used."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run(url, concurrency, duration, warmup, chars, shape, procs):
    """Latency and throughput at `concurrency`, and the CPU each of `procs` (name →
    process) spent per request."""
    asyncio.run(drive(url, concurrency, warmup, chars, shape))
    before = {name: cpu_seconds(p.pid) for name, p in procs.items()}
    lat, errors, elapsed = asyncio.run(drive(url, concurrency, duration, chars, shape))
    n = max(len(lat), 1)
    cpu = {name: (cpu_seconds(p.pid) - before[name]) / n * 1e3 for name, p in procs.items()}
    return {
        "requests": len(lat), "errors": errors, "rps": len(lat) / elapsed,
        "p50_ms": q.pct(lat, 0.50) * 1e3, "p99_ms": q.pct(lat, 0.99) * 1e3,
        "cpu_ms_per_request": cpu,
    }


# The picker listener's buffer limit with BUFFERED_PARTIAL.
PARTIAL_BYTES = 32768


def body_read_at_pick(admin):
    """(sum, count) of `tollgate_epp_body_read_at_pick_bytes`: the request body bytes the
    picker had seen when it picked."""
    total = count = 0.0
    with urllib.request.urlopen(f"http://127.0.0.1:{admin}/metrics", timeout=2) as r:
        for line in r.read().decode().splitlines():
            name = line.split("{", 1)[0].split(" ", 1)[0]
            if name == "tollgate_epp_body_read_at_pick_bytes_sum":
                total += float(line.rsplit(" ", 1)[1])
            elif name == "tollgate_epp_body_read_at_pick_bytes_count":
                count += float(line.rsplit(" ", 1)[1])
    return total, count


def start_gateway(tmp, addrs, ports, log, request_body_mode):
    cfg = os.path.join(tmp, "tollgate.yaml")
    with open(cfg, "w") as f:
        f.write(TOLLGATE.format(admin=ports["admin"], ext_proc=ports["ext_proc"],
                                endpoints=", ".join(f'"{a}"' for a in addrs)))
    tollgate = subprocess.Popen([q.TOLLGATE, "serve", "-c", cfg], stdout=log,
                                stderr=subprocess.STDOUT)
    q.wait_http(f"http://127.0.0.1:{ports['admin']}/readyz")
    envoy_yaml = os.path.join(tmp, "envoy.yaml")
    with open(envoy_yaml, "w") as f:
        config = q.envoy_config(ports["envoy_admin"], ports["envoy"], [ports["ext_proc"]])
        duplex = "request_body_mode: FULL_DUPLEX_STREAMED"
        if duplex not in config:
            sys.exit("epp-long-prompt: the shared Envoy config names no request body mode")
        config = config.replace(duplex, f"request_body_mode: {request_body_mode}")
        if request_body_mode == "BUFFERED_PARTIAL":
            # Envoy sends the picker only a body's first bytes, up to the listener's
            # buffer limit (a route's request_body_buffer_limit does not lower it).
            limit = "per_connection_buffer_limit_bytes: 8388608"
            if limit not in config:
                sys.exit("epp-long-prompt: the shared Envoy config names no buffer limit")
            config = config.replace(limit, f"per_connection_buffer_limit_bytes: {PARTIAL_BYTES}")
        f.write(config)
    envoy = subprocess.Popen([q.ENVOY, "-c", envoy_yaml, "--concurrency", "1",
                              "--log-level", "warn", "--base-id", str(ports["envoy"])],
                             stdout=log, stderr=subprocess.STDOUT)
    q.wait_http(f"http://127.0.0.1:{ports['envoy_admin']}/ready")
    return tollgate, envoy, f"http://127.0.0.1:{ports['envoy']}/v1/chat/completions"


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--concurrency", default="20,150")
    p.add_argument("--prompt-bytes", type=int, default=220_000)
    p.add_argument("--duration", type=float, default=15.0)
    p.add_argument("--warmup", type=float, default=3.0)
    p.add_argument("--pieces", type=int, default=1,
                   help="send each body in this many chunks (1: whole, as fast as it goes)")
    p.add_argument("--gap-ms", type=float, default=2.0, help="pause between the chunks")
    p.add_argument("--model-last", action="store_true",
                   help="write the model after the messages, as the SDKs do")
    p.add_argument("--model-header", action="store_true",
                   help="name the model in x-gateway-model-name too, as a router in front does")
    p.add_argument("--request-body-mode", default="FULL_DUPLEX_STREAMED",
                   choices=["FULL_DUPLEX_STREAMED", "BUFFERED", "BUFFERED_PARTIAL"],
                   help="the picker route's ext_proc request body mode")
    p.add_argument("--out", default=os.path.join(q.TARGET, "epp-long-prompt.json"))
    args = p.parse_args()
    shape = {"pieces": args.pieces, "gap": args.gap_ms / 1e3, "model_last": args.model_last,
             "model_header": args.model_header,
             "request_body_mode": args.request_body_mode}
    for binary in (q.TOLLGATE, q.ENVOY):
        if not os.access(binary, os.X_OK):
            sys.exit(f"epp-long-prompt: {binary} not found (run scripts/bench-epp)")
    tmp = tempfile.mkdtemp(prefix="epp-long-prompt-")
    log = open(os.path.join(tmp, "processes.log"), "w")
    ports = {k: q.free_port() for k in ("admin", "ext_proc", "envoy", "envoy_admin")}
    sim, addrs = q.start_sim(2, SIM_ARGS, log)
    rows = []
    procs = []
    try:
        direct, direct_url = q.start_direct_envoy(tmp, "roundRobin", addrs, log)
        procs.append(direct)
        tollgate, envoy, picker_url = start_gateway(tmp, addrs, ports, log,
                                                    args.request_body_mode)
        procs += [tollgate, envoy]
        for c in [int(x) for x in args.concurrency.split(",")]:
            base = run(direct_url, c, args.duration, args.warmup, args.prompt_bytes, shape,
                       {"envoy": direct, "sim": sim})
            read0 = body_read_at_pick(ports["admin"])
            pick = run(picker_url, c, args.duration, args.warmup, args.prompt_bytes, shape,
                       {"envoy": envoy, "tollgate": tollgate, "sim": sim})
            read1 = body_read_at_pick(ports["admin"])
            picks = read1[1] - read0[1]
            pick["body_read_at_pick_mean_bytes"] = (read1[0] - read0[0]) / picks if picks else 0
            row = {"concurrency": c, "shape": shape, "envoy": base, "envoy_tollgate": pick,
                   "added_p50_ms": pick["p50_ms"] - base["p50_ms"],
                   "added_p99_ms": pick["p99_ms"] - base["p99_ms"],
                   "rps_ratio": pick["rps"] / base["rps"] if base["rps"] else 0.0}
            rows.append(row)
            how = (f"{args.pieces} pieces {args.gap_ms:g} ms apart" if args.pieces > 1
                   else "whole") + (", model last" if args.model_last else ", model first") \
                + (" and in x-gateway-model-name" if args.model_header else "") \
                + f", request body {args.request_body_mode}"
            print(f"epp-long-prompt: {args.prompt_bytes} B prompts ({how}), c={c}: Envoy alone p50 "
                  f"{base['p50_ms']:.1f} ms p99 {base['p99_ms']:.1f} ms {base['rps']:.0f} req/s "
                  f"({base['errors']} errors); Envoy + tollgate picker p50 {pick['p50_ms']:.1f} ms "
                  f"p99 {pick['p99_ms']:.1f} ms {pick['rps']:.0f} req/s ({pick['errors']} errors); "
                  f"added p50 {row['added_p50_ms']:+.1f} ms, p99 {row['added_p99_ms']:+.1f} ms, "
                  f"req/s ratio {row['rps_ratio']:.2f}×", flush=True)
            cpu = lambda r: ", ".join(f"{k} {v:.2f}" for k, v in r["cpu_ms_per_request"].items())
            print(f"epp-long-prompt:   CPU ms per request: Envoy alone: {cpu(base)}; "
                  f"with the picker: {cpu(pick)}; body bytes the picker had read at its pick: "
                  f"{pick['body_read_at_pick_mean_bytes']:,.0f} (mean)", flush=True)
    finally:
        for proc in procs + [sim]:
            q.stop(proc)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(rows, f, indent=2)
    print(f"epp-long-prompt: written {args.out}; logs in {tmp}")


if __name__ == "__main__":
    main()
