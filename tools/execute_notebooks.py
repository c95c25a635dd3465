"""Execute the notebooks and write them back with clean outputs, so they teach before anyone runs them.

Usage (from the repository root)::

    python -m tools.execute_notebooks                     # every notebooks/*.ipynb
    python -m tools.execute_notebooks notebooks/03_batch_dataset.ipynb

Each notebook runs with nbclient in a real kernel, in a scratch copy of ``notebooks/`` (so a run can
leave nothing behind, and a file it does leave is reported as a failure), with ``$BK_TOKEN`` and
``$BK_STT_URL`` unset: every notebook then uses the embedded local server. The outputs are cleaned
before the notebook is written back:

- machine-specific text is replaced by stable placeholders: paths under the repository, the Python
  installation, the temporary folder (a ``tempfile.mkdtemp()`` folder in it becomes ``<scratch>``)
  and the home folder; the host name; loopback ports; session ids; object addresses;
- execution timing metadata is dropped; consecutive stream outputs are merged; ``image/png`` outputs
  (the static plots) are kept;
- widget state is saved for the views the site can render offline (``docs/_static/widgets/embed.js``,
  ipywidgets' HTML manager, draws them from it): a view of ``@jupyter-widgets`` models keeps its state,
  cut to the models it shows, with stable ids (``bk-widget-N``) and its text scrubbed like any output;
  a custom view (an anywidget: the player, the microphone) needs its kernel and its own script, so it
  keeps only its ``text/plain`` fallback and is left out of a box that holds it (the notebook shows a
  picture of it beside the cell, made in a real browser by ``tools/make_pictures.py``);
- a run fails, and nothing is written, when an output is an error or a traceback, when something
  token-like (``eyJ...``, ``token=...``, ``Bearer ...``) or a machine path is left after cleaning (in
  the outputs or the saved widget state), or when the run leaves a new file in the notebook's folder.

``tests/project/test_notebooks.py`` uses :func:`execute`, :func:`clean`, :func:`problems` and :func:`structure`
to check that the committed notebooks match a fresh run.
"""

from __future__ import annotations

import argparse
import copy
import html
import os
import re
import shutil
import socket
import sys
import sysconfig
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
# The widget modules the HTML manager bundles: their views render from saved state alone, offline.
# Not "@jupyter-widgets/output": its views live in its outputs, by bare model ids this cleaning does not renumber.
STATIC_WIDGET_MODULES = ("@jupyter-widgets/base", "@jupyter-widgets/controls")
MODEL_REFERENCE = "IPY_MODEL_"
HTML_VALUED_MODELS = ("HTMLModel", "HTMLMathModel")  # their value is HTML: a placeholder is escaped in it
TEXT_MIMES = ("text/plain", "text/html", "text/markdown", "text/latex", "image/svg+xml", "application/javascript")
PICTURE_MIMES = ("image/png", "image/jpeg")  # stored as base64: any run of characters can occur by chance
SECRET_VARIABLES = ("BK_TOKEN", "BK_STT_URL")

# Left after cleaning, these are failures: a path of this machine, a token.
MACHINE_PATH = re.compile(
    r"(?<![\w.:/-])(?:/(?:tmp|work|home|root|Users|private/var|var/folders)/|[A-Za-z]:\\Users\\)|file:///")
TOKEN_LIKE = re.compile(
    r"eyJ[\w-]{8,}"                                   # a JWT (base64 of '{"')
    r"|token=(?!None\b|<set>|'<set>')[^\s,)&\"'<>]+"  # token=VALUE (the client's repr says None or <set>)
    r"|Bearer\s+[\w.~+/-]{8,}"
    r"|[\"']token[\"']\s*:\s*[\"'][^\"']+[\"']",
    re.IGNORECASE,
)
# In a picture's base64 only a JWT's own start can look like a token ('{"' base64-encoded, then its
# alphabet), and only in this case: a scanner that finds one cannot tell it from a real token.
TOKEN_IN_BASE64 = re.compile(r"eyJ[A-Za-z0-9_-]{8,}")
PORT = re.compile(r"\b(127\.0\.0\.1|localhost|0\.0\.0\.0|\[::1\]):(\d{2,5})\b")
ADDRESS = re.compile(r"\b0x[0-9a-f]{8,16}\b")  # "<... object at 0x7f...>": an address in this process
SESSION_ID = re.compile(r"\b[0-9a-f]{32}\b|\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b")


class NotebookRunError(Exception):
    """A notebook failed, left a file behind, or kept something machine-specific in its outputs."""


# --------------------------------------------------------------------------------------------- running
def execute(path: Path, workdir: Path | None = None, timeout: int = 600, store_widget_state: bool = False) -> Any:
    """Run the notebook at ``path`` top to bottom in ``workdir`` (default: its folder) and return it.

    ``$BK_TOKEN`` and ``$BK_STT_URL`` are removed from the kernel's environment, so every notebook runs
    against the embedded local server. Raises ``nbclient.exceptions.CellExecutionError`` on an error.
    """
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    env = {k: v for k, v in os.environ.items() if k not in SECRET_VARIABLES}
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", store_widget_state=store_widget_state,
                            resources={"metadata": {"path": str(workdir or path.parent)}})
    client.execute(env=env)
    return nb


def files_under(folder: Path) -> set[str]:
    """Every file and folder below ``folder``, relative to it (to see what a run left behind)."""
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


def run_in_scratch_copy(path: Path, scratch: Path, **kwargs: Any) -> Any:
    """Copy the notebook's folder to ``scratch``, run the notebook there, and fail if it left a new file."""
    workdir = scratch / path.parent.name
    shutil.copytree(path.parent, workdir, ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__"))
    before = files_under(workdir)
    nb = execute(workdir / path.name, workdir, **kwargs)
    left = sorted(files_under(workdir) - before - {"__pycache__"})
    if left:
        raise NotebookRunError(f"running {path.name} left {left} in its folder: write to a temporary folder")
    return nb


# -------------------------------------------------------------------------------------------- cleaning
def machine_paths(workdir: Path | None = None) -> list[tuple[str, str]]:
    """(path, placeholder) pairs of this machine, longest first so that the most specific one wins."""
    import bk_notebook

    pairs: dict[str, str] = {}
    for key in ("purelib", "platlib", "stdlib", "platstdlib"):
        if sysconfig.get_paths().get(key):
            pairs[sysconfig.get_paths()[key]] = f"<python {key.replace('plat', '')}>"
    for prefix in {sys.prefix, sys.base_prefix, sys.exec_prefix}:
        pairs[prefix] = "<python>"
    pairs[str(Path(bk_notebook.__file__).resolve().parent)] = "<bk_notebook>"
    pairs[str(ROOT)] = "<repository>"
    if workdir is not None:
        pairs[str(workdir)] = "<notebooks>"
    for temp in {tempfile.gettempdir(), os.path.realpath(tempfile.gettempdir()), "/tmp"}:
        pairs[temp] = "<tmp>"
    pairs[str(Path.home())] = "~"
    return sorted(((p.rstrip("/\\"), r) for p, r in pairs.items() if len(p) > 1), key=lambda pr: -len(pr[0]))


def _strings(value: Any) -> Iterable[str]:
    """Every string in a JSON value, keys included."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield str(key)
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def _typed(match: re.Match[str], source: str) -> bool:
    """Whether a port (its number) or an id matched in an output is in the cell's source: then it is kept."""
    if match.re is PORT:
        return re.search(rf"\b{match.group(2)}\b", source) is not None
    return match.group(0) in source


class Scrubber:
    """Replace machine-specific text by stable placeholders, numbered by first appearance in a notebook.

    Text that appears verbatim in the cell's own source (a port or an id the reader typed) is kept.
    """

    def __init__(self, workdir: Path | None = None) -> None:
        self.paths = machine_paths(workdir)
        host = socket.gethostname()
        self.host = host if len(host) >= 4 and host not in ("localhost",) else None
        self.ids: dict[str, str] = {}

    def _numbered(self, value: str) -> str:
        return self.ids.setdefault(value, f"<session-id-{len(self.ids) + 1}>")

    def text(self, text: str, source: str, escape: Callable[[str], str] = str) -> str:
        for path, placeholder in self.paths:  # a whole path only: "/tmp" is not the start of "/tmpab12cd34"
            replacement = escape(placeholder).replace("\\", "\\\\")  # literal text, not a regex template
            text = re.sub(rf"{re.escape(path)}(?![\w.-])", replacement, text)
        tmp = re.escape(escape("<tmp>"))  # a folder from tempfile.mkdtemp() has a new random name each run
        text = re.sub(rf"({tmp}[/\\])tmp[\w]{{8}}(?![\w.-])", lambda m: m.group(1) + escape("<scratch>"), text)
        if self.host:
            text = re.sub(rf"\b{re.escape(self.host)}\b", escape("<hostname>"), text)
        text = ADDRESS.sub(lambda m: m.group(0) if _typed(m, source) else escape("<address>"), text)
        text = PORT.sub(lambda m: m.group(0) if _typed(m, source) else f"{m.group(1)}:{escape('<port>')}", text)
        return SESSION_ID.sub(lambda m: m.group(0) if _typed(m, source) else escape(self._numbered(m.group(0))), text)


def _coalesce_streams(outputs: list[Any]) -> list[Any]:
    merged: list[Any] = []
    for out in outputs:
        if (out.get("output_type") == "stream" and merged and merged[-1].get("output_type") == "stream"
                and merged[-1].get("name") == out.get("name")):
            merged[-1]["text"] += out["text"]
        else:
            merged.append(out)
    return merged


def _clean_output(out: Any, scrub: Scrubber, widgets: SavedWidgets, source: str) -> Any | None:
    out.pop("transient", None)
    if out.get("output_type") == "stream":
        out["text"] = scrub.text(out["text"], source)
        return out
    data = out.get("data")
    if data is None:
        return out
    if WIDGET_VIEW in data:
        kept = widgets.keep_view(data[WIDGET_VIEW], source)
        if kept is None:  # a view the site cannot draw: its text fallback stays
            del data[WIDGET_VIEW]
            if not data:
                return None
        else:
            data[WIDGET_VIEW] = kept
    for mime in list(data):
        value = data[mime]
        if mime in PICTURE_MIMES and isinstance(value, str):
            data[mime] = _picture_without_token_look(value)
            continue
        escape = html.escape if mime in ("text/html", "image/svg+xml") else str
        if isinstance(value, str) and (mime in TEXT_MIMES or mime.startswith("text/")):
            data[mime] = scrub.text(value, source, escape)
        elif isinstance(value, list) and mime in TEXT_MIMES:
            data[mime] = scrub.text("".join(value), source, escape)
    if out.get("metadata"):
        out["metadata"] = {k: v for k, v in out["metadata"].items() if k != WIDGET_VIEW}
    return out


def _picture_without_token_look(encoded: str) -> str:
    """The same picture, re-encoded losslessly until its base64 holds no token-like run.

    A plot's base64 can spell ``eyJ...`` by chance, and a scanner for leaked tokens (ours included)
    cannot tell it from a JWT; a text chunk of another length, or another compression level, gives
    the same pixels in other bytes.
    """
    if not TOKEN_IN_BASE64.search(encoded):
        return encoded
    import base64
    import io

    from PIL import Image
    from PIL.PngImagePlugin import PngInfo

    picture = Image.open(io.BytesIO(base64.b64decode(encoded)))
    for pad in range(12):  # a text chunk of another length shifts every later byte's place in base64
        for level in (9, 6, 1):
            info = PngInfo()
            info.add_text("Software", "bk_notebook" + " " * pad)
            out = io.BytesIO()
            picture.save(out, format="PNG", compress_level=level, pnginfo=info)
            candidate = base64.b64encode(out.getvalue()).decode()
            if not TOKEN_IN_BASE64.search(candidate):
                return candidate
    return encoded  # problems() reports it


def clean(nb: Any, workdir: Path | None = None) -> Any:
    """A copy of an executed notebook with stable, machine-independent outputs (see the module docstring)."""
    nb = copy.deepcopy(nb)
    scrub = Scrubber(workdir)
    widgets = SavedWidgets(nb.metadata.pop("widgets", None), scrub)
    nb.metadata.get("language_info", {}).pop("version", None)
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
        if cell.cell_type != "code":
            continue
        outputs = [_clean_output(out, scrub, widgets, cell.source) for out in _coalesce_streams(cell.outputs)]
        cell.outputs = [out for out in outputs if out is not None]
    if widgets.kept:
        nb.metadata["widgets"] = {WIDGET_STATE: {"version_major": 2, "version_minor": 0, "state": widgets.kept}}
    return nb


class SavedWidgets:
    """The widget state a run saved, cut down to what the kept views show (see the module docstring)."""

    def __init__(self, metadata: Any, scrub: Scrubber) -> None:
        self.saved: dict[str, Any] = ((metadata or {}).get(WIDGET_STATE) or {}).get("state") or {}
        self.scrub = scrub
        self.ids: dict[str, str] = {}  # a run's random model id -> its stable one
        self.kept: dict[str, Any] = {}

    def renders(self, model_id: str) -> bool:
        model = self.saved.get(model_id)
        return model is not None and model.get("model_module") in STATIC_WIDGET_MODULES

    def keep_view(self, view: Any, source: str) -> Any | None:
        """The view with a stable model id, its models kept; ``None`` when the site cannot draw it."""
        model_id = view.get("model_id") if isinstance(view, dict) else None
        if not isinstance(model_id, str) or not self.renders(model_id):
            return None
        return {**view, "model_id": self._keep(model_id, source)}

    def _keep(self, model_id: str, source: str) -> str:
        if model_id in self.ids:
            return self.ids[model_id]
        stable = self.ids[model_id] = f"bk-widget-{len(self.ids) + 1}"
        model = copy.deepcopy(self.saved[model_id])
        html_value = model.get("model_name") in HTML_VALUED_MODELS
        model["state"] = {key: self._value(value, source, html_value and key == "value")
                          for key, value in model.get("state", {}).items()}
        self.kept[stable] = model
        return stable

    def _value(self, value: Any, source: str, is_html: bool = False) -> Any:
        if isinstance(value, str) and value.startswith(MODEL_REFERENCE):
            target = value[len(MODEL_REFERENCE):]
            return MODEL_REFERENCE + self._keep(target, source) if self.renders(target) else None
        if isinstance(value, str):
            return self.scrub.text(value, source, html.escape if is_html else str)
        if isinstance(value, list):  # a box's children: a custom child is left out, the rest stay in order
            values = [self._value(item, source) for item in value]
            return [v for item, v in zip(value, values, strict=True)
                    if not (v is None and isinstance(item, str) and item.startswith(MODEL_REFERENCE))]
        if isinstance(value, dict):
            return {key: self._value(item, source) for key, item in value.items()}
        return value


# ------------------------------------------------------------------------------------------- checking
def _texts(out: Any) -> Iterable[str]:
    if "text" in out:
        yield out["text"]
    for mime, value in out.get("data", {}).items():
        if mime in TEXT_MIMES or mime.startswith("text/"):
            yield value if isinstance(value, str) else "".join(value)
    if out.get("output_type") == "error":
        yield "\n".join([out.get("ename", ""), out.get("evalue", ""), *out.get("traceback", [])])


def problems(nb: Any) -> list[str]:
    """What must never be committed: errors, tracebacks, machine paths, tokens, timings, unsavable widgets.

    Also the random parts of a run (a loopback port, a session id, an object address) unless the cell's
    source has them: :func:`clean` replaces those.
    """
    found = widget_state_problems(nb)
    for i, cell in enumerate(nb.cells):
        if "execution" in cell.metadata:
            found.append(f"cell {i}: execution timing metadata")
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                found.append(f"cell {i}: an error output ({out.get('ename')})")
            view = out.get("data", {}).get(WIDGET_VIEW)
            if view is not None and view.get("model_id") not in saved_widget_state(nb):
                found.append(f"cell {i}: a widget view whose state is not saved")
            for mime in PICTURE_MIMES:  # a token scanner reads the base64 too: clean() re-encodes such a picture
                if (match := TOKEN_IN_BASE64.search(str(out.get("data", {}).get(mime, "")))) is not None:
                    found.append(f"cell {i}: a {mime} whose base64 looks token-like ({match.group(0)[:8]}...)")
            for text in _texts(out):
                if "Traceback (most recent call last)" in text:
                    found.append(f"cell {i}: a traceback")
                if match := MACHINE_PATH.search(text):
                    found.append(f"cell {i}: a machine path near {text[match.start():match.start() + 40]!r}")
                for name, pattern in (("a loopback port", PORT), ("a session id", SESSION_ID), ("an address", ADDRESS)):
                    if any(not _typed(match, cell.source) for match in pattern.finditer(text)):
                        found.append(f"cell {i}: {name} of this run: run the cleaning")
                if match := TOKEN_LIKE.search(text):
                    found.append(f"cell {i}: something token-like ({match.group(0)[:8]}...)")
    return found


def saved_widget_state(nb: Any) -> dict[str, Any]:
    """The models of the notebook's saved widget state, by id (empty when none is saved)."""
    return ((nb.metadata.get("widgets") or {}).get(WIDGET_STATE) or {}).get("state") or {}


def widget_state_problems(nb: Any) -> list[str]:
    """What the saved widget state must not hold.

    A model the site cannot draw, a dangling reference, a token, a machine path, or the random parts of
    a run (ports, session ids, addresses, model ids).
    """
    widgets = nb.metadata.get("widgets")
    if widgets is None:
        return []
    state = saved_widget_state(nb)
    if set(widgets) != {WIDGET_STATE} or not state:
        return ["widget metadata that is not a saved widget state of models"]
    found = []
    sources = "\n".join(cell.source for cell in nb.cells)
    for model_id, model in state.items():
        if not re.fullmatch(r"bk-widget-\d+", model_id):
            found.append(f"widget state: model id {model_id[:12]!r} of this run: run the cleaning")
        if model.get("model_module") not in STATIC_WIDGET_MODULES:
            found.append(f"widget state: a {model.get('model_name')} from {model.get('model_module')!r}, "
                         "which the site cannot draw")
        if model.get("buffers"):
            found.append(f"widget state: {model_id} keeps binary buffers, which are never scanned")
        # Each string as it is, one per line: JSON's escaping would hide a quoted token or a Windows path.
        text = "\n".join(_strings(model.get("state", {})))
        for reference in re.findall(rf"{MODEL_REFERENCE}([\w-]+)", text):
            if reference not in state:
                found.append(f"widget state: {model_id} refers to a model that is not saved")
        if match := TOKEN_LIKE.search(text):
            found.append(f"widget state: something token-like ({match.group(0)[:8]}...)")
        if match := MACHINE_PATH.search(text):
            found.append(f"widget state: a machine path near {text[match.start():match.start() + 40]!r}")
        for name, pattern in (("a loopback port", PORT), ("a session id", SESSION_ID), ("an address", ADDRESS)):
            if any(not _typed(match, sources) for match in pattern.finditer(text)):
                found.append(f"widget state: {name} of this run: run the cleaning")
    return found


def structure(nb: Any) -> list[tuple[str, tuple[tuple[str, ...], ...]]]:
    """Per cell: its type and, for code cells, the kind of each output (stream name or mime types)."""
    shape: list[tuple[str, tuple[tuple[str, ...], ...]]] = []
    for cell in nb.cells:
        kinds: list[tuple[str, ...]] = []
        for out in cell.get("outputs", []) if cell.cell_type == "code" else []:
            if out["output_type"] == "stream":
                kinds.append(("stream", out["name"]))
            else:
                kinds.append((out["output_type"], *sorted(out.get("data", {}))))
        shape.append((cell.cell_type, tuple(kinds)))
    return shape


# ---------------------------------------------------------------------------------------------- main
def execute_and_write(path: Path) -> list[str]:
    """Run one notebook in a scratch copy of its folder, clean it, check it, write it back in place."""
    import nbformat

    with tempfile.TemporaryDirectory(prefix="bk-notebooks-") as scratch:
        nb = run_in_scratch_copy(path, Path(scratch), store_widget_state=True)
        cleaned = clean(nb, Path(scratch) / path.parent.name)
    found = problems(cleaned)
    if found:
        raise NotebookRunError(f"{path.name}: " + "; ".join(found))
    nbformat.validate(cleaned)
    nbformat.write(cleaned, path)
    return [f"{len(c.get('outputs', []))}" for c in cleaned.cells if c.cell_type == "code"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="*", type=Path, help="default: every notebooks/*.ipynb")
    args = parser.parse_args(argv)
    paths = [p.resolve() for p in args.notebooks] or sorted(NOTEBOOKS.glob("*.ipynb"))
    failed = 0
    for path in paths:  # one at a time: the recogniser is CPU-heavy
        print(f"{path.name}: running", flush=True)
        try:
            outputs = execute_and_write(path)
        except Exception as exc:  # report every notebook, then fail
            failed += 1
            print(f"{path.name}: FAILED, not written: {type(exc).__name__}: {str(exc)[-2000:]}", file=sys.stderr)
        else:
            print(f"{path.name}: written, outputs per code cell {' '.join(outputs)}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
