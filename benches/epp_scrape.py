#!/usr/bin/env python3
"""What scraping costs the endpoint picker: CPU of a tollgate whose picker scrapes 100
simulated model servers' vLLM-style `/metrics` every 50 ms (2,000 scrapes/s), against
the same tollgate without a picker (its idle floor), both measured in the same run from
/proc/<pid>/stat (user + system time) over a fixed window. The simulator (one
`tollgate sim --instances 100` process) serves the scrapes; its own CPU is shown too.

Run through scripts/bench-epp (builds release), or directly after `cargo build --release`.
"""
import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = os.environ.get("CARGO_TARGET_DIR") or os.path.join(ROOT, "target")
TOLLGATE = os.path.join(TARGET, "release", "tollgate")
TICKS = os.sysconf("SC_CLK_TCK")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # utime and stime are fields 14 and 15 of the whole line (11 and 12 after the name).
    return (int(fields[11]) + int(fields[12])) / TICKS


def wait_ready(url, timeout=20.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.05)
    sys.exit(f"epp-scrape: {url} not ready within {timeout}s")


def measure(config, window, warmup, sim_pid):
    admin = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "tollgate.yaml")
        with open(path, "w") as f:
            f.write(config.format(admin=admin, ext_proc=free_port()))
        proc = subprocess.Popen([TOLLGATE, "serve", "-c", path],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_ready(f"http://127.0.0.1:{admin}/readyz")
            time.sleep(warmup)
            t0, c0, s0 = time.monotonic(), cpu_seconds(proc.pid), cpu_seconds(sim_pid)
            time.sleep(window)
            t1, c1, s1 = time.monotonic(), cpu_seconds(proc.pid), cpu_seconds(sim_pid)
            with urllib.request.urlopen(f"http://127.0.0.1:{admin}/metrics") as r:
                metrics = r.read().decode()
        finally:
            proc.terminate()
            proc.wait(timeout=10)
    elapsed = t1 - t0
    ready = next((float(l.rsplit(" ", 1)[1]) for l in metrics.splitlines()
                  if l.startswith("inference_pool_ready_pods{")), 0.0)
    return (c1 - c0) / elapsed, (s1 - s0) / elapsed, ready


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--endpoints", type=int, default=100)
    p.add_argument("--interval-ms", type=int, default=50)
    p.add_argument("--window", type=float, default=10.0)
    p.add_argument("--warmup", type=float, default=2.0)
    a = p.parse_args()
    if not os.path.exists(TOLLGATE):
        sys.exit(f"epp-scrape: {TOLLGATE} missing; run: cargo build --release")
    sim = subprocess.Popen([TOLLGATE, "sim", "--instances", str(a.endpoints),
                            "--listen", "127.0.0.1:0"],
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    addrs = []
    while len(addrs) < a.endpoints:
        line = sim.stdout.readline()
        if not line:
            sys.exit("epp-scrape: tollgate sim exited")
        addrs.append(line.strip().removeprefix("listening http://"))
    endpoints = ", ".join(f'"{x}"' for x in addrs)
    base = ('admin: {{ address: "127.0.0.1:{admin}" }}\n'
            'extProc: {{ address: "127.0.0.1:{ext_proc}" }}\n'
            'logging: {{ level: warn }}\n')
    picker = base + (
        "policies:\n  endpointPicker:\n"
        f"    endpoints: [{endpoints}]\n"
        f"    metrics: {{{{ path: /metrics, interval: {a.interval_ms}ms, staleAfter: 1s }}}}\n")
    try:
        idle, sim_idle, _ = measure(base, a.window, a.warmup, sim.pid)
        busy, sim_busy, ready = measure(picker, a.window, a.warmup, sim.pid)
    finally:
        sim.terminate()
        sim.wait(timeout=10)
    scrapes = a.endpoints * 1000 / a.interval_ms
    print(f"scraping {a.endpoints} endpoints every {a.interval_ms} ms "
          f"({scrapes:,.0f} scrapes/s), {a.window:.0f} s window")
    print(f"  tollgate without a picker: {idle * 100:6.2f} % of one core")
    print(f"  tollgate with the picker:  {busy * 100:6.2f} % of one core "
          f"({ready:.0f} endpoints fresh)")
    print(f"  scraping costs:            {(busy - idle) * 100:6.2f} % of one core, "
          f"{(busy - idle) / scrapes * 1e6:.1f} µs of CPU per scrape")
    print(f"  the simulator serving them: {sim_busy * 100:6.2f} % of one core "
          f"(idle {sim_idle * 100:.2f} %)")
    if ready < a.endpoints:
        sys.exit(f"epp-scrape: only {ready:.0f} of {a.endpoints} endpoints were fresh")


if __name__ == "__main__":
    main()
