"""The machinery of bench/gpu_suite.py: sections under a time budget, results written as they come.

Each section gets a cap (seconds) and starts only if the whole run has at least its minimum left;
its loops ask `Section.left()` and stop early. After every section (and when the total budget
runs out, from a watchdog thread) the JSON and the Markdown table are written again, so a
run stopped anywhere keeps everything finished before.
"""

from __future__ import annotations

import json
import os
import platform
import threading
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

GIB = 1 << 30


class Section:
    """One section's results: `data` (JSON), `rows` (the table: what, value, goal), `blocks` (Markdown)."""

    def __init__(self, name: str, cap: float, suite_deadline: float):
        self.name, self.start = name, time.perf_counter()
        self.deadline = min(self.start + cap, suite_deadline)
        self.status = "running"
        self.data: dict = {}
        self.rows: list[tuple[str, str, str]] = []
        self.blocks: list[str] = []
        self.notes: list[str] = []

    def left(self) -> float:
        return self.deadline - time.perf_counter()

    def row(self, what: str, value: str, goal: str = "") -> None:
        self.rows.append((what, value, goal))
        print(f"  {what}: {value}" + (f"   (goal {goal})" if goal else ""), flush=True)

    def note(self, text: str) -> None:
        self.notes.append(text)
        print(f"  note: {text}", flush=True)

    def as_dict(self) -> dict:
        return {"status": self.status, "seconds": round(time.perf_counter() - self.start, 1), "data": self.data,
                "rows": [list(r) for r in self.rows], "notes": self.notes}


class Suite:
    def __init__(self, out: Path, budget: float, meta: dict):
        self.out, self.meta = out, meta
        self.out.mkdir(parents=True, exist_ok=True)
        self.start = time.perf_counter()
        self.deadline = self.start + budget
        self.sections: list[Section] = []
        self.skipped: dict[str, str] = {}
        self._lock = threading.Lock()
        watchdog = threading.Timer(budget + 5, self._out_of_time)
        watchdog.daemon = True
        watchdog.start()

    def left(self) -> float:
        return self.deadline - time.perf_counter()

    @contextmanager
    def section(self, name: str, *, cap: float, minimum: float) -> Iterator[Section | None]:
        """Yields None (and records why) when less than `minimum` seconds are left."""
        if self.left() < minimum:
            self.skipped[name] = f"skipped: {self.left():.0f} s left, needs >= {minimum:.0f} s"
            print(f"[{name}] {self.skipped[name]}", flush=True)
            self.write()
            yield None
            return
        section = Section(name, cap, self.deadline)
        print(f"[{name}] cap {min(cap, self.left()):.0f} s", flush=True)
        with self._lock:
            self.sections.append(section)
        try:
            yield section
            section.status = "ok" if section.left() > 0 else "partial (over its cap)"
        except Exception as exc:  # noqa: BLE001 - a failed section must not cost the others
            section.status = f"error: {type(exc).__name__}: {exc}"
            section.data["traceback"] = traceback.format_exc()
            print(section.data["traceback"], flush=True)
        finally:
            print(f"[{name}] {section.status} in {time.perf_counter() - section.start:.1f} s", flush=True)
            self.write()

    def _out_of_time(self) -> None:
        running = [s.name for s in self.sections if s.status == "running"]
        self.meta["aborted"] = f"total budget spent during {', '.join(running) or 'setup'}; results so far"
        print(f"OUT OF TIME: {self.meta['aborted']}", flush=True)
        self.write()
        os._exit(3)

    def write(self) -> None:
        with self._lock:
            report = {"meta": {**self.meta, "elapsed_s": round(time.perf_counter() - self.start, 1)},
                      "sections": {s.name: s.as_dict() for s in self.sections}, "skipped": dict(self.skipped)}
            text = json.dumps(report, indent=1, default=str)
            markdown = render(report, self.sections)
        (self.out / "gpu_suite.json").write_text(text)
        (self.out / "gpu_suite.md").write_text(markdown)


def render(report: dict, sections: list[Section]) -> str:
    meta = report["meta"]
    lines = [f"# SeeSR GPU suite: {meta.get('device_name')}", "",
             f"{meta.get('weights')}; torch {meta.get('torch')}, diffusers {meta.get('diffusers')}; "
             f"elapsed {meta['elapsed_s']} s of a {meta.get('budget_s')} s budget."
             + (f" **{meta['aborted']}**" if meta.get("aborted") else ""), "",
             "| section | what | value | goal |", "|---|---|---|---|"]
    for section in sections:
        for what, value, goal in section.rows:
            lines.append(f"| {section.name} | {what} | {value} | {goal} |")
        if not section.rows or not section.status.startswith("ok"):
            lines.append(f"| {section.name} | status | {section.status} | |")
    for name, why in report["skipped"].items():
        lines.append(f"| {name} | status | {why} | |")
    for section in sections:
        if section.notes or section.blocks:
            lines += ["", f"## {section.name}", ""] + [f"- {n}" for n in section.notes]
            for block in section.blocks:
                lines += ["", block]
    return "\n".join(lines) + "\n"


def environment(device: torch.device, tiny: bool, budget: float) -> dict:
    import diffusers
    import transformers

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({platform.machine()})"
    meta = {"device_name": name, "torch": torch.__version__, "diffusers": diffusers.__version__,
            "transformers": transformers.__version__, "python": platform.python_version(), "budget_s": budget,
            "weights": "TINY random weights (smoke test)" if tiny else "full-size random weights (bench/_models.py)",
            "started": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        meta.update(total_memory_gib=round(props.total_memory / GIB, 2), sm=f"{props.major}.{props.minor}",
                    cuda=torch.version.cuda, cudnn=torch.backends.cudnn.version())
    return meta


# ----------------------------------------------------------------------------- measuring


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def peak(device: torch.device) -> dict:
    if device.type != "cuda":
        return {}
    return {"peak_allocated_gib": round(torch.cuda.max_memory_allocated(device) / GIB, 2),
            "peak_reserved_gib": round(torch.cuda.max_memory_reserved(device) / GIB, 2)}


def peak_text(memory: dict) -> str:
    if not memory:
        return "n/a on the CPU"
    return f"{memory['peak_allocated_gib']:.2f} GiB allocated ({memory['peak_reserved_gib']:.2f} reserved)"


def timed(pipe, image, settings, device: torch.device):
    """(seconds, result) of one upscale, synchronised; pipeline notes are printed."""
    sync(device)
    start = time.perf_counter()
    result = pipe.upscale(image, settings)
    sync(device)
    seconds = time.perf_counter() - start
    if result.notes:
        print(f"    pipeline notes: {result.notes}", flush=True)
    return seconds, result


def pixels(result) -> np.ndarray:
    return np.asarray(result.image, dtype=np.int16)


def pixel_diff(a, b) -> dict:
    """Max abs difference in 8-bit levels (LSB) and the share of differing values."""
    x, y = pixels(a), pixels(b)
    if x.shape != y.shape:
        return {"max_lsb": None, "note": f"shapes differ: {x.shape} vs {y.shape}"}
    diff = np.abs(x - y)
    return {"max_lsb": int(diff.max()), "differing": round(float((diff > 0).mean()), 6),
            "mean_lsb": round(float(diff.mean()), 4)}


def diff_text(diff: dict) -> str:
    if diff.get("max_lsb") is None:
        return diff.get("note", "n/a")
    return f"max {diff['max_lsb']} LSB, {100 * diff['differing']:.3f}% of values differ"


def fifty(seconds: float, denoise: float, steps: int, target: int) -> float:
    """Seconds at `target` steps from a run of `steps`: the denoise part scaled per step."""
    return seconds - denoise + denoise / steps * target
