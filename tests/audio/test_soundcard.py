"""The sound card, for real: PulseAudio with a null sink whose monitor is the input device.

The fixture starts PulseAudio in the foreground under a temporary ``XDG_RUNTIME_DIR``
(as root in CI too), with a 48 kHz stereo null sink whose monitor is the default
source.  Debian's PortAudio has no PulseAudio backend: it reaches the server
through ALSA's ``default`` device (the pulse plugin of ``libasound2-plugins``, made
the default by the ``pulseaudio`` package while a server runs), so the card opens
at 44.1 kHz stereo and every test exercises the real conversion.  A known WAV is
played into the sink with ``paplay`` and must come back as its words.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import bk_notebook as bk
from bk_notebook.audio.devices import InputDevice, device_error

from helpers import FIXTURES, IN_CI, require

HELLO = FIXTURES / "hello.wav"
HELLO_TEXT = "hello world it is a speech recognition test"
# Through the sound card PocketSphinx's words depend on where the audio falls on its 10 ms frames:
# "hello" comes back as "so" in about one run in six, and CI once heard "so we're old it is a speech
# recognition test" (WER 0.375).  So the claim is a bound, not a word list: at most half the words
# wrong, and "speech recognition", which came back in every run.  Silence or noise scores 1.0.
HELLO_MAX_WER = 0.5


def heard_hello(text: str) -> bool:
    jiwer = require("jiwer", "word error rates")
    return "speech recognition" in text and jiwer.wer(HELLO_TEXT, text.lower()) <= HELLO_MAX_WER

PULSE_CONFIG = """
load-module module-native-protocol-unix auth-anonymous=1
load-module module-null-sink sink_name=bk_sink rate=48000 channels=2 sink_properties=device.description=bk_sink
set-default-sink bk_sink
set-default-source bk_sink.monitor
"""
# Named ALSA devices, as a user gives a PulseAudio source a name PortAudio can list and open.
ASOUNDRC = """
pcm.bk_monitor {
    type pulse
    device "bk_sink.monitor"
    hint { show on description "Monitor of the bk_sink null sink" }
}
pcm.bk_gone {
    type pulse
    device "no_such_source"
    hint { show on description "A PulseAudio source that does not exist" }
}
"""


def missing(what: str, hint: str) -> None:
    if IN_CI:
        pytest.fail(f"{what} is required in CI for the sound card tests ({hint}); .ci/run must install it")
    pytest.skip(f"{what} not available: {hint}")


def cli() -> list[str]:
    exe = shutil.which("bk-notebook")
    return [exe] if exe else [sys.executable, "-m", "bk_notebook.cli"]


DEVICE = InputDevice(3, "USB mic", "ALSA", 2, 48000.0, True)


@pytest.mark.parametrize("args, expected", [
    (("Error opening InputStream: Invalid sample rate", -9997), "cannot record at 96000 Hz"),
    (("Error opening InputStream: Invalid number of channels", -9998), "cannot record 2 channels"),
    (("Error opening InputStream: Device unavailable", -9985), "busy or unavailable"),
    (("Error opening InputStream: Unanticipated host error", -9999, (8, -16, "Device or resource busy")),
     "busy or unavailable"),
    (("Error opening InputStream: Unanticipated host error", -9999, (8, -5, "Input/output error")),
     "cannot open input device 3 ('USB mic'): Input/output error"),
])
def test_portaudio_failures_become_one_clear_line(args: tuple[Any, ...], expected: str) -> None:
    error = device_error(Exception(*args), DEVICE, 96000, 2)
    assert isinstance(error, bk.DeviceError) and expected in str(error) and "\n" not in str(error)


def test_a_missing_sounddevice_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "sounddevice", None)
    with pytest.raises(bk.MissingDependency, match=r"bk-notebook\[soundcard\]"):
        bk.SoundCard()


def test_a_missing_portaudio_library_names_the_debian_package() -> None:
    import importlib.util

    if importlib.util.find_spec("sounddevice") is None:
        missing("sounddevice", "pip install -e '.[soundcard]'")
    code = ("import ctypes.util; ctypes.util.find_library = lambda name: None\n"  # as on a system without it
            "import bk_notebook as bk\n"
            "try:\n    bk.SoundCard()\nexcept bk.MissingDependency as exc:\n    print(exc)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120).stdout
    assert "apt-get install libportaudio2" in out, out


# ------------------------------------------------------------ the real stack
@dataclass
class Pulse:
    env: dict[str, str]

    def play(self, wav: Path) -> None:
        subprocess.run(["paplay", str(wav)], env=self.env, check=True, timeout=120)

    def listen(self, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        # PocketSphinx: these tests wait for its early partials ("world" mid-utterance).
        engine = ["--engine", "pocketsphinx"] if "--local" in args else []
        return subprocess.Popen([*cli(), "listen", *args, *engine], env=env or self.env, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)


@pytest.fixture(scope="module")
def pulse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pulse]:
    for tool, package in [("pulseaudio", "pulseaudio"), ("paplay", "pulseaudio-utils"), ("pactl", "pulseaudio-utils")]:
        if shutil.which(tool) is None:
            missing(tool, f"apt-get install {package}")
    root = tmp_path_factory.mktemp("pulse")
    runtime, home = root / "run", root / "home"
    runtime.mkdir(mode=0o700)
    home.mkdir()
    (root / "default.pa").write_text(PULSE_CONFIG)
    (home / ".asoundrc").write_text(ASOUNDRC)
    env = {**os.environ, "XDG_RUNTIME_DIR": str(runtime), "HOME": str(home),
           "PULSE_SERVER": f"unix:{runtime}/pulse/native", "BK_TOKEN": "tok-SOUNDCARD-SECRET"}
    env.pop("BK_STT_URL", None)
    log = (root / "pulseaudio.log").open("w")
    server = subprocess.Popen(
        ["pulseaudio", "-n", "-F", str(root / "default.pa"), "--exit-idle-time=-1", "--daemonize=no",
         "--disallow-exit", "--log-target=stderr"],
        env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while subprocess.run(["pactl", "info"], env=env, capture_output=True).returncode != 0:
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"PulseAudio did not start:\n{(root / 'pulseaudio.log').read_text()[-2000:]}")
            time.sleep(0.2)
        with pytest.MonkeyPatch.context() as patch:  # this process's PortAudio reaches the same server
            for key in ("XDG_RUNTIME_DIR", "PULSE_SERVER"):
                patch.setenv(key, env[key])
            try:
                import sounddevice
            except ImportError:
                missing("sounddevice", "pip install -e '.[soundcard]'")
            except OSError:
                missing("the PortAudio library", "apt-get install libportaudio2")
            sounddevice._terminate()  # re-scan the devices now that the server runs
            sounddevice._initialize()
            yield Pulse(env)
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()


def wait_for_line(proc: subprocess.Popen[str], needle: str, seen: list[str]) -> str:
    """Read stderr lines until one contains ``needle`` (the process's own state, no clock)."""
    assert proc.stderr is not None
    while True:
        line = proc.stderr.readline()
        if not line:
            proc.wait(timeout=60)
            pytest.fail(f"listen exited ({proc.returncode}) before printing {needle!r}:\n{''.join(seen)}")
        seen.append(line)
        if needle in line:
            return line


def final_text(records: list[dict[str, Any]]) -> str:
    return " ".join(r["text"] for r in records)


@pytest.mark.slow
def test_list_devices_lists_the_monitor(pulse: Pulse) -> None:
    result = subprocess.run([*cli(), "listen", "--list-devices"], env=pulse.env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["index", "name", "host", "channels", "rate"]
    assert any(line.split()[1:3] == ["bk_monitor", "ALSA"] for line in lines[1:]), result.stdout
    defaults = [line for line in lines if line.startswith("*")]
    assert len(defaults) == 1 and defaults[0].split()[2] == "default", result.stdout
    assert [d.name for d in bk.SoundCard.devices() if d.is_default] == ["default"]


@pytest.mark.slow
@pytest.mark.parametrize("device", [None, "bk_monitor"])
def test_listen_for_a_duration_prints_the_wavs_words(pulse: Pulse, tmp_path: Path, device: str | None) -> None:
    import json

    out = tmp_path / "finals.jsonl"
    proc = pulse.listen("--local", "--duration", "12", "--format", "jsonl", "--out", str(out),
                        *(["--device", device] if device else []))
    seen: list[str] = []
    ready = wait_for_line(proc, "listening to", seen)
    assert f"listening to {device or 'default'} (44100 Hz, 2 ch)" in ready
    pulse.play(HELLO)
    stdout, stderr = proc.communicate(timeout=180)
    stderr = "".join(seen) + stderr
    assert proc.returncode == 0, stderr
    records = [json.loads(line) for line in stdout.splitlines()]
    assert heard_hello(final_text(records)), stdout
    assert out.read_text() == stdout
    assert any(line.startswith("final [") for line in stderr.splitlines())
    meters = [line.split("]")[0] for line in stderr.splitlines() if line.startswith("partial: [")]
    assert any("#" in m for m in meters), stderr  # the level meter shows the sound arriving
    assert "tok-SOUNDCARD-SECRET" not in stdout + stderr


@pytest.mark.slow
def test_ctrl_c_mid_utterance_ends_with_its_final_and_exit_0(pulse: Pulse) -> None:
    proc = pulse.listen("--local")
    seen: list[str] = []
    wait_for_line(proc, "Ctrl-C stops", seen)
    player = subprocess.Popen(["paplay", str(HELLO)], env=pulse.env)
    try:
        wait_for_line(proc, "world", seen)  # a partial: the utterance is under way
        assert not any(line.startswith("final") for line in seen), seen  # no final yet: it is mid-utterance
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        player.kill()
        player.wait()
    assert proc.returncode == 0, "".join(seen) + stderr
    header, *rows = stdout.splitlines()
    assert header.split() == ["file", "segment", "start", "end", "text"]
    assert len(rows) == 1 and "world" in rows[0].split(), stdout
    assert any(line.startswith("final [") and "world" in line for line in stderr.splitlines()), stderr
    assert "interrupted" not in stderr


@pytest.mark.slow
@pytest.mark.parametrize("args, message", [
    (["--device", "nope"], "no input device matching 'nope'"),
    (["--device", "99"], "no input device with index 99"),
    (["--device", "bk_gone"], "cannot open input device"),
])
def test_a_device_that_cannot_be_used_is_one_clear_line(pulse: Pulse, args: list[str], message: str) -> None:
    # Nothing listens on port 9: had the device error come after connecting, this would say so instead.
    result = subprocess.run([*cli(), "listen", "--url", "ws://127.0.0.1:9/v1/prod/stream", *args], env=pulse.env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.strip().splitlines() == [result.stderr.strip()], result.stderr  # one line, no ALSA chatter
    assert message in result.stderr and result.stderr.startswith("bk-notebook: error: ")


@pytest.mark.slow
def test_no_sound_server_means_no_input_device(pulse: Pulse, tmp_path: Path) -> None:
    gone = tmp_path / "run"
    gone.mkdir(mode=0o700)
    env = {**pulse.env, "XDG_RUNTIME_DIR": str(gone), "PULSE_SERVER": f"unix:{gone}/no-server"}
    result = subprocess.run([*cli(), "listen", "--local"], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == ["bk-notebook: error: no input device found: connect a microphone, "
                                                  "or check that the sound server (PulseAudio or PipeWire) is "
                                                  "running for this user"], result.stderr


def test_a_rate_the_device_refuses_is_reported_before_anything_opens(pulse: Pulse) -> None:
    with pytest.raises(bk.DeviceError, match="cannot record at 1 Hz; its default rate is 44100 Hz"):
        bk.SoundCard(samplerate=1)


async def play_then_stop(pulse: Pulse, wav: Path, card: bk.SoundCard) -> None:
    """Play ``wav`` into the sink; stop ``card`` once it has been played."""
    player = await asyncio.create_subprocess_exec("paplay", str(wav), env=pulse.env)
    assert await player.wait() == 0
    card.stop()


@pytest.mark.slow
async def test_soundcard_feeds_a_client_session(pulse: Pulse, sphinx_server: Any) -> None:
    card = bk.SoundCard()
    assert (card.native_rate, card.channels) == (44100.0, 2)
    sizes: list[int] = []
    player: asyncio.Task[None] | None = None
    async with bk.Client(sphinx_server.url).stream() as session:
        async for chunk in card:
            if player is None:  # the first chunk: the card is capturing, play now
                player = asyncio.create_task(play_then_stop(pulse, HELLO, card))
            sizes.append(len(chunk))
            await session.send(chunk)
        transcript = await session.stop()
    assert player is not None
    await player
    assert not card.running
    assert all(size == 3200 for size in sizes[:-1]) and 0 < sizes[-1] <= 3200
    assert transcript.duration == pytest.approx(sum(sizes) / 32000)
    assert sum(sizes) // 2 == round(card.seconds_captured * 16000)  # every captured frame came out, converted
    assert transcript.complete
    assert heard_hello(transcript.text), transcript.text
    assert card.dropped_seconds == 0


@pytest.mark.slow
def test_the_card_hears_the_wav_as_it_was_played(pulse: Pulse) -> None:
    """Through PulseAudio (48 kHz sink, 44.1 kHz stereo capture) and back to 16 kHz: the same waveform."""
    import soundfile

    played, rate = soundfile.read(HELLO, dtype="int16")
    assert rate == 16000
    card = bk.SoundCard()
    seen = Counter(card)
    card.start()
    try:
        seen.wait_for(1)  # capturing: play now
        pulse.play(HELLO)
    finally:
        card.stop()
    heard = np.frombuffer(b"".join(seen.chunks), dtype="<i2").astype(np.float64)
    assert len(heard) >= len(played)
    ref = played.astype(np.float64)
    ref /= np.linalg.norm(ref)
    # normalised cross-correlation at every lag (by FFT); the best lag is the playback's delay
    n, size = len(ref), 1 << (len(heard) + len(ref)).bit_length()
    corr = np.fft.irfft(np.fft.rfft(heard, size) * np.conj(np.fft.rfft(ref, size)), size)[: len(heard) - n + 1]
    energy = np.concatenate([[0.0], np.cumsum(heard**2)])
    scores = corr / (np.sqrt(np.maximum(energy[n:] - energy[:-n], 0)) + 1e-9)
    print(f"best correlation {scores.max():.4f} at a delay of {scores.argmax() / 16000:.3f} s")
    assert scores.max() > 0.95, scores.max()


@pytest.mark.slow
async def test_transcriber_takes_a_soundcard(pulse: Pulse, sphinx_server: Any) -> None:
    from bk_notebook.widgets import Transcriber

    card = bk.SoundCard("default")
    transcriber = Transcriber(bk.Client(sphinx_server.url), source=card)
    assert card not in transcriber.children
    transcriber.start()
    assert card.running
    player = await asyncio.create_subprocess_exec("paplay", str(HELLO), env=pulse.env)
    await player.wait()
    transcriber.stop()
    await asyncio.wait_for(transcriber.wait(), timeout=120)
    assert not card.running
    assert "status: done" in transcriber.status.value, transcriber.status.value
    assert heard_hello(final_text(transcriber.finals)), transcriber.finals
    assert {r["run"] for r in transcriber.finals} == {0}
    transcriber.start()  # a second run on the same card: silence this time
    assert card.running
    transcriber.stop()
    await asyncio.wait_for(transcriber.wait(), timeout=120)
    assert not card.running and "status: done" in transcriber.status.value, transcriber.status.value
    assert {r["run"] for r in transcriber.finals} == {0}  # silence adds no final, loses none
    assert heard_hello(final_text(transcriber.finals)), transcriber.finals


class Counter:
    """Chunks seen by a card's ``on_chunk``, with a way to wait for the n-th one."""

    def __init__(self, card: bk.SoundCard) -> None:
        self.chunks: list[bytes] = []
        self.stops = 0
        self._cond = threading.Condition()
        card.on_chunk(self._chunk)
        card.on_stop(self._stop)

    def _chunk(self, chunk: bytes) -> None:
        with self._cond:
            self.chunks.append(chunk)
            self._cond.notify_all()

    def _stop(self) -> None:
        with self._cond:
            self.stops += 1
            self._cond.notify_all()

    def wait_for(self, n: int) -> None:
        with self._cond:
            assert self._cond.wait_for(lambda: len(self.chunks) >= n, timeout=60), len(self.chunks)


@pytest.mark.slow
def test_stop_after_any_number_of_chunks_and_restart(pulse: Pulse) -> None:
    card = bk.SoundCard()
    seen = Counter(card)
    for run, n in enumerate([0, 1, 2, 3, 5, 8]):  # stops at every early chunk boundary, on one card, re-started
        before = len(seen.chunks)
        card.start()
        assert card.running
        seen.wait_for(before + n)
        card.stop()
        assert not card.running and seen.stops == run + 1  # on_stop came before stop() returned
        got = seen.chunks[before:]
        assert all(len(c) == 3200 for c in got[:-1]) and all(0 < len(c) <= 3200 for c in got[-1:])
        assert sum(map(len, got)) // 2 == round(card.seconds_captured * 16000), (n, len(got))
    card.stop()  # stopping a stopped card is harmless
    assert seen.stops == 6


@pytest.mark.slow
def test_blocks_that_are_not_whole_chunks_keep_their_tail_at_stop(pulse: Pulse) -> None:
    # At 11025 Hz a 0.1 s block is 1102 frames, 1599.3 samples at 16 kHz: the audio never ends on a chunk's
    # edge, so the last partial chunk (the chunker's flush at stop) must come out. At the usual rates every
    # block is exactly half a chunk, and a lost tail would go unseen.
    card = bk.SoundCard(samplerate=11025)
    seen = Counter(card)
    for n in (1, 4, 7):
        before = len(seen.chunks)
        card.start()
        seen.wait_for(before + n)
        card.stop()
        got = seen.chunks[before:]
        assert 0 < len(got[-1]) < 3200, [len(c) for c in got]  # a partial tail, delivered
        assert abs(sum(map(len, got)) // 2 - card.seconds_captured * 16000) <= 1, (n, len(got))


@pytest.mark.slow
def test_a_callback_may_stop_the_card(pulse: Pulse) -> None:
    card = bk.SoundCard()
    seen = Counter(card)
    card.on_chunk(lambda chunk: card.stop() if len(seen.chunks) >= 3 else None)  # from the converter thread
    card.start()
    seen.wait_for(3)
    with seen._cond:
        assert seen._cond.wait_for(lambda: seen.stops == 1, timeout=60)
    assert not card.running  # stopped by the callback itself: no join of its own thread, no second stop needed


@pytest.mark.slow
async def test_a_consumer_that_falls_behind_loses_the_oldest_audio_counted(pulse: Pulse) -> None:
    card = bk.SoundCard(backlog_seconds=0.5)
    seen = Counter(card)
    feed = card.chunks()
    seen.wait_for(15)  # 1.5 s captured while nobody read: only the last 0.5 s may wait
    card.stop()
    kept = [chunk async for chunk in feed]
    assert len(kept) <= 5 + 1 and kept == seen.chunks[-len(kept):]  # the newest, in order
    assert card.dropped_seconds == pytest.approx((len(seen.chunks) - len(kept)) * 0.1)
    assert not card.running


@pytest.mark.slow
async def test_leaving_the_loop_early_stops_the_card(pulse: Pulse) -> None:
    card = bk.SoundCard()
    feed = card.chunks()
    async for _chunk in feed:
        break
    feed.close()
    assert not card.running
    async with contextlib.aclosing(aiter(card)) as chunks:  # the same with the plain iterator
        async for _chunk in chunks:
            assert card.running
            break
    assert not card.running


@pytest.mark.slow
@pytest.mark.parametrize("token_args", [[], ["--token-env", "MY_BK_TOKEN"]])
async def test_a_server_lost_mid_stream_keeps_the_finals_and_says_why(pulse: Pulse, tmp_path: Path,
                                                                       token_args: list[str]) -> None:
    import json

    from client.test_client import Recorder
    from client.test_faults import after_chunks
    from helpers import scripted_server

    async def close(ws: Any) -> bool:
        await ws.close(1011, "worker died")
        return False

    recorder, paths = Recorder(on_chunk=after_chunks(8, close)), []

    async def handler(ws: Any) -> None:
        paths.append(ws.request.path)
        await recorder(ws)

    out = tmp_path / "finals.jsonl"
    env = pulse.env
    if token_args:  # the token from another variable; $BK_TOKEN is not used then
        env = {**pulse.env, "MY_BK_TOKEN": "tok-SOUNDCARD-SECRET", "BK_TOKEN": "unused"}
    async with scripted_server(handler) as url:
        proc = await asyncio.create_subprocess_exec(
            *cli(), "listen", "--url", url, "--format", "jsonl", "--out", str(out), *token_args,
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        raw_out, raw_err = await asyncio.wait_for(proc.communicate(), timeout=120)
    stdout, stderr = raw_out.decode(), raw_err.decode()
    assert proc.returncode == 1
    assert [json.loads(line)["text"] for line in stdout.splitlines()] == ["early words"]  # kept, not lost
    assert out.read_text() == stdout
    assert stderr.splitlines()[-1].startswith("bk-notebook: error: ") and "1011" in stderr.splitlines()[-1]
    assert len(recorder.chunks) == 8 and all(len(c) == 3200 for c in recorder.chunks)
    assert "token=tok-SOUNDCARD-SECRET" in paths[0]  # the token was sent...
    assert "tok-SOUNDCARD-SECRET" not in stdout + stderr  # ...and never shown


@pytest.mark.slow
async def test_a_device_that_stops_delivering_ends_the_feed_after_its_chunks(pulse: Pulse) -> None:
    card = bk.SoundCard()
    seen = Counter(card)
    got: list[bytes] = []
    with pytest.raises(bk.DeviceError, match=r"input device \d+ \('default'\) stopped delivering audio"):
        async for chunk in card.chunks():
            got.append(chunk)
            if len(got) == 3:
                card._on_finished()  # what PortAudio calls when a stream ends on its own (unplugged, server gone)
    assert got == seen.chunks and len(got) >= 3  # every chunk converted before the failure arrived first
    with seen._cond:
        assert seen._cond.wait_for(lambda: seen.stops == 1, timeout=60)
    assert not card.running  # the device was released


@pytest.mark.slow
def test_a_token_on_the_command_line_is_refused_unshown(pulse: Pulse) -> None:
    result = subprocess.run([*cli(), "listen", "--url", "ws://127.0.0.1:9/v1/prod/stream", "--token", "tok-ON-CLI"],
                            env=pulse.env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "visible to other local users" in result.stderr
    assert "tok-ON-CLI" not in result.stdout + result.stderr


@pytest.mark.slow
async def test_transcriber_with_a_card_that_cannot_open_says_so_and_connects_nowhere(
        pulse: Pulse, monkeypatch: pytest.MonkeyPatch) -> None:
    from bk_notebook.widgets import Transcriber

    from client.test_client import Recorder
    from helpers import scripted_server

    card = bk.SoundCard()
    monkeypatch.setenv("PULSE_SOURCE", "no_such_source")  # from now on the sound server refuses the stream
    with pytest.raises(bk.DeviceError, match="cannot open input device"):
        bk.SoundCard()  # a new card finds out at once
    recorder = Recorder()
    async with scripted_server(recorder) as url:
        transcriber = Transcriber(bk.Client(url), source=card)
        transcriber.start()
        await asyncio.wait_for(transcriber.wait(), timeout=60)
        assert "status: error: cannot open input device" in transcriber.status.value, transcriber.status.value
        assert not transcriber.running and not card.running
        assert not transcriber.start_button.disabled and transcriber.stop_button.disabled  # ready to try again
    assert recorder.connections == 0  # the device failed before any traffic
