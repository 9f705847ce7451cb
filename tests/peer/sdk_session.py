#!/usr/bin/env python3
"""Run one whole interview against interviewd with the official OpenAI SDK's realtime client.

Usage: sdk_session.py URL [--model M] [--timeout S] [--max-turns N] [--settle S] [--dump FILE]

URL is the websocket base, e.g. ws://127.0.0.1:PORT/v1 (a trailing /realtime is
stripped); the SDK appends /realtime?model=M.  Flow: wait for session.created
and the first response.done; then per turn send conversation.item.create (user
input_text message), wait for conversation.item.done (role user), send
response.create, wait for response.done; stop answering once
interview.assessment.started arrives, then wait for
interview.assessment.completed and the server closing the connection.

Every received server event is validated with realtime_schema.validate_event
(same rules as validate_events.py) and, with --dump, written as one JSON line.
Any `error` event, any response.done whose status is not "completed", any
invalid event, a timeout (--timeout per wait, default 20 s) or a premature close
fails the run.  Exit 0 only if the interview completed and all events validated.

SDK finding (openai 3.54.0): the typed `recv()` / `async for` iterator parses
with `construct_type_unchecked`, i.e. without validation: an unknown type such
as `interview.assessment.started` comes back silently as a
ConversationCreatedEvent object (first union member) and a malformed known
event comes back with missing fields set to None.  So it neither rejects our
custom events nor validates anything; we use `recv_bytes()` (documented as
cancel-safe, so asyncio.wait_for timeouts lose no data) and parse/validate the
raw JSON ourselves.  Client events are still sent through the SDK's typed
helpers (conversation.item.create, response.create).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import sys
from typing import Any, Callable, Optional, TextIO

import openai
from websockets.exceptions import ConnectionClosed, ConnectionClosedOK, WebSocketException

from realtime_schema import validate_event

ANSWERS = [
    "I have five years of experience building backend services, mostly in Rust and Go.",
    "I led the migration of our billing system to an event-driven architecture.",
    "I debug by reproducing the problem first, then narrowing it down with logs and tests.",
    "When we disagree, I try to write the options down with their trade-offs and decide together.",
    "I'd like to grow into a role where I mentor others and own system design.",
]


class SessionFailure(Exception):
    pass


class Closed(Exception):
    def __init__(self, exc: ConnectionClosed):
        super().__init__(f"connection closed (code={exc.rcvd.code if exc.rcvd else None})")
        self.ok = isinstance(exc, ConnectionClosedOK)


class Peer:
    def __init__(self, conn: Any, timeout: float, dump: Optional[TextIO]):
        self.conn, self.timeout, self.dump = conn, timeout, dump
        self.received = 0
        self.invalid: list[str] = []
        self.assessment_started = False
        self._ids = itertools.count(1)

    def next_id(self) -> str:
        return f"client_evt_{next(self._ids)}"

    async def recv(self, timeout: Optional[float] = None) -> dict:
        """Receive, dump and validate one event. Raises Closed or asyncio.TimeoutError."""
        try:
            raw = await asyncio.wait_for(self.conn.recv_bytes(), timeout or self.timeout)
        except ConnectionClosed as e:
            raise Closed(e) from None
        self.received += 1
        text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
        try:
            event = json.loads(text)
        except ValueError:
            event = None
        if self.dump:
            self.dump.write((json.dumps(event) if event is not None else text) + "\n")
            self.dump.flush()
        err = validate_event(event) if event is not None else "invalid JSON"
        etype = event.get("type") if isinstance(event, dict) else None
        if err:
            self.invalid.append(f"event #{self.received} type={etype}: {err}")
            print(f"INVALID event #{self.received} type={etype}: {err}", file=sys.stderr)
        if not isinstance(event, dict):
            return {}
        if etype == "error":
            raise SessionFailure(f"server sent error: {json.dumps(event.get('error'))}")
        if etype == "interview.assessment.started":
            self.assessment_started = True
        if etype == "response.done":
            status = (event.get("response") or {}).get("status")
            if status != "completed":
                raise SessionFailure(f"response.done with status {status!r}: {json.dumps(event)}")
        return event

    async def wait_for(self, what: str, pred: Callable[[dict], bool], stop_on_assessment: bool = True) -> Optional[dict]:
        """Wait for an event matching pred; None if assessment started first (when allowed)."""
        while True:
            try:
                event = await self.recv()
            except asyncio.TimeoutError:
                raise SessionFailure(f"timed out after {self.timeout}s waiting for {what}") from None
            except Closed as e:
                raise SessionFailure(f"{e} while waiting for {what}") from None
            if pred(event):
                return event
            if stop_on_assessment and self.assessment_started:
                return None


def is_type(t: str) -> Callable[[dict], bool]:
    return lambda e: e.get("type") == t


def is_user_item_done(e: dict) -> bool:
    return e.get("type") == "conversation.item.done" and (e.get("item") or {}).get("role") == "user"


async def interview(peer: Peer, max_turns: int, settle: float) -> int:
    await peer.wait_for("session.created", is_type("session.created"), stop_on_assessment=False)
    turns = 0
    if await peer.wait_for("first response.done", is_type("response.done")) is not None:
        while True:
            # The closing remark's response.done is followed by interview.assessment.started;
            # give it a moment to arrive before we send another answer.
            try:
                while not peer.assessment_started:
                    await peer.recv(settle)
            except asyncio.TimeoutError:
                pass
            except Closed as e:
                raise SessionFailure(f"{e} before interview.assessment.started") from None
            if peer.assessment_started:
                break
            if turns >= max_turns:
                raise SessionFailure(f"no interview.assessment.started after {turns} answers")
            answer = ANSWERS[turns % len(ANSWERS)]
            turns += 1
            await peer.conn.conversation.item.create(
                event_id=peer.next_id(),
                item={"type": "message", "role": "user", "content": [{"type": "input_text", "text": answer}]},
            )
            if await peer.wait_for("conversation.item.done (user)", is_user_item_done) is None:
                break
            await peer.conn.response.create(event_id=peer.next_id())
            if await peer.wait_for("response.done", is_type("response.done")) is None:
                break
    await peer.wait_for(
        "interview.assessment.completed", is_type("interview.assessment.completed"), stop_on_assessment=False
    )
    while True:  # the server should now close the connection
        try:
            await peer.recv()
        except asyncio.TimeoutError:
            raise SessionFailure(f"server did not close the connection within {peer.timeout}s") from None
        except Closed as e:
            if not e.ok:
                raise SessionFailure(f"{e} (not a clean close) after assessment") from None
            return turns


async def run(args: argparse.Namespace) -> int:
    base = args.url.rstrip("/")
    if base.endswith("/realtime"):
        base = base[: -len("/realtime")]
    client = openai.AsyncOpenAI(api_key="test", websocket_base_url=base, max_retries=0)
    dump = open(args.dump, "w") if args.dump else None
    peer = None
    try:
        async with client.realtime.connect(model=args.model) as conn:
            peer = Peer(conn, args.timeout, dump)
            turns = await interview(peer, args.max_turns, args.settle)
    except SessionFailure as e:
        print(f"FAIL: {e}", file=sys.stderr)
        return 1
    except (OSError, asyncio.TimeoutError, openai.OpenAIError, WebSocketException) as e:
        print(f"FAIL: cannot talk to {base}/realtime: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    finally:
        if dump:
            dump.close()
    if peer.invalid:
        print(f"FAIL: {len(peer.invalid)} of {peer.received} events invalid:", file=sys.stderr)
        for line in peer.invalid:
            print(f"  {line}", file=sys.stderr)
        return 1
    print(f"OK: interview completed after {turns} answers; {peer.received} events validated")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("url", help="websocket base URL, e.g. ws://127.0.0.1:PORT/v1")
    ap.add_argument("--model", default="gpt-realtime")
    ap.add_argument("--timeout", type=float, default=20.0, help="seconds per wait (default 20)")
    ap.add_argument("--max-turns", type=int, default=50, help="give up after this many answers")
    ap.add_argument("--settle", type=float, default=0.5,
                    help="seconds to wait after response.done for interview.assessment.started")
    ap.add_argument("--dump", help="write every received event as a JSON line to this file")
    args = ap.parse_args()
    try:
        return asyncio.run(asyncio.wait_for(run(args), args.timeout * (4 * args.max_turns + 10)))
    except asyncio.TimeoutError:
        print("FAIL: overall timeout", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
