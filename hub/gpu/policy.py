"""How one course's learners get GPUs: the ``gpu.*`` settings with the course's own ``gpu:``
block (course.yml) over them, resolved once into a :class:`Policy` the claims use.

- ``exclusive``: one slot per whole GPU: a learner has it alone.
- ``shared``: ``per_device`` slots per whole GPU, each with a memory cap
  (``memory_fraction``, handed to the container as ONELAB_GPU_MEMORY_FRACTION).
- ``mig``: one slot per MIG instance.
- ``none``: CPU only; no slots anywhere.

A GPU in MIG mode is never handed out whole or shared (its instances are); a device that holds
claims of one policy takes none of another (:mod:`hub.gpu.claims` checks that)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from hub.gpu.inventory import Device, Inventory
from onelab.course import CourseGpu
from onelab.settings import GpuSettings

KINDS = ("none", "exclusive", "shared", "mig")


@dataclass(frozen=True)
class Policy:
    """A resolved policy. ``weekly_hours`` 0 is unlimited."""

    kind: str = "none"
    per_device: int = 4
    memory_fraction: float | None = None
    weekly_hours: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"GPU policy must be one of {', '.join(KINDS)}, not {self.kind!r}")
        if self.per_device < 1:
            raise ValueError("per_device must be at least 1")

    @classmethod
    def of(cls, gpu: GpuSettings, course: CourseGpu | None = None) -> Policy:
        """The policy of a course (``course``: its course.yml ``gpu:`` block), or the
        default one (None)."""
        course = course or CourseGpu()
        kind = course.policy or gpu.default_policy
        per_device = course.per_device or gpu.shared_per_device
        weekly = course.weekly_hours if course.weekly_hours is not None else gpu.weekly_gpu_hours
        fraction = gpu.memory_fraction(per_device) if kind == "shared" else None
        return cls(kind, per_device if kind == "shared" else 1, fraction, float(weekly))

    def devices(self, inventory: Inventory) -> list[Device]:
        """The devices this policy hands out, in inventory order."""
        if self.kind in ("exclusive", "shared"):
            return inventory.whole_gpus()
        if self.kind == "mig":
            return inventory.mig_instances()
        return []

    @property
    def slots(self) -> int:
        """Slots on each of :meth:`devices`: learners one device takes."""
        return self.per_device if self.kind == "shared" else 1

    def capacity(self, inventory: Inventory) -> int:
        return len(self.devices(inventory)) * self.slots


def week_start(now: datetime) -> datetime:
    """Monday 00:00 of the week holding ``now`` (naive UTC, as the claims keep times), in the
    host's time zone (a Korean classroom's week starts at Monday midnight in Seoul), back in
    naive UTC."""
    local = now.replace(tzinfo=UTC).astimezone()
    monday = (local - timedelta(days=local.weekday())).replace(hour=0, minute=0, second=0,
                                                                microsecond=0)
    return monday.astimezone(UTC).replace(tzinfo=None)
