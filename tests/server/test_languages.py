"""Engine, model and language checked together before a server listens (``server/engines/languages.py``)."""

from __future__ import annotations

import logging

import pytest

import bk_notebook as bk
from bk_notebook.server.engines.languages import (
    WHISPER_LANGUAGES,
    check_engine_languages,
    english_only,
    whisper_language,
)

from helpers import require


def test_the_code_list_is_faster_whispers_own() -> None:
    require("faster_whisper", "the whisper engine's language codes")
    from faster_whisper.tokenizer import _LANGUAGE_CODES

    assert WHISPER_LANGUAGES == tuple(_LANGUAGE_CODES)


@pytest.mark.parametrize("given, code", [("jv", "jw"), ("JW", "jw"), ("Jv", "jw"), ("ID", "id"), (" en ", "en"),
                                         ("AUTO", "auto"), ("yue", "yue"), ("haw", "haw")])
def test_codes_are_case_insensitive_iso_or_whispers_own(given: str, code: str) -> None:
    assert whisper_language(given) == code


@pytest.mark.parametrize("given", ["xx", "indonesian", "", None, 3])
def test_an_unknown_code_is_refused_with_the_lists_pointer(given: object) -> None:
    with pytest.raises(bk.UsageError) as info:
        whisper_language(given)
    assert "language" in str(info.value) and "\n" not in str(info.value)
    if given == "xx":
        assert "unknown Whisper language 'xx'" in str(info.value) and "whisper/tokenizer.py" in str(info.value)


@pytest.mark.parametrize("engine, options, message", [
    ("whisper", {"model": "tiny.en", "language": "id"}, "'tiny.en' transcribes English only"),
    ("whisper", {"model": "tiny.en", "language": "JV"}, "'tiny.en' transcribes English only"),
    ("whisper", {"language": "xx"}, "unknown Whisper language 'xx'"),
    ("pocketsphinx", {"language": "id"}, "the pocketsphinx engine transcribes US English only"),
    ("energy", {"language": "jw"}, "hears no words"),
])
def test_what_the_engine_cannot_do_is_refused(engine: str, options: dict[str, str], message: str) -> None:
    with pytest.raises(bk.UsageError, match=message):
        check_engine_languages(engine, options)


def test_what_it_can_do_comes_back_in_whispers_code() -> None:
    assert check_engine_languages("whisper", {"model": "base", "language": "JV"}) == {"model": "base",
                                                                                      "language": "jw"}
    assert check_engine_languages("whisper", {}) == {}
    assert check_engine_languages("pocketsphinx", {"language": "EN", "grammar": "g"}) == {"grammar": "g"}
    assert check_engine_languages("my_engines:Mine", {"language": "xx"}) == {"language": "xx"}  # the user's own
    assert english_only("tiny.en") and not english_only("base")


def test_an_english_only_model_with_auto_says_so_once(caplog: pytest.LogCaptureFixture) -> None:
    from bk_notebook.server.engines import languages

    languages._english_only_logged.discard("tiny.en")
    with caplog.at_level(logging.WARNING, logger="bk_notebook.server"):
        for _ in range(3):
            assert check_engine_languages("whisper", {"model": "tiny.en"}) == {"model": "tiny.en"}
    said = [r.getMessage() for r in caplog.records if "transcribes English only" in r.getMessage()]
    assert len(said) == 1 and "language 'auto' means English" in said[0]


@pytest.mark.parametrize("options", [{"engine": "pocketsphinx", "language": "id"}, {"language": "xx"},
                                     {"model": "tiny.en", "language": "id"}])
def test_the_dask_workers_server_is_checked_before_any_task(options: dict[str, str]) -> None:
    from bk_notebook.batch.cluster import _settings

    with pytest.raises(bk.UsageError):
        _settings(None, options, {})


@pytest.mark.parametrize("kwargs, message", [({"engine": "pocketsphinx", "language": "id"}, "US English only"),
                                             ({"engine": "energy", "language": "xx"}, "hears no words")])
def test_local_server_refuses_before_listening(kwargs: dict[str, str], message: str) -> None:
    with pytest.raises(bk.UsageError, match=message):
        bk.local_server(workers=1, **kwargs)
