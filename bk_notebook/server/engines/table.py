"""The table of engines: every place that names an engine reads it here.

``serve``, ``local_server``, the server's option checks, the CLI's help and
the Dask workers' servers all go through :data:`ENGINES`, :func:`resolve_engine`
and :func:`engine_factory`.  Adding an engine is one module (with a
``factory(*, preload, **options)`` function) and one row.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass

from ...errors import BkError, UsageError, install_hint, missing_extra
from ..turns import Throughput
from .base import Engine
from .languages import check_engine_languages

__all__ = ["ENGINES", "EngineSpec", "built_engine", "chosen_engine", "engine_factory", "resolve_engine"]

logger = logging.getLogger("bk_notebook.server")
_auto_logged = threading.Event()  # "engine auto: ..." is said once per process


@dataclass(frozen=True)
class EngineSpec:
    """One row of the table.

    Attributes
    ----------
    name : str
        What ``engine=`` and ``--engine`` call it.
    module : str
        Its module in this folder; its ``factory(*, preload, **options)`` returns a zero-argument constructor.
    options : tuple of str
        Options only this engine takes (dropped when ``"auto"`` falls back to another engine).
    languages : str
        ``"whisper"``: any of Whisper's codes (English only for an English-only model); ``"en"``: English
        only (``language`` ``auto`` or ``en``, which the engine does not take); ``"none"``: it hears no
        words (only ``auto`` or ``en``, for a language-blind stand-in).  Checked by :mod:`.languages`.
    cuts_utterances : bool
        It cuts the stream into utterances itself, so it takes the server's ``max_utterance_seconds``.
    processes : bool
        Its decoding holds the GIL: ``serve`` runs it in worker processes by default on several cores.
    """

    name: str
    module: str
    options: tuple[str, ...] = ()
    languages: str = "en"
    cuts_utterances: bool = True
    processes: bool = False

    def factory(self, *, preload: bool = True, **options: object) -> Callable[[], Engine]:
        """The engine module's ``factory``, imported now (the whisper module only when whisper is used)."""
        module = importlib.import_module(f"{__package__}.{self.module}")
        make: Callable[[], Engine] = module.factory(preload=preload, **options)
        return make

    def shared_decoder(self, **options: object) -> Throughput | None:
        """The decoder this engine's sessions share in this process (its module's ``shared_decoder``), if any."""
        module = importlib.import_module(f"{__package__}.{self.module}")
        shared = getattr(module, "shared_decoder", None)
        return None if shared is None else shared(**options)  # type: ignore[no-any-return]


#: Every engine, by name, one :class:`EngineSpec` row each (``auto`` and ``module:Class`` are not rows).
ENGINES: dict[str, EngineSpec] = {
    spec.name: spec
    for spec in (
        # Measured (BENCHMARKS.md §4): PocketSphinx decodes under the GIL; processes hold 6-8 live sessions
        # on 2 cores against 4 with threads.  Whisper decodes outside it, on one shared model.
        EngineSpec("whisper", "whisper",
                   options=("language", "model", "partials", "speculate", "word_timestamps", "prompt", "hotwords",
                            "task"),
                   languages="whisper"),
        EngineSpec("pocketsphinx", "sphinx", processes=True),
        EngineSpec("energy", "energy", languages="none"),
    )
}


def chosen_engine(name: str, model: object = None) -> str:
    """What :func:`resolve_engine` returns, without its log line (for checks made before anything starts)."""
    if name != "auto":
        return name
    from .weights import whisper_available

    return "whisper" if whisper_available(str(model or "base")) else "pocketsphinx"


def resolve_engine(name: str, model: object = None) -> str:
    """The engine ``name`` stands for: ``"auto"`` is whisper when it can load, else pocketsphinx (logged once)."""
    chosen = chosen_engine(name, model)
    if name == "auto" and not _auto_logged.is_set():
        _auto_logged.set()
        if chosen == "whisper":
            logger.info("engine auto: whisper (faster-whisper and its model are installed)")
        else:
            logger.info("engine auto: pocketsphinx (US English); %s for Whisper, Indonesian included",
                        install_hint("whisper"))
    return chosen


def engine_factory(name: str, *, preload: bool = True, **options: object) -> Callable[[], Engine]:
    """Return a zero-argument constructor for ``name``.

    ``name`` is ``"auto"`` (whisper when installed, else pocketsphinx), a name
    of :data:`ENGINES` (``"whisper"``, ``"pocketsphinx"``, ``"energy"``), or
    ``"module:Class"`` naming a user's class with ``reset``/``feed``/``flush``
    (for instance a Vosk wrapper).  The module is imported with the current
    directory on ``sys.path`` (appended, as uvicorn does for ``module:app``), so
    ``bk-notebook serve --engine my_engines:MyEngine`` finds ``./my_engines.py``.
    With ``preload`` (the default) the whisper model is loaded now, once per
    process, so that the first session does not wait for it.
    """
    return built_engine(name, options, preload=preload)[2]


def built_engine(name: str, options: dict[str, object], *,
                 preload: bool = True) -> tuple[str, dict[str, object], Callable[[], Engine]]:
    """The engine ``name`` stands for, its options and its constructor, checked before a server listens.

    ``"auto"`` is resolved; the language is checked against the engine and model (a
    :class:`UsageError` for what cannot work, ``engines/languages.py``); the engine's module
    prepares it (Whisper: the cache joined, and with ``preload`` the model loaded).
    When ``"auto"`` chose Whisper and its model cannot be prepared (an unwritable or
    full cache, broken files), PocketSphinx is used instead, with one warning, if the
    language is English or ``"auto"``.
    """
    asked = name
    if name == "auto":
        name = resolve_engine(name, options.get("model"))
        if name != "whisper":
            options = _without_whisper_options(options)
    options = check_engine_languages(name, options)  # before any model is prepared or loaded
    spec = ENGINES.get(name)
    if spec is None:
        return name, options, _user_engine(name, options)
    try:
        return name, options, spec.factory(preload=preload, **options)
    except (BkError, RuntimeError, OSError) as exc:
        if asked != "auto" or name != "whisper" or options.get("language", "auto") not in ("auto", "en"):
            raise
        logger.warning("engine auto: the Whisper model cannot be prepared (%s): using pocketsphinx (US English) "
                       "instead", exc)
        options = _without_whisper_options(options)
        return "pocketsphinx", options, ENGINES["pocketsphinx"].factory(preload=preload, **options)


def _without_whisper_options(options: dict[str, object]) -> dict[str, object]:
    """What an engine other than whisper takes of ``options``; a language it cannot do needs the whisper extra."""
    language = str(options.get("language") or "auto").strip().lower()
    if language not in ("auto", "en"):
        raise missing_extra(f"language={language!r}", "the whisper engine (pocketsphinx knows US English only)",
                            "whisper")
    if options.get("task", "transcribe") != "transcribe":
        raise missing_extra(f"task={options['task']!r}", "the whisper engine (pocketsphinx cannot translate)",
                            "whisper")
    whisper_only = ENGINES["whisper"].options
    return {k: v for k, v in options.items() if k not in whisper_only}


def _user_engine(name: str, options: dict[str, object]) -> Callable[[], Engine]:
    """A ``module:Class`` engine's constructor, its class checked for the interface."""
    module_name, _, class_name = name.partition(":")
    if not module_name or not class_name:
        known = ", ".join(repr(n) for n in ["auto", *ENGINES])
        raise UsageError(f"unknown engine {name!r}: use {known} or 'module:Class'")
    if os.getcwd() not in sys.path:
        sys.path.append(os.getcwd())
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as exc:
        raise UsageError(f"cannot load engine {name!r}: {exc}") from exc
    for method in ("reset", "feed", "flush"):
        if not callable(getattr(cls, method, None)):
            raise UsageError(f"engine {name!r} has no {method}() method; see the README's engine section")
    return lambda: cls(**options)  # type: ignore[no-any-return]
