"""The package's structure, read from its source with ``ast``: imports point down, no cycles, no private reach.

Three rules (see ARCHITECTURE.md):

* **Layers.**  Every module is declared in :data:`LAYERS`; a module may import
  (at module level, inside a function, or for type checking only) modules of its
  own layer or a lower one, never a higher one.  A new module must be declared.
* **No runtime cycles** among module-level imports (``if TYPE_CHECKING:`` and
  function-level imports do not run at import time, so they are not counted).
* **No private access across modules**: ``x._name`` where ``_name`` is defined in
  another module of the package and not in this one, and ``from .mod import _name``.

Today's violations are listed below as known exceptions, each with the change that
removes it; the test fails on any new violation and on an exception that no longer
occurs (so each list only shrinks).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pytest

from helpers import ROOT

PACKAGE = ROOT / "bk_notebook"

# Bottom to top.  The order is read from today's imports: the server imports only the
# base and the protocol, so it sits below batch (whose Dask adapter starts a local server).
BASE, PROTOCOL, AUDIO, CLIENT, SERVER, BATCH, VIEWS, ENTRY = range(8)
LAYERS: dict[str, int] = {
    # base types: the error tree, secret redaction, output files
    "errors": BASE, "redact": BASE, "outputs": BASE,
    # sans-I/O protocol and bookkeeping
    "protocol": PROTOCOL, "transcript": PROTOCOL, "client.events": PROTOCOL, "client.speed": PROTOCOL,
    "client.safeguards": PROTOCOL, "client.window": PROTOCOL, "client.resume": PROTOCOL, "audio.capture": PROTOCOL,
    # audio: the block pipeline, file and array conversion, live conversion, sound devices
    "audio": AUDIO, "audio.pcm": AUDIO, "audio.convert": AUDIO, "audio.live": AUDIO, "audio.devices": AUDIO,
    "audio.soundcard": AUDIO,
    # client I/O
    "client": CLIENT, "client.settings": CLIENT, "client.blocking": CLIENT, "client.auth": CLIENT,
    "client.connect": CLIENT, "client.stream": CLIENT, "client.client": CLIENT,
    # the local server
    "server": SERVER, "server.app": SERVER, "server.engines": SERVER, "server.local": SERVER,
    "server.pool": SERVER, "server.processes": SERVER, "server.session": SERVER, "server.turns": SERVER,
    "server.models": SERVER, "server.whisper": SERVER, "server.engines.base": SERVER, "server.engines.energy": SERVER,
    "server.engines.sphinx": SERVER, "server.engines.whisper": SERVER, "server.engines.weights": SERVER,
    "server.engines.decoder": SERVER, "server.engines.table": SERVER, "server.engines.languages": SERVER,
    "server.engines.packing": SERVER,
    # batch runs over many inputs
    "batch": BATCH, "batch.checkpoint": BATCH, "batch.inputs": BATCH, "batch.scoring": BATCH, "batch.run": BATCH,
    "batch.cluster": BATCH, "batch.alignment": BATCH,
    # views: rich display, plots, notebook widgets
    "display": VIEWS, "plot": VIEWS, "widgets": VIEWS, "widgets._deps": VIEWS, "widgets.cells": VIEWS,
    "widgets.microphone": VIEWS, "widgets.player": VIEWS, "widgets.sources": VIEWS,
    "widgets.run": VIEWS, "widgets.transcriber": VIEWS,
    # entry points
    "cli": ENTRY, "cli.__main__": ENTRY, "cli.common": ENTRY, "cli.serve": ENTRY, "cli.transcribe": ENTRY,
    "cli.demo": ENTRY, "cli.listen": ENTRY, "cli.token": ENTRY,
    "": ENTRY,  # "" is bk_notebook/__init__.py
}

# Upward imports today: (importer, imported).  Each is to be removed by the restructuring (issue #23).
KNOWN_UPWARD: set[tuple[str, str]] = {
    # The error tree carries the Transcript received before a failure (a type-only import):
    # to go when the error tree and Transcript's record type sit in one base layer.
    ("errors", "transcript"),
    # Transcript's exporters build a plot and a Player lazily (.plot(), .player()): the views
    # should render a Transcript, not the Transcript its views.
    ("transcript", "plot"),
    ("transcript", "widgets.player"),
    # Client.transcribe's notebook display (lazy): to move to the views.
    ("client.client", "display"),
}

# ``x._private`` across modules today: (module, "x._name").
KNOWN_PRIVATE: set[tuple[str, str]] = set()  # none left; add one only with a reason beside it

# A namedtuple's public API starts with an underscore so as not to clash with its fields.
NAMEDTUPLE_API = {"_replace", "_asdict", "_fields", "_field_defaults", "_make"}


@dataclass(frozen=True)
class Import:
    target: str  # module name relative to the package ("" for the package itself)
    line: int
    runtime: bool  # module level and not under ``if TYPE_CHECKING:``


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES: dict[str, Path] = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _relative(name: str) -> str:
    return name.removeprefix("bk_notebook").removeprefix(".")


def _from(base: str, node: ast.ImportFrom) -> list[str]:
    """``from base import a, b``: the submodules it names, and ``base`` if it takes a name from it."""
    submodules = [f"{base}.{a.name}" for a in node.names if _relative(f"{base}.{a.name}") in MODULES]
    return submodules + ([base] if len(submodules) < len(node.names) else [])


def _resolve(module: str, node: ast.Import | ast.ImportFrom) -> Iterator[str]:
    """The package's modules an import statement names."""
    is_package = MODULES[module].name == "__init__.py"
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    elif node.level:
        base = module.split(".") if module else []
        if not is_package:
            base = base[:-1]
        base = base[: len(base) - (node.level - 1)]
        if node.module:
            base += node.module.split(".")
        names = _from(".".join(["bk_notebook", *base]), node)
    else:
        names = _from(node.module or "", node)
    for name in names:
        if name == "bk_notebook" or name.startswith("bk_notebook."):
            relative = _relative(name)
            if relative in MODULES:
                yield relative


def imports(module: str) -> list[Import]:
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
    found: list[Import] = []

    def visit(node: ast.AST, runtime: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                found.extend(Import(t, child.lineno, runtime) for t in _resolve(module, child))
            elif isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                visit(child, False)
            elif isinstance(child, ast.If) and _is_type_checking(child.test):
                for stmt in child.body:
                    visit(ast.Module(body=[stmt], type_ignores=[]), False)
                for stmt in child.orelse:
                    visit(ast.Module(body=[stmt], type_ignores=[]), runtime)
            else:
                visit(child, runtime)

    visit(tree, True)
    return found


def upward_imports() -> set[tuple[str, str]]:
    return {(m, i.target) for m in MODULES for i in imports(m)
            if i.target != m and LAYERS[i.target] > LAYERS[m]}


def runtime_cycles() -> list[list[str]]:
    graph: dict[str, set[str]] = {}
    for m in MODULES:
        ancestors = {".".join(m.split(".")[:n]) for n in range(m.count(".") + 1)} if m else set()
        # Python initialises a package before its submodules: an edge up to an ancestor is not a cycle
        graph[m] = {i.target for i in imports(m) if i.runtime and i.target != m and i.target not in ancestors}
    cycles: list[list[str]] = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def walk(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                walk(nxt)
        stack.pop()
        state[node] = 2

    for m in sorted(graph):
        if m not in state:
            walk(m)
    return cycles


def _defined_private_names(tree: ast.AST) -> set[str]:
    """Private names a module defines: functions, classes, assignments, ``self._x = ...``, class fields."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
        elif isinstance(node, ast.alias):
            names.add(node.asname or node.name.split(".")[0])
    return {n for n in names if n.startswith("_") and not n.startswith("__")} - NAMEDTUPLE_API


def private_accesses() -> set[tuple[str, str]]:
    trees = {m: ast.parse(p.read_text(encoding="utf-8")) for m, p in MODULES.items()}
    defined = {m: _defined_private_names(t) for m, t in trees.items()}
    found: set[tuple[str, str]] = set()
    for m, tree in trees.items():
        elsewhere = set().union(*(d for other, d in defined.items() if other != m)) - defined[m]
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr in elsewhere:
                if not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")):
                    found.add((m, f"{ast.unparse(node.value)}.{node.attr}"))
            elif isinstance(node, ast.ImportFrom) and any(_resolve(m, node)):
                for alias in node.names:
                    if alias.name.startswith("_") and not alias.name.startswith("__"):
                        found.add((m, f"import {alias.name}"))
    return found


# --------------------------------------------------------------------- tests
def test_every_module_is_declared_in_a_layer() -> None:
    assert set(MODULES) - set(LAYERS) == set(), "declare each new module's layer in LAYERS"
    assert set(LAYERS) - set(MODULES) == set(), "a module in LAYERS no longer exists: remove it"


def test_imports_point_down_the_layers() -> None:
    upward = upward_imports()
    new = sorted(upward - KNOWN_UPWARD)
    assert not new, f"imports that point up the layers (importer, imported): {new}"
    gone = sorted(KNOWN_UPWARD - upward)
    assert not gone, f"known exceptions that no longer occur, remove them from KNOWN_UPWARD: {gone}"


def test_no_runtime_import_cycles() -> None:
    assert runtime_cycles() == []


def test_no_private_access_across_modules() -> None:
    found = private_accesses()
    new = sorted(found - KNOWN_PRIVATE)
    assert not new, f"private names used outside their module (module, access): {new}"
    gone = sorted(KNOWN_PRIVATE - found)
    assert not gone, f"known exceptions that no longer occur, remove them from KNOWN_PRIVATE: {gone}"


# The steps of the one audio pipeline: files, arrays and live devices share them, so a fix is made once.
PIPELINE_STEPS = {"ResampleStream", "resample_chunk", "rint"}


def pipeline_steps() -> dict[str, set[str]]:
    """Modules that resample or round to int16 themselves: {module: the steps it spells}."""
    found: dict[str, set[str]] = {}
    for module, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            name = node.attr if isinstance(node, ast.Attribute) else getattr(node, "id", None)
            if name in PIPELINE_STEPS:
                found.setdefault(module, set()).add(name)
    return found


def test_audio_is_converted_by_one_pipeline() -> None:
    assert pipeline_steps() == {"audio.pcm": PIPELINE_STEPS}


def test_the_pipeline_check_sees_a_second_resampler(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    planted = tmp_path / "convert.py"
    source = MODULES["audio.convert"].read_text(encoding="utf-8")
    planted.write_text(source + "\ndef resample(x):\n    import soxr\n    return soxr.ResampleStream(1, 2, 1)\n",
                       encoding="utf-8")
    monkeypatch.setitem(MODULES, "audio.convert", planted)
    assert pipeline_steps()["audio.convert"] == {"ResampleStream"}


@pytest.mark.parametrize("source, expected", [
    ("from .widgets.player import Player\n", {("errors", "widgets.player")}),
    ("def f():\n    from .cli import main\n", {("errors", "cli")}),
])
def test_the_layer_check_sees_module_and_function_imports(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, source: str, expected: set[tuple[str, str]]
) -> None:
    planted = tmp_path / "errors.py"
    planted.write_text(MODULES["errors"].read_text(encoding="utf-8") + source, encoding="utf-8")
    monkeypatch.setitem(MODULES, "errors", planted)
    assert expected <= upward_imports() - KNOWN_UPWARD


@pytest.mark.parametrize("source, expected", [
    ("def f(client):\n    return client._remember\n", ("errors", "client._remember")),
    ("from .audio import _to_float32\n", ("errors", "import _to_float32")),
])
def test_the_private_check_sees_attributes_and_imports(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, source: str, expected: tuple[str, str]
) -> None:
    planted = tmp_path / "errors.py"
    planted.write_text(MODULES["errors"].read_text(encoding="utf-8") + source, encoding="utf-8")
    monkeypatch.setitem(MODULES, "errors", planted)
    assert expected in private_accesses() - KNOWN_PRIVATE


# ----------------------------------------------------------------- ARCHITECTURE.md names what exists
ARCHITECTURE = PACKAGE.parent / "ARCHITECTURE.md"
# Where a name in ARCHITECTURE.md may start: the package or one of its folders; the standard library.
_HOMES = ("bk_notebook", *(f"bk_notebook.{p.name}" for p in sorted(PACKAGE.iterdir()) if (p / "__init__.py").exists()))


def _resolves(dotted: str) -> bool:
    """Whether ``dotted`` names a module, or something defined in the module it names.

    A re-export does not count (``client.transcribe`` is not a module, whatever ``client/__init__``
    imports): a reader looks for the file.  Public names may be cited as the user spells them,
    ``bk.to_pcm16`` or a class's member (``Transcript.to_dataframe``).
    """
    import importlib

    public = dotted.startswith("bk.") or dotted[:1].isupper()
    parts = dotted.removeprefix("bk.").split(".")
    home = next((h for h in _HOMES if _exists(h, parts[0])), "")  # the first home that has the head
    for cut in range(len(parts), -1 if home else 0, -1):  # the longest module prefix first
        module = ".".join([home, *parts[:cut]]).strip(".")
        try:
            obj: object = importlib.import_module(module)
        except ImportError:
            continue
        try:
            for attr in parts[cut:]:
                obj = getattr(obj, attr)
        except AttributeError:
            return False
        defined_in = getattr(obj, "__module__", None) if cut == len(parts) - 1 else None
        return public or not home or defined_in in (None, module)  # not home: asyncio.Queue, as its users spell it
    return False


def _exists(home: str, name: str) -> bool:
    import importlib

    try:
        found = getattr(importlib.import_module(home), name, None)
        return (found is not None and not isinstance(found, ModuleType)  # a module it imports (asyncio) is not its own
                or importlib.util.find_spec(f"{home}.{name}") is not None)
    except ImportError:
        return False


def _cited_names(text: str) -> set[str]:
    """The dotted Python names in backticks (``client.client``, ``Stream.send``, ``Client.stream()``), not files."""
    import re

    names = {m.removesuffix("()") for m in re.findall(r"`([A-Za-z_][\w.]*\w(?:\(\))?)`", text)}
    return {n for n in names if "." in n and not n.endswith((".py", ".js", ".md", ".css"))}


def test_every_dotted_name_architecture_md_cites_imports() -> None:
    cited = _cited_names(ARCHITECTURE.read_text(encoding="utf-8")) - {"x._name"}  # x._name: the rule's pattern
    assert len(cited) > 20  # the reader's map names many: a parser that finds none checks nothing
    assert sorted(name for name in cited if not _resolves(name)) == []


def test_a_name_that_does_not_exist_or_is_not_where_it_is_cited_is_found() -> None:
    assert _cited_names("`client.transcribe` `audio.pcm.BlockConverter` `tests/x.py` `x.py`") == {
        "client.transcribe", "audio.pcm.BlockConverter"}
    assert not _resolves("client.transcribe") and _resolves("client.client")  # a re-export is not a module
    assert not _resolves("client.nothing") and not _resolves("audio.pcm.Nothing")
    assert _resolves("audio.pcm.BlockConverter") and _resolves("Transcriber.finals") and _resolves("bk.SoundCard")
    assert _resolves("asyncio.Queue") and _resolves("bk.to_pcm16") and not _resolves("audio.to_pcm16")


# ----------------------------------------------------------------- the pure tests are pure
def test_a_pure_test_may_not_start_a_server_or_be_slow() -> None:
    from helpers import NOT_PURE_FIXTURES, check_pure

    check_pure("t::ok", {"tmp_path", "monkeypatch"}, {"pure", "parametrize"})
    assert {"energy_server", "kernel", "page", "small_disk"} <= NOT_PURE_FIXTURES
    with pytest.raises(pytest.UsageError, match="t::x is marked pure but uses energy_server, slow"):
        check_pure("t::x", {"energy_server", "tmp_path"}, {"pure", "slow"})
