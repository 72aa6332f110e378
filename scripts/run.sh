#!/usr/bin/env bash
# One command to run pidflow on this machine: Redis (REDIS_URL or a local one), a Celery worker,
# the API + dashboard on http://127.0.0.1:8000, with the bundled demo model and easy-VQA.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/pidflow serve "$@"
