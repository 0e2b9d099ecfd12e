"""Ctrl-C and SIGTERM during a batch: the first stops cleanly at the next safe point, a later one at once.

Python runs signal handlers in the main thread between bytecodes, so a handler waits while
the main thread is inside a long call into C (loading a checkpoint, one big convolution). The
C-level handler also writes the signal's number to a socket (`signal.set_wakeup_fd`); a small
thread reads it at once, sets the stop flag and says so: the first signal is answered within
a second at every stage. The run then stops at the next safe point: the next step of a stage,
the next chunk of a checksum (`stop_verifying`), the end of loading (`check_after`); a load in
progress is not abandoned (torch cannot be left mid-call in a thread at exit).
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from typing import TypeVar

from seesr_cli.errors import Cancelled

T = TypeVar("T")
E = TypeVar("E")
_REPEAT_S = 1.0  # one Ctrl-C can arrive twice (terminal + launcher): count it once
_SIGNALS = (signal.SIGINT, signal.SIGTERM)
STOPPING = "stopping after the current step; the image in progress is not written (Ctrl-C again to stop now)"


class _Stop:
    """The stop state shared by the Python-level handler and the wakeup-socket reader."""

    def __init__(self, announce: bool, say: Callable[[str], None] | None):
        self.flag = threading.Event()
        self.announce, self.say = announce, say
        self.first_at: float | None = None
        self.handled = 0  # Python-level handler calls
        self._once = threading.Lock()

    def first(self) -> None:
        """The first signal: set the flag and say so (once, whoever sees it first)."""
        if not self._once.acquire(blocking=False):
            return
        self.first_at = time.monotonic()
        self.flag.set()
        if not self.announce:
            return
        if self.say is not None:
            try:
                self.say(STOPPING)
                return
            except Exception:  # noqa: BLE001, S110 - the console is going away: fall back to a raw write
                pass
        with suppress(OSError):
            os.write(2, f"\n{STOPPING}\n".encode())

    def handler(self, signum, frame) -> None:
        self.handled += 1
        if self.handled == 1:  # may run late (after a long C call): still the first signal
            self.first()
            return
        if self.first_at is not None and time.monotonic() - self.first_at > _REPEAT_S:
            raise KeyboardInterrupt


def _watch(sock: socket.socket, stop: _Stop) -> None:
    """Read signal numbers from the wakeup socket the moment they arrive (the main thread may be busy)."""
    wanted = {int(s) for s in _SIGNALS}
    while True:
        try:
            data = sock.recv(64)
        except OSError:
            return
        if not data:
            return
        if any(byte in wanted for byte in data):
            stop.first()


@contextmanager
def cancel_on_signals(*, announce: bool = True, say: Callable[[str], None] | None = None
                      ) -> Iterator[Callable[[], bool]]:
    """First Ctrl-C or SIGTERM (torchrun's and `--devices`' way to stop workers): acknowledged at
    once (`say`, else a raw line on stderr) and the run stops at the next safe point (the pipeline
    and the batch poll the flag); another one over a second later: at once."""
    stop = _Stop(announce, say)
    if threading.current_thread() is not threading.main_thread():
        yield stop.flag.is_set
        return
    previous = {sig: signal.signal(sig, stop.handler) for sig in _SIGNALS}
    reader, writer = socket.socketpair()
    writer.setblocking(False)
    old_fd = signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
    watcher = threading.Thread(target=_watch, args=(reader, stop), name="seesr-signals", daemon=True)
    watcher.start()
    try:
        yield stop.flag.is_set
    finally:
        signal.set_wakeup_fd(old_fd)
        for sig, old in previous.items():
            signal.signal(sig, old)
        with suppress(OSError):
            reader.shutdown(socket.SHUT_RDWR)
        writer.close()
        watcher.join(1.0)
        reader.close()


def check_after(load: Callable[[], T], should_cancel: Callable[[], bool]) -> T:
    """`load()`, then stop if a signal came meanwhile: the image waiting for the models is not started."""
    value = load()
    if should_cancel():
        raise Cancelled("stopped while loading the models")
    return value


def stop_verifying(events: Callable[[E], None], should_cancel: Callable[[], bool]) -> Callable[[E], None]:
    """Forward weights events; once stopped, end a checksum run at its next chunk (hashing 14 GB
    takes minutes). Downloads are left alone: their events come from huggingface_hub's threads."""
    def forward(event: E) -> None:
        events(event)
        if getattr(event, "stage", "") == "verify" and should_cancel():
            raise Cancelled("stopped while verifying the weights")
    return forward
