"""How a OneLab container starts, as data: one `Policy` per container, whoever starts it.

Learner servers (through DockerSpawner's settings), grading sandboxes, regression runs, the
courses' grading services and helper containers are all described here and started through
the one door (onelab/dockerdoor.py: `run_args`, `run_kwargs`, `spawner_settings`). The
lockdown every OneLab container gets (no capabilities but those named, no new privileges,
memory without extra swap, a pids limit, never the Docker socket) is written there once, so
a new kind of container, a GPU device or a placement constraint is one change in one place.
This module imports nothing of Docker's: it is the ground floor.
"""

from __future__ import annotations

from dataclasses import dataclass

ROLE_LABEL = "onelab.role"


@dataclass(frozen=True)
class Mount:
    """A named volume or a host folder inside the container."""

    source: str  # volume name (may hold DockerSpawner's {username}) or absolute host path
    target: str
    read_only: bool = True


@dataclass(frozen=True)
class Policy:
    """Everything that decides what a container may do and how long it lives."""

    role: str  # learner | grader | regress | formgrader | volume-copy | ...
    image: str
    name: str = ""  # empty: Docker's (or DockerSpawner's) choice
    command: tuple[str, ...] = ()
    entrypoint: tuple[str, ...] | None = None  # None: the image's
    user: str = "1000:1000"
    environment: tuple[tuple[str, str], ...] = ()
    workdir: str | None = None
    # limits
    memory: str = "1g"  # and no swap beyond it
    cpus: float = 1.0
    cpuset: str = ""  # e.g. "1": pinned to a core (a hard limit without quota throttling)
    pids: int = 128
    gpus: str = "none"  # none | all | N | device=I[,J]
    # file system and network
    read_only_root: bool = True
    tmpfs: tuple[tuple[str, str], ...] = ()  # (path, options such as "size=64m,mode=700")
    mounts: tuple[Mount, ...] = ()
    network: str = "none"
    capabilities: tuple[str, ...] = ()  # added back after dropping them all
    labels: tuple[tuple[str, str], ...] = ()
    # lifetime
    remove_on_exit: bool = True
    stdin: bool = False  # fed on stdin (`docker run -i`)
    logs: bool = True  # False: no log driver (grading: output comes back on stdout)

    def all_labels(self) -> dict[str, str]:
        return {ROLE_LABEL: self.role, **dict(self.labels)}

    def thread_env(self) -> tuple[tuple[str, str], ...]:
        """Numeric libraries size their thread pools by the machine, not by the limit."""
        n = str(max(1, int(self.cpus)))
        return (("OMP_NUM_THREADS", n), ("MKL_NUM_THREADS", n), ("OPENBLAS_NUM_THREADS", n))
