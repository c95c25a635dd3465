"""An engine that says which prompt it decoded with, to test that a session's prompt reaches the engine.

``local_server(engine="tests.server.prompt_engine:PromptEcho", prompt="server words")`` from the repository root.
It wraps the energy engine: each final's text is ``"<prompt or 'no prompt'> | sound 0.80 s"``.
"""

from __future__ import annotations

from typing import Any

from bk_notebook.protocol import Final
from bk_notebook.server.engines import EnergyEngine


class PromptEcho:
    """The energy engine, with its finals prefixed by the prompt in force (the server's, or the session's)."""

    def __init__(self, prompt: str | None = None, **options: Any) -> None:
        self._inner = EnergyEngine(**options)
        self._server_prompt = prompt
        self._prompt = prompt

    def set_prompt(self, prompt: str | None) -> None:
        if prompt is not None:
            self._prompt = prompt

    def reset(self) -> None:
        self._prompt = self._server_prompt
        self._inner.reset()

    def _echo(self, events: list[Any]) -> list[Any]:
        return [Final(f"{self._prompt or 'no prompt'} | {e.text}", e.start, e.end) if isinstance(e, Final) else e
                for e in events]

    def feed(self, pcm: bytes) -> list[Any]:
        return self._echo(self._inner.feed(pcm))

    def flush(self) -> list[Any]:
        events = self._echo(self._inner.flush())
        self.reset()
        return events
