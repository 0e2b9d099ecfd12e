"""`seesr upscale --devices 0,1`: the same command again as one process per device, here.

Each process gets what torchrun would set (RANK, WORLD_SIZE, MASTER_ADDR/PORT,
CUDA_VISIBLE_DEVICES) and joins the team (`team`); Ctrl-C and SIGTERM are passed on to
every process, and the main process's exit code is the run's.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from seesr_cli.errors import UsageError

GRACE_S = 30.0  # how long the others may outlive the main process
_POSIX = os.name == "posix"
_OUR_CODES = (0, 1, 2, 130)


def env_int(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        return default


def launch_rank() -> tuple[int, int]:
    """(rank, world size) as accelerate launch, torchrun or `--devices` set them; (0, 1) alone."""
    return env_int("RANK", 0), env_int("WORLD_SIZE", 1)


def is_main_process() -> bool:
    return launch_rank()[0] == 0


# ----------------------------------------------------------------------------- --devices: N processes here


@dataclass(frozen=True)
class DevicePlan:
    count: int
    device: str  # the children's --device
    visible: str | None = None  # their CUDA_VISIBLE_DEVICES; None: CPU processes


def parse_devices(spec: str, device: str = "auto", *, gpus: int | None = None,
                  visible: str | None = None) -> DevicePlan:
    """`0,1,2,3` (GPU numbers as `cuda:N` counts them) or `cpu,cpu`; checked against --device."""
    items = [item.strip().lower().removeprefix("cuda:") for item in spec.split(",") if item.strip()]
    if items and all(item == "cpu" for item in items):
        if device not in ("auto", "cpu"):
            raise UsageError(f"--devices {spec} runs on the CPU, but --device is {device}")
        return DevicePlan(len(items), "cpu")
    if not items or not all(item.isdigit() for item in items):
        raise UsageError(f"--devices {spec}: give GPU numbers (0,1,2,3) or cpu,cpu, not a mix")
    if len(set(items)) != len(items):
        raise UsageError(f"--devices {spec}: name each GPU once")
    if device not in ("auto", "cuda"):
        raise UsageError(f"--devices {spec} runs on GPUs, but --device is {device}")
    if gpus is not None and max(map(int, items)) >= gpus:
        raise UsageError(f"--devices {spec}: only {gpus} CUDA device(s) here")
    names = visible.split(",") if visible else None  # keep cuda:N meaning what it means here
    ids = [names[int(i)] if names and int(i) < len(names) else i for i in items]
    return DevicePlan(len(ids), device, ",".join(ids))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _child_env(rank: int, plan: DevicePlan, port: int) -> dict[str, str]:
    """What torchrun would set for rank `rank` of `plan.count` on one machine."""
    env = dict(os.environ, RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(plan.count),
               LOCAL_WORLD_SIZE=str(plan.count), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    if plan.visible is not None:
        env["CUDA_VISIBLE_DEVICES"] = plan.visible  # rank r uses cuda:r of these (PartialState)
    else:
        env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // plan.count)))
    return env


def launch_devices(spec: str, device: str, command: Callable[[str], list[str]], *,
                   say: Callable[[str], None]) -> int:
    """Run `command(child_device)` (the seesr arguments) as one process per device and wait.

    Ctrl-C and SIGTERM are passed on to every process (they run in their own session, so the
    terminal's Ctrl-C reaches them once). Exit code: the main process's, which covers all."""
    if launch_rank()[1] > 1:
        raise UsageError("--devices starts its own processes: do not combine it with accelerate launch or torchrun")
    gpus = None
    if not all(item.strip().lower() == "cpu" for item in spec.split(",")):
        import torch

        gpus = torch.cuda.device_count()
    plan = parse_devices(spec, device, gpus=gpus, visible=os.environ.get("CUDA_VISIBLE_DEVICES"))
    argv = [sys.executable, "-m", "seesr_cli", *command(plan.device)]
    port = _free_port()
    procs: list[subprocess.Popen] = []
    with _forward_signals(procs) as signals:
        try:
            for rank in range(plan.count):
                procs.append(subprocess.Popen(argv, env=_child_env(rank, plan, port), start_new_session=_POSIX))
        except OSError:
            for proc in procs:
                proc.kill()
            raise
        codes = _wait(procs, say)
    return combined_exit(codes, interrupted=bool(signals))


@contextmanager
def _forward_signals(procs: list[subprocess.Popen]) -> Iterator[list[int]]:
    received: list[int] = []

    def handler(signum, frame) -> None:
        received.append(signum)
        if _POSIX:  # elsewhere the console delivers Ctrl-C to every process itself
            for proc in procs:
                if proc.returncode is None:
                    try:
                        proc.send_signal(signum)
                    except OSError:
                        pass

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield received
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _wait(procs: list[subprocess.Popen], say: Callable[[str], None]) -> list[int]:
    """Every exit code. If the main process ends first, the others get GRACE_S, then are stopped."""
    ended: float | None = None
    while True:
        codes = [proc.poll() for proc in procs]
        if None not in codes:
            return codes
        if codes[0] is not None and ended is None:
            ended = time.monotonic()
            if codes[0] not in _OUR_CODES:  # it crashed: nobody will report the others
                say(f"error: the main process ended with code {codes[0]}; stopping the others (re-run to resume)")
                for proc in procs[1:]:
                    if proc.poll() is None:
                        _stop_softly(proc)
        elif ended is not None and time.monotonic() - ended > GRACE_S:
            for proc in procs[1:]:
                if proc.poll() is None:
                    proc.kill()
        time.sleep(0.1)


def _stop_softly(proc: subprocess.Popen) -> None:
    """As Ctrl-C: at its next step (Windows has no SIGINT for another process)."""
    if _POSIX:
        proc.send_signal(signal.SIGINT)
    else:
        proc.terminate()


def combined_exit(codes: Sequence[int], *, interrupted: bool = False) -> int:
    """The main process's code (it reports for all) unless it crashed or another one did."""
    main = codes[0]
    if main not in _OUR_CODES:
        return 130 if interrupted else 1
    if main == 0 and any(code not in (0, 130) for code in codes[1:]):
        return 1
    return main
