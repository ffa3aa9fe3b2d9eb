"""WebSocket clients of another implementation (the Python `websockets`
package, which offers permessage-deflate by default) for
tests/tests/compression_deflate.rs.

    python3 clients.py SPEC_JSON

SPEC_JSON is a list of clients: {"url", "headers", "send": [text, ...],
"ready": substring, "until": substring, "ca": PEM file to trust (wss://)}. Each connects, sends its texts and
reads until a message containing `ready`. Then one line goes to stdout:
{"extensions": [the Sec-WebSocket-Extensions answer of each]}. After a line
on stdin, each client reads until a message containing `until` and prints
{"client": i, "text": message}; then all close.
"""

import asyncio
import json
import ssl
import sys

import websockets

WAIT = 10


async def open_client(spec):
    tls = ssl.create_default_context(cafile=spec["ca"]) if spec.get("ca") else None
    ws = await websockets.connect(
        spec["url"], additional_headers=spec.get("headers", {}), max_size=None, ssl=tls
    )
    for text in spec.get("send", []):
        await ws.send(text)
    while spec.get("ready"):
        message = await asyncio.wait_for(ws.recv(), WAIT)
        if spec["ready"] in message:
            break
    return ws


async def main():
    specs = json.loads(sys.argv[1])
    clients = [await open_client(spec) for spec in specs]
    answers = [ws.response.headers.get("Sec-WebSocket-Extensions", "") for ws in clients]
    print(json.dumps({"extensions": answers}), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    for i, (ws, spec) in enumerate(zip(clients, specs)):
        while True:
            message = await asyncio.wait_for(ws.recv(), WAIT)
            if spec["until"] in message:
                print(json.dumps({"client": i, "text": message}), flush=True)
                break
    for ws in clients:
        await ws.close()


asyncio.run(main())
