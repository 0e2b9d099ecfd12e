"""Between the driver and its workers: their progress in, the driver's "stop" out.

A Ray actor that holds events until the driver drains them, and the stop flag the workers look
at between steps. (Not Ray's own task cancel: a job that finishes as it is cancelled would come
back as cancelled though its result is written, and the report would miss it.) Payloads travel
pickled (`wrap` / `unwrap`): the mailbox never unpickles our classes, so its process never imports
torch (it did, on the first progress event, and every worker's next stop check waited seconds).
"""

from __future__ import annotations

import pickle
from typing import Any

import ray


def wrap(kind: str, key: int | None, payload: Any) -> tuple[str, int | None, bytes]:
    """An event for the mailbox: (kind, job key or None, the payload pickled)."""
    return kind, key, pickle.dumps(payload)


def unwrap(event: tuple[str, int | None, bytes]) -> tuple[str, int | None, Any]:
    kind, key, data = event
    return kind, key, pickle.loads(data)  # from our own workers, as everything Ray carries


@ray.remote(num_cpus=0)
class Mailbox:
    def __init__(self):
        self.events: list = []  # wrapped events
        self.stopping = False

    def put(self, event) -> None:
        self.events.append(event)

    def drain(self) -> list:
        events, self.events = self.events, []
        return events

    def stop(self) -> None:
        self.stopping = True

    def stopped(self) -> bool:
        return self.stopping
