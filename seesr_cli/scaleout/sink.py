"""The workers' progress on its way to the driver: a Ray actor holding events until the driver
drains them. Apart from the worker module so that its process does not import torch."""

from __future__ import annotations

import ray


@ray.remote(num_cpus=0)
class ProgressSink:
    """Events from every worker and node setup: (kind, job key or None, payload)."""

    def __init__(self):
        self.events: list = []

    def put(self, event) -> None:
        self.events.append(event)

    def drain(self) -> list:
        events, self.events = self.events, []
        return events
