#!/usr/bin/env python3
"""End-to-end load harness for tollgate.

In one run, against the same nginx upstream on loopback, it measures:
  1. bare Envoy (no ext_proc)                          -- the data-plane baseline
  2. Envoy + tollgate ext_proc, empty pipeline          -- the protocol floor: request
     (request headers only, no policies)                   header phase, nothing else
  3. Envoy + tollgate ext_proc, request header policy   -- the same one round trip, with
                                                           the `headers` processor
  4. Envoy + tollgate ext_proc, empty pipeline,         -- the floor of scenario 5's
     request + response headers                            protocol (two round trips)
  5. Envoy + tollgate ext_proc, request + response      -- both `headers` policies
     header policies
  6. tollgate standalone proxy, both header policies
  7-10. LLM traffic (a 4 KiB chat request, POSTed): Envoy + tollgate with an empty
     pipeline that still receives the same phases (request body buffered, response
     headers and body streamed), against `tokenAccounting` on them — for a JSON response
     and for a 50-event SSE stream with usage.
  11-12. The same requests with `promptGuard` (built-in PII and secret detectors, masking,
     on the request and on the streamed or JSON response) against the same baselines.
  13-14. Reverse proxies with one worker each and no policies, keep-alive on both sides:
     nginx (`proxy_pass` to an upstream block with `keepalive`) against a second tollgate
     started with `--workers 1` whose one route forwards to the same upstream.
  15-16. The standalone proxy with the AI route of agentgateway's reference file
     (tests/fixtures/agentgateway-reference.yaml, bind 3100): an `ai` backend (provider
     openAI, model pinned to qwen-plus, `ai.routes` completions/passthrough, so also the
     implied `tokenAccounting`), `urlRewrite` of the authority, `requestHeaderModifier`
     setting Host, `backendAuth` key, plus the reference's `cors` (from its MCP route),
     with `hostOverride` at the nginx upstream over plain HTTP (`backendTLS` dropped),
     against a route with no policies to the same upstream on a second bind of the same
     tollgate. Both get the 4 KiB chat request POSTed to
     /compatible-mode/v1/chat/completions and nginx's JSON completion.
  17-18. Bare Envoy with `--concurrency N` against the tollgate standalone proxy with no
     policies and `--workers N` (N = LOAD_WORKERS, default the CPU count, which is also
     tollgate's default), the plain GET of scenario 1; ratios both ways. 15, 16 and 18
     are served by one tollgate started with `--workers N` (18 by 16's bind).
For each: throughput with 16 connections, and p50/p99 latency with 1 connection (wrk),
then ratios to scenarios 1 and 2. The headers processor's own cost is scenario 3 over 2
(one round trip each) and 5 over 4 (two each). Envoy runs with --concurrency 1; tollgate with its
default runtime (13-14: one worker against one nginx worker; 15-18: N workers, and a second
Envoy with --concurrency N for 17); wrk with one thread. Access logs are off everywhere.
LOAD_ONLY="a|b" runs only the scenarios whose names contain one of the substrings (the
ratio lines then need their baselines in the same selection). TOLLGATE_BIN points at
another tollgate binary (default target/release/tollgate), ENVOY_BIN at another Envoy.

Run it through scripts/bench-load, which installs wrk, nginx and Envoy when missing.
"""
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DURATION = os.environ.get("LOAD_DURATION", "5s")
ROUNDS = int(os.environ.get("LOAD_ROUNDS", "3"))
CONNECTIONS = int(os.environ.get("LOAD_CONNECTIONS", "16"))
WORKERS = int(os.environ.get("LOAD_WORKERS") or os.cpu_count() or 1)


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
    sys.exit(f"load: {url} did not become ready within {timeout}s")


def start(cmd, log):
    return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)


NGINX_HEAD = """
daemon off;
worker_processes 1;
error_log {tmp}/{name}-error.log error;
pid {tmp}/{name}.pid;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  client_body_temp_path {tmp}/nginx-body;
  proxy_temp_path {tmp}/nginx-proxy;
  fastcgi_temp_path {tmp}/nginx-fastcgi;
  uwsgi_temp_path {tmp}/nginx-uwsgi;
  scgi_temp_path {tmp}/nginx-scgi;
  keepalive_requests 1000000;
"""

NGINX = """
  server {{
    listen 127.0.0.1:{port};
    location / {{ default_type application/json; return 200 '{{"ok":true}}'; }}
    # Canned LLM answers; error_page turns the POST into a static read.
    location = /v1/chat/completions {{
      default_type application/json; alias {tmp}/chat.json; error_page 405 =200 $uri;
    }}
    location = /compatible-mode/v1/chat/completions {{
      default_type application/json; alias {tmp}/chat.json; error_page 405 =200 $uri;
    }}
    location = /sse/v1/chat/completions {{
      default_type text/event-stream; alias {tmp}/chat.sse; error_page 405 =200 $uri;
    }}
  }}
}}
"""

NGINX_PROXY = """
  upstream backend {{ server 127.0.0.1:{upstream}; keepalive 64; keepalive_requests 1000000; }}
  server {{
    listen 127.0.0.1:{port};
    location / {{
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
    }}
  }}
}}
"""

TOLLGATE_PROXY = """
admin: {{ address: "127.0.0.1:{admin}" }}
logging: {{ level: warn }}
binds:
- port: {proxy}
  listeners:
  - routes:
    - name: proxy
      backends: [ {{ host: "127.0.0.1:{upstream}" }} ]
"""

# The AI route of agentgateway's reference file (bind 3100), as tests/e2e/agentgateway.rs
# runs it: hostOverride at the local upstream, `backendTLS: {{}}` dropped so it is plain
# HTTP. `cors` is the reference's (its MCP route's); `config.logging`/`tracing` are left
# out (debug logging of bodies and OTLP export are not route policies). The second bind
# is the same proxy with a route that has no policies.
TOLLGATE_AGW = """
admin: {{ address: "127.0.0.1:{admin}" }}
logging: {{ level: warn }}
binds:
- port: {ai}
  listeners:
  - routes:
    - policies:
        urlRewrite:
          authority:
            full: dashscope.aliyuncs.com
        requestHeaderModifier:
          set:
            Host: "dashscope.aliyuncs.com"
        backendAuth:
          key: "sk-abc"
        cors:
          allowOrigins:
            - "*"
          allowHeaders:
            - mcp-protocol-version
            - content-type
            - cache-control
      backends:
      - ai:
          name: qwen-plus
          hostOverride: 127.0.0.1:{upstream}
          provider:
            openAI:
              model: qwen-plus
          policies:
            ai:
              routes:
                /compatible-mode/v1/chat/completions: completions
                /compatible-mode/v1/models: passthrough
                "*": passthrough
- port: {plain}
  listeners:
  - routes:
    - name: plain
      backends: [ {{ host: "127.0.0.1:{upstream}" }} ]
"""

TOLLGATE = """
extProc: {{ address: "127.0.0.1:{ext_proc}", modeOverride: false }}
admin: {{ address: "127.0.0.1:{admin}" }}
logging: {{ level: warn }}
binds:
- port: {proxy}
  listeners:
  - routes:
    - name: empty
      matches: [ {{ path: {{ pathPrefix: /empty }} }} ]
      backends: [ {{ host: "127.0.0.1:{upstream}" }} ]
    - name: request-headers
      matches: [ {{ path: {{ pathPrefix: /request-headers }} }} ]
      policies:
        requestHeaderModifier: {{ set: {{ x-team: load }}, remove: [x-drop] }}
      backends: [ {{ host: "127.0.0.1:{upstream}" }} ]
    - name: llm-empty
      matches: [ {{ path: {{ pathPrefix: /never }} }} ]
    - name: llm
      matches: [ {{ path: {{ pathPrefix: /never }} }} ]
      policies:
        tokenAccounting:
          metadata: [ {{ key: llm_total_token, type: TotalToken }} ]
    - name: llm-guard
      matches: [ {{ path: {{ pathPrefix: /never }} }} ]
      policies:
        promptGuard:
          request:
            rules:
            - {{ name: pii, builtins: [email, phone, credit_card, ssn, iban], action: mask }}
            - {{ name: secrets, builtins: [openai_api_key, aws_access_key_id, private_key, jwt], action: mask }}
          response:
            rules:
            - {{ name: pii, builtins: [email, phone, credit_card, ssn, iban], action: mask }}
    - name: headers
      policies:
        requestHeaderModifier: {{ set: {{ x-team: load }}, remove: [x-drop] }}
        responseHeaderModifier: {{ set: {{ x-tollgate: "1" }} }}
      backends: [ {{ host: "127.0.0.1:{upstream}" }} ]
"""

ENVOY_LISTENER = """
  - name: {name}
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: {port} }} }}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: {name}
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - name: {route}
                match: {{ prefix: "/" }}
                route: {{ cluster: upstream, timeout: 0s }}
          http_filters:{ext_proc}
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
"""

EXT_PROC_FILTER = """
          - name: envoy.filters.http.ext_proc
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.ext_proc.v3.ExternalProcessor
              grpc_service: {{ envoy_grpc: {{ cluster_name: tollgate }} }}
              failure_mode_allow: false
              allow_mode_override: true
              message_timeout: 1s
              metadata_options: {{ receiving_namespaces: {{ untyped: ["io.envoy.ai_gateway"] }} }}
              request_attributes: ["xds.route_name"]
              processing_mode:
                request_header_mode: SEND
                response_header_mode: {response_headers}
                request_body_mode: {request_body}
                response_body_mode: {response_body}
                request_trailer_mode: SKIP
                response_trailer_mode: SKIP"""

ENVOY = """
admin: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {admin} }} }} }}
static_resources:
  listeners:{listeners}
  clusters:
  - name: upstream
    type: STATIC
    connect_timeout: 1s
    load_assignment:
      cluster_name: upstream
      endpoints: [ {{ lb_endpoints: [ {{ endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {upstream} }} }} }} }} ] }} ]
  - name: tollgate
    type: STATIC
    connect_timeout: 1s
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: {{ http2_protocol_options: {{}} }}
    load_assignment:
      cluster_name: tollgate
      endpoints: [ {{ lb_endpoints: [ {{ endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {ext_proc} }} }} }} }} ] }} ]
"""

# Bare Envoy alone, for the run with --concurrency N.
ENVOY_BARE = """
admin: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {admin} }} }} }}
static_resources:
  listeners:{listeners}
  clusters:
  - name: upstream
    type: STATIC
    connect_timeout: 1s
    load_assignment:
      cluster_name: upstream
      endpoints: [ {{ lb_endpoints: [ {{ endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {upstream} }} }} }} }} ] }} ]
"""

UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}


def cpu_seconds(pid):
    """User + system CPU time of a process, all its threads, in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wrk(url, connections, script=None, duration=None):
    extra = ["-s", script] if script else []
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{duration or DURATION}", "--latency", *extra, url],
        capture_output=True, text=True, check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    lat = {}
    for pct in ("50", "99"):
        m = re.search(rf"^\s+{pct}(?:\.000)?%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        lat[pct] = float(m.group(1)) * UNITS[m.group(2)]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors:
        sys.exit(f"load: {url} answered {errors.group(1)} non-2xx responses:\n{out}")
    total = int(re.search(r"(\d+) requests in", out).group(1))
    return rps, lat["50"], lat["99"], total


def measure(url, script, cpu_pids):
    """One round of one scenario: latency at 1 connection, then throughput at
    CONNECTIONS with the CPU each watched process spent per request meanwhile."""
    wrk(url, 1, script, "1s")  # warm-up: connections, pools, caches
    _, p50, p99, _ = wrk(url, 1, script)
    before = {k: cpu_seconds(pid) for k, pid in cpu_pids.items()}
    rps, _, _, total = wrk(url, CONNECTIONS, script)
    cpu = {k: (cpu_seconds(pid) - before[k]) * 1e6 / total for k, pid in cpu_pids.items()}
    return rps, p50, p99, cpu


def write_llm_fixtures(tmp):
    """A 4 KiB chat request (plain and streamed, as wrk scripts) and canned answers: a
    JSON completion with usage, and a 50-event SSE stream ending with a usage chunk."""
    filler = "Tell me about the history of the city of Paris. " * 80
    request = {"model": "gpt-4o", "messages": [{"role": "system", "content": "Be brief."},
                                               {"role": "user", "content": filler[:4000]}]}
    for name, body in (("chat.lua", request), ("chat_stream.lua", dict(request, stream=True))):
        with open(f"{tmp}/{name}", "w") as f:
            f.write('wrk.method = "POST"\n')
            f.write('wrk.headers["Content-Type"] = "application/json"\n')
            f.write(f"wrk.body = {json.dumps(json.dumps(body))}\n")
    usage = {"prompt_tokens": 1010, "completion_tokens": 50, "total_tokens": 1060}
    with open(f"{tmp}/chat.json", "w") as f:
        json.dump({"id": "c", "object": "chat.completion", "model": "gpt-4o",
                   "choices": [{"index": 0, "message": {"role": "assistant", "content": "Paris."},
                                "finish_reason": "stop"}], "usage": usage}, f)
    with open(f"{tmp}/chat.sse", "w") as f:
        for i in range(50):
            chunk = {"id": "c", "object": "chat.completion.chunk", "model": "gpt-4o",
                     "choices": [{"index": 0, "delta": {"content": f"tok{i} "}}]}
            f.write(f"data: {json.dumps(chunk)}\n\n")
        f.write(f"data: {json.dumps({'id': 'c', 'object': 'chat.completion.chunk', 'model': 'gpt-4o', 'choices': [], 'usage': usage})}\n\n")
        f.write("data: [DONE]\n\n")


def main():
    envoy = os.environ.get("ENVOY_BIN") or os.path.join(ROOT, ".venv", "bin", "envoy")
    binary = os.environ.get("TOLLGATE_BIN") or os.path.join(ROOT, "target", "release", "tollgate")
    for tool in ("wrk", "nginx"):
        if not shutil.which(tool):
            sys.exit(f"load: {tool} missing; run scripts/bench-load (it installs it)")
    tmp = tempfile.mkdtemp(prefix="tollgate-load-")
    os.chmod(tmp, 0o755)  # nginx workers drop root and must read the canned answers
    ports = {k: free_port() for k in ("upstream", "ext_proc", "admin", "proxy", "envoy_admin", "bare", "empty", "reqheaders", "empty2", "headers", "llm_empty", "llm", "llm_guard", "nginx_proxy", "solo_proxy", "solo_admin", "agw_ai", "agw_plain", "agw_admin", "envoy_n_admin", "bare_n")}
    with open(f"{tmp}/nginx.conf", "w") as f:
        f.write(NGINX_HEAD.format(tmp=tmp, name="nginx") + NGINX.format(tmp=tmp, port=ports["upstream"]))
    with open(f"{tmp}/tollgate.yaml", "w") as f:
        f.write(TOLLGATE.format(**ports))
    with open(f"{tmp}/nginx-proxy.conf", "w") as f:
        f.write(NGINX_HEAD.format(tmp=tmp, name="nginx-proxy")
                + NGINX_PROXY.format(port=ports["nginx_proxy"], upstream=ports["upstream"]))
    with open(f"{tmp}/tollgate-proxy.yaml", "w") as f:
        f.write(TOLLGATE_PROXY.format(admin=ports["solo_admin"], proxy=ports["solo_proxy"],
                                      upstream=ports["upstream"]))
    with open(f"{tmp}/tollgate-agw.yaml", "w") as f:
        f.write(TOLLGATE_AGW.format(admin=ports["agw_admin"], ai=ports["agw_ai"],
                                    plain=ports["agw_plain"], upstream=ports["upstream"]))
    with open(f"{tmp}/envoy-n.yaml", "w") as f:
        f.write(ENVOY_BARE.format(admin=ports["envoy_n_admin"], upstream=ports["upstream"],
                                  listeners=ENVOY_LISTENER.format(name="bare_n", port=ports["bare_n"],
                                                                  route="bare", ext_proc="")))
    listeners = ENVOY_LISTENER.format(name="bare", port=ports["bare"], route="bare", ext_proc="")
    listeners += ENVOY_LISTENER.format(name="empty", port=ports["empty"], route="empty",
                                       ext_proc=EXT_PROC_FILTER.format(response_headers="SKIP", request_body="NONE", response_body="NONE"))
    listeners += ENVOY_LISTENER.format(name="reqheaders", port=ports["reqheaders"], route="request-headers",
                                       ext_proc=EXT_PROC_FILTER.format(response_headers="SKIP", request_body="NONE", response_body="NONE"))
    listeners += ENVOY_LISTENER.format(name="empty2", port=ports["empty2"], route="empty",
                                       ext_proc=EXT_PROC_FILTER.format(response_headers="SEND", request_body="NONE", response_body="NONE"))
    listeners += ENVOY_LISTENER.format(name="headers", port=ports["headers"], route="headers",
                                       ext_proc=EXT_PROC_FILTER.format(response_headers="SEND", request_body="NONE", response_body="NONE"))
    llm_filter = EXT_PROC_FILTER.format(response_headers="SEND", request_body="BUFFERED",
                                        response_body="STREAMED")
    listeners += ENVOY_LISTENER.format(name="llm_empty", port=ports["llm_empty"], route="llm-empty",
                                       ext_proc=llm_filter)
    listeners += ENVOY_LISTENER.format(name="llm", port=ports["llm"], route="llm", ext_proc=llm_filter)
    listeners += ENVOY_LISTENER.format(name="llm_guard", port=ports["llm_guard"], route="llm-guard",
                                       ext_proc=llm_filter)
    write_llm_fixtures(tmp)
    with open(f"{tmp}/envoy.yaml", "w") as f:
        f.write(ENVOY.format(admin=ports["envoy_admin"], listeners=listeners,
                             upstream=ports["upstream"], ext_proc=ports["ext_proc"]))
    log = open(f"{tmp}/processes.log", "w")
    procs = [
        start(["nginx", "-c", f"{tmp}/nginx.conf", "-p", tmp], log),
        start([binary, "serve", "-c", f"{tmp}/tollgate.yaml"], log),
        start([envoy, "-c", f"{tmp}/envoy.yaml", "--concurrency", "1", "-l", "error",
               "--use-dynamic-base-id"], log),
        start(["nginx", "-c", f"{tmp}/nginx-proxy.conf", "-p", tmp], log),
        start([binary, "serve", "--workers", "1", "-c", f"{tmp}/tollgate-proxy.yaml"], log),
        start([binary, "serve", "--workers", str(WORKERS), "-c", f"{tmp}/tollgate-agw.yaml"], log),
        start([envoy, "-c", f"{tmp}/envoy-n.yaml", "--concurrency", str(WORKERS), "-l", "error",
               "--use-dynamic-base-id"], log),
    ]
    try:
        wait_http(f"http://127.0.0.1:{ports['admin']}/readyz")
        wait_http(f"http://127.0.0.1:{ports['envoy_admin']}/ready")
        wait_http(f"http://127.0.0.1:{ports['upstream']}/")
        wait_http(f"http://127.0.0.1:{ports['solo_admin']}/readyz")
        wait_http(f"http://127.0.0.1:{ports['nginx_proxy']}/")
        wait_http(f"http://127.0.0.1:{ports['agw_admin']}/readyz")
        wait_http(f"http://127.0.0.1:{ports['envoy_n_admin']}/ready")
        scenarios = [
            ("bare Envoy", f"http://127.0.0.1:{ports['bare']}/v1/x"),
            ("Envoy + tollgate, empty pipeline", f"http://127.0.0.1:{ports['empty']}/empty"),
            ("Envoy + tollgate, request header policy", f"http://127.0.0.1:{ports['reqheaders']}/request-headers"),
            ("Envoy + tollgate, empty pipeline, request + response headers", f"http://127.0.0.1:{ports['empty2']}/empty"),
            ("Envoy + tollgate, request + response header policies", f"http://127.0.0.1:{ports['headers']}/v1/x"),
            ("tollgate standalone, request + response header policies", f"http://127.0.0.1:{ports['proxy']}/v1/x"),
        ]
        json_post, sse_post = f"{tmp}/chat.lua", f"{tmp}/chat_stream.lua"
        llm = f"http://127.0.0.1:{{}}{{}}/v1/chat/completions"
        scenarios += [
            ("LLM JSON: Envoy + tollgate, empty pipeline, same phases",
             llm.format(ports["llm_empty"], ""), json_post),
            ("LLM JSON: Envoy + tollgate, tokenAccounting", llm.format(ports["llm"], ""), json_post),
            ("LLM SSE: Envoy + tollgate, empty pipeline, same phases",
             llm.format(ports["llm_empty"], "/sse"), sse_post),
            ("LLM SSE: Envoy + tollgate, tokenAccounting", llm.format(ports["llm"], "/sse"), sse_post),
            ("LLM JSON: Envoy + tollgate, promptGuard", llm.format(ports["llm_guard"], ""), json_post),
            ("LLM SSE: Envoy + tollgate, promptGuard", llm.format(ports["llm_guard"], "/sse"), sse_post),
            ("nginx reverse proxy, 1 worker", f"http://127.0.0.1:{ports['nginx_proxy']}/v1/x"),
            ("tollgate standalone, no policies, 1 worker", f"http://127.0.0.1:{ports['solo_proxy']}/v1/x"),
            (AGW_AI, f"http://127.0.0.1:{ports['agw_ai']}/compatible-mode/v1/chat/completions", json_post),
            (AGW_PLAIN, f"http://127.0.0.1:{ports['agw_plain']}/compatible-mode/v1/chat/completions", json_post),
            (ENVOY_N, f"http://127.0.0.1:{ports['bare_n']}/v1/x"),
            (SOLO_N, f"http://127.0.0.1:{ports['agw_plain']}/v1/x"),
        ]
        only = os.environ.get("LOAD_ONLY")
        chosen = [s for s in scenarios if not only or any(o in s[0] for o in only.split("|"))]
        with open(f"/proc/{procs[3].pid}/task/{procs[3].pid}/children") as f:
            nginx_proxy_worker = int(f.read().split()[0])
        cpu_pids = {"tollgate": procs[1].pid, "Envoy": procs[2].pid, "solo": procs[4].pid,
                    "nginx proxy": nginx_proxy_worker, "agw": procs[5].pid, "Envoy N": procs[6].pid}
        rounds = {name: [] for name, *_ in chosen}
        for r in range(ROUNDS):  # rounds interleave the scenarios; medians are reported
            for name, url, *script in chosen:
                m = measure(url, script[0] if script else None, cpu_pids)
                rounds[name].append(m)
                print(f"  round {r + 1}: {name}: {m[0]:,.0f} req/s, p50 {m[1]:.3f} ms", file=sys.stderr)
        results = {name: median_of(ms) for name, ms in rounds.items()}
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
    report(results)


AGW_AI = f"LLM JSON: tollgate standalone, agentgateway reference AI route, {WORKERS} workers"
AGW_PLAIN = f"LLM JSON: tollgate standalone, route without policies, {WORKERS} workers"
ENVOY_N = f"bare Envoy, --concurrency {WORKERS}"
SOLO_N = f"tollgate standalone, no policies, --workers {WORKERS}"


def median_of(measurements):
    """Per field, the median over rounds. The proxy's CPU per request is summed over
    the three tollgate processes and the nginx proxy worker, Envoy's over the two Envoys:
    one of them serves a scenario, the others idle."""
    med = lambda xs: sorted(xs)[len(xs) // 2]
    return (med([m[0] for m in measurements]), med([m[1] for m in measurements]),
            med([m[2] for m in measurements]),
            med([m[3]["tollgate"] + m[3]["solo"] + m[3]["nginx proxy"] + m[3]["agw"]
                 for m in measurements]),
            med([m[3]["Envoy"] + m[3]["Envoy N"] for m in measurements]))


def ratio_line(results, label, a, b, fmt):
    """One target or comparison line, printed only when both scenarios ran."""
    if a in results and b in results:
        print(label + fmt(results[a], results[b]))


def report(results):
    bare = results.get("bare Envoy")
    floor = results.get("Envoy + tollgate, empty pipeline")
    print(f"\nwrk -t1, {DURATION} per run, median of {ROUNDS} interleaved rounds; throughput at "
          f"{CONNECTIONS} connections, latency at 1 connection; CPU µs per request during the "
          f"throughput run (proxy: tollgate's, or the nginx proxy worker's)\n")
    print("| scenario | req/s | p50 ms | p99 ms | req/s vs bare | p50 vs bare | req/s vs empty "
          "| p50 vs empty | proxy CPU µs/req | Envoy CPU µs/req |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    rel = lambda x, base, i: f"{x[i] / base[i]:.2f}x" if base else "-"
    for name, r in results.items():
        print(f"| {name} | {r[0]:,.0f} | {r[1]:.3f} | {r[2]:.3f} | {rel(r, bare, 0)} | {rel(r, bare, 1)} "
              f"| {rel(r, floor, 0)} | {rel(r, floor, 1)} | {r[3]:.1f} | {r[4]:.1f} |")
    met = lambda ok: "met" if ok else "NOT met"
    print()
    ratio_line(results, "target: ext_proc, one header phase, p50 <= 1.15x the empty pipeline's: ",
               "Envoy + tollgate, request header policy", "Envoy + tollgate, empty pipeline",
               lambda a, b: f"{a[1] / b[1]:.2f}x ({met(a[1] / b[1] <= 1.15)})")
    ratio_line(results, "target: ext_proc, two header phases, p50 <= 1.15x the empty pipeline's: ",
               "Envoy + tollgate, request + response header policies",
               "Envoy + tollgate, empty pipeline, request + response headers",
               lambda a, b: f"{a[1] / b[1]:.2f}x ({met(a[1] / b[1] <= 1.15)})")
    ratio_line(results, "target: standalone req/s >= bare Envoy: ",
               "tollgate standalone, request + response header policies", "bare Envoy",
               lambda a, b: f"{a[0] / b[0]:.2f}x ({met(a[0] >= b[0])})")
    for label in ("JSON", "SSE"):
        ratio_line(results, f"target: tokenAccounting p50 <= 1.10x the empty pipeline with the same phases ({label}): ",
                   f"LLM {label}: Envoy + tollgate, tokenAccounting",
                   f"LLM {label}: Envoy + tollgate, empty pipeline, same phases",
                   lambda a, b: f"{a[1] / b[1]:.2f}x ({met(a[1] / b[1] <= 1.10)})")
    ratio_line(results, "promptGuard vs the empty pipeline with the same phases (request + JSON response): ",
               "LLM JSON: Envoy + tollgate, promptGuard", "LLM JSON: Envoy + tollgate, empty pipeline, same phases",
               lambda a, b: f"p50 {a[1] / b[1]:.2f}x, req/s {a[0] / b[0]:.2f}x")
    ratio_line(results, "target: promptGuard SSE req/s >= 0.85x the empty pipeline with the same phases: ",
               "LLM SSE: Envoy + tollgate, promptGuard", "LLM SSE: Envoy + tollgate, empty pipeline, same phases",
               lambda a, b: f"{a[0] / b[0]:.2f}x, p50 {a[1] / b[1]:.2f}x ({met(a[0] / b[0] >= 0.85)})")
    ratio_line(results, "target: standalone (1 worker) req/s >= 0.8x nginx (1 worker), p50 within 0.05 ms: ",
               "tollgate standalone, no policies, 1 worker", "nginx reverse proxy, 1 worker",
               lambda a, b: f"{a[0] / b[0]:.2f}x, p50 {a[1]:.3f} vs {b[1]:.3f} ms "
                            f"({met(a[0] / b[0] >= 0.8 and a[1] - b[1] <= 0.05)})")
    ratio_line(results, "target: agentgateway reference AI route p50 <= 1.15x the same proxy's route without policies: ",
               AGW_AI, AGW_PLAIN,
               lambda a, b: f"{a[1] / b[1]:.2f}x, p50 {a[1]:.3f} vs {b[1]:.3f} ms, p99 {a[2]:.3f} vs "
                            f"{b[2]:.3f} ms, req/s {a[0] / b[0]:.2f}x ({met(a[1] / b[1] <= 1.15)})")
    ratio_line(results, f"tollgate standalone (--workers {WORKERS}, no policies) vs bare Envoy (--concurrency {WORKERS}): ",
               SOLO_N, ENVOY_N,
               lambda a, b: f"req/s tollgate/Envoy {a[0] / b[0]:.2f}x, Envoy/tollgate {b[0] / a[0]:.2f}x; "
                            f"p50 {a[1]:.3f} vs {b[1]:.3f} ms ({a[1] / b[1]:.2f}x)")

if __name__ == "__main__":
    main()
