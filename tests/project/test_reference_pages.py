"""The reference pages match the code: configuration defaults (signatures, parser) and output columns.

Configuration: each default cell starts with a Python literal in backticks (``10.0``, ``None``, ``"auto"``); the
words after it explain what that default means. A row per argument, and the literal must equal the
default in the code.
"""

from __future__ import annotations

import ast
import inspect
import json
import re
from pathlib import Path
from typing import Any

import bk_notebook as bk
from bk_notebook.cli import _parser

from helpers import ROOT

PAGE = ROOT / "docs" / "reference" / "configuration.md"


def table(heading: str, page: Path = PAGE) -> list[list[str]]:
    """The rows (cells stripped) of the first table after ``heading``, header and rule left out."""
    text = page.read_text()
    lines = text[text.index(heading):].splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith("|"))
    rows = []
    for line in lines[first + 2:]:  # after the header and its |---| rule
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip().strip("|").split(" | ")])
    assert rows, heading
    return rows


def literal(cell: str) -> Any:
    """The first backticked Python literal of a cell."""
    found = re.match(r"`([^`]+)`", cell)
    assert found, f"a default cell starts with a `literal`: {cell!r}"
    return ast.literal_eval(found[1])


def names(cell: str) -> list[str]:
    return re.findall(r"`([\w-]+)`", cell)


def parameters(function: Any) -> dict[str, Any]:
    return {p.name: p.default for p in inspect.signature(function).parameters.values()
            if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL) and p.name != "self"}


def test_the_client_table_has_every_argument_with_its_default() -> None:
    rows = table("## The client: `bk.Client(...)`")
    documented = {names(row[0])[0]: literal(row[1]) for row in rows}
    assert documented == parameters(bk.Client.__init__)


def test_the_local_server_table_has_every_argument_with_its_default() -> None:
    code = parameters(bk.local_server)
    documented: dict[str, Any] = {}
    for row in table("## The local server"):
        for name in names(row[0]):  # `certfile`, `keyfile` share a row
            documented[name] = literal(row[2])
    assert documented == code


def test_the_serve_column_is_the_parser_s_defaults() -> None:
    commands = next(a for a in _parser()._actions if isinstance(a.choices, dict)).choices
    defaults = {option: action.default for action in commands["serve"]._actions for option in action.option_strings}
    checked = 0
    for row in table("## The local server"):
        flags = re.findall(r"`(--[\w-]+)`", row[1])
        for flag in flags[:1] if "/" in row[1] else flags:  # `--processes` / `--threads`: the first names the default
            assert literal(row[3]) == defaults[flag], (flag, row[3])
            checked += 1
    assert checked >= 15


def test_the_environment_table_names_the_variables_the_code_reads() -> None:
    rows = table("## Environment variables")
    documented = {names(row[0])[0] for row in rows if names(row[0])}
    package = Path(bk.__file__).parent
    read = set()
    for source in package.rglob("*.py"):
        read |= set(re.findall(r"environ(?:\.get)?[\[(]\s*\"(BK_\w+)\"", source.read_text()))
    assert read and read <= documented, read - documented


# ------------------------------------------------------------------ docs/reference/outputs.md
OUTPUTS = PAGE.parent / "outputs.md"


def output_rows(heading: str) -> list[list[str]]:
    return table(heading, OUTPUTS)


def a_transcript() -> bk.Transcript:
    t = bk.Transcript(session_id="s1")
    t.add_final("selamat pagi", 0.5, 1.5, sent=2.0, language="id")
    t.add_final("hello", None, None, sent=3.0)  # no times: estimated
    return t


def test_the_record_fields_are_the_exports_columns_in_order() -> None:
    fields = [name for row in output_rows("## One final: the record") for name in names(row[0])]
    t = a_transcript()
    assert list(t.to_dataframe().columns) == fields
    assert t.to_csv().splitlines()[0].split(",") == fields
    assert list(json.loads(t.to_jsonl().splitlines()[0])) == [f for f in fields if f != "timing"]  # the first final's
    from bk_notebook.transcript import export_transcripts

    assert export_transcripts([("a.wav", t)], "csv").splitlines()[0].split(",") == ["file", *fields]
    assert export_transcripts([("a.wav", t)], "table").split()[:5] == ["file", "segment", "start", "end", "text"]


def test_the_batch_columns_and_the_checkpoint_line_are_the_page_s() -> None:
    from bk_notebook.batch.checkpoint import record_of
    from bk_notebook.batch.inputs import result_columns

    rows = {row[0]: row[1] for row in output_rows("## Many recordings: `transcribe_many`")}
    assert names(rows["a DataFrame"])[:4] == list(result_columns([a_transcript()]))
    line = names(rows["the checkpoint file (JSON Lines)"])
    assert line == [*record_of("k", a_transcript()), "fingerprint"]  # the batch adds the audio's fingerprint
