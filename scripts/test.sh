#!/usr/bin/env bash
# One command to set up and run the whole test suite (unit, integration with real Redis and
# Celery workers, browser tests in headless Chromium).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh test
if ! command -v chromium >/dev/null 2>&1 && [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "[test] installing Debian's chromium for the browser tests"
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
    || echo "[test] could not install chromium: browser tests will be skipped"
fi
.venv/bin/ruff check .
# Two test processes (pytest-xdist), a test file each at a time: most tests wait on servers, workers and
# browsers, so two keep both cores busy. PIDFLOW_TEST_PROCESSES=0 runs everything in this process.
exec .venv/bin/python -m pytest -q -n "${PIDFLOW_TEST_PROCESSES:-2}" --dist loadfile "$@"
