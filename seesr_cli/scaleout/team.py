"""Many processes, one batch: `accelerate launch -m seesr_cli upscale ...` and `seesr upscale --devices 0,1`.

Every process plans the same batch (`batch.plan_batch` depends only on the arguments and the
files), takes its contiguous share (`batch.shard_jobs`, as accelerate's
`split_between_processes`) and loads the models once on its own device (accelerate's
`PartialState` joins the process group: NCCL on GPUs, gloo on the CPU, and makes the process's
GPU the current one, so `--device auto` / `cuda` lands on it). Seeds come from each image's
relative path, so 1 or N processes write the same bytes.

The processes talk through the key-value store every torch.distributed launch already has
(the TCPStore at MASTER_ADDR:MASTER_PORT), never through collectives: a process that finishes
early does not sit in a barrier, and one that dies cannot hang the others in one. Keys, under
`seesr/<attempt>/`:

    hello/<rank>   pid, host and plan fingerprint (every process must plan the same batch)
    result/<i>     the outcome of job i, written by the process that ran it
    count/<rank>   how many of its jobs are done (each result is written before the count moves)
    beat/<rank>    a counter its heartbeat thread bumps every few seconds
    done/<rank>    its end: interrupted, setup seconds, a fatal error

The main process (rank 0) draws the progress of all, waits for every `done/` key (a process
whose pid is gone, or whose heartbeat stopped, is reported as lost, with the images it did not
do), prints the one summary and carries the exit code. The others print nothing and exit 0 once
their report is handed over (torchrun stops every process as soon as one exits non-zero).
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta

from seesr_cli.batch import Job
from seesr_cli.errors import SeesrError, UsageError
from seesr_cli.scaleout.launch import env_int, launch_rank

START_TIMEOUT_S = 600  # joining the group and the hello round (imports, planning a large folder)
STORE_TIMEOUT_S = 60
BEAT_S = 5.0
LOST_AFTER_S = 120.0  # no heartbeat for this long: the process (on another machine) is lost
_POSIX = os.name == "posix"


@dataclass(frozen=True)
class Team:
    """This process's place in a multi-process run and its client of the launch's store."""

    rank: int
    world: int
    store: object  # torch.distributed.Store (a PrefixStore), for this thread
    connect: Callable[[], object]  # another client, for another thread
    single_machine: bool  # then every pid is a pid here

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def handshake(self, jobs: Sequence[Job]) -> list[dict]:
        """Say hello, wait for everyone's; refuse if the processes planned different batches."""
        me = {"pid": os.getpid(), "host": socket.gethostname(), "plan": plan_fingerprint(jobs), "jobs": len(jobs)}
        self.store.set(f"hello/{self.rank}", json.dumps(me))
        keys = [f"hello/{rank}" for rank in range(self.world)]
        try:
            self.store.wait(keys, timedelta(seconds=START_TIMEOUT_S))
        except RuntimeError as exc:  # torch's DistStoreError: a timeout
            raise SeesrError(f"not every process started within {START_TIMEOUT_S} s ({exc})") from exc
        hellos = [json.loads(self.store.get(key)) for key in keys]
        odd = [rank for rank, hello in enumerate(hellos) if hello["plan"] != hellos[0]["plan"]]
        if odd:
            raise UsageError(f"process {odd[0]} on {hellos[odd[0]]['host']} planned another batch "
                             f"({hellos[odd[0]]['jobs']} inputs, the main process {hellos[0]['jobs']}): "
                             "every process must see the same inputs and outputs (a shared file system)")
        return hellos

    def leave(self) -> None:
        """Close the process group once this process's part is over (NCCL warns at exit otherwise)."""
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()


def plan_fingerprint(jobs: Sequence[Job]) -> str:
    """What every process must agree on. Not the skips: on storage that is not shared, each
    machine sees only its own earlier results, and only its own jobs matter to it."""
    rows = [[str(j.input), None if j.output is None else str(j.output), j.seed] for j in jobs]
    return hashlib.sha256(json.dumps(rows).encode()).hexdigest()


def join_team(device: str = "auto") -> Team | None:
    """Join the launch's process group when started as one of several processes; else None."""
    world = launch_rank()[1]
    if world <= 1:
        return None
    import torch
    import torch.distributed as dist
    from accelerate import PartialState

    gpu = torch.cuda.is_available() and device not in ("cpu", "mps")
    state = PartialState(cpu=not gpu, timeout=timedelta(seconds=START_TIMEOUT_S))
    if state.num_processes != world:
        raise SeesrError(f"launched as {world} processes, but the process group has {state.num_processes}")
    addr, port = os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"])
    prefix = f"seesr/{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}/"  # a restarted attempt starts afresh

    def connect():
        client = dist.TCPStore(addr, port, is_master=False, timeout=timedelta(seconds=STORE_TIMEOUT_S),
                               wait_for_workers=False)
        return dist.PrefixStore(prefix, client)

    single = env_int("LOCAL_WORLD_SIZE", 0) == world
    return Team(state.process_index, world, connect(), connect, single)


class Heartbeat:
    """A thread that bumps beat/<rank> while this process lives (loading models, long steps)."""

    def __init__(self, team: Team):
        self.team, self._stop = team, threading.Event()
        self._thread = threading.Thread(target=self._run, name="seesr-heartbeat", daemon=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=2)

    def _run(self) -> None:
        try:
            store = self.team.connect()
            while True:
                store.add(f"beat/{self.team.rank}", 1)
                if self._stop.wait(BEAT_S):
                    return
        except (RuntimeError, OSError):  # the store is gone with the main process: nobody listens
            return


def pid_alive(pid: int) -> bool:
    """Whether process `pid` on this machine still runs (a zombie does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


class Liveness:
    """Which of the other processes are gone: a dead pid (one machine) or a silent heartbeat."""

    def __init__(self, team: Team, hellos: Sequence[dict], *, clock: Callable[[], float] = time.monotonic,
                 lost_after: float = LOST_AFTER_S):
        self.team, self.hellos, self.clock, self.lost_after = team, hellos, clock, lost_after
        self._beats: dict[int, tuple[int, float]] = {}

    def lost(self, rank: int) -> str | None:
        pid = self.hellos[rank]["pid"]
        if self.team.single_machine and _POSIX and not pid_alive(pid):
            return f"its process (pid {pid}) ended"
        beat, now = self.team.store.add(f"beat/{rank}", 0), self.clock()
        last = self._beats.get(rank)
        if last is None or last[0] != beat:
            self._beats[rank] = (beat, now)
            return None
        if now - last[1] > self.lost_after:
            return f"no sign of life for {self.lost_after:.0f} s"
        return None
