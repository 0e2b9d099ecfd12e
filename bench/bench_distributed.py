"""Tiny-model throughput of `seesr upscale`: one process vs 1 and N Ray CPU workers (`--devices cpu,...`).

Not a test: it prints numbers. The tiny random-weight models of the fake Hugging Face cache
(tests/fakehub.py; needs the reference fixtures, see tests/conftest.py) keep every image cheap,
so the numbers show the overhead of Ray and of the workers' start more than SeeSR itself.
Every process or worker gets `--threads` torch threads (the driver's OMP_NUM_THREADS is set to
threads x workers, and each worker takes its share); on a machine with fewer cores than
workers x threads they compete and N workers cannot beat 1. Also measured: starting and
stopping a private Ray here, alone.

    python bench/bench_distributed.py [--images 8] [--workers 2] [--steps 4] [--threads 1]
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

RAY_START = """
import logging, time
t = time.perf_counter()
import ray
imported = time.perf_counter()
ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
started = time.perf_counter()
ray.shutdown()
print(imported - t, started - imported, time.perf_counter() - started)
"""


def make_inputs(folder: Path, count: int, size: tuple[int, int]) -> None:
    folder.mkdir(parents=True)
    for i in range(count):
        rng = np.random.default_rng(i)
        Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(folder / f"img{i:03d}.png")


def run(work: Path, env: dict, out: str, extra: list[str], args, workers: int = 1) -> dict:
    command = [sys.executable, "-m", "seesr_cli", "upscale", "in", "-o", out, "--json", "--device", "cpu",
               "--steps", str(args.steps), "--scale", "2", "--process-size", "64", *extra]
    env = {**env, "OMP_NUM_THREADS": str(args.threads * workers)}
    start = time.perf_counter()
    done = subprocess.run(command, cwd=work, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr}")
    report = json.loads(done.stdout)
    ok = [r["seconds"] for r in report["images"] if r["status"] == "ok"]
    return {"images": len(ok), "wall": wall, "batch": report["seconds"], "load": report["load_seconds"],
            "per_image": sum(ok) / max(len(ok), 1)}


def ray_start_cost(env: dict) -> tuple[float, float, float]:
    done = subprocess.run([sys.executable, "-c", RAY_START], env=env, capture_output=True, text=True, check=True)
    return tuple(float(x) for x in done.stdout.split())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--size", type=int, nargs=2, default=(64, 48), metavar=("W", "H"))
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process / worker")
    args = parser.parse_args()
    reference = _reference_dir()
    if reference is None:
        raise SystemExit("reference fixtures not found (set SEESR_REFERENCE_FIXTURES)")
    import torch

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="seesr-bench-") as tmp:
        work = Path(tmp)
        hub = build_fake_hub_cache(work / "hub", build_tiny_components(work / "tiny", reference))
        base = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
        env = {**hub.environ(work / "home", base), "PYTHONPATH": str(ROOT)}
        make_inputs(work / "in", args.images, tuple(args.size))
        run(work, env, "warm", [], args)  # converts DAPE into the cache once; warms the file cache
        ray_cost = ray_start_cost(env)
        many = ",".join(["cpu"] * args.workers)
        rows = [("1 process", run(work, env, "one", [], args)),
                ("1 worker", run(work, env, "w1", ["--devices", "cpu"], args)),
                (f"{args.workers} workers", run(work, env, "wn", ["--devices", many], args, args.workers))]
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"{args.images} images {args.size[0]}x{args.size[1]} -> x2, {args.steps} steps, tiny models, "
          f"{args.threads} thread(s) per process/worker, {os.cpu_count()} CPUs, load {load:.1f}")
    print(f"Ray alone: import {ray_cost[0]:.1f} s, ray.init (local) {ray_cost[1]:.1f} s, shutdown {ray_cost[2]:.1f} s")
    print(f"{'':>12}  {'wall s':>7}  {'img/s wall':>10}  {'batch s':>7}  {'load s':>6}  {'img/s excl. load':>16}"
          f"  {'s per image':>11}")
    for name, r in rows:
        compute = max(r["batch"] - r["load"], 1e-9)
        print(f"{name:>12}  {r['wall']:7.1f}  {r['images'] / r['wall']:10.2f}  {r['batch']:7.1f}  {r['load']:6.1f}  "
              f"{r['images'] / compute:16.2f}  {r['per_image']:11.2f}")
    print("wall: the whole command; load: model loading (Ray: + starting Ray, preparing the node, the first "
          "worker's start); s per image: the mean of each image's own time")


if __name__ == "__main__":
    main()
