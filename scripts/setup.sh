#!/usr/bin/env bash
# Create .venv (if missing) and install pidflow with the dashboard and service (the "server" extra) at the
# exact versions it is tested with (constraints.txt; pyproject.toml declares ranges).
# Usage: bash scripts/setup.sh [extras]   e.g. "test"
# One install stamp (.venv/.pidflow-installed) lists the extras installed with the current pyproject.toml
# and constraints.txt: run.sh (no extras) and test.sh ("test") never reinstall each other's packages; a change
# of either file reinstalls once with every extra installed so far.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-}"
PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv"
  "$PY" -m venv .venv
fi
stamp=".venv/.pidflow-installed"
installed=""
fresh=0
if [ -f "$stamp" ] && [ ! pyproject.toml -nt "$stamp" ] && [ ! constraints.txt -nt "$stamp" ]; then
  installed="$(cat "$stamp")"
  fresh=1
fi
needed=0
[ "$fresh" = 1 ] || needed=1
if [ -n "$extras" ] && ! printf '%s\n' "$installed" | tr ',' '\n' | grep -qx "$extras"; then
  needed=1
fi
if [ "$needed" = 1 ]; then
  # keep what was installed before (a pyproject.toml change reinstalls those extras too)
  previous="$(cat "$stamp" 2>/dev/null || true)"
  want="$(printf '%s\nserver\n%s\n' "$previous" "$extras" | tr ',' '\n' | grep -v '^$' | sort -u | paste -sd, - || true)"
  pins=()
  [ -f constraints.txt ] && pins=(-c constraints.txt)
  echo "[setup] installing pidflow[$want] (about a minute on a cold machine)"
  .venv/bin/python -m pip install -q --upgrade pip
  # torch first, at the tested version, so no other package pulls a multi-GB CUDA build
  .venv/bin/python -m pip install -q "$(grep -m1 '^torch==' constraints.txt 2>/dev/null || echo 'torch==2.13.0')"
  .venv/bin/python -m pip install -q -e ".[$want]" "${pins[@]}"
  printf '%s\n' "$want" > "$stamp"
fi
# plotly.js's cartesian bundle for the dashboard (a third of the full bundle: faster first view);
# without it the dashboard uses plotly.py's full bundle
.venv/bin/python -m app.ui.plotly_bundle || echo "[setup] going on without it"
# Swagger UI and ReDoc for /api/v1/docs and /api/v1/redoc, served locally (no CDN)
.venv/bin/python -m app.docs_assets || echo "[setup] going on without them"
