"""Dataset inputs for ``transcribe_many``: lists, DataFrames, folders and Hugging Face Datasets.

Each kind becomes a list of batch items, plus a function that puts the results
back beside the input, aligned row for row.  pandas and ``datasets`` are never
imported here: an input of theirs is recognised by its type's module, so
``import bk_notebook`` stays light.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import UsageError, missing_extra
from ..transcript import Transcript

__all__ = ["AUDIO_SUFFIXES", "BatchItem", "Source", "as_items", "result_columns"]

AUDIO_SUFFIXES = frozenset({".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".webm", ".m4a", ".aif", ".aiff"})
_AUDIO_COLUMNS = ("audio", "path", "file")


@dataclass(frozen=True)
class BatchItem:
    """One input of a batch, whatever shape it was given in: its audio, the rate of an array, its id."""

    audio: Any
    sr: float | None = None
    id: Any = None

    @classmethod
    def of(cls, item: Any) -> BatchItem:
        """Read a path, encoded bytes, an ``(array, sr)`` pair or ``{"audio": ..., "sr": ..., "id": ...}``."""
        if isinstance(item, BatchItem):
            return item
        if isinstance(item, dict):
            if "audio" not in item:
                raise UsageError("a dict item needs an 'audio' key (and 'sr' for arrays)")
            return cls(item["audio"], item.get("sr"), item.get("id"))
        if isinstance(item, tuple):
            if len(item) != 2:
                raise UsageError(f"a tuple item must be (array, sr), got {len(item)} elements")
            return cls(item[0], item[1])
        return cls(item)


@dataclass
class Source:
    """Items to transcribe and, for tabular input, how to put the results back."""

    items: list[Any]
    wrap: Callable[[list[Any]], Any] | None = None


def _module(data: Any) -> str:
    return type(data).__module__.split(".")[0]


def as_items(
    data: Any, *, column: str | None = None, sr_column: str | None = "sr", id_column: str | None = "id",
    pattern: str = "**/*",
) -> Source:
    """Turn ``transcribe_many``'s input into items (see its docstring for the kinds)."""
    if isinstance(data, (str, os.PathLike)):
        return _folder(Path(data), pattern)
    if _module(data) == "pandas" and hasattr(data, "columns"):
        return _dataframe(data, column, sr_column, id_column)
    if _module(data) == "datasets" and hasattr(data, "features"):
        return _hf_dataset(data, column, sr_column, id_column)
    if isinstance(data, (bytes, bytearray, tuple, dict)) or hasattr(data, "dtype"):
        raise UsageError("items must be a list of recordings (wrap a single one in a list: [item])")
    return Source(list(data))


def result_columns(results: list[Any]) -> dict[str, list[Any]]:
    """``text``, ``finals``, ``complete`` and ``error`` columns for a list of results.

    A failed item keeps the finals it received before the failure (``BkError.transcript``),
    with ``complete`` False and the error as ``"Type: message"``.
    """
    columns: dict[str, list[Any]] = {"text": [], "finals": [], "complete": [], "error": []}
    for result in results:
        transcript = result if isinstance(result, Transcript) else getattr(result, "transcript", None)
        ok = isinstance(result, Transcript)
        columns["text"].append(transcript.text if transcript is not None else None)
        columns["finals"].append(transcript.records() if transcript is not None else [])
        columns["complete"].append(bool(result.complete) if ok else False)
        columns["error"].append(None if ok else f"{type(result).__name__}: {result}")
    return columns


def _folder(root: Path, pattern: str) -> Source:
    if not root.exists():
        raise UsageError(f"no such folder: {root}")
    if not root.is_dir():
        raise UsageError(f"{root} is a file: pass a list of recordings ([path]) or a folder")
    files = sorted(p for p in root.glob(pattern) if p.is_file() and (pattern != "**/*" or p.suffix.lower()
                                                                      in AUDIO_SUFFIXES))
    if not files:
        raise UsageError(f"no audio files in {root} matching {pattern!r}")
    paths = [str(p) for p in files]

    def wrap(results: list[Any]) -> Any:
        pd = _pandas()
        return pd.DataFrame({"path": paths, **result_columns(results)})

    return Source(paths, wrap)


def _pick_column(available: list[str], column: str | None) -> str:
    if column is not None:
        if column not in available:
            raise UsageError(f"no column {column!r}; the columns are {available}")
        return column
    for name in _AUDIO_COLUMNS:
        if name in available:
            return name
    raise UsageError(f"which column holds the audio? pass column=; the columns are {available}")


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _item(audio: Any, sr: Any, key: Any) -> dict[str, Any]:
    """One batch item from a cell: a path, bytes, an array, or an HF-style audio dict."""
    if isinstance(audio, dict):
        if audio.get("array") is not None:
            audio, sr = audio["array"], audio.get("sampling_rate", sr)
        elif audio.get("bytes") is not None:
            audio = audio["bytes"]
        elif audio.get("path") is not None:
            audio = audio["path"]
        else:
            raise UsageError("an audio dict needs 'array' and 'sampling_rate', 'bytes', or 'path'")
    item: dict[str, Any] = {"audio": audio, "sr": None if _missing(sr) else float(sr)}
    if not _missing(key):
        item["id"] = key
    return item


def _dataframe(df: Any, column: str | None, sr_column: str | None, id_column: str | None) -> Source:
    name = _pick_column(list(df.columns), column)
    srs = df[sr_column].tolist() if sr_column in df.columns else [None] * len(df)
    ids = df[id_column].tolist() if id_column in df.columns else [None] * len(df)
    items = [_item(audio, sr, key) for audio, sr, key in zip(df[name].tolist(), srs, ids, strict=True)]

    def wrap(results: list[Any]) -> Any:
        out = df.copy()
        for key, values in result_columns(results).items():
            out[key] = values
        return out

    return Source(items, wrap)


def _hf_dataset(ds: Any, column: str | None, sr_column: str | None, id_column: str | None) -> Source:
    try:
        from datasets import Audio
    except ImportError as exc:  # pragma: no cover - a Dataset came from somewhere
        raise missing_extra("Dataset input", "datasets", "datasets", exc) from exc
    name = _pick_column(list(ds.column_names), column)
    audio_column = ds.select_columns([name])
    if isinstance(ds.features[name], Audio):  # read bytes/path and decode them here: no torchcodec needed
        audio_column = audio_column.cast_column(name, Audio(decode=False))
    srs = ds[sr_column] if sr_column in ds.column_names else [None] * len(ds)
    ids = ds[id_column] if id_column in ds.column_names else [None] * len(ds)
    items = [_item(row[name], sr, key) for row, sr, key in zip(audio_column, srs, ids, strict=True)]

    def wrap(results: list[Any]) -> Any:
        columns = result_columns(results)
        columns["finals"] = [[_uniform(r) for r in finals] for finals in columns["finals"]]
        out = ds
        for key, values in columns.items():
            out = out.add_column(key, values)
        return out

    return Source(items, wrap)


def _uniform(record: dict[str, Any]) -> dict[str, Any]:
    """One schema for every final (Arrow needs it): ``timing`` is None unless estimated."""
    return {"segment": record["segment"], "text": record["text"], "start": float(record["start"]),
            "end": float(record["end"]), "session_id": record.get("session_id"), "timing": record.get("timing")}


def _pandas() -> Any:
    try:
        import pandas as pd
    except ImportError as exc:
        raise missing_extra("folder input (it returns a DataFrame)", "pandas", "pandas", exc) from exc
    return pd

