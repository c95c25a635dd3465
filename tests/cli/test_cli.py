"""The CLI, run as a user runs it: a subprocess of the installed console script."""

from __future__ import annotations

import asyncio
import base64
import csv
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import bk_notebook as bk

from client.test_auth import auth_api
from helpers import FIXTURES, reply, scripted_server

pytestmark = pytest.mark.slow


def cli() -> list[str]:
    exe = shutil.which("bk-notebook")
    return [exe] if exe else [sys.executable, "-m", "bk_notebook.cli"]


def run(*args: str, stdin: str | None = None, timeout: float = 120,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k != "BK_TOKEN"} | (env or {})
    return subprocess.run([*cli(), *args], capture_output=True, text=True, input=stdin, timeout=timeout, env=environ)


async def arun(*args: str, stdin: str = "", env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """``run`` for tests whose server lives on this event loop."""
    environ = {k: v for k, v in os.environ.items() if k != "BK_TOKEN"} | (env or {})
    proc = await asyncio.create_subprocess_exec(*cli(), *args, stdin=asyncio.subprocess.PIPE,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
                                                env=environ)
    out, err = await asyncio.wait_for(proc.communicate(stdin.encode()), 120)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def test_demo_prints_partials_and_the_finals_table() -> None:
    result = run("demo", "--engine", "pocketsphinx", "--speed", "max")  # its words, not Whisper's
    assert result.returncode == 0, result.stderr
    header, *rows = result.stdout.splitlines()
    assert header.split() == ["file", "segment", "start", "end", "text"]
    assert len(rows) == 2  # the sample's two sentences, two finals
    heard = " ".join(row.split(maxsplit=4)[4] for row in rows)
    # PocketSphinx on the natural-voice sample: "low world this as a speech recognition test" /
    # "leather today is sunny and warm", a WER of 0.27 against the words it says.
    assert bk.evaluate([heard], [bk.sample_text()]).attrs["corpus"]["wer"] <= 0.4, heard
    assert "partial: low world this" in result.stderr  # the partials grow before the final


def test_transcribe_local_with_pocketsphinx_table() -> None:
    result = run("transcribe", str(FIXTURES / "hello.wav"), "--local", "--engine", "pocketsphinx", "--speed", "max")
    assert result.returncode == 0, result.stderr
    assert "hello world" in result.stdout
    assert "audio sent" not in result.stderr  # stderr is not a terminal: no bar unless asked
    shown = run("transcribe", str(FIXTURES / "hello.wav"), "--local", "--engine", "pocketsphinx", "--speed", "max",
                "--progress")
    assert shown.returncode == 0 and shown.stdout == result.stdout, shown.stderr
    assert "audio sent: 100%" in shown.stderr and "4.5/4.5 s" in shown.stderr  # seconds of the file's total


@pytest.mark.parametrize("fmt", ["table", "csv", "jsonl"])
def test_transcribe_local_each_format(fmt: str) -> None:
    files = [str(FIXTURES / "hello.wav"), str(FIXTURES / "numbers.wav")]
    result = run("transcribe", *files, "--local", "--engine", "energy", "--speed", "max", "--format", fmt)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    if fmt == "csv":
        rows = list(csv.DictReader(io.StringIO(out)))
        assert [r["file"] for r in rows] == files and rows[0]["text"].startswith("sound ")
        assert list(rows[0]) == ["file", "segment", "text", "start", "end", "session_id"]  # no empty timing
    elif fmt == "jsonl":
        rows = [json.loads(line) for line in out.splitlines()]
        assert [r["file"] for r in rows] == files and all(r["end"] > r["start"] for r in rows)
    else:
        assert out.splitlines()[0].split() == ["file", "segment", "start", "end", "text"]
        assert len(out.splitlines()) == 3


def serving(*args: str) -> tuple[subprocess.Popen[str], str, str]:
    """``bk-notebook serve --port 0 ARGS`` started, the URL it listens on, and the line that said so."""
    proc = subprocess.Popen([*cli(), "serve", "--port", "0", *args], stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    line = ""
    while "listening on" not in line:
        line = proc.stderr.readline()
        assert line, "server exited before listening"
    return proc, re.search(r"ws://\S+/v1/prod/stream", line).group(0), line


def test_serve_then_a_client_then_sigterm() -> None:
    proc, url, line = serving("--engine", "energy", "--token", "cli-SECRET")
    try:
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


def test_serve_listens_on_the_port_asked_for() -> None:
    import socket

    with socket.socket() as probe:  # a port free a moment ago: the server asks for exactly this one
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc, url, _ = serving("--engine", "energy", "--port", str(port))  # the last --port wins, as argparse does
    try:
        assert url == f"ws://127.0.0.1:{port}/v1/prod/stream"
        t = asyncio.run(bk.Client(url).transcribe(np.zeros(1600, np.int16), 16000, speed=None))
        assert t.complete
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_sigterm_lets_a_running_session_finish() -> None:
    proc, url, _ = serving("--engine", "energy")
    try:
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
    (["transcribe", str(FIXTURES)], "is a folder"),
    (["transcribe", str(FIXTURES / "hello.wav"), "--speed", "fast"], "a positive multiple of real time"),
    (["transcribe", str(FIXTURES / "hello.wav"), "--speed", "0"], "a positive multiple of real time"),
    (["transcribe", str(FIXTURES / "hello.wav"), "--speed", "-2"], "a positive multiple of real time"),
    (["transcribe", str(FIXTURES / "hello.wav"), str(FIXTURES / "numbers.wav"), "--format", "srt"], "--out-dir"),
    (["transcribe", str(FIXTURES / "hello.wav"), str(FIXTURES / "numbers.wav"), "--format", "vtt"], "--out-dir"),
    (["transcribe", str(FIXTURES / "hello.wav"), "--token", "tok-ON-COMMAND-LINE"], "--token-env NAME"),
    (["transcribe", str(FIXTURES / "hello.wav"), "--token-env", "BK_TEST_UNSET_VARIABLE"], "is not set"),
    (["transcribe", str(FIXTURES / "hello.wav"), "--token-env", "X", "--token-prompt"], "not allowed with"),
    (["serve", "--allow-origin", "localhost:8888"], "not an origin"),
    (["transcribe", str(FIXTURES / "hello.wav"), "--format", "xml"], "invalid choice"),
    (["serve", "--workers", "0"], "--workers must be at least 1"),
])
def test_usage_errors_exit_2_with_one_line(args: list[str], needle: str) -> None:
    # Pointed at a port where nothing listens: a check that ran after connecting would say "cannot connect".
    url = ["--url", "ws://127.0.0.1:9/v1/prod/stream"] if args[0] == "transcribe" and len(args) > 1 else []
    result = run(*args, *url, stdin="")
    assert result.returncode == 2, result.stderr
    assert needle in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "tok-ON-COMMAND-LINE" not in result.stderr and result.stdout == ""


@pytest.mark.parametrize("fmt", ["table", "csv", "jsonl"])
def test_unreachable_server_exits_1_with_one_line_per_file_and_nothing_on_stdout(fmt: str) -> None:
    files = [str(FIXTURES / "hello.wav"), str(FIXTURES / "numbers.wav")]
    result = run("-v", "transcribe", *files, "--url", "ws://127.0.0.1:9/v1/prod/stream", "--format", fmt)
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if "error: " in line]
    assert len(errors) == 2 and all("cannot connect" in e and "nothing is listening" in e for e in errors)
    assert result.stdout == ""  # `> out.csv` is not left holding a header alone
    assert "retrying" not in result.stderr  # a refused loopback port fails at once: nothing listens there


def test_token_command_prompts_on_stderr_so_that_stdout_is_the_token_alone() -> None:
    token = "eyJhbGciOiJIUzI1NiJ9.cli.token"
    with auth_api({"bk": {"messsage": "success", "data": {"token": token}}}) as (url, seen):
        result = run("token", "--auth-url", url, stdin="me@example.org\npw-secret\n")  # as in $(bk-notebook token)
    assert result.returncode == 0, result.stderr
    assert result.stdout == token + "\n"
    assert "e-mail: " in result.stderr and "password: " in result.stderr
    assert seen[0][1] == "Basic " + base64.b64encode(b"me@example.org:pw-secret").decode()


@pytest.mark.parametrize("stdin, needle", [("", "no e-mail given"), ("me@example.org\n", "no password given")])
def test_token_command_end_of_input_at_a_prompt_is_one_line(stdin: str, needle: str) -> None:
    with auth_api({"bk": {"data": {"token": "never"}}}) as (url, seen):
        result = run("token", "--auth-url", url, stdin=stdin)
    assert result.returncode == 2 and result.stdout == "" and not seen
    assert "Traceback" not in result.stderr and "EOFError" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == f"bk-notebook: error: {needle} (end of input at the prompt)"


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




# --------------------------------------------------------------------- the first hour of a new user
@pytest.mark.parametrize("fmt", ["srt", "vtt", "csv", "jsonl", "table"])
def test_out_dir_writes_one_file_per_input_named_after_it(tmp_path: Path, fmt: str) -> None:
    names = ["hello", "numbers"]
    out = tmp_path / "subtitles"
    result = run("transcribe", *(str(FIXTURES / f"{n}.wav") for n in names), "--local", "--engine", "energy",
                 "--speed", "max", "--format", fmt, "--out-dir", str(out))
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    ext = {"table": "txt"}.get(fmt, fmt)
    assert sorted(p.name for p in out.iterdir()) == [f"{n}.{ext}" for n in names]
    for name in names:
        text = (out / f"{name}.{ext}").read_text()
        assert "==>" not in text and f"wrote {out / f'{name}.{ext}'}" in result.stderr
        if fmt == "srt":
            assert text.startswith("1\n00:00:00,") and " --> " in text
        elif fmt == "vtt":
            assert text.startswith("WEBVTT") and text.count("WEBVTT") == 1
        elif fmt == "csv":
            assert {r["file"] for r in csv.DictReader(io.StringIO(text))} == {str(FIXTURES / f"{name}.wav")}
        elif fmt == "jsonl":
            assert all(json.loads(line)["file"].endswith(f"{name}.wav") for line in text.splitlines())
        else:
            assert text.splitlines()[0].split() == ["file", "segment", "start", "end", "text"]


def test_out_dir_refuses_two_inputs_that_would_write_the_same_file(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    for folder in "ab":
        shutil.copy(FIXTURES / "hello.wav", tmp_path / folder / "hello.wav")
    result = run("transcribe", str(tmp_path / "a/hello.wav"), str(tmp_path / "b/hello.wav"), "--format", "srt",
                 "--out-dir", str(tmp_path / "out"), "--url", "ws://127.0.0.1:9/v1/prod/stream")
    assert result.returncode == 2 and "hello.srt" in result.stderr and not (tmp_path / "out").exists()


def test_single_file_srt_still_goes_to_stdout() -> None:
    result = run("transcribe", str(FIXTURES / "hello.wav"), "--local", "--engine", "energy", "--speed", "max",
                 "--format", "srt")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("1\n00:00:00,") and "==>" not in result.stdout


def test_transcribe_help_says_where_the_token_comes_from() -> None:
    text = run("transcribe", "--help").stdout
    assert "$BK_TOKEN" in text and "--token-env" in text and "--token-prompt" in text and "--out-dir" in text


TOKEN = "eyJhbGciOiJIUzI1NiJ9.cli-transcribe.NEVER-SHOWN"


@pytest.mark.parametrize("how", ["token-env", "token-prompt", "BK_TOKEN", "none"])
async def test_transcribe_takes_a_token_without_showing_it(how: str) -> None:
    from bk_notebook.server import local_server

    args: list[str] = []
    env: dict[str, str] = {}
    stdin = ""
    if how == "token-env":
        args, env = ["--token-env", "MY_BK_TOKEN"], {"MY_BK_TOKEN": TOKEN}
    elif how == "token-prompt":
        args, stdin = ["--token-prompt"], TOKEN + "\n"
    elif how == "BK_TOKEN":
        env = {"BK_TOKEN": TOKEN}
    async with local_server(engine="energy", workers=1, tokens=(TOKEN,)) as server:
        code, out, err = await arun("-v", "transcribe", str(FIXTURES / "hello.wav"), "--url", server.url,
                                    "--speed", "max", "--format", "csv", *args, stdin=stdin, env=env)
    if how == "none":
        assert code == 1 and "no token was sent" in err and "refused the token" not in err and out == ""
    else:
        assert code == 0, err
        assert "sound " in out and "?token=***" in err  # -v showed the handshake, redacted
    assert TOKEN not in out + err


async def test_an_incomplete_result_warns_and_exits_1_keeping_the_finals() -> None:
    """A server that never answers audioStop: the finals so far are printed, with a warning and exit 1."""

    async def never_stops(ws: Any) -> None:
        async for raw in ws:
            kind = json.loads(raw)["bk"]["type"]
            if kind == "audioConn":
                await ws.send(reply("audioConn", sess_id="b" * 32))
            elif kind == "audioStream":
                await ws.send(reply("audioStream", final="kept words"))  # no times: the client estimates them
            # audioStop: never answered

    async with scripted_server(never_stops) as url:
        code, out, err = await arun("transcribe", str(FIXTURES / "hello.wav"), "--url", url, "--speed", "max",
                                    "--format", "csv", "--drain-timeout", "0.5")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert rows and all(r["text"] == "kept words" for r in rows)
    assert rows[0]["timing"] == "estimated"  # the timing column appears when a record has it
    assert code == 1, err
    assert "warning: " in err and "incomplete: the session did not end with the server's audioStop reply" in err


def test_parse_speed_accepts_what_the_cli_accepts() -> None:
    from bk_notebook.client.speed import parse_speed

    assert [parse_speed(v) for v in (None, "max", "MAX", "none", 2, 0.5, "10", np.float32(3))] == [
        None, None, None, None, 2.0, 0.5, 10.0, 3.0]
    for bad in (0, -1, "0", float("nan"), float("inf"), True, "fast", [1]):
        with pytest.raises(bk.UsageError, match="multiple of real time") as info:
            parse_speed(bad)
        assert "seconds" not in str(info.value)


@pytest.mark.parametrize("flag, engine_processes", [([], True), (["--threads"], False)])
def test_serve_decodes_in_processes_by_default_on_several_cores(flag: list[str], engine_processes: bool) -> None:
    psutil = pytest.importorskip("psutil")
    if (psutil.cpu_count() or 1) < 2:
        pytest.skip("one core: threads are the default there")
    proc, url, _ = serving("--engine", "pocketsphinx", "--workers", "1", *flag)  # whisper shares one model: threads
    try:
        t = asyncio.run(bk.Client(url).transcribe(bk.sample_path(), speed=None))
        assert t.complete and {"speech", "recognition", "sunny", "warm"} <= set(t.text.lower().split())  # real words
        children = psutil.Process(proc.pid).children(recursive=True)
        assert bool(children) is engine_processes  # a spawned engine process holds the decoder
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()


def test_serve_processes_and_threads_exclude_each_other() -> None:
    result = run("serve", "--processes", "--threads")
    assert result.returncode == 2 and "not allowed with" in result.stderr


def test_listen_shows_partials_finals_and_the_level_on_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    """The live line of ``listen`` without a sound card (its end-to-end tests need PulseAudio, and are slow)."""
    from bk_notebook.cli.listen import LiveLine

    quiet = np.full(1600, 328, dtype="<i2").tobytes()  # about -40 dBFS
    logged = LiveLine(live=False)
    logged.show_level(quiet)
    logged.show_partial("hel")
    logged.show_final({"start": 0.5, "end": 1.25, "text": "hello"})
    logged.clear()
    assert capsys.readouterr().err.splitlines() == ["partial: [###.......]  -40 dB hel", "final [0.50-1.25 s]: hello"]

    terminal = LiveLine(live=True)
    terminal.show_partial("wor")
    terminal.show_final({"start": 2.0, "end": 2.5, "text": "world"})
    terminal.clear()
    err = capsys.readouterr().err
    assert err.startswith("\r\033[K[..........] -100 dB wor")  # meter and partial redrawn in place
    assert "\r\033[Kfinal [2.00-2.50 s]: world\n" in err  # the final printed above the redrawn line
    assert err.endswith("\r\033[K") and terminal.partial == ""

    unmetered = LiveLine(live=False, metered=False)  # demo: no microphone, no meter
    unmetered.show_partial("hel")
    assert capsys.readouterr().err == "partial: hel\n"
    LiveLine(live=True, metered=False).show_partial("hel")
    assert capsys.readouterr().err == "\r\033[K… hel"
