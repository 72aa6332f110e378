#!/usr/bin/env bash
# The prepared GPU check (issue 17.9): on a lent GPU machine, from the repository root, under that machine's
# own python (torch and transformers installed there; pidflow runs from source, nothing is installed or
# downloaded), measures LLaVA-1.5- and LLaVA-1.6-7B-shaped random-weight models in bf16: tokens as their
# processors give them, the batch-size search, peak GPU memory, prefix reuse, and the seed study's projected
# GPU-hours by family counting all 34 runs per model and task (benchmarks/gpu_bench.py). About 4-6 minutes
# of an H100/H200 (under 8 with the machine's start); figures are printed and written to $OUT/gpu_check.json
# (or /tmp/gpu_check/gpu_check.json), to record in docs/extraction.md.
#
#   bash benchmarks/gpu_check.sh                 # on the GPU machine (e.g. the run tool's command)
#   PYTHON=.venv/bin/python bash benchmarks/gpu_check.sh --tiny   # CPU smoke test (tests/test_gpu_check.py)
#
# Extra arguments go to gpu_bench.py (--family llava, --max-batch 64, --batch-sizes 8 16, ...).
# GPU_CHECK_TIMEOUT_S (default 420) stops the benchmark before the device time runs out.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export HF_HUB_OFFLINE=1 TRANSFORMERS_VERBOSITY=error TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
RESULTS="${OUT:-/tmp/gpu_check}"
mkdir -p "$RESULTS"

"$PY" - <<'PYEOF'
import importlib, sys
missing = []
for name in ("torch", "transformers", "numpy", "PIL", "tokenizers", "tqdm"):
    try:
        module = importlib.import_module(name)
        print(f"{name} {getattr(module, '__version__', '?')}", end="; ")
    except ImportError:
        missing.append(name)
print(f"python {sys.version.split()[0]}")
if missing:
    sys.exit(f"gpu_check: missing {', '.join(missing)}: install them into this python first")
PYEOF
if command -v nvidia-smi >/dev/null 2>&1; then
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
fi
timeout "${GPU_CHECK_TIMEOUT_S:-420}" "$PY" benchmarks/gpu_bench.py --json "$RESULTS/gpu_check.json" "$@"
