#!/usr/bin/env bash
# Create .venv and install edgecnn with its test extras. Safe to re-run; used by the README and by .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
# Pinned here, not in pyproject: on this project's machines pip takes these wheels from local disk; an unpinned
# `torch` could pull a different multi-GB build.
.venv/bin/python -m pip install -q torch==2.14.1 torchvision==0.29.1
.venv/bin/python -m pip install -q -e '.[dev]'
