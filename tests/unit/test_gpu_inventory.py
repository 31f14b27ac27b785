"""The host's GPUs: recorded nvidia-smi outputs of an 8 x A100 box with MIG on one GPU and of an
H100 become the devices OneLab hands out; a declared inventory wins; no nvidia-smi is no GPUs;
the settings name a bad device or policy in one line; a course may override the policy."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from hub.gpu import inventory
from hub.gpu.inventory import Device, Inventory
from hub.gpu.policy import Policy, week_start
from onelab.course import load_course
from onelab.errors import SettingsError
from onelab.settings import load
from tests.courses import minicourse

# `nvidia-smi --query-gpu=index,uuid,name,memory.total --format=csv,noheader,nounits` and
# `nvidia-smi -L` on an 8 x A100-SXM4-40GB server whose GPU 7 is in MIG mode (3g.20gb, 2g.10gb
# and two 1g.5gb instances: all 7 slices), driver 535.
A100_UUIDS = [
    "GPU-c15521b1-b3dc-450a-9daa-37e51b591d75", "GPU-3f372617-f0ba-4f3a-86f0-ce2ea6ec39c1",
    "GPU-4a800646-417a-4105-bc31-99944567ceb1", "GPU-732242fd-a890-4e32-9297-9bfcbbeb508f",
    "GPU-df7142dc-af29-46f8-b774-4cca4d909eb2", "GPU-e8af30f7-c70b-43bf-a4d0-b50f658c6762",
    "GPU-deeda8b2-3927-47d6-8375-d0341e4f6f2a", "GPU-cecf4f4e-5ba8-4780-90ce-f798e6c648e7",
]
MIG_UUIDS = [
    "MIG-a1fa7d4a-cde5-40db-9c54-e05b42a9ba21", "MIG-293a9acc-2652-48ff-842a-2f9da1b4ba07",
    "MIG-467c0714-a9fb-4797-aa59-c1698d242349", "MIG-11e760a5-a6d5-430a-82b7-075d2a3a0c78",
]
A100_QUERY = "".join(f"{i}, {u}, NVIDIA A100-SXM4-40GB, 40960\n" for i, u in enumerate(A100_UUIDS))
A100_LIST = "".join(f"GPU {i}: NVIDIA A100-SXM4-40GB (UUID: {u})\n"
                    for i, u in enumerate(A100_UUIDS)) + (
    f"  MIG 3g.20gb     Device  0: (UUID: {MIG_UUIDS[0]})\n"
    f"  MIG 2g.10gb     Device  1: (UUID: {MIG_UUIDS[1]})\n"
    f"  MIG 1g.5gb      Device  2: (UUID: {MIG_UUIDS[2]})\n"
    f"  MIG 1g.5gb      Device  3: (UUID: {MIG_UUIDS[3]})\n")

H100_UUID = "GPU-071d1481-5649-48e9-9846-6a921f7ea79c"
H100_QUERY = f"0, {H100_UUID}, NVIDIA H100 80GB HBM3, 81559\n"
H100_LIST = f"GPU 0: NVIDIA H100 80GB HBM3 (UUID: {H100_UUID})\n"

# The R450 driver's `-L`, which named MIG instances by their GPU and instance ids.
OLD_MIG_LIST = (
    f"GPU 0: A100-SXM4-40GB (UUID: {A100_UUIDS[0]})\n"
    f"  MIG 1g.5gb Device 0: (UUID: MIG-{A100_UUIDS[0]}/7/0)\n"
    f"  MIG 1g.5gb Device 1: (UUID: MIG-{A100_UUIDS[0]}/8/0)\n")


def test_an_a100_box_with_mig_on_one_gpu():
    inv = inventory.from_nvidia_smi(A100_QUERY, A100_LIST)
    assert inv.source == "nvidia-smi"
    assert len(inv.devices) == 12
    assert inv.devices[0] == Device(0, A100_UUIDS[0], "NVIDIA A100-SXM4-40GB", 40960)
    # GPU 7 is in MIG mode: its instances are handed out, never the GPU itself.
    assert [d.uuid for d in inv.whole_gpus()] == A100_UUIDS[:7]
    migs = inv.mig_instances()
    assert [d.uuid for d in migs] == MIG_UUIDS
    assert {d.parent_uuid for d in migs} == {A100_UUIDS[7]} and {d.index for d in migs} == {7}
    assert [d.memory_mib for d in migs] == [20480, 10240, 5120, 5120]
    assert migs[0].model == "NVIDIA A100-SXM4-40GB MIG 3g.20gb" and migs[0].mig
    # What each policy can hand out on this box.
    assert Policy("exclusive").capacity(inv) == 7
    assert Policy("shared", per_device=4).capacity(inv) == 28
    assert Policy("mig").capacity(inv) == 4
    assert Policy("none").capacity(inv) == 0


def test_an_h100():
    inv = inventory.from_nvidia_smi(H100_QUERY, H100_LIST)
    assert inv.devices == (Device(0, H100_UUID, "NVIDIA H100 80GB HBM3", 81559),)
    assert inv.whole_gpus() == list(inv.devices) and not inv.mig_instances()


def test_old_driver_mig_names_and_partial_outputs():
    inv = inventory.from_nvidia_smi("", OLD_MIG_LIST)  # --query-gpu failed: -L still counts
    assert [d.uuid for d in inv.mig_instances()] == [f"MIG-{A100_UUIDS[0]}/7/0",
                                                     f"MIG-{A100_UUIDS[0]}/8/0"]
    assert inv.devices[0].memory_mib == 0 and inv.whole_gpus() == []
    # -L failed: the GPUs of --query-gpu, with warnings and [N/A] memory tolerated.
    noisy = "WARNING: infoROM is corrupted at gpu 0000:07:00.0\n" + H100_QUERY.replace(
        "81559", "[N/A]")
    assert inventory.from_nvidia_smi(noisy, "").devices == (
        Device(0, H100_UUID, "NVIDIA H100 80GB HBM3", 0),)


def test_no_nvidia_smi_is_no_gpus_and_a_declared_inventory_wins():
    def missing(cmd):
        return None

    s = load(path=None, environ={})
    empty = inventory.load(s.gpu, run=missing)
    assert not empty and empty.source == "none" and empty.devices == ()

    outputs = {"-L": A100_LIST}
    seen = []

    def smi(cmd):
        seen.append(cmd)
        return outputs.get(cmd[-1], A100_QUERY)

    assert len(inventory.load(s.gpu, run=smi).devices) == 12 and seen == [inventory.QUERY,
                                                                         inventory.LIST]
    declared = load(path=None, environ={"ONELAB_GPU__INVENTORY": (
        "[{uuid: GPU-fake-0, model: Fake, memory_mib: 1024}, {uuid: GPU-fake-1}, "
        "{uuid: MIG-fake-1-a, parent_uuid: GPU-fake-1, index: 1}]")})
    seen.clear()
    inv = inventory.load(declared.gpu, run=smi)
    assert seen == [] and inv.source == "settings"
    assert inv.devices == (Device(0, "GPU-fake-0", "Fake", 1024),
                           Device(1, "GPU-fake-1", "", 0),
                           Device(1, "MIG-fake-1-a", "", 0, True, "GPU-fake-1"))
    assert [d.uuid for d in inv.whole_gpus()] == ["GPU-fake-0"]


def test_a_hung_or_failing_nvidia_smi_is_no_gpus(tmp_path, monkeypatch):
    fake = tmp_path / "nvidia-smi"
    fake.write_text("#!/bin/sh\necho 'NVIDIA-SMI has failed because it couldn't communicate "
                    "with the NVIDIA driver.'\nexit 9\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert inventory.read_nvidia_smi() == Inventory()
    monkeypatch.setenv("PATH", str(tmp_path / "nowhere"))
    assert inventory.read_nvidia_smi() == Inventory()


@pytest.mark.parametrize("yaml_text, expected", [
    ("gpu:\n  inventory:\n    - {uuid: 'GPU-a,GPU-b'}\n",
     r"bad setting gpu.inventory.uuid = 'GPU-a,GPU-b'.*no spaces or commas"),
    ("gpu:\n  inventory:\n    - {uuid: GPU-a}\n    - {uuid: GPU-a}\n",
     r"bad setting gpu.inventory = .*declares GPU-a more than once"),
    ("gpu:\n  inventory:\n    - {uuid: MIG-x, parent_uuid: GPU-y}\n",
     r"bad setting gpu.inventory = .*MIG-x: parent_uuid GPU-y is not declared"),
    ("gpu:\n  inventory:\n    - {uuid: GPU-a, colour: red}\n",
     r"unknown setting 'gpu.inventory.colour'.*allowed here: uuid, index, model"),
    ("gpu:\n  default_policy: mps\n",
     r"bad setting gpu.default_policy = 'mps'.*'none', 'exclusive', 'shared' or 'mig'"),
    ("gpu:\n  shared_per_device: 0\n", r"bad setting gpu.shared_per_device = 0"),
    ("gpu:\n  shared_memory_fraction: 1.5\n", r"bad setting gpu.shared_memory_fraction = 1.5"),
    ("gpu:\n  queue_wait_limit: -1\n", r"bad setting gpu.queue_wait_limit = -1"),
    ("gpu:\n  weekly_gpu_hours: -2\n", r"bad setting gpu.weekly_gpu_hours = -2"),
])
def test_bad_gpu_settings_name_the_key(tmp_path, yaml_text, expected):
    f = tmp_path / "onelab.yaml"
    f.write_text(yaml_text)
    with pytest.raises(SettingsError, match=expected) as info:
        load(path=f, environ={})
    assert "\n" not in str(info.value)


def _course(tmp_path: Path, gpu_block: str):
    root = minicourse.write(tmp_path) / minicourse.COURSE
    spec = root / "course.yml"
    spec.write_text(spec.read_text(encoding="utf-8") + gpu_block, encoding="utf-8")
    return load_course(root)


def test_a_course_overrides_the_policy(tmp_path):
    s = load(path=None, environ={"ONELAB_GPU__DEFAULT_POLICY": "exclusive",
                                 "ONELAB_GPU__WEEKLY_GPU_HOURS": "20"})
    assert Policy.of(s.gpu) == Policy("exclusive", 1, None, 20.0)
    course = _course(tmp_path, "gpu:\n  policy: shared\n  per_device: 2\n  weekly_hours: 6\n")
    assert Policy.of(s.gpu, course.gpu) == Policy("shared", 2, 0.5, 6.0)
    # An operator's memory cap holds whatever a course's learners per GPU.
    capped = load(path=None, environ={"ONELAB_GPU__SHARED_MEMORY_FRACTION": "0.2"})
    assert Policy.of(capped.gpu, course.gpu).memory_fraction == 0.2
    assert Policy.of(load(path=None, environ={}).gpu) == Policy("none", 1, None, 0.0)


@pytest.mark.parametrize("gpu_block, expected", [
    ("gpu:\n  policy: everything\n", r"gpu.policy: Input should be 'none', 'exclusive'"),
    ("gpu:\n  per_device: 0\n", r"gpu.per_device: Input should be greater than or equal to 1"),
    ("gpu:\n  weekly_hours: -1\n", r"gpu.weekly_hours: Input should be greater than or equal"),
    ("gpu:\n  polcy: shared\n", r"gpu.polcy: unknown field"),
])
def test_a_bad_course_gpu_block_names_the_field_and_line(tmp_path, gpu_block, expected):
    from onelab.course import CourseError

    with pytest.raises(CourseError, match=r"course.yml line \d+: " + expected):
        _course(tmp_path, gpu_block)


def test_the_week_starts_on_monday_midnight_here(monkeypatch):
    import time

    monkeypatch.setenv("TZ", "Asia/Seoul")
    time.tzset()
    try:
        # Sunday 2026-03-08 16:00 UTC is Monday 01:00 in Seoul: its week began 15:00 UTC.
        assert week_start(datetime(2026, 3, 8, 16, 0)) == datetime(2026, 3, 8, 15, 0)
        assert week_start(datetime(2026, 3, 8, 14, 0)) == datetime(2026, 3, 1, 15, 0)
    finally:
        monkeypatch.undo()
        time.tzset()
