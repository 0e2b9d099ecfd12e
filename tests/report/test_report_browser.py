"""The report in a real browser: Debian's Chromium driven by Playwright, opened from file://.

Checks what a person would: every result and the failure are on the page, the slider moves,
hovering a tile shows its tag box, the 1:1 viewer shows full-size pixels, the grid of a large
batch is built as it scrolls; and that the console stays clean and nothing leaves file://.

Needs (CI installs these; nothing is downloaded by Playwright itself):
    apt-get install -y chromium          # /usr/bin/chromium
    pip install playwright               # never `playwright install`: we drive the system Chromium
Skipped, with the reason and these commands, only where no browser is found; with
SEESR_REQUIRE_BROWSER=1 (for CI once it installs them) that is a failure instead.
SEESR_CHROMIUM names another Chromium/Chrome binary.
"""

from __future__ import annotations

import io
import os
import shutil
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import pytest
from PIL import Image
from test_report import draw_input, make_batch, make_output

from seesr_cli.report import write_report

pytestmark = pytest.mark.browser

ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]
INSTALL = "apt-get install -y chromium && pip install playwright"


def _chromium() -> str | None:
    for candidate in (os.environ.get("SEESR_CHROMIUM"), shutil.which("chromium"), shutil.which("chromium-browser"),
                      shutil.which("google-chrome"), "/usr/bin/chromium"):
        if candidate and os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None


def _unavailable(reason: str):
    if os.environ.get("SEESR_REQUIRE_BROWSER", "") not in ("", "0"):
        pytest.fail(f"{reason} (CI needs: {INSTALL})")
    pytest.skip(f"{reason}: {INSTALL}")


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("Playwright for Python is not installed")
    executable = _chromium()
    if executable is None:
        _unavailable("no Chromium found (looked for $SEESR_CHROMIUM, chromium, chromium-browser, google-chrome)")
    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=executable, args=ARGS)
        yield launched
        launched.close()


class Watched:
    """A page whose console errors, page errors and non-file requests are recorded."""

    def __init__(self, browser, width=1280, height=900, scale=1):
        self.problems: list[str] = []
        self.page = browser.new_page(viewport={"width": width, "height": height}, device_scale_factor=scale)
        self.page.set_default_timeout(10_000)
        self.page.on("console", lambda m: m.type in ("error", "warning") and self.problems.append(f"{m.type}: {m.text}"))
        self.page.on("pageerror", lambda e: self.problems.append(f"page error: {e}"))
        self.page.on("request", lambda r: r.url.startswith(("file://", "data:")) or self.problems.append(f"request {r.url}"))
        self.page.on("requestfailed", lambda r: self.problems.append(f"failed {r.url}: {r.failure}"))

    def open(self, report: Path):
        self.page.goto(report.as_uri())
        self.page.wait_for_load_state("load")
        return self.page


def _all_images_loaded(page, scope: str) -> None:
    page.wait_for_function(f"""() => [...document.querySelectorAll({scope!r})]
        .every(i => i.complete && i.naturalWidth > 0)""", timeout=10_000)


def _card(page, name: str):
    return page.locator(f'article.card[data-name="{name}"]')


def test_report_in_chromium(browser, tmp_path):
    batch = make_batch(tmp_path)
    watched = Watched(browser, scale=2)  # a HiDPI screen: 1:1 means one image pixel per device pixel
    page = watched.open(write_report(batch["out"]))

    assert sorted(page.locator("article.card").evaluate_all("cs => cs.map(c => c.dataset.name)")) == \
        ["a.png", "c.webp", "d16.tif", "sub/b.jpg"]
    _all_images_loaded(page, "#grid img")
    assert page.locator("#grid img").count() == 8  # before and after of each
    failures = page.locator("#failures")
    assert failures.is_visible() and "broken.png" in failures.inner_text() and "corrupt" in failures.inner_text()

    _check_slider(page, _card(page, "a.png"), batch["out"])
    _check_tile_hover(page, _card(page, "a.png"))
    _check_viewer(page, _card(page, "d16.tif"), (192, 128))
    _check_viewer(page, _card(page, "sub/b.jpg"), (192, 128))
    page.close()
    assert watched.problems == []


def _pos(cmp) -> float:
    return float(cmp.evaluate("e => getComputedStyle(e).getPropertyValue('--pos')").strip().rstrip("%"))


def _check_slider(page, card, out: Path) -> None:
    cmp, slider = card.locator(".cmp"), card.locator("input.slider")
    box = cmp.bounding_box()
    y = box["y"] + box["height"] / 2
    page.mouse.move(box["x"] + box["width"] / 2, y)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.2, y, steps=5)
    page.mouse.up()
    assert abs(_pos(cmp) - 20) < 1 and abs(float(slider.input_value()) - 20) < 1
    page.mouse.move(0, 0)
    assert _shown(cmp, out, 0.02, 0.18) == "before" and _shown(cmp, out, 0.25, 0.95) == "after"
    slider.fill("75")
    assert abs(_pos(cmp) - 75) < 0.01
    assert _shown(cmp, out, 0.3, 0.7) == "before" and _shown(cmp, out, 0.8, 0.98) == "after"


def _shown(cmp, out: Path, x0: float, x1: float) -> str:
    """Which thumbnail the screen shows between x0 and x1 (fractions of the width): before or after."""
    shot = Image.open(io.BytesIO(cmp.screenshot())).convert("RGB")
    w, h = shot.size

    def strip(image: Image.Image) -> np.ndarray:
        return np.asarray(image.resize((w, h)).crop((int(x0 * w), h // 3, int(x1 * w), h)), np.float32)

    diffs = {}
    for side in ("before", "after"):
        with Image.open(out / unquote(cmp.locator(f"img.{side}").get_attribute("src"))) as thumb:
            diffs[side] = np.abs(strip(thumb.convert("RGB")) - strip(shot)).mean()
    return min(diffs, key=diffs.get)


def _check_tile_hover(page, card) -> None:
    cmp = card.locator(".cmp")
    box = cmp.bounding_box()
    page.mouse.move(box["x"] + box["width"] * 10 / 192, box["y"] + box["height"] * 10 / 128)  # in tile 0 only
    hot = card.locator(".tile.hot")
    hot.wait_for(state="visible")
    assert hot.count() == 1 and hot.inner_text() == "sky, tree"
    page.wait_for_function("e => getComputedStyle(e).opacity === '1'", arg=card.locator(".tiles").element_handle())
    tile = hot.bounding_box()
    assert abs(tile["width"] - box["width"] * 96 / 192) < 2 and abs(tile["height"] - box["height"] * 96 / 128) < 2
    page.mouse.move(box["x"] + box["width"] * 0.9, box["y"] + box["height"] * 0.9)  # tile 5: [96, 32, 96, 96]
    assert hot.inner_text() == "person, cloud"
    page.mouse.move(0, 0)
    hot.wait_for(state="detached")


def _check_viewer(page, card, size) -> None:
    card.locator("button.zoom").click()
    viewer = page.locator("#viewer")
    assert viewer.is_visible()
    _all_images_loaded(page, "#viewer img")
    images = viewer.locator("img").evaluate_all("is => is.map(i => [i.naturalWidth, i.naturalHeight])")
    assert images == [list(size), list(size)]
    dpr = page.evaluate("devicePixelRatio")
    shown = viewer.locator(".cmp").bounding_box()
    assert abs(shown["width"] - size[0] / dpr) < 1 and abs(shown["height"] - size[1] / dpr) < 1  # 1:1 pixels
    viewer.locator("button[data-zoom='2']").click()
    assert abs(viewer.locator(".cmp").bounding_box()["width"] - 2 * size[0] / dpr) < 1
    viewer.locator(".vslider").fill("10")
    assert abs(_pos(viewer.locator(".cmp")) - 10) < 0.01
    page.keyboard.press("Escape")
    assert not viewer.is_visible()


def test_large_report_builds_cards_as_it_scrolls(browser, tmp_path):
    src = draw_input(tmp_path / "in" / "one.png", (16, 12))
    first = make_output(src, tmp_path / "out" / "img-0000.png", "one.png")
    for i in range(1, 200):
        shutil.copyfile(first, tmp_path / "out" / f"img-{i:04d}.png")
    watched = Watched(browser, height=800)
    page = watched.open(write_report(tmp_path / "out"))
    cards = page.locator("article.card")
    initial = cards.count()
    assert 0 < initial < 100, initial  # a few chunks, not 200 cards up front
    for _ in range(60):
        if cards.count() == 200:
            break
        page.mouse.wheel(0, 4000)
        page.wait_for_timeout(50)
    assert cards.count() == 200
    assert page.locator("#showing").inner_text() == "Showing 200 of 200 results"
    page.locator("#filter").fill("img-0123")
    assert cards.count() == 1 and _card(page, "img-0123.png").count() == 1
    page.close()
    assert watched.problems == []
