"""The input devices PortAudio sees: listing, choosing one, and saying clearly why one cannot open.

sounddevice (and so PortAudio) is imported here, lazily, with an install hint
when it or the PortAudio library is missing.  ALSA and PortAudio print their own
diagnostics on the C-level stderr; they are hidden (except with ``-v``) because
the :class:`~bk_notebook.errors.DeviceError` says what matters in one line.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from ..errors import DeviceError, MissingDependency, missing_extra

__all__ = ["InputDevice", "device_error", "input_devices", "quiet_native_stderr", "resolve_device", "sounddevice"]

logger = logging.getLogger("bk_notebook.audio.soundcard")


@contextlib.contextmanager
def quiet_native_stderr() -> Iterator[None]:
    """Hide ALSA's and PortAudio's own C-level chatter; our errors say what matters (not with -v)."""
    if logger.isEnabledFor(logging.DEBUG):
        yield
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):
        yield
        return
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def sounddevice() -> Any:
    try:
        with quiet_native_stderr():
            import sounddevice as module
    except ImportError as exc:
        raise missing_extra("SoundCard", "sounddevice", "soundcard", exc) from exc
    except OSError as exc:  # sounddevice is there, the PortAudio library is not
        raise MissingDependency(
            f"SoundCard needs the PortAudio library ({exc}): on Debian/Ubuntu apt-get install libportaudio2"
        ) from exc
    return module


@dataclass(frozen=True)
class InputDevice:
    """An input device as PortAudio sees it."""

    index: int
    name: str
    hostapi: str
    channels: int
    default_samplerate: float
    is_default: bool


def input_devices(sd: Any) -> list[InputDevice]:
    with quiet_native_stderr():
        devices = sd.query_devices()
        hostapis = sd.query_hostapis()
        default = sd.default.device[0]
    if default is None or default < 0:
        default = next((api["default_input_device"] for api in hostapis if api["default_input_device"] >= 0), -1)
    return [
        InputDevice(d["index"], d["name"], hostapis[d["hostapi"]]["name"], d["max_input_channels"],
                    float(d["default_samplerate"]), d["index"] == default)
        for d in devices
        if d["max_input_channels"] > 0
    ]


_LIST_HINT = "`bk-notebook listen --list-devices` shows the input devices PortAudio sees"


def resolve_device(devices: list[InputDevice], device: int | str | None) -> InputDevice:
    if not devices:
        raise DeviceError(
            "no input device found: connect a microphone, or check that the sound server "
            "(PulseAudio or PipeWire) is running for this user"
        )
    if device is None:
        chosen = [d for d in devices if d.is_default] or devices[:1]
        return chosen[0]
    if isinstance(device, int) or (isinstance(device, str) and device.strip().isdigit()):
        index = int(device)
        found = [d for d in devices if d.index == index]
        if not found:
            raise DeviceError(f"no input device with index {index}; {_LIST_HINT}")
        return found[0]
    if not isinstance(device, str) or not device.strip():
        raise DeviceError(f"device must be an index or a name, got {device!r}")
    exact = [d for d in devices if d.name == device]
    if exact:
        return exact[0]
    matches = [d for d in devices if device.lower() in d.name.lower()]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise DeviceError(f"no input device matching {device!r}; {_LIST_HINT}")
    names = ", ".join(repr(d.name) for d in matches)
    raise DeviceError(f"{device!r} matches several input devices ({names}); give its index or full name")


# PortAudio's error codes (portaudio.h) that a user can act on
_PA_INVALID_CHANNELS, _PA_INVALID_RATE, _PA_INVALID_DEVICE, _PA_UNAVAILABLE = -9998, -9997, -9996, -9985
_EBUSY = -16


def device_error(exc: BaseException, device: InputDevice, rate: float, channels: int) -> DeviceError:
    """Map a PortAudio failure to one clear :class:`DeviceError` line."""
    args: tuple[Any, ...] = tuple(getattr(exc, "args", ()))
    code = args[1] if len(args) > 1 and isinstance(args[1], int) else None
    host = args[2] if len(args) > 2 and isinstance(args[2], tuple) else None
    host_code, host_text = (host[1], host[2]) if host and len(host) > 2 else (None, "")
    label = f"input device {device.index} ({device.name!r})"
    if code == _PA_INVALID_RATE:
        message = f"{label} cannot record at {rate:g} Hz; its default rate is {device.default_samplerate:g} Hz"
    elif code == _PA_INVALID_CHANNELS:
        message = f"{label} cannot record {channels} channels (it has {device.channels})"
    elif code == _PA_INVALID_DEVICE:
        message = f"{label} is gone; {_LIST_HINT}"
    elif code == _PA_UNAVAILABLE or host_code == _EBUSY:
        message = f"{label} is busy or unavailable: another program may be using it"
    else:
        detail = host_text or (args[0] if args else str(exc))
        message = f"cannot open {label}: {detail}"
    return DeviceError(message)
