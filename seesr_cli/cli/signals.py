"""Ctrl-C and SIGTERM during a batch: the first stops cleanly at the next step, a later one at once."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

_REPEAT_S = 1.0  # one Ctrl-C can arrive twice (terminal + launcher): count it once


@contextmanager
def cancel_on_signals(*, announce: bool = True, fd: int = 2) -> Iterator[Callable[[], bool]]:
    """First Ctrl-C or SIGTERM: stop cleanly at the next step (the pipeline polls the flag);
    another one over a second later: at once. `fd`: where the announcement goes (the terminal)."""
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
                os.write(fd, b"\nstopping after the current step (Ctrl-C again to stop now)\n")  # signal-safe

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield flag.is_set
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
