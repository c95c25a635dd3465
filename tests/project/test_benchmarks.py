"""Smoke test: every benchmark still runs, at a tiny size. Timings are never asserted here."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import ROOT

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("module, args, key", [
    ("bench_client", ["--minutes", "0.2", "--repeat", "1"], "cpu_ratio_sample_over_bk"),
    ("bench_concurrency", ["--streams", "3", "--seconds", "1"], "rows"),
    ("bench_audio", ["--minutes", "1", "--curve", "1", "2"], "streaming_curve"),
    ("bench_server", ["--sessions", "1", "--workers", "1"], "capacity"),
    ("bench_server_noise", ["--noise", "5", "--paced", "1", "--seconds", "3"], "with_noise"),
    ("bench_startup", ["--repeat", "1"], "import_bk_notebook_s"),
    ("bench_startup", ["--repeat", "1", "--against", str(ROOT)], "import_cpu_ratio_best"),
    ("bench_dask", ["--minutes", "0.1", "--repeat", "1", "--checkpoint-items", "10"], "speedup_2_over_1"),
    ("bench_flow", ["--minutes", "0.2", "--engine", "energy"], "ratio_window_over_floor"),
    ("bench_engines", ["--engines", "whisper-tiny.en", "--sessions"], "engines"),
    ("bench_words", ["--repeat", "1", "--clips", "2", "--skip-live"], "decode_cpu"),
    ("bench_soundcard", ["--minutes", "0.1", "--repeat", "1", "--curve", "0.1"], "memory_curve"),
])
def test_benchmark_runs_at_tiny_size(module: str, args: list[str], key: str, tmp_path: Path) -> None:
    env = {**os.environ, "BK_BENCH_OUT": str(tmp_path)}
    subprocess.run([sys.executable, "-m", f"benchmarks.{module}", *args], cwd=ROOT, env=env, check=True,
                   capture_output=True, timeout=600)
    [out] = tmp_path.glob("*.json")
    result = json.loads(out.read_text())
    assert key in result and result["machine"]["cpus"] >= 1
