"""Benchmark: interviewd under attack, two binaries side by side in one run.

For a "before" and an "after" binary (e.g. the committed HEAD and the working
tree), each scenario on a fresh daemon with a fresh state directory:

  flood      Greeting latency during a one-connection flood. One raw client
             completes the WebSocket handshake, then writes masked
             `{"type":"response.cancel"}` frames as fast as the socket takes
             them and never reads (from a separate process; it reconnects if
             the daemon drops it). From the moment it is connected, a prober
             connects every 200 ms for 5 s and times TCP connect -> first `response.done` (the
             greeting); a probe that takes over 30 s counts as 30 s. The same
             probes without a flood give the baseline.
  sigterm    SIGTERM-to-exit with 100 flooders among 1,000 sessions: 900
             sessions read their greeting and then keep reading, 100 flood as
             above; SIGTERM; time until the process has exited, its exit
             status, and how many of the 900 readers got close 1012. A daemon
             still running 30 s after SIGTERM is killed and counts as 30 s.
  rss        VmRSS of 500 idle sessions, each read through its greeting, before
             and after each sends one text frame just under 256 KiB (a
             `conversation.item.retrieve` padded to 250 KiB, answered with an
             `error`), measured after the daemon has been idle for ~1 s.
  slowloris  2,000 connections from 127.0.0.2-127.0.0.5 send
             "GET /v1/realtime HTTP/1.1\\r\\n" and then one byte a second;
             each slot reconnects when dropped (at most once a second). From
             3 s on, a legitimate client from 127.0.0.6 tries 29 times, one
             attempt starting each second, each allowed 5 s to get its
             greeting. Reported: how many got it.

Repeated --runs times (the two binaries alternate in order); medians are
reported, with after/before ratios. The daemon's config file is empty plus
--before-config-extra / --after-config-extra (TOML appended for that binary
only, since the daemon rejects unknown keys). The benchmark's own sessions
(up to 1,000) all come from 127.0.0.1: lift any per-address limit there. A
scenario that fails is reported as FAILED and left out of the medians.

Usage:
  target/realtime-peer/bin/python benches/hostile.py \\
      --before /tmp/before-target/release/interviewd --after target/release/interviewd \\
      [--runs 3] [--scenario flood|sigterm|rss|slowloris|all] \\
      [--after-config-extra $'[limits]\\nevents_per_second = 10000000\\n'] [--json FILE]

The "before" binary is built from HEAD in a separate worktree:
  git worktree add /tmp/before HEAD
  (cd /tmp/before && CARGO_TARGET_DIR=/tmp/before-target cargo build --release)
Needs the `websockets` package (bash tests/peer/setup.sh installs it into
target/realtime-peer). The attackers run as child processes of this script
(`hostile.py _flood ...`, `hostile.py _slowloris ...`).
"""

import argparse
import asyncio
import base64
import datetime
import json
import os
import queue
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

SCRIPT = os.path.abspath(__file__)

# Scenario sizes.
PROBE_EVERY = 0.2  # flood: one probe this often ...
PROBE_FOR = 5.0  # ... for this long
PROBE_TIMEOUT = 30.0  # a probe slower than this counts as this
SIGTERM_READERS = 900
SIGTERM_FLOODERS = 100
RSS_SESSIONS = 500
RSS_FRAME_BYTES = 250 * 1024  # limits.max_message_bytes defaults to 262144
SLOWLORIS_CONNS = 2000
SLOWLORIS_SOURCES = ["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"]
LEGIT_SOURCE = "127.0.0.6"
LEGIT_START = 3.0
LEGIT_ATTEMPTS = 29
LEGIT_TIMEOUT = 5.0

CANCEL = b'{"type":"response.cancel"}'


# ---------------------------------------------------------------- helpers

class LineReader:
    """Drains a text pipe in a thread: keeps every line, and queues them."""

    def __init__(self, pipe):
        self.lines = []
        self.queue = queue.Queue()
        self.thread = threading.Thread(target=self._run, args=(pipe,), daemon=True)
        self.thread.start()

    def _run(self, pipe):
        for line in pipe:
            self.lines.append(line)
            self.queue.put(line)
        self.queue.put(None)

    def wait_for(self, prefix, timeout):
        """The first queued line containing `prefix`, or None at EOF/timeout."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            try:
                line = self.queue.get(timeout=left)
            except queue.Empty:
                return None
            if line is None:
                return None
            if prefix in line:
                return line


def log_time(line):
    """The wall-clock time (epoch seconds) of a daemon log line, or None."""
    try:
        stamp = datetime.datetime.strptime(line.split(" ", 1)[0], "%Y-%m-%dT%H:%M:%S.%fZ")
    except ValueError:
        return None
    return stamp.replace(tzinfo=datetime.timezone.utc).timestamp()


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


class Daemon:
    """`interviewd serve` on a free port with a fresh state dir; always use as a context manager."""

    def __init__(self, binary, config_extra):
        self.tmp = tempfile.mkdtemp(prefix="interviewd-hostile-")
        config = os.path.join(self.tmp, "config.toml")
        with open(config, "w") as f:
            f.write(config_extra or "")
        cmd = [binary, "serve", "--listen", "127.0.0.1:0", "--state-dir", os.path.join(self.tmp, "state"),
               "--config", config]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True, errors="replace")
        self.log = LineReader(self.proc.stderr)
        line = self.log.wait_for("listening on ", 20)
        if line is None:
            self.close()
            raise RuntimeError(f"{binary} did not report its address:\n" + "".join(self.log.lines[-20:]))
        self.addr = line.split("listening on ", 1)[1].strip()
        self.host, port = self.addr.rsplit(":", 1)
        self.port = int(port)
        self.url = f"ws://{self.addr}/v1/realtime"
        self.pid = self.proc.pid

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    async def wait_exit(self, timeout):
        """Seconds until the process exits (polled every ms), or None (then it is killed)."""
        t0 = time.monotonic()
        while self.proc.poll() is None:
            if time.monotonic() - t0 > timeout:
                self.proc.kill()
                self.proc.wait(10)
                return None
            await asyncio.sleep(0.001)
        return time.monotonic() - t0

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            pass
        self.log.thread.join(5)
        shutil.rmtree(self.tmp, ignore_errors=True)


class Worker:
    """A child process running one of this script's attackers (`hostile.py _KIND ...`).

    It prints `ready ...` once set up and one JSON line of statistics when it
    ends (on SIGTERM, or at its own --duration bound)."""

    def __init__(self, kind, *args):
        self.proc = subprocess.Popen([sys.executable, SCRIPT, f"_{kind}", *map(str, args)],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True)
        self.out = LineReader(self.proc.stdout)

    async def ready(self, timeout):
        line = await asyncio.to_thread(self.out.wait_for, "ready", timeout)
        if line is None:
            raise RuntimeError(f"attacker did not get ready within {timeout} s")
        return line.split()[1:]

    def stop(self):
        """Ends the worker (SIGTERM, then SIGKILL after 5 s); returns its statistics."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        self.out.thread.join(5)
        for line in reversed(self.out.lines):
            if line.startswith("{"):
                return json.loads(line)
        return {}


async def connect(url, timeout, **kw):
    return await websockets.connect(url, open_timeout=timeout, ping_interval=None, close_timeout=2,
                                    max_size=1 << 20, compression=None, **kw)


async def read_until(ws, event_type, timeout):
    async def loop():
        while True:
            event = json.loads(await ws.recv())
            if event["type"] == event_type:
                return event
    return await asyncio.wait_for(loop(), timeout)


async def open_sessions(url, n, batch=100):
    """n sessions, each read through its greeting, opened `batch` at a time."""
    async def one():
        ws = await connect(url, 30)
        await read_until(ws, "response.done", 30)
        return ws
    sessions = []
    for i in range(0, n, batch):
        sessions += await asyncio.gather(*(one() for _ in range(min(batch, n - i))))
    return sessions


async def close_all(sessions):
    async def one(ws):
        try:
            await asyncio.wait_for(ws.close(), 5)
        except Exception:
            pass
    await asyncio.gather(*(one(ws) for ws in sessions))


def pct(values, q):
    s = sorted(values)
    return s[min(len(s) - 1, int(round(q * (len(s) - 1))))]


# ---------------------------------------------------------------- scenarios

async def probe_greetings(url):
    """A probe every PROBE_EVERY s for PROBE_FOR s; each: TCP connect -> greeting, in ms."""
    async def probe(delay):
        await asyncio.sleep(delay)
        t0 = time.monotonic()
        ws = None
        try:
            ws = await connect(url, PROBE_TIMEOUT)
            await read_until(ws, "response.done", PROBE_TIMEOUT - (time.monotonic() - t0))
            return min(time.monotonic() - t0, PROBE_TIMEOUT) * 1000, None
        except Exception as e:
            return PROBE_TIMEOUT * 1000, type(e).__name__
        finally:
            if ws is not None:
                asyncio.ensure_future(close_all([ws]))
    n = int(round(PROBE_FOR / PROBE_EVERY))
    results = await asyncio.gather(*(probe(i * PROBE_EVERY) for i in range(n)))
    return [ms for ms, _ in results], [err for _, err in results if err]


async def scenario_flood(binary, extra):
    with Daemon(binary, extra) as d:
        base, base_errors = await probe_greetings(d.url)
        flood = Worker("flood", d.addr, 1, PROBE_FOR + PROBE_TIMEOUT + 10, "reconnect")
        try:
            await flood.ready(30)  # the probes start with the flood
            rss0 = rss_kib(d.pid)
            probes, errors = await probe_greetings(d.url)
            rss1 = rss_kib(d.pid)
        finally:
            stats = flood.stop()
        alive = d.proc.poll() is None
    return {"baseline_p50_ms": statistics.median(base), "baseline_max_ms": max(base),
            "flood_p50_ms": statistics.median(probes), "flood_max_ms": max(probes),
            "flood_failed_probes": len(errors), "flood_probe_errors": errors, "baseline_failed_probes": len(base_errors),
            "flood_rss_kib": [rss0, rss1], "flooder": stats, "daemon_alive": alive,
            "baseline_ms": base, "flood_ms": probes}


async def scenario_sigterm(binary, extra):
    with Daemon(binary, extra) as d:
        sessions = await open_sessions(d.url, SIGTERM_READERS)

        async def idle_read(ws):
            try:
                async for _ in ws:
                    pass
            except websockets.ConnectionClosed:
                pass
            return ws.close_code

        readers = [asyncio.ensure_future(idle_read(ws)) for ws in sessions]
        flood = Worker("flood", d.addr, SIGTERM_FLOODERS, 60)
        try:
            connected = int((await flood.ready(60))[0])
            await asyncio.sleep(1.0)  # flooding
            rss = rss_kib(d.pid)
            signalled_at = time.time()
            d.proc.send_signal(signal.SIGTERM)
            stop_s = await d.wait_exit(30)
            done, pending = await asyncio.wait(readers, timeout=10)
            for t in pending:
                t.cancel()
            codes = {}
            for t in readers:
                code = t.result() if t in done else "timeout"
                codes[str(code)] = codes.get(str(code), 0) + 1
        finally:
            stats = flood.stop()
            await close_all(sessions)
        await asyncio.to_thread(d.log.thread.join, 2)
        status = d.proc.returncode if stop_s is not None else "killed after 30 s"
        steps = [l.split("  ", 1)[-1].strip() for l in d.log.lines if "  shutdown" in l or "  received" in l]
        # When the daemon's loop got round to the signal (its log line), from the kill().
        noticed = [log_time(l) for l in d.log.lines if "  received SIG" in l]
        noticed_ms = (noticed[0] - signalled_at) * 1000 if noticed and noticed[0] else None
        tail = d.log.lines[-10:] if stop_s is None or stop_s > 2 else []
    return {"stop_ms": stop_s * 1000 if stop_s is not None else 30000.0, "status": status,
            "signal_noticed_ms": noticed_ms, "log_tail": tail,
            "readers_1012": codes.get("1012", 0), "reader_codes": codes, "flooders_connected": connected,
            "rss_kib_at_sigterm": rss, "flooder": stats, "shutdown_log": steps}


async def scenario_rss(binary, extra):
    with Daemon(binary, extra) as d:
        await asyncio.sleep(0.2)
        idle = rss_kib(d.pid)
        sessions = await open_sessions(d.url, RSS_SESSIONS)
        await asyncio.sleep(0.5)
        before = rss_kib(d.pid)
        head = b'{"type":"conversation.item.retrieve","item_id":"item_999999","padding":"'
        payload = (head + b"x" * (RSS_FRAME_BYTES - len(head) - 2) + b'"}').decode()
        assert len(payload) == RSS_FRAME_BYTES

        async def big(ws):
            try:
                await ws.send(payload)
                await read_until(ws, "error", 30)
                return "error reply"
            except websockets.ConnectionClosed as e:
                return f"closed {e.rcvd.code if e.rcvd else None}"
            except asyncio.TimeoutError:
                return "no reply in 30 s"

        outcomes = {}
        for i in range(0, RSS_SESSIONS, 100):
            for o in await asyncio.gather(*(big(ws) for ws in sessions[i:i + 100])):
                outcomes[o] = outcomes.get(o, 0) + 1
        await asyncio.sleep(1.0)
        samples = []
        for _ in range(3):
            samples.append(rss_kib(d.pid))
            await asyncio.sleep(0.5)
        await close_all(sessions)
    after = samples[-1]
    return {"idle_kib": idle, "sessions_kib": before, "after_frames_kib": after, "after_samples_kib": samples,
            "growth_per_session_kib": (after - before) / RSS_SESSIONS, "outcomes": outcomes}


async def scenario_slowloris(binary, extra):
    with Daemon(binary, extra) as d:
        t0 = time.monotonic()
        duration = LEGIT_START + LEGIT_ATTEMPTS + LEGIT_TIMEOUT + 5  # the worker's own bound
        loris = Worker("slowloris", d.addr, SLOWLORIS_CONNS, duration, ",".join(SLOWLORIS_SOURCES))

        async def attempt(i):
            await asyncio.sleep(max(0.0, t0 + LEGIT_START + i - time.monotonic()))
            ws = None
            try:
                async def greet():
                    nonlocal ws
                    ws = await connect(d.url, LEGIT_TIMEOUT, local_addr=(LEGIT_SOURCE, 0))
                    await read_until(ws, "response.done", LEGIT_TIMEOUT)
                await asyncio.wait_for(greet(), LEGIT_TIMEOUT)
                return "ok"
            except websockets.InvalidStatus as e:
                return f"HTTP {e.response.status_code}"
            except (asyncio.TimeoutError, TimeoutError):
                return "timeout"
            except Exception as e:
                return type(e).__name__
            finally:
                if ws is not None:
                    asyncio.ensure_future(close_all([ws]))

        try:
            results = await asyncio.gather(*(attempt(i) for i in range(LEGIT_ATTEMPTS)))
            rss = rss_kib(d.pid)
        finally:
            stats = loris.stop()
        elapsed = time.monotonic() - t0
        alive = d.proc.poll() is None
    outcomes = {}
    for r in results:
        outcomes[r] = outcomes.get(r, 0) + 1
    return {"legit_ok": outcomes.get("ok", 0), "legit_outcomes": outcomes, "legit_sequence": results,
            "attacker": stats, "rss_kib_at_end": rss, "elapsed_s": elapsed, "daemon_alive": alive}


SCENARIOS = {
    "flood": (scenario_flood, [
        ("baseline_p50_ms", "greeting, no flood, p50", "ms"),
        ("baseline_max_ms", "greeting, no flood, max", "ms"),
        ("flood_p50_ms", "greeting during flood, p50", "ms"),
        ("flood_max_ms", "greeting during flood, max", "ms"),
        ("flood_failed_probes", f"probes failed/over {PROBE_TIMEOUT:.0f} s (of {int(PROBE_FOR / PROBE_EVERY)})", ""),
    ]),
    "sigterm": (scenario_sigterm, [
        ("stop_ms", f"SIGTERM to exit, {SIGTERM_READERS}+{SIGTERM_FLOODERS} flooders (30 s = killed)", "ms"),
        ("signal_noticed_ms", "SIGTERM to the daemon's 'received SIGTERM' log line", "ms"),
        ("readers_1012", f"readers with close 1012 (of {SIGTERM_READERS})", ""),
    ]),
    "rss": (scenario_rss, [
        ("idle_kib", "idle RSS", "KiB"),
        ("sessions_kib", f"RSS, {RSS_SESSIONS} idle sessions", "KiB"),
        ("after_frames_kib", f"RSS, after one {RSS_FRAME_BYTES // 1024} KiB frame each", "KiB"),
        ("growth_per_session_kib", "growth per session", "KiB"),
    ]),
    "slowloris": (scenario_slowloris, [
        ("legit_ok", f"legit greetings under slowloris (of {LEGIT_ATTEMPTS})", ""),
    ]),
}


def summary(r, name):
    """One line per run and scenario, for the progress log."""
    if name == "flood":
        return (f"baseline p50 {r['baseline_p50_ms']:.0f} ms max {r['baseline_max_ms']:.0f} ms; "
                f"flood p50 {r['flood_p50_ms']:.0f} ms max {r['flood_max_ms']:.0f} ms, "
                f"{r['flood_failed_probes']} failed {r['flood_probe_errors']}; flooder {r['flooder']}")
    if name == "sigterm":
        noticed = "never" if r["signal_noticed_ms"] is None else f"{r['signal_noticed_ms']:.0f} ms"
        return (f"SIGTERM->exit {r['stop_ms']:.0f} ms (logged 'received SIGTERM' after {noticed}), "
                f"status {r['status']}, reader codes {r['reader_codes']}, "
                f"{r['flooders_connected']} flooders connected, flooder {r['flooder']}")
    if name == "rss":
        return (f"idle {r['idle_kib']} KiB, {RSS_SESSIONS} sessions {r['sessions_kib']} KiB, after frames "
                f"{r['after_samples_kib']} KiB ({r['growth_per_session_kib']:.1f} KiB/session), replies {r['outcomes']}")
    return (f"legit {r['legit_ok']}/{LEGIT_ATTEMPTS} ok {r['legit_outcomes']}; attacker {r['attacker']}; "
            f"{r['elapsed_s']:.1f} s")


# ---------------------------------------------------------------- attackers (child processes)

def masked_frame(payload):
    mask = os.urandom(4)
    n = len(payload)
    if n < 126:
        head = bytes([0x81, 0x80 | n])
    elif n < 65536:
        head = bytes([0x81, 0x80 | 126]) + n.to_bytes(2, "big")
    else:
        head = bytes([0x81, 0x80 | 127]) + n.to_bytes(8, "big")
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def ws_handshake(host, port, timeout=10):
    """A raw socket through the WebSocket handshake (the 101 head read, nothing after it)."""
    s = socket.create_connection((host, port), timeout=timeout)
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall((f"GET /v1/realtime HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
               f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = s.recv(1)  # byte by byte, so that no frame is consumed
        if not chunk:
            s.close()
            raise ConnectionError("closed during the handshake")
        head += chunk
    if not head.startswith(b"HTTP/1.1 101"):
        s.close()
        raise ConnectionError(head.split(b"\r\n", 1)[0].decode(errors="replace"))
    return s


def flood_worker(argv):
    """_flood ADDR CONNS DURATION [reconnect]: CONNS connections, one sending thread each."""
    addr, conns, duration = argv[0], int(argv[1]), float(argv[2])
    reconnect = "reconnect" in argv[3:]
    host, port = addr.rsplit(":", 1)
    port = int(port)
    # A plain flag: Event.set() from a signal handler can deadlock on the Event's own lock.
    stop = [False]
    signal.signal(signal.SIGTERM, lambda *_: stop.__setitem__(0, True))
    deadline = time.monotonic() + duration
    buf = memoryview(masked_frame(CANCEL) * 2048)
    frame_len = len(buf) // 2048
    stats = {"connections": 0, "handshake_failures": 0, "dropped": 0, "sent_bytes": [0] * conns,
             "last_send": [0.0] * conns}

    def connect_one():
        try:
            s = ws_handshake(host, port)
        except OSError:
            stats["handshake_failures"] += 1
            return None
        s.settimeout(0.2)
        stats["connections"] += 1
        return s

    socks = [connect_one() for _ in range(conns)]
    print("ready", sum(s is not None for s in socks), flush=True)

    def pump(i, s):
        off = 0
        while not stop[0] and time.monotonic() < deadline:
            if s is None:
                if not reconnect:
                    return
                s = connect_one()
                off = 0
                if s is None:
                    time.sleep(0.1)
                continue
            try:
                n = s.send(buf[off:])
            except socket.timeout:
                continue
            except OSError:
                stats["dropped"] += 1
                s.close()
                s = None
                continue
            stats["sent_bytes"][i] += n
            stats["last_send"][i] = time.monotonic()
            off = (off + n) % len(buf)

    threads = [threading.Thread(target=pump, args=(i, s), daemon=True) for i, s in enumerate(socks)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    while not stop[0] and time.monotonic() < deadline:
        time.sleep(0.1)
    stop[0] = True
    for t in threads:
        t.join(1)
    sent = sum(stats.pop("sent_bytes"))
    stats["frames_sent"] = sent // frame_len
    # How long the flood got frames into the socket (until the daemon stopped reading, or the end).
    stats["sending_s"] = round(max(max(stats.pop("last_send")) - t0, 0.0), 2)
    print(json.dumps(stats), flush=True)
    os._exit(0)


def slowloris_worker(argv):
    """_slowloris ADDR CONNS DURATION SOURCES: CONNS slots, each holding one slow request head."""
    addr, conns, duration, sources = argv[0], int(argv[1]), float(argv[2]), argv[3].split(",")
    host, port = addr.rsplit(":", 1)
    trickle = b"X-a: b\r\n"  # never a blank line, so the head never ends
    stats = {"connects": 0, "connect_failures": 0, "dropped": 0, "answered": 0, "open": 0, "max_open": 0}

    async def slot(i, stop):
        src = sources[i % len(sources)]
        while not stop.is_set():
            started = time.monotonic()
            try:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection(host, int(port), local_addr=(src, 0)), 5)
            except (OSError, asyncio.TimeoutError):
                stats["connect_failures"] += 1
            else:
                stats["connects"] += 1
                stats["open"] += 1
                stats["max_open"] = max(stats["max_open"], stats["open"])
                try:
                    writer.write(b"GET /v1/realtime HTTP/1.1\r\n")
                    k = 0
                    while not stop.is_set():
                        try:
                            data = await asyncio.wait_for(reader.read(4096), 1.0)
                        except asyncio.TimeoutError:
                            writer.write(trickle[k % len(trickle):k % len(trickle) + 1])
                            k += 1
                            await writer.drain()
                            continue
                        if not data:
                            break
                        stats["answered"] += 1  # an HTTP answer (503, 408, ...): it will close
                except OSError:
                    pass
                stats["open"] -= 1
                if not stop.is_set():
                    stats["dropped"] += 1
                writer.transport.abort()
            # Reconnect when dropped, at most once a second per slot.
            await asyncio.sleep(max(0.0, started + 1.0 - time.monotonic()))

    async def run():
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        loop.call_later(duration, stop.set)
        tasks = [asyncio.ensure_future(slot(i, stop)) for i in range(conns)]
        print("ready", conns, flush=True)
        await stop.wait()
        stats["open_at_end"] = stats["open"]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run(run())
    print(json.dumps(stats), flush=True)


# ---------------------------------------------------------------- main

def median_of(runs, key):
    values = [r[key] for r in runs if r.get(key) is not None]
    return statistics.median(values) if values else None


def fmt(value, unit):
    if value is None:
        return "-"
    text = f"{value:.1f}" if isinstance(value, float) and abs(value) < 1000 and value != int(value) else f"{value:.0f}"
    return f"{text} {unit}".strip()


def main():
    if len(sys.argv) > 1 and sys.argv[1] in ("_flood", "_slowloris"):
        {"_flood": flood_worker, "_slowloris": slowloris_worker}[sys.argv[1]](sys.argv[2:])
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--before", required=True, help="the binary before the change")
    ap.add_argument("--after", required=True, help="the binary after the change")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--scenario", choices=[*SCENARIOS, "all"], default="all")
    ap.add_argument("--before-config-extra", default="", help="TOML appended to the before binary's config")
    ap.add_argument("--after-config-extra", default="", help="TOML appended to the after binary's config")
    ap.add_argument("--json", help="write every run's results to this file")
    args = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # inherited by the daemons and attackers

    binaries = {"before": (args.before, args.before_config_extra), "after": (args.after, args.after_config_extra)}
    names = list(SCENARIOS) if args.scenario == "all" else [args.scenario]
    results = {s: {"before": [], "after": []} for s in names}
    started = time.monotonic()
    for run in range(args.runs):
        order = ["before", "after"] if run % 2 == 0 else ["after", "before"]
        for name in names:
            for side in order:
                t0 = time.monotonic()
                try:
                    r = asyncio.run(SCENARIOS[name][0](*binaries[side]))
                    line = summary(r, name)
                except Exception as e:  # e.g. the daemon refused the benchmark's own sessions
                    r = {"error": f"{type(e).__name__}: {e}"}
                    line = f"FAILED: {r['error']}"
                r["wall_s"] = time.monotonic() - t0
                results[name][side].append(r)
                print(f"run {run + 1} {name:9} {side:6} ({r['wall_s']:.0f} s): {line}", flush=True)
    total = time.monotonic() - started

    if "sigterm" in names:
        for side in ("before", "after"):
            print(f"\n{side}'s shutdown log, last sigterm run:")
            for line in results["sigterm"][side][-1].get("shutdown_log", []):
                print("   ", line)

    print(f"\nmedians over {args.runs} run(s), each run's value in brackets; total {total:.0f} s")
    print(f"before: {args.before} {args.before_config_extra!r}")
    print(f"after:  {args.after} {args.after_config_extra!r}")
    print("| scenario | metric | before | after | ratio (after/before) |")
    print("|---|---|---|---|---|")
    for name in names:
        for key, label, unit in SCENARIOS[name][1]:
            b, a = (median_of(results[name][side], key) for side in ("before", "after"))
            ratio = f"{a / b:.2f}" if a is not None and b else "-"
            cells = []
            for side, m in (("before", b), ("after", a)):
                each = ", ".join(fmt(r.get(key), "").strip() or "-" for r in results[name][side])
                cells.append(f"{fmt(m, unit)} [{each}]" if args.runs > 1 else fmt(m, unit))
            print(f"| {name} | {label} | {cells[0]} | {cells[1]} | {ratio} |")
        if name == "sigterm":
            statuses = {side: [r.get("status", "failed") for r in results[name][side]] for side in ("before", "after")}
            print(f"| sigterm | exit status | {statuses['before']} | {statuses['after']} | |")

    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "total_s": total, "results": results}, f, indent=1, default=str)


if __name__ == "__main__":
    main()
