"""Between the driver and its workers: their progress in, the driver's "stop" out.

A Ray actor that holds events until the driver drains them, and the stop flag the workers look
at between steps. (Not Ray's own task cancel: a job that finishes as it is cancelled would come
back as cancelled though its result is written, and the report would miss it.) Apart from the
worker module so that its process does not import torch.
"""

from __future__ import annotations

import ray


@ray.remote(num_cpus=0)
class Mailbox:
    def __init__(self):
        self.events: list = []  # (kind, job key or None, payload)
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
