"""Claims: an image is claimed before it is computed, so runs sharing a folder compute it once.

A claim is a lock file beside the output, `.NAME.seesr-lock`, created with O_EXCL and holding
the claimant's pid, host, start time and a random token. It goes when the job ends (done,
failed or stopped). One left by a run that died is taken over: when its pid is not alive on
this host, or when it has not been refreshed for `STALE_S` (a live claim is touched every
`REFRESH_S`; that also covers other hosts on a shared folder and pids reused after a reboot).
Only the holder of a claim removes temporary files beside its output, and only those whose
writer is dead (io.atomic names them `.NAME.tmp-PID-XXXX`).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path

STALE_S = 600.0
REFRESH_S = 60.0
_UNWRITTEN_S = 30.0  # a claim whose content is still unreadable this long after creation is a crash's
_HOST = socket.gethostname()
_TEMP = re.compile(r"\.tmp-(?:(\d+)-)?[0-9a-f]+$")


@dataclass(frozen=True)
class Holder:
    """Who holds a claim (as written in its lock file)."""

    pid: int
    host: str
    started: float
    token: str

    def describe(self) -> str:
        where = "" if self.host == _HOST else f" on {self.host}"
        return f"being made by another run (pid {self.pid}{where})"


LOCK_SUFFIX = ".seesr-lock"


def lock_path(output: Path) -> Path:
    return output.with_name(f".{output.name}{LOCK_SUFFIX}")


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid runs on this host (True when it cannot be told)."""
    if pid <= 0:
        return False
    if os.name == "nt":  # os.kill would terminate it there: only the claim's age counts
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: alive, another user's
        return True
    return True


def _read(lock: Path) -> Holder | None:
    try:
        data = json.loads(lock.read_text(encoding="utf-8"))
        return Holder(int(data["pid"]), str(data["host"]), float(data["started"]), str(data["token"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _age(path: Path) -> float:
    try:
        return time.time() - path.stat().st_mtime
    except OSError:
        return 0.0


def _stale(lock: Path, holder: Holder | None) -> bool:
    age = _age(lock)
    if holder is None:
        return age > _UNWRITTEN_S
    if age > STALE_S:
        return True
    return holder.host == _HOST and (holder.pid == os.getpid() or not pid_alive(holder.pid))


class Claim:
    """A claim this process holds; `release()` when the job ends."""

    def __init__(self, lock: Path, holder: Holder, made: list[Path]):
        self.lock, self.holder = lock, holder
        self.made = made  # folders made for the lock: removed again if the job left them empty
        _refresher.add(self)

    def release(self) -> None:
        _refresher.discard(self)
        if _read(self.lock) == self.holder:  # never remove a claim that was taken over
            with contextlib.suppress(OSError):
                self.lock.unlink()
        for folder in self.made:  # deepest first; one holding anything stays
            try:
                folder.rmdir()
            except OSError:
                break


def claim(output: Path) -> Claim | Holder | None:
    """Claim `output`: our Claim, the live Holder of another run's claim, or None when no lock
    file can be made there (a read-only folder: then the write fails and says why)."""
    lock = lock_path(output)
    made = [p for p in (lock.parent, *lock.parent.parents) if not os.path.lexists(p)]  # deepest first
    for _ in range(5):
        try:
            lock.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            holder = _read(lock)
            if not _stale(lock, holder):
                return holder or Holder(0, "?", 0.0, "")
            _take_over(lock, holder)
            continue
        except OSError:
            return None
        mine = Holder(os.getpid(), _HOST, time.time(), secrets.token_hex(8))
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump({"pid": mine.pid, "host": mine.host, "started": mine.started, "token": mine.token}, handle)
        return Claim(lock, mine, made)
    return _read(lock)


def _take_over(lock: Path, judged: Holder | None) -> None:
    """Move a stale claim aside (one mover wins); put it back if it turns out to be a fresh one."""
    aside = lock.with_name(f"{lock.name}.stale-{os.getpid()}-{secrets.token_hex(4)}")
    try:
        os.rename(lock, aside)
    except OSError:  # another successor moved it first
        return
    if _read(aside) != judged:  # a successor's fresh claim was made in between: give it back
        with contextlib.suppress(OSError):
            os.link(aside, lock)
    with contextlib.suppress(OSError):
        aside.unlink()


def dead_temps(output: Path, names: list[str]) -> list[Path]:
    """Of the temp files beside `output` (`names`), those whose writer is dead: its pid is not
    alive here, or (no pid in the name, or no claim refreshed) untouched for `STALE_S`."""
    dead = []
    for name in names:
        found = _TEMP.search(name)
        if found is None:
            continue
        path = output.with_name(name)
        pid = int(found.group(1)) if found.group(1) else None
        if _age(path) > STALE_S or (pid is not None and pid != os.getpid() and not pid_alive(pid)):
            dead.append(path)
    return dead


class _Refresher:
    """Touches every held claim every REFRESH_S, so live claims never look stale."""

    def __init__(self):
        self._held: set[Claim] = set()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def add(self, held: Claim) -> None:
        with self._lock:
            self._held.add(held)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="seesr-claims", daemon=True)
                self._thread.start()

    def discard(self, held: Claim) -> None:
        with self._lock:
            self._held.discard(held)

    def _run(self) -> None:
        while True:
            time.sleep(REFRESH_S)
            with self._lock:
                locks = [h.lock for h in self._held]
            for lock in locks:
                with contextlib.suppress(OSError):
                    os.utime(lock)


_refresher = _Refresher()
