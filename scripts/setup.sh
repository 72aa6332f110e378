#!/usr/bin/env bash
# Create .venv (if missing) and install pidflow with its pinned dependencies.
# Usage: bash scripts/setup.sh [extras]   e.g. "test"
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-}"
PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv"
  "$PY" -m venv .venv
fi
stamp=".venv/.pidflow-installed${extras:+-$extras}"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "[setup] installing pidflow${extras:+[$extras]} (about a minute on a cold machine)"
  .venv/bin/python -m pip install -q --upgrade pip
  # torch first, pinned, so no other package pulls a multi-GB CUDA build
  .venv/bin/python -m pip install -q "torch==2.13.0"
  .venv/bin/python -m pip install -q -e ".${extras:+[$extras]}"
  touch "$stamp"
fi
# plotly.js's cartesian bundle for the dashboard (a third of the full bundle: faster first view);
# without it the dashboard uses plotly.py's full bundle
.venv/bin/python -m app.ui.plotly_bundle || echo "[setup] going on without it"
# Swagger UI and ReDoc for /api/v1/docs and /api/v1/redoc, served locally (no CDN)
.venv/bin/python -m app.docs_assets || echo "[setup] going on without them"
