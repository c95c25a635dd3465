"""``Transcriber``: a source widget wired to a client session on the kernel's own event loop.

The widget holds no protocol logic: Start opens a :class:`~bk_notebook.client.client.Stream`
as an asyncio task on the kernel's loop, the source's chunk callback feeds a
bounded queue (:class:`~bk_notebook.audio.capture.AsyncDropOldest`) that the task drains,
and the client's callbacks paint the partial, the finals and the status.  What
differs between sources (microphone, sound card, recorder, upload) is behind a
:class:`~bk_notebook.widgets.sources.SourceAdapter`.

Comm handlers may run outside the loop's own turn (ipykernel 7 can dispatch
them from its shell-channel machinery), where a plain ``put_nowait`` or
``create_task`` would sit unnoticed until some other event woke the loop: the
browser's chunks then reached the server only when the next cell ran.  So
everything a handler hands to the loop goes through ``call_soon_threadsafe``.
The client (and so the token) lives in a plain attribute, never in a synced trait.

Lifecycle: a run ends when the microphone stops, fails, or loses its last view
on the page, and when the widget is closed.  A source error before the session
is open cancels the connection attempt (no session is opened for a microphone
that never started); after it, the session drains and keeps its finals.  Once
the source has failed, the status shows that error until the next Start.  A
Transcriber built by an earlier run of the same notebook cell is closed when
the cell runs again, so re-running a cell never stacks sessions.

A run's states and the steps between them are one table in :mod:`~bk_notebook.widgets.run`;
every change of state goes through :meth:`Transcriber._to`, and what one run holds is one
:class:`~bk_notebook.widgets.run.Run`, made new by each start.
"""

from __future__ import annotations

import asyncio
import html
from typing import Any

from ..audio.capture import AsyncDropOldest
from ..client.client import Client
from ..errors import BkError
from ..protocol import SAMPLE_RATE
from ..transcript import Transcript, finals_table_html
from . import cells
from ._deps import ipywidgets as w
from .microphone import Microphone
from .run import Run, RunState, check_step
from .sources import adapt_source

__all__ = ["Transcriber"]

_STOP_CONFIRM_SECONDS = 2.0  # wait this long for the browser's "stopped" before ending the run anyway
_BACKLOG_CHUNKS = 600  # 60 s of live audio may wait for the session (e.g. while it reconnects); older is dropped
_SESSION_OPEN = (RunState.STREAMING, RunState.DRAINING)
# What the status line says while a run is on (a run that has not reached its task is connecting too).
_PROGRESS = {RunState.STARTING: "connecting", RunState.CONNECTING: "connecting",
             RunState.STREAMING: "streaming", RunState.DRAINING: "draining"}


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


class Transcriber(w.VBox):
    """Live transcription in a notebook.

    The source is the browser's microphone (default), the kernel's
    :class:`~bk_notebook.SoundCard`, an ``ipywebrtc.AudioRecorder`` or an
    ``ipywidgets.FileUpload``.

    Parameters
    ----------
    client : Client, optional
        Defaults to ``Client()`` (``$BK_STT_URL``, ``$BK_TOKEN``).
    source : widget, optional
        ``None`` for a new :class:`Microphone`; an ``AudioRecorder`` (each finished
        recording is transcribed) or a ``FileUpload`` (each uploaded file is).

    Attributes
    ----------
    finals : list of dict
        DataFrame-ready records of every run, each with its ``run`` number.
    transcript : Transcript
        All runs joined.
    """

    def __init__(self, client: Client | None = None, source: Any = None, **kwargs: Any) -> None:
        self.client = client if client is not None else Client()
        self._own_source = source is None  # a source we made is closed with us; the caller's is theirs
        self.source = source if source is not None else Microphone()
        self._source = adapt_source(self.source)  # how to drive it, whatever kind it is
        self._closed = False  # the widget's lifetime, not a run state: a run may drain after close()
        self._constructed_on = _running_loop()  # the kernel's loop, when built in a cell
        self._runs: list[Transcript] = []
        self._state = RunState.IDLE
        self._run = Run()
        self._run.finished.set()

        self.start_button = w.Button(description="Start", icon="microphone", button_style="success")
        self.stop_button = w.Button(description="Stop", icon="stop", disabled=True)
        self.status = w.HTML()
        self._set_status("ready")  # the one writer of the status line (HTML) and its plain text (the repr)
        self.partial = w.HTML("", layout=w.Layout(min_height="1.6em"))
        self.table = w.HTML(finals_table_html([], columns=("run", "segment", "start", "end")))
        self.playback = w.VBox()  # after each run: its audio and finals in a Player (click a line, hear it)
        for widget, name in ((self.status, "bk-status"), (self.partial, "bk-partial"), (self.table, "bk-finals"),
                             (self.playback, "bk-playback")):
            widget.add_class(name)

        controls: list[Any] = []
        self._source.attach(on_chunk=self._on_chunk, on_stop=self._finish_run, on_error=self._on_source_error,
                            on_detach=self._on_detach, on_file=self._on_file)
        if self._source.live:
            self.start_button.on_click(lambda _: self.start())
            self.stop_button.on_click(lambda _: self.stop())
            controls = [w.HBox([self.start_button, self.stop_button])]
        shown = [self.source] if self._source.shown else []
        super().__init__([*shown, *controls, self.status, self.partial, self.table, self.playback], **kwargs)
        self.add_class("bk-transcriber")
        cells.replace_earlier(self, cells.current_cell())  # re-running a cell never stacks sessions

    def __repr__(self) -> str:
        # Also the notebook's text fallback for this widget, so it names no memory address.
        return (f"Transcriber(source={self._source.describe()}, status={self._status_text!r}, "
                f"{_count(len(self._runs), 'run')}, {_count(len(self.finals), 'final')})")

    def close(self) -> None:
        """End the current run and close this widget and every widget inside it.

        The session drains and keeps its finals (in :attr:`finals`); a session
        still connecting is abandoned.  The microphone stops.  A ``source``
        passed in by the caller is stopped but left open; the default
        microphone is closed.  Idempotent.
        """
        if self._closed:
            return
        self._closed = True
        if self.running:
            self._source.stop_on_close()
            self._in_loop(self._end_run_early, "")
        keep = set() if self._own_source else {id(x) for x in cells.descendants(self.source)}
        for widget in cells.descendants(self):
            if id(widget) not in keep and widget is not self:
                widget.close()
        super().close()

    # ------------------------------------------------------------------- results
    @property
    def finals(self) -> list[dict[str, Any]]:
        return [{"run": run, **r} for run, t in enumerate(self._runs) for r in t.finals] + [
            {"run": len(self._runs), **r} for r in self._run.finals
        ]

    @property
    def transcript(self) -> Transcript:
        return Transcript.join(self._runs)

    @property
    def _loop(self) -> asyncio.AbstractEventLoop:
        loop = self._constructed_on or _running_loop()
        if loop is None:
            raise BkError("Transcriber needs a running event loop: use it in a Jupyter kernel or an async function")
        return loop

    async def wait(self) -> None:
        """Wait until the current run has drained and shown its last finals."""
        await self._run.finished.wait()

    def _in_loop(self, fn: Any, *args: Any) -> None:
        """Run ``fn(*args)`` on the kernel's loop, waking it whatever thread or turn we are in."""
        self._loop.call_soon_threadsafe(fn, *args)

    @property
    def running(self) -> bool:
        return self._state is not RunState.IDLE

    def _to(self, state: RunState) -> None:
        """The one way a run changes state (checked against the table); a run in progress shows it."""
        self._state = check_step(self._state, state)
        if state is RunState.IDLE:
            self._run.finished.set()
        elif not self._run.source_error:  # after a source error the status keeps showing that error
            self._set_status(_PROGRESS[state])

    # ------------------------------------------------------------ microphone runs
    def start(self) -> None:
        """Open a session and start the microphone (what the Start button does)."""
        if self.running:
            return
        if self._closed:
            raise BkError("this Transcriber is closed: make a new one")
        # live audio must not pile up without bound: beyond the backlog the oldest chunk is dropped, and counted
        queue = AsyncDropOldest(_BACKLOG_CHUNKS, self._count_dropped)
        self._run = Run(queue=queue)
        self._to(RunState.STARTING)
        self.start_button.disabled, self.stop_button.disabled = True, False
        try:
            self._source.start()  # a SoundCard that cannot open (busy, gone) fails here, before any connection
        except BkError as exc:
            self._end_run(None, ("error", str(exc)))
            return
        self._in_loop(self._spawn, self._run_live(queue))

    def _spawn(self, coroutine: Any) -> None:
        self._run.task = self._loop.create_task(coroutine)

    def stop(self) -> None:
        """Stop the microphone; the session drains and shows its last finals."""
        if not self.running:
            return
        self.stop_button.disabled = True
        self._source.stop()
        # The browser confirms with "stopped" after its last chunk; do not wait forever for it.
        if not self._source.confirms_stop:  # the card has confirmed already: stop() returns after it
            self._in_loop(self._arm_stop_timer)

    def _arm_stop_timer(self) -> None:
        self._run.stop_timer = self._loop.call_later(_STOP_CONFIRM_SECONDS, self._finish_run)

    def _on_chunk(self, chunk: bytes) -> None:
        queue = self._run.queue
        if queue is not None:
            self._in_loop(queue.push, chunk)

    def _count_dropped(self, _chunk: object) -> None:
        self._run.dropped_seconds += 0.1

    def _finish_run(self) -> None:
        self._in_loop(self._end_of_audio)

    def _end_of_audio(self) -> None:
        self._run.cancel_stop_timer()
        if self._run.queue is not None:
            self._run.queue.put_nowait(None)
            self._run.queue = None

    def _on_source_error(self, message: str) -> None:
        self._run.source_error = message
        self._set_status("error", message)
        if self.running:
            self._in_loop(self._end_run_early, message)

    def _on_detach(self) -> None:
        """The microphone's last view left the page (its cell re-ran or was cleared)."""
        if self.running:
            self._in_loop(self._end_run_early, "")

    def _end_run_early(self, error: str) -> None:
        """On the loop: end the run now; before its session is open, instead of opening it."""
        if not self.running:  # it ended on its own while this call waited for the loop
            return
        task, session_open = self._run.task, self._state in _SESSION_OPEN
        if session_open and task is not None and not self._source.drains_when_ended_early:
            task.cancel()  # a file being sent: the client stops the session, the finals so far are kept
        elif session_open or task is None or task.done():
            self._end_of_audio()  # an open live session drains and keeps its finals
        elif self._state is RunState.STARTING:
            task.cancel()  # it never ran: nothing to clean up in it, so clean up here
            self._end_run(None, ("error", error) if error else ("stopped", "before the session opened"))
        else:
            task.cancel()  # still connecting: abandoned; the task's own cleanup sets the status

    async def _run_live(self, queue: AsyncDropOldest) -> None:
        await self._session(self._send_from_queue(queue))

    @staticmethod
    async def _send_from_queue(queue: AsyncDropOldest) -> Any:
        while (chunk := await queue.get()) is not None:
            yield chunk

    async def _session(self, chunks: Any, *, speed: float | None = None) -> None:
        self._to(RunState.CONNECTING)
        transcript: Transcript | None = None
        outcome = ("error", "the session ended unexpectedly")
        try:
            if self._run.source_error:  # the source failed before the session began: do not open one
                return
            stream = self.client.stream(speed=speed, on_partial=self._show_partial, on_final=self._add_final)
            async with stream as session:
                self._to(RunState.STREAMING)
                async for chunk in chunks:
                    await session.send(chunk)
                self._to(RunState.DRAINING)
                transcript = await session.stop()
            dropped_seconds = self._run.dropped_seconds
            dropped = f", {dropped_seconds:.1f} s of audio dropped" if dropped_seconds else ""
            summary = f"{_count(len(transcript), 'final')}, {transcript.duration:.1f} s of audio{dropped}"
            if transcript.complete and not dropped_seconds:
                outcome = ("done", summary)
            else:  # say so where the user looks: the finals shown may not be all there is
                reason = transcript.incomplete_reason or "incomplete: live audio was dropped while the session stalled"
                outcome = ("incomplete", f"{summary}; {reason}")
        except BkError as exc:
            transcript = exc.transcript
            outcome = ("error", str(exc))
            self._source.stop_after_error()
        except asyncio.CancelledError:
            session_open = self._state in _SESSION_OPEN
            if session_open:  # closed while sending a file: keep what the session gave
                transcript = stream.transcript
            outcome = ("stopped", "closed" if session_open else "before the session opened")
            raise
        except Exception as exc:  # noqa: BLE001 - shown in the widget, never only in a log
            outcome = ("error", f"{type(exc).__name__}: {exc}")
        finally:
            self._end_run(transcript, outcome)

    def _end_run(self, transcript: Transcript | None, outcome: tuple[str, str]) -> None:
        run = self._run
        run.queue = None
        run.cancel_stop_timer()
        if transcript is not None and (transcript.finals or transcript.duration):
            self._runs.append(transcript)
            self._show_playback(transcript)
        run.finals = []  # now in self._runs, or lost with the session that never gave them
        self.partial.value = ""
        self._paint_finals()
        self.start_button.disabled, self.stop_button.disabled = False, True
        # Last, so that whoever watches the status sees the run's results already in place.
        if run.source_error:  # the microphone failed: that is what the user must see
            outcome = ("error", run.source_error)
        self._set_status(*outcome)
        self._to(RunState.IDLE)

    # --------------------------------------------------- recordings and uploads
    def _on_file(self, data: bytes) -> None:
        """A recording finished or a file was uploaded: transcribe it in a run of its own."""
        self._in_loop(self._spawn_file, data)

    def _spawn_file(self, data: bytes) -> None:
        self._loop.create_task(self._transcribe_bytes(data))

    async def _transcribe_bytes(self, data: bytes) -> None:
        from ..audio.convert import to_pcm16
        from ..audio.pcm import chunk_pcm

        try:
            pcm = to_pcm16(data)  # bad audio is reported before any connection
        except BkError as exc:
            self._set_status("error", str(exc))
            return
        while self.running:  # one session at a time keeps runs in order
            await self._run.finished.wait()
        if self._closed:
            return
        self._run = Run(audio=pcm, task=asyncio.current_task())  # the audio is for this run's player
        self._to(RunState.STARTING)

        async def chunks() -> Any:
            for chunk in chunk_pcm(pcm):
                yield chunk

        await self._session(chunks())

    def _show_playback(self, transcript: Transcript) -> None:
        if self._closed:  # a run ending after close(): no new widget may outlive the Transcriber
            return
        audio = self._source.recording()  # the microphone keeps its own; a file run kept its audio
        if audio is None:
            audio = self._run.audio
        try:
            if audio is not None and len(audio):
                self.playback.children = [transcript.player(audio, sr=SAMPLE_RATE)]
        except BkError as exc:  # never let the player cost the run its results
            self.playback.children = [w.HTML(f"no playback: {html.escape(str(exc))}")]

    # ------------------------------------------------------------------ painting
    def _show_partial(self, text: str) -> None:
        self.partial.value = f"<i>{html.escape(text)}</i>"

    def _add_final(self, record: dict[str, Any]) -> None:
        self._run.finals.append(record)
        self.partial.value = ""
        self._paint_finals()

    def _paint_finals(self) -> None:
        self.table.value = finals_table_html(self.finals, columns=("run", "segment", "start", "end"))

    def _set_status(self, state: str, detail: str = "") -> None:
        self._status_text = f"{state}: {detail}" if detail else state
        color = "#b00020" if state in ("error", "incomplete") else "inherit"
        self.status.value = (f"<span class='bk-status-{state}' style='color:{color}'>"
                             f"status: {html.escape(self._status_text)}</span>")

