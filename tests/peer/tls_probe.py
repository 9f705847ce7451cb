#!/usr/bin/env python3
"""Connects to wss://ADDR/v1/realtime trusting CA_FILE only, reads through the
greeting (session.created ... response.done), prints the session id.

Usage: tls_probe.py ADDR CA_FILE
Exit 0 on success; 1 with the reason on stderr (e.g. a certificate error).
"""
import asyncio
import json
import ssl
import sys

import websockets


async def main(addr, ca):
    ctx = ssl.create_default_context(cafile=ca)
    async with websockets.connect(f"wss://{addr}/v1/realtime", ssl=ctx, open_timeout=10) as ws:
        session = None
        while True:
            event = json.loads(await asyncio.wait_for(ws.recv(), 10))
            if event["type"] == "session.created":
                session = event["session"]["id"]
            if event["type"] == "response.done":
                print(session)
                return


try:
    asyncio.run(main(sys.argv[1], sys.argv[2]))
except Exception as e:  # the reason is the test's evidence
    print(f"{type(e).__name__}: {e}", file=sys.stderr)
    sys.exit(1)
