"""The report page: the data each card needs, as one inline JSON array, around a static shell.

The header and the failures are plain HTML (escaped here); the cards are built by the inline
script from the JSON, so the page stays small in the DOM however many results there are. Every
link is relative to OUT, so the folder can be moved or zipped and still opens from file://.
Settings and run environments repeat across a batch, so each distinct one is stored once.
"""

from __future__ import annotations

import html
import json
import os
import urllib.parse
from collections.abc import Mapping, Sequence
from pathlib import Path

from .entries import Entry
from .previews import Previews
from .script import JS
from .style import CSS

STAGES = ("dape", "text", "vae_encode", "denoise", "vae_decode", "colorfix")
_PER_IMAGE_RUN_KEYS = ("timings", "notes", "input_size", "output_size")
_CSP = ("default-src 'none'; img-src file: data: 'self'; style-src 'unsafe-inline'; "
        "script-src 'unsafe-inline'; base-uri 'none'; form-action 'none'")


def url(out: Path, path: Path | None) -> str | None:
    """`path` as a link relative to OUT (where the report lives), percent-encoded."""
    if path is None:
        return None
    return urllib.parse.quote(Path(os.path.relpath(path, out)).as_posix())


class _Interned:
    """Distinct JSON objects, each stored once and referred to by index."""

    def __init__(self) -> None:
        self.values: list = []
        self._index: dict[str, int] = {}

    def add(self, value: Mapping) -> int | None:
        if not value:
            return None
        key = json.dumps(value, sort_keys=True, default=str)
        if key not in self._index:
            self._index[key] = len(self.values)
            self.values.append(value)
        return self._index[key]


def page_data(out: Path, results: Sequence[tuple[Entry, Previews]]) -> dict:
    """{"items": [...], "settings": [...], "envs": [...]}: what the script renders."""
    settings, envs = _Interned(), _Interned()
    items = [_item(out, entry, prev, settings, envs) for entry, prev in results]
    return {"items": items, "settings": settings.values, "envs": envs.values}


def _item(out: Path, entry: Entry, prev: Previews, settings: _Interned, envs: _Interned) -> dict:
    run = entry.run
    w, h = entry.size or (0, 0)
    in_size = run.get("input_size")
    in_w, in_h = in_size if _pair(in_size) else (None, None)
    after_full = url(out, prev.after_full)
    before = prev.before_thumb is not None and prev.before_full is not None
    return {
        "name": entry.rel, "src": entry.source, "href": url(out, entry.output), "fmt": entry.fmt,
        "bytes": entry.bytes, "w": w, "h": h, "iw": in_w, "ih": in_h,
        "seed": entry.seed, "bseed": entry.base_seed,
        "input": None if entry.input is None else str(entry.input),
        "gone": entry.input is not None and not entry.input_exists,
        "a": url(out, prev.after_thumb) or after_full, "A": after_full,
        "b": url(out, prev.before_thumb) if before else None, "B": url(out, prev.before_full) if before else None,
        "set": settings.add({k: v for k, v in entry.settings.items() if k != "seed"}),
        "env": envs.add({k: v for k, v in run.items() if k not in _PER_IMAGE_RUN_KEYS}),
        "t": _timings(run.get("timings")),
        "notes": [str(n) for n in run.get("notes") or [] if n] if isinstance(run.get("notes"), list) else [],
        "tiles": [[t["box"], t["tags"], t["prompt"] if t["prompt"] != ", ".join(t["tags"]) else None]
                  for t in entry.tiles],
        "prompts": [] if entry.tiles else list(entry.prompts),
        "problem": prev.problem or None,
    }


def _pair(value) -> bool:
    return isinstance(value, list) and len(value) == 2 and all(isinstance(v, int) for v in value)


def _timings(raw) -> list[list]:
    """[[stage, seconds], ...] in pipeline order, unknown stages after."""
    if not isinstance(raw, dict):
        return []
    known = [s for s in STAGES if s in raw] + sorted(s for s in raw if s not in STAGES)
    return [[s, round(float(raw[s]), 3)] for s in known
            if isinstance(raw[s], (int, float)) and not isinstance(raw[s], bool) and raw[s] >= 0]


# ----------------------------------------------------------------------------- HTML


def render(out: Path, data: dict, failures: Sequence[Entry], runs: Sequence[Mapping], generated: str) -> str:
    """The whole page as one string: inline CSS, JSON and script; nothing fetched from anywhere."""
    title = f"SeeSR report \u2014 {out.name or out}"
    payload = json.dumps(data, ensure_ascii=False, separators=(",", ":")).replace("<", "\\u003c")
    return "".join([
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n",
        f"<meta http-equiv=\"Content-Security-Policy\" content=\"{_CSP}\">\n",
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n",
        "<meta name=\"referrer\" content=\"no-referrer\">\n",
        f"<title>{_e(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n",
        _header(out, len(data["items"]), len(failures), runs, generated),
        "<main>\n", _failures(failures),
        "<p class=\"showing\" id=\"showing\"></p>\n<div id=\"grid\"></div>\n<div id=\"more\"></div>\n</main>\n",
        _VIEWER,
        f"<script type=\"application/json\" id=\"report-data\">{payload}</script>\n",
        f"<script>{JS}</script>\n</body>\n</html>\n",
    ])


def _e(text) -> str:
    return html.escape(str(text), quote=True)


def _header(out: Path, results: int, failed: int, runs: Sequence[Mapping], generated: str) -> str:
    stats = [f"<span><b>{results}</b> result{'s' if results != 1 else ''}</span>"]
    if failed:
        stats.append(f"<span class=\"bad\"><b>{failed}</b> failed</span>")
    if runs:
        stats.append(f"<span>last run: {_e(_run_line(runs[-1]))}</span>")
    stats.append(f"<span>generated {_e(generated)}</span>")
    return ("<header>\n<div>\n<h1>SeeSR report</h1>\n"
            f"<p class=\"where\">{_e(out.absolute())}</p>\n<div class=\"stats\">{''.join(stats)}</div>\n</div>\n"
            "<input id=\"filter\" type=\"search\" placeholder=\"Filter by name, tag or note\" "
            "aria-label=\"Filter results\">\n</header>\n")


def _run_line(run: Mapping) -> str:
    parts = [str(run.get("finished", ""))]
    parts += [f"{run[k]} {k}" for k in ("ok", "skipped", "failed") if run.get(k)]
    if isinstance(run.get("seconds"), (int, float)):
        parts.append(f"{run['seconds']:.1f} s")
    if run.get("interrupted"):
        parts.append("interrupted")
    return " \u00b7 ".join(p for p in parts if p)


def _failures(failures: Sequence[Entry]) -> str:
    if not failures:
        return ""
    rows = []
    for f in failures:
        where = f"input {f.input}" + (f" \u2192 {f.output}" if f.output else "")
        rows.append(f"<li><span class=\"name\">{_e(f.source)}</span><span class=\"err\">{_e(f.error)}</span>"
                    f"<time>{_e(f.when)}</time><span class=\"path\">{_e(where)}</span></li>\n")
    n = len(failures)
    return (f"<section class=\"failures\" id=\"failures\">\n<h2>{n} input{'s' if n != 1 else ''} failed</h2>\n"
            f"<ul>\n{''.join(rows)}</ul>\n</section>\n")


_VIEWER = """<div id="viewer" hidden role="dialog" aria-modal="true" aria-label="Full-size comparison">
<div class="vbar"><span class="vname"></span>
<button data-zoom="0" title="Fit the window (0)">Fit</button><button data-zoom="1" title="1:1 pixels (1)">1:1</button>
<button data-zoom="2" title="2:1 (2)">2:1</button><button data-zoom="4" title="4:1 (4)">4:1</button>
<input class="vslider" type="range" min="0" max="100" step="0.1" value="50" aria-label="bicubic / SeeSR">
<button class="close" title="Close (Esc)">Close</button></div>
<div class="stage"></div>
</div>
"""
