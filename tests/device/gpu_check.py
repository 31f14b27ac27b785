"""The GPU checks of issue #14, on a GPU machine without Docker (tests/device/README.md).

1. Every course notebook runs with ``DEVICE=cuda`` through papermill, with the spec's small
   parameters, on this machine's own PyTorch.
2. A process given one device by UUID (``CUDA_VISIBLE_DEVICES=<uuid>``, what the claim's
   ``NVIDIA_VISIBLE_DEVICES`` does inside a container) sees exactly that device.
3. A shared learner's memory cap (``ONELAB_GPU_MEMORY_FRACTION``, applied at kernel start by
   the learner image's ``onelab_gpu.apply``) stops an allocation above it and allows one below.

Prints one line per check and exits 0 only when all passed; 77 (and nothing passed) on a
machine without CUDA, so it can never pass where it did not run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
NO_GPU = 77


def uuids() -> list[str]:
    out = subprocess.run(["nvidia-smi", "--query-gpu=uuid", "--format=csv,noheader"],
                         capture_output=True, text=True, check=True).stdout
    return [u.strip() for u in out.splitlines() if u.strip()]


def in_child(code: str, **env: str) -> str:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=120, check=False)
    if done.returncode != 0:
        raise AssertionError(done.stderr[-1500:])
    return done.stdout.strip().splitlines()[-1]


def check_one_device_by_uuid() -> str:
    first = uuids()[0]
    seen = json.loads(in_child(
        "import json, torch; p = torch.cuda.get_device_properties(0); "
        "print(json.dumps([torch.cuda.device_count(), str(p.uuid)]))",
        CUDA_VISIBLE_DEVICES=first))
    assert seen[0] == 1, f"{seen[0]} devices visible, wanted 1"
    assert first.removeprefix("GPU-") in seen[1], (first, seen[1])
    return f"CUDA_VISIBLE_DEVICES={first}: 1 device, the same UUID"


CAP = """
import json, sys, torch
sys.path.insert(0, {images!r})
import onelab_gpu
share = onelab_gpu.apply()
total = torch.cuda.get_device_properties(0).total_memory
small = torch.empty(int(total * share * 0.5), dtype=torch.uint8, device="cuda")
try:
    big = torch.empty(int(total * share * 1.6), dtype=torch.uint8, device="cuda")
    refused = False
except torch.cuda.OutOfMemoryError:
    refused = True
print(json.dumps([share, refused]))
"""


def check_memory_cap() -> str:
    share, refused = json.loads(in_child(
        CAP.format(images=str(REPO / "images" / "learner" / "onelab")),
        ONELAB_GPU_MEMORY_FRACTION="0.25"))
    assert share == 0.25 and refused, (share, refused)
    return "ONELAB_GPU_MEMORY_FRACTION=0.25: 0.125 of the GPU allocated, 0.4 refused"


def check_course_notebooks() -> list[str]:
    import papermill
    import yaml

    lines = []
    for spec in sorted((REPO / "courses").glob("*/course.yml")):
        course = yaml.safe_load(spec.read_text())
        for a in course["assignments"]:
            params = {**(a.get("regress") or {}).get("parameters", {}), "DEVICE": "cuda"}
            for nb in sorted((spec.parent / "source" / a["id"]).glob("*.ipynb")):
                with tempfile.TemporaryDirectory() as work:
                    started = time.monotonic()
                    papermill.execute_notebook(str(nb), str(Path(work) / nb.name),
                                               parameters=params, cwd=work, kernel_name="python3",
                                               progress_bar=False, execution_timeout=300)
                    lines.append(f"{course['id']}/{a['id']}/{nb.name}: ran on cuda in "
                                 f"{time.monotonic() - started:.1f} s")
    assert lines, "no course notebooks found"
    return lines


def main() -> int:
    try:
        import torch
    except ImportError:
        print("no PyTorch here: nothing checked")
        return NO_GPU
    if not torch.cuda.is_available():
        print("no CUDA device here: nothing checked")
        return NO_GPU
    failed = 0
    for check in (check_one_device_by_uuid, check_memory_cap, check_course_notebooks):
        try:
            result = check()
            for line in result if isinstance(result, list) else [result]:
                print(f"ok    {line}", flush=True)
        except Exception as e:  # noqa: BLE001 - every check reports, then the exit says
            failed += 1
            print(f"FAIL  {check.__name__}: {type(e).__name__}: {e}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
