"""A null bahasakita server for benchmarks: acknowledges, answers audioStop, decodes nothing.

Run in its own process so that the client's CPU is measured alone:
``python -m benchmarks.null_server`` prints ``PORT <n>`` and serves until killed.
"""

from __future__ import annotations

import asyncio
import json
import sys
import uuid

ACK = json.dumps({"bk": {"service": "stt", "type": "audioStream", "status": 200, "message": ""}})
STOP = json.dumps({"bk": {"service": "stt", "type": "audioStop", "status": 200, "message": ""}})


async def handle(ws) -> None:
    async for message in ws:
        # Cheap routing: a full json.loads per chunk would make the server the bottleneck.
        if '"audioStream"' in message[:80]:
            await ws.send(ACK)
        elif "audioConn" in message:
            sid = uuid.uuid4().hex
            await ws.send(json.dumps({"bk": {"service": "stt", "type": "audioConn", "status": 200,
                                             "message": "", "data": {"sess_id": sid}}}))
        elif "audioStop" in message:
            await ws.send(STOP)


async def main(port: int) -> None:
    from websockets.asyncio.server import serve

    async with serve(handle, "127.0.0.1", port, max_size=2**20, max_queue=64) as server:
        print("PORT", server.sockets[0].getsockname()[1], flush=True)
        await asyncio.Future()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 0))
