"""Hooks and the fixtures every folder uses; a folder's own fixtures live in its own conftest.py.

Nothing here is imported by name: shared functions and constants are in ``helpers.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from helpers import FIXTURES, check_pure, require, tmpfs, unit_of_work


def pytest_collection_modifyitems(config: pytest.Config, items: list[Any]) -> None:
    """Browser tests are marked e2e and a pure test is pure; the browser's unit runs last, or first on workers.

    Run serially, the browser tests come last (the quick feedback first); on workers they come first,
    being the longest unit of work, so that the other worker takes everything else meanwhile.
    """
    for item in items:
        if "/e2e/" in str(item.fspath):
            item.add_marker(pytest.mark.e2e)
        if item.get_closest_marker("pure"):
            check_pure(item.nodeid, set(item.fixturenames), {m.name for m in item.iter_markers()})
    on_a_worker = hasattr(config, "workerinput")
    items.sort(key=lambda item: (unit_of_work(item.nodeid) == "browser") != on_a_worker)


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """With ``--dist loadgroup`` (in ``addopts``), each :func:`unit_of_work` goes to one worker, in collection order."""
    if config.getvalue("dist") != "loadgroup":
        return None  # another --dist was asked for: xdist's own
    from xdist.scheduler import LoadScopeScheduling

    class ByUnitOfWork(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return unit_of_work(nodeid)

    config.option.loadscopereorder = False  # the browser's unit first, as collected; not by its number of tests
    return ByUnitOfWork(config, log)


@pytest.fixture
def fixture_wav() -> Callable[[str], Path]:
    return lambda name: FIXTURES / f"{name}.wav"


@pytest.fixture(scope="session")
def energy_server() -> Any:
    from bk_notebook.server import local_server

    with local_server(engine="energy", workers=8) as server:
        yield server


@pytest.fixture(scope="session")
def sphinx_server() -> Any:
    require("pocketsphinx", "the default engine")
    from bk_notebook.server import local_server

    with local_server(engine="pocketsphinx", workers=2) as server:
        yield server


@pytest.fixture
def readonly_folder(tmp_path: Path) -> Any:
    """A folder no file can be written in, even by root: a read-only tmpfs."""
    with tmpfs(tmp_path / "readonly", "ro,size=64k") as folder:
        yield folder


@pytest.fixture
def small_disk(tmp_path: Path) -> Any:
    """A 256 KiB file system, to fill up on purpose."""
    with tmpfs(tmp_path / "small", "size=256k") as folder:
        yield folder
