"""The runs behind docs/benchmarks.md's `onelab bench class` tables: a throwaway test platform
(tests.conftest.start_platform; 2 GiB per learner), then `onelab bench class` for each case.

    .venv/bin/python docs/scripts/class_bench.py 0 '["numpy", "pandas", "torch"]' 1 1:warm 10 10:warm 30 30:warm
    .venv/bin/python docs/scripts/class_bench.py 8 '[]' 30

Arguments: spawner.parallel_starts (0: the cores), spawner.prewarm (JSON), then the cases
(N, or N:warm)."""

import pathlib
import sys
import tempfile

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))
from tests.conftest import start_platform, stop_platform

root = pathlib.Path(tempfile.mkdtemp(prefix="onelab-class-bench-"))
p = start_platform(root, ONELAB_SPAWNER__PREWARM=sys.argv[2], ONELAB_SPAWNER__MEM_LIMIT="2G",
                   ONELAB_SPAWNER__PARALLEL_STARTS=sys.argv[1])
try:
    for case in sys.argv[3:]:
        n, _, warm = case.partition(":")
        args = ["bench", "class", "--users", n] + (["--warm"] if warm else [])
        r = p.cli(*args, check=False, timeout=1800)
        print("$ onelab " + " ".join(args), flush=True)
        print(r.stdout[-6000:], r.stderr[-2000:], flush=True)
finally:
    stop_platform(p)
