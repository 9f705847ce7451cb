#!/usr/bin/env python3
"""Tests for mock_realtime.py, driven with the official OpenAI SDK's realtime client.

Run:  target/realtime-peer/bin/python tests/peer/test_mock_realtime.py [-v] [-k PATTERN]
(after `bash tests/peer/setup.sh`).  Plain unittest; every test starts the mock as a
subprocess on a free port, exactly as a relay test would, and validates every server
event it receives against the SDK's RealtimeServerEvent types (realtime_schema).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import math
import os
import select
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time
import unittest
from array import array
from typing import Any, Callable, Dict, List, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import openai  # noqa: E402
from websockets.asyncio.client import connect as ws_connect  # noqa: E402
from websockets.exceptions import ConnectionClosed, InvalidStatus  # noqa: E402

import mock_realtime  # noqa: E402  (also allows session.updated's id/object/expires_at in realtime_schema)
from make_test_ca import make_test_ca  # noqa: E402
from realtime_schema import validate_event  # noqa: E402

MOCK = os.path.join(HERE, "mock_realtime.py")
KEY = "sk-test-key"
QUESTIONS = [
    "Tell me about a system you designed.",
    "How do you test concurrent code?",
    "What did you learn recently?",
]
INSTRUCTIONS = (
    "You are an interviewer for a software engineering screen. Be brief.\n"
    "Ask these interview questions, one at a time, in order:\n"
    + "".join(f"{i}. {q}\n" for i, q in enumerate(QUESTIONS, 1))
    + "When all questions are answered, call end_interview.\n"
)
END_TOOL = {
    "type": "function", "name": "end_interview", "description": "End the interview.",
    "parameters": {"type": "object", "properties": {"reason": {"type": "string"}, "completed": {"type": "boolean"}},
                   "required": ["reason", "completed"]},
}


def pcm_tone(ms: int, freq: int = 440, amp: int = 8000) -> bytes:
    n = 24000 * ms // 1000
    return array("h", [int(amp * math.sin(2 * math.pi * freq * i / 24000)) for i in range(n)]).tobytes()


def pcm_silence(ms: int) -> bytes:
    return bytes(24000 * ms // 1000 * 2)


def sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


class Mock:
    """mock_realtime.py as a subprocess, with its control dir."""

    def __init__(self, *args: str, tls: Optional[Dict[str, str]] = None):
        self.dir = tempfile.mkdtemp(prefix="mock-realtime-test-")
        cmd = [sys.executable, MOCK, "--port", "0", "--control-dir", self.dir, "--seed", "test", *args]
        if tls:
            cmd += ["--tls-cert", tls["cert"], "--tls-key", tls["key"]]
        self.stderr = open(os.path.join(self.dir, "stderr.txt"), "w+")
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self.stderr, text=True)
        ready, _, _ = select.select([self.proc.stdout], [], [], 15)
        line = self.proc.stdout.readline() if ready else ""
        if not line.startswith("listening on 127.0.0.1:"):
            self.stop()
            raise RuntimeError(f"mock did not start: {line!r} {self.read_stderr()}")
        self.port = int(line.strip().rsplit(":", 1)[1])
        self.scheme = "wss" if tls else "ws"

    @property
    def base(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}/v1"

    @property
    def url(self) -> str:
        return f"{self.base}/realtime?model=gpt-realtime"

    def read_stderr(self) -> str:
        if not self.stderr.closed:
            self.stderr.flush()
        with open(self.stderr.name) as f:
            return f.read()

    def stop(self) -> Optional[int]:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc.stdout.close()
        self.stderr.close()
        return self.proc.returncode

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def connections(self) -> int:
        with open(os.path.join(self.dir, "connections")) as f:
            return int(f.read())

    def next_scenario(self, *lines: str) -> None:
        tmp = os.path.join(self.dir, "next-scenario.tmp")
        with open(tmp, "w") as f:
            f.write("".join(l + "\n" for l in lines))
        os.replace(tmp, os.path.join(self.dir, "next-scenario"))

    def log(self, n: int) -> List[dict]:
        with open(os.path.join(self.dir, f"connection-{n}.jsonl")) as f:
            return [json.loads(l) for l in f if l.strip()]

    def audio(self, n: int) -> dict:
        with open(os.path.join(self.dir, f"connection-{n}.audio.json")) as f:
            return json.load(f)

    async def wait_log(self, n: int, pred: Callable[[dict], bool], timeout: float = 5) -> dict:
        """Wait (without blocking the event loop) for a record of connection-N.jsonl."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                for rec in self.log(n):
                    if pred(rec):
                        return rec
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"no matching record in connection-{n}.jsonl")
            await asyncio.sleep(0.02)


class Events:
    """Receives (with either the SDK connection or a raw websockets one), parses and validates."""

    def __init__(self, conn: Any, sdk: bool = True):
        self.conn, self.sdk = conn, sdk
        self.all: List[dict] = []
        self.invalid: List[str] = []

    async def recv(self, timeout: float = 5.0) -> dict:
        raw = await asyncio.wait_for(self.conn.recv_bytes() if self.sdk else self.conn.recv(), timeout)
        ev = json.loads(raw)
        err = validate_event(ev)
        if err:
            self.invalid.append(f"{ev.get('type')}: {err}")
        self.all.append(ev)
        return ev

    async def until(self, etype: str, timeout: float = 5.0, pred: Callable[[dict], bool] = lambda e: True) -> List[dict]:
        out = []
        deadline = time.monotonic() + timeout
        while True:
            ev = await self.recv(max(0.01, deadline - time.monotonic()))
            out.append(ev)
            if ev["type"] == etype and pred(ev):
                return out

    async def send(self, event: Any) -> None:
        text = event if isinstance(event, str) else json.dumps(event)
        if self.sdk:
            await self.conn.send_raw(text)
        else:
            await self.conn.send(text)

    async def nothing_for(self, seconds: float) -> None:
        try:
            ev = await self.recv(seconds)
        except asyncio.TimeoutError:
            return
        raise AssertionError(f"unexpected event {ev['type']}")


def types(events: List[dict]) -> List[str]:
    return [e["type"] for e in events]


def squash(ts: List[str], *repeated: str) -> List[str]:
    """Collapse runs of the given (delta) types into one entry each."""
    out: List[str] = []
    for t in ts:
        if t in repeated and out and out[-1] == t:
            continue
        out.append(t)
    return out


def sdk_client(mock: Mock, **kw: Any) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(api_key=KEY, websocket_base_url=mock.base, max_retries=0, **kw)


async def append_audio(conn: Any, data: bytes, chunk_ms: int = 100) -> None:
    step = 24000 * 2 * chunk_ms // 1000
    for i in range(0, len(data), step):
        await conn.input_audio_buffer.append(audio=base64.b64encode(data[i:i + step]).decode())


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 60))


class MockTestCase(unittest.TestCase):
    mock_args: tuple = ("--pace", "0.2", "--audio-ms", "500")

    @classmethod
    def setUpClass(cls) -> None:
        cls.mock = Mock(*cls.mock_args)

    @classmethod
    def tearDownClass(cls) -> None:
        rc = cls.mock.stop()
        err = cls.mock.read_stderr() if os.path.exists(cls.mock.stderr.name) else ""
        shutil.rmtree(cls.mock.dir, ignore_errors=True)
        assert rc == 0, f"mock exited {rc}"
        assert "Traceback" not in err and "mock sent an invalid" not in err, err

    def assertValid(self, ev: Events) -> None:
        self.assertEqual(ev.invalid, [], "server events that fail the SDK schema")

    def assertNoMockBugs(self, n: int) -> None:
        bugs = [r for r in self.mock.log(n) if r["kind"] == "mock_bug"]
        self.assertEqual(bugs, [])


class VoiceAndText(MockTestCase):
    def test_voice_turn(self) -> None:
        async def body() -> None:
            async with sdk_client(self.mock).realtime.connect(model="gpt-realtime") as conn:
                ev = Events(conn)
                created = await ev.recv()
                n = self.mock.connections()
                self.assertEqual(created["type"], "session.created")
                s = created["session"]
                self.assertTrue(s["id"].startswith("sess_"))
                self.assertEqual((s["object"], s["type"], s["model"]), ("realtime.session", "realtime", "gpt-realtime"))
                self.assertEqual(s["output_modalities"], ["audio"])
                self.assertEqual(s["audio"]["input"]["turn_detection"]["type"], "server_vad")
                await conn.session.update(session={
                    "type": "realtime", "instructions": INSTRUCTIONS, "tools": [END_TOOL],
                    "audio": {"input": {"transcription": {"model": "gpt-4o-mini-transcribe"},
                                        "turn_detection": {"type": "server_vad", "silence_duration_ms": 500}},
                              "output": {"voice": "cedar"}}})
                upd = (await ev.until("session.updated"))[-1]["session"]
                self.assertEqual(upd["instructions"], INSTRUCTIONS)
                self.assertEqual(upd["id"], s["id"])
                self.assertEqual(upd["audio"]["output"]["voice"], "cedar")
                td = upd["audio"]["input"]["turn_detection"]
                self.assertEqual((td["silence_duration_ms"], td["prefix_padding_ms"], td["create_response"]),
                                 (500, 300, True))

                # The greeting and question 1, as audio.
                await conn.response.create()
                first = await ev.until("response.done")
                self.assertEqual(squash(types(first), "response.output_audio.delta",
                                        "response.output_audio_transcript.delta")[:5],
                                 ["response.created", "rate_limits.updated", "response.output_item.added",
                                  "conversation.item.added", "response.content_part.added"])
                self.assertEqual(types(first)[-6:], [
                    "response.output_audio.done", "response.output_audio_transcript.done",
                    "response.content_part.done", "response.output_item.done", "conversation.item.done",
                    "response.done"])
                deltas = [base64.b64decode(e["delta"]) for e in first if e["type"] == "response.output_audio.delta"]
                self.assertEqual(len(deltas), 10)                      # 500 ms in 50 ms deltas
                self.assertTrue(all(len(d) == 2400 for d in deltas))   # 50 ms of PCM16 24 kHz mono
                heard = b"".join(deltas)
                self.assertEqual(sha(heard), sha(mock_realtime.tone_audio(1, 0, 500)))
                text = "".join(e["delta"] for e in first if e["type"] == "response.output_audio_transcript.delta")
                want = f"Hello, and welcome to the interview. Question 1: {QUESTIONS[0]}"
                self.assertEqual(text, want)
                done = first[-1]["response"]
                self.assertEqual(done["status"], "completed")
                self.assertEqual(done["output"][0]["content"], [{"type": "output_audio", "transcript": want}])
                self.assertEqual(done["audio"]["output"]["voice"], "cedar")

                # The candidate speaks 700 ms, then is silent: VAD commits, transcribes, answers.
                spoken = pcm_tone(700) + pcm_silence(700)
                await append_audio(conn, spoken)
                second = await ev.until("response.done")
                ts = types(second)
                self.assertEqual(squash(ts, "conversation.item.input_audio_transcription.delta")[:8], [
                    "input_audio_buffer.speech_started", "input_audio_buffer.speech_stopped",
                    "input_audio_buffer.committed", "conversation.item.added", "conversation.item.done",
                    "conversation.item.input_audio_transcription.delta",
                    "conversation.item.input_audio_transcription.completed", "response.created"])
                started, stopped, committed = second[0], second[1], second[2]
                self.assertEqual((started["audio_start_ms"], stopped["audio_end_ms"]), (0, 700))
                self.assertEqual(started["item_id"], committed["item_id"])
                self.assertEqual(committed["previous_item_id"], done["output"][0]["id"])
                user = second[3]["item"]
                self.assertEqual((user["role"], user["content"][0]["type"]), ("user", "input_audio"))
                completed = next(e for e in second if e["type"].endswith("transcription.completed"))
                self.assertEqual(completed["transcript"], "candidate answer 1 (700 ms of speech)")
                self.assertEqual("".join(e["delta"] for e in second if e["type"].endswith("transcription.delta")),
                                 completed["transcript"])
                text2 = next(e for e in second if e["type"] == "response.output_audio_transcript.done")["transcript"]
                self.assertEqual(text2, f"Thank you. Question 2: {QUESTIONS[1]}")
                heard2 = b"".join(base64.b64decode(e["delta"]) for e in second
                                  if e["type"] == "response.output_audio.delta")
                self.assertValid(ev)

            audio = self.mock.audio(n)
            self.assertEqual(audio["input"], {"bytes": len(spoken), "sha256": sha(spoken), "ms": 1400.0,
                                              "format": "audio/pcm"})
            turn = audio["turns"][0]
            self.assertEqual((turn["speech_ms"], turn["bytes"]), (700, 24000 * 2 * 1200 // 1000))
            self.assertEqual(turn["sha256"], sha(spoken[:turn["bytes"]]))
            self.assertEqual([r["sha256"] for r in audio["responses"]], [sha(heard), sha(heard2)])
            self.assertEqual(audio["responses"][1]["sha256"], sha(mock_realtime.tone_audio(2, 0, 500)))
            log = self.mock.log(n)
            self.assertEqual(log[0]["kind"], "connect")
            self.assertEqual(log[0]["status"], 101)
            self.assertEqual(log[0]["headers"]["authorization"], f"Bearer {KEY}")
            self.assertEqual(log[0]["query"], {"model": "gpt-realtime"})
            client = [r for r in log if r["kind"] == "client"]
            self.assertTrue(all(r["valid"] for r in client))
            upd_rec = next(r for r in client if r["type"] == "session.update")
            for q in QUESTIONS:
                self.assertIn(q, upd_rec["event"]["session"]["instructions"])
            self.assertFalse(any(r["type"] == "conversation.item.create"
                                 and r["event"]["item"].get("role") == "system" for r in client))
            appends = [r for r in client if r["type"] == "input_audio_buffer.append"]
            self.assertEqual(sum(r["audio_bytes"] for r in appends), len(spoken))
            self.assertNoMockBugs(n)

        run(body())

    def test_text_turn(self) -> None:
        async def body() -> None:
            async with sdk_client(self.mock).realtime.connect(model="gpt-realtime") as conn:
                ev = Events(conn)
                await ev.until("session.created")
                n = self.mock.connections()
                await conn.session.update(session={"type": "realtime", "instructions": INSTRUCTIONS,
                                                   "output_modalities": ["text"],
                                                   "audio": {"input": {"turn_detection": None}}})
                upd = (await ev.until("session.updated"))[-1]["session"]
                self.assertIsNone(upd["audio"]["input"]["turn_detection"])
                await conn.response.create()
                first = await ev.until("response.done")
                self.assertEqual(squash(types(first), "response.output_text.delta"), [
                    "response.created", "rate_limits.updated", "response.output_item.added",
                    "conversation.item.added", "response.content_part.added", "response.output_text.delta",
                    "response.output_text.done", "response.content_part.done", "response.output_item.done",
                    "conversation.item.done", "response.done"])
                want = f"Hello, and welcome to the interview. Question 1: {QUESTIONS[0]}"
                self.assertEqual("".join(e["delta"] for e in first if e["type"] == "response.output_text.delta"), want)
                self.assertEqual(first[-1]["response"]["output"][0]["content"], [{"type": "output_text", "text": want}])
                self.assertNotIn("audio", first[-1]["response"])
                assistant_id = first[-1]["response"]["output"][0]["id"]

                await conn.conversation.item.create(item={
                    "type": "message", "role": "user",
                    "content": [{"type": "input_text", "text": "I designed a billing pipeline."}]})
                added, done_ = await ev.until("conversation.item.added"), await ev.until("conversation.item.done")
                self.assertEqual(added[-1]["previous_item_id"], assistant_id)
                self.assertEqual(done_[-1]["item"]["content"], [{"type": "input_text",
                                                                 "text": "I designed a billing pipeline."}])
                self.assertEqual(done_[-1]["item"]["status"], "completed")
                await conn.response.create()
                second = await ev.until("response.done")
                self.assertEqual(next(e for e in second if e["type"] == "response.output_text.done")["text"],
                                 f"Thank you. Question 2: {QUESTIONS[1]}")
                self.assertValid(ev)
            self.assertNoMockBugs(n)

        run(body())

    def test_real_pace(self) -> None:
        async def body() -> None:
            self.mock.next_scenario("pace=1 audio_ms=1000")
            async with sdk_client(self.mock).realtime.connect(model="gpt-realtime") as conn:
                ev = Events(conn)
                await ev.until("session.created")
                sent = time.monotonic()
                await conn.response.create()
                stamps = []
                while True:
                    e = await ev.recv()
                    if e["type"] == "response.output_audio.delta":
                        stamps.append(time.monotonic())
                    if e["type"] == "response.done":
                        end = time.monotonic()
                        break
                self.assertEqual(len(stamps), 20)
                # Lower bounds from the request (a loaded machine can only make them later):
                # delta i goes out 50 ms x i after the response starts, response.done after 1 s.
                self.assertGreaterEqual(stamps[10] - sent, 0.5)
                self.assertGreaterEqual(stamps[19] - sent, 0.95)
                self.assertGreaterEqual(end - sent, 1.0)
                self.assertValid(ev)

        run(body())


class Functions(MockTestCase):
    mock_args = ("--pace", "0", "--audio-ms", "200")

    async def _text_session(self, conn: Any, ev: Events, tools: List[dict]) -> None:
        await ev.until("session.created")
        await conn.session.update(session={"type": "realtime", "instructions": INSTRUCTIONS, "tools": tools,
                                           "output_modalities": ["text"], "audio": {"input": {"turn_detection": None}}})
        await ev.until("session.updated")

    async def _answer(self, conn: Any, ev: Events, text: str) -> List[dict]:
        await conn.conversation.item.create(item={"type": "message", "role": "user",
                                                  "content": [{"type": "input_text", "text": text}]})
        await ev.until("conversation.item.done")
        await conn.response.create()
        return await ev.until("response.done")

    def test_end_interview_flow(self) -> None:
        async def body() -> None:
            self.mock.next_scenario("turns=2")
            async with sdk_client(self.mock).realtime.connect(model="gpt-realtime") as conn:
                ev = Events(conn)
                await self._text_session(conn, ev, [END_TOOL])
                n = self.mock.connections()
                await conn.response.create()
                await ev.until("response.done")
                r = await self._answer(conn, ev, "first answer")
                self.assertIn("Question 2:", next(e for e in r if e["type"] == "response.output_text.done")["text"])
                call = await self._answer(conn, ev, "second answer")
                self.assertEqual(squash(types(call), "response.function_call_arguments.delta"), [
                    "response.created", "rate_limits.updated", "response.output_item.added",
                    "conversation.item.added", "response.function_call_arguments.delta",
                    "response.function_call_arguments.done", "response.output_item.done",
                    "conversation.item.done", "response.done"])
                added = call[2]["item"]
                self.assertEqual((added["type"], added["name"], added["arguments"], added["status"]),
                                 ("function_call", "end_interview", "", "in_progress"))
                args_done = next(e for e in call if e["type"] == "response.function_call_arguments.done")
                self.assertEqual("".join(e["delta"] for e in call if e["type"] == "response.function_call_arguments.delta"),
                                 args_done["arguments"])
                self.assertEqual(json.loads(args_done["arguments"]),
                                 {"reason": "all questions have been asked", "completed": True})
                self.assertEqual(args_done["name"], "end_interview")
                item = call[-1]["response"]["output"][0]
                self.assertEqual((item["type"], item["status"], item["call_id"]),
                                 ("function_call", "completed", args_done["call_id"]))
                self.assertTrue(item["call_id"].startswith("call_"))

                await conn.conversation.item.create(item={"type": "function_call_output", "call_id": item["call_id"],
                                                          "output": json.dumps({"ok": True})})
                out = (await ev.until("conversation.item.done"))[-1]["item"]
                self.assertEqual((out["type"], out["call_id"]), ("function_call_output", item["call_id"]))
                await conn.response.create()
                closing = await ev.until("response.done")
                self.assertEqual(next(e for e in closing if e["type"] == "response.output_text.done")["text"],
                                 mock_realtime.CLOSING)
                await conn.response.create()
                over = await ev.until("response.done")
                self.assertEqual(next(e for e in over if e["type"] == "response.output_text.done")["text"],
                                 mock_realtime.OVER)
                self.assertValid(ev)
            plans = [r["plan"] for r in self.mock.log(n) if r["kind"] == "response"]
            self.assertEqual(plans, ["say", "say", "call", "say", "say"])
            self.assertNoMockBugs(n)

        run(body())

    def test_no_tool_means_closing_remark(self) -> None:
        async def body() -> None:
            self.mock.next_scenario("turns=1")
            async with sdk_client(self.mock).realtime.connect(model="gpt-realtime") as conn:
                ev = Events(conn)
                await self._text_session(conn, ev, [])
                await conn.response.create()
                await ev.until("response.done")
                r = await self._answer(conn, ev, "my answer")
                self.assertEqual(next(e for e in r if e["type"] == "response.output_text.done")["text"],
                                 mock_realtime.CLOSING)
                self.assertValid(ev)

        run(body())

    def test_all_parsed_questions_are_asked_by_default(self) -> None:
        async def body() -> None:
            async with sdk_client(self.mock).realtime.connect(model="gpt-realtime") as conn:
                ev = Events(conn)
                await self._text_session(conn, ev, [END_TOOL])
                await conn.response.create()
                said = [next(e for e in await ev.until("response.done") if e["type"] == "response.output_text.done")]
                for i in range(3):
                    said.append(next(e for e in await self._answer(conn, ev, f"answer {i}")
                                     if e["type"] in ("response.output_text.done",
                                                      "response.function_call_arguments.done")))
                self.assertEqual([e.get("text", e["type"]) for e in said], [
                    f"Hello, and welcome to the interview. Question 1: {QUESTIONS[0]}",
                    f"Thank you. Question 2: {QUESTIONS[1]}", f"Thank you. Question 3: {QUESTIONS[2]}",
                    "response.function_call_arguments.done"])
                self.assertValid(ev)

        run(body())


class G711(MockTestCase):
    mock_args = ("--pace", "0", "--audio-ms", "200")

    def test_pcmu_in_pcma_out(self) -> None:
        async def body() -> None:
            async with sdk_client(self.mock).realtime.connect(model="gpt-realtime") as conn:
                ev = Events(conn)
                await ev.until("session.created")
                n = self.mock.connections()
                await conn.session.update(session={"type": "realtime", "audio": {
                    "input": {"format": {"type": "audio/pcmu"}, "transcription": {"model": "gpt-4o-transcribe"}},
                    "output": {"format": {"type": "audio/pcma"}}}})
                upd = (await ev.until("session.updated"))[-1]["session"]["audio"]
                self.assertEqual((upd["input"]["format"], upd["output"]["format"]),
                                 ({"type": "audio/pcmu"}, {"type": "audio/pcma"}))
                ulaw = mock_realtime.AudioFormat("audio/pcmu")
                tone = array("h", pcm_tone(400)).tolist()[::3]          # 8 kHz
                sent = ulaw.encode(tone) + ulaw.encode([0] * 8 * 700)
                for i in range(0, len(sent), 800):                       # 100 ms chunks
                    await conn.input_audio_buffer.append(audio=base64.b64encode(sent[i:i + 800]).decode())
                got = await ev.until("response.done")
                done = next(e for e in got if e["type"].endswith("transcription.completed"))
                self.assertEqual(done["transcript"], "candidate answer 1 (400 ms of speech)")
                deltas = [base64.b64decode(e["delta"]) for e in got if e["type"] == "response.output_audio.delta"]
                self.assertEqual([len(d) for d in deltas], [400] * 4)   # 50 ms of 8 kHz A-law
                self.assertEqual(b"".join(deltas), mock_realtime.tone_audio(1, 0, 200, "audio/pcma"))
                self.assertEqual(got[-1]["response"]["audio"]["output"]["format"], {"type": "audio/pcma"})
                self.assertValid(ev)
            self.assertEqual(self.mock.audio(n)["input"]["sha256"], sha(sent))

        run(body())


class AudioControl(MockTestCase):
    mock_args = ("--pace", "1", "--audio-ms", "3000")

    async def _audio_session(self, conn: Any, ev: Events, **audio_input: Any) -> int:
        await ev.until("session.created")
        await conn.session.update(session={"type": "realtime", "instructions": INSTRUCTIONS,
                                           "audio": {"input": {"transcription": {"model": "whisper-1"},
                                                               **audio_input}}})
        await ev.until("session.updated")
        return self.mock.connections()

    def test_manual_commit_and_clear(self) -> None:
        async def body() -> None:
            async with sdk_client(self.mock).realtime.connect(model="gpt-realtime") as conn:
                ev = Events(conn)
                n = await self._audio_session(conn, ev, turn_detection=None)
                sent = pcm_silence(100) + pcm_tone(300) + pcm_silence(100)
                await append_audio(conn, sent)
                await conn.input_audio_buffer.commit()
                got = await ev.until("conversation.item.input_audio_transcription.completed")
                self.assertEqual(squash(types(got), "conversation.item.input_audio_transcription.delta"), [
                    "input_audio_buffer.committed", "conversation.item.added", "conversation.item.done",
                    "conversation.item.input_audio_transcription.delta",
                    "conversation.item.input_audio_transcription.completed"])
                self.assertEqual(got[-1]["transcript"], "candidate answer 1 (300 ms of speech)")
                self.assertEqual(got[-1]["usage"], {"type": "duration", "seconds": 0.5})
                await ev.nothing_for(0.4)                    # no VAD, no automatic response
                await conn.input_audio_buffer.commit(event_id="c-empty")
                err = (await ev.until("error"))[-1]["error"]
                self.assertEqual((err["type"], err["code"], err["event_id"]),
                                 ("invalid_request_error", "input_audio_buffer_commit_empty", "c-empty"))
                await append_audio(conn, pcm_tone(200))
                await conn.input_audio_buffer.clear()
                await ev.until("input_audio_buffer.cleared")
                await conn.input_audio_buffer.commit()
                self.assertEqual((await ev.until("error"))[-1]["error"]["code"], "input_audio_buffer_commit_empty")
                self.assertValid(ev)
            audio = self.mock.audio(n)
            self.assertEqual(audio["input"]["sha256"], sha(sent + pcm_tone(200)))
            self.assertEqual(audio["turns"][0]["sha256"], sha(sent))
            self.assertEqual(audio["turns"][0]["speech_ms"], 300)

        run(body())

    def test_cancel_truncate_retrieve_delete(self) -> None:
        async def body() -> None:
            async with sdk_client(self.mock).realtime.connect(model="gpt-realtime") as conn:
                ev = Events(conn)
                n = await self._audio_session(conn, ev)
                await conn.response.create()
                await ev.until("response.output_audio.delta")
                await ev.until("response.output_audio.delta")
                await conn.response.cancel()
                rest = await ev.until("response.done")
                done = rest[-1]["response"]
                self.assertEqual(done["status"], "cancelled")
                self.assertEqual(done["status_details"], {"type": "cancelled", "reason": "client_cancelled"})
                self.assertEqual(done["output"][0]["status"], "incomplete")
                heard = b"".join(base64.b64decode(e["delta"]) for e in ev.all
                                 if e["type"] == "response.output_audio.delta")
                self.assertLess(len(heard), 24000 * 2)       # well short of the 3 s
                rec = self.mock.audio(n)["responses"][0]
                self.assertEqual((rec["status"], rec["sha256"], rec["audio_bytes"]), ("cancelled", sha(heard), len(heard)))
                item_id = done["output"][0]["id"]

                await conn.response.cancel(event_id="c-cancel")
                err = (await ev.until("error"))[-1]["error"]
                self.assertEqual((err["code"], err["event_id"]), ("response_cancel_not_active", "c-cancel"))
                await conn.conversation.item.truncate(item_id=item_id, content_index=0, audio_end_ms=50)
                tr = (await ev.until("conversation.item.truncated"))[-1]
                self.assertEqual((tr["item_id"], tr["audio_end_ms"], tr["content_index"]), (item_id, 50, 0))
                await conn.conversation.item.truncate(item_id=item_id, content_index=0, audio_end_ms=60_000)
                self.assertEqual((await ev.until("error"))[-1]["error"]["param"], "audio_end_ms")
                await conn.conversation.item.retrieve(item_id=item_id)
                got = (await ev.until("conversation.item.retrieved"))[-1]["item"]
                self.assertEqual(base64.b64decode(got["content"][0]["audio"]), mock_realtime.tone_audio(1, 0, 50))
                await conn.conversation.item.retrieve(item_id="item_nope")
                self.assertEqual((await ev.until("error"))[-1]["error"]["param"], "item_id")
                await conn.output_audio_buffer.clear()
                self.assertEqual((await ev.until("output_audio_buffer.cleared"))[-1]["response_id"], done["id"])
                await conn.conversation.item.delete(item_id=item_id)
                self.assertEqual((await ev.until("conversation.item.deleted"))[-1]["item_id"], item_id)
                await conn.conversation.item.retrieve(item_id=item_id)
                await ev.until("error")
                self.assertValid(ev)
            self.assertNoMockBugs(n)

        run(body())

    def test_second_response_create_while_active_is_refused(self) -> None:
        async def body() -> None:
            async with sdk_client(self.mock).realtime.connect(model="gpt-realtime") as conn:
                ev = Events(conn)
                await self._audio_session(conn, ev)
                await conn.response.create()
                await ev.until("response.created")
                await conn.response.create(event_id="c-second")
                err = (await ev.until("error"))[-1]["error"]
                self.assertEqual((err["code"], err["event_id"]),
                                 ("conversation_already_has_active_response", "c-second"))
                await conn.response.cancel()
                await ev.until("response.done")
                self.assertValid(ev)

        run(body())

    def test_speech_interrupts_response(self) -> None:
        async def body() -> None:
            async with sdk_client(self.mock).realtime.connect(model="gpt-realtime") as conn:
                ev = Events(conn)
                await self._audio_session(conn, ev)
                await conn.response.create()
                await ev.until("response.output_audio.delta")
                await append_audio(conn, pcm_tone(400))
                got = await ev.until("response.done")
                self.assertIn("input_audio_buffer.speech_started", types(got))
                self.assertEqual(got[-1]["response"]["status_details"], {"type": "cancelled", "reason": "turn_detected"})
                await append_audio(conn, pcm_silence(600))
                after = await ev.until("response.created")
                self.assertEqual(types(after)[:3], ["input_audio_buffer.speech_stopped", "input_audio_buffer.committed",
                                                    "conversation.item.added"])
                await conn.response.cancel()
                await ev.until("response.done")
                self.assertValid(ev)

        run(body())


    def test_one_append_with_a_whole_turn_interrupts_then_answers(self) -> None:
        async def body() -> None:
            async with sdk_client(self.mock).realtime.connect(model="gpt-realtime") as conn:
                ev = Events(conn)
                await self._audio_session(conn, ev)
                await conn.response.create()
                await ev.until("response.output_audio.delta")
                await append_audio(conn, pcm_tone(400) + pcm_silence(600), chunk_ms=1000)
                got = await ev.until("response.created")
                order = [t for t in types(got) if t in (
                    "input_audio_buffer.speech_started", "response.done", "input_audio_buffer.speech_stopped",
                    "input_audio_buffer.committed", "response.created")]
                self.assertEqual(order, ["input_audio_buffer.speech_started", "response.done",
                                         "input_audio_buffer.speech_stopped", "input_audio_buffer.committed",
                                         "response.created"])
                await conn.response.cancel()
                await ev.until("response.done")
                self.assertValid(ev)

        run(body())


class ClientValidation(MockTestCase):
    mock_args = ("--pace", "0", "--audio-ms", "100")

    def test_invalid_client_events(self) -> None:
        cases = [
            ("{not json", "invalid_json", None),
            ({"type": "bogus.event", "event_id": "e1"}, "invalid_value", "type"),
            ({"event_id": "e2"}, "missing_required_parameter", "type"),
            ({"type": "conversation.item.retrieve", "event_id": "e3"}, "missing_required_parameter", "item_id"),
            ({"type": "conversation.item.truncate", "event_id": "e4", "item_id": "x", "content_index": "0",
              "audio_end_ms": 1}, "invalid_type", "content_index"),
            ({"type": "session.update", "event_id": "e5", "session": {"type": "realtime", "bogus": 1}},
             "unknown_parameter", "session.bogus"),
            ({"type": "conversation.item.create", "event_id": "e6", "item": {
                "type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi", "annotations": []}]}},
             "unknown_parameter", "item.content[0].annotations"),
            ({"type": "conversation.item.create", "event_id": "e7", "item": {
                "type": "message", "role": "user", "content": [{"type": "input_txt", "text": "hi"}]}},
             "invalid_value", "item.content[0].type"),
            ({"type": "session.update", "event_id": "e8", "session": {
                "type": "realtime", "audio": {"input": {"turn_detection": {"type": "server_vad",
                                                                           "silence_duration_ms": 500.5}}}}},
             "invalid_type", "session.audio.input.turn_detection.silence_duration_ms"),
            ({"type": "input_audio_buffer.append", "event_id": "e9", "audio": "!!not base64!!"}, "invalid_value", "audio"),
            ({"type": "response.create", "event_id": "e10", "response": {"output_modalities": ["video"]}},
             "invalid_value", "response.output_modalities[0]"),
        ]

        async def body() -> None:
            async with sdk_client(self.mock).realtime.connect(model="gpt-realtime") as conn:
                ev = Events(conn)
                await ev.until("session.created")
                n = self.mock.connections()
                for event, code, param in cases:
                    await ev.send(event)
                    err = (await ev.until("error"))[-1]["error"]
                    want_eid = event.get("event_id") if isinstance(event, dict) else None
                    self.assertEqual((err["type"], err["code"], err["param"], err["event_id"]),
                                     ("invalid_request_error", code, param, want_eid), f"{event}: {err}")
                # Still usable afterwards.
                await conn.response.create()
                await ev.until("response.done")
                self.assertValid(ev)
            client = [r for r in self.mock.log(n) if r["kind"] == "client"]
            self.assertEqual([r["valid"] for r in client], [False] * len(cases) + [True])
            self.assertEqual([r["error"]["code"] for r in client[:-1]], [c[1] for c in cases])

        run(body())

    def test_every_sdk_helper_sends_a_valid_event(self) -> None:
        async def body() -> None:
            async with sdk_client(self.mock).realtime.connect(model="gpt-realtime") as conn:
                ev = Events(conn)
                await ev.until("session.created")
                n = self.mock.connections()
                await conn.session.update(session={"type": "realtime", "output_modalities": ["text"],
                                                   "tool_choice": "auto", "max_output_tokens": 512,
                                                   "audio": {"input": {"format": {"type": "audio/pcm", "rate": 24000},
                                                                       "noise_reduction": {"type": "near_field"},
                                                                       "turn_detection": {"type": "semantic_vad",
                                                                                          "eagerness": "high"}}}})
                await ev.until("session.updated")
                await conn.input_audio_buffer.append(audio=base64.b64encode(pcm_silence(20)).decode())
                await conn.input_audio_buffer.clear()
                await ev.until("input_audio_buffer.cleared")
                await conn.conversation.item.create(item={"type": "message", "role": "system",
                                                          "content": [{"type": "input_text", "text": "note"}]})
                await ev.until("conversation.item.done")
                await conn.response.create(response={"output_modalities": ["text"], "metadata": {"k": "v"},
                                                     "conversation": "none", "instructions": "Be brief."})
                done = (await ev.until("response.done"))[-1]["response"]
                self.assertEqual((done["metadata"], done["conversation_id"]), ({"k": "v"}, None))
                self.assertValid(ev)
            client = [r for r in self.mock.log(n) if r["kind"] == "client"]
            self.assertTrue(all(r["valid"] for r in client), client)
            self.assertTrue(any(r["type"] == "conversation.item.create" and r["event"]["item"]["role"] == "system"
                                for r in client))

        run(body())


class HttpAndAuth(unittest.TestCase):
    def test_handshake_checks(self) -> None:
        mock = Mock("--expect-key", KEY)
        try:
            async def status(url: str, headers: Dict[str, str]) -> int:
                try:
                    async with ws_connect(url, additional_headers=headers, open_timeout=5):
                        return 101
                except InvalidStatus as e:
                    return e.response.status_code

            async def body() -> None:
                auth = {"Authorization": f"Bearer {KEY}"}
                self.assertEqual(await status(mock.url, {}), 401)
                self.assertEqual(await status(mock.url, {"Authorization": "Bearer sk-wrong"}), 401)
                self.assertEqual(await status(mock.url.replace("/v1/realtime", "/v1/realtim"), auth), 404)
                self.assertEqual(await status(mock.url.replace("?model=gpt-realtime", ""), auth), 400)
                self.assertEqual(await status(mock.url, {**auth, "OpenAI-Beta": "realtime=v1"}), 400)
                self.assertEqual(await status(mock.url, auth), 101)
                # A wrong key through the SDK fails at the handshake.
                bad = openai.AsyncOpenAI(api_key="sk-wrong", websocket_base_url=mock.base, max_retries=0)
                with self.assertRaises(Exception):
                    async with bad.realtime.connect(model="gpt-realtime"):
                        pass
                async with sdk_client(mock).realtime.connect(model="gpt-realtime") as conn:
                    self.assertEqual((await Events(conn).recv())["type"], "session.created")

            run(body())
            self.assertEqual(mock.connections(), 8)
            self.assertEqual([mock.log(i)[0]["status"] for i in range(1, 9)], [401, 401, 404, 400, 400, 101, 401, 101])
            body401 = mock.log(1)[0]
            self.assertNotIn("authorization", body401["headers"])
        finally:
            self.assertEqual(mock.stop(), 0)
            mock.cleanup()


class Scenarios(MockTestCase):
    mock_args = ("--pace", "0", "--audio-ms", "200")

    async def _connect_raw(self) -> Any:
        return await ws_connect(self.mock.url, additional_headers={"Authorization": f"Bearer {KEY}"},
                                open_timeout=5, ping_interval=None, close_timeout=1)

    def test_refuse_then_reconnect(self) -> None:
        async def body() -> None:
            before = self.mock.connections()
            self.mock.next_scenario("refuse_connect", "refuse_connect:429")
            for want in (503, 429):
                with self.assertRaises(InvalidStatus) as cm:
                    async with sdk_client(self.mock).realtime.connect(model="gpt-realtime"):
                        pass
                self.assertEqual(cm.exception.response.status_code, want)
            async with sdk_client(self.mock).realtime.connect(model="gpt-realtime") as conn:
                self.assertEqual((await Events(conn).recv())["type"], "session.created")
            self.assertEqual(self.mock.connections(), before + 3)
            self.assertFalse(os.path.exists(os.path.join(self.mock.dir, "next-scenario")))
            self.assertEqual(self.mock.log(before + 1)[0]["scenario"], "refuse_connect")

        run(body())

    def test_close_after_events(self) -> None:
        async def body() -> None:
            self.mock.next_scenario("close_after:2")
            ws = await self._connect_raw()
            ev = Events(ws, sdk=False)
            await ev.until("session.created")
            n = self.mock.connections()
            await ev.send({"type": "session.update", "session": {"type": "realtime"}})
            await ev.until("session.updated")
            await ev.send({"type": "response.create"})
            with self.assertRaises(ConnectionClosed) as cm:
                await ev.until("response.created")
            self.assertIsNone(cm.exception.rcvd)                  # no close frame: abrupt
            await self.mock.wait_log(n, lambda r: r["kind"] == "closed")
            self.assertTrue(any(r["kind"] == "scenario" and r["reason"] == "close_after:2" for r in self.mock.log(n)))

        run(body())

    def test_close_after_responses_and_mid_response(self) -> None:
        async def body() -> None:
            self.mock.next_scenario("close_after_responses:1", "close_mid_response:1")
            for expect_done in (True, False):
                ws = await self._connect_raw()
                ev = Events(ws, sdk=False)
                await ev.until("session.created")
                await ev.send({"type": "response.create"})
                with self.assertRaises(ConnectionClosed) as cm:
                    await ev.until("never")
                self.assertIsNone(cm.exception.rcvd)
                self.assertEqual("response.done" in types(ev.all), expect_done)
                self.assertIn("response.output_audio.delta", types(ev.all))
                self.assertValid(ev)

        run(body())

    def test_silent_after(self) -> None:
        async def body() -> None:
            self.mock.next_scenario("silent_after:1")
            ws = await self._connect_raw()
            ev = Events(ws, sdk=False)
            await ev.until("session.created")
            n = self.mock.connections()
            await ev.send({"type": "response.create"})
            await ev.until("response.done")
            await ev.send({"type": "response.create"})
            await ev.nothing_for(0.5)
            pong = await ws.ping()
            with self.assertRaises(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(pong), 1.0)
            self.assertFalse(any(r["kind"] == "closed" for r in self.mock.log(n)))   # TCP still open
            ws.transport.abort()                                                   # the client goes
            await self.mock.wait_log(n, lambda r: r["kind"] == "closed" and r["silent"])
            self.assertValid(ev)

        run(body())

    def test_error_fatal(self) -> None:
        async def body() -> None:
            self.mock.next_scenario("error_fatal")
            ws = await self._connect_raw()
            ev = Events(ws, sdk=False)
            err = await ev.recv()
            self.assertEqual(err["type"], "error")
            self.assertEqual((err["error"]["type"], err["error"]["code"]), ("invalid_request_error", "invalid_api_key"))
            with self.assertRaises(ConnectionClosed) as cm:
                await ev.recv()
            self.assertEqual((cm.exception.rcvd.code, cm.exception.rcvd.reason),
                             (3000, "invalid_request_error.invalid_api_key"))
            self.assertValid(ev)

        run(body())

    def test_fail_response(self) -> None:
        async def body() -> None:
            self.mock.next_scenario("fail_response:1")
            async with sdk_client(self.mock).realtime.connect(model="gpt-realtime") as conn:
                ev = Events(conn)
                await ev.until("session.created")
                await conn.response.create()
                done = (await ev.until("response.done"))[-1]["response"]
                self.assertEqual(done["status"], "failed")
                self.assertEqual(done["status_details"]["error"]["type"], "server_error")
                await conn.response.create()
                self.assertEqual((await ev.until("response.done"))[-1]["response"]["status"], "completed")
                self.assertValid(ev)

        run(body())

    def test_slow(self) -> None:
        async def body() -> None:
            self.mock.next_scenario("slow:4 audio_ms=200")   # 4 x real time: 800 ms for 200 ms of audio
            async with sdk_client(self.mock).realtime.connect(model="gpt-realtime") as conn:
                ev = Events(conn)
                await ev.until("session.created")
                t = time.monotonic()
                await conn.response.create()
                await ev.until("response.done")
                self.assertGreater(time.monotonic() - t, 0.75)
                self.assertValid(ev)

        run(body())

    def test_late_transcript_and_persistent_scenario_file(self) -> None:
        async def body() -> None:
            path = os.path.join(self.mock.dir, "scenario")
            with open(path, "w") as f:
                f.write("late_transcript=1\n")
            try:
                async with sdk_client(self.mock).realtime.connect(model="gpt-realtime") as conn:
                    ev = Events(conn)
                    await ev.until("session.created")
                    await conn.session.update(session={"type": "realtime", "audio": {"input": {
                        "transcription": {"model": "gpt-4o-transcribe"}}}})
                    await ev.until("session.updated")
                    await append_audio(conn, pcm_tone(300) + pcm_silence(600))
                    got = types(await ev.until("response.done"))
                    self.assertLess(got.index("response.created"),
                                    got.index("conversation.item.input_audio_transcription.completed"))
                    self.assertValid(ev)
            finally:
                os.unlink(path)

        run(body())


class Tls(unittest.TestCase):
    def test_wss_with_test_ca(self) -> None:
        tmp = tempfile.mkdtemp(prefix="mock-realtime-ca-")
        mock = None
        try:
            paths = make_test_ca(tmp)
            mock = Mock("--pace", "0", "--audio-ms", "100", tls=paths)

            async def body() -> None:
                ctx = ssl.create_default_context(cafile=paths["ca"])
                for host in ("127.0.0.1", "localhost"):
                    client = openai.AsyncOpenAI(api_key=KEY, websocket_base_url=f"wss://{host}:{mock.port}/v1",
                                                max_retries=0)
                    async with client.realtime.connect(model="gpt-realtime",
                                                       websocket_connection_options={"ssl": ctx}) as conn:
                        ev = Events(conn)
                        await ev.until("session.created")
                        await conn.response.create()
                        await ev.until("response.done")
                        self.assertEqual(ev.invalid, [])
                # Without the test CA the certificate is not trusted.
                with self.assertRaises(ssl.SSLCertVerificationError):
                    async with sdk_client(mock).realtime.connect(model="gpt-realtime"):
                        pass

            run(body())
            self.assertTrue(mock.log(1)[0]["tls"])
            self.assertEqual(mock.log(1)[0]["status"], 101)
        finally:
            if mock:
                self.assertEqual(mock.stop(), 0)
                mock.cleanup()
            shutil.rmtree(tmp, ignore_errors=True)


class Shutdown(unittest.TestCase):
    def test_sigterm_with_busy_silent_and_idle_connections(self) -> None:
        mock = Mock("--pace", "1", "--audio-ms", "60000")
        try:
            async def body() -> None:
                mock.next_scenario("normal", "silent_after:0", "normal")
                hdr = {"Authorization": f"Bearer {KEY}"}
                conns = [await ws_connect(mock.url, additional_headers=hdr, ping_interval=None) for _ in range(3)]
                await conns[0].send(json.dumps({"type": "response.create"}))   # streaming a minute of audio
                await asyncio.sleep(0.3)
                t = time.monotonic()
                os.kill(mock.proc.pid, signal.SIGTERM)
                rc = await asyncio.get_running_loop().run_in_executor(None, mock.proc.wait, 5)
                elapsed = time.monotonic() - t
                self.assertEqual(rc, 0)
                self.assertLess(elapsed, 1.0)
                for ws in conns:
                    with self.assertRaises(ConnectionClosed):
                        while True:
                            await asyncio.wait_for(ws.recv(), 2)

            run(body())
            self.assertEqual([mock.log(i)[-1]["kind"] for i in (1, 2, 3)], ["closed"] * 3)
            err = mock.read_stderr()
            self.assertNotIn("Traceback", err)
        finally:
            mock.cleanup()


class Questions(unittest.TestCase):
    def test_parse_questions(self) -> None:
        pq = mock_realtime.parse_questions
        self.assertEqual(pq(INSTRUCTIONS), QUESTIONS)
        self.assertEqual(pq("Rules:\n1. Be kind.\n2. Be brief.\n\nQuestions:\nQuestion 1: Why Rust?\n"
                            "Question 2: What is a mutex?\n"), ["Why Rust?", "What is a mutex?"])
        self.assertEqual(pq("Questions to ask:\n- First one?\n- Second one?\nThen stop."), ["First one?", "Second one?"])
        self.assertEqual(pq('Script: {"questions": ["A?", "B?"]}'), ["A?", "B?"])
        self.assertEqual(pq("Ask:\n1) **Design** a cache.\n   Include eviction.\n2) Explain TCP.\n"),
                         ["**Design** a cache. Include eviction.", "Explain TCP."])
        self.assertEqual(pq("Be a helpful interviewer."), [])
        self.assertEqual(pq(None), [])
        self.assertEqual(pq("1. Only one item, no header"), [])

    def test_scenario_parsing(self) -> None:
        sc = mock_realtime.parse_scenario("slow:3 close_after_responses:2 turns=2 late_transcript=1")
        self.assertEqual((sc.pace, sc.close_after_responses, sc.turns, sc.late_transcript), (3.0, 2, 2, True))
        for bad in ("close_after", "nonsense", "turns=x", "refuse_connect:200"):
            with self.assertRaises(ValueError):
                mock_realtime.parse_scenario(bad)

    def test_g711_round_trip(self) -> None:
        for t in ("audio/pcmu", "audio/pcma"):
            f = mock_realtime.AudioFormat(t)
            samples = [0, 1000, -1000, 8000, -8000, 30000, -30000]
            back = f.samples(f.encode(samples))
            for a, b in zip(samples, back):
                self.assertLess(abs(a - b), max(64, abs(a) // 16), (t, a, b))


if __name__ == "__main__":
    unittest.main()
