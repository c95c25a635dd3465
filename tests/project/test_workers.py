"""``pytest -n 2`` (what CI runs) sends each file, and the browser's tests as one unit, to one worker.

Run as a user runs it: pytest in a subprocess, on a few files, reading which worker ran each test.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections import defaultdict

import pytest

from helpers import ROOT, require, unit_of_work

pytestmark = pytest.mark.slow  # a pytest in a subprocess, with two workers


def test_a_test_s_unit_of_work_is_its_file_or_the_browser() -> None:
    assert unit_of_work("tests/test_protocol.py::test_a[x::y]") == "tests/test_protocol.py"
    assert unit_of_work("tests/client/test_flow.py::test_b") == "tests/client/test_flow.py"
    assert unit_of_work("tests/e2e/test_browser.py::test_c[lab]") == "browser"
    assert unit_of_work("tests/e2e/test_latency.py::test_d") == "browser"
    assert unit_of_work("tests/project/test_docs.py::test_e") == "browser"  # it shares the site build
    assert unit_of_work("tests/project/test_docs_pages.py::test_f") == "tests/project/test_docs_pages.py"


def test_two_workers_each_run_whole_files() -> None:
    require("xdist", "runs the suite on two workers (pip install -e '.[dev]')")
    files = ["tests/test_protocol.py", "tests/client/test_speed.py", "tests/project/test_layers.py"]
    done = subprocess.run([sys.executable, "-m", "pytest", "-n", "2", "-v", "-p", "no:cacheprovider", *files],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:]
    workers = defaultdict(set)
    for worker, nodeid in re.findall(r"^\[(gw\d+)\] \[\s*\d+%\] PASSED (\S+)", done.stdout, re.M):
        workers[nodeid.split("::")[0]].add(worker)
    assert set(workers) == set(files)
    assert all(len(ran_on) == 1 for ran_on in workers.values()), dict(workers)  # a file is never split
    assert len(set().union(*workers.values())) == 2  # and both workers worked
