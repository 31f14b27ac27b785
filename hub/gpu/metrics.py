"""The GPUs on the hub's Prometheus ``/hub/metrics``: claims held per device, servers waiting
in the queue per policy, and GPU-seconds used per course. Read from the claims table when
Prometheus scrapes (the table is the truth across hub restarts), not counted in memory."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import REGISTRY, Collector, CollectorRegistry

from hub.gpu.policy import KINDS

if TYPE_CHECKING:
    from hub.gpu.spawn import GpuDoor

EVER_SECONDS = 3600.0


class GpuCollector(Collector):
    def __init__(self, door: GpuDoor) -> None:
        self.door = door

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        claims = self.door.claims
        held = GaugeMetricFamily("onelab_gpu_claims", "Claims held on each GPU or MIG device.",
                                 labels=["device", "model"])
        waiting = GaugeMetricFamily("onelab_gpu_queue_length",
                                    "Learners' servers waiting for a GPU, per policy.",
                                    labels=["policy"])
        used = CounterMetricFamily("onelab_gpu_seconds", "GPU-seconds claimed, per course "
                                   "(a held claim counts up to now).", labels=["course"])
        if claims is not None:
            for device, holders in claims.by_device():
                held.add_metric([device.uuid, device.model or ""], len(holders))
            from hub.gpu.report import EVER

            per_course: Counter[str] = Counter()
            for (_user, course), hours in claims.usage(EVER).items():
                per_course[course or ""] += hours * EVER_SECONDS
            for course, seconds in sorted(per_course.items()):
                used.add_metric([course], seconds)
        queued = Counter(kind for _u, _s, kind in self.door.waiting)
        for kind in KINDS[1:]:
            waiting.add_metric([kind], queued.get(kind, 0))
        yield held
        yield waiting
        yield used


def register(door: GpuDoor, registry: CollectorRegistry = REGISTRY) -> GpuCollector:
    collector = GpuCollector(door)
    registry.register(collector)
    return collector
