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
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta

from seesr_cli.batch import FAILED, BatchReport, Job, JobResult, WorkDone, run_jobs, shard_jobs
from seesr_cli.errors import SeesrError, UsageError
from seesr_cli.progress import error_line

START_TIMEOUT_S = 600  # joining the group and the hello round (imports, planning a large folder)
STORE_TIMEOUT_S = 60
BEAT_S = 5.0
LOST_AFTER_S = 120.0  # no heartbeat for this long: the process (on another machine) is lost
POLL_S = 0.5  # how often the main process looks at the others' progress
GRACE_S = 30.0  # `--devices`: how long the others may outlive the main process
_REPEAT_S = 1.0  # one Ctrl-C can arrive twice (terminal + launcher): count it once
_POSIX = os.name == "posix"
_OUR_CODES = (0, 1, 2, 130)


# ----------------------------------------------------------------------------- signals


@contextmanager
def cancel_on_signals(*, announce: bool = True) -> Iterator[Callable[[], bool]]:
    """First Ctrl-C or SIGTERM (torchrun's and `--devices`' way to stop workers): stop cleanly at
    the next step (the pipeline polls the flag); another one over a second later: at once."""
    flag = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield flag.is_set
        return
    first: list[float] = []

    def handler(signum, frame) -> None:
        if first and time.monotonic() - first[0] > _REPEAT_S:
            raise KeyboardInterrupt
        if not first:
            first.append(time.monotonic())
            flag.set()
            if announce:
                os.write(2, b"\nstopping after the current step (Ctrl-C again to stop now)\n")  # signal-safe

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield flag.is_set
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


# ----------------------------------------------------------------------------- where this process stands


def _env_int(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        return default


def launch_rank() -> tuple[int, int]:
    """(rank, world size) as accelerate launch, torchrun or `--devices` set them; (0, 1) alone."""
    return _env_int("RANK", 0), _env_int("WORLD_SIZE", 1)


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


def relaunch_args(ctx, *, device: str, drop: Sequence[str] = ("devices",)) -> list[str]:
    """The options and arguments of `ctx`'s command again, with --device set and `drop` left out."""
    options, arguments = [], []
    for param in ctx.command.params:
        value = device if param.name == "device" else ctx.params.get(param.name)
        if param.name in drop or value is None:
            continue
        if param.param_type_name == "argument":
            arguments += [str(v) for v in value]
        elif getattr(param, "is_flag", False):
            options += param.opts[:1] if value else param.secondary_opts[:1]
        else:
            long = next((o for o in param.opts if o.startswith("--")), param.opts[0])
            options.append(f"{long}={value}")  # `=`: a value may start with "-"
    return [*options, "--", *arguments]


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


def launch_devices(spec: str, ctx, *, say: Callable[[str], None]) -> int:
    """`seesr upscale --devices ...`: run the same command as one process per device and wait.

    Ctrl-C and SIGTERM are passed on to every process (they run in their own session, so the
    terminal's Ctrl-C reaches them once). Exit code: the main process's, which covers all."""
    if launch_rank()[1] > 1:
        raise UsageError("--devices starts its own processes: do not combine it with accelerate launch or torchrun")
    device = ctx.params.get("device") or "auto"
    gpus = None
    if not all(item.strip().lower() == "cpu" for item in spec.split(",")):
        import torch

        gpus = torch.cuda.device_count()
    plan = parse_devices(spec, device, gpus=gpus, visible=os.environ.get("CUDA_VISIBLE_DEVICES"))
    root = ["--debug"] if ctx.parent is not None and ctx.parent.params.get("debug") else []
    argv = [sys.executable, "-m", "seesr_cli", *root, ctx.info_name, *relaunch_args(ctx, device=plan.device)]
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


# ----------------------------------------------------------------------------- the team of processes


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
        except Exception as exc:  # torch's DistStoreError: a timeout
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

    single = _env_int("LOCAL_WORLD_SIZE", 0) == world
    return Team(state.process_index, world, connect(), connect, single)


class _Heartbeat:
    """A thread that bumps beat/<rank> while this process lives (loading models, long steps)."""

    def __init__(self, team: Team):
        self.team, self._stop = team, threading.Event()
        self._thread = threading.Thread(target=self._run, name="seesr-heartbeat", daemon=True)

    def __enter__(self) -> _Heartbeat:
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
        except Exception:  # noqa: BLE001 - the store is gone with the main process: nobody listens
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


# ----------------------------------------------------------------------------- one batch, shared


def _encode(result: JobResult) -> str:
    return json.dumps({"status": result.status, "error": result.error, "seconds": result.seconds,
                       "prompts": list(result.prompts), "notes": list(result.notes)})


def _decode(data: bytes, job: Job) -> JobResult:
    d = json.loads(data)
    return JobResult(job, d["status"], d["error"], d["seconds"], tuple(d["prompts"]), tuple(d["notes"]))


class SoloBatch:
    """One process: the whole batch, drawn as it runs."""

    def __init__(self, jobs: Sequence[Job], view):
        self.jobs, self.view = list(jobs), view
        self.pipeline_event = view.pipeline_event

    def run(self, work: Callable[[Job], WorkDone], should_cancel: Callable[[], bool]) -> BatchReport:
        return run_jobs(self.jobs, work, observer=self.view, should_cancel=should_cancel)


class _SharedBatch:
    def __init__(self, jobs: Sequence[Job], team: Team, view):
        self.jobs, self.team, self.view = list(jobs), team, view
        self.shares = [shard_jobs(range(len(self.jobs)), rank, team.world) for rank in range(team.world)]
        self.mine = self.shares[team.rank]


class HelperBatch(_SharedBatch):
    """A process other than the main one: runs its share silently and hands every result over."""

    lost_main = False

    def pipeline_event(self, event) -> None:
        pass

    def job_started(self, job: Job, index: int, total: int) -> None:
        pass

    def job_finished(self, result: JobResult, index: int, total: int) -> None:
        self._send(lambda store: (store.set(f"result/{self.mine[index]}", _encode(result)),
                                  store.add(f"count/{self.team.rank}", 1)))

    def run(self, work: Callable[[Job], WorkDone], should_cancel: Callable[[], bool]) -> None:
        end: dict = {"interrupted": False, "setup": 0.0, "fatal": None}
        stopped_now = False
        with _Heartbeat(self.team):
            try:
                self.team.handshake(self.jobs)
                report = run_jobs([self.jobs[i] for i in self.mine], work, observer=self, should_cancel=should_cancel)
                end.update(interrupted=report.interrupted, setup=report.setup_seconds)
            except KeyboardInterrupt:
                end["interrupted"] = stopped_now = True
            except Exception as exc:  # noqa: BLE001 - the main process reports it, with the images left
                end["fatal"] = str(exc) if isinstance(exc, SeesrError) else f"{type(exc).__name__}: {exc}"
            self._send(lambda store: store.set(f"done/{self.team.rank}", json.dumps(end)))
        self.team.leave()
        if self.lost_main:
            error_line(self.view.console, f"process {self.team.rank}",
                       "lost the main process; finished images are kept (re-run to resume)")
            raise SystemExit(1)
        if stopped_now:
            raise SystemExit(130)  # quietly: the main process says how to resume

    def _send(self, action: Callable[[object], object]) -> None:
        if self.lost_main:
            return
        try:
            action(self.team.store)
        except Exception:  # noqa: BLE001 - the main process is gone; the work itself is still saved
            self.lost_main = True


class MainBatch(_SharedBatch):
    """The main process: runs its share, draws everyone's progress, waits for all, combines."""

    def __init__(self, jobs: Sequence[Job], team: Team, view):
        super().__init__(jobs, team, view)
        self.results: dict[int, JobResult] = {}
        self._shown = 0
        self._seen = [0] * team.world
        self._next_poll = 0.0

    def job_started(self, job: Job, index: int, total: int) -> None:
        self.view.job_started(job, self._shown, len(self.jobs))
        self._poll()

    def job_finished(self, result: JobResult, index: int, total: int) -> None:
        self.results[self.mine[index]] = result
        self._show(result)

    def pipeline_event(self, event) -> None:
        self.view.pipeline_event(event)
        self._poll()

    def run(self, work: Callable[[Job], WorkDone], should_cancel: Callable[[], bool]) -> BatchReport:
        hellos = self.team.handshake(self.jobs)
        start = time.perf_counter()
        try:
            own = run_jobs([self.jobs[i] for i in self.mine], work, observer=self, should_cancel=should_cancel)
        except KeyboardInterrupt:
            raise
        except BaseException:
            self._wait(Liveness(self.team, hellos))  # the others end alike; let them hand over first
            raise
        ends = self._wait(Liveness(self.team, hellos))
        self.team.leave()
        return self._combine(own, ends, time.perf_counter() - start)

    def _show(self, result: JobResult) -> None:
        self.view.job_finished(result, self._shown, len(self.jobs))
        self._shown += 1

    def _poll(self, force: bool = False) -> None:
        """Show the results the others finished since the last look."""
        if not force and time.monotonic() < self._next_poll:
            return
        self._next_poll = time.monotonic() + POLL_S
        for rank in range(1, self.team.world):
            count = self.team.store.add(f"count/{rank}", 0)
            for index in self.shares[rank][self._seen[rank]:count]:
                result = _decode(self.team.store.get(f"result/{index}"), self.jobs[index])
                self.results[index] = result
                self._show(result)
            self._seen[rank] = max(self._seen[rank], count)

    def _end(self, rank: int) -> dict | None:
        key = f"done/{rank}"
        return json.loads(self.team.store.get(key)) if self.team.store.check([key]) else None

    def _wait(self, liveness: Liveness) -> dict[int, dict]:
        """Every other process's end record; {"lost": why} for one that is gone."""
        ends: dict[int, dict] = {}
        pending = list(range(1, self.team.world))
        told = False
        while pending:
            self._poll(force=True)
            for rank in list(pending):
                end = self._end(rank)
                if end is None:
                    why = liveness.lost(rank)
                    end = None if why is None else (self._end(rank) or {"lost": why})  # done just now?
                if end is not None:
                    ends[rank] = end
                    pending.remove(rank)
            if pending:
                if not told:
                    self.view.status(f"waiting for {len(pending)} other process(es)")
                    told = True
                time.sleep(POLL_S / 2)
        self._poll(force=True)
        return ends

    def _combine(self, own: BatchReport, ends: dict[int, dict], seconds: float) -> BatchReport:
        report = BatchReport(interrupted=own.interrupted, seconds=seconds, setup_seconds=own.setup_seconds)
        for rank, end in sorted(ends.items()):
            report.interrupted |= bool(end.get("interrupted"))
            report.setup_seconds = max(report.setup_seconds, float(end.get("setup") or 0.0))
            problem = end.get("fatal") or end.get("lost")
            if problem:
                missing = [i for i in self.shares[rank] if i not in self.results]
                left = f"{len(missing)} of its {len(self.shares[rank])} images not done (re-run to resume)"
                error_line(self.view.console, f"process {rank}", f"{problem}; {left}")
                for i in missing:
                    self.results[i] = JobResult(self.jobs[i], FAILED, f"not done: process {rank} stopped ({problem})")
        report.results = [self.results[i] for i in sorted(self.results)]
        return report


def share_batch(jobs: Sequence[Job], team: Team | None, view) -> SoloBatch | MainBatch | HelperBatch:
    """The batch as this process runs it: all of it alone, else its share (see the module doc)."""
    if team is None:
        return SoloBatch(jobs, view)
    return MainBatch(jobs, team, view) if team.is_main else HelperBatch(jobs, team, view)
