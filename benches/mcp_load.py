#!/usr/bin/env python3
"""Latency of the MCP gateway against the MCP servers behind it, on loopback.

It starts three MCP servers of the official Python SDK 1.x (tests/sdk/mcp_server.py
--sdk 1 --json-response, names a, b, c) and a release tollgate with two MCP routes on one
bind: /one fronts a alone (no tool prefixes), /three fronts a, b and c (tools a__echo, ...).
Every measurement is raw JSON-RPC over HTTP/1.1, sequential on one keep-alive connection
per endpoint (httpx.Client): initialize, notifications/initialized, a warm-up, then the
measured requests, with the session's Mcp-Session-Id and
`Accept: application/json, text/event-stream`. The endpoints compared are measured in
interleaved blocks, so a slow patch of the machine hits all of them alike.

  1. tools/call echo directly to a, against the same call through /one: p50, p99 and the
     latency tollgate adds (its p50 minus the direct p50, the same for p99).
  2. tools/list through /three, against tools/list directly to each of a, b and c: the
     ratio of the gateway's p50 to the slowest direct p50. As a second baseline, the same
     three direct requests sent at once (three client threads, timed until the last
     answer): what the fan-out costs the servers and the machine without the gateway.
     The same against three more servers (x, y, z on route /far) that wait --latency-ms
     before each answer, as servers across a network or waiting on their own backends
     do: there the answer time is wall time, not CPU, and the fan-out's parallelism shows
     even on a machine with fewer cores than servers.
  3. Behind Envoy (1.40, --envoy): tools/call echo to a through Envoy alone (its router
     straight to a: the baseline), through Envoy with tollgate's ext_proc routing the call
     to a itself (`mcp.direct` on route /edge: ext_proc reads the body, opens the
     session, rewrites the call for a, Envoy sends it), and through Envoy to tollgate's
     MCP listener (/one, no ext_proc): what each way adds over Envoy alone.

Each latency includes the Python client's own cost on both sides of the comparison.

Run it with the Python of the SDK 1.x venv (scripts/install-test-deps makes it):

  cargo build --release --bin tollgate
  .venv-mcp1/bin/python benches/mcp_load.py [-n 2000] [--warmup 200] [--tollgate PATH] [--workers N]

The servers run with the same Python. Everything started is killed on exit, on error and
on SIGINT / SIGTERM.
"""
import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
ACCEPT = "application/json, text/event-stream"
PROTOCOL = "2025-06-18"
BLOCK = 100


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(name: str, log, latency_ms: float = 0) -> tuple[subprocess.Popen, int]:
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "tests/sdk/mcp_server.py"), "--sdk", "1", "--name", name,
         "--json-response", "--latency-ms", str(latency_ms)],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log, text=True,
    )
    line = proc.stdout.readline()
    if not line.startswith("READY "):
        raise RuntimeError(f"MCP server {name} printed {line!r}, not READY <port>")
    return proc, int(line.split()[1])


def wait_port(port: int, proc: subprocess.Popen, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[0]} exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{proc.args[0]} did not listen on {port}")


def gateway_yaml(port: int, ports: dict[str, int], ext_proc: int) -> str:
    def targets(names):
        return "".join(
            f'        - {{name: {n}, url: "http://127.0.0.1:{ports[n]}/mcp"}}\n' for n in names
        )
    return (
        f"binds:\n- port: {port}\n  listeners:\n  - routes:\n"
        f"    - name: one\n      matches: [{{path: {{exact: /one}}}}]\n"
        f"      mcp:\n        targets:\n{targets(['a'])}"
        f"    - name: three\n      matches: [{{path: {{exact: /three}}}}]\n"
        f"      mcp:\n        targets:\n{targets(['a', 'b', 'c'])}"
        f"    - name: far\n      matches: [{{path: {{exact: /far}}}}]\n"
        f"      mcp:\n        targets:\n{targets(['x', 'y', 'z'])}"
        f"    - name: edge\n      matches: [{{path: {{exact: /edge}}}}]\n"
        f"      mcp:\n        direct: {{}}\n        targets:\n{targets(['a'])}"
        f'extProc: {{ address: "127.0.0.1:{ext_proc}" }}\n'
    )


def envoy_yaml(admin: int, listener: int, ext_proc: int, tollgate: int, a: int) -> str:
    """Envoy with three routes on one listener: /plain straight to a, /edge through
    tollgate's ext_proc (calls to a by header, the rest to tollgate's /edge), /one to
    tollgate's MCP listener without ext_proc."""
    def cluster(name: str, port: int, h2: bool = False) -> str:
        proto = ("    typed_extension_protocol_options:\n"
                 "      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:\n"
                 '        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions\n'
                 "        explicit_http_config: { http2_protocol_options: {} }\n") if h2 else ""
        return (f"  - name: {name}\n    type: STATIC\n    connect_timeout: 1s\n{proto}"
                f"    load_assignment:\n      cluster_name: {name}\n      endpoints:\n"
                f"      - lb_endpoints:\n        - endpoint: {{ address: {{ socket_address: "
                f"{{ address: 127.0.0.1, port_value: {port} }} }} }}\n")
    no_ext_proc = ("                typed_per_filter_config:\n"
                   "                  envoy.filters.http.ext_proc:\n"
                   '                    "@type": type.googleapis.com/envoy.extensions.filters.http.ext_proc.v3.ExtProcPerRoute\n'
                   "                    disabled: true\n")
    return f"""admin: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {admin} }} }} }}
static_resources:
  listeners:
  - name: l
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: {listener} }} }}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: l
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {{ prefix: /plain }}
                route: {{ cluster: a, prefix_rewrite: /mcp, host_rewrite_literal: "127.0.0.1:{a}" }}
{no_ext_proc}              - match: {{ prefix: /one }}
                route: {{ cluster: tollgate }}
{no_ext_proc}              - match: {{ prefix: /edge, headers: [ {{ name: x-tollgate-mcp-target, string_match: {{ exact: a }} }} ] }}
                route: {{ cluster: a, prefix_rewrite: /mcp, host_rewrite_literal: "127.0.0.1:{a}" }}
              - match: {{ prefix: /edge }}
                route: {{ cluster: tollgate }}
          http_filters:
          - name: envoy.filters.http.ext_proc
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.ext_proc.v3.ExternalProcessor
              grpc_service: {{ envoy_grpc: {{ cluster_name: ext_proc }} }}
              message_timeout: 2s
              allow_mode_override: true
              processing_mode: {{ request_header_mode: SEND, response_header_mode: SEND, request_body_mode: NONE, response_body_mode: NONE, request_trailer_mode: SKIP, response_trailer_mode: SKIP }}
          - name: envoy.filters.http.router
            typed_config: {{ "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router }}
  clusters:
{cluster("a", a)}{cluster("tollgate", tollgate)}{cluster("ext_proc", ext_proc, h2=True)}"""


class Session:
    """One MCP session on one keep-alive connection."""

    def __init__(self, label: str, url: str):
        self.label = label
        self.url = url
        nodelay = [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]
        self.client = httpx.Client(
            transport=httpx.HTTPTransport(socket_options=nodelay), timeout=30
        )
        self.headers = {"accept": ACCEPT, "content-type": "application/json"}
        self.next_id = 1
        r = self.post("initialize", {
            "protocolVersion": PROTOCOL, "capabilities": {},
            "clientInfo": {"name": "mcp_load", "version": "1"},
        })
        sid = r.headers.get("mcp-session-id")
        if sid:
            self.headers["mcp-session-id"] = sid
        self.headers["mcp-protocol-version"] = PROTOCOL
        n = self.client.post(self.url, headers=self.headers,
                             content=b'{"jsonrpc":"2.0","method":"notifications/initialized"}')
        if n.status_code not in (200, 202):
            raise RuntimeError(f"{label}: notifications/initialized -> {n.status_code}")

    def post(self, method: str, params: dict | None = None) -> httpx.Response:
        body = {"jsonrpc": "2.0", "id": self.next_id, "method": method}
        if params is not None:
            body["params"] = params
        self.next_id += 1
        r = self.client.post(self.url, headers=self.headers, content=json.dumps(body))
        if r.status_code != 200:
            raise RuntimeError(f"{self.label}: {method} -> {r.status_code} {r.text[:200]}")
        message = r.json()
        if "error" in message or message.get("result", {}).get("isError"):
            raise RuntimeError(f"{self.label}: {method} -> {r.text[:200]}")
        return r

    def close(self) -> None:
        self.client.close()


def measure(runs: list, n: int, warmup: int) -> list[list[float]]:
    """Latencies in ms of each callable of `runs` (one request, or one round of them),
    interleaved in blocks."""
    for _ in range(warmup):
        for run in runs:
            run()
    samples = [[] for _ in runs]
    done = 0
    while done < n:
        k = min(BLOCK, n - done)
        for i, run in enumerate(runs):
            for _ in range(k):
                t = time.perf_counter_ns()
                run()
                samples[i].append((time.perf_counter_ns() - t) / 1e6)
        done += k
    return samples


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(p / 100 * len(s)) - 1))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-n", type=int, default=2000, help="measured calls per endpoint")
    parser.add_argument("--warmup", type=int, default=200, help="warm-up calls per endpoint")
    target_dir = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    parser.add_argument("--tollgate", default=str(target_dir / "release/tollgate"))
    parser.add_argument("--latency-ms", type=float, default=5,
                        help="wall time each of the far servers x, y, z waits per request")
    parser.add_argument("--workers", type=int, help="tollgate serve --workers (default: its own)")
    parser.add_argument("--envoy", default=str(ROOT / ".venv/bin/envoy"),
                        help="Envoy 1.40 for the behind-Envoy rows (scripts/install-test-deps)")
    args = parser.parse_args()

    def stop(signum, _frame):
        raise SystemExit(128 + signum)
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    procs: list[subprocess.Popen] = []
    sessions: list[Session] = []
    tmp = tempfile.TemporaryDirectory(prefix="mcp_load.")
    log = open(Path(tmp.name) / "servers.log", "w")
    try:
        ports = {}
        for name in ("a", "b", "c"):
            proc, ports[name] = start_server(name, log)
            procs.append(proc)
        for name in ("x", "y", "z"):
            proc, ports[name] = start_server(name, log, args.latency_ms)
            procs.append(proc)
        if not Path(args.envoy).exists():
            raise SystemExit(f"no Envoy at {args.envoy}: run scripts/install-test-deps, or pass --envoy")
        port, ext_proc = free_port(), free_port()
        config = Path(tmp.name) / "tollgate.yaml"
        config.write_text(gateway_yaml(port, ports, ext_proc))
        tollgate = subprocess.Popen(
            [args.tollgate, "serve", "-c", str(config)]
            + (["--workers", str(args.workers)] if args.workers else []),
            stdin=subprocess.DEVNULL, stdout=log, stderr=log,
        )
        procs.append(tollgate)
        wait_port(port, tollgate)
        wait_port(ext_proc, tollgate)
        envoy_port = free_port()
        envoy_config = Path(tmp.name) / "envoy.yaml"
        envoy_config.write_text(envoy_yaml(free_port(), envoy_port, ext_proc, port, ports["a"]))
        envoy = subprocess.Popen(
            [args.envoy, "-c", str(envoy_config), "--use-dynamic-base-id", "--concurrency", "1",
             "-l", "error"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log,
        )
        procs.append(envoy)
        wait_port(envoy_port, envoy)

        direct = {n: Session(f"direct {n}", f"http://127.0.0.1:{p}/mcp") for n, p in ports.items()}
        one = Session("tollgate /one", f"http://127.0.0.1:{port}/one")
        three = Session("tollgate /three", f"http://127.0.0.1:{port}/three")
        far = Session("tollgate /far", f"http://127.0.0.1:{port}/far")
        sessions += [*direct.values(), one, three, far]
        via = f"http://127.0.0.1:{envoy_port}"
        plain = Session("envoy /plain", f"{via}/plain")
        edge = Session("envoy + ext_proc /edge", f"{via}/edge")
        listener = Session("envoy to tollgate /one", f"{via}/one")
        sessions += [plain, edge, listener]

        echo = {"name": "echo", "arguments": {"text": "hello"}}
        d, g = measure([lambda: direct["a"].post("tools/call", echo),
                        lambda: one.post("tools/call", echo)], args.n, args.warmup)
        behind = measure([lambda: plain.post("tools/call", echo),
                          lambda: edge.post("tools/call", echo),
                          lambda: listener.post("tools/call", echo)], args.n, args.warmup)
        pool = ThreadPoolExecutor(3)

        def all_three():
            list(pool.map(lambda n: direct[n].post("tools/list"), "abc"))

        try:
            lists = measure([lambda: direct["a"].post("tools/list"),
                             lambda: direct["b"].post("tools/list"),
                             lambda: direct["c"].post("tools/list"),
                             all_three,
                             lambda: three.post("tools/list")], args.n, args.warmup)
            far_lists = measure([lambda: direct["x"].post("tools/list"),
                                 lambda: direct["y"].post("tools/list"),
                                 lambda: direct["z"].post("tools/list"),
                                 lambda: far.post("tools/list")], args.n, args.warmup)
        finally:
            pool.shutdown()

        print(f"N = {args.n} measured calls per endpoint after {args.warmup} warm-up calls; "
              "one keep-alive connection each; ms\n")
        print("| tools/call echo | p50 | p99 |")
        print("|---|---:|---:|")
        print(f"| direct to the target | {pct(d, 50):.3f} | {pct(d, 99):.3f} |")
        print(f"| through tollgate (1 target) | {pct(g, 50):.3f} | {pct(g, 99):.3f} |")
        added50 = pct(g, 50) - pct(d, 50)
        print(f"| added by tollgate | {added50:+.3f} | {pct(g, 99) - pct(d, 99):+.3f} |")
        print()
        print("| tools/call echo behind Envoy | p50 | p99 | added p50 | added p99 |")
        print("|---|---:|---:|---:|---:|")
        base = behind[0]
        for label, values in zip(["Envoy straight to the target (baseline)",
                                  "Envoy, tollgate's ext_proc routing it (mcp.direct)",
                                  "Envoy to tollgate's MCP listener"], behind):
            print(f"| {label} | {pct(values, 50):.3f} | {pct(values, 99):.3f} "
                  f"| {pct(values, 50) - pct(base, 50):+.3f} | {pct(values, 99) - pct(base, 99):+.3f} |")
        print()
        print("| tools/list | p50 | p99 |")
        print("|---|---:|---:|")
        for name, values in zip("abc", lists[:3]):
            print(f"| direct to {name} | {pct(values, 50):.3f} | {pct(values, 99):.3f} |")
        print(f"| direct to a, b and c at once (3 client threads; baseline) "
              f"| {pct(lists[3], 50):.3f} | {pct(lists[3], 99):.3f} |")
        print(f"| through tollgate (3 targets) | {pct(lists[4], 50):.3f} | {pct(lists[4], 99):.3f} |")
        slowest = max(pct(v, 50) for v in lists[:3])
        ratio = pct(lists[4], 50) / slowest
        print()
        print(f"tools/list through tollgate / at once direct, p50: "
              f"{pct(lists[4], 50) / pct(lists[3], 50):.2f}x")
        print()
        print(f"| tools/list, servers waiting {args.latency_ms:g} ms per request | p50 | p99 |")
        print("|---|---:|---:|")
        for name, values in zip("xyz", far_lists[:3]):
            print(f"| direct to {name} | {pct(values, 50):.3f} | {pct(values, 99):.3f} |")
        print(f"| through tollgate (3 targets) | {pct(far_lists[3], 50):.3f} | {pct(far_lists[3], 99):.3f} |")
        far_ratio = pct(far_lists[3], 50) / max(pct(v, 50) for v in far_lists[:3])
        print()
        print(f"target: tools/call added p50 <= 0.3 ms: {added50:+.3f} ms "
              f"({'met' if added50 <= 0.3 else 'NOT met'})")
        print(f"target: tools/list over 3 targets p50 <= 1.1x the slowest target's: {ratio:.2f}x "
              f"({'met' if ratio <= 1.1 else 'NOT met'})")
        print(f"target, servers waiting {args.latency_ms:g} ms: tools/list over 3 targets p50 <= 1.1x "
              f"the slowest target's: {far_ratio:.2f}x ({'met' if far_ratio <= 1.1 else 'NOT met'})")
        return 0
    except Exception:
        log.flush()
        text = (Path(tmp.name) / "servers.log").read_text()
        sys.stderr.write(f"---- server and tollgate log (last 3000 chars) ----\n{text[-3000:]}\n")
        raise
    finally:
        for s in sessions:
            s.close()
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()
        tmp.cleanup()


if __name__ == "__main__":
    sys.exit(main())
