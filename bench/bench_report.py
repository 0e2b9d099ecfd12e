"""Time and size of the HTML report (seesr_cli.report) for a batch of N results.

Writes N distinct results with `imageio.save_image` and the full metadata contract (as
tests/test_report.py does; setup not timed), then times `write_report` three ways: from scratch
(every preview made), rebuilt with everything cached (what each later run and `seesr report`
costs), and with the metadata cache dropped (every output's metadata read again). Prints the
report's size and the hidden folder's. With --browser, also opens the report in the system
Chromium and prints the time to the first cards and how many elements the page holds.

    python bench/bench_report.py [--count 200] [--input 128x96] [--format png] [--browser]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "report")]  # run from a checkout without installing

from test_report import (  # the metadata contract's one home in tests
    draw_input,
    make_output,
)

from seesr_cli.report import (
    HIDDEN_DIR,
    REPORT_NAME,
    store,
    write_report,
)


def make_results(root: Path, count: int, size: tuple[int, int], fmt: str) -> Path:
    out = root / "out"
    for i in range(count):
        src = draw_input(root / "in" / f"img-{i:04d}.png", size, seed=i)
        make_output(src, out / f"img-{i:04d}.{fmt}", src.name, seed=i)
    return out


def timed(fn) -> tuple[float, float]:
    """(wall, CPU) seconds: on a shared machine the CPU time is the steadier number."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def browser_numbers(report: Path) -> str:
    from playwright.sync_api import sync_playwright

    args = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=args)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        start = time.perf_counter()
        page.goto(report.as_uri())
        page.wait_for_selector("article.card")
        first = time.perf_counter() - start
        counts = page.evaluate("""() => [document.querySelectorAll('article.card').length,
                                         document.getElementsByTagName('*').length,
                                         performance.getEntriesByType('navigation')[0].domContentLoadedEventEnd]""")
        browser.close()
    return (f"browser: first cards after {first * 1000:.0f} ms (DOMContentLoaded {counts[2]:.0f} ms); "
            f"{counts[0]} cards and {counts[1]} elements in the DOM before scrolling")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--input", default="128x96", help="input size WxH; results are 4x")
    parser.add_argument("--format", default="png", choices=["png", "jpg", "webp", "tif"])
    parser.add_argument("--browser", action="store_true", help="also time the first render in Chromium")
    args = parser.parse_args()
    size = tuple(int(v) for v in args.input.lower().split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        out = make_results(Path(tmp), args.count, size, args.format)
        scratch = timed(lambda: write_report(out))
        cached = timed(lambda: write_report(out))
        (out / HIDDEN_DIR / store.INDEX).unlink()
        reread = timed(lambda: write_report(out))
        page, hidden = (out / REPORT_NAME).stat().st_size, folder_bytes(out / HIDDEN_DIR)
        n = args.count
        print(f"{n} results: {size[0]}x{size[1]} inputs -> {4 * size[0]}x{4 * size[1]} {args.format}")
        print(f"write_report from scratch (all previews made): {scratch[0]:.2f} s wall, {scratch[1]:.2f} s CPU "
              f"({scratch[1] / n * 1000:.1f} ms CPU per result)")
        print(f"write_report again, previews and metadata cached: {cached[0]:.3f} s wall, {cached[1]:.3f} s CPU")
        print(f"write_report with the metadata cache dropped: {reread[0]:.2f} s wall, {reread[1]:.2f} s CPU")
        print(f"{REPORT_NAME}: {page / 1024:.0f} kB ({page / n / 1024:.1f} kB per result)")
        print(f"{HIDDEN_DIR}/: {hidden / 2 ** 20:.1f} MB ({hidden / n / 1024:.0f} kB per result)")
        if args.browser:
            print(browser_numbers(out / REPORT_NAME))


if __name__ == "__main__":
    main()
