"""The CLI's contract, as a new user meets it: one meaning per flag, paths refused before any audio,
token errors that say what to do, progress for one long file.  Every case runs the console script."""

from __future__ import annotations

import csv
import fcntl
import io
import json
import os
import pty
import struct
import subprocess
import termios
from pathlib import Path

import pytest

from conftest import FIXTURES
from test_cli import arun, cli, run

pytestmark = pytest.mark.slow

HELLO, NUMBERS = str(FIXTURES / "hello.wav"), str(FIXTURES / "numbers.wav")
NOWHERE = ["--url", "ws://127.0.0.1:9/v1/prod/stream"]  # nothing listens: a check made after connecting says so
ENERGY = ["--local", "--engine", "energy", "--speed", "max"]


# ------------------------------------------------------------------ --out writes the result
@pytest.mark.parametrize("fmt, first_line", [("srt", "1"), ("vtt", "WEBVTT"), ("jsonl", "{"),
                                             ("csv", "file,segment,start,end,text,session_id"), ("table", "file")])
def test_out_writes_the_result_in_the_format_asked(tmp_path: Path, fmt: str, first_line: str) -> None:
    out = tmp_path / f"talk.{fmt}"
    result = run("transcribe", HELLO, "--format", fmt, "--out", str(out), *ENERGY)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "" and f"wrote {out}" in result.stderr
    text = out.read_text()
    assert text.splitlines()[0].startswith(first_line) and "sound" in text
    if fmt == "srt":
        assert "00:00:00," in text and "-->" in text
    assert not [p for p in tmp_path.iterdir() if p.name != out.name]  # no checkpoint, no temporary file left


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "table"])
def test_several_inputs_share_one_out_file_keyed_by_input(tmp_path: Path, fmt: str) -> None:
    out = tmp_path / f"all.{fmt}"
    result = run("transcribe", HELLO, NUMBERS, "--format", fmt, "--out", str(out), *ENERGY)
    assert result.returncode == 0, result.stderr
    text = out.read_text()
    if fmt == "jsonl":
        files = {json.loads(line)["file"] for line in text.splitlines()}
    elif fmt == "csv":
        files = {row["file"] for row in csv.DictReader(io.StringIO(text))}
    else:
        files = {line.split()[0] for line in text.splitlines()[1:]}
    assert files == {HELLO, NUMBERS}


@pytest.mark.parametrize("fmt", ["srt", "vtt"])
def test_several_inputs_in_one_subtitle_file_are_refused_pointing_to_out_dir(tmp_path: Path, fmt: str) -> None:
    out = tmp_path / f"talk.{fmt}"
    result = run("transcribe", HELLO, NUMBERS, "--format", fmt, "--out", str(out), *NOWHERE)
    assert result.returncode == 2 and "--out-dir" in result.stderr, result.stderr
    assert len(result.stderr.splitlines()) == 1 and not out.exists()


def test_out_and_out_dir_together_are_refused(tmp_path: Path) -> None:
    result = run("transcribe", HELLO, "--out", str(tmp_path / "a.txt"), "--out-dir", str(tmp_path), *NOWHERE)
    assert result.returncode == 2 and "not allowed with" in result.stderr


def test_resume_names_the_checkpoint_flag(tmp_path: Path) -> None:
    result = run("transcribe", HELLO, "--out", str(tmp_path / "x.jsonl"), "--resume", *NOWHERE)
    assert result.returncode == 2 and "--resume needs --checkpoint FILE" in result.stderr, result.stderr


def test_checkpoint_and_out_are_two_files(tmp_path: Path) -> None:
    checkpoint, out = tmp_path / "progress.jsonl", tmp_path / "talk.srt"
    result = run("transcribe", HELLO, "--format", "srt", "--out", str(out), "--checkpoint", str(checkpoint), *ENERGY)
    assert result.returncode == 0, result.stderr
    assert out.read_text().startswith("1\n")
    [record] = [json.loads(line) for line in checkpoint.read_text().splitlines()]
    assert record["key"] == HELLO and record["complete"] is True


# ------------------------------------------------------------------ output paths, before any audio
@pytest.mark.parametrize("flag", ["--out", "--checkpoint", "--out-dir"])
def test_a_read_only_output_is_refused_before_any_audio_is_sent(readonly_folder: Path, flag: str) -> None:
    target = readonly_folder / ("sub" if flag == "--out-dir" else "result.jsonl")
    result = run("transcribe", HELLO, flag, str(target), *NOWHERE)
    assert result.returncode == 2, result.stderr
    assert str(target) in result.stderr and "Read-only file system" in result.stderr
    assert len(result.stderr.splitlines()) == 1 and "Traceback" not in result.stderr


@pytest.mark.parametrize("flag", ["--out", "--checkpoint"])
def test_a_file_in_a_missing_folder_is_refused_before_any_audio(tmp_path: Path, flag: str) -> None:
    target = tmp_path / "missing" / "result.jsonl"
    result = run("transcribe", HELLO, flag, str(target), *NOWHERE)
    assert result.returncode == 2 and f"no such folder {tmp_path / 'missing'}" in result.stderr, result.stderr
    assert not (tmp_path / "missing").exists()


def test_out_dir_is_made_with_its_parents(tmp_path: Path) -> None:
    out_dir = tmp_path / "new" / "nested" / "subs"
    result = run("transcribe", HELLO, "--format", "vtt", "--out-dir", str(out_dir), *ENERGY)
    assert result.returncode == 0, result.stderr
    assert (out_dir / "hello.vtt").read_text().startswith("WEBVTT")


def test_listen_refuses_a_read_only_out_before_opening_the_device(readonly_folder: Path) -> None:
    result = run("listen", "--out", str(readonly_folder / "talk.vtt"), "--format", "vtt", "--device",
                 "no-such-device-anywhere", *NOWHERE)
    assert result.returncode == 2 and "Read-only file system" in result.stderr, result.stderr


@pytest.mark.parametrize("fmt", ["table", "jsonl", "csv", "srt", "vtt"])
def test_listen_accepts_every_format_transcribe_does(fmt: str) -> None:
    # Past argument parsing, the first thing listen touches is the device: a missing one is its own error.
    result = run("listen", "--format", fmt, "--device", "no-such-device-anywhere", *NOWHERE)
    assert "invalid choice" not in result.stderr
    assert result.returncode in (1, 2) and "device" in result.stderr, result.stderr  # this one, or none at all


# ------------------------------------------------------------------ tokens
@pytest.mark.parametrize("command", [["transcribe", HELLO], ["listen"]])
def test_no_token_for_the_hosted_service_says_what_to_do_before_any_traffic(command: list[str]) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("BK_TOKEN", "BK_STT_URL")}
    # A Python that cannot resolve or connect: any network attempt would end in "cannot connect" (exit 1).
    guard = ("import socket, sys\n"
             "def refuse(*a, **k): raise SystemExit('network access attempted')\n"
             "socket.getaddrinfo = socket.create_connection = refuse\n"
             "from bk_notebook.cli import main\nsys.exit(main())\n")
    result = subprocess.run([os.sys.executable, "-c", guard, *command], capture_output=True, text=True,
                            env=env, timeout=60)
    assert result.returncode == 2, result.stderr
    line = result.stderr.strip()
    assert len(line.splitlines()) == 1 and "network access attempted" not in line
    for needle in ("needs a token", "$BK_TOKEN", "--token-env", "--token-prompt", "bk-notebook token", "--local"):
        assert needle in line, needle


async def test_a_401_when_no_token_was_sent_says_so() -> None:
    from bk_notebook.server import local_server

    async with local_server(engine="energy", workers=1, tokens=("the-right-token",)) as server:
        code, out, err = await arun("transcribe", HELLO, "--url", server.url)
    assert code == 1 and "no token was sent" in err and "$BK_TOKEN" in err, err
    assert "check the token" not in err


# ------------------------------------------------------------------ progress for one long file
def test_progress_counts_audio_seconds_and_verbose_prints_each_final() -> None:
    result = run("-v", "transcribe", NUMBERS, HELLO, "--progress", "--concurrency", "2", *ENERGY)
    assert result.returncode == 0, result.stderr
    assert "audio sent:" in result.stderr and "100%" in result.stderr
    rows = [line.split()[0] for line in result.stdout.splitlines()[1:]]
    for path in (NUMBERS, HELLO):  # each final is named after its own file, though both stream at once
        finals = [line for line in result.stderr.splitlines() if line.startswith(f"final {Path(path).name} [")]
        assert len(finals) == rows.count(path) >= 1, result.stderr


def test_progress_shows_on_a_terminal_and_not_in_a_pipe() -> None:
    quiet = run("transcribe", HELLO, *ENERGY)
    assert quiet.returncode == 0 and "audio sent" not in quiet.stderr
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # a new pty is 0 columns wide
    env = {k: v for k, v in os.environ.items() if k != "BK_TOKEN"}
    proc = subprocess.run([*cli(), "transcribe", HELLO, *ENERGY], stdout=subprocess.PIPE, stderr=follower,
                          timeout=120, env=env)
    os.close(follower)
    seen = b""
    while True:
        try:
            data = os.read(leader, 65536)
        except OSError:  # the terminal closed: everything was read
            break
        if not data:
            break
        seen += data
    os.close(leader)
    assert proc.returncode == 0
    assert b"audio sent:" in seen and b"100%" in seen
