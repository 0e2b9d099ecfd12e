"""Two real `python -m seesr_cli upscale` processes on one folder at once (issue 10, item 2): both exit
0, every image is computed exactly once in total, neither deletes the other's files, nothing is left
behind. The measured wall time and exit codes are printed (`pytest -s` shows them)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO_ROOT = Path(__file__).resolve().parents[2]
FAST = ["--steps", "4", "--scale", "2", "--process-size", "64", "--device", "cpu"]


@pytest.mark.skipif(os.name == "nt", reason="claims take over by pid on POSIX")
def test_two_runs_on_one_folder_compute_each_image_once(fake_hub, tmp_path):
    rng = np.random.default_rng(0)
    for i in range(8):
        Image.fromarray(rng.integers(0, 256, (32, 48, 3), dtype=np.uint8)).save(tmp_path / f"img{i}.png")
    (tmp_path / "in").mkdir()
    for i in range(8):
        (tmp_path / f"img{i}.png").rename(tmp_path / "in" / f"img{i}.png")
    env = fake_hub.environ(tmp_path / "home")
    env.update(PYTHONPATH=os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")])), OMP_NUM_THREADS="1")
    # Convert DAPE once first, so both runs start from the same warm cache (as two real users would).
    subprocess.run([sys.executable, "-m", "seesr_cli", "weights"], env=env, cwd=tmp_path, capture_output=True,
                   timeout=600, check=False)
    command = [sys.executable, "-m", "seesr_cli", "upscale", "in", "-o", "out", *FAST, "--json", "--no-report"]
    start = time.monotonic()
    procs = [subprocess.Popen(command, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    wall = time.monotonic() - start
    codes = [p.returncode for p in procs]
    reports = [json.loads(out) for out, _ in outs]
    print(f"\ntwo concurrent runs, 8 images: wall {wall:.1f} s, exit codes {codes}, "
          f"computed {[sum(r['status'] == 'ok' for r in rep['images']) for rep in reports]}")
    assert codes == [0, 0], [err for _, err in outs]
    statuses: dict[str, list[str]] = {}
    for rep in reports:
        for image in rep["images"]:
            statuses.setdefault(Path(image["input"]).name, []).append(image["status"])
            if image["status"] == "skipped":
                assert image["error"] == "output exists" or image["error"].startswith("being made by another run (pid ")
    assert {name: sorted(s) for name, s in statuses.items()} == {f"img{i}.png": ["ok", "skipped"] for i in range(8)}
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [f"img{i}.png" for i in range(8)]  # no temps, no locks
    for i in range(8):
        with Image.open(tmp_path / "out" / f"img{i}.png") as im:
            assert im.size == (96, 64)
