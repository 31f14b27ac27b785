#!/bin/bash
# The GPU checks (tests/device/README.md), on a GPU machine without Docker: the machine's own
# PyTorch, plus papermill and its kernel carried as wheels in .whl (tests/device/wheels.sh).
set -euo pipefail
cd "$(dirname "$0")/../.."
if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
  export PATH=/tmp/site/bin:$PATH
  python3 -m ipykernel install --prefix /tmp/site >/dev/null   # the python3 kernel papermill asks for
  export JUPYTER_PATH=/tmp/site/share/jupyter
fi
nvidia-smi --query-gpu=index,uuid,name,memory.total --format=csv,noheader || true
exec timeout 280 python3 tests/device/gpu_check.py
