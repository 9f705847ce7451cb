#!/usr/bin/env python3
"""Mock of the OpenAI Realtime API (GA, WebSocket), an upstream for interviewd's relay tests.

Usage:
  mock_realtime.py --port 0 --control-dir DIR [--tls-cert CERT --tls-key KEY]
                   [--scenario SPEC] [--expect-key KEY] [--turns N] [--audio-ms MS]
                   [--pace F] [--late-transcript] [--end-tool NAME] [--seed S]
                   [--ping-interval S] [--log-audio] [--verbose]

Listens on 127.0.0.1 only and prints one line, `listening on 127.0.0.1:PORT`, when
ready (also written to DIR/listening). Serves `ws://` (or `wss://` with
--tls-cert/--tls-key) at /v1/realtime?model=M, like wss://api.openai.com/v1/realtime.
SIGTERM/SIGINT: drops every connection and exits 0 at once.

What it does, the control-dir files and the scenarios are described in
mock_realtime.md next to this file. In short: DIR/connection-N.jsonl records each
connection (request headers, every client event with its validation result,
every server event), DIR/connection-N.audio.json the sha256 of the audio received
and sent, DIR/connections the number of connections so far, and DIR/next-scenario
/ DIR/scenario choose the behaviour of the next connections.

Client events are validated in pydantic strict mode against the SDK's
`openai.types.realtime.RealtimeClientEvent` members (unknown keys rejected, as
the real API does); server events are checked against `RealtimeServerEvent`
(realtime_schema.validate_event) before they are sent, and a failure is logged
as a `mock_bug` record.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import copy
import hashlib
import http
import json
import logging
import math
import os
import re
import signal
import ssl
import string
import sys
import time
import traceback
from array import array
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple, get_args
from urllib.parse import parse_qs, urlsplit

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

try:
    from pydantic import BaseModel, TypeAdapter, ValidationError
    from openai.types.realtime import RealtimeClientEvent
    from websockets.asyncio.server import ServerConnection, serve
    from websockets.exceptions import ConnectionClosed
    import realtime_schema
except ImportError as e:  # pragma: no cover
    sys.stderr.write(f"mock_realtime: {e}; run it with the venv of tests/peer/setup.sh\n")
    sys.exit(2)

# The real API also sends id/object/expires_at in session.updated.
realtime_schema.DOCUMENTED_EXTRAS.update(
    {("session.updated", "session.id"), ("session.updated", "session.object"),
     ("session.updated", "session.expires_at")}
)

REALTIME_PATH = "/v1/realtime"
MAX_MESSAGE = 16 * 1024 * 1024          # the real API accepts up to 15 MiB per event
MAX_ITEMS = 4096                        # conversation items kept per connection
MAX_RECORDS = 4096                      # turns / responses kept in connection-N.audio.json
MAX_RAW_LOGGED = 8192                   # bytes of an unparseable frame kept in the log
DEFAULT_INSTRUCTIONS = (
    "You are a helpful, witty, and friendly AI. Act like a human, but remember that you "
    "aren't a human and that you can't do human things in the real world. Your voice and "
    "personality should be warm and engaging, with a lively and playful tone."
)
GENERIC_QUESTIONS = [
    "Tell me about yourself and your background.",
    "Describe a challenging project you worked on, and your part in it.",
    "How do you approach debugging a problem you have never seen before?",
    "Tell me about a time you disagreed with a colleague, and how you resolved it.",
    "What are you looking for in your next role?",
]
CLOSING = "Thank you for your answers. That concludes the interview. Goodbye."
OVER = "The interview is over. Thank you again for your time."
TONE_FREQS = (330, 440, 550, 660, 770)
TONE_AMPLITUDE = 6000
AUDIO_CHUNK_MS = 50
TEXT_DELTA_S = 0.04
ARGS_DELTA_S = 0.02

log = logging.getLogger("mock_realtime")


# --------------------------------------------------------------------------- ids

_B62 = string.digits + string.ascii_letters


class Ids:
    """Realistic-looking ids (`event_` + 21 base62 chars), deterministic per seed."""

    def __init__(self, seed: str):
        self.seed, self.n = seed, 0

    def new(self, prefix: str, length: int = 21) -> str:
        self.n += 1
        num = int.from_bytes(hashlib.sha256(f"{self.seed}/{self.n}".encode()).digest(), "big")
        out = []
        for _ in range(length):
            num, r = divmod(num, 62)
            out.append(_B62[r])
        return f"{prefix}_{''.join(out)}"


# ------------------------------------------------------------------------- audio

def _ulaw_decode(u: int) -> int:
    u = ~u & 0xFF
    sign, exponent, mantissa = u & 0x80, (u >> 4) & 7, u & 0x0F
    sample = (((mantissa << 3) + 0x84) << exponent) - 0x84
    return -sample if sign else sample


def _ulaw_encode(s: int) -> int:
    sign = 0x80 if s < 0 else 0
    s = min(abs(s), 32635) + 0x84
    exponent, mask = 7, 0x4000
    while exponent > 0 and not s & mask:
        exponent, mask = exponent - 1, mask >> 1
    return ~(sign | (exponent << 4) | ((s >> (exponent + 3)) & 0x0F)) & 0xFF


def _alaw_decode(a: int) -> int:
    a ^= 0x55
    sign, exponent, mantissa = a & 0x80, (a >> 4) & 7, a & 0x0F
    sample = (mantissa << 4) + 8 if exponent == 0 else ((mantissa << 4) + 0x108) << (exponent - 1)
    return sample if sign else -sample


def _alaw_encode(s: int) -> int:
    sign = 0x80 if s >= 0 else 0
    s = min(s if s >= 0 else -s - 1, 32767)
    if s >= 256:
        exponent = s.bit_length() - 8
        mantissa = (s >> (exponent + 3)) & 0x0F
    else:
        exponent, mantissa = 0, s >> 4
    return (sign | (exponent << 4) | mantissa) ^ 0x55


_ULAW = [_ulaw_decode(i) for i in range(256)]
_ALAW = [_alaw_decode(i) for i in range(256)]


@dataclass(frozen=True)
class AudioFormat:
    type: str = "audio/pcm"

    @property
    def rate(self) -> int:
        return 24000 if self.type == "audio/pcm" else 8000

    @property
    def sample_bytes(self) -> int:
        return 2 if self.type == "audio/pcm" else 1

    def bytes_for_ms(self, ms: int) -> int:
        return self.rate * ms // 1000 * self.sample_bytes

    def ms_for_bytes(self, n: int) -> float:
        return n / self.sample_bytes / self.rate * 1000

    def samples(self, data: bytes) -> List[int]:
        if self.type == "audio/pcm":
            a = array("h")
            a.frombytes(data[: len(data) // 2 * 2])
            if sys.byteorder == "big":
                a.byteswap()
            return a.tolist()
        table = _ULAW if self.type == "audio/pcmu" else _ALAW
        return [table[b] for b in data]

    def encode(self, samples: List[int]) -> bytes:
        if self.type == "audio/pcm":
            a = array("h", samples)
            if sys.byteorder == "big":
                a.byteswap()
            return a.tobytes()
        enc = _ulaw_encode if self.type == "audio/pcmu" else _alaw_encode
        return bytes(enc(s) for s in samples)


def fmt_of(fmt: Optional[dict]) -> AudioFormat:
    t = (fmt or {}).get("type") or "audio/pcm"
    return AudioFormat(t if t in ("audio/pcm", "audio/pcmu", "audio/pcma") else "audio/pcm")


def tone_audio(seq: int, start_ms: int, ms: int, fmt: str = "audio/pcm") -> bytes:
    """The audio the mock sends for its response number `seq` (1-based, per connection):
    a sine tone of TONE_FREQS[(seq-1) % 5] Hz, amplitude 6000, starting at phase 0 at
    the start of the response. `start_ms`/`ms` select a slice. Deterministic, so
    sha256(tone_audio(seq, 0, ms)) is the hash of a response of `ms` ms sent whole."""
    f = AudioFormat(fmt)
    freq = TONE_FREQS[(seq - 1) % len(TONE_FREQS)]
    first = f.rate * start_ms // 1000
    n = f.rate * (start_ms + ms) // 1000 - first
    w = 2 * math.pi * freq / f.rate
    return f.encode([int(round(TONE_AMPLITUDE * math.sin(w * (first + i)))) for i in range(n)])


def rms(samples: List[int]) -> float:
    if not samples:
        return 0.0
    return math.sqrt(sum(s * s for s in samples) / len(samples)) / 32768.0


# --------------------------------------------------------------------- questions

_NUMBERED = re.compile(
    r"^\s*(?:[-*\u2022]\s*)?(?P<b>\*\*|__)?\s*(?:(?:question|q)\s*#?\s*)?(\d{1,3})\s*(?:[.):\]]|\s-)\s*"
    r"(?(b)(?:\*\*|__)?)\s*(.*?)\s*$",
    re.I,
)
_BULLET = re.compile(r"^\s*[-*\u2022]\s+(.*?)\s*$")


def _clean(q: str) -> str:
    q = q.strip()
    if len(q) > 4 and q[:2] == q[-2:] and q[:2] in ("**", "__") and q[2:-2].find(q[:2]) < 0:
        q = q[2:-2].strip()
    if len(q) >= 2 and q[0] == q[-1] and q[0] in "\"'\u201c":
        q = q[1:-1].strip()
    if len(q) >= 2 and q[0] == "\u201c" and q[-1] == "\u201d":
        q = q[1:-1].strip()
    return q


def parse_questions(text: Optional[str]) -> List[str]:
    """The interview questions listed in `text` (session instructions), in order; [] if none.

    Recognises numbered lists (`1. ...`, `1) ...`, `Question 1: ...`, `Q1: ...`,
    `**1.** ...`, with indented continuation lines), a bullet list under a line that
    mentions questions, and a JSON array under a `"questions"` key. When several
    numbered lists are present it prefers the one after a line mentioning
    questions, then the one whose items end in `?`, then the longest.
    """
    if not text or not isinstance(text, str):
        return []
    m = re.search(r'"questions"\s*:\s*(\[.*?\])', text, re.S)
    if m:
        try:
            arr = json.loads(m.group(1))
            qs = [_clean(q) for q in arr if isinstance(q, str) and q.strip()]
            if not qs:
                qs = [_clean(q.get("text", "")) for q in arr if isinstance(q, dict) and isinstance(q.get("text"), str)]
            if qs:
                return qs
        except ValueError:
            pass
    lines = text.splitlines()
    runs: List[Tuple[int, List[str]]] = []   # (line index of first item, items)
    cur: Optional[List[str]] = None
    start = 0
    for i, line in enumerate(lines):
        m = _NUMBERED.match(line)
        if m and m.group(3):
            num = int(m.group(2))
            if cur is not None and num == len(cur) + 1:
                cur.append(m.group(3))
                continue
            if num == 1:
                if cur:
                    runs.append((start, cur))
                cur, start = [m.group(3)], i
                continue
        if cur is None:
            continue
        if not line.strip():
            continue
        if line[:1] in (" ", "\t") and not _BULLET.match(line):
            cur[-1] += " " + line.strip()
            continue
        runs.append((start, cur))
        cur = None
    if cur:
        runs.append((start, cur))

    def mentions_question(idx: int) -> bool:
        return any("question" in lines[j].lower() for j in range(max(0, idx - 3), idx))

    best, best_score = None, -1.0
    for idx, items in runs:
        header = mentions_question(idx)
        if len(items) < 2 and not header:
            continue
        asks = sum(1 for q in items if q.rstrip().endswith("?")) / len(items)
        score = (100 if header else 0) + 10 * asks + len(items)
        if score > best_score:
            best, best_score = items, score
    if best:
        return [_clean(q) for q in best if _clean(q)]
    # A bullet list right under a line that mentions questions.
    for i, line in enumerate(lines):
        if "question" not in line.lower() or _BULLET.match(line):
            continue
        items: List[str] = []
        for nxt in lines[i + 1:]:
            b = _BULLET.match(nxt)
            if b and b.group(1):
                items.append(b.group(1))
            elif nxt.strip() and items:
                break
            elif nxt.strip():
                break
        if items:
            return [_clean(q) for q in items if _clean(q)]
    return []


# --------------------------------------------------------------------- scenarios

@dataclass
class Scenario:
    spec: str = "normal"
    refuse_status: Optional[int] = None
    close_after_events: Optional[int] = None
    close_after_responses: Optional[int] = None
    close_mid_response: Optional[int] = None
    silent_after: Optional[int] = None
    error_fatal: Optional[str] = None
    fail_response: Optional[int] = None
    pace: Optional[float] = None
    turns: Optional[int] = None
    audio_ms: Optional[int] = None
    late_transcript: Optional[bool] = None


def parse_scenario(spec: str) -> Scenario:
    """`NAME[:ARG] ... [key=value] ...`, e.g. `normal`, `slow:3 turns=2`, `close_after:4`."""
    sc = Scenario(spec=" ".join(spec.split()) or "normal")

    def count(name: str, arg: Optional[str]) -> int:
        if arg is None or not arg.isdigit():
            raise ValueError(f"{name} needs a count, e.g. {name}:2")
        return int(arg)

    for tok in spec.replace(",", " ").split():
        if "=" in tok:
            key, _, val = tok.partition("=")
            try:
                if key == "turns":
                    sc.turns = int(val)
                elif key == "audio_ms":
                    sc.audio_ms = int(val)
                elif key == "pace":
                    sc.pace = float(val)
                elif key == "late_transcript":
                    sc.late_transcript = val.lower() in ("1", "true", "yes", "on")
                else:
                    raise ValueError(f"unknown scenario option {key!r}")
            except ValueError as e:
                raise ValueError(f"bad scenario option {tok!r}: {e}") from None
            if (sc.turns is not None and sc.turns < 0) or (sc.audio_ms is not None and sc.audio_ms < 0) \
                    or (sc.pace is not None and sc.pace < 0):
                raise ValueError(f"bad scenario option {tok!r}: must not be negative")
            continue
        name, _, arg = tok.partition(":")
        arg = arg or None
        if name == "normal":
            pass
        elif name == "refuse_connect":
            sc.refuse_status = int(arg) if arg and arg.isdigit() else 503
            if not 400 <= sc.refuse_status <= 599:
                raise ValueError("refuse_connect status must be 4xx or 5xx")
        elif name == "close_after":
            sc.close_after_events = count(name, arg)
        elif name == "close_after_responses":
            sc.close_after_responses = count(name, arg)
        elif name == "close_mid_response":
            sc.close_mid_response = count(name, arg)
        elif name == "silent_after":
            sc.silent_after = count(name, arg)
        elif name == "error_fatal":
            sc.error_fatal = arg or "invalid_api_key"
        elif name == "fail_response":
            sc.fail_response = count(name, arg)
        elif name == "slow":
            sc.pace = float(arg) if arg else 5.0
        else:
            raise ValueError(f"unknown scenario {name!r}")
    return sc


# -------------------------------------------------------------- client validation

_CLIENT_MEMBERS = get_args(get_args(RealtimeClientEvent)[0])
CLIENT_EVENT_CLASSES: Dict[str, type] = {
    get_args(m.model_fields["type"].annotation)[0]: m for m in _CLIENT_MEMBERS
}
_CLIENT_ADAPTERS: Dict[str, TypeAdapter] = {t: TypeAdapter(c) for t, c in CLIENT_EVENT_CLASSES.items()}


def _json_type(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "a boolean"
    if isinstance(v, int):
        return "an integer"
    if isinstance(v, float):
        return "a decimal"
    if isinstance(v, str):
        return "a string"
    if isinstance(v, list):
        return "an array"
    return "an object"


def _is_branch_label(seg: Any) -> bool:
    return isinstance(seg, str) and (
        seg[:1].isupper() or "[" in seg or seg in ("str", "int", "float", "bool", "none", "dict", "list")
        or seg.startswith(("function-", "tagged-union", "nullable", "json-or-python"))
    )


def _param(loc: tuple) -> str:
    out = ""
    for seg in loc:
        if _is_branch_label(seg):
            continue
        if isinstance(seg, int):
            out += f"[{seg}]"
        else:
            out += ("." if out else "") + str(seg)
    return out


def _extra_paths(obj: Any, path: str) -> List[str]:
    out: List[str] = []
    if isinstance(obj, BaseModel):
        for key in obj.model_extra or {}:
            out.append(f"{path}.{key}" if path else key)
        for name in type(obj).model_fields:
            out += _extra_paths(getattr(obj, name), f"{path}.{name}" if path else name)
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            out += _extra_paths(v, f"{path}[{i}]")
    return out


def validate_client_event(event: Any) -> Optional[Dict[str, Any]]:
    """None if valid, else {"code", "message", "param"} the way the real API words it."""
    if not isinstance(event, dict):
        return {"code": "invalid_type", "param": None,
                "message": f"Invalid type for event: expected an object, but got {_json_type(event)} instead."}
    etype = event.get("type")
    if "type" not in event:
        return {"code": "missing_required_parameter", "param": "type",
                "message": "Missing required parameter: 'type'."}
    if not isinstance(etype, str):
        return {"code": "invalid_type", "param": "type",
                "message": f"Invalid type for 'type': expected a string, but got {_json_type(etype)} instead."}
    if etype not in CLIENT_EVENT_CLASSES:
        supported = ", ".join(f"'{t}'" for t in CLIENT_EVENT_CLASSES)
        return {"code": "invalid_value", "param": "type",
                "message": f"Invalid value: '{etype}'. Supported values are: {supported}."}
    try:
        model = _CLIENT_ADAPTERS[etype].validate_python(event, strict=True)
    except ValidationError as e:
        errs = e.errors()
        # Drop union members whose `type`/`role` literal did not match (not this member).
        dead = {tuple(x["loc"][:-1]) for x in errs
                if x["type"] == "literal_error" and len(x["loc"]) >= 2 and x["loc"][-1] in ("type", "role")
                and _is_branch_label(x["loc"][-2])}
        kept = [x for x in errs if not any(tuple(x["loc"][: len(d)]) == d for d in dead)] or errs
        kept.sort(key=lambda x: x["type"] != "missing")
        x = kept[0]
        param = _param(tuple(x["loc"])) or None
        kind, value = x["type"], x.get("input")
        if kind == "missing":
            return {"code": "missing_required_parameter", "param": param,
                    "message": f"Missing required parameter: '{param}'."}
        if kind.endswith("_type") or kind in ("is_instance_of", "model_attributes_type"):
            want = x["msg"].replace("Input should be ", "").replace("a valid ", "a ")
            return {"code": "invalid_type", "param": param,
                    "message": f"Invalid type for '{param}': expected {want}, but got {_json_type(value)} instead."}
        shown = value if isinstance(value, (str, int, float)) and not isinstance(value, bool) else json.dumps(value)
        return {"code": "invalid_value", "param": param,
                "message": f"Invalid value: '{shown}'. {x['msg']}."}
    extra = _extra_paths(model, "")
    if extra:
        return {"code": "unknown_parameter", "param": extra[0],
                "message": f"Unknown parameter: '{extra[0]}'."}
    return None


# ------------------------------------------------------------------ control dir

def write_atomic(path: str, data: str) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(data)
    os.replace(tmp, path)


class Control:
    """The control directory: connection counter, scenario files, per-connection logs."""

    def __init__(self, path: str, default_scenario: str):
        self.path = path
        self.default_scenario = default_scenario
        os.makedirs(path, exist_ok=True)
        try:
            with open(self.file("connections")) as f:
                self.count = int(f.read().strip() or 0)
        except (OSError, ValueError):
            self.count = 0

    def file(self, name: str) -> str:
        return os.path.join(self.path, name)

    def next_connection(self) -> int:
        self.count += 1
        write_atomic(self.file("connections"), f"{self.count}\n")
        return self.count

    def scenario_for_next(self) -> Tuple[str, str]:
        """(spec, source). next-scenario is a queue: one line per connection, consumed."""
        nxt = self.file("next-scenario")
        try:
            with open(nxt) as f:
                lines = f.read().splitlines()
        except OSError:
            lines = []
        for i, line in enumerate(lines):
            if line.strip() and not line.lstrip().startswith("#"):
                rest = [l for l in lines[i + 1:] if l.strip() and not l.lstrip().startswith("#")]
                if rest:
                    write_atomic(nxt, "\n".join(rest) + "\n")
                else:
                    try:
                        os.unlink(nxt)
                    except OSError:
                        pass
                return line.strip(), "next-scenario"
        try:
            with open(self.file("scenario")) as f:
                spec = " ".join(l.strip() for l in f if l.strip() and not l.lstrip().startswith("#"))
            if spec:
                return spec, "scenario"
        except OSError:
            pass
        return self.default_scenario, "--scenario"


# -------------------------------------------------------------------- settings

@dataclass
class Settings:
    expect_key: Optional[str]
    turns: Optional[int]
    audio_ms: int
    pace: float
    late_transcript: bool
    end_tool: str
    seed: str
    log_audio: bool


def _default_turn_detection(td: Optional[dict]) -> Optional[dict]:
    if td is None:
        return None
    td = dict(td)
    if td.get("type") == "semantic_vad":
        out = {"type": "semantic_vad", "eagerness": "auto", "create_response": True, "interrupt_response": True}
    else:
        out = {"type": "server_vad", "threshold": 0.5, "prefix_padding_ms": 300, "silence_duration_ms": 500,
               "idle_timeout_ms": None, "create_response": True, "interrupt_response": True}
    out.update({k: v for k, v in td.items() if v is not None or k == "idle_timeout_ms"})
    return out


def _default_format(fmt: Optional[dict]) -> dict:
    if not fmt or (fmt.get("type") or "audio/pcm") == "audio/pcm":
        return {"type": "audio/pcm", "rate": 24000}
    return {"type": fmt["type"]}


@dataclass
class Resp:
    seq: int
    id: str
    modalities: List[str]
    in_conversation: bool
    metadata: Optional[dict]
    max_output_tokens: Any
    tools: List[dict]
    tool_choice: Any
    voice: Any
    out_fmt: dict
    instructions: Optional[str]
    cancel_event: asyncio.Event
    cancel_reason: Optional[str] = None
    clear_requested: bool = False
    item_id: Optional[str] = None
    audio_bytes: int = 0
    audio_ms: int = 0
    audio_hash: Any = None
    task: Optional[asyncio.Task] = None


class _SilentSink(asyncio.Protocol):
    """Replaces the websocket protocol on a silenced transport: reads and drops
    everything (so no pong is ever sent) and passes the end of the TCP
    connection on to the websocket connection so that its handler ends."""

    def __init__(self, ws_protocol: asyncio.Protocol):
        self.ws_protocol = ws_protocol

    def data_received(self, data: bytes) -> None:
        pass

    def eof_received(self) -> None:
        return None

    def connection_lost(self, exc: Optional[Exception]) -> None:
        self.ws_protocol.connection_lost(exc)


# ------------------------------------------------------------------- connection

class MockConnection:
    def __init__(self, server: "MockServer", n: int, scenario: Scenario, model: str):
        self.server, self.n, self.sc, self.model = server, n, scenario, model
        st = server.settings
        self.ids = Ids(f"{st.seed}/{n}")
        self.t0 = time.monotonic()
        self.log_path = server.control.file(f"connection-{n}.jsonl")
        self.audio_path = server.control.file(f"connection-{n}.audio.json")
        self.ws: Optional[ServerConnection] = None
        self.send_lock = asyncio.Lock()
        self.gone = False          # transport closed or client left
        self.silent = False
        self.client_events = 0
        self.responses_started = 0
        self.responses_done = 0
        self.pace = sc_or(scenario.pace, st.pace)
        self.audio_ms = sc_or(scenario.audio_ms, st.audio_ms)
        self.turns_override = sc_or(scenario.turns, st.turns)
        self.late_transcript = sc_or(scenario.late_transcript, st.late_transcript)
        now = int(time.time())
        self.session: Dict[str, Any] = {
            "type": "realtime", "object": "realtime.session", "id": self.ids.new("sess"),
            "model": model, "output_modalities": ["audio"], "instructions": DEFAULT_INSTRUCTIONS,
            "tools": [], "tool_choice": "auto", "max_output_tokens": "inf", "tracing": None,
            "truncation": "auto", "prompt": None, "expires_at": now + 3600,
            "audio": {
                "input": {"format": {"type": "audio/pcm", "rate": 24000}, "transcription": None,
                          "noise_reduction": None,
                          "turn_detection": _default_turn_detection({"type": "server_vad"})},
                "output": {"format": {"type": "audio/pcm", "rate": 24000}, "voice": "marin", "speed": 1.0},
            },
            "include": None,
        }
        self.conversation_id = self.ids.new("conv")
        self.items: List[dict] = []
        self.item_by_id: Dict[str, dict] = {}
        self.item_audio: Dict[str, Tuple[int, int, str]] = {}   # assistant item -> (seq, ms, format)
        self.active: Optional[Resp] = None
        self.last_audio_response: Optional[str] = None
        self.audio_output_seen = False
        self.end_call_ids: set = set()
        self.closing_said = False
        self.pending_transcripts: List[dict] = []
        # input audio
        self.in_fmt = AudioFormat()
        self.pending = bytearray()
        self.timeline_ms = 0
        self.in_total_bytes = 0
        self.in_total_hash = hashlib.sha256()
        self._reset_buffer()
        self.in_speech = False
        self.speech_item: Optional[str] = None
        self.speech_start = 0
        self.last_voiced_end = 0
        self.silence_ms = 0
        self.audio_answers = 0
        self.turn_records: List[dict] = []
        self.response_records: List[dict] = []

    # ---- logging

    def record(self, kind: str, **fields: Any) -> None:
        rec = {"t": round(time.monotonic() - self.t0, 4), "kind": kind, **fields}
        try:
            with open(self.log_path, "a") as f:
                f.write(json.dumps(rec, separators=(",", ":")) + "\n")
        except OSError as e:  # pragma: no cover
            log.error("connection %d: cannot write %s: %s", self.n, self.log_path, e)

    def write_audio_summary(self) -> None:
        buf_hash = self.buf_hash.copy()
        summary = {
            "connection": self.n,
            "input": {"bytes": self.in_total_bytes, "sha256": self.in_total_hash.hexdigest(),
                      "ms": round(self.in_fmt.ms_for_bytes(self.in_total_bytes), 3), "format": self.in_fmt.type},
            "uncommitted": {"bytes": self.buf_bytes + len(self.pending), "sha256_of_whole_frames": buf_hash.hexdigest()},
            "turns": self.turn_records,
            "responses": self.response_records,
        }
        try:
            write_atomic(self.audio_path, json.dumps(summary, indent=1) + "\n")
        except OSError as e:  # pragma: no cover
            log.error("connection %d: cannot write %s: %s", self.n, self.audio_path, e)

    def _elide(self, event: dict) -> dict:
        if self.server.settings.log_audio:
            return event
        ev = dict(event)
        if ev.get("type") == "response.output_audio.delta" and isinstance(ev.get("delta"), str):
            ev["delta"] = f"<{len(ev['delta'])} chars of base64 audio>"
        if ev.get("type") == "conversation.item.retrieved":
            ev["item"] = copy.deepcopy(ev["item"])
            for part in ev["item"].get("content") or []:
                if isinstance(part, dict) and isinstance(part.get("audio"), str):
                    part["audio"] = f"<{len(part['audio'])} chars of base64 audio>"
        return ev

    # ---- sending

    async def emit(self, etype: str, **fields: Any) -> Optional[dict]:
        if self.gone or self.silent or self.ws is None:
            return None
        event = {"type": etype, "event_id": self.ids.new("event"), **fields}
        err = realtime_schema.validate_event(json.loads(json.dumps(event)))
        if err:
            self.record("mock_bug", type=etype, error=err)
            log.error("connection %d: mock sent an invalid %s: %s", self.n, etype, err)
        text = json.dumps(event, separators=(",", ":"))
        async with self.send_lock:
            if self.gone or self.silent:
                return None
            # Logged before it is sent, so that a client that has seen it finds it in the log.
            self.record("server", type=etype, event=self._elide(event))
            try:
                await self.ws.send(text)
            except ConnectionClosed:
                self.gone = True
                self.record("send_failed", type=etype, event_id=event["event_id"])
                return None
        return event

    async def error(self, code: Optional[str], message: str, param: Optional[str] = None,
                    event_id: Optional[str] = None, etype: str = "invalid_request_error") -> None:
        await self.emit("error", error={"type": etype, "code": code, "message": message,
                                        "param": param, "event_id": event_id})

    def close_transport(self, why: str) -> None:
        """Close the TCP connection without a WebSocket close frame (queued data is flushed)."""
        if self.gone:
            return
        self.gone = True
        self.record("scenario", action="close", reason=why)
        if self.ws is not None:
            self.ws.transport.close()

    def go_silent(self, why: str) -> None:
        if self.silent or self.gone or self.ws is None:
            return
        self.silent = True
        self.record("scenario", action="silent", reason=why)
        transport = self.ws.transport
        transport.set_protocol(_SilentSink(self.ws))
        transport.resume_reading()
        if self.active is not None:
            self.cancel(self.active, "client_cancelled")

    def abort(self) -> None:
        self.gone = True
        if self.ws is not None:
            self.ws.transport.abort()

    # ---- main loop

    async def run(self, ws: ServerConnection) -> None:
        self.ws = ws
        try:
            if self.sc.close_after_events == 0:
                self.close_transport("close_after:0")
                return
            if self.sc.error_fatal:
                code = self.sc.error_fatal
                msg = {
                    "invalid_api_key": "Incorrect API key provided. You can find your API key at "
                                       "https://platform.openai.com/account/api-keys.",
                    "session_expired": "Your session hit the maximum duration of 60 minutes.",
                    "insufficient_quota": "You exceeded your current quota, please check your plan and billing details.",
                }.get(code, f"Fatal error ({code}) injected by the mock's error_fatal scenario.")
                await self.error(code, msg)
                self.record("scenario", action="close", reason=f"error_fatal:{code}", code=3000)
                await ws.close(3000, f"invalid_request_error.{code}"[:120])
                return
            await self.emit("session.created", session=copy.deepcopy(self.session))
            self.write_audio_summary()
            if self.sc.silent_after == 0:
                self.go_silent("silent_after:0")
            async for message in ws:
                await self.on_message(message)
                if self.gone:
                    break
        except ConnectionClosed:
            pass
        finally:
            r = self.active
            if r is not None and r.task is not None and not r.task.done():
                r.task.cancel()
                try:
                    await r.task
                except BaseException:
                    pass
            self.write_audio_summary()
            self.record("closed", client_events=self.client_events, responses=self.responses_done,
                        close_code_received=ws.protocol.close_rcvd.code if ws.protocol.close_rcvd else None,
                        close_code_sent=ws.protocol.close_sent.code if ws.protocol.close_sent else None,
                        silent=self.silent)

    async def on_message(self, message: Any) -> None:
        self.client_events += 1
        binary = isinstance(message, bytes)
        text = message.decode("utf-8", "replace") if binary else message
        try:
            event = json.loads(text)
        except ValueError as e:
            self.record("client", type=None, valid=False, frame="binary" if binary else "text",
                        raw=text[:MAX_RAW_LOGGED], error={"code": "invalid_json", "message": str(e)})
            if not self._after_client_event():
                await self.error("invalid_json", "The server failed to parse the JSON in the event. "
                                 f"Error: {e}")
            return
        err = validate_client_event(event)
        etype = event.get("type") if isinstance(event, dict) else None
        rec: Dict[str, Any] = {"type": etype if isinstance(etype, str) else None, "valid": err is None}
        if binary:
            rec["frame"] = "binary"
        audio: Optional[bytes] = None
        if err is None and etype == "input_audio_buffer.append":
            try:
                audio = base64.b64decode(event["audio"], validate=True)
            except (binascii.Error, ValueError):
                err = {"code": "invalid_value", "param": "audio",
                       "message": "Invalid 'audio'. Expected base64-encoded audio bytes."}
                rec["valid"] = False
        logged = event
        if isinstance(event, dict) and isinstance(event.get("audio"), str) and not self.server.settings.log_audio:
            logged = dict(event, audio=f"<{len(event['audio'])} chars of base64>")
            if audio is not None:
                rec.update(audio_bytes=len(audio), audio_sha256=hashlib.sha256(audio).hexdigest())
        rec["event"] = logged
        if err:
            rec["error"] = err
        self.record("client", **rec)
        if self._after_client_event():
            return
        client_eid = event.get("event_id") if isinstance(event, dict) and isinstance(event.get("event_id"), str) else None
        if err:
            await self.error(err["code"], err["message"], err["param"], client_eid)
            return
        if etype == "input_audio_buffer.append":
            await self.on_input_audio_buffer_append(event, client_eid, audio)
        else:
            await getattr(self, "on_" + etype.replace(".", "_"))(event, client_eid)

    def _after_client_event(self) -> bool:
        """Applies close_after:N; True if the connection was closed."""
        if self.sc.close_after_events is not None and self.client_events >= self.sc.close_after_events:
            self.close_transport(f"close_after:{self.sc.close_after_events}")
            return True
        return False

    # ---- conversation

    def _last_item_id(self) -> Optional[str]:
        return self.items[-1]["id"] if self.items else None

    def _insert_item(self, item: dict, after: Optional[str] = "<end>") -> Optional[str]:
        """Insert; returns the previous item's id (None if first)."""
        if after == "<end>":
            prev = self._last_item_id()
            self.items.append(item)
        elif after is None:
            prev = None
            self.items.insert(0, item)
        else:
            idx = next(i for i, it in enumerate(self.items) if it["id"] == after)
            prev = after
            self.items.insert(idx + 1, item)
        self.item_by_id[item["id"]] = item
        while len(self.items) > MAX_ITEMS:
            old = self.items.pop(0)
            self.item_by_id.pop(old["id"], None)
            self.item_audio.pop(old["id"], None)
        return prev

    def _prev_of(self, item_id: str) -> Optional[str]:
        for i, it in enumerate(self.items):
            if it["id"] == item_id:
                return self.items[i - 1]["id"] if i else None
        return None

    def _user_turns(self) -> int:
        return sum(1 for it in self.items if it.get("type") == "message" and it.get("role") == "user")

    # ---- client event handlers

    async def on_session_update(self, ev: dict, eid: Optional[str]) -> None:
        upd = ev["session"]
        if upd.get("type") != "realtime":
            await self.error("invalid_value", "Cannot change the session type of a realtime session "
                             "to 'transcription'.", "session.type", eid)
            return
        mods = upd.get("output_modalities")
        if mods is not None and len(set(mods)) > 1:
            await self.error("invalid_value", "Invalid modalities: ['text', 'audio']. Supported combinations "
                             "are: ['text'] and ['audio'].", "session.output_modalities", eid)
            return
        out_upd = ((upd.get("audio") or {}).get("output") or {})
        cur_voice = self.session["audio"]["output"].get("voice")
        if "voice" in out_upd and out_upd["voice"] != cur_voice and self.audio_output_seen:
            await self.error("cannot_update_voice", "Cannot update a conversation's voice if assistant "
                             "audio is present.", "session.audio.output.voice", eid)
            return
        for key, val in upd.items():
            if key in ("type",):
                continue
            if key == "audio":
                for side in ("input", "output"):
                    if side not in (val or {}):
                        continue
                    sub = val[side] or {}
                    cur = self.session["audio"][side]
                    for k, v in sub.items():
                        if k == "turn_detection":
                            cur[k] = _default_turn_detection(v)
                        elif k == "format":
                            cur[k] = _default_format(v)
                        else:
                            cur[k] = copy.deepcopy(v)
                continue
            self.session[key] = copy.deepcopy(val)
        new_fmt = fmt_of(self.session["audio"]["input"].get("format"))
        if new_fmt != self.in_fmt:
            self.in_fmt = new_fmt
            self.pending.clear()
        await self.emit("session.updated", session=copy.deepcopy(self.session))

    async def on_input_audio_buffer_append(self, ev: dict, eid: Optional[str], audio: bytes) -> None:
        self.in_total_bytes += len(audio)
        self.in_total_hash.update(audio)
        self.pending += audio
        fb = self.in_fmt.bytes_for_ms(10)
        while len(self.pending) >= fb and not self.gone:
            frame = bytes(self.pending[:fb])
            del self.pending[:fb]
            await self._frame(frame)
        self.write_audio_summary()

    def _reset_buffer(self) -> None:
        self.buf_bytes = 0
        self.buf_hash = hashlib.sha256()
        self.buf_first_voiced: Optional[int] = None
        self.buf_last_voiced_end: Optional[int] = None

    def _turn_detection(self) -> Optional[dict]:
        return self.session["audio"]["input"].get("turn_detection")

    async def _frame(self, frame: bytes) -> None:
        start = self.timeline_ms
        self.timeline_ms += 10
        end = self.timeline_ms
        self.buf_hash.update(frame)
        self.buf_bytes += len(frame)
        td = self._turn_detection()
        threshold = (td or {}).get("threshold")
        threshold = 0.5 if threshold is None else threshold
        voiced = rms(self.in_fmt.samples(frame)) >= 0.02 * threshold
        if voiced:
            if self.buf_first_voiced is None:
                self.buf_first_voiced = start
            self.buf_last_voiced_end = end
        if td is None:
            return
        if td.get("type") == "semantic_vad":
            silence_ms = {"low": 1000, "high": 250}.get(td.get("eagerness") or "auto", 500)
            prefix_ms = 300
        else:
            silence_ms = td.get("silence_duration_ms") or 500
            prefix_ms = td.get("prefix_padding_ms")
            prefix_ms = 300 if prefix_ms is None else prefix_ms
        if not self.in_speech:
            if voiced:
                self.in_speech = True
                self.speech_item = self.ids.new("item")
                self.speech_start, self.last_voiced_end, self.silence_ms = start, end, 0
                await self.emit("input_audio_buffer.speech_started",
                                audio_start_ms=max(0, start - prefix_ms), item_id=self.speech_item)
                r = self.active
                if r is not None and r.in_conversation and td.get("interrupt_response") is not False:
                    self.cancel(r, "turn_detected")
                    if r.task is not None:
                        # In real time the cancelled response ends long before the speech does;
                        # audio may arrive here faster than real time, so let it end first.
                        await asyncio.wait([r.task])
            return
        if voiced:
            self.silence_ms, self.last_voiced_end = 0, end
            return
        self.silence_ms += 10
        if self.silence_ms < silence_ms:
            return
        item_id = self.speech_item
        self.in_speech = False
        await self.emit("input_audio_buffer.speech_stopped", audio_end_ms=self.last_voiced_end, item_id=item_id)
        r = self.active
        if r is not None and r.cancel_reason is not None and r.task is not None:
            await asyncio.wait([r.task])       # the interrupted response is finishing; it ends promptly
        auto = td.get("create_response") is not False and self.active is None
        await self._commit(item_id, self.last_voiced_end - self.speech_start, will_respond=auto)
        if auto:
            self.start_response(None)

    async def _commit(self, item_id: str, speech_ms: int, will_respond: bool) -> None:
        prev = self._last_item_id()
        self.audio_answers += 1
        transcript = f"candidate answer {self.audio_answers} ({speech_ms} ms of speech)" if speech_ms > 0 else ""
        turn = {"item_id": item_id, "answer": self.audio_answers, "bytes": self.buf_bytes,
                "ms": round(self.in_fmt.ms_for_bytes(self.buf_bytes), 3), "sha256": self.buf_hash.hexdigest(),
                "speech_ms": speech_ms, "transcript": transcript}
        self.turn_records.append(turn)
        del self.turn_records[:-MAX_RECORDS]
        self.record("turn", **turn)
        self._reset_buffer()
        self.write_audio_summary()
        await self.emit("input_audio_buffer.committed", previous_item_id=prev, item_id=item_id)
        item = {"id": item_id, "type": "message", "status": "completed", "role": "user",
                "content": [{"type": "input_audio", "transcript": None}], "object": "realtime.item"}
        self._insert_item(item)
        await self.emit("conversation.item.added", previous_item_id=prev, item=copy.deepcopy(item))
        await self.emit("conversation.item.done", previous_item_id=prev, item=copy.deepcopy(item))
        tr = self.session["audio"]["input"].get("transcription")
        if tr is None:
            return
        events: List[Tuple[str, dict]] = []
        words = re.findall(r"\S+\s*", transcript)
        for i in range(0, len(words), 3):
            events.append(("conversation.item.input_audio_transcription.delta",
                           {"item_id": item_id, "content_index": 0, "delta": "".join(words[i:i + 3])}))
        audio_s = round(self.in_fmt.ms_for_bytes(turn["bytes"]) / 1000, 3)
        if (tr.get("model") or "") == "whisper-1":
            usage: dict = {"type": "duration", "seconds": float(audio_s)}
        else:
            tin, tout = max(1, int(audio_s * 10)), max(1, len(transcript) // 4)
            usage = {"type": "tokens", "total_tokens": tin + tout, "input_tokens": tin,
                     "input_token_details": {"text_tokens": 0, "audio_tokens": tin}, "output_tokens": tout}
        events.append(("conversation.item.input_audio_transcription.completed",
                       {"item_id": item_id, "content_index": 0, "transcript": transcript, "usage": usage}))
        item["content"][0]["transcript"] = transcript
        if will_respond and self.late_transcript:
            self.pending_transcripts.extend({"etype": t, **f} for t, f in events)
        else:
            for t, f in events:
                await self.emit(t, **f)

    async def on_input_audio_buffer_commit(self, ev: dict, eid: Optional[str]) -> None:
        if self.pending:
            self.buf_hash.update(bytes(self.pending))
            self.buf_bytes += len(self.pending)
            self.pending.clear()
        ms = self.in_fmt.ms_for_bytes(self.buf_bytes)
        if ms < 100:
            await self.error("input_audio_buffer_commit_empty",
                             "Error committing input audio buffer: buffer too small. Expected at least 100ms "
                             f"of audio, but buffer only has {ms:.2f}ms of audio.", None, eid)
            return
        if self.in_speech:
            item_id = self.speech_item
            self.in_speech = False
            await self.emit("input_audio_buffer.speech_stopped", audio_end_ms=self.timeline_ms, item_id=item_id)
            speech_ms = self.last_voiced_end - self.speech_start
        else:
            item_id = self.ids.new("item")
            speech_ms = (self.buf_last_voiced_end - self.buf_first_voiced) if self.buf_first_voiced is not None else 0
        await self._commit(item_id, speech_ms, will_respond=False)
        self.write_audio_summary()

    async def on_input_audio_buffer_clear(self, ev: dict, eid: Optional[str]) -> None:
        self.record("buffer_cleared", bytes=self.buf_bytes + len(self.pending))
        self.pending.clear()
        self._reset_buffer()
        self.in_speech = False
        await self.emit("input_audio_buffer.cleared")
        self.write_audio_summary()

    async def on_conversation_item_create(self, ev: dict, eid: Optional[str]) -> None:
        item = copy.deepcopy(ev["item"])
        after: Optional[str] = "<end>"
        if "previous_item_id" in ev and ev["previous_item_id"] is not None:
            p = ev["previous_item_id"]
            if p == "root":
                after = None
            elif p in self.item_by_id:
                after = p
            else:
                await self.error("invalid_value", f"Previous item with id '{p}' not found.", "previous_item_id", eid)
                return
        if item.get("id") is not None and item["id"] in self.item_by_id:
            await self.error("invalid_value", f"Item with id '{item['id']}' already exists.", "item.id", eid)
            return
        if item.get("id") is None:
            item["id"] = self.ids.new("item")
        if item["type"] in ("message", "function_call", "function_call_output"):
            item["status"] = "completed"
            item["object"] = "realtime.item"
        if item["type"] == "message":
            for part in item.get("content") or []:
                part.pop("audio", None)     # the real API does not echo audio bytes here
        prev = self._insert_item(item, after)
        await self.emit("conversation.item.added", previous_item_id=prev, item=copy.deepcopy(item))
        await self.emit("conversation.item.done", previous_item_id=prev, item=copy.deepcopy(item))

    async def on_conversation_item_retrieve(self, ev: dict, eid: Optional[str]) -> None:
        item = self.item_by_id.get(ev["item_id"])
        if item is None:
            await self.error("invalid_value", f"Item with item_id not found: {ev['item_id']}", "item_id", eid)
            return
        out = copy.deepcopy(item)
        if item["id"] in self.item_audio and out.get("content"):
            seq, ms, fmt = self.item_audio[item["id"]]
            out["content"][0]["audio"] = base64.b64encode(tone_audio(seq, 0, ms, fmt)).decode()
        await self.emit("conversation.item.retrieved", item=out)

    async def on_conversation_item_delete(self, ev: dict, eid: Optional[str]) -> None:
        iid = ev["item_id"]
        if iid not in self.item_by_id:
            await self.error("invalid_value", f"Item with item_id not found: {iid}", "item_id", eid)
            return
        self.items = [it for it in self.items if it["id"] != iid]
        self.item_by_id.pop(iid, None)
        self.item_audio.pop(iid, None)
        await self.emit("conversation.item.deleted", item_id=iid)

    async def on_conversation_item_truncate(self, ev: dict, eid: Optional[str]) -> None:
        iid, end_ms = ev["item_id"], ev["audio_end_ms"]
        item = self.item_by_id.get(iid)
        if item is None:
            await self.error("invalid_value", f"Item with item_id not found: {iid}", "item_id", eid)
            return
        if iid not in self.item_audio or item.get("role") != "assistant":
            await self.error("unsupported_content_type", "Only model output audio messages can be truncated",
                             "item_id", eid)
            return
        if ev["content_index"] != 0:
            await self.error("invalid_value", f"Invalid content_index: {ev['content_index']}.", "content_index", eid)
            return
        seq, ms, fmt = self.item_audio[iid]
        if end_ms < 0 or end_ms > ms:
            await self.error("invalid_value", f"Audio content of {ms}ms is already shorter than {end_ms}ms",
                             "audio_end_ms", eid)
            return
        self.item_audio[iid] = (seq, end_ms, fmt)
        for part in item.get("content") or []:
            if part.get("type") == "output_audio":
                part["transcript"] = ""
        self.record("truncated", item_id=iid, audio_end_ms=end_ms, audio_ms_before=ms)
        await self.emit("conversation.item.truncated", item_id=iid, content_index=0, audio_end_ms=end_ms)

    async def on_response_create(self, ev: dict, eid: Optional[str]) -> None:
        if self.active is not None:
            await self.error("conversation_already_has_active_response",
                             f"Conversation already has an active response in progress: {self.active.id}. "
                             "Wait until the response is finished before creating a new one.", None, eid)
            return
        self.start_response(ev.get("response") or {})

    async def on_response_cancel(self, ev: dict, eid: Optional[str]) -> None:
        r = self.active
        rid = ev.get("response_id")
        if r is None or r.cancel_reason is not None or (rid is not None and rid != r.id):
            await self.error("response_cancel_not_active", "Cancellation failed: no active response found",
                             None, eid)
            return
        self.cancel(r, "client_cancelled")

    async def on_output_audio_buffer_clear(self, ev: dict, eid: Optional[str]) -> None:
        r = self.active
        if r is not None and "audio" in r.modalities:
            r.clear_requested = True
            self.cancel(r, "client_cancelled")
        elif self.last_audio_response:
            await self.emit("output_audio_buffer.cleared", response_id=self.last_audio_response)
        else:
            await self.error("invalid_value", "There is no output audio to clear.", None, eid)

    # ---- responses

    def cancel(self, r: Resp, reason: str) -> None:
        if r.cancel_reason is None:
            r.cancel_reason = reason
            r.cancel_event.set()

    def start_response(self, params: Optional[dict]) -> None:
        params = params or {}
        s = self.session
        self.responses_started += 1
        out = s["audio"]["output"]
        audio_params = ((params.get("audio") or {}).get("output") or {})
        r = Resp(
            seq=self.responses_started, id=self.ids.new("resp"),
            modalities=list(params.get("output_modalities") or s.get("output_modalities") or ["audio"]),
            in_conversation=params.get("conversation") != "none",
            metadata=params.get("metadata"),
            max_output_tokens=params.get("max_output_tokens", s.get("max_output_tokens", "inf")),
            tools=params["tools"] if params.get("tools") is not None else (s.get("tools") or []),
            tool_choice=params["tool_choice"] if params.get("tool_choice") is not None else s.get("tool_choice", "auto"),
            voice=audio_params.get("voice") or out.get("voice"),
            out_fmt=_default_format(audio_params.get("format") or out.get("format")),
            instructions=params.get("instructions"),
            cancel_event=asyncio.Event(), audio_hash=hashlib.sha256(),
        )
        self.active = r
        r.task = asyncio.get_running_loop().create_task(self._run_response(r))

    def _response_obj(self, r: Resp, status: str, output: List[dict], details: Optional[dict] = None,
                      usage: Optional[dict] = None) -> dict:
        obj: Dict[str, Any] = {
            "object": "realtime.response", "id": r.id, "status": status, "status_details": details,
            "output": output, "conversation_id": self.conversation_id if r.in_conversation else None,
            "output_modalities": r.modalities, "max_output_tokens": r.max_output_tokens,
        }
        if "audio" in r.modalities:
            obj["audio"] = {"output": {"format": r.out_fmt, "voice": r.voice}}
        obj["usage"] = usage
        obj["metadata"] = r.metadata
        return obj

    def _usage(self, r: Resp, out_text: str) -> dict:
        instr = len(self.session.get("instructions") or "") // 4
        conv = sum(len(json.dumps(it)) for it in self.items) // 8
        text_in, audio_in = max(1, instr + conv), 10 * len(self.turn_records)
        text_out = max(1, len(out_text) // 4)
        audio_out = r.audio_ms // 50
        return {"total_tokens": text_in + audio_in + text_out + audio_out,
                "input_tokens": text_in + audio_in, "output_tokens": text_out + audio_out,
                "input_token_details": {"text_tokens": text_in, "audio_tokens": audio_in, "image_tokens": 0,
                                        "cached_tokens": 0,
                                        "cached_tokens_details": {"text_tokens": 0, "audio_tokens": 0,
                                                                  "image_tokens": 0}},
                "output_token_details": {"text_tokens": text_out, "audio_tokens": audio_out}}

    def questions(self, r: Resp) -> Tuple[List[str], bool]:
        qs = parse_questions(self.session.get("instructions")) or parse_questions(r.instructions)
        return (qs, True) if qs else (GENERIC_QUESTIONS, False)

    def plan(self, r: Resp) -> Tuple[str, str]:
        """("call", tool name) or ("say", text): what the scripted 'model' does now."""
        end_tool = self.server.settings.end_tool
        has_tool = any(isinstance(t, dict) and t.get("type", "function") in ("function", None)
                       and t.get("name") == end_tool for t in r.tools)
        tc = r.tool_choice
        forced = isinstance(tc, dict) and tc.get("type") == "function" and tc.get("name") == end_tool
        may_call = has_tool and tc != "none" and not (isinstance(tc, dict) and not forced)
        answered = any(it.get("type") == "function_call_output" and it.get("call_id") in self.end_call_ids
                       for it in self.items)
        if answered or self.closing_said:
            if self.closing_said:
                return "say", OVER
            self.closing_said = True
            return "say", CLOSING
        if forced and has_tool:
            return "call", end_tool
        qs, parsed = self.questions(r)
        turns = self.turns_override if self.turns_override is not None else (len(qs) if parsed else 3)
        k = self._user_turns()
        if k >= turns:
            if may_call and not self.end_call_ids:
                return "call", end_tool
            self.closing_said = True
            return "say", CLOSING
        said_before = any(it.get("type") == "message" and it.get("role") == "assistant" for it in self.items)
        lead = "Thank you. " if said_before else "Hello, and welcome to the interview. "
        return "say", f"{lead}Question {k + 1}: {qs[k % len(qs)]}"

    async def _sleep_until(self, r: Resp, deadline: float) -> bool:
        """Sleep until loop time `deadline` or a cancel; True if cancelled."""
        delay = deadline - asyncio.get_running_loop().time()
        if delay > 0 and r.cancel_reason is None:
            try:
                await asyncio.wait_for(r.cancel_event.wait(), delay)
            except asyncio.TimeoutError:
                pass
        else:
            await asyncio.sleep(0)
        return r.cancel_reason is not None

    async def _run_response(self, r: Resp) -> None:
        try:
            await self._response(r)
        except asyncio.CancelledError:
            raise
        except Exception:
            tb = traceback.format_exc()
            self.record("mock_bug", type="response", error=tb)
            log.error("connection %d: response %s failed:\n%s", self.n, r.id, tb)
        finally:
            if self.active is r:
                self.active = None

    async def _response(self, r: Resp) -> None:
        await self.emit("response.created", response=self._response_obj(r, "in_progress", []))
        await self.emit("rate_limits.updated", rate_limits=[
            {"name": "requests", "limit": 5000, "remaining": 4999, "reset_seconds": 0.012},
            {"name": "tokens", "limit": 800000, "remaining": 795000, "reset_seconds": 0.375}])
        for ev in self.pending_transcripts:
            ev = dict(ev)
            await self.emit(ev.pop("etype"), **ev)
        self.pending_transcripts.clear()
        if self.sc.fail_response == r.seq:
            self.record("response", response_id=r.id, seq=r.seq, plan="fail_response")
            await self._finish(r, "failed", "", self._response_obj(
                r, "failed", [], {"type": "failed", "error": {
                    "type": "server_error", "code": "server_error",
                    "message": "The server had an error while processing your request. Sorry about that!"}},
                self._usage(r, "")))
            return
        kind, what = self.plan(r)
        self.record("response", response_id=r.id, seq=r.seq, plan=kind, text=what if kind == "say" else None,
                    tool=what if kind == "call" else None)
        if kind == "call":
            await self._stream_call(r, what)
        else:
            await self._stream_message(r, what)

    async def _finish(self, r: Resp, status: str, transcript: str, response: dict) -> None:
        """Record the response, send its response.done, then apply the scenario."""
        self._record_response(r, status, transcript)
        await self.emit("response.done", response=response)
        await self._response_done(r)

    def _record_response(self, r: Resp, status: str, transcript: str) -> None:
        self.responses_done += 1
        if "audio" in r.modalities and r.item_id:
            rec = {"response_id": r.id, "seq": r.seq, "item_id": r.item_id, "status": status,
                   "audio_bytes": r.audio_bytes, "audio_ms": r.audio_ms, "format": r.out_fmt["type"],
                   "sha256": r.audio_hash.hexdigest(), "transcript": transcript}
            self.response_records.append(rec)
            del self.response_records[:-MAX_RECORDS]
            self.record("response_audio", **rec)
            self.write_audio_summary()

    async def _response_done(self, r: Resp) -> None:
        if r.clear_requested:
            await self.emit("output_audio_buffer.cleared", response_id=r.id)
        if self.active is r:
            self.active = None
        if self.sc.close_after_responses is not None and self.responses_done >= self.sc.close_after_responses:
            self.close_transport(f"close_after_responses:{self.sc.close_after_responses}")
        elif self.sc.silent_after is not None and self.responses_done >= self.sc.silent_after:
            self.go_silent(f"silent_after:{self.sc.silent_after}")

    def _maybe_close_mid(self, r: Resp) -> bool:
        if self.sc.close_mid_response == r.seq:
            self.close_transport(f"close_mid_response:{r.seq}")
            return True
        return self.gone

    async def _stream_message(self, r: Resp, text: str) -> None:
        loop = asyncio.get_running_loop()
        r.item_id = iid = self.ids.new("item")
        item = {"id": iid, "type": "message", "status": "in_progress", "role": "assistant", "content": [],
                "object": "realtime.item"}
        await self.emit("response.output_item.added", response_id=r.id, output_index=0, item=copy.deepcopy(item))
        prev = None
        if r.in_conversation:
            prev = self._insert_item(item)
            await self.emit("conversation.item.added", previous_item_id=prev, item=copy.deepcopy(item))
        audio = "audio" in r.modalities
        ids = {"response_id": r.id, "item_id": iid, "output_index": 0, "content_index": 0}
        await self.emit("response.content_part.added", **ids,
                        part={"type": "audio", "transcript": ""} if audio else {"type": "text", "text": ""})
        words = re.findall(r"\S+\s*", text)
        sent = 0
        start = loop.time()
        if audio:
            self.audio_output_seen = True
            self.last_audio_response = r.id
            fmt = r.out_fmt["type"]
            n_chunks = max(1, math.ceil(self.audio_ms / AUDIO_CHUNK_MS)) if self.audio_ms > 0 else 0
            for i in range(n_chunks):
                if r.cancel_reason is not None or self.gone:
                    break
                target = math.ceil(len(words) * (i + 1) / n_chunks)
                while sent < target:
                    piece = "".join(words[sent:min(sent + 3, target)])
                    sent = min(sent + 3, target)
                    await self.emit("response.output_audio_transcript.delta", **ids, delta=piece)
                ms = min(AUDIO_CHUNK_MS, self.audio_ms - i * AUDIO_CHUNK_MS)
                pcm = tone_audio(r.seq, i * AUDIO_CHUNK_MS, ms, fmt)
                r.audio_hash.update(pcm)
                r.audio_bytes += len(pcm)
                r.audio_ms += ms
                self.item_audio[iid] = (r.seq, r.audio_ms, fmt)
                await self.emit("response.output_audio.delta", **ids, delta=base64.b64encode(pcm).decode())
                if self._maybe_close_mid(r):
                    return
                if await self._sleep_until(r, start + (i + 1) * AUDIO_CHUNK_MS / 1000 * self.pace):
                    break
            if n_chunks == 0:
                self.item_audio[iid] = (r.seq, 0, fmt)
                await self.emit("response.output_audio_transcript.delta", **ids, delta=text)
                sent = len(words)
            final = text if sent >= len(words) else "".join(words[:sent])
            await self.emit("response.output_audio.done", **ids)
            await self.emit("response.output_audio_transcript.done", **ids, transcript=final)
            part = {"type": "audio", "transcript": final}
            content = [{"type": "output_audio", "transcript": final}]
        else:
            i = 0
            while sent < len(words):
                if r.cancel_reason is not None or self.gone:
                    break
                piece = "".join(words[sent:sent + 4])
                sent += 4
                await self.emit("response.output_text.delta", **ids, delta=piece)
                if self._maybe_close_mid(r):
                    return
                i += 1
                if await self._sleep_until(r, start + i * TEXT_DELTA_S * self.pace):
                    break
            final = text if sent >= len(words) else "".join(words[:sent])
            await self.emit("response.output_text.done", **ids, text=final)
            part = {"type": "text", "text": final}
            content = [{"type": "output_text", "text": final}]
        cancelled = r.cancel_reason is not None
        item["status"] = "incomplete" if cancelled else "completed"
        item["content"] = content
        await self.emit("response.content_part.done", **ids, part=part)
        await self.emit("response.output_item.done", response_id=r.id, output_index=0, item=copy.deepcopy(item))
        if r.in_conversation:
            await self.emit("conversation.item.done", previous_item_id=self._prev_of(iid) if iid in self.item_by_id
                            else prev, item=copy.deepcopy(item))
        status = "cancelled" if cancelled else "completed"
        details = {"type": "cancelled", "reason": r.cancel_reason} if cancelled else None
        await self._finish(r, status, final, self._response_obj(r, status, [copy.deepcopy(item)], details,
                                                                 self._usage(r, final)))

    async def _stream_call(self, r: Resp, name: str) -> None:
        loop = asyncio.get_running_loop()
        r.item_id = iid = self.ids.new("item")
        call_id = self.ids.new("call", 16)
        params: Any = {}
        for t in r.tools:
            if isinstance(t, dict) and t.get("name") == name:
                params = t.get("parameters") or {}
        args = json.dumps(example_args(params))
        item = {"id": iid, "type": "function_call", "status": "in_progress", "name": name, "call_id": call_id,
                "arguments": "", "object": "realtime.item"}
        await self.emit("response.output_item.added", response_id=r.id, output_index=0, item=copy.deepcopy(item))
        prev = None
        if r.in_conversation:
            prev = self._insert_item(item)
            await self.emit("conversation.item.added", previous_item_id=prev, item=copy.deepcopy(item))
        self.end_call_ids.add(call_id)
        step = max(1, math.ceil(len(args) / 3))
        sent = 0
        start = loop.time()
        i = 0
        while sent < len(args):
            if r.cancel_reason is not None or self.gone:
                break
            await self.emit("response.function_call_arguments.delta", response_id=r.id, item_id=iid,
                            output_index=0, call_id=call_id, delta=args[sent:sent + step])
            sent += step
            if self._maybe_close_mid(r):
                return
            i += 1
            if await self._sleep_until(r, start + i * ARGS_DELTA_S * self.pace):
                break
        final = args[:sent]
        await self.emit("response.function_call_arguments.done", response_id=r.id, item_id=iid, output_index=0,
                        call_id=call_id, name=name, arguments=final)
        cancelled = r.cancel_reason is not None
        item["status"] = "incomplete" if cancelled else "completed"
        item["arguments"] = final
        await self.emit("response.output_item.done", response_id=r.id, output_index=0, item=copy.deepcopy(item))
        if r.in_conversation:
            await self.emit("conversation.item.done", previous_item_id=prev, item=copy.deepcopy(item))
        status = "cancelled" if cancelled else "completed"
        details = {"type": "cancelled", "reason": r.cancel_reason} if cancelled else None
        await self._finish(r, status, "", self._response_obj(r, status, [copy.deepcopy(item)], details,
                                                              self._usage(r, final)))


def sc_or(a: Any, b: Any) -> Any:
    return a if a is not None else b


def example_args(schema: Any) -> dict:
    """Arguments for a function call that satisfy a simple JSON schema, deterministically."""
    props = schema.get("properties") if isinstance(schema, dict) else None
    if not isinstance(props, dict):
        return {}
    return {name: _example_value(name, sub if isinstance(sub, dict) else {}) for name, sub in props.items()}


def _example_value(name: str, s: dict) -> Any:
    if isinstance(s.get("enum"), list) and s["enum"]:
        return s["enum"][0]
    t = s.get("type")
    if isinstance(t, list):
        t = next((x for x in t if x != "null"), "string")
    if t == "boolean":
        return True
    if t == "integer":
        return 1
    if t == "number":
        return 1.0
    if t == "array":
        return []
    if t == "object":
        return example_args(s)
    return "all questions have been asked" if "reason" in name.lower() else "completed"


# ------------------------------------------------------------------------ server

def _http_error(connection: ServerConnection, status: int, message: str, etype: str,
                code: Optional[str], extra_headers: Optional[Dict[str, str]] = None):
    body = json.dumps({"error": {"message": message, "type": etype, "param": None, "code": code}}, indent=2)
    resp = connection.respond(status, body + "\n")
    del resp.headers["Content-Type"]
    resp.headers["Content-Type"] = "application/json"
    for k, v in (extra_headers or {}).items():
        resp.headers[k] = v
    return resp


class MockServer:
    def __init__(self, control: Control, settings: Settings):
        self.control, self.settings = control, settings
        self.live: Dict[int, MockConnection] = {}

    def process_request(self, connection: ServerConnection, request: Any):
        n = self.control.next_connection()
        t0 = time.monotonic()
        url = urlsplit(request.path)
        query = {k: v[0] if len(v) == 1 else v for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        headers: Dict[str, str] = {}
        for k, v in request.headers.raw_items():
            k = k.lower()
            headers[k] = f"{headers[k]}, {v}" if k in headers else v
        spec, source = self.control.scenario_for_next()
        info = {"n": n, "path": request.path, "query": query, "headers": headers,
                "remote": "%s:%s" % tuple(connection.remote_address[:2]) if connection.remote_address else None,
                "tls": connection.transport.get_extra_info("sslcontext") is not None,
                "scenario": spec, "scenario_source": source}
        connection.mock_info = (n, t0, info)
        try:
            sc = parse_scenario(spec)
        except ValueError as e:
            log.error("connection %d: bad scenario %r (from %s): %s", n, spec, source, e)
            info["scenario_error"] = str(e)
            return connection.respond(http.HTTPStatus.INTERNAL_SERVER_ERROR, f"mock_realtime: bad scenario: {e}\n")
        model = query.get("model") if isinstance(query.get("model"), str) else None
        if url.path != REALTIME_PATH:
            return _http_error(connection, 404, f"Invalid URL (GET {url.path})", "invalid_request_error", None)
        key = None
        auth = headers.get("authorization", "")
        if auth.lower().startswith("bearer "):
            key = auth[7:].strip()
        for proto in (headers.get("sec-websocket-protocol") or "").split(","):
            proto = proto.strip()
            if key is None and proto.startswith("openai-insecure-api-key."):
                key = proto[len("openai-insecure-api-key."):]
        if not key:
            return _http_error(connection, 401, "You didn't provide an API key. You need to provide your API key "
                               "in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
                               "invalid_request_error", None)
        if self.settings.expect_key is not None and key != self.settings.expect_key:
            return _http_error(connection, 401, "Incorrect API key provided. You can find your API key at "
                               "https://platform.openai.com/account/api-keys.", "invalid_request_error",
                               "invalid_api_key")
        if "realtime=v1" in headers.get("openai-beta", "").replace(" ", ""):
            return _http_error(connection, 400, "mock_realtime speaks only the GA Realtime interface; the client "
                               "sent 'OpenAI-Beta: realtime=v1', which selects the beta interface.",
                               "invalid_request_error", "beta_interface_not_mocked")
        if not model:
            return _http_error(connection, 400, "Missing required parameter: 'model'.", "invalid_request_error",
                               "missing_required_parameter")
        if sc.refuse_status is not None:
            return _http_error(connection, sc.refuse_status, "The server is currently overloaded with other "
                               "requests (refused by the mock's refuse_connect scenario).", "server_error", None,
                               {"Retry-After": "1"} if sc.refuse_status in (429, 503) else None)
        connection.mock = MockConnection(self, n, sc, model)
        connection.mock.t0 = t0
        return None

    def process_response(self, connection: ServerConnection, request: Any, response: Any):
        mi = getattr(connection, "mock_info", None)
        if mi is None:
            return None
        n, t0, info = mi
        info["status"] = response.status_code
        info["t"] = round(time.monotonic() - t0, 4)
        info["kind"] = "connect"
        ordered = {"t": info.pop("t"), "kind": info.pop("kind"), **info}
        try:
            with open(self.control.file(f"connection-{n}.jsonl"), "a") as f:
                f.write(json.dumps(ordered, separators=(",", ":")) + "\n")
        except OSError as e:  # pragma: no cover
            log.error("connection %d: cannot write log: %s", n, e)
        if response.status_code != 101:
            connection.mock = None
        log.info("connection %d: %s %s -> %d (%s)", n, request.path, info.get("scenario"),
                 response.status_code, info.get("remote"))
        return None

    async def handler(self, connection: ServerConnection) -> None:
        conn: Optional[MockConnection] = getattr(connection, "mock", None)
        if conn is None:
            return
        self.live[conn.n] = conn
        try:
            await conn.run(connection)
        except Exception:
            tb = traceback.format_exc()
            conn.record("mock_bug", type="handler", error=tb)
            log.error("connection %d: handler failed:\n%s", conn.n, tb)
            connection.transport.abort()
        finally:
            self.live.pop(conn.n, None)
            log.info("connection %d: closed after %d client events, %d responses", conn.n,
                     conn.client_events, conn.responses_done)


async def amain(args: argparse.Namespace) -> int:
    control = Control(args.control_dir, args.scenario)
    settings = Settings(expect_key=args.expect_key, turns=args.turns, audio_ms=args.audio_ms, pace=args.pace,
                        late_transcript=args.late_transcript, end_tool=args.end_tool,
                        seed=args.seed if args.seed is not None else os.urandom(8).hex(), log_audio=args.log_audio)
    mock = MockServer(control, settings)
    ctx = None
    if args.tls_cert:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(args.tls_cert, args.tls_key)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    wslog = logging.getLogger("mock_realtime.websockets")
    wslog.setLevel(logging.DEBUG if args.verbose else logging.CRITICAL)
    server = await serve(
        mock.handler, "127.0.0.1", args.port, ssl=ctx,
        process_request=mock.process_request, process_response=mock.process_response,
        server_header="mock_realtime (websockets)", compression=None,
        ping_interval=args.ping_interval, ping_timeout=args.ping_interval,
        max_size=MAX_MESSAGE, max_queue=4, open_timeout=10, close_timeout=2, logger=wslog,
    )
    port = server.sockets[0].getsockname()[1]
    write_atomic(control.file("listening"), f"127.0.0.1:{port}\n")
    print(f"listening on 127.0.0.1:{port}", flush=True)
    await stop.wait()
    log.info("stopping: dropping %d connection(s)", len(mock.live))
    for conn in list(mock.live.values()):
        conn.abort()
    server.close(close_connections=False)
    try:
        await asyncio.wait_for(server.wait_closed(), 2)
    except asyncio.TimeoutError:  # pragma: no cover
        log.error("connections did not end within 2 s; exiting anyway")
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--port", type=int, required=True, help="TCP port on 127.0.0.1 (0: any free port)")
    ap.add_argument("--control-dir", required=True, help="directory for logs, counters and scenario files")
    ap.add_argument("--tls-cert", help="PEM certificate (chain) to serve wss://")
    ap.add_argument("--tls-key", help="PEM private key for --tls-cert")
    ap.add_argument("--scenario", default="normal", help="default scenario (see mock_realtime.md)")
    ap.add_argument("--expect-key", help="refuse (401) any API key but this one")
    ap.add_argument("--turns", type=int, help="candidate answers before the interview ends "
                    "(default: the number of questions found in the instructions, else 3)")
    ap.add_argument("--audio-ms", type=int, default=1000, help="audio per spoken response, ms (default 1000)")
    ap.add_argument("--pace", type=float, default=1.0,
                    help="multiplies streaming delays: 1 real time (default), 0 no delay, 5 five times slower")
    ap.add_argument("--late-transcript", action="store_true",
                    help="send the input transcription after response.created (as the real API often does)")
    ap.add_argument("--end-tool", default="end_interview", help="function tool called to end (default end_interview)")
    ap.add_argument("--seed", help="seed for ids (default random)")
    ap.add_argument("--ping-interval", type=float, default=None, help="send WebSocket pings every S seconds")
    ap.add_argument("--log-audio", action="store_true", help="keep base64 audio in the jsonl logs")
    ap.add_argument("--verbose", action="store_true", help="log connections to stderr")
    args = ap.parse_args(argv)
    if bool(args.tls_cert) != bool(args.tls_key):
        ap.error("--tls-cert and --tls-key go together")
    if args.audio_ms < 0 or args.pace < 0 or (args.turns is not None and args.turns < 0):
        ap.error("--audio-ms, --pace and --turns must not be negative")
    try:
        parse_scenario(args.scenario)
    except ValueError as e:
        ap.error(f"--scenario: {e}")
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, stream=sys.stderr,
                        format="mock_realtime: %(message)s")
    try:
        rc = asyncio.run(amain(args))
    except OSError as e:
        sys.stderr.write(f"mock_realtime: cannot start: {e}\n")
        return 1
    # Every log line is already on disk (each record is written and closed); skip the
    # interpreter's slow teardown of pydantic/openai so that a stop is quick even on a
    # loaded machine.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(rc)


if __name__ == "__main__":
    sys.exit(main())
