"""Whisper's words, vocabulary and translation, through the real local server and the project's client.

The vocabulary clips (``tests/fixtures/vocabulary``, festival's US voice) are sentences full of domain
terms that Whisper base mostly misses without a prompt ("Cuban eats" for Kubernetes, "Laura" for LoRA).
The tests assert terms heard, never exact strings.  Under ``CI=true`` a missing faster-whisper fails.
"""

from __future__ import annotations

import csv
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import bk_notebook as bk

from helpers import FIXTURES
from server.test_whisper import manifest, whisper_installed, words
from server.test_words import check_words_fit_their_finals

pytestmark = pytest.mark.slow

VOCABULARY = FIXTURES / "vocabulary"
PROMPT = "Kubernetes, Grafana, LoRA, GPU, Wahyuningsih, PyTorch, Postgres, FastAPI, Yogyakarta, Jupyter."


def clips() -> list[tuple[Path, list[str]]]:
    with open(VOCABULARY / "manifest.csv", newline="") as f:
        return [(VOCABULARY / row["file"], row["terms"].split()) for row in csv.DictReader(f)]


def terms_heard(text: str, terms: list[str]) -> set[str]:
    heard = set(words(text))
    return {term for term in terms if term.lower() in heard}


@pytest.fixture(scope="module")
def english_server() -> Any:
    whisper_installed()
    with bk.local_server(engine="whisper", language="en", workers=2, partials=False) as server:
        yield server


async def test_whisper_finals_carry_words_that_fit_them(english_server: Any) -> None:
    client = bk.Client(english_server.url)
    sample = await client.transcribe(bk.sample_path(), speed=None)  # two finals: the second 4.8 s in
    assert len(sample.finals) == 2
    check_words_fit_their_finals(sample)
    for path, _ in manifest(FIXTURES / "sentences")[:4]:
        transcript = await client.transcribe(path, speed=None)
        assert transcript.finals, path
        check_words_fit_their_finals(transcript)
        assert all(w.probability is not None for w in transcript.words)
    vtt = transcript.to_vtt(words=True)
    assert vtt.count("<00:") == len(transcript.words) - len(transcript.finals), vtt


async def test_word_timestamps_can_be_switched_off() -> None:
    whisper_installed()
    with bk.local_server(engine="whisper", language="en", workers=1, partials=False,
                         word_timestamps=False) as server:
        transcript = await bk.Client(server.url).transcribe(bk.sample_path(), speed=None)
    assert transcript.finals and transcript.words == []


async def test_a_session_prompt_changes_what_a_domain_word_becomes(english_server: Any) -> None:
    client = bk.Client(english_server.url)
    path, terms = clips()[0]  # Kubernetes, Grafana
    plain = await client.transcribe(path, speed=None)
    prompted = await client.transcribe(path, speed=None, prompt=PROMPT)
    assert "Kubernetes" not in terms_heard(plain.text, terms), plain.text
    assert "Kubernetes" in terms_heard(prompted.text, terms), prompted.text
    again = await client.transcribe(path, speed=None)  # the prompt was this session's only
    assert "Kubernetes" not in terms_heard(again.text, terms), again.text


async def test_the_servers_prompt_and_hotwords_reach_the_decoder() -> None:
    whisper_installed()
    results = {}
    for option in ({}, {"prompt": PROMPT}, {"hotwords": PROMPT}):
        with bk.local_server(engine="whisper", language="en", workers=2, partials=False, **option) as server:
            client = bk.Client(server.url)
            heard = 0
            for path, terms in clips():
                heard += len(terms_heard((await client.transcribe(path, speed=None)).text, terms))
            results[next(iter(option), "none")] = heard
    # measured: 3 of 10 terms without, 9 of 10 with either (FastAPI is heard as "fast stop")
    assert results["none"] <= 4 and results["prompt"] >= 7 and results["hotwords"] >= 7, results


async def test_a_session_prompt_to_an_engine_without_prompts_is_ignored_and_said(
        sphinx_server: Any, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="bk_notebook.server"):
        transcript = await bk.Client(sphinx_server.url).transcribe(bk.sample_path(), speed=None, prompt="hello")
    assert transcript.complete and "recognition" in transcript.text
    assert "prompt was ignored" in caplog.text


async def test_translate_gives_english_finals_named_with_the_spoken_language() -> None:
    whisper_installed()
    pairs = manifest(FIXTURES / "indonesian")
    with bk.local_server(engine="whisper", task="translate", workers=2, partials=False) as server:
        client = bk.Client(server.url)
        results = [await client.transcribe(path, speed=None) for path, _ in pairs]
    with bk.local_server(engine="whisper", workers=2, partials=False) as server:
        client = bk.Client(server.url)
        transcribed = [await client.transcribe(path, speed=None) for path, _ in pairs]
    indonesian = {w for _, text in pairs for w in words(text)}
    translated_words = [w for t in results for w in words(t.text)]
    transcribed_words = [w for t in transcribed for w in words(t.text)]
    # Measured on these synthetic clips: transcribed, about half of the words are the references' own;
    # translated (base translates espeak's Indonesian poorly), almost none are, and English ones appear.
    assert sum(w in indonesian for w in transcribed_words) >= 10
    assert sum(w in indonesian for w in translated_words) <= 3, translated_words
    assert len({"the", "is", "of", "a", "i", "we", "this", "will", "to"} & set(translated_words)) >= 3
    languages = [r["language"] for t in results for r in t.finals]
    assert languages.count("id") >= len(languages) // 2, languages
    check_words_fit_their_finals(results[1])


def test_an_unknown_task_is_a_usage_error() -> None:
    with pytest.raises(bk.UsageError, match="task"):
        from bk_notebook.server.engines.whisper import WhisperEngine

        WhisperEngine(task="summarise")


def test_the_cli_sends_a_sessions_prompt_and_serves_hotwords(tmp_path: Path) -> None:
    whisper_installed()
    path, _ = clips()[1]  # LoRA, GPU
    env = {k: v for k, v in os.environ.items() if k != "BK_TOKEN"}
    base = [sys.executable, "-m", "bk_notebook.cli", "transcribe", "--local", "--engine", "whisper",
            "--language", "en", "--format", "jsonl", str(path)]
    plain = subprocess.run(base, capture_output=True, text=True, timeout=300, env=env)
    prompted = subprocess.run([*base, "--prompt", PROMPT], capture_output=True, text=True, timeout=300, env=env)
    hot = subprocess.run([*base, "--hotwords", PROMPT], capture_output=True, text=True, timeout=300, env=env)
    assert plain.returncode == prompted.returncode == hot.returncode == 0, (plain.stderr, prompted.stderr)
    assert "lora" not in words(plain.stdout) and "lora" in words(prompted.stdout) and "lora" in words(hot.stdout)
    assert '"words": [' in prompted.stdout  # the JSONL keeps each final's words
