"""Which languages an engine can do, checked with its model before a server listens or a client sends.

A language the engine cannot do used to be accepted at start and fail in every session (a
traceback per session, then a refusal that looked like a busy server).  ``check_engine_languages``
refuses it once, as a :class:`UsageError`, from the engine's name, the model's name or folder and
the code alone: nothing is loaded, so the CLI, ``local_server`` and the Dask client can all call it
first.

Codes are case-insensitive; ISO 639-1 and Whisper's own are both accepted (Whisper writes Javanese
``jw`` where ISO writes ``jv``).  An English-only Whisper model (``tiny.en``, or a folder whose
vocabulary is the English-only one) and PocketSphinx (US English) take ``auto`` or ``en`` only.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

from ...errors import UsageError

__all__ = ["WHISPER_LANGUAGES", "check_engine_languages", "english_only", "whisper_language"]

logger = logging.getLogger("bk_notebook.server")

#: Whisper's language codes, as faster-whisper 1.x lists them (``faster_whisper.tokenizer._LANGUAGE_CODES``;
#: a test keeps the two equal).  Kept here so that a check needs nothing installed.
WHISPER_LANGUAGES = tuple("""
af am ar as az ba be bg bn bo br bs ca cs cy da de el en es et eu fa fi fo fr gl gu ha haw he hi hr ht hu hy
id is it ja jw ka kk km kn ko la lb ln lo lt lv mg mi mk ml mn mr ms mt my ne nl nn no oc pa pl ps pt ro ru sa
sd si sk sl sn so sq sr su sv sw ta te tg th tk tl tr tt uk ur uz vi yi yo zh yue
""".split())
ISO_TO_WHISPER = {"jv": "jw"}  # ISO 639-1 codes that Whisper spells its own way
LANGUAGE_LIST = "https://github.com/openai/whisper/blob/main/whisper/tokenizer.py"
_MULTILINGUAL_VOCABULARY = 51865  # tokens; an English-only Whisper model has 51864
_english_only_logged: set[str] = set()  # "transcribes English only" is said once per model and process
_lock = threading.Lock()


def whisper_language(language: Any) -> str:
    """``"auto"`` or Whisper's code for ``language`` (any case, ISO 639-1 or Whisper's own); else UsageError."""
    if not isinstance(language, str) or not language.strip():
        raise UsageError(f"language must be 'auto' or a language code such as 'id', 'en' or 'jv', got {language!r}")
    code = language.strip().lower()
    code = ISO_TO_WHISPER.get(code, code)
    if code != "auto" and code not in WHISPER_LANGUAGES:
        raise UsageError(f"unknown Whisper language {language!r}: use 'auto' or a language code that Whisper knows, "
                         f"ISO 639-1 such as 'id', 'en' or 'jv' (the list: {LANGUAGE_LIST})")
    return code


def english_only(model: str) -> bool:
    """Whether a Whisper model transcribes English only: a pinned model's name (``*.en``), a folder's vocabulary."""
    from .weights import MODELS

    if model in MODELS:
        return model.endswith(".en")
    folder = Path(model).expanduser()
    vocabulary = folder / "vocabulary.txt"
    if vocabulary.is_file():
        with vocabulary.open("rb") as f:
            return sum(1 for _ in f) < _MULTILINGUAL_VOCABULARY
    return folder.name.lower().endswith(".en")


def check_engine_languages(engine: str, options: dict[str, Any]) -> dict[str, Any]:
    """``options`` with their language in Whisper's code, or a UsageError for what the engine cannot do.

    ``engine`` is the resolved name; its row of the engines table says what it can do
    (``EngineSpec.languages``).  An English-only engine
    takes ``language`` ``auto`` or ``en`` (and loses it: it has no such option); a user's
    ``module:Class`` engine gets its options as given.
    """
    from .table import ENGINES

    spec = ENGINES.get(engine)
    if spec is None:
        return dict(options)
    given = options.get("language")
    if spec.languages == "whisper":
        model = str(options.get("model") or "base")
        language = whisper_language("auto" if given is None else given)
        if english_only(model) and language not in ("auto", "en"):
            raise UsageError(f"the Whisper model {model!r} transcribes English only: language={given!r} needs a "
                             "multilingual model, such as model='base'")
        if english_only(model) and language == "auto":
            _say_english_only(model)
        return {**options, "language": language} if given is not None else dict(options)
    if str(given or "auto").strip().lower() not in ("auto", "en"):
        what = "hears no words" if spec.languages == "none" else "transcribes US English only"
        raise UsageError(f"the {engine} engine {what}: language={given!r} needs the whisper engine "
                         "(engine='whisper', model='base')")
    return {k: v for k, v in options.items() if k != "language"}


def _say_english_only(model: str) -> None:
    with _lock:
        if model in _english_only_logged:
            return
        _english_only_logged.add(model)
    logger.warning("the Whisper model %s transcribes English only: language 'auto' means English for it (speech "
                   "in another language comes out as invented English); use model='base' for Indonesian", model)
