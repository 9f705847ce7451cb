"""Benchmark: memory per idle session and time from SIGTERM to exit.

For interviewd and for a Python peer (benches/peer_server.py), in the same run:
  1. start the server, read its address from its log, measure idle RSS;
  2. open N WebSocket sessions, each read through its greeting;
  3. measure RSS with N sessions connected;
  4. send SIGTERM, time until the process has exited, count close codes.
Repeated --runs times; medians are reported, with interviewd/peer ratios.

Usage: python benches/sessions.py --binary target/release/interviewd [--sessions 1000] [--runs 5]
Needs the `websockets` package (bash tests/peer/setup.sh installs it into target/realtime-peer).
"""

import argparse
import asyncio
import json
import os
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time

import websockets

HERE = os.path.dirname(os.path.abspath(__file__))


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def start(cmd):
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        if "listening on " in line:
            addr = line.split("listening on ")[1].strip()
            # Keep draining stderr so the server never blocks on a full pipe,
            # keeping the lines for the shutdown breakdown.
            proc.log_lines = []
            asyncio.get_event_loop().run_in_executor(None, lambda: proc.log_lines.extend(proc.stderr))
            return proc, addr
    proc.kill()
    raise RuntimeError(f"{cmd[0]} did not report its address")


async def open_session(url, sessions):
    ws = await websockets.connect(url, max_size=1 << 20, open_timeout=30, ping_interval=None)
    while True:
        event = json.loads(await asyncio.wait_for(ws.recv(), 30))
        if event["type"] == "response.done":
            break
    sessions.append(ws)


async def close_code(ws):
    try:
        await asyncio.wait_for(ws.wait_closed(), 30)
    except asyncio.TimeoutError:
        return "timeout"
    return ws.close_code


async def measure(cmd, n):
    proc, addr = start(cmd)
    await asyncio.sleep(0.2)  # let the allocator settle after start-up
    idle = rss_kib(proc.pid)
    url = f"ws://{addr}/v1/realtime"
    sessions = []
    for i in range(0, n, 100):
        await asyncio.gather(*(open_session(url, sessions) for _ in range(min(100, n - i))))
    await asyncio.sleep(0.2)
    loaded = rss_kib(proc.pid)
    codes = asyncio.gather(*(close_code(ws) for ws in sessions))
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    while proc.poll() is None:
        await asyncio.sleep(0.001)
        if time.monotonic() - t0 > 30:
            proc.kill()
            raise RuntimeError("server did not exit within 30 s")
    stop_ms = (time.monotonic() - t0) * 1000
    await asyncio.sleep(0.1)  # let the reader thread take the last lines
    steps = [l.split("  ", 1)[-1].strip() for l in proc.log_lines if "  shutdown" in l or "  received" in l]
    codes = await codes
    counts = {}
    for c in codes:
        counts[c] = counts.get(c, 0) + 1
    return {"idle_kib": idle, "loaded_kib": loaded, "stop_ms": stop_ms, "status": proc.returncode, "codes": counts,
            "steps": steps}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default="target/release/interviewd")
    ap.add_argument("--sessions", type=int, default=1000)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    results = {"interviewd": [], "python-websockets": []}
    for run in range(args.runs):
        state = tempfile.mkdtemp(prefix="interviewd-bench-")
        ours = [args.binary, "serve", "--listen", "127.0.0.1:0", "--state-dir", state]
        peer = [sys.executable, os.path.join(HERE, "peer_server.py")]
        # Alternate the order so neither side always runs on a warmer machine.
        order = [("interviewd", ours), ("python-websockets", peer)]
        if run % 2:
            order.reverse()
        for name, cmd in order:
            r = asyncio.run(measure(cmd, args.sessions))
            results[name].append(r)
            print(f"run {run + 1} {name}: idle {r['idle_kib']} KiB, {args.sessions} sessions {r['loaded_kib']} KiB, "
                  f"SIGTERM->exit {r['stop_ms']:.0f} ms, status {r['status']}, close codes {r['codes']}", flush=True)

    print("\ninterviewd's own shutdown log, last run:")
    for line in results["interviewd"][-1]["steps"]:
        print("   ", line)

    def med(name, key):
        return statistics.median(r[key] for r in results[name])

    print()
    print(f"medians over {args.runs} runs, {args.sessions} sessions:")
    print("| metric | interviewd | python-websockets peer | ratio (interviewd/peer) |")
    print("|---|---|---|---|")
    for key, label, unit in [("idle_kib", "idle RSS", "KiB"), ("loaded_kib", f"RSS with {args.sessions} sessions", "KiB"),
                             ("stop_ms", f"SIGTERM to exit, {args.sessions} sessions", "ms")]:
        a, b = med("interviewd", key), med("python-websockets", key)
        print(f"| {label} | {a:.0f} {unit} | {b:.0f} {unit} | {a / b:.2f} |")
    a = (med("interviewd", "loaded_kib") - med("interviewd", "idle_kib")) / args.sessions
    b = (med("python-websockets", "loaded_kib") - med("python-websockets", "idle_kib")) / args.sessions
    print(f"| RSS per session | {a:.1f} KiB | {b:.1f} KiB | {a / b:.2f} |")


if __name__ == "__main__":
    main()
