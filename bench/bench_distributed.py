"""Tiny-model throughput of `seesr upscale` with 1 process vs N CPU processes (`--devices cpu,...`).

Not a test: it prints numbers. The tiny random-weight models of the fake Hugging Face cache
(tests/fakehub.py; needs the reference fixtures, see tests/conftest.py) keep every image cheap,
so the numbers show the overhead of starting and coordinating processes more than SeeSR itself.
Each process gets `--threads` CPU threads (OMP_NUM_THREADS); on a machine with fewer cores than
processes x threads the processes compete and N processes cannot beat 1.

    python bench/bench_distributed.py [--images 8] [--processes 2] [--steps 4] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]  # run from a checkout: the package and the fake Hub

from conftest import _reference_dir  # noqa: E402
from fakehub import build_fake_hub_cache, build_tiny_components  # noqa: E402


def make_inputs(folder: Path, count: int, size: tuple[int, int]) -> None:
    folder.mkdir(parents=True)
    for i in range(count):
        rng = np.random.default_rng(i)
        small = rng.integers(0, 256, (size[1] // 4, size[0] // 4, 3), dtype=np.uint8)
        Image.fromarray(small).resize(size, Image.BILINEAR).save(folder / f"img{i:03d}.png")


def run(work: Path, env: dict, out: str, extra: list[str], args) -> dict:
    command = [sys.executable, "-m", "seesr_cli", "upscale", "in", "-o", out, "--json", "--device", "cpu",
               "--steps", str(args.steps), "--scale", "2", "--process-size", "64", *extra]
    start = time.perf_counter()
    done = subprocess.run(command, cwd=work, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr}")
    report = json.loads(done.stdout)
    ok = sum(r["status"] == "ok" for r in report["images"])
    return {"images": ok, "wall": wall, "batch": report["seconds"], "load": report["load_seconds"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--size", type=int, nargs=2, default=(64, 48), metavar=("W", "H"))
    parser.add_argument("--threads", type=int, default=1, help="CPU threads per process")
    args = parser.parse_args()
    reference = _reference_dir()
    if reference is None:
        raise SystemExit("reference fixtures not found (set SEESR_REFERENCE_FIXTURES)")
    import torch

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="seesr-bench-") as tmp:
        work = Path(tmp)
        hub = build_fake_hub_cache(work / "hub", build_tiny_components(work / "tiny", reference))
        base = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
        env = {**hub.environ(work / "home", base), "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": str(args.threads)}
        make_inputs(work / "in", args.images, tuple(args.size))
        run(work, env, "warm", [], args)  # converts DAPE into the cache once; warms the file cache
        many = ["--devices", ",".join(["cpu"] * args.processes)]
        rows = [("1 process", run(work, env, "one", [], args)),
                (f"{args.processes} processes", run(work, env, "many", many, args))]
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"{args.images} images {args.size[0]}x{args.size[1]} -> x2, {args.steps} steps, tiny models, "
          f"{args.threads} thread(s)/process, {os.cpu_count()} CPUs, load {load:.1f}")
    print(f"{'':>12}  {'wall s':>7}  {'img/s wall':>10}  {'batch s':>7}  {'load s':>6}  {'img/s excl. load':>16}")
    for name, r in rows:
        compute = max(r["batch"] - r["load"], 1e-9)
        print(f"{name:>12}  {r['wall']:7.1f}  {r['images'] / r['wall']:10.2f}  {r['batch']:7.1f}  {r['load']:6.1f}  "
              f"{r['images'] / compute:16.2f}")


if __name__ == "__main__":
    main()
