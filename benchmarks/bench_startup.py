"""Start-up: `import bk_notebook` (and what it pulls in), and local_server() to its first session.

    python -m benchmarks.bench_startup [--repeat 5]

Each figure is the best of N fresh interpreters; `python -c pass` in the same run is the baseline.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

from benchmarks.common import ROOT, save

IMPORT = r"""
import sys, time
t = time.perf_counter()
import bk_notebook
elapsed = time.perf_counter() - t
heavy = [m for m in ("librosa", "pocketsphinx", "pandas", "ipywidgets", "websockets", "numba") if m in sys.modules]
print(elapsed, ",".join(heavy))
"""

FIRST_SESSION = r"""
import asyncio, sys, time
import numpy as np
import bk_notebook as bk
engine = sys.argv[1]
t = time.perf_counter()
server = bk.local_server(engine=engine, workers=1)
started = time.perf_counter() - t
async def first():
    async with bk.Client(server.url).stream() as s:
        return time.perf_counter() - t
accepted = asyncio.run(first())
server.stop()
print(started, accepted)
"""


def best(code: str, *args: str, repeat: int) -> list[str]:
    runs = [subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT, capture_output=True, text=True,
                           check=True).stdout.split() for _ in range(repeat)]
    return min(runs, key=lambda r: float(r[0]))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    baseline = float(best("import time; t=time.perf_counter(); print(time.perf_counter()-t)", repeat=args.repeat)[0])
    imp = best(IMPORT, repeat=args.repeat)
    result = {"import_bk_notebook_s": round(float(imp[0]), 3),
              "heavy_modules_imported": imp[1] if len(imp) > 1 else "",
              "baseline_empty_s": round(baseline, 6)}
    for engine in ("energy", "pocketsphinx"):
        started, accepted = best(FIRST_SESSION, engine, repeat=args.repeat)
        result[f"local_server_{engine}_started_s"] = round(float(started), 3)
        result[f"local_server_{engine}_first_session_s"] = round(float(accepted), 3)
    print(json.dumps(result))
    save("startup", result)


if __name__ == "__main__":
    main()
