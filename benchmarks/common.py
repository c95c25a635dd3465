"""Shared helpers for the benchmarks: a null server in a subprocess, synthetic audio, result files."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
OUT = Path(os.environ.get("BK_BENCH_OUT", ROOT / "benchmarks" / "out"))


@contextlib.contextmanager
def null_server(*, cpu: int | None = None) -> Iterator[str]:
    """Start benchmarks/null_server.py in its own process (optionally pinned to a CPU)."""
    cmd = [sys.executable, "-m", "benchmarks.null_server"]
    if cpu is not None and hasattr(os, "sched_setaffinity"):
        cmd = ["taskset", "-c", str(cpu), *cmd]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        port = int(line.split()[1])
        yield f"ws://127.0.0.1:{port}/v1/prod/stream"
    finally:
        proc.terminate()
        proc.wait(10)


def speechlike(seconds: float, seed: int = 0) -> np.ndarray:
    """Int16 noise bursts at 16 kHz: content does not matter to a null server, size does."""
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(int(16000 * seconds)) * 3000).astype(np.int16)


def machine() -> dict[str, Any]:
    return {"python": platform.python_version(), "cpus": os.cpu_count(), "machine": platform.machine(),
            "processor": platform.processor() or "unknown"}


def save(name: str, result: dict[str, Any]) -> None:
    OUT.mkdir(exist_ok=True)
    result = {"machine": machine(), **result}
    (OUT / f"{name}.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


def message(kind: str, sess_id: str = "", audio: bytes | None = None) -> str:
    """A raw protocol message, as the service's own sample builds them (no client library)."""
    import base64

    body: dict[str, Any] = {"service": "stt", "type": kind, "sess_id": sess_id}
    if audio is not None:
        body["data"] = {"audio": base64.b64encode(audio).decode()}
    return json.dumps({"bk": body})


async def send_at_real_time(ws: Any, sess_id: str, pcm: bytes, t0: float) -> None:
    """Send ``pcm`` as 100 ms audioStream chunks, each once its audio has ended since ``t0``, then audioStop."""
    import asyncio
    import time

    for i, offset in enumerate(range(0, len(pcm), 3200)):
        await asyncio.sleep(max(0.0, t0 + (i + 1) * 0.1 - time.monotonic()))  # chunk i ends then
        await ws.send(message("audioStream", sess_id, pcm[offset:offset + 3200]))
    await ws.send(message("audioStop", sess_id))
