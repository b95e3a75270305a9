"""The screenshots in ``screenshots/`` render as they should, in a browser and with
``rsvg-convert``: text is drawn (not blank, not boxes), in fonts these renderers have, the
columns line up, and the main screen shows a tree more than five levels deep.

Renders are compared with the same picture without its text: what differs is the ink the
text put there. Pixels are counted in the browser (a canvas), so no imaging library is
needed; which font covers which character is asked of fontconfig, which both renderers
use to find fonts.
"""

from __future__ import annotations

import base64
import html
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from tests.web.browser import chromium, need_browser

REPO = Path(__file__).resolve().parents[2]
SHOTS = sorted((REPO / "screenshots").glob("*.svg"))
GENERIC = {"monospace", "sans-serif", "serif"}
_TEXT = re.compile(r'<text class="[^"]*" x="([0-9.]+)" y="([0-9.]+)"[^>]*>([^<]*)</text>')

# How many pixels one drawn character changes, at least (a 20 px glyph changes dozens;
# a blank or failed render changes none).
INK_PER_CHARACTER = 8

_INK = """async ([a, b]) => {
    const load = (src) => new Promise((ok, fail) => {
        const image = new Image();
        image.onload = () => ok(image);
        image.onerror = fail;
        image.src = src;
    });
    const [x, y] = await Promise.all([load(a), load(b)]);
    const canvas = document.createElement("canvas");
    canvas.width = x.naturalWidth;
    canvas.height = x.naturalHeight;
    const g = canvas.getContext("2d");
    const pixels = (image) => {
        g.clearRect(0, 0, canvas.width, canvas.height);
        g.drawImage(image, 0, 0);
        return g.getImageData(0, 0, canvas.width, canvas.height).data;
    };
    const p = pixels(x), q = pixels(y);
    let changed = 0;
    for (let i = 0; i < p.length; i += 4) {
        let d = 0;
        for (let c = 0; c < 3; c++) d += Math.abs(p[i + c] - q[i + c]);
        if (d > 48) changed++;
    }
    return changed;
}"""

# Each text run's width in the font the browser picked, against the width the SVG gives
# it (``textLength``: its cells times the cell width). A proportional fallback font, or
# a missing one, makes them differ and the columns drift.
_WIDTHS = """() => {
    const out = [];
    for (const t of document.querySelectorAll("text[textLength]")) {
        if (!t.textContent.trim()) continue;
        const clone = t.cloneNode(true);
        clone.removeAttribute("textLength");
        t.parentNode.appendChild(clone);
        out.push([t.textContent, parseFloat(t.getAttribute("textLength")),
                  clone.getComputedTextLength()]);
        clone.remove();
    }
    return out;
}"""


def _need_tools() -> None:
    missing = [tool for tool in ("rsvg-convert", "fc-list") if shutil.which(tool) is None]
    if missing:
        message = f"needs {', '.join(missing)} (apt-get install librsvg2-bin fontconfig)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)


def _families(svg: str) -> list[str]:
    found = re.search(r"-matrix\s*\{[^}]*font-family:\s*([^;]+);", svg)
    assert found, "no font-family for the terminal text"
    return [name.strip().strip("\"'") for name in found.group(1).split(",")]


def _characters(svg: str) -> str:
    return "".join(html.unescape(m.group(3)) for m in _TEXT.finditer(svg))


def _without_text(svg: str) -> str:
    return re.sub(r"<text\b[^>]*>[^<]*</text>", "", svg)


@cache
def _installed() -> frozenset[str]:
    out = subprocess.run(["fc-list", ":", "family"], capture_output=True, text=True, check=True)
    return frozenset(name.strip() for line in out.stdout.splitlines() for name in line.split(","))


@cache
def _covering(character: str) -> frozenset[str]:
    """The installed families that have a glyph for ``character``."""
    out = subprocess.run(
        ["fc-list", f":charset={ord(character):x}", "family"],
        capture_output=True,
        text=True,
        check=True,
    )
    return frozenset(name.strip() for line in out.stdout.splitlines() for name in line.split(","))


def _rsvg(svg: Path, out: Path) -> bytes:
    result = subprocess.run(
        ["rsvg-convert", "--format", "png", "--output", str(out), str(svg)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0 and not result.stderr.strip(), result.stderr
    return out.read_bytes()


def _size(svg: str) -> tuple[int, int]:
    found = re.search(r'viewBox="0 0 ([0-9.]+) ([0-9.]+)"', svg)
    assert found, "no viewBox"
    return int(float(found.group(1)) + 0.999), int(float(found.group(2)) + 0.999)


def _data_url(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    sync_api = need_browser()
    with chromium(sync_api) as context:
        yield context


def test_there_are_screenshots() -> None:
    assert len(SHOTS) >= 10, SHOTS


@pytest.mark.parametrize("shot", SHOTS, ids=[p.stem for p in SHOTS])
def test_a_screenshot_renders_in_a_browser_and_with_rsvg(
    shot: Path, browser: Any, tmp_path: Path
) -> None:
    _need_tools()
    svg = shot.read_text()
    # Nothing fetched (an offline renderer has no CDN), spaces kept as they are.
    assert "@font-face" not in svg and "url(http" not in svg
    assert 'xml:space="preserve"' in svg.split(">", 1)[0]
    # Fonts: a generic fallback last, and a named font that is really here.
    families = _families(svg)
    assert families[-1] == "monospace", families
    named = [f for f in families if f not in GENERIC]
    present = [f for f in named if f in _installed()]
    assert present, f"none of {named} is installed: {sorted(_installed())}"
    # No tofu: every character drawn has a glyph in one of the fonts the SVG names.
    text = _characters(svg)
    uncovered = sorted({ch for ch in text if not ch.isspace() and not (_covering(ch) & set(named))})
    assert not uncovered, [f"U+{ord(ch):04X} {ch}" for ch in uncovered]
    drawn = sum(1 for ch in text if not ch.isspace())
    assert drawn > 50, "hardly any text: a blank screen?"

    bare = tmp_path / f"{shot.stem}-bare.svg"
    bare.write_text(_without_text(svg))
    width, height = _size(svg)
    page = browser.new_page()
    try:
        page.set_viewport_size({"width": width, "height": height})
        inks: dict[str, int] = {}
        page.goto(bare.as_uri())
        browser_bare = page.screenshot()
        page.goto(shot.as_uri())
        browser_full = page.screenshot()
        widths = page.evaluate(_WIDTHS)
        rsvg_full = _rsvg(shot, tmp_path / "full.png")
        rsvg_bare = _rsvg(bare, tmp_path / "bare.png")
        page.goto("about:blank")
        for name, full, empty in (
            ("browser", browser_full, browser_bare),
            ("rsvg-convert", rsvg_full, rsvg_bare),
        ):
            inks[name] = page.evaluate(_INK, [_data_url(full), _data_url(empty)])
    finally:
        page.close()
    for name, ink in inks.items():
        assert ink >= drawn * INK_PER_CHARACTER, f"{name}: {ink} pixels for {drawn} characters"
    # Both renderers draw about as much text (one of them drawing boxes or nothing
    # for some of it would not).
    assert 0.5 < inks["browser"] / inks["rsvg-convert"] < 2, inks
    drifting = [
        (t, want, round(got, 1)) for t, want, got in widths if abs(got - want) > 0.03 * want
    ]
    assert not drifting, f"text runs not as wide as their cells: {drifting[:5]}"


def _lines(svg: str) -> list[str]:
    """The screen's lines, each character in its cell (from the runs' x positions)."""
    runs = [(float(x), float(y), html.unescape(t)) for x, y, t in _TEXT.findall(svg)]
    cell = min(
        float(length) / len(html.unescape(text))
        for length, text in re.findall(r'textLength="([0-9.]+)"[^>]*>([^<]+)</text>', svg)
        if html.unescape(text).strip()
    )
    rows: dict[float, list[str]] = {}
    for x, y, text in runs:
        row = rows.setdefault(y, [])
        column = round(x / cell) - 1
        row.extend(" " * (column + len(text) - len(row)))
        row[column : column + len(text)] = text.replace("\xa0", " ")
    return ["".join(rows[y]).rstrip() for y in sorted(rows)]


def test_the_main_screenshot_shows_a_tree_more_than_five_levels_deep() -> None:
    lines = _lines((REPO / "screenshots" / "main.svg").read_text())

    def start(description: str) -> int:
        """Where the id starts on the row of the record with this description."""
        row = next(line for line in lines if description in line)
        return re.search(r"[0-9a-z]{6}", row).start()  # type: ignore[union-attr]

    root, child, deepest = start("FROM alpine"), start("RUN apt-get"), start("RUN strip")
    step = child - root
    assert step > 0
    assert (deepest - root) / step >= 5, "\n".join(lines)
