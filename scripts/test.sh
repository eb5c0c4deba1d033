#!/usr/bin/env bash
# Sets up the test environment (first run: a few minutes) and runs the whole test suite offline.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup/install_deps.sh --tests .venv
export HF_HUB_OFFLINE=1 BLENDED_OFFLINE=1
exec .venv/bin/python -m pytest -ra "$@"
