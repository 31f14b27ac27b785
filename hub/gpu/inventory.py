"""The host's GPUs and MIG instances, as OneLab hands them out.

Read from ``nvidia-smi`` (two commands: ``--query-gpu`` for each GPU's index, UUID, name and
memory, ``-L`` for the MIG instances under each GPU, which ``--query-gpu`` does not list), or
declared by hand in the ``gpu.inventory`` setting, which wins: a host whose driver cannot be
read, a CI machine without GPUs, a test. No ``nvidia-smi`` and nothing declared is an empty
inventory, and GPU features are then simply absent.

The parsers take the commands' text, so recorded outputs test them (tests/unit/
test_gpu_inventory.py); :func:`read_nvidia_smi` is the only part that runs anything.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from onelab.settings import GpuSettings

QUERY = ["nvidia-smi", "--query-gpu=index,uuid,name,memory.total",
         "--format=csv,noheader,nounits"]
LIST = ["nvidia-smi", "-L"]
TIMEOUT = 20
"""Seconds nvidia-smi may take (a driver busy with MIG reconfiguration is slow, a hung one never
answers: then there are no GPUs rather than no hub)."""

_GPU_LINE = re.compile(r"^GPU\s+(\d+):\s*(.*?)\s*\(UUID:\s*(GPU-[^)\s]+)\)")
_MIG_LINE = re.compile(r"^\s+MIG\s+(\S+)\s+Device\s+(\d+):\s*\(UUID:\s*(MIG-[^)\s]+)\)")
_MIG_MEMORY = re.compile(r"\.(\d+)gb")  # 1g.10gb, 1g.10gb+me


@dataclass(frozen=True)
class Device:
    """One device a learner can be given: a whole GPU, or a MIG instance of one.

    ``index`` is nvidia-smi's GPU index (a MIG instance has its GPU's); ``memory_mib`` is 0
    when unknown, and for a MIG instance read from its profile's name (``1g.5gb``: 5 GiB), so
    approximate."""

    index: int
    uuid: str
    model: str
    memory_mib: int
    mig: bool = False
    parent_uuid: str | None = None


@dataclass(frozen=True)
class Inventory:
    """The devices in nvidia-smi's order (each GPU, then its MIG instances), and where they
    came from: ``settings`` (gpu.inventory), ``nvidia-smi`` or ``none``."""

    devices: tuple[Device, ...] = ()
    source: str = "none"

    def __bool__(self) -> bool:
        return bool(self.devices)

    def get(self, uuid: str) -> Device | None:
        return next((d for d in self.devices if d.uuid == uuid), None)

    def whole_gpus(self) -> list[Device]:
        """GPUs that can be handed out whole or shared: not MIG instances, and not a GPU in
        MIG mode (its instances are handed out instead; CUDA cannot use the GPU itself then)."""
        parents = {d.parent_uuid for d in self.devices if d.mig}
        return [d for d in self.devices if not d.mig and d.uuid not in parents]

    def mig_instances(self) -> list[Device]:
        return [d for d in self.devices if d.mig]


def parse_query(text: str) -> list[Device]:
    """``nvidia-smi --query-gpu=index,uuid,name,memory.total --format=csv,noheader,nounits``:
    one line per GPU, ``0, GPU-..., NVIDIA A100-SXM4-40GB, 40960``. A line that is not one
    (a warning, an empty line) is skipped; memory that is ``[N/A]`` is 0."""
    out = []
    for line in text.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) < 4 or not parts[0].isdigit() or not parts[1].startswith("GPU-"):
            continue
        index, uuid, memory = int(parts[0]), parts[1], parts[-1]
        model = ", ".join(parts[2:-1])  # a name with a comma in it stays whole
        out.append(Device(index, uuid, model, int(memory) if memory.isdigit() else 0))
    return out


def parse_list(text: str) -> list[tuple[Device, list[Device]]]:
    """``nvidia-smi -L``: each GPU with the MIG instances listed under it (both the
    ``MIG-<uuid>`` form of current drivers and the ``MIG-GPU-<uuid>/<gi>/<ci>`` of R450).
    The GPUs here carry no memory (``-L`` does not say it)."""
    out: list[tuple[Device, list[Device]]] = []
    for line in text.splitlines():
        gpu = _GPU_LINE.match(line)
        if gpu:
            out.append((Device(int(gpu[1]), gpu[3], gpu[2], 0), []))
            continue
        mig = _MIG_LINE.match(line)
        if mig and out:
            parent = out[-1][0]
            size = _MIG_MEMORY.search(mig[1])
            out[-1][1].append(Device(parent.index, mig[3], f"{parent.model} MIG {mig[1]}",
                                     int(size[1]) * 1024 if size else 0, True, parent.uuid))
    return out


def from_nvidia_smi(query: str, listing: str) -> Inventory:
    """The inventory the two commands' outputs describe: the GPUs of ``query`` (memory and
    all), each followed by its MIG instances from ``listing``. A GPU only ``-L`` shows
    (``--query-gpu`` failed) still counts, memory unknown."""
    gpus = {d.uuid: d for d in parse_query(query)}
    listed = parse_list(listing)
    devices: list[Device] = []
    seen = set()
    for gpu, migs in listed:
        devices.append(gpus.get(gpu.uuid, gpu))
        devices.extend(migs)
        seen.add(gpu.uuid)
    devices.extend(d for uuid, d in gpus.items() if uuid not in seen)
    devices.sort(key=lambda d: d.index)  # stable: a GPU's MIG instances stay right after it
    return Inventory(tuple(devices), "nvidia-smi" if devices else "none")


def from_settings(gpu: GpuSettings) -> Inventory:
    """The devices declared in ``gpu.inventory`` (validated there), in the order given."""
    devices = tuple(Device(d.index if d.index is not None else i, d.uuid, d.model,
                           d.memory_mib, bool(d.mig), d.parent_uuid)
                    for i, d in enumerate(gpu.inventory))
    return Inventory(devices, "settings" if devices else "none")


Runner = Callable[[Sequence[str]], str | None]


def _run(cmd: Sequence[str]) -> str | None:
    """A command's output, or None when it is missing, fails or hangs."""
    try:
        done = subprocess.run(list(cmd), capture_output=True, text=True, timeout=TIMEOUT,
                              check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


def read_nvidia_smi(run: Runner = _run) -> Inventory:
    """What nvidia-smi reports on this host; empty when there is none, or no driver."""
    query = run(QUERY)
    listing = run(LIST)
    if query is None and listing is None:
        return Inventory()
    return from_nvidia_smi(query or "", listing or "")


def load(gpu: GpuSettings, run: Runner = _run) -> Inventory:
    """The inventory in force: ``gpu.inventory`` when it declares any device, else
    nvidia-smi's (read now: call it at hub start), else none."""
    declared = from_settings(gpu)
    return declared if declared else read_nvidia_smi(run)
