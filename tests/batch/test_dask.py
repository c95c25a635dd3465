"""The Dask path: a LocalCluster of 2 worker processes gives the local path's records."""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

import bk_notebook as bk
from bk_notebook.server.engines import EnergyEngine

from batch.test_checkpoint import comparable, lines, make_items, wait_for
from helpers import FIXTURES, ROOT, TESTS, require

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def dask_client() -> Any:
    require("distributed", "the Dask scale-out")
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address="127.0.0.1:0") as cluster, \
            Client(cluster) as client:
        yield client


def items() -> list[Any]:
    return [*make_items(8), FIXTURES / "hello.wav", str(FIXTURES / "numbers.wav")]


async def test_two_worker_processes_give_the_local_records(dask_client, energy_server, tmp_path: Path) -> None:
    local = tmp_path / "local.jsonl"
    on_dask = tmp_path / "dask.jsonl"
    expected = await bk.transcribe_many(items(), progress=False, client=bk.Client(energy_server.url),
                                        checkpoint=local, speed=None)
    results = await bk.transcribe_many(items(), progress=False, cluster=dask_client,
                                       worker_server={"engine": "energy"}, checkpoint=on_dask, speed=None)
    assert [t.text for t in results] == [t.text for t in expected]
    assert [[(f["text"], f["start"], f["end"]) for f in t.finals] for t in results] == \
        [[(f["text"], f["start"], f["end"]) for f in t.finals] for t in expected]
    by_key = {r["key"]: comparable(r) for r in lines(local)}
    assert {r["key"]: comparable(r) for r in lines(on_dask)} == by_key and len(lines(on_dask)) == 10
    sessions = {json.loads(line)["session_id"] for line in on_dask.read_text().splitlines()}
    assert len(sessions) == 10


async def test_both_workers_take_items_with_their_own_servers(dask_client) -> None:
    from bk_notebook.batch.cluster import embedded_servers

    await bk.transcribe_many(make_items(6), progress=False, cluster=dask_client, worker_server={"engine": "energy"},
                             speed=None)
    per_worker = dask_client.run(embedded_servers)
    assert len(per_worker) == 2
    assert all(len(urls) == 1 for urls in per_worker.values())  # each worker process started one server
    assert len({urls[0] for urls in per_worker.values()}) == 2


async def test_workers_connect_to_a_given_url_and_resume_from_a_checkpoint(dask_client, energy_server,
                                                                          tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    first = make_items(6)[:3]
    await bk.transcribe_many(first, progress=False, cluster=dask_client, client=bk.Client(energy_server.url),
                             checkpoint=path, speed=None)
    assert len(lines(path)) == 3
    results = await bk.transcribe_many(make_items(6), progress=False, cluster=dask_client,
                                       client=bk.Client(energy_server.url), checkpoint=path, speed=None)
    assert sorted(r["key"] for r in lines(path)) == [f"clip-{i:02d}" for i in range(6)]  # 3 more, none twice
    assert [t.text for t in results] == [f"sound {0.2 + 0.05 * i:.2f} s" for i in range(6)]


async def test_a_failed_item_is_reported_in_place(dask_client, energy_server) -> None:
    import numpy as np

    bad = {"id": "bad", "audio": np.array([0.0, np.nan]), "sr": 16000}
    results = await bk.transcribe_many([*make_items(2), bad], progress=False, return_exceptions=True,
                                       cluster=dask_client, client=bk.Client(energy_server.url), speed=None)
    assert isinstance(results[2], bk.AudioError)
    assert results[0].text == "sound 0.20 s"


class KillOnceEngine(EnergyEngine):
    """The energy engine, but the first audio it ever sees (on any worker) kills its whole process."""

    def __init__(self, flag: str) -> None:
        super().__init__()
        self.flag = flag

    def feed(self, pcm: bytes) -> list[Any]:
        try:
            fd = os.open(self.flag, os.O_CREAT | os.O_EXCL)  # exactly one worker wins this
        except FileExistsError:
            return super().feed(pcm)
        os.close(fd)
        os._exit(1)  # a worker dying mid-item: no cleanup, no reply


async def test_a_dead_worker_s_items_run_elsewhere_and_nothing_is_lost(dask_client, tmp_path: Path) -> None:
    flag = tmp_path / "killed-once"
    path = tmp_path / "c.jsonl"
    results = await bk.transcribe_many(make_items(8), progress=False, cluster=dask_client, checkpoint=path,
                                       worker_server={"engine": "batch.test_dask:KillOnceEngine", "flag": str(flag)},
                                       speed=None)
    assert flag.exists()  # a worker did die
    assert [t.text for t in results] == [f"sound {0.2 + 0.05 * i:.2f} s" for i in range(8)]
    assert sorted(r["key"] for r in lines(path)) == [f"clip-{i:02d}" for i in range(8)]
    dask_client.wait_for_workers(2, timeout=120)  # the nanny replaced it


class HangLongEngine(EnergyEngine):
    """The energy engine, but a session longer than 1.42 s stalls until the file ``release`` exists."""

    def __init__(self, release: str) -> None:
        super().__init__()
        self.release = release

    def reset(self) -> None:
        super().reset()
        self.fed = 0

    def feed(self, pcm: bytes) -> list[Any]:
        self.fed += len(pcm)
        while self.fed > 1.42 * 32000 and not os.path.exists(self.release):
            time.sleep(0.05)  # a stuck decoder, freed by the test at the end
        return super().feed(pcm)


async def test_interrupting_a_cluster_batch_keeps_what_finished(dask_client, tmp_path: Path) -> None:
    release, path = tmp_path / "release", tmp_path / "c.jsonl"
    batch = asyncio.ensure_future(bk.transcribe_many(
        make_items(8), progress=False, cluster=dask_client, checkpoint=path, speed=None,
        worker_server={"engine": "batch.test_dask:HangLongEngine", "release": str(release)}))
    try:
        await asyncio.to_thread(wait_for, lambda: len(lines(path)) == 5 or batch.done(), "5 finished items")
        assert not batch.done()  # items 5, 6 and 7 are stuck on the workers
        batch.cancel()
        with pytest.raises(asyncio.CancelledError) as info:  # kept, as IPython keeps sys.last_traceback
            await asyncio.wait_for(batch, 60)
        assert sorted(r["key"] for r in lines(path)) == [f"clip-{i:02d}" for i in range(5)]
        # The interrupt cancelled the pending tasks before returning: the scheduler has already dropped
        # them, though they are still stuck on the workers (not later, when the futures are collected).
        assert not any(dask_client.processing().values())
        del info
    finally:
        release.touch()


def test_the_token_travels_to_workers_but_is_never_shown() -> None:
    from bk_notebook.batch.cluster import _settings

    settings = _settings(bk.Client("ws://127.0.0.1:9/v1/prod/stream", token="s3cret-t0ken"), None, {"speed": None})
    assert settings.token == "s3cret-t0ken" and settings.url == "ws://127.0.0.1:9/v1/prod/stream"
    assert "s3cret" not in repr(settings) and "s3cret" not in str(settings)
    assert settings.client_options["connect_retries"] == 5 and settings.transcribe_options == {"speed": None}


async def test_bad_cluster_arguments(dask_client, tmp_path: Path) -> None:
    with pytest.raises(bk.UsageError, match="dask.distributed.Client"):
        await bk.transcribe_many(make_items(1), progress=False, cluster=object(), checkpoint=tmp_path / "c.jsonl")
    assert not (tmp_path / "c.jsonl").exists()  # refused before anything was written
    with pytest.raises(bk.UsageError, match="with cluster= only"):
        await bk.transcribe_many(make_items(1), progress=False, worker_server={"engine": "energy"})
    with pytest.raises(bk.UsageError, match="applies when no client"):
        await bk.transcribe_many(make_items(1), progress=False, cluster=dask_client,
                                 client=bk.Client("ws://127.0.0.1:9/x"), worker_server={"engine": "energy"})
    with pytest.raises(bk.UsageError, match="not available with cluster"):
        await bk.transcribe_many(make_items(1), progress=False, cluster=dask_client, on_final=print)
    with pytest.raises(bk.UsageError, match="processes=True"):
        await bk.transcribe_many(make_items(1), progress=False, cluster=dask_client,
                                 worker_server={"processes": True})


async def test_a_cluster_with_no_workers_says_so_after_worker_timeout(tmp_path: Path) -> None:
    require("distributed", "the Dask scale-out")
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=0, host="127.0.0.1", dashboard_address="127.0.0.1:0") as cluster, \
            Client(cluster) as empty:
        with pytest.raises(bk.ClusterError, match=r"no Dask worker joined the scheduler tcp://127\.0\.0\.1:\d+ "
                                                  r"within 1 s \(it has 0 workers\)") as info:
            await asyncio.wait_for(bk.transcribe_many(make_items(2), progress=False, cluster=empty, speed=None,
                                                      checkpoint=tmp_path / "c.jsonl", worker_timeout=1.0), 30)
    assert info.value.results == [None, None]
    with pytest.raises(bk.UsageError, match="worker_timeout"):
        await bk.transcribe_many(make_items(1), cluster=empty, worker_timeout=0)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_a_lost_scheduler_is_reported_and_what_finished_is_kept(tmp_path: Path) -> None:
    require("distributed", "the Dask scale-out")
    import subprocess
    import sys

    from distributed import Client

    address = f"tcp://127.0.0.1:{free_port()}"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), str(ROOT)])}
    module = [sys.executable, "-m"]
    scheduler = subprocess.Popen([*module, "distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port",
                                  address.rsplit(":", 1)[1], "--no-dashboard"], env=env, stderr=subprocess.DEVNULL)
    worker = subprocess.Popen([*module, "distributed.cli.dask_worker", address, "--nthreads", "1", "--no-dashboard"],
                              env=env, stderr=subprocess.DEVNULL)
    release, path = tmp_path / "release", tmp_path / "c.jsonl"
    try:
        with Client(address, timeout=30) as cluster:
            batch = asyncio.ensure_future(bk.transcribe_many(
                make_items(8), progress=False, cluster=cluster, checkpoint=path, speed=None,
                worker_server={"engine": "batch.test_dask:HangLongEngine", "release": str(release)}))
            await asyncio.to_thread(wait_for, lambda: len(lines(path)) == 5 or batch.done(), "5 finished items", 120)
            scheduler.kill()
            with pytest.raises(bk.ClusterError, match=rf"lost the Dask scheduler {address}") as info:
                await asyncio.wait_for(batch, 60)
    finally:
        release.touch()
        for process in (scheduler, worker):
            process.kill()
            process.wait()
    finished = [r for r in info.value.results if isinstance(r, bk.Transcript)]
    assert len(finished) == 5 and all(r.complete for r in finished)
    assert sorted(r["key"] for r in lines(path)) == [f"clip-{i:02d}" for i in range(5)]
