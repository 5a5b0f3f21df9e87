#!/usr/bin/env bash
# The full check, as CI runs it (.ci/run) after `scripts/install.sh --test`:
# the static checks, then the full test tier (every test: SmolLM2, lm-eval,
# the command lines, Chromium, the real webui, the side environments).
# Extra arguments go to pytest, e.g. `scripts/check.sh -x`.
set -euo pipefail
cd "$(dirname "$0")/.."

# -- static checks, before the tests: any finding fails the check --------------
# (settings in pyproject.toml: ruff on every Python file, mypy strict on steering/
# and optimize/, the rest checked short of strict)
.venv/bin/ruff check .
.venv/bin/mypy

# -- the full test tier ---------------------------------------------------------
.venv/bin/python -m pytest --full "$@"
