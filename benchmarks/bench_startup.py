"""Start-up: `import bk_notebook` (and what it pulls in), and local_server() to its first session.

    python -m benchmarks.bench_startup [--repeat 5] [--against CHECKOUT]

Each figure is the best of N fresh interpreters; `python -c pass` in the same run is the baseline.
With ``--against`` (another checkout of the repository, e.g. ``git worktree add /tmp/before REV``)
the import is timed for both, alternating run by run so that a busy moment hurts both alike, and
also with every public name touched (what a lazy import only defers).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

from benchmarks.common import ROOT, save

# Each prints wall seconds, CPU seconds (steadier on a shared machine), then the heavy modules loaded.
IMPORT = r"""
import sys, time
t, c = time.perf_counter(), time.process_time()
import bk_notebook
elapsed, cpu = time.perf_counter() - t, time.process_time() - c
heavy = [m for m in ("librosa", "pocketsphinx", "pandas", "ipywidgets", "websockets", "numba") if m in sys.modules]
print(elapsed, cpu, ",".join(heavy))
"""

IMPORT_ALL = r"""
import time
t, c = time.perf_counter(), time.process_time()
import bk_notebook
for name in bk_notebook.__all__:
    getattr(bk_notebook, name)
print(time.perf_counter() - t, time.process_time() - c)
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


def run(code: str, *args: str, cwd: Path = ROOT) -> list[str]:
    """One fresh interpreter in ``cwd``, whose ``bk_notebook`` it imports (``-c`` puts cwd first on sys.path)."""
    return subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, capture_output=True, text=True,
                          check=True).stdout.split()


def best(code: str, *args: str, repeat: int) -> list[str]:
    return min((run(code, *args) for _ in range(repeat)), key=lambda r: float(r[0]))


def against(baseline: Path, repeat: int) -> dict[str, float]:
    """Best and median import times (wall and CPU) of this checkout and ``baseline``, run in alternation."""
    times: dict[str, list[float]] = {}
    for _ in range(repeat):
        for label, cwd in (("this", ROOT), ("baseline", baseline)):
            for what, code in (("import", IMPORT), ("import_all_names", IMPORT_ALL)):
                wall, cpu = run(code, cwd=cwd)[:2]
                times.setdefault(f"{what}_{label}_wall", []).append(float(wall))
                times.setdefault(f"{what}_{label}_cpu", []).append(float(cpu))
    result = {}
    for key, values in times.items():
        result[f"{key}_best_s"] = round(min(values), 4)
        result[f"{key}_median_s"] = round(statistics.median(values), 4)
    for what in ("import", "import_all_names"):
        for clock in ("wall", "cpu"):
            for stat in ("best", "median"):
                ratio = result[f"{what}_this_{clock}_{stat}_s"] / result[f"{what}_baseline_{clock}_{stat}_s"]
                result[f"{what}_{clock}_ratio_{stat}"] = round(ratio, 3)
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--against", type=Path, help="another checkout to compare the import with")
    args = parser.parse_args()
    if args.against:
        result = against(args.against.resolve(), args.repeat)
        print(json.dumps(result))
        save("startup_against", result)
        return
    baseline = float(best("import time; t=time.perf_counter(); print(time.perf_counter()-t)", repeat=args.repeat)[0])
    imp = best(IMPORT, repeat=args.repeat)
    result = {"import_bk_notebook_s": round(float(imp[0]), 3),
              "heavy_modules_imported": imp[2] if len(imp) > 2 else "",
              "baseline_empty_s": round(baseline, 6)}
    for engine in ("energy", "pocketsphinx"):
        started, accepted = best(FIRST_SESSION, engine, repeat=args.repeat)
        result[f"local_server_{engine}_started_s"] = round(float(started), 3)
        result[f"local_server_{engine}_first_session_s"] = round(float(accepted), 3)
    print(json.dumps(result))
    save("startup", result)


if __name__ == "__main__":
    main()
