"""The CLI, run as a user runs it: a subprocess of the installed console script."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import re
import shutil
import signal
import subprocess
import sys

import numpy as np
import pytest

import bk_notebook as bk

from conftest import FIXTURES
from test_auth import auth_api

pytestmark = pytest.mark.slow


def cli() -> list[str]:
    exe = shutil.which("bk-notebook")
    return [exe] if exe else [sys.executable, "-m", "bk_notebook.cli"]


def run(*args: str, stdin: str | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*cli(), *args], capture_output=True, text=True, input=stdin, timeout=timeout)


def test_demo_prints_partials_and_the_finals_table() -> None:
    result = run("demo", "--speed", "max")
    assert result.returncode == 0, result.stderr
    header, *rows = result.stdout.splitlines()
    assert header.split() == ["file", "segment", "start", "end", "text"]
    assert len(rows) == 2 and "hello world" in rows[0]
    assert "partial: hello" in result.stderr


def test_transcribe_local_with_pocketsphinx_table() -> None:
    result = run("transcribe", str(FIXTURES / "hello.wav"), "--local", "--speed", "max")
    assert result.returncode == 0, result.stderr
    assert "hello world" in result.stdout
    assert "100%" in result.stderr  # the progress bar goes to stderr


@pytest.mark.parametrize("fmt", ["table", "csv", "jsonl", "srt", "vtt"])
def test_transcribe_local_each_format(fmt: str) -> None:
    files = [str(FIXTURES / "hello.wav"), str(FIXTURES / "numbers.wav")]
    result = run("transcribe", *files, "--local", "--engine", "energy", "--speed", "max", "--format", fmt)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    if fmt == "csv":
        rows = list(csv.DictReader(io.StringIO(out)))
        assert [r["file"] for r in rows] == files and rows[0]["text"].startswith("sound ")
    elif fmt == "jsonl":
        rows = [json.loads(line) for line in out.splitlines()]
        assert [r["file"] for r in rows] == files and all(r["end"] > r["start"] for r in rows)
    elif fmt == "srt":
        assert "1\n00:00:00," in out and " --> " in out and out.count("==> ") == 2
    elif fmt == "vtt":
        assert out.count("WEBVTT") == 2
    else:
        assert out.splitlines()[0].split() == ["file", "segment", "start", "end", "text"]
        assert len(out.splitlines()) == 3


def test_serve_then_a_client_then_sigterm() -> None:
    proc = subprocess.Popen([*cli(), "serve", "--port", "0", "--engine", "energy", "--token", "cli-SECRET"],
                            stderr=subprocess.PIPE, text=True)
    try:
        line = ""
        while "listening on" not in line:
            line = proc.stderr.readline()
            assert line, "server exited before listening"
        url = re.search(r"ws://\S+/v1/prod/stream", line).group(0)
        tone = np.concatenate([np.zeros(8000), 0.3 * np.sin(np.arange(8000) / 5), np.zeros(8000)])
        t = asyncio.run(bk.Client(url, token="cli-SECRET").transcribe(tone, 16000, speed=None))
        assert t.text == "sound 0.50 s"
        with pytest.raises(bk.AuthError):
            asyncio.run(bk.Client(url, token="wrong").transcribe(tone, 16000))
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
        log = proc.stderr.read()
        assert "session " in log and "1.5 s of audio, 1 finals" in log
        assert "cli-SECRET" not in log and "cli-SECRET" not in line
    finally:
        if proc.poll() is None:
            proc.kill()


def test_sigterm_lets_a_running_session_finish() -> None:
    proc = subprocess.Popen([*cli(), "serve", "--port", "0", "--engine", "energy"],
                            stderr=subprocess.PIPE, text=True)
    try:
        line = ""
        while "listening on" not in line:
            line = proc.stderr.readline()
        url = re.search(r"ws://\S+/v1/prod/stream", line).group(0)

        async def session() -> bk.Transcript:
            async with bk.Client(url).stream() as s:
                await s.send((np.sin(np.arange(16000) / 5) * 10000).astype(np.int16))
                proc.send_signal(signal.SIGTERM)
                await asyncio.sleep(0.3)  # the server is now refusing new connections
                await s.send(np.zeros(8000, dtype=np.int16))
                return await s.stop()

        t = asyncio.run(session())
        assert t.text == "sound 1.00 s"
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()


@pytest.mark.parametrize("args, needle", [
    (["bogus"], "invalid choice"),
    (["transcribe"], "required: FILE"),
    (["transcribe", "missing.wav"], "no such file: missing.wav"),
    (["transcribe", str(FIXTURES / "hello.wav"), "--speed", "fast"], "not a number"),
    (["transcribe", str(FIXTURES / "hello.wav"), "--format", "xml"], "invalid choice"),
    (["serve", "--workers", "0"], "--workers must be at least 1"),
])
def test_usage_errors_exit_2_with_one_line(args: list[str], needle: str) -> None:
    result = run(*args)
    assert result.returncode == 2
    assert needle in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_unreachable_server_exits_1_with_one_line_per_file() -> None:
    result = run("transcribe", str(FIXTURES / "hello.wav"), "--url", "ws://127.0.0.1:9/v1/prod/stream")
    assert result.returncode == 1
    assert "error: " in result.stderr and "cannot connect" in result.stderr


def test_token_command_reads_the_password_at_a_prompt_and_prints_only_when_piped() -> None:
    token = "eyJhbGciOiJIUzI1NiJ9.cli.token"
    with auth_api({"bk": {"messsage": "success", "data": {"token": token}}}) as (url, seen):
        result = run("token", "--email", "me@example.org", "--auth-url", url, stdin="pw-secret\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == token  # stdout is a pipe: for export BK_TOKEN=$(...)
    assert "pw-secret" not in result.stdout + result.stderr
    assert len(seen) == 1


def test_version() -> None:
    assert run("--version").stdout.strip() == f"bk-notebook {bk.__version__}"


