#!/usr/bin/env bash
# Every GPU figure in one run of under 8 minutes; JSON lines on stdout, the list in $OUT/gpu.json.
# Run from the repository root on a machine with one GPU: `bash benchmarks/gpu.sh`.
# On a machine without one, `bash benchmarks/gpu.sh --cpu` checks the script in a reduced mode.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-.}/gpu.json"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1 TRANSFORMERS_VERBOSITY=error
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"
python -c 'import torch, transformers; print("torch", torch.__version__, "cuda", torch.version.cuda, "transformers", transformers.__version__)'
timeout 470 python -m benchmarks.gpu --out "$out" "$@"
