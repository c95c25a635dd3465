"""The documentation site in Chromium, opened from disk (file://) as a reader who built it would.

The site is built here (or reused, if tests/project/test_docs.py built it in this process first), so this
test does not depend on the order the tests run in. Nothing may be fetched from the network.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from e2e.jupyter import launch
from project.docs_site import Site, build_site


@pytest.fixture(scope="module")
def site(browser_ready: None, tmp_path_factory: pytest.TempPathFactory) -> Site:
    built = build_site(tmp_path_factory)
    assert built.returncode == 0, built.output[-4000:]
    return built


@pytest.fixture
def offline_page(playwright: Any, site: Site, tmp_path: Path) -> Iterator[tuple[Any, list[str]]]:
    """A page that may load files only: every other request is refused and recorded."""
    context = launch(playwright, tmp_path / "profile", [])
    fetched: list[str] = []

    def refuse(route: Any) -> None:
        fetched.append(route.request.url)
        route.abort()

    context.route(lambda url: not url.startswith("file://"), refuse)
    yield context.new_page(), fetched
    context.close()


def test_the_site_opens_from_disk_and_its_search_finds_transcribe_many(
        offline_page: tuple[Any, list[str]], site: Site) -> None:
    page, fetched = offline_page
    page.goto((site.html / "index.html").as_uri())
    assert "bk_notebook" in page.title()
    page.get_by_role("link", name="Reference").first.click()
    page.wait_for_url("**/reference/index.html")

    page.goto((site.html / "search.html").as_uri() + "?q=transcribe_many")
    hit = page.locator("#search-results a", has_text="transcribe_many").first
    hit.wait_for(timeout=30_000)
    hit.click()
    page.wait_for_url("**/reference/api.html#bk_notebook.transcribe_many")
    assert page.locator("#bk_notebook\\.transcribe_many").is_visible()
    assert not fetched, f"the site fetched from the network: {fetched}"


def test_a_rendered_notebook_shows_its_plot(offline_page: tuple[Any, list[str]], site: Site) -> None:
    page, fetched = offline_page
    page.goto((site.html / "notebooks" / "01_quickstart.html").as_uri())
    plot = page.locator(".cell_output img").first
    plot.scroll_into_view_if_needed()
    plot.wait_for(state="visible")
    loaded = plot.evaluate("img => img.complete && img.naturalWidth > 0")
    size = plot.evaluate("img => [img.naturalWidth, img.naturalHeight]")
    assert loaded and size[0] > 300 and size[1] > 100, size  # the waveform-and-spectrogram figure, not a broken icon
    assert not fetched, f"the page fetched from the network: {fetched}"


def test_a_notebook_page_draws_its_saved_widgets(offline_page: tuple[Any, list[str]], site: Site) -> None:
    """Notebook 01's live display, drawn by the HTML manager shipped in _static from the saved state."""
    page, fetched = offline_page
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto((site.html / "notebooks" / "01_quickstart.html").as_uri())
    display = page.locator(".cell_output .jupyter-widgets.bk-live-display").first
    display.wait_for(state="visible", timeout=30_000)  # a DOM view of the manager, built in this page
    progress = display.locator(".widget-hprogress .progress-bar").first  # ipywidgets' FloatProgress view
    assert progress.is_visible()
    assert progress.evaluate("bar => parseFloat(bar.style.width)") == 100  # all 8.4 s sent, as the run left it
    assert display.locator(".bk-progress-label").inner_text() == "8.4 / 8.4 s"
    finals = display.locator("table.bk-finals")
    assert "hello world, this is a speech recognition test" in finals.inner_text().lower()
    assert page.get_by_text("VBox(children=").count() == 0  # the view, not its repr
    assert page.get_by_text("Error displaying widget").count() == 0
    # The player cannot be drawn from state: its picture stands beside the cell, and loads.
    picture = page.locator("img[src$='player.png']").first
    picture.scroll_into_view_if_needed()
    assert picture.evaluate("img => img.complete && img.naturalWidth > 300"), "the player's picture"
    assert not errors, errors
    assert not fetched, f"the page fetched from the network: {fetched}"


def test_the_home_page_recording_plays(offline_page: tuple[Any, list[str]], site: Site) -> None:
    page, fetched = offline_page
    page.goto((site.html / "index.html").as_uri())
    video = page.locator("video.bk-recording").first
    video.wait_for(state="visible")
    # Muted, it plays by itself: its clock moves on and its frames decode (a broken file or a missing
    # codec leaves currentTime at 0 and videoWidth at 0).
    page.wait_for_function("() => { const v = document.querySelector('video.bk-recording');"
                           " return v && !v.paused && v.readyState >= 2 && v.currentTime > 1 && v.videoWidth > 0; }",
                           timeout=30_000)
    size = video.evaluate("v => [v.videoWidth, v.videoHeight, v.duration]")
    assert size[0] > 300 and size[1] > 100 and size[2] > 3, size  # the Transcriber's view, a few seconds
    assert not fetched, f"the page fetched from the network: {fetched}"
