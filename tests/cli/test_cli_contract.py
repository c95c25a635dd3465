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

from cli.test_cli import arun, cli, run
from helpers import FIXTURES, require

pytestmark = pytest.mark.slow

HELLO, NUMBERS = str(FIXTURES / "hello.wav"), str(FIXTURES / "numbers.wav")
NOWHERE = ["--url", "ws://127.0.0.1:9/v1/prod/stream"]  # nothing listens: a check made after connecting says so
ENERGY = ["--local", "--engine", "energy", "--speed", "max"]


# ------------------------------------------------------------------ --out writes the result
@pytest.mark.parametrize("fmt, first_line", [("srt", "1"), ("vtt", "WEBVTT"), ("jsonl", "{"),
                                             ("csv", "file,segment,text,start,end,session_id"), ("table", "file")])
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


# ------------------------------------------------------------------ nothing of the user's is overwritten
NOTE = b'{"project":"rapat","notes":"important"}'  # a one-line JSON note without a final newline


@pytest.mark.parametrize("content", [NOTE, b"no newline at all", b"first line\nsecond", b'{"key": "a"}\n'])
@pytest.mark.parametrize("resume", [True, False])
def test_a_checkpoint_path_naming_another_file_is_refused_untouched(tmp_path: Path, content: bytes,
                                                                    resume: bool) -> None:
    note = tmp_path / "result.json"
    note.write_bytes(content)
    result = run("transcribe", HELLO, "--checkpoint", str(note), *(["--resume"] if resume else []), *ENERGY)
    assert result.returncode == 2, result.stderr
    assert len(result.stderr.splitlines()) == 1 and str(note) in result.stderr
    assert "not a checkpoint" in result.stderr and "left as they are" in result.stderr
    assert note.read_bytes() == content


def test_a_torn_checkpoint_still_resumes_after_its_whole_records(tmp_path: Path) -> None:
    checkpoint = tmp_path / "progress.jsonl"
    assert run("transcribe", HELLO, "--checkpoint", str(checkpoint), *ENERGY).returncode == 0
    whole = checkpoint.read_bytes()
    checkpoint.write_bytes(whole + b'{"key": "x", "compl')  # a kill mid-write
    result = run("transcribe", HELLO, NUMBERS, "--checkpoint", str(checkpoint), "--resume", *ENERGY)
    assert result.returncode == 0, result.stderr
    assert [json.loads(line)["key"] for line in checkpoint.read_text().splitlines()] == [HELLO, NUMBERS]


def _recording(tmp_path: Path, name: str = "rapat.wav") -> Path:
    path = tmp_path / name
    path.write_bytes(Path(HELLO).read_bytes())
    return path


@pytest.mark.parametrize("flag", ["--out", "--checkpoint"])
@pytest.mark.parametrize("how", ["same path", "symlink", "hard link"])
def test_an_output_naming_an_input_is_refused_before_any_audio(tmp_path: Path, flag: str, how: str) -> None:
    recording = _recording(tmp_path)
    target = recording
    if how != "same path":
        target = tmp_path / "other-name.wav"
        (target.symlink_to if how == "symlink" else target.hardlink_to)(recording)
    before = recording.read_bytes()
    result = run("transcribe", str(recording), flag, str(target), "--format", "csv", *NOWHERE)
    assert result.returncode == 2, result.stderr
    assert len(result.stderr.splitlines()) == 1 and "is one of the inputs" in result.stderr
    assert "wrote" not in result.stderr and recording.read_bytes() == before


def test_an_out_dir_result_that_is_an_input_is_refused(tmp_path: Path) -> None:
    recording = _recording(tmp_path)
    out_dir = tmp_path / "subs"
    out_dir.mkdir()
    (out_dir / "rapat.csv").symlink_to(recording)  # where rapat.wav's result would go
    before = recording.read_bytes()
    result = run("transcribe", str(recording), "--out-dir", str(out_dir), "--format", "csv", *NOWHERE)
    assert result.returncode == 2 and "is one of the inputs" in result.stderr, result.stderr
    assert recording.read_bytes() == before


def test_checkpoint_and_out_naming_one_file_is_refused(tmp_path: Path) -> None:
    both = tmp_path / "result.jsonl"
    result = run("transcribe", HELLO, "--out", str(both), "--checkpoint", str(both), *NOWHERE)
    assert result.returncode == 2 and "two files" in result.stderr, result.stderr
    assert not both.exists()


@pytest.mark.parametrize("umask, existing, expected", [
    (0o022, None, 0o644), (0o027, None, 0o640), (0o022, 0o600, 0o600), (0o002, 0o664, 0o664),
])
def test_a_result_file_has_the_umasks_mode_and_a_replaced_one_keeps_its_own(
        tmp_path: Path, umask: int, existing: int | None, expected: int) -> None:
    out = tmp_path / "talk.csv"
    if existing is not None:
        out.write_text("old\n")
        out.chmod(existing)
    env = {k: v for k, v in os.environ.items() if k != "BK_TOKEN"}
    result = subprocess.run([*cli(), "transcribe", HELLO, "--out", str(out), "--format", "csv", *ENERGY],
                            capture_output=True, text=True, timeout=120, env=env,
                            preexec_fn=lambda: os.umask(umask))
    assert result.returncode == 0, result.stderr
    assert out.read_text().startswith("file,") and oct(out.stat().st_mode & 0o777) == oct(expected)


def test_resume_notices_other_audio_with_the_same_size_and_time(tmp_path: Path) -> None:
    import soundfile

    recording = _recording(tmp_path)
    checkpoint = tmp_path / "progress.jsonl"
    first = run("transcribe", str(recording), "--checkpoint", str(checkpoint), *ENERGY)
    assert first.returncode == 0, first.stderr
    reference = tmp_path / "reference"
    reference.write_bytes(b"")
    subprocess.run(["touch", "-r", str(recording), str(reference)], check=True)
    samples, rate = soundfile.read(recording, dtype="int16")
    soundfile.write(recording, samples[::-1], rate, subtype="PCM_16")  # other audio, the same number of bytes
    subprocess.run(["touch", "-r", str(reference), str(recording)], check=True)  # and the same time
    assert recording.stat().st_size == Path(HELLO).stat().st_size
    again = run("transcribe", str(recording), "--checkpoint", str(checkpoint), "--resume", *ENERGY)
    assert again.returncode == 0, again.stderr
    assert "changed since the checkpoint" in again.stderr
    assert len(checkpoint.read_text().splitlines()) == 2  # transcribed again, not answered from the file


def test_verbose_after_the_command_is_accepted() -> None:
    result = run("transcribe", HELLO, *ENERGY, "-v")
    assert result.returncode == 0, result.stderr
    assert f"final {Path(HELLO).name} [" in result.stderr  # -v's finals on stderr, as before the command


def test_an_engine_that_fails_inside_the_session_is_named_once_not_retried(tmp_path: Path) -> None:
    (tmp_path / "broken_engine.py").write_text(
        "class Broken:\n    def __init__(self):\n        raise RuntimeError('the model folder is empty')\n"
        "    def reset(self): pass\n    def feed(self, pcm): return []\n    def flush(self): return []\n")
    env = {"PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    result = run("transcribe", HELLO, "--local", "--engine", "broken_engine:Broken", "--speed", "max", env=env)
    assert result.returncode == 1, result.stderr
    assert "the engine failed to start: RuntimeError: the model folder is empty" in result.stderr
    assert "worker not available" not in result.stderr and result.stderr.count("Traceback") <= 1


# ------------------------------------------------------------------ start-up refuses what cannot work
@pytest.mark.parametrize("command, message", [
    (["serve", "--port", "0", "--language", "xx"], "unknown Whisper language 'xx'"),
    (["serve", "--port", "0", "--engine", "pocketsphinx", "--language", "id"],
     "the pocketsphinx engine transcribes US English only"),
    (["transcribe", HELLO, "--local", "--language", "xx"], "unknown Whisper language 'xx'"),
    (["transcribe", HELLO, "--local", "--model", "tiny.en", "--language", "id"], "'tiny.en' transcribes English only"),
    (["listen", "--local", "--language", "xx", "--device", "no-such-device-anywhere"], "unknown Whisper language"),
    (["demo", "--engine", "pocketsphinx", "--language", "ID"], "the pocketsphinx engine transcribes US English only"),
])
def test_a_language_the_engine_cannot_do_is_one_line_exit_2_before_listening(command: list[str],
                                                                              message: str) -> None:
    result = run(*command)
    assert result.returncode == 2, result.stderr
    assert len(result.stderr.splitlines()) == 1 and message in result.stderr, result.stderr
    assert "listening" not in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("make", ["read-only", "folder in place of model.bin"])
def test_an_unusable_model_cache_is_named_and_auto_falls_back_to_pocketsphinx(
        tmp_path: Path, make: str, request: pytest.FixtureRequest) -> None:
    require("faster_whisper", "the whisper engine")
    if make == "read-only":
        cache = request.getfixturevalue("readonly_folder")
    else:
        cache = tmp_path / "cache"
        (cache / "models" / "whisper-base" / "model.bin").mkdir(parents=True)
    env = {"BK_CACHE_DIR": str(cache)}
    for threads_or_processes in ("--threads", "--processes"):  # the model loaded here, or in each engine process
        served = run("serve", "--port", "0", "--engine", "whisper", threads_or_processes, env=env)
        assert served.returncode == 2, served.stderr
        line = served.stderr.strip()
        assert len(line.splitlines()) == 1 and "cannot listen" not in line
        assert f"cache folder {cache / 'models' / 'whisper-base'}" in line and "BK_CACHE_DIR" in line
        assert ("Read-only file system" if make == "read-only" else "a folder is where") in line
    auto = run("transcribe", HELLO, "--local", "--speed", "max", env=env)
    assert auto.returncode == 0, auto.stderr
    assert auto.stderr.count("using pocketsphinx (US English) instead") == 1 and "BK_CACHE_DIR" in auto.stderr
    assert "hello world" in auto.stdout


@pytest.mark.slow
def test_whispers_own_code_and_iso_are_both_accepted_and_tiny_en_says_it_is_english_only() -> None:
    require("faster_whisper", "the whisper engine")
    iso = run("transcribe", HELLO, "--local", "--engine", "whisper", "--language", "JV", "--speed", "max")
    assert iso.returncode == 0, iso.stderr
    english = run("transcribe", HELLO, "--local", "--model", "tiny.en", "--speed", "max")
    assert english.returncode == 0, english.stderr
    assert english.stderr.count("tiny.en transcribes English only: language 'auto' means English") == 1
    assert "world" in english.stdout.lower()
