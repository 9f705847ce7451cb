"""A minimal Python peer for benches/sessions.py: an asyncio `websockets`
server that does what interviewd does for an idle session (a session.created
event, a greeting, pings) and shuts down the way such servers usually do
(close every connection, then exit). It stands in for the Python service
interviewd replaces, so that figures can be given as ratios measured in the
same run on the same machine."""

import asyncio
import json
import secrets
import signal
import sys

import websockets
from websockets.asyncio.server import serve


async def session(ws):
    sid = "sess_" + secrets.token_hex(16)
    await ws.send(json.dumps({"type": "session.created", "event_id": "event_1", "session": {"type": "realtime", "id": sid}}))
    await ws.send(json.dumps({"type": "response.done", "event_id": "event_2", "response": {"status": "completed"}}))
    try:
        async for _ in ws:
            pass
    except websockets.ConnectionClosed:
        pass


async def main():
    stop = asyncio.get_running_loop().create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set_result, None)
    async with serve(session, "127.0.0.1", 0, ping_interval=20, max_size=256 * 1024) as server:
        port = server.sockets[0].getsockname()[1]
        print(f"listening on 127.0.0.1:{port}", file=sys.stderr, flush=True)
        await stop
        server.close(close_connections=True)
        await server.wait_closed()


asyncio.run(main())
